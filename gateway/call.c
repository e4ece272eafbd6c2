/*
 * call.c — operations that finish on another thread, handed back to the
 * loop of the request that started them.
 *
 * A gw_call carries one operation (a request to a processing unit, or a
 * PostgreSQL job) of one HTTP request.  The loop thread takes it from its
 * worker's free list, the finishing thread (one of nng's, or a pool thread)
 * fills in the result and appends it to the worker's completion list under
 * the worker's mutex, then wakes the loop with uv_async_send (which
 * coalesces: one wake-up may carry many completions — batch, don't react).
 * The loop thread runs each completion's `done` if the request is still
 * there, and returns the call to the free list.
 *
 * Bounds: a worker makes at most cfg.inflight_max calls over its life (one
 * per request in service, and requests in service are bounded by the same
 * number), allocated on first need and reused after; none is freed before
 * the worker stops.  The large reply arrays (seat pages, row counts, layout
 * rows) are allocated per call only when asked for: those replies are rare
 * and cached upstream, so the hot path (holds) allocates nothing.
 *
 * Lifetime: gw_req_gone (the request's pool disposal) detaches the call; a
 * call finishing later finds req == NULL and only cleans up.  The nng
 * callback never touches the request or h2o: it copies the reply into the
 * call and queues it (STYLE rule 7).
 */
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "provider.h"
#include "tixgrid/assert.h"
#include "tixgrid/log.h"

gw_call *gw_call_take(gw_worker *w)
{
    gw_call *call = w->free_calls;
    if (call != NULL) {
        w->free_calls = call->next;
    } else {
        if (w->calls_made >= w->gw->cfg.inflight_max) {
            return NULL;
        }
        call = calloc(1, sizeof(*call));
        if (call == NULL) {
            return NULL;
        }
        w->calls_made++;
    }
    /* Every field but the reply, last in the struct: 10 KB that every grid
     * reply overwrites. */
    memset(call, 0, offsetof(gw_call, reply));
    call->worker = w;
    return call;
}

static void space_free(tg_wire_space *s)
{
    free(s->seats);
    free(s->counts);
    free(s->rows);
    memset(s, 0, sizeof(*s));
}

void gw_call_release(gw_call *call)
{
    gw_worker *w = call->worker;
    space_free(&call->space);
    if (call->job_free != NULL) {
        call->job_free(call->job);
    }
    call->job = NULL;
    call->job_free = NULL;
    call->next = w->free_calls;
    w->free_calls = call;
}

void gw_call_complete(gw_call *call)
{
    gw_worker *w = call->worker;
    call->next = NULL;
    pthread_mutex_lock(&w->lock);
    if (w->done_tail != NULL) {
        w->done_tail->next = call;
    } else {
        w->done_head = call;
    }
    w->done_tail = call;
    pthread_mutex_unlock(&w->lock);
    uv_async_send(&w->wakeup);
}

static void call_finish(gw_call *call)
{
    if (call->batch_slot != NULL) {
        call->batch_slot->in_flight--; /* its partition's next batch may leave */
    }
    gw_req *r = call->req;
    if (r != NULL) {
        r->pending = NULL;
        if (call->kind == GW_CALL_GRID) {
            call->grid_done(r, call->err, call->err == TG_OK || call->reply.type == TG_WIRE_ERROR
                                              ? &call->reply
                                              : NULL);
        } else {
            call->db_done(r, call->job);
        }
    }
    gw_call_release(call);
}

void gw_calls_drain(gw_worker *w)
{
    pthread_mutex_lock(&w->lock);
    gw_call *call = w->done_head;
    w->done_head = w->done_tail = NULL;
    pthread_mutex_unlock(&w->lock);
    while (call != NULL) {
        gw_call *next = call->next;
        call_finish(call);
        call = next;
    }
}

void gw_req_gone(gw_req *r)
{
    if (r->pay_call != NULL) {
        gw_pay_abandon(r); /* its outcome will never come back to count */
    }
    if (r->pending != NULL) {
        r->pending->req = NULL;
        r->pending = NULL;
    }
    if (r->on_gone != NULL) {
        r->on_gone(r);
        r->on_gone = NULL;
    }
    r->h2o = NULL;
}

/* ---- Requests to processing units --------------------------------------- */

/* On one of nng's threads: copy what the reply says, queue it, return. */
static void grid_reply_cb(void *arg, tg_err err, const tg_msg *reply)
{
    gw_call *call = arg;
    call->err = err;
    if (reply != NULL) {
        call->reply = *reply; /* its arrays point into call->space */
    } else {
        call->reply.type = TG_WIRE_NONE;
    }
    gw_call_complete(call);
}

static bool space_alloc(tg_wire_space *s, unsigned space)
{
    if (space & GW_SPACE_SEATS) {
        s->seats = malloc(sizeof(*s->seats) * TG_WIRE_SEATS_LIST_MAX);
        s->seats_capacity = TG_WIRE_SEATS_LIST_MAX;
    }
    if (space & GW_SPACE_COUNTS) {
        s->counts = malloc(sizeof(*s->counts) * TG_ROWS_MAX);
        s->counts_capacity = TG_ROWS_MAX;
    }
    if (space & GW_SPACE_ROWS) {
        s->rows = malloc(sizeof(*s->rows) * TG_ROWS_MAX);
        s->rows_capacity = TG_ROWS_MAX;
    }
    return ((space & GW_SPACE_SEATS) == 0 || s->seats != NULL) &&
           ((space & GW_SPACE_COUNTS) == 0 || s->counts != NULL) &&
           ((space & GW_SPACE_ROWS) == 0 || s->rows != NULL);
}

/* ---- Batches ---------------------------------------------------------------
 *
 * A batch's calls are chained in order through batch_next.  Their replies
 * arrive on one nng thread, in order, one callback each; every call is
 * filled in, and the whole chain is queued for the loop with one lock and
 * one wake-up after the last.  The first call is queued last of all, so its
 * cursor stays ours until then.
 *
 * Window.  Each message costs the same whatever it carries: a handful of
 * hand-offs between nng's threads and the loop's, in the gateway and in the
 * unit, which on a machine the grid shares cost more than the operations.
 * Sending at every turn of the loop sent many small messages under load (4
 * to 10 operations each with 64 connections).  So while a partition's last
 * message is unanswered its next batch keeps gathering, and leaves when the
 * loop finishes the reply (the uv_prepare after it), when it is full, or
 * --grid-batch-wait-ms after the last one left, whichever comes first: the
 * message size follows the load, an idle gateway waits for nothing, and a
 * unit that hangs delays the next message by that much at most, never by
 * the grid timeout. */

static void calls_complete(gw_call *head, gw_call *tail)
{
    gw_worker *w = head->worker;
    for (gw_call *c = head; c != tail; c = c->batch_next) {
        c->next = c->batch_next;
    }
    tail->next = NULL;
    pthread_mutex_lock(&w->lock);
    if (w->done_tail != NULL) {
        w->done_tail->next = head;
    } else {
        w->done_head = head;
    }
    w->done_tail = tail;
    pthread_mutex_unlock(&w->lock);
    uv_async_send(&w->wakeup);
}

static void batch_reply_cb(void *arg, uint32_t index, tg_err err, const tg_msg *reply)
{
    gw_call *head = arg;
    gw_call *call = index == 0 ? head : head->batch_cursor;
    call->err = err;
    if (reply != NULL) {
        call->reply = *reply;
    } else {
        call->reply.type = TG_WIRE_NONE;
    }
    head->batch_cursor = call->batch_next;
    if (call->batch_next == NULL) {
        calls_complete(head, call);
    }
}

static void batch_send(gw_worker *w, gw_batch *b)
{
    gw_call *head = b->head, *tail = b->tail;
    b->head = b->tail = NULL;
    b->in_flight++;
    b->sent_ms = uv_now(&w->loop);
    head->batch_slot = b;
    atomic_fetch_add_explicit(&w->metrics.grid_batches, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&w->metrics.grid_batched, b->wire.count, memory_order_relaxed);
    tg_err err = tg_client_send_batch(w->gw->client, b->partition_id, &b->wire,
                                      w->gw->cfg.grid_timeout_ms, batch_reply_cb, head);
    if (err != TG_OK) {
        /* Nothing was sent: every request of the batch has this outcome. */
        for (gw_call *c = head; c != NULL; c = c->batch_next) {
            c->err = err;
            c->reply.type = TG_WIRE_NONE;
        }
        calls_complete(head, tail);
    }
    tg_wire_batch_reset(&b->wire);
}

static void on_batch_due(uv_timer_t *timer)
{
    (void)timer; /* the uv_prepare that follows in this turn sends it */
}

/* Sends every batch that is due; wakes the loop for the first one that is
 * not yet. */
void gw_batches_flush(gw_worker *w)
{
    uint64_t now = uv_now(&w->loop);
    uint64_t wait = w->gw->cfg.grid_batch_wait_ms, wake = UINT64_MAX;
    for (uint32_t i = 0; i < GW_BATCHES_OPEN_MAX; i++) {
        gw_batch *b = &w->batches[i];
        if (b->head == NULL) {
            continue;
        }
        uint64_t due = b->sent_ms + wait;
        if (b->in_flight == 0 || now >= due) {
            batch_send(w, b);
        } else if (due < wake) {
            wake = due;
        }
    }
    if (wake != UINT64_MAX) {
        uv_timer_start(&w->batch_timer, on_batch_due, wake - now, 0);
    }
}

static void on_flush(uv_prepare_t *handle)
{
    gw_batches_flush(handle->loop->data);
}

void gw_batches_init(gw_worker *w)
{
    for (uint32_t i = 0; i < GW_BATCHES_OPEN_MAX; i++) {
        tg_wire_batch_init(&w->batches[i].wire);
    }
    uv_timer_init(&w->loop, &w->batch_timer);
    uv_prepare_init(&w->loop, &w->flush);
    uv_prepare_start(&w->flush, on_flush);
}

/* The partition's slot, taking a free one; NULL when none is free. */
static gw_batch *batch_for(gw_worker *w, uint32_t partition_id)
{
    gw_batch *free_slot = NULL;
    for (uint32_t i = 0; i < GW_BATCHES_OPEN_MAX; i++) {
        gw_batch *b = &w->batches[i];
        bool used = b->head != NULL || b->in_flight > 0;
        if (used && b->partition_id == partition_id) {
            return b;
        }
        if (!used && free_slot == NULL) {
            free_slot = b;
        }
    }
    if (free_slot != NULL) {
        free_slot->partition_id = partition_id;
    }
    return free_slot;
}

/* Adds the call's request to its partition's batch; TG_EBUSY when no batch
 * is free (the caller sends it alone). */
static tg_err batch_add(gw_call *call, uint32_t partition_id, const tg_msg *msg)
{
    gw_worker *w = call->worker;
    gw_batch *b = batch_for(w, partition_id);
    if (b == NULL) {
        return TG_EBUSY;
    }
    const char *why = NULL;
    tg_err err = tg_wire_batch_add(&b->wire, msg, &why);
    if (err != TG_OK) {
        tg_log_warn("gateway: request does not encode: %s", why != NULL ? why : "?");
        return err;
    }
    if (b->head == NULL) {
        b->head = call;
    } else {
        b->tail->batch_next = call;
    }
    b->tail = call;
    if (b->wire.count >= w->gw->cfg.grid_batch_max) {
        batch_send(w, b); /* full: it does not wait for the one before */
    }
    return TG_OK;
}

tg_err gw_grid_send(gw_req *r, uint32_t partition_id, const tg_msg *msg, unsigned space,
                    gw_grid_done done)
{
    TG_ASSERT(r->pending == NULL);
    gw_call *call = gw_call_take(r->worker);
    if (call == NULL) {
        return TG_EBUSY;
    }
    call->kind = GW_CALL_GRID;
    call->req = r;
    call->grid_done = done;
    tg_err err = TG_EBUSY;
    if (space == GW_SPACE_NONE && r->gw->cfg.grid_batch_max > 1 && tg_wire_batchable(msg->type)) {
        err = batch_add(call, partition_id, msg);
    }
    if (err == TG_EBUSY) {
        err = space_alloc(&call->space, space) ? TG_OK : TG_ENOMEM;
        if (err == TG_OK) {
            err = tg_client_send(r->gw->client, partition_id, msg, r->gw->cfg.grid_timeout_ms,
                                 space != GW_SPACE_NONE ? &call->space : NULL, grid_reply_cb,
                                 call);
        }
    }
    if (err != TG_OK) {
        gw_call_release(call);
        return err;
    }
    r->pending = call;
    return TG_OK;
}

/* ---- PostgreSQL jobs ------------------------------------------------------ */

tg_err gw_db_submit(gw_req *r, gw_db_run run, gw_db_done done, void *job,
                    void (*job_free)(void *job))
{
    TG_ASSERT(r->pending == NULL);
    gw_call *call = gw_call_take(r->worker);
    if (call == NULL) {
        job_free(job);
        return TG_EBUSY;
    }
    call->kind = GW_CALL_DB;
    call->req = r;
    call->db_run = run;
    call->db_done = done;
    call->job = job;
    call->job_free = job_free;
    tg_err err = gw_db_pool_push(r->gw->db, call);
    if (err != TG_OK) {
        gw_call_release(call); /* frees the job */
        return err;
    }
    r->pending = call;
    return TG_OK;
}
