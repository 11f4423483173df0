/* road.c - road geometry: construction, validation, lane queries, markings. */
#include "sim/road.h"

#include <stdio.h>
#include <string.h>

static int fail(char *err, int errlen, const char *msg, double v) {
    if (err && errlen > 0) snprintf(err, (size_t)errlen, msg, v);
    return -1;
}

int ew_road_init_highway(ew_road *r, int n_lanes, float lane_width, float length,
                         float speed_limit, char *err, int errlen) {
    memset(r, 0, sizeof *r);
    if (n_lanes < 1 || n_lanes > EW_MAX_MAIN_LANES)
        return fail(err, errlen, "road: lanes must be 1..8 (got %g)", n_lanes);
    if (!(lane_width >= 2.0f && lane_width <= 6.0f))
        return fail(err, errlen, "road: lane_width must be in [2, 6] m (got %g)", lane_width);
    if (!(length >= 10.0f && length <= 1e6f))
        return fail(err, errlen, "road: length must be in [10, 1e6] m (got %g)", length);
    if (!(speed_limit > 0.0f && speed_limit <= 100.0f))
        return fail(err, errlen, "road: speed_limit must be in (0, 100] m/s (got %g)", speed_limit);
    r->length = length;
    r->n_main = r->n_lanes = n_lanes;
    for (int i = 0; i < n_lanes; i++) {
        ew_lane *l = &r->lanes[i];
        l->kind = EW_LANE_MAIN;
        l->y_right = (float)i * lane_width;
        l->width = lane_width;
        l->x_start = 0.0f;
        l->x_end = length;
        l->merge_side = 0;
        l->exit_at_end = 1;
        l->speed_limit = speed_limit;
    }
    r->dash_len = 3.0f;
    r->dash_gap = 9.0f;
    r->marking_width = 0.15f;
    return 0;
}

/* y of the right edge of whatever lies rightmost now (ramps stack outward). */
static float rightmost_edge(const ew_road *r) {
    float y = 0.0f;
    for (int i = 0; i < r->n_lanes; i++)
        if (r->lanes[i].y_right < y) y = r->lanes[i].y_right;
    return y;
}

static int add_ramp(ew_road *r, ew_lane_kind kind, float x_start, float x_end, float taper,
                    float speed_limit, char *err, int errlen) {
    if (r->n_lanes >= EW_MAX_LANES) return fail(err, errlen, "road: at most %g lanes in all", EW_MAX_LANES);
    if (!(x_start >= 0.0f && x_end <= r->length && x_end - x_start >= 10.0f))
        return fail(err, errlen, "road: ramp must lie inside the road and be at least 10 m long (start %g)", x_start);
    if (!(taper >= 0.0f && taper <= x_end - x_start))
        return fail(err, errlen, "road: ramp taper must be in [0, ramp length] (got %g)", taper);
    if (!(speed_limit > 0.0f && speed_limit <= 100.0f))
        return fail(err, errlen, "road: ramp speed_limit must be in (0, 100] m/s (got %g)", speed_limit);
    float w = r->lanes[0].width;
    ew_lane *l = &r->lanes[r->n_lanes];
    memset(l, 0, sizeof *l);
    l->kind = kind;
    l->width = w;
    l->y_right = rightmost_edge(r) - w;
    l->x_start = x_start;
    l->x_end = x_end;
    l->merge_side = 1;
    l->speed_limit = speed_limit;
    if (kind == EW_LANE_ONRAMP) {
        l->taper_out = taper;
        l->exit_at_end = 0;
    } else {
        l->taper_in = taper;
        l->exit_at_end = 1;
    }
    r->n_lanes++;
    if (ew_road_validate(r, err, errlen) != 0) {
        r->n_lanes--;
        return -1;
    }
    return 0;
}

int ew_road_add_onramp(ew_road *r, float x_start, float x_merge_end, float taper,
                       float speed_limit, char *err, int errlen) {
    return add_ramp(r, EW_LANE_ONRAMP, x_start, x_merge_end, taper, speed_limit, err, errlen);
}

int ew_road_add_offramp(ew_road *r, float x_start, float x_end, float taper, float speed_limit,
                        char *err, int errlen) {
    return add_ramp(r, EW_LANE_OFFRAMP, x_start, x_end, taper, speed_limit, err, errlen);
}

int ew_road_close_lane(ew_road *r, int lane, float x_from, float taper, char *err, int errlen) {
    if (lane < 0 || lane >= r->n_lanes) return fail(err, errlen, "road: no lane %g", lane);
    ew_lane *l = &r->lanes[lane];
    ew_lane saved = *l;
    if (!(x_from > l->x_start + l->taper_in && x_from <= l->x_end))
        return fail(err, errlen, "road: closure x must lie inside the lane (got %g)", x_from);
    if (!(taper >= 0.0f && taper <= x_from - l->x_start - l->taper_in))
        return fail(err, errlen, "road: closure taper must fit in the lane (got %g)", taper);
    l->x_end = x_from;
    l->taper_out = taper;
    l->exit_at_end = 0;
    /* Narrow toward the road's inside: the right half narrows to the left and vice versa. */
    if (l->kind == EW_LANE_MAIN) {
        if (r->n_main == 1) l->merge_side = 0;
        else l->merge_side = (lane < r->n_main / 2) ? 1 : (lane >= (r->n_main + 1) / 2 ? -1 : 0);
    }
    if (ew_road_validate(r, err, errlen) != 0) {
        *l = saved;
        return -1;
    }
    return 0;
}

int ew_road_set_speed_limit(ew_road *r, int lane, float speed_limit, char *err, int errlen) {
    if (lane < 0 || lane >= r->n_lanes) return fail(err, errlen, "road: no lane %g", lane);
    if (!(speed_limit > 0.0f && speed_limit <= 100.0f))
        return fail(err, errlen, "road: speed_limit must be in (0, 100] m/s (got %g)", speed_limit);
    r->lanes[lane].speed_limit = speed_limit;
    return 0;
}

int ew_road_validate(const ew_road *r, char *err, int errlen) {
    if (r->n_main < 1 || r->n_main > EW_MAX_MAIN_LANES) return fail(err, errlen, "road: n_main must be 1..8 (got %g)", r->n_main);
    if (r->n_lanes < r->n_main || r->n_lanes > EW_MAX_LANES) return fail(err, errlen, "road: bad lane count %g", r->n_lanes);
    if (!(r->length >= 10.0f && r->length <= 1e6f)) return fail(err, errlen, "road: bad length %g", r->length);
    /* dashes and gaps of at least 0.1 m: shorter ones made the marking loop run for hours
     * (and never end once the period falls below the float spacing of x; found by fuzzing) */
    if (!(r->dash_len >= 0.1f && r->dash_len <= 1e6f && (r->dash_gap == 0.0f || (r->dash_gap >= 0.1f && r->dash_gap <= 1e6f)) &&
          r->marking_width > 0.0f && r->marking_width < 1.0f))
        return fail(err, errlen, "road: bad marking pattern (dash %g m; dash and gap 0.1..1e6 m, gap 0 = solid; width < 1 m)",
                    r->dash_len);
    for (int i = 0; i < r->n_lanes; i++) {
        const ew_lane *l = &r->lanes[i];
        if (!(l->width >= 2.0f && l->width <= 6.0f)) return fail(err, errlen, "road: lane %g has a bad width", i);
        if (!(l->x_start >= 0.0f && l->x_end <= r->length && l->x_end > l->x_start))
            return fail(err, errlen, "road: lane %g has a bad x range", i);
        if (!(l->taper_in >= 0.0f && l->taper_out >= 0.0f && l->taper_in + l->taper_out <= l->x_end - l->x_start))
            return fail(err, errlen, "road: lane %g tapers are longer than the lane", i);
        if (l->merge_side < -1 || l->merge_side > 1) return fail(err, errlen, "road: lane %g has a bad merge_side", i);
        if (!(l->speed_limit > 0.0f && l->speed_limit <= 100.0f)) return fail(err, errlen, "road: lane %g has a bad speed limit", i);
        if (i < r->n_main && l->kind != EW_LANE_MAIN) return fail(err, errlen, "road: lane %g must be a main lane", i);
        if (i >= r->n_main && l->kind == EW_LANE_MAIN) return fail(err, errlen, "road: lane %g must be a ramp", i);
        if (i > 0 && i < r->n_main && fabsf(l->y_right - (r->lanes[i - 1].y_right + r->lanes[i - 1].width)) > 1e-4f)
            return fail(err, errlen, "road: main lane %g does not abut the lane on its right", i);
    }
    return 0;
}

/* Share of full width at x, in [0, 1]; 0 outside the lane. */
static float lane_frac(const ew_lane *l, float x) {
    if (x < l->x_start || x >= l->x_end) return 0.0f;
    float f = 1.0f;
    if (l->taper_in > 0.0f && x < l->x_start + l->taper_in) f = (x - l->x_start) / l->taper_in;
    if (l->taper_out > 0.0f && x > l->x_end - l->taper_out) {
        float g = (l->x_end - x) / l->taper_out;
        if (g < f) f = g;
    }
    return f;
}

static void lane_edges_frac(const ew_lane *l, float f, float *lo, float *hi) {
    float w = l->width, y0 = l->y_right;
    if (l->merge_side > 0) { *lo = y0 + w * (1.0f - f); *hi = y0 + w; }
    else if (l->merge_side < 0) { *lo = y0; *hi = y0 + w * f; }
    else { *lo = y0 + 0.5f * w * (1.0f - f); *hi = y0 + w - 0.5f * w * (1.0f - f); }
}

int ew_road_lane_extent(const ew_road *r, int lane, float x, float *lo, float *hi) {
    if (lane < 0 || lane >= r->n_lanes) return 0;
    const ew_lane *l = &r->lanes[lane];
    if (x < l->x_start || x >= l->x_end) return 0;
    lane_edges_frac(l, lane_frac(l, x), lo, hi);
    return 1;
}

int ew_road_lane_at(const ew_road *r, float x, float y) {
    for (int i = 0; i < r->n_lanes; i++) {
        const ew_lane *l = &r->lanes[i];
        if (x >= l->x_start && x < l->x_end && y >= l->y_right && y < l->y_right + l->width) return i;
    }
    return -1;
}

int ew_road_neighbor(const ew_road *r, int lane, int side, float x) {
    if (lane < 0 || lane >= r->n_lanes) return -1;
    const ew_lane *l = &r->lanes[lane];
    float edge = side > 0 ? l->y_right + l->width : l->y_right;
    for (int i = 0; i < r->n_lanes; i++) {
        if (i == lane) continue;
        const ew_lane *m = &r->lanes[i];
        float medge = side > 0 ? m->y_right : m->y_right + m->width;
        if (fabsf(medge - edge) < 1e-3f && x >= m->x_start && x < m->x_end) return i;
    }
    return -1;
}

int ew_road_drivable(const ew_road *r, float x, float y) {
    for (int i = 0; i < r->n_lanes; i++) {
        float lo, hi;
        if (ew_road_lane_extent(r, i, x, &lo, &hi) && y >= lo && y <= hi) return 1;
    }
    return 0;
}

void ew_road_y_range(const ew_road *r, float *y_min, float *y_max) {
    float lo = r->lanes[0].y_right, hi = lo + r->lanes[0].width;
    for (int i = 1; i < r->n_lanes; i++) {
        if (r->lanes[i].y_right < lo) lo = r->lanes[i].y_right;
        if (r->lanes[i].y_right + r->lanes[i].width > hi) hi = r->lanes[i].y_right + r->lanes[i].width;
    }
    *y_min = lo;
    *y_max = hi;
}

/* ---- markings ---------------------------------------------------------------------- */

typedef struct { ew_segment *out; int cap, n; float w; } seg_sink;

static void emit(seg_sink *s, float xa, float ya, float xb, float yb) {
    if (s->n < s->cap) {
        s->out[s->n].a = ew_v2(xa, ya);
        s->out[s->n].b = ew_v2(xb, yb);
        s->out[s->n].width = s->w;
    }
    s->n++;
}

/* The edge (side +1 left, -1 right) of lane l is a polyline in x; y at x: */
static float edge_y(const ew_lane *l, int side, float x) {
    float lo, hi;
    float xc = x < l->x_start ? l->x_start : (x > l->x_end ? l->x_end : x);
    float f;
    if (xc >= l->x_end) {
        f = l->taper_out > 0.0f ? 0.0f : 1.0f;
    } else {
        f = lane_frac(l, xc);
    }
    lane_edges_frac(l, f, &lo, &hi);
    return side > 0 ? hi : lo;
}

/* The dashes over [xa, xb): d0 from an integer count, not by accumulation (it always
 * advances); each dash is [max(d0, xa), min(d0 + dash_len, xb)) when not empty. */
typedef struct { float k, period, len, xa, xb; long n; } dash_iter;

static void dash_begin(dash_iter *it, const ew_road *r, float xa, float xb) {
    it->period = r->dash_len + r->dash_gap;
    it->len = r->dash_len;
    it->k = floorf(xa / it->period);
    it->xa = xa;
    it->xb = xb;
    it->n = 0;
}

static int dash_next(dash_iter *it, float *a, float *b) {
    for (;;) {
        float d0 = (it->k + (float)it->n) * it->period;
        if (!(d0 < it->xb)) return 0;
        it->n++;
        *a = d0 > it->xa ? d0 : it->xa;
        *b = d0 + it->len < it->xb ? d0 + it->len : it->xb;
        if (*b > *a) return 1;
    }
}

/* Emit the piece of lane edge over [xa, xb) (inside one linear piece), solid or dashed. */
static void emit_edge_piece(const ew_road *r, seg_sink *s, const ew_lane *l, int side, float xa,
                            float xb, int dashed) {
    if (xb <= xa) return;
    if (!dashed || r->dash_gap <= 0.0f) {
        emit(s, xa, edge_y(l, side, xa), xb, edge_y(l, side, xb));
        return;
    }
    /* The piece lies at full width on [xa, xb] (no taper inside): edge_y is the same constant
     * at every x of it (lane_frac is exactly 1 there), so it is evaluated once. */
    int flat = xa >= l->x_start + l->taper_in && xb <= l->x_end - l->taper_out;
    float yc = flat ? edge_y(l, side, xa) : 0.0f;
    dash_iter it;
    dash_begin(&it, r, xa, xb);
    float a, b;
    while (dash_next(&it, &a, &b)) {
        if (flat) emit(s, a, yc, b, yc);
        else emit(s, a, edge_y(l, side, a), b, edge_y(l, side, b));
    }
}

int ew_road_dashes(const ew_road *r, float xa, float xb, float *a, float *b, int cap) {
    dash_iter it;
    dash_begin(&it, r, xa, xb);
    int n = 0;
    float da, db;
    while (dash_next(&it, &da, &db)) {
        if (n < cap) {
            a[n] = da;
            b[n] = db;
        }
        n++;
    }
    return n;
}

int ew_road_markings(const ew_road *r, float x0, float x1, ew_segment *out, int cap) {
    seg_sink s = {out, cap, 0, r->marking_width};
    for (int i = 0; i < r->n_lanes; i++) {
        const ew_lane *l = &r->lanes[i];
        float a = l->x_start > x0 ? l->x_start : x0;
        float b = l->x_end < x1 ? l->x_end : x1;
        if (b <= a) continue;
        for (int side = -1; side <= 1; side += 2) {
            /* Break points: taper knots and the x ranges of lanes that could neighbour us.
             * Only those strictly inside (a, b) are kept: the others clamp to a or b below and
             * give only empty pieces, so the pieces are the same without them. */
            float bp[4 + 2 * EW_MAX_LANES];
            int nb = 0;
            bp[nb++] = a;
            bp[nb++] = b;
#define EW_BP(v) do { float bv_ = (v); if (bv_ > a && bv_ < b) bp[nb++] = bv_; } while (0)
            EW_BP(l->x_start + l->taper_in);
            EW_BP(l->x_end - l->taper_out);
            for (int j = 0; j < r->n_lanes; j++) {
                if (j == i) continue;
                EW_BP(r->lanes[j].x_start);
                EW_BP(r->lanes[j].x_end);
            }
#undef EW_BP
            for (int q = 1; q < nb; q++) { /* insertion sort: a handful of break points */
                float v = bp[q];
                int j = q;
                for (; j > 0 && bp[j - 1] > v; j--) bp[j] = bp[j - 1];
                bp[j] = v;
            }
            for (int k = 0; k + 1 < nb; k++) {
                float pa = bp[k], pb = bp[k + 1];
                if (pa < a) pa = a;
                if (pb > b) pb = b;
                if (pb <= pa) continue;
                float mid = 0.5f * (pa + pb);
                int nbr = ew_road_neighbor(r, i, side, mid);
                /* Separators are drawn once, by the lane on their right; where the neighbour
                 * is tapering, its own edge is drawn solid and this side is dashed. */
                if (nbr >= 0 && side > 0) emit_edge_piece(r, &s, l, side, pa, pb, 1);
                else if (nbr < 0) emit_edge_piece(r, &s, l, side, pa, pb, 0);
                else if (lane_frac(&r->lanes[nbr], mid) < 1.0f) emit_edge_piece(r, &s, l, side, pa, pb, 0);
            }
        }
        /* Lane start and end lines where the lane begins or ends at full width. */
        if (l->x_start >= x0 && l->x_start < x1 && l->taper_in <= 0.0f && l->x_start > 0.0f)
            emit(&s, l->x_start, l->y_right, l->x_start, l->y_right + l->width);
        if (l->x_end > x0 && l->x_end <= x1 && l->taper_out <= 0.0f && l->x_end < r->length)
            emit(&s, l->x_end, l->y_right, l->x_end, l->y_right + l->width);
    }
    return s.n;
}

int ew_road_markings_straight(const ew_road *r, float x0, float x1, float *solid_y, int *n_solid,
                              float *dash_y, int *n_dash) {
    if (!(r->dash_gap == 0.0f || r->dash_gap >= 1e-3f)) return 0;
    int present[EW_MAX_LANES];
    for (int i = 0; i < r->n_lanes; i++) {
        const ew_lane *l = &r->lanes[i];
        if (l->x_end <= x0 || l->x_start >= x1) present[i] = 0;
        else if (l->x_start < x0 && l->x_start + l->taper_in <= x0 && x1 < l->x_end - l->taper_out) present[i] = 1;
        else return 0;
    }
    /* As ew_road_markings: every present lane is one piece [x0, x1] with no break point
     * inside (the others' ends lie outside the window), at full width (edge_y constant), and
     * no lane start or end line lies in the window. */
    float mid = 0.5f * (x0 + x1);
    int ns = 0, nd = 0;
    for (int i = 0; i < r->n_lanes; i++) {
        if (!present[i]) continue;
        const ew_lane *l = &r->lanes[i];
        for (int side = -1; side <= 1; side += 2) {
            int nbr = ew_road_neighbor(r, i, side, mid);
            float y = edge_y(l, side, x0);
            if (nbr >= 0 && side > 0) {
                if (r->dash_gap <= 0.0f) solid_y[ns++] = y;
                else dash_y[nd++] = y;
            } else if (nbr < 0 || lane_frac(&r->lanes[nbr], mid) < 1.0f) {
                solid_y[ns++] = y;
            }
        }
    }
    *n_solid = ns;
    *n_dash = nd;
    return 1;
}
