/* optim.c - see optim.h. */
#include "models/optim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define EW_PAR_MIN 32768      /* elements below which a loop stays on one thread */
#define EW_RED_PARTS 64       /* fixed split of a reduction (independent of thread count) */
#define EW_RED_MIN_PART 4096

struct ew_optim {
    ew_optim_config cfg;
    int n;
    ew_param *params;   /* copies of the caller's views */
    float **m, **v;     /* Adam family: moments; SGD: m = momentum buffer; NULL when unused */
    ew_param *state;    /* views of m/v for checkpoints */
    int nstate;
    float *scratch;     /* SING: transformed gradient of one tensor */
    double *rowsq;      /* SING: per output channel sum of squares */
    float *rowmean;     /* SING: per output channel mean */
    long t;
    int simd;           /* the processor has AVX-512F: the vector Adam update */
    ew_optim_reduce_fn reduce; /* data-parallel gradient reducer (NULL: none) */
    void *reduce_ctx;
    float *pack;        /* every grad, packed, for the reducer */
    size_t pack_n;
    int reduced;        /* the grads were reduced since the last zero_grad / step */
    const ew_backend *be; /* device backend running the update (ew_optim_use_backend), or NULL */
};

ew_optim_config ew_optim_defaults(ew_optim_kind kind) {
    ew_optim_config c;
    memset(&c, 0, sizeof c);
    c.kind = kind;
    c.lr = kind == EW_OPTIM_SGD ? 1e-2f : 1e-3f;
    c.momentum = kind == EW_OPTIM_SGD ? 0.9f : 0.0f;
    c.nesterov = 0;
    c.beta1 = 0.9f;
    c.beta2 = 0.999f;
    c.eps = 1e-8f;
    c.weight_decay = (kind == EW_OPTIM_ADAMW || kind == EW_OPTIM_SING) ? 1e-2f : 0.0f;
    c.decay_all_dims = 0;
    return c;
}

static int have_avx512(void);

static int uses_adam(ew_optim_kind k) { return k == EW_OPTIM_ADAM || k == EW_OPTIM_ADAMW || k == EW_OPTIM_SING; }

void ew_optim_free(ew_optim *o) {
    if (!o) return;
    for (int i = 0; i < o->n; i++) {
        if (o->be) { /* moments in device memory */
            if (o->m && o->m[i]) o->be->mem_free(o->be, o->m[i]);
            if (o->v && o->v[i]) o->be->mem_free(o->be, o->v[i]);
            continue;
        }
        if (o->m) free(o->m[i]);
        if (o->v) free(o->v[i]);
    }
    free(o->m);
    free(o->v);
    free(o->state);
    free(o->params);
    free(o->scratch);
    free(o->rowsq);
    free(o->rowmean);
    free(o->pack);
    free(o);
}

static int add_state(ew_optim *o, const ew_param *p, const char *what, float *buf, char *err, size_t errsz) {
    ew_param *s = &o->state[o->nstate];
    memset(s, 0, sizeof *s);
    int w = snprintf(s->name, sizeof s->name, "%s%s.%s", EW_OPTIM_STATE_PREFIX, what, p->name);
    if (w < 0 || (size_t)w >= sizeof s->name) {
        snprintf(err, errsz, "optimizer: state name \"%s%s.%s\" is longer than %d bytes",
                 EW_OPTIM_STATE_PREFIX, what, p->name, EW_PARAM_NAME_MAX - 1);
        return -1;
    }
    s->ndim = p->ndim;
    memcpy(s->shape, p->shape, sizeof s->shape);
    s->data = buf;
    s->grad = NULL;
    o->nstate++;
    return 0;
}

int ew_optim_create(const ew_param *params, int nparams, const ew_optim_config *cfg, ew_optim **out,
                    char *err, size_t errsz) {
    char dummy[8];
    if (!err) {
        err = dummy;
        errsz = sizeof dummy;
    }
    if (out) *out = NULL;
    if (!out || !cfg || nparams < 0 || (nparams > 0 && !params)) {
        snprintf(err, errsz, "optimizer: invalid arguments");
        return -1;
    }
    const ew_optim_config *c = cfg;
    if (c->kind < EW_OPTIM_SGD || c->kind > EW_OPTIM_SING) {
        snprintf(err, errsz, "optimizer: unknown kind %d", (int)c->kind);
        return -1;
    }
    if (!(c->lr >= 0.0f) || !isfinite(c->lr) || !(c->weight_decay >= 0.0f) || !isfinite(c->weight_decay)) {
        snprintf(err, errsz, "optimizer: lr (%g) and weight_decay (%g) must be finite and >= 0",
                 (double)c->lr, (double)c->weight_decay);
        return -1;
    }
    if (c->kind == EW_OPTIM_SGD) {
        if (!(c->momentum >= 0.0f && c->momentum < 1.0f)) {
            snprintf(err, errsz, "optimizer: momentum %g outside [0, 1)", (double)c->momentum);
            return -1;
        }
        if (c->nesterov && c->momentum == 0.0f) {
            snprintf(err, errsz, "optimizer: Nesterov needs momentum > 0");
            return -1;
        }
    } else {
        if (!(c->beta1 >= 0.0f && c->beta1 < 1.0f) || !(c->beta2 >= 0.0f && c->beta2 < 1.0f) ||
            !(c->eps > 0.0f) || !isfinite(c->eps)) {
            snprintf(err, errsz, "optimizer: betas (%g, %g) must be in [0, 1) and eps (%g) > 0",
                     (double)c->beta1, (double)c->beta2, (double)c->eps);
            return -1;
        }
    }
    size_t max_numel = 0, max_rows = 0;
    for (int i = 0; i < nparams; i++) {
        const ew_param *p = &params[i];
        if (p->ndim < 1 || p->ndim > EW_PARAM_MAX_DIMS || !p->data ||
            memchr(p->name, '\0', sizeof p->name) == NULL) {
            snprintf(err, errsz, "optimizer: param %d has ndim %d (want 1..%d), %s data or an unterminated name",
                     i, p->ndim, EW_PARAM_MAX_DIMS, p->data ? "some" : "NULL");
            return -1;
        }
        for (int d = 0; d < p->ndim; d++) {
            if (p->shape[d] <= 0) {
                snprintf(err, errsz, "optimizer: param \"%s\" has dimension %d of size %d", p->name, d, p->shape[d]);
                return -1;
            }
        }
        for (int j = 0; j < i; j++) {
            if (strcmp(params[j].name, p->name) == 0) {
                snprintf(err, errsz, "optimizer: duplicate param name \"%s\"", p->name);
                return -1;
            }
        }
        size_t ne = ew_param_numel(p);
        if (ne > max_numel) max_numel = ne;
        if ((size_t)p->shape[0] > max_rows) max_rows = (size_t)p->shape[0];
    }
    ew_optim *o = calloc(1, sizeof *o);
    if (!o) goto oom;
    o->cfg = *c;
    o->n = nparams;
    o->simd = have_avx512();
    o->params = calloc(nparams ? (size_t)nparams : 1, sizeof *o->params);
    o->m = calloc(nparams ? (size_t)nparams : 1, sizeof *o->m);
    o->v = calloc(nparams ? (size_t)nparams : 1, sizeof *o->v);
    o->state = calloc(nparams ? 2 * (size_t)nparams : 1, sizeof *o->state);
    if (!o->params || !o->m || !o->v || !o->state) goto oom;
    if (nparams) memcpy(o->params, params, (size_t)nparams * sizeof *params);
    int need_m = uses_adam(c->kind) || c->momentum > 0.0f;
    for (int i = 0; i < nparams; i++) {
        const ew_param *p = &o->params[i];
        if (!p->grad) continue;
        size_t ne = ew_param_numel(p);
        if (need_m) {
            if (!(o->m[i] = calloc(ne, sizeof(float)))) goto oom;
            if (add_state(o, p, uses_adam(c->kind) ? "m" : "momentum", o->m[i], err, errsz)) goto fail;
        }
        if (uses_adam(c->kind)) {
            if (!(o->v[i] = calloc(ne, sizeof(float)))) goto oom;
            if (add_state(o, p, "v", o->v[i], err, errsz)) goto fail;
        }
    }
    if (c->kind == EW_OPTIM_SING && nparams) {
        o->scratch = malloc((max_numel ? max_numel : 1) * sizeof(float));
        o->rowsq = malloc((max_rows ? max_rows : 1) * sizeof(double));
        o->rowmean = malloc((max_rows ? max_rows : 1) * sizeof(float));
        if (!o->scratch || !o->rowsq || !o->rowmean) goto oom;
    }
    *out = o;
    return 0;
oom:
    snprintf(err, errsz, "optimizer: out of memory");
fail:
    ew_optim_free(o);
    return -1;
}

/* Sums in double over 8 fixed interleaved lanes (vectorisable, order fixed by n alone). */
static double sum_lanes(const float *x, size_t n) {
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) acc[l] += (double)x[i + (size_t)l];
    double s = 0.0;
    for (; i < n; i++) s += (double)x[i];
    for (int l = 0; l < 8; l++) s += acc[l];
    return s;
}

/* Sum of (x - mean)^2, the difference rounded to float first, in double over 8 lanes. */
static double sumsq_centred_lanes(const float *x, size_t n, float mean) {
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        for (int l = 0; l < 8; l++) {
            double c = (double)(x[i + (size_t)l] - mean);
            acc[l] += c * c;
        }
    }
    double s = 0.0;
    for (; i < n; i++) {
        double c = (double)(x[i] - mean);
        s += c * c;
    }
    for (int l = 0; l < 8; l++) s += acc[l];
    return s;
}

/* Sum of squares with a split that depends only on n. */
static double sumsq_fixed(const float *x, size_t n) {
    size_t parts = (n + EW_RED_MIN_PART - 1) / EW_RED_MIN_PART;
    if (parts > EW_RED_PARTS) parts = EW_RED_PARTS;
    if (parts <= 1) return sumsq_centred_lanes(x, n, 0.0f);
    double part[EW_RED_PARTS];
    size_t chunk = (n + parts - 1) / parts;
#pragma omp parallel for schedule(static) if (n >= EW_PAR_MIN)
    for (long k = 0; k < (long)parts; k++) {
        size_t b = (size_t)k * chunk, e = b + chunk < n ? b + chunk : n;
        part[k] = b < e ? sumsq_centred_lanes(x + b, e - b, 0.0f) : 0.0;
    }
    double s = 0.0;
    for (size_t k = 0; k < parts; k++) s += part[k];
    return s;
}

static void scale_inplace(float *x, size_t n, float s) {
#pragma omp parallel for schedule(static) if (n >= EW_PAR_MIN)
    for (long i = 0; i < (long)n; i++) x[i] *= s;
}

float ew_grad_global_norm(const ew_param *params, int n) {
    double s = 0.0;
    for (int i = 0; i < n; i++)
        if (params[i].grad) s += sumsq_fixed(params[i].grad, ew_param_numel(&params[i]));
    return (float)sqrt(s);
}

float ew_clip_grad_norm(ew_param *params, int n, float max_norm) {
    float norm = ew_grad_global_norm(params, n);
    if (max_norm > 0.0f && isfinite(norm) && norm > max_norm) {
        float scale = (float)((double)max_norm / ((double)norm + 1e-6));
        for (int i = 0; i < n; i++)
            if (params[i].grad) scale_inplace(params[i].grad, ew_param_numel(&params[i]), scale);
    }
    return norm;
}

void ew_clip_grad_value(ew_param *params, int n, float clip) {
    for (int i = 0; i < n; i++) {
        float *g = params[i].grad;
        if (!g) continue;
        long ne = (long)ew_param_numel(&params[i]);
#pragma omp parallel for schedule(static) if (ne >= EW_PAR_MIN)
        for (long k = 0; k < ne; k++) {
            float x = g[k];
            x = x > clip ? clip : x;
            x = x < -clip ? -clip : x;
            g[k] = x;
        }
    }
}

void ew_zero_grad(ew_param *params, int n) {
    for (int i = 0; i < n; i++)
        if (params[i].grad) memset(params[i].grad, 0, ew_param_numel(&params[i]) * sizeof(float));
}

int ew_optim_set_grad_reduce(ew_optim *o, ew_optim_reduce_fn fn, void *ctx, char *err, size_t errsz) {
    free(o->pack);
    o->pack = NULL;
    o->pack_n = 0;
    o->reduce = NULL;
    o->reduce_ctx = NULL;
    if (!fn) return 0;
    size_t n = 0;
    for (int i = 0; i < o->n; i++)
        if (o->params[i].grad) n += ew_param_numel(&o->params[i]);
    o->pack = malloc(sizeof(float) * (n ? n : 1));
    if (!o->pack) {
        if (err && errsz) snprintf(err, errsz, "optimizer: out of memory for the gradient reducer (%zu floats)", n);
        return -1;
    }
    o->pack_n = n;
    o->reduce = fn;
    o->reduce_ctx = ctx;
    return 0;
}

size_t ew_optim_grad_numel(const ew_optim *o) {
    size_t n = 0;
    for (int i = 0; i < o->n; i++)
        if (o->params[i].grad) n += ew_param_numel(&o->params[i]);
    return n;
}

void ew_optim_reduce_grads(ew_optim *o) {
    if (!o->reduce || o->reduced) return;
    if (o->be) ew_backend_sync(o->be); /* the host packs the grads */
    size_t off = 0;
    for (int i = 0; i < o->n; i++) {
        const ew_param *p = &o->params[i];
        if (!p->grad) continue;
        size_t k = ew_param_numel(p);
        memcpy(o->pack + off, p->grad, sizeof(float) * k);
        off += k;
    }
    o->reduce(o->reduce_ctx, o->pack, o->pack_n);
    off = 0;
    for (int i = 0; i < o->n; i++) {
        const ew_param *p = &o->params[i];
        if (!p->grad) continue;
        size_t k = ew_param_numel(p);
        memcpy(p->grad, o->pack + off, sizeof(float) * k);
        off += k;
    }
    o->reduced = 1;
}

float ew_optim_clip_grad_norm(ew_optim *o, float max_norm) {
    ew_optim_reduce_grads(o);
    if (!o->be) return ew_clip_grad_norm(o->params, o->n, max_norm);
    double s = 0.0;
    for (int i = 0; i < o->n; i++)
        if (o->params[i].grad) s += o->be->sumsq(o->be, ew_param_numel(&o->params[i]), o->params[i].grad);
    float norm = (float)sqrt(s);
    if (max_norm > 0.0f && isfinite(norm) && norm > max_norm) {
        float scale = (float)((double)max_norm / ((double)norm + 1e-6));
        for (int i = 0; i < o->n; i++)
            if (o->params[i].grad)
                o->be->unary(o->be, EW_UNARY_SCALE, scale, ew_param_numel(&o->params[i]), o->params[i].grad,
                             o->params[i].grad);
    }
    return norm;
}
void ew_optim_clip_grad_value(ew_optim *o, float clip) {
    ew_optim_reduce_grads(o);
    ew_clip_grad_value(o->params, o->n, clip);
}
void ew_optim_zero_grad(ew_optim *o) {
    if (o->be) {
        for (int i = 0; i < o->n; i++)
            if (o->params[i].grad) o->be->fill(o->be, ew_param_numel(&o->params[i]), 0.0f, o->params[i].grad);
    } else {
        ew_zero_grad(o->params, o->n);
    }
    o->reduced = 0;
}

int ew_optim_use_backend(ew_optim *o, const ew_backend *be, char *err, size_t errsz) {
    if (o->be || !ew_backend_is_device(be) || !be->adam || !be->fill || !be->sumsq || !be->unary ||
        (o->cfg.kind != EW_OPTIM_ADAM && o->cfg.kind != EW_OPTIM_ADAMW))
        return 0;
    float **nm = calloc((size_t)o->n + 1, sizeof *nm), **nv = calloc((size_t)o->n + 1, sizeof *nv);
    int bad = !nm || !nv;
    for (int i = 0; i < o->n && !bad; i++) {
        if (!o->m[i]) continue;
        size_t bytes = ew_param_numel(&o->params[i]) * sizeof(float);
        nm[i] = be->mem_alloc(be, bytes);
        nv[i] = be->mem_alloc(be, bytes);
        if (!nm[i] || !nv[i]) {
            bad = 1;
            break;
        }
        memcpy(nm[i], o->m[i], bytes);
        memcpy(nv[i], o->v[i], bytes);
    }
    if (bad) {
        for (int i = 0; nm && nv && i < o->n; i++) {
            if (nm[i]) be->mem_free(be, nm[i]);
            if (nv[i]) be->mem_free(be, nv[i]);
        }
        free(nm);
        free(nv);
        if (err && errsz)
            snprintf(err, errsz, "optimizer: out of %s memory for the moments (%s)", be->name,
                     ew_backend_error(be) ? ew_backend_error(be) : "allocation failed");
        return -1;
    }
    for (int i = 0; i < o->n; i++) {
        if (!o->m[i]) continue;
        for (int k = 0; k < o->nstate; k++) { /* the checkpoint views follow the moments */
            if (o->state[k].data == o->m[i]) o->state[k].data = nm[i];
            if (o->state[k].data == o->v[i]) o->state[k].data = nv[i];
        }
        free(o->m[i]);
        free(o->v[i]);
        o->m[i] = nm[i];
        o->v[i] = nv[i];
    }
    free(nm);
    free(nv);
    o->be = be;
    return 0;
}
void ew_optim_set_lr(ew_optim *o, float lr) { o->cfg.lr = lr; }
float ew_optim_lr(const ew_optim *o) { return o->cfg.lr; }
long ew_optim_step_count(const ew_optim *o) { return o->t; }
void ew_optim_set_step_count(ew_optim *o, long steps) { o->t = steps < 0 ? 0 : steps; }
const ew_optim_config *ew_optim_get_config(const ew_optim *o) { return &o->cfg; }

const ew_param *ew_optim_state(ew_optim *o, int *count) {
    if (count) *count = o->nstate;
    return o->state;
}

/* SING: out = (g - rowmean) / (||g - rowmean|| + 1e-8), one mean per output channel. */
static void sing_transform(ew_optim *o, const ew_param *p, const float *g, float *out) {
    long rows = p->shape[0];
    size_t ne = ew_param_numel(p), cols = ne / (size_t)rows;
    double *rowsq = o->rowsq;
    float *rowmean = o->rowmean;
#pragma omp parallel for schedule(static) if (ne >= EW_PAR_MIN && rows > 1)
    for (long r = 0; r < rows; r++) {
        const float *gr = g + (size_t)r * cols;
        float mean = (float)(sum_lanes(gr, cols) / (double)cols);
        rowmean[r] = mean;
        rowsq[r] = sumsq_centred_lanes(gr, cols, mean);
    }
    double q = 0.0;
    for (long r = 0; r < rows; r++) q += rowsq[r];
    float inv = (float)(1.0 / (sqrt(q) + 1e-8));
#pragma omp parallel for schedule(static) if (ne >= EW_PAR_MIN && rows > 1)
    for (long r = 0; r < rows; r++) {
        const float *gr = g + (size_t)r * cols;
        float *orow = out + (size_t)r * cols;
        float mean = rowmean[r];
        for (size_t j = 0; j < cols; j++) orow[j] = (gr[j] - mean) * inv;
    }
}

/* One contiguous run of elements (sqrtf keeps GCC from vectorising without -fno-math-errno,
 * hence the explicit SSE2 path). */
static void adam_run(float *restrict p, const float *restrict g, float *restrict m, float *restrict v,
                               long n, float b1, float b2, float step_size, float sqrt_bc2, float eps, float l2,
                               float decay_mul) {
    const float omb1 = 1.0f - b1, omb2 = 1.0f - b2;
    long i = 0;
#if defined(__SSE2__)
    /* The same operations in the same order as the scalar loop below; SSE arithmetic and
     * sqrt are IEEE single precision, so the results are bit-identical to it. */
    const __m128 vb1 = _mm_set1_ps(b1), vb2 = _mm_set1_ps(b2), vomb1 = _mm_set1_ps(omb1), vomb2 = _mm_set1_ps(omb2);
    const __m128 vstep = _mm_set1_ps(step_size), vbc2 = _mm_set1_ps(sqrt_bc2), veps = _mm_set1_ps(eps);
    const __m128 vl2 = _mm_set1_ps(l2), vdec = _mm_set1_ps(decay_mul);
    for (; i + 4 <= n; i += 4) {
        __m128 pv = _mm_loadu_ps(p + i), gv = _mm_loadu_ps(g + i);
        __m128 pi = _mm_mul_ps(pv, vdec);
        __m128 gi = _mm_add_ps(gv, _mm_mul_ps(vl2, pv));
        __m128 mi = _mm_add_ps(_mm_mul_ps(vb1, _mm_loadu_ps(m + i)), _mm_mul_ps(vomb1, gi));
        __m128 vi = _mm_add_ps(_mm_mul_ps(vb2, _mm_loadu_ps(v + i)), _mm_mul_ps(vomb2, _mm_mul_ps(gi, gi)));
        _mm_storeu_ps(m + i, mi);
        _mm_storeu_ps(v + i, vi);
        __m128 den = _mm_add_ps(_mm_div_ps(_mm_sqrt_ps(vi), vbc2), veps);
        _mm_storeu_ps(p + i, _mm_sub_ps(pi, _mm_mul_ps(vstep, _mm_div_ps(mi, den))));
    }
#endif
    for (; i < n; i++) {
        float pi = p[i] * decay_mul;
        float gi = g[i] + l2 * p[i];
        float mi = b1 * m[i] + omb1 * gi;
        float vi = b2 * v[i] + omb2 * (gi * gi);
        m[i] = mi;
        v[i] = vi;
        p[i] = pi - step_size * (mi / (sqrtf(vi) / sqrt_bc2 + eps));
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
/* adam_run on AVX-512 (16 lanes, masked tail): the same IEEE single-precision operations in the
 * same order (no FMA: the build uses -ffp-contract=off), so bit-identical to adam_run. Only
 * called when the processor has AVX-512F (checked at ew_optim_create). */
__attribute__((target("avx512f"))) static void adam_run_avx512(float *restrict p, const float *restrict g,
                                                               float *restrict m, float *restrict v, long n,
                                                               float b1, float b2, float step_size,
                                                               float sqrt_bc2, float eps, float l2, float decay_mul) {
    const __m512 vb1 = _mm512_set1_ps(b1), vb2 = _mm512_set1_ps(b2);
    const __m512 vomb1 = _mm512_set1_ps(1.0f - b1), vomb2 = _mm512_set1_ps(1.0f - b2);
    const __m512 vstep = _mm512_set1_ps(step_size), vbc2 = _mm512_set1_ps(sqrt_bc2), veps = _mm512_set1_ps(eps);
    const __m512 vl2 = _mm512_set1_ps(l2), vdec = _mm512_set1_ps(decay_mul);
    for (long i = 0; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1u);
        __m512 pv = _mm512_maskz_loadu_ps(k, p + i), gv = _mm512_maskz_loadu_ps(k, g + i);
        __m512 pi = _mm512_mul_ps(pv, vdec);
        __m512 gi = _mm512_add_ps(gv, _mm512_mul_ps(vl2, pv));
        __m512 mi = _mm512_add_ps(_mm512_mul_ps(vb1, _mm512_maskz_loadu_ps(k, m + i)), _mm512_mul_ps(vomb1, gi));
        __m512 vi = _mm512_add_ps(_mm512_mul_ps(vb2, _mm512_maskz_loadu_ps(k, v + i)),
                                  _mm512_mul_ps(vomb2, _mm512_mul_ps(gi, gi)));
        _mm512_mask_storeu_ps(m + i, k, mi);
        _mm512_mask_storeu_ps(v + i, k, vi);
        __m512 den = _mm512_add_ps(_mm512_div_ps(_mm512_sqrt_ps(vi), vbc2), veps);
        _mm512_mask_storeu_ps(p + i, k, _mm512_sub_ps(pi, _mm512_mul_ps(vstep, _mm512_div_ps(mi, den))));
    }
}

static int have_avx512(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") ? 1 : 0;
}
#else
static void adam_run_avx512(float *restrict p, const float *restrict g, float *restrict m, float *restrict v, long n,
                            float b1, float b2, float step_size, float sqrt_bc2, float eps, float l2,
                            float decay_mul) {
    adam_run(p, g, m, v, n, b1, b2, step_size, sqrt_bc2, eps, l2, decay_mul); /* never called */
}
static int have_avx512(void) { return 0; }
#endif

#define EW_CHUNK 16384

static void adam_kernel(int simd, float *p, const float *g, float *m, float *v, long n, float b1, float b2,
                        float step_size, float sqrt_bc2, float eps, float l2, float decay_mul) {
    long chunks = (n + EW_CHUNK - 1) / EW_CHUNK;
#pragma omp parallel for schedule(static) if (n >= EW_PAR_MIN)
    for (long c = 0; c < chunks; c++) {
        long b = c * EW_CHUNK, e = b + EW_CHUNK < n ? b + EW_CHUNK : n;
        if (simd)
            adam_run_avx512(p + b, g + b, m + b, v + b, e - b, b1, b2, step_size, sqrt_bc2, eps, l2, decay_mul);
        else
            adam_run(p + b, g + b, m + b, v + b, e - b, b1, b2, step_size, sqrt_bc2, eps, l2, decay_mul);
    }
}

static void sgd_kernel(float *restrict p, const float *restrict g, float *restrict buf, long n, float lr,
                       float mom, int nesterov, int first, float l2) {
    if (!buf) {
#pragma omp parallel for schedule(static) if (n >= EW_PAR_MIN)
        for (long i = 0; i < n; i++) p[i] -= lr * (g[i] + l2 * p[i]);
        return;
    }
#pragma omp parallel for schedule(static) if (n >= EW_PAR_MIN)
    for (long i = 0; i < n; i++) {
        float gi = g[i] + l2 * p[i];
        float b = first ? gi : mom * buf[i] + gi;
        buf[i] = b;
        float d = nesterov ? gi + mom * b : b;
        p[i] -= lr * d;
    }
}

void ew_optim_step(ew_optim *o) {
    const ew_optim_config *c = &o->cfg;
    ew_optim_reduce_grads(o);
    o->reduced = 0;
    o->t++;
    double bc1 = 1.0 - pow((double)c->beta1, (double)o->t);
    double bc2 = 1.0 - pow((double)c->beta2, (double)o->t);
    for (int i = 0; i < o->n; i++) {
        ew_param *p = &o->params[i];
        if (!p->grad) continue;
        long n = (long)ew_param_numel(p);
        float wd = (p->ndim >= 2 || c->decay_all_dims) ? c->weight_decay : 0.0f;
        if (c->kind == EW_OPTIM_SGD) {
            sgd_kernel(p->data, p->grad, o->m[i], n, c->lr, c->momentum, c->nesterov, o->t == 1, wd);
            continue;
        }
        const float *g = p->grad;
        if (c->kind == EW_OPTIM_SING && p->ndim >= 2) {
            sing_transform(o, p, p->grad, o->scratch);
            g = o->scratch;
        }
        float l2 = c->kind == EW_OPTIM_ADAM ? wd : 0.0f;
        float decay_mul = c->kind == EW_OPTIM_ADAM ? 1.0f : 1.0f - c->lr * wd;
        if (o->be) { /* Adam / AdamW only (ew_optim_use_backend) */
            o->be->adam(o->be, (size_t)n, p->data, g, o->m[i], o->v[i], c->beta1, c->beta2, (float)(c->lr / bc1),
                        (float)sqrt(bc2), c->eps, l2, decay_mul);
            continue;
        }
        adam_kernel(o->simd, p->data, g, o->m[i], o->v[i], n, c->beta1, c->beta2, (float)(c->lr / bc1),
                    (float)sqrt(bc2), c->eps, l2, decay_mul);
    }
}

float ew_lr_at(const ew_lr_schedule *s, long step) {
    if (step < 0) step = 0;
    if (s->warmup_steps > 0 && step < s->warmup_steps)
        return (float)((double)s->base_lr * (double)(step + 1) / (double)s->warmup_steps);
    if (s->total_steps <= s->warmup_steps) return s->base_lr;
    double u = (double)(step - s->warmup_steps) / (double)(s->total_steps - s->warmup_steps);
    if (u > 1.0) u = 1.0;
    const double pi = 3.14159265358979323846;
    return (float)((double)s->min_lr + 0.5 * ((double)s->base_lr - (double)s->min_lr) * (1.0 + cos(pi * u)));
}
