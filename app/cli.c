/* cli.c - strict option parsing, progress display, clocks, and small helpers of the trainers. */
#include "app/cli.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "models/backend_cuda.h"
#include "sim/rng.h"

int cli_int(const char *cmd, const char *flag, const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "egoworld %s: %s: expected an integer in [%ld, %ld], got '%s'\n", cmd, flag, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_u64(const char *cmd, const char *flag, const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-') {
        fprintf(stderr, "egoworld %s: %s: expected a non-negative integer, got '%s'\n", cmd, flag, s);
        return -1;
    }
    *out = (uint64_t)v;
    return 0;
}

int cli_float(const char *cmd, const char *flag, const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi) {
        fprintf(stderr, "egoworld %s: %s: expected a number in [%g, %g], got '%s'\n", cmd, flag, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

const char *cli_value(const char *cmd, int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        fprintf(stderr, "egoworld %s: %s needs a value\n", cmd, argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

int cli_unknown(const char *cmd, const char *opt) {
    fprintf(stderr, "egoworld %s: unknown option '%s' (see egoworld %s --help)\n", cmd, opt, cmd);
    return 2;
}

int cli_device(const char *cmd, int argc, char **argv, int *i, int *cuda) {
    const char *flag = argv[*i];
    const char *v = cli_value(cmd, argc, argv, i);
    if (!v) return -1;
    if (!strcmp(v, "cpu") || !strcmp(v, "cuda")) {
        *cuda = !strcmp(v, "cuda");
        return 0;
    }
    fprintf(stderr, "egoworld %s: %s: expected cpu or cuda, got '%s'\n", cmd, flag, v);
    return -1;
}

int cli_device_check(const char *cmd, int cuda) {
    char why[256] = "";
    if (!cuda || ew_cuda_probe(0, why, sizeof why) == 0) return 0;
    fprintf(stderr, "egoworld %s: --device cuda: %s\n", cmd, why);
    return -1;
}

ew_backend *cli_backend(const char *cmd, int cuda, int threads) {
    if (!cuda) {
        ew_backend *be = ew_backend_cpu_create(threads);
        if (!be) fprintf(stderr, "egoworld %s: out of memory\n", cmd);
        return be;
    }
    char why[256] = "";
    ew_backend *be = ew_backend_cuda_create(NULL, why, sizeof why);
    if (!be) fprintf(stderr, "egoworld %s: --device cuda: %s\n", cmd, why);
    return be;
}

double cli_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int cli_cores(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

void cli_progress_begin(cli_progress *p, const char *what, long total) {
    p->what = what;
    p->total = total > 0 ? total : 1;
    p->last_pct = -1;
    p->t0 = cli_now();
    p->tty = isatty(2);
}

void cli_progress_update(cli_progress *p, long done, const char *extra) {
    long pct = done * 100 / p->total;
    if (!p->tty && pct / 10 == p->last_pct / 10 && p->last_pct >= 0) return;
    if (p->tty && pct == p->last_pct) return;
    p->last_pct = pct;
    double el = cli_now() - p->t0;
    double eta = done > 0 ? el * (double)(p->total - done) / (double)done : 0.0;
    fprintf(stderr, "%s%s %3ld%% %ld/%ld  %.1fs elapsed  ETA %.1fs%s%s%s", p->tty ? "\r" : "", p->what, pct,
            done, p->total, el, eta, extra ? "  " : "", extra ? extra : "", p->tty ? "   " : "\n");
}

void cli_progress_end(cli_progress *p) {
    if (p->tty) fputc('\n', stderr);
}

char *cli_path_with(const char *out, const char *suffix) {
    size_t n = strlen(out);
    const char *ext = ".safetensors";
    size_t el = strlen(ext);
    if (n > el && !strcmp(out + n - el, ext)) n -= el;
    char *p = malloc(n + strlen(suffix) + 1);
    if (!p) return NULL;
    memcpy(p, out, n);
    strcpy(p + n, suffix);
    return p;
}

uint64_t cli_mix64(uint64_t x) { return ew_splitmix64(&x); }

int cli_cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}
