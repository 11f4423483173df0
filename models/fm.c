/* fm.c - the world model: construction, one step, unroll, training step, inference
 * (see fm.h; checkpoints and JSON are in fm_io.c). */
#include "models/fm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(char *err, size_t errsz, const char *fmt, const char *what) {
    if (err && errsz) snprintf(err, errsz, fmt, what);
    return -1;
}

ew_fm_config ew_fm_config_default(void) {
    ew_fm_config c;
    memset(&c, 0, sizeof c);
    c.variant = EW_FM_PLAIN;
    c.stochastic = 0;
    c.nf = 64;
    c.hidden = 256;
    c.n_cond = 20;
    c.n_pred = 20;
    c.height = 117;
    c.width = 24;
    c.channels = 3;
    c.state_dim = 5;
    c.action_dim = 2;
    c.nz = 32;
    c.dropout = 0.1f;
    c.z_dropout = 0.5f;
    c.beta = 1e-6f;
    c.dt = 0.1f;
    c.allow_reverse = 0;
    c.seed = 1;
    return c;
}

ew_fm_stats ew_fm_stats_identity(void) {
    ew_fm_stats s;
    for (int i = 0; i < 5; i++) {
        s.state_mean[i] = 0.0f;
        s.state_std[i] = 1.0f;
    }
    for (int i = 0; i < 2; i++) {
        s.action_mean[i] = 0.0f;
        s.action_std[i] = 1.0f;
    }
    return s;
}

const char *ew_fm_variant_name(ew_fm_variant v) {
    switch (v) {
    case EW_FM_PLAIN: return "fm";
    case EW_FM_KM: return "fm-km";
    case EW_FM_KM_NOACTION: return "fm-km-noaction";
    }
    return "?";
}

int ew_fm_variant_parse(const char *s, ew_fm_variant *out) {
    for (int v = 0; v < 3; v++)
        if (s && strcmp(s, ew_fm_variant_name((ew_fm_variant)v)) == 0) {
            *out = (ew_fm_variant)v;
            return 0;
        }
    return -1;
}

int ew_fm_config_validate(const ew_fm_config *c, char *err, size_t errsz) {
    if (!c) return fail(err, errsz, "%s", "fm config: NULL");
    if (c->variant != EW_FM_PLAIN && c->variant != EW_FM_KM && c->variant != EW_FM_KM_NOACTION)
        return fail(err, errsz, "fm config: %s", "unknown variant");
    if (c->stochastic != 0 && c->stochastic != 1) return fail(err, errsz, "fm config: %s", "stochastic must be 0 or 1");
    if (c->nf < 1 || c->nf > 4096) return fail(err, errsz, "fm config: %s", "nf out of range [1, 4096]");
    if (c->hidden < 1 || c->hidden > 65536) return fail(err, errsz, "fm config: %s", "hidden out of range [1, 65536]");
    if (c->n_cond < 1 || c->n_cond > 1000) return fail(err, errsz, "fm config: %s", "n_cond out of range [1, 1000]");
    if (c->n_pred < 1 || c->n_pred > 1000) return fail(err, errsz, "fm config: %s", "n_pred out of range [1, 1000]");
    if (c->height < 8 || c->width < 8 || c->height > 4096 || c->width > 4096)
        return fail(err, errsz, "fm config: %s", "height and width must be in [8, 4096]");
    if (c->channels < 1 || c->channels > 64) return fail(err, errsz, "fm config: %s", "channels out of range [1, 64]");
    if (c->state_dim != 5) return fail(err, errsz, "fm config: %s", "state_dim must be 5");
    if (c->action_dim != 2) return fail(err, errsz, "fm config: %s", "action_dim must be 2");
    if (c->nz < 1 || c->nz > 4096) return fail(err, errsz, "fm config: %s", "nz out of range [1, 4096]");
    if (!(c->dropout >= 0.0f && c->dropout < 1.0f)) return fail(err, errsz, "fm config: %s", "dropout must be in [0, 1)");
    if (!(c->z_dropout >= 0.0f && c->z_dropout <= 1.0f))
        return fail(err, errsz, "fm config: %s", "z_dropout must be in [0, 1]");
    if (!(c->beta >= 0.0f && isfinite(c->beta))) return fail(err, errsz, "fm config: %s", "beta must be >= 0");
    if (!(c->dt > 0.0f && isfinite(c->dt))) return fail(err, errsz, "fm config: %s", "dt must be > 0");
    if (c->allow_reverse != 0 && c->allow_reverse != 1)
        return fail(err, errsz, "fm config: %s", "allow_reverse must be 0 or 1");
    long feat = 4L * c->nf * (c->height / 8) * (c->width / 8);
    if (feat > 100000000L) return fail(err, errsz, "fm config: %s", "feature size too large");
    return 0;
}

static int stats_validate(const ew_fm_stats *s, char *err, size_t errsz) {
    for (int i = 0; i < 5; i++)
        if (!isfinite(s->state_mean[i]) || !(s->state_std[i] > 0.0f) || !isfinite(s->state_std[i]))
            return fail(err, errsz, "fm stats: %s", "state mean must be finite and std positive");
    for (int i = 0; i < 2; i++)
        if (!isfinite(s->action_mean[i]) || !(s->action_std[i] > 0.0f) || !isfinite(s->action_std[i]))
            return fail(err, errsz, "fm stats: %s", "action mean must be finite and std positive");
    return 0;
}

void ew_fm_free(ew_fm *m) {
    if (!m) return;
    for (int i = 0; i < 3; i++) {
        ew_conv_layer_free(&m->enc[i]);
        ew_conv_layer_free(&m->yenc[i]);
        ew_conv_layer_free(&m->res[i]);
        ew_conv_layer_free(&m->dec[i]);
    }
    ew_mlp_free(&m->senc);
    ew_mlp_free(&m->aenc);
    ew_mlp_free(&m->head);
    ew_mlp_free(&m->post);
    ew_linear_layer_free(&m->zexp);
    ew_param_list_free(&m->params);
}

static int conv_encoder(ew_conv_layer *l, const char *prefix, int in_ch, int nf, uint64_t *seed, char *err,
                        size_t errsz) {
    ew_conv_opts s2 = {{2, 2}, {1, 1}, {0, 0}};
    int ch[4] = {in_ch, nf, 2 * nf, 4 * nf};
    char name[48];
    for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof name, "%s.conv%d", prefix, i + 1);
        if (ew_conv2d_layer_init(&l[i], name, ch[i], ch[i + 1], 4, 4, &s2, 1, (*seed)++, err, errsz)) return -1;
    }
    return 0;
}

/* Collects every trainable tensor of m into m->params in the fixed order. 0 or -1 (out of memory). */
static int collect_params(ew_fm *m) {
    const ew_fm_config *c = &m->cfg;
    int perr = 0;
    for (int i = 0; i < 3 && !perr; i++) perr |= ew_conv_layer_params(&m->enc[i], &m->params);
    if (!perr) perr |= ew_mlp_params(&m->senc, &m->params);
    if (!perr) perr |= ew_mlp_params(&m->aenc, &m->params);
    for (int i = 0; i < 3 && !perr; i++) perr |= ew_conv_layer_params(&m->res[i], &m->params);
    for (int i = 0; i < 3 && !perr; i++) perr |= ew_conv_layer_params(&m->dec[i], &m->params);
    if (!perr && c->variant == EW_FM_PLAIN) perr |= ew_mlp_params(&m->head, &m->params);
    if (!perr && c->stochastic) {
        for (int i = 0; i < 3 && !perr; i++) perr |= ew_conv_layer_params(&m->yenc[i], &m->params);
        if (!perr) perr |= ew_mlp_params(&m->post, &m->params);
        if (!perr) perr |= ew_linear_layer_params(&m->zexp, &m->params);
    }
    return perr ? -1 : 0;
}

static void *fm_be_alloc(void *ctx, size_t bytes) {
    const ew_backend *be = ctx;
    return be->mem_alloc(be, bytes);
}

static void fm_be_free(void *ctx, void *p) {
    const ew_backend *be = ctx;
    be->mem_free(be, p);
}

int ew_fm_init(ew_fm *m, const ew_fm_config *cfg, const ew_fm_stats *stats, char *err, size_t errsz) {
    if (!m) return fail(err, errsz, "%s", "fm init: NULL model");
    memset(m, 0, sizeof *m);
    if (ew_fm_config_validate(cfg, err, errsz)) return -1;
    ew_fm_stats st = stats ? *stats : ew_fm_stats_identity();
    if (stats_validate(&st, err, errsz)) return -1;
    m->cfg = *cfg;
    m->stats = st;
    const ew_fm_config *c = cfg;
    m->fh[0] = c->height;
    m->fw[0] = c->width;
    for (int i = 0; i < 3; i++) {
        m->fh[i + 1] = (m->fh[i] + 2 - 4) / 2 + 1;
        m->fw[i + 1] = (m->fw[i] + 2 - 4) / 2 + 1;
    }
    int nf = c->nf, hid = c->hidden;
    m->feat = 4 * nf * m->fh[3] * m->fw[3];
    uint64_t seed = c->seed * 1000003ULL + 17;
    int rc = conv_encoder(m->enc, "enc", c->n_cond * c->channels, nf, &seed, err, errsz);
    ew_conv_opts one = {{1, 1}, {0, 0}, {0, 0}}, three = {{1, 1}, {1, 1}, {0, 0}};
    int rch[4] = {4 * nf, nf, nf, 4 * nf};
    char name[48];
    for (int i = 0; i < 3 && !rc; i++) {
        snprintf(name, sizeof name, "res.conv%d", i + 1);
        int k = i == 1 ? 3 : 1;
        rc = ew_conv2d_layer_init(&m->res[i], name, rch[i], rch[i + 1], k, k, i == 1 ? &three : &one, 1, seed++, err,
                                  errsz);
    }
    int dech[4] = {4 * nf, 2 * nf, nf, c->channels};
    for (int i = 0; i < 3 && !rc; i++) {
        int in_h = m->fh[3 - i], in_w = m->fw[3 - i], want_h = m->fh[2 - i], want_w = m->fw[2 - i];
        ew_conv_opts o = {{2, 2}, {1, 1}, {want_h - 2 * in_h, want_w - 2 * in_w}};
        snprintf(name, sizeof name, "dec.deconv%d", i + 1);
        rc = ew_conv_transpose2d_layer_init(&m->dec[i], name, dech[i], dech[i + 1], 4, 4, &o, 1, seed++, err, errsz);
    }
    int ss[4] = {5 * c->n_cond, hid, hid, m->feat};
    int as[4] = {c->variant == EW_FM_KM_NOACTION ? 5 : 2, hid, hid, m->feat};
    if (!rc) rc = ew_mlp_init(&m->senc, "senc", 3, ss, 0.2f, seed++, err, errsz);
    if (!rc) rc = ew_mlp_init(&m->aenc, "aenc", 3, as, 0.2f, seed++, err, errsz);
    if (!rc && c->variant == EW_FM_PLAIN) {
        int hs[4] = {m->feat, hid, hid, 5};
        rc = ew_mlp_init(&m->head, "head", 3, hs, 0.2f, seed, err, errsz);
    }
    seed++;
    if (!rc && c->stochastic) {
        rc = conv_encoder(m->yenc, "yenc", c->channels, nf, &seed, err, errsz);
        int ps[4] = {m->feat, hid, hid, 2 * c->nz};
        if (!rc) rc = ew_mlp_init(&m->post, "post", 3, ps, 0.2f, seed++, err, errsz);
        if (!rc) rc = ew_linear_layer_init(&m->zexp, "zexp", c->nz, m->feat, 1, seed++, err, errsz);
    }
    int perr = rc ? 0 : collect_params(m);
    if (perr && !rc) rc = fail(err, errsz, "%s", "fm init: out of memory");
    if (rc) ew_fm_free(m);
    return rc;
}

int ew_fm_move_to_backend(ew_fm *m, const ew_backend *be, char *err, size_t errsz) {
    if (!ew_backend_is_device(be)) return 0;
    ew_allocator al = {fm_be_alloc, fm_be_free, (void *)be};
    const ew_fm_config *c = &m->cfg;
    int bad = 0;
    for (int i = 0; i < 3 && !bad; i++) bad |= ew_conv_layer_move(&m->enc[i], &al) | ew_conv_layer_move(&m->res[i], &al) |
                                              ew_conv_layer_move(&m->dec[i], &al);
    if (!bad) bad |= ew_mlp_move(&m->senc, &al) | ew_mlp_move(&m->aenc, &al);
    if (!bad && c->variant == EW_FM_PLAIN) bad |= ew_mlp_move(&m->head, &al);
    if (!bad && c->stochastic) {
        for (int i = 0; i < 3 && !bad; i++) bad |= ew_conv_layer_move(&m->yenc[i], &al);
        if (!bad) bad |= ew_mlp_move(&m->post, &al) | ew_linear_layer_move(&m->zexp, &al);
    }
    m->params.n = 0;
    if (collect_params(m)) bad = 1;
    if (bad) {
        if (err && errsz)
            snprintf(err, errsz, "fm: moving the parameters to the %s backend failed (%s)", be->name,
                     ew_backend_error(be) ? ew_backend_error(be) : "out of device memory");
        return -1;
    }
    return 0;
}

ew_param *ew_fm_params(ew_fm *m, int *count) {
    if (count) *count = m->params.n;
    return m->params.items;
}

void ew_fm_normalize_states(const ew_fm *m, const float *phys, float *norm, size_t n) {
    for (size_t r = 0; r < n; r++)
        for (int i = 0; i < 5; i++) norm[5 * r + i] = (phys[5 * r + i] - m->stats.state_mean[i]) / m->stats.state_std[i];
}

void ew_fm_denormalize_states(const ew_fm *m, const float *norm, float *phys, size_t n) {
    for (size_t r = 0; r < n; r++)
        for (int i = 0; i < 5; i++) phys[5 * r + i] = norm[5 * r + i] * m->stats.state_std[i] + m->stats.state_mean[i];
}

ew_fm_kin ew_fm_kinematics(const ew_fm *m) {
    ew_fm_kin k;
    memcpy(k.mean, m->stats.state_mean, sizeof k.mean);
    memcpy(k.std, m->stats.state_std, sizeof k.std);
    k.dt = m->cfg.dt;
    k.allow_reverse = m->cfg.allow_reverse;
    return k;
}

/* ------------------------------------------------------------------------------------------ */
/* One step */

static ew_tensor *encode(ew_graph *g, const ew_conv_layer *l, ew_tensor *x, int train, float p, ew_rng *rng) {
    for (int i = 0; i < 3; i++) {
        x = ew_leaky_relu(g, ew_conv_layer_fwd(g, &l[i], x), 0.2f);
        if (train && p > 0.0f) x = ew_channel_dropout(g, x, p, rng);
    }
    return x;
}

static ew_tensor *prior_sample(ew_graph *g, int B, int nz, ew_rng *rng) {
    int zs[2] = {B, nz};
    ew_tensor *z = ew_tensor_new(g, 2, zs);
    if (!z) return NULL;
    for (size_t i = 0; i < (size_t)B * (size_t)nz; i++) z->data[i] = (float)ew_rng_normal(rng);
    return z;
}

static int shape_is(const ew_tensor *t, int ndim, const int *shape) {
    if (!t || t->ndim != ndim) return 0;
    for (int i = 0; i < ndim; i++)
        if (t->shape[i] != shape[i]) return 0;
    return 1;
}

int ew_fm_step(ew_graph *g, const ew_fm *m, ew_tensor *frames, ew_tensor *states, ew_tensor *action,
               ew_tensor *target, const ew_fm_step_opts *o, ew_fm_step_out *out) {
    memset(out, 0, sizeof *out);
    if (ew_graph_error(g)) return -1;
    const ew_fm_config *c = &m->cfg;
    if (!frames || !states || !action || !o) {
        ew_graph_fail(g, "fm step: NULL input");
        return -1;
    }
    int B = frames->shape[0], C = c->channels, nc = c->n_cond;
    int fs[4] = {B, nc * C, c->height, c->width}, ss[3] = {B, nc, 5}, as[2] = {B, 2};
    if (!shape_is(frames, 4, fs) || !shape_is(states, 3, ss) || !shape_is(action, 2, as)) {
        ew_graph_fail(g, "fm step: want frames [%d,%d,%d,%d], states [%d,%d,5], action [%d,2]", B, nc * C, c->height,
                      c->width, B, nc, B);
        return -1;
    }
    int need_rng = (o->train && c->dropout > 0.0f) || (c->stochastic && o->zmode != EW_FM_Z_GIVEN);
    if (need_rng && !o->rng) {
        ew_graph_fail(g, "fm step: an rng is needed (dropout or z sampling)");
        return -1;
    }
    int hs[4] = {B, 4 * c->nf, m->fh[3], m->fw[3]}, flat[2] = {B, m->feat}, s2[2] = {B, 5};
    ew_tensor *h = encode(g, m->enc, frames, o->train, c->dropout, o->rng);
    h = ew_add(g, h, ew_reshape(g, ew_mlp_fwd(g, &m->senc, ew_reshape(g, states, 2, (int[]){B, nc * 5})), 4, hs));
    ew_tensor *last = ew_reshape(g, ew_slice(g, states, 1, nc - 1, 1), 2, s2);
    if (c->stochastic) {
        ew_tensor *z = NULL;
        if (o->zmode == EW_FM_Z_POSTERIOR) {
            int ts[4] = {B, C, c->height, c->width};
            if (!shape_is(target, 4, ts)) {
                ew_graph_fail(g, "fm step: the posterior needs the target frame [%d,%d,%d,%d]", B, C, c->height, c->width);
                return -1;
            }
            ew_tensor *hy = encode(g, m->yenc, target, o->train, c->dropout, o->rng);
            ew_tensor *q = ew_mlp_fwd(g, &m->post, ew_reshape(g, ew_add(g, h, hy), 2, flat));
            out->mu = ew_slice(g, q, 1, 0, c->nz);
            out->logvar = ew_slice(g, q, 1, c->nz, c->nz);
            z = ew_reparam_sample(g, out->mu, out->logvar, o->rng);
        } else if (o->zmode == EW_FM_Z_GIVEN) {
            int zs[2] = {B, c->nz};
            if (!shape_is(o->z, 2, zs)) {
                ew_graph_fail(g, "fm step: given z must be [%d,%d]", B, c->nz);
                return -1;
            }
            z = o->z;
        } else {
            z = prior_sample(g, B, c->nz, o->rng);
        }
        out->z = z;
        h = ew_add(g, h, ew_reshape(g, ew_linear_layer_fwd(g, &m->zexp, z), 4, hs));
    }
    ew_tensor *km = NULL, *ain;
    if (c->variant != EW_FM_PLAIN) {
        ew_fm_kin k = ew_fm_kinematics(m);
        km = ew_fm_kin_step(g, last, action, &k);
    }
    if (c->variant == EW_FM_KM_NOACTION) {
        ain = km;
    } else {
        int two[1] = {2};
        ew_tensor *am = ew_tensor_from(g, 1, two, m->stats.action_mean);
        ew_tensor *asd = ew_tensor_from(g, 1, two, m->stats.action_std);
        ain = ew_div(g, ew_sub(g, action, am), asd);
    }
    h = ew_add(g, h, ew_reshape(g, ew_mlp_fwd(g, &m->aenc, ain), 4, hs));
    ew_tensor *r = ew_leaky_relu(g, ew_conv_layer_fwd(g, &m->res[0], h), 0.2f);
    r = ew_leaky_relu(g, ew_conv_layer_fwd(g, &m->res[1], r), 0.2f);
    h = ew_add(g, h, ew_conv_layer_fwd(g, &m->res[2], r));
    out->feat = h;
    ew_tensor *d = ew_leaky_relu(g, ew_conv_layer_fwd(g, &m->dec[0], h), 0.2f);
    d = ew_leaky_relu(g, ew_conv_layer_fwd(g, &m->dec[1], d), 0.2f);
    ew_tensor *lastf = ew_slice(g, frames, 1, C * (nc - 1), C);
    out->image = ew_sigmoid(g, ew_add(g, ew_conv_layer_fwd(g, &m->dec[2], d), lastf));
    if (c->variant == EW_FM_PLAIN)
        out->state = ew_add(g, last, ew_mlp_fwd(g, &m->head, ew_reshape(g, h, 2, flat)));
    else
        out->state = km;
    if (!out->image || !out->state || ew_graph_error(g)) {
        if (!ew_graph_error(g)) ew_graph_fail(g, "fm step: failed");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Unroll */

int ew_fm_unroll(ew_graph *g, const ew_fm *m, const ew_fm_inputs *in, const ew_fm_unroll_opts *o,
                 ew_fm_unroll_out *out) {
    memset(out, 0, sizeof *out);
    if (ew_graph_error(g)) return -1;
    const ew_fm_config *c = &m->cfg;
    if (!in || !o || !in->frames || !in->states || !in->actions || in->actions->ndim != 3) {
        ew_graph_fail(g, "fm unroll: frames, states and actions [B,T,2] are required");
        return -1;
    }
    int B = in->frames->shape[0], T = in->actions->shape[1], C = c->channels, nc = c->n_cond;
    int fs[4] = {B, nc * C, c->height, c->width}, ss[3] = {B, nc, 5}, as[3] = {B, T, 2};
    int tfs[5] = {B, T, C, c->height, c->width}, tss[3] = {B, T, 5};
    if (T < 1 || !shape_is(in->frames, 4, fs) || !shape_is(in->states, 3, ss) || !shape_is(in->actions, 3, as)) {
        ew_graph_fail(g, "fm unroll: want frames [%d,%d,%d,%d], states [%d,%d,5], actions [%d,T>=1,2]", B, nc * C,
                      c->height, c->width, B, nc, B);
        return -1;
    }
    if ((in->target_frames && !shape_is(in->target_frames, 5, tfs)) ||
        (in->target_states && !shape_is(in->target_states, 3, tss))) {
        ew_graph_fail(g, "fm unroll: want target frames [%d,%d,%d,%d,%d] and target states [%d,%d,5]", B, T, C,
                      c->height, c->width, B, T);
        return -1;
    }
    int posterior = c->stochastic && o->zmode == EW_FM_Z_POSTERIOR;
    if (posterior && !in->target_frames) {
        ew_graph_fail(g, "fm unroll: the posterior needs target frames");
        return -1;
    }
    if (c->stochastic && o->zmode == EW_FM_Z_GIVEN) {
        int zs[3] = {T, B, c->nz};
        if (!shape_is(o->z, 3, zs)) {
            ew_graph_fail(g, "fm unroll: given z must be [%d,%d,%d]", T, B, c->nz);
            return -1;
        }
    }
    ew_arena *ar = ew_graph_arena(g);
    out->images = ew_arena_calloc(ar, sizeof(ew_tensor *) * (size_t)T);
    out->states = ew_arena_calloc(ar, sizeof(ew_tensor *) * (size_t)T);
    out->states_phys = ew_arena_calloc(ar, sizeof(ew_tensor *) * (size_t)T);
    ew_tensor **frame_list = ew_arena_calloc(ar, sizeof(ew_tensor *) * (size_t)(nc + T));
    if (!out->images || !out->states || !out->states_phys || !frame_list) {
        ew_graph_fail(g, "arena: out of memory");
        return -1;
    }
    out->steps = T;
    int five[1] = {5};
    ew_tensor *sm = ew_tensor_from(g, 1, five, m->stats.state_mean);
    ew_tensor *sd = ew_tensor_from(g, 1, five, m->stats.state_std);
    ew_tensor *win = in->frames;
    ew_tensor *swin = ew_div(g, ew_sub(g, in->states, sm), sd);
    ew_tensor *tgt_sn = in->target_states ? ew_div(g, ew_sub(g, in->target_states, sm), sd) : NULL;
    int s2[2] = {B, 2}, s5[2] = {B, 5}, s15[3] = {B, 1, 5}, img[4] = {B, C, c->height, c->width};
    int zs[2] = {B, c->nz};
    ew_tensor *img_sum = NULL, *st_sum = NULL, *kl_sum = NULL;
    int have_targets = in->target_frames && in->target_states;
    for (int t = 0; t < T; t++) {
        ew_fm_step_opts so = {o->train, o->zmode, NULL, o->rng};
        if (posterior && o->z_dropout > 0.0f) {
            if (!o->rng) {
                ew_graph_fail(g, "fm unroll: z-dropout needs an rng");
                return -1;
            }
            if (ew_rng_uniform(o->rng) < (double)o->z_dropout) {
                so.zmode = EW_FM_Z_PRIOR;
                out->prior_steps++;
            }
        } else if (c->stochastic && o->zmode != EW_FM_Z_POSTERIOR && o->zmode != EW_FM_Z_GIVEN) {
            out->prior_steps++;
        }
        if (c->stochastic && o->zmode == EW_FM_Z_GIVEN) so.z = ew_reshape(g, ew_slice(g, o->z, 0, t, 1), 2, zs);
        ew_tensor *a = ew_reshape(g, ew_slice(g, in->actions, 1, t, 1), 2, s2);
        ew_tensor *tf = in->target_frames ? ew_reshape(g, ew_slice(g, in->target_frames, 1, t, 1), 4, img) : NULL;
        ew_fm_step_out so_out;
        if (ew_fm_step(g, m, win, swin, a, so.zmode == EW_FM_Z_POSTERIOR ? tf : NULL, &so, &so_out)) return -1;
        out->images[t] = so_out.image;
        out->states[t] = so_out.state;
        out->states_phys[t] = ew_add(g, ew_mul(g, so_out.state, sd), sm);
        if (have_targets) {
            ew_tensor *li = ew_mse(g, so_out.image, tf);
            ew_tensor *ls = ew_mse(g, so_out.state, ew_reshape(g, ew_slice(g, tgt_sn, 1, t, 1), 2, s5));
            img_sum = img_sum ? ew_add(g, img_sum, li) : li;
            st_sum = st_sum ? ew_add(g, st_sum, ls) : ls;
            if (so_out.mu) {
                ew_tensor *kl = ew_gauss_kl(g, so_out.mu, so_out.logvar);
                kl_sum = kl_sum ? ew_add(g, kl_sum, kl) : kl;
            }
        }
        frame_list[nc + t] = so_out.image;
        if (t + 1 < T) {
            /* the next window: frames t+1 .. t+nc of the list (input frames sliced once) */
            for (int j = t + 1; j < nc; j++)
                if (!frame_list[j]) frame_list[j] = ew_slice(g, in->frames, 1, C * j, C);
            win = nc > 1 ? ew_concat(g, frame_list + t + 1, nc, 1) : so_out.image;
            ew_tensor *sparts[2] = {nc > 1 ? ew_slice(g, swin, 1, 1, nc - 1) : NULL,
                                    ew_reshape(g, so_out.state, 3, s15)};
            swin = nc > 1 ? ew_concat(g, sparts, 2, 1) : sparts[1];
        }
    }
    if (have_targets) {
        float inv = 1.0f / (float)T;
        out->img_mse = ew_scale(g, img_sum, inv);
        out->state_mse = ew_scale(g, st_sum, inv);
        out->kl = kl_sum ? ew_scale(g, kl_sum, inv) : ew_tensor_zeros(g, 0, NULL);
        out->loss = ew_add(g, ew_add(g, out->img_mse, out->state_mse), ew_scale(g, out->kl, c->beta));
    }
    if (ew_graph_error(g)) return -1;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Training */

struct ew_fm_trainer {
    ew_fm *m;
    ew_graph *g;
    ew_optim *opt;
    ew_fm_train_config tc;
};

ew_fm_train_config ew_fm_train_defaults(void) {
    ew_fm_train_config t = {1e-4f, 5.0f, 0};
    return t;
}

int ew_fm_trainer_create(ew_fm *m, const ew_backend *be, const ew_fm_train_config *tc, ew_fm_trainer **out,
                         char *err, size_t errsz) {
    *out = NULL;
    if (!m || !be || !tc) return fail(err, errsz, "%s", "fm trainer: NULL argument");
    if (!(tc->lr > 0.0f)) return fail(err, errsz, "%s", "fm trainer: lr must be > 0");
    ew_fm_trainer *t = calloc(1, sizeof *t);
    if (!t) return fail(err, errsz, "%s", "fm trainer: out of memory");
    t->m = m;
    t->tc = *tc;
    if (ew_fm_move_to_backend(m, be, err, errsz)) {
        free(t);
        return -1;
    }
    t->g = ew_graph_create(be, tc->arena_bytes);
    if (!t->g) {
        free(t);
        return fail(err, errsz, "%s", "fm trainer: out of memory");
    }
    ew_optim_config oc = ew_optim_defaults(EW_OPTIM_ADAM);
    oc.lr = tc->lr;
    int n;
    ew_param *p = ew_fm_params(m, &n);
    if (ew_optim_create(p, n, &oc, &t->opt, err, errsz) || ew_optim_use_backend(t->opt, be, err, errsz)) {
        ew_optim_free(t->opt);
        ew_graph_destroy(t->g);
        free(t);
        return -1;
    }
    *out = t;
    return 0;
}

void ew_fm_trainer_free(ew_fm_trainer *t) {
    if (!t) return;
    ew_optim_free(t->opt);
    ew_graph_destroy(t->g);
    free(t);
}

ew_optim *ew_fm_trainer_optim(ew_fm_trainer *t) { return t->opt; }
ew_graph *ew_fm_trainer_graph(ew_fm_trainer *t) { return t->g; }

static int batch_forward(ew_fm_trainer *t, const ew_fm_batch *b, int train, ew_rng *rng, ew_fm_unroll_out *uo,
                         char *err, size_t errsz) {
    const ew_fm_config *c = &t->m->cfg;
    if (!b || b->batch < 1 || b->steps < 1 || !b->frames || !b->states || !b->actions || !b->target_frames ||
        !b->target_states)
        return fail(err, errsz, "%s", "fm batch: missing arrays or empty batch");
    ew_graph *g = t->g;
    if (ew_graph_reset(g)) return fail(err, errsz, "%s", "fm step: arena reset failed");
    int B = b->batch, T = b->steps, C = c->channels;
    int fs[4] = {B, c->n_cond * C, c->height, c->width}, ss[3] = {B, c->n_cond, 5}, as[3] = {B, T, 2};
    int tfs[5] = {B, T, C, c->height, c->width}, tss[3] = {B, T, 5};
    ew_fm_inputs in = {ew_tensor_wrap(g, 4, fs, b->frames), ew_tensor_wrap(g, 3, ss, b->states),
                       ew_tensor_wrap(g, 3, as, b->actions), ew_tensor_wrap(g, 5, tfs, b->target_frames),
                       ew_tensor_wrap(g, 3, tss, b->target_states)};
    ew_fm_unroll_opts uo_opts = {train, c->stochastic ? EW_FM_Z_POSTERIOR : EW_FM_Z_PRIOR,
                                 train ? c->z_dropout : 0.0f, NULL, rng};
    if (ew_fm_unroll(g, t->m, &in, &uo_opts, uo)) return fail(err, errsz, "fm step: %s", ew_graph_error(g));
    return 0;
}

static void losses_from(const ew_fm_unroll_out *uo, ew_fm_losses *out) {
    out->loss = uo->loss->data[0];
    out->img_mse = uo->img_mse->data[0];
    out->state_mse = uo->state_mse->data[0];
    out->kl = uo->kl->data[0];
    out->prior_steps = uo->prior_steps;
    out->grad_norm = 0.0f;
}

int ew_fm_train_step(ew_fm_trainer *t, const ew_fm_batch *b, uint64_t seed, ew_fm_losses *out, char *err,
                     size_t errsz) {
    ew_rng rng;
    ew_rng_seed(&rng, seed);
    ew_optim_zero_grad(t->opt);
    ew_fm_unroll_out uo;
    if (batch_forward(t, b, 1, &rng, &uo, err, errsz)) return -1;
    ew_fm_losses l;
    losses_from(&uo, &l);
    if (!isfinite(l.loss)) {
        if (err && errsz) snprintf(err, errsz, "fm step: loss is not finite (%g)", (double)l.loss);
        return -1;
    }
    if (ew_backward(t->g, uo.loss)) return fail(err, errsz, "fm step: backward: %s", ew_graph_error(t->g));
    l.grad_norm = ew_optim_clip_grad_norm(t->opt, t->tc.clip > 0.0f ? t->tc.clip : 0.0f);
    if (!isfinite(l.grad_norm)) {
        ew_optim_zero_grad(t->opt);
        if (err && errsz) snprintf(err, errsz, "fm step: gradient norm is not finite (%g)", (double)l.grad_norm);
        return -1;
    }
    ew_optim_step(t->opt);
    ew_optim_zero_grad(t->opt);
    if (out) *out = l;
    return 0;
}

int ew_fm_eval_batch(ew_fm_trainer *t, const ew_fm_batch *b, uint64_t seed, ew_fm_losses *out, char *err,
                     size_t errsz) {
    ew_rng rng;
    ew_rng_seed(&rng, seed);
    int old = ew_set_grad_enabled(t->g, 0);
    ew_fm_unroll_out uo;
    int rc = batch_forward(t, b, 0, &rng, &uo, err, errsz);
    ew_set_grad_enabled(t->g, old);
    if (rc) return -1;
    if (out) losses_from(&uo, out);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Inference */

int ew_fm_predict(ew_graph *g, const ew_fm *m, int B, const float *frames, const float *states, int T,
                  const float *actions, int K, uint64_t seed, float *images, float *states_out, char *err,
                  size_t errsz) {
    const ew_fm_config *c = &m->cfg;
    if (!g || B < 1 || T < 1 || K < 1 || !frames || !states || !actions)
        return fail(err, errsz, "%s", "fm predict: bad arguments");
    if (ew_graph_reset(g)) return fail(err, errsz, "%s", "fm predict: arena reset failed");
    int old = ew_set_grad_enabled(g, 0);
    int KB = K * B, C = c->channels, nc = c->n_cond;
    size_t fn = (size_t)nc * C * c->height * c->width, sn = (size_t)nc * 5, an = (size_t)T * 2;
    size_t img = (size_t)C * c->height * c->width;
    int fs[4] = {KB, nc * C, c->height, c->width}, ss[3] = {KB, nc, 5}, as[3] = {KB, T, 2};
    ew_fm_inputs in = {ew_tensor_new(g, 4, fs), ew_tensor_new(g, 3, ss), ew_tensor_new(g, 3, as), NULL, NULL};
    int rc = -1;
    if (!in.frames || !in.states || !in.actions) {
        fail(err, errsz, "fm predict: %s", ew_graph_error(g) ? ew_graph_error(g) : "out of memory");
        goto done;
    }
    for (int k = 0; k < K; k++) {
        memcpy(in.frames->data + (size_t)k * B * fn, frames, sizeof(float) * B * fn);
        memcpy(in.states->data + (size_t)k * B * sn, states, sizeof(float) * B * sn);
        memcpy(in.actions->data + (size_t)k * B * an, actions, sizeof(float) * B * an);
    }
    ew_rng rng;
    ew_rng_seed(&rng, seed);
    ew_fm_unroll_opts o = {0, EW_FM_Z_PRIOR, 0.0f, NULL, &rng};
    ew_fm_unroll_out uo;
    if (ew_fm_unroll(g, m, &in, &o, &uo)) {
        fail(err, errsz, "fm predict: %s", ew_graph_error(g));
        goto done;
    }
    for (int k = 0; k < K; k++)
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) {
                size_t row = (size_t)k * B + b, dst = ((size_t)k * B + b) * T + t;
                if (images) memcpy(images + dst * img, uo.images[t]->data + row * img, sizeof(float) * img);
                if (states_out) memcpy(states_out + dst * 5, uo.states_phys[t]->data + row * 5, sizeof(float) * 5);
            }
    rc = 0;
done:
    ew_set_grad_enabled(g, old);
    return rc;
}
