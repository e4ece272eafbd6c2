/*
 * assert.c — the panic behind TG_ASSERT.
 *
 * Logs one JSON line at level error, then aborts so that a core dump (or the
 * sanitizer) shows the stack.  Must not allocate: it may run with a heap that
 * is already broken.
 */
#include "tixgrid/assert.h"
#include "tixgrid/log.h"

#include <stdlib.h>

void tg_panic(const char *file, int line, const char *func, const char *what)
{
    tg_log_error("assertion failed: %s (%s:%d in %s)", what, file, line, func);
    abort();
}
