/* vm.c - Lua states with a memory cap, an instruction budget and the sandbox (see vm.h). */
#define _DEFAULT_SOURCE /* realpath */
#include "lua/vm.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

struct ew_lua_vm {
    lua_State *L;
    ew_lua_opts o;
    char read_dir[PATH_MAX];
    int has_read_dir;
    size_t used, cap;
    int limited;           /* the current call has a budget */
    long long budget;      /* instructions left */
    int exhausted;
    int mem_refused;
    int near;              /* memory passed half the cap: the hook samples at the next instruction */
    int count_now;         /* the hook's current instruction count */
    char where[256];       /* last sampled "file:line" */
};

void ew_lua_opts_default(ew_lua_opts *o) {
    memset(o, 0, sizeof *o);
    o->sandbox = 1;
    o->budget_load = 100000000LL;
    o->budget_callback = 10000000LL;
    o->mem_cap = (size_t)256 << 20;
    o->seed = 1;
}

static void vm_hook(lua_State *L, lua_Debug *ar);
static lua_Hook vm_hook_fwd(ew_lua_vm *vm) {
    (void)vm;
    return vm_hook;
}

static void *vm_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    ew_lua_vm *vm = ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        free(ptr);
        vm->used -= old;
        return NULL;
    }
    if (vm->cap && nsize > old && vm->used - old + nsize > vm->cap) {
        vm->mem_refused = 1;
        return NULL;
    }
    if (vm->cap && vm->L && !vm->near && vm->used - old + nsize > vm->cap / 2) {
        /* lua_sethook is safe at any point (it only sets fields): sample the line and check
         * the soft cap at the very next instruction */
        vm->near = 1;
        vm->count_now = 1;
        lua_sethook(vm->L, vm_hook_fwd(vm), LUA_MASKCOUNT, 1);
    }
    void *p = realloc(ptr, nsize);
    if (!p) return NULL;
    vm->used = vm->used - old + nsize;
    return p;
}

ew_lua_vm *ew_lua_vm_of(lua_State *L) {
    void *ud = NULL;
    lua_getallocf(L, &ud);
    return ud;
}

static void set_where(ew_lua_vm *vm, lua_Debug *ar) {
    if (ar->currentline > 0) snprintf(vm->where, sizeof vm->where, "%s:%d", ar->short_src, ar->currentline);
}

static void vm_hook(lua_State *L, lua_Debug *ar) {
    ew_lua_vm *vm = ew_lua_vm_of(L);
    if (lua_getinfo(L, "Sl", ar)) set_where(vm, ar);
    int counted = vm->count_now > 0 ? vm->count_now : EW_LUA_HOOK_EVERY;
    if (vm->count_now == 1 && !vm->exhausted) {
        vm->count_now = EW_LUA_HOOK_EVERY; /* back to the normal rate after a memory sample */
        lua_sethook(L, vm_hook, LUA_MASKCOUNT, EW_LUA_HOOK_EVERY);
    }
    if (vm->near && vm->used < vm->cap / 4) vm->near = 0;
    if (vm->limited) {
        vm->budget -= counted;
        if (vm->budget < 0) {
            if (!vm->exhausted) {
                vm->exhausted = 1;
                vm->count_now = 1;
                lua_sethook(L, vm_hook, LUA_MASKCOUNT, 1); /* fail at every instruction from now on */
            }
            lua_pushfstring(L, "%s: instruction budget exceeded", vm->where);
            lua_error(L);
        }
    }
    if (vm->cap && vm->used > vm->cap - vm->cap / 8) {
        lua_gc(L, LUA_GCCOLLECT);
        if (vm->used > vm->cap - vm->cap / 8) {
            lua_pushfstring(L, "%s: memory cap of %d MiB exceeded", vm->where, (int)(vm->cap >> 20));
            lua_error(L);
        }
    }
}

static int vm_msgh(lua_State *L) {
    const char *msg = lua_tostring(L, 1);
    if (!msg) msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    luaL_traceback(L, L, msg, 1);
    return 1;
}

int ew_lua_vm_pcall(ew_lua_vm *vm, int nargs, int nresults, long long budget, char *err, int errlen) {
    lua_State *L = vm->L;
    int saved_limited = vm->limited, saved_exh = vm->exhausted;
    long long saved_budget = vm->budget;
    if (budget >= 0) {
        vm->limited = budget > 0;
        vm->budget = budget;
        vm->exhausted = 0;
        vm->count_now = EW_LUA_HOOK_EVERY;
        lua_sethook(L, vm_hook, LUA_MASKCOUNT, EW_LUA_HOOK_EVERY);
    }
    vm->mem_refused = 0;
    /* the location until the hook samples one: where the called function was defined */
    lua_Debug ar;
    lua_pushvalue(L, -(nargs + 1));
    if (lua_getinfo(L, ">S", &ar) && ar.linedefined > 0)
        snprintf(vm->where, sizeof vm->where, "%s:%d", ar.short_src, ar.linedefined);
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, vm_msgh);
    lua_insert(L, base);
    int rc = lua_pcall(L, nargs, nresults, base);
    lua_remove(L, base);
    if (budget >= 0) {
        vm->limited = saved_limited;
        vm->budget = saved_budget;
        vm->exhausted = saved_exh;
        vm->count_now = saved_exh ? 1 : EW_LUA_HOOK_EVERY;
        lua_sethook(L, vm_hook, LUA_MASKCOUNT, vm->count_now);
    }
    if (rc == LUA_OK) return 0;
    /* a refused allocation caught by an inner pcall leaves mem_refused set: only an error that
     * is still the memory error (also when re-raised) is reported as one */
    const char *m0 = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    if (rc == LUA_ERRMEM || (vm->mem_refused && m0 && strncmp(m0, "not enough memory", 17) == 0)) {
        if (err && errlen > 0)
            snprintf(err, (size_t)errlen, "%s: memory cap of %zu MiB exceeded (not enough memory)\n"
                     "stack traceback:\n\t(not available after a memory error; the location is the last "
                     "line sampled)", vm->where, vm->cap >> 20);
    } else if (err && errlen > 0) {
        const char *m = lua_tostring(L, -1);
        snprintf(err, (size_t)errlen, "%s", m ? m : "(error without a message)");
    }
    lua_pop(L, 1);
    lua_gc(L, LUA_GCCOLLECT);
    return -1;
}

int ew_lua_vm_loadfile(ew_lua_vm *vm, const char *path, char *err, int errlen) {
    int rc = luaL_loadfilex(vm->L, path, "t");
    if (rc != LUA_OK) {
        const char *m = lua_tostring(vm->L, -1);
        snprintf(err, (size_t)errlen, "%s", m ? m : "cannot load");
        lua_pop(vm->L, 1);
        return -1;
    }
    return 0;
}

int ew_lua_vm_loadbuffer(ew_lua_vm *vm, const char *text, size_t len, const char *name, char *err, int errlen) {
    char chunk[PATH_MAX + 2];
    snprintf(chunk, sizeof chunk, "@%s", name ? name : "<buffer>");
    int rc = luaL_loadbufferx(vm->L, text, len, chunk, "t");
    if (rc != LUA_OK) {
        const char *m = lua_tostring(vm->L, -1);
        snprintf(err, (size_t)errlen, "%s", m ? m : "cannot load");
        lua_pop(vm->L, 1);
        return -1;
    }
    return 0;
}

int ew_lua_vm_may_read(ew_lua_vm *vm, const char *path, char *out, size_t outlen) {
    if (!vm->has_read_dir) return 0;
    char rp[PATH_MAX];
    if (!realpath(path, rp)) return 0;
    size_t n = strlen(vm->read_dir);
    if (strncmp(rp, vm->read_dir, n) != 0 || (rp[n] != '/' && rp[n] != 0)) return 0;
    if (strlen(rp) + 1 > outlen) return 0;
    memcpy(out, rp, strlen(rp) + 1);
    return 1;
}

void ew_lua_vm_set_budget(ew_lua_vm *vm, long long budget) {
    vm->limited = budget > 0;
    vm->budget = budget;
    vm->exhausted = 0;
    vm->count_now = EW_LUA_HOOK_EVERY;
    lua_sethook(vm->L, vm_hook, LUA_MASKCOUNT, EW_LUA_HOOK_EVERY);
}

long long ew_lua_vm_budget_left(const ew_lua_vm *vm) { return vm->limited ? vm->budget : -1; }

size_t ew_lua_vm_mem_used(const ew_lua_vm *vm) { return vm->used; }
const ew_lua_opts *ew_lua_vm_opts(const ew_lua_vm *vm) { return &vm->o; }
lua_State *ew_lua_vm_state(ew_lua_vm *vm) { return vm->L; }

void ew_lua_vm_seed(ew_lua_vm *vm, uint64_t seed) {
    lua_State *L = vm->L;
    if (lua_getglobal(L, "math") == LUA_TTABLE && lua_getfield(L, -1, "randomseed") == LUA_TFUNCTION) {
        lua_pushinteger(L, (lua_Integer)(seed & 0x7fffffffffffffffULL));
        lua_pushinteger(L, 0x5eed);
        lua_call(L, 2, 0);
        lua_pop(L, 1);
    } else {
        lua_pop(L, 2);
    }
}

/* ---- sandbox functions ---------------------------------------------------------------- */

static int sb_print(lua_State *L) {
    int n = lua_gettop(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; i++) {
        size_t l;
        const char *s = luaL_tolstring(L, i, &l);
        if (i > 1) luaL_addchar(&b, '\t');
        luaL_addvalue(&b);
        (void)s;
        (void)l;
    }
    luaL_pushresult(&b);
    fprintf(stderr, "[lua] %s\n", lua_tostring(L, -1));
    return 0;
}

static int sb_load(lua_State *L) {
    const char *mode = luaL_optstring(L, 3, "t");
    if (strcmp(mode, "t") != 0) return luaL_error(L, "load: only text chunks are allowed (mode \"t\"), got \"%s\"", mode);
    int has_env = !lua_isnone(L, 4);
    lua_settop(L, 4);
    lua_pushvalue(L, lua_upvalueindex(1)); /* the original load */
    lua_pushvalue(L, 1);
    if (lua_isnoneornil(L, 2)) lua_pushstring(L, "=(load)");
    else lua_pushvalue(L, 2);
    lua_pushstring(L, "t");
    if (has_env) lua_pushvalue(L, 4);
    lua_call(L, has_env ? 4 : 3, 2);
    return 2;
}

static int sb_setmetatable(lua_State *L) {
    if (lua_istable(L, 2)) {
        lua_pushliteral(L, "__gc");
        int has_gc = lua_rawget(L, 2) != LUA_TNIL; /* raw, as Lua itself checks it */
        lua_pop(L, 1);
        if (has_gc) return luaL_error(L, "setmetatable: __gc metamethods are not allowed in the sandbox");
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

static int sb_collectgarbage(lua_State *L) {
    const char *opt = luaL_optstring(L, 1, "collect");
    if (strcmp(opt, "collect") && strcmp(opt, "count") && strcmp(opt, "step") && strcmp(opt, "isrunning"))
        return luaL_error(L, "collectgarbage: option '%s' is not allowed in the sandbox", opt);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
}

/* string.rep with the size checked against the memory left (a clean error with a line). */
static int sb_rep(lua_State *L) {
    ew_lua_vm *vm = ew_lua_vm_of(L);
    size_t l, ls = 0;
    luaL_checklstring(L, 1, &l);
    lua_Integer n = luaL_checkinteger(L, 2);
    luaL_optlstring(L, 3, "", &ls);
    if (n > 0 && vm->cap) {
        double total = (double)n * (double)(l + ls);
        double left = (double)vm->cap - (double)vm->used;
        if (total > left) return luaL_error(L, "string.rep: a %f-byte string exceeds the memory cap", total);
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

/* Pattern functions run in C, outside the instruction budget: refuse subject/pattern
 * combinations whose worst-case backtracking could exceed the budget left. */
static int sb_pattern(lua_State *L) {
    ew_lua_vm *vm = ew_lua_vm_of(L);
    size_t n = 0, pl = 0;
    if (lua_type(L, 1) == LUA_TSTRING) lua_tolstring(L, 1, &n);
    const char *p = lua_type(L, 2) == LUA_TSTRING ? lua_tolstring(L, 2, &pl) : NULL;
    int q = 0;
    for (size_t i = 0; p && i < pl; i++) {
        if (p[i] == '%') {
            i++;
            continue;
        }
        if (p[i] == '*' || p[i] == '-' || p[i] == '+' || p[i] == '?') q++;
    }
    double cost = pow((double)n + 1.0, (double)(q < 6 ? q : 6) + 1.0);
    double allowed = vm->limited ? fmax((double)vm->budget, 0.0) * 10.0 : 1e12;
    if (cost > allowed && cost > 1e6)
        return luaL_error(L, "pattern matching: %d quantifiers on a %d-byte subject may backtrack too long for the "
                             "sandbox", q, (int)n);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
}

static int read_checked(lua_State *L, const char *path, char *rp, size_t rplen) {
    ew_lua_vm *vm = ew_lua_vm_of(L);
    if (!vm->has_read_dir)
        return luaL_error(L, "file access is not granted (no read folder; see --allow-read): '%s'", path);
    if (!ew_lua_vm_may_read(vm, path, rp, rplen))
        return luaL_error(L, "'%s' is not a readable file under the granted folder %s", path, vm->read_dir);
    return 0;
}

static int sb_readfile(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    char rp[PATH_MAX];
    read_checked(L, path, rp, sizeof rp);
    FILE *f = fopen(rp, "rb");
    if (!f) return luaL_error(L, "readfile: cannot open '%s': %s", path, strerror(errno));
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    char chunk[4096];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) luaL_addlstring(&b, chunk, got);
    fclose(f);
    luaL_pushresult(&b);
    return 1;
}

static int sb_loadfile(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    char rp[PATH_MAX];
    read_checked(L, path, rp, sizeof rp);
    const char *mode = luaL_optstring(L, 2, "t");
    if (strcmp(mode, "t") != 0) return luaL_error(L, "loadfile: only text chunks are allowed");
    if (luaL_loadfilex(L, rp, "t") != LUA_OK) return lua_error(L);
    if (!lua_isnoneornil(L, 3)) {
        lua_pushvalue(L, 3);
        if (!lua_setupvalue(L, -2, 1)) lua_pop(L, 1);
    }
    return 1;
}

static int sb_dofile(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    char rp[PATH_MAX];
    read_checked(L, path, rp, sizeof rp);
    lua_settop(L, 1);
    if (luaL_loadfilex(L, rp, "t") != LUA_OK) return lua_error(L);
    lua_call(L, 0, LUA_MULTRET);
    return lua_gettop(L) - 1;
}

/* require(name): package.preload entries (egoworld), else NAME.lua (dots as folders) under
 * the granted folder; results cached in package.loaded. */
static int sb_require(lua_State *L) {
    const char *name = luaL_checkstring(L, 1);
    lua_settop(L, 1);
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    if (lua_getfield(L, 2, name) != LUA_TNIL) return 1;
    lua_pop(L, 1);
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    if (lua_getfield(L, -1, name) == LUA_TFUNCTION) {
        lua_pushstring(L, name);
        lua_call(L, 1, 1);
    } else {
        lua_pop(L, 2);
        ew_lua_vm *vm = ew_lua_vm_of(L);
        if (!vm->has_read_dir) return luaL_error(L, "module '%s' not found (no folder granted for reads)", name);
        char rel[2 * PATH_MAX + 8];
        size_t nl = strlen(name);
        if (nl > 200) return luaL_error(L, "module name too long");
        char mod[256];
        for (size_t i = 0; i <= nl; i++) mod[i] = name[i] == '.' ? '/' : name[i];
        int w = snprintf(rel, sizeof rel, "%s/%s.lua", vm->read_dir, mod);
        if (w < 0 || (size_t)w >= sizeof rel) return luaL_error(L, "module path too long");
        char rp[PATH_MAX];
        if (!ew_lua_vm_may_read(vm, rel, rp, sizeof rp))
            return luaL_error(L, "module '%s' not found under the granted folder %s", name, vm->read_dir);
        if (luaL_loadfilex(L, rp, "t") != LUA_OK) return lua_error(L);
        lua_pushstring(L, name);
        lua_call(L, 1, 1);
    }
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_pushboolean(L, 1);
    }
    lua_pushvalue(L, -1);
    lua_setfield(L, 2, name);
    return 1;
}

/* Replaces t[name] by a C closure with the old value as upvalue 1. */
static void wrap(lua_State *L, int t, const char *name, lua_CFunction f) {
    lua_getfield(L, t, name);
    lua_pushcclosure(L, f, 1);
    lua_setfield(L, t, name);
}

static void open_sandbox(lua_State *L) {
    static const luaL_Reg libs[] = {{LUA_GNAME, luaopen_base},        {LUA_TABLIBNAME, luaopen_table},
                                    {LUA_STRLIBNAME, luaopen_string}, {LUA_MATHLIBNAME, luaopen_math},
                                    {LUA_UTF8LIBNAME, luaopen_utf8},  {LUA_COLIBNAME, luaopen_coroutine},
                                    {NULL, NULL}};
    for (const luaL_Reg *l = libs; l->func; l++) {
        luaL_requiref(L, l->name, l->func, 1);
        lua_pop(L, 1);
    }
    lua_pushglobaltable(L);
    int g = lua_gettop(L);
    wrap(L, g, "load", sb_load);
    wrap(L, g, "setmetatable", sb_setmetatable);
    wrap(L, g, "collectgarbage", sb_collectgarbage);
    lua_pushcfunction(L, sb_print);
    lua_setfield(L, g, "print");
    lua_pushcfunction(L, sb_dofile);
    lua_setfield(L, g, "dofile");
    lua_pushcfunction(L, sb_loadfile);
    lua_setfield(L, g, "loadfile");
    lua_pushcfunction(L, sb_readfile);
    lua_setfield(L, g, "readfile");
    lua_pushcfunction(L, sb_require);
    lua_setfield(L, g, "require");
    /* string: no dump; rep and patterns checked; the string metatable is locked */
    lua_getfield(L, g, "string");
    int s = lua_gettop(L);
    lua_pushnil(L);
    lua_setfield(L, s, "dump");
    wrap(L, s, "rep", sb_rep);
    wrap(L, s, "find", sb_pattern);
    wrap(L, s, "match", sb_pattern);
    wrap(L, s, "gmatch", sb_pattern);
    wrap(L, s, "gsub", sb_pattern);
    lua_pushliteral(L, "");
    if (lua_getmetatable(L, -1)) {
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "__metatable");
        lua_pop(L, 1);
    }
    lua_pop(L, 2);
    /* os: clocks and dates only */
    luaL_requiref(L, "os_full", luaopen_os, 0);
    lua_newtable(L);
    static const char *const keep[] = {"clock", "time", "date", "difftime", NULL};
    for (int i = 0; keep[i]; i++) {
        lua_getfield(L, -2, keep[i]);
        lua_setfield(L, -2, keep[i]);
    }
    lua_setfield(L, g, "os");
    lua_pop(L, 1);
    /* package.loaded / preload exist for require (the tables only; no loaders, no cpath) */
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_pop(L, 1);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pop(L, 1);
    lua_pop(L, 1); /* globals */
}

ew_lua_vm *ew_lua_vm_create(const ew_lua_opts *o, char *err, int errlen) {
    ew_lua_vm *vm = calloc(1, sizeof *vm);
    if (!vm) {
        snprintf(err, (size_t)errlen, "lua: out of memory");
        return NULL;
    }
    if (o) vm->o = *o;
    else ew_lua_opts_default(&vm->o);
    vm->o.read_dir = NULL;
    if (o && o->read_dir) {
        if (!realpath(o->read_dir, vm->read_dir)) {
            snprintf(err, (size_t)errlen, "granted read folder '%s': %s", o->read_dir, strerror(errno));
            free(vm);
            return NULL;
        }
        vm->has_read_dir = 1;
        vm->o.read_dir = vm->read_dir;
    }
    vm->cap = vm->o.mem_cap;
    snprintf(vm->where, sizeof vm->where, "?");
    vm->L = lua_newstate(vm_alloc, vm);
    if (!vm->L) {
        snprintf(err, (size_t)errlen, "lua: cannot create a state (memory cap %zu bytes too small?)", vm->cap);
        free(vm);
        return NULL;
    }
    lua_State *L = vm->L;
    vm->count_now = EW_LUA_HOOK_EVERY;
    lua_sethook(L, vm_hook, LUA_MASKCOUNT, EW_LUA_HOOK_EVERY);
    if (vm->o.sandbox) {
        open_sandbox(L);
    } else {
        luaL_openlibs(L);
    }
    ew_lua_vm_seed(vm, vm->o.seed);
    /* args: the script's arguments (1-based), also as `arg` */
    lua_createtable(L, vm->o.argc, 0);
    for (int i = 0; i < vm->o.argc; i++) {
        lua_pushstring(L, vm->o.argv[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_pushvalue(L, -1);
    lua_setglobal(L, "arg");
    lua_setglobal(L, "args");
    return vm;
}

void ew_lua_vm_destroy(ew_lua_vm *vm) {
    if (!vm) return;
    if (vm->L) {
        vm->limited = 0;
        vm->cap = 0; /* finalizers at close may allocate */
        lua_close(vm->L);
    }
    free(vm);
}
