/* policy.c - the policy network, its checkpoints and the "policy:FILE" controller (policy.h). */
#include "models/policy.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/json.h"
#include "sim/raster.h"
#include "sim/world.h"

static int fail(char *err, size_t errsz, const char *fmt, const char *what) {
    if (err && errsz) snprintf(err, errsz, fmt, what);
    return -1;
}

ew_policy_config ew_policy_config_default(void) {
    ew_policy_config c;
    memset(&c, 0, sizeof c);
    c.nf = 64;
    c.channels = 3;
    c.n_cond = 20;
    c.height = 117;
    c.width = 24;
    c.m_per_px = 0.617f;
    c.proj = 256;
    c.hidden = 256;
    c.dropout = 0.0f;
    c.seed = 1;
    return c;
}

int ew_policy_config_validate(const ew_policy_config *c, char *err, size_t errsz) {
    if (!c) return fail(err, errsz, "%s", "policy config: NULL");
    if (c->nf < 1 || c->nf > 4096) return fail(err, errsz, "policy config: %s", "nf out of range [1, 4096]");
    if (c->channels != 3 && c->channels != 4) return fail(err, errsz, "policy config: %s", "channels must be 3 or 4");
    if (c->n_cond < 1 || c->n_cond > 1000) return fail(err, errsz, "policy config: %s", "n_cond out of range [1, 1000]");
    if (c->height < 8 || c->width < 8 || c->height > 4096 || c->width > 4096)
        return fail(err, errsz, "policy config: %s", "height and width must be in [8, 4096]");
    if (!(c->m_per_px >= 0.01f && c->m_per_px <= 100.0f))
        return fail(err, errsz, "policy config: %s", "m_per_px must be in [0.01, 100]");
    if (c->proj < 1 || c->proj > 65536) return fail(err, errsz, "policy config: %s", "proj out of range [1, 65536]");
    if (c->hidden < 1 || c->hidden > 65536)
        return fail(err, errsz, "policy config: %s", "hidden out of range [1, 65536]");
    if (!(c->dropout >= 0.0f && c->dropout < 1.0f))
        return fail(err, errsz, "policy config: %s", "dropout must be in [0, 1)");
    long feat = 4L * c->nf * (c->height / 8) * (c->width / 8);
    if (feat > 100000000L) return fail(err, errsz, "policy config: %s", "feature size too large");
    return 0;
}

static int stats_validate(const ew_fm_stats *s, char *err, size_t errsz) {
    for (int i = 0; i < 5; i++)
        if (!isfinite(s->state_mean[i]) || !(s->state_std[i] > 0.0f) || !isfinite(s->state_std[i]))
            return fail(err, errsz, "policy stats: %s", "state mean must be finite and std positive");
    for (int i = 0; i < 2; i++)
        if (!isfinite(s->action_mean[i]) || !(s->action_std[i] > 0.0f) || !isfinite(s->action_std[i]))
            return fail(err, errsz, "policy stats: %s", "action mean must be finite and std positive");
    return 0;
}

void ew_policy_free(ew_policy *p) {
    if (!p) return;
    for (int i = 0; i < 3; i++) ew_conv_layer_free(&p->enc[i]);
    ew_mlp_free(&p->senc);
    ew_mlp_free(&p->head);
    ew_linear_layer_free(&p->proj);
    ew_param_list_free(&p->params);
}

int ew_policy_init(ew_policy *p, const ew_policy_config *cfg, const ew_fm_stats *stats, char *err, size_t errsz) {
    if (!p) return fail(err, errsz, "%s", "policy init: NULL");
    memset(p, 0, sizeof *p);
    if (ew_policy_config_validate(cfg, err, errsz)) return -1;
    ew_fm_stats st = stats ? *stats : ew_fm_stats_identity();
    if (stats_validate(&st, err, errsz)) return -1;
    p->cfg = *cfg;
    p->stats = st;
    const ew_policy_config *c = cfg;
    p->fh[0] = c->height;
    p->fw[0] = c->width;
    for (int i = 0; i < 3; i++) {
        p->fh[i + 1] = (p->fh[i] + 2 - 4) / 2 + 1;
        p->fw[i + 1] = (p->fw[i] + 2 - 4) / 2 + 1;
    }
    int nf = c->nf, hid = c->hidden;
    p->feat = 4 * nf * p->fh[3] * p->fw[3];
    uint64_t seed = c->seed * 1000003ULL + 91;
    ew_conv_opts s2 = {{2, 2}, {1, 1}, {0, 0}};
    int ch[4] = {c->n_cond * c->channels, nf, 2 * nf, 4 * nf};
    char name[48];
    int rc = 0;
    for (int i = 0; i < 3 && !rc; i++) {
        snprintf(name, sizeof name, "enc.conv%d", i + 1);
        rc = ew_conv2d_layer_init(&p->enc[i], name, ch[i], ch[i + 1], 4, 4, &s2, 1, seed++, err, errsz);
    }
    int ss[4] = {5 * c->n_cond, hid, hid, p->feat};
    if (!rc) rc = ew_mlp_init(&p->senc, "senc", 3, ss, 0.2f, seed++, err, errsz);
    if (!rc) rc = ew_linear_layer_init(&p->proj, "proj", p->feat, c->proj, 1, seed++, err, errsz);
    int hs[5] = {c->proj, hid, hid, hid, 2};
    if (!rc) rc = ew_mlp_init(&p->head, "head", 4, hs, 0.0f, seed++, err, errsz);
    int perr = 0;
    for (int i = 0; i < 3 && !rc && !perr; i++) perr |= ew_conv_layer_params(&p->enc[i], &p->params);
    if (!rc && !perr) perr |= ew_mlp_params(&p->senc, &p->params);
    if (!rc && !perr) perr |= ew_linear_layer_params(&p->proj, &p->params);
    if (!rc && !perr) perr |= ew_mlp_params(&p->head, &p->params);
    if (perr && !rc) rc = fail(err, errsz, "%s", "policy init: out of memory");
    if (rc) ew_policy_free(p);
    return rc;
}

ew_param *ew_policy_params(ew_policy *p, int *count) {
    if (count) *count = p->params.n;
    return p->params.items;
}

/* ------------------------------------------------------------------------------------------ */
/* Forward */

static int shape_is(const ew_tensor *t, int ndim, const int *shape) {
    if (!t || t->ndim != ndim) return 0;
    for (int i = 0; i < ndim; i++)
        if (t->shape[i] != shape[i]) return 0;
    return 1;
}

/* State features (see policy.h): [B, nc, 5] physical -> [B, nc*5]. */
static ew_tensor *state_features(ew_graph *g, const ew_policy *p, ew_tensor *states) {
    int B = states->shape[0], nc = p->cfg.n_cond;
    int five[1] = {5};
    float posmask[5] = {1, 1, 0, 0, 0};
    float scale[5] = {1.0f / EW_POLICY_POS_SCALE, 1.0f / EW_POLICY_POS_SCALE, 1.0f, 1.0f,
                      1.0f / p->stats.state_std[4]};
    float offset[5] = {0, 0, 0, 0, p->stats.state_mean[4] / p->stats.state_std[4]};
    ew_tensor *last = ew_slice(g, states, 1, nc - 1, 1); /* [B, 1, 5] */
    ew_tensor *rel = ew_sub(g, states, ew_mul(g, last, ew_tensor_from(g, 1, five, posmask)));
    ew_tensor *f = ew_sub(g, ew_mul(g, rel, ew_tensor_from(g, 1, five, scale)), ew_tensor_from(g, 1, five, offset));
    return ew_reshape(g, f, 2, (int[]){B, nc * 5});
}

ew_tensor *ew_policy_forward(ew_graph *g, const ew_policy *p, ew_tensor *frames, ew_tensor *states, int train,
                             ew_rng *rng) {
    if (ew_graph_error(g)) return NULL;
    const ew_policy_config *c = &p->cfg;
    if (!frames || !states) return ew_graph_fail(g, "policy: NULL input");
    int B = frames->shape[0], nc = c->n_cond;
    int fs[4] = {B, nc * c->channels, c->height, c->width}, ss[3] = {B, nc, 5};
    if (!shape_is(frames, 4, fs) || !shape_is(states, 3, ss))
        return ew_graph_fail(g, "policy: want frames [%d,%d,%d,%d] and states [%d,%d,5]", B, nc * c->channels,
                             c->height, c->width, B, nc);
    int drop = train && c->dropout > 0.0f;
    if (drop && !rng) return ew_graph_fail(g, "policy: dropout needs an rng");
    ew_tensor *h = frames;
    for (int i = 0; i < 3; i++) {
        h = ew_leaky_relu(g, ew_conv_layer_fwd(g, &p->enc[i], h), 0.2f);
        if (drop) h = ew_channel_dropout(g, h, c->dropout, rng);
    }
    int flat[2] = {B, p->feat};
    h = ew_add(g, ew_reshape(g, h, 2, flat), ew_mlp_fwd(g, &p->senc, state_features(g, p, states)));
    h = ew_relu(g, ew_linear_layer_fwd(g, &p->proj, h));
    h = ew_mlp_fwd(g, &p->head, h);
    if (!h && !ew_graph_error(g)) ew_graph_fail(g, "policy: forward failed");
    return h;
}

ew_tensor *ew_policy_denormalize(ew_graph *g, const ew_policy *p, ew_tensor *a_norm) {
    int two[1] = {2};
    return ew_add(g, ew_mul(g, a_norm, ew_tensor_from(g, 1, two, p->stats.action_std)),
                  ew_tensor_from(g, 1, two, p->stats.action_mean));
}

int ew_policy_act_batch(ew_graph *g, const ew_policy *p, int B, const float *frames, const float *states,
                        float *actions, char *err, size_t errsz) {
    const ew_policy_config *c = &p->cfg;
    if (!g || B < 1 || !frames || !states || !actions) return fail(err, errsz, "%s", "policy act: bad arguments");
    if (ew_graph_reset(g)) return fail(err, errsz, "%s", "policy act: arena reset failed");
    int old = ew_set_grad_enabled(g, 0);
    int fs[4] = {B, c->n_cond * c->channels, c->height, c->width}, ss[3] = {B, c->n_cond, 5};
    ew_tensor *a = ew_policy_denormalize(
        g, p,
        ew_policy_forward(g, p, ew_tensor_wrap(g, 4, fs, (float *)frames), ew_tensor_wrap(g, 3, ss, (float *)states),
                          0, NULL));
    int rc = 0;
    if (!a || ew_graph_error(g)) {
        rc = fail(err, errsz, "policy act: %s", ew_graph_error(g) ? ew_graph_error(g) : "failed");
    } else {
        memcpy(actions, a->data, sizeof(float) * 2 * (size_t)B);
    }
    ew_set_grad_enabled(g, old);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Checkpoints */

char *ew_policy_config_json(const ew_policy_config *c) {
    size_t cap = 512;
    char *s = malloc(cap);
    if (!s) return NULL;
    int n = snprintf(s, cap,
                     "{\"nf\": %d, \"channels\": %d, \"n_cond\": %d, \"height\": %d, \"width\": %d, "
                     "\"m_per_px\": %.9g, \"proj\": %d, \"hidden\": %d, \"dropout\": %.9g, \"seed\": %" PRIu64 "}",
                     c->nf, c->channels, c->n_cond, c->height, c->width, (double)c->m_per_px, c->proj, c->hidden,
                     (double)c->dropout, c->seed);
    if (n < 0 || (size_t)n >= cap) {
        free(s);
        return NULL;
    }
    return s;
}

static const char *const config_keys[] = {"nf",   "channels", "n_cond",  "height", "width",
                                          "m_per_px", "proj", "hidden", "dropout", "seed"};
#define N_CONFIG_KEYS ((int)(sizeof config_keys / sizeof config_keys[0]))

static int json_int(const ew_json_node *v, int *out) {
    if (!v || v->type != EW_JSON_NUMBER || !v->is_u64 || v->u64 > 1000000000ULL) return -1;
    *out = (int)v->u64;
    return 0;
}

static int json_float(const ew_json_node *v, float *out) {
    if (!v || v->type != EW_JSON_NUMBER || !isfinite(v->num) || fabs(v->num) > 3.0e38) return -1;
    *out = (float)v->num;
    return 0;
}

int ew_policy_config_from_json(const char *json, ew_policy_config *c, char *err, size_t errsz) {
    if (!json) return fail(err, errsz, "%s", "policy config metadata: missing");
    ew_json_doc doc;
    char jerr[128], msg[200];
    if (ew_json_parse(json, strlen(json), NULL, &doc, jerr, sizeof jerr))
        return fail(err, errsz, "policy config metadata: %s", jerr);
    const ew_json_node *root = ew_json_root(&doc);
    int rc = -1;
    if (!root || root->type != EW_JSON_OBJECT) {
        fail(err, errsz, "policy config metadata: %s", "not a JSON object");
        goto done;
    }
    for (const ew_json_node *it = ew_json_first(&doc, root); it; it = ew_json_next(&doc, it)) {
        int known = 0;
        for (int k = 0; k < N_CONFIG_KEYS && !known; k++) known = strcmp(it->key, config_keys[k]) == 0;
        if (!known) {
            fail(err, errsz, "policy config metadata: unknown key \"%s\"", it->key);
            goto done;
        }
    }
    for (int k = 0; k < N_CONFIG_KEYS; k++)
        if (!ew_json_get(&doc, root, config_keys[k])) {
            fail(err, errsz, "policy config metadata: missing key \"%s\"", config_keys[k]);
            goto done;
        }
    ew_policy_config t = ew_policy_config_default();
    struct {
        const char *key;
        int *dst;
    } ints[] = {{"nf", &t.nf},         {"channels", &t.channels}, {"n_cond", &t.n_cond}, {"height", &t.height},
                {"width", &t.width},   {"proj", &t.proj},         {"hidden", &t.hidden}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if (json_int(ew_json_get(&doc, root, ints[i].key), ints[i].dst)) {
            fail(err, errsz, "policy config metadata: \"%s\" must be a non-negative integer", ints[i].key);
            goto done;
        }
    if (json_float(ew_json_get(&doc, root, "m_per_px"), &t.m_per_px) ||
        json_float(ew_json_get(&doc, root, "dropout"), &t.dropout)) {
        fail(err, errsz, "policy config metadata: %s", "m_per_px and dropout must be finite numbers");
        goto done;
    }
    const ew_json_node *v = ew_json_get(&doc, root, "seed");
    if (v->type != EW_JSON_NUMBER || !v->is_u64) {
        fail(err, errsz, "policy config metadata: %s", "\"seed\" must be an unsigned integer");
        goto done;
    }
    t.seed = v->u64;
    if (ew_policy_config_validate(&t, msg, sizeof msg)) {
        fail(err, errsz, "policy config metadata: %s", msg);
        goto done;
    }
    *c = t;
    rc = 0;
done:
    ew_json_free(&doc);
    return rc;
}

int ew_policy_save(const ew_policy *p, const char *path, const ew_param *extra, int nextra, const ew_kv *meta,
                   int nmeta, char *err, size_t errsz) {
    if (nmeta < 0 || (nmeta > 0 && !meta)) return fail(err, errsz, "%s: bad metadata list", path);
    char *cj = ew_policy_config_json(&p->cfg), *sj = ew_fm_stats_json(&p->stats);
    ew_kv *kv = malloc(sizeof(ew_kv) * (size_t)(nmeta + 2));
    int rc = -1;
    if (!cj || !sj || !kv) {
        fail(err, errsz, "%s: out of memory", path);
        goto done;
    }
    kv[0].key = EW_POLICY_META_CONFIG;
    kv[0].value = cj;
    kv[1].key = EW_POLICY_META_STATS;
    kv[1].value = sj;
    for (int i = 0; i < nmeta; i++) kv[2 + i] = meta[i];
    rc = ew_checkpoint_write(path, p->params.items, p->params.n, extra, nextra, kv, nmeta + 2, err, errsz);
done:
    free(cj);
    free(sj);
    free(kv);
    return rc;
}

int ew_policy_load_ckpt(ew_policy *p, const ew_checkpoint *ck, char *err, size_t errsz) {
    memset(p, 0, sizeof *p);
    ew_policy_config c;
    ew_fm_stats s;
    char e2[300];
    if (ew_policy_config_from_json(ew_checkpoint_meta(ck, EW_POLICY_META_CONFIG), &c, err, errsz)) return -1;
    if (ew_fm_stats_from_json(ew_checkpoint_meta(ck, EW_POLICY_META_STATS), &s, e2, sizeof e2)) {
        /* fm_io names it "fm stats"; here they are the policy's */
        const char *tail = strncmp(e2, "fm ", 3) == 0 ? e2 + 3 : e2;
        if (err && errsz) snprintf(err, errsz, "policy %s", tail);
        return -1;
    }
    if (ew_policy_init(p, &c, &s, err, errsz)) return -1;
    if (ew_checkpoint_load_params(ck, p->params.items, p->params.n, 0, EW_OPTIM_STATE_PREFIX, err, errsz)) {
        ew_policy_free(p);
        return -1;
    }
    return 0;
}

int ew_policy_load(ew_policy *p, const char *path, char *err, size_t errsz) {
    memset(p, 0, sizeof *p);
    ew_checkpoint *ck;
    if (ew_checkpoint_open(path, &ck, err, errsz)) return -1;
    char e2[400];
    int rc = ew_policy_load_ckpt(p, ck, e2, sizeof e2);
    if (rc) {
        if (strncmp(e2, path, strlen(path)) == 0) {
            if (err && errsz) snprintf(err, errsz, "%s", e2);
        } else if (err && errsz) {
            snprintf(err, errsz, "%s: %s", path, e2);
        }
    }
    ew_checkpoint_close(ck);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Controller */

typedef struct {
    ew_policy pol;
    ew_backend *be;
    ew_graph *g;
    ew_raster_cfg rc;
    int n_seen;        /* frames observed since reset (saturates at n_cond) */
    int head;          /* ring slot of the next frame */
    float *ring_f;     /* n_cond x (C*H*W) floats */
    float *ring_s;     /* n_cond x 5 */
    uint8_t *raster;   /* 4 x H x W */
    float *win_f, *win_s; /* the window, oldest first */
    char err[256];
} policy_ctrl;

static void pc_reset(void *ctx, const ew_world *w) {
    (void)w;
    policy_ctrl *pc = ctx;
    pc->n_seen = 0;
    pc->head = 0;
}

static void pc_observe(void *ctx, const ew_world *w) {
    policy_ctrl *pc = ctx;
    const ew_policy_config *c = &pc->pol.cfg;
    size_t plane = (size_t)c->height * c->width, fr = (size_t)c->channels * plane;
    if (ew_raster_world(&pc->rc, w, pc->raster, pc->err, sizeof pc->err)) return;
    float *dst = pc->ring_f + (size_t)pc->head * fr;
    ew_raster_to_f32(pc->raster, (int)fr, dst); /* channels 0..C-1 are the first C planes */
    const ew_kin_state *e = ew_world_ego(w);
    float *s = pc->ring_s + (size_t)pc->head * 5;
    s[0] = e->x;
    s[1] = e->y;
    s[2] = e->dx;
    s[3] = e->dy;
    s[4] = e->s;
    pc->head = (pc->head + 1) % c->n_cond;
    if (pc->n_seen < c->n_cond) pc->n_seen++;
}

static int pc_act(void *ctx, const ew_world *w, ew_action *out, char *err, int errlen) {
    policy_ctrl *pc = ctx;
    const ew_policy_config *c = &pc->pol.cfg;
    if (pc->err[0]) {
        snprintf(err, (size_t)errlen, "policy: %s", pc->err);
        return -1;
    }
    out->a = 0.0f;
    out->b = 0.0f;
    if (pc->n_seen < c->n_cond) return 0;
    int nc = c->n_cond;
    size_t fr = (size_t)c->channels * c->height * c->width;
    for (int j = 0; j < nc; j++) { /* oldest first: the oldest is at head */
        int slot = (pc->head + j) % nc;
        memcpy(pc->win_f + (size_t)j * fr, pc->ring_f + (size_t)slot * fr, sizeof(float) * fr);
        memcpy(pc->win_s + (size_t)j * 5, pc->ring_s + (size_t)slot * 5, sizeof(float) * 5);
    }
    float a[2];
    char e2[256];
    if (ew_policy_act_batch(pc->g, &pc->pol, 1, pc->win_f, pc->win_s, a, e2, sizeof e2)) {
        snprintf(err, (size_t)errlen, "%s", e2);
        return -1;
    }
    if (!isfinite(a[0]) || !isfinite(a[1])) {
        snprintf(err, (size_t)errlen, "policy: non-finite action");
        return -1;
    }
    ew_action u = {a[0], a[1]};
    *out = ew_kin_clip(&ew_world_config_of(w)->ego_limits, u);
    return 0;
}

static void pc_destroy(void *ctx) {
    policy_ctrl *pc = ctx;
    if (!pc) return;
    ew_policy_free(&pc->pol);
    ew_graph_destroy(pc->g);
    ew_backend_destroy(pc->be);
    free(pc->ring_f);
    free(pc->ring_s);
    free(pc->raster);
    free(pc->win_f);
    free(pc->win_s);
    free(pc);
}

int ew_policy_controller_create(const char *path, uint64_t seed, ew_controller *out, char *err, int errlen) {
    (void)seed;
    memset(out, 0, sizeof *out);
    policy_ctrl *pc = calloc(1, sizeof *pc);
    if (!pc) {
        snprintf(err, (size_t)errlen, "policy: out of memory");
        return -1;
    }
    if (ew_policy_load(&pc->pol, path, err, (size_t)errlen)) {
        free(pc);
        return -1;
    }
    const ew_policy_config *c = &pc->pol.cfg;
    pc->rc.rows = c->height;
    pc->rc.cols = c->width;
    pc->rc.m_per_px = c->m_per_px;
    size_t plane = (size_t)c->height * c->width, fr = (size_t)c->channels * plane;
    pc->be = ew_backend_cpu_create(1);
    pc->g = pc->be ? ew_graph_create(pc->be, 0) : NULL;
    pc->ring_f = malloc(sizeof(float) * fr * (size_t)c->n_cond);
    pc->ring_s = malloc(sizeof(float) * 5 * (size_t)c->n_cond);
    pc->raster = malloc((size_t)EW_RASTER_CHANNELS * plane);
    pc->win_f = malloc(sizeof(float) * fr * (size_t)c->n_cond);
    pc->win_s = malloc(sizeof(float) * 5 * (size_t)c->n_cond);
    if (!pc->g || !pc->ring_f || !pc->ring_s || !pc->raster || !pc->win_f || !pc->win_s) {
        pc_destroy(pc);
        snprintf(err, (size_t)errlen, "policy: out of memory");
        return -1;
    }
    out->name = "policy";
    out->ctx = pc;
    out->act = pc_act;
    out->reset = pc_reset;
    out->observe = pc_observe;
    out->destroy = pc_destroy;
    return 0;
}
