/* mpc.c - MPC controllers on the world model (contract in mpc.h).
 *
 * Per control step (act):
 *   1. nominal = previous plan shifted by one, last action repeated (zeros after reset);
 *   2. reference: a fresh unroll (K samples, `horizon` steps, run as one ew_fm_predict call
 *      per step on the K samples' own windows) from the observed window every `refresh`
 *      steps, else the previous reference shifted by one and one new tail step predicted per
 *      sample; reference image t = vehicle channel max over
 *      samples, markings and off-road mean over samples; reference pose t = mean of the
 *      samples' predicted states (heading renormalised);
 *   3. mpc-km: `iters` projected Adam steps on x = u / scale (scale_a, scale_b) with the
 *      decoupled cost's gradient (planner/cost.h), global gradient-norm clip; cem: sampling
 *      on the same cost; mpc-fm: Adam on the tape cost of a fresh unroll per iteration
 *      (ew_fm_unroll with prior latents drawn once per control step), masks centred on the
 *      predicted images (coupled form);
 *   4. the plan is the lowest-cost sequence met (the nominal included); its first action,
 *      clipped to the ego limits, is executed.
 * The previous action (jerk term) is estimated from the last two observed ego states.
 */
#include "planner/mpc.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "models/backend_cuda.h"
#include "models/fm.h"
#include "models/ops.h"
#include "planner/controllers.h"
#include "sim/raster.h"
#include "sim/rng.h"
#include "sim/world.h"

void ew_mpc_config_default(ew_mpc_config *c) {
    memset(c, 0, sizeof *c);
    c->world_model = NULL;
    c->horizon = 30;
    c->iters = 10;
    c->samples = 2;
    c->threads = 1;
    c->seed = 1;
    c->lr = 0.1f;
    c->clip = 1.0f;
    c->cem_samples = 100;
    c->cem_elites = 10;
    c->cem_rounds = 5;
    c->refresh = 10;
    c->scale_a = 2.0f;
    c->scale_b = 0.005f;
    c->static_obs = 1;
    c->profile_m = 12.0f;
    c->cost = NULL;
}

enum { KIND_KM = 0, KIND_FM = 1, KIND_CEM = 2 };

typedef struct {
    int kind;
    ew_mpc_config cfg;
    ew_fm model;
    int model_ok;
    ew_backend *be;
    ew_graph *g;
    ew_cost_config cc;
    ew_raster_cfg rc;
    int nc, C, H, W, T, K, cap; /* cap: frames per sample history */
    size_t fsz;                 /* floats per frame (C*H*W) */
    /* observation ring (oldest at head when full) */
    float *ring_f, *ring_s;
    int ring_n, ring_head;
    uint8_t *ras;
    /* plans */
    ew_action *plan, *nominal, *work, *best;
    int have_plan;
    /* reference */
    float *ref_img, *ref_t; /* reference images and their transposed copies (fast cost form) */
    size_t tsz;             /* floats per transposed image */
    ew_cost_pose *ref_pose;
    float *hist_f, *hist_s; /* per sample: cap frames / states */
    int hist_len, since_refresh, have_ref;
    /* scratch */
    float *win_f, *win_s, *act_buf, *pred_f, *pred_s;
    float *grad, *adam_m, *adam_v, *xs;
    float *cem_mean, *cem_std, *cem_x, *cem_cost;
    int *cem_idx;
    float *z;
    float *colmean;         /* static layers: per-column mean of the observed markings, off-road */
    ew_rng rng;
    uint64_t step;
    ew_mpc_stats st;
    double unroll_ms, opt_ms, unroll_cpu, opt_cpu;
} mpc_ctx;

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

static double cpu_now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

static int act_fn(void *ctx, const ew_world *w, ew_action *out, char *err, int errlen);

static void ctx_free(mpc_ctx *m) {
    if (!m) return;
    if (m->g) ew_graph_destroy(m->g);
    if (m->model_ok) ew_fm_free(&m->model); /* before the backend: a moved model frees into it */
    if (m->be) ew_backend_destroy(m->be);
    void *bufs[] = {m->ring_f, m->ring_s, m->ras, m->plan, m->nominal, m->work, m->best, m->ref_img, m->ref_t, m->ref_pose,
                    m->hist_f, m->hist_s, m->win_f, m->win_s, m->act_buf, m->pred_f, m->pred_s, m->grad,
                    m->adam_m, m->adam_v, m->xs, m->cem_mean, m->cem_std, m->cem_x, m->cem_cost, m->cem_idx, m->z, m->colmean};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(m);
}

static void destroy_fn(void *ctx) { ctx_free(ctx); }

static void reset_fn(void *ctx, const ew_world *w) {
    (void)w;
    mpc_ctx *m = ctx;
    m->ring_n = m->ring_head = 0;
    m->have_plan = 0;
    m->have_ref = 0;
    m->hist_len = 0;
    m->since_refresh = 0;
    m->step = 0;
    ew_rng_seed(&m->rng, m->cfg.seed);
    for (int t = 0; t < m->T; t++) m->plan[t].a = m->plan[t].b = 0.0f;
}

static void observe_fn(void *ctx, const ew_world *w) {
    mpc_ctx *m = ctx;
    char err[128];
    int slot = m->ring_n < m->nc ? m->ring_n : m->ring_head;
    if (ew_raster_world(&m->rc, w, m->ras, err, (int)sizeof err)) return;
    ew_raster_to_f32(m->ras, (int)m->fsz, m->ring_f + (size_t)slot * m->fsz);
    const ew_kin_state *e = ew_world_ego(w);
    float *s = m->ring_s + (size_t)slot * 5;
    s[0] = e->x;
    s[1] = e->y;
    s[2] = e->dx;
    s[3] = e->dy;
    s[4] = e->s;
    if (m->ring_n < m->nc) m->ring_n++;
    else m->ring_head = (m->ring_head + 1) % m->nc;
}

/* The observed window, oldest first, into win_f [nc*fsz] and win_s [nc*5] (padding with the
 * oldest when fewer frames were seen). 0, or -1 when nothing was observed. */
static int window(mpc_ctx *m, float *wf, float *ws) {
    if (m->ring_n == 0) return -1;
    int start = m->ring_n < m->nc ? 0 : m->ring_head;
    int pad = m->nc - m->ring_n;
    for (int j = 0; j < m->nc; j++) {
        int k = j < pad ? 0 : j - pad;
        int slot = (start + k) % m->nc;
        memcpy(wf + (size_t)j * m->fsz, m->ring_f + (size_t)slot * m->fsz, sizeof(float) * m->fsz);
        memcpy(ws + (size_t)j * 5, m->ring_s + (size_t)slot * 5, sizeof(float) * 5);
    }
    return 0;
}

/* Reference image and pose of step t from the samples' histories at index h. */
static void combine(mpc_ctx *m, int t, int h) {
    size_t hw = (size_t)m->H * m->W;
    float *dst = m->ref_img + (size_t)t * m->fsz;
    const float inv = 1.0f / (float)m->K;
    double p[5] = {0, 0, 0, 0, 0};
    for (int k = 0; k < m->K; k++) {
        const float *src = m->hist_f + ((size_t)k * m->cap + h) * m->fsz;
        const float *s = m->hist_s + ((size_t)k * m->cap + h) * 5;
        for (int i = 0; i < 5; i++) p[i] += s[i] / m->K;
        if (k == 0) {
            for (size_t i = 0; i < m->fsz; i++) dst[i] = src[i];
            if (m->K > 1)
                for (int c = 0; c < m->C; c++)
                    if (c != 1)
                        for (size_t i = 0; i < hw; i++) dst[c * hw + i] *= inv;
        } else {
            for (int c = 0; c < m->C; c++) {
                float *d = dst + c * hw;
                const float *sc = src + c * hw;
                if (c == 1)
                    for (size_t i = 0; i < hw; i++) d[i] = sc[i] > d[i] ? sc[i] : d[i];
                else
                    for (size_t i = 0; i < hw; i++) d[i] += inv * sc[i];
            }
        }
    }
    double n = sqrt(p[2] * p[2] + p[3] * p[3]);
    if (n <= 0) n = 1, p[2] = 1, p[3] = 0;
    ew_cost_pose *r = &m->ref_pose[t];
    r->x = p[0];
    r->y = p[1];
    r->dx = p[2] / n;
    r->dy = p[3] / n;
    r->s = p[4];
}

static uint64_t mix(uint64_t a, uint64_t b) {
    uint64_t x = a ^ (b * 0x9e3779b97f4a7c15ULL);
    return ew_splitmix64(&x);
}

/* One world-model step for every sample: window = the last n_cond entries of each sample's
 * history, action a; the prediction is appended to the histories. One step per call keeps
 * the graph's arena small (a long no-tape unroll keeps every step's tensors, and copies of
 * the whole window, alive until its end: about 2.4x slower per step on this machine). */
static int predict_step(mpc_ctx *m, ew_action a, uint64_t seed, char *err, int errlen) {
    int K = m->K, nc = m->nc;
    int h0 = m->hist_len - nc; /* window start */
    for (int k = 0; k < K; k++) {
        memcpy(m->win_f + (size_t)k * nc * m->fsz, m->hist_f + ((size_t)k * m->cap + h0) * m->fsz,
               sizeof(float) * m->fsz * nc);
        memcpy(m->win_s + (size_t)k * nc * 5, m->hist_s + ((size_t)k * m->cap + h0) * 5, sizeof(float) * 5 * nc);
        m->act_buf[2 * k] = a.a;
        m->act_buf[2 * k + 1] = a.b;
    }
    char e2[200];
    if (ew_fm_predict(m->g, &m->model, K, m->win_f, m->win_s, 1, m->act_buf, 1, seed, m->pred_f, m->pred_s, e2,
                      sizeof e2)) {
        snprintf(err, (size_t)errlen, "mpc: %s", e2);
        return -1;
    }
    for (int k = 0; k < K; k++) {
        memcpy(m->hist_f + ((size_t)k * m->cap + m->hist_len) * m->fsz, m->pred_f + (size_t)k * m->fsz,
               sizeof(float) * m->fsz);
        memcpy(m->hist_s + ((size_t)k * m->cap + m->hist_len) * 5, m->pred_s + (size_t)k * 5, sizeof(float) * 5);
    }
    m->hist_len++;
    return 0;
}

/* Fresh unroll from the observed window with the nominal actions. */
static int refresh_reference(mpc_ctx *m, char *err, int errlen) {
    int T = m->T, K = m->K, nc = m->nc;
    if (window(m, m->win_f, m->win_s)) {
        snprintf(err, (size_t)errlen, "%s: no observation yet", "mpc");
        return -1;
    }
    for (int k = 0; k < K; k++) {
        memcpy(m->hist_f + (size_t)k * m->cap * m->fsz, m->win_f, sizeof(float) * m->fsz * nc);
        memcpy(m->hist_s + (size_t)k * m->cap * 5, m->win_s, sizeof(float) * 5 * nc);
    }
    m->hist_len = nc;
    for (int t = 0; t < T; t++)
        if (predict_step(m, m->nominal[t], mix(mix(m->cfg.seed, m->step), (uint64_t)t), err, errlen)) return -1;
    m->since_refresh = 0;
    for (int t = 0; t < T; t++) combine(m, t, nc + t);
    ew_cost_transpose(m->ref_img, T, m->C, m->H, m->W, m->ref_t);
    m->st.refreshes++;
    m->have_ref = 1;
    return 0;
}

/* Shift the reference by one step and predict its new last step for every sample. */
static int tail_reference(mpc_ctx *m, char *err, int errlen) {
    int T = m->T;
    if (predict_step(m, m->nominal[T - 1], mix(mix(m->cfg.seed, m->step), (uint64_t)T), err, errlen)) return -1;
    m->since_refresh++;
    /* shift: reference t is history index nc + since_refresh + t */
    memmove(m->ref_img, m->ref_img + m->fsz, sizeof(float) * m->fsz * (size_t)(T - 1));
    memmove(m->ref_t, m->ref_t + m->tsz, sizeof(float) * m->tsz * (size_t)(T - 1));
    memmove(m->ref_pose, m->ref_pose + 1, sizeof(ew_cost_pose) * (size_t)(T - 1));
    combine(m, T - 1, m->hist_len - 1);
    ew_cost_transpose(m->ref_img + (size_t)(T - 1) * m->fsz, 1, m->C, m->H, m->W, m->ref_t + (size_t)(T - 1) * m->tsz);
    m->st.tails++;
    return 0;
}

/* Static layers (markings, off-road) of every reference image from the newest observation:
 * each pixel of reference image t (rendered around ref_pose[t]) takes the bilinear sample of
 * the observed frame (rendered around the current ego pose o) at the same world point. Points
 * beyond the observed rows take the observed column mean at their lateral position (the road
 * continuing straight along the ego heading); beyond the observed columns: nothing for the
 * markings, the edge column for the off-road layer. The world model's vehicle layer is kept. */
void ew_mpc_driving_cost(ew_cost_config *c) {
    ew_cost_config_default(c);
    c->lambda_p = 10.0f;
    c->lambda_l = 20.0f;
    c->lambda_o = 10.0f;
    c->lane_ramp = 15.0f;
    c->w_action = 1.0f;
    c->w_jerk = 3.0f;
}

void ew_mpc_static_layers(const ew_cost_config *cc, float profile_m, const float *ob, const ew_kin_state *o, int T,
                          const ew_cost_pose *ref, int C, float *img, float *scratch) {
    const int H = cc->rows, W = cc->cols;
    const size_t hw = (size_t)H * W, fsz = (size_t)C * hw;
    const double px = cc->m_per_px, hr = 0.5 * H, hc = 0.5 * W;
    /* markings: lateral profile across the road, the mean over the observed rows within
     * +-profile_m of the ego (two dash periods of the default pattern: independent of the dash
     * phase) along the road direction; the road direction relative to the ego heading is the
     * angle (|angle| <= 0.12 rad, steps of 0.004) whose sheared profile is the sharpest (largest
     * sum of squares): lines parallel to the road then stay lines */
    int half = (int)lround(profile_m / px);
    int ra = (int)hr - half, rb = (int)hr + half;
    if (ra < 0) ra = 0;
    if (rb > H) rb = H;
    if (rb <= ra) ra = 0, rb = H;
    float *prof = scratch, *offm = scratch + W, *tmp = scratch + 2 * W;
    double best = -1.0, tan_best = 0.0;
    for (int k = -30; k <= 30; k++) {
        double tn = tan(0.004 * k), score = 0;
        for (int c = 0; c < W; c++) {
            double sum = 0;
            for (int r = ra; r < rb; r++) {
                double f = (hr - r - 0.5) * px;
                double u = c + f * tn / px * -1.0; /* lo = l_c + f tan: column u = c - f tan / px */
                int c0 = (int)floor(u);
                double au = u - c0;
                const float *row = ob + (size_t)r * W;
                if (c0 >= 0 && c0 < W) sum += (1.0 - au) * row[c0];
                if (c0 + 1 >= 0 && c0 + 1 < W) sum += au * row[c0 + 1];
            }
            tmp[c] = (float)(sum / (rb - ra));
            score += (double)tmp[c] * tmp[c];
        }
        if (score > best + 1e-12) {
            best = score;
            tan_best = tn;
            memcpy(prof, tmp, sizeof(float) * (size_t)W);
        }
    }
    for (int c = 0; c < W; c++) {
        double so = 0;
        for (int r = 0; r < H; r++) so += ob[2 * hw + (size_t)r * W + c];
        offm[c] = (float)(so / H);
    }
    for (int t = 0; t < T; t++) {
        const ew_cost_pose *r = &ref[t];
        float *dst = img + (size_t)t * fsz;
        /* r's pixel (ri, ci) -> o's continuous pixel coordinates (u, v), affine in (ri, ci) */
        double ex = r->x - o->x, ey = r->y - o->y;
        double hx = r->dx * o->dx + r->dy * o->dy, hy = -r->dx * o->dy + r->dy * o->dx; /* r heading in o frame */
        double f0 = ex * o->dx + ey * o->dy, l0 = -ex * o->dy + ey * o->dx;
        for (int ri = 0; ri < H; ri++) {
            double f = (hr - ri - 0.5) * px;
            for (int ci = 0; ci < W; ci++) {
                double l = (hc - ci - 0.5) * px;
                double fo = f0 + f * hx - l * hy, lo = l0 + f * hy + l * hx;
                double u = hc - lo / px - 0.5, v = hr - fo / px - 0.5; /* pixel-centre coordinates */
                int c0 = (int)floor(u), r0 = (int)floor(v);
                double au = u - c0, av = v - r0;
                size_t di = (size_t)ri * W + ci;
                double mk = 0, of = 0;
                double um = hc - (lo - fo * tan_best) / px - 0.5; /* profile column across the road */
                int m0 = (int)floor(um);
                double am = um - m0;
                if (m0 >= 0 && m0 < W) mk += (1.0 - am) * prof[m0];
                if (m0 + 1 >= 0 && m0 + 1 < W) mk += am * prof[m0 + 1];
                for (int j = 0; j < 2; j++) {
                    int cc = c0 + j;
                    double wc = j ? au : 1.0 - au;
                    if (wc == 0.0) continue;
                    cc = cc < 0 ? 0 : (cc >= W ? W - 1 : cc);
                    for (int i = 0; i < 2; i++) {
                        int rr = r0 + i;
                        double wr = i ? av : 1.0 - av;
                        if (wr == 0.0) continue;
                        of += wc * wr * ((rr < 0 || rr >= H) ? offm[cc] : ob[2 * hw + (size_t)rr * W + cc]);
                    }
                }
                dst[di] = (float)mk;
                dst[2 * hw + di] = (float)of;
            }
        }
    }
}

static void static_layers(mpc_ctx *m, const ew_kin_state *o) {
    int last = m->ring_n < m->nc ? m->ring_n - 1 : (m->ring_head + m->nc - 1) % m->nc;
    ew_mpc_static_layers(&m->cc, m->cfg.profile_m, m->ring_f + (size_t)last * m->fsz, o, m->T, m->ref_pose, m->C,
                         m->ref_img, m->colmean);
    ew_cost_transpose(m->ref_img, m->T, m->C, m->H, m->W, m->ref_t);
}

static ew_action clip_action(const ew_kin_limits *l, ew_action u) { return ew_kin_clip(l, u); }

/* ---- optimisers ----------------------------------------------------------------------------- */

static void clip_grad(float *g, int n, float clip) {
    if (clip <= 0) return;
    double s = 0;
    for (int i = 0; i < n; i++) s += (double)g[i] * g[i];
    double nrm = sqrt(s);
    if (nrm > clip) {
        float k = (float)(clip / nrm);
        for (int i = 0; i < n; i++) g[i] *= k;
    }
}

/* One projected Adam step on x (n) with gradient g; step count it (1-based). */
static void adam_step(mpc_ctx *m, float *x, const float *g, int n, int it, const ew_kin_limits *lim) {
    const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    float c1 = 1.0f - powf(b1, (float)it), c2 = 1.0f - powf(b2, (float)it);
    for (int i = 0; i < n; i++) {
        m->adam_m[i] = b1 * m->adam_m[i] + (1 - b1) * g[i];
        m->adam_v[i] = b2 * m->adam_v[i] + (1 - b2) * g[i] * g[i];
        float mh = m->adam_m[i] / c1, vh = m->adam_v[i] / c2;
        x[i] -= m->cfg.lr * mh / (sqrtf(vh) + eps);
    }
    float amin = lim->a_min / m->cfg.scale_a, amax = lim->a_max / m->cfg.scale_a, bmax = lim->b_max / m->cfg.scale_b;
    for (int t = 0; t < n / 2; t++) {
        float *a = &x[2 * t], *b = &x[2 * t + 1];
        *a = *a < amin ? amin : (*a > amax ? amax : *a);
        *b = *b < -bmax ? -bmax : (*b > bmax ? bmax : *b);
    }
}

static void x_to_u(const mpc_ctx *m, const float *x, ew_action *u) {
    for (int t = 0; t < m->T; t++) {
        u[t].a = x[2 * t] * m->cfg.scale_a;
        u[t].b = x[2 * t + 1] * m->cfg.scale_b;
    }
}

static void u_to_x(const mpc_ctx *m, const ew_action *u, float *x) {
    for (int t = 0; t < m->T; t++) {
        x[2 * t] = u[t].a / m->cfg.scale_a;
        x[2 * t + 1] = u[t].b / m->cfg.scale_b;
    }
}

static void plan_km(mpc_ctx *m, const ew_cost_problem *p, const ew_kin_limits *lim) {
    int T = m->T, n = 2 * T;
    double best = ew_cost_decoupled(&m->cc, p, m->nominal, NULL, NULL, NULL);
    m->st.cost_initial = best;
    memcpy(m->best, m->nominal, sizeof(ew_action) * T);
    u_to_x(m, m->nominal, m->xs);
    memset(m->adam_m, 0, sizeof(float) * n);
    memset(m->adam_v, 0, sizeof(float) * n);
    memcpy(m->work, m->nominal, sizeof(ew_action) * T);
    for (int it = 0; it < m->cfg.iters; it++) {
        double c = ew_cost_decoupled(&m->cc, p, m->work, m->grad, NULL, NULL);
        if (c < best) {
            best = c;
            memcpy(m->best, m->work, sizeof(ew_action) * T);
        }
        for (int t = 0; t < T; t++) {
            m->grad[2 * t] *= m->cfg.scale_a;
            m->grad[2 * t + 1] *= m->cfg.scale_b;
        }
        clip_grad(m->grad, n, m->cfg.clip);
        adam_step(m, m->xs, m->grad, n, it + 1, lim);
        x_to_u(m, m->xs, m->work);
    }
    double c = ew_cost_decoupled(&m->cc, p, m->work, NULL, NULL, NULL);
    if (c < best) {
        best = c;
        memcpy(m->best, m->work, sizeof(ew_action) * T);
    }
    m->st.cost_final = best;
    memcpy(m->plan, m->best, sizeof(ew_action) * T);
}

static void sort_by_cost(int *idx, const float *cost, int n) {
    /* insertion sort: n is ~100, deterministic and stable */
    for (int i = 0; i < n; i++) idx[i] = i;
    for (int i = 1; i < n; i++) {
        int v = idx[i], j = i - 1;
        while (j >= 0 && cost[idx[j]] > cost[v]) {
            idx[j + 1] = idx[j];
            j--;
        }
        idx[j + 1] = v;
    }
}

static void plan_cem(mpc_ctx *m, const ew_cost_problem *p, const ew_kin_limits *lim) {
    int T = m->T, n = 2 * T, N = m->cfg.cem_samples, E = m->cfg.cem_elites;
    int R = m->cfg.cem_rounds > 0 ? m->cfg.cem_rounds : m->cfg.iters;
    if (E > N) E = N;
    if (E < 1) E = 1;
    double best = ew_cost_decoupled(&m->cc, p, m->nominal, NULL, NULL, NULL);
    m->st.cost_initial = best;
    memcpy(m->best, m->nominal, sizeof(ew_action) * T);
    u_to_x(m, m->nominal, m->cem_mean);
    for (int i = 0; i < n; i++) m->cem_std[i] = 1.0f;
    float amin = lim->a_min / m->cfg.scale_a, amax = lim->a_max / m->cfg.scale_a, bmax = lim->b_max / m->cfg.scale_b;
    for (int r = 0; r < R; r++) {
        for (int s = 0; s < N; s++) {
            float *x = m->cem_x + (size_t)s * n;
            for (int i = 0; i < n; i++) {
                float v = (r == 0 && s == 0) ? m->cem_mean[i]
                                             : m->cem_mean[i] + m->cem_std[i] * (float)ew_rng_normal(&m->rng);
                float lo = (i & 1) ? -bmax : amin, hi = (i & 1) ? bmax : amax;
                x[i] = v < lo ? lo : (v > hi ? hi : v);
            }
            x_to_u(m, x, m->work);
            double c = ew_cost_decoupled(&m->cc, p, m->work, NULL, NULL, NULL);
            m->cem_cost[s] = (float)c;
            if (c < best) {
                best = c;
                memcpy(m->best, m->work, sizeof(ew_action) * T);
            }
        }
        sort_by_cost(m->cem_idx, m->cem_cost, N);
        for (int i = 0; i < n; i++) {
            double mu = 0, v = 0;
            for (int e = 0; e < E; e++) mu += m->cem_x[(size_t)m->cem_idx[e] * n + i];
            mu /= E;
            for (int e = 0; e < E; e++) {
                double d = m->cem_x[(size_t)m->cem_idx[e] * n + i] - mu;
                v += d * d;
            }
            v /= E;
            m->cem_mean[i] = (float)mu;
            m->cem_std[i] = (float)(sqrt(v) > 0.02 ? sqrt(v) : 0.02);
        }
    }
    x_to_u(m, m->cem_mean, m->work);
    double c = ew_cost_decoupled(&m->cc, p, m->work, NULL, NULL, NULL);
    if (c < best) {
        best = c;
        memcpy(m->best, m->work, sizeof(ew_action) * T);
    }
    m->st.cost_final = best;
    memcpy(m->plan, m->best, sizeof(ew_action) * T);
}

/* Coupled MPC: gradients through the world model. */
static int plan_fm(mpc_ctx *m, const ew_action *prev, const ew_kin_limits *lim, char *err, int errlen) {
    int T = m->T, K = m->K, nc = m->nc, n = 2 * T;
    const ew_fm_config *fc = &m->model.cfg;
    if (window(m, m->win_f, m->win_s)) {
        snprintf(err, (size_t)errlen, "mpc-fm: no observation yet");
        return -1;
    }
    /* replicate the window K times (rows of the batch) */
    for (int k = 1; k < K; k++) {
        memcpy(m->win_f + (size_t)k * nc * m->fsz, m->win_f, sizeof(float) * nc * m->fsz);
        memcpy(m->win_s + (size_t)k * nc * 5, m->win_s, sizeof(float) * nc * 5);
    }
    if (fc->stochastic)
        for (size_t i = 0; i < (size_t)T * K * fc->nz; i++) m->z[i] = (float)ew_rng_normal(&m->rng);
    float prevb[2 * 64];
    for (int k = 0; k < K; k++) {
        prevb[2 * k] = prev->a;
        prevb[2 * k + 1] = prev->b;
    }
    double best = INFINITY;
    memcpy(m->best, m->nominal, sizeof(ew_action) * T);
    u_to_x(m, m->nominal, m->xs);
    memset(m->adam_m, 0, sizeof(float) * n);
    memset(m->adam_v, 0, sizeof(float) * n);
    memcpy(m->work, m->nominal, sizeof(ew_action) * T);
    for (int it = 0; it <= m->cfg.iters; it++) {
        int last = it == m->cfg.iters;
        double t0 = now_ms();
        ew_graph *g = m->g;
        ew_graph_reset(g);
        ew_set_grad_enabled(g, !last);
        int fs[4] = {K, nc * m->C, m->H, m->W}, ss[3] = {K, nc, 5}, a1[3] = {1, T, 2}, ak[3] = {K, T, 2};
        int zs[3] = {T, K, fc->nz};
        ew_tensor *frames = ew_tensor_wrap(g, 4, fs, m->win_f), *states = ew_tensor_wrap(g, 3, ss, m->win_s);
        ew_tensor *ap = ew_tensor_new(g, 3, a1);
        if (!ap) {
            snprintf(err, (size_t)errlen, "mpc-fm: out of memory");
            return -1;
        }
        for (int t = 0; t < T; t++) {
            ap->data[2 * t] = m->work[t].a;
            ap->data[2 * t + 1] = m->work[t].b;
        }
        ew_requires_grad(ap, 1);
        ew_tensor *acts = K > 1 ? ew_expand(g, ap, 3, ak) : ap;
        ew_fm_inputs in = {frames, states, acts, NULL, NULL};
        ew_fm_unroll_opts uo = {0, fc->stochastic ? EW_FM_Z_GIVEN : EW_FM_Z_PRIOR, 0.0f,
                                fc->stochastic ? ew_tensor_wrap(g, 3, zs, m->z) : NULL, NULL};
        ew_fm_unroll_out out;
        ew_cost_tape_out co;
        if (ew_fm_unroll(g, &m->model, &in, &uo, &out) ||
            ew_cost_tape(g, &m->cc, K, T, out.images, out.states_phys, acts, prevb, NULL, NULL, &co)) {
            snprintf(err, (size_t)errlen, "mpc-fm: %s", ew_graph_error(g));
            ew_set_grad_enabled(g, 1);
            return -1;
        }
        double t1 = now_ms();
        m->unroll_ms += t1 - t0;
        double c = co.total->data[0];
        if (it == 0) m->st.cost_initial = c;
        if (c < best) {
            best = c;
            memcpy(m->best, m->work, sizeof(ew_action) * T);
        }
        if (!last) {
            if (ew_backward(g, co.total)) {
                snprintf(err, (size_t)errlen, "mpc-fm: %s", ew_graph_error(g));
                return -1;
            }
            float *ga = ew_tensor_grad(g, ap);
            for (int t = 0; t < T; t++) {
                m->grad[2 * t] = ga[2 * t] * m->cfg.scale_a;
                m->grad[2 * t + 1] = ga[2 * t + 1] * m->cfg.scale_b;
            }
            double t2 = now_ms();
            m->unroll_ms += t2 - t1; /* the backward pass through the model */
            clip_grad(m->grad, n, m->cfg.clip);
            adam_step(m, m->xs, m->grad, n, it + 1, lim);
            x_to_u(m, m->xs, m->work);
            m->opt_ms += now_ms() - t2;
        }
        ew_set_grad_enabled(g, 1);
    }
    m->st.cost_final = best;
    memcpy(m->plan, m->best, sizeof(ew_action) * T);
    return 0;
}

static int act_fn(void *ctx, const ew_world *w, ew_action *out, char *err, int errlen) {
    mpc_ctx *m = ctx;
    const ew_world_config *wc = ew_world_config_of(w);
    const ew_kin_limits *lim = &wc->ego_limits;
    int T = m->T;
    m->cc.ego_len = wc->ego_length;
    m->cc.ego_wid = wc->ego_width;
    m->cc.allow_reverse = lim->allow_reverse;
    if (m->ring_n == 0) observe_fn(m, w); /* act() without observe(): use the current frame */
    /* nominal: previous plan shifted by one */
    if (m->have_plan) {
        for (int t = 0; t + 1 < T; t++) m->nominal[t] = m->plan[t + 1];
        m->nominal[T - 1] = m->plan[T - 1];
    } else {
        for (int t = 0; t < T; t++) m->nominal[t].a = m->nominal[t].b = 0.0f;
    }
    /* previous action from the last two observed states */
    ew_action prev = {0.0f, 0.0f};
    if (m->ring_n >= 2) {
        int last = (m->ring_n < m->nc ? m->ring_n - 1 : (m->ring_head + m->nc - 1) % m->nc);
        int before = (last + m->nc - 1) % m->nc;
        const float *s1 = m->ring_s + (size_t)last * 5, *s0 = m->ring_s + (size_t)before * 5;
        ew_kin_state k0 = {s0[0], s0[1], s0[2], s0[3], s0[4]}, k1 = {s1[0], s1[1], s1[2], s1[3], s1[4]};
        prev = clip_action(lim, ew_kin_action_between(&k0, &k1, m->cc.dt));
    }
    const ew_kin_state *e = ew_world_ego(w);
    double t0 = now_ms(), c0 = cpu_now_ms();
    if (m->kind == KIND_FM) {
        if (plan_fm(m, &prev, lim, err, errlen)) return -1;
        m->unroll_cpu += cpu_now_ms() - c0; /* mpc-fm: all CPU time counts as model time */
    } else {
        int rc;
        if (!m->have_ref || m->cfg.refresh <= 1 || m->since_refresh + 1 >= m->cfg.refresh ||
            m->hist_len >= m->cap)
            rc = refresh_reference(m, err, errlen);
        else
            rc = tail_reference(m, err, errlen);
        if (rc) return -1;
        if (m->cfg.static_obs) static_layers(m, e);
        double t1 = now_ms(), c1 = cpu_now_ms();
        m->unroll_ms += t1 - t0;
        m->unroll_cpu += c1 - c0;
        ew_cost_problem p;
        memset(&p, 0, sizeof p);
        p.T = T;
        p.C = m->C;
        p.images = m->ref_img;
        p.images_t = m->ref_t;
        p.ref = m->ref_pose;
        p.start = (ew_cost_pose){e->x, e->y, e->dx, e->dy, e->s};
        p.prev = prev;
        p.use_ref = 1;
        if (m->kind == KIND_KM) plan_km(m, &p, lim);
        else plan_cem(m, &p, lim);
        m->opt_ms += now_ms() - t1;
        m->opt_cpu += cpu_now_ms() - c1;
    }
    m->have_plan = 1;
    m->step++;
    m->st.calls++;
    *out = clip_action(lim, m->plan[0]);
    return 0;
}

#define ALLOC(p, n)                                            \
    do {                                                       \
        size_t alloc_n_ = (size_t)(n);                         \
        (p) = calloc(alloc_n_ > 0 ? alloc_n_ : 1, sizeof *(p)); \
        if (!(p)) goto oom;                                    \
    } while (0)

double ew_mpc_optimize(const char *kind, const ew_mpc_config *c, const ew_cost_config *cc, const ew_cost_problem *p,
                       const ew_kin_limits *lim, const ew_action *u0, ew_action *plan, double *initial) {
    int k = !strcmp(kind, "mpc-km") ? KIND_KM : (!strcmp(kind, "cem") ? KIND_CEM : -1);
    int T = p->T;
    if (k < 0 || T < 1 || T > EW_COST_MAX_T || c->cem_samples < 2) return NAN;
    double r = NAN;
    mpc_ctx *m = calloc(1, sizeof *m);
    if (!m) return NAN;
    m->kind = k;
    m->cfg = *c;
    m->cc = *cc;
    m->T = T;
    ALLOC(m->plan, T);
    ALLOC(m->nominal, T);
    ALLOC(m->work, T);
    ALLOC(m->best, T);
    ALLOC(m->grad, 2 * T);
    ALLOC(m->adam_m, 2 * T);
    ALLOC(m->adam_v, 2 * T);
    ALLOC(m->xs, 2 * T);
    ALLOC(m->cem_mean, 2 * T);
    ALLOC(m->cem_std, 2 * T);
    ALLOC(m->cem_x, (size_t)c->cem_samples * 2 * T);
    ALLOC(m->cem_cost, c->cem_samples);
    ALLOC(m->cem_idx, c->cem_samples);
    ew_rng_seed(&m->rng, c->seed);
    memcpy(m->nominal, u0, sizeof(ew_action) * T);
    if (k == KIND_KM) plan_km(m, p, lim);
    else plan_cem(m, p, lim);
    memcpy(plan, m->plan, sizeof(ew_action) * T);
    if (initial) *initial = m->st.cost_initial;
    r = m->st.cost_final;
oom:
    ctx_free(m);
    return r;
}

int ew_mpc_get_stats(const ew_controller *c, ew_mpc_stats *out) {
    if (!c || c->act != act_fn || !c->ctx) return -1;
    const mpc_ctx *m = c->ctx;
    *out = m->st;
    out->unroll_ms = m->unroll_ms;
    out->opt_ms = m->opt_ms;
    out->unroll_cpu_ms = m->unroll_cpu;
    out->opt_cpu_ms = m->opt_cpu;
    out->horizon = m->T;
    out->plan = m->plan;
    return 0;
}


/* ---- read-only view (mpc.h; for planner/mpc_overlay.c) ---- */
int ew_mpc_get_view(const ew_controller *c, ew_mpc_view *out) {
    if (!c || c->act != act_fn || !c->ctx) return -1;
    const mpc_ctx *m = c->ctx;
    memset(out, 0, sizeof *out);
    *out = (ew_mpc_view){m->K, m->T, m->C, m->H, m->W, m->have_plan, m->kind != KIND_FM && m->have_ref,
                         NULL, NULL, (size_t)m->cap, m->ref_img, m->ref_t, m->ref_pose, &m->cc};
    if (out->have_ref) { /* reference step t = history index nc + since_refresh + t */
        out->frames = m->hist_f + (size_t)(m->nc + m->since_refresh) * m->fsz;
        out->states = m->hist_s + (size_t)(m->nc + m->since_refresh) * 5;
    }
    return 0;
}


int ew_mpc_controller_create(const char *kind, const ew_mpc_config *c, ew_controller *out, char *err,
                             int errlen) {
    if (out) memset(out, 0, sizeof *out);
    int k;
    if (!kind || !out || !c) {
        snprintf(err, (size_t)errlen, "mpc: bad arguments");
        return -1;
    }
    if (!strcmp(kind, "mpc-km")) k = KIND_KM;
    else if (!strcmp(kind, "mpc-fm")) k = KIND_FM;
    else if (!strcmp(kind, "cem")) k = KIND_CEM;
    else {
        snprintf(err, (size_t)errlen, "mpc: unknown controller '%s' (mpc-km, mpc-fm, cem)", kind);
        return -1;
    }
    if (c->horizon < 1 || c->horizon > EW_COST_MAX_T || c->iters < 0 || c->samples < 1 || c->samples > 64 ||
        c->lr <= 0 || c->scale_a <= 0 || c->scale_b <= 0 || (k == KIND_CEM && (c->cem_samples < 2 || c->cem_elites < 1))) {
        snprintf(err, (size_t)errlen, "%s: bad configuration (horizon 1..%d, iters >= 0, samples 1..64, lr > 0, "
                 "CEM samples >= 2, elites >= 1)", kind, EW_COST_MAX_T);
        return -1;
    }
    mpc_ctx *m = calloc(1, sizeof *m);
    if (!m) goto oom;
    m->kind = k;
    m->cfg = *c;
    const char *path = c->world_model ? c->world_model : EW_DEFAULT_WORLD_MODEL;
    m->cfg.world_model = NULL; /* not kept: the caller's string */
    char e2[256];
    if (ew_fm_load(&m->model, path, e2, sizeof e2)) {
        snprintf(err, (size_t)errlen, "%s: world model %s: %s", kind, path, e2);
        ctx_free(m);
        return -1;
    }
    m->model_ok = 1;
    const ew_fm_config *fc = &m->model.cfg;
    if (fc->channels < 3) {
        snprintf(err, (size_t)errlen, "%s: world model %s has %d channels (want >= 3)", kind, path, fc->channels);
        ctx_free(m);
        return -1;
    }
    if (c->cuda) {
        m->be = ew_backend_cuda_create(NULL, e2, sizeof e2);
        if (!m->be || ew_fm_move_to_backend(&m->model, m->be, e2, sizeof e2)) {
            snprintf(err, (size_t)errlen, "%s: --device cuda: %s", kind, e2);
            ctx_free(m);
            return -1;
        }
    } else {
        m->be = ew_backend_cpu_create(c->threads > 0 ? c->threads : 1);
    }
    if (!m->be || !(m->g = ew_graph_create(m->be, 0))) goto oom;
    if (c->cost) m->cc = *c->cost;
    else ew_mpc_driving_cost(&m->cc); /* driving weights of the MPC (planner/mpc.h) */
    ew_raster_cfg_default(&m->rc);
    m->rc.rows = fc->height;
    m->rc.cols = fc->width;
    m->cc.rows = fc->height;
    m->cc.cols = fc->width;
    m->cc.m_per_px = m->rc.m_per_px;
    m->cc.dt = fc->dt;
    m->nc = fc->n_cond;
    m->C = fc->channels;
    m->H = fc->height;
    m->W = fc->width;
    m->T = c->horizon;
    m->K = fc->stochastic ? c->samples : 1;
    if (m->C != 3) {
        snprintf(err, (size_t)errlen, "%s: world model %s predicts %d channels (want 3: markings, vehicles, off-road)",
                 kind, path, m->C);
        ctx_free(m);
        return -1;
    }
    m->fsz = (size_t)m->C * m->H * m->W;
    int refresh = m->cfg.refresh > 1 ? m->cfg.refresh : 1;
    m->cap = m->nc + m->T + refresh + 1;
    int T = m->T, K = m->K, nc = m->nc;
    ALLOC(m->ring_f, (size_t)nc * m->fsz);
    ALLOC(m->ring_s, (size_t)nc * 5);
    ALLOC(m->ras, (size_t)EW_RASTER_CHANNELS * m->H * m->W);
    ALLOC(m->plan, T);
    ALLOC(m->nominal, T);
    ALLOC(m->work, T);
    ALLOC(m->best, T);
    if (k != KIND_FM) {
        m->tsz = (size_t)m->C * m->W * ew_cost_rows_padded(m->H);
        ALLOC(m->ref_img, (size_t)T * m->fsz);
        ALLOC(m->ref_t, (size_t)T * m->tsz);
        ALLOC(m->ref_pose, T);
        ALLOC(m->hist_f, (size_t)K * m->cap * m->fsz);
        ALLOC(m->hist_s, (size_t)K * m->cap * 5);
        ALLOC(m->pred_f, (size_t)K * T * m->fsz);
        ALLOC(m->pred_s, (size_t)K * T * 5);
        ALLOC(m->colmean, 3 * (size_t)m->W);
    } else if (fc->stochastic) {
        ALLOC(m->z, (size_t)T * K * fc->nz);
    }
    ALLOC(m->win_f, (size_t)K * nc * m->fsz);
    ALLOC(m->win_s, (size_t)K * nc * 5);
    ALLOC(m->act_buf, (size_t)2 * (T > K ? T : K));
    ALLOC(m->grad, 2 * T);
    ALLOC(m->adam_m, 2 * T);
    ALLOC(m->adam_v, 2 * T);
    ALLOC(m->xs, 2 * T);
    if (k == KIND_CEM) {
        ALLOC(m->cem_mean, 2 * T);
        ALLOC(m->cem_std, 2 * T);
        ALLOC(m->cem_x, (size_t)c->cem_samples * 2 * T);
        ALLOC(m->cem_cost, c->cem_samples);
        ALLOC(m->cem_idx, c->cem_samples);
    }
    reset_fn(m, NULL);
    out->name = k == KIND_KM ? "mpc-km" : (k == KIND_FM ? "mpc-fm" : "cem");
    out->ctx = m;
    out->act = act_fn;
    out->reset = reset_fn;
    out->observe = observe_fn;
    out->destroy = destroy_fn;
    return 0;
oom:
    ctx_free(m);
    snprintf(err, (size_t)errlen, "%s: out of memory", kind);
    return -1;
}
