/* test_fm_train.c - the world model's training step on tiny configurations: the loss on a
 * fixed batch goes strictly down (one Adam step, and several), every variant trains, the
 * reported loss equals a separate evaluation with the same randomness, and dropout, z-dropout
 * and the latent noise are reproducible from their seeds. */
#include "tests/test_fm_util.h"

static int params_equal(ew_fm *a, ew_fm *b) {
    int na, nb;
    ew_param *pa = ew_fm_params(a, &na), *pb = ew_fm_params(b, &nb);
    if (na != nb) return 0;
    for (int i = 0; i < na; i++)
        if (memcmp(pa[i].data, pb[i].data, sizeof(float) * ew_param_numel(&pa[i]))) return 0;
    return 1;
}

/* No dropout, no z-dropout: the training loss is the evaluation loss with the same seed, and
 * one small Adam step lowers it. Then 30 steps with the configured dropout lower it a lot. */
static void loss_decreases(ew_backend *be, ew_fm_variant v, int stochastic) {
    char err[256] = "";
    ew_fm_config c = fm_tiny_config(v, stochastic);
    c.dropout = 0.0f;
    c.z_dropout = 0.0f;
    ew_fm_stats st = fm_test_stats();
    ew_fm m;
    fm_test_batch tb;
    CHECK(fm_test_batch_make(&tb, &c, 4, c.n_pred, 77) == 0, "batch");
    if (ew_fm_init(&m, &c, &st, err, sizeof err)) {
        CHECK(0, "init: %s", err);
        return;
    }
    ew_fm_train_config tc = ew_fm_train_defaults();
    ew_fm_trainer *t;
    CHECK(ew_fm_trainer_create(&m, be, &tc, &t, err, sizeof err) == 0, "trainer: %s", err);
    ew_fm_losses l0, ls, l1;
    CHECK(ew_fm_eval_batch(t, &tb.b, 9, &l0, err, sizeof err) == 0, "eval: %s", err);
    CHECK(ew_fm_train_step(t, &tb.b, 9, &ls, err, sizeof err) == 0, "step: %s", err);
    CHECK(ew_fm_eval_batch(t, &tb.b, 9, &l1, err, sizeof err) == 0, "eval: %s", err);
    const char *name = ew_fm_variant_name(v);
    CHECK(ls.loss == l0.loss, "%s/%d: training loss %.9g equals evaluation loss %.9g", name, stochastic,
          (double)ls.loss, (double)l0.loss);
    CHECK(l1.loss < l0.loss, "%s/%d: one step lowers the loss: %.9g -> %.9g", name, stochastic, (double)l0.loss,
          (double)l1.loss);
    CHECK(ls.grad_norm > 0.0f && isfinite(ls.grad_norm), "gradient norm %g", (double)ls.grad_norm);
    CHECK(fabsf(ls.loss - (ls.img_mse + ls.state_mse + c.beta * ls.kl)) <= 1e-6f * ls.loss, "loss = img + state + beta kl");
    if (stochastic) CHECK(ls.kl > 0.0f && ls.prior_steps == 0, "posterior every step, KL %g", (double)ls.kl);
    if (v != EW_FM_PLAIN)
        CHECK(l1.state_mse == l0.state_mse, "%s: the state comes from the kinematic model (no parameter changes it)", name);
    ew_fm_trainer_free(t);
    ew_fm_free(&m);

    /* several steps with dropout 0.1 and z-dropout 0.5, lr 1e-3 */
    c = fm_tiny_config(v, stochastic);
    CHECK(ew_fm_init(&m, &c, &st, err, sizeof err) == 0, "init: %s", err);
    tc.lr = 1e-3f;
    CHECK(ew_fm_trainer_create(&m, be, &tc, &t, err, sizeof err) == 0, "trainer: %s", err);
    CHECK(ew_fm_eval_batch(t, &tb.b, 3, &l0, err, sizeof err) == 0, "eval: %s", err);
    for (int s = 0; s < 30; s++) CHECK(ew_fm_train_step(t, &tb.b, 100 + (uint64_t)s, &ls, err, sizeof err) == 0, "step: %s", err);
    CHECK(ew_fm_eval_batch(t, &tb.b, 3, &l1, err, sizeof err) == 0, "eval: %s", err);
    CHECK(l1.img_mse < 0.99f * l0.img_mse && l1.loss < l0.loss, "%s/%d: 30 steps: image mse %.6g -> %.6g, loss %.6g -> %.6g",
          name, stochastic, (double)l0.img_mse, (double)l1.img_mse, (double)l0.loss, (double)l1.loss);
    ew_fm_trainer_free(t);
    ew_fm_free(&m);
    fm_test_batch_free(&tb);
}

/* Two identical models trained with the same seeds stay bit-identical; another seed gives
 * other dropout masks and latent noise. */
static void reproducible(ew_backend *be) {
    char err[256] = "";
    ew_fm_config c = fm_tiny_config(EW_FM_PLAIN, 1);
    ew_fm_stats st = fm_test_stats();
    ew_fm a, b, d;
    fm_test_batch tb;
    fm_test_batch_make(&tb, &c, 3, c.n_pred, 5);
    CHECK(ew_fm_init(&a, &c, &st, err, sizeof err) == 0 && ew_fm_init(&b, &c, &st, err, sizeof err) == 0 &&
              ew_fm_init(&d, &c, &st, err, sizeof err) == 0,
          "init: %s", err);
    CHECK(params_equal(&a, &b), "same seed, same initial weights");
    ew_fm_train_config tc = ew_fm_train_defaults();
    ew_fm_trainer *ta, *tb2, *td;
    ew_fm_trainer_create(&a, be, &tc, &ta, err, sizeof err);
    ew_fm_trainer_create(&b, be, &tc, &tb2, err, sizeof err);
    ew_fm_trainer_create(&d, be, &tc, &td, err, sizeof err);
    int same = 1, diff_loss = 0, prior_a = 0;
    for (int s = 0; s < 4; s++) {
        ew_fm_losses la, lb, ld;
        ew_fm_train_step(ta, &tb.b, 1000 + (uint64_t)s, &la, err, sizeof err);
        ew_fm_train_step(tb2, &tb.b, 1000 + (uint64_t)s, &lb, err, sizeof err);
        ew_fm_train_step(td, &tb.b, 2000 + (uint64_t)s, &ld, err, sizeof err);
        same &= la.loss == lb.loss && la.kl == lb.kl && la.prior_steps == lb.prior_steps && la.grad_norm == lb.grad_norm;
        diff_loss += la.loss != ld.loss;
        prior_a += la.prior_steps;
    }
    CHECK(same, "same seeds: identical loss terms");
    CHECK(params_equal(&a, &b), "same seeds: bit-identical parameters after 4 steps");
    CHECK(diff_loss >= 3, "other seeds: other dropout masks / noise (%d of 4 losses differ)", diff_loss);
    CHECK(!params_equal(&a, &d), "other seeds: other parameters");
    ew_fm_trainer_free(ta);
    ew_fm_trainer_free(tb2);
    ew_fm_trainer_free(td);
    ew_fm_free(&a);
    ew_fm_free(&b);
    ew_fm_free(&d);
    fm_test_batch_free(&tb);
    CHECK(prior_a >= 0 && prior_a <= 4 * c.n_pred, "prior step count in range");
}

/* Autoregression: step t + 1 of the unroll is one step on the window whose oldest frame and
 * state were dropped and the predicted ones appended (given z, no dropout: comparable). */
static void autoregressive(ew_backend *be, int n_cond) {
    char err[256] = "";
    ew_fm_config c = fm_tiny_config(EW_FM_PLAIN, 1);
    c.n_cond = n_cond;
    ew_fm_stats st = fm_test_stats();
    ew_fm m;
    CHECK(ew_fm_init(&m, &c, &st, err, sizeof err) == 0, "init: %s", err);
    enum { B = 2, T = 3 };
    fm_test_batch tb;
    fm_test_batch_make(&tb, &c, B, T, 6);
    ew_graph *g = ew_graph_create(be, 0);
    ew_set_grad_enabled(g, 0);
    int C = 3, H = c.height, W = c.width;
    int fs[4] = {B, n_cond * C, H, W}, ss[3] = {B, n_cond, 5}, as[3] = {B, T, 2}, zs3[3] = {T, B, c.nz};
    ew_tensor *z = ew_tensor_new(g, 3, zs3);
    ew_rng r;
    ew_rng_seed(&r, 1);
    for (size_t i = 0; i < ew_numel(z); i++) z->data[i] = (float)ew_rng_normal(&r);
    ew_fm_inputs in = {ew_tensor_wrap(g, 4, fs, tb.b.frames), ew_tensor_wrap(g, 3, ss, tb.b.states),
                       ew_tensor_wrap(g, 3, as, tb.b.actions), NULL, NULL};
    ew_fm_unroll_opts o = {0, EW_FM_Z_GIVEN, 0.0f, z, NULL};
    ew_fm_unroll_out out;
    CHECK(ew_fm_unroll(g, &m, &in, &o, &out) == 0, "unroll: %s", ew_graph_error(g) ? ew_graph_error(g) : "");
    CHECK(out.loss == NULL && out.prior_steps == 0, "no targets, no loss");
    /* manual windows */
    size_t img = (size_t)C * H * W;
    float *win = malloc(sizeof(float) * B * n_cond * img), *sw = malloc(sizeof(float) * B * n_cond * 5);
    memcpy(win, tb.b.frames, sizeof(float) * B * n_cond * img);
    for (int b = 0; b < B; b++) ew_fm_normalize_states(&m, tb.b.states + (size_t)b * n_cond * 5, sw + (size_t)b * n_cond * 5, (size_t)n_cond);
    int same = 1;
    for (int t = 0; t < T; t++) {
        int s2[2] = {B, 2}, zs[2] = {B, c.nz};
        float act[B * 2], zt[B * 3];
        for (int b = 0; b < B; b++) memcpy(act + 2 * b, tb.b.actions + ((size_t)b * T + t) * 2, sizeof(float) * 2);
        memcpy(zt, z->data + (size_t)t * B * c.nz, sizeof zt);
        ew_fm_step_opts so = {0, EW_FM_Z_GIVEN, ew_tensor_from(g, 2, zs, zt), NULL};
        ew_fm_step_out o1;
        CHECK(ew_fm_step(g, &m, ew_tensor_from(g, 4, fs, win), ew_tensor_from(g, 3, ss, sw), ew_tensor_from(g, 2, s2, act), NULL,
                         &so, &o1) == 0,
              "step: %s", ew_graph_error(g) ? ew_graph_error(g) : "");
        same &= !memcmp(o1.image->data, out.images[t]->data, sizeof(float) * B * img) &&
                !memcmp(o1.state->data, out.states[t]->data, sizeof(float) * B * 5);
        for (int b = 0; b < B; b++) {
            float *wb = win + (size_t)b * n_cond * img, *sb = sw + (size_t)b * n_cond * 5;
            memmove(wb, wb + img, sizeof(float) * (n_cond - 1) * img);
            memcpy(wb + (n_cond - 1) * img, o1.image->data + b * img, sizeof(float) * img);
            memmove(sb, sb + 5, sizeof(float) * (n_cond - 1) * 5);
            memcpy(sb + (n_cond - 1) * 5, o1.state->data + b * 5, sizeof(float) * 5);
        }
    }
    CHECK(same, "n_cond %d: the unroll equals steps on shifted windows with the predictions appended", n_cond);
    free(win);
    free(sw);
    ew_graph_destroy(g);
    ew_fm_free(&m);
    fm_test_batch_free(&tb);
}

/* z-dropout coin per step: same seed same choices, frequency about z_dropout; 0 and 1 are
 * never and always; prior steps carry no KL. Dropout masks follow the rng state. */
static void zdropout_and_dropout(ew_backend *be) {
    char err[256] = "";
    ew_fm_config c = fm_tiny_config(EW_FM_KM, 1);
    ew_fm_stats st = fm_test_stats();
    ew_fm m;
    CHECK(ew_fm_init(&m, &c, &st, err, sizeof err) == 0, "init: %s", err);
    ew_graph *g = ew_graph_create(be, 0);
    const int T = 16, B = 2;
    fm_test_batch tb;
    fm_test_batch_make(&tb, &c, B, T, 8);
    int fs[4] = {B, c.n_cond * 3, c.height, c.width}, ss[3] = {B, c.n_cond, 5}, as[3] = {B, T, 2};
    int tfs[5] = {B, T, 3, c.height, c.width}, tss[3] = {B, T, 5};
    int total = 0, runs = 0, same = 1;
    for (uint64_t seed = 0; seed < 12; seed++) {
        int pattern[2][16];
        float img0[2] = {0, 0};
        for (int rep = 0; rep < 2; rep++) {
            ew_graph_reset(g);
            ew_set_grad_enabled(g, 0);
            ew_fm_inputs in = {ew_tensor_wrap(g, 4, fs, tb.b.frames), ew_tensor_wrap(g, 3, ss, tb.b.states),
                               ew_tensor_wrap(g, 3, as, tb.b.actions), ew_tensor_wrap(g, 5, tfs, tb.b.target_frames),
                               ew_tensor_wrap(g, 3, tss, tb.b.target_states)};
            ew_rng r;
            ew_rng_seed(&r, seed);
            ew_fm_unroll_opts o = {1, EW_FM_Z_POSTERIOR, 0.5f, NULL, &r};
            ew_fm_unroll_out out;
            if (ew_fm_unroll(g, &m, &in, &o, &out)) {
                CHECK(0, "unroll: %s", ew_graph_error(g));
                break;
            }
            /* record per-step choice by re-deriving: a prior step has no KL contribution, so count
             * steps through the out counter and compare image checksums */
            for (int t = 0; t < T; t++) pattern[rep][t] = (int)(out.images[t]->data[7] * 1e6f);
            img0[rep] = out.images[T - 1]->data[3];
            if (rep == 0) {
                total += out.prior_steps;
                runs += T;
            }
        }
        same &= !memcmp(pattern[0], pattern[1], sizeof pattern[0]) && img0[0] == img0[1];
    }
    CHECK(same, "same seed: same z-dropout choices, dropout masks and noise");
    double frac = (double)total / runs;
    CHECK(frac > 0.35 && frac < 0.65, "z-dropout frequency %.3f near 0.5", frac);

    /* z_dropout 0: never the prior (KL > 0); 1: always (KL exactly 0) */
    for (int k = 0; k < 2; k++) {
        ew_graph_reset(g);
        ew_fm_inputs in = {ew_tensor_wrap(g, 4, fs, tb.b.frames), ew_tensor_wrap(g, 3, ss, tb.b.states),
                           ew_tensor_wrap(g, 3, as, tb.b.actions), ew_tensor_wrap(g, 5, tfs, tb.b.target_frames),
                           ew_tensor_wrap(g, 3, tss, tb.b.target_states)};
        ew_rng r;
        ew_rng_seed(&r, 4);
        ew_fm_unroll_opts o = {1, EW_FM_Z_POSTERIOR, (float)k, NULL, &r};
        ew_fm_unroll_out out;
        CHECK(ew_fm_unroll(g, &m, &in, &o, &out) == 0, "unroll: %s", ew_graph_error(g));
        if (k == 0) CHECK(out.prior_steps == 0 && out.kl->data[0] > 0.0f, "z_dropout 0: posterior every step");
        else CHECK(out.prior_steps == T && out.kl->data[0] == 0.0f, "z_dropout 1: prior every step, no KL");
    }

    /* one step: dropout masks from the rng; train 0 ignores them */
    ew_graph_reset(g);
    int f1[4] = {B, c.n_cond * 3, c.height, c.width}, s1[3] = {B, c.n_cond, 5}, a1[2] = {B, 2};
    ew_tensor *x = ew_tensor_wrap(g, 4, f1, tb.b.frames), *s = ew_tensor_wrap(g, 3, s1, tb.b.states);
    ew_tensor *a = ew_tensor_wrap(g, 2, a1, tb.b.actions);
    int zs[2] = {B, c.nz};
    ew_tensor *z = ew_tensor_zeros(g, 2, zs);
    ew_fm_step_out o1, o2, o3, o4;
    ew_rng r1, r2, r3;
    ew_rng_seed(&r1, 11);
    ew_rng_seed(&r2, 11);
    ew_rng_seed(&r3, 12);
    ew_fm_step_opts so1 = {1, EW_FM_Z_GIVEN, z, &r1}, so2 = {1, EW_FM_Z_GIVEN, z, &r2}, so3 = {1, EW_FM_Z_GIVEN, z, &r3};
    ew_fm_step_opts so4 = {0, EW_FM_Z_GIVEN, z, NULL};
    CHECK(ew_fm_step(g, &m, x, s, a, NULL, &so1, &o1) == 0 && ew_fm_step(g, &m, x, s, a, NULL, &so2, &o2) == 0 &&
              ew_fm_step(g, &m, x, s, a, NULL, &so3, &o3) == 0 && ew_fm_step(g, &m, x, s, a, NULL, &so4, &o4) == 0,
          "steps: %s", ew_graph_error(g) ? ew_graph_error(g) : "");
    size_t n = ew_numel(o1.image);
    CHECK(!memcmp(o1.image->data, o2.image->data, n * sizeof(float)), "same rng state, same dropout masks");
    CHECK(memcmp(o1.image->data, o3.image->data, n * sizeof(float)) != 0, "other seed, other masks");
    CHECK(memcmp(o1.image->data, o4.image->data, n * sizeof(float)) != 0, "dropout off differs from dropout on");
    CHECK(o4.mu == NULL && o4.z == z, "given z used, no posterior");
    ew_graph_destroy(g);
    ew_fm_free(&m);
    fm_test_batch_free(&tb);
}

int main(void) {
    ew_backend *be = ew_backend_cpu_create(1);
    for (int v = 0; v < 3; v++)
        for (int s = 0; s < 2; s++) loss_decreases(be, (ew_fm_variant)v, s);
    reproducible(be);
    zdropout_and_dropout(be);
    autoregressive(be, 1);
    autoregressive(be, 2);
    autoregressive(be, 5);
    ew_backend_destroy(be);
    return check_done();
}
