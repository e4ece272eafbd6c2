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
 * PostgreSQL down: the last index stays in force (the grid keeps selling
 * without the database) and the refresher retries on its next tick.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "tixgrid/assert.h"
#include "tixgrid/log.h"

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

typedef struct {
    uint32_t count;
    map_entry *by_partition; /* sorted by partition id */
    uint32_t *by_event;      /* indexes into by_partition, sorted by (event, first seat) */
} map_index;

struct gw_map {
    gw_gateway *gw;
    pthread_t thread;
    pthread_mutex_t lock; /* stopping, wake */
    pthread_cond_t wake;
    bool stopping;
    pthread_rwlock_t rw; /* index */
    map_index *index;
    _Atomic uint64_t epoch;
    atomic_bool loaded;
    char why[160]; /* under rw: why not ready */
    PGconn *db;    /* refresher thread only */
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
    return atomic_load_explicit(&gw->map->epoch, memory_order_relaxed);
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
    if (e->url[0] == '\0' || tg_client_route(gw->client, e->partition_id, e->url) != TG_OK) {
        (void)tg_client_route(gw->client, e->partition_id, NULL);
        snprintf(why, why_size, "partition %u has no reachable primary", e->partition_id);
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

static void map_refresh(gw_map *m)
{
    if (m->db == NULL || PQstatus(m->db) != CONNECTION_OK) {
        PQfinish(m->db);
        m->db = gw_db_connect(&m->gw->cfg, "the partition map");
        if (m->db == NULL) {
            return;
        }
    }
    PGresult *res = PQexec(m->db, map_sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        tg_log(TG_LOG_WARN, "partition map not read: %s", PQresultErrorMessage(res));
        PQclear(res);
        return;
    }
    char why[sizeof(m->why)];
    map_index *ix = index_build(m, res, why, sizeof(why));
    PQclear(res);
    if (ix == NULL) {
        return;
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
}

static void *map_thread(void *arg)
{
    gw_map *m = arg;
    pthread_mutex_lock(&m->lock);
    while (!m->stopping) {
        pthread_mutex_unlock(&m->lock);
        map_refresh(m);
        pthread_mutex_lock(&m->lock);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        uint64_t ns = (uint64_t)until.tv_nsec + (uint64_t)m->gw->cfg.map_refresh_ms * 1000000u;
        until.tv_sec += (time_t)(ns / 1000000000u);
        until.tv_nsec = (long)(ns % 1000000000u);
        if (!m->stopping) {
            pthread_cond_timedwait(&m->wake, &m->lock, &until);
        }
    }
    pthread_mutex_unlock(&m->lock);
    PQfinish(m->db);
    return NULL;
}

tg_err gw_map_open(gw_gateway *gw, gw_map **out)
{
    gw_map *m = calloc(1, sizeof(*m));
    if (m == NULL) {
        return TG_ENOMEM;
    }
    m->gw = gw;
    pthread_mutex_init(&m->lock, NULL);
    pthread_cond_init(&m->wake, NULL);
    pthread_rwlock_init(&m->rw, NULL);
    gw->map = m;
    map_refresh(m); /* a first map before the listeners open, when PostgreSQL is up */
    if (pthread_create(&m->thread, NULL, map_thread, m) != 0) {
        gw->map = NULL;
        free(m);
        return TG_ESYSTEM;
    }
    *out = m;
    return TG_OK;
}

void gw_map_close(gw_map *m)
{
    pthread_mutex_lock(&m->lock);
    m->stopping = true;
    pthread_cond_signal(&m->wake);
    pthread_mutex_unlock(&m->lock);
    pthread_join(m->thread, NULL);
    index_free(m->index);
    for (uint32_t i = 0; i < m->layout_count; i++) {
        free(m->layouts[i]->rows);
        free(m->layouts[i]);
    }
    free(m->layouts);
    free(m);
}
