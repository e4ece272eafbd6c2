/*
 * err.h — the one error type of tixgrid.
 *
 * Every fallible function returns a tg_err.  Operating conditions (a seat is
 * taken, PostgreSQL is down, a ring is full, the input is bad) are values the
 * caller handles; only broken invariants and corrupt shared memory abort (see
 * assert.h).  Errors from errno, nng, libpq and libuv are wrapped into a
 * tg_err at the boundary where they happen.
 *
 * The numeric values are part of the wire protocol (schemas/wire.md): append
 * new codes at the end, never renumber.
 */
#ifndef TIXGRID_ERR_H
#define TIXGRID_ERR_H

typedef enum {
    TG_OK = 0,
    TG_EINVAL = 1,           /* an argument or field is malformed or out of its range */
    TG_ENOMEM = 2,           /* an allocation failed */
    TG_ESEAT_RANGE = 3,      /* a seat id is not in this partition */
    TG_ESEAT_TAKEN = 4,      /* a seat is held, sold or blocked by someone else */
    TG_ESEAT_NOT_HELD = 5,   /* the seat is not held by this booking */
    TG_ENOT_FOUND = 6,       /* no such booking (or not the caller's: never reveal which) */
    TG_EWRONG_PARTITION = 7, /* the id belongs to another partition */
    TG_EBOOKING_STATE = 8,   /* the booking is not in a state that allows the operation */
    TG_EEXPIRED = 9,         /* the booking's hold or payment window has passed */
    TG_ETOO_MANY_SEATS = 10, /* the booking would exceed TG_BOOKING_SEATS_MAX */
    TG_EBOOKINGS_FULL = 11,  /* the partition's booking table has no free slot */
    TG_ELOG_FULL = 12,       /* the change log ring is full */
    TG_EBACKLOG = 13,        /* the change log is past its high-water mark: persistence backlog */
    TG_ENO_SEATS = 14,       /* best-available found no seats that satisfy the request */
    TG_EEXIST = 15,          /* a shared-memory segment of that name already exists */
    TG_ENOENT = 16,          /* no shared-memory segment of that name */
    TG_EBAD_MAGIC = 17,      /* the segment is not a tixgrid partition */
    TG_EBAD_VERSION = 18,    /* the segment was made by another layout version */
    TG_EBAD_SIZE = 19,       /* the segment's size disagrees with its header */
    TG_ECORRUPT = 20,        /* a structure failed its consistency checks */
    TG_ESYSTEM = 21,         /* a system call failed; errno was logged */
    TG_ETIMEDOUT = 22,       /* the operation did not complete in time */
    TG_EPROTO = 23,          /* a message does not follow the wire schema */
    TG_ECLOSED = 24,         /* the peer or the object is closed or shutting down */
    TG_EDB = 25,             /* PostgreSQL refused or is unreachable */
    TG_EUNAVAILABLE = 26,    /* the partition is not served here (failover, moved, stopping) */
    TG_EBUSY = 27,           /* a bounded wait for a short lock ran out; retry */
    TG_ESTALE_EPOCH = 28,    /* a message carries an older partition-map epoch */
    TG_EPARTITION_STATE = 29, /* the partition is not in a state that allows this (restoring) */
    TG_ERR_COUNT_ = 30        /* number of codes; not an error */
} tg_err;

/* A sentence for people: "seat is held, sold or blocked by someone else". */
const char *tg_strerror(tg_err err);

/* A stable snake_case code for machines: "seat_taken".  Used in API errors. */
const char *tg_errname(tg_err err);

#endif
