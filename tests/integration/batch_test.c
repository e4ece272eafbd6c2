/*
 * batch_test.c — batches of requests (tixgrid/wire.h, "Batches") against a
 * real tixgrid-pu: through the routing client (tg_client_send_batch) each
 * request has the outcome it would have had alone, in the batch's order;
 * over a raw socket, every malformed frame is refused whole with one error
 * reply and changes nothing.
 *
 * The unit serves one partition of 20 seats (one section, two rows of ten).
 */
#include "harness.h"

#include <criterion/criterion.h>

#include <pthread.h>
#include <string.h>

#define P     5u
#define SEATS 20u
#define ALICE UINT64_C(1001)
#define BOB   UINT64_C(1002)

static hx_unit unit;
static tg_client *client;
static nng_socket raw;

static void start_unit(void)
{
    hx_unit_init(&unit, "batch");
    hx_layout l = {.partition_id = P,
                   .event_id = 77,
                   .sections = 1,
                   .rows = 2,
                   .seats = 10,
                   .log_records = 4096};
    hx_write_layout(&unit, &l);
    hx_start(&unit);
    client = hx_client(&unit, P, 8);
    raw = hx_unit_raw(&unit, 5000);
}

static void stop_unit(void)
{
    hx_fini_all(); /* closes the client and the raw socket too */
    client = NULL;
}

TestSuite(batch, .init = start_unit, .fini = stop_unit, .timeout = 60);

/* ---- Sending a batch and waiting for its callbacks ---------------------- */

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    uint32_t calls;        /* callbacks so far */
    uint32_t order_errors; /* callbacks out of order */
    tg_err err[TG_WIRE_BATCH_MAX];
    tg_msg reply[TG_WIRE_BATCH_MAX];
    bool has_reply[TG_WIRE_BATCH_MAX];
} outcomes;

static outcomes out; /* large: keep it off the stack */

static void batch_cb(void *arg, uint32_t index, tg_err err, const tg_msg *reply)
{
    outcomes *o = arg;
    pthread_mutex_lock(&o->lock);
    if (index != o->calls) {
        o->order_errors++;
    }
    if (index < TG_WIRE_BATCH_MAX) {
        o->err[index] = err;
        o->has_reply[index] = reply != NULL;
        if (reply != NULL) {
            o->reply[index] = *reply;
        }
    }
    o->calls++;
    pthread_cond_broadcast(&o->cond);
    pthread_mutex_unlock(&o->lock);
}

/* Sends b and waits for its b->count callbacks. */
static void run_batch(tg_wire_batch *b)
{
    uint32_t count = b->count;
    memset(&out, 0, sizeof(out));
    pthread_mutex_init(&out.lock, NULL);
    pthread_cond_init(&out.cond, NULL);
    cr_assert_eq(tg_client_send_batch(client, P, b, 5000, batch_cb, &out), TG_OK);
    pthread_mutex_lock(&out.lock);
    int64_t deadline = hx_now_ms() + 10000;
    while (out.calls < count && hx_now_ms() < deadline) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 10 * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&out.cond, &out.lock, &ts);
    }
    pthread_mutex_unlock(&out.lock);
    cr_assert_eq(out.calls, count, "%u callbacks for %u requests", out.calls, count);
    cr_assert_eq(out.order_errors, 0, "callbacks came out of order");
    tg_wire_batch_reset(b);
}

static void add(tg_wire_batch *b, const tg_msg *req)
{
    const char *why = NULL;
    cr_assert_eq(tg_wire_batch_add(b, req, &why), TG_OK, "batch_add: %s", why ? why : "?");
}

static tg_msg release_req(tg_booking_id booking, uint64_t user, uint32_t seat)
{
    tg_msg m = {.type = TG_WIRE_SEATS_RELEASE};
    m.seats_release.booking_id = booking;
    m.seats_release.user_id = user;
    m.seats_release.seats.count = 1;
    m.seats_release.seats.ids[0] = seat;
    return m;
}

/* The state and booking seq of a seat, read alone. */
static void seat_is(uint32_t seat, tg_seat_state state, tg_booking_id holder)
{
    static tg_msg rep;
    cr_assert_eq(hx_seat_get(client, P, seat, &rep), TG_OK);
    cr_assert_eq(tg_seat_word_state(rep.seat_get_ok.seat.word), state, "seat %u: state %d", seat,
                 (int)tg_seat_word_state(rep.seat_get_ok.seat.word));
    cr_assert_eq(tg_seat_word_booking(rep.seat_get_ok.seat.word), tg_booking_id_seq(holder),
                 "seat %u: holder", seat);
}

/* ---- Through the client ----------------------------------------------------- */

Test(batch, requests_run_in_order_each_with_the_outcome_it_would_have_alone)
{
    tg_booking_id a = hx_booking_create(client, P, ALICE);
    tg_booking_id b = hx_booking_create(client, P, BOB);
    static tg_wire_batch batch;
    tg_wire_batch_init(&batch);
    tg_msg m = hx_hold_one(a, ALICE, 3);
    add(&batch, &m); /* 0: Alice takes seat 3 */
    m = hx_hold_one(b, BOB, 3);
    add(&batch, &m); /* 1: Bob is refused seat 3, named in the error */
    m = release_req(a, ALICE, 3);
    add(&batch, &m); /* 2: Alice lets it go, after 1 */
    m = hx_hold_one(b, BOB, 3);
    add(&batch, &m); /* 3: now Bob gets it */
    m = hx_hold_one(a, BOB, 4);
    add(&batch, &m); /* 4: Bob using Alice's booking: not found */
    m = (tg_msg){.type = TG_WIRE_BOOKING_GET};
    m.booking_get.booking_id = b;
    m.booking_get.user_id = BOB;
    add(&batch, &m); /* 5: Bob's booking, holding seat 3 */
    run_batch(&batch);

    cr_assert_eq(out.err[0], TG_OK);
    cr_assert_eq(out.reply[0].type, TG_WIRE_SEATS_HOLD_OK);
    cr_assert_eq(out.err[1], TG_ESEAT_TAKEN);
    cr_assert(out.has_reply[1] && out.reply[1].type == TG_WIRE_ERROR);
    cr_assert_eq(out.reply[1].error.seats.count, 1);
    cr_assert_eq(out.reply[1].error.seats.ids[0], 3);
    cr_assert_eq(out.err[2], TG_OK);
    cr_assert_eq(out.reply[2].type, TG_WIRE_SEATS_RELEASE_OK);
    cr_assert_eq(out.err[3], TG_OK);
    cr_assert_eq(out.err[4], TG_ENOT_FOUND, "got %s", tg_errname(out.err[4]));
    cr_assert_eq(out.err[5], TG_OK);
    cr_assert_eq(out.reply[5].type, TG_WIRE_BOOKING_GET_OK);
    cr_assert_eq(out.reply[5].booking_get_ok.seats.count, 1);
    cr_assert_eq(out.reply[5].booking_get_ok.seats.ids[0], 3);
    seat_is(3, TG_SEAT_SELECTED, b);
    seat_is(4, TG_SEAT_FREE, 0);
    tg_wire_batch_destroy(&batch);
}

Test(batch, a_batch_of_one_and_a_full_batch_both_work)
{
    tg_booking_id a = hx_booking_create(client, P, ALICE);
    static tg_wire_batch batch;
    tg_wire_batch_init(&batch);
    tg_msg m = hx_hold_one(a, ALICE, 0);
    add(&batch, &m);
    run_batch(&batch); /* travels as a plain request */
    cr_assert_eq(out.err[0], TG_OK);
    cr_assert_eq(out.reply[0].type, TG_WIRE_SEATS_HOLD_OK);

    /* 64 requests: hold and release seat 1, 32 times over. */
    for (uint32_t i = 0; i < TG_WIRE_BATCH_MAX; i++) {
        m = i % 2 == 0 ? hx_hold_one(a, ALICE, 1) : release_req(a, ALICE, 1);
        add(&batch, &m);
    }
    const char *why = NULL;
    cr_assert_eq(tg_wire_batch_add(&batch, &m, &why), TG_EINVAL, "a 65th request was taken");
    cr_assert_str_eq(why, "batch: full");
    run_batch(&batch);
    for (uint32_t i = 0; i < TG_WIRE_BATCH_MAX; i++) {
        cr_assert_eq(out.err[i], TG_OK, "request %u: %s", i, tg_errname(out.err[i]));
    }
    seat_is(0, TG_SEAT_SELECTED, a);
    seat_is(1, TG_SEAT_FREE, 0);
    tg_wire_batch_destroy(&batch);
}

Test(batch, only_short_seat_and_booking_operations_are_batched)
{
    static tg_wire_batch batch;
    tg_wire_batch_init(&batch);
    tg_msg m = {.type = TG_WIRE_SEATS_LIST};
    m.seats_list.partition_id = P;
    m.seats_list.count = 10;
    m.seats_list.state = m.seats_list.row = m.seats_list.section = -1;
    const char *why = NULL;
    cr_assert_eq(tg_wire_batch_add(&batch, &m, &why), TG_EINVAL);
    cr_assert_str_eq(why, "batch: request not batchable");
    cr_assert_eq(batch.count, 0);
    tg_wire_batch_destroy(&batch);
}

Test(batch, a_batch_for_a_partition_without_a_route_is_refused_at_once)
{
    static tg_wire_batch batch;
    tg_wire_batch_init(&batch);
    tg_msg m = hx_hold_one(tg_booking_id_make(P, 1), ALICE, 0);
    add(&batch, &m);
    cr_assert_eq(tg_client_send_batch(client, P + 1, &batch, 1000, batch_cb, &out),
                 TG_EUNAVAILABLE);
    tg_wire_batch_destroy(&batch);
}

/* ---- Over a raw socket -------------------------------------------------------- */

static msgpack_sbuffer frame;

/* Encodes req (a valid request) into bytes. */
static size_t encode(const tg_msg *req, uint8_t *buf, size_t cap)
{
    msgpack_sbuffer s;
    msgpack_sbuffer_init(&s);
    cr_assert_eq(tg_wire_encode(req, &s, NULL), TG_OK);
    cr_assert(s.size <= cap);
    memcpy(buf, s.data, s.size);
    size_t n = s.size;
    msgpack_sbuffer_destroy(&s);
    return n;
}

/* Sends bytes; the reply must be one error with that sentence. */
static void refused_whole(const void *bytes, size_t len, const char *what, const char *sentence)
{
    static uint8_t reply[1 << 16];
    static tg_msg rep;
    int64_t n = hx_raw_call(raw, bytes, len, reply, sizeof(reply));
    cr_assert(n > 0, "%s: no reply", what);
    cr_assert_eq(tg_wire_decode(reply, (size_t)n, NULL, &rep, NULL), TG_OK, "%s: reply", what);
    cr_assert_eq(rep.type, TG_WIRE_ERROR, "%s: not an error reply", what);
    cr_assert_eq(rep.error.code, (uint32_t)TG_EPROTO, "%s: code %u", what, rep.error.code);
    cr_assert_str_eq(rep.error.message, sentence, "%s", what);
}

static void frame_begin(uint32_t fields, uint32_t type, uint32_t version, uint32_t parts)
{
    msgpack_sbuffer_clear(&frame);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &frame, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, fields);
    msgpack_pack_uint32(&pk, type);
    msgpack_pack_uint32(&pk, version);
    if (fields >= 3) {
        msgpack_pack_array(&pk, parts);
    }
}

static void frame_bin(const void *data, size_t len)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, &frame, msgpack_sbuffer_write);
    msgpack_pack_bin(&pk, len);
    msgpack_pack_bin_body(&pk, data, len);
}

Test(batch, malformed_frames_are_refused_whole_and_change_nothing)
{
    tg_booking_id a = hx_booking_create(client, P, ALICE);
    tg_msg hold = hx_hold_one(a, ALICE, 7);
    uint8_t one[256];
    size_t one_len = encode(&hold, one, sizeof(one));
    msgpack_sbuffer_init(&frame);

    frame_begin(3, TG_WIRE_BATCH, TG_WIRE_VERSION, 0);
    refused_whole(frame.data, frame.size, "no parts", "batch: parts: empty");

    frame_begin(3, TG_WIRE_BATCH, TG_WIRE_VERSION, TG_WIRE_BATCH_MAX + 1);
    for (uint32_t i = 0; i < TG_WIRE_BATCH_MAX + 1; i++) {
        frame_bin(one, one_len);
    }
    refused_whole(frame.data, frame.size, "65 parts", "batch: parts: too many items");

    frame_begin(3, TG_WIRE_BATCH, 2, 1);
    frame_bin(one, one_len);
    refused_whole(frame.data, frame.size, "version 2", "batch: unknown version");

    frame_begin(3, TG_WIRE_BATCH, TG_WIRE_VERSION, 2);
    frame_bin(one, one_len);
    refused_whole(frame.data, frame.size, "a part missing",
                  "batch: parts: an item is not a complete bin");

    frame_begin(3, TG_WIRE_BATCH, TG_WIRE_VERSION, 1);
    msgpack_sbuffer_write(&frame, (const char *)one, one_len); /* a request, not a bin */
    refused_whole(frame.data, frame.size, "not a bin",
                  "batch: parts: an item is not a complete bin");

    frame_begin(3, TG_WIRE_BATCH, TG_WIRE_VERSION, 1);
    frame_bin(one, one_len);
    msgpack_sbuffer_write(&frame, "\x00", 1);
    refused_whole(frame.data, frame.size, "a byte after", "batch: bytes after the message");

    frame_begin(3, TG_WIRE_BATCH, TG_WIRE_VERSION, 1);
    frame_bin(one, one_len);
    for (size_t cut = 1; cut < frame.size; cut++) {
        static uint8_t reply[1 << 16];
        int64_t n = hx_raw_call(raw, frame.data, cut, reply, sizeof(reply));
        cr_assert(n > 0, "truncated to %zu bytes: no reply", cut);
    }
    seat_is(7, TG_SEAT_FREE, 0); /* none of them held the seat */
    msgpack_sbuffer_destroy(&frame);
}

Test(batch, a_bad_part_gets_its_own_error_and_the_others_run)
{
    tg_booking_id a = hx_booking_create(client, P, ALICE);
    tg_msg hold = hx_hold_one(a, ALICE, 8);
    tg_msg list = {.type = TG_WIRE_SEATS_LIST};
    list.seats_list.partition_id = P;
    list.seats_list.count = 10;
    list.seats_list.state = list.seats_list.row = list.seats_list.section = -1;
    uint8_t h[256], l[256];
    size_t h_len = encode(&hold, h, sizeof(h)), l_len = encode(&list, l, sizeof(l));
    msgpack_sbuffer_init(&frame);
    frame_begin(3, TG_WIRE_BATCH, TG_WIRE_VERSION, 1);
    frame_bin(h, h_len);
    uint8_t nested[512];
    size_t nested_len = frame.size;
    memcpy(nested, frame.data, nested_len); /* a whole batch, holding the same hold */
    tg_msg elsewhere = hx_hold_one(tg_booking_id_make(P + 1, 1), ALICE, 8);
    uint8_t e[256];
    size_t e_len = encode(&elsewhere, e, sizeof(e));
    frame_begin(3, TG_WIRE_BATCH, TG_WIRE_VERSION, 5);
    frame_bin("\xc1", 1);          /* never valid msgpack */
    frame_bin(l, l_len);           /* a valid request that batches may not carry */
    frame_bin(nested, nested_len); /* a batch inside a batch */
    frame_bin(h, h_len);           /* a good hold: runs, and names the batch's partition */
    frame_bin(e, e_len);           /* a hold about another partition */

    static uint8_t reply[1 << 16];
    int64_t n = hx_raw_call(raw, frame.data, frame.size, reply, sizeof(reply));
    cr_assert(n > 0, "no reply");
    tg_wire_part parts[TG_WIRE_BATCH_MAX];
    uint32_t count = 0;
    const char *why = NULL;
    cr_assert_eq(tg_wire_batch_parse(reply, (size_t)n, TG_WIRE_BATCH_OK, parts, &count, &why),
                 TG_OK, "reply: %s", why ? why : "?");
    cr_assert_eq(count, 5);
    static tg_msg rep;
    const tg_err want[3] = {TG_EPROTO, TG_EINVAL, TG_EPROTO};
    for (uint32_t i = 0; i < 3; i++) {
        cr_assert_eq(tg_wire_decode(parts[i].data, parts[i].len, NULL, &rep, NULL), TG_OK);
        cr_assert_eq(rep.type, TG_WIRE_ERROR, "part %u", i);
        cr_assert_eq(rep.error.code, (uint32_t)want[i], "part %u: code %u", i, rep.error.code);
        if (i == 1) {
            cr_assert_str_eq(rep.error.message, "batch: request type not allowed in a batch");
        }
    }
    cr_assert_eq(tg_wire_decode(parts[3].data, parts[3].len, NULL, &rep, NULL), TG_OK);
    cr_assert_eq(rep.type, TG_WIRE_SEATS_HOLD_OK);
    cr_assert_eq(tg_wire_decode(parts[4].data, parts[4].len, NULL, &rep, NULL), TG_OK);
    cr_assert_eq(rep.type, TG_WIRE_ERROR);
    cr_assert_eq(rep.error.code, (uint32_t)TG_EINVAL);
    cr_assert_str_eq(rep.error.message, "batch: every request must be about one partition");
    seat_is(8, TG_SEAT_SELECTED, a);
    msgpack_sbuffer_destroy(&frame);
}
