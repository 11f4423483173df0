/* tensor.h - float32 tensors and the per-step arena that holds them.
 *
 * Contract: an ew_tensor is a row-major (NCHW for images) float32 array of up to
 * EW_MAX_DIMS dimensions with its shape and element strides. Every tensor an op produces is
 * contiguous; a view (reshape) shares its base's data and gradient. Tensors, their data and
 * tape records live in an ew_arena: one big block handed out by bumping a pointer and reset
 * as a whole at the start of every step. When a step outgrows the block, the arena chains a
 * new block; at the next reset it folds them into one block of the high-water size, so once
 * warmed up a step makes no system allocation (ew_arena_sys_allocs stays constant).
 * Parameters are not arena tensors: layers own them (see param.h) and wrap them per step.
 */
#ifndef EW_TENSOR_H
#define EW_TENSOR_H

#include <stddef.h>

#define EW_MAX_DIMS 5
#define EW_ARENA_ALIGN 64

typedef struct ew_arena_block ew_arena_block;

/* Where an arena's blocks come from (all NULL: malloc/free). A device backend supplies memory
 * its kernels can address (models/backend.h mem_alloc); block headers stay in host memory. */
typedef struct {
    void *(*alloc)(void *ctx, size_t bytes);
    void (*free)(void *ctx, void *p);
    void *ctx;
} ew_allocator;

typedef struct {
    ew_arena_block *head;       /* block in use (newest first) */
    size_t used_total;          /* bytes handed out since the last reset (with padding) */
    size_t high_water;          /* largest used_total seen */
    unsigned long sys_allocs;   /* number of malloc calls made so far */
    size_t min_block;           /* smallest block to ask the system for */
    ew_allocator al;            /* block memory (zero: malloc) */
} ew_arena;

/* Starts an arena with one block of `initial_bytes` (0: allocate on first use).
 * Returns 0, or -1 when the system refuses the memory. */
int ew_arena_init(ew_arena *a, size_t initial_bytes);
/* The same with block memory from al (NULL: malloc). */
int ew_arena_init_with(ew_arena *a, size_t initial_bytes, const ew_allocator *al);
/* `bytes` of EW_ARENA_ALIGN-aligned memory valid until the next reset; NULL when out of memory. */
void *ew_arena_alloc(ew_arena *a, size_t bytes);
/* Like ew_arena_alloc, zero-filled. */
void *ew_arena_calloc(ew_arena *a, size_t bytes);
/* Forgets everything handed out. If the last step needed more than one block, the blocks are
 * replaced by a single block of the high-water size. Returns 0, or -1 when that block could
 * not be allocated (the arena stays usable: it falls back to chaining). */
int ew_arena_reset(ew_arena *a);
void ew_arena_free(ew_arena *a);
static inline unsigned long ew_arena_sys_allocs(const ew_arena *a) { return a->sys_allocs; }
/* Capacity of all blocks currently held, in bytes. */
size_t ew_arena_capacity(const ew_arena *a);

typedef struct ew_tensor ew_tensor;
struct ew_tensor {
    int ndim;
    int shape[EW_MAX_DIMS];
    long stride[EW_MAX_DIMS];   /* in elements; contiguous row-major for every op output */
    float *data;
    float *grad;                /* same layout as data; NULL until a gradient flows in */
    ew_tensor *base;            /* for views: the tensor whose data and grad this one shares */
    int requires_grad;          /* a gradient w.r.t. this tensor is wanted (or flows through it) */
    int persistent_grad;        /* grad is external storage (a parameter's) and accumulates */
};

/* Number of elements of a shape / tensor. */
size_t ew_shape_numel(int ndim, const int *shape);
static inline size_t ew_numel(const ew_tensor *t) { return ew_shape_numel(t->ndim, t->shape); }
/* Fills t->stride for a contiguous row-major layout. */
void ew_tensor_set_contiguous(ew_tensor *t);
/* 1 if both tensors have the same shape. */
int ew_same_shape(const ew_tensor *a, const ew_tensor *b);
/* Writes "[2,3,4]" into buf (always NUL-terminated). */
void ew_shape_str(const ew_tensor *t, char *buf, size_t cap);

#endif
