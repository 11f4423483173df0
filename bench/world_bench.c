/* world_bench.c - world steps per second of CPU time on the built-in scenarios: the ego
 * driven by its IDM controller, the world reset with a new seed when the ego nears the road
 * end (as in episodes), no rendering. Complements `egoworld bench sim --traffic-only`, which
 * times the straight highway of bench/sumo_compare.sh without an ego.
 *
 *   world_bench [STEPS] [SCENARIO...]      default: 100000 steps, every built-in scenario
 *
 * Prints, per scenario: steps per CPU second, background vehicle updates per CPU second
 * (thread CPU time, less sensitive to other load on the core than wall time) and the mean
 * number of background vehicles.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "sim/scenario_builtin.h"
#include "sim/world.h"

static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int run(const char *name, long steps) {
    ew_world_config c;
    char err[256];
    if (ew_scenario_builtin(name, &c, err, sizeof err) != 0) {
        fprintf(stderr, "world_bench: %s\n", err);
        return 1;
    }
    ew_world *w = ew_world_create(&c, err, sizeof err);
    if (!w) {
        fprintf(stderr, "world_bench: %s\n", err);
        return 1;
    }
    uint64_t seed = 1;
    ew_world_reset(w, seed);
    int64_t updates = 0;
    double t0 = cpu_now();
    for (long k = 0; k < steps; k++) {
        ew_action u;
        ew_world_ego_idm_action(w, &u);
        ew_world_step(w, &u);
        if (ew_world_ego(w)->x > c.road.length - 100.0f) {
            updates += ew_world_get_stats(w).vehicle_updates;
            ew_world_reset(w, ++seed);
        }
    }
    double t = cpu_now() - t0;
    updates += ew_world_get_stats(w).vehicle_updates;
    printf("%-14s %12.0f steps/cpu_s %12.4g updates/cpu_s %7.1f vehicles\n", name, (double)steps / t,
           (double)updates / t, (double)updates / (double)steps);
    ew_world_destroy(w);
    return 0;
}

int main(int argc, char **argv) {
    long steps = argc > 1 ? strtol(argv[1], NULL, 10) : 100000;
    if (steps < 1) {
        fprintf(stderr, "usage: world_bench [STEPS] [SCENARIO...]\n");
        return 2;
    }
    int rc = 0;
    if (argc > 2) {
        for (int i = 2; i < argc; i++) rc |= run(argv[i], steps);
    } else {
        int n;
        const char *const *names = ew_scenario_builtin_names(&n);
        for (int i = 0; i < n; i++) rc |= run(names[i], steps);
    }
    return rc;
}
