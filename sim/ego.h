/* ego.h - the ego's exact kinematic model (DESIGN.md section 3) and its derivatives.
 *
 * State (5): position p = (x, y), unit heading d = (dx, dy), speed s. Action (2): a, the
 * longitudinal acceleration (m/s^2), and b, the change of heading per metre travelled
 * (curvature, 1/m; positive turns left, geom.h). One step of dt:
 *     p' = p + dt * s * d
 *     d' = normalize(d + b * s * dt * d_perp),   d_perp = (-dy, dx)
 *     s' = max(s + a * dt, 0)        (no reverse unless limits.allow_reverse; then s' = s + a dt)
 * ew_kin_step() applies the equations to the action as given; callers that act on the
 * world clip first with ew_kin_clip() (limits documented in ew_kin_limits_default()).
 * ew_kin_jacobian() returns d(next)/d(state) and d(next)/d(action) (the max() has
 * derivative 0 on the clamped side). The planner differentiates through the same formulas.
 */
#ifndef EW_EGO_H
#define EW_EGO_H

typedef struct { float x, y, dx, dy, s; } ew_kin_state;
typedef struct { float a, b; } ew_action;

typedef struct {
    float a_min, a_max;   /* m/s^2 (default -6, +6) */
    float b_max;          /* |b| <= b_max (1/m, default 0.2: a 5 m radius) */
    int allow_reverse;    /* default 0: speed is clamped at 0 */
} ew_kin_limits;

void ew_kin_limits_default(ew_kin_limits *l);
ew_action ew_kin_clip(const ew_kin_limits *l, ew_action u);
void ew_kin_step(const ew_kin_state *s, ew_action u, float dt, int allow_reverse, ew_kin_state *out);
/* Js[i][j] = d next_i / d state_j, Ja[i][k] = d next_i / d action_k, in the order
 * (x, y, dx, dy, s) and (a, b). */
void ew_kin_jacobian(const ew_kin_state *s, ew_action u, float dt, int allow_reverse,
                     float Js[5][5], float Ja[5][2]);
/* The action (not clipped) estimated from two observed states dt apart, as the planners do:
 * a = (s1 - s0) / dt, b = the heading change over the distance s0 dt (0 below 0.1 m/s). */
ew_action ew_kin_action_between(const ew_kin_state *s0, const ew_kin_state *s1, float dt);

#endif
