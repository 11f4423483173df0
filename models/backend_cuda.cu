/* backend_cuda.cu - the CUDA/cuBLAS backend (contract in backend_cuda.h).
 *
 * Every entry: return at once after a device error; launch grid-stride kernels (bounds-checked,
 * size_t indices) on the backend's stream; check the launch; wait for the stream when
 * sync_each is on and no capture runs. GEMMs are row-major on top of column-major cuBLAS:
 * C = op(A) op(B) is computed as C^T = op(B)^T op(A)^T. */
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/backend_cuda.h"

namespace {

const unsigned kThreads = 256;
const unsigned kMaxBlocks = 65535u * 8u;

struct cuda_backend {
    ew_backend base;     /* first: the table */
    ew_cuda_options opt;
    int dev;
    cudaStream_t stream;
    cublasHandle_t blas;
    void *blas_ws;       /* cuBLAS workspace (fixed, so GEMMs can be captured into graphs) */
    double *partials;    /* kReduceBlocks doubles for two-pass reductions (one stream: shared) */
    int capturing;
    int failed;
    char err[256];
    char devname[256];
};

cuda_backend *cbe(const ew_backend *be) { return (cuda_backend *)be; }

void set_err(cuda_backend *cb, const char *fmt, ...) {
    if (cb->failed) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cb->err, sizeof cb->err, fmt, ap);
    va_end(ap);
    cb->failed = 1;
}

/* 0 when e is success, else records "cuda: <what>: <reason> (line)" and returns -1. */
int ck(cuda_backend *cb, cudaError_t e, const char *what, int line) {
    if (e == cudaSuccess) return 0;
    set_err(cb, "cuda: %s: %s (backend_cuda.cu:%d)", what, cudaGetErrorString(e), line);
    return -1;
}

const char *blas_str(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_NOT_INITIALIZED: return "cuBLAS not initialized";
    case CUBLAS_STATUS_ALLOC_FAILED: return "cuBLAS allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE: return "invalid value";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "architecture mismatch";
    case CUBLAS_STATUS_MAPPING_ERROR: return "mapping error";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "execution failed";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "internal error";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "not supported";
    default: return "unknown cuBLAS status";
    }
}

int ckb(cuda_backend *cb, cublasStatus_t s, const char *what, int line) {
    if (s == CUBLAS_STATUS_SUCCESS) return 0;
    set_err(cb, "cuda: %s: %s (backend_cuda.cu:%d)", what, blas_str(s), line);
    return -1;
}

#define CK(cb, call) ck((cb), (call), #call, __LINE__)
#define CKB(cb, call) ckb((cb), (call), #call, __LINE__)

/* After a launch: the launch error, then (sync_each, not capturing) the execution error. */
int launched(cuda_backend *cb, const char *kernel, int line) {
    if (ck(cb, cudaGetLastError(), kernel, line)) return -1;
    if (cb->opt.sync_each && !cb->capturing) return ck(cb, cudaStreamSynchronize(cb->stream), kernel, line);
    return 0;
}

#define LAUNCHED(cb, name) launched((cb), name, __LINE__)

unsigned grid(size_t n) { return ew_cuda_grid(n, kThreads, kMaxBlocks); }

/* 32-bit index arithmetic is enough (and much cheaper than 64-bit division) when every index
 * a kernel forms stays below 2^31: then t + the grid stride cannot wrap either. */
bool idx32(size_t a, size_t b) { return a < ((size_t)1 << 31) && b < ((size_t)1 << 31); }

/* ------------------------------------------------------------------------------------------ */
/* Elementwise kernels (same formulas as backend_cpu.c) */

__device__ __forceinline__ float sigmoid_d(float x) {
    if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

__device__ __forceinline__ float unary_f(int op, float alpha, float x) {
    switch (op) {
    case EW_UNARY_RELU: return x > 0.0f ? x : 0.0f;
    case EW_UNARY_LEAKY_RELU: return x > 0.0f ? x : alpha * x;
    case EW_UNARY_TANH: return tanhf(x);
    case EW_UNARY_SIGMOID: return sigmoid_d(x);
    case EW_UNARY_SOFTPLUS: return log1pf(expf(-fabsf(x))) + (x > 0.0f ? x : 0.0f);
    case EW_UNARY_EXP: return expf(x);
    case EW_UNARY_LOG: return logf(x);
    case EW_UNARY_SQUARE: return x * x;
    case EW_UNARY_SCALE: return alpha * x;
    case EW_UNARY_ADD_SCALAR: return x + alpha;
    default: return 0.0f;
    }
}

/* dy * f'(x) given x and y = f(x) */
__device__ __forceinline__ float unary_g(int op, float alpha, float x, float y, float dy) {
    switch (op) {
    case EW_UNARY_RELU: return x > 0.0f ? dy : 0.0f;
    case EW_UNARY_LEAKY_RELU: return x > 0.0f ? dy : alpha * dy;
    case EW_UNARY_TANH: return dy * (1.0f - y * y);
    case EW_UNARY_SIGMOID: return dy * y * (1.0f - y);
    case EW_UNARY_SOFTPLUS: return dy * sigmoid_d(x);
    case EW_UNARY_EXP: return dy * y;
    case EW_UNARY_LOG: return dy / x;
    case EW_UNARY_SQUARE: return 2.0f * x * dy;
    case EW_UNARY_SCALE: return alpha * dy;
    case EW_UNARY_ADD_SCALAR: return dy;
    default: return 0.0f;
    }
}

__global__ void k_unary(int op, float alpha, size_t n, const float *x, float *y) { /* x == y allowed */
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        y[i] = unary_f(op, alpha, x[i]);
}

/* x or y may be unused by an op; they are only read when the op needs them. */
__global__ void k_unary_bwd(int op, float alpha, size_t n, const float *x, const float *y, const float *dy,
                            float *dx, int acc) {
    const int need_x = op == EW_UNARY_RELU || op == EW_UNARY_LEAKY_RELU || op == EW_UNARY_SOFTPLUS ||
                       op == EW_UNARY_LOG || op == EW_UNARY_SQUARE;
    const int need_y = op == EW_UNARY_TANH || op == EW_UNARY_SIGMOID || op == EW_UNARY_EXP;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float g = unary_g(op, alpha, need_x ? x[i] : 0.0f, need_y ? y[i] : 0.0f, dy[i]);
        dx[i] = acc ? dx[i] + g : g;
    }
}

__device__ __forceinline__ float bin_f(int op, float a, float b) {
    switch (op) {
    case EW_BINARY_ADD: return a + b;
    case EW_BINARY_SUB: return a - b;
    case EW_BINARY_MUL: return a * b;
    case EW_BINARY_DIV: return a / b;
    default: return 0.0f;
    }
}

__global__ void k_binary(int op, size_t n, const float *a, const float *b, float *y) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        y[i] = bin_f(op, a[i], b[i]);
}

/* da and db may be the same buffer (a op a): one thread updates both for its element, in the
 * CPU order (da first). Either may be NULL. */
__global__ void k_binary_bwd(int op, size_t n, const float *a, const float *b, const float *dy, float *da, float *db) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float g = dy[i];
        switch (op) {
        case EW_BINARY_ADD:
            if (da) da[i] += g;
            if (db) db[i] += g;
            break;
        case EW_BINARY_SUB:
            if (da) da[i] += g;
            if (db) db[i] += -g;
            break;
        case EW_BINARY_MUL:
            if (da) da[i] += g * b[i];
            if (db) db[i] += g * a[i];
            break;
        case EW_BINARY_DIV:
            if (da) da[i] += g / b[i];
            if (db) db[i] -= g * a[i] / (b[i] * b[i]);
            break;
        default:
            break;
        }
    }
}

__global__ void k_axpy(size_t n, float alpha, const float *x, float *y) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        y[i] += alpha == 1.0f ? x[i] : alpha * x[i];
}

/* sum_channels, inner == 1: one thread per channel walks the rows (coalesced across channels). */
__global__ void k_sum_rows(int rows, int ch, const float *x, float *out, int acc) {
    for (size_t c = blockIdx.x * (size_t)blockDim.x + threadIdx.x; c < (size_t)ch; c += (size_t)gridDim.x * blockDim.x) {
        double s = 0.0;
        for (int r = 0; r < rows; r++) s += x[(size_t)r * ch + c];
        out[c] = acc ? out[c] + (float)s : (float)s;
    }
}

/* sum_channels, inner > 1: one block per channel (grid-stride over channels), a fixed-order
 * tree reduction in double over the block. blockDim.x must be kThreads. */
__global__ void k_sum_channels(int rows, int ch, int inner, const float *x, float *out, int acc) {
    __shared__ double part[kThreads];
    const size_t per = (size_t)rows * (size_t)inner;
    for (size_t c = blockIdx.x; c < (size_t)ch; c += gridDim.x) {
        double s = 0.0;
        for (size_t j = threadIdx.x; j < per; j += blockDim.x) {
            size_t r = j / (size_t)inner, i = j % (size_t)inner;
            s += x[(r * (size_t)ch + c) * (size_t)inner + i];
        }
        part[threadIdx.x] = s;
        __syncthreads();
        for (unsigned w = blockDim.x / 2; w > 0; w >>= 1) {
            if (threadIdx.x < w) part[threadIdx.x] += part[threadIdx.x + w];
            __syncthreads();
        }
        if (threadIdx.x == 0) out[c] = acc ? out[c] + (float)part[0] : (float)part[0];
        __syncthreads();
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Data movement, dropout and MSE (the optional entries) */

__global__ void k_fill(size_t n, float v, float *y) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) y[i] = v;
}

__global__ void k_add_channels(size_t total, int ch, size_t inner, const float *b, float *y) {
    for (size_t t = blockIdx.x * (size_t)blockDim.x + threadIdx.x; t < total; t += (size_t)gridDim.x * blockDim.x)
        y[t] += b[(t / inner) % (size_t)ch];
}

__global__ void k_copy_rows(size_t rows, size_t len, const float *src, size_t ss, float *dst, size_t ds, int acc) {
    const size_t total = rows * len;
    for (size_t t = blockIdx.x * (size_t)blockDim.x + threadIdx.x; t < total; t += (size_t)gridDim.x * blockDim.x) {
        size_t r = t / len, i = t % len;
        float v = src[r * ss + i];
        if (acc)
            dst[r * ds + i] += v;
        else
            dst[r * ds + i] = v;
    }
}

__global__ void k_scale_groups(size_t groups, size_t inner, const float *mask, const float *x, float *y, int mode) {
    const size_t total = groups * inner;
    for (size_t t = blockIdx.x * (size_t)blockDim.x + threadIdx.x; t < total; t += (size_t)gridDim.x * blockDim.x) {
        float m = mask[t / inner];
        if (mode == 0)
            y[t] = m * x[t];
        else if (mode == 1)
            y[t] = m == 0.0f ? 0.0f : m * x[t];
        else if (m != 0.0f)
            y[t] += m * x[t];
    }
}

/* Sum of (a - b)^2 in double: kReduceBlocks partial sums (grid-stride, fixed-order tree per
 * block), then one block adds the partials in order and writes the mean. */
const unsigned kReduceBlocks = 256;

__global__ void k_sqdiff_partial(size_t n, const float *a, const float *b, double *part) {
    __shared__ double sh[kThreads];
    double s = 0.0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        double d = (double)a[i] - (double)b[i];
        s += d * d;
    }
    sh[threadIdx.x] = s;
    __syncthreads();
    for (unsigned w = blockDim.x / 2; w > 0; w >>= 1) {
        if (threadIdx.x < w) sh[threadIdx.x] += sh[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0) part[blockIdx.x] = sh[0];
}

__global__ void k_mean_of_partials(unsigned nparts, const double *part, size_t n, float *out) {
    __shared__ double sh[kThreads];
    double s = 0.0;
    for (unsigned i = threadIdx.x; i < nparts; i += blockDim.x) s += part[i];
    sh[threadIdx.x] = s;
    __syncthreads();
    for (unsigned w = blockDim.x / 2; w > 0; w >>= 1) {
        if (threadIdx.x < w) sh[threadIdx.x] += sh[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[0] = (float)(sh[0] / (double)n);
}

__global__ void k_sumsq_partial(size_t n, const float *x, double *part) {
    __shared__ double sh[kThreads];
    double s = 0.0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        s += (double)x[i] * (double)x[i];
    sh[threadIdx.x] = s;
    __syncthreads();
    for (unsigned w = blockDim.x / 2; w > 0; w >>= 1) {
        if (threadIdx.x < w) sh[threadIdx.x] += sh[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0) part[blockIdx.x] = sh[0];
}

/* optim.c's adam_run, element by element */
__global__ void k_adam(size_t n, float *p, const float *g, float *m, float *v, float b1, float b2, float step_size,
                       float sqrt_bc2, float eps, float l2, float decay_mul) {
    const float omb1 = 1.0f - b1, omb2 = 1.0f - b2;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float pv = p[i];
        float pi = pv * decay_mul;
        float gi = g[i] + l2 * pv;
        float mi = b1 * m[i] + omb1 * gi;
        float vi = b2 * v[i] + omb2 * (gi * gi);
        m[i] = mi;
        v[i] = vi;
        p[i] = pi - step_size * (mi / (sqrtf(vi) / sqrt_bc2 + eps));
    }
}

__global__ void k_mse_bwd(size_t n, const float *a, const float *b, const float *dy, float *da, float *db, int fresh) {
    const float k = 2.0f * dy[0] / (float)n;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float d = k * (a[i] - b[i]);
        if (fresh) {
            da[i] = d;
        } else {
            if (da) da[i] += d;
            if (db) db[i] -= d;
        }
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Convolution helpers. A chunk of g images starting at image n0; P = oh*ow, K = c*kh*kw.
 * col[k][gi*P + p] = x[n0+gi][ci][oy*sh - ph + ki][ox*sw - pw + kj] (0 outside), k = (ci,ki,kj). */
template <typename I>
__global__ void k_im2col(ew_conv_desc d, int g, const float *x, float *col) {
    const I P = (I)d.oh * d.ow, GP = (I)g * P, K = (I)d.c * d.kh * d.kw;
    const I total = K * GP;
    for (I t = blockIdx.x * (I)blockDim.x + threadIdx.x; t < total; t += (I)gridDim.x * blockDim.x) {
        I k = t / GP, q = t % GP;
        I gi = q / P, p = q % P;
        int kj = (int)(k % d.kw), ki = (int)((k / d.kw) % d.kh), ci = (int)(k / ((I)d.kw * d.kh));
        int oy = (int)(p / d.ow), ox = (int)(p % d.ow);
        int iy = oy * d.sh - d.ph + ki, ix = ox * d.sw - d.pw + kj;
        float v = 0.0f;
        if (iy >= 0 && iy < d.h && ix >= 0 && ix < d.w)
            v = x[((gi * d.c + ci) * (I)d.h + iy) * d.w + ix];
        col[t] = v;
    }
}

/* dx[n0+gi][ci][iy][ix] (+)= sum of the col entries that im2col copied from there. */
template <typename I>
__global__ void k_col2im(ew_conv_desc d, int g, const float *col, float *dx, int acc) {
    const I P = (I)d.oh * d.ow, GP = (I)g * P;
    const I total = (I)g * d.c * d.h * d.w;
    for (I t = blockIdx.x * (I)blockDim.x + threadIdx.x; t < total; t += (I)gridDim.x * blockDim.x) {
        int ix = (int)(t % d.w), iy = (int)((t / d.w) % d.h);
        I gc = t / ((I)d.w * d.h);
        int ci = (int)(gc % d.c);
        I gi = gc / d.c;
        float s = 0.0f;
        for (int ki = 0; ki < d.kh; ki++) {
            int ny = iy + d.ph - ki;
            if (ny < 0 || ny % d.sh) continue;
            int oy = ny / d.sh;
            if (oy >= d.oh) continue;
            for (int kj = 0; kj < d.kw; kj++) {
                int nx = ix + d.pw - kj;
                if (nx < 0 || nx % d.sw) continue;
                int ox = nx / d.sw;
                if (ox >= d.ow) continue;
                I k = ((I)ci * d.kh + ki) * d.kw + kj;
                s += col[k * GP + gi * P + (I)oy * d.ow + ox];
            }
        }
        dx[t] = acc ? dx[t] + s : s;
    }
}

/* wide[c][gi*P + p] = src[(gi*C + c)*P + p]: g images [C, P] side by side. */
template <typename I>
__global__ void k_to_wide(int g, int C, I P, const float *src, float *wide) {
    const I GP = (I)g * P, total = (I)C * GP;
    for (I t = blockIdx.x * (I)blockDim.x + threadIdx.x; t < total; t += (I)gridDim.x * blockDim.x) {
        I c = t / GP, q = t % GP, gi = q / P, p = q % P;
        wide[t] = src[(gi * C + c) * P + p];
    }
}

/* dst[(gi*C + c)*P + p] (+)= wide[c][gi*P + p] (+ bias[c]). */
template <typename I>
__global__ void k_from_wide(int g, int C, I P, const float *wide, const float *bias, float *dst, int acc) {
    const I GP = (I)g * P, total = (I)C * GP;
    for (I t = blockIdx.x * (I)blockDim.x + threadIdx.x; t < total; t += (I)gridDim.x * blockDim.x) {
        I p = t % P, gc = t / P, c = gc % C, gi = gc / C;
        float v = wide[c * GP + gi * P + p];
        if (bias) v += bias[c];
        dst[t] = acc ? dst[t] + v : v;
    }
}

/* c[i * ldc + j] = beta c (0 when beta == 0, like BLAS) for i < m, j < n */
__global__ void k_scale_rows(int m, int n, float beta, float *c, int ldc) {
    const size_t total = (size_t)m * n;
    for (size_t t = blockIdx.x * (size_t)blockDim.x + threadIdx.x; t < total; t += (size_t)gridDim.x * blockDim.x) {
        size_t i = t / (size_t)n, j = t % (size_t)n;
        float *p = c + i * (size_t)ldc + j;
        *p = beta == 0.0f ? 0.0f : beta * *p;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Table entries */

/* Row-major C = alpha op(A) op(B) + beta C on the backend's stream. */
void gemm_rm(cuda_backend *cb, int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
             const float *b, int ldb, float beta, float *c, int ldc) {
    if (cb->failed || m <= 0 || n <= 0) return;
    if (k <= 0) { /* C = beta C, as BLAS does with k = 0 (cuBLAS would check the unused lda/ldb) */
        k_scale_rows<<<grid((size_t)m * n), kThreads, 0, cb->stream>>>(m, n, beta, c, ldc);
        LAUNCHED(cb, "k_scale_rows");
        return;
    }
    if (CKB(cb, cublasSgemm(cb->blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k,
                                   &alpha, b, ldb, a, lda, &beta, c, ldc))) {
        return;
    }
    LAUNCHED(cb, "cublasSgemm");
}

void cu_gemm(const ew_backend *be, int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
             const float *b, int ldb, float beta, float *c, int ldc) {
    gemm_rm(cbe(be), ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

size_t cu_conv_workspace(const ew_backend *be, const ew_conv_desc *d) {
    ew_cuda_conv_plan p = ew_cuda_conv_plan_for(d, cbe(be)->opt.conv_chunk_floats);
    return p.col_floats + p.wide_floats;
}

void cu_conv_fwd(const ew_backend *be, const ew_conv_desc *d, const float *x, const float *w, const float *bias,
                 float *y, int accumulate, float *ws) {
    cuda_backend *cb = cbe(be);
    if (cb->failed || d->n <= 0) return;
    ew_cuda_conv_plan pl = ew_cuda_conv_plan_for(d, cb->opt.conv_chunk_floats);
    float *col = ws, *wide = ws + pl.col_floats;
    const size_t xin = (size_t)d->c * d->h * d->w, yout = (size_t)d->oc * pl.p;
    for (int n0 = 0; n0 < d->n && !cb->failed; n0 += pl.images) {
        int g = d->n - n0 < pl.images ? d->n - n0 : pl.images;
        size_t gp = (size_t)g * pl.p;
        if (idx32(pl.k * gp, (size_t)d->n * xin))
            k_im2col<unsigned><<<grid(pl.k * gp), kThreads, 0, cb->stream>>>(*d, g, x + (size_t)n0 * xin, col);
        else
            k_im2col<size_t><<<grid(pl.k * gp), kThreads, 0, cb->stream>>>(*d, g, x + (size_t)n0 * xin, col);
        if (LAUNCHED(cb, "k_im2col")) return;
        gemm_rm(cb, 0, 0, d->oc, (int)gp, (int)pl.k, 1.0f, w, (int)pl.k, col, (int)gp, 0.0f, wide, (int)gp);
        if (cb->failed) return;
        if (idx32((size_t)d->oc * gp, (size_t)d->oc * gp))
            k_from_wide<unsigned><<<grid((size_t)d->oc * gp), kThreads, 0, cb->stream>>>(
                g, d->oc, (unsigned)pl.p, wide, bias, y + (size_t)n0 * yout, accumulate);
        else
            k_from_wide<size_t><<<grid((size_t)d->oc * gp), kThreads, 0, cb->stream>>>(g, d->oc, pl.p, wide, bias,
                                                                                   y + (size_t)n0 * yout, accumulate);
        if (LAUNCHED(cb, "k_from_wide")) return;
    }
}

void cu_conv_bwd_data(const ew_backend *be, const ew_conv_desc *d, const float *dy, const float *w, float *dx,
                      int accumulate, float *ws) {
    cuda_backend *cb = cbe(be);
    if (cb->failed || d->n <= 0) return;
    ew_cuda_conv_plan pl = ew_cuda_conv_plan_for(d, cb->opt.conv_chunk_floats);
    float *col = ws, *wide = ws + pl.col_floats;
    const size_t xin = (size_t)d->c * d->h * d->w, yout = (size_t)d->oc * pl.p;
    for (int n0 = 0; n0 < d->n && !cb->failed; n0 += pl.images) {
        int g = d->n - n0 < pl.images ? d->n - n0 : pl.images;
        size_t gp = (size_t)g * pl.p;
        const float *dyw = dy + (size_t)n0 * yout;
        if (g > 1) { /* one image is already [oc, P] */
            if (idx32((size_t)d->oc * gp, (size_t)d->oc * gp))
                k_to_wide<unsigned><<<grid((size_t)d->oc * gp), kThreads, 0, cb->stream>>>(g, d->oc, (unsigned)pl.p,
                                                                                          dyw, wide);
            else
                k_to_wide<size_t><<<grid((size_t)d->oc * gp), kThreads, 0, cb->stream>>>(g, d->oc, pl.p, dyw, wide);
            if (LAUNCHED(cb, "k_to_wide")) return;
            dyw = wide;
        }
        gemm_rm(cb, 1, 0, (int)pl.k, (int)gp, d->oc, 1.0f, w, (int)pl.k, dyw, (int)gp, 0.0f, col, (int)gp);
        if (cb->failed) return;
        if (idx32((size_t)g * xin, pl.k * gp))
            k_col2im<unsigned><<<grid((size_t)g * xin), kThreads, 0, cb->stream>>>(*d, g, col, dx + (size_t)n0 * xin,
                                                                                accumulate);
        else
            k_col2im<size_t><<<grid((size_t)g * xin), kThreads, 0, cb->stream>>>(*d, g, col, dx + (size_t)n0 * xin,
                                                                              accumulate);
        if (LAUNCHED(cb, "k_col2im")) return;
    }
}

void cu_conv_bwd_weight(const ew_backend *be, const ew_conv_desc *d, const float *x, const float *dy, float *dw,
                        float *ws) {
    cuda_backend *cb = cbe(be);
    if (cb->failed || d->n <= 0) return;
    ew_cuda_conv_plan pl = ew_cuda_conv_plan_for(d, cb->opt.conv_chunk_floats);
    float *col = ws, *wide = ws + pl.col_floats;
    const size_t xin = (size_t)d->c * d->h * d->w, yout = (size_t)d->oc * pl.p;
    for (int n0 = 0; n0 < d->n && !cb->failed; n0 += pl.images) {
        int g = d->n - n0 < pl.images ? d->n - n0 : pl.images;
        size_t gp = (size_t)g * pl.p;
        if (idx32(pl.k * gp, (size_t)d->n * xin))
            k_im2col<unsigned><<<grid(pl.k * gp), kThreads, 0, cb->stream>>>(*d, g, x + (size_t)n0 * xin, col);
        else
            k_im2col<size_t><<<grid(pl.k * gp), kThreads, 0, cb->stream>>>(*d, g, x + (size_t)n0 * xin, col);
        if (LAUNCHED(cb, "k_im2col")) return;
        const float *dyw = dy + (size_t)n0 * yout;
        if (g > 1) {
            if (idx32((size_t)d->oc * gp, (size_t)d->oc * gp))
                k_to_wide<unsigned><<<grid((size_t)d->oc * gp), kThreads, 0, cb->stream>>>(g, d->oc, (unsigned)pl.p,
                                                                                          dyw, wide);
            else
                k_to_wide<size_t><<<grid((size_t)d->oc * gp), kThreads, 0, cb->stream>>>(g, d->oc, pl.p, dyw, wide);
            if (LAUNCHED(cb, "k_to_wide")) return;
            dyw = wide;
        }
        /* dw[oc, K] += dy_wide[oc, gP] col[K, gP]^T */
        gemm_rm(cb, 0, 1, d->oc, (int)pl.k, (int)gp, 1.0f, dyw, (int)gp, col, (int)gp, 1.0f, dw, (int)pl.k);
    }
}

void cu_unary(const ew_backend *be, ew_unary_op op, float alpha, size_t n, const float *x, float *y) {
    cuda_backend *cb = cbe(be);
    if (cb->failed || n == 0) return;
    k_unary<<<grid(n), kThreads, 0, cb->stream>>>((int)op, alpha, n, x, y);
    LAUNCHED(cb, "k_unary");
}

void unary_bwd_common(const ew_backend *be, ew_unary_op op, float alpha, size_t n, const float *x, const float *y,
                      const float *dy, float *dx, int acc) {
    cuda_backend *cb = cbe(be);
    if (cb->failed || n == 0) return;
    k_unary_bwd<<<grid(n), kThreads, 0, cb->stream>>>((int)op, alpha, n, x, y, dy, dx, acc);
    LAUNCHED(cb, "k_unary_bwd");
}

void cu_unary_bwd(const ew_backend *be, ew_unary_op op, float alpha, size_t n, const float *x, const float *y,
                  const float *dy, float *dx) {
    unary_bwd_common(be, op, alpha, n, x, y, dy, dx, 1);
}

void cu_unary_bwd_set(const ew_backend *be, ew_unary_op op, float alpha, size_t n, const float *x, const float *y,
                      const float *dy, float *dx) {
    unary_bwd_common(be, op, alpha, n, x, y, dy, dx, 0);
}

void cu_binary(const ew_backend *be, ew_binary_op op, size_t n, const float *a, const float *b, float *y) {
    cuda_backend *cb = cbe(be);
    if (cb->failed || n == 0) return;
    k_binary<<<grid(n), kThreads, 0, cb->stream>>>((int)op, n, a, b, y);
    LAUNCHED(cb, "k_binary");
}

void cu_binary_bwd(const ew_backend *be, ew_binary_op op, size_t n, const float *a, const float *b, const float *dy,
                   float *da, float *db) {
    cuda_backend *cb = cbe(be);
    if (cb->failed || n == 0 || (!da && !db)) return;
    k_binary_bwd<<<grid(n), kThreads, 0, cb->stream>>>((int)op, n, a, b, dy, da, db);
    LAUNCHED(cb, "k_binary_bwd");
}

void cu_axpy(const ew_backend *be, size_t n, float alpha, const float *x, float *y) {
    cuda_backend *cb = cbe(be);
    if (cb->failed || n == 0) return;
    k_axpy<<<grid(n), kThreads, 0, cb->stream>>>(n, alpha, x, y);
    LAUNCHED(cb, "k_axpy");
}

void cu_sum_channels(const ew_backend *be, int rows, int ch, int inner, const float *x, float *out, int accumulate) {
    cuda_backend *cb = cbe(be);
    if (cb->failed || ch <= 0) return;
    if (rows <= 0 || inner <= 0) { /* empty sums: 0 (+ out) */
        if (!accumulate) CK(cb, cudaMemsetAsync(out, 0, sizeof(float) * (size_t)ch, cb->stream));
        LAUNCHED(cb, "cudaMemsetAsync");
        return;
    }
    if (inner == 1) {
        k_sum_rows<<<grid((size_t)ch), kThreads, 0, cb->stream>>>(rows, ch, x, out, accumulate);
        LAUNCHED(cb, "k_sum_rows");
        return;
    }
    unsigned blocks = (unsigned)(ch < (int)kMaxBlocks ? ch : (int)kMaxBlocks);
    k_sum_channels<<<blocks, kThreads, 0, cb->stream>>>(rows, ch, inner, x, out, accumulate);
    LAUNCHED(cb, "k_sum_channels");
}

void cu_fill(const ew_backend *be, size_t n, float value, float *y) {
    cuda_backend *cb = cbe(be);
    if (cb->failed || n == 0) return;
    k_fill<<<grid(n), kThreads, 0, cb->stream>>>(n, value, y);
    LAUNCHED(cb, "k_fill");
}

void cu_add_channels(const ew_backend *be, int rows, int ch, size_t inner, const float *b, float *y) {
    cuda_backend *cb = cbe(be);
    if (cb->failed || rows <= 0 || ch <= 0 || inner == 0) return;
    size_t total = (size_t)rows * (size_t)ch * inner;
    k_add_channels<<<grid(total), kThreads, 0, cb->stream>>>(total, ch, inner, b, y);
    LAUNCHED(cb, "k_add_channels");
}

void cu_copy_rows(const ew_backend *be, size_t rows, size_t len, const float *src, size_t src_stride, float *dst,
                  size_t dst_stride, int accumulate) {
    cuda_backend *cb = cbe(be);
    if (cb->failed || rows == 0 || len == 0) return;
    /* a kernel rather than cudaMemcpy2DAsync: the same node type whether or not it is captured */
    k_copy_rows<<<grid(rows * len), kThreads, 0, cb->stream>>>(rows, len, src, src_stride, dst, dst_stride, accumulate);
    LAUNCHED(cb, "k_copy_rows");
}

void cu_scale_groups(const ew_backend *be, size_t groups, size_t inner, const float *mask, const float *x, float *y,
                     int mode) {
    cuda_backend *cb = cbe(be);
    if (cb->failed || groups == 0 || inner == 0) return;
    k_scale_groups<<<grid(groups * inner), kThreads, 0, cb->stream>>>(groups, inner, mask, x, y, mode);
    LAUNCHED(cb, "k_scale_groups");
}

void cu_mse(const ew_backend *be, size_t n, const float *a, const float *b, float *out) {
    cuda_backend *cb = cbe(be);
    if (cb->failed || n == 0) return;
    unsigned blocks = ew_cuda_grid(n, kThreads, kReduceBlocks);
    k_sqdiff_partial<<<blocks, kThreads, 0, cb->stream>>>(n, a, b, cb->partials);
    if (LAUNCHED(cb, "k_sqdiff_partial")) return;
    k_mean_of_partials<<<1, kThreads, 0, cb->stream>>>(blocks, cb->partials, n, out);
    LAUNCHED(cb, "k_mean_of_partials");
}

void cu_mse_bwd(const ew_backend *be, size_t n, const float *a, const float *b, const float *dy, float *da, float *db,
                int fresh) {
    cuda_backend *cb = cbe(be);
    if (cb->failed || n == 0 || (!da && !db)) return;
    k_mse_bwd<<<grid(n), kThreads, 0, cb->stream>>>(n, a, b, dy, da, db, fresh);
    LAUNCHED(cb, "k_mse_bwd");
}

void cu_adam(const ew_backend *be, size_t n, float *p, const float *g, float *m, float *v, float b1, float b2,
             float step_size, float sqrt_bc2, float eps, float l2, float decay_mul) {
    cuda_backend *cb = cbe(be);
    if (cb->failed || n == 0) return;
    k_adam<<<grid(n), kThreads, 0, cb->stream>>>(n, p, g, m, v, b1, b2, step_size, sqrt_bc2, eps, l2, decay_mul);
    LAUNCHED(cb, "k_adam");
}

/* Waits for the result (not capturable): partial sums per block, added on the host in order. */
double cu_sumsq(const ew_backend *be, size_t n, const float *x) {
    cuda_backend *cb = cbe(be);
    if (cb->failed || n == 0 || cb->capturing) return 0.0;
    unsigned blocks = ew_cuda_grid(n, kThreads, kReduceBlocks);
    k_sumsq_partial<<<blocks, kThreads, 0, cb->stream>>>(n, x, cb->partials);
    if (LAUNCHED(cb, "k_sumsq_partial")) return 0.0;
    double host[kReduceBlocks];
    if (CK(cb, cudaMemcpyAsync(host, cb->partials, sizeof(double) * blocks, cudaMemcpyDeviceToHost, cb->stream)) ||
        CK(cb, cudaStreamSynchronize(cb->stream)))
        return 0.0;
    double s = 0.0;
    for (unsigned i = 0; i < blocks; i++) s += host[i];
    return s;
}

void *cu_mem_alloc(const ew_backend *be, size_t bytes) {
    cuda_backend *cb = cbe(be);
    if (cb->failed) return NULL;
    void *p = NULL;
    if (CK(cb, cudaMallocManaged(&p, bytes ? bytes : 1, cudaMemAttachGlobal))) return NULL;
    return p;
}

void cu_mem_free(const ew_backend *be, void *p) {
    cuda_backend *cb = cbe(be);
    if (!p) return;
    /* the memory may still be in use by queued work: wait first (errors stay recorded) */
    if (!cb->failed) CK(cb, cudaStreamSynchronize(cb->stream));
    cudaError_t e = cudaFree(p);
    if (!cb->failed) ck(cb, e, "cudaFree", __LINE__);
}

void cu_upload(const ew_backend *be, void *dst, const void *src, size_t bytes) {
    cuda_backend *cb = cbe(be);
    if (cb->failed || bytes == 0) return;
    if (CK(cb, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, cb->stream))) return;
    /* src is the caller's host memory, which may change once we return: always wait */
    if (!cb->capturing) CK(cb, cudaStreamSynchronize(cb->stream));
}

int cu_owns(const ew_backend *be, const void *p) {
    (void)be;
    cudaPointerAttributes a;
    if (!p || cudaPointerGetAttributes(&a, p) != cudaSuccess) {
        cudaGetLastError(); /* plain host memory on older runtimes: not an error worth keeping */
        return 0;
    }
    return a.type == cudaMemoryTypeManaged || a.type == cudaMemoryTypeDevice;
}

int cu_sync(const ew_backend *be) {
    cuda_backend *cb = cbe(be);
    if (cb->failed) return -1;
    if (cb->capturing) return 0; /* nothing runs while capturing */
    return CK(cb, cudaStreamSynchronize(cb->stream));
}

const char *cu_error(const ew_backend *be) { return cbe(be)->failed ? cbe(be)->err : NULL; }

void cu_destroy(ew_backend *be) {
    cuda_backend *cb = cbe(be);
    if (cb->stream) cudaStreamSynchronize(cb->stream);
    if (cb->blas) cublasDestroy(cb->blas);
    if (cb->blas_ws) cudaFree(cb->blas_ws);
    if (cb->partials) cudaFree(cb->partials);
    if (cb->stream) cudaStreamDestroy(cb->stream);
    free(cb);
}

void put(char *err, size_t errsz, const char *fmt, ...) {
    if (!err || !errsz) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errsz, fmt, ap);
    va_end(ap);
}

} /* namespace */

struct ew_cuda_graph {
    cudaGraph_t graph;
    cudaGraphExec_t exec;
};

extern "C" {

int ew_cuda_built(void) { return 1; }

int ew_cuda_probe(int device, char *why, size_t whysz) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        put(why, whysz, "no CUDA device (cudaGetDeviceCount: %s)", cudaGetErrorString(e));
        cudaGetLastError(); /* clear */
        return -1;
    }
    if (n < 1) {
        put(why, whysz, "no CUDA device (none found)");
        return -1;
    }
    if (device < 0 || device >= n) {
        put(why, whysz, "no CUDA device %d (%d found)", device, n);
        return -1;
    }
    cudaDeviceProp prop;
    e = cudaGetDeviceProperties(&prop, device);
    if (e != cudaSuccess) {
        put(why, whysz, "no CUDA device (cudaGetDeviceProperties: %s)", cudaGetErrorString(e));
        return -1;
    }
    if (!prop.managedMemory) {
        put(why, whysz, "CUDA device %d (%s) has no managed memory", device, prop.name);
        return -1;
    }
    return 0;
}

ew_backend *ew_backend_cuda_create(const ew_cuda_options *o, char *err, size_t errsz) {
    ew_cuda_options opt = o ? *o : ew_cuda_defaults();
    const char *se = getenv("EGOWORLD_CUDA_SYNC"); /* experiments: 0 turns sync_each off */
    if (se && (se[0] == '0' || se[0] == '1') && !se[1]) opt.sync_each = se[0] == '1';
    if (opt.conv_chunk_floats < 1) opt.conv_chunk_floats = ew_cuda_defaults().conv_chunk_floats;
    if (ew_cuda_probe(opt.device, err, errsz)) return NULL;
    cuda_backend *cb = (cuda_backend *)calloc(1, sizeof *cb);
    if (!cb) {
        put(err, errsz, "cuda backend: out of memory");
        return NULL;
    }
    cb->opt = opt;
    cb->dev = opt.device;
    ew_backend *be = &cb->base;
    be->name = "cuda";
    be->threads = 1;
    be->gemm = cu_gemm;
    be->conv_workspace = cu_conv_workspace;
    be->conv_fwd = cu_conv_fwd;
    be->conv_bwd_data = cu_conv_bwd_data;
    be->conv_bwd_weight = cu_conv_bwd_weight;
    be->unary = cu_unary;
    be->unary_bwd = cu_unary_bwd;
    be->unary_bwd_set = cu_unary_bwd_set;
    be->binary = cu_binary;
    be->binary_bwd = cu_binary_bwd;
    be->axpy = cu_axpy;
    be->sum_channels = cu_sum_channels;
    be->fill = cu_fill;
    be->add_channels = cu_add_channels;
    be->copy_rows = cu_copy_rows;
    be->scale_groups = cu_scale_groups;
    be->mse = cu_mse;
    be->mse_bwd = cu_mse_bwd;
    be->adam = cu_adam;
    be->sumsq = cu_sumsq;
    be->mem_alloc = cu_mem_alloc;
    be->mem_free = cu_mem_free;
    be->sync = cu_sync;
    be->error = cu_error;
    be->destroy = cu_destroy;
    be->upload = cu_upload;
    be->owns = cu_owns;
    cudaDeviceProp prop;
    int bad = CK(cb, cudaSetDevice(opt.device)) || CK(cb, cudaGetDeviceProperties(&prop, opt.device)) ||
              CK(cb, cudaStreamCreateWithFlags(&cb->stream, cudaStreamNonBlocking)) ||
              CKB(cb, cublasCreate(&cb->blas)) || CKB(cb, cublasSetStream(cb->blas, cb->stream)) ||
              CKB(cb, cublasSetMathMode(cb->blas, opt.tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH)) ||
              CK(cb, cudaMalloc(&cb->blas_ws, (size_t)32 << 20)) ||
              CKB(cb, cublasSetWorkspace(cb->blas, cb->blas_ws, (size_t)32 << 20)) ||
              CK(cb, cudaMalloc((void **)&cb->partials, sizeof(double) * kReduceBlocks));
    if (bad) {
        put(err, errsz, "%s", cb->err);
        cu_destroy(be);
        return NULL;
    }
    snprintf(cb->devname, sizeof cb->devname, "%s", prop.name);
    return be;
}

const char *ew_cuda_device_name(const ew_backend *be) {
    return ew_backend_is_cuda(be) ? cbe(be)->devname : "";
}

int ew_backend_is_cuda(const ew_backend *be) { return be && be->destroy == cu_destroy; }

int ew_cuda_capture_begin(ew_backend *be) {
    if (!ew_backend_is_cuda(be)) return -1;
    cuda_backend *cb = cbe(be);
    if (cb->failed || cb->capturing) return -1;
    if (CK(cb, cudaStreamSynchronize(cb->stream))) return -1;
    if (CK(cb, cudaStreamBeginCapture(cb->stream, cudaStreamCaptureModeRelaxed))) return -1;
    cb->capturing = 1;
    return 0;
}

ew_cuda_graph *ew_cuda_capture_end(ew_backend *be) {
    if (!ew_backend_is_cuda(be)) return NULL;
    cuda_backend *cb = cbe(be);
    if (!cb->capturing) return NULL;
    cb->capturing = 0;
    cudaGraph_t graph = NULL;
    cudaError_t e = cudaStreamEndCapture(cb->stream, &graph);
    if (ck(cb, e, "cudaStreamEndCapture", __LINE__) || cb->failed) {
        if (graph) cudaGraphDestroy(graph);
        return NULL;
    }
    ew_cuda_graph *g = (ew_cuda_graph *)calloc(1, sizeof *g);
    if (!g) {
        cudaGraphDestroy(graph);
        set_err(cb, "cuda: graph: out of memory");
        return NULL;
    }
    g->graph = graph;
    if (CK(cb, cudaGraphInstantiate(&g->exec, graph, 0))) {
        cudaGraphDestroy(graph);
        free(g);
        return NULL;
    }
    return g;
}

int ew_cuda_graph_launch(ew_backend *be, ew_cuda_graph *g) {
    if (!ew_backend_is_cuda(be) || !g) return -1;
    cuda_backend *cb = cbe(be);
    if (cb->failed || cb->capturing) return -1;
    if (CK(cb, cudaGraphLaunch(g->exec, cb->stream))) return -1;
    return LAUNCHED(cb, "cudaGraphLaunch");
}

void ew_cuda_graph_free(ew_cuda_graph *g) {
    if (!g) return;
    if (g->exec) cudaGraphExecDestroy(g->exec);
    if (g->graph) cudaGraphDestroy(g->graph);
    free(g);
}

} /* extern "C" */
