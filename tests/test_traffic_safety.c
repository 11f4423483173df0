/* test_traffic_safety.c - no background collisions over 10 simulated minutes of dense
 * traffic on 20 seeds in each of three scenarios (dense 3-lane, the I-80-like on-ramp merge,
 * a lane closure), judged by an independent brute-force all-pairs oriented-box test; every
 * vehicle on the on-ramp or the closed lane merges before its end; the ego (IDM controller)
 * is never hit. EGOWORLD_TEST_QUICK=1 runs 3 seeds of 2 minutes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "sim/scenario_builtin.h"
#include "sim/world.h"
#include "tests/check.h"

/* Separating-axis test written out independently of sim/collision.c. */
static void corners(double cx, double cy, double hx, double hy, double len, double wid, double out[4][2]) {
    double fx = 0.5 * len * hx, fy = 0.5 * len * hy, lx = -0.5 * wid * hy, ly = 0.5 * wid * hx;
    double s[4][2] = {{1, 1}, {1, -1}, {-1, -1}, {-1, 1}};
    for (int k = 0; k < 4; k++) {
        out[k][0] = cx + s[k][0] * fx + s[k][1] * lx;
        out[k][1] = cy + s[k][0] * fy + s[k][1] * ly;
    }
}

static int separated_on(double a[4][2], double b[4][2], double ax, double ay) {
    double amin = 1e300, amax = -1e300, bmin = 1e300, bmax = -1e300;
    for (int k = 0; k < 4; k++) {
        double pa = a[k][0] * ax + a[k][1] * ay, pb = b[k][0] * ax + b[k][1] * ay;
        amin = fmin(amin, pa); amax = fmax(amax, pa);
        bmin = fmin(bmin, pb); bmax = fmax(bmax, pb);
    }
    return amax < bmin || bmax < amin;
}

static int boxes_overlap(const ew_vehicles *V, int i, int j) {
    double a[4][2], b[4][2];
    corners(V->x[i], V->y[i], V->hx[i], V->hy[i], V->len[i], V->wid[i], a);
    corners(V->x[j], V->y[j], V->hx[j], V->hy[j], V->len[j], V->wid[j], b);
    double axes[4][2] = {{V->hx[i], V->hy[i]}, {-V->hy[i], V->hx[i]}, {V->hx[j], V->hy[j]}, {-V->hy[j], V->hx[j]}};
    for (int k = 0; k < 4; k++)
        if (separated_on(a, b, axes[k][0], axes[k][1])) return 0;
    return 1;
}

static int ego_overlap(const ew_world *w, int j) {
    const ew_kin_state *e = ew_world_ego(w);
    const ew_world_config *c = ew_world_config_of(w);
    const ew_vehicles *V = ew_world_vehicles(w);
    double a[4][2], b[4][2];
    corners(e->x, e->y, e->dx, e->dy, c->ego_length - 1.0, c->ego_width - 1.0, a);
    corners(V->x[j], V->y[j], V->hx[j], V->hy[j], V->len[j], V->wid[j], b);
    double axes[4][2] = {{e->dx, e->dy}, {-e->dy, e->dx}, {V->hx[j], V->hy[j]}, {-V->hy[j], V->hx[j]}};
    for (int k = 0; k < 4; k++)
        if (separated_on(a, b, axes[k][0], axes[k][1])) return 0;
    return 1;
}

typedef struct { long overlaps, ego_hits, past_end, merged_out, bad_state, steps, veh_steps, lane_changes; double demand; } tally;

static void run(const char *scenario, uint64_t seed, int steps, tally *t) {
    ew_world_config c;
    char err[256];
    if (ew_scenario_builtin(scenario, &c, err, sizeof err) != 0) {
        CHECK(0, "%s", err);
        return;
    }
    ew_world *w = ew_world_create(&c, err, sizeof err);
    CHECK(w != NULL, "%s", err);
    if (!w) return;
    ew_world_reset(w, seed);
    const ew_road *r = ew_world_road(w);
    const ew_vehicles *V = ew_world_vehicles(w);
    /* lanes that end inside the road (the on-ramp, a closed lane) */
    int ending[EW_MAX_LANES];
    for (int l = 0; l < r->n_lanes; l++) ending[l] = !r->lanes[l].exit_at_end;
    unsigned char *seen = calloc(1u << 20, 1); /* ids that merged out of an ending lane */
    CHECK(seen != NULL, "out of memory");
    if (!seen) {
        ew_world_destroy(w);
        return;
    }
    for (int k = 0; k < steps; k++) {
        ew_action u;
        ew_world_ego_idm_action(w, &u);
        ew_world_step(w, &u);
        t->steps++;
        t->veh_steps += V->n;
        for (int i = 0; i < V->n; i++) {
            if (!(isfinite(V->x[i]) && isfinite(V->y[i]) && isfinite(V->v[i]) && V->v[i] >= 0.0f)) t->bad_state++;
            for (int j = i + 1; j < V->n; j++) {
                if (fabs(V->x[j] - V->x[i]) > 0.5 * (V->len[i] + V->len[j]) + 1.0) continue;
                if (boxes_overlap(V, i, j)) t->overlaps++;
            }
            /* nothing drives past the end of a lane that ends */
            int a = V->lane[i], b = V->lane_from[i];
            if ((ending[a] && V->x[i] + 0.5f * V->len[i] > r->lanes[a].x_end + 1e-3f) ||
                (ending[b] && V->x[i] + 0.5f * V->len[i] > r->lanes[b].x_end + 1e-3f))
                t->past_end++;
            /* a merge out of an ending lane starts (first step of the change) */
            if (ending[b] && !ending[a] && (V->flags[i] & EW_VF_CHANGING) && V->id[i] < (1u << 20) &&
                !seen[V->id[i]]) {
                seen[V->id[i]] = 1;
                t->merged_out++;
            }
            const ew_kin_state *e = ew_world_ego(w);
            if (e->x < r->length && fabs(V->x[i] - e->x) < 20.0 && ego_overlap(w, i)) t->ego_hits++;
        }
    }
    for (int l = 0; l < r->n_lanes; l++)
        if (ending[l]) t->demand += c.flow_per_h[l] / 3600.0 * steps * c.dt;
    ew_world_stats st = ew_world_get_stats(w);
    t->lane_changes += st.lane_changes;
    CHECK(st.bg_collisions == 0, "%s seed %llu: the world counted %lld background collisions", scenario,
          (unsigned long long)seed, (long long)st.bg_collisions);
    free(seen);
    ew_world_destroy(w);
}

/* The world's background collision count (stats.bg_collisions, from the lane lists) equals
 * the brute-force count of overlapping background pairs, step by step, when overlaps are
 * forced: a scripted cut-in into a vehicle standing beside it, and an external (replayed)
 * vehicle placed on top of a background one. */
static void forced_overlaps_counted(void) {
    ew_world_config c;
    ew_world_config_default(&c);
    for (int l = 0; l < EW_MAX_LANES; l++) c.density_per_km[l] = c.flow_per_h[l] = 0.0f;
    c.ego_enabled = 0;
    char err[256];
    ew_world *w = ew_world_create(&c, err, sizeof err);
    CHECK(w != NULL, "%s", err);
    if (!w) return;
    const ew_vehicles *V = ew_world_vehicles(w);
    ew_spawn a = {.type = EW_VT_CAR, .lane = 0, .x = 300.0f, .y = -1e30f, .v = 0.0f};
    ew_spawn b = {.type = EW_VT_CAR, .lane = 1, .x = 299.0f, .y = -1e30f, .v = 0.0f};
    ew_spawn e = {.type = EW_VT_CAR, .lane = 2, .x = 600.0f, .y = -1e30f, .v = 10.0f, .flags = EW_VF_EXTERNAL};
    ew_spawn f = {.type = EW_VT_CAR, .lane = 2, .x = 700.0f, .y = -1e30f, .v = 10.0f};
    uint32_t ia = ew_world_spawn(w, &a, err, sizeof err), ib = ew_world_spawn(w, &b, err, sizeof err);
    uint32_t ie = ew_world_spawn(w, &e, err, sizeof err), idf = ew_world_spawn(w, &f, err, sizeof err);
    CHECK(ia && ib && ie && idf, "spawns: %s", err);
    /* a stands still; b, beside it and 1 m behind, is made to cut in (it cannot pass a, so
     * it creeps sideways into it) */
    CHECK(ew_world_stall(w, ia, 0.0f, err, sizeof err) == 0, "stall: %s", err);
    CHECK(ew_world_change_lane(w, ib, 0, 2.0f, err, sizeof err) == 0, "cut-in: %s", err);
    long brute = 0, ext_steps = 0;
    for (int k = 0; k < 80; k++) {
        if (k == 40) { /* the external vehicle onto the background one in lane 2 */
            int jf = ew_world_find(w, idf);
            CHECK(ew_world_set_external(w, ie, V->x[jf] + 1.0f, V->y[jf], 1.0f, 0.0f, V->v[jf], err, sizeof err) == 0,
                  "set_external: %s", err);
        }
        int64_t before = ew_world_get_stats(w).bg_collisions;
        ew_world_step(w, NULL);
        long here = 0;
        for (int i = 0; i < V->n; i++)
            for (int j = i + 1; j < V->n; j++)
                if (!((V->flags[i] & V->flags[j]) & EW_VF_EXTERNAL) && boxes_overlap(V, i, j)) here++;
        int64_t counted = ew_world_get_stats(w).bg_collisions - before;
        CHECK(counted == here, "step %d: the world counted %lld overlapping pairs, brute force %ld", k,
              (long long)counted, here);
        brute += here;
        if (k >= 40 && here > 0) ext_steps++;
    }
    CHECK(brute > ext_steps && ext_steps > 0, "the forced overlaps happened (%ld pair-steps, %ld with the external vehicle)",
          brute, ext_steps);
    ew_world_destroy(w);
}

int main(void) {
    forced_overlaps_counted();
    const char *q = getenv("EGOWORLD_TEST_QUICK");
    int quick = q && *q && *q != '0';
    int seeds = quick ? 3 : 20, steps = quick ? 1200 : 6000; /* 10 min at dt = 0.1 s */
    const char *scen[] = {"dense-3lane", "onramp-6lane", "closure-3lane"};
    for (int s = 0; s < 3; s++) {
        tally t = {0};
        for (int k = 0; k < seeds; k++) run(scen[s], 1000 + (uint64_t)k, steps, &t);
        printf("%-14s %d seeds x %d steps: %.1f vehicles on average, %ld lane changes, %ld overlaps, "
               "%ld ego hits, %ld past a lane end, %ld merges out of ending lanes (inflow demand %.0f)\n",
               scen[s], seeds, steps, (double)t.veh_steps / (double)t.steps, t.lane_changes, t.overlaps,
               t.ego_hits, t.past_end, t.merged_out, t.demand);
        CHECK(t.overlaps == 0, "%s: %ld background overlaps (brute force)", scen[s], t.overlaps);
        CHECK(t.bad_state == 0, "%s: %ld non-finite or negative-speed states", scen[s], t.bad_state);
        CHECK(t.past_end == 0, "%s: %ld vehicle-steps past the end of their lane", scen[s], t.past_end);
        CHECK(t.ego_hits == 0, "%s: the ego was hit %ld times", scen[s], t.ego_hits);
        CHECK(t.veh_steps > 40L * t.steps, "%s: dense traffic (%.1f vehicles)", scen[s], (double)t.veh_steps / (double)t.steps);
        CHECK(t.lane_changes > 0, "%s: vehicles change lanes", scen[s]);
        /* the ending lane drains: at least half of the demand entering it merges out */
        CHECK(t.merged_out >= 0.5 * t.demand, "%s: %ld merges for a demand of %.0f", scen[s], t.merged_out, t.demand);
    }
    return check_done();
}
