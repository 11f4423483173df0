/* cmd_track_world.c - `egoworld eval-tracker --imagined`: the unsupervised tracker
 * (models/track.h) as an independent judge of the world model (DESIGN.md section 7).
 *
 * On the held-out (test) samples of a trajectory dataset the world model unrolls 30 steps
 * from 1 s of true frames with the true actions (first latent sample, as eval-world); at each
 * horizon the imagined frame and the real frame of the same step are turned into the
 * tracker's input: the ego-centred 3-channel raster (heading up, 0.617 m/px) is resampled
 * bilinearly to a forward-to-the-right, left-up grey frame at 0.5 m/px (the tracker's
 * fixed-camera scale and orientation; grey = max(64/255 off-road, 128/255 markings,
 * vehicles) as sim/video.h renders, or the vehicle channel alone with --layers vehicles).
 * The tracker's detections (peaks + local soft-argmax) are taken to world coordinates
 * through the frame's own ego pose (the model's predicted pose for imagined frames, the true
 * one for real frames) and matched (greedy, closest first, within --gate m) to the
 * simulator's true vehicle centres of that step. Scored vehicles: the whole box inside the
 * view; detections matched to vehicles partly outside the view are ignored. The same is done
 * with the connected-components centroids of the vehicle channel (>= 0.5) for reference, and
 * the tracker on the last observed frame taken as the frame of the step (copy-last-frame, as
 * eval-world: every vehicle keeps its place relative to the ego; detections through the true
 * ego pose of the step).
 * No truth is given to the tracker or the world model.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/cli.h"
#include "models/checkpoint.h"
#include "models/fm.h"
#include "models/fm_data.h"
#include "models/fm_eval.h"
#include "models/track.h"

int cmd_eval_tracker_imagined(int argc, char **argv);

enum { NH = 4, NSRC = 5, MAXD = 256 }; /* sources: tracker on imagined, real, copy-last frames; blobs imagined, real */
static const double horizons[NH] = {0.5, 1.0, 2.0, 3.0};
static const char *hkey[NH] = {"0_5s", "1s", "2s", "3s"};
static const char *skey[NSRC] = {"", "real_", "copy_", "blob_", "blob_real_"};
#define TPX 0.5f /* tracker frame scale (m/px) */

static void help(void) {
    printf("usage: egoworld eval-tracker --imagined --world FILE --data DIR[,DIR...] --model FILE [options]\n\n"
           "Runs the tracker on the world model's imagined frames and on the real frames of the\n"
           "same test samples and reports the vehicle position error against the simulator's truth\n"
           "per horizon (0.5, 1, 2, 3 s): an independent measure of the world model. The world\n"
           "model unrolls from 1 s of true frames with the true actions (first latent sample); each\n"
           "ego-centred raster is resampled to the tracker's 0.5 m/px grey frame (forward to the\n"
           "right); detections go to world coordinates through the frame's own ego pose (predicted\n"
           "for imagined frames) and are matched to the true centres within --gate m. Scored\n"
           "vehicles: whole box in view. Also: connected components of the vehicle channel (>= 0.5)\n"
           "on the same frames, and the tracker on the last observed frame (copy-last baseline).\n"
           "Keys (H = 0_5s, 1s, 2s, 3s): error_H_m (mean), median_error_H_m, recall_H, precision_H\n"
           "(tracker, imagined frames); the same prefixed real_ (tracker, real frames), copy_\n"
           "(tracker, last observed frame), blob_ and blob_real_ (components); samples, episodes,\n"
           "scored_H.\n\n"
           "  --world FILE      world model checkpoint (train-world output)\n"
           "  --data DIR        trajectory dataset folder(s); test episodes are pooled\n"
           "  --model FILE      tracker checkpoint (train-tracker output)\n"
           "  --layers L        grey | vehicles: what the tracker sees (default grey)\n"
           "  --episodes N      the first N test episodes (default all)\n"
           "  --stride S        one sample every S steps (default 20)\n"
           "  --max-samples M   at most M samples, evenly spread (default 200)\n"
           "  --gate M          matching gate in metres (default 4)\n"
           "  --tta             average the tracker's maps over the frame's flips\n"
           "  --seed S          latent sample (default 1)\n"
           "  --threads N       threads (default 1)\n"
           "  --json            one JSON object on stdout\n");
}

typedef struct {
    double *e;
    long n, cap, scored, found, det, fp;
} acc_t;

static int push(acc_t *a, double v) {
    if (a->n == a->cap) {
        long nc = a->cap ? 2 * a->cap : 256;
        double *p = realloc(a->e, sizeof(double) * (size_t)nc);
        if (!p) return -1;
        a->e = p, a->cap = nc;
    }
    a->e[a->n++] = v;
    return 0;
}

static int cmp_d(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* The tracker frame (rows x cols at TPX, forward to the right, left up) of an ego raster img
 * (3 x H x W at mpp). */
static void to_tracker_frame(const float *img, int H, int W, float mpp, int vehicles_only, int rows, int cols,
                             float *out) {
    const size_t hw = (size_t)H * W;
    for (int r = 0; r < rows; r++) {
        float l = 0.5f * rows * TPX - (r + 0.5f) * TPX;
        for (int c = 0; c < cols; c++) {
            float f = (c + 0.5f) * TPX - 0.5f * cols * TPX;
            float u = 0.5f * W - l / mpp - 0.5f, v = 0.5f * H - f / mpp - 0.5f;
            int c0 = (int)floorf(u), r0 = (int)floorf(v);
            float au = u - c0, av = v - r0, ch[3] = {0, 0, 0};
            for (int i = 0; i < 2; i++)
                for (int j = 0; j < 2; j++) {
                    int rr = r0 + i, cc = c0 + j;
                    rr = rr < 0 ? 0 : (rr >= H ? H - 1 : rr);
                    cc = cc < 0 ? 0 : (cc >= W ? W - 1 : cc);
                    float wgt = (i ? av : 1 - av) * (j ? au : 1 - au);
                    for (int k = 0; k < 3; k++) ch[k] += wgt * img[k * hw + (size_t)rr * W + cc];
                }
            float g = ch[1];
            if (!vehicles_only) {
                float mk = 128.0f / 255.0f * ch[0], of = 64.0f / 255.0f * ch[2];
                g = fmaxf(g, fmaxf(mk, of));
            }
            out[(size_t)r * cols + c] = fminf(fmaxf(g, 0.0f), 1.0f);
        }
    }
}

/* Greedy matching of world points (dx, dy)[nd] to truths (tx, ty)[nt]; scored[j]: counts. */
static int score(const float *dx, const float *dy, int nd, const float *tx, const float *ty, const int *scored,
                 int nt, double gate, acc_t *a) {
    int ud[MAXD] = {0}, ut[MAXD] = {0};
    a->det += nd;
    for (;;) {
        int bi = -1, bj = -1;
        double best = gate;
        for (int i = 0; i < nd; i++) {
            if (ud[i]) continue;
            for (int j = 0; j < nt; j++) {
                if (ut[j]) continue;
                double e = hypot(dx[i] - tx[j], dy[i] - ty[j]);
                if (e < best) best = e, bi = i, bj = j;
            }
        }
        if (bi < 0) break;
        ud[bi] = ut[bj] = 1;
        if (scored[bj]) {
            a->found++;
            if (push(a, best)) return -1;
        } else
            a->det--; /* matched to a vehicle partly out of view: ignored */
    }
    for (int i = 0; i < nd; i++) a->fp += !ud[i];
    for (int j = 0; j < nt; j++) a->scored += scored[j];
    return 0;
}

static void to_world(const float *pose, float f, float l, float *x, float *y) {
    *x = pose[0] + f * pose[2] - l * pose[3];
    *y = pose[1] + f * pose[3] + l * pose[2];
}

int cmd_eval_tracker_imagined(int argc, char **argv) {
    const char *cmd = "eval-tracker", *world = NULL, *data_arg = NULL, *trk = NULL, *layers = "grey";
    long episodes = -1, stride = 20, max_samples = 200, threads = 1;
    double gate = 4.0;
    uint64_t seed = 1;
    int json = 0, tta = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            help();
            return 0;
        } else if (!strcmp(a, "--imagined")) continue;
        else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--tta")) tta = 1;
        else if (!strcmp(a, "--world")) {
            if (!(world = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--data")) {
            if (!(data_arg = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--model")) {
            if (!(trk = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--layers")) {
            if (!(layers = cli_value(cmd, argc, argv, &i))) return 2;
            if (strcmp(layers, "grey") && strcmp(layers, "vehicles")) {
                fprintf(stderr, "egoworld %s: --layers: expected grey or vehicles, not '%s'\n", cmd, layers);
                return 2;
            }
        } else if (!strcmp(a, "--seed")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || cli_u64(cmd, a, v, &seed)) return 2;
        } else if (!strcmp(a, "--episodes")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 1, 100000000, &episodes)) return 2;
        } else if (!strcmp(a, "--stride")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 1, 100000, &stride)) return 2;
        } else if (!strcmp(a, "--max-samples")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 1, 100000000, &max_samples)) return 2;
        } else if (!strcmp(a, "--threads")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 1, 1024, &threads)) return 2;
        } else if (!strcmp(a, "--gate")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || cli_float(cmd, a, v, 0.01, 1000, &gate)) return 2;
        } else
            return cli_unknown(cmd, a);
    }
    if (!world || !data_arg || !trk) {
        fprintf(stderr, "egoworld %s: %s is required with --imagined (see --imagined --help)\n", cmd,
                !world ? "--world FILE" : (!data_arg ? "--data DIR" : "--model FILE"));
        return 2;
    }
    const int vonly = !strcmp(layers, "vehicles");
    char err[1024] = "";
    int rc = 1, have_model = 0, have_data = 0, have_trk = 0;
    ew_fm m;
    ew_fm_data d;
    ew_tracker t;
    ew_backend *be = NULL;
    ew_graph *g = NULL;
    ew_fm_batch b = {0};
    float *images = NULL, *pstates = NULL, *tf = NULL;
    size_t *sel = NULL;
    int *labels = NULL;
    ew_traj_frame *fr = NULL;
    ew_track_det *dets = NULL;
    acc_t acc[NSRC][NH];
    memset(acc, 0, sizeof acc);
    char *dcopy = strdup(data_arg);
    const char *dirs[EW_FM_DATA_MAX_SETS];
    int ndirs = 0;
    if (!dcopy) goto oom;
    {
        char *save = NULL;
        for (char *tok = strtok_r(dcopy, ",", &save); tok && ndirs < EW_FM_DATA_MAX_SETS; tok = strtok_r(NULL, ",", &save))
            dirs[ndirs++] = tok;
    }
    if (ew_tracker_load(&t, trk, NULL, err, sizeof err)) goto fail;
    have_trk = 1;
    t.tta = tta;
    float mpp = 0.617f;
    {
        ew_checkpoint *ck;
        if (ew_checkpoint_open(world, &ck, err, sizeof err)) goto fail;
        int lrc = ew_fm_load_ckpt(&m, ck, err, sizeof err);
        const char *mp = ew_checkpoint_meta(ck, EW_FM_META_MPP);
        if (mp) mpp = strtof(mp, NULL);
        ew_checkpoint_close(ck);
        if (lrc) goto fail;
        have_model = 1;
    }
    const ew_fm_config *c = &m.cfg;
    int hsteps[NH], T = 0;
    for (int h = 0; h < NH; h++) {
        hsteps[h] = (int)lround(horizons[h] / c->dt);
        if (hsteps[h] < 1) hsteps[h] = 1;
        if (hsteps[h] > T) T = hsteps[h];
    }
    if (ew_fm_data_open(&d, dirs, ndirs, c->n_cond, T, (int)stride, err, sizeof err)) goto fail;
    have_data = 1;
    if (fabsf(ew_fm_data_dt(&d) - c->dt) > 1e-6f) {
        snprintf(err, sizeof err, "%s: dt %g differs from the model's %g", data_arg, (double)ew_fm_data_dt(&d),
                 (double)c->dt);
        goto fail;
    }
    size_t ntest = d.total[EW_SPLIT_TEST], nsel = 0;
    sel = malloc(sizeof(size_t) * (ntest ? ntest : 1));
    if (!sel) goto oom;
    long n_ep = 0;
    {
        int last_set = -1, last_ep = -1;
        for (size_t i = 0; i < ntest; i++) {
            int set;
            ew_traj_sample s;
            ew_fm_data_sample(&d, EW_SPLIT_TEST, i, &set, &s);
            if (set != last_set || s.episode != last_ep) {
                if (episodes > 0 && n_ep == episodes) break;
                n_ep++;
                last_set = set;
                last_ep = s.episode;
            }
            sel[nsel++] = i;
        }
    }
    if (nsel == 0) {
        snprintf(err, sizeof err, "%s: no test samples of %d + %d steps (stride %ld)", data_arg, c->n_cond, T, stride);
        goto fail;
    }
    if (nsel > (size_t)max_samples) {
        for (size_t i = 0; i < (size_t)max_samples; i++)
            sel[i] = sel[(size_t)((double)i * (double)nsel / (double)max_samples)];
        nsel = (size_t)max_samples;
    }
    const int C = c->channels, H = c->height, W = c->width;
    if (C < 3) {
        snprintf(err, sizeof err, "%s: the world model has %d channels (want 3)", world, C);
        goto fail;
    }
    const size_t img = (size_t)C * H * W, plane = (size_t)H * W;
    const int trows = (int)lroundf(W * mpp / TPX), tcols = (int)lroundf(H * mpp / TPX);
    const float half_f = 0.5f * H * mpp, half_l = 0.5f * W * mpp;
    const int Bc = 8;
    ew_raster_cfg rcfg = {H, W, mpp};
    be = ew_backend_cpu_create((int)threads);
    g = be ? ew_graph_create(be, 0) : NULL;
    if (!g) goto oom;
    if (ew_fm_batch_alloc(&b, Bc, c->n_cond, T, C, H, W)) goto oom;
    images = malloc(sizeof(float) * (size_t)Bc * T * img);
    pstates = malloc(sizeof(float) * (size_t)Bc * T * 5);
    tf = malloc(sizeof(float) * (size_t)trows * tcols);
    labels = malloc(sizeof(int) * plane);
    fr = malloc(sizeof *fr);
    dets = malloc(sizeof *dets * MAXD);
    if (!images || !pstates || !tf || !labels || !fr || !dets) goto oom;
    cli_progress prog;
    if (!json) cli_progress_begin(&prog, "eval-tracker --imagined", (long)nsel);
    double t0 = cli_now();
    for (size_t i0 = 0; i0 < nsel; i0 += (size_t)Bc) {
        int n = (int)(nsel - i0 < (size_t)Bc ? nsel - i0 : (size_t)Bc);
        if (ew_fm_data_fill(&d, EW_SPLIT_TEST, sel + i0, n, &rcfg, (int)threads, &b, err, sizeof err)) goto fail;
        if (ew_fm_predict(g, &m, n, b.frames, b.states, T, b.actions, 1, seed + i0, images, pstates, err,
                          sizeof err))
            goto fail;
        for (int r = 0; r < n; r++) {
            int set;
            ew_traj_sample s;
            ew_fm_data_sample(&d, EW_SPLIT_TEST, sel[i0 + r], &set, &s);
            for (int h = 0; h < NH; h++) {
                int hs = hsteps[h];
                if (ew_traj_frame_get(d.set[set], s.episode, s.t0 + hs, fr, err, (int)sizeof err)) goto fail;
                /* the truth of that step: centres, whole box in view of the true ego frame */
                float tx[MAXD], ty[MAXD];
                int scd[MAXD], nt = 0;
                const ew_kin_state *eg = &fr->ego;
                for (int j = 0; j < fr->n && nt < MAXD; j++) {
                    float ex = fr->x[j] - eg->x, ey = fr->y[j] - eg->y;
                    float f = ex * eg->dx + ey * eg->dy, l = -ex * eg->dy + ey * eg->dx;
                    if (fabsf(f) > half_f + 10.0f || fabsf(l) > half_l + 5.0f) continue;
                    tx[nt] = fr->x[j], ty[nt] = fr->y[j];
                    scd[nt] = fabsf(f) + 0.5f * fr->len[j] <= half_f && fabsf(l) + 0.5f * fr->wid[j] <= half_l;
                    nt++;
                }
                const float *last = b.frames + ((size_t)r * c->n_cond + (size_t)(c->n_cond - 1)) * img;
                for (int real = 0; real < 3; real++) { /* 0 imagined, 1 real, 2 copy-last */
                    const float *im = real == 1   ? b.target_frames + ((size_t)r * T + (size_t)(hs - 1)) * img
                                      : real == 2 ? last
                                                  : images + ((size_t)r * T + (size_t)(hs - 1)) * img;
                    const float *pose = real >= 1 ? b.target_states + ((size_t)r * T + (size_t)(hs - 1)) * 5
                                                  : pstates + ((size_t)r * T + (size_t)(hs - 1)) * 5;
                    float dx[MAXD], dy[MAXD];
                    to_tracker_frame(im, H, W, mpp, vonly, trows, tcols, tf);
                    int nd = ew_tracker_detect(&t, g, tf, trows, tcols, dets, MAXD, err, sizeof err);
                    if (nd < 0) goto fail;
                    for (int k = 0; k < nd; k++)
                        to_world(pose, dets[k].u * TPX - 0.5f * tcols * TPX, 0.5f * trows * TPX - dets[k].v * TPX,
                                 &dx[k], &dy[k]);
                    if (score(dx, dy, nd, tx, ty, scd, nt, gate, &acc[real][h])) goto oom;
                    if (real == 2) continue;
                    ew_blob bl[MAXD];
                    int nb = ew_find_blobs(im + plane, H, W, 0.5f, 1, mpp, labels, bl, MAXD);
                    for (int k = 0; k < nb; k++) to_world(pose, bl[k].f, bl[k].l, &dx[k], &dy[k]);
                    if (score(dx, dy, nb, tx, ty, scd, nt, gate, &acc[3 + real][h])) goto oom;
                }
            }
        }
        if (!json) cli_progress_update(&prog, (long)(i0 + (size_t)n), NULL);
    }
    if (!json) cli_progress_end(&prog);
    double wall = cli_now() - t0;
    double mean[NSRC][NH], med[NSRC][NH], rec[NSRC][NH], prec[NSRC][NH];
    for (int s2 = 0; s2 < NSRC; s2++)
        for (int h = 0; h < NH; h++) {
            acc_t *a = &acc[s2][h];
            double sum = 0;
            for (long k = 0; k < a->n; k++) sum += a->e[k];
            mean[s2][h] = a->n ? sum / (double)a->n : NAN;
            if (a->n) qsort(a->e, (size_t)a->n, sizeof(double), cmp_d);
            med[s2][h] = a->n ? a->e[a->n / 2] : NAN;
            rec[s2][h] = a->scored ? (double)a->found / (double)a->scored : NAN;
            prec[s2][h] = a->det > 0 ? (double)a->found / (double)a->det : NAN;
        }
    if (json) {
        printf("{\"command\": \"eval-tracker --imagined\", \"world\": \"%s\", \"tracker\": \"%s\", \"data\": \"%s\", "
               "\"layers\": \"%s\", \"tta\": %d, \"episodes\": %ld, \"samples\": %zu, \"gate_m\": %g",
               world, trk, data_arg, layers, tta, n_ep, nsel, gate);
        for (int h = 0; h < NH; h++) printf(", \"scored_%s\": %ld", hkey[h], acc[0][h].scored);
        for (int s2 = 0; s2 < NSRC; s2++)
            for (int h = 0; h < NH; h++) {
                double v4[4] = {mean[s2][h], med[s2][h], rec[s2][h], prec[s2][h]};
                const char *fmt[4] = {"%serror_%s_m", "%smedian_error_%s_m", "%srecall_%s", "%sprecision_%s"};
                for (int q = 0; q < 4; q++) {
                    char key[64];
                    snprintf(key, sizeof key, fmt[q], skey[s2], hkey[h]);
                    if (isfinite(v4[q])) printf(", \"%s\": %.4f", key, v4[q]);
                    else printf(", \"%s\": null", key);
                }
            }
        printf(", \"wall_s\": %.1f}\n", wall);
    } else {
        printf("eval-tracker --imagined: %s judged by %s (%s) on %s: %ld test episodes, %zu samples\n", world, trk,
               layers, data_arg, n_ep, nsel);
        printf("%-26s %18s %18s %18s %18s\n", "mean error m (recall/prec)", "0.5 s", "1 s", "2 s", "3 s");
        const char *sname[NSRC] = {"tracker, imagined", "tracker, real", "tracker, copy-last", "components, imagined",
                                   "components, real"};
        for (int s2 = 0; s2 < NSRC; s2++) {
            printf("%-26s", sname[s2]);
            for (int h = 0; h < NH; h++) printf("  %5.2f (%3.0f/%3.0f%%)", mean[s2][h], 100 * rec[s2][h], 100 * prec[s2][h]);
            printf("\n");
        }
    }
    rc = 0;
    goto done;
oom:
    snprintf(err, sizeof err, "out of memory");
fail:
    fprintf(stderr, "egoworld %s: %s\n", cmd, err);
    rc = 1;
done:
    for (int s2 = 0; s2 < NSRC; s2++)
        for (int h = 0; h < NH; h++) free(acc[s2][h].e);
    if (g) ew_graph_destroy(g);
    if (be) ew_backend_destroy(be);
    if (have_model) ew_fm_free(&m);
    if (have_data) ew_fm_data_close(&d);
    if (have_trk) ew_tracker_free(&t);
    ew_fm_batch_free(&b);
    free(images);
    free(pstates);
    free(tf);
    free(sel);
    free(labels);
    free(fr);
    free(dets);
    free(dcopy);
    return rc;
}
