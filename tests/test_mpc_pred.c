/* test_mpc_pred.c - "mpc-pred:FILE" (planner/mpc_pred.h): MPC-KM with the motion predictor
 * as the model of other vehicles, its viewer overlay, and `egoworld run` drawing the
 * predictor's ellipses, on a small random predictor saved here.
 *
 *  1. The occupancy model: a blurred box integrates to length x width; tiny blur = the box;
 *     the centre value in closed form.
 *  2. Factory errors: missing checkpoint, no file, bad horizon.
 *  3. A road with one stalled car 32 m ahead of the ego (10 m/s) in its lane, 22 m after the
 *     1 s warm-up (nothing else): the car is
 *     tracked from the rasters alone (its track within 0.3 m of the truth, seen every frame);
 *     the plan brakes (or steers away) where on the empty road it does not brake; the plan does
 *     not change when simulator fields that the raster does not show change (the vehicle's id
 *     and desired speed): nothing but the observation reaches the planner.
 *  4. The overlay: empty before the first act(); then the plan from the ego pose (T + 1
 *     poses, the kinematic model), one agent per tracked vehicle with positive variances.
 *  5. The binary (viewer built): `run --controller mpc-pred:FILE --headless-frames DIR` writes
 *     one frame per step with no ellipse-coloured pixels in the warm-up and many after it;
 *     under Xvfb (skipped without it) the window path does the same.
 */
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "models/motion.h"
#include "planner/controllers.h"
#include "planner/mpc_pred.h"
#include "sim/png.h"
#include "sim/scenario_builtin.h"
#include "sim/world.h"

#define HOR 20

static void occupancy_tests(void) {
    double sum = 0;
    const double h = 0.05;
    for (double a = -20; a <= 20; a += h)
        for (double b = -6; b <= 6; b += h) sum += ew_mpc_pred_occupancy((float)a, (float)b, 4.5f, 1.9f, 0.7f, 0.3f);
    sum *= h * h;
    CHECK_NEAR(sum, 4.5 * 1.9, 0.005 * 4.5 * 1.9); /* a blurred box integrates to its area */
    CHECK_NEAR(ew_mpc_pred_occupancy(2.0f, 0.8f, 4.5f, 1.9f, 1e-3f, 1e-3f), 1.0, 1e-6); /* tiny blur: 1 inside */
    CHECK_NEAR(ew_mpc_pred_occupancy(2.4f, 0.0f, 4.5f, 1.9f, 1e-3f, 1e-3f), 0.0, 1e-6); /* 0 outside */
    double c = erf(2.25 / (sqrt(2.0) * 0.7)) * erf(0.95 / (sqrt(2.0) * 0.3));
    CHECK_NEAR(ew_mpc_pred_occupancy(0, 0, 4.5f, 1.9f, 0.7f, 0.3f), c, 1e-5); /* centre value */
}

static void factory_tests(const char *pred) {
    char err[256], spec[300];
    ew_controller c;
    CHECK(ew_controller_create("mpc-pred:", NULL, &c, err, (int)sizeof err) == -1 && strstr(err, "no predictor"),
          "mpc-pred: without a file: %s", err);
    CHECK(ew_controller_create("mpc-pred:/nonexistent/p.safetensors", NULL, &c, err, (int)sizeof err) == -1 &&
              strstr(err, "/nonexistent/p.safetensors"), "missing file named: %s", err);
    ew_controller_opts o;
    ew_controller_opts_default(&o);
    o.horizon = EW_MOTION_FUT + 1;
    snprintf(spec, sizeof spec, "mpc-pred:%s", pred);
    CHECK(ew_controller_create(spec, &o, &c, err, (int)sizeof err) == -1 && strstr(err, "horizon"),
          "horizon above the predictor's: %s", err);
    CHECK(strstr(ew_controller_specs(), "mpc-pred:FILE") != NULL, "specs list mpc-pred:FILE");
}

/* free-2lane without traffic; with `stalled`, one car stopped 30 m ahead in the ego's lane
 * (id, desired speed as given). */
static ew_world *road_world(int stalled, uint32_t id, float v0) {
    ew_world_config wc;
    char err[256];
    if (ew_scenario_builtin("free-2lane", &wc, err, (int)sizeof err) != 0) return NULL;
    for (int l = 0; l < EW_MAX_LANES; l++) wc.density_per_km[l] = 0.0f;
    wc.ego_speed = 10.0f;
    wc.seed = 7;
    ew_world *w = ew_world_create(&wc, err, (int)sizeof err);
    if (!w) return NULL;
    ew_world_reset(w, 7);
    if (stalled) {
        const ew_kin_state *e = ew_world_ego(w);
        ew_spawn s;
        memset(&s, 0, sizeof s);
        s.type = EW_VT_CAR;
        s.lane = wc.ego_lane;
        s.x = e->x + 32.0f;
        s.y = e->y;
        s.v = 0.0f;
        s.length = 4.5f;
        s.width = 1.9f;
        s.v0 = v0;
        uint32_t got = ew_world_spawn_id(w, &s, id, err, (int)sizeof err);
        if (!got || ew_world_stall(w, got, 0.0f, err, (int)sizeof err)) {
            fprintf(stderr, "spawn: %s\n", err);
            ew_world_destroy(w);
            return NULL;
        }
    }
    return w;
}

typedef struct {
    ew_action first;       /* the first planned action */
    ew_action plan[HOR];
    int tracked, seen;
    float track_err;       /* track's last position vs the true centre (m) */
    int ov_empty_before, ov_ok;
} drive_out;

/* 10 observed warm-up steps (the ego keeps speed and heading), then one act(). */
static int drive(const char *pred, ew_world *w, drive_out *o) {
    char err[256], spec[300];
    memset(o, 0, sizeof *o);
    snprintf(spec, sizeof spec, "mpc-pred:%s", pred);
    ew_controller_opts opts;
    ew_controller_opts_default(&opts);
    opts.horizon = HOR;
    ew_controller c;
    if (ew_controller_create(spec, &opts, &c, err, (int)sizeof err) != 0) {
        CHECK(0, "create: %s", err);
        return -1;
    }
    ew_overlay *ov = calloc(1, sizeof *ov);
    c.reset(c.ctx, w);
    ew_action keep = {0.0f, 0.0f};
    for (int t = 0; t < 10; t++) {
        c.observe(c.ctx, w);
        ew_world_step(w, &keep);
    }
    c.observe(c.ctx, w);
    o->ov_empty_before = ov && ew_mpc_pred_overlay_fill(&c, w, ov, err, (int)sizeof err) == 0 && ov->n_plan == 0 &&
                         ov->n_agents == 0;
    int rc = c.act(c.ctx, w, &o->first, err, (int)sizeof err);
    CHECK(rc == 0, "act: %s", err);
    ew_mpc_pred_view v;
    if (rc == 0 && ew_mpc_pred_get_view(&c, &v) == 0) {
        memcpy(o->plan, v.plan, sizeof o->plan);
        o->tracked = v.n;
        const ew_vehicles *vs = ew_world_vehicles(w);
        if (v.n >= 1) {
            o->seen = v.seen[0];
            o->track_err = INFINITY;
            for (int i = 0; i < vs->n; i++) {
                float e = hypotf(v.last[0] - vs->x[i], v.last[1] - vs->y[i]);
                if (e < o->track_err) o->track_err = e;
            }
        }
        if (ov && ew_mpc_pred_overlay_fill(&c, w, ov, err, (int)sizeof err) == 0) {
            const ew_kin_state *e = ew_world_ego(w);
            int ok = ov->n_plan == HOR + 1 && !memcmp(&ov->plan[0], e, sizeof *e) && ov->n_agents == v.n &&
                     !strcmp(ov->source, "mpc-pred");
            for (int a = 0; a < ov->n_agents && ok; a++)
                for (int k = 0; k < ov->agents[a].n; k++) {
                    const float *cv = ov->agents[a].cov[k];
                    ok &= cv[0] > 0 && cv[2] > 0 && cv[1] * cv[1] < cv[0] * cv[2];
                }
            o->ov_ok = ok;
        }
    }
    free(ov);
    ew_controller_destroy(&c);
    return rc;
}

static void planning_tests(const char *pred) {
    ew_world *w0 = road_world(0, 0, 0), *w1 = road_world(1, 500, 20.0f), *w2 = road_world(1, 900, 33.0f);
    CHECK(w0 && w1 && w2, "worlds");
    if (!w0 || !w1 || !w2) return;
    drive_out d0, d1, d2;
    if (drive(pred, w0, &d0) || drive(pred, w1, &d1) || drive(pred, w2, &d2)) return;
    float v = ew_world_ego(w1)->s;
    printf("empty road: a %.3f b %.5f, %d tracked | stalled car: a %.3f b %.5f, %d tracked (seen %d, error %.3f m), "
           "ego %.1f m/s, gap %.1f m\n", d0.first.a, d0.first.b, d0.tracked, d1.first.a, d1.first.b, d1.tracked, d1.seen,
           d1.track_err, v, ew_world_vehicles(w1)->x[0] - ew_world_ego(w1)->x);
    CHECK(d0.tracked == 0, "empty road: nothing tracked (%d)", d0.tracked);
    CHECK(d1.tracked == 1 && d1.seen == 11 && d1.track_err < 0.3f, "stalled car tracked: %d, seen %d, error %.3f m",
          d1.tracked, d1.seen, d1.track_err);
    /* the plan's least speed over the horizon: braking or steering away from the car */
    double min_a0 = 0, min_a1 = 0, lat0 = 0, lat1 = 0;
    for (int t = 0; t < HOR; t++) {
        min_a0 = fmin(min_a0, d0.plan[t].a), min_a1 = fmin(min_a1, d1.plan[t].a);
        lat0 = fmax(lat0, fabs(d0.plan[t].b) * v * v), lat1 = fmax(lat1, fabs(d1.plan[t].b) * v * v);
    }
    printf("plan: empty road least a %.3f, most lateral accel %.3f; stalled car %.3f, %.3f (m/s^2)\n", min_a0, lat0,
           min_a1, lat1);
    CHECK(min_a0 > -0.5, "empty road: no braking (%.3f m/s^2)", min_a0);
    CHECK(min_a1 < -1.0 || lat1 > lat0 + 0.5, "stalled car ahead: brake (%.3f m/s^2) or steer (%.3f m/s^2)", min_a1,
          lat1);
    CHECK(!memcmp(d1.plan, d2.plan, sizeof d1.plan),
          "the plan ignores what the raster does not show (the vehicle's id, desired speed)");
    CHECK(d0.ov_empty_before && d1.ov_empty_before, "overlay empty before the first act()");
    CHECK(d1.ov_ok && d0.ov_ok, "overlay: plan from the ego pose, one agent per tracked vehicle, covariances > 0");
    ew_world_destroy(w0);
    ew_world_destroy(w1);
    ew_world_destroy(w2);
}

/* ---- the binary ------------------------------------------------------------------------ */

/* Pixels of the ellipse colour (255, 80, 200) blended over the road or the grass, in the
 * world view (left of the raster inset, below the HUD). */
static long ellipse_pixels(const char *png) {
    uint8_t *d = NULL;
    int w = 0, h = 0, ch = 0;
    char err[256];
    if (ew_png_read(png, &d, &w, &h, &ch, err, (int)sizeof err) != 0 || ch < 3) {
        free(d);
        return -1;
    }
    long n = 0;
    for (int y = h / 2 - 60; y < h / 2 + 60; y++)
        for (int x = 0; x < (7 * w) / 10; x++) {
            const uint8_t *q = d + ((size_t)y * w + x) * ch;
            int r = q[0], g = q[1], b = q[2];
            n += r > g + 50 && b > g + 30;
        }
    free(d);
    return n;
}

static int run_cmd(const char *cmd, char *out, size_t cap) {
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void binary_tests(const char *bin, const char *pred, int window) {
    char dir[256], cmd[2048], out[8192];
    snprintf(dir, sizeof dir, "/tmp/ew_mpc_pred_%d_%s", (int)getpid(), window ? "window" : "headless");
    if (window)
        snprintf(cmd, sizeof cmd,
                 "'%s' run --scenario dense-3lane --controller 'mpc-pred:%s' --steps 12 --n-cond 6 --quiet --record '%s'",
                 bin, pred, dir);
    else
        snprintf(cmd, sizeof cmd,
                 "'%s' run --scenario dense-3lane --controller 'mpc-pred:%s' --steps 12 --n-cond 6 --quiet --headless "
                 "--headless-frames '%s' --frame-every 1", bin, pred, dir);
    int rc = run_cmd(cmd, out, sizeof out);
    CHECK(rc == 0, "%s: exit %d\n%s", cmd, rc, out);
    char f0[512], fl[512];
    snprintf(f0, sizeof f0, "%s/frame_%06d.png", dir, 0);
    snprintf(fl, sizeof fl, "%s/frame_%06d.png", dir, 11);
    long p0 = ellipse_pixels(f0), pl = ellipse_pixels(fl);
    printf("%s: ellipse-coloured pixels: warm-up frame %ld, last frame %ld\n", window ? "window" : "headless", p0, pl);
    CHECK(p0 == 0, "no ellipses during the warm-up (%ld pixels)", p0);
    CHECK(pl > 100, "the predictor's ellipses drawn after the warm-up (%ld pixels)", pl);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
}

static pid_t xvfb_pid = -1;

/* Xvfb on a display it picks (-displayfd), as tests/test_viewer.c does. */
static int start_xvfb(void) {
    if (system("command -v Xvfb >/dev/null 2>&1") != 0) return -1;
    int fd[2];
    if (pipe(fd) != 0) return -1;
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        close(fd[0]);
        char fds[16];
        snprintf(fds, sizeof fds, "%d", fd[1]);
        int dn = open("/dev/null", O_WRONLY);
        if (dn >= 0) {
            dup2(dn, 1);
            dup2(dn, 2);
        }
        execlp("Xvfb", "Xvfb", "-displayfd", fds, "-screen", "0", "1280x1024x24", "-nolisten", "tcp", (char *)NULL);
        _exit(127);
    }
    close(fd[1]);
    char buf[32] = {0};
    size_t got = 0;
    while (got < sizeof buf - 1) {
        ssize_t k = read(fd[0], buf + got, sizeof buf - 1 - got);
        if (k <= 0) break;
        got += (size_t)k;
        if (memchr(buf, '\n', got)) break;
    }
    close(fd[0]);
    if (got == 0) {
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
        return -1;
    }
    xvfb_pid = pid;
    char d[32];
    snprintf(d, sizeof d, ":%d", atoi(buf));
    setenv("DISPLAY", d, 1);
    return 0;
}

int main(void) {
    char pred[256], err[256];
    snprintf(pred, sizeof pred, "/tmp/egoworld_test_mpc_pred_%d.safetensors", (int)getpid());
    ew_motion_config mc;
    ew_motion_config_default(&mc);
    mc.hidden = 16;
    ew_motion m;
    int ok = ew_motion_init(&m, &mc, 3, err, sizeof err) == 0;
    CHECK(ok, "predictor init: %s", err);
    if (!ok) return check_done();
    CHECK(ew_motion_save(&m, NULL, 0, pred, err, sizeof err) == 0, "save: %s", err);
    ew_motion_free(&m);
    occupancy_tests();
    factory_tests(pred);
    planning_tests(pred);
    const char *bin = getenv("EGOWORLD_BIN");
#ifndef EGOWORLD_HAVE_VIEWER
    check_skip("the viewer is not built: no frames to check");
#else
    if (!bin || access(bin, X_OK) != 0) {
        check_skip("EGOWORLD_BIN not set: binary runs skipped");
    } else {
        unsetenv("DISPLAY");
        unsetenv("WAYLAND_DISPLAY");
        binary_tests(bin, pred, 0);
        if (start_xvfb() != 0) {
            check_skip("no Xvfb: window run skipped");
        } else {
            setenv("ASAN_OPTIONS", "detect_leaks=0", 1); /* Mesa / X11 allocations (tests/viewer.cmake) */
            binary_tests(bin, pred, 1);
            kill(xvfb_pid, SIGTERM);
            waitpid(xvfb_pid, NULL, 0);
        }
    }
#endif
    (void)bin;
    remove(pred);
    return check_done();
}
