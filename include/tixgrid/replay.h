/*
 * replay.h — loading a partition from PostgreSQL into a processing unit,
 * for parts other than the persister (the gateway publishes events with
 * it).  The code is the persister's (`tixgrid-persister replay`,
 * persister/replay.c, libtg_persister.a): one repeatable-read snapshot of
 * the partition's layout, seats and live bookings, then partition_create
 * and partition_restore to the unit (schemas/wire.md).
 */
#ifndef TIXGRID_REPLAY_H
#define TIXGRID_REPLAY_H

#include <libpq-fe.h>
#include <stdint.h>

#include "tixgrid/err.h"

/* Loads partition_id (a grid_partitions row) into the unit at pu_url, with
 * the unit's default hold TTL and payment window, at the epoch replay
 * chooses (persister/README.md, "Replay").  Blocking (up to 10 s per
 * request to the unit): call it from a thread of its own, never from an
 * event loop.  db must be idle (no transaction open).  Returns TG_OK;
 * TG_EEXIST when the unit already has the partition (its state left as it
 * was); TG_EDB for PostgreSQL; TG_ETIMEDOUT / TG_EUNAVAILABLE when the unit
 * did not answer; another unit's refusal as its code.  Every failure is
 * also one log line. */
tg_err tg_replay_partition(PGconn *db, uint32_t partition_id, const char *pu_url);

#endif
