/* cmd_export_ngsim.c - `egoworld export-ngsim`: simulate a scenario and write the run in the
 * original NGSIM text format (sim/ngsim.h), loadable by the NGSIM loader and replay. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/cli.h"
#include "lua/scenario.h"
#include "sim/controller.h"
#include "sim/episode.h"
#include "sim/ngsim.h"
#include "sim/scenario_builtin.h"
#include "sim/world.h"

static void help(void) {
    printf("usage: egoworld export-ngsim --scenario S --steps N --out FILE [options]\n\n"
           "Simulates a scenario (built-in name or FILE.lua, events included) with the ego driven\n"
           "by IDM and writes every vehicle (and the ego, as the largest Vehicle_ID) at every\n"
           "step, frames numbered from 1, in the 18-column NGSIM text format (feet, Local_Y =\n"
           "front bumper, Local_X from the left edge of the main lanes, Lane_ID 1 = leftmost).\n"
           "Load it back with lanes = the road's main lanes and lane_width_ft = its lane width\n"
           "(printed below) and no smoothing to reproduce the positions.\n\n"
           "  --scenario S        built-in scenario or scenario file (default dense-3lane)\n"
           "  --steps N           steps to simulate (default 300); N + 1 frames are written\n"
           "  --out FILE          output file (required)\n"
           "  --seed S            random seed (default: the scenario's)\n"
           "  --no-ego            do not write the ego\n"
           "  --allow-read DIR    folder a scenario file may read\n"
           "  --json              print a JSON summary\n");
}

int cmd_export_ngsim(int argc, char **argv) {
    const char *cmd = "export-ngsim";
    const char *scenario = "dense-3lane", *out_path = NULL, *read_dir = NULL;
    long steps = 300;
    uint64_t seed = 0;
    int has_seed = 0, json = 0, ego = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { help(); return 0; }
        else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--no-ego")) ego = 0;
        else if (!strcmp(a, "--scenario")) { if (!(scenario = cli_value(cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--out")) { if (!(out_path = cli_value(cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--allow-read")) { if (!(read_dir = cli_value(cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--steps")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 1, 10000000, &steps)) return 2; }
        else if (!strcmp(a, "--seed")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_u64(cmd, a, v, &seed)) return 2; has_seed = 1; }
        else return cli_unknown(cmd, a);
    }
    if (!out_path) {
        fprintf(stderr, "egoworld export-ngsim: --out FILE is required\n");
        return 2;
    }
    char err[4096];
    ew_world_config wc;
    ew_scenario *sc = NULL;
    size_t sl = strlen(scenario);
    if (sl > 4 && !strcmp(scenario + sl - 4, ".lua")) {
        ew_lua_opts lo;
        ew_lua_opts_default(&lo);
        lo.read_dir = read_dir;
        lo.has_seed = has_seed;
        lo.seed = seed;
        sc = ew_scenario_load(scenario, &lo, err, (int)sizeof err);
        if (!sc) {
            size_t n = strcspn(err, "\n");
            fprintf(stderr, "egoworld export-ngsim: %.*s\n", (int)n, err);
            return 1;
        }
        wc = *ew_scenario_world_config(sc);
    } else if (ew_scenario_builtin(scenario, &wc, err, (int)sizeof err) != 0) {
        fprintf(stderr, "egoworld export-ngsim: %s\n", err);
        return 1;
    }
    if (has_seed) wc.seed = seed;
    int rc = 1;
    ew_world *w = ew_world_create(&wc, err, (int)sizeof err);
    ew_ngsim_rec *rec = NULL;
    FILE *out = NULL;
    if (!w) goto done;
    ew_world_reset(w, wc.seed);
    if (sc && ew_scenario_begin(sc, w, err, (int)sizeof err) != 0) goto done;
    rec = ew_ngsim_rec_create(ew_world_road(w), ego && wc.ego_enabled, err, (int)sizeof err);
    if (!rec) goto done;
    ew_controller ctrl;
    ew_controller_builtin("idm", &ctrl, err, (int)sizeof err);
    ew_episode_cfg ec;
    if (sc) ew_scenario_episode_cfg(sc, &ec);
    else ew_episode_cfg_default(&ec);
    ec.max_steps = (int)steps;
    ec.goal_distance = 1e9f; /* run all the steps unless the ego crashes or a script ends it */
    ew_episode ep;
    ew_episode_begin(&ep, &ec, w);
    if (ew_ngsim_rec_frame(rec, w, err, (int)sizeof err) != 0) goto done;
    while (ew_episode_step(&ep, w, &ctrl))
        if (ew_ngsim_rec_frame(rec, w, err, (int)sizeof err) != 0) goto done;
    if (ep.m.status != EW_EP_RUNNING && ep.m.steps > 0 && ew_ngsim_rec_frames(rec) < ep.m.steps + 1 &&
        ew_ngsim_rec_frame(rec, w, err, (int)sizeof err) != 0)
        goto done;
    if (ep.m.status == EW_EP_ERROR) {
        snprintf(err, sizeof err, "%s", sc && ew_scenario_error(sc) ? ew_scenario_error(sc) : ep.m.error);
        goto done;
    }
    out = fopen(out_path, "w");
    if (!out) {
        snprintf(err, sizeof err, "cannot write '%s'", out_path);
        goto done;
    }
    if (ew_ngsim_rec_write(rec, out, err, (int)sizeof err) != 0) goto done;
    if (fclose(out) != 0) {
        out = NULL;
        snprintf(err, sizeof err, "cannot write '%s'", out_path);
        goto done;
    }
    out = NULL;
    rc = 0;
    {
        const ew_road *road = ew_world_road(w);
        double lw_ft = road->lanes[0].width / EW_FT;
        if (json)
            printf("{\"out\": \"%s\", \"frames\": %d, \"rows\": %lld, \"ego_vehicle_id\": %u, \"lanes\": %d, "
                   "\"lane_width_ft\": %.6f, \"episode\": \"%s\"}\n",
                   out_path, ew_ngsim_rec_frames(rec), (long long)ew_ngsim_rec_rows(rec),
                   (unsigned)ew_ngsim_rec_ego_vid(rec), road->n_main, lw_ft, ep.m.label);
        else
            printf("wrote %s: %d frames, %lld rows, ego Vehicle_ID %u, %d main lanes of %.4f ft (%s)\n", out_path,
                   ew_ngsim_rec_frames(rec), (long long)ew_ngsim_rec_rows(rec), (unsigned)ew_ngsim_rec_ego_vid(rec),
                   road->n_main, lw_ft, ep.m.label);
    }
done:
    if (out) fclose(out);
    if (rc) {
        size_t n = strcspn(err, "\n");
        fprintf(stderr, "egoworld export-ngsim: %.*s\n", (int)n, err);
    }
    ew_ngsim_rec_destroy(rec);
    ew_world_destroy(w);
    ew_scenario_destroy(sc);
    return rc;
}
