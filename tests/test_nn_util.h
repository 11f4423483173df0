/* test_nn_util.h - finite-difference gradient checking for the nn tests.
 *
 * gradcheck() builds a function with fresh inputs, takes the vector-Jacobian product with a
 * fixed random seed vector R by the tape (ew_backward_seed), and compares it, for every input
 * that requires a gradient, with central differences of L = sum(R * f(inputs)) accumulated
 * in double, element by element (all elements, or `max_elems` chosen at random).
 * Pass when |analytic - numeric| <= atol + rtol * max(|analytic|, |numeric|).
 */
#ifndef TEST_NN_UTIL_H
#define TEST_NN_UTIL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/ops.h"
#include "tests/check.h"

typedef ew_tensor *(*gc_build_fn)(ew_graph *g, ew_tensor **in, void *ud);

typedef struct {
    int ndim;
    int shape[EW_MAX_DIMS];
    float lo, hi;       /* uniform init range */
    float min_abs;      /* resample values closer to 0 than this (kinks) */
    int no_grad;        /* a constant input */
    int spread;         /* 1: values k*(hi-lo)/n apart, shuffled (distinct maxima) */
    float away_int;     /* resample values closer to an integer than this */
} gc_input;

typedef struct {
    double eps, atol, rtol;
    int max_elems;      /* 0: check every element */
} gc_tol;

static inline void gc_fill(const gc_input *in, float *v, size_t n, ew_rng *r) {
    if (in->spread) {
        for (size_t i = 0; i < n; i++) v[i] = in->lo + (in->hi - in->lo) * (float)i / (float)(n ? n : 1);
        for (size_t i = n; i > 1; i--) {
            size_t j = ew_rng_below(r, (uint32_t)i);
            float t = v[i - 1];
            v[i - 1] = v[j];
            v[j] = t;
        }
        return;
    }
    for (size_t i = 0; i < n; i++) {
        float x;
        do x = (float)ew_rng_range(r, in->lo, in->hi);
        while (fabsf(x) < in->min_abs || fabsf(x - roundf(x)) < in->away_int);
        v[i] = x;
    }
}

/* L = sum R * out in double, forward only. */
static inline double gc_eval(ew_graph *g, int nin, const gc_input *ins, float **host, const float *R,
                      gc_build_fn f, void *ud, int *ok) {
    ew_graph_reset(g);
    int old = ew_set_grad_enabled(g, 0);
    ew_tensor *t[8];
    for (int i = 0; i < nin; i++) t[i] = ew_tensor_from(g, ins[i].ndim, ins[i].shape, host[i]);
    ew_tensor *y = f(g, t, ud);
    ew_set_grad_enabled(g, old);
    if (!y) {
        *ok = 0;
        return 0.0;
    }
    double L = 0.0;
    size_t n = ew_numel(y);
    for (size_t k = 0; k < n; k++) L += (double)R[k] * (double)y->data[k];
    return L;
}

/* Returns the number of failed elements (0 = pass); each input gets one CHECK. */
static inline int gradcheck(ew_backend *be, const char *name, int nin, const gc_input *ins, gc_build_fn f,
                     void *ud, gc_tol tol, uint64_t seed) {
    ew_rng r;
    ew_rng_seed(&r, seed);
    ew_graph *g = ew_graph_create(be, 1 << 20);
    float *host[8], *ana[8];
    size_t n[8];
    for (int i = 0; i < nin; i++) {
        n[i] = ew_shape_numel(ins[i].ndim, ins[i].shape);
        host[i] = malloc(sizeof(float) * (n[i] ? n[i] : 1));
        ana[i] = calloc(n[i] ? n[i] : 1, sizeof(float));
        gc_fill(&ins[i], host[i], n[i], &r);
    }
    /* analytic */
    ew_graph_reset(g);
    ew_tensor *t[8];
    for (int i = 0; i < nin; i++) {
        t[i] = ew_tensor_from(g, ins[i].ndim, ins[i].shape, host[i]);
        ew_requires_grad(t[i], !ins[i].no_grad);
    }
    ew_tensor *y = f(g, t, ud);
    int bad = 0;
    CHECK(y != NULL, "%s: forward failed: %s", name, ew_graph_error(g) ? ew_graph_error(g) : "?");
    if (!y) {
        bad = 1;
        goto done;
    }
    size_t ny = ew_numel(y);
    float *R = malloc(sizeof(float) * (ny ? ny : 1));
    for (size_t k = 0; k < ny; k++) R[k] = (float)ew_rng_range(&r, -1.0, 1.0);
    int rc = ew_backward_seed(g, y, R);
    CHECK(rc == 0, "%s: backward failed: %s", name, ew_graph_error(g) ? ew_graph_error(g) : "?");
    for (int i = 0; i < nin; i++)
        if (!ins[i].no_grad) {
            float *gr = ew_tensor_grad(g, t[i]);
            if (gr) memcpy(ana[i], gr, sizeof(float) * n[i]);
        }
    /* numeric */
    for (int i = 0; i < nin; i++) {
        if (ins[i].no_grad) continue;
        int fails = 0;
        double worst = 0.0, wa = 0.0, wn = 0.0;
        size_t worst_k = 0;
        size_t count = (tol.max_elems && (size_t)tol.max_elems < n[i]) ? (size_t)tol.max_elems : n[i];
        for (size_t c = 0; c < count; c++) {
            size_t k = count == n[i] ? c : (size_t)ew_rng_below(&r, (uint32_t)n[i]);
            float keep = host[i][k];
            int ok = 1;
            host[i][k] = keep + (float)tol.eps;
            double lp = gc_eval(g, nin, ins, host, R, f, ud, &ok);
            host[i][k] = keep - (float)tol.eps;
            double lm = gc_eval(g, nin, ins, host, R, f, ud, &ok);
            host[i][k] = keep;
            /* the perturbation actually applied in float */
            double h = ((double)(keep + (float)tol.eps) - (double)(keep - (float)tol.eps));
            double num = (lp - lm) / h;
            double a = ana[i][k];
            double err = fabs(a - num);
            double lim = tol.atol + tol.rtol * fmax(fabs(a), fabs(num));
            if (!ok || err > lim) fails++;
            if (err - lim > worst - (tol.atol + tol.rtol * fmax(fabs(wa), fabs(wn))) || c == 0) {
                worst = err;
                wa = a;
                wn = num;
                worst_k = k;
            }
        }
        CHECK(fails == 0, "%s: input %d: %d of %zu elements off; worst at %zu: analytic %.7g numeric %.7g",
              name, i, fails, count, worst_k, wa, wn);
        bad += fails;
    }
    free(R);
done:
    for (int i = 0; i < nin; i++) {
        free(host[i]);
        free(ana[i]);
    }
    ew_graph_destroy(g);
    return bad;
}

#endif
