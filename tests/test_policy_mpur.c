/* test_policy_mpur.c - MPUR (planner/mpur.h) on tiny random world models: the objective's
 * gradient with respect to the policy parameters agrees with central finite differences
 * (stochastic FM with dropout, uncertainty term active, 3- and 4-channel policies); one Adam
 * step decreases the objective on a fixed batch and seed; the world model stays bitwise
 * unchanged and gets no gradient buffers; the uncertainty statistics under logged actions
 * have the right shape and round-trip through JSON; the objective is seeded. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "planner/mpur.h"
#include "tests/test_fm_util.h"
#include "tests/test_policy_util.h"

static void make_batch(ew_pt_batch *b, int B, int T, int C, uint64_t seed) {
    ew_pt_batch_alloc(b, B, 2, T, C, 13, 10);
    ew_rng r;
    ew_rng_seed(&r, seed);
    size_t nf = (size_t)B * 2 * C * 13 * 10;
    for (size_t i = 0; i < nf; i++) b->frames[i] = (float)ew_rng_uniform(&r);
    for (int i = 0; i < B * 2; i++) fm_rand_state(&r, b->states + 5 * i);
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
    ew_tensor *o;
    ew_mpur_terms t;
    char err[256];
    if (ew_mpur_objective(x->g, x->wm, x->p, x->c, x->us, x->b, x->seed, 0, &o, &t, err, sizeof err)) {
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

static int fm_equal(ew_fm *a, const float *copy) {
    int n;
    ew_param *pa = ew_fm_params(a, &n);
    return params_equal(pa, n, copy);
}

static float *fm_copy(ew_fm *a) {
    int n;
    ew_param *pa = ew_fm_params(a, &n);
    return params_copy(pa, n);
}

static void run(ew_backend *be, ew_fm_variant v, int stochastic, int channels) {
    char err[256] = "";
    ew_fm_stats st = fm_test_stats();
    ew_fm wm;
    if (tiny_frozen_world(&wm, v, stochastic, 0.2f, 0)) return;
    int nw;
    ew_param *wp = ew_fm_params(&wm, &nw);
    int nograd = 1;
    for (int i = 0; i < nw; i++) nograd &= wp[i].grad == NULL;
    CHECK(nograd, "frozen world model has no gradient buffers");
    float *wcopy = fm_copy(&wm);
    ew_policy_config pc = tiny_policy_config(channels);
    ew_policy p;
    CHECK(ew_policy_init(&p, &pc, &st, err, sizeof err) == 0, "policy init: %s", err);
    ew_mpur_config mc;
    ew_mpur_config_default(&mc, &wm, &p);
    mc.horizon = 4;
    mc.u_samples = 3;
    mc.cost.lambda_u = 0.5f;
    enum { B = 3 };
    ew_pt_batch b;
    make_batch(&b, B, 5, channels, 17);
    ew_graph *g = ew_graph_create(be, 0);
    /* uncertainty statistics under the logged actions */
    ew_cost_unc_acc ai, ac;
    ew_cost_unc_acc_init(&ai, mc.horizon);
    ew_cost_unc_acc_init(&ac, mc.horizon);
    for (int k = 0; k < 3; k++)
        CHECK(ew_mpur_ustats_add(g, &wm, &mc, &b, 100 + (uint64_t)k, &ai, &ac, err, sizeof err) == 0, "ustats: %s", err);
    CHECK(ai.n == 3 * B, "rows %ld", ai.n);
    ew_mpur_ustats us;
    ew_mpur_ustats_alloc(&us, mc.horizon);
    ew_cost_unc_acc_finish(&ai, us.img_mean, us.img_std);
    ew_cost_unc_acc_finish(&ac, us.cost_mean, us.cost_std);
    us.rows = ai.n;
    int pos = 1;
    for (int t = 0; t < mc.horizon; t++) pos &= us.img_mean[t] > 0 && us.img_std[t] > 0 && us.cost_mean[t] >= 0;
    CHECK(pos, "dropout makes the replays differ: img var mean %g", (double)us.img_mean[0]);
    char *js = ew_mpur_ustats_json(&us);
    ew_mpur_ustats us2;
    CHECK(js && ew_mpur_ustats_from_json(js, &us2, err, sizeof err) == 0, "json: %s", err);
    CHECK(us2.T == us.T && us2.rows == us.rows && !memcmp(us2.img_mean, us.img_mean, sizeof(float) * 4 * us.T),
          "ustats JSON round trip");
    ew_mpur_ustats_free(&us2);
    CHECK(ew_mpur_ustats_from_json("{\"T\": 2}", &us2, err, sizeof err) == -1 && strstr(err, "mpur metadata"), "%s", err);
    free(js);
    ew_cost_unc_acc_free(&ai);
    ew_cost_unc_acc_free(&ac);

    /* gradient w.r.t. policy parameters, hinge low so the uncertainty term is active; the mask
     * speed is detached by design (cost.h), so finite differences can only match where it
     * does not move: min_speed above every speed (constant masks), no action/jerk terms
     * (their lateral term uses the detached speed too) */
    mc.hinge = -5.0f;
    ew_mpur_config keep_c = mc;
    mc.cost.min_speed = 100.0f;
    mc.cost.w_action = 0.0f;
    mc.cost.w_jerk = 0.0f;
    ctx x = {g, &wm, &p, &mc, &us, &b, 77};
    int np;
    ew_param *pp = ew_policy_params(&p, &np);
    ew_zero_grad(pp, np);
    ew_tensor *obj;
    ew_mpur_terms tm;
    CHECK(ew_mpur_objective(g, &wm, &p, &mc, &us, &b, x.seed, 1, &obj, &tm, err, sizeof err) == 0, "objective: %s", err);
    CHECK(tm.uncertainty > 0.0f && tm.cost > 0.0f && tm.prox >= 0.0f, "terms: unc %g cost %g", (double)tm.uncertainty,
          (double)tm.cost);
    CHECK(fabsf(tm.objective - (tm.cost + mc.cost.lambda_u * tm.uncertainty)) <= 1e-5f * fmaxf(1.0f, tm.objective),
          "objective = cost + lambda_u * uncertainty");
    CHECK(ew_backward(g, obj) == 0, "backward: %s", ew_graph_error(g) ? ew_graph_error(g) : "");
    ew_rng r;
    ew_rng_seed(&r, 4);
    int bad = 0, tested = 0, nonzero = 0, big = 0;
    double num;
    obj_scale = fmax(1.0, fabs(eval(&x)));
    for (int i = 0; i < np; i++) {
        size_t m = ew_param_numel(&pp[i]);
        for (int k = 0; k < 8; k++) {
            size_t j = ew_rng_below(&r, (uint32_t)m);
            tested++;
            nonzero += pp[i].grad[j] != 0.0f;
            big += fabs(pp[i].grad[j]) > 4e-4 * obj_scale;
            if (!fd_ok(&x, &pp[i].data[j], pp[i].grad[j], &num)) {
                bad++;
                fprintf(stderr, "  %s[%zu]: analytic %.6g numeric %.6g\n", pp[i].name, j, (double)pp[i].grad[j], num);
            }
        }
    }
    CHECK(bad == 0, "%d of %d policy parameter elements disagree (%s, stochastic %d, channels %d)", bad, tested,
          ew_fm_variant_name(v), stochastic, channels);
    CHECK(nonzero > tested / 2, "gradients reach the policy through the world model (%d of %d nonzero)", nonzero, tested);
    CHECK(big >= 10, "%d of %d gradients well above the finite-difference noise", big, tested);
    mc = keep_c;
    CHECK(fm_equal(&wm, wcopy), "world model unchanged by forward/backward");

    /* seeded: same seed, same objective; another seed (other latents/masks), another */
    double o1 = eval(&x), o2 = eval(&x);
    x.seed = 78;
    double o3 = eval(&x);
    x.seed = 77;
    CHECK(o1 == o2, "same seed, same objective (%g, %g)", o1, o2);
    CHECK(o1 != o3 || !stochastic, "another seed, another objective");

    /* one Adam step decreases the objective on the fixed batch and seed */
    mc.hinge = 0.5f;
    double before = eval(&x);
    ew_optim_config oc = ew_optim_defaults(EW_OPTIM_ADAM);
    oc.lr = 1e-3f;
    ew_optim *opt;
    ew_optim_create(pp, np, &oc, &opt, err, sizeof err);
    ew_mpur_terms t1;
    CHECK(ew_mpur_step(g, &wm, &p, opt, &mc, &us, &b, 5.0f, x.seed, &t1, err, sizeof err) == 0, "step: %s", err);
    CHECK(fabs(t1.objective - before) <= 1e-6 * fmax(1.0, fabs(before)), "step reports the objective before the update");
    CHECK(t1.grad_norm > 0.0f && isfinite(t1.grad_norm), "grad norm %g", (double)t1.grad_norm);
    double after = eval(&x);
    CHECK(after < before, "one step: objective %.9g -> %.9g", before, after);
    CHECK(fm_equal(&wm, wcopy), "world model bitwise unchanged by the Adam step");
    /* evaluation only (no optimizer) changes nothing */
    float *pcopy = malloc(sizeof(float) * ew_param_numel(&pp[0]));
    memcpy(pcopy, pp[0].data, sizeof(float) * ew_param_numel(&pp[0]));
    CHECK(ew_mpur_step(g, &wm, &p, NULL, &mc, &us, &b, 5.0f, x.seed, &t1, err, sizeof err) == 0, "eval step: %s", err);
    CHECK(!memcmp(pcopy, pp[0].data, sizeof(float) * ew_param_numel(&pp[0])), "evaluation leaves the policy unchanged");
    free(pcopy);
    /* a horizon longer than the batch is refused */
    mc.horizon = 9;
    CHECK(ew_mpur_step(g, &wm, &p, opt, &mc, &us, &b, 5.0f, 1, &t1, err, sizeof err) == -1 && strstr(err, "mpur"),
          "%s", err);
    ew_optim_free(opt);
    ew_mpur_ustats_free(&us);
    ew_graph_destroy(g);
    ew_pt_batch_free(&b);
    ew_policy_free(&p);
    ew_fm_free(&wm);
    free(wcopy);
}

static void test_mismatch(void) {
    char err[256];
    ew_fm_config fc = fm_tiny_config(EW_FM_PLAIN, 0);
    ew_fm wm;
    ew_fm_init(&wm, &fc, NULL, err, sizeof err);
    ew_policy_config pc = tiny_policy_config(3);
    pc.n_cond = 3;
    ew_policy p;
    ew_policy_init(&p, &pc, NULL, err, sizeof err);
    CHECK(ew_mpur_check(&wm, &p, err, sizeof err) == -1 && strstr(err, "n_cond 3"), "%s", err);
    ew_policy_free(&p);
    ew_fm_free(&wm);
}

int main(void) {
    ew_backend *be = ew_backend_cpu_create(1);
    run(be, EW_FM_PLAIN, 1, 3);
    run(be, EW_FM_KM, 1, 4);
    run(be, EW_FM_PLAIN, 0, 3);
    test_mismatch();
    ew_backend_destroy(be);
    return check_done();
}
