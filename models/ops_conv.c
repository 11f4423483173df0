/* ops_conv.c - matmul, linear, conv2d and transposed conv2d (forward + backward pairs), all
 * on the backend's gemm and conv kernels. */
#include <string.h>

#include "models/ops.h"

#define NEED(x)                                                             \
    do {                                                                    \
        if (!(x)) return ew_graph_fail(g, "%s: NULL input", __func__);      \
    } while (0)

static void *record(ew_graph *g, ew_tensor *y, ew_backward_fn fn, size_t bytes) {
    void *ctx = ew_tape_push(g, fn, bytes);
    if (ctx) y->requires_grad = 1;
    return ctx;
}

/* ------------------------------------------------------------------------------------------ */

typedef struct {
    ew_tensor *a, *b, *y;
} mm_ctx;

static void matmul_bwd(ew_graph *g, void *c) {
    mm_ctx *u = c;
    float *dy = ew_grad_if_any(u->y);
    if (!dy) return;
    const ew_backend *be = ew_graph_backend(g);
    int m = u->a->shape[0], k = u->a->shape[1], n = u->b->shape[1];
    if (u->a->requires_grad) {
        int fresh;
        float *da = ew_tensor_grad_w(g, u->a, &fresh);
        if (!da) return;
        be->gemm(be, 0, 1, m, k, n, 1.0f, dy, n, u->b->data, n, fresh ? 0.0f : 1.0f, da, k);
    }
    if (u->b->requires_grad) {
        float *db = ew_tensor_grad(g, u->b);
        if (!db) return;
        be->gemm(be, 1, 0, k, n, m, 1.0f, u->a->data, k, dy, n, 1.0f, db, n);
    }
}

ew_tensor *ew_matmul(ew_graph *g, ew_tensor *a, ew_tensor *b) {
    NEED(a);
    NEED(b);
    char s1[64], s2[64];
    if (a->ndim != 2 || b->ndim != 2 || a->shape[1] != b->shape[0]) {
        ew_shape_str(a, s1, sizeof s1);
        ew_shape_str(b, s2, sizeof s2);
        return ew_graph_fail(g, "matmul: %s x %s", s1, s2);
    }
    int m = a->shape[0], k = a->shape[1], n = b->shape[1];
    int shape[2] = {m, n};
    ew_tensor *y = ew_tensor_new(g, 2, shape);
    if (!y) return NULL;
    const ew_backend *be = ew_graph_backend(g);
    be->gemm(be, 0, 0, m, n, k, 1.0f, a->data, k, b->data, n, 0.0f, y->data, n);
    if (ew_should_record(g, a, b)) {
        mm_ctx *u = record(g, y, matmul_bwd, sizeof *u);
        if (!u) return NULL;
        u->a = a;
        u->b = b;
        u->y = y;
    }
    return y;
}

/* ------------------------------------------------------------------------------------------ */

typedef struct {
    ew_tensor *x, *w, *b, *y;
    int m, in, out;
} linear_ctx;

static void linear_bwd(ew_graph *g, void *c) {
    linear_ctx *u = c;
    float *dy = ew_grad_if_any(u->y);
    if (!dy) return;
    const ew_backend *be = ew_graph_backend(g);
    if (u->x->requires_grad) {
        int fresh;
        float *dx = ew_tensor_grad_w(g, u->x, &fresh);
        if (!dx) return;
        be->gemm(be, 0, 0, u->m, u->in, u->out, 1.0f, dy, u->out, u->w->data, u->in, fresh ? 0.0f : 1.0f, dx, u->in);
    }
    if (u->w->requires_grad) {
        float *dw = ew_tensor_grad(g, u->w);
        if (!dw) return;
        be->gemm(be, 1, 0, u->out, u->in, u->m, 1.0f, dy, u->out, u->x->data, u->in, 1.0f, dw, u->in);
    }
    if (u->b && u->b->requires_grad) {
        float *db = ew_tensor_grad(g, u->b);
        if (!db) return;
        be->sum_channels(be, u->m, u->out, 1, dy, db, 1);
    }
}

ew_tensor *ew_linear(ew_graph *g, ew_tensor *x, ew_tensor *w, ew_tensor *b) {
    NEED(x);
    NEED(w);
    char s1[64], s2[64];
    ew_shape_str(x, s1, sizeof s1);
    ew_shape_str(w, s2, sizeof s2);
    if (x->ndim < 1 || w->ndim != 2 || x->shape[x->ndim - 1] != w->shape[1])
        return ew_graph_fail(g, "linear: x %s, w %s (want [..., in], [out, in])", s1, s2);
    int out = w->shape[0], in = w->shape[1];
    if (b && (b->ndim != 1 || b->shape[0] != out)) return ew_graph_fail(g, "linear: bias must be [%d]", out);
    int m = (int)(ew_numel(x) / (size_t)(in ? in : 1));
    int shape[EW_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) shape[i] = x->shape[i];
    shape[x->ndim - 1] = out;
    ew_tensor *y = ew_tensor_new(g, x->ndim, shape);
    if (!y) return NULL;
    const ew_backend *be = ew_graph_backend(g);
    be->gemm(be, 0, 1, m, out, in, 1.0f, x->data, in, w->data, in, 0.0f, y->data, out);
    if (b && be->add_channels)
        be->add_channels(be, m, out, 1, b->data, y->data);
    else if (b)
        for (int r = 0; r < m; r++) {
            float *yr = y->data + (size_t)r * out;
            for (int j = 0; j < out; j++) yr[j] += b->data[j];
        }
    if (ew_should_record(g, x, w) || (b && ew_should_record(g, b, NULL))) {
        linear_ctx *u = record(g, y, linear_bwd, sizeof *u);
        if (!u) return NULL;
        u->x = x;
        u->w = w;
        u->b = b;
        u->y = y;
        u->m = m;
        u->in = in;
        u->out = out;
    }
    return y;
}

/* ------------------------------------------------------------------------------------------ */

typedef struct {
    ew_tensor *x, *w, *b, *y;
    ew_conv_desc d;
    int transposed;
} conv_ctx;

static float *conv_ws(ew_graph *g, const ew_conv_desc *d) {
    const ew_backend *be = ew_graph_backend(g);
    return ew_graph_scratch(g, be->conv_workspace(be, d));
}

static void add_channel_bias(float *y, const float *b, int n, int c, size_t inner) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < c; j++) {
            float *p = y + ((size_t)i * c + j) * inner;
            float bj = b[j];
            for (size_t k = 0; k < inner; k++) p[k] += bj;
        }
}

static void conv_bwd(ew_graph *g, void *c) {
    conv_ctx *u = c;
    float *dy = ew_grad_if_any(u->y);
    if (!dy) return;
    const ew_backend *be = ew_graph_backend(g);
    const ew_conv_desc *d = &u->d;
    float *ws = conv_ws(g, d);
    if (!ws) return;
    if (!u->transposed) {
        /* y = conv(x) */
        if (u->x->requires_grad) {
            int fresh;
            float *dx = ew_tensor_grad_w(g, u->x, &fresh);
            if (!dx) return;
            be->conv_bwd_data(be, d, dy, u->w->data, dx, !fresh, ws);
        }
        if (u->w->requires_grad) {
            float *dw = ew_tensor_grad(g, u->w);
            if (!dw) return;
            be->conv_bwd_weight(be, d, u->x->data, dy, dw, ws);
        }
        if (u->b && u->b->requires_grad) {
            float *db = ew_tensor_grad(g, u->b);
            if (!db) return;
            be->sum_channels(be, d->n, d->oc, d->oh * d->ow, dy, db, 1);
        }
    } else {
        /* y = conv_bwd_data(x): the conv runs from y's space (c, h, w) to x's (oc, oh, ow) */
        if (u->x->requires_grad) {
            int fresh;
            float *dx = ew_tensor_grad_w(g, u->x, &fresh);
            if (!dx) return;
            be->conv_fwd(be, d, dy, u->w->data, NULL, dx, !fresh, ws);
        }
        if (u->w->requires_grad) {
            float *dw = ew_tensor_grad(g, u->w);
            if (!dw) return;
            be->conv_bwd_weight(be, d, dy, u->x->data, dw, ws);
        }
        if (u->b && u->b->requires_grad) {
            float *db = ew_tensor_grad(g, u->b);
            if (!db) return;
            be->sum_channels(be, d->n, d->c, d->h * d->w, dy, db, 1);
        }
    }
}

static ew_tensor *conv_common(ew_graph *g, ew_tensor *x, ew_tensor *w, ew_tensor *b,
                              const ew_conv_opts *o, int transposed) {
    const char *name = transposed ? "conv_transpose2d" : "conv2d";
    NEED(x);
    NEED(w);
    if (!o) return ew_graph_fail(g, "%s: NULL options", name);
    char s1[64], s2[64];
    ew_shape_str(x, s1, sizeof s1);
    ew_shape_str(w, s2, sizeof s2);
    if (x->ndim != 4 || w->ndim != 4 || x->shape[1] != w->shape[0 + (transposed ? 0 : 1)])
        return ew_graph_fail(g, "%s: x %s, w %s: channel mismatch or not 4-d", name, s1, s2);
    int sh = o->stride[0], sw = o->stride[1], ph = o->pad[0], pw = o->pad[1];
    int kh = w->shape[2], kw = w->shape[3];
    if (sh < 1 || sw < 1 || ph < 0 || pw < 0 || kh < 1 || kw < 1)
        return ew_graph_fail(g, "%s: bad stride/padding/kernel", name);
    ew_conv_desc d;
    int out_c;
    int oh, ow;
    if (!transposed) {
        if (o->out_pad[0] || o->out_pad[1]) return ew_graph_fail(g, "conv2d: output padding is for transposed convs");
        oh = (x->shape[2] + 2 * ph - kh) / sh + 1;
        ow = (x->shape[3] + 2 * pw - kw) / sw + 1;
        if (x->shape[2] + 2 * ph < kh || x->shape[3] + 2 * pw < kw || oh < 1 || ow < 1)
            return ew_graph_fail(g, "conv2d: kernel %dx%d larger than padded input %s", kh, kw, s1);
        out_c = w->shape[0];
        d = (ew_conv_desc){x->shape[0], x->shape[1], x->shape[2], x->shape[3], out_c, oh, ow, kh, kw, sh, sw, ph, pw};
    } else {
        int oph = o->out_pad[0], opw = o->out_pad[1];
        if (oph < 0 || opw < 0 || oph >= sh || opw >= sw)
            return ew_graph_fail(g, "conv_transpose2d: output padding must be in [0, stride)");
        oh = (x->shape[2] - 1) * sh - 2 * ph + kh + oph;
        ow = (x->shape[3] - 1) * sw - 2 * pw + kw + opw;
        if (oh < 1 || ow < 1) return ew_graph_fail(g, "conv_transpose2d: empty output for %s", s1);
        out_c = w->shape[1];
        /* the equivalent forward conv maps (out_c, oh, ow) -> (ic, h, w) */
        d = (ew_conv_desc){x->shape[0], out_c, oh, ow, x->shape[1], x->shape[2], x->shape[3], kh, kw, sh, sw, ph, pw};
        if ((oh + 2 * ph - kh) / sh + 1 != x->shape[2] || (ow + 2 * pw - kw) / sw + 1 != x->shape[3])
            return ew_graph_fail(g, "conv_transpose2d: padding too large for %s", s1);
    }
    if (b && (b->ndim != 1 || b->shape[0] != out_c)) return ew_graph_fail(g, "%s: bias must be [%d]", name, out_c);
    int shape[4] = {x->shape[0], out_c, oh, ow};
    ew_tensor *y = ew_tensor_new(g, 4, shape);
    if (!y) return NULL;
    float *ws = conv_ws(g, &d);
    if (!ws) return NULL;
    const ew_backend *be = ew_graph_backend(g);
    if (!transposed) {
        be->conv_fwd(be, &d, x->data, w->data, b ? b->data : NULL, y->data, 0, ws);
    } else {
        be->conv_bwd_data(be, &d, x->data, w->data, y->data, 0, ws);
        if (b && be->add_channels)
            be->add_channels(be, shape[0], out_c, (size_t)oh * ow, b->data, y->data);
        else if (b)
            add_channel_bias(y->data, b->data, shape[0], out_c, (size_t)oh * ow);
    }
    if (ew_should_record(g, x, w) || (b && ew_should_record(g, b, NULL))) {
        conv_ctx *u = record(g, y, conv_bwd, sizeof *u);
        if (!u) return NULL;
        u->x = x;
        u->w = w;
        u->b = b;
        u->y = y;
        u->d = d;
        u->transposed = transposed;
    }
    return y;
}

ew_tensor *ew_conv2d(ew_graph *g, ew_tensor *x, ew_tensor *w, ew_tensor *b, const ew_conv_opts *o) {
    return conv_common(g, x, w, b, o, 0);
}

ew_tensor *ew_conv_transpose2d(ew_graph *g, ew_tensor *x, ew_tensor *w, ew_tensor *b,
                               const ew_conv_opts *o) {
    return conv_common(g, x, w, b, o, 1);
}
