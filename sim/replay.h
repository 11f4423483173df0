/* replay.h - non-reactive traffic: record a run of a world with no ego, then replay it around
 * an ego (the anchor's setting: the other cars follow their recorded paths and do not yield).
 *
 * ew_replay_record() runs a copy of the world config with the ego disabled: reset(seed),
 * warmup_s seconds of settling (not recorded), then `steps` steps; it keeps every vehicle's
 * state (id, centre, heading, speed) at frames 0..steps in memory, 24 bytes per vehicle and
 * frame, plus each vehicle's type and size once (owned by the log).
 *
 * A player replays a log from frame `start` into a world made from
 * ew_replay_world_config(cfg) (ego enabled at the config's start lane, x and speed; no
 * traffic of its own): vehicles of the log become EW_VF_EXTERNAL vehicles of the world with
 * their logged ids, types and sizes (spawned when they appear, moved with
 * ew_world_set_externals, removed when they leave), so the world's IDM/MOBIL never moves them
 * and they ignore the ego. ew_replay_player_begin() places frame `start`; a logged vehicle
 * whose footprint then overlaps the ego's grown by `margin` metres on every side is left out
 * of the whole replay and counted (ew_replay_player_skipped). The player's hook runs as the
 * episode's post-step hook (ew_replay_attach sets it): after world step k of the episode the
 * logged vehicles are at frame start + k, so the ego and the others are always at the same
 * time when the controller, the recorder or the end tests see the world. When the log runs
 * out (after the step that reaches its last frame) the episode ends with the label
 * "replay_end", unless that step ended it otherwise (collision, off-road, success).
 *
 * Same log, same ego actions -> bit-identical episodes. A log is read-only once recorded and
 * may be shared by players in several threads; a player is used by one thread.
 * Note: sim/ngsim.h owns the names ew_replay_create/begin/sync/hook (NGSIM log replay); the
 * functions here are ew_replay_log_* / ew_replay_player_* / ew_replay_record / ew_replay_attach.
 * Errors: 0 / pointer on success, -1 / NULL with a one-line message.
 */
#ifndef EW_REPLAY_H
#define EW_REPLAY_H

#include <stdint.h>

#include "sim/episode.h"
#include "sim/world.h"

#define EW_REPLAY_MARGIN 1.0f /* default start margin around the ego (m) */

typedef struct ew_replay_log ew_replay_log;
typedef struct ew_replay_player ew_replay_player;

ew_replay_log *ew_replay_record(const ew_world_config *cfg, uint64_t seed, float warmup_s, int steps, char *err,
                                int errlen);
void ew_replay_log_free(ew_replay_log *log);
int ew_replay_log_steps(const ew_replay_log *log); /* recorded steps (frames 0..steps) */
/* The vehicles of frame f (0 <= f <= steps): *n states, in the recording world's slot order. */
const ew_external_state *ew_replay_log_frame(const ew_replay_log *log, int f, int *n);
/* A logged vehicle's type and size; 0, or -1 for an id the log does not hold. */
int ew_replay_log_vehicle(const ew_replay_log *log, uint32_t id, ew_vtype *type, float *length, float *width);
size_t ew_replay_log_bytes(const ew_replay_log *log);

/* The config of the world to replay into: cfg with ego enabled and no own traffic. */
void ew_replay_world_config(const ew_world_config *cfg, ew_world_config *out);

/* A player of log (borrowed) starting at frame `start` (0 <= start < steps). */
ew_replay_player *ew_replay_player_create(const ew_replay_log *log, int start, char *err, int errlen);
void ew_replay_player_free(ew_replay_player *p);
/* The start margin (m, >= 0; default EW_REPLAY_MARGIN); takes effect at the next begin. */
void ew_replay_player_set_margin(ew_replay_player *p, float margin);
/* Replace mode (off by default): at begin, the logged vehicle of the ego's start lane
 * nearest to the ego's start x becomes the ego (its logged position, heading and speed; it
 * is left out of the replay, not counted as skipped), as in the anchor, where the ego is one
 * of the logged cars and the gaps around it are the ones the traffic kept. */
void ew_replay_player_set_replace_ego(ew_replay_player *p, int on);
uint32_t ew_replay_player_ego_id(const ew_replay_player *p); /* the replaced vehicle (0: none) */
/* Call after ew_world_reset and before ew_episode_begin: places the vehicles of frame
 * `start` (may be called again for the next episode on the same world after a reset). */
int ew_replay_player_begin(ew_replay_player *p, ew_world *w, char *err, int errlen);
/* Sets ec->post_hook = ew_replay_player_hook, ec->post_hook_ctx = p. */
void ew_replay_attach(ew_replay_player *p, ew_episode_cfg *ec);
/* The post-step hook (ctx = player): moves the logged vehicles to frame start + steps taken. */
int ew_replay_player_hook(void *ctx, ew_world *w, ew_episode *ep, char *label, int labellen, char *err, int errlen);
int ew_replay_player_skipped(const ew_replay_player *p); /* vehicles left out for overlap */
int ew_replay_player_frame(const ew_replay_player *p);   /* frame of the log the world shows */

#endif
