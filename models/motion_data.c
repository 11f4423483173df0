/* motion_data.c - tracklets and predictor samples from traffic video (see motion_data.h). */
#include "models/motion_data.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WIN (EW_MOTION_HIST + EW_MOTION_FUT)
#define MAXD 512

static int failf(char *err, size_t errsz, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errsz, fmt, ap);
    va_end(ap);
    return -1;
}

void ew_motion_set_free(ew_motion_set *s) {
    if (!s) return;
    free(s->s);
    free(s->flags);
    memset(s, 0, sizeof *s);
}

int ew_motion_plausible(const ew_motion_sample *s, float max_dy, float max_ddx) {
    float p[WIN][2];
    memcpy(p, s->hist, sizeof s->hist);
    memcpy(p + EW_MOTION_HIST, s->fut, sizeof s->fut);
    for (int t = 1; t < WIN; t++) {
        if (fabsf(p[t][1] - p[t - 1][1]) > max_dy) return 0;
        if (t >= 2 && fabsf((p[t][0] - p[t - 1][0]) - (p[t - 1][0] - p[t - 2][0])) > max_ddx) return 0;
    }
    return 1;
}

int ew_motion_inside(const ew_motion_sample *s, float xa, float xb, float margin) {
    for (int t = 0; t < EW_MOTION_HIST; t++)
        if (!(s->hist[t][0] >= xa + margin && s->hist[t][0] <= xb - margin)) return 0;
    for (int t = 0; t < EW_MOTION_FUT; t++)
        if (!(s->fut[t][0] >= xa + margin && s->fut[t][0] <= xb - margin)) return 0;
    return 1;
}

int ew_motion_set_append(ew_motion_set *dst, const ew_motion_set *src) {
    if (src->n == 0) return 0;
    int need = dst->n + src->n;
    if (need > dst->cap) {
        ew_motion_sample *p = realloc(dst->s, sizeof *p * (size_t)need);
        if (!p) return -1;
        dst->s = p;
        int *f = realloc(dst->flags, sizeof *f * (size_t)need);
        if (!f) return -1;
        dst->flags = f;
        dst->cap = need;
    }
    memcpy(dst->s + dst->n, src->s, sizeof *src->s * (size_t)src->n);
    memcpy(dst->flags + dst->n, src->flags, sizeof *src->flags * (size_t)src->n);
    dst->n = need;
    return 0;
}

static ew_motion_sample *set_push(ew_motion_set *s, int flags) {
    if (s->n == s->cap) {
        int nc = s->cap ? 2 * s->cap : 256;
        ew_motion_sample *p = realloc(s->s, sizeof *p * (size_t)nc);
        if (!p) return NULL;
        s->s = p;
        int *f = realloc(s->flags, sizeof *f * (size_t)nc);
        if (!f) return NULL;
        s->flags = f;
        s->cap = nc;
    }
    s->flags[s->n] = flags;
    return &s->s[s->n++];
}

typedef struct {
    float *x, *y;   /* positions per frame from `start` */
    int start, len, cap, live;
} tracklet;

typedef struct {
    uint32_t id;
    int start, len, cap;
    float *x, *y, *ax;
    int *ok; /* fully inside */
} truetrack;

static int tl_push(tracklet *t, float x, float y) {
    if (t->len == t->cap) {
        int nc = t->cap ? 2 * t->cap : 64;
        float *a = realloc(t->x, sizeof(float) * (size_t)nc);
        if (!a) return -1;
        t->x = a;
        float *b = realloc(t->y, sizeof(float) * (size_t)nc);
        if (!b) return -1;
        t->y = b;
        t->cap = nc;
    }
    t->x[t->len] = x;
    t->y[t->len] = y;
    t->len++;
    return 0;
}

static int tt_push(truetrack *t, float x, float y, float ax, int ok) {
    if (t->len == t->cap) {
        int nc = t->cap ? 2 * t->cap : 64;
        float *a = realloc(t->x, sizeof(float) * (size_t)nc), *b;
        if (!a) return -1;
        t->x = a;
        if (!(b = realloc(t->y, sizeof(float) * (size_t)nc))) return -1;
        t->y = b;
        if (!(b = realloc(t->ax, sizeof(float) * (size_t)nc))) return -1;
        t->ax = b;
        int *o = realloc(t->ok, sizeof(int) * (size_t)nc);
        if (!o) return -1;
        t->ok = o;
        t->cap = nc;
    }
    t->x[t->len] = x, t->y[t->len] = y, t->ax[t->len] = ax, t->ok[t->len] = ok;
    t->len++;
    return 0;
}


/* ---- context: lanes and neighbours ---------------------------------------------------- */

#define MAXLANES 8

typedef struct {
    float *hist; /* histogram of lateral positions, 0.1 m bins from ylo */
    int nb;
    float ylo;
} yhist;

static void yh_add(yhist *h, float y) {
    int b = (int)floorf((y - h->ylo) / 0.1f);
    if (b >= 0 && b < h->nb) h->hist[b] += 1.0f;
}

/* Lane centres (ascending) from where vehicles are: peaks of the smoothed histogram of
 * lateral positions at least 20 % of the highest and 2 m apart, refined by the mean over
 * +-1 m. */
static int lane_centres(const yhist *h, float *c) {
    int nb = h->nb, n = 0;
    float *sm = calloc((size_t)nb, sizeof(float));
    if (!sm) return 0;
    float mx = 0.0f;
    for (int b = 0; b < nb; b++) {
        for (int d = -5; d <= 5; d++)
            if (b + d >= 0 && b + d < nb) sm[b] += h->hist[b + d];
        if (sm[b] > mx) mx = sm[b];
    }
    if (mx <= 0.0f) {
        free(sm);
        return 0;
    }
    for (;;) {
        int bb = -1;
        float bv = 0.2f * mx;
        for (int b = 0; b < nb; b++) {
            int ok = sm[b] >= bv;
            for (int k = 0; k < n && ok; k++) ok = fabsf(h->ylo + (b + 0.5f) * 0.1f - c[k]) >= 2.0f;
            if (ok) bv = sm[b], bb = b;
        }
        if (bb < 0 || n == MAXLANES) break;
        double sw = 0, sy = 0;
        for (int d = -10; d <= 10; d++)
            if (bb + d >= 0 && bb + d < nb) sw += h->hist[bb + d], sy += h->hist[bb + d] * (h->ylo + (bb + d + 0.5) * 0.1);
        c[n++] = sw > 0 ? (float)(sy / sw) : h->ylo + (bb + 0.5f) * 0.1f;
    }
    free(sm);
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

typedef struct {
    float x, y, vx;
} nbr;

/* Fills s->ctx (see EW_MOTION_CTX) from the sample's history and the other vehicles at the
 * anchor frame (nb, self excluded). */
static void make_ctx(ew_motion_sample *s, const float *lc, int nl, const nbr *nb, int nn, float xa, float xb,
                     float dt) {
    memset(s->ctx, 0, sizeof s->ctx);
    /* fitted line over the history (as the model's) */
    double mx = 0, my = 0, num = 0, den = 0, tm = 0.5 * (EW_MOTION_HIST - 1);
    for (int t = 0; t < EW_MOTION_HIST; t++) mx += s->hist[t][0], my += s->hist[t][1];
    mx /= EW_MOTION_HIST, my /= EW_MOTION_HIST;
    for (int t = 0; t < EW_MOTION_HIST; t++) num += (t - tm) * (s->hist[t][0] - mx), den += (t - tm) * (t - tm);
    float vx = (float)(num / den / dt), x = (float)(mx + num / den * tm);
    float y = (s->hist[EW_MOTION_HIST - 1][1] + s->hist[EW_MOTION_HIST - 2][1] + s->hist[EW_MOTION_HIST - 3][1]) / 3.0f;
    s->ctx[3] = vx / 30.0f;
    s->ctx[4] = (xb - x) / 100.0f;
    s->ctx[5] = (x - xa) / 100.0f;
    for (int j = 0; j < 3; j++) { /* defaults: nobody ahead or behind */
        s->ctx[6 + 6 * j] = 2.0f;
        s->ctx[9 + 6 * j] = 2.0f;
    }
    if (nl < 1) return;
    int own = nearest_lane(lc, nl, y);
    s->ctx[0] = (y - lc[own]) / 1.85f;
    s->ctx[1] = own + 1 < nl;
    s->ctx[2] = own > 0;
    for (int i = 0; i < nn; i++) {
        int l = nearest_lane(lc, nl, nb[i].y), j = l == own ? 0 : (l == own + 1 ? 1 : (l == own - 1 ? 2 : -1));
        if (j < 0) continue;
        float dx = nb[i].x - x, nvx = isfinite(nb[i].vx) ? nb[i].vx : vx;
        float *f = s->ctx + 6 + 6 * j + (dx >= 0.0f ? 0 : 3);
        float gap = fabsf(dx) / 50.0f;
        if (gap > 2.0f) gap = 2.0f;
        if (!f[2] || gap < f[0]) f[0] = gap, f[1] = (nvx - vx) / 10.0f, f[2] = 1.0f;
    }
    /* deceleration that stops the closing on the leader in the gap left (centres 6 m apart at
     * contact): dv^2 / (2 (gap - 6 m)) */
    if (s->ctx[8] == 1.0f && s->ctx[7] < 0.0f) {
        float dv = 10.0f * s->ctx[7], room = 50.0f * s->ctx[6] - 6.0f;
        float need = dv * dv / (2.0f * (room > 1.0f ? room : 1.0f)) / 5.0f;
        s->ctx[23] = need < 3.0f ? need : 3.0f;
    }
}

/* Crop of frame f (uint8 storage) around world (x, y). */
static void make_crop(const uint8_t *frame, const ew_fixed_cfg *cam, float x, float y, float *out) {
    float m = cam->m_per_px;
    int u0 = (int)floorf((x - 10.0f - cam->x0) / m), v0 = (int)floorf((cam->y0 - (y + 6.0f)) / m);
    for (int r = 0; r < EW_MOTION_CROP_R; r++)
        for (int c = 0; c < EW_MOTION_CROP_C; c++) {
            float s = 0.0f;
            for (int dr = 0; dr < 2; dr++)
                for (int dc = 0; dc < 4; dc++) {
                    int rr = v0 + 2 * r + dr, cc = u0 + 4 * c + dc;
                    if (rr >= 0 && rr < cam->rows && cc >= 0 && cc < cam->cols) s += frame[rr * cam->cols + cc] / 255.0f;
                }
            out[r * EW_MOTION_CROP_C + c] = s / 8.0f;
        }
}

/* Other tracklets at frame fa (detections of that frame), self excluded. */
static int gather_trk(const tracklet *tl, const int *det_trk, const int *det_n, int fa, int self, float dt, nbr *out) {
    int n = 0;
    for (int i = 0; i < det_n[fa] && n < MAXD; i++) {
        int k = det_trk[(size_t)fa * MAXD + i];
        if (k == self) continue;
        const tracklet *T = &tl[k];
        int idx = fa - T->start, kk = idx < 5 ? idx : 5;
        if (idx < 0 || idx >= T->len) continue;
        out[n].x = T->x[idx], out[n].y = T->y[idx];
        out[n].vx = kk > 0 ? (T->x[idx] - T->x[idx - kk]) / (kk * dt) : NAN;
        n++;
    }
    return n;
}

/* Other true tracks at frame fa, self excluded. */
static int gather_true(const truetrack *tt, int ntt, int fa, int self, float dt, nbr *out) {
    int n = 0;
    for (int k = 0; k < ntt && n < MAXD; k++) {
        const truetrack *T = &tt[k];
        int idx = fa - T->start, kk = idx < 5 ? idx : 5;
        if (k == self || idx < 0 || idx >= T->len) continue;
        out[n].x = T->x[idx], out[n].y = T->y[idx];
        out[n].vx = kk > 0 ? (T->x[idx] - T->x[idx - kk]) / (kk * dt) : NAN;
        n++;
    }
    return n;
}

int ew_motion_collect(const ew_tracker *t, ew_graph *g, const ew_video_stream_cfg *sc, uint64_t seed, int frames,
                      int stride, ew_motion_set *trk, ew_motion_set *gt, ew_motion_set *pair_trk,
                      ew_motion_set *pair_gt, char *err, size_t errsz) {
    if (frames < WIN || stride < 1) return failf(err, errsz, "motion data: need at least %d frames and stride >= 1", WIN);
    ew_video_stream *st = ew_video_stream_create(sc, seed, err, (int)errsz);
    if (!st) return -1;
    ew_fixed_cfg cam;
    ew_video_stream_camera(st, &cam);
    const int F = cam.rows * cam.cols;
    const float m = cam.m_per_px;
    uint8_t *store = malloc((size_t)F * (size_t)frames);
    float *frame = malloc(sizeof(float) * (size_t)F);
    ew_video_truth *tr = malloc(sizeof *tr * MAXD);
    ew_track_det *det = malloc(sizeof *det * MAXD);
    /* per frame: for every detection its tracklet, to find the tracklet covering a truth */
    int *det_trk = malloc(sizeof(int) * (size_t)frames * MAXD), *det_n = calloc((size_t)frames, sizeof(int));
    float *det_xy = malloc(sizeof(float) * 2 * (size_t)frames * MAXD);
    tracklet *tl = NULL;
    int ntl = 0, captl = 0;
    truetrack *tt = NULL;
    int ntt = 0, captt = 0;
    int *live = malloc(sizeof(int) * MAXD * 4);
    nbr *nb = malloc(sizeof(nbr) * MAXD);
    yhist hd = {NULL, 0, cam.y0 - cam.rows * m}, ht = hd;
    hd.nb = ht.nb = (int)ceilf(cam.rows * m / 0.1f);
    hd.hist = calloc((size_t)hd.nb, sizeof(float));
    ht.hist = calloc((size_t)ht.nb, sizeof(float));
    float lcd[MAXLANES], lct[MAXLANES];
    int nld = 0, nlt = 0;
    const float xa = cam.x0, xb = cam.x0 + cam.cols * m, dt = sc->dt;
    int rc = -1;
    if (!store || !frame || !tr || !det || !det_trk || !det_n || !det_xy || !live || !nb || !hd.hist || !ht.hist) {
        failf(err, errsz, "motion data: out of memory");
        goto done;
    }
    for (int f = 0; f < frames; f++) {
        int nt = ew_video_stream_next(st, frame, tr, MAXD, err, (int)errsz);
        if (nt < 0) goto done;
        for (int i = 0; i < F; i++) store[(size_t)f * F + i] = (uint8_t)lroundf(frame[i] * 255.0f);
        int nd = t ? ew_tracker_detect(t, g, frame, cam.rows, cam.cols, det, MAXD, err, errsz) : 0;
        if (nd < 0) goto done;
        det_n[f] = nd;
        for (int i = 0; i < nd; i++) yh_add(&hd, cam.y0 - det[i].v * m);
        for (int j = 0; j < nt; j++) yh_add(&ht, tr[j].y);
        /* link: live tracklets (ended at f - 1) */
        int nl = 0;
        for (int k = 0; k < ntl && nl < MAXD * 4; k++)
            if (tl[k].live) live[nl++] = k;
        int claimed_d[MAXD] = {0};
        int *claimed_t = calloc((size_t)nl + 1, sizeof(int));
        if (!claimed_t) {
            failf(err, errsz, "motion data: out of memory");
            goto done;
        }
        for (;;) {
            int bi = -1, bk = -1;
            double best = 1e30;
            for (int a = 0; a < nl; a++) {
                if (claimed_t[a]) continue;
                tracklet *T = &tl[live[a]];
                float px = T->x[T->len - 1], py = T->y[T->len - 1];
                if (T->len >= 2) px += px - T->x[T->len - 2], py += py - T->y[T->len - 2];
                for (int i = 0; i < nd; i++) {
                    if (claimed_d[i]) continue;
                    float x = cam.x0 + det[i].u * m, y = cam.y0 - det[i].v * m;
                    float dx = x - px, dy = y - py;
                    if (fabsf(dx) >= 4.0f || fabsf(dy) >= 1.2f) continue;
                    double d = (double)dx * dx + (double)dy * dy;
                    if (d < best) best = d, bi = i, bk = a;
                }
            }
            if (bi < 0) break;
            claimed_d[bi] = 1;
            claimed_t[bk] = 1;
            tracklet *T = &tl[live[bk]];
            if (tl_push(T, cam.x0 + det[bi].u * m, cam.y0 - det[bi].v * m)) {
                free(claimed_t);
                failf(err, errsz, "motion data: out of memory");
                goto done;
            }
            det_trk[(size_t)f * MAXD + bi] = live[bk];
        }
        for (int a = 0; a < nl; a++)
            if (!claimed_t[a]) tl[live[a]].live = 0;
        free(claimed_t);
        for (int i = 0; i < nd; i++) {
            det_xy[((size_t)f * MAXD + i) * 2] = det[i].u;
            det_xy[((size_t)f * MAXD + i) * 2 + 1] = det[i].v;
            if (claimed_d[i]) continue;
            if (ntl == captl) {
                captl = captl ? 2 * captl : 256;
                tracklet *p = realloc(tl, sizeof *p * (size_t)captl);
                if (!p) {
                    failf(err, errsz, "motion data: out of memory");
                    goto done;
                }
                tl = p;
            }
            memset(&tl[ntl], 0, sizeof tl[ntl]);
            tl[ntl].start = f;
            tl[ntl].live = 1;
            if (tl_push(&tl[ntl], cam.x0 + det[i].u * m, cam.y0 - det[i].v * m)) {
                failf(err, errsz, "motion data: out of memory");
                goto done;
            }
            det_trk[(size_t)f * MAXD + i] = ntl;
            ntl++;
        }
        /* true tracks (by id; a gap or a repeated id ends nothing: ids are unique) */
        for (int j = 0; j < nt; j++) {
            int k;
            for (k = ntt - 1; k >= 0 && k >= ntt - 4096; k--)
                if (tt[k].id == tr[j].id) break;
            if (k < 0 || k < ntt - 4096 || tt[k].start + tt[k].len != f) {
                if (ntt == captt) {
                    captt = captt ? 2 * captt : 256;
                    truetrack *p = realloc(tt, sizeof *p * (size_t)captt);
                    if (!p) {
                        failf(err, errsz, "motion data: out of memory");
                        goto done;
                    }
                    tt = p;
                }
                memset(&tt[ntt], 0, sizeof tt[ntt]);
                tt[ntt].id = tr[j].id;
                tt[ntt].start = f;
                k = ntt++;
            }
            if (tt_push(&tt[k], tr[j].x, tr[j].y, tr[j].ax, tr[j].inside)) {
                failf(err, errsz, "motion data: out of memory");
                goto done;
            }
        }
    }
    nld = lane_centres(&hd, lcd);
    nlt = lane_centres(&ht, lct);
    /* tracklet windows */
    if (trk)
        for (int k = 0; k < ntl; k++)
            for (int a = EW_MOTION_HIST - 1; a + EW_MOTION_FUT < tl[k].len; a += stride) {
                /* events seen in the tracklet itself (no truth): lateral move > 1.5 m, or a speed
                 * drop > 2.1 m/s between the anchor's and the last 0.5 s */
                const float *X = tl[k].x, *Y = tl[k].y;
                float v0 = (X[a] - X[a - 5]) / (5.0f * dt), v1 = (X[a + EW_MOTION_FUT] - X[a + EW_MOTION_FUT - 5]) / (5.0f * dt);
                int ev = (fabsf(Y[a + EW_MOTION_FUT] - Y[a]) > 1.5f) | ((v0 - v1 > 2.1f) << 1);
                ew_motion_sample *s = set_push(trk, ev);
                if (!s) {
                    failf(err, errsz, "motion data: out of memory");
                    goto done;
                }
                for (int h = 0; h < EW_MOTION_HIST; h++)
                    s->hist[h][0] = tl[k].x[a - 9 + h], s->hist[h][1] = tl[k].y[a - 9 + h];
                for (int q = 0; q < EW_MOTION_FUT; q++)
                    s->fut[q][0] = tl[k].x[a + 1 + q], s->fut[q][1] = tl[k].y[a + 1 + q];
                make_crop(store + (size_t)(tl[k].start + a) * F, &cam, tl[k].x[a], tl[k].y[a], s->crop);
                int nn = gather_trk(tl, det_trk, det_n, tl[k].start + a, k, dt, nb);
                make_ctx(s, lcd, nld, nb, nn, xa, xb, dt);
            }
    /* true windows and evaluation pairs */
    for (int k = 0; k < ntt; k++) {
        truetrack *T = &tt[k];
        for (int a = EW_MOTION_HIST - 1; a + EW_MOTION_FUT < T->len; a += stride) {
            int ok = 1, brake = 0;
            for (int q = a - 9; q <= a + EW_MOTION_FUT; q++) ok &= T->ok[q];
            if (!ok) continue;
            float asum = 0.0f;
            for (int q = a + 1; q <= a + EW_MOTION_FUT; q++) asum += T->ax[q];
            brake = asum / EW_MOTION_FUT < -0.7f;
            int flags = (fabsf(T->y[a + EW_MOTION_FUT] - T->y[a]) > 1.5f) | (brake << 1);
            ew_motion_sample smp;
            for (int h = 0; h < EW_MOTION_HIST; h++) smp.hist[h][0] = T->x[a - 9 + h], smp.hist[h][1] = T->y[a - 9 + h];
            for (int q = 0; q < EW_MOTION_FUT; q++) smp.fut[q][0] = T->x[a + 1 + q], smp.fut[q][1] = T->y[a + 1 + q];
            int fa = T->start + a;
            make_crop(store + (size_t)fa * F, &cam, T->x[a], T->y[a], smp.crop);
            make_ctx(&smp, lct, nlt, nb, gather_true(tt, ntt, fa, k, dt, nb), xa, xb, dt);
            if (gt) {
                ew_motion_sample *s = set_push(gt, flags);
                if (!s) {
                    failf(err, errsz, "motion data: out of memory");
                    goto done;
                }
                *s = smp;
            }
            if (!pair_trk || !pair_gt) continue;
            /* the tracklet at the anchor frame closest to the truth, within 1.5 m */
            float tu = (T->x[a] - cam.x0) / m, tv = (cam.y0 - T->y[a]) / m;
            int best = -1;
            double bd = 1.5 / m;
            for (int i = 0; i < det_n[fa]; i++) {
                double d = hypot(det_xy[((size_t)fa * MAXD + i) * 2] - tu, det_xy[((size_t)fa * MAXD + i) * 2 + 1] - tv);
                if (d < bd) bd = d, best = i;
            }
            if (best < 0) continue;
            int li = det_trk[(size_t)fa * MAXD + best];
            tracklet *L = &tl[li];
            int la = fa - L->start;
            if (la < EW_MOTION_HIST - 1) continue;
            ew_motion_sample *s1 = set_push(pair_trk, flags), *s2 = s1 ? set_push(pair_gt, flags) : NULL;
            if (!s2) {
                failf(err, errsz, "motion data: out of memory");
                goto done;
            }
            *s2 = smp;
            *s1 = smp;
            for (int h = 0; h < EW_MOTION_HIST; h++) s1->hist[h][0] = L->x[la - 9 + h], s1->hist[h][1] = L->y[la - 9 + h];
            make_crop(store + (size_t)fa * F, &cam, L->x[la], L->y[la], s1->crop);
            make_ctx(s1, lcd, nld, nb, gather_trk(tl, det_trk, det_n, fa, li, dt, nb), xa, xb, dt);
        }
    }
    rc = 0;
done:
    for (int k = 0; k < ntl; k++) free(tl[k].x), free(tl[k].y);
    for (int k = 0; k < ntt; k++) free(tt[k].x), free(tt[k].y), free(tt[k].ax), free(tt[k].ok);
    free(tl), free(tt), free(live), free(nb), free(hd.hist), free(ht.hist);
    free(store), free(frame), free(tr), free(det), free(det_trk), free(det_n), free(det_xy);
    ew_video_stream_free(st);
    return rc;
}
