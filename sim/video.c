/* video.c - fixed-camera greyscale clips and streams with degradations (see video.h). */
#include "sim/video.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim/rng.h"

void ew_video_degrade_preset(ew_video_degrade *d) {
    memset(d, 0, sizeof *d);
    d->noise_std = 0.15f;
    d->blur_sigma = 0.8f;
    d->random_intensity = 1;
    d->size_jitter = 0.3f;
    d->occluders = 2;
    d->drop_prob = 0.1f;
}

int ew_video_degrade_by_name(const char *name, ew_video_degrade *d) {
    if (!strcmp(name, "clean")) {
        memset(d, 0, sizeof *d);
        return 0;
    }
    if (!strcmp(name, "degraded")) {
        ew_video_degrade_preset(d);
        return 0;
    }
    return -1;
}

void ew_video_pair_cfg_default(ew_video_pair_cfg *c) {
    memset(c, 0, sizeof *c);
    c->rows = 28;
    c->cols = 80;
    c->m_per_px = 0.5f;
    c->frames = 5;
    c->dt = 0.1f;
    c->max_shift_m = 4.0f;
    c->flip_prob = 0.5f;
    c->shuffle_prob = 0.5f;
    c->truck_prob = 0.2f;
}

/* ---- rendering ------------------------------------------------------------------------ */

typedef struct {
    float x, y, hx, hy, len, wid, grey;
} vbox;

typedef struct {
    float xa, xb, grey;
} vbar;

#define SUB_SIDE 160
#define SUB_BYTES ((size_t)EW_RASTER_CHANNELS * SUB_SIDE * SUB_SIDE)

/* Scratch for one render: the 4-channel raster of the whole view. */
typedef struct {
    uint8_t *ras;
    size_t cap;
} vscratch;

static int scratch_need(vscratch *s, size_t bytes) {
    if (bytes <= s->cap) return 0;
    uint8_t *p = realloc(s->ras, bytes);
    if (!p) return -1;
    s->ras = p;
    s->cap = bytes;
    return 0;
}

/* Renders boxes, occluders into out (rows*cols floats). uniform: every grey is 1 and the
 * vehicles combine with the road by max (ew_raster_grey); else alpha compositing. */
static int render_view(const ew_road *road, const ew_fixed_cfg *cam, const vbox *bx, int nb, int uniform,
                       const vbar *bars, int nbars, vscratch *sc, float *out) {
    int rows = cam->rows, cols = cam->cols, n = rows * cols;
    if (scratch_need(sc, (size_t)EW_RASTER_CHANNELS * (size_t)n + (size_t)n + SUB_BYTES) != 0) return -1;
    uint8_t *ras = sc->ras, *grey = sc->ras + (size_t)EW_RASTER_CHANNELS * (size_t)n;
    float bxs[6][64];
    if (uniform && nb <= 64) {
        for (int i = 0; i < nb; i++) {
            bxs[0][i] = bx[i].x; bxs[1][i] = bx[i].y; bxs[2][i] = bx[i].hx;
            bxs[3][i] = bx[i].hy; bxs[4][i] = bx[i].len; bxs[5][i] = bx[i].wid;
        }
        ew_boxes b = {bxs[0], bxs[1], bxs[2], bxs[3], bxs[4], bxs[5], nb};
        if (ew_raster_fixed(cam, road, &b, NULL, 0, 0, ras) != 0) return -1;
        ew_raster_grey(ras, rows, cols, grey);
        for (int i = 0; i < n; i++) out[i] = grey[i] / 255.0f;
    } else {
        if (ew_raster_fixed(cam, road, NULL, NULL, 0, 0, ras) != 0) return -1;
        ew_raster_grey(ras, rows, cols, grey);
        for (int i = 0; i < n; i++) out[i] = grey[i] / 255.0f;
        uint8_t *sub = grey + n;
        for (int k = 0; k < nb; k++) {
            const vbox *v = &bx[k];
            float r = 0.5f * sqrtf(v->len * v->len + v->wid * v->wid);
            int c0 = (int)floorf((v->x - r - cam->x0) / cam->m_per_px) - 1;
            int c1 = (int)ceilf((v->x + r - cam->x0) / cam->m_per_px) + 1;
            int r0 = (int)floorf((cam->y0 - (v->y + r)) / cam->m_per_px) - 1;
            int r1 = (int)ceilf((cam->y0 - (v->y - r)) / cam->m_per_px) + 1;
            if (c0 < 0) c0 = 0;
            if (r0 < 0) r0 = 0;
            if (c1 > cols) c1 = cols;
            if (r1 > rows) r1 = rows;
            if (c1 <= c0 || r1 <= r0) continue;
            if (c1 - c0 > SUB_SIDE || r1 - r0 > SUB_SIDE) return -1;
            ew_fixed_cfg sc2 = {cam->x0 + (float)c0 * cam->m_per_px, cam->y0 - (float)r0 * cam->m_per_px,
                                r1 - r0, c1 - c0, cam->m_per_px};
            float one[6] = {v->x, v->y, v->hx, v->hy, v->len, v->wid};
            ew_boxes b = {&one[0], &one[1], &one[2], &one[3], &one[4], &one[5], 1};
            if (ew_raster_fixed(&sc2, road, &b, NULL, 0, 0, sub) != 0) return -1;
            const uint8_t *cov = sub + (size_t)EW_CH_VEHICLES * (size_t)(sc2.rows * sc2.cols);
            for (int rr = 0; rr < sc2.rows; rr++)
                for (int cc = 0; cc < sc2.cols; cc++) {
                    float a = cov[rr * sc2.cols + cc] / 255.0f;
                    float *o = &out[(r0 + rr) * cols + c0 + cc];
                    *o = *o * (1.0f - a) + v->grey * a;
                }
        }
    }
    for (int k = 0; k < nbars; k++) {
        float ua = (bars[k].xa - cam->x0) / cam->m_per_px, ub = (bars[k].xb - cam->x0) / cam->m_per_px;
        for (int c = 0; c < cols; c++) {
            float lo = fmaxf(ua, (float)c), hi = fminf(ub, (float)(c + 1));
            float f = hi > lo ? hi - lo : 0.0f;
            if (f <= 0.0f) continue;
            for (int rr = 0; rr < rows; rr++) {
                float *o = &out[rr * cols + c];
                *o = *o * (1.0f - f) + bars[k].grey * f;
            }
        }
    }
    return 0;
}

static void flip_image(float *img, int rows, int cols, int fx, int fy) {
    if (fx)
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols / 2; c++) {
                float t = img[r * cols + c];
                img[r * cols + c] = img[r * cols + cols - 1 - c];
                img[r * cols + cols - 1 - c] = t;
            }
    if (fy)
        for (int r = 0; r < rows / 2; r++)
            for (int c = 0; c < cols; c++) {
                float t = img[r * cols + c];
                img[r * cols + c] = img[(rows - 1 - r) * cols + c];
                img[(rows - 1 - r) * cols + c] = t;
            }
}

/* Blur (separable Gaussian, clamped edges) and noise, in place. tmp: rows*cols floats. */
static void post_process(float *img, int rows, int cols, const ew_video_degrade *d, ew_rng *rng, float *tmp) {
    if (d->blur_sigma > 0.0f) {
        int rad = (int)ceilf(3.0f * d->blur_sigma);
        if (rad > 8) rad = 8;
        float k[17], s = 0.0f;
        for (int i = -rad; i <= rad; i++) s += k[i + rad] = expf(-0.5f * (float)(i * i) / (d->blur_sigma * d->blur_sigma));
        for (int i = 0; i <= 2 * rad; i++) k[i] /= s;
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++) {
                float a = 0.0f;
                for (int i = -rad; i <= rad; i++) {
                    int cc = c + i < 0 ? 0 : (c + i >= cols ? cols - 1 : c + i);
                    a += k[i + rad] * img[r * cols + cc];
                }
                tmp[r * cols + c] = a;
            }
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++) {
                float a = 0.0f;
                for (int i = -rad; i <= rad; i++) {
                    int rr = r + i < 0 ? 0 : (r + i >= rows ? rows - 1 : r + i);
                    a += k[i + rad] * tmp[rr * cols + c];
                }
                img[r * cols + c] = a;
            }
    }
    if (d->noise_std > 0.0f)
        for (int i = 0; i < rows * cols; i++) {
            float v = img[i] + d->noise_std * (float)ew_rng_normal(rng);
            img[i] = v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v);
        }
}

static void make_bars(const ew_video_degrade *d, float x0, float width_m, ew_rng *rng, vbar *bars, int *nbars) {
    *nbars = 0;
    if (d->occluders <= 0) return;
    int n = (int)ew_rng_below(rng, (uint32_t)d->occluders + 1u);
    for (int i = 0; i < n && i < 8; i++) {
        float w = (float)ew_rng_range(rng, 1.0, 3.0);
        float xa = x0 + (float)ew_rng_range(rng, 0.0, width_m - w);
        bars[i].xa = xa;
        bars[i].xb = xa + w;
        bars[i].grey = (float)ew_rng_range(rng, 0.1, 0.9);
        (*nbars)++;
    }
}

/* ---- single-vehicle clip pairs -------------------------------------------------------- */

int ew_video_pairs_alloc(ew_video_pairs *p, int n, const ew_video_pair_cfg *cfg) {
    memset(p, 0, sizeof *p);
    p->n = n;
    p->frames = cfg->frames;
    p->rows = cfg->rows;
    p->cols = cfg->cols;
    p->m_per_px = cfg->m_per_px;
    size_t img = (size_t)n * (size_t)cfg->frames * (size_t)cfg->rows * (size_t)cfg->cols;
    p->a = malloc(img * sizeof(float));
    p->b = malloc(img * sizeof(float));
    p->flip_x = calloc((size_t)n, sizeof(int));
    p->flip_y = calloc((size_t)n, sizeof(int));
    p->shift_px = calloc((size_t)n * 2, sizeof(float));
    p->shuffled = calloc((size_t)n, sizeof(int));
    p->perm = calloc((size_t)n * (size_t)cfg->frames, sizeof(int));
    p->truth_a = calloc((size_t)n * (size_t)cfg->frames * 2, sizeof(float));
    p->truth_b = calloc((size_t)n * (size_t)cfg->frames * 2, sizeof(float));
    if (!p->a || !p->b || !p->flip_x || !p->flip_y || !p->shift_px || !p->shuffled || !p->perm || !p->truth_a ||
        !p->truth_b) {
        ew_video_pairs_free(p);
        return -1;
    }
    return 0;
}

void ew_video_pairs_free(ew_video_pairs *p) {
    free(p->a);
    free(p->b);
    free(p->flip_x);
    free(p->flip_y);
    free(p->shift_px);
    free(p->shuffled);
    free(p->perm);
    free(p->truth_a);
    free(p->truth_b);
    memset(p, 0, sizeof *p);
}

void ew_video_pair_warp(const ew_video_pairs *p, int i, float u, float v, float *uo, float *vo) {
    float a = u + p->shift_px[2 * i], b = v + p->shift_px[2 * i + 1];
    *uo = p->flip_x[i] ? (float)p->cols - a : a;
    *vo = p->flip_y[i] ? (float)p->rows - b : b;
}

int ew_video_pair_make(const ew_video_pair_cfg *cfg, uint64_t seed, ew_video_pairs *out, char *err, int errlen) {
    return ew_video_pair_make_from(cfg, seed, 0, out, err, errlen);
}

int ew_video_pair_make_from(const ew_video_pair_cfg *cfg, uint64_t seed, uint64_t first, ew_video_pairs *out, char *err,
                            int errlen) {
    if (cfg->frames < 2 || cfg->frames > EW_VIDEO_MAX_T || cfg->frames != out->frames || cfg->rows != out->rows ||
        cfg->cols != out->cols) {
        snprintf(err, (size_t)errlen, "video pairs: frames must be in [2, %d] and match the batch", EW_VIDEO_MAX_T);
        return -1;
    }
    ew_road road;
    if (ew_road_init_highway(&road, 3, 3.7f, 100000.0f, 30.0f, err, errlen) != 0) return -1;
    const int T = cfg->frames, R = cfg->rows, C = cfg->cols, F = R * C;
    const float m = cfg->m_per_px, Wm = (float)C * m, Hm = (float)R * m;
    vscratch sc = {0};
    float *tmp = malloc((size_t)F * sizeof(float));
    if (!tmp) {
        snprintf(err, (size_t)errlen, "video pairs: out of memory");
        return -1;
    }
    int rc = 0;
    for (int i = 0; i < out->n && rc == 0; i++) {
        ew_rng rng;
        ew_rng_seed2(&rng, seed, first + (uint64_t)i);
        const ew_video_degrade *d = &cfg->degrade;
        int truck = ew_rng_uniform(&rng) < cfg->truck_prob;
        float len = truck ? (float)ew_rng_range(&rng, 8.0, 13.0) : (float)ew_rng_range(&rng, 4.0, 5.0);
        float wid = truck ? (float)ew_rng_range(&rng, 2.3, 2.6) : (float)ew_rng_range(&rng, 1.7, 2.0);
        if (d->size_jitter > 0.0f) {
            len *= (float)ew_rng_range(&rng, 1.0 - d->size_jitter, 1.0 + d->size_jitter);
            wid *= (float)ew_rng_range(&rng, 1.0 - d->size_jitter, 1.0 + d->size_jitter);
        }
        float grey = d->random_intensity ? (float)ew_rng_range(&rng, 0.3, 1.0) : 1.0f;
        float v = (float)ew_rng_range(&rng, 20.0, 35.0), acc = (float)ew_rng_range(&rng, -3.0, 2.0);
        int lane = (int)ew_rng_below(&rng, 3);
        float y_start = 3.7f * (float)lane + 1.85f + (float)ew_rng_range(&rng, -0.4, 0.4);
        float vy = ew_rng_uniform(&rng) < 0.3 ? (float)ew_rng_range(&rng, -1.2, 1.2) : 0.0f;
        float xs[EW_VIDEO_MAX_T], ys[EW_VIDEO_MAX_T];
        for (int t = 0; t < T; t++) {
            float tt = (float)t * cfg->dt;
            xs[t] = v * tt + 0.5f * acc * tt * tt;
            ys[t] = y_start + vy * tt;
        }
        /* camera: the vehicle (with the shift margin) stays inside */
        float margin = cfg->max_shift_m + 0.5f;
        float lo = xs[0] - 0.5f * len - margin, hi = xs[T - 1] + 0.5f * len + margin;
        float room = Wm - (hi - lo);
        float X = 5000.0f + (float)ew_rng_range(&rng, -500.0, 500.0); /* the clip's place on the road */
        for (int t = 0; t < T; t++) xs[t] += X;
        lo += X;
        float x0 = lo - (room > 0.0f ? (float)ew_rng_range(&rng, 0.0, room) : 0.5f * room);
        float ymid = 0.5f * (ys[0] + ys[T - 1]);
        float y0 = 5.55f + 0.5f * Hm + (float)ew_rng_range(&rng, -1.0, 1.0);
        /* keep the vehicle rows inside too */
        float ytop = ymid + 0.5f * fabsf(ys[T - 1] - ys[0]) + 0.5f * wid + margin;
        float ybot = ymid - 0.5f * fabsf(ys[T - 1] - ys[0]) - 0.5f * wid - margin;
        if (y0 < ytop) y0 = ytop;
        if (y0 - Hm > ybot) y0 = ybot + Hm;
        vbar bars[8];
        int nbars;
        make_bars(d, x0, Wm, &rng, bars, &nbars);
        /* shown time of every frame: drops repeat the previous one, then the shuffle */
        int shown[EW_VIDEO_MAX_T];
        shown[0] = 0;
        for (int t = 1; t < T; t++) shown[t] = (d->drop_prob > 0.0f && ew_rng_uniform(&rng) < d->drop_prob) ? shown[t - 1] : t;
        int pi[EW_VIDEO_MAX_T];
        for (int t = 0; t < T; t++) pi[t] = t;
        int shuffled = ew_rng_uniform(&rng) < cfg->shuffle_prob;
        if (shuffled) {
            int ident;
            do {
                for (int t = T - 1; t > 0; t--) {
                    int j = (int)ew_rng_below(&rng, (uint32_t)t + 1u);
                    int s = pi[t];
                    pi[t] = pi[j];
                    pi[j] = s;
                }
                ident = 1;
                for (int t = 0; t < T; t++) ident &= pi[t] == t;
            } while (ident);
        }
        float du = (float)ew_rng_range(&rng, -cfg->max_shift_m, cfg->max_shift_m) / m;
        float dv = (float)ew_rng_range(&rng, -cfg->max_shift_m, cfg->max_shift_m) / m;
        int fx = ew_rng_uniform(&rng) < cfg->flip_prob, fy = ew_rng_uniform(&rng) < cfg->flip_prob;
        out->flip_x[i] = fx;
        out->flip_y[i] = fy;
        out->shift_px[2 * i] = du;
        out->shift_px[2 * i + 1] = dv;
        out->shuffled[i] = shuffled;
        ew_fixed_cfg camA = {x0, y0, R, C, m}, camB = {x0 - du * m, y0 + dv * m, R, C, m};
        for (int t = 0; t < T && rc == 0; t++) {
            int s = shown[pi[t]];
            out->perm[i * T + t] = s;
            vbox b = {xs[s], ys[s], 1.0f, 0.0f, len, wid, grey};
            float *fa = out->a + ((size_t)i * T + t) * F, *fb = out->b + ((size_t)i * T + t) * F;
            rc |= render_view(&road, &camA, &b, 1, !d->random_intensity, bars, nbars, &sc, fa);
            rc |= render_view(&road, &camB, &b, 1, !d->random_intensity, bars, nbars, &sc, fb);
            if (rc) break;
            flip_image(fb, R, C, fx, fy);
            post_process(fa, R, C, d, &rng, tmp);
            post_process(fb, R, C, d, &rng, tmp);
            float ua = (b.x - x0) / m, va = (y0 - b.y) / m;
            out->truth_a[(i * T + t) * 2] = ua;
            out->truth_a[(i * T + t) * 2 + 1] = va;
            ew_video_pair_warp(out, i, ua, va, &out->truth_b[(i * T + t) * 2], &out->truth_b[(i * T + t) * 2 + 1]);
        }
    }
    if (rc) snprintf(err, (size_t)errlen, "video pairs: rendering failed");
    free(sc.ras);
    free(tmp);
    return rc ? -1 : 0;
}

/* ---- traffic streams ------------------------------------------------------------------ */

void ew_video_stream_cfg_default(ew_video_stream_cfg *c) {
    memset(c, 0, sizeof *c);
    c->lanes = 3;
    c->flow_per_h = 1400.0f;
    c->speed_limit = 30.0f;
    c->x0 = 300.0f;
    c->length_m = 200.0f;
    c->m_per_px = 0.5f;
    c->dt = 0.1f;
    c->warmup_s = 60.0f;
    c->truck_share = 0.1f;
    c->brakes_per_min = 6.0f;
}

#define EW_STREAM_MAX_BOX 256

struct ew_video_stream {
    ew_video_stream_cfg cfg;
    uint64_t seed;
    ew_world *w;
    ew_road road;
    ew_fixed_cfg cam;
    vbar bars[8];
    int nbars;
    ew_rng rng, brng;
    vscratch sc;
    float *prev, *tmp;
    ew_video_truth prev_truth[EW_STREAM_MAX_BOX];
    int prev_n, have_prev;
    vbox boxes[EW_STREAM_MAX_BOX];
    ew_video_truth truth[EW_STREAM_MAX_BOX];
};

ew_video_stream *ew_video_stream_create(const ew_video_stream_cfg *cfg, uint64_t seed, char *err, int errlen) {
    if (cfg->lanes < 1 || cfg->lanes > EW_MAX_MAIN_LANES || !(cfg->length_m > 1.0f) || !(cfg->m_per_px > 0.01f) ||
        !(cfg->dt > 0.0f) || cfg->x0 < 0.0f || cfg->warmup_s < 0.0f) {
        snprintf(err, (size_t)errlen, "video stream: bad configuration (lanes, length, m_per_px, dt, x0, warm-up)");
        return NULL;
    }
    ew_video_stream *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, (size_t)errlen, "video stream: out of memory");
        return NULL;
    }
    s->cfg = *cfg;
    s->seed = seed;
    ew_world_config wc;
    ew_world_config_default(&wc);
    float road_len = cfg->x0 + cfg->length_m + 300.0f;
    if (ew_road_init_highway(&wc.road, cfg->lanes, 3.7f, road_len, cfg->speed_limit, err, errlen) != 0) {
        free(s);
        return NULL;
    }
    for (int l = 0; l < EW_MAX_LANES; l++) {
        wc.flow_per_h[l] = l < cfg->lanes ? cfg->flow_per_h : 0.0f;
        wc.density_per_km[l] = l < cfg->lanes ? cfg->flow_per_h / (3.6f * cfg->speed_limit) : 0.0f;
    }
    wc.truck_share = cfg->truck_share;
    wc.moto_share = 0.0f;
    wc.exit_share = 0.0f;
    wc.ego_enabled = 0;
    wc.max_vehicles = 2048;
    wc.dt = cfg->dt;
    wc.seed = seed;
    wc.idm_noise = 0.3f;
    s->road = wc.road;
    s->w = ew_world_create(&wc, err, errlen);
    if (!s->w) {
        free(s);
        return NULL;
    }
    ew_world_reset(s->w, seed);
    int steps = (int)lroundf(cfg->warmup_s / cfg->dt);
    for (int i = 0; i < steps; i++) ew_world_step(s->w, NULL);
    float width = 3.7f * (float)cfg->lanes;
    int rows = (int)ceilf((width + 2.9f) / cfg->m_per_px);
    int cols = (int)lroundf(cfg->length_m / cfg->m_per_px);
    s->cam.x0 = cfg->x0;
    s->cam.y0 = 0.5f * width + 0.5f * (float)rows * cfg->m_per_px;
    s->cam.rows = rows;
    s->cam.cols = cols;
    s->cam.m_per_px = cfg->m_per_px;
    ew_rng_seed2(&s->rng, seed, 0x766964656fULL);
    ew_rng_seed2(&s->brng, seed, 0x6272616b65ULL);
    make_bars(&cfg->degrade, cfg->x0, cfg->length_m, &s->rng, s->bars, &s->nbars);
    s->prev = malloc((size_t)rows * (size_t)cols * sizeof(float));
    s->tmp = malloc((size_t)rows * (size_t)cols * sizeof(float));
    if (!s->prev || !s->tmp) {
        ew_video_stream_free(s);
        snprintf(err, (size_t)errlen, "video stream: out of memory");
        return NULL;
    }
    return s;
}

void ew_video_stream_free(ew_video_stream *s) {
    if (!s) return;
    ew_world_destroy(s->w);
    free(s->sc.ras);
    free(s->prev);
    free(s->tmp);
    free(s);
}

void ew_video_stream_size(const ew_video_stream *s, int *rows, int *cols) {
    *rows = s->cam.rows;
    *cols = s->cam.cols;
}

void ew_video_stream_camera(const ew_video_stream *s, ew_fixed_cfg *cam) { *cam = s->cam; }

/* Per-vehicle appearance from (seed, id): no state needed. */
static void appearance(uint64_t seed, uint32_t id, const ew_video_degrade *d, float *grey, float *sl, float *sw) {
    ew_rng r;
    ew_rng_seed2(&r, seed ^ 0xa5a5a5a5ULL, (uint64_t)id);
    *grey = d->random_intensity ? (float)ew_rng_range(&r, 0.3, 1.0) : 1.0f;
    *sl = d->size_jitter > 0.0f ? (float)ew_rng_range(&r, 1.0 - d->size_jitter, 1.0 + d->size_jitter) : 1.0f;
    *sw = d->size_jitter > 0.0f ? (float)ew_rng_range(&r, 1.0 - d->size_jitter, 1.0 + d->size_jitter) : 1.0f;
}

int ew_video_stream_next(ew_video_stream *s, float *frame, ew_video_truth *truth, int cap, char *err, int errlen) {
    const ew_video_degrade *d = &s->cfg.degrade;
    if (s->cfg.brakes_per_min > 0.0f && ew_rng_uniform(&s->brng) < s->cfg.brakes_per_min * s->cfg.dt / 60.0f) {
        const ew_vehicles *V = ew_world_vehicles(s->w);
        int cand[EW_STREAM_MAX_BOX], nc = 0;
        for (int i = 0; i < V->n && nc < EW_STREAM_MAX_BOX; i++)
            if (V->x[i] >= s->cfg.x0 && V->x[i] < s->cfg.x0 + 0.75f * s->cfg.length_m) cand[nc++] = i;
        if (nc > 0) {
            int i = cand[ew_rng_below(&s->brng, (uint32_t)nc)];
            float dec = (float)ew_rng_range(&s->brng, 2.0, 5.0), dur = (float)ew_rng_range(&s->brng, 1.0, 3.0);
            if (ew_world_brake(s->w, V->id[i], dec, dur, err, errlen) != 0) return -1;
        }
    }
    ew_world_step(s->w, NULL);
    int n = s->cam.rows * s->cam.cols;
    int drop = s->have_prev && d->drop_prob > 0.0f && ew_rng_uniform(&s->rng) < d->drop_prob;
    int nt;
    if (drop) {
        memcpy(frame, s->prev, (size_t)n * sizeof(float));
        nt = s->prev_n;
        memcpy(s->truth, s->prev_truth, (size_t)nt * sizeof(ew_video_truth));
    } else {
        const ew_vehicles *V = ew_world_vehicles(s->w);
        float m = s->cam.m_per_px, xa = s->cam.x0, xb = xa + (float)s->cam.cols * m;
        nt = 0;
        for (int i = 0; i < V->n; i++) {
            float grey, sl, sw;
            appearance(s->seed, V->id[i], d, &grey, &sl, &sw);
            float len = V->len[i] * sl, wid = V->wid[i] * sw;
            if (V->x[i] + 0.5f * len < xa || V->x[i] - 0.5f * len > xb) continue;
            if (nt >= EW_STREAM_MAX_BOX) break;
            vbox b = {V->x[i], V->y[i], V->hx[i], V->hy[i], len, wid, grey};
            s->boxes[nt] = b;
            ew_video_truth *t = &s->truth[nt];
            t->id = V->id[i];
            t->x = V->x[i];
            t->y = V->y[i];
            t->len = len;
            t->wid = wid;
            t->u = (V->x[i] - xa) / m;
            t->v = (s->cam.y0 - V->y[i]) / m;
            t->vx = V->v[i] * V->hx[i];
            t->ax = V->acc[i];
            t->inside = V->x[i] - 0.5f * len >= xa && V->x[i] + 0.5f * len <= xb;
            t->occluded = 0;
            for (int k = 0; k < s->nbars; k++) t->occluded |= V->x[i] >= s->bars[k].xa && V->x[i] <= s->bars[k].xb;
            nt++;
        }
        if (render_view(&s->road, &s->cam, s->boxes, nt, !d->random_intensity && nt <= 64, s->bars, s->nbars, &s->sc,
                        frame) != 0) {
            snprintf(err, (size_t)errlen, "video stream: rendering failed");
            return -1;
        }
        memcpy(s->prev, frame, (size_t)n * sizeof(float));
        memcpy(s->prev_truth, s->truth, (size_t)nt * sizeof(ew_video_truth));
        s->prev_n = nt;
        s->have_prev = 1;
    }
    post_process(frame, s->cam.rows, s->cam.cols, d, &s->rng, s->tmp);
    int k = nt < cap ? nt : cap;
    memcpy(truth, s->truth, (size_t)k * sizeof(ew_video_truth));
    return k;
}
