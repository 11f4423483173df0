/* test_viewer.c - the viewer under Xvfb (OpenGL through Mesa) and headless.
 *
 * Window run (needs Xvfb, started here on a free display unless DISPLAY is set): a known
 * scenario and seed for a fixed number of frames with scripted keys (pause, single step,
 * toggle the plan overlay, reset); each frame is read back and checked: the ego's colour
 * at the ego's screen position, marking paint on the road edges, asphalt in the lanes,
 * off-road colour off the road, the inset tiles equal to the simulator's raster
 * (ew_raster_world) pixel for pixel, the plan overlay where the IDM preview says it is and
 * gone after its key, steps counted as the keys dictate. A second window run feeds the
 * overlay interface (cost mask) and checks the cost tile. The headless path must write
 * identical frames in two runs and agree with the OpenGL frame of the same state.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/check.h"

#ifndef EGOWORLD_HAVE_VIEWER
int main(void) {
    check_skip("the viewer is not built (EGOWORLD_VIEWER off, or sim/ lacks what viz/CMakeLists.txt waits for)");
    return check_done();
}
#else

#include "sim/raster.h"
#include "sim/world.h"
#include "viz/draw.h"
#include "viz/viewer.h"

#define W 960
#define H 540
#define NFRAMES 14

/* ---- Xvfb ----------------------------------------------------------------------------- */

static pid_t xvfb_pid = -1;

static int on_path(const char *prog, char *out, size_t cap) {
    const char *path = getenv("PATH");
    if (!path) return 0;
    while (*path) {
        const char *e = strchr(path, ':');
        size_t n = e ? (size_t)(e - path) : strlen(path);
        if (n > 0 && n + strlen(prog) + 2 < cap) {
            memcpy(out, path, n);
            out[n] = '/';
            strcpy(out + n + 1, prog);
            if (access(out, X_OK) == 0) return 1;
        }
        if (!e) break;
        path = e + 1;
    }
    return 0;
}

/* Starts Xvfb on a display it picks itself (-displayfd); sets DISPLAY. 0 or -1. */
static int start_xvfb(void) {
    char xvfb[4096];
    if (!on_path("Xvfb", xvfb, sizeof xvfb)) return -1;
    int fd[2];
    if (pipe(fd) != 0) return -1;
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        close(fd[0]);
        char fds[16];
        snprintf(fds, sizeof fds, "%d", fd[1]);
        int dn = open("/dev/null", 1);
        if (dn >= 0) {
            dup2(dn, 1);
            dup2(dn, 2);
        }
        execl(xvfb, "Xvfb", "-displayfd", fds, "-screen", "0", "1280x1024x24", "-nolisten", "tcp", (char *)NULL);
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
    int disp = atoi(buf);
    if (got == 0) {
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
        return -1;
    }
    xvfb_pid = pid;
    char d[32];
    snprintf(d, sizeof d, ":%d", disp);
    setenv("DISPLAY", d, 1);
    return 0;
}

static void stop_xvfb(void) {
    if (xvfb_pid > 0) {
        kill(xvfb_pid, SIGTERM);
        waitpid(xvfb_pid, NULL, 0);
        xvfb_pid = -1;
    }
}

/* ---- the scenario ---------------------------------------------------------------------- */

static ew_world *make_world(uint64_t seed) {
    ew_world_config cfg;
    ew_world_config_default(&cfg);
    cfg.seed = seed;
    char err[256];
    ew_world *w = ew_world_create(&cfg, err, (int)sizeof err);
    if (!w) fprintf(stderr, "world: %s\n", err);
    else ew_world_reset(w, seed);
    return w;
}

static void begin_episode(ew_world *w, ew_episode *ep) {
    ew_episode_cfg ec;
    ew_episode_cfg_default(&ec);
    ec.max_steps = 1000;
    ew_episode_begin(ep, &ec, w);
}

static const uint8_t *px(const ew_viewer_frame *f, float sx, float sy) {
    int x = (int)floorf(sx), y = (int)floorf(sy);
    if (x < 0) x = 0;
    if (y < 0) y = 0;
    if (x >= f->width) x = f->width - 1;
    if (y >= f->height) y = f->height - 1;
    return f->rgb + ((size_t)y * (size_t)f->width + (size_t)x) * 3;
}

static int near_rgb(const uint8_t *p, int r, int g, int b, int tol) {
    return abs(p[0] - r) <= tol && abs(p[1] - g) <= tol && abs(p[2] - b) <= tol;
}

/* 1 when the world point lies within margin of some vehicle or the ego. */
static int near_vehicle(const ew_world *w, float x, float y, float margin) {
    const ew_vehicles *v = ew_world_vehicles(w);
    for (int i = 0; i < v->n; i++)
        if (fabsf(v->x[i] - x) < 0.5f * v->len[i] + margin && fabsf(v->y[i] - y) < 0.5f * v->wid[i] + margin)
            return 1;
    const ew_kin_state *e = ew_world_ego(w);
    return fabsf(e->x - x) < 6.0f + margin && fabsf(e->y - y) < 2.0f + margin;
}

/* Inside the HUD or inset panels (top of the window): avoid for road probes. */
static int under_panels(const ew_viewer_frame *f, float sx, float sy) {
    if (f->inset.n_channels > 0 && sx >= f->inset.panel.x - 2 && sy <= f->inset.panel.y + f->inset.panel.h + 2) return 1;
    return sx < 560.0f && sy < 175.0f; /* HUD at scale 1 */
}

typedef struct {
    long steps[NFRAMES];
    int ego_ok[NFRAMES];
    int marking_ok, marking_tested, asphalt_ok, asphalt_tested, offroad_ok;
    long inset_mismatch, inset_checked;
    uint8_t plan_px[NFRAMES][3];
    float plan_sx, plan_sy;
    int plan_valid;
    uint64_t seed_seen[NFRAMES];
    /* cost run */
    long cost_mismatch, cost_checked;
    /* a frame kept for the GL vs software comparison */
    uint8_t *keep;
    long keep_frame;
    float ego_x_keep;
} probe;

static int probe_frame(void *ctx, const ew_viewer_frame *f, char *err, int errlen) {
    (void)err;
    (void)errlen;
    probe *p = (probe *)ctx;
    long k = f->frame;
    if (k < 0 || k >= NFRAMES) return 0;
    p->steps[k] = f->steps;
    const ew_kin_state *e = ew_world_ego(f->world);
    float sx, sy;
    ew_camera_to_screen(&f->cam, e->x, e->y, &sx, &sy);
    const uint8_t *c = px(f, sx, sy);
    p->ego_ok[k] = near_rgb(c, EW_VIZ_EGO, 2);
    if (!p->ego_ok[k]) fprintf(stderr, "frame %ld: ego pixel (%d,%d,%d) at %.1f,%.1f\n", k, c[0], c[1], c[2], (double)sx, (double)sy);

    if (f->ov->cost_h > 0) goto inset; /* the cost mask tints the road: no road probes */
    const ew_road *r = ew_world_road(f->world);
    float ytop = r->lanes[r->n_main - 1].y_right + r->lanes[r->n_main - 1].width;
    /* road edges (solid paint) at y = 0 and y = ytop, at x positions clear of vehicles */
    for (int side = 0; side < 2; side++) {
        float ye = side ? ytop : 0.0f;
        for (float fx = 0.05f; fx < 0.7f; fx += 0.05f) {
            float wx, wy;
            ew_camera_to_world(&f->cam, fx * (float)f->width, 0.0f, &wx, &wy);
            if (near_vehicle(f->world, wx, ye, 1.0f)) continue;
            float mx, my;
            ew_camera_to_screen(&f->cam, wx, ye, &mx, &my);
            if (under_panels(f, mx, my) || my < 0 || my >= (float)f->height) continue;
            p->marking_tested++;
            const uint8_t *m = px(f, mx, my);
            if (near_rgb(m, EW_VIZ_MARKING, 2)) p->marking_ok++;
            else fprintf(stderr, "frame %ld: marking pixel (%d,%d,%d) at %.1f,%.1f\n", k, m[0], m[1], m[2], (double)mx, (double)my);
            break;
        }
    }
    /* asphalt in the middle of lane 0 where no vehicle is (and the plan line is not) */
    for (float fx = 0.05f; fx < 0.7f; fx += 0.05f) {
        float wx, wy;
        ew_camera_to_world(&f->cam, fx * (float)f->width, 0.0f, &wx, &wy);
        float yc = ew_road_lane_center(r, 0) + 0.9f;
        if (near_vehicle(f->world, wx, yc, 1.5f) || (wx > e->x - 5.0f && fabsf(yc - e->y) < 3.0f)) continue;
        float ax, ay;
        ew_camera_to_screen(&f->cam, wx, yc, &ax, &ay);
        if (under_panels(f, ax, ay)) continue;
        p->asphalt_tested++;
        /* not on a dash of a lane separator: lane 0's centre + 0.9 m is paint-free */
        const uint8_t *a = px(f, ax, ay);
        if (near_rgb(a, EW_VIZ_ASPHALT, 2)) p->asphalt_ok++;
        else fprintf(stderr, "frame %ld: asphalt pixel (%d,%d,%d)\n", k, a[0], a[1], a[2]);
        break;
    }
    {
        float ox, oy;
        ew_camera_to_screen(&f->cam, e->x - 30.0f, -12.0f, &ox, &oy);
        if (near_rgb(px(f, ox, oy), EW_VIZ_OFFROAD, 2)) p->offroad_ok++;
    }
inset:
    /* inset tiles == the raster, pixel for pixel */
    if (f->inset.n_channels > 0) {
        uint8_t *ras = malloc((size_t)f->rc * (size_t)f->rh * (size_t)f->rw);
        ew_raster_cfg rc;
        ew_raster_cfg_default(&rc);
        char e2[128];
        if (ras && ew_raster_world(&rc, f->world, ras, e2, (int)sizeof e2) == 0) {
            int ks = f->inset.scale_channel;
            for (int ch = 0; ch < f->inset.n_channels; ch++)
                for (int y = 0; y < f->rh; y++)
                    for (int x = 0; x < f->rw; x++) {
                        uint8_t want = ras[((size_t)ch * (size_t)f->rh + (size_t)y) * (size_t)f->rw + (size_t)x];
                        for (int dy = 0; dy < ks; dy++)
                            for (int dx = 0; dx < ks; dx++) {
                                const uint8_t *q = px(f, (float)(f->inset.channel[ch].x + x * ks + dx) + 0.5f,
                                                      (float)(f->inset.channel[ch].y + y * ks + dy) + 0.5f);
                                p->inset_checked++;
                                if (q[0] != want || q[1] != want || q[2] != want) p->inset_mismatch++;
                            }
                        /* also: the raster itself is not the raster of a blank world */
                    }
            if (f->inset.cost.w > 0 && f->ov->cost_h > 0) {
                for (int y = 0; y < f->rh; y++)
                    for (int x = 0; x < f->rw; x++) {
                        float v = f->ov->cost[y * f->ov->cost_w + x];
                        const uint8_t *q = px(f, (float)(f->inset.cost.x + x * ks) + 0.5f, (float)(f->inset.cost.y + y * ks) + 0.5f);
                        p->cost_checked++;
                        if (q[0] != (uint8_t)(255.0f * v) || q[1] != (uint8_t)(120.0f * v) || q[2] != 0) p->cost_mismatch++;
                    }
            }
        }
        free(ras);
    }
    /* the plan overlay: a pose of the IDM preview clear of vehicles */
    if (k == 6)
        for (int i = 12; i < f->ov->n_plan; i++) {
            const ew_kin_state *q = &f->ov->plan[i];
            if (near_vehicle(f->world, q->x, q->y, 1.0f)) continue;
            ew_camera_to_screen(&f->cam, q->x, q->y, &p->plan_sx, &p->plan_sy);
            if (under_panels(f, p->plan_sx, p->plan_sy)) continue;
            p->plan_valid = 1;
            break;
        }
    if (p->plan_valid) memcpy(p->plan_px[k], px(f, p->plan_sx, p->plan_sy), 3);
    if (p->keep && k == p->keep_frame) {
        memcpy(p->keep, f->rgb, (size_t)f->width * (size_t)f->height * 3);
        p->ego_x_keep = e->x;
    }
    return 0;
}

static int fill_cost(void *ctx, const struct ew_world *w, ew_overlay *ov, char *err, int errlen) {
    (void)ctx;
    (void)err;
    (void)errlen;
    ew_overlay_clear(ov);
    ew_raster_cfg rc;
    ew_raster_cfg_default(&rc);
    ov->m_per_px = rc.m_per_px;
    ov->cost_h = rc.rows;
    ov->cost_w = rc.cols;
    ov->cost_pose = *ew_world_ego(w);
    for (int y = 0; y < rc.rows; y++)
        for (int x = 0; x < rc.cols; x++) ov->cost[y * rc.cols + x] = y < rc.rows / 2 ? 1.0f : (x < rc.cols / 2 ? 0.5f : 0.0f);
    ew_overlay_set_cost(ov, "proximity", 0.25f);
    return 0;
}

static void window_tests(void) {
    ew_world *w = make_world(7);
    CHECK(w != NULL, "world");
    if (!w) return;
    ew_episode ep;
    begin_episode(w, &ep);
    ew_controller ctrl;
    char err[512];
    CHECK(ew_controller_builtin("idm", &ctrl, err, (int)sizeof err) == 0, "controller: %s", err);
    probe *p = calloc(1, sizeof *p);
    /* frames: 0-2 run (1 step each); 3: pause; 5: one step; 8: plan overlay off; 12: reset */
    static const ew_viewer_key script[] = {{3, ' ', 1}, {5, 'n', 1}, {8, '1', 1}, {12, 'r', 1}};
    ew_viewer_opts o;
    ew_viewer_opts_default(&o);
    o.width = W;
    o.height = H;
    o.max_frames = NFRAMES;
    o.steps_per_frame = 1;
    o.script = script;
    o.n_script = 4;
    o.seed = 7;
    o.on_frame = probe_frame;
    o.frame_ctx = p;
    o.quiet = 1;
    ew_viewer_stats st;
    o.stats = &st;
    int rc = ew_viewer_run(&o, w, &ep, &ctrl, err, (int)sizeof err);
    CHECK(rc == 0, "viewer: %s", err);
    if (rc == 0) {
        CHECK(st.frames == NFRAMES, "frames %ld", st.frames);
        CHECK(p->steps[0] == 1 && p->steps[2] == 3, "running: steps %ld %ld", p->steps[0], p->steps[2]);
        CHECK(p->steps[3] == 3 && p->steps[4] == 3, "paused: steps %ld %ld", p->steps[3], p->steps[4]);
        CHECK(p->steps[5] == 4 && p->steps[11] == 4, "single step: %ld %ld", p->steps[5], p->steps[11]);
        int ego_frames = 0;
        for (int k = 0; k < NFRAMES; k++) ego_frames += p->ego_ok[k];
        CHECK(ego_frames == NFRAMES, "ego colour at the ego's position in %d of %d frames", ego_frames, NFRAMES);
        CHECK(p->marking_tested >= NFRAMES && p->marking_ok == p->marking_tested, "markings %d of %d",
              p->marking_ok, p->marking_tested);
        CHECK(p->asphalt_tested >= NFRAMES / 2 && p->asphalt_ok == p->asphalt_tested, "asphalt %d of %d",
              p->asphalt_ok, p->asphalt_tested);
        CHECK(p->offroad_ok == NFRAMES, "off-road colour in %d frames", p->offroad_ok);
        CHECK(p->inset_checked > 0 && p->inset_mismatch == 0, "inset: %ld of %ld pixels differ from the raster",
              p->inset_mismatch, p->inset_checked);
        CHECK(p->plan_valid, "the IDM preview gave a plan");
        const uint8_t *on = p->plan_px[7], *off = p->plan_px[10];
        CHECK(on[0] > 140 && on[1] > 140 && on[2] < 130, "plan shown: (%d,%d,%d)", on[0], on[1], on[2]);
        CHECK(!(off[0] > 140 && off[1] > 140 && off[2] < 130), "plan hidden: (%d,%d,%d)", off[0], off[1], off[2]);
        CHECK(ew_world_time(w) < 0.05, "reset: world time %.2f", ew_world_time(w));
    }
    /* overlay interface: a cost mask filled by the caller */
    ew_world_reset(w, 7);
    begin_episode(w, &ep);
    memset(p, 0, sizeof *p);
    static const ew_viewer_key s2[] = {{0, ' ', 1}};
    o.script = s2;
    o.n_script = 1;
    o.max_frames = 2;
    o.overlay = fill_cost;
    o.hide_hud = 1;
    o.overlays = 1u << EW_OVL_COST;
    p->keep = malloc((size_t)W * H * 3);
    p->keep_frame = 1;
    rc = ew_viewer_run(&o, w, &ep, &ctrl, err, (int)sizeof err);
    CHECK(rc == 0, "viewer (cost overlay): %s", err);
    CHECK(p->cost_checked > 0 && p->cost_mismatch == 0, "cost tile: %ld of %ld pixels wrong", p->cost_mismatch,
          p->cost_checked);

    /* the same state headless: the software frame agrees with the OpenGL frame */
    if (rc == 0 && p->keep) {
        uint8_t *gl = p->keep;
        p->keep = malloc((size_t)W * H * 3);
        ew_world_reset(w, 7);
        begin_episode(w, &ep);
        o.headless = 1;
        rc = ew_viewer_run(&o, w, &ep, &ctrl, err, (int)sizeof err);
        CHECK(rc == 0, "headless: %s", err);
        long diff = 0;
        for (long i = 0; i < (long)W * H; i++)
            if (abs(gl[3 * i] - p->keep[3 * i]) > 8 || abs(gl[3 * i + 1] - p->keep[3 * i + 1]) > 8 ||
                abs(gl[3 * i + 2] - p->keep[3 * i + 2]) > 8)
                diff++;
        CHECK(diff < (long)W * H / 100, "OpenGL and software frames differ in %ld of %d pixels", diff, W * H);
        free(gl);
    }
    free(p->keep);
    free(p);
    ew_controller_destroy(&ctrl);
    ew_world_destroy(w);
}

/* ---- headless determinism ------------------------------------------------------------------ */

typedef struct { uint64_t hash[64]; long n; int ego_ok; } hashes;

static int hash_frame(void *ctx, const ew_viewer_frame *f, char *err, int errlen) {
    (void)err;
    (void)errlen;
    hashes *h = (hashes *)ctx;
    uint64_t x = 1469598103934665603ULL;
    size_t n = (size_t)f->width * (size_t)f->height * 3;
    for (size_t i = 0; i < n; i++) x = (x ^ f->rgb[i]) * 1099511628211ULL;
    if (h->n < 64) h->hash[h->n] = x;
    h->n++;
    const ew_kin_state *e = ew_world_ego(f->world);
    float sx, sy;
    ew_camera_to_screen(&f->cam, e->x, e->y, &sx, &sy);
    h->ego_ok += near_rgb(px(f, sx, sy), EW_VIZ_EGO, 0);
    return 0;
}

static int read_file(const char *path, uint8_t **buf, long *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    *n = ftell(f);
    fseek(f, 0, SEEK_SET);
    *buf = malloc((size_t)*n + 1);
    int ok = *buf && fread(*buf, 1, (size_t)*n, f) == (size_t)*n;
    fclose(f);
    return ok ? 0 : -1;
}

static void headless_tests(void) {
    char dir[2][64];
    hashes h[2];
    memset(h, 0, sizeof h);
    for (int run = 0; run < 2; run++) {
        snprintf(dir[run], sizeof dir[run], "/tmp/ew_viewer_test_%d_%d", (int)getpid(), run);
        ew_world *w = make_world(11);
        if (!w) return;
        ew_episode ep;
        begin_episode(w, &ep);
        ew_controller ctrl;
        char err[512];
        ew_controller_builtin("idm", &ctrl, err, (int)sizeof err);
        ew_viewer_opts o;
        ew_viewer_opts_default(&o);
        o.width = 640;
        o.height = 360;
        o.headless = 1;
        o.max_frames = 25;
        o.record = dir[run];
        o.seed = 11;
        o.on_frame = hash_frame;
        o.frame_ctx = &h[run];
        o.quiet = 1;
        static const ew_viewer_key keys[] = {{4, '4', 1}, {9, '3', 1}, {12, EW_KEY_LEFT, 1}, {30, EW_KEY_LEFT, 0}};
        o.script = keys;
        o.n_script = 4;
        int rc = ew_viewer_run(&o, w, &ep, &ctrl, err, (int)sizeof err);
        CHECK(rc == 0, "headless run %d: %s", run, err);
        ew_controller_destroy(&ctrl);
        ew_world_destroy(w);
    }
    CHECK(h[0].n == 25 && h[1].n == 25, "frames %ld %ld", h[0].n, h[1].n);
    CHECK(h[0].ego_ok == 25, "headless ego colour in %d of 25 frames", h[0].ego_ok);
    int same = 1, distinct = 0;
    for (int i = 0; i < 25 && i < h[0].n; i++) {
        same &= h[0].hash[i] == h[1].hash[i];
        if (i > 0) distinct += h[0].hash[i] != h[0].hash[i - 1];
    }
    CHECK(same, "headless frames identical across runs");
    CHECK(distinct >= 20, "frames change as the world moves (%d of 24)", distinct);
    /* the PNG files too, byte for byte */
    int files_same = 1, files = 0;
    for (int i = 0; i < 25; i++) {
        char a[128], b[128];
        snprintf(a, sizeof a, "%s/frame_%06d.png", dir[0], i);
        snprintf(b, sizeof b, "%s/frame_%06d.png", dir[1], i);
        uint8_t *ba = NULL, *bb = NULL;
        long na = 0, nb = 0;
        if (read_file(a, &ba, &na) == 0 && read_file(b, &bb, &nb) == 0) {
            files++;
            files_same &= na == nb && !memcmp(ba, bb, (size_t)na);
        }
        free(ba);
        free(bb);
        remove(a);
        remove(b);
    }
    rmdir(dir[0]);
    rmdir(dir[1]);
    CHECK(files == 25 && files_same, "PNG frames: %d written, identical %d", files, files_same);
}

static void error_tests(void) {
    ew_world *w = make_world(3);
    if (!w) return;
    ew_episode ep;
    begin_episode(w, &ep);
    ew_viewer_opts o;
    ew_viewer_opts_default(&o);
    o.headless = 1;
    o.max_frames = 2;
    o.record = "/proc/egoworld_cannot_write_here/x";
    o.quiet = 1;
    char err[512] = {0};
    int rc = ew_viewer_run(&o, w, &ep, NULL, err, (int)sizeof err);
    CHECK(rc != 0 && strstr(err, "record") != NULL, "unwritable record dir: rc %d '%s'", rc, err);
    ew_world_destroy(w);
}

int main(void) {
    headless_tests();
    error_tests();
    const char *d = getenv("DISPLAY");
    int started = 0;
    if (!(d && d[0])) {
        if (start_xvfb() != 0) {
            check_skip("no DISPLAY and no Xvfb: window tests skipped");
            return check_done();
        }
        started = 1;
    }
    if (!ew_viewer_display_available()) {
        check_skip("SDL video does not initialise on this display: window tests skipped");
    } else {
        window_tests();
    }
    if (started) stop_xvfb();
    return check_done();
}
#endif
