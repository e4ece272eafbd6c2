/*
 * shutdown_test.c — stopping a real tixgrid-pu while it is busy.
 *
 * pu/server.h: on SIGTERM the unit stops accepting (a request arriving from
 * then on gets TG_EUNAVAILABLE), lets every request being processed send its
 * reply, closes its sockets and exits 0.  Here a client keeps many requests
 * in flight (holds, reads, new bookings) when SIGTERM arrives: every request
 * that got a reply must have got a proper one (the ok reply of its type, or
 * an error reply whose code the request can have), the unit must exit 0
 * promptly, and after a restart the seats held are the acknowledged holds
 * (plus at most the holds whose reply never arrived).
 */
#include "harness.h"

#include <criterion/criterion.h>

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#define P 21u
#define SEATS 10000u /* 10 rows of 1000 */
#define BOOKINGS 512u
#define IN_FLIGHT 128u
#define ALICE UINT64_C(1001)
/* How long the exit may take after SIGTERM with requests in flight. */
#define PROMPT_EXIT_MS 2000

static hx_unit unit;
static tg_client *client;

static void start_unit(void)
{
    hx_unit_init(&unit, "term");
    hx_layout l = {.partition_id = P, .event_id = 31, .sections = 1, .rows = 10, .seats = 1000,
                   .log_records = 1u << 17, .booking_capacity = 1u << 15};
    hx_write_layout(&unit, &l);
    hx_start(&unit);
    client = hx_client(&unit, P, 4);
}

static void stop_unit(void)
{
    hx_fini_all(); /* closes the client too */
    client = NULL;
}

TestSuite(shutdown, .init = start_unit, .fini = stop_unit, .timeout = 90);

/* ---- The load ------------------------------------------------------------ */

typedef struct load load;

typedef struct {
    load *owner;
    uint64_t rng;
    tg_msg req;
} load_slot;

struct load {
    tg_client *c;
    tg_booking_id bookings[BOOKINGS];
    load_slot slots[IN_FLIGHT];
    bool stop; /* atomic: no new requests */
    /* Outcomes, atomic. */
    uint32_t sent, replies, no_reply, held, improper;
    uint32_t by_code[TG_ERR_COUNT_];
    uint32_t in_flight;
    uint32_t improper_type, improper_code; /* the first improper reply */
};

static uint64_t next_random(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void load_send(load_slot *s);

static bool code_allowed(tg_wire_type type, tg_err err)
{
    if (err == TG_EUNAVAILABLE || err == TG_EBUSY) {
        return true; /* stopping; a booking lock held too long under load */
    }
    switch (type) {
    case TG_WIRE_SEATS_HOLD: return err == TG_ESEAT_TAKEN || err == TG_ETOO_MANY_SEATS;
    default: return false;
    }
}

static void improper(load *l, tg_wire_type type, tg_err err)
{
    if (__atomic_fetch_add(&l->improper, 1, __ATOMIC_RELAXED) == 0) {
        l->improper_type = type;
        l->improper_code = err;
    }
}

static void load_cb(void *arg, tg_err err, const tg_msg *reply)
{
    load_slot *s = arg;
    load *l = s->owner;
    tg_wire_type type = s->req.type;
    if (reply == NULL) {
        /* No reply: the unit went away before answering. */
        if (err == TG_EPROTO) {
            improper(l, type, err);
        }
        __atomic_fetch_add(&l->no_reply, 1, __ATOMIC_RELAXED);
    } else {
        __atomic_fetch_add(&l->replies, 1, __ATOMIC_RELAXED);
        __atomic_fetch_add(&l->by_code[err], 1, __ATOMIC_RELAXED);
        bool ok = err == TG_OK ? reply->type == tg_wire_reply_type(type)
                               : reply->type == TG_WIRE_ERROR &&
                                     reply->error.code == (uint32_t)err &&
                                     code_allowed(type, err);
        if (!ok) {
            improper(l, type, err);
        }
        if (ok && err == TG_OK && type == TG_WIRE_SEATS_HOLD) {
            __atomic_fetch_add(&l->held, 1, __ATOMIC_RELAXED);
        }
    }
    if (!__atomic_load_n(&l->stop, __ATOMIC_ACQUIRE) && reply != NULL) {
        load_send(s);
        return;
    }
    __atomic_fetch_sub(&l->in_flight, 1, __ATOMIC_ACQ_REL);
}

/* A random request: mostly holds of one seat, some reads, some bookings. */
static void load_send(load_slot *s)
{
    load *l = s->owner;
    uint32_t dice = (uint32_t)(next_random(&s->rng) % 10);
    tg_msg *r = &s->req;
    memset(r, 0, sizeof(*r));
    if (dice < 6) {
        r->type = TG_WIRE_SEATS_HOLD;
        r->seats_hold.booking_id = l->bookings[next_random(&s->rng) % BOOKINGS];
        r->seats_hold.user_id = ALICE;
        r->seats_hold.seats = (tg_wire_seat_ids){
            .count = 1, .ids = {(uint32_t)(next_random(&s->rng) % SEATS)}};
    } else if (dice < 8) {
        r->type = TG_WIRE_SEAT_GET;
        r->seat_get.partition_id = P;
        r->seat_get.seat_id = (uint32_t)(next_random(&s->rng) % SEATS);
    } else if (dice < 9) {
        r->type = TG_WIRE_PARTITION_INFO;
        r->partition_info.partition_id = P;
    } else {
        r->type = TG_WIRE_BOOKING_CREATE;
        r->booking_create.partition_id = P;
        r->booking_create.user_id = ALICE;
    }
    __atomic_fetch_add(&l->sent, 1, __ATOMIC_RELAXED);
    if (tg_client_send(l->c, P, r, 3000, NULL, load_cb, s) != TG_OK) {
        /* Refused at once (its callback never runs): this slot is done. */
        __atomic_fetch_sub(&l->in_flight, 1, __ATOMIC_ACQ_REL);
    }
}

static load the_load;

static void load_start(load *l)
{
    tg_client_config cfg = {.inflight_max = 2 * IN_FLIGHT};
    cr_assert_eq(tg_client_open(&cfg, &l->c), TG_OK);
    cr_assert_eq(tg_client_route(l->c, P, unit.rep_url), TG_OK);
    for (uint32_t i = 0; i < BOOKINGS; i++) {
        l->bookings[i] = hx_booking_create(client, P, ALICE);
    }
    l->in_flight = IN_FLIGHT;
    for (uint32_t i = 0; i < IN_FLIGHT; i++) {
        l->slots[i] = (load_slot){.owner = l, .rng = 0x9e3779b97f4a7c15ULL * (i + 1)};
        load_send(&l->slots[i]);
    }
}

/* Stops sending and waits (bounded) for the requests in flight to end:
 * those without a reply end with the client's timeout. */
static void load_stop(load *l)
{
    __atomic_store_n(&l->stop, true, __ATOMIC_RELEASE);
    int64_t limit = hx_now_ms() + 10000;
    while (__atomic_load_n(&l->in_flight, __ATOMIC_ACQUIRE) > 0 && hx_now_ms() < limit) {
        hx_sleep_ms(1);
    }
}

Test(shutdown, sigterm_with_requests_in_flight_answers_properly_and_exits_0_promptly)
{
    load *l = &the_load;
    memset(l, 0, sizeof(*l));
    load_start(l);
    int64_t limit = hx_now_ms() + 20000;
    while (__atomic_load_n(&l->replies, __ATOMIC_RELAXED) < 20000 && hx_now_ms() < limit) {
        hx_sleep_ms(1);
    }
    uint32_t before = __atomic_load_n(&l->replies, __ATOMIC_RELAXED);
    cr_assert(before >= 1000, "the load never got going (%u replies)", before);
    cr_assert(__atomic_load_n(&l->in_flight, __ATOMIC_RELAXED) > IN_FLIGHT / 2);

    int64_t elapsed;
    int status = hx_stop(&unit, &elapsed);
    load_stop(l);
    cr_log_info("SIGTERM after %u replies: exit after %lld ms; %u replies in all, %u without "
                "reply, %u unavailable (stopping), %u holds acknowledged",
                before, (long long)elapsed, l->replies, l->no_reply,
                l->by_code[TG_EUNAVAILABLE], l->held);
    cr_assert_eq(l->improper, 0u, "%u improper replies; first: %s answered %s", l->improper,
                 tg_wire_type_name((tg_wire_type)l->improper_type),
                 tg_errname((tg_err)l->improper_code));
    cr_assert(WIFEXITED(status), "the unit did not exit (status %#x)", status);
    cr_assert_eq(WEXITSTATUS(status), 0, "exit status %d", WEXITSTATUS(status));
    cr_assert(elapsed <= PROMPT_EXIT_MS, "the exit took %lld ms after SIGTERM",
              (long long)elapsed);

    /* The acknowledged holds are all there; unanswered ones may be too.
     * (The load's client is closed once the unit runs again: closing it
     * while it redials a dead unit can hang in nng 1.5.2.) */
    hx_start(&unit);
    hx_client_settle(l->c, unit.rep_url);
    hx_client_close(l->c);
    l->c = NULL;
    client = hx_client(&unit, P, 4);
    tg_msg av;
    static tg_wire_counts rows[10];
    hx_availability(client, P, &av, rows);
    uint32_t selected = av.availability_ok.totals.by_state[TG_SEAT_SELECTED];
    cr_assert_eq(hx_counts_sum(&av.availability_ok.totals), SEATS);
    cr_assert(selected >= l->held && selected <= l->held + l->no_reply,
              "%u seats held, %u holds acknowledged, %u requests unanswered", selected, l->held,
              l->no_reply);
    hx_stop_ok(&unit);
}

Test(shutdown, sigterm_and_sigint_at_rest_exit_0_at_once)
{
    int64_t elapsed;
    int status = hx_stop(&unit, &elapsed);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x", status);
    cr_assert(elapsed < 1000, "SIGTERM at rest took %lld ms", (long long)elapsed);

    client = NULL; /* closed by hx_stop */
    hx_start(&unit);
    int64_t t0 = hx_now_ms();
    kill(unit.pid, SIGINT);
    cr_assert(hx_wait_exit(unit.pid, HX_STOP_TIMEOUT_MS, &status), "SIGINT did not end the unit");
    unit.pid = 0;
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x", status);
    cr_assert(hx_now_ms() - t0 < 1000, "SIGINT at rest took %lld ms",
              (long long)(hx_now_ms() - t0));
}
