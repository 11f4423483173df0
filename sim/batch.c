/* batch.c - N worlds, one call per step, caller-owned buffers, OpenMP across worlds. */
#include "sim/batch.h"

#include "sim/rng.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ew_batch {
    ew_batch_cfg cfg;
    ew_batch_buffers buf;
    ew_world **worlds;
    ew_episode *eps;
    int64_t *episode_no;
    uint64_t seed;
    size_t obs_stride;
};

uint64_t ew_batch_episode_seed(uint64_t seed, int world, int64_t episode) {
    uint64_t x = seed ^ ((uint64_t)world * 0x9e3779b97f4a7c15ULL);
    uint64_t h = ew_splitmix64(&x);
    x = h ^ ((uint64_t)episode * 0xd1342543de82ef95ULL);
    return ew_splitmix64(&x);
}

ew_batch *ew_batch_create(const ew_batch_cfg *cfg, const ew_batch_buffers *buf, char *err, int errlen) {
    if (cfg->n_worlds < 1 || cfg->n_worlds > 1000000) {
        snprintf(err, (size_t)errlen, "batch: n_worlds must be in [1, 1e6] (got %d)", cfg->n_worlds);
        return NULL;
    }
    if (cfg->episode.hook) {
        snprintf(err, (size_t)errlen, "batch: per-step hooks are not allowed in a batch template");
        return NULL;
    }
    if (ew_raster_cfg_validate(&cfg->raster, err, errlen) != 0) return NULL;
    ew_batch *b = calloc(1, sizeof *b);
    if (!b) {
        snprintf(err, (size_t)errlen, "batch: out of memory");
        return NULL;
    }
    b->cfg = *cfg;
    b->buf = *buf;
    b->obs_stride = (size_t)EW_RASTER_CHANNELS * (size_t)cfg->raster.rows * (size_t)cfg->raster.cols;
    b->worlds = calloc((size_t)cfg->n_worlds, sizeof *b->worlds);
    b->eps = calloc((size_t)cfg->n_worlds, sizeof *b->eps);
    b->episode_no = calloc((size_t)cfg->n_worlds, sizeof *b->episode_no);
    if (!b->worlds || !b->eps || !b->episode_no) {
        snprintf(err, (size_t)errlen, "batch: out of memory");
        ew_batch_destroy(b);
        return NULL;
    }
    for (int i = 0; i < cfg->n_worlds; i++) {
        b->worlds[i] = ew_world_create(&cfg->world, err, errlen);
        if (!b->worlds[i]) {
            ew_batch_destroy(b);
            return NULL;
        }
    }
    return b;
}

void ew_batch_destroy(ew_batch *b) {
    if (!b) return;
    if (b->worlds)
        for (int i = 0; i < b->cfg.n_worlds; i++) ew_world_destroy(b->worlds[i]);
    free(b->worlds);
    free(b->eps);
    free(b->episode_no);
    free(b);
}

int ew_batch_size(const ew_batch *b) { return b->cfg.n_worlds; }
ew_world *ew_batch_world(ew_batch *b, int i) { return b->worlds[i]; }
const ew_episode *ew_batch_episode(const ew_batch *b, int i) { return &b->eps[i]; }

static void observe(ew_batch *b, int i) {
    ew_world *w = b->worlds[i];
    const ew_kin_state *e = ew_world_ego(w);
    if (b->buf.obs) {
        const ew_world_config *wc = ew_world_config_of(w);
        const ew_vehicles *v = ew_world_vehicles(w);
        ew_boxes boxes = {v->x, v->y, v->hx, v->hy, v->len, v->wid, v->n};
        /* Cannot fail: the config was validated at create time and the road has fewer
         * marking segments in view than the raster's stack buffer holds. */
        (void)ew_raster_ego(&b->cfg.raster, ew_world_road(w), e, wc->ego_length, wc->ego_width, &boxes,
                            b->buf.obs + (size_t)i * b->obs_stride);
    }
    if (b->buf.ego_state) {
        float *s = b->buf.ego_state + (size_t)i * 5;
        s[0] = e->x; s[1] = e->y; s[2] = e->dx; s[3] = e->dy; s[4] = e->s;
    }
    if (b->buf.warmup) b->buf.warmup[i] = (uint8_t)ew_episode_in_warmup(&b->eps[i]);
}

static void start_episode(ew_batch *b, int i) {
    ew_world_reset(b->worlds[i], ew_batch_episode_seed(b->seed, i, b->episode_no[i]));
    ew_episode_begin(&b->eps[i], &b->cfg.episode, b->worlds[i]);
}

void ew_batch_reset(ew_batch *b, uint64_t seed) {
    b->seed = seed;
    int n = b->cfg.n_worlds;
    int threads = b->cfg.threads > 0 ? b->cfg.threads : omp_get_max_threads();
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int i = 0; i < n; i++) {
        b->episode_no[i] = 0;
        start_episode(b, i);
        if (b->buf.done) b->buf.done[i] = 0;
        observe(b, i);
    }
}

/* A controller reading the caller's action buffer. */
typedef struct { const float *u; } buf_ctrl;

static int act_from_buffer(void *ctx, const ew_world *w, ew_action *out, char *err, int errlen) {
    (void)w; (void)err; (void)errlen;
    const buf_ctrl *c = ctx;
    out->a = c->u[0];
    out->b = c->u[1];
    return 0;
}

void ew_batch_step(ew_batch *b, const float *actions) {
    int n = b->cfg.n_worlds;
    int threads = b->cfg.threads > 0 ? b->cfg.threads : omp_get_max_threads();
#pragma omp parallel for schedule(dynamic, 4) num_threads(threads)
    for (int i = 0; i < n; i++) {
        buf_ctrl bc = {actions + (size_t)i * 2};
        ew_controller ctrl = {.name = "batch", .ctx = &bc, .act = act_from_buffer};
        int running = ew_episode_step(&b->eps[i], b->worlds[i], &ctrl);
        if (b->buf.done) b->buf.done[i] = (uint8_t)!running;
        if (!running) {
            if (b->buf.metrics) b->buf.metrics[i] = b->eps[i].m;
            if (b->cfg.auto_reset) {
                b->episode_no[i]++;
                start_episode(b, i);
            }
        }
        observe(b, i);
    }
}
