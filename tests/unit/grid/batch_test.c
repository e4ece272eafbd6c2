/*
 * batch_test.c — the batch frame (tixgrid/wire.h, "Batches"; grid/batch.c):
 * what tg_wire_batch_add writes parses back into the same requests; frames
 * in msgpack's other header forms parse too; every malformed frame fails
 * with its sentence; truncations and bit flips never crash.
 */
#include <criterion/criterion.h>

#include <msgpack.h>
#include <string.h>

#include "tixgrid/wire.h"

static tg_msg hold(uint32_t seat)
{
    tg_msg m = {.type = TG_WIRE_SEATS_HOLD};
    m.seats_hold.booking_id = tg_booking_id_make(3, 9);
    m.seats_hold.user_id = 42;
    m.seats_hold.seats.count = 1;
    m.seats_hold.seats.ids[0] = seat;
    return m;
}

static tg_wire_batch batch;
static tg_wire_part parts[TG_WIRE_BATCH_MAX];
static tg_msg decoded;

static void setup(void)
{
    tg_wire_batch_init(&batch);
}

static void teardown(void)
{
    tg_wire_batch_destroy(&batch);
}

TestSuite(batch, .init = setup, .fini = teardown);

Test(batch, only_seat_and_booking_operations_are_batchable)
{
    for (uint32_t t = 0; t < TG_WIRE_TYPE_LIMIT; t++) {
        bool want = t >= TG_WIRE_BOOKING_CREATE && t <= TG_WIRE_SEAT_GET;
        cr_assert_eq(tg_wire_batchable((tg_wire_type)t), want, "type %u", t);
    }
    cr_assert_eq(tg_wire_reply_type(TG_WIRE_BATCH), TG_WIRE_BATCH_OK);
    cr_assert_str_eq(tg_wire_type_name(TG_WIRE_BATCH), "batch");
    cr_assert_str_eq(tg_wire_type_name(TG_WIRE_BATCH_OK), "batch_ok");
}

Test(batch, what_is_added_parses_back_into_the_same_requests_in_order)
{
    for (uint32_t n = 1; n <= TG_WIRE_BATCH_MAX; n++) {
        tg_wire_batch_reset(&batch);
        for (uint32_t i = 0; i < n; i++) {
            tg_msg m = hold(i);
            cr_assert_eq(tg_wire_batch_add(&batch, &m, NULL), TG_OK);
        }
        const uint8_t *data;
        size_t len;
        tg_wire_batch_message(&batch, &data, &len);
        cr_assert(tg_wire_is_type(data, len, TG_WIRE_BATCH));
        cr_assert_not(tg_wire_is_type(data, len, TG_WIRE_BATCH_OK));
        uint32_t count = 0;
        const char *why = NULL;
        cr_assert_eq(tg_wire_batch_parse(data, len, TG_WIRE_BATCH, parts, &count, &why), TG_OK,
                     "%u requests: %s", n, why);
        cr_assert_eq(count, n);
        for (uint32_t i = 0; i < n; i++) {
            tg_msg want = hold(i);
            cr_assert_eq(tg_wire_decode(parts[i].data, parts[i].len, NULL, &decoded, NULL), TG_OK);
            cr_assert(tg_wire_equal(&decoded, &want), "request %u of %u", i, n);
            tg_wire_part p = tg_wire_batch_part(&batch, i);
            cr_assert(p.data == parts[i].data && p.len == parts[i].len);
        }
        cr_assert_null(tg_wire_batch_part(&batch, n).data);
    }
}

Test(batch, a_refused_request_leaves_the_batch_as_it_was)
{
    tg_msg m = hold(1);
    cr_assert_eq(tg_wire_batch_add(&batch, &m, NULL), TG_OK);
    size_t before = batch.buf.size;
    tg_msg bad = hold(2);
    bad.seats_hold.seats.count = TG_BOOKING_SEATS_MAX + 1; /* breaks the schema */
    const char *why = NULL;
    cr_assert_eq(tg_wire_batch_add(&batch, &bad, &why), TG_EINVAL);
    cr_assert_not_null(why);
    tg_msg list = {.type = TG_WIRE_AVAILABILITY};
    cr_assert_eq(tg_wire_batch_add(&batch, &list, &why), TG_EINVAL);
    cr_assert_str_eq(why, "batch: request not batchable");
    cr_assert_eq(batch.count, 1);
    cr_assert_eq(batch.buf.size, before);
}

Test(batch, replies_are_framed_and_parsed_the_same_way)
{
    msgpack_sbuffer out;
    msgpack_sbuffer_init(&out);
    cr_assert_eq(tg_wire_batch_reply_begin(&out, 2), TG_OK);
    cr_assert_eq(tg_wire_batch_reply_add(&out, "ab", 2), TG_OK);
    cr_assert_eq(tg_wire_batch_reply_add(&out, "", 0), TG_OK);
    uint32_t count = 0;
    cr_assert_eq(tg_wire_batch_parse(out.data, out.size, TG_WIRE_BATCH_OK, parts, &count, NULL),
                 TG_OK);
    cr_assert_eq(count, 2);
    cr_assert(parts[0].len == 2 && memcmp(parts[0].data, "ab", 2) == 0);
    cr_assert_eq(parts[1].len, 0);
    const char *why = NULL;
    cr_assert_eq(tg_wire_batch_parse(out.data, out.size, TG_WIRE_BATCH, parts, &count, &why),
                 TG_EPROTO);
    cr_assert_str_eq(why, "batch: wrong type");
    cr_assert_eq(count, 0);
    msgpack_sbuffer_destroy(&out);
}

/* A frame in msgpack's shortest forms, as another writer may send it. */
static msgpack_sbuffer shortest(uint32_t fields, uint64_t type, uint64_t version, uint32_t n,
                                const char *part)
{
    msgpack_sbuffer s;
    msgpack_sbuffer_init(&s);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &s, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, fields);
    msgpack_pack_uint64(&pk, type);
    msgpack_pack_uint64(&pk, version);
    msgpack_pack_array(&pk, n);
    for (uint32_t i = 0; i < n; i++) {
        msgpack_pack_bin(&pk, strlen(part));
        msgpack_pack_bin_body(&pk, part, strlen(part));
    }
    return s;
}

static void refused(msgpack_sbuffer s, const char *sentence)
{
    uint32_t count = 7;
    const char *why = NULL;
    cr_assert_eq(tg_wire_batch_parse(s.data, s.size, TG_WIRE_BATCH, parts, &count, &why), TG_EPROTO,
                 "%s", sentence);
    cr_assert_str_eq(why, sentence);
    cr_assert_eq(count, 0);
    msgpack_sbuffer_destroy(&s);
}

Test(batch, the_shortest_forms_parse_and_malformed_frames_say_why)
{
    msgpack_sbuffer s = shortest(3, TG_WIRE_BATCH, TG_WIRE_VERSION, 20, "xyz");
    uint32_t count = 0;
    cr_assert_eq(tg_wire_batch_parse(s.data, s.size, TG_WIRE_BATCH, parts, &count, NULL), TG_OK);
    cr_assert_eq(count, 20);
    cr_assert(parts[19].len == 3 && memcmp(parts[19].data, "xyz", 3) == 0);
    msgpack_sbuffer_destroy(&s);

    refused(shortest(4, TG_WIRE_BATCH, 1, 1, "x"), "batch: not an array of 3");
    refused(shortest(3, TG_WIRE_BATCH + 300, 1, 1, "x"), "batch: wrong type");
    refused(shortest(3, TG_WIRE_BATCH, 0, 1, "x"), "batch: unknown version");
    refused(shortest(3, TG_WIRE_BATCH, 1, 0, "x"), "batch: parts: empty");
    refused(shortest(3, TG_WIRE_BATCH, 1, TG_WIRE_BATCH_MAX + 1, "x"),
            "batch: parts: too many items");
    s = shortest(3, TG_WIRE_BATCH, 1, 1, "x");
    msgpack_sbuffer_write(&s, "\x90", 1);
    refused(s, "batch: bytes after the message");
    s = shortest(3, TG_WIRE_BATCH, 1, 1, "x");
    s.data[s.size - 2] = (char)0xa1; /* a str, not a bin */
    refused(s, "batch: parts: an item is not a complete bin");
}

Test(batch, truncations_and_bit_flips_never_crash)
{
    for (uint32_t i = 0; i < 5; i++) {
        tg_msg m = hold(i);
        cr_assert_eq(tg_wire_batch_add(&batch, &m, NULL), TG_OK);
    }
    const uint8_t *data;
    size_t len;
    tg_wire_batch_message(&batch, &data, &len);
    uint8_t copy[1024];
    cr_assert(len <= sizeof(copy));
    uint32_t count = 0;
    for (size_t cut = 0; cut < len; cut++) {
        cr_assert_eq(tg_wire_batch_parse(data, cut, TG_WIRE_BATCH, parts, &count, NULL), TG_EPROTO,
                     "cut at %zu", cut);
    }
    uint64_t rng = 0x9e3779b97f4a7c15ULL;
    for (uint32_t round = 0; round < 20000; round++) {
        memcpy(copy, data, len);
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        copy[rng % len] ^= (uint8_t)(1u << (rng >> 32) % 8);
        tg_err err = tg_wire_batch_parse(copy, len, TG_WIRE_BATCH, parts, &count, NULL);
        cr_assert(err == TG_OK || err == TG_EPROTO);
        for (uint32_t i = 0; err == TG_OK && i < count; i++) {
            cr_assert(parts[i].data >= copy && parts[i].data + parts[i].len <= copy + len);
        }
    }
}
