/* autodiff.c - graph, tape and the reverse pass. */
#define _POSIX_C_SOURCE 200809L
#include "models/autodiff.h"

#include <time.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct ew_tape_rec ew_tape_rec;
struct ew_tape_rec {
    ew_backward_fn fn;
    void *ctx;
    ew_tape_rec *prev;
    int tag;
};

struct ew_graph {
    const ew_backend *be;
    ew_arena arena;      /* headers, tape, contexts; also tensor data on the CPU backend */
    ew_arena dev_arena;  /* tensor data and gradients on a device backend (its memory) */
    int device;          /* be is a device backend: data in dev_arena, scratch from be */
    ew_tape_rec *tape; /* newest record */
    size_t tape_len;
    int grad_enabled;
    int failed;
    char err[256];
    float *scratch;
    size_t scratch_cap;
    unsigned long scratch_allocs;
    int tag, profile;
    double tag_seconds[EW_MAX_TAGS];
};

void ew_graph_set_tag(ew_graph *g, int tag) { g->tag = tag >= 0 && tag < EW_MAX_TAGS ? tag : 0; }
void ew_graph_profile(ew_graph *g, int on) { g->profile = on ? 1 : 0; }
void ew_graph_profile_clear(ew_graph *g) { memset(g->tag_seconds, 0, sizeof g->tag_seconds); }
double ew_graph_tag_seconds(const ew_graph *g, int tag) {
    return tag >= 0 && tag < EW_MAX_TAGS ? g->tag_seconds[tag] : 0.0;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void *be_alloc(void *ctx, size_t bytes) {
    const ew_backend *be = ctx;
    return be->mem_alloc(be, bytes);
}

static void be_free(void *ctx, void *p) {
    const ew_backend *be = ctx;
    be->mem_free(be, p);
}

ew_allocator ew_backend_allocator(const ew_backend *be) {
    ew_allocator al = {NULL, NULL, NULL};
    if (ew_backend_is_device(be)) {
        al.alloc = be_alloc;
        al.free = be_free;
        al.ctx = (void *)be;
    }
    return al;
}

/* Where tensor data and gradients live. */
static ew_arena *data_arena(ew_graph *g) { return g->device ? &g->dev_arena : &g->arena; }

ew_graph *ew_graph_create(const ew_backend *be, size_t arena_bytes) {
    ew_graph *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->be = be;
    g->grad_enabled = 1;
    g->device = ew_backend_is_device(be);
    if (g->device) {
        ew_allocator al = {be_alloc, be_free, (void *)be};
        if (ew_arena_init_with(&g->dev_arena, arena_bytes, &al) != 0) {
            free(g);
            return NULL;
        }
        arena_bytes = 0;
    }
    if (ew_arena_init(&g->arena, arena_bytes) != 0) {
        if (g->device) ew_arena_free(&g->dev_arena);
        free(g);
        return NULL;
    }
    return g;
}

static void scratch_free(ew_graph *g) {
    if (g->device && g->scratch)
        g->be->mem_free(g->be, g->scratch);
    else
        free(g->scratch);
    g->scratch = NULL;
}

void ew_graph_destroy(ew_graph *g) {
    if (!g) return;
    if (g->device) ew_backend_sync(g->be);
    ew_arena_free(&g->arena);
    if (g->device) ew_arena_free(&g->dev_arena);
    scratch_free(g);
    free(g);
}

int ew_graph_reset(ew_graph *g) {
    g->tape = NULL;
    g->tape_len = 0;
    g->failed = 0;
    g->err[0] = 0;
    if (g->device && ew_backend_sync(g->be) != 0) {
        ew_graph_fail(g, "%s", ew_backend_error(g->be));
        return -1;
    }
    if (ew_arena_reset(&g->arena) != 0 || (g->device && ew_arena_reset(&g->dev_arena) != 0)) {
        ew_graph_fail(g, "arena: out of memory while consolidating blocks");
        return -1;
    }
    return 0;
}

const ew_backend *ew_graph_backend(const ew_graph *g) { return g->be; }
ew_arena *ew_graph_arena(ew_graph *g) { return &g->arena; }

int ew_set_grad_enabled(ew_graph *g, int on) {
    int old = g->grad_enabled;
    g->grad_enabled = on ? 1 : 0;
    return old;
}

int ew_grad_enabled(const ew_graph *g) { return g->grad_enabled; }

const char *ew_graph_error(const ew_graph *g) { return g->failed ? g->err : ew_backend_error(g->be); }

void *ew_graph_fail(ew_graph *g, const char *fmt, ...) {
    if (!g->failed) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(g->err, sizeof g->err, fmt, ap);
        va_end(ap);
        g->failed = 1;
    }
    return NULL;
}

unsigned long ew_graph_sys_allocs(const ew_graph *g) {
    return ew_arena_sys_allocs(&g->arena) + (g->device ? ew_arena_sys_allocs(&g->dev_arena) : 0) + g->scratch_allocs;
}

size_t ew_graph_tape_len(const ew_graph *g) { return g->tape_len; }

float *ew_graph_scratch(ew_graph *g, size_t floats) {
    if (floats <= g->scratch_cap) return g->scratch;
    size_t cap = floats + floats / 4;
    float *p = g->device ? g->be->mem_alloc(g->be, cap * sizeof(float)) : malloc(cap * sizeof(float));
    if (!p) return ew_graph_fail(g, "scratch: out of memory (%zu floats)", floats);
    scratch_free(g);
    g->scratch = p;
    g->scratch_cap = cap;
    g->scratch_allocs++;
    return p;
}

static ew_tensor *tensor_header(ew_graph *g, int ndim, const int *shape) {
    if (ndim < 0 || ndim > EW_MAX_DIMS) return ew_graph_fail(g, "tensor: %d dims (max %d)", ndim, EW_MAX_DIMS);
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0) return ew_graph_fail(g, "tensor: negative size %d in dim %d", shape[i], i);
    ew_tensor *t = ew_arena_calloc(&g->arena, sizeof *t);
    if (!t) return ew_graph_fail(g, "arena: out of memory");
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    ew_tensor_set_contiguous(t);
    return t;
}

ew_tensor *ew_tensor_new(ew_graph *g, int ndim, const int *shape) {
    if (g->failed) return NULL;
    ew_tensor *t = tensor_header(g, ndim, shape);
    if (!t) return NULL;
    t->data = ew_arena_alloc(data_arena(g), ew_numel(t) * sizeof(float));
    if (!t->data) return ew_graph_fail(g, "arena: out of memory (%zu floats)", ew_numel(t));
    return t;
}

ew_tensor *ew_tensor_zeros(ew_graph *g, int ndim, const int *shape) {
    ew_tensor *t = ew_tensor_new(g, ndim, shape);
    if (!t) return t;
    if (g->device && g->be->fill)
        g->be->fill(g->be, ew_numel(t), 0.0f, t->data);
    else
        memset(t->data, 0, ew_numel(t) * sizeof(float));
    return t;
}

void *ew_graph_data_alloc(ew_graph *g, size_t bytes) {
    void *p = ew_arena_alloc(data_arena(g), bytes);
    if (!p) return ew_graph_fail(g, "arena: out of memory (%zu bytes)", bytes);
    return p;
}

ew_tensor *ew_tensor_from(ew_graph *g, int ndim, const int *shape, const float *data) {
    ew_tensor *t = ew_tensor_new(g, ndim, shape);
    if (!t) return t;
    if (g->device && g->be->upload)
        g->be->upload(g->be, t->data, data, ew_numel(t) * sizeof(float));
    else
        memcpy(t->data, data, ew_numel(t) * sizeof(float));
    return t;
}

ew_tensor *ew_tensor_wrap(ew_graph *g, int ndim, const int *shape, float *data) {
    if (g->failed) return NULL;
    if (!data) return ew_graph_fail(g, "tensor_wrap: NULL data");
    if (g->device && !(g->be->owns && g->be->owns(g->be, data)))
        return ew_tensor_from(g, ndim, shape, data); /* host memory: copied in */
    ew_tensor *t = tensor_header(g, ndim, shape);
    if (t) t->data = data;
    return t;
}

ew_tensor *ew_param_tensor(ew_graph *g, const ew_param *p) {
    if (g->failed) return NULL;
    if (!p || !p->data) return ew_graph_fail(g, "param_tensor: parameter without data");
    ew_tensor *t = tensor_header(g, p->ndim, p->shape);
    if (!t) return NULL;
    t->data = p->data;
    if (p->grad) {
        t->grad = p->grad;
        t->persistent_grad = 1;
        t->requires_grad = 1;
    }
    return t;
}

void ew_requires_grad(ew_tensor *t, int on) {
    if (t) t->requires_grad = on ? 1 : 0;
}

static ew_tensor *root_of(ew_tensor *t) {
    while (t->base) t = t->base;
    return t;
}

float *ew_grad_if_any(ew_tensor *t) { return root_of(t)->grad; }

float *ew_tensor_grad(ew_graph *g, ew_tensor *t) {
    ew_tensor *r = root_of(t);
    if (!r->grad) {
        if (g->device && g->be->fill) { /* zeroed by the device, not by the host */
            r->grad = ew_arena_alloc(data_arena(g), ew_numel(r) * sizeof(float));
            if (r->grad) g->be->fill(g->be, ew_numel(r), 0.0f, r->grad);
        } else {
            r->grad = ew_arena_calloc(data_arena(g), ew_numel(r) * sizeof(float));
        }
        if (!r->grad) return ew_graph_fail(g, "arena: out of memory for a gradient");
    }
    return r->grad;
}

float *ew_tensor_grad_w(ew_graph *g, ew_tensor *t, int *fresh) {
    ew_tensor *r = root_of(t);
    *fresh = 0;
    if (r->grad) return r->grad;
    if (ew_numel(r) != ew_numel(t)) return ew_tensor_grad(g, t);
    r->grad = ew_arena_alloc(data_arena(g), ew_numel(r) * sizeof(float));
    if (!r->grad) return ew_graph_fail(g, "arena: out of memory for a gradient");
    *fresh = 1;
    return r->grad;
}

int ew_should_record(const ew_graph *g, const ew_tensor *a, const ew_tensor *b) {
    return g->grad_enabled && ((a && a->requires_grad) || (b && b->requires_grad));
}

void *ew_tape_push(ew_graph *g, ew_backward_fn fn, size_t ctx_bytes) {
    ew_tape_rec *r = ew_arena_alloc(&g->arena, sizeof *r);
    void *ctx = ew_arena_calloc(&g->arena, ctx_bytes ? ctx_bytes : 1);
    if (!r || !ctx) return ew_graph_fail(g, "arena: out of memory for the tape");
    r->fn = fn;
    r->ctx = ctx;
    r->prev = g->tape;
    r->tag = g->tag;
    g->tape = r;
    g->tape_len++;
    return ctx;
}

static int run_tape(ew_graph *g) {
    for (ew_tape_rec *r = g->tape; r; r = r->prev) {
        if (g->profile) {
            double t0 = now_s();
            r->fn(g, r->ctx);
            g->tag_seconds[r->tag] += now_s() - t0;
        } else {
            r->fn(g, r->ctx);
        }
        if (g->failed) break;
    }
    g->tape = NULL;
    g->tape_len = 0;
    if (g->device) ew_backend_sync(g->be); /* gradients are host-visible on return */
    if (!g->failed && ew_backend_error(g->be)) ew_graph_fail(g, "%s", ew_backend_error(g->be));
    return g->failed ? -1 : 0;
}

int ew_backward_seed(ew_graph *g, ew_tensor *out, const float *seed) {
    if (g->failed) return -1;
    if (!out) {
        ew_graph_fail(g, "backward: NULL output");
        return -1;
    }
    if (!out->requires_grad) {
        ew_graph_fail(g, "backward: the output does not depend on anything that requires grad");
        return -1;
    }
    float *gr = ew_tensor_grad(g, out);
    if (!gr) return -1;
    if (g->device && ew_backend_sync(g->be)) { /* the host adds the seed below */
        ew_graph_fail(g, "%s", ew_backend_error(g->be));
        return -1;
    }
    size_t n = ew_numel(out);
    for (size_t i = 0; i < n; i++) gr[i] += seed[i];
    return run_tape(g);
}

int ew_backward(ew_graph *g, ew_tensor *loss) {
    if (g->failed) return -1;
    if (!loss) {
        ew_graph_fail(g, "backward: NULL loss");
        return -1;
    }
    if (ew_numel(loss) != 1) {
        char s[64];
        ew_shape_str(loss, s, sizeof s);
        ew_graph_fail(g, "backward: loss must have one element, has shape %s", s);
        return -1;
    }
    ew_tensor *r = root_of(loss);
    if (g->device && g->be->fill && !r->grad && loss->requires_grad) {
        /* d loss = 1 written by the device: no host access, so the step can be captured */
        r->grad = ew_arena_alloc(data_arena(g), sizeof(float));
        if (!r->grad) {
            ew_graph_fail(g, "arena: out of memory for a gradient");
            return -1;
        }
        g->be->fill(g->be, 1, 1.0f, r->grad);
        return run_tape(g);
    }
    const float one = 1.0f;
    return ew_backward_seed(g, loss, &one);
}
