/* ngsim.h - NGSIM trajectory logs: loading, replay in a world, and export of simulated runs
 * (DESIGN.md section 8).
 *
 * Input formats (detected from the first non-blank line):
 *  - the original text: 18 numeric columns per row separated by blanks (commas accepted),
 *    no header, in the order Vehicle_ID Frame_ID Total_Frames Global_Time Local_X Local_Y
 *    Global_X Global_Y v_Length v_Width v_Class v_Vel v_Acc Lane_ID Preceding Following
 *    Space_Headway Time_Headway;
 *  - the comma-separated export: a header line naming the columns (same names, any order,
 *    any case, extra columns such as Location ignored), then one row per line.
 * Malformed rows (wrong column count, a field that is not a number, a non-integer id, a
 * non-positive length or width, a negative speed, a lane id < 1, |Local_X| > 1e4 ft,
 * |Local_Y| > 3e6 ft, |v_Acc| > 1000 ft/s^2, frames of one vehicle not strictly increasing in
 * file order) fail with "FILE:LINE: reason".
 *
 * Conversion to the road frame (geom.h), feet to metres at 0.3048 m/ft, here and nowhere else:
 *  - Local_Y is the longitudinal position of the FRONT bumper: x_front = Local_Y * 0.3048 + x_offset;
 *  - Local_X is the lateral position of the front centre measured from the LEFT edge of the
 *    section: y_front = (road_width_ft - Local_X) * 0.3048, road_width_ft = n_main * lane_width_ft
 *    (opts.road_width_ft overrides), so y = 0 is the right edge of the rightmost main lane;
 *  - lanes come from the data: Lane_ID 1 is the leftmost lane, so main lane id k (k <= n_main)
 *    becomes lane n_main - k, and ids above n_main (auxiliary lanes, ramps) become the extra
 *    lanes n_main, n_main + 1, ... right of lane 0;
 *  - times: t = Frame_ID * frame_dt (0.1 s).
 * Smoothing: positions of the front point are smoothed with a quadratic Savitzky-Golay filter
 * over a centred window of smooth_window seconds (1.5 s = 15 frames at 10 Hz, half-width 7);
 * near a track's ends (or a gap in its frames) the window shrinks symmetrically, so the first
 * and last samples keep their values; quadratic motion passes unchanged; 0 disables it.
 * The footprint centre is the smoothed front point moved back by half the vehicle's length
 * along the road axis (x). Highway headings stay within a few degrees of the axis, where this
 * differs from a shift along the heading by at most (length/2) sin(heading) - below NGSIM's own
 * lateral noise - and it keeps heading noise out of the positions (a shift along a heading
 * estimated from noisy motion amplifies that noise at low speed). Headings and speeds come
 * from central differences of the centre positions (one-sided at ends and gaps; a vehicle
 * moving less than 1 mm per frame keeps its previous heading).
 */
#ifndef EW_NGSIM_H
#define EW_NGSIM_H

#include <stdint.h>
#include <stdio.h>

#include "sim/episode.h"
#include "sim/world.h"

#define EW_FT 0.3048 /* metres per foot */

typedef struct {
    float smooth_window;   /* s (1.5); 0: no smoothing */
    float frame_dt;        /* s per frame (0.1) */
    float lane_width_ft;   /* ft (12) */
    int n_main;            /* main lanes; 0: the largest Lane_ID in the data, at most 8 */
    float road_width_ft;   /* ft; 0: n_main * lane_width_ft */
    float x_offset;        /* m added to every x (0) */
} ew_ngsim_opts;

typedef struct {
    int frame;
    float x, y;            /* footprint centre (m, road frame) */
    float hx, hy;          /* unit heading from the smoothed motion */
    float v;               /* speed from the smoothed motion (m/s) */
    float v_file, a_file;  /* v_Vel and v_Acc converted (m/s, m/s^2) */
    float x_raw, y_raw;    /* unsmoothed front point (m) */
    int lane_id;           /* Lane_ID as in the file */
    int lane;              /* our lane index (see above) */
} ew_ngsim_sample;

typedef struct {
    uint32_t vid;          /* Vehicle_ID */
    int v_class;           /* 1 motorcycle, 2 auto, 3 truck */
    ew_vtype type;
    float length, width;   /* m */
    int n;
    ew_ngsim_sample *s;    /* n samples, frames strictly increasing */
} ew_ngsim_track;

typedef struct {
    ew_ngsim_opts opts;    /* with n_main and road_width_ft resolved */
    int n_rows;
    int n_tracks;
    ew_ngsim_track *tracks; /* sorted by vid */
    int frame_min, frame_max;
    int lane_id_max;
    float x_min, x_max;    /* extent of all footprint centres (m) */
    float v_max;           /* largest smoothed speed (m/s) */
} ew_ngsim;

void ew_ngsim_opts_default(ew_ngsim_opts *o);
/* Loads a file (name used in messages); NULL with "FILE:LINE: reason" on failure. */
ew_ngsim *ew_ngsim_load(const char *path, const ew_ngsim_opts *o, char *err, int errlen);
/* Parses text already in memory (name is used in messages). */
ew_ngsim *ew_ngsim_parse(const char *text, size_t len, const char *name, const ew_ngsim_opts *o,
                         char *err, int errlen);
void ew_ngsim_free(ew_ngsim *g);
/* Index of the track of Vehicle_ID vid, or -1. */
int ew_ngsim_find(const ew_ngsim *g, uint32_t vid);
/* State at log time t (s): linear interpolation between the bracketing samples (heading
 * renormalised, lane of the nearer sample). Returns 1 when the track covers t, else 0. */
int ew_ngsim_state_at(const ew_ngsim_track *tr, float frame_dt, double t, ew_ngsim_sample *out);

/* A world configuration that matches the log: n_main lanes of the log's lane width (extra
 * lane ids become on-ramps along the whole road), length covering every position plus 50 m,
 * speed limit max(observed speed, 13.4 m/s) rounded up, no random traffic (densities and
 * flows 0), capacity for every track, dt = frame_dt. With ego_vid != 0 the ego starts where
 * and as that vehicle does (its size included); with 0 the ego is disabled. */
int ew_ngsim_world_config(const ew_ngsim *g, uint32_t ego_vid, ew_world_config *cfg, char *err, int errlen);

/* ---- replay ------------------------------------------------------------------------- */
/* Replays a log in a world: every vehicle present at the current log time is spawned as an
 * EW_VF_EXTERNAL vehicle, moved with ew_world_set_external each step and removed when its
 * track ends. World time 0 is log time t_start. With ego_vid != 0 that vehicle is not
 * spawned: it becomes the ego, which follows its log during the episode's n_cond warm-up
 * steps (exactly: its state is set so that the step lands on the next logged position) and
 * is then handed to the controller from its logged state. The replay does not own the log. */
typedef struct {
    uint32_t ego_vid;      /* 0: no ego from the log */
    double t_start;        /* log time of world time 0 (s); NAN: the ego track's first
                              sample, or the first frame of the log */
} ew_replay_opts;

typedef struct ew_replay ew_replay;

typedef struct {
    int64_t spawned, removed, moved;
    int64_t parked_spawns; /* spawns that overlapped another vehicle in the log (placed anyway) */
    int64_t outside;       /* samples skipped because x was outside the road */
} ew_replay_stats;

ew_replay *ew_replay_create(const ew_ngsim *g, const ew_replay_opts *o, char *err, int errlen);
void ew_replay_destroy(ew_replay *r);
/* After ew_world_reset (and before ew_episode_begin): places the log at t_start and the ego
 * on its track. */
int ew_replay_begin(ew_replay *r, ew_world *w, char *err, int errlen);
/* Places every replayed vehicle at world time t (s): spawns, moves, removes. */
int ew_replay_sync(ew_replay *r, ew_world *w, double t, char *err, int errlen);
/* The per-step episode hook (ctx = the replay): before the step from t to t + dt it places
 * the vehicles at t + dt, and drives the ego on its log during the warm-up. */
int ew_replay_hook(void *ctx, ew_world *w, ew_episode *ep, char *label, int labellen, char *err, int errlen);
/* World id of the replayed vehicle vid (0 when not in the world now). */
uint32_t ew_replay_world_id(const ew_replay *r, uint32_t vid);
ew_replay_stats ew_replay_get_stats(const ew_replay *r);
double ew_replay_t_start(const ew_replay *r);

/* ---- export ------------------------------------------------------------------------- */
/* Records a simulated run frame by frame and writes it in the original NGSIM text format
 * (rows sorted by vehicle then frame; frames numbered from 1; Global_Time = frame * 100 ms;
 * Global_X/Global_Y = Local_X/Local_Y; Space_Headway front to front in ft and Time_Headway
 * in s, 0 when there is no leader, 9999.99 when stopped). The inverse mapping of the
 * loader with n_main = the road's main lanes and lane_width_ft = the road's lane width
 * (the first main lane's), so loading with ew_ngsim_export_opts() reproduces positions. The
 * ego (when enabled) is written as Vehicle_ID = 1 + the largest id recorded. */
typedef struct ew_ngsim_rec ew_ngsim_rec;

ew_ngsim_rec *ew_ngsim_rec_create(const ew_road *road, int include_ego, char *err, int errlen);
void ew_ngsim_rec_destroy(ew_ngsim_rec *r);
int ew_ngsim_rec_frame(ew_ngsim_rec *r, const ew_world *w, char *err, int errlen);
int ew_ngsim_rec_write(const ew_ngsim_rec *r, FILE *out, char *err, int errlen);
int ew_ngsim_rec_frames(const ew_ngsim_rec *r);
int64_t ew_ngsim_rec_rows(const ew_ngsim_rec *r);
uint32_t ew_ngsim_rec_ego_vid(const ew_ngsim_rec *r);
/* Loader options that invert the export of a run on `road` (smoothing off). */
void ew_ngsim_export_opts(const ew_road *road, ew_ngsim_opts *o);

#endif
