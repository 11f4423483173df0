/* fm.h - the world (forward) model of DESIGN.md section 5: a stochastic convolutional
 * predictor of the next frame and ego state, in three variants, with its training step,
 * planning-time inference and checkpoints.
 *
 * Architecture (nf = cfg.nf, C = cfg.channels, hid = cfg.hidden; LeakyReLU 0.2 throughout;
 * stage sizes h1 = floor(h/2), h2 = floor(h1/2), h3 = floor(h2/2), likewise widths;
 * the anchor 117x24 -> 58x12 -> 29x6 -> 14x3; feature F = 4nf * h3 * w3 = 10752):
 *   enc.conv1..3   conv 4x4 stride 2 pad 1, n_cond*C -> nf -> 2nf -> 4nf, each followed by
 *                  LeakyReLU and channel dropout (cfg.dropout, training only);
 *   senc           MLP n_cond*5 -> hid -> hid -> F on the normalised state window, added;
 *   aenc           MLP A -> hid -> hid -> F, added after the latent: A = 2 (the normalised
 *                  action; FM and FM-KM) or 5 (FM-KM-noaction: the kinematic model's
 *                  normalised next state);
 *   stochastic only: yenc.conv1..3 (as enc, C input channels) encodes the true next frame;
 *                  post MLP F -> hid -> hid -> 2nz on flatten(h_ctx + yenc) gives
 *                  (mu, logvar); zexp Linear nz -> F expands z, added; the prior is N(0, I);
 *   res.conv1..3   bottleneck 1x1 4nf->nf, 3x3 nf->nf (pad 1), 1x1 nf->4nf, LeakyReLU
 *                  after the first two, added to its input;
 *   dec.deconv1..3 transposed conv 4x4 stride 2 pad 1, 4nf -> 2nf -> nf -> C, output padding
 *                  (stage size mod 2) so the sizes retrace the encoder exactly; LeakyReLU
 *                  after the first two; image = sigmoid(dec + last input frame);
 *   head           (FM only) MLP F -> hid -> hid -> 5: next normalised state = last + head.
 *                  FM-KM and FM-KM-noaction: next state = ew_fm_kin_step (fm_kin.h), exact.
 * These are the shapes of models/nnbench.c. Parameter names are "<module>.<layer>.weight|bias"
 * (e.g. "enc.conv1.weight", "senc.0.bias", "zexp.weight"), listed by ew_fm_params().
 *
 * Units: all states and actions handed to this module are physical (SI; states x, y, dx, dy,
 * speed; actions a [m/s^2], b [1/m]); the model normalises them with its stats (mean/std of
 * states and actions, from the training split) and returns normalised and physical states.
 * Frames are floats in [0, 1], NCHW, the n_cond frames of a window stacked oldest first.
 *
 * Randomness: every stochastic choice (dropout masks, z-dropout coin, posterior noise, prior
 * samples) is drawn from an ew_rng the caller passes; same rng state, same result. Order per
 * step: z-dropout coin (training with the posterior only), encoder dropout masks, target
 * encoder masks, z noise.
 *
 * Memory: a model owns its layers (ew_fm_free); tensors live in the caller's ew_graph arena.
 * Errors: functions return 0 or -1 with a one-line message (err/errsz, or the graph's error
 * for tensor-level calls). Thread use: one graph per thread; a model may be shared read-only
 * by no-grad inference on several graphs.
 */
#ifndef EW_FM_H
#define EW_FM_H

#include <stddef.h>
#include <stdint.h>

#include "models/checkpoint.h"
#include "models/fm_kin.h"
#include "models/layers.h"
#include "models/optim.h"

typedef enum { EW_FM_PLAIN = 0, EW_FM_KM = 1, EW_FM_KM_NOACTION = 2 } ew_fm_variant;

typedef struct {
    ew_fm_variant variant;
    int stochastic;      /* 0: deterministic (no latent), 1: with latent z */
    int nf;              /* 64: widths nf, 2nf, 4nf */
    int hidden;          /* MLP hidden width, 256 (= 4nf at the anchor) */
    int n_cond;          /* 20 conditioning frames */
    int n_pred;          /* 20 training unroll length */
    int height, width;   /* 117 x 24 (>= 8 each) */
    int channels;        /* 3 per frame */
    int state_dim;       /* 5 (fixed) */
    int action_dim;      /* 2 (fixed) */
    int nz;              /* 32 latent size */
    float dropout;       /* 0.1 channel dropout in the encoders */
    float z_dropout;     /* 0.5: per training step, probability the batch uses the prior */
    float beta;          /* 1e-6 KL weight */
    float dt;            /* 0.1 s, the data rate (kinematic model) */
    int allow_reverse;   /* 0: kinematic speed clamped at 0 */
    uint64_t seed;       /* initialisation seed */
} ew_fm_config;

typedef struct {
    float state_mean[5], state_std[5];
    float action_mean[2], action_std[2];
} ew_fm_stats;

/* The anchor configuration: FM, deterministic, the values in the comments above, seed 1. */
ew_fm_config ew_fm_config_default(void);
/* Identity statistics (mean 0, std 1). */
ew_fm_stats ew_fm_stats_identity(void);
/* 0, or -1 with the first offending field in err. */
int ew_fm_config_validate(const ew_fm_config *c, char *err, size_t errsz);
const char *ew_fm_variant_name(ew_fm_variant v); /* "fm", "fm-km", "fm-km-noaction" */
int ew_fm_variant_parse(const char *s, ew_fm_variant *out); /* 0 or -1 */

typedef struct {
    ew_fm_config cfg;
    ew_fm_stats stats;
    int fh[4], fw[4];        /* feature map sizes: input, stage 1, 2, 3 */
    int feat;                /* 4nf * fh[3] * fw[3] */
    ew_conv_layer enc[3], yenc[3], res[3], dec[3];
    ew_mlp senc, aenc, head, post;
    ew_linear_layer zexp;
    ew_param_list params;    /* every trainable tensor, in a fixed order */
} ew_fm;

/* Builds a model with PyTorch-default initialisation from cfg->seed; stats NULL: identity.
 * 0, or -1 with a message (nothing left allocated). */
int ew_fm_init(ew_fm *m, const ew_fm_config *cfg, const ew_fm_stats *stats, char *err, size_t errsz);
void ew_fm_free(ew_fm *m);
/* Moves the parameters and gradients into be's memory when be is a device backend (no-op on
 * the CPU backend); the views of ew_fm_params change (collect them again). A moved model may
 * only be used with graphs of that backend (or one sharing its memory) and must be freed
 * before the backend is destroyed. 0, or -1 with a message. */
int ew_fm_move_to_backend(ew_fm *m, const ew_backend *be, char *err, size_t errsz);
/* Parameter views (owned by the model). */
ew_param *ew_fm_params(ew_fm *m, int *count);
/* Physical <-> normalised state rows (n rows of 5). */
void ew_fm_normalize_states(const ew_fm *m, const float *phys, float *norm, size_t n);
void ew_fm_denormalize_states(const ew_fm *m, const float *norm, float *phys, size_t n);
/* The kinematic op parameters of this model (stats, dt, allow_reverse). */
ew_fm_kin ew_fm_kinematics(const ew_fm *m);

/* ---- one step (tensor level) -------------------------------------------------------- */
typedef enum {
    EW_FM_Z_PRIOR = 0,     /* z ~ N(0, I) from the rng */
    EW_FM_Z_POSTERIOR = 1, /* z from the posterior (needs the target frame), reparameterised */
    EW_FM_Z_GIVEN = 2      /* z given by the caller */
} ew_fm_zmode;

typedef struct {
    int train;             /* 1: dropout active */
    ew_fm_zmode zmode;     /* ignored by deterministic models */
    ew_tensor *z;          /* EW_FM_Z_GIVEN: [B, nz] */
    ew_rng *rng;           /* dropout masks and z noise; may be NULL when nothing is random */
} ew_fm_step_opts;

typedef struct {
    ew_tensor *image;      /* [B, C, H, W] */
    ew_tensor *state;      /* [B, 5] normalised */
    ew_tensor *mu, *logvar;/* [B, nz] when the posterior ran, else NULL */
    ew_tensor *z;          /* [B, nz] used (NULL for deterministic models) */
    ew_tensor *feat;       /* [B, 4nf, h3, w3] features after the residual block */
} ew_fm_step_out;

/* frames [B, n_cond*C, H, W]; states [B, n_cond, 5] normalised; action [B, 2] physical;
 * target [B, C, H, W] (posterior only, else NULL). 0, or -1 with ew_graph_error set. */
int ew_fm_step(ew_graph *g, const ew_fm *m, ew_tensor *frames, ew_tensor *states, ew_tensor *action,
               ew_tensor *target, const ew_fm_step_opts *o, ew_fm_step_out *out);

/* ---- autoregressive unroll ---------------------------------------------------------- */
typedef struct {
    ew_tensor *frames;         /* [B, n_cond*C, H, W] in [0, 1] */
    ew_tensor *states;         /* [B, n_cond, 5] physical */
    ew_tensor *actions;        /* [B, T, 2] physical */
    ew_tensor *target_frames;  /* [B, T, C, H, W] or NULL (needed for the posterior, loss) */
    ew_tensor *target_states;  /* [B, T, 5] physical or NULL (loss) */
} ew_fm_inputs;

typedef struct {
    int train;                 /* dropout active */
    ew_fm_zmode zmode;         /* POSTERIOR: each step, with probability z_dropout, the whole
                                * batch uses a prior sample instead (training) */
    float z_dropout;           /* used with EW_FM_Z_POSTERIOR; 0 = always the posterior */
    ew_tensor *z;              /* EW_FM_Z_GIVEN: [T, B, nz] */
    ew_rng *rng;
} ew_fm_unroll_opts;

typedef struct {
    int steps;
    ew_tensor **images;        /* steps x [B, C, H, W] (arena array) */
    ew_tensor **states;        /* steps x [B, 5] normalised */
    ew_tensor **states_phys;   /* steps x [B, 5] physical (differentiable) */
    ew_tensor *loss, *img_mse, *state_mse, *kl; /* scalars when targets were given, else NULL:
                                * img_mse and state_mse (normalised) are means over all steps,
                                * kl the sum over posterior steps / steps,
                                * loss = img_mse + state_mse + beta * kl */
    int prior_steps;           /* steps that used a prior sample (z-dropout) */
} ew_fm_unroll_out;

/* Predicts T = inputs->actions->shape[1] steps, each on the model's own previous outputs
 * (the predicted frame and state are appended to the window, the oldest dropped). */
int ew_fm_unroll(ew_graph *g, const ew_fm *m, const ew_fm_inputs *in, const ew_fm_unroll_opts *o,
                 ew_fm_unroll_out *out);

/* ---- training ------------------------------------------------------------------------ */
typedef struct {
    int batch;                  /* B */
    int steps;                  /* T (normally cfg.n_pred) */
    float *frames;              /* [B, n_cond*C, H, W] */
    float *states;              /* [B, n_cond, 5] physical */
    float *actions;             /* [B, T, 2] physical */
    float *target_frames;       /* [B, T, C, H, W] */
    float *target_states;       /* [B, T, 5] physical */
} ew_fm_batch;

typedef struct {
    float loss, img_mse, state_mse, kl;
    float grad_norm;            /* before clipping */
    int prior_steps;
} ew_fm_losses;

typedef struct {
    float lr;                   /* 1e-4 */
    float clip;                 /* 5: global gradient-norm clip (<= 0: none) */
    size_t arena_bytes;         /* initial arena (0: grows on demand) */
} ew_fm_train_config;

ew_fm_train_config ew_fm_train_defaults(void);

typedef struct ew_fm_trainer ew_fm_trainer;
/* A trainer for m (borrowed, must outlive it) on backend be (borrowed): owns a graph and an
 * Adam optimizer over ew_fm_params(m). On a device backend m is first moved into its memory
 * (ew_fm_move_to_backend). 0 or -1 with a message. */
int ew_fm_trainer_create(ew_fm *m, const ew_backend *be, const ew_fm_train_config *tc, ew_fm_trainer **out,
                         char *err, size_t errsz);
void ew_fm_trainer_free(ew_fm_trainer *t);
ew_optim *ew_fm_trainer_optim(ew_fm_trainer *t);
ew_graph *ew_fm_trainer_graph(ew_fm_trainer *t);
/* One step on b: forward unroll (dropout on; stochastic models: posterior with z-dropout),
 * backward, clip, Adam. All randomness from (seed): same model, batch and seed -> same step.
 * A non-finite loss or gradient norm is an error and the parameters are left unchanged. */
int ew_fm_train_step(ew_fm_trainer *t, const ew_fm_batch *b, uint64_t seed, ew_fm_losses *out, char *err,
                     size_t errsz);
/* Loss terms of b without training (dropout off; stochastic: posterior, no z-dropout,
 * noise from seed). */
int ew_fm_eval_batch(ew_fm_trainer *t, const ew_fm_batch *b, uint64_t seed, ew_fm_losses *out, char *err,
                     size_t errsz);

/* ---- inference for planning (no tape) ------------------------------------------------ */
/* Conditioning window (frames [B, n_cond*C, H, W], states [B, n_cond, 5] physical) and actions
 * [B, T, 2] physical; K latent samples from the prior (deterministic models: K copies of the
 * one prediction). Writes images [K, B, T, C, H, W] and physical states [K, B, T, 5] (either
 * may be NULL). Uses g (reset here). 0 or -1 with a message. */
int ew_fm_predict(ew_graph *g, const ew_fm *m, int B, const float *frames, const float *states, int T,
                  const float *actions, int K, uint64_t seed, float *images, float *states_out, char *err,
                  size_t errsz);

/* ---- checkpoints ---------------------------------------------------------------------- */
/* Metadata keys: the configuration and the statistics as JSON strings. */
#define EW_FM_META_CONFIG "egoworld.fm.config"
#define EW_FM_META_STATS "egoworld.fm.stats"

/* Writes the parameters (then extra, e.g. optimizer state) with config and stats (and the
 * caller's extra metadata) atomically. */
int ew_fm_save(const ew_fm *m, const char *path, const ew_param *extra, int nextra, const ew_kv *meta, int nmeta,
               char *err, size_t errsz);
/* Builds *m from a checkpoint: config and stats parsed and validated, every parameter present
 * with its exact shape, no unknown tensor except names starting with "optim.". */
int ew_fm_load(ew_fm *m, const char *path, char *err, size_t errsz);
/* The same from an open checkpoint. */
int ew_fm_load_ckpt(ew_fm *m, const ew_checkpoint *ck, char *err, size_t errsz);
/* JSON of a config / stats (malloc'd, caller frees) and their strict parsers. */
char *ew_fm_config_json(const ew_fm_config *c);
char *ew_fm_stats_json(const ew_fm_stats *s);
int ew_fm_config_from_json(const char *json, ew_fm_config *c, char *err, size_t errsz);
int ew_fm_stats_from_json(const char *json, ew_fm_stats *s, char *err, size_t errsz);

/* Stochastic model from a deterministic checkpoint: m must be initialised stochastic; the
 * checkpoint must be deterministic with the same variant, widths, n_cond, image size and
 * channels. Copies every shared tensor (enc, senc, aenc, res, dec, head) and the stats, and
 * zeroes zexp so that the new model starts with the deterministic model's predictions. */
int ew_fm_init_from_deterministic(ew_fm *m, const char *det_path, char *err, size_t errsz);

#endif
