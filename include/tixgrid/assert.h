/*
 * assert.h — assertions that stay on in release builds.
 *
 * A failed TG_ASSERT means a broken invariant or corrupt shared memory: the
 * process logs what failed and where, then aborts.  It never depends on
 * NDEBUG.  Operating conditions are returned as tg_err instead (err.h).
 */
#ifndef TIXGRID_ASSERT_H
#define TIXGRID_ASSERT_H

_Noreturn void tg_panic(const char *file, int line, const char *func, const char *what);

#define TG_ASSERT(cond)                                                                            \
    do {                                                                                           \
        if (__builtin_expect(!(cond), 0)) {                                                        \
            tg_panic(__FILE__, __LINE__, __func__, #cond);                                         \
        }                                                                                          \
    } while (0)

#define TG_UNREACHABLE() tg_panic(__FILE__, __LINE__, __func__, "unreachable")

#endif
