/* road.h - a straight multi-lane road as data: lanes, ramps, closures, speed limits,
 * markings and the drivable area. Frame and lane numbering: see geom.h.
 *
 * A lane is a strip [y_lo(x), y_hi(x)] that exists for x in [x_start, x_end). At full width
 * it spans [y_right, y_right + width]; over `taper_in` metres after x_start it grows from
 * zero width and over `taper_out` metres before x_end it shrinks to zero, narrowing toward
 * its `merge_side` (+1: toward the lane on its left, i.e. its right edge moves left; -1:
 * toward the right; 0: toward its centre). An on-ramp is an extra lane right of lane 0 that
 * ends with a taper (vehicles must merge left before x_end); an off-ramp is an extra lane
 * that vehicles leave the road by at x_end (`exit_at_end`); a lane closure sets a main
 * lane's x_end (and taper_out). Everything not inside some lane is off-road.
 * The road is plain data (no pointers): copy it freely. Build with ew_road_init_highway()
 * and the add/close/set functions, which validate and return 0 or -1 with a message.
 */
#ifndef EW_ROAD_H
#define EW_ROAD_H

#include "sim/geom.h"

#define EW_MAX_MAIN_LANES 8
#define EW_MAX_LANES 12

typedef enum { EW_LANE_MAIN = 0, EW_LANE_ONRAMP = 1, EW_LANE_OFFRAMP = 2 } ew_lane_kind;

typedef struct {
    ew_lane_kind kind;
    float y_right, width;   /* full-width strip [y_right, y_right + width] (m) */
    float x_start, x_end;   /* the lane exists on [x_start, x_end) (m) */
    float taper_in;         /* widening length after x_start (m, 0 = abrupt) */
    float taper_out;        /* narrowing length before x_end (m, 0 = abrupt) */
    int merge_side;         /* +1 narrows toward its left, -1 toward its right, 0 both */
    int exit_at_end;        /* vehicles reaching x_end leave the road (off-ramp, road end) */
    float speed_limit;      /* m/s */
} ew_lane;

typedef struct {
    float length;            /* main road from x = 0 to x = length (m) */
    int n_main;              /* main lanes 0..n_main-1, right to left */
    int n_lanes;             /* main lanes plus ramps */
    ew_lane lanes[EW_MAX_LANES];
    float dash_len, dash_gap; /* lane-separator dash pattern (m, each 0.1..1e6); gap 0 = solid */
    float marking_width;     /* painted line width (m) */
} ew_road;

/* A straight line segment of paint, from a to b, of the given width (m). */
typedef struct { ew_vec2 a, b; float width; } ew_segment;

/* n_lanes main lanes of lane_width, from x = 0 to length, all with speed_limit (m/s).
 * Markings default to 3 m dashes with 9 m gaps, 0.15 m wide. */
int ew_road_init_highway(ew_road *r, int n_lanes, float lane_width, float length,
                         float speed_limit, char *err, int errlen);
/* An on-ramp right of lane 0 (or right of the previous ramp) from x_start; it runs at full
 * width to x_merge_end - taper and then tapers to nothing at x_merge_end. */
int ew_road_add_onramp(ew_road *r, float x_start, float x_merge_end, float taper,
                       float speed_limit, char *err, int errlen);
/* An off-ramp right of lane 0 that opens over `taper` after x_start; vehicles leave at x_end. */
int ew_road_add_offramp(ew_road *r, float x_start, float x_end, float taper,
                        float speed_limit, char *err, int errlen);
/* Close `lane` from x_from on (it tapers to nothing over `taper` metres ending at x_from). */
int ew_road_close_lane(ew_road *r, int lane, float x_from, float taper, char *err, int errlen);
int ew_road_set_speed_limit(ew_road *r, int lane, float speed_limit, char *err, int errlen);
/* Checks every field; 0 when consistent. */
int ew_road_validate(const ew_road *r, char *err, int errlen);

/* Lateral extent of `lane` at x; returns 0 (and leaves lo/hi untouched) where it does not exist. */
int ew_road_lane_extent(const ew_road *r, int lane, float x, float *lo, float *hi);
/* Full-width centre line y of a lane. */
static inline float ew_road_lane_center(const ew_road *r, int lane) {
    return r->lanes[lane].y_right + 0.5f * r->lanes[lane].width;
}
/* The lane whose full-width strip contains y and that exists at x, or -1. */
int ew_road_lane_at(const ew_road *r, float x, float y);
/* The lane adjacent to `lane` on `side` (+1 left, -1 right) that exists at x, or -1. */
int ew_road_neighbor(const ew_road *r, int lane, int side, float x);
/* 1 when (x, y) lies inside some lane (tapers included), else 0. */
int ew_road_drivable(const ew_road *r, float x, float y);
/* Lowest and highest y of any lane's full-width strip. */
void ew_road_y_range(const ew_road *r, float *y_min, float *y_max);

/* Paint segments intersecting [x0, x1): road edges solid, separators between adjacent
 * lanes dashed (phase anchored at x = 0, so dashes are fixed on the road), lane starts and
 * ends (closures, ramp ends) included. Writes at most cap segments, returns how many
 * exist in total (call again with a bigger buffer when the return exceeds cap). */
int ew_road_markings(const ew_road *r, float x0, float x1, ew_segment *out, int cap);

/* The same paint in closed form where the window is simple: when every lane either does not
 * meet [x0, x1] (x_end <= x0 or x_start >= x1) or covers it at full width with its start
 * strictly before x0 (x_start < x0, x_start + taper_in <= x0, x1 < x_end - taper_out), and
 * dashes are separated by gaps of at least 1 mm (or are solid), returns 1 and gives the lines
 * running over [x0, x1]: solid ones at y = solid_y[0..*n_solid) and dashed ones at
 * dash_y[0..*n_dash) (each array needs room for 2 * EW_MAX_LANES). ew_road_markings() then
 * emits exactly, float for float, one segment (x0, y) -> (x1, y) per solid line and one
 * segment per dash of ew_road_dashes(x0, x1) for each dashed line, in some order, all of width
 * marking_width, and no two of them join end to end. Returns 0 (nothing written) otherwise. */
int ew_road_markings_straight(const ew_road *r, float x0, float x1, float *solid_y, int *n_solid,
                              float *dash_y, int *n_dash);
/* The dashes of a dashed line over [xa, xb): [a[i], b[i]) for i < return value (at most cap
 * written; the return is the total count, as for ew_road_markings). */
int ew_road_dashes(const ew_road *r, float xa, float xb, float *a, float *b, int cap);

#endif
