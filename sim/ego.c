/* ego.c - the ego's kinematic model (contract in sim/ego.h).
 *
 * The heading update normalises u = d + k d_perp with k = b s dt. When u is the zero vector
 * (only possible if the state's heading is zero, which is not a valid state) the heading is
 * passed through unchanged and its Jacobian block is the identity's restriction (0 for the
 * action), so the functions never divide by zero.
 */
#include "sim/ego.h"

#include <math.h>

void ew_kin_limits_default(ew_kin_limits *l) {
    l->a_min = -6.0f;
    l->a_max = 6.0f;
    l->b_max = 0.2f;
    l->allow_reverse = 0;
}

static float clampf(float v, float lo, float hi) {
    if (!(v == v)) return 0.0f; /* NaN -> 0 (no action) */
    return v < lo ? lo : (v > hi ? hi : v);
}

ew_action ew_kin_clip(const ew_kin_limits *l, ew_action u) {
    ew_action r;
    float a0 = 0.0f;
    if (a0 < l->a_min) a0 = l->a_min; /* NaN maps into the range even if 0 is outside it */
    if (a0 > l->a_max) a0 = l->a_max;
    r.a = (u.a == u.a) ? clampf(u.a, l->a_min, l->a_max) : a0;
    r.b = clampf(u.b, -l->b_max, l->b_max);
    return r;
}

void ew_kin_step(const ew_kin_state *s, ew_action u, float dt, int allow_reverse, ew_kin_state *out) {
    float x = s->x, y = s->y, dx = s->dx, dy = s->dy, v = s->s;
    float k = u.b * v * dt;
    float ux = dx - k * dy;
    float uy = dy + k * dx;
    float n = sqrtf(ux * ux + uy * uy);
    ew_kin_state r;
    r.x = x + dt * v * dx;
    r.y = y + dt * v * dy;
    if (n > 0.0f) {
        r.dx = ux / n;
        r.dy = uy / n;
    } else {
        r.dx = dx;
        r.dy = dy;
    }
    float sn = v + u.a * dt;
    r.s = (allow_reverse || sn > 0.0f) ? sn : 0.0f;
    *out = r;
}

void ew_kin_jacobian(const ew_kin_state *s, ew_action u, float dt, int allow_reverse,
                     float Js[5][5], float Ja[5][2]) {
    float dx = s->dx, dy = s->dy, v = s->s;
    for (int i = 0; i < 5; i++) {
        for (int j = 0; j < 5; j++) Js[i][j] = 0.0f;
        Ja[i][0] = Ja[i][1] = 0.0f;
    }
    /* position */
    Js[0][0] = 1.0f;
    Js[0][2] = dt * v;
    Js[0][4] = dt * dx;
    Js[1][1] = 1.0f;
    Js[1][3] = dt * v;
    Js[1][4] = dt * dy;
    /* heading: h = u / |u|, u = (dx - k dy, dy + k dx), k = b v dt.
     * dh/du = (I - h h^T) / |u|. */
    float k = u.b * v * dt;
    float ux = dx - k * dy, uy = dy + k * dx;
    float n = sqrtf(ux * ux + uy * uy);
    if (n > 0.0f) {
        float hx = ux / n, hy = uy / n;
        float P[2][2] = {{(1.0f - hx * hx) / n, (-hx * hy) / n}, {(-hx * hy) / n, (1.0f - hy * hy) / n}};
        /* du/d(dx) = (1, k), du/d(dy) = (-k, 1), du/dv = b dt (-dy, dx), du/db = v dt (-dy, dx) */
        float du[4][2] = {{1.0f, k}, {-k, 1.0f}, {-u.b * dt * dy, u.b * dt * dx}, {-v * dt * dy, v * dt * dx}};
        for (int i = 0; i < 2; i++) {
            Js[2 + i][2] = P[i][0] * du[0][0] + P[i][1] * du[0][1];
            Js[2 + i][3] = P[i][0] * du[1][0] + P[i][1] * du[1][1];
            Js[2 + i][4] = P[i][0] * du[2][0] + P[i][1] * du[2][1];
            Ja[2 + i][1] = P[i][0] * du[3][0] + P[i][1] * du[3][1];
        }
    } else {
        Js[2][2] = 1.0f;
        Js[3][3] = 1.0f;
    }
    /* speed: the clamped side of max(., 0) has derivative 0 */
    float sn = v + u.a * dt;
    if (allow_reverse || sn > 0.0f) {
        Js[4][4] = 1.0f;
        Ja[4][0] = dt;
    }
}

ew_action ew_kin_action_between(const ew_kin_state *s0, const ew_kin_state *s1, float dt) {
    ew_action u;
    u.a = (s1->s - s0->s) / dt;
    double cr = s0->dx * s1->dy - s0->dy * s1->dx, dp = s0->dx * s1->dx + s0->dy * s1->dy;
    u.b = s0->s > 0.1f ? (float)(atan2(cr, dp) / (s0->s * dt)) : 0.0f;
    return u;
}
