/* test_traffic_world.c - the world as a whole: determinism (state hash), the initial fill
 * (no overlaps, density), Poisson inflow, leader/follower lookups against brute force,
 * mutators and their validation, the ego's IDM/lane-keeping controller, ego collision and
 * off-road tests, built-in scenarios. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "sim/scenario_builtin.h"
#include "sim/world.h"
#include "tests/check.h"

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

static uint64_t run_hash(const char *scenario, uint64_t seed, int steps) {
    ew_world_config c;
    char err[256];
    CHECK(ew_scenario_builtin(scenario, &c, err, sizeof err) == 0, "%s", err);
    c.idm_noise = 0.2f; /* exercise the per-step random stream too */
    ew_world *w = ew_world_create(&c, err, sizeof err);
    if (!w) return 0;
    ew_world_reset(w, seed);
    uint64_t h = 0xcbf29ce484222325ULL;
    const ew_vehicles *V = ew_world_vehicles(w);
    for (int k = 0; k < steps; k++) {
        ew_action u;
        ew_world_ego_idm_action(w, &u);
        ew_world_step(w, &u);
        h = fnv(h, &V->n, sizeof V->n);
        h = fnv(h, V->id, sizeof *V->id * (size_t)V->n);
        h = fnv(h, V->x, sizeof(float) * (size_t)V->n);
        h = fnv(h, V->y, sizeof(float) * (size_t)V->n);
        h = fnv(h, V->v, sizeof(float) * (size_t)V->n);
        h = fnv(h, V->hy, sizeof(float) * (size_t)V->n);
        h = fnv(h, ew_world_ego(w), sizeof(ew_kin_state));
    }
    ew_world_destroy(w);
    return h;
}

static void determinism(void) {
    const char *s[] = {"dense-3lane", "onramp-6lane"};
    for (int k = 0; k < 2; k++) {
        uint64_t a = run_hash(s[k], 7, 1000), b = run_hash(s[k], 7, 1000), c = run_hash(s[k], 8, 1000);
        CHECK(a == b, "%s: same seed, same hash (%016llx vs %016llx)", s[k], (unsigned long long)a, (unsigned long long)b);
        CHECK(a != c, "%s: another seed, another hash", s[k]);
    }
}

static void fill_and_inflow(void) {
    ew_world_config c;
    char err[256];
    ew_scenario_builtin("dense-3lane", &c, err, sizeof err);
    c.ego_enabled = 0;
    ew_world *w = ew_world_create(&c, err, sizeof err);
    if (!w) return;
    const ew_vehicles *V = ew_world_vehicles(w);
    /* the initial fill: density near the request, sorted gaps at least s0, no overlaps */
    double expect = 3 * c.density_per_km[0] * c.road.length / 1000.0;
    CHECK(V->n > 0.7 * expect && V->n < 1.15 * expect, "initial fill %d vehicles for %.0f requested", V->n, expect);
    int close = 0;
    for (int i = 0; i < V->n; i++)
        for (int j = 0; j < V->n; j++) {
            if (i == j || V->lane[i] != V->lane[j] || V->x[j] < V->x[i]) continue;
            double gap = (V->x[j] - 0.5 * V->len[j]) - (V->x[i] + 0.5 * V->len[i]);
            if (gap < V->s0[i]) close++;
        }
    CHECK(close == 0, "%d pairs closer than s0 in the initial fill", close);
    /* Poisson inflow on the light 2-lane road: about flow * time vehicles */
    ew_world_destroy(w);
    ew_scenario_builtin("free-2lane", &c, err, sizeof err);
    w = ew_world_create(&c, err, sizeof err);
    if (!w) return;
    V = ew_world_vehicles(w);
    for (int k = 0; k < 6000; k++) ew_world_step(w, NULL);
    ew_world_stats st = ew_world_get_stats(w);
    double demand = (c.flow_per_h[0] + c.flow_per_h[1]) / 6.0; /* 10 minutes */
    CHECK(fabs((double)st.spawned - demand) < 4.0 * sqrt(demand), "spawned %lld for a demand of %.0f",
          (long long)st.spawned, demand);
    CHECK(st.refused_spawns == 0, "light traffic: no refusals (%lld)", (long long)st.refused_spawns);
    CHECK(st.exited > 0 && st.vehicle_updates > 0, "vehicles leave at the road end");
    for (int i = 0; i < V->n; i++) CHECK(V->x[i] < c.road.length, "removed past the end");
    ew_world_destroy(w);
}

static void lookups(void) {
    ew_world_config c;
    char err[256];
    ew_scenario_builtin("onramp-6lane", &c, err, sizeof err);
    ew_world *w = ew_world_create(&c, err, sizeof err);
    if (!w) return;
    const ew_vehicles *V = ew_world_vehicles(w);
    int bad = 0;
    for (int k = 0; k < 300; k++) {
        ew_world_step(w, NULL);
        if (k % 30) continue;
        for (int l = 0; l < c.road.n_lanes; l++)
            for (float x = 0.0f; x < c.road.length; x += 37.0f) {
                /* brute force over vehicles listed in lane l (target or origin lane) */
                int bl = -1, bf = -1;
                for (int i = 0; i < V->n; i++) {
                    if (V->lane[i] != l && V->lane_from[i] != l) continue;
                    if (V->x[i] > x && (bl < 0 || V->x[i] < V->x[bl])) bl = i;
                    if (V->x[i] < x && (bf < 0 || V->x[i] > V->x[bf])) bf = i;
                }
                int ql = ew_world_leader(w, l, x, -1), qf = ew_world_follower(w, l, x, -1);
                if ((ql < 0) != (bl < 0) || (ql >= 0 && V->x[ql] != V->x[bl])) bad++;
                if ((qf < 0) != (bf < 0) || (qf >= 0 && V->x[qf] != V->x[bf])) bad++;
            }
    }
    CHECK(bad == 0, "%d leader/follower lookups differ from brute force", bad);
    CHECK(ew_world_leader(w, -1, 0.0f, -1) == -1 && ew_world_follower(w, 99, 0.0f, -1) == -1, "bad lanes give -1");
    ew_world_destroy(w);
}

static ew_world *empty(int lanes, int ego) {
    ew_world_config c;
    ew_world_config_default(&c);
    char err[256];
    ew_road_init_highway(&c.road, lanes, 3.7f, 2000.0f, 30.0f, err, sizeof err);
    for (int l = 0; l < EW_MAX_LANES; l++) c.density_per_km[l] = c.flow_per_h[l] = 0.0f;
    c.ego_enabled = ego;
    c.ego_lane = 0;
    c.ego_x = 100.0f;
    c.ego_speed = 20.0f;
    c.max_vehicles = 4;
    ew_world *w = ew_world_create(&c, err, sizeof err);
    CHECK(w != NULL, "%s", err);
    return w;
}

static void mutators(void) {
    ew_world *w = empty(2, 0);
    if (!w) return;
    char err[256];
    const ew_vehicles *V = ew_world_vehicles(w);
    ew_spawn s = {EW_VT_CAR, 0, 500.0f, -1e30f, 20.0f, 0, 0, 0, 0};
    uint32_t a = ew_world_spawn(w, &s, err, sizeof err);
    CHECK(a > 0, "%s", err);
    ew_spawn bad = s;
    bad.x = 502.0f;
    CHECK(ew_world_spawn(w, &bad, err, sizeof err) == 0, "overlap refused");
    CHECK(strstr(err, "overlap") != NULL, "message says why: %s", err);
    bad = s; bad.lane = 7;
    CHECK(ew_world_spawn(w, &bad, err, sizeof err) == 0, "bad lane refused");
    bad = s; bad.type = (ew_vtype)9;
    CHECK(ew_world_spawn(w, &bad, err, sizeof err) == 0, "bad type refused");
    bad = s; bad.x = 5000.0f;
    CHECK(ew_world_spawn(w, &bad, err, sizeof err) == 0, "off the road refused");
    bad = s; bad.v = NAN; bad.x = 900.0f;
    CHECK(ew_world_spawn(w, &bad, err, sizeof err) == 0, "NaN speed refused");
    bad = s; bad.x = 900.0f; bad.flags = EW_VF_CHANGING;
    CHECK(ew_world_spawn(w, &bad, err, sizeof err) == 0, "internal flags refused");
    ew_spawn t = {EW_VT_TRUCK, 1, 300.0f, -1e30f, 15.0f, 14.0f, 2.5f, 18.0f, 0};
    uint32_t b = ew_world_spawn(w, &t, err, sizeof err);
    int ib = ew_world_find(w, b);
    CHECK(b > 0 && V->type[ib] == EW_VT_TRUCK && V->len[ib] == 14.0f && V->v0[ib] == 18.0f &&
          fabsf(V->y[ib] - 5.55f) < 1e-5f, "explicit size, v0, lane centre");
    uint32_t c2 = ew_world_spawn(w, &(ew_spawn){EW_VT_MOTO, 0, 100.0f, 1.0f, 10.0f, 0, 0, 0, 0}, err, sizeof err);
    uint32_t d = ew_world_spawn(w, &(ew_spawn){EW_VT_CAR, 1, 1000.0f, -1e30f, 10.0f, 0, 0, 0, 0}, err, sizeof err);
    CHECK(c2 > 0 && d > 0, "room for 4: %s", err);
    CHECK(fabsf(V->y[ew_world_find(w, c2)] - 1.0f) < 1e-6f, "explicit y kept");
    CHECK(ew_world_spawn(w, &(ew_spawn){EW_VT_CAR, 1, 1500.0f, -1e30f, 10.0f, 0, 0, 0, 0}, err, sizeof err) == 0,
          "capacity refused");
    CHECK(ew_world_get_stats(w).refused_spawns == 1, "refusal counted");
    /* remove */
    CHECK(ew_world_remove(w, d, err, sizeof err) == 0, "%s", err);
    CHECK(ew_world_find(w, d) < 0 && V->n == 3, "removed");
    CHECK(ew_world_remove(w, d, err, sizeof err) != 0, "twice fails");
    CHECK(ew_world_find(w, a) >= 0 && ew_world_find(w, b) >= 0 && ew_world_find(w, c2) >= 0, "others keep their ids");
    /* brake: decelerates at the given rate for the given time, then IDM again */
    CHECK(ew_world_brake(w, a, -1.0f, 1.0f, err, sizeof err) != 0, "negative decel refused");
    CHECK(ew_world_brake(w, a, 4.0f, 0.0f, err, sizeof err) != 0, "zero duration refused");
    CHECK(ew_world_brake(w, 12345, 4.0f, 1.0f, err, sizeof err) != 0, "unknown id");
    int ia = ew_world_find(w, a);
    float v_before = V->v[ia];
    CHECK(ew_world_brake(w, a, 4.0f, 1.0f, err, sizeof err) == 0, "%s", err);
    for (int k = 0; k < 10; k++) ew_world_step(w, NULL);
    ia = ew_world_find(w, a);
    CHECK_NEAR(V->v[ia], v_before - 4.0f, 0.05);
    CHECK(!(V->flags[ia] & EW_VF_BRAKING), "braking over after its duration");
    ew_world_step(w, NULL);
    CHECK(V->acc[ew_world_find(w, a)] > 0.0f, "back to IDM acceleration");
    /* stall: stops and stays */
    CHECK(ew_world_stall(w, a, 3.0f, err, sizeof err) == 0, "%s", err);
    for (int k = 0; k < 200; k++) ew_world_step(w, NULL);
    ia = ew_world_find(w, a);
    CHECK(V->v[ia] == 0.0f && (V->flags[ia] & EW_VF_STALLED), "stalled vehicle stands");
    /* speed limit and closure */
    CHECK(ew_world_set_speed_limit(w, 1, 20.0f, err, sizeof err) == 0, "%s", err);
    CHECK(ew_world_set_speed_limit(w, 1, -3.0f, err, sizeof err) != 0, "bad limit refused");
    CHECK(ew_world_set_speed_limit(w, 4, 20.0f, err, sizeof err) != 0, "bad lane refused");
    ib = ew_world_find(w, b);
    CHECK_NEAR(V->v0[ib], 18.0f * 20.0f / 30.0f, 1e-4); /* desired speed scales with the limit */
    CHECK(ew_world_close_lane(w, 1, 1800.0f, 50.0f, err, sizeof err) == 0, "%s", err);
    CHECK(ew_world_road(w)->lanes[1].x_end == 1800.0f, "closure applied to the live road");
    CHECK(ew_world_close_lane(w, 1, 10.0f, 50.0f, err, sizeof err) != 0, "bad closure refused");
    /* external vehicles */
    CHECK(ew_world_set_external(w, a, 1.0f, 1.0f, 1.0f, 0.0f, 1.0f, err, sizeof err) != 0, "not external");
    ew_world_reset(w, 3);
    CHECK(V->n == 0 && ew_world_road(w)->lanes[1].x_end == 2000.0f, "reset restores the road");
    uint32_t e = ew_world_spawn(w, &(ew_spawn){EW_VT_CAR, 0, 100.0f, -1e30f, 10.0f, 0, 0, 0, EW_VF_EXTERNAL}, err, sizeof err);
    CHECK(ew_world_set_external(w, e, 150.0f, 5.0f, 0.0f, 0.0f, 1.0f, err, sizeof err) != 0, "zero heading refused");
    CHECK(ew_world_set_external(w, e, NAN, 5.0f, 1.0f, 0.0f, 1.0f, err, sizeof err) != 0, "NaN refused");
    CHECK(ew_world_set_external(w, e, 150.0f, 5.0f, 2.0f, 0.0f, 12.0f, err, sizeof err) == 0, "%s", err);
    int ie = ew_world_find(w, e);
    CHECK(V->x[ie] == 150.0f && V->hx[ie] == 1.0f && V->lane[ie] == 1, "external state and lane");
    ew_world_step(w, NULL);
    ie = ew_world_find(w, e);
    CHECK(V->x[ie] == 150.0f && ew_world_get_stats(w).vehicle_updates == 0, "external vehicles are not integrated");
    ew_world_destroy(w);
}

static void ego(void) {
    ew_world *w = empty(3, 1);
    if (!w) return;
    char err[256];
    /* lane keeping: from 1.2 m off the centre with a 3 degree heading error */
    float th = 0.05f;
    ew_kin_state s = {100.0f, 1.85f + 1.2f, cosf(th), sinf(th), 25.0f};
    ew_world_set_ego(w, &s);
    float max_err_after = 0.0f, prev = 1.2f;
    int sign_changes = 0;
    for (int k = 0; k < 200; k++) {
        ew_action u;
        ew_world_ego_idm_action(w, &u);
        CHECK(fabsf(u.b) <= 0.2f + 1e-6f && u.a >= -6.0f && u.a <= 6.0f, "action inside the limits");
        ew_world_step(w, &u);
        float e = ew_world_ego(w)->y - 1.85f;
        if ((e > 0) != (prev > 0) && fabsf(e) > 0.01f) sign_changes++;
        if (fabsf(e) > 0.01f) prev = e;
        if (k > 100 && fabsf(e) > max_err_after) max_err_after = fabsf(e);
    }
    CHECK(max_err_after < 0.05f, "lane centre reached, |e| %g after 10 s", (double)max_err_after);
    CHECK(sign_changes <= 1, "no oscillation (%d sign changes)", sign_changes);
    CHECK(fabsf(ew_world_ego(w)->dy) < 0.01f, "heading aligned");
    CHECK(fabsf(ew_world_ego(w)->s - 30.0f) < 1.0f, "free road: toward the desired speed, s %g", (double)ew_world_ego(w)->s);
    CHECK(!ew_world_ego_offroad(w) && !ew_world_ego_collision(w, 1.0f), "on road, no collision");
    /* a background vehicle follows the ego, an IDM ego follows a background vehicle */
    const ew_kin_state *e = ew_world_ego(w);
    ew_kin_state here = {e->x, 1.85f, 1.0f, 0.0f, 10.0f};
    ew_world_set_ego(w, &here);
    uint32_t f = ew_world_spawn(w, &(ew_spawn){EW_VT_CAR, 0, here.x - 40.0f, -1e30f, 25.0f, 0, 0, 0, 0}, err, sizeof err);
    CHECK(f > 0, "%s", err);
    CHECK(ew_world_follower(w, 0, here.x, -1) == ew_world_find(w, f), "lookup skips the ego");
    const ew_vehicles *V = ew_world_vehicles(w);
    int hits = 0;
    for (int k = 0; k < 100; k++) {
        ew_world_step(w, &(ew_action){0.0f, 0.0f});
        hits += ew_world_ego_collision(w, 0.0f);
    }
    int i = ew_world_find(w, f);
    CHECK(hits == 0, "the follower never touches the ego (%d steps)", hits);
    CHECK(i >= 0 && (V->lane[i] != 0 || V->x[i] + 0.5f * V->len[i] < ew_world_ego(w)->x - 2.25f),
          "it stays behind the ego or overtakes in another lane");
    /* collisions and off-road by construction */
    ew_kin_state onto = {V->x[i] + 1.0f, V->y[i], 1.0f, 0.0f, 0.0f};
    ew_world_set_ego(w, &onto);
    CHECK(ew_world_ego_collision(w, 1.0f), "overlap detected");
    ew_kin_state beside = {V->x[i], V->y[i] + 1.5f, 1.0f, 0.0f, 0.0f};
    ew_world_set_ego(w, &beside);
    CHECK(ew_world_ego_collision(w, 0.0f) && !ew_world_ego_collision(w, 1.0f), "tolerance shrinks the ego box");
    ew_kin_state off = {500.0f, -0.5f, 1.0f, 0.0f, 10.0f};
    ew_world_set_ego(w, &off);
    CHECK(ew_world_ego_offroad(w), "corner below y = 0 is off-road");
    ew_kin_state rot = {500.0f, 3.0f, 0.0f, 1.0f, 10.0f};
    ew_world_set_ego(w, &rot);
    CHECK(!ew_world_ego_offroad(w), "across lane 0 but inside the road");
    ew_world_destroy(w);
}

static void config(void) {
    ew_world_config c;
    char err[256];
    int n;
    const char *const *names = ew_scenario_builtin_names(&n);
    CHECK(n >= 3 && strcmp(names[0], EW_SCENARIO_DEFAULT) == 0, "default scenario first");
    for (int k = 0; k < n; k++) {
        CHECK(ew_scenario_builtin(names[k], &c, err, sizeof err) == 0, "%s: %s", names[k], err);
        ew_world *w = ew_world_create(&c, err, sizeof err);
        CHECK(w != NULL, "%s: %s", names[k], err);
        ew_world_destroy(w);
    }
    CHECK(ew_scenario_builtin("nope", &c, err, sizeof err) != 0 && strstr(err, "dense-3lane"), "unknown: %s", err);
    ew_world_config_default(&c);
    CHECK(ew_world_config_validate(&c, err, sizeof err) == 0, "%s", err);
    c.dt = 0.0f;
    CHECK(ew_world_config_validate(&c, err, sizeof err) != 0 && ew_world_create(&c, err, sizeof err) == NULL, "dt 0");
    ew_world_config_default(&c);
    c.types[EW_VT_TRUCK].T = -1.0f;
    CHECK(ew_world_config_validate(&c, err, sizeof err) != 0, "negative T");
    ew_world_config_default(&c);
    c.ego_lane = 5;
    CHECK(ew_world_config_validate(&c, err, sizeof err) != 0, "ego lane");
    ew_world_config_default(&c);
    c.truck_share = 0.8f;
    c.moto_share = 0.5f;
    CHECK(ew_world_config_validate(&c, err, sizeof err) != 0, "shares");
}

int main(void) {
    determinism();
    fill_and_inflow();
    lookups();
    mutators();
    ego();
    config();
    return check_done();
}
