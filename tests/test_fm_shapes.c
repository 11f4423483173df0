/* test_fm_shapes.c - every layer of the world model at the anchor's configuration (117x24,
 * 20 frames, nf 64, nz 32): encoder 117x24 -> 58x12 -> 29x6 -> 14x3, decoder back to
 * 3x117x24, MLP and latent sizes, parameter names and shapes, a full stochastic step and a
 * 2-step unroll; and configuration validation. */
#include "tests/test_fm_util.h"

static int is4(const ew_tensor *t, int a, int b, int c, int d) {
    return t && t->ndim == 4 && t->shape[0] == a && t->shape[1] == b && t->shape[2] == c && t->shape[3] == d;
}
static int is2(const ew_tensor *t, int a, int b) { return t && t->ndim == 2 && t->shape[0] == a && t->shape[1] == b; }

static const ew_param *find(ew_fm *m, const char *name) {
    int n;
    ew_param *p = ew_fm_params(m, &n);
    for (int i = 0; i < n; i++)
        if (!strcmp(p[i].name, name)) return &p[i];
    return NULL;
}

static int pshape(ew_fm *m, const char *name, int ndim, int a, int b, int c, int d) {
    const ew_param *p = find(m, name);
    int want[4] = {a, b, c, d};
    if (!p || p->ndim != ndim) return 0;
    for (int i = 0; i < ndim; i++)
        if (p->shape[i] != want[i]) return 0;
    return 1;
}

static void anchor(ew_backend *be) {
    char err[256] = "";
    ew_fm_config c = ew_fm_config_default();
    c.stochastic = 1;
    CHECK(c.nf == 64 && c.n_cond == 20 && c.height == 117 && c.width == 24 && c.nz == 32 && c.channels == 3 &&
              c.dropout == 0.1f && c.z_dropout == 0.5f && c.beta == 1e-6f && c.n_pred == 20,
          "anchor defaults");
    ew_fm m;
    if (ew_fm_init(&m, &c, NULL, err, sizeof err)) {
        CHECK(0, "anchor init: %s", err);
        return;
    }
    int eh[4] = {117, 58, 29, 14}, ewd[4] = {24, 12, 6, 3};
    for (int i = 0; i < 4; i++) CHECK(m.fh[i] == eh[i] && m.fw[i] == ewd[i], "stage %d: %dx%d", i, m.fh[i], m.fw[i]);
    CHECK(m.feat == 256 * 14 * 3, "feature size %d", m.feat);
    ew_graph *g = ew_graph_create(be, 0);
    ew_set_grad_enabled(g, 0);
    int xs[4] = {1, 60, 117, 24};
    ew_tensor *x = ew_tensor_zeros(g, 4, xs);
    int ch[4] = {60, 64, 128, 256};
    ew_tensor *h = x;
    for (int i = 0; i < 3; i++) {
        h = ew_conv_layer_fwd(g, &m.enc[i], h);
        CHECK(is4(h, 1, ch[i + 1], eh[i + 1], ewd[i + 1]), "enc.conv%d output [1,%d,%d,%d]", i + 1, ch[i + 1], eh[i + 1],
              ewd[i + 1]);
    }
    int ys[4] = {1, 3, 117, 24};
    ew_tensor *y = ew_tensor_zeros(g, 4, ys);
    for (int i = 0; i < 3; i++) {
        y = ew_conv_layer_fwd(g, &m.yenc[i], y);
        CHECK(is4(y, 1, ch[i + 1], eh[i + 1], ewd[i + 1]), "yenc.conv%d output", i + 1);
    }
    int rch[4] = {256, 64, 64, 256};
    ew_tensor *r = h;
    for (int i = 0; i < 3; i++) {
        r = ew_conv_layer_fwd(g, &m.res[i], r);
        CHECK(is4(r, 1, rch[i + 1], 14, 3), "res.conv%d output [1,%d,14,3]", i + 1, rch[i + 1]);
    }
    int dch[4] = {256, 128, 64, 3};
    ew_tensor *d = r;
    for (int i = 0; i < 3; i++) {
        d = ew_conv_layer_fwd(g, &m.dec[i], d);
        CHECK(is4(d, 1, dch[i + 1], eh[2 - i], ewd[2 - i]), "dec.deconv%d output [1,%d,%d,%d]", i + 1, dch[i + 1],
              eh[2 - i], ewd[2 - i]);
    }
    int s100[2] = {1, 100}, s2[2] = {1, 2}, sz[2] = {1, 32}, sf[2] = {1, 10752};
    CHECK(is2(ew_mlp_fwd(g, &m.senc, ew_tensor_zeros(g, 2, s100)), 1, 10752), "senc 100 -> 10752");
    CHECK(is2(ew_mlp_fwd(g, &m.aenc, ew_tensor_zeros(g, 2, s2)), 1, 10752), "aenc 2 -> 10752");
    CHECK(is2(ew_mlp_fwd(g, &m.post, ew_tensor_zeros(g, 2, sf)), 1, 64), "post 10752 -> 2nz");
    CHECK(is2(ew_linear_layer_fwd(g, &m.zexp, ew_tensor_zeros(g, 2, sz)), 1, 10752), "zexp 32 -> 10752");
    CHECK(is2(ew_mlp_fwd(g, &m.head, ew_tensor_zeros(g, 2, sf)), 1, 5), "head 10752 -> 5");
    CHECK(ew_graph_error(g) == NULL, "no graph error: %s", ew_graph_error(g) ? ew_graph_error(g) : "");

    CHECK(pshape(&m, "enc.conv1.weight", 4, 64, 60, 4, 4) && pshape(&m, "enc.conv3.bias", 1, 256, 0, 0, 0) &&
              pshape(&m, "yenc.conv1.weight", 4, 64, 3, 4, 4) && pshape(&m, "senc.0.weight", 2, 256, 100, 0, 0) &&
              pshape(&m, "senc.2.weight", 2, 10752, 256, 0, 0) && pshape(&m, "aenc.0.weight", 2, 256, 2, 0, 0) &&
              pshape(&m, "res.conv2.weight", 4, 64, 64, 3, 3) && pshape(&m, "res.conv3.weight", 4, 256, 64, 1, 1) &&
              pshape(&m, "dec.deconv1.weight", 4, 256, 128, 4, 4) && pshape(&m, "dec.deconv3.weight", 4, 64, 3, 4, 4) &&
              pshape(&m, "head.2.weight", 2, 5, 256, 0, 0) && pshape(&m, "post.2.weight", 2, 64, 256, 0, 0) &&
              pshape(&m, "zexp.weight", 2, 10752, 32, 0, 0),
          "parameter names and shapes");
    CHECK(m.dec[0].opts.out_pad[0] == 1 && m.dec[0].opts.out_pad[1] == 0 && m.dec[1].opts.out_pad[0] == 0 &&
              m.dec[2].opts.out_pad[0] == 1 && m.dec[2].opts.out_pad[1] == 0,
          "output paddings (1,0), (0,0), (1,0)");
    int np;
    ew_fm_params(&m, &np);
    CHECK(np == 50, "50 parameter tensors (%d)", np);
    printf("anchor stochastic FM: %zu parameters\n", ew_param_list_numel(&m.params));

    /* a whole step with the posterior and a 2-step unroll */
    ew_graph_reset(g);
    int ss[3] = {2, 20, 5}, as[2] = {2, 2}, fs[4] = {2, 60, 117, 24}, ts[4] = {2, 3, 117, 24};
    ew_tensor *st = ew_tensor_zeros(g, 3, ss);
    for (int b = 0; b < 2; b++)
        for (int t = 0; t < 20; t++) st->data[(b * 20 + t) * 5 + 2] = 1.0f;
    ew_rng rng;
    ew_rng_seed(&rng, 1);
    ew_fm_step_opts so = {1, EW_FM_Z_POSTERIOR, NULL, &rng};
    ew_fm_step_out o;
    int rc = ew_fm_step(g, &m, ew_tensor_zeros(g, 4, fs), st, ew_tensor_zeros(g, 2, as), ew_tensor_zeros(g, 4, ts), &so, &o);
    CHECK(rc == 0, "anchor step: %s", ew_graph_error(g) ? ew_graph_error(g) : "");
    CHECK(rc == 0 && is4(o.image, 2, 3, 117, 24) && is2(o.state, 2, 5) && is2(o.mu, 2, 32) && is2(o.logvar, 2, 32) &&
              is2(o.z, 2, 32) && is4(o.feat, 2, 256, 14, 3),
          "step outputs: image [2,3,117,24], state [2,5], mu/logvar/z [2,32], features [2,256,14,3]");
    ew_graph_reset(g);
    int as3[3] = {2, 2, 2}, tf[5] = {2, 2, 3, 117, 24}, tss[3] = {2, 2, 5};
    st = ew_tensor_zeros(g, 3, ss);
    ew_fm_inputs in = {ew_tensor_zeros(g, 4, fs), st, ew_tensor_zeros(g, 3, as3), ew_tensor_zeros(g, 5, tf),
                       ew_tensor_zeros(g, 3, tss)};
    ew_fm_unroll_opts uo = {1, EW_FM_Z_POSTERIOR, 0.5f, NULL, &rng};
    ew_fm_unroll_out out;
    rc = ew_fm_unroll(g, &m, &in, &uo, &out);
    CHECK(rc == 0 && out.steps == 2 && is4(out.images[1], 2, 3, 117, 24) && is2(out.states_phys[1], 2, 5) && out.loss &&
              out.loss->ndim == 0,
          "anchor unroll: %s", ew_graph_error(g) ? ew_graph_error(g) : "");
    /* a wrong frame count is rejected with a message */
    ew_graph_reset(g);
    int bad[4] = {2, 57, 117, 24};
    in.frames = ew_tensor_zeros(g, 4, bad);
    in.states = ew_tensor_zeros(g, 3, ss);
    in.actions = ew_tensor_zeros(g, 3, as3);
    in.target_frames = in.target_states = NULL;
    uo.zmode = EW_FM_Z_PRIOR;
    CHECK(ew_fm_unroll(g, &m, &in, &uo, &out) == -1 && strstr(ew_graph_error(g), "frames [2,60,117,24]"),
          "bad frames rejected: %s", ew_graph_error(g) ? ew_graph_error(g) : "");
    ew_graph_destroy(g);
    ew_fm_free(&m);

    /* FM-KM-noaction: the action slot encodes the 5-d kinematic next state; no head */
    c.variant = EW_FM_KM_NOACTION;
    c.stochastic = 0;
    CHECK(ew_fm_init(&m, &c, NULL, err, sizeof err) == 0, "init: %s", err);
    CHECK(pshape(&m, "aenc.0.weight", 2, 256, 5, 0, 0) && !find(&m, "head.0.weight") && !find(&m, "zexp.weight"),
          "noaction: aenc 5 -> ..., no head, no latent");
    ew_fm_free(&m);
}

static void validation(void) {
    char err[256];
    ew_fm_config c = ew_fm_config_default();
    c.height = 7;
    CHECK(ew_fm_config_validate(&c, err, sizeof err) == -1 && strstr(err, "height"), "height 7 rejected: %s", err);
    c = ew_fm_config_default();
    c.nf = 0;
    CHECK(ew_fm_config_validate(&c, err, sizeof err) == -1 && strstr(err, "nf"), "nf 0 rejected: %s", err);
    c = ew_fm_config_default();
    c.dropout = 1.0f;
    CHECK(ew_fm_config_validate(&c, err, sizeof err) == -1 && strstr(err, "dropout"), "dropout 1 rejected: %s", err);
    c = ew_fm_config_default();
    c.state_dim = 4;
    CHECK(ew_fm_config_validate(&c, err, sizeof err) == -1 && strstr(err, "state_dim"), "state_dim 4 rejected: %s", err);
    c = ew_fm_config_default();
    c.variant = (ew_fm_variant)7;
    CHECK(ew_fm_config_validate(&c, err, sizeof err) == -1 && strstr(err, "variant"), "variant 7 rejected: %s", err);
    ew_fm m;
    ew_fm_stats s = ew_fm_stats_identity();
    s.state_std[3] = 0.0f;
    c = fm_tiny_config(EW_FM_PLAIN, 0);
    CHECK(ew_fm_init(&m, &c, &s, err, sizeof err) == -1 && strstr(err, "std"), "zero std rejected: %s", err);
    ew_fm_variant v;
    CHECK(ew_fm_variant_parse("fm-km-noaction", &v) == 0 && v == EW_FM_KM_NOACTION && ew_fm_variant_parse("km", &v) == -1,
          "variant names");
}

int main(void) {
    ew_backend *be = ew_backend_cpu_create(2);
    anchor(be);
    validation();
    ew_backend_destroy(be);
    return check_done();
}
