/* test_traffic_mobil.c - MOBIL lane changes: a vehicle stuck behind a slow leader moves to an
 * empty adjacent lane; it never starts a change while a vehicle (or the ego) is alongside in
 * the target lane, and does once the gap frees up; keep-right returns a lone vehicle to the
 * right lane; the lateral motion is smooth (bounded |dy| per step, continuous heading, no
 * teleport); scripted changes are validated; an exiting vehicle takes the off-ramp. */
#include <math.h>
#include <stdio.h>

#include "sim/world.h"
#include "tests/check.h"

static ew_world *two_lanes(int ego) {
    ew_world_config c;
    ew_world_config_default(&c);
    char err[256];
    CHECK(ew_road_init_highway(&c.road, 2, 3.7f, 30000.0f, 30.0f, err, sizeof err) == 0, "%s", err);
    for (int l = 0; l < EW_MAX_LANES; l++) c.density_per_km[l] = c.flow_per_h[l] = 0.0f;
    for (int t = 0; t < EW_VT_COUNT; t++) {
        ew_vtype_params *p = &c.types[t];
        p->length_std = p->width_std = p->v0_factor_std = p->T_std = p->a_max_std = p->b_comf_std = 0.0f;
    }
    c.ego_enabled = ego;
    c.ego_lane = 1;
    c.ego_x = 100.0f;
    c.ego_speed = 0.0f;
    ew_world *w = ew_world_create(&c, err, sizeof err);
    CHECK(w != NULL, "%s", err);
    return w;
}

static uint32_t spawn(ew_world *w, int lane, float x, float v, uint8_t flags) {
    char err[256];
    ew_spawn s = {EW_VT_CAR, lane, x, -1e30f, v, 0, 0, 0, flags};
    uint32_t id = ew_world_spawn(w, &s, err, sizeof err);
    CHECK(id > 0, "spawn: %s", err);
    return id;
}

/* Slow external leader at 10 m/s in lane 0; follower wants 30 m/s. blocker: 0 none,
 * 1 an external vehicle kept alongside for the first 30 s, 2 the ego kept alongside. */
static void overtake(int blocker) {
    ew_world *w = two_lanes(blocker == 2);
    if (!w) return;
    const ew_vehicles *V = ew_world_vehicles(w);
    const float dt = ew_world_config_of(w)->dt;
    char err[256];
    float xl = 260.0f;
    uint32_t lead = spawn(w, 0, xl, 10.0f, EW_VF_EXTERNAL);
    uint32_t fol = spawn(w, 0, 150.0f, 20.0f, 0);
    uint32_t side = blocker == 1 ? spawn(w, 1, 150.0f, 20.0f, EW_VF_EXTERNAL) : 0;
    int changed_at = -1, hits = 0, passed = 0;
    float prev_y = V->y[ew_world_find(w, fol)], prev_th = 0.0f, max_dy = 0.0f, max_dth = 0.0f;
    for (int k = 0; k < 900; k++) {
        ew_world_step(w, NULL);
        xl += 10.0f * dt;
        CHECK(ew_world_set_external(w, lead, xl, 1.85f, 1.0f, 0.0f, 10.0f, err, sizeof err) == 0, "%s", err);
        int i = ew_world_find(w, fol);
        if (k < 300) { /* the blocker rides alongside the follower */
            if (blocker == 1)
                CHECK(ew_world_set_external(w, side, V->x[i], 1.85f + 3.7f, 1.0f, 0.0f, V->v[i], err, sizeof err) == 0, "%s", err);
            if (blocker == 2) {
                ew_kin_state e = {V->x[i], 1.85f + 3.7f, 1.0f, 0.0f, V->v[i]};
                ew_world_set_ego(w, &e);
            }
        } else if (k == 300) {
            if (blocker == 1) CHECK(ew_world_remove(w, side, err, sizeof err) == 0, "%s", err);
            if (blocker == 2) {
                ew_kin_state e = {V->x[i] + 400.0f, 1.85f + 3.7f, 1.0f, 0.0f, 30.0f};
                ew_world_set_ego(w, &e);
            }
        }
        i = ew_world_find(w, fol);
        if (changed_at < 0 && V->lane[i] == 1) changed_at = k;
        float dy = fabsf(V->y[i] - prev_y), th = atan2f(V->hy[i], V->hx[i]);
        if (dy > max_dy) max_dy = dy;
        if (fabsf(th - prev_th) > max_dth) max_dth = fabsf(th - prev_th);
        prev_y = V->y[i];
        prev_th = th;
        /* never overlapping the slow leader */
        int il = ew_world_find(w, lead);
        if (fabsf(V->x[il] - V->x[i]) <= 0.5f * (V->len[il] + V->len[i]) && fabsf(V->y[il] - V->y[i]) < 0.5f * (V->wid[il] + V->wid[i]))
            hits++;
        if (changed_at >= 0 && V->x[i] - 0.5f * V->len[i] > V->x[il] + 0.5f * V->len[il]) passed = 1;
    }
    int i = ew_world_find(w, fol);
    printf("blocker %d: change started at step %d, now lane %d y %.2f v %.1f; max |dy| %.3f m/step, max |dth| %.4f rad/step\n",
           blocker, changed_at, V->lane[i], (double)V->y[i], (double)V->v[i], (double)max_dy, (double)max_dth);
    CHECK(changed_at >= 0, "the follower overtakes (blocker %d)", blocker);
    if (blocker) CHECK(changed_at >= 300, "no change while a vehicle is alongside (started at %d)", changed_at);
    else CHECK(changed_at < 50, "changes within a few MOBIL periods (at %d)", changed_at);
    CHECK(hits == 0, "the follower touched the slow leader on %d steps", hits);
    CHECK(passed, "the follower passed the slow leader in the left lane");
    /* then keep-right brings it back in front of the leader */
    CHECK(V->lane[i] == 0 && !(V->flags[i] & EW_VF_CHANGING), "back in the right lane, lane %d", V->lane[i]);
    CHECK_NEAR(V->y[i], 1.85f, 1e-4);
    CHECK(fabsf(V->hy[i]) < 1e-6f, "heading straight after the change");
    /* 3.7 m over 3 s with a quintic: peak lateral speed 15/8 * 3.7 / 3 = 2.31 m/s */
    CHECK(max_dy <= 0.2313f * dt * 10.0f + 1e-3f, "smooth lateral motion, max |dy| %g", (double)max_dy);
    CHECK(max_dy > 0.0f, "it moved laterally");
    CHECK(max_dth < 0.03f, "heading continuous, max step %g rad", (double)max_dth);
    CHECK(ew_world_get_stats(w).lane_changes == 2, "out and back in: %lld lane changes",
          (long long)ew_world_get_stats(w).lane_changes);
    ew_world_destroy(w);
}

/* A lone vehicle in the left lane returns right (keep-right bias > threshold). */
static void keep_right(void) {
    ew_world *w = two_lanes(0);
    if (!w) return;
    uint32_t id = spawn(w, 1, 100.0f, 25.0f, 0);
    const ew_vehicles *V = ew_world_vehicles(w);
    for (int k = 0; k < 100; k++) ew_world_step(w, NULL);
    CHECK(V->lane[ew_world_find(w, id)] == 0, "back to the right lane");
    ew_world_destroy(w);
}

static void scripted(void) {
    ew_world *w = two_lanes(0);
    if (!w) return;
    char err[256];
    uint32_t a = spawn(w, 0, 100.0f, 20.0f, 0);
    uint32_t ext = spawn(w, 1, 300.0f, 20.0f, EW_VF_EXTERNAL);
    CHECK(ew_world_change_lane(w, a, 5, 0.0f, err, sizeof err) != 0, "no lane 5");
    CHECK(ew_world_change_lane(w, a, 0, 0.0f, err, sizeof err) != 0, "not into its own lane");
    CHECK(ew_world_change_lane(w, 9999, 1, 0.0f, err, sizeof err) != 0, "unknown id");
    CHECK(ew_world_change_lane(w, ext, 0, 0.0f, err, sizeof err) != 0, "external vehicles are not steered");
    CHECK(ew_world_change_lane(w, a, 1, NAN, err, sizeof err) != 0, "NaN duration");
    CHECK(ew_world_change_lane(w, a, 1, 2.0f, err, sizeof err) == 0, "%s", err);
    CHECK(ew_world_change_lane(w, a, 1, 2.0f, err, sizeof err) != 0, "already changing");
    const ew_vehicles *V = ew_world_vehicles(w);
    int i = ew_world_find(w, a);
    CHECK((V->flags[i] & EW_VF_CHANGING) && V->lane[i] == 1 && V->lane_from[i] == 0, "change in progress");
    /* while changing it is listed in both lanes */
    CHECK(ew_world_follower(w, 0, 200.0f, -1) == i && ew_world_follower(w, 1, 200.0f, -1) == i, "seen in both lanes");
    for (int k = 0; k < 19; k++) ew_world_step(w, NULL);
    i = ew_world_find(w, a);
    CHECK(V->y[i] > 1.85f && V->y[i] < 5.55f, "half-way after 1.9 s: y %g", (double)V->y[i]);
    for (int k = 0; k < 5; k++) ew_world_step(w, NULL);
    i = ew_world_find(w, a);
    CHECK(!(V->flags[i] & EW_VF_CHANGING) && V->lane_from[i] == 1, "done after 2 s");
    CHECK(ew_world_follower(w, 0, 500.0f, -1) < 0, "gone from the old lane's list");
    ew_world_destroy(w);
}

/* An exiting vehicle in the left lane of a 3-lane road reaches the off-ramp and leaves. */
static void exits(void) {
    ew_world_config c;
    ew_world_config_default(&c);
    char err[256];
    CHECK(ew_road_init_highway(&c.road, 3, 3.7f, 1500.0f, 30.0f, err, sizeof err) == 0, "%s", err);
    CHECK(ew_road_add_offramp(&c.road, 700.0f, 1000.0f, 50.0f, 20.0f, err, sizeof err) == 0, "%s", err);
    for (int l = 0; l < EW_MAX_LANES; l++) c.density_per_km[l] = c.flow_per_h[l] = 0.0f;
    c.ego_enabled = 0;
    ew_world *w = ew_world_create(&c, err, sizeof err);
    if (!w) return;
    uint32_t id = spawn(w, 2, 50.0f, 25.0f, EW_VF_EXITING);
    uint32_t stay = spawn(w, 0, 400.0f, 25.0f, 0);
    int used_ramp = 0, stay_on_ramp = 0;
    const ew_vehicles *V = ew_world_vehicles(w);
    for (int k = 0; k < 700 && ew_world_find(w, id) >= 0; k++) {
        ew_world_step(w, NULL);
        int i = ew_world_find(w, id);
        if (i >= 0 && V->lane[i] == 3) used_ramp = 1;
        int j = ew_world_find(w, stay);
        if (j >= 0 && V->lane[j] == 3) stay_on_ramp = 1;
    }
    CHECK(used_ramp, "the exiting vehicle took the off-ramp");
    CHECK(ew_world_find(w, id) < 0, "and left the road at the ramp's end");
    CHECK(!stay_on_ramp, "a through vehicle never enters the off-ramp");
    CHECK(ew_world_get_stats(w).exited >= 1, "counted as exited");
    ew_world_destroy(w);
}

int main(void) {
    overtake(0);
    overtake(1);
    overtake(2);
    keep_right();
    scripted();
    exits();
    return check_done();
}
