/*
 * seatlist.c — GET /api/seats?event_id=&page=&pageSize=&row=&status=&section=
 *
 * See seats.c for how a page is found without scanning what precedes it.
 * The steps, each one request to a unit chained from the last one's reply:
 * with a status filter, one availability request per partition (per-row
 * counts of that status); then seats_list requests from where the page
 * starts until the page is full or the seats run out — usually one.
 */
#include <stdlib.h>
#include <string.h>

#include "core.h"

#define GW_SEATS_PAGE_SIZE_MAX 20u
#define GW_SEATS_PAGE_MAX 1000000u
#define GW_SEGMENTS_MAX 4096u

typedef struct {
    const gw_layout *l;
    uint32_t first, end;  /* seat range in the partition */
    int32_t row, section; /* the unit's filters (-1: any) */
    uint32_t matches;
} segment;

typedef struct {
    uint64_t event_id;
    const gw_layout *layouts[GW_EVENT_PARTITIONS_MAX];
    uint32_t layout_count;
    int32_t state; /* -1: any */
    const char *row_name, *section_name;
    uint64_t page, size;
    uint32_t *row_counts[GW_EVENT_PARTITIONS_MAX]; /* with a status filter */
    uint32_t counted;                              /* layouts whose counts are in */
    segment *segs;
    uint32_t seg_count;
    uint64_t total;
    uint32_t seg_at, scan_from;
    uint64_t skip_left;
    /* The page, kept as plain data (the request's pool frees it if the
     * client goes away mid-way; JSON is made only for the reply). */
    struct {
        const gw_layout *l;
        uint32_t seat;
        uint64_t word;
    } found[GW_SEATS_PAGE_SIZE_MAX];
    uint32_t found_count;
} list_state;

static void page_send(gw_req *r);

static int32_t section_index(const gw_layout *l, const char *name)
{
    for (uint32_t i = 0; name != NULL && i < l->section_count; i++) {
        if (strcmp(l->sections[i].name, name) == 0) {
            return (int32_t)i;
        }
    }
    return -1;
}

/* Seats of rows [first_row, first_row + n) that match the status. */
static uint32_t rows_matching(const list_state *st, uint32_t li, uint32_t row)
{
    const gw_layout *l = st->layouts[li];
    return st->state >= 0 ? st->row_counts[li][row] : l->rows[row].seat_count;
}

static void segment_add(list_state *st, uint32_t li, uint32_t first, uint32_t end, int32_t row,
                        int32_t section)
{
    const gw_layout *l = st->layouts[li];
    if (st->seg_count == GW_SEGMENTS_MAX || first >= end) {
        return;
    }
    segment *s = &st->segs[st->seg_count++];
    *s = (segment){.l = l, .first = first, .end = end, .row = row, .section = section};
    for (uint32_t k = gw_layout_row_of(l, first); k < l->row_count && l->rows[k].seat_first < end;
         k++) {
        s->matches += rows_matching(st, li, k);
    }
    st->total += s->matches;
}

/* One segment per partition, per section asked for, or per row asked for. */
static void segments_build(list_state *st)
{
    for (uint32_t li = 0; li < st->layout_count; li++) {
        const gw_layout *l = st->layouts[li];
        int32_t sec = section_index(l, st->section_name);
        if (st->section_name != NULL && sec < 0) {
            continue;
        }
        if (st->row_name == NULL && sec < 0) {
            segment_add(st, li, 0, l->seat_count, -1, -1);
        } else if (st->row_name == NULL) {
            const gw_section *s = &l->sections[sec];
            segment_add(st, li, s->seat_first, s->seat_first + s->seat_count, -1, sec);
        }
        for (uint32_t k = 0; st->row_name != NULL && k < l->row_count; k++) {
            const gw_row *rw = &l->rows[k];
            if (strcmp(rw->name, st->row_name) == 0 && (sec < 0 || rw->section == (uint32_t)sec)) {
                segment_add(st, li, rw->seat_first, rw->seat_first + rw->seat_count, (int32_t)k,
                            -1);
            }
        }
    }
}

/* Where the page starts: skips whole segments, then whole rows. */
static void page_locate(list_state *st)
{
    uint64_t skip = (st->page - 1) * st->size;
    st->seg_at = 0;
    while (st->seg_at < st->seg_count && skip >= st->segs[st->seg_at].matches) {
        skip -= st->segs[st->seg_at++].matches;
    }
    if (st->seg_at == st->seg_count) {
        return;
    }
    const segment *s = &st->segs[st->seg_at];
    uint32_t li = 0;
    while (st->layouts[li] != s->l) {
        li++;
    }
    uint32_t k = gw_layout_row_of(s->l, s->first);
    st->scan_from = s->first;
    for (; k < s->l->row_count && s->l->rows[k].seat_first < s->end; k++) {
        uint32_t m = rows_matching(st, li, k);
        st->scan_from = s->l->rows[k].seat_first > s->first ? s->l->rows[k].seat_first : s->first;
        if (skip < m) {
            break;
        }
        skip -= m;
    }
    if (st->state < 0) {
        st->scan_from += (uint32_t)skip; /* every seat of the row matches */
        skip = 0;
    }
    st->skip_left = skip;
}

static void page_reply(gw_req *r)
{
    list_state *st = r->state;
    json_t *items = json_array();
    for (uint32_t i = 0; i < st->found_count; i++) {
        json_array_append_new(items, gw_seat_json(st->found[i].l, st->found[i].seat,
                                                  &st->found[i].word));
    }
    gw_reply_json(r, 200, json_pack("{s:I,s:I,s:I,s:I,s:o}", "event_id", (json_int_t)st->event_id,
                                    "page", (json_int_t)st->page, "pageSize",
                                    (json_int_t)st->size, "total", (json_int_t)st->total, "items",
                                    items));
}

static void page_done(gw_req *r, tg_err err, const tg_msg *reply)
{
    list_state *st = r->state;
    const segment *s = &st->segs[st->seg_at];
    if (err != TG_OK) {
        gw_reply_grid_error(r, err, reply, s->l->partition_id);
        return;
    }
    const __typeof__(reply->seats_list_ok) *ok = &reply->seats_list_ok;
    for (uint32_t i = 0; i < ok->seat_count && st->found_count < st->size; i++) {
        if (st->skip_left > 0) {
            st->skip_left--;
            continue;
        }
        st->found[st->found_count].l = s->l;
        st->found[st->found_count].seat = ok->seats[i].seat_id;
        st->found[st->found_count++].word = ok->seats[i].word;
    }
    st->scan_from = ok->next_seat;
    if (st->found_count < st->size && st->scan_from >= s->end) {
        if (++st->seg_at < st->seg_count) {
            st->scan_from = st->segs[st->seg_at].first;
        }
    }
    if (st->found_count == st->size || st->seg_at == st->seg_count) {
        page_reply(r);
        return;
    }
    page_send(r);
}

static void page_send(gw_req *r)
{
    list_state *st = r->state;
    const segment *s = &st->segs[st->seg_at];
    uint64_t want = st->skip_left + st->size - st->found_count;
    tg_msg msg = {.type = TG_WIRE_SEATS_LIST};
    msg.seats_list.partition_id = s->l->partition_id;
    msg.seats_list.first_seat = st->scan_from;
    msg.seats_list.count = want < TG_WIRE_SEATS_LIST_MAX ? (uint32_t)want : TG_WIRE_SEATS_LIST_MAX;
    msg.seats_list.state = st->state;
    msg.seats_list.row = s->row;
    msg.seats_list.section = s->section;
    tg_err err = gw_grid_send(r, s->l->partition_id, &msg, GW_SPACE_SEATS, page_done);
    if (err != TG_OK) {
        gw_reply_grid_error(r, err, NULL, s->l->partition_id);
    }
}

static void page_start(gw_req *r)
{
    list_state *st = r->state;
    segments_build(st);
    page_locate(st);
    if (st->seg_at == st->seg_count) {
        page_reply(r);
        return;
    }
    page_send(r);
}

static void counts_next(gw_req *r);

static void counts_done(gw_req *r, tg_err err, const tg_msg *reply)
{
    list_state *st = r->state;
    const gw_layout *l = st->layouts[st->counted];
    if (err != TG_OK) {
        gw_reply_grid_error(r, err, reply, l->partition_id);
        return;
    }
    uint32_t *counts = gw_alloc(r, sizeof(uint32_t) * (l->row_count + 1));
    for (uint32_t k = 0; k < l->row_count && k < reply->availability_ok.row_count; k++) {
        counts[k] = reply->availability_ok.rows[k].by_state[st->state];
    }
    st->row_counts[st->counted++] = counts;
    counts_next(r);
}

static void counts_next(gw_req *r)
{
    list_state *st = r->state;
    if (st->counted == st->layout_count) {
        page_start(r);
        return;
    }
    uint32_t pid = st->layouts[st->counted]->partition_id;
    tg_msg msg = {.type = TG_WIRE_AVAILABILITY, .availability = {.partition_id = pid}};
    tg_err err = gw_grid_send(r, pid, &msg, GW_SPACE_COUNTS, counts_done);
    if (err != TG_OK) {
        gw_reply_grid_error(r, err, NULL, pid);
    }
}

static bool filters_parse(gw_req *r, list_state *st)
{
    const char *status = gw_query(r, "status");
    tg_seat_state state;
    st->state = -1;
    if (status != NULL && !tg_seat_state_parse(status, &state)) {
        gw_reply_error(r, 400, "invalid_parameter",
                       "status: expected FREE, SELECTED, RESERVED, SOLD or BLOCKED");
        return false;
    }
    if (status != NULL) {
        st->state = (int32_t)state;
    }
    st->row_name = gw_query(r, "row");
    st->section_name = gw_query(r, "section");
    if ((st->row_name != NULL && (st->row_name[0] == '\0' ||
                                  strlen(st->row_name) >= TG_NAME_BYTES)) ||
        (st->section_name != NULL && (st->section_name[0] == '\0' ||
                                      strlen(st->section_name) >= TG_NAME_BYTES))) {
        gw_reply_error(r, 400, "invalid_parameter", "row and section: names of 1..%u bytes",
                       TG_NAME_BYTES - 1);
        return false;
    }
    return true;
}

void gw_on_seats_list(gw_req *r)
{
    list_state *st = r->state = gw_alloc(r, sizeof(list_state));
    if (!gw_query_u64(r, "event_id", 1, (UINT64_C(1) << 53) - 1, 0, &st->event_id) ||
        !gw_query_u64(r, "page", 1, GW_SEATS_PAGE_MAX, 1, &st->page) ||
        !gw_query_u64(r, "pageSize", 1, GW_SEATS_PAGE_SIZE_MAX, 20, &st->size) ||
        !filters_parse(r, st)) {
        return;
    }
    if (st->event_id == 0) {
        gw_reply_error(r, 400, "missing_parameter", "event_id is required");
        return;
    }
    st->layout_count = gw_map_event(r->gw, st->event_id, st->layouts);
    if (st->layout_count == 0) {
        gw_reply_error(r, 404, "not_found", "no event %llu on sale",
                       (unsigned long long)st->event_id);
        return;
    }
    st->segs = gw_alloc(r, sizeof(segment) * GW_SEGMENTS_MAX);
    if (st->state >= 0) {
        counts_next(r);
    } else {
        page_start(r);
    }
}
