/* controller.h - what drives the ego: a small function table.
 *
 * A controller reads the world (never mutates it) and writes one action per step. The
 * built-ins are "none" (a = 0, b = 0: keep speed and heading) and "idm" (IDM car
 * following plus lane keeping, ew_world_ego_idm_action); planners and policies from
 * planner/ and models/ provide more behind the same table. The controller owns ctx;
 * destroy() frees it (may be NULL when there is nothing to free).
 */
#ifndef EW_CONTROLLER_H
#define EW_CONTROLLER_H

#include "sim/world.h"

typedef struct ew_controller {
    const char *name;
    void *ctx;
    /* Returns 0, or -1 with a message in err (the episode then ends with an error). */
    int (*act)(void *ctx, const ew_world *w, ew_action *out, char *err, int errlen);
    void (*reset)(void *ctx, const ew_world *w); /* start of an episode (may be NULL) */
    /* Sees the world before every step of an episode, warm-up included, before act() (may
     * be NULL): controllers that need a history (frames, states) keep it here. */
    void (*observe)(void *ctx, const ew_world *w);
    void (*destroy)(void *ctx);                  /* may be NULL */
    double plan_ms_total;                        /* wall time spent in act() (ms) */
    long plan_calls;
} ew_controller;

/* "none" or "idm"; returns 0, or -1 with a message for an unknown name. */
int ew_controller_builtin(const char *name, ew_controller *out, char *err, int errlen);
/* Calls act() and accounts its wall time. */
int ew_controller_act(ew_controller *c, const ew_world *w, ew_action *out, char *err, int errlen);
void ew_controller_destroy(ew_controller *c);

#endif
