/* test_backend_parity.c - the CUDA backend against the CPU reference (like ggml's
 * test-backend-ops): every table entry, every op of ops.h forward and backward, and a whole
 * (tiny) world-model training step, on both backends, with per-op tolerances.
 *
 * Tolerances are relative to the largest magnitude of the reference result:
 * max |dut - ref| <= rtol * (max |ref| + 1e-6). Exact ops (copies, ReLU, scaling) get 1e-6,
 * transcendental ones 4e-6 (the device's expf/tanhf differ by an ulp or two), sums, GEMMs and
 * convolutions 2e-5 (float accumulation in another order, FMA), whole training step 2e-3.
 *
 * Without a CUDA build or device: prints "SKIP: no CUDA device (...)" and exits 77.
 * EW_PARITY_SELFTEST=1 runs the same checks with the CPU backend (2 threads) behind a
 * forwarding "device" backend whose memory is malloc'd: it exercises this harness and the
 * device-memory paths of the graph and the model (separate data arena, copies on wrap,
 * parameters moved, ops.c's calls of the optional entries fill, add_channels, copy_rows,
 * scale_groups, mse, mse_bwd, adam and sumsq, written here from their contract, the optimizer
 * on the device path) without a GPU; it is not a
 * CUDA result.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/backend_cuda.h"
#include "models/fm.h"
#include "models/ops.h"
#include "models/track.h"
#include "tests/check.h"
#include "tests/test_fm_util.h"

/* ---- a forwarding device backend for the self-test ---------------------------------- */
typedef struct {
    ew_backend base;
    ew_backend *in;
} fwd_backend;

static const ew_backend *IN(const ew_backend *be) { return ((const fwd_backend *)be)->in; }
static void f_gemm(const ew_backend *be, int ta, int tb, int m, int n, int k, float al, const float *a, int lda,
                   const float *b, int ldb, float bt, float *c, int ldc) {
    IN(be)->gemm(IN(be), ta, tb, m, n, k, al, a, lda, b, ldb, bt, c, ldc);
}
static size_t f_ws(const ew_backend *be, const ew_conv_desc *d) { return IN(be)->conv_workspace(IN(be), d); }
static void f_cf(const ew_backend *be, const ew_conv_desc *d, const float *x, const float *w, const float *b, float *y,
                 int acc, float *ws) {
    IN(be)->conv_fwd(IN(be), d, x, w, b, y, acc, ws);
}
static void f_cbd(const ew_backend *be, const ew_conv_desc *d, const float *dy, const float *w, float *dx, int acc,
                  float *ws) {
    IN(be)->conv_bwd_data(IN(be), d, dy, w, dx, acc, ws);
}
static void f_cbw(const ew_backend *be, const ew_conv_desc *d, const float *x, const float *dy, float *dw, float *ws) {
    IN(be)->conv_bwd_weight(IN(be), d, x, dy, dw, ws);
}
static void f_un(const ew_backend *be, ew_unary_op op, float al, size_t n, const float *x, float *y) {
    IN(be)->unary(IN(be), op, al, n, x, y);
}
static void f_unb(const ew_backend *be, ew_unary_op op, float al, size_t n, const float *x, const float *y,
                  const float *dy, float *dx) {
    IN(be)->unary_bwd(IN(be), op, al, n, x, y, dy, dx);
}
static void f_unbs(const ew_backend *be, ew_unary_op op, float al, size_t n, const float *x, const float *y,
                   const float *dy, float *dx) {
    IN(be)->unary_bwd_set(IN(be), op, al, n, x, y, dy, dx);
}
static void f_bin(const ew_backend *be, ew_binary_op op, size_t n, const float *a, const float *b, float *y) {
    IN(be)->binary(IN(be), op, n, a, b, y);
}
static void f_binb(const ew_backend *be, ew_binary_op op, size_t n, const float *a, const float *b, const float *dy,
                   float *da, float *db) {
    IN(be)->binary_bwd(IN(be), op, n, a, b, dy, da, db);
}
static void f_axpy(const ew_backend *be, size_t n, float al, const float *x, float *y) {
    IN(be)->axpy(IN(be), n, al, x, y);
}
static void f_sum(const ew_backend *be, int r, int ch, int in, const float *x, float *o, int acc) {
    IN(be)->sum_channels(IN(be), r, ch, in, x, o, acc);
}
/* The optional data-movement entries, written here from their contract in backend.h (the CPU
 * backend has none): the self-test then runs ops.c's calls of them. */
static void f_fill(const ew_backend *be, size_t n, float v, float *y) {
    (void)be;
    for (size_t i = 0; i < n; i++) y[i] = v;
}
static void f_addch(const ew_backend *be, int rows, int ch, size_t inner, const float *b, float *y) {
    (void)be;
    for (size_t t = 0; t < (size_t)rows * (size_t)ch * inner; t++) y[t] += b[(t / inner) % (size_t)ch];
}
static void f_copy(const ew_backend *be, size_t rows, size_t len, const float *src, size_t ss, float *dst, size_t ds,
                   int acc) {
    (void)be;
    for (size_t r = 0; r < rows; r++)
        for (size_t i = 0; i < len; i++) dst[r * ds + i] = acc ? dst[r * ds + i] + src[r * ss + i] : src[r * ss + i];
}
static void f_scale(const ew_backend *be, size_t groups, size_t inner, const float *mask, const float *x, float *y,
                    int mode) {
    (void)be;
    for (size_t t = 0; t < groups * inner; t++) {
        float m = mask[t / inner];
        if (mode == 0)
            y[t] = m * x[t];
        else if (mode == 1)
            y[t] = m == 0.0f ? 0.0f : m * x[t];
        else if (m != 0.0f)
            y[t] += m * x[t];
    }
}
static void f_mse(const ew_backend *be, size_t n, const float *a, const float *b, float *out) {
    (void)be;
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    out[0] = (float)(s / (double)n);
}
static void f_mse_bwd(const ew_backend *be, size_t n, const float *a, const float *b, const float *dy, float *da,
                      float *db, int fresh) {
    (void)be;
    float k = 2.0f * dy[0] / (float)n;
    for (size_t i = 0; i < n; i++) {
        float d = k * (a[i] - b[i]);
        if (fresh) {
            da[i] = d;
        } else {
            if (da) da[i] += d;
            if (db) db[i] -= d;
        }
    }
}
static void f_adam(const ew_backend *be, size_t n, float *p, const float *g, float *m, float *v, float b1, float b2,
                   float step, float sbc2, float eps, float l2, float dec) {
    (void)be;
    for (size_t i = 0; i < n; i++) {
        float pi = p[i] * dec, gi = g[i] + l2 * p[i];
        float mi = b1 * m[i] + (1.0f - b1) * gi, vi = b2 * v[i] + (1.0f - b2) * (gi * gi);
        m[i] = mi;
        v[i] = vi;
        p[i] = pi - step * (mi / (sqrtf(vi) / sbc2 + eps));
    }
}
static double f_sumsq(const ew_backend *be, size_t n, const float *x) {
    (void)be;
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return s;
}
static void f_upload(const ew_backend *be, void *dst, const void *src, size_t bytes) {
    (void)be;
    memcpy(dst, src, bytes);
}
static void *f_alloc(const ew_backend *be, size_t bytes) {
    (void)be;
    return malloc(bytes ? bytes : 1);
}
static void f_free(const ew_backend *be, void *p) {
    (void)be;
    free(p);
}
static void f_destroy(ew_backend *be) {
    ew_backend_destroy(((fwd_backend *)be)->in);
    free(be);
}

static ew_backend *selftest_backend(void) {
    fwd_backend *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->in = ew_backend_cpu_create(2);
    if (!f->in) {
        free(f);
        return NULL;
    }
    ew_backend *be = &f->base;
    be->name = "selftest";
    be->threads = 2;
    be->gemm = f_gemm;
    be->conv_workspace = f_ws;
    be->conv_fwd = f_cf;
    be->conv_bwd_data = f_cbd;
    be->conv_bwd_weight = f_cbw;
    be->unary = f_un;
    be->unary_bwd = f_unb;
    be->unary_bwd_set = f_unbs;
    be->binary = f_bin;
    be->binary_bwd = f_binb;
    be->axpy = f_axpy;
    be->sum_channels = f_sum;
    be->fill = f_fill;
    be->add_channels = f_addch;
    be->copy_rows = f_copy;
    be->scale_groups = f_scale;
    be->mse = f_mse;
    be->mse_bwd = f_mse_bwd;
    be->adam = f_adam;
    be->sumsq = f_sumsq;
    be->upload = f_upload;
    be->mem_alloc = f_alloc;
    be->mem_free = f_free;
    be->destroy = f_destroy;
    return be;
}

/* ---- helpers ------------------------------------------------------------------------ */
static ew_backend *REF, *DUT;

static float *dalloc(const ew_backend *be, size_t n) {
    if (be->mem_alloc) return be->mem_alloc(be, sizeof(float) * (n ? n : 1));
    return malloc(sizeof(float) * (n ? n : 1));
}

static void dfree(const ew_backend *be, float *p) {
    if (be->mem_alloc)
        be->mem_free(be, p);
    else
        free(p);
}

static void fill(float *p, size_t n, double lo, double hi, uint64_t seed) {
    ew_rng r;
    ew_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) p[i] = (float)ew_rng_range(&r, lo, hi);
}

/* max |got - ref| <= rtol (max |ref| + 1e-6); non-finite values must match. */
static void near(const char *what, const float *ref, const float *got, size_t n, double rtol) {
    double m = 0.0, e = 0.0;
    size_t at = 0;
    int nonfinite = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(ref[i]) && fabs(ref[i]) > m) m = fabs(ref[i]);
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(ref[i]) || !isfinite(got[i])) {
            if (isfinite(ref[i]) != isfinite(got[i])) nonfinite = 1, at = i;
            continue;
        }
        double d = fabs((double)got[i] - (double)ref[i]);
        if (d > e) e = d, at = i;
    }
    double lim = rtol * (m + 1e-6);
    CHECK(!nonfinite && e <= lim, "%s: max |diff| %.3g at %zu (ref %.9g, got %.9g; scale %.3g, tol %.3g)%s", what, e,
          at, n ? (double)ref[at] : 0.0, n ? (double)got[at] : 0.0, m, lim, nonfinite ? " non-finite mismatch" : "");
}

static int dut_ok(const char *what) {
    int bad = ew_backend_sync(DUT) != 0;
    CHECK(!bad, "%s: device error: %s", what, ew_backend_error(DUT) ? ew_backend_error(DUT) : "?");
    return !bad;
}

enum { R_EXACT = 0, R_TRANS = 1, R_SUM = 2 };
static const double RT[3] = {1e-6, 4e-6, 2e-5};

/* ---- table entries -------------------------------------------------------------------- */
static void t_gemm(void) {
    static const int shapes[][3] = {{37, 53, 71}, {1, 300, 64}, {64, 5, 256}, {5, 3, 0}};
    for (size_t sh = 0; sh < sizeof shapes / sizeof shapes[0]; sh++) {
    const int m = shapes[sh][0], n = shapes[sh][1], k = shapes[sh][2];
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            int lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 2, ldc = n + 1;
            size_t na = (size_t)(ta ? k : m) * lda, nb = (size_t)(tb ? n : k) * ldb, nc = (size_t)m * ldc;
            float *a[2], *b[2], *c[2];
            ew_backend *be[2] = {REF, DUT};
            for (int s = 0; s < 2; s++) {
                a[s] = dalloc(be[s], na);
                b[s] = dalloc(be[s], nb);
                c[s] = dalloc(be[s], nc);
                fill(a[s], na, -1, 1, 1);
                fill(b[s], nb, -1, 1, 2);
                fill(c[s], nc, -1, 1, 3);
                be[s]->gemm(be[s], ta, tb, m, n, k, 0.7f, a[s], lda, b[s], ldb, 0.3f, c[s], ldc);
            }
            char what[64];
            snprintf(what, sizeof what, "gemm %dx%dx%d ta=%d tb=%d", m, n, k, ta, tb);
            if (dut_ok(what)) near(what, c[0], c[1], nc, RT[R_SUM]);
            for (int s = 0; s < 2; s++) {
                dfree(be[s], a[s]);
                dfree(be[s], b[s]);
                dfree(be[s], c[s]);
            }
        }
    }
}

static void t_elementwise(void) {
    const size_t n = 10007;
    ew_backend *be[2] = {REF, DUT};
    float *x[2], *y[2], *dy[2], *dx[2], *dx2[2], *b[2];
    for (int s = 0; s < 2; s++) {
        x[s] = dalloc(be[s], n), y[s] = dalloc(be[s], n), dy[s] = dalloc(be[s], n);
        dx[s] = dalloc(be[s], n), dx2[s] = dalloc(be[s], n), b[s] = dalloc(be[s], n);
    }
    static const char *names[EW_UNARY_COUNT] = {"relu", "leaky_relu", "tanh", "sigmoid", "softplus",
                                                 "exp", "log", "square", "scale", "add_scalar"};
    for (int op = 0; op < EW_UNARY_COUNT; op++) {
        float alpha = op == EW_UNARY_LEAKY_RELU ? 0.2f : op == EW_UNARY_SCALE ? 1.7f : 0.5f;
        int trans = op == EW_UNARY_TANH || op == EW_UNARY_SIGMOID || op == EW_UNARY_SOFTPLUS || op == EW_UNARY_EXP ||
                    op == EW_UNARY_LOG;
        for (int s = 0; s < 2; s++) {
            fill(x[s], n, op == EW_UNARY_LOG ? 0.05 : -4.0, 4.0, 10 + op);
            fill(dy[s], n, -1, 1, 20 + op);
            fill(dx[s], n, -1, 1, 30 + op);
            be[s]->unary(be[s], (ew_unary_op)op, alpha, n, x[s], y[s]);
            be[s]->unary_bwd(be[s], (ew_unary_op)op, alpha, n, x[s], y[s], dy[s], dx[s]);
            be[s]->unary_bwd_set(be[s], (ew_unary_op)op, alpha, n, x[s], y[s], dy[s], dx2[s]);
        }
        char what[64];
        if (!dut_ok(names[op])) continue;
        snprintf(what, sizeof what, "unary %s", names[op]);
        near(what, y[0], y[1], n, RT[trans ? R_TRANS : R_EXACT]);
        snprintf(what, sizeof what, "unary_bwd %s", names[op]);
        near(what, dx[0], dx[1], n, RT[trans ? R_TRANS : R_EXACT]);
        snprintf(what, sizeof what, "unary_bwd_set %s", names[op]);
        near(what, dx2[0], dx2[1], n, RT[trans ? R_TRANS : R_EXACT]);
    }
    static const char *bn[4] = {"add", "sub", "mul", "div"};
    for (int op = 0; op < 4; op++)
        for (int alias = 0; alias < 2; alias++) {
            for (int s = 0; s < 2; s++) {
                fill(x[s], n, -2, 2, 40 + op);
                fill(b[s], n, 0.5, 2, 50 + op);
                fill(dy[s], n, -1, 1, 60 + op);
                fill(dx[s], n, -1, 1, 70 + op);
                fill(dx2[s], n, -1, 1, 80 + op);
                const float *bb = alias ? x[s] : b[s];
                if (alias && op == EW_BINARY_DIV) fill(x[s], n, 0.5, 2, 90);
                be[s]->binary(be[s], (ew_binary_op)op, n, x[s], bb, y[s]);
                /* alias: a op a with both gradients into the same buffer */
                be[s]->binary_bwd(be[s], (ew_binary_op)op, n, x[s], bb, dy[s], dx[s], alias ? dx[s] : dx2[s]);
            }
            char what[64];
            snprintf(what, sizeof what, "binary %s%s", bn[op], alias ? " (a op a)" : "");
            if (!dut_ok(what)) continue;
            near(what, y[0], y[1], n, RT[R_EXACT]);
            snprintf(what, sizeof what, "binary_bwd %s%s da", bn[op], alias ? " (a op a)" : "");
            near(what, dx[0], dx[1], n, RT[R_EXACT] * 4);
            if (!alias) {
                snprintf(what, sizeof what, "binary_bwd %s db", bn[op]);
                near(what, dx2[0], dx2[1], n, RT[R_EXACT] * 4);
            }
        }
    for (int k = 0; k < 2; k++) {
        float alpha = k ? 0.3f : 1.0f;
        for (int s = 0; s < 2; s++) {
            fill(x[s], n, -2, 2, 91);
            fill(y[s], n, -2, 2, 92);
            be[s]->axpy(be[s], n, alpha, x[s], y[s]);
        }
        if (dut_ok("axpy")) near(k ? "axpy alpha 0.3" : "axpy alpha 1", y[0], y[1], n, RT[R_EXACT]);
    }
    for (int s = 0; s < 2; s++) {
        dfree(be[s], x[s]), dfree(be[s], y[s]), dfree(be[s], dy[s]);
        dfree(be[s], dx[s]), dfree(be[s], dx2[s]), dfree(be[s], b[s]);
    }
}

static void t_sum_channels(void) {
    static const int shapes[][3] = {{64, 1000, 1}, {5, 7, 333}, {1, 3, 1}, {64, 64, 36}, {2, 300, 17}};
    ew_backend *be[2] = {REF, DUT};
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++)
        for (int acc = 0; acc < 2; acc++) {
            int rows = shapes[k][0], ch = shapes[k][1], inner = shapes[k][2];
            size_t n = (size_t)rows * ch * inner;
            float *x[2], *o[2];
            for (int s = 0; s < 2; s++) {
                x[s] = dalloc(be[s], n);
                o[s] = dalloc(be[s], (size_t)ch);
                fill(x[s], n, -1, 1, 100 + k);
                fill(o[s], (size_t)ch, -1, 1, 200 + k);
                be[s]->sum_channels(be[s], rows, ch, inner, x[s], o[s], acc);
            }
            char what[96];
            snprintf(what, sizeof what, "sum_channels rows %d ch %d inner %d acc %d", rows, ch, inner, acc);
            if (dut_ok(what)) near(what, o[0], o[1], (size_t)ch, RT[R_SUM]);
            for (int s = 0; s < 2; s++) dfree(be[s], x[s]), dfree(be[s], o[s]);
        }
}

static ew_conv_desc conv_desc(int n, int c, int h, int w, int oc, int kh, int kw, int sh, int sw, int ph, int pw) {
    ew_conv_desc d = {n, c, h, w, oc, (h + 2 * ph - kh) / sh + 1, (w + 2 * pw - kw) / sw + 1, kh, kw, sh, sw, ph, pw};
    return d;
}

/* The three conv entries on backend pair (REF, dut) for descriptor d. */
static void conv_case(ew_backend *dut, const ew_conv_desc *d, const char *tag) {
    ew_backend *be[2] = {REF, dut};
    size_t nx = (size_t)d->n * d->c * d->h * d->w, nw = (size_t)d->oc * d->c * d->kh * d->kw;
    size_t ny = (size_t)d->n * d->oc * d->oh * d->ow;
    float *x[2], *w[2], *bias[2], *y[2], *y2[2], *dx[2], *dx2[2], *dw[2], *ws[2];
    for (int s = 0; s < 2; s++) {
        x[s] = dalloc(be[s], nx), w[s] = dalloc(be[s], nw), bias[s] = dalloc(be[s], (size_t)d->oc);
        y[s] = dalloc(be[s], ny), y2[s] = dalloc(be[s], ny), dx[s] = dalloc(be[s], nx), dx2[s] = dalloc(be[s], nx);
        dw[s] = dalloc(be[s], nw);
        ws[s] = dalloc(be[s], be[s]->conv_workspace(be[s], d));
        fill(x[s], nx, -1, 1, 301), fill(w[s], nw, -0.5, 0.5, 302), fill(bias[s], (size_t)d->oc, -1, 1, 303);
        fill(y2[s], ny, -1, 1, 304), fill(dx2[s], nx, -1, 1, 305), fill(dw[s], nw, -1, 1, 306);
        be[s]->conv_fwd(be[s], d, x[s], w[s], bias[s], y[s], 0, ws[s]);
        be[s]->conv_fwd(be[s], d, x[s], w[s], NULL, y2[s], 1, ws[s]);
        /* y is dy for the backward entries */
        be[s]->conv_bwd_data(be[s], d, y[s], w[s], dx[s], 0, ws[s]);
        be[s]->conv_bwd_data(be[s], d, y[s], w[s], dx2[s], 1, ws[s]);
        be[s]->conv_bwd_weight(be[s], d, x[s], y[s], dw[s], ws[s]);
    }
    char what[160];
    snprintf(what, sizeof what, "conv %s n%d c%d %dx%d oc%d k%dx%d s%d,%d p%d,%d", tag, d->n, d->c, d->h, d->w, d->oc,
             d->kh, d->kw, d->sh, d->sw, d->ph, d->pw);
    int ok = ew_backend_sync(dut) == 0;
    CHECK(ok, "%s: device error: %s", what, ew_backend_error(dut) ? ew_backend_error(dut) : "?");
    if (ok) {
        char w2[200];
        snprintf(w2, sizeof w2, "%s fwd+bias", what), near(w2, y[0], y[1], ny, RT[R_SUM]);
        snprintf(w2, sizeof w2, "%s fwd accumulate", what), near(w2, y2[0], y2[1], ny, RT[R_SUM]);
        snprintf(w2, sizeof w2, "%s bwd_data", what), near(w2, dx[0], dx[1], nx, RT[R_SUM]);
        snprintf(w2, sizeof w2, "%s bwd_data accumulate", what), near(w2, dx2[0], dx2[1], nx, RT[R_SUM]);
        snprintf(w2, sizeof w2, "%s bwd_weight", what), near(w2, dw[0], dw[1], nw, RT[R_SUM]);
    }
    for (int s = 0; s < 2; s++) {
        dfree(be[s], x[s]), dfree(be[s], w[s]), dfree(be[s], bias[s]), dfree(be[s], y[s]), dfree(be[s], y2[s]);
        dfree(be[s], dx[s]), dfree(be[s], dx2[s]), dfree(be[s], dw[s]), dfree(be[s], ws[s]);
    }
}

static void t_conv(ew_backend *const *chunked, int nchunked) {
    ew_conv_desc ds[] = {
        conv_desc(3, 6, 17, 12, 8, 4, 4, 2, 2, 1, 1),  /* the encoder's 4x4 stride 2 on odd sizes */
        conv_desc(2, 5, 9, 7, 4, 3, 3, 1, 1, 1, 1),    /* residual 3x3 */
        conv_desc(4, 8, 5, 6, 3, 1, 1, 1, 1, 0, 0),    /* residual 1x1 */
        conv_desc(2, 3, 8, 9, 5, 3, 2, 1, 2, 0, 1),    /* asymmetric kernel, stride, padding */
        conv_desc(1, 2, 4, 4, 2, 4, 4, 1, 1, 0, 0),    /* one output pixel */
    };
    for (size_t i = 0; i < sizeof ds / sizeof ds[0]; i++) {
        conv_case(DUT, &ds[i], "");
        for (int k = 0; k < nchunked; k++)
            if (chunked[k]) conv_case(chunked[k], &ds[i], k ? "(budget 10000 floats)" : "(1-image chunks)");
    }
}

/* ---- ops (forward + backward through graphs) ---------------------------------------- */
typedef ew_tensor *(*op_fn)(ew_graph *g, ew_tensor **in, ew_rng *rng);

typedef struct {
    const char *name;
    op_fn fn;
    int nin;
    int nd[3];
    int shape[3][5];
    float lo[3], hi[3];
    int cls; /* tolerance class */
} op_case;

static const int LABELS[6] = {2, 0, 4, 1, 3, 3};

static ew_tensor *o_add(ew_graph *g, ew_tensor **x, ew_rng *r) { (void)r; return ew_add(g, x[0], x[1]); }
static ew_tensor *o_sub(ew_graph *g, ew_tensor **x, ew_rng *r) { (void)r; return ew_sub(g, x[0], x[1]); }
static ew_tensor *o_mul(ew_graph *g, ew_tensor **x, ew_rng *r) { (void)r; return ew_mul(g, x[0], x[1]); }
static ew_tensor *o_div(ew_graph *g, ew_tensor **x, ew_rng *r) { (void)r; return ew_div(g, x[0], x[1]); }
static ew_tensor *o_square_self(ew_graph *g, ew_tensor **x, ew_rng *r) { (void)r; return ew_mul(g, x[0], x[0]); }
static ew_tensor *o_expand(ew_graph *g, ew_tensor **x, ew_rng *r) {
    (void)r;
    int s[3] = {3, 4, 5};
    return ew_expand(g, x[0], 3, s);
}
static ew_tensor *o_scale(ew_graph *g, ew_tensor **x, ew_rng *r) { (void)r; return ew_scale(g, x[0], -1.3f); }
static ew_tensor *o_adds(ew_graph *g, ew_tensor **x, ew_rng *r) { (void)r; return ew_add_scalar(g, x[0], 0.7f); }
static ew_tensor *o_square(ew_graph *g, ew_tensor **x, ew_rng *r) { (void)r; return ew_square(g, x[0]); }
static ew_tensor *o_relu(ew_graph *g, ew_tensor **x, ew_rng *r) { (void)r; return ew_relu(g, x[0]); }
static ew_tensor *o_lrelu(ew_graph *g, ew_tensor **x, ew_rng *r) { (void)r; return ew_leaky_relu(g, x[0], 0.2f); }
static ew_tensor *o_tanh(ew_graph *g, ew_tensor **x, ew_rng *r) { (void)r; return ew_tanh(g, x[0]); }
static ew_tensor *o_sigmoid(ew_graph *g, ew_tensor **x, ew_rng *r) { (void)r; return ew_sigmoid(g, x[0]); }
static ew_tensor *o_softplus(ew_graph *g, ew_tensor **x, ew_rng *r) { (void)r; return ew_softplus(g, x[0]); }
static ew_tensor *o_exp(ew_graph *g, ew_tensor **x, ew_rng *r) { (void)r; return ew_exp(g, x[0]); }
static ew_tensor *o_log(ew_graph *g, ew_tensor **x, ew_rng *r) { (void)r; return ew_log(g, x[0]); }
static ew_tensor *o_reshape(ew_graph *g, ew_tensor **x, ew_rng *r) {
    (void)r;
    int s[2] = {4, -1};
    return ew_tanh(g, ew_reshape(g, x[0], 2, s));
}
static ew_tensor *o_concat(ew_graph *g, ew_tensor **x, ew_rng *r) { (void)r; return ew_concat(g, x, 3, 1); }
static ew_tensor *o_slice(ew_graph *g, ew_tensor **x, ew_rng *r) { (void)r; return ew_slice(g, x[0], 1, 1, 2); }
/* inputs used twice: the second gradient adds into the first */
static ew_tensor *o_concat_twice(ew_graph *g, ew_tensor **x, ew_rng *r) {
    (void)r;
    ew_tensor *xs[3] = {x[0], x[1], x[0]};
    return ew_concat(g, xs, 3, 2);
}
static ew_tensor *o_slice_twice(ew_graph *g, ew_tensor **x, ew_rng *r) {
    (void)r;
    return ew_mul(g, ew_slice(g, x[0], 1, 1, 2), ew_slice(g, x[0], 1, 2, 2));
}
static ew_tensor *o_sum(ew_graph *g, ew_tensor **x, ew_rng *r) { (void)r; return ew_sum(g, x[0]); }
static ew_tensor *o_mean(ew_graph *g, ew_tensor **x, ew_rng *r) { (void)r; return ew_mean(g, x[0]); }
static ew_tensor *o_max(ew_graph *g, ew_tensor **x, ew_rng *r) { (void)r; return ew_max(g, x[0]); }
static ew_tensor *o_sum_dim(ew_graph *g, ew_tensor **x, ew_rng *r) { (void)r; return ew_sum_dim(g, x[0], 1, 0); }
static ew_tensor *o_mean_dim(ew_graph *g, ew_tensor **x, ew_rng *r) { (void)r; return ew_mean_dim(g, x[0], 2, 1); }
static ew_tensor *o_max_dim(ew_graph *g, ew_tensor **x, ew_rng *r) { (void)r; return ew_max_dim(g, x[0], 0, 0); }
static ew_tensor *o_matmul(ew_graph *g, ew_tensor **x, ew_rng *r) { (void)r; return ew_matmul(g, x[0], x[1]); }
static ew_tensor *o_linear(ew_graph *g, ew_tensor **x, ew_rng *r) { (void)r; return ew_linear(g, x[0], x[1], x[2]); }
static ew_tensor *o_conv(ew_graph *g, ew_tensor **x, ew_rng *r) {
    (void)r;
    ew_conv_opts o = {{2, 2}, {1, 1}, {0, 0}};
    return ew_conv2d(g, x[0], x[1], x[2], &o);
}
static ew_tensor *o_conv3(ew_graph *g, ew_tensor **x, ew_rng *r) {
    (void)r;
    ew_conv_opts o = {{1, 1}, {1, 1}, {0, 0}};
    return ew_conv2d(g, x[0], x[1], x[2], &o);
}
static ew_tensor *o_deconv(ew_graph *g, ew_tensor **x, ew_rng *r) {
    (void)r;
    ew_conv_opts o = {{2, 2}, {1, 1}, {1, 0}};
    return ew_conv_transpose2d(g, x[0], x[1], x[2], &o);
}
static ew_tensor *o_dropout(ew_graph *g, ew_tensor **x, ew_rng *r) { return ew_dropout(g, x[0], 0.3f, r); }
static ew_tensor *o_cdropout(ew_graph *g, ew_tensor **x, ew_rng *r) { return ew_channel_dropout(g, x[0], 0.3f, r); }
static ew_tensor *o_reparam(ew_graph *g, ew_tensor **x, ew_rng *r) { return ew_reparam_sample(g, x[0], x[1], r); }
static ew_tensor *o_mse(ew_graph *g, ew_tensor **x, ew_rng *r) { (void)r; return ew_mse(g, x[0], x[1]); }
static ew_tensor *o_kl(ew_graph *g, ew_tensor **x, ew_rng *r) { (void)r; return ew_gauss_kl(g, x[0], x[1]); }
static ew_tensor *o_ce(ew_graph *g, ew_tensor **x, ew_rng *r) { (void)r; return ew_cross_entropy(g, x[0], LABELS); }
static ew_tensor *o_softmax(ew_graph *g, ew_tensor **x, ew_rng *r) { (void)r; return ew_softmax(g, x[0], 1); }
static ew_tensor *o_ssoftmax(ew_graph *g, ew_tensor **x, ew_rng *r) { (void)r; return ew_spatial_softmax(g, x[0]); }
static ew_tensor *o_sargmax(ew_graph *g, ew_tensor **x, ew_rng *r) { (void)r; return ew_soft_argmax(g, x[0]); }
static ew_tensor *o_grid(ew_graph *g, ew_tensor **x, ew_rng *r) { (void)r; return ew_grid_sample(g, x[0], x[1]); }
/* a small network: conv -> leaky -> deconv -> sigmoid -> mse against x[3] */
static ew_tensor *o_net(ew_graph *g, ew_tensor **x, ew_rng *r) {
    ew_conv_opts o = {{2, 2}, {1, 1}, {0, 0}}, od = {{2, 2}, {1, 1}, {0, 1}};
    ew_tensor *h = ew_channel_dropout(g, ew_leaky_relu(g, ew_conv2d(g, x[0], x[1], NULL, &o), 0.2f), 0.1f, r);
    ew_tensor *y = ew_sigmoid(g, ew_conv_transpose2d(g, h, x[2], NULL, &od));
    return ew_mse(g, y, x[3]);
}

static const op_case OPS[] = {
    {"add", o_add, 2, {3, 3}, {{3, 4, 5}, {3, 4, 5}}, {-2, -2}, {2, 2}, R_EXACT},
    {"sub", o_sub, 2, {3, 3}, {{3, 4, 5}, {3, 4, 5}}, {-2, -2}, {2, 2}, R_EXACT},
    {"mul", o_mul, 2, {3, 3}, {{3, 4, 5}, {3, 4, 5}}, {-2, -2}, {2, 2}, R_EXACT},
    {"div", o_div, 2, {3, 3}, {{3, 4, 5}, {3, 4, 5}}, {-2, 0.5f}, {2, 2}, R_EXACT},
    {"mul x*x", o_square_self, 1, {3}, {{3, 4, 5}}, {-2}, {2}, R_EXACT},
    {"add broadcast", o_add, 2, {3, 2}, {{3, 4, 5}, {4, 1}}, {-2, -2}, {2, 2}, R_EXACT},
    {"sub broadcast", o_sub, 2, {2, 3}, {{1, 5}, {3, 4, 5}}, {-2, -2}, {2, 2}, R_EXACT},
    {"mul broadcast", o_mul, 2, {3, 1}, {{3, 4, 5}, {5}}, {-2, -2}, {2, 2}, R_EXACT},
    {"div broadcast", o_div, 2, {3, 3}, {{3, 4, 5}, {3, 1, 5}}, {-2, 0.5f}, {2, 2}, R_EXACT},
    {"expand", o_expand, 1, {3}, {{1, 4, 1}}, {-2}, {2}, R_SUM},
    {"scale", o_scale, 1, {2}, {{7, 9}}, {-2}, {2}, R_EXACT},
    {"add_scalar", o_adds, 1, {2}, {{7, 9}}, {-2}, {2}, R_EXACT},
    {"square", o_square, 1, {2}, {{7, 9}}, {-2}, {2}, R_EXACT},
    {"relu", o_relu, 1, {2}, {{7, 9}}, {-2}, {2}, R_EXACT},
    {"leaky_relu", o_lrelu, 1, {2}, {{7, 9}}, {-2}, {2}, R_EXACT},
    {"tanh", o_tanh, 1, {2}, {{7, 9}}, {-3}, {3}, R_TRANS},
    {"sigmoid", o_sigmoid, 1, {2}, {{7, 9}}, {-5}, {5}, R_TRANS},
    {"softplus", o_softplus, 1, {2}, {{7, 9}}, {-5}, {5}, R_TRANS},
    {"exp", o_exp, 1, {2}, {{7, 9}}, {-3}, {3}, R_TRANS},
    {"log", o_log, 1, {2}, {{7, 9}}, {0.1f}, {4}, R_TRANS},
    {"reshape", o_reshape, 1, {3}, {{4, 3, 5}}, {-2}, {2}, R_TRANS},
    {"concat", o_concat, 3, {3, 3, 3}, {{2, 3, 4}, {2, 1, 4}, {2, 2, 4}}, {-1, -1, -1}, {1, 1, 1}, R_EXACT},
    {"slice", o_slice, 1, {3}, {{3, 5, 4}}, {-1}, {1}, R_EXACT},
    {"concat (an input twice)", o_concat_twice, 2, {3, 3}, {{2, 3, 4}, {2, 3, 1}}, {-1, -1}, {1, 1}, R_EXACT},
    {"slice (overlapping twice)", o_slice_twice, 1, {3}, {{3, 5, 4}}, {-1}, {1}, R_EXACT},
    {"sum", o_sum, 1, {3}, {{3, 5, 4}}, {-1}, {1}, R_SUM},
    {"mean", o_mean, 1, {3}, {{3, 5, 4}}, {-1}, {1}, R_SUM},
    {"max", o_max, 1, {3}, {{3, 5, 4}}, {-1}, {1}, R_EXACT},
    {"sum_dim", o_sum_dim, 1, {3}, {{3, 5, 4}}, {-1}, {1}, R_SUM},
    {"mean_dim keepdim", o_mean_dim, 1, {3}, {{3, 5, 4}}, {-1}, {1}, R_SUM},
    {"max_dim", o_max_dim, 1, {3}, {{3, 5, 4}}, {-1}, {1}, R_EXACT},
    {"matmul", o_matmul, 2, {2, 2}, {{7, 9}, {9, 5}}, {-1, -1}, {1, 1}, R_SUM},
    {"linear", o_linear, 3, {3, 2, 1}, {{2, 3, 9}, {6, 9}, {6}}, {-1, -1, -1}, {1, 1, 1}, R_SUM},
    {"conv2d 4x4 s2", o_conv, 3, {4, 4, 1}, {{2, 3, 11, 9}, {5, 3, 4, 4}, {5}}, {-1, -.5f, -1}, {1, .5f, 1}, R_SUM},
    {"conv2d 3x3", o_conv3, 3, {4, 4, 1}, {{2, 4, 6, 5}, {3, 4, 3, 3}, {3}}, {-1, -.5f, -1}, {1, .5f, 1}, R_SUM},
    {"conv_transpose2d", o_deconv, 3, {4, 4, 1}, {{2, 5, 5, 4}, {5, 3, 4, 4}, {3}}, {-1, -.5f, -1}, {1, .5f, 1}, R_SUM},
    {"dropout", o_dropout, 1, {3}, {{3, 5, 4}}, {-1}, {1}, R_EXACT},
    {"channel_dropout", o_cdropout, 1, {4}, {{3, 5, 2, 2}}, {-1}, {1}, R_EXACT},
    {"reparam_sample", o_reparam, 2, {2, 2}, {{4, 6}, {4, 6}}, {-1, -2}, {1, 1}, R_TRANS},
    {"mse", o_mse, 2, {3, 3}, {{3, 5, 4}, {3, 5, 4}}, {-1, -1}, {1, 1}, R_SUM},
    {"gauss_kl", o_kl, 2, {2, 2}, {{4, 6}, {4, 6}}, {-1, -2}, {1, 1}, R_SUM},
    {"cross_entropy", o_ce, 1, {2}, {{6, 5}}, {-3}, {3}, R_TRANS},
    {"softmax", o_softmax, 1, {3}, {{3, 5, 4}}, {-3}, {3}, R_TRANS},
    {"spatial_softmax", o_ssoftmax, 1, {4}, {{2, 3, 4, 5}}, {-3}, {3}, R_TRANS},
    {"soft_argmax", o_sargmax, 1, {4}, {{2, 3, 4, 5}}, {-3}, {3}, R_SUM},
    {"grid_sample", o_grid, 2, {4, 3}, {{2, 3, 6, 5}, {2, 7, 2}}, {-1, -1.5f}, {1, 6.5f}, R_SUM},
};

/* One op on one backend: fills y (numel *ny) and the inputs' gradients (host copies). */
static int run_op(ew_graph *g, const op_case *c, float **in_host, float *seed, float **y_out, size_t *ny,
                  float **grads) {
    ew_graph_reset(g);
    ew_tensor *x[4];
    for (int k = 0; k < c->nin; k++) {
        x[k] = ew_tensor_from(g, c->nd[k], c->shape[k], in_host[k]);
        ew_requires_grad(x[k], 1);
    }
    ew_rng rng;
    ew_rng_seed(&rng, 77);
    ew_tensor *y = c->fn(g, x, &rng);
    if (!y) return -1;
    *ny = ew_numel(y);
    if (ew_backward_seed(g, y, seed)) return -1;
    if (ew_backend_sync(ew_graph_backend(g))) return -1;
    *y_out = malloc(sizeof(float) * (*ny ? *ny : 1));
    if (!*y_out) return -1;
    memcpy(*y_out, y->data, sizeof(float) * *ny);
    for (int k = 0; k < c->nin; k++) {
        size_t n = ew_numel(x[k]);
        grads[k] = calloc(n ? n : 1, sizeof(float));
        if (!grads[k]) return -1;
        float *gr = ew_grad_if_any(x[k]);
        if (gr) memcpy(grads[k], gr, sizeof(float) * n);
    }
    return 0;
}

static void t_ops(void) {
    ew_graph *g[2] = {ew_graph_create(REF, 0), ew_graph_create(DUT, 0)};
    CHECK(g[0] && g[1], "graphs");
    if (!g[0] || !g[1]) return;
    for (size_t i = 0; i < sizeof OPS / sizeof OPS[0]; i++) {
        const op_case *c = &OPS[i];
        float *in[3] = {NULL, NULL, NULL};
        for (int k = 0; k < c->nin; k++) {
            size_t n = ew_shape_numel(c->nd[k], c->shape[k]);
            in[k] = malloc(sizeof(float) * n);
            fill(in[k], n, c->lo[k], c->hi[k], 1000 + 10 * i + k);
        }
        float *seed = malloc(sizeof(float) * 4096);
        fill(seed, 4096, -1, 1, 5000 + i);
        float *y[2] = {NULL, NULL}, *gr[2][3] = {{NULL, NULL, NULL}, {NULL, NULL, NULL}};
        size_t ny[2] = {0, 0};
        int rc0 = run_op(g[0], c, in, seed, &y[0], &ny[0], gr[0]);
        int rc1 = run_op(g[1], c, in, seed, &y[1], &ny[1], gr[1]);
        CHECK(rc0 == 0 && rc1 == 0 && ny[0] == ny[1] && ny[0] <= 4096, "op %s ran (cpu: %s; dut: %s)", c->name,
              ew_graph_error(g[0]) ? ew_graph_error(g[0]) : "ok", ew_graph_error(g[1]) ? ew_graph_error(g[1]) : "ok");
        if (rc0 == 0 && rc1 == 0 && ny[0] == ny[1]) {
            char what[96];
            snprintf(what, sizeof what, "op %s forward", c->name);
            near(what, y[0], y[1], ny[0], RT[c->cls]);
            for (int k = 0; k < c->nin; k++) {
                snprintf(what, sizeof what, "op %s d/dinput%d", c->name, k);
                near(what, gr[0][k], gr[1][k], ew_shape_numel(c->nd[k], c->shape[k]), RT[c->cls] * 4);
            }
        }
        for (int s = 0; s < 2; s++) {
            free(y[s]);
            for (int k = 0; k < 3; k++) free(gr[s][k]);
        }
        for (int k = 0; k < 3; k++) free(in[k]);
        free(seed);
    }
    /* the small network, with 4 inputs */
    {
        int sx[4] = {2, 3, 12, 9}, sw1[4] = {4, 3, 4, 4}, sw2[4] = {4, 3, 4, 4}, st[4] = {2, 3, 12, 9};
        const int *sh[4] = {sx, sw1, sw2, st};
        float *in[4];
        for (int k = 0; k < 4; k++) {
            size_t n = ew_shape_numel(4, sh[k]);
            in[k] = malloc(sizeof(float) * n);
            fill(in[k], n, k == 1 || k == 2 ? -0.4 : 0.0, k == 1 || k == 2 ? 0.4 : 1.0, 9000 + k);
        }
        float loss[2] = {0, 0}, *gw[2] = {NULL, NULL};
        size_t nw = ew_shape_numel(4, sw1);
        for (int s = 0; s < 2; s++) {
            ew_graph_reset(g[s]);
            ew_tensor *x[4];
            for (int k = 0; k < 4; k++) {
                x[k] = ew_tensor_from(g[s], 4, sh[k], in[k]);
                ew_requires_grad(x[k], k == 1 || k == 2);
            }
            ew_rng rng;
            ew_rng_seed(&rng, 3);
            ew_tensor *l = o_net(g[s], x, &rng);
            int ok = l && ew_backward(g[s], l) == 0 && ew_backend_sync(ew_graph_backend(g[s])) == 0;
            CHECK(ok, "net on backend %d: %s", s, ew_graph_error(g[s]) ? ew_graph_error(g[s]) : "?");
            if (!ok) continue;
            loss[s] = l->data[0];
            gw[s] = malloc(sizeof(float) * nw);
            memcpy(gw[s], ew_grad_if_any(x[1]), sizeof(float) * nw);
        }
        CHECK_NEAR(loss[1], loss[0], 1e-5 * fabs(loss[0]) + 1e-7);
        if (gw[0] && gw[1]) near("net d/dw1", gw[0], gw[1], nw, 1e-4);
        for (int s = 0; s < 2; s++) free(gw[s]);
        for (int k = 0; k < 4; k++) free(in[k]);
    }
    ew_graph_destroy(g[0]);
    ew_graph_destroy(g[1]);
}

/* ---- a CUDA graph replays a captured sequence of table calls ------------------------- */
static void t_cuda_graph(void) {
    if (!ew_backend_is_cuda(DUT)) return;
    const int m = 16, n = 24, k = 32;
    float *a = dalloc(DUT, (size_t)m * k), *b = dalloc(DUT, (size_t)k * n), *c = dalloc(DUT, (size_t)m * n);
    float *d = dalloc(DUT, (size_t)m * n), *ref = malloc(sizeof(float) * m * n);
    fill(a, (size_t)m * k, -1, 1, 11), fill(b, (size_t)k * n, -1, 1, 12);
    /* direct: c = a b; d = tanh(c) */
    DUT->gemm(DUT, 0, 0, m, n, k, 1.0f, a, k, b, n, 0.0f, c, n);
    DUT->unary(DUT, EW_UNARY_TANH, 0.0f, (size_t)m * n, c, d);
    ew_backend_sync(DUT);
    memcpy(ref, d, sizeof(float) * m * n);
    memset(d, 0, sizeof(float) * m * n);
    int rc = ew_cuda_capture_begin(DUT);
    CHECK(rc == 0, "capture begin: %s", ew_backend_error(DUT) ? ew_backend_error(DUT) : "?");
    if (rc == 0) {
        DUT->gemm(DUT, 0, 0, m, n, k, 1.0f, a, k, b, n, 0.0f, c, n);
        DUT->unary(DUT, EW_UNARY_TANH, 0.0f, (size_t)m * n, c, d);
        ew_cuda_graph *gr = ew_cuda_capture_end(DUT);
        CHECK(gr != NULL, "capture end: %s", ew_backend_error(DUT) ? ew_backend_error(DUT) : "?");
        for (int rep = 0; gr && rep < 2; rep++) {
            memset(d, 0, sizeof(float) * m * n);
            CHECK(ew_cuda_graph_launch(DUT, gr) == 0 && ew_backend_sync(DUT) == 0, "graph launch %d", rep);
            near("cuda graph replay", ref, d, (size_t)m * n, 0.0);
        }
        ew_cuda_graph_free(gr);
    }
    dfree(DUT, a), dfree(DUT, b), dfree(DUT, c), dfree(DUT, d);
    free(ref);
}

/* ---- a whole world-model training step ------------------------------------------------ */
static void t_fm_step(void) {
    ew_fm_config cfg = fm_tiny_config(EW_FM_PLAIN, 1);
    cfg.nf = 4;
    cfg.hidden = 16;
    ew_fm_stats st = fm_test_stats();
    fm_test_batch tb;
    const int B = 3, T = cfg.n_pred;
    CHECK(fm_test_batch_make(&tb, &cfg, B, T, 42) == 0, "batch");
    char err[256];
    /* (a) forward + backward of the unroll with z-dropout, dropout on: losses and every
     * parameter's gradient */
    ew_fm m[2];
    ew_backend *be[2] = {REF, DUT};
    ew_graph *g[2];
    float loss[2] = {0, 0};
    for (int s = 0; s < 2; s++) {
        CHECK(ew_fm_init(&m[s], &cfg, &st, err, sizeof err) == 0, "fm init: %s", err);
        CHECK(ew_fm_move_to_backend(&m[s], be[s], err, sizeof err) == 0, "fm move: %s", err);
        g[s] = ew_graph_create(be[s], 0);
        int fs[4] = {B, cfg.n_cond * cfg.channels, cfg.height, cfg.width}, ss[3] = {B, cfg.n_cond, 5};
        int as[3] = {B, T, 2}, tfs[5] = {B, T, cfg.channels, cfg.height, cfg.width}, tss[3] = {B, T, 5};
        ew_fm_inputs in = {ew_tensor_wrap(g[s], 4, fs, tb.b.frames), ew_tensor_wrap(g[s], 3, ss, tb.b.states),
                           ew_tensor_wrap(g[s], 3, as, tb.b.actions), ew_tensor_wrap(g[s], 5, tfs, tb.b.target_frames),
                           ew_tensor_wrap(g[s], 3, tss, tb.b.target_states)};
        ew_rng rng;
        ew_rng_seed(&rng, 9);
        ew_fm_unroll_opts o = {1, EW_FM_Z_POSTERIOR, 0.5f, NULL, &rng};
        ew_fm_unroll_out uo;
        int ok = ew_fm_unroll(g[s], &m[s], &in, &o, &uo) == 0 && ew_backward(g[s], uo.loss) == 0;
        CHECK(ok, "fm unroll+backward on %s: %s", be[s]->name, ew_graph_error(g[s]) ? ew_graph_error(g[s]) : "?");
        if (ok) loss[s] = uo.loss->data[0];
    }
    CHECK_NEAR(loss[1], loss[0], 1e-4 * fabs(loss[0]));
    int np0, np1;
    ew_param *p0 = ew_fm_params(&m[0], &np0), *p1 = ew_fm_params(&m[1], &np1);
    CHECK(np0 == np1 && np0 > 0, "param counts %d %d", np0, np1);
    for (int i = 0; i < np0 && np0 == np1; i++) {
        char what[128];
        snprintf(what, sizeof what, "fm grad %s", p0[i].name);
        near(what, p0[i].grad, p1[i].grad, ew_param_numel(&p0[i]), 2e-3);
    }
    for (int s = 0; s < 2; s++) {
        ew_graph_destroy(g[s]);
        ew_fm_free(&m[s]);
    }
    /* (b) ew_fm_train_step (Adam, clipping) twice through the trainer */
    ew_fm_trainer *tr[2] = {NULL, NULL};
    ew_fm_losses l[2][2];
    ew_fm_train_config tc = ew_fm_train_defaults();
    tc.lr = 1e-3f;
    for (int s = 0; s < 2; s++) {
        CHECK(ew_fm_init(&m[s], &cfg, &st, err, sizeof err) == 0, "fm init: %s", err);
        CHECK(ew_fm_trainer_create(&m[s], be[s], &tc, &tr[s], err, sizeof err) == 0, "trainer: %s", err);
        for (int k = 0; k < 2 && tr[s]; k++)
            CHECK(ew_fm_train_step(tr[s], &tb.b, 100 + k, &l[s][k], err, sizeof err) == 0, "train step on %s: %s",
                  be[s]->name, err);
    }
    if (tr[0] && tr[1]) {
        for (int k = 0; k < 2; k++) {
            CHECK_NEAR(l[1][k].loss, l[0][k].loss, 1e-3 * fabs(l[0][k].loss));
            CHECK_NEAR(l[1][k].grad_norm, l[0][k].grad_norm, 2e-3 * fabs(l[0][k].grad_norm));
            CHECK(l[1][k].prior_steps == l[0][k].prior_steps, "same z-dropout draws");
        }
        /* parameters after two Adam steps: the update is about lr per element; where the
         * gradient is near zero the sign may differ, so compare against 2 lr */
        p0 = ew_fm_params(&m[0], &np0);
        p1 = ew_fm_params(&m[1], &np1);
        size_t off = 0, tot = 0;
        double worst = 0.0;
        for (int i = 0; i < np0; i++)
            for (size_t j = 0; j < ew_param_numel(&p0[i]); j++, tot++) {
                double d = fabs((double)p0[i].data[j] - (double)p1[i].data[j]);
                if (d > worst) worst = d;
                if (d > 0.1 * tc.lr) off++;
            }
        CHECK(worst <= 4.0 * tc.lr + 1e-6, "params after 2 steps: worst diff %.3g (lr %.3g)", worst, (double)tc.lr);
        CHECK(off * 100 <= tot, "params after 2 steps: %zu of %zu differ by more than 0.1 lr", off, tot);
    }
    for (int s = 0; s < 2; s++) {
        ew_fm_trainer_free(tr[s]);
        ew_fm_free(&m[s]);
    }
    fm_test_batch_free(&tb);
}

/* ---- the tracker's network, moved into device memory ---------------------------------- */
static void t_tracker(void) {
    ew_tracker_config tc;
    ew_tracker_config_default(&tc);
    ew_tracker t[2];
    ew_backend *be[2] = {REF, DUT};
    char err[256];
    const int n = 2, h = 12, w = 20;
    float *x = malloc(sizeof(float) * n * h * w), *seed = malloc(sizeof(float) * n * h * w);
    fill(x, (size_t)n * h * w, 0, 1, 71), fill(seed, (size_t)n * h * w, -1, 1, 72);
    float *out[2] = {NULL, NULL}, *gw[2] = {NULL, NULL};
    size_t nw = 0;
    for (int s = 0; s < 2; s++) {
        CHECK(ew_tracker_init(&t[s], &tc, 5, err, sizeof err) == 0, "tracker init: %s", err);
        CHECK(ew_tracker_move_to_backend(&t[s], be[s], err, sizeof err) == 0, "tracker move: %s", err);
        ew_graph *g = ew_graph_create(be[s], 0);
        int xs[4] = {n, 1, h, w};
        ew_tensor *y = ew_tracker_logits(g, &t[s], ew_tensor_wrap(g, 4, xs, x));
        int ok = y && ew_backward_seed(g, y, seed) == 0 && ew_backend_sync(be[s]) == 0;
        CHECK(ok, "tracker on %s: %s", be[s]->name, ew_graph_error(g) ? ew_graph_error(g) : "?");
        if (ok) {
            out[s] = malloc(sizeof(float) * n * h * w);
            memcpy(out[s], y->data, sizeof(float) * n * h * w);
            nw = ew_param_numel(&t[s].params.items[0]);
            gw[s] = malloc(sizeof(float) * nw);
            memcpy(gw[s], t[s].params.items[0].grad, sizeof(float) * nw);
        }
        ew_graph_destroy(g);
    }
    if (out[0] && out[1]) {
        near("tracker logits", out[0], out[1], (size_t)n * h * w, 1e-4);
        near("tracker d/dconv0.weight", gw[0], gw[1], nw, 1e-3);
    }
    for (int s = 0; s < 2; s++) {
        ew_tracker_free(&t[s]);
        free(out[s]);
        free(gw[s]);
    }
    free(x);
    free(seed);
}

int main(void) {
    const char *st = getenv("EW_PARITY_SELFTEST");
    int selftest = st && st[0] == '1';
    char why[256];
    ew_backend *small[2] = {NULL, NULL};
    if (selftest) {
        DUT = selftest_backend();
        printf("self-test: CPU backend behind a forwarding device backend (not a CUDA result)\n");
    } else {
        if (ew_cuda_probe(0, why, sizeof why)) {
            if (strncmp(why, "no CUDA device", 14) == 0)
                printf("SKIP: %s\n", why);
            else
                printf("SKIP: no CUDA device (%s)\n", why);
            return 77;
        }
        DUT = ew_backend_cuda_create(NULL, why, sizeof why);
        CHECK(DUT != NULL, "cuda backend: %s", why);
        if (!DUT) return check_done();
        ew_cuda_options o = ew_cuda_defaults();
        o.conv_chunk_floats = 1; /* one image per chunk */
        small[0] = ew_backend_cuda_create(&o, why, sizeof why);
        o.conv_chunk_floats = 10000; /* 2 images + 1 on the first conv shape */
        small[1] = ew_backend_cuda_create(&o, why, sizeof why);
        printf("device: %s\n", ew_cuda_device_name(DUT));
    }
    REF = ew_backend_cpu_create(1);
    CHECK(REF && DUT, "backends");
    if (!REF || !DUT) return check_done();
    t_gemm();
    t_elementwise();
    t_sum_channels();
    t_conv(small, 2);
    t_ops();
    t_cuda_graph();
    t_fm_step();
    t_tracker();
    if (ew_backend_error(DUT)) CHECK(0, "device error at the end: %s", ew_backend_error(DUT));
    ew_backend_destroy(small[0]);
    ew_backend_destroy(small[1]);
    ew_backend_destroy(DUT);
    ew_backend_destroy(REF);
    return check_done();
}
