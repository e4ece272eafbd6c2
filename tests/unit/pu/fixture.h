/*
 * fixture.h — a partition to test against, for the pu/ unit tests.
 *
 * Criterion runs every test in its own forked process and runs two at a
 * time, so each test makes its own segment under a name no other test (nor a
 * leftover of a crashed run) can hold: "/tixgrid-test-<pid>-<counter>-<ns>".
 * The fixture keeps the one partition of the running test in `fx`; tests
 * start it with fx_start() (or build a config and call fx_create()) and
 * .fini = fx_fini destroys it, so a failing assertion does not leak segments
 * into /dev/shm.
 *
 * Everything is static (header-only): each test executable is built from its
 * one source file (tests/meson.build), and -Werror=missing-prototypes wants
 * helpers to be file-local anyway.
 *
 * Times are explicit: the engine takes now_ms from its callers, so tests use a
 * fixed FX_T0 and step it, never the wall clock.
 */
#ifndef TIXGRID_TEST_PU_FIXTURE_H
#define TIXGRID_TEST_PU_FIXTURE_H

#include <criterion/criterion.h>

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "partition.h"
#include "tixgrid/clock.h"
#include "tixgrid/limits.h"
#include "tixgrid/seat.h"

/* A fixed "now": 2026-11-21T19:45:07.123Z. */
#define FX_T0 INT64_C(1795290307123)
/* Defaults of fx_start(): small and quick to reason about. */
#define FX_PARTITION_ID      7u
#define FX_EVENT_ID          UINT64_C(4242)
#define FX_HOLD_TTL_MS       60000u
#define FX_PAYMENT_WINDOW_MS 120000u
#define FX_LOG_RECORDS       1024u
/* Users: any nonzero id is a shopper (PU_USER_SYSTEM is 0). */
#define FX_ALICE UINT64_C(1001)
#define FX_BOB   UINT64_C(1002)

/* Layouts the fixture can hold; tests needing more build their own arrays. */
#define FX_SECTIONS_MAX 8u
#define FX_ROWS_MAX     64u
/* Seats fx_snapshot() copies; fixtures stay below it. */
#define FX_SNAPSHOT_SEATS 4096u

typedef struct {
    pu_section_spec sections[FX_SECTIONS_MAX];
    pu_row_spec rows[FX_ROWS_MAX];
    pu_partition_config cfg;
    char name[TG_SHM_NAME_BYTES];
    bool created; /* the segment exists and fx_fini must destroy it */
    pu_partition *p;
} fx_state;

static fx_state fx __attribute__((unused));

/* A segment name no other test process can be using. */
static inline void fx_unique_name(char *buf, size_t size)
{
    static unsigned counter;
    int n = snprintf(buf, size, "/tixgrid-test-%d-%u-%lld", (int)getpid(), counter++,
                     (long long)(tg_mono_ns() % 1000000000));
    cr_assert(n > 0 && (size_t)n < size);
}

/* Section s is named "S<s>", priced 1000 * (s + 1) EUR cents; its rows are
 * named "R<r>" (r counting from 0 within the section). */
static inline void fx_section_spec(pu_section_spec *s, uint32_t index, uint32_t row_count)
{
    memset(s, 0, sizeof(*s));
    snprintf(s->name, sizeof(s->name), "S%u", index);
    s->price_minor = 1000 * ((int64_t)index + 1);
    memcpy(s->currency, "EUR", 4);
    s->row_count = row_count;
}

static inline void fx_row_spec(pu_row_spec *r, uint32_t index, uint32_t seat_count)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->name, sizeof(r->name), "R%u", index);
    r->seat_count = seat_count;
}

/* A layout of any shape: section i has rows_per_section[i] rows and the rows,
 * in layout order, have row_seats[0..] seats.  Small log and table sizes. */
static inline void fx_layout_custom(uint32_t section_count, const uint32_t *rows_per_section,
                                    const uint32_t *row_seats)
{
    cr_assert_leq(section_count, FX_SECTIONS_MAX);
    memset(&fx.cfg, 0, sizeof(fx.cfg));
    uint32_t row = 0;
    for (uint32_t s = 0; s < section_count; s++) {
        fx_section_spec(&fx.sections[s], s, rows_per_section[s]);
        for (uint32_t r = 0; r < rows_per_section[s]; r++, row++) {
            cr_assert_lt(row, FX_ROWS_MAX);
            fx_row_spec(&fx.rows[row], r, row_seats[row]);
        }
    }
    fx.cfg = (pu_partition_config){
        .partition_id = FX_PARTITION_ID,
        .event_id = FX_EVENT_ID,
        .section_count = section_count,
        .sections = fx.sections,
        .row_count = row,
        .rows = fx.rows,
        .log_records = FX_LOG_RECORDS,
        .hold_ttl_ms = FX_HOLD_TTL_MS,
        .payment_window_ms = FX_PAYMENT_WINDOW_MS,
    };
}

/* sections × rows × seats, every row the same length. */
static inline void fx_layout(uint32_t sections, uint32_t rows, uint32_t seats)
{
    uint32_t per_section[FX_SECTIONS_MAX];
    uint32_t row_seats[FX_ROWS_MAX];
    cr_assert_leq(sections, FX_SECTIONS_MAX);
    cr_assert_leq(sections * rows, FX_ROWS_MAX);
    for (uint32_t s = 0; s < sections; s++) {
        per_section[s] = rows;
    }
    for (uint32_t r = 0; r < sections * rows; r++) {
        row_seats[r] = seats;
    }
    fx_layout_custom(sections, per_section, row_seats);
}

/* Creates the segment for fx.cfg under a fresh name. */
static inline void fx_create(void)
{
    /* Criterion runs a suite's .init and then a test's own .init: a test
     * that sets its own must be in a suite without one, or the first
     * segment would leak. */
    cr_assert_not(fx.created, "fx_create called twice in one test");
    fx_unique_name(fx.name, sizeof(fx.name));
    tg_err err = pu_partition_create(fx.name, &fx.cfg, &fx.p);
    cr_assert_eq(err, TG_OK, "pu_partition_create: %s", tg_errname(err));
    fx.created = true;
}

static inline pu_partition *fx_start(uint32_t sections, uint32_t rows, uint32_t seats)
{
    fx_layout(sections, rows, seats);
    fx_create();
    return fx.p;
}

/* Criterion .fini: detaches and removes the test's segment, if any. */
static inline void fx_fini(void)
{
    pu_partition_detach(fx.p);
    fx.p = NULL;
    if (fx.created) {
        pu_partition_destroy(fx.name);
        fx.created = false;
    }
}

/* ---- Short-hands that assert success --------------------------------- */

static inline void fx_check(pu_partition *p)
{
    tg_err err = pu_partition_check(p);
    cr_assert_eq(err, TG_OK, "pu_partition_check: %s", tg_errname(err));
}

static inline tg_booking_id fx_booking(pu_partition *p, uint64_t user, int64_t now_ms)
{
    pu_booking_info b;
    tg_err err = pu_booking_create(p, user, now_ms, &b);
    cr_assert_eq(err, TG_OK, "pu_booking_create: %s", tg_errname(err));
    return b.id;
}

static inline pu_booking_info fx_booking_get(pu_partition *p, tg_booking_id id)
{
    pu_booking_info b;
    tg_err err = pu_booking_get(p, id, PU_USER_SYSTEM, &b);
    cr_assert_eq(err, TG_OK, "pu_booking_get: %s", tg_errname(err));
    return b;
}

static inline void fx_hold(pu_partition *p, tg_booking_id id, uint64_t user, const uint32_t *seats,
                           uint32_t n, int64_t now_ms)
{
    pu_hold_result r;
    tg_err err = pu_seats_hold(p, id, user, seats, n, now_ms, &r);
    cr_assert_eq(err, TG_OK, "pu_seats_hold: %s", tg_errname(err));
}

/* Holds seats [first, first + n) in a new booking of user; returns the id. */
static inline tg_booking_id fx_book_range(pu_partition *p, uint64_t user, uint32_t first,
                                          uint32_t n, int64_t now_ms)
{
    uint32_t seats[TG_BOOKING_SEATS_MAX];
    cr_assert_leq(n, TG_BOOKING_SEATS_MAX);
    for (uint32_t i = 0; i < n; i++) {
        seats[i] = first + i;
    }
    tg_booking_id id = fx_booking(p, user, now_ms);
    fx_hold(p, id, user, seats, n, now_ms);
    return id;
}

/* Moves a booking to pending_payment; returns the payment deadline. */
static inline int64_t fx_begin_payment(pu_partition *p, tg_booking_id id, uint64_t user,
                                       int64_t now_ms)
{
    int64_t deadline = 0;
    tg_err err = pu_booking_begin_payment(p, id, user, now_ms, &deadline);
    cr_assert_eq(err, TG_OK, "pu_booking_begin_payment: %s", tg_errname(err));
    return deadline;
}

static inline void fx_block(pu_partition *p, const uint32_t *seats, uint32_t n)
{
    pu_hold_result r;
    tg_err err = pu_seats_block(p, seats, n, &r);
    cr_assert_eq(err, TG_OK, "pu_seats_block: %s", tg_errname(err));
}

/* Blocks seats [first, first + n), in calls of at most TG_BOOKING_SEATS_MAX. */
static inline void fx_block_range(pu_partition *p, uint32_t first, uint32_t n)
{
    uint32_t seats[TG_BOOKING_SEATS_MAX];
    while (n > 0) {
        uint32_t k = n < TG_BOOKING_SEATS_MAX ? n : TG_BOOKING_SEATS_MAX;
        for (uint32_t i = 0; i < k; i++) {
            seats[i] = first + i;
        }
        fx_block(p, seats, k);
        first += k;
        n -= k;
    }
}

static inline pu_seat_info fx_seat(const pu_partition *p, uint32_t seat_id)
{
    pu_seat_info s;
    tg_err err = pu_seat_get(p, seat_id, &s);
    cr_assert_eq(err, TG_OK, "pu_seat_get(%u): %s", seat_id, tg_errname(err));
    return s;
}

static inline tg_seat_state fx_seat_state(const pu_partition *p, uint32_t seat_id)
{
    return fx_seat(p, seat_id).state;
}

static inline pu_partition_info fx_info(const pu_partition *p)
{
    pu_partition_info info;
    pu_partition_describe(p, &info);
    return info;
}

static inline uint32_t fx_total(const pu_partition *p, tg_seat_state state)
{
    uint32_t totals[TG_SEAT_STATE_COUNT];
    pu_partition_counts(p, totals, NULL, NULL);
    return totals[state];
}

/* ---- "A failed call changes nothing" ----------------------------------- */

typedef struct {
    uint32_t seat_count;
    tg_seat_word words[FX_SNAPSHOT_SEATS];
    uint32_t totals[TG_SEAT_STATE_COUNT];
    uint32_t rows[FX_ROWS_MAX][TG_SEAT_STATE_COUNT];
    pu_partition_info info;
} fx_snapshot;

/* Seat words, counters and log cursors of p (the fixture's layouts only). */
static inline void fx_snap(const pu_partition *p, fx_snapshot *s)
{
    memset(s, 0, sizeof(*s));
    pu_partition_describe(p, &s->info);
    cr_assert_leq(s->info.seat_count, FX_SNAPSHOT_SEATS);
    cr_assert_leq(s->info.row_count, FX_ROWS_MAX);
    s->seat_count = s->info.seat_count;
    for (uint32_t i = 0; i < s->seat_count; i++) {
        s->words[i] = fx_seat(p, i).word;
    }
    pu_partition_counts(p, s->totals, NULL, s->rows);
}

static inline void fx_assert_unchanged(const pu_partition *p, const fx_snapshot *before)
{
    static fx_snapshot now; /* large: keep it off the stack */
    fx_snap(p, &now);
    for (uint32_t i = 0; i < now.seat_count; i++) {
        cr_assert_eq(now.words[i], before->words[i], "seat %u changed: %#llx -> %#llx", i,
                     (unsigned long long)before->words[i], (unsigned long long)now.words[i]);
    }
    cr_assert_arr_eq(now.totals, before->totals, sizeof(now.totals), "totals changed");
    cr_assert_arr_eq(now.rows, before->rows, sizeof(now.rows), "row counters changed");
    cr_assert_eq(now.info.log_head, before->info.log_head, "log head moved %llu -> %llu",
                 (unsigned long long)before->info.log_head, (unsigned long long)now.info.log_head);
    cr_assert_eq(now.info.bookings_created, before->info.bookings_created);
}

/* A failed hold that took seats[0..n) before it failed: those are FREE again
 * two versions on (the word in between is never reused, seats.c) and each is
 * logged once, in order; everything else is as before. */
static inline void fx_assert_given_back(pu_partition *p, const fx_snapshot *before,
                                        const uint32_t *seats, uint32_t n)
{
    static fx_snapshot now; /* large: keep it off the stack */
    fx_snap(p, &now);
    for (uint32_t i = 0; i < now.seat_count; i++) {
        tg_seat_word want = before->words[i];
        for (uint32_t k = 0; k < n; k++) {
            if (seats[k] == i) {
                want = tg_seat_word_make(TG_SEAT_FREE, tg_seat_word_version(want) + 2, 0);
            }
        }
        cr_assert_eq(now.words[i], want, "seat %u: %#llx, want %#llx", i,
                     (unsigned long long)now.words[i], (unsigned long long)want);
    }
    cr_assert_arr_eq(now.totals, before->totals, sizeof(now.totals), "totals changed");
    cr_assert_arr_eq(now.rows, before->rows, sizeof(now.rows), "row counters changed");
    cr_assert_eq(now.info.log_head, before->info.log_head + n);
    pu_log_record got[TG_BOOKING_SEATS_MAX];
    cr_assert_eq(pu_log_read(p, before->info.log_head + 1, got, n), n);
    for (uint32_t k = 0; k < n; k++) {
        cr_assert(got[k].kind == PU_REC_SEAT && got[k].ident == seats[k] &&
                      got[k].word == now.words[seats[k]],
                  "record %u does not give seat %u back", k, seats[k]);
    }
    cr_assert_eq(now.info.bookings_created, before->info.bookings_created);
}

/* Booking fields that must not change across a failed call. */
static inline void fx_assert_booking_same(const pu_booking_info *a, const pu_booking_info *b)
{
    cr_assert_eq(a->id, b->id);
    cr_assert_eq(a->status, b->status);
    cr_assert_eq(a->version, b->version);
    cr_assert_eq(a->deadline_ms, b->deadline_ms);
    cr_assert_eq(a->seat_count, b->seat_count);
    cr_assert_arr_eq(a->seats, b->seats, a->seat_count * sizeof(a->seats[0]));
}

#endif
