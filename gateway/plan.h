/*
 * plan.h — an event's seating plan as an organizer writes it, checked, and
 * split into the partitions a published event is placed as.
 *
 * Pure code (jansson in, structs out): no I/O, no globals, any thread.
 * The organizer routes check a plan when a draft is created or edited,
 * and publish reads it back from events.layout and splits it
 * (gateway/README.md, "Organizers").
 */
#ifndef TIXGRID_GATEWAY_PLAN_H
#define TIXGRID_GATEWAY_PLAN_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "tixgrid/err.h"
#include "tixgrid/limits.h"

/* Rows of one event: a partition holds at most TG_ROWS_MAX, and an event
 * at most 64 partitions. */
#define GW_PLAN_ROWS_MAX  (64u * TG_ROWS_MAX)
#define GW_PLAN_PRICE_MAX ((INT64_C(1) << 53) - 1) /* minor units, exact in JSON */

typedef struct {
    char name[TG_NAME_BYTES];
    uint32_t section;    /* its section's index */
    uint32_t seat_first; /* the event's seat number of its seat 1 */
    uint32_t seats;      /* 1..TG_ROW_SEATS_MAX */
} gw_plan_row;

typedef struct {
    char name[TG_NAME_BYTES];
    int64_t price_minor;
    char currency[TG_CURRENCY_BYTES];
    uint32_t row_first, row_count;
    uint32_t seat_first, seat_count;
} gw_plan_section;

/* A checked plan: sections best first, rows in order, seats numbered
 * densely 0..seat_count-1 in that order (DESIGN.md, "Data model"). */
typedef struct {
    uint32_t section_count;
    gw_plan_section sections[TG_SECTIONS_MAX];
    uint32_t row_count;
    gw_plan_row *rows; /* malloc'd: gw_plan_free */
    uint32_t seat_count;
} gw_plan;

/* Where a check failed: the field ("layout.sections[2].rows[0].seats")
 * and why, for a 400 that names it. */
typedef struct {
    char field[96];
    char message[160];
} gw_plan_error;

/* Checks layout {"sections": [{"name", "price", "currency", "rows":
 * [{"name", "seats"}]}]} and fills plan: 1..TG_SECTIONS_MAX sections with
 * unique names of 1..31 bytes, a price in 0..2^53-1 minor units and a
 * currency of three capital letters; each 1..GW_PLAN_ROWS_MAX rows in all,
 * names unique within their section, 1..TG_ROW_SEATS_MAX seats each; at
 * most seats_max seats in all.  TG_EINVAL with *e filled, TG_ENOMEM. */
tg_err gw_plan_parse(const json_t *layout, uint32_t seats_max, gw_plan *plan, gw_plan_error *e);
void gw_plan_free(gw_plan *plan);

/* One partition of a split: a contiguous run of whole rows. */
typedef struct {
    uint32_t seat_first, seat_count;
    uint32_t row_first, row_count;
} gw_plan_part;

/* Splits plan into partitions of at most target seats (a single row
 * longer than target is a partition of its own), never splitting a row,
 * at most TG_ROWS_MAX rows and TG_SECTIONS_MAX sections each.  A section
 * that does not fit what is left of the current partition but fits a
 * whole one starts a new partition: sections are split only when they are
 * larger than a partition.  Writes up to max parts; returns how many the
 * plan needs (more than max: out holds the first max). */
uint32_t gw_plan_split(const gw_plan *plan, uint32_t target, gw_plan_part *out, uint32_t max);

#endif
