/* ktest: the few macros every plain-C unit test uses.
 *
 *   static void test_split(void) { KT_CHECK(n == 3); KT_EQ_INT(a, 2); }
 *   int main(void) { KT_RUN(test_split); return KT_DONE(); }
 *
 * A failed check prints file:line and the expression and marks the current
 * test failed; KT_DONE prints "N passed, N failed" and returns the exit
 * code. A test binary with no test run fails. */
#ifndef KTEST_H
#define KTEST_H

#include <math.h>
#include <stdio.h>
#include <string.h>

static int kt_passed, kt_failed, kt_cur_failed;

#define KT_CHECK(cond)                                                              \
    do {                                                                            \
        if (!(cond)) {                                                              \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            kt_cur_failed = 1;                                                      \
        }                                                                           \
    } while (0)

#define KT_EQ_INT(a, b)                                                                 \
    do {                                                                                \
        long long kt_a = (long long)(a), kt_b = (long long)(b);                         \
        if (kt_a != kt_b) {                                                             \
            fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n", __FILE__, __LINE__, \
                    #a, #b, kt_a, kt_b);                                                \
            kt_cur_failed = 1;                                                          \
        }                                                                               \
    } while (0)

#define KT_NEAR(a, b, tol)                                                                \
    do {                                                                                  \
        double kt_a = (double)(a), kt_b = (double)(b);                                    \
        if (!(fabs(kt_a - kt_b) <= (tol))) {                                              \
            fprintf(stderr, "%s:%d: %s ~ %s failed: %.9g vs %.9g (tol %g)\n", __FILE__,     \
                    __LINE__, #a, #b, kt_a, kt_b, (double)(tol));                         \
            kt_cur_failed = 1;                                                            \
        }                                                                                 \
    } while (0)

#define KT_STR_CONTAINS(hay, needle)                                                    \
    do {                                                                                \
        const char *kt_h = (hay), *kt_n = (needle);                                     \
        if (!kt_h || !strstr(kt_h, kt_n)) {                                             \
            fprintf(stderr, "%s:%d: \"%s\" does not contain \"%s\"\n", __FILE__, __LINE__, \
                    kt_h ? kt_h : "(null)", kt_n);                                      \
            kt_cur_failed = 1;                                                          \
        }                                                                               \
    } while (0)

#define KT_RUN(fn)                                               \
    do {                                                         \
        kt_cur_failed = 0;                                       \
        fn();                                                    \
        if (kt_cur_failed) {                                     \
            kt_failed++;                                         \
            fprintf(stderr, "FAIL %s\n", #fn);                   \
        } else {                                                 \
            kt_passed++;                                         \
            fprintf(stderr, "ok   %s\n", #fn);                   \
        }                                                        \
    } while (0)

#define KT_DONE() \
    (printf("%d passed, %d failed\n", kt_passed, kt_failed), (kt_failed || !kt_passed) ? 1 : 0)

#endif
