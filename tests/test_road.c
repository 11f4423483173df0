/* test_road.c - road geometry: construction, validation, lane queries, tapers, markings, and
 * the closed-form markings of straight windows against the general ones. */
#include <stdlib.h>
#include <string.h>

#include "sim/road.h"
#include "tests/check.h"

static void test_highway(void) {
    ew_road r;
    char err[256];
    CHECK(ew_road_init_highway(&r, 3, 3.7f, 1000.0f, 30.0f, err, sizeof err) == 0, "%s", err);
    CHECK(r.n_main == 3 && r.n_lanes == 3, "lanes %d %d", r.n_main, r.n_lanes);
    CHECK_NEAR(ew_road_lane_center(&r, 0), 1.85, 1e-6);
    CHECK_NEAR(ew_road_lane_center(&r, 2), 9.25, 1e-6);
    CHECK(ew_road_lane_at(&r, 10.0f, 0.1f) == 0, "lane 0");
    CHECK(ew_road_lane_at(&r, 10.0f, 5.0f) == 1, "lane 1");
    CHECK(ew_road_lane_at(&r, 10.0f, 11.2f) == -1, "off the left edge");
    CHECK(ew_road_lane_at(&r, 10.0f, -0.1f) == -1, "off the right edge");
    CHECK(ew_road_drivable(&r, 500.0f, 5.0f), "on the road");
    CHECK(!ew_road_drivable(&r, 500.0f, -0.5f), "right of the road");
    CHECK(!ew_road_drivable(&r, 500.0f, 11.2f), "left of the road");
    CHECK(!ew_road_drivable(&r, 1000.5f, 5.0f), "past the end");
    CHECK(ew_road_neighbor(&r, 1, +1, 10.0f) == 2, "left of lane 1");
    CHECK(ew_road_neighbor(&r, 1, -1, 10.0f) == 0, "right of lane 1");
    CHECK(ew_road_neighbor(&r, 0, -1, 10.0f) == -1, "nothing right of lane 0");
    CHECK(ew_road_neighbor(&r, 2, +1, 10.0f) == -1, "nothing left of lane 2");
    float lo, hi;
    ew_road_y_range(&r, &lo, &hi);
    CHECK_NEAR(lo, 0.0, 1e-6);
    CHECK_NEAR(hi, 11.1, 1e-5);

    /* Markings over one dash period: 2 separators dashed (3 m of 12 m), 2 solid edges. */
    ew_segment seg[64];
    int n = ew_road_markings(&r, 100.0f, 112.0f, seg, 64);
    double solid = 0, dashed = 0;
    for (int i = 0; i < n && i < 64; i++) {
        double len = seg[i].b.x - seg[i].a.x;
        CHECK(len > 0 && seg[i].a.y == seg[i].b.y, "segment %d runs along x", i);
        float y = seg[i].a.y;
        if (fabsf(y) < 1e-4f || fabsf(y - 11.1f) < 1e-4f) solid += len;
        else dashed += len;
    }
    CHECK_NEAR(solid, 24.0, 1e-3);
    CHECK_NEAR(dashed, 6.0, 1e-3);
    /* The count is reported even when the buffer is too small. */
    CHECK(ew_road_markings(&r, 100.0f, 112.0f, seg, 1) == n, "count independent of cap");
}

static void test_onramp_and_closure(void) {
    ew_road r;
    char err[256];
    CHECK(ew_road_init_highway(&r, 2, 3.5f, 800.0f, 30.0f, err, sizeof err) == 0, "%s", err);
    CHECK(ew_road_add_onramp(&r, 100.0f, 400.0f, 100.0f, 25.0f, err, sizeof err) == 0, "%s", err);
    CHECK(r.n_lanes == 3 && r.lanes[2].kind == EW_LANE_ONRAMP, "ramp added");
    CHECK_NEAR(r.lanes[2].y_right, -3.5, 1e-6);
    CHECK(ew_road_lane_at(&r, 200.0f, -1.0f) == 2, "on the ramp");
    CHECK(ew_road_lane_at(&r, 50.0f, -1.0f) == -1, "before the ramp");
    CHECK(ew_road_neighbor(&r, 0, -1, 200.0f) == 2, "ramp right of lane 0");
    CHECK(ew_road_neighbor(&r, 0, -1, 450.0f) == -1, "no ramp after its end");
    CHECK(ew_road_neighbor(&r, 2, +1, 200.0f) == 0, "lane 0 left of the ramp");
    /* Taper: halfway through it the ramp is half as wide, narrowing toward lane 0. */
    float lo, hi;
    CHECK(ew_road_lane_extent(&r, 2, 350.0f, &lo, &hi), "ramp exists at 350");
    CHECK_NEAR(hi, 0.0, 1e-5);
    CHECK_NEAR(lo, -1.75, 1e-4);
    CHECK(ew_road_drivable(&r, 350.0f, -1.0f) && !ew_road_drivable(&r, 350.0f, -2.5f), "taper edge");
    CHECK(ew_road_drivable(&r, 200.0f, -3.0f), "full width before the taper");

    CHECK(ew_road_close_lane(&r, 1, 600.0f, 50.0f, err, sizeof err) == 0, "%s", err);
    CHECK(ew_road_lane_at(&r, 650.0f, 5.0f) == -1, "closed lane gone past x_from");
    CHECK(ew_road_drivable(&r, 520.0f, 5.0f) && !ew_road_drivable(&r, 620.0f, 5.0f), "closure");
    CHECK(ew_road_neighbor(&r, 0, +1, 620.0f) == -1, "no left neighbour past the closure");
    ew_segment seg[256];
    int n = ew_road_markings(&r, 0.0f, 800.0f, seg, 256);
    CHECK(n > 0 && n <= 256, "markings %d", n);
    for (int i = 0; i < n && i < 256; i++)
        CHECK(seg[i].a.x >= 0.0f && seg[i].b.x <= 800.0f && seg[i].width > 0.0f, "segment %d in range", i);
}

static void test_validation(void) {
    ew_road r;
    char err[256] = "";
    CHECK(ew_road_init_highway(&r, 0, 3.7f, 1000.0f, 30.0f, err, sizeof err) == -1 && strstr(err, "lanes"), "%s", err);
    CHECK(ew_road_init_highway(&r, 9, 3.7f, 1000.0f, 30.0f, err, sizeof err) == -1, "9 lanes");
    CHECK(ew_road_init_highway(&r, 3, 0.5f, 1000.0f, 30.0f, err, sizeof err) == -1 && strstr(err, "lane_width"), "%s", err);
    CHECK(ew_road_init_highway(&r, 3, 3.7f, NAN, 30.0f, err, sizeof err) == -1 && strstr(err, "length"), "%s", err);
    CHECK(ew_road_init_highway(&r, 3, 3.7f, 1000.0f, -1.0f, err, sizeof err) == -1, "negative speed");
    CHECK(ew_road_init_highway(&r, 3, 3.7f, 1000.0f, 30.0f, err, sizeof err) == 0, "%s", err);
    CHECK(ew_road_add_onramp(&r, 900.0f, 1200.0f, 50.0f, 20.0f, err, sizeof err) == -1, "ramp past the end");
    CHECK(ew_road_add_onramp(&r, 100.0f, 300.0f, 500.0f, 20.0f, err, sizeof err) == -1, "taper too long");
    CHECK(ew_road_close_lane(&r, 7, 500.0f, 10.0f, err, sizeof err) == -1 && strstr(err, "lane"), "%s", err);
    CHECK(ew_road_close_lane(&r, 1, -5.0f, 10.0f, err, sizeof err) == -1, "closure before the start");
    CHECK(ew_road_set_speed_limit(&r, 1, 0.0f, err, sizeof err) == -1, "zero limit");
    CHECK(ew_road_set_speed_limit(&r, 1, 25.0f, err, sizeof err) == 0 && r.lanes[1].speed_limit == 25.0f, "limit set");
    CHECK(r.n_lanes == 3, "failed calls leave no lane behind: %d", r.n_lanes);
    r.lanes[1].y_right += 0.5f;
    CHECK(ew_road_validate(&r, err, sizeof err) == -1, "gap between lanes detected");
}

static int cmp_seg(const void *pa, const void *pb) {
    const ew_segment *a = pa, *b = pb;
    float ka[5] = {a->a.y, a->a.x, a->b.x, a->b.y, a->width}, kb[5] = {b->a.y, b->a.x, b->b.x, b->b.y, b->width};
    for (int i = 0; i < 5; i++)
        if (ka[i] != kb[i]) return ka[i] < kb[i] ? -1 : 1;
    return 0;
}

/* ew_road_markings_straight + ew_road_dashes give exactly (float for float, as a set) the
 * segments of ew_road_markings wherever they apply, and decline where a lane starts, ends or
 * tapers in the window; over roads with ramps, closures, solid separators and odd dashes. */
static void test_markings_straight(void) {
    char err[256];
    enum { CAP = 4096 };
    static ew_segment ref[CAP], got[CAP];
    static float da[CAP], db[CAP];
    int applied = 0, declined = 0, bad = 0;
    for (int rk = 0; rk < 6; rk++) {
        ew_road r;
        int lanes = rk == 0 ? 1 : rk == 1 ? 8 : 2 + rk % 3;
        CHECK(ew_road_init_highway(&r, lanes, 3.5f + 0.1f * (float)rk, 600.0f, 30.0f, err, sizeof err) == 0, "%s", err);
        if (rk == 2) r.dash_gap = 0.0f;
        if (rk == 3) { r.dash_len = 0.4f; r.dash_gap = 0.3f; r.marking_width = 0.6f; }
        if (rk == 4) {
            r.dash_len = 7.3f; r.dash_gap = 1.1f;
            CHECK(ew_road_add_onramp(&r, 100, 300, 80, 25, err, sizeof err) == 0, "%s", err);
        }
        if (rk == 5) {
            CHECK(ew_road_close_lane(&r, lanes - 1, 350, 60, err, sizeof err) == 0, "%s", err);
            CHECK(ew_road_add_offramp(&r, 200, 400, 50, 20, err, sizeof err) == 0, "%s", err);
        }
        for (float x = -60.0f; x < 660.0f; x += 2.71f) {
            float x0 = x, x1 = x + 37.3f + 0.01f * x;
            float sy[2 * EW_MAX_LANES], dy[2 * EW_MAX_LANES];
            int ns = -1, nd = -1;
            if (!ew_road_markings_straight(&r, x0, x1, sy, &ns, dy, &nd)) {
                declined++;
                continue;
            }
            applied++;
            int n = ew_road_markings(&r, x0, x1, ref, CAP);
            int nda = ew_road_dashes(&r, x0, x1, da, db, CAP);
            int m = 0;
            for (int i = 0; i < ns && m < CAP; i++) got[m++] = (ew_segment){{x0, sy[i]}, {x1, sy[i]}, r.marking_width};
            for (int i = 0; i < nd; i++)
                for (int k = 0; k < nda && m < CAP; k++) got[m++] = (ew_segment){{da[k], dy[i]}, {db[k], dy[i]}, r.marking_width};
            if (n != m || n > CAP) { bad++; continue; }
            qsort(ref, (size_t)n, sizeof ref[0], cmp_seg);
            qsort(got, (size_t)m, sizeof got[0], cmp_seg);
            if (memcmp(ref, got, (size_t)n * sizeof ref[0]) != 0) bad++;
        }
    }
    CHECK(bad == 0, "closed-form markings differ from ew_road_markings in %d windows", bad);
    CHECK(applied > 200 && declined > 20, "both cases exercised (%d applied, %d declined)", applied, declined);
    /* a window with a lane start inside must decline */
    ew_road r;
    CHECK(ew_road_init_highway(&r, 3, 3.7f, 1000.0f, 30.0f, err, sizeof err) == 0, "%s", err);
    CHECK(ew_road_add_onramp(&r, 200, 400, 100, 25, err, sizeof err) == 0, "%s", err);
    float sy[2 * EW_MAX_LANES], dy[2 * EW_MAX_LANES];
    int ns, nd;
    CHECK(!ew_road_markings_straight(&r, 180.0f, 220.0f, sy, &ns, dy, &nd), "ramp start in the window");
    CHECK(!ew_road_markings_straight(&r, 320.0f, 360.0f, sy, &ns, dy, &nd), "taper in the window");
    CHECK(ew_road_markings_straight(&r, 220.0f, 280.0f, sy, &ns, dy, &nd) && ns == 2 && nd == 3,
          "ramp at full width: 2 solid edges, 3 dashed separators (got %d, %d)", ns, nd);
}

int main(void) {
    test_highway();
    test_markings_straight();
    test_onramp_and_closure();
    test_validation();
    return check_done();
}
