/* traj_fill.c - rendering batches from a trajectory set (ew_traj_fill, traj.h): OpenMP over
 * every (sample, frame) pair; each frame is decoded on demand and rasterised with
 * ew_raster_ego() into a per-iteration buffer, channels 0..channels-1 converted to floats. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "sim/traj.h"
#include "sim/traj_internal.h"

static void seterr(char *err, int errlen, const char *fmt, ...) {
    if (!err || errlen <= 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, (size_t)errlen, fmt, ap);
    va_end(ap);
}

static void put_state(const ew_kin_state *g, float *o) {
    o[0] = g->x;
    o[1] = g->y;
    o[2] = g->dx;
    o[3] = g->dy;
    o[4] = g->s;
}

int ew_traj_fill(const ew_traj_set *s, const ew_traj_batch_cfg *c, const ew_traj_sample *samples, int B,
                 float *frames, float *states, float *actions, float *target_frames, float *target_states,
                 char *err, int errlen) {
    if (!s || !c || (B > 0 && !samples) || B < 0) {
        seterr(err, errlen, "traj: fill: bad arguments");
        return -1;
    }
    if (c->n_cond < 1 || c->n_pred < 0 || c->channels < 1 || c->channels > EW_RASTER_CHANNELS) {
        seterr(err, errlen, "traj: fill: n_cond %d, n_pred %d or channels %d out of range", c->n_cond, c->n_pred,
               c->channels);
        return -1;
    }
    char m[160];
    if (ew_raster_cfg_validate(&c->raster, m, (int)sizeof m) != 0) {
        seterr(err, errlen, "traj: fill: raster: %s", m);
        return -1;
    }
    const int nc = c->n_cond, np = c->n_pred, C = c->channels;
    for (int b = 0; b < B; b++) {
        int e = samples[b].episode, t0 = samples[b].t0;
        if (e < 0 || e >= s->n_eps || t0 - nc + 1 < 0 || (int64_t)t0 + np >= (int64_t)s->eps[e].n_steps) {
            seterr(err, errlen, "traj: fill: sample %d (episode %d, t0 %d) out of range", b, e, t0);
            return -1;
        }
    }
    /* states and actions: cheap, serial */
    for (int b = 0; b < B; b++) {
        const ew_traj_episode *E = &s->eps[samples[b].episode];
        int t0 = samples[b].t0;
        ew_kin_state g;
        ew_action u;
        if (states)
            for (int k = 0; k < nc; k++) {
                ew_traj_step_ego(E, t0 - nc + 1 + k, &g, NULL);
                put_state(&g, states + ((size_t)b * nc + k) * 5);
            }
        if (target_states)
            for (int k = 0; k < np; k++) {
                ew_traj_step_ego(E, t0 + 1 + k, &g, NULL);
                put_state(&g, target_states + ((size_t)b * np + k) * 5);
            }
        if (actions)
            for (int k = 0; k < np; k++) {
                ew_traj_step_ego(E, t0 + k, NULL, &u);
                actions[((size_t)b * np + k) * 2] = u.a;
                actions[((size_t)b * np + k) * 2 + 1] = u.b;
            }
    }
    const int per = (frames ? nc : 0) + (target_frames ? np : 0);
    if (per == 0 || B == 0) return 0;
    const int H = c->raster.rows, W = c->raster.cols;
    const size_t plane = (size_t)H * W, rbytes = EW_RASTER_CHANNELS * plane;
    const long total = (long)B * per;
    int nth = c->threads > 0 ? c->threads : omp_get_max_threads();
    if (nth > total) nth = (int)total;
    if (nth < 1) nth = 1;
    int failed = 0;
    char ferr[256] = "";
#pragma omp parallel num_threads(nth)
    {
        uint8_t *img = malloc(rbytes);
        ew_traj_frame *f = malloc(sizeof *f);
        char lerr[256] = "";
        int lfail = (!img || !f);
        if (lfail) snprintf(lerr, sizeof lerr, "traj: fill: out of memory");
#pragma omp for schedule(dynamic, 4)
        for (long i = 0; i < total; i++) {
            if (lfail) continue;
            int b = (int)(i / per), k = (int)(i % per);
            int e = samples[b].episode, t;
            float *dst;
            if (frames && k < nc) {
                t = samples[b].t0 - nc + 1 + k;
                dst = frames + ((size_t)b * nc + k) * C * plane;
            } else {
                int j = frames ? k - nc : k;
                t = samples[b].t0 + 1 + j;
                dst = target_frames + ((size_t)b * np + j) * C * plane;
            }
            if (ew_traj_frame_get(s, e, t, f, lerr, (int)sizeof lerr) != 0) {
                lfail = 1;
                continue;
            }
            ew_boxes bx = ew_traj_frame_boxes(f);
            if (ew_raster_ego(&c->raster, &f->road, &f->ego, f->ego_len, f->ego_wid, &bx, img) != 0) {
                snprintf(lerr, sizeof lerr, "traj: fill: raster of episode %d step %d failed", e, t);
                lfail = 1;
                continue;
            }
            ew_raster_to_f32(img, (int)(C * plane), dst);
        }
        if (lfail) {
#pragma omp critical(ew_traj_fill_err)
            {
                if (!failed) snprintf(ferr, sizeof ferr, "%s", lerr);
                failed = 1;
            }
        }
        free(img);
        free(f);
    }
    if (failed) {
        seterr(err, errlen, "%s", ferr);
        return -1;
    }
    return 0;
}
