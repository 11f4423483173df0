/* overlay.h - what planners and models show in the viewer: plain data, no SDL, no functions
 * to link (header-only helpers), so planner/ and models/ can fill it without the viewer.
 *
 * The owner (the viewer, or any caller) allocates one ew_overlay (it is large: use the heap,
 * e.g. calloc(1, sizeof(ew_overlay))) and passes it to a fill callback (ew_overlay_fill_fn)
 * after every simulation step. A callback clears what it does not provide with
 * ew_overlay_clear() and fills the parts it has; counts of 0 mean "nothing to draw".
 *
 * Frames. All poses and means are in the road frame (sim/geom.h: x forward, y left).
 * Images (imagined futures, cost masks) use the ego raster's geometry (sim/raster.h):
 * row 0 farthest ahead, column 0 leftmost, centred on the ego pose they were computed at,
 * `m_per_px` metres per pixel; `fut_pose[t]` / `cost_pose` give that pose.
 *
 * Parts:
 *  - plan: the planned ego trajectory, poses over the horizon (plan[0] = now).
 *  - futures: imagined futures of the world model: fut_samples latent samples x fut_steps
 *    horizon steps of predicted vehicle-channel images (uint8, 0..255), fut_h x fut_w each;
 *    step t of every sample is centred on fut_pose[t] (the ego's pose at that step).
 *  - cost: a cost mask in [0, 1], cost_h x cost_w, aligned with the ego raster at cost_pose.
 *  - agents: the motion predictor's Gaussians: per agent and horizon step a mean position
 *    and a 2x2 covariance (cxx, cxy, cyy) in m^2.
 *  - costs: named scalars (cost terms, predicted values) shown in the HUD.
 */
#ifndef EW_OVERLAY_H
#define EW_OVERLAY_H

#include <stdint.h>
#include <string.h>

#include "sim/ego.h"
#include "sim/geom.h"

#define EW_OV_MAX_STEPS 40      /* horizon steps of plans and predictions */
#define EW_OV_MAX_FUT_STEPS 20  /* horizon steps of imagined futures */
#define EW_OV_MAX_SAMPLES 8     /* latent samples of imagined futures */
#define EW_OV_MAX_PIXELS 8192   /* h * w of one overlay image (117 x 24 = 2808 by default) */
#define EW_OV_MAX_AGENTS 64
#define EW_OV_MAX_COSTS 16
#define EW_OV_NAME_LEN 24

typedef struct {
    uint32_t id;                          /* the vehicle's id (0 when unknown) */
    int n;                                /* horizon steps filled */
    ew_vec2 mean[EW_OV_MAX_STEPS];        /* m */
    float cov[EW_OV_MAX_STEPS][3];        /* cxx, cxy, cyy (m^2) */
} ew_overlay_agent;

typedef struct {
    char name[EW_OV_NAME_LEN];
    float value;
} ew_overlay_scalar;

typedef struct {
    char source[32];                      /* who filled it ("idm-preview", "mpc", ...) */
    float dt;                             /* s between horizon steps */
    float m_per_px;                       /* image scale (m per pixel) */

    int n_plan;                           /* poses in plan (0: no plan) */
    ew_kin_state plan[EW_OV_MAX_STEPS + 1];

    int fut_samples, fut_steps, fut_h, fut_w;
    ew_kin_state fut_pose[EW_OV_MAX_FUT_STEPS];
    uint8_t fut[EW_OV_MAX_SAMPLES][EW_OV_MAX_FUT_STEPS][EW_OV_MAX_PIXELS];

    int cost_h, cost_w;                   /* 0: no cost mask */
    ew_kin_state cost_pose;
    float cost[EW_OV_MAX_PIXELS];

    int n_agents;
    ew_overlay_agent agents[EW_OV_MAX_AGENTS];

    int n_costs;
    ew_overlay_scalar costs[EW_OV_MAX_COSTS];
} ew_overlay;

struct ew_world; /* sim/world.h */

/* Called by the viewer after every simulation step (and after a reset). Returns 0, or -1
 * with a message (the viewer then stops with that error). */
typedef int (*ew_overlay_fill_fn)(void *ctx, const struct ew_world *w, ew_overlay *ov, char *err,
                                  int errlen);

/* Empties every part (cheap: counts only). */
static inline void ew_overlay_clear(ew_overlay *ov) {
    ov->source[0] = 0;
    ov->n_plan = 0;
    ov->fut_samples = ov->fut_steps = ov->fut_h = ov->fut_w = 0;
    ov->cost_h = ov->cost_w = 0;
    ov->n_agents = 0;
    ov->n_costs = 0;
}

/* Adds or updates a named scalar; returns 0, or -1 when the list is full. */
static inline int ew_overlay_set_cost(ew_overlay *ov, const char *name, float value) {
    for (int i = 0; i < ov->n_costs; i++)
        if (!strncmp(ov->costs[i].name, name, EW_OV_NAME_LEN - 1)) {
            ov->costs[i].value = value;
            return 0;
        }
    if (ov->n_costs >= EW_OV_MAX_COSTS) return -1;
    ew_overlay_scalar *s = &ov->costs[ov->n_costs++];
    strncpy(s->name, name, EW_OV_NAME_LEN - 1);
    s->name[EW_OV_NAME_LEN - 1] = 0;
    s->value = value;
    return 0;
}

/* Sets the futures' shape; returns 0, or -1 when it exceeds the capacity. */
static inline int ew_overlay_set_futures_shape(ew_overlay *ov, int samples, int steps, int h, int w) {
    if (samples < 0 || samples > EW_OV_MAX_SAMPLES || steps < 0 || steps > EW_OV_MAX_FUT_STEPS ||
        h < 0 || w < 0 || h * w > EW_OV_MAX_PIXELS)
        return -1;
    ov->fut_samples = samples;
    ov->fut_steps = steps;
    ov->fut_h = h;
    ov->fut_w = w;
    return 0;
}

#endif
