/*
 * segment.c — sizing, creating, attaching and describing partition segments.
 *
 * Creation is two-phase (size, then create): pu_segment_size() computes the
 * byte size and region offsets from a validated configuration; the segment is
 * made with O_EXCL (a name collision is an error, never a silent reuse),
 * sized with ftruncate (zero-filled: every counter and booking slot starts at
 * zero), filled in, and only then given its magic number with a release
 * store, so an attacher never sees a half-built segment as valid.
 *
 * Attaching checks the magic, the layout version, and that the file's size,
 * the header's size and the size recomputed from the header's geometry all
 * agree before trusting any offset.
 *
 * Ownership: the processing unit that serves a partition is its owner and
 * holds an exclusive flock on the segment for as long as it is attached.
 * The kernel drops the lock when the process dies, so a restarted owner can
 * always take it back, and two live owners are impossible.  Observers (tests,
 * tools, extra workers) map the segment without the lock.
 *
 * Rejected: a per-process "owner pid" field in the header — a pid can be
 * reused after a crash, and checking liveness races with the exit.
 */
#include "segment.h"

#include "tixgrid/assert.h"
#include "tixgrid/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    uint32_t seat_count;
    uint32_t booking_capacity;
    uint32_t log_records;
    uint64_t sections_off, rows_off, row_names_off, seat_rows_off, seats_off, logged_off,
        bookings_off, log_off, total;
} segment_geometry;

static uint64_t align_up(uint64_t v)
{
    return (v + PU_CACHE_LINE - 1) & ~(uint64_t)(PU_CACHE_LINE - 1);
}

static bool name_valid(const char *name)
{
    size_t len = strnlen(name, TG_NAME_BYTES);
    return len > 0 && len < TG_NAME_BYTES;
}

static bool currency_valid(const char *c)
{
    for (int i = 0; i < 3; i++) {
        if (c[i] < 'A' || c[i] > 'Z') {
            return false;
        }
    }
    return c[3] == '\0';
}

static tg_err reject(const char *field, uint64_t index)
{
    tg_log_warn("partition config: invalid %s (index %llu)", field, (unsigned long long)index);
    return TG_EINVAL;
}

static tg_err validate_rows(const pu_partition_config *cfg, const pu_section_spec *s,
                            uint32_t row_first, uint64_t *seats)
{
    for (uint32_t r = row_first; r < row_first + s->row_count; r++) {
        const pu_row_spec *row = &cfg->rows[r];
        if (!name_valid(row->name)) {
            return reject("row name", r);
        }
        if (row->seat_count == 0 || row->seat_count > TG_ROW_SEATS_MAX) {
            return reject("row seat_count", r);
        }
        for (uint32_t q = row_first; q < r; q++) {
            if (strcmp(cfg->rows[q].name, row->name) == 0) {
                return reject("row name (duplicate in section)", r);
            }
        }
        *seats += row->seat_count;
    }
    return TG_OK;
}

static tg_err validate_sections(const pu_partition_config *cfg, uint64_t *seats)
{
    uint64_t rows = 0;
    for (uint32_t i = 0; i < cfg->section_count; i++) {
        const pu_section_spec *s = &cfg->sections[i];
        if (!name_valid(s->name)) {
            return reject("section name", i);
        }
        for (uint32_t j = 0; j < i; j++) {
            if (strcmp(cfg->sections[j].name, s->name) == 0) {
                return reject("section name (duplicate)", i);
            }
        }
        if (s->price_minor < 0) {
            return reject("section price_minor", i);
        }
        if (!currency_valid(s->currency)) {
            return reject("section currency", i);
        }
        if (s->row_count == 0 || rows + s->row_count > cfg->row_count) {
            return reject("section row_count", i);
        }
        tg_err err = validate_rows(cfg, s, (uint32_t)rows, seats);
        if (err != TG_OK) {
            return err;
        }
        rows += s->row_count;
    }
    if (rows != cfg->row_count) {
        return reject("row_count (sections' rows do not add up)", rows);
    }
    return TG_OK;
}

tg_err pu_config_validate(const pu_partition_config *cfg)
{
    if (cfg == NULL || cfg->sections == NULL || cfg->rows == NULL) {
        return reject("config (missing sections or rows)", 0);
    }
    if (cfg->partition_id > TG_PARTITION_ID_MAX) {
        return reject("partition_id", cfg->partition_id);
    }
    if (cfg->section_count == 0 || cfg->section_count > TG_SECTIONS_MAX) {
        return reject("section_count", cfg->section_count);
    }
    if (cfg->row_count == 0 || cfg->row_count > TG_ROWS_MAX) {
        return reject("row_count", cfg->row_count);
    }
    uint64_t seats = 0;
    tg_err err = validate_sections(cfg, &seats);
    if (err != TG_OK) {
        return err;
    }
    if (seats > TG_PARTITION_SEATS_MAX) {
        return reject("seat count", seats);
    }
    if (cfg->booking_capacity != 0 &&
        (cfg->booking_capacity < TG_BOOKINGS_MIN || cfg->booking_capacity > TG_BOOKINGS_MAX)) {
        return reject("booking_capacity", cfg->booking_capacity);
    }
    uint32_t lr = cfg->log_records;
    if (lr != 0 && (lr < TG_LOG_RECORDS_MIN || lr > TG_LOG_RECORDS_MAX || (lr & (lr - 1)) != 0)) {
        return reject("log_records (a power of two in range)", lr);
    }
    return TG_OK;
}

static uint32_t config_seat_count(const pu_partition_config *cfg)
{
    uint32_t seats = 0;
    for (uint32_t r = 0; r < cfg->row_count; r++) {
        seats += cfg->rows[r].seat_count;
    }
    return seats;
}

static uint32_t default_booking_capacity(uint32_t seats)
{
    uint64_t cap = (uint64_t)seats + seats / 2;
    if (cap < TG_BOOKINGS_MIN) {
        cap = TG_BOOKINGS_MIN;
    }
    return cap > TG_BOOKINGS_MAX ? TG_BOOKINGS_MAX : (uint32_t)cap;
}

static void geometry_compute(uint32_t sections, uint32_t rows, segment_geometry *g)
{
    uint64_t off = align_up(sizeof(pu_header));
    g->sections_off = off;
    off = align_up(off + (uint64_t)sections * sizeof(pu_section_rec));
    g->rows_off = off;
    off = align_up(off + (uint64_t)rows * sizeof(pu_row_rec));
    g->row_names_off = off;
    off = align_up(off + (uint64_t)rows * TG_NAME_BYTES);
    g->seat_rows_off = off;
    off = align_up(off + (uint64_t)g->seat_count * sizeof(uint16_t));
    g->seats_off = off;
    off = align_up(off + (uint64_t)g->seat_count * sizeof(tg_seat_word));
    g->logged_off = off;
    off = align_up(off + (uint64_t)g->seat_count * sizeof(uint32_t));
    g->bookings_off = off;
    off = align_up(off + (uint64_t)g->booking_capacity * sizeof(pu_booking_rec));
    g->log_off = off;
    off = align_up(off + (uint64_t)g->log_records * sizeof(pu_log_record));
    g->total = off;
}

static void geometry_from_config(const pu_partition_config *cfg, segment_geometry *g)
{
    g->seat_count = config_seat_count(cfg);
    g->booking_capacity = cfg->booking_capacity != 0 ? cfg->booking_capacity
                                                     : default_booking_capacity(g->seat_count);
    g->log_records = cfg->log_records != 0 ? cfg->log_records : TG_LOG_RECORDS_DEFAULT;
    geometry_compute(cfg->section_count, cfg->row_count, g);
}

size_t pu_segment_size(const pu_partition_config *cfg)
{
    if (pu_config_validate(cfg) != TG_OK) {
        return 0;
    }
    segment_geometry g;
    geometry_from_config(cfg, &g);
    return (size_t)g.total;
}

tg_err pu_segment_name(char *buf, size_t size, const char *pu_name, uint32_t partition_id)
{
    size_t len = strnlen(pu_name, TG_PU_NAME_BYTES);
    if (len == 0 || len >= TG_PU_NAME_BYTES || partition_id > TG_PARTITION_ID_MAX) {
        return TG_EINVAL;
    }
    for (size_t i = 0; i < len; i++) {
        char c = pu_name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_' || c == '.';
        if (!ok) {
            return TG_EINVAL; /* a '/' would make an invalid shm name */
        }
    }
    int n = snprintf(buf, size, "/tixgrid-%s-p%u", pu_name, partition_id);
    return (n > 0 && (size_t)n < size) ? TG_OK : TG_EINVAL;
}

/* Points the handle's region pointers into the mapping at base. */
static void handle_bind(pu_partition *p, void *base, size_t bytes)
{
    char *b = base;
    p->hdr = base;
    p->map_bytes = bytes;
    p->sections = (pu_section_rec *)(b + p->hdr->sections_off);
    p->rows = (pu_row_rec *)(b + p->hdr->rows_off);
    p->row_names = (char(*)[TG_NAME_BYTES])(b + p->hdr->row_names_off);
    p->seat_rows = (uint16_t *)(b + p->hdr->seat_rows_off);
    p->seats = (tg_seat_word *)(b + p->hdr->seats_off);
    p->logged = (uint32_t *)(b + p->hdr->logged_off);
    p->bookings = (pu_booking_rec *)(b + p->hdr->bookings_off);
    p->log = (pu_log_record *)(b + p->hdr->log_off);
}

static void header_fill(pu_header *h, const pu_partition_config *cfg, const segment_geometry *g)
{
    h->layout_version = PU_LAYOUT_VERSION;
    h->header_bytes = sizeof(pu_header);
    h->segment_bytes = g->total;
    h->event_id = cfg->event_id;
    h->partition_id = cfg->partition_id;
    h->seat_count = g->seat_count;
    h->section_count = cfg->section_count;
    h->row_count = cfg->row_count;
    h->booking_capacity = g->booking_capacity;
    h->log_records = g->log_records;
    h->hold_ttl_ms = cfg->hold_ttl_ms != 0 ? cfg->hold_ttl_ms : TG_HOLD_TTL_MS_DEFAULT;
    h->payment_window_ms =
        cfg->payment_window_ms != 0 ? cfg->payment_window_ms : TG_PAYMENT_WINDOW_MS_DEFAULT;
    h->sections_off = g->sections_off;
    h->rows_off = g->rows_off;
    h->row_names_off = g->row_names_off;
    h->seat_rows_off = g->seat_rows_off;
    h->seats_off = g->seats_off;
    h->logged_off = g->logged_off;
    h->bookings_off = g->bookings_off;
    h->log_off = g->log_off;
}

/* Fills sections, rows, row names and the seat → row map; seats start FREE
 * at version 0 (zero words), so only the FREE counters need setting. */
static void layout_fill(pu_partition *p, const pu_partition_config *cfg)
{
    uint32_t row = 0, seat = 0;
    for (uint32_t s = 0; s < cfg->section_count; s++) {
        const pu_section_spec *spec = &cfg->sections[s];
        pu_section_rec *sec = &p->sections[s];
        memcpy(sec->name, spec->name, TG_NAME_BYTES);
        sec->name[TG_NAME_BYTES - 1] = '\0';
        sec->price_minor = spec->price_minor;
        memcpy(sec->currency, spec->currency, TG_CURRENCY_BYTES);
        sec->row_first = row;
        sec->row_count = spec->row_count;
        sec->seat_first = seat;
        for (uint32_t r = 0; r < spec->row_count; r++, row++) {
            pu_row_rec *rec = &p->rows[row];
            memcpy(p->row_names[row], cfg->rows[row].name, TG_NAME_BYTES);
            p->row_names[row][TG_NAME_BYTES - 1] = '\0';
            rec->seat_first = seat;
            rec->seat_count = cfg->rows[row].seat_count;
            rec->section = s;
            rec->counts[TG_SEAT_FREE] = rec->seat_count;
            for (uint32_t k = 0; k < rec->seat_count; k++) {
                p->seat_rows[seat++] = (uint16_t)row;
            }
        }
        sec->seat_count = seat - sec->seat_first;
    }
}

static tg_err map_fd(int fd, size_t bytes, void **base)
{
    void *b = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (b == MAP_FAILED) {
        tg_log_error("mmap of %zu bytes failed: %s", bytes, strerror(errno));
        return errno == ENOMEM ? TG_ENOMEM : TG_ESYSTEM;
    }
    *base = b;
    return TG_OK;
}

static tg_err take_owner_lock(int fd)
{
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
        return TG_OK;
    }
    return errno == EWOULDBLOCK ? TG_EBUSY : TG_ESYSTEM;
}

static tg_err create_file(const char *shm_name, uint64_t bytes, int *fd_out)
{
    int fd = shm_open(shm_name, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0) {
        if (errno == EEXIST) {
            return TG_EEXIST;
        }
        tg_log_error("shm_open %s failed: %s", shm_name, strerror(errno));
        return errno == EINVAL || errno == ENAMETOOLONG ? TG_EINVAL : TG_ESYSTEM;
    }
    /* posix_fallocate, not just ftruncate: tmpfs allocates lazily, and a
     * full /dev/shm would otherwise surface later as SIGBUS on first touch. */
    int rc = take_owner_lock(fd) != TG_OK ? EWOULDBLOCK
             : ftruncate(fd, (off_t)bytes) != 0 ? errno
                                                : posix_fallocate(fd, 0, (off_t)bytes);
    if (rc != 0) {
        tg_log_error("sizing %s to %llu bytes failed: %s", shm_name, (unsigned long long)bytes,
                     strerror(rc));
        close(fd);
        shm_unlink(shm_name);
        return rc == ENOSPC || rc == ENOMEM ? TG_ENOMEM : TG_ESYSTEM;
    }
    *fd_out = fd;
    return TG_OK;
}

tg_err pu_partition_create(const char *shm_name, const pu_partition_config *cfg,
                           pu_partition **out)
{
    tg_err err = pu_config_validate(cfg);
    if (err != TG_OK) {
        return err;
    }
    segment_geometry g;
    geometry_from_config(cfg, &g);
    pu_partition *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        return TG_ENOMEM;
    }
    int fd;
    err = create_file(shm_name, g.total, &fd);
    void *base = NULL;
    if (err == TG_OK && (err = map_fd(fd, g.total, &base)) != TG_OK) {
        close(fd);
        shm_unlink(shm_name);
    }
    if (err != TG_OK) {
        free(p);
        return err;
    }
    header_fill(base, cfg, &g);
    handle_bind(p, base, g.total);
    layout_fill(p, cfg);
    p->hdr->restoring = cfg->restoring ? 1 : 0;
    p->owner_fd = fd;
    __atomic_store_n(&p->hdr->magic, PU_MAGIC, __ATOMIC_RELEASE);
    *out = p;
    return TG_OK;
}

/* Checks that a header's geometry is sane and matches the file size. */
static tg_err header_check(const pu_header *h, uint64_t file_bytes)
{
    if (__atomic_load_n(&h->magic, __ATOMIC_ACQUIRE) != PU_MAGIC) {
        return TG_EBAD_MAGIC;
    }
    if (h->layout_version != PU_LAYOUT_VERSION || h->header_bytes != sizeof(pu_header)) {
        return TG_EBAD_VERSION;
    }
    if (h->segment_bytes != file_bytes) {
        return TG_EBAD_SIZE;
    }
    uint32_t lr = h->log_records;
    if (h->section_count == 0 || h->section_count > TG_SECTIONS_MAX || h->row_count == 0 ||
        h->row_count > TG_ROWS_MAX || h->seat_count == 0 ||
        h->seat_count > TG_PARTITION_SEATS_MAX || h->booking_capacity < TG_BOOKINGS_MIN ||
        h->booking_capacity > TG_BOOKINGS_MAX || lr < TG_LOG_RECORDS_MIN ||
        lr > TG_LOG_RECORDS_MAX || (lr & (lr - 1)) != 0) {
        return TG_ECORRUPT;
    }
    segment_geometry g = {.seat_count = h->seat_count,
                          .booking_capacity = h->booking_capacity,
                          .log_records = lr};
    geometry_compute(h->section_count, h->row_count, &g);
    if (g.total != file_bytes || g.seats_off != h->seats_off || g.log_off != h->log_off ||
        g.bookings_off != h->bookings_off || g.rows_off != h->rows_off ||
        g.sections_off != h->sections_off || g.row_names_off != h->row_names_off ||
        g.seat_rows_off != h->seat_rows_off || g.logged_off != h->logged_off) {
        return g.total != file_bytes ? TG_EBAD_SIZE : TG_ECORRUPT;
    }
    return TG_OK;
}

static tg_err open_existing(const char *shm_name, int *fd_out, uint64_t *bytes)
{
    int fd = shm_open(shm_name, O_RDWR, 0);
    if (fd < 0) {
        if (errno == ENOENT) {
            return TG_ENOENT;
        }
        return errno == EINVAL || errno == ENAMETOOLONG ? TG_EINVAL : TG_ESYSTEM;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return TG_ESYSTEM;
    }
    if ((uint64_t)st.st_size < sizeof(pu_header)) {
        close(fd);
        return st.st_size == 0 ? TG_EBAD_MAGIC : TG_EBAD_SIZE;
    }
    *fd_out = fd;
    *bytes = (uint64_t)st.st_size;
    return TG_OK;
}

tg_err pu_partition_attach(const char *shm_name, int flags, pu_partition **out)
{
    int fd;
    uint64_t bytes;
    tg_err err = open_existing(shm_name, &fd, &bytes);
    if (err != TG_OK) {
        return err;
    }
    bool owner = (flags & PU_ATTACH_OWNER) != 0;
    void *base = NULL;
    if ((owner && (err = take_owner_lock(fd)) != TG_OK) ||
        (err = map_fd(fd, (size_t)bytes, &base)) != TG_OK) {
        close(fd);
        return err;
    }
    err = header_check(base, bytes);
    pu_partition *p = err == TG_OK ? calloc(1, sizeof(*p)) : NULL;
    if (p == NULL) {
        munmap(base, (size_t)bytes);
        close(fd);
        return err != TG_OK ? err : TG_ENOMEM;
    }
    handle_bind(p, base, (size_t)bytes);
    p->owner_fd = -1;
    if (owner) {
        p->owner_fd = fd;
        err = pu_partition_recover(p);
        if (err != TG_OK) {
            pu_partition_detach(p);
            return err;
        }
    } else {
        close(fd);
    }
    *out = p;
    return TG_OK;
}

void pu_partition_detach(pu_partition *p)
{
    if (p == NULL) {
        return;
    }
    munmap(p->hdr, p->map_bytes);
    if (p->owner_fd >= 0) {
        close(p->owner_fd); /* drops the flock */
    }
    free(p);
}

tg_err pu_partition_destroy(const char *shm_name)
{
    if (shm_unlink(shm_name) == 0) {
        return TG_OK;
    }
    return errno == ENOENT ? TG_ENOENT : TG_ESYSTEM;
}

void pu_partition_describe(const pu_partition *p, pu_partition_info *out)
{
    const pu_header *h = p->hdr;
    *out = (pu_partition_info){
        .partition_id = h->partition_id,
        .event_id = h->event_id,
        .seat_count = h->seat_count,
        .section_count = h->section_count,
        .row_count = h->row_count,
        .booking_capacity = h->booking_capacity,
        .log_records = h->log_records,
        .hold_ttl_ms = h->hold_ttl_ms,
        .payment_window_ms = h->payment_window_ms,
        .segment_bytes = h->segment_bytes,
        .map_epoch = __atomic_load_n(&h->map_epoch, __ATOMIC_ACQUIRE),
        .bookings_created = __atomic_load_n(&h->bookings_created, __ATOMIC_RELAXED),
        .log_head = __atomic_load_n(&h->log_head, __ATOMIC_ACQUIRE),
        .log_persisted = __atomic_load_n(&h->log_persisted, __ATOMIC_ACQUIRE),
        .restoring = __atomic_load_n(&h->restoring, __ATOMIC_ACQUIRE) != 0,
        .replica = __atomic_load_n(&h->replica, __ATOMIC_ACQUIRE) != 0,
        .applied_seq = __atomic_load_n(&h->last_applied_seq, __ATOMIC_ACQUIRE),
    };
}

uint64_t pu_partition_raise_epoch(pu_partition *p, uint64_t epoch)
{
    uint64_t seen = __atomic_load_n(&p->hdr->map_epoch, __ATOMIC_ACQUIRE);
    for (uint32_t tries = 0; seen < epoch && tries < TG_CAS_RETRIES_MAX; tries++) {
        if (__atomic_compare_exchange_n(&p->hdr->map_epoch, &seen, epoch, false, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE)) {
            return epoch;
        }
    }
    return seen >= epoch ? seen : __atomic_load_n(&p->hdr->map_epoch, __ATOMIC_ACQUIRE);
}

void pu_partition_set_replica(pu_partition *p, bool replica)
{
    __atomic_store_n(&p->hdr->replica, replica ? 1 : 0, __ATOMIC_RELEASE);
}

void pu_partition_set_refill(pu_partition *p, bool refill)
{
    __atomic_store_n(&p->hdr->restoring, refill ? 1 : 0, __ATOMIC_RELEASE);
}

tg_err pu_section_get(const pu_partition *p, uint32_t section, pu_section_info *out)
{
    if (section >= p->hdr->section_count) {
        return TG_EINVAL;
    }
    const pu_section_rec *s = &p->sections[section];
    *out = (pu_section_info){.price_minor = s->price_minor,
                             .row_first = s->row_first,
                             .row_count = s->row_count,
                             .seat_first = s->seat_first,
                             .seat_count = s->seat_count};
    memcpy(out->name, s->name, TG_NAME_BYTES);
    memcpy(out->currency, s->currency, TG_CURRENCY_BYTES);
    return TG_OK;
}

tg_err pu_row_get(const pu_partition *p, uint32_t row, pu_row_info *out)
{
    if (row >= p->hdr->row_count) {
        return TG_EINVAL;
    }
    const pu_row_rec *r = &p->rows[row];
    *out = (pu_row_info){
        .section = r->section, .seat_first = r->seat_first, .seat_count = r->seat_count};
    memcpy(out->name, p->row_names[row], TG_NAME_BYTES);
    return TG_OK;
}

tg_err pu_seat_get(const pu_partition *p, uint32_t seat_id, pu_seat_info *out)
{
    if (seat_id >= p->hdr->seat_count) {
        return TG_ESEAT_RANGE;
    }
    tg_seat_word w = pu_seat_load(p, seat_id);
    uint32_t row = p->seat_rows[seat_id];
    TG_ASSERT(row < p->hdr->row_count);
    const pu_row_rec *r = &p->rows[row];
    tg_seat_state st = tg_seat_word_state(w);
    bool owned = st == TG_SEAT_SELECTED || st == TG_SEAT_RESERVED || st == TG_SEAT_SOLD;
    *out = (pu_seat_info){
        .seat_id = seat_id,
        .word = w,
        .state = st,
        .booking_id = owned ? tg_booking_id_make(p->hdr->partition_id, tg_seat_word_booking(w))
                            : 0,
        .section = r->section,
        .row = row,
        .number = seat_id - r->seat_first + 1,
        .price_minor = p->sections[r->section].price_minor,
    };
    return TG_OK;
}

static bool row_may_match(const pu_partition *p, uint32_t row, const pu_seat_filter *f)
{
    const pu_row_rec *r = &p->rows[row];
    return (f->row < 0 || (uint32_t)f->row == row) &&
           (f->section < 0 || (uint32_t)f->section == r->section) &&
           (f->state < 0 || (f->state < TG_SEAT_STATE_COUNT &&
                             __atomic_load_n(&r->counts[f->state], __ATOMIC_RELAXED) > 0));
}

uint32_t pu_seats_find(const pu_partition *p, const pu_seat_filter *f, uint32_t first, uint32_t max,
                       pu_seat_info *out, uint32_t *next)
{
    uint32_t n = 0, seat = first;
    while (seat < p->hdr->seat_count && n < max) {
        uint32_t row = p->seat_rows[seat];
        uint32_t end = p->rows[row].seat_first + p->rows[row].seat_count;
        if (!row_may_match(p, row, f)) {
            seat = end;
            continue;
        }
        for (; seat < end && n < max; seat++) {
            (void)pu_seat_get(p, seat, &out[n]);
            n += f->state < 0 || out[n].state == (tg_seat_state)f->state ? 1 : 0;
        }
    }
    *next = seat < p->hdr->seat_count ? seat : p->hdr->seat_count;
    return n;
}

/* Sums per-row counts into totals and sections (each may be NULL). */
static void counts_fold(const pu_partition *p, uint32_t rows[][TG_SEAT_STATE_COUNT],
                        uint32_t totals[TG_SEAT_STATE_COUNT],
                        uint32_t (*sections)[TG_SEAT_STATE_COUNT])
{
    if (totals != NULL) {
        memset(totals, 0, sizeof(uint32_t) * TG_SEAT_STATE_COUNT);
    }
    if (sections != NULL) {
        memset(sections, 0, sizeof(*sections) * p->hdr->section_count);
    }
    for (uint32_t r = 0; r < p->hdr->row_count; r++) {
        for (int s = 0; s < TG_SEAT_STATE_COUNT; s++) {
            if (totals != NULL) {
                totals[s] += rows[r][s];
            }
            if (sections != NULL) {
                sections[p->rows[r].section][s] += rows[r][s];
            }
        }
    }
}

/*
 * Counters are kept per row only; sections and totals are summed on read.
 * Rejected: separate section and partition counters updated on every seat
 * change.  With all buyers in one hot section those two cache lines would
 * bounce between every core on every CAS, while a read of the overview is
 * rare next to seat changes and costs a pass over a few thousand rows.
 */
void pu_partition_counts(const pu_partition *p, uint32_t totals[TG_SEAT_STATE_COUNT],
                         uint32_t (*sections)[TG_SEAT_STATE_COUNT],
                         uint32_t (*rows)[TG_SEAT_STATE_COUNT])
{
    uint32_t n = p->hdr->row_count;
    uint32_t(*tmp)[TG_SEAT_STATE_COUNT] = rows != NULL ? rows : calloc(n, sizeof(*tmp));
    TG_ASSERT(tmp != NULL);
    for (uint32_t r = 0; r < n; r++) {
        for (int s = 0; s < TG_SEAT_STATE_COUNT; s++) {
            tmp[r][s] = __atomic_load_n(&p->rows[r].counts[s], __ATOMIC_RELAXED);
        }
    }
    counts_fold(p, tmp, totals, sections);
    if (rows == NULL) {
        free(tmp);
    }
}

void pu_partition_recount(const pu_partition *p, uint32_t totals[TG_SEAT_STATE_COUNT],
                          uint32_t (*sections)[TG_SEAT_STATE_COUNT],
                          uint32_t (*rows)[TG_SEAT_STATE_COUNT])
{
    uint32_t n = p->hdr->row_count;
    uint32_t(*tmp)[TG_SEAT_STATE_COUNT] = calloc(n, sizeof(*tmp));
    TG_ASSERT(tmp != NULL);
    for (uint32_t seat = 0; seat < p->hdr->seat_count; seat++) {
        tg_seat_state st = tg_seat_word_state(pu_seat_load(p, seat));
        TG_ASSERT(st < TG_SEAT_STATE_COUNT);
        tmp[p->seat_rows[seat]][st]++;
    }
    counts_fold(p, tmp, totals, sections);
    if (rows != NULL) {
        memcpy(rows, tmp, n * sizeof(*tmp));
    }
    free(tmp);
}
