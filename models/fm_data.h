/* fm_data.h - the world model's view of one or more trajectory datasets (sim/traj.h):
 * pooled sample lists per split, pooled normalisation statistics, batch rendering, and a
 * reproducible data order for training.
 *
 * Samples: for every dataset, ew_traj_samples(split, n_cond, n_pred, stride) in dataset
 * order; the pooled index i runs over dataset 0's samples, then dataset 1's, ... All datasets
 * must share dt (checked at open).
 * Statistics: the training splits' ew_traj_stats pooled by their step counts (pooled mean;
 * pooled population variance = sum n_j (std_j^2 + mean_j^2) / N - mean^2), std floored 1e-6.
 * Data order: ew_fm_data_order(n, seed, pos) is a bijection of [0, n) for each epoch
 * (epoch = pos / n; a keyed Feistel permutation with cycle walking), so sample position pos
 * of training (batch k, row r: pos = k * B + r) is a pure function of (n, seed, pos): a
 * resumed run sees exactly the batches an uninterrupted one would.
 * Errors: 0 or -1 (NULL) with a one-line message naming the folder. Threads: read-only after
 * open; fills may run concurrently on different buffers.
 */
#ifndef EW_FM_DATA_H
#define EW_FM_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "models/fm.h"
#include "sim/traj.h"

#define EW_FM_DATA_MAX_SETS 8
/* Checkpoint metadata: the raster scale (m per pixel) the model was trained at. */
#define EW_FM_META_MPP "egoworld.fm.m_per_px"

typedef struct {
    int nsets;
    ew_traj_set *set[EW_FM_DATA_MAX_SETS];
    char *dir[EW_FM_DATA_MAX_SETS];
    int n_cond, n_pred, stride;
    ew_traj_sample *samples[3][EW_FM_DATA_MAX_SETS]; /* per split (train, val, test), per set */
    size_t count[3][EW_FM_DATA_MAX_SETS];
    size_t total[3];
} ew_fm_data;

/* Opens ndirs datasets and lists their samples for n_cond / n_pred (stride >= 1). */
int ew_fm_data_open(ew_fm_data *d, const char *const *dirs, int ndirs, int n_cond, int n_pred, int stride,
                    char *err, size_t errsz);
void ew_fm_data_close(ew_fm_data *d);
float ew_fm_data_dt(const ew_fm_data *d);
/* Pooled sample i of a split (train, val or test): its set and (episode, t0). 0 or -1. */
int ew_fm_data_sample(const ew_fm_data *d, ew_split split, size_t i, int *set, ew_traj_sample *s);
/* Pooled training statistics (see above). */
int ew_fm_data_stats(const ew_fm_data *d, ew_fm_stats *out, char *err, size_t errsz);
/* Renders B pooled samples idx[0..B) of a split into b's arrays (allocated by the caller:
 * b->batch >= B, b->steps == d->n_pred). */
int ew_fm_data_fill(const ew_fm_data *d, ew_split split, const size_t *idx, int B, const ew_raster_cfg *raster,
                    int threads, ew_fm_batch *b, char *err, size_t errsz);
/* The renderer under ew_fm_data_fill, for any channel count and unroll length: B pooled samples
 * idx[0..B) of a split into plain arrays of the ew_traj_fill layout (c->n_cond == d->n_cond,
 * c->n_pred <= d->n_pred; any target array may be NULL), rows in parallel on `threads`.
 * c->threads is ignored (each row renders on one thread). 0, or -1 with the first error. */
int ew_fm_data_render(const ew_fm_data *d, ew_split split, const size_t *idx, int B, const ew_traj_batch_cfg *c,
                      int threads, float *frames, float *states, float *actions, float *target_frames,
                      float *target_states, char *err, size_t errsz);
/* The sample index for training position pos (see above); n >= 1. */
size_t ew_fm_data_order(size_t n, uint64_t seed, uint64_t pos);

/* Batch buffers for B samples of n_cond / T steps at C x H x W (malloc'd; free with
 * ew_fm_batch_free). 0 or -1. */
int ew_fm_batch_alloc(ew_fm_batch *b, int B, int n_cond, int T, int C, int H, int W);
void ew_fm_batch_free(ew_fm_batch *b);

#endif
