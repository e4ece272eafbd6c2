/*
 * drain.h — the write-behind drain: change-log records into PostgreSQL.
 *
 * Two layers.  pst_apply_batch is the database half: it writes many
 * partitions' change-log records in ONE transaction, together with each
 * partition's row of partition_offsets, fenced by epoch and guarded by
 * sequence number (a replayed batch changes nothing).  It knows nothing of
 * processing units; `run` (the drain loop, drain.c) feeds it records read
 * with log_read, and `ingest` feeds it records from a file.  The loop half —
 * routes, reads in flight, batching, acks, reconnects — is private to
 * drain.c.
 *
 * Everything here runs on the thread that owns the PGconn.
 */
#ifndef TIXGRID_PERSISTER_DRAIN_H
#define TIXGRID_PERSISTER_DRAIN_H

#include "db.h"

#include "tixgrid/err.h"
#include "tixgrid/limits.h"
#include "tixgrid/wire.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Partitions one drain follows at most (one route each in its tg_client). */
#define PST_DRAIN_PARTITIONS_MAX 4096u
/* log_read requests in flight at once (each holds up to 4096 records). */
#define PST_DRAIN_READS_MAX 32u
/* log_ack requests in flight at once. */
#define PST_DRAIN_ACKS_MAX 64u
/* Timeout of one log_read or log_ack. */
#define PST_DRAIN_REQUEST_TIMEOUT_MS 2000u
/* Defaults and bounds of the run flags (persister/README.md). */
#define PST_DRAIN_BATCH_CHANGES_DEFAULT     8192u
#define PST_DRAIN_BATCH_CHANGES_MAX         (1u << 18)
#define PST_DRAIN_BATCH_MS_DEFAULT          20u
#define PST_DRAIN_ROUTES_REFRESH_MS_DEFAULT 1000u
#define PST_DRAIN_RETRY_MIN_MS              100u
#define PST_DRAIN_RETRY_MAX_MS_DEFAULT      5000u
#define PST_DRAIN_POLL_IDLE_MS_DEFAULT      5u
#define PST_DRAIN_POLL_IDLE_MAX_MS_DEFAULT  50u
/* Rejected records logged one line each per batch, at most; the rest are
 * counted in one line (all of them are in persister_rejects). */
#define PST_DRAIN_REJECT_LINES_MAX 1000u
/* Bytes of a reject's reason, including the NUL. */
#define PST_REJECT_REASON_BYTES 160u
/* Records one `ingest` reads at most. */
#define PST_INGEST_RECORDS_MAX (1u << 22)

/* What pst_apply_batch did with one chunk. */
typedef enum {
    PST_CHUNK_APPLIED = 0, /* written (or skipped as already persisted); offsets advanced */
    PST_CHUNK_FENCED = 1,  /* map_epoch below the recorded epoch: nothing written */
    PST_CHUNK_BEHIND = 2,  /* the recorded offset is below base_seq: re-read from last_seq + 1 */
} pst_chunk_outcome;

/* One partition's consecutive records within a batch. */
typedef struct {
    /* In: the partition as grid_partitions has it. */
    uint32_t partition_id;
    int64_t event_id;
    uint32_t first_seat; /* seat_no of seat id 0 */
    uint32_t seat_count;
    uint64_t map_epoch; /* the epoch the unit served these records under */
    /* The caller's view of partition_offsets.last_seq when it read the
     * records: a recorded offset below it means someone moved the offset
     * back (PST_CHUNK_BEHIND).  0 accepts any offset. */
    uint64_t base_seq;
    const tg_wire_log_record *records;
    uint32_t count;
    /* Out. */
    pst_chunk_outcome outcome;
    uint64_t epoch;    /* partition_offsets.epoch after the batch (or as found) */
    uint64_t last_seq; /* partition_offsets.last_seq after the batch (or as found) */
    uint32_t applied;  /* records written (seat, booking and no-op records) */
    uint32_t skipped;  /* records at or below the recorded offset */
    uint32_t rejected; /* records refused: in persister_rejects */
} pst_chunk;

/* Totals of one pst_apply_batch. */
typedef struct {
    uint32_t applied, skipped, rejected, fenced_chunks;
} pst_apply_result;

/* Why record r cannot be applied to a partition of seat_count seats, as one
 * line in why (NUL-terminated; at most PST_REJECT_REASON_BYTES are needed);
 * returns false when it can.  Checks what one record shows on its own: the
 * kind, a seat id within the partition, a seat word's state and whether it
 * names a booking exactly when held or sold, a booking record's status,
 * seq, user id and times.  Sequence numbers and whether a named booking
 * exists are checked by pst_apply_batch. */
bool pst_record_problem(uint32_t seat_count, const tg_wire_log_record *r, char *why,
                        size_t why_size);

/* Prepares db for pst_apply_batch: temporary tables and prepared
 * statements.  Once per connection. */
tg_err pst_apply_setup(PGconn *db);

/* Writes chunks[0..count) (distinct partitions) in ONE transaction:
 *  - creates missing partition_offsets rows and locks all of them (FOR
 *    UPDATE, in partition order);
 *  - a chunk whose map_epoch is below its row's epoch is FENCED (nothing of
 *    it is written); a row whose last_seq is below base_seq is BEHIND;
 *  - records at or below the row's last_seq are skipped; every other record
 *    is checked (pst_record_problem, consecutive seqs, existing seat rows,
 *    existing bookings) and refused into persister_rejects or applied:
 *    seats (last record wins), booking_seats history (in sequence order),
 *    bookings (forward by version) and notification_outbox;
 *  - sets each applied chunk's last_seq (its last record's seq) and epoch
 *    (the higher of the row's and map_epoch), then COMMITs.
 * Rejected records are logged after the commit, one line each (at most
 * PST_DRAIN_REJECT_LINES_MAX a batch).  TG_EDB leaves nothing written (tell
 * a lost connection with pst_db_connection_lost); chunk outcomes are then
 * meaningless.  result may be NULL. */
tg_err pst_apply_batch(PGconn *db, pst_chunk *chunks, uint32_t count, pst_apply_result *result);

#endif
