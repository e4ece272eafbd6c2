/*
 * handlers.c — one request in, one reply out (or a batch of each).
 *
 * pu_handle decodes strictly (grid/wire.c), refuses anything that is not a
 * request, routes by partition (a booking id names its partition), runs the
 * engine call and encodes the reply.  Every failure becomes an error reply
 * with its tg_err code; a malformed message never reaches the engine, and no
 * input can make this code fail to answer.  A partition this unit does not
 * serve answers TG_EUNAVAILABLE, so a client that followed a stale map knows
 * to look again.
 *
 * Handler table: handlers[type] fills c->rep and returns TG_OK, or returns
 * the error; the caller turns errors into replies and counts outcomes.
 */
#include "segment.h"
#include "server_internal.h"

#include "tixgrid/clock.h"
#include "tixgrid/log.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef tg_err (*pu_handler)(pu_ctx *c, pu_partition *p);

static void seat_ids_from(tg_wire_seat_ids *out, const uint32_t *ids, uint32_t n)
{
    out->count = n;
    memcpy(out->ids, ids, sizeof(uint32_t) * n);
}

static void booking_to_wire(const pu_booking_info *b, tg_wire_booking *w)
{
    *w = (tg_wire_booking){
        .booking_id = b->id,
        .user_id = b->user_id,
        .status = (uint32_t)b->status,
        .version = b->version,
        .created_ms = b->created_ms,
        .deadline_ms = b->deadline_ms,
    };
    seat_ids_from(&w->seats, b->seats, b->seat_count);
}

static tg_err on_booking_create(pu_ctx *c, pu_partition *p)
{
    pu_booking_info b;
    tg_err err = pu_booking_create(p, c->req.booking_create.user_id, tg_now_ms(), &b);
    if (err == TG_OK) {
        booking_to_wire(&b, &c->rep.booking_create_ok);
    }
    return err;
}

static tg_err on_booking_get(pu_ctx *c, pu_partition *p)
{
    pu_booking_info b;
    tg_err err = pu_booking_get(p, c->req.booking_get.booking_id, c->req.booking_get.user_id, &b);
    if (err == TG_OK) {
        booking_to_wire(&b, &c->rep.booking_get_ok);
    }
    return err;
}

/* Replies for holds; on TG_ESEAT_TAKEN the error reply names the seats. */
static tg_err hold_reply(pu_ctx *c, tg_err err, const pu_hold_result *r)
{
    if (err == TG_OK) {
        seat_ids_from(&c->rep.seats_hold_ok.seats, r->seats, r->seat_count);
        c->rep.seats_hold_ok.deadline_ms = r->deadline_ms;
    } else if (err == TG_ESEAT_TAKEN) {
        tg_wire_error(&c->rep, err, NULL);
        seat_ids_from(&c->rep.error.seats, r->taken, r->taken_count);
    }
    return err;
}

static tg_err on_seats_hold(pu_ctx *c, pu_partition *p)
{
    pu_hold_result r;
    const tg_wire_seat_ids *ids = &c->req.seats_hold.seats;
    tg_err err = pu_seats_hold(p, c->req.seats_hold.booking_id, c->req.seats_hold.user_id,
                               ids->ids, ids->count, tg_now_ms(), &r);
    return hold_reply(c, err, &r);
}

static tg_err on_seats_hold_best(pu_ctx *c, pu_partition *p)
{
    pu_hold_result r;
    pu_best_request best = {
        .quantity = c->req.seats_hold_best.quantity,
        .section = c->req.seats_hold_best.section,
        .adjacent_only = c->req.seats_hold_best.adjacent_only,
    };
    tg_err err = pu_seats_hold_best(p, c->req.seats_hold_best.booking_id,
                                    c->req.seats_hold_best.user_id, &best, tg_now_ms(), &r);
    /* seats_hold_best_ok has the same fields as seats_hold_ok. */
    _Static_assert(sizeof(c->rep.seats_hold_ok) == sizeof(c->rep.seats_hold_best_ok), "reply");
    return hold_reply(c, err, &r);
}

static tg_err on_seats_release(pu_ctx *c, pu_partition *p)
{
    const tg_wire_seat_ids *ids = &c->req.seats_release.seats;
    return pu_seats_release(p, c->req.seats_release.booking_id, c->req.seats_release.user_id,
                            ids->ids, ids->count, tg_now_ms());
}

static tg_err on_booking_cancel(pu_ctx *c, pu_partition *p)
{
    return pu_booking_cancel(p, c->req.booking_cancel.booking_id, c->req.booking_cancel.user_id,
                             tg_now_ms());
}

static tg_err on_payment_begin(pu_ctx *c, pu_partition *p)
{
    return pu_booking_begin_payment(p, c->req.payment_begin.booking_id,
                                    c->req.payment_begin.user_id, tg_now_ms(),
                                    &c->rep.payment_begin_ok.deadline_ms);
}

static tg_err on_payment_confirm(pu_ctx *c, pu_partition *p)
{
    return pu_booking_confirm(p, c->req.payment_confirm.booking_id, tg_now_ms());
}

static tg_err on_payment_fail(pu_ctx *c, pu_partition *p)
{
    return pu_booking_fail(p, c->req.payment_fail.booking_id, tg_now_ms());
}

static tg_err on_seats_block(pu_ctx *c, pu_partition *p)
{
    pu_hold_result r;
    const tg_wire_seat_ids *ids = &c->req.seats_block.seats;
    tg_err err = pu_seats_block(p, ids->ids, ids->count, &r);
    if (err == TG_ESEAT_TAKEN) {
        tg_wire_error(&c->rep, err, NULL);
        seat_ids_from(&c->rep.error.seats, r.taken, r.taken_count);
    }
    return err;
}

static tg_err on_seats_unblock(pu_ctx *c, pu_partition *p)
{
    const tg_wire_seat_ids *ids = &c->req.seats_unblock.seats;
    return pu_seats_unblock(p, ids->ids, ids->count);
}

static void seat_to_wire(const pu_seat_info *in, tg_wire_seat *out)
{
    *out = (tg_wire_seat){.seat_id = in->seat_id,
                          .word = in->word,
                          .section = in->section,
                          .row = in->row,
                          .number = in->number,
                          .price_minor = in->price_minor};
}

static tg_err on_seat_get(pu_ctx *c, pu_partition *p)
{
    pu_seat_info info;
    tg_err err = pu_seat_get(p, c->req.seat_get.seat_id, &info);
    if (err == TG_OK) {
        seat_to_wire(&info, &c->rep.seat_get_ok.seat);
    }
    return err;
}

/* Pages through pu_seats_find a stack's worth at a time. */
static tg_err on_seats_list(pu_ctx *c, pu_partition *p)
{
    const __typeof__(c->req.seats_list) *q = &c->req.seats_list;
    const pu_seat_filter f = {.state = q->state, .row = q->row, .section = q->section};
    pu_partition_info info;
    pu_partition_describe(p, &info);
    pu_seat_info found[64];
    uint32_t n = 0, seat = q->first_seat < info.seat_count ? q->first_seat : info.seat_count;
    while (n < q->count && seat < info.seat_count) {
        uint32_t want = q->count - n < 64 ? q->count - n : 64;
        uint32_t k = pu_seats_find(p, &f, seat, want, found, &seat);
        for (uint32_t i = 0; i < k; i++) {
            seat_to_wire(&found[i], &c->big->seats[n++]);
        }
    }
    c->rep.seats_list_ok.next_seat = seat;
    c->rep.seats_list_ok.seat_count = n;
    c->rep.seats_list_ok.seats = c->big->seats;
    return TG_OK;
}

static tg_err on_availability(pu_ctx *c, pu_partition *p)
{
    pu_partition_info info;
    pu_partition_describe(p, &info);
    _Static_assert(sizeof(tg_wire_counts) == sizeof(uint32_t[TG_SEAT_STATE_COUNT]), "counts");
    __typeof__(c->rep.availability_ok) *a = &c->rep.availability_ok;
    a->log_head = info.log_head;
    a->section_count = info.section_count;
    a->row_count = info.row_count;
    a->rows = c->big->counts;
    pu_partition_counts(p, a->totals.by_state, (uint32_t(*)[TG_SEAT_STATE_COUNT])a->sections,
                        (uint32_t(*)[TG_SEAT_STATE_COUNT])a->rows);
    return TG_OK;
}

/* Every seat's state, 4 bits each: a seat-map cache's full snapshot in one
 * reply (64 KB for 100,000 seats).  The words are read while others sell,
 * so the snapshot is not one instant: it reflects every change the
 * publisher had read before the scan began (pub_from, read first: a record
 * is published only once written, and written only after its CAS), and
 * maybe some later ones.  A cache that applies every seat_changes event
 * from pub_from on, in order, therefore ends exact — the events carry whole
 * words, so applying a change the scan already saw does no harm. */
static tg_err on_seat_states(pu_ctx *c, pu_partition *p)
{
    pu_partition_info info;
    pu_partition_describe(p, &info);
    const pu_served *e = pu_server_entry(c->srv, info.partition_id);
    __typeof__(c->rep.seat_states_ok) *o = &c->rep.seat_states_ok;
    o->from_seq = __atomic_load_n(&e->pub_from, __ATOMIC_ACQUIRE);
    o->epoch = info.map_epoch;
    o->seat_count = info.seat_count;
    o->state_count = (info.seat_count + TG_WIRE_STATES_PER_WORD - 1) / TG_WIRE_STATES_PER_WORD;
    o->states = c->big->states;
    for (uint32_t i = 0; i < o->state_count; i++) {
        uint64_t packed = 0;
        uint32_t first = i * TG_WIRE_STATES_PER_WORD;
        for (uint32_t k = 0; k < TG_WIRE_STATES_PER_WORD && first + k < info.seat_count; k++) {
            tg_seat_word w = __atomic_load_n(&p->seats[first + k], __ATOMIC_ACQUIRE);
            packed |= (uint64_t)tg_seat_word_state(w) << (4 * k);
        }
        o->states[i].packed = packed;
    }
    return TG_OK;
}

static tg_err on_partition_info(pu_ctx *c, pu_partition *p)
{
    pu_partition_info i;
    pu_partition_describe(p, &i);
    c->rep.partition_info_ok = (__typeof__(c->rep.partition_info_ok)){
        .partition_id = i.partition_id,
        .event_id = i.event_id,
        .seat_count = i.seat_count,
        .section_count = i.section_count,
        .row_count = i.row_count,
        .booking_capacity = i.booking_capacity,
        .log_records = i.log_records,
        .hold_ttl_ms = i.hold_ttl_ms,
        .payment_window_ms = i.payment_window_ms,
        .segment_bytes = i.segment_bytes,
        .map_epoch = i.map_epoch,
        .bookings_created = i.bookings_created,
        .log_head = i.log_head,
        .log_persisted = i.log_persisted,
    };
    return TG_OK;
}

static tg_err on_layout(pu_ctx *c, pu_partition *p)
{
    pu_partition_info info;
    pu_partition_describe(p, &info);
    __typeof__(c->rep.layout_ok) *l = &c->rep.layout_ok;
    l->section_count = info.section_count;
    for (uint32_t i = 0; i < info.section_count; i++) {
        pu_section_info s;
        (void)pu_section_get(p, i, &s);
        tg_wire_section *w = &l->sections[i];
        memcpy(w->name, s.name, TG_NAME_BYTES);
        memcpy(w->currency, s.currency, TG_CURRENCY_BYTES);
        w->price_minor = s.price_minor;
        w->row_first = s.row_first;
        w->row_count = s.row_count;
        w->seat_first = s.seat_first;
        w->seat_count = s.seat_count;
    }
    l->row_count = info.row_count;
    l->rows = c->big->rows;
    for (uint32_t i = 0; i < info.row_count; i++) {
        pu_row_info r;
        (void)pu_row_get(p, i, &r);
        tg_wire_row *w = &l->rows[i];
        memcpy(w->name, r.name, TG_NAME_BYTES);
        w->section = r.section;
        w->seat_first = r.seat_first;
        w->seat_count = r.seat_count;
    }
    return TG_OK;
}

static void record_to_wire(const pu_log_record *r, tg_wire_log_record *w)
{
    *w = (tg_wire_log_record){.seq = r->seq,
                              .kind = r->kind,
                              .ident = r->ident,
                              .status = r->status,
                              .version = r->version,
                              .word = r->word,
                              .deadline_ms = r->deadline_ms,
                              .created_ms = r->created_ms};
}

static tg_err on_log_read(pu_ctx *c, pu_partition *p)
{
    pu_partition_info info;
    pu_partition_describe(p, &info);
    __typeof__(c->rep.log_read_ok) *out = &c->rep.log_read_ok;
    out->map_epoch = info.map_epoch;
    out->records = c->big->records;
    uint32_t max = c->req.log_read.max, n = 0;
    uint64_t from = c->req.log_read.from_seq;
    /* Only what the backups applied: a record the primary has alone may
     * never have been acknowledged, and a backup promoted without it writes
     * other records under the same sequence numbers.  Persisted, it would
     * stand in PostgreSQL for a hold nobody was told of, and make the drain
     * skip the new primary's records of those numbers. */
    pu_served *e = pu_server_entry(c->srv, c->req.log_read.partition_id);
    uint64_t readable = e != NULL ? pu_repl_readable(e) : UINT64_MAX;
    if (from > readable) {
        max = 0;
    } else if (readable - from < max) {
        max = (uint32_t)(readable - from + 1);
    }
    while (n < max) {
        pu_log_record chunk[128];
        uint32_t want = max - n < 128 ? max - n : 128;
        uint32_t got = pu_log_read(p, from + n, chunk, want);
        for (uint32_t i = 0; i < got; i++) {
            record_to_wire(&chunk[i], &out->records[n + i]);
        }
        n += got;
        if (got < want) {
            break;
        }
    }
    out->record_count = n;
    /* Read after the records: the head only rises, so it covers them all. */
    pu_partition_describe(p, &info);
    out->log_head = info.log_head;
    return TG_OK;
}

static tg_err on_log_ack(pu_ctx *c, pu_partition *p)
{
    return pu_log_ack(p, c->req.log_ack.seq);
}

static tg_err on_stats(pu_ctx *c, pu_partition *unused)
{
    (void)unused;
    pu_server *s = c->srv;
    __typeof__(c->rep.stats_ok) *st = &c->rep.stats_ok;
    st->op_count = 0;
    for (uint32_t t = 1; t <= TG_WIRE_REQUEST_LAST; t++) {
        for (uint32_t e = 0; e < TG_ERR_COUNT_; e++) {
            uint64_t n = __atomic_load_n(&s->ops[t][e], __ATOMIC_RELAXED);
            if (n != 0) {
                st->ops[st->op_count++] = (tg_wire_op_count){.type = t, .code = e, .count = n};
            }
        }
    }
    uint32_t parts = __atomic_load_n(&s->part_count, __ATOMIC_ACQUIRE);
    int64_t now = tg_mono_ms();
    st->partitions = parts;
    st->log_depth = 0;
    st->oldest_unpersisted_age_ms = 0;
    for (uint32_t i = 0; i < parts; i++) {
        pu_partition_info info;
        pu_partition_describe(s->parts[i].p, &info);
        st->log_depth += info.log_head - info.log_persisted;
        uint64_t age = pu_unpersisted_age_ms(s, &s->parts[i], info.log_persisted, now);
        st->oldest_unpersisted_age_ms = age > st->oldest_unpersisted_age_ms
                                            ? age
                                            : st->oldest_unpersisted_age_ms;
    }
    return TG_OK;
}

/* Fills cfg from a partition_create request; rows go into c->big. */
static void create_config(pu_ctx *c, pu_partition_config *cfg, pu_section_spec *sections)
{
    const __typeof__(c->req.partition_create) *q = &c->req.partition_create;
    for (uint32_t i = 0; i < q->section_count; i++) {
        pu_section_spec *sec = &sections[i];
        memcpy(sec->name, q->sections[i].name, TG_NAME_BYTES);
        memcpy(sec->currency, q->sections[i].currency, TG_CURRENCY_BYTES);
        sec->price_minor = q->sections[i].price_minor;
        sec->row_count = q->sections[i].row_count;
    }
    pu_row_spec *rows = c->big->create.specs;
    for (uint32_t i = 0; i < q->row_count; i++) {
        memcpy(rows[i].name, q->rows[i].name, TG_NAME_BYTES);
        rows[i].seat_count = q->rows[i].seat_count;
    }
    *cfg = (pu_partition_config){.partition_id = q->partition_id,
                                 .event_id = q->event_id,
                                 .section_count = q->section_count,
                                 .sections = sections,
                                 .row_count = q->row_count,
                                 .rows = rows,
                                 .booking_capacity = q->booking_capacity,
                                 .log_records = q->log_records,
                                 .hold_ttl_ms = q->hold_ttl_ms,
                                 .payment_window_ms = q->payment_window_ms,
                                 .restoring = true};
}

/* A second partition_create for a partition still being restored (a replay
 * that failed and is tried again) reuses it: begin wipes it. */
static tg_err create_again(pu_served *e, const pu_partition_config *cfg)
{
    pu_partition_info info;
    pu_partition_describe(e->p, &info);
    bool same = info.event_id == cfg->event_id && info.section_count == cfg->section_count &&
                info.row_count == cfg->row_count;
    if (__atomic_load_n(&e->state, __ATOMIC_ACQUIRE) == PU_PART_RESTORING && same) {
        return TG_OK;
    }
    return TG_EEXIST;
}

static tg_err on_partition_create(pu_ctx *c, pu_partition *unused)
{
    (void)unused;
    pu_section_spec sections[TG_SECTIONS_MAX];
    pu_partition_config cfg;
    create_config(c, &cfg, sections);
    pu_served *existing = pu_server_entry(c->srv, cfg.partition_id);
    if (existing != NULL) {
        return create_again(existing, &cfg);
    }
    char shm[TG_SHM_NAME_BYTES];
    pu_partition *p = NULL;
    tg_err err = pu_segment_name(shm, sizeof(shm), c->srv->name, cfg.partition_id);
    if (err == TG_OK) {
        err = pu_partition_create(shm, &cfg, &p);
    }
    if (err == TG_OK && (err = pu_server_add_restoring(c->srv, p)) != TG_OK) {
        pu_partition_detach(p);
        pu_partition_destroy(shm);
    }
    return err;
}

/* The bookings and seat words of a restore or state-transfer message. */
static tg_err load_items(pu_partition *p, const tg_wire_booking_state *bookings,
                         uint32_t booking_count, const tg_wire_change *seats, uint32_t seat_count)
{
    tg_err err = TG_OK;
    for (uint32_t i = 0; err == TG_OK && i < booking_count; i++) {
        const tg_wire_booking_state *w = &bookings[i];
        pu_booking_info b = {.id = w->booking_id,
                             .user_id = w->user_id,
                             .status = (tg_booking_status)w->status,
                             .version = w->version,
                             .created_ms = w->created_ms,
                             .deadline_ms = w->deadline_ms};
        err = pu_restore_booking(p, &b);
    }
    for (uint32_t i = 0; err == TG_OK && i < seat_count; i++) {
        err = pu_restore_seat(p, seats[i].seat_id, seats[i].word);
    }
    return err;
}

static tg_err restore_items(pu_partition *p, const __typeof__(((tg_msg *)0)->partition_restore) *q)
{
    return load_items(p, q->bookings, q->booking_count, q->seats, q->seat_count);
}

/* Runs one restore message; called with the table lock held. */
static tg_err restore_locked(pu_served *e, const __typeof__(((tg_msg *)0)->partition_restore) *q)
{
    if (__atomic_load_n(&e->state, __ATOMIC_ACQUIRE) != PU_PART_RESTORING) {
        return TG_EPARTITION_STATE; /* serving already: never overwrite live state */
    }
    tg_err err = TG_OK;
    if (q->phase == TG_WIRE_RESTORE_BEGIN) {
        pu_primary_quiesce(e);
        err = pu_restore_begin(e->p, q->epoch, q->log_base); /* starts over if need be */
        e->restore_began = err == TG_OK;
    } else if (!e->restore_began) {
        err = TG_EPARTITION_STATE;
    }
    if (err == TG_OK) {
        err = restore_items(e->p, q);
    }
    if (err == TG_OK && q->phase == TG_WIRE_RESTORE_END) {
        err = pu_restore_end(e->p);
        if (err == TG_OK) {
            pu_partition_info info;
            pu_partition_describe(e->p, &info);
            e->pub_cursor = info.log_persisted + 1;
            e->pub_from = e->pub_cursor;
            __atomic_store_n(&e->state, PU_PART_READY, __ATOMIC_RELEASE);
        }
    }
    return err;
}

static tg_err on_partition_restore(pu_ctx *c, pu_partition *unused)
{
    (void)unused;
    pu_served *e = pu_server_entry(c->srv, c->req.partition_restore.partition_id);
    if (e == NULL) {
        return TG_EUNAVAILABLE;
    }
    pthread_mutex_lock(&c->srv->table_lock);
    tg_err err = restore_locked(e, &c->req.partition_restore);
    pthread_mutex_unlock(&c->srv->table_lock);
    return err;
}

/* Tests and demos (the gateway's POST /api/reset, behind --allow-reset).  A
 * reset that stops early (backlog, busy lock) answers an error whose message
 * says how far it got: the counts do not travel in an error reply. */
static tg_err on_partition_reset(pu_ctx *c, pu_partition *p)
{
    pu_reset_result r;
    tg_err err = pu_partition_reset(p, tg_now_ms(), &r);
    if (err == TG_OK) {
        c->rep.partition_reset_ok.bookings_cancelled = r.bookings_cancelled;
        c->rep.partition_reset_ok.seats_freed = r.seats_freed;
    } else {
        char message[TG_WIRE_STRING_BYTES_MAX];
        snprintf(message, sizeof(message),
                 "%s: reset stopped after cancelling %" PRIu32 " bookings and freeing %" PRIu32
                 " seats; call again",
                 tg_strerror(err), r.bookings_cancelled, r.seats_freed);
        tg_wire_error(&c->rep, err, message);
    }
    tg_log_info("pu: partition %" PRIu32 " reset: %" PRIu32 " bookings cancelled, %" PRIu32
                " seats freed (%s)",
                c->req.partition_reset.partition_id, r.bookings_cancelled, r.seats_freed,
                tg_errname(err));
    return err;
}

/* ---- Replication (the sending side is repl.c) ------------------------------ */

/* To a primary, without a manager: these are the partition's backups.  With
 * a manager the map names them (member.c), and the request is refused. */
static tg_err on_repl_backups(pu_ctx *c, pu_partition *p)
{
    const __typeof__(c->req.repl_backups) *q = &c->req.repl_backups;
    if (c->srv->cfg.manager_urls != NULL) {
        tg_wire_error(&c->rep, TG_EPARTITION_STATE,
                      "this unit follows the grid manager's map: the map names the backups");
        return TG_EPARTITION_STATE;
    }
    pu_partition_info info;
    pu_partition_describe(p, &info);
    if (q->epoch < info.map_epoch) {
        return TG_ESTALE_EPOCH;
    }
    bool rose = pu_partition_raise_epoch(p, q->epoch) > info.map_epoch;
    pu_served *e = pu_server_entry(c->srv, info.partition_id);
    return pu_repl_configure(c->srv, e, q->backups, q->backup_count, rose);
}

/* With e->apply_lock held: waits (bounded) until the records before `first`
 * are applied, for a message that overtook the one before it. */
static void wait_turn(pu_served *e, pu_partition *p, uint64_t first)
{
    struct timespec until = tg_realtime_after_ms(PU_REPL_REORDER_WAIT_MS);
    pu_partition_info info;
    pu_partition_describe(p, &info);
    while (info.replica && first > info.applied_seq + 1 &&
           pthread_cond_timedwait(&e->applied, &e->apply_lock, &until) == 0) {
        pu_partition_describe(p, &info);
    }
}

static tg_err on_repl_append(pu_ctx *c, pu_partition *p)
{
    const __typeof__(c->req.repl_append) *q = &c->req.repl_append;
    pu_log_record *records = c->big->append.records;
    for (uint32_t i = 0; i < q->record_count; i++) {
        const tg_wire_log_record *w = &q->records[i];
        records[i] = (pu_log_record){.seq = w->seq,
                                     .ident = w->ident,
                                     .kind = (uint8_t)w->kind,
                                     .status = (uint8_t)w->status,
                                     .word = w->word,
                                     .deadline_ms = w->deadline_ms,
                                     .created_ms = w->created_ms,
                                     .version = w->version};
    }
    pu_served *e = pu_server_entry(c->srv, q->partition_id);
    uint64_t applied = 0;
    pthread_mutex_lock(&e->apply_lock);
    if (q->record_count > 0) {
        wait_turn(e, p, records[0].seq);
    }
    tg_err err = pu_replica_apply(p, q->epoch, records, q->record_count, q->persisted, &applied);
    if (err == TG_OK) {
        __atomic_store_n(&e->in_sync, q->in_sync, __ATOMIC_RELEASE);
    }
    pthread_cond_broadcast(&e->applied);
    pthread_mutex_unlock(&e->apply_lock);
    pu_partition_info info;
    pu_partition_describe(p, &info);
    c->rep.repl_append_ok.epoch = info.map_epoch;
    c->rep.repl_append_ok.applied_seq = applied;
    return err;
}

static tg_err snapshot_items(pu_partition *p, const __typeof__(((tg_msg *)0)->repl_snapshot) *q)
{
    return load_items(p, q->bookings, q->booking_count, q->seats, q->seat_count);
}

/* One state-transfer message; table_lock held.  A partition that serves as
 * a primary here is never overwritten. */
static tg_err snapshot_locked(pu_served *e, const __typeof__(((tg_msg *)0)->repl_snapshot) *q)
{
    bool ready = __atomic_load_n(&e->state, __ATOMIC_ACQUIRE) == PU_PART_READY;
    bool backup = __atomic_load_n(&e->role, __ATOMIC_ACQUIRE) == PU_ROLE_BACKUP;
    tg_err err = TG_OK;
    if (q->phase == TG_WIRE_SNAPSHOT_BEGIN) {
        if (ready && !backup) {
            return TG_EPARTITION_STATE;
        }
        __atomic_store_n(&e->state, PU_PART_RESTORING, __ATOMIC_RELEASE);
        pu_primary_quiesce(e); /* its last primary work, before the wipe */
        err = pu_replica_begin(e->p, q->epoch, q->base_seq);
        e->restore_began = err == TG_OK;
        if (err == TG_OK) {
            __atomic_store_n(&e->role, PU_ROLE_BACKUP, __ATOMIC_RELEASE);
            __atomic_store_n(&e->in_sync, false, __ATOMIC_RELEASE);
        }
    } else if (!e->restore_began || ready) {
        return TG_EPARTITION_STATE;
    }
    if (err == TG_OK) {
        err = snapshot_items(e->p, q);
    }
    if (err == TG_OK && q->phase == TG_WIRE_SNAPSHOT_END) {
        err = pu_replica_end(e->p);
        if (err == TG_OK) {
            e->restore_began = false;
            __atomic_store_n(&e->state, PU_PART_READY, __ATOMIC_RELEASE);
        }
    }
    return err;
}

static tg_err on_repl_snapshot(pu_ctx *c, pu_partition *unused)
{
    (void)unused;
    pu_served *e = pu_server_entry(c->srv, c->req.repl_snapshot.partition_id);
    if (e == NULL) {
        return TG_EUNAVAILABLE; /* partition_create comes first */
    }
    pthread_mutex_lock(&c->srv->table_lock);
    pthread_mutex_lock(&e->apply_lock);
    tg_err err = snapshot_locked(e, &c->req.repl_snapshot);
    pthread_mutex_unlock(&e->apply_lock);
    pthread_mutex_unlock(&c->srv->table_lock);
    return err;
}

static tg_err on_repl_status(pu_ctx *c, pu_partition *p)
{
    pu_partition_info info;
    pu_partition_describe(p, &info);
    __typeof__(c->rep.repl_status_ok) *st = &c->rep.repl_status_ok;
    memset(st, 0, sizeof(*st));
    st->epoch = info.map_epoch;
    st->log_head = info.log_head;
    if (info.replica) {
        st->role = TG_REPL_ROLE_BACKUP;
        return TG_OK;
    }
    st->role = TG_REPL_ROLE_PRIMARY;
    st->acked_seq = info.log_head;
    pu_repl_status(pu_server_entry(c->srv, info.partition_id), &c->rep);
    return TG_OK;
}

static const pu_handler handlers[TG_WIRE_REQUEST_LAST + 1] = {
    [TG_WIRE_BOOKING_CREATE] = on_booking_create,
    [TG_WIRE_BOOKING_GET] = on_booking_get,
    [TG_WIRE_SEATS_HOLD] = on_seats_hold,
    [TG_WIRE_SEATS_HOLD_BEST] = on_seats_hold_best,
    [TG_WIRE_SEATS_RELEASE] = on_seats_release,
    [TG_WIRE_BOOKING_CANCEL] = on_booking_cancel,
    [TG_WIRE_PAYMENT_BEGIN] = on_payment_begin,
    [TG_WIRE_PAYMENT_CONFIRM] = on_payment_confirm,
    [TG_WIRE_PAYMENT_FAIL] = on_payment_fail,
    [TG_WIRE_SEATS_BLOCK] = on_seats_block,
    [TG_WIRE_SEATS_UNBLOCK] = on_seats_unblock,
    [TG_WIRE_SEAT_GET] = on_seat_get,
    [TG_WIRE_SEATS_LIST] = on_seats_list,
    [TG_WIRE_AVAILABILITY] = on_availability,
    [TG_WIRE_PARTITION_INFO] = on_partition_info,
    [TG_WIRE_LAYOUT] = on_layout,
    [TG_WIRE_STATS] = on_stats,
    [TG_WIRE_LOG_READ] = on_log_read,
    [TG_WIRE_LOG_ACK] = on_log_ack,
    [TG_WIRE_PARTITION_CREATE] = on_partition_create,
    [TG_WIRE_PARTITION_RESTORE] = on_partition_restore,
    [TG_WIRE_PARTITION_RESET] = on_partition_reset,
    [TG_WIRE_REPL_BACKUPS] = on_repl_backups,
    [TG_WIRE_REPL_APPEND] = on_repl_append,
    [TG_WIRE_REPL_SNAPSHOT] = on_repl_snapshot,
    [TG_WIRE_REPL_STATUS] = on_repl_status,
    [TG_WIRE_SEAT_STATES] = on_seat_states,
};

/* Requests that may change a partition (a booking expired on the spot
 * counts: an error reply can follow a change).  On a backup they are
 * refused; on a primary with backups their reply waits for the acks. */
static const bool changes_partition[TG_WIRE_REQUEST_LAST + 1] = {
    [TG_WIRE_BOOKING_CREATE] = true,  [TG_WIRE_SEATS_HOLD] = true,
    [TG_WIRE_SEATS_HOLD_BEST] = true, [TG_WIRE_SEATS_RELEASE] = true,
    [TG_WIRE_BOOKING_CANCEL] = true,  [TG_WIRE_PAYMENT_BEGIN] = true,
    [TG_WIRE_PAYMENT_CONFIRM] = true, [TG_WIRE_PAYMENT_FAIL] = true,
    [TG_WIRE_SEATS_BLOCK] = true,     [TG_WIRE_SEATS_UNBLOCK] = true,
    [TG_WIRE_PARTITION_RESET] = true,
};

/* Requests a backup refuses besides those: its log is trimmed by its
 * primary, and it has no backups of its own. */
static const bool primary_only[TG_WIRE_REQUEST_LAST + 1] = {
    [TG_WIRE_LOG_ACK] = true,
    [TG_WIRE_REPL_BACKUPS] = true,
    [TG_WIRE_SEAT_STATES] = true, /* a backup publishes nothing to follow it with */
};

/* The partition a request is about; false for requests about none (stats). */
static bool request_partition(const tg_msg *m, uint32_t *id)
{
    switch (m->type) {
    case TG_WIRE_BOOKING_CREATE: *id = m->booking_create.partition_id; return true;
    case TG_WIRE_BOOKING_GET: *id = tg_booking_id_partition(m->booking_get.booking_id); return true;
    case TG_WIRE_SEATS_HOLD: *id = tg_booking_id_partition(m->seats_hold.booking_id); return true;
    case TG_WIRE_SEATS_HOLD_BEST:
        *id = tg_booking_id_partition(m->seats_hold_best.booking_id);
        return true;
    case TG_WIRE_SEATS_RELEASE:
        *id = tg_booking_id_partition(m->seats_release.booking_id);
        return true;
    case TG_WIRE_BOOKING_CANCEL:
        *id = tg_booking_id_partition(m->booking_cancel.booking_id);
        return true;
    case TG_WIRE_PAYMENT_BEGIN:
        *id = tg_booking_id_partition(m->payment_begin.booking_id);
        return true;
    case TG_WIRE_PAYMENT_CONFIRM:
        *id = tg_booking_id_partition(m->payment_confirm.booking_id);
        return true;
    case TG_WIRE_PAYMENT_FAIL:
        *id = tg_booking_id_partition(m->payment_fail.booking_id);
        return true;
    case TG_WIRE_SEATS_BLOCK: *id = m->seats_block.partition_id; return true;
    case TG_WIRE_SEATS_UNBLOCK: *id = m->seats_unblock.partition_id; return true;
    case TG_WIRE_SEAT_GET: *id = m->seat_get.partition_id; return true;
    case TG_WIRE_SEATS_LIST: *id = m->seats_list.partition_id; return true;
    case TG_WIRE_AVAILABILITY: *id = m->availability.partition_id; return true;
    case TG_WIRE_PARTITION_INFO: *id = m->partition_info.partition_id; return true;
    case TG_WIRE_LAYOUT: *id = m->layout.partition_id; return true;
    case TG_WIRE_LOG_READ: *id = m->log_read.partition_id; return true;
    case TG_WIRE_LOG_ACK: *id = m->log_ack.partition_id; return true;
    case TG_WIRE_PARTITION_RESET: *id = m->partition_reset.partition_id; return true;
    case TG_WIRE_REPL_BACKUPS: *id = m->repl_backups.partition_id; return true;
    case TG_WIRE_REPL_APPEND: *id = m->repl_append.partition_id; return true;
    case TG_WIRE_REPL_STATUS: *id = m->repl_status.partition_id; return true;
    case TG_WIRE_SEAT_STATES: *id = m->seat_states.partition_id; return true;
    default: return false;
    }
}

/* The test-only cut (server_internal.h, repl_refuse_path): one stat per
 * replication message, and only when a test asked for it. */
static bool repl_refused(const pu_server *s)
{
    return s->repl_refuse_path[0] != '\0' && access(s->repl_refuse_path, F_OK) == 0;
}

/* A request that writes a primary's partition, entered as primary work
 * (server_internal.h: a state transfer's wipe waits for it). */
static tg_err dispatch_primary(pu_ctx *c, pu_served *e, pu_partition *p, const char **why)
{
    tg_wire_type type = c->req.type;
    if (changes_partition[type] && pu_repl_fenced(e)) {
        *why = "partition's backups follow a newer map than this unit yet: retry shortly";
        return TG_EUNAVAILABLE;
    }
    c->rep.type = tg_wire_reply_type(type);
    tg_err err = handlers[type](c, p);
    if (changes_partition[type] && __atomic_load_n(&e->repl, __ATOMIC_ACQUIRE)) {
        pu_partition_info info;
        pu_partition_describe(p, &info);
        c->park_entry = e; /* read after the change: the head covers its records */
        c->park_seq = info.log_head;
    }
    return err;
}

/* Runs a decoded request; returns its outcome (c->rep filled on TG_OK). */
static tg_err dispatch(pu_ctx *c, const char **why)
{
    tg_wire_type type = c->req.type;
    if (type == TG_WIRE_NONE || type > TG_WIRE_REQUEST_LAST || handlers[type] == NULL) {
        *why = "not a request type";
        return TG_EPROTO;
    }
    if (__atomic_load_n(&c->srv->stopping, __ATOMIC_ACQUIRE)) {
        *why = "processing unit is stopping";
        return TG_EUNAVAILABLE;
    }
    uint32_t id = 0;
    pu_partition *p = NULL;
    if (request_partition(&c->req, &id) && (p = pu_server_find(c->srv, id)) == NULL) {
        *why = "partition is not served by this processing unit";
        return TG_EUNAVAILABLE;
    }
    pu_served *e = p != NULL ? pu_server_entry(c->srv, id) : NULL;
    bool writes = changes_partition[type] || type == TG_WIRE_LOG_ACK;
    if (e != NULL && writes) {
        if (!pu_primary_enter(e)) {
            *why = "partition is a backup on this processing unit: ask its primary";
            return TG_EUNAVAILABLE;
        }
        tg_err err = dispatch_primary(c, e, p, why);
        pu_primary_leave(e);
        return err;
    }
    bool backup = e != NULL && __atomic_load_n(&e->role, __ATOMIC_ACQUIRE) == PU_ROLE_BACKUP;
    if (backup && primary_only[type]) {
        *why = "partition is a backup on this processing unit: ask its primary";
        return TG_EUNAVAILABLE;
    }
    if ((type == TG_WIRE_REPL_APPEND || type == TG_WIRE_REPL_SNAPSHOT) && repl_refused(c->srv)) {
        *why = "replication refused (test fault injection)";
        return TG_EBUSY;
    }
    c->rep.type = tg_wire_reply_type(type);
    return handlers[type](c, p);
}

static void count_outcome(pu_server *s, tg_wire_type type, tg_err err)
{
    uint32_t t = (type > TG_WIRE_NONE && type <= TG_WIRE_REQUEST_LAST) ? (uint32_t)type : 0;
    __atomic_fetch_add(&s->ops[t][err], 1, __ATOMIC_RELAXED);
}

/* A part of a batch must be a batchable request about the batch's
 * partition (the first part's): a batch is answered when all of its changes
 * are, which is one partition's question. */
static const char *batch_part_refusal(const tg_msg *m, uint32_t *batch_partition)
{
    uint32_t id = 0;
    if (!tg_wire_batchable(m->type) || !request_partition(m, &id)) {
        return "batch: request type not allowed in a batch";
    }
    if (*batch_partition == UINT32_MAX) {
        *batch_partition = id;
    }
    return id == *batch_partition ? NULL : "batch: every request must be about one partition";
}

/* Handles one request (alone, or one part of a batch: then batch_partition
 * is not NULL) and encodes its reply into c->buf. */
static void handle_one(pu_ctx *c, const void *body, size_t len, uint32_t *batch_partition)
{
    const char *why = NULL;
    c->rep.type = TG_WIRE_NONE;
    /* Arrays of the requests that carry them (see pu_reply_space). */
    tg_wire_space space = {
        .rows = c->big->create.rows,
        .rows_capacity = TG_ROWS_MAX,
        .bookings = c->big->restore.bookings,
        .bookings_capacity = TG_WIRE_RESTORE_BOOKINGS_MAX,
        .changes = c->big->restore.seats,
        .changes_capacity = TG_WIRE_CHANGES_MAX,
        .records = c->big->append.wire,
        .records_capacity = TG_WIRE_LOG_RECORDS_MAX,
    };
    tg_err err = tg_wire_decode(body, len, &space, &c->req, &why);
    if (err == TG_OK && batch_partition != NULL &&
        (why = batch_part_refusal(&c->req, batch_partition)) != NULL) {
        err = TG_EINVAL;
    }
    if (err == TG_OK) {
        err = dispatch(c, &why);
    }
    count_outcome(c->srv, err == TG_EPROTO ? TG_WIRE_NONE : c->req.type, err);
    if (err != TG_OK && !(c->rep.type == TG_WIRE_ERROR && c->rep.error.code == (uint32_t)err)) {
        tg_wire_error(&c->rep, err, why);
    }
    const char *encode_why = NULL;
    if (tg_wire_encode(&c->rep, &c->buf, &encode_why) != TG_OK) {
        tg_log_error("pu: cannot encode a %s reply: %s", tg_wire_type_name(c->rep.type),
                     encode_why != NULL ? encode_why : "?");
        tg_wire_error(&c->rep, TG_EINVAL, "reply could not be encoded");
        tg_err again = tg_wire_encode(&c->rep, &c->buf, NULL);
        (void)again; /* an error reply with a short message always encodes */
    }
}

/* A batch: its parts run in order, each exactly as if it came alone, and
 * their replies go out in one batch reply.  A frame that does not parse is
 * refused whole before anything runs. */
static bool handle_batch(pu_ctx *c, const void *body, size_t len)
{
    tg_wire_part parts[TG_WIRE_BATCH_MAX];
    uint32_t n = 0;
    const char *why = NULL;
    if (tg_wire_batch_parse(body, len, TG_WIRE_BATCH, parts, &n, &why) != TG_OK) {
        count_outcome(c->srv, TG_WIRE_NONE, TG_EPROTO);
        tg_wire_error(&c->rep, TG_EPROTO, why);
        return tg_wire_encode(&c->rep, &c->buf, NULL) == TG_OK;
    }
    bool ok = tg_wire_batch_reply_begin(&c->batch, n) == TG_OK;
    uint32_t partition = UINT32_MAX;
    for (uint32_t i = 0; i < n; i++) {
        handle_one(c, parts[i].data, parts[i].len, &partition);
        ok = ok && tg_wire_batch_reply_add(&c->batch, c->buf.data, c->buf.size) == TG_OK;
    }
    msgpack_sbuffer t = c->buf;
    c->buf = c->batch;
    c->batch = t;
    /* Out of memory for the reply after the parts ran: no reply at all, so
     * the requester times out ("did it run?  read the booking") rather than
     * being told that operations which ran failed. */
    return ok;
}

bool pu_handle(pu_ctx *c, const void *body, size_t len)
{
    if (tg_wire_is_type(body, len, TG_WIRE_BATCH)) {
        return handle_batch(c, body, len);
    }
    handle_one(c, body, len, NULL);
    return true;
}
