/* scenario_builtin.c - built-in world configurations (see scenario_builtin.h). */
#include "sim/scenario_builtin.h"

#include <stdio.h>
#include <string.h>

static const char *const names[] = {"dense-3lane", "onramp-6lane", "free-2lane", "closure-3lane",
                                    "offramp-4lane"};

const char *const *ew_scenario_builtin_names(int *n) {
    *n = (int)(sizeof names / sizeof names[0]);
    return names;
}

static void lanes(ew_world_config *c, int from, int to, float density, float flow) {
    for (int l = from; l < to; l++) {
        c->density_per_km[l] = density;
        c->flow_per_h[l] = flow;
    }
}

int ew_scenario_builtin(const char *name, ew_world_config *c, char *err, int errlen) {
    ew_world_config_default(c);
    int rc = 0;
    if (strcmp(name, "dense-3lane") == 0) {
        /* 35 veh/km/lane on 1 km of 3 lanes: about 100 vehicles at 14-16 m/s */
        rc = ew_road_init_highway(&c->road, 3, 3.7f, 1000.0f, 29.0f, err, errlen);
        lanes(c, 0, 3, 35.0f, 1600.0f);
        c->ego_lane = 1;
        c->ego_x = 150.0f;
        c->ego_speed = 15.0f;
    } else if (strcmp(name, "onramp-6lane") == 0) {
        /* NGSIM I-80 (Emeryville): 6 main lanes, 65 mph, an on-ramp (Powell St.) whose
         * auxiliary lane runs about 200 m before it tapers away; near-capacity flow. */
        float mph65 = 29.06f;
        rc = ew_road_init_highway(&c->road, 6, 3.7f, 800.0f, mph65, err, errlen);
        if (rc == 0) rc = ew_road_add_onramp(&c->road, 80.0f, 420.0f, 70.0f, 22.0f, err, errlen);
        lanes(c, 0, 6, 28.0f, 1700.0f);
        c->density_per_km[6] = 15.0f;
        c->flow_per_h[6] = 700.0f;
        c->truck_share = 0.05f;
        c->moto_share = 0.02f;
        c->ego_lane = 1;
        c->ego_x = 100.0f;
        c->ego_speed = 18.0f;
    } else if (strcmp(name, "free-2lane") == 0) {
        rc = ew_road_init_highway(&c->road, 2, 3.7f, 1000.0f, 29.0f, err, errlen);
        lanes(c, 0, 2, 6.0f, 500.0f);
        c->ego_lane = 0;
        c->ego_x = 150.0f;
        c->ego_speed = 25.0f;
    } else if (strcmp(name, "closure-3lane") == 0) {
        rc = ew_road_init_highway(&c->road, 3, 3.7f, 1000.0f, 29.0f, err, errlen);
        if (rc == 0) rc = ew_road_close_lane(&c->road, 2, 650.0f, 60.0f, err, errlen);
        lanes(c, 0, 3, 25.0f, 1100.0f);
        c->ego_lane = 1;
        c->ego_x = 150.0f;
        c->ego_speed = 18.0f;
    } else if (strcmp(name, "offramp-4lane") == 0) {
        rc = ew_road_init_highway(&c->road, 4, 3.7f, 1200.0f, 29.0f, err, errlen);
        if (rc == 0) rc = ew_road_add_offramp(&c->road, 700.0f, 1000.0f, 60.0f, 20.0f, err, errlen);
        lanes(c, 0, 4, 22.0f, 1500.0f);
        c->exit_share = 0.15f;
        c->ego_lane = 2;
        c->ego_x = 150.0f;
        c->ego_speed = 20.0f;
    } else {
        int n;
        const char *const *all = ew_scenario_builtin_names(&n);
        char list[256];
        int m = 0;
        list[0] = 0;
        for (int i = 0; i < n && m < (int)sizeof list; i++)
            m += snprintf(list + m, sizeof list - (size_t)m, "%s%s", i ? ", " : "", all[i]);
        if (err && errlen > 0) snprintf(err, (size_t)errlen, "unknown scenario '%s' (built-in: %s)", name, list);
        return -1;
    }
    if (rc != 0) return -1;
    return ew_world_config_validate(c, err, errlen);
}
