/* draw.c - the viewer's scene: road, vehicles, ego, overlays, raster inset, HUD, help. */
#include "viz/draw.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "viz/font.h"

static ew_rgba rgba(uint8_t r, uint8_t g, uint8_t b, uint8_t a) {
    ew_rgba c = {r, g, b, a};
    return c;
}
#define RGBA(rgb, a) rgba_from((const uint8_t[]){rgb}, (a))
static ew_rgba rgba_from(const uint8_t c[3], uint8_t a) { return rgba(c[0], c[1], c[2], a); }

static const char *const key_lines[] = {
    "space        pause / resume",
    "n or .       one simulation step (while paused)",
    "+ / -        simulation faster / slower (x2, x0.5)",
    "r            reset the episode with a new seed (seed + 1)",
    "1 or t       planned trajectory overlay",
    "2 or f       imagined futures overlay",
    "3 or c       cost mask overlay",
    "4 or e       motion-predictor ellipses overlay",
    "i / u        raster inset / HUD on or off",
    "arrows       drive the ego: up/down accelerate/brake, left/right steer",
    "m            give the ego back to the controller",
    "wheel, drag  zoom, pan (0 or home: recentre)",
    "F12 or p     screenshot (PNG in the current directory)",
    "h            this help",
    "q or Esc     quit",
    NULL,
};

const char *const *ew_viz_key_lines(void) { return key_lines; }

float ew_viz_marking_px(const ew_road *r, float ppm) {
    float px = r->marking_width * ppm;
    return px < 2.0f ? 2.0f : px;
}

void ew_viz_raster_to_world(const ew_kin_state *pose, float mpp, int h, int w, float row, float col,
                            float *x, float *y) {
    float f = (0.5f * (float)h - (row + 0.5f)) * mpp;
    float l = (0.5f * (float)w - (col + 0.5f)) * mpp;
    *x = pose->x + f * pose->dx - l * pose->dy;
    *y = pose->y + f * pose->dy + l * pose->dx;
}

/* World point -> raster (row, col) of an image centred on pose (floating, pixel units). */
static void world_to_raster(const ew_kin_state *pose, float mpp, int h, int w, float x, float y,
                            float *row, float *col) {
    float rx = x - pose->x, ry = y - pose->y;
    float f = rx * pose->dx + ry * pose->dy;
    float l = -rx * pose->dy + ry * pose->dx;
    *row = 0.5f * (float)h - f / mpp;
    *col = 0.5f * (float)w - l / mpp;
}

/* ---- world-space helpers ------------------------------------------------------------ */

static void wquad(ew_scene *s, const ew_camera *c, const ew_vec2 p[4], ew_rgba col) {
    float x[4], y[4];
    for (int i = 0; i < 4; i++) ew_camera_to_screen(c, p[i].x, p[i].y, &x[i], &y[i]);
    ew_scene_quad(s, x, y, col);
}

/* Rectangle in a body frame: forward [f0, f1], left [l0, l1] around centre c, heading d. */
static void body_rect(ew_scene *s, const ew_camera *cam, ew_vec2 c, ew_vec2 d, float f0, float f1,
                      float l0, float l1, ew_rgba col) {
    ew_vec2 l = ew_v2_perp(d), p[4];
    p[0] = ew_v2_add(c, ew_v2_add(ew_v2_scale(d, f1), ew_v2_scale(l, l1)));
    p[1] = ew_v2_add(c, ew_v2_add(ew_v2_scale(d, f0), ew_v2_scale(l, l1)));
    p[2] = ew_v2_add(c, ew_v2_add(ew_v2_scale(d, f0), ew_v2_scale(l, l0)));
    p[3] = ew_v2_add(c, ew_v2_add(ew_v2_scale(d, f1), ew_v2_scale(l, l0)));
    wquad(s, cam, p, col);
}

static void wline(ew_scene *s, const ew_camera *c, float x0, float y0, float x1, float y1, float px,
                  ew_rgba col) {
    float a, b, e, f;
    ew_camera_to_screen(c, x0, y0, &a, &b);
    ew_camera_to_screen(c, x1, y1, &e, &f);
    ew_scene_line(s, a, b, e, f, px, col);
}

/* Places an image of h x w raster pixels centred on pose (row 0 ahead, column 0 left). */
static uint8_t *raster_image(ew_scene *s, const ew_camera *c, const ew_kin_state *pose, float mpp, int h,
                             int w) {
    float fh = 0.5f * (float)h * mpp, lw = 0.5f * (float)w * mpp;
    float fx[4] = {fh, fh, -fh, -fh}, lx[4] = {lw, -lw, -lw, lw}; /* (0,0) (w,0) (w,h) (0,h) */
    float qx[4], qy[4];
    for (int i = 0; i < 4; i++) {
        float x = pose->x + fx[i] * pose->dx - lx[i] * pose->dy;
        float y = pose->y + fx[i] * pose->dy + lx[i] * pose->dx;
        ew_camera_to_screen(c, x, y, &qx[i], &qy[i]);
    }
    return ew_scene_image(s, w, h, qx, qy);
}

/* ---- road -------------------------------------------------------------------------- */

static int cmpf(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static void draw_lane(ew_scene *s, const ew_camera *cam, const ew_road *r, int li, float x0, float x1) {
    const ew_lane *l = &r->lanes[li];
    float a = fmaxf(x0, l->x_start), b = fminf(x1, l->x_end);
    if (!(b > a)) return;
    float xs[6] = {a, b, l->x_start + l->taper_in, l->x_end - l->taper_out, a, b};
    int n = 0;
    float pts[6];
    for (int i = 0; i < 6; i++)
        if (xs[i] >= a && xs[i] <= b) pts[n++] = xs[i];
    qsort(pts, (size_t)n, sizeof(float), cmpf);
    ew_rgba col = l->kind == EW_LANE_MAIN ? RGBA(EW_VIZ_ASPHALT, 255) : RGBA(EW_VIZ_RAMP, 255);
    float eps = 1e-3f * fmaxf(1.0f, fabsf(l->x_end) * 1e-3f);
    for (int i = 0; i + 1 < n; i++) {
        float xa = pts[i], xb = pts[i + 1];
        if (!(xb > xa)) continue;
        float lo0, hi0, lo1, hi1;
        if (!ew_road_lane_extent(r, li, xa, &lo0, &hi0)) continue;
        if (!ew_road_lane_extent(r, li, xb >= l->x_end ? l->x_end - eps : xb, &lo1, &hi1)) continue;
        ew_vec2 p[4] = {ew_v2(xa, hi0), ew_v2(xb, hi1), ew_v2(xb, lo1), ew_v2(xa, lo0)};
        wquad(s, cam, p, col);
    }
}

/* A closed main lane: hatched taper and a red bar where it ends. */
static void draw_closure(ew_scene *s, const ew_camera *cam, const ew_road *r, int li, float x0, float x1) {
    const ew_lane *l = &r->lanes[li];
    if (l->kind != EW_LANE_MAIN || l->x_end >= r->length - 1e-3f) return;
    float xa = l->x_end - fmaxf(l->taper_out, 2.0f), xb = l->x_end;
    if (xb < x0 || xa > x1) return;
    float ylo = l->y_right, yhi = l->y_right + l->width;
    for (float x = xa; x < xb; x += 2.0f) {
        float e = fminf(x + 1.0f, xb);
        ew_vec2 p[4] = {ew_v2(x, yhi), ew_v2(e, yhi), ew_v2(e, ylo), ew_v2(x, ylo)};
        wquad(s, cam, p, rgba(240, 140, 20, 255));
        if (e < xb) {
            float g = fminf(e + 1.0f, xb);
            ew_vec2 q[4] = {ew_v2(e, yhi), ew_v2(g, yhi), ew_v2(g, ylo), ew_v2(e, ylo)};
            wquad(s, cam, q, rgba(235, 235, 235, 255));
        }
    }
    ew_vec2 bar[4] = {ew_v2(xb, yhi), ew_v2(xb + 0.8f, yhi), ew_v2(xb + 0.8f, ylo), ew_v2(xb, ylo)};
    wquad(s, cam, bar, rgba(220, 30, 30, 255));
}

static void draw_markings(ew_scene *s, const ew_camera *cam, const ew_road *r, float x0, float x1, int depth) {
    ew_segment seg[1024];
    int n = ew_road_markings(r, x0, x1, seg, 1024);
    if (n > 1024 && depth < 12) {
        float xm = 0.5f * (x0 + x1);
        draw_markings(s, cam, r, x0, xm, depth + 1);
        draw_markings(s, cam, r, xm, x1, depth + 1);
        return;
    }
    if (n > 1024) n = 1024;
    float px = ew_viz_marking_px(r, cam->ppm);
    ew_rgba col = RGBA(EW_VIZ_MARKING, 255);
    for (int i = 0; i < n; i++) wline(s, cam, seg[i].a.x, seg[i].a.y, seg[i].b.x, seg[i].b.y, px, col);
}

/* ---- vehicles ------------------------------------------------------------------------ */

typedef struct {
    ew_vec2 c, d;
    float len, wid;
    ew_rgba body;
    int braking;
    int signal;      /* +1 left, -1 right, 0 none */
    int blink_on;
    int outline_cyan; /* replayed (external) vehicle */
} vehicle_look;

static void draw_vehicle(ew_scene *s, const ew_camera *cam, const vehicle_look *v) {
    float hl = 0.5f * v->len, hw = 0.5f * v->wid, o = 1.5f / cam->ppm; /* ~1.5 px outline */
    ew_rgba outline = v->outline_cyan ? rgba(80, 230, 240, 255) : rgba(18, 18, 22, 255);
    body_rect(s, cam, v->c, v->d, -hl - o, hl + o, -hw - o, hw + o, outline);
    body_rect(s, cam, v->c, v->d, -hl, hl, -hw, hw, v->body);
    /* windshield: a darker band in the front third (the centre keeps the body colour) */
    ew_rgba ws = rgba((uint8_t)(v->body.r / 2), (uint8_t)(v->body.g / 2), (uint8_t)(v->body.b / 2), 255);
    body_rect(s, cam, v->c, v->d, hl * 0.35f, hl * 0.65f, -hw * 0.8f, hw * 0.8f, ws);
    float lw = fminf(0.45f, 0.3f * v->wid), ll = fminf(0.45f, 0.15f * v->len);
    if (v->braking) {
        ew_rgba br = RGBA(EW_VIZ_BRAKE, 255);
        body_rect(s, cam, v->c, v->d, -hl, -hl + ll, hw - lw, hw, br);
        body_rect(s, cam, v->c, v->d, -hl, -hl + ll, -hw, -hw + lw, br);
    }
    if (v->signal && v->blink_on) {
        ew_rgba sg = RGBA(EW_VIZ_SIGNAL, 255);
        float l0 = v->signal > 0 ? hw - lw : -hw, l1 = v->signal > 0 ? hw : -hw + lw;
        body_rect(s, cam, v->c, v->d, hl - ll, hl, l0, l1, sg);
        body_rect(s, cam, v->c, v->d, -hl + ll, -hl + 2.0f * ll, l0, l1, sg);
    }
}

static void draw_vehicles(ew_scene *s, const ew_viz_input *in, float x0, float x1) {
    const ew_vehicles *vs = ew_world_vehicles(in->w);
    const ew_road *r = ew_world_road(in->w);
    int blink = fmod(ew_world_time(in->w), 0.8) < 0.45;
    static const uint8_t type_rgb[EW_VT_COUNT][3] = {{EW_VIZ_CAR}, {EW_VIZ_TRUCK}, {EW_VIZ_MOTO}};
    for (int i = 0; i < vs->n; i++) {
        float margin = vs->len[i];
        if (vs->x[i] < x0 - margin || vs->x[i] > x1 + margin) continue;
        vehicle_look v;
        v.c = ew_v2(vs->x[i], vs->y[i]);
        v.d = ew_v2(vs->hx[i], vs->hy[i]);
        v.len = vs->len[i];
        v.wid = vs->wid[i];
        int t = vs->type[i] < EW_VT_COUNT ? vs->type[i] : 0;
        v.body = rgba_from(type_rgb[t], 255);
        if (vs->flags[i] & EW_VF_STALLED) v.body = rgba(150, 150, 150, 255);
        v.braking = vs->acc[i] < -0.5f || (vs->flags[i] & EW_VF_BRAKING) ||
                    ((vs->flags[i] & EW_VF_STALLED) && vs->v[i] > 0.1f);
        v.signal = 0;
        if ((vs->flags[i] & EW_VF_CHANGING) && vs->lane[i] != vs->lane_from[i] && vs->lane[i] >= 0 &&
            vs->lane_from[i] >= 0 && vs->lane[i] < r->n_lanes && vs->lane_from[i] < r->n_lanes)
            v.signal = ew_road_lane_center(r, vs->lane[i]) > ew_road_lane_center(r, vs->lane_from[i]) ? 1 : -1;
        v.blink_on = blink;
        v.outline_cyan = (vs->flags[i] & EW_VF_EXTERNAL) != 0;
        draw_vehicle(s, &in->cam, &v);
    }
    const ew_world_config *cfg = ew_world_config_of(in->w);
    if (cfg->ego_enabled) {
        const ew_kin_state *e = ew_world_ego(in->w);
        vehicle_look v;
        v.c = ew_v2(e->x, e->y);
        v.d = ew_v2(e->dx, e->dy);
        v.len = cfg->ego_length;
        v.wid = cfg->ego_width;
        v.body = RGBA(EW_VIZ_EGO, 255);
        v.braking = in->accel < -0.5f;
        float vy = e->s * e->dy;
        v.signal = vy > 0.3f ? 1 : (vy < -0.3f ? -1 : 0);
        v.blink_on = blink;
        v.outline_cyan = 0;
        draw_vehicle(s, &in->cam, &v);
    }
}

/* ---- overlays ------------------------------------------------------------------------ */

static const uint8_t sample_tint[8][3] = {{255, 90, 90},  {90, 200, 255}, {255, 210, 60}, {160, 255, 120},
                                          {230, 120, 255}, {255, 150, 60}, {90, 255, 220}, {255, 255, 255}};

static uint8_t fade(int t, int n, int a0, int a1) {
    if (n <= 1) return (uint8_t)a0;
    return (uint8_t)(a0 + (a1 - a0) * t / (n - 1));
}

static void draw_cost_world(ew_scene *s, const ew_viz_input *in) {
    const ew_overlay *ov = in->ov;
    if (ov->cost_h <= 0 || ov->cost_w <= 0 || ov->m_per_px <= 0.0f) return;
    uint8_t *px = raster_image(s, &in->cam, &ov->cost_pose, ov->m_per_px, ov->cost_h, ov->cost_w);
    if (!px) return;
    for (int i = 0; i < ov->cost_h * ov->cost_w; i++) {
        float v = ov->cost[i] < 0.0f ? 0.0f : (ov->cost[i] > 1.0f ? 1.0f : ov->cost[i]);
        px[4 * i] = 255;
        px[4 * i + 1] = (uint8_t)(60.0f + 160.0f * (1.0f - v));
        px[4 * i + 2] = 0;
        px[4 * i + 3] = (uint8_t)(150.0f * v);
    }
}

static void draw_futures_world(ew_scene *s, const ew_viz_input *in) {
    const ew_overlay *ov = in->ov;
    if (ov->fut_samples <= 0 || ov->fut_steps <= 0 || ov->m_per_px <= 0.0f) return;
    int stride = (ov->fut_steps + 4) / 5; /* at most 5 steps per sample in the world view */
    for (int t = ov->fut_steps - 1; t >= 0; t -= stride) {
        uint8_t a = fade(t, ov->fut_steps, 170, 40);
        for (int k = 0; k < ov->fut_samples; k++) {
            uint8_t *px = raster_image(s, &in->cam, &ov->fut_pose[t], ov->m_per_px, ov->fut_h, ov->fut_w);
            if (!px) return;
            const uint8_t *img = ov->fut[k][t];
            for (int i = 0; i < ov->fut_h * ov->fut_w; i++) {
                px[4 * i] = sample_tint[k % 8][0];
                px[4 * i + 1] = sample_tint[k % 8][1];
                px[4 * i + 2] = sample_tint[k % 8][2];
                px[4 * i + 3] = (uint8_t)((img[i] * a + 127) / 255 / (unsigned)(ov->fut_samples > 2 ? 2 : 1));
            }
        }
    }
}

static void draw_plan(ew_scene *s, const ew_viz_input *in) {
    const ew_overlay *ov = in->ov;
    ew_rgba c = RGBA(EW_VIZ_PLAN, 255);
    for (int i = 0; i + 1 < ov->n_plan; i++) {
        c.a = fade(i, ov->n_plan - 1, 240, 70);
        wline(s, &in->cam, ov->plan[i].x, ov->plan[i].y, ov->plan[i + 1].x, ov->plan[i + 1].y, 3.0f, c);
    }
    for (int i = 0; i < ov->n_plan; i += 5) {
        float x, y;
        ew_camera_to_screen(&in->cam, ov->plan[i].x, ov->plan[i].y, &x, &y);
        c.a = fade(i, ov->n_plan, 255, 90);
        ew_scene_rect(s, x - 3.0f, y - 3.0f, x + 3.0f, y + 3.0f, c);
    }
}

static void draw_ellipses(ew_scene *s, const ew_viz_input *in, float x0, float x1) {
    const ew_overlay *ov = in->ov;
    for (int a = 0; a < ov->n_agents; a++) {
        const ew_overlay_agent *ag = &ov->agents[a];
        int n = ag->n < EW_OV_MAX_STEPS ? ag->n : EW_OV_MAX_STEPS;
        int stride = n > 3 ? n / 3 : 1; /* three ellipses per agent (e.g. 1, 2, 3 s) */
        for (int t = stride - 1; t < n; t += stride) {
            float cxx = ag->cov[t][0], cxy = ag->cov[t][1], cyy = ag->cov[t][2];
            if (!(cxx > 0.0f)) continue;
            float l11 = sqrtf(cxx), l21 = cxy / l11, r = cyy - l21 * l21;
            float l22 = r > 0.0f ? sqrtf(r) : 0.0f;
            ew_vec2 m = ag->mean[t];
            if (m.x < x0 - 20.0f || m.x > x1 + 20.0f) continue;
            ew_rgba c = rgba(255, 80, 200, fade(t, n, 230, 70));
            const int K = 20;
            for (int ns = 1; ns <= 2; ns++) { /* 1 sigma (full) and 2 sigma (fainter) */
                ew_rgba cc = c;
                if (ns == 2) cc.a = (uint8_t)(cc.a / 2);
                float px = 0, py = 0;
                for (int k = 0; k <= K; k++) {
                    float th = 6.2831853f * (float)k / (float)K;
                    float u = (float)ns * cosf(th), v = (float)ns * sinf(th);
                    float x = m.x + l11 * u, y = m.y + l21 * u + l22 * v;
                    if (k > 0) wline(s, &in->cam, px, py, x, y, 1.5f, cc);
                    px = x;
                    py = y;
                }
            }
            float sx, sy;
            ew_camera_to_screen(&in->cam, m.x, m.y, &sx, &sy);
            ew_scene_rect(s, sx - 1.5f, sy - 1.5f, sx + 1.5f, sy + 1.5f, c);
        }
    }
}

/* ---- inset ------------------------------------------------------------------------- */

void ew_viz_inset_layout_for(int win_w, int win_h, int rc, int rh, int rw, int has_cost,
                             ew_viz_inset_layout *L) {
    memset(L, 0, sizeof *L);
    if (rh <= 0 || rw <= 0) return;
    int k = 4;
    while (k > 1 && rh * k > (int)(0.62f * (float)win_h)) k--;
    int kc = k > 1 ? k - 1 : 1;
    int nch = rc < 4 ? rc : 4;
    const int pad = 6, label = 14;
    L->scale_composite = k;
    L->scale_channel = kc;
    L->n_channels = nch;
    int w = pad + rw * k + pad;
    int tiles = nch + (has_cost ? 1 : 0);
    w += tiles * (rw * kc + pad);
    int h = pad + label + rh * k + pad;
    L->panel.w = w;
    L->panel.h = h;
    L->panel.x = win_w - 8 - w;
    L->panel.y = 8;
    if (L->panel.x < 0) L->panel.x = 0;
    int x = L->panel.x + pad, y = L->panel.y + pad + label;
    L->composite = (ew_viz_rect){x, y, rw * k, rh * k};
    x += rw * k + pad;
    for (int c = 0; c < nch; c++) {
        L->channel[c] = (ew_viz_rect){x, y, rw * kc, rh * kc};
        x += rw * kc + pad;
    }
    if (has_cost) L->cost = (ew_viz_rect){x, y, rw * kc, rh * kc};
}

static void put_block(uint8_t *img, int iw, int x, int y, int k, const uint8_t c[3]) {
    for (int dy = 0; dy < k; dy++)
        for (int dx = 0; dx < k; dx++) {
            uint8_t *p = img + ((size_t)(y + dy) * (size_t)iw + (size_t)(x + dx)) * 4;
            p[0] = c[0];
            p[1] = c[1];
            p[2] = c[2];
            p[3] = 255;
        }
}

static void mix3(float *acc, const uint8_t c[3], float a) {
    for (int i = 0; i < 3; i++) acc[i] = acc[i] * (1.0f - a) + (float)c[i] * a;
}

static void draw_inset(ew_scene *s, const ew_viz_input *in) {
    const ew_viz_raster *R = &in->raster;
    const ew_overlay *ov = in->ov;
    int has_cost = ov && in->show[EW_OVL_COST] && ov->cost_h > 0 && ov->cost_w > 0;
    ew_viz_inset_layout L;
    ew_viz_inset_layout_for(in->cam.w, in->cam.h, R->c, R->h, R->w, has_cost, &L);
    if (L.panel.w <= 0) return;
    float qx[4] = {(float)L.panel.x, (float)(L.panel.x + L.panel.w), (float)(L.panel.x + L.panel.w), (float)L.panel.x};
    float qy[4] = {(float)L.panel.y, (float)L.panel.y, (float)(L.panel.y + L.panel.h), (float)(L.panel.y + L.panel.h)};
    uint8_t *img = ew_scene_image(s, L.panel.w, L.panel.h, qx, qy);
    if (!img) return;
    int W = L.panel.w;
    for (int i = 0; i < L.panel.w * L.panel.h; i++) {
        img[4 * i] = 16;
        img[4 * i + 1] = 16;
        img[4 * i + 2] = 20;
        img[4 * i + 3] = 215;
    }
    const uint8_t white[4] = {230, 230, 230, 255};
    const size_t plane = (size_t)R->h * (size_t)R->w;
    const ew_kin_state *ego = ew_world_ego(in->w);
    /* composite: off-road dark green, lanes white, vehicles red, ego green; futures and cost blended */
    static const uint8_t c_off[3] = {60, 95, 50}, c_lane[3] = {235, 235, 235}, c_veh[3] = {235, 60, 60},
                         c_ego[3] = {EW_VIZ_EGO};
    for (int r = 0; r < R->h; r++)
        for (int c = 0; c < R->w; c++) {
            size_t i = (size_t)r * (size_t)R->w + (size_t)c;
            float acc[3] = {40, 40, 44};
            if (R->c > 2) mix3(acc, c_off, (float)R->data[2 * plane + i] / 255.0f);
            if (R->c > 0) mix3(acc, c_lane, (float)R->data[i] / 255.0f);
            if (R->c > 1) mix3(acc, c_veh, (float)R->data[plane + i] / 255.0f);
            if (R->c > 3) mix3(acc, c_ego, 0.8f * (float)R->data[3 * plane + i] / 255.0f);
            if (has_cost) {
                float row, col;
                float x, y;
                ew_viz_raster_to_world(ego, R->m_per_px, R->h, R->w, (float)r, (float)c, &x, &y);
                world_to_raster(&ov->cost_pose, ov->m_per_px, ov->cost_h, ov->cost_w, x, y, &row, &col);
                int ir = (int)floorf(row), ic = (int)floorf(col);
                if (ir >= 0 && ir < ov->cost_h && ic >= 0 && ic < ov->cost_w) {
                    float v = ov->cost[ir * ov->cost_w + ic];
                    static const uint8_t c_cost[3] = {255, 150, 0};
                    mix3(acc, c_cost, 0.6f * (v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v)));
                }
            }
            if (ov && in->show[EW_OVL_FUTURES] && ov->fut_samples > 0 && ov->m_per_px > 0.0f) {
                float x, y;
                ew_viz_raster_to_world(ego, R->m_per_px, R->h, R->w, (float)r, (float)c, &x, &y);
                for (int t = 0; t < ov->fut_steps; t++) {
                    float row, col;
                    world_to_raster(&ov->fut_pose[t], ov->m_per_px, ov->fut_h, ov->fut_w, x, y, &row, &col);
                    int ir = (int)floorf(row), ic = (int)floorf(col);
                    if (ir < 0 || ir >= ov->fut_h || ic < 0 || ic >= ov->fut_w) continue;
                    float a = (float)fade(t, ov->fut_steps, 200, 40) / 255.0f / (float)ov->fut_samples;
                    for (int k = 0; k < ov->fut_samples; k++) {
                        float v = (float)ov->fut[k][t][ir * ov->fut_w + ic] / 255.0f;
                        if (v > 0.0f) mix3(acc, sample_tint[k % 8], a * v);
                    }
                }
            }
            uint8_t px[3] = {(uint8_t)(acc[0] + 0.5f), (uint8_t)(acc[1] + 0.5f), (uint8_t)(acc[2] + 0.5f)};
            put_block(img, W, L.composite.x - L.panel.x + c * L.scale_composite,
                      L.composite.y - L.panel.y + r * L.scale_composite, L.scale_composite, px);
            for (int ch = 0; ch < L.n_channels; ch++) {
                uint8_t v = R->data[(size_t)ch * plane + i];
                uint8_t g[3] = {v, v, v};
                put_block(img, W, L.channel[ch].x - L.panel.x + c * L.scale_channel,
                          L.channel[ch].y - L.panel.y + r * L.scale_channel, L.scale_channel, g);
            }
        }
    if (has_cost) {
        for (int r = 0; r < R->h; r++)
            for (int c = 0; c < R->w; c++) {
                uint8_t g[3] = {0, 0, 0};
                if (r < ov->cost_h && c < ov->cost_w) {
                    float v = ov->cost[r * ov->cost_w + c];
                    v = v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v);
                    g[0] = (uint8_t)(255.0f * v);
                    g[1] = (uint8_t)(120.0f * v);
                }
                put_block(img, W, L.cost.x - L.panel.x + c * L.scale_channel,
                          L.cost.y - L.panel.y + r * L.scale_channel, L.scale_channel, g);
            }
    }
    static const char *const names[4] = {"lanes", "veh", "off", "ego"};
    ew_font_draw(img, W, L.panel.h, L.composite.x - L.panel.x, 6, 1, "raster", white);
    for (int ch = 0; ch < L.n_channels; ch++)
        ew_font_draw(img, W, L.panel.h, L.channel[ch].x - L.panel.x, 6, 1, names[ch], white);
    if (has_cost) ew_font_draw(img, W, L.panel.h, L.cost.x - L.panel.x, 6, 1, "cost", white);
}

/* ---- HUD and help -------------------------------------------------------------------- */

/* A text panel: lines of text on a translucent background at (x, y) (negative x: from the
 * right edge, negative y: from the bottom; centre when both are 0x7fff). */
static void text_panel(ew_scene *s, int x, int y, int scale, const char *text, const uint8_t fg[4]) {
    int lines = 1;
    for (const char *p = text; *p; p++) lines += *p == '\n';
    int w = ew_font_text_width(text, scale) + 12, h = lines * EW_FONT_LINE * scale + 10;
    if (x == 0x7fff) x = (s->width - w) / 2;
    if (y == 0x7fff) y = (s->height - h) / 2;
    if (x < 0) x = s->width - w + x;
    if (y < 0) y = s->height - h + y;
    float qx[4] = {(float)x, (float)(x + w), (float)(x + w), (float)x};
    float qy[4] = {(float)y, (float)y, (float)(y + h), (float)(y + h)};
    uint8_t *img = ew_scene_image(s, w, h, qx, qy);
    if (!img) return;
    for (int i = 0; i < w * h; i++) {
        img[4 * i] = 12;
        img[4 * i + 1] = 12;
        img[4 * i + 2] = 16;
        img[4 * i + 3] = 200;
    }
    ew_font_draw(img, w, h, 6, 6, scale, text, fg);
}

static int append(char *buf, int cap, int n, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int append(char *buf, int cap, int n, const char *fmt, ...) {
    if (n >= cap) return n;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf + n, (size_t)(cap - n), fmt, ap);
    va_end(ap);
    if (k < 0) return n;
    return n + k >= cap ? cap - 1 : n + k;
}

static void draw_hud(ew_scene *s, const ew_viz_input *in) {
    char t[2048];
    int n = 0;
    const ew_kin_state *e = ew_world_ego(in->w);
    const ew_road *road = ew_world_road(in->w);
    const ew_episode *ep = in->ep;
    n = append(t, (int)sizeof t, n, "t %.1f s  seed %llu%s", ew_world_time(in->w), (unsigned long long)in->seed,
               in->paused ? "  [PAUSED]" : "");
    n = append(t, (int)sizeof t, n, "\nspeed %.2f m/s (%.0f km/h)  accel %+.2f m/s2  curv %+.4f 1/m",
               (double)e->s, (double)e->s * 3.6, (double)in->accel, (double)in->curv);
    int lane = ew_road_lane_at(road, e->x, e->y);
    n = append(t, (int)sizeof t, n, "\nx %.1f m  y %.2f m  lane %d", (double)e->x, (double)e->y, lane);
    if (ep) {
        const ew_episode_metrics *m = &ep->m;
        float left = ep->cfg.goal_distance - m->distance;
        n = append(t, (int)sizeof t, n, "\ngoal %.1f m to go (%.1f of %.0f m)", (double)(left > 0.0f ? left : 0.0f),
                   (double)m->distance, (double)ep->cfg.goal_distance);
        const char *st = m->status == EW_EP_RUNNING ? (ew_episode_in_warmup(ep) ? "RUNNING (warm-up)" : "RUNNING")
                                                    : ew_episode_status_name(m->status);
        n = append(t, (int)sizeof t, n, "\nstatus %s  success %s  collision %s  off-road %s", st,
                   m->success ? "yes" : "no", m->collision ? "YES" : "no", m->offroad ? "YES" : "no");
        if (isinf(m->min_ttc))
            n = append(t, (int)sizeof t, n, "\nmin TTC none  mean speed %.2f m/s  |jerk| %.2f", (double)m->mean_speed,
                       (double)m->mean_abs_jerk);
        else
            n = append(t, (int)sizeof t, n, "\nmin TTC %.2f s  mean speed %.2f m/s  |jerk| %.2f", (double)m->min_ttc,
                       (double)m->mean_speed, (double)m->mean_abs_jerk);
    }
    n = append(t, (int)sizeof t, n, "\ndriver %s", in->manual ? "MANUAL (arrows; m: controller)"
                                                      : (in->controller ? in->controller : "none"));
    if (in->ov && in->ov->n_costs > 0) {
        n = append(t, (int)sizeof t, n, "\ncosts (%s):", in->ov->source[0] ? in->ov->source : "overlay");
        for (int i = 0; i < in->ov->n_costs; i++)
            n = append(t, (int)sizeof t, n, "%s %s %.3g", i % 3 == 0 && i ? "\n " : "", in->ov->costs[i].name,
                       (double)in->ov->costs[i].value);
    }
    const ew_vehicles *vs = ew_world_vehicles(in->w);
    n = append(t, (int)sizeof t, n, "\nvehicles %d  speed x%g", vs->n, (double)in->speed_factor);
    if (in->sim_rate >= 0.0f)
        n = append(t, (int)sizeof t, n, "  sim %.1f steps/s  render %.1f fps", (double)in->sim_rate,
                   (double)in->render_rate);
    static const char *const ovn[EW_OVL_COUNT] = {"plan", "futures", "cost", "ellipses"};
    n = append(t, (int)sizeof t, n, "\noverlays");
    for (int k = 0; k < EW_OVL_COUNT; k++) {
        const char *have = "";
        if (in->ov) {
            int has = k == EW_OVL_PLAN ? in->ov->n_plan > 0
                    : k == EW_OVL_FUTURES ? in->ov->fut_samples > 0
                    : k == EW_OVL_COST ? in->ov->cost_h > 0 : in->ov->n_agents > 0;
            if (!has) have = " (no data)";
        }
        n = append(t, (int)sizeof t, n, " %d:%s %s%s", k + 1, ovn[k], in->show[k] ? "on" : "off", have);
    }
    n = append(t, (int)sizeof t, n, "\nh: help");
    if (in->message && in->message[0]) n = append(t, (int)sizeof t, n, "\n%s", in->message);
    (void)n;
    const uint8_t fg[4] = {235, 235, 235, 255};
    text_panel(s, 8, 8, s->width >= 1000 ? 2 : 1, t, fg);
}

static void draw_help(ew_scene *s) {
    char t[2048];
    int n = append(t, (int)sizeof t, 0, "keys");
    for (int i = 0; key_lines[i]; i++) n = append(t, (int)sizeof t, n, "\n%s", key_lines[i]);
    const uint8_t fg[4] = {255, 240, 160, 255};
    text_panel(s, 0x7fff, 0x7fff, s->width >= 1000 ? 2 : 1, t, fg);
}

/* ---- the frame ----------------------------------------------------------------------- */

int ew_viz_build(ew_scene *s, const ew_viz_input *in) {
    const ew_camera *cam = &in->cam;
    ew_scene_begin(s, cam->w, cam->h, RGBA(EW_VIZ_OFFROAD, 255));
    const ew_road *r = ew_world_road(in->w);
    float half = 0.5f * (float)cam->w / cam->ppm + 2.0f;
    float x0 = cam->cx - half, x1 = cam->cx + half;
    for (int i = 0; i < r->n_lanes; i++) draw_closure(s, cam, r, i, x0, x1);
    for (int i = 0; i < r->n_lanes; i++) draw_lane(s, cam, r, i, x0, x1);
    draw_markings(s, cam, r, x0 < 0.0f ? 0.0f : x0, x1, 0);
    if (in->ov && in->show[EW_OVL_COST]) draw_cost_world(s, in);
    if (in->ov && in->show[EW_OVL_FUTURES]) draw_futures_world(s, in);
    /* plan and ellipses under the vehicles: every vehicle and the ego stay visible */
    if (in->ov && in->show[EW_OVL_PLAN]) draw_plan(s, in);
    if (in->ov && in->show[EW_OVL_ELLIPSES]) draw_ellipses(s, in, x0, x1);
    draw_vehicles(s, in, x0, x1);
    if (in->show_inset && in->raster.data) draw_inset(s, in);
    if (in->show_hud) draw_hud(s, in);
    if (in->show_help) draw_help(s);
    return ew_scene_failed(s) ? -1 : 0;
}
