/* fm_eval.h - image metrics for judging the world model against simple baselines
 * (DESIGN.md section 5): mean squared error, vehicles found in an image (connected
 * components), matching found vehicles to the truth, the shift-by-ego-motion baseline and
 * the constant-velocity baseline.
 *
 * Pixel geometry is that of sim/raster.h: pixel (r, c) covers [c, c+1] x [r, r+1] in (u, v);
 * the ego centre is at (cols/2, rows/2); a point at forward distance f and leftward distance
 * l from the ego is at u = cols/2 - l/mpp, v = rows/2 - f/mpp. Positions are reported in
 * metres in that ego frame (f, l).
 *
 * Components: 8-connected pixels with value >= thr; each blob's centroid is the
 * value-weighted mean of its pixel centres; blobs smaller than min_pixels are dropped.
 * Matching: greedy on globally sorted distances (each pair at most once), pairs farther
 * than the gate are not matched; for well-separated vehicles this equals the optimal
 * (Hungarian) assignment.
 * Ego shift: the previous frame, taken at ego pose p0, resampled at ego pose p1: each output
 * pixel centre is mapped to the world and back into frame p0 and sampled bilinearly
 * between pixel centres, with coordinates clamped to the image (outside the old view the
 * nearest edge value is repeated). A pure translation by whole pixels copies pixels exactly.
 * Constant velocity: every stored vehicle of the step t0 moved along its heading at its speed
 * for tau seconds, rendered (ew_raster_ego) at the given ego pose and road.
 * No allocation except ew_fm_blobs' scratch (caller-provided); no state; thread-safe.
 */
#ifndef EW_FM_EVAL_H
#define EW_FM_EVAL_H

#include <stddef.h>

#include "sim/ego.h"
#include "sim/raster.h"
#include "sim/traj.h"

/* Mean of (a - b)^2 over n floats. */
double ew_img_mse(const float *a, const float *b, size_t n);

typedef struct {
    float u, v;     /* centroid in pixel coordinates */
    float f, l;     /* centroid in metres: forward, left of the ego centre */
    int pixels;
    float mass;     /* sum of values */
} ew_blob;

/* Components of img (H x W floats), at most max_blobs written (the largest first when more
 * exist); labels: H*W ints of scratch. mpp: metres per pixel. Returns the blob count. */
int ew_find_blobs(const float *img, int H, int W, float thr, int min_pixels, float mpp, int *labels,
                  ew_blob *blobs, int max_blobs);

/* Matches predicted points (pf, pl)[np] to true points (tf, tl)[nt] within gate metres.
 * match[i] = index of the true point matched to prediction i, or -1; returns the number of
 * matches and the sum of their distances in *dist_sum. np, nt <= 256. */
int ew_match_points(const ew_blob *pred, int np, const ew_blob *truth, int nt, float gate, int *match,
                    double *dist_sum);

/* out (C x H x W) = the frame img (taken at ego pose p0) seen from ego pose p1. */
void ew_ego_shift(const float *img, int C, int H, int W, float mpp, const ew_kin_state *p0,
                  const ew_kin_state *p1, float *out);

/* Constant-velocity frame: the vehicles of frame f0 moved by tau seconds, rendered with the
 * road and ego pose of frame f1 (usually the true future step) into out (3 x rows x cols
 * floats in [0, 1]: markings, vehicles, off-road). scratch: 4 * rows * cols bytes. 0 or -1. */
int ew_constvel_frame(const ew_raster_cfg *rc, const ew_traj_frame *f0, const ew_traj_frame *f1, float tau,
                      uint8_t *scratch, float *out);

#endif
