/* test_mpur_km.c - MPUR in the decoupled (FM-KM) form (planner/mpur.h, ew_mpur_km_step).
 *
 * The decoupled gradient holds the predicted images and the policy's inputs fixed. On a world
 * model whose predictions do not depend on the actions (plain variant, action encoder zeroed:
 * images and states are then constants of the actions) that IS the exact gradient, so the
 * parameter update of one plain SGD step (lr 1, no clip) must equal minus the central finite
 * difference of the objective (cost through the kinematic model and moved masks, static
 * layers from the observed frame, the hinged dropout-uncertainty term, the limit penalty).
 * Also: one Adam step on the production-like FM-KM model lowers the objective on a fixed
 * batch and seed; the world model stays bitwise unchanged; the objective is seeded; the
 * uncertainty statistics under logged actions are positive; bad batches are refused. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "planner/mpc.h"
#include "planner/mpur.h"
#include "tests/check.h"
#include "tests/test_fm_util.h"
#include "tests/test_policy_util.h"

static void make_batch(ew_pt_batch *b, int B, int T, uint64_t seed) {
    ew_pt_batch_alloc(b, B, 2, T, 3, 13, 10);
    ew_rng r;
    ew_rng_seed(&r, seed);
    size_t nf = (size_t)B * 2 * 3 * 13 * 10;
    for (size_t i = 0; i < nf; i++) b->frames[i] = (float)ew_rng_uniform(&r);
    for (int i = 0; i < B; i++) {
        /* two consecutive states 0.1 s apart, along the road at 12-18 m/s */
        float *s = b->states + 10 * i;
        float v = (float)ew_rng_range(&r, 12.0, 18.0), y = (float)ew_rng_range(&r, 2.0, 8.0);
        float s0[5] = {(float)ew_rng_range(&r, 20.0, 80.0), y, 1.0f, 0.0f, v};
        memcpy(s, s0, sizeof s0);
        float s1[5] = {s0[0] + 0.1f * v, y, 1.0f, 0.0f, v};
        memcpy(s + 5, s1, sizeof s1);
    }
    for (int i = 0; i < B * T; i++) {
        b->actions[2 * i] = (float)ew_rng_range(&r, -2.0, 2.0);
        b->actions[2 * i + 1] = (float)ew_rng_range(&r, -0.02, 0.02);
    }
}

typedef struct {
    ew_graph *g;
    ew_fm *wm;
    ew_policy *p;
    ew_mpur_config *c;
    ew_mpur_ustats *us;
    ew_pt_batch *b;
    uint64_t seed;
} ctx;

static double eval(ctx *x) {
    ew_mpur_terms t;
    char err[256];
    if (ew_mpur_step(x->g, x->wm, x->p, NULL, x->c, x->us, x->b, 0.0f, x->seed, &t, err, sizeof err)) {
        fprintf(stderr, "eval: %s\n", err);
        return NAN;
    }
    return (double)t.objective;
}

/* |objective| of the point the gradients are checked at (the ladder's noise scale) */
static double obj_scale = 1.0;

static double eval_v(void *x) { return eval(x); }

static int fd_ok(ctx *x, float *v, double analytic, double *num_out) {
    return fd_ladder_ok(eval_v, x, v, analytic, obj_scale, num_out);
}


static void ustats(ew_graph *g, ew_fm *wm, ew_mpur_config *mc, ew_pt_batch *b, ew_mpur_ustats *us) {
    char err[256] = "";
    ew_cost_unc_acc ai, ac;
    ew_cost_unc_acc_init(&ai, mc->horizon);
    ew_cost_unc_acc_init(&ac, mc->horizon);
    for (int k = 0; k < 3; k++)
        CHECK(ew_mpur_ustats_add(g, wm, mc, b, 100 + (uint64_t)k, &ai, &ac, err, sizeof err) == 0, "ustats: %s", err);
    CHECK(ai.n == 3 * b->B, "rows %ld", ai.n);
    ew_mpur_ustats_alloc(us, mc->horizon);
    ew_cost_unc_acc_finish(&ai, us->img_mean, us->img_std);
    ew_cost_unc_acc_finish(&ac, us->cost_mean, us->cost_std);
    us->rows = ai.n;
    ew_cost_unc_acc_free(&ai);
    ew_cost_unc_acc_free(&ac);
}

static void setup_cost(ew_mpur_config *mc, const ew_fm *wm, const ew_policy *p) {
    ew_mpur_config_default(mc, wm, p);
    ew_cost_config geo = mc->cost;
    ew_mpc_driving_cost(&mc->cost);
    mc->cost.rows = geo.rows;
    mc->cost.cols = geo.cols;
    mc->cost.dt = geo.dt;
    mc->cost.m_per_px = geo.m_per_px;
    mc->decoupled = 1;
    mc->horizon = 4;
    mc->u_samples = 3;
    mc->cost.lambda_u = 0.5f;
}

static void test_gradient(ew_backend *be, int static_obs, float lambda_u, float rear_weight) {
    char err[256] = "";
    ew_fm_stats st = fm_test_stats();
    ew_fm wm;
    if (tiny_frozen_world(&wm, EW_FM_PLAIN, 1, 0.2f, 1)) return; /* predictions independent of the actions */
    ew_policy_config pc = tiny_policy_config(3);
    ew_policy p;
    CHECK(ew_policy_init(&p, &pc, &st, err, sizeof err) == 0, "policy init: %s", err);
    /* larger actions: the objective then depends visibly on every parameter */
    ew_linear_layer *hl = &p.head.layers[p.head.nlayers - 1];
    for (size_t j = 0; j < ew_param_numel(&hl->weight); j++) hl->weight.data[j] *= 20.0f;
    ew_mpur_config mc;
    setup_cost(&mc, &wm, &p);
    mc.static_obs = static_obs;
    mc.rear_weight = rear_weight;
    enum { B = 3 };
    ew_pt_batch b;
    make_batch(&b, B, 5, 17);
    ew_graph *g = ew_graph_create(be, 0);
    ew_mpur_ustats us;
    ustats(g, &wm, &mc, &b, &us);
    int pos = 1;
    for (int t = 0; t < mc.horizon; t++) pos &= us.img_mean[t] > 0 && us.cost_std[t] > 0;
    CHECK(pos, "dropout makes the replays differ: img var %g, cost std %g", (double)us.img_mean[0],
          (double)us.cost_std[0]);
    /* the mask speed is detached by design: constant masks (min_speed above every speed) and no
     * action/jerk terms (their lateral part uses the detached speed) for finite differences;
     * hinge low so the uncertainty term is active everywhere */
    mc.hinge = -5.0f;
    mc.cost.lambda_p = 2.0f; /* weights of order one: the objective stays small against its changes */
    mc.cost.lambda_l = 0.2f;
    mc.cost.lambda_o = 1.0f;
    mc.cost.min_speed = 100.0f;
    mc.cost.lambda_u = lambda_u;
    mc.cost.w_action = 0.0f;
    mc.cost.w_jerk = 0.0f;
    ctx x = {g, &wm, &p, &mc, &us, &b, 77};
    ew_mpur_terms tm;
    CHECK(ew_mpur_step(g, &wm, &p, NULL, &mc, &us, &b, 0.0f, x.seed, &tm, err, sizeof err) == 0, "objective: %s", err);
    CHECK(tm.uncertainty > 0.0f && tm.cost > 0.0f, "terms: unc %g cost %g", (double)tm.uncertainty, (double)tm.cost);
    obj_scale = fmax(1.0, fabs(tm.objective));
    int np;
    ew_param *pp = ew_policy_params(&p, &np);
    float *before = params_copy(pp, np);
    ew_optim_config oc = ew_optim_defaults(EW_OPTIM_SGD);
    oc.lr = 1.0f;
    oc.momentum = 0.0f;
    oc.weight_decay = 0.0f;
    ew_optim *opt = NULL;
    CHECK(ew_optim_create(pp, np, &oc, &opt, err, sizeof err) == 0, "optim: %s", err);
    CHECK(ew_mpur_step(g, &wm, &p, opt, &mc, &us, &b, 0.0f, x.seed, &tm, err, sizeof err) == 0, "step: %s", err);
    /* analytic gradient = before - after; restore */
    size_t tot = 0;
    for (int i = 0; i < np; i++) tot += ew_param_numel(&pp[i]);
    float *grad = malloc(sizeof(float) * tot);
    size_t off = 0;
    for (int i = 0; i < np; i++) {
        size_t m = ew_param_numel(&pp[i]);
        for (size_t j = 0; j < m; j++) grad[off + j] = before[off + j] - pp[i].data[j];
        memcpy(pp[i].data, before + off, sizeof(float) * m);
        off += m;
    }
    ew_rng r;
    ew_rng_seed(&r, 4);
    int bad = 0, tested = 0, nonzero = 0, big = 0;
    double num;
    off = 0;
    for (int i = 0; i < np; i++) {
        size_t m = ew_param_numel(&pp[i]);
        for (int k = 0; k < 8; k++) {
            size_t j = ew_rng_below(&r, (uint32_t)m);
            double an = grad[off + j];
            tested++;
            nonzero += an != 0.0;
            big += fabs(an) > 4e-4 * obj_scale;
            if (!fd_ok(&x, &pp[i].data[j], an, &num)) {
                bad++;
                fprintf(stderr, "  %s[%zu]: analytic %.6g numeric %.6g\n", pp[i].name, j, an, num);
            }
        }
        off += m;
    }
    CHECK(bad == 0, "%d of %d policy parameter elements disagree (static_obs %d)", bad, tested, static_obs);
    /* directional derivative along the whole gradient: d/de J(theta + e d), d = g / |g|, must be
     * |g| (the per-element checks above cannot see small gradients under the float rounding) */
    double gn2 = 0;
    for (size_t i = 0; i < tot; i++) gn2 += (double)grad[i] * grad[i];
    double gn = sqrt(gn2), dd = 0;
    int dir_ok = 0;
    for (int e = 0; e < 4 && !dir_ok; e++) {
        double h = 1e-2 / (1 << (2 * e)), jp, jm;
        off = 0;
        for (int i = 0; i < np; i++) {
            size_t m = ew_param_numel(&pp[i]);
            for (size_t j = 0; j < m; j++) pp[i].data[j] = before[off + j] + (float)(h * grad[off + j] / gn);
            off += m;
        }
        jp = eval(&x);
        off = 0;
        for (int i = 0; i < np; i++) {
            size_t m = ew_param_numel(&pp[i]);
            for (size_t j = 0; j < m; j++) pp[i].data[j] = before[off + j] - (float)(h * grad[off + j] / gn);
            off += m;
        }
        jm = eval(&x);
        dd = (jp - jm) / (2 * h);
        dir_ok = fabs(dd - gn) <= 0.02 * gn + 4e-7 * obj_scale / h;
    }
    off = 0;
    for (int i = 0; i < np; i++) {
        memcpy(pp[i].data, before + off, sizeof(float) * ew_param_numel(&pp[i]));
        off += ew_param_numel(&pp[i]);
    }
    CHECK(dir_ok, "directional derivative along the gradient: finite difference %.6g, |g| %.6g (static_obs %d)", dd, gn,
          static_obs);
    CHECK(nonzero > tested / 2, "gradients reach the policy (%d of %d nonzero)", nonzero, tested);
    if (lambda_u < 1.0f) /* else the objective is large: the directional check below is the one that counts */
        CHECK(big >= 10, "%d of %d gradients well above the finite-difference noise", big, tested);
    CHECK(params_equal(pp, np, before), "parameters restored");
    ew_optim_free(opt);
    free(grad);
    free(before);
    ew_mpur_ustats_free(&us);
    ew_pt_batch_free(&b);
    ew_graph_destroy(g);
    ew_policy_free(&p);
    ew_fm_free(&wm);
}

static void test_step(ew_backend *be) {
    char err[256] = "";
    ew_fm_stats st = fm_test_stats();
    ew_fm wm;
    if (tiny_frozen_world(&wm, EW_FM_KM, 1, 0.2f, 0)) return;
    int nw;
    ew_param *wp = ew_fm_params(&wm, &nw);
    float *wcopy = params_copy(wp, nw);
    ew_policy_config pc = tiny_policy_config(3);
    ew_policy p;
    CHECK(ew_policy_init(&p, &pc, &st, err, sizeof err) == 0, "policy init: %s", err);
    ew_mpur_config mc;
    setup_cost(&mc, &wm, &p);
    enum { B = 4 };
    ew_pt_batch b;
    make_batch(&b, B, 5, 29);
    ew_graph *g = ew_graph_create(be, 0);
    ew_mpur_ustats us;
    ustats(g, &wm, &mc, &b, &us);
    ctx x = {g, &wm, &p, &mc, &us, &b, 91};
    double o1 = eval(&x), o2 = eval(&x);
    x.seed = 92;
    double o3 = eval(&x);
    x.seed = 91;
    CHECK(isfinite(o1) && o1 == o2, "same seed, same objective (%g, %g)", o1, o2);
    CHECK(o1 != o3, "another seed, another objective (latents)");
    int np;
    ew_param *pp = ew_policy_params(&p, &np);
    ew_optim_config oc = ew_optim_defaults(EW_OPTIM_ADAM);
    oc.lr = 1e-3f;
    ew_optim *opt = NULL;
    CHECK(ew_optim_create(pp, np, &oc, &opt, err, sizeof err) == 0, "optim: %s", err);
    ew_mpur_terms t1;
    double first = o1, last = o1;
    for (int k = 0; k < 5; k++) {
        CHECK(ew_mpur_step(g, &wm, &p, opt, &mc, &us, &b, 5.0f, x.seed, &t1, err, sizeof err) == 0, "step: %s", err);
        CHECK(t1.grad_norm > 0.0f && isfinite(t1.grad_norm), "grad norm %g", (double)t1.grad_norm);
        last = eval(&x);
    }
    CHECK(last < first, "five Adam steps on one batch lower the objective: %.9g -> %.9g", first, last);
    CHECK(params_equal(wp, nw, wcopy), "world model bitwise unchanged");
    /* a batch that does not fit */
    ew_pt_batch bad;
    make_batch(&bad, 2, 2, 3);
    CHECK(ew_mpur_step(g, &wm, &p, opt, &mc, &us, &bad, 5.0f, 1, &t1, err, sizeof err) == -1 && strstr(err, "mpur"),
          "short batch refused: %s", err);
    ew_pt_batch_free(&bad);
    ew_optim_free(opt);
    free(wcopy);
    ew_mpur_ustats_free(&us);
    ew_pt_batch_free(&b);
    ew_graph_destroy(g);
    ew_policy_free(&p);
    ew_fm_free(&wm);
}

/* The oracle world and the rear weight: one vehicle block in the LOGGED future frames only
 * (the observed frames are empty), behind or ahead of the ego. The proximity term sees it
 * (so the rollout's images are the logged future), is linear in the rear weight behind the
 * ego (0 at weight 0, half at weight 0.5) and ignores the weight ahead. */
static double oracle_prox(ew_graph *g, ew_fm *wm, ew_policy *p, ew_pt_batch *b, int behind, float rear_weight) {
    char err[256] = "";
    ew_mpur_config mc;
    setup_cost(&mc, wm, p);
    mc.u_samples = 0;
    mc.oracle = 1;
    mc.rear_weight = rear_weight;
    mc.cost.lambda_l = mc.cost.lambda_o = 0.0f;
    const int H = b->H, W = b->W, T = b->T;
    memset(b->frames, 0, sizeof(float) * (size_t)b->B * b->n_cond * b->C * H * W);
    memset(b->tframes, 0, sizeof(float) * (size_t)b->B * T * b->C * H * W);
    for (int r = 0; r < b->B; r++) {
        const float *s1 = b->states + ((size_t)r * b->n_cond + b->n_cond - 1) * 5;
        for (int t = 0; t < T; t++) {
            float *ts = b->tstates + ((size_t)r * T + t) * 5;
            memcpy(ts, s1, sizeof(float) * 5);
            ts[0] = s1[0] + 0.1f * (float)(t + 1) * s1[4];
            float *veh = b->tframes + (((size_t)r * T + t) * b->C + 1) * H * W;
            int r0 = behind ? H - 3 : 0; /* rows 10-12 behind (f < -3.4 m), 0-2 ahead */
            for (int i = r0; i < r0 + 3; i++)
                for (int k = 3; k < 7; k++) veh[(size_t)i * W + k] = 1.0f;
        }
    }
    ew_mpur_terms tm;
    int rc = ew_mpur_step(g, wm, p, NULL, &mc, NULL, b, 0.0f, 5, &tm, err, sizeof err);
    CHECK(rc == 0, "oracle objective: %s", err);
    return rc ? NAN : (double)tm.prox;
}

static void test_oracle_rear(ew_backend *be) {
    char err[256] = "";
    ew_fm_config fc = fm_tiny_config(EW_FM_KM, 1);
    ew_fm_stats st = fm_test_stats();
    ew_fm wm;
    if (tiny_frozen_world(&wm, EW_FM_KM, 1, fc.dropout, 0)) return;
    ew_policy_config pc = tiny_policy_config(3);
    ew_policy p;
    CHECK(ew_policy_init(&p, &pc, &st, err, sizeof err) == 0, "policy init: %s", err);
    ew_pt_batch b;
    make_batch(&b, 2, 5, 41);
    ew_graph *g = ew_graph_create(be, 0);
    ew_mpur_config mc;
    setup_cost(&mc, &wm, &p);
    mc.oracle = 1;
    ew_mpur_terms tm;
    CHECK(ew_mpur_step(g, &wm, &p, NULL, &mc, NULL, &b, 0.0f, 5, &tm, err, sizeof err) == -1 && strstr(err, "oracle"),
          "the oracle without the logged future is refused: %s", err);
    CHECK(ew_pt_batch_alloc_targets(&b) == 0, "targets");
    double back1 = oracle_prox(g, &wm, &p, &b, 1, 1.0f), back0 = oracle_prox(g, &wm, &p, &b, 1, 0.0f);
    double backh = oracle_prox(g, &wm, &p, &b, 1, 0.5f);
    double front1 = oracle_prox(g, &wm, &p, &b, 0, 1.0f), front0 = oracle_prox(g, &wm, &p, &b, 0, 0.0f);
    CHECK(back1 > 1e-3, "a vehicle behind in the logged future costs (%g)", back1);
    CHECK(back0 == 0.0, "rear weight 0: no cost from behind (%g)", back0);
    CHECK(fabs(backh - 0.5 * back1) <= 1e-5 * back1, "rear weight 0.5: half the cost (%g vs %g)", backh, back1);
    CHECK(front1 > 1e-3 && front1 == front0, "ahead: the rear weight does not matter (%g, %g)", front1, front0);
    ew_pt_batch_free(&b);
    ew_graph_destroy(g);
    ew_policy_free(&p);
    ew_fm_free(&wm);
}

int main(void) {
    ew_backend *be = ew_backend_cpu_create(1);
    test_gradient(be, 1, 0.5f, 1.0f);
    test_gradient(be, 0, 0.5f, 1.0f);
    test_gradient(be, 1, 300.0f, 1.0f); /* the uncertainty term dominates */
    test_gradient(be, 1, 0.5f, 0.3f);   /* vehicles behind the ego down-weighted */
    test_oracle_rear(be);
    test_step(be);
    ew_backend_destroy(be);
    return check_done();
}
