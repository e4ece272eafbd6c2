/*
 * race_test.c — many clients racing for the same seats of a real tixgrid-pu.
 *
 * Invariant 1 of DESIGN.md over the wire: 64 clients (threads, each with its
 * own tg_client, so its own connection, and its own user and bookings) try
 * to hold the same 1,000 seats one by one.  Every seat must be won by
 * exactly one client; every other client must be told TG_ESEAT_TAKEN naming
 * that seat; and what the clients won must be what the unit reports (seat
 * words, booking seat lists, availability).  A second race has the clients
 * grab overlapping groups of seats, so that all-or-nothing holds roll back
 * under contention.
 */
#include "harness.h"

#include <criterion/criterion.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define P 11u
#define SEATS 1000u /* 10 rows of 100 */
#define CLIENTS 64
#define BOOKINGS_PER_CLIENT_MAX (SEATS / 1 + 1)

static hx_unit unit;
static tg_client *client;

static void start_unit(void)
{
    hx_unit_init(&unit, "race");
    hx_layout l = {.partition_id = P, .event_id = 12, .sections = 1, .rows = 10, .seats = 100,
                   .log_records = 1u << 15, .booking_capacity = 1u << 14};
    hx_write_layout(&unit, &l);
    hx_start(&unit);
    client = hx_client(&unit, P, 4);
}

static void stop_unit(void)
{
    hx_fini_all(); /* closes the client too */
    client = NULL;
}

TestSuite(race, .init = start_unit, .fini = stop_unit, .timeout = 200);

typedef struct {
    pthread_t thread;
    uint32_t index;
    pthread_barrier_t *start;
    /* Results, read by the main thread after join. */
    uint32_t won;       /* seats won */
    uint32_t lost;      /* TG_ESEAT_TAKEN naming exactly the seat */
    uint32_t bookings;  /* bookings made */
    tg_booking_id booking_ids[BOOKINGS_PER_CLIENT_MAX];
    uint8_t winner_of[SEATS]; /* 1 where this client won the seat */
    tg_err unexpected;
    uint32_t unexpected_seat;
} racer;

static racer racers[CLIENTS];

static uint64_t user_of(uint32_t index)
{
    return 10000 + index;
}

static tg_err create(tg_client *c, racer *r, tg_msg *rep)
{
    tg_msg req = {.type = TG_WIRE_BOOKING_CREATE};
    req.booking_create.partition_id = P;
    req.booking_create.user_id = user_of(r->index);
    tg_err err = tg_client_call(c, P, &req, HX_CALL_TIMEOUT_MS, NULL, rep);
    if (err == TG_OK) {
        r->booking_ids[r->bookings++] = rep->booking_create_ok.booking_id;
    }
    return err;
}

/* Holds seats 0..SEATS-1 one by one, into bookings of at most
 * TG_BOOKING_SEATS_MAX seats. */
static void race_one_by_one(racer *r, tg_client *c, tg_msg *rep)
{
    uint32_t in_booking = 0;
    tg_err err = create(c, r, rep);
    for (uint32_t seat = 0; seat < SEATS && err == TG_OK; seat++) {
        if (in_booking == TG_BOOKING_SEATS_MAX) {
            in_booking = 0;
            if ((err = create(c, r, rep)) != TG_OK) {
                break;
            }
        }
        tg_msg req = hx_hold_one(r->booking_ids[r->bookings - 1], user_of(r->index), seat);
        err = tg_client_call(c, P, &req, HX_CALL_TIMEOUT_MS, NULL, rep);
        if (err == TG_OK) {
            r->won++;
            r->winner_of[seat] = 1;
            in_booking++;
        } else if (err == TG_ESEAT_TAKEN && rep->type == TG_WIRE_ERROR &&
                   rep->error.seats.count == 1 && rep->error.seats.ids[0] == seat) {
            r->lost++;
            err = TG_OK;
        } else {
            r->unexpected_seat = seat;
        }
    }
    r->unexpected = err;
}

static void *racer_main(void *arg)
{
    racer *r = arg;
    tg_client *c = NULL;
    tg_client_config cfg = {.inflight_max = 2};
    tg_msg *rep = malloc(sizeof(*rep));
    tg_err err = rep == NULL ? TG_ENOMEM : tg_client_open(&cfg, &c);
    if (err == TG_OK) {
        err = tg_client_route(c, P, unit.rep_url);
    }
    pthread_barrier_wait(r->start);
    if (err == TG_OK) {
        race_one_by_one(r, c, rep);
    } else {
        r->unexpected = err;
    }
    hx_client_close(c);
    free(rep);
    return NULL;
}

static uint64_t words[SEATS];

Test(race, sixty_four_clients_racing_for_the_same_seats_each_win_a_seat_exactly_once)
{
    pthread_barrier_t start;
    cr_assert_eq(pthread_barrier_init(&start, NULL, CLIENTS), 0);
    int64_t t0 = hx_now_ms();
    for (uint32_t i = 0; i < CLIENTS; i++) {
        memset(&racers[i], 0, sizeof(racers[i]));
        racers[i].index = i;
        racers[i].start = &start;
        cr_assert_eq(pthread_create(&racers[i].thread, NULL, racer_main, &racers[i]), 0);
    }
    for (uint32_t i = 0; i < CLIENTS; i++) {
        pthread_join(racers[i].thread, NULL);
    }
    int64_t elapsed = hx_now_ms() - t0;
    pthread_barrier_destroy(&start);

    uint32_t won = 0, lost = 0, winners = 0;
    for (uint32_t i = 0; i < CLIENTS; i++) {
        cr_assert_eq(racers[i].unexpected, TG_OK, "client %u, seat %u: %s", i,
                     racers[i].unexpected_seat, tg_errname(racers[i].unexpected));
        cr_assert_eq(racers[i].won + racers[i].lost, SEATS, "client %u did not try every seat",
                     i);
        won += racers[i].won;
        lost += racers[i].lost;
        winners += racers[i].won > 0;
    }
    for (uint32_t seat = 0; seat < SEATS; seat++) {
        uint32_t n = 0;
        for (uint32_t i = 0; i < CLIENTS; i++) {
            n += racers[i].winner_of[seat];
        }
        cr_assert_eq(n, 1u, "seat %u was won by %u clients", seat, n);
    }
    cr_assert_eq(won, SEATS);
    cr_assert_eq(lost, SEATS * (CLIENTS - 1));
    cr_log_info("%u holds in %lld ms (%.0f/s); %u of %d clients won seats",
                SEATS * CLIENTS, (long long)elapsed,
                SEATS * CLIENTS * 1000.0 / (double)(elapsed > 0 ? elapsed : 1), winners,
                CLIENTS);

    /* What the unit says agrees with what the clients were told. */
    tg_msg av;
    static tg_wire_counts rows[10];
    hx_availability(client, P, &av, rows);
    cr_assert_eq(av.availability_ok.totals.by_state[TG_SEAT_SELECTED], SEATS);
    cr_assert_eq(hx_counts_sum(&av.availability_ok.totals), SEATS);
    hx_seat_words(client, P, SEATS, words);
    static tg_msg rep;
    for (uint32_t i = 0; i < CLIENTS; i++) {
        uint32_t listed = 0;
        for (uint32_t b = 0; b < racers[i].bookings; b++) {
            cr_assert_eq(hx_booking_get(client, racers[i].booking_ids[b], user_of(i), &rep),
                         TG_OK);
            for (uint32_t k = 0; k < rep.booking_get_ok.seats.count; k++) {
                uint32_t seat = rep.booking_get_ok.seats.ids[k];
                cr_assert(racers[i].winner_of[seat], "client %u holds seat %u it never won",
                          i, seat);
                cr_assert_eq(tg_seat_word_state(words[seat]), TG_SEAT_SELECTED);
                cr_assert_eq(tg_seat_word_booking(words[seat]),
                             tg_booking_id_seq(racers[i].booking_ids[b]));
                listed++;
            }
        }
        cr_assert_eq(listed, racers[i].won, "client %u: bookings list %u seats, won %u", i,
                     listed, racers[i].won);
    }
    hx_stop_ok(&unit);
}

/* ---- Overlapping groups ----------------------------------------------------- */

#define GROUP_ROUNDS 60

typedef struct {
    pthread_t thread;
    uint32_t index;
    pthread_barrier_t *start;
    uint64_t rng;
    uint32_t held;      /* seats held by acknowledged holds */
    uint32_t refused;   /* TG_ESEAT_TAKEN */
    uint8_t mine[SEATS];
    tg_booking_id booking_ids[GROUP_ROUNDS];
    uint32_t bookings;
    tg_err unexpected;
} grabber;

static grabber grabbers[CLIENTS];

static uint64_t next_random(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Each round: a new booking, and a hold of 2..8 seats around a random spot
 * (not all adjacent), all or nothing. */
static void grab(grabber *g, tg_client *c, tg_msg *rep)
{
    for (uint32_t round = 0; round < GROUP_ROUNDS; round++) {
        tg_msg req = {.type = TG_WIRE_BOOKING_CREATE};
        req.booking_create.partition_id = P;
        req.booking_create.user_id = user_of(g->index);
        tg_err err = tg_client_call(c, P, &req, HX_CALL_TIMEOUT_MS, NULL, rep);
        if (err != TG_OK) {
            g->unexpected = err;
            return;
        }
        tg_booking_id b = rep->booking_create_ok.booking_id;
        g->booking_ids[g->bookings++] = b;
        req = (tg_msg){.type = TG_WIRE_SEATS_HOLD};
        req.seats_hold.booking_id = b;
        req.seats_hold.user_id = user_of(g->index);
        uint32_t n = 2 + (uint32_t)(next_random(&g->rng) % 7);
        uint32_t base = (uint32_t)(next_random(&g->rng) % (SEATS - 2 * n));
        req.seats_hold.seats.count = n;
        for (uint32_t i = 0; i < n; i++) {
            req.seats_hold.seats.ids[i] = base + 2 * i - (i % 3 == 2); /* gaps and neighbours */
        }
        err = tg_client_call(c, P, &req, HX_CALL_TIMEOUT_MS, NULL, rep);
        if (err == TG_OK) {
            for (uint32_t i = 0; i < n; i++) {
                g->mine[req.seats_hold.seats.ids[i]] = 1;
            }
            g->held += n;
        } else if (err == TG_ESEAT_TAKEN && rep->error.seats.count >= 1) {
            g->refused++;
        } else {
            g->unexpected = err;
            return;
        }
    }
}

static void *grabber_main(void *arg)
{
    grabber *g = arg;
    tg_client *c = NULL;
    tg_client_config cfg = {.inflight_max = 2};
    tg_msg *rep = malloc(sizeof(*rep));
    tg_err err = rep == NULL ? TG_ENOMEM : tg_client_open(&cfg, &c);
    if (err == TG_OK) {
        err = tg_client_route(c, P, unit.rep_url);
    }
    pthread_barrier_wait(g->start);
    if (err == TG_OK) {
        grab(g, c, rep);
    } else {
        g->unexpected = err;
    }
    hx_client_close(c);
    free(rep);
    return NULL;
}

Test(race, overlapping_group_holds_are_all_or_nothing_under_contention)
{
    pthread_barrier_t start;
    cr_assert_eq(pthread_barrier_init(&start, NULL, CLIENTS), 0);
    for (uint32_t i = 0; i < CLIENTS; i++) {
        memset(&grabbers[i], 0, sizeof(grabbers[i]));
        grabbers[i].index = i;
        grabbers[i].start = &start;
        grabbers[i].rng = 0x9e3779b97f4a7c15ULL ^ ((uint64_t)(i + 1) << 32);
        cr_assert_eq(pthread_create(&grabbers[i].thread, NULL, grabber_main, &grabbers[i]), 0);
    }
    for (uint32_t i = 0; i < CLIENTS; i++) {
        pthread_join(grabbers[i].thread, NULL);
    }
    pthread_barrier_destroy(&start);

    uint32_t held = 0, refused = 0;
    for (uint32_t i = 0; i < CLIENTS; i++) {
        cr_assert_eq(grabbers[i].unexpected, TG_OK, "client %u: %s", i,
                     tg_errname(grabbers[i].unexpected));
        held += grabbers[i].held;
        refused += grabbers[i].refused;
    }
    for (uint32_t seat = 0; seat < SEATS; seat++) {
        uint32_t n = 0;
        for (uint32_t i = 0; i < CLIENTS; i++) {
            n += grabbers[i].mine[seat];
        }
        cr_assert(n <= 1, "seat %u is held by %u clients", seat, n);
    }
    cr_assert(refused > 0, "no hold ever met another: no contention");
    cr_log_info("%u seats held, %u group holds refused", held, refused);

    tg_msg av;
    static tg_wire_counts rows[10];
    hx_availability(client, P, &av, rows);
    cr_assert_eq(av.availability_ok.totals.by_state[TG_SEAT_SELECTED], held,
                 "the unit holds %u seats, clients were told %u",
                 av.availability_ok.totals.by_state[TG_SEAT_SELECTED], held);
    hx_seat_words(client, P, SEATS, words);
    for (uint32_t seat = 0; seat < SEATS; seat++) {
        bool someone = false;
        for (uint32_t i = 0; i < CLIENTS; i++) {
            someone |= grabbers[i].mine[seat] != 0;
        }
        cr_assert_eq(tg_seat_word_state(words[seat]) == TG_SEAT_SELECTED, someone,
                     "seat %u: a rolled-back hold left it held, or a hold was lost", seat);
    }
    hx_stop_ok(&unit);
}
