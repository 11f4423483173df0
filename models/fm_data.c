/* fm_data.c - pooled trajectory datasets for the world model (see fm_data.h). */
#define _POSIX_C_SOURCE 200809L
#include "models/fm_data.h"
#include "sim/err.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


void ew_fm_data_close(ew_fm_data *d) {
    if (!d) return;
    for (int j = 0; j < d->nsets; j++) {
        ew_traj_close(d->set[j]);
        free(d->dir[j]);
        for (int s = 0; s < 3; s++) free(d->samples[s][j]);
    }
    memset(d, 0, sizeof *d);
}

int ew_fm_data_open(ew_fm_data *d, const char *const *dirs, int ndirs, int n_cond, int n_pred, int stride,
                    char *err, size_t errsz) {
    memset(d, 0, sizeof *d);
    if (ndirs < 1 || ndirs > EW_FM_DATA_MAX_SETS)
        return ew_errf(err, errsz, "fm data: between 1 and %d datasets, not %d", EW_FM_DATA_MAX_SETS, ndirs);
    if (n_cond < 1 || n_pred < 1 || stride < 1) return ew_errf(err, errsz, "%s", "fm data: n_cond, n_pred, stride must be >= 1");
    d->n_cond = n_cond;
    d->n_pred = n_pred;
    d->stride = stride;
    char e2[400];
    for (int j = 0; j < ndirs; j++) {
        d->set[j] = ew_traj_open(dirs[j], e2, (int)sizeof e2);
        if (!d->set[j]) {
            ew_fm_data_close(d);
            return ew_errf(err, errsz, "%s", e2);
        }
        d->nsets = j + 1;
        d->dir[j] = strdup(dirs[j]);
        if (!d->dir[j]) {
            ew_fm_data_close(d);
            return ew_errf(err, errsz, "%s: out of memory", dirs[j]);
        }
        if (j > 0 && fabsf(ew_traj_dt(d->set[j]) - ew_traj_dt(d->set[0])) > 1e-6f) {
            ew_errf(err, errsz, "%s: dt %g differs from %s's %g", dirs[j], (double)ew_traj_dt(d->set[j]), dirs[0],
                 (double)ew_traj_dt(d->set[0]));
            ew_fm_data_close(d);
            return -1;
        }
        for (int s = 0; s < 3; s++) {
            if (ew_traj_samples(d->set[j], (ew_split)s, n_cond, n_pred, stride, &d->samples[s][j], &d->count[s][j], e2,
                                (int)sizeof e2)) {
                ew_fm_data_close(d);
                return ew_errf(err, errsz, "%s", e2);
            }
            d->total[s] += d->count[s][j];
        }
    }
    return 0;
}

float ew_fm_data_dt(const ew_fm_data *d) { return ew_traj_dt(d->set[0]); }

int ew_fm_data_sample(const ew_fm_data *d, ew_split split, size_t i, int *set, ew_traj_sample *s) {
    if ((int)split < 0 || (int)split > 2 || i >= d->total[split]) return -1;
    for (int j = 0; j < d->nsets; j++) {
        if (i < d->count[split][j]) {
            *set = j;
            *s = d->samples[split][j][i];
            return 0;
        }
        i -= d->count[split][j];
    }
    return -1;
}

int ew_fm_data_stats(const ew_fm_data *d, ew_fm_stats *out, char *err, size_t errsz) {
    double n_tot = 0, sm[5] = {0}, sq[5] = {0}, am[2] = {0}, aq[2] = {0};
    char e2[400];
    for (int j = 0; j < d->nsets; j++) {
        double n = 0;
        for (int e = 0; e < ew_traj_n_episodes(d->set[j]); e++)
            if (ew_traj_episode_split(d->set[j], e) == EW_SPLIT_TRAIN) n += ew_traj_episode_len(d->set[j], e);
        if (n <= 0) continue;
        float mean[5], sd[5], amean[2], asd[2];
        if (ew_traj_stats(d->set[j], EW_SPLIT_TRAIN, mean, sd, amean, asd, e2, (int)sizeof e2))
            return ew_errf(err, errsz, "%s", e2);
        for (int k = 0; k < 5; k++) {
            sm[k] += n * mean[k];
            sq[k] += n * ((double)sd[k] * sd[k] + (double)mean[k] * mean[k]);
        }
        for (int k = 0; k < 2; k++) {
            am[k] += n * amean[k];
            aq[k] += n * ((double)asd[k] * asd[k] + (double)amean[k] * amean[k]);
        }
        n_tot += n;
    }
    if (n_tot <= 0) return ew_errf(err, errsz, "%s: no training episodes", d->dir[0]);
    for (int k = 0; k < 5; k++) {
        double m = sm[k] / n_tot, v = sq[k] / n_tot - m * m;
        out->state_mean[k] = (float)m;
        out->state_std[k] = (float)fmax(sqrt(fmax(v, 0.0)), 1e-6);
    }
    for (int k = 0; k < 2; k++) {
        double m = am[k] / n_tot, v = aq[k] / n_tot - m * m;
        out->action_mean[k] = (float)m;
        out->action_std[k] = (float)fmax(sqrt(fmax(v, 0.0)), 1e-6);
    }
    return 0;
}

int ew_fm_data_render(const ew_fm_data *d, ew_split split, const size_t *idx, int B, const ew_traj_batch_cfg *c,
                      int threads, float *frames, float *states, float *actions, float *target_frames,
                      float *target_states, char *err, size_t errsz) {
    if (c->n_cond != d->n_cond || c->n_pred < 1 || c->n_pred > d->n_pred)
        return ew_errf(err, errsz, "%s", "fm data: window does not fit the dataset's samples");
    const int T = c->n_pred, nc = c->n_cond;
    size_t img = (size_t)c->channels * c->raster.rows * c->raster.cols;
    ew_traj_batch_cfg cfg = *c;
    cfg.threads = 1;
    int failed = 0;
    char first[400] = "";
    if (threads < 1) threads = 1;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
    for (int r = 0; r < B; r++) {
        int set;
        ew_traj_sample s;
        char e2[400];
        int bad = 0;
        if (ew_fm_data_sample(d, split, idx[r], &set, &s)) {
            snprintf(e2, sizeof e2, "fm data: sample %zu out of range", idx[r]);
            bad = 1;
        } else if (ew_traj_fill(d->set[set], &cfg, &s, 1, frames + (size_t)r * nc * img, states + (size_t)r * nc * 5,
                                actions + (size_t)r * T * 2, target_frames ? target_frames + (size_t)r * T * img : NULL,
                                target_states ? target_states + (size_t)r * T * 5 : NULL, e2, (int)sizeof e2)) {
            bad = 1;
        }
        if (bad) {
#pragma omp critical(ew_fm_data_err)
            {
                if (!failed) snprintf(first, sizeof first, "%s", e2);
                failed = 1;
            }
        }
    }
    if (failed) return ew_errf(err, errsz, "%s", first);
    return 0;
}

int ew_fm_data_fill(const ew_fm_data *d, ew_split split, const size_t *idx, int B, const ew_raster_cfg *raster,
                    int threads, ew_fm_batch *b, char *err, size_t errsz) {
    if (B < 1 || B > b->batch || b->steps != d->n_pred) return ew_errf(err, errsz, "%s", "fm data: batch buffers do not fit");
    ew_traj_batch_cfg cfg = {d->n_cond, d->n_pred, *raster, 3, 1};
    return ew_fm_data_render(d, split, idx, B, &cfg, threads, b->frames, b->states, b->actions, b->target_frames,
                             b->target_states, err, errsz);
}

/* Keyed Feistel permutation over 2k bits with cycle walking into [0, n). */
static uint64_t mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

size_t ew_fm_data_order(size_t n, uint64_t seed, uint64_t pos) {
    if (n <= 1) return 0;
    uint64_t epoch = pos / n, i = pos % n;
    int bits = 2;
    while (bits < 62 && ((uint64_t)1 << bits) < n) bits += 2;
    int half = bits / 2;
    uint64_t mask = ((uint64_t)1 << half) - 1;
    uint64_t key = mix64(seed * 0x9e3779b97f4a7c15ULL ^ mix64(epoch + 0x632be59bd9b4e019ULL));
    uint64_t x = i;
    do {
        uint64_t l = x >> half, r = x & mask;
        for (int round = 0; round < 4; round++) {
            uint64_t f = mix64(r ^ key ^ ((uint64_t)round << 56)) & mask;
            uint64_t nl = r, nr = l ^ f;
            l = nl;
            r = nr;
        }
        x = (l << half) | r;
    } while (x >= n);
    return (size_t)x;
}

int ew_fm_batch_alloc(ew_fm_batch *b, int B, int n_cond, int T, int C, int H, int W) {
    memset(b, 0, sizeof *b);
    size_t img = (size_t)C * H * W;
    b->batch = B;
    b->steps = T;
    b->frames = malloc(sizeof(float) * B * n_cond * img);
    b->states = malloc(sizeof(float) * B * n_cond * 5);
    b->actions = malloc(sizeof(float) * B * T * 2);
    b->target_frames = malloc(sizeof(float) * B * T * img);
    b->target_states = malloc(sizeof(float) * B * T * 5);
    if (!b->frames || !b->states || !b->actions || !b->target_frames || !b->target_states) {
        ew_fm_batch_free(b);
        return -1;
    }
    return 0;
}

void ew_fm_batch_free(ew_fm_batch *b) {
    free(b->frames);
    free(b->states);
    free(b->actions);
    free(b->target_frames);
    free(b->target_states);
    memset(b, 0, sizeof *b);
}
