/*
 * server.h — a processing unit serving its partitions over nng.
 *
 * The server answers requests (schemas/wire.md) on one nng REP socket with
 * many contexts, so that many requests work on the partitions at once: each
 * context receives, runs the engine call (partition.h: lock-free, a few
 * microseconds) on nng's callback thread, and sends the reply.  A
 * housekeeping thread publishes seat changes from each partition's change log
 * on an nng PUB socket (topic: the partition id), and expires due holds.
 *
 * With a manager (cfg.manager_urls), a membership thread registers the unit,
 * sends heartbeats and applies the partition map's epochs (member.c).
 *
 * Threads: pu_server_open/start/stop/close are called by one controlling
 * thread (main); pu_server_add_partition and pu_server_find by any thread.
 * Request handling runs on nng's threads.
 *
 * Stopping (SIGTERM): pu_server_stop stops accepting — pending receives
 * are cancelled, so a request that arrives from then on is not read (its
 * client times out; one whose receive completed just as the stop began is
 * answered TG_EUNAVAILABLE without running) — lets every request already
 * being processed send its reply, then closes the sockets.
 */
#ifndef PU_SERVER_H
#define PU_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "partition.h"
#include "tixgrid/err.h"

/* Bounds: TG_PU_PARTITIONS_MAX, TG_PU_CONTEXTS_MAX and _DEFAULT in
 * tixgrid/limits.h. */
#define PU_PARTITIONS_MAX TG_PU_PARTITIONS_MAX
#define PU_CONTEXTS_MAX TG_PU_CONTEXTS_MAX
#define PU_CONTEXTS_DEFAULT TG_PU_CONTEXTS_DEFAULT
/* Housekeeping period, and the default sweep period. */
#define PU_TICK_MS 20u
#define PU_SWEEP_INTERVAL_MS_DEFAULT 100u
/* How long stop waits for requests in flight before closing anyway. */
#define PU_STOP_DRAIN_MS 5000u

typedef struct {
    const char *name;       /* the unit's name: [A-Za-z0-9._-], < TG_PU_NAME_BYTES */
    const char *listen_url; /* REP, e.g. ipc:///run/tixgrid/pu1.rep or tcp://0.0.0.0:7101 */
    const char *pub_url;    /* PUB for seat changes; NULL: publish nothing */
    uint32_t contexts;      /* 1..PU_CONTEXTS_MAX; 0 picks PU_CONTEXTS_DEFAULT */
    uint32_t sweep_interval_ms; /* 0 picks PU_SWEEP_INTERVAL_MS_DEFAULT */
    /* No persister: trim the change log once published.  For development and
     * benchmarks of the engine alone; changes then live only in memory. */
    bool unpersisted;
    /* The grid manager to join, "url[,url...]" (the active one and its
     * standbys, up to TG_GRID_MANAGERS_MAX); NULL: the unit runs on its own
     * and nobody tells it its epochs (member.c). */
    const char *manager_urls;
    const char *zone; /* its failure domain, told to the manager; NULL: none */
} pu_server_config;

typedef struct pu_server pu_server;

/* Validates cfg and opens the sockets (TG_EINVAL names the field in the
 * log; TG_ESYSTEM when a socket cannot listen). */
tg_err pu_server_open(const pu_server_config *cfg, pu_server **out);

/* Serves p from now on; the server owns p and detaches it on close.
 * TG_EEXIST if its partition id is served already; TG_ENOMEM when
 * PU_PARTITIONS_MAX are served. */
tg_err pu_server_add_partition(pu_server *s, pu_partition *p);

/* The served partition with this id, or NULL.  Any thread. */
pu_partition *pu_server_find(pu_server *s, uint32_t partition_id);

/* Attaches (as owner, with recovery) every segment of this unit's name found
 * in /dev/shm, so a restarted unit serves what it had.  *count receives how
 * many were attached; a segment that fails is skipped (logged), and one that
 * was never complete (no magic, or a restore that did not finish) is removed.
 * TG_ESYSTEM only if /dev/shm cannot be read. */
tg_err pu_server_attach_existing(pu_server *s, uint32_t *count);

/* Starts receiving and housekeeping. */
tg_err pu_server_start(pu_server *s);

/* Stops accepting, finishes requests in flight, joins housekeeping. */
void pu_server_stop(pu_server *s);

/* Stops if needed, closes the sockets and detaches every partition (the
 * segments stay in /dev/shm for the next start). */
void pu_server_close(pu_server *s);

/* Reads a partition layout file (JSON, see pu/README.md) into cfg; the
 * sections and rows arrays are allocated and released with
 * pu_layout_free. */
tg_err pu_layout_load(const char *path, pu_partition_config *cfg);
void pu_layout_free(pu_partition_config *cfg);

#endif
