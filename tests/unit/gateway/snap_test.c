/*
 * snap_test.c — the seat-map snapshot's leaves (gateway/snap.h): the nibble
 * encoding /seatmap sends, unpacking a seat_states_ok into it, and applying
 * seat_changes to it, each reporting exactly the seats that changed.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "snap.h"

typedef struct {
    uint32_t seats[64];
    unsigned values[64];
    uint32_t count;
} changes_seen;

static void record(void *arg, uint32_t seat, unsigned value)
{
    changes_seen *c = arg;
    cr_assert_lt(c->count, 64);
    c->seats[c->count] = seat;
    c->values[c->count++] = value;
}

Test(snap, seat_k_is_the_low_nibble_of_byte_k_over_2_for_even_k_and_the_high_for_odd)
{
    uint8_t states[3] = {0};
    gw_snap_put(states, 0, 3);
    gw_snap_put(states, 1, 1);
    gw_snap_put(states, 4, GW_SNAP_UNKNOWN);
    cr_assert_eq(states[0], 0x13);
    cr_assert_eq(states[1], 0x00);
    cr_assert_eq(states[2], 0x0f);
    cr_assert_eq(gw_snap_get(states, 0), 3);
    cr_assert_eq(gw_snap_get(states, 1), 1);
    cr_assert_eq(gw_snap_get(states, 4), 15);
    gw_snap_put(states, 1, 0); /* the neighbour stays */
    cr_assert_eq(states[0], 0x03);
}

Test(snap, unpacking_reports_only_the_seats_that_differ)
{
    /* 18 seats: two words; seat 1 SOLD, seat 16 BLOCKED, seat 17 SELECTED. */
    tg_wire_states words[2] = {{.packed = 0x30}, {.packed = 0x14}};
    uint8_t states[9];
    memset(states, 0, sizeof(states));
    gw_snap_put(states, 2, 2); /* RESERVED before, FREE in the snapshot */
    changes_seen seen = {0};
    gw_snap_unpack(states, 18, words, record, &seen);
    cr_assert_eq(seen.count, 4);
    cr_assert_eq(seen.seats[0], 1);
    cr_assert_eq(seen.values[0], 3);
    cr_assert_eq(seen.seats[1], 2);
    cr_assert_eq(seen.values[1], 0);
    cr_assert_eq(seen.seats[2], 16);
    cr_assert_eq(seen.values[2], 4);
    cr_assert_eq(seen.seats[3], 17);
    cr_assert_eq(seen.values[3], 1);
    /* Again: nothing differs. */
    seen.count = 0;
    gw_snap_unpack(states, 18, words, record, &seen);
    cr_assert_eq(seen.count, 0);
}

Test(snap, applying_changes_takes_the_state_of_each_word_in_order)
{
    uint8_t states[4] = {0};
    tg_wire_change ch[] = {
        {.seat_id = 5, .word = tg_seat_word_make(TG_SEAT_SELECTED, 1, 7)},
        {.seat_id = 5, .word = tg_seat_word_make(TG_SEAT_RESERVED, 2, 7)},
        {.seat_id = 6, .word = tg_seat_word_make(TG_SEAT_FREE, 3, 0)},  /* no change */
        {.seat_id = 99, .word = tg_seat_word_make(TG_SEAT_SOLD, 4, 1)}, /* beyond the seats */
        {.seat_id = 0, .word = tg_seat_word_make(TG_SEAT_BLOCKED, 5, 0)},
    };
    changes_seen seen = {0};
    gw_snap_apply(states, 8, ch, 5, record, &seen);
    cr_assert_eq(gw_snap_get(states, 5), TG_SEAT_RESERVED);
    cr_assert_eq(gw_snap_get(states, 0), TG_SEAT_BLOCKED);
    cr_assert_eq(gw_snap_get(states, 6), TG_SEAT_FREE);
    cr_assert_eq(seen.count, 3);
    cr_assert_eq(seen.seats[0], 5);
    cr_assert_eq(seen.values[0], TG_SEAT_SELECTED);
    cr_assert_eq(seen.values[1], TG_SEAT_RESERVED);
    cr_assert_eq(seen.seats[2], 0);
    /* A NULL callback applies silently. */
    gw_snap_apply(states, 8, ch + 2, 1, NULL, NULL);
    cr_assert_eq(gw_snap_get(states, 6), TG_SEAT_FREE);
}

/* The ETag names the state, not only the version: with several partitions
 * two workers may reach one sum of sequences by different states. */
Test(snap, etags_tell_states_of_one_sum_apart)
{
    gw_snap a = {.seq = 60}, b = {.seq = 45}, c = {.seq = 55}, d = {.seq = 50};
    gw_snap *one[] = {&a}, *first[] = {&a, &b}, *second[] = {&c, &d}, *again[] = {&a, &b};
    char e1[GW_ETAG_BYTES], e2[GW_ETAG_BYTES], e3[GW_ETAG_BYTES], e4[GW_ETAG_BYTES];
    gw_event_etag(e1, 7, one, 1, "");
    cr_assert(strncmp(e1, "\"7-60-", 6) == 0 && strlen(e1) == strlen("\"7-60-\"") + 16, "%s", e1);
    gw_event_etag(e2, 7, one, 1, "-unknown");
    cr_assert(strncmp(e2, e1, strlen(e1) - 1) == 0 &&
                  strcmp(e2 + strlen(e1) - 1, "-unknown\"") == 0,
              "%s", e2);
    gw_event_etag(e2, 7, first, 2, "");
    gw_event_etag(e3, 7, second, 2, "");
    gw_event_etag(e4, 7, again, 2, "");
    cr_assert(strncmp(e2, "\"7-105-", 7) == 0, "%s", e2);
    cr_assert(strncmp(e3, "\"7-105-", 7) == 0, "%s", e3);
    cr_assert_str_neq(e2, e3);
    cr_assert_str_eq(e2, e4, "the same state, the same ETag");
}

/* A primary that took over may reach a sequence the old one had reached
 * with another state (records its backup never had): the epoch tells the
 * two apart. */
Test(snap, etags_tell_a_sequence_of_another_epoch_apart)
{
    gw_snap old = {.seq = 60, .epoch = 2}, taken_over = {.seq = 60, .epoch = 3};
    gw_snap *a[] = {&old}, *b[] = {&taken_over};
    char e1[GW_ETAG_BYTES], e2[GW_ETAG_BYTES];
    gw_event_etag(e1, 7, a, 1, "");
    gw_event_etag(e2, 7, b, 1, "");
    cr_assert(strncmp(e1, "\"7-60-", 6) == 0 && strncmp(e2, "\"7-60-", 6) == 0, "%s %s", e1, e2);
    cr_assert_str_neq(e1, e2);
}
