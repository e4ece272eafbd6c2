/*
 * shutdown_test.c — stopping a real tixgrid-pu while it is busy.
 *
 * pu/server.h: on SIGTERM the unit stops accepting (a request arriving from
 * then on gets TG_EUNAVAILABLE), lets every request being processed send its
 * reply, closes its sockets and exits 0.  Here a client keeps many requests
 * in flight (holds, reads, new bookings) when SIGTERM arrives: every request
 * that got a reply must have got a proper one (the ok reply of its type, or
 * an error reply whose code the request can have), the unit must exit 0
 * promptly, and after a restart the seats held are the acknowledged holds
 * (plus at most the holds whose reply never arrived).  The load runs in a
 * helper process (it_load, see harness.h).
 */
#include "harness.h"

#include <criterion/criterion.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#define P 21u
#define SEATS 10000u /* 10 rows of 1000 */
#define BOOKINGS 512u
#define IN_FLIGHT 128u
/* How long the exit may take after SIGTERM with requests in flight. */
#define PROMPT_EXIT_MS 2000

static hx_unit unit;
static tg_client *client;

static void start_unit(void)
{
    hx_unit_init(&unit, "term");
    hx_layout l = {.partition_id = P, .event_id = 31, .sections = 1, .rows = 10, .seats = 1000,
                   .log_records = 1u << 17, .booking_capacity = 1u << 15};
    hx_write_layout(&unit, &l);
    hx_start(&unit);
    client = hx_client(&unit, P, 4);
}

static void stop_unit(void)
{
    hx_fini_all(); /* closes the client too */
    client = NULL;
}

TestSuite(shutdown, .init = start_unit, .fini = stop_unit, .timeout = 90);

/* ---- Requests in flight ------------------------------------------------- */

typedef struct {
    uint32_t sent, replies, no_reply, held, improper, improper_type, improper_code, unavailable;
} flood_result;

Test(shutdown, sigterm_with_requests_in_flight_answers_properly_and_exits_0_promptly)
{
    /* The load runs in a helper process (it_load flood, see harness.h): its
     * client outlives the unit. */
    static hx_helper h;
    static char line[512];
    char partition[16], inflight[16], bookings[16], seats[16];
    snprintf(partition, sizeof(partition), "%u", P);
    snprintf(inflight, sizeof(inflight), "%u", IN_FLIGHT);
    snprintf(bookings, sizeof(bookings), "%u", BOOKINGS);
    snprintf(seats, sizeof(seats), "%u", SEATS);
    char *argv[] = {(char *)hx_load_bin(), "flood",  unit.rep_url, partition, inflight,
                    bookings,              seats,    "12345",      NULL};
    hx_helper_start(&h, argv);
    cr_assert(hx_helper_line(&h, line, sizeof(line), 10000) && strcmp(line, "ready") == 0,
              "it_load did not start: %s", line);
    uint32_t replies = 0, in_flight = 0;
    int64_t limit = hx_now_ms() + 20000;
    while (replies < 20000 && hx_now_ms() < limit && hx_helper_line(&h, line, sizeof(line), 5000)) {
        cr_assert_eq(sscanf(line, "progress %u %u", &replies, &in_flight), 2, "it_load: %s", line);
    }
    cr_assert(replies >= 1000, "the load never got going (%u replies)", replies);
    cr_assert(in_flight > IN_FLIGHT / 2, "only %u requests in flight", in_flight);

    int64_t elapsed;
    int status = hx_stop(&unit, &elapsed);
    client = NULL; /* closed by hx_stop */
    hx_helper_stop(&h);
    flood_result r = {0};
    bool reported = false;
    while (!reported && hx_helper_line(&h, line, sizeof(line), 15000)) {
        reported = sscanf(line, "result %u %u %u %u %u %u %u %u", &r.sent, &r.replies,
                          &r.no_reply, &r.held, &r.improper, &r.improper_type, &r.improper_code,
                          &r.unavailable) == 8;
    }
    cr_assert(reported, "it_load did not report");
    int helper_status = hx_helper_wait(&h, 5000);
    cr_assert(WIFEXITED(helper_status) && WEXITSTATUS(helper_status) == 0, "it_load: %#x",
              helper_status);
    cr_log_info("SIGTERM after %u replies: exit after %lld ms; %u replies in all, %u without "
                "reply, %u unavailable (stopping), %u holds acknowledged",
                replies, (long long)elapsed, r.replies, r.no_reply, r.unavailable, r.held);
    cr_assert_eq(r.improper, 0u, "%u improper replies; first: %s answered %s", r.improper,
                 tg_wire_type_name((tg_wire_type)r.improper_type),
                 tg_errname((tg_err)r.improper_code));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        hx_dump_log(&unit);
    }
    cr_assert(WIFEXITED(status), "the unit did not exit (status %#x)", status);
    cr_assert_eq(WEXITSTATUS(status), 0, "exit status %d", WEXITSTATUS(status));
    cr_assert(elapsed <= PROMPT_EXIT_MS, "the exit took %lld ms after SIGTERM",
              (long long)elapsed);

    /* The acknowledged holds are all there; unanswered ones may be too. */
    hx_start(&unit);
    client = hx_client(&unit, P, 4);
    tg_msg av;
    static tg_wire_counts rows[10];
    hx_availability(client, P, &av, rows);
    uint32_t selected = av.availability_ok.totals.by_state[TG_SEAT_SELECTED];
    cr_assert_eq(hx_counts_sum(&av.availability_ok.totals), SEATS);
    cr_assert(selected >= r.held && selected <= r.held + r.no_reply,
              "%u seats held, %u holds acknowledged, %u requests unanswered", selected, r.held,
              r.no_reply);
    hx_stop_ok(&unit);
}

Test(shutdown, sigterm_and_sigint_at_rest_exit_0_at_once)
{
    int64_t elapsed;
    int status = hx_stop(&unit, &elapsed);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x", status);
    cr_assert(elapsed < 1000, "SIGTERM at rest took %lld ms", (long long)elapsed);

    client = NULL; /* closed by hx_stop */
    hx_start(&unit);
    int64_t t0 = hx_now_ms();
    kill(unit.pid, SIGINT);
    cr_assert(hx_wait_exit(unit.pid, HX_STOP_TIMEOUT_MS, &status), "SIGINT did not end the unit");
    unit.pid = 0;
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x", status);
    cr_assert(hx_now_ms() - t0 < 1000, "SIGINT at rest took %lld ms",
              (long long)(hx_now_ms() - t0));
}
