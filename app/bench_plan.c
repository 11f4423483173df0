/* bench_plan.c - `egoworld bench plan`: planning time per control step of the MPC controllers
 * (planner/mpc.h) in an episode of a built-in scenario: plan_ms_per_step = plan_ms_total /
 * plan_calls of the controller (wall time of act()), its thread CPU time, and the split into
 * world-model unroll and optimisation. Without --world (and without the shipped model) a
 * randomly initialised stochastic FM-KM model of the given size is used (timing only). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "app/cli.h"
#include "models/fm.h"
#include "planner/controllers.h"
#include "planner/mpc.h"
#include "sim/episode.h"
#include "sim/scenario_builtin.h"

int ew_bench_plan(int argc, char **argv);

static double cpu_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

/* A controller that forwards to another and sums the thread CPU time of act(). */
typedef struct { ew_controller *inner; double cpu_ms; } cpu_wrap;
static int wrap_act(void *ctx, const ew_world *w, ew_action *out, char *err, int errlen) {
    cpu_wrap *c = ctx;
    double t0 = cpu_ms();
    int rc = c->inner->act(c->inner->ctx, w, out, err, errlen);
    c->cpu_ms += cpu_ms() - t0;
    return rc;
}
static void wrap_observe(void *ctx, const ew_world *w) {
    cpu_wrap *c = ctx;
    c->inner->observe(c->inner->ctx, w);
}

static int file_exists(const char *p) { return p && access(p, R_OK) == 0; }

int ew_bench_plan(int argc, char **argv) {
    const char *cmd = "bench plan", *kind = "mpc-km", *world = NULL, *scen = EW_SCENARIO_DEFAULT;
    long nf = 16, hidden = 128, n_cond = 10, steps = 30, horizon = 30, iters = 10, samples = -1, refresh = -1;
    long threads = 1;
    uint64_t seed = 1;
    int json = 0, cuda = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("usage: egoworld bench plan [--controller mpc-km|mpc-fm|cem] [--world FILE] [--scenario NAME]\n"
                   "                          [--steps N] [--horizon H] [--iters I] [--samples K] [--refresh R]\n"
                   "                          [--threads T] [--seed S] [--nf N] [--hidden H] [--n-cond N] [--json]\n"
                   "                          [--device cpu|cuda]\n\n"
                   "Planning time per control step of an MPC controller over N control steps of an\n"
                   "episode (after the warm-up): wall and thread-CPU ms per act(), split into world-model\n"
                   "unroll and optimisation. --world defaults to %s when it exists, else (or\n"
                   "with --world random) a random stochastic FM-KM model of --nf (16), --hidden (128),\n"
                   "--n-cond (10) is used (timing only: its plans mean nothing).\n"
                   "--refresh: full unroll every R steps (default: the planner's, see planner/mpc.h).\n",
                   EW_DEFAULT_WORLD_MODEL);
            return 0;
        }
        if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--controller")) { if (!(kind = cli_value(cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--world")) { if (!(world = cli_value(cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--scenario")) { if (!(scen = cli_value(cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--steps")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 1, 100000, &steps)) return 2; }
        else if (!strcmp(a, "--horizon")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 1, EW_COST_MAX_T, &horizon)) return 2; }
        else if (!strcmp(a, "--iters")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 0, 10000, &iters)) return 2; }
        else if (!strcmp(a, "--samples")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 1, 64, &samples)) return 2; }
        else if (!strcmp(a, "--refresh")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 1, 100000, &refresh)) return 2; }
        else if (!strcmp(a, "--threads")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 1, 1024, &threads)) return 2; }
        else if (!strcmp(a, "--device")) { if (cli_device(cmd, argc, argv, &i, &cuda)) return 2; }
        else if (!strcmp(a, "--seed")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_u64(cmd, a, v, &seed)) return 2; }
        else if (!strcmp(a, "--nf")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 1, 256, &nf)) return 2; }
        else if (!strcmp(a, "--hidden")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 1, 4096, &hidden)) return 2; }
        else if (!strcmp(a, "--n-cond")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 1, 64, &n_cond)) return 2; }
        else return cli_unknown(cmd, a);
    }
    if (cli_device_check(cmd, cuda)) return 1;
    char err[512], tmp[256] = "";
    if (!world && file_exists(EW_DEFAULT_WORLD_MODEL)) world = EW_DEFAULT_WORLD_MODEL;
    if (world && !strcmp(world, "random")) world = NULL;
    int random_model = !world;
    if (random_model) {
        ew_fm_config fc = ew_fm_config_default();
        fc.variant = EW_FM_KM;
        fc.stochastic = 1;
        fc.nf = (int)nf;
        fc.hidden = (int)hidden;
        fc.n_cond = (int)n_cond;
        ew_fm m;
        snprintf(tmp, sizeof tmp, "/tmp/egoworld_bench_plan_%d.safetensors", (int)getpid());
        if (ew_fm_init(&m, &fc, NULL, err, sizeof err) || ew_fm_save(&m, tmp, NULL, 0, NULL, 0, err, sizeof err)) {
            fprintf(stderr, "egoworld bench plan: random model: %s\n", err);
            return 1;
        }
        ew_fm_free(&m);
        world = tmp;
    }
    ew_mpc_config mc;
    ew_mpc_config_default(&mc);
    mc.world_model = world;
    mc.horizon = (int)horizon;
    mc.iters = (int)iters;
    if (samples > 0) mc.samples = (int)samples;
    mc.threads = (int)threads;
    mc.cuda = cuda;
    mc.seed = seed;
    if (refresh > 0) mc.refresh = (int)refresh;
    ew_controller c;
    int rc = ew_mpc_controller_create(kind, &mc, &c, err, (int)sizeof err);
    if (tmp[0]) remove(tmp);
    if (rc) {
        fprintf(stderr, "egoworld bench plan: %s\n", err);
        return 1;
    }
    ew_fm probe;
    ew_fm_config used = {0};
    if (!random_model && ew_fm_load(&probe, world, err, sizeof err) == 0) {
        used = probe.cfg;
        ew_fm_free(&probe);
    } else {
        used.nf = (int)nf;
        used.hidden = (int)hidden;
        used.n_cond = (int)n_cond;
        used.stochastic = 1;
        used.variant = EW_FM_KM;
    }
    ew_world_config wc;
    if (ew_scenario_builtin(scen, &wc, err, (int)sizeof err)) {
        fprintf(stderr, "egoworld bench plan: %s\n", err);
        ew_controller_destroy(&c);
        return 2;
    }
    ew_world *w = ew_world_create(&wc, err, (int)sizeof err);
    if (!w) {
        fprintf(stderr, "egoworld bench plan: %s\n", err);
        ew_controller_destroy(&c);
        return 1;
    }
    cpu_wrap cw = {&c, 0.0};
    ew_controller outer = {c.name, &cw, wrap_act, NULL, wrap_observe, NULL, 0.0, 0};
    ew_world_reset(w, seed);
    c.reset(c.ctx, w);
    ew_episode ep;
    ew_episode_cfg ec;
    ew_episode_cfg_default(&ec);
    ec.max_steps = ec.n_cond + (int)steps;
    ec.goal_distance = 1e9f;
    ew_episode_begin(&ep, &ec, w);
    cli_progress pr;
    if (!json) cli_progress_begin(&pr, "bench plan", ec.max_steps);
    long k = 0;
    while (ew_episode_step(&ep, w, &outer)) {
        if (!json) cli_progress_update(&pr, ++k, NULL);
    }
    if (!json) cli_progress_end(&pr);
    if (ep.m.status == EW_EP_ERROR) {
        fprintf(stderr, "egoworld bench plan: %s\n", ep.m.error);
        ew_world_destroy(w);
        ew_controller_destroy(&c);
        return 1;
    }
    ew_mpc_stats st;
    ew_mpc_get_stats(&c, &st);
    long calls = outer.plan_calls ? outer.plan_calls : 1;
    double wall = outer.plan_ms_total / calls, cpu = cw.cpu_ms / calls;
    double un = st.unroll_ms / calls, op = st.opt_ms / calls;
    double unc = st.unroll_cpu_ms / calls, opc = st.opt_cpu_ms / calls;
    if (json) {
        printf("{\"controller\":\"%s\",\"world_model\":\"%s\",\"nf\":%d,\"hidden\":%d,\"n_cond\":%d,\"stochastic\":%d,"
               "\"variant\":\"%s\",\"horizon\":%d,\"iters\":%d,\"samples\":%d,\"refresh\":%d,\"threads\":%d,"
               "\"device\":\"%s\",\"control_steps\":%ld,\"plan_ms_per_step\":%.3f,\"plan_cpu_ms_per_step\":%.3f,"
               "\"unroll_ms_per_step\":%.3f,\"opt_ms_per_step\":%.3f,\"unroll_cpu_ms_per_step\":%.3f,"
               "\"opt_cpu_ms_per_step\":%.3f,\"refreshes\":%ld,\"tails\":%ld,"
               "\"episode_status\":\"%s\"}\n",
               kind, random_model ? "random" : world, used.nf, used.hidden, used.n_cond, used.stochastic,
               ew_fm_variant_name(used.variant), mc.horizon, mc.iters, mc.samples, mc.refresh, mc.threads,
               cuda ? "cuda" : "cpu", outer.plan_calls, wall, cpu, un, op, unc, opc, st.refreshes, st.tails,
               ew_episode_status_name(ep.m.status));
    } else {
        printf("%s on %s (%s model nf %d hidden %d n_cond %d), horizon %d, %d iterations, %d samples, refresh %d, "
               "%d thread(s)\n", kind, scen, random_model ? "random" : world, used.nf, used.hidden, used.n_cond,
               mc.horizon, mc.iters, mc.samples, mc.refresh, mc.threads);
        printf("  plan_ms_per_step %.3f (thread CPU %.3f) = unroll %.3f (CPU %.3f) + optimisation %.3f (CPU %.3f) ms\n"
               "  over %ld steps (%ld full unrolls, %ld tail steps)\n", wall, cpu, un, unc, op, opc, outer.plan_calls,
               st.refreshes, st.tails);
    }
    ew_world_destroy(w);
    ew_controller_destroy(&c);
    return 0;
}
