/* geom.h - 2-D vectors, poses and oriented boxes in the road frame.
 *
 * THE ROAD FRAME (used everywhere in egoworld):
 *   x  along the road, increasing in the direction of travel (metres);
 *   y  across the road, increasing to the LEFT of the direction of travel (metres);
 *   right-handed with z up. y = 0 is the right edge of the rightmost main lane.
 *   Main lanes are numbered 0 (rightmost) to n_main-1 (leftmost); extra lanes (on- and
 *   off-ramps, at y < 0) get the indices after them (see road.h).
 *   A heading is a unit vector d = (cos t, sin t), t counter-clockwise from +x;
 *   d_perp = (-d.y, d.x) is d rotated by +90 degrees, i.e. pointing to the vehicle's left,
 *   so a positive curvature turns left.
 * A vehicle's position is the centre of its footprint rectangle (NGSIM's front-bumper
 * positions are converted by the loader).
 */
#ifndef EW_GEOM_H
#define EW_GEOM_H

#include <math.h>

typedef struct { float x, y; } ew_vec2;

/* Oriented box: centre, unit heading, full length (along d) and full width. */
typedef struct {
    ew_vec2 c;
    ew_vec2 d;
    float len, wid;
} ew_obb;

static inline ew_vec2 ew_v2(float x, float y) { ew_vec2 v = {x, y}; return v; }
static inline ew_vec2 ew_v2_add(ew_vec2 a, ew_vec2 b) { return ew_v2(a.x + b.x, a.y + b.y); }
static inline ew_vec2 ew_v2_sub(ew_vec2 a, ew_vec2 b) { return ew_v2(a.x - b.x, a.y - b.y); }
static inline ew_vec2 ew_v2_scale(ew_vec2 a, float s) { return ew_v2(a.x * s, a.y * s); }
static inline float ew_v2_dot(ew_vec2 a, ew_vec2 b) { return a.x * b.x + a.y * b.y; }
static inline float ew_v2_cross(ew_vec2 a, ew_vec2 b) { return a.x * b.y - a.y * b.x; }
static inline float ew_v2_norm(ew_vec2 a) { return sqrtf(a.x * a.x + a.y * a.y); }
static inline ew_vec2 ew_v2_perp(ew_vec2 d) { return ew_v2(-d.y, d.x); } /* +90 deg, to the left */
static inline ew_vec2 ew_v2_from_angle(float t) { return ew_v2(cosf(t), sinf(t)); }

/* The four corners of a box, counter-clockwise starting at front-left. */
static inline void ew_obb_corners(const ew_obb *b, ew_vec2 out[4]) {
    ew_vec2 f = ew_v2_scale(b->d, 0.5f * b->len);
    ew_vec2 l = ew_v2_scale(ew_v2_perp(b->d), 0.5f * b->wid);
    out[0] = ew_v2_add(ew_v2_add(b->c, f), l);
    out[1] = ew_v2_add(ew_v2_sub(b->c, f), l);
    out[2] = ew_v2_sub(ew_v2_sub(b->c, f), l);
    out[3] = ew_v2_sub(ew_v2_add(b->c, f), l);
}

#endif
