/*
 * wire_fuzz.c — libFuzzer target for the wire codec (grid/wire.c).
 *
 * For any input: tg_wire_decode and tg_wire_decode_event return TG_OK or
 * TG_EPROTO and never crash, read out of bounds or allocate (ASan checks the
 * first two; the decoder has no allocation to check).  When an input is
 * accepted, the message must survive encode → decode unchanged, the second
 * encoding must produce the same bytes as the first (the encoder is
 * canonical), and msgpack-c's own unpacker must read the accepted bytes as
 * exactly one object — safe here, because an accepted message is bounded.
 * Any error reply built from the input's bytes as text must encode.
 *
 * Not built by meson: see tests/fuzz/README.md.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "tixgrid/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static tg_wire_seat seats[2][TG_WIRE_SEATS_LIST_MAX];
static tg_wire_counts counts[2][TG_ROWS_MAX];
static tg_wire_row rows[2][TG_ROWS_MAX];
static tg_wire_log_record records[2][TG_WIRE_LOG_RECORDS_MAX];
static tg_wire_change changes[2][TG_WIRE_CHANGES_MAX];
static tg_wire_booking_state bookings[2][TG_WIRE_RESTORE_BOOKINGS_MAX];
static tg_wire_member members[2][TG_GRID_MEMBERS_MAX];
static tg_wire_placement placements[2][TG_GRID_PARTITIONS_MAX];
static tg_wire_held held[2][TG_PU_PARTITIONS_MAX];
static tg_wire_states states[2][TG_WIRE_STATES_MAX];

static tg_msg first, second;
static msgpack_sbuffer buf_a, buf_b;
static int buffers_ready;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "wire_fuzz: %s failed at line %d\n", #cond, __LINE__);                 \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static tg_wire_space space(int i)
{
    return (tg_wire_space){
        seats[i],      TG_WIRE_SEATS_LIST_MAX,       counts[i],     TG_ROWS_MAX,
        rows[i],       TG_ROWS_MAX,                  records[i],    TG_WIRE_LOG_RECORDS_MAX,
        changes[i],    TG_WIRE_CHANGES_MAX,          bookings[i],   TG_WIRE_RESTORE_BOOKINGS_MAX,
        members[i],    TG_GRID_MEMBERS_MAX,          placements[i], TG_GRID_PARTITIONS_MAX,
        held[i],       TG_PU_PARTITIONS_MAX,         states[i],     TG_WIRE_STATES_MAX};
}

static void check_msgpack_c_reads(const uint8_t *data, size_t size)
{
    msgpack_zone zone;
    msgpack_object obj;
    size_t off = 0;
    msgpack_zone_init(&zone, 4096);
    int rc = msgpack_unpack((const char *)data, size, &off, &zone, &obj);
    CHECK(rc == MSGPACK_UNPACK_SUCCESS);
    CHECK(off == size);
    CHECK(obj.type == MSGPACK_OBJECT_ARRAY && obj.via.array.size >= 2);
    msgpack_zone_destroy(&zone);
}

/* An accepted message round-trips: decode(encode(m)) == m, canonically. */
static void check_round_trip(const tg_msg *m, int event)
{
    const char *why = NULL;
    tg_wire_space other = space(1);
    tg_err err = event ? tg_wire_encode_event(m, &buf_a, &why) : tg_wire_encode(m, &buf_a, &why);
    if (err != TG_OK) {
        fprintf(stderr, "wire_fuzz: accepted %s but cannot encode it: %s\n",
                tg_wire_type_name(m->type), why);
        abort();
    }
    err = event ? tg_wire_decode_event(buf_a.data, buf_a.size, &other, &second, &why)
                : tg_wire_decode(buf_a.data, buf_a.size, &other, &second, &why);
    CHECK(err == TG_OK);
    CHECK(tg_wire_equal(m, &second));
    err =
        event ? tg_wire_encode_event(&second, &buf_b, &why) : tg_wire_encode(&second, &buf_b, &why);
    CHECK(err == TG_OK);
    CHECK(buf_a.size == buf_b.size && memcmp(buf_a.data, buf_b.data, buf_a.size) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *why = NULL;
    tg_wire_space mine = space(0);
    if (!buffers_ready) {
        msgpack_sbuffer_init(&buf_a);
        msgpack_sbuffer_init(&buf_b);
        buffers_ready = 1;
    }
    tg_err err = tg_wire_decode(data, size, &mine, &first, &why);
    CHECK(err == TG_OK || err == TG_EPROTO);
    CHECK((err == TG_OK) == (why == NULL));
    if (err == TG_OK) {
        check_msgpack_c_reads(data, size);
        check_round_trip(&first, 0);
    } else {
        CHECK(first.type == TG_WIRE_NONE);
    }

    err = tg_wire_decode_event(data, size, &mine, &first, &why);
    CHECK(err == TG_OK || err == TG_EPROTO);
    if (err == TG_OK) {
        check_round_trip(&first, 1);
    }

    /* A batch frame: its parts lie inside the input and msgpack-c reads the
     * whole frame; each part is a message like any other. */
    static tg_wire_part parts[TG_WIRE_BATCH_MAX];
    uint32_t count = 0;
    err = tg_wire_batch_parse(data, size, TG_WIRE_BATCH, parts, &count, &why);
    CHECK(err == TG_OK || err == TG_EPROTO);
    CHECK((err == TG_OK) == (count > 0));
    for (uint32_t i = 0; err == TG_OK && i < count; i++) {
        CHECK(parts[i].data >= data && parts[i].data + parts[i].len <= data + size);
        tg_err part_err = tg_wire_decode(parts[i].data, parts[i].len, &mine, &first, &why);
        CHECK(part_err == TG_OK || part_err == TG_EPROTO);
    }
    if (err == TG_OK) {
        check_msgpack_c_reads(data, size);
    }

    /* Any text makes an error reply that encodes. */
    char text[512];
    size_t n = size < sizeof(text) - 1 ? size : sizeof(text) - 1;
    memcpy(text, data, n);
    text[n] = '\0';
    tg_wire_error(&first, TG_EPROTO, text);
    CHECK(tg_wire_encode(&first, &buf_a, &why) == TG_OK);
    return 0;
}
