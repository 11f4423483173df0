/* worldapi.h - the Lua view of one world, shared by scenario events (`sim:...`) and by
 * World objects of Lua programs (`w:...`): reading vehicles and the ego, the road, and the
 * actions (spawn, cut_in, brake, stall, change_lane, remove, close_lane, set_speed_limit).
 * Every function is a C closure whose upvalue 1 is a light userdata pointing to an
 * ew_lua_getter: it returns the world for this call (or raises) and the index of the first
 * real argument. Lanes are numbered as in C (0 = rightmost main lane); lengths in m, speeds
 * in m/s, times in s. Situational failures (a spawn that would overlap, an unknown id)
 * return nil plus a message; wrong argument types raise errors.
 * Also the strict reader of configuration tables (road, traffic, ego, episode).
 */
#ifndef EW_LUA_WORLDAPI_H
#define EW_LUA_WORLDAPI_H

#include <stdint.h>

#include <lua.h>

#include "sim/episode.h"
#include "sim/world.h"

typedef struct {
    /* The world for the call, or raises a Lua error; *base = first argument after self. */
    ew_world *(*get)(lua_State *L, int *base);
} ew_lua_getter;

/* Sets the world functions into the table at index t as closures over getter. */
void ew_lua_world_api_register(lua_State *L, int t, const ew_lua_getter *getter);

/* Settings beyond the world config that a configuration table carries. */
typedef struct {
    char controller[64];   /* ego.controller ("idm") */
    char name[96];         /* name (the file name when absent) */
    uint64_t seed;         /* episode.seed (1) */
} ew_lua_extra;

/* Reads sections road, traffic, ego, episode of the table at idx into cfg/ec/ex (starting
 * from the defaults). Unknown fields and wrong types raise Lua errors naming the field. When
 * skip_road is set the road section must be absent (log replay supplies the road). */
void ew_lua_read_config(lua_State *L, int idx, int skip_road, ew_world_config *cfg, ew_episode_cfg *ec,
                        ew_lua_extra *ex);
/* Raises an error when the table at idx has a key not in the NULL-terminated list. */
void ew_lua_check_keys(lua_State *L, int idx, const char *what, const char *const *allowed);
/* Optional typed fields (raise on a wrong type). */
double ew_lua_optnum(lua_State *L, int idx, const char *what, const char *key, double def);
int ew_lua_optbool(lua_State *L, int idx, const char *what, const char *key, int def);

/* Pushes a vehicle table (fields: see docs/LUA_API.md) / the ego table. */
void ew_lua_push_vehicle(lua_State *L, const ew_world *w, int i);
void ew_lua_push_ego(lua_State *L, const ew_world *w);
/* Pushes the episode metrics as a table. */
void ew_lua_push_metrics(lua_State *L, const ew_episode_metrics *m);

#endif
