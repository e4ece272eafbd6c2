/*
 * limits.h — every bound of tixgrid, with its unit.
 *
 * Tables, rings, queues, retry loops and message fields are all bounded; the
 * bound lives here so that a reader can see the system's envelope in one
 * place and so that tests can assert against the same numbers.
 */
#ifndef TIXGRID_LIMITS_H
#define TIXGRID_LIMITS_H

#include <stdint.h>

/* Partition ids are 21 bits so that booking ids (partition << 32 | seq) stay
 * below 2^53 and survive a JavaScript number. */
#define TG_PARTITION_ID_BITS 21
#define TG_PARTITION_ID_MAX ((1u << TG_PARTITION_ID_BITS) - 1)

/* Seats in one partition.  Seat ids are dense 0..seat_count-1. */
#define TG_PARTITION_SEATS_MAX (1u << 20)
/* Sections in one partition. */
#define TG_SECTIONS_MAX 64u
/* Rows in one partition (across its sections). */
#define TG_ROWS_MAX 8192u
/* Seats in one row. */
#define TG_ROW_SEATS_MAX 2048u
/* Bytes of a section or row name, including the terminating NUL. */
#define TG_NAME_BYTES 32u
/* Bytes of an ISO 4217 currency code, including the terminating NUL. */
#define TG_CURRENCY_BYTES 4u

/* Seats one booking may hold at once (the per-booking limit). */
#define TG_BOOKING_SEATS_MAX 16u
/* Booking table slots in one partition (fixed when the segment is made). */
#define TG_BOOKINGS_MAX (1u << 22)
#define TG_BOOKINGS_MIN 16u
/* Slots a booking allocation probes for a reusable slot before giving up. */
#define TG_BOOKING_PROBES_MAX 64u
/* Spins before a booking-lock attempt yields, and yields before TG_EBUSY. */
#define TG_BOOKING_LOCK_SPINS 128u
#define TG_BOOKING_LOCK_YIELDS 10000u

/* Change-log records in one partition's ring; a power of two. */
#define TG_LOG_RECORDS_MIN 64u
#define TG_LOG_RECORDS_MAX (1u << 24)
/* Default ring size in records (48 bytes each: 48 MiB). */
#define TG_LOG_RECORDS_DEFAULT (1u << 20)
/* New holds are refused once the unpersisted part of the ring passes this
 * fraction (in 1/1024ths) of its size; releases, payments and expiries may
 * still use the rest, so a backlog never traps seats. */
#define TG_LOG_HIGH_WATER_PER_1024 896u
/* Releases, expiries and payments stop here; the last 1/32 of the ring is
 * kept for crash recovery, which must log what a dead writer left unlogged
 * (at most a few records per request in flight), or a unit that crashed
 * with a full ring could never start again. */
#define TG_LOG_GIVER_PER_1024 992u
/* Bookings one sweep pass examines at most (one pass per sweep interval). */
#define TG_SWEEP_SCAN_MAX 65536u
/* Attempts of a lock-free CAS retry loop before it reports TG_EBUSY; each
 * failure means another thread made progress, so this is never reached in
 * practice but bounds the loop. */
#define TG_CAS_RETRIES_MAX 1000000u

/* Best-available: CAS attempts on candidate windows before TG_ENO_SEATS
 * (other buyers can take a window between the scan and the CAS). */
#define TG_BEST_ATTEMPTS_MAX 8u

/* Hold expiry defaults (both configurable). */
#define TG_HOLD_TTL_MS_DEFAULT 300000u
#define TG_PAYMENT_WINDOW_MS_DEFAULT 900000u

/* Processing unit: partitions one unit serves, and requests it works on at
 * once (nng REP contexts: maximum and default). */
#define TG_PU_PARTITIONS_MAX 256u
#define TG_PU_CONTEXTS_MAX 1024u
#define TG_PU_CONTEXTS_DEFAULT 64u
/* Log-head samples a unit keeps per partition for the "oldest unpersisted"
 * age (one every 100 ms: about 100 s of history). */
#define TG_PU_HEAD_SAMPLES 1024u

/* Routing client (client.h): distinct addresses, routes, requests in
 * flight (maximum and default), default timeout, bytes of an address. */
#define TG_CLIENT_ENDPOINTS_MAX 64u
#define TG_CLIENT_ROUTES_MAX 4096u
#define TG_CLIENT_INFLIGHT_MAX 65536u
#define TG_CLIENT_INFLIGHT_DEFAULT 256u
#define TG_CLIENT_TIMEOUT_MS_DEFAULT 2000u
/* A connection whose last TG_CLIENT_REDIAL_TIMEOUTS requests all timed out
 * is replaced by a new one (at most once per TG_CLIENT_REDIAL_INTERVAL_MS
 * per address, TG_CLIENT_REDIALS_MAX times per client): see client.h. */
#define TG_CLIENT_REDIAL_TIMEOUTS 3u
#define TG_CLIENT_REDIAL_INTERVAL_MS 2000u
#define TG_CLIENT_REDIALS_MAX 256u
#define TG_URL_BYTES 256u

/* Bytes of a shared-memory object name, including the NUL. */
#define TG_SHM_NAME_BYTES 96u
/* Bytes of a processing unit's name, including the NUL. */
#define TG_PU_NAME_BYTES 48u

/* The grid (grid/README.md): processing units in one grid, partitions in
 * its map, backups of one partition (grid_partitions.backup_pus allows 8),
 * manager addresses a unit or tixgridctl dials (an active manager and its
 * standbys), and bytes of a zone label including the NUL (grid_members
 * allows 63). */
#define TG_GRID_MEMBERS_MAX 64u
#define TG_GRID_PARTITIONS_MAX 4096u
#define TG_GRID_BACKUPS_MAX 8u
#define TG_GRID_MANAGERS_MAX 4u
#define TG_ZONE_BYTES 64u
/* Membership defaults (both configurable on the manager, which tells the
 * units): a unit sends a heartbeat every interval and is declared dead when
 * none arrived for the failure timeout. */
#define TG_GRID_HEARTBEAT_INTERVAL_MS_DEFAULT 100u
#define TG_GRID_FAILURE_TIMEOUT_MS_DEFAULT 1000u
/* Bounds of both settings: the interval in [MIN, MAX]; the timeout at least
 * twice the interval (one lost heartbeat never kills) and at most MAX. */
#define TG_GRID_HEARTBEAT_INTERVAL_MS_MIN 10u
#define TG_GRID_HEARTBEAT_INTERVAL_MS_MAX 60000u
#define TG_GRID_FAILURE_TIMEOUT_MS_MAX 600000u

/* Bytes of one JSON log line (log.h), including its framing. */
#define TG_LOG_LINE_BYTES 2048u

/* Wire messages (schemas/wire.md, "Bounds"). */

/* The schema version every message carries in its second element. */
#define TG_WIRE_VERSION 1u
/* Bytes of one whole message, topic included; larger input is refused. */
#define TG_WIRE_MESSAGE_BYTES_MAX (1u << 20)
/* Bytes of the one free-text string (an error reply's message), without NUL. */
#define TG_WIRE_STRING_BYTES_MAX 256u
/* Ids, sequence numbers and epochs stay below 2^53: exact in JavaScript. */
#define TG_WIRE_ID_MAX ((UINT64_C(1) << 53) - 1)
/* Seats in one seats_list reply (and the largest count a request may ask). */
#define TG_WIRE_SEATS_LIST_MAX 1000u
/* Log records in one log_read reply (and the largest max a request may ask). */
#define TG_WIRE_LOG_RECORDS_MAX 4096u
/* Seat changes in one seat_changes event. */
#define TG_WIRE_CHANGES_MAX 4096u
/* Bookings in one partition_restore message. */
#define TG_WIRE_RESTORE_BOOKINGS_MAX 4096u
/* Units in one grid_map or grid_status_ok: TG_GRID_MEMBERS_MAX; partitions:
 * TG_GRID_PARTITIONS_MAX; partitions one unit reports in pu_register or
 * heartbeat: TG_PU_PARTITIONS_MAX. */
/* Bytes of the topic in front of a published event: big-endian partition id. */
#define TG_WIRE_TOPIC_BYTES 4u

#endif
