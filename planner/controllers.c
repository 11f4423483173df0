/* controllers.c - the controller factory (controllers.h): built-ins from sim/controller.h,
 * MPC variants from planner/mpc.h, policy checkpoints from models/policy.h. */
#include "planner/controllers.h"

#include <stdio.h>
#include <string.h>

#include "models/policy.h"
#include "planner/mpc.h"
#include "planner/mpc_pred.h"

void ew_controller_opts_default(ew_controller_opts *o) {
    memset(o, 0, sizeof *o);
    o->world_model = NULL;
    o->threads = 1;
    o->seed = 1;
}

const char *ew_controller_specs(void) { return "none|idm|mpc-km|mpc-fm|cem|mpc-pred:FILE|policy:FILE"; }

int ew_controller_create(const char *spec, const ew_controller_opts *o, ew_controller *out, char *err,
                         int errlen) {
    ew_controller_opts def;
    if (!o) {
        ew_controller_opts_default(&def);
        o = &def;
    }
    memset(out, 0, sizeof *out);
    if (!spec || !spec[0]) {
        snprintf(err, (size_t)errlen, "no controller given (%s)", ew_controller_specs());
        return -1;
    }
    if (!strcmp(spec, "none") || !strcmp(spec, "idm")) return ew_controller_builtin(spec, out, err, errlen);
    if (o->cuda && strcmp(spec, "mpc-km") && strcmp(spec, "mpc-fm") && strcmp(spec, "cem")) {
        snprintf(err, (size_t)errlen, "--device cuda: only mpc-km, mpc-fm and cem plan on the GPU, not %s", spec);
        return -1;
    }
    if (!strcmp(spec, "mpc-km") || !strcmp(spec, "mpc-fm") || !strcmp(spec, "cem")) {
        ew_mpc_config c;
        ew_mpc_config_default(&c);
        c.world_model = o->world_model ? o->world_model : EW_DEFAULT_WORLD_MODEL;
        if (o->threads > 0) c.threads = o->threads;
        c.cuda = o->cuda;
        c.seed = o->seed;
        if (o->horizon > 0) c.horizon = o->horizon;
        if (o->iters > 0) {
            c.iters = o->iters;
            c.cem_rounds = o->iters;
        }
        return ew_mpc_controller_create(spec, &c, out, err, errlen);
    }
    if (!strncmp(spec, "mpc-pred:", 9)) {
        ew_mpc_pred_config c;
        ew_mpc_pred_config_default(&c);
        c.predictor = spec + 9;
        if (o->threads > 0) c.threads = o->threads;
        c.seed = o->seed;
        if (o->horizon > 0) c.horizon = o->horizon;
        if (o->iters > 0) c.iters = o->iters;
        return ew_mpc_pred_controller_create(&c, out, err, errlen);
    }
    if (!strncmp(spec, "policy:", 7)) {
        const char *path = spec + 7;
        if (!path[0]) path = EW_DEFAULT_POLICY;
        return ew_policy_controller_create(path, o->seed, out, err, errlen);
    }
    snprintf(err, (size_t)errlen, "unknown controller '%s' (%s)", spec, ew_controller_specs());
    return -1;
}
