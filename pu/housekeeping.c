/*
 * housekeeping.c — the processing unit's background thread: publishing seat
 * changes, trimming the log when there is no persister, sampling the log
 * head, and expiring due holds.
 *
 * One thread for all of it, woken every PU_TICK_MS: each job is a bounded
 * batch (one event of at most TG_WIRE_CHANGES_MAX changes per partition per
 * tick; one sweep pass over the booking table per sweep interval), so no job
 * can starve the others, and live views see changes at most a tick late.
 */
#include "server_internal.h"

#include "tixgrid/clock.h"
#include "tixgrid/log.h"

#include <string.h>

typedef struct {
    msgpack_sbuffer buf;
    tg_wire_change changes[TG_WIRE_CHANGES_MAX];
    pu_log_record chunk[256];
} hk_scratch;

/* True when the records at the cursor were persisted and overwritten while
 * the publisher was behind: it must skip ahead. */
static bool cursor_overwritten(const pu_served *e)
{
    pu_partition_info info;
    pu_partition_describe(e->p, &info);
    return e->pub_cursor <= info.log_persisted && info.log_head >= e->pub_cursor;
}

static void publish_event(pu_server *s, pu_served *e, hk_scratch *hk, uint32_t n)
{
    tg_msg ev = {.type = TG_WIRE_SEAT_CHANGES};
    ev.seat_changes.partition_id = e->id;
    ev.seat_changes.from_seq = e->pub_from;
    ev.seat_changes.to_seq = e->pub_cursor - 1;
    ev.seat_changes.change_count = n;
    ev.seat_changes.changes = hk->changes;
    const char *why = NULL;
    if (tg_wire_encode_event(&ev, &hk->buf, &why) != TG_OK) {
        tg_log_error("pu %s: cannot encode seat changes: %s", s->name, why ? why : "?");
        return;
    }
    int rv = nng_send(s->pub, hk->buf.data, hk->buf.size, NNG_FLAG_NONBLOCK);
    if (rv != 0 && rv != NNG_EAGAIN) {
        tg_log_warn("pu %s: publishing seat changes failed: %s", s->name, nng_strerror(rv));
    }
}

/* Gathers up to TG_WIRE_CHANGES_MAX seat changes from the cursor on and
 * publishes them as one event covering [pub_from, cursor - 1].  A tick with
 * only booking records publishes nothing and the next event covers them, so
 * consecutive events are contiguous unless records were really missed: then
 * the next event starts past the last one's end, and subscribers reread. */
static void publish_partition(pu_server *s, pu_served *e, hk_scratch *hk)
{
    uint32_t changes = 0;
    bool jumped = false;
    while (changes + 256 <= TG_WIRE_CHANGES_MAX) {
        uint32_t n = pu_log_read(e->p, e->pub_cursor, hk->chunk, 256);
        if (n == 0) {
            jumped = cursor_overwritten(e);
            break;
        }
        for (uint32_t i = 0; i < n; i++) {
            if (hk->chunk[i].kind == PU_REC_SEAT) {
                hk->changes[changes++] =
                    (tg_wire_change){.seat_id = hk->chunk[i].ident, .word = hk->chunk[i].word};
            }
        }
        e->pub_cursor = hk->chunk[n - 1].seq + 1;
    }
    if (changes > 0 && s->pub_open) {
        publish_event(s, e, hk, changes);
    }
    if (changes > 0) {
        __atomic_store_n(&e->pub_from, e->pub_cursor, __ATOMIC_RELEASE);
    }
    if (s->cfg.unpersisted && e->pub_cursor > 1) {
        (void)pu_log_ack(e->p, e->pub_cursor - 1);
    }
    if (jumped) {
        pu_partition_info info;
        pu_partition_describe(e->p, &info);
        e->pub_cursor = info.log_persisted + 1;
        __atomic_store_n(&e->pub_from, e->pub_cursor, __ATOMIC_RELEASE);
    }
}

static void sample_head(pu_server *s, pu_served *e, int64_t now_ms)
{
    pu_partition_info info;
    pu_partition_describe(e->p, &info);
    pthread_mutex_lock(&s->samples_lock);
    e->samples[e->sample_next] = (pu_head_sample){.head = info.log_head, .mono_ms = now_ms};
    e->sample_next = (e->sample_next + 1) % PU_HEAD_SAMPLES;
    if (e->sample_count < PU_HEAD_SAMPLES) {
        e->sample_count++;
    }
    pthread_mutex_unlock(&s->samples_lock);
}

uint64_t pu_unpersisted_age_ms(pu_server *s, pu_served *e, uint64_t persisted, int64_t now_ms)
{
    uint64_t age = 0;
    pthread_mutex_lock(&s->samples_lock);
    /* Oldest sample first: the first whose head is past what is persisted
     * was taken at most one sample period after the oldest unpersisted
     * record was written. */
    for (uint32_t k = 0; k < e->sample_count; k++) {
        uint32_t i = (e->sample_next + PU_HEAD_SAMPLES - e->sample_count + k) % PU_HEAD_SAMPLES;
        if (e->samples[i].head > persisted) {
            age = (uint64_t)(now_ms - e->samples[i].mono_ms);
            break;
        }
    }
    pthread_mutex_unlock(&s->samples_lock);
    return age;
}

void *pu_housekeeping_main(void *arg)
{
    pu_server *s = arg;
    static _Thread_local hk_scratch hk_storage; /* large: keep it off the stack */
    hk_scratch *hk = &hk_storage;
    msgpack_sbuffer_init(&hk->buf);
    uint64_t tick = 0;
    int64_t last_sweep_ms = 0;
    while (!__atomic_load_n(&s->stopping, __ATOMIC_ACQUIRE)) {
        uint32_t parts = __atomic_load_n(&s->part_count, __ATOMIC_ACQUIRE);
        int64_t mono_ms = tg_mono_ms();
        bool sweep = mono_ms - last_sweep_ms >= (int64_t)s->sweep_interval_ms;
        for (uint32_t i = 0; i < parts; i++) {
            pu_served *e = &s->parts[i];
            if (__atomic_load_n(&e->state, __ATOMIC_ACQUIRE) != PU_PART_READY) {
                continue; /* being restored: nobody else may touch it yet */
            }
            if (!pu_primary_enter(e)) {
                continue; /* a replica changes only by its primary's records */
            }
            publish_partition(s, e, hk);
            if (tick % PU_SAMPLE_EVERY_TICKS == 0) {
                sample_head(s, e, mono_ms);
            }
            if (sweep) {
                (void)pu_sweep(e->p, tg_now_ms(), TG_SWEEP_SCAN_MAX);
            }
            pu_primary_leave(e);
        }
        last_sweep_ms = sweep ? mono_ms : last_sweep_ms;
        tick++;
        nng_msleep(PU_TICK_MS);
    }
    msgpack_sbuffer_destroy(&hk->buf);
    return NULL;
}
