/* test_fm_grad.c - gradients of the whole world model (tiny stochastic configurations of all
 * three variants, an unroll of 3 steps with dropout, z-dropout mixing prior and posterior
 * steps, KL weight 1) against central finite differences, with respect to a sample of every
 * parameter tensor and to every action. The randomness is re-seeded identically for each
 * evaluation, so the loss is a fixed piecewise-smooth function. LeakyReLU kinks: an element
 * passes when one step of the ladder agrees (a wrong gradient agrees with none). */
#include "tests/test_fm_util.h"

typedef struct {
    ew_fm *m;
    fm_test_batch *tb;
    float *actions; /* mutable copy */
    uint64_t seed;
    int prior_steps;
} ctx;

static ew_tensor *loss_of(ew_graph *g, ctx *c, ew_tensor **act_out) {
    const ew_fm_config *cf = &c->m->cfg;
    int B = c->tb->b.batch, T = c->tb->b.steps;
    int fs[4] = {B, cf->n_cond * 3, cf->height, cf->width}, ss[3] = {B, cf->n_cond, 5}, as[3] = {B, T, 2};
    int tfs[5] = {B, T, 3, cf->height, cf->width}, tss[3] = {B, T, 5};
    ew_graph_reset(g);
    ew_fm_inputs in = {ew_tensor_wrap(g, 4, fs, c->tb->b.frames), ew_tensor_wrap(g, 3, ss, c->tb->b.states),
                       ew_tensor_wrap(g, 3, as, c->actions), ew_tensor_wrap(g, 5, tfs, c->tb->b.target_frames),
                       ew_tensor_wrap(g, 3, tss, c->tb->b.target_states)};
    ew_requires_grad(in.actions, 1);
    if (act_out) *act_out = in.actions;
    ew_rng r;
    ew_rng_seed(&r, c->seed);
    ew_fm_unroll_opts o = {1, EW_FM_Z_POSTERIOR, 0.5f, NULL, &r};
    ew_fm_unroll_out out;
    if (ew_fm_unroll(g, c->m, &in, &o, &out)) return NULL;
    c->prior_steps = out.prior_steps;
    return out.loss;
}

static double eval(ew_graph *g, ctx *c) {
    int old = ew_set_grad_enabled(g, 0);
    ew_tensor *l = loss_of(g, c, NULL);
    ew_set_grad_enabled(g, old);
    return l ? (double)l->data[0] : NAN;
}

static int fd_ok(ew_graph *g, ctx *c, float *v, double analytic, double *num_out) {
    static const double ladder[5] = {1e-2, 3e-3, 1e-3, 3e-4, 1e-4};
    float keep = *v;
    int ok = 0;
    for (int e = 0; e < 5 && !ok; e++) {
        float hp = keep + (float)ladder[e], hm = keep - (float)ladder[e];
        *v = hp;
        double lp = eval(g, c);
        *v = hm;
        double lm = eval(g, c);
        double num = (lp - lm) / ((double)hp - (double)hm);
        if (e == 0) *num_out = num;
        ok = fabs(num - analytic) <= 3e-4 + 3e-2 * fmax(fabs(num), fabs(analytic));
    }
    *v = keep;
    return ok;
}

static void check_variant(ew_backend *be, ew_fm_variant v) {
    char err[256] = "";
    ew_fm_config cf = fm_tiny_config(v, 1);
    cf.beta = 1.0f;
    ew_fm_stats st = fm_test_stats();
    ew_fm m;
    if (ew_fm_init(&m, &cf, &st, err, sizeof err)) {
        CHECK(0, "init: %s", err);
        return;
    }
    fm_test_batch tb;
    fm_test_batch_make(&tb, &cf, 2, 3, 31);
    ctx c = {&m, &tb, malloc(sizeof(float) * 2 * 3 * 2), 0, 0};
    memcpy(c.actions, tb.b.actions, sizeof(float) * 12);
    ew_graph *g = ew_graph_create(be, 0);
    /* a seed whose z-dropout coins give both prior and posterior steps */
    for (c.seed = 1; c.seed < 100; c.seed++) {
        eval(g, &c);
        if (c.prior_steps > 0 && c.prior_steps < 3) break;
    }
    CHECK(c.prior_steps > 0 && c.prior_steps < 3, "seed mixing prior and posterior steps");
    int np;
    ew_param *p = ew_fm_params(&m, &np);
    ew_zero_grad(p, np);
    ew_tensor *act;
    ew_tensor *loss = loss_of(g, &c, &act);
    CHECK(loss && ew_backward(g, loss) == 0, "backward: %s", ew_graph_error(g) ? ew_graph_error(g) : "");
    float ga[12];
    memcpy(ga, ew_tensor_grad(g, act), sizeof ga);
    const char *vn = ew_fm_variant_name(v);
    ew_rng r;
    ew_rng_seed(&r, 99);
    int tensors_checked = 0;
    for (int i = 0; i < np; i++) {
        size_t n = ew_param_numel(&p[i]);
        double gn = 0;
        for (size_t k = 0; k < n; k++) gn += (double)p[i].grad[k] * p[i].grad[k];
        CHECK(gn > 0.0, "%s: %s receives a gradient", vn, p[i].name);
        float *gcopy = malloc(sizeof(float) * n);
        memcpy(gcopy, p[i].grad, sizeof(float) * n);
        int fails = 0;
        double wa = 0, wn = 0;
        for (int s = 0; s < 3; s++) {
            size_t k = n <= 3 ? (size_t)s % n : ew_rng_below(&r, (uint32_t)n);
            double num;
            if (!fd_ok(g, &c, &p[i].data[k], gcopy[k], &num)) {
                fails++;
                wa = gcopy[k];
                wn = num;
            }
        }
        CHECK(fails == 0, "%s: %s: %d of 3 elements off (analytic %g, numeric %g)", vn, p[i].name, fails, wa, wn);
        tensors_checked++;
        free(gcopy);
    }
    CHECK(tensors_checked == np && np >= 40, "%s: %d parameter tensors checked", vn, np);
    int afails = 0;
    double wa = 0, wn = 0, gsum = 0;
    for (int k = 0; k < 12; k++) {
        double num;
        gsum += fabs(ga[k]);
        if (!fd_ok(g, &c, &c.actions[k], ga[k], &num)) {
            afails++;
            wa = ga[k];
            wn = num;
        }
    }
    CHECK(afails == 0 && gsum > 0, "%s: actions: %d of 12 off (analytic %g, numeric %g)", vn, afails, wa, wn);
    ew_graph_destroy(g);
    free(c.actions);
    fm_test_batch_free(&tb);
    ew_fm_free(&m);
}

/* The kinematic equations in double on (normalised state, action) for the reference. */
static void kin_ref_double(const ew_fm_kin *k, const double *x, double *out) {
    double u[5], v[5];
    for (int i = 0; i < 5; i++) u[i] = x[i] * k->std[i] + k->mean[i];
    double dt = k->dt, sp = u[4], kk = x[6] * sp * dt;
    v[0] = u[0] + dt * sp * u[2];
    v[1] = u[1] + dt * sp * u[3];
    double ex = u[2] - kk * u[3], ey = u[3] + kk * u[2], n = sqrt(ex * ex + ey * ey);
    v[2] = ex / n;
    v[3] = ey / n;
    v[4] = fmax(sp + x[5] * dt, 0.0);
    for (int i = 0; i < 5; i++) out[i] = (v[i] - k->mean[i]) / k->std[i];
}

/* The kinematic op's Jacobian against central differences in isolation (all 7 inputs). */
static void kin_jacobian(ew_backend *be) {
    ew_graph *g = ew_graph_create(be, 0);
    ew_fm_stats st = fm_test_stats();
    ew_fm_kin k;
    memcpy(k.mean, st.state_mean, sizeof k.mean);
    memcpy(k.std, st.state_std, sizeof k.std);
    k.dt = 0.1f;
    k.allow_reverse = 0;
    float phys[5] = {40.0f, 3.0f, 0.9950042f, 0.0998334f, 15.0f}, act[2] = {1.2f, 0.015f}, sn[5];
    for (int i = 0; i < 5; i++) sn[i] = (phys[i] - k.mean[i]) / k.std[i];
    float R[5] = {0.3f, -0.7f, 1.1f, 0.5f, -0.9f};
    int fails = 0;
    for (int j = 0; j < 7; j++) {
        ew_graph_reset(g);
        int s5[2] = {1, 5}, s2[2] = {1, 2};
        ew_tensor *s = ew_tensor_from(g, 2, s5, sn), *a = ew_tensor_from(g, 2, s2, act);
        ew_requires_grad(s, 1);
        ew_requires_grad(a, 1);
        ew_tensor *y = ew_fm_kin_step(g, s, a, &k);
        ew_backward_seed(g, y, R);
        double an = j < 5 ? ew_tensor_grad(g, s)[j] : ew_tensor_grad(g, a)[j - 5];
        double x[7], num = 0;
        for (int i = 0; i < 5; i++) x[i] = sn[i];
        x[5] = act[0];
        x[6] = act[1];
        for (int sgn = 0; sgn < 2; sgn++) {
            double xx[7], o[5];
            memcpy(xx, x, sizeof xx);
            xx[j] += sgn ? -1e-6 : 1e-6;
            kin_ref_double(&k, xx, o);
            for (int i = 0; i < 5; i++) num += (sgn ? -1.0 : 1.0) * R[i] * o[i] / 2e-6;
        }
        if (fabs(num - an) > 1e-5 + 1e-4 * fabs(an)) {
            fails++;
            fprintf(stderr, "kin d/d input %d: analytic %g numeric %g\n", j, an, num);
        }
    }
    CHECK(fails == 0, "kinematic op Jacobian matches finite differences");
    /* clamped speed: no gradient to a through the speed */
    ew_graph_reset(g);
    float slow[5] = {40.0f, 3.0f, 1.0f, 0.0f, 0.05f}, brake[2] = {-3.0f, 0.0f}, sn2[5];
    for (int i = 0; i < 5; i++) sn2[i] = (slow[i] - k.mean[i]) / k.std[i];
    int s5[2] = {1, 5}, s2[2] = {1, 2};
    ew_tensor *s = ew_tensor_from(g, 2, s5, sn2), *a = ew_tensor_from(g, 2, s2, brake);
    ew_requires_grad(a, 1);
    ew_tensor *y = ew_fm_kin_step(g, s, a, &k);
    float seed4[5] = {0, 0, 0, 0, 1};
    ew_backward_seed(g, y, seed4);
    CHECK(y->data[4] * k.std[4] + k.mean[4] == 0.0f || fabsf(y->data[4] * k.std[4] + k.mean[4]) < 1e-5f,
          "speed clamped at 0");
    CHECK(ew_tensor_grad(g, a)[0] == 0.0f, "clamped side: zero gradient to a");
    ew_graph_destroy(g);
}

int main(void) {
    ew_backend *be = ew_backend_cpu_create(2);
    kin_jacobian(be);
    for (int v = 0; v < 3; v++) check_variant(be, (ew_fm_variant)v);
    ew_backend_destroy(be);
    return check_done();
}
