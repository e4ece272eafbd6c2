/*
 * wire.c — the msgpack codec of schemas/wire.md (see tixgrid/wire.h).
 *
 * The schema lives here once, as data: one descriptor per message listing
 * its fields in wire order, each with its kind, its place in tg_msg, its
 * bounds and the sentences that say what is wrong with it.  The encoder, the
 * decoder and tg_wire_equal all walk the same descriptors, so they cannot
 * disagree about a bound; a message-level check function adds the few rules
 * that span fields (consecutive log sequences, no duplicate counters).
 *
 * Decoding does not use msgpack-c's unpacker.  msgpack_unpack() allocates
 * room for an array's elements from the count in its header before it reads
 * them: the five bytes dd 0f ff ff ff make msgpack-c 4.0.0 map 8 GiB.  The
 * decoder is instead a pull reader over the caller's bytes that reads each
 * item with the type the schema expects next, checks a count against its
 * bound before reading any element, and writes into tg_msg or into arrays
 * the caller lent through tg_wire_space.  It allocates nothing, never reads
 * past len, and has no recursion: the schema's depth is fixed (message →
 * field → list element → scalar, or in a list element the one short array
 * of member indices a partition's backups are), one function per level.  Encoding uses
 * msgpack-c's packer, which always writes the shortest form; the decoder
 * also accepts the longer forms msgpack allows (a small number as uint32, a
 * short array as array16), since other encoders are free to use them.
 *
 * Rejected: unpack into a msgpack_object tree and walk it (the allocation
 * above, plus a tree per message); a structural pre-scan before
 * msgpack_unpack (two passes, and still a zone per message); embedding the
 * largest arrays in tg_msg (about 400 KiB per message in flight).
 */
#include "tixgrid/wire.h"
#include "tixgrid/assert.h"

#include <string.h>

/* ---- Reader: bounded pull parsing of msgpack --------------------------- */

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} reader;

typedef enum {
    RD_OK,
    RD_TYPE,  /* the next item is of another type; nothing consumed */
    RD_SHORT, /* the bytes end inside the item */
    RD_LONG,  /* a string longer than the caller's bound (before its bytes are read) */
} rd_status;

/* A msgpack integer: negative values in s, the others in u. */
typedef struct {
    bool negative;
    uint64_t u;
    int64_t s;
} integer;

static uint64_t load_be(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

/* The value of the two's-complement number of `bits` bits in v, without
 * the implementation-defined conversion of an out-of-range uint64_t. */
static int64_t sign_extend(uint64_t v, unsigned bits)
{
    uint64_t sign = UINT64_C(1) << (bits - 1);
    if ((v & sign) == 0) {
        return (int64_t)v;
    }
    uint64_t magnitude = ((~v) & (sign | (sign - 1))) + 1;
    return magnitude == (UINT64_C(1) << 63) ? INT64_MIN : -(int64_t)magnitude;
}

/* Consumes the tag byte and the n-byte big-endian number after it. */
static rd_status rd_fixed(reader *r, unsigned n, uint64_t *v)
{
    if ((size_t)(r->end - r->p) < 1 + (size_t)n) {
        return RD_SHORT;
    }
    *v = load_be(r->p + 1, n);
    r->p += 1 + n;
    return RD_OK;
}

static rd_status rd_array(reader *r, uint32_t *count)
{
    if (r->p == r->end) {
        return RD_SHORT;
    }
    uint8_t tag = *r->p;
    uint64_t v = 0;
    if (tag >= 0x90 && tag <= 0x9f) {
        *count = tag & 0x0fu;
        r->p++;
        return RD_OK;
    }
    if (tag != 0xdc && tag != 0xdd) {
        return RD_TYPE;
    }
    rd_status st = rd_fixed(r, tag == 0xdc ? 2 : 4, &v);
    *count = (uint32_t)v;
    return st;
}

static rd_status rd_integer(reader *r, integer *out)
{
    if (r->p == r->end) {
        return RD_SHORT;
    }
    uint8_t tag = *r->p;
    uint64_t v = 0;
    rd_status st = RD_OK;
    if (tag <= 0x7f) {
        v = tag;
        r->p++;
    } else if (tag >= 0xe0) {
        v = tag | ~UINT64_C(0xff); /* negative fixint: -32..-1 */
        r->p++;
    } else if (tag >= 0xcc && tag <= 0xcf) {
        st = rd_fixed(r, 1u << (tag - 0xcc), &v);
    } else if (tag >= 0xd0 && tag <= 0xd3) {
        unsigned n = 1u << (tag - 0xd0);
        st = rd_fixed(r, n, &v);
        v = (uint64_t)sign_extend(v, 8 * n);
    } else {
        return RD_TYPE;
    }
    bool is_signed = tag >= 0xd0;
    int64_t s = is_signed ? sign_extend(v, 64) : 0;
    out->negative = is_signed && s < 0;
    out->s = s;
    out->u = v;
    return st;
}

static rd_status rd_bool(reader *r, bool *out)
{
    if (r->p == r->end) {
        return RD_SHORT;
    }
    if (*r->p != 0xc2 && *r->p != 0xc3) {
        return RD_TYPE;
    }
    *out = *r->p == 0xc3;
    r->p++;
    return RD_OK;
}

static rd_status rd_str(reader *r, uint32_t max, const uint8_t **str, uint32_t *len)
{
    if (r->p == r->end) {
        return RD_SHORT;
    }
    uint8_t tag = *r->p;
    uint64_t n = 0;
    rd_status st = RD_OK;
    if (tag >= 0xa0 && tag <= 0xbf) {
        n = tag & 0x1fu;
        r->p++;
    } else if (tag >= 0xd9 && tag <= 0xdb) {
        st = rd_fixed(r, 1u << (tag - 0xd9), &n);
    } else {
        return RD_TYPE;
    }
    if (st != RD_OK) {
        return st;
    }
    if (n > max) {
        return RD_LONG;
    }
    if ((uint64_t)(r->end - r->p) < n) {
        return RD_SHORT;
    }
    *str = r->p;
    *len = (uint32_t)n;
    r->p += n;
    return RD_OK;
}

/* True when s[0..len) is UTF-8 (no overlongs, surrogates or code points
 * above U+10FFFF) without NUL: the text may become a C string or JSON. */
static bool text_valid(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        size_t n = c < 0x80 ? 1 : c < 0xc2 ? 0 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : c < 0xf5 ? 4 : 0;
        if (c == 0 || n == 0 || n > len - i) {
            return false;
        }
        for (size_t k = 1; k < n; k++) {
            if ((s[i + k] & 0xc0) != 0x80) {
                return false;
            }
        }
        uint8_t d = n > 1 ? s[i + 1] : 0x80;
        if ((c == 0xe0 && d < 0xa0) || (c == 0xed && d > 0x9f) || (c == 0xf0 && d < 0x90) ||
            (c == 0xf4 && d > 0x8f)) {
            return false; /* overlong, surrogate, or above U+10FFFF */
        }
        i += n;
    }
    return true;
}

/* ---- Schema descriptors ------------------------------------------------ */

typedef enum {
    K_UINT,       /* unsigned integer of width 4 or 8, in [umin, umax] */
    K_INT,        /* signed integer of width 4 or 8, in [smin, smax] */
    K_BOOL,       /* msgpack true/false into a bool; integers are not booleans */
    K_STR,        /* char[width]: at most width - 1 bytes of text_valid() UTF-8 */
    K_BOOKING_ID, /* tg_booking_id: below 2^53, sequence not 0 */
    K_SEAT_WORD,  /* tg_seat_word whose state bits name a seat state */
    K_SEAT_IDS,   /* tg_wire_seat_ids: array of seat ids */
    K_TUPLE,      /* a nested array of elem's fields, stored at offset */
    K_LIST,       /* array of elem tuples: uint32 count at offset, items inline */
    K_LIST_SPACE, /* the same, items through a pointer into the tg_wire_space */
    K_REFS,       /* in a list element: tg_wire_member_refs, array of member indices */
} field_kind;

enum {
    SPACE_SEATS = 1,
    SPACE_COUNTS,
    SPACE_ROWS,
    SPACE_RECORDS,
    SPACE_CHANGES,
    SPACE_BOOKINGS,
    SPACE_MEMBERS,
    SPACE_PLACEMENTS,
    SPACE_HELD,
    SPACE_STATES,
};

typedef struct wire_tuple wire_tuple;

typedef struct {
    uint8_t kind;
    uint8_t space;          /* K_LIST_SPACE: SPACE_* */
    uint16_t width;         /* bytes of the C field (scalars) */
    uint32_t offset;        /* of the value, or of the count of a list */
    uint32_t items_offset;  /* lists: of the item array or pointer */
    uint64_t umin, umax;    /* K_UINT bounds; lists: most items */
    int64_t smin, smax;     /* K_INT bounds */
    const wire_tuple *elem; /* K_TUPLE, lists */
    const char *why_type;   /* the item is not of the field's type */
    const char *why_range;  /* out of range, too long, too many items */
    const char *why_value;  /* kind-specific: see the F_ macros */
} wire_field;

/* A fixed array of scalars: a message's body, a list element, a tuple. */
struct wire_tuple {
    const char *why_arity;
    uint32_t size; /* bytes of one element in C (lists) */
    uint32_t field_count;
    const wire_field *fields;
};

typedef struct {
    const char *name;
    const wire_tuple *body;                  /* offsets within tg_msg */
    const char *(*check)(const tg_msg *msg); /* rules across fields; may be NULL */
} wire_message;

#define FW(st, path) ((uint16_t)sizeof(((st *)0)->path))

#define F_UINT(P, st, path, lo, hi)                                                                \
    {                                                                                              \
        .kind = K_UINT, .width = FW(st, path), .offset = offsetof(st, path), .umin = (lo),         \
        .umax = (hi), .why_type = P #path ": not an unsigned integer",                             \
        .why_range = P #path ": out of range"                                                      \
    }
#define F_INT(P, st, path, lo, hi)                                                                 \
    {                                                                                              \
        .kind = K_INT, .width = FW(st, path), .offset = offsetof(st, path), .smin = (lo),          \
        .smax = (hi), .why_type = P #path ": not an integer",                                      \
        .why_range = P #path ": out of range"                                                      \
    }
#define F_BOOL(P, st, path)                                                                        \
    {                                                                                              \
        .kind = K_BOOL, .width = FW(st, path), .offset = offsetof(st, path),                       \
        .why_type = P #path ": not a boolean"                                                      \
    }
#define F_STR(P, st, path)                                                                         \
    {                                                                                              \
        .kind = K_STR, .width = FW(st, path), .offset = offsetof(st, path),                        \
        .why_type = P #path ": not a string", .why_range = P #path ": too long",                   \
        .why_value = P #path ": not UTF-8 text without NUL"                                        \
    }
#define F_BOOKING(P, st, path)                                                                     \
    {                                                                                              \
        .kind = K_BOOKING_ID, .width = FW(st, path), .offset = offsetof(st, path),                 \
        .why_type = P #path ": not an unsigned integer", .why_range = P #path ": out of range",    \
        .why_value = P #path ": booking sequence is 0"                                             \
    }
#define F_WORD(P, st, path)                                                                        \
    {                                                                                              \
        .kind = K_SEAT_WORD, .width = FW(st, path), .offset = offsetof(st, path),                  \
        .why_type = P #path ": not an unsigned integer", .why_range = P #path ": out of range",    \
        .why_value = P #path ": seat word has no valid state"                                      \
    }

#define F_REFS(P, st, path)                                                                        \
    {                                                                                              \
        .kind = K_REFS, .offset = offsetof(st, path), .umax = TG_GRID_BACKUPS_MAX,                 \
        .why_type = P #path ": not an array of member indices",                                    \
        .why_range = P #path ": too many members",                                                 \
        .why_value = P #path ": member index out of range"                                         \
    }

/* Top-level fields: the path inside tg_msg is the name ("seats_hold.seats"). */
#define U(path, lo, hi) F_UINT("", tg_msg, path, lo, hi)
#define I(path, lo, hi) F_INT("", tg_msg, path, lo, hi)
#define BOOKING(path)   F_BOOKING("", tg_msg, path)
#define PARTITION(path) U(path, 0, TG_PARTITION_ID_MAX)
#define ID(path)        U(path, 0, TG_WIRE_ID_MAX)
#define MS(path)        I(path, INT64_MIN, INT64_MAX)
#define SEATS(path)                                                                                \
    {                                                                                              \
        .kind = K_SEAT_IDS, .offset = offsetof(tg_msg, path), .umax = TG_BOOKING_SEATS_MAX,        \
        .why_type = #path ": not an array of seat ids", .why_range = #path ": too many seat ids",  \
        .why_value = #path ": seat id out of range"                                                \
    }
#define TUPLE(path, el)                                                                            \
    {                                                                                              \
        .kind = K_TUPLE, .offset = offsetof(tg_msg, path), .elem = &(el),                          \
        .why_type = #path ": not an array"                                                         \
    }
#define LIST(cpath, ipath, max, el)                                                                \
    {                                                                                              \
        .kind = K_LIST, .offset = offsetof(tg_msg, cpath),                                         \
        .items_offset = offsetof(tg_msg, ipath), .umax = (max), .elem = &(el),                     \
        .why_type = #ipath ": not an array", .why_range = #ipath ": too many items"                \
    }
#define LIST_SPACE(cpath, ipath, max, el, slot)                                                    \
    {                                                                                              \
        .kind = K_LIST_SPACE, .space = (slot), .offset = offsetof(tg_msg, cpath),                  \
        .items_offset = offsetof(tg_msg, ipath), .umax = (max), .elem = &(el),                     \
        .why_type = #ipath ": not an array", .why_range = #ipath ": too many items",               \
        .why_value = #ipath ": more items than the receiver has room for"                          \
    }

#define COUNT_OF(a) ((uint32_t)(sizeof(a) / sizeof((a)[0])))

#define BODY(name, ...)                                                                            \
    static const wire_field name##_fields[] = {__VA_ARGS__};                                       \
    static const wire_tuple name##_body = {#name ": wrong number of fields", sizeof(tg_msg),       \
                                           COUNT_OF(name##_fields), name##_fields}
#define EMPTY_BODY(name)                                                                           \
    static const wire_tuple name##_body = {#name ": wrong number of fields", sizeof(tg_msg), 0,    \
                                           NULL}
#define ELEMENT(name, label, st, ...)                                                              \
    static const wire_field name##_fields[] = {__VA_ARGS__};                                       \
    static const wire_tuple name = {label ": wrong number of fields", sizeof(st),                  \
                                    COUNT_OF(name##_fields), name##_fields}

#define SEAT_MAX (TG_PARTITION_SEATS_MAX - 1)

/* List elements and tuples.  Their names appear in error sentences. */
#define COUNTS_ELEMENT(name, label)                                                                \
    ELEMENT(name, label, tg_wire_counts,                                                           \
            F_UINT(label ".", tg_wire_counts, by_state[0], 0, TG_PARTITION_SEATS_MAX),             \
            F_UINT(label ".", tg_wire_counts, by_state[1], 0, TG_PARTITION_SEATS_MAX),             \
            F_UINT(label ".", tg_wire_counts, by_state[2], 0, TG_PARTITION_SEATS_MAX),             \
            F_UINT(label ".", tg_wire_counts, by_state[3], 0, TG_PARTITION_SEATS_MAX),             \
            F_UINT(label ".", tg_wire_counts, by_state[4], 0, TG_PARTITION_SEATS_MAX))
_Static_assert(TG_SEAT_STATE_COUNT == 5, "COUNTS_ELEMENT lists every seat state");

COUNTS_ELEMENT(availability_ok_totals, "availability_ok.totals");
COUNTS_ELEMENT(availability_ok_section, "availability_ok.sections[]");
COUNTS_ELEMENT(availability_ok_row, "availability_ok.rows[]");

#define SP "seats_list_ok.seats[]."
ELEMENT(seats_list_ok_seat, "seats_list_ok.seats[]", tg_wire_seat,
        F_UINT(SP, tg_wire_seat, seat_id, 0, SEAT_MAX), F_WORD(SP, tg_wire_seat, word),
        F_UINT(SP, tg_wire_seat, section, 0, TG_SECTIONS_MAX - 1),
        F_UINT(SP, tg_wire_seat, row, 0, TG_ROWS_MAX - 1),
        F_UINT(SP, tg_wire_seat, number, 1, TG_ROW_SEATS_MAX),
        F_INT(SP, tg_wire_seat, price_minor, 0, INT64_MAX));

#define LP "layout_ok.sections[]."
ELEMENT(layout_ok_section, "layout_ok.sections[]", tg_wire_section,
        F_STR(LP, tg_wire_section, name), F_INT(LP, tg_wire_section, price_minor, 0, INT64_MAX),
        F_STR(LP, tg_wire_section, currency),
        F_UINT(LP, tg_wire_section, row_first, 0, TG_ROWS_MAX),
        F_UINT(LP, tg_wire_section, row_count, 0, TG_ROWS_MAX),
        F_UINT(LP, tg_wire_section, seat_first, 0, TG_PARTITION_SEATS_MAX),
        F_UINT(LP, tg_wire_section, seat_count, 0, TG_PARTITION_SEATS_MAX));

#define RP "layout_ok.rows[]."
ELEMENT(layout_ok_row, "layout_ok.rows[]", tg_wire_row, F_STR(RP, tg_wire_row, name),
        F_UINT(RP, tg_wire_row, section, 0, TG_SECTIONS_MAX - 1),
        F_UINT(RP, tg_wire_row, seat_first, 0, TG_PARTITION_SEATS_MAX),
        F_UINT(RP, tg_wire_row, seat_count, 0, TG_ROW_SEATS_MAX));

#define OP "stats_ok.ops[]."
ELEMENT(stats_ok_op, "stats_ok.ops[]", tg_wire_op_count,
        F_UINT(OP, tg_wire_op_count, type, 1, TG_WIRE_REQUEST_LAST),
        F_UINT(OP, tg_wire_op_count, code, 0, TG_ERR_COUNT_ - 1),
        F_UINT(OP, tg_wire_op_count, count, 0, UINT64_MAX));

/* kind, status and a seat word's state are not bounded here: a record a
 * unit's ring holds wrong (a bug, a flipped bit) must reach the persister,
 * which rejects it alone into persister_rejects; refusing the whole reply
 * would stop the partition's drain at that record for good. */
#define GP "log_read_ok.records[]."
ELEMENT(log_read_ok_record, "log_read_ok.records[]", tg_wire_log_record,
        F_UINT(GP, tg_wire_log_record, seq, 1, TG_WIRE_ID_MAX),
        F_UINT(GP, tg_wire_log_record, kind, 0, UINT32_MAX),
        F_UINT(GP, tg_wire_log_record, ident, 0, UINT32_MAX),
        F_UINT(GP, tg_wire_log_record, status, 0, UINT32_MAX),
        F_UINT(GP, tg_wire_log_record, word, 0, UINT64_MAX),
        F_INT(GP, tg_wire_log_record, deadline_ms, INT64_MIN, INT64_MAX),
        F_INT(GP, tg_wire_log_record, created_ms, INT64_MIN, INT64_MAX),
        F_UINT(GP, tg_wire_log_record, version, 0, UINT32_MAX));

#define CP "seat_changes.changes[]."
ELEMENT(seat_changes_change, "seat_changes.changes[]", tg_wire_change,
        F_UINT(CP, tg_wire_change, seat_id, 0, SEAT_MAX), F_WORD(CP, tg_wire_change, word));

ELEMENT(seat_states_ok_word, "seat_states_ok.states[]", tg_wire_states,
        F_UINT("seat_states_ok.states[].", tg_wire_states, packed, 0, UINT64_MAX));

#define PCS "partition_create.sections[]."
ELEMENT(partition_create_section, "partition_create.sections[]", tg_wire_section,
        F_STR(PCS, tg_wire_section, name),
        F_INT(PCS, tg_wire_section, price_minor, 0, INT64_MAX),
        F_STR(PCS, tg_wire_section, currency),
        F_UINT(PCS, tg_wire_section, row_count, 1, TG_ROWS_MAX));

#define PCR "partition_create.rows[]."
ELEMENT(partition_create_row, "partition_create.rows[]", tg_wire_row,
        F_STR(PCR, tg_wire_row, name), F_UINT(PCR, tg_wire_row, seat_count, 1, TG_ROW_SEATS_MAX));

#define PRB "partition_restore.bookings[]."
ELEMENT(partition_restore_booking, "partition_restore.bookings[]", tg_wire_booking_state,
        F_BOOKING(PRB, tg_wire_booking_state, booking_id),
        F_UINT(PRB, tg_wire_booking_state, user_id, 1, TG_WIRE_ID_MAX),
        F_UINT(PRB, tg_wire_booking_state, status, TG_BOOKING_CREATED,
               TG_BOOKING_STATUS_COUNT - 1),
        F_UINT(PRB, tg_wire_booking_state, version, 0, UINT32_MAX),
        F_INT(PRB, tg_wire_booking_state, created_ms, INT64_MIN, INT64_MAX),
        F_INT(PRB, tg_wire_booking_state, deadline_ms, INT64_MIN, INT64_MAX));

#define PRS "partition_restore.seats[]."
ELEMENT(partition_restore_seat, "partition_restore.seats[]", tg_wire_change,
        F_UINT(PRS, tg_wire_change, seat_id, 0, SEAT_MAX), F_WORD(PRS, tg_wire_change, word));

#define RBK "repl_backups.backups[]."
ELEMENT(repl_backups_backup, "repl_backups.backups[]", tg_wire_backup,
        F_STR(RBK, tg_wire_backup, name), F_STR(RBK, tg_wire_backup, rep_url));

#define RAR "repl_append.records[]."
ELEMENT(repl_append_record, "repl_append.records[]", tg_wire_log_record,
        F_UINT(RAR, tg_wire_log_record, seq, 1, TG_WIRE_ID_MAX),
        F_UINT(RAR, tg_wire_log_record, kind, 0, 2),
        F_UINT(RAR, tg_wire_log_record, ident, 0, UINT32_MAX),
        F_UINT(RAR, tg_wire_log_record, status, 0, TG_BOOKING_STATUS_COUNT - 1),
        F_UINT(RAR, tg_wire_log_record, word, 0, UINT64_MAX),
        F_INT(RAR, tg_wire_log_record, deadline_ms, INT64_MIN, INT64_MAX),
        F_INT(RAR, tg_wire_log_record, created_ms, INT64_MIN, INT64_MAX),
        F_UINT(RAR, tg_wire_log_record, version, 0, UINT32_MAX));

#define RSB "repl_snapshot.bookings[]."
ELEMENT(repl_snapshot_booking, "repl_snapshot.bookings[]", tg_wire_booking_state,
        F_BOOKING(RSB, tg_wire_booking_state, booking_id),
        F_UINT(RSB, tg_wire_booking_state, user_id, 1, TG_WIRE_ID_MAX),
        F_UINT(RSB, tg_wire_booking_state, status, TG_BOOKING_CREATED,
               TG_BOOKING_STATUS_COUNT - 1),
        F_UINT(RSB, tg_wire_booking_state, version, 0, UINT32_MAX),
        F_INT(RSB, tg_wire_booking_state, created_ms, INT64_MIN, INT64_MAX),
        F_INT(RSB, tg_wire_booking_state, deadline_ms, INT64_MIN, INT64_MAX));

#define RSS "repl_snapshot.seats[]."
ELEMENT(repl_snapshot_seat, "repl_snapshot.seats[]", tg_wire_change,
        F_UINT(RSS, tg_wire_change, seat_id, 0, SEAT_MAX), F_WORD(RSS, tg_wire_change, word));

#define RSL "repl_status_ok.links[]."
ELEMENT(repl_status_link, "repl_status_ok.links[]", tg_wire_repl_link,
        F_STR(RSL, tg_wire_repl_link, name),
        F_UINT(RSL, tg_wire_repl_link, state, 0, TG_REPL_LINK_STATE_COUNT - 1),
        F_UINT(RSL, tg_wire_repl_link, acked_seq, 0, TG_WIRE_ID_MAX),
        F_UINT(RSL, tg_wire_repl_link, records_sent, 0, UINT64_MAX),
        F_UINT(RSL, tg_wire_repl_link, snapshots, 0, UINT64_MAX),
        F_UINT(RSL, tg_wire_repl_link, snapshot_items, 0, UINT64_MAX));

/* The grid manager's pieces: a member and a placement in the map (five
 * fields) and in a status reply (the same five, then what the manager
 * knows of them); a held partition as registration and heartbeats say. */
#define MEMBER_FIELDS(P)                                                                           \
    F_STR(P, tg_wire_member, name), F_STR(P, tg_wire_member, rep_url),                             \
        F_STR(P, tg_wire_member, pub_url), F_STR(P, tg_wire_member, zone),                         \
        F_UINT(P, tg_wire_member, state, 0, TG_MEMBER_STATE_COUNT - 1)
#define PLACEMENT_FIELDS(P)                                                                        \
    F_UINT(P, tg_wire_placement, partition_id, 0, TG_PARTITION_ID_MAX),                            \
        F_UINT(P, tg_wire_placement, event_id, 0, TG_WIRE_ID_MAX),                                 \
        F_UINT(P, tg_wire_placement, epoch, 0, TG_WIRE_ID_MAX),                                    \
        F_INT(P, tg_wire_placement, primary, -1, TG_GRID_MEMBERS_MAX - 1),                         \
        F_REFS(P, tg_wire_placement, backups)

#define GMM "grid_map.members[]."
ELEMENT(grid_map_member, "grid_map.members[]", tg_wire_member, MEMBER_FIELDS(GMM));
#define GMP "grid_map.placements[]."
ELEMENT(grid_map_placement, "grid_map.placements[]", tg_wire_placement, PLACEMENT_FIELDS(GMP));

#define GSM "grid_status_ok.members[]."
ELEMENT(grid_status_member, "grid_status_ok.members[]", tg_wire_member, MEMBER_FIELDS(GSM),
        F_UINT(GSM, tg_wire_member, incarnation, 0, TG_WIRE_ID_MAX),
        F_INT(GSM, tg_wire_member, heard_age_ms, -1, INT64_MAX),
        F_UINT(GSM, tg_wire_member, map_epoch, 0, TG_WIRE_ID_MAX));
#define GSP "grid_status_ok.placements[]."
ELEMENT(grid_status_placement, "grid_status_ok.placements[]", tg_wire_placement,
        PLACEMENT_FIELDS(GSP),
        F_UINT(GSP, tg_wire_placement, state, 0, TG_PLACEMENT_STATE_COUNT - 1),
        F_UINT(GSP, tg_wire_placement, held_epoch, 0, TG_WIRE_ID_MAX),
        F_UINT(GSP, tg_wire_placement, log_head, 0, TG_WIRE_ID_MAX),
        F_UINT(GSP, tg_wire_placement, log_persisted, 0, TG_WIRE_ID_MAX),
        F_UINT(GSP, tg_wire_placement, unpersisted_age_ms, 0, UINT64_MAX),
        F_UINT(GSP, tg_wire_placement, backups_reported, 0, TG_GRID_BACKUPS_MAX),
        F_UINT(GSP, tg_wire_placement, backups_in_sync, 0, TG_GRID_BACKUPS_MAX),
        F_UINT(GSP, tg_wire_placement, backups_applied, 0, TG_WIRE_ID_MAX));

#define RGH "pu_register.held[]."
ELEMENT(pu_register_held, "pu_register.held[]", tg_wire_held,
        F_UINT(RGH, tg_wire_held, partition_id, 0, TG_PARTITION_ID_MAX),
        F_UINT(RGH, tg_wire_held, event_id, 0, TG_WIRE_ID_MAX),
        F_UINT(RGH, tg_wire_held, epoch, 0, TG_WIRE_ID_MAX),
        F_UINT(RGH, tg_wire_held, log_head, 0, TG_WIRE_ID_MAX),
        F_UINT(RGH, tg_wire_held, log_persisted, 0, TG_WIRE_ID_MAX));
#define HBH "heartbeat.held[]."
ELEMENT(heartbeat_held, "heartbeat.held[]", tg_wire_held,
        F_UINT(HBH, tg_wire_held, partition_id, 0, TG_PARTITION_ID_MAX),
        F_UINT(HBH, tg_wire_held, epoch, 0, TG_WIRE_ID_MAX),
        F_UINT(HBH, tg_wire_held, log_head, 0, TG_WIRE_ID_MAX),
        F_UINT(HBH, tg_wire_held, log_persisted, 0, TG_WIRE_ID_MAX),
        F_UINT(HBH, tg_wire_held, unpersisted_age_ms, 0, UINT64_MAX),
        F_UINT(HBH, tg_wire_held, role, TG_WIRE_HELD_PRIMARY, TG_WIRE_HELD_BACKUP),
        F_BOOL(HBH, tg_wire_held, in_sync));

/* Requests. */
BODY(booking_create, PARTITION(booking_create.partition_id), ID(booking_create.user_id));
BODY(booking_get, BOOKING(booking_get.booking_id), ID(booking_get.user_id));
BODY(seats_hold, BOOKING(seats_hold.booking_id), ID(seats_hold.user_id), SEATS(seats_hold.seats));
BODY(seats_hold_best, BOOKING(seats_hold_best.booking_id), ID(seats_hold_best.user_id),
     U(seats_hold_best.quantity, 0, TG_BOOKING_SEATS_MAX),
     I(seats_hold_best.section, -1, TG_SECTIONS_MAX - 1),
     F_BOOL("", tg_msg, seats_hold_best.adjacent_only));
BODY(seats_release, BOOKING(seats_release.booking_id), ID(seats_release.user_id),
     SEATS(seats_release.seats));
BODY(booking_cancel, BOOKING(booking_cancel.booking_id), ID(booking_cancel.user_id));
BODY(payment_begin, BOOKING(payment_begin.booking_id), ID(payment_begin.user_id));
BODY(payment_confirm, BOOKING(payment_confirm.booking_id));
BODY(payment_fail, BOOKING(payment_fail.booking_id));
BODY(seats_block, PARTITION(seats_block.partition_id), SEATS(seats_block.seats));
BODY(seats_unblock, PARTITION(seats_unblock.partition_id), SEATS(seats_unblock.seats));
BODY(seat_get, PARTITION(seat_get.partition_id), U(seat_get.seat_id, 0, SEAT_MAX));
BODY(seats_list, PARTITION(seats_list.partition_id),
     U(seats_list.first_seat, 0, TG_PARTITION_SEATS_MAX),
     U(seats_list.count, 0, TG_WIRE_SEATS_LIST_MAX),
     I(seats_list.state, -1, TG_SEAT_STATE_COUNT - 1), I(seats_list.row, -1, TG_ROWS_MAX - 1),
     I(seats_list.section, -1, TG_SECTIONS_MAX - 1));
BODY(availability, PARTITION(availability.partition_id));
BODY(partition_info, PARTITION(partition_info.partition_id));
BODY(layout, PARTITION(layout.partition_id));
BODY(seat_states, PARTITION(seat_states.partition_id));
EMPTY_BODY(stats);
BODY(log_read, PARTITION(log_read.partition_id), U(log_read.from_seq, 1, TG_WIRE_ID_MAX),
     U(log_read.max, 0, TG_WIRE_LOG_RECORDS_MAX));
BODY(log_ack, PARTITION(log_ack.partition_id), ID(log_ack.seq));
BODY(partition_create, PARTITION(partition_create.partition_id), ID(partition_create.event_id),
     U(partition_create.hold_ttl_ms, 0, UINT32_MAX),
     U(partition_create.payment_window_ms, 0, UINT32_MAX),
     U(partition_create.booking_capacity, 0, TG_BOOKINGS_MAX),
     U(partition_create.log_records, 0, TG_LOG_RECORDS_MAX),
     LIST(partition_create.section_count, partition_create.sections, TG_SECTIONS_MAX,
          partition_create_section),
     LIST_SPACE(partition_create.row_count, partition_create.rows, TG_ROWS_MAX,
                partition_create_row, SPACE_ROWS));
BODY(partition_restore, PARTITION(partition_restore.partition_id),
     U(partition_restore.phase, TG_WIRE_RESTORE_BEGIN, TG_WIRE_RESTORE_END),
     ID(partition_restore.epoch), ID(partition_restore.log_base),
     LIST_SPACE(partition_restore.booking_count, partition_restore.bookings,
                TG_WIRE_RESTORE_BOOKINGS_MAX, partition_restore_booking, SPACE_BOOKINGS),
     LIST_SPACE(partition_restore.seat_count, partition_restore.seats, TG_WIRE_CHANGES_MAX,
                partition_restore_seat, SPACE_CHANGES));
BODY(partition_reset, PARTITION(partition_reset.partition_id));
BODY(repl_backups, PARTITION(repl_backups.partition_id), ID(repl_backups.epoch),
     LIST(repl_backups.backup_count, repl_backups.backups, TG_GRID_BACKUPS_MAX,
          repl_backups_backup));
BODY(repl_append, PARTITION(repl_append.partition_id), ID(repl_append.epoch),
     ID(repl_append.persisted),
     LIST_SPACE(repl_append.record_count, repl_append.records, TG_WIRE_LOG_RECORDS_MAX,
                repl_append_record, SPACE_RECORDS),
     F_BOOL("", tg_msg, repl_append.in_sync));
BODY(repl_snapshot, PARTITION(repl_snapshot.partition_id),
     U(repl_snapshot.phase, TG_WIRE_SNAPSHOT_BEGIN, TG_WIRE_SNAPSHOT_END),
     ID(repl_snapshot.epoch), ID(repl_snapshot.base_seq),
     LIST_SPACE(repl_snapshot.booking_count, repl_snapshot.bookings,
                TG_WIRE_RESTORE_BOOKINGS_MAX, repl_snapshot_booking, SPACE_BOOKINGS),
     LIST_SPACE(repl_snapshot.seat_count, repl_snapshot.seats, TG_WIRE_CHANGES_MAX,
                repl_snapshot_seat, SPACE_CHANGES));
BODY(repl_status, PARTITION(repl_status.partition_id));

/* Replies. */
BODY(error, U(error.code, 1, TG_ERR_COUNT_ - 1), F_STR("", tg_msg, error.message),
     SEATS(error.seats));
#define BOOKING_FIELDS(m)                                                                          \
    BOOKING(m.booking_id), ID(m.user_id),                                                          \
        U(m.status, TG_BOOKING_CREATED, TG_BOOKING_STATUS_COUNT - 1), U(m.version, 0, UINT32_MAX), \
        MS(m.created_ms), MS(m.deadline_ms), SEATS(m.seats)
BODY(booking_create_ok, BOOKING_FIELDS(booking_create_ok));
BODY(booking_get_ok, BOOKING_FIELDS(booking_get_ok));
BODY(seats_hold_ok, SEATS(seats_hold_ok.seats), MS(seats_hold_ok.deadline_ms));
BODY(seats_hold_best_ok, SEATS(seats_hold_best_ok.seats), MS(seats_hold_best_ok.deadline_ms));
EMPTY_BODY(seats_release_ok);
EMPTY_BODY(booking_cancel_ok);
BODY(payment_begin_ok, MS(payment_begin_ok.deadline_ms));
EMPTY_BODY(payment_confirm_ok);
EMPTY_BODY(payment_fail_ok);
EMPTY_BODY(seats_block_ok);
EMPTY_BODY(seats_unblock_ok);
BODY(seat_get_ok, U(seat_get_ok.seat.seat_id, 0, SEAT_MAX),
     F_WORD("", tg_msg, seat_get_ok.seat.word), U(seat_get_ok.seat.section, 0, TG_SECTIONS_MAX - 1),
     U(seat_get_ok.seat.row, 0, TG_ROWS_MAX - 1), U(seat_get_ok.seat.number, 1, TG_ROW_SEATS_MAX),
     I(seat_get_ok.seat.price_minor, 0, INT64_MAX));
BODY(seats_list_ok, U(seats_list_ok.next_seat, 0, TG_PARTITION_SEATS_MAX),
     LIST_SPACE(seats_list_ok.seat_count, seats_list_ok.seats, TG_WIRE_SEATS_LIST_MAX,
                seats_list_ok_seat, SPACE_SEATS));
BODY(availability_ok, ID(availability_ok.log_head),
     TUPLE(availability_ok.totals, availability_ok_totals),
     LIST(availability_ok.section_count, availability_ok.sections, TG_SECTIONS_MAX,
          availability_ok_section),
     LIST_SPACE(availability_ok.row_count, availability_ok.rows, TG_ROWS_MAX, availability_ok_row,
                SPACE_COUNTS));
BODY(partition_info_ok, PARTITION(partition_info_ok.partition_id), ID(partition_info_ok.event_id),
     U(partition_info_ok.seat_count, 0, TG_PARTITION_SEATS_MAX),
     U(partition_info_ok.section_count, 0, TG_SECTIONS_MAX),
     U(partition_info_ok.row_count, 0, TG_ROWS_MAX),
     U(partition_info_ok.booking_capacity, 0, TG_BOOKINGS_MAX),
     U(partition_info_ok.log_records, 0, TG_LOG_RECORDS_MAX),
     U(partition_info_ok.hold_ttl_ms, 0, UINT32_MAX),
     U(partition_info_ok.payment_window_ms, 0, UINT32_MAX),
     U(partition_info_ok.segment_bytes, 0, UINT64_MAX), ID(partition_info_ok.map_epoch),
     U(partition_info_ok.bookings_created, 0, UINT64_MAX), ID(partition_info_ok.log_head),
     ID(partition_info_ok.log_persisted));
BODY(layout_ok,
     LIST(layout_ok.section_count, layout_ok.sections, TG_SECTIONS_MAX, layout_ok_section),
     LIST_SPACE(layout_ok.row_count, layout_ok.rows, TG_ROWS_MAX, layout_ok_row, SPACE_ROWS));
BODY(stats_ok, U(stats_ok.partitions, 0, UINT32_MAX), U(stats_ok.log_depth, 0, UINT64_MAX),
     U(stats_ok.oldest_unpersisted_age_ms, 0, UINT64_MAX),
     LIST(stats_ok.op_count, stats_ok.ops, TG_WIRE_STATS_OPS_MAX, stats_ok_op));
BODY(log_read_ok, ID(log_read_ok.map_epoch), ID(log_read_ok.log_head),
     LIST_SPACE(log_read_ok.record_count, log_read_ok.records, TG_WIRE_LOG_RECORDS_MAX,
                log_read_ok_record, SPACE_RECORDS));
EMPTY_BODY(log_ack_ok);
EMPTY_BODY(partition_create_ok);
EMPTY_BODY(partition_restore_ok);
BODY(partition_reset_ok, U(partition_reset_ok.bookings_cancelled, 0, TG_BOOKINGS_MAX),
     U(partition_reset_ok.seats_freed, 0, TG_BOOKINGS_MAX * TG_BOOKING_SEATS_MAX));
EMPTY_BODY(repl_backups_ok);
BODY(repl_append_ok, ID(repl_append_ok.epoch), ID(repl_append_ok.applied_seq));
EMPTY_BODY(repl_snapshot_ok);
BODY(repl_status_ok, U(repl_status_ok.role, 0, TG_REPL_ROLE_COUNT - 1),
     ID(repl_status_ok.epoch), ID(repl_status_ok.log_head), ID(repl_status_ok.acked_seq),
     LIST(repl_status_ok.link_count, repl_status_ok.links, TG_GRID_BACKUPS_MAX,
          repl_status_link));

BODY(seat_states_ok, U(seat_states_ok.from_seq, 1, TG_WIRE_ID_MAX),
     U(seat_states_ok.seat_count, 0, TG_PARTITION_SEATS_MAX),
     LIST_SPACE(seat_states_ok.state_count, seat_states_ok.states, TG_WIRE_STATES_MAX,
                seat_states_ok_word, SPACE_STATES),
     ID(seat_states_ok.epoch));

/* Events. */
BODY(seat_changes, PARTITION(seat_changes.partition_id),
     U(seat_changes.from_seq, 1, TG_WIRE_ID_MAX), U(seat_changes.to_seq, 1, TG_WIRE_ID_MAX),
     LIST_SPACE(seat_changes.change_count, seat_changes.changes, TG_WIRE_CHANGES_MAX,
                seat_changes_change, SPACE_CHANGES));

/* The grid manager. */
#define NAME(path) F_STR("", tg_msg, path)
BODY(grid_map, ID(grid_map.epoch), NAME(grid_map.manager),
     LIST_SPACE(grid_map.member_count, grid_map.members, TG_GRID_MEMBERS_MAX, grid_map_member,
                SPACE_MEMBERS),
     LIST_SPACE(grid_map.placement_count, grid_map.placements, TG_GRID_PARTITIONS_MAX,
                grid_map_placement, SPACE_PLACEMENTS));
BODY(pu_register, NAME(pu_register.name), U(pu_register.incarnation, 1, TG_WIRE_ID_MAX),
     NAME(pu_register.rep_url), NAME(pu_register.pub_url), NAME(pu_register.zone),
     LIST_SPACE(pu_register.held_count, pu_register.held, TG_PU_PARTITIONS_MAX, pu_register_held,
                SPACE_HELD));
BODY(heartbeat, NAME(heartbeat.name), U(heartbeat.incarnation, 1, TG_WIRE_ID_MAX),
     ID(heartbeat.map_epoch),
     LIST_SPACE(heartbeat.held_count, heartbeat.held, TG_PU_PARTITIONS_MAX, heartbeat_held,
                SPACE_HELD));
EMPTY_BODY(grid_status);
BODY(pu_remove, NAME(pu_remove.name));
BODY(pu_register_ok, NAME(pu_register_ok.manager), NAME(pu_register_ok.pub_url),
     ID(pu_register_ok.map_epoch),
     U(pu_register_ok.heartbeat_interval_ms, TG_GRID_HEARTBEAT_INTERVAL_MS_MIN,
       TG_GRID_HEARTBEAT_INTERVAL_MS_MAX),
     U(pu_register_ok.failure_timeout_ms, 2 * TG_GRID_HEARTBEAT_INTERVAL_MS_MIN,
       TG_GRID_FAILURE_TIMEOUT_MS_MAX));
BODY(heartbeat_ok, ID(heartbeat_ok.map_epoch), F_BOOL("", tg_msg, heartbeat_ok.leave));
BODY(grid_status_ok, NAME(grid_status_ok.manager), ID(grid_status_ok.map_epoch),
     U(grid_status_ok.heartbeat_interval_ms, TG_GRID_HEARTBEAT_INTERVAL_MS_MIN,
       TG_GRID_HEARTBEAT_INTERVAL_MS_MAX),
     U(grid_status_ok.failure_timeout_ms, 2 * TG_GRID_HEARTBEAT_INTERVAL_MS_MIN,
       TG_GRID_FAILURE_TIMEOUT_MS_MAX),
     LIST_SPACE(grid_status_ok.member_count, grid_status_ok.members, TG_GRID_MEMBERS_MAX,
                grid_status_member, SPACE_MEMBERS),
     LIST_SPACE(grid_status_ok.placement_count, grid_status_ok.placements,
                TG_GRID_PARTITIONS_MAX, grid_status_placement, SPACE_PLACEMENTS));
EMPTY_BODY(pu_remove_ok);
BODY(pu_add, NAME(pu_add.name));
BODY(partition_move, PARTITION(partition_move.partition_id), NAME(partition_move.to));
EMPTY_BODY(rebalance);
BODY(pu_drain, NAME(pu_drain.name));
#define MOVES_OK(name)                                                                             \
    BODY(name, U(moves_ok.started, 0, TG_GRID_PARTITIONS_MAX),                                     \
         U(moves_ok.pending, 0, TG_GRID_PARTITIONS_MAX),                                           \
         U(moves_ok.held, 0, TG_GRID_PARTITIONS_MAX))
MOVES_OK(pu_add_ok);
MOVES_OK(partition_move_ok);
MOVES_OK(rebalance_ok);
MOVES_OK(pu_drain_ok);

/* ---- Rules across fields ------------------------------------------------ */

static const char *check_partition_info_ok(const tg_msg *m)
{
    if (m->partition_info_ok.log_persisted > m->partition_info_ok.log_head) {
        return "partition_info_ok.log_persisted: beyond log_head";
    }
    return NULL;
}

static const char *check_stats_ok(const tg_msg *m)
{
    bool seen[TG_WIRE_REQUEST_COUNT][TG_ERR_COUNT_];
    memset(seen, 0, sizeof(seen));
    for (uint32_t i = 0; i < m->stats_ok.op_count; i++) {
        const tg_wire_op_count *op = &m->stats_ok.ops[i];
        TG_ASSERT(op->type >= 1 && op->type <= TG_WIRE_REQUEST_LAST && op->code < TG_ERR_COUNT_);
        if (seen[op->type - 1][op->code]) {
            return "stats_ok.ops: a (type, code) pair appears twice";
        }
        seen[op->type - 1][op->code] = true;
    }
    return NULL;
}

static const char *check_log_read_ok(const tg_msg *m)
{
    const tg_wire_log_record *records = m->log_read_ok.records;
    uint32_t n = m->log_read_ok.record_count;
    for (uint32_t i = 0; i < n; i++) {
        if (i > 0 && records[i].seq != records[i - 1].seq + 1) {
            return "log_read_ok.records: sequence numbers are not consecutive";
        }
    }
    if (n > 0 && records[n - 1].seq > m->log_read_ok.log_head) {
        return "log_read_ok.records: beyond log_head";
    }
    return NULL;
}

static const char *check_repl_backups(const tg_msg *m)
{
    const __typeof__(m->repl_backups) *r = &m->repl_backups;
    for (uint32_t i = 0; i < r->backup_count; i++) {
        if (r->backups[i].name[0] == '\0') {
            return "repl_backups.backups[].name: empty";
        }
        if (r->backups[i].rep_url[0] == '\0') {
            return "repl_backups.backups[].rep_url: empty";
        }
        for (uint32_t k = 0; k < i; k++) {
            if (strcmp(r->backups[i].name, r->backups[k].name) == 0) {
                return "repl_backups.backups: a name appears twice";
            }
        }
    }
    return NULL;
}

static const char *check_repl_append(const tg_msg *m)
{
    const tg_wire_log_record *records = m->repl_append.records;
    for (uint32_t i = 0; i < m->repl_append.record_count; i++) {
        if (i > 0 && records[i].seq != records[i - 1].seq + 1) {
            return "repl_append.records: sequence numbers are not consecutive";
        }
        if (records[i].kind == 1 && tg_seat_word_state(records[i].word) >= TG_SEAT_STATE_COUNT) {
            return "repl_append.records[].word: seat word has no valid state";
        }
    }
    return NULL;
}

static const char *check_repl_status_ok(const tg_msg *m)
{
    for (uint32_t i = 0; i < m->repl_status_ok.link_count; i++) {
        if (m->repl_status_ok.links[i].name[0] == '\0') {
            return "repl_status_ok.links[].name: empty";
        }
    }
    return NULL;
}

static const char *check_seat_changes(const tg_msg *m)
{
    if (m->seat_changes.from_seq > m->seat_changes.to_seq) {
        return "seat_changes.from_seq: after to_seq";
    }
    return NULL;
}

/* Exactly the words the seats need, each state a seat state, and nothing
 * past the last seat: a cache can copy the nibbles without checking. */
static const char *check_seat_states_ok(const tg_msg *m)
{
    uint32_t seats = m->seat_states_ok.seat_count;
    if (m->seat_states_ok.state_count !=
        (seats + TG_WIRE_STATES_PER_WORD - 1) / TG_WIRE_STATES_PER_WORD) {
        return "seat_states_ok.states: not one word per 16 seats";
    }
    for (uint32_t i = 0; i < m->seat_states_ok.state_count; i++) {
        uint64_t w = m->seat_states_ok.states[i].packed;
        for (uint32_t k = 0; k < TG_WIRE_STATES_PER_WORD; k++, w >>= 4) {
            uint32_t seat = i * TG_WIRE_STATES_PER_WORD + k;
            if ((w & 15u) >= (seat < seats ? TG_SEAT_STATE_COUNT : 1u)) {
                return "seat_states_ok.states[]: not a seat state";
            }
        }
    }
    return NULL;
}

_Static_assert(TG_WIRE_STATS_OPS_MAX ==
                   sizeof(((tg_msg *)0)->stats_ok.ops) / sizeof(tg_wire_op_count),
               "stats_ok.ops holds every counter");
_Static_assert(TG_SECTIONS_MAX ==
                   sizeof(((tg_msg *)0)->layout_ok.sections) / sizeof(tg_wire_section),
               "layout_ok.sections holds every section");
_Static_assert(TG_SECTIONS_MAX ==
                   sizeof(((tg_msg *)0)->availability_ok.sections) / sizeof(tg_wire_counts),
               "availability_ok.sections holds every section");

/* The sentences of the rules that the map and the status reply share. */
typedef struct {
    const char *name_empty, *name_twice;
    const char *ids_order, *primary_range, *backup_range, *backup_twice, *persisted, *reports;
} grid_whys;

static const grid_whys map_whys = {
    "grid_map.members[].name: empty",
    "grid_map.members: a name appears twice",
    "grid_map.placements: partition ids are not ascending",
    "grid_map.placements[].primary: no such member",
    "grid_map.placements[].backups: no such member",
    "grid_map.placements[].backups: a member appears twice or is the primary",
    NULL,
    NULL,
};

static const grid_whys status_whys = {
    "grid_status_ok.members[].name: empty",
    "grid_status_ok.members: a name appears twice",
    "grid_status_ok.placements: partition ids are not ascending",
    "grid_status_ok.placements[].primary: no such member",
    "grid_status_ok.placements[].backups: no such member",
    "grid_status_ok.placements[].backups: a member appears twice or is the primary",
    "grid_status_ok.placements[].log_persisted: beyond log_head",
    "grid_status_ok.placements[]: more backups in sync or reported than it has",
};

static const char *check_members(const tg_wire_member *m, uint32_t n, const grid_whys *w)
{
    for (uint32_t i = 0; i < n; i++) {
        if (m[i].name[0] == '\0') {
            return w->name_empty;
        }
        for (uint32_t k = 0; k < i; k++) {
            if (strcmp(m[i].name, m[k].name) == 0) {
                return w->name_twice;
            }
        }
    }
    return NULL;
}

/* Backups name members, each once, never the primary. */
static const char *check_backups(const tg_wire_placement *p, uint32_t members, const grid_whys *w)
{
    for (uint32_t b = 0; b < p->backups.count; b++) {
        uint32_t m = p->backups.members[b];
        if (m >= members) {
            return w->backup_range;
        }
        if (p->primary >= 0 && m == (uint32_t)p->primary) {
            return w->backup_twice;
        }
        for (uint32_t k = 0; k < b; k++) {
            if (p->backups.members[k] == m) {
                return w->backup_twice;
            }
        }
    }
    return NULL;
}

static const char *check_placements(const tg_wire_placement *p, uint32_t n, uint32_t members,
                                    const grid_whys *w)
{
    for (uint32_t i = 0; i < n; i++) {
        if (i > 0 && p[i].partition_id <= p[i - 1].partition_id) {
            return w->ids_order;
        }
        if (p[i].primary >= 0 && (uint32_t)p[i].primary >= members) {
            return w->primary_range;
        }
        const char *why = check_backups(&p[i], members, w);
        if (why != NULL) {
            return why;
        }
        if (w->persisted != NULL && p[i].log_persisted > p[i].log_head) {
            return w->persisted;
        }
        if (w->reports != NULL && (p[i].backups_in_sync > p[i].backups_reported ||
                                   p[i].backups_reported > p[i].backups.count)) {
            return w->reports;
        }
    }
    return NULL;
}

static const char *check_grid_map(const tg_msg *m)
{
    const char *why = check_members(m->grid_map.members, m->grid_map.member_count, &map_whys);
    if (why == NULL) {
        why = check_placements(m->grid_map.placements, m->grid_map.placement_count,
                               m->grid_map.member_count, &map_whys);
    }
    return why;
}

static const char *check_grid_status_ok(const tg_msg *m)
{
    const __typeof__(m->grid_status_ok) *s = &m->grid_status_ok;
    const char *why = check_members(s->members, s->member_count, &status_whys);
    if (why == NULL) {
        why = check_placements(s->placements, s->placement_count, s->member_count, &status_whys);
    }
    return why;
}

/* Held partitions: ascending ids, persisted never beyond the head. */
static const char *check_held(const tg_wire_held *h, uint32_t n, const char *why_order,
                              const char *why_persisted)
{
    for (uint32_t i = 0; i < n; i++) {
        if (i > 0 && h[i].partition_id <= h[i - 1].partition_id) {
            return why_order;
        }
        if (h[i].log_persisted > h[i].log_head) {
            return why_persisted;
        }
    }
    return NULL;
}

static const char *check_pu_register(const tg_msg *m)
{
    if (m->pu_register.name[0] == '\0') {
        return "pu_register.name: empty";
    }
    if (m->pu_register.rep_url[0] == '\0') {
        return "pu_register.rep_url: empty";
    }
    return check_held(m->pu_register.held, m->pu_register.held_count,
                      "pu_register.held: partition ids are not ascending",
                      "pu_register.held[].log_persisted: beyond log_head");
}

static const char *check_heartbeat(const tg_msg *m)
{
    if (m->heartbeat.name[0] == '\0') {
        return "heartbeat.name: empty";
    }
    return check_held(m->heartbeat.held, m->heartbeat.held_count,
                      "heartbeat.held: partition ids are not ascending",
                      "heartbeat.held[].log_persisted: beyond log_head");
}

static const char *check_pu_remove(const tg_msg *m)
{
    return m->pu_remove.name[0] == '\0' ? "pu_remove.name: empty" : NULL;
}

static const char *check_pu_add(const tg_msg *m)
{
    return m->pu_add.name[0] == '\0' ? "pu_add.name: empty" : NULL;
}

static const char *check_partition_move(const tg_msg *m)
{
    return m->partition_move.to[0] == '\0' ? "partition_move.to: empty" : NULL;
}

static const char *check_pu_drain(const tg_msg *m)
{
    return m->pu_drain.name[0] == '\0' ? "pu_drain.name: empty" : NULL;
}

static const char *check_moves_ok(const tg_msg *m)
{
    return m->moves_ok.started > m->moves_ok.pending ? "moves_ok.started: above pending" : NULL;
}

/* One lost heartbeat must never kill: the timeout spans at least two. */
static const char *check_pu_register_ok(const tg_msg *m)
{
    if (m->pu_register_ok.failure_timeout_ms < 2 * m->pu_register_ok.heartbeat_interval_ms) {
        return "pu_register_ok.failure_timeout_ms: shorter than two heartbeat intervals";
    }
    return NULL;
}

#define MESSAGE(type, name, check) [type] = {#name, &name##_body, check}

static const wire_message messages[TG_WIRE_TYPE_LIMIT] = {
    MESSAGE(TG_WIRE_BOOKING_CREATE, booking_create, NULL),
    MESSAGE(TG_WIRE_BOOKING_GET, booking_get, NULL),
    MESSAGE(TG_WIRE_SEATS_HOLD, seats_hold, NULL),
    MESSAGE(TG_WIRE_SEATS_HOLD_BEST, seats_hold_best, NULL),
    MESSAGE(TG_WIRE_SEATS_RELEASE, seats_release, NULL),
    MESSAGE(TG_WIRE_BOOKING_CANCEL, booking_cancel, NULL),
    MESSAGE(TG_WIRE_PAYMENT_BEGIN, payment_begin, NULL),
    MESSAGE(TG_WIRE_PAYMENT_CONFIRM, payment_confirm, NULL),
    MESSAGE(TG_WIRE_PAYMENT_FAIL, payment_fail, NULL),
    MESSAGE(TG_WIRE_SEATS_BLOCK, seats_block, NULL),
    MESSAGE(TG_WIRE_SEATS_UNBLOCK, seats_unblock, NULL),
    MESSAGE(TG_WIRE_SEAT_GET, seat_get, NULL),
    MESSAGE(TG_WIRE_SEATS_LIST, seats_list, NULL),
    MESSAGE(TG_WIRE_AVAILABILITY, availability, NULL),
    MESSAGE(TG_WIRE_PARTITION_INFO, partition_info, NULL),
    MESSAGE(TG_WIRE_LAYOUT, layout, NULL),
    MESSAGE(TG_WIRE_STATS, stats, NULL),
    MESSAGE(TG_WIRE_LOG_READ, log_read, NULL),
    MESSAGE(TG_WIRE_LOG_ACK, log_ack, NULL),
    MESSAGE(TG_WIRE_PARTITION_CREATE, partition_create, NULL),
    MESSAGE(TG_WIRE_PARTITION_RESTORE, partition_restore, NULL),
    MESSAGE(TG_WIRE_PARTITION_RESET, partition_reset, NULL),
    MESSAGE(TG_WIRE_REPL_BACKUPS, repl_backups, check_repl_backups),
    MESSAGE(TG_WIRE_REPL_APPEND, repl_append, check_repl_append),
    MESSAGE(TG_WIRE_REPL_SNAPSHOT, repl_snapshot, NULL),
    MESSAGE(TG_WIRE_REPL_STATUS, repl_status, NULL),
    MESSAGE(TG_WIRE_SEAT_STATES, seat_states, NULL),
    MESSAGE(TG_WIRE_ERROR, error, NULL),
    MESSAGE(TG_WIRE_BOOKING_CREATE_OK, booking_create_ok, NULL),
    MESSAGE(TG_WIRE_BOOKING_GET_OK, booking_get_ok, NULL),
    MESSAGE(TG_WIRE_SEATS_HOLD_OK, seats_hold_ok, NULL),
    MESSAGE(TG_WIRE_SEATS_HOLD_BEST_OK, seats_hold_best_ok, NULL),
    MESSAGE(TG_WIRE_SEATS_RELEASE_OK, seats_release_ok, NULL),
    MESSAGE(TG_WIRE_BOOKING_CANCEL_OK, booking_cancel_ok, NULL),
    MESSAGE(TG_WIRE_PAYMENT_BEGIN_OK, payment_begin_ok, NULL),
    MESSAGE(TG_WIRE_PAYMENT_CONFIRM_OK, payment_confirm_ok, NULL),
    MESSAGE(TG_WIRE_PAYMENT_FAIL_OK, payment_fail_ok, NULL),
    MESSAGE(TG_WIRE_SEATS_BLOCK_OK, seats_block_ok, NULL),
    MESSAGE(TG_WIRE_SEATS_UNBLOCK_OK, seats_unblock_ok, NULL),
    MESSAGE(TG_WIRE_SEAT_GET_OK, seat_get_ok, NULL),
    MESSAGE(TG_WIRE_SEATS_LIST_OK, seats_list_ok, NULL),
    MESSAGE(TG_WIRE_AVAILABILITY_OK, availability_ok, NULL),
    MESSAGE(TG_WIRE_PARTITION_INFO_OK, partition_info_ok, check_partition_info_ok),
    MESSAGE(TG_WIRE_LAYOUT_OK, layout_ok, NULL),
    MESSAGE(TG_WIRE_STATS_OK, stats_ok, check_stats_ok),
    MESSAGE(TG_WIRE_LOG_READ_OK, log_read_ok, check_log_read_ok),
    MESSAGE(TG_WIRE_LOG_ACK_OK, log_ack_ok, NULL),
    MESSAGE(TG_WIRE_PARTITION_CREATE_OK, partition_create_ok, NULL),
    MESSAGE(TG_WIRE_PARTITION_RESTORE_OK, partition_restore_ok, NULL),
    MESSAGE(TG_WIRE_PARTITION_RESET_OK, partition_reset_ok, NULL),
    MESSAGE(TG_WIRE_REPL_BACKUPS_OK, repl_backups_ok, NULL),
    MESSAGE(TG_WIRE_REPL_APPEND_OK, repl_append_ok, NULL),
    MESSAGE(TG_WIRE_REPL_SNAPSHOT_OK, repl_snapshot_ok, NULL),
    MESSAGE(TG_WIRE_REPL_STATUS_OK, repl_status_ok, check_repl_status_ok),
    MESSAGE(TG_WIRE_SEAT_STATES_OK, seat_states_ok, check_seat_states_ok),
    MESSAGE(TG_WIRE_SEAT_CHANGES, seat_changes, check_seat_changes),
    MESSAGE(TG_WIRE_GRID_MAP, grid_map, check_grid_map),
    MESSAGE(TG_WIRE_PU_REGISTER, pu_register, check_pu_register),
    MESSAGE(TG_WIRE_HEARTBEAT, heartbeat, check_heartbeat),
    MESSAGE(TG_WIRE_GRID_STATUS, grid_status, NULL),
    MESSAGE(TG_WIRE_PU_REMOVE, pu_remove, check_pu_remove),
    MESSAGE(TG_WIRE_PU_REGISTER_OK, pu_register_ok, check_pu_register_ok),
    MESSAGE(TG_WIRE_HEARTBEAT_OK, heartbeat_ok, NULL),
    MESSAGE(TG_WIRE_GRID_STATUS_OK, grid_status_ok, check_grid_status_ok),
    MESSAGE(TG_WIRE_PU_REMOVE_OK, pu_remove_ok, NULL),
    MESSAGE(TG_WIRE_PU_ADD, pu_add, check_pu_add),
    MESSAGE(TG_WIRE_PARTITION_MOVE, partition_move, check_partition_move),
    MESSAGE(TG_WIRE_REBALANCE, rebalance, NULL),
    MESSAGE(TG_WIRE_PU_DRAIN, pu_drain, check_pu_drain),
    MESSAGE(TG_WIRE_PU_ADD_OK, pu_add_ok, check_moves_ok),
    MESSAGE(TG_WIRE_PARTITION_MOVE_OK, partition_move_ok, check_moves_ok),
    MESSAGE(TG_WIRE_REBALANCE_OK, rebalance_ok, check_moves_ok),
    MESSAGE(TG_WIRE_PU_DRAIN_OK, pu_drain_ok, check_moves_ok),
};

static const wire_message *message_lookup(uint64_t type)
{
    if (type >= TG_WIRE_TYPE_LIMIT || messages[type].body == NULL) {
        return NULL;
    }
    return &messages[type];
}

/* ---- Values: integer checks shared by both directions ------------------ */

static const char *const why_short = "message is truncated";

static const char *check_integer(const wire_field *f, const integer *v)
{
    switch (f->kind) {
    case K_INT:
        if (v->negative ? v->s < f->smin || v->s > f->smax
                        : v->u > (uint64_t)INT64_MAX || (int64_t)v->u < f->smin ||
                              (int64_t)v->u > f->smax) {
            return f->why_range;
        }
        return NULL;
    case K_UINT:
        return v->negative || v->u < f->umin || v->u > f->umax ? f->why_range : NULL;
    case K_BOOKING_ID:
        if (v->negative || v->u > TG_WIRE_ID_MAX) {
            return f->why_range;
        }
        return tg_booking_id_seq(v->u) == 0 ? f->why_value : NULL;
    case K_SEAT_WORD:
        if (v->negative) {
            return f->why_range;
        }
        return tg_seat_word_state(v->u) >= TG_SEAT_STATE_COUNT ? f->why_value : NULL;
    default:
        TG_UNREACHABLE();
    }
}

static void store_integer(const wire_field *f, const integer *v, unsigned char *dst)
{
    if (f->kind == K_INT) {
        int64_t s = v->negative ? v->s : (int64_t)v->u;
        int32_t s32 = (int32_t)s;
        memcpy(dst, f->width == 8 ? (const void *)&s : (const void *)&s32, f->width);
        return;
    }
    TG_ASSERT(f->width == 8 || v->u <= UINT32_MAX); /* every 4-byte field's bound fits */
    uint32_t u32 = (uint32_t)v->u;
    memcpy(dst, f->width == 8 ? (const void *)&v->u : (const void *)&u32, f->width);
}

static integer load_integer(const wire_field *f, const unsigned char *src)
{
    integer v = {false, 0, 0};
    if (f->kind == K_INT) {
        int32_t s32 = 0;
        int64_t s = 0;
        memcpy(f->width == 8 ? (void *)&s : (void *)&s32, src, f->width);
        s = f->width == 8 ? s : s32;
        v.negative = s < 0;
        v.s = s;
        v.u = v.negative ? 0 : (uint64_t)s;
        return v;
    }
    uint32_t u32 = 0;
    memcpy(f->width == 8 ? (void *)&v.u : (void *)&u32, src, f->width);
    v.u = f->width == 8 ? v.u : u32;
    return v;
}

/* ---- Decoding ----------------------------------------------------------- */

static const char *decode_scalar(reader *r, const wire_field *f, unsigned char *base)
{
    unsigned char *dst = base + f->offset;
    rd_status st;
    if (f->kind == K_BOOL) {
        bool b = false;
        st = rd_bool(r, &b);
        if (st == RD_OK) {
            memcpy(dst, &b, sizeof(b));
        }
    } else if (f->kind == K_STR) {
        const uint8_t *s = NULL;
        uint32_t len = 0;
        st = rd_str(r, f->width - 1u, &s, &len);
        if (st == RD_LONG) {
            return f->why_range;
        }
        if (st == RD_OK && !text_valid(s, len)) {
            return f->why_value;
        }
        if (st == RD_OK) {
            memcpy(dst, s, len);
            dst[len] = '\0';
        }
    } else {
        integer v;
        st = rd_integer(r, &v);
        const char *why = st == RD_OK ? check_integer(f, &v) : NULL;
        if (why != NULL) {
            return why;
        }
        if (st == RD_OK) {
            store_integer(f, &v, dst);
        }
    }
    return st == RD_OK ? NULL : st == RD_SHORT ? why_short : f->why_type;
}

/* Reads a tg_wire_member_refs: an array of at most f->umax member indices. */
static const char *decode_refs(reader *r, const wire_field *f, unsigned char *base)
{
    tg_wire_member_refs *dst = (tg_wire_member_refs *)(void *)(base + f->offset);
    uint32_t n = 0;
    rd_status st = rd_array(r, &n);
    if (st != RD_OK) {
        return st == RD_SHORT ? why_short : f->why_type;
    }
    if (n > f->umax) {
        return f->why_range;
    }
    for (uint32_t i = 0; i < n; i++) {
        integer v;
        st = rd_integer(r, &v);
        if (st != RD_OK) {
            return st == RD_SHORT ? why_short : f->why_type;
        }
        if (v.negative || v.u >= TG_GRID_MEMBERS_MAX) {
            return f->why_value;
        }
        dst->members[i] = (uint32_t)v.u;
    }
    dst->count = n;
    return NULL;
}

/* Reads one nested array of t's fields (scalars, or member indices) into dst. */
static const char *decode_tuple(reader *r, const wire_tuple *t, const char *why_type,
                                unsigned char *dst)
{
    uint32_t n = 0;
    rd_status st = rd_array(r, &n);
    if (st != RD_OK) {
        return st == RD_SHORT ? why_short : why_type;
    }
    if (n != t->field_count) {
        return t->why_arity;
    }
    for (uint32_t i = 0; i < n; i++) {
        const wire_field *f = &t->fields[i];
        const char *why = f->kind == K_REFS ? decode_refs(r, f, dst) : decode_scalar(r, f, dst);
        if (why != NULL) {
            return why;
        }
    }
    return NULL;
}

static void space_slot(const tg_wire_space *space, unsigned slot, void **items, uint32_t *cap)
{
    *items = NULL;
    *cap = 0;
    if (space == NULL) {
        return;
    }
    switch (slot) {
    case SPACE_SEATS:
        *items = space->seats;
        *cap = space->seats_capacity;
        break;
    case SPACE_COUNTS:
        *items = space->counts;
        *cap = space->counts_capacity;
        break;
    case SPACE_ROWS:
        *items = space->rows;
        *cap = space->rows_capacity;
        break;
    case SPACE_RECORDS:
        *items = space->records;
        *cap = space->records_capacity;
        break;
    case SPACE_CHANGES:
        *items = space->changes;
        *cap = space->changes_capacity;
        break;
    case SPACE_BOOKINGS:
        *items = space->bookings;
        *cap = space->bookings_capacity;
        break;
    case SPACE_MEMBERS:
        *items = space->members;
        *cap = space->members_capacity;
        break;
    case SPACE_PLACEMENTS:
        *items = space->placements;
        *cap = space->placements_capacity;
        break;
    case SPACE_HELD:
        *items = space->held;
        *cap = space->held_capacity;
        break;
    case SPACE_STATES:
        *items = space->states;
        *cap = space->states_capacity;
        break;
    default:
        TG_UNREACHABLE();
    }
    if (*items == NULL) {
        *cap = 0;
    }
}

static const char *decode_seat_ids(reader *r, const wire_field *f, tg_wire_seat_ids *dst)
{
    uint32_t n = 0;
    rd_status st = rd_array(r, &n);
    if (st != RD_OK) {
        return st == RD_SHORT ? why_short : f->why_type;
    }
    if (n > TG_BOOKING_SEATS_MAX) {
        return f->why_range;
    }
    for (uint32_t i = 0; i < n; i++) {
        integer v;
        st = rd_integer(r, &v);
        if (st != RD_OK) {
            return st == RD_SHORT ? why_short : f->why_type;
        }
        if (v.negative || v.u > SEAT_MAX) {
            return f->why_value;
        }
        dst->ids[i] = (uint32_t)v.u;
    }
    dst->count = n;
    return NULL;
}

static const char *decode_list(reader *r, const wire_field *f, const tg_wire_space *space,
                               unsigned char *msg)
{
    uint32_t n = 0;
    rd_status st = rd_array(r, &n);
    if (st != RD_OK) {
        return st == RD_SHORT ? why_short : f->why_type;
    }
    if (n > f->umax) {
        return f->why_range;
    }
    unsigned char *items = msg + f->items_offset;
    if (f->kind == K_LIST_SPACE) {
        void *lent = NULL;
        uint32_t cap = 0;
        space_slot(space, f->space, &lent, &cap);
        if (n > cap) {
            return f->why_value;
        }
        memcpy(items, &lent, sizeof(lent));
        items = lent;
    }
    memcpy(msg + f->offset, &n, sizeof(n));
    for (uint32_t i = 0; i < n; i++) {
        const char *why = decode_tuple(r, f->elem, f->why_type, items + (size_t)i * f->elem->size);
        if (why != NULL) {
            return why;
        }
    }
    return NULL;
}

static const char *decode_field(reader *r, const wire_field *f, const tg_wire_space *space,
                                tg_msg *out)
{
    unsigned char *msg = (unsigned char *)out;
    switch (f->kind) {
    case K_SEAT_IDS:
        return decode_seat_ids(r, f, (tg_wire_seat_ids *)(void *)(msg + f->offset));
    case K_TUPLE:
        return decode_tuple(r, f->elem, f->why_type, msg + f->offset);
    case K_LIST:
    case K_LIST_SPACE:
        return decode_list(r, f, space, msg);
    default:
        return decode_scalar(r, f, msg);
    }
}

/* Reads [type, version, ...] and returns the message's descriptor. */
static const char *decode_head(reader *r, const wire_message **m, uint32_t *fields)
{
    uint32_t n = 0;
    integer type = {false, 0, 0}, version = {false, 0, 0};
    if (r->p == r->end) {
        return "message is empty";
    }
    rd_status st = rd_array(r, &n);
    if (st != RD_OK) {
        return st == RD_SHORT ? why_short : "message is not an array";
    }
    if (n < 2) {
        return "message has no type and version";
    }
    st = rd_integer(r, &type);
    if (st != RD_OK) {
        return st == RD_SHORT ? why_short : "message type is not an unsigned integer";
    }
    *m = type.negative ? NULL : message_lookup(type.u);
    if (*m == NULL) {
        return "unknown message type";
    }
    st = rd_integer(r, &version);
    if (st != RD_OK) {
        return st == RD_SHORT ? why_short : "message version is not an unsigned integer";
    }
    if (version.negative || version.u != TG_WIRE_VERSION) {
        return "unsupported message version";
    }
    *fields = n - 2;
    return NULL;
}

static const char *decode_message(const uint8_t *buf, size_t len, const tg_wire_space *space,
                                  tg_msg *out)
{
    reader r = {buf, buf + len};
    const wire_message *m = NULL;
    uint32_t fields = 0;
    if (len > TG_WIRE_MESSAGE_BYTES_MAX) {
        return "message is larger than TG_WIRE_MESSAGE_BYTES_MAX";
    }
    const char *why = decode_head(&r, &m, &fields);
    if (why != NULL) {
        return why;
    }
    if (fields != m->body->field_count) {
        return m->body->why_arity;
    }
    out->type = (tg_wire_type)(m - messages);
    for (uint32_t i = 0; i < fields && why == NULL; i++) {
        why = decode_field(&r, &m->body->fields[i], space, out);
    }
    if (why == NULL && r.p != r.end) {
        why = "trailing bytes after the message";
    }
    if (why == NULL && m->check != NULL) {
        why = m->check(out);
    }
    return why;
}

tg_err tg_wire_decode(const void *buf, size_t len, const tg_wire_space *space, tg_msg *out,
                      const char **why)
{
    TG_ASSERT(out != NULL && (buf != NULL || len == 0));
    static const uint8_t nothing[1] = {0};
    const char *w = decode_message(buf != NULL ? buf : nothing, len, space, out);
    if (why != NULL) {
        *why = w;
    }
    if (w != NULL) {
        out->type = TG_WIRE_NONE;
        return TG_EPROTO;
    }
    return TG_OK;
}

/* ---- Encoding ----------------------------------------------------------- */

typedef struct {
    msgpack_packer pk;
    bool failed; /* a write into the buffer failed: out of memory */
} encoder;

static void pack_result(encoder *e, int rc)
{
    e->failed |= rc != 0;
}

static const char *encode_scalar(encoder *e, const wire_field *f, const unsigned char *base)
{
    const unsigned char *src = base + f->offset;
    if (f->kind == K_BOOL) {
        bool b = false;
        memcpy(&b, src, sizeof(b));
        pack_result(e, b ? msgpack_pack_true(&e->pk) : msgpack_pack_false(&e->pk));
        return NULL;
    }
    if (f->kind == K_STR) {
        size_t n = strnlen((const char *)src, f->width);
        if (n >= f->width) {
            return f->why_range;
        }
        if (!text_valid(src, n)) {
            return f->why_value;
        }
        pack_result(e, msgpack_pack_str(&e->pk, n));
        pack_result(e, msgpack_pack_str_body(&e->pk, src, n));
        return NULL;
    }
    integer v = load_integer(f, src);
    const char *why = check_integer(f, &v);
    if (why != NULL) {
        return why;
    }
    pack_result(e, f->kind == K_INT ? msgpack_pack_int64(&e->pk, v.negative ? v.s : (int64_t)v.u)
                                    : msgpack_pack_uint64(&e->pk, v.u));
    return NULL;
}

static const char *encode_refs(encoder *e, const wire_field *f, const unsigned char *base)
{
    const tg_wire_member_refs *refs = (const tg_wire_member_refs *)(const void *)(base + f->offset);
    if (refs->count > f->umax) {
        return f->why_range;
    }
    pack_result(e, msgpack_pack_array(&e->pk, refs->count));
    for (uint32_t i = 0; i < refs->count; i++) {
        if (refs->members[i] >= TG_GRID_MEMBERS_MAX) {
            return f->why_value;
        }
        pack_result(e, msgpack_pack_uint32(&e->pk, refs->members[i]));
    }
    return NULL;
}

static const char *encode_tuple(encoder *e, const wire_tuple *t, const unsigned char *src)
{
    pack_result(e, msgpack_pack_array(&e->pk, t->field_count));
    for (uint32_t i = 0; i < t->field_count; i++) {
        const wire_field *f = &t->fields[i];
        const char *why = f->kind == K_REFS ? encode_refs(e, f, src) : encode_scalar(e, f, src);
        if (why != NULL) {
            return why;
        }
    }
    return NULL;
}

static const char *encode_seat_ids(encoder *e, const wire_field *f, const tg_wire_seat_ids *ids)
{
    if (ids->count > TG_BOOKING_SEATS_MAX) {
        return f->why_range;
    }
    pack_result(e, msgpack_pack_array(&e->pk, ids->count));
    for (uint32_t i = 0; i < ids->count; i++) {
        if (ids->ids[i] > SEAT_MAX) {
            return f->why_value;
        }
        pack_result(e, msgpack_pack_uint32(&e->pk, ids->ids[i]));
    }
    return NULL;
}

static const char *encode_list(encoder *e, const wire_field *f, const unsigned char *msg)
{
    uint32_t n = 0;
    memcpy(&n, msg + f->offset, sizeof(n));
    if (n > f->umax) {
        return f->why_range;
    }
    const unsigned char *items = msg + f->items_offset;
    if (f->kind == K_LIST_SPACE) {
        memcpy(&items, msg + f->items_offset, sizeof(items));
        if (items == NULL && n > 0) {
            return "a list of items has a NULL pointer";
        }
    }
    pack_result(e, msgpack_pack_array(&e->pk, n));
    for (uint32_t i = 0; i < n; i++) {
        const char *why = encode_tuple(e, f->elem, items + (size_t)i * f->elem->size);
        if (why != NULL) {
            return why;
        }
    }
    return NULL;
}

static const char *encode_field(encoder *e, const wire_field *f, const tg_msg *msg)
{
    const unsigned char *base = (const unsigned char *)msg;
    switch (f->kind) {
    case K_SEAT_IDS:
        return encode_seat_ids(e, f, (const tg_wire_seat_ids *)(const void *)(base + f->offset));
    case K_TUPLE:
        return encode_tuple(e, f->elem, base + f->offset);
    case K_LIST:
    case K_LIST_SPACE:
        return encode_list(e, f, base);
    default:
        return encode_scalar(e, f, base);
    }
}

/* Appends msg to out; on failure out may hold part of it. */
static tg_err encode_append(const tg_msg *msg, msgpack_sbuffer *out, const char **why)
{
    const wire_message *m = message_lookup((uint64_t)msg->type);
    encoder e = {.failed = false};
    if (m == NULL) {
        *why = "unknown message type";
        return TG_EINVAL;
    }
    *why = NULL;
    msgpack_packer_init(&e.pk, out, msgpack_sbuffer_write);
    pack_result(&e, msgpack_pack_array(&e.pk, 2 + (size_t)m->body->field_count));
    pack_result(&e, msgpack_pack_uint32(&e.pk, (uint32_t)msg->type));
    pack_result(&e, msgpack_pack_uint32(&e.pk, TG_WIRE_VERSION));
    for (uint32_t i = 0; i < m->body->field_count && *why == NULL; i++) {
        *why = encode_field(&e, &m->body->fields[i], msg);
    }
    if (*why == NULL && m->check != NULL) {
        *why = m->check(msg); /* after the fields: the checks rely on their bounds */
    }
    if (*why != NULL) {
        return TG_EINVAL;
    }
    if (e.failed) {
        *why = "out of memory";
        return TG_ENOMEM;
    }
    if (out->size > TG_WIRE_MESSAGE_BYTES_MAX) {
        *why = "message is larger than TG_WIRE_MESSAGE_BYTES_MAX";
        return TG_EINVAL;
    }
    return TG_OK;
}

tg_err tg_wire_encode(const tg_msg *msg, msgpack_sbuffer *out, const char **why)
{
    TG_ASSERT(msg != NULL && out != NULL);
    const char *w = NULL;
    msgpack_sbuffer_clear(out);
    tg_err err = encode_append(msg, out, &w);
    if (err != TG_OK) {
        msgpack_sbuffer_clear(out);
    }
    if (why != NULL) {
        *why = w;
    }
    return err;
}

/* ---- Events ------------------------------------------------------------- */

void tg_wire_topic(uint32_t partition_id, uint8_t topic[TG_WIRE_TOPIC_BYTES])
{
    topic[0] = (uint8_t)(partition_id >> 24);
    topic[1] = (uint8_t)(partition_id >> 16);
    topic[2] = (uint8_t)(partition_id >> 8);
    topic[3] = (uint8_t)partition_id;
}

tg_err tg_wire_encode_event(const tg_msg *msg, msgpack_sbuffer *out, const char **why)
{
    TG_ASSERT(msg != NULL && out != NULL);
    const char *w = "not an event";
    tg_err err = TG_EINVAL;
    uint8_t topic[TG_WIRE_TOPIC_BYTES];
    msgpack_sbuffer_clear(out);
    if (msg->type == TG_WIRE_SEAT_CHANGES || msg->type == TG_WIRE_GRID_MAP) {
        tg_wire_topic(msg->type == TG_WIRE_SEAT_CHANGES ? msg->seat_changes.partition_id
                                                        : TG_WIRE_TOPIC_GRID_MAP,
                      topic);
        err =
            msgpack_sbuffer_write(out, (const char *)topic, sizeof(topic)) == 0 ? TG_OK : TG_ENOMEM;
        w = err == TG_OK ? NULL : "out of memory";
    }
    if (err == TG_OK) {
        err = encode_append(msg, out, &w);
    }
    if (err != TG_OK) {
        msgpack_sbuffer_clear(out);
    }
    if (why != NULL) {
        *why = w;
    }
    return err;
}

static const char *decode_event(const uint8_t *buf, size_t len, const tg_wire_space *space,
                                tg_msg *out)
{
    if (len < TG_WIRE_TOPIC_BYTES) {
        return "event is shorter than its topic";
    }
    if (len > TG_WIRE_MESSAGE_BYTES_MAX) {
        return "message is larger than TG_WIRE_MESSAGE_BYTES_MAX";
    }
    const char *why =
        decode_message(buf + TG_WIRE_TOPIC_BYTES, len - TG_WIRE_TOPIC_BYTES, space, out);
    if (why != NULL) {
        return why;
    }
    uint64_t topic = load_be(buf, TG_WIRE_TOPIC_BYTES);
    if (out->type == TG_WIRE_GRID_MAP) {
        return topic == TG_WIRE_TOPIC_GRID_MAP ? NULL : "event topic is not the grid map's";
    }
    if (out->type != TG_WIRE_SEAT_CHANGES) {
        return "message is not an event";
    }
    if (topic != out->seat_changes.partition_id) {
        return "event topic differs from its partition_id";
    }
    return NULL;
}

tg_err tg_wire_decode_event(const void *buf, size_t len, const tg_wire_space *space, tg_msg *out,
                            const char **why)
{
    TG_ASSERT(out != NULL && (buf != NULL || len == 0));
    static const uint8_t nothing[1] = {0};
    const char *w = decode_event(buf != NULL ? buf : nothing, len, space, out);
    if (why != NULL) {
        *why = w;
    }
    if (w != NULL) {
        out->type = TG_WIRE_NONE;
        return TG_EPROTO;
    }
    return TG_OK;
}

/* ---- Equality ------------------------------------------------------------ */

static bool equal_scalar(const wire_field *f, const unsigned char *a, const unsigned char *b)
{
    a += f->offset;
    b += f->offset;
    if (f->kind == K_STR) {
        return strncmp((const char *)a, (const char *)b, f->width) == 0;
    }
    return memcmp(a, b, f->width) == 0;
}

static bool equal_refs(const wire_field *f, const unsigned char *a, const unsigned char *b)
{
    const tg_wire_member_refs *ra = (const void *)(a + f->offset);
    const tg_wire_member_refs *rb = (const void *)(b + f->offset);
    return ra->count == rb->count && ra->count <= TG_GRID_BACKUPS_MAX &&
           memcmp(ra->members, rb->members, ra->count * sizeof(ra->members[0])) == 0;
}

static bool equal_tuple(const wire_tuple *t, const unsigned char *a, const unsigned char *b)
{
    for (uint32_t i = 0; i < t->field_count; i++) {
        const wire_field *f = &t->fields[i];
        if (f->kind == K_REFS ? !equal_refs(f, a, b) : !equal_scalar(f, a, b)) {
            return false;
        }
    }
    return true;
}

static bool equal_list(const wire_field *f, const unsigned char *a, const unsigned char *b)
{
    uint32_t na = 0, nb = 0;
    memcpy(&na, a + f->offset, sizeof(na));
    memcpy(&nb, b + f->offset, sizeof(nb));
    if (na != nb || na > f->umax) {
        return false;
    }
    const unsigned char *ia = a + f->items_offset, *ib = b + f->items_offset;
    if (f->kind == K_LIST_SPACE) {
        memcpy(&ia, a + f->items_offset, sizeof(ia));
        memcpy(&ib, b + f->items_offset, sizeof(ib));
        if (na > 0 && (ia == NULL || ib == NULL)) {
            return false;
        }
    }
    for (uint32_t i = 0; i < na; i++) {
        size_t at = (size_t)i * f->elem->size;
        if (!equal_tuple(f->elem, ia + at, ib + at)) {
            return false;
        }
    }
    return true;
}

static bool equal_field(const wire_field *f, const tg_msg *x, const tg_msg *y)
{
    const unsigned char *a = (const unsigned char *)x, *b = (const unsigned char *)y;
    if (f->kind == K_SEAT_IDS) {
        const tg_wire_seat_ids *sa = (const void *)(a + f->offset);
        const tg_wire_seat_ids *sb = (const void *)(b + f->offset);
        return sa->count == sb->count && sa->count <= TG_BOOKING_SEATS_MAX &&
               memcmp(sa->ids, sb->ids, sa->count * sizeof(sa->ids[0])) == 0;
    }
    if (f->kind == K_TUPLE) {
        return equal_tuple(f->elem, a + f->offset, b + f->offset);
    }
    if (f->kind == K_LIST || f->kind == K_LIST_SPACE) {
        return equal_list(f, a, b);
    }
    return equal_scalar(f, a, b);
}

bool tg_wire_equal(const tg_msg *a, const tg_msg *b)
{
    TG_ASSERT(a != NULL && b != NULL);
    if (a->type != b->type) {
        return false;
    }
    const wire_message *m = message_lookup((uint64_t)a->type);
    for (uint32_t i = 0; m != NULL && i < m->body->field_count; i++) {
        if (!equal_field(&m->body->fields[i], a, b)) {
            return false;
        }
    }
    return true;
}

/* ---- Helpers ------------------------------------------------------------- */

/* Length of the valid UTF-8 character (not NUL) at s[0..len), or 0. */
static size_t text_char(const uint8_t *s, size_t len)
{
    size_t n = s[0] < 0x80 ? 1 : s[0] < 0xe0 ? 2 : s[0] < 0xf0 ? 3 : 4;
    return n <= len && text_valid(s, n) ? n : 0;
}

void tg_wire_error(tg_msg *out, tg_err code, const char *message)
{
    TG_ASSERT(out != NULL && code != TG_OK && (unsigned)code < TG_ERR_COUNT_);
    const uint8_t *s = (const uint8_t *)(message != NULL ? message : tg_strerror(code));
    size_t len = strlen((const char *)s), at = 0, i = 0;
    char *dst = out->error.message;
    out->type = TG_WIRE_ERROR;
    out->error.code = (uint32_t)code;
    out->error.seats.count = 0;
    while (i < len) {
        size_t n = text_char(s + i, len - i);
        size_t take = n == 0 ? 1 : n; /* an invalid byte becomes '?' */
        if (at + take > TG_WIRE_STRING_BYTES_MAX) {
            break;
        }
        if (n == 0) {
            dst[at] = '?';
        } else {
            memcpy(dst + at, s + i, n);
        }
        at += take;
        i += take;
    }
    dst[at] = '\0';
}

tg_wire_type tg_wire_reply_type(tg_wire_type request)
{
    if (request >= TG_WIRE_GRID_REQUEST_FIRST && request <= TG_WIRE_GRID_REQUEST_LAST) {
        return (tg_wire_type)(request + TG_WIRE_GRID_REPLY_OFFSET);
    }
    if (request == TG_WIRE_BATCH) {
        return TG_WIRE_BATCH_OK;
    }
    if (request < TG_WIRE_BOOKING_CREATE || request > TG_WIRE_REQUEST_LAST) {
        return TG_WIRE_NONE;
    }
    return (tg_wire_type)(request + TG_WIRE_REPLY_OFFSET);
}

const char *tg_wire_type_name(tg_wire_type type)
{
    if (type == TG_WIRE_BATCH || type == TG_WIRE_BATCH_OK) {
        return type == TG_WIRE_BATCH ? "batch" : "batch_ok"; /* framing: grid/batch.c */
    }
    const wire_message *m = message_lookup((uint64_t)type);
    return m != NULL ? m->name : NULL;
}
