/*
 * org.h — what the organizer modules (org.c, publish.c, sales.c) share: one
 * PostgreSQL job per request that carries the caller, the body and the
 * outcome, and the checks every organizer route makes.
 *
 * An organizer route is a pool job (gw_db_submit) whose run function
 * fills either a JSON answer or an error (status, code, message); the done
 * callback on the loop audits the action (who, client IP, event, outcome)
 * and replies — or, for the routes that go on to the grid (block, unblock,
 * sales, cancel), hands over to a continuation that does.  Every organizer
 * action is audited, refused ones included.
 *
 * Ownership: an organizer manages the events and artists it created; an
 * admin manages all (gateway/README.md, "Organizers").  Somebody else's
 * event is 404, as for bookings: its existence is not revealed.
 */
#ifndef TIXGRID_GATEWAY_ORG_H
#define TIXGRID_GATEWAY_ORG_H

#include "gateway.h"

typedef struct gw_org_job gw_org_job;
typedef void (*gw_org_run)(PGconn *db, gw_org_job *job);
typedef void (*gw_org_then)(gw_req *r, gw_org_job *job);

struct gw_org_job {
    /* Inputs, read-only on the pool thread. */
    const gw_config *cfg;
    gw_gateway *gw; /* for gw_map_refresh_wait after a write that moves the sale */
    uint64_t user_id;
    bool admin;
    uint64_t id;  /* the path's {id} (event or artist), 0 when none */
    json_t *body; /* a deep copy of the request's body, or NULL */
    const char *action;
    gw_org_run run;
    gw_org_then then; /* NULL: reply with the outcome */
    /* Outcome. */
    int status; /* 2xx: reply is the answer; else code and message */
    char code[40];
    char message[320];
    json_t *reply;
    uint64_t event_id; /* for the audit record (0: none) */
    json_t *detail;    /* for the audit record, or NULL */
    /* Facts a continuation needs (sales, block, cancel). */
    uint32_t partitions[GW_EVENT_PARTITIONS_MAX];
    uint32_t partition_count;
    uint64_t *live; /* cancel: live booking ids (malloc'd, freed with the job) */
    uint32_t live_count;
};

/* Starts the job on the pool (the request's body is copied); replies 503
 * busy / 500 itself when it cannot.  then may be NULL. */
void gw_org_submit(gw_req *r, const char *action, gw_org_run run, gw_org_then then);

/* Pool thread: records an error outcome. */
void gw_org_fail(gw_org_job *job, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Pool thread: runs a statement; on failure records 503 (connection lost)
 * or a mapped error (a constraint: 400/409) and returns NULL. */
PGresult *gw_org_query(PGconn *db, gw_org_job *job, const char *what, const char *sql, int n,
                       const char *const *params);

/* Pool thread: BEGIN and COMMIT; false with the error recorded.  A job
 * that returns with its transaction open is rolled back. */
bool gw_org_begin(PGconn *db, gw_org_job *job);
bool gw_org_commit(PGconn *db, gw_org_job *job);

/* Pool thread, after a committed write that opens or closes a sale: this
 * gateway reads its map again before the job answers, so that its next
 * booking sees the write (gw_map_refresh_wait). */
void gw_org_map_follow(gw_org_job *job);

/* Pool thread: the event job->id as the caller may see it: fills
 * job->event_id and *status ("draft", "on_sale", ...); records 404 and
 * returns false when it is not there or not the caller's.  lock: FOR
 * UPDATE (the caller opened a transaction). */
bool gw_org_event_find(PGconn *db, gw_org_job *job, bool lock, char *status, size_t size);

/* Pool thread: the event's partitions (job->partitions), in seat order. */
bool gw_org_partitions_read(PGconn *db, gw_org_job *job);

/* Pool thread: the event as organizers see it (JSON), or NULL. */
json_t *gw_org_event_json(PGconn *db, gw_org_job *job, uint64_t event_id);

/* Loop thread: audits job's outcome and replies with it. */
void gw_org_finish(gw_req *r, gw_org_job *job);

/* Handlers (routes in http.c). */
void gw_on_org_event_create(gw_req *r);
void gw_on_org_event_update(gw_req *r);
void gw_on_org_event_delete(gw_req *r);
void gw_on_org_event_publish(gw_req *r);
void gw_on_org_event_cancel(gw_req *r);
void gw_on_org_seats_block(gw_req *r);
void gw_on_org_seats_unblock(gw_req *r);
void gw_on_org_sales(gw_req *r);
void gw_on_org_artist_create(gw_req *r);
void gw_on_org_artist_update(gw_req *r);
void gw_on_admin_user_role(gw_req *r);

#endif
