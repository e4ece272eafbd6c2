/*
 * best.c — best-available seat selection.
 *
 * "Best" follows the layout: sections and rows are listed best first by the
 * organizer (closest to the stage first), and within a row the seats nearest
 * its centre are best.  A request for q seats gets, in order of preference:
 *
 *   1. q seats side by side in the first row (layout order) that has a free
 *      run of q, placed as close to the row's centre as the run allows
 *      (ties go to the left);
 *   2. unless adjacent_only: the group split into as few runs as possible —
 *      the largest free runs first (ties to the better row), each piece
 *      placed nearest its row's centre.  Taking the largest runs first gives
 *      the fewest pieces: no k runs can hold more seats than the k largest.
 *
 * The scan reads seat words without taking anything, so another buyer may
 * take a chosen seat before our CAS; the hold is then all-or-nothing rolled
 * back and the scan repeated, at most TG_BEST_ATTEMPTS_MAX times.  Rows whose
 * FREE counter is zero are skipped without reading their seats, which keeps
 * a sold-out partition cheap (rows with a few free seats are still read:
 * their runs may be needed for a split group).
 */
#include "segment.h"

#include "tixgrid/assert.h"

#include <string.h>

typedef struct {
    uint32_t row;   /* row index */
    uint32_t start; /* first seat of the free run, relative to the row */
    uint32_t len;
} free_run;

/* The largest free runs seen so far, longest first, stable on ties. */
typedef struct {
    free_run runs[TG_BOOKING_SEATS_MAX];
    uint32_t count;
} run_top;

static void top_insert(run_top *top, free_run run)
{
    uint32_t cap = TG_BOOKING_SEATS_MAX;
    if (top->count == cap && top->runs[cap - 1].len >= run.len) {
        return;
    }
    uint32_t i = top->count < cap ? top->count++ : cap - 1;
    for (; i > 0 && top->runs[i - 1].len < run.len; i--) {
        top->runs[i] = top->runs[i - 1];
    }
    top->runs[i] = run;
}

/* Start of the m-seat window inside run that is nearest the row centre. */
static uint32_t window_start(const free_run *run, uint32_t row_len, uint32_t m)
{
    TG_ASSERT(m <= run->len && run->len <= row_len);
    uint32_t ideal = (row_len - m) / 2;
    uint32_t lo = run->start, hi = run->start + run->len - m;
    return ideal < lo ? lo : (ideal > hi ? hi : ideal);
}

/* Distance (doubled) of a window's centre from its row's centre. */
static uint32_t window_distance(uint32_t start, uint32_t m, uint32_t row_len)
{
    int64_t d = 2 * (int64_t)start + m - row_len;
    return (uint32_t)(d < 0 ? -d : d);
}

/* Scans one row: records its runs in top, and returns true with *best set
 * when the row has a run of at least q (the one nearest the centre). */
static bool row_scan(const pu_partition *p, uint32_t row, uint32_t q, run_top *top,
                     free_run *best)
{
    const pu_row_rec *r = &p->rows[row];
    bool found = false;
    uint32_t best_dist = UINT32_MAX;
    uint32_t i = 0;
    while (i < r->seat_count) {
        if (tg_seat_word_state(pu_seat_load(p, r->seat_first + i)) != TG_SEAT_FREE) {
            i++;
            continue;
        }
        free_run run = {.row = row, .start = i, .len = 0};
        while (i < r->seat_count &&
               tg_seat_word_state(pu_seat_load(p, r->seat_first + i)) == TG_SEAT_FREE) {
            run.len++;
            i++;
        }
        top_insert(top, run);
        if (run.len >= q) {
            uint32_t d = window_distance(window_start(&run, r->seat_count, q), q, r->seat_count);
            if (d < best_dist) {
                best_dist = d;
                *best = run;
                found = true;
            }
        }
    }
    return found;
}

static void window_emit(const pu_partition *p, const free_run *run, uint32_t m, uint32_t *out)
{
    const pu_row_rec *r = &p->rows[run->row];
    uint32_t start = window_start(run, r->seat_count, m);
    for (uint32_t k = 0; k < m; k++) {
        out[k] = r->seat_first + start + k;
    }
}

/* Chooses q seats per the rules above; returns q, or 0 if impossible. */
static uint32_t best_pick(const pu_partition *p, const pu_best_request *req, uint32_t *out)
{
    uint32_t q = req->quantity;
    uint32_t first = 0, count = p->hdr->row_count;
    if (req->section >= 0) {
        first = p->sections[req->section].row_first;
        count = p->sections[req->section].row_count;
    }
    run_top top = {.count = 0};
    for (uint32_t row = first; row < first + count; row++) {
        uint32_t free_seats = __atomic_load_n(&p->rows[row].counts[TG_SEAT_FREE], __ATOMIC_RELAXED);
        if (free_seats == 0) {
            continue;
        }
        free_run best;
        if (row_scan(p, row, q, &top, &best)) {
            window_emit(p, &best, q, out);
            return q;
        }
    }
    if (req->adjacent_only) {
        return 0;
    }
    uint32_t taken = 0;
    for (uint32_t k = 0; k < top.count && taken < q; k++) {
        uint32_t m = top.runs[k].len < q - taken ? top.runs[k].len : q - taken;
        window_emit(p, &top.runs[k], m, out + taken);
        taken += m;
    }
    return taken == q ? q : 0;
}

static tg_err best_locked(pu_partition *p, pu_booking_rec *b, const pu_best_request *req,
                          pu_hold_result *out)
{
    if (b->seat_count + req->quantity > TG_BOOKING_SEATS_MAX) {
        return TG_ETOO_MANY_SEATS;
    }
    for (uint32_t attempt = 0; attempt < TG_BEST_ATTEMPTS_MAX; attempt++) {
        uint32_t picked[TG_BOOKING_SEATS_MAX];
        if (best_pick(p, req, picked) == 0) {
            return TG_ENO_SEATS;
        }
        pu_seats_sort(picked, req->quantity);
        tg_err err = pu_hold_locked(p, b, picked, req->quantity, out);
        if (err != TG_ESEAT_TAKEN) {
            return err;
        }
        out->taken_count = 0;
    }
    return TG_EBUSY; /* others kept taking what we chose: let the client retry */
}

tg_err pu_seats_hold_best(pu_partition *p, tg_booking_id id, uint64_t user_id,
                          const pu_best_request *req, int64_t now_ms, pu_hold_result *out)
{
    memset(out, 0, sizeof(*out));
    if (req->quantity == 0 || req->quantity > TG_BOOKING_SEATS_MAX || req->section < -1 ||
        (req->section >= 0 && (uint32_t)req->section >= p->hdr->section_count)) {
        return TG_EINVAL;
    }
    pu_booking_rec *b;
    tg_err err = pu_booking_lock_created(p, id, user_id, now_ms, &b);
    if (err != TG_OK) {
        return err;
    }
    err = best_locked(p, b, req, out);
    pu_booking_unlock(b);
    return err;
}
