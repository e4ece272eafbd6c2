/*
 * manager_state_test.c — the manager's rules about the map, without a
 * database or sockets (grid/manager.h, manager_state.c).
 *
 * Requests are built as decoded messages and handed to grid_state_handle
 * with a made-up monotonic clock; the failure detector is the real one.
 * Each test reads as a rule: who may send heartbeats, when a partition is
 * adopted and at which epoch, what a death changes, what remove-pu may do,
 * what the status and the published map say, where backups go and which
 * backup replaces a dead primary (grid_state_place).
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "manager.h"
#include "tixgrid/log.h"

#define MS (INT64_C(1000000))

static grid_map_state *m;
static grid_detector det;
static grid_msg_scratch *scratch;
static tg_msg req, rep;
static tg_wire_held held[4];
static grid_state_env env;

/* Partitions 1..3 (events 11..13) at epoch 1, no primary. */
static void setup(void)
{
    tg_log_set_level(TG_LOG_ERROR); /* the rules log what they decide */
    m = calloc(1, sizeof(*m));
    scratch = calloc(1, sizeof(*scratch));
    cr_assert(m != NULL && scratch != NULL);
    m->parts = calloc(TG_GRID_PARTITIONS_MAX, sizeof(*m->parts));
    cr_assert(m->parts != NULL);
    snprintf(m->manager, sizeof(m->manager), "mgr-t");
    m->epoch = 7;
    for (uint32_t i = 0; i < 3; i++) {
        m->parts[i] = (grid_partition){.partition_id = i + 1,
                                       .event_id = 11 + i,
                                       .epoch = 1,
                                       .stored_epoch = 1,
                                       .primary = -1};
    }
    m->part_count = 3;
    grid_detector_start(&det, 1000, 100, 0);
    grid_state_activate(m, &det, 0);
    grid_state_persisted(m, m->epoch);
    env = (grid_state_env){.det = &det,
                           .pub_url = "ipc:///tmp/mgr.pub",
                           .heartbeat_interval_ms = 100,
                           .failure_timeout_ms = 1000};
}

static void teardown(void)
{
    free(m->parts);
    free(m);
    free(scratch);
}

TestSuite(manager_state, .init = setup, .fini = teardown);

/* Registers name (incarnation inc) holding partitions ids (epoch 1). */
static tg_err do_register(const char *name, uint64_t inc, const uint32_t *ids, uint32_t n,
                          int64_t now)
{
    memset(&req, 0, sizeof(req));
    req.type = TG_WIRE_PU_REGISTER;
    snprintf(req.pu_register.name, sizeof(req.pu_register.name), "%s", name);
    req.pu_register.incarnation = inc;
    snprintf(req.pu_register.rep_url, sizeof(req.pu_register.rep_url), "ipc:///tmp/%s.rep", name);
    snprintf(req.pu_register.zone, sizeof(req.pu_register.zone), "z1");
    for (uint32_t i = 0; i < n; i++) {
        held[i] = (tg_wire_held){.partition_id = ids[i],
                                 .event_id = 10 + ids[i],
                                 .epoch = 1,
                                 .log_head = 5,
                                 .log_persisted = 3};
    }
    req.pu_register.held_count = n;
    req.pu_register.held = held;
    grid_state_handle(m, &env, &req, now, scratch, &rep);
    return rep.type == TG_WIRE_ERROR ? (tg_err)rep.error.code : TG_OK;
}

static tg_err do_heartbeat(const char *name, uint64_t inc, const uint32_t *ids, uint32_t n,
                           uint64_t epoch, int64_t now)
{
    memset(&req, 0, sizeof(req));
    req.type = TG_WIRE_HEARTBEAT;
    snprintf(req.heartbeat.name, sizeof(req.heartbeat.name), "%s", name);
    req.heartbeat.incarnation = inc;
    for (uint32_t i = 0; i < n; i++) {
        held[i] = (tg_wire_held){.partition_id = ids[i],
                                 .epoch = epoch,
                                 .log_head = 9,
                                 .log_persisted = 4,
                                 .unpersisted_age_ms = 30};
    }
    req.heartbeat.held_count = n;
    req.heartbeat.held = held;
    grid_state_handle(m, &env, &req, now, scratch, &rep);
    return rep.type == TG_WIRE_ERROR ? (tg_err)rep.error.code : TG_OK;
}

static const tg_msg *status_at(int64_t now)
{
    memset(&req, 0, sizeof(req));
    req.type = TG_WIRE_GRID_STATUS;
    grid_state_handle(m, &env, &req, now, scratch, &rep);
    cr_assert_eq(rep.type, TG_WIRE_GRID_STATUS_OK);
    return &rep;
}

Test(manager_state, a_registration_adopts_the_partitions_nobody_holds_at_a_new_epoch)
{
    cr_assert_eq(do_register("pu1", 100, (const uint32_t[]){1, 2}, 2, 10 * MS), TG_OK);
    cr_assert_eq(rep.type, TG_WIRE_PU_REGISTER_OK);
    cr_assert_str_eq(rep.pu_register_ok.pub_url, "ipc:///tmp/mgr.pub");
    cr_assert_eq(rep.pu_register_ok.heartbeat_interval_ms, 100);
    cr_assert_eq(rep.pu_register_ok.map_epoch, 7);
    grid_partition *p1 = grid_partition_find(m, 1);
    cr_assert_eq(p1->primary, grid_member_find(m, "pu1"));
    cr_assert_eq(p1->epoch, 2);
    cr_assert(p1->dirty && m->changed);
    cr_assert_eq(grid_partition_find(m, 3)->primary, -1);
    /* A second unit with a copy of partition 1 does not take it. */
    cr_assert_eq(do_register("pu2", 200, (const uint32_t[]){1}, 1, 20 * MS), TG_OK);
    cr_assert_eq(p1->primary, grid_member_find(m, "pu1"));
    cr_assert_eq(p1->epoch, 2);
}

Test(manager_state, a_partition_of_another_event_or_unknown_is_left_out)
{
    memset(&req, 0, sizeof(req));
    cr_assert_eq(do_register("pu1", 1, (const uint32_t[]){9}, 1, 0), TG_OK);
    held[0] = (tg_wire_held){.partition_id = 1, .event_id = 99};
    req.pu_register.held_count = 1;
    grid_state_handle(m, &env, &req, 0, scratch, &rep);
    cr_assert_eq(grid_partition_find(m, 1)->primary, -1, "event 99 is not partition 1's");
    cr_assert_null(grid_partition_find(m, 9));
}

Test(manager_state, heartbeats_count_only_from_the_registered_incarnation)
{
    cr_assert_eq(do_heartbeat("pu1", 100, NULL, 0, 0, 0), TG_ENOT_FOUND, "never registered");
    cr_assert_eq(do_register("pu1", 100, NULL, 0, 0), TG_OK);
    cr_assert_eq(do_heartbeat("pu1", 100, NULL, 0, 0, 50 * MS), TG_OK);
    cr_assert_eq(rep.type, TG_WIRE_HEARTBEAT_OK);
    cr_assert_not(rep.heartbeat_ok.leave);
    cr_assert_eq(do_heartbeat("pu1", 101, NULL, 0, 0, 60 * MS), TG_ENOT_FOUND,
                 "another run of the unit");
    /* A manager that takes over knows nobody's incarnation. */
    grid_state_activate(m, &det, 70 * MS);
    cr_assert_eq(do_heartbeat("pu1", 100, NULL, 0, 0, 80 * MS), TG_ENOT_FOUND);
}

Test(manager_state, a_silent_unit_is_declared_dead_and_must_register_again)
{
    cr_assert_eq(do_register("pu1", 100, (const uint32_t[]){1}, 1, 0), TG_OK);
    grid_state_persisted(m, m->epoch + 1);
    for (int64_t t = 0; t <= 1000 * MS; t += 10 * MS) {
        grid_detector_pass(&det, t);
    }
    cr_assert_eq(grid_state_detect(m, &det, 1000 * MS), 0);
    grid_detector_pass(&det, 1010 * MS);
    cr_assert_eq(grid_state_detect(m, &det, 1010 * MS), 1);
    int32_t i = grid_member_find(m, "pu1");
    cr_assert_eq(m->members[i].state, TG_MEMBER_DEAD);
    cr_assert(m->members[i].dirty && m->changed);
    cr_assert_eq(grid_partition_find(m, 1)->primary, i, "its partition waits for it");
    const tg_msg *s = status_at(1010 * MS);
    cr_assert_eq(s->grid_status_ok.placements[0].state, TG_PLACEMENT_PRIMARY_DEAD);
    cr_assert_eq(do_heartbeat("pu1", 100, (const uint32_t[]){1}, 1, 2, 1020 * MS), TG_ENOT_FOUND);
    cr_assert_eq(do_register("pu1", 100, (const uint32_t[]){1}, 1, 1030 * MS), TG_OK);
    cr_assert_eq(m->members[i].state, TG_MEMBER_ALIVE);
    cr_assert_eq(grid_partition_find(m, 1)->epoch, 2, "back with the same epoch");
}

/* Passes of the manager's loop every 10 ms from `from` to `to` (no absence). */
static void passes(int64_t from, int64_t to)
{
    for (int64_t t = from; t <= to; t += 10 * MS) {
        grid_detector_pass(&det, t);
    }
}

Test(manager_state, a_unit_whose_connection_closed_is_dead_after_one_heartbeat_interval)
{
    env.pipe_id = 41;
    cr_assert_eq(do_register("pu1", 100, (const uint32_t[]){1}, 1, 0), TG_OK);
    env.pipe_id = 42;
    cr_assert_eq(do_register("pu2", 200, NULL, 0, 0), TG_OK);
    grid_state_persisted(m, m->epoch + 1);
    passes(0, 200 * MS);
    grid_state_pipe_closed(m, &det, 7, 200 * MS); /* a tixgridctl's connection */
    grid_state_pipe_closed(m, &det, 41, 200 * MS);
    passes(210 * MS, 300 * MS);
    cr_assert_eq(grid_state_detect(m, &det, 300 * MS), 0, "one interval is its grace");
    passes(310 * MS, 310 * MS);
    cr_assert_eq(grid_state_detect(m, &det, 310 * MS), 1, "far before the failure timeout");
    cr_assert_eq(m->members[grid_member_find(m, "pu1")].state, TG_MEMBER_DEAD);
    cr_assert_eq(m->members[grid_member_find(m, "pu2")].state, TG_MEMBER_ALIVE);
    cr_assert(m->changed);
}

Test(manager_state, a_unit_heard_again_after_its_connection_closed_stays_alive)
{
    env.pipe_id = 41;
    cr_assert_eq(do_register("pu1", 100, (const uint32_t[]){1}, 1, 0), TG_OK);
    grid_state_persisted(m, m->epoch + 1);
    passes(0, 200 * MS);
    grid_state_pipe_closed(m, &det, 41, 200 * MS);
    env.pipe_id = 43; /* it dialled again */
    cr_assert_eq(do_heartbeat("pu1", 100, (const uint32_t[]){1}, 1, 2, 250 * MS), TG_OK);
    passes(260 * MS, 900 * MS);
    cr_assert_eq(grid_state_detect(m, &det, 900 * MS), 0);
    /* The old connection closing again changes nothing; the new one does. */
    grid_state_pipe_closed(m, &det, 41, 900 * MS);
    passes(910 * MS, 1050 * MS);
    cr_assert_eq(grid_state_detect(m, &det, 1050 * MS), 0);
    grid_state_pipe_closed(m, &det, 43, 1050 * MS);
    passes(1060 * MS, 1160 * MS);
    cr_assert_eq(grid_state_detect(m, &det, 1160 * MS), 1);
}

Test(manager_state, the_grace_after_a_closed_connection_leaves_out_the_managers_own_absence)
{
    env.pipe_id = 41;
    cr_assert_eq(do_register("pu1", 100, (const uint32_t[]){1}, 1, 0), TG_OK);
    passes(0, 100 * MS);
    grid_state_pipe_closed(m, &det, 41, 100 * MS);
    /* The manager's next pass comes 500 ms late: 400 ms of it are its own
     * absence, so the unit was gone for 100 ms of watched time only. */
    grid_detector_pass(&det, 600 * MS);
    cr_assert_eq(grid_state_detect(m, &det, 600 * MS), 0);
    passes(610 * MS, 610 * MS);
    cr_assert_eq(grid_state_detect(m, &det, 610 * MS), 1);
}

Test(manager_state, the_status_says_what_each_partition_is_doing)
{
    cr_assert_eq(do_register("pu1", 100, (const uint32_t[]){1, 2}, 2, 0), TG_OK);
    /* Reports epoch 2 for partition 1 only; partition 2 at epoch 1 and then
     * not reported at all. */
    cr_assert_eq(do_heartbeat("pu1", 100, (const uint32_t[]){1}, 1, 2, 100 * MS), TG_OK);
    const tg_msg *s = status_at(150 * MS);
    const __typeof__(s->grid_status_ok) *g = &s->grid_status_ok;
    cr_assert_eq(g->member_count, 1);
    cr_assert_str_eq(g->members[0].name, "pu1");
    cr_assert_eq(g->members[0].heard_age_ms, 50);
    cr_assert_eq(g->members[0].incarnation, 100);
    cr_assert_eq(g->placement_count, 3);
    cr_assert_eq(g->placements[0].state, TG_PLACEMENT_SERVING);
    cr_assert_eq(g->placements[0].log_head, 9);
    cr_assert_eq(g->placements[0].log_persisted, 4);
    cr_assert_eq(g->placements[0].unpersisted_age_ms, 30);
    cr_assert_eq(g->placements[1].state, TG_PLACEMENT_NOT_LOADED);
    cr_assert_eq(g->placements[2].state, TG_PLACEMENT_UNPLACED);
    cr_assert_eq(do_heartbeat("pu1", 100, (const uint32_t[]){1, 2}, 2, 1, 200 * MS), TG_OK);
    s = status_at(200 * MS);
    cr_assert_eq(s->grid_status_ok.placements[0].state, TG_PLACEMENT_EPOCH_BEHIND);
    /* The whole reply is a valid message. */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    cr_assert_eq(tg_wire_encode(s, &sb, NULL), TG_OK);
    msgpack_sbuffer_destroy(&sb);
}

Test(manager_state, a_unit_ahead_of_the_map_raises_the_maps_epoch)
{
    cr_assert_eq(do_register("pu1", 100, (const uint32_t[]){1}, 1, 0), TG_OK);
    grid_state_persisted(m, m->epoch + 1);
    cr_assert_eq(do_heartbeat("pu1", 100, (const uint32_t[]){1}, 1, 40, 10 * MS), TG_OK);
    grid_partition *p = grid_partition_find(m, 1);
    cr_assert_eq(p->epoch, 40);
    cr_assert(p->dirty && m->changed);
}

Test(manager_state, remove_pu_refuses_a_unit_with_partitions_and_retires_the_others)
{
    cr_assert_eq(do_register("busy", 1, (const uint32_t[]){1}, 1, 0), TG_OK);
    cr_assert_eq(do_register("idle", 2, NULL, 0, 0), TG_OK);
    grid_state_persisted(m, m->epoch + 1);
    memset(&req, 0, sizeof(req));
    req.type = TG_WIRE_PU_REMOVE;
    snprintf(req.pu_remove.name, sizeof(req.pu_remove.name), "busy");
    grid_state_handle(m, &env, &req, 0, scratch, &rep);
    cr_assert_eq(rep.error.code, TG_EPARTITION_STATE);
    snprintf(req.pu_remove.name, sizeof(req.pu_remove.name), "nobody");
    grid_state_handle(m, &env, &req, 0, scratch, &rep);
    cr_assert_eq(rep.error.code, TG_ENOT_FOUND);
    snprintf(req.pu_remove.name, sizeof(req.pu_remove.name), "idle");
    grid_state_handle(m, &env, &req, 0, scratch, &rep);
    cr_assert_eq(rep.type, TG_WIRE_PU_REMOVE_OK);
    int32_t i = grid_member_find(m, "idle");
    cr_assert_eq(m->members[i].state, TG_MEMBER_LEAVING);
    cr_assert_eq(do_heartbeat("idle", 2, NULL, 0, 0, 10 * MS), TG_OK);
    cr_assert(rep.heartbeat_ok.leave, "a leaving unit is told to stop");
    /* Asked to register again by a new manager, the same run still leaves. */
    cr_assert_eq(do_register("idle", 2, NULL, 0, 20 * MS), TG_OK);
    cr_assert_eq(m->members[i].state, TG_MEMBER_LEAVING);
    /* Once silent it goes, after the delete is written. */
    for (int64_t t = 30 * MS; t <= 1100 * MS; t += 10 * MS) {
        grid_detector_pass(&det, t);
    }
    grid_state_detect(m, &det, 1100 * MS);
    cr_assert(m->members[i].removing);
    grid_state_persisted(m, m->epoch + 1);
    cr_assert_eq(grid_member_find(m, "idle"), -1);
}

Test(manager_state, bad_registrations_are_refused_with_a_reason)
{
    cr_assert_eq(do_register("bad name", 1, NULL, 0, 0), TG_EINVAL);
    cr_assert(strstr(rep.error.message, "pu_register.name") != NULL);
    memset(&req, 0, sizeof(req));
    req.type = TG_WIRE_PU_REGISTER;
    snprintf(req.pu_register.name, sizeof(req.pu_register.name), "pu1");
    req.pu_register.incarnation = 1;
    snprintf(req.pu_register.rep_url, sizeof(req.pu_register.rep_url), "not-an-address");
    grid_state_handle(m, &env, &req, 0, scratch, &rep);
    cr_assert_eq(rep.error.code, TG_EINVAL);
    snprintf(req.pu_register.rep_url, sizeof(req.pu_register.rep_url), "tcp://h:1");
    snprintf(req.pu_register.zone, sizeof(req.pu_register.zone), "a zone");
    grid_state_handle(m, &env, &req, 0, scratch, &rep);
    cr_assert_eq(rep.error.code, TG_EINVAL);
    cr_assert_eq(grid_member_find(m, "pu1"), -1, "nothing was added");
    /* A full grid. */
    for (uint32_t k = 0; k < TG_GRID_MEMBERS_MAX; k++) {
        char name[16];
        snprintf(name, sizeof(name), "u%u", k);
        cr_assert_eq(do_register(name, 1, NULL, 0, 0), TG_OK);
    }
    cr_assert_eq(do_register("one-more", 1, NULL, 0, 0), TG_ENOMEM);
}

Test(manager_state, the_published_map_numbers_members_and_skips_removed_ones)
{
    cr_assert_eq(do_register("a", 1, NULL, 0, 0), TG_OK);
    cr_assert_eq(do_register("b", 1, (const uint32_t[]){2}, 1, 0), TG_OK);
    m->members[grid_member_find(m, "a")].removing = true;
    tg_msg map;
    grid_state_map_msg(m, 9, scratch, &map);
    cr_assert_eq(map.grid_map.epoch, 9);
    cr_assert_str_eq(map.grid_map.manager, "mgr-t");
    cr_assert_eq(map.grid_map.member_count, 1);
    cr_assert_str_eq(map.grid_map.members[0].name, "b");
    cr_assert_eq(map.grid_map.placements[1].primary, 0);
    cr_assert_eq(map.grid_map.placements[0].primary, -1);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    cr_assert_eq(tg_wire_encode_event(&map, &sb, NULL), TG_OK);
    msgpack_sbuffer_destroy(&sb);
}

/* ---- Backups and failover (manager_place.c) ---------------------------------- */

static grid_place_scratch *place_scratch(void)
{
    static grid_place_scratch *sc;
    if (sc == NULL) {
        sc = calloc(1, sizeof(*sc));
        cr_assert(sc != NULL);
    }
    return sc;
}

/* A heartbeat of name reporting a backup copy of partition 1. */
static tg_err backup_heartbeat(const char *name, uint64_t epoch, uint64_t applied, bool in_sync,
                               int64_t now)
{
    memset(&req, 0, sizeof(req));
    req.type = TG_WIRE_HEARTBEAT;
    snprintf(req.heartbeat.name, sizeof(req.heartbeat.name), "%s", name);
    req.heartbeat.incarnation = 200;
    held[0] = (tg_wire_held){.partition_id = 1,
                             .epoch = epoch,
                             .log_head = applied,
                             .log_persisted = 0,
                             .role = TG_WIRE_HELD_BACKUP,
                             .in_sync = in_sync};
    req.heartbeat.held_count = 1;
    req.heartbeat.held = held;
    grid_state_handle(m, &env, &req, now, scratch, &rep);
    return rep.type == TG_WIRE_ERROR ? (tg_err)rep.error.code : TG_OK;
}

/* pu1 holds partition 1; pu2 and pu3 join empty and become its backups. */
static grid_partition *two_backups(void)
{
    cr_assert_eq(do_register("pu1", 100, (const uint32_t[]){1}, 1, 0), TG_OK);
    cr_assert_eq(do_register("pu2", 200, NULL, 0, 0), TG_OK);
    cr_assert_eq(do_register("pu3", 200, NULL, 0, 0), TG_OK);
    grid_partition *p = grid_partition_find(m, 1);
    uint64_t adopted = p->epoch;
    cr_assert_eq(grid_state_place(m, 2, place_scratch()), 1);
    cr_assert_eq(p->backup_count, 2);
    cr_assert_eq(p->epoch, adopted + 1, "new backups raise the partition's epoch");
    cr_assert(p->dirty);
    cr_assert_eq(grid_state_place(m, 2, place_scratch()), 0, "a valid placement stays");
    grid_state_persisted(m, m->epoch + 1);
    return p;
}

/* pu1 falls silent; pu2 and pu3 send the reports given until 1010 ms,
 * when pu1 is declared dead. */
static void primary_dies(uint64_t epoch, uint64_t applied2, bool sync2, uint64_t applied3,
                         bool sync3)
{
    for (int64_t t = 0; t <= 1010 * MS; t += 10 * MS) {
        grid_detector_pass(&det, t);
        if (t % (100 * MS) == 0) {
            cr_assert_eq(backup_heartbeat("pu2", epoch, applied2, sync2, t), TG_OK);
            cr_assert_eq(backup_heartbeat("pu3", epoch, applied3, sync3, t), TG_OK);
        }
    }
    cr_assert_eq(grid_state_detect(m, &det, 1010 * MS), 1);
}

Test(manager_state, a_dead_primary_is_replaced_by_its_in_sync_backup_with_the_most_records)
{
    grid_partition *p = two_backups();
    uint64_t epoch = p->epoch;
    primary_dies(epoch, 40, true, 41, true);
    cr_assert_eq(grid_state_place(m, 2, place_scratch()), 1);
    cr_assert_eq(p->primary, grid_member_find(m, "pu3"), "41 records applied beat 40");
    cr_assert_eq(p->epoch, epoch + 1);
    cr_assert_eq(p->backup_count, 1, "pu2 stays a backup; the dead unit is none");
    cr_assert_eq(p->backups[0], grid_member_find(m, "pu2"));
    cr_assert(p->dirty && m->changed);
}

Test(manager_state, a_backup_that_is_not_in_sync_is_never_promoted)
{
    grid_partition *p = two_backups();
    uint64_t epoch = p->epoch;
    primary_dies(epoch, 40, true, 99, false);
    cr_assert_eq(grid_state_place(m, 2, place_scratch()), 1);
    cr_assert_eq(p->primary, grid_member_find(m, "pu2"),
                 "pu3 has more records, not all acked ones");
    grid_state_persisted(m, m->epoch + 1);

    /* Neither in sync: the partition waits for its primary. */
    teardown();
    setup();
    p = two_backups();
    epoch = p->epoch;
    int32_t dead = p->primary;
    primary_dies(epoch, 40, false, 41, false);
    cr_assert_eq(grid_state_place(m, 2, place_scratch()), 0);
    cr_assert_eq(p->primary, dead);
    cr_assert_eq(p->epoch, epoch);
    const tg_msg *s = status_at(1010 * MS);
    cr_assert_eq(s->grid_status_ok.placements[0].state, TG_PLACEMENT_PRIMARY_DEAD);
}

/* A backup that restarted reports nothing in sync until its own heartbeat
 * says so: its old process's report must not promote the new one, which
 * its primary may still be catching up (acknowledging holds without it). */
Test(manager_state, a_restarted_backup_is_not_promoted_on_its_old_processes_report)
{
    grid_partition *p = two_backups();
    uint64_t epoch = p->epoch;
    int32_t dead = p->primary;
    for (int64_t t = 0; t <= 1010 * MS; t += 10 * MS) {
        grid_detector_pass(&det, t);
        if (t == 0) {
            cr_assert_eq(backup_heartbeat("pu2", epoch, 40, true, t), TG_OK);
        }
        if (t == 500 * MS) {
            cr_assert_eq(do_register("pu2", 300, NULL, 0, t), TG_OK); /* a new process */
        }
        if (t % (100 * MS) == 0) {
            cr_assert_eq(backup_heartbeat("pu3", epoch, 41, false, t), TG_OK);
        }
    }
    cr_assert_eq(grid_state_detect(m, &det, 1010 * MS), 1);
    cr_assert_eq(grid_state_place(m, 2, place_scratch()), 0);
    cr_assert_eq(p->primary, dead, "promoted on a report of a process that is gone");
    cr_assert_eq(p->epoch, epoch);
}

Test(manager_state, a_backup_ahead_of_the_maps_epoch_or_dead_is_not_promoted)
{
    grid_partition *p = two_backups();
    uint64_t epoch = p->epoch;
    int32_t dead = p->primary;
    primary_dies(epoch + 1, 40, true, 41, true); /* an epoch the map never gave */
    cr_assert_eq(grid_state_place(m, 2, place_scratch()), 0);
    cr_assert_eq(p->primary, dead);
}

Test(manager_state, a_backup_report_never_adopts_a_partition)
{
    cr_assert_eq(do_register("pu2", 200, NULL, 0, 0), TG_OK);
    cr_assert_eq(backup_heartbeat("pu2", 1, 40, true, 10 * MS), TG_OK);
    cr_assert_eq(grid_partition_find(m, 1)->primary, -1);
}

/* ---- Moving partitions between live units (manager_move.c) --------------------- */

/* Sends one of the moving requests; its error code, or TG_OK with rep a
 * moves_ok reply. */
static tg_err moves_request(tg_wire_type type, const char *name, uint32_t partition_id)
{
    memset(&req, 0, sizeof(req));
    req.type = type;
    if (type == TG_WIRE_PARTITION_MOVE) {
        req.partition_move.partition_id = partition_id;
        snprintf(req.partition_move.to, sizeof(req.partition_move.to), "%s", name);
    } else if (type == TG_WIRE_PU_DRAIN) {
        snprintf(req.pu_drain.name, sizeof(req.pu_drain.name), "%s", name);
    } else if (type == TG_WIRE_PU_ADD) {
        snprintf(req.pu_add.name, sizeof(req.pu_add.name), "%s", name);
    }
    grid_state_handle(m, &env, &req, 0, scratch, &rep);
    if (rep.type == TG_WIRE_ERROR) {
        return (tg_err)rep.error.code;
    }
    cr_assert_eq(rep.type, tg_wire_reply_type(type));
    return TG_OK;
}

/* pu1 holds partition 1, pu2 joins empty; no backups wanted by placement. */
static grid_partition *one_primary_one_idle(void)
{
    cr_assert_eq(do_register("pu1", 100, (const uint32_t[]){1}, 1, 0), TG_OK);
    cr_assert_eq(do_register("pu2", 200, NULL, 0, 0), TG_OK);
    grid_state_persisted(m, m->epoch + 1);
    return grid_partition_find(m, 1);
}

Test(manager_state, a_move_fills_the_target_as_a_backup_then_hands_it_the_primary)
{
    env.backups = 1;
    grid_partition *p = one_primary_one_idle();
    uint64_t epoch = p->epoch;
    int32_t pu1 = grid_member_find(m, "pu1"), pu2 = grid_member_find(m, "pu2");
    cr_assert_eq(moves_request(TG_WIRE_PARTITION_MOVE, "pu2", 1), TG_OK);
    cr_assert_eq(rep.moves_ok.started, 1);
    cr_assert_eq(rep.moves_ok.pending, 1);
    cr_assert_eq(p->backup_count, 1);
    cr_assert_eq(p->backups[0], pu2, "the target is filled as a backup first");
    cr_assert_eq(p->epoch, epoch + 1);
    cr_assert_eq(moves_request(TG_WIRE_PARTITION_MOVE, "pu2", 1), TG_OK);
    cr_assert_eq(rep.moves_ok.started, 0, "asked again: the same move goes on");

    grid_move ready[4];
    cr_assert_eq(grid_moves_ready(m, ready, 4), 0, "no report from the target yet");
    cr_assert_eq(backup_heartbeat("pu2", epoch, 9, true, 10 * MS), TG_OK);
    cr_assert_eq(grid_moves_ready(m, ready, 4), 0, "in sync at the epoch before the move");
    cr_assert_eq(backup_heartbeat("pu2", epoch + 1, 9, false, 20 * MS), TG_OK);
    cr_assert_eq(grid_moves_ready(m, ready, 4), 0, "being filled");
    cr_assert_eq(backup_heartbeat("pu2", epoch + 1, 9, true, 30 * MS), TG_OK);
    cr_assert_eq(grid_moves_ready(m, ready, 4), 1);
    cr_assert_eq(grid_move_handover(m, 1, 1), TG_OK);
    cr_assert_eq(p->primary, pu2);
    cr_assert_eq(p->epoch, epoch + 2, "the handover fences the old primary");
    cr_assert_eq(p->backup_count, 1);
    cr_assert_eq(p->backups[0], pu1, "the old primary stays a backup");
    cr_assert_eq(m->move_count, 0);
    cr_assert_eq(grid_move_handover(m, 1, 1), TG_ENOT_FOUND);
}

/* The primary dies while a move fills its target: the move is given up
 * without a new epoch, so the backup that was in sync at the move's epoch
 * is promoted (a new epoch would leave its report behind, and it could
 * only be in sync again under a live primary). */
Test(manager_state, a_primary_that_dies_during_a_move_is_replaced_by_its_in_sync_backup)
{
    cr_assert_eq(do_register("pu1", 100, (const uint32_t[]){1}, 1, 0), TG_OK);
    cr_assert_eq(do_register("pu2", 200, NULL, 0, 0), TG_OK);
    cr_assert_eq(do_register("pu3", 200, NULL, 0, 0), TG_OK);
    grid_partition *p = grid_partition_find(m, 1);
    cr_assert_eq(grid_state_place(m, 1, place_scratch()), 1);
    cr_assert_eq(p->backup_count, 1);
    grid_state_persisted(m, m->epoch + 1);
    const char *backup = m->members[p->backups[0]].name;
    const char *target = strcmp(backup, "pu2") == 0 ? "pu3" : "pu2";
    cr_assert_eq(moves_request(TG_WIRE_PARTITION_MOVE, target, 1), TG_OK);
    uint64_t epoch = p->epoch; /* the move's: its target is a second backup now */
    cr_assert_eq(p->backup_count, 2);
    for (int64_t t = 0; t <= 1010 * MS; t += 10 * MS) {
        grid_detector_pass(&det, t);
        if (t % (100 * MS) == 0) {
            cr_assert_eq(backup_heartbeat(backup, epoch, 40, true, t), TG_OK);
            cr_assert_eq(backup_heartbeat(target, epoch, 3, false, t), TG_OK);
        }
    }
    cr_assert_eq(grid_state_detect(m, &det, 1010 * MS), 1, "pu1 is dead");
    grid_moves_pass(m, 1, 60000, 1010 * MS); /* the loop's order: moves, then placement */
    cr_assert_eq(m->move_count, 0, "the move is given up");
    grid_state_place(m, 1, place_scratch());
    cr_assert_eq(p->primary, grid_member_find(m, backup), "the in-sync backup takes over");
}

Test(manager_state, moves_that_make_no_sense_are_refused_with_their_reason)
{
    one_primary_one_idle();
    cr_assert_eq(moves_request(TG_WIRE_PARTITION_MOVE, "pu1", 1), TG_EPARTITION_STATE);
    cr_assert(strstr(rep.error.message, "primary already") != NULL, "%s", rep.error.message);
    cr_assert_eq(moves_request(TG_WIRE_PARTITION_MOVE, "nobody", 1), TG_ENOT_FOUND);
    cr_assert_eq(moves_request(TG_WIRE_PARTITION_MOVE, "pu2", 99), TG_ENOT_FOUND);
    cr_assert_eq(moves_request(TG_WIRE_PARTITION_MOVE, "pu1", 2), TG_EPARTITION_STATE,
                 "partition 2 has no primary");
    cr_assert_eq(moves_request(TG_WIRE_PU_ADD, "nobody", 0), TG_ENOT_FOUND);
    cr_assert_eq(m->move_count, 0, "nothing was started");
}

Test(manager_state, a_move_is_given_up_when_its_target_dies_and_its_backup_dropped)
{
    grid_partition *p = one_primary_one_idle();
    cr_assert_eq(moves_request(TG_WIRE_PARTITION_MOVE, "pu2", 1), TG_OK);
    uint64_t epoch = p->epoch;
    for (int64_t t = 0; t <= 1010 * MS; t += 10 * MS) {
        grid_detector_pass(&det, t);
        if (t % (100 * MS) == 0) {
            cr_assert_eq(do_heartbeat("pu1", 100, (const uint32_t[]){1}, 1, epoch, t), TG_OK);
        }
    }
    cr_assert_eq(grid_state_detect(m, &det, 1010 * MS), 1, "pu2 is dead");
    cr_assert_eq(grid_moves_pass(m, 0, 0, 1010 * MS), 1);
    cr_assert_eq(m->move_count, 0);
    cr_assert_eq(p->backup_count, 0, "the backup the move added is dropped");
    cr_assert_eq(p->epoch, epoch + 1);
    cr_assert_eq(p->primary, grid_member_find(m, "pu1"));
}

Test(manager_state, a_move_that_takes_too_long_is_given_up)
{
    grid_partition *p = one_primary_one_idle();
    env.move_timeout_ms = 1000;
    cr_assert_eq(moves_request(TG_WIRE_PARTITION_MOVE, "pu2", 1), TG_OK);
    cr_assert_eq(grid_moves_pass(m, 0, 1000, 999 * MS), 0, "not yet");
    cr_assert_eq(grid_moves_pass(m, 0, 1000, 1000 * MS), 1);
    cr_assert_eq(m->move_count, 0);
    cr_assert_eq(p->backup_count, 0);
}

Test(manager_state, rebalance_moves_primaries_until_units_differ_by_one_at_most)
{
    cr_assert_eq(do_register("pu1", 100, (const uint32_t[]){1, 2, 3}, 3, 0), TG_OK);
    cr_assert_eq(do_register("pu2", 200, NULL, 0, 0), TG_OK);
    grid_state_persisted(m, m->epoch + 1);
    cr_assert_eq(moves_request(TG_WIRE_REBALANCE, NULL, 0), TG_OK);
    cr_assert_eq(rep.moves_ok.started, 1, "3 and 0 become 2 and 1");
    cr_assert_eq(moves_request(TG_WIRE_REBALANCE, NULL, 0), TG_OK);
    cr_assert_eq(rep.moves_ok.started, 0, "a move in progress counts as done");
    cr_assert_eq(rep.moves_ok.pending, 1);
    cr_assert_eq(m->moves[0].target, grid_member_find(m, "pu2"));
    cr_assert_eq(do_register("pu3", 300, NULL, 0, 0), TG_OK);
    cr_assert_eq(moves_request(TG_WIRE_PU_ADD, "pu3", 0), TG_OK);
    cr_assert_eq(rep.moves_ok.started, 1, "2, 1 and 0 become 1, 1 and 1");
    cr_assert_eq(m->moves[1].target, grid_member_find(m, "pu3"));
}

Test(manager_state, a_drain_moves_everything_away_then_lets_the_unit_leave)
{
    grid_partition *p = one_primary_one_idle();
    int32_t pu1 = grid_member_find(m, "pu1"), pu2 = grid_member_find(m, "pu2");
    cr_assert_eq(moves_request(TG_WIRE_PU_DRAIN, "pu1", 0), TG_OK);
    cr_assert_eq(rep.moves_ok.held, 1);
    cr_assert(m->members[pu1].draining);
    cr_assert_eq(grid_moves_pass(m, 1, 0, 0), 1, "a move starts");
    cr_assert_eq(m->moves[0].target, pu2);
    cr_assert_eq(backup_heartbeat("pu2", p->epoch, 9, true, 10 * MS), TG_OK);
    grid_move ready[4];
    cr_assert_eq(grid_moves_ready(m, ready, 4), 1);
    cr_assert_eq(grid_move_handover(m, 1, 1), TG_OK);
    cr_assert_eq(p->primary, pu2);
    cr_assert_eq(p->backup_count, 0, "a draining unit is kept as no backup");
    grid_moves_pass(m, 1, 0, 20 * MS);
    cr_assert_eq(m->members[pu1].state, TG_MEMBER_LEAVING, "drained: told to stop");
    cr_assert_eq(moves_request(TG_WIRE_PU_DRAIN, "pu1", 0), TG_OK);
    cr_assert_eq(rep.moves_ok.held, 0);
}

Test(manager_state, a_drain_with_nowhere_to_go_is_refused)
{
    cr_assert_eq(do_register("pu1", 100, (const uint32_t[]){1}, 1, 0), TG_OK);
    grid_state_persisted(m, m->epoch + 1);
    cr_assert_eq(moves_request(TG_WIRE_PU_DRAIN, "pu1", 0), TG_EPARTITION_STATE);
    cr_assert(strstr(rep.error.message, "no other live unit") != NULL, "%s", rep.error.message);
    cr_assert(!m->members[grid_member_find(m, "pu1")].draining, "nothing changed");
}

Test(manager_state, status_reports_the_backups_lag_and_how_many_are_in_sync)
{
    grid_partition *p = two_backups();
    const tg_wire_placement *w = &status_at(0)->grid_status_ok.placements[0];
    cr_assert_eq(w->backups.count, 2);
    cr_assert_eq(w->backups_reported, 0, "no backup has reported yet");
    cr_assert_eq(backup_heartbeat("pu2", p->epoch, 40, true, 10 * MS), TG_OK);
    cr_assert_eq(backup_heartbeat("pu3", p->epoch, 35, false, 10 * MS), TG_OK);
    w = &status_at(10 * MS)->grid_status_ok.placements[0];
    cr_assert_eq(w->backups_reported, 2);
    cr_assert_eq(w->backups_in_sync, 1);
    cr_assert_eq(w->backups_applied, 35, "the slowest backup sets the lag");
    cr_assert_eq(backup_heartbeat("pu3", p->epoch - 1, 50, true, 20 * MS), TG_OK);
    w = &status_at(20 * MS)->grid_status_ok.placements[0];
    cr_assert_eq(w->backups_reported, 1, "a report of an older epoch does not count");
    cr_assert_eq(w->backups_in_sync, 1);
    cr_assert_eq(w->backups_applied, 40);
}

Test(manager_state, a_backup_in_sync_only_at_an_older_epoch_is_never_promoted)
{
    grid_partition *p = two_backups();
    uint64_t epoch = p->epoch;
    primary_dies(epoch - 1, 99, true, 99, true);
    cr_assert_eq(grid_state_place(m, 2, place_scratch()), 0,
                 "in sync at an older epoch: the map may have left them out since");
    cr_assert_eq(p->epoch, epoch);
    const tg_msg *s = status_at(1010 * MS);
    cr_assert_eq(s->grid_status_ok.placements[0].state, TG_PLACEMENT_PRIMARY_DEAD);
}

/* ---- A backup its primary cannot replicate to (grid_state_drop_stalled) ------ */

/* From `from` to `until`, a pass every 10 ms and heartbeats every 100 ms:
 * pu1 (unless silent) reports head 9 at epoch, pu2 and pu3 the applied
 * records and sync flags given (pu3 applies one more every 400 ms when
 * moving3).  Returns the time of the first drop, or -1. */
static int64_t run_reports(int64_t from, int64_t until, bool silent, uint64_t applied2, bool sync2,
                           uint64_t applied3, bool sync3, bool moving3)
{
    grid_partition *p = grid_partition_find(m, 1);
    uint64_t epoch = p->epoch;
    int64_t dropped_at = -1;
    for (int64_t t = from; t <= until; t += 10 * MS) {
        grid_detector_pass(&det, t);
        if (t % (100 * MS) == 0) {
            if (!silent) {
                cr_assert_eq(do_heartbeat("pu1", 100, (const uint32_t[]){1}, 1, epoch, t), TG_OK);
            }
            uint64_t a3 = applied3 + (moving3 ? (uint64_t)(t / (400 * MS)) : 0);
            cr_assert_eq(backup_heartbeat("pu2", epoch, applied2, sync2, t), TG_OK);
            cr_assert_eq(backup_heartbeat("pu3", epoch, a3, sync3, t), TG_OK);
        }
        if (grid_state_drop_stalled(m, &det, 1000, t) > 0 && dropped_at < 0) {
            dropped_at = t;
        }
    }
    return dropped_at;
}

static bool backup_of(const grid_partition *p, const char *name)
{
    for (uint32_t b = 0; b < p->backup_count; b++) {
        if (p->backups[b] == grid_member_find(m, name)) {
            return true;
        }
    }
    return false;
}

Test(manager_state, an_in_sync_backup_that_applies_nothing_while_its_primary_is_ahead_is_dropped)
{
    grid_partition *p = two_backups();
    uint64_t epoch = p->epoch;
    /* pu2 stays at 5 while pu1's head is 9; pu3 keeps up. */
    int64_t at = run_reports(0, 2000 * MS, false, 5, true, 9, true, false);
    cr_assert(at >= 1000 * MS && at <= 1100 * MS, "dropped at %lld ms, wanted after 1 s",
              (long long)(at / MS));
    cr_assert(!backup_of(p, "pu2") && backup_of(p, "pu3"));
    cr_assert_eq(p->epoch, epoch + 1, "the primary must see that it waits for pu2 no more");
    cr_assert(p->dirty && m->changed);
    /* No copy on pu2 for a while: the new backup goes to another unit. */
    cr_assert_eq(grid_state_place(m, 2, place_scratch()), 0, "pu2 must not get it back at once");
    cr_assert_eq(do_register("pu4", 200, NULL, 0, 2000 * MS), TG_OK);
    cr_assert_eq(grid_state_place(m, 2, place_scratch()), 1);
    cr_assert(backup_of(p, "pu4") && !backup_of(p, "pu2"));
}

Test(manager_state, a_dropped_backup_may_be_placed_again_once_its_shun_is_over)
{
    grid_partition *p = two_backups();
    int64_t at = run_reports(0, 1500 * MS, false, 5, true, 9, true, false);
    cr_assert(at > 0 && !backup_of(p, "pu2"));
    int64_t over = at + (int64_t)GRID_BACKUP_SHUN_MS * MS;
    for (int64_t t = 1600 * MS; t < over; t += 500 * MS) {
        grid_detector_pass(&det, t);
        grid_state_drop_stalled(m, &det, 1000, t);
        cr_assert_eq(grid_state_place(m, 2, place_scratch()), 0, "placed on pu2 at %lld ms",
                     (long long)(t / MS));
    }
    grid_detector_pass(&det, over);
    cr_assert_eq(grid_state_drop_stalled(m, &det, 1000, over), 0);
    cr_assert_eq(grid_state_place(m, 2, place_scratch()), 1);
    cr_assert(backup_of(p, "pu2"), "the shun is over: pu2 is the one unit left");
    /* A fresh start: its old report does not count against it. */
    cr_assert_eq(grid_state_drop_stalled(m, &det, 1000, over), 0);
    cr_assert(backup_of(p, "pu2"));
}

Test(manager_state, backups_a_silent_primary_left_behind_stay_for_failover)
{
    grid_partition *p = two_backups();
    uint64_t epoch = p->epoch;
    cr_assert_eq(do_heartbeat("pu1", 100, (const uint32_t[]){1}, 1, epoch, 0), TG_OK);
    /* pu1 (head 9) falls silent; its backups stay at 5 and 6, in sync. */
    cr_assert_eq(run_reports(10 * MS, 1010 * MS, true, 5, true, 6, true, false), -1,
                 "a backup of a silent primary was dropped");
    cr_assert_eq(grid_state_detect(m, &det, 1010 * MS), 1);
    cr_assert_eq(grid_state_place(m, 2, place_scratch()), 1);
    cr_assert_eq(p->primary, grid_member_find(m, "pu3"), "the failover needs them");
}

Test(manager_state, backups_being_filled_or_catching_up_are_not_dropped)
{
    grid_partition *p = two_backups();
    /* pu2 is filled (not in sync, applies nothing until the transfer ends);
     * pu3 is behind but applies something between its reports. */
    cr_assert_eq(run_reports(0, 3000 * MS, false, 0, false, 2, true, true), -1);
    cr_assert(backup_of(p, "pu2") && backup_of(p, "pu3"));
}
