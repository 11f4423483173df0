/* gemm_cpu.h - the CPU backend's own packed SGEMM for AVX-512 processors (internal).
 *
 * Contract: c = op(a) op(b) (accumulate = 0) or c += op(a) op(b) (accumulate = 1), row-major,
 * single-threaded, deterministic (fixed blocking; the k order per element does not depend on
 * the matrix sizes' split across threads along m or n). Blocked like BLIS: b packed in
 * KC x NC panels, a in MC x KC blocks, an 8 x 48 register-tile kernel with FMA. The caller
 * gives the packing buffers (ew_gemm_pack_floats each). Only call it when
 * ew_gemm_avx512_available() says the processor has AVX-512F; otherwise the backend uses
 * OpenBLAS (its reference path, also used for any other alpha/beta).
 */
#ifndef EW_GEMM_CPU_H
#define EW_GEMM_CPU_H

#include <stddef.h>

/* Width of a packed b sliver: a packing callback writes rows k0..k0+kc of op(b) for columns
 * j0..j0+nc as bp[(s * kc + k) * EW_GEMM_NR + j] (sliver s holds columns s*NR.. s*NR+NR-1
 * of the panel), zero-padding the last sliver to NR columns. */
#define EW_GEMM_NR 48
typedef void (*ew_gemm_pack_b_fn)(const void *ctx, int k0, int kc, int j0, int nc, float *bp);

/* Floats needed for the a and b packing buffers (each, 64-byte aligned). */
void ew_gemm_pack_floats(size_t *a_floats, size_t *b_floats);
int ew_gemm_avx512_available(void);
void ew_gemm_avx512(int ta, int tb, int m, int n, int k, const float *a, int lda, const float *b,
                    int ldb, int accumulate, float *c, int ldc, float *pack_a, float *pack_b);
/* The same with b given by a packing callback (implicit matrices such as im2col patches);
 * the callback sees column indices offset by joff. */
void ew_gemm_avx512_ex(int ta, int m, int n, int k, const float *a, int lda, ew_gemm_pack_b_fn pack,
                       const void *pctx, int joff, int accumulate, float *c, int ldc, float *pack_a,
                       float *pack_b);


/* A whole op(a) (m x k) packed once, for several GEMMs that share it (a conv's weights across
 * sample groups and channel blocks): ew_gemm_prepack_a_floats(m, k) floats. */
size_t ew_gemm_prepack_a_floats(int m, int k);
void ew_gemm_avx512_prepack_a(int ta, int m, int k, const float *a, int lda, float *ap);
/* ew_gemm_avx512_ex with a = rows [row0, row0 + m) of a matrix of mfull rows prepacked by
 * ew_gemm_avx512_prepack_a (row0 a multiple of 8; same k). Bit-identical to packing a here. */
void ew_gemm_avx512_pp(int m, int n, int k, const float *ap, int mfull, int row0, ew_gemm_pack_b_fn pack,
                       const void *pctx, int joff, int accumulate, float *c, int ldc, float *pack_b);
/* A whole b (k x n) packed once through a packing callback (columns from 0), for several
 * GEMMs that share it: ew_gemm_prepack_b_floats(k, n) floats, 64-byte aligned. */
size_t ew_gemm_prepack_b_floats(int k, int n);
void ew_gemm_avx512_prepack_b(int k, int n, ew_gemm_pack_b_fn pack, const void *pctx, float *bp);
/* ew_gemm_avx512_pp with b prepacked by ew_gemm_avx512_prepack_b (same k and n). */
void ew_gemm_avx512_pp2(int m, int n, int k, const float *ap, int mfull, int row0, const float *bp, int accumulate,
                        float *c, int ldc);
/* The same with b a plain row-major matrix (tb: transposed). */
void ew_gemm_avx512_pp_mat(int m, int n, int k, const float *ap, int mfull, int row0, int tb, const float *b,
                           int ldb, int accumulate, float *c, int ldc, float *pack_b);

#endif
