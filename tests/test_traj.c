/* test_traj.c - trajectory datasets (sim/traj.h) and the noisy driver (sim/driver.h):
 * round trip, rendering on the fly equals the live simulator's raster, kinematic
 * consistency, splits, statistics, corrupt and truncated shards, the size budget. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sim/driver.h"
#include "sim/raster.h"
#include "sim/scenario_builtin.h"
#include "sim/traj.h"
#include "sim/world.h"
#include "tests/check.h"

#define STEPS 60
#define EPS 6

static char dir[256];

/* Live record of what the simulator showed and held at every recorded step. */
typedef struct {
    int len;
    uint8_t *img;            /* len rasters of the live world */
    float vx[STEPS + 1][EW_TRAJ_MAX_VEH], vy[STEPS + 1][EW_TRAJ_MAX_VEH], vv[STEPS + 1][EW_TRAJ_MAX_VEH];
    uint32_t vid[STEPS + 1][EW_TRAJ_MAX_VEH];
    int nv[STEPS + 1];
    int out_of_range_visible; /* a vehicle beyond EW_TRAJ_RANGE_M could have been in view */
} live_t;

static live_t live[EPS];

static const char *scen[3] = {"dense-3lane", "onramp-6lane", "closure-3lane"};

/* Writes EPS episodes (driver "idm-noisy") and keeps the live rasters. */
static int write_set(void) {
    char err[512];
    ew_traj_writer_cfg c;
    ew_traj_writer_cfg_default(&c);
    c.dir = dir;
    c.command = "test_traj";
    ew_traj_writer *w = ew_traj_writer_open(&c, err, (int)sizeof err);
    CHECK(w != NULL, "%s", err);
    if (!w) return -1;
    ew_raster_cfg rc;
    ew_raster_cfg_default(&rc);
    size_t rb = EW_RASTER_CHANNELS * (size_t)rc.rows * rc.cols;
    for (int e = 0; e < EPS; e++) {
        ew_world_config wc;
        CHECK(ew_scenario_builtin(scen[e % 3], &wc, err, (int)sizeof err) == 0, "%s", err);
        ew_world *wd = ew_world_create(&wc, err, (int)sizeof err);
        ew_world_reset(wd, 100 + (uint64_t)e);
        ew_controller drv;
        CHECK(ew_driver_controller(NULL, 7 + (uint64_t)e, &drv, err, (int)sizeof err) == 0, "%s", err);
        drv.reset(drv.ctx, wd);
        CHECK(ew_traj_writer_begin(w, scen[e % 3], 100 + (uint64_t)e, ew_world_road(wd), wc.ego_length,
                                   wc.ego_width, err, (int)sizeof err) == 0,
              "%s", err);
        live_t *L = &live[e];
        L->img = malloc(rb * (STEPS + 1));
        L->len = 0;
        for (int t = 0; t <= STEPS; t++) {
            ew_action u = {0, 0};
            if (t < STEPS) {
                drv.act(drv.ctx, wd, &u, err, (int)sizeof err);
                u = ew_kin_clip(&wc.ego_limits, u);
            }
            CHECK(ew_raster_world(&rc, wd, L->img + rb * t, err, (int)sizeof err) == 0, "%s", err);
            const ew_vehicles *V = ew_world_vehicles(wd);
            const ew_kin_state *g = ew_world_ego(wd);
            int n = 0;
            for (int i = 0; i < V->n; i++) {
                float d = fabsf(V->x[i] - g->x);
                if (d <= EW_TRAJ_RANGE_M && n < EW_TRAJ_MAX_VEH) {
                    L->vx[t][n] = V->x[i];
                    L->vy[t][n] = V->y[i];
                    L->vv[t][n] = V->v[i];
                    L->vid[t][n] = V->id[i];
                    n++;
                } else if (d < 50.0f) L->out_of_range_visible = 1;
            }
            L->nv[t] = n;
            CHECK(ew_traj_writer_step(w, wd, &u, err, (int)sizeof err) == 0, "%s", err);
            L->len++;
            if (t < STEPS) ew_world_step(wd, &u);
        }
        CHECK(ew_traj_writer_end_label(w, "timeout", err, (int)sizeof err) == 0, "%s", err);
        ew_controller_destroy(&drv);
        ew_world_destroy(wd);
    }
    int rc2 = ew_traj_writer_close(w, err, (int)sizeof err);
    CHECK(rc2 == 0, "%s", err);
    return rc2;
}

static int find_id(const live_t *L, int t, uint32_t id) {
    for (int k = 0; k < L->nv[t]; k++)
        if (L->vid[t][k] == id) return k;
    return -1;
}

static void test_round_trip_and_render(ew_traj_set *s) {
    char err[512];
    CHECK(ew_traj_n_episodes(s) == EPS, "%d episodes", ew_traj_n_episodes(s));
    CHECK(ew_traj_n_steps(s) == (int64_t)EPS * (STEPS + 1), "%lld steps", (long long)ew_traj_n_steps(s));
    CHECK(fabsf(ew_traj_dt(s) - 0.1f) < 1e-7f, "dt %g", (double)ew_traj_dt(s));
    CHECK(!strcmp(ew_traj_mode(s), "reactive"), "mode %s", ew_traj_mode(s));
    /* decoded frames: the exact positions, speeds within the documented quantisation */
    int bad_pos = 0, bad_v = 0, missing = 0, kin_bad = 0;
    double max_dv = 0;
    ew_traj_frame *f = malloc(sizeof *f), *g = malloc(sizeof *g);
    for (int e = 0; e < EPS; e++) {
        const live_t *L = &live[e];
        CHECK(ew_traj_episode_len(s, e) == L->len, "len %d vs %d", ew_traj_episode_len(s, e), L->len);
        CHECK(!strcmp(ew_traj_episode_scenario(s, e), scen[e % 3]), "scenario %s", ew_traj_episode_scenario(s, e));
        CHECK(ew_traj_episode_seed(s, e) == 100 + (uint64_t)e, "seed");
        CHECK(!strcmp(ew_traj_episode_end(s, e), "timeout"), "end label");
        for (int t = 0; t < L->len; t++) {
            CHECK(ew_traj_frame_get(s, e, t, f, err, (int)sizeof err) == 0, "%s", err);
            if (f->n != L->nv[t]) missing++;
            for (int k = 0; k < f->n; k++) {
                int j = find_id(L, t, f->id[k]);
                if (j < 0) {
                    missing++;
                    continue;
                }
                if (f->x[k] != L->vx[t][j] || f->y[k] != L->vy[t][j]) bad_pos++;
                double dv = fabs((double)f->v[k] - L->vv[t][j]);
                if (dv > max_dv) max_dv = dv;
                if (dv > 0.001 + 1e-6) bad_v++;
            }
            /* ego(t+1) = ew_kin_step(ego(t), action(t)), bit for bit */
            if (t + 1 < L->len) {
                CHECK(ew_traj_frame_get(s, e, t + 1, g, err, (int)sizeof err) == 0, "%s", err);
                ew_kin_state nx;
                ew_kin_step(&f->ego, f->action, 0.1f, 0, &nx);
                if (memcmp(&nx, &g->ego, sizeof nx) != 0) kin_bad++;
            }
        }
    }
    CHECK(missing == 0, "%d vehicles missing or extra", missing);
    CHECK(bad_pos == 0, "%d positions differ", bad_pos);
    CHECK(bad_v == 0, "%d speeds off by more than 0.001 m/s (max %g)", bad_v, max_dv);
    CHECK(kin_bad == 0, "%d steps break ego(t+1) = kin_step(ego(t), action(t))", kin_bad);

    /* rendering on the fly equals the simulator's own raster, for every step of every episode */
    ew_traj_batch_cfg bc = {0};
    bc.n_cond = 1;
    bc.n_pred = STEPS;
    ew_raster_cfg_default(&bc.raster);
    bc.channels = 3;
    bc.threads = 2;
    ew_traj_sample sm[EPS];
    for (int e = 0; e < EPS; e++) sm[e] = (ew_traj_sample){e, 0};
    size_t plane = (size_t)bc.raster.rows * bc.raster.cols;
    float *fr = malloc(sizeof(float) * EPS * 3 * plane), *tf = malloc(sizeof(float) * EPS * STEPS * 3 * plane);
    float *st = malloc(sizeof(float) * EPS * 5), *ac = malloc(sizeof(float) * EPS * STEPS * 2),
          *ts = malloc(sizeof(float) * EPS * STEPS * 5);
    CHECK(ew_traj_fill(s, &bc, sm, EPS, fr, st, ac, tf, ts, err, (int)sizeof err) == 0, "%s", err);
    long diff = 0, compared = 0;
    for (int e = 0; e < EPS; e++) {
        CHECK(!live[e].out_of_range_visible, "episode %d: a vehicle outside the stored range was in view", e);
        for (int t = 0; t <= STEPS; t++) {
            const float *img = t == 0 ? fr + (size_t)e * 3 * plane : tf + ((size_t)e * STEPS + (t - 1)) * 3 * plane;
            const uint8_t *ref = live[e].img + (size_t)EW_RASTER_CHANNELS * plane * t;
            for (size_t i = 0; i < 3 * plane; i++) {
                compared++;
                if (img[i] != (float)ref[i] * (1.0f / 255.0f)) diff++; /* ew_raster_to_f32 */
            }
        }
        /* states and actions */
        CHECK(ew_traj_frame_get(s, e, 0, f, err, (int)sizeof err) == 0, "%s", err);
        CHECK(st[e * 5] == f->ego.x && st[e * 5 + 4] == f->ego.s, "state of sample %d", e);
        CHECK(ac[(size_t)e * STEPS * 2] == f->action.a && ac[(size_t)e * STEPS * 2 + 1] == f->action.b, "action");
        CHECK(ew_traj_frame_get(s, e, STEPS, f, err, (int)sizeof err) == 0, "%s", err);
        CHECK(ts[((size_t)e * STEPS + STEPS - 1) * 5 + 1] == f->ego.y, "target state");
    }
    CHECK(compared > 0 && diff == 0, "%ld of %ld pixel values differ from the live raster", diff, compared);
    /* 1 thread and 2 threads: identical */
    float *fr1 = malloc(sizeof(float) * EPS * STEPS * 3 * plane);
    bc.threads = 1;
    CHECK(ew_traj_fill(s, &bc, sm, EPS, NULL, NULL, NULL, fr1, NULL, err, (int)sizeof err) == 0, "%s", err);
    CHECK(memcmp(fr1, tf, sizeof(float) * EPS * STEPS * 3 * plane) == 0, "1 vs 2 threads differ");
    /* an out-of-range sample is an error, not a crash */
    ew_traj_sample badsm = {0, STEPS};
    CHECK(ew_traj_fill(s, &bc, &badsm, 1, NULL, NULL, NULL, fr1, NULL, err, (int)sizeof err) != 0, "bad sample accepted");
    free(fr1);
    free(fr);
    free(tf);
    free(st);
    free(ac);
    free(ts);
    free(f);
    free(g);
}

static void test_splits_and_stats(ew_traj_set *s) {
    char err[512];
    ew_traj_sample *all, *sp[3];
    size_t nall, n[3];
    CHECK(ew_traj_samples(s, EW_SPLIT_ALL, 20, 20, 1, &all, &nall, err, (int)sizeof err) == 0, "%s", err);
    CHECK(nall == (size_t)EPS * (STEPS + 1 - 39), "%zu samples", nall);
    size_t tot = 0;
    for (int k = 0; k < 3; k++) {
        CHECK(ew_traj_samples(s, (ew_split)k, 20, 20, 1, &sp[k], &n[k], err, (int)sizeof err) == 0, "%s", err);
        for (size_t i = 0; i < n[k]; i++) {
            CHECK(ew_traj_episode_split(s, sp[k][i].episode) == (ew_split)k, "sample in the wrong split");
            CHECK(sp[k][i].t0 >= 19 && sp[k][i].t0 + 20 < ew_traj_episode_len(s, sp[k][i].episode), "t0 range");
        }
        tot += n[k];
    }
    CHECK(tot == nall, "splits cover %zu of %zu samples", tot, nall);
    for (int k = 0; k < 3; k++) free(sp[k]);
    free(all);
    /* a second open gives the same splits */
    ew_traj_set *s2 = ew_traj_open(dir, err, (int)sizeof err);
    CHECK(s2 != NULL, "%s", err);
    for (int e = 0; s2 && e < EPS; e++) CHECK(ew_traj_episode_split(s, e) == ew_traj_episode_split(s2, e), "split");
    ew_traj_close(s2);
    /* statistics = direct mean / std over the decoded frames */
    float sm[5], ss[5], am[2], as[2];
    CHECK(ew_traj_stats(s, EW_SPLIT_ALL, sm, ss, am, as, err, (int)sizeof err) == 0, "%s", err);
    double sum[7] = {0}, sq[7] = {0};
    long cnt = 0;
    ew_traj_frame *f = malloc(sizeof *f);
    for (int pass = 0; pass < 2; pass++)
        for (int e = 0; e < EPS; e++)
            for (int t = 0; t < ew_traj_episode_len(s, e); t++) {
                ew_traj_frame_get(s, e, t, f, err, (int)sizeof err);
                double v[7] = {f->ego.x, f->ego.y, f->ego.dx, f->ego.dy, f->ego.s, f->action.a, f->action.b};
                for (int c = 0; c < 7; c++) {
                    if (pass == 0) sum[c] += v[c];
                    else sq[c] += (v[c] - sum[c] / cnt) * (v[c] - sum[c] / cnt);
                }
                if (pass == 0) cnt++;
            }
    for (int c = 0; c < 7; c++) {
        double mu = sum[c] / cnt, sd = fmax(sqrt(sq[c] / cnt), 1e-6);
        double gm = c < 5 ? sm[c] : am[c - 5], gs = c < 5 ? ss[c] : as[c - 5];
        CHECK_NEAR(gm, mu, 1e-5 * (1 + fabs(mu)));
        CHECK_NEAR(gs, sd, 1e-5 * (1 + sd));
    }
    CHECK(as[0] > 0.2f, "acceleration std %g: the driver's actions vary", (double)as[0]);
    free(f);
}

static uint8_t *slurp(const char *path, size_t *n) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long L = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)L + 1);
    *n = fread(b, 1, (size_t)L, fp);
    fclose(fp);
    return b;
}

static void test_corrupt(void) {
    char path[400], err[512];
    snprintf(path, sizeof path, "%s/traj-0000.ewt", dir);
    size_t n;
    uint8_t *b = slurp(path, &n);
    CHECK(b != NULL, "read %s", path);
    if (!b) return;
    ew_traj_set *ok = ew_traj_parse_shard(b, n, "mem", err, (int)sizeof err);
    CHECK(ok != NULL, "%s", err);
    if (ok) {
        CHECK(ew_traj_n_steps(ok) == (int64_t)EPS * (STEPS + 1), "parse_shard steps");
        /* budget: <= 24 bytes per vehicle-step, well under 1 kB per ego-step */
        double per_v = (double)n / (double)ew_traj_n_vehicle_steps(ok), per_e = (double)n / (double)ew_traj_n_steps(ok);
        CHECK(per_v <= 24.0, "%.2f bytes per vehicle-step", per_v);
        CHECK(per_e < 1024.0, "%.1f bytes per ego-step", per_e);
        printf("size: %.2f bytes per vehicle-step, %.1f per ego-step, %zu in memory for %zu on disk\n", per_v, per_e,
               ew_traj_bytes(ok), n);
    }
    ew_traj_close(ok);
    /* every truncation is rejected with a message naming the buffer and a byte offset */
    int accepted = 0, unnamed = 0;
    size_t cuts[] = {0, 1, 7, 8, 31, 32, 33, 40, 100, n / 3, n / 2, n - 100, n - 1};
    for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++) {
        err[0] = 0;
        ew_traj_set *s = ew_traj_parse_shard(b, cuts[k], "cut.ewt", err, (int)sizeof err);
        if (s) accepted++;
        if (!strstr(err, "cut.ewt") || !strstr(err, "byte offset")) unnamed++;
        ew_traj_close(s);
    }
    CHECK(accepted == 0, "%d truncated shards accepted", accepted);
    CHECK(unnamed == 0, "%d messages without the file name and offset (last: %s)", unnamed, err);
    /* single flipped bytes all over the file: never accepted (header checks or checksums) */
    uint8_t *c = malloc(n);
    accepted = 0;
    for (size_t pos = 0; pos < n; pos += 1 + n / 997) {
        memcpy(c, b, n);
        c[pos] ^= 0x5A;
        ew_traj_set *s = ew_traj_parse_shard(c, n, "flip.ewt", err, (int)sizeof err);
        if (s) accepted++;
        ew_traj_close(s);
    }
    CHECK(accepted == 0, "%d corrupted shards accepted", accepted);
    /* trailing garbage */
    uint8_t *l = malloc(n + 4);
    memcpy(l, b, n);
    memset(l + n, 0, 4);
    ew_traj_set *s = ew_traj_parse_shard(l, n + 4, "long.ewt", err, (int)sizeof err);
    CHECK(s == NULL && strstr(err, "long.ewt"), "trailing bytes accepted (%s)", err);
    ew_traj_close(s);
    free(l);
    free(c);
    free(b);
    /* a missing folder, a bad manifest */
    s = ew_traj_open("/nonexistent/egoworld-data", err, (int)sizeof err);
    CHECK(s == NULL && strstr(err, "manifest.json"), "missing folder: %s", err);
    char d2[300], p2[2048];
    snprintf(d2, sizeof d2, "%s-bad", dir);
    snprintf(p2, sizeof p2, "mkdir -p %s && cp %s/traj-0000.ewt %s/ && sed 's/\"version\": 1/\"version\": 7/' %s/manifest.json > %s/manifest.json",
             d2, dir, d2, dir, d2);
    CHECK(system(p2) == 0, "shell");
    s = ew_traj_open(d2, err, (int)sizeof err);
    CHECK(s == NULL && strstr(err, "version"), "bad version: %s", err);
    ew_traj_close(s);
    snprintf(p2, sizeof p2, "rm -rf %s", d2);
    CHECK(system(p2) == 0, "shell");
    /* writing over an existing dataset is refused */
    ew_traj_writer_cfg wc;
    ew_traj_writer_cfg_default(&wc);
    wc.dir = dir;
    ew_traj_writer *w = ew_traj_writer_open(&wc, err, (int)sizeof err);
    CHECK(w == NULL && strstr(err, "already"), "overwrite: %s", err);
    ew_traj_writer_close(w, err, (int)sizeof err);
}

/* The driver: deterministic, varied, rarely crashes, changes lanes. */
static void test_driver(void) {
    char err[256];
    int collisions = 0, offroad = 0, changes = 0, episodes = 0;
    double sa = 0, saa = 0, sb = 0, sbb = 0;
    long n = 0;
    for (int e = 0; e < 10; e++) {
        ew_world_config wc;
        ew_scenario_builtin(e % 2 ? "free-2lane" : "dense-3lane", &wc, err, (int)sizeof err);
        float xs[2];
        for (int rep = 0; rep < 2; rep++) {
            ew_world *w = ew_world_create(&wc, err, (int)sizeof err);
            ew_world_reset(w, (uint64_t)e);
            ew_controller c;
            ew_driver_controller(NULL, 5 + (uint64_t)e, &c, err, (int)sizeof err);
            c.reset(c.ctx, w);
            int t;
            for (t = 0; t < 250; t++) {
                ew_action u;
                c.act(c.ctx, w, &u, err, (int)sizeof err);
                if (rep == 0) {
                    sa += u.a, saa += (double)u.a * u.a, sb += u.b, sbb += (double)u.b * u.b;
                    n++;
                }
                ew_world_step(w, &u);
                if (ew_world_ego_collision(w, 1.0f)) {
                    collisions += rep == 0;
                    break;
                }
                if (ew_world_ego_offroad(w)) {
                    offroad += rep == 0;
                    break;
                }
            }
            xs[rep] = ew_world_ego(w)->x;
            if (rep == 0) {
                changes += ew_driver_lane_changes(&c);
                episodes++;
            }
            ew_controller_destroy(&c);
            ew_world_destroy(w);
        }
        CHECK(xs[0] == xs[1], "episode %d not deterministic", e);
    }
    double astd = sqrt(saa / n - (sa / n) * (sa / n)), bstd = sqrt(sbb / n - (sb / n) * (sb / n));
    printf("driver: %d episodes, %d collisions, %d off-road, %d lane changes, std a %.3f, std b %.5f\n", episodes,
           collisions, offroad, changes, astd, bstd);
    CHECK(collisions == 0 && offroad == 0, "%d collisions, %d off-road", collisions, offroad);
    CHECK(changes >= 2, "only %d lane changes", changes);
    CHECK(astd > 0.3, "acceleration std %g", astd);
    CHECK(bstd > 1e-4, "curvature std %g", bstd);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/egoworld_test_traj_%d", (int)getpid());
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) return 1;
    if (write_set() == 0) {
        char err[512];
        ew_traj_set *s = ew_traj_open(dir, err, (int)sizeof err);
        CHECK(s != NULL, "%s", err);
        if (s) {
            test_round_trip_and_render(s);
            test_splits_and_stats(s);
            ew_traj_close(s);
        }
        test_corrupt();
    }
    test_driver();
    for (int e = 0; e < EPS; e++) free(live[e].img);
    if (system(cmd) != 0) return 1;
    return check_done();
}
