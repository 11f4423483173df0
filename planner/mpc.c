/* mpc.c - see mpc.h. */
#include "planner/mpc.h"

#include <stdio.h>
#include <string.h>

void ew_mpc_config_default(ew_mpc_config *c) {
    memset(c, 0, sizeof *c);
    c->world_model = NULL;
    c->horizon = 30;
    c->iters = 10;
    c->samples = 3;
    c->threads = 1;
    c->seed = 1;
    c->lr = 0.1f;
    c->clip = 1.0f;
    c->cem_samples = 100;
    c->cem_elites = 10;
    c->cem_rounds = 5;
    c->reuse_unroll = 1;
}

int ew_mpc_controller_create(const char *kind, const ew_mpc_config *c, ew_controller *out, char *err,
                             int errlen) {
    (void)c;
    if (out) memset(out, 0, sizeof *out);
    snprintf(err, (size_t)errlen, "controller %s: not implemented yet", kind ? kind : "(null)");
    return -1;
}
