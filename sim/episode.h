/* episode.h - the episode protocol and its metrics (DESIGN.md section 3).
 *
 * For the first n_cond steps the ego is driven by the warm-up driver (IDM + lane keeping,
 * or a log for replay episodes through the on_step hook); then the controller's actions
 * are applied. The episode ends with success when the ego has travelled goal_distance
 * metres along x from its position at the start, with failure on collision (ego box
 * shrunk by collision_tol) or off-road, or when max_steps is reached (a timeout: not a
 * success), or when a hook ends it with a label. Metrics are accumulated every step.
 * The episode does not own the world or the controller.
 */
#ifndef EW_EPISODE_H
#define EW_EPISODE_H

#include <stdio.h>

#include "sim/controller.h"
#include "sim/world.h"

typedef struct ew_episode ew_episode;

/* A per-step hook: `hook` is called before each world step (scenario events, NGSIM replay),
 * `post_hook` right after it, before the metrics and the end tests (the non-reactive replay
 * of sim/replay.h moves the logged vehicles there, so the world is consistent whenever the
 * controller or the end tests look at it). Returns 0 to go on, 1 to end the episode (label
 * set in *label; a post_hook's end yields to a collision, off-road or success found at the
 * same step), -1 on error (message in err). */
typedef int (*ew_episode_hook)(void *ctx, ew_world *w, ew_episode *ep, char *label,
                               int labellen, char *err, int errlen);

typedef struct {
    int n_cond;            /* warm-up steps (20 = 2 s at 10 Hz) */
    int max_steps;         /* hard cap, warm-up included */
    float goal_distance;   /* m along x from the start position (215) */
    float collision_tol;   /* m shrink of the ego footprint (1.0) */
    ew_episode_hook hook;  /* may be NULL */
    void *hook_ctx;
    ew_episode_hook post_hook; /* may be NULL */
    void *post_hook_ctx;
} ew_episode_cfg;

typedef enum {
    EW_EP_RUNNING = 0, EW_EP_SUCCESS, EW_EP_COLLISION, EW_EP_OFFROAD, EW_EP_TIMEOUT,
    EW_EP_SCRIPTED, EW_EP_ERROR
} ew_episode_status;

typedef struct {
    ew_episode_status status;
    int success, collision, offroad;
    int steps;             /* steps taken, warm-up included */
    float distance;        /* m along x since the start */
    float time;            /* s */
    float min_ttc;         /* s, minimum time-to-collision to the leader in the ego's lane (inf: none) */
    float mean_speed;      /* m/s */
    float mean_abs_jerk;   /* m/s^3, after warm-up */
    float max_abs_accel;   /* m/s^2, after warm-up */
    float mean_abs_curv;   /* 1/m, after warm-up */
    char label[64];        /* end label from a hook, or the status name */
    char error[256];       /* message when status == EW_EP_ERROR */
} ew_episode_metrics;

struct ew_episode {
    ew_episode_cfg cfg;
    ew_episode_metrics m;
    float x_start;
    float prev_acc;
    double speed_sum, jerk_sum, curv_sum;
    int n_ctrl;
};

void ew_episode_cfg_default(ew_episode_cfg *cfg);
/* Starts an episode on a world that has just been reset. */
void ew_episode_begin(ew_episode *ep, const ew_episode_cfg *cfg, ew_world *w);
/* One step: picks the warm-up driver or the controller (ctrl may be NULL: "none"),
 * runs the hook, steps the world, updates metrics. Returns 1 while running, 0 when done. */
int ew_episode_step(ew_episode *ep, ew_world *w, ew_controller *ctrl);
int ew_episode_in_warmup(const ew_episode *ep);
const char *ew_episode_status_name(ew_episode_status s);
/* One JSON object with every metric (no trailing newline). */
void ew_episode_metrics_json(const ew_episode_metrics *m, FILE *out);

#endif
