/* backend_cuda.h - the CUDA/cuBLAS backend behind the table of backend.h.
 *
 * Contract:
 *  - Built when EGOWORLD_CUDA is on (nvcc found at configure time); otherwise
 *    ew_backend_cuda_create fails with "not built with CUDA". Without a usable device it fails
 *    with "no CUDA device (<reason>)".
 *  - Memory: every pointer handed to a table entry must come from be->mem_alloc, which returns
 *    CUDA managed memory (cudaMallocManaged): addressable by the kernels and by the host.
 *    Graphs take their data arena and kernel scratch from it (autodiff.h: one device arena per
 *    graph, reset every step, no allocation after warm-up); models move their parameters in
 *    (ew_fm_move_to_backend). Host code - the ops of ops.c that have no table entry, the
 *    optimizers, losses read back - reads and writes the same memory directly (the pages
 *    migrate), which is correct only while no kernel runs.
 *  - Ordering: all work goes to the backend's own stream (cuBLAS is bound to it). With
 *    sync_each = 1 (default) every entry waits for its work before it returns, so host code
 *    may touch memory between calls. With sync_each = 0 entries only enqueue; the caller must
 *    ew_backend_sync before host access (ew_backward and ew_graph_reset do), which is only
 *    sound where no host code reads tensor data in the middle of a step.
 *  - Entries: every table entry of backend.h, including the optional device ones (fill,
 *    add_channels, copy_rows, scale_groups, mse, mse_bwd, adam, sumsq, upload, owns), so
 *    biases, concat/slice, dropout, MSE, gradient zeroing, Adam (ew_optim_use_backend) and the
 *    gradient-norm clip run on the device; ops without an entry run their host loop.
 *  - Numerics: fp32. GEMMs through cuBLAS, exact fp32 unless tf32 = 1 (TF32 tensor cores for
 *    GEMMs and convolutions, ~1e-3 relative error; weights, gradients and optimizer stay
 *    fp32). Convolutions: im2col of a chunk of images laid side by side + one cuBLAS GEMM per
 *    chunk; col2im as a gather (no atomics). Reductions in a fixed order: same inputs, same
 *    outputs from run to run. Results differ from the CPU backend by rounding only
 *    (tests/test_backend_parity.c holds the per-op tolerances).
 *  - Errors: the first failing CUDA or cuBLAS call (checked after every call and launch) is
 *    kept as one line "cuda: <call>: <reason>" (be->error / ew_backend_error); entries then do
 *    nothing, sync returns -1.
 *  - CUDA graphs: ew_cuda_capture_begin/_end record the table calls made in between (no
 *    per-entry sync while capturing) into a graph that ew_cuda_graph_launch replays on the
 *    same pointers. Only for sequences of table calls with no host access to tensor data in
 *    between and no allocation (warm arena); the world-model step does not qualify yet
 *    because ops.c computes some ops on the host.
 *  - One backend is used from one host thread at a time.
 */
#ifndef EW_BACKEND_CUDA_H
#define EW_BACKEND_CUDA_H

#include <stddef.h>

#include "models/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int device;               /* CUDA device ordinal (0) */
    int tf32;                 /* 1: TF32 tensor cores for GEMM/conv (0) */
    int sync_each;            /* 1: each entry returns after its work finished (1); the
                               * environment variable EGOWORLD_CUDA_SYNC=0 or 1 overrides it */
    size_t conv_chunk_floats; /* im2col workspace budget per conv call, floats (48M) */
} ew_cuda_options;

ew_cuda_options ew_cuda_defaults(void);
/* 1 when this build contains the CUDA backend. */
int ew_cuda_built(void);
/* 0 when device `device` can be used, else -1 with the reason in why (one line). */
int ew_cuda_probe(int device, char *why, size_t whysz);
/* The backend (o NULL: defaults), or NULL with the reason in err. */
ew_backend *ew_backend_cuda_create(const ew_cuda_options *o, char *err, size_t errsz);
/* "NVIDIA H100 80GB HBM3" for a CUDA backend, "" otherwise. */
const char *ew_cuda_device_name(const ew_backend *be);
/* 1 if be is a CUDA backend. */
int ew_backend_is_cuda(const ew_backend *be);

typedef struct ew_cuda_graph ew_cuda_graph;
/* 0, or -1 (not a CUDA backend, already capturing, device error). */
int ew_cuda_capture_begin(ew_backend *be);
/* The captured graph, or NULL (error recorded in the backend). */
ew_cuda_graph *ew_cuda_capture_end(ew_backend *be);
/* Replays g on be's stream (and waits when sync_each): 0 or -1. */
int ew_cuda_graph_launch(ew_backend *be, ew_cuda_graph *g);
void ew_cuda_graph_free(ew_cuda_graph *g);

/* ---- host-side geometry (no device needed; the same on every build) ---- */
/* How a convolution is cut into chunks of images: each chunk is im2col'd into a
 * [c*kh*kw, images*oh*ow] matrix (col) next to an [oc, images*oh*ow] matrix (wide). */
typedef struct {
    int images;          /* images per chunk, 1..n */
    int chunks;          /* ceil(n / images) */
    size_t k, p;         /* c*kh*kw and oh*ow */
    size_t col_floats;   /* k * images * p */
    size_t wide_floats;  /* oc * images * p */
} ew_cuda_conv_plan;

/* The plan under a budget of floats per call (at least one image per chunk). */
ew_cuda_conv_plan ew_cuda_conv_plan_for(const ew_conv_desc *d, size_t budget_floats);
/* Blocks for a grid-stride launch over n items with `threads` per block: ceil(n / threads)
 * clamped to [1, max_blocks]. */
unsigned ew_cuda_grid(size_t n, unsigned threads, unsigned max_blocks);

#ifdef __cplusplus
}
#endif

#endif
