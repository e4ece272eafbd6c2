/*
 * wire_test.c — the msgpack codec (tixgrid/wire.h, schemas/wire.md).
 *
 * Three kinds of tests:
 *   - round trips: every message type at the low and the high end of every
 *     bound, and many random ones, encode, decode to an equal message,
 *     re-encode to the same bytes, and parse with msgpack-c's own unpacker;
 *   - rejections: hand-written msgpack bytes (hex) for every class of
 *     malformed input, each asserting TG_EPROTO and the exact sentence;
 *   - robustness: seeded random bytes, every truncation and random bit flips
 *     of valid messages either decode to a message that round-trips or fail
 *     with TG_EPROTO — never a crash (run under ASan/UBSan in CI).
 *
 * The bounds in the generators below are written from wire.md, not taken
 * from wire.c, so that the two are checked against each other.
 */
#include <criterion/criterion.h>

#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tixgrid/err.h"
#include "tixgrid/limits.h"
#include "tixgrid/seat.h"
#include "tixgrid/wire.h"

/* ---- Seeded randomness -------------------------------------------------- */

static uint64_t rng = 0x2545f4914f6cdd1dULL;

static void rnd_seed(uint64_t seed)
{
    rng = seed != 0 ? seed : 1;
}

static uint64_t rnd(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545f4914f6cdd1dULL;
}

enum { V_MIN, V_MAX, V_RANDOM };

static uint64_t pick(int v, uint64_t lo, uint64_t hi)
{
    if (v == V_MIN) {
        return lo;
    }
    if (v == V_MAX) {
        return hi;
    }
    uint64_t span = hi - lo + 1;
    return span == 0 ? rnd() : lo + rnd() % span;
}

static int64_t pick_i(int v, int64_t lo, int64_t hi)
{
    uint64_t u = pick(v, 0, (uint64_t)hi - (uint64_t)lo) + (uint64_t)lo;
    int64_t s;
    memcpy(&s, &u, sizeof(s));
    return s;
}

/* A list length: empty, full, or short and random. */
static uint32_t pick_count(int v, uint32_t max)
{
    return (uint32_t)(v == V_RANDOM ? rnd() % (max < 8 ? max + 1 : 9) : pick(v, 0, max));
}

/* ---- Generators of valid messages -------------------------------------- */

#define SEAT_ID_MAX (TG_PARTITION_SEATS_MAX - 1)

static tg_wire_seat src_seats[TG_WIRE_SEATS_LIST_MAX];
static tg_wire_counts src_counts[TG_ROWS_MAX];
static tg_wire_row src_rows[TG_ROWS_MAX];
static tg_wire_log_record src_records[TG_WIRE_LOG_RECORDS_MAX];
static tg_wire_change src_changes[TG_WIRE_CHANGES_MAX];
static tg_wire_booking_state src_bookings[TG_WIRE_RESTORE_BOOKINGS_MAX];
static tg_wire_member src_members[TG_GRID_MEMBERS_MAX];
static tg_wire_placement src_placements[TG_GRID_PARTITIONS_MAX];
static tg_wire_held src_held[TG_PU_PARTITIONS_MAX];
static tg_wire_states src_states[TG_WIRE_STATES_MAX];

static tg_wire_seat dst_seats[TG_WIRE_SEATS_LIST_MAX];
static tg_wire_counts dst_counts[TG_ROWS_MAX];
static tg_wire_row dst_rows[TG_ROWS_MAX];
static tg_wire_log_record dst_records[TG_WIRE_LOG_RECORDS_MAX];
static tg_wire_change dst_changes[TG_WIRE_CHANGES_MAX];
static tg_wire_booking_state dst_bookings[TG_WIRE_RESTORE_BOOKINGS_MAX];
static tg_wire_member dst_members[TG_GRID_MEMBERS_MAX];
static tg_wire_placement dst_placements[TG_GRID_PARTITIONS_MAX];
static tg_wire_held dst_held[TG_PU_PARTITIONS_MAX];
static tg_wire_states dst_states[TG_WIRE_STATES_MAX];

static const tg_wire_space full_space = {
    dst_seats,    TG_WIRE_SEATS_LIST_MAX,      dst_counts,  TG_ROWS_MAX,
    dst_rows,     TG_ROWS_MAX,                 dst_records, TG_WIRE_LOG_RECORDS_MAX,
    dst_changes,  TG_WIRE_CHANGES_MAX,         dst_bookings, TG_WIRE_RESTORE_BOOKINGS_MAX,
    dst_members,  TG_GRID_MEMBERS_MAX,         dst_placements, TG_GRID_PARTITIONS_MAX,
    dst_held,     TG_PU_PARTITIONS_MAX,        dst_states,  TG_WIRE_STATES_MAX,
};

/* A second space, so that a re-decoded message never shares arrays with
 * the message it is compared to. */
static tg_wire_seat dst2_seats[TG_WIRE_SEATS_LIST_MAX];
static tg_wire_counts dst2_counts[TG_ROWS_MAX];
static tg_wire_row dst2_rows[TG_ROWS_MAX];
static tg_wire_log_record dst2_records[TG_WIRE_LOG_RECORDS_MAX];
static tg_wire_change dst2_changes[TG_WIRE_CHANGES_MAX];
static tg_wire_booking_state dst2_bookings[TG_WIRE_RESTORE_BOOKINGS_MAX];
static tg_wire_member dst2_members[TG_GRID_MEMBERS_MAX];
static tg_wire_placement dst2_placements[TG_GRID_PARTITIONS_MAX];
static tg_wire_held dst2_held[TG_PU_PARTITIONS_MAX];
static tg_wire_states dst2_states[TG_WIRE_STATES_MAX];

static const tg_wire_space full_space2 = {
    dst2_seats,      TG_WIRE_SEATS_LIST_MAX,
    dst2_counts,     TG_ROWS_MAX,
    dst2_rows,       TG_ROWS_MAX,
    dst2_records,    TG_WIRE_LOG_RECORDS_MAX,
    dst2_changes,    TG_WIRE_CHANGES_MAX,
    dst2_bookings,   TG_WIRE_RESTORE_BOOKINGS_MAX,
    dst2_members,    TG_GRID_MEMBERS_MAX,
    dst2_placements, TG_GRID_PARTITIONS_MAX,
    dst2_held,       TG_PU_PARTITIONS_MAX,        dst2_states, TG_WIRE_STATES_MAX,
};

static const tg_wire_type all_types[] = {
    TG_WIRE_BOOKING_CREATE,
    TG_WIRE_BOOKING_GET,
    TG_WIRE_SEATS_HOLD,
    TG_WIRE_SEATS_HOLD_BEST,
    TG_WIRE_SEATS_RELEASE,
    TG_WIRE_BOOKING_CANCEL,
    TG_WIRE_PAYMENT_BEGIN,
    TG_WIRE_PAYMENT_CONFIRM,
    TG_WIRE_PAYMENT_FAIL,
    TG_WIRE_SEATS_BLOCK,
    TG_WIRE_SEATS_UNBLOCK,
    TG_WIRE_SEAT_GET,
    TG_WIRE_SEATS_LIST,
    TG_WIRE_AVAILABILITY,
    TG_WIRE_PARTITION_INFO,
    TG_WIRE_LAYOUT,
    TG_WIRE_STATS,
    TG_WIRE_LOG_READ,
    TG_WIRE_LOG_ACK,
    TG_WIRE_PARTITION_CREATE,
    TG_WIRE_PARTITION_RESTORE,
    TG_WIRE_PARTITION_RESET,
    TG_WIRE_REPL_BACKUPS,
    TG_WIRE_REPL_APPEND,
    TG_WIRE_REPL_SNAPSHOT,
    TG_WIRE_REPL_STATUS,
    TG_WIRE_SEAT_STATES,
    TG_WIRE_ERROR,
    TG_WIRE_BOOKING_CREATE_OK,
    TG_WIRE_BOOKING_GET_OK,
    TG_WIRE_SEATS_HOLD_OK,
    TG_WIRE_SEATS_HOLD_BEST_OK,
    TG_WIRE_SEATS_RELEASE_OK,
    TG_WIRE_BOOKING_CANCEL_OK,
    TG_WIRE_PAYMENT_BEGIN_OK,
    TG_WIRE_PAYMENT_CONFIRM_OK,
    TG_WIRE_PAYMENT_FAIL_OK,
    TG_WIRE_SEATS_BLOCK_OK,
    TG_WIRE_SEATS_UNBLOCK_OK,
    TG_WIRE_SEAT_GET_OK,
    TG_WIRE_SEATS_LIST_OK,
    TG_WIRE_AVAILABILITY_OK,
    TG_WIRE_PARTITION_INFO_OK,
    TG_WIRE_LAYOUT_OK,
    TG_WIRE_STATS_OK,
    TG_WIRE_LOG_READ_OK,
    TG_WIRE_LOG_ACK_OK,
    TG_WIRE_PARTITION_CREATE_OK,
    TG_WIRE_PARTITION_RESTORE_OK,
    TG_WIRE_PARTITION_RESET_OK,
    TG_WIRE_REPL_BACKUPS_OK,
    TG_WIRE_REPL_APPEND_OK,
    TG_WIRE_REPL_SNAPSHOT_OK,
    TG_WIRE_REPL_STATUS_OK,
    TG_WIRE_SEAT_STATES_OK,
    TG_WIRE_SEAT_CHANGES,
    TG_WIRE_GRID_MAP,
    TG_WIRE_PU_REGISTER,
    TG_WIRE_HEARTBEAT,
    TG_WIRE_GRID_STATUS,
    TG_WIRE_PU_REMOVE,
    TG_WIRE_PU_REGISTER_OK,
    TG_WIRE_HEARTBEAT_OK,
    TG_WIRE_GRID_STATUS_OK,
    TG_WIRE_PU_REMOVE_OK,
    TG_WIRE_PU_ADD,
    TG_WIRE_PARTITION_MOVE,
    TG_WIRE_REBALANCE,
    TG_WIRE_PU_DRAIN,
    TG_WIRE_PU_ADD_OK,
    TG_WIRE_PARTITION_MOVE_OK,
    TG_WIRE_REBALANCE_OK,
    TG_WIRE_PU_DRAIN_OK,
};
#define TYPE_COUNT (sizeof(all_types) / sizeof(all_types[0]))

static tg_booking_id gen_booking_id(int v)
{
    return tg_booking_id_make((uint32_t)pick(v, 0, TG_PARTITION_ID_MAX),
                              (uint32_t)pick(v, 1, UINT32_MAX));
}

static uint64_t gen_word(int v)
{
    return tg_seat_word_make((tg_seat_state)pick(v, 0, TG_SEAT_STATE_COUNT - 1),
                             (uint32_t)pick(v, 0, TG_SEAT_VERSION_MASK),
                             (uint32_t)pick(v, 0, UINT32_MAX));
}

static void gen_seat_ids(int v, tg_wire_seat_ids *ids)
{
    ids->count = pick_count(v, TG_BOOKING_SEATS_MAX);
    for (uint32_t i = 0; i < ids->count; i++) {
        ids->ids[i] = (uint32_t)pick(v, 0, SEAT_ID_MAX);
    }
}

/* Text of at most cap - 1 bytes; the longest mixes two-byte characters. */
static void gen_text(int v, char *dst, size_t cap)
{
    static const char *const pieces[] = {
        "a", "Z", " ", "\xc3\xbc", "\xe2\x82\xac", "\xf0\x9f\x8e\xab"};
    size_t want = v == V_MIN ? 0 : v == V_MAX ? cap - 1 : rnd() % cap;
    size_t at = 0;
    while (at < want) {
        const char *p = v == V_MAX ? (want - at >= 2 ? "\xc3\xa9" : "a") : pieces[rnd() % 6];
        size_t n = strlen(p);
        if (at + n > want) {
            p = "b";
            n = 1;
        }
        memcpy(dst + at, p, n);
        at += n;
    }
    dst[at] = '\0';
}

static void gen_seat(int v, tg_wire_seat *s)
{
    s->seat_id = (uint32_t)pick(v, 0, SEAT_ID_MAX);
    s->word = gen_word(v);
    s->section = (uint32_t)pick(v, 0, TG_SECTIONS_MAX - 1);
    s->row = (uint32_t)pick(v, 0, TG_ROWS_MAX - 1);
    s->number = (uint32_t)pick(v, 1, TG_ROW_SEATS_MAX);
    s->price_minor = pick_i(v, 0, INT64_MAX);
}

static void gen_counts(int v, tg_wire_counts *c)
{
    for (int i = 0; i < TG_SEAT_STATE_COUNT; i++) {
        c->by_state[i] = (uint32_t)pick(v, 0, TG_PARTITION_SEATS_MAX);
    }
}

static void gen_booking(int v, tg_wire_booking *b)
{
    b->booking_id = gen_booking_id(v);
    b->user_id = pick(v, 0, TG_WIRE_ID_MAX);
    b->status = (uint32_t)pick(v, TG_BOOKING_CREATED, TG_BOOKING_FAILED);
    b->version = (uint32_t)pick(v, 0, UINT32_MAX);
    b->created_ms = pick_i(v, INT64_MIN, INT64_MAX);
    b->deadline_ms = pick_i(v, INT64_MIN, INT64_MAX);
    gen_seat_ids(v, &b->seats);
}

static void gen_partition_create(int v, tg_msg *m)
{
    __typeof__(m->partition_create) *c = &m->partition_create;
    c->partition_id = (uint32_t)pick(v, 0, TG_PARTITION_ID_MAX);
    c->event_id = pick(v, 0, TG_WIRE_ID_MAX);
    c->hold_ttl_ms = (uint32_t)pick(v, 0, UINT32_MAX);
    c->payment_window_ms = (uint32_t)pick(v, 0, UINT32_MAX);
    c->booking_capacity = (uint32_t)pick(v, 0, TG_BOOKINGS_MAX);
    c->log_records = (uint32_t)pick(v, 0, TG_LOG_RECORDS_MAX);
    c->section_count = pick_count(v, TG_SECTIONS_MAX);
    for (uint32_t i = 0; i < c->section_count; i++) {
        gen_text(v, c->sections[i].name, sizeof(c->sections[i].name));
        gen_text(v, c->sections[i].currency, sizeof(c->sections[i].currency));
        c->sections[i].price_minor = pick_i(v, 0, INT64_MAX);
        c->sections[i].row_count = (uint32_t)pick(v, 1, TG_ROWS_MAX);
    }
    c->row_count = pick_count(v, TG_ROWS_MAX);
    c->rows = src_rows;
    for (uint32_t i = 0; i < c->row_count; i++) {
        gen_text(v, src_rows[i].name, sizeof(src_rows[i].name));
        src_rows[i].seat_count = (uint32_t)pick(v, 1, TG_ROW_SEATS_MAX);
    }
}

static void gen_partition_restore(int v, tg_msg *m)
{
    __typeof__(m->partition_restore) *r = &m->partition_restore;
    r->partition_id = (uint32_t)pick(v, 0, TG_PARTITION_ID_MAX);
    r->phase = (uint32_t)pick(v, TG_WIRE_RESTORE_BEGIN, TG_WIRE_RESTORE_END);
    r->epoch = pick(v, 0, TG_WIRE_ID_MAX);
    r->log_base = pick(v, 0, TG_WIRE_ID_MAX);
    r->booking_count = pick_count(v, TG_WIRE_RESTORE_BOOKINGS_MAX);
    r->bookings = src_bookings;
    for (uint32_t i = 0; i < r->booking_count; i++) {
        tg_wire_booking_state *b = &src_bookings[i];
        b->booking_id = gen_booking_id(v);
        b->user_id = pick(v, 1, TG_WIRE_ID_MAX);
        b->status = (uint32_t)pick(v, TG_BOOKING_CREATED, TG_BOOKING_FAILED);
        b->version = (uint32_t)pick(v, 0, UINT32_MAX);
        b->created_ms = pick_i(v, INT64_MIN, INT64_MAX);
        b->deadline_ms = pick_i(v, INT64_MIN, INT64_MAX);
    }
    r->seat_count = pick_count(v, TG_WIRE_CHANGES_MAX);
    r->seats = src_changes;
    for (uint32_t i = 0; i < r->seat_count; i++) {
        src_changes[i].seat_id = (uint32_t)pick(v, 0, SEAT_ID_MAX);
        src_changes[i].word = gen_word(v);
    }
}

static void gen_log_record(int v, tg_wire_log_record *r, uint64_t seq)
{
    r->seq = seq;
    r->kind = (uint32_t)pick(v, 0, 2);
    r->ident = (uint32_t)pick(v, 0, UINT32_MAX);
    r->status = (uint32_t)pick(v, 0, TG_BOOKING_STATUS_COUNT - 1);
    r->word = r->kind == 1 ? gen_word(v) : pick(v, 0, UINT64_MAX);
    r->deadline_ms = pick_i(v, INT64_MIN, INT64_MAX);
    r->created_ms = pick_i(v, INT64_MIN, INT64_MAX);
    r->version = (uint32_t)pick(v, 0, UINT32_MAX);
}

static void gen_repl_backups(int v, tg_msg *m)
{
    __typeof__(m->repl_backups) *r = &m->repl_backups;
    r->partition_id = (uint32_t)pick(v, 0, TG_PARTITION_ID_MAX);
    r->epoch = pick(v, 0, TG_WIRE_ID_MAX);
    r->backup_count = pick_count(v, TG_GRID_BACKUPS_MAX);
    for (uint32_t i = 0; i < r->backup_count; i++) {
        gen_text(v, r->backups[i].name, sizeof(r->backups[i].name) - 2);
        size_t n = strlen(r->backups[i].name);
        r->backups[i].name[n] = (char)('0' + i); /* names never empty, always distinct */
        r->backups[i].name[n + 1] = '\0';
        gen_text(v, r->backups[i].rep_url, sizeof(r->backups[i].rep_url));
        if (r->backups[i].rep_url[0] == '\0') {
            snprintf(r->backups[i].rep_url, sizeof(r->backups[i].rep_url), "u"); /* never empty */
        }
    }
}

static void gen_repl_append(int v, tg_msg *m)
{
    uint32_t n = pick_count(v, TG_WIRE_LOG_RECORDS_MAX);
    uint64_t first = v == V_MAX ? TG_WIRE_ID_MAX - n + 1 : pick(v, 1, 1u << 30);
    m->repl_append.partition_id = (uint32_t)pick(v, 0, TG_PARTITION_ID_MAX);
    m->repl_append.epoch = pick(v, 0, TG_WIRE_ID_MAX);
    m->repl_append.persisted = pick(v, 0, TG_WIRE_ID_MAX);
    m->repl_append.record_count = n;
    m->repl_append.records = src_records;
    m->repl_append.in_sync = v == V_MAX || (v == V_RANDOM && rnd() % 2);
    for (uint32_t i = 0; i < n; i++) {
        gen_log_record(v, &src_records[i], first + i);
    }
}

static void gen_repl_snapshot(int v, tg_msg *m)
{
    gen_partition_restore(v, m); /* the same fields in the same order */
    _Static_assert(offsetof(tg_msg, repl_snapshot.seats) ==
                       offsetof(tg_msg, partition_restore.seats),
                   "repl_snapshot mirrors partition_restore");
    m->repl_snapshot.phase = (uint32_t)pick(v, TG_WIRE_SNAPSHOT_BEGIN, TG_WIRE_SNAPSHOT_END);
}

static void gen_requests(int v, tg_msg *m)
{
    switch (m->type) {
    case TG_WIRE_BOOKING_CREATE:
        m->booking_create.partition_id = (uint32_t)pick(v, 0, TG_PARTITION_ID_MAX);
        m->booking_create.user_id = pick(v, 0, TG_WIRE_ID_MAX);
        break;
    case TG_WIRE_BOOKING_GET: /* same layout: booking_cancel, payment_begin */
    case TG_WIRE_BOOKING_CANCEL:
    case TG_WIRE_PAYMENT_BEGIN:
        m->booking_get.booking_id = gen_booking_id(v);
        m->booking_get.user_id = pick(v, 0, TG_WIRE_ID_MAX);
        break;
    case TG_WIRE_SEATS_HOLD: /* same layout: seats_release */
    case TG_WIRE_SEATS_RELEASE:
        m->seats_hold.booking_id = gen_booking_id(v);
        m->seats_hold.user_id = pick(v, 0, TG_WIRE_ID_MAX);
        gen_seat_ids(v, &m->seats_hold.seats);
        break;
    case TG_WIRE_SEATS_HOLD_BEST:
        m->seats_hold_best.booking_id = gen_booking_id(v);
        m->seats_hold_best.user_id = pick(v, 0, TG_WIRE_ID_MAX);
        m->seats_hold_best.quantity = (uint32_t)pick(v, 0, TG_BOOKING_SEATS_MAX);
        m->seats_hold_best.section = (int32_t)pick_i(v, -1, TG_SECTIONS_MAX - 1);
        m->seats_hold_best.adjacent_only = v == V_MAX || (v == V_RANDOM && rnd() % 2);
        break;
    case TG_WIRE_PAYMENT_CONFIRM: /* same layout: payment_fail */
    case TG_WIRE_PAYMENT_FAIL:
        m->payment_confirm.booking_id = gen_booking_id(v);
        break;
    case TG_WIRE_SEATS_BLOCK: /* same layout: seats_unblock */
    case TG_WIRE_SEATS_UNBLOCK:
        m->seats_block.partition_id = (uint32_t)pick(v, 0, TG_PARTITION_ID_MAX);
        gen_seat_ids(v, &m->seats_block.seats);
        break;
    case TG_WIRE_SEAT_GET:
        m->seat_get.partition_id = (uint32_t)pick(v, 0, TG_PARTITION_ID_MAX);
        m->seat_get.seat_id = (uint32_t)pick(v, 0, SEAT_ID_MAX);
        break;
    case TG_WIRE_SEATS_LIST:
        m->seats_list.partition_id = (uint32_t)pick(v, 0, TG_PARTITION_ID_MAX);
        m->seats_list.first_seat = (uint32_t)pick(v, 0, TG_PARTITION_SEATS_MAX);
        m->seats_list.count = (uint32_t)pick(v, 0, TG_WIRE_SEATS_LIST_MAX);
        m->seats_list.state = (int32_t)pick_i(v, -1, TG_SEAT_STATE_COUNT - 1);
        m->seats_list.row = (int32_t)pick_i(v, -1, TG_ROWS_MAX - 1);
        m->seats_list.section = (int32_t)pick_i(v, -1, TG_SECTIONS_MAX - 1);
        break;
    case TG_WIRE_AVAILABILITY: /* same layout: partition_info, layout, seat_states */
    case TG_WIRE_PARTITION_INFO:
    case TG_WIRE_LAYOUT:
    case TG_WIRE_SEAT_STATES:
        m->availability.partition_id = (uint32_t)pick(v, 0, TG_PARTITION_ID_MAX);
        break;
    case TG_WIRE_PARTITION_RESET:
        m->partition_reset.partition_id = (uint32_t)pick(v, 0, TG_PARTITION_ID_MAX);
        break;
    case TG_WIRE_LOG_READ:
        m->log_read.partition_id = (uint32_t)pick(v, 0, TG_PARTITION_ID_MAX);
        m->log_read.from_seq = pick(v, 1, TG_WIRE_ID_MAX);
        m->log_read.max = (uint32_t)pick(v, 0, TG_WIRE_LOG_RECORDS_MAX);
        break;
    case TG_WIRE_LOG_ACK:
        m->log_ack.partition_id = (uint32_t)pick(v, 0, TG_PARTITION_ID_MAX);
        m->log_ack.seq = pick(v, 0, TG_WIRE_ID_MAX);
        break;
    case TG_WIRE_PARTITION_CREATE:
        gen_partition_create(v, m);
        break;
    case TG_WIRE_PARTITION_RESTORE:
        gen_partition_restore(v, m);
        break;
    case TG_WIRE_REPL_BACKUPS:
        gen_repl_backups(v, m);
        break;
    case TG_WIRE_REPL_APPEND:
        gen_repl_append(v, m);
        break;
    case TG_WIRE_REPL_SNAPSHOT:
        gen_repl_snapshot(v, m);
        break;
    case TG_WIRE_REPL_STATUS:
        m->repl_status.partition_id = (uint32_t)pick(v, 0, TG_PARTITION_ID_MAX);
        break;
    default:
        break;
    }
}

/* seat_count seats of random states (V_MAX: the largest partition, every
 * nibble at its highest state). */
static void gen_seat_states_ok(int v, tg_msg *m)
{
    m->seat_states_ok.from_seq = pick(v, 1, TG_WIRE_ID_MAX);
    m->seat_states_ok.epoch = pick(v, 0, TG_WIRE_ID_MAX);
    m->seat_states_ok.seat_count =
        (uint32_t)pick(v, 0, v == V_RANDOM ? 200 : TG_PARTITION_SEATS_MAX);
    uint32_t n = m->seat_states_ok.seat_count;
    m->seat_states_ok.state_count = (n + TG_WIRE_STATES_PER_WORD - 1) / TG_WIRE_STATES_PER_WORD;
    m->seat_states_ok.states = src_states;
    for (uint32_t i = 0; i < m->seat_states_ok.state_count; i++) {
        uint64_t packed = 0;
        for (uint32_t k = 0; k < TG_WIRE_STATES_PER_WORD && i * 16 + k < n; k++) {
            packed |= (uint64_t)pick(v, 0, TG_SEAT_STATE_COUNT - 1) << (4 * k);
        }
        src_states[i].packed = packed;
    }
}

static void gen_availability_ok(int v, tg_msg *m)
{
    m->availability_ok.log_head = pick(v, 0, TG_WIRE_ID_MAX);
    gen_counts(v, &m->availability_ok.totals);
    m->availability_ok.section_count = pick_count(v, TG_SECTIONS_MAX);
    for (uint32_t i = 0; i < m->availability_ok.section_count; i++) {
        gen_counts(v, &m->availability_ok.sections[i]);
    }
    m->availability_ok.row_count = pick_count(v, TG_ROWS_MAX);
    m->availability_ok.rows = src_counts;
    for (uint32_t i = 0; i < m->availability_ok.row_count; i++) {
        gen_counts(v, &src_counts[i]);
    }
}

static void gen_partition_info_ok(int v, tg_msg *m)
{
    m->partition_info_ok.partition_id = (uint32_t)pick(v, 0, TG_PARTITION_ID_MAX);
    m->partition_info_ok.event_id = pick(v, 0, TG_WIRE_ID_MAX);
    m->partition_info_ok.seat_count = (uint32_t)pick(v, 0, TG_PARTITION_SEATS_MAX);
    m->partition_info_ok.section_count = (uint32_t)pick(v, 0, TG_SECTIONS_MAX);
    m->partition_info_ok.row_count = (uint32_t)pick(v, 0, TG_ROWS_MAX);
    m->partition_info_ok.booking_capacity = (uint32_t)pick(v, 0, TG_BOOKINGS_MAX);
    m->partition_info_ok.log_records = (uint32_t)pick(v, 0, TG_LOG_RECORDS_MAX);
    m->partition_info_ok.hold_ttl_ms = (uint32_t)pick(v, 0, UINT32_MAX);
    m->partition_info_ok.payment_window_ms = (uint32_t)pick(v, 0, UINT32_MAX);
    m->partition_info_ok.segment_bytes = pick(v, 0, UINT64_MAX);
    m->partition_info_ok.map_epoch = pick(v, 0, TG_WIRE_ID_MAX);
    m->partition_info_ok.bookings_created = pick(v, 0, UINT64_MAX);
    m->partition_info_ok.log_head = pick(v, 0, TG_WIRE_ID_MAX);
    m->partition_info_ok.log_persisted = pick(v, 0, m->partition_info_ok.log_head);
}

static void gen_layout_ok(int v, tg_msg *m)
{
    m->layout_ok.section_count = pick_count(v, TG_SECTIONS_MAX);
    for (uint32_t i = 0; i < m->layout_ok.section_count; i++) {
        tg_wire_section *s = &m->layout_ok.sections[i];
        gen_text(v, s->name, sizeof(s->name));
        s->price_minor = pick_i(v, 0, INT64_MAX);
        gen_text(v, s->currency, sizeof(s->currency));
        s->row_first = (uint32_t)pick(v, 0, TG_ROWS_MAX);
        s->row_count = (uint32_t)pick(v, 0, TG_ROWS_MAX);
        s->seat_first = (uint32_t)pick(v, 0, TG_PARTITION_SEATS_MAX);
        s->seat_count = (uint32_t)pick(v, 0, TG_PARTITION_SEATS_MAX);
    }
    m->layout_ok.row_count = pick_count(v, TG_ROWS_MAX);
    m->layout_ok.rows = src_rows;
    for (uint32_t i = 0; i < m->layout_ok.row_count; i++) {
        gen_text(v, src_rows[i].name, sizeof(src_rows[i].name));
        src_rows[i].section = (uint32_t)pick(v, 0, TG_SECTIONS_MAX - 1);
        src_rows[i].seat_first = (uint32_t)pick(v, 0, TG_PARTITION_SEATS_MAX);
        src_rows[i].seat_count = (uint32_t)pick(v, 0, TG_ROW_SEATS_MAX);
    }
}

static void gen_stats_ok(int v, tg_msg *m)
{
    uint32_t pairs = TG_WIRE_REQUEST_COUNT * TG_ERR_COUNT_;
    uint32_t start = (uint32_t)(v == V_RANDOM ? rnd() % pairs : 0);
    m->stats_ok.partitions = (uint32_t)pick(v, 0, UINT32_MAX);
    m->stats_ok.log_depth = pick(v, 0, UINT64_MAX);
    m->stats_ok.oldest_unpersisted_age_ms = pick(v, 0, UINT64_MAX);
    m->stats_ok.op_count = pick_count(v, TG_WIRE_STATS_OPS_MAX);
    for (uint32_t i = 0; i < m->stats_ok.op_count; i++) {
        uint32_t pair = (start + i * 31u) % pairs; /* 31 is prime to 26 * 30: all distinct */
        m->stats_ok.ops[i].type = 1 + pair / TG_ERR_COUNT_;
        m->stats_ok.ops[i].code = pair % TG_ERR_COUNT_;
        m->stats_ok.ops[i].count = pick(v, 0, UINT64_MAX);
    }
}

static void gen_log_read_ok(int v, tg_msg *m)
{
    uint32_t n = pick_count(v, TG_WIRE_LOG_RECORDS_MAX);
    uint64_t first = v == V_MAX ? TG_WIRE_ID_MAX - n + 1 : pick(v, 1, 1u << 30);
    m->log_read_ok.map_epoch = pick(v, 0, TG_WIRE_ID_MAX);
    m->log_read_ok.record_count = n;
    m->log_read_ok.records = src_records;
    m->log_read_ok.log_head = n == 0 ? pick(v, 0, TG_WIRE_ID_MAX) : first + n - 1;
    for (uint32_t i = 0; i < n; i++) {
        tg_wire_log_record *r = &src_records[i];
        r->seq = first + i;
        r->kind = (uint32_t)pick(v, 0, 2);
        r->ident = (uint32_t)pick(v, 0, UINT32_MAX);
        r->status = (uint32_t)pick(v, 0, TG_BOOKING_STATUS_COUNT - 1);
        r->word = r->kind == 1 ? gen_word(v) : pick(v, 0, UINT64_MAX);
        r->deadline_ms = pick_i(v, INT64_MIN, INT64_MAX);
        r->created_ms = pick_i(v, INT64_MIN, INT64_MAX);
        r->version = (uint32_t)pick(v, 0, UINT32_MAX);
    }
}

static void gen_repl_status_ok(int v, tg_msg *m)
{
    __typeof__(m->repl_status_ok) *st = &m->repl_status_ok;
    st->role = (uint32_t)pick(v, 0, TG_REPL_ROLE_COUNT - 1);
    st->epoch = pick(v, 0, TG_WIRE_ID_MAX);
    st->log_head = pick(v, 0, TG_WIRE_ID_MAX);
    st->acked_seq = pick(v, 0, TG_WIRE_ID_MAX);
    st->link_count = pick_count(v, TG_GRID_BACKUPS_MAX);
    for (uint32_t i = 0; i < st->link_count; i++) {
        tg_wire_repl_link *l = &st->links[i];
        snprintf(l->name, sizeof(l->name), "pu%u", i);
        l->state = (uint32_t)pick(v, 0, TG_REPL_LINK_STATE_COUNT - 1);
        l->acked_seq = pick(v, 0, TG_WIRE_ID_MAX);
        l->records_sent = pick(v, 0, UINT64_MAX);
        l->snapshots = pick(v, 0, UINT64_MAX);
        l->snapshot_items = pick(v, 0, UINT64_MAX);
    }
}

static void gen_replies(int v, tg_msg *m)
{
    switch (m->type) {
    case TG_WIRE_ERROR:
        m->error.code = (uint32_t)pick(v, 1, TG_ERR_COUNT_ - 1);
        gen_text(v, m->error.message, sizeof(m->error.message));
        gen_seat_ids(v, &m->error.seats);
        break;
    case TG_WIRE_BOOKING_CREATE_OK:
    case TG_WIRE_BOOKING_GET_OK:
        gen_booking(v, &m->booking_create_ok);
        break;
    case TG_WIRE_SEATS_HOLD_OK: /* same layout: seats_hold_best_ok */
    case TG_WIRE_SEATS_HOLD_BEST_OK:
        gen_seat_ids(v, &m->seats_hold_ok.seats);
        m->seats_hold_ok.deadline_ms = pick_i(v, INT64_MIN, INT64_MAX);
        break;
    case TG_WIRE_PAYMENT_BEGIN_OK:
        m->payment_begin_ok.deadline_ms = pick_i(v, INT64_MIN, INT64_MAX);
        break;
    case TG_WIRE_SEAT_GET_OK:
        gen_seat(v, &m->seat_get_ok.seat);
        break;
    case TG_WIRE_SEATS_LIST_OK:
        m->seats_list_ok.next_seat = (uint32_t)pick(v, 0, TG_PARTITION_SEATS_MAX);
        m->seats_list_ok.seat_count = pick_count(v, TG_WIRE_SEATS_LIST_MAX);
        m->seats_list_ok.seats = src_seats;
        for (uint32_t i = 0; i < m->seats_list_ok.seat_count; i++) {
            gen_seat(v, &src_seats[i]);
        }
        break;
    case TG_WIRE_AVAILABILITY_OK:
        gen_availability_ok(v, m);
        break;
    case TG_WIRE_SEAT_STATES_OK:
        gen_seat_states_ok(v, m);
        break;
    case TG_WIRE_PARTITION_INFO_OK:
        gen_partition_info_ok(v, m);
        break;
    case TG_WIRE_LAYOUT_OK:
        gen_layout_ok(v, m);
        break;
    case TG_WIRE_STATS_OK:
        gen_stats_ok(v, m);
        break;
    case TG_WIRE_LOG_READ_OK:
        gen_log_read_ok(v, m);
        break;
    case TG_WIRE_PARTITION_RESET_OK: /* wire.md: 4,194,304 bookings, 16 seats each */
        m->partition_reset_ok.bookings_cancelled = (uint32_t)pick(v, 0, 4194304);
        m->partition_reset_ok.seats_freed = (uint32_t)pick(v, 0, 4194304 * 16);
        break;
    case TG_WIRE_REPL_APPEND_OK:
        m->repl_append_ok.epoch = pick(v, 0, TG_WIRE_ID_MAX);
        m->repl_append_ok.applied_seq = pick(v, 0, TG_WIRE_ID_MAX);
        break;
    case TG_WIRE_REPL_STATUS_OK:
        gen_repl_status_ok(v, m);
        break;
    default:
        break;
    }
}

static void gen_event(int v, tg_msg *m)
{
    m->seat_changes.partition_id = (uint32_t)pick(v, 0, TG_PARTITION_ID_MAX);
    m->seat_changes.from_seq = pick(v, 1, TG_WIRE_ID_MAX);
    m->seat_changes.to_seq = pick(v, m->seat_changes.from_seq,
                                  v == V_RANDOM ? m->seat_changes.from_seq + 100 : TG_WIRE_ID_MAX);
    m->seat_changes.change_count = pick_count(v, TG_WIRE_CHANGES_MAX);
    m->seat_changes.changes = src_changes;
    for (uint32_t i = 0; i < m->seat_changes.change_count; i++) {
        src_changes[i].seat_id = (uint32_t)pick(v, 0, SEAT_ID_MAX);
        src_changes[i].word = gen_word(v);
    }
}

/* ---- The grid manager's messages (wire.md, "The grid manager") --------- */

/* A unit name, unique in the list by its "m<i>-" prefix. */
static void gen_name(int v, uint32_t i, char *dst, size_t cap)
{
    int n = snprintf(dst, cap, "m%u-", i);
    gen_text(v, dst + n, cap - (size_t)n);
}

static void gen_members(int v, bool status, uint32_t *count, tg_wire_member **out)
{
    *count = pick_count(v, TG_GRID_MEMBERS_MAX);
    *out = src_members;
    for (uint32_t i = 0; i < *count; i++) {
        tg_wire_member *m = &src_members[i];
        memset(m, 0, sizeof(*m));
        gen_name(v, i, m->name, sizeof(m->name));
        gen_text(v, m->rep_url, sizeof(m->rep_url));
        gen_text(v, m->pub_url, sizeof(m->pub_url));
        gen_text(v, m->zone, sizeof(m->zone));
        m->state = (uint32_t)pick(v, 0, TG_MEMBER_STATE_COUNT - 1);
        if (status) {
            m->incarnation = pick(v, 0, TG_WIRE_ID_MAX);
            m->heard_age_ms = pick_i(v, -1, INT64_MAX);
            m->map_epoch = pick(v, 0, TG_WIRE_ID_MAX);
        }
    }
}

/* Backups: distinct members other than the primary. */
static void gen_backups(int v, uint32_t members, int32_t primary, tg_wire_member_refs *b)
{
    uint32_t room = members - (primary >= 0 ? 1u : 0u);
    uint32_t want = pick_count(v, TG_GRID_BACKUPS_MAX);
    b->count = 0;
    for (uint32_t m = 0; m < members && b->count < want && b->count < room; m++) {
        bool take = v != V_RANDOM || rnd() % 2 == 0;
        if (take && (int32_t)m != primary) {
            b->members[b->count++] = m;
        }
    }
}

static void gen_placements(int v, bool status, uint32_t members, uint32_t *count,
                           tg_wire_placement **out)
{
    uint32_t n = pick_count(v, TG_GRID_PARTITIONS_MAX);
    uint32_t id = v == V_MAX ? TG_PARTITION_ID_MAX - (n > 0 ? n - 1 : 0) : (uint32_t)pick(v, 0, 9);
    *count = n;
    *out = src_placements;
    for (uint32_t i = 0; i < n; i++) {
        tg_wire_placement *p = &src_placements[i];
        memset(p, 0, sizeof(*p));
        p->partition_id = id;
        id += v == V_RANDOM ? 1 + (uint32_t)(rnd() % 1000) : 1;
        p->event_id = pick(v, 0, TG_WIRE_ID_MAX);
        p->epoch = pick(v, 0, TG_WIRE_ID_MAX);
        p->primary = members == 0 ? -1 : (int32_t)pick_i(v, -1, (int64_t)members - 1);
        gen_backups(v, members, p->primary, &p->backups);
        if (status) {
            p->state = (uint32_t)pick(v, 0, TG_PLACEMENT_STATE_COUNT - 1);
            p->held_epoch = pick(v, 0, TG_WIRE_ID_MAX);
            p->log_head = pick(v, 0, TG_WIRE_ID_MAX);
            p->log_persisted = pick(v, 0, p->log_head);
            p->unpersisted_age_ms = pick(v, 0, UINT64_MAX);
            p->backups_reported = (uint32_t)pick(v, 0, p->backups.count);
            p->backups_in_sync = (uint32_t)pick(v, 0, p->backups_reported);
            p->backups_applied = pick(v, 0, TG_WIRE_ID_MAX);
        }
    }
}

static void gen_held(int v, bool registering, uint32_t *count, tg_wire_held **out)
{
    uint32_t n = pick_count(v, TG_PU_PARTITIONS_MAX);
    uint32_t id = v == V_MAX ? TG_PARTITION_ID_MAX - (n > 0 ? n - 1 : 0) : (uint32_t)pick(v, 0, 9);
    *count = n;
    *out = src_held;
    for (uint32_t i = 0; i < n; i++) {
        tg_wire_held *h = &src_held[i];
        memset(h, 0, sizeof(*h));
        h->partition_id = id;
        id += v == V_RANDOM ? 1 + (uint32_t)(rnd() % 1000) : 1;
        h->event_id = registering ? pick(v, 0, TG_WIRE_ID_MAX) : 0;
        h->epoch = pick(v, 0, TG_WIRE_ID_MAX);
        h->log_head = pick(v, 0, TG_WIRE_ID_MAX);
        h->log_persisted = pick(v, 0, h->log_head);
        h->unpersisted_age_ms = registering ? 0 : pick(v, 0, UINT64_MAX);
        h->role = registering ? TG_WIRE_HELD_PRIMARY : (uint32_t)pick(v, 0, TG_WIRE_HELD_BACKUP);
        h->in_sync = !registering && (v == V_MAX || (v == V_RANDOM && rnd() % 2));
    }
}

static void gen_grid(int v, tg_msg *m)
{
    uint32_t interval = (uint32_t)pick(v, 10, 60000);
    uint32_t timeout = (uint32_t)pick(v, 2 * interval, 600000);
    switch (m->type) {
    case TG_WIRE_GRID_MAP:
        m->grid_map.epoch = pick(v, 0, TG_WIRE_ID_MAX);
        gen_text(v, m->grid_map.manager, sizeof(m->grid_map.manager));
        gen_members(v, false, &m->grid_map.member_count, &m->grid_map.members);
        gen_placements(v, false, m->grid_map.member_count, &m->grid_map.placement_count,
                       &m->grid_map.placements);
        break;
    case TG_WIRE_PU_REGISTER:
        gen_name(v, 1, m->pu_register.name, sizeof(m->pu_register.name));
        m->pu_register.incarnation = pick(v, 1, TG_WIRE_ID_MAX);
        gen_name(v, 2, m->pu_register.rep_url, sizeof(m->pu_register.rep_url));
        gen_text(v, m->pu_register.pub_url, sizeof(m->pu_register.pub_url));
        gen_text(v, m->pu_register.zone, sizeof(m->pu_register.zone));
        gen_held(v, true, &m->pu_register.held_count, &m->pu_register.held);
        break;
    case TG_WIRE_HEARTBEAT:
        gen_name(v, 1, m->heartbeat.name, sizeof(m->heartbeat.name));
        m->heartbeat.incarnation = pick(v, 1, TG_WIRE_ID_MAX);
        m->heartbeat.map_epoch = pick(v, 0, TG_WIRE_ID_MAX);
        gen_held(v, false, &m->heartbeat.held_count, &m->heartbeat.held);
        break;
    case TG_WIRE_PU_REMOVE:
        gen_name(v, 3, m->pu_remove.name, sizeof(m->pu_remove.name));
        break;
    case TG_WIRE_PU_REGISTER_OK:
        gen_text(v, m->pu_register_ok.manager, sizeof(m->pu_register_ok.manager));
        gen_text(v, m->pu_register_ok.pub_url, sizeof(m->pu_register_ok.pub_url));
        m->pu_register_ok.map_epoch = pick(v, 0, TG_WIRE_ID_MAX);
        m->pu_register_ok.heartbeat_interval_ms = v == V_MAX ? 60000 : interval;
        m->pu_register_ok.failure_timeout_ms = timeout;
        break;
    case TG_WIRE_HEARTBEAT_OK:
        m->heartbeat_ok.map_epoch = pick(v, 0, TG_WIRE_ID_MAX);
        m->heartbeat_ok.leave = v == V_MAX || (v == V_RANDOM && rnd() % 2);
        break;
    case TG_WIRE_GRID_STATUS_OK: {
        __typeof__(m->grid_status_ok) *s = &m->grid_status_ok;
        gen_text(v, s->manager, sizeof(s->manager));
        s->map_epoch = pick(v, 0, TG_WIRE_ID_MAX);
        s->heartbeat_interval_ms = interval;
        s->failure_timeout_ms = timeout;
        gen_members(v, true, &s->member_count, &s->members);
        gen_placements(v, true, s->member_count, &s->placement_count, &s->placements);
        break;
    }
    case TG_WIRE_PU_ADD:
        gen_name(v, 4, m->pu_add.name, sizeof(m->pu_add.name));
        break;
    case TG_WIRE_PU_DRAIN:
        gen_name(v, 5, m->pu_drain.name, sizeof(m->pu_drain.name));
        break;
    case TG_WIRE_PARTITION_MOVE:
        m->partition_move.partition_id = (uint32_t)pick(v, 0, TG_PARTITION_ID_MAX);
        gen_name(v, 6, m->partition_move.to, sizeof(m->partition_move.to));
        break;
    case TG_WIRE_PU_ADD_OK:
    case TG_WIRE_PARTITION_MOVE_OK:
    case TG_WIRE_REBALANCE_OK:
    case TG_WIRE_PU_DRAIN_OK:
        m->moves_ok.pending = (uint32_t)pick(v, 0, TG_GRID_PARTITIONS_MAX);
        m->moves_ok.started = (uint32_t)pick(v, 0, m->moves_ok.pending);
        m->moves_ok.held = (uint32_t)pick(v, 0, TG_GRID_PARTITIONS_MAX);
        break;
    default: /* grid_status, pu_remove_ok, rebalance: no fields */
        break;
    }
}

/* A valid message of type t; V_MIN/V_MAX put every field at its bound. */
static void gen(tg_wire_type t, int v, tg_msg *m)
{
    memset(m, 0, sizeof(*m));
    m->type = t;
    if (t <= TG_WIRE_REQUEST_LAST) {
        gen_requests(v, m);
    } else if (t == TG_WIRE_SEAT_CHANGES) {
        gen_event(v, m);
    } else if (t >= TG_WIRE_GRID_MAP) {
        gen_grid(v, m);
    } else {
        gen_replies(v, m);
    }
}

/* ---- Helpers ------------------------------------------------------------ */

static tg_msg msg_a, msg_b, msg_c;
static msgpack_sbuffer sb, sb2;

static void buffers_init(void)
{
    msgpack_sbuffer_init(&sb);
    msgpack_sbuffer_init(&sb2);
}

static void buffers_fini(void)
{
    msgpack_sbuffer_destroy(&sb);
    msgpack_sbuffer_destroy(&sb2);
}

TestSuite(wire, .init = buffers_init, .fini = buffers_fini);
TestSuite(wire_reject, .init = buffers_init, .fini = buffers_fini);
TestSuite(wire_robust, .init = buffers_init, .fini = buffers_fini);

static void encode_ok(const tg_msg *m, msgpack_sbuffer *out)
{
    const char *why = NULL;
    tg_err err = tg_wire_encode(m, out, &why);
    cr_assert_eq(err, TG_OK, "encode %s: %s", tg_wire_type_name(m->type), why ? why : "?");
    cr_assert_null(why);
    cr_assert_leq(out->size, TG_WIRE_MESSAGE_BYTES_MAX);
}

/* msgpack-c itself reads the bytes as one array [type, version, ...]. */
static void assert_msgpack_c_reads(const msgpack_sbuffer *buf, tg_wire_type type)
{
    msgpack_zone zone;
    msgpack_object obj;
    size_t off = 0;
    msgpack_zone_init(&zone, 4096);
    int rc = msgpack_unpack(buf->data, buf->size, &off, &zone, &obj);
    cr_assert_eq(rc, MSGPACK_UNPACK_SUCCESS, "msgpack-c: %d", rc);
    cr_assert_eq(off, buf->size);
    cr_assert_eq(obj.type, MSGPACK_OBJECT_ARRAY);
    cr_assert_geq(obj.via.array.size, 2);
    cr_assert_eq(obj.via.array.ptr[0].type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    cr_assert_eq(obj.via.array.ptr[0].via.u64, (uint64_t)type);
    cr_assert_eq(obj.via.array.ptr[1].via.u64, TG_WIRE_VERSION);
    msgpack_zone_destroy(&zone);
}

/* encode → decode → equal → encode to the same bytes → msgpack-c reads it. */
static void assert_round_trip(const tg_msg *m)
{
    const char *why = "unset";
    encode_ok(m, &sb);
    tg_err err = tg_wire_decode(sb.data, sb.size, &full_space, &msg_c, &why);
    cr_assert_eq(err, TG_OK, "decode %s: %s", tg_wire_type_name(m->type), why ? why : "?");
    cr_assert_null(why);
    cr_assert(tg_wire_equal(m, &msg_c), "%s differs after a round trip",
              tg_wire_type_name(m->type));
    encode_ok(&msg_c, &sb2);
    cr_assert_eq(sb.size, sb2.size);
    cr_assert_eq(memcmp(sb.data, sb2.data, sb.size), 0, "re-encoding changed the bytes");
    assert_msgpack_c_reads(&sb, m->type);
}

static size_t hex_to_bytes(const char *hex, uint8_t *out, size_t cap)
{
    size_t n = 0;
    for (const char *p = hex; *p != '\0';) {
        if (*p == ' ') {
            p++;
            continue;
        }
        unsigned byte = 0;
        cr_assert_eq(sscanf(p, "%2x", &byte), 1, "bad hex in test: %s", hex);
        cr_assert_lt(n, cap);
        out[n++] = (uint8_t)byte;
        p += 2;
    }
    return n;
}

static uint8_t raw[TG_WIRE_MESSAGE_BYTES_MAX + 64];

static void expect_reject_bytes(const uint8_t *buf, size_t len, const tg_wire_space *space,
                                const char *expected, const char *label)
{
    const char *why = NULL;
    msg_c.type = TG_WIRE_STATS;
    tg_err err = tg_wire_decode(buf, len, space, &msg_c, &why);
    cr_assert_eq(err, TG_EPROTO, "%s: accepted", label);
    cr_assert_eq(msg_c.type, TG_WIRE_NONE, "%s", label);
    cr_assert_not_null(why, "%s", label);
    cr_assert_str_eq(why, expected, "%s", label);
}

static void expect_reject(const char *hex, const char *expected)
{
    size_t n = hex_to_bytes(hex, raw, sizeof(raw));
    expect_reject_bytes(raw, n, &full_space, expected, hex);
}

static void expect_accept(const char *hex, tg_msg *out)
{
    const char *why = NULL;
    size_t n = hex_to_bytes(hex, raw, sizeof(raw));
    tg_err err = tg_wire_decode(raw, n, &full_space, out, &why);
    cr_assert_eq(err, TG_OK, "%s: %s", hex, why ? why : "?");
}

/* Packs [type, version, ...] headers and fields with msgpack-c. */
static msgpack_packer pk;

static void pack_start(uint32_t fields, uint32_t type)
{
    msgpack_sbuffer_clear(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 2 + fields);
    msgpack_pack_uint32(&pk, type);
    msgpack_pack_uint32(&pk, TG_WIRE_VERSION);
}

static void expect_reject_sb(const char *expected)
{
    expect_reject_bytes((const uint8_t *)sb.data, sb.size, &full_space, expected, expected);
}

/* ---- Round trips -------------------------------------------------------- */

Test(wire, every_message_type_round_trips_at_its_lower_bounds)
{
    for (size_t i = 0; i < TYPE_COUNT; i++) {
        gen(all_types[i], V_MIN, &msg_a);
        assert_round_trip(&msg_a);
    }
}

Test(wire, every_message_type_round_trips_at_its_upper_bounds)
{
    for (size_t i = 0; i < TYPE_COUNT; i++) {
        gen(all_types[i], V_MAX, &msg_a);
        assert_round_trip(&msg_a);
    }
}

Test(wire, random_messages_of_every_type_round_trip)
{
    rnd_seed(20260101);
    for (int k = 0; k < 300; k++) {
        for (size_t i = 0; i < TYPE_COUNT; i++) {
            gen(all_types[i], V_RANDOM, &msg_a);
            assert_round_trip(&msg_a);
        }
    }
}

Test(wire, the_largest_messages_fit_the_message_bound)
{
    static const tg_wire_type big[] = {
        TG_WIRE_AVAILABILITY_OK, TG_WIRE_LAYOUT_OK, TG_WIRE_LOG_READ_OK,    TG_WIRE_SEATS_LIST_OK,
        TG_WIRE_STATS_OK,        TG_WIRE_SEAT_CHANGES, TG_WIRE_GRID_MAP, TG_WIRE_GRID_STATUS_OK,
        TG_WIRE_PU_REGISTER,     TG_WIRE_HEARTBEAT};
    for (size_t i = 0; i < sizeof(big) / sizeof(big[0]); i++) {
        gen(big[i], V_MAX, &msg_a);
        encode_ok(&msg_a, &sb);
        cr_log_info("%s at its bounds: %zu bytes", tg_wire_type_name(big[i]), sb.size);
        cr_assert_lt(sb.size, TG_WIRE_MESSAGE_BYTES_MAX / 2);
    }
}

/* A whole partition of the largest size in one seat_states_ok: 2^16 words
 * of 16 seats, about 640 KB — inside the bound, though not inside half. */
Test(wire, a_whole_largest_partition_fits_one_seat_states_reply)
{
    gen(TG_WIRE_SEAT_STATES_OK, V_MAX, &msg_a);
    cr_assert_eq(msg_a.seat_states_ok.state_count, TG_WIRE_STATES_MAX);
    encode_ok(&msg_a, &sb);
    cr_log_info("seat_states_ok at its bounds: %zu bytes", sb.size);
    cr_assert_lt(sb.size, TG_WIRE_MESSAGE_BYTES_MAX);
    cr_assert_eq(tg_wire_decode(sb.data, sb.size, &full_space, &msg_b, NULL), TG_OK);
    cr_assert(tg_wire_equal(&msg_a, &msg_b));
}

/* The nibble order: seat 16i + k is bits 4k..4k+3 of word i. */
Test(wire, seat_states_pack_sixteen_seats_per_word_low_nibble_first)
{
    /* from_seq 1, 3 seats: FREE, SOLD, BLOCKED = 0x430; epoch 5. */
    expect_accept("96 5b 01 01 03 91 91 cd 04 30 05", &msg_b);
    cr_assert_eq(msg_b.seat_states_ok.seat_count, 3);
    cr_assert_eq(msg_b.seat_states_ok.states[0].packed, 0x430u);
    cr_assert_eq(msg_b.seat_states_ok.epoch, 5u);
}

Test(wire, encoding_is_the_shortest_msgpack_form)
{
    msg_a.type = TG_WIRE_BOOKING_CREATE;
    msg_a.booking_create.partition_id = 7;
    msg_a.booking_create.user_id = 42;
    encode_ok(&msg_a, &sb);
    cr_assert_eq(sb.size, 5);
    cr_assert_eq(memcmp(sb.data, "\x94\x01\x01\x07\x2a", 5), 0);

    memset(&msg_a, 0, sizeof(msg_a));
    msg_a.type = TG_WIRE_SEATS_HOLD_BEST;
    msg_a.seats_hold_best.booking_id = tg_booking_id_make(1, 2);
    msg_a.seats_hold_best.user_id = 300;
    msg_a.seats_hold_best.quantity = 4;
    msg_a.seats_hold_best.section = -1;
    msg_a.seats_hold_best.adjacent_only = true;
    encode_ok(&msg_a, &sb);
    uint8_t want[32];
    size_t n =
        hex_to_bytes("97 04 01 cf 00 00 00 01 00 00 00 02 cd 01 2c 04 ff c3", want, sizeof(want));
    cr_assert_eq(sb.size, n);
    cr_assert_eq(memcmp(sb.data, want, n), 0);
}

Test(wire, longer_integer_string_and_array_forms_are_accepted)
{
    /* user_id 42 as uint8, uint64 and int8; partition 7 as int64. */
    expect_accept("94 01 01 07 cc 2a", &msg_a);
    cr_assert_eq(msg_a.booking_create.user_id, 42);
    expect_accept("94 01 01 07 cf 00 00 00 00 00 00 00 2a", &msg_a);
    cr_assert_eq(msg_a.booking_create.user_id, 42);
    expect_accept("94 01 01 d3 00 00 00 00 00 00 00 07 d0 2a", &msg_a);
    cr_assert_eq(msg_a.booking_create.partition_id, 7);
    cr_assert_eq(msg_a.booking_create.user_id, 42);
    /* The top-level array as array16 and array32; the type as uint16. */
    expect_accept("dc 00 04 01 01 07 2a", &msg_a);
    expect_accept("dd 00 00 00 04 cd 00 01 01 07 2a", &msg_a);
    cr_assert_eq(msg_a.type, TG_WIRE_BOOKING_CREATE);
    /* An error message as str8 and str16; negative section as int64. */
    expect_accept("95 40 01 17 d9 02 68 69 90", &msg_a);
    cr_assert_str_eq(msg_a.error.message, "hi");
    expect_accept("95 40 01 17 da 00 02 68 69 90", &msg_a);
    cr_assert_str_eq(msg_a.error.message, "hi");
    expect_accept("97 04 01 01 01 02 d3 ff ff ff ff ff ff ff ff c2", &msg_a);
    cr_assert_eq(msg_a.seats_hold_best.section, -1);
}

Test(wire, boundary_values_are_accepted)
{
    expect_accept("94 01 01 ce 00 1f ff ff cf 00 1f ff ff ff ff ff ff", &msg_a);
    cr_assert_eq(msg_a.booking_create.partition_id, TG_PARTITION_ID_MAX);
    cr_assert_eq(msg_a.booking_create.user_id, TG_WIRE_ID_MAX);
    expect_accept("95 03 01 01 01 91 ce 00 0f ff ff", &msg_a);
    cr_assert_eq(msg_a.seats_hold.seats.ids[0], TG_PARTITION_SEATS_MAX - 1);
    expect_accept("97 04 01 01 01 10 3f c2", &msg_a);
    cr_assert_eq(msg_a.seats_hold_best.quantity, TG_BOOKING_SEATS_MAX);
    cr_assert_eq(msg_a.seats_hold_best.section, TG_SECTIONS_MAX - 1);
    expect_accept("95 40 01 1d a0 90", &msg_a); /* 29: the last code */
    cr_assert_eq(msg_a.error.code, TG_ERR_COUNT_ - 1);
}

Test(wire, types_have_names_and_requests_map_to_their_replies)
{
    for (size_t i = 0; i < TYPE_COUNT; i++) {
        cr_assert_not_null(tg_wire_type_name(all_types[i]));
    }
    cr_assert_str_eq(tg_wire_type_name(TG_WIRE_SEATS_HOLD), "seats_hold");
    cr_assert_str_eq(tg_wire_type_name(TG_WIRE_SEATS_HOLD_OK), "seats_hold_ok");
    cr_assert_str_eq(tg_wire_type_name(TG_WIRE_ERROR), "error");
    cr_assert_str_eq(tg_wire_type_name(TG_WIRE_SEAT_CHANGES), "seat_changes");
    cr_assert_null(tg_wire_type_name(TG_WIRE_NONE));
    cr_assert_null(tg_wire_type_name((tg_wire_type)(TG_WIRE_REQUEST_LAST + 1)));
    cr_assert_null(tg_wire_type_name((tg_wire_type)300));
    for (unsigned t = TG_WIRE_BOOKING_CREATE; t <= TG_WIRE_REQUEST_LAST; t++) {
        tg_wire_type reply = tg_wire_reply_type((tg_wire_type)t);
        cr_assert_eq(reply, t + 64);
        const char *req = tg_wire_type_name((tg_wire_type)t);
        char want[64];
        snprintf(want, sizeof(want), "%s_ok", req);
        cr_assert_str_eq(tg_wire_type_name(reply), want);
    }
    cr_assert_eq(tg_wire_reply_type(TG_WIRE_NONE), TG_WIRE_NONE);
    cr_assert_eq(tg_wire_reply_type(TG_WIRE_ERROR), TG_WIRE_NONE);
    cr_assert_eq(tg_wire_reply_type(TG_WIRE_SEATS_HOLD_OK), TG_WIRE_NONE);
}

Test(wire, partition_reset_and_its_reply_have_the_documented_layout)
{
    memset(&msg_a, 0, sizeof(msg_a));
    msg_a.type = TG_WIRE_PARTITION_RESET;
    msg_a.partition_reset.partition_id = 7;
    encode_ok(&msg_a, &sb);
    cr_assert_eq(sb.size, 4);
    cr_assert_eq(memcmp(sb.data, "\x93\x16\x01\x07", 4), 0, "[22, 1, partition_id]");
    assert_round_trip(&msg_a);
    cr_assert_eq(tg_wire_reply_type(TG_WIRE_PARTITION_RESET), TG_WIRE_PARTITION_RESET_OK);
    cr_assert_str_eq(tg_wire_type_name(TG_WIRE_PARTITION_RESET), "partition_reset");

    memset(&msg_a, 0, sizeof(msg_a));
    msg_a.type = TG_WIRE_PARTITION_RESET_OK;
    msg_a.partition_reset_ok.bookings_cancelled = 3;
    msg_a.partition_reset_ok.seats_freed = 300;
    encode_ok(&msg_a, &sb);
    uint8_t want[8];
    size_t n = hex_to_bytes("94 56 01 03 cd 01 2c", want, sizeof(want));
    cr_assert_eq(sb.size, n);
    cr_assert_eq(memcmp(sb.data, want, n), 0, "[86, 1, bookings_cancelled, seats_freed]");
    assert_round_trip(&msg_a);

    expect_accept("93 16 01 ce 00 1f ff ff", &msg_a);
    cr_assert_eq(msg_a.partition_reset.partition_id, TG_PARTITION_ID_MAX);
    expect_accept("94 56 01 ce 00 40 00 00 ce 04 00 00 00", &msg_a);
    cr_assert_eq(msg_a.partition_reset_ok.bookings_cancelled, TG_BOOKINGS_MAX);
    cr_assert_eq(msg_a.partition_reset_ok.seats_freed, TG_BOOKINGS_MAX * TG_BOOKING_SEATS_MAX);
}

Test(wire, events_carry_the_partition_as_a_big_endian_topic)
{
    uint8_t topic[TG_WIRE_TOPIC_BYTES];
    tg_wire_topic(0x1abcde, topic);
    cr_assert_eq(memcmp(topic, "\x00\x1a\xbc\xde", 4), 0);

    rnd_seed(7);
    for (int k = 0; k < 200; k++) {
        gen(TG_WIRE_SEAT_CHANGES, k == 0 ? V_MAX : V_RANDOM, &msg_a);
        const char *why = "unset";
        cr_assert_eq(tg_wire_encode_event(&msg_a, &sb, &why), TG_OK);
        tg_wire_topic(msg_a.seat_changes.partition_id, topic);
        cr_assert_eq(memcmp(sb.data, topic, 4), 0);
        cr_assert_eq(tg_wire_decode_event(sb.data, sb.size, &full_space, &msg_b, &why), TG_OK, "%s",
                     why ? why : "?");
        cr_assert(tg_wire_equal(&msg_a, &msg_b));
        /* The body alone is an ordinary message. */
        cr_assert_eq(tg_wire_decode(sb.data + 4, sb.size - 4, &full_space, &msg_b, &why), TG_OK);
    }
}

Test(wire, error_replies_are_made_from_any_text)
{
    tg_wire_error(&msg_a, TG_ESEAT_TAKEN, NULL);
    cr_assert_eq(msg_a.type, TG_WIRE_ERROR);
    cr_assert_eq(msg_a.error.code, TG_ESEAT_TAKEN);
    cr_assert_str_eq(msg_a.error.message, tg_strerror(TG_ESEAT_TAKEN));
    cr_assert_eq(msg_a.error.seats.count, 0);
    assert_round_trip(&msg_a);

    char long_text[600];
    memset(long_text, 'a', sizeof(long_text) - 1);
    long_text[sizeof(long_text) - 1] = '\0';
    tg_wire_error(&msg_a, TG_EPROTO, long_text);
    cr_assert_eq(strlen(msg_a.error.message), TG_WIRE_STRING_BYTES_MAX);
    assert_round_trip(&msg_a);

    /* 255 ASCII bytes, then a two-byte character that would cross 256. */
    memset(long_text, 'a', 255);
    memcpy(long_text + 255, "\xc3\xa9zz", 5);
    tg_wire_error(&msg_a, TG_EPROTO, long_text);
    cr_assert_eq(strlen(msg_a.error.message), 255);
    assert_round_trip(&msg_a);

    tg_wire_error(&msg_a, TG_EINVAL, "bad \xff byte \xc3\x28 and \xed\xa0\x80 end");
    cr_assert_str_eq(msg_a.error.message, "bad ? byte ?( and ??? end");
    assert_round_trip(&msg_a);
}

Test(wire, taken_seats_travel_in_the_error_reply)
{
    tg_wire_error(&msg_a, TG_ESEAT_TAKEN, NULL);
    msg_a.error.seats.count = 3;
    msg_a.error.seats.ids[0] = 4;
    msg_a.error.seats.ids[1] = 9;
    msg_a.error.seats.ids[2] = TG_PARTITION_SEATS_MAX - 1;
    assert_round_trip(&msg_a);
    cr_assert_eq(msg_c.error.seats.count, 3);
    cr_assert_eq(msg_c.error.seats.ids[2], TG_PARTITION_SEATS_MAX - 1);
}

Test(wire, equality_sees_every_field)
{
    rnd_seed(99);
    for (size_t i = 0; i < TYPE_COUNT; i++) {
        gen(all_types[i], V_MAX, &msg_a);
        encode_ok(&msg_a, &sb);
        cr_assert_eq(tg_wire_decode(sb.data, sb.size, &full_space, &msg_b, NULL), TG_OK);
        cr_assert(tg_wire_equal(&msg_a, &msg_b));
        /* Flip a byte inside the body's last field: a different message. */
        uint8_t *last = (uint8_t *)sb.data + sb.size - 1;
        if (sb.size <= 3) {
            continue; /* no fields */
        }
        *last ^= 0x01;
        if (tg_wire_decode(sb.data, sb.size, &full_space, &msg_b, NULL) == TG_OK) {
            cr_assert_not(tg_wire_equal(&msg_a, &msg_b), "%s", tg_wire_type_name(all_types[i]));
        }
    }
    msg_b = msg_a;
    msg_b.type = TG_WIRE_STATS;
    cr_assert_not(tg_wire_equal(&msg_a, &msg_b));
}

/* ---- Rejections: each class, with its exact sentence -------------------- */

Test(wire_reject, input_that_is_not_a_message_array)
{
    expect_reject("", "message is empty");
    expect_reject("01", "message is not an array");
    expect_reject("80", "message is not an array");
    expect_reject("c1", "message is not an array");
    expect_reject("a3 61 62 63", "message is not an array");
    expect_reject("90", "message has no type and version");
    expect_reject("91 01", "message has no type and version");
    expect_reject("92 a1 78 01", "message type is not an unsigned integer");
    expect_reject("92 c0 01", "message type is not an unsigned integer");
    expect_reject("92 91 01 01", "message type is not an unsigned integer");
}

Test(wire_reject, unknown_message_types)
{
    expect_reject("92 00 01", "unknown message type");
    expect_reject("92 1c 01", "unknown message type");    /* 28: after the last request */
    expect_reject("92 5c 01", "unknown message type");    /* 92: after the last reply */
    expect_reject("92 cc 81 01", "unknown message type"); /* 129 */
    expect_reject("92 cd 01 00 01", "unknown message type");
    expect_reject("92 cf 00 00 01 00 00 00 00 11 01", "unknown message type");
    expect_reject("92 ff 01", "unknown message type"); /* -1 */
    expect_reject("92 d0 ef 01", "unknown message type");
}

Test(wire_reject, wrong_versions)
{
    expect_reject("92 11 00", "unsupported message version");
    expect_reject("92 11 02", "unsupported message version");
    expect_reject("92 11 ff", "unsupported message version");
    expect_reject("92 11 cf ff ff ff ff ff ff ff ff", "unsupported message version");
    expect_reject("92 11 a1 31", "message version is not an unsigned integer");
    expect_reject("92 11 c3", "message version is not an unsigned integer");
}

Test(wire_reject, wrong_arity)
{
    expect_reject("93 11 01 00", "stats: wrong number of fields");
    expect_reject("93 01 01 07", "booking_create: wrong number of fields");
    expect_reject("95 01 01 07 2a 00", "booking_create: wrong number of fields");
    expect_reject("dd ff ff ff ff 01 01", "booking_create: wrong number of fields");
    expect_reject("93 45 01 00", "seats_release_ok: wrong number of fields");
    /* Nested arrays of the wrong length. */
    expect_reject("94 4d 01 00 91 90", "seats_list_ok.seats[]: wrong number of fields");
    expect_reject("96 4e 01 00 94 00 00 00 00 90 90",
                  "availability_ok.totals: wrong number of fields");
}

Test(wire_reject, wrong_field_types)
{
    expect_reject("94 01 01 07 a1 78", "booking_create.user_id: not an unsigned integer");
    expect_reject("94 01 01 07 c0", "booking_create.user_id: not an unsigned integer");
    expect_reject("94 01 01 07 c3", "booking_create.user_id: not an unsigned integer");
    expect_reject("94 01 01 07 cb 40 45 00 00 00 00 00 00",
                  "booking_create.user_id: not an unsigned integer");
    expect_reject("94 01 01 07 c4 01 2a", "booking_create.user_id: not an unsigned integer");
    expect_reject("94 01 01 07 d4 01 2a", "booking_create.user_id: not an unsigned integer");
    expect_reject("94 01 01 07 80", "booking_create.user_id: not an unsigned integer");
    expect_reject("93 02 01 a1 78", "booking_get: wrong number of fields");
    expect_reject("94 02 01 a1 78 01", "booking_get.booking_id: not an unsigned integer");
    expect_reject("97 04 01 01 01 02 ff 01", "seats_hold_best.adjacent_only: not a boolean");
    expect_reject("97 04 01 01 01 02 c2 c2", "seats_hold_best.section: not an integer");
    expect_reject("95 03 01 01 01 05", "seats_hold.seats: not an array of seat ids");
    expect_reject("95 03 01 01 01 91 a1 78", "seats_hold.seats: not an array of seat ids");
    expect_reject("95 40 01 17 c4 01 61 90", "error.message: not a string");
    expect_reject("95 40 01 17 01 90", "error.message: not a string");
    expect_reject("94 4d 01 00 91 05", "seats_list_ok.seats: not an array");
    expect_reject("94 4d 01 00 91 96 a1 78 00 00 00 01 00",
                  "seats_list_ok.seats[].seat_id: not an unsigned integer");
    expect_reject("96 4e 01 00 00 90 90", "availability_ok.totals: not an array");
}

Test(wire_reject, nesting_deeper_than_the_schema)
{
    expect_reject("94 01 01 91 07 2a", "booking_create.partition_id: not an unsigned integer");
    expect_reject("95 03 01 01 01 91 91 01", "seats_hold.seats: not an array of seat ids");
    expect_reject("94 4d 01 00 91 96 91 00 00 00 00 01 00",
                  "seats_list_ok.seats[].seat_id: not an unsigned integer");
    /* A hundred thousand nested arrays where the user id belongs. */
    size_t n = hex_to_bytes("94 01 01 07", raw, sizeof(raw));
    memset(raw + n, 0x91, 100000);
    raw[n + 100000] = 0x2a;
    expect_reject_bytes(raw, n + 100001, &full_space,
                        "booking_create.user_id: not an unsigned integer", "deep");
    memset(raw, 0x91, 100000);
    expect_reject_bytes(raw, 100000, &full_space, "message has no type and version", "deep2");
}

Test(wire_reject, integers_out_of_range)
{
    expect_reject("94 01 01 ce 00 20 00 00 2a", "booking_create.partition_id: out of range");
    expect_reject("94 01 01 ff 2a", "booking_create.partition_id: out of range");
    expect_reject("94 01 01 07 ff", "booking_create.user_id: out of range");
    expect_reject("94 01 01 07 d3 80 00 00 00 00 00 00 00", "booking_create.user_id: out of range");
    expect_reject("94 01 01 07 cf 00 20 00 00 00 00 00 00", "booking_create.user_id: out of range");
    expect_reject("94 01 01 07 cf ff ff ff ff ff ff ff ff", "booking_create.user_id: out of range");
    expect_reject("94 02 01 cf 00 20 00 00 00 00 00 01 01", "booking_get.booking_id: out of range");
    expect_reject("94 02 01 ff 01", "booking_get.booking_id: out of range");
    expect_reject("94 02 01 cf 00 00 00 01 00 00 00 00 01",
                  "booking_get.booking_id: booking sequence is 0");
    expect_reject("94 02 01 00 01", "booking_get.booking_id: booking sequence is 0");
    expect_reject("97 04 01 01 01 11 ff c2", "seats_hold_best.quantity: out of range");
    expect_reject("97 04 01 01 01 02 fe c2", "seats_hold_best.section: out of range");
    expect_reject("97 04 01 01 01 02 40 c2", "seats_hold_best.section: out of range");
    expect_reject("97 04 01 01 01 02 cf ff ff ff ff ff ff ff ff c2",
                  "seats_hold_best.section: out of range");
    expect_reject("97 04 01 01 01 02 d3 80 00 00 00 00 00 00 00 c2",
                  "seats_hold_best.section: out of range");
    expect_reject("95 03 01 01 01 91 ce 00 10 00 00", "seats_hold.seats: seat id out of range");
    expect_reject("95 03 01 01 01 91 ff", "seats_hold.seats: seat id out of range");
    expect_reject("94 0c 01 00 ce 00 10 00 00", "seat_get.seat_id: out of range");
    expect_reject("98 0d 01 00 00 cd 03 e9 ff ff ff", "seats_list.count: out of range");
    expect_reject("98 0d 01 00 00 01 05 ff ff", "seats_list.state: out of range");
    expect_reject("98 0d 01 00 00 01 ff cd 20 00 ff", "seats_list.row: out of range");
    expect_reject("98 0d 01 00 ce 00 10 00 01 01 ff ff ff", "seats_list.first_seat: out of range");
    expect_reject("95 12 01 00 00 01", "log_read.from_seq: out of range");
    expect_reject("95 12 01 00 01 cd 10 01", "log_read.max: out of range");
    expect_reject("95 40 01 00 a0 90", "error.code: out of range");
    expect_reject("95 40 01 1e a0 90", "error.code: out of range");
    expect_reject("99 41 01 01 01 00 00 00 00 90", "booking_create_ok.status: out of range");
    expect_reject("99 41 01 01 01 07 00 00 00 90", "booking_create_ok.status: out of range");
    expect_reject("99 41 01 01 01 01 cf 00 00 00 01 00 00 00 00 00 00 90",
                  "booking_create_ok.version: out of range");
    expect_reject("98 4c 01 00 cf a0 00 00 00 00 00 00 00 00 00 01 00",
                  "seat_get_ok.seat.word: seat word has no valid state");
    expect_reject("98 4c 01 00 00 00 00 00 00", "seat_get_ok.seat.number: out of range");
    expect_reject("98 4c 01 00 00 00 00 01 ff", "seat_get_ok.seat.price_minor: out of range");
    expect_reject("98 4c 01 00 00 40 00 01 00", "seat_get_ok.seat.section: out of range");
}

Test(wire_reject, bad_strings)
{
    char hex[2048];
    /* 256 bytes is the bound; 257 is one too many. */
    int at = snprintf(hex, sizeof(hex), "95 40 01 17 d9 ff");
    for (int i = 0; i < 255; i++) {
        at += snprintf(hex + at, sizeof(hex) - (size_t)at, " 61");
    }
    snprintf(hex + at, sizeof(hex) - (size_t)at, " 90");
    expect_accept(hex, &msg_a);
    cr_assert_eq(strlen(msg_a.error.message), 255);
    at = snprintf(hex, sizeof(hex), "95 40 01 17 da 01 00");
    for (int i = 0; i < 256; i++) {
        at += snprintf(hex + at, sizeof(hex) - (size_t)at, " 61");
    }
    snprintf(hex + at, sizeof(hex) - (size_t)at, " 90");
    expect_accept(hex, &msg_a);
    cr_assert_eq(strlen(msg_a.error.message), 256);
    at = snprintf(hex, sizeof(hex), "95 40 01 17 da 01 01");
    for (int i = 0; i < 257; i++) {
        at += snprintf(hex + at, sizeof(hex) - (size_t)at, " 61");
    }
    snprintf(hex + at, sizeof(hex) - (size_t)at, " 90");
    expect_reject(hex, "error.message: too long");
    expect_reject("95 40 01 17 db ff ff ff ff", "error.message: too long");
    expect_reject("95 40 01 17 a1 00 90", "error.message: not UTF-8 text without NUL");
    expect_reject("95 40 01 17 a2 c3 28 90", "error.message: not UTF-8 text without NUL");
    expect_reject("95 40 01 17 a2 c0 80 90", "error.message: not UTF-8 text without NUL");
    expect_reject("95 40 01 17 a3 ed a0 80 90", "error.message: not UTF-8 text without NUL");
    expect_reject("95 40 01 17 a4 f4 90 80 80 90", "error.message: not UTF-8 text without NUL");
    expect_reject("95 40 01 17 a1 ff 90", "error.message: not UTF-8 text without NUL");
    expect_reject("95 40 01 17 a4 f5 80 80 80 90", "error.message: not UTF-8 text without NUL");
    expect_reject("95 40 01 17 a3 e0 80 80 90", "error.message: not UTF-8 text without NUL");
    expect_reject("95 40 01 17 a2 80 80 90", "error.message: not UTF-8 text without NUL");
    expect_accept("95 40 01 17 a4 f4 8f bf bf 90", &msg_a); /* U+10FFFF */
    expect_accept("95 40 01 17 a3 ef bf bf 90", &msg_a);    /* U+FFFF */
    expect_reject("95 40 01 17 a1 e2 90", "error.message: not UTF-8 text without NUL");
    /* Layout names are char[32]: 31 bytes fit, 32 do not. */
    pack_start(2, TG_WIRE_LAYOUT_OK);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_array(&pk, 7);
    msgpack_pack_str_with_body(&pk, "0123456789012345678901234567890x", 32);
    for (int i = 0; i < 6; i++) {
        msgpack_pack_uint32(&pk, 1);
    }
    msgpack_pack_array(&pk, 0);
    expect_reject_sb("layout_ok.sections[].name: too long");
    pack_start(2, TG_WIRE_LAYOUT_OK);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_array(&pk, 7);
    msgpack_pack_str_with_body(&pk, "A", 1);
    msgpack_pack_uint32(&pk, 1);
    msgpack_pack_str_with_body(&pk, "EURO", 4);
    expect_reject_sb("layout_ok.sections[].currency: too long");
}

Test(wire_reject, oversized_arrays)
{
    pack_start(3, TG_WIRE_SEATS_HOLD);
    msgpack_pack_uint64(&pk, 1);
    msgpack_pack_uint64(&pk, 1);
    msgpack_pack_array(&pk, TG_BOOKING_SEATS_MAX + 1);
    for (unsigned i = 0; i <= TG_BOOKING_SEATS_MAX; i++) {
        msgpack_pack_uint32(&pk, i);
    }
    expect_reject_sb("seats_hold.seats: too many seat ids");
    expect_reject("95 03 01 01 01 dd ff ff ff ff", "seats_hold.seats: too many seat ids");
    expect_reject("94 4d 01 00 dc 03 e9", "seats_list_ok.seats: too many items");
    expect_reject("96 4e 01 00 95 00 00 00 00 00 90 dc 20 01",
                  "availability_ok.rows: too many items");
    expect_reject("96 4e 01 00 95 00 00 00 00 00 dc 00 41",
                  "availability_ok.sections: too many items");
    expect_reject("95 52 01 00 00 dc 10 01", "log_read_ok.records: too many items");
    expect_reject("96 cc 80 01 00 01 01 dd 00 00 10 01", "seat_changes.changes: too many items");
    /* one more than 22 request types x 30 codes */
    char too_many[64];
    snprintf(too_many, sizeof(too_many), "96 51 01 00 00 00 dc %02x %02x",
             (TG_WIRE_STATS_OPS_MAX + 1) >> 8, (TG_WIRE_STATS_OPS_MAX + 1) & 0xff);
    expect_reject(too_many, "stats_ok.ops: too many items");
    expect_reject("94 50 01 90 dd 00 00 20 01", "layout_ok.rows: too many items");
}

Test(wire_reject, arrays_larger_than_the_receivers_space)
{
    /* availability_ok with 3 rows. */
    const char *hex = "96 4e 01 00 95 00 00 00 00 00 90 93 95 01 01 01 01 01 95 02 02 02 02 02 "
                      "95 03 03 03 03 03";
    size_t n = hex_to_bytes(hex, raw, sizeof(raw));
    tg_wire_counts rows[5];
    memset(rows, 0xaa, sizeof(rows));
    tg_wire_space small = {.counts = rows, .counts_capacity = 2};
    expect_reject_bytes(raw, n, &small,
                        "availability_ok.rows: more items than the receiver has room for", "cap 2");
    expect_reject_bytes(raw, n, NULL,
                        "availability_ok.rows: more items than the receiver has room for",
                        "no space");
    for (size_t i = 0; i < sizeof(rows); i++) {
        cr_assert_eq(((uint8_t *)rows)[i], 0xaa, "the decoder wrote before checking room");
    }
    small.counts_capacity = 3;
    cr_assert_eq(tg_wire_decode(raw, n, &small, &msg_a, NULL), TG_OK);
    cr_assert_eq(msg_a.availability_ok.row_count, 3);
    cr_assert_eq(msg_a.availability_ok.rows, rows);
    cr_assert_eq(rows[2].by_state[4], 3);
    cr_assert_eq(rows[3].by_state[0], 0xaaaaaaaau, "wrote past the rows it read");
    /* No space at all is fine for a message whose lists are empty. */
    cr_assert_eq(
        tg_wire_decode(raw, hex_to_bytes("96 4e 01 00 95 00 00 00 00 00 90 90", raw, sizeof(raw)),
                       NULL, &msg_a, NULL),
        TG_OK);
    cr_assert_eq(msg_a.availability_ok.row_count, 0);
}

Test(wire_reject, trailing_bytes_and_truncation)
{
    expect_reject("92 11 01 00", "trailing bytes after the message");
    expect_reject("94 01 01 07 2a 2a", "trailing bytes after the message");
    expect_reject("92 11 01 92 11 01", "trailing bytes after the message");
    expect_reject("dd 0f ff ff ff", "message is truncated");
    expect_reject("dc 00", "message is truncated");
    expect_reject("94 01 01 07", "message is truncated");
    expect_reject("94 01 01 07 cf 00 00", "message is truncated");
    expect_reject("95 40 01 17 a5 61 62", "message is truncated");
    expect_reject("95 40 01 17 db 00 00 00", "message is truncated");
    /* Larger than the bound, whatever it holds. */
    memset(raw, 0, TG_WIRE_MESSAGE_BYTES_MAX + 1);
    expect_reject_bytes(raw, TG_WIRE_MESSAGE_BYTES_MAX + 1, &full_space,
                        "message is larger than TG_WIRE_MESSAGE_BYTES_MAX", "big");
}

Test(wire_reject, replication_messages_that_break_the_schema)
{
    /* repl_append: partition 1, epoch 7, persisted 2, records 3 and 5. */
    expect_reject("97 18 01 01 07 02 92 98 03 00 00 00 00 00 00 00 98 05 00 00 00 00 00 00 00 c2",
                  "repl_append.records: sequence numbers are not consecutive");
    expect_reject("97 18 01 01 07 02 91 98 03 01 00 00 cf e0 00 00 00 00 00 00 00 00 00 00 c2",
                  "repl_append.records[].word: seat word has no valid state");
    expect_reject("97 18 01 01 07 02 91 98 00 00 00 00 00 00 00 00 c2",
                  "repl_append.records[].seq: out of range");
    expect_reject("97 18 01 01 07 02 91 97 03 00 00 00 00 00 00 c2",
                  "repl_append.records[]: wrong number of fields");
    expect_reject("97 18 01 01 07 02 c0 c2", "repl_append.records: not an array");
    expect_reject("97 18 01 01 d0 ff 02 90 c2", "repl_append.epoch: out of range");
    expect_reject("96 18 01 01 07 02 90", "repl_append: wrong number of fields");
    /* repl_backups: partition 1, epoch 2. */
    expect_reject("95 17 01 01 02 91 92 a0 a1 75", "repl_backups.backups[].name: empty");
    expect_reject("95 17 01 01 02 91 92 a1 62 a0", "repl_backups.backups[].rep_url: empty");
    expect_reject("95 17 01 01 02 92 92 a1 62 a1 75 92 a1 62 a1 76",
                  "repl_backups.backups: a name appears twice");
    expect_reject("95 17 01 01 02 99 92 a1 61 a1 75 92 a1 62 a1 75 92 a1 63 a1 75 92 a1 64 a1 75"
                  " 92 a1 65 a1 75 92 a1 66 a1 75 92 a1 67 a1 75 92 a1 68 a1 75 92 a1 69 a1 75",
                  "repl_backups.backups: too many items");
    /* repl_snapshot: partition 1, phase 3. */
    expect_reject("98 19 01 01 03 01 00 90 90", "repl_snapshot.phase: out of range");
    expect_reject("98 19 01 01 00 01 00 91 96 00 01 01 00 00 00 90",
                  "repl_snapshot.bookings[].booking_id: booking sequence is 0");
    expect_reject("98 19 01 01 00 01 00 90 91 92 00 cf e0 00 00 00 00 00 00 00",
                  "repl_snapshot.seats[].word: seat word has no valid state");
    /* repl_status_ok: a link in no known state, or without a name. */
    expect_reject("97 5a 01 00 01 00 00 91 96 a1 62 03 00 00 00 00",
                  "repl_status_ok.links[].state: out of range");
    expect_reject("97 5a 01 00 01 00 00 91 96 a0 00 00 00 00 00",
                  "repl_status_ok.links[].name: empty");
    expect_reject("97 5a 01 02 01 00 00 90", "repl_status_ok.role: out of range");
}

Test(wire_reject, rules_across_fields)
{
    /* log_read_ok: epoch 0, head 10, records 3 and 5. */
    expect_reject("95 52 01 00 0a 92 98 03 00 00 00 00 00 00 00 98 05 00 00 00 00 00 00 00",
                  "log_read_ok.records: sequence numbers are not consecutive");
    expect_reject("95 52 01 00 02 91 98 03 00 00 00 00 00 00 00",
                  "log_read_ok.records: beyond log_head");
    /* An unknown kind, or a seat word with no valid state, travels: the
     * persister rejects that record alone (malformed_log_records_...). */
    expect_accept("95 52 01 00 0a 91 98 03 03 00 00 00 00 00 00", &msg_a);
    cr_assert_eq(msg_a.log_read_ok.records[0].kind, 3);
    expect_accept("95 52 01 00 0a 91 98 03 01 00 00 cf e0 00 00 00 00 00 00 00 00 00 00", &msg_a);
    /* A booking record's word is a user id, whatever its top bits. */
    expect_accept("95 52 01 00 0a 91 98 03 02 00 01 cf e0 00 00 00 00 00 00 00 00 00 00", &msg_a);
    expect_reject("96 51 01 00 00 00 92 93 01 00 05 93 01 00 06",
                  "stats_ok.ops: a (type, code) pair appears twice");
    expect_reject("96 51 01 00 00 00 91 93 00 00 05", "stats_ok.ops[].type: out of range");
    expect_reject("96 51 01 00 00 00 91 93 1c 00 05", "stats_ok.ops[].type: out of range");
    /* seat_states_ok: 17 seats need two words; a nibble past the last
     * seat, or above BLOCKED, is refused. */
    expect_reject("96 5b 01 01 11 91 91 00 05", "seat_states_ok.states: not one word per 16 seats");
    expect_reject("96 5b 01 01 02 91 91 cd 03 00 05", "seat_states_ok.states[]: not a seat state");
    expect_reject("96 5b 01 01 02 91 91 05 05", "seat_states_ok.states[]: not a seat state");
    expect_reject("96 5b 01 00 02 91 91 01 05", "seat_states_ok.from_seq: out of range");
    expect_reject("96 51 01 00 00 00 91 93 01 1e 05", "stats_ok.ops[].code: out of range");
    expect_reject("96 cc 80 01 00 05 04 90", "seat_changes.from_seq: after to_seq");
    expect_reject("96 cc 80 01 00 00 04 90", "seat_changes.from_seq: out of range");
    gen(TG_WIRE_PARTITION_INFO_OK, V_MIN, &msg_a);
    msg_a.partition_info_ok.log_head = 5;
    msg_a.partition_info_ok.log_persisted = 5;
    encode_ok(&msg_a, &sb);
    /* The last byte is log_persisted: make it 6. */
    ((uint8_t *)sb.data)[sb.size - 1] = 6;
    expect_reject_sb("partition_info_ok.log_persisted: beyond log_head");
}

Test(wire_reject, malformed_partition_resets)
{
    expect_reject("92 16 01", "partition_reset: wrong number of fields");
    expect_reject("94 16 01 07 07", "partition_reset: wrong number of fields");
    expect_reject("93 16 01 a1 37", "partition_reset.partition_id: not an unsigned integer");
    expect_reject("93 16 01 c2", "partition_reset.partition_id: not an unsigned integer");
    expect_reject("93 16 01 91 07", "partition_reset.partition_id: not an unsigned integer");
    expect_reject("93 16 01 ce 00 20 00 00", "partition_reset.partition_id: out of range");
    expect_reject("93 16 01 ff", "partition_reset.partition_id: out of range");
    expect_reject("93 16 02 07", "unsupported message version");
    expect_reject("93 16 01", "message is truncated");
    expect_reject("93 16 01 07 07", "trailing bytes after the message");
    expect_reject("93 56 01 00", "partition_reset_ok: wrong number of fields");
    expect_reject("94 56 01 ce 00 40 00 01 00",
                  "partition_reset_ok.bookings_cancelled: out of range");
    expect_reject("94 56 01 00 ce 04 00 00 01", "partition_reset_ok.seats_freed: out of range");
    expect_reject("94 56 01 ff 00", "partition_reset_ok.bookings_cancelled: out of range");
    expect_reject("94 56 01 00 a1 31", "partition_reset_ok.seats_freed: not an unsigned integer");

    gen(TG_WIRE_PARTITION_RESET, V_MAX, &msg_a);
    msg_a.partition_reset.partition_id = TG_PARTITION_ID_MAX + 1;
    const char *why = NULL;
    cr_assert_eq(tg_wire_encode(&msg_a, &sb, &why), TG_EINVAL);
    cr_assert_str_eq(why, "partition_reset.partition_id: out of range");
    gen(TG_WIRE_PARTITION_RESET_OK, V_MAX, &msg_a);
    msg_a.partition_reset_ok.seats_freed++;
    cr_assert_eq(tg_wire_encode(&msg_a, &sb, &why), TG_EINVAL);
    cr_assert_str_eq(why, "partition_reset_ok.seats_freed: out of range");
}

Test(wire_reject, events_with_a_bad_topic)
{
    const char *why = NULL;
    cr_assert_eq(tg_wire_decode_event("\x00\x00", 2, NULL, &msg_a, &why), TG_EPROTO);
    cr_assert_str_eq(why, "event is shorter than its topic");
    gen(TG_WIRE_SEAT_CHANGES, V_MIN, &msg_a);
    msg_a.seat_changes.partition_id = 9;
    cr_assert_eq(tg_wire_encode_event(&msg_a, &sb, &why), TG_OK);
    ((uint8_t *)sb.data)[3] = 8;
    cr_assert_eq(tg_wire_decode_event(sb.data, sb.size, NULL, &msg_b, &why), TG_EPROTO);
    cr_assert_str_eq(why, "event topic differs from its partition_id");
    cr_assert_eq(msg_b.type, TG_WIRE_NONE);
    memcpy(raw, "\x00\x00\x00\x09\x92\x11\x01", 7);
    cr_assert_eq(tg_wire_decode_event(raw, 7, NULL, &msg_b, &why), TG_EPROTO);
    cr_assert_str_eq(why, "message is not an event");
    memcpy(raw, "\x00\x00\x00\x09\x92\x11\x02", 7);
    cr_assert_eq(tg_wire_decode_event(raw, 7, NULL, &msg_b, &why), TG_EPROTO);
    cr_assert_str_eq(why, "unsupported message version");
    gen(TG_WIRE_STATS, V_MIN, &msg_a);
    cr_assert_eq(tg_wire_encode_event(&msg_a, &sb, &why), TG_EINVAL);
    cr_assert_str_eq(why, "not an event");
    cr_assert_eq(sb.size, 0);
}

/* ---- The encoder refuses what the decoder would refuse ------------------- */

static void expect_encode_refuses(const tg_msg *m, const char *expected)
{
    const char *why = NULL;
    msgpack_sbuffer_write(&sb, "junk", 4);
    cr_assert_eq(tg_wire_encode(m, &sb, &why), TG_EINVAL, "%s", expected);
    cr_assert_str_eq(why, expected);
    cr_assert_eq(sb.size, 0, "a refused message leaves the buffer empty");
}

Test(wire, the_encoder_refuses_messages_that_break_the_schema)
{
    memset(&msg_a, 0, sizeof(msg_a));
    expect_encode_refuses(&msg_a, "unknown message type");
    msg_a.type = (tg_wire_type)200;
    expect_encode_refuses(&msg_a, "unknown message type");

    gen(TG_WIRE_SEATS_HOLD, V_MAX, &msg_a);
    msg_a.seats_hold.seats.count = TG_BOOKING_SEATS_MAX + 1;
    expect_encode_refuses(&msg_a, "seats_hold.seats: too many seat ids");
    msg_a.seats_hold.seats.count = 1;
    msg_a.seats_hold.seats.ids[0] = TG_PARTITION_SEATS_MAX;
    expect_encode_refuses(&msg_a, "seats_hold.seats: seat id out of range");
    msg_a.seats_hold.seats.ids[0] = 0;
    msg_a.seats_hold.booking_id = tg_booking_id_make(3, 0);
    expect_encode_refuses(&msg_a, "seats_hold.booking_id: booking sequence is 0");

    gen(TG_WIRE_BOOKING_CREATE, V_MAX, &msg_a);
    msg_a.booking_create.partition_id = TG_PARTITION_ID_MAX + 1;
    expect_encode_refuses(&msg_a, "booking_create.partition_id: out of range");
    gen(TG_WIRE_SEATS_HOLD_BEST, V_MAX, &msg_a);
    msg_a.seats_hold_best.section = -2;
    expect_encode_refuses(&msg_a, "seats_hold_best.section: out of range");

    tg_wire_error(&msg_a, TG_EINVAL, "x");
    memset(msg_a.error.message, 'a', sizeof(msg_a.error.message));
    expect_encode_refuses(&msg_a, "error.message: too long");
    strcpy(msg_a.error.message, "bad \xff");
    expect_encode_refuses(&msg_a, "error.message: not UTF-8 text without NUL");
    msg_a.error.code = TG_OK;
    strcpy(msg_a.error.message, "ok");
    expect_encode_refuses(&msg_a, "error.code: out of range");

    gen(TG_WIRE_AVAILABILITY_OK, V_MIN, &msg_a);
    msg_a.availability_ok.row_count = 2;
    msg_a.availability_ok.rows = NULL;
    expect_encode_refuses(&msg_a, "a list of items has a NULL pointer");
    msg_a.availability_ok.rows = src_counts;
    msg_a.availability_ok.row_count = TG_ROWS_MAX + 1;
    expect_encode_refuses(&msg_a, "availability_ok.rows: too many items");

    gen(TG_WIRE_STATS_OK, V_MIN, &msg_a);
    msg_a.stats_ok.op_count = 2;
    msg_a.stats_ok.ops[0] = (tg_wire_op_count){3, 4, 1};
    msg_a.stats_ok.ops[1] = (tg_wire_op_count){3, 4, 2};
    expect_encode_refuses(&msg_a, "stats_ok.ops: a (type, code) pair appears twice");
    msg_a.stats_ok.ops[1] = (tg_wire_op_count){0, 4, 2};
    expect_encode_refuses(&msg_a, "stats_ok.ops[].type: out of range");

    gen(TG_WIRE_LOG_READ_OK, V_MAX, &msg_a);
    src_records[7].seq++;
    expect_encode_refuses(&msg_a, "log_read_ok.records: sequence numbers are not consecutive");

    gen(TG_WIRE_SEAT_CHANGES, V_MIN, &msg_a);
    msg_a.seat_changes.from_seq = 2;
    expect_encode_refuses(&msg_a, "seat_changes.from_seq: after to_seq");
}

/* ---- Robustness: random input never crashes ------------------------------ */

/* Decodes buf; if it is accepted, it must survive a round trip. */
static int decode_any(const uint8_t *buf, size_t len)
{
    const char *why = NULL;
    tg_err err = tg_wire_decode(buf, len, &full_space, &msg_b, &why);
    if (err != TG_OK) {
        cr_assert_eq(err, TG_EPROTO);
        cr_assert_not_null(why);
        cr_assert_eq(msg_b.type, TG_WIRE_NONE);
        return 0;
    }
    cr_assert_null(why);
    msg_a = msg_b;
    encode_ok(&msg_a, &sb2);
    cr_assert_eq(tg_wire_decode(sb2.data, sb2.size, &full_space2, &msg_c, &why), TG_OK, "%s",
                 why ? why : "?");
    cr_assert(tg_wire_equal(&msg_a, &msg_c));
    return 1;
}

Test(wire_robust, random_bytes_decode_or_fail_cleanly)
{
    uint8_t buf[96];
    int accepted = 0;
    rnd_seed(0xfeedface);
    for (int k = 0; k < 50000; k++) {
        size_t len = rnd() % sizeof(buf);
        for (size_t i = 0; i < len; i++) {
            buf[i] = (uint8_t)rnd();
        }
        if (k % 2 == 1 && len >= 3) {
            /* Give half of them a plausible head, to get past it. */
            buf[0] = (uint8_t)(0x92 + rnd() % 8);
            buf[1] = (uint8_t)all_types[rnd() % TYPE_COUNT];
            buf[2] = 0x01;
            if (buf[1] >= 0x80) {
                memmove(buf + 2, buf + 1, len - 2);
                buf[1] = 0xcc;
            }
        }
        accepted += decode_any(buf, len);
    }
    cr_log_info("random bytes: %d of 50000 accepted", accepted);
    cr_assert_gt(accepted, 0, "no random message was ever valid: the generator is broken");
}

Test(wire_robust, every_truncation_of_a_valid_message_is_rejected)
{
    rnd_seed(12345);
    for (int k = 0; k < 20; k++) {
        for (size_t i = 0; i < TYPE_COUNT; i++) {
            gen(all_types[i], k == 0 ? V_MAX : V_RANDOM, &msg_a);
            encode_ok(&msg_a, &sb);
            size_t step = sb.size / 500 + 1; /* the huge ones: a sample of cuts */
            for (size_t len = 0; len < sb.size; len += step) {
                const char *why = NULL;
                tg_err err = tg_wire_decode(sb.data, len, &full_space, &msg_b, &why);
                cr_assert_eq(err, TG_EPROTO, "%s cut at %zu of %zu was accepted",
                             tg_wire_type_name(all_types[i]), len, sb.size);
                cr_assert_str_eq(why, len == 0 ? "message is empty" : "message is truncated");
            }
        }
    }
}

Test(wire_robust, bit_flips_of_valid_messages_decode_or_fail_cleanly)
{
    int accepted = 0, rejected = 0;
    static uint8_t copy[1 << 16];
    rnd_seed(0xb17f11b5);
    for (int k = 0; k < 150; k++) {
        for (size_t i = 0; i < TYPE_COUNT; i++) {
            gen(all_types[i], V_RANDOM, &msg_a);
            encode_ok(&msg_a, &sb);
            cr_assert_leq(sb.size, sizeof(copy));
            memcpy(copy, sb.data, sb.size);
            size_t len = sb.size;
            int flips = 1 + (int)(rnd() % 4);
            for (int f = 0; f < flips; f++) {
                size_t at = rnd() % len;
                copy[at] ^= (uint8_t)(1u << (rnd() % 8));
            }
            int ok = decode_any(copy, len);
            accepted += ok;
            rejected += !ok;
        }
    }
    cr_log_info("bit flips: %d accepted, %d rejected", accepted, rejected);
    cr_assert_gt(accepted, 0);
    cr_assert_gt(rejected, 0);
}

Test(wire_robust, spliced_and_shifted_messages_decode_or_fail_cleanly)
{
    static uint8_t copy[1 << 16];
    rnd_seed(0x5911ce);
    for (int k = 0; k < 100; k++) {
        for (size_t i = 0; i < TYPE_COUNT; i++) {
            gen(all_types[i], V_RANDOM, &msg_a);
            encode_ok(&msg_a, &sb);
            size_t len = sb.size;
            memcpy(copy, sb.data, len);
            size_t at = rnd() % len;
            switch (rnd() % 3) {
            case 0: /* delete a byte */
                memmove(copy + at, copy + at + 1, len - at - 1);
                len--;
                break;
            case 1: /* insert a random byte */
                memmove(copy + at + 1, copy + at, len - at);
                copy[at] = (uint8_t)rnd();
                len++;
                break;
            default: /* overwrite a byte with a msgpack tag */
                copy[at] = (uint8_t)(0xc0 + rnd() % 0x20);
                break;
            }
            decode_any(copy, len);
        }
    }
}

/* ---- The grid manager's messages ----------------------------------------- */

static void pack_str(const char *text)
{
    msgpack_pack_str(&pk, strlen(text));
    msgpack_pack_str_body(&pk, text, strlen(text));
}

/* [name, rep_url, pub_url, zone, state] as grid_map lists a member. */
static void pack_map_member(const char *name)
{
    msgpack_pack_array(&pk, 5);
    pack_str(name);
    pack_str("ipc:///tmp/x.rep");
    pack_str("");
    pack_str("");
    msgpack_pack_uint32(&pk, TG_MEMBER_ALIVE);
}

/* [partition_id, event_id, epoch, primary, backups] */
static void pack_map_placement(uint32_t id, int32_t primary, uint32_t backups,
                               const uint32_t *backup)
{
    msgpack_pack_array(&pk, 5);
    msgpack_pack_uint32(&pk, id);
    msgpack_pack_uint32(&pk, 1);
    msgpack_pack_uint32(&pk, 1);
    msgpack_pack_int32(&pk, primary);
    msgpack_pack_array(&pk, backups);
    for (uint32_t i = 0; i < backups; i++) {
        msgpack_pack_uint32(&pk, backup[i]);
    }
}

/* A grid_map of members "a", "b", "c" (or names) and the given placements. */
static void pack_map_head(const char *const *names, uint32_t members, uint32_t placements)
{
    pack_start(4, TG_WIRE_GRID_MAP);
    msgpack_pack_uint32(&pk, 9);
    pack_str("mgr");
    msgpack_pack_array(&pk, members);
    for (uint32_t i = 0; i < members; i++) {
        pack_map_member(names[i]);
    }
    msgpack_pack_array(&pk, placements);
}

static const char *const abc[] = {"a", "b", "c"};

Test(wire, grid_requests_map_to_their_replies_sixteen_types_on)
{
    static const struct {
        tg_wire_type request, reply;
        const char *name;
    } pairs[] = {
        {TG_WIRE_PU_REGISTER, TG_WIRE_PU_REGISTER_OK, "pu_register"},
        {TG_WIRE_HEARTBEAT, TG_WIRE_HEARTBEAT_OK, "heartbeat"},
        {TG_WIRE_GRID_STATUS, TG_WIRE_GRID_STATUS_OK, "grid_status"},
        {TG_WIRE_PU_REMOVE, TG_WIRE_PU_REMOVE_OK, "pu_remove"},
        {TG_WIRE_PU_ADD, TG_WIRE_PU_ADD_OK, "pu_add"},
        {TG_WIRE_PARTITION_MOVE, TG_WIRE_PARTITION_MOVE_OK, "partition_move"},
        {TG_WIRE_REBALANCE, TG_WIRE_REBALANCE_OK, "rebalance"},
        {TG_WIRE_PU_DRAIN, TG_WIRE_PU_DRAIN_OK, "pu_drain"},
    };
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        cr_assert_eq(tg_wire_reply_type(pairs[i].request), pairs[i].reply);
        cr_assert_eq(pairs[i].reply, pairs[i].request + 16);
        cr_assert_str_eq(tg_wire_type_name(pairs[i].request), pairs[i].name);
        char want[64];
        snprintf(want, sizeof(want), "%s_ok", pairs[i].name);
        cr_assert_str_eq(tg_wire_type_name(pairs[i].reply), want);
    }
    cr_assert_str_eq(tg_wire_type_name(TG_WIRE_GRID_MAP), "grid_map");
    cr_assert_eq(tg_wire_reply_type(TG_WIRE_GRID_MAP), TG_WIRE_NONE);
    cr_assert_eq(tg_wire_reply_type(TG_WIRE_HEARTBEAT_OK), TG_WIRE_NONE);
    cr_assert_eq(tg_wire_reply_type((tg_wire_type)169), TG_WIRE_NONE);
    cr_assert_null(tg_wire_type_name((tg_wire_type)169));
    cr_assert_null(tg_wire_type_name((tg_wire_type)185));
    cr_assert_null(tg_wire_type_name((tg_wire_type)192));
}

Test(wire, grid_messages_have_the_documented_layout)
{
    /* heartbeat ["pu1", incarnation 7, map epoch 3, [[5, 2, 10, 9, 0, 0, false]]] */
    memset(&msg_a, 0, sizeof(msg_a));
    tg_wire_held held = {.partition_id = 5, .epoch = 2, .log_head = 10, .log_persisted = 9};
    msg_a.type = TG_WIRE_HEARTBEAT;
    strcpy(msg_a.heartbeat.name, "pu1");
    msg_a.heartbeat.incarnation = 7;
    msg_a.heartbeat.map_epoch = 3;
    msg_a.heartbeat.held_count = 1;
    msg_a.heartbeat.held = &held;
    encode_ok(&msg_a, &sb);
    uint8_t want[64];
    size_t n = hex_to_bytes("96 cc a2 01 a3 70 75 31 07 03 91 97 05 02 0a 09 00 00 c2", want,
                            sizeof(want));
    cr_assert_eq(sb.size, n);
    cr_assert_eq(memcmp(sb.data, want, n), 0);
    assert_round_trip(&msg_a);

    /* grid_status has no fields; heartbeat_ok [epoch, leave]. */
    expect_accept("92 cc a3 01", &msg_a);
    cr_assert_eq(msg_a.type, TG_WIRE_GRID_STATUS);
    expect_accept("94 cc b2 01 05 c3", &msg_a);
    cr_assert_eq(msg_a.heartbeat_ok.map_epoch, 5);
    cr_assert(msg_a.heartbeat_ok.leave);

    /* A map: members a, b, c; partition 4 primary b (1), backups c and a. */
    pack_map_head(abc, 3, 1);
    pack_map_placement(4, 1, 2, (const uint32_t[]){2, 0});
    cr_assert_eq(tg_wire_decode(sb.data, sb.size, &full_space, &msg_a, NULL), TG_OK);
    cr_assert_eq(msg_a.grid_map.epoch, 9);
    cr_assert_str_eq(msg_a.grid_map.members[1].name, "b");
    cr_assert_eq(msg_a.grid_map.placements[0].primary, 1);
    cr_assert_eq(msg_a.grid_map.placements[0].backups.count, 2);
    cr_assert_eq(msg_a.grid_map.placements[0].backups.members[0], 2);
    assert_round_trip(&msg_a);
}

Test(wire, moving_partitions_have_the_documented_layout)
{
    /* partition_move [7, "b"]; rebalance has no fields; pu_drain ["a"]. */
    expect_accept("94 cc a6 01 07 a1 62", &msg_a);
    cr_assert_eq(msg_a.type, TG_WIRE_PARTITION_MOVE);
    cr_assert_eq(msg_a.partition_move.partition_id, 7);
    cr_assert_str_eq(msg_a.partition_move.to, "b");
    expect_accept("92 cc a7 01", &msg_a);
    cr_assert_eq(msg_a.type, TG_WIRE_REBALANCE);
    expect_accept("93 cc a8 01 a1 61", &msg_a);
    cr_assert_str_eq(msg_a.pu_drain.name, "a");
    /* pu_drain_ok [started 1, pending 2, held 3]; started above pending is refused. */
    expect_accept("95 cc b8 01 01 02 03", &msg_a);
    cr_assert_eq(msg_a.moves_ok.started, 1);
    cr_assert_eq(msg_a.moves_ok.pending, 2);
    cr_assert_eq(msg_a.moves_ok.held, 3);
    expect_reject("95 cc b8 01 03 02 00", "moves_ok.started: above pending");
    expect_reject("94 cc a6 01 07 a0", "partition_move.to: empty");
}

Test(wire, the_grid_map_is_published_under_its_own_topic)
{
    rnd_seed(31);
    for (int k = 0; k < 50; k++) {
        gen(TG_WIRE_GRID_MAP, k == 0 ? V_MAX : V_RANDOM, &msg_a);
        const char *why = "unset";
        cr_assert_eq(tg_wire_encode_event(&msg_a, &sb, &why), TG_OK, "%s", why ? why : "?");
        cr_assert_eq(memcmp(sb.data, "\xff\xff\xff\xff", 4), 0);
        cr_assert_eq(tg_wire_decode_event(sb.data, sb.size, &full_space, &msg_b, &why), TG_OK,
                     "%s", why ? why : "?");
        cr_assert(tg_wire_equal(&msg_a, &msg_b));
    }
    const char *why = NULL;
    ((uint8_t *)sb.data)[3] = 0xfe;
    cr_assert_eq(tg_wire_decode_event(sb.data, sb.size, &full_space, &msg_b, &why), TG_EPROTO);
    cr_assert_str_eq(why, "event topic is not the grid map's");
    /* A request of the manager is not an event. */
    memcpy(raw, "\xff\xff\xff\xff\x92\xcc\xa3\x01", 8);
    cr_assert_eq(tg_wire_decode_event(raw, 8, NULL, &msg_b, &why), TG_EPROTO);
    cr_assert_str_eq(why, "message is not an event");
}

Test(wire_reject, grid_maps_that_break_the_rules_across_fields)
{
    static const char *const twice[] = {"a", "a"};
    pack_map_head(twice, 2, 0);
    expect_reject_sb("grid_map.members: a name appears twice");
    static const char *const empty[] = {""};
    pack_map_head(empty, 1, 0);
    expect_reject_sb("grid_map.members[].name: empty");
    pack_map_head(abc, 3, 2);
    pack_map_placement(4, 0, 0, NULL);
    pack_map_placement(4, 1, 0, NULL);
    expect_reject_sb("grid_map.placements: partition ids are not ascending");
    pack_map_head(abc, 3, 1);
    pack_map_placement(4, 3, 0, NULL);
    expect_reject_sb("grid_map.placements[].primary: no such member");
    pack_map_head(abc, 3, 1);
    pack_map_placement(4, -2, 0, NULL);
    expect_reject_sb("grid_map.placements[].primary: out of range");
    pack_map_head(abc, 3, 1);
    pack_map_placement(4, 0, 1, (const uint32_t[]){3});
    expect_reject_sb("grid_map.placements[].backups: no such member");
    pack_map_head(abc, 3, 1);
    pack_map_placement(4, 0, 1, (const uint32_t[]){0});
    expect_reject_sb("grid_map.placements[].backups: a member appears twice or is the primary");
    pack_map_head(abc, 3, 1);
    pack_map_placement(4, -1, 2, (const uint32_t[]){2, 2});
    expect_reject_sb("grid_map.placements[].backups: a member appears twice or is the primary");
    pack_map_head(abc, 3, 1);
    pack_map_placement(4, -1, 1, (const uint32_t[]){TG_GRID_MEMBERS_MAX});
    expect_reject_sb("grid_map.placements[].backups: member index out of range");
    static const uint32_t nine[9] = {0, 1, 2, 3, 4, 5, 6, 7, 8};
    pack_map_head(abc, 3, 1);
    pack_map_placement(4, -1, 9, nine);
    expect_reject_sb("grid_map.placements[].backups: too many members");
    /* Backups where the array belongs, and inside it a non-integer. */
    pack_map_head(abc, 3, 1);
    msgpack_pack_array(&pk, 5);
    for (int i = 0; i < 4; i++) {
        msgpack_pack_uint32(&pk, 0);
    }
    msgpack_pack_uint32(&pk, 1);
    expect_reject_sb("grid_map.placements[].backups: not an array of member indices");
    pack_map_head(abc, 3, 1);
    msgpack_pack_array(&pk, 5);
    for (int i = 0; i < 4; i++) {
        msgpack_pack_uint32(&pk, 0);
    }
    msgpack_pack_array(&pk, 1);
    pack_str("a");
    expect_reject_sb("grid_map.placements[].backups: not an array of member indices");
    /* A member with a state that does not exist; a name too long. */
    pack_start(4, TG_WIRE_GRID_MAP);
    msgpack_pack_uint32(&pk, 1);
    pack_str("m");
    msgpack_pack_array(&pk, 1);
    msgpack_pack_array(&pk, 5);
    pack_str("a");
    pack_str("u");
    pack_str("");
    pack_str("");
    msgpack_pack_uint32(&pk, TG_MEMBER_STATE_COUNT);
    msgpack_pack_array(&pk, 0);
    expect_reject_sb("grid_map.members[].state: out of range");
    char long_name[TG_PU_NAME_BYTES + 1];
    memset(long_name, 'x', TG_PU_NAME_BYTES);
    long_name[TG_PU_NAME_BYTES] = '\0';
    const char *const too_long[] = {long_name};
    pack_map_head(too_long, 1, 0);
    expect_reject_sb("grid_map.members[].name: too long");
}

Test(wire_reject, unit_reports_that_break_the_rules_across_fields)
{
    /* pu_register ["pu1", 1, "u", "", "", [[5, 1, 1, 3, 4]]]: persisted beyond head. */
    expect_reject("98 cc a1 01 a3 70 75 31 01 a1 75 a0 a0 91 95 05 01 01 03 04",
                  "pu_register.held[].log_persisted: beyond log_head");
    expect_reject("98 cc a1 01 a3 70 75 31 01 a1 75 a0 a0 92 95 05 01 01 03 03 95 05 01 01 03 03",
                  "pu_register.held: partition ids are not ascending");
    expect_reject("98 cc a1 01 a0 01 a1 75 a0 a0 90", "pu_register.name: empty");
    expect_reject("98 cc a1 01 a1 70 01 a0 a0 a0 90", "pu_register.rep_url: empty");
    expect_reject("98 cc a1 01 a1 70 00 a1 75 a0 a0 90", "pu_register.incarnation: out of range");
    expect_reject("96 cc a2 01 a3 70 75 31 07 03 91 97 05 02 0a 0b 00 00 c2",
                  "heartbeat.held[].log_persisted: beyond log_head");
    expect_reject("96 cc a2 01 a0 07 03 90", "heartbeat.name: empty");
    expect_reject("96 cc a2 01 a3 70 75 31 07 03 91 96 05 02 0a 09 00 00",
                  "heartbeat.held[]: wrong number of fields");
    expect_reject("93 cc a4 01 a0", "pu_remove.name: empty");
    expect_reject("93 cc a4 01 01", "pu_remove.name: not a string");
    expect_reject("92 cc a4 01", "pu_remove: wrong number of fields");
    expect_reject("93 cc a3 01 00", "grid_status: wrong number of fields");
    /* pu_register_ok ["m", "p", 0, 100, 199]: a timeout shorter than two intervals. */
    expect_reject("97 cc b1 01 a1 6d a1 70 00 64 cc c7",
                  "pu_register_ok.failure_timeout_ms: shorter than two heartbeat intervals");
    expect_accept("97 cc b1 01 a1 6d a1 70 00 64 cc c8", &msg_a);
    expect_reject("97 cc b1 01 a1 6d a1 70 00 09 cc c8",
                  "pu_register_ok.heartbeat_interval_ms: out of range");
    expect_reject("94 cc b2 01 05 01", "heartbeat_ok.leave: not a boolean");
    /* A unit reporting more partitions than a unit may serve. */
    pack_start(4, TG_WIRE_HEARTBEAT);
    pack_str("pu1");
    msgpack_pack_uint32(&pk, 1);
    msgpack_pack_uint32(&pk, 0);
    msgpack_pack_array(&pk, TG_PU_PARTITIONS_MAX + 1);
    expect_reject_sb("heartbeat.held: too many items");
}

Test(wire_reject, grid_lists_larger_than_the_receivers_space)
{
    pack_map_head(abc, 3, 0);
    tg_wire_member members[2];
    tg_wire_space small = {.members = members, .members_capacity = 2};
    expect_reject_bytes((const uint8_t *)sb.data, sb.size, &small,
                        "grid_map.members: more items than the receiver has room for", "members");
    pack_map_head(abc, 0, 1);
    pack_map_placement(1, -1, 0, NULL);
    expect_reject_bytes((const uint8_t *)sb.data, sb.size, NULL,
                        "grid_map.placements: more items than the receiver has room for",
                        "placements");
    expect_reject_bytes((const uint8_t *)"\x96\xcc\xa2\x01\xa1\x70\x07\x03\x91\x95\x05\x02\x0a"
                                         "\x09\x00",
                        15, NULL, "heartbeat.held: more items than the receiver has room for",
                        "held");
}

Test(wire, the_encoder_refuses_grid_messages_that_break_the_schema)
{
    gen(TG_WIRE_GRID_MAP, V_MAX, &msg_a);
    msg_a.grid_map.placements[0].backups.members[0] = (uint32_t)msg_a.grid_map.placements[0].primary;
    expect_encode_refuses(&msg_a,
                          "grid_map.placements[].backups: a member appears twice or is the primary");
    gen(TG_WIRE_GRID_MAP, V_MAX, &msg_a);
    msg_a.grid_map.placements[0].backups.count = TG_GRID_BACKUPS_MAX + 1;
    expect_encode_refuses(&msg_a, "grid_map.placements[].backups: too many members");
    gen(TG_WIRE_PU_REGISTER, V_MIN, &msg_a);
    msg_a.pu_register.incarnation = 0;
    expect_encode_refuses(&msg_a, "pu_register.incarnation: out of range");
    gen(TG_WIRE_GRID_STATUS_OK, V_MAX, &msg_a);
    msg_a.grid_status_ok.placements[0].log_persisted = msg_a.grid_status_ok.placements[0].log_head;
    msg_a.grid_status_ok.placements[0].log_head--;
    expect_encode_refuses(&msg_a, "grid_status_ok.placements[].log_persisted: beyond log_head");
    gen(TG_WIRE_GRID_STATUS_OK, V_MAX, &msg_a);
    msg_a.grid_status_ok.placements[0].backups.count = 1;
    msg_a.grid_status_ok.placements[0].backups_reported = 2;
    msg_a.grid_status_ok.placements[0].backups_in_sync = 0;
    expect_encode_refuses(
        &msg_a, "grid_status_ok.placements[]: more backups in sync or reported than it has");
    gen(TG_WIRE_GRID_STATUS_OK, V_MAX, &msg_a);
    msg_a.grid_status_ok.placements[0].backups_reported = 0;
    msg_a.grid_status_ok.placements[0].backups_in_sync = 1;
    expect_encode_refuses(
        &msg_a, "grid_status_ok.placements[]: more backups in sync or reported than it has");
}

/* A log record a unit's ring holds wrong travels, so that the persister
 * rejects it alone (persister_rejects) instead of the read failing at it
 * for good: an unknown kind, a booking status out of range, a seat word
 * with no valid state. */
Test(wire, malformed_log_records_still_travel_for_the_persister_to_reject)
{
    memset(&msg_a, 0, sizeof(msg_a));
    msg_a.type = TG_WIRE_LOG_READ_OK;
    msg_a.log_read_ok.map_epoch = 3;
    msg_a.log_read_ok.records = src_records;
    msg_a.log_read_ok.record_count = 3;
    msg_a.log_read_ok.log_head = 12;
    src_records[0] = (tg_wire_log_record){.seq = 10, .kind = 7};
    src_records[1] = (tg_wire_log_record){.seq = 11, .kind = 2, .ident = 1, .status = 9};
    src_records[2] = (tg_wire_log_record){.seq = 12, .kind = 1, .word = UINT64_MAX};
    cr_assert_geq(tg_seat_word_state(UINT64_MAX), TG_SEAT_STATE_COUNT);
    assert_round_trip(&msg_a);
    /* What stays refused: a gap in the sequence. */
    src_records[2].seq = 14;
    msg_a.log_read_ok.log_head = 14;
    expect_encode_refuses(&msg_a, "log_read_ok.records: sequence numbers are not consecutive");
}
