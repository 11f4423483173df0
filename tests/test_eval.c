/* test_eval.c - the evaluation harness (planner/eval.h) and the controller factory
 * (planner/controllers.h): results independent of the worker count and ordered by episode;
 * the IDM ego succeeds on most dense-reactive episodes; "none" (no braking) fails often on
 * dense-replay, where the cars ahead brake and never yield; Lua sets; one-line errors. */
#include <stdlib.h>
#include <string.h>

#include "planner/controllers.h"
#include "planner/eval.h"
#include "tests/check.h"

static int run(const char *set, const char *ctrl, int episodes, int workers, ew_eval_result *r, char *err, int errlen) {
    ew_eval_opts o;
    ew_eval_opts_default(&o);
    o.set = set;
    o.controller = ctrl;
    o.episodes = episodes;
    o.workers = workers;
    return ew_eval_run(&o, r, err, errlen);
}

static int same_episodes(const ew_eval_result *a, const ew_eval_result *b) {
    if (a->episodes != b->episodes) return 0;
    for (int i = 0; i < a->episodes; i++) {
        const ew_eval_episode *x = &a->per[i], *y = &b->per[i];
        if (x->index != i || y->index != i || x->seed != y->seed || x->skipped != y->skipped ||
            memcmp(&x->m, &y->m, sizeof x->m) != 0)
            return 0;
    }
    return a->success_rate == b->success_rate && a->mean_distance_m == b->mean_distance_m;
}

int main(void) {
    char err[512];
    /* the factory */
    ew_controller c;
    CHECK(ew_controller_create("idm", NULL, &c, err, sizeof err) == 0 && !strcmp(c.name, "idm"), "%s", err);
    ew_controller_destroy(&c);
    CHECK(ew_controller_create("none", NULL, &c, err, sizeof err) == 0 && !strcmp(c.name, "none"), "%s", err);
    ew_controller_destroy(&c);
    CHECK(ew_controller_create("warp", NULL, &c, err, sizeof err) != 0 && strstr(err, "unknown controller 'warp'") &&
              !strchr(err, '\n'),
          "unknown controller: %s", err);
    CHECK(ew_controller_create("policy:/no/such/policy.safetensors", NULL, &c, err, sizeof err) != 0 &&
              strstr(err, "/no/such/policy.safetensors") && !strchr(err, '\n'),
          "missing policy file named: %s", err);
    CHECK(strstr(ew_controller_specs(), "policy:FILE") != NULL, "specs");

    /* worker-count independence, on both kinds of sets */
    const char *sets[] = {"dense-reactive", "dense-replay", "merge"};
    for (int s = 0; s < 3; s++) {
        ew_eval_result a, b;
        CHECK(run(sets[s], "idm", 6, 1, &a, err, sizeof err) == 0, "%s: %s", sets[s], err);
        CHECK(run(sets[s], "idm", 6, 2, &b, err, sizeof err) == 0, "%s: %s", sets[s], err);
        CHECK(same_episodes(&a, &b), "%s: identical results for 1 and 2 workers", sets[s]);
        CHECK(a.per[0].seed == ew_eval_set_find(sets[s])->base_seed && a.per[5].seed == a.per[0].seed + 5,
              "episode i uses base + i");
        ew_eval_result_free(&a);
        ew_eval_result_free(&b);
    }

    /* idm succeeds on most dense-reactive episodes; none fails often on dense-replay */
    ew_eval_result idm_r, none_rp, idm_rp;
    CHECK(run("dense-reactive", "idm", 12, 2, &idm_r, err, sizeof err) == 0, "%s", err);
    CHECK(idm_r.success_rate >= 10.0 / 12.0, "idm on dense-reactive: %.2f", idm_r.success_rate);
    CHECK(run("dense-replay", "none", 12, 2, &none_rp, err, sizeof err) == 0, "%s", err);
    CHECK(run("dense-replay", "idm", 12, 2, &idm_rp, err, sizeof err) == 0, "%s", err);
    CHECK(none_rp.success_rate <= 0.75 && none_rp.collision_rate >= 0.25,
          "none on dense-replay fails often: success %.2f, collisions %.2f", none_rp.success_rate,
          none_rp.collision_rate);
    CHECK(idm_rp.success_rate > none_rp.success_rate, "idm beats none on dense-replay (%.2f vs %.2f)",
          idm_rp.success_rate, none_rp.success_rate);
    double sum = none_rp.success_rate + none_rp.collision_rate + none_rp.offroad_rate + none_rp.timeout_rate;
    CHECK_NEAR(sum, 1.0, 1e-12);
    CHECK(idm_r.plan_ms_per_step >= 0.0 && idm_r.mean_distance_m > 100.0, "summary filled");
    printf("dense-reactive idm %.2f; dense-replay none %.2f (collisions %.2f), idm %.2f\n", idm_r.success_rate,
           none_rp.success_rate, none_rp.collision_rate, idm_rp.success_rate);
    ew_eval_result_free(&idm_r);
    ew_eval_result_free(&none_rp);
    ew_eval_result_free(&idm_rp);

    /* a Lua set: files in turn */
    ew_eval_result l;
    CHECK(run("lua:scenarios/dense_3lane.lua,scenarios/cut_in.lua", "idm", 4, 2, &l, err, sizeof err) == 0, "%s",
          err);
    CHECK(l.episodes == 4 && l.n_sources == 2 && !strcmp(l.per[1].source, "scenarios/cut_in.lua") &&
              !strcmp(l.per[2].source, "scenarios/dense_3lane.lua"),
          "lua set sources");
    ew_eval_result_free(&l);

    /* one-line errors before anything runs */
    ew_eval_result r;
    CHECK(run("no-such-set", "idm", 2, 1, &r, err, sizeof err) != 0 && strstr(err, "unknown set 'no-such-set'") &&
              !strchr(err, '\n') && r.episodes == 0,
          "unknown set: %s", err);
    CHECK(run("dense-reactive", "warp", 2, 1, &r, err, sizeof err) != 0 && strstr(err, "unknown controller 'warp'") &&
              r.episodes == 0,
          "unknown controller: %s", err);
    CHECK(run("lua:scenarios/nope.lua", "idm", 2, 1, &r, err, sizeof err) != 0 && strstr(err, "nope.lua") &&
              !strchr(err, '\n'),
          "missing Lua file: %s", err);
    CHECK(run("lua:", "idm", 2, 1, &r, err, sizeof err) != 0, "empty Lua list");
    return check_done();
}
