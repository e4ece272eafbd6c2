/*
 * malformed_test.c — a flood of malformed messages at a real tixgrid-pu.
 *
 * Invariant 4 of DESIGN.md: no request, however malformed, crashes or
 * wedges a process; it gets a clear error.  A raw nng REQ socket sends
 * thousands of bad messages — random bytes, every truncation of every valid
 * request, fields of the wrong type, lengths in msgpack headers far beyond
 * the bytes that follow, unknown message types, replies and events sent as
 * requests, the empty message — and each must be answered with an error
 * reply carrying TG_EPROTO.  Afterwards ordinary requests still work and the
 * unit's state (availability with its log head, every seat word, the
 * booking) is exactly what it was before the flood.
 *
 * Every message sent as "malformed" is first checked to be refused by the
 * local decoder too (the same codec, grid/wire.c); a mutation that happens
 * to be a valid request is skipped, since running it could change state.
 */
#include "harness.h"

#include <criterion/criterion.h>
#include <msgpack.h>

#include <string.h>

#define P 3u
#define SEATS 20u
#define ALICE UINT64_C(1001)

static hx_unit unit;
static tg_client *client;
static nng_socket raw;
static tg_msg scratch; /* large: keep it off the stack */

typedef struct {
    uint32_t sent;         /* malformed messages sent */
    uint32_t skipped;      /* mutations that were valid requests */
    uint32_t by_kind[16];  /* sent, per generator */
} flood_stats;

static flood_stats stats;

static void start_unit(void)
{
    hx_unit_init(&unit, "bad");
    hx_layout l = {.partition_id = P, .event_id = 9, .sections = 1, .rows = 2, .seats = 10,
                   .log_records = 4096};
    hx_write_layout(&unit, &l);
    hx_start(&unit);
    client = hx_client(&unit, P, 4);
    raw = hx_unit_raw(&unit, 5000);
    memset(&stats, 0, sizeof(stats));
}

static void stop_unit(void)
{
    hx_fini_all(); /* closes the client and the raw socket too */
    client = NULL;
}

TestSuite(malformed, .init = start_unit, .fini = stop_unit, .timeout = 90);

/* ---- Sending ------------------------------------------------------------ */

static bool locally_valid(const void *bytes, size_t len)
{
    return tg_wire_decode(bytes, len, hx_space(), &scratch, NULL) == TG_OK &&
           scratch.type >= TG_WIRE_BOOKING_CREATE && scratch.type <= TG_WIRE_REQUEST_LAST;
}

/* Sends one malformed message and asserts the reply is TG_EPROTO. */
static void send_bad(uint32_t kind, const void *bytes, size_t len, const char *what)
{
    static uint8_t reply[1 << 16];
    int64_t n = hx_raw_call(raw, bytes, len, reply, sizeof(reply));
    cr_assert(n > 0, "%s (%zu bytes, message %u): no reply: %s", what, len, stats.sent,
              nng_strerror((int)-n));
    const char *why = NULL;
    tg_err err = tg_wire_decode(reply, (size_t)n, NULL, &scratch, &why);
    cr_assert_eq(err, TG_OK, "%s: the reply does not decode: %s", what, why ? why : "?");
    cr_assert_eq(scratch.type, TG_WIRE_ERROR, "%s: answered with %s", what,
                 tg_wire_type_name(scratch.type));
    cr_assert_eq(scratch.error.code, (uint32_t)TG_EPROTO, "%s: error %s, want proto", what,
                 tg_errname((tg_err)scratch.error.code));
    cr_assert(scratch.error.message[0] != '\0', "%s: the error says nothing", what);
    stats.sent++;
    stats.by_kind[kind]++;
}

/* Sends it if the local decoder refuses it too; counts it skipped otherwise. */
static void send_if_bad(uint32_t kind, const void *bytes, size_t len, const char *what)
{
    if (locally_valid(bytes, len)) {
        stats.skipped++;
        return;
    }
    send_bad(kind, bytes, len, what);
}

/* ---- Valid requests to start from --------------------------------------- */

static uint32_t sample_requests(tg_msg *out)
{
    tg_booking_id b = tg_booking_id_make(P, 1);
    uint32_t n = 0;
    for (uint32_t t = 1; t <= TG_WIRE_REQUEST_LAST; t++) {
        tg_msg *m = &out[n++];
        memset(m, 0, sizeof(*m));
        m->type = (tg_wire_type)t;
    }
    out[TG_WIRE_BOOKING_CREATE - 1].booking_create.partition_id = P;
    out[TG_WIRE_BOOKING_CREATE - 1].booking_create.user_id = ALICE;
    out[TG_WIRE_BOOKING_GET - 1].booking_get.booking_id = b;
    out[TG_WIRE_SEATS_HOLD - 1].seats_hold = (__typeof__(out[0].seats_hold)){
        .booking_id = b, .user_id = ALICE, .seats = {.count = 3, .ids = {4, 300, 70000}}};
    out[TG_WIRE_SEATS_HOLD_BEST - 1].seats_hold_best = (__typeof__(out[0].seats_hold_best)){
        .booking_id = b, .user_id = ALICE, .quantity = 2, .section = -1, .adjacent_only = true};
    out[TG_WIRE_SEATS_RELEASE - 1].seats_release = (__typeof__(out[0].seats_release)){
        .booking_id = b, .user_id = ALICE, .seats = {.count = 2, .ids = {1, 2}}};
    out[TG_WIRE_BOOKING_CANCEL - 1].booking_cancel.booking_id = b;
    out[TG_WIRE_PAYMENT_BEGIN - 1].payment_begin.booking_id = b;
    out[TG_WIRE_PAYMENT_CONFIRM - 1].payment_confirm.booking_id = b;
    out[TG_WIRE_PAYMENT_FAIL - 1].payment_fail.booking_id = b;
    out[TG_WIRE_SEATS_BLOCK - 1].seats_block = (__typeof__(out[0].seats_block)){
        .partition_id = P, .seats = {.count = 1, .ids = {7}}};
    out[TG_WIRE_SEATS_UNBLOCK - 1].seats_unblock = (__typeof__(out[0].seats_unblock)){
        .partition_id = P, .seats = {.count = 1, .ids = {7}}};
    out[TG_WIRE_SEAT_GET - 1].seat_get.partition_id = P;
    out[TG_WIRE_SEATS_LIST - 1].seats_list = (__typeof__(out[0].seats_list)){
        .partition_id = P, .first_seat = 0, .count = 10, .state = -1, .row = 1, .section = -1};
    out[TG_WIRE_AVAILABILITY - 1].availability.partition_id = P;
    out[TG_WIRE_PARTITION_INFO - 1].partition_info.partition_id = P;
    out[TG_WIRE_LAYOUT - 1].layout.partition_id = P;
    out[TG_WIRE_LOG_READ - 1].log_read = (__typeof__(out[0].log_read)){P, 1, 100};
    out[TG_WIRE_LOG_ACK - 1].log_ack.partition_id = P;
    out[TG_WIRE_REPL_BACKUPS - 1].repl_backups.partition_id = P;
    out[TG_WIRE_REPL_APPEND - 1].repl_append.partition_id = P;
    out[TG_WIRE_REPL_SNAPSHOT - 1].repl_snapshot.partition_id = P;
    out[TG_WIRE_REPL_STATUS - 1].repl_status.partition_id = P;
    out[TG_WIRE_SEAT_STATES - 1].seat_states.partition_id = P;
    return n;
}

typedef struct {
    size_t len;
    uint8_t bytes[512];
} encoded;

static void encode(const tg_msg *m, encoded *e)
{
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    const char *why = NULL;
    cr_assert_eq(tg_wire_encode(m, &buf, &why), TG_OK, "%s does not encode: %s",
                 tg_wire_type_name(m->type), why ? why : "?");
    cr_assert(buf.size <= sizeof(e->bytes));
    memcpy(e->bytes, buf.data, buf.size);
    e->len = buf.size;
    msgpack_sbuffer_destroy(&buf);
}

static tg_msg samples[TG_WIRE_REQUEST_LAST];
static encoded sample_bytes[TG_WIRE_REQUEST_LAST];

static uint32_t encoded_samples(void)
{
    uint32_t n = sample_requests(samples);
    for (uint32_t i = 0; i < n; i++) {
        encode(&samples[i], &sample_bytes[i]);
        cr_assert(locally_valid(sample_bytes[i].bytes, sample_bytes[i].len));
    }
    return n;
}

/* ---- Generators ----------------------------------------------------------- */

enum {
    K_RANDOM,
    K_TRUNCATED,
    K_TRAILING,
    K_VERSION,
    K_ARITY,
    K_WRONG_TYPE,
    K_SEAT_LIST,
    K_HUGE,
    K_UNKNOWN_TYPE,
    K_REPLY,
    K_EMPTY,
    K_FLIPPED,
};

static uint64_t rng_state = UINT64_C(0x9e3779b97f4a7c15);

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void flood_random(uint32_t count)
{
    uint8_t bytes[96];
    for (uint32_t i = 0; i < count; i++) {
        size_t len = 1 + rng() % sizeof(bytes);
        for (size_t k = 0; k < len; k++) {
            bytes[k] = (uint8_t)rng();
        }
        if (i % 4 == 0) {
            bytes[0] = (uint8_t)(0x90 | (rng() % 8)); /* an array: get past the first check */
            if (len > 1) {
                bytes[1] = (uint8_t)(1 + rng() % 30);
            }
        }
        send_if_bad(K_RANDOM, bytes, len, "random bytes");
    }
}

static void flood_truncated(uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        for (size_t len = 0; len < sample_bytes[i].len; len++) {
            send_bad(K_TRUNCATED, sample_bytes[i].bytes, len, "truncated request");
        }
    }
}

static void flood_framing(uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        encoded e = sample_bytes[i];
        e.bytes[e.len] = 0xc0; /* nil after the message */
        send_bad(K_TRAILING, e.bytes, e.len + 1, "trailing bytes");
        cr_assert(e.bytes[0] >= 0x92 && e.bytes[0] <= 0x9f && e.bytes[2] == TG_WIRE_VERSION);
        const uint8_t versions[] = {0x00, 0x02, 0x7f, 0xff /* -1 */, 0xc0 /* nil */};
        for (size_t v = 0; v < sizeof(versions); v++) {
            e = sample_bytes[i];
            e.bytes[2] = versions[v];
            send_bad(K_VERSION, e.bytes, e.len, "wrong version");
        }
        e = sample_bytes[i];
        e.bytes[0]++; /* one field more than the bytes hold */
        send_bad(K_ARITY, e.bytes, e.len, "array longer than its items");
        e.bytes[e.len] = 0x01;
        send_bad(K_ARITY, e.bytes, e.len + 1, "one field too many");
        if (sample_bytes[i].bytes[0] > 0x92) {
            e = sample_bytes[i];
            e.bytes[0]--;
            send_bad(K_ARITY, e.bytes, e.len, "array shorter than its items");
        }
    }
}

/* Re-packs message `m` (an array) with element `at` replaced by `with`. */
static size_t repack(const msgpack_object *m, uint32_t at, void (*with)(msgpack_packer *),
                     uint8_t *out, size_t cap)
{
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &buf, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, m->via.array.size);
    for (uint32_t i = 0; i < m->via.array.size; i++) {
        if (i == at) {
            with(&pk);
        } else {
            msgpack_pack_object(&pk, m->via.array.ptr[i]);
        }
    }
    cr_assert(buf.size <= cap);
    size_t len = buf.size;
    memcpy(out, buf.data, len);
    msgpack_sbuffer_destroy(&buf);
    return len;
}

static void put_nil(msgpack_packer *pk) { msgpack_pack_nil(pk); }
static void put_str(msgpack_packer *pk)
{
    msgpack_pack_str(pk, 3);
    msgpack_pack_str_body(pk, "abc", 3);
}
static void put_float(msgpack_packer *pk) { msgpack_pack_double(pk, 1.5); }
static void put_map(msgpack_packer *pk) { msgpack_pack_map(pk, 0); }
static void put_bin(msgpack_packer *pk)
{
    msgpack_pack_bin(pk, 1);
    msgpack_pack_bin_body(pk, "\x01", 1);
}
static void put_negative(msgpack_packer *pk) { msgpack_pack_int64(pk, -5); }
static void put_true(msgpack_packer *pk) { msgpack_pack_true(pk); }
static void put_max(msgpack_packer *pk) { msgpack_pack_uint64(pk, UINT64_MAX); }
static void put_empty_array(msgpack_packer *pk) { msgpack_pack_array(pk, 0); }
static void put_seats_17(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 17);
    for (uint32_t i = 0; i < 17; i++) {
        msgpack_pack_uint32(pk, i);
    }
}
static void put_seat_too_big(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 2);
    msgpack_pack_uint32(pk, 1);
    msgpack_pack_uint32(pk, TG_PARTITION_SEATS_MAX);
}
static void put_seat_str(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 2);
    msgpack_pack_uint32(pk, 1);
    put_str(pk);
}
static void put_seat_nested(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 1);
    msgpack_pack_array(pk, 1);
    msgpack_pack_uint32(pk, 1);
}
static void put_ext(msgpack_packer *pk)
{
    msgpack_pack_ext(pk, 1, 1);
    msgpack_pack_ext_body(pk, "\x02", 1);
}

static void flood_wrong_types(uint32_t n)
{
    /* Never a valid value of any field: asserted to be refused locally. */
    void (*always_bad[])(msgpack_packer *) = {put_nil, put_str, put_float, put_map, put_bin,
                                               put_max, put_ext};
    /* Valid for some fields (section -1, adjacent_only, an empty seat list):
     * sent only where the local decoder refuses them. */
    void (*sometimes_bad[])(msgpack_packer *) = {put_negative, put_true, put_empty_array,
                                                  put_seats_17, put_seat_too_big, put_seat_str,
                                                  put_seat_nested};
    uint8_t out[1024];
    for (uint32_t i = 0; i < n; i++) {
        msgpack_unpacked up;
        msgpack_unpacked_init(&up);
        size_t off = 0;
        cr_assert_eq(msgpack_unpack_next(&up, (const char *)sample_bytes[i].bytes,
                                         sample_bytes[i].len, &off),
                     MSGPACK_UNPACK_SUCCESS);
        const msgpack_object *m = &up.data;
        for (uint32_t at = 0; at < m->via.array.size; at++) {
            for (size_t k = 0; k < sizeof(always_bad) / sizeof(always_bad[0]); k++) {
                size_t len = repack(m, at, always_bad[k], out, sizeof(out));
                cr_assert(!locally_valid(out, len), "a mutation decodes");
                send_bad(K_WRONG_TYPE, out, len, "a field of the wrong type");
            }
            for (size_t k = 0; k < sizeof(sometimes_bad) / sizeof(sometimes_bad[0]); k++) {
                size_t len = repack(m, at, sometimes_bad[k], out, sizeof(out));
                send_if_bad(K_SEAT_LIST, out, len, "a field out of range");
            }
        }
        msgpack_unpacked_destroy(&up);
    }
}

static void flood_huge_lengths(void)
{
    static const struct {
        const char *what;
        uint8_t bytes[16];
        size_t len;
    } cases[] = {
        {"array32 of 2^32-1 items", {0xdd, 0xff, 0xff, 0xff, 0xff, 0x03, 0x01}, 7},
        {"array32 of 2^32-1 items, nothing after", {0xdd, 0xff, 0xff, 0xff, 0xff}, 5},
        {"array16 of 65535 items", {0xdc, 0xff, 0xff, 0x0c, 0x01, 0x03, 0x00}, 7},
        {"str32 of 4 GiB", {0xdb, 0xff, 0xff, 0xff, 0xff, 'a'}, 6},
        {"bin32 of 4 GiB", {0xc6, 0xff, 0xff, 0xff, 0xff, 0x00}, 6},
        {"map32 of 2^32-1 pairs", {0xdf, 0xff, 0xff, 0xff, 0xff, 0x01, 0x02}, 7},
        {"ext32 of 4 GiB", {0xc9, 0xff, 0xff, 0xff, 0xff, 0x01}, 6},
        /* seats_hold whose seat list claims 2^32-1 seats. */
        {"seat list of 2^32-1 seats",
         {0x95, 0x03, 0x01, 0xcf, 0, 0, 0, 0x03, 0, 0, 0, 0x01, 0x01, 0xdd, 0xff, 0xff},
         16},
        /* seats_hold whose seat list claims 65535 seats, two given. */
        {"seat list of 65535 seats",
         {0x95, 0x03, 0x01, 0xcf, 0, 0, 0, 0x03, 0, 0, 0, 0x01, 0x01, 0xdc, 0xff, 0xff},
         16},
        /* an error reply whose message claims 4 GiB. */
        {"error message of 4 GiB", {0x95, 0x40, 0x01, 0x17, 0xdb, 0xff, 0xff, 0xff, 0xff}, 9},
        {"uint64 cut short", {0x94, 0x0c, 0x01, 0x03, 0xcf, 0x00}, 6},
        {"str8 longer than the message", {0x93, 0x01, 0x01, 0xd9, 0x40, 'a'}, 6},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        send_bad(K_HUGE, cases[i].bytes, cases[i].len, cases[i].what);
    }
}

static void flood_unknown_types(void)
{
    const int64_t types[] = {0,   20,  21,  40,  63,    100,   127,        128, 159,
                             160, 200, 255, 256, 65535, 65536, 4294967296, -1,  -32};
    uint8_t out[64];
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        for (uint32_t extra = 0; extra < 4; extra++) {
            msgpack_sbuffer buf;
            msgpack_sbuffer_init(&buf);
            msgpack_packer pk;
            msgpack_packer_init(&pk, &buf, msgpack_sbuffer_write);
            msgpack_pack_array(&pk, 2 + extra);
            msgpack_pack_int64(&pk, types[i]);
            msgpack_pack_uint32(&pk, TG_WIRE_VERSION);
            for (uint32_t k = 0; k < extra; k++) {
                msgpack_pack_uint32(&pk, P);
            }
            memcpy(out, buf.data, buf.size);
            size_t len = buf.size;
            msgpack_sbuffer_destroy(&buf);
            send_bad(K_UNKNOWN_TYPE, out, len, "unknown message type");
        }
    }
    send_bad(K_UNKNOWN_TYPE, (const uint8_t[]){0x90}, 1, "empty array");
    send_bad(K_UNKNOWN_TYPE, (const uint8_t[]){0x91, 0x01}, 2, "type without version");
    send_bad(K_UNKNOWN_TYPE, (const uint8_t[]){0x01}, 1, "a bare integer");
}

/* Every ok reply, the error reply and the event, each a valid message of the
 * schema, sent where a request belongs. */
static void flood_replies(void)
{
    static tg_wire_counts rows[2];
    static tg_wire_seat seats[1] = {{.seat_id = 1, .section = 0, .row = 0, .number = 2}};
    static tg_wire_row layout_rows[1] = {{.name = "R0", .seat_count = 10}};
    static tg_wire_log_record records[1] = {{.seq = 1, .kind = 1}};
    static tg_wire_change changes[1] = {{.seat_id = 3}};
    uint32_t encoded_count = 0;
    for (uint32_t t = TG_WIRE_ERROR; t <= TG_WIRE_SEAT_CHANGES; t++) {
        tg_msg m;
        memset(&m, 0, sizeof(m));
        m.type = (tg_wire_type)t;
        if (t == TG_WIRE_ERROR) {
            tg_wire_error(&m, TG_ESEAT_TAKEN, NULL);
        } else if (t == TG_WIRE_BOOKING_CREATE_OK || t == TG_WIRE_BOOKING_GET_OK) {
            m.booking_create_ok.booking_id = tg_booking_id_make(P, 1);
            m.booking_create_ok.status = TG_BOOKING_CREATED;
        } else if (t == TG_WIRE_SEAT_GET_OK) {
            m.seat_get_ok.seat.number = 1;
        } else if (t == TG_WIRE_SEATS_LIST_OK) {
            m.seats_list_ok = (__typeof__(m.seats_list_ok)){.next_seat = 2, .seat_count = 1,
                                                            .seats = seats};
        } else if (t == TG_WIRE_AVAILABILITY_OK) {
            m.availability_ok.row_count = 2;
            m.availability_ok.rows = rows;
        } else if (t == TG_WIRE_LAYOUT_OK) {
            memcpy(m.layout_ok.sections[0].name, "S0", 3);
            memcpy(m.layout_ok.sections[0].currency, "EUR", 4);
            m.layout_ok.section_count = 1;
            m.layout_ok.row_count = 1;
            m.layout_ok.rows = layout_rows;
        } else if (t == TG_WIRE_LOG_READ_OK) {
            m.log_read_ok.record_count = 1;
            m.log_read_ok.log_head = 1;
            m.log_read_ok.records = records;
        } else if (t == TG_WIRE_SEAT_STATES_OK) {
            m.seat_states_ok.from_seq = 1; /* no seats: no states */
        } else if (t == TG_WIRE_SEAT_CHANGES) {
            m.seat_changes = (__typeof__(m.seat_changes)){.partition_id = P, .from_seq = 1,
                                                          .to_seq = 1, .change_count = 1,
                                                          .changes = changes};
        }
        msgpack_sbuffer buf;
        msgpack_sbuffer_init(&buf);
        if (tg_wire_encode(&m, &buf, NULL) == TG_OK) {
            encoded_count++;
            cr_assert(!locally_valid(buf.data, buf.size));
            send_bad(K_REPLY, buf.data, buf.size, tg_wire_type_name(m.type));
        }
        msgpack_sbuffer_destroy(&buf);
    }
    /* The error reply, each ok reply (19) and the event. */
    cr_assert_eq(encoded_count, 1 + TG_WIRE_REQUEST_LAST + 1, "only %u replies encoded",
                 encoded_count);
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    tg_msg ev = {.type = TG_WIRE_SEAT_CHANGES};
    ev.seat_changes = (__typeof__(ev.seat_changes)){P, 1, 1, 1, changes};
    cr_assert_eq(tg_wire_encode_event(&ev, &buf, NULL), TG_OK);
    send_bad(K_REPLY, buf.data, buf.size, "an event with its topic");
    msgpack_sbuffer_destroy(&buf);
}

static void flood_flipped(uint32_t n, uint32_t count)
{
    for (uint32_t i = 0; i < count; i++) {
        encoded e = sample_bytes[rng() % n];
        uint32_t flips = 1 + (uint32_t)(rng() % 3);
        for (uint32_t f = 0; f < flips; f++) {
            e.bytes[rng() % e.len] = (uint8_t)rng();
        }
        send_if_bad(K_FLIPPED, e.bytes, e.len, "flipped bytes");
    }
}

/* ---- The test ---------------------------------------------------------------- */

typedef struct {
    tg_msg availability;
    tg_wire_counts rows[2];
    uint64_t words[SEATS];
    tg_msg booking;
} snapshot;

static snapshot before, after;

static void take_snapshot(snapshot *s, tg_booking_id b)
{
    hx_availability(client, P, &s->availability, s->rows);
    hx_seat_words(client, P, SEATS, s->words);
    cr_assert_eq(hx_booking_get(client, b, 0, &s->booking), TG_OK);
}

Test(malformed, thousands_of_bad_messages_each_get_a_protocol_error_and_change_nothing)
{
    tg_booking_id b = hx_booking_create(client, P, ALICE);
    tg_msg rep;
    cr_assert_eq(hx_hold(client, b, ALICE, (uint32_t[]){1, 2, 12}, 3, &rep), TG_OK);
    take_snapshot(&before, b);

    uint32_t n = encoded_samples();
    send_bad(K_EMPTY, NULL, 0, "the empty message");
    flood_truncated(n);
    flood_framing(n);
    flood_wrong_types(n);
    flood_huge_lengths();
    flood_unknown_types();
    flood_replies();
    flood_flipped(n, 1500);
    flood_random(2500);
    send_bad(K_EMPTY, NULL, 0, "the empty message, again");

    cr_log_info("malformed messages sent: %u (skipped %u valid mutations); truncated %u, "
                "wrong types %u, out of range %u, random %u, flipped %u",
                stats.sent, stats.skipped, stats.by_kind[K_TRUNCATED],
                stats.by_kind[K_WRONG_TYPE], stats.by_kind[K_SEAT_LIST],
                stats.by_kind[K_RANDOM], stats.by_kind[K_FLIPPED]);
    cr_assert(stats.sent >= 3000, "only %u malformed messages sent", stats.sent);
    cr_assert(stats.by_kind[K_RANDOM] >= 2000);

    take_snapshot(&after, b);
    cr_assert(tg_wire_equal(&before.availability, &after.availability),
              "availability (or its log head) changed");
    cr_assert(memcmp(before.words, after.words, sizeof(before.words)) == 0, "a seat changed");
    cr_assert(tg_wire_equal(&before.booking, &after.booking), "the booking changed");

    /* Ordinary requests still work, on the same raw socket too. */
    cr_assert_eq(hx_hold(client, b, ALICE, (uint32_t[]){5}, 1, &rep), TG_OK);
    encoded e;
    tg_msg get = {.type = TG_WIRE_SEAT_GET};
    get.seat_get.partition_id = P;
    get.seat_get.seat_id = 5;
    encode(&get, &e);
    uint8_t buf[4096];
    int64_t len = hx_raw_call(raw, e.bytes, e.len, buf, sizeof(buf));
    cr_assert(len > 0);
    cr_assert_eq(tg_wire_decode(buf, (size_t)len, NULL, &rep, NULL), TG_OK);
    cr_assert_eq(rep.type, TG_WIRE_SEAT_GET_OK);
    cr_assert_eq(tg_seat_word_state(rep.seat_get_ok.seat.word), TG_SEAT_SELECTED);
    hx_stop_ok(&unit);
}

Test(malformed, bad_messages_from_many_sockets_at_once_all_get_answers)
{
    /* Four sockets, each with several requests outstanding through nng
     * contexts, so that malformed input meets the unit's concurrency. */
    enum { SOCKETS = 4, PER_SOCKET = 8, ROUNDS = 200 };
    nng_socket socks[SOCKETS];
    nng_ctx ctxs[SOCKETS][PER_SOCKET];
    nng_aio *aios[SOCKETS][PER_SOCKET];
    for (int s = 0; s < SOCKETS; s++) {
        socks[s] = hx_raw_open(unit.rep_url, 5000);
        for (int c = 0; c < PER_SOCKET; c++) {
            cr_assert_eq(nng_ctx_open(&ctxs[s][c], socks[s]), 0);
            cr_assert_eq(nng_aio_alloc(&aios[s][c], NULL, NULL), 0);
            nng_aio_set_timeout(aios[s][c], 5000);
        }
    }
    uint32_t answered = 0;
    for (int round = 0; round < ROUNDS; round++) {
        for (int s = 0; s < SOCKETS; s++) {
            for (int c = 0; c < PER_SOCKET; c++) {
                uint8_t bytes[32];
                size_t len = (size_t)(rng() % sizeof(bytes));
                for (size_t k = 0; k < len; k++) {
                    bytes[k] = (uint8_t)rng();
                }
                nng_msg *msg;
                cr_assert_eq(nng_msg_alloc(&msg, 0), 0);
                cr_assert_eq(nng_msg_append(msg, bytes, len), 0);
                nng_aio_set_msg(aios[s][c], msg);
                nng_ctx_send(ctxs[s][c], aios[s][c]);
            }
        }
        for (int s = 0; s < SOCKETS; s++) {
            for (int c = 0; c < PER_SOCKET; c++) {
                nng_aio_wait(aios[s][c]);
                cr_assert_eq(nng_aio_result(aios[s][c]), 0);
                nng_ctx_recv(ctxs[s][c], aios[s][c]);
            }
        }
        for (int s = 0; s < SOCKETS; s++) {
            for (int c = 0; c < PER_SOCKET; c++) {
                nng_aio_wait(aios[s][c]);
                int rv = nng_aio_result(aios[s][c]);
                cr_assert_eq(rv, 0, "no reply: %s", nng_strerror(rv));
                nng_msg *msg = nng_aio_get_msg(aios[s][c]);
                tg_err err = tg_wire_decode(nng_msg_body(msg), nng_msg_len(msg), NULL,
                                            &scratch, NULL);
                nng_msg_free(msg);
                cr_assert_eq(err, TG_OK);
                cr_assert_eq(scratch.type, TG_WIRE_ERROR);
                answered++;
            }
        }
    }
    for (int s = 0; s < SOCKETS; s++) {
        for (int c = 0; c < PER_SOCKET; c++) {
            nng_aio_free(aios[s][c]);
            nng_ctx_close(ctxs[s][c]);
        }
        nng_close(socks[s]);
    }
    cr_assert_eq(answered, (uint32_t)(SOCKETS * PER_SOCKET * ROUNDS));
    hx_stop_ok(&unit);
}

Test(malformed, messages_over_the_size_limit_do_not_wedge_the_unit)
{
    /* Just past TG_WIRE_MESSAGE_BYTES_MAX the unit answers TG_EPROTO.  Far
     * past it, nng's receive size limit may drop the connection instead (the
     * sender then sees no reply); either way the unit keeps serving. */
    const size_t sizes[] = {TG_WIRE_MESSAGE_BYTES_MAX + 1, 4 * TG_WIRE_MESSAGE_BYTES_MAX};
    for (size_t i = 0; i < 2; i++) {
        uint8_t *big = calloc(1, sizes[i]);
        cr_assert(big != NULL);
        big[0] = 0xdd; /* array32 */
        nng_socket s = hx_raw_open(unit.rep_url, 2000);
        uint8_t buf[4096];
        int64_t n = hx_raw_call(s, big, sizes[i], buf, sizeof(buf));
        free(big);
        nng_close(s);
        cr_assert(n > 0 || i > 0, "no reply to %zu bytes: %s", sizes[i], nng_strerror((int)-n));
        if (n > 0) {
            cr_assert_eq(tg_wire_decode(buf, (size_t)n, NULL, &scratch, NULL), TG_OK);
            cr_assert_eq(scratch.type, TG_WIRE_ERROR);
            cr_assert_eq(scratch.error.code, (uint32_t)TG_EPROTO);
        } else {
            cr_log_info("%zu bytes: no reply (%s)", sizes[i], nng_strerror((int)-n));
        }
        tg_booking_id b = hx_booking_create(client, P, ALICE);
        tg_msg rep;
        cr_assert_eq(hx_hold(client, b, ALICE, (uint32_t[]){(uint32_t)i}, 1, &rep), TG_OK);
    }
    hx_stop_ok(&unit);
}
