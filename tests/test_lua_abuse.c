/* test_lua_abuse.c - hostile Lua beyond tests/test_lua_sandbox.c (which covers runaway loops,
 * recursion, memory/string/pattern bombs and forbidden libraries in scenario events):
 *  - programs (egoworld lua): the episode on_step callback raising errors of every kind
 *    (strings, non-strings, a __tostring that itself fails), looping, recursing, bombing
 *    memory, reaching for io/os/require/load/debug, and destroying what it runs on: closing
 *    its own World (directly or through a <close> variable), closing the Controller in use,
 *    starting a nested episode on the same World, nesting episodes without end;
 *  - scenarios: non-string errors from every event type, a `sim` kept after its world was
 *    destroyed, events that register events without end, yields from callbacks.
 * Each case ends with a clear error (checked), and afterwards other worlds and a good program
 * and scenario in the same process still work. Leaks are checked by the sanitizer pass
 * (LeakSanitizer) and valgrind (docs/RELIABILITY.md). */
#define _DEFAULT_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lua/bindings.h"
#include "lua/scenario.h"
#include "sim/world.h"
#include "tests/check.h"

static char dir[64];
static ew_world *other; /* a bystander world stepped between the cases */

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

static void bystander_steps(const char *after) {
    float x0 = ew_world_ego(other)->x;
    ew_action a = {0.0f, 0.0f};
    for (int i = 0; i < 10; i++) ew_world_step(other, &a);
    CHECK(ew_world_ego(other)->x > x0 + 1.0f, "the bystander world keeps stepping after %s", after);
}

/* Runs a program (64 MiB cap, 20 M instructions); expect_ok: it must succeed (its own asserts
 * check the episode's error), else it must fail with needle in the message. */
static void program(const char *name, const char *body, int expect_ok, const char *needle) {
    char path[128], err[4096] = "";
    snprintf(path, sizeof path, "%s/%s.lua", dir, name);
    write_file(path, body);
    ew_lua_opts o;
    ew_lua_opts_default(&o);
    o.mem_cap = (size_t)64 << 20;
    o.budget_load = 20000000;
    o.read_dir = dir;
    int rc = ew_lua_run_program(path, &o, err, sizeof err);
    unlink(path);
    if (expect_ok) {
        CHECK(rc == 0, "%s: the program survives the failed episode: %s", name, err);
    } else {
        CHECK(rc != 0, "%s: the program fails", name);
        CHECK(strstr(err, needle) != NULL, "%s: message has '%s': %s", name, needle, err);
        char want[64];
        snprintf(want, sizeof want, "%s.lua:", name);
        CHECK(strstr(err, want) != NULL, "%s: message names the file and line: %s", name, err);
    }
    bystander_steps(name);
}

/* A program whose episode's on_step (body of `function(ww, k)`) misbehaves at step 5: the
 * episode must end with status "error" and a message containing needle, the program goes on,
 * and the world and controller remain usable. */
static void on_step_case(const char *name, const char *body, const char *needle) {
    char text[4096];
    snprintf(text, sizeof text,
             "local ew = egoworld\n"
             "local w = ew.world { road = { lanes = 2, length = 600 }, traffic = { density = 10 } }\n"
             "local c = ew.controller('idm')\n"
             "w:reset(1)\n"
             "local m = ew.episode(w, c, { steps = 30, goal = 1e6, on_step = function(ww, k)\n"
             "  if k == 5 then\n%s\n  end\nend })\n"
             "assert(m.status == 'error', 'status ' .. tostring(m.status))\n"
             "assert(m.steps <= 6, 'stopped at the failing step: ' .. m.steps)\n"
             "assert(type(m.error) == 'string' and m.error:find(%s, 1, true), 'message: ' .. tostring(m.error))\n"
             "-- the world and the controller are intact and usable\n"
             "local t = w:time()\n"
             "w:step(c:act(w))\n"
             "assert(w:time() > t)\n"
             "local m2 = ew.episode(w, c, { steps = 10, goal = 1e6 })\n"
             "assert(m2.status == 'timeout', 'a normal episode afterwards: ' .. tostring(m2.status))\n"
             "w:close(); c:close()\n",
             body, needle);
    program(name, text, 1, NULL);
}

/* A scenario whose load must succeed and whose run must fail with needle. */
static void scenario_fails(const char *name, const char *body, const char *needle) {
    char path[128], err[4096] = "";
    snprintf(path, sizeof path, "%s/%s.lua", dir, name);
    char text[4096];
    snprintf(text, sizeof text, "road { lanes = 2, length = 600 }\ntraffic { density = 10 }\nepisode { steps = 40 }\n%s",
             body);
    write_file(path, text);
    ew_lua_opts o;
    ew_lua_opts_default(&o);
    o.mem_cap = (size_t)32 << 20;
    o.budget_callback = 1000000;
    ew_scenario *s = ew_scenario_load(path, &o, err, sizeof err);
    unlink(path);
    CHECK(s != NULL, "%s: loads: %s", name, err);
    if (!s) return;
    ew_episode_metrics m;
    int rc = ew_scenario_run(s, NULL, 1, &m, NULL, err, sizeof err);
    CHECK(rc != 0 && m.status == EW_EP_ERROR, "%s: the run fails (status %d)", name, (int)m.status);
    CHECK(strstr(err, needle) != NULL, "%s: message has '%s': %s", name, needle, err);
    CHECK(ew_scenario_error(s) != NULL && strstr(ew_scenario_error(s), needle), "%s: error kept", name);
    ew_scenario_destroy(s);
    bystander_steps(name);
}

static void test_programs(void) {
    /* errors of every kind from the episode callback */
    on_step_case("ep_error", "error('boom in on_step')", "'boom in on_step'");
    on_step_case("ep_error_table", "error({ code = 7 })", "'error object is a'");
    on_step_case("ep_error_nil", "error(nil)", "'error object is a'");
    on_step_case("ep_error_tostring",
                 "error(setmetatable({}, { __tostring = function() error('tostring fails too') end }))",
                 "'error object is a'");
    on_step_case("ep_arith", "local x = nil + 1", "'arithmetic on a nil value'");
    on_step_case("ep_badarg", "ww:vehicle('x')", "'bad argument'");
    on_step_case("ep_recursion", "local function f(n) return f(n + 1) + 1 end\nf(1)", "'stack overflow'");
    on_step_case("ep_membomb", "local t = {}\nwhile true do t[#t + 1] = { 1, 2, 3, 4 } end", "'memory cap'");
    on_step_case("ep_strbomb", "local s = 'x'\nwhile true do s = s .. s end", "'memory'");
    on_step_case("ep_strrep", "local s = string.rep('x', 1e12)", "'memory cap'");
    on_step_case("ep_io", "io.open('/etc/passwd')", "\"global 'io'\"");
    on_step_case("ep_os", "os.execute('true')", "\"field 'execute'\"");
    on_step_case("ep_require", "require('socket.core')", "'not found'");
    on_step_case("ep_load_binary", "assert(load('\\27LuaT\\0', 'x', 'b'))", "'only text chunks'");
    on_step_case("ep_debug", "debug.sethook()", "\"global 'debug'\"");
    on_step_case("ep_dofile", "dofile('/etc/passwd')", "'granted folder'");
    on_step_case("ep_yield", "coroutine.yield(1)", "'outside a coroutine'");
    /* destroying what the episode runs on */
    on_step_case("ep_close_world", "ww:close()", "'episode is running'");
    on_step_case("ep_close_world_tbc", "do local x <close> = ww end", "'episode is running'");
    on_step_case("ep_close_ctrl", "c:close()", "'episode is running'");
    on_step_case("ep_nested_same", "ew.episode(ww, 'idm', { steps = 3 })", "'episode is running'");
    /* a closed world's episode cannot start; a world closed in a callback of ANOTHER world's
     * episode is fine */
    program("ep_close_other",
            "local ew = egoworld\n"
            "local a, b = ew.world(), ew.world()\n"
            "a:reset(1); b:reset(2)\n"
            "local m = ew.episode(a, 'idm', { steps = 10, on_step = function(w, k) if k == 3 then b:close() end end })\n"
            "assert(m.status == 'timeout' and m.steps == 10)\n"
            "local ok, e = pcall(ew.episode, b, 'idm')\n"
            "assert(not ok and e:find('closed World'), e)\n"
            "a:close()\n",
            1, NULL);
    /* options whose metamethod closes the world before the episode starts */
    program("ep_opts_close",
            "local ew = egoworld\nlocal w = ew.world()\nw:reset(1)\n"
            "local opts = setmetatable({}, { __index = function(t, k) w:close() end })\n"
            "local ok, e = pcall(ew.episode, w, 'idm', opts)\n"
            "assert(not ok and e:find('closed World'), e)\n",
            1, NULL);
    /* nested episodes on fresh worlds without end: the C stack limit ends it cleanly */
    program("ep_nest_forever",
            "local ew = egoworld\n"
            "local depth = 0\n"
            "local function run()\n"
            "  depth = depth + 1\n"
            "  local w <close> = ew.world { road = { lanes = 2, length = 200 }, traffic = { density = 0, flow = 0 } }\n"
            "  w:reset(depth)\n"
            "  local m = ew.episode(w, 'idm', { steps = 2, on_step = function() run() end })\n"
            "  if m.status == 'error' then error(m.error, 0) end\n"
            "end\n"
            "run()\n",
            0, "stack overflow");
    /* an endless loop in on_step exhausts the program's budget; the program fails */
    program("ep_loop",
            "local ew = egoworld\nlocal w = ew.world()\nw:reset(1)\n"
            "local m = ew.episode(w, 'idm', { steps = 20, on_step = function()\n  while true do end\nend })\n"
            "print('not reached')\n",
            0, "instruction budget exceeded");
    /* a marking pattern of 1e-30 m dashes: refused (it made every observation run forever) */
    program("dash_bomb",
            "local w = egoworld.world { road = { lanes = 2, length = 600, dash_len = 1e-30, dash_gap = 1e-30 } }\n"
            "w:reset(1)\nlocal o = w:observe()\n",
            0, "bad marking pattern");
    /* GC of abandoned objects inside a callback */
    program("ep_gc",
            "local ew = egoworld\nlocal w = ew.world()\nw:reset(1)\n"
            "local m = ew.episode(w, 'idm', { steps = 20, on_step = function()\n"
            "  for i = 1, 3 do local x = ew.world { road = { lanes = 2, length = 400 } }; local t = ew.tensor.new(8, 8) end\n"
            "  collectgarbage()\nend })\n"
            "assert(m.status == 'timeout', m.status)\n",
            1, NULL);
}

static void test_scenarios(void) {
    scenario_fails("sc_at_table", "at(0.2, function() error({}) end)\n", "error object is a");
    scenario_fails("sc_every_nil", "every(0.3, function() error(nil) end)\n", "error object is a");
    scenario_fails("sc_when_cond_tostring",
                   "when(function() error(setmetatable({}, { __tostring = function() error('again') end })) end,\n"
                   "     function() end)\n",
                   "error object is a");
    scenario_fails("sc_when_fn_table", "when(function(sim) return sim:time() > 0.3 end, function() error({ 1 }) end)\n",
                   "error object is a");
    scenario_fails("sc_step_yield", "on_step(function() coroutine.yield() end)\n", "outside a coroutine");
    scenario_fails("sc_dead_coroutine", "on_step(coroutine.wrap(function() end))\n", "dead coroutine");
    scenario_fails("sc_self_register", "local function f() on_step(f) end\non_step(f)\n", "events");
    /* many callbacks each within its budget (1 M here), together far beyond: the step's
     * shared budget (10 x) ends it; with events registering events in the same step too */
    scenario_fails("sc_many_heavy",
                   "for k = 1, 100 do on_step(function() for i = 1, 6e5 do end end) end\n",
                   "the callbacks of one step share 10 x the per-callback budget");
    scenario_fails("sc_chain_heavy",
                   "local function f() on_step(f); for i = 1, 6e5 do end end\non_step(f)\n",
                   "the callbacks of one step share 10 x the per-callback budget");
    scenario_fails("sc_metric_bomb", "at(0.1, function() for i = 1, 2000 do metric('m' .. i, i) end end)\n",
                   "at most 1000 metrics");

    /* a `sim` kept from an earlier run, used after that run's world was destroyed: it works
     * on the world of the run in progress (or fails cleanly outside callbacks) */
    char path[128], err[4096] = "";
    snprintf(path, sizeof path, "%s/stale.lua", dir);
    write_file(path,
               "road { lanes = 2, length = 600 }\nepisode { steps = 20 }\n"
               "runs = (runs or 0)\n"
               "at(0.5, function(sim)\n"
               "  runs = runs + 1\n"
               "  if saved then metric('stale_time', saved:time()); metric('stale_n', saved:nvehicles()) end\n"
               "  saved = sim\n"
               "  co = co or coroutine.create(function() while true do coroutine.yield(saved:time()) end end)\n"
               "  local ok, t = coroutine.resume(co)\n"
               "  metric('co_ok', ok)\n"
               "  metric('runs', runs)\n"
               "end)\n");
    ew_lua_opts o;
    ew_lua_opts_default(&o);
    ew_scenario *s = ew_scenario_load(path, &o, err, sizeof err);
    unlink(path);
    CHECK(s != NULL, "stale: %s", err);
    if (s) {
        for (int k = 1; k <= 3; k++) {
            ew_episode_metrics m;
            CHECK(ew_scenario_run(s, NULL, (uint64_t)k, &m, NULL, err, sizeof err) == 0, "stale run %d: %s", k, err);
            double v = 0;
            CHECK(ew_scenario_metric(s, "runs", &v) == 0 && v == k, "runs %g", v);
            CHECK(ew_scenario_metric(s, "co_ok", &v) == 0 && v == 1.0, "the kept coroutine resumes");
            if (k > 1) {
                CHECK(ew_scenario_metric(s, "stale_time", &v) == 0 && v > 0.4 && v < 0.6,
                      "the kept sim sees the current world (t = %g)", v);
            }
        }
        ew_scenario_destroy(s);
    }
}

static void test_good_after(void) {
    program("good_program",
            "local ew = egoworld\nlocal w <close> = ew.world { road = { lanes = 3 } }\nw:reset(5)\n"
            "local m = ew.episode(w, 'idm', { steps = 50, goal = 1e6 })\n"
            "assert(m.status == 'timeout' and m.steps == 50 and m.distance > 10, m.status)\n",
            1, NULL);
    char path[128], err[1024] = "";
    snprintf(path, sizeof path, "%s/good.lua", dir);
    write_file(path, "road { lanes = 2, length = 600 }\nepisode { steps = 30 }\n"
                     "on_step(function(sim, t) metric('t', t) end)\n");
    ew_scenario *s = ew_scenario_load(path, NULL, err, sizeof err);
    unlink(path);
    CHECK(s != NULL, "good scenario: %s", err);
    if (s) {
        ew_episode_metrics m;
        CHECK(ew_scenario_run(s, NULL, 1, &m, NULL, err, sizeof err) == 0 && m.steps == 30, "good runs: %s", err);
        ew_scenario_destroy(s);
    }
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/ew_abuse_XXXXXX");
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
    ew_world_reset(other, 1);
    test_programs();
    test_scenarios();
    test_good_after();
    ew_world_destroy(other);
    rmdir(dir);
    return check_done();
}
