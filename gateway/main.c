/*
 * main.c — tixgrid-gateway: settings, start-up in dependency order, and a
 * graceful stop on SIGTERM or SIGINT.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core.h"
#include "tixgrid/cli.h"
#include "tixgrid/clock.h"
#include "tixgrid/log.h"

const gw_config *gw_config_of(gw_gateway *gw)
{
    return &gw->cfg;
}

static int open_parts(gw_gateway *gw)
{
    const gw_config *cfg = &gw->cfg;
    if (gw_auth_init() != TG_OK || curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        return TG_EXIT_FAILURE;
    }
    gw_breaker_init(&gw->breaker, cfg->breaker_threshold, cfg->breaker_timeout_s * 1000u);
    tg_err err = gw_jwt_secret_load(tg_env("TIXGRID_JWT_SECRET", NULL), cfg->data_dir, &gw->jwt);
    if (err != TG_OK) {
        return err == TG_EINVAL ? TG_EXIT_USAGE : TG_EXIT_FAILURE;
    }
    tg_client_config client_cfg = {.inflight_max = TG_CLIENT_INFLIGHT_MAX};
    if (gw_cred_cache_open(cfg->basic_cache_entries, cfg->basic_cache_ms, &gw->creds) != TG_OK ||
        gw_ratelimit_open(65536, cfg->auth_rate_per_s, cfg->auth_burst, &gw->auth_limit) !=
            TG_OK ||
        tg_client_open(&client_cfg, &gw->client) != TG_OK ||
        gw_db_pool_open(gw, &gw->db) != TG_OK || gw_audit_open(gw, &gw->audit) != TG_OK ||
        gw_map_open(gw, &gw->map) != TG_OK || gw_refunds_open(gw, &gw->refunds) != TG_OK) {
        tg_log(TG_LOG_ERROR, "start-up failed: out of memory or threads");
        return TG_EXIT_FAILURE;
    }
    return -1;
}

/* nng 1.5.2 (Debian 12) can hang for good in nng_close once a socket has
 * redialled a unit that went away (fixed in nng 1.9.0); tixgrid-pu has the
 * same guard.  Everything a stop must do — answering the requests in
 * service, writing the queued audit records — happens before or beside the
 * close, so a close that hangs past this bound only delays an exit that
 * has nothing left to do. */
#define GW_STOP_WATCHDOG_MS 15000u

static void *stop_watchdog_main(void *arg)
{
    (void)arg;
    struct timespec ts = {.tv_sec = GW_STOP_WATCHDOG_MS / 1000,
                          .tv_nsec = (long)(GW_STOP_WATCHDOG_MS % 1000) * 1000000};
    nanosleep(&ts, NULL);
    tg_log(TG_LOG_WARN, "stopping took longer than %u ms (nng close); exiting",
           GW_STOP_WATCHDOG_MS);
    _exit(TG_EXIT_OK);
}

static void stop_watchdog_start(void)
{
    pthread_t t;
    if (pthread_create(&t, NULL, stop_watchdog_main, NULL) == 0) {
        pthread_detach(t);
    }
}

/* Stops in the reverse order: loops first (no new work), then what they
 * used. */
static void close_parts(gw_gateway *gw)
{
    gw_refunds_close(gw->refunds); /* it uses the map and the audit log */
    if (gw->db != NULL) {
        gw_db_pool_close(gw->db); /* its last jobs may read the map or call units */
    }
    if (gw->map != NULL) {
        gw_map_close(gw->map);
    }
    if (gw->client != NULL) {
        tg_client_close(gw->client);
    }
    for (uint32_t i = 0; gw->workers != NULL && i < gw->worker_count; i++) {
        gw_calls_drain(&gw->workers[i]); /* frees the calls finished after the loops stopped */
        gw_snaps_close(&gw->workers[i]);
        gw_call *c = gw->workers[i].free_calls;
        while (c != NULL) {
            gw_call *next = c->next;
            free(c);
            c = next;
        }
    }
    if (gw->audit != NULL) {
        gw_audit_close(gw->audit);
    }
    gw_ratelimit_close(gw->auth_limit);
    gw_cred_cache_close(gw->creds);
}

static int serve(gw_gateway *gw)
{
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL); /* every thread made from here on inherits it */
    signal(SIGPIPE, SIG_IGN);
    int rc = open_parts(gw);
    if (rc < 0 && gw_gateway_start(gw) != TG_OK) {
        rc = TG_EXIT_UNAVAILABLE;
    }
    if (rc < 0) {
        int sig = 0;
        sigwait(&stop, &sig);
        tg_log(TG_LOG_INFO, "stopping on signal %d", sig);
        gw_gateway_stop(gw);
        stop_watchdog_start();
        rc = TG_EXIT_OK;
    }
    close_parts(gw);
    return rc;
}

int main(int argc, char **argv)
{
    static gw_gateway gw;
    int rc = gw_config_parse(&gw.cfg, argc, argv);
    if (rc >= 0) {
        return rc;
    }
    tg_log_init("gateway");
    /* Before any thread starts (nng's, libuv's, the pools'), which inherit
     * it; "one loop per core" then counts the CPUs the gateway may use. */
    if (gw.cfg.cpus_text[0] != '\0' &&
        (rc = tg_cli_pin_cpus("tixgrid-gateway", gw.cfg.cpus_text, &gw.cfg.cpus)) != 0) {
        return rc;
    }
    gw.worker_count = gw.cfg.threads > 0 ? gw.cfg.threads : tg_cpus_allowed();
    gw.started_ms = tg_now_ms();
    /* The workers' loops and h2o contexts are not torn down: nng's threads
     * may still wake a loop until the client is closed, and the process
     * exits right after.  They stay reachable from `gw` until then. */
    return serve(&gw);
}
