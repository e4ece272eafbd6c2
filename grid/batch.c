/*
 * batch.c — many requests to one unit in one message (see wire.h, "Batches").
 *
 * The frame is [type, 1, [bin, ...]].  Writing, the array and bin headers
 * take their widest forms (array32, bin32) so that a request is encoded once,
 * straight after a header whose length is patched in afterwards.  Reading
 * accepts every msgpack form of those headers, as a peer may write the
 * shortest ones; the parts are only located, never copied or decoded here.
 */
#include <string.h>

#include "tixgrid/wire.h"

#define ARRAY32      0xddu
#define BIN32        0xc6u
#define HEADER_BYTES 8u /* fixarray(3), type, version, array32 marker, count */
#define COUNT_AT     4u

bool tg_wire_batchable(tg_wire_type type)
{
    /* Seat and booking operations: replies without large arrays. */
    return type >= TG_WIRE_BOOKING_CREATE && type <= TG_WIRE_SEAT_GET;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Writes [type, 1, array32(count)]: the type and version fit a fixint. */
static tg_err header_write(msgpack_sbuffer *out, tg_wire_type type, uint32_t count)
{
    uint8_t h[HEADER_BYTES] = {0x93, (uint8_t)type, (uint8_t)TG_WIRE_VERSION, ARRAY32};
    put_be32(h + COUNT_AT, count);
    out->size = 0;
    return msgpack_sbuffer_write(out, (const char *)h, sizeof(h)) == 0 ? TG_OK : TG_ENOMEM;
}

static tg_err part_write(msgpack_sbuffer *out, const void *data, size_t len)
{
    uint8_t h[5] = {BIN32};
    put_be32(h + 1, (uint32_t)len);
    size_t before = out->size;
    if (msgpack_sbuffer_write(out, (const char *)h, sizeof(h)) != 0 ||
        msgpack_sbuffer_write(out, data, len) != 0) {
        out->size = before;
        return TG_ENOMEM;
    }
    return TG_OK;
}

void tg_wire_batch_init(tg_wire_batch *b)
{
    memset(b, 0, sizeof(*b));
    msgpack_sbuffer_init(&b->buf);
    msgpack_sbuffer_init(&b->scratch);
}

void tg_wire_batch_destroy(tg_wire_batch *b)
{
    msgpack_sbuffer_destroy(&b->buf);
    msgpack_sbuffer_destroy(&b->scratch);
}

void tg_wire_batch_reset(tg_wire_batch *b)
{
    b->buf.size = 0;
    b->count = 0;
}

tg_err tg_wire_batch_add(tg_wire_batch *b, const tg_msg *req, const char **why)
{
    if (!tg_wire_batchable(req->type) || b->count >= TG_WIRE_BATCH_MAX) {
        if (why != NULL) {
            *why = b->count >= TG_WIRE_BATCH_MAX ? "batch: full" : "batch: request not batchable";
        }
        return TG_EINVAL;
    }
    tg_err err = tg_wire_encode(req, &b->scratch, why);
    if (err == TG_OK && b->count == 0) {
        err = header_write(&b->buf, TG_WIRE_BATCH, 0);
    }
    if (err == TG_OK) {
        err = part_write(&b->buf, b->scratch.data, b->scratch.size);
    }
    if (err != TG_OK) {
        if (b->count == 0) {
            b->buf.size = 0;
        }
        return err;
    }
    b->types[b->count++] = (uint8_t)req->type;
    return TG_OK;
}

void tg_wire_batch_message(tg_wire_batch *b, const uint8_t **data, size_t *len)
{
    if (b->count > 0) {
        put_be32((uint8_t *)b->buf.data + COUNT_AT, b->count);
    }
    *data = (const uint8_t *)b->buf.data;
    *len = b->buf.size;
}

tg_wire_part tg_wire_batch_part(const tg_wire_batch *b, uint32_t index)
{
    const uint8_t *p = (const uint8_t *)b->buf.data + HEADER_BYTES;
    for (uint32_t i = 0; i < b->count; i++) {
        size_t n = get_be32(p + 1);
        if (i == index) {
            return (tg_wire_part){p + 5, n};
        }
        p += 5 + n;
    }
    return (tg_wire_part){NULL, 0};
}

tg_err tg_wire_batch_reply_begin(msgpack_sbuffer *out, uint32_t count)
{
    return header_write(out, TG_WIRE_BATCH_OK, count);
}

tg_err tg_wire_batch_reply_add(msgpack_sbuffer *out, const void *reply, size_t len)
{
    return part_write(out, reply, len);
}

bool tg_wire_is_type(const void *buf, size_t len, tg_wire_type type)
{
    const uint8_t *p = buf;
    /* A fixarray of 3 and a positive fixint: all our batch types are < 128. */
    return len >= 2 && p[0] == 0x93 && type < 0x80 && p[1] == (uint8_t)type;
}

/* ---- Reading -------------------------------------------------------------- */

typedef struct {
    const uint8_t *p, *end;
} reader;

static bool take(reader *r, size_t n, const uint8_t **out)
{
    if ((size_t)(r->end - r->p) < n) {
        return false;
    }
    *out = r->p;
    r->p += n;
    return true;
}

static bool be(reader *r, size_t n, uint64_t *v)
{
    const uint8_t *q;
    if (!take(r, n, &q)) {
        return false;
    }
    *v = 0;
    for (size_t i = 0; i < n; i++) {
        *v = *v << 8 | q[i];
    }
    return true;
}

static bool read_uint(reader *r, uint64_t *v)
{
    const uint8_t *m;
    if (!take(r, 1, &m)) {
        return false;
    }
    if (*m < 0x80) {
        *v = *m;
        return true;
    }
    switch (*m) {
    case 0xcc:
        return be(r, 1, v);
    case 0xcd:
        return be(r, 2, v);
    case 0xce:
        return be(r, 4, v);
    case 0xcf:
        return be(r, 8, v);
    default:
        return false;
    }
}

static bool read_array(reader *r, uint64_t *n)
{
    const uint8_t *m;
    if (!take(r, 1, &m)) {
        return false;
    }
    if ((*m & 0xf0) == 0x90) {
        *n = *m & 0x0f;
        return true;
    }
    return *m == 0xdc ? be(r, 2, n) : *m == 0xdd ? be(r, 4, n) : false;
}

static bool read_bin(reader *r, tg_wire_part *part)
{
    const uint8_t *m;
    uint64_t n;
    if (!take(r, 1, &m)) {
        return false;
    }
    bool ok = *m == 0xc4 ? be(r, 1, &n) : *m == 0xc5 ? be(r, 2, &n) : *m == 0xc6 && be(r, 4, &n);
    return ok && take(r, (size_t)n, &part->data) && (part->len = (size_t)n, true);
}

static const char *frame_parse(reader *r, tg_wire_type type, tg_wire_part *parts, uint32_t *count)
{
    uint64_t fields, t, version, n;
    if (!read_array(r, &fields) || fields != 3) {
        return "batch: not an array of 3";
    }
    if (!read_uint(r, &t) || t != (uint64_t)type) {
        return "batch: wrong type";
    }
    if (!read_uint(r, &version) || version != TG_WIRE_VERSION) {
        return "batch: unknown version";
    }
    if (!read_array(r, &n)) {
        return "batch: parts: not an array";
    }
    if (n == 0 || n > TG_WIRE_BATCH_MAX) {
        return n == 0 ? "batch: parts: empty" : "batch: parts: too many items";
    }
    for (uint32_t i = 0; i < n; i++) {
        if (!read_bin(r, &parts[i])) {
            return "batch: parts: an item is not a complete bin";
        }
    }
    if (r->p != r->end) {
        return "batch: bytes after the message";
    }
    *count = (uint32_t)n;
    return NULL;
}

tg_err tg_wire_batch_parse(const void *buf, size_t len, tg_wire_type type,
                           tg_wire_part parts[TG_WIRE_BATCH_MAX], uint32_t *count, const char **why)
{
    reader r = {buf, (const uint8_t *)buf + len};
    *count = 0;
    const char *fault = len > TG_WIRE_MESSAGE_BYTES_MAX ? "batch: message too large"
                                                        : frame_parse(&r, type, parts, count);
    if (why != NULL) {
        *why = fault;
    }
    if (fault != NULL) {
        *count = 0;
        return TG_EPROTO;
    }
    return TG_OK;
}
