/*
 * main.c — tixgrid-sandbox-pay: settings, then serve until SIGTERM.
 */
#include "sandbox.h"
#include "tixgrid/log.h"

int main(int argc, char **argv)
{
    static sbx_config cfg;
    int rc = sbx_config_parse(&cfg, argc, argv);
    if (rc >= 0) {
        return rc;
    }
    tg_log_init("sandbox-pay");
    return sbx_run(&cfg);
}
