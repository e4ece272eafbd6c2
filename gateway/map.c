/*
 * map.c — which processing unit serves which partition, and each
 * partition's layout.
 *
 * A thread of its own re-reads the partition map from PostgreSQL every
 * cfg.map_refresh_ms (grid_partitions joined with grid_members: a placed
 * partition's primary and that unit's REP address), points the routing
 * client at each primary, fetches the layout of every partition it has not
 * seen (sections with prices, rows with names: immutable once a partition
 * exists, so fetched once and kept for the life of the process), and asks
 * each primary for partition_info to know it is reachable (readyz).  The
 * loop threads read the result through an index swapped under a rwlock:
 * readers copy a few pointers and let go; the refresher builds the next
 * index outside the lock.
 *
 * Following the manager (cfg.manager_pub).  The grid manager publishes
 * every new map; a subscriber (tixgrid/mapsub.h) applies each newer one
 * the moment it arrives, on nng's thread, without waiting for the
 * refresher (which may be blocked for a second on a unit that does not
 * answer): each partition is routed to its primary, or to nobody when the
 * map has no primary for it or says its primary is dead.  A partition
 * routed to nobody is refused at once by the client (TG_EUNAVAILABLE: 503
 * partition_unavailable with Retry-After), rather than after a grid
 * timeout, and every other partition keeps its route.  The map is then
 * read again from PostgreSQL at once, for what the published map does not
 * carry (seat ranges, the sale window, new partitions' layouts).
 *
 * Two sources, one rule.  Both sources go through route_apply under
 * route_lock, which keeps for each partition the epoch of the route in
 * force: a route is replaced only by one of a higher partition epoch, or of
 * the same epoch from the manager (which knows whether the primary is
 * alive: a dead primary without a backup keeps its partition and its epoch
 * in grid_partitions).  So a slow PostgreSQL read never undoes a newer
 * published map, and without a manager PostgreSQL alone decides, as before.
 *
 * Read after a write.  A publish or a cancel answers only after this
 * gateway read the map again (gw_map_refresh_wait): its own shoppers can
 * buy the moment the organizer sees 200, and stop the moment a cancel
 * answers.  A read already under way when the write committed may have
 * missed it, so the wait is for a read begun after the call.  Other
 * gateways hear of it from PostgreSQL: every statement that changes events
 * or grid_partitions sends a notification on the channel tixgrid_map,
 * delivered at commit (migration 010), and the refresher LISTENs on it and
 * reads the map at once.  It waits with poll(2) on its connection's socket
 * and on a pipe the other wake-ups write to.
 *
 * PostgreSQL down: the last index stays in force (the grid keeps selling
 * without the database) and the refresher retries on its next tick; maps
 * published meanwhile still move the routes.
 */
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core.h"
#include "tixgrid/assert.h"
#include "tixgrid/clock.h"
#include "tixgrid/log.h"
#include "tixgrid/mapsub.h"

#define GW_MAP_PARTITIONS_MAX 65536u /* placed partitions the gateway follows */
#define GW_MAP_CALL_TIMEOUT_MS 1000u

typedef struct {
    uint32_t partition_id;
    uint64_t event_id;
    uint64_t epoch;
    bool reachable;
    bool on_sale; /* the event is in events_current: published, sale window open */
    const gw_layout *layout; /* NULL until fetched */
    char url[TG_URL_BYTES];
    char pub_url[TG_URL_BYTES]; /* where the primary publishes seat_changes; "" none */
} map_entry;

/* The route in force for one partition (route_lock). */
typedef struct {
    uint32_t partition_id;
    uint64_t epoch;    /* the partition's epoch the route came with */
    bool from_manager; /* a published map set it (PostgreSQL's equal epoch does not win) */
    char url[TG_URL_BYTES]; /* "" routed to nobody: unplaced, or its primary is dead */
} map_route;

typedef struct {
    uint32_t count;
    map_entry *by_partition; /* sorted by partition id */
    uint32_t *by_event;      /* indexes into by_partition, sorted by (event, first seat) */
} map_index;

struct gw_map {
    gw_gateway *gw;
    pthread_t thread;
    pthread_mutex_t lock;     /* stopping, refresh_now, the refresh counters */
    int wake_fds[2];          /* a pipe: a byte wakes the refresher (map_wake) */
    pthread_cond_t read_done; /* reads_done moved, or the last waiter left */
    bool stopping;
    uint64_t reads_asked; /* reads asked for by gw_map_refresh_wait */
    uint64_t reads_done;  /* the reads_asked a finished read began after */
    uint32_t waiters;     /* in gw_map_refresh_wait: close waits for them */
    pthread_rwlock_t rw; /* index */
    map_index *index;
    _Atomic uint64_t epoch;
    _Atomic uint64_t manager_epoch; /* of the last published map applied; 0 none */
    atomic_bool loaded;
    char why[160]; /* under rw: why not ready */
    PGconn *db;    /* refresher thread only */
    bool listening;   /* db LISTENs on tixgrid_map (refresher thread only) */
    bool refresh_now; /* under lock: a published map asks for a PostgreSQL read at once */
    tg_mapsub *sub;   /* NULL without cfg.manager_pub */
    pthread_mutex_t route_lock; /* routes, and every tg_client_route of the map */
    map_route *routes;          /* sorted by partition id */
    uint32_t route_count, route_capacity;
    /* Every layout ever fetched, freed at close (refresher thread only). */
    gw_layout **layouts;
    uint32_t layout_count, layout_capacity;
};

static bool layout_keep(gw_map *m, gw_layout *l)
{
    if (m->layout_count == m->layout_capacity) {
        uint32_t cap = m->layout_capacity > 0 ? 2 * m->layout_capacity : 64;
        gw_layout **grown = realloc(m->layouts, cap * sizeof(*grown));
        if (grown == NULL) {
            return false;
        }
        m->layouts = grown;
        m->layout_capacity = cap;
    }
    m->layouts[m->layout_count++] = l;
    return true;
}

static void index_free(map_index *ix)
{
    if (ix != NULL) {
        free(ix->by_partition);
        free(ix->by_event);
        free(ix);
    }
}

static const map_entry *entry_find(const map_index *ix, uint32_t partition_id)
{
    uint32_t lo = 0, hi = ix != NULL ? ix->count : 0;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (ix->by_partition[mid].partition_id < partition_id) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return ix != NULL && lo < ix->count && ix->by_partition[lo].partition_id == partition_id
               ? &ix->by_partition[lo]
               : NULL;
}

/* ---- Routes (any thread, under route_lock) -------------------------------- */

/* The route of partition_id, added when new; NULL when the table is full. */
static map_route *route_slot(gw_map *m, uint32_t partition_id)
{
    uint32_t lo = 0, hi = m->route_count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (m->routes[mid].partition_id < partition_id) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if (lo < m->route_count && m->routes[lo].partition_id == partition_id) {
        return &m->routes[lo];
    }
    if (m->route_count == m->route_capacity) {
        uint32_t cap = m->route_capacity > 0 ? 2 * m->route_capacity : 64;
        map_route *grown = cap <= GW_MAP_PARTITIONS_MAX
                               ? realloc(m->routes, cap * sizeof(*grown))
                               : NULL;
        if (grown == NULL) {
            return NULL;
        }
        m->routes = grown;
        m->route_capacity = cap;
    }
    memmove(&m->routes[lo + 1], &m->routes[lo], (m->route_count - lo) * sizeof(m->routes[0]));
    m->routes[lo] = (map_route){.partition_id = partition_id};
    m->route_count++;
    return &m->routes[lo];
}

/* Points the client at url ("": nobody) for the partition, unless the route
 * in force came with a newer epoch (see the top of the file); in_force gets
 * the address the partition is routed to afterwards ("" nobody). */
static void route_apply(gw_map *m, uint32_t partition_id, uint64_t epoch, const char *url,
                        bool from_manager, char in_force[TG_URL_BYTES])
{
    pthread_mutex_lock(&m->route_lock);
    map_route *r = route_slot(m, partition_id);
    bool fresh = r != NULL && r->epoch == 0 && !r->from_manager;
    bool newer = r != NULL && (fresh || epoch > r->epoch ||
                               (epoch == r->epoch && (from_manager || !r->from_manager)));
    if (newer && (fresh || strcmp(r->url, url) != 0)) {
        tg_err err = tg_client_route(m->gw->client, partition_id, url[0] != '\0' ? url : NULL);
        if (err != TG_OK) {
            tg_log_warn("map: partition %u: cannot route to '%s': %s", partition_id, url,
                        tg_strerror(err));
            (void)tg_client_route(m->gw->client, partition_id, NULL);
            url = "";
        }
        if (from_manager) {
            tg_log_info("map: partition %u at epoch %llu: %s%s", partition_id,
                        (unsigned long long)epoch,
                        url[0] != '\0' ? "served at " : "no live primary: refused until the "
                                                        "grid gives it one",
                        url);
        }
    }
    if (newer) {
        r->epoch = epoch;
        r->from_manager = from_manager;
        snprintf(r->url, sizeof(r->url), "%s", url);
    }
    snprintf(in_force, TG_URL_BYTES, "%s", r != NULL ? r->url : "");
    pthread_mutex_unlock(&m->route_lock);
}

/* Wakes the refresher from its wait (any thread).  A full pipe already
 * holds a wake-up, so a failed write loses nothing. */
static void map_wake(gw_map *m)
{
    ssize_t n = write(m->wake_fds[1], "w", 1);
    (void)n;
}

/* On nng's thread: a newer map was published.  Routes move at once; the
 * refresher reads PostgreSQL again for the rest. */
static void map_published_cb(void *arg, const tg_msg *map)
{
    gw_map *m = arg;
    const __typeof__(map->grid_map) *g = &map->grid_map;
    char in_force[TG_URL_BYTES];
    for (uint32_t k = 0; k < g->placement_count; k++) {
        const tg_wire_placement *p = &g->placements[k];
        bool has_primary = p->primary >= 0 && (uint32_t)p->primary < g->member_count;
        const tg_wire_member *primary = has_primary ? &g->members[p->primary] : NULL;
        const char *url =
            primary != NULL && primary->state != TG_MEMBER_DEAD ? primary->rep_url : "";
        route_apply(m, p->partition_id, p->epoch, url, true, in_force);
    }
    atomic_store(&m->manager_epoch, g->epoch);
    pthread_mutex_lock(&m->lock);
    m->refresh_now = true;
    map_wake(m);
    pthread_mutex_unlock(&m->lock);
}

/* ---- Reading (any thread) ------------------------------------------------ */

const gw_layout *gw_map_layout(gw_gateway *gw, uint32_t partition_id)
{
    gw_map *m = gw->map;
    pthread_rwlock_rdlock(&m->rw);
    const map_entry *e = entry_find(m->index, partition_id);
    const gw_layout *l = e != NULL ? e->layout : NULL;
    pthread_rwlock_unlock(&m->rw);
    return l;
}

uint32_t gw_map_event(gw_gateway *gw, uint64_t event_id,
                      const gw_layout *out[GW_EVENT_PARTITIONS_MAX])
{
    gw_map *m = gw->map;
    uint32_t n = 0;
    pthread_rwlock_rdlock(&m->rw);
    const map_index *ix = m->index;
    uint32_t lo = 0, hi = ix != NULL ? ix->count : 0;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (ix->by_partition[ix->by_event[mid]].event_id < event_id) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    for (uint32_t i = lo; ix != NULL && i < ix->count && n < GW_EVENT_PARTITIONS_MAX; i++) {
        const map_entry *e = &ix->by_partition[ix->by_event[i]];
        if (e->event_id != event_id) {
            break;
        }
        if (e->layout != NULL) {
            out[n++] = e->layout;
        }
    }
    pthread_rwlock_unlock(&m->rw);
    return n;
}

uint32_t gw_map_partitions(gw_gateway *gw, uint32_t *ids, uint32_t max)
{
    gw_map *m = gw->map;
    uint32_t n = 0;
    pthread_rwlock_rdlock(&m->rw);
    for (uint32_t i = 0; m->index != NULL && i < m->index->count && n < max; i++) {
        ids[n++] = m->index->by_partition[i].partition_id;
    }
    pthread_rwlock_unlock(&m->rw);
    return n;
}

bool gw_map_on_sale(gw_gateway *gw, uint64_t event_id)
{
    gw_map *m = gw->map;
    bool on_sale = false;
    pthread_rwlock_rdlock(&m->rw);
    for (uint32_t i = 0; m->index != NULL && i < m->index->count && !on_sale; i++) {
        const map_entry *e = &m->index->by_partition[i];
        on_sale = e->event_id == event_id && e->on_sale;
    }
    pthread_rwlock_unlock(&m->rw);
    return on_sale;
}

bool gw_map_route(gw_gateway *gw, uint32_t partition_id, char pub_url[TG_URL_BYTES],
                  bool *reachable)
{
    gw_map *m = gw->map;
    pthread_rwlock_rdlock(&m->rw);
    const map_entry *e = entry_find(m->index, partition_id);
    if (e != NULL) {
        memcpy(pub_url, e->pub_url, TG_URL_BYTES);
        *reachable = e->reachable;
    }
    pthread_rwlock_unlock(&m->rw);
    return e != NULL;
}

uint64_t gw_map_epoch(gw_gateway *gw)
{
    /* The manager's map has an epoch of its own; PostgreSQL's rows only
     * their partitions' (the highest stands for the map). */
    uint64_t published = atomic_load_explicit(&gw->map->manager_epoch, memory_order_relaxed);
    return published != 0 ? published
                          : atomic_load_explicit(&gw->map->epoch, memory_order_relaxed);
}

bool gw_map_ready(gw_gateway *gw, char *why, size_t why_size)
{
    gw_map *m = gw->map;
    pthread_rwlock_rdlock(&m->rw);
    bool ready = atomic_load(&m->loaded) && m->why[0] == '\0';
    snprintf(why, why_size, "%s", atomic_load(&m->loaded) ? m->why : "partition map not read yet");
    pthread_rwlock_unlock(&m->rw);
    return ready;
}

/* ---- Refreshing (the map thread) ----------------------------------------- */

static gw_layout *layout_fetch(gw_map *m, const map_entry *e, uint32_t first_seat,
                               uint32_t seat_count)
{
    gw_gateway *gw = m->gw;
    static tg_wire_row rows[TG_ROWS_MAX]; /* the map thread's only */
    tg_wire_space space = {.rows = rows, .rows_capacity = TG_ROWS_MAX};
    tg_msg req = {.type = TG_WIRE_LAYOUT, .layout = {.partition_id = e->partition_id}};
    tg_msg rep;
    if (tg_client_call(gw->client, e->partition_id, &req, GW_MAP_CALL_TIMEOUT_MS, &space, &rep) !=
        TG_OK) {
        return NULL;
    }
    gw_layout *l = calloc(1, sizeof(*l));
    gw_row *r = calloc(rep.layout_ok.row_count > 0 ? rep.layout_ok.row_count : 1, sizeof(*r));
    if (l == NULL || r == NULL || !layout_keep(m, l)) {
        free(l);
        free(r);
        return NULL;
    }
    *l = (gw_layout){.partition_id = e->partition_id, .event_id = e->event_id,
                     .first_seat = first_seat, .seat_count = seat_count,
                     .section_count = rep.layout_ok.section_count,
                     .row_count = rep.layout_ok.row_count, .rows = r};
    for (uint32_t i = 0; i < l->section_count; i++) {
        const tg_wire_section *s = &rep.layout_ok.sections[i];
        gw_section *d = &l->sections[i];
        memcpy(d->name, s->name, sizeof(d->name));
        memcpy(d->currency, s->currency, sizeof(d->currency));
        d->price_minor = s->price_minor;
        d->row_first = s->row_first;
        d->row_count = s->row_count;
        d->seat_first = s->seat_first;
        d->seat_count = s->seat_count;
    }
    for (uint32_t i = 0; i < l->row_count; i++) {
        memcpy(r[i].name, rows[i].name, sizeof(r[i].name));
        r[i].section = rows[i].section;
        r[i].seat_first = rows[i].seat_first;
        r[i].seat_count = rows[i].seat_count;
    }
    return l;
}

static bool partition_reachable(gw_gateway *gw, const map_entry *e)
{
    tg_msg req = {.type = TG_WIRE_PARTITION_INFO, .partition_info = {.partition_id =
                                                                         e->partition_id}};
    tg_msg rep;
    return tg_client_call(gw->client, e->partition_id, &req, GW_MAP_CALL_TIMEOUT_MS, NULL, &rep) ==
               TG_OK &&
           rep.partition_info_ok.event_id == e->event_id;
}

/* Fills e from one row; keeps the layout the current index already has. */
static void entry_from_row(gw_map *m, PGresult *res, int row, map_entry *e, char *why,
                           size_t why_size)
{
    gw_gateway *gw = m->gw;
    e->partition_id = (uint32_t)strtoul(PQgetvalue(res, row, 0), NULL, 10);
    e->event_id = strtoull(PQgetvalue(res, row, 1), NULL, 10);
    uint32_t first_seat = (uint32_t)strtoul(PQgetvalue(res, row, 2), NULL, 10);
    uint32_t seat_count = (uint32_t)strtoul(PQgetvalue(res, row, 3), NULL, 10);
    e->epoch = strtoull(PQgetvalue(res, row, 4), NULL, 10);
    snprintf(e->url, sizeof(e->url), "%s", PQgetisnull(res, row, 5) ? "" : PQgetvalue(res, row, 5));
    e->on_sale = PQgetvalue(res, row, 6)[0] == 't';
    snprintf(e->pub_url, sizeof(e->pub_url), "%s",
             PQgetisnull(res, row, 7) ? "" : PQgetvalue(res, row, 7));
    const map_entry *old = entry_find(m->index, e->partition_id);
    route_apply(m, e->partition_id, e->epoch, e->url, false, e->url);
    if (e->url[0] == '\0') {
        snprintf(why, why_size, "partition %u has no live primary", e->partition_id);
        e->layout = old != NULL ? old->layout : NULL;
        return;
    }
    e->layout = old != NULL ? old->layout : NULL; /* layouts never change */
    if (e->layout == NULL) {
        e->layout = layout_fetch(m, e, first_seat, seat_count);
    }
    e->reachable = e->layout != NULL && partition_reachable(gw, e);
    if (!e->reachable) {
        snprintf(why, why_size, "partition %u does not answer at %.100s", e->partition_id,
                 e->url);
    }
}

static map_index *index_sort_events(map_index *ix)
{
    map_entry *p = ix->by_partition;
    for (uint32_t i = 0; i < ix->count; i++) {
        ix->by_event[i] = i;
    }
    /* Insertion sort: the map is read in partition order, which is nearly
     * event order already. */
    for (uint32_t i = 1; i < ix->count; i++) {
        uint32_t k = ix->by_event[i], j = i;
        while (j > 0) {
            const map_entry *a = &p[ix->by_event[j - 1]], *b = &p[k];
            uint32_t af = a->layout ? a->layout->first_seat : 0;
            uint32_t bf = b->layout ? b->layout->first_seat : 0;
            if (a->event_id < b->event_id || (a->event_id == b->event_id && af <= bf)) {
                break;
            }
            ix->by_event[j] = ix->by_event[j - 1];
            j--;
        }
        ix->by_event[j] = k;
    }
    return ix;
}

static map_index *index_build(gw_map *m, PGresult *res, char *why, size_t why_size)
{
    uint32_t rows = (uint32_t)PQntuples(res);
    if (rows > GW_MAP_PARTITIONS_MAX) {
        rows = GW_MAP_PARTITIONS_MAX;
    }
    map_index *ix = calloc(1, sizeof(*ix));
    if (ix == NULL) {
        return NULL;
    }
    ix->by_partition = calloc(rows > 0 ? rows : 1, sizeof(map_entry));
    ix->by_event = calloc(rows > 0 ? rows : 1, sizeof(uint32_t));
    if (ix->by_partition == NULL || ix->by_event == NULL) {
        index_free(ix);
        return NULL;
    }
    why[0] = '\0';
    for (uint32_t i = 0; i < rows; i++) {
        entry_from_row(m, res, (int)i, &ix->by_partition[ix->count++], why, why_size);
    }
    return index_sort_events(ix);
}

static const char map_sql[] =
    "SELECT p.partition_id, p.event_id, p.first_seat, p.seat_count, p.epoch, m.rep_url, "
    "EXISTS (SELECT 1 FROM events_current e WHERE e.id = p.event_id), m.pub_url "
    "FROM grid_partitions p LEFT JOIN grid_members m ON m.pu_name = p.primary_pu "
    "WHERE p.primary_pu IS NOT NULL ORDER BY p.partition_id";

/* True when the map was read and the new index is in force. */
static bool map_refresh(gw_map *m)
{
    if (m->db == NULL || PQstatus(m->db) != CONNECTION_OK) {
        PQfinish(m->db);
        m->db = gw_db_connect(&m->gw->cfg, "the partition map");
        if (m->db == NULL) {
            return false;
        }
        m->listening = false;
    }
    if (!m->listening) {
        /* Before the read: a change committed after LISTEN is announced. */
        PGresult *listen = PQexec(m->db, "LISTEN tixgrid_map");
        m->listening = PQresultStatus(listen) == PGRES_COMMAND_OK;
        if (!m->listening) {
            tg_log(TG_LOG_WARN, "map: changes will be seen at the next read only: %s",
                   PQresultErrorMessage(listen));
        }
        PQclear(listen);
    }
    PGresult *res = PQexec(m->db, map_sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        tg_log(TG_LOG_WARN, "partition map not read: %s", PQresultErrorMessage(res));
        PQclear(res);
        return false;
    }
    char why[sizeof(m->why)];
    map_index *ix = index_build(m, res, why, sizeof(why));
    PQclear(res);
    if (ix == NULL) {
        return false;
    }
    uint64_t epoch = 0;
    for (uint32_t i = 0; i < ix->count; i++) {
        epoch = ix->by_partition[i].epoch > epoch ? ix->by_partition[i].epoch : epoch;
    }
    pthread_rwlock_wrlock(&m->rw);
    map_index *old = m->index;
    m->index = ix;
    memcpy(m->why, why, sizeof(m->why));
    atomic_store(&m->epoch, epoch);
    atomic_store(&m->loaded, true);
    pthread_rwlock_unlock(&m->rw);
    index_free(old);
    return true;
}

/* Takes the announcements libpq has received; true when there were any. */
static bool map_announced(gw_map *m)
{
    bool announced = false;
    for (PGnotify *n; (n = PQnotifies(m->db)) != NULL; PQfreemem(n)) {
        announced = true;
    }
    return announced;
}

/* Waits up to ms for a wake-up or for PostgreSQL; true when PostgreSQL
 * announced a change to the map (or the connection broke: the next read
 * reconnects and listens again).  An announcement that arrived while the
 * last read ran is already in libpq's queue, not on the socket, and may
 * be of a commit that read missed: it counts at once. */
static bool map_wait(gw_map *m, int64_t ms)
{
    bool up = m->db != NULL && PQstatus(m->db) == CONNECTION_OK;
    if (up && map_announced(m)) {
        return true;
    }
    struct pollfd fds[2] = {{.fd = m->wake_fds[0], .events = POLLIN},
                            {.fd = up ? PQsocket(m->db) : -1, .events = POLLIN}};
    if (poll(fds, 2, (int)(ms < INT32_MAX ? ms : INT32_MAX)) <= 0) {
        return false;
    }
    char drain[64];
    while (read(m->wake_fds[0], drain, sizeof(drain)) > 0) {
    }
    if (fds[1].revents == 0) {
        return false;
    }
    return PQconsumeInput(m->db) == 0 || map_announced(m);
}

static void *map_thread(void *arg)
{
    gw_map *m = arg;
    pthread_mutex_lock(&m->lock);
    while (!m->stopping) {
        uint64_t asked = m->reads_asked; /* every ask up to here sees this read */
        pthread_mutex_unlock(&m->lock);
        bool read = map_refresh(m);
        pthread_mutex_lock(&m->lock);
        if (read) { /* a failed read leaves the waiters to the next one, or their timeout */
            m->reads_done = asked;
            pthread_cond_broadcast(&m->read_done);
        }
        int64_t until = tg_mono_ms() + m->gw->cfg.map_refresh_ms;
        for (int64_t left; !m->stopping && !m->refresh_now && (left = until - tg_mono_ms()) > 0;) {
            pthread_mutex_unlock(&m->lock);
            bool announced = map_wait(m, left);
            pthread_mutex_lock(&m->lock);
            m->refresh_now = m->refresh_now || announced;
        }
        m->refresh_now = false;
    }
    pthread_mutex_unlock(&m->lock);
    PQfinish(m->db);
    return NULL;
}

static void map_free(gw_map *m)
{
    index_free(m->index);
    for (uint32_t i = 0; i < m->layout_count; i++) {
        free(m->layouts[i]->rows);
        free(m->layouts[i]);
    }
    free(m->layouts);
    free(m->routes);
    close(m->wake_fds[0]);
    close(m->wake_fds[1]);
    free(m);
}

tg_err gw_map_open(gw_gateway *gw, gw_map **out)
{
    gw_map *m = calloc(1, sizeof(*m));
    if (m == NULL) {
        return TG_ENOMEM;
    }
    m->gw = gw;
    if (pipe2(m->wake_fds, O_CLOEXEC | O_NONBLOCK) != 0) {
        free(m);
        return TG_ESYSTEM;
    }
    pthread_mutex_init(&m->lock, NULL);
    pthread_cond_init(&m->read_done, NULL);
    pthread_rwlock_init(&m->rw, NULL);
    pthread_mutex_init(&m->route_lock, NULL);
    gw->map = m;
    (void)map_refresh(m); /* a first map before the listeners open, when PostgreSQL is up */
    tg_err err = TG_OK;
    if (gw->cfg.manager_pub[0] != '\0') {
        err = tg_mapsub_open(gw->cfg.manager_pub, map_published_cb, m, &m->sub);
        if (err != TG_OK) {
            tg_log_error("map: cannot follow the map published at %s: %s", gw->cfg.manager_pub,
                         tg_strerror(err));
        }
    }
    if (err == TG_OK && pthread_create(&m->thread, NULL, map_thread, m) != 0) {
        tg_mapsub_close(m->sub);
        err = TG_ESYSTEM;
    }
    if (err != TG_OK) {
        gw->map = NULL;
        map_free(m);
        return err;
    }
    *out = m;
    return TG_OK;
}

bool gw_map_refresh_wait(gw_gateway *gw, uint32_t timeout_ms)
{
    gw_map *m = gw->map;
    struct timespec until = tg_realtime_after_ms(timeout_ms);
    pthread_mutex_lock(&m->lock);
    uint64_t want = ++m->reads_asked;
    m->refresh_now = true;
    m->waiters++;
    map_wake(m);
    while (!m->stopping && m->reads_done < want &&
           pthread_cond_timedwait(&m->read_done, &m->lock, &until) == 0) {
    }
    bool read = m->reads_done >= want;
    if (--m->waiters == 0 && m->stopping) {
        pthread_cond_broadcast(&m->read_done); /* close may free m now */
    }
    pthread_mutex_unlock(&m->lock);
    return read;
}

void gw_map_close(gw_map *m)
{
    tg_mapsub_close(m->sub); /* no map arrives after this */
    pthread_mutex_lock(&m->lock);
    m->stopping = true;
    map_wake(m);
    pthread_cond_broadcast(&m->read_done);
    while (m->waiters > 0) {
        pthread_cond_wait(&m->read_done, &m->lock);
    }
    pthread_mutex_unlock(&m->lock);
    pthread_join(m->thread, NULL);
    map_free(m);
}
