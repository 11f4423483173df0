/* mpur.c - MPUR: policy learning through the frozen world model (contract in mpur.h). */
#include "planner/mpur.h"
#include "sim/err.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/json.h"


void ew_mpur_config_default(ew_mpur_config *c, const ew_fm *wm, const ew_policy *p) {
    memset(c, 0, sizeof *c);
    c->horizon = 30;
    c->u_samples = 10;
    c->hinge = 0.5f;
    c->static_obs = 1;
    c->profile_m = 12.0f;
    c->rear_weight = 1.0f;
    c->w_limit = 1.0f;
    ew_cost_config_default(&c->cost);
    if (wm) {
        c->cost.rows = wm->cfg.height;
        c->cost.cols = wm->cfg.width;
        c->cost.dt = wm->cfg.dt;
        c->cost.allow_reverse = wm->cfg.allow_reverse;
    }
    if (p) c->cost.m_per_px = p->cfg.m_per_px;
}

/* ---- statistics ------------------------------------------------------------------------ */
int ew_mpur_ustats_alloc(ew_mpur_ustats *s, int T) {
    memset(s, 0, sizeof *s);
    if (T < 1 || T > 100000) return -1;
    float *m = calloc((size_t)T * 4, sizeof(float));
    if (!m) return -1;
    s->T = T;
    s->img_mean = m;
    s->img_std = m + T;
    s->cost_mean = m + 2 * T;
    s->cost_std = m + 3 * T;
    return 0;
}

void ew_mpur_ustats_free(ew_mpur_ustats *s) {
    free(s->img_mean);
    memset(s, 0, sizeof *s);
}

static int append(char **s, size_t *len, size_t *cap, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(*s + *len, *cap - *len, fmt, ap);
        va_end(ap);
        if (n < 0) return -1;
        if ((size_t)n < *cap - *len) {
            *len += (size_t)n;
            return 0;
        }
        size_t nc = *cap * 2 + (size_t)n;
        char *ns = realloc(*s, nc);
        if (!ns) return -1;
        *s = ns;
        *cap = nc;
    }
}

char *ew_mpur_ustats_json(const ew_mpur_ustats *s) {
    size_t cap = 256, len = 0;
    char *out = malloc(cap);
    if (!out) return NULL;
    out[0] = 0;
    const char *keys[4] = {"img_mean", "img_std", "cost_mean", "cost_std"};
    const float *v[4] = {s->img_mean, s->img_std, s->cost_mean, s->cost_std};
    int bad = append(&out, &len, &cap, "{\"T\": %d, \"rows\": %ld", s->T, s->rows);
    for (int k = 0; k < 4 && !bad; k++) {
        bad |= append(&out, &len, &cap, ", \"%s\": [", keys[k]);
        for (int t = 0; t < s->T && !bad; t++) bad |= append(&out, &len, &cap, "%s%.9g", t ? ", " : "", (double)v[k][t]);
        bad |= append(&out, &len, &cap, "]");
    }
    bad |= append(&out, &len, &cap, "}");
    if (bad) {
        free(out);
        return NULL;
    }
    return out;
}

int ew_mpur_ustats_from_json(const char *json, ew_mpur_ustats *s, char *err, size_t errsz) {
    memset(s, 0, sizeof *s);
    if (!json) return ew_errf(err, errsz, "mpur metadata: missing");
    ew_json_doc doc;
    char jerr[128];
    if (ew_json_parse(json, strlen(json), NULL, &doc, jerr, sizeof jerr))
        return ew_errf(err, errsz, "mpur metadata: %s", jerr);
    const ew_json_node *root = ew_json_root(&doc);
    int rc = -1;
    const char *keys[4] = {"img_mean", "img_std", "cost_mean", "cost_std"};
    const ew_json_node *tn = root && root->type == EW_JSON_OBJECT ? ew_json_get(&doc, root, "T") : NULL;
    const ew_json_node *rn = root && root->type == EW_JSON_OBJECT ? ew_json_get(&doc, root, "rows") : NULL;
    if (!root || root->type != EW_JSON_OBJECT || root->count != 6 || !tn || tn->type != EW_JSON_NUMBER ||
        !tn->is_u64 || tn->u64 < 1 || tn->u64 > 100000 || !rn || rn->type != EW_JSON_NUMBER || !rn->is_u64) {
        ew_errf(err, errsz, "mpur metadata: want {T, rows, img_mean, img_std, cost_mean, cost_std}");
        goto done;
    }
    if (ew_mpur_ustats_alloc(s, (int)tn->u64)) {
        ew_errf(err, errsz, "mpur metadata: out of memory");
        goto done;
    }
    s->rows = (long)rn->u64;
    float *dst[4] = {s->img_mean, s->img_std, s->cost_mean, s->cost_std};
    for (int k = 0; k < 4; k++) {
        const ew_json_node *a = ew_json_get(&doc, root, keys[k]);
        if (!a || a->type != EW_JSON_ARRAY || a->count != s->T) {
            ew_errf(err, errsz, "mpur metadata: \"%s\" must be an array of %d numbers", keys[k], s->T);
            goto done;
        }
        int t = 0;
        for (const ew_json_node *it = ew_json_first(&doc, a); it; it = ew_json_next(&doc, it), t++) {
            if (it->type != EW_JSON_NUMBER || !isfinite(it->num) || fabs(it->num) > 3e38 ||
                ((k & 1) && !(it->num > 0))) {
                ew_errf(err, errsz, "mpur metadata: \"%s\"[%d] must be a finite%s number", keys[k], t,
                     (k & 1) ? " positive" : "");
                goto done;
            }
            dst[k][t] = (float)it->num;
        }
    }
    rc = 0;
done:
    if (rc) ew_mpur_ustats_free(s);
    ew_json_free(&doc);
    return rc;
}

/* ---- model plumbing -------------------------------------------------------------------- */
static void detach_conv(ew_conv_layer *l) {
    l->weight.grad = NULL;
    l->bias.grad = NULL;
}

static void detach_mlp(ew_mlp *m) {
    for (int i = 0; i < m->nlayers; i++) {
        m->layers[i].weight.grad = NULL;
        m->layers[i].bias.grad = NULL;
    }
}

void ew_mpur_freeze(ew_fm *wm) {
    for (int i = 0; i < 3; i++) {
        detach_conv(&wm->enc[i]);
        detach_conv(&wm->yenc[i]);
        detach_conv(&wm->res[i]);
        detach_conv(&wm->dec[i]);
    }
    detach_mlp(&wm->senc);
    detach_mlp(&wm->aenc);
    detach_mlp(&wm->head);
    detach_mlp(&wm->post);
    wm->zexp.weight.grad = NULL;
    wm->zexp.bias.grad = NULL;
    for (int i = 0; i < wm->params.n; i++) wm->params.items[i].grad = NULL;
}

int ew_mpur_check(const ew_fm *wm, const ew_policy *p, char *err, size_t errsz) {
    if (wm->cfg.channels != 3) return ew_errf(err, errsz, "mpur: the world model must see 3 channels (has %d)", wm->cfg.channels);
    if (wm->cfg.n_cond != p->cfg.n_cond || wm->cfg.height != p->cfg.height || wm->cfg.width != p->cfg.width)
        return ew_errf(err, errsz, "mpur: policy (n_cond %d, %dx%d) and world model (n_cond %d, %dx%d) differ",
                    p->cfg.n_cond, p->cfg.height, p->cfg.width, wm->cfg.n_cond, wm->cfg.height, wm->cfg.width);
    return 0;
}

/* The world model's frames [B, nc*3, H, W] (channels 0-2 of each frame) as a tensor, and the
 * ego plane of the last frame [B, 1, H, W] (4-channel batches), both constants. */
static int wm_inputs(ew_graph *g, const ew_pt_batch *b, ew_tensor **frames, ew_tensor **ego) {
    int B = b->B, nc = b->n_cond, H = b->H, W = b->W;
    size_t plane = (size_t)H * W;
    int fs[4] = {B, nc * 3, H, W}, es[4] = {B, 1, H, W};
    *ego = NULL;
    if (b->C == 3) {
        *frames = ew_tensor_wrap(g, 4, fs, b->frames);
        return *frames ? 0 : -1;
    }
    *frames = ew_tensor_new(g, 4, fs);
    *ego = ew_tensor_new(g, 4, es);
    if (!*frames || !*ego) return -1;
    for (int r = 0; r < B; r++) {
        for (int j = 0; j < nc; j++)
            memcpy((*frames)->data + ((size_t)r * nc + j) * 3 * plane,
                   b->frames + ((size_t)r * nc + j) * (size_t)b->C * plane, sizeof(float) * 3 * plane);
        memcpy((*ego)->data + (size_t)r * plane, b->frames + (((size_t)r * nc + nc - 1) * b->C + 3) * plane,
               sizeof(float) * plane);
    }
    return 0;
}

/* z [T, B, nz] ~ N(0, I) from rng (NULL for deterministic models). */
static float *draw_z(ew_graph *g, const ew_fm *wm, int T, int B, ew_rng *rng) {
    if (!wm->cfg.stochastic) return NULL;
    size_t n = (size_t)T * B * wm->cfg.nz;
    float *z = ew_arena_alloc(ew_graph_arena(g), sizeof(float) * n);
    if (!z) return NULL;
    for (size_t i = 0; i < n; i++) z[i] = (float)ew_rng_normal(rng);
    return z;
}

/* The M-mask replay of the actions A [B, T, 2] from the data's window: per-step variances
 * [B, T] of images and weighted step costs. */
static int uncertainty(ew_graph *g, const ew_fm *wm, const ew_mpur_config *c, ew_tensor *frames, const float *states,
                       ew_tensor *A, const float *z, int T, ew_rng *rng, ew_tensor **img_var, ew_tensor **cost_var) {
    const ew_fm_config *fc = &wm->cfg;
    int B = frames->shape[0], M = c->u_samples, MB = M * B, nc = fc->n_cond, nz = fc->nz;
    size_t fn = (size_t)nc * 3 * fc->height * fc->width, sn = (size_t)nc * 5;
    int fs[4] = {MB, nc * 3, fc->height, fc->width}, ss[3] = {MB, nc, 5}, zs[3] = {T, MB, nz};
    ew_fm_inputs in = {ew_tensor_new(g, 4, fs), ew_tensor_new(g, 3, ss), NULL, NULL, NULL};
    ew_tensor *zt = z ? ew_tensor_new(g, 3, zs) : NULL;
    ew_tensor **reps = ew_arena_alloc(ew_graph_arena(g), sizeof(ew_tensor *) * (size_t)M);
    if (!in.frames || !in.states || (z && !zt) || !reps) return -1;
    for (int m = 0; m < M; m++) {
        memcpy(in.frames->data + (size_t)m * B * fn, frames->data, sizeof(float) * B * fn);
        memcpy(in.states->data + (size_t)m * B * sn, states, sizeof(float) * B * sn);
        reps[m] = A;
        if (z)
            for (int t = 0; t < T; t++)
                memcpy(zt->data + ((size_t)t * MB + (size_t)m * B) * nz, z + (size_t)t * B * nz,
                       sizeof(float) * B * nz);
    }
    in.actions = M > 1 ? ew_concat(g, reps, M, 0) : A;
    ew_fm_unroll_opts uo = {1, fc->stochastic ? EW_FM_Z_GIVEN : EW_FM_Z_PRIOR, 0.0f, zt, rng};
    ew_fm_unroll_out out;
    if (ew_fm_unroll(g, wm, &in, &uo, &out)) return -1;
    ew_cost_tape_out co;
    if (ew_cost_tape(g, &c->cost, MB, T, out.images, out.states_phys, NULL, NULL, NULL, NULL, &co)) return -1;
    int w31[2] = {3, 1};
    ew_tensor *wt = ew_tensor_new(g, 2, w31);
    ew_tensor **preds = ew_arena_alloc(ew_graph_arena(g), sizeof(ew_tensor *) * (size_t)M * 2);
    ew_tensor **parts = ew_arena_alloc(ew_graph_arena(g), sizeof(ew_tensor *) * (size_t)T * 2);
    ew_tensor **stepc = ew_arena_alloc(ew_graph_arena(g), sizeof(ew_tensor *) * (size_t)T);
    if (!wt || !preds || !parts || !stepc) return -1;
    wt->data[0] = c->cost.lambda_p;
    wt->data[1] = c->cost.lambda_l;
    wt->data[2] = c->cost.lambda_o;
    for (int t = 0; t < T; t++) stepc[t] = ew_matmul(g, co.step_masks[t], wt); /* [MB, 1] */
    ew_tensor **costs = preds + M;
    int D = 3 * fc->height * fc->width, b1d[3] = {B, 1, D};
    for (int m = 0; m < M; m++) {
        for (int t = 0; t < T; t++) {
            parts[t] = ew_reshape(g, ew_slice(g, out.images[t], 0, m * B, B), 3, b1d);
            parts[T + t] = ew_slice(g, stepc[t], 0, m * B, B);
        }
        preds[m] = T > 1 ? ew_concat(g, parts, T, 1) : parts[0];
        costs[m] = T > 1 ? ew_concat(g, parts + T, T, 1) : parts[T];
    }
    return ew_cost_uncertainty_terms(g, M, preds, costs, img_var, cost_var);
}

int ew_mpur_objective(ew_graph *g, const ew_fm *wm, const ew_policy *p, const ew_mpur_config *c,
                      const ew_mpur_ustats *us, const ew_pt_batch *b, uint64_t seed, int grad, ew_tensor **objective,
                      ew_mpur_terms *terms, char *err, size_t errsz) {
    *objective = NULL;
    memset(terms, 0, sizeof *terms);
    if (ew_mpur_check(wm, p, err, errsz)) return -1;
    const int T = c->horizon, nc = p->cfg.n_cond, B = b->B, Cp = p->cfg.channels;
    if (T < 1 || b->T < T || b->C != Cp || b->n_cond != nc || b->H != p->cfg.height || b->W != p->cfg.width)
        return ew_errf(err, errsz, "mpur: the batch (C %d, n_cond %d, T %d) does not fit the policy / horizon %d", b->C,
                    b->n_cond, b->T, T);
    int use_u = us && c->u_samples >= 2 && c->cost.lambda_u > 0.0f;
    if (use_u && us->T < T) return ew_errf(err, errsz, "mpur: uncertainty statistics for %d steps, horizon %d", us->T, T);
    if (ew_graph_reset(g)) return ew_errf(err, errsz, "mpur: arena reset failed");
    ew_set_grad_enabled(g, grad);
    ew_rng rng;
    ew_rng_seed(&rng, seed);
    const ew_fm_config *fc = &wm->cfg;
    float *z = draw_z(g, wm, T, B, &rng);
    ew_tensor *frames, *ego;
    int ss[3] = {B, nc, 5}, s5[2] = {B, 5}, s15[3] = {B, 1, 5}, s12[3] = {B, 1, 2}, zs[2] = {B, fc->nz}, five[1] = {5};
    ew_arena *ar = ew_graph_arena(g);
    ew_tensor **fl = ew_arena_calloc(ar, sizeof(ew_tensor *) * (size_t)(nc + T));
    ew_tensor **sl = ew_arena_calloc(ar, sizeof(ew_tensor *) * (size_t)(nc + T));
    ew_tensor **pw = ew_arena_calloc(ar, sizeof(ew_tensor *) * (size_t)(2 * nc));
    ew_tensor **images = ew_arena_calloc(ar, sizeof(ew_tensor *) * (size_t)T);
    ew_tensor **states = ew_arena_calloc(ar, sizeof(ew_tensor *) * (size_t)T);
    ew_tensor **acts = ew_arena_calloc(ar, sizeof(ew_tensor *) * (size_t)T);
    if ((fc->stochastic && !z) || !fl || !sl || !pw || !images || !states || !acts || wm_inputs(g, b, &frames, &ego))
        return ew_errf(err, errsz, "mpur: out of memory");
    ew_tensor *st0 = ew_tensor_wrap(g, 3, ss, b->states);
    ew_tensor *sm = ew_tensor_from(g, 1, five, wm->stats.state_mean), *sd = ew_tensor_from(g, 1, five, wm->stats.state_std);
    for (int j = 0; j < nc; j++) {
        fl[j] = ew_slice(g, frames, 1, 3 * j, 3);
        sl[j] = ew_slice(g, st0, 1, j, 1);
    }
    for (int t = 0; t < T; t++) {
        ew_tensor *win = nc > 1 ? ew_concat(g, fl + t, nc, 1) : fl[t];
        ew_tensor *swp = nc > 1 ? ew_concat(g, sl + t, nc, 1) : sl[t];
        ew_tensor *pwin = win;
        if (Cp == 4) {
            for (int j = 0; j < nc; j++) {
                pw[2 * j] = fl[t + j];
                pw[2 * j + 1] = ego;
            }
            pwin = ew_concat(g, pw, 2 * nc, 1);
        }
        ew_tensor *ap = ew_policy_denormalize(g, p, ew_policy_forward(g, p, pwin, swp, 1, &rng));
        ew_tensor *swn = ew_div(g, ew_sub(g, swp, sm), sd);
        ew_fm_step_opts so = {0, fc->stochastic ? EW_FM_Z_GIVEN : EW_FM_Z_PRIOR,
                              z ? ew_tensor_wrap(g, 2, zs, z + (size_t)t * B * fc->nz) : NULL, &rng};
        ew_fm_step_out out;
        if (!ap || ew_fm_step(g, wm, win, swn, ap, NULL, &so, &out))
            return ew_errf(err, errsz, "mpur: step %d: %s", t, ew_graph_error(g) ? ew_graph_error(g) : "failed");
        images[t] = out.image;
        states[t] = ew_add(g, ew_mul(g, out.state, sd), sm);
        fl[nc + t] = out.image;
        sl[nc + t] = ew_reshape(g, states[t], 3, s15);
        acts[t] = ew_reshape(g, ap, 3, s12);
    }
    (void)s5;
    ew_tensor *A = T > 1 ? ew_concat(g, acts, T, 1) : acts[0];
    ew_cost_tape_out co;
    if (!A || ew_cost_tape(g, &c->cost, B, T, images, states, A, NULL, NULL, NULL, &co))
        return ew_errf(err, errsz, "mpur: cost: %s", ew_graph_error(g) ? ew_graph_error(g) : "failed");
    ew_tensor *obj = co.total, *pen = NULL;
    if (use_u) {
        ew_tensor *iv, *cv;
        if (uncertainty(g, wm, c, frames, b->states, A, z, T, &rng, &iv, &cv))
            return ew_errf(err, errsz, "mpur: uncertainty: %s", ew_graph_error(g) ? ew_graph_error(g) : "out of memory");
        ew_cost_unc_stats st = {T, us->img_mean, us->img_std, us->cost_mean, us->cost_std, c->hinge};
        pen = ew_cost_uncertainty_penalty(g, iv, cv, &st);
        obj = ew_add(g, obj, ew_scale(g, pen, c->cost.lambda_u));
    }
    if (!obj || ew_graph_error(g))
        return ew_errf(err, errsz, "mpur: %s", ew_graph_error(g) ? ew_graph_error(g) : "failed");
    *objective = obj;
    terms->objective = obj->data[0];
    terms->cost = co.total->data[0];
    terms->prox = co.prox->data[0];
    terms->lane = co.lane->data[0];
    terms->offroad = co.offroad->data[0];
    terms->action = co.action->data[0];
    terms->jerk = co.jerk->data[0];
    terms->uncertainty = pen ? pen->data[0] : 0.0f;
    return 0;
}

int ew_mpur_step(ew_graph *g, const ew_fm *wm, ew_policy *p, ew_optim *opt, const ew_mpur_config *c,
                 const ew_mpur_ustats *us, const ew_pt_batch *b, float clip, uint64_t seed, ew_mpur_terms *out,
                 char *err, size_t errsz) {
    if (c->decoupled) return ew_mpur_km_step(g, wm, p, opt, c, us, b, clip, seed, out, err, errsz);
    int old = ew_grad_enabled(g);
    ew_tensor *obj;
    int rc = ew_mpur_objective(g, wm, p, c, us, b, seed, opt != NULL, &obj, out, err, errsz);
    if (!rc && !isfinite(out->objective)) rc = ew_errf(err, errsz, "mpur: objective is not finite (%g)", (double)out->objective);
    if (!rc && opt) {
        ew_optim_zero_grad(opt);
        if (ew_backward(g, obj)) {
            rc = ew_errf(err, errsz, "mpur: backward: %s", ew_graph_error(g));
        } else {
            out->grad_norm = ew_optim_clip_grad_norm(opt, clip > 0.0f ? clip : 0.0f);
            if (!isfinite(out->grad_norm)) {
                rc = ew_errf(err, errsz, "mpur: gradient norm is not finite (%g)", (double)out->grad_norm);
            } else {
                ew_optim_step(opt);
            }
        }
        ew_optim_zero_grad(opt);
    }
    ew_set_grad_enabled(g, old);
    return rc;
}

int ew_mpur_ustats_add(ew_graph *g, const ew_fm *wm, const ew_mpur_config *c, const ew_pt_batch *b, uint64_t seed,
                       ew_cost_unc_acc *img, ew_cost_unc_acc *cost, char *err, size_t errsz) {
    if (c->decoupled) return ew_mpur_km_ustats_add(g, wm, c, b, seed, img, cost, err, errsz);
    const int T = c->horizon, B = b->B;
    if (c->u_samples < 2) return ew_errf(err, errsz, "mpur: uncertainty statistics need u_samples >= 2");
    if (b->T < T || b->n_cond != wm->cfg.n_cond || b->H != wm->cfg.height || b->W != wm->cfg.width || b->C < 3)
        return ew_errf(err, errsz, "mpur: the batch does not fit the world model / horizon %d", T);
    if (img->T != T || cost->T != T) return ew_errf(err, errsz, "mpur: accumulators for %d steps, horizon %d", img->T, T);
    if (ew_graph_reset(g)) return ew_errf(err, errsz, "mpur: arena reset failed");
    int old = ew_set_grad_enabled(g, 0);
    ew_rng rng;
    ew_rng_seed(&rng, seed);
    float *z = draw_z(g, wm, T, B, &rng);
    ew_tensor *frames, *ego, *iv = NULL, *cv = NULL;
    int as[3] = {B, b->T, 2};
    int rc = 0;
    if ((wm->cfg.stochastic && !z) || wm_inputs(g, b, &frames, &ego)) {
        rc = ew_errf(err, errsz, "mpur: out of memory");
    } else {
        ew_tensor *A = ew_tensor_wrap(g, 3, as, b->actions);
        if (b->T > T) A = ew_slice(g, A, 1, 0, T);
        if (uncertainty(g, wm, c, frames, b->states, A, z, T, &rng, &iv, &cv) || !iv || !cv) {
            rc = ew_errf(err, errsz, "mpur: uncertainty: %s", ew_graph_error(g) ? ew_graph_error(g) : "failed");
        } else {
            ew_cost_unc_acc_add(img, iv->data, B);
            ew_cost_unc_acc_add(cost, cv->data, B);
        }
    }
    ew_set_grad_enabled(g, old);
    return rc;
}
