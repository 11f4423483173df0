/* track.h - the unsupervised vehicle tracker: a small fully convolutional net maps a grey
 * frame [1, H, W] to a logit map [1, H, W]; positions are soft-argmaxes of that map.
 *
 * Receptive field: 3 + (layers - 1) * (kernel_w - 1) columns (27 px = 13.5 m at 0.5 m/px by
 * default) by 2 * layers + 1 rows.
 *
 * Training (ew_tracker_train_step) reads only what a video gives: the frames of clip pairs
 * (view B = a known warp of view A: camera shift and flips), whether the trainer shuffled
 * a clip's frame order, and the warp. It never reads the truth fields of ew_video_pairs.
 * The loss is
 *     w_causal * causality + w_equiv * equivariance + w_entropy * entropy
 *  - causality: a discriminator (MLP on the T positions of view A, centred on their mean,
 *    in units of 8 px) outputs a logit for "real order"; binary cross-entropy against the
 *    shuffled flag. Tracker and discriminator both minimise it: positions must carry the
 *    temporal order, which only something moving does.
 *  - equivariance: mean over frames and both coordinates of (p_B - warp(p_A))^2, in px^2.
 *  - entropy: mean over maps of -sum p log(p + 1e-12) of the spatial softmax (nats).
 * Coordinates are continuous pixel coordinates: pixel (r, c) covers [c, c+1] x [r, r+1], so
 * u = soft-argmax column index + 0.5 (sim/video.h uses the same convention).
 * With cfg.local_loss the positions of both losses are instead the soft-argmaxes within the
 * detection window (+-3 rows, +-5 columns) around each map's maximum, the estimator
 * ew_track_peaks uses at test time (ew_track_positions_local): the global soft-argmax of a
 * noisy map is pulled by logit mass far from the vehicle, which the detector never sees, so
 * the global loss spends its gradient on the background; the local one on the sub-pixel
 * placement of the peak. The window is chosen without gradient (a constant mask added to the
 * logits). A pair of frames whose two windows hold different things (the warped position of
 * view A outside view B's window: a hidden or faint vehicle, a maximum on noise) says nothing
 * about sub-pixel placement, so the equivariance term leaves such pairs out (gated, see
 * ew_track_equiv_loss_gated; label-free: views only). Meant as a second phase after global
 * training (early maps have no meaningful maximum); the entropy term stays on the whole map.
 *
 * Many vehicles (ew_tracker_detect): the net is local (no pooling), so its logits are an
 * objectness score that means the same anywhere in a frame of any size. Peaks = local maxima
 * over +-2 rows, +-4 columns above the threshold `peak_thr`; each position is the soft-argmax
 * of the logits in the +-3 x +-5 window around the peak. peak_thr is calibrated without
 * labels (ew_tracker_calibrate): the midpoint between the median frame maximum of
 * single-vehicle clips and the 99.5th percentile of the logits away from that maximum
 * (ew_tracker_calibrate_q: another quantile of the frame maxima, e.g. a low one so that
 * faint vehicles of degraded video stay above the threshold).
 *
 * Baseline (ew_track_baseline_detect): pixels above a grey threshold, 4-connected
 * components of at least min_area pixels, the intensity-weighted centroid of each.
 *
 * Checkpoints: safetensors with parameters "track.*", optimizer state and metadata
 * (config, step, peak_thr; "track.local" absent in older files = 0); save is atomic
 * (models/checkpoint.h).
 */
#ifndef EW_TRACK_H
#define EW_TRACK_H

#include <stddef.h>
#include <stdint.h>

#include "models/layers.h"
#include "models/optim.h"
#include "sim/video.h"

#define EW_TRACK_MAX_LAYERS 8

typedef struct {
    int channels;        /* conv width (16) */
    int layers;          /* conv layers before the 1x1 head (4): the first 3x3, the others
                          * 3 x kernel_w (wide along the road, to see a truck's two ends) */
    int kernel_w;        /* 9 */
    int disc_hidden;     /* discriminator width (32) */
    int frames;          /* clip length the discriminator sees (5) */
    float w_causal, w_equiv, w_entropy; /* 1, 0.5, 0.02 */
    int local_loss;      /* 0: positions of the losses are global soft-argmaxes (default); 1: within
                          * the detection window around each map's maximum (see above) */
} ew_tracker_config;

void ew_tracker_config_default(ew_tracker_config *c);

typedef struct {
    ew_tracker_config cfg;
    ew_conv_layer conv[EW_TRACK_MAX_LAYERS], head;
    ew_mlp disc;
    float peak_thr;
    int tta;            /* run-time option (not saved): ew_tracker_detect averages the logit maps of
                         * the frame and its three flips (un-flipped), see ew_tracker_map_tta */
    ew_param_list params;
} ew_tracker;

int ew_tracker_init(ew_tracker *t, const ew_tracker_config *cfg, uint64_t seed, char *err, size_t errsz);
void ew_tracker_free(ew_tracker *t);
/* Moves the parameters into be's memory when be is a device backend (no-op on the CPU; see
 * ew_fm_move_to_backend): collect parameter views again afterwards (t->params is rebuilt);
 * free the tracker before the backend. 0, or -1 with a message. */
int ew_tracker_move_to_backend(ew_tracker *t, const ew_backend *be, char *err, size_t errsz);

/* x [n, 1, h, w] -> logits [n, 1, h, w]. */
ew_tensor *ew_tracker_logits(ew_graph *g, const ew_tracker *t, ew_tensor *x);
/* logits [n, 1, h, w] -> positions [n, 2] (u, v) in continuous pixel coordinates. */
ew_tensor *ew_track_positions(ew_graph *g, ew_tensor *logits);
/* The same within the detection window around each map's maximum (ties: first in raster
 * order), clipped to the map: for a map whose maximum is a peak, the position ew_track_peaks
 * gives that peak. The gradient flows to the logits inside the window only. */
ew_tensor *ew_track_positions_local(ew_graph *g, ew_tensor *logits);

/* The three losses (scalars), exposed for tests. */
ew_tensor *ew_track_entropy(ew_graph *g, ew_tensor *logits);
/* pa, pb [m, 2]; the warp of row i is p -> sign[2i+k] * p + off[2i+k] (k = 0: u, 1: v). */
ew_tensor *ew_track_equiv_loss(ew_graph *g, ew_tensor *pa, ew_tensor *pb, const float *sign, const float *off);
/* The same averaged over the rows whose disagreement |pb - warp(pa)| is within max_du and
 * max_dv (px) per coordinate; the others (decided on the values, without gradient) add
 * nothing. *kept (may be NULL) gets their count; 0 kept rows give a zero loss. */
ew_tensor *ew_track_equiv_loss_gated(ew_graph *g, ew_tensor *pa, ew_tensor *pb, const float *sign, const float *off,
                                     float max_du, float max_dv, int *kept);
/* pos [b, T, 2] (T = disc's frames); real[i] = 1 for clips in real order, 0 for shuffled.
 * *acc (may be NULL) gets the discriminator's accuracy. */
ew_tensor *ew_track_causal_loss(ew_graph *g, const ew_mlp *disc, ew_tensor *pos, const int *real, float *acc);

typedef struct {
    float loss, causal, equiv, entropy, disc_acc;
} ew_track_stats;

/* One optimisation step on a batch of pairs (frames must equal cfg.frames): the loss above,
 * its gradient (global norm clipped at 5), one step of opt. 0 or -1 (err). */
int ew_tracker_train_step(ew_tracker *t, ew_optim *opt, ew_graph *g, const ew_video_pairs *batch,
                          ew_track_stats *st, char *err, size_t errsz);

/* Global soft-argmax position of each of n frames (h x w): uv [n][2]. 0 or -1. */
int ew_tracker_locate(const ew_tracker *t, ew_graph *g, const float *frames, int n, int h, int w, float *uv,
                      char *err, size_t errsz);
/* Logit map of one frame into out (h*w floats). 0 or -1. */
int ew_tracker_map(const ew_tracker *t, ew_graph *g, const float *frame, int h, int w, float *out, char *err,
                   size_t errsz);

/* The mean of the logit maps of the frame flipped left-right and/or up-down, each flipped
 * back: a test-time use of the flip equivariance the training asks for. 0 or -1. */
int ew_tracker_map_tta(const ew_tracker *t, ew_graph *g, const float *frame, int h, int w, float *out, char *err,
                       size_t errsz);

typedef struct {
    float u, v, score;
} ew_track_det;

/* Peaks of a logit map (see above); returns the count (at most cap). */
int ew_track_peaks(const float *logits, int h, int w, float thr, ew_track_det *dets, int cap);
/* Map (ew_tracker_map_tta when t->tta) + peaks with t->peak_thr. Returns the count or -1. */
int ew_tracker_detect(const ew_tracker *t, ew_graph *g, const float *frame, int h, int w, ew_track_det *dets,
                      int cap, char *err, size_t errsz);
/* A label-free estimate of the tracker's position noise (m, per axis): detections of each of
 * the n frames (h x w, m_per_px) and of the frame rotated by 180 degrees (both flips) are
 * paired (closest, within 1.5 px); the per-axis disagreement d has variance 2 sigma^2 if the
 * two errors are independent, so sigma = rms(d) / sqrt(2). *pairs gets the number of pairs.
 * 0 or -1. */
int ew_tracker_flip_noise(const ew_tracker *t, ew_graph *g, const float *frames, int n, int h, int w,
                          float m_per_px, float *sigma, long *pairs, char *err, size_t errsz);
/* Sets t->peak_thr from the view-A frames of a batch of single-vehicle pairs. 0 or -1. */
int ew_tracker_calibrate(ew_tracker *t, ew_graph *g, const ew_video_pairs *batch, char *err, size_t errsz);
/* The same with the q-quantile (0 < q < 1) of the frame maxima instead of the median (q = 0.5
 * is ew_tracker_calibrate). 0 or -1. */
int ew_tracker_calibrate_q(ew_tracker *t, ew_graph *g, const ew_video_pairs *batch, double q, char *err,
                           size_t errsz);

/* Thresholding + connected components baseline. Returns the count (at most cap). */
int ew_track_baseline_detect(const float *frame, int h, int w, float thr, int min_area, ew_track_det *dets,
                             int cap);

/* Checkpoints. opt may be NULL (weights only); step is stored as EW_OPTIM_META_STEP. */
int ew_tracker_save(const ew_tracker *t, ew_optim *opt, long step, const char *path, char *err, size_t errsz);
/* Loads a checkpoint written by ew_tracker_save into a tracker it initialises (config from
 * the metadata); with opt != NULL (created over t->params afterwards by the caller, see
 * ew_tracker_load_optim) the optimizer state too. */
int ew_tracker_load(ew_tracker *t, const char *path, long *step, char *err, size_t errsz);
int ew_tracker_load_optim(ew_optim *opt, const char *path, char *err, size_t errsz);

#endif
