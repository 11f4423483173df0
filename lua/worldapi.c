/* worldapi.c - Lua functions over one world, and the configuration-table reader (worldapi.h). */
#include "lua/worldapi.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>

#include "sim/road.h"

static const char *const type_names[EW_VT_COUNT] = {"car", "truck", "moto"};

/* ---- small typed readers ----------------------------------------------------------- */

void ew_lua_check_keys(lua_State *L, int idx, const char *what, const char *const *allowed) {
    idx = lua_absindex(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING) {
            if (lua_isinteger(L, -1)) continue; /* array part (lists) */
            luaL_error(L, "%s: keys must be names", what);
        }
        const char *k = lua_tostring(L, -1);
        int ok = 0;
        for (int i = 0; allowed[i]; i++)
            if (strcmp(k, allowed[i]) == 0) ok = 1;
        if (!ok) {
            luaL_Buffer b;
            luaL_buffinit(L, &b);
            for (int i = 0; allowed[i]; i++) {
                if (i) luaL_addstring(&b, ", ");
                luaL_addstring(&b, allowed[i]);
            }
            luaL_pushresult(&b);
            luaL_error(L, "%s: unknown field '%s' (known: %s)", what, k, lua_tostring(L, -1));
        }
    }
}

double ew_lua_optnum(lua_State *L, int idx, const char *what, const char *key, double def) {
    int t = lua_getfield(L, idx, key);
    double v = def;
    if (t != LUA_TNIL) {
        if (t != LUA_TNUMBER) luaL_error(L, "%s.%s must be a number (got %s)", what, key, lua_typename(L, t));
        v = lua_tonumber(L, -1);
        if (!isfinite(v)) luaL_error(L, "%s.%s must be finite", what, key);
    }
    lua_pop(L, 1);
    return v;
}

int ew_lua_optbool(lua_State *L, int idx, const char *what, const char *key, int def) {
    int t = lua_getfield(L, idx, key);
    int v = def;
    if (t != LUA_TNIL) {
        if (t != LUA_TBOOLEAN) luaL_error(L, "%s.%s must be a boolean", what, key);
        v = lua_toboolean(L, -1);
    }
    lua_pop(L, 1);
    return v;
}

static int optint(lua_State *L, int idx, const char *what, const char *key, int def, int lo, int hi) {
    double v = ew_lua_optnum(L, idx, what, key, def);
    if (v != floor(v) || v < lo || v > hi) luaL_error(L, "%s.%s must be an integer in [%d, %d]", what, key, lo, hi);
    return (int)v;
}

/* Pushes t[key] when it is a table (returns 1) or nothing (0); other types raise. */
static int opttable(lua_State *L, int idx, const char *what, const char *key) {
    int t = lua_getfield(L, idx, key);
    if (t == LUA_TTABLE) return 1;
    if (t != LUA_TNIL) luaL_error(L, "%s.%s must be a table", what, key);
    lua_pop(L, 1);
    return 0;
}

static void road_call(lua_State *L, int rc, const char *err) {
    if (rc != 0) luaL_error(L, "%s", err);
}

/* A number for every lane or a list indexed by lane + 1. */
static void per_lane(lua_State *L, int idx, const char *what, const char *key, int n_main, int n_lanes, float *out,
                     float lo, float hi) {
    int t = lua_getfield(L, idx, key);
    if (t == LUA_TNUMBER) {
        float v = (float)lua_tonumber(L, -1);
        if (!(v >= lo && v <= hi)) luaL_error(L, "%s.%s must be in [%g, %g]", what, key, (double)lo, (double)hi);
        for (int l = 0; l < n_main; l++) out[l] = v;
    } else if (t == LUA_TTABLE) {
        int n = (int)lua_rawlen(L, -1);
        if (n > n_lanes) luaL_error(L, "%s.%s lists %d lanes, the road has %d", what, key, n, n_lanes);
        for (int l = 0; l < n; l++) {
            if (lua_rawgeti(L, -1, l + 1) != LUA_TNUMBER) luaL_error(L, "%s.%s[%d] must be a number", what, key, l + 1);
            float v = (float)lua_tonumber(L, -1);
            if (!(v >= lo && v <= hi)) luaL_error(L, "%s.%s[%d] must be in [%g, %g]", what, key, l + 1, (double)lo, (double)hi);
            out[l] = v;
            lua_pop(L, 1);
        }
    } else if (t != LUA_TNIL) {
        luaL_error(L, "%s.%s must be a number or a list (one per lane)", what, key);
    }
    lua_pop(L, 1);
}

static void read_ramp(lua_State *L, ew_road *r, int on, char *err, int errlen) {
    static const char *const on_keys[] = {"x_start", "merge_end", "taper", "speed_limit", NULL};
    static const char *const off_keys[] = {"x_start", "x_end", "taper", "speed_limit", NULL};
    const char *what = on ? "road.onramp" : "road.offramp";
    ew_lua_check_keys(L, -1, what, on ? on_keys : off_keys);
    int t = lua_gettop(L);
    float xs = (float)ew_lua_optnum(L, t, what, "x_start", NAN);
    float xe = (float)ew_lua_optnum(L, t, what, on ? "merge_end" : "x_end", NAN);
    float taper = (float)ew_lua_optnum(L, t, what, "taper", on ? 60.0 : 40.0);
    float lim = (float)ew_lua_optnum(L, t, what, "speed_limit", r->lanes[0].speed_limit * 0.8);
    if (isnan(xs) || isnan(xe)) luaL_error(L, "%s needs x_start and %s", what, on ? "merge_end" : "x_end");
    road_call(L, on ? ew_road_add_onramp(r, xs, xe, taper, lim, err, errlen) : ew_road_add_offramp(r, xs, xe, taper, lim, err, errlen), err);
}

/* One or a list of ramp tables at t[key]. */
static void read_ramps(lua_State *L, int idx, ew_road *r, const char *key, int on, char *err, int errlen) {
    if (!opttable(L, idx, "road", key)) return;
    if (lua_rawlen(L, -1) > 0) {
        int n = (int)lua_rawlen(L, -1);
        for (int i = 1; i <= n; i++) {
            if (lua_rawgeti(L, -1, i) != LUA_TTABLE) luaL_error(L, "road.%s[%d] must be a table", key, i);
            read_ramp(L, r, on, err, errlen);
            lua_pop(L, 1);
        }
    } else {
        read_ramp(L, r, on, err, errlen);
    }
    lua_pop(L, 1);
}

static void read_road(lua_State *L, int idx, ew_world_config *c) {
    static const char *const keys[] = {"lanes", "lane_width", "length", "speed_limit", "speed_limits", "onramp",
                                       "offramp", "closures", "dash_len", "dash_gap", "marking_width", NULL};
    ew_lua_check_keys(L, idx, "road", keys);
    char err[256];
    int n = optint(L, idx, "road", "lanes", 3, 1, EW_MAX_MAIN_LANES);
    float lw = (float)ew_lua_optnum(L, idx, "road", "lane_width", 3.7);
    float len = (float)ew_lua_optnum(L, idx, "road", "length", 1000.0);
    float lim = (float)ew_lua_optnum(L, idx, "road", "speed_limit", 29.0);
    ew_road *r = &c->road;
    road_call(L, ew_road_init_highway(r, n, lw, len, lim, err, sizeof err), err);
    r->dash_len = (float)ew_lua_optnum(L, idx, "road", "dash_len", r->dash_len);
    r->dash_gap = (float)ew_lua_optnum(L, idx, "road", "dash_gap", r->dash_gap);
    r->marking_width = (float)ew_lua_optnum(L, idx, "road", "marking_width", r->marking_width);
    read_ramps(L, idx, r, "onramp", 1, err, sizeof err);
    read_ramps(L, idx, r, "offramp", 0, err, sizeof err);
    if (opttable(L, idx, "road", "closures")) {
        static const char *const ck[] = {"lane", "x", "taper", NULL};
        int m = (int)lua_rawlen(L, -1);
        for (int i = 1; i <= m; i++) {
            if (lua_rawgeti(L, -1, i) != LUA_TTABLE) luaL_error(L, "road.closures[%d] must be a table", i);
            int t = lua_gettop(L);
            ew_lua_check_keys(L, t, "road.closures[]", ck);
            int lane = optint(L, t, "road.closures[]", "lane", -1, 0, EW_MAX_LANES - 1);
            float x = (float)ew_lua_optnum(L, t, "road.closures[]", "x", NAN);
            float taper = (float)ew_lua_optnum(L, t, "road.closures[]", "taper", 60.0);
            if (isnan(x)) luaL_error(L, "road.closures[%d] needs lane and x", i);
            road_call(L, ew_road_close_lane(r, lane, x, taper, err, sizeof err), err);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    float lims[EW_MAX_LANES];
    for (int l = 0; l < r->n_lanes; l++) lims[l] = r->lanes[l].speed_limit;
    per_lane(L, idx, "road", "speed_limits", r->n_main, r->n_lanes, lims, 0.1f, 100.0f);
    for (int l = 0; l < r->n_lanes; l++) road_call(L, ew_road_set_speed_limit(r, l, lims[l], err, sizeof err), err);
}

static void read_vtype(lua_State *L, int idx, const char *what, ew_vtype_params *p) {
    static const char *const keys[] = {"length", "length_std", "width", "width_std", "v0_factor", "v0_factor_std",
                                       "T", "T_std", "s0", "a_max", "a_max_std", "b_comf", "b_comf_std", "delta",
                                       "politeness", "b_safe", "a_thr", "keep_right", NULL};
    ew_lua_check_keys(L, idx, what, keys);
#define F(k) p->k = (float)ew_lua_optnum(L, idx, what, #k, p->k)
    F(length); F(length_std); F(width); F(width_std); F(v0_factor); F(v0_factor_std); F(T); F(T_std); F(s0);
    F(a_max); F(a_max_std); F(b_comf); F(b_comf_std); F(delta); F(politeness); F(b_safe); F(a_thr); F(keep_right);
#undef F
}

static void read_traffic(lua_State *L, int idx, ew_world_config *c) {
    static const char *const keys[] = {"density", "flow", "ramp_density", "ramp_flow", "truck_share", "moto_share",
                                       "exit_share", "max_vehicles", "mobil_period", "lc_duration", "idm_noise", "car",
                                       "truck", "moto", NULL};
    ew_lua_check_keys(L, idx, "traffic", keys);
    const ew_road *r = &c->road;
    per_lane(L, idx, "traffic", "density", r->n_main, r->n_lanes, c->density_per_km, 0.0f, 200.0f);
    per_lane(L, idx, "traffic", "flow", r->n_main, r->n_lanes, c->flow_per_h, 0.0f, 5000.0f);
    for (int l = r->n_main; l < r->n_lanes; l++) {
        if (r->lanes[l].kind != EW_LANE_ONRAMP) continue;
        c->density_per_km[l] = (float)ew_lua_optnum(L, idx, "traffic", "ramp_density", c->density_per_km[l]);
        c->flow_per_h[l] = (float)ew_lua_optnum(L, idx, "traffic", "ramp_flow", c->flow_per_h[l]);
    }
    c->truck_share = (float)ew_lua_optnum(L, idx, "traffic", "truck_share", c->truck_share);
    c->moto_share = (float)ew_lua_optnum(L, idx, "traffic", "moto_share", c->moto_share);
    c->exit_share = (float)ew_lua_optnum(L, idx, "traffic", "exit_share", c->exit_share);
    c->max_vehicles = optint(L, idx, "traffic", "max_vehicles", c->max_vehicles, 1, 100000);
    c->mobil_period = (float)ew_lua_optnum(L, idx, "traffic", "mobil_period", c->mobil_period);
    c->lc_duration = (float)ew_lua_optnum(L, idx, "traffic", "lc_duration", c->lc_duration);
    c->idm_noise = (float)ew_lua_optnum(L, idx, "traffic", "idm_noise", c->idm_noise);
    for (int t = 0; t < EW_VT_COUNT; t++) {
        if (!opttable(L, idx, "traffic", type_names[t])) continue;
        char what[32];
        snprintf(what, sizeof what, "traffic.%s", type_names[t]);
        read_vtype(L, lua_gettop(L), what, &c->types[t]);
        lua_pop(L, 1);
    }
}

void ew_lua_read_config(lua_State *L, int idx, int skip_road, ew_world_config *c, ew_episode_cfg *ec,
                        ew_lua_extra *ex) {
    idx = lua_absindex(L, idx);
    if (opttable(L, idx, "scenario", "road")) {
        if (skip_road) luaL_error(L, "scenario: road and replay are exclusive (the log defines the road)");
        read_road(L, lua_gettop(L), c);
        /* the default densities and flows cover the default 3 lanes; follow the lane count */
        for (int l = 3; l < c->road.n_main; l++) {
            c->density_per_km[l] = c->density_per_km[0];
            c->flow_per_h[l] = c->flow_per_h[0];
        }
        lua_pop(L, 1);
    }
    if (opttable(L, idx, "scenario", "traffic")) {
        read_traffic(L, lua_gettop(L), c);
        lua_pop(L, 1);
    }
    if (opttable(L, idx, "scenario", "ego")) {
        static const char *const keys[] = {"enabled", "lane", "x", "speed", "length", "width", "a_min", "a_max",
                                           "b_max", "goal", "controller", NULL};
        int t = lua_gettop(L);
        ew_lua_check_keys(L, t, "ego", keys);
        c->ego_enabled = ew_lua_optbool(L, t, "ego", "enabled", c->ego_enabled);
        c->ego_lane = optint(L, t, "ego", "lane", c->ego_lane, 0, EW_MAX_LANES - 1);
        c->ego_x = (float)ew_lua_optnum(L, t, "ego", "x", c->ego_x);
        c->ego_speed = (float)ew_lua_optnum(L, t, "ego", "speed", c->ego_speed);
        c->ego_length = (float)ew_lua_optnum(L, t, "ego", "length", c->ego_length);
        c->ego_width = (float)ew_lua_optnum(L, t, "ego", "width", c->ego_width);
        c->ego_limits.a_min = (float)ew_lua_optnum(L, t, "ego", "a_min", c->ego_limits.a_min);
        c->ego_limits.a_max = (float)ew_lua_optnum(L, t, "ego", "a_max", c->ego_limits.a_max);
        c->ego_limits.b_max = (float)ew_lua_optnum(L, t, "ego", "b_max", c->ego_limits.b_max);
        ec->goal_distance = (float)ew_lua_optnum(L, t, "ego", "goal", ec->goal_distance);
        if (!(ec->goal_distance > 0.0f)) luaL_error(L, "ego.goal must be > 0 m");
        int ty = lua_getfield(L, t, "controller");
        if (ty == LUA_TSTRING) snprintf(ex->controller, sizeof ex->controller, "%s", lua_tostring(L, -1));
        else if (ty != LUA_TNIL) luaL_error(L, "ego.controller must be a string");
        lua_pop(L, 2);
    }
    if (opttable(L, idx, "scenario", "episode")) {
        static const char *const keys[] = {"dt", "steps", "seed", "n_cond", "collision_tol", NULL};
        int t = lua_gettop(L);
        ew_lua_check_keys(L, t, "episode", keys);
        c->dt = (float)ew_lua_optnum(L, t, "episode", "dt", c->dt);
        ec->max_steps = optint(L, t, "episode", "steps", ec->max_steps, 1, 100000000);
        ec->n_cond = optint(L, t, "episode", "n_cond", ec->n_cond, 0, 1000000);
        ec->collision_tol = (float)ew_lua_optnum(L, t, "episode", "collision_tol", ec->collision_tol);
        double s = ew_lua_optnum(L, t, "episode", "seed", (double)ex->seed);
        if (s < 0 || s != floor(s) || s > 9007199254740992.0) luaL_error(L, "episode.seed must be a non-negative integer");
        ex->seed = (uint64_t)s;
        lua_pop(L, 1);
    }
    int ty = lua_getfield(L, idx, "name");
    if (ty == LUA_TSTRING) snprintf(ex->name, sizeof ex->name, "%s", lua_tostring(L, -1));
    else if (ty != LUA_TNIL) luaL_error(L, "scenario: name must be a string");
    lua_pop(L, 1);
}

/* ---- pushing state ----------------------------------------------------------------- */

static void setnum(lua_State *L, const char *k, double v) {
    lua_pushnumber(L, v);
    lua_setfield(L, -2, k);
}
static void setint(lua_State *L, const char *k, lua_Integer v) {
    lua_pushinteger(L, v);
    lua_setfield(L, -2, k);
}
static void setbool(lua_State *L, const char *k, int v) {
    lua_pushboolean(L, v);
    lua_setfield(L, -2, k);
}

void ew_lua_push_vehicle(lua_State *L, const ew_world *w, int i) {
    const ew_vehicles *V = ew_world_vehicles(w);
    lua_createtable(L, 0, 20);
    setint(L, "id", V->id[i]);
    lua_pushstring(L, V->type[i] < EW_VT_COUNT ? type_names[V->type[i]] : "car");
    lua_setfield(L, -2, "type");
    setnum(L, "x", V->x[i]);
    setnum(L, "y", V->y[i]);
    setnum(L, "hx", V->hx[i]);
    setnum(L, "hy", V->hy[i]);
    setnum(L, "heading", atan2(V->hy[i], V->hx[i]));
    setnum(L, "speed", V->v[i]);
    setnum(L, "acc", V->acc[i]);
    setnum(L, "length", V->len[i]);
    setnum(L, "width", V->wid[i]);
    setnum(L, "v0", V->v0[i]);
    setint(L, "lane", V->lane[i]);
    setint(L, "lane_from", V->lane_from[i]);
    setbool(L, "changing", (V->flags[i] & EW_VF_CHANGING) != 0);
    setbool(L, "stalled", (V->flags[i] & EW_VF_STALLED) != 0);
    setbool(L, "braking", (V->flags[i] & EW_VF_BRAKING) != 0);
    setbool(L, "external", (V->flags[i] & EW_VF_EXTERNAL) != 0);
}

static int ego_lane(const ew_world *w) {
    const ew_kin_state *e = ew_world_ego(w);
    return ew_road_lane_at(ew_world_road(w), e->x, e->y);
}

void ew_lua_push_ego(lua_State *L, const ew_world *w) {
    const ew_kin_state *e = ew_world_ego(w);
    const ew_world_config *c = ew_world_config_of(w);
    lua_createtable(L, 0, 12);
    setnum(L, "x", e->x);
    setnum(L, "y", e->y);
    setnum(L, "hx", e->dx);
    setnum(L, "hy", e->dy);
    setnum(L, "heading", atan2(e->dy, e->dx));
    setnum(L, "speed", e->s);
    setnum(L, "length", c->ego_length);
    setnum(L, "width", c->ego_width);
    setint(L, "lane", ego_lane(w));
    setbool(L, "enabled", c->ego_enabled);
}

void ew_lua_push_metrics(lua_State *L, const ew_episode_metrics *m) {
    lua_createtable(L, 0, 16);
    lua_pushstring(L, ew_episode_status_name(m->status));
    lua_setfield(L, -2, "status");
    lua_pushstring(L, m->label);
    lua_setfield(L, -2, "label");
    setbool(L, "success", m->success);
    setbool(L, "collision", m->collision);
    setbool(L, "offroad", m->offroad);
    setint(L, "steps", m->steps);
    setnum(L, "distance", m->distance);
    setnum(L, "time", m->time);
    setnum(L, "min_ttc", m->min_ttc);
    setnum(L, "mean_speed", m->mean_speed);
    setnum(L, "mean_abs_jerk", m->mean_abs_jerk);
    setnum(L, "max_abs_accel", m->max_abs_accel);
    setnum(L, "mean_abs_curvature", m->mean_abs_curv);
    if (m->status == EW_EP_ERROR) {
        lua_pushstring(L, m->error);
        lua_setfield(L, -2, "error");
    }
}

/* ---- the functions ------------------------------------------------------------------ */

static ew_world *W(lua_State *L, int *base) {
    const ew_lua_getter *g = lua_touserdata(L, lua_upvalueindex(1));
    return g->get(L, base);
}

static int fail_msg(lua_State *L, const char *msg) {
    lua_pushnil(L);
    lua_pushstring(L, msg);
    return 2;
}

static int f_time(lua_State *L) {
    int b;
    lua_pushnumber(L, ew_world_time(W(L, &b)));
    return 1;
}
static int f_steps(lua_State *L) {
    int b;
    lua_pushinteger(L, ew_world_get_stats(W(L, &b)).steps);
    return 1;
}
static int f_dt(lua_State *L) {
    int b;
    lua_pushnumber(L, ew_world_config_of(W(L, &b))->dt);
    return 1;
}
static int f_ego(lua_State *L) {
    int b;
    ew_lua_push_ego(L, W(L, &b));
    return 1;
}
static int f_nvehicles(lua_State *L) {
    int b;
    lua_pushinteger(L, ew_world_vehicles(W(L, &b))->n);
    return 1;
}
static int f_vehicles(lua_State *L) {
    int b;
    ew_world *w = W(L, &b);
    const ew_vehicles *V = ew_world_vehicles(w);
    lua_createtable(L, V->n, 0);
    for (int i = 0; i < V->n; i++) {
        ew_lua_push_vehicle(L, w, i);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}
static int f_vehicle(lua_State *L) {
    int b;
    ew_world *w = W(L, &b);
    lua_Integer id = luaL_checkinteger(L, b);
    int i = id > 0 && id <= UINT32_MAX ? ew_world_find(w, (uint32_t)id) : -1;
    if (i < 0) return 0;
    ew_lua_push_vehicle(L, w, i);
    return 1;
}

/* lane argument (default: the ego's lane) */
static int lane_arg(lua_State *L, ew_world *w, int idx) {
    if (lua_isnoneornil(L, idx)) return ego_lane(w);
    lua_Integer l = luaL_checkinteger(L, idx);
    if (l < 0 || l >= ew_world_road(w)->n_lanes) luaL_argerror(L, idx, "no such lane");
    return (int)l;
}

static int neighbour_common(lua_State *L, int ahead) {
    int b;
    ew_world *w = W(L, &b);
    int lane = lane_arg(L, w, b);
    double x = luaL_optnumber(L, b + 1, ew_world_ego(w)->x);
    if (lane < 0) return 0;
    int i = ahead ? ew_world_leader(w, lane, (float)x, -1) : ew_world_follower(w, lane, (float)x, -1);
    if (i < 0) return 0;
    ew_lua_push_vehicle(L, w, i);
    return 1;
}
static int f_leader(lua_State *L) { return neighbour_common(L, 1); }
static int f_follower(lua_State *L) { return neighbour_common(L, 0); }

/* Bumper gap from the ego's front to the leader's rear in the ego's lane, and the closing speed. */
static int ego_gap(ew_world *w, float *gap, float *closing) {
    int lane = ego_lane(w);
    if (lane < 0) return 0;
    int li = ew_world_leader(w, lane, ew_world_ego(w)->x, -1);
    if (li < 0) return 0;
    const ew_vehicles *V = ew_world_vehicles(w);
    const ew_kin_state *e = ew_world_ego(w);
    *gap = (V->x[li] - 0.5f * V->len[li]) - (e->x + 0.5f * ew_world_config_of(w)->ego_length);
    *closing = e->s * e->dx - V->v[li] * V->hx[li];
    return 1;
}
static int f_gap(lua_State *L) {
    int b;
    float g, c;
    if (!ego_gap(W(L, &b), &g, &c)) return 0;
    lua_pushnumber(L, g);
    return 1;
}
static int f_ttc(lua_State *L) {
    int b;
    float g, c;
    if (!ego_gap(W(L, &b), &g, &c) || c <= 0.0f) lua_pushnumber(L, HUGE_VAL);
    else lua_pushnumber(L, g <= 0.0f ? 0.0 : g / c);
    return 1;
}
static int f_lane_at(lua_State *L) {
    int b;
    ew_world *w = W(L, &b);
    int l = ew_road_lane_at(ew_world_road(w), (float)luaL_checknumber(L, b), (float)luaL_checknumber(L, b + 1));
    if (l < 0) return 0;
    lua_pushinteger(L, l);
    return 1;
}
static int f_road(lua_State *L) {
    int b;
    const ew_road *r = ew_world_road(W(L, &b));
    lua_createtable(L, 0, 6);
    setint(L, "lanes", r->n_main);
    setint(L, "n_lanes", r->n_lanes);
    setnum(L, "length", r->length);
    lua_createtable(L, r->n_lanes, 0);
    static const char *const kinds[] = {"main", "onramp", "offramp"};
    for (int l = 0; l < r->n_lanes; l++) {
        const ew_lane *ln = &r->lanes[l];
        lua_createtable(L, 0, 9);
        setint(L, "index", l);
        lua_pushstring(L, kinds[ln->kind]);
        lua_setfield(L, -2, "kind");
        setnum(L, "y_right", ln->y_right);
        setnum(L, "width", ln->width);
        setnum(L, "center", ew_road_lane_center(r, l));
        setnum(L, "x_start", ln->x_start);
        setnum(L, "x_end", ln->x_end);
        setnum(L, "speed_limit", ln->speed_limit);
        lua_rawseti(L, -2, l + 1);
    }
    lua_setfield(L, -2, "lane");
    return 1;
}
static int f_stats(lua_State *L) {
    int b;
    ew_world_stats s = ew_world_get_stats(W(L, &b));
    lua_createtable(L, 0, 8);
    setnum(L, "time", s.time);
    setint(L, "steps", s.steps);
    setint(L, "spawned", s.spawned);
    setint(L, "exited", s.exited);
    setint(L, "refused_spawns", s.refused_spawns);
    setint(L, "lane_changes", s.lane_changes);
    setint(L, "bg_collisions", s.bg_collisions);
    setint(L, "vehicle_updates", s.vehicle_updates);
    return 1;
}
static int f_collision(lua_State *L) {
    int b;
    ew_world *w = W(L, &b);
    lua_pushboolean(L, ew_world_ego_collision(w, (float)luaL_optnumber(L, b, 1.0)));
    return 1;
}
static int f_offroad(lua_State *L) {
    int b;
    lua_pushboolean(L, ew_world_ego_offroad(W(L, &b)));
    return 1;
}

static ew_vtype type_field(lua_State *L, int t) {
    int ty = lua_getfield(L, t, "type");
    ew_vtype v = EW_VT_CAR;
    if (ty == LUA_TSTRING) {
        const char *s = lua_tostring(L, -1);
        int ok = 0;
        for (int k = 0; k < EW_VT_COUNT; k++)
            if (strcmp(s, type_names[k]) == 0) {
                v = (ew_vtype)k;
                ok = 1;
            }
        if (!ok) luaL_error(L, "type must be \"car\", \"truck\" or \"moto\" (got \"%s\")", s);
    } else if (ty != LUA_TNIL) {
        luaL_error(L, "type must be a string");
    }
    lua_pop(L, 1);
    return v;
}

static int f_spawn(lua_State *L) {
    static const char *const keys[] = {"type", "lane", "dlane", "x", "gap", "behind", "dx", "y", "speed", "dv",
                                       "length", "width", "v0", "exiting", NULL};
    int b;
    ew_world *w = W(L, &b);
    luaL_checktype(L, b, LUA_TTABLE);
    ew_lua_check_keys(L, b, "spawn", keys);
    const ew_world_config *c = ew_world_config_of(w);
    const ew_kin_state *e = ew_world_ego(w);
    ew_spawn s;
    memset(&s, 0, sizeof s);
    s.type = type_field(L, b);
    s.length = (float)ew_lua_optnum(L, b, "spawn", "length", c->types[s.type].length);
    s.width = (float)ew_lua_optnum(L, b, "spawn", "width", 0.0);
    s.v0 = (float)ew_lua_optnum(L, b, "spawn", "v0", 0.0);
    s.flags = ew_lua_optbool(L, b, "spawn", "exiting", 0) ? EW_VF_EXITING : 0;
    double x = ew_lua_optnum(L, b, "spawn", "x", NAN), gap = ew_lua_optnum(L, b, "spawn", "gap", NAN);
    double behind = ew_lua_optnum(L, b, "spawn", "behind", NAN), dx = ew_lua_optnum(L, b, "spawn", "dx", NAN);
    int npos = !isnan(x) + !isnan(gap) + !isnan(behind) + !isnan(dx);
    if (npos != 1) luaL_error(L, "spawn: give exactly one of x, gap, behind, dx");
    int relative = isnan(x);
    if (relative && !c->ego_enabled) luaL_error(L, "spawn: gap, behind and dx need an ego");
    int el = ego_lane(w);
    int has_lane = lua_getfield(L, b, "lane") != LUA_TNIL;
    lua_pop(L, 1);
    int has_dlane = lua_getfield(L, b, "dlane") != LUA_TNIL;
    lua_pop(L, 1);
    if (has_lane && has_dlane) luaL_error(L, "spawn: give lane or dlane, not both");
    if (has_lane) {
        s.lane = optint(L, b, "spawn", "lane", 0, 0, EW_MAX_LANES - 1);
    } else {
        if (el < 0 || !c->ego_enabled) luaL_error(L, "spawn: no lane given and the ego is not on a lane");
        s.lane = el + optint(L, b, "spawn", "dlane", 0, -EW_MAX_LANES, EW_MAX_LANES);
    }
    if (s.lane < 0 || s.lane >= ew_world_road(w)->n_lanes) return fail_msg(L, "spawn: no such lane");
    float hl = 0.5f * s.length, ehl = 0.5f * c->ego_length;
    if (!isnan(x)) s.x = (float)x;
    else if (!isnan(gap)) s.x = e->x + ehl + (float)gap + hl;
    else if (!isnan(behind)) s.x = e->x - ehl - (float)behind - hl;
    else s.x = e->x + (float)dx;
    s.y = (float)ew_lua_optnum(L, b, "spawn", "y", -1e30);
    double dv = ew_lua_optnum(L, b, "spawn", "dv", NAN);
    double speed = ew_lua_optnum(L, b, "spawn", "speed", NAN);
    if (!isnan(dv) && !isnan(speed)) luaL_error(L, "spawn: give speed or dv, not both");
    if (!isnan(speed)) s.v = (float)speed;
    else if (c->ego_enabled) s.v = e->s + (float)(isnan(dv) ? 0.0 : dv);
    else s.v = ew_world_road(w)->lanes[s.lane].speed_limit;
    if (s.v < 0.0f) s.v = 0.0f;
    char err[256];
    uint32_t id = ew_world_spawn(w, &s, err, sizeof err);
    if (!id) return fail_msg(L, err);
    lua_pushinteger(L, id);
    return 1;
}

static uint32_t id_arg(lua_State *L, int idx) {
    lua_Integer id = luaL_checkinteger(L, idx);
    if (id <= 0 || id > UINT32_MAX) luaL_argerror(L, idx, "vehicle ids are positive integers");
    return (uint32_t)id;
}

static int result(lua_State *L, int rc, const char *err) {
    if (rc != 0) return fail_msg(L, err);
    lua_pushboolean(L, 1);
    return 1;
}

static int f_cut_in(lua_State *L) {
    static const char *const keys[] = {"gap", "from", "speed", "dv", "duration", "type", "length", "id", "clear", "v0", NULL};
    int b;
    ew_world *w = W(L, &b);
    if (lua_isnoneornil(L, b)) {
        lua_settop(L, b - 1);
        lua_newtable(L);
    }
    luaL_checktype(L, b, LUA_TTABLE);
    ew_lua_check_keys(L, b, "cut_in", keys);
    const ew_world_config *c = ew_world_config_of(w);
    if (!c->ego_enabled) luaL_error(L, "cut_in: the world has no ego");
    const ew_kin_state *e = ew_world_ego(w);
    const ew_road *r = ew_world_road(w);
    int el = ego_lane(w);
    if (el < 0) return fail_msg(L, "cut_in: the ego is not on a lane");
    double gap = ew_lua_optnum(L, b, "cut_in", "gap", 10.0);
    double dur = ew_lua_optnum(L, b, "cut_in", "duration", 2.0);
    char err[256];
    uint32_t id;
    lua_Integer given = (lua_Integer)ew_lua_optnum(L, b, "cut_in", "id", 0);
    if (given > 0) {
        id = (uint32_t)given;
    } else {
        int from = -1;
        int ty = lua_getfield(L, b, "from");
        if (ty == LUA_TSTRING) {
            const char *s = lua_tostring(L, -1);
            if (strcmp(s, "left") == 0) from = ew_road_neighbor(r, el, 1, e->x);
            else if (strcmp(s, "right") == 0) from = ew_road_neighbor(r, el, -1, e->x);
            else luaL_error(L, "cut_in.from must be \"left\", \"right\" or a lane");
            if (from < 0) {
                lua_pop(L, 1);
                return fail_msg(L, "cut_in: no lane on that side of the ego");
            }
        } else if (ty == LUA_TNUMBER) {
            from = (int)lua_tointeger(L, -1);
        } else if (ty == LUA_TNIL) {
            from = ew_road_neighbor(r, el, 1, e->x);
            if (from < 0) from = ew_road_neighbor(r, el, -1, e->x);
            if (from < 0) {
                lua_pop(L, 1);
                return fail_msg(L, "cut_in: the ego's lane has no neighbour");
            }
        } else {
            luaL_error(L, "cut_in.from must be \"left\", \"right\" or a lane");
        }
        lua_pop(L, 1);
        ew_spawn s;
        memset(&s, 0, sizeof s);
        s.type = type_field(L, b);
        s.length = (float)ew_lua_optnum(L, b, "cut_in", "length", c->types[s.type].length);
        s.lane = from;
        s.x = e->x + 0.5f * c->ego_length + (float)gap + 0.5f * s.length;
        s.y = -1e30f;
        double dv = ew_lua_optnum(L, b, "cut_in", "dv", 0.0);
        s.v = (float)ew_lua_optnum(L, b, "cut_in", "speed", e->s + dv);
        if (s.v < 0.0f) s.v = 0.0f;
        /* desired speed: its current speed unless given (a cut-in vehicle holds its speed) */
        s.v0 = (float)ew_lua_optnum(L, b, "cut_in", "v0", s.v > 1.0f ? s.v : 1.0f);
        if (ew_lua_optbool(L, b, "cut_in", "clear", 0)) {
            /* make room: remove background vehicles near the spot in both lanes */
            const ew_vehicles *V = ew_world_vehicles(w);
            for (int i = V->n - 1; i >= 0; i--) {
                if (V->lane[i] != from && V->lane[i] != el && V->lane_from[i] != from && V->lane_from[i] != el)
                    continue;
                if (fabsf(V->x[i] - s.x) < 0.5f * (V->len[i] + s.length) + 4.0f &&
                    ew_world_remove(w, V->id[i], err, sizeof err) != 0)
                    return fail_msg(L, err);
            }
        }
        id = ew_world_spawn(w, &s, err, sizeof err);
        if (!id) return fail_msg(L, err);
    }
    if (ew_world_change_lane(w, id, el, (float)dur, err, sizeof err) != 0) {
        if (given <= 0) ew_world_remove(w, id, NULL, 0);
        return fail_msg(L, err);
    }
    lua_pushinteger(L, id);
    return 1;
}

static int f_brake(lua_State *L) {
    int b;
    ew_world *w = W(L, &b);
    uint32_t id = id_arg(L, b);
    char err[256];
    return result(L, ew_world_brake(w, id, (float)luaL_checknumber(L, b + 1), (float)luaL_optnumber(L, b + 2, 3.0), err,
                                    sizeof err), err);
}
static int f_stall(lua_State *L) {
    int b;
    ew_world *w = W(L, &b);
    uint32_t id = id_arg(L, b);
    char err[256];
    return result(L, ew_world_stall(w, id, (float)luaL_optnumber(L, b + 1, 0.0), err, sizeof err), err);
}
static int f_change_lane(lua_State *L) {
    int b;
    ew_world *w = W(L, &b);
    uint32_t id = id_arg(L, b);
    char err[256];
    return result(L, ew_world_change_lane(w, id, (int)luaL_checkinteger(L, b + 1), (float)luaL_optnumber(L, b + 2, 0.0),
                                          err, sizeof err), err);
}
static int f_remove(lua_State *L) {
    int b;
    ew_world *w = W(L, &b);
    char err[256];
    return result(L, ew_world_remove(w, id_arg(L, b), err, sizeof err), err);
}
static int f_close_lane(lua_State *L) {
    int b;
    ew_world *w = W(L, &b);
    char err[256];
    return result(L, ew_world_close_lane(w, (int)luaL_checkinteger(L, b), (float)luaL_checknumber(L, b + 1),
                                         (float)luaL_optnumber(L, b + 2, 60.0), err, sizeof err), err);
}
static int f_set_speed_limit(lua_State *L) {
    int b;
    ew_world *w = W(L, &b);
    char err[256];
    return result(L, ew_world_set_speed_limit(w, (int)luaL_checkinteger(L, b), (float)luaL_checknumber(L, b + 1), err,
                                              sizeof err), err);
}

static const luaL_Reg api[] = {
    {"time", f_time},         {"steps", f_steps},       {"dt", f_dt},
    {"ego", f_ego},           {"vehicles", f_vehicles}, {"vehicle", f_vehicle},
    {"nvehicles", f_nvehicles}, {"leader", f_leader},   {"follower", f_follower},
    {"gap", f_gap},           {"ttc", f_ttc},           {"lane_at", f_lane_at},
    {"road", f_road},         {"stats", f_stats},       {"collision", f_collision},
    {"offroad", f_offroad},   {"spawn", f_spawn},       {"cut_in", f_cut_in},
    {"brake", f_brake},       {"stall", f_stall},       {"change_lane", f_change_lane},
    {"remove", f_remove},     {"close_lane", f_close_lane}, {"set_speed_limit", f_set_speed_limit},
    {NULL, NULL}};

void ew_lua_world_api_register(lua_State *L, int t, const ew_lua_getter *getter) {
    t = lua_absindex(L, t);
    for (const luaL_Reg *r = api; r->name; r++) {
        lua_pushlightuserdata(L, (void *)getter);
        lua_pushcclosure(L, r->func, 1);
        lua_setfield(L, t, r->name);
    }
}
