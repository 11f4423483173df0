/* batch.h - N independent worlds stepped in one call (PufferLib-style).
 *
 * The caller owns every buffer: actions in, observations, ego states, done flags and
 * episode metrics out; they are registered once at create time and written in place each
 * step, so a step does no allocation and no per-world call overhead reaches the caller.
 * Each world runs the episode protocol of episode.h (warm-up by IDM, then the caller's
 * actions) and, when auto_reset is on, starts its next episode inside the same step once
 * one ends (its metrics are written to metrics[i] and done[i] = 1 for that step).
 * Worlds are stepped in parallel with OpenMP (threads, 0 = OpenMP's default); world i's
 * k-th episode uses seed ew_batch_episode_seed(seed, i, k), so results do not depend on
 * the thread count.
 */
#ifndef EW_BATCH_H
#define EW_BATCH_H

#include <stdint.h>

#include "sim/episode.h"
#include "sim/raster.h"
#include "sim/world.h"

typedef struct {
    int n_worlds;
    ew_world_config world;    /* template for every world */
    ew_episode_cfg episode;   /* hook must be NULL (hooks are per-world state) */
    ew_raster_cfg raster;
    int threads;
    int auto_reset;
} ew_batch_cfg;

typedef struct {
    uint8_t *obs;                 /* n × 4 × rows × cols ego rasters (NULL: not rendered) */
    float *ego_state;             /* n × 5: x, y, dx, dy, s (may be NULL) */
    uint8_t *done;                /* n: 1 when an episode ended in this step (may be NULL) */
    uint8_t *warmup;              /* n: 1 while in warm-up, actions ignored (may be NULL) */
    ew_episode_metrics *metrics;  /* n: metrics of the episode that ended (may be NULL) */
} ew_batch_buffers;

typedef struct ew_batch ew_batch;

ew_batch *ew_batch_create(const ew_batch_cfg *cfg, const ew_batch_buffers *buf, char *err, int errlen);
void ew_batch_destroy(ew_batch *b);
/* Starts episode 0 of every world with the given base seed and writes the observations. */
void ew_batch_reset(ew_batch *b, uint64_t seed);
/* One step of every world; actions: n × 2 (a, b), read only after the warm-up. */
void ew_batch_step(ew_batch *b, const float *actions);
int ew_batch_size(const ew_batch *b);
ew_world *ew_batch_world(ew_batch *b, int i);
const ew_episode *ew_batch_episode(const ew_batch *b, int i);
uint64_t ew_batch_episode_seed(uint64_t seed, int world, int64_t episode);

#endif
