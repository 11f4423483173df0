/* vm.h - one Lua 5.4 state with a memory cap, an instruction budget and (by default) a
 * sandbox; the base every egoworld Lua state (scenario or program) is built on.
 *
 * Memory: a custom lua_Alloc counts live bytes and refuses growth beyond mem_cap (Lua then
 * raises "not enough memory", which unwinds cleanly); the count hook also fails a script that
 * stays above 7/8 of the cap after a full collection, with its file:line.
 * Instructions: a count hook every EW_LUA_HOOK_EVERY VM instructions charges the budget of
 * the current call; when it runs out the hook raises "instruction budget exceeded" at the
 * running line and keeps raising on every instruction, so pcall loops cannot swallow it.
 * Sandbox (sandbox = 1): base (without dofile/loadfile/collectgarbage options other than
 * count/collect/step), string (without dump; rep and the pattern functions cost-checked),
 * table, math (random seeded from the seed), utf8, coroutine, os = {clock, time, date,
 * difftime}; load() accepts text chunks only; setmetatable() refuses __gc (finalizers run with
 * hooks off); no io, debug, package, require of C modules. dofile, loadfile, readfile and
 * require read only files under read_dir (resolved with realpath). print() writes to stderr.
 * sandbox = 0 opens every standard library (the user's own programs).
 * Errors come back as "FILE:LINE: message" followed by a stack traceback.
 */
#ifndef EW_LUA_VM_H
#define EW_LUA_VM_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>

#define EW_LUA_HOOK_EVERY 1000

typedef struct {
    int sandbox;              /* 1 (default): the sandbox above; 0: full standard libraries */
    const char *read_dir;     /* folder granted for reads (NULL: none) */
    long long budget_load;    /* instructions for running a scenario file (100M); 0: unlimited */
    long long budget_callback;/* instructions per event callback (10M); 0: unlimited */
    size_t mem_cap;           /* bytes (256 MiB); 0: unlimited */
    int has_seed;             /* seed given (command line): overrides the scenario's */
    uint64_t seed;
    int argc;                 /* script arguments, visible as the table `args` (and `arg`) */
    char **argv;
} ew_lua_opts;

void ew_lua_opts_default(ew_lua_opts *o);

typedef struct ew_lua_vm ew_lua_vm;

ew_lua_vm *ew_lua_vm_create(const ew_lua_opts *o, char *err, int errlen);
void ew_lua_vm_destroy(ew_lua_vm *vm);
lua_State *ew_lua_vm_state(ew_lua_vm *vm);
/* The vm owning L (every state made here stores it as its allocator's userdata). */
ew_lua_vm *ew_lua_vm_of(lua_State *L);
/* Calls the function below nargs arguments like lua_pcall with a traceback handler and a
 * budget (> 0: instructions for this call; 0: unlimited; < 0: keep the caller's budget, for
 * calls nested in a running call). On error: -1, the full message in err, stack cleaned. */
int ew_lua_vm_pcall(ew_lua_vm *vm, int nargs, int nresults, long long budget, char *err, int errlen);
/* Loads a text chunk from a file (chunk name "@path") and leaves the function on the stack. */
int ew_lua_vm_loadfile(ew_lua_vm *vm, const char *path, char *err, int errlen);
/* The same for text in memory (chunk name "@name"; NULL: "<buffer>"); binary chunks refused. */
int ew_lua_vm_loadbuffer(ew_lua_vm *vm, const char *text, size_t len, const char *name, char *err, int errlen);
/* 1 when path (resolved) lies under the granted read_dir; resolved path in out. */
int ew_lua_vm_may_read(ew_lua_vm *vm, const char *path, char *out, size_t outlen);
size_t ew_lua_vm_mem_used(const ew_lua_vm *vm);
const ew_lua_opts *ew_lua_vm_opts(const ew_lua_vm *vm);
/* Inside a running protected call: gives the code that runs next a fresh budget
 * (> 0 instructions, 0 unlimited); used per event callback. */
void ew_lua_vm_set_budget(ew_lua_vm *vm, long long budget);
/* Instructions left in the current budget (< 0 once exhausted; -1 when unlimited). */
long long ew_lua_vm_budget_left(const ew_lua_vm *vm);
/* Reseeds math.random (scenario begin). */
void ew_lua_vm_seed(ew_lua_vm *vm, uint64_t seed);

#endif
