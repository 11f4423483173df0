/* backend.h - the table of heavy kernels the ops run on, and the CPU backend.
 *
 * Contract: a backend is a small struct of function pointers over raw float pointers (no
 * tensors), so a device backend can provide the same entries. Matrices are row-major.
 * Kernels that accumulate say so ("+="); the rest overwrite. Scratch memory comes from the
 * caller (size from conv_workspace, in floats). The CPU backend runs on `threads` OpenMP
 * threads (ew_set_threads) and keeps OpenBLAS single-threaded inside them, splitting GEMMs
 * itself, so there is never more than `threads` busy threads. Same inputs, same thread count:
 * bit-identical outputs (static work split, fixed reduction order).
 */
#ifndef EW_BACKEND_H
#define EW_BACKEND_H

#include <stddef.h>

/* A 2-d convolution, cross-correlation as in PyTorch: x[n,c,h,w] * w[oc,c,kh,kw] -> y[n,oc,oh,ow]
 * with oh = (h + 2 ph - kh) / sh + 1 (likewise ow). */
typedef struct {
    int n, c, h, w;
    int oc, oh, ow;
    int kh, kw, sh, sw, ph, pw;
} ew_conv_desc;

typedef enum {
    EW_UNARY_RELU,
    EW_UNARY_LEAKY_RELU, /* alpha: negative slope */
    EW_UNARY_TANH,
    EW_UNARY_SIGMOID,
    EW_UNARY_SOFTPLUS,
    EW_UNARY_EXP,
    EW_UNARY_LOG,
    EW_UNARY_SQUARE,
    EW_UNARY_SCALE,      /* y = alpha * x */
    EW_UNARY_ADD_SCALAR, /* y = x + alpha */
    EW_UNARY_COUNT
} ew_unary_op;

typedef enum { EW_BINARY_ADD, EW_BINARY_SUB, EW_BINARY_MUL, EW_BINARY_DIV } ew_binary_op;

typedef struct ew_backend ew_backend;
struct ew_backend {
    const char *name;
    int threads;
    /* c = alpha * op(a) * op(b) + beta * c; op(a) is m x k, op(b) k x n; ta/tb: transpose. */
    void (*gemm)(const ew_backend *be, int ta, int tb, int m, int n, int k, float alpha,
                 const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc);
    /* Scratch floats the three conv kernels need for this shape. */
    size_t (*conv_workspace)(const ew_backend *be, const ew_conv_desc *d);
    /* y (+)= conv(x, w) (+ bias[oc] when bias != NULL): accumulate != 0 adds, else overwrites. */
    void (*conv_fwd)(const ew_backend *be, const ew_conv_desc *d, const float *x, const float *w,
                     const float *bias, float *y, int accumulate, float *ws);
    /* dx (+)= conv_transpose(dy, w): accumulate != 0 adds, else overwrites. */
    void (*conv_bwd_data)(const ew_backend *be, const ew_conv_desc *d, const float *dy,
                          const float *w, float *dx, int accumulate, float *ws);
    /* dw += correlation of x and dy (the weight gradient of conv_fwd). */
    void (*conv_bwd_weight)(const ew_backend *be, const ew_conv_desc *d, const float *x,
                            const float *dy, float *dw, float *ws);
    /* y = f(x) elementwise (alpha as the op says). */
    void (*unary)(const ew_backend *be, ew_unary_op op, float alpha, size_t n, const float *x,
                  float *y);
    /* dx += dy * f'(x), with y = f(x) given too (either may be used). */
    void (*unary_bwd)(const ew_backend *be, ew_unary_op op, float alpha, size_t n, const float *x,
                      const float *y, const float *dy, float *dx);
    /* y = a op b for same-length arrays. */
    void (*binary)(const ew_backend *be, ew_binary_op op, size_t n, const float *a,
                   const float *b, float *y);
    /* da += dy * d(a op b)/da and db += dy * d(a op b)/db (da or db may be NULL). */
    void (*binary_bwd)(const ew_backend *be, ew_binary_op op, size_t n, const float *a,
                       const float *b, const float *dy, float *da, float *db);
    /* y += alpha * x */
    void (*axpy)(const ew_backend *be, size_t n, float alpha, const float *x, float *y);
    /* out[c] (+)= sum over rows r < rows and inner i < inner of x[(r * ch + c) * inner + i]:
     * sums a [rows, ch, inner] array to [ch] (bias gradients, broadcast reductions). */
    void (*sum_channels)(const ew_backend *be, int rows, int ch, int inner, const float *x,
                         float *out, int accumulate);
    /* Optional (NULL: not provided): unary_bwd that overwrites, dx = dy * f'(x), for a first
     * gradient written into an uninitialised buffer. */
    void (*unary_bwd_set)(const ew_backend *be, ew_unary_op op, float alpha, size_t n, const float *x,
                          const float *y, const float *dy, float *dx);

    /* Optional data-movement entries a device backend provides so that ops.c need not touch
     * tensor data on the host (NULL, as on the CPU backend: ops.c runs its own host loop,
     * which defines the result).
     * fill: y[i] = value for i < n.
     * add_channels: y[(r * ch + c) * inner + i] += b[c] (biases of linear and transposed conv).
     * copy_rows: dst[r * dst_stride + i] (+)= src[r * src_stride + i], r < rows, i < len
     *   (concat, slice and their gradients); accumulate != 0 adds.
     * scale_groups (dropout): m = mask[k], v = x[k * inner + i] for k < groups, i < inner:
     *   mode 0: y = m v; mode 1: y = (m == 0 ? 0 : m v); mode 2: y += (m == 0 ? 0 : m v).
     * mse: out[0] = sum((a - b)^2) / n, summed in double.
     * mse_bwd: k = 2 dy[0] / n (dy read by the backend); fresh: da = k (a - b); else
     *   da += k (a - b) and db -= k (a - b) (either may be NULL). */
    void (*fill)(const ew_backend *be, size_t n, float value, float *y);
    void (*add_channels)(const ew_backend *be, int rows, int ch, size_t inner, const float *b, float *y);
    void (*copy_rows)(const ew_backend *be, size_t rows, size_t len, const float *src, size_t src_stride, float *dst,
                      size_t dst_stride, int accumulate);
    void (*scale_groups)(const ew_backend *be, size_t groups, size_t inner, const float *mask, const float *x,
                         float *y, int mode);
    void (*mse)(const ew_backend *be, size_t n, const float *a, const float *b, float *out);
    void (*mse_bwd)(const ew_backend *be, size_t n, const float *a, const float *b, const float *dy, float *da,
                    float *db, int fresh);
    /* Optimizer entries (optim.h ew_optim_use_backend; NULL: the optimizer's host loops).
     * adam: for i < n, exactly optim.c's adam_run: pi = p decay_mul; gi = g + l2 p;
     *   m = b1 m + (1 - b1) gi; v = b2 v + (1 - b2) gi^2; p = pi - step_size m / (sqrt(v) / sqrt_bc2 + eps).
     * sumsq: returns sum of x[i]^2 (double accumulation, fixed order), waiting for it. */
    void (*adam)(const ew_backend *be, size_t n, float *p, const float *g, float *m, float *v, float b1, float b2,
                 float step_size, float sqrt_bc2, float eps, float l2, float decay_mul);
    double (*sumsq)(const ew_backend *be, size_t n, const float *x);

    /* Device backends only (all NULL on the CPU backend, which means: host malloc/free,
     * nothing to wait for, no device errors, ew_backend_destroy frees a CPU backend).
     * mem_alloc/mem_free: memory the backend's kernels can address AND the host can read and
     * write after sync (the CUDA backend: managed memory); every pointer handed to an entry
     * above must come from mem_alloc (graphs take their arena and scratch from it; parameters
     * are moved into it, see ew_fm_move_to_backend). NULL when out of memory.
     * sync: waits until every enqueued kernel has finished; 0, or -1 on a device error.
     * error: the first device error (sticky, one line), or NULL. After an error the entries
     * do nothing. destroy: frees the backend (ew_backend_destroy calls it).
     * upload (optional): copies bytes of host memory into the backend's memory (a DMA copy
     * instead of host stores into migrating pages). owns (optional): 1 when p points into the
     * backend's memory (ew_tensor_wrap then does not copy). */
    void *(*mem_alloc)(const ew_backend *be, size_t bytes);
    void (*mem_free)(const ew_backend *be, void *p);
    int (*sync)(const ew_backend *be);
    const char *(*error)(const ew_backend *be);
    void (*destroy)(ew_backend *be);
    void (*upload)(const ew_backend *be, void *dst, const void *src, size_t bytes);
    int (*owns)(const ew_backend *be, const void *p);
};

/* 1 when be computes on a device (it has mem_alloc): tensors must live in its memory. */
static inline int ew_backend_is_device(const ew_backend *be) { return be && be->mem_alloc != NULL; }
/* The backend's sticky device error, or NULL (always NULL for the CPU backend). */
static inline const char *ew_backend_error(const ew_backend *be) {
    return be && be->error ? be->error(be) : NULL;
}
/* Waits for the backend's work (no-op on the CPU backend): 0 or -1 on a device error. */
static inline int ew_backend_sync(const ew_backend *be) { return be && be->sync ? be->sync(be) : 0; }

/* The CUDA backend: models/backend_cuda.h. */

/* The CPU backend (OpenBLAS + OpenMP). threads < 1 means 1. NULL when out of memory.
 * A backend owns per-thread packing buffers: use it from one caller thread at a time (or
 * from the threads of one OpenMP team, each its own thread number). */
ew_backend *ew_backend_cpu_create(int threads);
/* Frees any backend (CPU or device). */
void ew_backend_destroy(ew_backend *be);
/* Sets the number of threads the backend's kernels use (< 1 means 1). Returns 0, or -1 (out
 * of memory: the backend falls back to 1 thread; or be is not the CPU backend). */
int ew_set_threads(ew_backend *be, int threads);

/* Which GEMM the CPU backend uses: AUTO (own AVX-512 kernel when the processor has
 * AVX-512F, else OpenBLAS), BLAS (always OpenBLAS), AVX512 (-1 if unavailable). */
enum { EW_CPU_GEMM_AUTO = 0, EW_CPU_GEMM_BLAS = 1, EW_CPU_GEMM_AVX512 = 2 };
int ew_cpu_set_gemm(ew_backend *be, int impl);
/* "own-avx512" or "openblas". */
const char *ew_cpu_gemm_name(const ew_backend *be);

/* Which conv algorithm the CPU backend picks for a shape (for tests and the bench):
 * 0 = im2col + GEMM, 1 = direct loops (tiny channel counts), 2 = 1x1 GEMM without im2col. */
int ew_cpu_conv_algo(const ew_conv_desc *d);
/* Forces the CPU backend's conv algorithm (-1: pick per shape; 2 falls back to 0 where the
 * shape is not 1x1). For tests comparing paths. Returns -1 if be is not the CPU backend. */
int ew_cpu_force_conv_algo(ew_backend *be, int algo);
/* Forces how the implicit im2col path packs patches for the AVX-512 GEMM: -1 per shape,
 * 0 vector gathers, 1 contiguous runs (strides 1 and 2 in the forward packing; other strides
 * gather). For tests comparing paths. Returns -1 if be is not the CPU backend or mode is bad. */
int ew_cpu_force_conv_pack(ew_backend *be, int mode);

#endif
