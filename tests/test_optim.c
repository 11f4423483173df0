/* test_optim.c - optimizers against hand-computed steps, clipping, schedule, determinism,
 * state save/restore through a checkpoint. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "models/checkpoint.h"
#include "models/optim.h"
#include "tests/check.h"

static ew_param mk(const char *name, int ndim, const int *shape, float *data, float *grad) {
    ew_param p;
    memset(&p, 0, sizeof p);
    snprintf(p.name, sizeof p.name, "%s", name);
    p.ndim = ndim;
    for (int i = 0; i < ndim; i++) p.shape[i] = shape[i];
    p.data = data;
    p.grad = grad;
    return p;
}

/* Reference Adam/AdamW step in double, PyTorch's formulation. */
static void ref_adam(double *p, const double *g, double *m, double *v, int n, int t, double lr, double b1,
                     double b2, double eps, double decoupled_wd) {
    double bc1 = 1 - pow(b1, t), bc2 = 1 - pow(b2, t);
    for (int i = 0; i < n; i++) {
        p[i] *= 1 - lr * decoupled_wd;
        m[i] = b1 * m[i] + (1 - b1) * g[i];
        v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
        p[i] -= (lr / bc1) * m[i] / (sqrt(v[i]) / sqrt(bc2) + eps);
    }
}

static void test_adam(void) {
    float p[2] = {1.0f, -2.0f}, g[2];
    int sh[1] = {2};
    ew_param prm = mk("w", 1, sh, p, g);
    ew_optim_config c = ew_optim_defaults(EW_OPTIM_ADAM);
    c.lr = 0.1f;
    ew_optim *o = NULL;
    char err[256];
    CHECK(ew_optim_create(&prm, 1, &c, &o, err, sizeof err) == 0, "%s", err);
    if (!o) return;
    /* Step 1 in closed form: m_hat = g, v_hat = g^2, so p -= lr * g / (|g| + eps). */
    g[0] = 0.5f;
    g[1] = -0.1f;
    ew_optim_step(o);
    CHECK_NEAR(p[0], 1.0 - 0.1 * 0.5 / (0.5 + 1e-8), 1e-6);
    CHECK_NEAR(p[1], -2.0 + 0.1 * 0.1 / (0.1 + 1e-8), 1e-6);
    /* Step 2 by hand: g = (0.2, 0.3). m = 0.9*0.1*g1 + 0.1*g2; v = 0.999*0.001*g1^2 + 0.001*g2^2. */
    g[0] = 0.2f;
    g[1] = 0.3f;
    ew_optim_step(o);
    double m0 = 0.9 * 0.05 + 0.1 * 0.2, v0 = 0.999 * 0.001 * 0.25 + 0.001 * 0.04;
    double m1 = 0.9 * -0.01 + 0.1 * 0.3, v1 = 0.999 * 0.001 * 0.01 + 0.001 * 0.09;
    double bc1 = 1 - 0.81, bc2 = 1 - 0.999 * 0.999;
    double e0 = (1.0 - 0.1) - 0.1 / bc1 * m0 / (sqrt(v0) / sqrt(bc2) + 1e-8);
    double e1 = (-2.0 + 0.1) - 0.1 / bc1 * m1 / (sqrt(v1) / sqrt(bc2) + 1e-8);
    CHECK_NEAR(p[0], e0, 2e-6);
    CHECK_NEAR(p[1], e1, 2e-6);
    CHECK(ew_optim_step_count(o) == 2, "step count %ld", ew_optim_step_count(o));
    int ns = 0;
    const ew_param *st = ew_optim_state(o, &ns);
    CHECK(ns == 2 && strcmp(st[0].name, "optim.m.w") == 0 && strcmp(st[1].name, "optim.v.w") == 0, "state names");
    if (ns == 2) {
        CHECK_NEAR(st[0].data[0], m0, 1e-7);
        CHECK_NEAR(st[1].data[1], v1, 5e-9); /* 1 - 0.999f is 0.00099998713 in float */
    }
    ew_optim_free(o);

    /* Coupled L2 in Adam applies to 2-d tensors only by default. */
    float p2[2] = {1.0f, 1.0f}, g2[2] = {0.0f, 0.0f};
    int sh2[2] = {1, 2};
    ew_param w2 = mk("w2", 2, sh2, p2, g2);
    c.weight_decay = 0.5f;
    CHECK(ew_optim_create(&w2, 1, &c, &o, err, sizeof err) == 0, "%s", err);
    ew_optim_step(o); /* g_eff = 0.5 -> first step moves by lr */
    CHECK_NEAR(p2[0], 1.0 - 0.1 * 0.5 / (0.5 + 1e-8), 1e-6);
    ew_optim_free(o);
}

static void test_adamw(void) {
    float pw[6] = {1, 2, 3, 4, 5, 6}, gw[6] = {0}, pb[3] = {1, 2, 3}, gb[3] = {0};
    int shw[2] = {2, 3}, shb[1] = {3};
    ew_param ps[2] = {mk("w", 2, shw, pw, gw), mk("b", 1, shb, pb, gb)};
    ew_optim_config c = ew_optim_defaults(EW_OPTIM_ADAMW);
    c.lr = 0.1f;
    c.weight_decay = 0.5f;
    ew_optim *o = NULL;
    char err[256];
    CHECK(ew_optim_create(ps, 2, &c, &o, err, sizeof err) == 0, "%s", err);
    if (!o) return;
    ew_optim_step(o); /* zero gradient: only the decoupled decay p *= 1 - lr*wd = 0.95 */
    for (int i = 0; i < 6; i++) CHECK_NEAR(pw[i], (i + 1) * 0.95, 1e-6);
    for (int i = 0; i < 3; i++) CHECK(pb[i] == (float)(i + 1), "1-d tensor decayed: %g", (double)pb[i]);
    ew_optim_free(o);
    c.decay_all_dims = 1;
    CHECK(ew_optim_create(ps, 2, &c, &o, err, sizeof err) == 0, "%s", err);
    ew_optim_step(o);
    for (int i = 0; i < 3; i++) CHECK_NEAR(pb[i], (i + 1) * 0.95, 1e-6);
    ew_optim_free(o);

    /* AdamW with a gradient: decay then Adam, against the double reference for 3 steps. */
    float p[3] = {0.5f, -1.0f, 2.0f}, g[3];
    int sh[2] = {3, 1};
    ew_param w = mk("w", 2, sh, p, g);
    c = ew_optim_defaults(EW_OPTIM_ADAMW);
    c.lr = 0.05f;
    c.weight_decay = 0.1f;
    CHECK(ew_optim_create(&w, 1, &c, &o, err, sizeof err) == 0, "%s", err);
    double rp[3] = {0.5, -1.0, 2.0}, rm[3] = {0}, rv[3] = {0};
    const float gs[3][3] = {{0.3f, -0.2f, 1.0f}, {-0.1f, 0.4f, 0.5f}, {0.7f, 0.0f, -2.0f}};
    for (int t = 1; t <= 3; t++) {
        double gd[3];
        for (int i = 0; i < 3; i++) gd[i] = g[i] = gs[t - 1][i];
        ew_optim_step(o);
        ref_adam(rp, gd, rm, rv, 3, t, 0.05, 0.9, 0.999, 1e-8, 0.1);
    }
    for (int i = 0; i < 3; i++) CHECK_NEAR(p[i], rp[i], 2e-6);
    ew_optim_free(o);
}

static void test_sgd(void) {
    float p[1] = {0.0f}, g[1] = {1.0f};
    int sh[2] = {1, 1};
    ew_param w = mk("w", 2, sh, p, g);
    ew_optim_config c = ew_optim_defaults(EW_OPTIM_SGD);
    c.lr = 0.1f;
    c.momentum = 0.9f;
    ew_optim *o = NULL;
    char err[256];
    CHECK(ew_optim_create(&w, 1, &c, &o, err, sizeof err) == 0, "%s", err);
    if (!o) return;
    /* buf: 1, 1.9, 2.71 -> p: -0.1, -0.29, -0.561 */
    ew_optim_step(o);
    CHECK_NEAR(p[0], -0.1, 1e-6);
    ew_optim_step(o);
    CHECK_NEAR(p[0], -0.29, 1e-6);
    ew_optim_step(o);
    CHECK_NEAR(p[0], -0.561, 1e-6);
    int ns;
    const ew_param *st = ew_optim_state(o, &ns);
    CHECK(ns == 1 && strcmp(st[0].name, "optim.momentum.w") == 0, "SGD state");
    ew_optim_free(o);
    /* Nesterov: d = g + mu*buf: 1.9, then 1 + 0.9*1.9 = 2.71. */
    p[0] = 0.0f;
    c.nesterov = 1;
    CHECK(ew_optim_create(&w, 1, &c, &o, err, sizeof err) == 0, "%s", err);
    ew_optim_step(o);
    CHECK_NEAR(p[0], -0.19, 1e-6);
    ew_optim_step(o);
    CHECK_NEAR(p[0], -0.19 - 0.271, 1e-6);
    ew_optim_free(o);
    /* Plain SGD with coupled weight decay: p -= lr*(g + wd*p). */
    p[0] = 2.0f;
    c.momentum = 0.0f;
    c.nesterov = 0;
    c.weight_decay = 0.5f;
    CHECK(ew_optim_create(&w, 1, &c, &o, err, sizeof err) == 0, "%s", err);
    ew_optim_step(o);
    CHECK_NEAR(p[0], 2.0 - 0.1 * (1.0 + 1.0), 1e-6);
    CHECK(ew_optim_state(o, &ns) != NULL && ns == 0, "plain SGD has no state");
    ew_optim_free(o);
    /* Invalid configurations are refused with a message. */
    c.nesterov = 1;
    CHECK(ew_optim_create(&w, 1, &c, &o, err, sizeof err) != 0 && o == NULL && strstr(err, "Nesterov"), "%s", err);
    ew_param dup[2] = {w, w};
    c = ew_optim_defaults(EW_OPTIM_ADAM);
    CHECK(ew_optim_create(dup, 2, &c, &o, err, sizeof err) != 0 && strstr(err, "duplicate"), "%s", err);
    c.beta1 = 1.0f;
    CHECK(ew_optim_create(&w, 1, &c, &o, err, sizeof err) != 0 && strstr(err, "betas"), "%s", err);
}

static void test_sing(void) {
    /* 2x3 gradient [[1,2,3],[4,6,8]]: row means 2 and 6, centred [[-1,0,1],[-2,0,2]],
     * ||.|| = sqrt(10), so g' = centred / (sqrt(10) + 1e-8). */
    float p[6] = {1, 1, 1, 1, 1, 1}, g[6] = {1, 2, 3, 4, 6, 8};
    float pb[2] = {0.5f, -0.5f}, gb[2] = {3.0f, -1.0f};
    int sh[2] = {2, 3}, shb[1] = {2};
    ew_param ps[2] = {mk("w", 2, sh, p, g), mk("b", 1, shb, pb, gb)};
    ew_optim_config c = ew_optim_defaults(EW_OPTIM_SING);
    c.lr = 0.01f;
    c.weight_decay = 0.1f;
    CHECK(c.beta1 == 0.9f && c.beta2 == 0.999f, "SING betas default 0.9, 0.999");
    ew_optim *o = NULL;
    char err[256];
    CHECK(ew_optim_create(ps, 2, &c, &o, err, sizeof err) == 0, "%s", err);
    if (!o) return;
    double s10 = sqrt(10.0) + 1e-8;
    double g1[6] = {-1 / s10, 0, 1 / s10, -2 / s10, 0, 2 / s10};
    /* Second gradient [[0,1,5],[2,2,2]]: means 2 and 2, centred [[-2,-1,3],[0,0,0]], norm sqrt(14). */
    double s14 = sqrt(14.0) + 1e-8;
    double g2[6] = {-2 / s14, -1 / s14, 3 / s14, 0, 0, 0};
    double rp[6] = {1, 1, 1, 1, 1, 1}, rm[6] = {0}, rv[6] = {0};
    double rb[2] = {0.5, -0.5}, rbm[2] = {0}, rbv[2] = {0}, gbd[2] = {3.0, -1.0};
    ew_optim_step(o);
    ref_adam(rp, g1, rm, rv, 6, 1, 0.01, 0.9, 0.999, 1e-8, 0.1);
    ref_adam(rb, gbd, rbm, rbv, 2, 1, 0.01, 0.9, 0.999, 1e-8, 0.0); /* 1-d: raw gradient, no decay */
    CHECK(g[0] == 1.0f && g[5] == 8.0f, "SING must not modify p->grad");
    const float gn[6] = {0, 1, 5, 2, 2, 2};
    memcpy(g, gn, sizeof g);
    gb[0] = -0.5f;
    gb[1] = 0.25f;
    gbd[0] = -0.5;
    gbd[1] = 0.25;
    ew_optim_step(o);
    ref_adam(rp, g2, rm, rv, 6, 2, 0.01, 0.9, 0.999, 1e-8, 0.1);
    ref_adam(rb, gbd, rbm, rbv, 2, 2, 0.01, 0.9, 0.999, 1e-8, 0.0);
    for (int i = 0; i < 6; i++) CHECK_NEAR(p[i], rp[i], 1e-6);
    for (int i = 0; i < 2; i++) CHECK_NEAR(pb[i], rb[i], 1e-6);
    /* The moments hold the transformed gradient: m after two steps = 0.09*g1' + 0.1*g2'. */
    int ns;
    const ew_param *st = ew_optim_state(o, &ns);
    CHECK(ns == 4, "SING state count %d", ns);
    if (ns == 4) {
        for (int i = 0; i < 6; i++) CHECK_NEAR(st[0].data[i], 0.09 * g1[i] + 0.1 * g2[i], 1e-7);
    }
    ew_optim_free(o);
}

static void test_clip(void) {
    float g1[2] = {3, 4}, g2[1] = {12}, d1[2] = {0}, d2[1] = {0};
    int s2[1] = {2}, s1[1] = {1};
    ew_param ps[3] = {mk("a", 1, s2, d1, g1), mk("b", 1, s1, d2, g2), mk("buf", 1, s1, d2, NULL)};
    CHECK_NEAR(ew_grad_global_norm(ps, 3), 13.0, 1e-5);
    float n = ew_clip_grad_norm(ps, 3, 20.0f);
    CHECK_NEAR(n, 13.0, 1e-5);
    CHECK(g1[0] == 3 && g1[1] == 4 && g2[0] == 12, "below the threshold nothing changes");
    n = ew_clip_grad_norm(ps, 3, 6.5f);
    CHECK_NEAR(n, 13.0, 1e-5);
    CHECK_NEAR(g1[0], 1.5, 1e-5);
    CHECK_NEAR(g1[1], 2.0, 1e-5);
    CHECK_NEAR(g2[0], 6.0, 1e-5);
    CHECK_NEAR(ew_grad_global_norm(ps, 3), 6.5, 1e-5);
    float keep = g1[0];
    ew_clip_grad_value(ps, 3, 1.75f);
    CHECK(g1[0] == keep && g1[1] == 1.75f && g2[0] == 1.75f, "value clip %g %g %g", (double)g1[0], (double)g1[1],
          (double)g2[0]);
    g1[0] = -9.0f;
    ew_clip_grad_value(ps, 3, 1.0f);
    CHECK(g1[0] == -1.0f, "negative side clipped");
    ew_zero_grad(ps, 3);
    CHECK(g1[0] == 0 && g1[1] == 0 && g2[0] == 0, "zero_grad");
    /* Through the optimizer. */
    g1[0] = 30;
    g1[1] = 40;
    ew_optim_config c = ew_optim_defaults(EW_OPTIM_ADAM);
    ew_optim *o = NULL;
    char err[256];
    CHECK(ew_optim_create(ps, 3, &c, &o, err, sizeof err) == 0, "%s", err);
    if (!o) return;
    CHECK_NEAR(ew_optim_clip_grad_norm(o, 5.0f), 50.0, 1e-4);
    CHECK_NEAR(g1[0], 3.0, 1e-5);
    ew_optim_clip_grad_value(o, 3.5f);
    CHECK(g1[1] == 3.5f, "optim value clip");
    ew_optim_zero_grad(o);
    CHECK(g1[0] == 0 && g1[1] == 0, "optim zero_grad");
    int ns;
    ew_optim_state(o, &ns);
    CHECK(ns == 4, "no state for a buffer without grad (%d)", ns);
    ew_optim_free(o);
}

static void test_schedule(void) {
    ew_lr_schedule s = {1.0f, 0.1f, 10, 110};
    CHECK_NEAR(ew_lr_at(&s, 0), 0.1, 1e-7);
    CHECK_NEAR(ew_lr_at(&s, 4), 0.5, 1e-7);
    CHECK_NEAR(ew_lr_at(&s, 9), 1.0, 1e-7);
    CHECK_NEAR(ew_lr_at(&s, 10), 1.0, 1e-7);
    CHECK_NEAR(ew_lr_at(&s, 60), 0.55, 1e-6);
    CHECK_NEAR(ew_lr_at(&s, 35), 0.1 + 0.45 * (1 + cos(3.14159265358979323846 * 0.25)), 1e-6);
    CHECK_NEAR(ew_lr_at(&s, 110), 0.1, 1e-7);
    CHECK_NEAR(ew_lr_at(&s, 1000), 0.1, 1e-7);
    ew_lr_schedule flat = {0.5f, 0.0f, 0, 0};
    CHECK_NEAR(ew_lr_at(&flat, 123), 0.5, 1e-7);
    ew_lr_schedule cos_only = {2.0f, 0.0f, 0, 100};
    CHECK_NEAR(ew_lr_at(&cos_only, 0), 2.0, 1e-7);
    CHECK_NEAR(ew_lr_at(&cos_only, 50), 1.0, 1e-6);
}

/* Identical (p, g) pairs give identical results whether an element falls in the vector body
 * or the scalar tail of the update loop. */
static void test_simd_tail(void) {
    float p[7], g[7];
    int sh[1] = {7};
    for (int i = 0; i < 7; i++) p[i] = 0.3f;
    ew_param w = mk("w", 1, sh, p, g);
    ew_optim_kind kinds[3] = {EW_OPTIM_ADAM, EW_OPTIM_ADAMW, EW_OPTIM_SGD};
    for (int k = 0; k < 3; k++) {
        ew_optim_config c = ew_optim_defaults(kinds[k]);
        c.weight_decay = 0.01f;
        c.decay_all_dims = 1;
        ew_optim *o = NULL;
        char err[256];
        if (ew_optim_create(&w, 1, &c, &o, err, sizeof err)) {
            CHECK(0, "%s", err);
            continue;
        }
        for (int s = 0; s < 4; s++) {
            for (int i = 0; i < 7; i++) g[i] = 0.1f * (float)(s + 1) - 0.17f;
            ew_optim_step(o);
        }
        int same = 1;
        for (int i = 1; i < 7; i++) same &= memcmp(&p[i], &p[0], sizeof(float)) == 0;
        CHECK(same, "kind %d: vector body and scalar tail disagree (%.9g vs %.9g)", k, (double)p[0], (double)p[6]);
        ew_optim_free(o);
    }
}

/* The update in single precision exactly as optim.h states it, element by element (no
 * contraction: the build uses -ffp-contract=off): every path of the optimizer (scalar, SSE2,
 * AVX-512 with a masked tail) must give these bits. 301 elements: 18 full 16-lane vectors and
 * a tail of 13; Adam with coupled L2 and AdamW. */
static void test_adam_bits(void) {
    enum { N = 301, STEPS = 4 };
    for (int kind = 0; kind < 2; kind++) {
        float p[N], g[N], rp[N], rm[N] = {0}, rv[N] = {0};
        int sh[2] = {N, 1};
        ew_param w = mk("w", 2, sh, p, g);
        ew_optim_config c = ew_optim_defaults(kind ? EW_OPTIM_ADAMW : EW_OPTIM_ADAM);
        c.weight_decay = 0.05f;
        for (int i = 0; i < N; i++) p[i] = rp[i] = (float)sin(0.7 * i + 0.1) * 0.5f;
        ew_optim *o = NULL;
        char err[256];
        if (ew_optim_create(&w, 1, &c, &o, err, sizeof err)) {
            CHECK(0, "%s", err);
            continue;
        }
        int same = 1;
        for (int t = 1; t <= STEPS; t++) {
            for (int i = 0; i < N; i++) g[i] = (float)cos(1.3 * i + t) * (i % 5 == 0 ? 1e-3f : 1.0f);
            ew_optim_step(o);
            double bc1 = 1.0 - pow((double)c.beta1, t), bc2 = 1.0 - pow((double)c.beta2, t);
            float step = (float)(c.lr / bc1), sbc2 = (float)sqrt(bc2);
            float l2 = kind ? 0.0f : c.weight_decay, dec = kind ? 1.0f - c.lr * c.weight_decay : 1.0f;
            for (int i = 0; i < N; i++) {
                float pi = rp[i] * dec;
                float gi = g[i] + l2 * rp[i];
                rm[i] = c.beta1 * rm[i] + (1.0f - c.beta1) * gi;
                rv[i] = c.beta2 * rv[i] + (1.0f - c.beta2) * (gi * gi);
                rp[i] = pi - step * (rm[i] / (sqrtf(rv[i]) / sbc2 + c.eps));
            }
            same &= memcmp(p, rp, sizeof p) == 0;
        }
        CHECK(same, "%s: the update differs from the single-precision formula in some bit", kind ? "AdamW" : "Adam");
        ew_optim_free(o);
    }
}

/* Same inputs, 1 thread vs 4 threads: bit-identical parameters and norms. */
static void run_big(int threads, ew_optim_kind kind, float *p, float *g, size_t n, float *norm_out) {
    omp_set_num_threads(threads);
    for (size_t i = 0; i < n; i++) {
        p[i] = (float)sin(0.001 * (double)i);
        g[i] = (float)cos(0.0037 * (double)i) * (i % 7 == 0 ? 10.0f : 1.0f);
    }
    int sh[2] = {64, (int)(n / 64)};
    ew_param w = mk("big", 2, sh, p, g);
    ew_optim_config c = ew_optim_defaults(kind);
    ew_optim *o = NULL;
    char err[256];
    if (ew_optim_create(&w, 1, &c, &o, err, sizeof err)) {
        CHECK(0, "%s", err);
        return;
    }
    *norm_out = ew_optim_clip_grad_norm(o, 100.0f);
    for (int s = 0; s < 3; s++) ew_optim_step(o);
    ew_optim_free(o);
}

static void test_determinism(void) {
    size_t n = 64 * 8192;
    float *p1 = malloc(n * 4), *g1 = malloc(n * 4), *p4 = malloc(n * 4), *g4 = malloc(n * 4);
    if (!p1 || !g1 || !p4 || !g4) {
        CHECK(0, "out of memory");
        free(p1), free(g1), free(p4), free(g4);
        return;
    }
    ew_optim_kind kinds[3] = {EW_OPTIM_SING, EW_OPTIM_ADAMW, EW_OPTIM_SGD};
    for (int k = 0; k < 3; k++) {
        float n1 = 0, n4 = 0;
        run_big(1, kinds[k], p1, g1, n, &n1);
        run_big(4, kinds[k], p4, g4, n, &n4);
        CHECK(n1 == n4, "norm differs across thread counts: %.9g vs %.9g", (double)n1, (double)n4);
        CHECK(memcmp(p1, p4, n * 4) == 0, "kind %d: parameters differ between 1 and 4 threads", k);
    }
    omp_set_num_threads(omp_get_num_procs());
    free(p1), free(g1), free(p4), free(g4);
}

/* Optimizer state through a checkpoint: resuming gives the same trajectory bit for bit. */
static void test_state_roundtrip(void) {
    float pa[6], ga[6], pb[6], gb[6];
    int sh[2] = {2, 3};
    for (int i = 0; i < 6; i++) pa[i] = (float)i * 0.25f - 0.5f;
    ew_param a = mk("layer.w", 2, sh, pa, ga);
    ew_optim_config c = ew_optim_defaults(EW_OPTIM_SING);
    ew_optim *o = NULL, *o2 = NULL;
    char err[256];
    CHECK(ew_optim_create(&a, 1, &c, &o, err, sizeof err) == 0, "%s", err);
    if (!o) return;
    for (int s = 0; s < 3; s++) {
        for (int i = 0; i < 6; i++) ga[i] = (float)sin(s * 6 + i);
        ew_optim_step(o);
    }
    char path[128], step[32];
    snprintf(path, sizeof path, "/tmp/ew_test_optim_%ld.safetensors", (long)getpid());
    snprintf(step, sizeof step, "%ld", ew_optim_step_count(o));
    int ns;
    const ew_param *st = ew_optim_state(o, &ns);
    ew_kv meta[1] = {{EW_OPTIM_META_STEP, step}};
    CHECK(ew_checkpoint_write(path, &a, 1, st, ns, meta, 1, err, sizeof err) == 0, "%s", err);
    /* A fresh model + optimizer loaded from the file. */
    memset(pb, 0, sizeof pb);
    ew_param b = mk("layer.w", 2, sh, pb, gb);
    CHECK(ew_optim_create(&b, 1, &c, &o2, err, sizeof err) == 0, "%s", err);
    ew_checkpoint *ck = NULL;
    CHECK(ew_checkpoint_open(path, &ck, err, sizeof err) == 0, "%s", err);
    if (ck && o2) {
        int ns2;
        ew_param *st2 = (ew_param *)ew_optim_state(o2, &ns2);
        CHECK(ew_checkpoint_load_params(ck, &b, 1, 0, EW_OPTIM_STATE_PREFIX, err, sizeof err) == 0, "%s", err);
        CHECK(ew_checkpoint_load_params(ck, st2, ns2, EW_CKPT_ALLOW_UNEXPECTED, NULL, err, sizeof err) == 0, "%s", err);
        /* Without the prefix to ignore, the optimizer tensors are reported as unexpected. */
        CHECK(ew_checkpoint_load_params(ck, &b, 1, 0, NULL, err, sizeof err) != 0 && strstr(err, "2 unexpected"), "%s", err);
        const char *sv = ew_checkpoint_meta(ck, EW_OPTIM_META_STEP);
        CHECK(sv && strcmp(sv, "3") == 0, "step metadata");
        ew_optim_set_step_count(o2, sv ? atol(sv) : 0);
        for (int s = 3; s < 5; s++) {
            for (int i = 0; i < 6; i++) ga[i] = gb[i] = (float)cos(s * 6 + i);
            ew_optim_step(o);
            ew_optim_step(o2);
        }
        CHECK(memcmp(pa, pb, sizeof pa) == 0, "resumed optimizer diverges");
    }
    ew_checkpoint_close(ck);
    ew_optim_free(o);
    ew_optim_free(o2);
    unlink(path);
}

int main(void) {
    test_adam();
    test_adamw();
    test_sgd();
    test_sing();
    test_clip();
    test_schedule();
    test_simd_tail();
    test_adam_bits();
    test_determinism();
    test_state_roundtrip();
    return check_done();
}
