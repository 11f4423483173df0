/* policy.h - the driving policy network of DESIGN.md section 6 (MPUR and one-step
 * imitation), its checkpoints, and the "policy:FILE" controller.
 *
 * Architecture (nf = cfg.nf, C = cfg.channels (3: markings, vehicles, off-road, or 4 with the
 * ego channel), LeakyReLU 0.2 in the encoder, ReLU in the head; stage sizes as the world
 * model's, models/fm.h: 117x24 -> 58x12 -> 29x6 -> 14x3, F = 4nf * h3 * w3):
 *   enc.conv1..3  conv 4x4 stride 2 pad 1, n_cond*C -> nf -> 2nf -> 4nf (channel dropout
 *                 cfg.dropout when training);
 *   senc          MLP n_cond*5 -> hidden -> hidden -> F on the state features, added;
 *   proj          Linear F -> proj, ReLU;
 *   head          MLP proj -> hidden -> hidden -> hidden -> 2 (ReLU between): three hidden
 *                 layers, then the normalised action (a, b).
 * State features per frame j of the window (physical states in, differentiable):
 *   ((x_j - x_last) / EW_POLICY_POS_SCALE, (y_j - y_last) / EW_POLICY_POS_SCALE, dx_j, dy_j,
 *    (s_j - mean_s) / std_s)
 * so the policy never sees the absolute road position (it is arbitrary in simulation).
 * Physical action = normalised * action_std + action_mean (the training split's statistics,
 * stored in the checkpoint); the controller clips it to the world's ego limits (sim/ego.h).
 * Parameter names "<module>.<layer>.weight|bias" (enc.conv1.weight, senc.0.bias, proj.weight,
 * head.3.bias), in the order of ew_policy_params().
 *
 * Checkpoints: safetensors (models/checkpoint.h) with metadata EW_POLICY_META_CONFIG and
 * EW_POLICY_META_STATS (JSON), plus whatever the trainer adds (method, MPUR statistics,
 * optimizer step); tensors named "optim." are optimizer state and ignored by the loader.
 * The loader is strict: every parameter present with its exact shape, no unknown tensor,
 * config and stats fully validated; errors are one line naming the file.
 *
 * Memory and threads: a policy owns its layers (ew_policy_free); tensors live in the
 * caller's graph. A policy may be shared read-only by no-grad inference on several graphs.
 */
#ifndef EW_POLICY_H
#define EW_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "models/checkpoint.h"
#include "models/fm.h"
#include "models/layers.h"
#include "sim/controller.h"
#include "sim/rng.h"

#define EW_POLICY_POS_SCALE 10.0f /* m: scale of the relative positions in the state features */
#define EW_POLICY_META_CONFIG "egoworld.policy.config"
#define EW_POLICY_META_STATS "egoworld.policy.stats"

typedef struct {
    int nf;              /* 64: encoder widths nf, 2nf, 4nf */
    int channels;        /* 3 (world-model channels) or 4 (with the ego footprint) */
    int n_cond;          /* 20 frames and states in the window */
    int height, width;   /* 117 x 24 */
    float m_per_px;      /* 0.617: the raster scale the frames are rendered at */
    int proj;            /* 256: projection width */
    int hidden;          /* 256: width of the state MLP and of the three hidden layers */
    float dropout;       /* 0: channel dropout in the encoder while training */
    uint64_t seed;       /* initialisation seed */
} ew_policy_config;

typedef struct {
    ew_policy_config cfg;
    ew_fm_stats stats;   /* state and action mean/std (training split) */
    int fh[4], fw[4];
    int feat;            /* F */
    ew_conv_layer enc[3];
    ew_mlp senc, head;
    ew_linear_layer proj;
    ew_param_list params;
} ew_policy;

/* The anchor configuration (values above, seed 1). */
ew_policy_config ew_policy_config_default(void);
/* 0, or -1 with the first offending field. */
int ew_policy_config_validate(const ew_policy_config *c, char *err, size_t errsz);
/* stats NULL: identity. 0, or -1 with a message (nothing left allocated). */
int ew_policy_init(ew_policy *p, const ew_policy_config *cfg, const ew_fm_stats *stats, char *err, size_t errsz);
void ew_policy_free(ew_policy *p);
ew_param *ew_policy_params(ew_policy *p, int *count);

/* Tensor level: frames [B, n_cond*C, H, W] in [0, 1], states [B, n_cond, 5] physical ->
 * normalised actions [B, 2]. train: dropout active (needs rng when cfg.dropout > 0).
 * NULL with the graph's error set on failure. */
ew_tensor *ew_policy_forward(ew_graph *g, const ew_policy *p, ew_tensor *frames, ew_tensor *states, int train,
                             ew_rng *rng);
/* Normalised [B, 2] -> physical [B, 2] (differentiable; no clipping). */
ew_tensor *ew_policy_denormalize(ew_graph *g, const ew_policy *p, ew_tensor *a_norm);
/* No tape, no dropout: B windows -> B physical actions (not clipped). g is reset here.
 * 0, or -1 with a message. */
int ew_policy_act_batch(ew_graph *g, const ew_policy *p, int B, const float *frames, const float *states,
                        float *actions, char *err, size_t errsz);

/* ---- checkpoints ---------------------------------------------------------------------- */
int ew_policy_save(const ew_policy *p, const char *path, const ew_param *extra, int nextra, const ew_kv *meta,
                   int nmeta, char *err, size_t errsz);
int ew_policy_load(ew_policy *p, const char *path, char *err, size_t errsz);
int ew_policy_load_ckpt(ew_policy *p, const ew_checkpoint *ck, char *err, size_t errsz);
char *ew_policy_config_json(const ew_policy_config *c); /* malloc'd */
int ew_policy_config_from_json(const char *json, ew_policy_config *c, char *err, size_t errsz);

/* ---- controller ----------------------------------------------------------------------- */
/* A controller driven by the policy checkpoint at path. observe() (every step, warm-up
 * included) renders the world with ew_raster_world at the policy's raster size and keeps
 * the last n_cond frames and ego states; act() runs the network without a tape and returns
 * the action clipped to the world's ego limits (the zero action until n_cond frames were
 * seen); reset() clears the history. seed: reserved for stochastic policies (the network
 * is deterministic at inference). 0, or -1 with a one-line message naming the file. */
int ew_policy_controller_create(const char *path, uint64_t seed, ew_controller *out, char *err, int errlen);

#endif
