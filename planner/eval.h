/* eval.h - the evaluation harness: a controller on a fixed, seeded, held-out episode set,
 * in parallel, with the anchor's table (success rate, mean distance, collision and off-road
 * rates, planning time per step).
 *
 * Sets (one table in eval.c, documented in docs/EVAL.md): "dense-reactive", "dense-replay",
 * "merge", and "lua:A.lua,B.lua,..." (episode i runs file i mod K). Episode i of a set uses
 * seed base_seed + i for everything random in it (the world's traffic, the recorded log of a
 * replay set, the controller's own seed), so an episode's result depends only on the set,
 * the controller and i: results are identical for any number of workers and are returned
 * ordered by episode index. Each worker thread owns its worlds and scenario states; a fresh
 * controller is created for every episode (ew_controller_create with the episode's seed), so
 * no state leaks between episodes. Base seeds are 1,000,000 and up, disjoint from the small
 * seeds used for training data.
 * Ranks (distributed evaluation, models/dist.h): with nranks > 1, ew_eval_run runs only the
 * episodes i with i % nranks == rank and leaves the summary to the caller, who gathers every
 * rank's episodes (ew_eval_pack / ew_eval_unpack) on one rank and calls ew_eval_summarize
 * there; the summary sums in episode order, so it is the same for any number of ranks.
 * Errors: ew_eval_run returns -1 with a one-line message for a bad set or controller (found
 * before any episode runs) or when an episode ended in an error (first one reported; the
 * result is still filled).
 */
#ifndef EW_PLANNER_EVAL_H
#define EW_PLANNER_EVAL_H

#include <stdint.h>
#include <stdio.h>

#include "planner/controllers.h"
#include "sim/episode.h"

typedef enum { EW_EVAL_REACTIVE = 0, EW_EVAL_REPLAY = 1, EW_EVAL_LUA = 2 } ew_eval_kind;

typedef struct {
    const char *name;
    ew_eval_kind kind;
    const char *scenario;   /* built-in scenario (sim/scenario_builtin.h) */
    uint64_t base_seed;
    int episodes;           /* default count */
    int n_cond, max_steps;  /* warm-up steps, step cap (warm-up included) */
    float goal;             /* m along x */
    int ego_lane;           /* -1: the scenario's */
    float ego_x, ego_speed; /* < 0: the scenario's */
    float density_per_km, flow_per_h; /* every main lane (<= 0: the scenario's) */
    float idm_noise, truck_share;     /* < 0: the scenario's */
    float replay_warmup_s;  /* replay: settling before the recording */
    int replay_replace_ego; /* replay: the ego takes a logged car's place (sim/replay.h) */
    const char *about;
} ew_eval_set;

const ew_eval_set *ew_eval_sets(int *n);
const ew_eval_set *ew_eval_set_find(const char *name);

typedef struct {
    const char *set;            /* a set name or "lua:FILE,FILE..." */
    const char *controller;     /* planner/controllers.h spec */
    ew_controller_opts copts;   /* seed is replaced by the episode's */
    int episodes;               /* 0: the set's default (lua sets: 10 per file) */
    int workers;                /* threads (>= 1) */
    int has_seed;               /* 1: base_seed below replaces the set's */
    uint64_t base_seed;
    const char *allow_read;     /* Lua sets: folder the scripts may read */
    int rank, nranks;           /* this process runs episodes i % nranks == rank (default 0, 1) */
    void (*progress)(void *ctx, int done, int total); /* called under a lock; may be NULL */
    void *progress_ctx;
} ew_eval_opts;

void ew_eval_opts_default(ew_eval_opts *o);

typedef struct {
    int index;
    uint64_t seed;
    const char *source;         /* scenario name or file (points into the result) */
    ew_episode_metrics m;
    double plan_ms;             /* sum of act() wall times */
    long plan_calls;
    int skipped;                /* replay: logged vehicles left out at the start */
} ew_eval_episode;

typedef struct {
    char set[256], controller[256];
    uint64_t base_seed;
    int episodes, workers, ranks, errors;
    double success_rate, collision_rate, offroad_rate, timeout_rate;
    double mean_distance_m, mean_speed, plan_ms_per_step;
    double mean_skipped;        /* replay sets */
    ew_eval_episode *per;       /* episodes entries, by index (owned) */
    char **sources;             /* owned copies of the scenario names/files */
    int n_sources;
} ew_eval_result;

int ew_eval_run(const ew_eval_opts *o, ew_eval_result *out, char *err, int errlen);
/* The summary fields from per[0..episodes) (all filled); -1 with the first failed episode in
 * err when some ended in an error. ew_eval_run calls it itself when nranks == 1. */
int ew_eval_summarize(ew_eval_result *r, char *err, int errlen);
/* The episodes of rank (of nranks) as bytes (malloc'd, *n bytes), and their copy back into
 * r->per (index, metrics, plan time, skipped; seed and source are kept). Unpack checks sizes
 * and indices: 0, or -1 with a message. */
void *ew_eval_pack(const ew_eval_result *r, int rank, int nranks, size_t *n);
int ew_eval_unpack(ew_eval_result *r, const void *buf, size_t n, char *err, int errlen);
void ew_eval_result_free(ew_eval_result *r);
/* One JSON object (no trailing newline): episodes, success_rate, mean_distance_m,
 * collision_rate, offroad_rate, plan_ms_per_step, timeout_rate, mean_speed, set, controller,
 * base_seed, workers, ranks, errors [, "per_episode": [...]]; wall_s < 0 leaves wall_s out. */
void ew_eval_json(const ew_eval_result *r, double wall_s, int per_episode, FILE *out);
/* The table: a header line and one row. */
void ew_eval_table(const ew_eval_result *r, FILE *out, int header);

#endif
