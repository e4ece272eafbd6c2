/*
 * plan_test.c — an organizer's seating plan: every bad field refused with
 * its name, and the split into partitions (never a row cut, at most the
 * target per partition, sections whole when they fit one).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plan.h"

static json_t *load(const char *text)
{
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    cr_assert_not_null(j, "%s", je.text);
    return j;
}

/* Parses text, expecting a refusal naming field. */
static void refused(const char *text, uint32_t seats_max, const char *field)
{
    json_t *j = load(text);
    gw_plan plan;
    gw_plan_error e;
    cr_assert_eq(gw_plan_parse(j, seats_max, &plan, &e), TG_EINVAL, "%s", text);
    cr_assert_str_eq(e.field, field, "%s: %s", text, e.message);
    cr_assert_neq(e.message[0], '\0');
    cr_assert_null(plan.rows);
    json_decref(j);
}

/* A plan of `sections` sections of `rows` rows of `seats` seats each. */
static json_t *uniform(uint32_t sections, uint32_t rows, uint32_t seats)
{
    json_t *secs = json_array();
    for (uint32_t s = 0; s < sections; s++) {
        json_t *rs = json_array();
        for (uint32_t r = 0; r < rows; r++) {
            char name[16];
            snprintf(name, sizeof(name), "%u", r + 1);
            json_array_append_new(rs, json_pack("{s:s,s:i}", "name", name, "seats", seats));
        }
        char name[16];
        snprintf(name, sizeof(name), "S%u", s);
        json_array_append_new(secs, json_pack("{s:s,s:i,s:s,s:o}", "name", name, "price", 1000 + s,
                                              "currency", "EUR", "rows", rs));
    }
    return json_pack("{s:o}", "sections", secs);
}

static void parsed(json_t *j, uint32_t seats_max, gw_plan *plan)
{
    gw_plan_error e;
    cr_assert_eq(gw_plan_parse(j, seats_max, plan, &e), TG_OK, "%s: %s", e.field, e.message);
    json_decref(j);
}

Test(plan, accepts_a_valid_layout_and_numbers_seats_densely)
{
    gw_plan plan;
    parsed(load("{\"sections\":[{\"name\":\"Floor\",\"price\":14900,\"currency\":\"EUR\","
                "\"rows\":[{\"name\":\"A\",\"seats\":10},{\"name\":\"B\",\"seats\":12}]},"
                "{\"name\":\"Balcony\",\"price\":0,\"currency\":\"USD\","
                "\"rows\":[{\"name\":\"A\",\"seats\":5}]}]}"),
           1000, &plan);
    cr_assert_eq(plan.section_count, 2);
    cr_assert_eq(plan.row_count, 3);
    cr_assert_eq(plan.seat_count, 27);
    cr_assert_str_eq(plan.sections[1].name, "Balcony");
    cr_assert_eq(plan.sections[0].price_minor, 14900);
    cr_assert_str_eq(plan.sections[1].currency, "USD");
    cr_assert_eq(plan.sections[1].seat_first, 22);
    cr_assert_eq(plan.rows[2].seat_first, 22);
    cr_assert_eq(plan.rows[2].section, 1);
    gw_plan_free(&plan);
}

Test(plan, refuses_each_bad_field_by_name)
{
    refused("[]", 1000, "layout");
    refused("{\"sections\":[]}", 1000, "layout.sections");
    refused("{\"sections\":[{\"name\":\"A\",\"price\":-1,\"currency\":\"EUR\","
            "\"rows\":[{\"name\":\"1\",\"seats\":1}]}]}",
            1000, "layout.sections[0].price");
    refused("{\"sections\":[{\"name\":\"A\",\"price\":1.5,\"currency\":\"EUR\","
            "\"rows\":[{\"name\":\"1\",\"seats\":1}]}]}",
            1000, "layout.sections[0].price");
    refused("{\"sections\":[{\"name\":\"A\",\"price\":1,\"currency\":\"eur\","
            "\"rows\":[{\"name\":\"1\",\"seats\":1}]}]}",
            1000, "layout.sections[0].currency");
    refused("{\"sections\":[{\"name\":\"A\",\"price\":1,\"currency\":\"EUR\","
            "\"rows\":[{\"name\":\"1\",\"seats\":1}]},{\"name\":\"A\",\"price\":1,"
            "\"currency\":\"EUR\",\"rows\":[{\"name\":\"1\",\"seats\":1}]}]}",
            1000, "layout.sections[1].name");
    refused("{\"sections\":[{\"name\":\"\",\"price\":1,\"currency\":\"EUR\","
            "\"rows\":[{\"name\":\"1\",\"seats\":1}]}]}",
            1000, "layout.sections[0].name");
    refused("{\"sections\":[{\"name\":\"0123456789012345678901234567890123\",\"price\":1,"
            "\"currency\":\"EUR\",\"rows\":[{\"name\":\"1\",\"seats\":1}]}]}",
            1000, "layout.sections[0].name");
    refused("{\"sections\":[{\"name\":\"A\",\"price\":1,\"currency\":\"EUR\",\"rows\":[]}]}", 1000,
            "layout.sections[0].rows");
    refused("{\"sections\":[{\"name\":\"A\",\"price\":1,\"currency\":\"EUR\","
            "\"rows\":[{\"name\":\"1\",\"seats\":1},{\"name\":\"1\",\"seats\":1}]}]}",
            1000, "layout.sections[0].rows[1].name");
    refused("{\"sections\":[{\"name\":\"A\",\"price\":1,\"currency\":\"EUR\","
            "\"rows\":[{\"name\":\"1\",\"seats\":0}]}]}",
            1000, "layout.sections[0].rows[0].seats");
    refused("{\"sections\":[{\"name\":\"A\",\"price\":1,\"currency\":\"EUR\","
            "\"rows\":[{\"name\":\"1\",\"seats\":2049}]}]}",
            100000, "layout.sections[0].rows[0].seats");
    refused("{\"sections\":[{\"name\":\"A\",\"price\":1,\"currency\":\"EUR\","
            "\"rows\":[{\"name\":\"1\",\"seats\":600},{\"name\":\"2\",\"seats\":600}]}]}",
            1000, "layout.sections[0].rows[1].seats");
}

Test(plan, refuses_more_than_64_sections)
{
    json_t *j = uniform(65, 1, 1);
    gw_plan plan;
    gw_plan_error e;
    cr_assert_eq(gw_plan_parse(j, 1000, &plan, &e), TG_EINVAL);
    cr_assert_str_eq(e.field, "layout.sections");
    json_decref(j);
}

/* Every part is a run of whole rows, contiguous, covering the plan. */
static void split_covers(const gw_plan *plan, const gw_plan_part *parts, uint32_t n,
                         uint32_t target)
{
    uint32_t row = 0, seat = 0;
    for (uint32_t k = 0; k < n; k++) {
        cr_assert_eq(parts[k].row_first, row, "part %u", k);
        cr_assert_eq(parts[k].seat_first, seat, "part %u", k);
        cr_assert_eq(parts[k].seat_first, plan->rows[row].seat_first, "part %u cuts a row", k);
        cr_assert_leq(parts[k].seat_count, target, "part %u", k);
        cr_assert_leq(parts[k].row_count, TG_ROWS_MAX, "part %u", k);
        uint32_t seats = 0;
        for (uint32_t r = row; r < row + parts[k].row_count; r++) {
            seats += plan->rows[r].seats;
        }
        cr_assert_eq(seats, parts[k].seat_count, "part %u", k);
        row += parts[k].row_count;
        seat += parts[k].seat_count;
    }
    cr_assert_eq(row, plan->row_count);
    cr_assert_eq(seat, plan->seat_count);
}

Test(plan, a_small_event_is_one_partition)
{
    gw_plan plan;
    parsed(uniform(3, 20, 30), 1000000, &plan);
    gw_plan_part parts[8];
    cr_assert_eq(gw_plan_split(&plan, 100000, parts, 8), 1);
    split_covers(&plan, parts, 1, 100000);
    gw_plan_free(&plan);
}

Test(plan, splits_about_every_100000_seats_never_cutting_a_row)
{
    /* One section of 4,000 rows of 63 seats: 252,000 seats; 100,000 is not a
     * multiple of 63, so a naive cut would land inside a row. */
    gw_plan plan;
    parsed(uniform(1, 4000, 63), 1000000, &plan);
    gw_plan_part parts[8];
    uint32_t n = gw_plan_split(&plan, 100000, parts, 8);
    cr_assert_eq(n, 3);
    split_covers(&plan, parts, n, 100000);
    cr_assert_eq(parts[0].seat_count, 1587 * 63); /* the most whole rows under 100,000 */
    cr_assert_gt(parts[0].seat_count, 100000 - 63);
    gw_plan_free(&plan);
}

Test(plan, keeps_a_section_whole_when_it_fits_a_partition)
{
    /* 60,000 + 60,000 + 80,000: each section is a partition of its own. */
    json_t *secs = json_array();
    const uint32_t rows[] = {1200, 1200, 1600};
    for (int s = 0; s < 3; s++) {
        json_t *j = uniform(1, rows[s], 50);
        json_t *sec = json_array_get(json_object_get(j, "sections"), 0);
        json_object_set_new(sec, "name", json_sprintf("S%d", s));
        json_array_append(secs, sec);
        json_decref(j);
    }
    gw_plan plan;
    parsed(json_pack("{s:o}", "sections", secs), 1000000, &plan);
    gw_plan_part parts[8];
    uint32_t n = gw_plan_split(&plan, 100000, parts, 8);
    cr_assert_eq(n, 3);
    split_covers(&plan, parts, n, 100000);
    for (uint32_t k = 0; k < n; k++) {
        cr_assert_eq(parts[k].seat_first, plan.sections[k].seat_first);
        cr_assert_eq(parts[k].seat_count, plan.sections[k].seat_count);
    }
    gw_plan_free(&plan);
}

Test(plan, closes_a_partition_at_the_units_row_limit)
{
    /* 10,000 rows of 2 seats: 20,000 seats, but a unit holds 8,192 rows. */
    gw_plan plan;
    parsed(uniform(1, 10000, 2), 1000000, &plan);
    gw_plan_part parts[4];
    uint32_t n = gw_plan_split(&plan, 100000, parts, 4);
    cr_assert_eq(n, 2);
    cr_assert_eq(parts[0].row_count, TG_ROWS_MAX);
    split_covers(&plan, parts, n, 100000);
    gw_plan_free(&plan);
}

Test(plan, reports_how_many_parts_it_needs_beyond_max)
{
    gw_plan plan;
    parsed(uniform(1, 1000, 100), 1000000, &plan);
    gw_plan_part parts[2];
    cr_assert_eq(gw_plan_split(&plan, 10000, parts, 2), 10);
    cr_assert_eq(parts[1].seat_first, 10000);
    gw_plan_free(&plan);
}
