/* mpc.h - model-predictive controllers on the world model (DESIGN.md section 6).
 *
 * Kinds:
 *   "mpc-km"  decoupled gradient MPC: each control step the world model is unrolled (no tape)
 *             with the nominal action sequence (the previous plan shifted by one, the last
 *             action repeated; zeros at the first step) for `horizon` steps and `samples`
 *             latent samples, the vehicle channel is reduced by a pixel-wise max over the
 *             samples (markings, off-road and the reference pose: the mean); then `iters`
 *             projected Adam iterations (lr, gradient-norm clip `clip`) on the
 *             horizon x 2 action sequence through the kinematic model and the cost masks
 *             moved to the kinematic poses (planner/cost.h, decoupled form); warm start;
 *             the plan is the lowest-cost sequence met (the nominal included); its first
 *             action, clipped to the ego limits, is executed; replans every step. The jerk
 *             term's previous action is estimated from the last two observed ego states.
 *   "mpc-fm"  coupled gradient MPC: the same, with gradients through the world model's
 *             images (ew_fm_unroll on a tape with the given prior latents).
 *   "cem"     sampling MPC (cross-entropy method) on the same decoupled cost: `cem_samples`
 *             sequences x `cem_rounds` rounds (the nominal is one of the first round's), the
 *             `cem_elites` best refit a diagonal Gaussian; the best sequence seen is the plan.
 * The controller keeps the last n_cond rasters (channels 0-2 as floats) and ego states in a
 * ring through observe() (called every step, warm-up included); reset() clears it and
 * re-seeds (same seed, same episode: same plans). With fewer than n_cond observed frames the
 * oldest is repeated. A controller is used by one thread; `threads` is the number of OpenMP
 * threads of its world-model backend.
 *
 * Static layers (mpc-km, cem; static_obs = 1, the default): the world model predicts the
 * vehicles well enough but not the dashed lane markings (a 0.15 m line, 3 m in 12 m: its
 * predicted value near the ego is ~0), so the markings and off-road layers of every reference
 * image are taken from the newest OBSERVED frame (the controller's own raster, the same input
 * the world model is conditioned on; never simulator state): markings as the lateral profile
 * across the road of the observed rows within +-profile_m (means along the road: independent
 * of the dash phase, so the lane cost has no pull along the road; the road direction relative
 * to the ego heading is the shear, |angle| <= 0.12 rad, that makes the profile sharpest, so a
 * heading error is seen as one), off-road resampled bilinearly at the same world points
 * (beyond the observed rows: the column mean). The vehicle layer is always the world model's.
 * static_obs = 0: all layers from the world model.
 * Driving weights: with cost == NULL the cost is ew_cost_config_default() with lambda_p 10,
 * lambda_l 20, lambda_o 10, lane_ramp 15 m (a lane mask long enough to average the dashes),
 * w_action 1, w_jerk 3 (damping: with the defaults 0.01 the lateral control oscillates and
 * the lane cost then pulls the speed down); tuned on held-out seeds, docs/RESULTS.md.
 *
 * Unroll reuse (mpc-km, cem; `refresh` > 1): a fresh K-sample unroll of `horizon` steps from
 * the observed window is made every `refresh` control steps; in between, the previous
 * reference is shifted by one step and only its new last step is predicted (K samples, one
 * world-model step each, conditioned on each sample's own predicted window). The images of
 * other vehicles are then up to refresh-1 steps older than the observation; the ego's actual
 * pose is always the real one (the masks are moved to it). refresh = 1: a full unroll every
 * control step.
 */
#ifndef EW_PLANNER_MPC_H
#define EW_PLANNER_MPC_H

#include <stdint.h>

#include "planner/cost.h"
#include "sim/controller.h"

typedef struct {
    const char *world_model; /* checkpoint path (NULL: EW_DEFAULT_WORLD_MODEL) */
    int horizon;             /* 30 planned actions (3 s) */
    int iters;               /* 10 Adam iterations (mpc-km, mpc-fm) */
    int samples;             /* 2 latent samples of the world model per control step */
    int threads;             /* 1 */
    int cuda;                /* 0: CPU backend on `threads`; 1: the CUDA backend (models/backend_cuda.h),
                              * the world model moved into its memory */
    uint64_t seed;           /* latent samples, CEM samples */
    float lr;                /* 0.1 Adam learning rate */
    float clip;              /* 1.0 gradient-norm clip */
    int cem_samples;         /* 100 sequences per CEM round */
    int cem_elites;          /* 10 */
    int cem_rounds;          /* 5 (0: `iters`) */
    int refresh;             /* full unroll every `refresh` control steps (mpc-km, cem; 1 = always) */
    float scale_a, scale_b;  /* optimisation units of a (2 m/s^2) and b (0.005 1/m) */
    int static_obs;          /* 1: markings and off-road of the reference images from the newest
                              * observation (mpc-km, cem; see above); 0: the world model's */
    float profile_m;         /* 12 m: markings profile from the observed rows within this distance */
    const ew_cost_config *cost; /* NULL: the driving weights above; the ego size, raster geometry,
                                 * dt and allow_reverse are always taken from the world and model */
} ew_mpc_config;

void ew_mpc_config_default(ew_mpc_config *c);
/* kind: "mpc-km" | "mpc-fm" | "cem". 0, or -1 with a one-line message. */
int ew_mpc_controller_create(const char *kind, const ew_mpc_config *c, ew_controller *out, char *err,
                             int errlen);

/* The optimiser of "mpc-km" (projected Adam, c->iters steps) or "cem" on a given decoupled
 * problem from the nominal u0[p->T]: writes the lowest-cost sequence met to plan[p->T] and
 * returns its cost (*initial: the nominal's). NaN on bad arguments or out of memory. */
double ew_mpc_optimize(const char *kind, const ew_mpc_config *c, const ew_cost_config *cc, const ew_cost_problem *p,
                       const ew_kin_limits *lim, const ew_action *u0, ew_action *plan, double *initial);

/* The driving weights above on ew_cost_config_default() (geometry, dt and ego size left at
 * their defaults: the caller sets them). */
void ew_mpc_driving_cost(ew_cost_config *c);

/* The static layers above: from the observed frame ob [C >= 3, rows, cols] (rows, cols and
 * m_per_px from cc) seen at the ego pose o, writes channels 0 (markings profile) and 2
 * (off-road) of the T images img [T, C, rows, cols] rendered around the poses ref[T]; channel
 * 1 and any others are left alone. scratch: 3 * cols floats. */
void ew_mpc_static_layers(const ew_cost_config *cc, float profile_m, const float *ob, const ew_kin_state *o, int T,
                          const ew_cost_pose *ref, int C, float *img, float *scratch);

/* Planning statistics of an MPC controller (-1 if c is not one). */
typedef struct {
    long calls, refreshes, tails;   /* act() calls that planned; full unrolls; tail steps */
    double unroll_ms, opt_ms;       /* wall time in world-model unrolls / in the optimiser */
    double unroll_cpu_ms, opt_cpu_ms; /* the same in thread CPU time (mpc-fm: all in unroll) */
    double cost_initial, cost_final;/* last call: cost of the nominal (initial) sequence, of the plan */
    int horizon;
    const ew_action *plan;          /* last plan [horizon] (owned by the controller) */
} ew_mpc_stats;
int ew_mpc_get_stats(const ew_controller *c, ew_mpc_stats *out);

/* ---- read-only view for the viewer (planner/mpc_overlay.h; added by "show") ---------------- */
typedef struct {
    int K, T, C, H, W;            /* latent samples, horizon, image shape */
    int have_plan, have_ref;      /* 0 after reset() until the first act(); mpc-fm: have_ref 0 */
    const float *frames;          /* sample k, reference step t: frames + ((size_t)k*stride + t)*C*H*W */
    const float *states;          /* same indexing, 5 floats (x, y, dx, dy, s) per frame */
    size_t stride;                /* frames between samples */
    const float *ref_img, *ref_t; /* [T] reference images (vehicles: max over samples), transposed */
    const ew_cost_pose *ref_pose; /* [T] */
    const ew_cost_config *cost;   /* the cost configuration of the last act() */
} ew_mpc_view;
/* Pointers owned by the controller, valid until its next act() or reset(). -1 if not MPC. */
int ew_mpc_get_view(const ew_controller *c, ew_mpc_view *out);

#endif
