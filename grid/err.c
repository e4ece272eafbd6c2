/*
 * err.c — names and sentences for tg_err.
 *
 * Two tables indexed by code.  The _Static_assert keeps them as long as the
 * enum, so adding a code without its texts fails to compile.
 */
#include "tixgrid/err.h"

#include <stddef.h>

static const char *const err_names[] = {
    [TG_OK] = "ok",
    [TG_EINVAL] = "invalid_argument",
    [TG_ENOMEM] = "out_of_memory",
    [TG_ESEAT_RANGE] = "seat_out_of_range",
    [TG_ESEAT_TAKEN] = "seat_taken",
    [TG_ESEAT_NOT_HELD] = "seat_not_held",
    [TG_ENOT_FOUND] = "not_found",
    [TG_EWRONG_PARTITION] = "wrong_partition",
    [TG_EBOOKING_STATE] = "booking_state",
    [TG_EEXPIRED] = "booking_expired",
    [TG_ETOO_MANY_SEATS] = "too_many_seats",
    [TG_EBOOKINGS_FULL] = "bookings_full",
    [TG_ELOG_FULL] = "log_full",
    [TG_EBACKLOG] = "persistence_backlog",
    [TG_ENO_SEATS] = "no_seats_available",
    [TG_EEXIST] = "already_exists",
    [TG_ENOENT] = "no_such_segment",
    [TG_EBAD_MAGIC] = "bad_magic",
    [TG_EBAD_VERSION] = "bad_layout_version",
    [TG_EBAD_SIZE] = "bad_segment_size",
    [TG_ECORRUPT] = "corrupt",
    [TG_ESYSTEM] = "system_error",
    [TG_ETIMEDOUT] = "timed_out",
    [TG_EPROTO] = "protocol_error",
    [TG_ECLOSED] = "closed",
    [TG_EDB] = "database_error",
    [TG_EUNAVAILABLE] = "unavailable",
    [TG_EBUSY] = "busy",
    [TG_ESTALE_EPOCH] = "stale_epoch",
    [TG_EPARTITION_STATE] = "partition_state",
};

static const char *const err_texts[] = {
    [TG_OK] = "success",
    [TG_EINVAL] = "an argument is malformed or out of range",
    [TG_ENOMEM] = "out of memory",
    [TG_ESEAT_RANGE] = "seat id is not in this partition",
    [TG_ESEAT_TAKEN] = "seat is held, sold or blocked by someone else",
    [TG_ESEAT_NOT_HELD] = "seat is not held by this booking",
    [TG_ENOT_FOUND] = "booking not found",
    [TG_EWRONG_PARTITION] = "id belongs to another partition",
    [TG_EBOOKING_STATE] = "booking is not in a state that allows this",
    [TG_EEXPIRED] = "booking has expired",
    [TG_ETOO_MANY_SEATS] = "booking would exceed its seat limit",
    [TG_EBOOKINGS_FULL] = "booking table is full",
    [TG_ELOG_FULL] = "change log is full",
    [TG_EBACKLOG] = "persistence backlog: change log past its high-water mark",
    [TG_ENO_SEATS] = "no seats available that satisfy the request",
    [TG_EEXIST] = "a segment of that name already exists",
    [TG_ENOENT] = "no segment of that name",
    [TG_EBAD_MAGIC] = "segment is not a tixgrid partition (bad magic)",
    [TG_EBAD_VERSION] = "segment has another layout version",
    [TG_EBAD_SIZE] = "segment size disagrees with its header",
    [TG_ECORRUPT] = "structure failed its consistency checks",
    [TG_ESYSTEM] = "system call failed",
    [TG_ETIMEDOUT] = "timed out",
    [TG_EPROTO] = "message does not follow the wire schema",
    [TG_ECLOSED] = "closed or shutting down",
    [TG_EDB] = "database refused or is unreachable",
    [TG_EUNAVAILABLE] = "partition is not served here right now",
    [TG_EBUSY] = "busy; retry",
    [TG_ESTALE_EPOCH] = "message carries an older partition-map epoch",
    [TG_EPARTITION_STATE] = "partition is not in a state that allows this",
};

_Static_assert(sizeof(err_names) / sizeof(err_names[0]) == TG_ERR_COUNT_, "err_names");
_Static_assert(sizeof(err_texts) / sizeof(err_texts[0]) == TG_ERR_COUNT_, "err_texts");

const char *tg_errname(tg_err err)
{
    if ((unsigned)err >= TG_ERR_COUNT_) {
        return "unknown_error";
    }
    return err_names[err];
}

const char *tg_strerror(tg_err err)
{
    if ((unsigned)err >= TG_ERR_COUNT_) {
        return "unknown error";
    }
    return err_texts[err];
}
