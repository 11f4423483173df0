/* idm.h - the pure car-following and lane-change formulas (IDM, MOBIL) and the ballistic
 * integrator, as small inline functions so that the world's inner loop and the closed-form
 * tests use the very same arithmetic.
 *
 * IDM (Treiber, Hennecke, Helbing 2000): with speed v, desired speed v0, bumper-to-bumper
 * gap s to the leader and approach rate dv = v - v_leader,
 *     s*(v, dv) = s0 + max(0, v T + v dv / (2 sqrt(a_max b)))
 *     a = a_max [1 - (v / v0)^delta - (s* / s)^2]
 * Free road (no leader): a = a_max [1 - (v / v0)^delta].
 * The equilibrium gap at speed v (a = 0 behind a leader at the same speed) is
 *     s_e(v) = (s0 + v T) / sqrt(1 - (v / v0)^delta).
 * MOBIL (Kesting, Treiber, Helbing 2007): a change is safe when the new follower's
 * acceleration after the change is >= -b_safe, and pays when
 *     (a_c' - a_c) + p [(a_n' - a_n) + (a_o' - a_o)] > a_thr (+ a keep-right bias),
 * c the changer, n the new follower, o the old follower, primes after the change.
 * All arguments in SI units; gaps are clamped below at EW_IDM_MIN_GAP so that a touching or
 * overlapping leader yields a very strong (finite) deceleration.
 */
#ifndef EW_IDM_H
#define EW_IDM_H

#include <math.h>

#define EW_IDM_MIN_GAP 0.01f

/* Per-vehicle IDM constants in the form the inner loop wants. */
typedef struct {
    float inv_v0;   /* 1 / v0 */
    float T, s0, a_max;
    float inv_2sqrt_ab; /* 1 / (2 sqrt(a_max b)) */
    float delta;
} ew_idm_p;

static inline ew_idm_p ew_idm_params(float v0, float T, float s0, float a_max, float b, float delta) {
    ew_idm_p p;
    p.inv_v0 = 1.0f / v0;
    p.T = T;
    p.s0 = s0;
    p.a_max = a_max;
    p.inv_2sqrt_ab = 1.0f / (2.0f * sqrtf(a_max * b));
    p.delta = delta;
    return p;
}

/* (v / v0)^delta, with the common delta = 4 done by two squarings. */
static inline float ew_idm_vpow(float v, float inv_v0, float delta) {
    float r = v * inv_v0;
    if (delta == 4.0f) {
        r *= r;
        return r * r;
    }
    return powf(r, delta);
}

/* The desired dynamic gap s*. */
static inline float ew_idm_sstar(const ew_idm_p *p, float v, float dv) {
    float dyn = v * p->T + v * dv * p->inv_2sqrt_ab;
    return p->s0 + (dyn > 0.0f ? dyn : 0.0f);
}

static inline float ew_idm_free(const ew_idm_p *p, float v) {
    return p->a_max * (1.0f - ew_idm_vpow(v, p->inv_v0, p->delta));
}

/* Acceleration behind a leader at bumper gap s, approach rate dv = v - v_leader. */
static inline float ew_idm_accel(const ew_idm_p *p, float v, float dv, float s) {
    float ss = ew_idm_sstar(p, v, dv);
    if (s < EW_IDM_MIN_GAP) s = EW_IDM_MIN_GAP;
    float q = ss / s;
    return p->a_max * (1.0f - ew_idm_vpow(v, p->inv_v0, p->delta) - q * q);
}

/* Equilibrium gap at speed v (0 <= v < v0); +inf at or above v0. */
static inline double ew_idm_equilibrium_gap(double v, double v0, double T, double s0, double delta) {
    double r = pow(v / v0, delta);
    if (r >= 1.0) return INFINITY;
    return (s0 + v * T) / sqrt(1.0 - r);
}

/* Equilibrium speed for a given gap (inverse of the above, by bisection; 0 for s <= s0). */
static inline double ew_idm_equilibrium_speed(double s, double v0, double T, double s0, double delta) {
    if (s <= s0) return 0.0;
    double lo = 0.0, hi = v0;
    for (int k = 0; k < 60; k++) {
        double mid = 0.5 * (lo + hi);
        if (ew_idm_equilibrium_gap(mid, v0, T, s0, delta) < s) lo = mid;
        else hi = mid;
    }
    return lo;
}

/* MOBIL incentive (before threshold and bias): see the header comment. */
static inline float ew_mobil_incentive(float ac_new, float ac_old, float an_new, float an_old,
                                       float ao_new, float ao_old, float politeness) {
    return (ac_new - ac_old) + politeness * ((an_new - an_old) + (ao_new - ao_old));
}

/* Ballistic update over dt with constant acceleration a that never makes the speed
 * negative: a vehicle that would stop inside the step stops where v reaches 0.
 * Returns the distance travelled; *v is updated. */
static inline float ew_ballistic(float *v, float a, float dt) {
    float v0 = *v;
    float v1 = v0 + a * dt;
    if (v1 < 0.0f) {
        *v = 0.0f;
        return a < 0.0f ? -0.5f * v0 * v0 / a : 0.0f;
    }
    *v = v1;
    return (v0 + v1) * 0.5f * dt;
}

/* Quintic lane-change profile on [0, 1]: q(0) = 0, q(1) = 1, zero slope and curvature at
 * both ends; q'(t) peaks at 15/8 at t = 1/2. */
static inline float ew_lc_profile(float t) {
    if (t <= 0.0f) return 0.0f;
    if (t >= 1.0f) return 1.0f;
    return t * t * t * (10.0f + t * (-15.0f + 6.0f * t));
}
static inline float ew_lc_profile_d(float t) {
    if (t <= 0.0f || t >= 1.0f) return 0.0f;
    float u = t * (1.0f - t);
    return 30.0f * u * u;
}

#endif
