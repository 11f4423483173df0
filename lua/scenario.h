/* scenario.h - Lua scenario files: load (sandboxed), configure a world and an episode, run
 * the scripted events through the episode hook, collect the script's metrics.
 *
 * A scenario owns its own Lua state (lua/vm.h): a runaway loop, a memory bomb or an error in
 * one scenario ends that scenario only. The file either returns a table with the sections
 * road, traffic, ego, episode, replay (and name), or calls the builder functions of the same
 * names; events are registered with at(), when(), every() and on_step(); the full API is in
 * docs/LUA_API.md.
 *
 * Life cycle: ew_scenario_load() -> ew_world_create(ew_scenario_world_config()) ->
 * ew_world_reset(seed) -> ew_scenario_begin() -> ew_episode_begin(ew_scenario_episode_cfg())
 * -> ew_episode_step()... The hook runs the log replay (when the scenario has one) and then
 * the events due at the current time, before each world step. Each callback (a `when`
 * condition included) has the budget_callback instruction budget; all callbacks of one step
 * together at most 10 times that (events registered by a callback run in the same step). After an error in a script the
 * scenario is failed: the hook and ew_scenario_begin() return -1, ew_scenario_error() holds
 * "FILE:LINE: message" and the traceback. The scenario may be run again after a success
 * (begin resets the events; events registered inside callbacks are dropped).
 */
#ifndef EW_LUA_SCENARIO_H
#define EW_LUA_SCENARIO_H

#include <stdint.h>
#include <stdio.h>

#include "lua/vm.h"
#include "sim/episode.h"
#include "sim/world.h"

typedef struct ew_scenario ew_scenario;

/* Loads and runs the scenario file (budget_load instructions) and reads its configuration.
 * NULL with a message ("FILE:LINE: ..." plus a traceback for script errors) on failure. */
ew_scenario *ew_scenario_load(const char *path, const ew_lua_opts *o, char *err, int errlen);
/* The same for a script in memory (name stands for the file in messages; NULL: "<buffer>");
 * files it reads (dofile, replay.file) still go through the granted folder. */
ew_scenario *ew_scenario_load_buffer(const char *text, size_t len, const char *name, const ew_lua_opts *o,
                                     char *err, int errlen);
void ew_scenario_destroy(ew_scenario *s);

const ew_world_config *ew_scenario_world_config(const ew_scenario *s);
/* The episode settings with hook = ew_scenario_hook and hook_ctx = s. */
void ew_scenario_episode_cfg(ew_scenario *s, ew_episode_cfg *out);
const char *ew_scenario_controller(const ew_scenario *s);
const char *ew_scenario_name(const ew_scenario *s);
int ew_scenario_steps(const ew_scenario *s);
uint64_t ew_scenario_seed(const ew_scenario *s);
int ew_scenario_has_replay(const ew_scenario *s);

/* After ew_world_reset() of a world made from the scenario's config, before ew_episode_begin(). */
int ew_scenario_begin(ew_scenario *s, ew_world *w, char *err, int errlen);
/* The episode hook (ctx = the scenario). err receives the first line of the message. */
int ew_scenario_hook(void *ctx, ew_world *w, ew_episode *ep, char *label, int labellen, char *err, int errlen);

/* The failure message with its traceback, or NULL. */
const char *ew_scenario_error(const ew_scenario *s);
/* Script metrics (metric(name, value)): one JSON object, in the order first reported. */
void ew_scenario_metrics_json(const ew_scenario *s, FILE *out);
/* A numeric (or boolean: 0/1) metric by name: 0 when found. */
int ew_scenario_metric(const ew_scenario *s, const char *name, double *out);
int ew_scenario_n_metrics(const ew_scenario *s);
/* Metric k (0 <= k < n): its name, kind (0 number, 1 boolean, 2 string) and value. */
const char *ew_scenario_metric_at(const ew_scenario *s, int k, int *kind, double *num, const char **str);
/* How many event callbacks have run since begin. */
int64_t ew_scenario_events_fired(const ew_scenario *s);

/* Convenience: world from the config, reset(seed), begin, one episode with the controller
 * (NULL: the scenario's) to the end. Returns 0 and the metrics (status EW_EP_ERROR when a
 * script failed: then also -1 with the message), or -1 when nothing could run. The world is
 * handed back in *world_out when non-NULL (caller destroys), else destroyed. */
int ew_scenario_run(ew_scenario *s, const char *controller, uint64_t seed, ew_episode_metrics *m,
                    ew_world **world_out, char *err, int errlen);

#endif
