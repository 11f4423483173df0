/* cmd_eval_world.c - `egoworld eval-world`: the world model against copy-last-frame,
 * shift-by-ego-motion and constant-velocity baselines on the held-out (test) episodes of a
 * trajectory dataset, per horizon 0.5, 1, 2, 3 s: image MSE and the position error of the
 * vehicles found in the predicted images (models/fm_eval.h). */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/cli.h"
#include "models/autodiff.h"
#include "models/checkpoint.h"
#include "models/fm.h"
#include "models/fm_data.h"
#include "models/fm_eval.h"

enum { NH = 4, NMETH = 5 }; /* methods: model (mean over samples), best of K, copy, shift, constvel */
static const double horizons[NH] = {0.5, 1.0, 2.0, 3.0};
static const char *hname[NH] = {"0.5s", "1s", "2s", "3s"};
static const char *mname[NMETH] = {"model", "model_best_of_k", "copy_last", "ego_shift", "const_vel"};

static void help(void) {
    printf("usage: egoworld eval-world --model FILE --data DIR[,DIR...] [options]\n\n"
           "Evaluates a world model on the TEST split: per horizon 0.5, 1, 2, 3 s, the image MSE of\n"
           "the model (autoregressive, the true actions, dropout off; stochastic models: K prior\n"
           "samples, mean over samples and best of K) and of the baselines copy-last-frame,\n"
           "shift-by-ego-motion (last frame resampled at the true future ego pose) and\n"
           "constant-velocity (every stored vehicle extrapolated from t0 with its velocity,\n"
           "rendered at the true future ego pose); and the position error (m) of the vehicles found\n"
           "in each predicted image (8-connected components of the vehicle channel >= --thr,\n"
           "centroids matched to the true image's components within --gate m) with recall and\n"
           "precision. Model position errors use the first latent sample.\n\n"
           "  --model FILE       world model (train-world output)\n"
           "  --data DIR         dataset folder(s); test episodes are pooled\n"
           "  --samples K        latent samples for stochastic models (default 8; 1 if deterministic)\n"
           "  --episodes N       use the first N test episodes (default all)\n"
           "  --stride S         one sample every S steps of an episode (default 20)\n"
           "  --max-samples M    at most M samples, evenly spread (default 400)\n"
           "  --thr X            vehicle threshold (default 0.5)\n"
           "  --gate M           matching gate in metres (default 4)\n"
           "  --seed S           latent samples (default 1)\n"
           "  --threads N        threads (default 2)\n"
           "  --json             one JSON object on stdout\n");
}

typedef struct {
    double mse;
    double err_sum;
    long matched, truth, pred;
} acc_t;

int cmd_eval_world(int argc, char **argv) {
    const char *cmd = "eval-world";
    const char *model_path = NULL, *data_arg = NULL;
    long K = 8, episodes = -1, stride = 20, max_samples = 400, threads = 2;
    double thr = 0.5, gate = 4.0;
    uint64_t seed = 1;
    int json = 0, ksets = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { help(); return 0; }
        else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--model")) { if (!(model_path = cli_value(cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--data")) { if (!(data_arg = cli_value(cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--samples")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 1, 256, &K)) return 2; ksets = 1; }
        else if (!strcmp(a, "--episodes")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 1, 100000000, &episodes)) return 2; }
        else if (!strcmp(a, "--stride")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 1, 100000, &stride)) return 2; }
        else if (!strcmp(a, "--max-samples")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 1, 100000000, &max_samples)) return 2; }
        else if (!strcmp(a, "--thr")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_float(cmd, a, v, 0.001, 1.0, &thr)) return 2; }
        else if (!strcmp(a, "--gate")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_float(cmd, a, v, 0.01, 1000, &gate)) return 2; }
        else if (!strcmp(a, "--seed")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_u64(cmd, a, v, &seed)) return 2; }
        else if (!strcmp(a, "--threads")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 1, 1024, &threads)) return 2; }
        else return cli_unknown(cmd, a);
    }
    if (!model_path || !data_arg) {
        fprintf(stderr, "egoworld %s: %s is required (see --help)\n", cmd, !model_path ? "--model FILE" : "--data DIR");
        return 2;
    }
    char err[1024] = "";
    int rc = 1, have_model = 0, have_data = 0;
    ew_fm m;
    ew_fm_data d;
    ew_backend *be = NULL;
    ew_graph *g = NULL;
    ew_fm_batch b = {0};
    float *images = NULL, *shift = NULL, *cv = NULL;
    size_t *sel = NULL;
    int *labels = NULL;
    uint8_t *scratch = NULL;
    ew_traj_frame *fr = NULL;
    char *dcopy = strdup(data_arg);
    const char *dirs[EW_FM_DATA_MAX_SETS];
    int ndirs = 0;
    if (!dcopy) goto oom;
    {
        char *save = NULL;
        for (char *tok = strtok_r(dcopy, ",", &save); tok && ndirs < EW_FM_DATA_MAX_SETS; tok = strtok_r(NULL, ",", &save))
            dirs[ndirs++] = tok;
    }
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
    if (!c->stochastic && !ksets) K = 1;
    if (!c->stochastic) K = 1;
    int hsteps[NH], T = 0;
    for (int h = 0; h < NH; h++) {
        hsteps[h] = (int)lround(horizons[h] / c->dt);
        if (hsteps[h] < 1) hsteps[h] = 1;
        if (hsteps[h] > T) T = hsteps[h];
    }
    if (ew_fm_data_open(&d, dirs, ndirs, c->n_cond, T, (int)stride, err, sizeof err)) goto fail;
    have_data = 1;
    if (fabsf(ew_fm_data_dt(&d) - c->dt) > 1e-6f) {
        snprintf(err, sizeof err, "%s: dt %g differs from the model's %g", data_arg, (double)ew_fm_data_dt(&d), (double)c->dt);
        goto fail;
    }
    /* the test samples of the first N test episodes, evenly thinned to max_samples */
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
        for (size_t i = 0; i < (size_t)max_samples; i++) sel[i] = sel[(size_t)((double)i * (double)nsel / (double)max_samples)];
        nsel = (size_t)max_samples;
    }
    const int C = c->channels, H = c->height, W = c->width;
    const size_t img = (size_t)C * H * W, plane = (size_t)H * W;
    int Bc = (int)(64 / K);
    if (Bc < 1) Bc = 1;
    if (Bc > 16) Bc = 16;
    ew_raster_cfg rcfg = {H, W, mpp};
    be = ew_backend_cpu_create((int)threads);
    g = be ? ew_graph_create(be, 0) : NULL;
    if (!g) goto oom;
    if (ew_fm_batch_alloc(&b, Bc, c->n_cond, T, C, H, W)) goto oom;
    images = malloc(sizeof(float) * (size_t)K * Bc * T * img);
    shift = malloc(sizeof(float) * img);
    cv = malloc(sizeof(float) * img);
    labels = malloc(sizeof(int) * plane);
    scratch = malloc(4 * plane);
    fr = malloc(sizeof(ew_traj_frame) * 2);
    if (!images || !shift || !cv || !labels || !scratch || !fr) goto oom;
    acc_t acc[NMETH][NH];
    memset(acc, 0, sizeof acc);
    enum { MAXB = 256 };
    ew_blob tb[MAXB], pb[MAXB];
    int match[MAXB];
    cli_progress prog;
    if (!json) cli_progress_begin(&prog, "eval-world", (long)nsel);
    double t0 = cli_now();
    for (size_t i0 = 0; i0 < nsel; i0 += (size_t)Bc) {
        int n = (int)(nsel - i0 < (size_t)Bc ? nsel - i0 : (size_t)Bc);
        if (ew_fm_data_fill(&d, EW_SPLIT_TEST, sel + i0, n, &rcfg, (int)threads, &b, err, sizeof err)) goto fail;
        if (ew_fm_predict(g, &m, n, b.frames, b.states, T, b.actions, (int)K, seed + i0, images, NULL, err, sizeof err))
            goto fail;
        for (int r = 0; r < n; r++) {
            int set;
            ew_traj_sample s;
            ew_fm_data_sample(&d, EW_SPLIT_TEST, sel[i0 + r], &set, &s);
            if (ew_traj_frame_get(d.set[set], s.episode, s.t0, &fr[0], err, (int)sizeof err)) goto fail;
            const float *last = b.frames + ((size_t)r * c->n_cond + (size_t)(c->n_cond - 1)) * img;
            ew_kin_state p0;
            memcpy(&p0, b.states + ((size_t)r * c->n_cond + (size_t)(c->n_cond - 1)) * 5, sizeof p0);
            for (int h = 0; h < NH; h++) {
                int hs = hsteps[h];
                const float *truth = b.target_frames + ((size_t)r * T + (size_t)(hs - 1)) * img;
                ew_kin_state p1;
                memcpy(&p1, b.target_states + ((size_t)r * T + (size_t)(hs - 1)) * 5, sizeof p1);
                ew_ego_shift(last, C, H, W, mpp, &p0, &p1, shift);
                if (ew_traj_frame_get(d.set[set], s.episode, s.t0 + hs, &fr[1], err, (int)sizeof err)) goto fail;
                if (ew_constvel_frame(&rcfg, &fr[0], &fr[1], (float)(hs * c->dt), scratch, cv)) {
                    snprintf(err, sizeof err, "constant-velocity raster failed");
                    goto fail;
                }
                double msum = 0, mbest = INFINITY;
                for (int k = 0; k < K; k++) {
                    const float *pk = images + (((size_t)k * n + r) * T + (size_t)(hs - 1)) * img;
                    double e = ew_img_mse(pk, truth, img);
                    msum += e;
                    if (e < mbest) mbest = e;
                }
                const float *preds[NMETH] = {images + ((size_t)r * T + (size_t)(hs - 1)) * img, NULL, last, shift, cv};
                acc[0][h].mse += msum / (double)K;
                acc[1][h].mse += mbest;
                acc[2][h].mse += ew_img_mse(last, truth, img);
                acc[3][h].mse += ew_img_mse(shift, truth, img);
                acc[4][h].mse += ew_img_mse(cv, truth, img);
                int nt = ew_find_blobs(truth + plane, H, W, (float)thr, 1, mpp, labels, tb, MAXB);
                for (int meth = 0; meth < NMETH; meth++) {
                    if (!preds[meth]) continue;
                    int np = ew_find_blobs(preds[meth] + plane, H, W, (float)thr, 1, mpp, labels, pb, MAXB);
                    double ds;
                    int nm = ew_match_points(pb, np, tb, nt, (float)gate, match, &ds);
                    acc[meth][h].err_sum += ds;
                    acc[meth][h].matched += nm;
                    acc[meth][h].truth += nt;
                    acc[meth][h].pred += np;
                }
            }
        }
        if (!json) cli_progress_update(&prog, (long)(i0 + (size_t)n), NULL);
    }
    if (!json) cli_progress_end(&prog);
    double wall = cli_now() - t0;
    const double N = (double)nsel;
    if (json) {
        printf("{\"command\": \"eval-world\", \"model\": \"%s\", \"data\": \"%s\", \"variant\": \"%s\", \"stochastic\": %d, "
               "\"episodes\": %ld, \"samples\": %zu, \"k\": %ld, \"gate_m\": %g, \"thr\": %g",
               model_path, data_arg, ew_fm_variant_name(c->variant), c->stochastic, n_ep, nsel, K, gate, thr);
        for (int meth = 0; meth < NMETH; meth++)
            for (int h = 0; h < NH; h++) printf(", \"%s_mse_%s\": %.6g", mname[meth], hname[h], acc[meth][h].mse / N);
        for (int meth = 0; meth < NMETH; meth++) {
            if (meth == 1) continue;
            for (int h = 0; h < NH; h++) {
                const acc_t *a = &acc[meth][h];
                const char *nm = meth == 0 ? "model" : mname[meth];
                printf(", \"%s_pos_err_%s\": %.6g, \"%s_recall_%s\": %.6g, \"%s_precision_%s\": %.6g", nm, hname[h],
                       a->matched ? a->err_sum / (double)a->matched : -1.0, nm, hname[h],
                       a->truth ? (double)a->matched / (double)a->truth : -1.0, nm, hname[h],
                       a->pred ? (double)a->matched / (double)a->pred : -1.0);
            }
        }
        printf(", \"wall_s\": %.3f}\n", wall);
    } else {
        printf("eval-world: %s (%s%s) on %s: %ld test episodes, %zu samples, K = %ld\n", model_path,
               ew_fm_variant_name(c->variant), c->stochastic ? " stochastic" : "", data_arg, n_ep, nsel, K);
        printf("%-18s", "image MSE");
        for (int h = 0; h < NH; h++) printf(" %10s", hname[h]);
        printf("\n");
        for (int meth = 0; meth < NMETH; meth++) {
            printf("%-18s", mname[meth]);
            for (int h = 0; h < NH; h++) printf(" %10.5f", acc[meth][h].mse / N);
            printf("\n");
        }
        printf("%-18s", "pos err m (recall)");
        printf("\n");
        for (int meth = 0; meth < NMETH; meth++) {
            if (meth == 1) continue;
            printf("%-18s", mname[meth]);
            for (int h = 0; h < NH; h++) {
                const acc_t *a = &acc[meth][h];
                printf("  %4.2f (%3.0f%%)", a->matched ? a->err_sum / (double)a->matched : -1.0,
                       a->truth ? 100.0 * (double)a->matched / (double)a->truth : 0.0);
            }
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
    if (g) ew_graph_destroy(g);
    if (be) ew_backend_destroy(be);
    if (have_model) ew_fm_free(&m);
    if (have_data) ew_fm_data_close(&d);
    ew_fm_batch_free(&b);
    free(images);
    free(shift);
    free(cv);
    free(sel);
    free(labels);
    free(scratch);
    free(fr);
    free(dcopy);
    return rc;
}
