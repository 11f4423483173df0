/* cmd_collect.c - `egoworld collect`: run scenarios with the noisy ego driver ("idm-noisy",
 * sim/driver.h) and record trajectory datasets (sim/traj.h).
 *
 * Episode i runs scenario i mod n with seed derived from (--seed, i); the driver controls the
 * ego from the first step (no separate warm-up driver: every step is recorded with the action
 * that was applied). Episodes run in parallel (--workers) into memory and are written in
 * episode order, so the output does not depend on the number of workers. Under mpirun the
 * episodes are also split across MPI ranks (episode i on rank i mod ranks, models/dist.h):
 * every rank encodes its episodes of a chunk, rank 0 gathers them and writes the dataset in
 * episode order, so the files do not depend on the number of ranks either.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "app/cli.h"
#include "app/run_lua.h"
#include "lua/scenario.h"
#include "models/dist.h"
#include "planner/controllers.h"
#include "sim/driver.h"
#include "sim/episode.h"
#include "sim/replay.h"
#include "sim/rng.h"
#include "sim/scenario_builtin.h"
#include "sim/traj.h"
#include "sim/world.h"

static void help(void) {
    printf("usage: egoworld collect SCENARIO... --out DIR [options]\n\n"
           "Runs episodes of the scenarios (built-in names or Lua files FILE.lua) with the noisy\n"
           "IDM ego driver (idm-noisy: correlated acceleration and steering noise, random and\n"
           "MOBIL-style lane changes) and records every step as a trajectory dataset\n"
           "(docs/DATASET.md). Episode i runs scenario i mod n with a seed derived from (S, i)\n"
           "and ends at a collision, off-road, near the road's end (goal) or after T steps.\n\n"
           "  --out DIR           output folder (must not hold a dataset)\n"
           "  --episodes N        episodes in total, spread round-robin (default 10)\n"
           "  --steps T           steps per episode at most (default 300 = 30 s)\n"
           "  --seed S            base seed (default 1)\n"
           "  --goal M            end after M metres along x (default: 60 m before the road's end)\n"
           "  --replay            non-reactive: traffic recorded without the ego, replayed around it\n"
           "  --controller C      drive the ego with controller C instead of idm-noisy (any spec of\n"
           "                      --controller, e.g. mpc-km: expert data for distillation)\n"
           "  --world FILE        world model of MPC controllers (default " EW_DEFAULT_WORLD_MODEL ")\n"
           "  --workers W         parallel episodes (default: the number of cores); under mpirun\n"
           "                      per rank (episode i on rank i mod ranks; rank 0 writes)\n"
           "  --split-seed K      seed of the train/val/test split (default 1)\n"
           "  --shard-steps N     ego-steps per shard file (default 250000)\n"
           "  --allow-read DIR    folder Lua scenarios may read\n"
           "  --json              print a JSON summary on stdout\n"
           "  --quiet             no progress line\n"
           "built-in scenarios:");
    int n;
    const char *const *names = ew_scenario_builtin_names(&n);
    for (int i = 0; i < n; i++) printf(" %s", names[i]);
    printf("\n");
}

typedef struct {
    const char *name;
    int lua;
    ew_world_config wc; /* built-in */
} scen_spec;

typedef struct {
    ew_traj_enc *enc;
    int status;          /* ew_episode_status */
    int lane_changes;
    int failed;
    char err[512];
    char script_err[256]; /* a scripted event failed: the episode ended there (kept) */
} ep_result;

/* The recording controller: the driver's action, clipped, recorded with the world. */
typedef struct {
    ew_controller *drv;
    ew_traj_enc *enc;
    int failed;
    char err[256];
} rec_ctx;

static void rec_observe(void *ctx, const ew_world *w) {
    rec_ctx *r = ctx;
    if (r->drv->observe) r->drv->observe(r->drv->ctx, w);
}

static int rec_act(void *ctx, const ew_world *w, ew_action *out, char *err, int errlen) {
    rec_ctx *r = ctx;
    ew_action u;
    if (ew_controller_act(r->drv, w, &u, err, errlen) != 0) return -1;
    u = ew_kin_clip(&ew_world_config_of(w)->ego_limits, u);
    if (ew_traj_enc_step(r->enc, w, &u, err, errlen) != 0) return -1;
    *out = u;
    return 0;
}

typedef struct {
    const scen_spec *sc;
    int n_sc;
    uint64_t seed;
    long steps;
    double goal;
    int replay;
    const char *allow_read;
    const char *controller; /* NULL: the noisy driver; else a controller spec (planner/controllers.h) */
    const char *world;      /* world model of MPC controllers (NULL: the default) */
} collect_opts;

static uint64_t episode_seed(uint64_t base, long i) {
    uint64_t x = base ^ ((uint64_t)i * 0x9E3779B97F4A7C15ULL);
    return ew_splitmix64(&x) & ((1ULL << 53) - 1); /* exact in Lua numbers and JSON */
}

/* One episode into res->enc (already created). */
static void run_episode(const collect_opts *o, long i, ep_result *res) {
    const scen_spec *sp = &o->sc[i % o->n_sc];
    uint64_t seed = episode_seed(o->seed, i);
    ew_world_config wc;
    ew_episode_cfg ec;
    ew_episode_cfg_default(&ec);
    ew_scenario *lsc = NULL;
    ew_world *w = NULL;
    ew_controller drv = {0};
    int have_drv = 0;
    ew_replay_log *log = NULL;
    ew_replay_player *player = NULL;
    char *err = res->err;
    int errlen = (int)sizeof res->err;
    res->failed = 1;
    res->script_err[0] = 0;
    res->err[0] = 0;
    if (sp->lua) {
        ew_lua_opts lo;
        ew_lua_opts_default(&lo);
        lo.read_dir = o->allow_read;
        lo.has_seed = 1;
        lo.seed = seed;
        char lerr[2048];
        lsc = ew_scenario_load(sp->name, &lo, lerr, (int)sizeof lerr);
        if (!lsc) {
            snprintf(err, (size_t)errlen, "%.*s", (int)strcspn(lerr, "\n"), lerr);
            goto done;
        }
        wc = *ew_scenario_world_config(lsc);
        ew_scenario_episode_cfg(lsc, &ec);
    } else {
        wc = sp->wc;
    }
    wc.seed = seed;
    ec.n_cond = 0; /* the noisy driver drives from the first step */
    ec.max_steps = (int)o->steps;
    if (o->goal > 0) ec.goal_distance = (float)o->goal;
    if (o->replay) {
        /* the traffic of this seed recorded without the ego (after 20 s of settling), then
         * replayed around it: the ego takes the place of the logged car nearest to its start
         * (replace mode, as in the anchor), the others follow their logged paths */
        log = ew_replay_record(&wc, seed, 20.0f, (int)o->steps + 1, err, errlen);
        if (!log) goto done;
        ew_world_config rwc;
        ew_replay_world_config(&wc, &rwc);
        wc = rwc;
        player = ew_replay_player_create(log, 0, err, errlen);
        if (!player) goto done;
        ew_replay_player_set_replace_ego(player, 1);
        ew_replay_attach(player, &ec);
    }
    w = ew_world_create(&wc, err, errlen);
    if (!w) goto done;
    ew_world_reset(w, seed);
    if (lsc && ew_scenario_begin(lsc, w, err, errlen) != 0) goto done;
    if (player && ew_replay_player_begin(player, w, err, errlen) != 0) goto done;
    /* the goal: 60 m before the road's end from where the ego really starts (replace mode
     * moves it onto a logged car) */
    if (o->goal <= 0) {
        ec.goal_distance = wc.road.length - 60.0f - ew_world_ego(w)->x;
        if (ec.goal_distance < 1.0f) ec.goal_distance = 1.0f;
    }
    ew_driver_cfg dc;
    ew_driver_cfg_default(&dc);
    if (o->replay) {
        /* non-reactive traffic does not yield: keep near the replaced car's speed (followers
         * do not brake for a slower ego) and change lanes more rarely */
        dc.speed_factor_lo = 0.95f;
        dc.speed_factor_hi = 1.1f;
        dc.lc_random = 0.1f;
    }
    if (o->controller) {
        ew_controller_opts co;
        ew_controller_opts_default(&co);
        co.seed = seed;
        co.world_model = o->world;
        if (ew_controller_create(o->controller, &co, &drv, err, errlen) != 0) goto done;
    } else if (ew_driver_controller(&dc, seed, &drv, err, errlen) != 0) {
        goto done;
    }
    have_drv = 1;
    if (drv.reset) drv.reset(drv.ctx, w);
    if (ew_traj_enc_begin(res->enc, sp->name, seed, ew_world_road(w), wc.ego_length, wc.ego_width, err, errlen) != 0)
        goto done;
    rec_ctx rc = {&drv, res->enc, 0, ""};
    ew_controller rec = {.name = o->controller ? o->controller : "idm-noisy", .ctx = &rc, .act = rec_act,
                         .observe = rec_observe};
    ew_episode ep;
    ew_episode_begin(&ep, &ec, w);
    while (ew_episode_step(&ep, w, &rec)) {
    }
    if (ep.m.status == EW_EP_ERROR) {
        /* a failing scripted event (e.g. a cut-in with no lane on that side after the ego
         * changed lanes): the episode is kept up to the failure and counted */
        if (!lsc || !ew_scenario_error(lsc)) {
            snprintf(err, (size_t)errlen, "%s", ep.m.error);
            goto done;
        }
        const char *m = ew_scenario_error(lsc);
        snprintf(res->script_err, sizeof res->script_err, "%.*s", (int)strcspn(m, "\n"), m);
    }
    if (ew_traj_enc_steps(res->enc) == 0) {
        snprintf(err, (size_t)errlen, "episode ended before its first step (%s)", ep.m.label);
        goto done;
    }
    /* the final state (action 0, never applied) so that the end of the episode is in the data */
    ew_action zero = {0.0f, 0.0f};
    if (ew_traj_enc_step(res->enc, w, &zero, err, errlen) != 0) goto done;
    if (ew_traj_enc_end(res->enc, res->script_err[0] ? "script_error" : ep.m.label, err, errlen) != 0) goto done;
    res->status = ep.m.status;
    res->lane_changes = o->controller ? 0 : ew_driver_lane_changes(&drv);
    res->failed = 0;
done:
    if (res->failed && !err[0] && lsc && ew_scenario_error(lsc)) {
        const char *m = ew_scenario_error(lsc);
        snprintf(err, (size_t)errlen, "%.*s", (int)strcspn(m, "\n"), m);
    }
    if (have_drv) ew_controller_destroy(&drv);
    ew_world_destroy(w);
    ew_scenario_destroy(lsc);
    ew_replay_player_free(player);
    ew_replay_log_free(log);
}

/* one episode result on the wire (distributed collect): this header, then len block bytes */
typedef struct {
    int32_t j, failed, status, lane_changes;
    uint64_t len;
    char err[512], script_err[256];
} wire_head;

/* The results of this rank's episodes j of the chunk (j % size == rank) as bytes. */
static void *pack_results(const ep_result *res, long m, const ew_dist *d, size_t *n, char *err, int errlen) {
    size_t cap = 0, used = 0;
    unsigned char *buf = NULL;
    for (long j = d->rank; j < m; j += d->size) {
        void *blk = NULL;
        size_t bn = 0;
        wire_head h;
        memset(&h, 0, sizeof h);
        h.j = (int32_t)j;
        h.failed = res[j].failed;
        h.status = res[j].status;
        h.lane_changes = res[j].lane_changes;
        memcpy(h.err, res[j].err, sizeof h.err);
        memcpy(h.script_err, res[j].script_err, sizeof h.script_err);
        if (!res[j].failed && ew_traj_enc_export(res[j].enc, &blk, &bn, err, errlen) != 0) {
            free(buf);
            return NULL;
        }
        h.len = bn;
        if (used + sizeof h + bn > cap) {
            size_t nc = 2 * cap + sizeof h + bn;
            unsigned char *q = realloc(buf, nc);
            if (!q) {
                free(blk);
                free(buf);
                snprintf(err, (size_t)errlen, "out of memory");
                return NULL;
            }
            buf = q;
            cap = nc;
        }
        memcpy(buf + used, &h, sizeof h);
        if (bn) memcpy(buf + used + sizeof h, blk, bn);
        used += sizeof h + bn;
        free(blk);
    }
    *n = used;
    if (!buf) buf = malloc(1);
    if (!buf) snprintf(err, (size_t)errlen, "out of memory");
    return buf;
}

/* Rank 0: the gathered results back into res[]. */
static int unpack_results(ep_result *res, long m, const unsigned char *buf, size_t n, char *err, int errlen) {
    size_t off = 0;
    while (off < n) {
        wire_head h;
        if (n - off < sizeof h) break;
        memcpy(&h, buf + off, sizeof h);
        off += sizeof h;
        if (h.j < 0 || h.j >= m || h.len > n - off) break;
        ep_result *r = &res[h.j];
        r->failed = h.failed;
        r->status = h.status;
        r->lane_changes = h.lane_changes;
        memcpy(r->err, h.err, sizeof r->err);
        memcpy(r->script_err, h.script_err, sizeof r->script_err);
        r->err[sizeof r->err - 1] = r->script_err[sizeof r->script_err - 1] = 0;
        if (!h.failed && ew_traj_enc_import(r->enc, buf + off, (size_t)h.len, err, errlen) != 0) return -1;
        off += (size_t)h.len;
    }
    if (off != n) {
        snprintf(err, (size_t)errlen, "gathered episode results are malformed");
        return -1;
    }
    return 0;
}

int cmd_collect(int argc, char **argv) {
    const char *cmd = "collect";
    const char *out = NULL, *allow_read = NULL, *controller = NULL, *world = NULL;
    long episodes = 10, steps = 300, workers = 0, shard_steps = 250000;
    uint64_t seed = 1, split_seed = 1;
    double goal = 0.0;
    int json = 0, quiet = 0, replay = 0;
    const char **names = calloc((size_t)argc + 1, sizeof *names);
    int n_names = 0;
    if (!names) {
        fprintf(stderr, "egoworld collect: out of memory\n");
        return 1;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            help();
            free(names);
            return 0;
        }
#define USAGE()     \
    do {            \
        free(names); \
        return 2;   \
    } while (0)
        else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--quiet")) quiet = 1;
        else if (!strcmp(a, "--replay")) replay = 1;
        else if (!strcmp(a, "--out")) { if (!(out = cli_value(cmd, argc, argv, &i))) USAGE(); }
        else if (!strcmp(a, "--allow-read")) { if (!(allow_read = cli_value(cmd, argc, argv, &i))) USAGE(); }
        else if (!strcmp(a, "--controller")) { if (!(controller = cli_value(cmd, argc, argv, &i))) USAGE(); }
        else if (!strcmp(a, "--world")) { if (!(world = cli_value(cmd, argc, argv, &i))) USAGE(); }
        else if (!strcmp(a, "--episodes")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 1, 100000000, &episodes)) USAGE(); }
        else if (!strcmp(a, "--steps")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 1, 1000000, &steps)) USAGE(); }
        else if (!strcmp(a, "--workers")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 1, 1024, &workers)) USAGE(); }
        else if (!strcmp(a, "--shard-steps")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 1, 100000000, &shard_steps)) USAGE(); }
        else if (!strcmp(a, "--seed")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_u64(cmd, a, v, &seed)) USAGE(); }
        else if (!strcmp(a, "--split-seed")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_u64(cmd, a, v, &split_seed)) USAGE(); }
        else if (!strcmp(a, "--goal")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_float(cmd, a, v, 1.0, 1e7, &goal)) USAGE(); }
        else if (a[0] == '-' && a[1]) { free(names); return cli_unknown(cmd, a); }
        else names[n_names++] = a;
    }
    if (n_names == 0) {
        fprintf(stderr, "egoworld collect: SCENARIO: give at least one scenario (see egoworld collect --help)\n");
        USAGE();
    }
    if (!out) {
        fprintf(stderr, "egoworld collect: --out: the output folder is required\n");
        USAGE();
    }
#undef USAGE
    scen_spec *sc = calloc((size_t)n_names, sizeof *sc);
    if (!sc) {
        free(names);
        fprintf(stderr, "egoworld collect: out of memory\n");
        return 1;
    }
    char err[1024];
    float dt = 0.1f;
    /* check every scenario once up front (a Lua file: loaded once here) */
    for (int k = 0; k < n_names; k++) {
        sc[k].name = names[k];
        sc[k].lua = ew_run_is_lua(names[k]);
        if (sc[k].lua) {
            ew_lua_opts lo;
            ew_lua_opts_default(&lo);
            lo.read_dir = allow_read;
            ew_scenario *s = ew_scenario_load(names[k], &lo, err, (int)sizeof err);
            if (!s) {
                fprintf(stderr, "egoworld collect: %.*s\n", (int)strcspn(err, "\n"), err);
                free(sc);
                free(names);
                return 1;
            }
            sc[k].wc = *ew_scenario_world_config(s);
            ew_scenario_destroy(s);
        } else if (ew_scenario_builtin(names[k], &sc[k].wc, err, (int)sizeof err) != 0) {
            fprintf(stderr, "egoworld collect: %s\n", err);
            free(sc);
            free(names);
            return 2;
        }
        if (k == 0) dt = sc[k].wc.dt;
        else if (sc[k].wc.dt != dt) {
            fprintf(stderr, "egoworld collect: %s: dt %g differs from %s's %g (one dataset has one dt)\n", names[k],
                    (double)sc[k].wc.dt, names[0], (double)dt);
            free(sc);
            free(names);
            return 1;
        }
    }
    if (workers <= 0) workers = cli_cores();
    if (workers < 1) workers = 1;

    /* the command line for the manifest */
    size_t cl = 16;
    for (int i = 0; i < argc; i++) cl += strlen(argv[i]) + 1;
    char *cmdline = malloc(cl);
    char extra[512];
    if (!cmdline) {
        free(sc);
        free(names);
        fprintf(stderr, "egoworld collect: out of memory\n");
        return 1;
    }
    strcpy(cmdline, "egoworld");
    for (int i = 0; i < argc; i++) {
        strcat(cmdline, " ");
        strcat(cmdline, argv[i]);
    }
    snprintf(extra, sizeof extra, "\"seed\": %llu, \"episodes\": %ld, \"steps\": %ld, \"goal_m\": %.9g, \"driver\": \"%s\"",
             (unsigned long long)seed, episodes, steps, goal, controller ? controller : "idm-noisy");
    ew_traj_writer_cfg wcfg;
    ew_traj_writer_cfg_default(&wcfg);
    wcfg.dir = out;
    wcfg.dt = dt;
    wcfg.split_seed = split_seed;
    wcfg.mode = replay ? "replay" : "reactive";
    wcfg.command = cmdline;
    wcfg.shard_steps = (size_t)shard_steps;
    wcfg.extra_json = extra;
    ew_dist dist;
    ew_dist_world(&dist);
    if (dist.rank != 0) quiet = 1;
    /* rank 0 writes; the others only run episodes */
    ew_traj_writer *wr = dist.rank == 0 ? ew_traj_writer_open(&wcfg, err, (int)sizeof err) : NULL;
    if (ew_dist_any(&dist, dist.rank == 0 && !wr)) {
        if (dist.rank == 0) fprintf(stderr, "egoworld collect: %s\n", err);
        free(cmdline);
        free(sc);
        free(names);
        return 1;
    }
    collect_opts o = {sc, n_names, seed, steps, goal, replay, allow_read, controller, world};
    long chunk = 4 * workers * dist.size;
    ep_result *res = calloc((size_t)chunk, sizeof *res);
    int rc = 0;
    for (long k = 0; res && k < chunk; k++)
        if (!(res[k].enc = ew_traj_enc_create())) rc = 1;
    if (!res || rc) {
        fprintf(stderr, "egoworld collect: out of memory\n");
        rc = 1;
    }
    long n_status[EW_EP_ERROR + 1] = {0}, lane_changes = 0, script_errors = 0;
    int64_t ego_steps = 0, veh_steps = 0;
    cli_progress pg;
    if (!quiet) cli_progress_begin(&pg, "collect", episodes);
    double t0 = cli_now();
    for (long base = 0; rc == 0 && base < episodes; base += chunk) {
        long m = episodes - base < chunk ? episodes - base : chunk;
#pragma omp parallel for schedule(dynamic, 1) num_threads((int)workers)
        for (long j = 0; j < m; j++)
            if (j % dist.size == dist.rank) run_episode(&o, base + j, &res[j]);
        if (dist.size > 1) { /* every rank's episodes of this chunk to rank 0 */
            size_t n = 0, *sizes = calloc((size_t)dist.size, sizeof *sizes);
            void *mine = sizes ? pack_results(res, m, &dist, &n, err, (int)sizeof err) : NULL, *all = NULL;
            if (!sizes) snprintf(err, sizeof err, "out of memory");
            int bad = ew_dist_any(&dist, !mine) || ew_dist_gather_bytes(&dist, mine, n, &all, sizes, err, sizeof err);
            size_t total = 0;
            for (int r = 0; !bad && dist.rank == 0 && r < dist.size; r++) total += sizes[r];
            if (!bad && dist.rank == 0 && unpack_results(res, m, all, total, err, (int)sizeof err) != 0) bad = 1;
            if (bad && (mine == NULL || dist.rank == 0)) fprintf(stderr, "egoworld collect: rank %d: %s\n", dist.rank, err);
            free(mine);
            free(all);
            free(sizes);
            if (ew_dist_any(&dist, bad)) {
                rc = 1;
                break;
            }
        }
        for (long j = 0; j < m && rc == 0 && dist.rank == 0; j++) {
            if (res[j].failed) {
                fprintf(stderr, "egoworld collect: episode %ld (%s): %s\n", base + j, sc[(base + j) % n_names].name,
                        res[j].err);
                rc = 1;
                break;
            }
            if (ew_traj_writer_add(wr, res[j].enc, err, (int)sizeof err) != 0) {
                fprintf(stderr, "egoworld collect: %s\n", err);
                rc = 1;
                break;
            }
            n_status[res[j].status]++;
            if (res[j].script_err[0] && script_errors++ == 0 && !quiet)
                fprintf(stderr, "\negoworld collect: warning: episode %ld (%s): %s (episode kept up to there; counted as script_errors)\n",
                        base + j, sc[(base + j) % n_names].name, res[j].script_err);
            lane_changes += res[j].lane_changes;
            ego_steps += ew_traj_enc_steps(res[j].enc);
            veh_steps += ew_traj_enc_vehicle_steps(res[j].enc);
        }
        if (dist.size > 1 && ew_dist_any(&dist, rc != 0)) rc = 1; /* rank 0 found a failed episode */
        if (!quiet && rc == 0) {
            char x[96];
            snprintf(x, sizeof x, "%lld ego-steps, %ld collisions", (long long)ego_steps, n_status[EW_EP_COLLISION]);
            cli_progress_update(&pg, base + m, x);
        }
    }
    double wall_sim = cli_now() - t0;
    if (!quiet) cli_progress_end(&pg);
    if (dist.rank != 0) { /* rank 0 writes and reports */
        for (long k = 0; res && k < chunk; k++) ew_traj_enc_free(res[k].enc);
        free(res);
        free(cmdline);
        free(sc);
        free(names);
        return rc;
    }
    if (rc == 0) {
        if (ew_traj_writer_close(wr, err, (int)sizeof err) != 0) {
            fprintf(stderr, "egoworld collect: %s\n", err);
            rc = 1;
        }
    } else {
        ew_traj_writer_abort(wr); /* no manifest: the folder is not a dataset */
    }
    double wall = cli_now() - t0;
    if (rc == 0) {
        /* read back: validates every shard and gives the exact sizes */
        ew_traj_set *s = ew_traj_open(out, err, (int)sizeof err);
        if (!s) {
            fprintf(stderr, "egoworld collect: reading back: %s\n", err);
            rc = 1;
        } else if (ew_traj_n_steps(s) != ego_steps || ew_traj_n_episodes(s) != episodes) {
            fprintf(stderr, "egoworld collect: reading back: %d episodes / %lld steps, wrote %ld / %lld\n",
                    ew_traj_n_episodes(s), (long long)ew_traj_n_steps(s), episodes, (long long)ego_steps);
            rc = 1;
        } else {
            double bytes = (double)ew_traj_file_bytes(s);
            long coll = n_status[EW_EP_COLLISION];
            if (json) {
                printf("{\"out\": \"%s\", \"mode\": \"%s\", \"episodes\": %ld, \"ego_steps\": %lld, \"vehicle_steps\": %lld, "
                       "\"bytes\": %.0f, \"bytes_per_ego_step\": %.6g, \"bytes_per_vehicle_step\": %.6g, "
                       "\"collisions\": %ld, \"collision_rate\": %.6g, \"offroad\": %ld, \"goal\": %ld, \"timeouts\": %ld, "
                       "\"scripted\": %ld, \"script_errors\": %ld, \"lane_changes\": %ld, \"workers\": %ld, \"ranks\": %d, \"wall_s\": %.6g, "
                       "\"ego_steps_per_s\": %.6g, \"memory_bytes\": %zu}\n",
                       out, replay ? "replay" : "reactive", episodes, (long long)ego_steps, (long long)veh_steps, bytes,
                       bytes / (double)ego_steps, veh_steps ? bytes / (double)veh_steps : 0.0, coll,
                       (double)coll / (double)episodes, n_status[EW_EP_OFFROAD], n_status[EW_EP_SUCCESS],
                       n_status[EW_EP_TIMEOUT], n_status[EW_EP_SCRIPTED], script_errors, lane_changes, workers, dist.size, wall,
                       (double)ego_steps / wall_sim, ew_traj_bytes(s));
            } else {
                printf("dataset       %s (%s)\n", out, replay ? "replay" : "reactive");
                printf("episodes      %ld (%ld goal, %ld timeout, %ld collision, %ld off-road, %ld scripted end, %ld script errors)\n",
                       episodes, n_status[EW_EP_SUCCESS], n_status[EW_EP_TIMEOUT], coll, n_status[EW_EP_OFFROAD],
                       n_status[EW_EP_SCRIPTED], script_errors);
                printf("ego-steps     %lld (%lld vehicle-steps, %ld ego lane changes)\n", (long long)ego_steps,
                       (long long)veh_steps, lane_changes);
                printf("size          %.0f bytes, %.1f bytes per ego-step\n", bytes, bytes / (double)ego_steps);
                printf("wall time     %.2f s (%.0f ego-steps/s, %ld workers)\n", wall, (double)ego_steps / wall_sim,
                       workers);
            }
            ew_traj_close(s);
        }
    }
    for (long k = 0; res && k < chunk; k++) ew_traj_enc_free(res[k].enc);
    free(res);
    free(cmdline);
    free(sc);
    free(names);
    return rc;
}
