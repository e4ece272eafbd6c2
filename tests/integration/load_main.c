/*
 * load_main.c — it_load, the integration tests' load generator.
 *
 * Tests that kill or stop a unit while requests are in flight run their
 * clients here, in a process of their own (see harness.h, "Helper
 * processes"): a tg_client redialling a dead unit can wedge nng 1.5.2's
 * socket teardown for the whole process, so this process never closes an
 * nng socket and ends with _exit.  It stops when its stdin reaches its end
 * and reports on stdout, one fact a line:
 *
 *   it_load burst URL PARTITION THREADS SEATS SEED
 *     THREADS clients, each a thread, run booking lives (create, hold 1..4
 *     adjacent seats, then maybe pay, cancel or release one) until the unit
 *     stops answering or stdin ends.
 *     "ready", "progress ACKED" while running, then per booking made
 *     "booking ID USER STATUS UNCERTAIN COUNT SEAT...", per client that got
 *     an answer its flow cannot explain "unexpected CLIENT CODE WHAT", and
 *     "end ACKED".  UNCERTAIN is 1 when a request about the booking got no
 *     reply (it may or may not have run).
 *
 *   it_load flood URL PARTITION INFLIGHT BOOKINGS SEATS SEED
 *     Makes BOOKINGS bookings, then keeps INFLIGHT requests in flight (60%
 *     holds of one seat into a random booking, 20% seat_get, 10%
 *     partition_info, 10% booking_create), resending from the callbacks.
 *     "ready", "progress REPLIES IN_FLIGHT", then "result SENT REPLIES
 *     NO_REPLY HELD IMPROPER TYPE CODE UNAVAILABLE" and "end".  A reply is
 *     improper unless it is the ok reply of its request or an error reply
 *     whose code that request can have; TYPE and CODE name the first one.
 */
#include "tixgrid/client.h"
#include "tixgrid/err.h"
#include "tixgrid/seat.h"
#include "tixgrid/wire.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CALL_TIMEOUT_MS 3000u
#define THREADS_MAX 64
#define BOOKINGS_PER_THREAD_MAX 8192u
#define FLOOD_INFLIGHT_MAX 1024u
#define FLOOD_BOOKINGS_MAX 4096u
#define USER UINT64_C(1001)

static bool stop; /* atomic: stdin ended */

static void *stdin_watch(void *unused)
{
    (void)unused;
    char buf[64];
    while (read(0, buf, sizeof(buf)) > 0) {
    }
    __atomic_store_n(&stop, true, __ATOMIC_RELEASE);
    return NULL;
}

static bool stopping(void)
{
    return __atomic_load_n(&stop, __ATOMIC_ACQUIRE);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static uint64_t next_random(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static tg_client *open_client(const char *url, uint32_t partition, uint32_t inflight)
{
    tg_client *c = NULL;
    tg_client_config cfg = {.inflight_max = inflight};
    if (tg_client_open(&cfg, &c) != TG_OK || tg_client_route(c, partition, url) != TG_OK) {
        fprintf(stderr, "it_load: cannot open a client for %s\n", url);
        _exit(2);
    }
    return c;
}

/* No reply came: the unit went away (or the reply broke the schema). */
static bool transport_error(tg_err err, const tg_msg *r)
{
    return err == TG_ETIMEDOUT || err == TG_ECLOSED || err == TG_EPROTO ||
           (err == TG_EUNAVAILABLE && r->type != TG_WIRE_ERROR);
}

/* ---- burst -------------------------------------------------------------- */

typedef struct {
    tg_booking_id id;
    uint64_t user;
    uint32_t status;
    tg_wire_seat_ids seats; /* ascending */
    bool uncertain;
} known_booking;

typedef struct {
    pthread_t thread;
    uint32_t index;
    uint32_t partition;
    uint32_t seats;
    const char *url;
    uint64_t rng;
    known_booking *known;
    uint32_t known_count;
    uint32_t acked; /* atomic */
    tg_err unexpected;
    const char *unexpected_what;
} burst_worker;

static tg_err call(tg_client *c, uint32_t partition, const tg_msg *req, tg_msg *rep)
{
    return tg_client_call(c, partition, req, CALL_TIMEOUT_MS, NULL, rep);
}

static tg_err booking_op(burst_worker *w, tg_client *c, tg_wire_type type, known_booking *k,
                         tg_msg *r)
{
    tg_msg req = {.type = type};
    switch (type) {
    case TG_WIRE_BOOKING_CANCEL:
        req.booking_cancel.booking_id = k->id;
        req.booking_cancel.user_id = k->user;
        break;
    case TG_WIRE_PAYMENT_BEGIN:
        req.payment_begin.booking_id = k->id;
        req.payment_begin.user_id = k->user;
        break;
    case TG_WIRE_PAYMENT_CONFIRM: req.payment_confirm.booking_id = k->id; break;
    default:
        req.type = TG_WIRE_SEATS_RELEASE;
        req.seats_release.booking_id = k->id;
        req.seats_release.user_id = k->user;
        req.seats_release.seats = (tg_wire_seat_ids){.count = 1, .ids = {k->seats.ids[0]}};
        break;
    }
    return call(c, w->partition, &req, r);
}

static void seats_add(tg_wire_seat_ids *ids, const tg_wire_seat_ids *add)
{
    for (uint32_t i = 0; i < add->count; i++) {
        uint32_t v = add->ids[i], j = ids->count++;
        for (; j > 0 && ids->ids[j - 1] > v; j--) {
            ids->ids[j] = ids->ids[j - 1];
        }
        ids->ids[j] = v;
    }
}

/* Records an answer to a step of k's life; false to stop the worker. */
static bool answered(burst_worker *w, known_booking *k, tg_err err, const tg_msg *r,
                     const char *what, bool taken_ok)
{
    if (transport_error(err, r)) {
        k->uncertain = true;
        return false;
    }
    if (err == TG_OK || (taken_ok && err == TG_ESEAT_TAKEN)) {
        __atomic_fetch_add(&w->acked, err == TG_OK, __ATOMIC_RELAXED);
        return true;
    }
    w->unexpected = err;
    w->unexpected_what = what;
    return false;
}

/* The step after the hold: pay (and maybe confirm), cancel, release one
 * seat, or nothing. */
static bool burst_after_hold(burst_worker *w, tg_client *c, known_booking *k, tg_msg *r)
{
    uint32_t dice = (uint32_t)(next_random(&w->rng) % 100);
    tg_err err;
    if (k->seats.count > 0 && dice < 35) {
        err = booking_op(w, c, TG_WIRE_PAYMENT_BEGIN, k, r);
        if (!answered(w, k, err, r, "payment_begin", false)) {
            return false;
        }
        k->status = TG_BOOKING_PENDING_PAYMENT;
        if (dice >= 20) {
            return true;
        }
        err = booking_op(w, c, TG_WIRE_PAYMENT_CONFIRM, k, r);
        if (!answered(w, k, err, r, "payment_confirm", false)) {
            return false;
        }
        k->status = TG_BOOKING_PAID;
    } else if (dice < 50) {
        err = booking_op(w, c, TG_WIRE_BOOKING_CANCEL, k, r);
        if (!answered(w, k, err, r, "booking_cancel", false)) {
            return false;
        }
        k->status = TG_BOOKING_CANCELLED;
        k->seats.count = 0;
    } else if (k->seats.count > 1 && dice < 60) {
        err = booking_op(w, c, TG_WIRE_SEATS_RELEASE, k, r);
        if (!answered(w, k, err, r, "seats_release", false)) {
            return false;
        }
        memmove(k->seats.ids, k->seats.ids + 1, sizeof(uint32_t) * (k->seats.count - 1));
        k->seats.count--;
    }
    return true;
}

/* One booking's life; false once the worker should stop. */
static bool burst_one(burst_worker *w, tg_client *c, tg_msg *r)
{
    if (w->known_count == BOOKINGS_PER_THREAD_MAX) {
        return false;
    }
    uint64_t user = 5000 + w->index;
    tg_msg req = {.type = TG_WIRE_BOOKING_CREATE};
    req.booking_create.partition_id = w->partition;
    req.booking_create.user_id = user;
    tg_err err = call(c, w->partition, &req, r);
    if (err != TG_OK) {
        if (!transport_error(err, r) && err != TG_EBOOKINGS_FULL) {
            w->unexpected = err;
            w->unexpected_what = "booking_create";
        }
        return false;
    }
    known_booking *k = &w->known[w->known_count++];
    *k = (known_booking){.id = r->booking_create_ok.booking_id, .user = user,
                         .status = TG_BOOKING_CREATED};
    __atomic_fetch_add(&w->acked, 1, __ATOMIC_RELAXED);
    req = (tg_msg){.type = TG_WIRE_SEATS_HOLD};
    req.seats_hold.booking_id = k->id;
    req.seats_hold.user_id = user;
    uint32_t n = 1 + (uint32_t)(next_random(&w->rng) % 4);
    uint32_t base = (uint32_t)(next_random(&w->rng) % (w->seats - n));
    req.seats_hold.seats.count = n;
    for (uint32_t i = 0; i < n; i++) {
        req.seats_hold.seats.ids[i] = base + i;
    }
    err = call(c, w->partition, &req, r);
    if (!answered(w, k, err, r, "seats_hold", true)) {
        return false;
    }
    if (err == TG_OK) {
        seats_add(&k->seats, &req.seats_hold.seats);
    }
    return burst_after_hold(w, c, k, r);
}

static void *burst_main(void *arg)
{
    burst_worker *w = arg;
    tg_client *c = open_client(w->url, w->partition, 4);
    tg_msg *r = malloc(sizeof(*r));
    if (r == NULL) {
        _exit(2);
    }
    while (!stopping() && burst_one(w, c, r)) {
    }
    return NULL; /* c and r stay: this process never closes nng */
}

static uint32_t burst_acked(const burst_worker *ws, int n)
{
    uint32_t total = 0;
    for (int i = 0; i < n; i++) {
        total += __atomic_load_n(&ws[i].acked, __ATOMIC_RELAXED);
    }
    return total;
}

static void burst_report(const burst_worker *ws, int n)
{
    for (int t = 0; t < n; t++) {
        for (uint32_t i = 0; i < ws[t].known_count; i++) {
            const known_booking *k = &ws[t].known[i];
            printf("booking %llu %llu %u %d %u", (unsigned long long)k->id,
                   (unsigned long long)k->user, k->status, k->uncertain ? 1 : 0, k->seats.count);
            for (uint32_t s = 0; s < k->seats.count; s++) {
                printf(" %u", k->seats.ids[s]);
            }
            printf("\n");
        }
        if (ws[t].unexpected != TG_OK) {
            printf("unexpected %d %d %s\n", t, (int)ws[t].unexpected, ws[t].unexpected_what);
        }
    }
    printf("end %u\n", burst_acked(ws, n));
}

static int burst(const char *url, uint32_t partition, int threads, uint32_t seats, uint64_t seed)
{
    static burst_worker workers[THREADS_MAX];
    if (threads < 1 || threads > THREADS_MAX || seats < 8) {
        return 2;
    }
    printf("ready\n");
    fflush(stdout);
    for (int i = 0; i < threads; i++) {
        known_booking *known = calloc(BOOKINGS_PER_THREAD_MAX, sizeof(*known));
        if (known == NULL) {
            return 2;
        }
        workers[i] = (burst_worker){.index = (uint32_t)i, .partition = partition, .seats = seats,
                                    .url = url, .rng = seed * (uint64_t)(i + 1) | 1,
                                    .known = known};
        pthread_create(&workers[i].thread, NULL, burst_main, &workers[i]);
    }
    uint32_t last = 0;
    while (!stopping()) {
        uint32_t acked = burst_acked(workers, threads);
        if (acked != last) {
            printf("progress %u\n", acked);
            fflush(stdout);
            last = acked;
        }
        sleep_ms(2);
    }
    for (int i = 0; i < threads; i++) {
        pthread_join(workers[i].thread, NULL);
    }
    burst_report(workers, threads);
    return 0;
}

/* ---- flood ------------------------------------------------------------------ */

typedef struct flood flood;

typedef struct {
    flood *owner;
    uint64_t rng;
    tg_msg req;
} flood_slot;

struct flood {
    tg_client *c;
    uint32_t partition, seats, booking_count;
    tg_booking_id bookings[FLOOD_BOOKINGS_MAX];
    /* Outcomes, atomic. */
    uint32_t sent, replies, no_reply, held, improper, unavailable, in_flight;
    uint32_t improper_type, improper_code;
};

static void flood_send(flood_slot *s);

static bool code_allowed(tg_wire_type type, tg_err err)
{
    if (err == TG_EUNAVAILABLE || err == TG_EBUSY) {
        return true; /* the unit is stopping; a booking lock held too long */
    }
    return type == TG_WIRE_SEATS_HOLD && (err == TG_ESEAT_TAKEN || err == TG_ETOO_MANY_SEATS);
}

static void flood_improper(flood *f, tg_wire_type type, tg_err err)
{
    if (__atomic_fetch_add(&f->improper, 1, __ATOMIC_RELAXED) == 0) {
        f->improper_type = type;
        f->improper_code = err;
    }
}

static void flood_cb(void *arg, tg_err err, const tg_msg *reply)
{
    flood_slot *s = arg;
    flood *f = s->owner;
    tg_wire_type type = s->req.type;
    if (reply == NULL) {
        if (err == TG_EPROTO) {
            flood_improper(f, type, err);
        }
        __atomic_fetch_add(&f->no_reply, 1, __ATOMIC_RELAXED);
        __atomic_fetch_sub(&f->in_flight, 1, __ATOMIC_ACQ_REL);
        return; /* the unit went away: this slot is done */
    }
    __atomic_fetch_add(&f->replies, 1, __ATOMIC_RELAXED);
    bool ok = err == TG_OK ? reply->type == tg_wire_reply_type(type)
                           : reply->type == TG_WIRE_ERROR && reply->error.code == (uint32_t)err &&
                                 code_allowed(type, err);
    if (!ok) {
        flood_improper(f, type, err);
    }
    __atomic_fetch_add(&f->unavailable, err == TG_EUNAVAILABLE, __ATOMIC_RELAXED);
    __atomic_fetch_add(&f->held, ok && err == TG_OK && type == TG_WIRE_SEATS_HOLD,
                       __ATOMIC_RELAXED);
    if (stopping()) {
        __atomic_fetch_sub(&f->in_flight, 1, __ATOMIC_ACQ_REL);
        return;
    }
    flood_send(s);
}

static void flood_send(flood_slot *s)
{
    flood *f = s->owner;
    uint32_t dice = (uint32_t)(next_random(&s->rng) % 10);
    tg_msg *r = &s->req;
    memset(r, 0, sizeof(*r));
    if (dice < 6) {
        r->type = TG_WIRE_SEATS_HOLD;
        r->seats_hold.booking_id = f->bookings[next_random(&s->rng) % f->booking_count];
        r->seats_hold.user_id = USER;
        r->seats_hold.seats = (tg_wire_seat_ids){
            .count = 1, .ids = {(uint32_t)(next_random(&s->rng) % f->seats)}};
    } else if (dice < 8) {
        r->type = TG_WIRE_SEAT_GET;
        r->seat_get.partition_id = f->partition;
        r->seat_get.seat_id = (uint32_t)(next_random(&s->rng) % f->seats);
    } else if (dice < 9) {
        r->type = TG_WIRE_PARTITION_INFO;
        r->partition_info.partition_id = f->partition;
    } else {
        r->type = TG_WIRE_BOOKING_CREATE;
        r->booking_create.partition_id = f->partition;
        r->booking_create.user_id = USER;
    }
    __atomic_fetch_add(&f->sent, 1, __ATOMIC_RELAXED);
    if (tg_client_send(f->c, f->partition, r, CALL_TIMEOUT_MS, NULL, flood_cb, s) != TG_OK) {
        __atomic_fetch_sub(&f->in_flight, 1, __ATOMIC_ACQ_REL); /* refused: no callback */
    }
}

static bool flood_bookings(flood *f)
{
    tg_msg *r = malloc(sizeof(*r));
    for (uint32_t i = 0; r != NULL && i < f->booking_count; i++) {
        tg_msg req = {.type = TG_WIRE_BOOKING_CREATE};
        req.booking_create.partition_id = f->partition;
        req.booking_create.user_id = USER;
        if (call(f->c, f->partition, &req, r) != TG_OK) {
            return false;
        }
        f->bookings[i] = r->booking_create_ok.booking_id;
    }
    return r != NULL;
}

static int flood_run(const char *url, uint32_t partition, uint32_t inflight, uint32_t bookings,
                     uint32_t seats, uint64_t seed)
{
    static flood f;
    static flood_slot slots[FLOOD_INFLIGHT_MAX];
    if (inflight < 1 || inflight > FLOOD_INFLIGHT_MAX || bookings < 1 ||
        bookings > FLOOD_BOOKINGS_MAX || seats < 1) {
        return 2;
    }
    f = (flood){.partition = partition, .seats = seats, .booking_count = bookings};
    f.c = open_client(url, partition, 2 * inflight);
    if (!flood_bookings(&f)) {
        fprintf(stderr, "it_load: cannot make the bookings\n");
        return 1;
    }
    printf("ready\n");
    fflush(stdout);
    f.in_flight = inflight;
    for (uint32_t i = 0; i < inflight; i++) {
        slots[i] = (flood_slot){.owner = &f, .rng = seed * (i + 1) | 1};
        flood_send(&slots[i]);
    }
    while (!stopping()) {
        printf("progress %u %u\n", __atomic_load_n(&f.replies, __ATOMIC_RELAXED),
               __atomic_load_n(&f.in_flight, __ATOMIC_RELAXED));
        fflush(stdout);
        sleep_ms(5);
    }
    for (int i = 0; i < 2000 && __atomic_load_n(&f.in_flight, __ATOMIC_ACQUIRE) > 0; i++) {
        sleep_ms(5); /* unanswered requests end with the client's timeout */
    }
    printf("result %u %u %u %u %u %u %u %u\n", f.sent, f.replies, f.no_reply, f.held, f.improper,
           f.improper_type, f.improper_code, f.unavailable);
    printf("end\n");
    return 0;
}

int main(int argc, char **argv)
{
    pthread_t watcher;
    pthread_create(&watcher, NULL, stdin_watch, NULL);
    int rc = 2;
    if (argc == 7 && strcmp(argv[1], "burst") == 0) {
        rc = burst(argv[2], (uint32_t)strtoul(argv[3], NULL, 10), atoi(argv[4]),
                   (uint32_t)strtoul(argv[5], NULL, 10), strtoull(argv[6], NULL, 10));
    } else if (argc == 8 && strcmp(argv[1], "flood") == 0) {
        rc = flood_run(argv[2], (uint32_t)strtoul(argv[3], NULL, 10),
                       (uint32_t)strtoul(argv[4], NULL, 10), (uint32_t)strtoul(argv[5], NULL, 10),
                       (uint32_t)strtoul(argv[6], NULL, 10), strtoull(argv[7], NULL, 10));
    } else {
        fprintf(stderr, "usage: it_load burst URL PARTITION THREADS SEATS SEED\n"
                        "       it_load flood URL PARTITION INFLIGHT BOOKINGS SEATS SEED\n");
    }
    fflush(stdout);
    _exit(rc); /* never close nng: see the top of this file */
}
