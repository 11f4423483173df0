/* test_motion_data.c - predictor windows from traffic video, truth only (no tracker): the
 * context of EW_MOTION_CTX. Lane centres come from where the vehicles drive, so vehicles not
 * changing lanes sit near a lane centre; on a 3-lane road every window has a lane to the
 * left or right, the middle lane both; a leader, when present, does not overlap; the fitted
 * speed agrees with the history's mean speed; all values finite. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/motion_data.h"
#include "tests/check.h"

int main(void) {
    ew_video_stream_cfg sc;
    ew_video_stream_cfg_default(&sc);
    ew_motion_set gt = {0};
    char err[256];
    CHECK(ew_motion_collect(NULL, NULL, &sc, 5, 400, 10, NULL, &gt, NULL, NULL, err, sizeof err) == 0, "%s", err);
    CHECK(gt.n > 50, "windows %d", gt.n);
    int near = 0, straight = 0, both = 0, none = 0, lead = 0, speed_ok = 0;
    for (int i = 0; i < gt.n; i++) {
        const float *c = gt.s[i].ctx;
        if (!(gt.flags[i] & 1)) {
            straight++;
            near += fabsf(c[0] * 1.85f) < 0.4f;
        }
        both += c[1] == 1.0f && c[2] == 1.0f;
        none += c[1] == 0.0f && c[2] == 0.0f;
        if (c[8] == 1.0f) {
            lead++;
            CHECK(c[6] * 50.0f > 3.0f, "window %d: leader %.2f m ahead overlaps", i, c[6] * 50.0f);
        } else
            CHECK(c[6] == 2.0f && c[7] == 0.0f, "window %d: no leader but gap %.2f", i, c[6]);
        /* fitted speed against the history's mean speed */
        const float(*h)[2] = gt.s[i].hist;
        float v = (h[EW_MOTION_HIST - 1][0] - h[0][0]) / (0.1f * (EW_MOTION_HIST - 1));
        speed_ok += fabsf(c[3] * 30.0f - v) < 1.0f;
        for (int j = 0; j < EW_MOTION_CTX; j++) CHECK(isfinite(c[j]), "window %d ctx %d not finite", i, j);
    }
    printf("%d windows: %d of %d straight near a lane centre, %d middle lane, %d with a leader\n", gt.n, near, straight,
           both, lead);
    CHECK(near >= 0.9 * straight, "near a lane centre: %d of %d", near, straight);
    CHECK(both > 0.15 * gt.n && both < 0.6 * gt.n, "middle lane %d of %d", both, gt.n);
    CHECK(none == 0, "%d windows without neighbour lanes on a 3-lane road", none);
    CHECK(lead > 0.3 * gt.n, "leaders %d of %d", lead, gt.n);
    CHECK(speed_ok >= 0.95 * gt.n, "fitted speed %d of %d", speed_ok, gt.n);
    /* plausibility: every true window moves plausibly; a jump of the track does not */
    int plaus = 0;
    for (int i = 0; i < gt.n; i++) plaus += ew_motion_plausible(&gt.s[i], 0.4f, 0.8f);
    CHECK(plaus == gt.n, "true windows plausible: %d of %d", plaus, gt.n);
    ew_motion_sample j = gt.s[0];
    j.fut[5][1] += 0.6f; /* a lateral step out and back */
    CHECK(!ew_motion_plausible(&j, 0.4f, 0.8f), "lateral jump accepted");
    j = gt.s[0];
    for (int q = 12; q < EW_MOTION_FUT; q++) j.fut[q][0] += 1.0f; /* switched to a car 1 m ahead */
    CHECK(!ew_motion_plausible(&j, 0.4f, 0.8f), "longitudinal jump accepted");
    /* inside the view by a margin: true windows are whole boxes in view (centre at least
     * half a length, >= 1.5 m, from the ends); a position 1 cm too near either end fails */
    int inside = 0;
    for (int i = 0; i < gt.n; i++) inside += ew_motion_inside(&gt.s[i], sc.x0, sc.x0 + sc.length_m, 1.5f);
    CHECK(inside == gt.n, "true windows inside by 1.5 m: %d of %d", inside, gt.n);
    j = gt.s[0];
    CHECK(ew_motion_inside(&j, sc.x0, sc.x0 + sc.length_m, 0.0f), "inside with no margin");
    j.hist[0][0] = sc.x0 + 1.5f - 0.01f; /* gt.s[0] is inside by 1.5 m (above) but for this */
    CHECK(!ew_motion_inside(&j, sc.x0, sc.x0 + sc.length_m, 1.5f), "rear end margin");
    j = gt.s[0];
    j.fut[29][0] = sc.x0 + sc.length_m - 1.5f + 0.01f;
    CHECK(!ew_motion_inside(&j, sc.x0, sc.x0 + sc.length_m, 1.5f), "front end margin");
    j.fut[29][0] = NAN;
    CHECK(!ew_motion_inside(&j, sc.x0, sc.x0 + sc.length_m, 0.0f), "NaN position is not inside");
    /* append: twice the windows, the second copy identical */
    ew_motion_set two = {0};
    CHECK(ew_motion_set_append(&two, &gt) == 0 && ew_motion_set_append(&two, &gt) == 0, "append");
    CHECK(two.n == 2 * gt.n, "appended %d of %d", two.n, 2 * gt.n);
    CHECK(memcmp(two.s + gt.n, gt.s, sizeof *gt.s * (size_t)gt.n) == 0 &&
              memcmp(two.flags + gt.n, gt.flags, sizeof *gt.flags * (size_t)gt.n) == 0,
          "appended copy differs");
    ew_motion_set_free(&two);
    ew_motion_set_free(&gt);
    return check_done();
}
