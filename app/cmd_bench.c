/* cmd_bench.c - `egoworld bench sim|nn`: measured throughput of the hot paths.
 *
 * bench sim reports (medians over repeats, one core unless --threads > 1):
 *   vehicle_updates_per_s  background vehicles integrated per second (IDM + MOBIL), on a
 *                          world of about 100 vehicles with no ego and no rendering
 *   vehicle_updates_per_cpu_s  the same per second of the thread's CPU time
 *   env_steps_per_s        whole-world steps per second including the ego's 117x24x4 raster
 *   rasters_per_s          ego rasters per second on a fixed dense scene
 *   rasters_per_cpu_s      the same loop per second of this thread's CPU time
 *                          (CLOCK_THREAD_CPUTIME_ID: less sensitive to other load on the core)
 * With --threads N > 1, N independent worlds run in parallel and the aggregate is reported
 * next to the per-thread figure.
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app/cli.h"
#include "models/nnbench.h"
#include "sim/raster.h"
#include "sim/scenario_builtin.h"
#include "sim/world.h"

/* CPU time of the calling thread (s). */
static double thread_cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

typedef struct {
    int lanes;
    double length, flow, duration;
    uint64_t seed;
} traffic_opts;

/* A straight highway with inflow on every lane and no ego. */
static int traffic_config(const traffic_opts *o, ew_world_config *wc, char *err, int errlen) {
    ew_world_config_default(wc);
    if (ew_road_init_highway(&wc->road, o->lanes, 3.7f, (float)o->length, 30.0f, err, errlen) != 0) return -1;
    for (int l = 0; l < EW_MAX_LANES; l++) {
        wc->flow_per_h[l] = l < o->lanes ? (float)o->flow : 0.0f;
        wc->density_per_km[l] = l < o->lanes ? (float)(o->flow / (3.6 * 30.0)) : 0.0f; /* flow / speed */
    }
    wc->truck_share = 0.0f;
    wc->moto_share = 0.0f;
    wc->exit_share = 0.0f;
    wc->ego_enabled = 0;
    wc->max_vehicles = 4096;
    wc->seed = o->seed;
    return ew_world_config_validate(wc, err, errlen);
}

/* Vehicle updates per second of one world over `duration` simulated seconds. */
static int bench_traffic(const traffic_opts *o, double *ups, double *ups_cpu, double *mean_vehicles, char *err,
                         int errlen) {
    ew_world_config wc;
    if (traffic_config(o, &wc, err, errlen) != 0) return -1;
    ew_world *w = ew_world_create(&wc, err, errlen);
    if (!w) return -1;
    ew_world_reset(w, o->seed);
    /* Warm up for 60 s so the measurement sees steady-state traffic. */
    for (int i = 0; i < 600; i++) ew_world_step(w, NULL);
    ew_world_stats s0 = ew_world_get_stats(w);
    long steps = (long)(o->duration / wc.dt + 0.5);
    double c0 = thread_cpu_now(), t0 = cli_now();
    for (long i = 0; i < steps; i++) ew_world_step(w, NULL);
    double dt = cli_now() - t0, dc = thread_cpu_now() - c0;
    ew_world_stats s1 = ew_world_get_stats(w);
    *ups = (double)(s1.vehicle_updates - s0.vehicle_updates) / dt;
    *ups_cpu = dc > 0.0 ? (double)(s1.vehicle_updates - s0.vehicle_updates) / dc : 0.0;
    *mean_vehicles = (double)(s1.vehicle_updates - s0.vehicle_updates) / (double)steps;
    ew_world_destroy(w);
    return 0;
}

typedef struct {
    double vehicle_updates_per_s, mean_vehicles, vehicle_updates_per_cpu_s;
    double env_steps_per_s, env_vehicles;
    double rasters_per_s, rasters_f32_per_s, raster_vehicles_in_view, rasters_per_cpu_s;
} sim_figures;

static int bench_env(uint64_t seed, double seconds, double *steps_per_s, double *mean_vehicles,
                     char *err, int errlen) {
    ew_world_config wc;
    if (ew_scenario_builtin("dense-3lane", &wc, err, errlen) != 0) return -1;
    ew_world *w = ew_world_create(&wc, err, errlen);
    if (!w) return -1;
    ew_world_reset(w, seed);
    ew_raster_cfg rc;
    ew_raster_cfg_default(&rc);
    uint8_t *obs = malloc((size_t)EW_RASTER_CHANNELS * (size_t)rc.rows * (size_t)rc.cols);
    if (!obs) {
        ew_world_destroy(w);
        snprintf(err, (size_t)errlen, "out of memory");
        return -1;
    }
    long steps = 0;
    double vsum = 0.0, t0 = cli_now(), t = t0;
    while (t - t0 < seconds) {
        for (int k = 0; k < 100; k++) {
            ew_action u;
            ew_world_ego_idm_action(w, &u);
            ew_world_step(w, &u);
            const ew_vehicles *v = ew_world_vehicles(w);
            ew_boxes boxes = {v->x, v->y, v->hx, v->hy, v->len, v->wid, v->n};
            ew_raster_ego(&rc, ew_world_road(w), ew_world_ego(w), wc.ego_length, wc.ego_width, &boxes, obs);
            vsum += v->n;
            steps++;
            if (ew_world_ego(w)->x > wc.road.length - 100.0f) ew_world_reset(w, seed + (uint64_t)steps);
        }
        t = cli_now();
    }
    *steps_per_s = (double)steps / (t - t0);
    *mean_vehicles = vsum / (double)steps;
    free(obs);
    ew_world_destroy(w);
    return 0;
}

static int bench_raster(uint64_t seed, double seconds, double *per_s, double *per_s_f32, double *per_cpu_s,
                        double *in_view, char *err, int errlen) {
    ew_world_config wc;
    if (ew_scenario_builtin("dense-3lane", &wc, err, errlen) != 0) return -1;
    ew_world *w = ew_world_create(&wc, err, errlen);
    if (!w) return -1;
    ew_world_reset(w, seed);
    for (int i = 0; i < 300; i++) { /* 30 s of traffic so the scene is dense around the ego */
        ew_action u;
        ew_world_ego_idm_action(w, &u);
        ew_world_step(w, &u);
    }
    ew_raster_cfg rc;
    ew_raster_cfg_default(&rc);
    size_t px = (size_t)EW_RASTER_CHANNELS * (size_t)rc.rows * (size_t)rc.cols;
    uint8_t *obs = malloc(px);
    float *obsf = malloc(px * sizeof(float));
    if (!obs || !obsf) {
        free(obs);
        free(obsf);
        ew_world_destroy(w);
        snprintf(err, (size_t)errlen, "out of memory");
        return -1;
    }
    const ew_vehicles *v = ew_world_vehicles(w);
    ew_boxes boxes = {v->x, v->y, v->hx, v->hy, v->len, v->wid, v->n};
    const ew_kin_state *e = ew_world_ego(w);
    int view = 0;
    float half_h = 0.5f * (float)rc.rows * rc.m_per_px + 10.0f, half_w = 0.5f * (float)rc.cols * rc.m_per_px + 10.0f;
    for (int i = 0; i < v->n; i++)
        if (fabsf(v->x[i] - e->x) < half_h && fabsf(v->y[i] - e->y) < half_w) view++;
    *in_view = view;
    long n = 0;
    double c0 = thread_cpu_now(), t0 = cli_now(), t = t0;
    while (t - t0 < seconds) {
        for (int k = 0; k < 1000; k++) ew_raster_ego(&rc, ew_world_road(w), e, wc.ego_length, wc.ego_width, &boxes, obs);
        n += 1000;
        t = cli_now();
    }
    double c1 = thread_cpu_now();
    *per_s = (double)n / (t - t0);
    *per_cpu_s = c1 > c0 ? (double)n / (c1 - c0) : 0.0;
    n = 0;
    t0 = cli_now();
    t = t0;
    while (t - t0 < seconds) {
        for (int k = 0; k < 1000; k++) {
            ew_raster_ego(&rc, ew_world_road(w), e, wc.ego_length, wc.ego_width, &boxes, obs);
            ew_raster_to_f32(obs, (int)px, obsf);
        }
        n += 1000;
        t = cli_now();
    }
    *per_s_f32 = (double)n / (t - t0);
    free(obs);
    free(obsf);
    ew_world_destroy(w);
    return 0;
}

static void sim_help(void) {
    printf("usage: egoworld bench sim [--threads N] [--repeat R] [--json]\n"
           "                          [--traffic-only --lanes L --length M --flow F --duration S]\n\n"
           "  --threads N     run N worlds in parallel (default 1) and report the aggregate too\n"
           "  --repeat R      repetitions per figure; the median is reported (default 5)\n"
           "  --traffic-only  only vehicle_updates_per_s, on a straight highway of L lanes\n"
           "                  (default 3), M metres (2000), F vehicles/h/lane inflow (1700), for\n"
           "                  S simulated seconds (600): the set-up of bench/sumo_compare.sh\n"
           "  --seed S        random seed (default 1)\n"
           "  --json          one JSON object on stdout\n");
}

static int bench_sim(int argc, char **argv) {
    const char *cmd = "bench sim";
    long threads = 1, repeat = 5, lanes = 3;
    double length = 2000.0, flow = 1700.0, duration = 60.0;
    int json = 0, traffic_only = 0, duration_set = 0;
    uint64_t seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { sim_help(); return 0; }
        else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--traffic-only")) traffic_only = 1;
        else if (!strcmp(a, "--threads")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 1, 1024, &threads)) return 2; }
        else if (!strcmp(a, "--repeat")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 1, 1000, &repeat)) return 2; }
        else if (!strcmp(a, "--lanes")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 1, EW_MAX_MAIN_LANES, &lanes)) return 2; }
        else if (!strcmp(a, "--length")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_float(cmd, a, v, 100.0, 1e5, &length)) return 2; }
        else if (!strcmp(a, "--flow")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_float(cmd, a, v, 0.0, 4000.0, &flow)) return 2; }
        else if (!strcmp(a, "--duration")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_float(cmd, a, v, 1.0, 1e6, &duration)) return 2; duration_set = 1; }
        else if (!strcmp(a, "--seed")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_u64(cmd, a, v, &seed)) return 2; }
        else return cli_unknown(cmd, a);
    }
    if (traffic_only && !duration_set) duration = 600.0;
    int T = (int)threads, R = (int)repeat;
    char err[512] = "";
    int failed = 0;
    double *ups = calloc((size_t)R, sizeof(double)), *env = calloc((size_t)R, sizeof(double));
    double *ras = calloc((size_t)R, sizeof(double)), *rasf = calloc((size_t)R, sizeof(double));
    double *agg = calloc((size_t)R, sizeof(double)), *rasc = calloc((size_t)R, sizeof(double));
    double *upsc = calloc((size_t)R, sizeof(double));
    if (!ups || !env || !ras || !rasf || !agg || !rasc || !upsc) {
        fprintf(stderr, "egoworld bench sim: out of memory\n");
        free(ups); free(env); free(ras); free(rasf); free(agg); free(rasc); free(upsc);
        return 1;
    }
    sim_figures f = {0};
    traffic_opts to = {(int)lanes, length, flow, duration, seed};
    cli_progress pg;
    cli_progress_begin(&pg, "bench sim", R);
    for (int r = 0; r < R && !failed; r++) {
        /* Aggregate over T parallel worlds; the per-core figure is the 1-thread run. */
        double per[1024], cpu0 = 0.0;
        int bad = 0;
#pragma omp parallel for num_threads(T) reduction(| : bad)
        for (int t = 0; t < T; t++) {
            char e2[256];
            double m = 0.0, c = 0.0;
            traffic_opts o = to;
            o.seed = seed + (uint64_t)t;
            if (bench_traffic(&o, &per[t], &c, &m, e2, (int)sizeof e2) != 0) bad = 1;
            if (t == 0) {
                f.mean_vehicles = m;
                cpu0 = c;
            }
        }
        if (bad) { snprintf(err, sizeof err, "traffic benchmark failed to create its world"); failed = 1; break; }
        agg[r] = 0;
        for (int t = 0; t < T; t++) agg[r] += per[t];
        ups[r] = per[0];
        upsc[r] = cpu0;
        if (!traffic_only) {
            if (bench_env(seed, 0.5, &env[r], &f.env_vehicles, err, (int)sizeof err) != 0 ||
                bench_raster(seed, 0.5, &ras[r], &rasf[r], &rasc[r], &f.raster_vehicles_in_view, err, (int)sizeof err) != 0) {
                failed = 1;
                break;
            }
        }
        cli_progress_update(&pg, r + 1, NULL);
    }
    cli_progress_end(&pg);
    if (failed) {
        fprintf(stderr, "egoworld bench sim: %s\n", err);
        free(ups); free(env); free(ras); free(rasf); free(agg); free(rasc); free(upsc);
        return 1;
    }
    f.vehicle_updates_per_s = median(ups, R);
    f.vehicle_updates_per_cpu_s = median(upsc, R);
    double aggregate = median(agg, R);
    if (!traffic_only) {
        f.env_steps_per_s = median(env, R);
        f.rasters_per_s = median(ras, R);
        f.rasters_f32_per_s = median(rasf, R);
        f.rasters_per_cpu_s = median(rasc, R);
    }
    int cores = cli_cores();
    if (json) {
        printf("{\"cores\": %d, \"threads\": %d, \"repeat\": %d, \"vehicle_updates_per_s\": %.6g, "
               "\"vehicle_updates_per_s_all_threads\": %.6g, \"mean_vehicles\": %.4g",
               cores, T, R, f.vehicle_updates_per_s, aggregate, f.mean_vehicles);
        if (!traffic_only)
            printf(", \"env_steps_per_s\": %.6g, \"env_mean_vehicles\": %.4g, \"rasters_per_s\": %.6g, "
                   "\"rasters_f32_per_s\": %.6g, \"raster_vehicles_in_view\": %.0f, \"raster_shape\": [4, 117, 24], "
                   "\"rasters_per_cpu_s\": %.6g",
                   f.env_steps_per_s, f.env_vehicles, f.rasters_per_s, f.rasters_f32_per_s, f.raster_vehicles_in_view,
                   f.rasters_per_cpu_s);
        printf(", \"vehicle_updates_per_cpu_s\": %.6g}\n", f.vehicle_updates_per_cpu_s);
    } else {
        printf("machine: %d cores; %d thread(s); medians of %d runs\n", cores, T, R);
        printf("vehicle updates/s (IDM+MOBIL, 1 core)  %14.4g   (%.0f vehicles)\n", f.vehicle_updates_per_s, f.mean_vehicles);
        printf("vehicle updates per CPU second        %14.4g   (thread CPU time)\n", f.vehicle_updates_per_cpu_s);
        if (T > 1) printf("vehicle updates/s (%d threads)          %14.4g\n", T, aggregate);
        if (!traffic_only) {
            printf("env steps/s (world + ego raster)      %14.4g   (%.0f vehicles)\n", f.env_steps_per_s, f.env_vehicles);
            printf("rasters/s (117x24x4 uint8)            %14.4g   (%.0f vehicles in view)\n", f.rasters_per_s, f.raster_vehicles_in_view);
            printf("rasters/s (117x24x4 float)            %14.4g\n", f.rasters_f32_per_s);
            printf("rasters per CPU second (uint8)        %14.4g   (thread CPU time)\n", f.rasters_per_cpu_s);
        }
    }
    free(ups); free(env); free(ras); free(rasf); free(agg); free(rasc); free(upsc);
    return 0;
}

static int bench_nn(int argc, char **argv) {
    const char *cmd = "bench nn";
    long threads = 1, steps = -1, batch = -1;
    int json = 0, cuda = 0, tf32 = 0, graph = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("usage: egoworld bench nn [--threads N] [--steps K] [--batch B] [--json]\n"
                   "                        [--device cpu|cuda] [--tf32] [--graph]\n\n"
                   "Times training steps (forward, backward, Adam) of the deterministic world model at\n"
                   "the anchor's full widths (20 frames of 3x117x24 and 5-d states in, batch 64) and\n"
                   "reports fm_train_samples_per_s = batch / median step time and per-layer times.\n"
                   "--device cuda: on the CUDA backend (--tf32: TF32 tensor cores; --graph, experimental:\n"
                   "replays of one captured step, without dropout; see models/nnbench.h).\n");
            return 0;
        }
        else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--tf32")) tf32 = 1;
        else if (!strcmp(a, "--graph")) graph = 1;
        else if (!strcmp(a, "--device")) { if (cli_device(cmd, argc, argv, &i, &cuda)) return 2; }
        else if (!strcmp(a, "--threads")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 1, 1024, &threads)) return 2; }
        else if (!strcmp(a, "--steps")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 1, 100000, &steps)) return 2; }
        else if (!strcmp(a, "--batch")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 1, 4096, &batch)) return 2; }
        else return cli_unknown(cmd, a);
    }
    if (cli_device_check(cmd, cuda)) return 1;
    if ((tf32 || graph) && !cuda) {
        fprintf(stderr, "egoworld %s: --tf32 and --graph need --device cuda\n", cmd);
        return 2;
    }
    ew_bench_nn_config c = ew_bench_nn_defaults((int)threads);
    c.json = json;
    c.device = cuda;
    c.tf32 = tf32;
    c.graph = graph;
    if (steps > 0) c.steps = (int)steps;
    if (batch > 0) c.batch = (int)batch;
    return ew_bench_nn_run(&c, stdout) == 0 ? 0 : 1;
}

int ew_bench_data(int argc, char **argv); /* app/bench_data.c */
int ew_bench_plan(int argc, char **argv); /* app/bench_plan.c */

static void help(void) {
    printf("usage: egoworld bench sim [options]   simulator throughput (see bench sim --help)\n"
           "       egoworld bench nn [--threads N] [--json]   world-model training step throughput\n"
           "       egoworld bench data --data DIR [--json]   training-batch rendering from a dataset\n"
           "       egoworld bench plan [--controller mpc-km|mpc-fm|cem] [--json]   planning time per step\n");
}

int cmd_bench(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        help();
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "sim")) return bench_sim(argc - 1, argv + 1);
    if (!strcmp(argv[1], "nn")) return bench_nn(argc - 1, argv + 1);
    if (!strcmp(argv[1], "data")) return ew_bench_data(argc - 1, argv + 1);
    if (!strcmp(argv[1], "plan")) return ew_bench_plan(argc - 1, argv + 1);
    fprintf(stderr, "egoworld bench: unknown benchmark '%s' (sim, nn, data, plan)\n", argv[1]);
    return 2;
}
