/*
 * layout.c — reading a partition layout from a JSON file.
 *
 * The file has the shape organizers use for events (schemas/openapi.yaml,
 * "layout"), plus the partition's identity and optional capacities:
 *
 *   {"partition_id": 1, "event_id": 1,
 *    "sections": [{"name": "Floor", "price": 9900, "currency": "EUR",
 *                  "rows": [{"name": "A", "seats": 40}, ...]}, ...],
 *    "hold_ttl_ms": 300000, "payment_window_ms": 900000,
 *    "booking_capacity": 0, "log_records": 0}
 *
 * Unknown keys are refused (a misspelt "hold_tll_ms" must not silently fall
 * back to a default), and so is every value pu_config_validate refuses.
 */
#include "server.h"

#include "tixgrid/log.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static tg_err fail(const char *path, const char *what, const char *detail)
{
    tg_log_error("layout %s: %s%s%s", path, what, detail ? ": " : "", detail ? detail : "");
    return TG_EINVAL;
}

static tg_err copy_name(char *dst, const char *src)
{
    size_t len = strlen(src);
    if (len == 0 || len >= TG_NAME_BYTES) {
        return TG_EINVAL;
    }
    memcpy(dst, src, len + 1);
    return TG_OK;
}

static tg_err row_load(const char *path, json_t *jrow, pu_row_spec *row)
{
    json_error_t je;
    const char *name;
    json_int_t seats;
    if (json_unpack_ex(jrow, &je, JSON_STRICT, "{s:s, s:I}", "name", &name, "seats", &seats) != 0) {
        return fail(path, "bad row", je.text);
    }
    if (copy_name(row->name, name) != TG_OK || seats <= 0 || seats > TG_ROW_SEATS_MAX) {
        return fail(path, "bad row name or seat count", name);
    }
    row->seat_count = (uint32_t)seats;
    return TG_OK;
}

static tg_err section_load(const char *path, json_t *jsec, pu_section_spec *sec,
                           pu_row_spec *rows, uint32_t rows_cap, uint32_t *rows_used)
{
    json_error_t je;
    const char *name, *currency;
    json_int_t price;
    json_t *jrows;
    if (json_unpack_ex(jsec, &je, JSON_STRICT, "{s:s, s:I, s:s, s:o}", "name", &name, "price",
                       &price, "currency", &currency, "rows", &jrows) != 0) {
        return fail(path, "bad section", je.text);
    }
    if (copy_name(sec->name, name) != TG_OK || strlen(currency) != 3 || !json_is_array(jrows)) {
        return fail(path, "bad section name, currency or rows", name);
    }
    memcpy(sec->currency, currency, 4);
    sec->price_minor = price;
    size_t n = json_array_size(jrows);
    if (n == 0 || *rows_used + n > rows_cap) {
        return fail(path, "section has no rows or too many rows", name);
    }
    sec->row_count = (uint32_t)n;
    for (size_t i = 0; i < n; i++) {
        if (row_load(path, json_array_get(jrows, i), &rows[*rows_used + i]) != TG_OK) {
            return TG_EINVAL;
        }
    }
    *rows_used += (uint32_t)n;
    return TG_OK;
}

static tg_err sections_load(const char *path, json_t *jsecs, pu_partition_config *cfg)
{
    size_t n = json_array_size(jsecs);
    if (!json_is_array(jsecs) || n == 0 || n > TG_SECTIONS_MAX) {
        return fail(path, "sections must be an array of 1..64 sections", NULL);
    }
    pu_section_spec *secs = calloc(n, sizeof(*secs));
    pu_row_spec *rows = calloc(TG_ROWS_MAX, sizeof(*rows));
    cfg->sections = secs;
    cfg->rows = rows;
    if (secs == NULL || rows == NULL) {
        return TG_ENOMEM;
    }
    uint32_t used = 0;
    for (size_t i = 0; i < n; i++) {
        tg_err err = section_load(path, json_array_get(jsecs, i), &secs[i], rows, TG_ROWS_MAX,
                                  &used);
        if (err != TG_OK) {
            return err;
        }
    }
    cfg->section_count = (uint32_t)n;
    cfg->row_count = used;
    return TG_OK;
}

static tg_err in_u32(json_int_t v, uint32_t *out)
{
    if (v < 0 || v > UINT32_MAX) {
        return TG_EINVAL;
    }
    *out = (uint32_t)v;
    return TG_OK;
}

static tg_err root_load(const char *path, json_t *root, pu_partition_config *cfg)
{
    json_error_t je;
    json_int_t pid, eid, hold = 0, pay = 0, cap = 0, logr = 0;
    json_t *jsecs;
    if (json_unpack_ex(root, &je, JSON_STRICT, "{s:I, s:I, s:o, s?:I, s?:I, s?:I, s?:I}",
                       "partition_id", &pid, "event_id", &eid, "sections", &jsecs, "hold_ttl_ms",
                       &hold, "payment_window_ms", &pay, "booking_capacity", &cap, "log_records",
                       &logr) != 0) {
        return fail(path, "bad layout", je.text);
    }
    if (pid < 0 || pid > TG_PARTITION_ID_MAX || eid < 0 || in_u32(hold, &cfg->hold_ttl_ms) ||
        in_u32(pay, &cfg->payment_window_ms) || in_u32(cap, &cfg->booking_capacity) ||
        in_u32(logr, &cfg->log_records)) {
        return fail(path, "an id or capacity is out of range", NULL);
    }
    cfg->partition_id = (uint32_t)pid;
    cfg->event_id = (uint64_t)eid;
    tg_err err = sections_load(path, jsecs, cfg);
    return err != TG_OK ? err : pu_config_validate(cfg);
}

tg_err pu_layout_load(const char *path, pu_partition_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    json_error_t je;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (root == NULL) {
        return fail(path, "cannot read JSON", je.text);
    }
    tg_err err = root_load(path, root, cfg);
    json_decref(root);
    if (err != TG_OK) {
        pu_layout_free(cfg);
    }
    return err;
}

void pu_layout_free(pu_partition_config *cfg)
{
    free((void *)cfg->sections);
    free((void *)cfg->rows);
    cfg->sections = NULL;
    cfg->rows = NULL;
}
