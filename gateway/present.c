/*
 * present.c — how the grid's answers look in the API: seats, times, and the
 * HTTP status of every grid error.
 *
 * API seat ids are partition_id << 32 | seat (gateway.h), so a seat routes
 * to its partition with no lookup, like a booking id; `seat_no` is the
 * seat's number in its event (0..N-1) and `section`, `row`, `number` name
 * it for people.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core.h"

json_t *gw_time_json(int64_t unix_ms)
{
    char buf[40];
    time_t t = (time_t)(unix_ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t n = strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, sizeof(buf) - n, ".%03dZ", (int)(unix_ms % 1000));
    return json_string(buf);
}

uint32_t gw_layout_row_of(const gw_layout *l, uint32_t seat)
{
    uint32_t lo = 0, hi = l->row_count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (l->rows[mid].seat_first + l->rows[mid].seat_count <= seat) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo < l->row_count && seat >= l->rows[lo].seat_first ? lo : l->row_count;
}

json_t *gw_seat_json(const gw_layout *l, uint32_t seat, const uint64_t *word)
{
    uint32_t row = gw_layout_row_of(l, seat);
    if (row == l->row_count) {
        return json_null();
    }
    const gw_row *rw = &l->rows[row];
    const gw_section *s = &l->sections[rw->section];
    json_t *j = json_pack("{s:I,s:I,s:s,s:s,s:I,s:I,s:s}", "id",
                          (json_int_t)gw_seat_api_id(l->partition_id, seat), "seat_no",
                          (json_int_t)(l->first_seat + seat), "section", s->name, "row", rw->name,
                          "number", (json_int_t)(seat - rw->seat_first + 1), "price",
                          (json_int_t)s->price_minor, "currency", s->currency);
    if (j != NULL && word != NULL) {
        json_object_set_new(j, "status", json_string(tg_seat_state_name(tg_seat_word_state(*word))));
    }
    return j;
}

json_t *gw_seats_json(const gw_layout *l, const tg_wire_seat_ids *seats)
{
    json_t *a = json_array();
    for (uint32_t i = 0; a != NULL && i < seats->count; i++) {
        json_array_append_new(a, gw_seat_json(l, seats->ids[i], NULL));
    }
    return a;
}

/* ---- Grid errors --------------------------------------------------------- */

typedef struct {
    int status;
    const char *code; /* NULL: tg_errname */
    uint32_t retry_after_s;
} error_answer;

static error_answer answer_of(tg_err err)
{
    switch (err) {
    case TG_ESEAT_TAKEN: return (error_answer){409, NULL, 0};
    case TG_ESEAT_NOT_HELD: return (error_answer){409, NULL, 0};
    case TG_ENOT_FOUND: return (error_answer){404, "not_found", 0};
    case TG_EBOOKING_STATE: return (error_answer){409, NULL, 0};
    case TG_EEXPIRED: return (error_answer){409, "booking_expired", 0};
    case TG_ETOO_MANY_SEATS: return (error_answer){409, NULL, 0};
    case TG_ENO_SEATS: return (error_answer){409, NULL, 0};
    case TG_EINVAL:
    case TG_ESEAT_RANGE:
    case TG_EWRONG_PARTITION: return (error_answer){400, NULL, 0};
    case TG_EBOOKINGS_FULL:
    case TG_ELOG_FULL:
    case TG_EBACKLOG: return (error_answer){503, NULL, 5};
    case TG_ETIMEDOUT: return (error_answer){503, "grid_timeout", 1};
    case TG_EBUSY: return (error_answer){503, "busy", 1};
    case TG_EUNAVAILABLE:
    case TG_ECLOSED:
    case TG_EPARTITION_STATE:
    case TG_ESTALE_EPOCH: return (error_answer){503, "partition_unavailable", 1};
    default: return (error_answer){500, "internal", 0};
    }
}

static const char *message_of(tg_err err, const tg_msg *reply)
{
    if (err == TG_ETIMEDOUT) {
        return "the partition did not answer in time: the operation may or may not have "
               "happened; read the booking to know";
    }
    if (err == TG_ENOT_FOUND) {
        return "no such booking";
    }
    if (reply != NULL && reply->type == TG_WIRE_ERROR && reply->error.message[0] != '\0') {
        return reply->error.message;
    }
    return tg_strerror(err);
}

void gw_reply_grid_error(gw_req *r, tg_err err, const tg_msg *reply, uint32_t partition_id)
{
    error_answer a = answer_of(err);
    const char *code = a.code != NULL ? a.code : tg_errname(err);
    if (a.status == 503) {
        gw_reply_error_retry(r, 503, code, a.retry_after_s, "%s", message_of(err, reply));
        return;
    }
    if (err != TG_ESEAT_TAKEN || reply == NULL || reply->type != TG_WIRE_ERROR) {
        gw_reply_error(r, a.status, code, "%s", message_of(err, reply));
        return;
    }
    /* seat_taken names the seats, by their API ids. */
    json_t *ids = json_array();
    char message[256];
    size_t n = (size_t)snprintf(message, sizeof(message), "seat%s ",
                                reply->error.seats.count > 1 ? "s" : "");
    for (uint32_t i = 0; i < reply->error.seats.count; i++) {
        uint64_t id = gw_seat_api_id(partition_id, reply->error.seats.ids[i]);
        json_array_append_new(ids, json_integer((json_int_t)id));
        if (n < sizeof(message)) {
            n += (size_t)snprintf(message + n, sizeof(message) - n, "%s%llu", i > 0 ? ", " : "",
                                  (unsigned long long)id);
        }
    }
    if (n < sizeof(message)) {
        snprintf(message + n, sizeof(message) - n, " %s held, sold or blocked by another booking",
                 reply->error.seats.count > 1 ? "are" : "is");
    }
    gw_reply_json(r, 409, json_pack("{s:{s:s,s:s,s:o}}", "error", "code", "seat_taken", "message",
                                    message, "seats", ids));
}
