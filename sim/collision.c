/* collision.c - separating-axis tests for oriented boxes (contract in sim/collision.h). */
#include "sim/collision.h"

#include <math.h>

/* Half extent of box b projected on unit axis n. */
static float radius(const ew_obb *b, ew_vec2 n) {
    float c = fabsf(ew_v2_dot(b->d, n));
    float s = fabsf(ew_v2_cross(b->d, n)); /* |perp(d) . n| */
    return 0.5f * b->len * c + 0.5f * b->wid * s;
}

/* The 4 candidate axes: both boxes' heading and left normal. */
static void axes(const ew_obb *a, const ew_obb *b, ew_vec2 ax[4]) {
    ax[0] = a->d;
    ax[1] = ew_v2_perp(a->d);
    ax[2] = b->d;
    ax[3] = ew_v2_perp(b->d);
}

float ew_obb_separation(const ew_obb *a, const ew_obb *b) {
    ew_vec2 ax[4];
    axes(a, b, ax);
    ew_vec2 t = ew_v2_sub(b->c, a->c);
    float best = -INFINITY;
    for (int i = 0; i < 4; i++) {
        float g = fabsf(ew_v2_dot(t, ax[i])) - radius(a, ax[i]) - radius(b, ax[i]);
        if (g > best) best = g;
    }
    return best;
}

int ew_obb_overlap(const ew_obb *a, const ew_obb *b) {
    /* Test the axes in a fixed order that does not depend on argument order, so the result
     * is exactly symmetric: sort the two boxes by a total order on their fields. */
    const ew_obb *p = a, *q = b;
    if (b->c.x < a->c.x || (b->c.x == a->c.x && b->c.y < a->c.y)) { p = b; q = a; }
    ew_vec2 ax[4];
    axes(p, q, ax);
    ew_vec2 t = ew_v2_sub(q->c, p->c);
    for (int i = 0; i < 4; i++)
        if (fabsf(ew_v2_dot(t, ax[i])) > radius(p, ax[i]) + radius(q, ax[i])) return 0;
    return 1;
}

ew_obb ew_obb_shrink(ew_obb b, float tol) {
    b.len -= tol;
    b.wid -= tol;
    if (!(b.len > 0.0f)) b.len = 0.0f;
    if (!(b.wid > 0.0f)) b.wid = 0.0f;
    return b;
}

float ew_obb_ttc(const ew_obb *a, ew_vec2 va, const ew_obb *b, ew_vec2 vb, float horizon) {
    ew_vec2 ax[4];
    axes(a, b, ax);
    ew_vec2 t = ew_v2_sub(b->c, a->c);
    ew_vec2 w = ew_v2_sub(vb, va); /* relative velocity of b */
    float t0 = 0.0f, t1 = horizon;
    for (int i = 0; i < 4; i++) {
        float r = radius(a, ax[i]) + radius(b, ax[i]);
        float p = ew_v2_dot(t, ax[i]), q = ew_v2_dot(w, ax[i]);
        /* overlap on this axis while -r <= p + q t <= r */
        if (q == 0.0f) {
            if (fabsf(p) > r) return INFINITY;
            continue;
        }
        float ta = (-r - p) / q, tb = (r - p) / q;
        if (ta > tb) { float s = ta; ta = tb; tb = s; }
        if (ta > t0) t0 = ta;
        if (tb < t1) t1 = tb;
        if (t0 > t1) return INFINITY;
    }
    return t0;
}

float ew_ttc_1d(float gap, float v_follow, float v_lead) {
    if (gap <= 0.0f) return 0.0f;
    float closing = v_follow - v_lead;
    if (!(closing > 0.0f)) return INFINITY;
    return gap / closing;
}
