/* video.h - fixed-camera greyscale video of traffic for the physics-from-video models.
 *
 * Frames are float greyscale rows x cols in [0, 1], row-major, rendered with
 * ew_raster_fixed() + ew_raster_grey() semantics (road 0, off-road 64/255, paint 128/255,
 * vehicles 1) so sub-pixel motion changes the image smoothly. Pixel (r, c) covers
 * [c, c+1] x [r, r+1]; a world point (x, y) is at u = (x - x0) / m, v = (y0 - y) / m.
 *
 * Degradations (ew_video_degrade, all off when zeroed), applied in this order:
 *  - size_jitter j: every vehicle's length and width are scaled by U[1-j, 1+j] (per vehicle);
 *  - random_intensity: every vehicle gets a grey level U[0.3, 1] instead of 1 and is
 *    composited by its coverage (alpha) over the road;
 *  - occluders n: up to n opaque vertical bars (1-3 m wide, grey U[0.1, 0.9]) fixed in the
 *    world for the whole clip (a gantry, a sign): vehicles under them are hidden;
 *  - drop_prob p: each frame after the first is, with probability p, a repeat of the frame
 *    before (a dropped frame); its truth is then the truth of the frame it repeats;
 *  - blur sigma (px): separable Gaussian, edges clamped;
 *  - noise std: additive Gaussian noise, then clamped to [0, 1].
 * Every random choice comes from the seed given; same seed, same frames.
 *
 * Two sources:
 *  - single-vehicle clip pairs (ew_video_pair_make): one car (4-5 m x 1.7-2 m) or truck on a
 *    3-lane road moving at
 *    20-35 m/s with a random acceleration and lateral drift, seen in a window placed so that
 *    the vehicle stays inside it; view B is the same scene rendered with a shifted camera and
 *    optionally flipped (left-right and/or up-down), i.e. a known warp of view A. Clips may
 *    have their frame order shuffled (a non-identity permutation, probability shuffle_prob,
 *    both views alike; `shuffled` and `perm` say which). The truth (vehicle centres in each
 *    view's pixel coordinates) is stored apart from what a trainer may read.
 *  - traffic streams (ew_video_stream): an IDM/MOBIL world without an ego on a straight
 *    road (with scripted hard brakes of random vehicles, brakes_per_min), stepped at dt,
 *    rendered through a fixed camera over a stretch, with the truth of
 *    every vehicle overlapping the view (id, centre, size, whether it is fully inside and
 *    whether an occluder hides its centre).
 */
#ifndef EW_VIDEO_H
#define EW_VIDEO_H

#include <stdint.h>

#include "sim/raster.h"
#include "sim/road.h"
#include "sim/world.h"

typedef struct {
    float noise_std;      /* additive Gaussian noise std (grey units) */
    float blur_sigma;     /* px, 0 = none */
    int random_intensity; /* vehicles get grey U[0.3, 1] */
    float size_jitter;    /* relative, e.g. 0.3 */
    int occluders;        /* max bars per clip / stream */
    float drop_prob;      /* probability a frame repeats the previous one */
} ew_video_degrade;

/* The preset used for "degraded" results: noise 0.15, blur 0.8 px, random intensities,
 * size jitter 0.3, up to 2 bars, drop 0.1. */
void ew_video_degrade_preset(ew_video_degrade *d);
/* "clean" or "degraded" -> 0 and *d; else -1. */
int ew_video_degrade_by_name(const char *name, ew_video_degrade *d);

#define EW_VIDEO_MAX_T 16

typedef struct {
    int rows, cols;          /* each view */
    float m_per_px;
    int frames;              /* clip length T <= EW_VIDEO_MAX_T */
    float dt;                /* s between frames (0.1) */
    float max_shift_m;       /* view B's camera shift, uniform in +-max_shift_m per axis */
    float flip_prob;         /* probability of each flip of view B */
    float shuffle_prob;      /* probability that a clip's frame order is shuffled */
    float truck_prob;        /* probability that the vehicle is a truck (8-13 m x 2.3-2.6 m) */
    ew_video_degrade degrade;
} ew_video_pair_cfg;

/* 80 x 28 px at 0.5 m/px, 5 frames at 0.1 s, shift 4 m, flips 0.5, shuffle 0.5, trucks 0.2,
 * clean. */
void ew_video_pair_cfg_default(ew_video_pair_cfg *c);

/* A batch of n clip pairs. What a trainer may read: a, b, flip_x, flip_y, shift_px, shuffled,
 * perm. The truth (truth_a, truth_b) is for evaluation only. */
typedef struct {
    int n, frames, rows, cols;
    float m_per_px;
    float *a, *b;            /* [n][frames][rows][cols] each */
    int *flip_x, *flip_y;    /* [n]: view B = flip(shift(A)) */
    float *shift_px;         /* [n][2]: (du, dv) of the content of A before flipping */
    int *shuffled;           /* [n]: 1 if the frame order was permuted */
    int *perm;               /* [n][frames]: frame t shows time perm[t] */
    float *truth_a, *truth_b; /* [n][frames][2]: vehicle centre (u, v) in px, per shown frame */
} ew_video_pairs;

/* Allocates a batch; -1 on out of memory. */
int ew_video_pairs_alloc(ew_video_pairs *p, int n, const ew_video_pair_cfg *cfg);
void ew_video_pairs_free(ew_video_pairs *p);
/* Fills all n pairs from `seed` (pair i uses sub-stream i). Returns 0 or -1 with a message.
 * The warp maps a point (u, v) of view A to view B as
 *     u' = u + du, v' = v + dv;  u'' = flip_x ? cols - u' : u';  v'' = flip_y ? rows - v' : v'. */
int ew_video_pair_make(const ew_video_pair_cfg *cfg, uint64_t seed, ew_video_pairs *out, char *err,
                       int errlen);
/* The same for pairs first .. first + n - 1 of seed's sequence (out's pair i is pair first + i):
 * a data-parallel rank renders its slice of a global batch. */
int ew_video_pair_make_from(const ew_video_pair_cfg *cfg, uint64_t seed, uint64_t first, ew_video_pairs *out,
                            char *err, int errlen);
/* Applies the warp of pair i to a point of view A. */
void ew_video_pair_warp(const ew_video_pairs *p, int i, float u, float v, float *uo, float *vo);

/* ---- traffic streams -------------------------------------------------------------- */
typedef struct {
    int lanes;               /* 3 */
    float flow_per_h;        /* per lane (1400) */
    float speed_limit;       /* m/s (30) */
    float x0, length_m;      /* stretch seen: road x in [x0, x0 + length_m) (300, 200) */
    float m_per_px;          /* 0.5 */
    float dt;                /* 0.1 */
    float warmup_s;          /* simulated before the first frame (60) */
    float truck_share;       /* 0.1 */
    float brakes_per_min;    /* scripted hard brakes (2-5 m/s^2 for 1-3 s) of a random vehicle in
                              * the first 3/4 of the view, per minute (6) */
    ew_video_degrade degrade;
} ew_video_stream_cfg;

void ew_video_stream_cfg_default(ew_video_stream_cfg *c);

typedef struct {
    uint32_t id;
    float u, v;              /* centre in px */
    float x, y, len, wid;    /* world (m) */
    float vx, ax;            /* speed along x (m/s), acceleration (m/s^2) */
    int inside;              /* the whole box is inside the image */
    int occluded;            /* an occluder covers its centre */
} ew_video_truth;

typedef struct ew_video_stream ew_video_stream;

/* A stream seeded with `seed` (world, intensities, occluders, noise). NULL with a message. */
ew_video_stream *ew_video_stream_create(const ew_video_stream_cfg *cfg, uint64_t seed, char *err,
                                        int errlen);
void ew_video_stream_free(ew_video_stream *s);
void ew_video_stream_size(const ew_video_stream *s, int *rows, int *cols);
/* The fixed camera of the stream (x0, y0, rows, cols, m_per_px). */
void ew_video_stream_camera(const ew_video_stream *s, ew_fixed_cfg *cam);
/* Steps the world by dt and renders the next frame into frame (rows * cols floats); writes
 * up to cap truths and returns their count (vehicles overlapping the view), or -1 with a
 * message. */
int ew_video_stream_next(ew_video_stream *s, float *frame, ew_video_truth *truth, int cap, char *err,
                         int errlen);

#endif
