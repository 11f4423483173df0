/* fm_io.c - world-model checkpoints: config and statistics as JSON metadata, strict loading,
 * and the stochastic model's initialisation from a deterministic checkpoint (see fm.h). */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/fm.h"
#include "models/json.h"

static int failf(char *err, size_t errsz, const char *fmt, const char *a, const char *b) {
    if (err && errsz) snprintf(err, errsz, fmt, a, b);
    return -1;
}

char *ew_fm_config_json(const ew_fm_config *c) {
    size_t cap = 1024;
    char *s = malloc(cap);
    if (!s) return NULL;
    int n = snprintf(s, cap,
                     "{\"variant\": \"%s\", \"stochastic\": %d, \"nf\": %d, \"hidden\": %d, \"n_cond\": %d, "
                     "\"n_pred\": %d, \"height\": %d, \"width\": %d, \"channels\": %d, \"state_dim\": %d, "
                     "\"action_dim\": %d, \"nz\": %d, \"dropout\": %.9g, \"z_dropout\": %.9g, \"beta\": %.9g, "
                     "\"dt\": %.9g, \"allow_reverse\": %d, \"seed\": %" PRIu64 "}",
                     ew_fm_variant_name(c->variant), c->stochastic, c->nf, c->hidden, c->n_cond, c->n_pred, c->height,
                     c->width, c->channels, c->state_dim, c->action_dim, c->nz, (double)c->dropout,
                     (double)c->z_dropout, (double)c->beta, (double)c->dt, c->allow_reverse, c->seed);
    if (n < 0 || (size_t)n >= cap) {
        free(s);
        return NULL;
    }
    return s;
}

static int put_array(char *s, size_t cap, size_t *len, const char *key, const float *v, int n, int last) {
    int k = snprintf(s + *len, cap - *len, "\"%s\": [", key);
    if (k < 0 || (size_t)k >= cap - *len) return -1;
    *len += (size_t)k;
    for (int i = 0; i < n; i++) {
        k = snprintf(s + *len, cap - *len, "%s%.9g", i ? ", " : "", (double)v[i]);
        if (k < 0 || (size_t)k >= cap - *len) return -1;
        *len += (size_t)k;
    }
    k = snprintf(s + *len, cap - *len, "]%s", last ? "}" : ", ");
    if (k < 0 || (size_t)k >= cap - *len) return -1;
    *len += (size_t)k;
    return 0;
}

char *ew_fm_stats_json(const ew_fm_stats *st) {
    size_t cap = 1024, len = 1;
    char *s = malloc(cap);
    if (!s) return NULL;
    s[0] = '{';
    if (put_array(s, cap, &len, "state_mean", st->state_mean, 5, 0) ||
        put_array(s, cap, &len, "state_std", st->state_std, 5, 0) ||
        put_array(s, cap, &len, "action_mean", st->action_mean, 2, 0) ||
        put_array(s, cap, &len, "action_std", st->action_std, 2, 1)) {
        free(s);
        return NULL;
    }
    return s;
}

static const char *const config_keys[] = {"variant", "stochastic", "nf",         "hidden",    "n_cond", "n_pred",
                                          "height",  "width",      "channels",   "state_dim", "action_dim",
                                          "nz",      "dropout",    "z_dropout",  "beta",      "dt",
                                          "allow_reverse", "seed"};
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

int ew_fm_config_from_json(const char *json, ew_fm_config *c, char *err, size_t errsz) {
    if (!json) return failf(err, errsz, "%s%s", "fm config metadata: missing", "");
    ew_json_doc doc;
    char jerr[128];
    if (ew_json_parse(json, strlen(json), NULL, &doc, jerr, sizeof jerr))
        return failf(err, errsz, "fm config metadata: %s%s", jerr, "");
    const ew_json_node *root = ew_json_root(&doc);
    int rc = -1;
    if (!root || root->type != EW_JSON_OBJECT) {
        failf(err, errsz, "fm config metadata: %s%s", "not a JSON object", "");
        goto done;
    }
    for (const ew_json_node *it = ew_json_first(&doc, root); it; it = ew_json_next(&doc, it)) {
        int known = 0;
        for (int k = 0; k < N_CONFIG_KEYS && !known; k++) known = strcmp(it->key, config_keys[k]) == 0;
        if (!known) {
            failf(err, errsz, "fm config metadata: unknown key \"%s\"%s", it->key, "");
            goto done;
        }
    }
    for (int k = 0; k < N_CONFIG_KEYS; k++)
        if (!ew_json_get(&doc, root, config_keys[k])) {
            failf(err, errsz, "fm config metadata: missing key \"%s\"%s", config_keys[k], "");
            goto done;
        }
    ew_fm_config t = ew_fm_config_default();
    const ew_json_node *v = ew_json_get(&doc, root, "variant");
    if (v->type != EW_JSON_STRING || ew_fm_variant_parse(v->str, &t.variant)) {
        failf(err, errsz, "fm config metadata: %s%s", "variant must be \"fm\", \"fm-km\" or \"fm-km-noaction\"", "");
        goto done;
    }
    struct {
        const char *key;
        int *dst;
    } ints[] = {{"stochastic", &t.stochastic}, {"nf", &t.nf},
                {"hidden", &t.hidden},         {"n_cond", &t.n_cond},
                {"n_pred", &t.n_pred},         {"height", &t.height},
                {"width", &t.width},           {"channels", &t.channels},
                {"state_dim", &t.state_dim},   {"action_dim", &t.action_dim},
                {"nz", &t.nz},                 {"allow_reverse", &t.allow_reverse}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if (json_int(ew_json_get(&doc, root, ints[i].key), ints[i].dst)) {
            failf(err, errsz, "fm config metadata: \"%s\" must be a non-negative integer%s", ints[i].key, "");
            goto done;
        }
    struct {
        const char *key;
        float *dst;
    } fls[] = {{"dropout", &t.dropout}, {"z_dropout", &t.z_dropout}, {"beta", &t.beta}, {"dt", &t.dt}};
    for (size_t i = 0; i < sizeof fls / sizeof fls[0]; i++)
        if (json_float(ew_json_get(&doc, root, fls[i].key), fls[i].dst)) {
            failf(err, errsz, "fm config metadata: \"%s\" must be a finite number%s", fls[i].key, "");
            goto done;
        }
    v = ew_json_get(&doc, root, "seed");
    if (v->type != EW_JSON_NUMBER || !v->is_u64) {
        failf(err, errsz, "fm config metadata: %s%s", "\"seed\" must be an unsigned integer", "");
        goto done;
    }
    t.seed = v->u64;
    char verr[160];
    if (ew_fm_config_validate(&t, verr, sizeof verr)) {
        failf(err, errsz, "fm config metadata: %s%s", verr, "");
        goto done;
    }
    *c = t;
    rc = 0;
done:
    ew_json_free(&doc);
    return rc;
}

static int get_floats(const ew_json_doc *doc, const ew_json_node *root, const char *key, float *dst, int n) {
    const ew_json_node *a = ew_json_get(doc, root, key);
    if (!a || a->type != EW_JSON_ARRAY || a->count != n) return -1;
    int i = 0;
    for (const ew_json_node *it = ew_json_first(doc, a); it; it = ew_json_next(doc, it))
        if (json_float(it, &dst[i++])) return -1;
    return 0;
}

int ew_fm_stats_from_json(const char *json, ew_fm_stats *s, char *err, size_t errsz) {
    if (!json) return failf(err, errsz, "%s%s", "fm stats metadata: missing", "");
    ew_json_doc doc;
    char jerr[128];
    if (ew_json_parse(json, strlen(json), NULL, &doc, jerr, sizeof jerr))
        return failf(err, errsz, "fm stats metadata: %s%s", jerr, "");
    const ew_json_node *root = ew_json_root(&doc);
    int rc = -1;
    ew_fm_stats t;
    const char *keys[4] = {"state_mean", "state_std", "action_mean", "action_std"};
    float *dst[4] = {t.state_mean, t.state_std, t.action_mean, t.action_std};
    int ns[4] = {5, 5, 2, 2};
    if (!root || root->type != EW_JSON_OBJECT || root->count != 4) {
        failf(err, errsz, "fm stats metadata: %s%s", "want an object with state_mean, state_std, action_mean, action_std",
              "");
        goto done;
    }
    for (int k = 0; k < 4; k++)
        if (get_floats(&doc, root, keys[k], dst[k], ns[k])) {
            failf(err, errsz, "fm stats metadata: \"%s\" must be an array of %s finite numbers", keys[k],
                  ns[k] == 5 ? "5" : "2");
            goto done;
        }
    for (int i = 0; i < 5; i++)
        if (!(t.state_std[i] > 0.0f)) {
            failf(err, errsz, "fm stats metadata: %s%s", "state_std must be positive", "");
            goto done;
        }
    for (int i = 0; i < 2; i++)
        if (!(t.action_std[i] > 0.0f)) {
            failf(err, errsz, "fm stats metadata: %s%s", "action_std must be positive", "");
            goto done;
        }
    *s = t;
    rc = 0;
done:
    ew_json_free(&doc);
    return rc;
}

int ew_fm_save(const ew_fm *m, const char *path, const ew_param *extra, int nextra, const ew_kv *meta, int nmeta,
               char *err, size_t errsz) {
    if (nmeta < 0 || (nmeta > 0 && !meta)) return failf(err, errsz, "%s: %s", path, "bad metadata list");
    char *cj = ew_fm_config_json(&m->cfg), *sj = ew_fm_stats_json(&m->stats);
    ew_kv *kv = malloc(sizeof(ew_kv) * (size_t)(nmeta + 2));
    int rc = -1;
    if (!cj || !sj || !kv) {
        failf(err, errsz, "%s: %s", path, "out of memory");
        goto done;
    }
    kv[0].key = EW_FM_META_CONFIG;
    kv[0].value = cj;
    kv[1].key = EW_FM_META_STATS;
    kv[1].value = sj;
    for (int i = 0; i < nmeta; i++) kv[2 + i] = meta[i];
    rc = ew_checkpoint_write(path, m->params.items, m->params.n, extra, nextra, kv, nmeta + 2, err, errsz);
done:
    free(cj);
    free(sj);
    free(kv);
    return rc;
}

int ew_fm_load_ckpt(ew_fm *m, const ew_checkpoint *ck, char *err, size_t errsz) {
    memset(m, 0, sizeof *m);
    ew_fm_config c;
    ew_fm_stats s;
    if (ew_fm_config_from_json(ew_checkpoint_meta(ck, EW_FM_META_CONFIG), &c, err, errsz)) return -1;
    if (ew_fm_stats_from_json(ew_checkpoint_meta(ck, EW_FM_META_STATS), &s, err, errsz)) return -1;
    if (ew_fm_init(m, &c, &s, err, errsz)) return -1;
    if (ew_checkpoint_load_params(ck, m->params.items, m->params.n, 0, EW_OPTIM_STATE_PREFIX, err, errsz)) {
        ew_fm_free(m);
        return -1;
    }
    return 0;
}

int ew_fm_load(ew_fm *m, const char *path, char *err, size_t errsz) {
    memset(m, 0, sizeof *m);
    ew_checkpoint *ck;
    if (ew_checkpoint_open(path, &ck, err, errsz)) return -1;
    char e2[400];
    int rc = ew_fm_load_ckpt(m, ck, e2, sizeof e2);
    if (rc) {
        /* checkpoint.c's own messages already name the file */
        if (strncmp(e2, path, strlen(path)) == 0)
            failf(err, errsz, "%s%s", e2, "");
        else
            failf(err, errsz, "%s: %s", path, e2);
    }
    ew_checkpoint_close(ck);
    return rc;
}

static int is_latent_param(const char *name) {
    return strncmp(name, "yenc.", 5) == 0 || strncmp(name, "post.", 5) == 0 || strncmp(name, "zexp.", 5) == 0;
}

int ew_fm_init_from_deterministic(ew_fm *m, const char *det_path, char *err, size_t errsz) {
    if (!m->cfg.stochastic) return failf(err, errsz, "%s: %s", det_path, "the target model is not stochastic");
    ew_checkpoint *ck;
    if (ew_checkpoint_open(det_path, &ck, err, errsz)) return -1;
    int rc = -1;
    char e2[300];
    ew_fm_config dc;
    ew_fm_stats ds;
    ew_param *shared = NULL;
    if (ew_fm_config_from_json(ew_checkpoint_meta(ck, EW_FM_META_CONFIG), &dc, e2, sizeof e2) ||
        ew_fm_stats_from_json(ew_checkpoint_meta(ck, EW_FM_META_STATS), &ds, e2, sizeof e2)) {
        failf(err, errsz, "%s: %s", det_path, e2);
        goto done;
    }
    const ew_fm_config *c = &m->cfg;
    if (dc.stochastic) {
        failf(err, errsz, "%s: %s", det_path, "not a deterministic model");
        goto done;
    }
    if (dc.variant != c->variant || dc.nf != c->nf || dc.hidden != c->hidden || dc.n_cond != c->n_cond ||
        dc.height != c->height || dc.width != c->width || dc.channels != c->channels) {
        failf(err, errsz, "%s: %s", det_path,
              "configuration differs from the stochastic model (variant, nf, hidden, n_cond, size, channels)");
        goto done;
    }
    shared = malloc(sizeof(ew_param) * (size_t)(m->params.n ? m->params.n : 1));
    if (!shared) {
        failf(err, errsz, "%s: %s", det_path, "out of memory");
        goto done;
    }
    int ns = 0;
    for (int i = 0; i < m->params.n; i++)
        if (!is_latent_param(m->params.items[i].name)) shared[ns++] = m->params.items[i];
    if (ew_checkpoint_load_params(ck, shared, ns, 0, EW_OPTIM_STATE_PREFIX, err, errsz)) goto done;
    m->stats = ds;
    memset(m->zexp.weight.data, 0, sizeof(float) * ew_param_numel(&m->zexp.weight));
    memset(m->zexp.bias.data, 0, sizeof(float) * ew_param_numel(&m->zexp.bias));
    rc = 0;
done:
    free(shared);
    ew_checkpoint_close(ck);
    return rc;
}
