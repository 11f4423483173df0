/* gemm_avx512.c - packed single-precision GEMM with an 8 x 48 AVX-512 register tile.
 * See gemm_cpu.h. Functions using AVX-512 are compiled for it with a target attribute and
 * only called after the runtime check, so the library still runs on any x86-64. */
#include "models/gemm_cpu.h"

#include <string.h>

#define MR 8
#define NR EW_GEMM_NR
#define KC 192
#define MC 240  /* multiple of MR */
#define NC 3072 /* multiple of NR */

void ew_gemm_pack_floats(size_t *a_floats, size_t *b_floats) {
    *a_floats = (size_t)MC * KC;
    *b_floats = (size_t)KC * NC;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

int ew_gemm_avx512_available(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") ? 1 : 0;
}

/* 8 rows x 8 columns of a row-major matrix (row stride lda) into dst[k * ds + r]. */
__attribute__((target("avx512f"))) static inline void transpose8x8(const float *src, int lda, float *dst, int ds) {
    __m256 r0 = _mm256_loadu_ps(src), r1 = _mm256_loadu_ps(src + lda);
    __m256 r2 = _mm256_loadu_ps(src + 2 * (size_t)lda), r3 = _mm256_loadu_ps(src + 3 * (size_t)lda);
    __m256 r4 = _mm256_loadu_ps(src + 4 * (size_t)lda), r5 = _mm256_loadu_ps(src + 5 * (size_t)lda);
    __m256 r6 = _mm256_loadu_ps(src + 6 * (size_t)lda), r7 = _mm256_loadu_ps(src + 7 * (size_t)lda);
    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
    __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    _mm256_storeu_ps(dst + 0 * (size_t)ds, _mm256_permute2f128_ps(u0, u4, 0x20));
    _mm256_storeu_ps(dst + 1 * (size_t)ds, _mm256_permute2f128_ps(u1, u5, 0x20));
    _mm256_storeu_ps(dst + 2 * (size_t)ds, _mm256_permute2f128_ps(u2, u6, 0x20));
    _mm256_storeu_ps(dst + 3 * (size_t)ds, _mm256_permute2f128_ps(u3, u7, 0x20));
    _mm256_storeu_ps(dst + 4 * (size_t)ds, _mm256_permute2f128_ps(u0, u4, 0x31));
    _mm256_storeu_ps(dst + 5 * (size_t)ds, _mm256_permute2f128_ps(u1, u5, 0x31));
    _mm256_storeu_ps(dst + 6 * (size_t)ds, _mm256_permute2f128_ps(u2, u6, 0x31));
    _mm256_storeu_ps(dst + 7 * (size_t)ds, _mm256_permute2f128_ps(u3, u7, 0x31));
}

/* a block rows [i0, i0+mc) x cols [k0, k0+kc) of op(a) into MR-row slivers:
 * ap[(s * kc + k) * MR + r], zero-padded to a multiple of MR rows. */
__attribute__((target("avx512f"))) static void pack_a_block(int ta, const float *a, int lda, int i0, int mc, int k0, int kc, float *ap) {
    for (int s = 0; s * MR < mc; s++) {
        float *dst = ap + (size_t)s * kc * MR;
        int rows = mc - s * MR < MR ? mc - s * MR : MR;
        if (!ta && rows == MR) {
            const float *src = a + (size_t)(i0 + s * MR) * lda + k0;
            int k = 0;
            for (; k + 8 <= kc; k += 8) transpose8x8(src + k, lda, dst + (size_t)k * MR, MR);
            for (; k < kc; k++)
                for (int r = 0; r < MR; r++) dst[(size_t)k * MR + r] = src[(size_t)r * lda + k];
        } else if (!ta) {
            if (rows < MR) memset(dst, 0, sizeof(float) * (size_t)kc * MR);
            for (int r = 0; r < rows; r++) {
                const float *src = a + (size_t)(i0 + s * MR + r) * lda + k0;
                for (int k = 0; k < kc; k++) dst[(size_t)k * MR + r] = src[k];
            }
        } else {
            for (int k = 0; k < kc; k++) {
                const float *src = a + (size_t)(k0 + k) * lda + i0 + s * MR;
                float *d = dst + (size_t)k * MR;
                int r = 0;
                for (; r < rows; r++) d[r] = src[r];
                for (; r < MR; r++) d[r] = 0.0f;
            }
        }
    }
}

/* b panel rows [k0, k0+kc) x cols [j0, j0+nc) of op(b) into NR-column slivers:
 * bp[(s * kc + k) * NR + j], zero-padded to a multiple of NR columns. */
__attribute__((target("avx512f"))) static void pack_b_panel(int tb, const float *b, int ldb, int k0, int kc, int j0, int nc, float *bp) {
    for (int s = 0; s * NR < nc; s++) {
        float *dst = bp + (size_t)s * kc * NR;
        int cols = nc - s * NR < NR ? nc - s * NR : NR;
        if (!tb) {
            for (int k = 0; k < kc; k++) {
                const float *src = b + (size_t)(k0 + k) * ldb + j0 + s * NR;
                float *d = dst + (size_t)k * NR;
                if (cols == NR) {
                    memcpy(d, src, sizeof(float) * NR);
                } else {
                    int j = 0;
                    for (; j < cols; j++) d[j] = src[j];
                    for (; j < NR; j++) d[j] = 0.0f;
                }
            }
        } else if (cols == NR) {
            /* 8 x 8 blocks: columns j..j+7 of op(b) are rows of b */
            int k = 0;
            for (; k + 8 <= kc; k += 8)
                for (int j = 0; j < NR; j += 8)
                    transpose8x8(b + (size_t)(j0 + s * NR + j) * ldb + k0 + k, ldb, dst + (size_t)k * NR + j, NR);
            for (; k < kc; k++)
                for (int j = 0; j < NR; j++) dst[(size_t)k * NR + j] = b[(size_t)(j0 + s * NR + j) * ldb + k0 + k];
        } else {
            if (cols < NR) memset(dst, 0, sizeof(float) * (size_t)kc * NR);
            for (int j = 0; j < cols; j++) {
                const float *src = b + (size_t)(j0 + s * NR + j) * ldb + k0;
                for (int k = 0; k < kc; k++) dst[(size_t)k * NR + j] = src[k];
            }
        }
    }
}

#define ROW_FMA(r)                                                \
    do {                                                          \
        __m512 a_ = _mm512_set1_ps(ap[r]);                        \
        c##r##0 = _mm512_fmadd_ps(a_, b0, c##r##0);               \
        c##r##1 = _mm512_fmadd_ps(a_, b1, c##r##1);               \
        c##r##2 = _mm512_fmadd_ps(a_, b2, c##r##2);               \
    } while (0)

#define ROW_STORE(r)                                                              \
    do {                                                                          \
        float *cr = c + (size_t)(r) * ldc;                                        \
        if (acc) {                                                                \
            c##r##0 = _mm512_add_ps(c##r##0, _mm512_loadu_ps(cr));                \
            c##r##1 = _mm512_add_ps(c##r##1, _mm512_loadu_ps(cr + 16));           \
            c##r##2 = _mm512_add_ps(c##r##2, _mm512_loadu_ps(cr + 32));           \
        }                                                                         \
        _mm512_storeu_ps(cr, c##r##0);                                            \
        _mm512_storeu_ps(cr + 16, c##r##1);                                       \
        _mm512_storeu_ps(cr + 32, c##r##2);                                       \
    } while (0)

#define ROW_DECL(r) __m512 c##r##0 = _mm512_setzero_ps(), c##r##1 = _mm512_setzero_ps(), c##r##2 = _mm512_setzero_ps()

/* c[0..8) x [0..48) (+)= ap sliver x bp sliver over kc */
__attribute__((target("avx512f"))) static void kernel_8x48(int kc, const float *restrict ap,
                                                           const float *restrict bp, float *restrict c,
                                                           int ldc, int acc) {
    ROW_DECL(0);
    ROW_DECL(1);
    ROW_DECL(2);
    ROW_DECL(3);
    ROW_DECL(4);
    ROW_DECL(5);
    ROW_DECL(6);
    ROW_DECL(7);
    for (int k = 0; k < kc; k++) {
        __m512 b0 = _mm512_load_ps(bp), b1 = _mm512_load_ps(bp + 16), b2 = _mm512_load_ps(bp + 32);
        ROW_FMA(0);
        ROW_FMA(1);
        ROW_FMA(2);
        ROW_FMA(3);
        ROW_FMA(4);
        ROW_FMA(5);
        ROW_FMA(6);
        ROW_FMA(7);
        ap += MR;
        bp += NR;
    }
    ROW_STORE(0);
    ROW_STORE(1);
    ROW_STORE(2);
    ROW_STORE(3);
    ROW_STORE(4);
    ROW_STORE(5);
    ROW_STORE(6);
    ROW_STORE(7);
}

#define ROW_STORE_M(r)                                                                         \
    do {                                                                                       \
        float *cr = c + (size_t)(r) * ldc;                                                     \
        if (acc) {                                                                             \
            c##r##0 = _mm512_add_ps(c##r##0, _mm512_maskz_loadu_ps(m0, cr));                  \
            c##r##1 = _mm512_add_ps(c##r##1, _mm512_maskz_loadu_ps(m1, cr + 16));             \
            c##r##2 = _mm512_add_ps(c##r##2, _mm512_maskz_loadu_ps(m2, cr + 32));             \
        }                                                                                      \
        _mm512_mask_storeu_ps(cr, m0, c##r##0);                                                \
        _mm512_mask_storeu_ps(cr + 16, m1, c##r##1);                                           \
        _mm512_mask_storeu_ps(cr + 32, m2, c##r##2);                                           \
    } while (0)

/* kernel_8x48 for a tile of all 8 rows and nr < 48 columns: masked loads/stores of c. */
__attribute__((target("avx512f"))) static void kernel_8xn(int kc, const float *restrict ap, const float *restrict bp,
                                                          float *restrict c, int ldc, int acc, int nr) {
    const __mmask16 m0 = nr >= 16 ? 0xFFFF : (__mmask16)((1u << nr) - 1u);
    const __mmask16 m1 = nr >= 32 ? 0xFFFF : nr <= 16 ? 0 : (__mmask16)((1u << (nr - 16)) - 1u);
    const __mmask16 m2 = nr <= 32 ? 0 : (__mmask16)((1u << (nr - 32)) - 1u);
    ROW_DECL(0);
    ROW_DECL(1);
    ROW_DECL(2);
    ROW_DECL(3);
    ROW_DECL(4);
    ROW_DECL(5);
    ROW_DECL(6);
    ROW_DECL(7);
    for (int k = 0; k < kc; k++) {
        __m512 b0 = _mm512_load_ps(bp), b1 = _mm512_load_ps(bp + 16), b2 = _mm512_load_ps(bp + 32);
        ROW_FMA(0);
        ROW_FMA(1);
        ROW_FMA(2);
        ROW_FMA(3);
        ROW_FMA(4);
        ROW_FMA(5);
        ROW_FMA(6);
        ROW_FMA(7);
        ap += MR;
        bp += NR;
    }
    ROW_STORE_M(0);
    ROW_STORE_M(1);
    ROW_STORE_M(2);
    ROW_STORE_M(3);
    ROW_STORE_M(4);
    ROW_STORE_M(5);
    ROW_STORE_M(6);
    ROW_STORE_M(7);
}

/* The blocked loops. A comes either packed per block here (ap_full == NULL: op(a) from a,
 * packed into pack_a) or from a whole-matrix packing (ew_gemm_avx512_prepack_a): block
 * (pc, ic) of the rows starting at sliver row0 / MR is at ap_full + pc * mpad + (row0 + ic) * kc.
 * Both give the kernels the same slivers in the same order, so results are identical. */
static void gemm_core(int ta, int m, int n, int k, const float *a, int lda, const float *ap_full, int mpad,
                      int row0, const float *bp_full, ew_gemm_pack_b_fn pack, const void *pctx, int joff,
                      int accumulate, float *c, int ldc, float *pack_a, float *pack_b) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {
        if (!accumulate)
            for (int i = 0; i < m; i++) memset(c + (size_t)i * ldc, 0, sizeof(float) * (size_t)n);
        return;
    }
    float tmp[MR * NR] __attribute__((aligned(64)));
    for (int jc = 0; jc < n; jc += NC) {
        int nc = n - jc < NC ? n - jc : NC;
        for (int pc = 0; pc < k; pc += KC) {
            int kc = k - pc < KC ? k - pc : KC;
            int acc = accumulate || pc > 0;
            const float *bpk = pack_b;
            if (bp_full)
                bpk = bp_full + (size_t)jc * k + (size_t)pc * ((nc + NR - 1) / NR * NR);
            else
                pack(pctx, pc, kc, joff + jc, nc, pack_b);
            for (int ic = 0; ic < m; ic += MC) {
                int mc = m - ic < MC ? m - ic : MC;
                const float *apk;
                if (ap_full) {
                    apk = ap_full + (size_t)pc * mpad + (size_t)(row0 + ic) * kc;
                } else {
                    pack_a_block(ta, a, lda, ic, mc, pc, kc, pack_a);
                    apk = pack_a;
                }
                for (int jr = 0; jr < nc; jr += NR) {
                    int nr = nc - jr < NR ? nc - jr : NR;
                    const float *bs = bpk + (size_t)(jr / NR) * kc * NR;
                    for (int ir = 0; ir < mc; ir += MR) {
                        int mr = mc - ir < MR ? mc - ir : MR;
                        const float *as = apk + (size_t)(ir / MR) * kc * MR;
                        float *cc = c + (size_t)(ic + ir) * ldc + jc + jr;
                        if (mr == MR && nr == NR) {
                            kernel_8x48(kc, as, bs, cc, ldc, acc);
                        } else if (mr == MR) {
                            kernel_8xn(kc, as, bs, cc, ldc, acc, nr);
                        } else {
                            kernel_8x48(kc, as, bs, tmp, NR, 0);
                            for (int r = 0; r < mr; r++) {
                                float *cr = cc + (size_t)r * ldc;
                                const float *tr = tmp + r * NR;
                                if (acc)
                                    for (int j = 0; j < nr; j++) cr[j] += tr[j];
                                else
                                    for (int j = 0; j < nr; j++) cr[j] = tr[j];
                            }
                        }
                    }
                }
            }
        }
    }
}

void ew_gemm_avx512_ex(int ta, int m, int n, int k, const float *a, int lda, ew_gemm_pack_b_fn pack,
                       const void *pctx, int joff, int accumulate, float *c, int ldc, float *pack_a,
                       float *pack_b) {
    gemm_core(ta, m, n, k, a, lda, NULL, 0, 0, NULL, pack, pctx, joff, accumulate, c, ldc, pack_a, pack_b);
}

size_t ew_gemm_prepack_a_floats(int m, int k) {
    return m > 0 && k > 0 ? (size_t)((m + MR - 1) / MR * MR) * (size_t)k : 0;
}

void ew_gemm_avx512_prepack_a(int ta, int m, int k, const float *a, int lda, float *ap) {
    size_t mpad = (size_t)((m + MR - 1) / MR * MR);
    for (int pc = 0; pc < k; pc += KC) {
        int kc = k - pc < KC ? k - pc : KC;
        pack_a_block(ta, a, lda, 0, m, pc, kc, ap + (size_t)pc * mpad);
    }
}

void ew_gemm_avx512_pp(int m, int n, int k, const float *ap, int mfull, int row0, ew_gemm_pack_b_fn pack,
                       const void *pctx, int joff, int accumulate, float *c, int ldc, float *pack_b) {
    int mpad = (mfull + MR - 1) / MR * MR;
    gemm_core(0, m, n, k, NULL, 0, ap, mpad, row0, NULL, pack, pctx, joff, accumulate, c, ldc, NULL, pack_b);
}

size_t ew_gemm_prepack_b_floats(int k, int n) {
    return k > 0 && n > 0 ? (size_t)k * (size_t)((n + NR - 1) / NR * NR) : 0;
}

void ew_gemm_avx512_prepack_b(int k, int n, ew_gemm_pack_b_fn pack, const void *pctx, float *bp) {
    for (int jc = 0; jc < n; jc += NC) {
        int nc = n - jc < NC ? n - jc : NC;
        for (int pc = 0; pc < k; pc += KC) {
            int kc = k - pc < KC ? k - pc : KC;
            pack(pctx, pc, kc, jc, nc, bp + (size_t)jc * k + (size_t)pc * ((nc + NR - 1) / NR * NR));
        }
    }
}

void ew_gemm_avx512_pp2(int m, int n, int k, const float *ap, int mfull, int row0, const float *bp, int accumulate,
                        float *c, int ldc) {
    int mpad = (mfull + MR - 1) / MR * MR;
    gemm_core(0, m, n, k, NULL, 0, ap, mpad, row0, bp, NULL, NULL, 0, accumulate, c, ldc, NULL, NULL);
}

typedef struct {
    int tb, ldb;
    const float *b;
} matrix_b;

static void pack_matrix_b(const void *ctx, int k0, int kc, int j0, int nc, float *bp) {
    const matrix_b *mb = ctx;
    pack_b_panel(mb->tb, mb->b, mb->ldb, k0, kc, j0, nc, bp);
}

void ew_gemm_avx512(int ta, int tb, int m, int n, int k, const float *a, int lda, const float *b,
                    int ldb, int accumulate, float *c, int ldc, float *pack_a, float *pack_b) {
    matrix_b mb = {tb, ldb, b};
    ew_gemm_avx512_ex(ta, m, n, k, a, lda, pack_matrix_b, &mb, 0, accumulate, c, ldc, pack_a, pack_b);
}

void ew_gemm_avx512_pp_mat(int m, int n, int k, const float *ap, int mfull, int row0, int tb, const float *b,
                           int ldb, int accumulate, float *c, int ldc, float *pack_b) {
    matrix_b mb = {tb, ldb, b};
    ew_gemm_avx512_pp(m, n, k, ap, mfull, row0, pack_matrix_b, &mb, 0, accumulate, c, ldc, pack_b);
}

#else

int ew_gemm_avx512_available(void) { return 0; }

size_t ew_gemm_prepack_a_floats(int m, int k) {
    (void)m, (void)k;
    return 0;
}

void ew_gemm_avx512_prepack_a(int ta, int m, int k, const float *a, int lda, float *ap) {
    /* never called: ew_gemm_avx512_available() is 0 on this platform */
    (void)ta, (void)m, (void)k, (void)a, (void)lda, (void)ap;
}

void ew_gemm_avx512_pp(int m, int n, int k, const float *ap, int mfull, int row0, ew_gemm_pack_b_fn pack,
                       const void *pctx, int joff, int accumulate, float *c, int ldc, float *pack_b) {
    /* never called: ew_gemm_avx512_available() is 0 on this platform */
    (void)m, (void)n, (void)k, (void)ap, (void)mfull, (void)row0, (void)pack, (void)pctx, (void)joff;
    (void)accumulate, (void)c, (void)ldc, (void)pack_b;
}

void ew_gemm_avx512_ex(int ta, int m, int n, int k, const float *a, int lda, ew_gemm_pack_b_fn pack,
                       const void *pctx, int joff, int accumulate, float *c, int ldc, float *pack_a,
                       float *pack_b) {
    /* never called: ew_gemm_avx512_available() is 0 on this platform */
    (void)ta, (void)m, (void)n, (void)k, (void)a, (void)lda, (void)pack, (void)pctx, (void)joff;
    (void)accumulate, (void)c, (void)ldc, (void)pack_a, (void)pack_b;
}

size_t ew_gemm_prepack_b_floats(int k, int n) {
    (void)k, (void)n;
    return 0;
}

void ew_gemm_avx512_prepack_b(int k, int n, ew_gemm_pack_b_fn pack, const void *pctx, float *bp) {
    /* never called: ew_gemm_avx512_available() is 0 on this platform */
    (void)k, (void)n, (void)pack, (void)pctx, (void)bp;
}

void ew_gemm_avx512_pp2(int m, int n, int k, const float *ap, int mfull, int row0, const float *bp, int accumulate,
                        float *c, int ldc) {
    /* never called: ew_gemm_avx512_available() is 0 on this platform */
    (void)m, (void)n, (void)k, (void)ap, (void)mfull, (void)row0, (void)bp, (void)accumulate, (void)c, (void)ldc;
}

void ew_gemm_avx512_pp_mat(int m, int n, int k, const float *ap, int mfull, int row0, int tb, const float *b,
                           int ldb, int accumulate, float *c, int ldc, float *pack_b) {
    /* never called: ew_gemm_avx512_available() is 0 on this platform */
    (void)m, (void)n, (void)k, (void)ap, (void)mfull, (void)row0, (void)tb, (void)b, (void)ldb;
    (void)accumulate, (void)c, (void)ldc, (void)pack_b;
}

void ew_gemm_avx512(int ta, int tb, int m, int n, int k, const float *a, int lda, const float *b,
                    int ldb, int accumulate, float *c, int ldc, float *pack_a, float *pack_b) {
    /* never called: ew_gemm_avx512_available() is 0 on this platform */
    (void)ta, (void)tb, (void)m, (void)n, (void)k, (void)a, (void)lda, (void)b, (void)ldb;
    (void)accumulate, (void)c, (void)ldc, (void)pack_a, (void)pack_b;
}

#endif
