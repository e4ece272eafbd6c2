/*
 * mapsub.h — following the partition map the grid manager publishes.
 *
 * Used by the gateway and the persister (and the tests): a SUB socket
 * dialled to every manager's PUB address (only the active manager
 * listens, so after a takeover the socket finds the new one by itself),
 * subscribed to TG_WIRE_TOPIC_GRID_MAP.  Each grid_map whose epoch is above
 * the last one delivered is handed to the callback; an older or equal one
 * (the manager republishes every second) and a malformed one are dropped.
 *
 * Callbacks (nng style): once tg_mapsub_open returned TG_OK, the callback
 * runs on one of nng's threads, one map at a time, never after
 * tg_mapsub_close returned.  The map and its arrays are valid only during
 * the call.  It must not block for long: the next map waits for it.
 */
#ifndef TIXGRID_MAPSUB_H
#define TIXGRID_MAPSUB_H

#include <stdint.h>

#include "tixgrid/err.h"
#include "tixgrid/wire.h"

typedef struct tg_mapsub tg_mapsub;

typedef void (*tg_mapsub_cb)(void *arg, const tg_msg *map);

/* Subscribes to the maps published at urls ("url" or "url,url", at most
 * TG_GRID_MANAGERS_MAX addresses of < TG_URL_BYTES bytes).  TG_EINVAL for
 * a bad list or an address nng cannot dial, TG_ENOMEM. */
tg_err tg_mapsub_open(const char *urls, tg_mapsub_cb cb, void *arg, tg_mapsub **out);

/* Stops the deliveries (waits for one in progress) and frees what it can.
 * The socket itself stays open until the process exits: nng 1.5.2 can hang
 * for good in nng_close on a socket that redialled a peer that went away
 * (a manager that died). */
void tg_mapsub_close(tg_mapsub *s);

/* The epoch of the last map delivered; 0 before the first.  Any thread. */
uint64_t tg_mapsub_epoch(tg_mapsub *s);

/* Checks a "url,url" list as tg_mapsub_open would, without dialling. */
tg_err tg_mapsub_urls_check(const char *urls);

#endif
