/*
 * plan.c — checking an organizer's seating plan and splitting it into
 * partitions (plan.h).
 *
 * The checks are the engine's and the schema's limits, found before
 * anything is stored: a name that does not fit TG_NAME_BYTES, a row longer
 * than TG_ROW_SEATS_MAX or a price that is not a whole number would
 * otherwise surface at publish time as a refused INSERT or a unit refusing
 * the layout, long after the organizer could fix it.  Every failure names
 * the field, as the API's 400s do.
 *
 * The split walks rows in order and closes a partition when the next row
 * would take it over the target, over TG_ROWS_MAX rows or TG_SECTIONS_MAX
 * sections (the unit's layout limits), or when a section that would not
 * fit the remainder could fit a partition of its own.  Rejected: splitting
 * by equal seat counts (it cuts rows, and a booking's seats must lie in one
 * partition, so a row cut in two could not be sold side by side), and one
 * partition per section (a venue of many small sections would use many
 * partitions, each with its own segment, ring and replicas, for little).
 */
#include "plan.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static tg_err fail(gw_plan_error *e, const char *message, const char *field_fmt, ...)
    __attribute__((format(printf, 3, 4)));

static tg_err fail(gw_plan_error *e, const char *message, const char *field_fmt, ...)
{
    va_list ap;
    va_start(ap, field_fmt);
    vsnprintf(e->field, sizeof(e->field), field_fmt, ap);
    va_end(ap);
    snprintf(e->message, sizeof(e->message), "%s", message);
    return TG_EINVAL;
}

/* A name of 1..TG_NAME_BYTES-1 bytes with no NUL, copied to out. */
static bool name_copy(const json_t *v, char out[TG_NAME_BYTES])
{
    size_t len = json_is_string(v) ? json_string_length(v) : 0;
    if (len == 0 || len >= TG_NAME_BYTES || memchr(json_string_value(v), '\0', len) != NULL) {
        return false;
    }
    memcpy(out, json_string_value(v), len);
    out[len] = '\0';
    return true;
}

static bool currency_copy(const json_t *v, char out[TG_CURRENCY_BYTES])
{
    const char *s = json_is_string(v) ? json_string_value(v) : "";
    if (json_string_length(v) != 3) {
        return false;
    }
    for (int i = 0; i < 3; i++) {
        if (s[i] < 'A' || s[i] > 'Z') {
            return false;
        }
    }
    memcpy(out, s, 4);
    return true;
}

static tg_err row_parse(const json_t *jr, gw_plan *p, uint32_t s, uint32_t r, gw_plan_error *e)
{
    gw_plan_section *sec = &p->sections[s];
    gw_plan_row *row = &p->rows[p->row_count];
    if (!json_is_object(jr)) {
        return fail(e, "expected an object {name, seats}", "layout.sections[%u].rows[%u]", s, r);
    }
    if (!name_copy(json_object_get(jr, "name"), row->name)) {
        return fail(e, "expected a string of 1..31 bytes", "layout.sections[%u].rows[%u].name", s,
                    r);
    }
    for (uint32_t k = sec->row_first; k < p->row_count; k++) {
        if (strcmp(p->rows[k].name, row->name) == 0) {
            return fail(e, "another row of this section has that name",
                        "layout.sections[%u].rows[%u].name", s, r);
        }
    }
    json_t *seats = json_object_get(jr, "seats");
    json_int_t n = json_is_integer(seats) ? json_integer_value(seats) : 0;
    if (n < 1 || n > (json_int_t)TG_ROW_SEATS_MAX) {
        return fail(e, "expected a whole number of seats from 1 to 2048",
                    "layout.sections[%u].rows[%u].seats", s, r);
    }
    row->section = s;
    row->seats = (uint32_t)n;
    row->seat_first = p->seat_count;
    p->seat_count += (uint32_t)n;
    p->row_count++;
    return TG_OK;
}

static tg_err rows_parse(const json_t *rows, gw_plan *p, uint32_t s, uint32_t seats_max,
                         gw_plan_error *e)
{
    size_t n = json_is_array(rows) ? json_array_size(rows) : 0;
    if (n == 0) {
        return fail(e, "expected a non-empty array of rows", "layout.sections[%u].rows", s);
    }
    if (p->row_count + n > GW_PLAN_ROWS_MAX) {
        return fail(e, "too many rows: an event has at most 524288", "layout.sections[%u].rows", s);
    }
    p->sections[s].row_first = p->row_count;
    p->sections[s].seat_first = p->seat_count;
    for (size_t r = 0; r < n; r++) {
        tg_err err = row_parse(json_array_get(rows, r), p, s, (uint32_t)r, e);
        if (err != TG_OK) {
            return err;
        }
        if (p->seat_count > seats_max) {
            char why[96];
            snprintf(why, sizeof(why), "too many seats: an event has at most %u", seats_max);
            return fail(e, why, "layout.sections[%u].rows[%zu].seats", s, r);
        }
    }
    p->sections[s].row_count = (uint32_t)n;
    p->sections[s].seat_count = p->seat_count - p->sections[s].seat_first;
    return TG_OK;
}

static tg_err section_parse(const json_t *js, gw_plan *p, uint32_t s, uint32_t seats_max,
                            gw_plan_error *e)
{
    gw_plan_section *sec = &p->sections[s];
    if (!json_is_object(js)) {
        return fail(e, "expected an object {name, price, currency, rows}", "layout.sections[%u]",
                    s);
    }
    if (!name_copy(json_object_get(js, "name"), sec->name)) {
        return fail(e, "expected a string of 1..31 bytes", "layout.sections[%u].name", s);
    }
    for (uint32_t k = 0; k < s; k++) {
        if (strcmp(p->sections[k].name, sec->name) == 0) {
            return fail(e, "another section has that name", "layout.sections[%u].name", s);
        }
    }
    json_t *price = json_object_get(js, "price");
    json_int_t minor = json_is_integer(price) ? json_integer_value(price) : -1;
    if (minor < 0 || minor > GW_PLAN_PRICE_MAX) {
        return fail(e, "expected a whole, non-negative number of minor units",
                    "layout.sections[%u].price", s);
    }
    sec->price_minor = minor;
    if (!currency_copy(json_object_get(js, "currency"), sec->currency)) {
        return fail(e, "expected three capital letters (ISO 4217)", "layout.sections[%u].currency",
                    s);
    }
    return rows_parse(json_object_get(js, "rows"), p, s, seats_max, e);
}

tg_err gw_plan_parse(const json_t *layout, uint32_t seats_max, gw_plan *plan, gw_plan_error *e)
{
    memset(plan, 0, sizeof(*plan));
    memset(e, 0, sizeof(*e));
    if (!json_is_object(layout)) {
        return fail(e, "expected an object {sections: [...]}", "layout");
    }
    json_t *sections = json_object_get(layout, "sections");
    size_t n = json_is_array(sections) ? json_array_size(sections) : 0;
    if (n == 0 || n > TG_SECTIONS_MAX) {
        return fail(e, "expected an array of 1 to 64 sections", "layout.sections");
    }
    size_t rows = 0;
    for (size_t s = 0; s < n; s++) {
        size_t k = json_array_size(json_object_get(json_array_get(sections, s), "rows"));
        rows += k < GW_PLAN_ROWS_MAX ? k : GW_PLAN_ROWS_MAX;
    }
    plan->rows = calloc(rows > 0 ? rows : 1, sizeof(*plan->rows));
    if (plan->rows == NULL) {
        return TG_ENOMEM;
    }
    for (size_t s = 0; s < n; s++) {
        tg_err err = section_parse(json_array_get(sections, s), plan, (uint32_t)s, seats_max, e);
        if (err != TG_OK) {
            gw_plan_free(plan);
            return err;
        }
        plan->section_count++;
    }
    return TG_OK;
}

void gw_plan_free(gw_plan *plan)
{
    free(plan->rows);
    plan->rows = NULL;
}

/* Whether the current part closes before row r. */
static bool part_closes(const gw_plan *plan, const gw_plan_part *cur, uint32_t sections_in,
                        uint32_t r, uint32_t target)
{
    if (cur->row_count == 0) {
        return false;
    }
    const gw_plan_row *row = &plan->rows[r];
    bool section_start = plan->sections[row->section].row_first == r;
    uint32_t section_seats = plan->sections[row->section].seat_count;
    return cur->seat_count + row->seats > target || cur->row_count == TG_ROWS_MAX ||
           (section_start && sections_in == TG_SECTIONS_MAX) ||
           (section_start && cur->seat_count + section_seats > target && section_seats <= target);
}

uint32_t gw_plan_split(const gw_plan *plan, uint32_t target, gw_plan_part *out, uint32_t max)
{
    uint32_t n = 0, sections_in = 0;
    gw_plan_part cur = {0};
    for (uint32_t r = 0; r < plan->row_count; r++) {
        if (part_closes(plan, &cur, sections_in, r, target)) {
            if (n < max) {
                out[n] = cur;
            }
            n++;
            cur = (gw_plan_part){.seat_first = plan->rows[r].seat_first, .row_first = r};
            sections_in = 0;
        }
        if (cur.row_count == 0 || plan->rows[r - 1].section != plan->rows[r].section) {
            sections_in++;
        }
        cur.row_count++;
        cur.seat_count += plan->rows[r].seats;
    }
    if (cur.row_count > 0) {
        if (n < max) {
            out[n] = cur;
        }
        n++;
    }
    return n;
}
