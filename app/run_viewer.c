/* run_viewer.c - `egoworld run` through the viewer: window, benchmark, video recording. */
#include "app/run_viewer.h"

#include <string.h>

int ew_run_viewer_set_vehicles(ew_world_config *wc, long vehicles, char *err, int errlen) {
    const ew_road *r = &wc->road;
    float lane_km = 0.0f;
    for (int l = 0; l < r->n_lanes; l++) lane_km += (r->lanes[l].x_end - r->lanes[l].x_start) / 1000.0f;
    float d = lane_km > 0.0f ? (float)vehicles / lane_km : 0.0f;
    if (vehicles < 1 || !(d <= 200.0f)) {
        snprintf(err, (size_t)errlen, "--bench-vehicles %ld does not fit this road (at most %.0f)", vehicles,
                 (double)(200.0f * lane_km));
        return -1;
    }
    for (int l = 0; l < r->n_lanes; l++) wc->density_per_km[l] = d;
    if (wc->max_vehicles < 2 * vehicles) wc->max_vehicles = (int)(2 * vehicles);
    return 0;
}

#ifdef EGOWORLD_HAVE_VIEWER
#include "planner/mpc_overlay.h"
#include "planner/mpc_pred.h"
#include "viz/viewer.h"

static int is_video(const char *p) {
    static const char *const suf[] = {".mp4", ".mkv", ".webm", ".mov"};
    size_t n = p ? strlen(p) : 0;
    for (int i = 0; i < 4; i++) {
        size_t k = strlen(suf[i]);
        if (n >= k && !strcmp(p + n - k, suf[i])) return 1;
    }
    return 0;
}

int ew_run_viewer_mode(int headless, const char *record, const char *frames_dir) {
    if (!headless && ew_viewer_display_available()) return 1;
    if ((record && is_video(record)) || frames_dir) return 2;
    return 0;
}

int ew_run_viewer(const ew_run_viewer_args *a, int mode, ew_world *w, ew_episode *ep, ew_controller *ctrl) {
    ew_viewer_opts o;
    ew_viewer_opts_default(&o);
    ew_viewer_stats st;
    o.stats = &st;
    o.seed = a->seed;
    o.record = a->record;
    o.quiet = a->quiet;
    o.headless = mode == 2;
    o.exit_on_end = a->record != NULL; /* a recording ends with the episode (the window stays otherwise) */
    if (mode == 2 && a->frames_dir) {
        o.record = a->frames_dir;
        o.steps_per_frame = a->frame_every > 0 ? a->frame_every : 1;
    }
    ew_mpc_overlay mo;
    ew_mpc_pred_view pv;
    if (ew_mpc_overlay_init(&mo, ctrl) == 0) {
        o.overlay = ew_mpc_overlay_fill;
        o.overlay_ctx = &mo;
    } else if (ew_mpc_pred_get_view(ctrl, &pv) == 0) { /* mpc-pred: plan and predicted ellipses */
        o.overlay = ew_mpc_pred_overlay_fill;
        o.overlay_ctx = ctrl;
    }
    if (a->bench_frames > 0) {
        if (mode != 1) {
            fprintf(stderr, "egoworld run: --bench-frames needs a display (try xvfb-run -a egoworld run ...)\n");
            return 1;
        }
        o.max_frames = a->bench_frames;
        o.steps_per_frame = 0; /* real time: the simulation at 10 Hz, frames as fast as they go */
        o.vsync = 0;
    }
    char err[512];
    if (ew_viewer_run(&o, w, ep, ctrl, err, (int)sizeof err) != 0) {
        fprintf(stderr, "egoworld run: %s\n", err);
        return 1;
    }
    if (a->frames_written) *a->frames_written = st.frames;
    if (a->bench_frames > 0) {
        FILE *out = a->json ? stderr : stdout;
        fprintf(out,
                "viewer bench: %ld frames in %.3f s = %.1f frames/s; %ld steps (%.1f steps/s); %d vehicles; "
                "%dx%d, all overlays on; %s\n",
                st.frames, st.wall_s, st.fps, st.steps, st.sps, ew_world_vehicles(w)->n, o.width, o.height,
                st.renderer);
    }
    return 0;
}

void ew_run_viewer_help(FILE *out) {
    fprintf(out,
            "  --bench-frames N    viewer benchmark: render N frames as fast as possible and print frames/s\n"
            "  --bench-vehicles V  start the scenario with about V vehicles (scales its densities)\n"
            "\n"
            "With a display (DISPLAY or WAYLAND_DISPLAY) and without --headless, run opens the viewer;\n"
            "--record DIR then writes the window's frames as PNG, --record FILE.mp4 (.mkv, .webm, .mov)\n"
            "pipes them to ffmpeg (also headless, drawn by the software renderer); a recording ends\n"
            "with the episode. Viewer keys:\n");
    ew_viewer_print_keys(out);
}

#else /* no viewer built */

int ew_run_viewer_mode(int headless, const char *record, const char *frames_dir) {
    (void)headless;
    (void)record;
    (void)frames_dir;
    return 0;
}

int ew_run_viewer(const ew_run_viewer_args *a, int mode, ew_world *w, ew_episode *ep, ew_controller *ctrl) {
    (void)a;
    (void)mode;
    (void)w;
    (void)ep;
    (void)ctrl;
    fprintf(stderr, "egoworld run: the viewer is not built (SDL2 was not found at configure time)\n");
    return 1;
}

void ew_run_viewer_help(FILE *out) {
    fprintf(out, "\nThe viewer is not built (SDL2 was not found at configure time): run is always headless.\n");
}

#endif
