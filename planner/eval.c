/* eval.c - the evaluation harness (eval.h): named episode sets, parallel episodes, the
 * summary table and JSON. */
#include "planner/eval.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "lua/scenario.h"
#include "sim/replay.h"
#include "sim/scenario_builtin.h"

/* The named sets. Change a row and the set is another set: give it another name. */
static const ew_eval_set sets[] = {
    /* name, kind, scenario, base seed, episodes, n_cond, max_steps, goal, ego lane, x, speed,
     * density, flow, IDM noise, truck share, replay settling, replay replace-ego */
    {"dense-reactive", EW_EVAL_REACTIVE, "dense-3lane", 1000000, 500, 20, 600, 215.0f, -1, -1.0f, -1.0f, 50.0f,
     1800.0f, 0.5f, 0.10f, 0.0f, 0,
     "dense-3lane made congested (50 veh/km/lane, inflow 1800 veh/h/lane, IDM noise 0.5 m/s^2, 10 % "
     "trucks): IDM/MOBIL traffic that reacts to the ego; ego in lane 1 at x = 150 m, 15 m/s; goal 215 m"},
    {"dense-replay", EW_EVAL_REPLAY, "dense-3lane", 2000000, 500, 20, 600, 215.0f, -1, -1.0f, -1.0f, 50.0f,
     1800.0f, 0.5f, 0.10f, 30.0f, 1,
     "the same traffic recorded without an ego (30 s settling, then 601 frames) and replayed non-reactively; "
     "the ego takes the place of the logged car of lane 1 nearest to x = 150 m; goal 215 m"},
    {"merge", EW_EVAL_REACTIVE, "onramp-6lane", 3000000, 500, 20, 600, 300.0f, 6, 120.0f, 18.0f, -1.0f, -1.0f,
     -1.0f, -1.0f, 0.0f, 0,
     "onramp-6lane (I-80-like, near-capacity reactive traffic); the ego starts on the on-ramp (lane 6) at x = "
     "120 m, 18 m/s, and must merge into lane 0 before the ramp ends at 420 m; goal 300 m"},
};
#define LUA_BASE_SEED 4000000ull
#define LUA_EPISODES_PER_FILE 10

const ew_eval_set *ew_eval_sets(int *n) {
    *n = (int)(sizeof sets / sizeof sets[0]);
    return sets;
}

const ew_eval_set *ew_eval_set_find(const char *name) {
    int n;
    const ew_eval_set *s = ew_eval_sets(&n);
    for (int i = 0; i < n; i++)
        if (!strcmp(s[i].name, name)) return &s[i];
    return NULL;
}

void ew_eval_opts_default(ew_eval_opts *o) {
    memset(o, 0, sizeof *o);
    o->controller = "idm";
    ew_controller_opts_default(&o->copts);
    o->workers = 1;
    o->nranks = 1;
}

void ew_eval_result_free(ew_eval_result *r) {
    if (!r) return;
    free(r->per);
    for (int i = 0; i < r->n_sources; i++) free(r->sources[i]);
    free(r->sources);
    memset(r, 0, sizeof *r);
}

static void set_err(char *err, int errlen, const char *msg) {
    if (err && errlen > 0) snprintf(err, (size_t)errlen, "%s", msg);
}

/* The world config of a built-in set. */
static int set_world_config(const ew_eval_set *s, ew_world_config *wc, char *err, int errlen) {
    if (ew_scenario_builtin(s->scenario, wc, err, errlen) != 0) return -1;
    if (s->ego_lane >= 0) wc->ego_lane = s->ego_lane;
    if (s->ego_x >= 0.0f) wc->ego_x = s->ego_x;
    if (s->ego_speed >= 0.0f) wc->ego_speed = s->ego_speed;
    for (int l = 0; l < wc->road.n_main; l++) {
        if (s->density_per_km > 0.0f) wc->density_per_km[l] = s->density_per_km;
        if (s->flow_per_h > 0.0f) wc->flow_per_h[l] = s->flow_per_h;
    }
    if (s->idm_noise >= 0.0f) wc->idm_noise = s->idm_noise;
    if (s->truck_share >= 0.0f) wc->truck_share = s->truck_share;
    return ew_world_config_validate(wc, err, errlen);
}

static char *dup_str(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = 0;
    }
    return d;
}

/* Per-thread state: worlds (one per source) and, for Lua sets, the loaded scenarios. */
typedef struct {
    ew_world **worlds;
    ew_scenario **scen;
    int n;
} worker;

static void worker_free(worker *k) {
    for (int i = 0; i < k->n; i++) {
        if (k->worlds) ew_world_destroy(k->worlds[i]);
        if (k->scen) ew_scenario_destroy(k->scen[i]);
    }
    free(k->worlds);
    free(k->scen);
}

typedef struct {
    const ew_eval_opts *o;
    const ew_eval_set *set; /* NULL for Lua */
    ew_world_config wc;     /* built-in sets (replay: the recording config) */
    ew_world_config rwc;    /* replay: the world to replay into */
    char **files;
    int n_files;
} plan;

/* Runs episode i on thread state k; fills e (status EW_EP_ERROR with the message on failure). */
static void run_episode(const plan *P, worker *k, int i, ew_eval_episode *e) {
    const ew_eval_opts *o = P->o;
    char err[256] = "";
    ew_episode_cfg ec;
    ew_episode_cfg_default(&ec);
    ew_world *w = NULL;
    ew_replay_log *log = NULL;
    ew_replay_player *pl = NULL;
    ew_scenario *sc = NULL;
    int src = 0;
    e->m.status = EW_EP_ERROR;
    if (P->set) {
        ec.n_cond = P->set->n_cond;
        ec.max_steps = P->set->max_steps;
        ec.goal_distance = P->set->goal;
    } else {
        src = i % P->n_files;
    }
    if (!k->worlds[src]) {
        const ew_world_config *cfg = &P->wc;
        if (!P->set) {
            ew_lua_opts lo;
            ew_lua_opts_default(&lo);
            lo.read_dir = o->allow_read;
            k->scen[src] = ew_scenario_load(P->files[src], &lo, err, (int)sizeof err);
            if (!k->scen[src]) goto fail;
            cfg = ew_scenario_world_config(k->scen[src]);
        } else if (P->set->kind == EW_EVAL_REPLAY) {
            cfg = &P->rwc;
        }
        k->worlds[src] = ew_world_create(cfg, err, (int)sizeof err);
        if (!k->worlds[src]) goto fail;
    }
    w = k->worlds[src];
    sc = P->set ? NULL : k->scen[src];
    ew_world_reset(w, e->seed);
    if (sc) {
        ew_scenario_episode_cfg(sc, &ec);
        if (ew_scenario_begin(sc, w, err, (int)sizeof err) != 0) goto fail;
    } else if (P->set->kind == EW_EVAL_REPLAY) {
        log = ew_replay_record(&P->wc, e->seed, P->set->replay_warmup_s, P->set->max_steps + 1, err, (int)sizeof err);
        if (!log) goto fail;
        pl = ew_replay_player_create(log, 0, err, (int)sizeof err);
        if (!pl) goto fail;
        ew_replay_player_set_replace_ego(pl, P->set->replay_replace_ego);
        if (ew_replay_player_begin(pl, w, err, (int)sizeof err) != 0) goto fail;
        e->skipped = ew_replay_player_skipped(pl);
        ew_replay_attach(pl, &ec);
    }
    ew_controller_opts co = o->copts;
    co.seed = e->seed;
    ew_controller c;
    if (ew_controller_create(o->controller, &co, &c, err, (int)sizeof err) != 0) goto fail;
    if (c.reset) c.reset(c.ctx, w);
    ew_episode ep;
    ew_episode_begin(&ep, &ec, w);
    while (ew_episode_step(&ep, w, &c)) {
    }
    e->m = ep.m;
    if (sc && ep.m.status == EW_EP_ERROR && ew_scenario_error(sc))
        snprintf(e->m.error, sizeof e->m.error, "%.255s", ew_scenario_error(sc));
    e->plan_ms = c.plan_ms_total;
    e->plan_calls = c.plan_calls;
    ew_controller_destroy(&c);
    ew_replay_player_free(pl);
    ew_replay_log_free(log);
    return;
fail:
    snprintf(e->m.error, sizeof e->m.error, "%s", err);
    snprintf(e->m.label, sizeof e->m.label, "%s", "error");
    ew_replay_player_free(pl);
    ew_replay_log_free(log);
}

/* Splits "lua:a.lua,b.lua" into owned strings. */
static int parse_lua(const char *spec, plan *P, char *err, int errlen) {
    const char *p = spec + 4;
    if (!*p) {
        set_err(err, errlen, "set lua: no scenario file (lua:FILE.lua,FILE.lua...)");
        return -1;
    }
    int n = 1;
    for (const char *q = p; *q; q++) n += *q == ',';
    P->files = calloc((size_t)n, sizeof *P->files);
    if (!P->files) return -1;
    while (*p) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        if (len == 0) {
            set_err(err, errlen, "set lua: empty file name in the list");
            return -1;
        }
        P->files[P->n_files++] = dup_str(p, len);
        p += len + (c ? 1 : 0);
        if (c && !*p) {
            set_err(err, errlen, "set lua: empty file name in the list");
            return -1;
        }
    }
    return 0;
}

int ew_eval_summarize(ew_eval_result *out, char *err, int errlen) {
    int n_ep = out->episodes;
    out->errors = 0;
    /* summary (sums in index order: independent of the worker count) */
    double dist = 0, speed = 0, plan_ms = 0, skipped = 0;
    long calls = 0;
    int succ = 0, coll = 0, off = 0, other = 0, first_err = -1;
    for (int i = 0; i < n_ep; i++) {
        const ew_eval_episode *e = &out->per[i];
        if (e->m.status == EW_EP_ERROR) {
            out->errors++;
            if (first_err < 0) first_err = i;
            continue;
        }
        succ += e->m.success;
        coll += e->m.collision;
        off += e->m.offroad;
        other += !e->m.success && !e->m.collision && !e->m.offroad;
        dist += e->m.distance;
        speed += e->m.mean_speed;
        plan_ms += e->plan_ms;
        calls += e->plan_calls;
        skipped += e->skipped;
    }
    double n = (double)n_ep;
    out->success_rate = succ / n;
    out->collision_rate = coll / n;
    out->offroad_rate = off / n;
    out->timeout_rate = other / n;
    int ok = n_ep - out->errors;
    out->mean_distance_m = ok ? dist / ok : 0.0;
    out->mean_speed = ok ? speed / ok : 0.0;
    out->mean_skipped = ok ? skipped / ok : 0.0;
    out->plan_ms_per_step = calls ? plan_ms / (double)calls : 0.0;
    if (first_err >= 0) {
        const ew_eval_episode *e = &out->per[first_err];
        snprintf(err, (size_t)errlen, "episode %d (seed %llu, %s): %s (%d episodes failed)", first_err,
                 (unsigned long long)e->seed, e->source, e->m.error, out->errors);
        return -1;
    }
    return 0;
}

int ew_eval_run(const ew_eval_opts *o, ew_eval_result *out, char *err, int errlen) {
    memset(out, 0, sizeof *out);
    plan P;
    memset(&P, 0, sizeof P);
    P.o = o;
    int rc = -1, n_ep = o->episodes;
    int nranks = o->nranks > 1 ? o->nranks : 1, rank = o->rank;
    uint64_t base;
    if (rank < 0 || rank >= nranks) {
        set_err(err, errlen, "rank outside [0, nranks)");
        return -1;
    }
    if (o->workers < 1 || o->workers > 1024) {
        set_err(err, errlen, "workers must be in [1, 1024]");
        return -1;
    }
    if (!o->set || !o->set[0]) {
        set_err(err, errlen, "no episode set given");
        return -1;
    }
    if (!strncmp(o->set, "lua:", 4)) {
        if (parse_lua(o->set, &P, err, errlen) != 0) goto done;
        /* every file must load before any episode runs */
        for (int f = 0; f < P.n_files; f++) {
            ew_lua_opts lo;
            ew_lua_opts_default(&lo);
            lo.read_dir = o->allow_read;
            char e2[512];
            ew_scenario *s = ew_scenario_load(P.files[f], &lo, e2, (int)sizeof e2);
            if (!s) {
                char *nl = strchr(e2, '\n');
                if (nl) *nl = 0;
                snprintf(err, (size_t)errlen, "set %s: %s", o->set, e2);
                goto done;
            }
            ew_scenario_destroy(s);
        }
        base = o->has_seed ? o->base_seed : LUA_BASE_SEED;
        if (n_ep <= 0) n_ep = LUA_EPISODES_PER_FILE * P.n_files;
    } else {
        P.set = ew_eval_set_find(o->set);
        if (!P.set) {
            int n;
            const ew_eval_set *all = ew_eval_sets(&n);
            char list[256];
            int m = 0;
            for (int i = 0; i < n; i++) m += snprintf(list + m, sizeof list - (size_t)m, "%s, ", all[i].name);
            snprintf(err, (size_t)errlen, "unknown set '%s' (%slua:FILE.lua,...)", o->set, list);
            goto done;
        }
        char e2[256];
        if (set_world_config(P.set, &P.wc, e2, (int)sizeof e2) != 0) {
            snprintf(err, (size_t)errlen, "set %s: %s", P.set->name, e2);
            goto done;
        }
        ew_replay_world_config(&P.wc, &P.rwc);
        base = o->has_seed ? o->base_seed : P.set->base_seed;
        if (n_ep <= 0) n_ep = P.set->episodes;
    }
    /* the controller must exist before any episode runs */
    {
        ew_controller c;
        char e2[256];
        if (ew_controller_create(o->controller, &o->copts, &c, e2, (int)sizeof e2) != 0) {
            snprintf(err, (size_t)errlen, "controller: %s", e2);
            goto done;
        }
        ew_controller_destroy(&c);
    }
    snprintf(out->set, sizeof out->set, "%s", o->set);
    snprintf(out->controller, sizeof out->controller, "%s", o->controller);
    out->base_seed = base;
    out->episodes = n_ep;
    out->workers = o->workers;
    out->ranks = nranks;
    out->per = calloc((size_t)n_ep, sizeof *out->per);
    out->n_sources = P.set ? 1 : P.n_files;
    out->sources = calloc((size_t)out->n_sources, sizeof *out->sources);
    if (!out->per || !out->sources) {
        set_err(err, errlen, "out of memory");
        goto done;
    }
    for (int s = 0; s < out->n_sources; s++) {
        const char *name = P.set ? P.set->scenario : P.files[s];
        out->sources[s] = dup_str(name, strlen(name));
    }
    for (int i = 0; i < n_ep; i++) {
        out->per[i].index = i;
        out->per[i].seed = base + (uint64_t)i;
        out->per[i].source = out->sources[P.set ? 0 : i % P.n_files];
    }
    int done_count = 0, n_src = out->n_sources, n_mine = 0;
    for (int i = 0; i < n_ep; i++) n_mine += i % nranks == rank;
#pragma omp parallel num_threads(o->workers)
    {
        worker k;
        k.n = n_src;
        k.worlds = calloc((size_t)n_src, sizeof *k.worlds);
        k.scen = calloc((size_t)n_src, sizeof *k.scen);
#pragma omp for schedule(dynamic, 1)
        for (int i = 0; i < n_ep; i++) {
            ew_eval_episode *e = &out->per[i];
            if (i % nranks != rank) continue;
            if (!k.worlds || !k.scen) {
                e->m.status = EW_EP_ERROR;
                snprintf(e->m.error, sizeof e->m.error, "out of memory");
            } else {
                run_episode(&P, &k, i, e);
            }
#pragma omp critical(ew_eval_progress)
            {
                done_count++;
                if (o->progress) o->progress(o->progress_ctx, done_count, n_mine);
            }
        }
        worker_free(&k);
    }
    if (nranks > 1) { /* the caller gathers and summarises */
        rc = 0;
        goto done;
    }
    rc = ew_eval_summarize(out, err, errlen);
done:
    for (int f = 0; f < P.n_files; f++) free(P.files[f]);
    free(P.files);
    return rc;
}

static void jnum(FILE *out, const char *key, double v) {
    if (isfinite(v)) fprintf(out, ", \"%s\": %.6g", key, v);
    else fprintf(out, ", \"%s\": null", key);
}

static void jstr(FILE *out, const char *s) {
    fputc('"', out);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', out);
        if ((unsigned char)*s >= 0x20) fputc(*s, out);
    }
    fputc('"', out);
}

void ew_eval_json(const ew_eval_result *r, double wall_s, int per_episode, FILE *out) {
    fprintf(out, "{\"episodes\": %d", r->episodes);
    jnum(out, "success_rate", r->success_rate);
    jnum(out, "mean_distance_m", r->mean_distance_m);
    jnum(out, "collision_rate", r->collision_rate);
    jnum(out, "offroad_rate", r->offroad_rate);
    jnum(out, "plan_ms_per_step", r->plan_ms_per_step);
    jnum(out, "timeout_rate", r->timeout_rate);
    jnum(out, "mean_speed", r->mean_speed);
    if (wall_s >= 0.0) jnum(out, "wall_s", wall_s);
    fputs(", \"set\": ", out);
    jstr(out, r->set);
    fputs(", \"controller\": ", out);
    jstr(out, r->controller);
    fprintf(out, ", \"base_seed\": %llu, \"workers\": %d, \"ranks\": %d, \"errors\": %d",
            (unsigned long long)r->base_seed, r->workers, r->ranks > 1 ? r->ranks : 1, r->errors);
    jnum(out, "mean_skipped_vehicles", r->mean_skipped);
    if (per_episode) {
        fputs(", \"per_episode\": [", out);
        for (int i = 0; i < r->episodes; i++) {
            const ew_eval_episode *e = &r->per[i];
            fprintf(out, "%s{\"index\": %d, \"seed\": %llu, \"source\": ", i ? ", " : "", e->index,
                    (unsigned long long)e->seed);
            jstr(out, e->source ? e->source : "");
            fprintf(out, ", \"plan_calls\": %ld, \"skipped_vehicles\": %d", e->plan_calls, e->skipped);
            jnum(out, "plan_ms", e->plan_ms);
            fputs(", \"metrics\": ", out);
            ew_episode_metrics_json(&e->m, out);
            fputc('}', out);
        }
        fputc(']', out);
    }
    fputc('}', out);
}

void ew_eval_table(const ew_eval_result *r, FILE *out, int header) {
    if (header)
        fprintf(out, "%-16s %8s %8s %10s %9s %8s %8s %9s %11s\n", "controller", "episodes", "success", "distance",
                "collision", "offroad", "timeout", "speed", "plan");
    fprintf(out, "%-16s %8d %7.1f%% %8.1f m %8.1f%% %7.1f%% %7.1f%% %5.1f m/s %8.3f ms\n", r->controller, r->episodes,
            100.0 * r->success_rate, r->mean_distance_m, 100.0 * r->collision_rate, 100.0 * r->offroad_rate,
            100.0 * r->timeout_rate, r->mean_speed, r->plan_ms_per_step);
}

/* one episode on the wire (same binary on every rank: plain struct bytes) */
typedef struct {
    int index, skipped;
    long plan_calls;
    double plan_ms;
    ew_episode_metrics m;
} packed_episode;

void *ew_eval_pack(const ew_eval_result *r, int rank, int nranks, size_t *n) {
    int k = 0;
    for (int i = 0; i < r->episodes; i++) k += i % nranks == rank;
    packed_episode *p = calloc((size_t)(k ? k : 1), sizeof *p);
    *n = 0;
    if (!p) return NULL;
    k = 0;
    for (int i = 0; i < r->episodes; i++) {
        if (i % nranks != rank) continue;
        const ew_eval_episode *e = &r->per[i];
        p[k].index = i;
        p[k].skipped = e->skipped;
        p[k].plan_calls = e->plan_calls;
        p[k].plan_ms = e->plan_ms;
        p[k].m = e->m;
        k++;
    }
    *n = (size_t)k * sizeof *p;
    return p;
}

int ew_eval_unpack(ew_eval_result *r, const void *buf, size_t n, char *err, int errlen) {
    if (n % sizeof(packed_episode)) {
        set_err(err, errlen, "eval: gathered episode bytes are not whole records");
        return -1;
    }
    const unsigned char *b = buf;
    for (size_t off = 0; off < n; off += sizeof(packed_episode)) {
        packed_episode p;
        memcpy(&p, b + off, sizeof p);
        if (p.index < 0 || p.index >= r->episodes) {
            set_err(err, errlen, "eval: gathered episode index outside the set");
            return -1;
        }
        ew_eval_episode *e = &r->per[p.index];
        e->skipped = p.skipped;
        e->plan_calls = p.plan_calls;
        e->plan_ms = p.plan_ms;
        e->m = p.m;
    }
    return 0;
}
