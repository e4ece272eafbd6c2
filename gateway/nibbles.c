/*
 * nibbles.c — the pure leaves of the seat-map snapshots (snap.h): a
 * seat_states_ok unpacked into the 4-bit encoding /seatmap sends, and
 * seat_changes applied to it, each reporting the seats whose state
 * changed, and the ETag of a set of snapshots.  Apart from snap.c so that
 * they are tested alone.
 */
#include <inttypes.h>
#include <stdio.h>

#include "snap.h"

void gw_snap_unpack(uint8_t *states, uint32_t seat_count, const tg_wire_states *words,
                    gw_snap_changed changed, void *arg)
{
    for (uint32_t seat = 0; seat < seat_count; seat++) {
        unsigned v = (unsigned)(words[seat / TG_WIRE_STATES_PER_WORD].packed >>
                                (4 * (seat % TG_WIRE_STATES_PER_WORD))) &
                     15u;
        if (gw_snap_get(states, seat) != v) {
            gw_snap_put(states, seat, v);
            if (changed != NULL) {
                changed(arg, seat, v);
            }
        }
    }
}

void gw_snap_apply(uint8_t *states, uint32_t seat_count, const tg_wire_change *changes,
                   uint32_t count, gw_snap_changed changed, void *arg)
{
    for (uint32_t i = 0; i < count; i++) {
        uint32_t seat = changes[i].seat_id;
        unsigned v = (unsigned)tg_seat_word_state(changes[i].word);
        if (seat < seat_count && gw_snap_get(states, seat) != v) {
            gw_snap_put(states, seat, v);
            if (changed != NULL) {
                changed(arg, seat, v);
            }
        }
    }
}

void gw_event_etag(char *out, uint64_t event_id, gw_snap *const *snaps, uint32_t count,
                   const char *suffix)
{
    uint64_t version = 0, hash = UINT64_C(14695981039346656037); /* FNV-1a */
    for (uint32_t p = 0; p < count; p++) {
        version += snaps[p]->seq;
        const uint64_t words[2] = {snaps[p]->epoch, snaps[p]->seq};
        for (int k = 0; k < 2; k++) {
            for (int b = 0; b < 64; b += 8) {
                hash = (hash ^ ((words[k] >> b) & 0xffu)) * UINT64_C(1099511628211);
            }
        }
    }
    snprintf(out, GW_ETAG_BYTES, "\"%" PRIu64 "-%" PRIu64 "-%016" PRIx64 "%s\"", event_id, version,
             hash, suffix);
}
