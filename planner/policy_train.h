/* policy_train.h - what policy training needs besides the objective: datasets pooled over
 * several trajectory folders (sim/traj.h), a resumable data order, batch rendering at the
 * policy's channel count, and the one-step imitation step (DESIGN.md section 6, baseline).
 *
 * Datasets, pooled samples and statistics are the world model's (models/fm_data.h:
 * ew_fm_data_open, ew_fm_data_stats, ew_fm_data_close).
 * Data order: training position pos = step * B + row takes sample perm_e[pos % n] where
 * perm_e = ew_pt_epoch_perm(n, seed, e = pos / n) (Fisher-Yates from a generator seeded by
 * (seed, e)): a pure function of (n, seed, pos), so a resumed run sees the batches an
 * uninterrupted one would.
 * Imitation: loss = mean over the batch and both components of (policy(window) -
 * normalised logged action)^2, the action being the one applied at the window's last step.
 * Errors: 0 or -1 with a one-line message naming the folder or the step.
 */
#ifndef EW_POLICY_TRAIN_H
#define EW_POLICY_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "models/fm_data.h"
#include "models/optim.h"
#include "models/policy.h"
#include "sim/traj.h"

/* Writes the permutation of epoch `epoch` into perm[0..n). */
void ew_pt_epoch_perm(size_t n, uint64_t seed, uint64_t epoch, size_t *perm);

/* Batch buffers: frames [B, n_cond*C, H, W], states [B, n_cond, 5] (physical), actions
 * [B, T, 2] (physical, T = n_pred >= 1). */
typedef struct {
    int B, n_cond, T, C, H, W;
    float *frames, *states, *actions;
    float *tframes, *tstates; /* NULL, or (ew_pt_batch_alloc_targets) the logged future:
                               * [B, T*C, H, W] frames and [B, T, 5] physical states */
} ew_pt_batch;

int ew_pt_batch_alloc(ew_pt_batch *b, int B, int n_cond, int T, int C, int H, int W);
/* Adds the logged-future buffers (tframes, tstates) that ew_pt_fill then renders too. */
int ew_pt_batch_alloc_targets(ew_pt_batch *b);
void ew_pt_batch_free(ew_pt_batch *b);
/* Renders the pooled samples idx[0..b->B) of a split (frames at b->C channels). */
int ew_pt_fill(const ew_fm_data *d, ew_split split, const size_t *idx, const ew_raster_cfg *rc, int threads,
               ew_pt_batch *b, char *err, size_t errsz);

/* One imitation step on b (the first action of each row is the target): forward, and when
 * opt != NULL backward, gradient-norm clip (clip > 0), Adam step. train: dropout (seeded by
 * seed). *loss and *grad_norm (before clipping; 0 without opt) are written. A non-finite loss
 * or gradient leaves the parameters unchanged and returns -1. */
int ew_pt_imitation_step(ew_graph *g, ew_policy *p, ew_optim *opt, const ew_pt_batch *b, float clip, int train,
                         uint64_t seed, float *loss, float *grad_norm, char *err, size_t errsz);

#endif
