/* test_fm_km.c - the FM-KM variants' state output is the kinematic model of sim/ego.h exactly:
 * bit for bit equal to ew_fm_kin_ref chained on the model's own (normalised) outputs, within
 * float rounding of the equations applied to physical states directly; the test's own scalar
 * equations equal sim/ego.c's ew_kin_step bit for bit; the output is independent of the network weights; the FM variant's state is
 * the last state plus the head's delta. */
#include "tests/test_fm_util.h"

#include "sim/ego.h"

/* The equations on physical floats (DESIGN.md section 3). */
static void kin_phys(const float *s, const float *u, float dt, float *o) {
    o[0] = s[0] + dt * s[4] * s[2];
    o[1] = s[1] + dt * s[4] * s[3];
    float k = u[1] * s[4] * dt, ex = s[2] - k * s[3], ey = s[3] + k * s[2], n = sqrtf(ex * ex + ey * ey);
    o[2] = ex / n;
    o[3] = ey / n;
    o[4] = fmaxf(s[4] + u[0] * dt, 0.0f);
}

static int unroll_states(ew_backend *be, ew_fm *m, fm_test_batch *tb, float *norm, float *phys) {
    ew_graph *g = ew_graph_create(be, 0);
    const ew_fm_config *c = &m->cfg;
    int B = tb->b.batch, T = tb->b.steps;
    int fs[4] = {B, c->n_cond * 3, c->height, c->width}, ss[3] = {B, c->n_cond, 5}, as[3] = {B, T, 2};
    int tfs[5] = {B, T, 3, c->height, c->width};
    ew_fm_inputs in = {ew_tensor_wrap(g, 4, fs, tb->b.frames), ew_tensor_wrap(g, 3, ss, tb->b.states),
                       ew_tensor_wrap(g, 3, as, tb->b.actions), ew_tensor_wrap(g, 5, tfs, tb->b.target_frames), NULL};
    ew_rng r;
    ew_rng_seed(&r, 3);
    ew_fm_unroll_opts o = {1, EW_FM_Z_POSTERIOR, 0.5f, NULL, &r};
    ew_fm_unroll_out out;
    int rc = ew_fm_unroll(g, m, &in, &o, &out);
    CHECK(rc == 0, "unroll: %s", ew_graph_error(g) ? ew_graph_error(g) : "");
    if (!rc)
        for (int t = 0; t < T; t++)
            for (int b = 0; b < B; b++) {
                memcpy(norm + ((size_t)b * T + t) * 5, out.states[t]->data + 5 * b, 5 * sizeof(float));
                memcpy(phys + ((size_t)b * T + t) * 5, out.states_phys[t]->data + 5 * b, 5 * sizeof(float));
            }
    ew_graph_destroy(g);
    return rc;
}

static void km_exact(ew_backend *be, ew_fm_variant v, int stochastic) {
    char err[256] = "";
    ew_fm_config c = fm_tiny_config(v, stochastic);
    ew_fm_stats st = fm_test_stats();
    ew_fm m, m2;
    enum { B = 3, T = 6 };
    fm_test_batch tb;
    fm_test_batch_make(&tb, &c, B, T, 12);
    /* one sample brakes hard so the speed clamp is exercised */
    tb.b.states[(size_t)(0 * c.n_cond + c.n_cond - 1) * 5 + 4] = 1.0f;
    for (int t = 0; t < T; t++) tb.b.actions[2 * t] = -4.0f;
    CHECK(ew_fm_init(&m, &c, &st, err, sizeof err) == 0, "init: %s", err);
    ew_fm_config c2 = c;
    c2.seed = 99;
    CHECK(ew_fm_init(&m2, &c2, &st, err, sizeof err) == 0, "init: %s", err);
    float norm[B * T * 5], phys[B * T * 5], norm2[B * T * 5], phys2[B * T * 5];
    if (unroll_states(be, &m, &tb, norm, phys) || unroll_states(be, &m2, &tb, norm2, phys2)) return;
    ew_fm_kin k = ew_fm_kinematics(&m);
    int exact = 1, close = 1, clamped = 0;
    double worst = 0;
    for (int b = 0; b < B; b++) {
        float sn[5], sp[5], next[5], nextp[5];
        const float *last = tb.b.states + ((size_t)b * c.n_cond + c.n_cond - 1) * 5;
        for (int i = 0; i < 5; i++) sn[i] = (last[i] - st.state_mean[i]) / st.state_std[i];
        memcpy(sp, last, sizeof sp);
        for (int t = 0; t < T; t++) {
            const float *u = tb.b.actions + ((size_t)b * T + t) * 2;
            ew_fm_kin_ref(&k, sn, u, next);
            kin_phys(sp, u, c.dt, nextp);
            exact &= !memcmp(next, norm + ((size_t)b * T + t) * 5, sizeof next);
            for (int i = 0; i < 5; i++) {
                double d = fabs((double)nextp[i] - phys[((size_t)b * T + t) * 5 + i]);
                double tol = i < 2 ? 1e-4 : 2e-5;
                if (d > tol) close = 0;
                if (d > worst) worst = d;
            }
            ew_kin_state ks = {sp[0], sp[1], sp[2], sp[3], sp[4]}, ko;
            ew_action ua = {u[0], u[1]};
            ew_kin_step(&ks, ua, c.dt, 0, &ko);
            float ego[5] = {ko.x, ko.y, ko.dx, ko.dy, ko.s};
            CHECK(!memcmp(ego, nextp, sizeof ego), "own scalar equations equal ew_kin_step bit for bit (sample %d step %d)", b,
                  t);
            clamped += nextp[4] == 0.0f;
            memcpy(sn, next, sizeof sn);
            memcpy(sp, nextp, sizeof sp);
        }
    }
    const char *vn = ew_fm_variant_name(v);
    CHECK(exact, "%s/%d: state output bit-identical to the kinematic reference chained on normalised states", vn,
          stochastic);
    CHECK(close, "%s/%d: physical states match the equations on physical floats (worst %g)", vn, stochastic, worst);
    CHECK(clamped >= 3, "%s: the braking sample stops and stays at speed 0 (%d steps)", vn, clamped);
    CHECK(!memcmp(norm, norm2, sizeof norm), "%s: states independent of the network weights", vn);
    ew_fm_free(&m);
    ew_fm_free(&m2);
    fm_test_batch_free(&tb);
}

/* FM: next state = last state + head delta; with the head's last layer zeroed, the state
 * stays exactly the last state. */
static void fm_residual_state(ew_backend *be) {
    char err[256] = "";
    ew_fm_config c = fm_tiny_config(EW_FM_PLAIN, 0);
    ew_fm_stats st = fm_test_stats();
    ew_fm m;
    CHECK(ew_fm_init(&m, &c, &st, err, sizeof err) == 0, "init: %s", err);
    ew_linear_layer *lastl = &m.head.layers[m.head.nlayers - 1];
    memset(lastl->weight.data, 0, sizeof(float) * ew_param_numel(&lastl->weight));
    memset(lastl->bias.data, 0, sizeof(float) * ew_param_numel(&lastl->bias));
    enum { B = 2, T = 3 };
    fm_test_batch tb;
    fm_test_batch_make(&tb, &c, B, T, 4);
    float norm[B * T * 5], phys[B * T * 5];
    if (unroll_states(be, &m, &tb, norm, phys)) return;
    int same = 1;
    for (int b = 0; b < B; b++) {
        float sn[5];
        ew_fm_normalize_states(&m, tb.b.states + ((size_t)b * c.n_cond + c.n_cond - 1) * 5, sn, 1);
        for (int t = 0; t < T; t++) same &= !memcmp(sn, norm + ((size_t)b * T + t) * 5, sizeof sn);
    }
    CHECK(same, "FM with a zero head keeps the last state");
    ew_fm_free(&m);
    fm_test_batch_free(&tb);
}

int main(void) {
    ew_backend *be = ew_backend_cpu_create(1);
    for (int v = 1; v < 3; v++)
        for (int s = 0; s < 2; s++) km_exact(be, (ew_fm_variant)v, s);
    fm_residual_state(be);
    ew_backend_destroy(be);
    return check_done();
}
