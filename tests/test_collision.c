/* test_collision.c - oriented-box overlap: touching, separated, rotated, tolerance shrink,
 * symmetry, nesting; separation and time-to-collision helpers. */
#include <math.h>

#include "sim/collision.h"
#include "sim/rng.h"
#include "tests/check.h"

static ew_obb box(float x, float y, float t, float len, float wid) {
    ew_obb b = {ew_v2(x, y), ew_v2_from_angle(t), len, wid};
    return b;
}
static ew_obb boxd(float x, float y, float dx, float dy, float len, float wid) {
    ew_obb b = {ew_v2(x, y), ew_v2(dx, dy), len, wid};
    return b;
}

static void test_cases(void) {
    ew_obb a = boxd(0, 0, 1, 0, 4, 2);
    ew_obb b = boxd(4, 0, 1, 0, 4, 2); /* bumpers touch exactly at x = 2 */
    CHECK(ew_obb_overlap(&a, &b) == 1, "touching counts as overlap");
    CHECK(ew_obb_separation(&a, &b) == 0.0f, "touching separation 0, got %g", ew_obb_separation(&a, &b));
    ew_obb c = boxd(4.01f, 0, 1, 0, 4, 2);
    CHECK(ew_obb_overlap(&a, &c) == 0, "1 cm apart: separated");
    CHECK_NEAR(ew_obb_separation(&a, &c), 0.01, 1e-5);
    ew_obb side = boxd(0, 2, 1, 0, 4, 2); /* side by side, touching at y = 1 */
    CHECK(ew_obb_overlap(&a, &side) == 1, "side touching");
    ew_obb side2 = boxd(0, 2.5f, 1, 0, 4, 2);
    CHECK(ew_obb_overlap(&a, &side2) == 0, "side separated");
    CHECK_NEAR(ew_obb_separation(&a, &side2), 0.5, 1e-6);

    /* rotated 45 degrees: a 2x2 square at 45 deg reaches sqrt(2) from its centre */
    ew_obb sq = box(0, 0, 0, 2, 2);
    ew_obb d1 = box(1.0f + 1.41f, 0, 0.78539816f, 2, 2);
    ew_obb d2 = box(1.0f + 1.42f, 0, 0.78539816f, 2, 2);
    CHECK(ew_obb_overlap(&sq, &d1) == 1, "45 deg: corner inside");
    CHECK(ew_obb_overlap(&sq, &d2) == 0, "45 deg: corner just outside");
    /* the case axis-aligned bounding boxes get wrong: AABBs overlap, boxes do not */
    ew_obb r1 = box(0, 0, 0.78539816f, 6, 0.5f);
    ew_obb r2 = box(2.0f, -1.2f, 0.78539816f, 6, 0.5f);
    CHECK(ew_obb_overlap(&r1, &r2) == 0, "parallel diagonal strips do not overlap");
    CHECK(ew_obb_separation(&r1, &r2) > 0.0f, "positive separation");

    /* nested: a small box inside a big one */
    ew_obb big = box(10, 5, 0.3f, 10, 6), small = box(10.5f, 5.2f, 1.1f, 1, 0.5f);
    CHECK(ew_obb_overlap(&big, &small) && ew_obb_overlap(&small, &big), "nested");
    CHECK(ew_obb_separation(&big, &small) < -2.0f, "nested: deep penetration %g", ew_obb_separation(&big, &small));

    /* tolerance: a 0.4 m overlap disappears when the ego shrinks by 1 m (0.5 m per side) */
    ew_obb ego = boxd(0, 0, 1, 0, 4.5f, 1.8f), other = boxd(4.1f, 0, 1, 0, 4.5f, 1.8f);
    CHECK(ew_obb_overlap(&ego, &other) == 1, "0.4 m overlap");
    ew_obb es = ew_obb_shrink(ego, 1.0f);
    CHECK(es.len == 3.5f && fabsf(es.wid - 0.8f) < 1e-6f && es.c.x == 0.0f && es.d.x == 1.0f, "shrink dims");
    CHECK(ew_obb_overlap(&es, &other) == 0, "shrunk ego clears it");
    ew_obb other2 = boxd(3.9f, 0, 1, 0, 4.5f, 1.8f); /* 0.6 m overlap: still a collision */
    CHECK(ew_obb_overlap(&es, &other2) == 1, "0.6 m overlap survives a 0.5 m shrink");
    ew_obb tiny = ew_obb_shrink(boxd(0, 0, 1, 0, 0.5f, 0.5f), 1.0f);
    CHECK(tiny.len == 0.0f && tiny.wid == 0.0f, "shrink clamps at 0");
}

/* Random pairs: overlap is symmetric and agrees with separation and with a dense sampling. */
static int point_in(const ew_obb *b, ew_vec2 p) {
    ew_vec2 t = ew_v2_sub(p, b->c);
    return fabsf(ew_v2_dot(t, b->d)) <= 0.5f * b->len && fabsf(ew_v2_cross(b->d, t)) <= 0.5f * b->wid;
}

static void test_random(void) {
    ew_rng r;
    ew_rng_seed(&r, 7);
    int asym = 0, disagree = 0, missed = 0, n_overlap = 0;
    for (int n = 0; n < 2000; n++) {
        ew_obb a = box((float)ew_rng_range(&r, -3, 3), (float)ew_rng_range(&r, -3, 3), (float)ew_rng_range(&r, -3.2, 3.2),
                       (float)ew_rng_range(&r, 0.5, 5), (float)ew_rng_range(&r, 0.5, 2.5));
        ew_obb b = box((float)ew_rng_range(&r, -3, 3), (float)ew_rng_range(&r, -3, 3), (float)ew_rng_range(&r, -3.2, 3.2),
                       (float)ew_rng_range(&r, 0.5, 5), (float)ew_rng_range(&r, 0.5, 2.5));
        int o = ew_obb_overlap(&a, &b);
        n_overlap += o;
        if (o != ew_obb_overlap(&b, &a)) asym++;
        float s = ew_obb_separation(&a, &b);
        if (fabsf(s) > 1e-4f && o != (s <= 0.0f)) disagree++;
        /* a sample point in both boxes proves overlap */
        int found = 0;
        ew_vec2 ca[4];
        ew_obb_corners(&a, ca);
        for (int i = 0; i <= 40 && !found; i++)
            for (int j = 0; j <= 40 && !found; j++) {
                ew_vec2 p = ew_v2_add(ew_v2_add(ca[2], ew_v2_scale(ew_v2_sub(ca[3], ca[2]), (float)i / 40.0f)),
                                      ew_v2_scale(ew_v2_sub(ca[1], ca[2]), (float)j / 40.0f));
                if (point_in(&b, p)) found = 1;
            }
        if (found && !o) missed++;
    }
    CHECK(asym == 0, "%d asymmetric results", asym);
    CHECK(disagree == 0, "%d overlap/separation disagreements", disagree);
    CHECK(missed == 0, "%d sampled overlaps missed", missed);
    CHECK(n_overlap > 300 && n_overlap < 1900, "a mix of cases (%d overlaps)", n_overlap);
}

static void test_ttc(void) {
    CHECK(ew_ttc_1d(20.0f, 25.0f, 20.0f) == 4.0f, "20 m at 5 m/s");
    CHECK(isinf(ew_ttc_1d(20.0f, 20.0f, 25.0f)), "opening gap");
    CHECK(isinf(ew_ttc_1d(20.0f, 20.0f, 20.0f)), "constant gap");
    CHECK(ew_ttc_1d(-0.1f, 20.0f, 25.0f) == 0.0f, "already touching");
    ew_obb a = boxd(0, 0, 1, 0, 4, 2), b = boxd(24, 0, 1, 0, 4, 2);
    float t = ew_obb_ttc(&a, ew_v2(25, 0), &b, ew_v2(20, 0), INFINITY);
    CHECK_NEAR(t, 4.0, 1e-5);
    CHECK(isinf(ew_obb_ttc(&a, ew_v2(25, 0), &b, ew_v2(20, 0), 3.0f)), "beyond the horizon");
    ew_obb c = boxd(24, 3, 1, 0, 4, 2); /* adjacent lane: never meets */
    CHECK(isinf(ew_obb_ttc(&a, ew_v2(25, 0), &c, ew_v2(20, 0), INFINITY)), "adjacent lane");
    CHECK(ew_obb_ttc(&a, ew_v2(0, 0), &a, ew_v2(0, 0), 1.0f) == 0.0f, "overlapping now");
    /* crossing: b comes from the left at 2 m/s, starting 3 m clear laterally */
    ew_obb d = boxd(0, 5, 1, 0, 4, 2);
    CHECK_NEAR(ew_obb_ttc(&a, ew_v2(0, 0), &d, ew_v2(0, -2), INFINITY), 1.5, 1e-5);
}

int main(void) {
    test_cases();
    test_random();
    test_ttc();
    return check_done();
}
