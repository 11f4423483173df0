/* cmd_track.c - `egoworld train-tracker | eval-tracker | train-predictor | eval-predictor`:
 * physics from video (models/track.h, models/motion.h, sim/video.h).
 *
 * train-tracker trains on single-vehicle clip pairs rendered on the fly (batch k of step s
 * from seed + s, so a resumed run gives the same weights as an uninterrupted one); the truth
 * the generator keeps is never read. eval-tracker runs the tracker (peaks + local
 * soft-argmax) and the thresholding + connected-components baseline on the same frames of a
 * traffic stream (many vehicles) and scores both against the simulator's truth.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/cli.h"

int cmd_train_tracker(int argc, char **argv);
int cmd_eval_tracker(int argc, char **argv);
#include "models/track.h"
#include "sim/video.h"

#define FLAG_INT(name, lo, hi, var)                                                              \
    else if (!strcmp(a, name)) {                                                                \
        if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, lo, hi, &var)) return 2; \
    }
#define FLAG_F(name, lo, hi, var)                                                                  \
    else if (!strcmp(a, name)) {                                                                   \
        if (!(v = cli_value(cmd, argc, argv, &i)) || cli_float(cmd, a, v, lo, hi, &var)) return 2; \
    }

static int fail(const char *cmd, const char *msg) {
    fprintf(stderr, "egoworld %s: %s\n", cmd, msg);
    return 1;
}

/* ---- train-tracker -------------------------------------------------------------------- */

static void help_train(void) {
    printf("usage: egoworld train-tracker --out FILE.safetensors [options]\n\n"
           "Trains the unsupervised tracker on single-vehicle fixed-camera clip pairs rendered on\n"
           "the fly (causality + equivariance + entropy; no position labels). The checkpoint holds\n"
           "the model, the optimizer state and the step (written every --ckpt-every steps and at\n"
           "the end, atomically); the objectness threshold is calibrated at the end.\n\n"
           "  --out FILE        checkpoint (required)\n"
           "  --steps N         training steps (default 1500)\n"
           "  --batch B         clip pairs per step (default 8)\n"
           "  --channels N      conv width (default 16)\n"
           "  --layers N        3x3 conv layers (default 4)\n"
           "  --lr X            Adam learning rate (default 2e-3)\n"
           "  --degrade NAME    clean | degraded (default clean)\n"
           "  --seed S          data and initialisation (default 1)\n"
           "  --threads N       threads (default 1)\n"
           "  --ckpt-every N    checkpoint period (default 250)\n"
           "  --resume          continue from --out (same flags: same result)\n"
           "  --json            print a JSON summary\n");
}

int cmd_train_tracker(int argc, char **argv) {
    const char *cmd = "train-tracker", *out = NULL, *deg = "clean";
    long steps = 1500, batch = 8, channels = 16, layers = 4, threads = 1, ckpt_every = 250;
    double lr = 2e-3;
    uint64_t seed = 1;
    int resume = 0, json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            help_train();
            return 0;
        } else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--resume")) resume = 1;
        else if (!strcmp(a, "--out")) {
            if (!(out = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--degrade")) {
            if (!(deg = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--seed")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || cli_u64(cmd, a, v, &seed)) return 2;
        }
        FLAG_INT("--steps", 1, 100000000, steps)
        FLAG_INT("--batch", 1, 1024, batch)
        FLAG_INT("--channels", 1, 256, channels)
        FLAG_INT("--layers", 1, EW_TRACK_MAX_LAYERS, layers)
        FLAG_INT("--threads", 1, 1024, threads)
        FLAG_INT("--ckpt-every", 1, 100000000, ckpt_every)
        FLAG_F("--lr", 1e-9, 10, lr)
        else return cli_unknown(cmd, a);
    }
    if (!out) {
        fprintf(stderr, "egoworld %s: --out FILE is required (see --help)\n", cmd);
        return 2;
    }
    ew_video_pair_cfg vc;
    ew_video_pair_cfg_default(&vc);
    if (ew_video_degrade_by_name(deg, &vc.degrade)) {
        fprintf(stderr, "egoworld %s: --degrade: expected clean or degraded, not '%s'\n", cmd, deg);
        return 2;
    }
    char err[512];
    ew_tracker t;
    long step0 = 0;
    ew_tracker_config tc;
    ew_tracker_config_default(&tc);
    tc.channels = (int)channels;
    tc.layers = (int)layers;
    if (resume) {
        if (ew_tracker_load(&t, out, &step0, err, sizeof err)) return fail(cmd, err);
    } else if (ew_tracker_init(&t, &tc, seed, err, sizeof err))
        return fail(cmd, err);
    ew_optim_config oc = ew_optim_defaults(EW_OPTIM_ADAM);
    oc.lr = (float)lr;
    ew_optim *opt = NULL;
    ew_backend *be = ew_backend_cpu_create((int)threads);
    ew_graph *g = be ? ew_graph_create(be, 0) : NULL;
    ew_video_pairs p = {0};
    int rc = 1;
    if (!g) {
        fail(cmd, "out of memory");
        goto done;
    }
    if (ew_optim_create(t.params.items, t.params.n, &oc, &opt, err, sizeof err)) {
        fail(cmd, err);
        goto done;
    }
    if (resume && ew_tracker_load_optim(opt, out, err, sizeof err)) {
        fail(cmd, err);
        goto done;
    }
    if (ew_video_pairs_alloc(&p, (int)batch, &vc)) {
        fail(cmd, "out of memory");
        goto done;
    }
    cli_progress pr;
    cli_progress_begin(&pr, "train-tracker", steps);
    ew_track_stats st = {0}, avg = {0};
    int navg = 0;
    double t0 = cli_now();
    for (long s = step0; s < steps; s++) {
        if (ew_video_pair_make(&vc, seed * 1000003ULL + (uint64_t)s, &p, err, sizeof err) ||
            ew_tracker_train_step(&t, opt, g, &p, &st, err, sizeof err)) {
            fail(cmd, err);
            goto done;
        }
        avg.loss += st.loss, avg.causal += st.causal, avg.equiv += st.equiv, avg.entropy += st.entropy;
        avg.disc_acc += st.disc_acc;
        navg++;
        if ((s + 1) % 25 == 0 || s + 1 == steps) {
            char extra[160];
            snprintf(extra, sizeof extra, "loss %.3f causal %.3f equiv %.3f px^2 entropy %.2f disc-acc %.2f",
                     avg.loss / navg, avg.causal / navg, avg.equiv / navg, avg.entropy / navg, avg.disc_acc / navg);
            cli_progress_update(&pr, s + 1, extra);
            memset(&avg, 0, sizeof avg);
            navg = 0;
        }
        if ((s + 1) % ckpt_every == 0 && s + 1 < steps && ew_tracker_save(&t, opt, s + 1, out, err, sizeof err)) {
            fail(cmd, err);
            goto done;
        }
    }
    cli_progress_end(&pr);
    /* calibrate the objectness threshold on fresh unlabelled pairs */
    ew_video_pairs cp;
    if (ew_video_pairs_alloc(&cp, 32, &vc)) {
        fail(cmd, "out of memory");
        goto done;
    }
    if (ew_video_pair_make(&vc, seed * 1000003ULL + 999999937ULL, &cp, err, sizeof err) ||
        ew_tracker_calibrate(&t, g, &cp, err, sizeof err) || ew_tracker_save(&t, opt, steps, out, err, sizeof err)) {
        ew_video_pairs_free(&cp);
        fail(cmd, err);
        goto done;
    }
    ew_video_pairs_free(&cp);
    if (json)
        printf("{\"steps\": %ld, \"seconds\": %.1f, \"loss\": %.5g, \"causal\": %.5g, \"equiv_px2\": %.5g, "
               "\"entropy\": %.5g, \"peak_thr\": %.5g, \"degrade\": \"%s\", \"out\": \"%s\"}\n",
               steps, cli_now() - t0, st.loss, st.causal, st.equiv, st.entropy, t.peak_thr, deg, out);
    else
        printf("train-tracker: %ld steps, final loss %.4f, threshold %.3f -> %s\n", steps, st.loss, t.peak_thr, out);
    rc = 0;
done:
    ew_video_pairs_free(&p);
    ew_optim_free(opt);
    ew_graph_destroy(g);
    ew_backend_destroy(be);
    ew_tracker_free(&t);
    return rc;
}

/* ---- eval-tracker --------------------------------------------------------------------- */

static void help_eval(void) {
    printf("usage: egoworld eval-tracker --model FILE [options]\n\n"
           "Runs the tracker and a thresholding + connected-components baseline on the same frames\n"
           "of a fixed-camera traffic video (3 lanes, 200 m at 0.5 m/px, many vehicles) and scores\n"
           "both against the simulator's truth. A detection matches a vehicle within 1.5 m (greedy,\n"
           "closest first). Scored vehicles: whole box in view and centre not under an occluder;\n"
           "detections matched to other vehicles are ignored.\n"
           "Keys: median_error_m, p95_error_m, precision, recall (tracker), baseline_median_error_m,\n"
           "baseline_p95_error_m, baseline_precision, baseline_recall, frames, vehicles.\n\n"
           "  --model FILE      tracker checkpoint (required)\n"
           "  --degrade NAME    clean | degraded (default clean)\n"
           "  --frames N        frames (default 200)\n"
           "  --seed S          traffic seed (default 7)\n"
           "  --flow X          vehicles per hour per lane (default 1400)\n"
           "  --baseline-thr X  grey threshold of the baseline (default 0.6)\n"
           "  --threads N       threads (default 1)\n"
           "  --json            print a JSON summary\n");
}

typedef struct {
    double *err;
    long n, cap, tp, fp, scored, found;
} score_acc;

static int acc_push(score_acc *a, double e) {
    if (a->n == a->cap) {
        long nc = a->cap ? 2 * a->cap : 1024;
        double *p = realloc(a->err, (size_t)nc * sizeof(double));
        if (!p) return -1;
        a->err = p;
        a->cap = nc;
    }
    a->err[a->n++] = e;
    return 0;
}

/* Greedy matching of detections to truths (closest first, within radius px). */
static int score_frame(const ew_track_det *d, int nd, const ew_video_truth *tr, int nt, float m_per_px, float radius_m,
                       score_acc *a) {
    int used_d[512] = {0}, used_t[512] = {0};
    if (nd > 512) nd = 512;
    if (nt > 512) nt = 512;
    for (;;) {
        int bi = -1, bj = -1;
        double best = radius_m;
        for (int i = 0; i < nd; i++) {
            if (used_d[i]) continue;
            for (int j = 0; j < nt; j++) {
                if (used_t[j]) continue;
                double e = hypot(d[i].u - tr[j].u, d[i].v - tr[j].v) * m_per_px;
                if (e < best) best = e, bi = i, bj = j;
            }
        }
        if (bi < 0) break;
        used_d[bi] = used_t[bj] = 1;
        if (tr[bj].inside && !tr[bj].occluded) {
            a->tp++;
            a->found++;
            if (acc_push(a, best)) return -1;
        }
    }
    for (int i = 0; i < nd; i++) a->fp += !used_d[i];
    for (int j = 0; j < nt; j++) a->scored += tr[j].inside && !tr[j].occluded;
    return 0;
}

static int cmp_d(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}
static double pct(double *v, long n, double q) {
    if (n == 0) return NAN;
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return v[(long)(q * (double)(n - 1) + 0.5)];
}

static void print_num(const char *key, double v, int last) {
    if (isfinite(v)) printf("\"%s\": %.4f%s", key, v, last ? "" : ", ");
    else printf("\"%s\": null%s", key, last ? "" : ", ");
}

int cmd_eval_tracker(int argc, char **argv) {
    const char *cmd = "eval-tracker", *model = NULL, *deg = "clean";
    long frames = 200, threads = 1;
    double flow = 1400, bthr = 0.6;
    uint64_t seed = 7;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            help_eval();
            return 0;
        } else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--model")) {
            if (!(model = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--degrade")) {
            if (!(deg = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--seed")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || cli_u64(cmd, a, v, &seed)) return 2;
        }
        FLAG_INT("--frames", 1, 1000000, frames)
        FLAG_INT("--threads", 1, 1024, threads)
        FLAG_F("--flow", 0, 5000, flow)
        FLAG_F("--baseline-thr", 0, 1, bthr)
        else return cli_unknown(cmd, a);
    }
    if (!model) {
        fprintf(stderr, "egoworld %s: --model FILE is required (see --help)\n", cmd);
        return 2;
    }
    ew_video_stream_cfg sc;
    ew_video_stream_cfg_default(&sc);
    sc.flow_per_h = (float)flow;
    if (ew_video_degrade_by_name(deg, &sc.degrade)) {
        fprintf(stderr, "egoworld %s: --degrade: expected clean or degraded, not '%s'\n", cmd, deg);
        return 2;
    }
    char err[512];
    ew_tracker t;
    if (ew_tracker_load(&t, model, NULL, err, sizeof err)) return fail(cmd, err);
    ew_backend *be = ew_backend_cpu_create((int)threads);
    ew_graph *g = be ? ew_graph_create(be, 0) : NULL;
    ew_video_stream *s = ew_video_stream_create(&sc, seed, err, sizeof err);
    int rc = 1, rows = 0, cols = 0;
    float *frame = NULL;
    ew_video_truth *truth = malloc(512 * sizeof *truth);
    ew_track_det *dets = malloc(512 * sizeof *dets);
    score_acc at = {0}, ab = {0};
    if (!s) {
        fail(cmd, err);
        goto done;
    }
    ew_video_stream_size(s, &rows, &cols);
    frame = malloc((size_t)rows * cols * sizeof(float));
    if (!g || !frame || !truth || !dets) {
        fail(cmd, "out of memory");
        goto done;
    }
    cli_progress pr;
    cli_progress_begin(&pr, "eval-tracker", frames);
    long vehicles = 0;
    for (long f = 0; f < frames; f++) {
        int nt = ew_video_stream_next(s, frame, truth, 512, err, sizeof err);
        if (nt < 0) {
            fail(cmd, err);
            goto done;
        }
        vehicles += nt;
        int nd = ew_tracker_detect(&t, g, frame, rows, cols, dets, 512, err, sizeof err);
        if (nd < 0 || score_frame(dets, nd, truth, nt, sc.m_per_px, 1.5f, &at)) {
            fail(cmd, nd < 0 ? err : "out of memory");
            goto done;
        }
        nd = ew_track_baseline_detect(frame, rows, cols, (float)bthr, 4, dets, 512);
        if (score_frame(dets, nd, truth, nt, sc.m_per_px, 1.5f, &ab)) {
            fail(cmd, "out of memory");
            goto done;
        }
        if ((f + 1) % 20 == 0 || f + 1 == frames) cli_progress_update(&pr, f + 1, NULL);
    }
    cli_progress_end(&pr);
    double prec = at.tp + at.fp ? (double)at.tp / (double)(at.tp + at.fp) : NAN;
    double rec = at.scored ? (double)at.found / (double)at.scored : NAN;
    double bprec = ab.tp + ab.fp ? (double)ab.tp / (double)(ab.tp + ab.fp) : NAN;
    double brec = ab.scored ? (double)ab.found / (double)ab.scored : NAN;
    double med = pct(at.err, at.n, 0.5), p95 = pct(at.err, at.n, 0.95);
    double bmed = pct(ab.err, ab.n, 0.5), bp95 = pct(ab.err, ab.n, 0.95);
    if (json) {
        printf("{\"degrade\": \"%s\", \"frames\": %ld, \"vehicles\": %ld, \"scored\": %ld, ", deg, frames, vehicles,
               at.scored);
        print_num("median_error_m", med, 0);
        print_num("p95_error_m", p95, 0);
        print_num("precision", prec, 0);
        print_num("recall", rec, 0);
        print_num("baseline_median_error_m", bmed, 0);
        print_num("baseline_p95_error_m", bp95, 0);
        print_num("baseline_precision", bprec, 0);
        print_num("baseline_recall", brec, 1);
        printf("}\n");
    } else {
        printf("eval-tracker (%s, %ld frames, %ld scored vehicle-frames)\n", deg, frames, at.scored);
        printf("  tracker : median %.3f m, p95 %.3f m, precision %.4f, recall %.4f\n", med, p95, prec, rec);
        printf("  baseline: median %.3f m, p95 %.3f m, precision %.4f, recall %.4f\n", bmed, bp95, bprec, brec);
    }
    rc = 0;
done:
    free(at.err);
    free(ab.err);
    free(frame);
    free(truth);
    free(dets);
    ew_video_stream_free(s);
    ew_graph_destroy(g);
    ew_backend_destroy(be);
    ew_tracker_free(&t);
    return rc;
}

