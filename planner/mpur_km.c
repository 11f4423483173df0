/* mpur_km.c - MPUR in the decoupled (FM-KM) form: the policy is trained through the frozen
 * world model's images and the exact kinematic model (contract in mpur.h, "Decoupled form"). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/ops.h"
#include "sim/err.h"
#include "planner/mpc.h"
#include "planner/mpur.h"


/* Working memory of one call (owned here, freed before returning). */
typedef struct {
    int B, T, nc, L, Cp, H, W, M;
    size_t hw;
    float *seq_f;   /* [B][L][3][hw] frames: the data's nc, then the rollout's T */
    float *seq_s;   /* [B][L][5] physical states */
    float *act;     /* [B][T][2] executed (clipped) physical actions */
    float *raw;     /* [B][T][2] the policy's unclipped physical actions */
    float *pin_f;   /* [T*B][nc*Cp][hw] the policy's inputs at every step (row t*B + b) */
    float *pin_s;   /* [T*B][nc][5] */
    float *rep_v;   /* [M][B][T][hw] vehicle channel of the M dropout replays */
    float *rep_f;   /* [M*B][L][3][hw] replay windows */
    float *rep_s;   /* [M*B][L][5] */
    float *z;       /* [T][B][nz] */
    float *img, *img_t, *scratch; /* per row: [T][3][hw], transposed, 3W */
    ew_cost_pose *ref;            /* [T] */
    float *grad;                  /* [B][T][2] d objective / d executed action */
    float *pol_out;               /* [B][2] the policy's actions of one step */
    double *ucost, (*ugrad)[5];   /* [M] per-mask proximity costs and their pose gradients */
    float *uimg;                  /* [3][hw] one image with a replay's vehicle layer */
} km_work;

static void work_free(km_work *w) {
    free(w->seq_f);
    free(w->seq_s);
    free(w->act);
    free(w->raw);
    free(w->pin_f);
    free(w->pin_s);
    free(w->rep_v);
    free(w->rep_f);
    free(w->rep_s);
    free(w->z);
    free(w->img);
    free(w->img_t);
    free(w->scratch);
    free(w->ref);
    free(w->grad);
    free(w->pol_out);
    free(w->ucost);
    free(w->ugrad);
    free(w->uimg);
    memset(w, 0, sizeof *w);
}

static int work_alloc(km_work *w, const ew_fm *wm, int B, int T, int M, int Cp, int policy) {
    memset(w, 0, sizeof *w);
    const ew_fm_config *fc = &wm->cfg;
    w->B = B, w->T = T, w->nc = fc->n_cond, w->L = fc->n_cond + T, w->Cp = Cp, w->H = fc->height, w->W = fc->width;
    w->M = M;
    w->hw = (size_t)w->H * w->W;
    size_t fr = 3 * w->hw, BL = (size_t)B * w->L;
    w->seq_f = malloc(sizeof(float) * BL * fr);
    w->seq_s = malloc(sizeof(float) * BL * 5);
    w->act = calloc((size_t)B * T * 2, sizeof(float));
    w->raw = calloc((size_t)B * T * 2, sizeof(float));
    w->grad = calloc((size_t)B * T * 2, sizeof(float));
    w->z = fc->stochastic ? malloc(sizeof(float) * (size_t)T * B * (size_t)fc->nz) : NULL;
    w->img = malloc(sizeof(float) * (size_t)T * fr);
    w->img_t = malloc(sizeof(float) * (size_t)T * 3 * w->W * (size_t)ew_cost_rows_padded(w->H));
    w->scratch = malloc(sizeof(float) * 3 * (size_t)w->W);
    w->ref = malloc(sizeof(ew_cost_pose) * (size_t)T);
    int ok = w->seq_f && w->seq_s && w->act && w->raw && w->grad && (!fc->stochastic || w->z) && w->img &&
             w->img_t && w->scratch && w->ref;
    if (ok && policy) {
        w->pin_f = malloc(sizeof(float) * (size_t)B * T * w->nc * Cp * w->hw);
        w->pin_s = malloc(sizeof(float) * (size_t)B * T * w->nc * 5);
        w->pol_out = malloc(sizeof(float) * 2 * (size_t)B);
        ok = w->pin_f && w->pin_s && w->pol_out;
    }
    if (ok && M >= 2) {
        w->rep_v = malloc(sizeof(float) * (size_t)M * B * T * w->hw);
        w->rep_f = malloc(sizeof(float) * (size_t)M * BL * fr);
        w->rep_s = malloc(sizeof(float) * (size_t)M * BL * 5);
        w->ucost = malloc(sizeof(double) * (size_t)M);
        w->ugrad = malloc(sizeof(double[5]) * (size_t)M);
        w->uimg = malloc(sizeof(float) * fr);
        ok = w->rep_v && w->rep_f && w->rep_s && w->ucost && w->ugrad && w->uimg;
    }
    if (!ok) work_free(w);
    return ok ? 0 : -1;
}

/* Copies the batch's window (channels 0-2) into seq rows. */
static void load_window(km_work *w, const ew_pt_batch *b, float *seq_f, float *seq_s, int rows) {
    size_t fr = 3 * w->hw;
    for (int r = 0; r < rows; r++) {
        int br = r % b->B;
        for (int j = 0; j < w->nc; j++) {
            memcpy(seq_f + ((size_t)r * w->L + j) * fr, b->frames + ((size_t)br * w->nc + j) * (size_t)b->C * w->hw,
                   sizeof(float) * fr);
            memcpy(seq_s + ((size_t)r * w->L + j) * 5, b->states + ((size_t)br * w->nc + j) * 5, sizeof(float) * 5);
        }
    }
}

/* One world-model step for `rows` rows whose windows start at seq column t; writes column
 * nc + t. actions: [rows][2] physical (row r uses act[(r % B) * T + t]). */
static int wm_step(ew_graph *g, const ew_fm *wm, km_work *w, float *seq_f, float *seq_s, int rows, int t, int train,
                   const float *act, ew_rng *rng, char *err, size_t errsz) {
    const ew_fm_config *fc = &wm->cfg;
    size_t fr = 3 * w->hw;
    int nc = w->nc, B = w->B;
    int fs[4] = {rows, nc * 3, w->H, w->W}, ss[3] = {rows, nc, 5}, as[2] = {rows, 2}, zs[2] = {rows, fc->nz};
    if (ew_graph_reset(g)) return ew_errf(err, errsz, "mpur: arena reset failed");
    ew_set_grad_enabled(g, 0);
    ew_tensor *f = ew_tensor_new(g, 4, fs), *s = ew_tensor_new(g, 3, ss), *a = ew_tensor_new(g, 2, as);
    ew_tensor *z = fc->stochastic ? ew_tensor_new(g, 2, zs) : NULL;
    if (!f || !s || !a || (fc->stochastic && !z)) return ew_errf(err, errsz, "mpur: out of memory");
    for (int r = 0; r < rows; r++) {
        int br = r % B;
        memcpy(f->data + (size_t)r * nc * fr, seq_f + ((size_t)r * w->L + t) * fr, sizeof(float) * nc * fr);
        for (int j = 0; j < nc; j++)
            for (int k = 0; k < 5; k++)
                s->data[((size_t)r * nc + j) * 5 + k] =
                    (seq_s[((size_t)r * w->L + t + j) * 5 + k] - wm->stats.state_mean[k]) / wm->stats.state_std[k];
        a->data[2 * r] = act[((size_t)br * w->T + t) * 2];
        a->data[2 * r + 1] = act[((size_t)br * w->T + t) * 2 + 1];
        if (z) memcpy(z->data + (size_t)r * fc->nz, w->z + ((size_t)t * B + br) * fc->nz, sizeof(float) * fc->nz);
    }
    ew_fm_step_opts so = {train, fc->stochastic ? EW_FM_Z_GIVEN : EW_FM_Z_PRIOR, z, rng};
    ew_fm_step_out out;
    if (ew_fm_step(g, wm, f, s, a, NULL, &so, &out) || ew_graph_error(g))
        return ew_errf(err, errsz, "mpur: world model step %d: %s", t, ew_graph_error(g) ? ew_graph_error(g) : "failed");
    for (int r = 0; r < rows; r++) {
        memcpy(seq_f + ((size_t)r * w->L + nc + t) * fr, out.image->data + (size_t)r * fr, sizeof(float) * fr);
        for (int k = 0; k < 5; k++)
            seq_s[((size_t)r * w->L + nc + t) * 5 + k] =
                out.state->data[(size_t)r * 5 + k] * wm->stats.state_std[k] + wm->stats.state_mean[k];
    }
    return 0;
}

/* The policy's input at step t for every row (into pin row t*B + b), from seq. */
static void policy_input(km_work *w, const ew_pt_batch *b, int t) {
    size_t fr = 3 * w->hw;
    int nc = w->nc, Cp = w->Cp;
    for (int r = 0; r < w->B; r++) {
        float *dst = w->pin_f + ((size_t)t * w->B + r) * nc * Cp * w->hw;
        const float *src = w->seq_f + ((size_t)r * w->L + t) * fr;
        if (Cp == 3) {
            memcpy(dst, src, sizeof(float) * nc * fr);
        } else {
            const float *ego = b->frames + (((size_t)r * nc + nc - 1) * (size_t)b->C + 3) * w->hw;
            for (int j = 0; j < nc; j++) {
                memcpy(dst + (size_t)j * Cp * w->hw, src + (size_t)j * fr, sizeof(float) * fr);
                memcpy(dst + ((size_t)j * Cp + 3) * w->hw, ego, sizeof(float) * w->hw);
            }
        }
        memcpy(w->pin_s + ((size_t)t * w->B + r) * nc * 5, w->seq_s + ((size_t)r * w->L + t) * 5,
               sizeof(float) * nc * 5);
    }
}

/* Main rollout: with the policy (p != NULL) or the logged actions of b. */
static int rollout(ew_graph *g, const ew_fm *wm, const ew_policy *p, const ew_kin_limits *lim, km_work *w,
                   const ew_pt_batch *b, int oracle, ew_rng *rng, char *err, size_t errsz) {
    const int B = w->B, T = w->T, nc = w->nc;
    load_window(w, b, w->seq_f, w->seq_s, B);
    for (int t = 0; t < T; t++) {
        if (p) {
            policy_input(w, b, t);
            size_t rowf = (size_t)nc * w->Cp * w->hw;
            if (ew_policy_act_batch(g, p, B, w->pin_f + (size_t)t * B * rowf, w->pin_s + (size_t)t * B * nc * 5,
                                    w->pol_out, err, errsz))
                return -1;
            for (int r = 0; r < B; r++) {
                ew_action u = {w->pol_out[2 * r], w->pol_out[2 * r + 1]};
                ew_action c = ew_kin_clip(lim, u);
                w->raw[((size_t)r * T + t) * 2] = u.a;
                w->raw[((size_t)r * T + t) * 2 + 1] = u.b;
                w->act[((size_t)r * T + t) * 2] = c.a;
                w->act[((size_t)r * T + t) * 2 + 1] = c.b;
            }
        } else {
            for (int r = 0; r < B; r++)
                for (int k = 0; k < 2; k++)
                    w->act[((size_t)r * T + t) * 2 + k] = w->raw[((size_t)r * T + t) * 2 + k] =
                        b->actions[((size_t)r * b->T + t) * 2 + k];
        }
        if (oracle) {
            size_t fr = 3 * w->hw;
            for (int r = 0; r < B; r++) {
                memcpy(w->seq_f + ((size_t)r * w->L + nc + t) * fr,
                       b->tframes + ((size_t)r * b->T + t) * (size_t)b->C * w->hw, sizeof(float) * fr);
                memcpy(w->seq_s + ((size_t)r * w->L + nc + t) * 5, b->tstates + ((size_t)r * b->T + t) * 5,
                       sizeof(float) * 5);
            }
        } else if (wm_step(g, wm, w, w->seq_f, w->seq_s, B, t, 0, w->act, rng, err, errsz)) {
            return -1;
        }
    }
    return 0;
}

/* Vehicle plane v (H x W, around its own ego pose) times rear_weight behind the ego. */
static void rear_scale(const ew_mpur_config *c, int H, int W, float *v) {
    if (c->rear_weight == 1.0f) return;
    for (int r = 0; r < H; r++) {
        double f = (H / 2.0 - r - 0.5) * c->cost.m_per_px;
        if (f >= -0.5 * c->cost.ego_len) continue;
        for (int k = 0; k < W; k++) v[(size_t)r * W + k] *= c->rear_weight;
    }
}

/* The M dropout replays of the executed actions (same latents): vehicle channels into rep_v. */
static int replays(ew_graph *g, const ew_fm *wm, const ew_mpur_config *c, km_work *w, const ew_pt_batch *b,
                   ew_rng *rng, char *err, size_t errsz) {
    const int B = w->B, T = w->T, M = w->M, MB = M * B;
    size_t fr = 3 * w->hw;
    load_window(w, b, w->rep_f, w->rep_s, MB);
    for (int t = 0; t < T; t++) {
        if (wm_step(g, wm, w, w->rep_f, w->rep_s, MB, t, 1, w->act, rng, err, errsz)) return -1;
        for (int r = 0; r < MB; r++) {
            float *v = w->rep_v + ((size_t)r * T + t) * w->hw;
            memcpy(v, w->rep_f + ((size_t)r * w->L + w->nc + t) * fr + w->hw, sizeof(float) * w->hw);
            rear_scale(c, w->H, w->W, v);
        }
    }
    return 0;
}

static ew_cost_pose pose_of(const float *s) {
    double n = sqrt((double)s[2] * s[2] + (double)s[3] * s[3]);
    ew_cost_pose q = {s[0], s[1], s[2], s[3], s[4]};
    if (n > 0) q.dx /= n, q.dy /= n;
    else q.dx = 1, q.dy = 0;
    return q;
}

/* The cost images of row r (channel 1: vehicles of the rollout; 0 and 2: static layers of the
 * newest observed frame, or the rollout's own) and reference poses. */
static void row_images(const ew_mpur_config *c, km_work *w, int r) {
    size_t fr = 3 * w->hw;
    const int T = w->T, nc = w->nc;
    for (int t = 0; t < T; t++) {
        w->ref[t] = pose_of(w->seq_s + ((size_t)r * w->L + nc + t) * 5);
        memcpy(w->img + (size_t)t * fr, w->seq_f + ((size_t)r * w->L + nc + t) * fr, sizeof(float) * fr);
        rear_scale(c, w->H, w->W, w->img + (size_t)t * fr + w->hw);
    }
    if (c->static_obs) {
        const float *os = w->seq_s + ((size_t)r * w->L + nc - 1) * 5;
        ew_kin_state o = {os[0], os[1], os[2], os[3], os[4]};
        ew_mpc_static_layers(&c->cost, c->profile_m, w->seq_f + ((size_t)r * w->L + nc - 1) * fr, &o, T, w->ref, 3,
                             w->img, w->scratch);
    }
    ew_cost_transpose(w->img, T, 3, w->H, w->W, w->img_t);
}

/* The decoupled problem of row r: its cost images and reference poses (row_images), the start
 * at the last observed state, the last executed action estimated from the last two observed
 * states (as the MPC does). */
static void row_problem(const ew_mpur_config *c, const ew_kin_limits *lim, km_work *w, int r, ew_cost_problem *pb) {
    const int nc = w->nc;
    row_images(c, w, r);
    memset(pb, 0, sizeof *pb);
    pb->T = w->T;
    pb->C = 3;
    pb->images = w->img;
    pb->images_t = w->img_t;
    pb->ref = w->ref;
    const float *s1 = w->seq_s + ((size_t)r * w->L + nc - 1) * 5;
    pb->start = (ew_cost_pose){s1[0], s1[1], s1[2], s1[3], s1[4]};
    if (nc >= 2) {
        const float *s0 = s1 - 5;
        ew_kin_state k0 = {s0[0], s0[1], s0[2], s0[3], s0[4]}, k1 = {s1[0], s1[1], s1[2], s1[3], s1[4]};
        pb->prev = ew_kin_clip(lim, ew_kin_action_between(&k0, &k1, c->cost.dt));
    }
    pb->use_ref = 1;
}

/* Per-step proximity costs of the M replays at the kinematic poses of row r, their variance
 * and (when ustats given) the hinged penalty and its gradient w.r.t. the actions (added to
 * gout[T*2], scaled by `scale`). var_out[T] (may be NULL), img_var_out[T] (may be NULL).
 * Returns the row's penalty sum over steps. */
static double row_uncertainty(const ew_mpur_config *c, km_work *w, int r,
                              const ew_cost_pose *start, const double *speeds, const ew_mpur_ustats *us, double scale,
                              float *gout, float *var_out, float *img_var_out) {
    const int T = w->T, M = w->M;
    const size_t hw = w->hw, fr = 3 * hw;
    ew_cost_pose q[EW_COST_MAX_T + 1];
    q[0] = *start;
    for (int t = 0; t < T; t++)
        ew_cost_kin_step(&q[t], w->act[((size_t)r * T + t) * 2], w->act[((size_t)r * T + t) * 2 + 1], c->cost.dt,
                         c->cost.allow_reverse, &q[t + 1]);
    double wts[3] = {c->cost.lambda_p, 0, 0}, pen = 0;
    double gq[EW_COST_MAX_T + 1][5];
    memset(gq, 0, sizeof gq);
    double *cm = w->ucost, (*g5)[5] = w->ugrad;
    float *im = w->uimg;
    for (int t = 0; t < T; t++) {
        memcpy(im, w->img + (size_t)t * fr, sizeof(float) * fr);
        double mean = 0;
        for (int m = 0; m < M; m++) {
            memcpy(im + hw, w->rep_v + (((size_t)m * w->B + r) * T + t) * hw, sizeof(float) * hw);
            double o3[3];
            memset(g5[m], 0, sizeof g5[m]);
            ew_cost_image(&c->cost, im, 3, &w->ref[t], &q[t + 1], speeds[t], o3, wts, g5[m]);
            cm[m] = c->cost.lambda_p * o3[0];
            mean += cm[m] / M;
        }
        double var = 0;
        for (int m = 0; m < M; m++) var += (cm[m] - mean) * (cm[m] - mean);
        var /= (M - 1);
        if (var_out) var_out[t] = (float)var;
        if (img_var_out) {
            double iv = 0;
            for (size_t i = 0; i < hw; i++) {
                double s = 0, s2 = 0;
                for (int m = 0; m < M; m++) {
                    double v = w->rep_v[(((size_t)m * w->B + r) * T + t) * hw + i];
                    s += v;
                    s2 += v * v;
                }
                double mu = s / M, vv = (s2 - M * mu * mu) / (M - 1);
                iv += vv > 0 ? vv : 0;
            }
            img_var_out[t] = (float)(iv / (double)hw);
        }
        if (us) {
            double x = (var - us->cost_mean[t]) / us->cost_std[t] - c->hinge;
            if (x > 0) {
                pen += x;
                double k = scale * 2.0 / ((M - 1) * (double)us->cost_std[t]);
                for (int m = 0; m < M; m++)
                    for (int i = 0; i < 5; i++) gq[t + 1][i] += k * (cm[m] - mean) * g5[m][i];
            }
        }
    }
    if (us && gout) {
        /* adjoint through the kinematic model: lambda_{t} = dU/dq_t + Js(t)^T lambda_{t+1} */
        double lam[5] = {0, 0, 0, 0, 0};
        for (int t = T - 1; t >= 0; t--) {
            for (int i = 0; i < 5; i++) lam[i] += gq[t + 1][i];
            ew_kin_state s = {(float)q[t].x, (float)q[t].y, (float)q[t].dx, (float)q[t].dy, (float)q[t].s};
            ew_action u = {w->act[((size_t)r * T + t) * 2], w->act[((size_t)r * T + t) * 2 + 1]};
            float Js[5][5], Ja[5][2];
            ew_kin_jacobian(&s, u, c->cost.dt, c->cost.allow_reverse, Js, Ja);
            for (int k = 0; k < 2; k++) {
                double d = 0;
                for (int i = 0; i < 5; i++) d += Ja[i][k] * lam[i];
                gout[(size_t)t * 2 + k] += (float)d;
            }
            double nl[5];
            for (int j = 0; j < 5; j++) {
                nl[j] = 0;
                for (int i = 0; i < 5; i++) nl[j] += Js[i][j] * lam[i];
            }
            memcpy(lam, nl, sizeof lam);
        }
    }
    return pen;
}

/* Objective and its gradient w.r.t. the executed actions (w->grad) for the current rollout. */
static int km_objective(const ew_mpur_config *c, const ew_kin_limits *lim, km_work *w, const ew_mpur_ustats *us,
                        ew_mpur_terms *terms, char *err, size_t errsz) {
    const int B = w->B, T = w->T;
    int use_u = us && w->M >= 2 && c->cost.lambda_u > 0.0f;
    double tot[8] = {0}, pen = 0;
    memset(w->grad, 0, sizeof(float) * (size_t)B * T * 2);
    for (int r = 0; r < B; r++) {
        ew_cost_problem pb;
        row_problem(c, lim, w, r, &pb);
        ew_cost_terms ct;
        double speeds[EW_COST_MAX_T];
        float *gr = w->grad + (size_t)r * T * 2;
        double J = ew_cost_decoupled(&c->cost, &pb, (const ew_action *)(w->act + (size_t)r * T * 2), gr, &ct, speeds);
        if (!isfinite(J)) return ew_errf(err, errsz, "mpur: the cost of row %d is not finite", r);
        for (int i = 0; i < T * 2; i++) gr[i] /= (float)B;
        tot[0] += ct.total, tot[1] += ct.prox, tot[2] += ct.lane, tot[3] += ct.offroad, tot[4] += ct.action;
        tot[5] += ct.jerk;
        if (use_u) {
            double pr = row_uncertainty(c, w, r, &pb.start, speeds, us, c->cost.lambda_u / ((double)B * T), gr,
                                        NULL, NULL);
            if (!isfinite(pr)) return ew_errf(err, errsz, "mpur: the uncertainty of row %d is not finite", r);
            pen += pr;
        }
    }
    /* actions beyond the ego limits: no gradient through the clip, a penalty on the excess */
    double lp = 0;
    float lim_a = lim->a_max > -lim->a_min ? lim->a_max : -lim->a_min, lim_b = lim->b_max;
    for (size_t i = 0; i < (size_t)B * T; i++) {
        for (int k = 0; k < 2; k++) {
            float raw = w->raw[2 * i + k], ex = w->act[2 * i + k], sc = k ? lim_b : lim_a;
            if (raw != ex) {
                double d = (raw - ex) / sc;
                lp += d * d;
                w->grad[2 * i + k] = (float)(c->w_limit * 2.0 * d / sc / ((double)B * T));
            }
        }
    }
    lp /= (double)B * T;
    pen /= (double)B * T;
    terms->cost = (float)(tot[0] / B);
    terms->prox = (float)(tot[1] / B);
    terms->lane = (float)(tot[2] / B);
    terms->offroad = (float)(tot[3] / B);
    terms->action = (float)(tot[4] / B);
    terms->jerk = (float)(tot[5] / B);
    terms->uncertainty = (float)pen;
    terms->objective = (float)(tot[0] / B + c->cost.lambda_u * pen + c->w_limit * lp);
    return 0;
}

static int check_batch(const ew_fm *wm, const ew_pt_batch *b, int T, char *err, size_t errsz) {
    if (T < 1 || T > EW_COST_MAX_T) return ew_errf(err, errsz, "mpur: horizon %d outside 1..%d", T, EW_COST_MAX_T);
    if (b->T < T || b->n_cond != wm->cfg.n_cond || b->H != wm->cfg.height || b->W != wm->cfg.width || b->C < 3)
        return ew_errf(err, errsz, "mpur: the batch does not fit the world model / horizon %d", T);
    if (wm->cfg.channels != 3) return ew_errf(err, errsz, "mpur: the world model must see 3 channels");
    return 0;
}

static void draw_z(const ew_fm *wm, km_work *w, ew_rng *rng) {
    if (!w->z) return;
    size_t n = (size_t)w->T * w->B * wm->cfg.nz;
    for (size_t i = 0; i < n; i++) w->z[i] = (float)ew_rng_normal(rng);
}

int ew_mpur_km_step(ew_graph *g, const ew_fm *wm, ew_policy *p, ew_optim *opt, const ew_mpur_config *c,
                    const ew_mpur_ustats *us, const ew_pt_batch *b, float clip, uint64_t seed, ew_mpur_terms *out,
                    char *err, size_t errsz) {
    memset(out, 0, sizeof *out);
    if (ew_mpur_check(wm, p, err, errsz) || check_batch(wm, b, c->horizon, err, errsz)) return -1;
    if (b->C != p->cfg.channels) return ew_errf(err, errsz, "mpur: batch channels %d, policy %d", b->C, p->cfg.channels);
    if (c->oracle && (!b->tframes || !b->tstates))
        return ew_errf(err, errsz, "mpur: the oracle world needs the batch's logged future (ew_pt_batch_alloc_targets)");
    int use_u = !c->oracle && us && c->u_samples >= 2 && c->cost.lambda_u > 0.0f;
    if (use_u && us->T < c->horizon)
        return ew_errf(err, errsz, "mpur: uncertainty statistics for %d steps, horizon %d", us->T, c->horizon);
    ew_kin_limits lim;
    ew_kin_limits_default(&lim);
    lim.allow_reverse = c->cost.allow_reverse;
    km_work w;
    if (work_alloc(&w, wm, b->B, c->horizon, use_u ? c->u_samples : 0, p->cfg.channels, 1))
        return ew_errf(err, errsz, "mpur: out of memory");
    int old = ew_grad_enabled(g), rc = 0;
    ew_rng rng;
    ew_rng_seed(&rng, seed);
    draw_z(wm, &w, &rng);
    if (rollout(g, wm, p, &lim, &w, b, c->oracle, &rng, err, errsz) || (use_u && replays(g, wm, c, &w, b, &rng, err, errsz)) ||
        km_objective(c, &lim, &w, use_u ? us : NULL, out, err, errsz)) {
        rc = -1;
        goto done;
    }
    if (!isfinite(out->objective)) {
        rc = ew_errf(err, errsz, "mpur: objective is not finite (%g)", (double)out->objective);
        goto done;
    }
    if (opt) {
        /* d objective / d normalised action = d / d physical action x action std; the policy's
         * inputs are those of the rollout (detached) */
        const int BT = b->B * c->horizon, nc = p->cfg.n_cond;
        if (ew_graph_reset(g)) {
            rc = ew_errf(err, errsz, "mpur: arena reset failed");
            goto done;
        }
        ew_set_grad_enabled(g, 1);
        int fs[4] = {BT, nc * p->cfg.channels, p->cfg.height, p->cfg.width}, ss[3] = {BT, nc, 5}, gs[2] = {BT, 2};
        ew_tensor *f = ew_tensor_wrap(g, 4, fs, w.pin_f), *s = ew_tensor_wrap(g, 3, ss, w.pin_s);
        ew_tensor *gt = ew_tensor_new(g, 2, gs);
        if (!f || !s || !gt) {
            rc = ew_errf(err, errsz, "mpur: out of memory");
            goto done;
        }
        for (int t = 0; t < c->horizon; t++)
            for (int r = 0; r < b->B; r++)
                for (int k = 0; k < 2; k++)
                    gt->data[((size_t)t * b->B + r) * 2 + k] =
                        (c->grad_steps > 0 && t >= c->grad_steps)
                            ? 0.0f
                            : w.grad[((size_t)r * c->horizon + t) * 2 + k] * p->stats.action_std[k];
        ew_tensor *a = ew_policy_forward(g, p, f, s, 0, &rng);
        ew_tensor *sur = a ? ew_sum(g, ew_mul(g, a, gt)) : NULL;
        ew_optim_zero_grad(opt);
        if (!sur || ew_graph_error(g) || ew_backward(g, sur)) {
            rc = ew_errf(err, errsz, "mpur: policy backward: %s", ew_graph_error(g) ? ew_graph_error(g) : "failed");
        } else {
            out->grad_norm = ew_optim_clip_grad_norm(opt, clip > 0.0f ? clip : 0.0f);
            if (!isfinite(out->grad_norm))
                rc = ew_errf(err, errsz, "mpur: gradient norm is not finite (%g)", (double)out->grad_norm);
            else
                ew_optim_step(opt);
        }
        ew_optim_zero_grad(opt);
    }
done:
    ew_set_grad_enabled(g, old);
    work_free(&w);
    return rc;
}

int ew_mpur_km_ustats_add(ew_graph *g, const ew_fm *wm, const ew_mpur_config *c, const ew_pt_batch *b, uint64_t seed,
                          ew_cost_unc_acc *img, ew_cost_unc_acc *cost, char *err, size_t errsz) {
    const int T = c->horizon, B = b->B;
    if (c->u_samples < 2) return ew_errf(err, errsz, "mpur: uncertainty statistics need u_samples >= 2");
    if (check_batch(wm, b, T, err, errsz)) return -1;
    if (img->T != T || cost->T != T) return ew_errf(err, errsz, "mpur: accumulators for %d steps, horizon %d", img->T, T);
    ew_kin_limits lim;
    ew_kin_limits_default(&lim);
    lim.allow_reverse = c->cost.allow_reverse;
    km_work w;
    if (work_alloc(&w, wm, B, T, c->u_samples, 3, 0)) return ew_errf(err, errsz, "mpur: out of memory");
    int old = ew_grad_enabled(g), rc = 0;
    ew_rng rng;
    ew_rng_seed(&rng, seed);
    draw_z(wm, &w, &rng);
    float *cv = malloc(sizeof(float) * (size_t)T), *iv = malloc(sizeof(float) * (size_t)T);
    if (!cv || !iv) rc = ew_errf(err, errsz, "mpur: out of memory");
    if (!rc && (rollout(g, wm, NULL, &lim, &w, b, 0, &rng, err, errsz) || replays(g, wm, c, &w, b, &rng, err, errsz)))
        rc = -1;
    for (int r = 0; r < B && !rc; r++) {
        ew_cost_problem pb;
        row_problem(c, &lim, &w, r, &pb);
        double speeds[EW_COST_MAX_T];
        double J = ew_cost_decoupled(&c->cost, &pb, (const ew_action *)(w.act + (size_t)r * T * 2), NULL, NULL, speeds);
        if (!isfinite(J) ||
            !isfinite(row_uncertainty(c, &w, r, &pb.start, speeds, NULL, 0, NULL, cv, iv))) {
            rc = ew_errf(err, errsz, "mpur: uncertainty statistics of row %d are not finite", r);
            break;
        }
        ew_cost_unc_acc_add(cost, cv, 1);
        ew_cost_unc_acc_add(img, iv, 1);
    }
    free(cv);
    free(iv);
    ew_set_grad_enabled(g, old);
    work_free(&w);
    return rc;
}
