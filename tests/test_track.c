/* test_track.c - the unsupervised tracker: soft-argmax positions and their gradient, the
 * entropy, equivariance and causality losses on hand-made cases, peak picking, the
 * thresholding baseline, a small tracker that learns one moving vehicle to sub-pixel error
 * within a fixed step budget, training that ignores the truth (poisoned truth, same
 * weights bit for bit), and checkpoint round trip with resume. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "models/motion_data.h"
#include "models/track.h"
#include "tests/check.h"

static ew_backend *be;
static ew_graph *g;

/* Central finite differences of a scalar function of logits vs its autodiff gradient. */
typedef ew_tensor *(*scalar_fn)(ew_graph *g, ew_tensor *x, void *ctx);

static double grad_check(scalar_fn f, void *ctx, int ndim, const int *shape, const float *x0) {
    size_t n = ew_shape_numel(ndim, shape);
    float *x = malloc(n * sizeof(float)), *an = malloc(n * sizeof(float));
    memcpy(x, x0, n * sizeof(float));
    ew_graph_reset(g);
    ew_tensor *t = ew_tensor_from(g, ndim, shape, x);
    ew_requires_grad(t, 1);
    ew_tensor *y = f(g, t, ctx);
    if (!y || ew_backward(g, y)) {
        CHECK(0, "forward/backward: %s", ew_graph_error(g));
        free(x), free(an);
        return 1e9;
    }
    memcpy(an, ew_tensor_grad(g, t), n * sizeof(float));
    int old = ew_set_grad_enabled(g, 0);
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        const float h = 1e-2f;
        double v[2];
        for (int s = 0; s < 2; s++) {
            x[i] = x0[i] + (s ? -h : h);
            ew_graph_reset(g);
            v[s] = f(g, ew_tensor_from(g, ndim, shape, x), ctx)->data[0];
        }
        x[i] = x0[i];
        double fd = (v[0] - v[1]) / (2.0 * h), e = fabs(fd - an[i]) / (1.0 + fabs(fd));
        if (e > worst) worst = e;
    }
    ew_set_grad_enabled(g, old);
    free(x), free(an);
    return worst;
}

/* w . positions: a scalar whose gradient is the vector-Jacobian product with w. */
static ew_tensor *pos_dot(ew_graph *gg, ew_tensor *x, void *ctx) {
    ew_tensor *p = ew_track_positions(gg, x);
    int s[2] = {p->shape[0], 2};
    return ew_sum(gg, ew_mul(gg, p, ew_tensor_from(gg, 2, s, (const float *)ctx)));
}
static ew_tensor *entropy_fn(ew_graph *gg, ew_tensor *x, void *ctx) {
    (void)ctx;
    return ew_track_entropy(gg, x);
}

static void test_soft_argmax(void) {
    /* a dominant logit at (r, c) gives the pixel centre (c + 0.5, r + 0.5) */
    int s[4] = {2, 1, 7, 9};
    float x[2 * 63];
    for (int i = 0; i < 126; i++) x[i] = 0.0f;
    x[3 * 9 + 5] = 60.0f;                     /* map 0: row 3, col 5 */
    x[63 + 1 * 9 + 2] = x[63 + 1 * 9 + 6] = 60.0f; /* map 1: two equal peaks on row 1 */
    ew_graph_reset(g);
    ew_tensor *p = ew_track_positions(g, ew_tensor_from(g, 4, s, x));
    CHECK_NEAR(p->data[0], 5.5, 1e-4);
    CHECK_NEAR(p->data[1], 3.5, 1e-4);
    CHECK_NEAR(p->data[2], 4.5, 1e-4); /* midpoint of columns 2 and 6 */
    CHECK_NEAR(p->data[3], 1.5, 1e-4);
    /* equal logits: the image centre (w/2, h/2) */
    memset(x, 0, sizeof x);
    ew_graph_reset(g);
    p = ew_track_positions(g, ew_tensor_from(g, 4, s, x));
    CHECK_NEAR(p->data[0], 4.5, 1e-4);
    CHECK_NEAR(p->data[1], 3.5, 1e-4);
    /* gradient */
    ew_rng r;
    ew_rng_seed(&r, 5);
    for (int i = 0; i < 126; i++) x[i] = (float)ew_rng_normal(&r);
    float w[4] = {0.7f, -1.3f, 0.4f, 2.0f};
    CHECK(grad_check(pos_dot, w, 4, s, x) < 2e-3, "soft-argmax gradient");
    CHECK(grad_check(entropy_fn, NULL, 4, s, x) < 2e-3, "entropy gradient");
}

static void test_entropy(void) {
    int s[4] = {2, 1, 4, 8};
    float x[64] = {0};
    x[32 + 13] = 80.0f; /* map 1: one-hot */
    ew_graph_reset(g);
    ew_tensor *h = ew_track_entropy(g, ew_tensor_from(g, 4, s, x));
    /* mean of log(32) (uniform map) and 0 (one-hot map) */
    CHECK_NEAR(h->data[0], 0.5 * log(32.0), 1e-4);
    /* two equal peaks: log 2 */
    memset(x, 0, sizeof x);
    x[3] = x[9] = 80.0f;
    x[32 + 1] = x[32 + 30] = 80.0f;
    ew_graph_reset(g);
    h = ew_track_entropy(g, ew_tensor_from(g, 4, s, x));
    CHECK_NEAR(h->data[0], log(2.0), 1e-4);
}

static void test_equiv(void) {
    /* 3 frames; warps: shift (2, -1); flip x of a 10-wide view after a shift (1, 0); flip y of
     * an 6-high view. */
    float pa[6] = {1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 1.5f};
    float sign[6] = {1, 1, -1, 1, 1, -1}, off[6] = {2, -1, 10 - 1, 0, 0, 6};
    float pb[6];
    for (int i = 0; i < 6; i++) pb[i] = sign[i] * pa[i] + off[i];
    int s[2] = {3, 2};
    ew_graph_reset(g);
    ew_tensor *l = ew_track_equiv_loss(g, ew_tensor_from(g, 2, s, pa), ew_tensor_from(g, 2, s, pb), sign, off);
    CHECK_NEAR(l->data[0], 0.0, 1e-6);
    /* positions that do not move with the warp (a tracker stuck on a fixed point) */
    float stuck[6];
    memcpy(stuck, pa, sizeof stuck);
    ew_graph_reset(g);
    l = ew_track_equiv_loss(g, ew_tensor_from(g, 2, s, pa), ew_tensor_from(g, 2, s, stuck), sign, off);
    double want = 0;
    for (int i = 0; i < 6; i++) want += (pb[i] - pa[i]) * (pb[i] - pa[i]);
    CHECK_NEAR(l->data[0], want / 6.0, 1e-4);
    /* errors of (1, 2) in every frame: mean of (1 + 4) / 2 */
    for (int i = 0; i < 6; i++) stuck[i] = pb[i] + (i % 2 ? 2.0f : 1.0f);
    ew_graph_reset(g);
    l = ew_track_equiv_loss(g, ew_tensor_from(g, 2, s, pa), ew_tensor_from(g, 2, s, stuck), sign, off);
    CHECK_NEAR(l->data[0], 2.5, 1e-5);
}

/* The local positions (second training phase) are the detector's window soft-argmax; their
 * gradient reaches only the window; the gated equivariance drops pairs that disagree. */
static ew_tensor *pos_local_dot(ew_graph *gg, ew_tensor *x, void *ctx) {
    ew_tensor *p = ew_track_positions_local(gg, x);
    int s[2] = {p->shape[0], 2};
    return ew_sum(gg, ew_mul(gg, p, ew_tensor_from(gg, 2, s, (const float *)ctx)));
}

static void test_local(void) {
    enum { H = 14, W = 30 };
    int s[4] = {2, 1, H, W};
    float x[2 * H * W];
    ew_rng r;
    ew_rng_seed(&r, 9);
    /* map 0: a log-Gaussian bump at (12.3, 6.8) over noise, plus a broad hill far away (which
     * pulls the global soft-argmax); map 1: the bump near the corner (clipped window) */
    for (int k = 0; k < 2; k++)
        for (int rr = 0; rr < H; rr++)
            for (int c = 0; c < W; c++) {
                double u = c + 0.5, v = rr + 0.5, cu = k ? 2.2 : 12.3, cv = k ? 1.7 : 6.8;
                double bump = 8.0 - ((u - cu) * (u - cu) + (v - cv) * (v - cv)) / 2.0;
                double hill = 4.0 - ((u - 26.0) * (u - 26.0) + (v - 7.0) * (v - 7.0)) / 40.0;
                x[(k * H + rr) * W + c] = (float)(fmax(bump, hill) + 0.3 * ew_rng_normal(&r));
            }
    ew_graph_reset(g);
    ew_tensor *pl = ew_track_positions_local(g, ew_tensor_from(g, 4, s, x));
    CHECK(pl != NULL, "local positions: %s", ew_graph_error(g));
    for (int k = 0; pl && k < 2; k++) {
        ew_track_det d[16];
        int n = ew_track_peaks(x + k * H * W, H, W, 7.0f, d, 16);
        CHECK(n == 1, "map %d: one peak above 7, got %d", k, n);
        if (n != 1) continue;
        CHECK_NEAR(pl->data[2 * k], d[0].u, 1e-4);
        CHECK_NEAR(pl->data[2 * k + 1], d[0].v, 1e-4);
    }
    ew_graph_reset(g);
    ew_tensor *pg = ew_track_positions(g, ew_tensor_from(g, 4, s, x));
    CHECK(pg && pl && fabs(pg->data[0] - 12.3) > fabs(pl->data[0] - 12.3) + 0.5,
          "the hill pulls the global position (%.2f), not the local one (%.2f)", pg ? pg->data[0] : 0, pl ? pl->data[0] : 0);
    float w[4] = {0.9f, -1.1f, 0.5f, 1.7f};
    CHECK(grad_check(pos_local_dot, w, 4, s, x) < 2e-3, "local soft-argmax gradient");
    /* no gradient outside the window */
    ew_graph_reset(g);
    ew_tensor *xt = ew_tensor_from(g, 4, s, x);
    ew_requires_grad(xt, 1);
    ew_tensor *y = pos_local_dot(g, xt, w);
    CHECK(y && ew_backward(g, y) == 0, "backward");
    const float *gr = ew_tensor_grad(g, xt);
    double outside = 0;
    for (int rr = 0; rr < H; rr++)
        for (int c = 0; c < W; c++)
            if (abs(rr - 6) > 3 || abs(c - 12) > 5) outside = fmax(outside, fabs(gr[rr * W + c]));
    CHECK(outside == 0.0, "gradient outside the window: %g", outside);
    /* gated equivariance: agreeing rows as the plain loss; a row off by 8 px is left out */
    float pa[6] = {1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 1.5f};
    float sign[6] = {1, 1, -1, 1, 1, -1}, off[6] = {2, -1, 9, 0, 0, 6}, pb[6];
    for (int i = 0; i < 6; i++) pb[i] = sign[i] * pa[i] + off[i] + (i % 2 ? 0.5f : -1.0f);
    int s2[2] = {3, 2}, kept = -1;
    ew_graph_reset(g);
    ew_tensor *a = ew_tensor_from(g, 2, s2, pa), *b = ew_tensor_from(g, 2, s2, pb);
    ew_tensor *l0 = ew_track_equiv_loss(g, a, b, sign, off), *l1 = ew_track_equiv_loss_gated(g, a, b, sign, off, 5, 3, &kept);
    CHECK(kept == 3, "kept %d of 3", kept);
    CHECK_NEAR(l1->data[0], l0->data[0], 1e-6);
    CHECK_NEAR(l1->data[0], 0.625, 1e-5);
    pb[2] += 8.0f;
    ew_graph_reset(g);
    a = ew_tensor_from(g, 2, s2, pa), b = ew_tensor_from(g, 2, s2, pb);
    l1 = ew_track_equiv_loss_gated(g, a, b, sign, off, 5, 3, &kept);
    CHECK(kept == 2, "kept %d of 3 with an outlier", kept);
    CHECK_NEAR(l1->data[0], 0.625, 1e-5);
    for (int i = 0; i < 6; i++) pb[i] += 20.0f;
    ew_graph_reset(g);
    a = ew_tensor_from(g, 2, s2, pa), b = ew_tensor_from(g, 2, s2, pb);
    l1 = ew_track_equiv_loss_gated(g, a, b, sign, off, 5, 3, &kept);
    CHECK(kept == 0 && l1->data[0] == 0.0f, "nothing kept: zero loss (%d, %g)", kept, l1->data[0]);
}

/* Positions of B clips of T frames: a moving object (dx px per frame) or a static one,
 * in real or shuffled order. */
static void make_positions(ew_rng *r, int B, int T, int moving, float *pos, int *real) {
    for (int i = 0; i < B; i++) {
        real[i] = ew_rng_uniform(r) < 0.5;
        int perm[16];
        for (int t = 0; t < T; t++) perm[t] = t;
        if (!real[i]) {
            do {
                for (int t = T - 1; t > 0; t--) {
                    int j = (int)ew_rng_below(r, (uint32_t)t + 1u), q = perm[t];
                    perm[t] = perm[j];
                    perm[j] = q;
                }
            } while (perm[0] == 0 && perm[1] == 1 && perm[2] == 2 && perm[3] == 3);
        }
        float x0 = (float)ew_rng_range(r, 5, 40), y0 = (float)ew_rng_range(r, 3, 20);
        float dx = moving ? (float)ew_rng_range(r, 4, 8) : 0.0f;
        for (int t = 0; t < T; t++) {
            pos[(i * T + t) * 2] = x0 + dx * (float)perm[t] + 0.05f * (float)ew_rng_normal(r);
            pos[(i * T + t) * 2 + 1] = y0 + 0.05f * (float)ew_rng_normal(r);
        }
    }
}

static void causal_run(int moving, float *final_loss, float *final_acc) {
    ew_tracker_config c;
    ew_tracker_config_default(&c);
    c.channels = 2;
    c.layers = 1;
    c.frames = 5;
    ew_tracker t;
    char err[256];
    CHECK(ew_tracker_init(&t, &c, 3, err, sizeof err) == 0, "%s", err);
    ew_param_list dp = {0};
    ew_mlp_params(&t.disc, &dp);
    ew_optim_config oc = ew_optim_defaults(EW_OPTIM_ADAM);
    oc.lr = 3e-3f;
    ew_optim *opt;
    CHECK(ew_optim_create(dp.items, dp.n, &oc, &opt, err, sizeof err) == 0, "%s", err);
    ew_rng r;
    ew_rng_seed(&r, 11);
    enum { B = 32, T = 5 };
    float pos[B * T * 2];
    int real[B];
    double lsum = 0, asum = 0;
    int cnt = 0;
    for (int step = 0; step < 400; step++) {
        make_positions(&r, B, T, moving, pos, real);
        ew_graph_reset(g);
        int s[3] = {B, T, 2};
        float acc;
        ew_tensor *l = ew_track_causal_loss(g, &t.disc, ew_tensor_from(g, 3, s, pos), real, &acc);
        ew_optim_zero_grad(opt);
        ew_backward(g, l);
        ew_optim_step(opt);
        if (step >= 350) lsum += l->data[0], asum += acc, cnt++;
    }
    *final_loss = (float)(lsum / cnt);
    *final_acc = (float)(asum / cnt);
    ew_optim_free(opt);
    ew_param_list_free(&dp);
    ew_tracker_free(&t);
}

static void test_causal(void) {
    /* a constant discriminator (all weights 0): loss log 2 whatever the labels */
    ew_tracker_config c;
    ew_tracker_config_default(&c);
    ew_tracker t;
    char err[256];
    CHECK(ew_tracker_init(&t, &c, 3, err, sizeof err) == 0, "%s", err);
    ew_param_list dp = {0};
    ew_mlp_params(&t.disc, &dp);
    for (int i = 0; i < dp.n; i++) memset(dp.items[i].data, 0, ew_param_numel(&dp.items[i]) * sizeof(float));
    float pos[4 * 5 * 2];
    int real[4] = {1, 0, 0, 1};
    for (int i = 0; i < 40; i++) pos[i] = (float)i;
    int s[3] = {4, 5, 2};
    ew_graph_reset(g);
    ew_tensor *l = ew_track_causal_loss(g, &t.disc, ew_tensor_from(g, 3, s, pos), real, NULL);
    CHECK_NEAR(l->data[0], log(2.0), 1e-6);
    /* a final bias of b: mean over labels of softplus(b) - y b */
    dp.items[dp.n - 1].data[0] = 1.5f;
    ew_graph_reset(g);
    l = ew_track_causal_loss(g, &t.disc, ew_tensor_from(g, 3, s, pos), real, NULL);
    CHECK_NEAR(l->data[0], log1p(exp(1.5)) - 0.5 * 1.5, 1e-5);
    ew_param_list_free(&dp);
    ew_tracker_free(&t);
    /* the discriminator learns the order of a moving object, and cannot for a static one */
    float lm, am, ls, as;
    causal_run(1, &lm, &am);
    causal_run(0, &ls, &as);
    CHECK(am > 0.95f && lm < 0.2f, "moving: accuracy %.3f loss %.3f", am, lm);
    CHECK(as < 0.7f && ls > 0.6f, "static: accuracy %.3f loss %.3f", as, ls);
}

static void test_peaks_baseline(void) {
    enum { H = 20, W = 40 };
    float L[H * W];
    /* two Gaussian bumps (centres (10.3, 5.6) and (28.7, 14.2) in pixel coordinates) */
    for (int r = 0; r < H; r++)
        for (int c = 0; c < W; c++) {
            double u = c + 0.5, v = r + 0.5;
            double a = -((u - 10.3) * (u - 10.3) + (v - 5.6) * (v - 5.6)) / 2.0;
            double b = -((u - 28.7) * (u - 28.7) + (v - 14.2) * (v - 14.2)) / 2.0;
            L[r * W + c] = (float)(a > b ? a : b);
        }
    ew_track_det d[8];
    int n = ew_track_peaks(L, H, W, -3.0f, d, 8);
    CHECK(n == 2, "two peaks, got %d", n);
    if (n == 2) {
        /* the window soft-argmax of a log-Gaussian is its centre up to the window's truncation */
        CHECK_NEAR(d[0].u, 10.3, 0.05);
        CHECK_NEAR(d[0].v, 5.6, 0.05);
        CHECK_NEAR(d[1].u, 28.7, 0.05);
        CHECK_NEAR(d[1].v, 14.2, 0.05);
    }
    CHECK(ew_track_peaks(L, H, W, 1.0f, d, 8) == 0, "threshold above both peaks");
    /* baseline: two bright boxes on a dim background */
    float f[H * W];
    for (int i = 0; i < H * W; i++) f[i] = 0.25f;
    for (int r = 4; r < 8; r++)
        for (int c = 3; c < 12; c++) f[r * W + c] = 1.0f;
    for (int r = 12; r < 15; r++)
        for (int c = 25; c < 30; c++) f[r * W + c] = 0.9f;
    n = ew_track_baseline_detect(f, H, W, 0.6f, 4, d, 8);
    CHECK(n == 2, "baseline: 2 components, got %d", n);
    if (n == 2) {
        CHECK_NEAR(d[0].u, 7.5, 1e-4);
        CHECK_NEAR(d[0].v, 6.0, 1e-4);
        CHECK_NEAR(d[1].u, 27.5, 1e-4);
        CHECK_NEAR(d[1].v, 13.5, 1e-4);
    }
    CHECK(ew_track_baseline_detect(f, H, W, 0.6f, 16, d, 8) == 1, "min area drops the small one");
}

/* Trains a small tracker for `steps` on clean single-vehicle pairs (seeded); poison != 0
 * overwrites the truth of every batch first. Returns the tracker (caller frees). */
static void train_small(ew_tracker *t, int steps, int poison, int B, int local) {
    ew_tracker_config c;
    ew_tracker_config_default(&c);
    c.channels = 8;
    c.local_loss = local;
    char err[256];
    CHECK(ew_tracker_init(t, &c, 1, err, sizeof err) == 0, "%s", err);
    ew_optim_config oc = ew_optim_defaults(EW_OPTIM_ADAM);
    oc.lr = 3e-3f;
    ew_optim *opt;
    CHECK(ew_optim_create(t->params.items, t->params.n, &oc, &opt, err, sizeof err) == 0, "%s", err);
    ew_video_pair_cfg vc;
    ew_video_pair_cfg_default(&vc);
    ew_video_pairs p;
    CHECK(ew_video_pairs_alloc(&p, B, &vc) == 0, "alloc");
    for (int s = 0; s < steps; s++) {
        CHECK(ew_video_pair_make(&vc, 1000 + (uint64_t)s, &p, err, sizeof err) == 0, "%s", err);
        if (poison) {
            size_t k = (size_t)p.n * p.frames * 2;
            for (size_t i = 0; i < k; i++) {
                p.truth_a[i] = (float)(i % 7) * 1e6f - 3.0f;
                p.truth_b[i] = NAN;
            }
        }
        ew_track_stats st;
        if (ew_tracker_train_step(t, opt, g, &p, &st, err, sizeof err)) {
            CHECK(0, "train step %d: %s", s, err);
            break;
        }
    }
    ew_video_pairs_free(&p);
    ew_optim_free(opt);
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void test_learns_one_vehicle(void) {
    ew_tracker t;
    train_small(&t, 200, 0, 4, 0);
    ew_video_pair_cfg vc;
    ew_video_pair_cfg_default(&vc);
    ew_video_pairs ev;
    char err[256];
    CHECK(ew_video_pairs_alloc(&ev, 32, &vc) == 0, "alloc");
    CHECK(ew_video_pair_make(&vc, 999999, &ev, err, sizeof err) == 0, "%s", err);
    int n = 32 * vc.frames;
    float *uv = malloc(sizeof(float) * 2 * (size_t)n);
    double *e = malloc(sizeof(double) * (size_t)n);
    CHECK(ew_tracker_locate(&t, g, ev.a, n, vc.rows, vc.cols, uv, err, sizeof err) == 0, "%s", err);
    for (int i = 0; i < n; i++) e[i] = hypot(uv[2 * i] - ev.truth_a[2 * i], uv[2 * i + 1] - ev.truth_a[2 * i + 1]);
    qsort(e, (size_t)n, sizeof(double), cmp_d);
    printf("one vehicle after 200 steps: median error %.3f px, p95 %.3f px\n", e[n / 2], e[(int)(0.95 * n)]);
    CHECK(e[n / 2] < 0.5, "median error %.3f px (sub-pixel wanted)", e[n / 2]);
    CHECK(e[(int)(0.95 * n)] < 1.0, "p95 error %.3f px", e[(int)(0.95 * n)]);
    /* detection on the same frames: calibrated threshold finds exactly one peak per frame */
    CHECK(ew_tracker_calibrate(&t, g, &ev, err, sizeof err) == 0, "%s", err);
    int one = 0;
    for (int i = 0; i < n; i++) {
        ew_track_det d[8];
        int k = ew_tracker_detect(&t, g, ev.a + (size_t)i * vc.rows * vc.cols, vc.rows, vc.cols, d, 8, err, sizeof err);
        one += k == 1 && hypot(d[0].u - ev.truth_a[2 * i], d[0].v - ev.truth_a[2 * i + 1]) < 1.0;
    }
    CHECK(one >= n * 95 / 100, "one detection within 1 px in %d of %d frames", one, n);

    /* flip-averaged maps are exactly flip-equivariant, and find the same vehicle */
    {
        const int H = vc.rows, W = vc.cols;
        float *fr = ev.a, *ff = malloc(sizeof(float) * (size_t)H * W), *m1 = malloc(sizeof(float) * (size_t)H * W),
              *m2 = malloc(sizeof(float) * (size_t)H * W);
        for (int r = 0; r < H; r++)
            for (int c = 0; c < W; c++) ff[r * W + c] = fr[r * W + W - 1 - c];
        CHECK(ew_tracker_map_tta(&t, g, fr, H, W, m1, err, sizeof err) == 0, "%s", err);
        CHECK(ew_tracker_map_tta(&t, g, ff, H, W, m2, err, sizeof err) == 0, "%s", err);
        double worst = 0;
        for (int r = 0; r < H; r++)
            for (int c = 0; c < W; c++) worst = fmax(worst, fabs(m1[r * W + c] - m2[r * W + W - 1 - c]));
        CHECK(worst < 1e-4, "tta map of the flipped frame is the flipped map: %.2e", worst);
        ew_track_det d[8];
        t.tta = 1;
        int k = ew_tracker_detect(&t, g, fr, H, W, d, 8, err, sizeof err);
        t.tta = 0;
        CHECK(k == 1 && hypot(d[0].u - ev.truth_a[0], d[0].v - ev.truth_a[1]) < 0.5, "tta detection: %d", k);
        free(ff), free(m1), free(m2);
    }
    /* tracklets on a traffic video: the small tracker's tracklets cover true tracks, and the
     * tracked history of an evaluation pair sits on the true one */
    {
        ew_video_stream_cfg sc;
        ew_video_stream_cfg_default(&sc);
        sc.warmup_s = 30.0f;
        ew_motion_set trk = {0}, gt = {0}, pt = {0}, pg = {0};
        CHECK(ew_motion_collect(&t, g, &sc, 3, 80, 5, &trk, &gt, &pt, &pg, err, sizeof err) == 0, "%s", err);
        CHECK(trk.n > 0 && gt.n > 0 && pt.n > 0 && pt.n == pg.n, "windows: %d tracked, %d true, %d pairs", trk.n, gt.n,
              pt.n);
        double worst = 0;
        for (int i = 0; i < pt.n; i++)
            for (int h = 0; h < EW_MOTION_HIST; h++)
                worst = fmax(worst, hypot(pt.s[i].hist[h][0] - pg.s[i].hist[h][0], pt.s[i].hist[h][1] - pg.s[i].hist[h][1]));
        printf("tracklets: %d tracked windows, %d true, %d pairs, worst history gap %.3f m\n", trk.n, gt.n, pt.n, worst);
        CHECK(worst < 1.5, "tracked history within 1.5 m of the truth in every pair: %.3f m", worst);
        /* label-free noise estimate from rotated frames: a few centimetres for this tracker */
        ew_video_stream *st = ew_video_stream_create(&sc, 3, err, sizeof err);
        int R = 0, C = 0;
        ew_video_stream_size(st, &R, &C);
        float *fr = malloc(sizeof(float) * 10 * (size_t)R * C);
        ew_video_truth tv[256];
        for (int f = 0; f < 10; f++) ew_video_stream_next(st, fr + (size_t)f * R * C, tv, 256, err, sizeof err);
        float sg = -1.0f;
        long np = 0;
        CHECK(ew_tracker_flip_noise(&t, g, fr, 10, R, C, sc.m_per_px, &sg, &np, err, sizeof err) == 0, "%s", err);
        printf("flip noise estimate %.4f m from %ld pairs\n", sg, np);
        CHECK(np > 20 && sg > 0.0f && sg < 0.1f, "flip noise %.4f m from %ld pairs", sg, np);
        free(fr);
        ew_video_stream_free(st);
        ew_motion_set_free(&trk);
        ew_motion_set_free(&gt);
        ew_motion_set_free(&pt);
        ew_motion_set_free(&pg);
    }
    /* checkpoint round trip: same positions; resume restores the optimizer step */
    char path[64];
    snprintf(path, sizeof path, "/tmp/ew_test_track_%d.safetensors", (int)getpid());
    ew_optim_config oc = ew_optim_defaults(EW_OPTIM_ADAM);
    ew_optim *opt;
    CHECK(ew_optim_create(t.params.items, t.params.n, &oc, &opt, err, sizeof err) == 0, "%s", err);
    ew_optim_set_step_count(opt, 123);
    CHECK(ew_tracker_save(&t, opt, 123, path, err, sizeof err) == 0, "%s", err);
    ew_tracker t2;
    long step = 0;
    CHECK(ew_tracker_load(&t2, path, &step, err, sizeof err) == 0, "%s", err);
    CHECK(step == 123, "step %ld", step);
    CHECK(t2.peak_thr == t.peak_thr, "peak_thr %g vs %g", t2.peak_thr, t.peak_thr);
    float *uv2 = malloc(sizeof(float) * 2 * (size_t)n);
    CHECK(ew_tracker_locate(&t2, g, ev.a, n, vc.rows, vc.cols, uv2, err, sizeof err) == 0, "%s", err);
    CHECK(memcmp(uv, uv2, sizeof(float) * 2 * (size_t)n) == 0, "loaded tracker gives the same positions");
    ew_optim *opt2;
    CHECK(ew_optim_create(t2.params.items, t2.params.n, &oc, &opt2, err, sizeof err) == 0, "%s", err);
    CHECK(ew_tracker_load_optim(opt2, path, err, sizeof err) == 0, "%s", err);
    CHECK(ew_optim_step_count(opt2) == 123, "optimizer step restored");
    /* a damaged file is refused with a message */
    FILE *fp = fopen(path, "r+b");
    if (fp) {
        fseek(fp, 20, SEEK_SET);
        fputc('#', fp);
        fclose(fp);
    }
    ew_tracker t3;
    CHECK(ew_tracker_load(&t3, path, NULL, err, sizeof err) != 0 && strlen(err) > 0, "damaged checkpoint refused");
    remove(path);
    ew_optim_free(opt);
    ew_optim_free(opt2);
    ew_tracker_free(&t2);
    free(uv2);
    free(uv);
    free(e);
    ew_video_pairs_free(&ev);
    ew_tracker_free(&t);
}

static void test_truth_never_read(void) {
    ew_tracker a, b;
    train_small(&a, 12, 0, 2, 0);
    train_small(&b, 12, 1, 2, 0);
    int same = a.params.n == b.params.n;
    for (int i = 0; same && i < a.params.n; i++)
        same = memcmp(a.params.items[i].data, b.params.items[i].data,
                      ew_param_numel(&a.params.items[i]) * sizeof(float)) == 0;
    CHECK(same, "training with poisoned truth gives bit-identical weights");
    /* the same with the local (windowed, gated) loss; and its flag survives a checkpoint */
    {
        ew_tracker la, lb;
        train_small(&la, 8, 0, 2, 1);
        train_small(&lb, 8, 1, 2, 1);
        int lsame = la.params.n == lb.params.n;
        for (int i = 0; lsame && i < la.params.n; i++)
            lsame = memcmp(la.params.items[i].data, lb.params.items[i].data,
                           ew_param_numel(&la.params.items[i]) * sizeof(float)) == 0;
        CHECK(lsame, "local loss: training with poisoned truth gives bit-identical weights");
        char path[64], e2[256];
        snprintf(path, sizeof path, "/tmp/ew_test_track_local_%d.safetensors", (int)getpid());
        ew_tracker lc;
        CHECK(ew_tracker_save(&la, NULL, 8, path, e2, sizeof e2) == 0, "%s", e2);
        CHECK(ew_tracker_load(&lc, path, NULL, e2, sizeof e2) == 0, "%s", e2);
        CHECK(lc.cfg.local_loss == 1, "local_loss saved and loaded: %d", lc.cfg.local_loss);
        remove(path);
        ew_tracker_free(&lc);
        ew_tracker_free(&la);
        ew_tracker_free(&lb);
    }
    /* and the weights did change (the comparison is not vacuous) */
    ew_tracker c;
    ew_tracker_config cc;
    ew_tracker_config_default(&cc);
    cc.channels = 8;
    char err[128];
    ew_tracker_init(&c, &cc, 1, err, sizeof err);
    CHECK(memcmp(a.params.items[0].data, c.params.items[0].data, ew_param_numel(&c.params.items[0]) * sizeof(float)) != 0,
          "weights moved");
    ew_tracker_free(&a);
    ew_tracker_free(&b);
    ew_tracker_free(&c);
}

int main(void) {
    be = ew_backend_cpu_create(1);
    g = ew_graph_create(be, 0);
    test_soft_argmax();
    test_entropy();
    test_equiv();
    test_local();
    test_causal();
    test_peaks_baseline();
    test_truth_never_read();
    test_learns_one_vehicle();
    ew_graph_destroy(g);
    ew_backend_destroy(be);
    return check_done();
}
