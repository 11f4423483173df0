#define _POSIX_C_SOURCE 200809L
/* test_ngsim.c - NGSIM loader on the real sample (units, counts, speeds, lanes), the CSV
 * export with a header in another column order, malformed rows with line numbers, and the
 * round trip simulate -> export -> load -> replay within 1 cm (background vehicles and an
 * ego that follows its log during the warm-up). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sim/episode.h"
#include "sim/ngsim.h"
#include "sim/world.h"
#include "tests/check.h"

#define SAMPLE "../shared/data/ngsim/i80-0515-0530-vehicle3.txt"

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    if (b) b[n] = 0;
    fclose(f);
    *len = (size_t)n;
    return b;
}

static void test_sample(void) {
    char err[512];
    ew_ngsim_opts o;
    ew_ngsim_opts_default(&o);
    ew_ngsim *g = ew_ngsim_load(SAMPLE, &o, err, sizeof err);
    CHECK(g != NULL, "load: %s", err);
    if (!g) return;
    CHECK(g->n_rows == 100, "rows %d", g->n_rows);
    CHECK(g->n_tracks == 1, "tracks %d", g->n_tracks);
    CHECK(g->frame_min == 613 && g->frame_max == 712, "frames %d..%d", g->frame_min, g->frame_max);
    CHECK(g->opts.n_main == 3, "lanes from the data: %d", g->opts.n_main);
    const ew_ngsim_track *tr = &g->tracks[0];
    CHECK(tr->vid == 3 && tr->n == 100, "vid %u n %d", (unsigned)tr->vid, tr->n);
    CHECK_NEAR(tr->length, 12.8 * 0.3048, 1e-5);
    CHECK_NEAR(tr->width, 6.8 * 0.3048, 1e-5);
    CHECK(tr->type == EW_VT_CAR, "class 2 is a car");
    float vmin = 1e9f, vmax = -1e9f;
    double vsum = 0.0, vfsum = 0.0;
    int frames_ok = 1, heading_ok = 1, lane_ok = 1;
    for (int k = 0; k < tr->n; k++) {
        const ew_ngsim_sample *s = &tr->s[k];
        if (s->v_file < vmin) vmin = s->v_file;
        if (s->v_file > vmax) vmax = s->v_file;
        vsum += s->v;
        vfsum += s->v_file;
        if (s->frame != 613 + k) frames_ok = 0;
        if (!(s->hx > 0.95f && fabsf(hypotf(s->hx, s->hy) - 1.0f) < 1e-4f)) heading_ok = 0;
        if (s->lane_id != 3 || s->lane != 0) lane_ok = 0;
    }
    CHECK(frames_ok, "frames consecutive");
    CHECK(heading_ok, "headings forward and unit");
    CHECK(lane_ok, "Lane_ID 3 of 3 is our lane 0 (rightmost)");
    CHECK_NEAR(vmin, 3.87 * 0.3048, 1e-4); /* README: 3.9-10.8 ft/s, rounded */
    CHECK_NEAR(vmax, 10.82 * 0.3048, 1e-4);
    /* smoothed speeds agree on average with the logged ones */
    CHECK_NEAR(vsum / tr->n, vfsum / tr->n, 0.25);
    /* first sample: front at Local_Y = 63.998 ft, Local_X = 28.369 ft from the left edge of 36 ft */
    const ew_ngsim_sample *s0 = &tr->s[0];
    CHECK_NEAR(s0->x_raw, 63.998 * 0.3048, 1e-4);
    CHECK_NEAR(s0->y_raw, (36.0 - 28.369) * 0.3048, 1e-4);
    CHECK_NEAR(s0->x, s0->x_raw - 0.5 * tr->length, 1e-4);
    CHECK(s0->y > 0.0f && s0->y < 12.0 * 0.3048, "y %g inside lane 0", (double)s0->y);
    /* the last logged position: total distance matches Local_Y difference */
    const ew_ngsim_sample *sl = &tr->s[tr->n - 1];
    CHECK_NEAR(sl->x_raw - s0->x_raw, (tr->s[99].x_raw - tr->s[0].x_raw), 1e-6);
    /* interpolation between frames */
    ew_ngsim_sample m;
    CHECK(ew_ngsim_state_at(tr, 0.1f, 61.35, &m) == 1, "covers frame 613.5");
    CHECK_NEAR(m.x, 0.5 * (tr->s[0].x + tr->s[1].x), 1e-4);
    CHECK(ew_ngsim_state_at(tr, 0.1f, 61.0, &m) == 0, "not before its first frame");
    CHECK(ew_ngsim_state_at(tr, 0.1f, 71.3, &m) == 0, "not after its last frame");
    /* a world for this log, with the vehicle as ego */
    ew_world_config wc;
    CHECK(ew_ngsim_world_config(g, 3, &wc, err, sizeof err) == 0, "world config: %s", err);
    CHECK(wc.road.n_main == 3 && wc.ego_enabled && wc.ego_lane == 0, "road %d lanes, ego lane %d", wc.road.n_main,
          wc.ego_lane);
    CHECK(ew_ngsim_world_config(g, 4, &wc, err, sizeof err) != 0 && strstr(err, "4"), "unknown ego: %s", err);

    /* without smoothing the centre follows the raw positions exactly */
    o.smooth_window = 0.0f;
    ew_ngsim *raw = ew_ngsim_load(SAMPLE, &o, err, sizeof err);
    CHECK(raw != NULL, "raw load: %s", err);
    if (raw) {
        double maxdev = 0.0, rough_raw = 0.0, rough_s = 0.0;
        for (int k = 0; k < tr->n; k++) {
            double d = fabs(raw->tracks[0].s[k].x_raw - (raw->tracks[0].s[k].x + 0.5 * tr->length)) + fabs(raw->tracks[0].s[k].y_raw - raw->tracks[0].s[k].y);
            if (d > maxdev) maxdev = d;
            if (k > 0 && k + 1 < tr->n) {
                /* second differences: smoothing reduces them */
                rough_raw += fabs(raw->tracks[0].s[k + 1].x - 2 * raw->tracks[0].s[k].x + raw->tracks[0].s[k - 1].x);
                rough_s += fabs(tr->s[k + 1].x - 2 * tr->s[k].x + tr->s[k - 1].x);
            }
        }
        CHECK(maxdev < 1e-4, "raw centre + half length = front (%g)", maxdev);
        CHECK(rough_s < 0.75 * rough_raw, "smoothing reduces roughness %g -> %g", rough_raw, rough_s);
        ew_ngsim_free(raw);
    }

    /* the same rows as a CSV export with a header, another column order, an extra column and CRLF */
    size_t len;
    char *text = slurp(SAMPLE, &len);
    CHECK(text != NULL, "read sample");
    if (text) {
        size_t cap = len * 2 + 4096, n = 0;
        char *csv = malloc(cap);
        n += (size_t)snprintf(csv + n, cap - n, "Location,Lane_ID,v_Acc,v_Vel,v_Class,v_Width,v_length,Local_Y,Local_X,"
                                                "Frame_ID,Vehicle_ID,Space_Headway\r\n");
        char *save = NULL;
        for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
            double c[18];
            if (sscanf(line, "%lf %lf %lf %lf %lf %lf %lf %lf %lf %lf %lf %lf %lf %lf %lf %lf %lf %lf", &c[0], &c[1],
                       &c[2], &c[3], &c[4], &c[5], &c[6], &c[7], &c[8], &c[9], &c[10], &c[11], &c[12], &c[13], &c[14],
                       &c[15], &c[16], &c[17]) != 18)
                continue;
            n += (size_t)snprintf(csv + n, cap - n, "i-80,%g,%.2f,%.2f,%g,%.1f,%.1f,%.3f,%.3f,%g,%g,%.2f\r\n", c[13],
                                  c[12], c[11], c[10], c[9], c[8], c[5], c[4], c[1], c[0], c[16]);
        }
        ew_ngsim_opts_default(&o);
        ew_ngsim *g2 = ew_ngsim_parse(csv, n, "export.csv", &o, err, sizeof err);
        CHECK(g2 != NULL, "csv: %s", err);
        if (g2) {
            CHECK(g2->n_rows == 100 && g2->n_tracks == 1, "csv rows %d", g2->n_rows);
            double md = 0.0;
            for (int k = 0; k < 100 && g2->n_tracks == 1; k++) {
                md = fmax(md, fabs(g2->tracks[0].s[k].x - tr->s[k].x));
                md = fmax(md, fabs(g2->tracks[0].s[k].y - tr->s[k].y));
                md = fmax(md, fabs(g2->tracks[0].s[k].v_file - tr->s[k].v_file));
            }
            CHECK(md < 1e-5, "csv and text agree (%g)", md);
            ew_ngsim_free(g2);
        }
        free(csv);
        free(text);
    }
    ew_ngsim_free(g);
}

/* Parses text and expects a failure whose message contains every one of the needles. */
static void expect_fail(const char *text, const char *n1, const char *n2) {
    char err[512] = "";
    ew_ngsim *g = ew_ngsim_parse(text, strlen(text), "bad.txt", NULL, err, sizeof err);
    CHECK(g == NULL, "should fail: %s", text);
    CHECK(strstr(err, n1) != NULL, "message '%s' lacks '%s'", err, n1);
    if (n2) CHECK(strstr(err, n2) != NULL, "message '%s' lacks '%s'", err, n2);
    ew_ngsim_free(g);
}

#define ROW(vid, fr, ly, len, vel) vid " " fr " 10 1113437626200 28.369 " ly " 6042851.5 2133134.7 " len " 6.8 2 " vel " 0.00 3 0 0 21.17 2.39\n"

static void test_malformed(void) {
    expect_fail(ROW("3", "613", "63.9", "12.8", "8.86") "3 614 10 1 2 3\n", "bad.txt:2:", "expected 18 columns, found 6");
    expect_fail(ROW("3", "613", "63.9", "12.8", "8.86") ROW("3", "614", "6x4.1", "12.8", "8.86"), "bad.txt:2:",
                "Local_Y");
    expect_fail("\n\n" ROW("3", "613", "63.9", "-12.8", "8.86"), "bad.txt:3:", "length and width must be positive");
    expect_fail(ROW("3", "613", "63.9", "12.8", "8.86") ROW("3", "615", "64.9", "12.8", "8.86")
                    ROW("3", "614", "65.9", "12.8", "8.86"),
                "bad.txt:3:", "frame 614 comes after frame 615");
    expect_fail(ROW("3", "613", "63.9", "12.8", "8.86") ROW("4", "613", "63.9", "12.8", "8.86")
                    ROW("3", "613", "65.9", "12.8", "8.86"),
                "bad.txt:3:", "vehicle 3");
    expect_fail(ROW("3.5", "613", "63.9", "12.8", "8.86"), "bad.txt:1:", "Vehicle_ID");
    expect_fail(ROW("3", "613", "63.9", "12.8", "-1"), "bad.txt:1:", "v_Vel");
    expect_fail(ROW("3", "613", "nan", "12.8", "8.86"), "bad.txt:1:", "not a number");
    expect_fail("Vehicle_ID,Frame_ID,Local_X,Local_Y,v_Length,v_Width,v_Class,v_Vel,v_Acc\n1,2,3,4,5,6,2,1,0\n",
                "bad.txt:1:", "Lane_ID");
    expect_fail("Vehicle_ID,Frame_ID,Local_X,Local_Y,v_Length,v_Width,v_Class,v_Vel,v_Acc,Lane_ID\n1,2,3,4,5,6,2,1,0,1\n"
                "1,3,3,4,5,6,2,1,0\n",
                "bad.txt:3:", "expected 10 columns, found 9");
    expect_fail("Vehicle_ID,Frame_ID,Local_X,Local_Y,v_Length,v_Width,v_Class,v_Vel,v_Acc,Lane_ID\n1,2,3,,5,6,2,1,0,1\n",
                "bad.txt:2:", "Local_Y");
    expect_fail("   \n\n", "no data rows", NULL);
    char err[256];
    CHECK(ew_ngsim_load("/nonexistent/ngsim.txt", NULL, err, sizeof err) == NULL && strstr(err, "/nonexistent/ngsim.txt"),
          "missing file: %s", err);
    /* CRLF and blank lines are fine */
    const char *ok = "\r\n" ROW("3", "613", "63.9", "12.8", "8.86");
    ew_ngsim *g = ew_ngsim_parse(ok, strlen(ok), "ok.txt", NULL, err, sizeof err);
    CHECK(g && g->n_rows == 1, "blank lines: %s", g ? "" : err);
    ew_ngsim_free(g);
}

/* ---- round trip ---------------------------------------------------------------------- */

#define RT_STEPS 300
typedef struct { uint32_t id; float x, y; } pos_t;
typedef struct { int n; pos_t *p; } frame_t;

static const pos_t *truth_of(const frame_t *f, uint32_t id) {
    for (int i = 0; i < f->n; i++)
        if (f->p[i].id == id) return &f->p[i];
    return NULL;
}

static void snapshot(frame_t *f, const ew_world *w, uint32_t ego_id) {
    const ew_vehicles *V = ew_world_vehicles(w);
    f->n = V->n + 1;
    f->p = malloc(sizeof *f->p * (size_t)f->n);
    for (int i = 0; i < V->n; i++) f->p[i] = (pos_t){V->id[i], V->x[i], V->y[i]};
    const ew_kin_state *e = ew_world_ego(w);
    f->p[V->n] = (pos_t){ego_id, e->x, e->y};
}

static void test_round_trip(void) {
    char err[512];
    ew_world_config wc;
    ew_world_config_default(&wc);
    CHECK(ew_road_init_highway(&wc.road, 3, 3.7f, 600.0f, 29.0f, err, sizeof err) == 0, "road: %s", err);
    for (int l = 0; l < 3; l++) {
        wc.density_per_km[l] = 30.0f;
        wc.flow_per_h[l] = 1500.0f;
    }
    wc.ego_lane = 1;
    wc.ego_x = 100.0f;
    wc.ego_speed = 15.0f;
    wc.seed = 11;
    ew_world *w = ew_world_create(&wc, err, sizeof err);
    CHECK(w != NULL, "world: %s", err);
    if (!w) return;
    ew_ngsim_rec *rec = ew_ngsim_rec_create(ew_world_road(w), 1, err, sizeof err);
    CHECK(rec != NULL, "rec: %s", err);
    frame_t *truth = calloc(RT_STEPS + 1, sizeof *truth);
    const uint32_t EGO_TMP = 0xffffffffu;
    int lane_changes_seen = 0;
    for (int k = 0; k <= RT_STEPS; k++) {
        if (k > 0) {
            ew_action u;
            ew_world_ego_idm_action(w, &u);
            ew_world_step(w, &u);
        }
        CHECK(ew_ngsim_rec_frame(rec, w, err, sizeof err) == 0, "frame: %s", err);
        snapshot(&truth[k], w, EGO_TMP);
        const ew_vehicles *V = ew_world_vehicles(w);
        for (int i = 0; i < V->n; i++) lane_changes_seen += (V->flags[i] & EW_VF_CHANGING) != 0;
    }
    CHECK(lane_changes_seen > 0, "the run includes lane changes");
    uint32_t ego_vid = ew_ngsim_rec_ego_vid(rec);
    for (int k = 0; k <= RT_STEPS; k++) truth[k].p[truth[k].n - 1].id = ego_vid;
    char path[] = "/tmp/egoworld_ngsim_rt_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    FILE *out = fd >= 0 ? fdopen(fd, "w") : NULL;
    CHECK(out && ew_ngsim_rec_write(rec, out, err, sizeof err) == 0, "write: %s", err);
    if (out) fclose(out);
    ew_ngsim_opts o;
    ew_ngsim_export_opts(ew_world_road(w), &o);
    ew_ngsim *g = ew_ngsim_load(path, &o, err, sizeof err);
    CHECK(g != NULL, "reload: %s", err);
    unlink(path);
    if (!g) goto done;
    CHECK(g->n_rows == ew_ngsim_rec_rows(rec), "rows %d vs %lld", g->n_rows, (long long)ew_ngsim_rec_rows(rec));
    CHECK(g->frame_min == 1 && g->frame_max == RT_STEPS + 1, "frames %d..%d", g->frame_min, g->frame_max);

    /* loaded positions equal the simulated ones */
    double max_load = 0.0;
    long compared = 0;
    for (int t = 0; t < g->n_tracks; t++) {
        const ew_ngsim_track *tr = &g->tracks[t];
        for (int k = 0; k < tr->n; k++) {
            const pos_t *p = truth_of(&truth[tr->s[k].frame - 1], tr->vid);
            if (!p) continue;
            max_load = fmax(max_load, hypot(tr->s[k].x - p->x, tr->s[k].y - p->y));
            compared++;
        }
    }
    CHECK(compared == g->n_rows, "every row has a truth (%ld of %d)", compared, g->n_rows);
    CHECK(max_load < 0.01, "export+load within 1 cm: max %.5f m", max_load);
    printf("round trip: %d vehicles, %d rows, load error max %.2e m\n", g->n_tracks, g->n_rows, max_load);

    /* replay of every vehicle (ego track included as a plain replayed vehicle) */
    ew_world_config rc;
    CHECK(ew_ngsim_world_config(g, 0, &rc, err, sizeof err) == 0, "replay config: %s", err);
    CHECK(rc.road.n_main == 3 && fabsf(rc.road.lanes[0].width - 3.7f) < 1e-4f, "replay road matches");
    ew_world *rw = ew_world_create(&rc, err, sizeof err);
    CHECK(rw != NULL, "replay world: %s", err);
    ew_replay_opts ro = {0, NAN};
    ew_replay *rp = rw ? ew_replay_create(g, &ro, err, sizeof err) : NULL;
    CHECK(rp != NULL, "replay: %s", err);
    if (rw && rp) {
        CHECK(ew_replay_begin(rp, rw, err, sizeof err) == 0, "begin: %s", err);
        double max_rep = 0.0;
        long n_rep = 0;
        int count_ok = 1;
        for (int k = 0; k <= RT_STEPS; k++) {
            if (k > 0) {
                CHECK(ew_replay_sync(rp, rw, k * 0.1, err, sizeof err) == 0, "sync: %s", err);
                ew_world_step(rw, NULL);
            }
            const ew_vehicles *V = ew_world_vehicles(rw);
            if (V->n != truth[k].n) count_ok = 0;
            for (int t = 0; t < g->n_tracks; t++) {
                const pos_t *p = truth_of(&truth[k], g->tracks[t].vid);
                uint32_t id = ew_replay_world_id(rp, g->tracks[t].vid);
                if (!p) {
                    if (id) count_ok = 0;
                    continue;
                }
                int i = ew_world_find(rw, id);
                if (i < 0) {
                    count_ok = 0;
                    continue;
                }
                max_rep = fmax(max_rep, hypot(V->x[i] - p->x, V->y[i] - p->y));
                n_rep++;
            }
        }
        CHECK(count_ok, "the replay has exactly the simulated vehicles at every frame");
        CHECK(n_rep == g->n_rows, "compared %ld of %d", n_rep, g->n_rows);
        CHECK(max_rep < 0.01, "replay within 1 cm: max %.5f m", max_rep);
        printf("replay: max error %.2e m over %ld vehicle-frames\n", max_rep, n_rep);
    }
    ew_replay_destroy(rp);
    ew_world_destroy(rw);

    /* the simulated ego as the ego of a replay episode: it follows its log for the warm-up */
    CHECK(ew_ngsim_world_config(g, ego_vid, &rc, err, sizeof err) == 0, "ego config: %s", err);
    rw = ew_world_create(&rc, err, sizeof err);
    CHECK(rw != NULL, "ego world: %s", err);
    ro.ego_vid = ego_vid;
    rp = rw ? ew_replay_create(g, &ro, err, sizeof err) : NULL;
    if (rw && rp) {
        CHECK(ew_replay_begin(rp, rw, err, sizeof err) == 0, "begin: %s", err);
        CHECK(ew_replay_world_id(rp, ego_vid) == 0, "the ego track is not spawned");
        ew_episode_cfg ec;
        ew_episode_cfg_default(&ec);
        ec.n_cond = 40;
        ec.max_steps = 200;
        ec.goal_distance = 1e5f;
        ec.hook = ew_replay_hook;
        ec.hook_ctx = rp;
        ew_controller ctrl;
        ew_controller_builtin("idm", &ctrl, err, sizeof err);
        ew_episode ep;
        ew_episode_begin(&ep, &ec, rw);
        double max_ego = 0.0;
        while (ew_episode_step(&ep, rw, &ctrl)) {
            if (ep.m.steps <= ec.n_cond) {
                const pos_t *p = truth_of(&truth[ep.m.steps], ego_vid);
                const ew_kin_state *e = ew_world_ego(rw);
                max_ego = fmax(max_ego, hypot(e->x - p->x, e->y - p->y));
            }
        }
        CHECK(ep.m.steps > ec.n_cond, "the episode ran past the warm-up (%d steps, %s)", ep.m.steps, ep.m.label);
        CHECK(max_ego < 0.01, "ego follows its log in the warm-up: max %.5f m", max_ego);
        CHECK(ep.m.status != EW_EP_ERROR, "no error: %s", ep.m.error);
        ew_controller_destroy(&ctrl);
    }
    ew_replay_destroy(rp);
    ew_world_destroy(rw);
    ew_ngsim_free(g);
done:
    for (int k = 0; k <= RT_STEPS; k++) free(truth[k].p);
    free(truth);
    ew_ngsim_rec_destroy(rec);
    ew_world_destroy(w);
}

int main(void) {
    if (access(SAMPLE, R_OK) == 0) test_sample();
    else check_skip("NGSIM sample " SAMPLE " not present");
    test_malformed();
    test_round_trip();
    return check_done();
}
