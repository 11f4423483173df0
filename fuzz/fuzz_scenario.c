/* fuzz_scenario.c - Lua scenario loading (lua/scenario.h) on arbitrary script text, with small
 * budgets (1 M instructions to load, 100 k per callback, 8 MiB of Lua memory), no folder
 * granted for reads. A scenario that loads is then run for at most 40 steps of a world built
 * from its configuration, so its events and their world calls run too, with a 32 x 16 raster of
 * the world every 10 steps. Whatever the script:
 * no crash, no leak, no hang; a failure comes back as a message. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua/scenario.h"
#include "sim/controller.h"
#include "sim/raster.h"

#define MAX_STEPS 40

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ew_lua_opts o;
    ew_lua_opts_default(&o);
    o.budget_load = 1000000;
    o.budget_callback = 100000;
    o.mem_cap = (size_t)8 << 20;
    char err[1024];
    ew_scenario *s = ew_scenario_load_buffer((const char *)data, size, "fuzz.lua", &o, err, sizeof err);
    int verbose = getenv("EW_FUZZ_VERBOSE") != NULL;
    if (!s) {
        if (!err[0]) abort();
        if (verbose) fprintf(stderr, "refused: %.200s\n", err);
        return 0;
    }
    ew_world_config wc = *ew_scenario_world_config(s);
    /* keep each input cheap: a short road with few vehicles */
    ew_world *w = NULL;
    if (wc.max_vehicles > 400) wc.max_vehicles = 400;
    if (wc.road.length <= 20000.0f) w = ew_world_create(&wc, err, sizeof err);
    if (w) {
        ew_world_reset(w, ew_scenario_seed(s));
        if (ew_scenario_begin(s, w, err, sizeof err) == 0) {
            ew_controller ctrl;
            if (ew_controller_builtin("idm", &ctrl, err, sizeof err) == 0) {
                if (ctrl.reset) ctrl.reset(ctrl.ctx, w);
                ew_episode_cfg ec;
                ew_scenario_episode_cfg(s, &ec);
                if (ec.max_steps > MAX_STEPS) ec.max_steps = MAX_STEPS;
                ew_episode ep;
                ew_episode_begin(&ep, &ec, w);
                ew_raster_cfg rc = {32, 16, 1.0f};
                uint8_t img[4 * 32 * 16];
                int k = 0;
                while (ew_episode_step(&ep, w, &ctrl)) {
                    /* render now and then: scripted roads (closures, markings) reach the rasterizer */
                    if (k++ % 10 == 0 && ew_raster_world(&rc, w, img, err, sizeof err) != 0) abort();
                }
                if (verbose)
                    fprintf(stderr, "ran %d steps, status %d, %d events: %.200s\n", ep.m.steps, (int)ep.m.status,
                            (int)ew_scenario_events_fired(s), ep.m.status == EW_EP_ERROR ? ep.m.error : "");
                ew_controller_destroy(&ctrl);
            }
        }
        ew_world_destroy(w);
    }
    FILE *null = fopen("/dev/null", "w");
    if (null) {
        ew_scenario_metrics_json(s, null);
        fclose(null);
    }
    ew_scenario_destroy(s);
    return 0;
}
