/* run_lua.c - Lua scenario files for `egoworld run` (run_lua.h). */
#include "app/run_lua.h"

#include <stdio.h>
#include <string.h>

static int given(int argc, char **argv, const char *flag) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], flag)) return 1;
    return 0;
}

int ew_run_is_lua(const char *scenario) {
    size_t n = strlen(scenario);
    return n > 4 && !strcmp(scenario + n - 4, ".lua");
}

ew_scenario *ew_run_lua_load(const char *path, const char *read_dir, int argc, char **argv, ew_world_config *wc,
                             ew_episode_cfg *ec, const char **controller, uint64_t *seed, long *steps) {
    ew_lua_opts o;
    ew_lua_opts_default(&o);
    o.read_dir = read_dir;
    o.has_seed = given(argc, argv, "--seed");
    o.seed = *seed;
    char err[8192];
    ew_scenario *s = ew_scenario_load(path, &o, err, (int)sizeof err);
    if (!s) {
        size_t n = strcspn(err, "\n");
        fprintf(stderr, "egoworld run: %.*s\n", (int)n, err);
        if (err[n]) fprintf(stderr, "%s\n", err + n + 1);
        return NULL;
    }
    ew_episode_cfg cli = *ec;
    *wc = *ew_scenario_world_config(s);
    ew_scenario_episode_cfg(s, ec);
    if (given(argc, argv, "--n-cond")) ec->n_cond = cli.n_cond;
    if (given(argc, argv, "--goal")) ec->goal_distance = cli.goal_distance;
    if (given(argc, argv, "--steps")) ec->max_steps = cli.max_steps;
    else *steps = ec->max_steps;
    if (!given(argc, argv, "--controller")) *controller = ew_scenario_controller(s);
    *seed = ew_scenario_seed(s);
    wc->seed = *seed;
    return s;
}

void ew_run_lua_report(const ew_scenario *s) {
    const char *e = s ? ew_scenario_error(s) : NULL;
    if (e) fprintf(stderr, "egoworld run: scenario error: %s\n", e);
}
