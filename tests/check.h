/* check.h - the minimal assertion kit every egoworld test uses.
 *
 * CHECK(cond, fmt, ...) records a pass or a failure (with file:line and a message) and goes
 * on; CHECK_NEAR(a, b, tol) compares doubles. check_done() prints the closing line
 * "N passed, N failed" (", N skipped" when any) and returns the process exit status.
 * A test that cannot run here (no GPU, no python3) calls check_skip(reason) and counts as
 * skipped, never as passed: a test with only skips exits 77, which CTest reports as skipped. Header-only: each test is one translation unit.
 */
#ifndef EW_CHECK_H
#define EW_CHECK_H

#include <math.h>
#include <stdio.h>

typedef struct { int passed, failed, skipped; } check_state;
static check_state check_g; /* one test program = one translation unit = one tally */

#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        if (cond) {                                                             \
            check_g.passed++;                                                   \
        } else {                                                                \
            check_g.failed++;                                                   \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);     \
            fprintf(stderr, __VA_ARGS__);                                       \
            fputc('\n', stderr);                                                \
        }                                                                       \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                   \
    do {                                                                        \
        double check_a_ = (double)(a), check_b_ = (double)(b);                  \
        CHECK(fabs(check_a_ - check_b_) <= (double)(tol), "%s = %.9g, %s = %.9g, tol %.3g", \
              #a, check_a_, #b, check_b_, (double)(tol));                        \
    } while (0)

static inline void check_skip(const char *why) {
    check_g.skipped++;
    printf("SKIP: %s\n", why);
}

static inline int check_done(void) {
    if (check_g.skipped)
        printf("%d passed, %d failed, %d skipped\n", check_g.passed, check_g.failed, check_g.skipped);
    else
        printf("%d passed, %d failed\n", check_g.passed, check_g.failed);
    if (check_g.failed) return 1;
    return (check_g.skipped && !check_g.passed) ? 77 : 0; /* 77: CTest SKIP_RETURN_CODE */
}

#endif
