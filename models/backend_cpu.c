/* backend_cpu.c - the CPU backend: OpenBLAS sgemm, im2col/direct convolution, OpenMP loops.
 *
 * Threading: OpenBLAS is kept at one thread; parallel work is split here with OpenMP over
 * `threads` threads (GEMMs by column or row blocks, convolutions by groups of samples), so
 * BLAS threads never stack on OpenMP threads.
 *
 * Convolution algorithms (picked per shape by ew_cpu_conv_algo):
 *   im2col + GEMM: samples are processed in groups whose patch matrices are laid side by side,
 *     so small feature maps still give the GEMM a wide N (>= ~384 columns);
 *   1x1: a stride-1 unpadded 1x1 convolution is a GEMM on the input itself (no im2col copy
 *     when a group holds one sample);
 *   direct: plain loops, for tiny channel counts where the GEMM call overhead dominates.
 */
#include "models/backend.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    ew_backend base;
    int force_algo;
} cpu_backend;

enum { ALGO_IM2COL = 0, ALGO_DIRECT = 1, ALGO_1X1 = 2 };

/* Wide enough GEMMs to be worth splitting across threads. */
#define GEMM_SPLIT_FLOPS 4.0e6
/* Elementwise loops shorter than this run on one thread. */
#define PAR_MIN 32768
/* Target GEMM width (columns) for a group of samples in the im2col path. */
#define GROUP_COLS 384

static inline int nthreads(const ew_backend *be) { return be->threads < 1 ? 1 : be->threads; }

/* ------------------------------------------------------------------------------------------ */
/* GEMM */

static void gemm1(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                  const float *b, int ldb, float beta, float *c, int ldc) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) c[(size_t)i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[(size_t)i * ldc + j];
        return;
    }
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n,
                k, alpha, a, lda, b, ldb, beta, c, ldc);
}

static void cpu_gemm(const ew_backend *be, int ta, int tb, int m, int n, int k, float alpha,
                     const float *a, int lda, const float *b, int ldb, float beta, float *c,
                     int ldc) {
    int T = nthreads(be);
    if (T == 1 || omp_in_parallel() || 2.0 * m * n * k < GEMM_SPLIT_FLOPS || (m < 32 && n < 32)) {
        gemm1(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    if (n >= m) {
        /* column blocks, multiples of 16 */
        int chunk = ((n + T - 1) / T + 15) & ~15;
#pragma omp parallel num_threads(T)
        {
            int t = omp_get_thread_num();
            int j0 = t * chunk, j1 = j0 + chunk < n ? j0 + chunk : n;
            if (j0 < j1)
                gemm1(ta, tb, m, j1 - j0, k, alpha, a, lda, tb ? b + (size_t)j0 * ldb : b + j0, ldb,
                      beta, c + j0, ldc);
        }
    } else {
        int chunk = ((m + T - 1) / T + 7) & ~7;
#pragma omp parallel num_threads(T)
        {
            int t = omp_get_thread_num();
            int i0 = t * chunk, i1 = i0 + chunk < m ? i0 + chunk : m;
            if (i0 < i1)
                gemm1(ta, tb, i1 - i0, n, k, alpha, ta ? a + i0 : a + (size_t)i0 * lda, lda, b, ldb,
                      beta, c + (size_t)i0 * ldc, ldc);
        }
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Convolution */

int ew_cpu_conv_algo(const ew_conv_desc *d) {
    if (d->kh == 1 && d->kw == 1 && d->sh == 1 && d->sw == 1 && d->ph == 0 && d->pw == 0)
        return ALGO_1X1;
    if ((long)d->c * d->kh * d->kw * d->oc <= 256) return ALGO_DIRECT;
    return ALGO_IM2COL;
}

static int conv_algo(const ew_backend *be, const ew_conv_desc *d) {
    const cpu_backend *cb = (const cpu_backend *)be;
    if (cb->force_algo == ALGO_IM2COL || cb->force_algo == ALGO_DIRECT) return cb->force_algo;
    if (cb->force_algo == ALGO_1X1)
        return ew_cpu_conv_algo(d) == ALGO_1X1 ? ALGO_1X1 : ALGO_IM2COL;
    return ew_cpu_conv_algo(d);
}

/* Sample groups: ng groups, group i holds samples [i*n/ng, (i+1)*n/ng). */
typedef struct {
    int ng, gmax, par, T;
} grouping;

static grouping conv_grouping(const ew_backend *be, const ew_conv_desc *d) {
    grouping g;
    int P = d->oh * d->ow;
    int T = nthreads(be);
    int want = (GROUP_COLS + P - 1) / P; /* samples per group */
    if (want < 1) want = 1;
    int ng = (d->n + want - 1) / want;
    if (ng < 1) ng = 1;
    /* a multiple of T groups when there are enough samples, so threads get equal work */
    if (T > 1 && d->n >= T) {
        int r = (ng + T - 1) / T * T;
        ng = r <= d->n ? r : d->n;
    }
    g.ng = ng;
    g.gmax = (d->n + ng - 1) / ng;
    g.par = T > 1 && ng >= T;
    g.T = g.par ? T : 1;
    return g;
}

static inline int group_lo(const ew_conv_desc *d, const grouping *g, int i) {
    return (int)((long)i * d->n / g->ng);
}

/* Scratch layout per thread: col [K x gmax*P] then tmp [oc x gmax*P]; then (T-1) partial
 * weight/bias gradient buffers. */
static size_t ws_per_thread(const ew_conv_desc *d, const grouping *g) {
    size_t K = (size_t)d->c * d->kh * d->kw, W = (size_t)g->gmax * d->oh * d->ow;
    size_t s = K * W + (size_t)d->oc * W;
    return (s + 15) & ~(size_t)15;
}

static size_t cpu_conv_workspace(const ew_backend *be, const ew_conv_desc *d) {
    grouping g = conv_grouping(be, d);
    size_t K = (size_t)d->c * d->kh * d->kw;
    size_t part = ((size_t)d->oc * K + 15) & ~(size_t)15;
    return ws_per_thread(d, &g) * (size_t)g.T + part * (size_t)(g.T - 1) + 16;
}

/* Patch matrix of one sample into col (row stride ldc): row (ci*kh + ki)*kw + kj, column
 * oh*ow_count + ow. */
static void im2col(const ew_conv_desc *d, const float *x, float *col, int ldc) {
    const int P = d->ow;
    for (int ci = 0; ci < d->c; ci++) {
        const float *xc = x + (size_t)ci * d->h * d->w;
        for (int ki = 0; ki < d->kh; ki++) {
            for (int kj = 0; kj < d->kw; kj++) {
                float *row = col + (size_t)((ci * d->kh + ki) * d->kw + kj) * ldc;
                /* valid output columns: 0 <= ow*sw - pw + kj < w */
                int lo = 0, hi = d->ow;
                while (lo < hi && lo * d->sw - d->pw + kj < 0) lo++;
                while (hi > lo && (hi - 1) * d->sw - d->pw + kj >= d->w) hi--;
                for (int oy = 0; oy < d->oh; oy++) {
                    float *dst = row + (size_t)oy * P;
                    int iy = oy * d->sh - d->ph + ki;
                    if (iy < 0 || iy >= d->h) {
                        memset(dst, 0, sizeof(float) * (size_t)P);
                        continue;
                    }
                    const float *src = xc + (size_t)iy * d->w - d->pw + kj;
                    for (int ox = 0; ox < lo; ox++) dst[ox] = 0.0f;
                    if (d->sw == 1) {
                        memcpy(dst + lo, src + lo, sizeof(float) * (size_t)(hi - lo));
                    } else if (d->sw == 2) {
                        for (int ox = lo; ox < hi; ox++) dst[ox] = src[2 * ox];
                    } else {
                        for (int ox = lo; ox < hi; ox++) dst[ox] = src[(size_t)ox * d->sw];
                    }
                    for (int ox = hi; ox < P; ox++) dst[ox] = 0.0f;
                }
            }
        }
    }
}

/* Adds a patch matrix of one sample back into the image dx (inverse scatter of im2col). */
static void col2im(const ew_conv_desc *d, const float *col, int ldc, float *dx) {
    const int P = d->ow;
    for (int ci = 0; ci < d->c; ci++) {
        float *xc = dx + (size_t)ci * d->h * d->w;
        for (int ki = 0; ki < d->kh; ki++) {
            for (int kj = 0; kj < d->kw; kj++) {
                const float *row = col + (size_t)((ci * d->kh + ki) * d->kw + kj) * ldc;
                int lo = 0, hi = d->ow;
                while (lo < hi && lo * d->sw - d->pw + kj < 0) lo++;
                while (hi > lo && (hi - 1) * d->sw - d->pw + kj >= d->w) hi--;
                for (int oy = 0; oy < d->oh; oy++) {
                    int iy = oy * d->sh - d->ph + ki;
                    if (iy < 0 || iy >= d->h) continue;
                    const float *src = row + (size_t)oy * P;
                    float *dst = xc + (size_t)iy * d->w - d->pw + kj;
                    if (d->sw == 1) {
                        for (int ox = lo; ox < hi; ox++) dst[ox] += src[ox];
                    } else {
                        for (int ox = lo; ox < hi; ox++) dst[(size_t)ox * d->sw] += src[ox];
                    }
                }
            }
        }
    }
}

/* Direct loops (tiny shapes). */
static void direct_fwd(const ew_conv_desc *d, const float *x, const float *w, const float *bias,
                       float *y, int accumulate, int n0, int n1) {
    for (int n = n0; n < n1; n++)
        for (int o = 0; o < d->oc; o++)
            for (int oy = 0; oy < d->oh; oy++)
                for (int ox = 0; ox < d->ow; ox++) {
                    float s = bias ? bias[o] : 0.0f;
                    for (int ci = 0; ci < d->c; ci++)
                        for (int ki = 0; ki < d->kh; ki++) {
                            int iy = oy * d->sh - d->ph + ki;
                            if (iy < 0 || iy >= d->h) continue;
                            for (int kj = 0; kj < d->kw; kj++) {
                                int ix = ox * d->sw - d->pw + kj;
                                if (ix < 0 || ix >= d->w) continue;
                                s += w[((size_t)(o * d->c + ci) * d->kh + ki) * d->kw + kj] *
                                     x[(((size_t)n * d->c + ci) * d->h + iy) * d->w + ix];
                            }
                        }
                    float *yp = y + (((size_t)n * d->oc + o) * d->oh + oy) * d->ow + ox;
                    *yp = accumulate ? *yp + s : s;
                }
}

static void direct_bwd_data(const ew_conv_desc *d, const float *dy, const float *w, float *dx,
                            int n0, int n1) {
    for (int n = n0; n < n1; n++)
        for (int o = 0; o < d->oc; o++)
            for (int oy = 0; oy < d->oh; oy++)
                for (int ox = 0; ox < d->ow; ox++) {
                    float g = dy[(((size_t)n * d->oc + o) * d->oh + oy) * d->ow + ox];
                    for (int ci = 0; ci < d->c; ci++)
                        for (int ki = 0; ki < d->kh; ki++) {
                            int iy = oy * d->sh - d->ph + ki;
                            if (iy < 0 || iy >= d->h) continue;
                            for (int kj = 0; kj < d->kw; kj++) {
                                int ix = ox * d->sw - d->pw + kj;
                                if (ix < 0 || ix >= d->w) continue;
                                dx[(((size_t)n * d->c + ci) * d->h + iy) * d->w + ix] +=
                                    g * w[((size_t)(o * d->c + ci) * d->kh + ki) * d->kw + kj];
                            }
                        }
                }
}

static void direct_bwd_weight(const ew_conv_desc *d, const float *x, const float *dy, float *dw,
                              int n0, int n1) {
    for (int n = n0; n < n1; n++)
        for (int o = 0; o < d->oc; o++)
            for (int oy = 0; oy < d->oh; oy++)
                for (int ox = 0; ox < d->ow; ox++) {
                    float g = dy[(((size_t)n * d->oc + o) * d->oh + oy) * d->ow + ox];
                    for (int ci = 0; ci < d->c; ci++)
                        for (int ki = 0; ki < d->kh; ki++) {
                            int iy = oy * d->sh - d->ph + ki;
                            if (iy < 0 || iy >= d->h) continue;
                            for (int kj = 0; kj < d->kw; kj++) {
                                int ix = ox * d->sw - d->pw + kj;
                                if (ix < 0 || ix >= d->w) continue;
                                dw[((size_t)(o * d->c + ci) * d->kh + ki) * d->kw + kj] +=
                                    g * x[(((size_t)n * d->c + ci) * d->h + iy) * d->w + ix];
                            }
                        }
                }
}

/* Runs the body for every group gi of the grouping `g` in scope, with tid the thread index: in parallel when there are enough
 * groups (kernels then call single-threaded BLAS), else in order (GEMMs split themselves). */
#define FOR_GROUPS(gi, tid, ...)                                                             \
    do {                                                                                     \
        if (g.par) {                                                                         \
            _Pragma("omp parallel num_threads(g.T)") {                                       \
                int tid = omp_get_thread_num();                                              \
                for (int gi = tid; gi < g.ng; gi += g.T) __VA_ARGS__                          \
            }                                                                                \
        } else {                                                                             \
            int tid = 0;                                                                     \
            for (int gi = 0; gi < g.ng; gi++) __VA_ARGS__                                    \
        }                                                                                    \
    } while (0)

static void cpu_conv_fwd(const ew_backend *be, const ew_conv_desc *d, const float *x,
                         const float *w, const float *bias, float *y, int accumulate, float *ws) {
    const int algo = conv_algo(be, d);
    const size_t K = (size_t)d->c * d->kh * d->kw, P = (size_t)d->oh * d->ow;
    const size_t xs = (size_t)d->c * d->h * d->w, ys = (size_t)d->oc * P;
    if (algo == ALGO_DIRECT) {
        int T = nthreads(be);
#pragma omp parallel for num_threads(T) schedule(static) if (T > 1 && d->n > 1)
        for (int n = 0; n < d->n; n++) direct_fwd(d, x, w, bias, y, accumulate, n, n + 1);
        return;
    }
    grouping g = conv_grouping(be, d);
    size_t wpt = ws_per_thread(d, &g);
    FOR_GROUPS(gi, tid, {
        int n0 = group_lo(d, &g, gi), n1 = group_lo(d, &g, gi + 1), gc = n1 - n0;
        int ld = (int)((size_t)gc * P);
        float *col = ws + (size_t)tid * wpt;
        float *tmp = col + K * (size_t)g.gmax * P;
        const float *B = col;
        if (algo == ALGO_1X1 && gc == 1) {
            B = x + (size_t)n0 * xs;
        } else {
            for (int s = 0; s < gc; s++) im2col(d, x + (size_t)(n0 + s) * xs, col + (size_t)s * P, ld);
        }
        if (gc == 1) {
            float *yo = y + (size_t)n0 * ys;
            cpu_gemm(be, 0, 0, d->oc, (int)P, (int)K, 1.0f, w, (int)K, B, ld, accumulate ? 1.0f : 0.0f,
                     yo, (int)P);
            if (bias)
                for (int o = 0; o < d->oc; o++) {
                    float bo = bias[o];
                    float *r = yo + (size_t)o * P;
                    for (size_t p = 0; p < P; p++) r[p] += bo;
                }
        } else {
            cpu_gemm(be, 0, 0, d->oc, ld, (int)K, 1.0f, w, (int)K, B, ld, 0.0f, tmp, ld);
            for (int s = 0; s < gc; s++)
                for (int o = 0; o < d->oc; o++) {
                    float bo = bias ? bias[o] : 0.0f;
                    const float *src = tmp + (size_t)o * ld + (size_t)s * P;
                    float *dst = y + (size_t)(n0 + s) * ys + (size_t)o * P;
                    if (accumulate)
                        for (size_t p = 0; p < P; p++) dst[p] += src[p] + bo;
                    else
                        for (size_t p = 0; p < P; p++) dst[p] = src[p] + bo;
                }
        }
    });
}

static void cpu_conv_bwd_data(const ew_backend *be, const ew_conv_desc *d, const float *dy,
                              const float *w, float *dx, int accumulate, float *ws) {
    const int algo = conv_algo(be, d);
    const size_t K = (size_t)d->c * d->kh * d->kw, P = (size_t)d->oh * d->ow;
    const size_t xs = (size_t)d->c * d->h * d->w, ys = (size_t)d->oc * P;
    if (algo == ALGO_DIRECT) {
        int T = nthreads(be);
#pragma omp parallel for num_threads(T) schedule(static) if (T > 1 && d->n > 1)
        for (int n = 0; n < d->n; n++) {
            if (!accumulate) memset(dx + (size_t)n * xs, 0, sizeof(float) * xs);
            direct_bwd_data(d, dy, w, dx, n, n + 1);
        }
        return;
    }
    grouping g = conv_grouping(be, d);
    size_t wpt = ws_per_thread(d, &g);
    FOR_GROUPS(gi, tid, {
        int n0 = group_lo(d, &g, gi), n1 = group_lo(d, &g, gi + 1), gc = n1 - n0;
        int ld = (int)((size_t)gc * P);
        float *col = ws + (size_t)tid * wpt;
        float *tmp = col + K * (size_t)g.gmax * P;
        const float *A = dy + (size_t)n0 * ys;
        if (gc > 1) {
            for (int s = 0; s < gc; s++)
                for (int o = 0; o < d->oc; o++)
                    memcpy(tmp + (size_t)o * ld + (size_t)s * P, dy + (size_t)(n0 + s) * ys + (size_t)o * P,
                           sizeof(float) * P);
            A = tmp;
        }
        if (algo == ALGO_1X1 && gc == 1) {
            cpu_gemm(be, 1, 0, d->c, (int)P, d->oc, 1.0f, w, (int)K, A, ld, accumulate ? 1.0f : 0.0f,
                     dx + (size_t)n0 * xs, (int)P);
        } else {
            cpu_gemm(be, 1, 0, (int)K, ld, d->oc, 1.0f, w, (int)K, A, ld, 0.0f, col, ld);
            for (int s = 0; s < gc; s++) {
                float *dxs = dx + (size_t)(n0 + s) * xs;
                if (!accumulate) memset(dxs, 0, sizeof(float) * xs);
                col2im(d, col + (size_t)s * P, ld, dxs);
            }
        }
    });
}

static void cpu_conv_bwd_weight(const ew_backend *be, const ew_conv_desc *d, const float *x,
                                const float *dy, float *dw, float *ws) {
    const int algo = conv_algo(be, d);
    const size_t K = (size_t)d->c * d->kh * d->kw, P = (size_t)d->oh * d->ow;
    const size_t xs = (size_t)d->c * d->h * d->w, ys = (size_t)d->oc * P;
    const size_t wn = (size_t)d->oc * K;
    if (algo == ALGO_DIRECT) {
        direct_bwd_weight(d, x, dy, dw, 0, d->n);
        return;
    }
    grouping g = conv_grouping(be, d);
    size_t wpt = ws_per_thread(d, &g);
    size_t part = (wn + 15) & ~(size_t)15;
    float *parts = ws + wpt * (size_t)g.T;
    if (g.T > 1) memset(parts, 0, sizeof(float) * part * (size_t)(g.T - 1));
    FOR_GROUPS(gi, tid, {
        int n0 = group_lo(d, &g, gi), n1 = group_lo(d, &g, gi + 1), gc = n1 - n0;
        int ld = (int)((size_t)gc * P);
        float *col = ws + (size_t)tid * wpt;
        float *tmp = col + K * (size_t)g.gmax * P;
        float *dwt = tid == 0 ? dw : parts + (size_t)(tid - 1) * part;
        const float *A = dy + (size_t)n0 * ys;
        const float *B = col;
        if (gc > 1) {
            for (int s = 0; s < gc; s++)
                for (int o = 0; o < d->oc; o++)
                    memcpy(tmp + (size_t)o * ld + (size_t)s * P, dy + (size_t)(n0 + s) * ys + (size_t)o * P,
                           sizeof(float) * P);
            A = tmp;
        }
        if (algo == ALGO_1X1 && gc == 1) {
            B = x + (size_t)n0 * xs;
        } else {
            for (int s = 0; s < gc; s++) im2col(d, x + (size_t)(n0 + s) * xs, col + (size_t)s * P, ld);
        }
        cpu_gemm(be, 0, 1, d->oc, (int)K, ld, 1.0f, A, ld, B, ld, 1.0f, dwt, (int)K);
    });
    for (int t = 1; t < g.T; t++) {
        const float *pt = parts + (size_t)(t - 1) * part;
        for (size_t i = 0; i < wn; i++) dw[i] += pt[i];
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Elementwise */

static inline float sigmoidf_(float x) {
    if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

static void cpu_unary(const ew_backend *be, ew_unary_op op, float alpha, size_t n, const float *x,
                      float *y) {
    int T = nthreads(be);
    long N = (long)n;
    switch (op) {
    case EW_UNARY_RELU:
#pragma omp parallel for num_threads(T) schedule(static) if (T > 1 && N > PAR_MIN)
        for (long i = 0; i < N; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
        break;
    case EW_UNARY_LEAKY_RELU:
#pragma omp parallel for num_threads(T) schedule(static) if (T > 1 && N > PAR_MIN)
        for (long i = 0; i < N; i++) y[i] = x[i] > 0.0f ? x[i] : alpha * x[i];
        break;
    case EW_UNARY_TANH:
#pragma omp parallel for num_threads(T) schedule(static) if (T > 1 && N > PAR_MIN)
        for (long i = 0; i < N; i++) y[i] = tanhf(x[i]);
        break;
    case EW_UNARY_SIGMOID:
#pragma omp parallel for num_threads(T) schedule(static) if (T > 1 && N > PAR_MIN)
        for (long i = 0; i < N; i++) y[i] = sigmoidf_(x[i]);
        break;
    case EW_UNARY_SOFTPLUS:
#pragma omp parallel for num_threads(T) schedule(static) if (T > 1 && N > PAR_MIN)
        for (long i = 0; i < N; i++) y[i] = log1pf(expf(-fabsf(x[i]))) + (x[i] > 0.0f ? x[i] : 0.0f);
        break;
    case EW_UNARY_EXP:
#pragma omp parallel for num_threads(T) schedule(static) if (T > 1 && N > PAR_MIN)
        for (long i = 0; i < N; i++) y[i] = expf(x[i]);
        break;
    case EW_UNARY_LOG:
#pragma omp parallel for num_threads(T) schedule(static) if (T > 1 && N > PAR_MIN)
        for (long i = 0; i < N; i++) y[i] = logf(x[i]);
        break;
    case EW_UNARY_SQUARE:
#pragma omp parallel for num_threads(T) schedule(static) if (T > 1 && N > PAR_MIN)
        for (long i = 0; i < N; i++) y[i] = x[i] * x[i];
        break;
    case EW_UNARY_SCALE:
#pragma omp parallel for num_threads(T) schedule(static) if (T > 1 && N > PAR_MIN)
        for (long i = 0; i < N; i++) y[i] = alpha * x[i];
        break;
    case EW_UNARY_ADD_SCALAR:
#pragma omp parallel for num_threads(T) schedule(static) if (T > 1 && N > PAR_MIN)
        for (long i = 0; i < N; i++) y[i] = x[i] + alpha;
        break;
    default:
        break;
    }
}

static void cpu_unary_bwd(const ew_backend *be, ew_unary_op op, float alpha, size_t n,
                          const float *x, const float *y, const float *dy, float *dx) {
    int T = nthreads(be);
    long N = (long)n;
    switch (op) {
    case EW_UNARY_RELU:
#pragma omp parallel for num_threads(T) schedule(static) if (T > 1 && N > PAR_MIN)
        for (long i = 0; i < N; i++) dx[i] += x[i] > 0.0f ? dy[i] : 0.0f;
        break;
    case EW_UNARY_LEAKY_RELU:
#pragma omp parallel for num_threads(T) schedule(static) if (T > 1 && N > PAR_MIN)
        for (long i = 0; i < N; i++) dx[i] += x[i] > 0.0f ? dy[i] : alpha * dy[i];
        break;
    case EW_UNARY_TANH:
#pragma omp parallel for num_threads(T) schedule(static) if (T > 1 && N > PAR_MIN)
        for (long i = 0; i < N; i++) dx[i] += dy[i] * (1.0f - y[i] * y[i]);
        break;
    case EW_UNARY_SIGMOID:
#pragma omp parallel for num_threads(T) schedule(static) if (T > 1 && N > PAR_MIN)
        for (long i = 0; i < N; i++) dx[i] += dy[i] * y[i] * (1.0f - y[i]);
        break;
    case EW_UNARY_SOFTPLUS:
#pragma omp parallel for num_threads(T) schedule(static) if (T > 1 && N > PAR_MIN)
        for (long i = 0; i < N; i++) dx[i] += dy[i] * sigmoidf_(x[i]);
        break;
    case EW_UNARY_EXP:
#pragma omp parallel for num_threads(T) schedule(static) if (T > 1 && N > PAR_MIN)
        for (long i = 0; i < N; i++) dx[i] += dy[i] * y[i];
        break;
    case EW_UNARY_LOG:
#pragma omp parallel for num_threads(T) schedule(static) if (T > 1 && N > PAR_MIN)
        for (long i = 0; i < N; i++) dx[i] += dy[i] / x[i];
        break;
    case EW_UNARY_SQUARE:
#pragma omp parallel for num_threads(T) schedule(static) if (T > 1 && N > PAR_MIN)
        for (long i = 0; i < N; i++) dx[i] += 2.0f * x[i] * dy[i];
        break;
    case EW_UNARY_SCALE:
#pragma omp parallel for num_threads(T) schedule(static) if (T > 1 && N > PAR_MIN)
        for (long i = 0; i < N; i++) dx[i] += alpha * dy[i];
        break;
    case EW_UNARY_ADD_SCALAR:
#pragma omp parallel for num_threads(T) schedule(static) if (T > 1 && N > PAR_MIN)
        for (long i = 0; i < N; i++) dx[i] += dy[i];
        break;
    default:
        break;
    }
}

static void cpu_binary(const ew_backend *be, ew_binary_op op, size_t n, const float *a,
                       const float *b, float *y) {
    int T = nthreads(be);
    long N = (long)n;
    switch (op) {
    case EW_BINARY_ADD:
#pragma omp parallel for num_threads(T) schedule(static) if (T > 1 && N > PAR_MIN)
        for (long i = 0; i < N; i++) y[i] = a[i] + b[i];
        break;
    case EW_BINARY_SUB:
#pragma omp parallel for num_threads(T) schedule(static) if (T > 1 && N > PAR_MIN)
        for (long i = 0; i < N; i++) y[i] = a[i] - b[i];
        break;
    case EW_BINARY_MUL:
#pragma omp parallel for num_threads(T) schedule(static) if (T > 1 && N > PAR_MIN)
        for (long i = 0; i < N; i++) y[i] = a[i] * b[i];
        break;
    case EW_BINARY_DIV:
#pragma omp parallel for num_threads(T) schedule(static) if (T > 1 && N > PAR_MIN)
        for (long i = 0; i < N; i++) y[i] = a[i] / b[i];
        break;
    }
}

static void cpu_axpy_(int T, long N, float alpha, const float *x, float *y);

static void cpu_binary_bwd(const ew_backend *be, ew_binary_op op, size_t n, const float *a,
                           const float *b, const float *dy, float *da, float *db) {
    int T = nthreads(be);
    long N = (long)n;
    switch (op) {
    case EW_BINARY_ADD:
    case EW_BINARY_SUB:
        if (da) cpu_axpy_(T, N, 1.0f, dy, da);
        if (db) cpu_axpy_(T, N, op == EW_BINARY_ADD ? 1.0f : -1.0f, dy, db);
        break;
    case EW_BINARY_MUL:
        if (da) {
#pragma omp parallel for num_threads(T) schedule(static) if (T > 1 && N > PAR_MIN)
            for (long i = 0; i < N; i++) da[i] += dy[i] * b[i];
        }
        if (db) {
#pragma omp parallel for num_threads(T) schedule(static) if (T > 1 && N > PAR_MIN)
            for (long i = 0; i < N; i++) db[i] += dy[i] * a[i];
        }
        break;
    case EW_BINARY_DIV:
        if (da) {
#pragma omp parallel for num_threads(T) schedule(static) if (T > 1 && N > PAR_MIN)
            for (long i = 0; i < N; i++) da[i] += dy[i] / b[i];
        }
        if (db) {
#pragma omp parallel for num_threads(T) schedule(static) if (T > 1 && N > PAR_MIN)
            for (long i = 0; i < N; i++) db[i] -= dy[i] * a[i] / (b[i] * b[i]);
        }
        break;
    }
}

static void cpu_axpy(const ew_backend *be, size_t n, float alpha, const float *x, float *y) {
    cpu_axpy_(nthreads(be), (long)n, alpha, x, y);
}

static void cpu_axpy_(int T, long N, float alpha, const float *x, float *y) {
    if (alpha == 1.0f) {
#pragma omp parallel for num_threads(T) schedule(static) if (T > 1 && N > PAR_MIN)
        for (long i = 0; i < N; i++) y[i] += x[i];
    } else {
#pragma omp parallel for num_threads(T) schedule(static) if (T > 1 && N > PAR_MIN)
        for (long i = 0; i < N; i++) y[i] += alpha * x[i];
    }
}

static void cpu_sum_channels(const ew_backend *be, int rows, int ch, int inner, const float *x,
                             float *out, int accumulate) {
    int T = nthreads(be);
    long work = (long)rows * ch * inner;
#pragma omp parallel for num_threads(T) schedule(static) if (T > 1 && ch >= T && work > PAR_MIN)
    for (int c = 0; c < ch; c++) {
        double s = 0.0;
        for (int r = 0; r < rows; r++) {
            const float *p = x + ((size_t)r * ch + c) * inner;
            float part = 0.0f;
            for (int i = 0; i < inner; i++) part += p[i];
            s += part;
        }
        out[c] = accumulate ? out[c] + (float)s : (float)s;
    }
}

/* ------------------------------------------------------------------------------------------ */

int ew_set_threads(ew_backend *be, int threads) {
    if (threads < 1) threads = 1;
    be->threads = threads;
    /* our own OpenMP threads do the splitting; OpenBLAS must not add its own on top */
    openblas_set_num_threads(1);
    return threads;
}

ew_backend *ew_backend_cpu_create(int threads) {
    cpu_backend *cb = calloc(1, sizeof *cb);
    if (!cb) return NULL;
    ew_backend *be = &cb->base;
    be->name = "cpu";
    be->gemm = cpu_gemm;
    be->conv_workspace = cpu_conv_workspace;
    be->conv_fwd = cpu_conv_fwd;
    be->conv_bwd_data = cpu_conv_bwd_data;
    be->conv_bwd_weight = cpu_conv_bwd_weight;
    be->unary = cpu_unary;
    be->unary_bwd = cpu_unary_bwd;
    be->binary = cpu_binary;
    be->binary_bwd = cpu_binary_bwd;
    be->axpy = cpu_axpy;
    be->sum_channels = cpu_sum_channels;
    cb->force_algo = -1;
    ew_set_threads(be, threads);
    return be;
}

void ew_backend_destroy(ew_backend *be) { free(be); }

int ew_cpu_force_conv_algo(ew_backend *be, int algo) {
    if (be->gemm != cpu_gemm || algo < -1 || algo > ALGO_1X1) return -1;
    ((cpu_backend *)be)->force_algo = algo;
    return 0;
}
