/* mpc_pred.h - "mpc-pred:FILE": the MPC-KM planner (planner/mpc.h: same decoupled cost,
 * driving weights, static layers and projected-Adam optimiser) with the motion predictor
 * (models/motion.h, checkpoint FILE) as the model of the other vehicles, in place of the
 * convolutional world model's images.
 *
 * What it reads: only the controller's own observations, as every MPC: the ego-centred raster
 * of each step (ew_raster_world, the same image the world model is conditioned on) and the
 * ego state. Never the simulator's state of other vehicles.
 *
 * Per observe() (every step, warm-up included): the vehicle channel (>= 0.5) is split into
 * 8-connected blobs (models/fm_eval.h ew_find_blobs); each blob's centroid is taken to world
 * coordinates through the observed ego pose; blobs are linked into tracks (each track's
 * constant-velocity guess takes the closest blob within 4 m along and 1.2 m across the ego
 * heading, closest pairs first; unmatched blobs start tracks; unmatched tracks end). A track
 * keeps its last EW_MOTION_HIST positions and its blob area.
 *
 * Per act(): nominal = previous plan shifted by one (zeros after reset); reference poses =
 * the kinematic rollout of the nominal from the ego state; markings and off-road layers from
 * the newest observed frame (ew_mpc_static_layers); the vehicle layer of reference image t
 * (time (t+1) dt) is rendered from the predictor's Gaussians at horizon t+1:
 *   - tracks seen >= 2 frames: a predictor sample in the road frame of the current ego heading
 *     (x along, y to the left; missing history extrapolated backwards at the track's mean
 *     velocity; with line_hist (default) the history is replaced by its least-squares line
 *     per axis: blob centroids of the 0.617 m/px ego raster are about 3x noisier than the
 *     video tracks the predictor was trained on, and it reads the residuals from its own line
 *     fit, which are then mostly noise), crop = the grey composite of the newest raster
 *     (ew_raster_grey levels) averaged over the predictor's 12 x 24 cells (1 m x 2 m;
 *     outside the view: 0);
 *   - tracks seen once: moving with the ego's velocity, standard deviations 0.3 + 1.5 tau m
 *     along and 0.2 + 0.3 tau m across (tau = horizon in s);
 *   each vehicle is a box (width 1.9 m, length = blob area / 1.9 clamped to [3.5, 16] m, along
 *   the road) blurred by its Gaussian (standard deviations along and across the road, scaled
 *   by sigma_scale, at least min_sigma; correlation ignored): occupancy = product of the two
 *   1-D box-Gaussian convolutions (erf differences), max over vehicles;
 * then the MPC-KM optimiser (ew_mpc_optimize "mpc-km") on that problem; the plan's first
 * action, clipped to the ego limits, is executed.
 * Horizon at most EW_MOTION_FUT (30). A controller is used by one thread.
 */
#ifndef EW_PLANNER_MPC_PRED_H
#define EW_PLANNER_MPC_PRED_H

#include <stdint.h>

#include "sim/controller.h"
#include "viz/overlay.h"

typedef struct {
    const char *predictor; /* motion predictor checkpoint (required) */
    int horizon;           /* 30 (1..EW_MOTION_FUT) */
    int iters;             /* 10 Adam iterations */
    int threads;           /* 1 */
    uint64_t seed;         /* 1 (the optimiser's) */
    float sigma_scale;     /* 1: multiplies the predicted standard deviations */
    float min_sigma;       /* 0.1 m */
    float profile_m;       /* 12 m (static layers, planner/mpc.h) */
    int line_hist;         /* 1: the predictor gets each track's history replaced by its
                            * least-squares line (see above); 0: the raw positions */
} ew_mpc_pred_config;

void ew_mpc_pred_config_default(ew_mpc_pred_config *c);
/* 0, or -1 with a one-line message (missing or bad checkpoint, bad configuration). */
int ew_mpc_pred_controller_create(const ew_mpc_pred_config *c, ew_controller *out, char *err, int errlen);

/* The rendered occupancy at offset (a, b) (along, across the road, m) from a vehicle's mean:
 * a len x wid box blurred by independent Gaussians of std sa, sb (m, > 0):
 * 1/4 (erf((a + len/2) / (sqrt 2 sa)) - erf((a - len/2) / (sqrt 2 sa))) (the same in b). */
float ew_mpc_pred_occupancy(float a, float b, float len, float wid, float sa, float sb);

/* Read-only view for the viewer (valid until the controller's next act() or reset()): the
 * vehicles of the last act() with their predicted Gaussians in WORLD coordinates:
 * pred[(i * EW_MOTION_FUT + k) * 5 + (mx, my, sx, sy, rho)] for horizon k + 1 (sx, sy along
 * the world axes, rho their correlation), last[i * 2] the last observed centre, size[i * 2]
 * (length, width) of the rendered box, seen[i] frames the track was seen (1: no predictor),
 * hist[(i * EW_MOTION_HIST + j) * 2] the positions the predictor was given (world, oldest
 * first; extrapolated backwards when the track is shorter; all equal to last when seen 1).
 * Also the plan [horizon] and the reference images [horizon][3][rows][cols]. -1 if c is not
 * an mpc-pred controller. */
typedef struct {
    int n, horizon, rows, cols;
    float m_per_px;
    const float *pred, *last, *size, *hist;
    const int *seen;
    const float *ref_img;
    const ew_action *plan;
    int have_plan;
} ew_mpc_pred_view;
int ew_mpc_pred_get_view(const ew_controller *c, ew_mpc_pred_view *out);

/* An ew_overlay_fill_fn (viz/overlay.h) for the viewer; ctx is the mpc-pred controller
 * (const ew_controller *). After the controller's first act() of an episode: plan = the
 * plan's actions 1..T-1 (the last repeated) rolled out from the ego's current pose through
 * the kinematic model (actions clipped to the ego limits): T + 1 poses; agents = every
 * tracked vehicle's predicted Gaussians of the last act() (horizons 1..EW_MOTION_FUT steps,
 * means and covariances cxx, cxy, cyy in world coordinates; the viewer draws their 1 and 2
 * sigma ellipses at 1, 2, 3 s); HUD: tracked (vehicles), predicted (those the predictor saw).
 * Before it (warm-up, after a reset): empty. 0, or -1 when ctx is not an mpc-pred controller. */
int ew_mpc_pred_overlay_fill(void *ctx, const struct ew_world *w, ew_overlay *ov, char *err, int errlen);

#endif
