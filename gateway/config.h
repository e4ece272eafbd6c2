/*
 * config.h — the gateway's settings, from flags and TIXGRID_* variables.
 *
 * Every resource the gateway holds is bounded here, with its unit: header
 * and body sizes, connections, requests in flight, timeouts, caches.
 * gateway/README.md lists each flag with its variable and default.
 */
#ifndef TIXGRID_GATEWAY_CONFIG_H
#define TIXGRID_GATEWAY_CONFIG_H

#include <sched.h>
#include <stdbool.h>
#include <stdint.h>

#define GW_PATH_BYTES 256u
#define GW_URL_BYTES 512u
#define GW_THREADS_MAX      64u /* loop threads at most (--threads) */
#define GW_SECRET_BYTES_MIN 16u
#define GW_SECRET_BYTES_MAX 256u
/* An event's partitions are at most GW_EVENT_PARTITIONS_MAX (gateway.h): 64
 * of 2^16 seats each at the least is this many seats. */
#define GW_EVENT_SEATS_CEILING (64u << 16)

typedef struct {
    char listen_host[64]; /* "0.0.0.0", "127.0.0.1", "::" */
    uint16_t listen_port;
    char db[1024];                    /* libpq conninfo */
    char data_dir[GW_PATH_BYTES];     /* the generated JWT secret lives here */
    char static_dir[GW_PATH_BYTES];   /* files served under / ("" none; see --static-dir) */
    uint32_t threads;                 /* loop threads; 0: one per core */
    uint32_t db_threads;              /* PostgreSQL and hashing pool */
    uint32_t db_queue_max;            /* jobs waiting for the pool */
    uint32_t connections_max;         /* open connections, per worker */
    uint32_t inflight_max;            /* requests in service, per worker */
    uint32_t header_bytes_max;        /* request line + headers */
    uint32_t body_bytes_max;          /* request body */
    uint32_t request_timeout_ms;      /* a partial request, or a request in service */
    uint32_t idle_timeout_ms;         /* an idle keep-alive connection */
    uint32_t grid_timeout_ms;         /* one request to a processing unit */
    uint32_t grid_batch_max;          /* seat operations per batch message (1: no batches) */
    uint32_t grid_batch_wait_ms;      /* a batch waits this long at most for the one before */
    uint32_t map_refresh_ms;          /* partition map re-read from PostgreSQL */
    uint32_t events_cache_ms;         /* events, search and event reads */
    uint32_t jwt_ttl_s;               /* lifetime of a login token */
    uint32_t basic_cache_ms;          /* a verified Basic credential is trusted this long */
    uint32_t basic_cache_entries;
    uint32_t auth_rate_per_s;         /* register/login attempts per client IP and second */
    uint32_t auth_burst;              /* ... and the burst above that rate */
    uint32_t audit_queue_max;         /* audit records waiting to be written */
    uint32_t snapshot_partitions_max; /* partitions a worker keeps seat-map snapshots of */
    uint32_t live_clients_max;        /* /live streams per worker */
    uint32_t live_buffer_bytes;       /* unsent bytes one /live client may have; then dropped */
    uint32_t live_replay_events;      /* seats events kept per event for Last-Event-ID */
    uint32_t live_heartbeat_s;        /* a comment line after this long without a message */
    bool allow_reset;                 /* POST /api/reset answers (tests, demos) */
    /* Payments (gateway/README.md, "Payments"); no provider URL: payments
     * answer 503 payments_unavailable. */
    char payment_provider_url[GW_URL_BYTES]; /* "http://127.0.0.1:8090" ("" none) */
    char payment_webhook_secret[GW_SECRET_BYTES_MAX + 1]; /* HMAC-SHA256 key of webhooks */
    char public_url[GW_URL_BYTES];    /* how browsers and the provider reach this gateway */
    /* Where the grid manager(s) publish the map ("url,url"; "" none: the
     * map comes from PostgreSQL alone, see map.c). */
    char manager_pub[GW_URL_BYTES];
    /* --cpus: every thread runs on these CPUs (cpus_text "" : any). */
    char cpus_text[64];
    cpu_set_t cpus;
    uint32_t payment_timeout_ms;      /* one call to the provider */
    uint32_t breaker_threshold;       /* provider failures in a row that open the breaker */
    uint32_t breaker_timeout_s;       /* open this long before a probe */
    uint32_t refund_retry_s;          /* owed refunds are tried again this often */
    /* Organizers (gateway/README.md, "Organizers"). */
    uint32_t event_seats_max;         /* seats of one event's layout */
    uint32_t partition_seats;         /* a published event is split into partitions of at most this */
} gw_config;

/* Defaults, then TIXGRID_* variables, then flags.  Returns -1 when the
 * gateway should run, else an exit code (--help, --version, a usage error
 * already printed on stderr). */
int gw_config_parse(gw_config *cfg, int argc, char **argv);

#endif
