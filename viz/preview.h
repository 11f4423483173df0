/* preview.h - the built-in overlay source used until planners and models fill the overlay:
 * an IDM look-ahead of the ego and constant-velocity Gaussians of the other vehicles.
 *
 *  - plan: the ego rolled forward `horizon` steps through the exact kinematic model
 *    (ew_kin_step, actions clipped to the world's ego limits) under IDM car following
 *    (a = 1.5, b = 2, T = 1.5 s, s0 = 2 m, delta 4, v0 = the lane's speed limit) behind
 *    the current leader of its lane predicted at constant velocity, with pure-pursuit lane
 *    keeping toward the centre of its lane (look-ahead max(10 m, 1.5 s x speed)).
 *  - agents: the vehicles within 80 m of the ego along x (at most EW_OV_MAX_AGENTS) at constant
 *    velocity; covariance grows with the horizon: sigma along the heading 0.3 + 0.5 t,
 *    across 0.15 + 0.25 t (metres, t in seconds).
 *  - costs: gap to the leader (m), time to collision now (s; absent when not closing) and
 *    the smallest gap over the previewed horizon (m).
 * Futures and cost masks need the world model and planner; the preview leaves them empty.
 */
#ifndef EW_VIZ_PREVIEW_H
#define EW_VIZ_PREVIEW_H

#include "sim/world.h"
#include "viz/overlay.h"

typedef struct {
    int horizon;      /* steps (30 = 3 s at 10 Hz), <= EW_OV_MAX_STEPS */
    float m_per_px;   /* written into the overlay (the ego raster's scale) */
} ew_preview_cfg;

/* An ew_overlay_fill_fn; ctx is a const ew_preview_cfg *. */
int ew_preview_fill(void *ctx, const struct ew_world *w, ew_overlay *ov, char *err, int errlen);

#endif
