/* motion.h - the motion predictor: from 1 s of positions (10 frames at 10 Hz) of one vehicle
 * and a crop of the video around it, a GRU predicts its next 3 s (30 frames) as 2-D
 * Gaussians, trained by Gaussian negative log-likelihood.
 *
 * Frames: positions are road-frame metres. The model works relative to the last observed
 * position p9 and the constant-velocity extrapolation v = (p9 - p4) / (5 dt): the mean at
 * horizon k (1..30) is p9 + v k dt + sum_{j<=k} delta_j, the standard deviations are
 * 0.05 + sum_{j<=k} softplus(s_j) (so they grow with the horizon), the correlation
 * 0.9 tanh(r_k). Inputs per history step: position minus p9 (x / 10, y) and velocity minus v
 * ((x) / 3, y); and the crop (see
 * EW_MOTION_CROP_*) through a linear layer. The GRU (hidden H) reads the history; an MLP
 * maps [h, crop features] to the 5 x 30 raw outputs.
 *
 * Gaussian NLL of a target t under N(mu, [[sx^2, r sx sy], [r sx sy, sy^2]]), per point:
 *   log(2 pi) + log sx + log sy + 0.5 log(1 - r^2) + (zx^2 - 2 r zx zy + zy^2) / (2 (1 - r^2)),
 * zx = (tx - mx) / sx, zy = (ty - my) / sy; the loss is its mean over samples and horizons.
 * Coverage: the share of targets with squared Mahalanobis distance <= 1 (1 sigma ellipse,
 * 1 - e^{-1/2} = 39.3 % for a calibrated model) and <= 4 (2 sigma, 86.5 %).
 */
#ifndef EW_MOTION_H
#define EW_MOTION_H

#include <stddef.h>
#include <stdint.h>

#include "models/layers.h"
#include "models/optim.h"

#define EW_MOTION_HIST 10
#define EW_MOTION_FUT 30
#define EW_MOTION_CROP_R 12  /* crop rows after 2x pooling: 12 m across at 0.5 m/px */
#define EW_MOTION_CROP_C 24  /* crop columns after 4x pooling: 48 m, from 10 m behind */
#define EW_MOTION_CROP (EW_MOTION_CROP_R * EW_MOTION_CROP_C)

typedef struct {
    float hist[EW_MOTION_HIST][2]; /* observed positions (m), oldest first */
    float fut[EW_MOTION_FUT][2];   /* target positions (m) */
    float crop[EW_MOTION_CROP];    /* grey crop of the last observed frame */
} ew_motion_sample;

typedef struct {
    int hidden;  /* GRU width (64) */
    float dt;    /* 0.1 s */
} ew_motion_config;

typedef struct {
    ew_motion_config cfg;
    ew_linear_layer gx, gh, crop;
    ew_mlp head;
    ew_param_list params;
} ew_motion;

void ew_motion_config_default(ew_motion_config *c);
int ew_motion_init(ew_motion *m, const ew_motion_config *cfg, uint64_t seed, char *err, size_t errsz);
void ew_motion_free(ew_motion *m);

/* Predicted Gaussians, each [n, EW_MOTION_FUT]. */
typedef struct {
    ew_tensor *mx, *my, *sx, *sy, *rho;
} ew_motion_out;

int ew_motion_forward(ew_graph *g, const ew_motion *m, const ew_motion_sample *s, int n, ew_motion_out *out);

/* Mean NLL (see above); all tensors [n, k], targets tx, ty n*k floats. */
ew_tensor *ew_gauss2d_nll(ew_graph *g, ew_tensor *mx, ew_tensor *my, ew_tensor *sx, ew_tensor *sy, ew_tensor *rho,
                          const float *tx, const float *ty);
/* The same for one point in double precision (the reference). */
double ew_gauss2d_nll_ref(double mx, double my, double sx, double sy, double r, double tx, double ty);
/* Squared Mahalanobis distance of (tx, ty). */
double ew_gauss2d_maha2(double mx, double my, double sx, double sy, double r, double tx, double ty);

/* One Adam step on n samples; *loss gets the NLL. 0 or -1 (err). */
int ew_motion_train_step(ew_motion *m, ew_optim *opt, ew_graph *g, const ew_motion_sample *s, int n, float *loss,
                         char *err, size_t errsz);
/* Predictions out[n][EW_MOTION_FUT][5] = (mx, my, sx, sy, rho). 0 or -1. */
int ew_motion_predict(const ew_motion *m, ew_graph *g, const ew_motion_sample *s, int n, float *out, char *err,
                      size_t errsz);
/* Constant-velocity baseline from the same history: out[EW_MOTION_FUT][2]. */
void ew_motion_cv(const ew_motion_sample *s, float dt, float *out);

int ew_motion_save(const ew_motion *m, ew_optim *opt, long step, const char *path, char *err, size_t errsz);
int ew_motion_load(ew_motion *m, const char *path, long *step, char *err, size_t errsz);

#endif
