/* run_viewer.h - the viewer side of `egoworld run` (app/cmd_run.c calls these; they compile
 * to "no viewer" answers when the viewer is not built, EGOWORLD_HAVE_VIEWER undefined).
 */
#ifndef EW_RUN_VIEWER_H
#define EW_RUN_VIEWER_H

#include <stdint.h>
#include <stdio.h>

#include "sim/controller.h"
#include "sim/episode.h"
#include "sim/world.h"

typedef struct {
    const char *scenario;
    uint64_t seed;
    const char *record;   /* NULL, a directory (PNG frames) or a video file (ffmpeg) */
    long bench_frames;    /* > 0: benchmark: render this many frames as fast as possible */
    int json, quiet;
    const char *frames_dir; /* headless (mode 2): PNG frames of the software renderer here */
    int frame_every;        /* steps per frame with frames_dir (>= 1) */
    long *frames_written;   /* out: frames rendered (may be NULL) */
} ew_run_viewer_args;

/* Which path `run` takes: 1 the window (built, not --headless, a display), 2 the headless
 * software renderer (no window: recording to a video file, or frames_dir given), 0 the plain
 * headless loop. */
int ew_run_viewer_mode(int headless, const char *record, const char *frames_dir);
/* Runs the begun episode through the viewer (mode 1 or 2). An MPC controller (planner/mpc.h)
 * fills the overlay (planner/mpc_overlay.h: plan, imagined futures, cost mask, cost terms);
 * other controllers get the viewer's IDM preview. Returns 0, or 1 after printing
 * "egoworld run: <reason>" on stderr. */
int ew_run_viewer(const ew_run_viewer_args *a, int mode, ew_world *w, ew_episode *ep, ew_controller *ctrl);
/* Scales the scenario's initial densities so that about `vehicles` vehicles start on the
 * road (--bench-vehicles; capacity raised to fit). Returns 0, or -1 with a message. */
int ew_run_viewer_set_vehicles(ew_world_config *wc, long vehicles, char *err, int errlen);
/* The viewer's options and keys for `run --help` (one line saying it is not built otherwise). */
void ew_run_viewer_help(FILE *out);

#endif
