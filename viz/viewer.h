/* viewer.h - the interactive viewer: an SDL2 window with OpenGL rendering of the world
 * from above following the ego, the ego raster as the models see it, overlays from the
 * planner and models (viz/overlay.h), a HUD, keyboard/mouse control and recording. The
 * same loop runs headless (opts.headless): no SDL video initialisation at all, frames drawn
 * by the software renderer (viz/scene.h) - deterministic, for reports and tests.
 *
 * Time: the simulation advances in fixed steps of the world's dt. In real-time mode
 * (steps_per_frame == 0) an accumulator of wall time x speed decides how many steps a frame
 * runs, at most max_steps_per_frame (the backlog beyond it is dropped: steps are never
 * skipped or shortened, the simulation just falls behind real time); rendering never waits
 * for the simulation and swap intervals are off unless opts.vsync. In lockstep mode
 * (steps_per_frame > 0: recording, tests, headless) every unpaused frame runs exactly
 * steps_per_frame x speed steps (fractional speeds accumulate), so runs are repeatable.
 *
 * The viewer does not own the world, the episode or the controller. Manual driving wraps
 * the controller: while manual, the ego's action comes from the arrow keys and still goes
 * through the kinematic model (clipped by the world's ego limits); during the episode's
 * warm-up the warm-up driver rules as usual.
 */
#ifndef EW_VIEWER_H
#define EW_VIEWER_H

#include <stdint.h>
#include <stdio.h>

#include "sim/controller.h"
#include "sim/episode.h"
#include "sim/world.h"
#include "viz/draw.h"
#include "viz/overlay.h"

/* Keys of scripted events: printable ASCII as itself, the rest: */
enum {
    EW_KEY_ESC = 27,
    EW_KEY_UP = 0x101, EW_KEY_DOWN, EW_KEY_LEFT, EW_KEY_RIGHT,
    EW_KEY_F12, EW_KEY_HOME,
    EW_KEY_WHEEL_UP, EW_KEY_WHEEL_DOWN /* scripted mouse-wheel zoom */
};

/* A scripted input: at the start of frame `frame` (0-based), key goes down (down = 1) or
 * up (down = 0). A press of a non-arrow key acts on the down event. */
typedef struct { long frame; int key; int down; } ew_viewer_key;

/* What a frame callback sees (pixels valid during the call only). */
typedef struct {
    const uint8_t *rgb;          /* width * height * 3, row 0 at the top */
    int width, height;
    long frame, steps;           /* frames rendered before this one; steps taken so far */
    ew_camera cam;
    ew_viz_inset_layout inset;   /* where the raster inset was drawn (n_channels 0: not shown) */
    const uint8_t *raster;       /* the ego raster drawn in the inset (C x H x W) */
    int rc, rh, rw;
    const ew_world *world;
    const ew_episode *ep;
    const ew_overlay *ov;
    int paused;
} ew_viewer_frame;

typedef int (*ew_viewer_frame_fn)(void *ctx, const ew_viewer_frame *f, char *err, int errlen);
/* Starts a new episode with seed (the 'r' key). Returns 0 or -1 with a message. */
typedef int (*ew_viewer_reset_fn)(void *ctx, ew_world *w, ew_episode *ep, ew_controller *ctrl,
                                  uint64_t seed, char *err, int errlen);

typedef struct {
    long frames, steps;          /* rendered frames, simulation steps */
    double wall_s;
    double fps, sps;             /* frames and steps per wall second over the run */
    int quit_by_user;            /* q, Esc or window closed */
    char renderer[128];          /* GL_RENDERER and GL_VERSION, or "software" when headless */
} ew_viewer_stats;

typedef struct {
    int width, height;           /* window / frame size (1280 x 720) */
    int headless;                /* 1: software rendering, no SDL video at all */
    int vsync;                   /* 1: swap interval 1 (off by default) */
    long max_frames;             /* stop after this many frames (0: no limit) */
    long max_steps;              /* stop after this many steps (0: no limit) */
    int exit_on_end;             /* return when the episode ends (always on when headless) */
    int steps_per_frame;         /* 0: real time; > 0: lockstep (forced to 1 when headless or recording if 0) */
    int max_steps_per_frame;     /* real-time cap per frame (8) */
    float speed;                 /* initial speed factor (1) */
    int start_paused;
    float zoom;                  /* pixels per metre (6) */
    unsigned overlays;           /* bit k: overlay k shown at start (EW_OVL_*); default all */
    int hide_inset, hide_hud;
    const char *record;          /* NULL, a directory for PNG frames, or a .mp4/.mkv/.webm/.mov file */
    const char *screenshot_dir;  /* where p/F12 write (NULL: the current directory) */
    const ew_viewer_key *script; /* scripted input, sorted by frame */
    int n_script;
    uint64_t seed;               /* the running episode's seed; 'r' uses seed + 1, + 2, ... */
    ew_viewer_reset_fn reset;    /* NULL: world reset, controller reset, episode begin (same cfg) */
    void *reset_ctx;
    ew_overlay_fill_fn overlay;  /* NULL: the built-in IDM look-ahead preview (viz/preview.h) */
    void *overlay_ctx;
    ew_viewer_frame_fn on_frame; /* called after every frame with its pixels (read back) */
    void *frame_ctx;
    ew_viewer_stats *stats;      /* filled on return when not NULL */
    int quiet;                   /* no messages on stderr (recording notes) */
} ew_viewer_opts;

void ew_viewer_opts_default(ew_viewer_opts *o);
/* Runs until quit, the frame/step limit, or (exit_on_end) the end of the episode. The
 * episode must have begun on the world. Returns 0, or -1 with a message in err (no display,
 * GL failure, recording failure, a controller or overlay error). */
int ew_viewer_run(const ew_viewer_opts *opts, ew_world *w, ew_episode *ep, ew_controller *ctrl,
                  char *err, int errlen);
/* 1 when DISPLAY or WAYLAND_DISPLAY is set and SDL's video subsystem initialises. */
int ew_viewer_display_available(void);
/* The key list (what `egoworld run --help` and the h key show). */
void ew_viewer_print_keys(FILE *out);

#endif
