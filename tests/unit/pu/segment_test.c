/*
 * segment_test.c — the partition's shared-memory segment: validating a
 * configuration, sizing, creating, attaching (owner and observer), detaching,
 * destroying, refusing foreign or damaged segments, and describing the
 * layout.
 *
 * Damaged segments are made by writing /dev/shm/<name> directly.  The header
 * starts with the magic (uint64 at offset 0) and the layout version (uint32
 * at offset 8): that much of the layout is fixed for every future version,
 * since it is what tells versions apart.
 */
#include "fixture.h"
#include "segment.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define HDR_MAGIC_OFFSET   0
#define HDR_VERSION_OFFSET 8

static void setup(void)
{
    fx_layout(2, 3, 10); /* 60 seats; the test creates it if it needs to */
}

TestSuite(segment, .init = setup, .fini = fx_fini);
TestSuite(config, .init = setup, .fini = fx_fini);

/* ---- helpers ---------------------------------------------------------------- */

static void assert_rejected(const pu_partition_config *cfg, const char *what)
{
    cr_assert_eq(pu_config_validate(cfg), TG_EINVAL, "accepted %s", what);
    cr_assert_eq(pu_segment_size(cfg), 0u, "sized %s", what);
    char name[TG_SHM_NAME_BYTES];
    fx_unique_name(name, sizeof(name));
    pu_partition *p = NULL;
    cr_assert_eq(pu_partition_create(name, cfg, &p), TG_EINVAL, "created %s", what);
    cr_assert_eq(pu_partition_attach(name, PU_ATTACH_OBSERVER, &p), TG_ENOENT,
                 "a rejected config left a segment behind");
}

static void assert_accepted(const pu_partition_config *cfg, const char *what)
{
    cr_assert_eq(pu_config_validate(cfg), TG_OK, "rejected %s", what);
    cr_assert_gt(pu_segment_size(cfg), 0u, "no size for %s", what);
}

/* The path of a segment's file, for damaging it. */
static void shm_path(char *buf, size_t size, const char *name)
{
    int n = snprintf(buf, size, "/dev/shm%s", name);
    cr_assert(n > 0 && (size_t)n < size);
}

/* Creates fx's segment and detaches it, leaving only the file. */
static void create_and_close(void)
{
    fx_create();
    pu_partition_detach(fx.p);
    fx.p = NULL;
}

static void poke(const char *name, off_t offset, const void *bytes, size_t n)
{
    char path[TG_SHM_NAME_BYTES + 16];
    shm_path(path, sizeof(path), name);
    int fd = open(path, O_RDWR);
    cr_assert_geq(fd, 0, "open %s", path);
    cr_assert_eq(pwrite(fd, bytes, n, offset), (ssize_t)n);
    close(fd);
}

static off_t file_size(const char *name)
{
    char path[TG_SHM_NAME_BYTES + 16];
    shm_path(path, sizeof(path), name);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    return st.st_size;
}

static void resize(const char *name, off_t size)
{
    char path[TG_SHM_NAME_BYTES + 16];
    shm_path(path, sizeof(path), name);
    cr_assert_eq(truncate(path, size), 0);
}

static void assert_attach_fails(const char *name, tg_err want)
{
    pu_partition *p = NULL;
    cr_assert_eq(pu_partition_attach(name, PU_ATTACH_OBSERVER, &p), want, "observer: %s",
                 tg_errname(want));
    cr_assert_eq(pu_partition_attach(name, PU_ATTACH_OWNER, &p), want, "owner: %s",
                 tg_errname(want));
}

/* ---- configuration ------------------------------------------------------------ */

Test(config, the_fixture_layout_is_valid)
{
    assert_accepted(&fx.cfg, "the fixture layout");
}

Test(config, rejects_a_partition_id_above_the_maximum)
{
    fx.cfg.partition_id = TG_PARTITION_ID_MAX + 1;
    assert_rejected(&fx.cfg, "partition id 2^21");
    fx.cfg.partition_id = UINT32_MAX;
    assert_rejected(&fx.cfg, "partition id UINT32_MAX");
    fx.cfg.partition_id = TG_PARTITION_ID_MAX;
    assert_accepted(&fx.cfg, "the largest partition id");
}

Test(config, rejects_zero_sections_or_more_than_the_maximum)
{
    fx.cfg.section_count = 0;
    fx.cfg.row_count = 0;
    assert_rejected(&fx.cfg, "no sections");

    static pu_section_spec sections[TG_SECTIONS_MAX + 1];
    static pu_row_spec rows[TG_SECTIONS_MAX + 1];
    for (uint32_t i = 0; i <= TG_SECTIONS_MAX; i++) {
        fx_section_spec(&sections[i], i, 1);
        fx_row_spec(&rows[i], 0, 4);
    }
    pu_partition_config cfg = fx.cfg;
    cfg.sections = sections;
    cfg.rows = rows;
    cfg.section_count = TG_SECTIONS_MAX + 1;
    cfg.row_count = TG_SECTIONS_MAX + 1;
    assert_rejected(&cfg, "one section too many");
    cfg.section_count = TG_SECTIONS_MAX;
    cfg.row_count = TG_SECTIONS_MAX;
    assert_accepted(&cfg, "the most sections");
}

Test(config, rejects_duplicate_section_names)
{
    memcpy(fx.sections[1].name, fx.sections[0].name, TG_NAME_BYTES);
    assert_rejected(&fx.cfg, "two sections of one name");
}

Test(config, rejects_an_empty_or_unterminated_section_name)
{
    fx.sections[1].name[0] = '\0';
    assert_rejected(&fx.cfg, "an empty section name");
    memset(fx.sections[1].name, 'x', TG_NAME_BYTES);
    assert_rejected(&fx.cfg, "a section name without its NUL");
    memset(fx.sections[1].name, 'x', TG_NAME_BYTES - 1);
    fx.sections[1].name[TG_NAME_BYTES - 1] = '\0';
    assert_accepted(&fx.cfg, "the longest section name");
}

Test(config, rejects_an_empty_or_unterminated_row_name)
{
    fx.rows[4].name[0] = '\0';
    assert_rejected(&fx.cfg, "an empty row name");
    memset(fx.rows[4].name, 'r', TG_NAME_BYTES);
    assert_rejected(&fx.cfg, "a row name without its NUL");
}

Test(config, rejects_duplicate_row_names_within_a_section_only)
{
    memcpy(fx.rows[2].name, fx.rows[0].name, TG_NAME_BYTES);
    assert_rejected(&fx.cfg, "two rows of one name in a section");
    fx_layout(2, 3, 10);
    /* Rows of both sections are named R0, R1, R2 already. */
    cr_assert_str_eq(fx.rows[0].name, fx.rows[3].name);
    assert_accepted(&fx.cfg, "the same row name in two sections");
}

Test(config, rejects_a_row_of_zero_seats_or_more_than_the_maximum)
{
    fx.rows[1].seat_count = 0;
    assert_rejected(&fx.cfg, "a row of 0 seats");
    fx.rows[1].seat_count = TG_ROW_SEATS_MAX + 1;
    assert_rejected(&fx.cfg, "a row one seat too long");
    fx.rows[1].seat_count = TG_ROW_SEATS_MAX;
    assert_accepted(&fx.cfg, "the longest row");
}

Test(config, rejects_a_negative_price)
{
    fx.sections[0].price_minor = -1;
    assert_rejected(&fx.cfg, "a negative price");
    fx.sections[0].price_minor = 0;
    assert_accepted(&fx.cfg, "a free section");
}

Test(config, rejects_a_currency_that_is_not_three_capital_letters)
{
    static const char bad[][TG_CURRENCY_BYTES] = {
        {'e', 'u', 'r', '\0'}, {'E', 'U', '\0', '\0'},   {'E', 'U', 'R', 'O'},
        {'E', '1', 'R', '\0'}, {'\0', '\0', '\0', '\0'}, {'E', 'u', 'R', '\0'},
    };
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memcpy(fx.sections[1].currency, bad[i], TG_CURRENCY_BYTES);
        assert_rejected(&fx.cfg, "a bad currency");
    }
    memcpy(fx.sections[1].currency, "USD", TG_CURRENCY_BYTES);
    assert_accepted(&fx.cfg, "USD");
}

Test(config, rejects_a_row_count_that_is_not_the_sum_of_the_sections)
{
    fx.cfg.row_count = 5;
    assert_rejected(&fx.cfg, "one row too few");
    fx_layout(2, 3, 10);
    fx.cfg.row_count = 7;
    fx_row_spec(&fx.rows[6], 9, 10);
    assert_rejected(&fx.cfg, "one row too many");
    fx_layout(2, 3, 10);
    fx.sections[1].row_count = 0;
    fx.cfg.row_count = 3;
    assert_rejected(&fx.cfg, "a section of no rows");
}

Test(config, rejects_more_rows_than_the_maximum)
{
    static pu_row_spec rows[TG_ROWS_MAX + 1];
    for (uint32_t i = 0; i <= TG_ROWS_MAX; i++) {
        fx_row_spec(&rows[i], i, 1);
    }
    pu_section_spec section;
    fx_section_spec(&section, 0, TG_ROWS_MAX + 1);
    pu_partition_config cfg = fx.cfg;
    cfg.section_count = 1;
    cfg.sections = &section;
    cfg.rows = rows;
    cfg.row_count = TG_ROWS_MAX + 1;
    assert_rejected(&cfg, "one row too many");
    section.row_count = TG_ROWS_MAX;
    cfg.row_count = TG_ROWS_MAX;
    assert_accepted(&cfg, "the most rows");
}

Test(config, rejects_more_seats_than_a_partition_holds)
{
    /* 513 full rows are 2^20 + 2048 seats. */
    static pu_row_spec rows[513];
    for (uint32_t i = 0; i < 513; i++) {
        fx_row_spec(&rows[i], i, TG_ROW_SEATS_MAX);
    }
    pu_section_spec section;
    fx_section_spec(&section, 0, 513);
    pu_partition_config cfg = fx.cfg;
    cfg.section_count = 1;
    cfg.sections = &section;
    cfg.rows = rows;
    cfg.row_count = 513;
    assert_rejected(&cfg, "2^20 + 2048 seats");
    section.row_count = 512;
    cfg.row_count = 512;
    assert_accepted(&cfg, "exactly TG_PARTITION_SEATS_MAX seats");
}

Test(config, rejects_a_log_size_that_is_not_a_power_of_two_in_range)
{
    static const uint32_t bad[] = {1000, 63, 32, 1, TG_LOG_RECORDS_MAX * 2, 3u << 10};
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        fx.cfg.log_records = bad[i];
        assert_rejected(&fx.cfg, "a bad log size");
    }
    fx.cfg.log_records = TG_LOG_RECORDS_MIN;
    assert_accepted(&fx.cfg, "the smallest log");
    fx.cfg.log_records = TG_LOG_RECORDS_MAX;
    assert_accepted(&fx.cfg, "the largest log");
    fx.cfg.log_records = 0;
    assert_accepted(&fx.cfg, "the default log");
}

Test(config, rejects_a_booking_capacity_out_of_range)
{
    fx.cfg.booking_capacity = TG_BOOKINGS_MIN - 1;
    assert_rejected(&fx.cfg, "too few booking slots");
    fx.cfg.booking_capacity = TG_BOOKINGS_MAX + 1;
    assert_rejected(&fx.cfg, "too many booking slots");
    fx.cfg.booking_capacity = TG_BOOKINGS_MIN;
    assert_accepted(&fx.cfg, "the fewest booking slots");
    fx.cfg.booking_capacity = TG_BOOKINGS_MAX;
    assert_accepted(&fx.cfg, "the most booking slots");
}

Test(config, segment_size_grows_with_the_log_and_the_booking_table)
{
    fx.cfg.log_records = 1024;
    size_t small = pu_segment_size(&fx.cfg);
    fx.cfg.log_records = 2048;
    size_t bigger_log = pu_segment_size(&fx.cfg);
    cr_assert_geq(bigger_log, small + 1024 * sizeof(pu_log_record));
    fx.cfg.log_records = 1024;
    fx.cfg.booking_capacity = 1000;
    cr_assert_gt(pu_segment_size(&fx.cfg), small);
}

/* ---- names -------------------------------------------------------------------- */

Test(segment, name_is_the_canonical_shm_name)
{
    char buf[TG_SHM_NAME_BYTES];
    cr_assert_eq(pu_segment_name(buf, sizeof(buf), "pu-1", 7), TG_OK);
    cr_assert_str_eq(buf, "/tixgrid-pu-1-p7");
    cr_assert_eq(pu_segment_name(buf, sizeof(buf), "a", TG_PARTITION_ID_MAX), TG_OK);
    cr_assert_str_eq(buf, "/tixgrid-a-p2097151");
}

Test(segment, name_fails_when_it_does_not_fit_or_cannot_be_a_name)
{
    char buf[TG_SHM_NAME_BYTES];
    cr_assert_eq(pu_segment_name(buf, 10, "pu-1", 7), TG_EINVAL);
    cr_assert_eq(pu_segment_name(buf, sizeof(buf), "", 7), TG_EINVAL);
    cr_assert_eq(pu_segment_name(buf, sizeof(buf), "a/b", 7), TG_EINVAL);
    cr_assert_eq(pu_segment_name(buf, sizeof(buf), "pu", TG_PARTITION_ID_MAX + 1), TG_EINVAL);
}

/* ---- life cycle --------------------------------------------------------------- */

Test(segment, create_attach_detach_and_destroy)
{
    fx_create();
    pu_partition *observer = NULL;
    cr_assert_eq(pu_partition_attach(fx.name, PU_ATTACH_OBSERVER, &observer), TG_OK);
    cr_assert_eq(fx_info(observer).seat_count, 60u);
    pu_partition_detach(observer);

    cr_assert_eq(pu_partition_destroy(fx.name), TG_OK);
    fx.created = false;
    cr_assert_eq(pu_partition_attach(fx.name, PU_ATTACH_OBSERVER, &observer), TG_ENOENT);
    cr_assert_eq(pu_partition_destroy(fx.name), TG_ENOENT);

    /* The creator's mapping stays valid until it detaches. */
    fx_book_range(fx.p, FX_ALICE, 0, 2, FX_T0);
    fx_check(fx.p);
    pu_partition_detach(fx.p);
    fx.p = NULL;
    pu_partition_detach(NULL);
}

Test(segment, size_is_what_the_segment_takes)
{
    size_t size = pu_segment_size(&fx.cfg);
    fx_create();
    cr_assert_eq(fx_info(fx.p).segment_bytes, size);
    cr_assert_eq((size_t)file_size(fx.name), size);
    fx_check(fx.p);
}

Test(segment, create_fails_when_the_name_is_taken_and_leaves_the_segment_alone)
{
    fx_create();
    pu_partition *p = fx.p;
    fx_book_range(p, FX_ALICE, 3, 2, FX_T0);
    fx_snapshot before;
    fx_snap(p, &before);
    off_t size = file_size(fx.name);

    pu_partition_config other = fx.cfg;
    other.event_id = 99;
    other.log_records = 2 * FX_LOG_RECORDS;
    pu_partition *second = NULL;
    cr_assert_eq(pu_partition_create(fx.name, &other, &second), TG_EEXIST);

    fx_assert_unchanged(p, &before);
    cr_assert_eq(file_size(fx.name), size);
    pu_partition *observer = NULL;
    cr_assert_eq(pu_partition_attach(fx.name, PU_ATTACH_OBSERVER, &observer), TG_OK);
    cr_assert_eq(fx_info(observer).event_id, FX_EVENT_ID);
    cr_assert_eq(fx_seat_state(observer, 3), TG_SEAT_SELECTED);
    pu_partition_detach(observer);
    fx_check(p);
}

Test(segment, attach_fails_for_a_missing_name)
{
    char name[TG_SHM_NAME_BYTES];
    fx_unique_name(name, sizeof(name));
    assert_attach_fails(name, TG_ENOENT);
}

Test(segment, attach_refuses_a_segment_with_a_bad_magic)
{
    create_and_close();
    const uint64_t junk = UINT64_C(0x0123456789abcdef);
    poke(fx.name, HDR_MAGIC_OFFSET, &junk, sizeof(junk));
    assert_attach_fails(fx.name, TG_EBAD_MAGIC);
}

Test(segment, attach_refuses_a_file_that_is_not_a_segment)
{
    fx_unique_name(fx.name, sizeof(fx.name));
    char path[TG_SHM_NAME_BYTES + 16];
    shm_path(path, sizeof(path), fx.name);
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
    cr_assert_geq(fd, 0);
    fx.created = true;
    static char zeros[1 << 16];
    cr_assert_eq(write(fd, zeros, sizeof(zeros)), (ssize_t)sizeof(zeros));
    close(fd);
    assert_attach_fails(fx.name, TG_EBAD_MAGIC);
}

Test(segment, attach_refuses_another_layout_version)
{
    create_and_close();
    const uint32_t version = 0x7fff;
    poke(fx.name, HDR_VERSION_OFFSET, &version, sizeof(version));
    assert_attach_fails(fx.name, TG_EBAD_VERSION);
}

Test(segment, attach_refuses_a_truncated_segment)
{
    create_and_close();
    off_t size = file_size(fx.name);
    resize(fx.name, size - 4096);
    assert_attach_fails(fx.name, TG_EBAD_SIZE);
    resize(fx.name, 100);
    assert_attach_fails(fx.name, TG_EBAD_SIZE);
}

Test(segment, attach_refuses_an_extended_segment)
{
    create_and_close();
    off_t size = file_size(fx.name);
    resize(fx.name, size + 4096);
    assert_attach_fails(fx.name, TG_EBAD_SIZE);
}

/* ---- ownership ---------------------------------------------------------------- */

Test(segment, a_second_owner_is_refused_while_the_first_holds_it)
{
    fx_create(); /* the creator is the owner */
    pu_partition *second = NULL;
    cr_assert_eq(pu_partition_attach(fx.name, PU_ATTACH_OWNER, &second), TG_EBUSY);
    pu_partition *observer = NULL;
    cr_assert_eq(pu_partition_attach(fx.name, PU_ATTACH_OBSERVER, &observer), TG_OK,
                 "observers need no lock");
    pu_partition_detach(observer);

    pu_partition_detach(fx.p);
    fx.p = NULL;
    cr_assert_eq(pu_partition_attach(fx.name, PU_ATTACH_OWNER, &fx.p), TG_OK,
                 "the lock goes with the owner's detach");
    cr_assert_eq(pu_partition_attach(fx.name, PU_ATTACH_OWNER, &second), TG_EBUSY);
    fx_check(fx.p);
}

Test(segment, a_second_owner_in_another_process_is_refused)
{
    fx_create();
    fflush(NULL);
    pid_t child = fork();
    cr_assert_geq(child, 0);
    if (child == 0) {
        pu_partition *p = NULL;
        tg_err err = pu_partition_attach(fx.name, PU_ATTACH_OWNER, &p);
        _exit(err == TG_EBUSY ? 0 : 10 + (int)err);
    }
    int status = 0;
    cr_assert_eq(waitpid(child, &status, 0), child);
    cr_assert(WIFEXITED(status));
    cr_assert_eq(WEXITSTATUS(status), 0, "the child's owner attach did not get TG_EBUSY");
    fx_check(fx.p);
}

/* A child process attaches the segment as its owner, books seats 7 and 8
 * for Alice and dies (holding the owner lock, never detaching); with
 * torn_version, it dies as a status change would after its first store
 * (booking.c: the version first), holding the booking's lock. */
static void owner_dies(bool torn_version)
{
    create_and_close();
    fflush(NULL);
    pid_t child = fork();
    cr_assert_geq(child, 0);
    if (child == 0) {
        pu_partition *p = NULL;
        if (pu_partition_attach(fx.name, PU_ATTACH_OWNER, &p) != TG_OK) {
            _exit(1);
        }
        pu_booking_info b;
        const uint32_t seats[] = {7, 8};
        pu_hold_result r;
        if (pu_booking_create(p, FX_ALICE, FX_T0, &b) != TG_OK ||
            pu_seats_hold(p, b.id, FX_ALICE, seats, 2, FX_T0, &r) != TG_OK) {
            _exit(2);
        }
        if (torn_version) {
            pu_booking_rec *rec = pu_booking_slot(p, tg_booking_id_seq(b.id));
            rec->lock = 1;
            rec->version++;
        }
        _exit(0);
    }
    int status = 0;
    cr_assert_eq(waitpid(child, &status, 0), child);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child failed: %d", status);
}

Test(segment, an_owner_that_dies_leaves_the_segment_to_the_next_owner)
{
    owner_dies(false);
    cr_assert_eq(pu_partition_attach(fx.name, PU_ATTACH_OWNER, &fx.p), TG_OK);
    cr_assert_eq(fx_seat_state(fx.p, 7), TG_SEAT_SELECTED);
    cr_assert_eq(fx_seat_state(fx.p, 8), TG_SEAT_SELECTED);
    cr_assert_eq(fx_info(fx.p).bookings_created, 1u);
    fx_check(fx.p);
}

/* The last booking record in the log about seq, which must exist. */
static pu_log_record last_booking_record(pu_partition *p, uint32_t seq)
{
    pu_log_record recs[64], last = {0};
    uint64_t head = fx_info(p).log_head;
    cr_assert_leq(head, 64u);
    cr_assert_eq(pu_log_read(p, 1, recs, 64), (uint32_t)head);
    for (uint64_t i = 0; i < head; i++) {
        if (recs[i].kind == PU_REC_BOOKING && recs[i].ident == seq) {
            last = recs[i];
        }
    }
    cr_assert_eq(last.ident, seq, "no record of booking %u", seq);
    return last;
}

/* A status change stores the version first: a writer killed right after
 * that store leaves a version newer than the one logged, and the next owner
 * logs the booking again.  (Stored the other way round, a new status under
 * the logged version would look logged and stay out of the log.) */
Test(segment, a_writer_killed_after_the_version_store_gets_its_booking_logged_again)
{
    owner_dies(true);
    cr_assert_eq(pu_partition_attach(fx.name, PU_ATTACH_OWNER, &fx.p), TG_OK);
    pu_booking_info b = fx_booking_get(fx.p, tg_booking_id_make(FX_PARTITION_ID, 1));
    cr_assert_eq(b.status, TG_BOOKING_CREATED);
    cr_assert_eq(b.version, 2u);
    cr_assert_eq(b.seat_count, 2u);
    pu_log_record last = last_booking_record(fx.p, 1);
    cr_assert_eq(last.status, TG_BOOKING_CREATED, "the log says what the segment says");
    cr_assert_eq(last.version, 2u, "the new version is logged");
    cr_assert_eq(fx_seat_state(fx.p, 7), TG_SEAT_SELECTED);
    fx_check(fx.p);
}

Test(segment, state_survives_detach_and_owner_reattach)
{
    fx_create();
    tg_booking_id id = fx_book_range(fx.p, FX_ALICE, 10, 3, FX_T0);
    fx_begin_payment(fx.p, id, FX_ALICE, FX_T0);
    uint64_t log_head = fx_info(fx.p).log_head;
    pu_partition_detach(fx.p);
    fx.p = NULL;

    cr_assert_eq(pu_partition_attach(fx.name, PU_ATTACH_OWNER, &fx.p), TG_OK);
    pu_booking_info b = fx_booking_get(fx.p, id);
    cr_assert_eq(b.status, TG_BOOKING_PENDING_PAYMENT);
    cr_assert_eq(b.seat_count, 3u);
    cr_assert_eq(fx_seat_state(fx.p, 11), TG_SEAT_RESERVED);
    cr_assert_eq(fx_info(fx.p).log_head, log_head, "a clean recovery logs nothing");
    cr_assert_eq(pu_booking_confirm(fx.p, id, FX_T0), TG_OK);
    fx_check(fx.p);
}

Test(segment, an_observer_sees_changes_made_through_another_handle)
{
    fx_create();
    pu_partition *observer = NULL;
    cr_assert_eq(pu_partition_attach(fx.name, PU_ATTACH_OBSERVER, &observer), TG_OK);

    tg_booking_id id = fx_book_range(fx.p, FX_ALICE, 20, 4, FX_T0);
    for (uint32_t s = 0; s < 60; s++) {
        cr_assert_eq(fx_seat(observer, s).word, fx_seat(fx.p, s).word, "seat %u", s);
    }
    cr_assert_eq(fx_seat(observer, 21).booking_id, id);
    cr_assert_eq(fx_total(observer, TG_SEAT_SELECTED), 4u);
    cr_assert_eq(fx_info(observer).log_head, fx_info(fx.p).log_head);

    /* And the other way round: an observer may act, too. */
    cr_assert_eq(pu_booking_cancel(observer, id, FX_ALICE, FX_T0), TG_OK);
    cr_assert_eq(fx_seat_state(fx.p, 21), TG_SEAT_FREE);
    cr_assert_eq(fx_booking_get(fx.p, id).status, TG_BOOKING_CANCELLED);
    fx_check(observer);
    pu_partition_detach(observer);
    fx_check(fx.p);
}

/* ---- description -------------------------------------------------------------- */

Test(segment, describe_returns_the_configuration)
{
    fx.cfg.booking_capacity = 100;
    fx.cfg.log_records = 256;
    fx.cfg.hold_ttl_ms = 1234;
    fx.cfg.payment_window_ms = 5678;
    fx_create();
    pu_partition_info info = fx_info(fx.p);
    cr_assert_eq(info.partition_id, FX_PARTITION_ID);
    cr_assert_eq(info.event_id, FX_EVENT_ID);
    cr_assert_eq(info.seat_count, 60u);
    cr_assert_eq(info.section_count, 2u);
    cr_assert_eq(info.row_count, 6u);
    cr_assert_eq(info.booking_capacity, 100u);
    cr_assert_eq(info.log_records, 256u);
    cr_assert_eq(info.hold_ttl_ms, 1234u);
    cr_assert_eq(info.payment_window_ms, 5678u);
    cr_assert_eq(info.segment_bytes, pu_segment_size(&fx.cfg));
    cr_assert_eq(info.bookings_created, 0u);
    cr_assert_eq(info.log_head, 0u);
    cr_assert_eq(info.log_persisted, 0u);
    fx_check(fx.p);
}

Test(segment, describe_returns_the_defaults_for_zero_fields)
{
    fx.cfg.booking_capacity = 0;
    fx.cfg.log_records = 0;
    fx.cfg.hold_ttl_ms = 0;
    fx.cfg.payment_window_ms = 0;
    fx_create();
    pu_partition_info info = fx_info(fx.p);
    cr_assert_eq(info.booking_capacity, 90u, "60 seats + 60 / 2");
    cr_assert_eq(info.log_records, TG_LOG_RECORDS_DEFAULT);
    cr_assert_eq(info.hold_ttl_ms, TG_HOLD_TTL_MS_DEFAULT);
    cr_assert_eq(info.payment_window_ms, TG_PAYMENT_WINDOW_MS_DEFAULT);
    cr_assert_eq(info.segment_bytes, pu_segment_size(&fx.cfg));

    pu_booking_info b;
    cr_assert_eq(pu_booking_create(fx.p, FX_ALICE, FX_T0, &b), TG_OK);
    cr_assert_eq(b.deadline_ms, FX_T0 + TG_HOLD_TTL_MS_DEFAULT);
    fx_check(fx.p);
}

Test(segment, the_default_booking_capacity_is_at_least_the_minimum)
{
    fx_layout(1, 1, 4);
    fx.cfg.booking_capacity = 0;
    fx_create();
    cr_assert_eq(fx_info(fx.p).booking_capacity, TG_BOOKINGS_MIN);
    fx_check(fx.p);
}

/* Sections of rows of 10 and 12 seats, then one row of 5: seats 0..9, 10..21
 * in section 0 and 22..26 in section 1. */
static void uneven_layout(void)
{
    const uint32_t rows_per_section[] = {2, 1};
    const uint32_t row_seats[] = {10, 12, 5};
    fx_layout_custom(2, rows_per_section, row_seats);
    fx_create();
}

Test(segment, sections_describe_their_rows_and_seats)
{
    uneven_layout();
    pu_section_info s;
    cr_assert_eq(pu_section_get(fx.p, 0, &s), TG_OK);
    cr_assert_str_eq(s.name, "S0");
    cr_assert_eq(s.price_minor, 1000);
    cr_assert_str_eq(s.currency, "EUR");
    cr_assert_eq(s.row_first, 0u);
    cr_assert_eq(s.row_count, 2u);
    cr_assert_eq(s.seat_first, 0u);
    cr_assert_eq(s.seat_count, 22u);
    cr_assert_eq(pu_section_get(fx.p, 1, &s), TG_OK);
    cr_assert_str_eq(s.name, "S1");
    cr_assert_eq(s.price_minor, 2000);
    cr_assert_eq(s.row_first, 2u);
    cr_assert_eq(s.row_count, 1u);
    cr_assert_eq(s.seat_first, 22u);
    cr_assert_eq(s.seat_count, 5u);
    cr_assert_eq(pu_section_get(fx.p, 2, &s), TG_EINVAL);
    cr_assert_eq(pu_section_get(fx.p, UINT32_MAX, &s), TG_EINVAL);
    fx_check(fx.p);
}

Test(segment, rows_describe_their_section_and_seats)
{
    uneven_layout();
    static const struct {
        const char *name;
        uint32_t section, seat_first, seat_count;
    } want[] = {{"R0", 0, 0, 10}, {"R1", 0, 10, 12}, {"R0", 1, 22, 5}};
    for (uint32_t r = 0; r < 3; r++) {
        pu_row_info row;
        cr_assert_eq(pu_row_get(fx.p, r, &row), TG_OK);
        cr_assert_str_eq(row.name, want[r].name, "row %u", r);
        cr_assert_eq(row.section, want[r].section, "row %u", r);
        cr_assert_eq(row.seat_first, want[r].seat_first, "row %u", r);
        cr_assert_eq(row.seat_count, want[r].seat_count, "row %u", r);
    }
    pu_row_info row;
    cr_assert_eq(pu_row_get(fx.p, 3, &row), TG_EINVAL);
    fx_check(fx.p);
}

Test(segment, seats_are_numbered_densely_section_by_section_and_row_by_row)
{
    uneven_layout();
    static const uint32_t row_of_seat_first[] = {0, 10, 22, 27};
    for (uint32_t seat = 0; seat < 27; seat++) {
        pu_seat_info s = fx_seat(fx.p, seat);
        uint32_t row = seat < 10 ? 0 : (seat < 22 ? 1 : 2);
        cr_assert_eq(s.seat_id, seat);
        cr_assert_eq(s.row, row, "seat %u", seat);
        cr_assert_eq(s.section, row == 2 ? 1u : 0u, "seat %u", seat);
        cr_assert_eq(s.number, seat - row_of_seat_first[row] + 1, "seat %u", seat);
        cr_assert_eq(s.price_minor, row == 2 ? 2000 : 1000);
        cr_assert_eq(s.state, TG_SEAT_FREE);
        cr_assert_eq(s.booking_id, 0u);
        cr_assert_eq(s.word, tg_seat_word_make(TG_SEAT_FREE, 0, 0));
    }
    pu_seat_info s;
    cr_assert_eq(pu_seat_get(fx.p, 27, &s), TG_ESEAT_RANGE);
    cr_assert_eq(pu_seat_get(fx.p, UINT32_MAX, &s), TG_ESEAT_RANGE);
    fx_check(fx.p);
}

Test(segment, counters_start_with_every_seat_free)
{
    uneven_layout();
    uint32_t totals[TG_SEAT_STATE_COUNT];
    uint32_t sections[2][TG_SEAT_STATE_COUNT];
    uint32_t rows[3][TG_SEAT_STATE_COUNT];
    pu_partition_counts(fx.p, totals, sections, rows);
    cr_assert_eq(totals[TG_SEAT_FREE], 27u);
    cr_assert_eq(sections[0][TG_SEAT_FREE], 22u);
    cr_assert_eq(sections[1][TG_SEAT_FREE], 5u);
    cr_assert_eq(rows[1][TG_SEAT_FREE], 12u);
    for (int st = TG_SEAT_SELECTED; st < TG_SEAT_STATE_COUNT; st++) {
        cr_assert_eq(totals[st], 0u);
    }
    uint32_t recount[TG_SEAT_STATE_COUNT];
    pu_partition_recount(fx.p, recount, NULL, NULL);
    cr_assert_arr_eq(recount, totals, sizeof(totals));
    fx_check(fx.p);
}

Test(segment, the_map_epoch_only_rises_and_survives_a_reattach)
{
    pu_partition *p = fx_start(1, 2, 10);
    cr_assert_eq(fx_info(p).map_epoch, 0);
    cr_assert_eq(pu_partition_raise_epoch(p, 5), 5);
    cr_assert_eq(pu_partition_raise_epoch(p, 3), 5, "an older epoch is never taken");
    cr_assert_eq(pu_partition_raise_epoch(p, 5), 5);
    cr_assert_eq(fx_info(p).map_epoch, 5);
    pu_partition *observer = NULL;
    cr_assert_eq(pu_partition_attach(fx.name, PU_ATTACH_OBSERVER, &observer), TG_OK);
    cr_assert_eq(fx_info(observer).map_epoch, 5, "the epoch lives in shared memory");
    cr_assert_eq(pu_partition_raise_epoch(observer, TG_WIRE_ID_MAX), TG_WIRE_ID_MAX);
    pu_partition_detach(observer);
    cr_assert_eq(fx_info(p).map_epoch, TG_WIRE_ID_MAX);
}
