/* test_batch.c - batched worlds: observations equal the single-world raster, results do not
 * depend on the thread count, episodes end and auto-reset, buffers are written in place;
 * episode protocol: warm-up by IDM, success, collision and off-road endings. */
#include <stdlib.h>
#include <string.h>

#include "sim/batch.h"
#include "sim/scenario_builtin.h"
#include "tests/check.h"

static uint64_t fnv(const void *p, size_t n, uint64_t h) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

typedef struct {
    uint8_t *obs, *done, *warm;
    float *state;
    ew_episode_metrics *m;
} bufs;

static uint64_t run_batch(int n, int threads, int steps, int *episodes_done, int *successes) {
    char err[256];
    ew_batch_cfg bc;
    memset(&bc, 0, sizeof bc);
    bc.n_worlds = n;
    CHECK(ew_scenario_builtin("dense-3lane", &bc.world, err, sizeof err) == 0, "%s", err);
    ew_episode_cfg_default(&bc.episode);
    bc.episode.goal_distance = 60.0f;
    bc.episode.max_steps = 120;
    ew_raster_cfg_default(&bc.raster);
    bc.threads = threads;
    bc.auto_reset = 1;
    size_t px = (size_t)EW_RASTER_CHANNELS * (size_t)bc.raster.rows * (size_t)bc.raster.cols;
    bufs b = {malloc(px * (size_t)n), malloc((size_t)n), malloc((size_t)n), malloc(sizeof(float) * 5 * (size_t)n),
              malloc(sizeof(ew_episode_metrics) * (size_t)n)};
    ew_batch_buffers bb = {b.obs, b.state, b.done, b.warm, b.m};
    ew_batch *batch = ew_batch_create(&bc, &bb, err, sizeof err);
    CHECK(batch != NULL, "%s", err);
    uint64_t h = 1469598103934665603ULL;
    if (!batch) return 0;
    ew_batch_reset(batch, 42);
    float *act = calloc((size_t)n * 2, sizeof(float));
    uint8_t *ref = malloc(px);
    *episodes_done = *successes = 0;
    for (int s = 0; s < steps; s++) {
        for (int i = 0; i < n; i++) {
            act[2 * i] = 0.3f * (float)((i + s) % 3 - 1); /* small varied accelerations */
            act[2 * i + 1] = 0.0f;
        }
        ew_batch_step(batch, act);
        for (int i = 0; i < n; i++) {
            if (b.done[i]) {
                (*episodes_done)++;
                *successes += b.m[i].success;
                h = fnv(&b.m[i].distance, sizeof(float), h);
            }
        }
        if (s == 37) { /* the buffer holds exactly the world's own raster */
            for (int i = 0; i < n; i++) {
                CHECK(ew_raster_world(&bc.raster, ew_batch_world(batch, i), ref, err, sizeof err) == 0, "%s", err);
                CHECK(memcmp(ref, b.obs + (size_t)i * px, px) == 0, "obs of world %d equals its raster", i);
                const ew_kin_state *e = ew_world_ego(ew_batch_world(batch, i));
                CHECK(b.state[5 * i] == e->x && b.state[5 * i + 4] == e->s, "ego state of world %d", i);
            }
        }
        h = fnv(b.obs, px * (size_t)n, h);
        h = fnv(b.state, sizeof(float) * 5 * (size_t)n, h);
    }
    ew_batch_destroy(batch);
    free(act);
    free(ref);
    free(b.obs); free(b.done); free(b.warm); free(b.state); free(b.m);
    return h;
}

static void test_batch(void) {
    int e1, s1, e2, s2;
    uint64_t h1 = run_batch(6, 1, 200, &e1, &s1);
    uint64_t h2 = run_batch(6, 2, 200, &e2, &s2);
    CHECK(h1 == h2, "1 and 2 threads give identical results (%llx vs %llx)", (unsigned long long)h1, (unsigned long long)h2);
    CHECK(e1 == e2 && s1 == s2, "same episodes %d/%d and successes %d/%d", e1, e2, s1, s2);
    CHECK(e1 >= 6, "every world finished at least one episode in 200 steps (%d)", e1);
    CHECK(s1 >= 1, "some episodes reach the 60 m goal (%d)", s1);
}

static void test_episode(void) {
    char err[256];
    ew_world_config wc;
    CHECK(ew_scenario_builtin("free-2lane", &wc, err, sizeof err) == 0, "%s", err);
    ew_world *w = ew_world_create(&wc, err, sizeof err);
    CHECK(w != NULL, "%s", err);
    if (!w) return;
    ew_episode_cfg ec;
    ew_episode_cfg_default(&ec);
    ec.goal_distance = 100.0f;
    ew_controller ctrl;
    CHECK(ew_controller_builtin("idm", &ctrl, err, sizeof err) == 0, "%s", err);
    CHECK(ew_controller_builtin("warp", &ctrl, err, sizeof err) == -1 && strstr(err, "warp"), "unknown controller");
    CHECK(ew_controller_builtin("idm", &ctrl, err, sizeof err) == 0, "%s", err);

    /* IDM through light traffic reaches the goal. */
    ew_world_reset(w, 3);
    ew_episode ep;
    ew_episode_begin(&ep, &ec, w);
    while (ew_episode_step(&ep, w, &ctrl)) {}
    CHECK(ep.m.status == EW_EP_SUCCESS && ep.m.distance >= 100.0f, "idm succeeds: %s %.1f", ep.m.label, (double)ep.m.distance);
    CHECK(ctrl.plan_calls == ep.m.steps - ec.n_cond, "controller called after warm-up only: %ld of %d", ctrl.plan_calls, ep.m.steps);

    /* Steering hard left leaves the road: off-road ends the episode. */
    ew_world_reset(w, 3);
    ew_controller left = {0};
    CHECK(ew_controller_builtin("none", &left, err, sizeof err) == 0, "%s", err);
    ew_episode_begin(&ep, &ec, w);
    for (int i = 0; i < 20; i++) ew_episode_step(&ep, w, &left); /* warm-up */
    CHECK(!ew_episode_in_warmup(&ep), "warm-up over after n_cond steps");
    float y0 = ew_world_ego(w)->y;
    while (ep.m.status == EW_EP_RUNNING) {
        ew_action u = {0.0f, 0.05f};
        ew_world_step(w, &u); /* steer outside the protocol, then let the episode check */
        ew_episode_step(&ep, w, &left);
    }
    CHECK(ep.m.status == EW_EP_OFFROAD && ew_world_ego(w)->y > y0, "off-road to the left: %s", ep.m.label);
    CHECK(ep.m.offroad && !ep.m.success, "flags");

    /* A stalled car right ahead and no braking: a collision. */
    ew_world_reset(w, 3);
    ew_episode_begin(&ep, &ec, w);
    const ew_kin_state *e = ew_world_ego(w);
    int lane = ew_road_lane_at(ew_world_road(w), e->x, e->y);
    ew_spawn sp = {EW_VT_CAR, lane, e->x + 60.0f, -1e30f, 0.0f, 0, 0, 0, 0};
    uint32_t id = ew_world_spawn(w, &sp, err, sizeof err);
    CHECK(id > 0, "%s", err);
    if (id) CHECK(ew_world_stall(w, id, 0.0f, err, sizeof err) == 0, "%s", err);
    ec.n_cond = 0;
    ew_episode_begin(&ep, &ec, w);
    while (ew_episode_step(&ep, w, &left)) {}
    CHECK(ep.m.status == EW_EP_COLLISION && ep.m.collision, "collision: %s", ep.m.label);
    CHECK(ep.m.min_ttc < 2.0f, "min TTC %.2f s before the crash", (double)ep.m.min_ttc);
    ew_controller_destroy(&ctrl);
    ew_world_destroy(w);
}

int main(void) {
    test_batch();
    test_episode();
    return check_done();
}
