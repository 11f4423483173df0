/* bindings.h - the `egoworld` Lua module for headless programs (`egoworld lua SCRIPT.lua`).
 *
 * egoworld.sim       world(cfg) -> World, controller(name) -> Controller,
 *                    episode(world, controller, opts) -> metrics
 * egoworld.tensor    new(d1, ..., dk) -> Tensor (float32, k <= 4, zeros)
 * egoworld.scenario  load(path, opts) -> Scenario | nil, message
 * egoworld.ngsim     load(path, opts) -> Log
 * egoworld.world / controller / episode are shortcuts to the sim functions. Later modules
 * (models, planner) add submodules to the same table.
 * Every C object is a userdata with one metatable (egoworld.World, egoworld.Controller,
 * egoworld.Tensor, egoworld.Scenario, egoworld.Log): arguments are checked, :close() frees it
 * at once (a second close does nothing), __gc and __close free it otherwise, and a method on
 * a closed object raises "attempt to use a closed <Type>". Reference: docs/LUA_API.md.
 */
#ifndef EW_LUA_BINDINGS_H
#define EW_LUA_BINDINGS_H

#include <lua.h>

#include "lua/vm.h"

/* Pushes the module table (creating the metatables on first use in this state). */
int ew_lua_open_egoworld(lua_State *L);
/* Runs a program file in a fresh state with `egoworld` as a global and in package.preload,
 * `args` holding its arguments. Returns 0, or -1 with "FILE:LINE: message" and a traceback. */
int ew_lua_run_program(const char *path, const ew_lua_opts *o, char *err, int errlen);

#endif
