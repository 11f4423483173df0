/* test_mpc_overlay.c - the viewer overlay of an MPC controller (planner/mpc_overlay.h) and
 * `egoworld run` driving with it (app/cmd_run.c, app/run_viewer.c), on a tiny random
 * stochastic FM-KM world model saved here.
 *
 *  1. Library: mpc-km in dense traffic, the overlay filled after every step: empty during the
 *     warm-up and when nothing was planned; after each act() a plan of horizon + 1 poses
 *     starting exactly at the ego pose and following the kinematic model with the plan's
 *     actions; K future images of the raster size equal to the controller's predicted
 *     vehicle channel (whose max over samples is the controller's reference image: checks the
 *     history indexing on fresh and shifted references); the samples' poses equal the
 *     reference pose (FM-KM); a cost mask in [0, 1] with maximum 1; cost terms that sum to the
 *     plan's cost.
 *  2. The binary, headless: `run --controller mpc-km --headless-frames DIR` writes one frame per
 *     step; no plan-coloured pixels during the warm-up, many after it; the default controller
 *     is mpc-km when --world loads and idm (with a note) when it does not exist.
 *  3. The binary under Xvfb (skipped without it): the window path records frames with the plan.
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
#include "models/fm.h"
#include "planner/mpc.h"
#include "planner/mpc_overlay.h"
#include "sim/episode.h"
#include "sim/png.h"
#include "sim/scenario_builtin.h"
#include "sim/world.h"

#define HOR 12
#define KS 3
#define NCOND 4

static ew_world *dense_world(uint64_t seed) {
    ew_world_config wc;
    char err[256];
    if (ew_scenario_builtin("dense-3lane", &wc, err, (int)sizeof err) != 0) return NULL;
    wc.seed = seed;
    ew_world *w = ew_world_create(&wc, err, (int)sizeof err);
    if (w) ew_world_reset(w, seed);
    return w;
}

static uint8_t u8(float v) { return !(v > 0.0f) ? 0 : (v >= 1.0f ? 255 : (uint8_t)(v * 255.0f + 0.5f)); }

static void library_tests(const char *model) {
    char err[256];
    ew_mpc_config mc;
    ew_mpc_config_default(&mc);
    mc.world_model = model;
    mc.horizon = HOR;
    mc.samples = KS;
    mc.refresh = 3;
    mc.iters = 4;
    ew_controller c;
    if (ew_mpc_controller_create("mpc-km", &mc, &c, err, (int)sizeof err) != 0) {
        CHECK(0, "create mpc-km: %s", err);
        return;
    }
    ew_controller idm;
    ew_controller_builtin("idm", &idm, err, (int)sizeof err);
    ew_mpc_overlay mo;
    CHECK(ew_mpc_overlay_init(&mo, &idm) == -1, "idm is no MPC controller");
    CHECK(ew_mpc_overlay_init(&mo, &c) == 0 && mo.fut_every == 5, "init on mpc-km");
    ew_world *w = dense_world(3);
    CHECK(w != NULL, "dense-3lane world");
    ew_overlay *ov = calloc(1, sizeof *ov);
    if (!w || !ov) return;
    c.reset(c.ctx, w);
    ew_episode ep;
    ew_episode_cfg ec;
    ew_episode_cfg_default(&ec);
    ec.n_cond = NCOND;
    ew_episode_begin(&ep, &ec, w);
    CHECK(ew_mpc_overlay_fill(&mo, w, ov, err, (int)sizeof err) == 0, "fill at the start: %s", err);
    CHECK(ov->n_plan == 0 && ov->fut_samples == 0 && ov->cost_h == 0, "nothing planned yet: empty overlay");
    const ew_world_config *cfg = ew_world_config_of(w);
    int fresh = 0, warm_empty = 0, plan_ok = 0, kin_ok = 0, fut_ok = 0, ref_ok = 0, pose_ok = 0, mask_ok = 0,
        terms_ok = 0, tails = 0, vehicles_seen = 0;
    long prev_tails = 0;
    for (int step = 0; step < 14; step++) {
        int warm = ew_episode_in_warmup(&ep);
        if (!ew_episode_step(&ep, w, &c)) break;
        ew_mpc_stats st;
        ew_mpc_view v;
        ew_mpc_get_stats(&c, &st);
        ew_mpc_get_view(&c, &v);
        CHECK(ew_mpc_overlay_fill(&mo, w, ov, err, (int)sizeof err) == 0, "fill: %s", err);
        if (warm) {
            warm_empty += ov->n_plan == 0 && ov->fut_samples == 0 && ov->n_costs == 1;
            continue;
        }
        fresh++;
        tails += st.tails > prev_tails; /* this step shifted the reference */
        prev_tails = st.tails;
        const ew_kin_state *e = ew_world_ego(w);
        plan_ok += ov->n_plan == HOR + 1 && !memcmp(&ov->plan[0], e, sizeof *e) && !strcmp(ov->source, "mpc-km");
        ew_kin_state q;
        ew_kin_step(e, ew_kin_clip(&cfg->ego_limits, st.plan[1]), cfg->dt, cfg->ego_limits.allow_reverse, &q);
        kin_ok += ov->n_plan > 1 && fabsf(ov->plan[1].x - q.x) < 1e-5f && fabsf(ov->plan[1].y - q.y) < 1e-5f &&
                  fabsf(ov->plan[1].s - q.s) < 1e-5f;
        /* futures: reference steps 5, 10, 11 (every 5, and the last) */
        const int steps[3] = {5, 10, HOR - 1};
        const size_t hw = (size_t)v.H * v.W, fsz = 3 * hw;
        int f_ok = ov->fut_samples == KS && ov->fut_steps == 3 && ov->fut_h == 117 && ov->fut_w == 24 &&
                   v.K == KS && v.frames != NULL;
        int r_ok = f_ok, p_ok = f_ok;
        for (int j = 0; j < 3 && f_ok; j++) {
            const ew_cost_pose *rp = &v.ref_pose[steps[j]];
            p_ok &= ov->fut_pose[j].x == (float)rp->x && ov->fut_pose[j].y == (float)rp->y;
            for (int k = 0; k < KS; k++) {
                const float *veh = v.frames + ((size_t)k * v.stride + (size_t)steps[j]) * fsz + hw;
                for (size_t i = 0; i < hw; i++) f_ok &= ov->fut[k][j][i] == u8(veh[i]);
            }
        }
        for (int t = 0; t < HOR && r_ok; t++) {
            const float *ref = v.ref_img + (size_t)t * fsz + hw;
            for (size_t i = 0; i < hw; i++) {
                float mx = -INFINITY;
                for (int k = 0; k < KS; k++) mx = fmaxf(mx, v.frames[((size_t)k * v.stride + (size_t)t) * fsz + hw + i]);
                r_ok &= ref[i] == mx;
                vehicles_seen += mx > 0.5f;
            }
            for (int k = 0; k < KS; k++) {
                const float *s = v.states + ((size_t)k * v.stride + (size_t)t) * 5;
                p_ok &= fabs(s[0] - v.ref_pose[t].x) < 1e-3 && fabs(s[1] - v.ref_pose[t].y) < 1e-3 &&
                        fabs(s[4] - v.ref_pose[t].s) < 1e-3;
            }
        }
        fut_ok += f_ok;
        ref_ok += r_ok;
        pose_ok += p_ok;
        float mx = 0.0f, mn = 1.0f;
        for (int i = 0; i < ov->cost_h * ov->cost_w; i++) {
            mx = fmaxf(mx, ov->cost[i]);
            mn = fminf(mn, ov->cost[i]);
        }
        mask_ok += ov->cost_h == 117 && ov->cost_w == 24 && mx == 1.0f && mn >= 0.0f;
        double sum = 0, cost = NAN;
        int nterms = 0;
        static const char *const terms[6] = {"prox", "lane", "offroad", "action", "jerk", "ref"};
        for (int i = 0; i < ov->n_costs; i++) {
            for (int k = 0; k < 6; k++)
                if (!strcmp(ov->costs[i].name, terms[k])) {
                    sum += ov->costs[i].value;
                    nterms++;
                }
            if (!strcmp(ov->costs[i].name, "cost")) cost = ov->costs[i].value;
        }
        terms_ok += nterms == 6 && cost == (float)st.cost_final && fabs(sum - cost) <= 1e-5 * (1 + fabs(cost));
        if (step == 13) {
            printf("step %d: plan %d poses from (%.2f, %.2f), futures %d x %d of %dx%d, cost %.5f = sum of terms "
                   "%.5f, plan_ms %.2f\n", step, ov->n_plan, (double)e->x, (double)e->y, ov->fut_samples,
                   ov->fut_steps, ov->fut_h, ov->fut_w, cost, sum, (double)ov->costs[1].value);
        }
    }
    printf("control steps %d: plan %d, kinematic %d, futures %d, reference = max of samples %d, poses %d, "
           "mask %d, terms %d; tail steps %d; warm-up empty %d\n", fresh, plan_ok, kin_ok, fut_ok, ref_ok, pose_ok,
           mask_ok, terms_ok, tails, warm_empty);
    CHECK(fresh == 14 - NCOND, "control steps %d", fresh);
    CHECK(warm_empty == NCOND, "empty overlay in the %d warm-up steps (%d)", NCOND, warm_empty);
    CHECK(plan_ok == fresh, "plan of horizon + 1 poses from the ego pose (%d of %d)", plan_ok, fresh);
    CHECK(kin_ok == fresh, "the plan follows the kinematic model (%d of %d)", kin_ok, fresh);
    CHECK(fut_ok == fresh, "futures: K images of 117 x 24 = the predicted vehicle channel (%d of %d)", fut_ok, fresh);
    CHECK(ref_ok == fresh, "reference vehicles = max over the samples' frames (%d of %d)", ref_ok, fresh);
    CHECK(pose_ok == fresh, "future poses = the reference poses = every sample's pose (%d of %d)", pose_ok, fresh);
    CHECK(tails >= 3, "shifted references covered (%d)", tails);
    CHECK(vehicles_seen > 0, "the predicted vehicle channel is not empty (%d pixels > 0.5)", vehicles_seen);
    CHECK(mask_ok == fresh, "cost mask in [0, 1], maximum 1 (%d of %d)", mask_ok, fresh);
    CHECK(terms_ok == fresh, "the terms sum to the plan's cost (%d of %d)", terms_ok, fresh);
    /* a second call without a step: nothing new was planned */
    CHECK(ew_mpc_overlay_fill(&mo, w, ov, err, (int)sizeof err) == 0 && ov->n_plan == 0 && ov->fut_samples == 0,
          "no new plan: empty overlay");
    free(ov);
    ew_world_destroy(w);
    ew_controller_destroy(&c);
    ew_controller_destroy(&idm);
}

/* ---- the binary ------------------------------------------------------------------------ */

/* Pixels of the plan colour (255, 230, 40) blended at alpha >= ~0.5 over the road, in the
 * world view around the ego's row (the window centre, +-40 px; left of the raster inset). */
static long plan_pixels(const char *png) {
    uint8_t *d = NULL;
    int w = 0, h = 0, ch = 0;
    char err[256];
    if (ew_png_read(png, &d, &w, &h, &ch, err, (int)sizeof err) != 0 || ch < 3) {
        free(d);
        return -1;
    }
    long n = 0;
    for (int y = h / 2 - 40; y < h / 2 + 40; y++)
        for (int x = 0; x < (7 * w) / 10; x++) {
            const uint8_t *q = d + ((size_t)y * w + x) * ch;
            int r = q[0], g = q[1], b = q[2];
            n += r >= 150 && b < 150 && g >= (85 * r) / 100 && g <= r;
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

static void frames_check(const char *what, const char *dir, int nframes) {
    char f0[512], fl[512];
    snprintf(f0, sizeof f0, "%s/frame_%06d.png", dir, 0);
    snprintf(fl, sizeof fl, "%s/frame_%06d.png", dir, nframes - 1);
    long p0 = plan_pixels(f0), pl = plan_pixels(fl);
    char fx[512];
    snprintf(fx, sizeof fx, "%s/frame_%06d.png", dir, nframes);
    printf("%s: plan-coloured pixels: warm-up frame %ld, last frame %ld\n", what, p0, pl);
    CHECK(p0 == 0, "%s: no plan during the warm-up (%ld pixels)", what, p0);
    CHECK(pl > 60, "%s: the plan drawn after the warm-up (%ld pixels)", what, pl);
    CHECK(access(fx, F_OK) != 0, "%s: %d frames, not more", what, nframes);
}

static void rm_dir(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
}

static void binary_tests(const char *bin, const char *model, int window) {
    char dir[256], cmd[2048], out[8192];
    snprintf(dir, sizeof dir, "/tmp/ew_mpc_overlay_%d_%s", (int)getpid(), window ? "window" : "headless");
    /* 12 steps, warm-up 6: frames after steps 1..12 */
    if (window)
        snprintf(cmd, sizeof cmd, "'%s' run --controller mpc-km --world '%s' --steps 12 --n-cond 6 --quiet --record '%s'",
                 bin, model, dir);
    else
        snprintf(cmd, sizeof cmd,
                 "'%s' run --controller mpc-km --world '%s' --steps 12 --n-cond 6 --quiet --headless "
                 "--headless-frames '%s' --frame-every 1", bin, model, dir);
    int rc = run_cmd(cmd, out, sizeof out);
    CHECK(rc == 0, "%s: exit %d", cmd, rc);
    CHECK(strstr(out, "controller    mpc-km (world model") != NULL, "summary names mpc-km:\n%s", out);
    if (!window) CHECK(strstr(out, "frames        ") && strstr(out, "(12 frames, one per 1 steps"), "frames line:\n%s", out);
    frames_check(window ? "window (Xvfb)" : "headless", dir, 12);
    rm_dir(dir);
}

static void default_tests(const char *bin, const char *model) {
    char cmd[2048], out[8192];
    snprintf(cmd, sizeof cmd, "'%s' run --world '%s' --steps 8 --n-cond 4 --quiet --headless 2>&1", bin, model);
    int rc = run_cmd(cmd, out, sizeof out);
    CHECK(rc == 0 && strstr(out, "controller    mpc-km") && !strstr(out, "driven by idm"),
          "default with a world model that loads: mpc-km (exit %d)\n%s", rc, out);
    snprintf(cmd, sizeof cmd, "'%s' run --world /nonexistent/wm.safetensors --steps 8 --quiet --headless 2>&1", bin);
    rc = run_cmd(cmd, out, sizeof out);
    CHECK(rc == 0 && strstr(out, "no world model at /nonexistent/wm.safetensors: the ego is driven by idm") &&
              strstr(out, "controller    idm"), "default without a world model: idm and a note (exit %d)\n%s", rc, out);
    snprintf(cmd, sizeof cmd, "'%s' run --world /dev/null --steps 8 --quiet --headless 2>&1", bin);
    rc = run_cmd(cmd, out, sizeof out);
    CHECK(rc == 0 && strstr(out, "world model /dev/null") && strstr(out, "the ego is driven by idm") &&
              strstr(out, "controller    idm"), "default with a world model that does not load: idm (exit %d)\n%s", rc,
          out);
}

/* Xvfb on a display it picks (-displayfd), as tests/test_viewer.c does. */
static pid_t xvfb_pid = -1;

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
    char model[256], err[256];
    snprintf(model, sizeof model, "/tmp/egoworld_test_mpc_overlay_%d.safetensors", (int)getpid());
    ew_fm_config fc = ew_fm_config_default();
    fc.variant = EW_FM_KM;
    fc.stochastic = 1;
    fc.nf = 4;
    fc.hidden = 16;
    fc.n_cond = NCOND;
    fc.nz = 4;
    ew_fm m;
    int ok = ew_fm_init(&m, &fc, NULL, err, sizeof err) == 0;
    CHECK(ok, "init: %s", err);
    if (!ok) return check_done();
    CHECK(ew_fm_save(&m, model, NULL, 0, NULL, 0, err, sizeof err) == 0, "save: %s", err);
    ew_fm_free(&m);
    library_tests(model);

    const char *bin = getenv("EGOWORLD_BIN");
#ifndef EGOWORLD_HAVE_VIEWER
    check_skip("the viewer is not built: no frames to check");
#else
    if (!bin || access(bin, X_OK) != 0) {
        check_skip("EGOWORLD_BIN not set: binary runs skipped");
    } else {
        unsetenv("DISPLAY");
        unsetenv("WAYLAND_DISPLAY");
        binary_tests(bin, model, 0);
        default_tests(bin, model);
        if (start_xvfb() != 0) {
            check_skip("no Xvfb: window run skipped");
        } else {
            /* Mesa and X11 keep allocations until exit that LeakSanitizer reports (tests/viewer.cmake) */
            setenv("ASAN_OPTIONS", "detect_leaks=0", 1);
            binary_tests(bin, model, 1);
            kill(xvfb_pid, SIGTERM);
            waitpid(xvfb_pid, NULL, 0);
        }
    }
#endif
    (void)bin;
    remove(model);
    return check_done();
}
