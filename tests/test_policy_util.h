/* test_policy_util.h - helpers shared by the policy-learning tests (test_policy_mpur.c,
 * test_mpur_km.c): a tiny policy configuration, a tiny frozen world model, the
 * central-difference ladder against a float32 objective, and bitwise snapshots of parameter
 * lists. Header-only, test code. */
#ifndef EW_TEST_POLICY_UTIL_H
#define EW_TEST_POLICY_UTIL_H

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/policy.h"
#include "planner/mpur.h"
#include "tests/check.h"
#include "tests/test_fm_util.h"

/* A policy small enough for finite differences on 13 x 10 frames, 2-frame windows. */
static inline ew_policy_config tiny_policy_config(int channels) {
    ew_policy_config c = ew_policy_config_default();
    c.nf = 2;
    c.channels = channels;
    c.n_cond = 2;
    c.height = 13;
    c.width = 10;
    c.proj = 6;
    c.hidden = 6;
    c.seed = 3;
    return c;
}

/* A tiny world model (fm_tiny_config, fm_test_stats, encoder dropout `dropout`), frozen for
 * MPUR; action_free: the action encoder's last layer zeroed first, so that its predictions do
 * not depend on the actions. 0, or -1 after a failed CHECK. */
static inline int tiny_frozen_world(ew_fm *wm, ew_fm_variant v, int stochastic, float dropout, int action_free) {
    char err[256] = "";
    ew_fm_config fc = fm_tiny_config(v, stochastic);
    fc.dropout = dropout;
    ew_fm_stats st = fm_test_stats();
    if (ew_fm_init(wm, &fc, &st, err, sizeof err)) {
        CHECK(0, "fm init: %s", err);
        return -1;
    }
    if (action_free) {
        ew_linear_layer *al = &wm->aenc.layers[wm->aenc.nlayers - 1];
        memset(al->weight.data, 0, sizeof(float) * ew_param_numel(&al->weight));
        memset(al->bias.data, 0, sizeof(float) * ew_param_numel(&al->bias));
    }
    ew_mpur_freeze(wm);
    return 0;
}

/* Central differences of eval(ctx) in *v on a ladder of steps h = {1e-2, 3e-3, 1e-3, 3e-4} x
 * max(1, |v|): a float32 objective carries a rounding noise of about 1e-7 |objective| / h,
 * which sets each rung's absolute tolerance (obj_scale ~ |objective|), plus 3 % relative.
 * 1 when some rung agrees with analytic; *num_out is the first rung's estimate; *v restored. */
static inline int fd_ladder_ok(double (*eval)(void *), void *ctx, float *v, double analytic, double obj_scale,
                               double *num_out) {
    static const double ladder[4] = {1e-2, 3e-3, 1e-3, 3e-4};
    float keep = *v;
    int ok = 0;
    for (int e = 0; e < 4 && !ok; e++) {
        double h = ladder[e] * fmax(1.0, fabs(keep));
        float hp = keep + (float)h, hm = keep - (float)h;
        *v = hp;
        double lp = eval(ctx);
        *v = hm;
        double lm = eval(ctx);
        double num = (lp - lm) / ((double)hp - (double)hm);
        if (e == 0) *num_out = num;
        ok = fabs(num - analytic) <= 4e-7 * obj_scale / h + 3e-2 * fmax(fabs(num), fabs(analytic));
    }
    *v = keep;
    return ok;
}

/* A malloc'd copy of every parameter's data, in list order (caller frees). */
static inline float *params_copy(const ew_param *pp, int n) {
    size_t tot = 0, off = 0;
    for (int i = 0; i < n; i++) tot += ew_param_numel(&pp[i]);
    float *c = malloc(sizeof(float) * (tot ? tot : 1));
    for (int i = 0; c && i < n; i++) {
        memcpy(c + off, pp[i].data, sizeof(float) * ew_param_numel(&pp[i]));
        off += ew_param_numel(&pp[i]);
    }
    return c;
}

/* 1 when every parameter's data equals the copy bit for bit. */
static inline int params_equal(const ew_param *pp, int n, const float *copy) {
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        size_t m = ew_param_numel(&pp[i]);
        if (memcmp(pp[i].data, copy + off, sizeof(float) * m)) return 0;
        off += m;
    }
    return 1;
}

#endif
