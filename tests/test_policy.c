/* test_policy.c - the policy network (models/policy.h) and the imitation step
 * (planner/policy_train.h) on tiny configurations: output shapes and the stage sizes of the
 * anchor; gradients of a random linear functional of the output against central finite
 * differences for a sample of every parameter tensor and for the input states and frames;
 * dropout is seeded; the imitation loss on a fixed batch falls under Adam; a save/load round
 * trip is bit-identical; damaged checkpoints give one-line errors naming the file; the
 * policy:FILE controller returns the zero action during warm-up and clipped finite actions
 * after it, the same actions as the batch call on the same window. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "models/policy.h"
#include "planner/policy_train.h"
#include "sim/raster.h"
#include "sim/world.h"
#include "tests/check.h"

static ew_policy_config tiny_config(int channels) {
    ew_policy_config c = ew_policy_config_default();
    c.nf = 2;
    c.channels = channels;
    c.n_cond = 2;
    c.height = 13;
    c.width = 10;
    c.proj = 6;
    c.hidden = 5;
    c.seed = 7;
    return c;
}

static ew_fm_stats test_stats(void) {
    ew_fm_stats s = {{50.0f, 5.0f, 0.99f, 0.0f, 20.0f}, {30.0f, 3.0f, 0.02f, 0.1f, 5.0f}, {0.1f, 0.0f}, {1.5f, 0.01f}};
    return s;
}

static void rand_window(ew_rng *r, const ew_policy_config *c, int B, float *frames, float *states) {
    size_t nf = (size_t)B * c->n_cond * c->channels * c->height * c->width;
    for (size_t i = 0; i < nf; i++) frames[i] = (float)ew_rng_uniform(r);
    for (int i = 0; i < B * c->n_cond; i++) {
        double th = ew_rng_range(r, -0.15, 0.15);
        float *s = states + 5 * i;
        s[0] = (float)ew_rng_range(r, 20.0, 80.0);
        s[1] = (float)ew_rng_range(r, 0.0, 11.0);
        s[2] = (float)cos(th);
        s[3] = (float)sin(th);
        s[4] = (float)ew_rng_range(r, 12.0, 28.0);
    }
}

static void test_shapes(ew_backend *be) {
    char err[256] = "";
    ew_policy p;
    ew_policy_config c = ew_policy_config_default();
    c.nf = 4; /* anchor image size, narrow widths */
    c.proj = 16;
    c.hidden = 8;
    c.n_cond = 3;
    CHECK(ew_policy_init(&p, &c, NULL, err, sizeof err) == 0, "init: %s", err);
    CHECK(p.fh[1] == 58 && p.fw[1] == 12 && p.fh[2] == 29 && p.fw[2] == 6 && p.fh[3] == 14 && p.fw[3] == 3,
          "stages %dx%d %dx%d %dx%d", p.fh[1], p.fw[1], p.fh[2], p.fw[2], p.fh[3], p.fw[3]);
    CHECK(p.feat == 16 * 14 * 3, "feat %d", p.feat);
    int n;
    ew_param *pp = ew_policy_params(&p, &n);
    /* enc 3x(w,b), senc 3x(w,b), proj (w,b), head 4x(w,b) */
    CHECK(n == 6 + 6 + 2 + 8, "params %d", n);
    CHECK(!strcmp(pp[0].name, "enc.conv1.weight") && pp[0].shape[1] == 9, "%s in %d", pp[0].name, pp[0].shape[1]);
    CHECK(!strcmp(pp[n - 1].name, "head.3.bias") && pp[n - 1].shape[0] == 2, "%s", pp[n - 1].name);
    CHECK(!strcmp(pp[12].name, "proj.weight") && pp[12].shape[0] == 16 && pp[12].shape[1] == p.feat, "%s",
          pp[12].name);
    ew_graph *g = ew_graph_create(be, 0);
    enum { B = 3 };
    float *fr = malloc(sizeof(float) * B * 9 * 117 * 24), st[B * 3 * 5], act[B * 2];
    ew_rng r;
    ew_rng_seed(&r, 3);
    rand_window(&r, &c, B, fr, st);
    CHECK(ew_policy_act_batch(g, &p, B, fr, st, act, err, sizeof err) == 0, "act: %s", err);
    for (int i = 0; i < B * 2; i++) CHECK(isfinite(act[i]), "action %d", i);
    /* a window changes the action; the batch rows are independent */
    float act1[2];
    CHECK(ew_policy_act_batch(g, &p, 1, fr + 2 * 9 * 117 * 24, st + 2 * 15, act1, err, sizeof err) == 0, "%s", err);
    CHECK(act1[0] == act[4] && act1[1] == act[5], "row 2 alone %g %g vs %g %g", act1[0], act1[1], act[4], act[5]);
    /* shape errors come back as messages */
    ew_graph_reset(g);
    int bad[4] = {1, 8, 117, 24}, ss[3] = {1, 3, 5};
    ew_tensor *o = ew_policy_forward(g, &p, ew_tensor_zeros(g, 4, bad), ew_tensor_zeros(g, 3, ss), 0, NULL);
    CHECK(o == NULL && ew_graph_error(g) && strstr(ew_graph_error(g), "policy: want frames"), "%s",
          ew_graph_error(g) ? ew_graph_error(g) : "(none)");
    ew_graph_destroy(g);
    free(fr);
    ew_policy_free(&p);
    /* config validation */
    ew_policy_config bc = c;
    bc.channels = 2;
    CHECK(ew_policy_init(&p, &bc, NULL, err, sizeof err) == -1 && strstr(err, "channels"), "%s", err);
}

/* ---- finite differences ------------------------------------------------------------- */
typedef struct {
    ew_policy *p;
    float *frames, *states, *w;
    int B;
    uint64_t seed;
} fd_ctx;

static ew_tensor *objective(ew_graph *g, fd_ctx *c, ew_tensor **fr, ew_tensor **st) {
    const ew_policy_config *pc = &c->p->cfg;
    int fs[4] = {c->B, pc->n_cond * pc->channels, pc->height, pc->width}, ss[3] = {c->B, pc->n_cond, 5};
    int ws[2] = {c->B, 2};
    ew_graph_reset(g);
    ew_tensor *f = ew_tensor_wrap(g, 4, fs, c->frames), *s = ew_tensor_wrap(g, 3, ss, c->states);
    ew_requires_grad(f, 1);
    ew_requires_grad(s, 1);
    if (fr) *fr = f;
    if (st) *st = s;
    ew_rng r;
    ew_rng_seed(&r, c->seed);
    ew_tensor *a = ew_policy_denormalize(g, c->p, ew_policy_forward(g, c->p, f, s, 1, &r));
    return ew_sum(g, ew_mul(g, a, ew_tensor_wrap(g, 2, ws, c->w)));
}

static double eval(ew_graph *g, fd_ctx *c) {
    int old = ew_set_grad_enabled(g, 0);
    ew_tensor *l = objective(g, c, NULL, NULL);
    ew_set_grad_enabled(g, old);
    return l ? (double)l->data[0] : NAN;
}

static int fd_ok(ew_graph *g, fd_ctx *c, float *v, double analytic, double *num_out) {
    static const double ladder[5] = {1e-2, 3e-3, 1e-3, 3e-4, 1e-4};
    float keep = *v;
    int ok = 0;
    for (int e = 0; e < 5 && !ok; e++) {
        double h = ladder[e] * fmax(1.0, fabs(keep));
        float hp = keep + (float)h, hm = keep - (float)h;
        *v = hp;
        double lp = eval(g, c);
        *v = hm;
        double lm = eval(g, c);
        double num = (lp - lm) / ((double)hp - (double)hm);
        if (e == 0) *num_out = num;
        ok = fabs(num - analytic) <= 2e-4 + 2e-2 * fmax(fabs(num), fabs(analytic));
    }
    *v = keep;
    return ok;
}

static void test_gradients(ew_backend *be, int channels, float dropout) {
    char err[256] = "";
    ew_policy_config pc = tiny_config(channels);
    pc.dropout = dropout;
    ew_fm_stats st = test_stats();
    ew_policy p;
    if (ew_policy_init(&p, &pc, &st, err, sizeof err)) {
        CHECK(0, "init: %s", err);
        return;
    }
    enum { B = 2 };
    size_t nfr = (size_t)B * pc.n_cond * pc.channels * pc.height * pc.width;
    fd_ctx c = {&p, malloc(sizeof(float) * nfr), malloc(sizeof(float) * B * pc.n_cond * 5), malloc(sizeof(float) * B * 2),
                B, 11};
    ew_rng r;
    ew_rng_seed(&r, 5);
    rand_window(&r, &pc, B, c.frames, c.states);
    for (int i = 0; i < B * 2; i++) c.w[i] = (float)ew_rng_range(&r, -1.0, 1.0);
    c.w[1] *= 100.0f; /* b has a 0.01 scale: weight it so its path matters */
    c.w[3] *= 100.0f;
    ew_graph *g = ew_graph_create(be, 0);
    int n;
    ew_param *pp = ew_policy_params(&p, &n);
    ew_zero_grad(pp, n);
    ew_tensor *fr, *sv;
    ew_tensor *l = objective(g, &c, &fr, &sv);
    CHECK(l && ew_backward(g, l) == 0, "backward: %s", ew_graph_error(g) ? ew_graph_error(g) : "");
    /* copy the input gradients before the FD evaluations reset the arena */
    float *gs = malloc(sizeof(float) * B * pc.n_cond * 5), *gf = malloc(sizeof(float) * nfr);
    memcpy(gs, ew_tensor_grad(g, sv), sizeof(float) * B * pc.n_cond * 5);
    memcpy(gf, ew_tensor_grad(g, fr), sizeof(float) * nfr);
    int bad = 0, tested = 0;
    double num;
    for (int i = 0; i < n; i++) {
        size_t m = ew_param_numel(&pp[i]);
        for (int k = 0; k < 4; k++) {
            size_t j = (size_t)ew_rng_below(&r, (uint64_t)m);
            tested++;
            if (!fd_ok(g, &c, &pp[i].data[j], pp[i].grad[j], &num)) {
                bad++;
                fprintf(stderr, "  %s[%zu]: analytic %.6g numeric %.6g\n", pp[i].name, j, (double)pp[i].grad[j], num);
            }
        }
    }
    CHECK(bad == 0, "%d of %d parameter elements disagree (channels %d, dropout %g)", bad, tested, channels,
          (double)dropout);
    bad = 0;
    for (int i = 0; i < B * pc.n_cond * 5; i++) {
        if (!fd_ok(g, &c, &c.states[i], gs[i], &num)) {
            bad++;
            fprintf(stderr, "  state[%d]: analytic %.6g numeric %.6g\n", i, (double)gs[i], num);
        }
    }
    CHECK(bad == 0, "%d state elements disagree", bad);
    /* the last frame's positions carry no information: d/dx_last must cancel the others */
    double sx = 0;
    for (int j = 0; j < pc.n_cond; j++) sx += gs[j * 5];
    CHECK(fabs(sx) < 1e-5, "sum of position gradients %g (translation invariance)", sx);
    bad = 0;
    for (int k = 0; k < 30; k++) {
        size_t j = (size_t)ew_rng_below(&r, (uint64_t)nfr);
        if (!fd_ok(g, &c, &c.frames[j], gf[j], &num)) {
            bad++;
            fprintf(stderr, "  frame[%zu]: analytic %.6g numeric %.6g\n", j, (double)gf[j], num);
        }
    }
    CHECK(bad == 0, "%d frame elements disagree", bad);
    free(gs);
    free(gf);
    free(c.frames);
    free(c.states);
    free(c.w);
    ew_graph_destroy(g);
    ew_policy_free(&p);
}

/* ---- imitation ------------------------------------------------------------------------ */
static void test_imitation(ew_backend *be) {
    char err[256] = "";
    ew_policy_config pc = tiny_config(4);
    pc.proj = 16;
    pc.hidden = 16;
    ew_fm_stats st = test_stats();
    ew_policy p;
    CHECK(ew_policy_init(&p, &pc, &st, err, sizeof err) == 0, "init: %s", err);
    ew_pt_batch b;
    CHECK(ew_pt_batch_alloc(&b, 8, pc.n_cond, 3, pc.channels, pc.height, pc.width) == 0, "alloc");
    ew_rng r;
    ew_rng_seed(&r, 9);
    rand_window(&r, &pc, b.B, b.frames, b.states);
    for (int i = 0; i < b.B * b.T; i++) {
        b.actions[2 * i] = (float)ew_rng_range(&r, -2.0, 2.0);
        b.actions[2 * i + 1] = (float)ew_rng_range(&r, -0.02, 0.02);
    }
    int n;
    ew_param *pp = ew_policy_params(&p, &n);
    ew_optim_config oc = ew_optim_defaults(EW_OPTIM_ADAM);
    oc.lr = 3e-3f;
    ew_optim *opt;
    CHECK(ew_optim_create(pp, n, &oc, &opt, err, sizeof err) == 0, "optim: %s", err);
    ew_graph *g = ew_graph_create(be, 0);
    float l0, l1, gn;
    CHECK(ew_pt_imitation_step(g, &p, NULL, &b, 0, 0, 0, &l0, &gn, err, sizeof err) == 0, "eval: %s", err);
    /* the loss is the MSE of normalised actions: check it by hand */
    float act[16];
    ew_graph *g2 = ew_graph_create(be, 0);
    ew_policy_act_batch(g2, &p, b.B, b.frames, b.states, act, err, sizeof err);
    double ref = 0;
    for (int i = 0; i < b.B; i++)
        for (int k = 0; k < 2; k++) {
            double d = ((double)act[2 * i + k] - b.actions[(size_t)i * b.T * 2 + k]) / st.action_std[k];
            ref += d * d;
        }
    ref /= 2.0 * b.B;
    CHECK(fabs(ref - l0) <= 1e-4 * fmax(1.0, ref), "loss %g, by hand %g", (double)l0, ref);
    for (int s = 0; s < 150; s++)
        CHECK(ew_pt_imitation_step(g, &p, opt, &b, 5.0f, 1, (uint64_t)s, &l1, &gn, err, sizeof err) == 0, "step: %s",
              err);
    CHECK(ew_pt_imitation_step(g, &p, NULL, &b, 0, 0, 0, &l1, &gn, err, sizeof err) == 0, "eval: %s", err);
    CHECK(l1 < 0.2f * l0, "imitation loss %g -> %g", (double)l0, (double)l1);
    /* a batch that does not fit is refused */
    ew_pt_batch bb;
    ew_pt_batch_alloc(&bb, 1, pc.n_cond, 1, 3, pc.height, pc.width);
    CHECK(ew_pt_imitation_step(g, &p, opt, &bb, 0, 0, 0, &l1, &gn, err, sizeof err) == -1 && strstr(err, "does not fit"),
          "%s", err);
    ew_pt_batch_free(&bb);
    ew_graph_destroy(g);
    ew_graph_destroy(g2);
    ew_optim_free(opt);
    ew_pt_batch_free(&b);
    ew_policy_free(&p);
}

static void test_perm(void) {
    size_t perm[50], again[50];
    ew_pt_epoch_perm(50, 3, 1, perm);
    int seen[50] = {0}, moved = 0;
    for (int i = 0; i < 50; i++) {
        if (perm[i] < 50) seen[perm[i]]++;
        moved += perm[i] != (size_t)i;
    }
    int ok = 1;
    for (int i = 0; i < 50; i++) ok &= seen[i] == 1;
    CHECK(ok && moved > 25, "a permutation (moved %d)", moved);
    ew_pt_epoch_perm(50, 3, 1, again);
    CHECK(!memcmp(perm, again, sizeof perm), "same (seed, epoch), same order");
    ew_pt_epoch_perm(50, 3, 2, again);
    CHECK(memcmp(perm, again, sizeof perm), "another epoch, another order");
}

/* ---- checkpoints ---------------------------------------------------------------------- */
static char dir[256];

static int one_line(const char *s) { return s[0] && !strchr(s, '\n'); }

static void test_checkpoints(ew_backend *be) {
    char err[300] = "", path[300], bad[300];
    snprintf(path, sizeof path, "%s/p.safetensors", dir);
    snprintf(bad, sizeof bad, "%s/bad.safetensors", dir);
    ew_policy_config pc = tiny_config(3);
    ew_fm_stats st = test_stats();
    ew_policy p, q;
    ew_policy_init(&p, &pc, &st, err, sizeof err);
    ew_kv meta[1] = {{"egoworld.policy.method", "imitation"}};
    CHECK(ew_policy_save(&p, path, NULL, 0, meta, 1, err, sizeof err) == 0, "save: %s", err);
    CHECK(ew_policy_load(&q, path, err, sizeof err) == 0, "load: %s", err);
    int n, m;
    ew_param *pp = ew_policy_params(&p, &n), *qq = ew_policy_params(&q, &m);
    int same = n == m;
    for (int i = 0; same && i < n; i++)
        same = !strcmp(pp[i].name, qq[i].name) &&
               !memcmp(pp[i].data, qq[i].data, sizeof(float) * ew_param_numel(&pp[i]));
    CHECK(same, "round trip parameters");
    CHECK(!memcmp(&p.stats, &q.stats, sizeof p.stats) && q.cfg.nf == pc.nf && q.cfg.proj == pc.proj &&
              q.cfg.m_per_px == pc.m_per_px && q.cfg.seed == pc.seed,
          "round trip config and stats");
    ew_policy_free(&q);
    /* a different shape under the same name */
    ew_policy_config pc2 = pc;
    pc2.hidden = 7;
    ew_policy p2;
    ew_policy_init(&p2, &pc2, &st, err, sizeof err);
    char *cj = ew_policy_config_json(&pc), *sj = ew_fm_stats_json(&st);
    ew_kv kv[2] = {{EW_POLICY_META_CONFIG, cj}, {EW_POLICY_META_STATS, sj}};
    ew_checkpoint_write(bad, p2.params.items, p2.params.n, NULL, 0, kv, 2, err, sizeof err);
    CHECK(ew_policy_load(&q, bad, err, sizeof err) == -1 && one_line(err) && strstr(err, bad), "shape: %s", err);
    /* a missing tensor */
    ew_checkpoint_write(bad, p.params.items, p.params.n - 1, NULL, 0, kv, 2, err, sizeof err);
    CHECK(ew_policy_load(&q, bad, err, sizeof err) == -1 && one_line(err) && strstr(err, "head.3.bias"), "missing: %s",
          err);
    /* an unknown tensor (optimizer state is fine) */
    ew_param extra = p.params.items[0];
    snprintf(extra.name, sizeof extra.name, "stray.weight");
    ew_checkpoint_write(bad, p.params.items, p.params.n, &extra, 1, kv, 2, err, sizeof err);
    CHECK(ew_policy_load(&q, bad, err, sizeof err) == -1 && one_line(err) && strstr(err, "stray"), "unknown: %s", err);
    snprintf(extra.name, sizeof extra.name, "optim.m.enc.conv1.weight");
    ew_checkpoint_write(bad, p.params.items, p.params.n, &extra, 1, kv, 2, err, sizeof err);
    CHECK(ew_policy_load(&q, bad, err, sizeof err) == 0, "optimizer state ignored: %s", err);
    ew_policy_free(&q);
    /* config metadata: missing, unknown key, bad value; stats: bad std */
    ew_checkpoint_write(bad, p.params.items, p.params.n, NULL, 0, kv + 1, 1, err, sizeof err);
    CHECK(ew_policy_load(&q, bad, err, sizeof err) == -1 && one_line(err) && strstr(err, "config metadata: missing"),
          "no config: %s", err);
    const char *cfg_bad[3] = {
        "{\"nf\": 2, \"channels\": 3, \"n_cond\": 2, \"height\": 13, \"width\": 10, \"m_per_px\": 0.617, \"proj\": 6, "
        "\"hidden\": 5, \"dropout\": 0, \"seed\": 7, \"extra\": 1}",
        "{\"nf\": 2, \"channels\": 5, \"n_cond\": 2, \"height\": 13, \"width\": 10, \"m_per_px\": 0.617, \"proj\": 6, "
        "\"hidden\": 5, \"dropout\": 0, \"seed\": 7}",
        "{\"nf\": -2, \"channels\": 3, \"n_cond\": 2, \"height\": 13, \"width\": 10, \"m_per_px\": 0.617, \"proj\": 6, "
        "\"hidden\": 5, \"dropout\": 0, \"seed\": 7}"};
    const char *want[3] = {"unknown key", "channels", "nf"};
    for (int i = 0; i < 3; i++) {
        ew_kv kb[2] = {{EW_POLICY_META_CONFIG, cfg_bad[i]}, {EW_POLICY_META_STATS, sj}};
        ew_checkpoint_write(bad, p.params.items, p.params.n, NULL, 0, kb, 2, err, sizeof err);
        CHECK(ew_policy_load(&q, bad, err, sizeof err) == -1 && one_line(err) && strstr(err, want[i]) &&
                  strstr(err, bad),
              "config %d: %s", i, err);
    }
    ew_kv ks[2] = {{EW_POLICY_META_CONFIG, cj},
                   {EW_POLICY_META_STATS, "{\"state_mean\": [0,0,0,0,0], \"state_std\": [1,1,1,1,0], "
                                          "\"action_mean\": [0,0], \"action_std\": [1,1]}"}};
    ew_checkpoint_write(bad, p.params.items, p.params.n, NULL, 0, ks, 2, err, sizeof err);
    CHECK(ew_policy_load(&q, bad, err, sizeof err) == -1 && one_line(err) && strstr(err, "policy stats"), "stats: %s",
          err);
    /* garbage and truncation */
    FILE *f = fopen(bad, "wb");
    fputs("not a checkpoint at all", f);
    fclose(f);
    CHECK(ew_policy_load(&q, bad, err, sizeof err) == -1 && one_line(err) && strstr(err, bad), "garbage: %s", err);
    CHECK(ew_policy_load(&q, "/nonexistent/p.safetensors", err, sizeof err) == -1 && one_line(err), "missing: %s", err);
    /* the controller reports the same errors */
    ew_controller ctl;
    CHECK(ew_policy_controller_create(bad, 1, &ctl, err, sizeof err) == -1 && one_line(err) && strstr(err, bad), "%s",
          err);
    free(cj);
    free(sj);
    ew_policy_free(&p2);
    ew_policy_free(&p);
    (void)be;
}

/* ---- controller ----------------------------------------------------------------------- */
static void test_controller(ew_backend *be) {
    char err[300] = "", path[300];
    snprintf(path, sizeof path, "%s/ctl.safetensors", dir);
    ew_policy_config pc = ew_policy_config_default();
    pc.nf = 2;
    pc.channels = 4;
    pc.n_cond = 3;
    pc.proj = 8;
    pc.hidden = 8;
    ew_fm_stats st = test_stats();
    st.action_std[0] = 40.0f; /* large outputs: the controller must clip them */
    ew_policy p;
    ew_policy_init(&p, &pc, &st, err, sizeof err);
    CHECK(ew_policy_save(&p, path, NULL, 0, NULL, 0, err, sizeof err) == 0, "save: %s", err);
    ew_controller ctl;
    CHECK(ew_policy_controller_create(path, 1, &ctl, err, sizeof err) == 0, "create: %s", err);
    ew_world_config wc;
    ew_world_config_default(&wc);
    ew_world *w = ew_world_create(&wc, err, sizeof err);
    ew_world_reset(w, 4);
    ctl.reset(ctl.ctx, w);
    size_t fr = (size_t)4 * 117 * 24;
    float *win = malloc(sizeof(float) * fr * 3), sw[15];
    uint8_t *ras = malloc(fr);
    ew_raster_cfg rc;
    ew_raster_cfg_default(&rc);
    ew_graph *g = ew_graph_create(be, 0);
    int zero_ok = 1, match = 1, clipped = 1, finite = 1;
    for (int t = 0; t < 8; t++) {
        ctl.observe(ctl.ctx, w);
        /* the window by hand: the last 3 rasters and states */
        memmove(win, win + fr, sizeof(float) * fr * 2);
        memmove(sw, sw + 5, sizeof(float) * 10);
        ew_raster_world(&rc, w, ras, err, sizeof err);
        ew_raster_to_f32(ras, (int)fr, win + 2 * fr);
        const ew_kin_state *e = ew_world_ego(w);
        float *s = sw + 10;
        s[0] = e->x, s[1] = e->y, s[2] = e->dx, s[3] = e->dy, s[4] = e->s;
        ew_action a;
        CHECK(ew_controller_act(&ctl, w, &a, err, sizeof err) == 0, "act: %s", err);
        if (t < 2) {
            zero_ok &= a.a == 0.0f && a.b == 0.0f;
        } else {
            float ref[2];
            ew_policy_act_batch(g, &p, 1, win, sw, ref, err, sizeof err);
            ew_action u = ew_kin_clip(&wc.ego_limits, (ew_action){ref[0], ref[1]});
            match &= u.a == a.a && u.b == a.b;
            clipped &= a.a >= wc.ego_limits.a_min && a.a <= wc.ego_limits.a_max && fabsf(a.b) <= wc.ego_limits.b_max;
            finite &= isfinite(a.a) && isfinite(a.b);
        }
        ew_action idm;
        ew_world_ego_idm_action(w, &idm);
        ew_world_step(w, &idm);
    }
    CHECK(zero_ok, "zero action during the first n_cond - 1 steps");
    CHECK(match, "controller action = clipped batch action on the same window");
    CHECK(clipped && finite, "actions clipped to the ego limits");
    CHECK(ctl.plan_calls == 8 && ctl.plan_ms_total >= 0.0, "accounting %ld", ctl.plan_calls);
    /* reset clears the history */
    ctl.reset(ctl.ctx, w);
    ctl.observe(ctl.ctx, w);
    ew_action a;
    ew_controller_act(&ctl, w, &a, err, sizeof err);
    CHECK(a.a == 0.0f && a.b == 0.0f, "after reset: zero action until the window is full");
    ew_controller_destroy(&ctl);
    ew_graph_destroy(g);
    ew_world_destroy(w);
    free(win);
    free(ras);
    ew_policy_free(&p);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/ew_test_policy_XXXXXX");
    if (!mkdtemp(dir)) {
        fprintf(stderr, "mkdtemp failed\n");
        return 1;
    }
    ew_backend *be = ew_backend_cpu_create(1);
    test_shapes(be);
    test_gradients(be, 3, 0.0f);
    test_gradients(be, 4, 0.3f);
    test_imitation(be);
    test_perm();
    test_checkpoints(be);
    test_controller(be);
    ew_backend_destroy(be);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) fprintf(stderr, "cleanup failed\n");
    return check_done();
}
