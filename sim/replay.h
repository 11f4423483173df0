/* replay.h - non-reactive traffic: record a run of a world with no ego, then replay it around
 * an ego (the anchor's setting: the other cars follow their recorded paths and do not yield).
 *
 * ew_replay_record() runs a copy of the world config with the ego disabled for `steps` steps
 * from `seed` (after `warmup_s` seconds of settling, not recorded) and keeps every vehicle's
 * state per step in memory (compact; owned by the log). ew_replay_hook() is an episode hook
 * (sim/episode.h, ctx = an ew_replay_player) that, before each world step, makes the world's
 * background traffic equal to the log at the current step: vehicles of the log become
 * EW_VF_EXTERNAL vehicles of the world (spawned when they appear, moved with
 * ew_world_set_external, removed when they leave), so the world's IDM/MOBIL never moves them
 * and they ignore the ego. A logged vehicle that would overlap the ego when the episode starts
 * is left out of the replay (and counted). When the log runs out the episode ends with the
 * label "replay_end".
 *
 * The world given to the player must be created from the same config with ego_enabled = 1 and
 * with no traffic of its own (ew_replay_world_config() makes that config: zero densities and
 * flows). Same log, same ego actions -> bit-identical episodes.
 * Errors: 0 / pointer on success, -1 / NULL with a one-line message.
 */
#ifndef EW_REPLAY_H
#define EW_REPLAY_H

#include <stdint.h>

#include "sim/episode.h"
#include "sim/world.h"

typedef struct ew_replay_log ew_replay_log;
typedef struct ew_replay_player ew_replay_player;

ew_replay_log *ew_replay_record(const ew_world_config *cfg, uint64_t seed, float warmup_s, int steps, char *err,
                                int errlen);
void ew_replay_log_free(ew_replay_log *log);
int ew_replay_log_steps(const ew_replay_log *log);

/* The config of the world to replay into: cfg with ego enabled and no own traffic. */
void ew_replay_world_config(const ew_world_config *cfg, ew_world_config *out);

/* A player of log (borrowed) starting at log step `start`. Attach with
 * episode_cfg.hook = ew_replay_hook, hook_ctx = player; call ew_replay_player_begin after
 * ew_world_reset and before ew_episode_begin (it places the logged vehicles of step `start`). */
ew_replay_player *ew_replay_player_create(const ew_replay_log *log, int start, char *err, int errlen);
void ew_replay_player_free(ew_replay_player *p);
int ew_replay_player_begin(ew_replay_player *p, ew_world *w, char *err, int errlen);
int ew_replay_hook(void *ctx, ew_world *w, ew_episode *ep, char *label, int labellen, char *err, int errlen);
int ew_replay_player_skipped(const ew_replay_player *p); /* vehicles left out for overlap */

#endif
