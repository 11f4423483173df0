/* mpc_pred_diag.c - how good are the predictions the "mpc-pred" controller plans with
 * (planner/mpc_pred.h)? Drives `episodes` episodes of a built-in scenario with mpc-pred (the
 * ego's own rasters are all the controller sees) and, every 10 control steps, scores every
 * track seen for the whole second of history against the SIMULATOR'S TRUTH (read here only,
 * for scoring): the track's vehicle is the true vehicle within 1.5 m of its last position;
 * the prediction at 1, 2, 3 s against where that vehicle is then, next to constant velocity
 * from the same tracked history ((p9 - p4) / 0.5 s). Prints per horizon: count, mean error of
 * the predictor and of constant velocity (m), mean signed along-road error (truth - pred),
 * mean lateral |error|, mean predicted standard deviations, and the share of truths inside
 * the 1 and 2 sigma ellipses.
 * Not one of the tests; built with everything else (bench/CMakeLists.txt): `cmake --build build
 * --target mpc_pred_diag` gives build/mpc_pred_diag.
 * Usage: mpc_pred_diag PREDICTOR.safetensors [episodes (4)] [scenario (dense-3lane)] [seed (100)]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/motion.h"
#include "planner/controllers.h"
#include "planner/mpc_pred.h"
#include "sim/episode.h"
#include "sim/scenario_builtin.h"
#include "sim/world.h"

#define MAXR 8192

typedef struct {
    int due;                  /* loop index at which the world is at the predicted time */
    int h;                    /* 0, 1, 2: 1, 2, 3 s */
    uint32_t id;
    float mx, my, sx, sy, r;  /* prediction */
    float cx, cy;             /* constant velocity */
} rec;

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: mpc_pred_diag PREDICTOR [episodes] [scenario] [seed]\n");
        return 2;
    }
    int eps = argc > 2 ? atoi(argv[2]) : 4;
    const char *scen = argc > 3 ? argv[3] : "dense-3lane";
    unsigned long seed0 = argc > 4 ? strtoul(argv[4], NULL, 10) : 100;
    char err[256], spec[1024];
    snprintf(spec, sizeof spec, "mpc-pred:%s", argv[1]);
    double n[3] = {0}, ep_[3] = {0}, ec[3] = {0}, sdx[3] = {0}, ady[3] = {0}, ssx[3] = {0}, ssy[3] = {0},
           in1[3] = {0}, in2[3] = {0};
    static rec R[MAXR];
    for (int e = 0; e < eps; e++) {
        ew_world_config wc;
        if (ew_scenario_builtin(scen, &wc, err, (int)sizeof err)) {
            fprintf(stderr, "%s\n", err);
            return 1;
        }
        wc.seed = seed0 + (unsigned long)e;
        ew_world *w = ew_world_create(&wc, err, (int)sizeof err);
        ew_controller c;
        if (!w || ew_controller_create(spec, NULL, &c, err, (int)sizeof err)) {
            fprintf(stderr, "%s\n", err);
            return 1;
        }
        ew_world_reset(w, wc.seed);
        ew_episode ep;
        ew_episode_cfg ec_;
        ew_episode_cfg_default(&ec_);
        ew_episode_begin(&ep, &ec_, w);
        c.reset(c.ctx, w);
        int nr = 0;
        for (int step = 0; step < 300; step++) {
            int warm = ew_episode_in_warmup(&ep);
            if (!ew_episode_step(&ep, w, &c)) break; /* observe, act at t, then the world steps to t + dt */
            const ew_vehicles *vs = ew_world_vehicles(w);
            for (int i = 0; i < nr; i++) {
                if (R[i].due != step) continue;
                int j;
                for (j = 0; j < vs->n && vs->id[j] != R[i].id; j++) {}
                if (j == vs->n) continue;
                int h = R[i].h;
                double dx = vs->x[j] - R[i].mx, dy = vs->y[j] - R[i].my;
                n[h]++;
                ep_[h] += hypot(dx, dy);
                ec[h] += hypot(vs->x[j] - R[i].cx, vs->y[j] - R[i].cy);
                sdx[h] += dx;
                ady[h] += fabs(dy);
                ssx[h] += R[i].sx;
                ssy[h] += R[i].sy;
                double m2 = ew_gauss2d_maha2(R[i].mx, R[i].my, R[i].sx, R[i].sy, R[i].r, vs->x[j], vs->y[j]);
                in1[h] += m2 <= 1.0;
                in2[h] += m2 <= 4.0;
            }
            if (warm || step % 10 != 0) continue;
            ew_mpc_pred_view v;
            if (ew_mpc_pred_get_view(&c, &v)) return 1;
            for (int i = 0; i < v.n && nr + 3 <= MAXR; i++) {
                if (v.seen[i] < EW_MOTION_HIST) continue;
                /* the true vehicle: within 1.5 m of the last observed position (one step back) */
                int bj = -1;
                float bd = 1.5f;
                for (int j = 0; j < vs->n; j++) {
                    float px = vs->x[j] - vs->v[j] * wc.dt * vs->hx[j], py = vs->y[j] - vs->v[j] * wc.dt * vs->hy[j];
                    float d = hypotf(px - v.last[2 * i], py - v.last[2 * i + 1]);
                    if (d < bd) bd = d, bj = j;
                }
                if (bj < 0) continue;
                const float *H = v.hist + (size_t)i * EW_MOTION_HIST * 2;
                float vx = (H[18] - H[8]) / (5 * wc.dt), vy = (H[19] - H[9]) / (5 * wc.dt);
                for (int h = 0; h < 3; h++) {
                    int k = 10 * (h + 1);
                    const float *o = v.pred + ((size_t)i * EW_MOTION_FUT + (size_t)(k - 1)) * 5;
                    rec *q = &R[nr++];
                    q->due = step + k - 1;
                    q->h = h;
                    q->id = vs->id[bj];
                    q->mx = o[0], q->my = o[1], q->sx = o[2], q->sy = o[3], q->r = o[4];
                    q->cx = H[18] + vx * wc.dt * (float)k;
                    q->cy = H[19] + vy * wc.dt * (float)k;
                }
            }
        }
        ew_controller_destroy(&c);
        ew_world_destroy(w);
    }
    printf("mpc-pred predictions vs truth: %s, %d episodes of %s from seed %lu\n", argv[1], eps, scen, seed0);
    for (int h = 0; h < 3; h++)
        printf("%d s: n %.0f  predictor %.3f m  const-vel %.3f m  along (truth - pred) %+.3f m  |lateral| %.3f m  "
               "sigma %.3f / %.3f m  inside 1 sigma %.3f  2 sigma %.3f\n",
               h + 1, n[h], ep_[h] / n[h], ec[h] / n[h], sdx[h] / n[h], ady[h] / n[h], ssx[h] / n[h], ssy[h] / n[h],
               in1[h] / n[h], in2[h] / n[h]);
    return 0;
}
