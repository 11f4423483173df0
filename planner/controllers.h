/* controllers.h - every controller by name, for every command that takes --controller.
 *
 * Specs: "none", "idm" (sim/controller.h), "mpc-km" (decoupled gradient MPC), "mpc-fm"
 * (coupled gradient MPC), "cem" (sampling MPC) (planner/mpc.h), "mpc-pred:FILE" (MPC-KM with
 * the motion predictor checkpoint FILE as the model of other vehicles; planner/mpc_pred.h),
 * "policy:FILE" (a policy
 * network checkpoint written by train-policy, MPUR or imitation; models/policy.h; "policy:"
 * alone: EW_DEFAULT_POLICY). An unknown spec gives "unknown controller 'X' (specs)".
 * Controllers that need a history of frames and states keep it through the observe()
 * callback of sim/controller.h, so they work in any episode (warm-up included); the caller
 * calls reset() at the start of each episode. A created controller is used by one thread.
 */
#ifndef EW_PLANNER_CONTROLLERS_H
#define EW_PLANNER_CONTROLLERS_H

#include <stdint.h>

#include "sim/controller.h"

/* Shipped defaults (relative to the source root; see assets/README.md). */
#define EW_DEFAULT_WORLD_MODEL "assets/world_model.safetensors"
#define EW_DEFAULT_POLICY "assets/policy.safetensors"

typedef struct {
    const char *world_model; /* checkpoint for mpc-km, mpc-fm, cem (NULL: EW_DEFAULT_WORLD_MODEL) */
    int threads;             /* threads inside one controller (1) */
    int cuda;                /* 1: mpc-km, mpc-fm and cem run their world model on the CUDA backend */
    uint64_t seed;           /* latent samples, CEM samples */
    int horizon;             /* 0: the planner's default (30) */
    int iters;               /* 0: the planner's default (10 Adam iterations / CEM rounds) */
} ew_controller_opts;

void ew_controller_opts_default(ew_controller_opts *o);
/* 0, or -1 with a one-line message (unknown name, missing or bad checkpoint...). */
int ew_controller_create(const char *spec, const ew_controller_opts *o, ew_controller *out, char *err,
                         int errlen);
/* The spec names, for --help: "none|idm|mpc-km|mpc-fm|cem|mpc-pred:FILE|policy:FILE". */
const char *ew_controller_specs(void);

#endif
