/* motion.h - the motion predictor: from 1 s of positions (10 frames at 10 Hz) of one vehicle,
 * a context vector (its lane and its neighbours, see EW_MOTION_CTX) and a crop of the video
 * around it, a GRU predicts its next 3 s (30 frames) as 2-D Gaussians, trained by Gaussian
 * negative log-likelihood.
 *
 * Frames: positions are road-frame metres (x along the road, y across). The model works
 * relative to a least-squares line fitted to the 10 history positions (it denoises tracked
 * inputs): q = fitted position at the last frame, v = fitted velocity. The mean at horizon
 * k (1..30) is q + v k dt + sum_{j<=k} delta_j, the standard deviations are
 * 0.05 + sum_{j<=k} softplus(s_j) (so they grow with the horizon), the correlation
 * 0.9 tanh(r_k). Inputs per history step: position minus the fitted line (x, y) and velocity
 * minus v ((x) / 3, y); the context; a summary (q minus the last observed position, v minus
 * the constant-velocity estimate of ew_motion_cv, v / 30); and the crop (see EW_MOTION_CROP_*)
 * through a linear layer. The GRU (hidden H) reads the history; an MLP maps [h, crop
 * features, context, summary] to the 5 x 30 raw outputs.
 *
 * Gaussian NLL of a target t under N(mu, [[sx^2, r sx sy], [r sx sy, sy^2]]), per point:
 *   log(2 pi) + log sx + log sy + 0.5 log(1 - r^2) + (zx^2 - 2 r zx zy + zy^2) / (2 (1 - r^2)),
 * zx = (tx - mx) / sx, zy = (ty - my) / sy; the loss is its mean over samples and horizons.
 * Coverage: the share of targets with squared Mahalanobis distance <= 1 (1 sigma ellipse,
 * 1 - e^{-1/2} = 39.3 % for a calibrated model) and <= 4 (2 sigma, 86.5 %).
 *
 * Calibration (post hoc, fitted on a validation set by ew_motion_calibrate, never used in
 * training): at horizon k the predicted covariance [[sx^2, r sx sy], [r sx sy, sy^2]] becomes
 * [[T^2 sx^2 + ax^2, c r T^2 sx sy], [c r T^2 sx sy, T^2 sy^2 + ay^2]],
 * T = t[k * 3 / 30] exp(beta (25 - v) / 10) (a temperature per second of horizon, larger for
 * slow vehicles: errors grow in congested traffic faster than the predicted variances, v the
 * fitted speed, clamped to [0, 35] m/s), c in [0, 1] shrinks the correlation, in
 * ew_motion_predict; identity when t = 1, c = 1, ax = ay = beta = 0; saved with the checkpoint. It
 * is fitted to the coverage, not the likelihood: errors have heavier tails than a Gaussian
 * (unforeseen lane changes and brakes) and maximum likelihood widens every ellipse to cover
 * those (first version-2 model: T at its bound 4, 97 % inside 1 sigma). The correlation term is
 * there because a model trained on tracked positions learns the tracker's x-y correlated
 * error at short horizons (|r| ~ 0.9), which the truth does not share.
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
/* Context at the last history frame (models/motion_data.c fills it, zeros = unknown):
 *  0 lateral offset from the nearest lane centre / 1.85 m;  1, 2 a lane exists to the left
 *  (+y) / right;  3 fitted speed / 30 m/s;  4, 5 distance to the view's front / rear edge
 *  / 100 m;  then for the own, left and right lane (6, 12, 18): the nearest vehicle ahead
 *  (gap / 50 m clipped to 2, 2 when none; relative speed / 10 m/s; present) and behind
 *  (the same, gap measured backwards);  23 when closing on the leader, the deceleration that
 *  stops the closing within the gap left (dv^2 / (2 (gap - 6 m)), gap >= 7 m) / 5 m/s^2,
 *  clipped to 3. */
#define EW_MOTION_CTX 24

typedef struct {
    float hist[EW_MOTION_HIST][2]; /* observed positions (m), oldest first */
    float fut[EW_MOTION_FUT][2];   /* target positions (m) */
    float crop[EW_MOTION_CROP];    /* grey crop of the last observed frame */
    float ctx[EW_MOTION_CTX];      /* lane and neighbours (see EW_MOTION_CTX) */
} ew_motion_sample;

typedef struct {
    int hidden;  /* GRU width (64) */
    float dt;    /* 0.1 s */
} ew_motion_config;

typedef struct {
    float t[3];   /* temperature per second of horizon */
    float c;      /* correlation shrink */
    float ax, ay; /* m */
    float beta;   /* temperature grows by exp(beta (25 - v) / 10) at the vehicle's speed v (m/s) */
} ew_motion_cal;

/* The identity calibration. */
void ew_motion_cal_none(ew_motion_cal *c);

typedef struct {
    ew_motion_config cfg;
    ew_linear_layer gx, gh, crop;
    ew_mlp head;
    ew_param_list params;
    ew_motion_cal cal;
} ew_motion;

void ew_motion_config_default(ew_motion_config *c);
int ew_motion_init(ew_motion *m, const ew_motion_config *cfg, uint64_t seed, char *err, size_t errsz);
void ew_motion_free(ew_motion *m);
/* Moves the parameters into be's memory when be is a device backend (no-op on the CPU; see
 * ew_fm_move_to_backend): m->params is rebuilt; free the model before the backend. 0, or -1
 * with a message. */
int ew_motion_move_to_backend(ew_motion *m, const ew_backend *be, char *err, size_t errsz);

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
/* Predictions out[n][EW_MOTION_FUT][5] = (mx, my, sx, sy, rho), calibrated. 0 or -1. */
int ew_motion_predict(const ew_motion *m, ew_graph *g, const ew_motion_sample *s, int n, float *out, char *err,
                      size_t errsz);
/* Applies the calibration to one prediction (mx, my, sx, sy, rho) at horizon k (0-based) of a
 * vehicle at speed v (m/s, clamped to [0, 35]; the sample's ctx[3] * 30) in place. */
void ew_motion_apply_cal(const ew_motion_cal *c, int k, float v, float *pred);
/* Fits the calibration on n validation samples given the uncalibrated predictions pred
 * [n][EW_MOTION_FUT][5] and targets (s[i].fut): minimises the squared misses of the 1 and 2
 * sigma coverage (39.3 %, 86.5 %) over all horizons and over each second of them, by
 * a scan of beta over {-0.2, -0.1, ..., 0.6} and c over {1, 0.9, ..., 0}, each with a
 * coordinate search (two sweeps, 25-point grids) over t in [0.5, 8] and ax, ay in
 * {0} U [0.005, 1] m; sets m->cal. */
void ew_motion_calibrate(ew_motion *m, const ew_motion_sample *s, int n, const float *pred);

/* Constant-velocity baseline from the same history: out[EW_MOTION_FUT][2]. */
void ew_motion_cv(const ew_motion_sample *s, float dt, float *out);

int ew_motion_save(const ew_motion *m, ew_optim *opt, long step, const char *path, char *err, size_t errsz);
int ew_motion_load(ew_motion *m, const char *path, long *step, char *err, size_t errsz);

#endif
