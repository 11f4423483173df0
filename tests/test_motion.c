#define _POSIX_C_SOURCE 200809L
/* test_motion.c - the motion predictor's Gaussian NLL (against a double closed form, and its
 * gradient against finite differences), calibration (coverage of 1 and 2 sigma ellipses on
 * samples drawn from known Gaussians: 39.3 % and 86.5 %; an over- and an under-dispersed
 * model miss), and a short training run on synthetic accelerating vehicles that must beat
 * constant velocity at 3 s. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "models/motion.h"
#include "tests/check.h"

static ew_backend *be;
static ew_graph *g;

enum { N = 3, K = 4 };
static float T_x[N * K], T_y[N * K];

static ew_tensor *nll_of(float *v) { /* v: 5 blocks of N*K: mx my sx sy rho */
    int s[2] = {N, K};
    ew_tensor *t[5];
    for (int c = 0; c < 5; c++) {
        t[c] = ew_tensor_from(g, 2, s, v + c * N * K);
        ew_requires_grad(t[c], 1);
    }
    ew_tensor *l = ew_gauss2d_nll(g, t[0], t[1], t[2], t[3], t[4], T_x, T_y);
    if (l) l->base = NULL;
    return l;
}

static void test_nll(void) {
    ew_rng r;
    ew_rng_seed(&r, 3);
    float v[5 * N * K];
    for (int i = 0; i < N * K; i++) {
        v[i] = (float)ew_rng_normal(&r);
        v[N * K + i] = (float)ew_rng_normal(&r);
        v[2 * N * K + i] = (float)ew_rng_range(&r, 0.5, 2.0);
        v[3 * N * K + i] = (float)ew_rng_range(&r, 0.5, 2.0);
        v[4 * N * K + i] = (float)ew_rng_range(&r, -0.8, 0.8);
        T_x[i] = (float)ew_rng_normal(&r);
        T_y[i] = (float)ew_rng_normal(&r);
    }
    ew_graph_reset(g);
    int s[2] = {N, K};
    ew_tensor *t[5];
    for (int c = 0; c < 5; c++) {
        t[c] = ew_tensor_from(g, 2, s, v + c * N * K);
        ew_requires_grad(t[c], 1);
    }
    ew_tensor *l = ew_gauss2d_nll(g, t[0], t[1], t[2], t[3], t[4], T_x, T_y);
    double ref = 0;
    for (int i = 0; i < N * K; i++)
        ref += ew_gauss2d_nll_ref(v[i], v[N * K + i], v[2 * N * K + i], v[3 * N * K + i], v[4 * N * K + i], T_x[i], T_y[i]);
    ref /= N * K;
    CHECK_NEAR(l->data[0], ref, 1e-5 * (1 + fabs(ref)));
    /* a standard normal at its mean: log(2 pi) */
    CHECK_NEAR(ew_gauss2d_nll_ref(0, 0, 1, 1, 0, 0, 0), log(2 * 3.14159265358979323846), 1e-12);
    /* the closed form integrates to 1: sum of exp(-nll) over a fine grid */
    double mass = 0;
    for (double x = -12; x < 12; x += 0.02)
        for (double y = -12; y < 12; y += 0.02) mass += exp(-ew_gauss2d_nll_ref(0.3, -0.2, 1.5, 0.8, 0.6, x, y)) * 4e-4;
    CHECK_NEAR(mass, 1.0, 1e-3);
    CHECK(ew_backward(g, l) == 0, "backward");
    float an[5 * N * K];
    for (int c = 0; c < 5; c++) memcpy(an + c * N * K, ew_tensor_grad(g, t[c]), sizeof(float) * N * K);
    double worst = 0;
    int old = ew_set_grad_enabled(g, 0);
    for (int i = 0; i < 5 * N * K; i++) {
        double h = 1e-3, f[2];
        float keep = v[i];
        for (int k = 0; k < 2; k++) {
            v[i] = keep + (float)(k ? -h : h);
            ew_graph_reset(g);
            f[k] = nll_of(v)->data[0];
        }
        v[i] = keep;
        double fd = (f[0] - f[1]) / (2 * h), e = fabs(fd - an[i]) / (1 + fabs(fd));
        if (e > worst) worst = e;
    }
    ew_set_grad_enabled(g, old);
    CHECK(worst < 3e-3, "NLL gradient vs finite differences: worst relative error %.2e", worst);
}

/* Coverage of samples from N(m, S) under the predicted (m, scale * S). */
static void coverage(double scale, double *c1, double *c2) {
    ew_rng r;
    ew_rng_seed(&r, 9);
    int n = 200000, in1 = 0, in2 = 0;
    for (int i = 0; i < n; i++) {
        double sx = ew_rng_range(&r, 0.2, 3.0), sy = ew_rng_range(&r, 0.2, 3.0), rho = ew_rng_range(&r, -0.9, 0.9);
        double a = ew_rng_normal(&r), b = ew_rng_normal(&r);
        double x = 1.0 + sx * a, y = -2.0 + sy * (rho * a + sqrt(1 - rho * rho) * b);
        double d2 = ew_gauss2d_maha2(1.0, -2.0, sx * scale, sy * scale, rho, x, y);
        in1 += d2 <= 1.0;
        in2 += d2 <= 4.0;
    }
    *c1 = (double)in1 / n;
    *c2 = (double)in2 / n;
}

static void test_calibration(void) {
    double c1, c2;
    coverage(1.0, &c1, &c2);
    CHECK_NEAR(c1, 1 - exp(-0.5), 0.005);
    CHECK_NEAR(c2, 1 - exp(-2.0), 0.005);
    coverage(2.0, &c1, &c2); /* over-dispersed: too many inside */
    CHECK(c1 > 0.8 && c2 > 0.99, "over-dispersed %.3f %.3f", c1, c2);
    coverage(0.5, &c1, &c2); /* under-dispersed */
    CHECK(c1 < 0.15 && c2 < 0.45, "under-dispersed %.3f %.3f", c1, c2);
}

/* Synthetic vehicles: constant acceleration hidden in the history; CV ignores it. */
static void make(ew_rng *r, ew_motion_sample *s) {
    double v = ew_rng_range(r, 20, 35), a = ew_rng_range(r, -3, 3), y0 = ew_rng_range(r, 0, 11);
    for (int t = 0; t < EW_MOTION_HIST + EW_MOTION_FUT; t++) {
        double tt = (t - (EW_MOTION_HIST - 1)) * 0.1;
        float *p = t < EW_MOTION_HIST ? s->hist[t] : s->fut[t - EW_MOTION_HIST];
        p[0] = (float)(v * tt + 0.5 * a * tt * tt);
        p[1] = (float)y0;
    }
    memset(s->crop, 0, sizeof s->crop);
    memset(s->ctx, 0, sizeof s->ctx);
}

static void test_learns(void) {
    ew_motion m;
    ew_motion_config c;
    ew_motion_config_default(&c);
    c.hidden = 32;
    char err[256];
    CHECK(ew_motion_init(&m, &c, 1, err, sizeof err) == 0, "%s", err);
    ew_optim_config oc = ew_optim_defaults(EW_OPTIM_ADAM);
    oc.lr = 3e-3f;
    ew_optim *opt;
    CHECK(ew_optim_create(m.params.items, m.params.n, &oc, &opt, err, sizeof err) == 0, "%s", err);
    ew_rng r;
    ew_rng_seed(&r, 4);
    enum { B = 32 };
    ew_motion_sample *s = malloc(sizeof *s * 256);
    float first = 0, last = 0, l;
    for (int step = 0; step < 300; step++) {
        for (int i = 0; i < B; i++) make(&r, &s[i]);
        CHECK(ew_motion_train_step(&m, opt, g, s, B, &l, err, sizeof err) == 0, "%s", err);
        if (step == 0) first = l;
        last = l;
    }
    for (int i = 0; i < 256; i++) make(&r, &s[i]);
    float *out = malloc(sizeof(float) * 256 * EW_MOTION_FUT * 5), cv[2 * EW_MOTION_FUT];
    CHECK(ew_motion_predict(&m, g, s, 256, out, err, sizeof err) == 0, "%s", err);
    double em = 0, ec = 0;
    for (int i = 0; i < 256; i++) {
        ew_motion_cv(&s[i], 0.1f, cv);
        const float *o = out + ((size_t)i * EW_MOTION_FUT + EW_MOTION_FUT - 1) * 5;
        em += hypot(o[0] - s[i].fut[EW_MOTION_FUT - 1][0], o[1] - s[i].fut[EW_MOTION_FUT - 1][1]);
        ec += hypot(cv[2 * EW_MOTION_FUT - 2] - s[i].fut[EW_MOTION_FUT - 1][0], cv[2 * EW_MOTION_FUT - 1] - s[i].fut[EW_MOTION_FUT - 1][1]);
    }
    printf("synthetic: NLL %.3f -> %.3f; 3 s error model %.3f m, CV %.3f m\n", first, last, em / 256, ec / 256);
    CHECK(last < first - 1.0f, "NLL fell: %.3f -> %.3f", first, last);
    CHECK(em < 0.5 * ec, "model %.3f m vs CV %.3f m at 3 s", em / 256, ec / 256);
    free(out);
    free(s);
    ew_optim_free(opt);
    ew_motion_free(&m);
}

/* Calibration: predictions whose covariances are 1/3 of the true ones (plus an isotropic
 * 0.2 m noise the model did not see) get back calibrated coverage after ew_motion_calibrate
 * (fitted on the same draws: this checks the fit, not generalisation);
 * the transform keeps the covariance's form (T^2 C + diag(ax^2, ay^2)). */
static void test_calibrate(void) {
    float d[5] = {1.0f, 2.0f, 0.5f, 0.25f, 0.6f};
    ew_motion_cal cc = {{3.0f, 2.0f, 5.0f}, 0.5f, 0.3f, 0.4f, 0.0f};
    ew_motion_apply_cal(&cc, 15, 20.0f, d); /* second 2: T = 2 */
    CHECK_NEAR(d[2], sqrt(1.0 + 0.09), 1e-6);
    CHECK_NEAR(d[3], sqrt(0.25 + 0.16), 1e-6);
    CHECK_NEAR(d[4] * d[2] * d[3], 0.5 * 0.6 * 1.0 * 0.5, 1e-6); /* the covariance term c r T^2 sx sy */
    CHECK(d[0] == 1.0f && d[1] == 2.0f, "means unchanged");
    /* the speed term: beta 0.5 at 15 m/s multiplies T by e^0.5 */
    float e[5] = {0.0f, 0.0f, 0.5f, 0.25f, 0.0f};
    ew_motion_cal cb = {{2.0f, 2.0f, 2.0f}, 1.0f, 0.0f, 0.0f, 0.5f};
    ew_motion_apply_cal(&cb, 3, 15.0f, e);
    CHECK_NEAR(e[2], 0.5 * 2.0 * exp(0.5), 1e-5);
    CHECK_NEAR(e[3], 0.25 * 2.0 * exp(0.5), 1e-5);
    enum { NS = 250 };
    ew_motion_sample *s = calloc(NS, sizeof *s);
    float *pred = malloc(sizeof(float) * NS * EW_MOTION_FUT * 5);
    ew_rng r;
    ew_rng_seed(&r, 21);
    for (int i = 0; i < NS; i++)
        for (int k = 0; k < EW_MOTION_FUT; k++) {
            double sx = 0.1 + 0.1 * k * ew_rng_range(&r, 0.5, 1.5), sy = 0.05 + 0.02 * k, rho = ew_rng_range(&r, -0.5, 0.5);
            double a = ew_rng_normal(&r), b = ew_rng_normal(&r);
            s[i].fut[k][0] = (float)(sx * a + 0.2 * ew_rng_normal(&r));
            s[i].fut[k][1] = (float)(sy * (rho * a + sqrt(1 - rho * rho) * b) + 0.2 * ew_rng_normal(&r));
            float *o = pred + ((size_t)i * EW_MOTION_FUT + k) * 5;
            o[0] = 0, o[1] = 0, o[2] = (float)(sx / 3), o[3] = (float)(sy / 3), o[4] = (float)rho;
        }
    ew_motion m;
    memset(&m, 0, sizeof m);
    ew_motion_cal_none(&m.cal);
    long in1 = 0, in2 = 0, raw1 = 0;
    ew_motion_calibrate(&m, s, NS, pred);
    for (int i = 0; i < NS; i++)
        for (int k = 0; k < EW_MOTION_FUT; k++) {
            float o[5];
            memcpy(o, pred + ((size_t)i * EW_MOTION_FUT + k) * 5, sizeof o);
            raw1 += ew_gauss2d_maha2(o[0], o[1], o[2], o[3], o[4], s[i].fut[k][0], s[i].fut[k][1]) <= 1.0;
            ew_motion_apply_cal(&m.cal, k, 30.0f * s[i].ctx[3], o);
            double d2 = ew_gauss2d_maha2(o[0], o[1], o[2], o[3], o[4], s[i].fut[k][0], s[i].fut[k][1]);
            in1 += d2 <= 1.0, in2 += d2 <= 4.0;
        }
    double n = NS * EW_MOTION_FUT;
    printf("calibration: T %.3f %.3f %.3f c %.3f ax %.3f ay %.3f beta %.2f; 1 sigma %.3f -> %.3f, 2 sigma %.3f\n", m.cal.t[0],
           m.cal.t[1], m.cal.t[2], m.cal.c, m.cal.ax, m.cal.ay, m.cal.beta, raw1 / n, in1 / n, in2 / n);
    CHECK(raw1 / n < 0.15, "uncalibrated is under-dispersed: %.3f", raw1 / n);
    CHECK_NEAR(in1 / n, 1 - exp(-0.5), 0.02);
    CHECK_NEAR(in2 / n, 1 - exp(-2.0), 0.02);
    /* every draw has speed 0, so T and beta only act as T exp(2.5 beta); ax, ay trade off with it */
    double teff = m.cal.t[2] * exp(2.5 * m.cal.beta);
    CHECK(teff > 2.0 && teff < 4.0, "effective T %.3f (3)", teff);
    free(pred);
    free(s);
}

/* The calibration travels with the checkpoint; old checkpoints without motion.version are refused. */
static void test_save_load(void) {
    ew_motion m, l;
    ew_motion_config c;
    ew_motion_config_default(&c);
    c.hidden = 8;
    char err[256], path[] = "/tmp/ew_test_motion_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    close(fd);
    CHECK(ew_motion_init(&m, &c, 3, err, sizeof err) == 0, "%s", err);
    ew_motion_cal want = {{1.7f, 2.5f, 3.25f}, 0.75f, 0.25f, 0.125f, 0.375f};
    m.cal = want;
    CHECK(ew_motion_save(&m, NULL, 12, path, err, sizeof err) == 0, "%s", err);
    long step = 0;
    CHECK(ew_motion_load(&l, path, &step, err, sizeof err) == 0, "%s", err);
    CHECK(step == 12 && memcmp(&l.cal, &want, sizeof want) == 0, "step %ld cal %g %g %g %g %g %g %g", step, l.cal.t[0],
          l.cal.t[1], l.cal.t[2], l.cal.c, l.cal.ax, l.cal.ay, l.cal.beta);
    CHECK(l.params.n == m.params.n && memcmp(l.head.layers[0].weight.data, m.head.layers[0].weight.data,
                                             sizeof(float) * ew_param_numel(&m.head.layers[0].weight)) == 0,
          "weights round-trip");
    ew_motion_free(&l);
    ew_motion_free(&m);
    remove(path);
}

int main(void) {
    be = ew_backend_cpu_create(1);
    g = ew_graph_create(be, 0);
    test_nll();
    test_calibration();
    test_learns();
    test_calibrate();
    test_save_load();
    ew_graph_destroy(g);
    ew_backend_destroy(be);
    return check_done();
}
