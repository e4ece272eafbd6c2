/*
 * repl.c — a primary streaming its partitions' change records to their
 * backups, and holding each client's reply until the backups applied it
 * (DESIGN.md, "Replication").
 *
 * Links.  A partition's backups are named by repl_backups or by the map
 * (pu_repl_configure).  Each backup gets a link: a thread with its own nng
 * REQ socket dialled to the backup's REP address.  The thread keeps up to
 * REPL_IN_FLIGHT (two) repl_append in flight, each carrying every record
 * published since the one before (up to REPL_BATCH_MAX): the records of all
 * the requests made while a batch travels go together in the next one, so
 * a busy partition sends few large messages and no request waits for a
 * round trip of its own, nor for a whole batch ahead of it.  The backup
 * answers how far it has applied; that is the link's ack.  The backup's
 * contexts may take the two in either order: the later one waits there,
 * briefly, for the earlier (handlers.c).  The replies an ack releases are
 * sent by nng's thread that received it (slot_cb), while the link thread
 * sends the next batch: waking the link thread first would put one more
 * hand-off between the backup and every client (measured: 10-20 % more
 * holds/s with 64 requests in flight).

 * Link states.  PROBING: an empty repl_append asks the backup how far it is.
 * The answer decides: the records after it are still in our ring → send
 * them (delta catch-up: a backup restarted with a stale segment gets only
 * what it missed); the backup has no copy, is ahead of us, or is so far
 * behind that our ring no longer holds what it needs → a state transfer
 * (snapshot.c's part of this file, below), read while we keep selling.
 * FILLING: it catches up; client replies do not wait for it, since it could
 * not yet take over anyway.  IN_SYNC: it applied everything we had when a
 * batch was not full; from then on every client reply waits for its ack.
 * A backup that stops answering stays IN_SYNC: replies wait, and the clients
 * time out, until it answers again or the map drops it (synchronous
 * replication: an acknowledged change is always on every in-sync backup).
 *
 * Vouched.  Every repl_append says whether the link is IN_SYNC, and the
 * backup reports the last one it applied to the manager, which promotes
 * only a backup that says it is in sync.  So a link that leaves IN_SYNC
 * (an error reply: the backup refused, lost its copy, ...) keeps holding
 * replies back until the backup has applied a message that says it is not
 * in sync (a probe, or the begin of a state transfer): until then the
 * backup may still call itself in sync, and must then have every
 * acknowledged change.  A new link starts vouched as well — the backup may
 * still believe what an earlier link told it — unless it comes with a rise
 * of the partition's epoch: a backup forgets it is in sync when its epoch
 * rises (member.c), and the manager promotes only a backup in sync at the
 * map's epoch, so whatever it believes was said at an older one.  That is
 * what lets a primary sell while a backup it was just given refuses
 * everything (a cut link): nothing it could not take over holds replies.
 *
 * Gap repair.  The backup applies in sequence order only; a message that
 * starts past its last applied record is not applied, and its answer (the
 * last applied) makes the link wait for what is in flight and resend from
 * there.  A message whose answer was lost (timeout) is sent again the same
 * way: applying is idempotent (replica.c).
 *
 * Parked replies.  A request that changed a partition with backups reads
 * the partition's log head after its change (pu_handle) and parks its reply
 * with that sequence; whenever a link's ack moves, the partition's
 * `released` mark becomes the smallest ack of its IN_SYNC links, and the
 * parked replies at or below it are sent (none while fenced, below),
 * taken from the front of the list, which is in parking order
 * (release_locked).
 * Stopping or being deposed drops
 * parked replies without sending them (a reply no backup acknowledged is
 * never sent); a dropped reply's context goes back to receiving, or the
 * unit would lose one context for each and, once deposed with all of them
 * parked, answer nothing more.
 *
 * Fencing.  A backup refuses a message stamped with an epoch older than its
 * own (stale_epoch).  That is how a deposed primary learns of its
 * successor, but it also happens to a primary the map keeps: every unit
 * applies a new map on its own, and a backup that applied it first refuses
 * what the primary stamped before it did.  So a refusal does not depose at
 * once; it fences the partition until its own epoch passes the refused
 * one: nothing is released, its changes are refused (handlers.c), and the
 * link probes again every few milliseconds.  The map that raised the
 * backup's epoch either raises the primary's too (the fence lifts and the
 * link goes on at the new epoch: the waiting replies are answered) or
 * names another primary (member.c deposes it).  A fence that no map lifts
 * within REPL_FENCE_MS deposes the partition: the unit hears no map (no
 * manager, or cut off from it) while its backup follows a newer one.  A
 * refusal of a message stamped before the primary's own epoch rose only
 * makes the link probe again at once.
 *
 * Locks: part->lock guards parked, released, the link table and each
 * link's stop flag; a link's counters and state are atomics read by
 * repl_status; everything else of a link belongs to its thread.
 *
 * Sockets are never closed, as in member.c: nng 1.5.2 can hang for good in
 * nng_close on a socket that has redialled a peer that went away, which is
 * exactly what a link to a dead backup is.  A link removed by a new
 * configuration leaves its socket open until the process exits.
 */
#include "server_internal.h"

#include "segment.h"
#include "tixgrid/assert.h"
#include "tixgrid/clock.h"
#include "tixgrid/log.h"

#include <errno.h>
#include <sched.h>
#include <nng/protocol/reqrep0/req.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Records in one repl_append; the wire's bound. */
#define REPL_BATCH_MAX TG_WIRE_LOG_RECORDS_MAX
/* How long one message to a backup may take before it is sent again. */
#define REPL_CALL_TIMEOUT_MS 500u
/* Waits of an idle link: for new records, and for one being written. */
#define REPL_IDLE_WAIT_MS    50u
#define REPL_PENDING_WAIT_US 200u
/* After a refusal (stale epoch, a primary's copy there): wait, then probe. */
#define REPL_BACKOFF_MS 200u
/* A fenced partition (see the top) re-probes this often while it waits for
 * the map, and is deposed when the map has not come after REPL_FENCE_MS. */
#define REPL_FENCE_POLL_MS 5u
#define REPL_FENCE_MS      1000u
/* How long a state transfer waits for records being written at its start. */
#define REPL_SNAPSHOT_SETTLE_MS 2000u

typedef struct {
    pu_log_record records[REPL_BATCH_MAX];
    tg_wire_log_record wire[REPL_BATCH_MAX];
    tg_wire_change seats[TG_WIRE_CHANGES_MAX];
    tg_wire_booking_state bookings[TG_WIRE_RESTORE_BOOKINGS_MAX];
    tg_wire_row rows[TG_ROWS_MAX];
} link_scratch;

/* Batches one link has in flight: while one travels, the records of the
 * requests made meanwhile go in the next, instead of waiting a round trip. */
#define REPL_IN_FLIGHT 2u

struct pu_link;

/* One repl_append in flight: its nng context and AIO (send, then receive). */
typedef struct {
    struct pu_link *link;
    nng_ctx ctx;
    nng_aio *aio;
    bool sending;         /* the AIO carries the request; slot_cb only */
    bool done;            /* the reply (or a failure) is in; under part->lock */
    int result;           /* nng's result; under part->lock */
    uint64_t first, last; /* the records it carries */
    uint64_t head;        /* the log head when they were read */
    uint64_t epoch;       /* the partition's epoch it carries */
    tg_msg *reply;        /* the reply, decoded by slot_cb; under part->lock once done */
    tg_err decoded;       /* how its decoding went */
} link_slot;

typedef struct pu_link {
    pu_repl_part *part;
    char name[TG_PU_NAME_BYTES];
    char url[TG_URL_BYTES];
    nng_socket sock;
    pthread_t thread;
    bool stop;                                        /* under part->lock */
    uint32_t state;                                   /* tg_repl_link_state; atomic */
    uint64_t cursor;                                  /* next sequence to send; link thread */
    uint64_t acked;                                   /* atomic */
    uint64_t records_sent, snapshots, snapshot_items; /* atomic */
    bool refused_logged;
    bool release_due;         /* an ack came in whose replies are not sent yet */
    bool announce;            /* just in sync: tell the backup, even if no record follows */
    bool vouched;             /* the backup may report itself in sync (see the top); atomic */
    uint64_t announced_epoch; /* the epoch of the last announce it took; link thread */
    link_slot slots[REPL_IN_FLIGHT];
    uint32_t oldest, in_flight; /* the slots in flight: a ring; link thread */
    msgpack_sbuffer buf;
    tg_msg msg, reply;
    link_scratch *scratch;
} pu_link;

struct pu_repl_part {
    pu_server *srv;
    pu_served *entry;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    uint32_t link_count;
    pu_link *links[TG_GRID_BACKUPS_MAX];
    /* Parked replies, oldest first (see release_locked). */
    pu_ctx *parked, *parked_tail;
    uint64_t released; /* replies for records up to here may go */
    bool stopping;
    bool deposed; /* another primary has a newer epoch: nothing is released again */
    /* Fenced while the partition's epoch is below fence_until (atomic: the
     * request path reads it without the lock); since fenced_ns. */
    uint64_t fence_until;
    int64_t fenced_ns;
};

/* ---- Parked replies ------------------------------------------------------------ */

static bool fenced(const pu_repl_part *r)
{
    uint64_t epoch = __atomic_load_n(&r->entry->p->hdr->map_epoch, __ATOMIC_ACQUIRE);
    return epoch < __atomic_load_n(&r->fence_until, __ATOMIC_ACQUIRE);
}

/* The mark every IN_SYNC or vouched link acknowledged; UINT64_MAX when
 * there is none (no reply waits for a backup that could not take over). */
static uint64_t release_mark(pu_repl_part *r)
{
    if (r->deposed || fenced(r)) {
        return 0; /* a backup follows a newer map: no ack of ours means anything yet */
    }
    uint64_t mark = UINT64_MAX;
    for (uint32_t i = 0; i < r->link_count; i++) {
        pu_link *l = r->links[i];
        if (__atomic_load_n(&l->state, __ATOMIC_ACQUIRE) == TG_REPL_LINK_IN_SYNC ||
            __atomic_load_n(&l->vouched, __ATOMIC_ACQUIRE)) {
            uint64_t a = __atomic_load_n(&l->acked, __ATOMIC_ACQUIRE);
            mark = a < mark ? a : mark;
        }
    }
    return mark;
}

/* With r->lock held: recomputes the mark and takes the replies it releases
 * out of the parked list.  They are sent after the lock is dropped
 * (send_released): a send may complete on another thread, whose next
 * request may want the lock.
 *
 * The list is in the order the replies were parked, which is the order of
 * their sequences give or take threads that raced to park: only the front
 * is looked at, so an ack costs what it releases, not what is parked (a
 * thousand requests in flight are a thousand parked replies).  A reply
 * parked behind one with a higher sequence waits for the ack that covers
 * both: never released early, at most one ack late. */
static pu_ctx *release_locked(pu_repl_part *r)
{
    r->released = release_mark(r);
    pu_ctx *out = r->parked, *last = NULL;
    for (pu_ctx *c = r->parked; c != NULL && c->park_seq <= r->released; c = c->park_next) {
        last = c;
    }
    if (last == NULL) {
        return NULL;
    }
    r->parked = last->park_next;
    if (r->parked == NULL) {
        r->parked_tail = NULL;
    }
    last->park_next = NULL;
    return out;
}

static void send_released(pu_ctx *c)
{
    while (c != NULL) {
        pu_ctx *next = c->park_next;
        pu_ctx_send(c);
        c = next;
    }
}

/* Drops the replies of a list taken out of the parked list (after the
 * lock is dropped, as send_released). */
static void drop_taken(pu_ctx *c)
{
    while (c != NULL) {
        pu_ctx *next = c->park_next;
        pu_ctx_drop(c);
        c = next;
    }
}

bool pu_repl_park(pu_ctx *c)
{
    pu_repl_part *r = __atomic_load_n(&c->park_entry->repl, __ATOMIC_ACQUIRE);
    pthread_mutex_lock(&r->lock);
    r->released = release_mark(r);
    bool drop = r->stopping || r->deposed;
    bool park = c->park_seq > r->released && !drop;
    if (park) {
        c->park_next = NULL;
        if (r->parked_tail != NULL) {
            r->parked_tail->park_next = c;
        } else {
            r->parked = c;
        }
        r->parked_tail = c;
    }
    pthread_cond_broadcast(&r->wake);
    pthread_mutex_unlock(&r->lock);
    if (drop) {
        pu_ctx_drop(c); /* never acknowledged: never answered */
    }
    return park || drop;
}

/* ---- Talking to a backup ------------------------------------------------------- */

/* Sends l->msg: TG_OK, TG_ETIMEDOUT, or TG_EINVAL (it does not encode). */
static tg_err link_send(pu_link *l)
{
    const char *why = NULL;
    tg_err err = tg_wire_encode(&l->msg, &l->buf, &why);
    if (err != TG_OK) {
        tg_log_error("pu: cannot encode %s for %s: %s", tg_wire_type_name(l->msg.type), l->name,
                     why != NULL ? why : "?");
        return err;
    }
    return nng_send(l->sock, l->buf.data, l->buf.size, 0) == 0 ? TG_OK : TG_ETIMEDOUT;
}

/* Waits for the reply to l->msg into l->reply: TG_OK, the code of an
 * error reply, TG_ETIMEDOUT, or TG_EPROTO. */
static tg_err link_recv(pu_link *l)
{
    const char *why = NULL;
    void *body = NULL;
    size_t len = 0;
    if (nng_recv(l->sock, &body, &len, NNG_FLAG_ALLOC) != 0) {
        return TG_ETIMEDOUT;
    }
    tg_err err = tg_wire_decode(body, len, NULL, &l->reply, &why);
    nng_free(body, len);
    if (err == TG_OK && l->reply.type != tg_wire_reply_type(l->msg.type) &&
        l->reply.type != TG_WIRE_ERROR) {
        err = TG_EPROTO;
    }
    if (err != TG_OK) {
        tg_log_warn("pu: malformed reply from backup %s", l->name);
        return err;
    }
    return l->reply.type == TG_WIRE_ERROR ? (tg_err)l->reply.error.code : TG_OK;
}

static tg_err link_call(pu_link *l)
{
    tg_err err = link_send(l);
    return err == TG_OK ? link_recv(l) : err;
}

static bool link_stopping(pu_link *l)
{
    pthread_mutex_lock(&l->part->lock);
    bool stop = l->stop;
    pthread_mutex_unlock(&l->part->lock);
    return stop;
}

static void sleep_ms(uint32_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static uint64_t part_epoch(const pu_link *l)
{
    pu_partition_info info;
    pu_partition_describe(l->part->entry->p, &info);
    return info.map_epoch;
}

/* Sends the replies the link's last ack released.  The streaming loop
 * calls it right after sending the next batch, so that answering the
 * clients overlaps the next round trip instead of delaying it. */
static void link_release(pu_link *l)
{
    if (!l->release_due) {
        return;
    }
    l->release_due = false;
    pu_repl_part *r = l->part;
    pthread_mutex_lock(&r->lock);
    pu_ctx *released = release_locked(r);
    pthread_mutex_unlock(&r->lock);
    send_released(released);
}

/* Raises l->acked to applied (never lowers it: the callback of a slot and
 * the link thread both raise it). */
static void acked_raise(pu_link *l, uint64_t applied)
{
    uint64_t cur = __atomic_load_n(&l->acked, __ATOMIC_ACQUIRE);
    while (applied > cur && !__atomic_compare_exchange_n(&l->acked, &cur, applied, false,
                                                         __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
    }
}

/* Records the backup's ack; link_release sends what it allows. */
static void link_acked(pu_link *l, uint64_t applied)
{
    acked_raise(l, applied);
    l->release_due = true;
}

static void link_set_state(pu_link *l, uint32_t state)
{
    pu_repl_part *r = l->part;
    pthread_mutex_lock(&r->lock);
    if (__atomic_exchange_n(&l->state, state, __ATOMIC_ACQ_REL) != state) {
        tg_log_info("pu %s: partition %u: backup %s %s", r->srv->name, r->entry->id, l->name,
                    state == TG_REPL_LINK_IN_SYNC   ? "in sync"
                    : state == TG_REPL_LINK_FILLING ? "catching up"
                                                    : "probing");
    }
    pu_ctx *released = release_locked(r);
    pthread_mutex_unlock(&r->lock);
    send_released(released);
}

/* The partition's epoch a message to a backup carries. */
static uint64_t msg_epoch(const pu_link *l)
{
    switch (l->msg.type) {
    case TG_WIRE_REPL_APPEND:
        return l->msg.repl_append.epoch;
    case TG_WIRE_REPL_SNAPSHOT:
        return l->msg.repl_snapshot.epoch;
    default:
        return part_epoch(l); /* partition_create: none; the current one */
    }
}

/* The backup refused a message at `epoch`: it holds a newer one.  Fences
 * the partition until its epoch passes that one (see the top); true when
 * it has been fenced for REPL_FENCE_MS, and is to be deposed. */
static bool fence(pu_link *l, uint64_t epoch)
{
    pu_repl_part *r = l->part;
    int64_t now = tg_mono_ns();
    pthread_mutex_lock(&r->lock);
    bool was = fenced(r);
    if (epoch + 1 > r->fence_until) {
        __atomic_store_n(&r->fence_until, epoch + 1, __ATOMIC_RELEASE);
    }
    bool is = fenced(r);
    if (is && !was) {
        r->fenced_ns = now;
        tg_log_info("pu %s: partition %u: backup %s holds an epoch above %llu: nothing is "
                    "acknowledged until the map that raised it comes",
                    r->srv->name, r->entry->id, l->name, (unsigned long long)epoch);
    }
    bool overdue = is && now - r->fenced_ns >= (int64_t)REPL_FENCE_MS * 1000000;
    pthread_mutex_unlock(&r->lock);
    return overdue;
}

/* Waits (at most REPL_BACKOFF_MS) while the partition is fenced: the map
 * that lifts the fence is usually a few milliseconds behind the backup's. */
static void fence_wait(pu_link *l)
{
    for (uint32_t waited = 0; waited < REPL_BACKOFF_MS && fenced(l->part) && !link_stopping(l);
         waited += REPL_FENCE_POLL_MS) {
        sleep_ms(REPL_FENCE_POLL_MS);
    }
}

/* An error from the backup to a message at `epoch`: what the link does
 * next.  A stale epoch fences the partition (see the top), and deposes it
 * when no map lifted the fence in time; the link then probes again. */
static void link_refused(pu_link *l, tg_err err, uint64_t epoch)
{
    if (err != TG_ESTALE_EPOCH) {
        if (!l->refused_logged) {
            tg_log_warn("pu %s: partition %u: backup %s refused: %s", l->part->srv->name,
                        l->part->entry->id, l->name, tg_errname(err));
            l->refused_logged = true;
        }
        sleep_ms(REPL_BACKOFF_MS);
    } else if (fence(l, epoch)) { /* fence and depose say what they do */
        pu_repl_depose(l->part->srv, l->part->entry);
        sleep_ms(REPL_BACKOFF_MS);
    } else {
        fence_wait(l);
    }
}

/* ---- State transfer ------------------------------------------------------------ */

/* Waits (bounded) until every record up to seq is published: a record is
 * published after the change it describes, so the seats and bookings read
 * afterwards include every change up to seq. */
static bool log_settled(pu_link *l, uint64_t seq)
{
    pu_partition *p = l->part->entry->p;
    pu_partition_info info;
    pu_partition_describe(p, &info);
    uint64_t from = info.log_persisted + 1;
    int64_t deadline = tg_mono_ns() + (int64_t)REPL_SNAPSHOT_SETTLE_MS * 1000000;
    while (from <= seq && tg_mono_ns() < deadline) {
        uint32_t want =
            seq - from + 1 < REPL_BATCH_MAX ? (uint32_t)(seq - from + 1) : REPL_BATCH_MAX;
        uint32_t got = pu_log_read(p, from, l->scratch->records, want);
        from += got;
        if (got < want) {
            pu_partition_describe(p, &info);
            from = from > info.log_persisted + 1 ? from : info.log_persisted + 1;
            sleep_ms(1);
        }
    }
    return from > seq;
}

static void create_message(pu_link *l, pu_partition *p)
{
    pu_partition_info info;
    pu_partition_describe(p, &info);
    tg_msg *m = &l->msg;
    memset(m, 0, sizeof(*m));
    m->type = TG_WIRE_PARTITION_CREATE;
    __typeof__(m->partition_create) *q = &m->partition_create;
    *q = (__typeof__(*q)){.partition_id = info.partition_id,
                          .event_id = info.event_id,
                          .hold_ttl_ms = info.hold_ttl_ms,
                          .payment_window_ms = info.payment_window_ms,
                          .booking_capacity = info.booking_capacity,
                          .log_records = info.log_records,
                          .section_count = info.section_count,
                          .row_count = info.row_count,
                          .rows = l->scratch->rows};
    for (uint32_t i = 0; i < info.section_count; i++) {
        pu_section_info s;
        (void)pu_section_get(p, i, &s);
        memcpy(q->sections[i].name, s.name, TG_NAME_BYTES);
        memcpy(q->sections[i].currency, s.currency, TG_CURRENCY_BYTES);
        q->sections[i].price_minor = s.price_minor;
        q->sections[i].row_count = s.row_count;
    }
    for (uint32_t i = 0; i < info.row_count; i++) {
        pu_row_info r;
        (void)pu_row_get(p, i, &r);
        memcpy(l->scratch->rows[i].name, r.name, TG_NAME_BYTES);
        l->scratch->rows[i].seat_count = r.seat_count;
    }
}

static tg_err snapshot_send(pu_link *l, uint32_t phase, uint64_t base, uint32_t bookings,
                            uint32_t seats)
{
    tg_msg *m = &l->msg;
    memset(m, 0, sizeof(*m));
    m->type = TG_WIRE_REPL_SNAPSHOT;
    m->repl_snapshot = (__typeof__(m->repl_snapshot)){.partition_id = l->part->entry->id,
                                                      .phase = phase,
                                                      .epoch = part_epoch(l),
                                                      .base_seq = base,
                                                      .booking_count = bookings,
                                                      .bookings = l->scratch->bookings,
                                                      .seat_count = seats,
                                                      .seats = l->scratch->seats};
    __atomic_fetch_add(&l->snapshot_items, bookings + seats, __ATOMIC_RELAXED);
    return link_call(l);
}

/* Seats first, then bookings: a booking read after its seats is never older
 * than them, and the tail after the base repairs whatever moved meanwhile
 * (replica.c). */
static tg_err snapshot_seats(pu_link *l, pu_partition *p, uint64_t base)
{
    uint32_t seat_count = p->hdr->seat_count, n = 0;
    tg_err err = TG_OK;
    for (uint32_t seat = 0; seat < seat_count && err == TG_OK; seat++) {
        l->scratch->seats[n++] = (tg_wire_change){.seat_id = seat, .word = pu_seat_load(p, seat)};
        if (n == TG_WIRE_CHANGES_MAX || seat + 1 == seat_count) {
            err = snapshot_send(l, TG_WIRE_SNAPSHOT_DATA, base, 0, n);
            n = 0;
        }
    }
    return err;
}

static tg_err snapshot_bookings(pu_link *l, pu_partition *p, uint64_t base)
{
    uint32_t capacity = p->hdr->booking_capacity, n = 0;
    tg_err err = TG_OK;
    for (uint32_t i = 0; i < capacity && err == TG_OK; i++) {
        uint32_t seq = __atomic_load_n(&p->bookings[i].seq, __ATOMIC_ACQUIRE);
        pu_booking_info b;
        if (seq != 0 && pu_booking_get(p, tg_booking_id_make(p->hdr->partition_id, seq),
                                       PU_USER_SYSTEM, &b) == TG_OK) {
            l->scratch->bookings[n++] = (tg_wire_booking_state){.booking_id = b.id,
                                                                .user_id = b.user_id,
                                                                .status = (uint32_t)b.status,
                                                                .version = b.version,
                                                                .created_ms = b.created_ms,
                                                                .deadline_ms = b.deadline_ms};
        }
        if (n == TG_WIRE_RESTORE_BOOKINGS_MAX || (i + 1 == capacity && n > 0)) {
            err = snapshot_send(l, TG_WIRE_SNAPSHOT_DATA, base, n, 0);
            n = 0;
        }
    }
    return err;
}

/* A full copy: layout, begin at base, seats, bookings, end.  The link then
 * sends the records after base.
 *
 * Why base is the persisted mark, not the head: the copy's ring must hold
 * every record the persister has not drained, since the copy may become
 * the primary (a failover, or a move) before the drain catches up, and the
 * drain then reads the log from its offset on the new primary.  A copy
 * whose log began at the head would miss the records in between, and the
 * drain would skip them as a gap: sales the grid acknowledged but
 * PostgreSQL never got.  The seats and bookings are read after the head
 * settled, so they already hold those records' changes; sending the
 * records again costs their bytes only, as replica.c applies a record no
 * newer than the copy as nothing but publishes it in the ring. */
static tg_err link_snapshot(pu_link *l)
{
    pu_partition *p = l->part->entry->p;
    uint64_t head = __atomic_load_n(&p->hdr->log_head, __ATOMIC_ACQUIRE);
    if (!log_settled(l, head)) {
        return TG_EBUSY;
    }
    uint64_t persisted = __atomic_load_n(&p->hdr->log_persisted, __ATOMIC_ACQUIRE);
    uint64_t base = persisted < head ? persisted : head;
    __atomic_fetch_add(&l->snapshots, 1, __ATOMIC_RELAXED);
    create_message(l, p);
    tg_err err = link_call(l);
    if (err == TG_EEXIST) {
        err = TG_OK; /* it has the partition: begin decides whether it may be overwritten */
    }
    if (err == TG_OK) {
        err = snapshot_send(l, TG_WIRE_SNAPSHOT_BEGIN, base, 0, 0);
    }
    if (err == TG_OK) {
        __atomic_store_n(&l->vouched, false, __ATOMIC_RELEASE); /* begin cleared its flag */
    }
    if (err == TG_OK) {
        err = snapshot_seats(l, p, base);
    }
    if (err == TG_OK) {
        err = snapshot_bookings(l, p, base);
    }
    if (err == TG_OK) {
        err = snapshot_send(l, TG_WIRE_SNAPSHOT_END, base, 0, 0);
    }
    if (err == TG_OK) {
        l->cursor = base + 1;
        __atomic_store_n(&l->acked, base, __ATOMIC_RELEASE); /* not in sync: holds nothing */
        tg_log_info("pu %s: partition %u: state transfer to %s done at %llu", l->part->srv->name,
                    l->part->entry->id, l->name, (unsigned long long)base);
    }
    return err;
}

/* ---- The link's loop ------------------------------------------------------------- */

static void append_message(pu_link *l, uint32_t n)
{
    pu_partition_info info;
    pu_partition_describe(l->part->entry->p, &info);
    for (uint32_t i = 0; i < n; i++) {
        const pu_log_record *r = &l->scratch->records[i];
        l->scratch->wire[i] = (tg_wire_log_record){.seq = r->seq,
                                                   .kind = r->kind,
                                                   .ident = r->ident,
                                                   .status = r->status,
                                                   .version = r->version,
                                                   .word = r->word,
                                                   .deadline_ms = r->deadline_ms,
                                                   .created_ms = r->created_ms};
    }
    bool in_sync = __atomic_load_n(&l->state, __ATOMIC_ACQUIRE) == TG_REPL_LINK_IN_SYNC;
    if (in_sync) {
        __atomic_store_n(&l->vouched, true, __ATOMIC_RELEASE); /* before the backup can hear it */
    }
    memset(&l->msg, 0, sizeof(l->msg));
    l->msg.type = TG_WIRE_REPL_APPEND;
    l->msg.repl_append = (__typeof__(l->msg.repl_append)){
        .partition_id = info.partition_id,
        .epoch = info.map_epoch,
        .persisted = info.log_persisted <= info.log_head ? info.log_persisted : info.log_head,
        .record_count = n,
        .records = l->scratch->wire,
        .in_sync = in_sync};
}

/* True when the ring no longer holds the record at seq. */
static bool cursor_lost(const pu_partition *p, uint64_t seq)
{
    uint64_t head = __atomic_load_n(&p->hdr->log_head, __ATOMIC_ACQUIRE);
    return head >= seq + p->hdr->log_records;
}

/* A full copy; on failure the link probes again (after a pause, unless
 * the backup just did not answer). */
static uint32_t link_fill(pu_link *l)
{
    tg_err err = link_snapshot(l);
    if (err == TG_OK) {
        return TG_REPL_LINK_FILLING;
    }
    if (err != TG_ETIMEDOUT) {
        link_refused(l, err, msg_epoch(l));
    }
    return TG_REPL_LINK_PROBING;
}

/* Asks the backup how far it is; decides between a delta and a full copy. */
static uint32_t link_probe(pu_link *l)
{
    append_message(l, 0);
    tg_err err = link_call(l);
    pu_partition *p = l->part->entry->p;
    if (err == TG_ETIMEDOUT) {
        return TG_REPL_LINK_PROBING;
    }
    if (err == TG_EUNAVAILABLE || err == TG_EPARTITION_STATE) {
        return link_fill(l); /* no copy there, or one being filled */
    }
    if (err != TG_OK) {
        link_refused(l, err, msg_epoch(l));
        return TG_REPL_LINK_PROBING;
    }
    __atomic_store_n(&l->vouched, false, __ATOMIC_RELEASE); /* it applied "not in sync" */
    uint64_t applied = l->reply.repl_append_ok.applied_seq;
    uint64_t head = __atomic_load_n(&p->hdr->log_head, __ATOMIC_ACQUIRE);
    if (applied > head || cursor_lost(p, applied + 1)) {
        return link_fill(l); /* ahead of us (another history), or too far behind */
    }
    l->cursor = applied + 1;
    __atomic_store_n(&l->acked, applied, __ATOMIC_RELEASE); /* where a resend starts */
    return TG_REPL_LINK_FILLING;
}

/* ---- Streaming: two batches in flight ------------------------------------------- */

/* Decodes a slot's reply into s->reply (nng's thread). */
static void slot_decode(link_slot *s)
{
    nng_msg *msg = nng_aio_get_msg(s->aio);
    s->decoded = tg_wire_decode(nng_msg_body(msg), nng_msg_len(msg), NULL, s->reply, NULL);
    nng_msg_free(msg);
    if (s->decoded == TG_OK && s->reply->type != TG_WIRE_REPL_APPEND_OK &&
        s->reply->type != TG_WIRE_ERROR) {
        s->decoded = TG_EPROTO;
    }
}

/* Completion of a slot's send, then of its receive (nng's thread).  An ack
 * releases the replies it covers here and now, on nng's thread: waking the
 * link thread first would put one more hand-off between the backup's ack
 * and every client's reply.  The link thread still takes the reply for the
 * rest (states, gaps, errors: link_ack). */
static void slot_cb(void *arg)
{
    link_slot *s = arg;
    int rv = nng_aio_result(s->aio);
    if (s->sending) {
        s->sending = false;
        if (rv == 0) {
            nng_ctx_recv(s->ctx, s->aio);
            return;
        }
        nng_msg_free(nng_aio_get_msg(s->aio)); /* not sent: still ours */
    } else if (rv == 0) {
        slot_decode(s);
    }
    pu_repl_part *r = s->link->part;
    pu_ctx *released = NULL;
    pthread_mutex_lock(&r->lock);
    if (rv == 0 && s->decoded == TG_OK && s->reply->type == TG_WIRE_REPL_APPEND_OK) {
        acked_raise(s->link, s->reply->repl_append_ok.applied_seq);
        released = release_locked(r);
    }
    s->result = rv;
    s->done = true;
    pthread_cond_broadcast(&r->wake);
    pthread_mutex_unlock(&r->lock);
    send_released(released);
}

static bool slot_done(link_slot *s)
{
    pthread_mutex_lock(&s->link->part->lock);
    bool done = s->done;
    pthread_mutex_unlock(&s->link->part->lock);
    return done;
}

/* Waits on the partition's wake-up (new records, a completed slot, a stop)
 * at most REPL_IDLE_WAIT_MS, unless `ready` already holds. */
static void link_wait_for(pu_link *l, bool (*ready)(pu_link *))
{
    link_release(l);
    pu_repl_part *r = l->part;
    pthread_mutex_lock(&r->lock);
    if (!ready(l)) {
        struct timespec until = tg_realtime_after_ms(REPL_IDLE_WAIT_MS);
        pthread_cond_timedwait(&r->wake, &r->lock, &until);
    }
    pthread_mutex_unlock(&r->lock);
}

/* With the partition's lock held: is there anything for the loop to do? */
static bool work_ready(pu_link *l)
{
    const pu_partition *p = l->part->entry->p;
    link_slot *oldest = &l->slots[l->oldest];
    bool room = l->in_flight < REPL_IN_FLIGHT;
    bool records = __atomic_load_n(&p->hdr->log_head, __ATOMIC_ACQUIRE) >= l->cursor;
    return (room && records) || (l->in_flight > 0 && oldest->done);
}

/* Sends the records from the cursor on in a free slot; false if none. */
static bool slot_send(pu_link *l)
{
    pu_partition *p = l->part->entry->p;
    uint64_t head = __atomic_load_n(&p->hdr->log_head, __ATOMIC_ACQUIRE);
    uint32_t n = pu_log_read(p, l->cursor, l->scratch->records, REPL_BATCH_MAX);
    nng_msg *msg = NULL;
    const char *why = NULL;
    if (n == 0) {
        return false;
    }
    append_message(l, n);
    if (tg_wire_encode(&l->msg, &l->buf, &why) != TG_OK || nng_msg_alloc(&msg, 0) != 0 ||
        nng_msg_append(msg, l->buf.data, l->buf.size) != 0) {
        tg_log_error("pu: cannot make a repl_append for %s: %s", l->name, why ? why : "no memory");
        nng_msg_free(msg);
        return false;
    }
    link_slot *s = &l->slots[(l->oldest + l->in_flight) % REPL_IN_FLIGHT];
    s->first = l->cursor;
    s->last = l->scratch->records[n - 1].seq;
    s->head = head;
    s->epoch = l->msg.repl_append.epoch;
    s->done = false;
    s->sending = true;
    nng_aio_set_msg(s->aio, msg);
    nng_ctx_send(s->ctx, s->aio);
    l->in_flight++;
    l->cursor = s->last + 1;
    __atomic_fetch_add(&l->records_sent, n, __ATOMIC_RELAXED);
    return true;
}

/* The oldest slot's reply: TG_OK with l->reply, an error code, or
 * TG_ETIMEDOUT. */
static tg_err slot_take(pu_link *l, link_slot *s)
{
    l->oldest = (l->oldest + 1) % REPL_IN_FLIGHT;
    l->in_flight--;
    if (s->result != 0) {
        return TG_ETIMEDOUT;
    }
    if (s->decoded != TG_OK) {
        tg_log_warn("pu: malformed reply from backup %s", l->name);
        return s->decoded;
    }
    /* Only what the link reads: a whole tg_msg is 13 kB, copied per ack. */
    l->reply.type = s->reply->type;
    if (s->reply->type == TG_WIRE_ERROR) {
        l->reply.error = s->reply->error;
        return (tg_err)l->reply.error.code;
    }
    l->reply.repl_append_ok = s->reply->repl_append_ok;
    return TG_OK;
}

static bool oldest_done(pu_link *l)
{
    return l->slots[l->oldest].done;
}

/* Waits for every slot in flight and forgets their replies (after an
 * error, a timeout or a gap: the cursor then goes back to the last ack). */
static void link_drain(pu_link *l)
{
    while (l->in_flight > 0) {
        link_slot *s = &l->slots[l->oldest];
        while (!slot_done(s)) {
            link_wait_for(l, oldest_done);
        }
        tg_err err = slot_take(l, s);
        if (err == TG_OK) {
            link_acked(l, l->reply.repl_append_ok.applied_seq); /* raises only */
        }
    }
    l->cursor = __atomic_load_n(&l->acked, __ATOMIC_ACQUIRE) + 1;
}

/* Handles the oldest slot's reply; returns the next state. */
static uint32_t link_ack(pu_link *l, uint32_t state)
{
    link_slot *s = &l->slots[l->oldest];
    uint64_t epoch = s->epoch;
    tg_err err = slot_take(l, s);
    if (err != TG_OK) {
        link_drain(l); /* sent again from the last ack */
        if (err != TG_ETIMEDOUT) {
            link_refused(l, err, epoch);
            return TG_REPL_LINK_PROBING;
        }
        return state;
    }
    l->refused_logged = false;
    uint64_t applied = l->reply.repl_append_ok.applied_seq;
    if (applied > __atomic_load_n(&l->acked, __ATOMIC_ACQUIRE)) {
        link_acked(l, applied);
    }
    if (applied < s->last) {
        link_drain(l); /* a gap or a short apply: resend from the backup's last */
    }
    return applied >= s->head ? TG_REPL_LINK_IN_SYNC : state;
}

/* An empty repl_append that tells a backup it is in sync (it reports that
 * to the manager, which promotes only an in-sync backup): the batches
 * carry it too, but an idle partition sends none. */
static uint32_t link_announce(pu_link *l, uint32_t state)
{
    append_message(l, 0);
    tg_err err = link_call(l);
    l->announce = err != TG_OK;
    if (err == TG_OK) {
        l->announced_epoch = l->msg.repl_append.epoch;
    }
    if (err != TG_OK && err != TG_ETIMEDOUT) {
        link_refused(l, err, msg_epoch(l));
        return TG_REPL_LINK_PROBING;
    }
    return state;
}

/* In sync, but the backup has not been told so at the partition's epoch:
 * a backup forgets it is in sync when the map raises its epoch (member.c),
 * since it cannot tell whether it missed records while the map did not
 * name it. */
static bool epoch_moved(const pu_link *l, uint32_t state)
{
    uint64_t epoch = __atomic_load_n(&l->part->entry->p->hdr->map_epoch, __ATOMIC_ACQUIRE);
    return state == TG_REPL_LINK_IN_SYNC && epoch != l->announced_epoch;
}

/* One step of streaming: send a batch if a slot is free and records are
 * there, else take the oldest reply, else wait.  A link is in sync once an
 * ack covers the head it saw before reading its batch. */
static uint32_t link_stream(pu_link *l, uint32_t state)
{
    pu_partition *p = l->part->entry->p;
    if (l->in_flight == 0 && cursor_lost(p, l->cursor)) {
        return link_fill(l);
    }
    if (l->in_flight == 0 && (l->announce || epoch_moved(l, state))) {
        return link_announce(l, state);
    }
    if (l->in_flight < REPL_IN_FLIGHT && slot_send(l)) {
        link_release(l); /* the last ack's replies, while this batch travels */
        return state;
    }
    if (l->in_flight > 0 && slot_done(&l->slots[l->oldest])) {
        return link_ack(l, state);
    }
    uint64_t head = __atomic_load_n(&p->hdr->log_head, __ATOMIC_ACQUIRE);
    bool caught_up = l->in_flight == 0 && l->cursor > head;
    link_wait_for(l, work_ready);
    if (l->in_flight == 0 && !caught_up && head >= l->cursor) {
        sched_yield(); /* the record at the cursor is being written */
    }
    return caught_up ? TG_REPL_LINK_IN_SYNC : state;
}

static void *link_main(void *arg)
{
    pu_link *l = arg;
    uint32_t state = TG_REPL_LINK_PROBING;
    while (!link_stopping(l)) {
        uint32_t next = state == TG_REPL_LINK_PROBING ? link_probe(l) : link_stream(l, state);
        if (next == TG_REPL_LINK_PROBING) {
            link_drain(l);
        }
        if (next != state) {
            link_set_state(l, next);
            l->announce = next == TG_REPL_LINK_IN_SYNC;
        }
        if (next == TG_REPL_LINK_PROBING && state == TG_REPL_LINK_PROBING) {
            sleep_ms(REPL_IDLE_WAIT_MS); /* unreachable: do not spin */
        }
        state = next;
    }
    link_drain(l);
    return NULL;
}

/* ---- Configuration ------------------------------------------------------------- */

static tg_err link_open(pu_link *l)
{
    int rv = nng_req0_open(&l->sock);
    if (rv != 0) {
        return TG_ENOMEM;
    }
    /* Never resend at the nng level: the link resends itself, from where the
     * backup says it is. */
    nng_socket_set_ms(l->sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
    nng_socket_set_ms(l->sock, NNG_OPT_SENDTIMEO, REPL_CALL_TIMEOUT_MS);
    nng_socket_set_ms(l->sock, NNG_OPT_RECVTIMEO, REPL_CALL_TIMEOUT_MS);
    nng_socket_set_ms(l->sock, NNG_OPT_RECONNMINT, 20);
    nng_socket_set_ms(l->sock, NNG_OPT_RECONNMAXT, 250);
    nng_socket_set_size(l->sock, NNG_OPT_RECVMAXSZ, TG_WIRE_MESSAGE_BYTES_MAX + 4096u);
    for (uint32_t i = 0; i < REPL_IN_FLIGHT; i++) {
        link_slot *s = &l->slots[i];
        s->link = l;
        s->reply = malloc(sizeof(*s->reply));
        if (s->reply == NULL || nng_aio_alloc(&s->aio, slot_cb, s) != 0 ||
            nng_ctx_open(&s->ctx, l->sock) != 0) {
            return TG_ENOMEM;
        }
        nng_aio_set_timeout(s->aio, REPL_CALL_TIMEOUT_MS);
    }
    rv = nng_dial(l->sock, l->url, NULL, NNG_FLAG_NONBLOCK);
    if (rv != 0) {
        tg_log_error("pu: cannot dial backup %s at %s: %s", l->name, l->url, nng_strerror(rv));
        return TG_EINVAL;
    }
    return TG_OK;
}

/* Frees what link_open allocated (the socket stays: see the top). */
static void link_free(pu_link *l)
{
    for (uint32_t i = 0; i < REPL_IN_FLIGHT; i++) {
        if (l->slots[i].aio != NULL) {
            nng_aio_free(l->slots[i].aio); /* waits for a callback still running */
        }
        free(l->slots[i].reply);
    }
    msgpack_sbuffer_destroy(&l->buf);
    free(l->scratch);
    free(l);
}

static pu_link *link_start(pu_repl_part *r, const tg_wire_backup *b, bool vouched)
{
    pu_link *l = calloc(1, sizeof(*l));
    link_scratch *scratch = malloc(sizeof(*scratch));
    if (l == NULL || scratch == NULL) {
        free(l);
        free(scratch);
        return NULL;
    }
    l->part = r;
    l->scratch = scratch;
    l->vouched = vouched; /* see the top */
    snprintf(l->name, sizeof(l->name), "%s", b->name);
    snprintf(l->url, sizeof(l->url), "%s", b->rep_url);
    msgpack_sbuffer_init(&l->buf);
    if (link_open(l) != TG_OK || pthread_create(&l->thread, NULL, link_main, l) != 0) {
        link_free(l);
        return NULL;
    }
    return l;
}

static void link_stop_join(pu_link *l)
{
    pthread_mutex_lock(&l->part->lock);
    l->stop = true;
    pthread_cond_broadcast(&l->part->wake);
    pthread_mutex_unlock(&l->part->lock);
    pthread_join(l->thread, NULL);
    link_free(l);
}

static pu_repl_part *part_get(pu_server *s, pu_served *e)
{
    pu_repl_part *r = __atomic_load_n(&e->repl, __ATOMIC_ACQUIRE);
    if (r != NULL) {
        return r;
    }
    pthread_mutex_lock(&s->table_lock);
    r = e->repl;
    if (r == NULL && (r = calloc(1, sizeof(*r))) != NULL) {
        r->srv = s;
        r->entry = e;
        pthread_mutex_init(&r->lock, NULL);
        pthread_cond_init(&r->wake, NULL);
        __atomic_store_n(&e->repl, r, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&s->table_lock);
    return r;
}

static bool named(const tg_wire_backup *backups, uint32_t n, const pu_link *l)
{
    for (uint32_t i = 0; i < n; i++) {
        if (strcmp(backups[i].name, l->name) == 0 && strcmp(backups[i].rep_url, l->url) == 0) {
            return true;
        }
    }
    return false;
}

/* Takes the links no longer named out of the table (under the lock). */
static uint32_t links_unnamed(pu_repl_part *r, const tg_wire_backup *b, uint32_t n, pu_link **gone)
{
    uint32_t kept = 0, dropped = 0;
    for (uint32_t i = 0; i < r->link_count; i++) {
        if (named(b, n, r->links[i])) {
            r->links[kept++] = r->links[i];
        } else {
            gone[dropped++] = r->links[i];
        }
    }
    r->link_count = kept;
    return dropped;
}

static bool linked(const pu_repl_part *r, const tg_wire_backup *b)
{
    for (uint32_t i = 0; i < r->link_count; i++) {
        if (strcmp(r->links[i]->name, b->name) == 0 && strcmp(r->links[i]->url, b->rep_url) == 0) {
            return true;
        }
    }
    return false;
}

tg_err pu_repl_configure(pu_server *s, pu_served *e, const tg_wire_backup *backups, uint32_t n,
                         bool epoch_rose)
{
    TG_ASSERT(n <= TG_GRID_BACKUPS_MAX);
    if (n == 0 && __atomic_load_n(&e->repl, __ATOMIC_ACQUIRE) == NULL) {
        return TG_OK;
    }
    pu_repl_part *r = part_get(s, e);
    if (r == NULL) {
        return TG_ENOMEM;
    }
    pu_link *gone[TG_GRID_BACKUPS_MAX];
    pthread_mutex_lock(&r->lock);
    uint32_t dropped = links_unnamed(r, backups, n, gone);
    pu_ctx *released = release_locked(r); /* a dropped backup holds no reply back */
    pthread_mutex_unlock(&r->lock);
    send_released(released);
    for (uint32_t i = 0; i < dropped; i++) {
        tg_log_info("pu %s: partition %u: %s is no longer a backup", s->name, e->id, gone[i]->name);
        link_stop_join(gone[i]);
    }
    tg_err err = TG_OK;
    for (uint32_t i = 0; i < n && err == TG_OK; i++) {
        if (strcmp(backups[i].name, s->name) == 0) {
            err = TG_EINVAL; /* a unit is never its own backup */
        } else if (!linked(r, &backups[i])) {
            pu_link *l = link_start(r, &backups[i], !epoch_rose);
            err = l == NULL ? TG_ENOMEM : TG_OK;
            pthread_mutex_lock(&r->lock);
            if (l != NULL) {
                r->links[r->link_count++] = l;
            }
            pthread_mutex_unlock(&r->lock);
        }
    }
    return err;
}

/* ---- Status and stopping ----------------------------------------------------------- */

bool pu_repl_fenced(pu_served *e)
{
    pu_repl_part *r = __atomic_load_n(&e->repl, __ATOMIC_ACQUIRE);
    return r != NULL && fenced(r);
}

uint64_t pu_repl_readable(pu_served *e)
{
    pu_repl_part *r = __atomic_load_n(&e->repl, __ATOMIC_ACQUIRE);
    if (r == NULL) {
        return UINT64_MAX;
    }
    pthread_mutex_lock(&r->lock);
    uint64_t mark = release_mark(r);
    pthread_mutex_unlock(&r->lock);
    return mark;
}

void pu_repl_status(pu_served *e, tg_msg *rep)
{
    pu_repl_part *r = __atomic_load_n(&e->repl, __ATOMIC_ACQUIRE);
    __typeof__(rep->repl_status_ok) *st = &rep->repl_status_ok;
    if (r == NULL) {
        return;
    }
    pthread_mutex_lock(&r->lock);
    uint64_t mark = release_mark(r);
    st->acked_seq = mark < st->log_head ? mark : st->log_head;
    st->link_count = r->link_count;
    for (uint32_t i = 0; i < r->link_count; i++) {
        const pu_link *l = r->links[i];
        tg_wire_repl_link *w = &st->links[i];
        snprintf(w->name, sizeof(w->name), "%s", l->name);
        w->state = __atomic_load_n(&l->state, __ATOMIC_ACQUIRE);
        w->acked_seq = __atomic_load_n(&l->acked, __ATOMIC_ACQUIRE);
        w->records_sent = __atomic_load_n(&l->records_sent, __ATOMIC_RELAXED);
        w->snapshots = __atomic_load_n(&l->snapshots, __ATOMIC_RELAXED);
        w->snapshot_items = __atomic_load_n(&l->snapshot_items, __ATOMIC_RELAXED);
    }
    pthread_mutex_unlock(&r->lock);
}

/* Takes every parked reply out, to be dropped once the lock is released
 * (drop_taken): it was never acknowledged. */
static pu_ctx *take_parked_locked(pu_repl_part *r)
{
    pu_ctx *taken = r->parked;
    r->parked = NULL;
    r->parked_tail = NULL;
    return taken;
}

bool pu_repl_promote(pu_server *s, pu_served *e, uint64_t epoch)
{
    pthread_mutex_lock(&e->apply_lock);
    if (__atomic_load_n(&e->state, __ATOMIC_ACQUIRE) != PU_PART_READY) {
        pthread_mutex_unlock(&e->apply_lock); /* a state transfer stores it under this lock */
        return false;
    }
    uint64_t now = pu_partition_raise_epoch(e->p, epoch);
    pu_partition_set_replica(e->p, false);
    pu_partition_set_refill(e->p, false); /* a deposed copy named primary again: its own */
    __atomic_store_n(&e->in_sync, false, __ATOMIC_RELEASE);
    __atomic_store_n(&e->role, PU_ROLE_PRIMARY, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&e->apply_lock);
    pu_repl_part *r = __atomic_load_n(&e->repl, __ATOMIC_ACQUIRE);
    if (r != NULL) {
        pthread_mutex_lock(&r->lock);
        r->deposed = false;
        pthread_mutex_unlock(&r->lock);
    }
    pu_partition_info info;
    pu_partition_describe(e->p, &info);
    tg_log_info("pu %s: partition %u promoted to primary at epoch %llu (last applied %llu)",
                s->name, e->id, (unsigned long long)now, (unsigned long long)info.log_head);
    return true;
}

void pu_repl_depose(pu_server *s, pu_served *e)
{
    pu_repl_part *r = __atomic_load_n(&e->repl, __ATOMIC_ACQUIRE);
    if (r != NULL) {
        pthread_mutex_lock(&r->lock);
        r->deposed = true;
        pu_ctx *taken = take_parked_locked(r);
        pthread_mutex_unlock(&r->lock);
        drop_taken(taken);
    }
    /* Sequentially consistent: primary work reads it after entering
     * (server_internal.h). */
    if (__atomic_exchange_n(&e->role, PU_ROLE_BACKUP, __ATOMIC_SEQ_CST) == PU_ROLE_BACKUP) {
        return;
    }
    pthread_mutex_lock(&e->apply_lock);
    pu_partition_set_replica(e->p, true);
    pu_partition_set_refill(e->p, true); /* a backup again only by a state transfer */
    __atomic_store_n(&e->in_sync, false, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&e->apply_lock);
    tg_log_warn("pu %s: partition %u: deposed (a newer primary exists): its unacknowledged "
                "replies are dropped, it serves reads only, and a state transfer may make it "
                "a backup again",
                s->name, e->id);
}

void pu_repl_stop(pu_server *s)
{
    uint32_t parts = __atomic_load_n(&s->part_count, __ATOMIC_ACQUIRE);
    for (uint32_t i = 0; i < parts; i++) {
        pu_repl_part *r = __atomic_load_n(&s->parts[i].repl, __ATOMIC_ACQUIRE);
        if (r == NULL) {
            continue;
        }
        pthread_mutex_lock(&r->lock);
        r->stopping = true;
        pu_ctx *taken = take_parked_locked(r); /* before the links go: none may release it */
        uint32_t n = r->link_count;
        pu_link *links[TG_GRID_BACKUPS_MAX];
        memcpy(links, r->links, sizeof(links[0]) * n);
        r->link_count = 0;
        pthread_mutex_unlock(&r->lock);
        drop_taken(taken);
        for (uint32_t k = 0; k < n; k++) {
            link_stop_join(links[k]);
        }
    }
}

void pu_repl_free(pu_server *s)
{
    for (uint32_t i = 0; i < s->part_count; i++) {
        pu_repl_part *r = s->parts[i].repl;
        if (r != NULL) {
            pthread_mutex_destroy(&r->lock);
            pthread_cond_destroy(&r->wake);
            free(r);
            s->parts[i].repl = NULL;
        }
    }
}
