/* autodiff.h - the graph: per-step arena, tape of backward closures, and reverse mode.
 *
 * Contract: an ew_graph owns an arena (models/tensor.h), a grow-only scratch buffer for
 * kernels, and a tape. While grad mode is on, every op whose inputs require a gradient
 * pushes a record {backward function, small context in the arena}; ew_backward(loss) seeds
 * d loss = 1 and runs the records newest first. Each backward adds into its inputs'
 * gradients ("+="); intermediate gradients live in the arena (zeroed when first touched),
 * parameter gradients are the layer's persistent buffers and accumulate across backward
 * calls until the caller zeroes them. In no-grad mode ops only compute forward values.
 * Errors: an op that fails (shape mismatch, out of memory) returns NULL and records a message
 * in the graph; ops given NULL return NULL, so a chain can be checked once at the end
 * (ew_graph_error). ew_graph_reset starts the next step (arena, tape and error cleared).
 * One graph is used by one thread at a time.
 * Device backends (ew_backend_is_device, e.g. CUDA): tensor data and gradients live in a
 * second arena whose blocks come from the backend's mem_alloc (memory both the kernels and,
 * after a sync, the host can address), scratch likewise; headers, tape records and
 * ew_graph_arena() stay in host memory. ew_tensor_wrap copies (host memory is not
 * device-addressable); ew_param_tensor does not: parameters must already be in the backend's
 * memory. A device error (sticky in the backend) shows as ew_graph_error and fails
 * ew_backward and ew_graph_reset.
 */
#ifndef EW_AUTODIFF_H
#define EW_AUTODIFF_H

#include <stddef.h>

#include "models/backend.h"
#include "models/param.h"
#include "models/tensor.h"

typedef struct ew_graph ew_graph;
typedef void (*ew_backward_fn)(ew_graph *g, void *ctx);

/* A graph on backend be (borrowed, must outlive the graph) with an initial arena of
 * arena_bytes. NULL when out of memory. */
ew_graph *ew_graph_create(const ew_backend *be, size_t arena_bytes);
/* An allocator over be's mem_alloc/mem_free (ctx = be; all zero for the CPU backend: malloc),
 * for moving layers into a device backend's memory (layers.h ew_*_move). */
ew_allocator ew_backend_allocator(const ew_backend *be);
void ew_graph_destroy(ew_graph *g);
/* Starts a new step: forgets all tensors and the tape. Returns 0 or -1 (see ew_arena_reset). */
int ew_graph_reset(ew_graph *g);
const ew_backend *ew_graph_backend(const ew_graph *g);
ew_arena *ew_graph_arena(ew_graph *g);
/* Grad mode: on (default) records the tape; off computes forward only. Returns the old mode. */
int ew_set_grad_enabled(ew_graph *g, int on);
int ew_grad_enabled(const ew_graph *g);
/* The first error since the last reset, or NULL. */
const char *ew_graph_error(const ew_graph *g);
/* Records an error (printf-style) unless one is already recorded; returns NULL for chaining. */
void *ew_graph_fail(ew_graph *g, const char *fmt, ...);
/* Count of system allocations made by the graph so far (arena blocks + scratch growth). */
unsigned long ew_graph_sys_allocs(const ew_graph *g);
/* Number of records on the tape. */
size_t ew_graph_tape_len(const ew_graph *g);

/* New arena tensor, uninitialised / zero-filled / copied from data. NULL on error. */
ew_tensor *ew_tensor_new(ew_graph *g, int ndim, const int *shape);
ew_tensor *ew_tensor_zeros(ew_graph *g, int ndim, const int *shape);
ew_tensor *ew_tensor_from(ew_graph *g, int ndim, const int *shape, const float *data);
/* A tensor over caller-owned memory (not copied; must stay valid for the step). On a device
 * backend the data is copied into the graph's device arena instead, unless it is already in
 * the backend's memory (be->owns). */
ew_tensor *ew_tensor_wrap(ew_graph *g, int ndim, const int *shape, float *data);
/* A tensor over a parameter: data is p->data, gradients accumulate into p->grad (a
 * parameter without grad storage is a constant). */
ew_tensor *ew_param_tensor(ew_graph *g, const ew_param *p);
/* Marks an input as wanting a gradient (e.g. actions for planning). */
void ew_requires_grad(ew_tensor *t, int on);
/* The gradient buffer of t, allocated (zeroed) in the arena on first use; NULL on error. */
float *ew_tensor_grad(ew_graph *g, ew_tensor *t);

/* Reverse pass from a scalar (numel 1) loss. Returns 0, or -1 with ew_graph_error set.
 * The tape is consumed: a second call needs a new forward pass. */
int ew_backward(ew_graph *g, ew_tensor *loss);
/* Reverse pass seeding d out = seed (numel(out) floats): a vector-Jacobian product. */
int ew_backward_seed(ew_graph *g, ew_tensor *out, const float *seed);

/* Profiling: records pushed after ew_graph_set_tag(g, t) carry tag t (0 <= t < EW_MAX_TAGS,
 * default 0); with profiling on, ew_backward times every record and sums per tag. Counters
 * survive ew_graph_reset; ew_graph_profile_clear zeroes them. */
#define EW_MAX_TAGS 32
void ew_graph_set_tag(ew_graph *g, int tag);
void ew_graph_profile(ew_graph *g, int on);
void ew_graph_profile_clear(ew_graph *g);
double ew_graph_tag_seconds(const ew_graph *g, int tag);

/* For op implementations -------------------------------------------------------------- */
/* 1 if an op on these inputs must be recorded (grad mode on and an input requires grad). */
int ew_should_record(const ew_graph *g, const ew_tensor *a, const ew_tensor *b);
/* Pushes a record; returns its ctx (ctx_bytes, zeroed, in the arena) or NULL on error. */
void *ew_tape_push(ew_graph *g, ew_backward_fn fn, size_t ctx_bytes);
/* bytes of memory the backend's kernels can address (the device arena on a device backend,
 * else the arena), valid until the next reset; NULL (and an error recorded) when out of memory.
 * For per-step buffers an op hands to a backend entry (e.g. dropout masks). */
void *ew_graph_data_alloc(ew_graph *g, size_t bytes);
/* Scratch floats valid until the next ew_graph_scratch call; grows (system allocation) only
 * when a larger size is asked for. NULL when out of memory. */
float *ew_graph_scratch(ew_graph *g, size_t floats);
/* The gradient of t if one has flowed in (following views to their base), else NULL. */
float *ew_grad_if_any(ew_tensor *t);
/* The gradient of t for a backward that writes every element of it. When no gradient has
 * flowed in yet, it is allocated uninitialised and *fresh = 1: the caller must overwrite all
 * of it (a first write instead of a zero-fill and an add); else *fresh = 0 and the caller adds,
 * as with ew_tensor_grad. NULL on error. */
float *ew_tensor_grad_w(ew_graph *g, ew_tensor *t, int *fresh);

#endif
