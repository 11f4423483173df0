/* mpc_pred.c - MPC-KM with the motion predictor as the model of other vehicles (contract in
 * mpc_pred.h). */
#include "planner/mpc_pred.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/fm_eval.h"
#include "models/motion.h"
#include "planner/cost.h"
#include "planner/mpc.h"
#include "sim/raster.h"
#include "sim/world.h"

#define MAXV 64   /* tracks / blobs per frame */
#define TRK_W 1.9f
#define YBINS 600 /* 0.1 m bins: 60 m across */
#define MAXLANES 8

void ew_mpc_pred_config_default(ew_mpc_pred_config *c) {
    memset(c, 0, sizeof *c);
    c->horizon = 30;
    c->iters = 10;
    c->threads = 1;
    c->seed = 1;
    c->sigma_scale = 1.0f;
    c->min_sigma = 0.1f;
    c->profile_m = 12.0f;
    c->line_hist = 1;
}

typedef struct {
    float x[EW_MOTION_HIST], y[EW_MOTION_HIST]; /* world positions, oldest first */
    int n;                                      /* stored (<= EW_MOTION_HIST) */
    int seen;                                   /* frames seen in all */
    float area;                                 /* m^2, last blob */
} track;

typedef struct {
    ew_mpc_pred_config cfg;
    ew_motion model;
    int model_ok;
    ew_backend *be;
    ew_graph *g;
    ew_cost_config cc;
    ew_raster_cfg rc;
    int H, W, T;
    size_t fsz; /* 3 * H * W */
    uint8_t *ras, *grey;
    float *obs;       /* newest observed frame, channels 0-2 as floats */
    int have_obs;
    float ego_s[2][5]; /* the last two observed ego states (newest in [1]) */
    int n_states;
    track trk[MAXV];
    int ntrk;
    float yhist[YBINS]; /* world-y histogram of every detection this episode (lane centres) */
    float ylo;          /* its first bin's lower edge (set at the first observation) */
    int have_ylo;
    int *labels;
    ew_blob blobs[MAXV];
    /* plan and reference */
    ew_action *plan, *nominal;
    int have_plan;
    ew_cost_pose *ref;
    float *img, *img_t, *scratch;
    /* predictions of the last act() (the view) */
    ew_motion_sample *smp;
    int *smp_of;
    float *pout;                    /* predictor output [MAXV][FUT][5] (road frame) */
    float vpred[MAXV * EW_MOTION_FUT * 5], vlast[MAXV * 2], vsize[MAXV * 2], vhist[MAXV * EW_MOTION_HIST * 2];
    int vseen[MAXV], nview;
} pred_ctx;

static void ctx_free(pred_ctx *m) {
    if (!m) return;
    if (m->g) ew_graph_destroy(m->g);
    if (m->be) ew_backend_destroy(m->be);
    if (m->model_ok) ew_motion_free(&m->model);
    void *bufs[] = {m->ras, m->grey, m->obs, m->labels, m->plan, m->nominal, m->ref, m->img, m->img_t, m->scratch,
                    m->smp, m->smp_of, m->pout};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(m);
}

static void destroy_fn(void *ctx) { ctx_free(ctx); }

static void reset_fn(void *ctx, const ew_world *w) {
    (void)w;
    pred_ctx *m = ctx;
    m->have_obs = 0;
    m->n_states = 0;
    m->ntrk = 0;
    m->have_ylo = 0;
    memset(m->yhist, 0, sizeof m->yhist);
    m->have_plan = 0;
    m->nview = 0;
    for (int t = 0; t < m->T; t++) m->plan[t].a = m->plan[t].b = 0.0f;
}

/* Links the blobs of a new frame (world positions bx, by) to the tracks (mpc_pred.h). */
static void link_tracks(pred_ctx *m, const float *bx, const float *by, const float *barea, int nb, float hx,
                        float hy) {
    int dclaim[MAXV] = {0}, tmatch[MAXV];
    for (int i = 0; i < m->ntrk; i++) tmatch[i] = -1;
    float gx[MAXV], gy[MAXV];
    for (int i = 0; i < m->ntrk; i++) {
        const track *t = &m->trk[i];
        int l = t->n - 1;
        gx[i] = t->x[l], gy[i] = t->y[l];
        if (t->n >= 2) gx[i] += t->x[l] - t->x[l - 1], gy[i] += t->y[l] - t->y[l - 1];
    }
    for (;;) { /* closest pairs first */
        int bi = -1, bj = -1;
        float best = INFINITY;
        for (int i = 0; i < m->ntrk; i++) {
            if (tmatch[i] >= 0) continue;
            for (int j = 0; j < nb; j++) {
                if (dclaim[j]) continue;
                float ex = bx[j] - gx[i], ey = by[j] - gy[i];
                float along = ex * hx + ey * hy, across = -ex * hy + ey * hx;
                if (fabsf(along) >= 4.0f || fabsf(across) >= 1.2f) continue;
                float d = along * along + across * across;
                if (d < best) best = d, bi = i, bj = j;
            }
        }
        if (bi < 0) break;
        tmatch[bi] = bj;
        dclaim[bj] = 1;
    }
    track nt[MAXV];
    int n = 0;
    for (int i = 0; i < m->ntrk; i++) {
        if (tmatch[i] < 0) continue; /* unmatched tracks end */
        track t = m->trk[i];
        int j = tmatch[i];
        if (t.n == EW_MOTION_HIST) {
            memmove(t.x, t.x + 1, sizeof(float) * (EW_MOTION_HIST - 1));
            memmove(t.y, t.y + 1, sizeof(float) * (EW_MOTION_HIST - 1));
            t.n--;
        }
        t.x[t.n] = bx[j], t.y[t.n] = by[j], t.n++;
        t.seen++;
        t.area = barea[j];
        nt[n++] = t;
    }
    for (int j = 0; j < nb && n < MAXV; j++) {
        if (dclaim[j]) continue;
        track t;
        memset(&t, 0, sizeof t);
        t.x[0] = bx[j], t.y[0] = by[j], t.n = 1, t.seen = 1, t.area = barea[j];
        nt[n++] = t;
    }
    memcpy(m->trk, nt, sizeof(track) * (size_t)n);
    m->ntrk = n;
}

static void observe_fn(void *ctx, const ew_world *w) {
    pred_ctx *m = ctx;
    char err[128];
    if (ew_raster_world(&m->rc, w, m->ras, err, (int)sizeof err)) return;
    const size_t hw = (size_t)m->H * m->W;
    ew_raster_to_f32(m->ras, (int)(3 * hw), m->obs);
    ew_raster_grey(m->ras, m->H, m->W, m->grey);
    m->have_obs = 1;
    const ew_kin_state *e = ew_world_ego(w);
    memmove(m->ego_s[0], m->ego_s[1], sizeof m->ego_s[0]);
    m->ego_s[1][0] = e->x, m->ego_s[1][1] = e->y, m->ego_s[1][2] = e->dx, m->ego_s[1][3] = e->dy, m->ego_s[1][4] = e->s;
    if (m->n_states < 2) m->n_states++;
    /* blobs of the vehicle channel -> world */
    int nb = ew_find_blobs(m->obs + hw, m->H, m->W, 0.5f, 2, m->rc.m_per_px, m->labels, m->blobs, MAXV);
    float bx[MAXV], by[MAXV], ba[MAXV];
    float mpp2 = m->rc.m_per_px * m->rc.m_per_px;
    for (int j = 0; j < nb; j++) {
        float f = m->blobs[j].f, l = m->blobs[j].l;
        bx[j] = e->x + f * e->dx - l * e->dy;
        by[j] = e->y + f * e->dy + l * e->dx;
        ba[j] = m->blobs[j].mass * mpp2;
    }
    link_tracks(m, bx, by, ba, nb, e->dx, e->dy);
    if (!m->have_ylo) m->ylo = e->y - 0.5f * YBINS * 0.1f, m->have_ylo = 1;
    for (int j = 0; j < nb; j++) {
        int k = (int)floorf((by[j] - m->ylo) / 0.1f);
        if (k >= 0 && k < YBINS) m->yhist[k] += 1.0f;
    }
}

#ifdef EW_MOTION_CTX
/* Lane centres (ascending, world y) from where the detected vehicles were this episode: peaks
 * of the smoothed histogram at least 20 % of the highest and 2 m apart, refined by the mean
 * over +-1 m (the rule models/motion_data.c uses on its video). */
static int lane_centres(const pred_ctx *m, float *c) {
    float sm[YBINS], mx = 0.0f;
    int n = 0;
    for (int b = 0; b < YBINS; b++) {
        sm[b] = 0.0f;
        for (int d = -5; d <= 5; d++)
            if (b + d >= 0 && b + d < YBINS) sm[b] += m->yhist[b + d];
        if (sm[b] > mx) mx = sm[b];
    }
    if (mx <= 0.0f) return 0;
    while (n < MAXLANES) {
        int bb = -1;
        float bv = 0.2f * mx;
        for (int b = 0; b < YBINS; b++) {
            int ok = sm[b] >= bv;
            for (int k = 0; k < n && ok; k++) ok = fabsf(m->ylo + (b + 0.5f) * 0.1f - c[k]) >= 2.0f;
            if (ok) bv = sm[b], bb = b;
        }
        if (bb < 0) break;
        double sw = 0, sy = 0;
        for (int d = -10; d <= 10; d++)
            if (bb + d >= 0 && bb + d < YBINS) sw += m->yhist[bb + d], sy += m->yhist[bb + d] * (m->ylo + (bb + d + 0.5) * 0.1);
        c[n++] = sw > 0 ? (float)(sy / sw) : m->ylo + (bb + 0.5f) * 0.1f;
    }
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && c[j] < c[j - 1]; j--) {
            float t = c[j];
            c[j] = c[j - 1], c[j - 1] = t;
        }
    return n;
}

static int nearest_lane(const float *c, int nl, float y) {
    int b = 0;
    for (int k = 1; k < nl; k++)
        if (fabsf(y - c[k]) < fabsf(y - c[b])) b = k;
    return b;
}

/* The predictor's context (models/motion.h EW_MOTION_CTX) of track i, whose sample s holds
 * its history in the road frame of e (X along the ego heading, Y left, origin at the ego);
 * lanes in world y (the road along the world x axis). */
static void make_ctx(const pred_ctx *m, const ew_kin_state *e, int i, const float *lc, int nl, ew_motion_sample *s) {
    const float dt = m->cc.dt;
    memset(s->ctx, 0, sizeof s->ctx);
    double mx = 0, my = 0, num = 0, den = 0, tm = 0.5 * (EW_MOTION_HIST - 1);
    for (int t = 0; t < EW_MOTION_HIST; t++) mx += s->hist[t][0], my += s->hist[t][1];
    mx /= EW_MOTION_HIST, my /= EW_MOTION_HIST;
    for (int t = 0; t < EW_MOTION_HIST; t++) num += (t - tm) * (s->hist[t][0] - mx), den += (t - tm) * (t - tm);
    float vx = (float)(num / den / dt), x = (float)(mx + num / den * tm);
    s->ctx[3] = vx / 30.0f;
    /* distances to the video's front and rear edges: the predictor's camera saw 200 m, so they
     * always summed to 2 in its training; the ego raster has no such edges: the middle of
     * that view (100 m from each edge) */
    s->ctx[4] = 1.0f;
    s->ctx[5] = 1.0f;
    for (int j = 0; j < 3; j++) s->ctx[6 + 6 * j] = s->ctx[9 + 6 * j] = 2.0f;
    if (nl < 1) return;
    const track *ti = &m->trk[i];
    float wy = ti->y[ti->n - 1];
    int own = nearest_lane(lc, nl, wy);
    s->ctx[0] = (wy - lc[own]) / 1.85f;
    s->ctx[1] = own + 1 < nl;
    s->ctx[2] = own > 0;
    for (int k = 0; k < m->ntrk; k++) {
        if (k == i) continue;
        const track *tk = &m->trk[k];
        int l = nearest_lane(lc, nl, tk->y[tk->n - 1]), j = l == own ? 0 : (l == own + 1 ? 1 : (l == own - 1 ? 2 : -1));
        if (j < 0) continue;
        float ex = tk->x[tk->n - 1] - e->x, ey = tk->y[tk->n - 1] - e->y;
        float X = ex * e->dx + ey * e->dy;
        int kk = tk->n - 1 < 5 ? tk->n - 1 : 5;
        float nvx = vx;
        if (kk > 0) {
            float ox = tk->x[tk->n - 1 - kk] - e->x, oy = tk->y[tk->n - 1 - kk] - e->y;
            nvx = (X - (ox * e->dx + oy * e->dy)) / ((float)kk * dt);
        }
        float dx = X - x, gap = fabsf(dx) / 50.0f;
        float *f = s->ctx + 6 + 6 * j + (dx >= 0.0f ? 0 : 3);
        if (gap > 2.0f) gap = 2.0f;
        if (!f[2] || gap < f[0]) f[0] = gap, f[1] = (nvx - vx) / 10.0f, f[2] = 1.0f;
    }
}
#endif

/* Bilinear sample of the grey composite (0..1) at ego-frame point (f, l); 0 outside. */
static float grey_at(const pred_ctx *m, float f, float l) {
    float mpp = m->rc.m_per_px;
    float u = 0.5f * m->W - l / mpp - 0.5f, v = 0.5f * m->H - f / mpp - 0.5f;
    int c0 = (int)floorf(u), r0 = (int)floorf(v);
    float au = u - c0, av = v - r0, s = 0.0f;
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++) {
            int r = r0 + i, c = c0 + j;
            if (r < 0 || r >= m->H || c < 0 || c >= m->W) continue;
            s += (i ? av : 1 - av) * (j ? au : 1 - au) * m->grey[(size_t)r * m->W + c];
        }
    return s / 255.0f;
}

/* 1-D occupancy of a box of half-length h blurred by a Gaussian of std s, at offset a. */
static float box_blur(float a, float h, float s) {
    const float k = 0.70710678f / s;
    return 0.5f * (erff((a + h) * k) - erff((a - h) * k));
}

float ew_mpc_pred_occupancy(float a, float b, float len, float wid, float sa, float sb) {
    return box_blur(a, 0.5f * len, sa) * box_blur(b, 0.5f * wid, sb);
}

/* Predictions of every track (road frame of the ego pose e) into m->pout; returns 0 or -1. */
static int predict_tracks(pred_ctx *m, const ew_kin_state *e, char *err, int errlen) {
    const float hx = e->dx, hy = e->dy, dt = m->cc.dt;
    int ns = 0;
#ifdef EW_MOTION_CTX
    float lc[MAXLANES];
    int nl = lane_centres(m, lc);
#endif
    for (int i = 0; i < m->ntrk; i++) {
        const track *t = &m->trk[i];
        m->smp_of[i] = -1;
        if (t->n < 2) continue;
        ew_motion_sample *s = &m->smp[ns];
        memset(s, 0, sizeof *s);
        float X[EW_MOTION_HIST] = {0}, Y[EW_MOTION_HIST] = {0};
        for (int j = 0; j < t->n; j++) {
            float ex = t->x[j] - e->x, ey = t->y[j] - e->y;
            X[j] = ex * hx + ey * hy;
            Y[j] = -ex * hy + ey * hx;
        }
        float vx = (X[t->n - 1] - X[0]) / (float)(t->n - 1), vy = (Y[t->n - 1] - Y[0]) / (float)(t->n - 1);
        int pad = EW_MOTION_HIST - t->n;
        for (int j = 0; j < EW_MOTION_HIST; j++) {
            if (j >= pad) s->hist[j][0] = X[j - pad], s->hist[j][1] = Y[j - pad];
            else s->hist[j][0] = X[0] - vx * (float)(pad - j), s->hist[j][1] = Y[0] - vy * (float)(pad - j);
        }
            float x9 = s->hist[EW_MOTION_HIST - 1][0], y9 = s->hist[EW_MOTION_HIST - 1][1];
        for (int r = 0; r < EW_MOTION_CROP_R; r++)
            for (int c = 0; c < EW_MOTION_CROP_C; c++) {
                float sum = 0.0f;
                for (int dr = 0; dr < 2; dr++)
                    for (int dc = 0; dc < 4; dc++)
                        sum += grey_at(m, x9 - 10.0f + 0.5f * ((float)(4 * c + dc) + 0.5f),
                                       y9 + 6.0f - 0.5f * ((float)(2 * r + dr) + 0.5f));
                s->crop[r * EW_MOTION_CROP_C + c] = sum / 8.0f;
            }
        if (m->cfg.line_hist) /* the least-squares line of the history (mpc_pred.h) */
            for (int c2 = 0; c2 < 2; c2++) {
                const double tm = 0.5 * (EW_MOTION_HIST - 1);
                double mv = 0, num = 0, den = 0;
                for (int j = 0; j < EW_MOTION_HIST; j++) mv += s->hist[j][c2];
                mv /= EW_MOTION_HIST;
                for (int j = 0; j < EW_MOTION_HIST; j++) num += (j - tm) * (s->hist[j][c2] - mv), den += (j - tm) * (j - tm);
                for (int j = 0; j < EW_MOTION_HIST; j++) s->hist[j][c2] = (float)(mv + num / den * (j - tm));
            }
#ifdef EW_MOTION_CTX
        make_ctx(m, e, i, lc, nl, s);
#endif
        m->smp_of[i] = ns++;
    }
    if (ns > 0) {
        char e2[200];
        if (ew_motion_predict(&m->model, m->g, m->smp, ns, m->pout, e2, sizeof e2)) {
            snprintf(err, (size_t)errlen, "mpc-pred: %s", e2);
            return -1;
        }
    }
    (void)dt;
    return 0;
}

/* Gaussian of track i at horizon k (0-based, time (k+1) dt) in the road frame: mean, stds. */
static void track_gauss(const pred_ctx *m, const ew_kin_state *e, int i, int k, float *mx, float *my, float *sx,
                        float *sy, float *rho) {
    const track *t = &m->trk[i];
    if (m->smp_of[i] >= 0) {
        const float *o = m->pout + ((size_t)m->smp_of[i] * EW_MOTION_FUT + (size_t)k) * 5;
        *mx = o[0], *my = o[1], *sx = o[2], *sy = o[3], *rho = o[4];
        return;
    }
    /* seen once: moving with the ego */
    float ex = t->x[0] - e->x, ey = t->y[0] - e->y, tau = (float)(k + 1) * m->cc.dt;
    *mx = ex * e->dx + ey * e->dy + e->s * tau;
    *my = -ex * e->dy + ey * e->dx;
    *sx = 0.3f + 1.5f * tau;
    *sy = 0.2f + 0.3f * tau;
    *rho = 0.0f;
}

/* Vehicle layer of the reference images: occupancy of the blurred boxes (mpc_pred.h). */
static void render_vehicles(pred_ctx *m, const ew_kin_state *e) {
    const int H = m->H, W = m->W;
    const size_t hw = (size_t)H * W;
    const float px = m->rc.m_per_px, hr = 0.5f * H, hc = 0.5f * W;
    const float sc = m->cfg.sigma_scale, smin = m->cfg.min_sigma;
    m->nview = m->ntrk;
    for (int t = 0; t < m->T; t++) {
        float *dst = m->img + (size_t)t * m->fsz + hw;
        memset(dst, 0, sizeof(float) * hw);
        const ew_cost_pose *r = &m->ref[t];
        /* r's frame in the road frame of e: origin (ox, oy), heading (cx, cy) */
        float ex = (float)(r->x - e->x), ey = (float)(r->y - e->y);
        float ox = ex * e->dx + ey * e->dy, oy = -ex * e->dy + ey * e->dx;
        float cx = (float)(r->dx * e->dx + r->dy * e->dy), cy = (float)(-r->dx * e->dy + r->dy * e->dx);
        for (int i = 0; i < m->ntrk; i++) {
            float mx, my, sx, sy, rho;
            track_gauss(m, e, i, t, &mx, &my, &sx, &sy, &rho);
            float len = m->trk[i].area / TRK_W;
            len = len < 3.5f ? 3.5f : (len > 16.0f ? 16.0f : len);
            sx = fmaxf(sx * sc, smin), sy = fmaxf(sy * sc, smin);
            float ha = 0.5f * len, hb = 0.5f * TRK_W;
            float ra = ha + 3.0f * sx, rb = hb + 3.0f * sy; /* support */
            /* the support's corners in r's image -> pixel bounding box */
            float umin = 1e9f, umax = -1e9f, vmin = 1e9f, vmax = -1e9f;
            for (int q = 0; q < 4; q++) {
                float X = mx + ((q & 1) ? ra : -ra) - ox, Y = my + ((q & 2) ? rb : -rb) - oy;
                float f = X * cx + Y * cy, l = -X * cy + Y * cx;
                float u = hc - l / px, v = hr - f / px;
                umin = fminf(umin, u), umax = fmaxf(umax, u), vmin = fminf(vmin, v), vmax = fmaxf(vmax, v);
            }
            int c0 = (int)floorf(umin), c1 = (int)ceilf(umax), r0 = (int)floorf(vmin), r1 = (int)ceilf(vmax);
            if (c0 < 0) c0 = 0;
            if (r0 < 0) r0 = 0;
            if (c1 > W) c1 = W;
            if (r1 > H) r1 = H;
            for (int ri = r0; ri < r1; ri++) {
                float f = (hr - ri - 0.5f) * px;
                for (int ci = c0; ci < c1; ci++) {
                    float l = (hc - ci - 0.5f) * px;
                    float X = ox + f * cx - l * cy, Y = oy + f * cy + l * cx; /* road frame */
                    float a = X - mx, b = Y - my;
                    if (fabsf(a) > ra || fabsf(b) > rb) continue;
                    float occ = ew_mpc_pred_occupancy(a, b, len, TRK_W, sx, sy);
                    float *d = dst + (size_t)ri * W + ci;
                    if (occ > *d) *d = occ;
                }
            }
            if (t == 0 && i < MAXV) { /* the view: world coordinates */
                const track *tr = &m->trk[i];
                m->vlast[2 * i] = tr->x[tr->n - 1], m->vlast[2 * i + 1] = tr->y[tr->n - 1];
                m->vsize[2 * i] = len, m->vsize[2 * i + 1] = TRK_W;
                m->vseen[i] = tr->seen;
                for (int j = 0; j < EW_MOTION_HIST; j++) {
                    float hx0 = 0.0f, hy0 = 0.0f;
                    if (m->smp_of[i] >= 0)
                        hx0 = m->smp[m->smp_of[i]].hist[j][0], hy0 = m->smp[m->smp_of[i]].hist[j][1];
                    else {
                        float ex = tr->x[0] - e->x, ey = tr->y[0] - e->y;
                        hx0 = ex * e->dx + ey * e->dy, hy0 = -ex * e->dy + ey * e->dx;
                    }
                    m->vhist[(i * EW_MOTION_HIST + j) * 2] = e->x + hx0 * e->dx - hy0 * e->dy;
                    m->vhist[(i * EW_MOTION_HIST + j) * 2 + 1] = e->y + hx0 * e->dy + hy0 * e->dx;
                }
                for (int k = 0; k < EW_MOTION_FUT; k++) {
                    float gx, gy, gsx, gsy, gr;
                    track_gauss(m, e, i, k, &gx, &gy, &gsx, &gsy, &gr);
                    gsx *= sc, gsy *= sc;
                    /* road (along h, left n) -> world: covariance R S R^T */
                    float hx = e->dx, hy = e->dy;
                    float sxx = gsx * gsx, syy = gsy * gsy, sxy = gr * gsx * gsy;
                    float wxx = hx * hx * sxx - 2 * hx * hy * sxy + hy * hy * syy;
                    float wyy = hy * hy * sxx + 2 * hx * hy * sxy + hx * hx * syy;
                    float wxy = hx * hy * sxx + (hx * hx - hy * hy) * sxy - hx * hy * syy;
                    float *o = m->vpred + ((size_t)i * EW_MOTION_FUT + k) * 5;
                    o[0] = e->x + gx * hx - gy * hy;
                    o[1] = e->y + gx * hy + gy * hx;
                    o[2] = sqrtf(fmaxf(wxx, 0.0f));
                    o[3] = sqrtf(fmaxf(wyy, 0.0f));
                    o[4] = o[2] > 0 && o[3] > 0 ? wxy / (o[2] * o[3]) : 0.0f;
                }
            }
        }
    }
}

static int act_fn(void *ctx, const ew_world *w, ew_action *out, char *err, int errlen) {
    pred_ctx *m = ctx;
    const ew_world_config *wc = ew_world_config_of(w);
    const ew_kin_limits *lim = &wc->ego_limits;
    const int T = m->T;
    m->cc.ego_len = wc->ego_length;
    m->cc.ego_wid = wc->ego_width;
    m->cc.allow_reverse = lim->allow_reverse;
    m->cc.dt = wc->dt;
    if (!m->have_obs) observe_fn(m, w); /* act() without observe(): use the current frame */
    if (!m->have_obs) {
        snprintf(err, (size_t)errlen, "mpc-pred: the raster of the world failed");
        return -1;
    }
    if (m->have_plan) {
        for (int t = 0; t + 1 < T; t++) m->nominal[t] = m->plan[t + 1];
        m->nominal[T - 1] = m->plan[T - 1];
    } else {
        for (int t = 0; t < T; t++) m->nominal[t].a = m->nominal[t].b = 0.0f;
    }
    ew_action prev = {0.0f, 0.0f};
    if (m->n_states >= 2) {
        const float *s1 = m->ego_s[1], *s0 = m->ego_s[0];
        ew_kin_state k0 = {s0[0], s0[1], s0[2], s0[3], s0[4]}, k1 = {s1[0], s1[1], s1[2], s1[3], s1[4]};
        prev = ew_kin_clip(lim, ew_kin_action_between(&k0, &k1, m->cc.dt));
    }
    const ew_kin_state *e = ew_world_ego(w);
    ew_cost_pose q = {e->x, e->y, e->dx, e->dy, e->s};
    for (int t = 0; t < T; t++) {
        ew_cost_kin_step(&q, m->nominal[t].a, m->nominal[t].b, m->cc.dt, m->cc.allow_reverse, &m->ref[t]);
        q = m->ref[t];
    }
    if (predict_tracks(m, e, err, errlen)) return -1;
    ew_mpc_static_layers(&m->cc, m->cfg.profile_m, m->obs, e, T, m->ref, 3, m->img, m->scratch);
    render_vehicles(m, e);
    ew_cost_transpose(m->img, T, 3, m->H, m->W, m->img_t);
    ew_cost_problem p;
    memset(&p, 0, sizeof p);
    p.T = T;
    p.C = 3;
    p.images = m->img;
    p.images_t = m->img_t;
    p.ref = m->ref;
    p.start = (ew_cost_pose){e->x, e->y, e->dx, e->dy, e->s};
    p.prev = prev;
    p.use_ref = 1;
    ew_mpc_config mc;
    ew_mpc_config_default(&mc);
    mc.horizon = T;
    mc.iters = m->cfg.iters;
    mc.seed = m->cfg.seed;
    double c = ew_mpc_optimize("mpc-km", &mc, &m->cc, &p, lim, m->nominal, m->plan, NULL);
    if (!isfinite(c)) {
        snprintf(err, (size_t)errlen, "mpc-pred: the optimiser failed (out of memory?)");
        return -1;
    }
    m->have_plan = 1;
    *out = ew_kin_clip(lim, m->plan[0]);
    return 0;
}

#define ALLOC(p, n)                                             \
    do {                                                        \
        size_t alloc_n_ = (size_t)(n);                          \
        (p) = calloc(alloc_n_ > 0 ? alloc_n_ : 1, sizeof *(p)); \
        if (!(p)) goto oom;                                     \
    } while (0)

int ew_mpc_pred_controller_create(const ew_mpc_pred_config *c, ew_controller *out, char *err, int errlen) {
    if (out) memset(out, 0, sizeof *out);
    if (!c || !out) {
        snprintf(err, (size_t)errlen, "mpc-pred: bad arguments");
        return -1;
    }
    if (!c->predictor || !c->predictor[0]) {
        snprintf(err, (size_t)errlen, "mpc-pred: no predictor checkpoint given (mpc-pred:FILE)");
        return -1;
    }
    if (c->horizon < 1 || c->horizon > EW_MOTION_FUT || c->iters < 0 || !(c->sigma_scale > 0) ||
        !(c->min_sigma > 0) || !(c->profile_m > 0)) {
        snprintf(err, (size_t)errlen, "mpc-pred: bad configuration (horizon 1..%d, iters >= 0, sigma_scale > 0, "
                 "min_sigma > 0, profile_m > 0)", EW_MOTION_FUT);
        return -1;
    }
    pred_ctx *m = calloc(1, sizeof *m);
    if (!m) goto oom;
    m->cfg = *c;
    m->cfg.predictor = NULL; /* not kept: the caller's string */
    char e2[256];
    if (ew_motion_load(&m->model, c->predictor, NULL, e2, sizeof e2)) {
        snprintf(err, (size_t)errlen, "mpc-pred: predictor %s: %s", c->predictor, e2);
        ctx_free(m);
        return -1;
    }
    m->model_ok = 1;
    m->be = ew_backend_cpu_create(c->threads > 0 ? c->threads : 1);
    if (!m->be || !(m->g = ew_graph_create(m->be, 0))) goto oom;
    ew_raster_cfg_default(&m->rc);
    ew_mpc_driving_cost(&m->cc);
    m->cc.rows = m->rc.rows;
    m->cc.cols = m->rc.cols;
    m->cc.m_per_px = m->rc.m_per_px;
    m->H = m->rc.rows;
    m->W = m->rc.cols;
    m->T = c->horizon;
    m->fsz = (size_t)3 * m->H * m->W;
    ALLOC(m->ras, (size_t)EW_RASTER_CHANNELS * m->H * m->W);
    ALLOC(m->grey, (size_t)m->H * m->W);
    ALLOC(m->obs, m->fsz);
    ALLOC(m->labels, (size_t)m->H * m->W);
    ALLOC(m->plan, m->T);
    ALLOC(m->nominal, m->T);
    ALLOC(m->ref, m->T);
    ALLOC(m->img, (size_t)m->T * m->fsz);
    ALLOC(m->img_t, (size_t)m->T * 3 * m->W * ew_cost_rows_padded(m->H));
    ALLOC(m->scratch, 3 * (size_t)m->W);
    ALLOC(m->smp, MAXV);
    ALLOC(m->smp_of, MAXV);
    ALLOC(m->pout, (size_t)MAXV * EW_MOTION_FUT * 5);
    reset_fn(m, NULL);
    out->name = "mpc-pred";
    out->ctx = m;
    out->act = act_fn;
    out->reset = reset_fn;
    out->observe = observe_fn;
    out->destroy = destroy_fn;
    return 0;
oom:
    ctx_free(m);
    snprintf(err, (size_t)errlen, "mpc-pred: out of memory");
    return -1;
}

int ew_mpc_pred_get_view(const ew_controller *c, ew_mpc_pred_view *out) {
    if (!c || c->act != act_fn || !c->ctx) return -1;
    const pred_ctx *m = c->ctx;
    memset(out, 0, sizeof *out);
    out->n = m->have_plan ? m->nview : 0;
    out->horizon = m->T;
    out->rows = m->H;
    out->cols = m->W;
    out->m_per_px = m->rc.m_per_px;
    out->pred = m->vpred;
    out->last = m->vlast;
    out->size = m->vsize;
    out->hist = m->vhist;
    out->seen = m->vseen;
    out->ref_img = m->img;
    out->plan = m->plan;
    out->have_plan = m->have_plan;
    return 0;
}

int ew_mpc_pred_overlay_fill(void *ctx, const struct ew_world *w, ew_overlay *ov, char *err, int errlen) {
    const ew_controller *c = ctx;
    ew_mpc_pred_view v;
    if (ew_mpc_pred_get_view(c, &v)) {
        snprintf(err, (size_t)errlen, "mpc-pred overlay: the controller is not mpc-pred");
        return -1;
    }
    ew_overlay_clear(ov);
    snprintf(ov->source, sizeof ov->source, "mpc-pred");
    const ew_world_config *wc = ew_world_config_of(w);
    ov->dt = wc->dt;
    ov->m_per_px = v.m_per_px;
    if (!v.have_plan) return 0;
    /* the plan from the ego now: actions 1..T-1, the last repeated */
    const ew_kin_state *e = ew_world_ego(w);
    int T = v.horizon < EW_OV_MAX_STEPS ? v.horizon : EW_OV_MAX_STEPS;
    ov->plan[0] = *e;
    for (int t = 0; t < T; t++) {
        int k = t + 1 < v.horizon ? t + 1 : v.horizon - 1;
        ew_kin_step(&ov->plan[t], ew_kin_clip(&wc->ego_limits, v.plan[k]), wc->dt, wc->ego_limits.allow_reverse,
                    &ov->plan[t + 1]);
    }
    ov->n_plan = T + 1;
    int np = 0;
    for (int i = 0; i < v.n && ov->n_agents < EW_OV_MAX_AGENTS; i++) {
        ew_overlay_agent *ag = &ov->agents[ov->n_agents++];
        ag->id = 0;
        ag->n = EW_MOTION_FUT < EW_OV_MAX_STEPS ? EW_MOTION_FUT : EW_OV_MAX_STEPS;
        for (int k = 0; k < ag->n; k++) {
            const float *o = v.pred + ((size_t)i * EW_MOTION_FUT + k) * 5;
            ag->mean[k].x = o[0];
            ag->mean[k].y = o[1];
            ag->cov[k][0] = o[2] * o[2];
            ag->cov[k][1] = o[4] * o[2] * o[3];
            ag->cov[k][2] = o[3] * o[3];
        }
        np += v.seen[i] >= 2;
    }
    ew_overlay_set_cost(ov, "tracked", (float)v.n);
    ew_overlay_set_cost(ov, "predicted", (float)np);
    return 0;
}
