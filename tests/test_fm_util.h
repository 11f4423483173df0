/* test_fm_util.h - tiny world-model configurations and seeded synthetic batches for the
 * tests/test_fm_*.c programs (header-only; each test is one translation unit). */
#ifndef TEST_FM_UTIL_H
#define TEST_FM_UTIL_H

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/fm.h"
#include "tests/check.h"

/* nf 2, hidden 8, n_cond 2, n_pred 3, 13x10 images (-> 6x5 -> 3x2 -> 1x1), nz 3. */
static inline ew_fm_config fm_tiny_config(ew_fm_variant v, int stochastic) {
    ew_fm_config c = ew_fm_config_default();
    c.variant = v;
    c.stochastic = stochastic;
    c.nf = 2;
    c.hidden = 8;
    c.n_cond = 2;
    c.n_pred = 3;
    c.height = 13;
    c.width = 10;
    c.nz = 3;
    c.seed = 5;
    return c;
}

/* Plausible highway statistics (x along the road, y across, unit heading, speed). */
static inline ew_fm_stats fm_test_stats(void) {
    ew_fm_stats s = {{50.0f, 5.0f, 0.99f, 0.0f, 20.0f}, {30.0f, 3.0f, 0.02f, 0.1f, 5.0f}, {0.0f, 0.0f}, {1.5f, 0.01f}};
    return s;
}

typedef struct {
    ew_fm_batch b;
    float *mem;
} fm_test_batch;

static inline void fm_rand_state(ew_rng *r, float *s) {
    double th = ew_rng_range(r, -0.15, 0.15);
    s[0] = (float)ew_rng_range(r, 20.0, 80.0);
    s[1] = (float)ew_rng_range(r, 0.0, 11.0);
    s[2] = (float)cos(th);
    s[3] = (float)sin(th);
    s[4] = (float)ew_rng_range(r, 12.0, 28.0);
}

/* Frames uniform in [0, 1], states as above, actions a in [-2, 2], b in [-0.02, 0.02]. */
static inline int fm_test_batch_make(fm_test_batch *tb, const ew_fm_config *c, int B, int T, uint64_t seed) {
    size_t img = (size_t)c->channels * c->height * c->width;
    size_t nf = (size_t)B * c->n_cond * img, ns = (size_t)B * c->n_cond * 5, na = (size_t)B * T * 2;
    size_t ntf = (size_t)B * T * img, nts = (size_t)B * T * 5;
    memset(tb, 0, sizeof *tb);
    tb->mem = malloc(sizeof(float) * (nf + ns + na + ntf + nts));
    if (!tb->mem) return -1;
    ew_fm_batch *b = &tb->b;
    b->batch = B;
    b->steps = T;
    b->frames = tb->mem;
    b->states = b->frames + nf;
    b->actions = b->states + ns;
    b->target_frames = b->actions + na;
    b->target_states = b->target_frames + ntf;
    ew_rng r;
    ew_rng_seed(&r, seed);
    for (size_t i = 0; i < nf; i++) b->frames[i] = (float)ew_rng_uniform(&r);
    for (size_t i = 0; i < ns / 5; i++) fm_rand_state(&r, b->states + 5 * i);
    for (size_t i = 0; i < na / 2; i++) {
        b->actions[2 * i] = (float)ew_rng_range(&r, -2.0, 2.0);
        b->actions[2 * i + 1] = (float)ew_rng_range(&r, -0.02, 0.02);
    }
    for (size_t i = 0; i < ntf; i++) b->target_frames[i] = (float)ew_rng_uniform(&r);
    for (size_t i = 0; i < nts / 5; i++) fm_rand_state(&r, b->target_states + 5 * i);
    return 0;
}

static inline void fm_test_batch_free(fm_test_batch *tb) {
    free(tb->mem);
    tb->mem = NULL;
}

#endif
