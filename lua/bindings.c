/* bindings.c - the egoworld module: World, Controller, Tensor, Scenario and Log objects
 * (see bindings.h), in the style of Lua's liolib.c: one metatable per type, checked
 * arguments, explicit close plus __gc/__close. */
#include "lua/bindings.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "lua/scenario.h"
#include "lua/worldapi.h"
#include "sim/controller.h"
#include "sim/episode.h"
#include "sim/ngsim.h"
#include "sim/raster.h"
#include "sim/world.h"

#define MT_WORLD "egoworld.World"
#define MT_CTRL "egoworld.Controller"
#define MT_TENSOR "egoworld.Tensor"
#define MT_SCEN "egoworld.Scenario"
#define MT_LOG "egoworld.Log"

/* busy: an episode (egoworld.episode) is running on the object; close() then refuses, so a
 * callback cannot free what the running episode uses. __gc never meets a busy object (the
 * episode's arguments anchor it). */
typedef struct { ew_world *w; int busy; } lworld;
typedef struct { ew_controller c; int open; int busy; } lctrl;
typedef struct { ew_scenario *s; } lscen;
typedef struct { ew_ngsim *g; } llog;
typedef struct {
    int ndim;
    lua_Integer shape[4];
    lua_Integer n;
    float data[];
} ltensor;

/* ---- helpers --------------------------------------------------------------------------- */

static void *check_open(lua_State *L, int idx, const char *mt, const char *type, int is_open) {
    void *p = luaL_checkudata(L, idx, mt);
    (void)p;
    if (!is_open) luaL_error(L, "attempt to use a closed %s", type);
    return p;
}

static ew_world *check_world(lua_State *L, int idx) {
    lworld *u = luaL_checkudata(L, idx, MT_WORLD);
    if (!u->w) luaL_error(L, "attempt to use a closed World");
    return u->w;
}

static ew_world *world_get(lua_State *L, int *base) {
    *base = 2;
    return check_world(L, 1);
}
static const ew_lua_getter world_getter = {world_get};

static void new_meta(lua_State *L, const char *mt, const luaL_Reg *methods, lua_CFunction gc, lua_CFunction close,
                     lua_CFunction tostring) {
    if (!luaL_newmetatable(L, mt)) {
        lua_pop(L, 1);
        return;
    }
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    if (strcmp(mt, MT_WORLD) == 0) ew_lua_world_api_register(L, -1, &world_getter);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, close ? close : gc);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
}

/* ---- World ----------------------------------------------------------------------------- */

static int push_world(lua_State *L, const ew_world_config *cfg) {
    char err[512];
    lworld *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->w = NULL;
    u->busy = 0;
    luaL_setmetatable(L, MT_WORLD);
    u->w = ew_world_create(cfg, err, sizeof err);
    if (!u->w) return luaL_error(L, "world: %s", err);
    return 1;
}

static int l_world(lua_State *L) {
    ew_world_config cfg;
    ew_episode_cfg ec;
    ew_lua_extra ex;
    ew_world_config_default(&cfg);
    ew_episode_cfg_default(&ec);
    memset(&ex, 0, sizeof ex);
    ex.seed = 1;
    if (!lua_isnoneornil(L, 1)) {
        luaL_checktype(L, 1, LUA_TTABLE);
        static const char *const keys[] = {"road", "traffic", "ego", "episode", "name", NULL};
        ew_lua_check_keys(L, 1, "world{}", keys);
        ew_lua_read_config(L, 1, 0, &cfg, &ec, &ex);
    }
    cfg.seed = ex.seed;
    return push_world(L, &cfg);
}

static int w_gc(lua_State *L) {
    lworld *u = luaL_checkudata(L, 1, MT_WORLD);
    ew_world_destroy(u->w);
    u->w = NULL;
    return 0;
}
static int w_close(lua_State *L) {
    lworld *u = luaL_checkudata(L, 1, MT_WORLD);
    if (u->busy && u->w) return luaL_error(L, "World:close(): an episode is running on this World (close it after the episode)");
    ew_world_destroy(u->w);
    u->w = NULL;
    return 0;
}
static int w_tostring(lua_State *L) {
    lworld *u = luaL_checkudata(L, 1, MT_WORLD);
    if (!u->w) lua_pushliteral(L, "World (closed)");
    else lua_pushfstring(L, "World (%d vehicles, t = %f s)", ew_world_vehicles(u->w)->n, ew_world_time(u->w));
    return 1;
}
static int w_reset(lua_State *L) {
    ew_world *w = check_world(L, 1);
    lua_Integer seed = luaL_optinteger(L, 2, (lua_Integer)ew_world_config_of(w)->seed);
    if (seed < 0) return luaL_argerror(L, 2, "seeds are non-negative");
    ew_world_reset(w, (uint64_t)seed);
    return 0;
}
static int w_step(lua_State *L) {
    ew_world *w = check_world(L, 1);
    ew_action u = {0.0f, 0.0f};
    if (lua_istable(L, 2)) {
        u.a = (float)ew_lua_optnum(L, 2, "action", "a", 0.0);
        u.b = (float)ew_lua_optnum(L, 2, "action", "b", 0.0);
    } else {
        u.a = (float)luaL_optnumber(L, 2, 0.0);
        u.b = (float)luaL_optnumber(L, 3, 0.0);
    }
    if (!isfinite(u.a) || !isfinite(u.b)) return luaL_error(L, "step: the action must be finite");
    ew_world_step(w, &u);
    return 0;
}
static int w_idm_action(lua_State *L) {
    ew_action u;
    ew_world_ego_idm_action(check_world(L, 1), &u);
    lua_pushnumber(L, u.a);
    lua_pushnumber(L, u.b);
    return 2;
}
static int w_set_ego(lua_State *L) {
    ew_world *w = check_world(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    static const char *const keys[] = {"x", "y", "heading", "speed", NULL};
    ew_lua_check_keys(L, 2, "set_ego", keys);
    const ew_kin_state *e = ew_world_ego(w);
    double h = ew_lua_optnum(L, 2, "set_ego", "heading", atan2(e->dy, e->dx));
    ew_kin_state k = {(float)ew_lua_optnum(L, 2, "set_ego", "x", e->x), (float)ew_lua_optnum(L, 2, "set_ego", "y", e->y),
                      (float)cos(h), (float)sin(h), (float)ew_lua_optnum(L, 2, "set_ego", "speed", e->s)};
    ew_world_set_ego(w, &k);
    return 0;
}

static ltensor *new_tensor(lua_State *L, int ndim, const lua_Integer *shape) {
    lua_Integer n = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 1 || shape[d] > (1 << 24)) luaL_error(L, "tensor: dimension %d must be in [1, 2^24]", d + 1);
        n *= shape[d];
        if (n > ((lua_Integer)1 << 28)) luaL_error(L, "tensor: too many elements");
    }
    ltensor *t = lua_newuserdatauv(L, sizeof *t + sizeof(float) * (size_t)n, 0);
    t->ndim = ndim;
    t->n = n;
    for (int d = 0; d < 4; d++) t->shape[d] = d < ndim ? shape[d] : 1;
    memset(t->data, 0, sizeof(float) * (size_t)n);
    luaL_setmetatable(L, MT_TENSOR);
    return t;
}

static int w_observe(lua_State *L) {
    ew_world *w = check_world(L, 1);
    ew_raster_cfg rc;
    ew_raster_cfg_default(&rc);
    const char *format = "tensor";
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        static const char *const keys[] = {"rows", "cols", "scale", "format", NULL};
        ew_lua_check_keys(L, 2, "observe", keys);
        rc.rows = (int)ew_lua_optnum(L, 2, "observe", "rows", rc.rows);
        rc.cols = (int)ew_lua_optnum(L, 2, "observe", "cols", rc.cols);
        rc.m_per_px = (float)ew_lua_optnum(L, 2, "observe", "scale", rc.m_per_px);
        if (lua_getfield(L, 2, "format") == LUA_TSTRING) format = lua_tostring(L, -1);
        lua_pop(L, 1);
    }
    int as_table = strcmp(format, "table") == 0;
    if (!as_table && strcmp(format, "tensor") != 0) return luaL_error(L, "observe: format is \"tensor\" or \"table\"");
    char err[256];
    if (ew_raster_cfg_validate(&rc, err, sizeof err) != 0) return luaL_error(L, "observe: %s", err);
    size_t n = (size_t)EW_RASTER_CHANNELS * (size_t)rc.rows * (size_t)rc.cols;
    /* the byte buffer lives in a Lua userdata so an error cannot leak it */
    uint8_t *buf = lua_newuserdatauv(L, n, 0);
    if (ew_raster_world(&rc, w, buf, err, sizeof err) != 0) return luaL_error(L, "observe: %s", err);
    if (!as_table) {
        lua_Integer shape[3] = {EW_RASTER_CHANNELS, rc.rows, rc.cols};
        ltensor *t = new_tensor(L, 3, shape);
        for (size_t i = 0; i < n; i++) t->data[i] = buf[i] * (1.0f / 255.0f);
        return 1;
    }
    lua_createtable(L, EW_RASTER_CHANNELS, 0);
    for (int c = 0; c < EW_RASTER_CHANNELS; c++) {
        lua_createtable(L, rc.rows, 0);
        for (int r = 0; r < rc.rows; r++) {
            lua_createtable(L, rc.cols, 0);
            for (int k = 0; k < rc.cols; k++) {
                lua_pushnumber(L, buf[((size_t)c * rc.rows + r) * rc.cols + k] * (1.0 / 255.0));
                lua_rawseti(L, -2, k + 1);
            }
            lua_rawseti(L, -2, r + 1);
        }
        lua_rawseti(L, -2, c + 1);
    }
    return 1;
}

static const luaL_Reg world_methods[] = {{"close", w_close},   {"reset", w_reset},         {"step", w_step},
                                         {"observe", w_observe}, {"idm_action", w_idm_action}, {"set_ego", w_set_ego},
                                         {NULL, NULL}};

/* ---- Controller -------------------------------------------------------------------------- */

static lctrl *check_ctrl(lua_State *L, int idx) {
    lctrl *c = luaL_checkudata(L, idx, MT_CTRL);
    check_open(L, idx, MT_CTRL, "Controller", c->open);
    return c;
}
static int l_controller(lua_State *L) {
    const char *name = luaL_checkstring(L, 1);
    lctrl *c = lua_newuserdatauv(L, sizeof *c, 0);
    memset(c, 0, sizeof *c);
    luaL_setmetatable(L, MT_CTRL);
    char err[256];
    if (ew_controller_builtin(name, &c->c, err, sizeof err) != 0) return luaL_error(L, "controller: %s", err);
    c->open = 1;
    return 1;
}
static int c_gc(lua_State *L) {
    lctrl *c = luaL_checkudata(L, 1, MT_CTRL);
    if (c->open) ew_controller_destroy(&c->c);
    c->open = 0;
    return 0;
}
static int c_close(lua_State *L) {
    lctrl *c = luaL_checkudata(L, 1, MT_CTRL);
    if (c->busy && c->open)
        return luaL_error(L, "Controller:close(): an episode is running with this Controller (close it after the episode)");
    if (c->open) ew_controller_destroy(&c->c);
    c->open = 0;
    return 0;
}
static int c_tostring(lua_State *L) {
    lctrl *c = luaL_checkudata(L, 1, MT_CTRL);
    lua_pushfstring(L, "Controller (%s)", c->open ? c->c.name : "closed");
    return 1;
}
static int c_act(lua_State *L) {
    lctrl *c = check_ctrl(L, 1);
    ew_world *w = check_world(L, 2);
    ew_action u;
    char err[256];
    if (ew_controller_act(&c->c, w, &u, err, sizeof err) != 0) return luaL_error(L, "controller %s: %s", c->c.name, err);
    lua_pushnumber(L, u.a);
    lua_pushnumber(L, u.b);
    return 2;
}
static int c_reset(lua_State *L) {
    lctrl *c = check_ctrl(L, 1);
    ew_world *w = check_world(L, 2);
    if (c->c.reset) c->c.reset(c->c.ctx, w);
    return 0;
}
static int c_name(lua_State *L) {
    lua_pushstring(L, check_ctrl(L, 1)->c.name);
    return 1;
}
static const luaL_Reg ctrl_methods[] = {{"close", c_close}, {"act", c_act}, {"reset", c_reset}, {"name", c_name},
                                        {NULL, NULL}};

/* ---- episodes ----------------------------------------------------------------------------- */

typedef struct { lua_State *L; int world, fn; } ep_hook_ctx;

static int ep_hook(void *ctx, ew_world *w, ew_episode *ep, char *label, int labellen, char *err, int errlen) {
    (void)w;
    ep_hook_ctx *h = ctx;
    lua_State *L = h->L;
    lua_pushvalue(L, h->fn);
    lua_pushvalue(L, h->world);
    lua_pushinteger(L, ep->m.steps);
    if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
        /* no conversion here (it could raise outside the protected call) */
        if (lua_type(L, -1) == LUA_TSTRING) snprintf(err, (size_t)errlen, "%s", lua_tostring(L, -1));
        else snprintf(err, (size_t)errlen, "episode.on_step: (error object is a %s value)", luaL_typename(L, -1));
        lua_pop(L, 1);
        return -1;
    }
    int end = lua_type(L, -1) == LUA_TSTRING;
    if (end) snprintf(label, (size_t)labellen, "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
    return end;
}

static int l_episode(lua_State *L) {
    ew_world *w = check_world(L, 1);
    lworld *wu = lua_touserdata(L, 1);
    if (wu->busy) return luaL_error(L, "episode: an episode is running on this World already");
    lctrl *c = NULL;
    ew_controller tmp;
    int own = 0;
    if (lua_type(L, 2) == LUA_TSTRING) {
        own = 1; /* made after the options are read: nothing to free if they raise */
    } else {
        c = check_ctrl(L, 2);
    }
    ew_episode_cfg ec;
    ew_episode_cfg_default(&ec);
    ep_hook_ctx h = {L, 1, 0};
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        static const char *const keys[] = {"n_cond", "steps", "goal", "collision_tol", "on_step", NULL};
        ew_lua_check_keys(L, 3, "episode", keys);
        ec.n_cond = (int)ew_lua_optnum(L, 3, "episode", "n_cond", ec.n_cond);
        ec.max_steps = (int)ew_lua_optnum(L, 3, "episode", "steps", ec.max_steps);
        ec.goal_distance = (float)ew_lua_optnum(L, 3, "episode", "goal", ec.goal_distance);
        ec.collision_tol = (float)ew_lua_optnum(L, 3, "episode", "collision_tol", ec.collision_tol);
        int t = lua_getfield(L, 3, "on_step");
        if (t == LUA_TFUNCTION) {
            h.fn = lua_gettop(L);
            ec.hook = ep_hook;
            ec.hook_ctx = &h;
        } else if (t != LUA_TNIL) {
            return luaL_error(L, "episode.on_step must be a function");
        } else {
            lua_pop(L, 1);
        }
    }
    if (ec.n_cond < 0 || ec.max_steps < 1 || !(ec.goal_distance > 0.0f))
        return luaL_error(L, "episode: n_cond >= 0, steps >= 1 and goal > 0 are required");
    /* the options' metamethods may have closed the world or the controller: check again */
    w = check_world(L, 1);
    if (!own) c = check_ctrl(L, 2);
    if (c && c->busy) return luaL_error(L, "episode: an episode is running with this Controller already");
    if (own) {
        char err[256];
        if (ew_controller_builtin(lua_tostring(L, 2), &tmp, err, sizeof err) != 0)
            return luaL_error(L, "episode: %s", err);
    }
    ew_controller *ctrl = own ? &tmp : &c->c;
    /* nothing below raises until busy is cleared (ep_hook catches every error of on_step) */
    wu->busy = 1;
    if (c) c->busy = 1;
    if (ctrl->reset) ctrl->reset(ctrl->ctx, w);
    ew_episode ep;
    ew_episode_begin(&ep, &ec, w);
    while (ew_episode_step(&ep, w, ctrl)) {
    }
    wu->busy = 0;
    if (c) c->busy = 0;
    if (own) ew_controller_destroy(&tmp);
    ew_lua_push_metrics(L, &ep.m);
    return 1;
}

/* ---- Tensor ------------------------------------------------------------------------------- */

static ltensor *check_tensor(lua_State *L, int idx) { return luaL_checkudata(L, idx, MT_TENSOR); }

static int l_tensor(lua_State *L) {
    int nd = lua_gettop(L);
    if (nd < 1 || nd > 4) return luaL_error(L, "tensor.new: 1 to 4 dimensions");
    lua_Integer shape[4];
    for (int d = 0; d < nd; d++) shape[d] = luaL_checkinteger(L, d + 1);
    new_tensor(L, nd, shape);
    return 1;
}
static lua_Integer flat_index(lua_State *L, ltensor *t, int first) {
    if (lua_gettop(L) - first + 1 < t->ndim) luaL_error(L, "tensor: %d indices needed", t->ndim);
    lua_Integer off = 0;
    for (int d = 0; d < t->ndim; d++) {
        lua_Integer i = luaL_checkinteger(L, first + d);
        if (i < 1 || i > t->shape[d]) luaL_error(L, "tensor: index %d = %d out of [1, %d]", d + 1, (int)i, (int)t->shape[d]);
        off = off * t->shape[d] + (i - 1);
    }
    return off;
}
static int t_get(lua_State *L) {
    ltensor *t = check_tensor(L, 1);
    lua_pushnumber(L, t->data[flat_index(L, t, 2)]);
    return 1;
}
static int t_set(lua_State *L) {
    ltensor *t = check_tensor(L, 1);
    lua_Integer off = flat_index(L, t, 2);
    t->data[off] = (float)luaL_checknumber(L, 2 + t->ndim);
    return 0;
}
static int t_shape(lua_State *L) {
    ltensor *t = check_tensor(L, 1);
    lua_createtable(L, t->ndim, 0);
    for (int d = 0; d < t->ndim; d++) {
        lua_pushinteger(L, t->shape[d]);
        lua_rawseti(L, -2, d + 1);
    }
    return 1;
}
static int t_numel(lua_State *L) {
    lua_pushinteger(L, check_tensor(L, 1)->n);
    return 1;
}
static int t_reduce(lua_State *L, int op) {
    ltensor *t = check_tensor(L, 1);
    double acc = op == 0 ? 0.0 : t->data[0];
    for (lua_Integer i = 0; i < t->n; i++) {
        double v = t->data[i];
        if (op == 0) acc += v;
        else if (op == 1 && v < acc) acc = v;
        else if (op == 2 && v > acc) acc = v;
    }
    lua_pushnumber(L, acc);
    return 1;
}
static int t_sum(lua_State *L) { return t_reduce(L, 0); }
static int t_min(lua_State *L) { return t_reduce(L, 1); }
static int t_max(lua_State *L) { return t_reduce(L, 2); }
static int t_fill(lua_State *L) {
    ltensor *t = check_tensor(L, 1);
    float v = (float)luaL_checknumber(L, 2);
    for (lua_Integer i = 0; i < t->n; i++) t->data[i] = v;
    return 0;
}
static void totable_rec(lua_State *L, ltensor *t, int d, lua_Integer *off) {
    lua_createtable(L, (int)t->shape[d], 0);
    for (lua_Integer i = 1; i <= t->shape[d]; i++) {
        if (d + 1 >= t->ndim || d >= 3) lua_pushnumber(L, t->data[(*off)++]);
        else totable_rec(L, t, d + 1, off);
        lua_rawseti(L, -2, i);
    }
}
static int t_totable(lua_State *L) {
    ltensor *t = check_tensor(L, 1);
    lua_Integer off = 0;
    totable_rec(L, t, 0, &off);
    return 1;
}
static int t_len(lua_State *L) { return t_numel(L); }
static int t_gc(lua_State *L) {
    (void)L; /* memory lives in the userdata itself */
    return 0;
}
static int t_tostring(lua_State *L) {
    ltensor *t = check_tensor(L, 1);
    char s[96];
    int n = snprintf(s, sizeof s, "Tensor(");
    for (int d = 0; d < t->ndim; d++) n += snprintf(s + n, sizeof s - (size_t)n, d ? "x%d" : "%d", (int)t->shape[d]);
    snprintf(s + n, sizeof s - (size_t)n, ")");
    lua_pushstring(L, s);
    return 1;
}
static const luaL_Reg tensor_methods[] = {{"get", t_get}, {"set", t_set},   {"shape", t_shape}, {"numel", t_numel},
                                          {"sum", t_sum}, {"min", t_min},   {"max", t_max},     {"fill", t_fill},
                                          {"totable", t_totable}, {NULL, NULL}};

/* ---- Scenario ----------------------------------------------------------------------------- */

static ew_scenario *check_scen(lua_State *L, int idx) {
    lscen *u = luaL_checkudata(L, idx, MT_SCEN);
    if (!u->s) luaL_error(L, "attempt to use a closed Scenario");
    return u->s;
}

static int l_scenario_load(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    ew_lua_opts o;
    ew_lua_opts_default(&o);
    ew_lua_vm *vm = ew_lua_vm_of(L);
    const ew_lua_opts *mine = ew_lua_vm_opts(vm);
    o.read_dir = mine->read_dir; /* a scenario gets at most what the program was granted */
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        static const char *const keys[] = {"budget", "callback_budget", "mem_mb", "seed", NULL};
        ew_lua_check_keys(L, 2, "scenario.load", keys);
        o.budget_load = (long long)ew_lua_optnum(L, 2, "scenario.load", "budget", (double)o.budget_load);
        o.budget_callback = (long long)ew_lua_optnum(L, 2, "scenario.load", "callback_budget", (double)o.budget_callback);
        double mb = ew_lua_optnum(L, 2, "scenario.load", "mem_mb", (double)(o.mem_cap >> 20));
        if (!(mb >= 1.0 && mb <= 65536.0)) return luaL_error(L, "scenario.load: mem_mb must be in [1, 65536]");
        o.mem_cap = (size_t)mb << 20;
        double seed = ew_lua_optnum(L, 2, "scenario.load", "seed", -1.0);
        if (seed >= 0.0) {
            o.has_seed = 1;
            o.seed = (uint64_t)seed;
        }
    }
    if (mine->sandbox) {
        char rp[PATH_MAX];
        if (!ew_lua_vm_may_read(vm, path, rp, sizeof rp))
            return luaL_error(L, "scenario.load: '%s' is not readable under the granted folder", path);
    }
    lscen *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->s = NULL;
    luaL_setmetatable(L, MT_SCEN);
    char err[4096];
    u->s = ew_scenario_load(path, &o, err, sizeof err);
    if (!u->s) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    return 1;
}
static int s_close(lua_State *L) {
    lscen *u = luaL_checkudata(L, 1, MT_SCEN);
    ew_scenario_destroy(u->s);
    u->s = NULL;
    return 0;
}
static int s_tostring(lua_State *L) {
    lscen *u = luaL_checkudata(L, 1, MT_SCEN);
    lua_pushfstring(L, "Scenario (%s)", u->s ? ew_scenario_name(u->s) : "closed");
    return 1;
}
static void push_script_metrics(lua_State *L, const ew_scenario *s) {
    int n = ew_scenario_n_metrics(s);
    lua_createtable(L, 0, n);
    for (int k = 0; k < n; k++) {
        int kind;
        double v;
        const char *str;
        const char *name = ew_scenario_metric_at(s, k, &kind, &v, &str);
        if (kind == 0) lua_pushnumber(L, v);
        else if (kind == 1) lua_pushboolean(L, v != 0.0);
        else lua_pushstring(L, str);
        lua_setfield(L, -2, name);
    }
}
static int s_run(lua_State *L) {
    ew_scenario *s = check_scen(L, 1);
    const char *ctrl = NULL;
    uint64_t seed = ew_scenario_seed(s);
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        static const char *const keys[] = {"controller", "seed", NULL};
        ew_lua_check_keys(L, 2, "run", keys);
        if (lua_getfield(L, 2, "controller") == LUA_TSTRING) ctrl = lua_tostring(L, -1);
        lua_pop(L, 1);
        double sd = ew_lua_optnum(L, 2, "run", "seed", (double)seed);
        if (sd < 0) return luaL_error(L, "run: seed must be >= 0");
        seed = (uint64_t)sd;
    }
    ew_episode_metrics m;
    char err[4096];
    if (ew_scenario_run(s, ctrl, seed, &m, NULL, err, sizeof err) != 0) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    ew_lua_push_metrics(L, &m);
    push_script_metrics(L, s);
    lua_setfield(L, -2, "script");
    return 1;
}
static int s_world(lua_State *L) {
    ew_scenario *s = check_scen(L, 1);
    return push_world(L, ew_scenario_world_config(s));
}
static int s_info(lua_State *L) {
    ew_scenario *s = check_scen(L, 1);
    lua_createtable(L, 0, 5);
    lua_pushstring(L, ew_scenario_name(s));
    lua_setfield(L, -2, "name");
    lua_pushstring(L, ew_scenario_controller(s));
    lua_setfield(L, -2, "controller");
    lua_pushinteger(L, ew_scenario_steps(s));
    lua_setfield(L, -2, "steps");
    lua_pushinteger(L, (lua_Integer)ew_scenario_seed(s));
    lua_setfield(L, -2, "seed");
    lua_pushboolean(L, ew_scenario_has_replay(s));
    lua_setfield(L, -2, "replay");
    return 1;
}
static int s_error(lua_State *L) {
    const char *e = ew_scenario_error(check_scen(L, 1));
    if (!e) return 0;
    lua_pushstring(L, e);
    return 1;
}
static const luaL_Reg scen_methods[] = {{"close", s_close}, {"run", s_run}, {"world", s_world}, {"info", s_info},
                                        {"error", s_error}, {NULL, NULL}};

/* ---- Log (NGSIM) -------------------------------------------------------------------------- */

static ew_ngsim *check_log(lua_State *L, int idx) {
    llog *u = luaL_checkudata(L, idx, MT_LOG);
    if (!u->g) luaL_error(L, "attempt to use a closed Log");
    return u->g;
}
static int l_ngsim_load(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    ew_ngsim_opts o;
    ew_ngsim_opts_default(&o);
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        static const char *const keys[] = {"smoothing", "lanes", "lane_width_ft", "road_width_ft", "x_offset", NULL};
        ew_lua_check_keys(L, 2, "ngsim.load", keys);
        o.smooth_window = (float)ew_lua_optnum(L, 2, "ngsim.load", "smoothing", o.smooth_window);
        o.n_main = (int)ew_lua_optnum(L, 2, "ngsim.load", "lanes", 0);
        o.lane_width_ft = (float)ew_lua_optnum(L, 2, "ngsim.load", "lane_width_ft", o.lane_width_ft);
        o.road_width_ft = (float)ew_lua_optnum(L, 2, "ngsim.load", "road_width_ft", 0.0);
        o.x_offset = (float)ew_lua_optnum(L, 2, "ngsim.load", "x_offset", 0.0);
    }
    ew_lua_vm *vm = ew_lua_vm_of(L);
    char rp[PATH_MAX];
    const char *use = path;
    if (ew_lua_vm_opts(vm)->sandbox) {
        if (!ew_lua_vm_may_read(vm, path, rp, sizeof rp))
            return luaL_error(L, "ngsim.load: '%s' is not readable under the granted folder", path);
        use = rp;
    }
    llog *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->g = NULL;
    luaL_setmetatable(L, MT_LOG);
    char err[512];
    u->g = ew_ngsim_load(use, &o, err, sizeof err);
    if (!u->g) return luaL_error(L, "ngsim.load: %s", err);
    return 1;
}
static int g_close(lua_State *L) {
    llog *u = luaL_checkudata(L, 1, MT_LOG);
    ew_ngsim_free(u->g);
    u->g = NULL;
    return 0;
}
static int g_tostring(lua_State *L) {
    llog *u = luaL_checkudata(L, 1, MT_LOG);
    if (!u->g) lua_pushliteral(L, "Log (closed)");
    else lua_pushfstring(L, "Log (%d vehicles, %d rows)", u->g->n_tracks, u->g->n_rows);
    return 1;
}
static int g_vehicles(lua_State *L) {
    ew_ngsim *g = check_log(L, 1);
    lua_createtable(L, g->n_tracks, 0);
    for (int i = 0; i < g->n_tracks; i++) {
        lua_pushinteger(L, g->tracks[i].vid);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}
static int g_frames(lua_State *L) {
    ew_ngsim *g = check_log(L, 1);
    lua_pushinteger(L, g->frame_min);
    lua_pushinteger(L, g->frame_max);
    return 2;
}
static int g_track(lua_State *L) {
    ew_ngsim *g = check_log(L, 1);
    lua_Integer vid = luaL_checkinteger(L, 2);
    int i = vid > 0 && vid <= UINT32_MAX ? ew_ngsim_find(g, (uint32_t)vid) : -1;
    if (i < 0) return 0;
    const ew_ngsim_track *tr = &g->tracks[i];
    static const char *const tn[EW_VT_COUNT] = {"car", "truck", "moto"};
    lua_createtable(L, 0, 6);
    lua_pushinteger(L, tr->vid);
    lua_setfield(L, -2, "vid");
    lua_pushnumber(L, tr->length);
    lua_setfield(L, -2, "length");
    lua_pushnumber(L, tr->width);
    lua_setfield(L, -2, "width");
    lua_pushstring(L, tn[tr->type]);
    lua_setfield(L, -2, "type");
    lua_createtable(L, tr->n, 0);
    for (int k = 0; k < tr->n; k++) {
        const ew_ngsim_sample *s = &tr->s[k];
        lua_createtable(L, 0, 9);
        lua_pushinteger(L, s->frame);
        lua_setfield(L, -2, "frame");
        lua_pushnumber(L, s->frame * (double)g->opts.frame_dt);
        lua_setfield(L, -2, "t");
        lua_pushnumber(L, s->x);
        lua_setfield(L, -2, "x");
        lua_pushnumber(L, s->y);
        lua_setfield(L, -2, "y");
        lua_pushnumber(L, s->hx);
        lua_setfield(L, -2, "hx");
        lua_pushnumber(L, s->hy);
        lua_setfield(L, -2, "hy");
        lua_pushnumber(L, s->v);
        lua_setfield(L, -2, "speed");
        lua_pushnumber(L, s->v_file);
        lua_setfield(L, -2, "speed_logged");
        lua_pushinteger(L, s->lane);
        lua_setfield(L, -2, "lane");
        lua_rawseti(L, -2, k + 1);
    }
    lua_setfield(L, -2, "samples");
    return 1;
}
static const luaL_Reg log_methods[] = {{"close", g_close}, {"vehicles", g_vehicles}, {"frames", g_frames},
                                       {"track", g_track}, {NULL, NULL}};

/* ---- the module ---------------------------------------------------------------------------- */

int ew_lua_open_egoworld(lua_State *L) {
    new_meta(L, MT_WORLD, world_methods, w_gc, w_close, w_tostring);
    new_meta(L, MT_CTRL, ctrl_methods, c_gc, c_close, c_tostring);
    new_meta(L, MT_TENSOR, tensor_methods, t_gc, NULL, t_tostring);
    luaL_getmetatable(L, MT_TENSOR);
    lua_pushcfunction(L, t_len);
    lua_setfield(L, -2, "__len");
    lua_pop(L, 1);
    new_meta(L, MT_SCEN, scen_methods, s_close, NULL, s_tostring);
    new_meta(L, MT_LOG, log_methods, g_close, NULL, g_tostring);
    lua_newtable(L);
    lua_pushliteral(L, "0.1");
    lua_setfield(L, -2, "version");
    static const luaL_Reg sim[] = {{"world", l_world}, {"controller", l_controller}, {"episode", l_episode}, {NULL, NULL}};
    lua_newtable(L);
    luaL_setfuncs(L, sim, 0);
    for (const luaL_Reg *r = sim; r->name; r++) {
        lua_getfield(L, -1, r->name);
        lua_setfield(L, -3, r->name);
    }
    lua_setfield(L, -2, "sim");
    lua_newtable(L);
    lua_pushcfunction(L, l_tensor);
    lua_setfield(L, -2, "new");
    lua_setfield(L, -2, "tensor");
    lua_newtable(L);
    lua_pushcfunction(L, l_scenario_load);
    lua_setfield(L, -2, "load");
    lua_setfield(L, -2, "scenario");
    lua_newtable(L);
    lua_pushcfunction(L, l_ngsim_load);
    lua_setfield(L, -2, "load");
    lua_setfield(L, -2, "ngsim");
    return 1;
}

static int install(lua_State *L) {
    ew_lua_open_egoworld(L);
    lua_pushvalue(L, -1);
    lua_setglobal(L, "egoworld");
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "egoworld");
    return 0;
}

int ew_lua_run_program(const char *path, const ew_lua_opts *o, char *err, int errlen) {
    ew_lua_vm *vm = ew_lua_vm_create(o, err, errlen);
    if (!vm) return -1;
    lua_State *L = ew_lua_vm_state(vm);
    lua_pushcfunction(L, install);
    int rc = ew_lua_vm_pcall(vm, 0, 0, 0, err, errlen);
    if (rc == 0) rc = ew_lua_vm_loadfile(vm, path, err, errlen);
    if (rc == 0) rc = ew_lua_vm_pcall(vm, 0, 0, o ? o->budget_load : 0, err, errlen);
    ew_lua_vm_destroy(vm);
    return rc;
}
