/*
 * gateway_failover_test.c — routing under change: the gateway and the drain
 * follow the map tixgrid-manager publishes while a partition's primary dies
 * (gwh.h with a manager; real units, PostgreSQL, drain, gateway).
 *
 * Holds go over HTTP, one at a time, alternately on the demo concert
 * (partition 1) and the hall (partition 3), each on a unit of its own:
 *
 *   - a primary without a backup killed: once the manager declares it dead,
 *     its partition is refused at once (503 partition_unavailable with
 *     Retry-After, answered well inside the grid timeout), the other
 *     partition never fails, and when the unit is back (same name, its
 *     segments re-attached) the partition sells again;
 *
 *   - a primary with a backup killed: the backup is promoted, every refusal
 *     of the affected partition carries Retry-After and they stop within the
 *     failover window, which is measured and printed (the kill to the first
 *     hold acknowledged again); the other partition never fails.
 *
 *   - a partition whose primary dies while nothing sells: its promoted
 *     backup is told what PostgreSQL holds without a record after the move;
 *
 *   - a unit added (tixgridctl add-pu) gets a partition moved onto it, and a
 *     unit drained (tixgridctl remove-pu) has its partitions moved away and
 *     then stops by itself, both while holds go on: every refusal carries
 *     Retry-After and refusals last no longer than the failover bound.
 *
 * Each ends with the grid and PostgreSQL agreeing (after the drain caught
 * up) on every acknowledged hold and on the count of held seats.  The
 * gateway's grid timeout is shortened so that a request caught by the kill
 * costs little of the window.
 */
#include "gwh.h"

#include <criterion/criterion.h>

#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
#include <stdio.h>
#include <string.h>

TestSuite(gateway_failover, .fini = gwh_fini_all, .timeout = 120);

#define PER_BOOKING       4u    /* seats held in one booking before the next */
#define ACKED_MAX         8000u /* acknowledged holds one seller remembers */
/* The gateway's grid timeout: short, so that a request caught by a kill
 * costs little of the window, yet not so short that the other partition,
 * whose unit may be taking in a state transfer of the failed one's new
 * backup, times out under a sanitizer (ASan CI: 400 ms did). */
#define GRID_TIMEOUT_MS   "1000"
#define PLACE_TIMEOUT_MS  15000 /* backups placed and in sync */
#define DEAD_WATCH_MS     8000  /* the kill to the first immediate refusal */
#define REFUSED_FAST_MS   200   /* an immediate refusal: well inside the grid timeout */
#define FAILOVER_BOUND_MS 3000  /* failure timeout 1000 + interval 100 + a timeout, with room */
#define AFTER_HOLDS       40u   /* holds of each partition once it serves again */

static const char *const gateway_flags[] = {"--allow-reset",     "--auth-rate",   "0",
                                            "--grid-timeout-ms", GRID_TIMEOUT_MS, NULL};

/* Holds seats of one partition over HTTP, and remembers what was acknowledged. */
typedef struct {
    uint64_t event_id;
    uint32_t partition_id;
    uint32_t seats;       /* the partition's: one hold each at most */
    int64_t pace_ms;      /* while the grid changes, one hold at most this often */
    int64_t last_hold_ms; /* when hold_while last held one */
    uint32_t next_seat;
    uint64_t booking; /* 0: create one before the next hold */
    uint32_t in_booking;
    uint32_t acked;
    uint32_t acked_seat[ACKED_MAX];
    uint64_t acked_booking[ACKED_MAX];
} seller;

/* The hall is small: paced, it keeps seats for changes that take long
 * without being refused (a state transfer on a busy machine). */
static seller concert = {.event_id = GWH_DEMO_EVENT,
                         .partition_id = GWH_DEMO_PARTITION,
                         .seats = GWH_DEMO_SEATS,
                         .pace_ms = 2};
static seller hall = {.event_id = GWH_HALL_EVENT,
                      .partition_id = GWH_HALL_PARTITION,
                      .seats = GWH_HALL_SEATS,
                      .pace_ms = 20};

/* One hold of the next seat (a booking first when needed).  Returns the
 * answer that decided it: a failed booking creation, or the selection;
 * *took_ms how long it all took. */
static const gwh_resp *hold_next(gwh_gateway *gw, const char *auth, seller *s, int64_t *took_ms)
{
    int64_t t0 = hx_now_ms();
    char body[128];
    if (s->booking == 0) {
        snprintf(body, sizeof(body), "{\"event_id\": %" PRIu64 "}", s->event_id);
        gwh_resp *r = gwh_http(gw, "POST", auth, body, "/api/bookings");
        if (r->status != 201) {
            *took_ms = hx_now_ms() - t0;
            return r;
        }
        s->booking = (uint64_t)gwh_int(r->json, "id");
        s->in_booking = 0;
    }
    cr_assert_lt(s->acked, ACKED_MAX, "more holds than the test remembers");
    cr_assert_lt(s->next_seat, s->seats, "partition %u: every seat was tried", s->partition_id);
    uint32_t seat = s->next_seat++;
    snprintf(body, sizeof(body), "{\"booking_id\": %" PRIu64 ", \"seat_id\": %" PRIu64 "}",
             s->booking, GWH_SEAT_ID(s->partition_id, seat));
    gwh_resp *r = gwh_http(gw, "PATCH", auth, body, "/api/seats/select");
    *took_ms = hx_now_ms() - t0;
    if (r->status == 200) {
        s->acked_seat[s->acked] = seat;
        s->acked_booking[s->acked++] = s->booking;
        s->booking = ++s->in_booking == PER_BOOKING ? 0 : s->booking;
    } else {
        s->booking = 0; /* its outcome is unknown: the next hold takes a new booking */
    }
    return r;
}

/* A hold that must be acknowledged. */
static void hold_ok(gwh_gateway *gw, const char *auth, seller *s)
{
    int64_t took;
    const gwh_resp *r = hold_next(gw, auth, s, &took);
    cr_assert_eq(r->status, 200, "partition %u: %s answered %ld (%s)", s->partition_id, r->what,
                 r->status, r->body != NULL ? r->body : r->error);
}

/* A refusal of the partition that failed: 503 with Retry-After and a code
 * that says the partition is unavailable or did not answer in time.
 * Returns the code. */
static const char *refusal_check(const gwh_resp *r, const seller *s)
{
    cr_assert_eq(r->status, 503, "partition %u: %s answered %ld, not 503 (%s)", s->partition_id,
                 r->what, r->status, r->body != NULL ? r->body : r->error);
    const char *retry = gwh_header(r, "Retry-After");
    cr_assert(retry != NULL && strtol(retry, NULL, 10) >= 1, "a 503 without Retry-After: %s",
              r->body);
    const char *code = gwh_str(r->json, "error.code");
    cr_assert(strcmp(code, "partition_unavailable") == 0 || strcmp(code, "grid_timeout") == 0,
              "partition %u refused with %s", s->partition_id, code);
    return code;
}

/* After the drain caught up: every acknowledged hold is in PostgreSQL with
 * its booking, and PostgreSQL counts as many held seats as the grid. */
static void assert_grid_and_pg_agree(gwh_grid *g, const seller *s)
{
    gwh_wait_drained(g, s->partition_id);
    json_t *av = gwh_availability_settled(g, s->event_id, s->partition_id);
    int64_t grid_held = gwh_int(av, "totals.SELECTED");
    char sql[200];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM seats WHERE event_id = %" PRIu64 " AND status = 'SELECTED'",
             s->event_id);
    int64_t pg_held = pgt_query_i64(g->db, sql);
    cr_assert_eq(pg_held, grid_held,
                 "event %" PRIu64 ": PostgreSQL holds %lld seats, the grid %lld", s->event_id,
                 (long long)pg_held, (long long)grid_held);
    cr_assert_geq(grid_held, (int64_t)s->acked, "acknowledged holds are missing");
    for (uint32_t i = 0; i < s->acked; i++) {
        snprintf(sql, sizeof(sql),
                 "SELECT status || '|' || coalesce(booking_id, 0) FROM seats"
                 " WHERE event_id = %" PRIu64 " AND seat_no = %u",
                 s->event_id, s->acked_seat[i]);
        char want[48];
        snprintf(want, sizeof(want), "SELECTED|%" PRIu64, s->acked_booking[i]);
        cr_assert_str_eq(pgt_query_text(g->db, sql), want, "event %" PRIu64 " seat %u", s->event_id,
                         s->acked_seat[i]);
    }
}

Test(gateway_failover, a_dead_primary_without_backup_is_refused_at_once_and_others_keep_selling)
{
    gwh_options o = {.units = 2,
                     .partition_count = 2,
                     .partitions = {GWH_DEMO_PARTITION, GWH_HALL_PARTITION},
                     .unit_of = {0, 1},
                     .gateway_flags = gateway_flags,
                     .manager = true,
                     .backups = 0};
    gwh_grid *g = gwh_start(&o);
    const char *auth = gwh_login(g->gw, GWH_BUYER, GWH_BUYER_PASSWORD);
    for (uint32_t i = 0; i < 20; i++) {
        hold_ok(g->gw, auth, &concert);
        hold_ok(g->gw, auth, &hall);
    }

    hx_kill(&g->units[1]);
    int64_t t0 = hx_now_ms(), first_fast = -1;
    uint32_t fast = 0;
    while (fast < 5 && hx_now_ms() - t0 < DEAD_WATCH_MS) {
        hold_ok(g->gw, auth, &concert);
        int64_t took;
        const gwh_resp *r = hold_next(g->gw, auth, &hall, &took);
        const char *code = refusal_check(r, &hall);
        if (strcmp(code, "partition_unavailable") == 0 && took < REFUSED_FAST_MS) {
            first_fast = first_fast < 0 ? hx_now_ms() - t0 : first_fast;
            fast++;
        }
    }
    cr_assert_eq(fast, 5u, "the dead primary's partition was not refused at once within %d ms",
                 DEAD_WATCH_MS);
    printf("# routing: %lld ms from SIGKILL to the first immediate 503 of the dead primary's "
           "partition\n",
           (long long)first_fast);
    fflush(stdout);

    hx_start(&g->units[1]); /* the same name: it re-attaches its segments and registers */
    int64_t back = hx_now_ms(), took;
    const gwh_resp *r = NULL;
    do {
        hold_ok(g->gw, auth, &concert);
        r = hold_next(g->gw, auth, &hall, &took);
        if (r->status != 200) {
            refusal_check(r, &hall);
            hx_sleep_ms(10);
        }
    } while (r->status != 200 && hx_now_ms() - back < DEAD_WATCH_MS);
    cr_assert_eq(r->status, 200, "the restarted unit's partition does not sell again");
    for (uint32_t i = 0; i < AFTER_HOLDS; i++) {
        hold_ok(g->gw, auth, &concert);
        hold_ok(g->gw, auth, &hall);
    }
    assert_grid_and_pg_agree(g, &concert);
    assert_grid_and_pg_agree(g, &hall);
    gwh_stop_ok(g);
}

/* "primary|backup,backup" of a partition in grid_partitions. */
static const char *placement_of(gwh_grid *g, uint32_t partition_id)
{
    char sql[200];
    snprintf(sql, sizeof(sql),
             "SELECT coalesce(primary_pu, '') || '|' || array_to_string(backup_pus, ',')"
             " FROM grid_partitions WHERE partition_id = %u",
             partition_id);
    return pgt_query_text(g->db, sql);
}

/* The unit named name, or NULL. */
static hx_unit *unit_named(gwh_grid *g, const char *name, size_t len)
{
    for (uint32_t i = 0; i < g->unit_count; i++) {
        if (strlen(g->units[i].name) == len && strncmp(g->units[i].name, name, len) == 0) {
            return &g->units[i];
        }
    }
    return NULL;
}

/* The partition's primary once it has a backup whose link is in sync. */
static hx_unit *wait_in_sync(gwh_grid *g, uint32_t partition_id)
{
    static tg_msg rep;
    int64_t t0 = hx_now_ms();
    while (hx_now_ms() - t0 < PLACE_TIMEOUT_MS) {
        const char *row = placement_of(g, partition_id);
        const char *bar = strchr(row, '|');
        hx_unit *primary =
            bar != NULL && bar[1] != '\0' ? unit_named(g, row, (size_t)(bar - row)) : NULL;
        if (primary != NULL) {
            tg_client *c = hx_client(primary, partition_id, 4);
            tg_msg req = {.type = TG_WIRE_REPL_STATUS, .repl_status = {partition_id}};
            bool in_sync = hx_call(c, partition_id, &req, &rep) == TG_OK &&
                           rep.repl_status_ok.link_count > 0 &&
                           rep.repl_status_ok.links[0].state == TG_REPL_LINK_IN_SYNC;
            hx_client_close(c);
            if (in_sync) {
                return primary;
            }
        }
        hx_sleep_ms(50);
    }
    cr_assert_fail("partition %u has no backup in sync after %d ms (placement %s)", partition_id,
                   PLACE_TIMEOUT_MS, placement_of(g, partition_id));
    return NULL;
}

/* True when the unit holds no copy of the partition (primary or backup). */
static bool holds_nothing_of(gwh_grid *g, const hx_unit *u, uint32_t partition_id)
{
    return strstr(placement_of(g, partition_id), u->name) == NULL;
}

Test(gateway_failover, a_killed_primary_fails_over_and_the_other_partition_never_fails)
{
    gwh_options o = {.units = 3,
                     .partition_count = 2,
                     .partitions = {GWH_DEMO_PARTITION, GWH_HALL_PARTITION},
                     .unit_of = {0, 1},
                     .gateway_flags = gateway_flags,
                     .manager = true,
                     .backups = 1};
    gwh_grid *g = gwh_start(&o);
    hx_unit *concert_primary = wait_in_sync(g, GWH_DEMO_PARTITION);
    hx_unit *hall_primary = wait_in_sync(g, GWH_HALL_PARTITION);
    /* The victim: a primary that holds no copy of the other partition. */
    seller *hit = &hall, *other = &concert;
    hx_unit *victim = hall_primary;
    if (!holds_nothing_of(g, victim, GWH_DEMO_PARTITION)) {
        hit = &concert;
        other = &hall;
        victim = concert_primary;
    }
    cr_assert(holds_nothing_of(g, victim, other->partition_id),
              "no unit is the primary of one partition and holds nothing of the other: %s / %s",
              placement_of(g, GWH_DEMO_PARTITION), placement_of(g, GWH_HALL_PARTITION));
    const char *auth = gwh_login(g->gw, GWH_BUYER, GWH_BUYER_PASSWORD);
    for (uint32_t i = 0; i < 20; i++) {
        hold_ok(g->gw, auth, other);
        hold_ok(g->gw, auth, hit);
    }

    hx_kill(victim);
    int64_t t0 = hx_now_ms(), last_refusal = -1, took;
    uint32_t refusals = 0;
    const gwh_resp *r = NULL;
    do {
        hold_ok(g->gw, auth, other);
        r = hold_next(g->gw, auth, hit, &took);
        if (r->status != 200) {
            refusal_check(r, hit);
            refusals++;
            last_refusal = hx_now_ms() - t0;
        }
    } while (r->status != 200 && hx_now_ms() - t0 < 4 * FAILOVER_BOUND_MS);
    int64_t window = hx_now_ms() - t0;
    cr_assert_eq(r->status, 200, "the promoted backup never sold: %s", r->body);
    printf("# routing: failover window %lld ms (SIGKILL to the first hold acknowledged again "
           "through the gateway); %u refusals with Retry-After, the last at %lld ms\n",
           (long long)window, refusals, (long long)last_refusal);
    fflush(stdout);
    cr_assert_lt(window, FAILOVER_BOUND_MS);
    for (uint32_t i = 0; i < AFTER_HOLDS; i++) {
        hold_ok(g->gw, auth, other);
        hold_ok(g->gw, auth, hit); /* no refusal once it serves again */
    }
    assert_grid_and_pg_agree(g, other);
    assert_grid_and_pg_agree(g, hit);
    gwh_stop_ok(g);
}

/* What the unit says PostgreSQL holds of the partition (log_persisted),
 * and its log head; false when it does not answer as its primary. */
static bool unit_persisted(const hx_unit *u, uint32_t partition_id, uint64_t *persisted,
                           uint64_t *head)
{
    static tg_msg rep;
    tg_client *c = hx_client(u, partition_id, 4);
    tg_msg req = {.type = TG_WIRE_PARTITION_INFO, .partition_info = {partition_id}};
    bool ok =
        hx_call(c, partition_id, &req, &rep) == TG_OK && rep.type == TG_WIRE_PARTITION_INFO_OK;
    hx_client_close(c);
    if (ok) {
        *persisted = rep.partition_info_ok.log_persisted;
        *head = rep.partition_info_ok.log_head;
    }
    return ok;
}

/* Waits until u was told PostgreSQL holds its whole log of the partition. */
static void wait_told_persisted(const hx_unit *u, uint32_t partition_id, int timeout_ms)
{
    uint64_t persisted = 0, head = 1;
    int64_t deadline = hx_now_ms() + timeout_ms;
    while (!(unit_persisted(u, partition_id, &persisted, &head) && persisted == head)) {
        cr_assert(hx_now_ms() < deadline,
                  "%s was not told its log of partition %u is persisted: %llu of %llu", u->name,
                  partition_id, (unsigned long long)persisted, (unsigned long long)head);
        hx_sleep_ms(50);
    }
}

/* A partition that moves while nothing sells: the drain tells its new
 * primary what PostgreSQL holds without waiting for a record after the
 * move, so the unit's ring is freed up to there. */
Test(gateway_failover, a_partition_that_moves_while_idle_is_acked_to_its_new_primary)
{
    gwh_options o = {.units = 2,
                     .partition_count = 1,
                     .partitions = {GWH_DEMO_PARTITION},
                     .unit_of = {0},
                     .gateway_flags = gateway_flags,
                     .manager = true,
                     .backups = 1};
    gwh_grid *g = gwh_start(&o);
    hx_unit *primary = wait_in_sync(g, GWH_DEMO_PARTITION);
    hx_unit *backup = primary == &g->units[0] ? &g->units[1] : &g->units[0];
    const char *auth = gwh_login(g->gw, GWH_BUYER, GWH_BUYER_PASSWORD);
    for (uint32_t i = 0; i < 10; i++) {
        hold_ok(g->gw, auth, &concert);
    }
    wait_told_persisted(primary, GWH_DEMO_PARTITION, GWH_DRAIN_TIMEOUT_MS);
    hx_kill(primary);
    char want[TG_PU_NAME_BYTES + 2];
    snprintf(want, sizeof(want), "%s|", backup->name);
    int64_t deadline = hx_now_ms() + PLACE_TIMEOUT_MS;
    while (strncmp(placement_of(g, GWH_DEMO_PARTITION), want, strlen(want)) != 0) {
        cr_assert(hx_now_ms() < deadline, "%s was not promoted: %s", backup->name,
                  placement_of(g, GWH_DEMO_PARTITION));
        hx_sleep_ms(50);
    }
    wait_told_persisted(backup, GWH_DEMO_PARTITION, 3000);
    gwh_stop_ok(g);
}

/* Refusals seen while the grid changes: each carries Retry-After; they
 * must not span more than the failover bound. */
typedef struct {
    uint32_t count;
    int64_t first_ms, last_ms; /* since the change began */
} refusals;

/* Holds on both partitions in turn, each at most once per its pace, until
 * the tixgridctl process ctl exits; returns its exit code. */
static int hold_while(gwh_gateway *gw, const char *auth, pid_t ctl, refusals *seen)
{
    int64_t t0 = hx_now_ms();
    seller *both[2] = {&concert, &hall};
    int status = 0;
    for (;;) {
        bool held = false;
        for (int k = 0; k < 2; k++) {
            if (hx_now_ms() - both[k]->last_hold_ms < both[k]->pace_ms) {
                continue;
            }
            held = true;
            both[k]->last_hold_ms = hx_now_ms();
            int64_t sent = hx_now_ms() - t0, took;
            const gwh_resp *r = hold_next(gw, auth, both[k], &took);
            if (r->status != 200) {
                refusal_check(r, both[k]);
                seen->first_ms = seen->count++ == 0 ? sent : seen->first_ms;
                seen->last_ms = sent + took;
            }
        }
        if (waitpid(ctl, &status, WNOHANG) == ctl) {
            return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        }
        cr_assert_lt(hx_now_ms() - t0, 90000, "tixgridctl did not finish");
        if (!held) {
            hx_sleep_ms(1);
        }
    }
}

/* Starts tixgridctl with the command (NULL-ended) against the grid's manager. */
static pid_t ctl_start(gwh_grid *g, const char *log, const char *command, const char *arg)
{
    const char *argv[] = {getenv("TIXGRIDCTL_BIN"),
                          "--manager",
                          g->manager_url,
                          "--wait-ms",
                          "60000",
                          command,
                          arg,
                          NULL};
    cr_assert(argv[0] != NULL, "TIXGRIDCTL_BIN is not set (run through meson test)");
    return hx_spawn_process(argv, NULL, log);
}

/* The unit named in grid_partitions as the partition's primary. */
static hx_unit *primary_of(gwh_grid *g, hx_unit *extra, uint32_t partition_id)
{
    const char *row = placement_of(g, partition_id);
    size_t len = strcspn(row, "|");
    hx_unit *u = unit_named(g, row, len);
    return u != NULL || strncmp(extra->name, row, len) != 0 ? u : extra;
}

static void refusals_report(const char *what, const refusals *seen)
{
    printf("# routing: %s: %u refusals with Retry-After over %lld ms\n", what, seen->count,
           (long long)(seen->count > 0 ? seen->last_ms - seen->first_ms : 0));
    fflush(stdout);
    cr_assert(seen->count == 0 || seen->last_ms - seen->first_ms < FAILOVER_BOUND_MS,
              "%s: refusals over %lld ms", what, (long long)(seen->last_ms - seen->first_ms));
}

Test(gateway_failover, units_added_and_drained_under_load_lose_nothing)
{
    gwh_options o = {.units = 2,
                     .partition_count = 2,
                     .partitions = {GWH_DEMO_PARTITION, GWH_HALL_PARTITION},
                     .unit_of = {0, 0},
                     .gateway_flags = gateway_flags,
                     .manager = true,
                     .backups = 1};
    gwh_grid *g = gwh_start(&o);
    wait_in_sync(g, GWH_DEMO_PARTITION);
    wait_in_sync(g, GWH_HALL_PARTITION);
    const char *auth = gwh_login(g->gw, GWH_BUYER, GWH_BUYER_PASSWORD);
    for (uint32_t i = 0; i < 20; i++) {
        hold_ok(g->gw, auth, &concert);
        hold_ok(g->gw, auth, &hall);
    }

    static hx_unit added;
    hx_unit_init(&added, "gw");
    hx_add_flag(&added, "--manager");
    hx_add_flag(&added, g->manager_url);
    hx_add_flag(&added, "--zone");
    hx_add_flag(&added, "zone-c");
    hx_start(&added);
    char log[128];
    snprintf(log, sizeof(log), "%s/ctl-add.log", g->dir);
    refusals seen = {0};
    int code = hold_while(g->gw, auth, ctl_start(g, log, "add-pu", added.name), &seen);
    cr_assert_eq(code, 0, "tixgridctl add-pu exited %d", code);
    refusals_report("add-pu", &seen);
    cr_assert(primary_of(g, &added, GWH_DEMO_PARTITION) == &added ||
                  primary_of(g, &added, GWH_HALL_PARTITION) == &added,
              "nothing moved onto the added unit: %s / %s", placement_of(g, GWH_DEMO_PARTITION),
              placement_of(g, GWH_HALL_PARTITION));

    hx_unit *drained = &g->units[0];
    snprintf(log, sizeof(log), "%s/ctl-remove.log", g->dir);
    seen = (refusals){0};
    code = hold_while(g->gw, auth, ctl_start(g, log, "remove-pu", drained->name), &seen);
    cr_assert_eq(code, 0, "tixgridctl remove-pu exited %d", code);
    refusals_report("remove-pu", &seen);
    cr_assert(holds_nothing_of(g, drained, GWH_DEMO_PARTITION) &&
                  holds_nothing_of(g, drained, GWH_HALL_PARTITION),
              "the drained unit still holds: %s / %s", placement_of(g, GWH_DEMO_PARTITION),
              placement_of(g, GWH_HALL_PARTITION));
    int status = 0;
    cr_assert(hx_wait_exit(drained->pid, 10000, &status), "the drained unit did not stop");
    drained->pid = 0;
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "it ended with %#x", status);
    for (uint32_t i = 0; i < AFTER_HOLDS; i++) {
        hold_ok(g->gw, auth, &concert);
        hold_ok(g->gw, auth, &hall);
    }
    assert_grid_and_pg_agree(g, &concert);
    assert_grid_and_pg_agree(g, &hall);
    gwh_stop_ok(g);
    hx_stop_ok(&added);
}

/* ---- A unit that hangs ---------------------------------------------------------- */

#define HUNG_TIMEOUT_MS   600 /* the gateway's grid timeout in this test */
#define HUNG_SECOND_AFTER 100 /* the second hold leaves this long after the first */

/* Sends a hold on a connection of its own that the gateway closes after
 * answering; returns the connection. */
static int hold_raw(gwh_gateway *gw, const char *auth, uint64_t booking, uint64_t seat_id)
{
    char body[128], request[1024];
    int len = snprintf(body, sizeof(body),
                       "{\"booking_id\": %" PRIu64 ", \"seat_id\": %" PRIu64 "}", booking, seat_id);
    int n = snprintf(request, sizeof(request),
                     "PATCH /api/seats/select HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Authorization: %s\r\nContent-Type: application/json\r\n"
                     "Content-Length: %d\r\nConnection: close\r\n\r\n%s",
                     auth, len, body);
    cr_assert(n > 0 && (size_t)n < sizeof(request));
    int fd = gwh_connect(gw);
    gwh_write(fd, request, (size_t)n);
    return fd;
}

/* The answer on fd, once the gateway closed it: asserts 503 grid_timeout. */
static void expect_grid_timeout(int fd, const char *which)
{
    size_t len;
    bool closed;
    char *reply = gwh_read_all(fd, 5 * HUNG_TIMEOUT_MS, &len, &closed);
    cr_assert(closed, "%s: no answer within %d ms", which, 5 * HUNG_TIMEOUT_MS);
    cr_assert(strncmp(reply, "HTTP/1.1 503", 12) == 0 && strstr(reply, "grid_timeout") != NULL,
              "%s: %s", which, reply);
}

/* While a partition's message is unanswered, its next batch gathers, but for
 * --grid-batch-wait-ms at most (gateway/README.md, "Batches to the units"):
 * a unit that hangs costs a request behind it the grid timeout, not that
 * plus the wait for the message ahead of it. */
Test(gateway_failover, a_request_behind_a_hung_message_waits_the_grid_timeout_not_more)
{
    /* One loop thread: both holds on the same loop, whose batches they share. */
    static const char *const flags[] = {
        "--allow-reset", "--auth-rate",          "0", "--threads", "1", "--grid-timeout-ms",
        "600",           "--grid-batch-wait-ms", "5", NULL};
    gwh_options o = {.gateway_flags = flags};
    gwh_grid *g = gwh_start(&o);
    const char *auth = gwh_login(g->gw, GWH_BUYER, GWH_BUYER_PASSWORD);
    uint64_t booking = gwh_booking_create(g->gw, auth, GWH_DEMO_EVENT);
    hold_ok(g->gw, auth, &concert); /* the route to the unit is up */

    hx_freeze(&g->units[0]); /* every thread stopped: kill(2) alone returns before */
    int64_t t0 = hx_now_ms();
    int first = hold_raw(g->gw, auth, booking, GWH_SEAT_ID(GWH_DEMO_PARTITION, 90000));
    hx_sleep_ms(HUNG_SECOND_AFTER);
    int64_t t1 = hx_now_ms();
    int second = hold_raw(g->gw, auth, booking, GWH_SEAT_ID(GWH_DEMO_PARTITION, 90001));
    expect_grid_timeout(second, "the second hold");
    int64_t second_ms = hx_now_ms() - t1;
    expect_grid_timeout(first, "the first hold");
    printf("# hung unit: the second hold answered %lld ms after it was sent, %lld ms after the "
           "first (grid timeout %d ms)\n",
           (long long)second_ms, (long long)(hx_now_ms() - t0), HUNG_TIMEOUT_MS);
    fflush(stdout);
    /* Waiting for the first message's timeout before sending would make it
     * HUNG_TIMEOUT_MS - HUNG_SECOND_AFTER more. */
    cr_assert_lt(second_ms, HUNG_TIMEOUT_MS + (HUNG_TIMEOUT_MS - HUNG_SECOND_AFTER) / 2,
                 "the second hold waited for the first one's message");
    close(first);
    close(second);

    cr_assert_eq(kill(g->units[0].pid, SIGCONT), 0);
    hold_ok(g->gw, auth, &concert); /* and it sells again */
    gwh_stop_ok(g);
}
