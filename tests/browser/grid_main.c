/*
 * grid_main.c — the private grid behind the browser tests (tests/browser/).
 *
 * The browser tests are written in JavaScript (run.mjs drives headless
 * Chromium with playwright-core), but the grid they talk to is brought up
 * exactly as the gateway's integration tests bring theirs: this one
 * Criterion test calls tests/integration/gwh.h — a private PostgreSQL with
 * the demo data, a unit holding the 100,000-seat concert and the 1,130-seat
 * hall, the drain, the payment sandbox and tixgrid-gateway serving the
 * shopper page (found by itself: gateway/www for a binary of the build
 * tree).  It then writes grid.json (the gateway's and the sandbox's URLs)
 * into $TIXGRID_BROWSER_DIR, waits until run.mjs creates the file `stop`
 * there, and stops everything, asserting that each process exits cleanly.
 *
 * Bounded: it waits for `stop` at most TIXGRID_BROWSER_GRID_S seconds
 * (default 150), so a runner that died never leaves a grid behind (gwh's
 * children also die with their test process).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gwh.h"

#define GRID_LIFETIME_S_DEFAULT 150
#define GRID_LIFETIME_S_MAX     900
#define STOP_POLL_MS            50

static void fini(void)
{
    gwh_fini_all();
}

TestSuite(browser, .fini = fini, .timeout = GRID_LIFETIME_S_MAX + 60);

static const char *browser_dir(void)
{
    const char *dir = getenv("TIXGRID_BROWSER_DIR");
    cr_assert(dir != NULL && dir[0] == '/', "TIXGRID_BROWSER_DIR must name a folder");
    return dir;
}

static long lifetime_s(void)
{
    const char *text = getenv("TIXGRID_BROWSER_GRID_S");
    long s = text != NULL ? strtol(text, NULL, 10) : GRID_LIFETIME_S_DEFAULT;
    cr_assert(s >= 1 && s <= GRID_LIFETIME_S_MAX, "TIXGRID_BROWSER_GRID_S: 1..%d",
              GRID_LIFETIME_S_MAX);
    return s;
}

/* grid.json appears whole (written aside, then renamed): the runner never
 * reads half of it. */
static void announce(const char *dir, const gwh_grid *g)
{
    char path[512], tmp[520];
    snprintf(path, sizeof(path), "%s/grid.json", dir);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    cr_assert(f != NULL, "%s: %s", tmp, strerror(errno));
    fprintf(f, "{\"gateway\": \"%s\", \"sandbox\": \"%s\", \"pid\": %ld}\n", g->gw->url,
            g->sandbox->url, (long)getpid());
    cr_assert(fclose(f) == 0 && rename(tmp, path) == 0, "%s: %s", path, strerror(errno));
}

/* Until <dir>/stop exists or the lifetime has passed; true for `stop`. */
static bool wait_for_stop(const char *dir, long seconds)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/stop", dir);
    struct timespec pause = {0, STOP_POLL_MS * 1000000L};
    for (long waited_ms = 0; waited_ms < seconds * 1000; waited_ms += STOP_POLL_MS) {
        if (access(path, F_OK) == 0) {
            return true;
        }
        nanosleep(&pause, NULL);
    }
    return false;
}

Test(browser, grid_serves_the_runner_until_it_is_done)
{
    static const char *const gateway_flags[] = {"--allow-reset", "--auth-rate", "0", NULL};
    gwh_options o = {
        .partition_count = 2,
        .partitions = {GWH_DEMO_PARTITION, GWH_HALL_PARTITION},
        .unit_of = {0, 0},
        .gateway_flags = gateway_flags,
        .sandbox = true,
    };
    const char *dir = browser_dir();
    long seconds = lifetime_s();
    gwh_grid *g = gwh_start(&o);
    announce(dir, g);
    cr_assert(wait_for_stop(dir, seconds), "the runner did not finish within %ld s", seconds);
    gwh_stop_ok(g);
}
