/* cmd_imagine.c - `egoworld imagine`: a strip image of real versus imagined futures of the
 * world model for several latent samples. Rows: the truth, then sample 1..K; columns: the
 * last conditioning frame, then every --every steps up to --horizon seconds; each cell is the
 * colour composite of sim/png.h (off-road green, markings white, vehicles blue, ego red), cells
 * separated by a 1-pixel grid. The context comes from a test sample of a dataset (--data) or
 * from simulating a scenario with the IDM ego (--scenario, built-in name or FILE.lua). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "app/cli.h"
#include "lua/scenario.h"
#include "models/autodiff.h"
#include "models/checkpoint.h"
#include "models/fm.h"
#include "models/fm_data.h"
#include "sim/controller.h"
#include "sim/episode.h"
#include "sim/fsutil.h"
#include "sim/png.h"
#include "sim/raster.h"
#include "sim/scenario_builtin.h"
#include "sim/world.h"

static void help(void) {
    printf("usage: egoworld imagine --model FILE (--data DIR | --scenario NAME|FILE.lua) --out FILE.png|DIR [options]\n\n"
           "Writes strips of real versus imagined futures: rows = truth, latent sample 1..K;\n"
           "columns = the last input frame, then every --every steps up to --horizon s.\n\n"
           "  --model FILE       world model\n"
           "  --data DIR         take contexts from the dataset's test split\n"
           "  --scenario S       or simulate a built-in scenario / scenario file (IDM ego)\n"
           "  --out PATH         FILE.png (one strip) or a folder (--count strips, strip_NNN.png)\n"
           "  --count N          strips to write into a folder (default 4)\n"
           "  --samples K        latent samples (default 4; 1 for deterministic models)\n"
           "  --horizon S        seconds to imagine (default 3)\n"
           "  --every N          steps between columns (default 5)\n"
           "  --warmup N         scenario steps before the context (default 100)\n"
           "  --scale N          pixels per raster pixel (default 3)\n"
           "  --seed S           latent samples, choice of test samples, scenario seed (default 1)\n"
           "  --allow-read DIR   folder a scenario file may read\n"
           "  --threads N        threads (default 2)\n"
           "  --json             print a JSON summary\n");
}

/* Context from a scenario: IDM ego, warm-up then n_cond + T recorded steps. */
typedef struct {
    ew_controller idm;
    const ew_raster_cfg *rc;
    const ew_kin_limits *lim;
    int n, cap;
    float *frames; /* cap x 3 x H x W */
    float *states; /* cap x 5 */
    float *actions;
    uint8_t *scratch;
    int fail;
} rec_ctx;

static void rec_observe(void *ctx, const ew_world *w) {
    rec_ctx *r = ctx;
    if (r->n >= r->cap) return;
    char e[200];
    size_t plane = (size_t)r->rc->rows * r->rc->cols;
    if (ew_raster_world(r->rc, w, r->scratch, e, (int)sizeof e)) r->fail = 1;
    ew_raster_to_f32(r->scratch, (int)(3 * plane), r->frames + (size_t)r->n * 3 * plane);
    memcpy(r->states + (size_t)r->n * 5, ew_world_ego(w), sizeof(float) * 5);
}

static int rec_act(void *ctx, const ew_world *w, ew_action *out, char *err, int errlen) {
    rec_ctx *r = ctx;
    if (r->idm.act(r->idm.ctx, w, out, err, errlen)) return -1;
    *out = ew_kin_clip(r->lim, *out);
    if (r->n < r->cap) {
        r->actions[(size_t)r->n * 2] = out->a;
        r->actions[(size_t)r->n * 2 + 1] = out->b;
        r->n++;
    }
    return 0;
}

static void put_cell(uint8_t *rgb, int img_w, int x0, int y0, const float *f3, int H, int W, int scale, float ego_len,
                     float ego_wid, float mpp, uint8_t *rast, uint8_t *cell) {
    size_t plane = (size_t)H * W;
    for (size_t i = 0; i < 3 * plane; i++) {
        float v = f3[i] * 255.0f + 0.5f;
        rast[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
    }
    /* ego footprint, heading up, centred at (W/2, H/2) */
    for (int r = 0; r < H; r++)
        for (int c = 0; c < W; c++) {
            float u = (c + 0.5f) - W * 0.5f, v = (r + 0.5f) - H * 0.5f;
            int in = fabsf(u * mpp) <= ego_wid * 0.5f && fabsf(v * mpp) <= ego_len * 0.5f;
            rast[3 * plane + (size_t)r * W + c] = in ? 255 : 0;
        }
    ew_png_raster_rgb(rast, H, W, scale, cell);
    int cw = W * scale, chh = H * scale;
    for (int y = 0; y < chh; y++) memcpy(rgb + ((size_t)(y0 + y) * img_w + x0) * 3, cell + (size_t)y * cw * 3, (size_t)cw * 3);
}

int cmd_imagine(int argc, char **argv) {
    const char *cmd = "imagine";
    const char *model_path = NULL, *data_arg = NULL, *scenario = NULL, *out = NULL, *read_dir = NULL;
    long count = 4, K = 4, every = 5, warmup = 100, scale = 3, threads = 2;
    double horizon = 3.0;
    uint64_t seed = 1;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { help(); return 0; }
        else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--model")) { if (!(model_path = cli_value(cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--data")) { if (!(data_arg = cli_value(cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--scenario")) { if (!(scenario = cli_value(cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--out")) { if (!(out = cli_value(cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--allow-read")) { if (!(read_dir = cli_value(cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--count")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 1, 10000, &count)) return 2; }
        else if (!strcmp(a, "--samples")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 1, 64, &K)) return 2; }
        else if (!strcmp(a, "--every")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 1, 1000, &every)) return 2; }
        else if (!strcmp(a, "--warmup")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 0, 100000, &warmup)) return 2; }
        else if (!strcmp(a, "--scale")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 1, 16, &scale)) return 2; }
        else if (!strcmp(a, "--threads")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 1, 1024, &threads)) return 2; }
        else if (!strcmp(a, "--horizon")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_float(cmd, a, v, 0.01, 60, &horizon)) return 2; }
        else if (!strcmp(a, "--seed")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_u64(cmd, a, v, &seed)) return 2; }
        else return cli_unknown(cmd, a);
    }
    if (!model_path || !out || (!data_arg == !scenario)) {
        fprintf(stderr, "egoworld %s: %s (see --help)\n", cmd,
                !model_path ? "--model FILE is required"
                : !out      ? "--out FILE.png|DIR is required"
                            : "give exactly one of --data DIR and --scenario S");
        return 2;
    }
    char err[4096] = "";
    int rc = 1, have_model = 0, have_data = 0;
    ew_fm m;
    ew_fm_data d;
    ew_backend *be = NULL;
    ew_graph *g = NULL;
    ew_fm_batch b = {0};
    float *images = NULL;
    uint8_t *rgb = NULL, *rast = NULL, *cell = NULL;
    ew_scenario *sc = NULL;
    ew_world *w = NULL;
    rec_ctx rec = {0};
    float mpp = 0.617f;
    {
        ew_checkpoint *ck;
        if (ew_checkpoint_open(model_path, &ck, err, sizeof err)) goto fail;
        int lrc = ew_fm_load_ckpt(&m, ck, err, sizeof err);
        const char *mp = ew_checkpoint_meta(ck, EW_FM_META_MPP);
        if (mp) mpp = strtof(mp, NULL);
        ew_checkpoint_close(ck);
        if (lrc) goto fail;
        have_model = 1;
    }
    const ew_fm_config *c = &m.cfg;
    if (!c->stochastic) K = 1;
    const int C = c->channels, H = c->height, W = c->width, nc = c->n_cond;
    const size_t img = (size_t)C * H * W;
    int T = (int)lround(horizon / c->dt);
    if (T < 1) T = 1;
    int ncols = 1 + T / (int)every;
    size_t ol = strlen(out);
    int to_file = ol > 4 && !strcmp(out + ol - 4, ".png");
    if (to_file) count = 1;
    else if (ew_mkdir_p(out)) {
        snprintf(err, sizeof err, "%s: cannot create the folder", out);
        goto fail;
    }
    ew_raster_cfg rcfg = {H, W, mpp};
    be = ew_backend_cpu_create((int)threads);
    g = be ? ew_graph_create(be, 0) : NULL;
    if (!g || ew_fm_batch_alloc(&b, 1, nc, T, C, H, W)) goto oom;
    images = malloc(sizeof(float) * (size_t)K * T * img);
    int cw = W * (int)scale, chh = H * (int)scale;
    int iw = ncols * (cw + 1) + 1, ih = (int)(K + 1) * (chh + 1) + 1;
    rgb = malloc((size_t)iw * ih * 3);
    rast = malloc(4 * (size_t)H * W);
    cell = malloc((size_t)cw * chh * 3);
    if (!images || !rgb || !rast || !cell) goto oom;
    float ego_len = 4.8f, ego_wid = 1.8f;
    if (data_arg) {
        const char *dirs[1] = {data_arg};
        if (ew_fm_data_open(&d, dirs, 1, nc, T, 1, err, sizeof err)) goto fail;
        have_data = 1;
        if (d.total[EW_SPLIT_TEST] == 0) {
            snprintf(err, sizeof err, "%s: no test samples of %d + %d steps", data_arg, nc, T);
            goto fail;
        }
    } else {
        ew_world_config wc;
        size_t sl = strlen(scenario);
        if (sl > 4 && !strcmp(scenario + sl - 4, ".lua")) {
            ew_lua_opts lo;
            ew_lua_opts_default(&lo);
            lo.read_dir = read_dir;
            lo.has_seed = 1;
            lo.seed = seed;
            sc = ew_scenario_load(scenario, &lo, err, (int)sizeof err);
            if (!sc) {
                err[strcspn(err, "\n")] = 0;
                goto fail;
            }
            wc = *ew_scenario_world_config(sc);
        } else if (ew_scenario_builtin(scenario, &wc, err, (int)sizeof err)) {
            goto fail;
        }
        wc.seed = seed;
        w = ew_world_create(&wc, err, (int)sizeof err);
        if (!w) goto fail;
        ego_len = wc.ego_length;
        ego_wid = wc.ego_width;
    }
    for (long n = 0; n < count; n++) {
        if (data_arg) {
            size_t nt = d.total[EW_SPLIT_TEST];
            size_t i = ew_fm_data_order(nt, seed, (uint64_t)n);
            if (ew_fm_data_fill(&d, EW_SPLIT_TEST, &i, 1, &rcfg, (int)threads, &b, err, sizeof err)) goto fail;
            int set;
            ew_traj_sample s;
            ew_fm_data_sample(&d, EW_SPLIT_TEST, i, &set, &s);
            ew_traj_frame *f = malloc(sizeof *f);
            if (!f) goto oom;
            if (ew_traj_frame_get(d.set[set], s.episode, s.t0, f, err, (int)sizeof err)) {
                free(f);
                goto fail;
            }
            ego_len = f->ego_len;
            ego_wid = f->ego_wid;
            free(f);
        } else {
            /* simulate: warm-up, then nc + T recorded steps */
            ew_world_reset(w, seed + (uint64_t)n);
            if (sc && ew_scenario_begin(sc, w, err, (int)sizeof err)) goto fail;
            free(rec.frames);
            free(rec.states);
            free(rec.actions);
            free(rec.scratch);
            memset(&rec, 0, sizeof rec);
            int total = nc + T;
            rec.rc = &rcfg;
            rec.lim = &ew_world_config_of(w)->ego_limits;
            rec.cap = total;
            rec.frames = malloc(sizeof(float) * (size_t)total * img);
            rec.states = malloc(sizeof(float) * (size_t)total * 5);
            rec.actions = malloc(sizeof(float) * (size_t)total * 2);
            rec.scratch = malloc(4 * (size_t)H * W);
            if (!rec.frames || !rec.states || !rec.actions || !rec.scratch) goto oom;
            if (ew_controller_builtin("idm", &rec.idm, err, (int)sizeof err)) goto fail;
            ew_episode_cfg ec;
            if (sc) ew_scenario_episode_cfg(sc, &ec);
            else ew_episode_cfg_default(&ec);
            ec.max_steps = (int)warmup + total;
            ec.goal_distance = 1e9f;
            ec.n_cond = (int)warmup;
            ew_controller ctrl = {"imagine-idm", &rec, rec_act, NULL, NULL, NULL, 0, 0};
            ew_episode ep;
            ew_episode_begin(&ep, &ec, w);
            long steps = 0;
            while (ew_episode_step(&ep, w, &ctrl)) {
                steps++;
                if (steps >= warmup) ctrl.observe = rec_observe;
                if (rec.n >= total) break;
            }
            ew_controller_destroy(&rec.idm);
            if (rec.fail || rec.n < total) {
                snprintf(err, sizeof err, "%s: the episode ended after %ld steps (%s), before %ld + %d steps", scenario, steps,
                         ew_episode_status_name(ep.m.status), warmup, total);
                goto fail;
            }
            memcpy(b.frames, rec.frames, sizeof(float) * (size_t)nc * img);
            memcpy(b.states, rec.states, sizeof(float) * (size_t)nc * 5);
            memcpy(b.actions, rec.actions + (size_t)(nc - 1) * 2, sizeof(float) * (size_t)T * 2);
            memcpy(b.target_frames, rec.frames + (size_t)nc * img, sizeof(float) * (size_t)(T - 0) * img);
        }
        if (ew_fm_predict(g, &m, 1, b.frames, b.states, T, b.actions, (int)K, seed + (uint64_t)n, images, NULL, err, sizeof err))
            goto fail;
        memset(rgb, 96, (size_t)iw * ih * 3); /* the grid */
        const float *last = b.frames + (size_t)(nc - 1) * img;
        for (int row = 0; row <= K; row++)
            for (int col = 0; col < ncols; col++) {
                const float *f;
                if (col == 0) f = last;
                else if (row == 0) f = b.target_frames + (size_t)(col * every - 1) * img;
                else f = images + ((size_t)(row - 1) * T + (size_t)(col * every - 1)) * img;
                put_cell(rgb, iw, 1 + col * (cw + 1), 1 + row * (chh + 1), f, H, W, (int)scale, ego_len, ego_wid, mpp, rast,
                         cell);
            }
        char path[4096];
        if (to_file) snprintf(path, sizeof path, "%s", out);
        else snprintf(path, sizeof path, "%s/strip_%03ld.png", out, n);
        if (ew_png_write_rgb(path, rgb, iw, ih, err, (int)sizeof err)) goto fail;
        if (!json) printf("wrote %s (%d x %d: truth + %ld samples, %d columns every %.2f s)\n", path, iw, ih, K, ncols,
                          (double)every * c->dt);
    }
    if (json)
        printf("{\"command\": \"imagine\", \"out\": \"%s\", \"strips\": %ld, \"samples\": %ld, \"columns\": %d, "
               "\"every_s\": %.3f, \"horizon_s\": %.3f}\n",
               out, count, K, ncols, (double)every * c->dt, (double)T * c->dt);
    rc = 0;
    goto done;
oom:
    snprintf(err, sizeof err, "out of memory");
fail:
    fprintf(stderr, "egoworld %s: %s\n", cmd, err);
    rc = 1;
done:
    free(rec.frames);
    free(rec.states);
    free(rec.actions);
    free(rec.scratch);
    ew_world_destroy(w);
    ew_scenario_destroy(sc);
    if (g) ew_graph_destroy(g);
    if (be) ew_backend_destroy(be);
    if (have_model) ew_fm_free(&m);
    if (have_data) ew_fm_data_close(&d);
    ew_fm_batch_free(&b);
    free(images);
    free(rgb);
    free(rast);
    free(cell);
    return rc;
}
