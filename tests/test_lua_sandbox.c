/* test_lua_sandbox.c - abuse of the scenario sandbox: runaway loops (also under pcall),
 * deep recursion, memory and string bombs, pattern backtracking, io/os/require/bytecode/
 * debug/file access, __gc finalizers, and an error in every callback type. Each ends that
 * scenario with "FILE:LINE: ..." and a traceback; the process goes on and another world in
 * the same process keeps stepping; a good scenario still runs afterwards. */
#define _DEFAULT_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lua/bindings.h"
#include "lua/scenario.h"
#include "tests/check.h"

static char dir[64];

static const char *HEAD = "road { lanes = 2, length = 600 }\n"
                          "traffic { density = 10, flow = 600 }\n"
                          "episode { steps = 60 }\n";

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

static ew_world *other; /* the bystander world */

static void bystander_steps(void) {
    float x0 = ew_world_ego(other)->x;
    for (int k = 0; k < 10; k++) {
        ew_action u;
        ew_world_ego_idm_action(other, &u);
        ew_world_step(other, &u);
    }
    CHECK(ew_world_ego(other)->x > x0 + 1.0f, "the other world keeps stepping");
}

/* body: appended after HEAD (line 4 on). at_load: the failure is at load time. */
static void expect_failure(const char *name, const char *body, int at_load, int line, const char *needle,
                           size_t mem_cap) {
    char path[128], text[4096], want[256];
    snprintf(path, sizeof path, "%s/%s.lua", dir, name);
    snprintf(text, sizeof text, "%s%s", HEAD, body);
    write_file(path, text);
    /* line > 0: "FILE:LINE:"; 0: "FILE:" (configuration errors); -1: also no traceback (syntax) */
    if (line > 0) snprintf(want, sizeof want, "%s:%d:", path, line);
    else snprintf(want, sizeof want, "%s:", path);
    ew_lua_opts o;
    ew_lua_opts_default(&o);
    o.budget_load = 2000000;
    o.budget_callback = 2000000;
    if (mem_cap) {
        o.mem_cap = mem_cap;
        o.budget_callback = 500000000; /* memory runs out first */
    }
    char err[8192] = "";
    ew_scenario *s = ew_scenario_load(path, &o, err, sizeof err);
    const char *msg = err;
    if (at_load) {
        CHECK(s == NULL, "%s: should fail while loading", name);
    } else {
        CHECK(s != NULL, "%s: loads: %s", name, err);
        if (s) {
            ew_episode_metrics m;
            int rc = ew_scenario_run(s, NULL, 1, &m, NULL, err, sizeof err);
            CHECK(rc != 0 && m.status == EW_EP_ERROR, "%s: the episode ends with an error (%s)", name,
                  ew_episode_status_name(m.status));
            CHECK(strstr(m.error, want) != NULL, "%s: episode error names %s: %s", name, want, m.error);
            msg = ew_scenario_error(s) ? ew_scenario_error(s) : "";
            /* the scenario stays failed */
            ew_episode_metrics m2;
            char e2[512];
            CHECK(ew_scenario_run(s, NULL, 2, &m2, NULL, e2, sizeof e2) != 0, "%s: stays failed", name);
        }
    }
    CHECK(strstr(msg, want) != NULL, "%s: message names %s: %s", name, want, msg);
    CHECK(strstr(msg, needle) != NULL, "%s: message has '%s': %s", name, needle, msg);
    if (line >= 0) CHECK(strstr(msg, "stack traceback") != NULL, "%s: traceback: %s", name, msg);
    ew_scenario_destroy(s);
    bystander_steps();
    unlink(path);
}

static void test_good_still_runs(void) {
    char path[128];
    snprintf(path, sizeof path, "%s/good.lua", dir);
    char text[1024];
    snprintf(text, sizeof text, "%sat(1.0, function(sim) metric('ok', sim:time()) end)\n", HEAD);
    write_file(path, text);
    char err[4096];
    ew_scenario *s = ew_scenario_load(path, NULL, err, sizeof err);
    CHECK(s != NULL, "good: %s", err);
    if (s) {
        ew_episode_metrics m;
        CHECK(ew_scenario_run(s, NULL, 1, &m, NULL, err, sizeof err) == 0, "good runs: %s", err);
        double v = 0;
        CHECK(ew_scenario_metric(s, "ok", &v) == 0 && v > 0.99 && v < 1.01, "good metric %g", v);
    }
    ew_scenario_destroy(s);
    unlink(path);
}

static void test_read_grant(void) {
    /* a granted folder: readfile and dofile work inside it, not outside */
    char data[128], path[128], text[1024];
    snprintf(data, sizeof data, "%s/data.lua", dir);
    write_file(data, "return 42\n");
    snprintf(path, sizeof path, "%s/grant.lua", dir);
    snprintf(text, sizeof text,
             "%smetric('v', dofile('%s'))\nmetric('n', #readfile('%s'))\n"
             "local ok, e = pcall(readfile, '/etc/hostname')\nmetric('outside_refused', not ok)\n"
             "local ok2 = pcall(readfile, '%s/../%s/data.lua')\nmetric('dotdot_inside_ok', ok2)\n",
             HEAD, data, data, dir, dir + 5);
    write_file(path, text);
    ew_lua_opts o;
    ew_lua_opts_default(&o);
    o.read_dir = dir;
    char err[4096];
    ew_scenario *s = ew_scenario_load(path, &o, err, sizeof err);
    CHECK(s != NULL, "grant: %s", err);
    double v = 0;
    if (s) {
        CHECK(ew_scenario_metric(s, "v", &v) == 0 && v == 42.0, "dofile inside the grant: %g", v);
        CHECK(ew_scenario_metric(s, "n", &v) == 0 && v == 10.0, "readfile: %g bytes", v);
        CHECK(ew_scenario_metric(s, "outside_refused", &v) == 0 && v == 1.0, "outside refused");
    }
    ew_scenario_destroy(s);
    unlink(data);
    unlink(path);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/ew_sandbox_XXXXXX");
    if (!mkdtemp(dir)) {
        CHECK(0, "mkdtemp");
        return check_done();
    }
    char err[512];
    ew_world_config wc;
    ew_world_config_default(&wc);
    other = ew_world_create(&wc, err, sizeof err);
    CHECK(other != NULL, "bystander: %s", err);
    if (!other) return check_done();

    /* runaway loops */
    expect_failure("loop_load", "local i = 0\nwhile true do i = i + 1 end\n", 1, 5, "instruction budget exceeded", 0);
    expect_failure("loop_at", "at(0.5, function(sim)\n  while true do end\nend)\n", 0, 5, "instruction budget exceeded", 0);
    expect_failure("loop_pcall",
                   "at(0.5, function(sim)\n  while true do pcall(function() while true do end end) end\nend)\n", 0, 5,
                   "instruction budget exceeded", 0);
    expect_failure("loop_coroutine",
                   "on_step(function()\n  local co = coroutine.wrap(function() while true do end end)\n  co()\nend)\n",
                   0, 5, "instruction budget exceeded", 0);
    /* deep recursion */
    expect_failure("recursion", "local function f(n) return f(n + 1) + 1 end\non_step(function() f(1) end)\n", 0, 4,
                   "stack overflow", 0);
    /* memory and string bombs (32 MiB cap) */
    expect_failure("membomb",
                   "every(1.0, function()\n  local t = {}\n  while true do t[#t + 1] = { 1, 2, 3, 4 } end\nend)\n", 0, 6,
                   "memory cap", (size_t)32 << 20);
    expect_failure("strbomb", "at(0.2, function()\n  local s = 'x'\n  while true do s = s .. s end\nend)\n", 0, 6,
                   "memory cap", (size_t)32 << 20);
    expect_failure("strrep", "on_step(function()\n  local s = string.rep('x', 1e12)\nend)\n", 0, 5,
                   "exceeds the memory cap", (size_t)32 << 20);
    expect_failure("pattern", "at(0, function()\n  local s = ('a'):rep(20000)\n  s:find('.-.-.-.-b')\nend)\n", 0, 6,
                   "pattern matching", 0);
    /* forbidden libraries and operations */
    expect_failure("io", "local f = io.open('/etc/passwd')\n", 1, 4, "global 'io'", 0);
    expect_failure("os_execute", "os.execute('echo hi')\n", 1, 4, "field 'execute'", 0);
    expect_failure("os_getenv", "at(0, function() return os.getenv('HOME') end)\n", 0, 4, "field 'getenv'", 0);
    expect_failure("os_exit", "os.exit(3)\n", 1, 4, "field 'exit'", 0);
    expect_failure("os_remove", "on_step(function() os.remove('/tmp/x') end)\n", 0, 4, "field 'remove'", 0);
    expect_failure("require_c", "local m = require('socket.core')\n", 1, 4, "not found", 0);
    expect_failure("loadlib", "package.loadlib('libc.so.6', 'system')\n", 1, 4, "global 'package'", 0);
    expect_failure("bytecode", "assert(load('\\27LuaT\\0', 'x', 'b'))\n", 1, 4, "only text chunks", 0);
    expect_failure("bytecode_t", "local f, e = load('\\27LuaT\\0')\nerror(e)\n", 1, 5, "binary chunk", 0);
    expect_failure("dump", "local b = string.dump(function() end)\n", 1, 4, "field 'dump'", 0);
    expect_failure("debug", "debug.sethook()\n", 1, 4, "global 'debug'", 0);
    expect_failure("dofile", "dofile('/etc/passwd')\n", 1, 4, "not granted", 0);
    expect_failure("loadfile", "local f = loadfile('/etc/passwd')\n", 1, 4, "not granted", 0);
    expect_failure("gc", "setmetatable({}, { __gc = function() while true do end end })\n", 1, 4, "__gc", 0);
    /* an error in each callback type */
    expect_failure("err_at", "at(0.3, function(sim)\n  error('boom at')\nend)\n", 0, 5, "boom at", 0);
    expect_failure("err_when_cond", "when(function(sim)\n  return nil + 1\nend, function() end)\n", 0, 5,
                   "arithmetic on a nil value", 0);
    expect_failure("err_when_fn", "when(function(sim) return sim:time() > 0.5 end, function(sim)\n  error('boom when')\nend)\n",
                   0, 5, "boom when", 0);
    expect_failure("err_every", "every(0.5, function(sim)\n  local v = sim:vehicle('x')\nend)\n", 0, 5,
                   "bad argument #1 to 'vehicle'", 0);
    expect_failure("err_step", "on_step(function(sim, t)\n  if t > 0.2 then error('boom step') end\nend)\n", 0, 5,
                   "boom step", 0);
    expect_failure("err_load", "road { lanes = 'three' }\n", 1, 0, "road.lanes must be a number", 0);
    expect_failure("syntax", "at(1, function() end\n", 1, -1, "expected", 0);
    expect_failure("unknown_field", "traffic { densty = 3 }\n", 1, 0, "unknown field 'densty'", 0);
    /* the world outside events */
    expect_failure("sim_at_load", "local e = sim:ego()\n", 1, 4, "only available inside event callbacks", 0);

    test_read_grant();
    test_good_still_runs();
    bystander_steps();
    ew_world_destroy(other);
    rmdir(dir);
    return check_done();
}
