/*
 * config.c — tixgrid-sandbox-pay's settings: defaults, then TIXGRID_*
 * variables, then flags.  A bad value is one line on stderr and exit 64.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "sandbox.h"
#include "tixgrid/cli.h"

#define PROGRAM          "tixgrid-sandbox-pay"
#define SECRET_BYTES_MIN 16u

static const char *const mode_names[] = {"normal", "fail", "delay", "timeout", "decline"};

int sbx_mode_parse(const char *name)
{
    for (int i = 0; i < (int)(sizeof(mode_names) / sizeof(mode_names[0])); i++) {
        if (strcmp(name, mode_names[i]) == 0) {
            return i;
        }
    }
    return -1;
}

const char *sbx_mode_name(sbx_mode mode)
{
    return (unsigned)mode < sizeof(mode_names) / sizeof(mode_names[0]) ? mode_names[mode]
                                                                       : "normal";
}

static const char usage[] =
    "usage: " PROGRAM " [options]\n\n"
    "A payment provider for development and tests: the REST API tixgrid-gateway calls, a page\n"
    "where the buyer approves or declines, and webhooks signed with HMAC-SHA256.\n\n"
    "  --listen HOST:PORT     TIXGRID_SANDBOX_LISTEN       address (127.0.0.1:8090)\n"
    "  --public-url URL       TIXGRID_SANDBOX_PUBLIC_URL   how browsers reach the page\n"
    "                                                      (http://HOST:PORT)\n"
    "  --secret S             TIXGRID_PAYMENT_WEBHOOK_SECRET  webhook key, 16..256 bytes "
    "(required;\n"
    "                                                      prefer the variable)\n"
    "  --secret-file FILE     TIXGRID_PAYMENT_WEBHOOK_SECRET_FILE  the secret is FILE's first line\n"
    "  --mode M               TIXGRID_SANDBOX_MODE         normal|fail|delay|timeout|decline\n"
    "  --delay-ms N           TIXGRID_SANDBOX_DELAY_MS     the API's delay in delay mode (2000)\n"
    "  --webhook-attempts N   TIXGRID_SANDBOX_WEBHOOK_ATTEMPTS  per webhook, 1..20 (5)\n"
    "  --webhook-threads N    TIXGRID_SANDBOX_WEBHOOK_THREADS   webhooks sent at once, 1..64 (8)\n"
    "  --payments-max N       TIXGRID_SANDBOX_PAYMENTS_MAX  payments kept, 1..16777216 (262144);\n"
    "                                                      about 1.8 KB each\n\n"
    "POST /control {\"mode\": M, \"delay_ms\": N} changes the mode while it runs.\n"
    "Exit status: 0 after SIGTERM/SIGINT, 64 bad flags, 69 the port is taken, 1 other.\n";

static int set(sbx_config *cfg, const char *name, const char *v);

/* The secret from a file (its first line), so that it never shows in ps. */
static int secret_file(sbx_config *cfg, const char *path)
{
    FILE *f = fopen(path, "r");
    char line[SBX_SECRET_BYTES_MAX + 2] = "";
    bool read = f != NULL && fgets(line, sizeof(line), f) != NULL;
    if (f != NULL) {
        fclose(f);
    }
    if (!read) {
        return tg_cli_usage_error(PROGRAM, "--secret-file: cannot read %s", path);
    }
    line[strcspn(line, "\r\n")] = '\0';
    return set(cfg, "secret", line);
}

static int set(sbx_config *cfg, const char *name, const char *v)
{
    uint64_t n;
    if (strcmp(name, "listen") == 0) {
        const char *colon = strrchr(v, ':');
        size_t host = colon != NULL ? (size_t)(colon - v) : 0;
        if (colon == NULL || host == 0 || host >= sizeof(cfg->listen_host) ||
            tg_parse_u64(colon + 1, 1, 65535, &n) != TG_OK) {
            return tg_cli_usage_error(PROGRAM, "--listen: expected HOST:PORT, got \"%s\"", v);
        }
        memcpy(cfg->listen_host, v, host);
        cfg->listen_host[host] = '\0';
        cfg->listen_port = (uint16_t)n;
    } else if (strcmp(name, "public-url") == 0) {
        if ((strncmp(v, "http://", 7) != 0 && strncmp(v, "https://", 8) != 0) ||
            strlen(v) >= sizeof(cfg->public_url)) {
            return tg_cli_usage_error(PROGRAM, "--public-url: expected an http(s) URL");
        }
        snprintf(cfg->public_url, sizeof(cfg->public_url), "%s", v);
    } else if (strcmp(name, "secret") == 0) {
        if (strlen(v) < SECRET_BYTES_MIN || strlen(v) > SBX_SECRET_BYTES_MAX) {
            return tg_cli_usage_error(PROGRAM, "the webhook secret must have %u..%u bytes",
                                      SECRET_BYTES_MIN, SBX_SECRET_BYTES_MAX);
        }
        snprintf(cfg->secret, sizeof(cfg->secret), "%s", v);
    } else if (strcmp(name, "secret-file") == 0) {
        return secret_file(cfg, v);
    } else if (strcmp(name, "mode") == 0) {
        if (sbx_mode_parse(v) < 0) {
            return tg_cli_usage_error(PROGRAM,
                                      "--mode: one of normal, fail, delay, timeout, "
                                      "decline (got \"%s\")",
                                      v);
        }
        cfg->mode = (sbx_mode)sbx_mode_parse(v);
    } else if (strcmp(name, "delay-ms") == 0 || strcmp(name, "webhook-attempts") == 0) {
        bool delay = strcmp(name, "delay-ms") == 0;
        if (tg_parse_u64(v, delay ? 0 : 1, delay ? 600000 : 20, &n) != TG_OK) {
            return tg_cli_usage_error(PROGRAM, "--%s: expected a whole number in %s", name,
                                      delay ? "0..600000" : "1..20");
        }
        *(delay ? &cfg->delay_ms : &cfg->webhook_attempts) = (uint32_t)n;
    } else if (strcmp(name, "webhook-threads") == 0) {
        if (tg_parse_u64(v, 1, SBX_WEBHOOK_THREADS_MAX, &n) != TG_OK) {
            return tg_cli_usage_error(PROGRAM, "--webhook-threads: expected a whole number in 1..%u",
                                      SBX_WEBHOOK_THREADS_MAX);
        }
        cfg->webhook_threads = (uint32_t)n;
    } else if (strcmp(name, "payments-max") == 0) {
        if (tg_parse_u64(v, 1, SBX_PAYMENTS_LIMIT, &n) != TG_OK) {
            return tg_cli_usage_error(PROGRAM, "--payments-max: expected a whole number in 1..%u",
                                      SBX_PAYMENTS_LIMIT);
        }
        cfg->payments_max = (uint32_t)n;
    }
    return -1;
}

static const struct {
    const char *flag, *env;
} settings[] = {
    {"listen", "TIXGRID_SANDBOX_LISTEN"},
    {"public-url", "TIXGRID_SANDBOX_PUBLIC_URL"},
    {"secret", "TIXGRID_PAYMENT_WEBHOOK_SECRET"},
    {"secret-file", "TIXGRID_PAYMENT_WEBHOOK_SECRET_FILE"},
    {"mode", "TIXGRID_SANDBOX_MODE"},
    {"delay-ms", "TIXGRID_SANDBOX_DELAY_MS"},
    {"webhook-attempts", "TIXGRID_SANDBOX_WEBHOOK_ATTEMPTS"},
    {"webhook-threads", "TIXGRID_SANDBOX_WEBHOOK_THREADS"},
    {"payments-max", "TIXGRID_SANDBOX_PAYMENTS_MAX"},
};
#define SETTINGS_COUNT (sizeof(settings) / sizeof(settings[0]))

static int from_flags(sbx_config *cfg, int argc, char **argv)
{
    struct option opts[SETTINGS_COUNT + 1];
    for (size_t i = 0; i < SETTINGS_COUNT; i++) {
        opts[i] = (struct option){settings[i].flag, required_argument, NULL, 0};
    }
    opts[SETTINGS_COUNT] = (struct option){0};
    optind = 1;
    opterr = 0;
    int opt, index = 0, rc = -1;
    while (rc < 0 && (opt = getopt_long(argc, argv, "", opts, &index)) != -1) {
        rc = opt == 0 ? set(cfg, settings[index].flag, optarg)
                      : tg_cli_usage_error(PROGRAM, "unknown or incomplete option; see --help");
    }
    if (rc < 0 && optind < argc) {
        rc = tg_cli_usage_error(PROGRAM, "unexpected argument \"%s\"; see --help", argv[optind]);
    }
    return rc;
}

int sbx_config_parse(sbx_config *cfg, int argc, char **argv)
{
    int exit_code;
    if (tg_cli_standard(argc, argv, PROGRAM, usage, &exit_code)) {
        return exit_code;
    }
    *cfg = (sbx_config){.listen_port = 8090,
                        .delay_ms = 2000,
                        .webhook_attempts = 5,
                        .webhook_threads = SBX_WEBHOOK_THREADS,
                        .payments_max = SBX_PAYMENTS_MAX};
    strcpy(cfg->listen_host, "127.0.0.1");
    int rc = -1;
    for (size_t i = 0; i < SETTINGS_COUNT && rc < 0; i++) {
        const char *v = tg_env(settings[i].env, NULL);
        rc = v != NULL ? set(cfg, settings[i].flag, v) : -1;
    }
    rc = rc < 0 ? from_flags(cfg, argc, argv) : rc;
    if (rc < 0 && cfg->secret[0] == '\0') {
        rc = tg_cli_usage_error(PROGRAM, "the webhook secret is required: set "
                                         "TIXGRID_PAYMENT_WEBHOOK_SECRET (16..256 bytes)");
    }
    if (rc < 0 && cfg->public_url[0] == '\0') {
        snprintf(cfg->public_url, sizeof(cfg->public_url), "http://%s:%u",
                 strcmp(cfg->listen_host, "0.0.0.0") == 0 ? "127.0.0.1" : cfg->listen_host,
                 cfg->listen_port);
    }
    return rc;
}
