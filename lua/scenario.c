/* scenario.c - scenario files: loading, configuration, events, metrics (scenario.h). */
#define _DEFAULT_SOURCE
#include "lua/scenario.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "lua/worldapi.h"
#include "sim/ngsim.h"

#define MAX_EVENTS 10000
#define MAX_METRICS 1000
/* All callbacks of one step together get at most this many times the per-callback budget:
 * without it 10000 events (or events registering events, which run in the same step) would
 * multiply the budget and stall the simulation for hours. */
#define STEP_BUDGET_FACTOR 10

enum { EV_AT, EV_WHEN, EV_EVERY, EV_STEP };

typedef struct {
    int kind;
    double t, period, start, next, cooldown, last_fire;
    int fn_ref, cond_ref;
    int once, fired, prev;
} event_t;

typedef struct {
    char name[64];
    int kind; /* 0 number, 1 boolean, 2 string */
    double v;
    char str[128];
} metric_t;

typedef struct {
    int present;
    char file[PATH_MAX];
    uint32_t ego;
    ew_ngsim_opts o;
    double t_start;
} replay_cfg;

struct ew_scenario {
    ew_lua_vm *vm;
    char path[PATH_MAX];
    ew_world_config wc;
    ew_episode_cfg ec;
    ew_lua_extra ex;
    int cfg_ref, sim_ref;
    replay_cfg rc;
    ew_ngsim *log;
    ew_replay *replay;
    event_t *ev;
    int n_ev, cap_ev, n_ev_static;
    metric_t *m;
    int n_m, n_m_static;
    /* while events run */
    ew_world *w;
    ew_episode *ep;
    double now;
    int ended;
    char end_label[64];
    int failed;
    char *error;
    int64_t fired_total;
    long long step_left;   /* instructions left to the callbacks of this step */
    int step_capped;       /* the running callback got less than its budget (step total) */
};

static const char SCEN_KEY = 'S'; /* its address keys the scenario in the registry */

static ew_scenario *scen_of(lua_State *L) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, &SCEN_KEY);
    ew_scenario *s = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return s;
}

/* ---- sim: the world view inside events ---------------------------------------------- */

static int self_base(lua_State *L, ew_scenario *s) {
    if (lua_type(L, 1) != LUA_TTABLE) return 1;
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->sim_ref);
    int is_self = lua_rawequal(L, 1, -1);
    lua_pop(L, 1);
    return is_self ? 2 : 1;
}

static ew_world *scen_get(lua_State *L, int *base) {
    ew_scenario *s = scen_of(L);
    if (!s->w) luaL_error(L, "sim: the world is only available inside event callbacks");
    *base = self_base(L, s);
    return s->w;
}
static const ew_lua_getter scen_getter = {scen_get};

static int sim_end_episode(lua_State *L) {
    ew_scenario *s = scen_of(L);
    int b = self_base(L, s);
    if (!s->w) return luaL_error(L, "sim:end_episode() is only available inside event callbacks");
    const char *label = luaL_optstring(L, b, "scripted");
    snprintf(s->end_label, sizeof s->end_label, "%s", label);
    s->ended = 1;
    return 0;
}

static int l_metric(lua_State *L) {
    ew_scenario *s = scen_of(L);
    int b = self_base(L, s);
    size_t nl;
    const char *name = luaL_checklstring(L, b, &nl);
    if (nl == 0 || nl >= sizeof s->m[0].name) return luaL_argerror(L, b, "metric names have 1 to 63 characters");
    int t = lua_type(L, b + 1);
    if (t != LUA_TNUMBER && t != LUA_TBOOLEAN && t != LUA_TSTRING)
        return luaL_argerror(L, b + 1, "a metric is a number, a boolean or a string");
    int k = 0;
    while (k < s->n_m && strcmp(s->m[k].name, name) != 0) k++;
    if (k == s->n_m) {
        if (s->n_m >= MAX_METRICS) return luaL_error(L, "metric: at most %d metrics", MAX_METRICS);
        metric_t *nm = realloc(s->m, sizeof *nm * (size_t)(s->n_m + 1));
        if (!nm) return luaL_error(L, "metric: out of memory");
        s->m = nm;
        memset(&s->m[k], 0, sizeof s->m[k]);
        memcpy(s->m[k].name, name, nl + 1);
        s->n_m++;
    }
    metric_t *m = &s->m[k];
    if (t == LUA_TNUMBER) {
        m->kind = 0;
        m->v = lua_tonumber(L, b + 1);
    } else if (t == LUA_TBOOLEAN) {
        m->kind = 1;
        m->v = lua_toboolean(L, b + 1);
    } else {
        m->kind = 2;
        snprintf(m->str, sizeof m->str, "%s", lua_tostring(L, b + 1));
    }
    return 0;
}

/* ---- event registration -------------------------------------------------------------- */

static event_t *new_event(lua_State *L, ew_scenario *s, int kind) {
    if (s->n_ev >= MAX_EVENTS) luaL_error(L, "at most %d events", MAX_EVENTS);
    if (s->n_ev == s->cap_ev) {
        int nc = s->cap_ev ? 2 * s->cap_ev : 16;
        event_t *ne = realloc(s->ev, sizeof *ne * (size_t)nc);
        if (!ne) luaL_error(L, "events: out of memory");
        s->ev = ne;
        s->cap_ev = nc;
    }
    event_t *e = &s->ev[s->n_ev];
    memset(e, 0, sizeof *e);
    e->kind = kind;
    e->fn_ref = e->cond_ref = LUA_NOREF;
    e->last_fire = -INFINITY;
    e->once = 1;
    return e;
}

static int l_at(lua_State *L) {
    ew_scenario *s = scen_of(L);
    double t = luaL_checknumber(L, 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    if (!(t >= 0.0 && isfinite(t))) return luaL_argerror(L, 1, "time must be >= 0 s");
    event_t *e = new_event(L, s, EV_AT);
    e->t = t;
    lua_pushvalue(L, 2);
    e->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    s->n_ev++;
    return 0;
}

static int l_every(lua_State *L) {
    ew_scenario *s = scen_of(L);
    double p = luaL_checknumber(L, 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    if (!(p > 0.0 && isfinite(p))) return luaL_argerror(L, 1, "period must be > 0 s");
    double start = 0.0;
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        static const char *const keys[] = {"start", NULL};
        ew_lua_check_keys(L, 3, "every{}", keys);
        start = ew_lua_optnum(L, 3, "every{}", "start", 0.0);
    }
    event_t *e = new_event(L, s, EV_EVERY);
    e->period = p;
    e->start = e->next = start;
    lua_pushvalue(L, 2);
    e->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    s->n_ev++;
    return 0;
}

static int l_when(lua_State *L) {
    ew_scenario *s = scen_of(L);
    luaL_checktype(L, 1, LUA_TFUNCTION);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    int once = 1;
    double cooldown = 0.0;
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        static const char *const keys[] = {"repeat", "repeating", "once", "cooldown", NULL};
        ew_lua_check_keys(L, 3, "when{}", keys);
        int rep = ew_lua_optbool(L, 3, "when{}", "repeat", 0) || ew_lua_optbool(L, 3, "when{}", "repeating", 0);
        once = ew_lua_optbool(L, 3, "when{}", "once", !rep);
        cooldown = ew_lua_optnum(L, 3, "when{}", "cooldown", 0.0);
    }
    event_t *e = new_event(L, s, EV_WHEN);
    e->once = once;
    e->cooldown = cooldown;
    lua_pushvalue(L, 1);
    e->cond_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, 2);
    e->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    s->n_ev++;
    return 0;
}

static int l_on_step(lua_State *L) {
    ew_scenario *s = scen_of(L);
    luaL_checktype(L, 1, LUA_TFUNCTION);
    event_t *e = new_event(L, s, EV_STEP);
    lua_pushvalue(L, 1);
    e->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    s->n_ev++;
    return 0;
}

/* road{...}, traffic{...}, ego{...}, episode{...}, replay{...}, name"..." */
static int l_builder(lua_State *L) {
    ew_scenario *s = scen_of(L);
    const char *section = lua_tostring(L, lua_upvalueindex(1));
    if (strcmp(section, "name") == 0) luaL_checktype(L, 1, LUA_TSTRING);
    else luaL_checktype(L, 1, LUA_TTABLE);
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->cfg_ref);
    lua_pushvalue(L, 1);
    lua_setfield(L, -2, section);
    return 0;
}

/* ---- loading ----------------------------------------------------------------------- */

static int setup_globals(lua_State *L) {
    ew_scenario *s = lua_touserdata(L, 1);
    lua_pushlightuserdata(L, s);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &SCEN_KEY);
    lua_newtable(L);
    s->cfg_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_newtable(L);
    ew_lua_world_api_register(L, -1, &scen_getter);
    lua_pushcfunction(L, sim_end_episode);
    lua_setfield(L, -2, "end_episode");
    lua_pushcfunction(L, l_metric);
    lua_setfield(L, -2, "metric");
    lua_pushvalue(L, -1);
    lua_setglobal(L, "sim");
    s->sim_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    static const luaL_Reg g[] = {{"at", l_at}, {"when", l_when}, {"every", l_every}, {"on_step", l_on_step},
                                 {"metric", l_metric}, {NULL, NULL}};
    for (const luaL_Reg *r = g; r->name; r++) {
        lua_pushcfunction(L, r->func);
        lua_setglobal(L, r->name);
    }
    static const char *const sections[] = {"road", "traffic", "ego", "episode", "replay", "name", NULL};
    for (int i = 0; sections[i]; i++) {
        lua_pushstring(L, sections[i]);
        lua_pushcclosure(L, l_builder, 1);
        lua_setglobal(L, sections[i]);
    }
    const ew_lua_opts *o = ew_lua_vm_opts(s->vm);
    if (o->has_seed) lua_pushinteger(L, (lua_Integer)(o->seed & 0x7fffffffffffffffULL));
    else lua_pushnil(L);
    lua_setglobal(L, "SEED");
    return 0;
}

/* Merges the table returned by the file (index 2) into the builder sections. */
static int merge_returned(lua_State *L) {
    ew_scenario *s = lua_touserdata(L, 1);
    if (lua_isnoneornil(L, 2)) return 0;
    if (!lua_istable(L, 2)) return luaL_error(L, "%s: a scenario returns a table (or nothing), not a %s", s->path,
                                              luaL_typename(L, 2));
    static const char *const keys[] = {"road", "traffic", "ego", "episode", "replay", "name", "description", NULL};
    ew_lua_check_keys(L, 2, "scenario", keys);
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->cfg_ref);
    for (int i = 0; keys[i]; i++) {
        if (lua_getfield(L, 2, keys[i]) == LUA_TNIL) {
            lua_pop(L, 1);
            continue;
        }
        lua_setfield(L, -2, keys[i]);
    }
    return 0;
}

static int read_replay(lua_State *L) {
    ew_scenario *s = lua_touserdata(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->cfg_ref);
    int c = lua_gettop(L);
    int t = lua_getfield(L, c, "replay");
    if (t == LUA_TNIL) return 0;
    if (t != LUA_TTABLE) return luaL_error(L, "replay must be a table");
    int r = lua_gettop(L);
    static const char *const keys[] = {"file", "ego", "smoothing", "lanes", "lane_width_ft", "road_width_ft",
                                       "x_offset", "t_start", NULL};
    ew_lua_check_keys(L, r, "replay", keys);
    replay_cfg *rc = &s->rc;
    rc->present = 1;
    ew_ngsim_opts_default(&rc->o);
    if (lua_getfield(L, r, "file") != LUA_TSTRING) return luaL_error(L, "replay.file must be a path (string)");
    snprintf(rc->file, sizeof rc->file, "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
    double ego = ew_lua_optnum(L, r, "replay", "ego", 0.0);
    if (ego < 0 || ego != floor(ego) || ego > 4294967295.0) return luaL_error(L, "replay.ego must be a Vehicle_ID");
    rc->ego = (uint32_t)ego;
    rc->o.smooth_window = (float)ew_lua_optnum(L, r, "replay", "smoothing", rc->o.smooth_window);
    rc->o.n_main = (int)ew_lua_optnum(L, r, "replay", "lanes", 0);
    rc->o.lane_width_ft = (float)ew_lua_optnum(L, r, "replay", "lane_width_ft", rc->o.lane_width_ft);
    rc->o.road_width_ft = (float)ew_lua_optnum(L, r, "replay", "road_width_ft", 0.0);
    rc->o.x_offset = (float)ew_lua_optnum(L, r, "replay", "x_offset", 0.0);
    rc->t_start = ew_lua_optnum(L, r, "replay", "t_start", NAN);
    return 0;
}

static int read_rest(lua_State *L) {
    ew_scenario *s = lua_touserdata(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->cfg_ref);
    ew_lua_read_config(L, -1, s->rc.present, &s->wc, &s->ec, &s->ex);
    return 0;
}

static int pcall_c(ew_scenario *s, lua_CFunction f, int nargs_extra, long long budget, char *err, int errlen) {
    lua_State *L = ew_lua_vm_state(s->vm);
    lua_pushcfunction(L, f);
    lua_insert(L, -(nargs_extra + 1));
    lua_pushlightuserdata(L, s);
    lua_insert(L, -(nargs_extra + 1));
    int rc = ew_lua_vm_pcall(s->vm, 1 + nargs_extra, 0, budget, err, errlen);
    size_t pl = strlen(s->path);
    if (rc != 0 && err && errlen > 0 && pl + 2 < (size_t)errlen - 1 && strncmp(err, s->path, pl) != 0) {
        /* raised from C while reading the configuration: name the file */
        size_t n = strlen(err), room = (size_t)errlen - 1;
        if (pl + 2 + n > room) n = room > pl + 2 ? room - pl - 2 : 0;
        memmove(err + pl + 2, err, n);
        err[pl + 2 + n] = 0;
        memcpy(err, s->path, pl);
        err[pl] = ':';
        err[pl + 1] = ' ';
    }
    return rc;
}

static ew_scenario *load_any(const char *path, const char *text, size_t len, const ew_lua_opts *o, char *err,
                             int errlen) {
    ew_lua_opts lo;
    if (o) lo = *o;
    else ew_lua_opts_default(&lo);
    ew_scenario *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, (size_t)errlen, "scenario: out of memory");
        return NULL;
    }
    snprintf(s->path, sizeof s->path, "%s", path);
    s->cfg_ref = s->sim_ref = LUA_NOREF;
    s->vm = ew_lua_vm_create(&lo, err, errlen);
    if (!s->vm) {
        free(s);
        return NULL;
    }
    ew_world_config_default(&s->wc);
    ew_episode_cfg_default(&s->ec);
    memset(&s->ex, 0, sizeof s->ex);
    snprintf(s->ex.controller, sizeof s->ex.controller, "idm");
    s->ex.seed = 1;
    const char *base = strrchr(path, '/');
    snprintf(s->ex.name, sizeof s->ex.name, "%s", base ? base + 1 : path);
    if (pcall_c(s, setup_globals, 0, 0, err, errlen) != 0) goto bad;
    if ((text ? ew_lua_vm_loadbuffer(s->vm, text, len, path, err, errlen)
              : ew_lua_vm_loadfile(s->vm, path, err, errlen)) != 0)
        goto bad;
    if (ew_lua_vm_pcall(s->vm, 0, 1, lo.budget_load, err, errlen) != 0) goto bad;
    if (pcall_c(s, merge_returned, 1, lo.budget_load, err, errlen) != 0) goto bad;
    if (pcall_c(s, read_replay, 0, lo.budget_load, err, errlen) != 0) goto bad;
    if (s->rc.present) {
        char rp[PATH_MAX];
        if (!ew_lua_vm_may_read(s->vm, s->rc.file, rp, sizeof rp)) {
            snprintf(err, (size_t)errlen, "%s: replay.file '%s' is not readable under the granted folder (%s)", path,
                     s->rc.file, lo.read_dir ? lo.read_dir : "none granted; see --allow-read");
            goto bad;
        }
        s->log = ew_ngsim_load(rp, &s->rc.o, err, errlen);
        if (!s->log) goto bad;
        char e2[512];
        if (ew_ngsim_world_config(s->log, s->rc.ego, &s->wc, e2, sizeof e2) != 0) {
            snprintf(err, (size_t)errlen, "%s: replay: %s", path, e2);
            goto bad;
        }
        ew_replay_opts ro = {s->rc.ego, s->rc.t_start};
        s->replay = ew_replay_create(s->log, &ro, err, errlen);
        if (!s->replay) goto bad;
    }
    if (pcall_c(s, read_rest, 0, lo.budget_load, err, errlen) != 0) goto bad;
    if (lo.has_seed) s->ex.seed = lo.seed;
    s->wc.seed = s->ex.seed;
    {
        char e2[512];
        if (ew_world_config_validate(&s->wc, e2, sizeof e2) != 0) {
            snprintf(err, (size_t)errlen, "%s: %s", path, e2);
            goto bad;
        }
    }
    s->n_ev_static = s->n_ev;
    s->n_m_static = s->n_m;
    return s;
bad:
    ew_scenario_destroy(s);
    return NULL;
}

ew_scenario *ew_scenario_load(const char *path, const ew_lua_opts *o, char *err, int errlen) {
    return load_any(path, NULL, 0, o, err, errlen);
}

ew_scenario *ew_scenario_load_buffer(const char *text, size_t len, const char *name, const ew_lua_opts *o,
                                     char *err, int errlen) {
    return load_any(name ? name : "<buffer>", text ? text : "", text ? len : 0, o, err, errlen);
}

void ew_scenario_destroy(ew_scenario *s) {
    if (!s) return;
    ew_lua_vm_destroy(s->vm);
    ew_replay_destroy(s->replay);
    ew_ngsim_free(s->log);
    free(s->ev);
    free(s->m);
    free(s->error);
    free(s);
}

const ew_world_config *ew_scenario_world_config(const ew_scenario *s) { return &s->wc; }
const char *ew_scenario_controller(const ew_scenario *s) { return s->ex.controller; }
const char *ew_scenario_name(const ew_scenario *s) { return s->ex.name; }
int ew_scenario_steps(const ew_scenario *s) { return s->ec.max_steps; }
uint64_t ew_scenario_seed(const ew_scenario *s) { return s->ex.seed; }
int ew_scenario_has_replay(const ew_scenario *s) { return s->replay != NULL; }
const char *ew_scenario_error(const ew_scenario *s) { return s->failed ? s->error : NULL; }
int ew_scenario_n_metrics(const ew_scenario *s) { return s->n_m; }
int64_t ew_scenario_events_fired(const ew_scenario *s) { return s->fired_total; }

void ew_scenario_episode_cfg(ew_scenario *s, ew_episode_cfg *out) {
    *out = s->ec;
    out->hook = ew_scenario_hook;
    out->hook_ctx = s;
}

int ew_scenario_metric(const ew_scenario *s, const char *name, double *out) {
    for (int k = 0; k < s->n_m; k++)
        if (strcmp(s->m[k].name, name) == 0 && s->m[k].kind != 2) {
            *out = s->m[k].v;
            return 0;
        }
    return -1;
}

const char *ew_scenario_metric_at(const ew_scenario *s, int k, int *kind, double *num, const char **str) {
    if (k < 0 || k >= s->n_m) return NULL;
    *kind = s->m[k].kind;
    *num = s->m[k].v;
    *str = s->m[k].str;
    return s->m[k].name;
}

static void json_str(FILE *out, const char *p) {
    fputc('"', out);
    for (; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\') fprintf(out, "\\%c", c);
        else if (c < 0x20) fprintf(out, "\\u%04x", c);
        else fputc(c, out);
    }
    fputc('"', out);
}

void ew_scenario_metrics_json(const ew_scenario *s, FILE *out) {
    fputc('{', out);
    for (int k = 0; k < s->n_m; k++) {
        const metric_t *m = &s->m[k];
        if (k) fputs(", ", out);
        json_str(out, m->name);
        fputs(": ", out);
        if (m->kind == 0) {
            if (isfinite(m->v)) fprintf(out, "%.17g", m->v);
            else fputs("null", out);
        } else if (m->kind == 1) {
            fputs(m->v != 0.0 ? "true" : "false", out);
        } else {
            json_str(out, m->str);
        }
    }
    fputc('}', out);
}

/* ---- running ----------------------------------------------------------------------- */

static void set_failed(ew_scenario *s, const char *msg, char *err, int errlen) {
    s->failed = 1;
    free(s->error);
    s->error = strdup(msg);
    if (err && errlen > 0) {
        size_t n = strcspn(msg, "\n");
        if (n >= (size_t)errlen) n = (size_t)errlen - 1;
        memcpy(err, msg, n);
        err[n] = 0;
    }
}

static void fail_again(const ew_scenario *s, char *err, int errlen) {
    if (!err || errlen <= 0) return;
    const char *msg = s->error ? s->error : "scenario failed";
    size_t n = strcspn(msg, "\n");
    if (n >= (size_t)errlen) n = (size_t)errlen - 1;
    memcpy(err, msg, n);
    err[n] = 0;
}

int ew_scenario_begin(ew_scenario *s, ew_world *w, char *err, int errlen) {
    if (s->failed) {
        fail_again(s, err, errlen);
        return -1;
    }
    lua_State *L = ew_lua_vm_state(s->vm);
    for (int i = s->n_ev_static; i < s->n_ev; i++) {
        luaL_unref(L, LUA_REGISTRYINDEX, s->ev[i].fn_ref);
        luaL_unref(L, LUA_REGISTRYINDEX, s->ev[i].cond_ref);
    }
    s->n_ev = s->n_ev_static;
    for (int i = 0; i < s->n_ev; i++) {
        event_t *e = &s->ev[i];
        e->fired = e->prev = 0;
        e->next = e->start;
        e->last_fire = -INFINITY;
    }
    s->n_m = s->n_m_static; /* metrics reported while loading stay */
    s->ended = 0;
    s->end_label[0] = 0;
    s->fired_total = 0;
    ew_lua_vm_seed(s->vm, ew_world_config_of(w)->seed);
    if (s->replay) {
        char e2[512];
        if (ew_replay_begin(s->replay, w, e2, sizeof e2) != 0) {
            char msg[PATH_MAX + 600];
            snprintf(msg, sizeof msg, "%s: replay: %s", s->path, e2);
            set_failed(s, msg, err, errlen);
            return -1;
        }
    }
    return 0;
}

static void call_fn(lua_State *L, ew_scenario *s, int ref, int nres) {
    long long per = ew_lua_vm_opts(s->vm)->budget_callback, give = per;
    if (per > 0) {
        if (give > s->step_left) {
            give = s->step_left > 1 ? s->step_left : 1;
            s->step_capped = 1;
        }
    }
    ew_lua_vm_set_budget(s->vm, give);
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->sim_ref);
    lua_pushnumber(L, s->now);
    lua_call(L, 2, nres);
    if (per > 0) {
        long long left = ew_lua_vm_budget_left(s->vm);
        s->step_left -= give - (left > 0 ? left : 0);
        s->step_capped = 0;
    }
}

static int dispatch(lua_State *L) {
    ew_scenario *s = lua_touserdata(L, 1);
    const double eps = 1e-9;
    for (int i = 0; i < s->n_ev && !s->ended; i++) {
        event_t *e = &s->ev[i];
        int fire = 0;
        switch (e->kind) {
        case EV_STEP:
            fire = 1;
            break;
        case EV_AT:
            fire = !e->fired && s->now >= e->t - eps;
            break;
        case EV_EVERY:
            if (s->now >= e->next - eps) {
                fire = 1;
                while (e->next <= s->now + eps) e->next += e->period;
            }
            break;
        case EV_WHEN: {
            if (e->once && e->fired) break;
            if (s->now - e->last_fire < e->cooldown - eps) break;
            call_fn(L, s, e->cond_ref, 1);
            int c = lua_toboolean(L, -1);
            lua_pop(L, 1);
            e = &s->ev[i]; /* the condition may have registered events (realloc) */
            fire = c && (e->once ? !e->fired : !e->prev);
            e->prev = c;
            break;
        }
        }
        if (!fire) continue;
        e->fired = 1;
        e->last_fire = s->now;
        s->fired_total++;
        call_fn(L, s, e->fn_ref, 0);
    }
    return 0;
}

int ew_scenario_hook(void *ctx, ew_world *w, ew_episode *ep, char *label, int labellen, char *err, int errlen) {
    ew_scenario *s = ctx;
    if (s->failed) {
        fail_again(s, err, errlen);
        return -1;
    }
    if (s->replay) {
        char e2[512];
        if (ew_replay_hook(s->replay, w, ep, label, labellen, e2, sizeof e2) != 0) {
            char msg[PATH_MAX + 600];
            snprintf(msg, sizeof msg, "%s: replay: %s", s->path, e2);
            set_failed(s, msg, err, errlen);
            return -1;
        }
    }
    if (s->n_ev == 0) return 0;
    s->w = w;
    s->ep = ep;
    s->now = ew_world_time(w);
    char msg[4096];
    long long per = ew_lua_vm_opts(s->vm)->budget_callback;
    s->step_left = per > 0 ? per * STEP_BUDGET_FACTOR : 0;
    s->step_capped = 0;
    int rc = pcall_c(s, dispatch, 0, per, msg, sizeof msg);
    s->w = NULL;
    s->ep = NULL;
    if (rc != 0 && s->step_capped && strstr(msg, "instruction budget exceeded")) {
        /* say which budget ran out: the step's, shared by all its callbacks */
        char note[160];
        snprintf(note, sizeof note, " (the callbacks of one step share %d x the per-callback budget: %lld instructions)",
                 STEP_BUDGET_FACTOR, per * STEP_BUDGET_FACTOR);
        size_t at = strcspn(msg, "\n"), nl = strlen(note), ml = strlen(msg);
        if (ml + nl < sizeof msg) {
            memmove(msg + at + nl, msg + at, ml - at + 1);
            memcpy(msg + at, note, nl);
        }
    }
    if (rc != 0) {
        set_failed(s, msg, err, errlen);
        return -1;
    }
    if (s->ended) {
        snprintf(label, (size_t)labellen, "%s", s->end_label);
        return 1;
    }
    return 0;
}

int ew_scenario_run(ew_scenario *s, const char *controller, uint64_t seed, ew_episode_metrics *m,
                    ew_world **world_out, char *err, int errlen) {
    if (world_out) *world_out = NULL;
    ew_controller ctrl;
    if (ew_controller_builtin(controller ? controller : s->ex.controller, &ctrl, err, errlen) != 0) return -1;
    ew_world_config wc = s->wc;
    wc.seed = seed;
    ew_world *w = ew_world_create(&wc, err, errlen);
    if (!w) {
        ew_controller_destroy(&ctrl);
        return -1;
    }
    ew_world_reset(w, seed);
    int rc = 0;
    if (ew_scenario_begin(s, w, err, errlen) != 0) {
        rc = -1;
        memset(m, 0, sizeof *m);
        m->status = EW_EP_ERROR;
        snprintf(m->error, sizeof m->error, "%s", err);
    } else {
        if (ctrl.reset) ctrl.reset(ctrl.ctx, w);
        ew_episode_cfg ec;
        ew_scenario_episode_cfg(s, &ec);
        ew_episode ep;
        ew_episode_begin(&ep, &ec, w);
        while (ew_episode_step(&ep, w, &ctrl)) {
        }
        *m = ep.m;
        if (m->status == EW_EP_ERROR) {
            snprintf(err, (size_t)errlen, "%s", s->failed && s->error ? s->error : m->error);
            rc = -1;
        }
    }
    ew_controller_destroy(&ctrl);
    if (world_out) *world_out = w;
    else ew_world_destroy(w);
    return rc;
}
