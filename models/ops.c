/* ops.c - elementwise, broadcast, shape, reduction, loss, dropout and sampling ops.
 * (matmul, linear and convolutions are in ops_conv.c.) Each op is a forward function plus a
 * static backward function it records on the tape. */
#include "models/ops.h"

#include <float.h>
#include <math.h>
#include <string.h>

#define NEED(x)                                                             \
    do {                                                                    \
        if (!(x)) return ew_graph_fail(g, "%s: NULL input", __func__);      \
    } while (0)

static const char *shp(const ew_tensor *t, char *buf) {
    ew_shape_str(t, buf, 64);
    return buf;
}

/* Output requires grad and the op records when any input requires grad. */
static void *record(ew_graph *g, ew_tensor *y, ew_backward_fn fn, size_t bytes) {
    void *ctx = ew_tape_push(g, fn, bytes);
    if (ctx) y->requires_grad = 1;
    return ctx;
}

/* [outer, d, inner] decomposition around dim. */
static void split_dim(const ew_tensor *x, int dim, size_t *outer, int *d, size_t *inner) {
    size_t o = 1, in = 1;
    for (int i = 0; i < dim; i++) o *= (size_t)x->shape[i];
    for (int i = dim + 1; i < x->ndim; i++) in *= (size_t)x->shape[i];
    *outer = o;
    *d = x->shape[dim];
    *inner = in;
}

/* ------------------------------------------------------------------------------------------ */
/* Unary */

typedef struct {
    ew_tensor *x, *y;
    ew_unary_op op;
    float alpha;
} unary_ctx;

static void unary_bwd(ew_graph *g, void *c) {
    unary_ctx *u = c;
    float *dy = ew_grad_if_any(u->y);
    if (!dy || !u->x->requires_grad) return;
    int fresh;
    float *dx = ew_tensor_grad_w(g, u->x, &fresh);
    if (!dx) return;
    const ew_backend *be = ew_graph_backend(g);
    size_t n = ew_numel(u->x);
    if (fresh && be->unary_bwd_set) {
        be->unary_bwd_set(be, u->op, u->alpha, n, u->x->data, u->y->data, dy, dx);
        return;
    }
    if (fresh) memset(dx, 0, n * sizeof(float));
    be->unary_bwd(be, u->op, u->alpha, n, u->x->data, u->y->data, dy, dx);
}

static ew_tensor *unary(ew_graph *g, ew_tensor *x, ew_unary_op op, float alpha) {
    NEED(x);
    ew_tensor *y = ew_tensor_new(g, x->ndim, x->shape);
    if (!y) return NULL;
    const ew_backend *be = ew_graph_backend(g);
    be->unary(be, op, alpha, ew_numel(x), x->data, y->data);
    if (ew_should_record(g, x, NULL)) {
        unary_ctx *u = record(g, y, unary_bwd, sizeof *u);
        if (!u) return NULL;
        u->x = x;
        u->y = y;
        u->op = op;
        u->alpha = alpha;
    }
    return y;
}

ew_tensor *ew_scale(ew_graph *g, ew_tensor *x, float s) { return unary(g, x, EW_UNARY_SCALE, s); }
ew_tensor *ew_add_scalar(ew_graph *g, ew_tensor *x, float s) { return unary(g, x, EW_UNARY_ADD_SCALAR, s); }
ew_tensor *ew_square(ew_graph *g, ew_tensor *x) { return unary(g, x, EW_UNARY_SQUARE, 0.0f); }
ew_tensor *ew_relu(ew_graph *g, ew_tensor *x) { return unary(g, x, EW_UNARY_RELU, 0.0f); }
ew_tensor *ew_leaky_relu(ew_graph *g, ew_tensor *x, float slope) { return unary(g, x, EW_UNARY_LEAKY_RELU, slope); }
ew_tensor *ew_tanh(ew_graph *g, ew_tensor *x) { return unary(g, x, EW_UNARY_TANH, 0.0f); }
ew_tensor *ew_sigmoid(ew_graph *g, ew_tensor *x) { return unary(g, x, EW_UNARY_SIGMOID, 0.0f); }
ew_tensor *ew_softplus(ew_graph *g, ew_tensor *x) { return unary(g, x, EW_UNARY_SOFTPLUS, 0.0f); }
ew_tensor *ew_exp(ew_graph *g, ew_tensor *x) { return unary(g, x, EW_UNARY_EXP, 0.0f); }
ew_tensor *ew_log(ew_graph *g, ew_tensor *x) { return unary(g, x, EW_UNARY_LOG, 0.0f); }

/* ------------------------------------------------------------------------------------------ */
/* Broadcasting binary ops */

/* Broadcast geometry: output shape and, per output dim, the element stride of a and b (0 on
 * stretched dims). */
typedef struct {
    int nd;
    int shape[EW_MAX_DIMS];
    long sa[EW_MAX_DIMS], sb[EW_MAX_DIMS];
} bcast;

static int bcast_make(const ew_tensor *a, const ew_tensor *b, bcast *bc) {
    int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
    bc->nd = nd;
    for (int i = 0; i < nd; i++) {
        int ia = i - (nd - a->ndim), ib = i - (nd - b->ndim);
        int da = ia >= 0 ? a->shape[ia] : 1, db = ib >= 0 ? b->shape[ib] : 1;
        if (da != db && da != 1 && db != 1) return -1;
        bc->shape[i] = da > db ? da : db;
        if (da == 0 || db == 0) bc->shape[i] = 0;
        bc->sa[i] = (ia >= 0 && da != 1) ? a->stride[ia] : 0;
        bc->sb[i] = (ib >= 0 && db != 1) ? b->stride[ib] : 0;
    }
    return 0;
}

/* Offsets of a and b for row r (all dims but the last). */
static void bcast_row(const bcast *bc, size_t r, long *oa, long *ob) {
    long a = 0, b = 0;
    for (int i = bc->nd - 2; i >= 0; i--) {
        size_t idx = r % (size_t)bc->shape[i];
        r /= (size_t)bc->shape[i];
        a += (long)idx * bc->sa[i];
        b += (long)idx * bc->sb[i];
    }
    *oa = a;
    *ob = b;
}

static inline float bin_apply(ew_binary_op op, float a, float b) {
    switch (op) {
    case EW_BINARY_ADD: return a + b;
    case EW_BINARY_SUB: return a - b;
    case EW_BINARY_MUL: return a * b;
    case EW_BINARY_DIV: return a / b;
    }
    return 0.0f;
}

typedef struct {
    ew_tensor *a, *b, *y;
    ew_binary_op op;
    int same;
    bcast bc;
} binary_ctx;

static void binary_bwd(ew_graph *g, void *c) {
    binary_ctx *u = c;
    float *dy = ew_grad_if_any(u->y);
    if (!dy) return;
    if (u->same && (u->op == EW_BINARY_ADD || u->op == EW_BINARY_SUB)) {
        /* first gradients are copies of +-dy; a is done before b is looked at (a may be b) */
        const ew_backend *be = ew_graph_backend(g);
        size_t n = ew_numel(u->y);
        for (int k = 0; k < 2; k++) {
            ew_tensor *t = k ? u->b : u->a;
            if (!t->requires_grad) continue;
            float sgn = k && u->op == EW_BINARY_SUB ? -1.0f : 1.0f;
            int fresh;
            float *d = ew_tensor_grad_w(g, t, &fresh);
            if (!d) return;
            if (fresh)
                be->unary(be, EW_UNARY_SCALE, sgn, n, dy, d);
            else
                be->axpy(be, n, sgn, dy, d);
        }
        return;
    }
    float *da = u->a->requires_grad ? ew_tensor_grad(g, u->a) : NULL;
    float *db = u->b->requires_grad ? ew_tensor_grad(g, u->b) : NULL;
    if (ew_graph_error(g)) return;
    const float *a = u->a->data, *b = u->b->data;
    if (u->same) {
        const ew_backend *be = ew_graph_backend(g);
        be->binary_bwd(be, u->op, ew_numel(u->y), a, b, dy, da, db);
        return;
    }
    const bcast *bc = &u->bc;
    int nd = bc->nd;
    size_t inner = nd ? (size_t)bc->shape[nd - 1] : 1;
    long ia = nd ? bc->sa[nd - 1] : 0, ib = nd ? bc->sb[nd - 1] : 0;
    size_t rows = inner ? ew_numel(u->y) / inner : 0;
    for (size_t r = 0; r < rows; r++) {
        long oa, ob;
        bcast_row(bc, r, &oa, &ob);
        const float *gy = dy + r * inner;
        for (size_t j = 0; j < inner; j++) {
            long pa = oa + (long)j * ia, pb = ob + (long)j * ib;
            float gv = gy[j];
            switch (u->op) {
            case EW_BINARY_ADD:
                if (da) da[pa] += gv;
                if (db) db[pb] += gv;
                break;
            case EW_BINARY_SUB:
                if (da) da[pa] += gv;
                if (db) db[pb] -= gv;
                break;
            case EW_BINARY_MUL:
                if (da) da[pa] += gv * b[pb];
                if (db) db[pb] += gv * a[pa];
                break;
            case EW_BINARY_DIV:
                if (da) da[pa] += gv / b[pb];
                if (db) db[pb] -= gv * a[pa] / (b[pb] * b[pb]);
                break;
            }
        }
    }
}

static ew_tensor *binary(ew_graph *g, ew_tensor *a, ew_tensor *b, ew_binary_op op, const char *name) {
    NEED(a);
    NEED(b);
    bcast bc;
    char s1[64], s2[64];
    if (bcast_make(a, b, &bc) != 0)
        return ew_graph_fail(g, "%s: shapes %s and %s do not broadcast", name, shp(a, s1), shp(b, s2));
    ew_tensor *y = ew_tensor_new(g, bc.nd, bc.shape);
    if (!y) return NULL;
    int same = ew_same_shape(a, b);
    const ew_backend *be = ew_graph_backend(g);
    if (same) {
        be->binary(be, op, ew_numel(y), a->data, b->data, y->data);
    } else {
        int nd = bc.nd;
        size_t inner = nd ? (size_t)bc.shape[nd - 1] : 1;
        long ia = nd ? bc.sa[nd - 1] : 0, ib = nd ? bc.sb[nd - 1] : 0;
        long rows = inner ? (long)(ew_numel(y) / inner) : 0;
        int T = be->threads;
#pragma omp parallel for num_threads(T) schedule(static) if (T > 1 && rows * (long)inner > 32768)
        for (long r = 0; r < rows; r++) {
            long oa, ob;
            bcast_row(&bc, (size_t)r, &oa, &ob);
            float *yr = y->data + (size_t)r * inner;
            for (size_t j = 0; j < inner; j++)
                yr[j] = bin_apply(op, a->data[oa + (long)j * ia], b->data[ob + (long)j * ib]);
        }
    }
    if (ew_should_record(g, a, b)) {
        binary_ctx *u = record(g, y, binary_bwd, sizeof *u);
        if (!u) return NULL;
        u->a = a;
        u->b = b;
        u->y = y;
        u->op = op;
        u->same = same;
        u->bc = bc;
    }
    return y;
}

ew_tensor *ew_add(ew_graph *g, ew_tensor *a, ew_tensor *b) { return binary(g, a, b, EW_BINARY_ADD, "add"); }
ew_tensor *ew_sub(ew_graph *g, ew_tensor *a, ew_tensor *b) { return binary(g, a, b, EW_BINARY_SUB, "sub"); }
ew_tensor *ew_mul(ew_graph *g, ew_tensor *a, ew_tensor *b) { return binary(g, a, b, EW_BINARY_MUL, "mul"); }
ew_tensor *ew_div(ew_graph *g, ew_tensor *a, ew_tensor *b) { return binary(g, a, b, EW_BINARY_DIV, "div"); }

typedef struct {
    ew_tensor *x, *y;
    bcast bc;
} expand_ctx;

static void expand_bwd(ew_graph *g, void *c) {
    expand_ctx *u = c;
    float *dy = ew_grad_if_any(u->y);
    if (!dy) return;
    float *dx = ew_tensor_grad(g, u->x);
    if (!dx) return;
    const bcast *bc = &u->bc;
    int nd = bc->nd;
    size_t inner = nd ? (size_t)bc->shape[nd - 1] : 1;
    long ia = nd ? bc->sa[nd - 1] : 0;
    size_t rows = inner ? ew_numel(u->y) / inner : 0;
    for (size_t r = 0; r < rows; r++) {
        long oa, ob;
        bcast_row(bc, r, &oa, &ob);
        for (size_t j = 0; j < inner; j++) dx[oa + (long)j * ia] += dy[r * inner + j];
    }
}

ew_tensor *ew_expand(ew_graph *g, ew_tensor *x, int ndim, const int *shape) {
    NEED(x);
    if (ndim < x->ndim || ndim > EW_MAX_DIMS) return ew_graph_fail(g, "expand: bad target rank %d", ndim);
    ew_tensor tgt;
    memset(&tgt, 0, sizeof tgt);
    tgt.ndim = ndim;
    for (int i = 0; i < ndim; i++) tgt.shape[i] = shape[i];
    ew_tensor_set_contiguous(&tgt);
    bcast bc;
    char s1[64], s2[64];
    int ok = bcast_make(x, &tgt, &bc) == 0 && bc.nd == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = bc.shape[i] == shape[i];
    if (!ok)
        return ew_graph_fail(g, "expand: %s cannot expand to %s", shp(x, s1), shp(&tgt, s2));
    ew_tensor *y = ew_tensor_new(g, ndim, shape);
    if (!y) return NULL;
    size_t inner = ndim ? (size_t)shape[ndim - 1] : 1;
    long ia = ndim ? bc.sa[ndim - 1] : 0;
    size_t rows = inner ? ew_numel(y) / inner : 0;
    for (size_t r = 0; r < rows; r++) {
        long oa, ob;
        bcast_row(&bc, r, &oa, &ob);
        for (size_t j = 0; j < inner; j++) y->data[r * inner + j] = x->data[oa + (long)j * ia];
    }
    if (ew_should_record(g, x, NULL)) {
        expand_ctx *u = record(g, y, expand_bwd, sizeof *u);
        if (!u) return NULL;
        u->x = x;
        u->y = y;
        u->bc = bc;
    }
    return y;
}

/* ------------------------------------------------------------------------------------------ */
/* Shape */

ew_tensor *ew_reshape(ew_graph *g, ew_tensor *x, int ndim, const int *shape) {
    NEED(x);
    if (ndim < 0 || ndim > EW_MAX_DIMS) return ew_graph_fail(g, "reshape: bad rank %d", ndim);
    int s[EW_MAX_DIMS];
    int infer = -1;
    size_t known = 1;
    for (int i = 0; i < ndim; i++) {
        s[i] = shape[i];
        if (s[i] == -1) {
            if (infer >= 0) return ew_graph_fail(g, "reshape: more than one -1");
            infer = i;
        } else if (s[i] < 0) {
            return ew_graph_fail(g, "reshape: negative size");
        } else {
            known *= (size_t)s[i];
        }
    }
    size_t n = ew_numel(x);
    if (infer >= 0) {
        if (known == 0 || n % known) return ew_graph_fail(g, "reshape: cannot infer size");
        s[infer] = (int)(n / known);
        known *= (size_t)s[infer];
    }
    char s1[64];
    if (known != n) return ew_graph_fail(g, "reshape: %s has %zu elements, target has %zu", shp(x, s1), n, known);
    ew_tensor *y = ew_arena_calloc(ew_graph_arena(g), sizeof *y);
    if (!y) return ew_graph_fail(g, "arena: out of memory");
    y->ndim = ndim;
    for (int i = 0; i < ndim; i++) y->shape[i] = s[i];
    ew_tensor_set_contiguous(y);
    y->data = x->data;
    y->base = x;
    y->requires_grad = x->requires_grad;
    return y;
}

typedef struct {
    ew_tensor **xs;
    int n, dim;
    ew_tensor *y;
    size_t outer, inner;
    int dtot;
} concat_ctx;

static void concat_bwd(ew_graph *g, void *c) {
    concat_ctx *u = c;
    float *dy = ew_grad_if_any(u->y);
    if (!dy) return;
    int off = 0;
    for (int k = 0; k < u->n; k++) {
        ew_tensor *x = u->xs[k];
        int d = x->shape[u->dim];
        if (x->requires_grad) {
            float *dx = ew_tensor_grad(g, x);
            if (!dx) return;
            size_t len = (size_t)d * u->inner;
            const ew_backend *be = ew_graph_backend(g);
            if (be->copy_rows) {
                be->copy_rows(be, u->outer, len, dy + (size_t)off * u->inner, (size_t)u->dtot * u->inner, dx, len, 1);
                off += d;
                continue;
            }
            for (size_t o = 0; o < u->outer; o++) {
                const float *src = dy + (o * (size_t)u->dtot + (size_t)off) * u->inner;
                float *dst = dx + o * len;
                for (size_t i = 0; i < len; i++) dst[i] += src[i];
            }
        }
        off += d;
    }
}

ew_tensor *ew_concat(ew_graph *g, ew_tensor *const *xs, int n, int dim) {
    if (n < 1) return ew_graph_fail(g, "concat: no inputs");
    for (int k = 0; k < n; k++) NEED(xs[k]);
    const ew_tensor *x0 = xs[0];
    if (dim < 0 || dim >= x0->ndim) return ew_graph_fail(g, "concat: bad dim %d", dim);
    int dtot = 0, rec = 0;
    char s1[64], s2[64];
    for (int k = 0; k < n; k++) {
        const ew_tensor *x = xs[k];
        if (x->ndim != x0->ndim) return ew_graph_fail(g, "concat: rank mismatch %s vs %s", shp(x0, s1), shp(x, s2));
        for (int i = 0; i < x->ndim; i++)
            if (i != dim && x->shape[i] != x0->shape[i])
                return ew_graph_fail(g, "concat: shape mismatch %s vs %s", shp(x0, s1), shp(x, s2));
        dtot += x->shape[dim];
        rec |= ew_should_record(g, x, NULL);
    }
    int shape[EW_MAX_DIMS];
    for (int i = 0; i < x0->ndim; i++) shape[i] = x0->shape[i];
    shape[dim] = dtot;
    ew_tensor *y = ew_tensor_new(g, x0->ndim, shape);
    if (!y) return NULL;
    size_t outer, inner;
    int d;
    split_dim(y, dim, &outer, &d, &inner);
    int off = 0;
    const ew_backend *be = ew_graph_backend(g);
    for (int k = 0; k < n; k++) {
        size_t len = (size_t)xs[k]->shape[dim] * inner;
        if (be->copy_rows) {
            be->copy_rows(be, outer, len, xs[k]->data, len, y->data + (size_t)off * inner, (size_t)dtot * inner, 0);
            off += xs[k]->shape[dim];
            continue;
        }
        for (size_t o = 0; o < outer; o++)
            memcpy(y->data + (o * (size_t)dtot + (size_t)off) * inner, xs[k]->data + o * len, len * sizeof(float));
        off += xs[k]->shape[dim];
    }
    if (rec) {
        concat_ctx *u = record(g, y, concat_bwd, sizeof *u);
        if (!u) return NULL;
        u->xs = ew_arena_alloc(ew_graph_arena(g), sizeof(ew_tensor *) * (size_t)n);
        if (!u->xs) return ew_graph_fail(g, "arena: out of memory");
        for (int k = 0; k < n; k++) u->xs[k] = xs[k];
        u->n = n;
        u->dim = dim;
        u->y = y;
        u->outer = outer;
        u->inner = inner;
        u->dtot = dtot;
    }
    return y;
}

typedef struct {
    ew_tensor *x, *y;
    size_t outer, inner;
    int d, start, len;
} slice_ctx;

static void slice_bwd(ew_graph *g, void *c) {
    slice_ctx *u = c;
    float *dy = ew_grad_if_any(u->y);
    if (!dy) return;
    float *dx = ew_tensor_grad(g, u->x);
    if (!dx) return;
    size_t len = (size_t)u->len * u->inner;
    const ew_backend *be = ew_graph_backend(g);
    if (be->copy_rows) {
        be->copy_rows(be, u->outer, len, dy, len, dx + (size_t)u->start * u->inner, (size_t)u->d * u->inner, 1);
        return;
    }
    for (size_t o = 0; o < u->outer; o++) {
        float *dst = dx + (o * (size_t)u->d + (size_t)u->start) * u->inner;
        const float *src = dy + o * len;
        for (size_t i = 0; i < len; i++) dst[i] += src[i];
    }
}

ew_tensor *ew_slice(ew_graph *g, ew_tensor *x, int dim, int start, int len) {
    NEED(x);
    char s1[64];
    if (dim < 0 || dim >= x->ndim || start < 0 || len < 0 || start + len > x->shape[dim])
        return ew_graph_fail(g, "slice: dim %d [%d, %d) out of range for %s", dim, start, start + len, shp(x, s1));
    int shape[EW_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) shape[i] = x->shape[i];
    shape[dim] = len;
    ew_tensor *y = ew_tensor_new(g, x->ndim, shape);
    if (!y) return NULL;
    size_t outer, inner;
    int d;
    split_dim(x, dim, &outer, &d, &inner);
    size_t l = (size_t)len * inner;
    const ew_backend *be = ew_graph_backend(g);
    if (be->copy_rows)
        be->copy_rows(be, outer, l, x->data + (size_t)start * inner, (size_t)d * inner, y->data, l, 0);
    else
        for (size_t o = 0; o < outer; o++)
            memcpy(y->data + o * l, x->data + (o * (size_t)d + (size_t)start) * inner, l * sizeof(float));
    if (ew_should_record(g, x, NULL)) {
        slice_ctx *u = record(g, y, slice_bwd, sizeof *u);
        if (!u) return NULL;
        u->x = x;
        u->y = y;
        u->outer = outer;
        u->inner = inner;
        u->d = d;
        u->start = start;
        u->len = len;
    }
    return y;
}

/* ------------------------------------------------------------------------------------------ */
/* Reductions */

typedef struct {
    ew_tensor *x, *y;
    size_t outer, inner;
    int d;
    float scale;  /* 1 for sum, 1/d for mean */
    int *argmax;  /* max only: index along dim per output element */
} reduce_ctx;

static void reduce_bwd(ew_graph *g, void *c) {
    reduce_ctx *u = c;
    float *dy = ew_grad_if_any(u->y);
    if (!dy) return;
    float *dx = ew_tensor_grad(g, u->x);
    if (!dx) return;
    for (size_t o = 0; o < u->outer; o++)
        for (size_t i = 0; i < u->inner; i++) {
            float gv = dy[o * u->inner + i];
            float *px = dx + o * (size_t)u->d * u->inner + i;
            if (u->argmax) {
                px[(size_t)u->argmax[o * u->inner + i] * u->inner] += gv;
            } else {
                gv *= u->scale;
                for (int j = 0; j < u->d; j++) px[(size_t)j * u->inner] += gv;
            }
        }
}

/* kind: 0 sum, 1 mean, 2 max. dim < 0: over everything. */
static ew_tensor *reduce(ew_graph *g, ew_tensor *x, int dim, int keepdim, int kind, const char *name) {
    NEED(x);
    size_t outer, inner;
    int d;
    int shape[EW_MAX_DIMS], nd = 0;
    if (dim < 0) {
        outer = 1;
        inner = 1;
        d = (int)ew_numel(x);
    } else {
        if (dim >= x->ndim) return ew_graph_fail(g, "%s: bad dim %d", name, dim);
        split_dim(x, dim, &outer, &d, &inner);
        for (int i = 0; i < x->ndim; i++) {
            if (i == dim && !keepdim) continue;
            shape[nd++] = i == dim ? 1 : x->shape[i];
        }
    }
    if (kind == 2 && d == 0) return ew_graph_fail(g, "%s: empty dimension", name);
    ew_tensor *y = ew_tensor_new(g, nd, shape);
    if (!y) return NULL;
    int rec = ew_should_record(g, x, NULL);
    int *am = NULL;
    if (kind == 2 && rec) {
        am = ew_arena_alloc(ew_graph_arena(g), sizeof(int) * outer * inner);
        if (!am) return ew_graph_fail(g, "arena: out of memory");
    }
    for (size_t o = 0; o < outer; o++)
        for (size_t i = 0; i < inner; i++) {
            const float *px = x->data + o * (size_t)d * inner + i;
            if (kind == 2) {
                int best = 0;
                float bv = px[0];
                for (int j = 1; j < d; j++)
                    if (px[(size_t)j * inner] > bv) {
                        bv = px[(size_t)j * inner];
                        best = j;
                    }
                y->data[o * inner + i] = bv;
                if (am) am[o * inner + i] = best;
            } else {
                double s = 0.0;
                for (int j = 0; j < d; j++) s += px[(size_t)j * inner];
                if (kind == 1) s = d ? s / d : 0.0;
                y->data[o * inner + i] = (float)s;
            }
        }
    if (rec) {
        reduce_ctx *u = record(g, y, reduce_bwd, sizeof *u);
        if (!u) return NULL;
        u->x = x;
        u->y = y;
        u->outer = outer;
        u->inner = inner;
        u->d = d;
        u->scale = kind == 1 && d ? 1.0f / (float)d : 1.0f;
        u->argmax = am;
    }
    return y;
}

ew_tensor *ew_sum(ew_graph *g, ew_tensor *x) { return reduce(g, x, -1, 0, 0, "sum"); }
ew_tensor *ew_mean(ew_graph *g, ew_tensor *x) { return reduce(g, x, -1, 0, 1, "mean"); }
ew_tensor *ew_max(ew_graph *g, ew_tensor *x) { return reduce(g, x, -1, 0, 2, "max"); }
ew_tensor *ew_sum_dim(ew_graph *g, ew_tensor *x, int dim, int keepdim) { return reduce(g, x, dim, keepdim, 0, "sum_dim"); }
ew_tensor *ew_mean_dim(ew_graph *g, ew_tensor *x, int dim, int keepdim) { return reduce(g, x, dim, keepdim, 1, "mean_dim"); }
ew_tensor *ew_max_dim(ew_graph *g, ew_tensor *x, int dim, int keepdim) { return reduce(g, x, dim, keepdim, 2, "max_dim"); }

/* ------------------------------------------------------------------------------------------ */
/* Dropout */

typedef struct {
    ew_tensor *x, *y;
    float *mask;   /* 0 or 1/(1-p): per element, or per (n, c) with `inner` elements each */
    size_t groups, inner;
} dropout_ctx;

static void dropout_bwd(ew_graph *g, void *c) {
    dropout_ctx *u = c;
    float *dy = ew_grad_if_any(u->y);
    if (!dy) return;
    int fresh;
    float *dx = ew_tensor_grad_w(g, u->x, &fresh);
    if (!dx) return;
    const ew_backend *be = ew_graph_backend(g);
    if (be->scale_groups) {
        be->scale_groups(be, u->groups, u->inner, u->mask, dy, dx, fresh ? 1 : 2);
        return;
    }
    for (size_t k = 0; k < u->groups; k++) {
        float m = u->mask[k];
        const float *s = dy + k * u->inner;
        float *d = dx + k * u->inner;
        if (fresh && m == 0.0f)
            memset(d, 0, u->inner * sizeof(float));
        else if (fresh)
            for (size_t i = 0; i < u->inner; i++) d[i] = m * s[i];
        else if (m != 0.0f)
            for (size_t i = 0; i < u->inner; i++) d[i] += m * s[i];
    }
}

static ew_tensor *dropout(ew_graph *g, ew_tensor *x, float p, ew_rng *rng, int channel) {
    NEED(x);
    if (!rng) return ew_graph_fail(g, "dropout: NULL rng");
    if (!(p < 1.0f)) return ew_graph_fail(g, "dropout: p = %g must be < 1", (double)p);
    if (p <= 0.0f) return x;
    if (channel && x->ndim < 2) return ew_graph_fail(g, "channel_dropout: needs [n, c, ...]");
    size_t groups = channel ? (size_t)x->shape[0] * (size_t)x->shape[1] : ew_numel(x);
    size_t inner = groups ? ew_numel(x) / groups : 0;
    ew_tensor *y = ew_tensor_new(g, x->ndim, x->shape);
    const ew_backend *be = ew_graph_backend(g);
    /* the mask is read by the backend when it scales on the device */
    float *mask = be->scale_groups ? ew_graph_data_alloc(g, sizeof(float) * (groups ? groups : 1))
                                   : ew_arena_alloc(ew_graph_arena(g), sizeof(float) * (groups ? groups : 1));
    if (!y) return NULL;
    if (!mask) return ew_graph_fail(g, "arena: out of memory");
    float keep = 1.0f / (1.0f - p);
    for (size_t k = 0; k < groups; k++) mask[k] = ew_rng_uniform(rng) < (double)p ? 0.0f : keep;
    if (be->scale_groups) be->scale_groups(be, groups, inner, mask, x->data, y->data, 0);
    for (size_t k = 0; k < groups && !be->scale_groups; k++) {
        float m = mask[k];
        const float *s = x->data + k * inner;
        float *d = y->data + k * inner;
        for (size_t i = 0; i < inner; i++) d[i] = m * s[i];
    }
    if (ew_should_record(g, x, NULL)) {
        dropout_ctx *u = record(g, y, dropout_bwd, sizeof *u);
        if (!u) return NULL;
        u->x = x;
        u->y = y;
        u->mask = mask;
        u->groups = groups;
        u->inner = inner;
    }
    return y;
}

ew_tensor *ew_dropout(ew_graph *g, ew_tensor *x, float p, ew_rng *rng) { return dropout(g, x, p, rng, 0); }
ew_tensor *ew_channel_dropout(ew_graph *g, ew_tensor *x, float p, ew_rng *rng) { return dropout(g, x, p, rng, 1); }

/* ------------------------------------------------------------------------------------------ */
/* Reparameterised sampling */

typedef struct {
    ew_tensor *mu, *lv, *z;
    float *eps;
} reparam_ctx;

static void reparam_bwd(ew_graph *g, void *c) {
    reparam_ctx *u = c;
    float *dz = ew_grad_if_any(u->z);
    if (!dz) return;
    size_t n = ew_numel(u->z);
    if (u->mu->requires_grad) {
        float *dm = ew_tensor_grad(g, u->mu);
        if (!dm) return;
        for (size_t i = 0; i < n; i++) dm[i] += dz[i];
    }
    if (u->lv->requires_grad) {
        float *dl = ew_tensor_grad(g, u->lv);
        if (!dl) return;
        for (size_t i = 0; i < n; i++) dl[i] += dz[i] * u->eps[i] * 0.5f * expf(0.5f * u->lv->data[i]);
    }
}

ew_tensor *ew_reparam_sample(ew_graph *g, ew_tensor *mu, ew_tensor *logvar, ew_rng *rng) {
    NEED(mu);
    NEED(logvar);
    if (!rng) return ew_graph_fail(g, "reparam_sample: NULL rng");
    char s1[64], s2[64];
    if (!ew_same_shape(mu, logvar))
        return ew_graph_fail(g, "reparam_sample: mu %s vs logvar %s", shp(mu, s1), shp(logvar, s2));
    size_t n = ew_numel(mu);
    ew_tensor *z = ew_tensor_new(g, mu->ndim, mu->shape);
    float *eps = ew_arena_alloc(ew_graph_arena(g), sizeof(float) * (n ? n : 1));
    if (!z) return NULL;
    if (!eps) return ew_graph_fail(g, "arena: out of memory");
    for (size_t i = 0; i < n; i++) {
        eps[i] = (float)ew_rng_normal(rng);
        z->data[i] = mu->data[i] + expf(0.5f * logvar->data[i]) * eps[i];
    }
    if (ew_should_record(g, mu, logvar)) {
        reparam_ctx *u = record(g, z, reparam_bwd, sizeof *u);
        if (!u) return NULL;
        u->mu = mu;
        u->lv = logvar;
        u->z = z;
        u->eps = eps;
    }
    return z;
}

/* ------------------------------------------------------------------------------------------ */
/* Losses */

typedef struct {
    ew_tensor *a, *b, *y;
} pair_ctx;

static void mse_bwd(ew_graph *g, void *c) {
    pair_ctx *u = c;
    float *dy = ew_grad_if_any(u->y);
    if (!dy) return;
    size_t n = ew_numel(u->a);
    /* a's gradient may be written fresh (overwritten) when b's is not the same buffer */
    int fresh = 0;
    float *da = NULL, *db = u->b->requires_grad ? ew_tensor_grad(g, u->b) : NULL;
    if (u->a->requires_grad) da = db ? ew_tensor_grad(g, u->a) : ew_tensor_grad_w(g, u->a, &fresh);
    if (ew_graph_error(g)) return;
    const float *a = u->a->data, *b = u->b->data;
    const ew_backend *be = ew_graph_backend(g);
    if (be->mse_bwd) {
        be->mse_bwd(be, n, a, b, dy, da, db, fresh);
        return;
    }
    float k = 2.0f * dy[0] / (float)n;
    int T = be->threads;
    long N = (long)n;
    if (fresh) {
#pragma omp parallel for num_threads(T) schedule(static) if (T > 1 && N > 32768)
        for (long i = 0; i < N; i++) da[i] = k * (a[i] - b[i]);
        return;
    }
#pragma omp parallel for num_threads(T) schedule(static) if (T > 1 && N > 32768)
    for (long i = 0; i < N; i++) {
        float d = k * (a[i] - b[i]);
        if (da) da[i] += d;
        if (db) db[i] -= d;
    }
}

ew_tensor *ew_mse(ew_graph *g, ew_tensor *a, ew_tensor *b) {
    NEED(a);
    NEED(b);
    char s1[64], s2[64];
    if (!ew_same_shape(a, b)) return ew_graph_fail(g, "mse: shapes %s and %s differ", shp(a, s1), shp(b, s2));
    size_t n = ew_numel(a);
    if (n == 0) return ew_graph_fail(g, "mse: empty tensors");
    ew_tensor *y = ew_tensor_new(g, 0, NULL);
    if (!y) return NULL;
    const ew_backend *be = ew_graph_backend(g);
    if (be->mse) {
        be->mse(be, n, a->data, b->data, y->data);
    } else {
        double s = 0.0;
        for (size_t i = 0; i < n; i++) {
            double d = (double)a->data[i] - (double)b->data[i];
            s += d * d;
        }
        y->data[0] = (float)(s / (double)n);
    }
    if (ew_should_record(g, a, b)) {
        pair_ctx *u = record(g, y, mse_bwd, sizeof *u);
        if (!u) return NULL;
        u->a = a;
        u->b = b;
        u->y = y;
    }
    return y;
}

static void kl_bwd(ew_graph *g, void *c) {
    pair_ctx *u = c;
    float *dy = ew_grad_if_any(u->y);
    if (!dy) return;
    size_t n = ew_numel(u->a);
    float k = dy[0] / (float)u->a->shape[0];
    if (u->a->requires_grad) {
        float *dm = ew_tensor_grad(g, u->a);
        if (!dm) return;
        for (size_t i = 0; i < n; i++) dm[i] += k * u->a->data[i];
    }
    if (u->b->requires_grad) {
        float *dl = ew_tensor_grad(g, u->b);
        if (!dl) return;
        for (size_t i = 0; i < n; i++) dl[i] += k * 0.5f * (expf(u->b->data[i]) - 1.0f);
    }
}

ew_tensor *ew_gauss_kl(ew_graph *g, ew_tensor *mu, ew_tensor *logvar) {
    NEED(mu);
    NEED(logvar);
    char s1[64], s2[64];
    if (!ew_same_shape(mu, logvar) || mu->ndim < 1 || mu->shape[0] < 1)
        return ew_graph_fail(g, "gauss_kl: mu %s vs logvar %s", shp(mu, s1), shp(logvar, s2));
    ew_tensor *y = ew_tensor_new(g, 0, NULL);
    if (!y) return NULL;
    size_t n = ew_numel(mu);
    double s = 0.0;
    for (size_t i = 0; i < n; i++) {
        double m = mu->data[i], l = logvar->data[i];
        s += 1.0 + l - m * m - exp(l);
    }
    y->data[0] = (float)(-0.5 * s / mu->shape[0]);
    if (ew_should_record(g, mu, logvar)) {
        pair_ctx *u = record(g, y, kl_bwd, sizeof *u);
        if (!u) return NULL;
        u->a = mu;
        u->b = logvar;
        u->y = y;
    }
    return y;
}

typedef struct {
    ew_tensor *x, *y;
    int *labels;
    float *prob; /* softmax of the logits */
} ce_ctx;

static void ce_bwd(ew_graph *g, void *c) {
    ce_ctx *u = c;
    float *dy = ew_grad_if_any(u->y);
    if (!dy) return;
    float *dx = ew_tensor_grad(g, u->x);
    if (!dx) return;
    int n = u->x->shape[0], k = u->x->shape[1];
    float s = dy[0] / (float)n;
    for (int r = 0; r < n; r++)
        for (int j = 0; j < k; j++) {
            float p = u->prob[(size_t)r * k + j] - (j == u->labels[r] ? 1.0f : 0.0f);
            dx[(size_t)r * k + j] += s * p;
        }
}

ew_tensor *ew_cross_entropy(ew_graph *g, ew_tensor *logits, const int *labels) {
    NEED(logits);
    if (!labels) return ew_graph_fail(g, "cross_entropy: NULL labels");
    char s1[64];
    if (logits->ndim != 2 || logits->shape[0] < 1 || logits->shape[1] < 1)
        return ew_graph_fail(g, "cross_entropy: logits must be [n, k], got %s", shp(logits, s1));
    int n = logits->shape[0], k = logits->shape[1];
    for (int r = 0; r < n; r++)
        if (labels[r] < 0 || labels[r] >= k) return ew_graph_fail(g, "cross_entropy: label %d out of [0, %d)", labels[r], k);
    ew_tensor *y = ew_tensor_new(g, 0, NULL);
    float *prob = ew_arena_alloc(ew_graph_arena(g), sizeof(float) * (size_t)n * k);
    int *lab = ew_arena_alloc(ew_graph_arena(g), sizeof(int) * (size_t)n);
    if (!y) return NULL;
    if (!prob || !lab) return ew_graph_fail(g, "arena: out of memory");
    double loss = 0.0;
    for (int r = 0; r < n; r++) {
        const float *l = logits->data + (size_t)r * k;
        float m = l[0];
        for (int j = 1; j < k; j++) m = l[j] > m ? l[j] : m;
        double z = 0.0;
        for (int j = 0; j < k; j++) z += exp((double)l[j] - m);
        for (int j = 0; j < k; j++) prob[(size_t)r * k + j] = (float)(exp((double)l[j] - m) / z);
        loss += log(z) + m - l[labels[r]];
        lab[r] = labels[r];
    }
    y->data[0] = (float)(loss / n);
    if (ew_should_record(g, logits, NULL)) {
        ce_ctx *u = record(g, y, ce_bwd, sizeof *u);
        if (!u) return NULL;
        u->x = logits;
        u->y = y;
        u->labels = lab;
        u->prob = prob;
    }
    return y;
}

/* ------------------------------------------------------------------------------------------ */
/* Softmax */

typedef struct {
    ew_tensor *x, *y;
    size_t outer, inner;
    int d;
} softmax_ctx;

static void softmax_bwd(ew_graph *g, void *c) {
    softmax_ctx *u = c;
    float *dy = ew_grad_if_any(u->y);
    if (!dy) return;
    float *dx = ew_tensor_grad(g, u->x);
    if (!dx) return;
    for (size_t o = 0; o < u->outer; o++)
        for (size_t i = 0; i < u->inner; i++) {
            size_t base = o * (size_t)u->d * u->inner + i;
            double dot = 0.0;
            for (int j = 0; j < u->d; j++) dot += (double)dy[base + (size_t)j * u->inner] * u->y->data[base + (size_t)j * u->inner];
            for (int j = 0; j < u->d; j++) {
                size_t p = base + (size_t)j * u->inner;
                dx[p] += u->y->data[p] * (float)(dy[p] - dot);
            }
        }
}

ew_tensor *ew_softmax(ew_graph *g, ew_tensor *x, int dim) {
    NEED(x);
    if (dim < 0 || dim >= x->ndim) return ew_graph_fail(g, "softmax: bad dim %d", dim);
    size_t outer, inner;
    int d;
    split_dim(x, dim, &outer, &d, &inner);
    ew_tensor *y = ew_tensor_new(g, x->ndim, x->shape);
    if (!y) return NULL;
    for (size_t o = 0; o < outer; o++)
        for (size_t i = 0; i < inner; i++) {
            size_t base = o * (size_t)d * inner + i;
            float m = -FLT_MAX;
            for (int j = 0; j < d; j++) m = x->data[base + (size_t)j * inner] > m ? x->data[base + (size_t)j * inner] : m;
            double z = 0.0;
            for (int j = 0; j < d; j++) z += exp((double)x->data[base + (size_t)j * inner] - m);
            for (int j = 0; j < d; j++)
                y->data[base + (size_t)j * inner] = (float)(exp((double)x->data[base + (size_t)j * inner] - m) / z);
        }
    if (ew_should_record(g, x, NULL)) {
        softmax_ctx *u = record(g, y, softmax_bwd, sizeof *u);
        if (!u) return NULL;
        u->x = x;
        u->y = y;
        u->outer = outer;
        u->inner = inner;
        u->d = d;
    }
    return y;
}

ew_tensor *ew_spatial_softmax(ew_graph *g, ew_tensor *x) {
    NEED(x);
    char s1[64];
    if (x->ndim != 4) return ew_graph_fail(g, "spatial_softmax: needs [n,c,h,w], got %s", shp(x, s1));
    int flat[3] = {x->shape[0], x->shape[1], x->shape[2] * x->shape[3]};
    ew_tensor *s = ew_softmax(g, ew_reshape(g, x, 3, flat), 2);
    return ew_reshape(g, s, 4, x->shape);
}

ew_tensor *ew_soft_argmax(ew_graph *g, ew_tensor *x) {
    NEED(x);
    char s1[64];
    if (x->ndim != 4) return ew_graph_fail(g, "soft_argmax: needs [n,c,h,w], got %s", shp(x, s1));
    int n = x->shape[0], c = x->shape[1], h = x->shape[2], w = x->shape[3];
    int gs[2] = {h * w, 2};
    ew_tensor *grid = ew_tensor_new(g, 2, gs);
    if (!grid) return NULL;
    for (int k = 0; k < h * w; k++) {
        grid->data[2 * k] = (float)(k % w);
        grid->data[2 * k + 1] = (float)(k / w);
    }
    int flat[2] = {n * c, h * w};
    ew_tensor *p = ew_reshape(g, ew_spatial_softmax(g, x), 2, flat);
    int out[3] = {n, c, 2};
    return ew_reshape(g, ew_matmul(g, p, grid), 3, out);
}

/* ------------------------------------------------------------------------------------------ */
/* Bilinear sampling */

typedef struct {
    ew_tensor *img, *xy, *y;
} grid_ctx;

/* Corner weights and in-bounds flags for one sample point. */
typedef struct {
    int x0, y0;
    float fx, fy;
} bil;

static inline bil bil_at(float x, float y, int h, int w) {
    bil b;
    /* far outside (or NaN): every corner is outside, the sample is 0 */
    if (!(x >= -2.0f)) x = -2.0f;
    if (!(x <= (float)w + 1.0f)) x = (float)w + 1.0f;
    if (!(y >= -2.0f)) y = -2.0f;
    if (!(y <= (float)h + 1.0f)) y = (float)h + 1.0f;
    float fx0 = floorf(x), fy0 = floorf(y);
    b.x0 = (int)fx0;
    b.y0 = (int)fy0;
    b.fx = x - fx0;
    b.fy = y - fy0;
    return b;
}

static inline float pix(const float *m, int h, int w, int yy, int xx) {
    return (yy >= 0 && yy < h && xx >= 0 && xx < w) ? m[(size_t)yy * w + xx] : 0.0f;
}

static void grid_bwd(ew_graph *g, void *c) {
    grid_ctx *u = c;
    float *dy = ew_grad_if_any(u->y);
    if (!dy) return;
    const ew_tensor *im = u->img;
    int n = im->shape[0], ch = im->shape[1], h = im->shape[2], w = im->shape[3], P = u->xy->shape[1];
    float *dimg = im->requires_grad ? ew_tensor_grad(g, u->img) : NULL;
    float *dxy = u->xy->requires_grad ? ew_tensor_grad(g, u->xy) : NULL;
    if (ew_graph_error(g)) return;
    for (int b = 0; b < n; b++)
        for (int p = 0; p < P; p++) {
            const float *q = u->xy->data + ((size_t)b * P + p) * 2;
            bil k = bil_at(q[0], q[1], h, w);
            float gx = 0.0f, gy = 0.0f;
            for (int cc = 0; cc < ch; cc++) {
                size_t mo = ((size_t)b * ch + cc) * (size_t)h * w;
                const float *m = im->data + mo;
                float gv = dy[((size_t)b * ch + cc) * P + p];
                if (gv == 0.0f) continue;
                if (dxy) {
                    float v00 = pix(m, h, w, k.y0, k.x0), v10 = pix(m, h, w, k.y0, k.x0 + 1);
                    float v01 = pix(m, h, w, k.y0 + 1, k.x0), v11 = pix(m, h, w, k.y0 + 1, k.x0 + 1);
                    gx += gv * ((1.0f - k.fy) * (v10 - v00) + k.fy * (v11 - v01));
                    gy += gv * ((1.0f - k.fx) * (v01 - v00) + k.fx * (v11 - v10));
                }
                if (dimg) {
                    float *dm = dimg + mo;
                    float wts[4] = {(1.0f - k.fx) * (1.0f - k.fy), k.fx * (1.0f - k.fy), (1.0f - k.fx) * k.fy, k.fx * k.fy};
                    for (int t = 0; t < 4; t++) {
                        int yy = k.y0 + (t >> 1), xx = k.x0 + (t & 1);
                        if (yy >= 0 && yy < h && xx >= 0 && xx < w) dm[(size_t)yy * w + xx] += gv * wts[t];
                    }
                }
            }
            if (dxy) {
                dxy[((size_t)b * P + p) * 2] += gx;
                dxy[((size_t)b * P + p) * 2 + 1] += gy;
            }
        }
}

ew_tensor *ew_grid_sample(ew_graph *g, ew_tensor *img, ew_tensor *xy) {
    NEED(img);
    NEED(xy);
    char s1[64], s2[64];
    if (img->ndim != 4 || xy->ndim != 3 || xy->shape[2] != 2 || xy->shape[0] != img->shape[0])
        return ew_graph_fail(g, "grid_sample: img %s, xy %s (want [n,c,h,w], [n,p,2])", shp(img, s1), shp(xy, s2));
    int n = img->shape[0], ch = img->shape[1], h = img->shape[2], w = img->shape[3], P = xy->shape[1];
    int shape[3] = {n, ch, P};
    ew_tensor *y = ew_tensor_new(g, 3, shape);
    if (!y) return NULL;
    for (int b = 0; b < n; b++)
        for (int p = 0; p < P; p++) {
            const float *q = xy->data + ((size_t)b * P + p) * 2;
            bil k = bil_at(q[0], q[1], h, w);
            for (int cc = 0; cc < ch; cc++) {
                const float *m = img->data + ((size_t)b * ch + cc) * (size_t)h * w;
                float v = (1.0f - k.fx) * (1.0f - k.fy) * pix(m, h, w, k.y0, k.x0) +
                          k.fx * (1.0f - k.fy) * pix(m, h, w, k.y0, k.x0 + 1) +
                          (1.0f - k.fx) * k.fy * pix(m, h, w, k.y0 + 1, k.x0) +
                          k.fx * k.fy * pix(m, h, w, k.y0 + 1, k.x0 + 1);
                y->data[((size_t)b * ch + cc) * P + p] = v;
            }
        }
    if (ew_should_record(g, img, xy)) {
        grid_ctx *u = record(g, y, grid_bwd, sizeof *u);
        if (!u) return NULL;
        u->img = img;
        u->xy = xy;
        u->y = y;
    }
    return y;
}
