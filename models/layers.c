/* layers.c - parameter-owning layers. */
#include "models/layers.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(char *err, size_t errsz, const char *msg, const char *name) {
    if (err && errsz) snprintf(err, errsz, "%s: %s", name ? name : "layer", msg);
    return -1;
}

int ew_param_list_add(ew_param_list *pl, const ew_param *p) {
    if (pl->n == pl->cap) {
        int cap = pl->cap ? 2 * pl->cap : 16;
        ew_param *it = realloc(pl->items, sizeof(ew_param) * (size_t)cap);
        if (!it) return -1;
        pl->items = it;
        pl->cap = cap;
    }
    pl->items[pl->n++] = *p;
    return 0;
}

void ew_param_list_free(ew_param_list *pl) {
    free(pl->items);
    pl->items = NULL;
    pl->n = pl->cap = 0;
}

size_t ew_param_list_numel(const ew_param_list *pl) {
    size_t s = 0;
    for (int i = 0; i < pl->n; i++) s += ew_param_numel(&pl->items[i]);
    return s;
}

/* Sets up a param view; returns -1 if the name does not fit. */
static int param_view(ew_param *p, const char *prefix, const char *leaf, int ndim, const int *shape,
                      float *data, float *grad) {
    memset(p, 0, sizeof *p);
    int len = snprintf(p->name, sizeof p->name, "%s.%s", prefix, leaf);
    if (len < 0 || (size_t)len >= sizeof p->name) return -1;
    p->ndim = ndim;
    for (int i = 0; i < ndim; i++) p->shape[i] = shape[i];
    p->data = data;
    p->grad = grad;
    return 0;
}

static void uniform_fill(float *v, size_t n, float bound, ew_rng *r) {
    for (size_t i = 0; i < n; i++) v[i] = (float)ew_rng_range(r, -bound, bound);
}

/* One block: weight data, bias data, weight grad, bias grad (grads zeroed). */
static float *alloc_block(size_t wn, size_t bn) {
    size_t n = 2 * (wn + bn);
    return calloc(n ? n : 1, sizeof(float));
}

/* ------------------------------------------------------------------------------------------ */

int ew_linear_layer_init(ew_linear_layer *l, const char *name, int in, int out, int bias,
                         uint64_t seed, char *err, size_t errsz) {
    memset(l, 0, sizeof *l);
    if (!name) return fail(err, errsz, "NULL name", NULL);
    if (in < 1 || out < 1) return fail(err, errsz, "sizes must be >= 1", name);
    size_t wn = (size_t)in * out, bn = bias ? (size_t)out : 0;
    float *mem = alloc_block(wn, bn);
    if (!mem) return fail(err, errsz, "out of memory", name);
    int ws[2] = {out, in}, bs[1] = {out};
    if (param_view(&l->weight, name, "weight", 2, ws, mem, mem + wn + bn) ||
        (bias && param_view(&l->bias, name, "bias", 1, bs, mem + wn, mem + 2 * wn + bn))) {
        free(mem);
        memset(l, 0, sizeof *l);
        return fail(err, errsz, "name too long", name);
    }
    l->in = in;
    l->out = out;
    l->has_bias = bias ? 1 : 0;
    l->mem = mem;
    ew_rng r;
    ew_rng_seed(&r, seed);
    float bound = 1.0f / sqrtf((float)in);
    uniform_fill(mem, wn, bound, &r);
    uniform_fill(mem + wn, bn, bound, &r);
    return 0;
}

static void block_release(float *mem, const ew_allocator *al) {
    if (!mem) return;
    if (al->free)
        al->free(al->ctx, mem);
    else
        free(mem);
}

/* Copies the block (floats of them) behind w and b (b may be unused) into al's memory. */
static int block_move(float **mem, ew_allocator *cur, size_t floats, ew_param *w, ew_param *b, int has_b,
                      const ew_allocator *al) {
    if (!*mem) return -1;
    size_t bytes = (floats ? floats : 1) * sizeof(float);
    float *nm = al->alloc ? al->alloc(al->ctx, bytes) : calloc(floats ? floats : 1, sizeof(float));
    if (!nm) return -1;
    memcpy(nm, *mem, bytes);
    w->data = nm + (w->data - *mem);
    w->grad = nm + (w->grad - *mem);
    if (has_b) {
        b->data = nm + (b->data - *mem);
        b->grad = nm + (b->grad - *mem);
    }
    block_release(*mem, cur);
    *mem = nm;
    *cur = *al;
    return 0;
}

int ew_linear_layer_move(ew_linear_layer *l, const ew_allocator *al) {
    size_t n = 2 * ((size_t)l->in * l->out + (l->has_bias ? (size_t)l->out : 0));
    return block_move(&l->mem, &l->al, n, &l->weight, &l->bias, l->has_bias, al);
}

int ew_conv_layer_move(ew_conv_layer *l, const ew_allocator *al) {
    size_t n = 2 * ((size_t)l->ic * l->oc * l->kh * l->kw + (l->has_bias ? (size_t)l->oc : 0));
    return block_move(&l->mem, &l->al, n, &l->weight, &l->bias, l->has_bias, al);
}

int ew_mlp_move(ew_mlp *m, const ew_allocator *al) {
    for (int i = 0; i < m->nlayers; i++)
        if (ew_linear_layer_move(&m->layers[i], al)) return -1;
    return 0;
}

void ew_linear_layer_free(ew_linear_layer *l) {
    block_release(l->mem, &l->al);
    memset(l, 0, sizeof *l);
}

ew_tensor *ew_linear_layer_fwd(ew_graph *g, const ew_linear_layer *l, ew_tensor *x) {
    ew_tensor *w = ew_param_tensor(g, &l->weight);
    ew_tensor *b = l->has_bias ? ew_param_tensor(g, &l->bias) : NULL;
    if (!w || (l->has_bias && !b)) return NULL;
    return ew_linear(g, x, w, b);
}

int ew_linear_layer_params(const ew_linear_layer *l, ew_param_list *out) {
    if (ew_param_list_add(out, &l->weight)) return -1;
    if (l->has_bias && ew_param_list_add(out, &l->bias)) return -1;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */

static int conv_init(ew_conv_layer *l, const char *name, int transposed, int ic, int oc, int kh,
                     int kw, const ew_conv_opts *o, int bias, uint64_t seed, char *err, size_t errsz) {
    memset(l, 0, sizeof *l);
    if (!name) return fail(err, errsz, "NULL name", NULL);
    if (!o) return fail(err, errsz, "NULL options", name);
    if (ic < 1 || oc < 1 || kh < 1 || kw < 1) return fail(err, errsz, "sizes must be >= 1", name);
    if (o->stride[0] < 1 || o->stride[1] < 1 || o->pad[0] < 0 || o->pad[1] < 0)
        return fail(err, errsz, "stride must be >= 1 and padding >= 0", name);
    if (!transposed && (o->out_pad[0] || o->out_pad[1]))
        return fail(err, errsz, "output padding is for transposed convolutions", name);
    if (transposed && (o->out_pad[0] < 0 || o->out_pad[1] < 0 || o->out_pad[0] >= o->stride[0] ||
                       o->out_pad[1] >= o->stride[1]))
        return fail(err, errsz, "output padding must be in [0, stride)", name);
    size_t wn = (size_t)ic * oc * kh * kw, bn = bias ? (size_t)oc : 0;
    float *mem = alloc_block(wn, bn);
    if (!mem) return fail(err, errsz, "out of memory", name);
    int ws[4] = {transposed ? ic : oc, transposed ? oc : ic, kh, kw}, bs[1] = {oc};
    if (param_view(&l->weight, name, "weight", 4, ws, mem, mem + wn + bn) ||
        (bias && param_view(&l->bias, name, "bias", 1, bs, mem + wn, mem + 2 * wn + bn))) {
        free(mem);
        memset(l, 0, sizeof *l);
        return fail(err, errsz, "name too long", name);
    }
    l->transposed = transposed;
    l->ic = ic;
    l->oc = oc;
    l->kh = kh;
    l->kw = kw;
    l->has_bias = bias ? 1 : 0;
    l->opts = *o;
    l->mem = mem;
    ew_rng r;
    ew_rng_seed(&r, seed);
    int fan_in = (transposed ? oc : ic) * kh * kw;
    float bound = 1.0f / sqrtf((float)fan_in);
    uniform_fill(mem, wn, bound, &r);
    uniform_fill(mem + wn, bn, bound, &r);
    return 0;
}

int ew_conv2d_layer_init(ew_conv_layer *l, const char *name, int ic, int oc, int kh, int kw,
                         const ew_conv_opts *o, int bias, uint64_t seed, char *err, size_t errsz) {
    return conv_init(l, name, 0, ic, oc, kh, kw, o, bias, seed, err, errsz);
}

int ew_conv_transpose2d_layer_init(ew_conv_layer *l, const char *name, int ic, int oc, int kh,
                                   int kw, const ew_conv_opts *o, int bias, uint64_t seed,
                                   char *err, size_t errsz) {
    return conv_init(l, name, 1, ic, oc, kh, kw, o, bias, seed, err, errsz);
}

void ew_conv_layer_free(ew_conv_layer *l) {
    block_release(l->mem, &l->al);
    memset(l, 0, sizeof *l);
}

ew_tensor *ew_conv_layer_fwd(ew_graph *g, const ew_conv_layer *l, ew_tensor *x) {
    ew_tensor *w = ew_param_tensor(g, &l->weight);
    ew_tensor *b = l->has_bias ? ew_param_tensor(g, &l->bias) : NULL;
    if (!w || (l->has_bias && !b)) return NULL;
    return l->transposed ? ew_conv_transpose2d(g, x, w, b, &l->opts) : ew_conv2d(g, x, w, b, &l->opts);
}

int ew_conv_layer_params(const ew_conv_layer *l, ew_param_list *out) {
    if (ew_param_list_add(out, &l->weight)) return -1;
    if (l->has_bias && ew_param_list_add(out, &l->bias)) return -1;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */

int ew_mlp_init(ew_mlp *m, const char *name, int nlayers, const int *sizes, float slope,
                uint64_t seed, char *err, size_t errsz) {
    memset(m, 0, sizeof *m);
    if (!name || !sizes) return fail(err, errsz, "NULL name or sizes", name);
    if (nlayers < 1) return fail(err, errsz, "needs at least one layer", name);
    m->layers = calloc((size_t)nlayers, sizeof *m->layers);
    if (!m->layers) return fail(err, errsz, "out of memory", name);
    ew_rng r;
    ew_rng_seed(&r, seed);
    for (int i = 0; i < nlayers; i++) {
        char sub[EW_PARAM_NAME_MAX];
        int len = snprintf(sub, sizeof sub, "%s.%d", name, i);
        int rc = (len < 0 || (size_t)len >= sizeof sub)
                     ? fail(err, errsz, "name too long", name)
                     : ew_linear_layer_init(&m->layers[i], sub, sizes[i], sizes[i + 1], 1, ew_rng_u64(&r), err, errsz);
        if (rc) {
            for (int j = 0; j < i; j++) ew_linear_layer_free(&m->layers[j]);
            free(m->layers);
            memset(m, 0, sizeof *m);
            return -1;
        }
    }
    m->nlayers = nlayers;
    m->slope = slope;
    return 0;
}

void ew_mlp_free(ew_mlp *m) {
    for (int i = 0; i < m->nlayers; i++) ew_linear_layer_free(&m->layers[i]);
    free(m->layers);
    memset(m, 0, sizeof *m);
}

ew_tensor *ew_mlp_fwd(ew_graph *g, const ew_mlp *m, ew_tensor *x) {
    for (int i = 0; i < m->nlayers; i++) {
        x = ew_linear_layer_fwd(g, &m->layers[i], x);
        if (i + 1 < m->nlayers) x = m->slope != 0.0f ? ew_leaky_relu(g, x, m->slope) : ew_relu(g, x);
    }
    return x;
}

int ew_mlp_params(const ew_mlp *m, ew_param_list *out) {
    for (int i = 0; i < m->nlayers; i++)
        if (ew_linear_layer_params(&m->layers[i], out)) return -1;
    return 0;
}
