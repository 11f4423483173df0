/* cmd_eval.c - `egoworld eval`: a controller on a fixed, seeded episode set, in parallel
 * (planner/eval.h; the sets are documented in docs/EVAL.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/cli.h"
#include "models/dist.h"
#include "planner/eval.h"

static void help(void) {
    printf("usage: egoworld eval --controller C --set NAME [options]\n\n"
           "Runs the controller on a fixed, seeded, held-out episode set in parallel and prints the\n"
           "success rate, mean distance, collision and off-road rates and the planning time per step.\n"
           "Results do not depend on --workers (episode i always uses seed base + i) nor on the\n"
           "number of MPI ranks (under mpirun, rank r runs episodes i %% ranks == r and rank 0\n"
           "prints the gathered result).\n\n"
           "  --controller C      %s (default idm)\n"
           "  --set NAME          episode set (default dense-reactive):\n",
           ew_controller_specs());
    int n;
    const ew_eval_set *s = ew_eval_sets(&n);
    for (int i = 0; i < n; i++)
        printf("                        %-15s %d episodes, base seed %llu\n", s[i].name, s[i].episodes,
               (unsigned long long)s[i].base_seed);
    printf("                        lua:A.lua,B.lua  Lua scenario files (episode i runs file i mod K;\n"
           "                                         10 episodes per file by default)\n"
           "  --episodes N        number of episodes (default: the set's)\n"
           "  --workers W         worker threads (default: the cores, %d here)\n"
           "  --seed S            base seed replacing the set's (episode i uses S + i)\n"
           "  --world FILE        world model for mpc-km, mpc-fm, cem (default " EW_DEFAULT_WORLD_MODEL ")\n"
           CLI_DEVICE_HELP
           "  --horizon N         planning horizon of the MPC controllers (default 30)\n"
           "  --iters N           Adam iterations / CEM rounds of the MPC controllers\n"
           "  --allow-read DIR    folder a Lua scenario may read\n"
           "  --json              one JSON object on stdout: episodes, success_rate, mean_distance_m,\n"
           "                      collision_rate, offroad_rate, plan_ms_per_step, timeout_rate,\n"
           "                      mean_speed, wall_s, set, controller, ...\n"
           "  --per-episode       with --json: add the per-episode metrics\n"
           "  --quiet             no progress display\n",
           cli_cores());
}

static void on_progress(void *ctx, int done, int total) {
    cli_progress *p = ctx;
    p->total = total; /* the set's default count is known once the set is */
    cli_progress_update(p, done, NULL);
}

int cmd_eval(int argc, char **argv) {
    const char *cmd = "eval";
    ew_eval_opts o;
    ew_eval_opts_default(&o);
    o.set = "dense-reactive";
    o.workers = cli_cores();
    long episodes = 0, workers = o.workers, horizon = 0, iters = 0;
    int json = 0, per_episode = 0, quiet = 0, cuda = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { help(); return 0; }
        else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--per-episode")) per_episode = 1;
        else if (!strcmp(a, "--quiet")) quiet = 1;
        else if (!strcmp(a, "--controller")) { if (!(o.controller = cli_value(cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--set")) { if (!(o.set = cli_value(cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--world")) { if (!(o.copts.world_model = cli_value(cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--device")) { if (cli_device(cmd, argc, argv, &i, &cuda)) return 2; }
        else if (!strcmp(a, "--allow-read")) { if (!(o.allow_read = cli_value(cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--episodes")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 1, 10000000, &episodes)) return 2; }
        else if (!strcmp(a, "--workers")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 1, 1024, &workers)) return 2; }
        else if (!strcmp(a, "--horizon")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 1, 1000, &horizon)) return 2; }
        else if (!strcmp(a, "--iters")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 1, 10000, &iters)) return 2; }
        else if (!strcmp(a, "--seed")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_u64(cmd, a, v, &o.base_seed)) return 2; o.has_seed = 1; }
        else return cli_unknown(cmd, a);
    }
    if (per_episode && !json) {
        fprintf(stderr, "egoworld eval: --per-episode: needs --json\n");
        return 2;
    }
    o.episodes = (int)episodes;
    o.workers = (int)workers;
    o.copts.horizon = (int)horizon;
    o.copts.iters = (int)iters;
    o.copts.cuda = cuda;
    if (cli_device_check(cmd, cuda)) return 1;
    ew_dist dist;
    ew_dist_world(&dist);
    o.rank = dist.rank;
    o.nranks = dist.size;
    if (dist.rank != 0) quiet = 1;
    cli_progress pg;
    if (!quiet) {
        cli_progress_begin(&pg, "eval", episodes > 0 ? episodes : 1);
        o.progress = on_progress;
        o.progress_ctx = &pg;
    }
    ew_eval_result r;
    char err[512];
    double t0 = cli_now();
    int rc = ew_eval_run(&o, &r, err, (int)sizeof err);
    if (dist.size > 1) { /* gather every rank's episodes on rank 0 and summarise there */
        if (ew_dist_any(&dist, r.episodes == 0)) {
            if (r.episodes == 0) fprintf(stderr, "egoworld eval: rank %d: %s\n", dist.rank, err);
            ew_eval_result_free(&r);
            return 1;
        }
        size_t n = 0, *sizes = calloc((size_t)dist.size, sizeof *sizes);
        void *mine = ew_eval_pack(&r, dist.rank, dist.size, &n), *all = NULL;
        int grc = !mine || !sizes ? (snprintf(err, sizeof err, "out of memory"), -1) : 0;
        if (ew_dist_any(&dist, grc != 0) ||
            ew_dist_gather_bytes(&dist, mine, n, &all, sizes, err, sizeof err)) {
            fprintf(stderr, "egoworld eval: rank %d: %s\n", dist.rank, err);
            free(mine);
            free(sizes);
            ew_eval_result_free(&r);
            return 1;
        }
        size_t total = 0;
        for (int k = 0; dist.rank == 0 && k < dist.size; k++) total += sizes[k];
        free(mine);
        free(sizes);
        if (dist.rank != 0) {
            ew_eval_result_free(&r);
            return 0; /* rank 0 reports, with the job's status */
        }
        rc = ew_eval_unpack(&r, all, total, err, (int)sizeof err);
        free(all);
        if (rc == 0) rc = ew_eval_summarize(&r, err, (int)sizeof err);
    }
    double wall = cli_now() - t0;
    if (!quiet && r.episodes > 0) cli_progress_end(&pg);
    if (rc != 0 && r.episodes == 0) { /* nothing ran: bad set, controller or file */
        fprintf(stderr, "egoworld eval: %s\n", err);
        return strncmp(err, "unknown set", 11) && strncmp(err, "controller: unknown", 19) ? 1 : 2;
    }
    if (json) {
        ew_eval_json(&r, wall, per_episode, stdout);
        fputc('\n', stdout);
    } else {
        printf("set %s, base seed %llu, %d episodes, %d workers%s, %.2f s\n", r.set, (unsigned long long)r.base_seed,
               r.episodes, r.workers, dist.size > 1 ? " per rank" : "", wall);
        if (dist.size > 1) printf("%d MPI ranks\n", dist.size);
        ew_eval_table(&r, stdout, 1);
    }
    if (rc != 0) fprintf(stderr, "egoworld eval: %s\n", err);
    ew_eval_result_free(&r);
    return rc != 0 ? 1 : 0;
}
