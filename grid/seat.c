/*
 * seat.c — API names of seat states and booking statuses (seat.h).
 */
#include "tixgrid/seat.h"

#include <stddef.h>
#include <string.h>

static const char *const seat_state_names[TG_SEAT_STATE_COUNT] = {
    "FREE", "SELECTED", "RESERVED", "SOLD", "BLOCKED",
};

static const char *const booking_status_names[TG_BOOKING_STATUS_COUNT] = {
    "empty", "created", "pending_payment", "paid", "cancelled", "expired", "failed",
};

const char *tg_seat_state_name(tg_seat_state state)
{
    if ((unsigned)state >= TG_SEAT_STATE_COUNT) {
        return NULL;
    }
    return seat_state_names[state];
}

const char *tg_booking_status_name(tg_booking_status status)
{
    if ((unsigned)status >= TG_BOOKING_STATUS_COUNT) {
        return NULL;
    }
    return booking_status_names[status];
}

bool tg_seat_state_parse(const char *name, tg_seat_state *state)
{
    for (unsigned i = 0; i < TG_SEAT_STATE_COUNT; i++) {
        if (strcmp(name, seat_state_names[i]) == 0) {
            *state = (tg_seat_state)i;
            return true;
        }
    }
    return false;
}
