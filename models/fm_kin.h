/* fm_kin.h - the ego's kinematic model (DESIGN.md section 3, sim/ego.h) as a differentiable
 * tensor op on normalised states, for the FM-KM world-model variants and the planner.
 *
 * Contract: ew_fm_kin_step(g, s, a, k) takes s [B, 5] normalised states (x, y, dx, dy, speed;
 * physical = s * state_std + state_mean), a [B, 2] physical actions (a: m/s^2, b: 1/m) and
 * returns the normalised next states [B, 5]. Per row, in float:
 *     u = s * std + mean                      (de-normalise)
 *     u' = ew_kin_step(u, a, dt, allow_reverse)   (sim/ego.h, the simulator's own function:
 *          p' = p + dt sp d, d' = normalize(d + b sp dt d_perp), sp' = max(sp + a dt, 0))
 *     out = (u' - mean) / std                 (re-normalise)
 * ew_fm_kin_ref() is the same on one row of plain floats (what the op computes, bit for bit).
 * The backward pass chains ew_kin_jacobian() (sim/ego.h) with the normalisation: the max()
 * has derivative 0 where sp + a dt <= 0 (clamped side). Gradients flow to s and a when they
 * require them. Shape errors: NULL and a message in the graph.
 */
#ifndef EW_FM_KIN_H
#define EW_FM_KIN_H

#include "models/autodiff.h"

typedef struct {
    float mean[5], std[5]; /* state normalisation (std > 0) */
    float dt;              /* seconds per step */
    int allow_reverse;     /* 0: speed clamped at 0 */
} ew_fm_kin;

ew_tensor *ew_fm_kin_step(ew_graph *g, ew_tensor *s, ew_tensor *a, const ew_fm_kin *k);
/* One row: s_norm[5], act[2] -> out_norm[5]. */
void ew_fm_kin_ref(const ew_fm_kin *k, const float *s_norm, const float *act, float *out_norm);

#endif
