/* backend_cpu.c - the CPU backend: OpenBLAS sgemm, im2col/direct convolution, OpenMP loops.
 *
 * GEMM: on processors with AVX-512F the backend's own packed kernel (gemm_avx512.c) runs, as
 * the Debian OpenBLAS build falls back to AVX2 kernels on CPUs it does not know; elsewhere,
 * or when asked (ew_cpu_set_gemm), OpenBLAS sgemm.
 *
 * Threading: OpenBLAS is kept at one thread; parallel work is split here with OpenMP over
 * `threads` threads (GEMMs by column or row blocks, convolutions by groups of samples), so
 * BLAS threads never stack on OpenMP threads.
 *
 * Convolution algorithms (picked per shape by ew_cpu_conv_algo):
 *   im2col + GEMM: samples are processed in groups whose patch matrices are laid side by side,
 *     so small feature maps still give the GEMM a wide N (>= ~384 columns, group sizes chosen
 *     to fill the kernel's 48-column tiles). With the own AVX-512 GEMM the patch matrix is
 *     implicit: forward and weight-gradient GEMMs pack it from a per-group copy of the input
 *     (phase-split or zero-padded) in contiguous runs; the data gradient is a GEMM into patch
 *     rows, channel block by channel block, folded back by col2im (register paths for
 *     4x4 stride-2 and narrow stride-1 rows);
 *   1x1: a stride-1 unpadded 1x1 convolution is a GEMM on the input itself (no im2col copy
 *     when a group holds one sample);
 *   direct: plain loops, for tiny channel counts where the GEMM call overhead dominates.
 */
#include "models/backend.h"

#include <cblas.h>
#include "models/gemm_cpu.h"
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    ew_backend base;
    int force_algo;
    int force_pack;     /* implicit im2col packing: -1 per shape, 0 gathers, 1 runs */
    int gemm_impl;      /* EW_CPU_GEMM_* asked for */
    int use_own;        /* resolved: the packed AVX-512 GEMM */
    int simd;           /* the processor has AVX-512F: vector elementwise loops */
    int nbuf;           /* packing buffers for threads 0..nbuf-1 */
    float **pack_a, **pack_b;
} cpu_backend;

enum { ALGO_IM2COL = 0, ALGO_DIRECT = 1, ALGO_1X1 = 2 };

/* Wide enough GEMMs to be worth splitting across threads. */
#define GEMM_SPLIT_FLOPS 4.0e6
/* Elementwise loops shorter than this run on one thread. */
#define PAR_MIN 32768
/* Patch-matrix floats computed at a time before col2im consumes them (half of a 1 MiB L2). */
#define COL_BLOCK_FLOATS 131072
/* Target GEMM width (columns) for a group of samples in the im2col path. */
#define GROUP_COLS 384

static inline int nthreads(const ew_backend *be) { return be->threads < 1 ? 1 : be->threads; }

/* ------------------------------------------------------------------------------------------ */
/* GEMM */

static void gemm1(const ew_backend *be, int ta, int tb, int m, int n, int k, float alpha,
                  const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) c[(size_t)i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[(size_t)i * ldc + j];
        return;
    }
    const cpu_backend *cb = (const cpu_backend *)be;
    if (cb->use_own && alpha == 1.0f && (beta == 0.0f || beta == 1.0f) && omp_get_level() <= 1) {
        int t = omp_get_thread_num();
        if (t < cb->nbuf) {
            ew_gemm_avx512(ta, tb, m, n, k, a, lda, b, ldb, beta == 1.0f, c, ldc, cb->pack_a[t], cb->pack_b[t]);
            return;
        }
    }
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n,
                k, alpha, a, lda, b, ldb, beta, c, ldc);
}

static void cpu_gemm(const ew_backend *be, int ta, int tb, int m, int n, int k, float alpha,
                     const float *a, int lda, const float *b, int ldb, float beta, float *c,
                     int ldc) {
    int T = nthreads(be);
    if (T == 1 || omp_in_parallel() || 2.0 * m * n * k < GEMM_SPLIT_FLOPS || (m < 32 && n < 32)) {
        gemm1(be, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
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
                gemm1(be, ta, tb, m, j1 - j0, k, alpha, a, lda, tb ? b + (size_t)j0 * ldb : b + j0, ldb,
                      beta, c + j0, ldc);
        }
    } else {
        int chunk = ((m + T - 1) / T + 7) & ~7;
#pragma omp parallel num_threads(T)
        {
            int t = omp_get_thread_num();
            int i0 = t * chunk, i1 = i0 + chunk < m ? i0 + chunk : m;
            if (i0 < i1)
                gemm1(be, ta, tb, i1 - i0, n, k, alpha, ta ? a + i0 : a + (size_t)i0 * lda, lda, b, ldb,
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
    /* among group sizes want..4*want, the one whose GEMM widths waste the least of the
     * kernel's 48-column tiles (ties: the smallest) */
    int ng = 0;
    double best = 2.0;
    for (int gs = want; gs <= 4 * want; gs++) {
        int cand = (d->n + gs - 1) / gs;
        if (cand < 1) cand = 1;
        /* a multiple of T groups when there are enough samples, so threads get equal work */
        if (T > 1 && d->n >= T) {
            int r = (cand + T - 1) / T * T;
            cand = r <= d->n ? r : d->n;
        }
        long cols = 0, padded = 0;
        for (int i = 0; i < cand; i++) {
            long w = (long)((long)(i + 1) * d->n / cand - (long)i * d->n / cand) * P;
            cols += w;
            padded += (w + EW_GEMM_NR - 1) / EW_GEMM_NR * EW_GEMM_NR;
        }
        double waste = cols > 0 ? (double)(padded - cols) / (double)cols : 0.0;
        if (waste < best - 1e-12) {
            best = waste;
            ng = cand;
        }
        if (gs >= d->n) break;
    }
    if (ng < 1) ng = 1;
    g.ng = ng;
    g.gmax = (d->n + ng - 1) / ng;
    g.par = T > 1 && ng >= T;
    g.T = g.par ? T : 1;
    return g;
}

static inline int group_lo(const ew_conv_desc *d, const grouping *g, int i) {
    return (int)((long)i * d->n / g->ng);
}

/* Scratch layout per thread: col [K x gmax*P], tmp [oc x gmax*P], position tables
 * [3 x gmax*P ints]; then (T-1) partial weight gradients; then the K tables [3 x K ints]. */
/* Floats of the input copies the run packers read (see pack_cols_fwd_runs), 16 of slack. */
static size_t relayout_fwd_floats(const ew_conv_desc *d, int gc) {
    size_t yq = (size_t)d->oh + (size_t)(d->kh - 1) / d->sh, xq = (size_t)d->ow + (size_t)(d->kw - 1) / d->sw;
    return (size_t)gc * d->c * d->sh * d->sw * yq * xq + 16;
}
static size_t relayout_bwdw_floats(const ew_conv_desc *d, int gc) {
    return (size_t)gc * d->c * (size_t)(d->h + 2 * d->ph) * (size_t)(d->w + 2 * d->pw) + 16;
}

/* The col area: an explicit patch matrix for the group, or the run packers' input copy. */
static size_t col_floats(const ew_conv_desc *d, const grouping *g) {
    size_t s = (size_t)d->c * d->kh * d->kw * g->gmax * d->oh * d->ow;
    size_t f = relayout_fwd_floats(d, g->gmax), b = relayout_bwdw_floats(d, g->gmax);
    if (f > s) s = f;
    if (b > s) s = b;
    return (s + 15) & ~(size_t)15;
}

/* Scratch of col2im (its phase planes). */
static size_t col2im_buf_floats(const ew_conv_desc *d) {
    return (size_t)d->sw * d->oh * (size_t)(d->ow + (d->kw - 1) / d->sw) + 16;
}

static size_t ws_per_thread(const ew_conv_desc *d, const grouping *g) {
    size_t W = (size_t)g->gmax * d->oh * d->ow;
    /* + the data gradient's dy group packed once for the GEMM (oc x W rounded up to the
     * GEMM's 48-column slivers, 64-byte aligned) */
    size_t s = col_floats(d, g) + (size_t)d->oc * W + 3 * W + col2im_buf_floats(d) +
               (size_t)d->oc * (W + EW_GEMM_NR) + 16;
    return (s + 15) & ~(size_t)15;
}

static size_t ws_part(const ew_conv_desc *d) {
    return ((size_t)d->oc * d->c * d->kh * d->kw + 15) & ~(size_t)15;
}

/* The weights packed once per call for the own GEMM (forward: w as oc x K; data gradient:
 * w^T as K x oc), after everything else. */
static size_t prepack_floats(const ew_conv_desc *d) {
    int K = d->c * d->kh * d->kw;
    size_t f = ew_gemm_prepack_a_floats(d->oc, K), b = ew_gemm_prepack_a_floats(K, d->oc);
    return f > b ? f : b;
}

static size_t ws_before_prepack(const ew_conv_desc *d, const grouping *g) {
    size_t K = (size_t)d->c * d->kh * d->kw;
    return ws_per_thread(d, g) * (size_t)g->T + ws_part(d) * (size_t)(g->T - 1) + 3 * K + 16;
}

static size_t cpu_conv_workspace(const ew_backend *be, const ew_conv_desc *d) {
    grouping g = conv_grouping(be, d);
    return ws_before_prepack(d, &g) + prepack_floats(d);
}

/* ------------------------------------------------------------------------------------------ */
/* Implicit im2col for the packed AVX-512 GEMM: the patch matrix is never written; the GEMM's
 * b-panel packing gathers it straight from the image. Tables: per patch row kk (c, ki, kj):
 * koff = c*h*w + ki*w + kj, ki, kj; per column (sample s of the group, output oy, ox):
 * pbase = s*c*h*w + iy0*w + ix0, iy0 = oy*sh - ph, ix0 = ox*sw - pw. Element (kk, col) is
 * x[pbase + koff] when 0 <= iy0+ki < h and 0 <= ix0+kj < w, else 0. */
typedef struct {
    const ew_conv_desc *d;
    const float *x;     /* first sample of the group */
    const int *koff, *kki, *kkj;
    const int *pbase, *piy, *pix;
} implicit_cols;

static void k_tables(const ew_conv_desc *d, int *koff, int *kki, int *kkj) {
    int kk = 0;
    for (int c = 0; c < d->c; c++)
        for (int ki = 0; ki < d->kh; ki++)
            for (int kj = 0; kj < d->kw; kj++, kk++) {
                koff[kk] = (c * d->h + ki) * d->w + kj;
                kki[kk] = ki;
                kkj[kk] = kj;
            }
}

static void pos_tables(const ew_conv_desc *d, int gc, int *pbase, int *piy, int *pix) {
    int j = 0, chw = d->c * d->h * d->w;
    for (int s = 0; s < gc; s++)
        for (int oy = 0; oy < d->oh; oy++)
            for (int ox = 0; ox < d->ow; ox++, j++) {
                piy[j] = oy * d->sh - d->ph;
                pix[j] = ox * d->sw - d->pw;
                pbase[j] = s * chw + piy[j] * d->w + pix[j];
            }
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define NRV (EW_GEMM_NR / 16)

static inline __mmask16 lane_mask(int cols, int v) {
    int lanes = cols - 16 * v;
    return lanes >= 16 ? (__mmask16)0xFFFF : lanes <= 0 ? (__mmask16)0 : (__mmask16)((1u << lanes) - 1u);
}

/* b = patch matrix (rows: patch index kk, columns: output positions) */
__attribute__((target("avx512f"))) static void pack_cols_fwd_gather(const void *vctx, int k0, int kc, int j0, int nc,
                                                             float *bp) {
    const implicit_cols *ic = vctx;
    const __m512i H = _mm512_set1_epi32(ic->d->h), W = _mm512_set1_epi32(ic->d->w);
    for (int s = 0; s * EW_GEMM_NR < nc; s++) {
        float *dst = bp + (size_t)s * kc * EW_GEMM_NR;
        int jb = j0 + s * EW_GEMM_NR, cols = nc - s * EW_GEMM_NR;
        __m512i base[NRV], iy0[NRV], ix0[NRV];
        __mmask16 valid[NRV];
        for (int v = 0; v < NRV; v++) {
            valid[v] = lane_mask(cols, v);
            base[v] = _mm512_maskz_loadu_epi32(valid[v], ic->pbase + jb + 16 * v);
            iy0[v] = _mm512_maskz_loadu_epi32(valid[v], ic->piy + jb + 16 * v);
            ix0[v] = _mm512_maskz_loadu_epi32(valid[v], ic->pix + jb + 16 * v);
        }
        for (int k = 0; k < kc; k++) {
            int kk = k0 + k;
            __m512i ki = _mm512_set1_epi32(ic->kki[kk]), kj = _mm512_set1_epi32(ic->kkj[kk]);
            __m512i off = _mm512_set1_epi32(ic->koff[kk]);
            float *o = dst + (size_t)k * EW_GEMM_NR;
            for (int v = 0; v < NRV; v++) {
                __mmask16 m = valid[v] & _mm512_cmplt_epu32_mask(_mm512_add_epi32(iy0[v], ki), H) &
                              _mm512_cmplt_epu32_mask(_mm512_add_epi32(ix0[v], kj), W);
                __m512 g = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, _mm512_add_epi32(base[v], off), ic->x, 4);
                _mm512_store_ps(o + 16 * v, g);
            }
        }
    }
}

/* b = transposed patch matrix (rows: output positions, columns: patch index kk) */
__attribute__((target("avx512f"))) static void pack_cols_bwdw_gather(const void *vctx, int k0, int kc, int j0, int nc,
                                                              float *bp) {
    const implicit_cols *ic = vctx;
    const __m512i H = _mm512_set1_epi32(ic->d->h), W = _mm512_set1_epi32(ic->d->w);
    for (int s = 0; s * EW_GEMM_NR < nc; s++) {
        float *dst = bp + (size_t)s * kc * EW_GEMM_NR;
        int jb = j0 + s * EW_GEMM_NR, cols = nc - s * EW_GEMM_NR;
        __m512i off[NRV], ki[NRV], kj[NRV];
        __mmask16 valid[NRV];
        for (int v = 0; v < NRV; v++) {
            valid[v] = lane_mask(cols, v);
            off[v] = _mm512_maskz_loadu_epi32(valid[v], ic->koff + jb + 16 * v);
            ki[v] = _mm512_maskz_loadu_epi32(valid[v], ic->kki + jb + 16 * v);
            kj[v] = _mm512_maskz_loadu_epi32(valid[v], ic->kkj + jb + 16 * v);
        }
        for (int k = 0; k < kc; k++) {
            int pos = k0 + k;
            __m512i iy = _mm512_set1_epi32(ic->piy[pos]), ix = _mm512_set1_epi32(ic->pix[pos]);
            __m512i base = _mm512_set1_epi32(ic->pbase[pos]);
            float *o = dst + (size_t)k * EW_GEMM_NR;
            for (int v = 0; v < NRV; v++) {
                __mmask16 m = valid[v] & _mm512_cmplt_epu32_mask(_mm512_add_epi32(ki[v], iy), H) &
                              _mm512_cmplt_epu32_mask(_mm512_add_epi32(kj[v], ix), W);
                __m512 g = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, _mm512_add_epi32(off[v], base), ic->x, 4);
                _mm512_store_ps(o + 16 * v, g);
            }
        }
    }
}

/* Run-based packing from a re-laid-out copy of the group's input (built per group by
 * relayout_fwd / relayout_bwdw below, in the thread's col scratch): every patch element is then
 * an unmasked load with no bounds test, and consecutive columns are consecutive floats.
 *   forward (rows kk, columns = output positions): a phase split of the zero-padded input,
 *     q[s][c][py][px][Y][X] = x[s][c][sh*Y + py - ph][sw*X + px - pw], so element
 *     (c, ki, kj | oy, ox) is q[s][c][ki%sh][kj%sw][oy + ki/sh][ox + kj/sw]: runs along ox;
 *   bwdw (rows = output positions, columns kk): the zero-padded input, element
 *     (oy, ox | c, ki, kj) is xp[s][c][sh*oy + ki][sw*ox + kj]: runs along kj.
 * Tables: koff[kk] and pbase[col] are offsets into the copy, pix[col] holds ox (forward).
 * A run is copied with a 16-float load and store; the store may spill past the run into
 * columns written later (or into the buffer's slack), so runs go in increasing order and the
 * zero tail of a short sliver is written last. The copy has 16 floats of slack at its end. */
typedef struct {
    int dst, base, len; /* column offset in the sliver, source offset, length (<= 16) */
} pack_run;

__attribute__((target("avx512f"))) static void pack_cols_fwd_runs(const void *vctx, int k0, int kc, int j0, int nc,
                                                                  float *bp) {
    const implicit_cols *ic = vctx;
    const int ow = ic->d->ow;
    pack_run runs[EW_GEMM_NR];
    for (int s = 0; s * EW_GEMM_NR < nc; s++) {
        float *dst = bp + (size_t)s * kc * EW_GEMM_NR;
        int jb = j0 + s * EW_GEMM_NR, cols = nc - s * EW_GEMM_NR < EW_GEMM_NR ? nc - s * EW_GEMM_NR : EW_GEMM_NR;
        int nr = 0;
        for (int j = 0; j < cols;) {
            int len = ow - ic->pix[jb + j];
            if (len > cols - j) len = cols - j;
            if (len > 16) len = 16;
            runs[nr++] = (pack_run){j, ic->pbase[jb + j], len};
            j += len;
        }
        for (int k = 0; k < kc; k++) {
            const float *src = ic->x + ic->koff[k0 + k];
            float *o = dst + (size_t)k * EW_GEMM_NR;
            for (int r = 0; r < nr; r++) _mm512_storeu_ps(o + runs[r].dst, _mm512_loadu_ps(src + runs[r].base));
            if (cols < EW_GEMM_NR) memset(o + cols, 0, sizeof(float) * (size_t)(EW_GEMM_NR - cols));
        }
    }
}

__attribute__((target("avx512f"))) static void pack_cols_bwdw_runs(const void *vctx, int k0, int kc, int j0, int nc,
                                                                   float *bp) {
    const implicit_cols *ic = vctx;
    const int kw = ic->d->kw;
    pack_run runs[EW_GEMM_NR];
    for (int s = 0; s * EW_GEMM_NR < nc; s++) {
        float *dst = bp + (size_t)s * kc * EW_GEMM_NR;
        int jb = j0 + s * EW_GEMM_NR, cols = nc - s * EW_GEMM_NR < EW_GEMM_NR ? nc - s * EW_GEMM_NR : EW_GEMM_NR;
        int nr = 0, all4 = 1;
        for (int j = 0; j < cols;) {
            int len = kw - ic->kkj[jb + j];
            if (len > cols - j) len = cols - j;
            if (len > 16) len = 16;
            all4 &= len == 4 && j == 4 * nr;
            runs[nr++] = (pack_run){j, ic->koff[jb + j], len};
            j += len;
        }
        for (int k = 0; k < kc; k++) {
            const float *src = ic->x + ic->pbase[k0 + k];
            float *o = dst + (size_t)k * EW_GEMM_NR;
            if (all4) /* 4x4 kernels: every run is one (c, ki) row of 4 */
                for (int r = 0; r < nr; r++) _mm_storeu_ps(o + 4 * r, _mm_loadu_ps(src + runs[r].base));
            else
                for (int r = 0; r < nr; r++) _mm512_storeu_ps(o + runs[r].dst, _mm512_loadu_ps(src + runs[r].base));
            if (cols < EW_GEMM_NR) memset(o + cols, 0, sizeof(float) * (size_t)(EW_GEMM_NR - cols));
        }
    }
}

/* Which packer: runs where they beat gathers (force: 0 gather, 1 runs). */
static int runs_fwd(const ew_conv_desc *d, int force) { return force >= 0 ? force : d->ow >= 3; }
static int runs_bwdw(const ew_conv_desc *d, int force) { return force >= 0 ? force : d->kw >= 3; }
#else
/* Without x86-64 intrinsics the own GEMM is never selected (ew_gemm_avx512_available() == 0),
 * so the implicit path is not taken; these portable versions keep the table complete. */
static void pack_cols_generic(const implicit_cols *ic, int rows_are_kk, int k0, int kc, int j0, int nc, float *bp) {
    for (int s = 0; s * EW_GEMM_NR < nc; s++)
        for (int k = 0; k < kc; k++)
            for (int j = 0; j < EW_GEMM_NR; j++) {
                int col = j0 + s * EW_GEMM_NR + j, row = k0 + k;
                float v = 0.0f;
                if (s * EW_GEMM_NR + j < nc) {
                    int kk = rows_are_kk ? row : col, pos = rows_are_kk ? col : row;
                    int iy = ic->piy[pos] + ic->kki[kk], ix = ic->pix[pos] + ic->kkj[kk];
                    if (iy >= 0 && iy < ic->d->h && ix >= 0 && ix < ic->d->w) v = ic->x[ic->pbase[pos] + ic->koff[kk]];
                }
                bp[((size_t)s * kc + k) * EW_GEMM_NR + j] = v;
            }
}
static void pack_cols_fwd_gather(const void *c, int k0, int kc, int j0, int nc, float *bp) { pack_cols_generic(c, 1, k0, kc, j0, nc, bp); }
static void pack_cols_bwdw_gather(const void *c, int k0, int kc, int j0, int nc, float *bp) { pack_cols_generic(c, 0, k0, kc, j0, nc, bp); }
#define pack_cols_fwd_runs pack_cols_fwd_gather   /* never used: runs_fwd() is 0 here */
#define pack_cols_bwdw_runs pack_cols_bwdw_gather
static int runs_fwd(const ew_conv_desc *d, int force) { (void)d, (void)force; return 0; }
static int runs_bwdw(const ew_conv_desc *d, int force) { (void)d, (void)force; return 0; }
#endif

/* Stride-2 row split for relayout_fwd (AVX-512 where the processor has it; same values either
 * way): o0[X] = row[2X + off], o1[X] = row[2X + off + 1], 0 outside [0, w), for X < n. */
static void split2_scalar(const float *row, int w, int off, float *o0, float *o1, int n, const float *xbeg,
                          const float *xend) {
    (void)xbeg, (void)xend;
    for (int xx = 0; xx < n; xx++) {
        int ix = 2 * xx + off;
        o0[xx] = ix >= 0 && ix < w ? row[ix] : 0.0f;
        o1[xx] = ix + 1 >= 0 && ix + 1 < w ? row[ix + 1] : 0.0f;
    }
}
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx512f"))) static void split2_avx512(const float *row, int w, int off, float *o0, float *o1,
                                                             int n, const float *xbeg, const float *xend) {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    for (int x0 = 0; x0 < n; x0 += 16) {
        int cnt = n - x0 < 16 ? n - x0 : 16;
        int start = 2 * x0 + off; /* lane t of the 32-float window is row[start + t] */
        int lo = start < 0 ? -start : 0, hi = w - start < 2 * cnt ? w - start : 2 * cnt;
        __m512 a = _mm512_setzero_ps(), b = _mm512_setzero_ps();
        if (hi > lo) {
            uint32_t m = (uint32_t)(((1ull << hi) - 1ull) & ~((1ull << lo) - 1ull));
            const float *src = row + start; /* lanes below lo and from hi on are masked off */
            if (src >= xbeg && src + 32 <= xend) {
                /* plain loads (masked loads that reach past the row are slow on some cores),
                 * then the lanes outside the row are cleared */
                a = _mm512_loadu_ps(src);
                b = _mm512_loadu_ps(src + 16);
                __asm__("" : "+v"(a), "+v"(b)); /* keep the compiler from folding these into masked loads */
                a = _mm512_maskz_mov_ps((__mmask16)(m & 0xFFFFu), a);
                b = _mm512_maskz_mov_ps((__mmask16)(m >> 16), b);
            } else {
                a = _mm512_maskz_loadu_ps((__mmask16)(m & 0xFFFFu), src);
                b = _mm512_maskz_loadu_ps((__mmask16)(m >> 16), src + 16);
            }
        }
        __mmask16 sm = (__mmask16)((1u << cnt) - 1u);
        _mm512_mask_storeu_ps(o0 + x0, sm, _mm512_permutex2var_ps(a, even, b));
        _mm512_mask_storeu_ps(o1 + x0, sm, _mm512_permutex2var_ps(a, odd, b));
    }
}
/* xr[t] += (t even ? e[t / 2] : o[t / 2]) for t0 <= t < t1 (e, o: nq floats each, readable
 * 16 floats past nq). [pb, pe): memory this thread alone writes, around xr: windows inside it
 * use plain loads and stores (unchanged lanes written back), since masked loads reaching past
 * the data are slow on some cores. */
__attribute__((target("avx512f"))) static void interleave2_add(const float *e, const float *o, int nq, float *xr, int t0,
                                                               int t1, const float *pb, const float *pe) {
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    (void)nq;
    for (int t = t0 & ~31; t < t1; t += 32) {
        int X = t >> 1;
        __m512 ev = _mm512_loadu_ps(e + X), od = _mm512_loadu_ps(o + X);
        int a = t0 - t > 0 ? t0 - t : 0, b = t1 - t < 32 ? t1 - t : 32;
        uint32_t m = (uint32_t)(((1ull << b) - 1ull) & ~((1ull << a) - 1ull));
        __mmask16 m0 = (__mmask16)(m & 0xFFFFu), m1 = (__mmask16)(m >> 16);
        __m512 v0 = _mm512_permutex2var_ps(ev, lo, od), v1 = _mm512_permutex2var_ps(ev, hi, od);
        float *p = xr + t;
        if (p >= pb && p + 32 <= pe) {
            __m512 x0 = _mm512_loadu_ps(p), x1 = _mm512_loadu_ps(p + 16);
            __asm__("" : "+v"(x0), "+v"(x1)); /* plain loads, not folded into masked ones */
            _mm512_storeu_ps(p, _mm512_mask_add_ps(x0, m0, x0, v0));
            _mm512_storeu_ps(p + 16, _mm512_mask_add_ps(x1, m1, x1, v1));
        } else {
            __m512 x0 = _mm512_maskz_loadu_ps(m0, p), x1 = _mm512_maskz_loadu_ps(m1, p + 16);
            _mm512_mask_storeu_ps(p, m0, _mm512_add_ps(x0, v0));
            _mm512_mask_storeu_ps(p + 16, m1, _mm512_add_ps(x1, v1));
        }
    }
}
/* col2im for 4-wide kernels at column stride 2 with ow <= 15 (a padded row fits 32 lanes):
 * per (channel, ki, output row), the four kj rows are combined in registers into the even and
 * odd columns of the padded row and added to dx in one window. Same contract as col2im. */
__attribute__((target("avx512f"))) static void col2im_s2k4(const ew_conv_desc *d, const float *col, int ldc, int c0,
                                                           int c1, float *dx) {
    const int ow = d->ow, span = 2 * ow + 2;
    const int t0 = d->pw, t1 = span < d->w + d->pw ? span : d->w + d->pw;
    const float *pb = dx, *pe = dx + (size_t)d->c * d->h * d->w;
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    const __m512i sh1 = _mm512_setr_epi32(0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14);
    const __mmask16 rm = (__mmask16)((1u << ow) - 1u);
    const uint32_t m = (uint32_t)(((1ull << t1) - 1ull) & ~((1ull << t0) - 1ull));
    const __mmask16 m0 = (__mmask16)(m & 0xFFFFu), m1 = (__mmask16)(m >> 16);
    for (int ci = c0; ci < c1; ci++) {
        float *xc = dx + (size_t)ci * d->h * d->w;
        for (int ki = 0; ki < 4; ki++) {
            const float *rows = col + (size_t)((ci - c0) * 4 + ki) * 4 * ldc;
            /* even output rows, then odd ones: consecutive windows are then far enough apart that
             * no load overlaps a store still in flight (failed store forwarding stalls) */
            for (int oy2 = 0; oy2 < d->oh; oy2++) {
                int oy = oy2 < (d->oh + 1) / 2 ? 2 * oy2 : 2 * (oy2 - (d->oh + 1) / 2) + 1;
                int iy = oy * d->sh - d->ph + ki;
                if (iy < 0 || iy >= d->h) continue;
                const float *sr = rows + (size_t)oy * ow;
                __m512 s0 = _mm512_loadu_ps(sr), s1 = _mm512_loadu_ps(sr + ldc);
                __m512 s2 = _mm512_loadu_ps(sr + 2 * (size_t)ldc), s3 = _mm512_loadu_ps(sr + 3 * (size_t)ldc);
                __asm__("" : "+v"(s0), "+v"(s1), "+v"(s2), "+v"(s3)); /* plain loads, not folded into masked ones */
                s0 = _mm512_maskz_mov_ps(rm, s0), s1 = _mm512_maskz_mov_ps(rm, s1);
                s2 = _mm512_maskz_mov_ps(rm, s2), s3 = _mm512_maskz_mov_ps(rm, s3);
                /* padded column 2X + p: p = 0 from kj 0 (ox = X) and kj 2 (ox = X - 1); p = 1 from kj 1, 3 */
                __m512 e = _mm512_add_ps(s0, _mm512_maskz_permutexvar_ps(0xFFFE, sh1, s2));
                __m512 o = _mm512_add_ps(s1, _mm512_maskz_permutexvar_ps(0xFFFE, sh1, s3));
                __m512 v0 = _mm512_permutex2var_ps(e, lo, o), v1 = _mm512_permutex2var_ps(e, hi, o);
                float *p = xc + (size_t)iy * d->w - d->pw;
                if (p >= pb && p + 32 <= pe) {
                    __m512 x0 = _mm512_loadu_ps(p), x1 = _mm512_loadu_ps(p + 16);
                    __asm__("" : "+v"(x0), "+v"(x1));
                    _mm512_mask_storeu_ps(p, m0, _mm512_add_ps(x0, v0));
                    if (m1) _mm512_mask_storeu_ps(p + 16, m1, _mm512_add_ps(x1, v1));
                } else {
                    __m512 x0 = _mm512_maskz_loadu_ps(m0, p), x1 = _mm512_maskz_loadu_ps(m1, p + 16);
                    _mm512_mask_storeu_ps(p, m0, _mm512_add_ps(x0, v0));
                    _mm512_mask_storeu_ps(p + 16, m1, _mm512_add_ps(x1, v1));
                }
            }
        }
    }
}
/* col2im at column stride 1 for kw <= 8 and ow + kw - 1 <= 16 (a padded row fits 16 lanes):
 * per (channel, ki, output row), the kw patch rows are shifted into place in registers and
 * added to dx in one window. Same contract as col2im. */
__attribute__((target("avx512f"))) static void col2im_s1_narrow(const ew_conv_desc *d, const float *col, int ldc,
                                                                int c0, int c1, float *dx) {
    const int ow = d->ow, kw = d->kw, span = ow + kw - 1;
    const int t0 = d->pw, t1 = span < d->w + d->pw ? span : d->w + d->pw;
    const float *pb = dx, *pe = dx + (size_t)d->c * d->h * d->w;
    const __mmask16 rm = (__mmask16)((1u << ow) - 1u);
    const __mmask16 m = (__mmask16)(((1u << t1) - 1u) & ~((1u << t0) - 1u));
    __m512i shift[8];
    __mmask16 smask[8];
    for (int kj = 0; kj < kw; kj++) {
        /* lane t takes lane t - kj */
        shift[kj] = _mm512_sub_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                     _mm512_set1_epi32(kj));
        smask[kj] = (__mmask16)(0xFFFFu << kj);
    }
    for (int ci = c0; ci < c1; ci++) {
        float *xc = dx + (size_t)ci * d->h * d->w;
        for (int ki = 0; ki < d->kh; ki++) {
            const float *rows = col + (size_t)((ci - c0) * d->kh + ki) * kw * ldc;
            /* output rows in two passes by parity, as in col2im_s2k4 */
            for (int oy2 = 0; oy2 < d->oh; oy2++) {
                int oy = oy2 < (d->oh + 1) / 2 ? 2 * oy2 : 2 * (oy2 - (d->oh + 1) / 2) + 1;
                int iy = oy * d->sh - d->ph + ki;
                if (iy < 0 || iy >= d->h) continue;
                const float *sr = rows + (size_t)oy * ow;
                __m512 v = _mm512_setzero_ps();
                for (int kj = 0; kj < kw; kj++) {
                    __m512 r = _mm512_loadu_ps(sr + (size_t)kj * ldc);
                    __asm__("" : "+v"(r)); /* a plain load, not folded into a masked one */
                    r = _mm512_maskz_mov_ps(rm, r);
                    v = _mm512_add_ps(v, _mm512_maskz_permutexvar_ps(smask[kj], shift[kj], r));
                }
                float *p = xc + (size_t)iy * d->w - d->pw;
                if (p >= pb && p + 16 <= pe) {
                    __m512 x0 = _mm512_loadu_ps(p);
                    __asm__("" : "+v"(x0));
                    _mm512_mask_storeu_ps(p, m, _mm512_add_ps(x0, v));
                } else {
                    __m512 x0 = _mm512_maskz_loadu_ps(m, p);
                    _mm512_mask_storeu_ps(p, m, _mm512_add_ps(x0, v));
                }
            }
        }
    }
}
#else
static void col2im_s2k4(const ew_conv_desc *d, const float *col, int ldc, int c0, int c1, float *dx) {
    /* never called: simd is 0 without x86-64 intrinsics */
    (void)d, (void)col, (void)ldc, (void)c0, (void)c1, (void)dx;
}
static void col2im_s1_narrow(const ew_conv_desc *d, const float *col, int ldc, int c0, int c1, float *dx) {
    /* never called: simd is 0 without x86-64 intrinsics */
    (void)d, (void)col, (void)ldc, (void)c0, (void)c1, (void)dx;
}
static void interleave2_add(const float *e, const float *o, int nq, float *xr, int t0, int t1, const float *pb,
                            const float *pe) {
    (void)nq, (void)pb, (void)pe;
    for (int t = t0; t < t1; t++) xr[t] += t % 2 ? o[t / 2] : e[t / 2];
}
#define split2_avx512 split2_scalar
#endif

/* The run packers' input copies and tables (layouts in the comment above pack_cols_fwd_runs). */
/* xbeg, xend: the whole input tensor (loads may read anywhere inside it). */
static void relayout_fwd(const ew_conv_desc *d, const float *x, int gc, float *q, int simd, const float *xbeg,
                         const float *xend) {
    const int yq = d->oh + (d->kh - 1) / d->sh, xq = d->ow + (d->kw - 1) / d->sw;
    const size_t plane = (size_t)yq * xq;
    float *o = q;
    for (int s = 0; s < gc; s++)
        for (int c = 0; c < d->c; c++) {
            const float *xc = x + ((size_t)s * d->c + c) * d->h * d->w;
            if (d->sh == 1 && d->sw == 1 && d->ph == 0 && d->pw == 0 && yq == d->h && xq == d->w) {
                /* the copy of a plane is the plane (1x1 kernels) */
                memcpy(o, xc, sizeof(float) * (size_t)yq * xq);
                o += (size_t)yq * xq;
                continue;
            }
            if (d->sw == 2) {
                /* both column phases of an input row from one pass over it */
                for (int py = 0; py < d->sh; py++)
                    for (int yy = 0; yy < yq; yy++) {
                        float *o0 = o + (size_t)(py * 2) * plane + (size_t)yy * xq, *o1 = o0 + plane;
                        int iy = d->sh * yy + py - d->ph;
                        if (iy < 0 || iy >= d->h) {
                            memset(o0, 0, sizeof(float) * (size_t)xq);
                            memset(o1, 0, sizeof(float) * (size_t)xq);
                        } else if (simd) {
                            split2_avx512(xc + (size_t)iy * d->w, d->w, -d->pw, o0, o1, xq, xbeg, xend);
                        } else {
                            split2_scalar(xc + (size_t)iy * d->w, d->w, -d->pw, o0, o1, xq, xbeg, xend);
                        }
                    }
                o += (size_t)d->sh * 2 * plane;
                continue;
            }
            for (int py = 0; py < d->sh; py++)
                for (int px = 0; px < d->sw; px++)
                    for (int yy = 0; yy < yq; yy++, o += xq) {
                        int iy = d->sh * yy + py - d->ph;
                        if (iy < 0 || iy >= d->h) {
                            memset(o, 0, sizeof(float) * (size_t)xq);
                            continue;
                        }
                        const float *row = xc + (size_t)iy * d->w;
                        for (int xx = 0; xx < xq; xx++) {
                            int ix = d->sw * xx + px - d->pw;
                            o[xx] = ix >= 0 && ix < d->w ? row[ix] : 0.0f;
                        }
                    }
        }
    memset(o, 0, sizeof(float) * 16);
}

static void ktables_fwd_runs(const ew_conv_desc *d, int *koff) {
    const int yq = d->oh + (d->kh - 1) / d->sh, xq = d->ow + (d->kw - 1) / d->sw;
    int kk = 0;
    for (int c = 0; c < d->c; c++)
        for (int ki = 0; ki < d->kh; ki++)
            for (int kj = 0; kj < d->kw; kj++, kk++)
                koff[kk] = ((c * d->sh + ki % d->sh) * d->sw + kj % d->sw) * yq * xq + (ki / d->sh) * xq + kj / d->sw;
}

static void ptables_fwd_runs(const ew_conv_desc *d, int gc, int *pbase, int *pox) {
    const int yq = d->oh + (d->kh - 1) / d->sh, xq = d->ow + (d->kw - 1) / d->sw;
    const int ss = d->c * d->sh * d->sw * yq * xq;
    int j = 0;
    for (int s = 0; s < gc; s++)
        for (int oy = 0; oy < d->oh; oy++)
            for (int ox = 0; ox < d->ow; ox++, j++) {
                pbase[j] = s * ss + oy * xq + ox;
                pox[j] = ox;
            }
}

static void relayout_bwdw(const ew_conv_desc *d, const float *x, int gc, float *xp) {
    const int wp = d->w + 2 * d->pw;
    float *o = xp;
    for (int s = 0; s < gc; s++)
        for (int c = 0; c < d->c; c++) {
            const float *xc = x + ((size_t)s * d->c + c) * d->h * d->w;
            memset(o, 0, sizeof(float) * (size_t)d->ph * wp);
            o += (size_t)d->ph * wp;
            for (int iy = 0; iy < d->h; iy++, o += wp) {
                memset(o, 0, sizeof(float) * (size_t)d->pw);
                memcpy(o + d->pw, xc + (size_t)iy * d->w, sizeof(float) * (size_t)d->w);
                memset(o + d->pw + d->w, 0, sizeof(float) * (size_t)d->pw);
            }
            memset(o, 0, sizeof(float) * (size_t)d->ph * wp);
            o += (size_t)d->ph * wp;
        }
    memset(o, 0, sizeof(float) * 16);
}

/* koff into the padded copy (kki, kkj as k_tables); pbase per output position. */
static void ktables_bwdw_runs(const ew_conv_desc *d, int *koff) {
    const int yp = d->h + 2 * d->ph, wp = d->w + 2 * d->pw;
    int kk = 0;
    for (int c = 0; c < d->c; c++)
        for (int ki = 0; ki < d->kh; ki++)
            for (int kj = 0; kj < d->kw; kj++, kk++) koff[kk] = (c * yp + ki) * wp + kj;
}

static void ptables_bwdw_runs(const ew_conv_desc *d, int gc, int *pbase) {
    const int yp = d->h + 2 * d->ph, wp = d->w + 2 * d->pw;
    int j = 0;
    for (int s = 0; s < gc; s++)
        for (int oy = 0; oy < d->oh; oy++)
            for (int ox = 0; ox < d->ow; ox++, j++) pbase[j] = s * d->c * yp * wp + oy * d->sh * wp + ox * d->sw;
}

/* b = a group's dy as a matrix (rows: output channels, columns: sample-major positions)
 * from its per-sample layout: element (o, s * P + p) is dy[s * ys + o * P + p]. */
typedef struct {
    const float *dy;
    int P, ys;
} dy_cols;

static void pack_dy_cols(const void *vctx, int k0, int kc, int j0, int nc, float *bp) {
    const dy_cols *dc = vctx;
    for (int s = 0; s * EW_GEMM_NR < nc; s++) {
        float *dst = bp + (size_t)s * kc * EW_GEMM_NR;
        int jb = j0 + s * EW_GEMM_NR, cols = nc - s * EW_GEMM_NR < EW_GEMM_NR ? nc - s * EW_GEMM_NR : EW_GEMM_NR;
        for (int k = 0; k < kc; k++) {
            float *o = dst + (size_t)k * EW_GEMM_NR;
            int j = 0;
            while (j < cols) {
                int col = jb + j, smp = col / dc->P, p = col % dc->P;
                int len = dc->P - p < cols - j ? dc->P - p : cols - j;
                memcpy(o + j, dc->dy + (size_t)smp * dc->ys + (size_t)(k0 + k) * dc->P + p, sizeof(float) * (size_t)len);
                j += len;
            }
            for (; j < EW_GEMM_NR; j++) o[j] = 0.0f;
        }
    }
}

/* c = a * implicit b (accumulate: +=), split over threads by columns unless nested. */
static void own_gemm_implicit(const ew_backend *be, int m, int n, int k, const float *a, int lda,
                              ew_gemm_pack_b_fn pack, const void *ctx, int accumulate, float *c, int ldc) {
    const cpu_backend *cb = (const cpu_backend *)be;
    int T = nthreads(be);
    if (T == 1 || omp_in_parallel() || 2.0 * m * n * k < GEMM_SPLIT_FLOPS || n < 2 * EW_GEMM_NR) {
        int t = omp_get_thread_num();
        ew_gemm_avx512_ex(0, m, n, k, a, lda, pack, ctx, 0, accumulate, c, ldc, cb->pack_a[t], cb->pack_b[t]);
        return;
    }
    int chunk = ((n + T - 1) / T + EW_GEMM_NR - 1) / EW_GEMM_NR * EW_GEMM_NR;
#pragma omp parallel num_threads(T)
    {
        int t = omp_get_thread_num();
        int j0 = t * chunk, j1 = j0 + chunk < n ? j0 + chunk : n;
        if (j0 < j1)
            ew_gemm_avx512_ex(0, m, j1 - j0, k, a, lda, pack, ctx, j0, accumulate, c + j0, ldc, cb->pack_a[t],
                              cb->pack_b[t]);
    }
}

/* own_gemm_implicit with a prepacked (ew_gemm_avx512_prepack_a of all m rows). */
static void own_gemm_implicit_pp(const ew_backend *be, int m, int n, int k, const float *ap,
                                 ew_gemm_pack_b_fn pack, const void *ctx, int accumulate, float *c, int ldc) {
    const cpu_backend *cb = (const cpu_backend *)be;
    int T = nthreads(be);
    if (T == 1 || omp_in_parallel() || 2.0 * m * n * k < GEMM_SPLIT_FLOPS || n < 2 * EW_GEMM_NR) {
        int t = omp_get_thread_num();
        ew_gemm_avx512_pp(m, n, k, ap, m, 0, pack, ctx, 0, accumulate, c, ldc, cb->pack_b[t]);
        return;
    }
    int chunk = ((n + T - 1) / T + EW_GEMM_NR - 1) / EW_GEMM_NR * EW_GEMM_NR;
#pragma omp parallel num_threads(T)
    {
        int t = omp_get_thread_num();
        int j0 = t * chunk, j1 = j0 + chunk < n ? j0 + chunk : n;
        if (j0 < j1) ew_gemm_avx512_pp(m, j1 - j0, k, ap, m, 0, pack, ctx, j0, accumulate, c + j0, ldc, cb->pack_b[t]);
    }
}

/* c (+)= rows [row0, row0 + m) of a prepacked matrix of mfull rows times b (k x n, row-major),
 * split over threads like cpu_gemm unless nested. row0 is a multiple of 8. */
static void own_gemm_pp(const ew_backend *be, int m, int n, int k, const float *ap, int mfull, int row0,
                        const float *b, int ldb, int accumulate, float *c, int ldc) {
    const cpu_backend *cb = (const cpu_backend *)be;
    int T = nthreads(be);
    if (T == 1 || omp_in_parallel() || 2.0 * m * n * k < GEMM_SPLIT_FLOPS || (m < 32 && n < 32)) {
        int t = omp_get_thread_num();
        ew_gemm_avx512_pp_mat(m, n, k, ap, mfull, row0, 0, b, ldb, accumulate, c, ldc, cb->pack_b[t]);
        return;
    }
    if (n >= m) {
        int chunk = ((n + T - 1) / T + 15) & ~15;
#pragma omp parallel num_threads(T)
        {
            int t = omp_get_thread_num();
            int j0 = t * chunk, j1 = j0 + chunk < n ? j0 + chunk : n;
            if (j0 < j1)
                ew_gemm_avx512_pp_mat(m, j1 - j0, k, ap, mfull, row0, 0, b + j0, ldb, accumulate, c + j0, ldc,
                                      cb->pack_b[t]);
        }
    } else {
        int chunk = ((m + T - 1) / T + 7) & ~7;
#pragma omp parallel num_threads(T)
        {
            int t = omp_get_thread_num();
            int i0 = t * chunk, i1 = i0 + chunk < m ? i0 + chunk : m;
            if (i0 < i1)
                ew_gemm_avx512_pp_mat(i1 - i0, n, k, ap, mfull, row0 + i0, 0, b, ldb, accumulate,
                                      c + (size_t)i0 * ldc, ldc, cb->pack_b[t]);
        }
    }
}

/* The implicit path applies when the own GEMM runs, nothing is nested beyond one level and
 * every thread that can run here has packing buffers. */
static int use_implicit(const ew_backend *be, int algo, int gc) {
    const cpu_backend *cb = (const cpu_backend *)be;
    return cb->use_own && cb->nbuf >= nthreads(be) && omp_get_level() == 0 && !(algo == ALGO_1X1 && gc == 1);
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

/* Adds the patch-matrix rows of channels [c0, c1) of one sample (col: row (ci - c0) * kh * kw
 * + ki * kw + kj, row stride ldc) back into the image dx (inverse scatter of im2col). Per
 * (channel, ki), the kw patch rows are summed into sw phase planes (phase p, row oy, column X
 * holds padded image column sw*X + p: contiguous shifted adds), then each output row's phases
 * are interleaved into its dx row once (no read-modify-write chains on dx between neighbouring
 * kj). rowbuf: col2im_buf_floats(d) floats. */
static void col2im(const ew_conv_desc *d, const float *col, int ldc, int c0, int c1, float *dx, float *rowbuf,
                   int simd) {
    const int ow = d->ow, sw = d->sw, span = (ow - 1) * sw + d->kw, nq = ow + (d->kw - 1) / sw;
    const size_t plane = (size_t)d->oh * nq;
    const int t0 = d->pw, t1 = span < d->w + d->pw ? span : d->w + d->pw; /* padded column t is dx[t - pw] */
    if (d->kh == 1 && d->kw == 1 && d->sh == 1 && d->sw == 1 && d->ph == 0 && d->pw == 0) {
        /* 1x1: the patch row of a channel is its image */
        const size_t hw = (size_t)d->h * d->w;
        for (int ci = c0; ci < c1; ci++) {
            float *xc = dx + (size_t)ci * hw;
            const float *src = col + (size_t)(ci - c0) * ldc;
            for (size_t i = 0; i < hw; i++) xc[i] += src[i];
        }
        return;
    }
    for (int ci = c0; ci < c1; ci++) {
        float *xc = dx + (size_t)ci * d->h * d->w;
        for (int ki = 0; ki < d->kh; ki++) {
            const float *rows = col + (size_t)((ci - c0) * d->kh + ki) * d->kw * ldc;
            memset(rowbuf, 0, sizeof(float) * (size_t)sw * plane);
            for (int kj = 0; kj < d->kw; kj++) {
                float *ph = rowbuf + (size_t)(kj % sw) * plane + kj / sw;
                const float *src = rows + (size_t)kj * ldc;
                for (int oy = 0; oy < d->oh; oy++) {
                    float *pr = ph + (size_t)oy * nq;
                    const float *sr = src + (size_t)oy * ow;
                    for (int ox = 0; ox < ow; ox++) pr[ox] += sr[ox];
                }
            }
            for (int oy = 0; oy < d->oh; oy++) {
                int iy = oy * d->sh - d->ph + ki;
                if (iy < 0 || iy >= d->h) continue;
                float *xr = xc + (size_t)iy * d->w - d->pw;
                const float *pr = rowbuf + (size_t)oy * nq;
                if (sw == 1)
                    for (int t = t0; t < t1; t++) xr[t] += pr[t];
                else if (sw == 2 && simd)
                    interleave2_add(pr, pr + plane, nq, xr, t0, t1, dx, dx + (size_t)d->c * d->h * d->w);
                else
                    for (int t = t0; t < t1; t++) xr[t] += pr[(size_t)(t % sw) * plane + t / sw];
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
    const cpu_backend *cb = (const cpu_backend *)be;
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
    int *kt = (int *)(ws + wpt * (size_t)g.T + ws_part(d) * (size_t)(g.T - 1));
    int implicit = use_implicit(be, algo, 2);
    const int runs = implicit && runs_fwd(d, cb->force_pack);
    const ew_gemm_pack_b_fn packer = runs ? pack_cols_fwd_runs : pack_cols_fwd_gather;
    if (runs)
        ktables_fwd_runs(d, kt);
    else if (implicit)
        k_tables(d, kt, kt + K, kt + 2 * K);
    /* the weights, packed once for every group's GEMM */
    float *wp = implicit ? ws + ws_before_prepack(d, &g) : NULL;
    if (wp) ew_gemm_avx512_prepack_a(0, d->oc, (int)K, w, (int)K, wp);
    FOR_GROUPS(gi, tid, {
        int n0 = group_lo(d, &g, gi), n1 = group_lo(d, &g, gi + 1), gc = n1 - n0;
        int ld = (int)((size_t)gc * P);
        float *col = ws + (size_t)tid * wpt;
        float *tmp = col + col_floats(d, &g);
        int *pt = (int *)(tmp + (size_t)d->oc * g.gmax * P);
        const float *B = col;
        int imp = implicit && !(algo == ALGO_1X1 && gc == 1);
        implicit_cols icx = {d, x + (size_t)n0 * xs, kt, kt + K, kt + 2 * K, pt, pt + ld, pt + 2 * ld};
        if (imp && runs) {
            relayout_fwd(d, x + (size_t)n0 * xs, gc, col, cb->simd, x, x + (size_t)d->n * xs);
            ptables_fwd_runs(d, gc, pt, pt + 2 * ld);
            icx.x = col;
        } else if (imp) {
            pos_tables(d, gc, pt, pt + ld, pt + 2 * ld);
        } else if (algo == ALGO_1X1 && gc == 1) {
            B = x + (size_t)n0 * xs;
        } else {
            for (int s = 0; s < gc; s++) im2col(d, x + (size_t)(n0 + s) * xs, col + (size_t)s * P, ld);
        }
        if (gc == 1) {
            float *yo = y + (size_t)n0 * ys;
            if (imp)
                own_gemm_implicit_pp(be, d->oc, (int)P, (int)K, wp, packer, &icx, accumulate, yo, (int)P);
            else
                cpu_gemm(be, 0, 0, d->oc, (int)P, (int)K, 1.0f, w, (int)K, B, ld, accumulate ? 1.0f : 0.0f,
                         yo, (int)P);
            if (bias)
                for (int o = 0; o < d->oc; o++) {
                    float bo = bias[o];
                    float *r = yo + (size_t)o * P;
                    for (size_t p = 0; p < P; p++) r[p] += bo;
                }
        } else {
            if (imp)
                own_gemm_implicit_pp(be, d->oc, ld, (int)K, wp, packer, &icx, 0, tmp, ld);
            else
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
    const cpu_backend *cb = (const cpu_backend *)be;
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
    const int khw = d->kh * d->kw;
    /* with the own GEMM, w^T (K x oc) is packed once for every group and channel block;
     * channel blocks then hold a multiple of q channels, so each starts on a multiple of 8
     * rows (blocking by channels does not change any sum: a channel's rows are its own) */
    int q = 8;
    while (q > 1 && (khw * (q / 2)) % 8 == 0) q /= 2; /* smallest q with khw * q % 8 == 0 */
    float *wp = NULL;
    if (cb->use_own && cb->nbuf >= nthreads(be) && omp_get_level() == 0 && algo != ALGO_1X1) {
        wp = ws + ws_before_prepack(d, &g);
        ew_gemm_avx512_prepack_a(1, (int)K, d->oc, w, (int)K, wp);
    }
    FOR_GROUPS(gi, tid, {
        int n0 = group_lo(d, &g, gi), n1 = group_lo(d, &g, gi + 1), gc = n1 - n0;
        int ld = (int)((size_t)gc * P);
        float *col = ws + (size_t)tid * wpt;
        float *tmp = col + col_floats(d, &g);
        float *rowbuf = tmp + (size_t)d->oc * g.gmax * P + 3 * (size_t)g.gmax * P;
        float *bpk = rowbuf + col2im_buf_floats(d);
        bpk += (16 - ((uintptr_t)bpk / sizeof(float)) % 16) % 16; /* 64-byte aligned */
        const float *A = dy + (size_t)n0 * ys;
        /* with the weights prepacked and one thread on this group: dy's group packed once,
         * straight from its per-sample layout, for every channel block */
        const int bpre = wp && (g.par || nthreads(be) == 1);
        if (bpre) {
            dy_cols dc = {dy + (size_t)n0 * ys, (int)P, (int)ys};
            ew_gemm_avx512_prepack_b(d->oc, ld, pack_dy_cols, &dc, bpk);
        } else if (gc > 1) {
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
            /* channel blocks whose patch rows stay in cache between the GEMM and col2im */
            /* the register path reads 16 floats from each patch row; the col area is followed
             * by more workspace, so reads past a row stay inside it */
            const int s2k4 = cb->simd && d->sw == 2 && d->kw == 4 && d->kh == 4 && d->ow <= 15;
            const int s1n = cb->simd && d->sw == 1 && d->kw >= 2 && d->kw <= 8 && d->ow + d->kw - 1 <= 16;
            int cb_ch = (int)(COL_BLOCK_FLOATS / ((size_t)khw * ld));
            if (cb_ch < 1) cb_ch = 1;
            if (wp) cb_ch = cb_ch < q ? q : cb_ch - cb_ch % q;
            if (!accumulate)
                for (int s = 0; s < gc; s++) memset(dx + (size_t)(n0 + s) * xs, 0, sizeof(float) * xs);
            for (int c0 = 0; c0 < d->c; c0 += cb_ch) {
                int c1 = c0 + cb_ch < d->c ? c0 + cb_ch : d->c;
                if (bpre)
                    ew_gemm_avx512_pp2((c1 - c0) * khw, ld, d->oc, wp, (int)K, c0 * khw, bpk, 0, col, ld);
                else if (wp)
                    own_gemm_pp(be, (c1 - c0) * khw, ld, d->oc, wp, (int)K, c0 * khw, A, ld, 0, col, ld);
                else
                    cpu_gemm(be, 1, 0, (c1 - c0) * khw, ld, d->oc, 1.0f, w + (size_t)c0 * khw, (int)K, A, ld, 0.0f,
                             col, ld);
                for (int s = 0; s < gc; s++) {
                    float *dxs = dx + (size_t)(n0 + s) * xs;
                    if (s2k4)
                        col2im_s2k4(d, col + (size_t)s * P, ld, c0, c1, dxs);
                    else if (s1n)
                        col2im_s1_narrow(d, col + (size_t)s * P, ld, c0, c1, dxs);
                    else
                        col2im(d, col + (size_t)s * P, ld, c0, c1, dxs, rowbuf, cb->simd);
                }
            }
        }
    });
}

static void cpu_conv_bwd_weight(const ew_backend *be, const ew_conv_desc *d, const float *x,
                                const float *dy, float *dw, float *ws) {
    const cpu_backend *cb = (const cpu_backend *)be;
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
    size_t part = ws_part(d);
    float *parts = ws + wpt * (size_t)g.T;
    if (g.T > 1) memset(parts, 0, sizeof(float) * part * (size_t)(g.T - 1));
    int *kt = (int *)(parts + part * (size_t)(g.T - 1));
    int implicit = use_implicit(be, algo, 2);
    const int runs = implicit && runs_bwdw(d, cb->force_pack);
    const ew_gemm_pack_b_fn packer = runs ? pack_cols_bwdw_runs : pack_cols_bwdw_gather;
    if (implicit) k_tables(d, kt, kt + K, kt + 2 * K);
    if (runs) ktables_bwdw_runs(d, kt);
    FOR_GROUPS(gi, tid, {
        int n0 = group_lo(d, &g, gi), n1 = group_lo(d, &g, gi + 1), gc = n1 - n0;
        int ld = (int)((size_t)gc * P);
        float *col = ws + (size_t)tid * wpt;
        float *tmp = col + col_floats(d, &g);
        int *pt = (int *)(tmp + (size_t)d->oc * g.gmax * P);
        float *dwt = tid == 0 ? dw : parts + (size_t)(tid - 1) * part;
        int imp = implicit && (algo != ALGO_1X1 || gc > 1);
        const float *A = dy + (size_t)n0 * ys;
        const float *B = col;
        if (gc > 1) {
            for (int s = 0; s < gc; s++)
                for (int o = 0; o < d->oc; o++)
                    memcpy(tmp + (size_t)o * ld + (size_t)s * P, dy + (size_t)(n0 + s) * ys + (size_t)o * P,
                           sizeof(float) * P);
            A = tmp;
        }
        if (imp) {
            implicit_cols icx = {d, x + (size_t)n0 * xs, kt, kt + K, kt + 2 * K, pt, pt + ld, pt + 2 * ld};
            if (runs) {
                relayout_bwdw(d, x + (size_t)n0 * xs, gc, col);
                ptables_bwdw_runs(d, gc, pt);
                icx.x = col;
            } else {
                pos_tables(d, gc, pt, pt + ld, pt + 2 * ld);
            }
            own_gemm_implicit(be, d->oc, (int)K, ld, A, ld, packer, &icx, 1, dwt, (int)K);
        } else {
            if (algo == ALGO_1X1 && gc == 1) {
                B = x + (size_t)n0 * xs;
            } else {
                for (int s = 0; s < gc; s++) im2col(d, x + (size_t)(n0 + s) * xs, col + (size_t)s * P, ld);
            }
            cpu_gemm(be, 0, 1, d->oc, (int)K, ld, 1.0f, A, ld, B, ld, 1.0f, dwt, (int)K);
        }
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

/* AVX-512 versions of the hot elementwise loops. Each computes exactly what the scalar loop
 * computes per element (same operations, no contraction into FMA), so results do not depend
 * on the path; sum_channels sums in 16 lanes (a fixed order, independent of the thread split). */
enum { V_LRELU, V_LRELU_BWD, V_LRELU_BWD_SET, V_AXPY, V_ADD, V_MUL };

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx512f"))) static void vec_range(int kind, float alpha, long i0, long i1, const float *a,
                                                         const float *b, float *y) {
    const __m512 va = _mm512_set1_ps(alpha), z = _mm512_setzero_ps();
    for (long i = i0; i < i1; i += 16) {
        __mmask16 m = i1 - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (i1 - i)) - 1u);
        __m512 x = _mm512_maskz_loadu_ps(m, a + i), r;
        switch (kind) {
        case V_LRELU: /* y = x > 0 ? x : alpha x */
            r = _mm512_mask_mul_ps(x, (__mmask16)~_mm512_cmp_ps_mask(x, z, _CMP_GT_OQ), x, va);
            break;
        case V_LRELU_BWD: { /* y += b > 0 ? a : alpha a  (a = dy, b = x) */
            __m512 xb = _mm512_maskz_loadu_ps(m, b + i);
            __m512 g = _mm512_mask_mul_ps(x, (__mmask16)~_mm512_cmp_ps_mask(xb, z, _CMP_GT_OQ), x, va);
            r = _mm512_add_ps(_mm512_maskz_loadu_ps(m, y + i), g);
            break;
        }
        case V_LRELU_BWD_SET: /* y = b > 0 ? a : alpha a */
            r = _mm512_mask_mul_ps(x, (__mmask16)~_mm512_cmp_ps_mask(_mm512_maskz_loadu_ps(m, b + i), z, _CMP_GT_OQ),
                                   x, va);
            break;
        case V_AXPY: /* y += alpha a (alpha == 1: y += a) */
            r = _mm512_add_ps(_mm512_maskz_loadu_ps(m, y + i), alpha == 1.0f ? x : _mm512_mul_ps(va, x));
            break;
        case V_ADD:
            r = _mm512_add_ps(x, _mm512_maskz_loadu_ps(m, b + i));
            break;
        default: /* V_MUL */
            r = _mm512_mul_ps(x, _mm512_maskz_loadu_ps(m, b + i));
            break;
        }
        _mm512_mask_storeu_ps(y + i, m, r);
    }
}

__attribute__((target("avx512f"))) static float vec_sum(const float *p, int n) {
    __m512 s = _mm512_setzero_ps();
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1u);
        s = _mm512_add_ps(s, _mm512_maskz_loadu_ps(m, p + i));
    }
    return _mm512_reduce_add_ps(s);
}
#else
static void vec_range(int kind, float alpha, long i0, long i1, const float *a, const float *b, float *y) {
    (void)kind, (void)alpha, (void)i0, (void)i1, (void)a, (void)b, (void)y; /* never called: simd is 0 */
}
static float vec_sum(const float *p, int n) {
    (void)p, (void)n; /* never called: simd is 0 */
    return 0.0f;
}
#endif

/* out[c] (+)= sum over r of x[r * ch + c] for c in [c0, c0 + 8) (clipped to ch), accumulated
 * in double in row order. */
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx512f"))) static void sum_rows8(const float *x, int rows, int ch, int c0, float *out,
                                                         int accumulate) {
    int n = ch - c0 < 8 ? ch - c0 : 8;
    if (n < 8) {
        for (int i = 0; i < n; i++) {
            double t = 0.0;
            for (int r = 0; r < rows; r++) t += x[(size_t)r * ch + c0 + i];
            out[c0 + i] = accumulate ? out[c0 + i] + (float)t : (float)t;
        }
        return;
    }
    __m512d s = _mm512_setzero_pd();
    for (int r = 0; r < rows; r++) s = _mm512_add_pd(s, _mm512_cvtps_pd(_mm256_loadu_ps(x + (size_t)r * ch + c0)));
    double v[8];
    _mm512_storeu_pd(v, s);
    for (int i = 0; i < n; i++) out[c0 + i] = accumulate ? out[c0 + i] + (float)v[i] : (float)v[i];
}
#else
static void sum_rows8(const float *x, int rows, int ch, int c0, float *out, int accumulate) {
    int n = ch - c0 < 8 ? ch - c0 : 8;
    for (int i = 0; i < n; i++) {
        double s = 0.0;
        for (int r = 0; r < rows; r++) s += x[(size_t)r * ch + c0 + i];
        out[c0 + i] = accumulate ? out[c0 + i] + (float)s : (float)s;
    }
}
#endif

/* Runs vec_range over [0, N) on up to T threads (chunks of multiples of 16). */
static void vec_par(int T, int kind, float alpha, long N, const float *a, const float *b, float *y) {
    if (T <= 1 || N <= PAR_MIN) {
        vec_range(kind, alpha, 0, N, a, b, y);
        return;
    }
    long chunk = ((N + T - 1) / T + 15) & ~15L;
#pragma omp parallel num_threads(T)
    {
        long i0 = (long)omp_get_thread_num() * chunk, i1 = i0 + chunk < N ? i0 + chunk : N;
        if (i0 < i1) vec_range(kind, alpha, i0, i1, a, b, y);
    }
}

static inline int has_simd(const ew_backend *be) { return ((const cpu_backend *)be)->simd; }

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
        if (has_simd(be)) {
            vec_par(T, V_LRELU, alpha, N, x, NULL, y);
            break;
        }
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

/* dx (+)= dy * f'(x): acc != 0 adds (unary_bwd), else overwrites (unary_bwd_set). */
#define UNARY_BWD_LOOP(expr)                                                                   \
    do {                                                                                       \
        if (acc) {                                                                             \
            _Pragma("omp parallel for num_threads(T) schedule(static) if (T > 1 && N > PAR_MIN)") \
            for (long i = 0; i < N; i++) dx[i] += (expr);                                      \
        } else {                                                                               \
            _Pragma("omp parallel for num_threads(T) schedule(static) if (T > 1 && N > PAR_MIN)") \
            for (long i = 0; i < N; i++) dx[i] = (expr);                                       \
        }                                                                                      \
    } while (0)

static void unary_bwd_impl(const ew_backend *be, ew_unary_op op, float alpha, size_t n, const float *x,
                           const float *y, const float *dy, float *dx, int acc) {
    int T = nthreads(be);
    long N = (long)n;
    switch (op) {
    case EW_UNARY_RELU:
        UNARY_BWD_LOOP(x[i] > 0.0f ? dy[i] : 0.0f);
        break;
    case EW_UNARY_LEAKY_RELU:
        if (has_simd(be)) {
            vec_par(T, acc ? V_LRELU_BWD : V_LRELU_BWD_SET, alpha, N, dy, x, dx);
            break;
        }
        UNARY_BWD_LOOP(x[i] > 0.0f ? dy[i] : alpha * dy[i]);
        break;
    case EW_UNARY_TANH:
        UNARY_BWD_LOOP(dy[i] * (1.0f - y[i] * y[i]));
        break;
    case EW_UNARY_SIGMOID:
        UNARY_BWD_LOOP(dy[i] * y[i] * (1.0f - y[i]));
        break;
    case EW_UNARY_SOFTPLUS:
        UNARY_BWD_LOOP(dy[i] * sigmoidf_(x[i]));
        break;
    case EW_UNARY_EXP:
        UNARY_BWD_LOOP(dy[i] * y[i]);
        break;
    case EW_UNARY_LOG:
        UNARY_BWD_LOOP(dy[i] / x[i]);
        break;
    case EW_UNARY_SQUARE:
        UNARY_BWD_LOOP(2.0f * x[i] * dy[i]);
        break;
    case EW_UNARY_SCALE:
        UNARY_BWD_LOOP(alpha * dy[i]);
        break;
    case EW_UNARY_ADD_SCALAR:
        UNARY_BWD_LOOP(dy[i]);
        break;
    default:
        break;
    }
}

static void cpu_unary_bwd(const ew_backend *be, ew_unary_op op, float alpha, size_t n, const float *x,
                          const float *y, const float *dy, float *dx) {
    unary_bwd_impl(be, op, alpha, n, x, y, dy, dx, 1);
}

static void cpu_unary_bwd_set(const ew_backend *be, ew_unary_op op, float alpha, size_t n, const float *x,
                              const float *y, const float *dy, float *dx) {
    unary_bwd_impl(be, op, alpha, n, x, y, dy, dx, 0);
}

static void cpu_binary(const ew_backend *be, ew_binary_op op, size_t n, const float *a,
                       const float *b, float *y) {
    int T = nthreads(be);
    long N = (long)n;
    if (has_simd(be) && (op == EW_BINARY_ADD || op == EW_BINARY_MUL)) {
        vec_par(T, op == EW_BINARY_ADD ? V_ADD : V_MUL, 0.0f, N, a, b, y);
        return;
    }
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

static void cpu_axpy_(int T, int simd, long N, float alpha, const float *x, float *y);

static void cpu_binary_bwd(const ew_backend *be, ew_binary_op op, size_t n, const float *a,
                           const float *b, const float *dy, float *da, float *db) {
    int T = nthreads(be);
    long N = (long)n;
    switch (op) {
    case EW_BINARY_ADD:
    case EW_BINARY_SUB:
        if (da) cpu_axpy_(T, has_simd(be), N, 1.0f, dy, da);
        if (db) cpu_axpy_(T, has_simd(be), N, op == EW_BINARY_ADD ? 1.0f : -1.0f, dy, db);
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
    cpu_axpy_(nthreads(be), has_simd(be), (long)n, alpha, x, y);
}

static void cpu_axpy_(int T, int simd, long N, float alpha, const float *x, float *y) {
    if (simd) {
        vec_par(T, V_AXPY, alpha, N, x, NULL, y);
    } else if (alpha == 1.0f) {
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
    const int simd = has_simd(be) && inner >= 16;
    if (inner == 1 && has_simd(be)) {
        /* bias gradients of linear layers: 8 channels at a time down the rows, summed in
         * double in row order exactly as the scalar loop below */
        int nb = (ch + 7) / 8;
#pragma omp parallel for num_threads(T) schedule(static) if (T > 1 && nb >= T && work > PAR_MIN)
        for (int b = 0; b < nb; b++) sum_rows8(x, rows, ch, 8 * b, out, accumulate);
        return;
    }
#pragma omp parallel for num_threads(T) schedule(static) if (T > 1 && ch >= T && work > PAR_MIN)
    for (int c = 0; c < ch; c++) {
        double s = 0.0;
        for (int r = 0; r < rows; r++) {
            const float *p = x + ((size_t)r * ch + c) * inner;
            float part = 0.0f;
            if (simd)
                part = vec_sum(p, inner);
            else
                for (int i = 0; i < inner; i++) part += p[i];
            s += part;
        }
        out[c] = accumulate ? out[c] + (float)s : (float)s;
    }
}

/* ------------------------------------------------------------------------------------------ */

static void free_packs(cpu_backend *cb) {
    for (int t = 0; t < cb->nbuf; t++) {
        free(cb->pack_a[t]);
        free(cb->pack_b[t]);
    }
    free(cb->pack_a);
    free(cb->pack_b);
    cb->pack_a = cb->pack_b = NULL;
    cb->nbuf = 0;
}

static float *alloc_aligned(size_t floats) {
    size_t bytes = (floats * sizeof(float) + 63) & ~(size_t)63;
    return aligned_alloc(64, bytes ? bytes : 64);
}

/* (Re)allocates one pair of packing buffers per thread. */
static int alloc_packs(cpu_backend *cb, int threads) {
    free_packs(cb);
    size_t na, nb;
    ew_gemm_pack_floats(&na, &nb);
    cb->pack_a = calloc((size_t)threads, sizeof(float *));
    cb->pack_b = calloc((size_t)threads, sizeof(float *));
    if (!cb->pack_a || !cb->pack_b) {
        free(cb->pack_a);
        free(cb->pack_b);
        cb->pack_a = cb->pack_b = NULL;
        return -1;
    }
    cb->nbuf = threads;
    for (int t = 0; t < threads; t++) {
        cb->pack_a[t] = alloc_aligned(na);
        cb->pack_b[t] = alloc_aligned(nb + 16); /* + slack for the run packers' spilling stores */
        if (!cb->pack_a[t] || !cb->pack_b[t]) {
            free_packs(cb);
            return -1;
        }
    }
    return 0;
}

static int resolve_gemm(cpu_backend *cb) {
    int avail = ew_gemm_avx512_available();
    if (cb->gemm_impl == EW_CPU_GEMM_AVX512 && !avail) return -1;
    cb->use_own = cb->gemm_impl == EW_CPU_GEMM_AVX512 || (cb->gemm_impl == EW_CPU_GEMM_AUTO && avail);
    return 0;
}

int ew_set_threads(ew_backend *be, int threads) {
    cpu_backend *cb = (cpu_backend *)be;
    if (threads < 1) threads = 1;
    if (be->gemm != cpu_gemm) return -1;
    if (threads != cb->nbuf && alloc_packs(cb, threads) != 0) {
        /* consistent fallback: one thread, with buffers if they fit (else OpenBLAS only) */
        alloc_packs(cb, 1);
        be->threads = 1;
        openblas_set_num_threads(1);
        return -1;
    }
    be->threads = threads;
    /* our own OpenMP threads do the splitting; OpenBLAS must not add its own on top */
    openblas_set_num_threads(1);
    return 0;
}

int ew_cpu_set_gemm(ew_backend *be, int impl) {
    if (be->gemm != cpu_gemm || impl < EW_CPU_GEMM_AUTO || impl > EW_CPU_GEMM_AVX512) return -1;
    cpu_backend *cb = (cpu_backend *)be;
    int old = cb->gemm_impl;
    cb->gemm_impl = impl;
    if (resolve_gemm(cb) != 0) {
        cb->gemm_impl = old;
        resolve_gemm(cb);
        return -1;
    }
    return 0;
}

const char *ew_cpu_gemm_name(const ew_backend *be) {
    if (be->gemm != cpu_gemm) return "n/a";
    return ((const cpu_backend *)be)->use_own ? "own-avx512" : "openblas";
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
    be->unary_bwd_set = cpu_unary_bwd_set;
    be->binary = cpu_binary;
    be->binary_bwd = cpu_binary_bwd;
    be->axpy = cpu_axpy;
    be->sum_channels = cpu_sum_channels;
    cb->force_algo = -1;
    cb->force_pack = -1;
    cb->gemm_impl = EW_CPU_GEMM_AUTO;
    cb->simd = ew_gemm_avx512_available();
    resolve_gemm(cb);
    if (ew_set_threads(be, threads) != 0) {
        ew_backend_destroy(be);
        return NULL;
    }
    return be;
}

void ew_backend_destroy(ew_backend *be) {
    if (!be) return;
    if (be->destroy) {
        be->destroy(be);
        return;
    }
    if (be->gemm == cpu_gemm) free_packs((cpu_backend *)be);
    free(be);
}

int ew_cpu_force_conv_algo(ew_backend *be, int algo) {
    if (be->gemm != cpu_gemm || algo < -1 || algo > ALGO_1X1) return -1;
    ((cpu_backend *)be)->force_algo = algo;
    return 0;
}

int ew_cpu_force_conv_pack(ew_backend *be, int mode) {
    if (be->gemm != cpu_gemm || mode < -1 || mode > 1) return -1;
    ((cpu_backend *)be)->force_pack = mode;
    return 0;
}
