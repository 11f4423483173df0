/* test_cost.c - planner costs (planner/cost.h): proximity behaviour, moved masks against
 * re-rendered rasters, gradients against finite differences (fast form in double, tape
 * form against the fast form and against finite differences), the uncertainty penalty. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "models/fm_kin.h"
#include "models/ops.h"
#include "planner/cost.h"
#include "sim/raster.h"
#include "sim/rng.h"

#define ROWS 117
#define COLS 24
#define HW (ROWS * COLS)
#define NCAR 8

typedef struct {
    ew_road road;
    float x[NCAR], y[NCAR], hx[NCAR], hy[NCAR], len[NCAR], wid[NCAR];
    int n;
} scene;

static void scene_init(scene *s) {
    char err[128];
    memset(s, 0, sizeof *s);
    ew_road_init_highway(&s->road, 3, 3.7f, 1000.0f, 30.0f, err, (int)sizeof err);
}

static void scene_add(scene *s, float x, float y) {
    int i = s->n++;
    s->x[i] = x;
    s->y[i] = y;
    s->hx[i] = 1.0f;
    s->hy[i] = 0.0f;
    s->len[i] = 4.6f;
    s->wid[i] = 1.9f;
}

/* Float image [3, ROWS, COLS] (channels 0-2) of the scene around pose e. */
static void render(const scene *s, const ew_kin_state *e, float *img) {
    ew_raster_cfg c;
    ew_raster_cfg_default(&c);
    ew_boxes b = {s->x, s->y, s->hx, s->hy, s->len, s->wid, s->n};
    uint8_t ras[4 * HW];
    ew_raster_ego(&c, &s->road, e, 4.8f, 1.9f, &b, ras);
    ew_raster_to_f32(ras, 3 * HW, img);
}

static ew_cost_pose pose_of(const ew_kin_state *e) {
    ew_cost_pose p = {e->x, e->y, e->dx, e->dy, e->s};
    return p;
}

static ew_kin_state kin(float x, float y, float ang, float v) {
    ew_kin_state e = {x, y, cosf(ang), sinf(ang), v};
    return e;
}

static double prox_at(const ew_cost_config *c, const scene *s, float gap) {
    scene t = *s;
    scene_add(&t, 100.0f + gap, 5.55f);
    ew_kin_state e = kin(100.0f, 5.55f, 0.0f, 15.0f);
    static float img[3 * HW];
    render(&t, &e, img);
    ew_cost_pose p = pose_of(&e);
    double o[3];
    ew_cost_image(c, img, 3, &p, &p, 15.0, o, NULL, NULL);
    return o[0];
}

static void test_proximity(void) {
    ew_cost_config c;
    ew_cost_config_default(&c);
    scene s;
    scene_init(&s);
    ew_cost_mask mk;
    ew_cost_mask_geometry(&c, 15.0, &mk);
    /* 1.5 s * 15 + 1.5 * 4.8 + 1 */
    CHECK_NEAR(mk.dp, 30.7, 1e-5);
    double p0 = prox_at(&c, &s, 1e9f); /* no car in view */
    double p8 = prox_at(&c, &s, 8.0f), p14 = prox_at(&c, &s, 14.0f), p22 = prox_at(&c, &s, 22.0f);
    double p34 = prox_at(&c, &s, 34.0f); /* rear bumper at 31.7 m > 30.7 m: outside the mask */
    printf("prox: none %.4f, 8 m %.4f, 14 m %.4f, 22 m %.4f, 34 m %.6f\n", p0, p8, p14, p22, p34);
    CHECK(p0 == 0.0, "empty road: no proximity cost (%g)", p0);
    CHECK(p8 > p14 && p14 > p22 && p22 > 0.0, "closer car costs more");
    CHECK(p8 > 0.05, "a car 8 m ahead is a real cost (%g)", p8);
    CHECK(p34 == 0.0, "beyond the safe distance: zero (%g)", p34);
    /* a car in the next lane, level with the ego: almost nothing (only anti-aliased edges) */
    scene t = s;
    scene_add(&t, 100.0f, 5.55f + 3.7f);
    ew_kin_state e = kin(100.0f, 5.55f, 0.0f, 15.0f);
    static float img[3 * HW];
    render(&t, &e, img);
    ew_cost_pose p = pose_of(&e);
    double o[3];
    ew_cost_image(&c, img, 3, &p, &p, 15.0, o, NULL, NULL);
    CHECK(o[0] < 0.02 * p8, "adjacent lane car: small proximity (%g vs %g)", o[0], p8);
    /* lane cost: centred < off-centre; off-road: zero in the middle lane, > 0 at the edge */
    ew_kin_state e1 = kin(100.0f, 5.55f + 0.8f, 0.0f, 15.0f), e2 = kin(100.0f, 1.2f, 0.0f, 15.0f);
    static float i1[3 * HW], i2[3 * HW];
    render(&s, &e, img);
    render(&s, &e1, i1);
    render(&s, &e2, i2);
    double oc[3], o1[3], o2[3];
    ew_cost_pose p1 = pose_of(&e1), p2 = pose_of(&e2);
    ew_cost_image(&c, img, 3, &p, &p, 15.0, oc, NULL, NULL);
    ew_cost_image(&c, i1, 3, &p1, &p1, 15.0, o1, NULL, NULL);
    ew_cost_image(&c, i2, 3, &p2, &p2, 15.0, o2, NULL, NULL);
    printf("lane: centred %.4f, 0.8 m off %.4f; off-road: middle %.4f, near edge %.4f\n", oc[1], o1[1], oc[2],
           o2[2]);
    CHECK(o1[1] > 1.5 * oc[1] && oc[1] > 0.0, "off-centre costs more lane cost");
    CHECK(oc[2] == 0.0 && o2[2] > 0.01, "off-road cost only near the edge");
}

/* Moving the mask from pose A to B on image A ~ the centred mask on image B rendered at B.
 * Tolerances: vehicles and the off-road area are wide regions (exact area coverage), so the
 * moved mask agrees within a few per cent (plus a small absolute floor for the first-order
 * pixel error along region edges); the default lane markings are 0.15 m bands inside 0.617 m
 * pixels, whose position inside a pixel the raster cannot show (a re-rendered lane cost moves
 * in pixel steps while the moved mask moves smoothly), so here they are drawn one pixel wide,
 * where the raster's coverage interpolates their position linearly (still up to ~10 % apart
 * when a shift and a rotation combine). */
static void test_moved_mask(void) {
    ew_cost_config c;
    ew_cost_config_default(&c);
    scene s;
    scene_init(&s);
    s.road.marking_width = 0.617f;
    scene_add(&s, 111.0f, 1.85f);
    scene_add(&s, 106.0f, 5.55f);
    scene_add(&s, 92.0f, 5.2f);
    scene_add(&s, 125.0f, 1.6f);
    static float ia[3 * HW], ib[3 * HW];
    struct { float df, dl, ang; } mv[6] = {{0.5f, 0.0f, 0.0f}, {0.0f, 0.4f, 0.0f}, {0.3f, -0.3f, 0.02f},
                                           {-0.4f, 0.6f, -0.03f}, {1.5f, 0.0f, 0.0f}, {1.0f, -0.5f, 0.03f}};
    const double tol[3] = {0.05, 0.10, 0.05}; /* markings: still pixel-scale bands under rotation */
    const char *nm[3] = {"proximity", "lane", "off-road"};
    for (int k = 0; k < 6; k++) {
        ew_kin_state a = kin(100.0f, 1.4f, 0.01f, 18.0f);
        ew_kin_state b = kin(100.0f + mv[k].df, 1.4f + mv[k].dl, 0.01f + mv[k].ang, 18.0f);
        render(&s, &a, ia);
        render(&s, &b, ib);
        ew_cost_pose pa = pose_of(&a), pb = pose_of(&b);
        double moved[3], atb[3], ata[3];
        ew_cost_image(&c, ia, 3, &pa, &pb, 18.0, moved, NULL, NULL);
        ew_cost_image(&c, ib, 3, &pb, &pb, 18.0, atb, NULL, NULL);
        ew_cost_image(&c, ia, 3, &pa, &pa, 18.0, ata, NULL, NULL);
        for (int ch = 0; ch < 3; ch++) {
            double err = fabs(moved[ch] - atb[ch]), change = fabs(ata[ch] - atb[ch]);
            printf("move %d %-9s: moved %.5f re-rendered %.5f unmoved %.5f\n", k, nm[ch], moved[ch], atb[ch], ata[ch]);
            CHECK(atb[ch] > 1e-3, "move %d %s: the term is present", k, nm[ch]);
            CHECK(err <= tol[ch] * fabs(atb[ch]) + 0.005, "move %d %s: moved mask %.5f vs re-render %.5f", k, nm[ch],
                  moved[ch], atb[ch]);
            if (ch != 1 && change > 0.1 * fabs(atb[ch]))
                CHECK(err < 0.3 * change, "move %d %s: moving the mask explains the change (err %.5f, change %.5f)",
                      k, nm[ch], err, change);
        }
    }
}

/* A decoupled problem: reference images rendered along a reference trajectory. */
typedef struct {
    int T;
    float *images;
    ew_cost_pose ref[40];
    ew_action u[40];
    ew_cost_problem p;
} dproblem;

static void make_problem(dproblem *d, int T, uint64_t seed) {
    scene s;
    scene_init(&s);
    scene_add(&s, 118.0f, 1.85f);  /* car ahead in the ego's lane (static in the images) */
    scene_add(&s, 108.0f, 5.7f);   /* left lane */
    scene_add(&s, 94.0f, 5.55f);   /* left lane, behind */
    d->T = T;
    d->images = malloc(sizeof(float) * 3 * HW * (size_t)T);
    ew_rng rng;
    ew_rng_seed(&rng, seed);
    /* reference: the rollout of slightly different actions from the same start */
    ew_cost_pose q = {100.0, 1.6, 1.0, 0.0, 16.0}; /* lane 0, near the road edge: off-road in view */
    for (int t = 0; t < T; t++) {
        ew_cost_pose n;
        ew_cost_kin_step(&q, 0.3, 0.001, 0.1, 0, &n);
        d->ref[t] = n;
        ew_kin_state e = {(float)n.x, (float)n.y, (float)n.dx, (float)n.dy, (float)n.s};
        render(&s, &e, d->images + (size_t)t * 3 * HW);
        q = n;
        d->u[t].a = (float)ew_rng_range(&rng, -2.0, 1.5);
        d->u[t].b = (float)ew_rng_range(&rng, -0.004, 0.006);
    }
    memset(&d->p, 0, sizeof d->p);
    d->p.T = T;
    d->p.C = 3;
    d->p.images = d->images;
    d->p.ref = d->ref;
    d->p.start = (ew_cost_pose){100.0, 1.6, 1.0, 0.0, 16.0};
    d->p.prev = (ew_action){0.5f, -0.002f};
    d->p.use_ref = 1;
    d->p.exact = 1;
}

/* Central differences of the double fast form (speeds frozen, as the gradient treats them). */
static void fd_grad(const ew_cost_config *c, const ew_cost_problem *p, const ew_action *u, int T, double *fd) {
    ew_action w[40];
    for (int t = 0; t < T; t++)
        for (int k = 0; k < 2; k++) {
            double h = k ? 1e-6 : 1e-4;
            memcpy(w, u, sizeof(ew_action) * (size_t)T);
            if (k) w[t].b += (float)h; else w[t].a += (float)h;
            double hp = k ? (double)w[t].b - u[t].b : (double)w[t].a - u[t].a;
            double cp = ew_cost_decoupled(c, p, w, NULL, NULL, NULL);
            memcpy(w, u, sizeof(ew_action) * (size_t)T);
            if (k) w[t].b -= (float)h; else w[t].a -= (float)h;
            double hm = k ? (double)u[t].b - w[t].b : (double)u[t].a - w[t].a;
            double cm = ew_cost_decoupled(c, p, w, NULL, NULL, NULL);
            fd[2 * t + k] = (cp - cm) / (hp + hm);
        }
}

static void isolate(ew_cost_config *c, int term) {
    float *w[7] = {&c->lambda_p, &c->lambda_l, &c->lambda_o, &c->w_action, &c->w_jerk, &c->w_ref, &c->w_speed};
    for (int k = 0; k < 7; k++)
        if (k != term) *w[k] = 0.0f;
    if (term == 5) { /* make the validity term active */
        c->ref_long = 0.6f;
        c->ref_lat = 0.15f;
    }
}

static const char *term_name[8] = {"proximity", "lane", "off-road", "action", "jerk", "reference", "speed", "all"};

static void test_fast_gradients(void) {
    const int T = 30;
    dproblem d;
    make_problem(&d, T, 7);
    double speeds[40];
    for (int term = 0; term <= 7; term++) {
        ew_cost_config c;
        ew_cost_config_default(&c);
        c.w_speed = 0.5f; /* the progress term (off by default): active, the start speed is 16 m/s */
        c.v_des = 25.0f;
        if (term < 7) isolate(&c, term);
        ew_cost_problem p = d.p;
        float g[80];
        ew_cost_terms tm;
        double f0 = ew_cost_decoupled(&c, &p, d.u, g, &tm, speeds);
        p.speed = speeds; /* detached speeds: FD must hold them fixed too */
        double f1 = ew_cost_decoupled(&c, &p, d.u, NULL, NULL, NULL);
        CHECK(f0 == f1, "given speeds reproduce the cost");
        double fd[80];
        fd_grad(&c, &p, d.u, T, fd);
        double gmax = 0, emax = 0;
        int bad = 0;
        for (int i = 0; i < 2 * T; i++) gmax = fmax(gmax, fabs(fd[i]));
        for (int i = 0; i < 2 * T; i++) {
            double e = fabs(g[i] - fd[i]);
            emax = fmax(emax, e);
            if (e > 1e-4 * gmax + 1e-4 * fabs(fd[i]) + 1e-9) bad++;
        }
        printf("fast %-9s: cost %.6f max|grad| %.4g max err %.3g, %d of %d off\n", term_name[term], f0, gmax, emax,
               bad, 2 * T);
        CHECK(gmax > 0.0, "%s: the term has a gradient here", term_name[term]);
        CHECK(bad == 0, "%s: gradient vs finite differences (%d components off, max err %.3g of %.3g)",
              term_name[term], bad, emax, gmax);
        /* the float pixel passes agree with the double reference */
        ew_cost_problem pf = d.p;
        pf.exact = 0;
        float *tr = malloc(sizeof(float) * 3 * COLS * (size_t)ew_cost_rows_padded(ROWS) * T);
        ew_cost_transpose(d.images, T, 3, ROWS, COLS, tr);
        pf.images_t = tr;
        float gfl[80];
        double ffl = ew_cost_decoupled(&c, &pf, d.u, gfl, NULL, NULL);
        double fe = 0;
        for (int i = 0; i < 2 * T; i++) fe = fmax(fe, fabs(gfl[i] - g[i]));
        printf("float %-8s: cost %.7f vs %.7f, grad max err %.3g of %.3g\n", term_name[term], ffl, f0, fe, gmax);
        CHECK(fabs(ffl - f0) <= 1e-5 * fabs(f0) + 1e-9, "%s: float form cost %.8f vs double %.8f", term_name[term],
              ffl, f0);
        CHECK(fe <= 1e-4 * gmax + 1e-9, "%s: float form gradient (max err %.3g of %.3g)", term_name[term], fe, gmax);
        free(tr);
    }
    free(d.images);
}

/* The tape form of the decoupled problem: kinematic rollout with ew_fm_kin_step (identity
 * stats), images as constants, then ew_cost_tape. */
static double tape_decoupled(ew_graph *g, const ew_cost_config *c, const dproblem *d, const ew_action *u,
                             const double *speeds, float *grad) {
    ew_graph_reset(g);
    int T = d->T;
    int s3[3] = {1, T, 2}, s5[2] = {1, 5}, s2[2] = {1, 2}, si[4] = {1, 3, ROWS, COLS};
    ew_tensor *act = ew_tensor_new(g, 3, s3);
    for (int t = 0; t < T; t++) {
        act->data[2 * t] = u[t].a;
        act->data[2 * t + 1] = u[t].b;
    }
    ew_requires_grad(act, 1);
    ew_fm_kin k;
    for (int i = 0; i < 5; i++) {
        k.mean[i] = 0.0f;
        k.std[i] = 1.0f;
    }
    k.dt = c->dt;
    k.allow_reverse = 0;
    float s0[5] = {(float)d->p.start.x, (float)d->p.start.y, (float)d->p.start.dx, (float)d->p.start.dy,
                   (float)d->p.start.s};
    ew_tensor *st = ew_tensor_from(g, 2, s5, s0);
    ew_tensor *imgs[40], *sts[40];
    for (int t = 0; t < T; t++) {
        ew_tensor *ut = ew_reshape(g, ew_slice(g, act, 1, t, 1), 2, s2);
        st = ew_fm_kin_step(g, st, ut, &k);
        sts[t] = st;
        imgs[t] = ew_tensor_wrap(g, 4, si, d->images + (size_t)t * 3 * HW);
    }
    float prev[2] = {d->p.prev.a, d->p.prev.b};
    ew_cost_tape_out o;
    int rc = ew_cost_tape(g, c, 1, T, imgs, sts, act, prev, d->ref, speeds, &o);
    CHECK(rc == 0, "tape cost: %s", ew_graph_error(g) ? ew_graph_error(g) : "");
    if (rc) return NAN;
    double v = o.total->data[0];
    if (grad) {
        CHECK(ew_backward(g, o.total) == 0, "backward");
        float *ga = ew_tensor_grad(g, act);
        memcpy(grad, ga, sizeof(float) * 2 * (size_t)T);
    }
    return v;
}

static void test_tape_vs_fast(void) {
    const int T = 30;
    dproblem d;
    make_problem(&d, T, 11);
    ew_backend *be = ew_backend_cpu_create(1);
    ew_graph *g = ew_graph_create(be, 0);
    for (int term = 0; term <= 7; term++) {
        if (term == 6) continue; /* the progress term exists in the fast form only */
        ew_cost_config c;
        ew_cost_config_default(&c);
        if (term < 7) isolate(&c, term);
        double speeds[40];
        float gf[80], gt[80];
        ew_cost_problem p = d.p;
        double ff = ew_cost_decoupled(&c, &p, d.u, gf, NULL, speeds);
        double ft = tape_decoupled(g, &c, &d, d.u, speeds, gt);
        double gmax = 0, emax = 0;
        for (int i = 0; i < 2 * T; i++) {
            gmax = fmax(gmax, fabs(gf[i]));
            emax = fmax(emax, fabs(gf[i] - gt[i]));
        }
        printf("tape %-9s: cost %.6f vs fast %.6f, grad max err %.3g of %.3g\n", term_name[term], ft, ff, emax, gmax);
        CHECK(fabs(ft - ff) <= 2e-4 * fabs(ff) + 1e-7, "%s: tape cost %.7f = fast cost %.7f", term_name[term], ft, ff);
        CHECK(emax <= 5e-3 * gmax + 1e-7, "%s: tape gradient = fast gradient (max err %.3g of %.3g)", term_name[term],
              emax, gmax);
        /* and the tape gradient against finite differences of the tape itself (float: wide steps) */
        p.speed = speeds;
        double worst = 0;
        for (int t = 0; t < T; t += 7)
            for (int k = 0; k < 2; k++) {
                double h = k ? 2e-4 : 2e-2;
                ew_action w[40];
                memcpy(w, d.u, sizeof(ew_action) * (size_t)T);
                if (k) w[t].b += (float)h; else w[t].a += (float)h;
                double cp = tape_decoupled(g, &c, &d, w, speeds, NULL);
                memcpy(w, d.u, sizeof(ew_action) * (size_t)T);
                if (k) w[t].b -= (float)h; else w[t].a -= (float)h;
                double cm = tape_decoupled(g, &c, &d, w, speeds, NULL);
                double fd = (cp - cm) / (2 * h);
                worst = fmax(worst, fabs(fd - gt[2 * t + k]) / (gmax + 1e-12));
            }
        CHECK(worst < 0.03, "%s: tape gradient vs its own finite differences (rel err %.3g)", term_name[term], worst);
    }
    /* coupled form: gradients into the images are mask / Z (the cost is linear in them) */
    {
        ew_cost_config c;
        ew_cost_config_default(&c);
        ew_graph_reset(g);
        int si[4] = {2, 3, ROWS, COLS}, s5[2] = {2, 5};
        ew_tensor *im = ew_tensor_new(g, 4, si);
        memcpy(im->data, d.images, sizeof(float) * 3 * HW);
        memcpy(im->data + 3 * HW, d.images + 3 * HW * 5, sizeof(float) * 3 * HW);
        ew_requires_grad(im, 1);
        float sv[10] = {0, 0, 1, 0, 12.0f, 0, 0, 1, 0, 25.0f};
        ew_tensor *st = ew_tensor_from(g, 2, s5, sv);
        ew_cost_tape_out o;
        CHECK(ew_cost_tape(g, &c, 2, 1, &im, &st, NULL, NULL, NULL, NULL, &o) == 0, "coupled tape");
        double tot = o.total->data[0];
        CHECK(ew_backward(g, o.total) == 0, "coupled backward");
        float *gi = ew_tensor_grad(g, im);
        /* fast form on each row, centred */
        double want = 0;
        for (int b = 0; b < 2; b++) {
            ew_cost_pose p = {0, 0, 1, 0, sv[5 * b + 4]}, o3;
            (void)o3;
            double out[3];
            ew_cost_image(&c, im->data + (size_t)b * 3 * HW, 3, &p, &p, sv[5 * b + 4], out, NULL, NULL);
            want += 0.5 * (c.lambda_p * out[0] + c.lambda_l * out[1] + c.lambda_o * out[2]);
        }
        CHECK_NEAR(tot, want, 1e-5 * want + 1e-9);
        /* d total / d pixel = 0.5 * lambda * mask / Z: check a few pixels by finite differences
         * of the fast form (linear: exact up to rounding) */
        int px[4][3] = {{0, 1, 58 * COLS + 12}, {1, 1, 40 * COLS + 10}, {0, 0, 60 * COLS + 9}, {1, 2, 58 * COLS + 10}};
        for (int k = 0; k < 4; k++) {
            int b = px[k][0], ch = px[k][1], i = px[k][2];
            ew_cost_pose p = {0, 0, 1, 0, sv[5 * b + 4]};
            static float tmp[3 * HW];
            memcpy(tmp, im->data + (size_t)b * 3 * HW, sizeof tmp);
            double o0[3], o1[3];
            ew_cost_image(&c, tmp, 3, &p, &p, sv[5 * b + 4], o0, NULL, NULL);
            tmp[ch * HW + i] += 1.0f;
            ew_cost_image(&c, tmp, 3, &p, &p, sv[5 * b + 4], o1, NULL, NULL);
            int oi = ch == 1 ? 0 : (ch == 0 ? 1 : 2); /* vehicles: proximity, markings: lane */
            double lam[3] = {c.lambda_p, c.lambda_l, c.lambda_o};
            double fd = 0.5 * lam[oi] * (o1[oi] - o0[oi]);
            double gv = gi[(size_t)b * 3 * HW + ch * HW + i];
            CHECK(fabs(gv - fd) <= 1e-4 * fabs(fd) + 1e-9 && fd > 0, "image gradient pixel %d: %.6g vs %.6g", k, gv, fd);
        }
    }
    ew_graph_destroy(g);
    ew_backend_destroy(be);
    free(d.images);
}

static void test_uncertainty(void) {
    ew_backend *be = ew_backend_cpu_create(1);
    ew_graph *g = ew_graph_create(be, 0);
    const int M = 3, B = 2, T = 4, D = 5;
    int s3[3] = {B, T, D}, s2[2] = {B, T};
    ew_tensor *pr[3], *co[3];
    ew_rng rng;
    ew_rng_seed(&rng, 3);
    for (int k = 0; k < M; k++) {
        pr[k] = ew_tensor_new(g, 3, s3);
        co[k] = ew_tensor_new(g, 2, s2);
        for (int i = 0; i < B * T * D; i++) pr[k]->data[i] = (float)ew_rng_uniform(&rng);
        for (int i = 0; i < B * T; i++) co[k]->data[i] = (float)ew_rng_uniform(&rng);
        ew_requires_grad(pr[k], 1);
    }
    ew_tensor *iv, *cv;
    CHECK(ew_cost_uncertainty_terms(g, M, pr, co, &iv, &cv) == 0, "terms");
    /* closed form */
    double maxe = 0;
    for (int bt = 0; bt < B * T; bt++) {
        double vs = 0;
        for (int j = 0; j < D; j++) {
            double m = 0, v = 0;
            for (int k = 0; k < M; k++) m += pr[k]->data[bt * D + j] / M;
            for (int k = 0; k < M; k++) v += pow(pr[k]->data[bt * D + j] - m, 2) / (M - 1);
            vs += v / D;
        }
        maxe = fmax(maxe, fabs(vs - iv->data[bt]));
        double m = 0, v = 0;
        for (int k = 0; k < M; k++) m += co[k]->data[bt] / M;
        for (int k = 0; k < M; k++) v += pow(co[k]->data[bt] - m, 2) / (M - 1);
        maxe = fmax(maxe, fabs(v - cv->data[bt]));
    }
    CHECK(maxe < 1e-6, "variances match the closed form (%g)", maxe);
    /* stats from an accumulator over these rows */
    ew_cost_unc_acc acc;
    CHECK(ew_cost_unc_acc_init(&acc, T) == 0, "acc");
    float half[8];
    for (int i = 0; i < B * T; i++) half[i] = 0.5f * iv->data[i];
    ew_cost_unc_acc_add(&acc, half, B);
    float mean[4], std[4], cmean[4] = {0, 0, 0, 0}, cstd[4] = {0.01f, 0.01f, 0.01f, 0.01f};
    ew_cost_unc_acc_finish(&acc, mean, std);
    CHECK_NEAR(mean[1], 0.25 * (iv->data[1] + iv->data[T + 1]), 1e-6);
    CHECK_NEAR(std[1], 0.5 * fabs(0.5 * iv->data[1] - 0.5 * iv->data[T + 1]) * sqrt(2.0), 1e-6);
    ew_cost_unc_acc_free(&acc);
    ew_cost_unc_stats st = {T, mean, std, cmean, cstd, 0.5f};
    ew_tensor *pen = ew_cost_uncertainty_penalty(g, iv, cv, &st);
    CHECK(pen != NULL, "penalty");
    double want = 0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            want += fmax(0.0, (iv->data[b * T + t] - mean[t]) / std[t] - 0.5) / (B * T);
            want += fmax(0.0, (cv->data[b * T + t] - cmean[t]) / cstd[t] - 0.5) / (B * T);
        }
    CHECK_NEAR(pen->data[0], want, 1e-4 * want);
    CHECK(want > 0, "the hinge is active somewhere");
    CHECK(ew_backward(g, pen) == 0, "penalty backward");
    /* gradient to one prediction element by finite differences of the closed form */
    float *gp = ew_tensor_grad(g, pr[0]);
    int idx = 1 * T * D + 2 * D + 3, bt = idx / D;
    double h = 1e-3, f[2];
    for (int sgn = 0; sgn < 2; sgn++) {
        float save = pr[0]->data[idx];
        pr[0]->data[idx] = save + (float)(sgn ? -h : h);
        double vs = 0;
        for (int j = 0; j < D; j++) {
            double m = 0, v = 0;
            for (int k = 0; k < M; k++) m += pr[k]->data[bt * D + j] / M;
            for (int k = 0; k < M; k++) v += pow(pr[k]->data[bt * D + j] - m, 2) / (M - 1);
            vs += v / D;
        }
        int t = bt % T;
        f[sgn] = fmax(0.0, (vs - mean[t]) / std[t] - 0.5) / (B * T);
        pr[0]->data[idx] = save;
    }
    double fd = (f[0] - f[1]) / (2 * h);
    CHECK(fabs(fd - gp[idx]) <= 2e-2 * fabs(fd) + 1e-6, "penalty gradient %.6g vs fd %.6g", gp[idx], fd);
    ew_graph_destroy(g);
    ew_backend_destroy(be);
}

int main(void) {
    test_proximity();
    test_moved_mask();
    test_fast_gradients();
    test_tape_vs_fast();
    test_uncertainty();
    return check_done();
}
