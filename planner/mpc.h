/* mpc.h - model-predictive controllers on the world model (DESIGN.md section 6).
 *
 * Kinds:
 *   "mpc-km"  decoupled gradient MPC: each control step the world model is unrolled (no tape)
 *             with the nominal action sequence (the previous plan shifted by one, the last
 *             action repeated; zeros at the first step) for `horizon` steps and `samples`
 *             latent samples, the vehicle channel is reduced by a pixel-wise max over the
 *             samples; then `iters` Adam iterations (lr, gradient-norm clip `clip`) on the
 *             horizon x 2 action sequence through the kinematic model and the cost masks
 *             moved to the kinematic poses (planner/cost.h, decoupled form); warm start;
 *             the first action, clipped to the ego limits, is executed; replans every step.
 *   "mpc-fm"  coupled gradient MPC: the same, with gradients through the world model's
 *             images (ew_fm_unroll on a tape with the given prior latents).
 *   "cem"     sampling MPC (cross-entropy method) on the same decoupled cost: `samples_cem`
 *             sequences x `iters` rounds, `elites` best refit a diagonal Gaussian; seeded.
 * The controller keeps the last n_cond rasters (channels 0-2 as floats) and ego states in a
 * ring through observe() (called every step, warm-up included); reset() clears it. Before
 * n_cond frames were observed, act() returns the zero action. A controller is used by one
 * thread; `threads` is the number of OpenMP threads of its world-model backend.
 */
#ifndef EW_PLANNER_MPC_H
#define EW_PLANNER_MPC_H

#include <stdint.h>

#include "sim/controller.h"

typedef struct {
    const char *world_model; /* checkpoint path (NULL: EW_DEFAULT_WORLD_MODEL) */
    int horizon;             /* 30 planned actions (3 s) */
    int iters;               /* 10 Adam iterations (mpc-km, mpc-fm) / CEM rounds (cem: 5 when 0) */
    int samples;             /* 3 latent samples of the world model per control step */
    int threads;             /* 1 */
    uint64_t seed;           /* latent samples, CEM samples */
    float lr;                /* 0.1 Adam learning rate */
    float clip;              /* 1.0 gradient-norm clip */
    int cem_samples;         /* 100 sequences per CEM round */
    int cem_elites;          /* 10 */
    int cem_rounds;          /* 5 */
    int reuse_unroll;        /* 1: mpc-km/cem reuse the previous control step's unroll (see mpc.c) */
} ew_mpc_config;

void ew_mpc_config_default(ew_mpc_config *c);
/* kind: "mpc-km" | "mpc-fm" | "cem". 0, or -1 with a one-line message. */
int ew_mpc_controller_create(const char *kind, const ew_mpc_config *c, ew_controller *out, char *err,
                             int errlen);

#endif
