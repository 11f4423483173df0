/* controller.c - built-in controllers and the timed act() wrapper. */
#include "sim/controller.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static int act_none(void *ctx, const ew_world *w, ew_action *out, char *err, int errlen) {
    (void)ctx; (void)w; (void)err; (void)errlen;
    out->a = 0.0f;
    out->b = 0.0f;
    return 0;
}

static int act_idm(void *ctx, const ew_world *w, ew_action *out, char *err, int errlen) {
    (void)ctx; (void)err; (void)errlen;
    ew_world_ego_idm_action(w, out);
    return 0;
}

int ew_controller_builtin(const char *name, ew_controller *out, char *err, int errlen) {
    memset(out, 0, sizeof *out);
    if (strcmp(name, "none") == 0) {
        out->name = "none";
        out->act = act_none;
        return 0;
    }
    if (strcmp(name, "idm") == 0) {
        out->name = "idm";
        out->act = act_idm;
        return 0;
    }
    snprintf(err, (size_t)errlen, "unknown controller '%s' (built-in: none, idm)", name);
    return -1;
}

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

int ew_controller_act(ew_controller *c, const ew_world *w, ew_action *out, char *err, int errlen) {
    double t0 = now_ms();
    int rc = c->act(c->ctx, w, out, err, errlen);
    c->plan_ms_total += now_ms() - t0;
    c->plan_calls++;
    return rc;
}

void ew_controller_destroy(ew_controller *c) {
    if (c->destroy && c->ctx) c->destroy(c->ctx);
    c->ctx = NULL;
}
