/*
 * config_test.c — the gateway's settings: defaults, variables, flags, and
 * every bad value refused with exit 64 before anything starts.
 */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "tixgrid/cli.h"

static int parse(gw_config *cfg, int argc, const char **argv)
{
    return gw_config_parse(cfg, argc, (char **)argv);
}

static void env_clear(void)
{
    unsetenv("TIXGRID_DB");
    unsetenv("TIXGRID_GATEWAY_LISTEN");
    unsetenv("TIXGRID_GATEWAY_THREADS");
    unsetenv("TIXGRID_ALLOW_RESET");
    unsetenv("TIXGRID_PAYMENT_PROVIDER_URL");
    unsetenv("TIXGRID_PAYMENT_WEBHOOK_SECRET");
    unsetenv("TIXGRID_GATEWAY_PUBLIC_URL");
    unsetenv("TIXGRID_GATEWAY_STATIC");
    unsetenv("TIXGRID_GATEWAY_CPUS");
}

TestSuite(gateway_config, .init = env_clear);

Test(gateway_config, defaults_apply_when_only_the_database_is_given)
{
    gw_config cfg;
    const char *argv[] = {"tixgrid-gateway", "--db", "dbname=x"};
    cr_assert_eq(parse(&cfg, 3, argv), -1);
    cr_assert_str_eq(cfg.listen_host, "0.0.0.0");
    cr_assert_eq(cfg.listen_port, 8080);
    cr_assert_str_eq(cfg.db, "dbname=x");
    cr_assert_eq(cfg.body_bytes_max, 65536);
    cr_assert_eq(cfg.inflight_max, 4096);
    cr_assert_eq(cfg.jwt_ttl_s, 3600);
    cr_assert(!cfg.allow_reset);
}

Test(gateway_config, flags_win_over_variables)
{
    setenv("TIXGRID_DB", "dbname=env", 1);
    setenv("TIXGRID_GATEWAY_THREADS", "3", 1);
    gw_config cfg;
    const char *argv[] = {"tixgrid-gateway", "--threads", "5", "--listen", "[::1]:9000",
                          "--allow-reset"};
    cr_assert_eq(parse(&cfg, 6, argv), -1);
    cr_assert_str_eq(cfg.db, "dbname=env");
    cr_assert_eq(cfg.threads, 5);
    cr_assert_str_eq(cfg.listen_host, "::1");
    cr_assert_eq(cfg.listen_port, 9000);
    cr_assert(cfg.allow_reset);
}

Test(gateway_config, a_missing_database_is_a_usage_error, .init = cr_redirect_stderr)
{
    env_clear();
    gw_config cfg;
    const char *argv[] = {"tixgrid-gateway"};
    cr_assert_eq(parse(&cfg, 1, argv), TG_EXIT_USAGE);
}

Test(gateway_config, out_of_range_numbers_are_usage_errors, .init = cr_redirect_stderr)
{
    env_clear();
    const char *bad[][2] = {
        {"--threads", "65"},           {"--body-bytes-max", "100"},
        {"--header-bytes-max", "1000000"}, {"--inflight-max", "0"},
        {"--jwt-ttl-s", "-1"},         {"--basic-cache-entries", "99999999"},
        {"--grid-timeout-ms", "1e3"},  {"--listen", "localhost"},
        {"--listen", "1.2.3.4:0"},     {"--listen", "1.2.3.4:70000"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        gw_config cfg;
        const char *argv[] = {"tixgrid-gateway", "--db", "x", bad[i][0], bad[i][1]};
        cr_assert_eq(parse(&cfg, 5, argv), TG_EXIT_USAGE, "%s %s", bad[i][0], bad[i][1]);
    }
}

Test(gateway_config, a_bad_variable_is_a_usage_error, .init = cr_redirect_stderr)
{
    env_clear();
    setenv("TIXGRID_GATEWAY_THREADS", "many", 1);
    gw_config cfg;
    const char *argv[] = {"tixgrid-gateway", "--db", "x"};
    cr_assert_eq(parse(&cfg, 3, argv), TG_EXIT_USAGE);
}

Test(gateway_config, unknown_flags_and_stray_arguments_are_usage_errors,
     .init = cr_redirect_stderr)
{
    env_clear();
    gw_config cfg;
    const char *unknown[] = {"tixgrid-gateway", "--db", "x", "--no-such-flag"};
    cr_assert_eq(parse(&cfg, 4, unknown), TG_EXIT_USAGE);
    const char *stray[] = {"tixgrid-gateway", "--db", "x", "extra"};
    cr_assert_eq(parse(&cfg, 4, stray), TG_EXIT_USAGE);
    const char *incomplete[] = {"tixgrid-gateway", "--db"};
    cr_assert_eq(parse(&cfg, 2, incomplete), TG_EXIT_USAGE);
}

Test(gateway_config, cpus_take_a_list_from_the_flag_or_the_variable)
{
    gw_config cfg;
    const char *none[] = {"tixgrid-gateway", "--db", "x"};
    cr_assert_eq(parse(&cfg, 3, none), -1);
    cr_assert_str_eq(cfg.cpus_text, "", "no --cpus: any CPU");
    setenv("TIXGRID_GATEWAY_CPUS", "1", 1);
    const char *argv[] = {"tixgrid-gateway", "--db", "x", "--cpus", "0,2-3,7"};
    cr_assert_eq(parse(&cfg, 5, argv), -1);
    cr_assert_str_eq(cfg.cpus_text, "0,2-3,7");
    cr_assert_eq(CPU_COUNT(&cfg.cpus), 4);
    cr_assert(CPU_ISSET(0, &cfg.cpus) && !CPU_ISSET(1, &cfg.cpus) && CPU_ISSET(2, &cfg.cpus) &&
              CPU_ISSET(3, &cfg.cpus) && CPU_ISSET(7, &cfg.cpus));
    cr_assert_eq(parse(&cfg, 3, none), -1);
    cr_assert_str_eq(cfg.cpus_text, "1", "the variable");
    cr_assert(CPU_ISSET(1, &cfg.cpus) && CPU_COUNT(&cfg.cpus) == 1);
}

Test(gateway_config, bad_cpu_lists_are_usage_errors, .init = cr_redirect_stderr)
{
    env_clear();
    const char *bad[] = {"", "x", "1-0", "0,", ",1", "0 1", "-1", "1024", "0-1024", "0x1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        gw_config cfg;
        const char *argv[] = {"tixgrid-gateway", "--db", "x", "--cpus", bad[i]};
        cr_assert_eq(parse(&cfg, 5, argv), TG_EXIT_USAGE, "--cpus '%s'", bad[i]);
    }
    setenv("TIXGRID_GATEWAY_CPUS", "0-", 1);
    gw_config cfg;
    const char *argv[] = {"tixgrid-gateway", "--db", "x"};
    cr_assert_eq(parse(&cfg, 3, argv), TG_EXIT_USAGE, "TIXGRID_GATEWAY_CPUS=0-");
}

Test(gateway_config, help_and_version_exit_zero, .init = cr_redirect_stdout)
{
    gw_config cfg;
    const char *help[] = {"tixgrid-gateway", "--help"};
    cr_assert_eq(parse(&cfg, 2, help), TG_EXIT_OK);
    const char *version[] = {"tixgrid-gateway", "--version"};
    cr_assert_eq(parse(&cfg, 2, version), TG_EXIT_OK);
}

Test(gateway_config, payments_take_a_provider_url_a_secret_and_the_breaker_settings)
{
    gw_config cfg;
    const char *none[] = {"tixgrid-gateway", "--db", "dbname=x", "--listen", "0.0.0.0:9000"};
    cr_assert_eq(parse(&cfg, 5, none), -1);
    cr_assert_str_eq(cfg.payment_provider_url, "", "no provider unless configured");
    cr_assert_str_eq(cfg.public_url, "http://127.0.0.1:9000");
    cr_assert_eq(cfg.breaker_threshold, 5);
    cr_assert_eq(cfg.breaker_timeout_s, 60);
    cr_assert_eq(cfg.payment_timeout_ms, 15000);
    cr_assert_eq(cfg.refund_retry_s, 30);
    setenv("TIXGRID_PAYMENT_WEBHOOK_SECRET", "0123456789abcdef-secret", 1);
    const char *argv[] = {"tixgrid-gateway",
                          "--db",
                          "dbname=x",
                          "--payment-provider-url",
                          "http://127.0.0.1:8090/",
                          "--breaker-threshold",
                          "3",
                          "--breaker-timeout-s",
                          "2",
                          "--public-url",
                          "https://tix.example"};
    cr_assert_eq(parse(&cfg, 11, argv), -1);
    cr_assert_str_eq(cfg.payment_provider_url, "http://127.0.0.1:8090", "no trailing slash");
    cr_assert_str_eq(cfg.payment_webhook_secret, "0123456789abcdef-secret");
    cr_assert_str_eq(cfg.public_url, "https://tix.example");
    cr_assert_eq(cfg.breaker_threshold, 3);
    cr_assert_eq(cfg.breaker_timeout_s, 2);
}

Test(gateway_config, a_provider_without_a_good_secret_or_a_bad_url_is_a_usage_error,
     .init = cr_redirect_stderr)
{
    env_clear();
    gw_config cfg;
    const char *no_secret[] = {"tixgrid-gateway", "--db", "dbname=x", "--payment-provider-url",
                               "http://127.0.0.1:8090"};
    cr_assert_eq(parse(&cfg, 5, no_secret), TG_EXIT_USAGE);
    const char *short_secret[] = {"tixgrid-gateway", "--db", "dbname=x", "--payment-webhook-secret",
                                  "short"};
    cr_assert_eq(parse(&cfg, 5, short_secret), TG_EXIT_USAGE);
    const char *bad_url[] = {"tixgrid-gateway", "--db", "dbname=x", "--payment-provider-url",
                             "ftp://x"};
    cr_assert_eq(parse(&cfg, 5, bad_url), TG_EXIT_USAGE);
    const char *zero[] = {"tixgrid-gateway", "--db", "dbname=x", "--breaker-threshold", "0"};
    cr_assert_eq(parse(&cfg, 5, zero), TG_EXIT_USAGE);
}

Test(gateway_config, a_static_dir_is_a_directory_or_none)
{
    gw_config cfg;
    const char *named[] = {"tixgrid-gateway", "--db", "x", "--static-dir", "/tmp"};
    cr_assert_eq(parse(&cfg, 5, named), -1);
    cr_assert_str_eq(cfg.static_dir, "/tmp");
    const char *older[] = {"tixgrid-gateway", "--db", "x", "--static", "/tmp"};
    cr_assert_eq(parse(&cfg, 5, older), -1);
    cr_assert_str_eq(cfg.static_dir, "/tmp");
    const char *none[] = {"tixgrid-gateway", "--db", "x", "--static-dir", "none"};
    cr_assert_eq(parse(&cfg, 5, none), -1);
    cr_assert_str_eq(cfg.static_dir, "");
    /* This test binary lives outside the gateway's build folder and has no
     * share/tixgrid/www beside it: no page is found by default. */
    const char *plain[] = {"tixgrid-gateway", "--db", "x"};
    cr_assert_eq(parse(&cfg, 3, plain), -1);
    cr_assert_str_eq(cfg.static_dir, "");
}

Test(gateway_config, a_static_dir_that_is_no_directory_is_a_usage_error,
     .init = cr_redirect_stderr)
{
    env_clear();
    gw_config cfg;
    const char *missing[] = {"tixgrid-gateway", "--db", "x", "--static-dir", "/nonexistent/www"};
    cr_assert_eq(parse(&cfg, 5, missing), TG_EXIT_USAGE);
    const char *file[] = {"tixgrid-gateway", "--db", "x", "--static-dir", "/etc/hostname"};
    cr_assert_eq(parse(&cfg, 5, file), TG_EXIT_USAGE);
    setenv("TIXGRID_GATEWAY_STATIC", "/nonexistent/www", 1);
    const char *by_env[] = {"tixgrid-gateway", "--db", "x"};
    cr_assert_eq(parse(&cfg, 3, by_env), TG_EXIT_USAGE);
}
