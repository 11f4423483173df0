/* test_nn_gemm.c - the CPU backend's GEMM paths (own packed AVX-512 kernel and OpenBLAS)
 * agree with a double-precision reference for all transposes, edge sizes that cut every
 * blocking level, accumulate and overwrite, 1 and 2 threads. */
#include "tests/test_nn_util.h"

static double ref(int ta, int tb, const float *a, int lda, const float *b, int ldb, int i, int j, int k) {
    double s = 0.0;
    for (int p = 0; p < k; p++) s += (double)(ta ? a[(size_t)p * lda + i] : a[(size_t)i * lda + p]) * (tb ? b[(size_t)j * ldb + p] : b[(size_t)p * ldb + j]);
    return s;
}

int main(void) {
    int sizes[][3] = {{1, 1, 1}, {8, 48, 16}, {7, 47, 5}, {9, 49, 193}, {250, 97, 40}, {17, 3100, 20}, {33, 65, 400}, {64, 10, 0}};
    ew_rng r;
    ew_rng_seed(&r, 3);
    for (int impl = EW_CPU_GEMM_BLAS; impl <= EW_CPU_GEMM_AVX512; impl++)
        for (int threads = 1; threads <= 2; threads++) {
            ew_backend *be = ew_backend_cpu_create(threads);
            if (ew_cpu_set_gemm(be, impl) != 0) {
                check_skip("own AVX-512 GEMM: processor without AVX-512F");
                ew_backend_destroy(be);
                continue;
            }
            for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
                for (int ta = 0; ta < 2; ta++)
                    for (int tb = 0; tb < 2; tb++)
                        for (int acc = 0; acc < 2; acc++) {
                            int m = sizes[s][0], n = sizes[s][1], k = sizes[s][2];
                            int lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 1, ldc = n + 2;
                            size_t na = (size_t)(ta ? k : m) * lda + 1, nb = (size_t)(tb ? n : k) * ldb + 1, nc = (size_t)m * ldc;
                            float *a = malloc(na * 4), *b = malloc(nb * 4), *c = malloc(nc * 4), *c0 = malloc(nc * 4);
                            for (size_t i = 0; i < na; i++) a[i] = (float)ew_rng_range(&r, -1, 1);
                            for (size_t i = 0; i < nb; i++) b[i] = (float)ew_rng_range(&r, -1, 1);
                            for (size_t i = 0; i < nc; i++) c[i] = c0[i] = (float)ew_rng_range(&r, -1, 1);
                            be->gemm(be, ta, tb, m, n, k, 1.0f, a, lda, b, ldb, acc ? 1.0f : 0.0f, c, ldc);
                            double worst = 0.0;
                            int pad_ok = 1;
                            for (int i = 0; i < m; i++) {
                                for (int j = 0; j < n; j++) {
                                    double want = ref(ta, tb, a, lda, b, ldb, i, j, k) + (acc ? c0[(size_t)i * ldc + j] : 0.0);
                                    worst = fmax(worst, fabs(want - c[(size_t)i * ldc + j]) / (1.0 + sqrt((double)k)));
                                }
                                for (int j = n; j < ldc; j++) pad_ok &= c[(size_t)i * ldc + j] == c0[(size_t)i * ldc + j];
                            }
                            CHECK(worst < 2e-6 && pad_ok, "%s threads %d: %dx%dx%d ta %d tb %d acc %d: err %g, padding %s",
                                  ew_cpu_gemm_name(be), threads, m, n, k, ta, tb, acc, worst, pad_ok ? "kept" : "overwritten");
                            free(a);
                            free(b);
                            free(c);
                            free(c0);
                        }
            ew_backend_destroy(be);
        }
    return check_done();
}
