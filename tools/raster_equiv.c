/* raster_equiv.c - byte-equality check and CPU-time benchmark of the rasterizer, linked
 * against one build's libegoworld_sim.a (see tools/raster_equiv.sh, which builds it against
 * two commits and compares).
 *
 *   raster_equiv dump FILE|-       render about 40,000 rasters and print their count and the
 *                                  FNV-1a hash of all bytes (FILE: also write the bytes)
 *   raster_equiv bench [R] [N] [A] thread-CPU-time rasters/s of the `bench sim` scene
 *                                  (dense-3lane after 30 s), median of R runs of N rasters,
 *                                  ego heading turned by A rad (0: the aligned fast path)
 *
 * The dump covers all built-in scenarios (two episodes each, one with a steering ego), the ego
 * swept along every road, six hand-made roads (1 and 8 lanes, solid separators, short dashes
 * and wide paint, an on-ramp with a taper, a closure and an off-ramp), headings exactly
 * aligned, mirrored, perpendicular and rotated by 1e-6 .. 3 rad, sub-pixel shifts, sizes from
 * 1x1 to 200x40 at four scales, and the fixed camera. Only public API: it builds against old
 * commits too.
 */
#define _POSIX_C_SOURCE 199309L
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "sim/raster.h"
#include "sim/scenario_builtin.h"
#include "sim/world.h"

static FILE *fo; static uint64_t H = 1469598103934665603ull; static long NR = 0;
static void emit(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) { H ^= p[i]; H *= 1099511628211ull; }
    if (fo) fwrite(p, 1, n, fo);
    NR++;
}
static uint8_t buf[4 * 4096 * 64];
static void ego_variants(const ew_road *road, const ew_kin_state *e0, float el, float ew, const ew_boxes *b, int k) {
    static const float angs[] = {0.0f, 1e-6f, -1e-6f, 1e-4f, 0.012f, -0.03f, 0.2f, 0.7853982f, 1.5707964f, 3.1415927f, -1.5707964f, 2.9f};
    static const int sizes[][2] = {{117, 24}, {117, 24}, {64, 64}, {33, 17}, {5, 3}, {200, 40}, {1, 1}, {117, 25}};
    static const float mpp[] = {0.617f, 0.5f, 0.25f, 1.3f};
    ew_raster_cfg c = {117, 24, 0.617f};
    if (ew_raster_ego(&c, road, e0, el, ew, b, buf) == 0) emit(buf, 4 * 117 * 24);
    int na = (int)(sizeof angs / sizeof angs[0]);
    /* a few more per step, rotating through variants */
    for (int j = 0; j < 3; j++) {
        int v = k * 3 + j;
        ew_kin_state e = *e0;
        float a = angs[v % na];
        float h = atan2f(e.dy, e.dx) + a;
        if (a == 0.0f) { e.dx = 1.0f; e.dy = 0.0f; }
        else if (v % 11 == 3) { e.dx = -1.0f; e.dy = 0.0f; }
        else if (v % 13 == 4) { e.dx = 0.0f; e.dy = (v & 1) ? 1.0f : -1.0f; }
        else if (v % 17 == 5) { e.dx = 1.0f; e.dy = -0.0f; }
        else if (v % 5 == 0) { e.dx = cosf(a); e.dy = sinf(a); }
        else { e.dx = cosf(h); e.dy = sinf(h); }
        e.x += 0.037f * (float)(v % 17); e.y += 0.013f * (float)(v % 23) - 0.1f;
        int si = (v / na) % 8;
        c.rows = sizes[si][0]; c.cols = sizes[si][1]; c.m_per_px = mpp[(v / 7) % 4];
        if (ew_raster_ego(&c, road, &e, el, ew, b, buf) == 0) emit(buf, 4 * (size_t)c.rows * c.cols);
    }
    if (k % 10 == 0) {
        ew_fixed_cfg f = {e0->x - 60.0f + 0.1f * (float)(k % 7), e0->y + 10.0f, 40, 200, 0.5f};
        if (ew_raster_fixed(&f, road, b, e0, el, ew, buf) == 0) emit(buf, 4 * 40 * 200);
    }
}

static int dump(void) {
    int nn; const char *const *names = ew_scenario_builtin_names(&nn);
    char err[256];
    for (int s = 0; s < nn; s++) {
        ew_world_config wc;
        if (ew_scenario_builtin(names[s], &wc, err, 256)) { fprintf(stderr, "%s\n", err); return 1; }
        ew_world *w = ew_world_create(&wc, err, 256);
        if (!w) { fprintf(stderr, "%s\n", err); return 1; }
        for (int ep = 0; ep < 2; ep++) {
            ew_world_reset(w, 7 + (uint64_t)ep);
            for (int k = 0; k < 800; k++) {
                ew_action u; ew_world_ego_idm_action(w, &u);
                if (ep == 1) u.b = 0.002f * sinf(0.05f * (float)k);
                ew_world_step(w, &u);
                const ew_vehicles *v = ew_world_vehicles(w);
                ew_boxes b = {v->x, v->y, v->hx, v->hy, v->len, v->wid, v->n};
                ego_variants(ew_world_road(w), ew_world_ego(w), wc.ego_length, wc.ego_width, &b, k);
                if (ew_world_ego(w)->x > wc.road.length - 30.0f) break;
            }
        }
        /* sweep the ego along the whole road (road ends, ramps, closures in view) */
        const ew_vehicles *v = ew_world_vehicles(w);
        ew_boxes b = {v->x, v->y, v->hx, v->hy, v->len, v->wid, v->n};
        for (float x = -50.0f; x < wc.road.length + 50.0f; x += 3.3f) {
            ew_kin_state e = {x, 1.85f + 0.01f * x, 1.0f, 0.0f, 20.0f};
            ego_variants(ew_world_road(w), &e, 4.5f, 1.8f, &b, (int)(x * 0.3f) + 1000);
        }
        ew_world_destroy(w);
    }
    /* custom roads: solid gaps, 1 and 8 lanes, odd dash patterns and widths */
    for (int rk = 0; rk < 6; rk++) {
        ew_road r;
        int lanes = rk == 0 ? 1 : rk == 1 ? 8 : 2 + rk % 3;
        ew_road_init_highway(&r, lanes, 3.5f + 0.1f * rk, 600.0f, 30.0f, err, 256);
        if (rk == 2) r.dash_gap = 0.0f;
        if (rk == 3) { r.dash_len = 0.4f; r.dash_gap = 0.3f; r.marking_width = 0.6f; }
        if (rk == 4) { r.dash_len = 7.3f; r.dash_gap = 1.1f; r.marking_width = 0.05f; ew_road_add_onramp(&r, 100, 300, 80, 25, err, 256); }
        if (rk == 5) { ew_road_close_lane(&r, lanes - 1, 350, 60, err, 256); ew_road_add_offramp(&r, 200, 400, 50, 20, err, 256); }
        float bx[8], by[8], hx[8], hy[8], bl[8], bw[8];
        for (int j = 0; j < 8; j++) { bx[j] = 0; by[j] = 1.5f + 3.0f * (j % 3); hx[j] = j % 3 ? 1.0f : cosf(0.05f * j); hy[j] = j % 3 ? 0.0f : sinf(0.05f * j); bl[j] = 4.0f + 0.3f * j; bw[j] = 1.7f + 0.05f * j; }
        for (float x = -40.0f; x < 640.0f; x += 1.37f) {
            for (int j = 0; j < 8; j++) bx[j] = x - 30.0f + 8.1f * j + 0.01f * x;
            ew_boxes b = {bx, by, hx, hy, bl, bw, 8};
            ew_kin_state e = {x, 1.7f + 0.003f * x, 1.0f, 0.0f, 20.0f};
            ego_variants(&r, &e, 4.5f, 1.8f, &b, (int)(x * 2.0f) + 5000);
        }
    }
    printf("rasters %ld hash %016llx\n", NR, (unsigned long long)H);
    return 0;
}

static double cpu_now(void) { struct timespec t; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
static double wall_now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
static int cmpd(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }

static int bench(int reps, int n, float ang) {
    ew_world_config wc; char err[256];
    ew_scenario_builtin("dense-3lane", &wc, err, 256);
    ew_world *w = ew_world_create(&wc, err, 256);
    ew_world_reset(w, 1);
    for (int i = 0; i < 300; i++) { ew_action u; ew_world_ego_idm_action(w, &u); ew_world_step(w, &u); }
    ew_raster_cfg rc; ew_raster_cfg_default(&rc);
    const ew_vehicles *v = ew_world_vehicles(w);
    ew_boxes boxes = {v->x, v->y, v->hx, v->hy, v->len, v->wid, v->n};
    ew_kin_state eg = *ew_world_ego(w);
    if (ang != 0.0f) { eg.dx = cosf(ang); eg.dy = sinf(ang); }
    const ew_kin_state *e = &eg;
    double c[64], wl[64];
    for (int r = 0; r < reps; r++) {
        double c0 = cpu_now(), w0 = wall_now();
        for (int k = 0; k < n; k++) ew_raster_ego(&rc, ew_world_road(w), e, wc.ego_length, wc.ego_width, &boxes, buf);
        c[r] = n / (cpu_now() - c0); wl[r] = n / (wall_now() - w0);
    }
    qsort(c, reps, sizeof(double), cmpd); qsort(wl, reps, sizeof(double), cmpd);
    printf("cpu %.0f wall %.0f (min cpu %.0f max %.0f) ego %g %g %g %g\n", c[reps / 2], wl[reps / 2], c[0], c[reps - 1], e->x, e->y, e->dx, e->dy);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 3 && !strcmp(argv[1], "dump")) { fo = strcmp(argv[2], "-") ? fopen(argv[2], "wb") : NULL; int r = dump(); if (fo) fclose(fo); return r; }
    if (argc >= 2 && !strcmp(argv[1], "bench")) return bench(argc > 2 ? atoi(argv[2]) : 9, argc > 3 ? atoi(argv[3]) : 50000, argc > 4 ? (float)atof(argv[4]) : 0.0f);
    return 2;
}
