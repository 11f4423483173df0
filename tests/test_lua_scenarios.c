/* test_lua_scenarios.c - every file of the scenario library runs, and does what it says:
 * densities, the on-ramp merge, the closure empties the lane past x, the cut-in puts a
 * vehicle in the ego's lane within the gap, the hard brake, the stop-and-go wave, the stalled
 * vehicle stops and stays, the truck share, the seeded randomised scenario, the NGSIM replay. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "lua/scenario.h"
#include "sim/ngsim.h"
#include "sim/road.h"
#include "tests/check.h"

#define NGSIM_DIR "../shared/data/ngsim"
#define NGSIM_SAMPLE NGSIM_DIR "/i80-0515-0530-vehicle3.txt"

typedef struct {
    ew_scenario *s;
    ew_world *w;
    ew_episode ep;
    ew_controller ctrl;
} run_t;

static int start(run_t *r, const char *path, const char *read_dir, int has_seed, uint64_t seed) {
    char err[4096];
    ew_lua_opts o;
    ew_lua_opts_default(&o);
    o.read_dir = read_dir;
    o.has_seed = has_seed;
    o.seed = seed;
    memset(r, 0, sizeof *r);
    r->s = ew_scenario_load(path, &o, err, sizeof err);
    CHECK(r->s != NULL, "%s: %s", path, err);
    if (!r->s) return -1;
    r->w = ew_world_create(ew_scenario_world_config(r->s), err, sizeof err);
    CHECK(r->w != NULL, "%s world: %s", path, err);
    if (!r->w) return -1;
    ew_world_reset(r->w, ew_scenario_seed(r->s));
    CHECK(ew_scenario_begin(r->s, r->w, err, sizeof err) == 0, "%s begin: %s", path, err);
    ew_controller_builtin(ew_scenario_controller(r->s), &r->ctrl, err, sizeof err);
    ew_episode_cfg ec;
    ew_scenario_episode_cfg(r->s, &ec);
    ew_episode_begin(&r->ep, &ec, r->w);
    return 0;
}

static void finish(run_t *r, const char *path) {
    if (r->w) {
        CHECK(r->ep.m.status != EW_EP_ERROR, "%s: %s", path, r->ep.m.error);
        CHECK(ew_world_get_stats(r->w).bg_collisions == 0, "%s: background collisions", path);
    }
    ew_controller_destroy(&r->ctrl);
    ew_world_destroy(r->w);
    ew_scenario_destroy(r->s);
}

static double metric(const run_t *r, const char *name) {
    double v = NAN;
    CHECK(ew_scenario_metric(r->s, name, &v) == 0, "metric %s reported", name);
    return v;
}

static void run_all(run_t *r) {
    while (ew_episode_step(&r->ep, r->w, &r->ctrl)) {
    }
}

static void test_dense(const char *path, int lanes, int min_vehicles) {
    run_t r;
    if (start(&r, path, NULL, 0, 0) == 0) {
        CHECK(ew_world_road(r.w)->n_main == lanes, "%s: %d lanes", path, ew_world_road(r.w)->n_main);
        CHECK(ew_world_vehicles(r.w)->n >= min_vehicles, "%s: %d vehicles", path, ew_world_vehicles(r.w)->n);
        run_all(&r);
        CHECK(metric(&r, "vehicles_at_start") >= min_vehicles, "%s vehicles at start", path);
    }
    finish(&r, path);
}

static void test_onramp(void) {
    const char *path = "scenarios/onramp_6lane.lua";
    run_t r;
    if (start(&r, path, NULL, 0, 0) == 0) {
        const ew_road *road = ew_world_road(r.w);
        CHECK(road->n_main == 6 && road->n_lanes == 7 && road->lanes[6].kind == EW_LANE_ONRAMP, "I-80-like road");
        run_all(&r);
        CHECK(metric(&r, "ramp_merges") >= 1, "vehicles merge from the ramp");
        const ew_vehicles *V = ew_world_vehicles(r.w);
        int past = 0;
        for (int i = 0; i < V->n; i++) past += V->lane[i] == 6 && V->x[i] > road->lanes[6].x_end;
        CHECK(past == 0, "nobody on the ramp past its end (%d)", past);
    }
    finish(&r, path);
}

static void test_closure(void) {
    const char *path = "scenarios/lane_closure.lua";
    run_t r;
    if (start(&r, path, NULL, 0, 0) == 0) {
        int bad2 = 0, checked = 0, in_lane2_before = 0;
        while (ew_episode_step(&r.ep, r.w, &r.ctrl)) {
            const ew_vehicles *V = ew_world_vehicles(r.w);
            const ew_road *road = ew_world_road(r.w);
            float lo = road->lanes[2].y_right, hi = lo + road->lanes[2].width;
            for (int i = 0; i < V->n; i++) {
                int in2 = V->y[i] > lo + 0.3f && V->y[i] < hi - 0.3f;
                if (in2 && V->x[i] > 600.0f) bad2++;
                if (in2 && V->x[i] < 500.0f) in_lane2_before++;
                checked++;
            }
        }
        CHECK(checked > 1000, "vehicles checked");
        CHECK(in_lane2_before > 0, "lane 2 is used before the closure");
        CHECK(bad2 == 0, "no vehicle in the closed lane past x = 600 (%d)", bad2);
        CHECK(fabs(metric(&r, "closed_right_at") - 20.0) < 1e-6, "the event closed the right lane at 20 s");
        const ew_vehicles *V = ew_world_vehicles(r.w);
        int bad0 = 0;
        for (int i = 0; i < V->n; i++) bad0 += V->lane[i] == 0 && V->lane_from[i] == 0 && V->x[i] > 900.0f;
        CHECK(bad0 == 0, "the right lane is empty past 900 m after its closure (%d)", bad0);
    }
    finish(&r, path);
}

static void test_cut_in(void) {
    const char *path = "scenarios/cut_in.lua";
    run_t r;
    if (start(&r, path, NULL, 0, 0) == 0) {
        /* the ego keeps its speed (controller "none" after the warm-up) so the geometry is exact */
        char err[128];
        ew_controller_destroy(&r.ctrl);
        ew_controller_builtin("none", &r.ctrl, err, sizeof err);
        int checked = 0;
        while (ew_episode_step(&r.ep, r.w, &r.ctrl)) {
            if (r.ep.m.steps == 41) { /* the hook before step 41 runs at t = 4.0 s */
                double id = NAN;
                CHECK(ew_scenario_metric(r.s, "cutin_id", &id) == 0, "cut-in fired at 4 s");
                int i = ew_world_find(r.w, (uint32_t)id);
                CHECK(i >= 0 && (ew_world_vehicles(r.w)->flags[i] & EW_VF_CHANGING), "changing lanes");
            }
            if (r.ep.m.steps == 66) { /* 4 s + 2 s change + 0.6 s */
                double id = metric(&r, "cutin_id"), gap = metric(&r, "cutin_gap_requested");
                int i = ew_world_find(r.w, (uint32_t)id);
                CHECK(i >= 0, "cut-in vehicle present");
                if (i < 0) break;
                const ew_vehicles *V = ew_world_vehicles(r.w);
                const ew_kin_state *e = ew_world_ego(r.w);
                int elane = ew_road_lane_at(ew_world_road(r.w), e->x, e->y);
                float bumper = (V->x[i] - 0.5f * V->len[i]) - (e->x + 0.5f * ew_world_config_of(r.w)->ego_length);
                CHECK(V->lane[i] == elane && !(V->flags[i] & EW_VF_CHANGING), "in the ego's lane (%d vs %d)",
                      V->lane[i], elane);
                CHECK(bumper > 0.0f && bumper <= gap, "ahead within the gap: %.2f m (asked %.0f)", (double)bumper, gap);
                CHECK(fabsf(V->y[i] - e->y) < 0.5f, "centred in the lane");
                checked = 1;
            }
        }
        CHECK(checked, "cut-in checked");
    }
    finish(&r, path);
}

static void test_hard_brake(void) {
    const char *path = "scenarios/hard_brake.lua";
    run_t r;
    if (start(&r, path, NULL, 0, 0) == 0) {
        run_all(&r);
        double before = metric(&r, "lead_speed_before"), after = metric(&r, "lead_speed_after");
        CHECK(before - after > 14.0, "the leader braked hard: %.2f -> %.2f m/s", before, after);
        CHECK(!r.ep.m.collision, "the ego did not hit it");
    }
    finish(&r, path);
}

static void test_stop_and_go(void) {
    const char *path = "scenarios/stop_and_go.lua";
    run_t r;
    if (start(&r, path, NULL, 0, 0) == 0) {
        run_all(&r);
        double vmin = metric(&r, "ego_min_speed"), vmax = metric(&r, "ego_max_speed_after_min");
        CHECK(vmin < 8.0, "the wave slows the ego down to %.2f m/s", vmin);
        CHECK(vmax > vmin + 8.0, "and it speeds up again (%.2f)", vmax);
    }
    finish(&r, path);
}

static void test_stalled(void) {
    const char *path = "scenarios/stalled_vehicle.lua";
    run_t r;
    if (start(&r, path, NULL, 0, 0) == 0) {
        uint32_t id = 0;
        float x_stop = -1.0f;
        int stopped_steps = 0, moved_after_stop = 0;
        while (ew_episode_step(&r.ep, r.w, &r.ctrl)) {
            double d;
            if (!id && ew_scenario_metric(r.s, "stalled_id", &d) == 0) id = (uint32_t)d;
            if (!id) continue;
            int i = ew_world_find(r.w, id);
            if (i < 0) continue;
            const ew_vehicles *V = ew_world_vehicles(r.w);
            CHECK(V->flags[i] & EW_VF_STALLED, "flagged stalled");
            if (V->v[i] == 0.0f) {
                if (x_stop < 0.0f) x_stop = V->x[i];
                else if (V->x[i] != x_stop) moved_after_stop++;
                stopped_steps++;
            } else if (x_stop >= 0.0f) {
                moved_after_stop++;
            }
        }
        CHECK(id != 0, "a vehicle was stalled");
        CHECK(stopped_steps > 100, "it stops (%d steps at rest)", stopped_steps);
        CHECK(moved_after_stop == 0, "and stays stopped");
        CHECK(!r.ep.m.collision, "the ego did not hit it");
    }
    finish(&r, path);
}

static void test_trucks(void) {
    const char *path = "scenarios/truck_heavy.lua";
    run_t r;
    if (start(&r, path, NULL, 0, 0) == 0) {
        const ew_vehicles *V = ew_world_vehicles(r.w);
        int trucks = 0;
        for (int i = 0; i < V->n; i++) trucks += V->type[i] == EW_VT_TRUCK;
        double share = (double)trucks / V->n;
        CHECK(share > 0.2 && share < 0.5, "truck share at start %.2f", share);
        run_all(&r);
        double obs = metric(&r, "truck_share_observed");
        CHECK(obs > 0.15 && obs < 0.55, "observed truck share %.2f", obs);
    }
    finish(&r, path);
}

static void cfg_of(const char *path, int has_seed, uint64_t seed, ew_world_config *out, double *lanes_metric) {
    char err[4096];
    ew_lua_opts o;
    ew_lua_opts_default(&o);
    o.has_seed = has_seed;
    o.seed = seed;
    ew_scenario *s = ew_scenario_load(path, &o, err, sizeof err);
    CHECK(s != NULL, "%s: %s", path, err);
    if (!s) return;
    *out = *ew_scenario_world_config(s);
    CHECK(ew_scenario_metric(s, "drawn_lanes", lanes_metric) == 0, "drawn_lanes");
    ew_scenario_destroy(s);
}

static int same_cfg(const ew_world_config *a, const ew_world_config *b) {
    return a->road.n_main == b->road.n_main && a->road.lanes[0].speed_limit == b->road.lanes[0].speed_limit &&
           a->density_per_km[0] == b->density_per_km[0] && a->flow_per_h[0] == b->flow_per_h[0] &&
           a->ego_lane == b->ego_lane && a->truck_share == b->truck_share && a->types[0].T == b->types[0].T &&
           a->seed == b->seed;
}

static void test_randomised(void) {
    const char *path = "scenarios/randomised.lua";
    ew_world_config a, b, c;
    double la = 0, lb = 0, lc = 0;
    cfg_of(path, 1, 11, &a, &la);
    cfg_of(path, 1, 11, &b, &lb);
    CHECK(same_cfg(&a, &b), "same seed, same scenario");
    CHECK(la == a.road.n_main, "drawn lanes %g = road lanes %d", la, a.road.n_main);
    int differ = 0;
    for (uint64_t sd = 12; sd < 16; sd++) {
        cfg_of(path, 1, sd, &c, &lc);
        differ += !same_cfg(&a, &c);
        CHECK(c.road.n_main >= 2 && c.road.n_main <= 5, "lanes in [2, 5]");
        CHECK(c.road.lanes[0].speed_limit >= 22.0f && c.road.lanes[0].speed_limit <= 32.0f, "limit in range");
    }
    CHECK(differ == 4, "different seeds, different scenarios (%d of 4)", differ);
    run_t r;
    if (start(&r, path, NULL, 1, 11) == 0) {
        CHECK(ew_world_config_of(r.w)->seed == 11, "the world uses the seed");
        run_all(&r);
    }
    finish(&r, path);
}

static void test_ngsim(void) {
    const char *path = "scenarios/ngsim_replay.lua";
    if (access(NGSIM_SAMPLE, R_OK) != 0) {
        check_skip("NGSIM sample not present");
        return;
    }
    /* without the folder granted the replay cannot read the log */
    char err[4096];
    ew_scenario *s = ew_scenario_load(path, NULL, err, sizeof err);
    CHECK(s == NULL && strstr(err, "not readable"), "log outside the granted folder refused: %s", s ? "" : err);
    ew_scenario_destroy(s);
    ew_ngsim_opts o;
    ew_ngsim_opts_default(&o);
    o.n_main = 6;
    ew_ngsim *g = ew_ngsim_load(NGSIM_SAMPLE, &o, err, sizeof err);
    CHECK(g != NULL, "log: %s", err);
    run_t r;
    if (g && start(&r, path, NGSIM_DIR, 0, 0) == 0) {
        CHECK(ew_scenario_has_replay(r.s), "replay scenario");
        CHECK(ew_world_road(r.w)->n_main == 6, "6 lanes from the options");
        const ew_ngsim_track *tr = &g->tracks[0];
        double maxd = 0.0;
        while (ew_episode_step(&r.ep, r.w, &r.ctrl)) {
            if (r.ep.m.steps <= 20) {
                const ew_ngsim_sample *smp = &tr->s[r.ep.m.steps];
                const ew_kin_state *e = ew_world_ego(r.w);
                maxd = fmax(maxd, hypot(e->x - smp->x, e->y - smp->y));
            }
        }
        CHECK(maxd < 0.01, "the ego follows vehicle 3's log for the warm-up (max %.4f m)", maxd);
        CHECK(r.ep.m.steps > 20, "then the controller drives (%d steps)", r.ep.m.steps);
        CHECK(fabs(metric(&r, "ego_start_x") - tr->s[0].x) < 1e-3, "starts at the logged position");
    }
    if (g) finish(&r, path);
    ew_ngsim_free(g);
}

int main(void) {
    test_dense("scenarios/dense_3lane.lua", 3, 80);
    test_dense("scenarios/dense_4lane.lua", 4, 130);
    test_onramp();
    test_closure();
    test_cut_in();
    test_hard_brake();
    test_stop_and_go();
    test_stalled();
    test_trucks();
    test_randomised();
    test_ngsim();
    return check_done();
}
