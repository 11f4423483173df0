/* cmd_run.c - `egoworld run`: one episode of a scenario with a controller.
 * Viewer when a display exists (and the viewer is built), headless otherwise. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app/cli.h"
#include "app/run_lua.h"
#include "app/record.h"
#include "app/run_viewer.h"
#include "planner/controllers.h"
#include "sim/fsutil.h"
#include "sim/controller.h"
#include "sim/episode.h"
#include "sim/scenario_builtin.h"
#include "sim/world.h"

static void help(void) {
    printf("usage: egoworld run [options]\n\n"
           "Runs one episode: the ego is driven by IDM for the n_cond warm-up steps, then by the\n"
           "controller, until it reaches the goal, collides, leaves the road or runs out of steps.\n\n"
           "  --scenario NAME     built-in scenario (default dense-3lane) or a Lua scenario FILE.lua;\n"
           "                      built-in:");
    int n;
    const char *const *names = ew_scenario_builtin_names(&n);
    for (int i = 0; i < n; i++) printf(" %s", names[i]);
    printf("\n"
           "  --controller C      none | idm | mpc-km | mpc-fm | cem | policy:FILE (default: mpc-km when\n"
           "                      the world model loads, else idm with a note on stderr)\n"
           "  --world FILE        world model for mpc-km, mpc-fm, cem (default " EW_DEFAULT_WORLD_MODEL ",\n"
           "                      in the current directory, else under the binary's parent directory)\n"
           CLI_DEVICE_HELP
           "  --steps N           step limit, warm-up included (default 600)\n"
           "  --seed S            random seed (default 1)\n"
           "  --goal M            goal distance in metres (default 215)\n"
           "  --n-cond N          warm-up steps driven by IDM (default 20)\n"
           "  --headless          never open a window\n"
           "  --record DIR        write the ego raster (ego_NNNNN.png) and a world-aligned top view\n"
           "                      (top_NNNNN.png) for every step into DIR\n"
           "  --headless-frames DIR  when no window opens: draw the viewer's frames (software renderer:\n"
           "                      road from above, plan, imagined futures, cost mask, HUD) into\n"
           "                      DIR/frame_NNNNNN.png (what `make run` does, into build/run_frames)\n"
           "  --frame-every N     with --headless-frames: one frame every N steps (default 5)\n"
           "  --json              print the episode metrics as one JSON object on stdout\n"
           "  --quiet             no progress display\n"
           "  --allow-read DIR    folder a Lua scenario may read (data, NGSIM logs)\n");
    ew_run_viewer_help(stdout); /* viewer options and keys (app/run_viewer.c) */
}

/* The shipped world model: relative to the current directory, else to the binary's parent
 * directory (build/egoworld -> assets/...). Writes the path to use into out. */
static void default_world_model(char *out, size_t cap) {
    snprintf(out, cap, "%s", EW_DEFAULT_WORLD_MODEL);
    struct stat sb;
    if (stat(out, &sb) == 0) return;
    char exe[1024];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return;
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (!slash) return;
    *slash = 0;
    char alt[1200];
    snprintf(alt, sizeof alt, "%s/../%s", exe, EW_DEFAULT_WORLD_MODEL);
    if (stat(alt, &sb) == 0) snprintf(out, cap, "%s", alt);
}

/* The default controller: mpc-km on the world model when it exists and loads, else idm with a
 * one-line note on stderr. 0, or -1 (idm failed: cannot happen short of memory). */
static int default_controller(const char *world_model, const ew_controller_opts *copts, ew_controller *ctrl,
                              char *err, int errlen) {
    struct stat sb;
    char e2[512];
    if (stat(world_model, &sb) != 0) {
        fprintf(stderr, "egoworld run: no world model at %s: the ego is driven by idm (--controller, --world)\n",
                world_model);
    } else if (ew_controller_create("mpc-km", copts, ctrl, e2, (int)sizeof e2) != 0) {
        fprintf(stderr, "egoworld run: %s: the ego is driven by idm\n", e2);
    } else {
        return 0;
    }
    return ew_controller_create("idm", copts, ctrl, err, errlen);
}

int cmd_run(int argc, char **argv) {
    const char *cmd = "run";
    const char *scenario = "dense-3lane", *controller = NULL, *record = NULL, *allow_read = NULL, *world_model = NULL;
    const char *frames_dir = NULL;
    long steps = 600, n_cond = 20, frame_every = 5;
    uint64_t seed = 1;
    double goal = 215.0;
    int json = 0, headless = 0, quiet = 0, cuda = 0;
    long bench_frames = 0, bench_vehicles = 0; /* viewer benchmark (app/run_viewer.h) */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { help(); return 0; }
        else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--headless")) headless = 1;
        else if (!strcmp(a, "--quiet")) quiet = 1;
        else if (!strcmp(a, "--scenario")) { if (!(scenario = cli_value(cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--controller")) { if (!(controller = cli_value(cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--world")) { if (!(world_model = cli_value(cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--device")) { if (cli_device(cmd, argc, argv, &i, &cuda)) return 2; }
        else if (!strcmp(a, "--allow-read")) { if (!(allow_read = cli_value(cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--record")) { if (!(record = cli_value(cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--headless-frames")) { if (!(frames_dir = cli_value(cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--frame-every")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 1, 100000, &frame_every)) return 2; }
        else if (!strcmp(a, "--steps")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 1, 100000000, &steps)) return 2; }
        else if (!strcmp(a, "--n-cond")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 0, 100000, &n_cond)) return 2; }
        else if (!strcmp(a, "--seed")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_u64(cmd, a, v, &seed)) return 2; }
        else if (!strcmp(a, "--bench-frames")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 1, 100000000, &bench_frames)) return 2; }
        else if (!strcmp(a, "--bench-vehicles")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 1, 100000, &bench_vehicles)) return 2; }
        else if (!strcmp(a, "--goal")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_float(cmd, a, v, 1.0, 1e6, &goal)) return 2; }
        else return cli_unknown(cmd, a);
    }
    if (cli_device_check(cmd, cuda)) return 1;
    /* viewer: 1 window, 2 headless software rendering to a video file, 0 the loop below */
    int viewer_mode = ew_run_viewer_mode(headless, record, frames_dir);
    if (frames_dir && viewer_mode == 0 && !quiet)
        fprintf(stderr, "egoworld run: --headless-frames: the viewer is not built (SDL2 missing): no frames\n");
    if (viewer_mode == 2 && frames_dir && record) {
        fprintf(stderr, "egoworld run: --headless-frames and --record: choose one when no window opens\n");
        return 2;
    }

    char err[512];
    ew_world_config wc;
    ew_episode_cfg ec;
    ew_episode_cfg_default(&ec);
    ec.n_cond = (int)n_cond;
    ec.max_steps = (int)steps;
    ec.goal_distance = (float)goal;
    ew_scenario *lsc = NULL; /* a Lua scenario file: its config, episode settings and events */
    if (ew_run_is_lua(scenario)) {
        lsc = ew_run_lua_load(scenario, allow_read, argc, argv, &wc, &ec, &controller, &seed, &steps);
        if (!lsc) return 1;
        goal = ec.goal_distance;
    } else if (ew_scenario_builtin(scenario, &wc, err, (int)sizeof err) != 0) {
        fprintf(stderr, "egoworld run: %s\n", err);
        return 1;
    }
    wc.seed = seed;
    if (bench_vehicles > 0 && ew_run_viewer_set_vehicles(&wc, bench_vehicles, err, (int)sizeof err) != 0) {
        fprintf(stderr, "egoworld run: %s\n", err);
        ew_scenario_destroy(lsc);
        return 2;
    }
    ew_controller ctrl;
    ew_controller_opts copts;
    ew_controller_opts_default(&copts);
    char wm_path[1200];
    if (!world_model) {
        default_world_model(wm_path, sizeof wm_path);
        world_model = wm_path;
    }
    copts.world_model = world_model;
    copts.seed = seed;
    copts.cuda = cuda;
    if (!controller) {
        if (default_controller(world_model, &copts, &ctrl, err, (int)sizeof err) != 0) {
            fprintf(stderr, "egoworld run: %s\n", err);
            ew_scenario_destroy(lsc);
            return 1;
        }
    } else if (ew_controller_create(controller, &copts, &ctrl, err, (int)sizeof err) != 0) {
        fprintf(stderr, "egoworld run: --controller: %s\n", err);
        ew_scenario_destroy(lsc);
        return strncmp(err, "unknown controller", 18) ? 1 : 2; /* a bad checkpoint is no usage error */
    }
    ew_world *w = ew_world_create(&wc, err, (int)sizeof err);
    if (!w) {
        fprintf(stderr, "egoworld run: scenario %s: %s\n", scenario, err);
        ew_controller_destroy(&ctrl);
        ew_scenario_destroy(lsc);
        return 1;
    }
    ew_world_reset(w, seed);
    if (lsc && ew_scenario_begin(lsc, w, err, (int)sizeof err) != 0) {
        ew_run_lua_report(lsc);
        ew_world_destroy(w);
        ew_controller_destroy(&ctrl);
        ew_scenario_destroy(lsc);
        return 1;
    }
    if (ctrl.reset) ctrl.reset(ctrl.ctx, w);

    ew_recorder *rec = NULL;
    if (record && !viewer_mode) {
        if (ew_mkdir_p(record) != 0) {
            fprintf(stderr, "egoworld run: --record: cannot create directory '%s': %s\n", record, strerror(errno));
            ew_world_destroy(w);
            ew_controller_destroy(&ctrl);
            ew_scenario_destroy(lsc);
            return 1;
        }
        rec = ew_recorder_create(record, err, (int)sizeof err);
        if (!rec) {
            fprintf(stderr, "egoworld run: --record: %s\n", err);
            ew_world_destroy(w);
            ew_controller_destroy(&ctrl);
            ew_scenario_destroy(lsc);
            return 1;
        }
    }

    ew_episode ep;
    ew_episode_begin(&ep, &ec, w);
    cli_progress pg;
    cli_progress_begin(&pg, "run", steps);
    int rc = 0;
    double t0 = cli_now();
    long frames_written = 0;
    if (viewer_mode || bench_frames > 0) {
        ew_run_viewer_args va = {scenario, seed, record, bench_frames, json, quiet, frames_dir, (int)frame_every,
                                 &frames_written};
        rc = ew_run_viewer(&va, viewer_mode, w, &ep, &ctrl);
    }
    if (rec && ew_recorder_frame(rec, w, 0, err, (int)sizeof err) != 0) rc = 1;
    while (rc == 0 && !viewer_mode && bench_frames == 0 && ew_episode_step(&ep, w, &ctrl)) {
        if (rec && ew_recorder_frame(rec, w, ep.m.steps, err, (int)sizeof err) != 0) rc = 1;
        if (!quiet) {
            char extra[96];
            snprintf(extra, sizeof extra, "x=%.0f m  v=%.1f m/s", (double)ew_world_ego(w)->x, (double)ew_world_ego(w)->s);
            cli_progress_update(&pg, ep.m.steps, extra);
        }
    }
    if (rc == 0 && rec && ep.m.status != EW_EP_RUNNING &&
        ew_recorder_frame(rec, w, ep.m.steps, err, (int)sizeof err) != 0)
        rc = 1;
    double wall = cli_now() - t0;
    if (!quiet) cli_progress_end(&pg);
    if (rc && rec) fprintf(stderr, "egoworld run: --record: %s\n", err);

    const ew_episode_metrics *m = &ep.m;
    ew_world_stats st = ew_world_get_stats(w);
    if (json) {
        printf("{\"scenario\": \"%s\", \"controller\": \"%s\", \"seed\": %llu, \"metrics\": ", scenario,
               ctrl.name, (unsigned long long)seed);
        ew_episode_metrics_json(m, stdout);
        if (lsc) {
            fputs(", \"script_metrics\": ", stdout);
            ew_scenario_metrics_json(lsc, stdout);
        }
        printf(", \"plan_ms_per_step\": %.6g, \"wall_s\": %.6g, \"bg_collisions\": %lld, \"vehicles\": %d}\n",
               ctrl.plan_calls ? ctrl.plan_ms_total / (double)ctrl.plan_calls : 0.0, wall,
               (long long)st.bg_collisions, ew_world_vehicles(w)->n);
    } else {
        printf("scenario      %s (seed %llu)\n", scenario, (unsigned long long)seed);
        int is_mpc = !strcmp(ctrl.name, "mpc-km") || !strcmp(ctrl.name, "mpc-fm") || !strcmp(ctrl.name, "cem");
        if (is_mpc) printf("controller    %s (world model %s)\n", ctrl.name, world_model);
        else printf("controller    %s\n", ctrl.name);
        printf("result        %s\n", m->label);
        printf("distance      %.1f m of %.0f m\n", (double)m->distance, goal);
        printf("time          %.1f s (%d steps)\n", (double)m->time, m->steps);
        printf("mean speed    %.2f m/s\n", (double)m->mean_speed);
        printf("min TTC       %.2f s\n", (double)m->min_ttc);
        printf("mean |jerk|   %.3f m/s^3\n", (double)m->mean_abs_jerk);
        printf("vehicles      %d now, %lld spawned, %lld lane changes, %lld background collisions\n",
               ew_world_vehicles(w)->n, (long long)st.spawned, (long long)st.lane_changes,
               (long long)st.bg_collisions);
        if (ctrl.plan_calls > 0 && (is_mpc || !strncmp(ctrl.name, "policy", 6)))
            printf("plan time     %.1f ms/step (mean of %ld steps)\n", ctrl.plan_ms_total / (double)ctrl.plan_calls,
                   ctrl.plan_calls);
        if (viewer_mode == 2 && frames_dir)
            printf("frames        %s/frame_NNNNNN.png (%ld frames, one per %ld steps: plan, imagined futures, "
                   "cost mask, HUD)\n", frames_dir, frames_written, frame_every);
        else if (record)
            printf("frames        %s%s\n", record, viewer_mode ? "" : "/");
        printf("wall time     %.3f s\n", wall);
    }
    if (m->status == EW_EP_ERROR) {
        if (lsc && ew_scenario_error(lsc)) ew_run_lua_report(lsc);
        else fprintf(stderr, "egoworld run: %s\n", m->error);
        rc = 1;
    }
    ew_scenario_destroy(lsc);
    ew_recorder_destroy(rec);
    ew_world_destroy(w);
    ew_controller_destroy(&ctrl);
    return rc;
}
