/* cmd_track.c - `egoworld train-tracker | eval-tracker | train-predictor | eval-predictor`:
 * physics from video (models/track.h, models/motion.h, sim/video.h).
 *
 * train-tracker trains on single-vehicle clip pairs rendered on the fly (batch k of step s
 * from seed + s, so a resumed run gives the same weights as an uninterrupted one); the truth
 * the generator keeps is never read. eval-tracker runs the tracker (peaks + local
 * soft-argmax) and the thresholding + connected-components baseline on the same frames of a
 * traffic stream (many vehicles) and scores both against the simulator's truth.
 *
 * Data parallel (train-tracker and train-predictor under mpirun, models/dist.h): --batch is
 * per rank and the global batch of a step is the ranks' slices in rank order (pairs
 * r*B .. r*B+B-1 of the step's seed; sample draws r*B .. of the step's draw sequence), so N
 * ranks with --batch B train on exactly the data of 1 rank with --batch N*B; gradients are
 * averaged before clipping (optimizer reducer), rank 0 alone writes checkpoints and
 * progress, the ranks' parameters are hash-compared at every checkpoint, and an error on any
 * rank aborts the job. The predictor's windows are rendered and tracked by every rank.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/cli.h"
#include "models/dist.h"

int cmd_train_tracker(int argc, char **argv);
int cmd_eval_tracker(int argc, char **argv);
#include "models/motion_data.h"
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
           "  --batch B         clip pairs per step (default 8); under mpirun per rank (docs/DISTRIBUTED.md)\n"
           "  --channels N      conv width (default 16)\n"
           "  --layers N        conv layers (default 4): one 3x3, then 3 x kernel-w\n"
           "  --kernel-w N      width of the later kernels, odd (default 9)\n"
           "  --lr X            Adam learning rate (default 2e-3)\n"
           "  --degrade NAME    clean | degraded (default clean)\n"
           "  --seed S          data and initialisation (default 1)\n"
           "  --threads N       threads (default 1)\n"
           CLI_DEVICE_HELP
           "  --ckpt-every N    checkpoint period (default 250)\n"
           "  --cal-quantile Q  the threshold's peak level: this quantile of the frame maxima of\n"
           "                    single-vehicle clips (default 0.5 = the median; see models/track.h);\n"
           "                    --resume with --steps at the checkpoint's step only recalibrates\n"
           "  --local-loss      positions of the losses within the detection window around each\n"
           "                    map's maximum (the test-time estimator) instead of over the whole\n"
           "                    map; for a second phase: --resume --local-loss continues a global run\n"
           "                    (saved in the checkpoint; a resumed local run stays local)\n"
           "  --resume          continue from --out (same flags: same result)\n"
           "  --json            print a JSON summary\n");
}

int cmd_train_tracker(int argc, char **argv) {
    const char *cmd = "train-tracker", *out = NULL, *deg = "clean";
    long steps = 1500, batch = 8, channels = 16, layers = 4, kernel_w = 9, threads = 1, ckpt_every = 250;
    double lr = 2e-3, calq = 0.5;
    uint64_t seed = 1;
    int resume = 0, json = 0, cuda = 0, local = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            help_train();
            return 0;
        } else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--resume")) resume = 1;
        else if (!strcmp(a, "--local-loss")) local = 1;
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
        FLAG_INT("--kernel-w", 1, 31, kernel_w)
        FLAG_INT("--threads", 1, 1024, threads)
        else if (!strcmp(a, "--device")) { if (cli_device(cmd, argc, argv, &i, &cuda)) return 2; }
        FLAG_INT("--ckpt-every", 1, 100000000, ckpt_every)
        FLAG_F("--lr", 1e-9, 10, lr)
        FLAG_F("--cal-quantile", 1e-3, 0.999, calq)
        else return cli_unknown(cmd, a);
    }
    if (!out) {
        fprintf(stderr, "egoworld %s: --out FILE is required (see --help)\n", cmd);
        return 2;
    }
    if (cli_device_check(cmd, cuda)) return 1;
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
    tc.kernel_w = (int)kernel_w;
    tc.local_loss = local;
    if (kernel_w % 2 == 0) {
        fprintf(stderr, "egoworld %s: --kernel-w: must be odd\n", cmd);
        return 2;
    }
    if (resume) {
        if (ew_tracker_load(&t, out, &step0, err, sizeof err)) return fail(cmd, err);
        if (local) t.cfg.local_loss = 1;
    } else if (ew_tracker_init(&t, &tc, seed, err, sizeof err))
        return fail(cmd, err);
    ew_optim_config oc = ew_optim_defaults(EW_OPTIM_ADAM);
    oc.lr = (float)lr;
    ew_optim *opt = NULL;
    ew_backend *be = cli_backend(cmd, cuda, (int)threads);
    ew_graph *g = be ? ew_graph_create(be, 0) : NULL;
    ew_video_pairs p = {0};
    int rc = 1;
    ew_dist dist;
    ew_dist_world(&dist);
    const int root = dist.rank == 0;
    if (!g) {
        fail(cmd, "out of memory");
        goto done;
    }
    if (ew_tracker_move_to_backend(&t, be, err, sizeof err) ||
        ew_optim_create(t.params.items, t.params.n, &oc, &opt, err, sizeof err) || ew_optim_use_backend(opt, be, err, sizeof err) ||
        (dist.size > 1 && ew_optim_set_grad_reduce(opt, ew_dist_grad_reduce, &dist, err, sizeof err))) {
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
    if (!ew_dist_same_params(&dist, t.params.items, t.params.n, NULL)) {
        fail(cmd, "the MPI ranks start from different parameters");
        goto done;
    }
    cli_progress pr;
    if (root) cli_progress_begin(&pr, "train-tracker", steps);
    ew_track_stats st = {0}, avg = {0};
    int navg = 0;
    double t0 = cli_now();
    for (long s = step0; s < steps; s++) {
        if (ew_video_pair_make_from(&vc, seed * 1000003ULL + (uint64_t)s, (uint64_t)dist.rank * (uint64_t)batch, &p, err,
                                    sizeof err) ||
            ew_tracker_train_step(&t, opt, g, &p, &st, err, sizeof err)) {
            fail(cmd, err);
            goto done;
        }
        if (dist.size > 1) { /* the global batch's figures */
            float v[5] = {st.loss, st.causal, st.equiv, st.entropy, st.disc_acc};
            ew_dist_allreduce_mean(&dist, v, 5);
            st.loss = v[0], st.causal = v[1], st.equiv = v[2], st.entropy = v[3], st.disc_acc = v[4];
        }
        avg.loss += st.loss, avg.causal += st.causal, avg.equiv += st.equiv, avg.entropy += st.entropy;
        avg.disc_acc += st.disc_acc;
        navg++;
        if ((s + 1) % 25 == 0 || s + 1 == steps) {
            char extra[160];
            snprintf(extra, sizeof extra, "loss %.3f causal %.3f equiv %.3f px^2 entropy %.2f disc-acc %.2f",
                     avg.loss / navg, avg.causal / navg, avg.equiv / navg, avg.entropy / navg, avg.disc_acc / navg);
            if (root) cli_progress_update(&pr, s + 1, extra);
            memset(&avg, 0, sizeof avg);
            navg = 0;
        }
        if ((s + 1) % ckpt_every == 0 && s + 1 < steps) {
            if (!ew_dist_same_params(&dist, t.params.items, t.params.n, NULL)) {
                fail(cmd, "the MPI ranks' parameters differ");
                goto done;
            }
            if (root && ew_tracker_save(&t, opt, s + 1, out, err, sizeof err)) {
                fail(cmd, err);
                goto done;
            }
        }
    }
    if (root) cli_progress_end(&pr);
    if (!ew_dist_same_params(&dist, t.params.items, t.params.n, NULL)) {
        fail(cmd, "the MPI ranks' parameters differ");
        goto done;
    }
    /* calibrate the objectness threshold on fresh unlabelled pairs */
    ew_video_pairs cp;
    if (ew_video_pairs_alloc(&cp, 32, &vc)) {
        fail(cmd, "out of memory");
        goto done;
    }
    if (ew_video_pair_make(&vc, seed * 1000003ULL + 999999937ULL, &cp, err, sizeof err) ||
        ew_tracker_calibrate_q(&t, g, &cp, calq, err, sizeof err) || (root && ew_tracker_save(&t, opt, steps, out, err, sizeof err))) {
        ew_video_pairs_free(&cp);
        fail(cmd, err);
        goto done;
    }
    ew_video_pairs_free(&cp);
    if (!root) {
        rc = 0;
        goto done;
    }
    if (json)
        printf("{\"steps\": %ld, \"seconds\": %.1f, \"loss\": %.5g, \"causal\": %.5g, \"equiv_px2\": %.5g, "
               "\"entropy\": %.5g, \"peak_thr\": %.5g, \"local_loss\": %d, \"degrade\": \"%s\", \"out\": \"%s\", \"ranks\": %d, "
               "\"global_batch\": %ld, \"allreduce_floats_per_step\": %zu}\n",
               steps, cli_now() - t0, st.loss, st.causal, st.equiv, st.entropy, t.peak_thr, t.cfg.local_loss, deg, out, dist.size,
               batch * dist.size, dist.size > 1 ? ew_optim_grad_numel(opt) : (size_t)0);
    else
        printf("train-tracker: %ld steps, final loss %.4f, threshold %.3f -> %s\n", steps, st.loss, t.peak_thr, out);
    rc = 0;
done:
    if (rc) ew_dist_abort(&dist, 1); /* the other ranks would wait in a collective */
    ew_video_pairs_free(&p);
    ew_optim_free(opt);
    ew_graph_destroy(g);
    ew_tracker_free(&t); /* before the backend: a moved tracker frees into its memory */
    ew_backend_destroy(be);
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
           "baseline_p95_error_m, baseline_precision, baseline_recall, peak_thr, frames, vehicles;\n"
           "common_vehicles, common_median_error_m, common_baseline_median_error_m: the same\n"
           "medians over the vehicle-frames both detectors found (the baseline misses faint ones).\n\n"
           "  --model FILE      tracker checkpoint (required)\n"
           "  --degrade NAME    clean | degraded (default clean)\n"
           "  --frames N        frames (default 200)\n"
           "  --seed S          traffic seed (default 7)\n"
           "  --flow X          vehicles per hour per lane (default 1400)\n"
           "  --baseline-thr X  grey threshold of the baseline (default 0.6)\n"
           "  --tta             average the tracker's maps over the frame's flips (4x the work)\n"
           "  --peak-thr X      the tracker's peak threshold instead of the checkpoint's calibrated one\n"
           "  --threads N       threads (default 1)\n"
           "  --json            print a JSON summary\n"
           "With --imagined: the tracker on the world model's imagined frames (see --imagined --help).\n");
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

/* Greedy matching of detections to truths (closest first, within radius px). terr (may be
 * NULL, nt entries) gets each scored truth's error, NAN where unmatched or not scored. */
static int score_frame(const ew_track_det *d, int nd, const ew_video_truth *tr, int nt, float m_per_px, float radius_m,
                       score_acc *a, double *terr) {
    if (terr)
        for (int j = 0; j < nt && j < 512; j++) terr[j] = NAN;
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
            if (terr) terr[bj] = best;
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

int cmd_eval_tracker_imagined(int argc, char **argv); /* app/cmd_track_world.c */

int cmd_eval_tracker(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--imagined")) return cmd_eval_tracker_imagined(argc, argv);
    const char *cmd = "eval-tracker", *model = NULL, *deg = "clean";
    long frames = 200, threads = 1;
    double flow = 1400, bthr = 0.6, pthr = NAN;
    uint64_t seed = 7;
    int json = 0, tta = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            help_eval();
            return 0;
        } else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--tta")) tta = 1;
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
        FLAG_F("--peak-thr", -1e6, 1e6, pthr)
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
    t.tta = tta;
    if (isfinite(pthr)) t.peak_thr = (float)pthr;
    ew_backend *be = ew_backend_cpu_create((int)threads);
    ew_graph *g = be ? ew_graph_create(be, 0) : NULL;
    ew_video_stream *s = ew_video_stream_create(&sc, seed, err, sizeof err);
    int rc = 1, rows = 0, cols = 0;
    float *frame = NULL;
    ew_video_truth *truth = malloc(512 * sizeof *truth);
    ew_track_det *dets = malloc(512 * sizeof *dets);
    score_acc at = {0}, ab = {0}, ct = {0}, cb = {0};
    double et[512], eb[512];
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
        if (nd < 0 || score_frame(dets, nd, truth, nt, sc.m_per_px, 1.5f, &at, et)) {
            fail(cmd, nd < 0 ? err : "out of memory");
            goto done;
        }
        nd = ew_track_baseline_detect(frame, rows, cols, (float)bthr, 4, dets, 512);
        if (score_frame(dets, nd, truth, nt, sc.m_per_px, 1.5f, &ab, eb)) {
            fail(cmd, "out of memory");
            goto done;
        }
        for (int j = 0; j < nt && j < 512; j++) /* vehicles both detectors found */
            if (isfinite(et[j]) && isfinite(eb[j]) && (acc_push(&ct, et[j]) || acc_push(&cb, eb[j]))) {
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
        print_num("baseline_recall", brec, 0);
        print_num("peak_thr", t.peak_thr, 0);
        printf("\"common_vehicles\": %ld, ", ct.n);
        print_num("common_median_error_m", pct(ct.err, ct.n, 0.5), 0);
        print_num("common_baseline_median_error_m", pct(cb.err, cb.n, 0.5), 1);
        printf("}\n");
    } else {
        printf("eval-tracker (%s, %ld frames, %ld scored vehicle-frames)\n", deg, frames, at.scored);
        printf("  tracker : median %.3f m, p95 %.3f m, precision %.4f, recall %.4f\n", med, p95, prec, rec);
        printf("  baseline: median %.3f m, p95 %.3f m, precision %.4f, recall %.4f\n", bmed, bp95, bprec, brec);
        printf("  vehicle-frames both found (%ld): median %.3f m (tracker), %.3f m (baseline)\n", ct.n,
               pct(ct.err, ct.n, 0.5), pct(cb.err, cb.n, 0.5));
    }
    rc = 0;
done:
    free(at.err);
    free(ab.err);
    free(ct.err);
    free(cb.err);
    free(frame);
    free(truth);
    free(dets);
    ew_video_stream_free(s);
    ew_graph_destroy(g);
    ew_backend_destroy(be);
    ew_tracker_free(&t);
    return rc;
}


/* ---- train-predictor / eval-predictor ------------------------------------------------- */

int cmd_train_predictor(int argc, char **argv);
int cmd_eval_predictor(int argc, char **argv);

static void help_train_pred(void) {
    printf("usage: egoworld train-predictor (--tracker FILE | --truth) --out FILE.safetensors [options]\n\n"
           "Renders a fixed-camera traffic video, tracks it with the tracker, links tracklets and\n"
           "trains the GRU motion predictor (1 s history -> 3 s of 2-D Gaussians, Gaussian NLL) on\n"
           "tracklet windows; with --truth it trains on the simulator's true tracks instead (for the\n"
           "comparison). The checkpoint holds model, optimizer state and step (atomic writes).\n\n"
           "  --tracker FILE    tracker checkpoint (required unless --truth)\n"
           "  --out FILE        predictor checkpoint (required)\n"
           "  --truth           train on true positions instead of tracked ones\n"
           "  --frames N        video frames (default 3000 = 5 min)\n"
           "  --stride N        frames between window anchors (default 3)\n"
           "  --steps N         training steps (default 2000)\n"
           "  --batch B         samples per step (default 64); under mpirun per rank (docs/DISTRIBUTED.md)\n"
           "  --hidden N        GRU width (default 64)\n"
           "  --lr X            Adam learning rate (default 1e-3)\n"
           "  --clean           drop windows whose positions jump (a lateral step > 0.4 m or a\n"
           "                    change of the longitudinal step > 0.8 m between frames; no truth)\n"
           "  --edge-margin M   keep only windows whose 40 positions stay M m inside the view's ends\n"
           "                    (label-free stand-in for whole boxes in view, as the true windows;\n"
           "                    default 0: keep all)\n"
           "  --event-weight W  draw windows with a lane change or braking W times as often\n"
           "                    (events seen in the training positions themselves; default 1)\n"
           "  --degrade NAME    clean | degraded video (default clean)\n"
           "  --flow X          vehicles per hour per lane (default 1400)\n"
           "  --seed S          traffic and sampling seed (default 11)\n"
           "  --threads N       threads (default 1)\n"
           CLI_DEVICE_HELP
           "  --ckpt-every N    checkpoint period (default 500)\n"
           "  --resume          continue from --out (the data are rebuilt from the same seed)\n"
           "  --json            print a JSON summary\n");
}

int cmd_train_predictor(int argc, char **argv) {
    const char *cmd = "train-predictor", *out = NULL, *trk = NULL, *deg = "clean";
    long frames = 3000, stride = 3, steps = 2000, batch = 64, hidden = 64, threads = 1, ckpt_every = 500, event_w = 1;
    double lr = 1e-3, flow = 1400, edge_margin = 0;
    uint64_t seed = 11;
    int truth = 0, resume = 0, json = 0, clean = 0, cuda = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            help_train_pred();
            return 0;
        } else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--truth")) truth = 1;
        else if (!strcmp(a, "--clean")) clean = 1;
        else if (!strcmp(a, "--resume")) resume = 1;
        else if (!strcmp(a, "--out")) {
            if (!(out = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--tracker")) {
            if (!(trk = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--degrade")) {
            if (!(deg = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--seed")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || cli_u64(cmd, a, v, &seed)) return 2;
        }
        FLAG_INT("--frames", 40, 1000000, frames)
        FLAG_INT("--stride", 1, 1000, stride)
        FLAG_INT("--steps", 1, 100000000, steps)
        FLAG_INT("--batch", 1, 4096, batch)
        FLAG_INT("--hidden", 1, 4096, hidden)
        FLAG_INT("--threads", 1, 1024, threads)
        else if (!strcmp(a, "--device")) { if (cli_device(cmd, argc, argv, &i, &cuda)) return 2; }
        FLAG_INT("--ckpt-every", 1, 100000000, ckpt_every)
        FLAG_INT("--event-weight", 1, 100, event_w)
        FLAG_F("--lr", 1e-9, 10, lr)
        FLAG_F("--flow", 0, 5000, flow)
        FLAG_F("--edge-margin", 0, 50, edge_margin)
        else return cli_unknown(cmd, a);
    }
    if (!out || (!trk && !truth)) {
        fprintf(stderr, "egoworld %s: %s is required (see --help)\n", cmd, !out ? "--out FILE" : "--tracker FILE");
        return 2;
    }
    if (cli_device_check(cmd, cuda)) return 1;
    ew_video_stream_cfg sc;
    ew_video_stream_cfg_default(&sc);
    sc.flow_per_h = (float)flow;
    if (ew_video_degrade_by_name(deg, &sc.degrade)) {
        fprintf(stderr, "egoworld %s: --degrade: expected clean or degraded, not '%s'\n", cmd, deg);
        return 2;
    }
    char err[512];
    ew_tracker t;
    memset(&t, 0, sizeof t);
    if (trk && ew_tracker_load(&t, trk, NULL, err, sizeof err)) return fail(cmd, err);
    ew_backend *be = cli_backend(cmd, cuda, (int)threads);
    ew_graph *g = be ? ew_graph_create(be, 0) : NULL;
    ew_motion m;
    memset(&m, 0, sizeof m);
    ew_motion_set set = {0};
    ew_optim *opt = NULL;
    ew_motion_sample *bs = malloc(sizeof *bs * (size_t)batch);
    int *pool = NULL;
    int rc = 1;
    ew_dist dist;
    ew_dist_world(&dist);
    const int root = dist.rank == 0;
    long step0 = 0;
    double t0 = cli_now();
    if (!g || !bs) {
        fail(cmd, "out of memory");
        goto done;
    }
    if (root) fprintf(stderr, "train-predictor: rendering and tracking %ld frames...\n", frames);
    if (ew_motion_collect(truth ? NULL : &t, g, &sc, seed, (int)frames, (int)stride, truth ? NULL : &set, truth ? &set : NULL, NULL,
                          NULL, err, sizeof err)) {
        fail(cmd, err);
        goto done;
    }
    if (set.n < 1) {
        fail(cmd, "no training windows (too few frames?)");
        goto done;
    }
    if (root) fprintf(stderr, "train-predictor: %d %s windows in %.1f s\n", set.n, truth ? "true" : "tracked", cli_now() - t0);
    if (clean) { /* drop implausible tracked windows (label-free) */
        int kept = 0;
        for (int i = 0; i < set.n; i++)
            if (ew_motion_plausible(&set.s[i], 0.4f, 0.8f)) set.s[kept] = set.s[i], set.flags[kept] = set.flags[i], kept++;
        if (root) fprintf(stderr, "train-predictor: --clean kept %d of %d windows\n", kept, set.n);
        set.n = kept;
        if (kept < 1) {
            fail(cmd, "no training windows left after --clean");
            goto done;
        }
    }
    if (edge_margin > 0) { /* windows well inside the view (label-free) */
        int kept = 0;
        for (int i = 0; i < set.n; i++)
            if (ew_motion_inside(&set.s[i], sc.x0, sc.x0 + sc.length_m, (float)edge_margin))
                set.s[kept] = set.s[i], set.flags[kept] = set.flags[i], kept++;
        if (root) fprintf(stderr, "train-predictor: --edge-margin kept %d of %d windows\n", kept, set.n);
        set.n = kept;
        if (kept < 1) {
            fail(cmd, "no training windows left after --edge-margin");
            goto done;
        }
    }
    /* draw pool: windows with a lane change or braking (flags) appear event_w times */
    long npool = set.n;
    for (int i = 0; i < set.n; i++) npool += set.flags[i] ? event_w - 1 : 0;
    pool = malloc(sizeof *pool * (size_t)npool);
    if (!pool || npool > 4000000000L) {
        fail(cmd, "out of memory");
        goto done;
    }
    for (int i = 0, j = 0; i < set.n; i++)
        for (long c = 0; c < (set.flags[i] ? event_w : 1); c++) pool[j++] = i;
    ew_motion_config mc;
    ew_motion_config_default(&mc);
    mc.hidden = (int)hidden;
    mc.dt = sc.dt;
    if (resume ? ew_motion_load(&m, out, &step0, err, sizeof err) : ew_motion_init(&m, &mc, seed, err, sizeof err)) {
        fail(cmd, err);
        goto done;
    }
    ew_optim_config oc = ew_optim_defaults(EW_OPTIM_ADAM);
    oc.lr = (float)lr;
    if ((trk && ew_tracker_move_to_backend(&t, be, err, sizeof err)) || ew_motion_move_to_backend(&m, be, err, sizeof err) ||
        ew_optim_create(m.params.items, m.params.n, &oc, &opt, err, sizeof err) ||
        ew_optim_use_backend(opt, be, err, sizeof err) || (resume && ew_tracker_load_optim(opt, out, err, sizeof err)) ||
        (dist.size > 1 && ew_optim_set_grad_reduce(opt, ew_dist_grad_reduce, &dist, err, sizeof err))) {
        fail(cmd, err);
        goto done;
    }
    if (!ew_dist_same_u64(&dist, (uint64_t)step0) || !ew_dist_same_params(&dist, m.params.items, m.params.n, NULL)) {
        fail(cmd, "the MPI ranks start from different checkpoints or parameters");
        goto done;
    }
    cli_progress pr;
    if (root) cli_progress_begin(&pr, "train-predictor", steps);
    float loss = 0;
    double avg = 0;
    int navg = 0;
    for (long s = step0; s < steps; s++) {
        ew_rng r;
        ew_rng_seed2(&r, seed, (uint64_t)s + 1u);
        /* this rank's slice of the global batch's draws */
        for (long i = 0; i < (long)dist.rank * batch; i++) (void)ew_rng_below(&r, (uint32_t)npool);
        for (long i = 0; i < batch; i++) bs[i] = set.s[pool[ew_rng_below(&r, (uint32_t)npool)]];
        if (ew_motion_train_step(&m, opt, g, bs, (int)batch, &loss, err, sizeof err)) {
            fail(cmd, err);
            goto done;
        }
        ew_dist_allreduce_mean(&dist, &loss, 1); /* the global batch's loss */
        avg += loss, navg++;
        if ((s + 1) % 50 == 0 || s + 1 == steps) {
            char extra[64];
            snprintf(extra, sizeof extra, "nll %.3f", avg / navg);
            if (root) cli_progress_update(&pr, s + 1, extra);
            avg = 0, navg = 0;
        }
        if ((s + 1) % ckpt_every == 0 || s + 1 == steps) {
            if (!ew_dist_same_params(&dist, m.params.items, m.params.n, NULL)) {
                fail(cmd, "the MPI ranks' parameters differ");
                goto done;
            }
            if (root && ew_motion_save(&m, opt, s + 1, out, err, sizeof err)) {
                fail(cmd, err);
                goto done;
            }
        }
    }
    if (root) cli_progress_end(&pr);
    if (!root) {
        rc = 0;
        goto done;
    }
    if (json)
        printf("{\"steps\": %ld, \"windows\": %d, \"source\": \"%s\", \"final_nll\": %.4f, \"seconds\": %.1f, \"out\": \"%s\", "
               "\"ranks\": %d, \"global_batch\": %ld, \"allreduce_floats_per_step\": %zu}\n",
               steps, set.n, truth ? "truth" : "tracked", loss, cli_now() - t0, out, dist.size, batch * dist.size,
               dist.size > 1 ? ew_optim_grad_numel(opt) : (size_t)0);
    else
        printf("train-predictor: %d %s windows, %ld steps, final NLL %.3f -> %s\n", set.n, truth ? "true" : "tracked",
               steps, loss, out);
    rc = 0;
done:
    if (rc) ew_dist_abort(&dist, 1);
    free(bs);
    free(pool);
    ew_optim_free(opt);
    ew_motion_free(&m);
    ew_motion_set_free(&set);
    ew_graph_destroy(g);
    ew_tracker_free(&t); /* before the backend (a moved tracker frees into its memory) */
    ew_backend_destroy(be);
    return rc;
}

static void help_eval_pred(void) {
    printf("usage: egoworld eval-predictor --model FILE --gt-model FILE --tracker FILE [options]\n\n"
           "Renders and tracks a held-out traffic video (other seed) and scores, on the same\n"
           "evaluation windows (a true 4 s track matched by a tracklet covering its 1 s history),\n"
           "the predictor trained on tracked positions (tracked history in), constant velocity\n"
           "from the same tracked history, and the predictor trained on true positions (true\n"
           "history in), all against the true future, with constant acceleration (from the tracked\n"
           "history) too. Errors are mean Euclidean distances (m).\n"
           "Keys: model_error_3s_m, cv_error_3s_m, gt_trained_error_3s_m, ca_error_3s_m, coverage_1sigma,\n"
           "coverage_2sigma (tracked-trained model, all horizons), also at 1 s and 2 s, on lane\n"
           "changes and braking events, split by whether the event had started at the anchor\n"
           "(lane_change_started_*, braking_not_started_*, ...), and windows counts. Coverage: the tracked-trained model\n"
           "predicts tracked positions; the truth differs by the tracker's error, which it cannot\n"
           "see. By default its covariances are calibrated (models/motion.h: a temperature per\n"
           "second of horizon growing at low speed, a correlation shrink, additive variances;\n"
           "fitted to the 1 and 2 sigma\n"
           "coverage) on a validation video (--cal-seed, never the test seed) and coverage_1sigma\n"
           "and coverage_2sigma use them; with --cal-seed none the checkpoint's calibration is used\n"
           "(written by --cal-out; cal_seed 0), or without one they add meas_noise_m^2 I instead\n"
           "(estimated without labels from the tracker's disagreement with itself on 180-degree\n"
           "rotated frames, first 100 frames). coverage_*_raw: the model's own covariances.\n\n"
           "  --model FILE      predictor trained on tracked positions (required)\n"
           "  --gt-model FILE   predictor trained on true positions (required)\n"
           "  --tracker FILE    tracker checkpoint (required)\n"
           "  --frames N        video frames (default 1500)\n"
           "  --stride N        frames between anchors (default 5)\n"
           "  --degrade NAME    clean | degraded (default clean)\n"
           "  --flow X          vehicles per hour per lane (default 1400)\n"
           "  --seed S          traffic seed (default 99)\n"
           "  --cal-seed S      first validation video's seed for the calibration, or none (default 50)\n"
           "  --cal-videos K    validation videos, seeds S .. S+K-1 (default 6)\n"
           "  --cal-frames N    frames of each (default 1500)\n"
           "  --cal-out FILE    also write the tracked-trained model with its calibration (for\n"
           "                    the planner and the viewer; no optimizer state)\n"
           "  --meas-noise X    with --cal-seed none: tracked-position noise in m, or auto (default auto)\n"
           "  --threads N       threads (default 1)\n"
           "  --json            print a JSON summary\n");
}

int cmd_eval_predictor(int argc, char **argv) {
    const char *cmd = "eval-predictor", *model = NULL, *gtm = NULL, *trk = NULL, *deg = "clean", *cal_out = NULL;
    long frames = 1500, stride = 5, threads = 1, cal_frames = 1500, cal_videos = 6;
    double flow = 1400, meas = -1;
    uint64_t seed = 99, cal_seed = 50;
    int json = 0, cal = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            help_eval_pred();
            return 0;
        } else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--model")) {
            if (!(model = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--gt-model")) {
            if (!(gtm = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--tracker")) {
            if (!(trk = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--degrade")) {
            if (!(deg = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--seed")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || cli_u64(cmd, a, v, &seed)) return 2;
        }
        else if (!strcmp(a, "--cal-out")) {
            if (!(cal_out = cli_value(cmd, argc, argv, &i))) return 2;
        }
        else if (!strcmp(a, "--cal-seed")) {
            if (!(v = cli_value(cmd, argc, argv, &i))) return 2;
            if (!strcmp(v, "none")) cal = 0;
            else if (cli_u64(cmd, a, v, &cal_seed)) return 2;
            else cal = 1;
        }
        FLAG_INT("--frames", 40, 1000000, frames)
        FLAG_INT("--cal-frames", 40, 1000000, cal_frames)
        FLAG_INT("--cal-videos", 1, 100, cal_videos)
        FLAG_INT("--stride", 1, 1000, stride)
        FLAG_INT("--threads", 1, 1024, threads)
        FLAG_F("--flow", 0, 5000, flow)
        else if (!strcmp(a, "--meas-noise")) {
            if (!(v = cli_value(cmd, argc, argv, &i))) return 2;
            if (strcmp(v, "auto") && cli_float(cmd, a, v, 0, 100, &meas)) return 2;
            if (!strcmp(v, "auto")) meas = -1;
        }
        else return cli_unknown(cmd, a);
    }
    if (!model || !gtm || !trk) {
        fprintf(stderr, "egoworld %s: %s is required (see --help)\n", cmd,
                !model ? "--model FILE" : (!gtm ? "--gt-model FILE" : "--tracker FILE"));
        return 2;
    }
    if (cal && seed >= cal_seed && seed - cal_seed < (uint64_t)cal_videos) {
        fprintf(stderr, "egoworld %s: --cal-seed: the validation seeds must not include the test --seed\n", cmd);
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
    ew_motion mt, mg;
    ew_motion_set vt = {0}, vg = {0};
    float *ov = NULL;
    int ncal = 0;
    memset(&mt, 0, sizeof mt);
    memset(&mg, 0, sizeof mg);
    if (ew_tracker_load(&t, trk, NULL, err, sizeof err)) return fail(cmd, err);
    ew_backend *be = ew_backend_cpu_create((int)threads);
    ew_graph *g = be ? ew_graph_create(be, 0) : NULL;
    ew_motion_set pt = {0}, pg = {0};
    float *ot = NULL, *og = NULL, *oraw = NULL;
    int rc = 1;
    long mstep = 0;
    if (ew_motion_load(&mt, model, &mstep, err, sizeof err) || ew_motion_load(&mg, gtm, NULL, err, sizeof err)) {
        fail(cmd, err);
        goto done;
    }
    if (!g) {
        fail(cmd, "out of memory");
        goto done;
    }
    fprintf(stderr, "eval-predictor: rendering and tracking %ld frames...\n", frames);
    if (ew_motion_collect(&t, g, &sc, seed, (int)frames, (int)stride, NULL, NULL, &pt, &pg, err, sizeof err)) {
        fail(cmd, err);
        goto done;
    }
    if (pt.n < 1) {
        fail(cmd, "no evaluation windows");
        goto done;
    }
    /* calibration of the tracked-trained model on a validation video (never the test one) */
    /* without --cal-seed: the checkpoint's own calibration (eval-predictor --cal-out), if any */
    ew_motion_cal ident;
    ew_motion_cal_none(&ident);
    int ck_cal = !cal && memcmp(&mt.cal, &ident, sizeof ident) != 0;
    if (ck_cal) meas = 0.0;
    if (cal) {
        ew_motion_cal_none(&mt.cal);
        for (long v = 0; v < cal_videos; v++) {
            uint64_t cs = cal_seed + (uint64_t)v;
            if (cs == seed) {
                fail(cmd, "a calibration video's seed (--cal-seed .. + --cal-videos - 1) is the test --seed");
                goto done;
            }
            fprintf(stderr, "eval-predictor: calibration video %ld/%ld (seed %llu, %ld frames)...\n", v + 1, cal_videos,
                    (unsigned long long)cs, cal_frames);
            ew_motion_set a = {0}, b = {0};
            int bad = ew_motion_collect(&t, g, &sc, cs, (int)cal_frames, (int)stride, NULL, NULL, &a, &b, err, sizeof err);
            if (!bad && (ew_motion_set_append(&vt, &a) || ew_motion_set_append(&vg, &b)))
                bad = 1, snprintf(err, sizeof err, "out of memory");
            ew_motion_set_free(&a);
            ew_motion_set_free(&b);
            if (bad) {
                fail(cmd, err);
                goto done;
            }
        }
        ncal = vt.n;
        ov = malloc(sizeof(float) * ((size_t)vt.n + 1) * EW_MOTION_FUT * 5);
        if (!ov || ew_motion_predict(&mt, g, vt.s, vt.n, ov, err, sizeof err)) {
            fail(cmd, ov ? err : "out of memory");
            goto done;
        }
        for (int i = 0; i < vt.n; i++) memcpy(vt.s[i].fut, vg.s[i].fut, sizeof vt.s[i].fut); /* true futures */
        ew_motion_calibrate(&mt, vt.s, vt.n, ov);
        meas = 0.0;
        if (cal_out && ew_motion_save(&mt, NULL, mstep, cal_out, err, sizeof err)) {
            fail(cmd, err);
            goto done;
        }
    }
    /* measurement noise of the tracked positions the model was trained on, without labels */
    long npairs = 0;
    if (meas < 0) {
        ew_video_stream *st = ew_video_stream_create(&sc, seed, err, sizeof err);
        int rows = 0, cols = 0;
        if (st) ew_video_stream_size(st, &rows, &cols);
        float *fr = st ? malloc(sizeof(float) * 100 * (size_t)rows * cols) : NULL;
        ew_video_truth *tv = malloc(sizeof *tv * 512);
        int ok = st && fr && tv;
        for (int f = 0; ok && f < 100; f++) ok = ew_video_stream_next(st, fr + (size_t)f * rows * cols, tv, 512, err, sizeof err) >= 0;
        float sg = 0.0f;
        if (ok) ok = ew_tracker_flip_noise(&t, g, fr, 100, rows, cols, sc.m_per_px, &sg, &npairs, err, sizeof err) == 0;
        free(fr), free(tv);
        ew_video_stream_free(st);
        if (!ok) {
            fail(cmd, err);
            goto done;
        }
        meas = sg;
    }
    ot = malloc(sizeof(float) * (size_t)pt.n * EW_MOTION_FUT * 5);
    og = malloc(sizeof(float) * (size_t)pt.n * EW_MOTION_FUT * 5);
    oraw = malloc(sizeof(float) * (size_t)pt.n * EW_MOTION_FUT * 5);
    ew_motion_cal used = mt.cal;
    if (!ot || !og || !oraw || ew_motion_predict(&mt, g, pt.s, pt.n, ot, err, sizeof err) ||
        ew_motion_predict(&mg, g, pg.s, pg.n, og, err, sizeof err)) {
        fail(cmd, ot && og && oraw ? err : "out of memory");
        goto done;
    }
    memcpy(oraw, ot, sizeof(float) * (size_t)pt.n * EW_MOTION_FUT * 5);
    ew_motion_cal_none(&mt.cal);
    if ((cal || ck_cal) && ew_motion_predict(&mt, g, pt.s, pt.n, oraw, err, sizeof err)) {
        fail(cmd, err);
        goto done;
    }
    /* history noise of the tracked inputs against the truth (diagnostic) */
    double hse = 0.0;
    for (int i = 0; i < pt.n; i++)
        for (int h = 0; h < EW_MOTION_HIST; h++)
            hse += pow(pt.s[i].hist[h][0] - pg.s[i].hist[h][0], 2) + pow(pt.s[i].hist[h][1] - pg.s[i].hist[h][1], 2);
    hse = sqrt(hse / (2.0 * pt.n * EW_MOTION_HIST));
    /* sums [set][what][horizon 1/2/3 s]; what: 0 model, 1 cv, 2 gt-model, 3 ca; sets: 0 all windows,
     * 1 lane changes, 2 braking, 3/4 lane changes started / not started at the anchor (true lateral
     * speed over the last 0.5 s above / below 0.3 m/s), 5/6 braking started / not (true speed over
     * the last 0.4 s of the history at least 0.5 m/s below the speed over its first 0.4 s, or not) */
    enum { NSET = 7 };
    double sum[NSET][4][3] = {{{0}}}, cnt[NSET] = {0};
    long in1 = 0, in2 = 0, tot = 0, in1_3 = 0, in2_3 = 0, raw1 = 0, raw2 = 0;
    for (int i = 0; i < pt.n; i++) {
        float cv[2 * EW_MOTION_FUT];
        ew_motion_cv(&pt.s[i], sc.dt, cv);
        /* constant acceleration from the same history: velocities over frames 0-5 and 4-9 */
        const float(*hp)[2] = pt.s[i].hist;
        float dtv = sc.dt;
        float v1x = (hp[9][0] - hp[4][0]) / (5 * dtv), v1y = (hp[9][1] - hp[4][1]) / (5 * dtv);
        float v0x = (hp[5][0] - hp[0][0]) / (5 * dtv), v0y = (hp[5][1] - hp[0][1]) / (5 * dtv);
        float ax = (v1x - v0x) / (4 * dtv), ay = (v1y - v0y) / (4 * dtv);
        const float(*th)[2] = pg.s[i].hist;
        int lc_on = fabsf(th[9][1] - th[4][1]) / (5 * dtv) > 0.3f;
        int br_on = (th[9][0] - th[5][0]) / (4 * dtv) - (th[4][0] - th[0][0]) / (4 * dtv) < -0.5f;
        int lc = pt.flags[i] & 1, br = (pt.flags[i] & 2) != 0;
        int in_set[NSET] = {1, lc, br, lc && lc_on, lc && !lc_on, br && br_on, br && !br_on};
        for (int hz = 0; hz < 3; hz++) {
            int k = 10 * (hz + 1) - 1;
            const float *tru = pg.s[i].fut[k], *a = ot + ((size_t)i * EW_MOTION_FUT + k) * 5,
                        *b = og + ((size_t)i * EW_MOTION_FUT + k) * 5;
            /* v1 is the velocity 2.5 frames before the last one: v9 = v1 + a 2.5 dt */
            double T = (k + 1) * dtv, tau = 2.5 * dtv;
            double cax_ = hp[9][0] + (v1x + ax * tau) * T + 0.5 * ax * T * T;
            double cay_ = hp[9][1] + (v1y + ay * tau) * T + 0.5 * ay * T * T;
            double ew4[4] = {hypot(a[0] - tru[0], a[1] - tru[1]), hypot(cv[2 * k] - tru[0], cv[2 * k + 1] - tru[1]),
                             hypot(b[0] - tru[0], b[1] - tru[1]), hypot(cax_ - tru[0], cay_ - tru[1])};
            for (int q = 0; q < NSET; q++)
                if (in_set[q])
                    for (int w = 0; w < 4; w++) sum[q][w][hz] += ew4[w];
        }
        for (int q = 0; q < NSET; q++) cnt[q] += in_set[q] != 0;
        for (int k = 0; k < EW_MOTION_FUT; k++) {
            const float *a = ot + ((size_t)i * EW_MOTION_FUT + k) * 5, *r = oraw + ((size_t)i * EW_MOTION_FUT + k) * 5;
            double r2 = ew_gauss2d_maha2(r[0], r[1], r[2], r[3], r[4], pg.s[i].fut[k][0], pg.s[i].fut[k][1]);
            raw1 += r2 <= 1.0, raw2 += r2 <= 4.0;
            /* plus the measurement noise (isotropic, independent; 0 when calibrated): covariance + meas^2 I */
            double sx = sqrt((double)a[2] * a[2] + meas * meas), sy = sqrt((double)a[3] * a[3] + meas * meas);
            double rr = (double)a[4] * a[2] * a[3] / (sx * sy);
            double d2 = ew_gauss2d_maha2(a[0], a[1], sx, sy, rr, pg.s[i].fut[k][0], pg.s[i].fut[k][1]);
            in1 += d2 <= 1.0, in2 += d2 <= 4.0, tot++;
            if (k == EW_MOTION_FUT - 1) in1_3 += d2 <= 1.0, in2_3 += d2 <= 4.0;
        }
    }
    double e[NSET][4][3];
    for (int q = 0; q < NSET; q++)
        for (int w = 0; w < 4; w++)
            for (int hz = 0; hz < 3; hz++) e[q][w][hz] = cnt[q] > 0 ? sum[q][w][hz] / cnt[q] : NAN;
    double c1 = (double)in1 / tot, c2 = (double)in2 / tot;
    if (json) {
        printf("{\"windows\": %d, \"lane_change_windows\": %.0f, \"braking_windows\": %.0f, ", pt.n, cnt[1], cnt[2]);
        print_num("model_error_3s_m", e[0][0][2], 0);
        print_num("cv_error_3s_m", e[0][1][2], 0);
        print_num("gt_trained_error_3s_m", e[0][2][2], 0);
        print_num("ca_error_3s_m", e[0][3][2], 0);
        print_num("coverage_1sigma", c1, 0);
        print_num("coverage_2sigma", c2, 0);
        print_num("coverage_1sigma_raw", (double)raw1 / tot, 0);
        print_num("coverage_2sigma_raw", (double)raw2 / tot, 0);
        print_num("meas_noise_m", meas, 0);
        printf("\"meas_noise_pairs\": %ld, \"calibrated\": %s, \"cal_seed\": %llu, \"cal_videos\": %ld, "
               "\"cal_windows\": %d, ",
               npairs, cal || ck_cal ? "true" : "false", (unsigned long long)(cal ? cal_seed : 0), cal ? cal_videos : 0, ncal);
        printf("\"cal\": {\"t\": [%.4f, %.4f, %.4f], \"c\": %.4f, \"ax_m\": %.4f, \"ay_m\": %.4f, \"beta\": %.4f}, ",
               used.t[0], used.t[1], used.t[2], used.c, used.ax, used.ay, used.beta);
        print_num("history_rmse_m", hse, 0);
        print_num("coverage_1sigma_3s", (double)in1_3 / pt.n, 0);
        print_num("coverage_2sigma_3s", (double)in2_3 / pt.n, 0);
        print_num("model_error_1s_m", e[0][0][0], 0);
        print_num("model_error_2s_m", e[0][0][1], 0);
        print_num("cv_error_1s_m", e[0][1][0], 0);
        print_num("cv_error_2s_m", e[0][1][1], 0);
        print_num("gt_trained_error_1s_m", e[0][2][0], 0);
        print_num("gt_trained_error_2s_m", e[0][2][1], 0);
        print_num("model_vs_cv_3s", e[0][0][2] / e[0][1][2] - 1.0, 0);
        print_num("model_vs_gt_trained_3s", e[0][0][2] / e[0][2][2] - 1.0, 0);
        print_num("lane_change_model_error_3s_m", e[1][0][2], 0);
        print_num("lane_change_cv_error_3s_m", e[1][1][2], 0);
        print_num("lane_change_gt_trained_error_3s_m", e[1][2][2], 0);
        print_num("lane_change_model_vs_cv_3s", e[1][0][2] / e[1][1][2] - 1.0, 0);
        print_num("braking_model_error_3s_m", e[2][0][2], 0);
        print_num("braking_cv_error_3s_m", e[2][1][2], 0);
        print_num("braking_gt_trained_error_3s_m", e[2][2][2], 0);
        print_num("braking_model_vs_cv_3s", e[2][0][2] / e[2][1][2] - 1.0, 0);
        static const char *sn[4] = {"lane_change_started", "lane_change_not_started", "braking_started",
                                    "braking_not_started"};
        for (int q = 3; q < NSET; q++) {
            char key[96];
            printf("\"%s_windows\": %.0f, ", sn[q - 3], cnt[q]);
            snprintf(key, sizeof key, "%s_model_error_3s_m", sn[q - 3]);
            print_num(key, e[q][0][2], 0);
            snprintf(key, sizeof key, "%s_cv_error_3s_m", sn[q - 3]);
            print_num(key, e[q][1][2], 0);
            snprintf(key, sizeof key, "%s_gt_trained_error_3s_m", sn[q - 3]);
            print_num(key, e[q][2][2], q == NSET - 1);
        }
        printf("}\n");
    } else {
        printf("eval-predictor: %d windows (%.0f lane changes, %.0f braking)\n", pt.n, cnt[1], cnt[2]);
        printf("  error at 1/2/3 s (m): model %.3f %.3f %.3f | cv %.3f %.3f %.3f | gt-trained %.3f %.3f %.3f\n",
               e[0][0][0], e[0][0][1], e[0][0][2], e[0][1][0], e[0][1][1], e[0][1][2], e[0][2][0], e[0][2][1], e[0][2][2]);
        printf("  constant acceleration at 1/2/3 s (m): %.3f %.3f %.3f\n", e[0][3][0], e[0][3][1], e[0][3][2]);
        printf("  lane changes at 3 s: model %.3f cv %.3f gt-trained %.3f | braking: model %.3f cv %.3f gt-trained %.3f\n",
               e[1][0][2], e[1][1][2], e[1][2][2], e[2][0][2], e[2][1][2], e[2][2][2]);
        if (cal || ck_cal)
            printf("  coverage 1 sigma %.3f (39.3 %%), 2 sigma %.3f (86.5 %%) calibrated (first seed %llu) (T %.3f %.3f %.3f, "
                   "c %.3f, ax %.3f m, ay %.3f m); raw: %.3f %.3f\n",
                   c1, c2, (unsigned long long)(cal ? cal_seed : 0), used.t[0], used.t[1], used.t[2], used.c, used.ax, used.ay,
                   (double)raw1 / tot, (double)raw2 / tot);
        else
            printf("  coverage 1 sigma %.3f (39.3 %%), 2 sigma %.3f (86.5 %%) with measurement noise %.4f m; raw: %.3f %.3f\n",
                   c1, c2, meas, (double)raw1 / tot, (double)raw2 / tot);
    }
    rc = 0;
done:
    free(ot), free(og), free(oraw), free(ov);
    ew_motion_set_free(&vt);
    ew_motion_set_free(&vg);
    ew_motion_set_free(&pt);
    ew_motion_set_free(&pg);
    ew_motion_free(&mt);
    ew_motion_free(&mg);
    ew_graph_destroy(g);
    ew_backend_destroy(be);
    ew_tracker_free(&t);
    return rc;
}
