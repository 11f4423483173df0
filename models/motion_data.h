/* motion_data.h - motion-predictor samples from fixed-camera traffic video.
 *
 * ew_motion_collect() runs a traffic stream (sim/video.h) for `frames` frames, detects
 * vehicles in every frame with the tracker (models/track.h) and links the detections into
 * tracklets WITHOUT the truth: each live tracklet predicts its next position by constant
 * velocity and takes the closest unclaimed detection with |dx| < 4 m and |dy| < 1.2 m
 * (closest pairs first); unmatched detections start tracklets; an unmatched tracklet ends.
 * Windows of 40 consecutive frames (1 s history + 3 s future), anchors every `stride`
 * frames, become samples:
 *   trk      - tracklet windows: history and future tracked (no truth read); flags from the
 *              tracklet itself: bit 0 |y(+3 s) - y(0)| > 1.5 m, bit 1 speed over the last
 *              0.5 s more than 2.1 m/s below the speed over the 0.5 s before the anchor;
 *   gt       - windows of true tracks (vehicle fully in view in all 40 frames), flags as
 *              the pairs';
 *   pair_trk, pair_gt - evaluation pairs, index-aligned: a true window whose vehicle is
 *              matched (within 1.5 m, at the anchor frame) by a tracklet that covers the
 *              whole history; pair_trk has the tracked history, pair_gt the true one; both
 *              have the true future. flags: bit 0 lane change (|y(+3 s) - y(0)| > 1.5 m),
 *              bit 1 braking (mean true acceleration over the 3 s below -0.7 m/s^2, i.e.
 *              a speed drop above 2.1 m/s).
 * The crop of a sample is the video frame at the anchor around its last history position:
 * 12 m across x 48 m along (10 m behind to 38 m ahead), 2 x 4 average-pooled to 12 x 24.
 * The context of a sample (EW_MOTION_CTX) is computed at the anchor frame from the same
 * source as its history: lane centres are the peaks of the histogram of all detected
 * (tracked samples) or true (true samples) lateral positions of the video (vehicles drive
 * on lane centres; no map is read); neighbours are the other tracklets with a detection at
 * the anchor frame (tracked) or the other true tracks there (true), each with its speed
 * over its last (up to) 5 frames, put in the lane whose centre is nearest.
 * Any set may be NULL; t may be NULL when only gt is wanted (no detection is run).
 * Returns 0 or -1 with a message.
 */
#ifndef EW_MOTION_DATA_H
#define EW_MOTION_DATA_H

#include "models/motion.h"
#include "models/track.h"
#include "sim/video.h"

typedef struct {
    ew_motion_sample *s;
    int *flags;
    int n, cap;
} ew_motion_set;

void ew_motion_set_free(ew_motion_set *s);
/* Appends src's samples and flags to dst. 0, or -1 on out of memory (dst unchanged). */
int ew_motion_set_append(ew_motion_set *dst, const ew_motion_set *src);

/* 1 if the window's 40 positions move plausibly from frame to frame: no lateral step above
 * max_dy m and no change of the longitudinal step above max_ddx m (a tracklet that jumped to
 * another vehicle or a detection glitch fails); label-free, for cleaning tracked windows. */
int ew_motion_plausible(const ew_motion_sample *s, float max_dy, float max_ddx);

/* 1 if all 40 positions of the window (history and future) lie at least `margin` m inside the
 * view's stretch [xa, xb] along the road: a label-free stand-in for "the whole vehicle is in
 * view" (a detection of a vehicle partly out of view sits on its visible part, so it lags
 * when the vehicle leaves the view and leads when it enters: an apparent deceleration or
 * acceleration the truth windows, whole boxes in view, do not have). */
int ew_motion_inside(const ew_motion_sample *s, float xa, float xb, float margin);

int ew_motion_collect(const ew_tracker *t, ew_graph *g, const ew_video_stream_cfg *sc, uint64_t seed, int frames,
                      int stride, ew_motion_set *trk, ew_motion_set *gt, ew_motion_set *pair_trk,
                      ew_motion_set *pair_gt, char *err, size_t errsz);

#endif
