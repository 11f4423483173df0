/* test_raster.c - raster observations: exact coverage of aligned boxes, coverage conservation
 * and agreement with brute-force supersampling for rotated boxes, markings and off-road,
 * smoothness under sub-pixel motion, orientation of both views, the ego channel, uint8 ->
 * float, PNG round trips and error handling, and golden images of four fixed scenes.
 *
 *   test_raster                        run the tests (golden files in tests/golden/)
 *   test_raster --write-golden [DIR]   regenerate the PNGs in tests/golden and write x6 composite
 *                                      previews for viewing into DIR (default /tmp)
 *   test_raster --bench [SECONDS]      rasters per second (uint8 and float output) on a dense
 *                                      highway scene, one thread, median of 7 runs
 */
#define _POSIX_C_SOURCE 199309L /* clock_gettime */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sim/png.h"
#include "sim/raster.h"
#include "sim/rng.h"
#include "sim/road.h"
#include "tests/check.h"

#define NCH EW_RASTER_CHANNELS

typedef struct {
    float x[64], y[64], hx[64], hy[64], len[64], wid[64];
    int n;
} boxset;

static void add_box(boxset *b, float x, float y, float t, float len, float wid) {
    int i = b->n++;
    b->x[i] = x;
    b->y[i] = y;
    b->hx[i] = cosf(t);
    b->hy[i] = sinf(t);
    if (t == 0.0f) { b->hx[i] = 1.0f; b->hy[i] = 0.0f; }
    b->len[i] = len;
    b->wid[i] = wid;
}

static ew_boxes view(const boxset *b) {
    ew_boxes v = {b->x, b->y, b->hx, b->hy, b->len, b->wid, b->n};
    return v;
}

static ew_road road3(void) {
    ew_road r;
    char err[256];
    if (ew_road_init_highway(&r, 3, 3.7f, 1000.0f, 30.0f, err, (int)sizeof err) != 0) {
        fprintf(stderr, "road: %s\n", err);
        exit(1);
    }
    return r;
}

static ew_road road_ramp(void) {
    ew_road r = road3();
    char err[256];
    if (ew_road_add_onramp(&r, 100.0f, 300.0f, 80.0f, 25.0f, err, (int)sizeof err) != 0) {
        fprintf(stderr, "ramp: %s\n", err);
        exit(1);
    }
    return r;
}

static ew_kin_state ego_at(float x, float y, float t) {
    ew_kin_state e = {x, y, cosf(t), sinf(t), 20.0f};
    if (t == 0.0f) { e.dx = 1.0f; e.dy = 0.0f; }
    return e;
}

static uint8_t *plane(uint8_t *ras, int ch, const ew_raster_cfg *c) { return ras + (size_t)ch * (size_t)c->rows * (size_t)c->cols; }

static double chan_sum(const uint8_t *p, int n) {
    double s = 0.0;
    for (int i = 0; i < n; i++) s += p[i];
    return s;
}

/* World point of continuous pixel coordinate (u, v) in the ego view. */
static void px_to_world(const ew_raster_cfg *c, const ew_kin_state *e, float u, float v, float *x, float *y) {
    float f = (0.5f * (float)c->rows - v) * c->m_per_px, l = (0.5f * (float)c->cols - u) * c->m_per_px;
    *x = e->x + f * e->dx - l * e->dy;
    *y = e->y + f * e->dy + l * e->dx;
}

/* ---- exact coverage of an aligned box -------------------------------------------------- */

static void test_aligned_box(void) {
    ew_raster_cfg c;
    ew_raster_cfg_default(&c);
    ew_road r = road3();
    ew_kin_state e = ego_at(200.0f, 5.55f, 0.0f);
    uint8_t *ras = malloc((size_t)NCH * 117 * 24);
    /* box covering columns [5, 8) and rows [20, 30) exactly: 10 px long, 3 px wide */
    float m = c.m_per_px;
    for (int k = 0; k < 2; k++) {
        float du = k ? 0.3f : 0.0f, dv = k ? 0.6f : 0.0f;
        float uc = 6.5f + du, vc = 25.0f + dv, x, y;
        px_to_world(&c, &e, uc, vc, &x, &y);
        boxset b = {0};
        add_box(&b, x, y, 0.0f, 10.0f * m, 3.0f * m);
        ew_boxes bv = view(&b);
        CHECK(ew_raster_ego(&c, &r, &e, 4.5f, 1.8f, &bv, ras) == 0, "render");
        const uint8_t *veh = plane(ras, EW_CH_VEHICLES, &c);
        int bad = 0;
        for (int row = 0; row < c.rows; row++)
            for (int col = 0; col < c.cols; col++) {
                /* closed form: overlap of [5 + du, 8 + du] x [20 + dv, 30 + dv] with the pixel */
                double ou = fmax(0.0, fmin(col + 1.0, 8.0 + du) - fmax((double)col, 5.0 + du));
                double ov = fmax(0.0, fmin(row + 1.0, 30.0 + dv) - fmax((double)row, 20.0 + dv));
                double want = 255.0 * ou * ov;
                if (fabs(veh[row * c.cols + col] - want) > 1.0) {
                    if (bad++ < 5) fprintf(stderr, "  offset %d: pixel (%d,%d) = %d, want %.2f\n", k, row, col, veh[row * c.cols + col], want);
                }
            }
        CHECK(bad == 0, "aligned box at offset %d: %d pixels off the closed form", k, bad);
        if (k == 0) {
            CHECK(veh[25 * 24 + 6] == 255 && veh[20 * 24 + 5] == 255 && veh[29 * 24 + 7] == 255, "inside 255");
            CHECK(veh[19 * 24 + 6] == 0 && veh[25 * 24 + 4] == 0 && veh[25 * 24 + 8] == 0 && veh[30 * 24 + 6] == 0, "outside 0");
        } else {
            CHECK(veh[21 * 24 + 6] == 255, "interior");
            CHECK(abs(veh[25 * 24 + 5] - 179) <= 1, "left edge 0.7 -> %d", veh[25 * 24 + 5]);
            CHECK(abs(veh[25 * 24 + 8] - 77) <= 1, "right edge 0.3 -> %d", veh[25 * 24 + 8]);
            CHECK(abs(veh[20 * 24 + 6] - 102) <= 1, "top edge 0.4 -> %d", veh[20 * 24 + 6]);
            CHECK(abs(veh[30 * 24 + 6] - 153) <= 1, "bottom edge 0.6 -> %d", veh[30 * 24 + 6]);
            CHECK(abs(veh[20 * 24 + 5] - 71) <= 1, "corner 0.7 * 0.4 -> %d", veh[20 * 24 + 5]);
        }
    }
    free(ras);
}

/* ---- supersampled references --------------------------------------------------------------- */

static int in_box(float px, float py, float x, float y, float hx, float hy, float len, float wid) {
    float rx = px - x, ry = py - y;
    return fabsf(rx * hx + ry * hy) <= 0.5f * len && fabsf(-rx * hy + ry * hx) <= 0.5f * wid;
}

/* Channel `ch` by brute force: n x n samples per pixel. */
static void reference(const ew_raster_cfg *c, const ew_road *r, const ew_kin_state *e, const boxset *b, int ch, int n,
                      float *out) {
    ew_segment seg[512];
    int ns = 0;
    if (ch == EW_CH_MARKINGS) ns = ew_road_markings(r, e->x - 60.0f, e->x + 60.0f, seg, 512);
    for (int row = 0; row < c->rows; row++)
        for (int col = 0; col < c->cols; col++) {
            int hit = 0;
            if (ch == EW_CH_MARKINGS) { /* markings combine by max: the best single segment */
                for (int k = 0; k < ns; k++) {
                    ew_vec2 d = ew_v2_sub(seg[k].b, seg[k].a);
                    float L = ew_v2_norm(d);
                    if (L <= 0.0f) continue;
                    d = ew_v2_scale(d, 1.0f / L);
                    ew_vec2 mid = ew_v2_scale(ew_v2_add(seg[k].a, seg[k].b), 0.5f);
                    int h = 0;
                    for (int i = 0; i < n; i++)
                        for (int j = 0; j < n; j++) {
                            float x, y;
                            px_to_world(c, e, (float)col + ((float)j + 0.5f) / (float)n, (float)row + ((float)i + 0.5f) / (float)n, &x, &y);
                            h += in_box(x, y, mid.x, mid.y, d.x, d.y, L, seg[k].width);
                        }
                    if (h > hit) hit = h;
                }
                out[row * c->cols + col] = 255.0f * (float)hit / (float)(n * n);
                continue;
            }
            for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++) {
                    float x, y;
                    px_to_world(c, e, (float)col + ((float)j + 0.5f) / (float)n, (float)row + ((float)i + 0.5f) / (float)n, &x, &y);
                    int in = 0;
                    if (ch == EW_CH_OFFROAD) in = !ew_road_drivable(r, x, y);
                    else if (ch == EW_CH_VEHICLES) {
                        for (int k = 0; k < b->n && !in; k++) in = in_box(x, y, b->x[k], b->y[k], b->hx[k], b->hy[k], b->len[k], b->wid[k]);
                    }
                    hit += in;
                }
            out[row * c->cols + col] = 255.0f * (float)hit / (float)(n * n);
        }
}

static void compare_ref(const char *what, const uint8_t *got, const float *ref, int np, double max_tol, double mean_tol) {
    double mx = 0.0, sum = 0.0;
    for (int i = 0; i < np; i++) {
        double d = fabs(got[i] - ref[i]);
        sum += d;
        if (d > mx) mx = d;
    }
    CHECK(mx <= max_tol && sum / np <= mean_tol, "%s: max abs error %.1f (tol %.1f), mean %.3f (tol %.3f)", what, mx, max_tol,
          sum / np, mean_tol);
}

static void scene_cars(boxset *b, float ex) {
    b->n = 0;
    add_box(b, ex + 14.0f, 5.55f, 0.0f, 4.6f, 1.85f);          /* ahead, same lane */
    add_box(b, ex - 12.3f, 5.55f, 0.0f, 4.4f, 1.8f);           /* behind */
    add_box(b, ex + 3.2f, 9.25f, 0.0f, 4.8f, 1.9f);            /* left lane */
    add_box(b, ex - 4.7f, 1.85f, 0.0f, 12.0f, 2.5f);           /* truck, right lane */
    add_box(b, ex + 27.9f, 3.9f, 0.07f, 4.5f, 1.8f);           /* changing lanes left */
    add_box(b, ex + 31.0f, 9.4f, -0.03f, 4.2f, 1.75f);         /* slightly rotated, far ahead */
    add_box(b, ex - 33.0f, 1.85f, 0.0f, 4.5f, 1.8f);           /* partly out of view */
    add_box(b, ex + 80.0f, 5.55f, 0.0f, 4.5f, 1.8f);           /* out of view */
}

static void test_against_supersampling(void) {
    ew_raster_cfg c;
    ew_raster_cfg_default(&c);
    int np = c.rows * c.cols;
    uint8_t *ras = malloc((size_t)NCH * (size_t)np);
    float *ref = malloc(sizeof(float) * (size_t)np);
    boxset b;
    struct { ew_road road; float x, y, t; const char *name; } sc[3] = {
        {road3(), 200.0f, 5.55f, 0.0f, "straight"},
        {road3(), 200.0f, 5.9f, 0.1745f, "ego rotated 10 deg"},
        {road_ramp(), 260.0f, 1.6f, 0.03f, "on-ramp taper"},
    };
    for (int k = 0; k < 3; k++) {
        ew_kin_state e = ego_at(sc[k].x, sc[k].y, sc[k].t);
        scene_cars(&b, sc[k].x);
        ew_boxes bv = view(&b);
        CHECK(ew_raster_ego(&c, &sc[k].road, &e, 4.5f, 1.8f, &bv, ras) == 0, "render");
        char what[128];
        reference(&c, &sc[k].road, &e, &b, EW_CH_OFFROAD, 32, ref);
        snprintf(what, sizeof what, "%s: off-road", sc[k].name);
        compare_ref(what, plane(ras, EW_CH_OFFROAD, &c), ref, np, 4.0, 0.15);
        reference(&c, &sc[k].road, &e, &b, EW_CH_VEHICLES, 32, ref);
        snprintf(what, sizeof what, "%s: vehicles", sc[k].name);
        compare_ref(what, plane(ras, EW_CH_VEHICLES, &c), ref, np, 8.0, 0.3);
        reference(&c, &sc[k].road, &e, &b, EW_CH_MARKINGS, 32, ref);
        snprintf(what, sizeof what, "%s: markings", sc[k].name);
        compare_ref(what, plane(ras, EW_CH_MARKINGS, &c), ref, np, 8.0, 0.3);
    }
    free(ras);
    free(ref);
}

/* ---- conservation, smoothness, orientation ---------------------------------------------------- */

static void test_conservation(void) {
    ew_raster_cfg c;
    ew_raster_cfg_default(&c);
    int np = c.rows * c.cols;
    uint8_t *ras = malloc((size_t)NCH * (size_t)np);
    ew_road r = road3();
    ew_kin_state e = ego_at(500.0f, 5.55f, 0.0f);
    double worst = 0.0;
    for (int k = 0; k < 24; k++) {
        float t = 0.13f * (float)k; /* 0 .. 171 deg */
        boxset b = {0};
        add_box(&b, 500.0f + 7.3f + 0.11f * (float)k, 5.2f + 0.07f * (float)k, t, 4.6f, 1.9f);
        ew_boxes bv = view(&b);
        ew_raster_ego(&c, &r, &e, 4.5f, 1.8f, &bv, ras);
        double got = chan_sum(plane(ras, EW_CH_VEHICLES, &c), np) / 255.0;
        double want = 4.6 * 1.9 / (c.m_per_px * c.m_per_px);
        double rel = fabs(got - want) / want;
        if (rel > worst) worst = rel;
    }
    CHECK(worst < 0.006, "rotated boxes: vehicle-channel sum off the area by %.4f (relative)", worst);
    /* the ego channel holds the ego's area and is centred at (cols/2, rows/2) */
    ew_boxes none = {0};
    ew_kin_state e2 = ego_at(500.3f, 5.1f, 0.4f);
    ew_raster_ego(&c, &r, &e2, 4.5f, 1.8f, &none, ras);
    const uint8_t *eg = plane(ras, EW_CH_EGO, &c);
    double s = 0, su = 0, sv = 0;
    for (int row = 0; row < c.rows; row++)
        for (int col = 0; col < c.cols; col++) {
            double w = eg[row * c.cols + col];
            s += w;
            su += w * (col + 0.5);
            sv += w * (row + 0.5);
        }
    CHECK_NEAR(s / 255.0, 4.5 * 1.8 / (c.m_per_px * c.m_per_px), 0.05);
    CHECK_NEAR(su / s, 12.0, 1e-3);
    CHECK_NEAR(sv / s, 58.5, 1e-3);
    int sym = 1;
    for (int row = 0; row < c.rows; row++)
        for (int col = 0; col < c.cols; col++)
            if (eg[row * c.cols + col] != eg[(c.rows - 1 - row) * c.cols + (c.cols - 1 - col)]) sym = 0;
    CHECK(sym, "ego channel point-symmetric about the centre");
    CHECK(eg[58 * 24 + 12] == 255 && eg[58 * 24 + 11] == 255, "ego centre covered");
    free(ras);
}

static void test_smooth_motion(void) {
    ew_raster_cfg c;
    ew_raster_cfg_default(&c);
    int np = c.rows * c.cols;
    uint8_t *a = malloc((size_t)NCH * (size_t)np), *b2 = malloc((size_t)NCH * (size_t)np);
    ew_road r = road3();
    float m = c.m_per_px, delta = 0.05f * m; /* 0.05 px */
    const float angles[3] = {0.0f, 0.05f, 0.6f};
    for (int k = 0; k < 3; k++) {
        for (int dir = 0; dir < 2; dir++) {
            ew_kin_state e = ego_at(300.0f, 5.55f, 0.0f);
            boxset b = {0};
            add_box(&b, 310.13f, 6.07f, angles[k], 4.5f, 1.8f);
            ew_boxes bv = view(&b);
            ew_raster_ego(&c, &r, &e, 4.5f, 1.8f, &bv, a);
            /* move the vehicle (dir 0: forward, 1: sideways) and, separately, the ego */
            b.x[0] += dir ? 0.0f : delta;
            b.y[0] += dir ? delta : 0.0f;
            ew_raster_ego(&c, &r, &e, 4.5f, 1.8f, &bv, b2);
            double l1 = 0.0;
            int mx = 0;
            for (int i = 0; i < np; i++) {
                int d = abs(a[np + i] - b2[np + i]);
                l1 += d;
                if (d > mx) mx = d;
            }
            /* an edge of length L px moving 0.05 px sweeps 0.05 L px^2 */
            double bound = 255.0 * 0.05 * 2.0 * (4.5 + 1.8) / m * 1.2 + 40.0;
            CHECK(l1 > 0.0 && l1 <= bound && mx <= 20, "angle %g dir %d: L1 %.0f (bound %.0f), max %d", angles[k], dir, l1, bound, mx);
        }
    }
    /* ego moves 0.05 px sideways: the road channels change a little everywhere, not a jump */
    ew_kin_state e = ego_at(300.0f, 5.55f, 0.02f);
    ew_boxes none = {0};
    ew_raster_ego(&c, &r, &e, 4.5f, 1.8f, &none, a);
    e.y += delta;
    ew_raster_ego(&c, &r, &e, 4.5f, 1.8f, &none, b2);
    for (int ch = 0; ch < 3; ch += 2) {
        double l1 = 0.0;
        int mx = 0;
        for (int i = 0; i < np; i++) {
            int d = abs(a[ch * np + i] - b2[ch * np + i]);
            l1 += d;
            if (d > mx) mx = d;
        }
        CHECK(mx <= 20 && l1 > 0.0 && l1 < 255.0 * 0.05 * 117 * 6 * 1.3, "ego sideways, channel %d: L1 %.0f max %d", ch, l1, mx);
    }
    free(a);
    free(b2);
}

static void centroid(const uint8_t *p, int rows, int cols, double *u, double *v) {
    double s = 0, su = 0, sv = 0;
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) {
            s += p[r * cols + c];
            su += p[r * cols + c] * (c + 0.5);
            sv += p[r * cols + c] * (r + 0.5);
        }
    *u = s > 0 ? su / s : -1;
    *v = s > 0 ? sv / s : -1;
}

static void test_orientation(void) {
    ew_raster_cfg c;
    ew_raster_cfg_default(&c);
    int np = c.rows * c.cols;
    uint8_t *ras = malloc((size_t)NCH * (size_t)np);
    ew_road r = road3();
    ew_kin_state e = ego_at(400.0f, 5.55f, 0.0f);
    boxset b = {0};
    add_box(&b, 415.0f, 5.55f, 0.0f, 4.5f, 1.8f); /* 15 m ahead */
    ew_boxes bv = view(&b);
    ew_raster_ego(&c, &r, &e, 4.5f, 1.8f, &bv, ras);
    double u, v;
    centroid(plane(ras, EW_CH_VEHICLES, &c), c.rows, c.cols, &u, &v);
    CHECK_NEAR(u, 12.0, 1e-3);
    CHECK_NEAR(v, 58.5 - 15.0 / c.m_per_px, 1e-2);
    b.x[0] = 400.0f;
    b.y[0] = 9.25f; /* beside, on the left */
    ew_raster_ego(&c, &r, &e, 4.5f, 1.8f, &bv, ras);
    centroid(plane(ras, EW_CH_VEHICLES, &c), c.rows, c.cols, &u, &v);
    CHECK(u < 12.0, "left vehicle in the left columns (u %.2f)", u);
    CHECK_NEAR(u, 12.0 - 3.7 / c.m_per_px, 1e-2);
    CHECK_NEAR(v, 58.5, 1e-2);
    /* ego heading +y (turned left 90 deg): a vehicle at larger y is ahead, one at larger x is
     * on the ego's right */
    ew_kin_state e90 = {400.0f, 5.55f, 0.0f, 1.0f, 10.0f};
    b.x[0] = 400.0f;
    b.y[0] = 15.55f;
    ew_raster_ego(&c, &r, &e90, 4.5f, 1.8f, &bv, ras);
    centroid(plane(ras, EW_CH_VEHICLES, &c), c.rows, c.cols, &u, &v);
    CHECK_NEAR(v, 58.5 - 10.0 / c.m_per_px, 0.02);
    b.x[0] = 404.0f;
    b.y[0] = 5.55f;
    ew_raster_ego(&c, &r, &e90, 4.5f, 1.8f, &bv, ras);
    centroid(plane(ras, EW_CH_VEHICLES, &c), c.rows, c.cols, &u, &v);
    CHECK_NEAR(u, 12.0 + 4.0 / c.m_per_px, 0.02);

    /* off-road: road y in [0, 11.1], ego at 5.55: the edges fall on pixel boundaries u = 3, 21 */
    ew_boxes none = {0};
    ew_raster_ego(&c, &r, &e, 4.5f, 1.8f, &none, ras);
    const uint8_t *off = plane(ras, EW_CH_OFFROAD, &c);
    int bad = 0;
    for (int row = 0; row < c.rows; row++)
        for (int col = 0; col < c.cols; col++) {
            int want = (col < 3 || col >= 21) ? 255 : 0;
            /* 5.55 / 0.617 = 8.995 px: the boundary pixel is 0.5 % covered either way */
            if (abs(off[row * c.cols + col] - want) > 2) bad++;
        }
    CHECK(bad == 0, "off-road 255 outside the road, 0 on it (%d bad pixels)", bad);
    /* markings: solid edges at u = 3.0 and 21.0, dashed separators at 9.0 and 15.0 */
    const uint8_t *mk = plane(ras, EW_CH_MARKINGS, &c);
    CHECK(mk[50 * 24 + 2] > 20 && mk[50 * 24 + 3] > 20 && mk[50 * 24 + 20] > 20 && mk[50 * 24 + 21] > 20, "solid edges");
    CHECK(mk[50 * 24 + 12] == 0 && mk[50 * 24 + 0] == 0, "no paint mid-lane or off-road");
    double colsum[24] = {0};
    for (int row = 0; row < c.rows; row++)
        for (int col = 0; col < c.cols; col++) colsum[col] += mk[row * c.cols + col];
    CHECK(colsum[8] + colsum[9] > 0 && colsum[14] + colsum[15] > 0, "dashed separators present");
    CHECK(colsum[8] + colsum[9] < 0.5 * (colsum[2] + colsum[3]), "separators dashed (less paint than the edge)");
    free(ras);
}

static void test_fixed(void) {
    ew_road r = road_ramp();
    ew_fixed_cfg f = {180.0f, 14.0f, 80, 240, 0.25f}; /* x 180..240, y -6..14 */
    uint8_t *ras = malloc((size_t)NCH * 80 * 240);
    boxset b = {0};
    add_box(&b, 200.0f, 5.55f, 0.0f, 4.5f, 1.8f);
    ew_boxes bv = view(&b);
    ew_kin_state e = ego_at(220.0f, 1.85f, 0.0f);
    CHECK(ew_raster_fixed(&f, &r, &bv, &e, 4.5f, 1.8f, ras) == 0, "fixed render");
    double u, v;
    centroid(ras + 80 * 240, 80, 240, &u, &v);
    CHECK_NEAR(u, (200.0 - 180.0) / 0.25, 1e-2);
    CHECK_NEAR(v, (14.0 - 5.55) / 0.25, 1e-2);
    centroid(ras + 3 * 80 * 240, 80, 240, &u, &v);
    /* pixel-centre centroids are biased by up to ~0.02 px when the two edges' partial rows differ */
    CHECK_NEAR(u, (220.0 - 180.0) / 0.25, 0.03);
    CHECK_NEAR(v, (14.0 - 1.85) / 0.25, 0.03);
    CHECK(ew_raster_fixed(&f, &r, &bv, NULL, 0, 0, ras) == 0 && chan_sum(ras + 3 * 80 * 240, 80 * 240) == 0.0, "no ego");
    /* top rows (y > 11.1) are off-road, the middle of lane 1 is not */
    const uint8_t *off = ras + 2 * 80 * 240;
    CHECK(off[2 * 240 + 10] == 255 && off[(int)((14.0 - 5.55) / 0.25) * 240 + 10] == 0, "fixed off-road");
    free(ras);
}

static void test_misc(void) {
    ew_raster_cfg c = {0, 24, 0.617f};
    char err[256] = "";
    CHECK(ew_raster_cfg_validate(&c, err, (int)sizeof err) == -1 && strstr(err, "rows") != NULL, "bad cfg: %s", err);
    uint8_t buf[16] = {0};
    ew_road r = road3();
    ew_kin_state e = ego_at(10, 5, 0);
    CHECK(ew_raster_ego(&c, &r, &e, 4.5f, 1.8f, NULL, buf) == -1, "bad cfg refused");
    c.rows = 8;
    c.m_per_px = 0.0f;
    CHECK(ew_raster_cfg_validate(&c, err, (int)sizeof err) == -1, "zero scale refused");
    ew_raster_cfg_default(&c);
    CHECK(ew_raster_cfg_validate(&c, err, (int)sizeof err) == 0 && c.rows == 117 && c.cols == 24 && c.m_per_px == 0.617f, "defaults");
    uint8_t in[5] = {0, 1, 128, 254, 255};
    float o[5];
    ew_raster_to_f32(in, 5, o);
    CHECK(o[0] == 0.0f && o[4] == 1.0f && fabsf(o[2] - 128.0f / 255.0f) < 1e-7f, "to_f32");
    uint8_t four[4] = {255, 0, 0, 0}, g;
    ew_raster_grey(four, 1, 1, &g);
    CHECK(g == 128, "grey: paint 128 (%d)", g);
    uint8_t four2[4] = {255, 200, 255, 0};
    ew_raster_grey(four2, 1, 1, &g);
    CHECK(g == 200, "grey: max of the layers (%d)", g);
    uint8_t four3[4] = {0, 0, 255, 0};
    ew_raster_grey(four3, 1, 1, &g);
    CHECK(g == 64, "grey: off-road 64 (%d)", g);
}

/* ---- PNG ----------------------------------------------------------------------------------------- */

static void test_png(void) {
    char err[512];
    const char *path = "/tmp/ew_test_raster_png.png";
    uint8_t img[3 * 7 * 5];
    for (int i = 0; i < (int)sizeof img; i++) img[i] = (uint8_t)(i * 37);
    CHECK(ew_png_write_rgb(path, img, 7, 5, err, (int)sizeof err) == 0, "write rgb: %s", err);
    uint8_t *d = NULL;
    int w, h, ch;
    CHECK(ew_png_read(path, &d, &w, &h, &ch, err, (int)sizeof err) == 0, "read: %s", err);
    CHECK(d && w == 7 && h == 5 && ch == 3 && memcmp(d, img, sizeof img) == 0, "rgb round trip");
    free(d);
    CHECK(ew_png_write_gray(path, img, 7, 5, err, (int)sizeof err) == 0, "write gray: %s", err);
    CHECK(ew_png_read(path, &d, &w, &h, &ch, err, (int)sizeof err) == 0, "read: %s", err);
    CHECK(d && w == 7 && h == 5 && ch == 1 && memcmp(d, img, 35) == 0, "gray round trip");
    free(d);
    /* truncated file */
    FILE *f = fopen(path, "rb");
    uint8_t whole[4096];
    size_t n = f ? fread(whole, 1, sizeof whole, f) : 0;
    if (f) fclose(f);
    f = fopen(path, "wb");
    if (f) {
        fwrite(whole, 1, n / 2, f);
        fclose(f);
    }
    err[0] = 0;
    d = (uint8_t *)1;
    CHECK(ew_png_read(path, &d, &w, &h, &ch, err, (int)sizeof err) == -1 && d == NULL && err[0], "truncated: %s", err);
    f = fopen(path, "wb");
    if (f) {
        fputs("this is not a png file at all", f);
        fclose(f);
    }
    err[0] = 0;
    CHECK(ew_png_read(path, &d, &w, &h, &ch, err, (int)sizeof err) == -1 && strstr(err, "not a PNG"), "garbage: %s", err);
    /* corrupted data after a valid signature and header */
    if (n > 40) {
        for (size_t i = 33; i < n; i++) whole[i] ^= 0x5a;
        f = fopen(path, "wb");
        if (f) {
            fwrite(whole, 1, n, f);
            fclose(f);
        }
        err[0] = 0;
        CHECK(ew_png_read(path, &d, &w, &h, &ch, err, (int)sizeof err) == -1 && err[0], "corrupt: %s", err);
    }
    err[0] = 0;
    CHECK(ew_png_read("/nonexistent/dir/x.png", &d, &w, &h, &ch, err, (int)sizeof err) == -1 && err[0], "missing: %s", err);
    CHECK(ew_png_write_rgb("/nonexistent/dir/x.png", img, 7, 5, err, (int)sizeof err) == -1, "unwritable: %s", err);
    remove(path);
    /* composite palette: one pixel of each layer */
    uint8_t ras[4 * 5] = {0};
    ras[0 * 5 + 1] = 255; /* markings */
    ras[1 * 5 + 2] = 255; /* vehicle */
    ras[2 * 5 + 3] = 255; /* off-road */
    ras[3 * 5 + 4] = 255; /* ego */
    uint8_t rgb[3 * 5 * 4];
    ew_png_raster_rgb(ras, 1, 5, 2, rgb);
    const uint8_t want[5][3] = {{48, 48, 48}, {255, 255, 255}, {70, 150, 255}, {34, 94, 46}, {235, 60, 50}};
    int ok = 1;
    for (int c = 0; c < 5; c++)
        for (int dy = 0; dy < 2; dy++)
            for (int dx = 0; dx < 2; dx++)
                if (memcmp(rgb + 3 * (dy * 10 + 2 * c + dx), want[c], 3) != 0) ok = 0;
    CHECK(ok, "composite palette and x2 scaling");
}

/* ---- golden scenes ----------------------------------------------------------------------------- */

typedef struct { int rows, cols; uint8_t *data; } image;

static image golden_scene(int k) {
    image im = {0, 0, NULL};
    boxset b;
    if (k < 3) {
        ew_raster_cfg c;
        ew_raster_cfg_default(&c);
        ew_road r = k == 2 ? road_ramp() : road3();
        float ex = k == 2 ? 262.0f : 200.0f;
        ew_kin_state e = ego_at(ex, k == 2 ? 1.7f : 5.55f, k == 1 ? 0.1745329f : (k == 2 ? 0.03f : 0.0f));
        scene_cars(&b, ex);
        if (k == 2) { /* a car merging from the ramp ahead */
            b.x[4] = ex + 12.0f;
            b.y[4] = -1.6f;
            b.hx[4] = cosf(0.08f);
            b.hy[4] = sinf(0.08f);
        }
        ew_boxes bv = view(&b);
        im.rows = c.rows;
        im.cols = c.cols;
        im.data = malloc((size_t)NCH * (size_t)c.rows * (size_t)c.cols);
        ew_raster_ego(&c, &r, &e, 4.5f, 1.8f, &bv, im.data);
    } else {
        ew_road r = road_ramp();
        ew_fixed_cfg f = {190.0f, 13.0f, 72, 200, 0.3f}; /* x 190..250 m, y -8.6..13 m */
        scene_cars(&b, 215.0f);
        b.x[4] = 228.0f;
        b.y[4] = -1.4f;
        b.hx[4] = cosf(0.1f);
        b.hy[4] = sinf(0.1f);
        ew_boxes bv = view(&b);
        ew_kin_state e = ego_at(215.0f, 5.55f, 0.05f);
        im.rows = f.rows;
        im.cols = f.cols;
        im.data = malloc((size_t)NCH * (size_t)f.rows * (size_t)f.cols);
        ew_raster_fixed(&f, &r, &bv, &e, 4.5f, 1.8f, im.data);
    }
    return im;
}

static const char *golden_names[4] = {"straight_3lane", "ego_rotated_10deg", "onramp_taper", "fixed_camera"};

static int write_golden(const char *preview_dir) {
    char err[512], path[512];
    for (int k = 0; k < 4; k++) {
        image im = golden_scene(k);
        snprintf(path, sizeof path, "tests/golden/raster_%s.png", golden_names[k]);
        if (ew_png_write_channels(path, im.data, im.rows, im.cols, err, (int)sizeof err) != 0) {
            fprintf(stderr, "%s\n", err);
            free(im.data);
            return 1;
        }
        printf("wrote %s\n", path);
        snprintf(path, sizeof path, "%s/preview_%s.png", preview_dir, golden_names[k]);
        if (ew_png_write_raster(path, im.data, im.rows, im.cols, k < 3 ? 6 : 3, err, (int)sizeof err) != 0) {
            fprintf(stderr, "%s\n", err);
            free(im.data);
            return 1;
        }
        printf("wrote %s\n", path);
        free(im.data);
    }
    return 0;
}

static void test_golden(void) {
    char err[512], path[512];
    for (int k = 0; k < 4; k++) {
        image im = golden_scene(k);
        snprintf(path, sizeof path, "tests/golden/raster_%s.png", golden_names[k]);
        uint8_t *g = NULL;
        int w, h, ch;
        if (ew_png_read(path, &g, &w, &h, &ch, err, (int)sizeof err) != 0) {
            CHECK(0, "golden %s: %s", golden_names[k], err);
            free(im.data);
            continue;
        }
        CHECK(w == NCH * im.cols && h == im.rows && ch == 1, "golden %s: size %dx%dx%d", golden_names[k], w, h, ch);
        if (w == NCH * im.cols && h == im.rows && ch == 1) {
            int mx = 0, nd = 0;
            size_t pl = (size_t)im.rows * (size_t)im.cols;
            for (int c = 0; c < NCH; c++)
                for (int r = 0; r < im.rows; r++)
                    for (int q = 0; q < im.cols; q++) {
                        int d = abs(im.data[c * pl + (size_t)r * (size_t)im.cols + (size_t)q] - g[(size_t)r * (size_t)w + (size_t)(c * im.cols + q)]);
                        if (d > mx) mx = d;
                        nd += d > 0;
                    }
            CHECK(mx <= 1, "golden %s: max abs diff %d (%d pixels differ)", golden_names[k], mx, nd);
        }
        free(g);
        free(im.data);
    }
}


/* The aligned fast paths (ego heading exactly (1, 0): identical off-road rows, axis-parallel
 * marking bands, axis-aligned boxes) agree within 1 with the general paths taken at a heading
 * angle of 1e-6 rad, on straight and ramp roads, at sub-pixel offsets. */
static void test_aligned_fast_path(void) {
    ew_raster_cfg c;
    ew_raster_cfg_default(&c);
    size_t n = (size_t)NCH * (size_t)c.rows * (size_t)c.cols;
    static uint8_t a[NCH * 117 * 24], b[NCH * 117 * 24];
    ew_road roads[2] = {road3(), road_ramp()};
    int worst = 0;
    for (int ri = 0; ri < 2; ri++)
        for (int k = 0; k < 24; k++) {
            float ex = 150.0f + 37.3f * (float)k + 0.11f * (float)k, ey = 1.85f + 3.7f * (float)(k % 3) + 0.07f * (float)k;
            boxset bs = {0}, bt = {0};
            for (int j = 0; j < 6; j++) {
                float bx = ex - 25.0f + 9.3f * (float)j + 0.13f * (float)k, by = 1.85f + 3.7f * (float)(j % 3) + 0.05f * (float)j;
                add_box(&bs, bx, by, 0.0f, 4.5f + 0.1f * (float)j, 1.8f);
                add_box(&bt, bx, by, 1e-6f, 4.5f + 0.1f * (float)j, 1.8f);
            }
            ew_boxes va = view(&bs), vb = view(&bt);
            ew_kin_state ea = {ex, ey, 1.0f, 0.0f, 20.0f}, eb = {ex, ey, 1.0f, 1e-6f, 20.0f};
            CHECK(ew_raster_ego(&c, &roads[ri], &ea, 4.5f, 1.8f, &va, a) == 0, "render aligned");
            CHECK(ew_raster_ego(&c, &roads[ri], &eb, 4.5f, 1.8f, &vb, b) == 0, "render general");
            for (size_t i = 0; i < n; i++) {
                /* ramp in view: off-road goes through the polygon path in both cases, whose
                 * near-vertical edges carry float noise of a few levels; not a fast path */
                if (ri == 1 && (int)(i / (117 * 24)) == EW_CH_OFFROAD) continue;
                int d = abs((int)a[i] - (int)b[i]);
                worst = d > worst ? d : worst;
            }
        }
    CHECK(worst <= 1, "aligned fast path vs general path: max diff %d", worst);
}

/* ---- byte regression ---------------------------------------------------------------------------- */

/* FNV-1a (64 bit) of every byte of about 4,400 rasters: 4 roads (3 lanes, an on-ramp with
 * its taper, 1 lane with solid paint, a closure and an off-ramp), the ego swept along each at
 * 8 headings (aligned, mirrored, perpendicular, rotated by 0.012 rad and 45 degrees; literal
 * unit vectors, no libm) with 12 vehicles around it (aligned and rotated), 3 sizes, and the
 * fixed camera. The constant is the hash of the renderer before its fast paths (commit
 * fe9f01d): any change of any byte on any path (aligned markings, grouped dashes, AVX2 or
 * 4-lane loops) fails here. A deliberate change of the anti-aliasing must update it, after
 * checking the goldens by eye. */
#define RASTER_HASH_REF 0x4089ba5b01ac66c7ull
static void test_hash_regression(void) {
    static const float hd[8][2] = {{1.0f, 0.0f},         {-1.0f, 0.0f},       {0.0f, 1.0f},
                                   {0.0f, -1.0f},        {0.99992800f, 0.011999712f}, {0.70710677f, 0.70710677f},
                                   {0.99992800f, -0.011999712f}, {-0.99992800f, 0.011999712f}};
    static const int sz[3][2] = {{117, 24}, {64, 64}, {33, 17}};
    static uint8_t buf[NCH * 64 * 64 > NCH * 117 * 24 ? NCH * 64 * 64 : NCH * 117 * 24];
    static uint8_t fbuf[NCH * 40 * 200];
    char err[256];
    ew_road roads[4];
    roads[0] = road3();
    roads[1] = road_ramp();
    CHECK(ew_road_init_highway(&roads[2], 1, 3.5f, 1000.0f, 30.0f, err, (int)sizeof err) == 0, "%s", err);
    roads[2].dash_gap = 0.0f;
    CHECK(ew_road_init_highway(&roads[3], 4, 3.6f, 1000.0f, 30.0f, err, (int)sizeof err) == 0, "%s", err);
    CHECK(ew_road_close_lane(&roads[3], 3, 600.0f, 60.0f, err, (int)sizeof err) == 0, "%s", err);
    CHECK(ew_road_add_offramp(&roads[3], 300.0f, 500.0f, 50.0f, 20.0f, err, (int)sizeof err) == 0, "%s", err);
    static const float bh[4][2] = {{1.0f, 0.0f}, {0.99500417f, 0.099833414f}, {1.0f, 0.0f}, {0.98006660f, -0.19866933f}};
    uint64_t h = 1469598103934665603ull;
    long n = 0;
    for (int ri = 0; ri < 4; ri++)
        for (int k = 0; k < 140; k++) {
            float ex = -20.0f + 7.43f * (float)k, ey = 1.85f + 0.037f * (float)(k % 50);
            boxset bs = {0};
            for (int j = 0; j < 12; j++) {
                int i = bs.n++;
                bs.x[i] = ex - 30.0f + 5.3f * (float)j + 0.011f * (float)k;
                bs.y[i] = 1.85f + 3.7f * (float)(j % 3) + 0.09f * (float)(j % 2);
                bs.hx[i] = bh[(j + k) % 4][0];
                bs.hy[i] = bh[(j + k) % 4][1];
                bs.len[i] = j % 5 == 0 ? 12.0f : 4.5f + 0.05f * (float)j;
                bs.wid[i] = j % 5 == 0 ? 2.5f : 1.8f;
            }
            ew_boxes b = view(&bs);
            for (int a = 0; a < 8; a++) {
                ew_kin_state e = {ex, ey, hd[a][0], hd[a][1], 20.0f};
                int si = (k + a) % 3;
                ew_raster_cfg c = {sz[si][0], sz[si][1], si == 0 ? 0.617f : 0.5f};
                CHECK(ew_raster_ego(&c, &roads[ri], &e, 4.5f, 1.8f, &b, buf) == 0, "render");
                size_t nb = (size_t)NCH * (size_t)c.rows * (size_t)c.cols;
                for (size_t i = 0; i < nb; i++) h = (h ^ buf[i]) * 1099511628211ull;
                n++;
            }
            if (k % 10 == 0) {
                ew_kin_state e = {ex, ey, 1.0f, 0.0f, 20.0f};
                ew_fixed_cfg f = {ex - 60.0f, ey + 10.0f, 40, 200, 0.5f};
                CHECK(ew_raster_fixed(&f, &roads[ri], &b, &e, 4.5f, 1.8f, fbuf) == 0, "fixed");
                for (size_t i = 0; i < sizeof fbuf; i++) h = (h ^ fbuf[i]) * 1099511628211ull;
                n++;
            }
        }
    CHECK(h == RASTER_HASH_REF, "hash of %ld rasters %016llx, expected %016llx", n, (unsigned long long)h,
          (unsigned long long)RASTER_HASH_REF);
}

/* ---- micro-benchmark ------------------------------------------------------------------------------- */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Dense 4-lane highway, 1 km, a vehicle every ~22 m per lane (180 in all, the whole world is
 * passed: culling included), a few changing lanes; the ego in lane 1 with a small heading
 * angle (so nothing is axis-aligned: the general path), moving 0.3 m per raster. */
static int bench(double seconds) {
    ew_road r;
    char err[256];
    if (ew_road_init_highway(&r, 4, 3.7f, 1000.0f, 30.0f, err, (int)sizeof err) != 0) return 1;
    enum { NV = 180 };
    static float x[NV], y[NV], hx[NV], hy[NV], len[NV], wid[NV];
    ew_rng rng;
    ew_rng_seed(&rng, 1);
    for (int i = 0; i < NV; i++) {
        int lane = i % 4;
        x[i] = 5.0f + 22.0f * (float)(i / 4) + (float)ew_rng_range(&rng, -6.0, 6.0);
        y[i] = 1.85f + 3.7f * (float)lane + (float)ew_rng_range(&rng, -0.3, 0.3);
        float t = (i % 9 == 0) ? (float)ew_rng_range(&rng, -0.08, 0.08) : 0.0f;
        hx[i] = t == 0.0f ? 1.0f : cosf(t);
        hy[i] = sinf(t);
        int truck = i % 7 == 0;
        len[i] = truck ? 12.0f : (float)ew_rng_range(&rng, 4.0, 5.0);
        wid[i] = truck ? 2.5f : (float)ew_rng_range(&rng, 1.7, 1.95);
    }
    ew_boxes bx = {x, y, hx, hy, len, wid, NV};
    ew_raster_cfg c;
    ew_raster_cfg_default(&c);
    size_t n = (size_t)NCH * (size_t)c.rows * (size_t)c.cols;
    uint8_t *out = malloc(n);
    float *outf = malloc(n * sizeof(float));
    if (!out || !outf) return 1;
    ew_kin_state e = {300.0f, 5.55f, cosf(0.012f), sinf(0.012f), 25.0f};
    /* vehicles in view (centre within the view) */
    int in_view = 0;
    for (int i = 0; i < NV; i++) in_view += fabsf(x[i] - 400.0f) < 36.1f + 2.5f && fabsf(y[i] - 5.55f) < 7.4f + 1.0f;
    double rate[2][7];
    unsigned chk = 0;
    for (int mode = 0; mode < 2; mode++)
        for (int run = 0; run < 7; run++) {
            long k = 0;
            double t0 = now_s(), t1 = t0;
            while (t1 - t0 < seconds / 7.0) {
                for (int j = 0; j < 1000; j++, k++) {
                    e.x = 300.0f + 0.3f * (float)(k % 667); /* 300 .. 500 m */
                    ew_raster_ego(&c, &r, &e, 4.5f, 1.8f, &bx, out);
                    if (mode) ew_raster_to_f32(out, (int)n, outf);
                }
                t1 = now_s();
            }
            chk += out[n / 2 + (size_t)run];
            rate[mode][run] = (double)k / (t1 - t0);
        }
    qsort(rate[0], 7, sizeof(double), cmp_double);
    qsort(rate[1], 7, sizeof(double), cmp_double);
    printf("scene: 4 lanes, %d vehicles passed (about %d in view at x = 400 m), 117x24x4, one thread\n", NV, in_view);
    printf("uint8 rasters/s: %.0f (median of 7; min %.0f, max %.0f)\n", rate[0][3], rate[0][0], rate[0][6]);
    printf("float rasters/s: %.0f (uint8 render + conversion; min %.0f, max %.0f)\n", rate[1][3], rate[1][0], rate[1][6]);
    printf("(checksum %u)\n", chk);
    free(out);
    free(outf);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "--bench") == 0) return bench(argc >= 3 ? atof(argv[2]) : 7.0);
    if (argc >= 2 && strcmp(argv[1], "--write-golden") == 0) return write_golden(argc >= 3 ? argv[2] : "/tmp");
    test_aligned_box();
    test_against_supersampling();
    test_conservation();
    test_smooth_motion();
    test_orientation();
    test_fixed();
    test_misc();
    test_png();
    test_golden();
    test_aligned_fast_path();
    test_hash_regression();
    return check_done();
}
