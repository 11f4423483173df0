/* mpc_overlay.h - what an MPC controller (planner/mpc.h: mpc-km, cem, mpc-fm) shows in the
 * viewer: an ew_overlay_fill_fn (viz/overlay.h) that reads the controller's latest plan,
 * imagined futures and costs through ew_mpc_get_view / ew_mpc_get_stats (read only).
 *
 * Call it after every simulation step (the viewer does): it keeps the ego poses of the last
 * calls, so it knows the pose each plan was made from. When the controller planned exactly
 * once since the previous call ("fresh"), the overlay gets:
 *  - plan: the rest of the plan (actions 1..T-1, the last repeated: the next step's nominal)
 *    rolled out from the ego's current pose through the exact kinematic model (ew_kin_step,
 *    actions clipped to the world's ego limits): T + 1 poses, plan[0] = the ego now.
 *  - futures (mpc-km, cem): the world model's predicted vehicle channel (0..255) of each
 *    latent sample (at most EW_OV_MAX_SAMPLES) at reference steps t = every, 2 every, ...
 *    and T - 1 (t steps after now), at most EW_OV_MAX_FUT_STEPS; fut_pose = the reference
 *    pose of step t (the samples' mean; identical samples' poses for FM-KM models).
 *  - cost mask (mpc-km, cem): the per-pixel cost density of reference step 0 (the predicted
 *    present) with the masks centred on its pose (planner/cost.h: lambda_p Mp vehicles / Zp
 *    + (lambda_l markings + lambda_o off-road) Ml / Zl), divided by its maximum.
 *  - costs (HUD): plan_ms (wall time of that act()), cost (the plan's), nominal (the shifted
 *    previous plan's), K (samples) and, for mpc-km and cem, the plan's terms prox, lane,
 *    offroad, action, jerk, ref recomputed with ew_cost_decoupled on the same problem (start
 *    pose and previous action as the controller estimated them); the terms are shown only
 *    when their total reproduces the controller's plan cost (relative 1e-6).
 * Not fresh (warm-up, manual driving, after a reset): the overlay is empty but for K.
 */
#ifndef EW_PLANNER_MPC_OVERLAY_H
#define EW_PLANNER_MPC_OVERLAY_H

#include "sim/controller.h"
#include "viz/overlay.h"

typedef struct {
    const ew_controller *ctrl; /* the MPC controller (not owned) */
    int fut_every;             /* reference steps between drawn futures (5) */
    /* state across calls */
    long last_calls;
    double last_ms;
    int n_pose;
    ew_kin_state pose[3];      /* ego poses at the last calls, newest first */
} ew_mpc_overlay;

/* 0, or -1 when ctrl is not an MPC controller. */
int ew_mpc_overlay_init(ew_mpc_overlay *o, const ew_controller *ctrl);
/* An ew_overlay_fill_fn; ctx is an ew_mpc_overlay *. */
int ew_mpc_overlay_fill(void *ctx, const struct ew_world *w, ew_overlay *ov, char *err, int errlen);

#endif
