/* test_lua_bindings.c - the egoworld module for programs (World, Controller, Tensor,
 * Scenario, Log: checked arguments, close/double close/use after close, observations,
 * episodes) and every event type and action of scenarios, with their timing. */
#define _DEFAULT_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lua/bindings.h"
#include "lua/scenario.h"
#include "tests/check.h"

static char dir[64];

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

static int run_program(const char *name, const char *text, char *err, int errlen) {
    char path[128];
    snprintf(path, sizeof path, "%s/%s.lua", dir, name);
    write_file(path, text);
    ew_lua_opts o;
    ew_lua_opts_default(&o);
    o.budget_load = 0;
    o.read_dir = dir;
    int rc = ew_lua_run_program(path, &o, err, errlen);
    unlink(path);
    return rc;
}

static const char *PROGRAM =
    "local ew = require('egoworld')\n"
    "assert(ew == egoworld and ew.sim and ew.tensor and ew.scenario and ew.ngsim)\n"
    "local w = ew.world { road = { lanes = 3, length = 800 }, traffic = { density = 20, flow = 1000 },\n"
    "                     ego = { lane = 1, x = 100, speed = 15 }, episode = { seed = 3 } }\n"
    "assert(tostring(w):match('^World'))\n"
    "w:reset(3)\n"
    "local n0 = w:nvehicles()\n"
    "assert(n0 > 20, 'vehicles ' .. n0)\n"
    "local e = w:ego()\n"
    "assert(e.lane == 1 and math.abs(e.x - 100) < 1e-6 and math.abs(e.speed - 15) < 1e-6)\n"
    "for i = 1, 10 do w:step(1.0, 0.0) end\n"
    "assert(math.abs(w:time() - 1.0) < 1e-5 and w:steps() == 10)\n"
    "assert(math.abs(w:ego().speed - 16) < 1e-3, 'accelerated')\n"
    "w:step { a = -2, b = 0 }\n"
    "local vs = w:vehicles()\n"
    "assert(#vs == w:nvehicles() and vs[1].id > 0 and vs[1].type)\n"
    "assert(w:vehicle(vs[1].id).x == vs[1].x)\n"
    "assert(w:vehicle(999999) == nil)\n"
    "-- spawn relative and absolute, actions\n"
    "local id = assert(w:spawn { gap = 30, dv = -2, type = 'truck' })\n"
    "local v = w:vehicle(id)\n"
    "assert(v.type == 'truck' and v.lane == w:ego().lane)\n"
    "assert(math.abs((v.x - v.length / 2) - (w:ego().x + 2.25) - 30) < 1e-3)\n"
    "assert(w:leader().id == id and math.abs(w:gap() - 30) < 1e-3)\n"
    "local id2 = assert(w:spawn { lane = 0, x = 700, speed = 10 })\n"
    "local ok, msg = w:spawn { lane = 0, x = 700, speed = 10 }\n"
    "assert(ok == nil and msg:match('overlap'))\n"
    "assert(w:brake(id, 5, 1.0) and w:vehicle(id).braking)\n"
    "assert(w:stall(id2) and w:vehicle(id2).stalled)\n"
    "assert(w:change_lane(id, 2))\n"
    "assert(w:vehicle(id).changing)\n"
    "assert(w:set_speed_limit(0, 20))\n"
    "assert(w:road().lane[1].speed_limit == 20)\n"
    "assert(w:close_lane(2, 600, 50))\n"
    "assert(w:road().lane[3].x_end == 600)\n"
    "assert(w:remove(id2) and w:vehicle(id2) == nil)\n"
    "local nok, nmsg = w:remove(id2)\n"
    "assert(nok == nil and nmsg:match('no vehicle'))\n"
    "-- observations\n"
    "local o = w:observe()\n"
    "local sh = o:shape()\n"
    "assert(#sh == 3 and sh[1] == 4 and sh[2] == 117 and sh[3] == 24 and #o == 4 * 117 * 24)\n"
    "assert(o:max() <= 1 and o:min() >= 0)\n"
    "assert(o:get(4, 59, 12) > 0.99, 'ego pixel ' .. o:get(4, 59, 12))\n"
    "assert(o:get(4, 1, 1) == 0)\n"
    "local t = w:observe { rows = 20, cols = 8, scale = 1.0, format = 'table' }\n"
    "assert(#t == 4 and #t[1] == 20 and #t[1][1] == 8)\n"
    "local okx, ex = pcall(o.get, o, 5, 1, 1)\n"
    "assert(not okx and ex:match('out of'))\n"
    "-- tensors\n"
    "local x = ew.tensor.new(2, 3)\n"
    "x:set(2, 3, 7.5)\n"
    "assert(x:get(2, 3) == 7.5 and x:sum() == 7.5 and x:totable()[2][3] == 7.5)\n"
    "-- controllers and episodes\n"
    "local c = ew.controller('idm')\n"
    "assert(c:name() == 'idm')\n"
    "local a, b = c:act(w)\n"
    "assert(type(a) == 'number' and type(b) == 'number')\n"
    "w:reset(4)\n"
    "local seen = 0\n"
    "local m = ew.episode(w, c, { steps = 50, goal = 1e6, on_step = function(ww, k) seen = seen + 1; if k == 30 then return 'stop-here' end end })\n"
    "assert(m.status == 'scripted' and m.label == 'stop-here' and m.steps == 30 and seen == 31, m.status .. m.label)\n"
    "w:reset(5)\n"
    "local m2 = ew.episode(w, 'idm', { steps = 40, goal = 1e6 })\n"
    "assert(m2.status == 'timeout' and m2.steps == 40 and m2.distance > 40)\n"
    "-- argument checks, close, double close, use after close\n"
    "local okb, eb = pcall(w.step, w, 'fast')\n"
    "assert(not okb and eb:match('number expected'))\n"
    "local okc, ec = pcall(w.reset, c)\n"
    "assert(not okc and ec:match('egoworld.World expected'))\n"
    "local okd, ed = pcall(ew.world, { road = { lanes = 'x' } })\n"
    "assert(not okd and ed:match('road.lanes must be a number'))\n"
    "c:close(); c:close()\n"
    "local oke, ee = pcall(c.act, c, w)\n"
    "assert(not oke and ee:match('closed Controller'))\n"
    "w:close(); w:close()\n"
    "local okf, ef = pcall(w.step, w)\n"
    "assert(not okf and ef:match('closed World'))\n"
    "assert(tostring(w) == 'World (closed)')\n"
    "do local w2 <close> = ew.world() ; w2:step() end\n"
    "for i = 1, 50 do ew.world():step() end\n"
    "collectgarbage()\n"
    "-- a scenario from a program; a failing one leaves the rest working\n"
    "local s = assert(ew.scenario.load(args[1]))\n"
    "local r = assert(s:run { seed = 2 })\n"
    "assert(math.abs(r.script.fired_at - 1.0) < 1e-6, tostring(r.script.fired_at))\n"
    "local bad = assert(ew.scenario.load(args[2], { callback_budget = 100000 }))\n"
    "local rn, rerr = bad:run()\n"
    "assert(rn == nil and rerr:match('instruction budget exceeded'), rerr)\n"
    "assert(bad:error():match('stack traceback'))\n"
    "local w3 = s:world()\n"
    "w3:reset(1); for i = 1, 20 do w3:step() end\n"
    "assert(w3:time() > 1.9)\n"
    "s:close(); bad:close(); bad:close()\n"
    "local okg, eg = pcall(s.run, s)\n"
    "assert(not okg and eg:match('closed Scenario'))\n"
    "return true\n";

/* Every event type and action in one scenario; the script records what happened. */
static const char *EVENTS =
    "road { lanes = 3, length = 1000, speed_limit = 25 }\n"
    "traffic { density = 0, flow = 0 }\n"
    "ego { lane = 1, x = 200, speed = 20, goal = 10000, controller = 'none' }\n"
    "episode { steps = 120, seed = 4, n_cond = 10 }\n"
    "local n_every, n_step, n_rep, spawned = 0, 0, 0, nil\n"
    "at(1.0, function(sim, t)\n"
    "  metric('at_time', t)\n"
    "  spawned = assert(sim:spawn { gap = 40, dv = -5 })\n"
    "  metric('abs_id', assert(sim:spawn { lane = 0, x = 900, speed = 10 }))\n"
    "end)\n"
    "every(2.0, function(sim, t) n_every = n_every + 1; metric('every_count', n_every); metric('every_last', t) end, { start = 1.0 })\n"
    "on_step(function(sim, t) n_step = n_step + 1; metric('steps_seen', n_step) end)\n"
    "when(function(sim) return spawned and sim:gap() and sim:gap() < 30 end, function(sim, t)\n"
    "  metric('when_time', t); metric('when_gap', sim:gap())\n"
    "  assert(sim:remove(spawned))\n"
    "end)\n"
    "when(function(sim, t) return math.floor(t) % 2 == 1 end, function(sim, t) n_rep = n_rep + 1; metric('edges', n_rep) end, { repeating = true })\n"
    "at(3.0, function(sim)\n"
    "  assert(sim:set_speed_limit(2, 15)); metric('limit2', sim:road().lane[3].speed_limit)\n"
    "  assert(sim:close_lane(2, 950, 40))\n"
    "  local l = sim:leader(0, sim:ego().x)\n"
    "  if l then assert(sim:stall(l.id)); metric('stalled', l.id) end\n"
    "  metric('flag', true); metric('text', 'hello \"quoted\"')\n"
    "end)\n"
    "at(4.0, function(sim) metric('ttc', sim:ttc()); metric('lane_at', sim:lane_at(sim:ego().x, sim:ego().y)) end)\n"
    "at(5.0, function(sim) at(sim:time() + 0.5, function(s2, t) metric('nested_at', t) end) end)\n"
    "at(9.0, function(sim) sim:end_episode('scripted-stop') end)\n";

static void test_events(void) {
    char path[128], err[4096];
    snprintf(path, sizeof path, "%s/events.lua", dir);
    write_file(path, EVENTS);
    ew_scenario *s = ew_scenario_load(path, NULL, err, sizeof err);
    CHECK(s != NULL, "events: %s", err);
    if (!s) return;
    for (int run = 0; run < 2; run++) {
        /* a second run resets the events (script variables keep their values) */
        ew_episode_metrics m;
        CHECK(ew_scenario_run(s, NULL, 4, &m, NULL, err, sizeof err) == 0, "events run: %s", err);
        CHECK(m.status == EW_EP_SCRIPTED && strcmp(m.label, "scripted-stop") == 0, "ended by the script: %s", m.label);
        CHECK(m.steps == 90, "end_episode at 9.0 s: %d steps", m.steps);
        double v = 0;
        CHECK(ew_scenario_metric(s, "at_time", &v) == 0 && fabs(v - 1.0) < 1e-5, "at(1.0) fired at %g", v);
        CHECK(ew_scenario_metric(s, "every_last", &v) == 0 && fabs(v - 9.0) < 1e-5, "last every at %g", v);
        CHECK(ew_scenario_metric(s, "when_time", &v) == 0 && v > 2.5 && v < 6.0, "when fired at %g", v);
        CHECK(ew_scenario_metric(s, "when_gap", &v) == 0 && v < 30.0 && v > 29.0, "when condition held: gap %g", v);
        CHECK(ew_scenario_metric(s, "limit2", &v) == 0 && fabs(v - 15.0) < 1e-6, "speed limit changed");
        CHECK(ew_scenario_metric(s, "stalled", &v) == 0 && v > 0, "stalled the lane-0 leader");
        CHECK(ew_scenario_metric(s, "flag", &v) == 0 && v == 1.0, "boolean metric");
        CHECK(ew_scenario_metric(s, "nested_at", &v) == 0 && fabs(v - 5.5) < 1e-5, "event registered in an event: %g", v);
        CHECK(ew_scenario_metric(s, "lane_at", &v) == 0 && v == 1.0, "lane_at");
        CHECK(ew_scenario_events_fired(s) > 90, "events fired");
        double k = run + 1.0;
        CHECK(ew_scenario_metric(s, "every_count", &v) == 0 && v == 5.0 * k, "every(2, start 1): 1,3,5,7,9 -> %g", v);
        CHECK(ew_scenario_metric(s, "steps_seen", &v) == 0 && v == 91.0 * k, "on_step every step: %g", v);
        CHECK(ew_scenario_metric(s, "edges", &v) == 0 && v == 5.0 * k, "repeating when on rising edges: %g", v);
    }
    char jpath[128];
    snprintf(jpath, sizeof jpath, "%s/metrics.json", dir);
    FILE *f = fopen(jpath, "w");
    ew_scenario_metrics_json(s, f);
    fclose(f);
    FILE *g = fopen(jpath, "r");
    char buf[2048] = "";
    size_t n = fread(buf, 1, sizeof buf - 1, g);
    buf[n] = 0;
    fclose(g);
    unlink(jpath);
    CHECK(buf[0] == '{' && buf[n - 1] == '}', "JSON object: %s", buf);
    CHECK(strstr(buf, "\"at_time\": 1") && strstr(buf, "\"flag\": true") && strstr(buf, "\"text\": \"hello \\\"quoted\\\"\""),
          "JSON fields: %s", buf);
    ew_scenario_destroy(s);
    unlink(path);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/ew_bind_XXXXXX");
    if (!mkdtemp(dir)) {
        CHECK(0, "mkdtemp");
        return check_done();
    }
    test_events();

    char good[128], bad[128], err[8192];
    snprintf(good, sizeof good, "%s/good.lua", dir);
    snprintf(bad, sizeof bad, "%s/bad.lua", dir);
    write_file(good, "road { lanes = 2, length = 500 }\nepisode { steps = 30 }\n"
                     "at(1.0, function(sim, t) metric('fired_at', t) end)\n");
    write_file(bad, "road { lanes = 2, length = 500 }\nepisode { steps = 30 }\n"
                    "on_step(function() while true do end end)\n");
    char prog[8192];
    snprintf(prog, sizeof prog, "args = { '%s', '%s' }\n%s", good, bad, PROGRAM);
    int rc = run_program("prog", prog, err, sizeof err);
    CHECK(rc == 0, "program: %s", err);

    /* a failing program reports FILE:LINE and a traceback */
    rc = run_program("fails", "local ew = egoworld\nlocal w = ew.world()\nw:close()\nw:step()\n", err, sizeof err);
    CHECK(rc != 0 && strstr(err, "fails.lua:4:") && strstr(err, "closed World") && strstr(err, "stack traceback"),
          "failure message: %s", err);
    /* programs are sandboxed too */
    rc = run_program("noio", "io.write('x')\n", err, sizeof err);
    CHECK(rc != 0 && strstr(err, "noio.lua:1:") && strstr(err, "global 'io'"), "no io: %s", err);
    unlink(good);
    unlink(bad);
    rmdir(dir);
    return check_done();
}
