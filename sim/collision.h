/* collision.h - oriented-box overlap (separating axes), tolerance shrink, separation,
 * time-to-collision helpers. Boxes are ew_obb (sim/geom.h: centre, unit heading, full
 * length along the heading, full width).
 *
 * Contract:
 *  - Boxes are CLOSED sets: boxes that touch (share an edge or a corner, zero gap) overlap.
 *    ew_obb_overlap(a, b) == (ew_obb_separation(a, b) <= 0) for every pair, and both are
 *    symmetric in a and b (up to float rounding in the separation value).
 *  - ew_obb_shrink(b, tol) reduces the length and the width each by tol metres (tol/2 on
 *    every side), clamped at zero; the anchor's collision test shrinks the ego footprint by
 *    tol = 1 m and tests it against the unshrunk other vehicles. A negative tol grows the box.
 *  - Headings must be unit vectors; lengths and widths >= 0. No allocation, no state.
 */
#ifndef EW_COLLISION_H
#define EW_COLLISION_H

#include "sim/geom.h"

/* 1 when the closed boxes intersect (separating-axis test on the 4 edge normals), else 0. */
int ew_obb_overlap(const ew_obb *a, const ew_obb *b);

/* The box with length and width each reduced by tol (clamped at 0); centre and heading kept. */
ew_obb ew_obb_shrink(ew_obb b, float tol);

/* Largest gap over the 4 separating axes: |t.L| - ra(L) - rb(L), metres.
 * > 0: separated; the value is a lower bound on the Euclidean distance (equal to it when the
 *      closest features are an edge and a vertex or parallel edges facing each other).
 * <= 0: overlapping; -value is the penetration depth (the shortest translation that
 *      separates the boxes). */
float ew_obb_separation(const ew_obb *a, const ew_obb *b);

/* Earliest time t in [0, horizon] at which boxes a and b, translating at constant velocities
 * va and vb (m/s, road frame; no rotation), overlap; 0 when they overlap now; INFINITY when
 * they do not meet within the horizon (horizon may be INFINITY). */
float ew_obb_ttc(const ew_obb *a, ew_vec2 va, const ew_obb *b, ew_vec2 vb, float horizon);

/* One-dimensional time-to-collision of a follower behind a leader: gap is bumper to bumper
 * (m). 0 when gap <= 0; INFINITY when the follower is not closing in (v_follow <= v_lead);
 * otherwise gap / (v_follow - v_lead). */
float ew_ttc_1d(float gap, float v_follow, float v_lead);

#endif
