/* test_traffic_idm.c - IDM against closed forms: free-road acceleration, the equilibrium
 * gap (formula, and a follower settling behind a constant-speed leader in the world),
 * the ballistic update, and a hard stop behind a stalled vehicle without overlap. */
#include <math.h>
#include <stdio.h>

#include "sim/idm.h"
#include "sim/world.h"
#include "tests/check.h"

static void fixed_params(ew_world_config *c) {
    for (int t = 0; t < EW_VT_COUNT; t++) {
        ew_vtype_params *p = &c->types[t];
        p->length_std = p->width_std = p->v0_factor_std = p->T_std = p->a_max_std = p->b_comf_std = 0.0f;
    }
    c->truck_share = c->moto_share = 0.0f;
}

/* A one-lane world with no traffic and no ego. */
static ew_world *empty_world(float length, float limit) {
    ew_world_config c;
    ew_world_config_default(&c);
    char err[256];
    CHECK(ew_road_init_highway(&c.road, 1, 3.7f, length, limit, err, sizeof err) == 0, "%s", err);
    for (int l = 0; l < EW_MAX_LANES; l++) c.density_per_km[l] = c.flow_per_h[l] = 0.0f;
    c.ego_enabled = 0;
    fixed_params(&c);
    ew_world *w = ew_world_create(&c, err, sizeof err);
    CHECK(w != NULL, "create: %s", err);
    return w;
}

static void closed_forms(void) {
    /* free road: a = a_max (1 - (v/v0)^4) */
    ew_idm_p p = ew_idm_params(30.0f, 1.5f, 2.0f, 1.75f, 2.5f, 4.0f);
    for (float v = 0.0f; v <= 35.0f; v += 2.5f) {
        double r = v / 30.0;
        CHECK_NEAR(ew_idm_free(&p, v), 1.75 * (1.0 - r * r * r * r), 1e-5);
    }
    /* a general delta goes through powf and agrees with the formula */
    ew_idm_p p3 = ew_idm_params(30.0f, 1.5f, 2.0f, 1.75f, 2.5f, 3.0f);
    CHECK_NEAR(ew_idm_free(&p3, 15.0f), 1.75 * (1.0 - 0.125), 1e-5);
    /* s* and the interaction term, by hand: v = 20, dv = 5, s = 40 */
    double ss = 2.0 + 20.0 * 1.5 + 20.0 * 5.0 / (2.0 * sqrt(1.75 * 2.5));
    CHECK_NEAR(ew_idm_sstar(&p, 20.0f, 5.0f), ss, 1e-4);
    double a = 1.75 * (1.0 - pow(20.0 / 30.0, 4.0) - (ss / 40.0) * (ss / 40.0));
    CHECK_NEAR(ew_idm_accel(&p, 20.0f, 5.0f, 40.0f), a, 1e-4);
    /* s* never drops below s0 (fast-approaching leader moving away) */
    CHECK_NEAR(ew_idm_sstar(&p, 10.0f, -50.0f), 2.0, 1e-6);
    /* at the equilibrium gap a follower at the leader's speed does not accelerate */
    for (float v = 1.0f; v < 29.0f; v += 3.0f) {
        double se = ew_idm_equilibrium_gap(v, 30.0, 1.5, 2.0, 4.0);
        double ref = (2.0 + v * 1.5) / sqrt(1.0 - pow(v / 30.0, 4.0));
        CHECK_NEAR(se, ref, 1e-9 * ref);
        CHECK_NEAR(ew_idm_accel(&p, v, 0.0f, (float)se), 0.0, 2e-4);
        CHECK_NEAR(ew_idm_equilibrium_speed(se, 30.0, 1.5, 2.0, 4.0), v, 1e-6);
    }
    CHECK(isinf(ew_idm_equilibrium_gap(30.0, 30.0, 1.5, 2.0, 4.0)), "no equilibrium at v0");
    CHECK(ew_idm_equilibrium_speed(1.5, 30.0, 1.5, 2.0, 4.0) == 0.0, "standing below s0");
    /* a touching leader gives a strong but finite deceleration */
    float at = ew_idm_accel(&p, 10.0f, 0.0f, 0.0f);
    CHECK(isfinite(at) && at < -100.0f, "touching: a = %g", (double)at);
}

static void ballistic(void) {
    float v = 10.0f;
    float d = ew_ballistic(&v, 2.0f, 0.1f);
    CHECK_NEAR(v, 10.2, 1e-5);
    CHECK_NEAR(d, 10.0 * 0.1 + 0.5 * 2.0 * 0.01, 1e-6);
    /* would reverse within the step: stops exactly where v reaches 0 */
    v = 1.0f;
    d = ew_ballistic(&v, -20.0f, 0.1f);
    CHECK(v == 0.0f, "speed clamped at 0, got %g", (double)v);
    CHECK_NEAR(d, 1.0 / 40.0, 1e-7);
    v = 0.0f;
    d = ew_ballistic(&v, -5.0f, 0.1f);
    CHECK(v == 0.0f && d == 0.0f, "standing stays, v %g d %g", (double)v, (double)d);
    /* lane-change profile: endpoints, symmetry, peak slope 15/8 */
    CHECK(ew_lc_profile(0.0f) == 0.0f && ew_lc_profile(1.0f) == 1.0f, "profile ends");
    CHECK_NEAR(ew_lc_profile(0.5f), 0.5, 1e-6);
    CHECK_NEAR(ew_lc_profile_d(0.5f), 1.875, 1e-6);
    CHECK_NEAR(ew_lc_profile(0.3f) + ew_lc_profile(0.7f), 1.0, 1e-6);
}

/* A follower behind a leader driven at a constant speed settles at s_e(v). */
static void settle(float v_lead) {
    const float limit = 30.0f;
    ew_world *w = empty_world(20000.0f, limit);
    if (!w) return;
    char err[256];
    ew_spawn s = {EW_VT_CAR, 0, 300.0f, -1e30f, v_lead, 0, 0, 0, EW_VF_EXTERNAL};
    uint32_t lead = ew_world_spawn(w, &s, err, sizeof err);
    CHECK(lead > 0, "spawn leader: %s", err);
    ew_spawn f = {EW_VT_CAR, 0, 150.0f, -1e30f, 0.5f * v_lead, 0, 0, 0, 0};
    uint32_t fol = ew_world_spawn(w, &f, err, sizeof err);
    CHECK(fol > 0, "spawn follower: %s", err);
    const ew_world_config *c = ew_world_config_of(w);
    const ew_vtype_params *car = &c->types[EW_VT_CAR];
    double v0 = car->v0_factor * limit;
    double se = ew_idm_equilibrium_gap(v_lead, v0, car->T, car->s0, car->delta);
    float xl = 300.0f;
    const ew_vehicles *V = ew_world_vehicles(w);
    double min_gap = 1e9;
    for (int k = 0; k < 3000; k++) { /* 300 s */
        /* the follower reacts to the leader's state at the start of the step; the log then
         * moves the leader to the end of the step */
        ew_world_step(w, NULL);
        xl += v_lead * c->dt;
        CHECK(ew_world_set_external(w, lead, xl, 1.85f, 1.0f, 0.0f, v_lead, err, sizeof err) == 0, "%s", err);
        int il = ew_world_find(w, lead), ifo = ew_world_find(w, fol);
        double gap = (V->x[il] - 0.5 * V->len[il]) - (V->x[ifo] + 0.5 * V->len[ifo]);
        if (gap < min_gap) min_gap = gap;
    }
    int il = ew_world_find(w, lead), ifo = ew_world_find(w, fol);
    double gap = (V->x[il] - 0.5 * V->len[il]) - (V->x[ifo] + 0.5 * V->len[ifo]);
    printf("v = %.1f: settled gap %.3f m, s_e = %.3f m, speed %.4f\n", (double)v_lead, gap, se, (double)V->v[ifo]);
    CHECK_NEAR(gap, se, 0.005 * se);
    CHECK_NEAR(V->v[ifo], v_lead, 0.01);
    CHECK(min_gap > 0.5 * se, "never closer than half the equilibrium gap (min %g)", min_gap);
    ew_world_destroy(w);
}

/* From 30 m/s toward a stalled vehicle: stops behind it, speed never negative. */
static void hard_stop(void) {
    ew_world *w = empty_world(3000.0f, 33.0f);
    if (!w) return;
    char err[256];
    ew_spawn s = {EW_VT_CAR, 0, 400.0f, -1e30f, 0.0f, 0, 0, 0, 0};
    uint32_t stopped = ew_world_spawn(w, &s, err, sizeof err);
    CHECK(ew_world_stall(w, stopped, 0.0f, err, sizeof err) == 0, "%s", err);
    ew_spawn f = {EW_VT_CAR, 0, 200.0f, -1e30f, 30.0f, 0, 0, 0, 0};
    uint32_t fol = ew_world_spawn(w, &f, err, sizeof err);
    const ew_vehicles *V = ew_world_vehicles(w);
    double min_gap = 1e9, min_v = 1e9;
    for (int k = 0; k < 600; k++) {
        ew_world_step(w, NULL);
        int a = ew_world_find(w, stopped), b = ew_world_find(w, fol);
        double gap = (V->x[a] - 0.5 * V->len[a]) - (V->x[b] + 0.5 * V->len[b]);
        if (gap < min_gap) min_gap = gap;
        if (V->v[b] < min_v) min_v = V->v[b];
    }
    int a = ew_world_find(w, stopped), b = ew_world_find(w, fol);
    CHECK(min_gap > 0.0, "stopped behind, min gap %g", min_gap);
    CHECK(min_v >= 0.0, "speed never negative (min %g)", min_v);
    CHECK(V->v[b] < 0.05f, "follower stopped, v = %g", (double)V->v[b]);
    CHECK(V->v[a] == 0.0f, "stalled vehicle stays");
    double gap = (V->x[a] - 0.5 * V->len[a]) - (V->x[b] + 0.5 * V->len[b]);
    CHECK(gap > 1.0 && gap < 3.0, "stops about s0 behind, gap %g", gap);
    ew_world_destroy(w);
}

int main(void) {
    closed_forms();
    ballistic();
    settle(10.0f);
    settle(20.0f);
    settle(26.0f);
    hard_stop();
    return check_done();
}
