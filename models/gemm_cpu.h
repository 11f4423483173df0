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

#endif
