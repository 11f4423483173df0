/* run_lua.h - `egoworld run --scenario FILE.lua`: loading a Lua scenario (lua/scenario.h)
 * where a built-in scenario name was accepted. */
#ifndef EW_RUN_LUA_H
#define EW_RUN_LUA_H

#include <stdint.h>

#include "lua/scenario.h"
#include "sim/episode.h"
#include "sim/world.h"

/* 1 when the --scenario value names a Lua file (ends in .lua). */
int ew_run_is_lua(const char *scenario);
/* Loads the file (sandboxed, reads granted under read_dir). The scenario's settings fill wc,
 * ec (with its event hook), *controller, *seed and *steps, except those given explicitly on
 * the command line (--controller, --seed, --steps, --n-cond, --goal), which win. NULL after
 * printing "egoworld run: FILE:LINE: reason" (and the traceback) on stderr. */
ew_scenario *ew_run_lua_load(const char *path, const char *read_dir, int argc, char **argv, ew_world_config *wc,
                             ew_episode_cfg *ec, const char **controller, uint64_t *seed, long *steps);
/* Prints the failure of a scenario (message and traceback) on stderr when it failed. */
void ew_run_lua_report(const ew_scenario *s);

#endif
