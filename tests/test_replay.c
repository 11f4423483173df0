/* test_replay.c - non-reactive replay (sim/replay.h): logged vehicles follow the recording
 * exactly whatever the ego does (they do not brake for it: a fast ego rear-ends them), keep
 * their ids, types and sizes; determinism; the end of the log ends the episode with
 * "replay_end"; vehicles overlapping the ego at the start are left out and counted. Also the
 * world additions it needs (external spawns without the overlap test, caller ids, batched
 * external moves). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sim/collision.h"
#include "sim/controller.h"
#include "sim/episode.h"
#include "sim/replay.h"
#include "sim/scenario_builtin.h"
#include "tests/check.h"

/* Every vehicle of the world equals frame f of the log (minus the skipped ones), with its
 * logged id, type and size; returns the number of mismatches. */
static int compare_frame(const ew_world *w, const ew_replay_log *log, int f, const ew_replay_player *p,
                         const uint32_t *skipped, int n_skipped) {
    int n, bad = 0, expect = 0;
    const ew_external_state *fr = ew_replay_log_frame(log, f, &n);
    const ew_vehicles *V = ew_world_vehicles(w);
    for (int k = 0; k < n; k++) {
        int is_skipped = 0;
        for (int s = 0; s < n_skipped; s++) is_skipped |= skipped[s] == fr[k].id;
        int i = ew_world_find(w, fr[k].id);
        if (is_skipped) {
            bad += i >= 0;
            continue;
        }
        expect++;
        if (i < 0) {
            bad++;
            continue;
        }
        ew_vtype t;
        float len, wid;
        ew_replay_log_vehicle(log, fr[k].id, &t, &len, &wid);
        if (V->x[i] != fr[k].x || V->y[i] != fr[k].y || V->v[i] != fr[k].v || fabsf(V->hx[i] - fr[k].hx) > 1e-6f ||
            fabsf(V->hy[i] - fr[k].hy) > 1e-6f || V->len[i] != len || V->wid[i] != wid || V->type[i] != (uint8_t)t ||
            !(V->flags[i] & EW_VF_EXTERNAL))
            bad++;
    }
    (void)p;
    return bad + (V->n != expect);
}

typedef struct {
    ew_episode_metrics m;
    int frame_mismatch;
    float ego_x[800], ego_y[800];
    int skipped;
    uint32_t ego_id;
} run_result;

/* One replay episode of `log` from frame `start` with controller `ctrl_name`. */
static void run_replay(const ew_world_config *base, const ew_replay_log *log, int start, const char *ctrl_name,
                       int n_cond, float goal, int replace, run_result *out) {
    char err[256];
    memset(out, 0, sizeof *out);
    ew_world_config rc;
    ew_replay_world_config(base, &rc);
    ew_world *w = ew_world_create(&rc, err, sizeof err);
    CHECK(w != NULL, "%s", err);
    ew_world_reset(w, 99);
    ew_replay_player *p = ew_replay_player_create(log, start, err, sizeof err);
    CHECK(p != NULL, "%s", err);
    ew_replay_player_set_replace_ego(p, replace);
    CHECK(ew_replay_player_begin(p, w, err, sizeof err) == 0, "%s", err);
    out->ego_id = ew_replay_player_ego_id(p);
    if (replace) {
        int n;
        const ew_external_state *fr = ew_replay_log_frame(log, start, &n);
        const ew_kin_state *e = ew_world_ego(w);
        int found = 0;
        for (int k = 0; k < n; k++)
            if (fr[k].id == out->ego_id)
                found = e->x == fr[k].x && e->y == fr[k].y && e->s == fr[k].v;
        CHECK(found && ew_world_find(w, out->ego_id) < 0, "the ego took the logged vehicle %u's place",
              (unsigned)out->ego_id);
    }
    out->skipped = ew_replay_player_skipped(p);
    ew_controller c;
    CHECK(ew_controller_builtin(ctrl_name, &c, err, sizeof err) == 0, "%s", err);
    ew_episode_cfg ec;
    ew_episode_cfg_default(&ec);
    ec.n_cond = n_cond;
    ec.goal_distance = goal;
    ec.max_steps = 790;
    ew_replay_attach(p, &ec);
    ew_episode ep;
    ew_episode_begin(&ep, &ec, w);
    /* the skipped vehicles: those of the start frame the world does not hold */
    uint32_t skipped[64];
    int n_sk = 0, n;
    const ew_external_state *fr = ew_replay_log_frame(log, start, &n);
    for (int k = 0; k < n; k++)
        if (ew_world_find(w, fr[k].id) < 0 && n_sk < 64) skipped[n_sk++] = fr[k].id;
    CHECK(n_sk == out->skipped + (out->ego_id != 0), "skipped %d, missing from the world %d", out->skipped, n_sk);
    out->frame_mismatch += compare_frame(w, log, start, p, skipped, n_sk);
    int k = 0;
    while (ew_episode_step(&ep, w, &c)) {
        if (ew_replay_player_frame(p) != start + ep.m.steps) out->frame_mismatch++;
        out->frame_mismatch += compare_frame(w, log, start + ep.m.steps, p, skipped, n_sk);
        if (k < 800) {
            out->ego_x[k] = ew_world_ego(w)->x;
            out->ego_y[k] = ew_world_ego(w)->y;
        }
        k++;
    }
    /* the last step too (collision found after the vehicles moved) */
    if (ep.m.status != EW_EP_SCRIPTED)
        out->frame_mismatch += compare_frame(w, log, start + ep.m.steps, p, skipped, n_sk);
    out->m = ep.m;
    ew_controller_destroy(&c);
    ew_replay_player_free(p);
    ew_world_destroy(w);
}

static void test_world_additions(void) {
    char err[256];
    ew_world_config c;
    ew_world_config_default(&c);
    c.ego_enabled = 0;
    for (int l = 0; l < EW_MAX_LANES; l++) c.density_per_km[l] = c.flow_per_h[l] = 0.0f;
    ew_world *w = ew_world_create(&c, err, sizeof err);
    ew_world_reset(w, 1);
    ew_spawn a = {.type = EW_VT_CAR, .lane = 0, .x = 300.0f, .y = -1e30f, .v = 10.0f};
    uint32_t ia = ew_world_spawn(w, &a, err, sizeof err);
    CHECK(ia > 0, "%s", err);
    ew_spawn b = a;
    CHECK(ew_world_spawn(w, &b, err, sizeof err) == 0, "an IDM vehicle on another is refused");
    b.flags = EW_VF_EXTERNAL;
    uint32_t ib = ew_world_spawn_id(w, &b, 50, err, sizeof err);
    CHECK(ib == 50, "an external vehicle may overlap and keeps its id (%u: %s)", (unsigned)ib, err);
    CHECK(ew_world_spawn_id(w, &b, 50, err, sizeof err) == 0 && strstr(err, "in use"), "duplicate id refused");
    ew_spawn d = {.type = EW_VT_CAR, .lane = 1, .x = 600.0f, .y = -1e30f, .v = 10.0f};
    uint32_t id = ew_world_spawn(w, &d, err, sizeof err);
    CHECK(id == 51, "automatic ids continue above the given ones (%u)", (unsigned)id);
    ew_world_stats st = ew_world_get_stats(w);
    ew_world_step(w, NULL);
    CHECK(ew_world_get_stats(w).bg_collisions > st.bg_collisions, "the overlap is counted as a background collision");
    ew_external_state s[2] = {{50, 400.0f, ew_road_lane_center(ew_world_road(w), 2), 1.0f, 0.0f, 12.0f},
                              {7777, 0, 0, 1, 0, 1}};
    CHECK(ew_world_set_externals(w, s, 1, err, sizeof err) == 0, "%s", err);
    int i = ew_world_find(w, 50);
    const ew_vehicles *V = ew_world_vehicles(w);
    CHECK(V->x[i] == 400.0f && V->v[i] == 12.0f && V->lane[i] == 2, "batched external state and lane");
    CHECK(ew_world_leader(w, 2, 350.0f, -1) == i, "lane lists rebuilt after the batch");
    CHECK(ew_world_set_externals(w, s, 2, err, sizeof err) != 0 && strstr(err, "7777"), "unknown id refused: %s", err);
    ew_world_destroy(w);
}

int main(void) {
    char err[256];
    test_world_additions();

    ew_world_config base;
    CHECK(ew_scenario_builtin("dense-3lane", &base, err, sizeof err) == 0, "%s", err);
    const int steps = 400;
    ew_replay_log *log = ew_replay_record(&base, 7, 30.0f, steps, err, sizeof err);
    CHECK(log != NULL, "%s", err);
    CHECK(ew_replay_log_steps(log) == steps, "steps");
    int n0;
    const ew_external_state *f0 = ew_replay_log_frame(log, 0, &n0);
    CHECK(n0 > 60 && f0 != NULL, "dense traffic logged (%d vehicles)", n0);
    size_t states = 0;
    for (int f = 0; f <= steps; f++) {
        int n;
        ew_replay_log_frame(log, f, &n);
        states += (size_t)n;
    }
    double per = (double)ew_replay_log_bytes(log) / (double)states;
    CHECK(per < 26.0, "compact log: %.1f bytes per vehicle-frame", per);
    printf("log: %zu vehicle-frames, %.1f bytes each\n", states, per);

    /* a recording is deterministic */
    ew_replay_log *log2 = ew_replay_record(&base, 7, 30.0f, steps, err, sizeof err);
    int same = 1;
    for (int f = 0; f <= steps && same; f++) {
        int na, nb;
        const ew_external_state *a = ew_replay_log_frame(log, f, &na), *b = ew_replay_log_frame(log2, f, &nb);
        same = na == nb && memcmp(a, b, (size_t)na * sizeof *a) == 0;
    }
    CHECK(same, "same seed, same log");
    ew_replay_log_free(log2);

    /* the vehicles follow the log exactly whatever the ego does */
    static run_result r_idm, r_none, r_idm2;
    run_replay(&base, log, 0, "idm", 20, 215.0f, 0, &r_idm);
    run_replay(&base, log, 0, "none", 20, 215.0f, 0, &r_none);
    CHECK(r_idm.frame_mismatch == 0, "idm ego: world equals the log (%d mismatches)", r_idm.frame_mismatch);
    CHECK(r_none.frame_mismatch == 0, "none ego: world equals the log (%d mismatches)", r_none.frame_mismatch);
    printf("idm: %s at %.1f m after %d steps; none: %s at %.1f m after %d steps\n", r_idm.m.label,
           (double)r_idm.m.distance, r_idm.m.steps, r_none.m.label, (double)r_none.m.distance, r_none.m.steps);
    CHECK(r_idm.m.steps > 20, "idm episode ran (%s)", r_idm.m.label);
    /* determinism */
    run_replay(&base, log, 0, "idm", 20, 215.0f, 0, &r_idm2);
    CHECK(memcmp(&r_idm.m, &r_idm2.m, sizeof r_idm.m) == 0 && memcmp(r_idm.ego_x, r_idm2.ego_x, sizeof r_idm.ego_x) == 0 &&
              memcmp(r_idm.ego_y, r_idm2.ego_y, sizeof r_idm.ego_y) == 0,
          "same log, same controller: identical episodes");

    /* replace mode: the ego is one of the logged cars */
    int ok_ins = 0, ok_rep = 0;
    for (int st = 0; st < 200; st += 40) {
        static run_result a, b;
        run_replay(&base, log, st, "idm", 20, 215.0f, 0, &a);
        run_replay(&base, log, st, "idm", 20, 215.0f, 1, &b);
        CHECK(a.frame_mismatch == 0 && b.frame_mismatch == 0, "world equals the log (start %d)", st);
        ok_ins += a.m.success;
        ok_rep += b.m.success;
    }
    printf("idm successes over 5 starts: inserted ego %d, ego replacing a logged car %d\n", ok_ins, ok_rep);

    /* log end -> replay_end: start 300 of 400, far goal */
    static run_result r_end;
    run_replay(&base, log, 300, "idm", 20, 5000.0f, 0, &r_end);
    CHECK(r_end.m.status == EW_EP_SCRIPTED && strcmp(r_end.m.label, "replay_end") == 0 && r_end.m.steps == 100,
          "log end: %s after %d steps", r_end.m.label, r_end.m.steps);
    CHECK(r_end.frame_mismatch == 0, "world equals the log to the end");
    char e2[64];
    CHECK(ew_replay_player_create(log, steps, e2, sizeof e2) == NULL, "start at the last frame refused");

    /* skipped overlaps: put the ego on a logged vehicle of lane 1 */
    ew_world_config on = base;
    float lc = ew_road_lane_center(&base.road, 1);
    for (int k = 0; k < n0; k++)
        if (fabsf(f0[k].y - lc) < 0.2f && f0[k].x > 200.0f && f0[k].x < 600.0f) {
            on.ego_x = f0[k].x;
            break;
        }
    int brute = 0;
    {
        ew_obb eb = {ew_v2(on.ego_x, lc), ew_v2(1, 0), on.ego_length + 2.0f * EW_REPLAY_MARGIN,
                     on.ego_width + 2.0f * EW_REPLAY_MARGIN};
        for (int k = 0; k < n0; k++) {
            float len, wid;
            ew_replay_log_vehicle(log, f0[k].id, NULL, &len, &wid);
            ew_obb b = {ew_v2(f0[k].x, f0[k].y), ew_v2(f0[k].hx, f0[k].hy), len, wid};
            brute += ew_obb_overlap(&eb, &b);
        }
    }
    static run_result r_on;
    run_replay(&on, log, 0, "idm", 20, 215.0f, 0, &r_on);
    CHECK(brute >= 1 && r_on.skipped == brute, "skipped %d, brute force %d", r_on.skipped, brute);
    CHECK(r_on.frame_mismatch == 0, "skipped vehicles stay out, the others follow the log");
    CHECK(r_on.m.steps > 1, "no collision at the start after the skip (%s at step %d)", r_on.m.label, r_on.m.steps);
    ew_replay_log_free(log);

    /* a fast ego with no controller rear-ends slow logged traffic, which does not brake */
    ew_world_config slow;
    ew_world_config_default(&slow);
    CHECK(ew_road_init_highway(&slow.road, 1, 3.7f, 1000.0f, 8.0f, err, sizeof err) == 0, "%s", err);
    slow.density_per_km[0] = 30.0f;
    slow.flow_per_h[0] = 800.0f;
    slow.ego_lane = 0;
    slow.ego_x = 150.0f;
    slow.ego_speed = 25.0f;
    ew_replay_log *sl = ew_replay_record(&slow, 3, 20.0f, 300, err, sizeof err);
    CHECK(sl != NULL, "%s", err);
    static run_result r_hit;
    run_replay(&slow, sl, 0, "none", 0, 215.0f, 0, &r_hit);
    CHECK(r_hit.m.status == EW_EP_COLLISION && r_hit.m.collision, "the ego hits the slow traffic (%s at step %d)",
          r_hit.m.label, r_hit.m.steps);
    CHECK(r_hit.frame_mismatch == 0, "the hit vehicle never braked or yielded: it stayed on its log (%d mismatches)",
          r_hit.frame_mismatch);
    /* a standing ego: the logged traffic behind runs into it (it does not yield), while the
     * same traffic reacting (an IDM world with the ego) stops behind it */
    ew_world_config stand = slow;
    stand.ego_speed = 0.0f;
    static run_result r_stand;
    run_replay(&stand, sl, 0, "none", 0, 215.0f, 0, &r_stand);
    CHECK(r_stand.m.status == EW_EP_COLLISION && r_stand.frame_mismatch == 0 && r_stand.ego_x[0] == 150.0f,
          "replay: a standing ego is hit from behind (%s at step %d)", r_stand.m.label, r_stand.m.steps);
    ew_world *rw = ew_world_create(&stand, err, sizeof err);
    ew_world_reset(rw, 3);
    ew_controller none;
    ew_controller_builtin("none", &none, err, sizeof err);
    ew_episode_cfg ec;
    ew_episode_cfg_default(&ec);
    ec.n_cond = 0;
    ec.max_steps = 300;
    ew_episode ep;
    ew_episode_begin(&ep, &ec, rw);
    while (ew_episode_step(&ep, rw, &none)) {
    }
    CHECK(ep.m.status == EW_EP_TIMEOUT, "reactive traffic stops behind a standing ego (%s at step %d)", ep.m.label,
          ep.m.steps);
    ew_world_destroy(rw);
    ew_replay_log_free(sl);
    return check_done();
}
