/* traj.h - trajectory datasets (DESIGN.md section 5, "Data"): what `egoworld collect` writes
 * and what training and evaluation read. Trajectories, not images: every step stores the
 * ego's state and action and the states of the vehicles around it; frames are rendered on
 * the fly by the rasterizer (sim/raster.h), in parallel, into caller-owned float buffers in
 * the layout of ew_fm_batch (models/fm.h).
 *
 * On disk a dataset is a folder: `manifest.json` (format version, dt, raster settings,
 * scenarios, seeds, episode count, split seed and fractions, how it was collected) and one
 * or more binary shards `traj-NNNN.ewt` whose layout is documented in docs/DATASET.md.
 * Budget: at most 24 bytes per stored vehicle-step and well under 1 kB per ego-step on
 * average, so that 1 M ego-steps fit in well under 1 GB on disk and in memory. Writes are
 * atomic per shard (temporary file, fsync, rename) so a killed collect never leaves a
 * half-written shard that looks complete.
 *
 * Episode = one ego run from its first step (warm-up included) to its end. Step t of an
 * episode holds the state BEFORE the world step t (ego pose, every stored vehicle) and the
 * ego action applied at step t (physical, already clipped), so ego(t+1) =
 * ew_kin_step(ego(t), action(t)) exactly. Stored vehicles: those whose centre lies within
 * EW_TRAJ_RANGE_M along x of the ego (enough for the default view and for constant-velocity
 * extrapolation over 3 s). The road in effect at every step is reconstructible (scripted
 * closures and speed-limit changes are recorded when they happen).
 *
 * Splits: deterministic by episode from (split seed, episode index): a hash assigns each
 * episode to train / validation / test with the manifest's fractions (default 0.8/0.1/0.1).
 * Statistics: mean and std of ego states and actions over the training split.
 *
 * Recording: ew_traj_writer_begin/step/end record an episode straight into the writer; for
 * parallel collection an episode is encoded into an ew_traj_enc (one per thread, no shared
 * state) and handed to ew_traj_writer_add in episode order, so the files do not depend on the
 * number of threads.
 *
 * Errors: functions return 0 (or a pointer) on success and -1 (NULL) with a one-line message
 * naming the file and the field or byte offset; a truncated or corrupt shard never crashes.
 * Threads: an open set is read-only; ew_traj_frame_get and ew_traj_fill may run concurrently.
 */
#ifndef EW_TRAJ_H
#define EW_TRAJ_H

#include <stddef.h>
#include <stdint.h>

#include "sim/ego.h"
#include "sim/raster.h"
#include "sim/road.h"

#define EW_TRAJ_VERSION 1
#define EW_TRAJ_RANGE_M 80.0f   /* vehicles stored within this x distance of the ego */
#define EW_TRAJ_MAX_VEH 256     /* at most this many stored vehicles per step */

typedef enum { EW_SPLIT_TRAIN = 0, EW_SPLIT_VAL = 1, EW_SPLIT_TEST = 2, EW_SPLIT_ALL = 3 } ew_split;

/* ---- writing ------------------------------------------------------------------------- */
typedef struct ew_traj_writer ew_traj_writer;

typedef struct {
    const char *dir;          /* created if missing; must not already hold a dataset
                               * unless append = 1 */
    int append;
    float dt;
    uint64_t split_seed;      /* default 1 */
    float frac_train, frac_val; /* default 0.8, 0.1 (test = the rest) */
    const char *mode;         /* "reactive" or "replay" (stored in the manifest) */
    const char *command;      /* the command line, stored in the manifest */
    size_t shard_steps;       /* ego-steps per shard before a new shard starts (default 250000) */
    const char *extra_json;   /* optional JSON object members ("\"k\": v, ...") copied into the
                               * manifest's "collect" object (may be NULL) */
} ew_traj_writer_cfg;

/* cfg with the defaults above (dir NULL, mode "reactive", dt 0.1). */
void ew_traj_writer_cfg_default(ew_traj_writer_cfg *cfg);

ew_traj_writer *ew_traj_writer_open(const ew_traj_writer_cfg *cfg, char *err, int errlen);
/* One episode at a time: begin (with its scenario name, seed, road and ego size), then one
 * ew_traj_writer_step per step, then end. */
int ew_traj_writer_begin(ew_traj_writer *w, const char *scenario, uint64_t seed, const ew_road *road,
                         float ego_len, float ego_wid, char *err, int errlen);
struct ew_world;
/* Records step t of the current episode from the world (before ew_world_step) and the action
 * that is about to be applied (clipped). The road is compared with the last one recorded. */
int ew_traj_writer_step(ew_traj_writer *w, const struct ew_world *world, const ew_action *action, char *err,
                        int errlen);
int ew_traj_writer_end(ew_traj_writer *w, char *err, int errlen);
/* Same, with the label of how the episode ended (e.g. "collision"; stored, <= 63 bytes). */
int ew_traj_writer_end_label(ew_traj_writer *w, const char *label, char *err, int errlen);

/* An episode encoder (in memory): begin / step / end as above, then ew_traj_writer_add. */
typedef struct ew_traj_enc ew_traj_enc;
ew_traj_enc *ew_traj_enc_create(void);
void ew_traj_enc_free(ew_traj_enc *e);
int ew_traj_enc_begin(ew_traj_enc *e, const char *scenario, uint64_t seed, const ew_road *road, float ego_len,
                      float ego_wid, char *err, int errlen);
int ew_traj_enc_step(ew_traj_enc *e, const struct ew_world *world, const ew_action *action, char *err,
                     int errlen);
int ew_traj_enc_end(ew_traj_enc *e, const char *label, char *err, int errlen);
int ew_traj_enc_steps(const ew_traj_enc *e);           /* ego-steps recorded so far */
int64_t ew_traj_enc_vehicle_steps(const ew_traj_enc *e); /* vehicle-steps recorded so far */
/* Appends the ended episode of e to the writer (e can then begin a new episode). */
int ew_traj_writer_add(ew_traj_writer *w, const ew_traj_enc *e, char *err, int errlen);
/* An ended episode as bytes (malloc'd, *n) to move it between processes (distributed
 * collect), and back into an encoder that can then be added; import checks the block's magic,
 * names and checksum. 0, or -1 with a message. */
int ew_traj_enc_export(const ew_traj_enc *e, void **buf, size_t *n, char *err, int errlen);
int ew_traj_enc_import(ew_traj_enc *e, const void *buf, size_t n, char *err, int errlen);
/* Totals written so far (after close: the final ones are in the manifest). */
int64_t ew_traj_writer_steps(const ew_traj_writer *w);
/* Flushes the last shard and writes the manifest; frees w (also on error). */
int ew_traj_writer_close(ew_traj_writer *w, char *err, int errlen);
/* Frees w without writing the manifest (a failed collect: the folder is not a dataset). */
void ew_traj_writer_abort(ew_traj_writer *w);

/* ---- reading ------------------------------------------------------------------------- */
typedef struct ew_traj_set ew_traj_set;

ew_traj_set *ew_traj_open(const char *dir, char *err, int errlen);
void ew_traj_close(ew_traj_set *s);
/* A set of one shard parsed from memory (copied), with the default split seed 1 and fractions
 * 0.8 / 0.1, mode "reactive"; `name` names the buffer in messages. Validates everything (this
 * is the entry point for fuzzing the shard parser). */
ew_traj_set *ew_traj_parse_shard(const uint8_t *buf, size_t len, const char *name, char *err, int errlen);

float ew_traj_dt(const ew_traj_set *s);
const char *ew_traj_mode(const ew_traj_set *s);
int ew_traj_n_episodes(const ew_traj_set *s);
int64_t ew_traj_n_steps(const ew_traj_set *s);       /* ego-steps over all episodes */
int ew_traj_episode_len(const ew_traj_set *s, int e);
ew_split ew_traj_episode_split(const ew_traj_set *s, int e);
const char *ew_traj_episode_scenario(const ew_traj_set *s, int e);
uint64_t ew_traj_episode_seed(const ew_traj_set *s, int e);
const char *ew_traj_episode_end(const ew_traj_set *s, int e); /* end label ("" when none) */
int64_t ew_traj_n_vehicle_steps(const ew_traj_set *s);
size_t ew_traj_file_bytes(const ew_traj_set *s);     /* bytes of the shards on disk */
size_t ew_traj_bytes(const ew_traj_set *s);          /* memory held for the data */

/* One decoded step (caller-owned; about 12 kB, fine on the stack). */
typedef struct {
    ew_road road;
    ew_kin_state ego;
    ew_action action;
    float ego_len, ego_wid;
    int n;
    uint32_t id[EW_TRAJ_MAX_VEH];
    uint8_t type[EW_TRAJ_MAX_VEH];
    float x[EW_TRAJ_MAX_VEH], y[EW_TRAJ_MAX_VEH], hx[EW_TRAJ_MAX_VEH], hy[EW_TRAJ_MAX_VEH];
    float v[EW_TRAJ_MAX_VEH], len[EW_TRAJ_MAX_VEH], wid[EW_TRAJ_MAX_VEH];
} ew_traj_frame;

int ew_traj_frame_get(const ew_traj_set *s, int e, int t, ew_traj_frame *out, char *err, int errlen);
/* The boxes of a decoded frame, for ew_raster_ego(). */
ew_boxes ew_traj_frame_boxes(const ew_traj_frame *f);

/* ---- samples and batches -------------------------------------------------------------- */
typedef struct { int32_t episode, t0; } ew_traj_sample;

/* Every (episode, t0) of a split with t0 - n_cond + 1 >= 0 and t0 + n_pred < len, taking
 * every stride-th t0; a malloc'd array (caller frees) in episode then time order. */
int ew_traj_samples(const ew_traj_set *s, ew_split split, int n_cond, int n_pred, int stride,
                    ew_traj_sample **out, size_t *n, char *err, int errlen);

typedef struct {
    int n_cond, n_pred;
    ew_raster_cfg raster;     /* must match the model's image size */
    int channels;             /* 3: markings, vehicles, off-road (the world model's input) */
    int threads;              /* OpenMP threads for rendering (0: default) */
} ew_traj_batch_cfg;

/* Renders B samples into ew_fm_batch-layout buffers (any may be NULL to skip it):
 *   frames        [B, n_cond*channels, H, W] floats in [0, 1], frames t0-n_cond+1 .. t0
 *   states        [B, n_cond, 5] physical ego states at the same steps
 *   actions       [B, n_pred, 2] physical actions at t0 .. t0+n_pred-1
 *   target_frames [B, n_pred, channels, H, W] frames t0+1 .. t0+n_pred
 *   target_states [B, n_pred, 5] ego states t0+1 .. t0+n_pred
 * Each frame is the ego-centred raster at that step's own ego pose, bit-identical to
 * ew_raster_ego() of the stored step (and to the simulator's raster when nothing outside
 * EW_TRAJ_RANGE_M was visible). */
int ew_traj_fill(const ew_traj_set *s, const ew_traj_batch_cfg *c, const ew_traj_sample *samples, int B,
                 float *frames, float *states, float *actions, float *target_frames, float *target_states,
                 char *err, int errlen);

/* Mean and std (population, floored at 1e-6) of ego states (x, y, dx, dy, s) and actions
 * (a, b) over every step of a split. */
int ew_traj_stats(const ew_traj_set *s, ew_split split, float state_mean[5], float state_std[5],
                  float action_mean[2], float action_std[2], char *err, int errlen);

#endif
