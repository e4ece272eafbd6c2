/*
 * ctl.c — tixgridctl's requests to the manager and what it prints (ctl.h).
 *
 * The table is for people: one section for units, one for partitions,
 * columns as wide as their widest cell, "-" for nothing, ages in ms or s.
 * The JSON is for programs: every field of grid_status_ok under a stable
 * name, null for nothing, numbers as numbers (all below 2^53).
 *
 * The REQ socket is never closed: it may be redialling a manager's address
 * where nobody listens (a standby), and nng 1.5.2 can hang in nng_close on
 * such a socket; the process exits right after.
 */
#include "ctl.h"

#include "tixgrid/cli.h"
#include "tixgrid/clock.h"

#include <jansson.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/util/platform.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROGRAM "tixgridctl"

static const char *const member_states[TG_MEMBER_STATE_COUNT] = {"alive", "dead", "leaving"};
static const char *const placement_states[TG_PLACEMENT_STATE_COUNT] = {
    "serving", "unplaced", "primary_dead", "not_loaded", "epoch_behind"};

static tg_wire_member members[TG_GRID_MEMBERS_MAX];
static tg_wire_placement placements[TG_GRID_PARTITIONS_MAX];
static tg_msg reply;

/* ---- Asking ------------------------------------------------------------------ */

/* Dials every address; exit code 64 when one cannot be dialled. */
static int dial_all(nng_socket s, const char *urls)
{
    char url[TG_URL_BYTES];
    for (const char *p = urls; p != NULL;) {
        const char *end = strchr(p, ',');
        size_t n = end != NULL ? (size_t)(end - p) : strlen(p);
        if (n == 0 || n >= sizeof(url)) {
            return tg_cli_usage_error(PROGRAM,
                                      "--manager takes comma-separated addresses of "
                                      "at most %u bytes",
                                      TG_URL_BYTES - 1);
        }
        memcpy(url, p, n);
        url[n] = '\0';
        int rv = nng_dial(s, url, NULL, NNG_FLAG_NONBLOCK);
        if (rv != 0) {
            return tg_cli_usage_error(PROGRAM, "cannot dial the manager at '%s': %s", url,
                                      nng_strerror(rv));
        }
        p = end != NULL ? end + 1 : NULL;
    }
    return 0;
}

/* The one socket to the managers, opened and dialled at the first request
 * (commands that follow a move ask many times); an exit code. */
static int socket_get(const ctl_options *o, nng_socket *out)
{
    static nng_socket s;
    static bool open;
    if (open) {
        *out = s;
        return 0;
    }
    if (nng_req0_open(&s) != 0) {
        fprintf(stderr, "%s: out of memory\n", PROGRAM);
        return TG_EXIT_FAILURE;
    }
    nng_socket_set_ms(s, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
    nng_socket_set_ms(s, NNG_OPT_RECONNMINT, 20);
    nng_socket_set_ms(s, NNG_OPT_RECONNMAXT, 200);
    nng_socket_set_ms(s, NNG_OPT_SENDTIMEO, (nng_duration)o->timeout_ms);
    nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, (nng_duration)o->timeout_ms);
    nng_socket_set_size(s, NNG_OPT_RECVMAXSZ, TG_WIRE_MESSAGE_BYTES_MAX + 4096u);
    open = true;
    *out = s;
    return dial_all(s, o->manager_urls);
}

static void refusal_print(void)
{
    fprintf(stderr, "%s: the manager refused (%s): %s\n", PROGRAM,
            tg_errname((tg_err)reply.error.code), reply.error.message);
}

/* Sends req and decodes the reply into `reply`; an exit code.  A refusal
 * is printed when report_refusal. */
static int ask_as(const ctl_options *o, const tg_msg *req, bool report_refusal)
{
    nng_socket s;
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    if (tg_wire_encode(req, &buf, NULL) != TG_OK) {
        fprintf(stderr, "%s: out of memory\n", PROGRAM);
        return TG_EXIT_FAILURE;
    }
    int code = socket_get(o, &s);
    void *body = NULL;
    size_t len = 0;
    int rv = code == 0 ? nng_send(s, buf.data, buf.size, 0) : 0;
    if (code == 0 && rv == 0) {
        rv = nng_recv(s, &body, &len, NNG_FLAG_ALLOC);
    }
    msgpack_sbuffer_destroy(&buf);
    if (code == 0 && rv != 0) {
        fprintf(stderr, "%s: no manager answered at %s within %u ms (%s)\n", PROGRAM,
                o->manager_urls, o->timeout_ms, nng_strerror(rv));
        return TG_EXIT_UNAVAILABLE;
    }
    if (code != 0) {
        return code;
    }
    const char *why = NULL;
    tg_wire_space space = {.members = members,
                           .members_capacity = TG_GRID_MEMBERS_MAX,
                           .placements = placements,
                           .placements_capacity = TG_GRID_PARTITIONS_MAX};
    tg_err err = tg_wire_decode(body, len, &space, &reply, &why);
    nng_free(body, len);
    if (err == TG_OK && reply.type != tg_wire_reply_type(req->type) &&
        reply.type != TG_WIRE_ERROR) {
        err = TG_EPROTO;
        why = "not the reply to the request";
    }
    if (err != TG_OK) {
        fprintf(stderr, "%s: the manager's reply is malformed: %s\n", PROGRAM, why);
        return TG_EXIT_FAILURE;
    }
    if (reply.type == TG_WIRE_ERROR) {
        if (report_refusal) {
            refusal_print();
        }
        return TG_EXIT_FAILURE;
    }
    return TG_EXIT_OK;
}

static int ask(const ctl_options *o, const tg_msg *req)
{
    return ask_as(o, req, true);
}

/* ---- The table ------------------------------------------------------------------ */

#define CELL_BYTES  64u
#define COLUMNS_MAX 10u

typedef struct {
    uint32_t columns;
    uint32_t rows; /* the header is row 0 */
    char (*cells)[COLUMNS_MAX][CELL_BYTES];
    size_t width[COLUMNS_MAX];
} table;

static void table_cell(table *t, uint32_t row, uint32_t col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void table_cell(table *t, uint32_t row, uint32_t col, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->cells[row][col], CELL_BYTES, fmt, ap);
    va_end(ap);
    size_t n = strlen(t->cells[row][col]);
    t->width[col] = n > t->width[col] ? n : t->width[col];
}

static void table_print(const table *t)
{
    for (uint32_t r = 0; r < t->rows; r++) {
        for (uint32_t c = 0; c < t->columns; c++) {
            bool last = c + 1 == t->columns;
            printf("%-*s%s", last ? 0 : (int)t->width[c], t->cells[r][c], last ? "\n" : "  ");
        }
    }
}

static void age_text(int64_t ms, char *out, size_t size)
{
    if (ms < 0) {
        snprintf(out, size, "never");
    } else if (ms < 10000) {
        snprintf(out, size, "%lld ms", (long long)ms);
    } else {
        snprintf(out, size, "%.1f s", (double)ms / 1000.0);
    }
}

static const char *member_name(const __typeof__(reply.grid_status_ok) *s, int64_t index)
{
    return index >= 0 && (uint64_t)index < s->member_count ? s->members[index].name : "-";
}

static void print_members(const __typeof__(reply.grid_status_ok) *s, table *t)
{
    static const char *const head[] = {"UNIT", "ZONE", "STATE", "HEARD", "MAP", "REP", "PUB"};
    t->columns = 7;
    t->rows = 1 + s->member_count;
    memset(t->width, 0, sizeof(t->width));
    for (uint32_t c = 0; c < t->columns; c++) {
        table_cell(t, 0, c, "%s", head[c]);
    }
    for (uint32_t i = 0; i < s->member_count; i++) {
        const tg_wire_member *m = &s->members[i];
        char age[32];
        age_text(m->heard_age_ms, age, sizeof(age));
        table_cell(t, i + 1, 0, "%s", m->name);
        table_cell(t, i + 1, 1, "%s", m->zone[0] != '\0' ? m->zone : "-");
        table_cell(t, i + 1, 2, "%s", member_states[m->state]);
        table_cell(t, i + 1, 3, "%s", age);
        table_cell(t, i + 1, 4, "%llu", (unsigned long long)m->map_epoch);
        table_cell(t, i + 1, 5, "%s", m->rep_url[0] != '\0' ? m->rep_url : "-");
        table_cell(t, i + 1, 6, "%s", m->pub_url[0] != '\0' ? m->pub_url : "-");
    }
    table_print(t);
}

static void backups_text(const __typeof__(reply.grid_status_ok) *s, const tg_wire_placement *p,
                         char *out, size_t size)
{
    size_t at = 0;
    out[0] = '\0';
    for (uint32_t b = 0; b < p->backups.count && at < size; b++) {
        int n = snprintf(out + at, size - at, "%s%s", b > 0 ? "," : "",
                         member_name(s, p->backups.members[b]));
        at += n > 0 ? (size_t)n : 0;
    }
    if (p->backups.count == 0) {
        snprintf(out, size, "-");
    }
}

/* Records the slowest reporting backup is behind the primary, and how many
 * backups are in sync: "0 (1/1 in sync)"; "-" without backups, "?" for
 * the lag while none has reported at the partition's epoch. */
static void repl_text(const tg_wire_placement *p, char *out, size_t size)
{
    if (p->backups.count == 0) {
        snprintf(out, size, "-");
    } else if (p->backups_reported == 0) {
        snprintf(out, size, "? (0/%u in sync)", p->backups.count);
    } else {
        uint64_t lag = p->log_head > p->backups_applied ? p->log_head - p->backups_applied : 0;
        snprintf(out, size, "%llu (%u/%u in sync)", (unsigned long long)lag, p->backups_in_sync,
                 p->backups.count);
    }
}

static void print_partitions(const __typeof__(reply.grid_status_ok) *s, table *t)
{
    static const char *const head[] = {"PARTITION",   "EVENT",   "PRIMARY",  "BACKUPS",
                                       "EPOCH",       "STATE",   "LOG HEAD", "PERSISTED",
                                       "PERSIST LAG", "REPL LAG"};
    t->columns = 10;
    t->rows = 1 + s->placement_count;
    memset(t->width, 0, sizeof(t->width));
    for (uint32_t c = 0; c < t->columns; c++) {
        table_cell(t, 0, c, "%s", head[c]);
    }
    for (uint32_t i = 0; i < s->placement_count; i++) {
        const tg_wire_placement *p = &s->placements[i];
        char backups[CELL_BYTES], age[32];
        backups_text(s, p, backups, sizeof(backups));
        age_text((int64_t)(p->unpersisted_age_ms > INT64_MAX ? INT64_MAX : p->unpersisted_age_ms),
                 age, sizeof(age));
        uint32_t r = i + 1;
        table_cell(t, r, 0, "%u", p->partition_id);
        table_cell(t, r, 1, "%llu", (unsigned long long)p->event_id);
        table_cell(t, r, 2, "%s", member_name(s, p->primary));
        table_cell(t, r, 3, "%s", backups);
        table_cell(t, r, 4, "%llu", (unsigned long long)p->epoch);
        table_cell(t, r, 5, "%s", placement_states[p->state]);
        table_cell(t, r, 6, "%llu", (unsigned long long)p->log_head);
        table_cell(t, r, 7, "%llu", (unsigned long long)p->log_persisted);
        table_cell(t, r, 8, "%llu (%s)", (unsigned long long)(p->log_head - p->log_persisted), age);
        repl_text(p, backups, sizeof(backups));
        table_cell(t, r, 9, "%s", backups);
    }
    table_print(t);
}

static int print_table(const __typeof__(reply.grid_status_ok) *s)
{
    uint32_t rows =
        1 + (s->placement_count > s->member_count ? s->placement_count : s->member_count);
    table t = {.cells = calloc(rows, sizeof(*t.cells))};
    if (t.cells == NULL) {
        fprintf(stderr, "%s: out of memory\n", PROGRAM);
        return TG_EXIT_FAILURE;
    }
    printf("manager %s, map epoch %llu, heartbeat every %u ms, failure timeout %u ms\n\n",
           s->manager, (unsigned long long)s->map_epoch, s->heartbeat_interval_ms,
           s->failure_timeout_ms);
    print_members(s, &t);
    printf("\n");
    print_partitions(s, &t);
    free(t.cells);
    return TG_EXIT_OK;
}

/* ---- JSON -------------------------------------------------------------------------- */

static json_t *text_or_null(const char *text)
{
    return text[0] != '\0' ? json_string(text) : json_null();
}

static json_t *member_json(const tg_wire_member *m)
{
    return json_pack("{s:s, s:o, s:s, s:o, s:I, s:I, s:s, s:o}", "name", m->name, "zone",
                     text_or_null(m->zone), "state", member_states[m->state], "heard_age_ms",
                     m->heard_age_ms >= 0 ? json_integer(m->heard_age_ms) : json_null(),
                     "incarnation", (json_int_t)m->incarnation, "map_epoch",
                     (json_int_t)m->map_epoch, "rep_url", m->rep_url, "pub_url",
                     text_or_null(m->pub_url));
}

static json_t *placement_json(const __typeof__(reply.grid_status_ok) *s, const tg_wire_placement *p)
{
    json_t *backups = json_array();
    for (uint32_t b = 0; b < p->backups.count; b++) {
        json_array_append_new(backups, json_string(member_name(s, p->backups.members[b])));
    }
    json_t *primary = p->primary >= 0 ? json_string(member_name(s, p->primary)) : json_null();
    json_t *lag = p->backups_reported == 0 ? json_null()
                  : p->log_head > p->backups_applied
                      ? json_integer((json_int_t)(p->log_head - p->backups_applied))
                      : json_integer(0);
    return json_pack(
        "{s:I, s:I, s:o, s:o, s:I, s:s, s:I, s:I, s:I, s:I, s:I, s:o, s:I, s:I}", "partition_id",
        (json_int_t)p->partition_id, "event_id", (json_int_t)p->event_id, "primary", primary,
        "backups", backups, "epoch", (json_int_t)p->epoch, "state", placement_states[p->state],
        "held_epoch", (json_int_t)p->held_epoch, "log_head", (json_int_t)p->log_head,
        "log_persisted", (json_int_t)p->log_persisted, "persistence_lag",
        (json_int_t)(p->log_head - p->log_persisted), "unpersisted_age_ms",
        (json_int_t)(p->unpersisted_age_ms > INT64_MAX ? INT64_MAX : p->unpersisted_age_ms),
        "replication_lag", lag, "backups_reported", (json_int_t)p->backups_reported,
        "backups_in_sync", (json_int_t)p->backups_in_sync);
}

static int print_json(const __typeof__(reply.grid_status_ok) *s)
{
    json_t *ms = json_array(), *ps = json_array();
    for (uint32_t i = 0; i < s->member_count; i++) {
        json_array_append_new(ms, member_json(&s->members[i]));
    }
    for (uint32_t i = 0; i < s->placement_count; i++) {
        json_array_append_new(ps, placement_json(s, &s->placements[i]));
    }
    json_t *root = json_pack("{s:s, s:I, s:I, s:I, s:o, s:o}", "manager", s->manager, "map_epoch",
                             (json_int_t)s->map_epoch, "heartbeat_interval_ms",
                             (json_int_t)s->heartbeat_interval_ms, "failure_timeout_ms",
                             (json_int_t)s->failure_timeout_ms, "members", ms, "partitions", ps);
    char *text = root != NULL ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    if (text == NULL) {
        fprintf(stderr, "%s: out of memory\n", PROGRAM);
        return TG_EXIT_FAILURE;
    }
    printf("%s\n", text);
    free(text);
    return TG_EXIT_OK;
}

/* ---- Commands ------------------------------------------------------------------- */

int ctl_status(const ctl_options *o)
{
    static tg_msg req;
    req.type = TG_WIRE_GRID_STATUS;
    int code = ask(o, &req);
    if (code != TG_EXIT_OK) {
        return code;
    }
    return o->json ? print_json(&reply.grid_status_ok) : print_table(&reply.grid_status_ok);
}

/* ---- Moving partitions ------------------------------------------------------------- */

static bool name_ok(const char *name)
{
    return tg_name_valid(name);
}

static int still_moving(const ctl_options *o, const char *what)
{
    fprintf(stderr,
            "%s: %s is still under way after %u ms; the grid carries on: 'tixgridctl status' "
            "shows where it is\n",
            PROGRAM, what, o->wait_ms);
    return CTL_EXIT_STILL_MOVING;
}

/* True when the status in `reply` shows the partition served by `to`. */
static bool served_by(uint32_t partition_id, const char *to, uint64_t *epoch)
{
    const __typeof__(reply.grid_status_ok) *s = &reply.grid_status_ok;
    for (uint32_t i = 0; i < s->placement_count; i++) {
        const tg_wire_placement *p = &s->placements[i];
        if (p->partition_id == partition_id) {
            *epoch = p->epoch;
            return p->primary >= 0 && strcmp(s->members[p->primary].name, to) == 0 &&
                   p->state == TG_PLACEMENT_SERVING;
        }
    }
    return false;
}

int ctl_move(const ctl_options *o, uint32_t partition_id, const char *to)
{
    static tg_msg req, status;
    if (!name_ok(to)) {
        return tg_cli_usage_error(PROGRAM, "move takes a unit name: 1 to %u of A-Z a-z 0-9 . _ -",
                                  TG_PU_NAME_BYTES - 1);
    }
    req.type = TG_WIRE_PARTITION_MOVE;
    req.partition_move.partition_id = partition_id;
    snprintf(req.partition_move.to, sizeof(req.partition_move.to), "%s", to);
    status.type = TG_WIRE_GRID_STATUS;
    int64_t t0 = tg_mono_ns();
    int code = ask(o, &req);
    uint64_t epoch = 0;
    while (code == TG_EXIT_OK && o->wait_ms > 0) {
        code = ask(o, &status);
        if (code == TG_EXIT_OK && served_by(partition_id, to, &epoch)) {
            printf("partition %u is served by %s at epoch %llu (%lld ms)\n", partition_id, to,
                   (unsigned long long)epoch, (long long)((tg_mono_ns() - t0) / 1000000));
            return TG_EXIT_OK;
        }
        if (tg_mono_ns() - t0 >= (int64_t)o->wait_ms * 1000000) {
            return code == TG_EXIT_OK ? still_moving(o, "the move") : code;
        }
        nng_msleep(CTL_POLL_MS);
    }
    if (code == TG_EXIT_OK) {
        printf("partition %u is moving to %s\n", partition_id, to);
    }
    return code;
}

/* add-pu is usually run right after the unit was started, which may not
 * have registered yet: asked again until it has, within --wait-ms; only
 * then is not_found the answer. */
static int ask_registered(const ctl_options *o, const tg_msg *req, int64_t t0)
{
    for (;;) {
        int code = ask_as(o, req, false);
        bool unknown = code == TG_EXIT_FAILURE && reply.type == TG_WIRE_ERROR &&
                       reply.error.code == TG_ENOT_FOUND;
        if (!unknown || tg_mono_ns() - t0 >= (int64_t)o->wait_ms * 1000000) {
            if (code == TG_EXIT_FAILURE && reply.type == TG_WIRE_ERROR) {
                refusal_print();
            }
            return code;
        }
        nng_msleep(CTL_POLL_MS);
    }
}

/* Asks req until no move is pending (and, for a drain, the unit holds
 * nothing), at most o->wait_ms; then `rebalance` is asked again, which
 * starts nothing new once the grid is balanced. */
static int follow_moves(const ctl_options *o, tg_msg *req, const char *what, uint32_t *started)
{
    int64_t t0 = tg_mono_ns();
    bool drain = req->type == TG_WIRE_PU_DRAIN;
    for (uint32_t round = 0;; round++) {
        int code = req->type == TG_WIRE_PU_ADD ? ask_registered(o, req, t0) : ask(o, req);
        if (code != TG_EXIT_OK && drain && round > 0 && reply.type == TG_WIRE_ERROR &&
            reply.error.code == TG_ENOT_FOUND) {
            return TG_EXIT_OK; /* drained, stopped, and forgotten meanwhile */
        }
        if (code != TG_EXIT_OK) {
            return code;
        }
        /* A drain's moves are started by the manager's passes: report what it held. */
        *started = drain ? (round == 0 ? reply.moves_ok.held : *started)
                         : *started + reply.moves_ok.started;
        bool done = reply.moves_ok.pending == 0 &&
                    (drain ? reply.moves_ok.held == 0 : reply.moves_ok.started == 0);
        if (done || o->wait_ms == 0) {
            return TG_EXIT_OK;
        }
        if (tg_mono_ns() - t0 >= (int64_t)o->wait_ms * 1000000) {
            return still_moving(o, what);
        }
        nng_msleep(CTL_POLL_MS);
        if (req->type == TG_WIRE_PU_ADD) {
            req->type = TG_WIRE_REBALANCE;
        }
    }
}

int ctl_rebalance(const ctl_options *o)
{
    static tg_msg req;
    req.type = TG_WIRE_REBALANCE;
    uint32_t started = 0;
    int code = follow_moves(o, &req, "the rebalance", &started);
    if (code == TG_EXIT_OK) {
        printf(o->wait_ms > 0 ? "balanced: %u partitions moved\n"
                              : "rebalancing: %u partitions moving\n",
               started);
    }
    return code;
}

int ctl_add_pu(const ctl_options *o, const char *name)
{
    static tg_msg req;
    if (!name_ok(name)) {
        return tg_cli_usage_error(PROGRAM, "add-pu takes a unit name: 1 to %u of A-Z a-z 0-9 . _ -",
                                  TG_PU_NAME_BYTES - 1);
    }
    req.type = TG_WIRE_PU_ADD;
    snprintf(req.pu_add.name, sizeof(req.pu_add.name), "%s", name);
    uint32_t started = 0;
    int code = follow_moves(o, &req, "the rebalance onto it", &started);
    if (code == TG_EXIT_OK) {
        printf("%s is in the grid: %u partitions moved %s\n", name, started,
               o->wait_ms > 0 ? "to balance it" : "started moving");
    }
    return code;
}

int ctl_remove_pu(const ctl_options *o, const char *name)
{
    static tg_msg req;
    if (!name_ok(name)) {
        return tg_cli_usage_error(PROGRAM,
                                  "remove-pu takes a unit name: 1 to %u of A-Z a-z 0-9 . _ -",
                                  TG_PU_NAME_BYTES - 1);
    }
    req.type = TG_WIRE_PU_DRAIN;
    snprintf(req.pu_drain.name, sizeof(req.pu_drain.name), "%s", name);
    uint32_t started = 0;
    int code = follow_moves(o, &req, "the drain", &started);
    if (code == TG_EXIT_OK) {
        printf(o->wait_ms > 0 ? "%s is drained (it held %u partitions) and told to stop\n"
                              : "%s is draining (it holds %u partitions)\n",
               name, started);
    }
    return code;
}
