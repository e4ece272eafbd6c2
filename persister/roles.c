/*
 * roles.c — `tixgrid-persister user-role EMAIL ROLE`: an administrator's
 * way to make an account a buyer, an organizer or an admin from the shell
 * (the first admin of a site cannot be made over HTTP: nobody could call
 * the admin route yet).  The gateway's PATCH /api/admin/users/role does
 * the same for admins over HTTP.
 *
 * The account is looked up like a login, case-insensitively (the unique
 * index users_email_lower_key).  The new role takes effect at the user's
 * next login: tokens carry the role until they expire
 * (gateway/README.md, "Authentication").
 */
#include "persister.h"

#include "tixgrid/log.h"

#include <inttypes.h>
#include <string.h>

static bool role_valid(const char *role)
{
    return strcmp(role, "buyer") == 0 || strcmp(role, "organizer") == 0 ||
           strcmp(role, "admin") == 0;
}

int pst_cmd_user_role(pst_context *ctx, int argc, char **argv)
{
    int code = pst_args_positional(argc, argv, 2, 2);
    if (code != 0) {
        return code;
    }
    if (strlen(argv[1]) == 0 || strlen(argv[1]) > 254 || strchr(argv[1], '@') == NULL) {
        return tg_cli_usage_error(PST_PROGRAM, "user-role: EMAIL must be an e-mail address");
    }
    if (!role_valid(argv[2])) {
        return tg_cli_usage_error(PST_PROGRAM, "user-role: ROLE must be buyer, organizer or admin");
    }
    if ((code = pst_context_connect(ctx)) != 0) {
        return code;
    }
    const char *const params[2] = {argv[1], argv[2]};
    int64_t id = -1;
    tg_err err = pst_db_query_i64(ctx->db, "set the user's role",
                                  "WITH u AS (UPDATE users SET role = $2"
                                  " WHERE lower(email) = lower($1) RETURNING id)"
                                  " SELECT (SELECT id FROM u)",
                                  2, params, -1, &id);
    if (err != TG_OK) {
        return pst_exit_code(ctx->db, err);
    }
    if (id < 0) {
        tg_log_error("user-role: no account has the e-mail %s", argv[1]);
        return TG_EXIT_FAILURE;
    }
    tg_log_info("user-role: user %" PRId64 " (%s) is now %s", id, argv[1], argv[2]);
    return TG_EXIT_OK;
}
