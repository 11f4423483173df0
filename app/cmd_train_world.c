/* cmd_train_world.c - `egoworld train-world`: trains the world model (models/fm.h) on one or
 * more trajectory datasets (sim/traj.h, pooled by models/fm_data.h), with progress,
 * periodic validation, atomic checkpoints, exact resume, divergence stop and a metrics CSV.
 *
 * Files for --out STEM.safetensors: STEM.safetensors (the model: parameters, config, stats,
 * raster scale), STEM.ckpt.safetensors (the same plus the Adam state as "optim.*" tensors and
 * the training position in metadata; --resume reads it), STEM.csv (one row per step).
 * Reproducibility: batch k holds the training samples ew_fm_data_order(n, seed, k*B + r) and
 * its training randomness is seeded by a pure function of (seed, k); the learning rate is a
 * pure function of k; so a run stopped after a checkpoint and resumed with the same flags and
 * thread count ends with the same parameters bit for bit.
 *
 * Data parallel (under mpirun, models/dist.h): --batch is per rank; the global batch of step k
 * is the ranks' batches in rank order (rank r takes order positions k*G + r*B .. + B, G =
 * ranks*B), so N ranks with --batch B see exactly the samples of 1 rank with --batch N*B; the
 * gradients are averaged over the ranks before clipping (optimizer reducer), dropout/z noise
 * comes from a per-rank seed stream, and rank 0 alone writes the checkpoints, the CSV and the
 * progress. The checkpoint stores the global batch, so a run resumes with any rank count
 * whose ranks*--batch equals it. An error on any rank aborts the whole job.
 */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app/cli.h"
#include "sim/fsutil.h"
#include "models/autodiff.h"
#include "models/checkpoint.h"
#include "models/dist.h"
#include "models/fm.h"
#include "models/fm_data.h"
#include "models/optim.h"

#define META_STEP "egoworld.train.step"
#define META_SEED "egoworld.train.seed"
#define META_BATCH "egoworld.train.batch"
#define META_NTRAIN "egoworld.train.n_train"
#define META_SEEN "egoworld.train.samples_seen"
#define META_DATA "egoworld.train.data"
#define META_STEPS "egoworld.train.steps"
#define META_VAL "egoworld.train.val_loss"

static void help(void) {
    printf("usage: egoworld train-world --data DIR[,DIR...] --out FILE.safetensors [options]\n\n"
           "Trains the world model on trajectory datasets (written by `egoworld collect`); batches\n"
           "are rendered on the fly. Writes FILE.safetensors (the model), FILE.ckpt.safetensors\n"
           "(model + optimizer state, for --resume) and FILE.csv (metrics per step), where FILE is\n"
           "the --out path without its .safetensors suffix.\n\n"
           "  --data DIR         dataset folder; repeat or separate by commas to pool several\n"
           "  --out FILE         output model (required)\n"
           "  --variant V        fm | fm-km | fm-km-noaction (default fm-km)\n"
           "  --stochastic       the stochastic model (latent z); start it with --init DET\n"
           "  --init FILE        start from a checkpoint: a deterministic model for --stochastic\n"
           "                     (its widths, n_cond, size and stats are taken), or a model with\n"
           "                     the same configuration (warm start; its stats are kept)\n"
           "  --steps N          training steps (default 1000)\n"
           "  --batch B          samples per step (default 32); under mpirun per rank (global\n"
           "                     batch = ranks x B, rank order; resume needs the same global batch)\n"
           "  --lr X             Adam learning rate (default 1e-4)\n"
           "  --lr-min X         cosine decay from --lr to X over --steps (default: = --lr, constant)\n"
           "  --clip X           gradient-norm clip (default 5)\n"
           "  --nf N --hidden N --n-cond N --n-pred N --nz N   model widths (default 64 256 20 20 32)\n"
           "  --dropout X --z-dropout X --beta X             (default 0.1 0.5 1e-6)\n"
           "  --rows N --cols N --mpp X   image size and scale (default 117 24 0.617)\n"
           "  --seed S           data order, initialisation and training noise (default 1)\n"
           "  --threads N        threads (default 2)\n"
           CLI_DEVICE_HELP
           "  --val-every N      validation loss every N steps (default 200)\n"
           "  --val-samples N    fixed validation samples (default 128)\n"
           "  --ckpt-every N     checkpoint every N steps (default 200) and at the end\n"
           "  --log-every N      progress line every N steps when not on a terminal (default 50)\n"
           "  --resume           continue from FILE.ckpt.safetensors (same flags: same result)\n"
           "  --json             print a JSON summary\n\n"
           "A non-finite loss or gradient, or a loss above 10x its running median, stops the run\n"
           "(exit 1) and leaves the last checkpoint as it was.\n");
}

typedef struct {
    ew_fm *m;
    ew_fm_trainer *t;
    const char *model_path, *ckpt_path, *data_desc;
    long step, steps;
    uint64_t seed;
    int batch;
    size_t n_train;
    float mpp;
    double val_loss;
} save_ctx;

static int save_all(const save_ctx *s, char *err, size_t errsz) {
    char step[32], seed[32], batch[32], ntrain[32], seen[32], steps[32], mpp[32], val[32], ostep[32];
    snprintf(step, sizeof step, "%ld", s->step);
    snprintf(seed, sizeof seed, "%" PRIu64, s->seed);
    snprintf(batch, sizeof batch, "%d", s->batch);
    snprintf(ntrain, sizeof ntrain, "%zu", s->n_train);
    snprintf(seen, sizeof seen, "%" PRIu64, (uint64_t)s->step * (uint64_t)s->batch);
    snprintf(steps, sizeof steps, "%ld", s->steps);
    snprintf(mpp, sizeof mpp, "%.9g", (double)s->mpp);
    snprintf(val, sizeof val, "%.9g", s->val_loss);
    snprintf(ostep, sizeof ostep, "%ld", ew_optim_step_count(ew_fm_trainer_optim(s->t)));
    ew_kv meta[] = {{META_STEP, step},   {META_SEED, seed},         {META_BATCH, batch}, {META_NTRAIN, ntrain},
                    {META_SEEN, seen},   {META_DATA, s->data_desc}, {META_STEPS, steps}, {EW_FM_META_MPP, mpp},
                    {META_VAL, val},     {EW_OPTIM_META_STEP, ostep}};
    int nmeta = (int)(sizeof meta / sizeof meta[0]);
    int nst;
    const ew_param *st = ew_optim_state(ew_fm_trainer_optim(s->t), &nst);
    /* the model file first (no optimizer state, no optimizer step), then the checkpoint that
     * records the progress: a kill between the two leaves the checkpoint one step behind the
     * model and --resume redoes that step bit for bit (tools/kill_resume.sh) */
    if (ew_fm_save(s->m, s->model_path, NULL, 0, meta, nmeta - 1, err, errsz)) return -1;
    return ew_fm_save(s->m, s->ckpt_path, st, nst, meta, nmeta, err, errsz);
}

/* Validation loss over the fixed samples vidx[0..nv). */
static int validate(ew_fm_trainer *t, const ew_fm_data *d, const size_t *vidx, size_t nv, const ew_raster_cfg *rc,
                    int threads, ew_fm_batch *b, uint64_t seed, ew_dist *dist, double *loss, double *img, char *err,
                    size_t errsz) {
    double sl = 0, si = 0;
    for (size_t i = 0; i < nv; i += (size_t)b->batch) {
        if ((long)(i / (size_t)b->batch) % dist->size != dist->rank) continue; /* another rank's batch */
        int n = (int)(nv - i < (size_t)b->batch ? nv - i : (size_t)b->batch);
        if (ew_fm_data_fill(d, EW_SPLIT_VAL, vidx + i, n, rc, threads, b, err, errsz)) return -1;
        ew_fm_batch bb = *b;
        bb.batch = n;
        ew_fm_losses l;
        if (ew_fm_eval_batch(t, &bb, seed + i, &l, err, errsz)) return -1;
        sl += (double)l.loss * n;
        si += (double)l.img_mse * n;
    }
    double s2[2] = {sl, si};
    ew_dist_allreduce_sum_f64(dist, s2, 2);
    sl = s2[0];
    si = s2[1];
    *loss = sl / (double)nv;
    *img = si / (double)nv;
    return 0;
}

int cmd_train_world(int argc, char **argv) {
    const char *cmd = "train-world";
    const char *dirs[EW_FM_DATA_MAX_SETS];
    char *dirbuf[EW_FM_DATA_MAX_SETS] = {0};
    int ndirs = 0;
    const char *out = NULL, *init = NULL, *variant_s = "fm-km";
    long steps = 1000, batch = 32, nf = 64, hidden = 256, n_cond = 20, n_pred = 20, nz = 32, rows = 117, cols = 24;
    int cuda = 0; /* --device */
    long threads = 2, val_every = 200, val_samples = 128, ckpt_every = 200, log_every = 50;
    double lr = 1e-4, lr_min = -1, clip = 5, dropout = 0.1, z_dropout = 0.5, beta = 1e-6, mpp = 0.617;
    uint64_t seed = 1;
    int stochastic = 0, resume = 0, json = 0, rc = 1;
    int set_nf = 0, set_hidden = 0, set_ncond = 0, set_npred = 0, set_rows = 0, set_cols = 0, set_mpp = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { help(); return 0; }
        else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--stochastic")) stochastic = 1;
        else if (!strcmp(a, "--resume")) resume = 1;
        else if (!strcmp(a, "--data")) {
            if (!(v = cli_value(cmd, argc, argv, &i))) return 2;
            char *copy = strdup(v), *save = NULL;
            if (!copy) return 1;
            for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                if (ndirs == EW_FM_DATA_MAX_SETS) {
                    fprintf(stderr, "egoworld %s: --data: at most %d datasets\n", cmd, EW_FM_DATA_MAX_SETS);
                    free(copy);
                    return 2;
                }
                dirs[ndirs++] = tok;
            }
            for (int k = 0; k < EW_FM_DATA_MAX_SETS; k++)
                if (!dirbuf[k]) { dirbuf[k] = copy; break; }
        }
        else if (!strcmp(a, "--out")) { if (!(out = cli_value(cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--init")) { if (!(init = cli_value(cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--variant")) { if (!(variant_s = cli_value(cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--steps")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 1, 100000000, &steps)) return 2; }
        else if (!strcmp(a, "--batch")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 1, 4096, &batch)) return 2; }
        else if (!strcmp(a, "--nf")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 1, 1024, &nf)) return 2; set_nf = 1; }
        else if (!strcmp(a, "--hidden")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 1, 8192, &hidden)) return 2; set_hidden = 1; }
        else if (!strcmp(a, "--n-cond")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 1, 100, &n_cond)) return 2; set_ncond = 1; }
        else if (!strcmp(a, "--n-pred")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 1, 200, &n_pred)) return 2; set_npred = 1; }
        else if (!strcmp(a, "--nz")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 1, 1024, &nz)) return 2; }
        else if (!strcmp(a, "--rows")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 8, 1024, &rows)) return 2; set_rows = 1; }
        else if (!strcmp(a, "--cols")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 8, 1024, &cols)) return 2; set_cols = 1; }
        else if (!strcmp(a, "--mpp")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_float(cmd, a, v, 0.01, 100, &mpp)) return 2; set_mpp = 1; }
        else if (!strcmp(a, "--lr")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_float(cmd, a, v, 1e-12, 1e12, &lr)) return 2; }
        else if (!strcmp(a, "--lr-min")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_float(cmd, a, v, 0, 1e12, &lr_min)) return 2; }
        else if (!strcmp(a, "--clip")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_float(cmd, a, v, 0, 1e12, &clip)) return 2; }
        else if (!strcmp(a, "--dropout")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_float(cmd, a, v, 0, 0.95, &dropout)) return 2; }
        else if (!strcmp(a, "--z-dropout")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_float(cmd, a, v, 0, 1, &z_dropout)) return 2; }
        else if (!strcmp(a, "--beta")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_float(cmd, a, v, 0, 1e6, &beta)) return 2; }
        else if (!strcmp(a, "--seed")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_u64(cmd, a, v, &seed)) return 2; }
        else if (!strcmp(a, "--threads")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 1, 1024, &threads)) return 2; }
        else if (!strcmp(a, "--device")) { if (cli_device(cmd, argc, argv, &i, &cuda)) return 2; }
        else if (!strcmp(a, "--val-every")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 1, 100000000, &val_every)) return 2; }
        else if (!strcmp(a, "--val-samples")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 0, 1000000, &val_samples)) return 2; }
        else if (!strcmp(a, "--ckpt-every")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 1, 100000000, &ckpt_every)) return 2; }
        else if (!strcmp(a, "--log-every")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 1, 100000000, &log_every)) return 2; }
        else { for (int k = 0; k < EW_FM_DATA_MAX_SETS; k++) free(dirbuf[k]); return cli_unknown(cmd, a); }
    }
    char err[1024] = "";
    char *model_path = NULL, *ckpt_path = NULL, *csv_path = NULL, *data_desc = NULL;
    ew_fm m;
    int have_model = 0, have_data = 0;
    ew_fm_data d;
    ew_backend *be = NULL;
    ew_fm_trainer *t = NULL;
    ew_fm_batch b = {0}, vb = {0};
    size_t *idx = NULL, *vidx = NULL;
    float *hist = NULL, *sorted = NULL;
    FILE *csv = NULL;
    ew_fm_variant variant;
    ew_checkpoint *ck = NULL;
    ew_dist dist;
    ew_dist_world(&dist);
    const int root = dist.rank == 0;
    const long gbatch = batch * dist.size; /* the global batch */
    if (!ndirs || !out) {
        fprintf(stderr, "egoworld %s: %s is required (see --help)\n", cmd, !ndirs ? "--data DIR" : "--out FILE");
        rc = 2;
        goto done;
    }
    if (cli_device_check(cmd, cuda)) goto done; /* rc 1 */
    if (ew_fm_variant_parse(variant_s, &variant)) {
        fprintf(stderr, "egoworld %s: --variant: expected fm, fm-km or fm-km-noaction, not '%s'\n", cmd, variant_s);
        rc = 2;
        goto done;
    }
    if (lr_min < 0) lr_min = lr;
    model_path = strdup(out);
    ckpt_path = cli_path_with(out, ".ckpt.safetensors");
    csv_path = cli_path_with(out, ".csv");
    if (!model_path || !ckpt_path || !csv_path) goto oom;
    {
        size_t dl = 1;
        for (int k = 0; k < ndirs; k++) dl += strlen(dirs[k]) + 1;
        data_desc = calloc(dl, 1);
        if (!data_desc) goto oom;
        for (int k = 0; k < ndirs; k++) {
            if (k) strcat(data_desc, ",");
            strcat(data_desc, dirs[k]);
        }
    }

    /* ---- the model: resume, init from a checkpoint, or new ---- */
    long start = 0;
    int resuming = resume && access(ckpt_path, R_OK) == 0;
    if (resume && !resuming) fprintf(stderr, "egoworld %s: no checkpoint %s yet; starting a new run\n", cmd, ckpt_path);
    if (resuming) {
        if (ew_checkpoint_open(ckpt_path, &ck, err, sizeof err) || ew_fm_load_ckpt(&m, ck, err, sizeof err)) {
            ew_checkpoint_close(ck);
            ck = NULL;
            goto fail;
        }
        have_model = 1;
        const char *ms = ew_checkpoint_meta(ck, META_STEP), *msd = ew_checkpoint_meta(ck, META_SEED),
                   *mb = ew_checkpoint_meta(ck, META_BATCH), *mp = ew_checkpoint_meta(ck, EW_FM_META_MPP);
        if (!ms || !msd || !mb || !mp) {
            snprintf(err, sizeof err, "%s: not a train-world checkpoint (missing %s)", ckpt_path,
                     !ms ? META_STEP : !msd ? META_SEED : !mb ? META_BATCH : EW_FM_META_MPP);
            goto fail;
        }
        start = strtol(ms, NULL, 10);
        if (strtoull(msd, NULL, 10) != seed || strtol(mb, NULL, 10) != gbatch) {
            snprintf(err, sizeof err,
                     "%s: written with --seed %s and a global batch of %s; resume with the same seed and ranks x "
                     "--batch = %s (now %d x %ld)",
                     ckpt_path, msd, mb, mb, dist.size, batch);
            goto fail;
        }
        mpp = strtod(mp, NULL);
        if (start >= steps) {
            snprintf(err, sizeof err, "%s: already at step %ld of --steps %ld", ckpt_path, start, steps);
            goto fail;
        }
    } else {
        ew_fm_config c = ew_fm_config_default();
        c.variant = variant;
        c.stochastic = stochastic;
        c.nf = (int)nf;
        c.hidden = (int)hidden;
        c.n_cond = (int)n_cond;
        c.n_pred = (int)n_pred;
        c.nz = (int)nz;
        c.height = (int)rows;
        c.width = (int)cols;
        c.dropout = (float)dropout;
        c.z_dropout = (float)z_dropout;
        c.beta = (float)beta;
        c.seed = seed;
        if (init) { /* the shape comes from the init checkpoint */
            ew_fm im;
            ew_checkpoint *ick;
            if (ew_checkpoint_open(init, &ick, err, sizeof err)) goto fail;
            int lrc = ew_fm_load_ckpt(&im, ick, err, sizeof err);
            const char *imp = ew_checkpoint_meta(ick, EW_FM_META_MPP);
            if (!lrc) {
                if ((set_nf && nf != im.cfg.nf) || (set_hidden && hidden != im.cfg.hidden) ||
                    (set_ncond && n_cond != im.cfg.n_cond) || (set_rows && rows != im.cfg.height) ||
                    (set_cols && cols != im.cfg.width)) {
                    snprintf(err, sizeof err, "%s: --nf/--hidden/--n-cond/--rows/--cols differ from the init checkpoint", init);
                    lrc = -1;
                }
                c.variant = im.cfg.variant;
                c.nf = im.cfg.nf;
                c.hidden = im.cfg.hidden;
                c.n_cond = im.cfg.n_cond;
                c.height = im.cfg.height;
                c.width = im.cfg.width;
                c.channels = im.cfg.channels;
                c.dt = im.cfg.dt;
                if (!set_npred) c.n_pred = im.cfg.n_pred;
                if (!stochastic && im.cfg.stochastic) c.stochastic = 1;
                if (!stochastic && !im.cfg.stochastic) c.nz = im.cfg.nz;
                if (imp && !set_mpp) mpp = strtod(imp, NULL);
                ew_fm_free(&im);
            }
            ew_checkpoint_close(ick);
            if (lrc) goto fail;
        }
        n_cond = c.n_cond;
        n_pred = c.n_pred;
        /* data first (dt and stats) */
        if (ew_fm_data_open(&d, dirs, ndirs, c.n_cond, c.n_pred, 1, err, sizeof err)) goto fail;
        have_data = 1;
        c.dt = ew_fm_data_dt(&d);
        ew_fm_stats st;
        if (ew_fm_data_stats(&d, &st, err, sizeof err)) goto fail;
        if (ew_fm_init(&m, &c, &st, err, sizeof err)) goto fail;
        have_model = 1;
        if (init) {
            if (c.stochastic) {
                ew_fm_config ic;
                ew_checkpoint *ick;
                if (ew_checkpoint_open(init, &ick, err, sizeof err)) goto fail;
                int det = ew_fm_config_from_json(ew_checkpoint_meta(ick, EW_FM_META_CONFIG), &ic, err, sizeof err) == 0 &&
                          !ic.stochastic;
                if (det) {
                    ew_checkpoint_close(ick);
                    if (ew_fm_init_from_deterministic(&m, init, err, sizeof err)) goto fail;
                } else {
                    int np;
                    ew_param *p = ew_fm_params(&m, &np);
                    int lrc = ew_checkpoint_load_params(ick, p, np, 0, EW_OPTIM_STATE_PREFIX, err, sizeof err);
                    if (!lrc) lrc = ew_fm_stats_from_json(ew_checkpoint_meta(ick, EW_FM_META_STATS), &m.stats, err, sizeof err);
                    ew_checkpoint_close(ick);
                    if (lrc) goto fail;
                }
            } else {
                ew_checkpoint *ick;
                if (ew_checkpoint_open(init, &ick, err, sizeof err)) goto fail;
                int np;
                ew_param *p = ew_fm_params(&m, &np);
                int lrc = ew_checkpoint_load_params(ick, p, np, 0, EW_OPTIM_STATE_PREFIX, err, sizeof err);
                if (!lrc) lrc = ew_fm_stats_from_json(ew_checkpoint_meta(ick, EW_FM_META_STATS), &m.stats, err, sizeof err);
                ew_checkpoint_close(ick);
                if (lrc) goto fail;
            }
        }
    }
    if (!have_data) {
        if (ew_fm_data_open(&d, dirs, ndirs, m.cfg.n_cond, m.cfg.n_pred, 1, err, sizeof err)) goto fail;
        have_data = 1;
    }
    const ew_fm_config *c = &m.cfg;
    if (d.total[EW_SPLIT_TRAIN] == 0) {
        snprintf(err, sizeof err, "%s: no training samples of %d + %d steps", data_desc, c->n_cond, c->n_pred);
        goto fail;
    }
    if (fabsf(ew_fm_data_dt(&d) - c->dt) > 1e-6f) {
        snprintf(err, sizeof err, "%s: dt %g differs from the model's %g", data_desc, (double)ew_fm_data_dt(&d), (double)c->dt);
        goto fail;
    }
    if (resuming) {
        const char *mn = ew_checkpoint_meta(ck, META_NTRAIN);
        if (mn && strtoull(mn, NULL, 10) != (unsigned long long)d.total[EW_SPLIT_TRAIN]) {
            snprintf(err, sizeof err, "%s: the data changed since the checkpoint (%s training samples, now %zu)", ckpt_path,
                     mn, d.total[EW_SPLIT_TRAIN]);
            goto fail;
        }
    }
    ew_raster_cfg rcfg = {c->height, c->width, (float)mpp};
    if (ew_raster_cfg_validate(&rcfg, err, (int)sizeof err)) goto fail;

    be = cli_backend(cmd, cuda, (int)threads);
    if (!be) {
        rc = 1;
        goto done;
    }
    ew_fm_train_config tc = ew_fm_train_defaults();
    tc.lr = (float)lr;
    tc.clip = (float)clip;
    if (ew_fm_trainer_create(&m, be, &tc, &t, err, sizeof err)) goto fail;
    ew_optim *opt = ew_fm_trainer_optim(t);
    if (dist.size > 1 && ew_optim_set_grad_reduce(opt, ew_dist_grad_reduce, &dist, err, sizeof err)) goto fail;
    if (resuming) {
        int nst;
        const ew_param *st = ew_optim_state(opt, &nst);
        ew_param *stv = malloc(sizeof(ew_param) * (size_t)(nst ? nst : 1));
        if (!stv) goto oom;
        memcpy(stv, st, sizeof(ew_param) * (size_t)nst);
        int lrc = ew_checkpoint_load_params(ck, stv, nst, EW_CKPT_ALLOW_UNEXPECTED, NULL, err, sizeof err);
        free(stv);
        if (lrc) goto fail;
        const char *os = ew_checkpoint_meta(ck, EW_OPTIM_META_STEP);
        ew_optim_set_step_count(opt, os ? strtol(os, NULL, 10) : start);
        ew_checkpoint_close(ck);
        ck = NULL;
    }

    const int B = (int)batch, T = c->n_pred, C = c->channels;
    if (ew_fm_batch_alloc(&b, B, c->n_cond, T, C, c->height, c->width)) goto oom;
    size_t nval = d.total[EW_SPLIT_VAL] < (size_t)val_samples ? d.total[EW_SPLIT_VAL] : (size_t)val_samples;
    idx = malloc(sizeof(size_t) * (size_t)B);
    vidx = malloc(sizeof(size_t) * (nval ? nval : 1));
    hist = malloc(sizeof(float) * 100);
    sorted = malloc(sizeof(float) * 100);
    if (!idx || !vidx || !hist || !sorted) goto oom;
    for (size_t i = 0; i < nval; i++) vidx[i] = (size_t)((double)i * (double)d.total[EW_SPLIT_VAL] / (double)nval);
    if (nval && ew_fm_batch_alloc(&vb, B < (int)nval ? B : (int)nval, c->n_cond, T, C, c->height, c->width)) goto oom;

    {
        /* every rank starts from the same step and the same parameters (debug hash check) */
        int np;
        ew_param *pp = ew_fm_params(&m, &np);
        if (!ew_dist_same_u64(&dist, (uint64_t)start) || !ew_dist_same_params(&dist, pp, np, NULL)) {
            snprintf(err, sizeof err, "the MPI ranks start from different checkpoints or parameters (rank %d)", dist.rank);
            goto fail;
        }
    }
    if (root) { /* rank 0 writes the CSV */
        if (resuming && ew_csv_keep_steps(csv_path, start, err, (int)sizeof err)) goto fail;
        csv = fopen(csv_path, resuming ? "a" : "w");
        if (!csv) {
            snprintf(err, sizeof err, "%s: cannot write", csv_path);
            goto fail;
        }
        if (!resuming) fprintf(csv, "step,loss,img_mse,state_mse,kl,grad_norm,lr,samples_per_s,val_loss,val_img_mse\n");
        fflush(csv);
    }

    const char *fault = getenv("EGOWORLD_FAULT_NAN_STEP"); /* test hook: poison batch N (1-based) */
    long fault_step = fault ? strtol(fault, NULL, 10) : -1;
    ew_lr_schedule sched = {(float)lr, (float)lr_min, 0, steps};
    save_ctx sc = {&m, t, model_path, ckpt_path, data_desc, start, steps, seed, (int)gbatch, d.total[EW_SPLIT_TRAIN],
                   (float)mpp, NAN};
    const int G = (int)gbatch;
    int tty = isatty(2);
    if (root && dist.size > 1)
        fprintf(stderr, "egoworld %s: %d MPI ranks x batch %d = global batch %d; %zu gradient floats all-reduced per step\n",
                cmd, dist.size, B, G, ew_optim_grad_numel(opt));
    if (root) fprintf(stderr,
            "egoworld %s: %s%s nf %d hidden %d n_cond %d n_pred %d %dx%d, %zu params; %zu train / %zu val samples "
            "(%d dataset%s); steps %ld..%ld batch %d threads %ld\n",
            cmd, ew_fm_variant_name(c->variant), c->stochastic ? " stochastic" : "", c->nf, c->hidden, c->n_cond, c->n_pred,
            c->height, c->width, ew_param_list_numel(&m.params), d.total[EW_SPLIT_TRAIN], d.total[EW_SPLIT_VAL], ndirs,
            ndirs > 1 ? "s" : "", start, steps, B, threads);
    double t0 = cli_now(), last_print = 0, sps = 0, val_loss = NAN, val_img = NAN, sum_time = 0;
    long nhist = 0, done_steps = 0;
    ew_fm_losses l = {0};
    long k;
    for (k = start; k < steps; k++) {
        double ts = cli_now();
        for (int r = 0; r < B; r++)
            idx[r] = ew_fm_data_order(d.total[EW_SPLIT_TRAIN], seed,
                                      (uint64_t)k * (uint64_t)G + (uint64_t)dist.rank * (uint64_t)B + (uint64_t)r);
        if (ew_fm_data_fill(&d, EW_SPLIT_TRAIN, idx, B, &rcfg, (int)threads, &b, err, sizeof err)) goto fail;
        if (k + 1 == fault_step) b.frames[0] = NAN;
        ew_optim_set_lr(opt, ew_lr_at(&sched, k));
        if (ew_fm_train_step(t, &b, ew_dist_seed(&dist, cli_mix64(seed ^ cli_mix64((uint64_t)k))), &l, err, sizeof err)) {
            char e2[1024];
            snprintf(e2, sizeof e2, "step %ld: %s; stopped, the last good checkpoint %s (step %ld) is kept", k + 1, err,
                     ckpt_path, sc.step);
            snprintf(err, sizeof err, "%s", e2);
            goto fail;
        }
        if (dist.size > 1) { /* the global batch's losses (the same divergence decision on every rank) */
            float lb[5] = {l.loss, l.img_mse, l.state_mse, l.kl, (float)l.prior_steps};
            ew_dist_allreduce_mean(&dist, lb, 5);
            l.loss = lb[0], l.img_mse = lb[1], l.state_mse = lb[2], l.kl = lb[3], l.prior_steps = (int)lroundf(lb[4]);
        }
        /* divergence: loss above 10x the running median of the last 100 (after 20 steps) */
        if (nhist >= 20) {
            long n = nhist < 100 ? nhist : 100;
            memcpy(sorted, hist, sizeof(float) * (size_t)n);
            qsort(sorted, (size_t)n, sizeof(float), cli_cmp_float);
            float med = sorted[n / 2];
            if (l.loss > 10.0f * med) {
                snprintf(err, sizeof err,
                         "step %ld: loss %.6g is above 10x its running median %.6g (divergence); stopped, the last good "
                         "checkpoint %s (step %ld) is kept",
                         k + 1, (double)l.loss, (double)med, ckpt_path, sc.step);
                goto fail;
            }
        }
        hist[nhist % 100] = l.loss;
        nhist++;
        double dt_step = cli_now() - ts;
        sum_time += dt_step;
        done_steps++;
        sps = sps == 0 ? G / dt_step : 0.9 * sps + 0.1 * G / dt_step;
        int last = k + 1 == steps;
        int do_val = nval && ((k + 1) % val_every == 0 || last);
        double vl = NAN, vi = NAN;
        if (do_val) {
            if (validate(t, &d, vidx, nval, &rcfg, (int)threads, &vb, seed ^ 0x5a17ULL, &dist, &vl, &vi, err, sizeof err))
                goto fail;
            val_loss = vl;
            val_img = vi;
        }
        if (root) {
            fprintf(csv, "%ld,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%.4g,", k + 1, (double)l.loss, (double)l.img_mse,
                    (double)l.state_mse, (double)l.kl, (double)l.grad_norm, (double)ew_optim_lr(opt), G / dt_step);
            if (do_val) fprintf(csv, "%.9g,%.9g\n", vl, vi);
            else fprintf(csv, ",\n");
        }
        if ((k + 1) % ckpt_every == 0 || last) {
            sc.step = k + 1;
            sc.val_loss = val_loss;
            int np;
            ew_param *pp = ew_fm_params(&m, &np);
            uint64_t h;
            if (!ew_dist_same_params(&dist, pp, np, &h)) { /* data-parallel debug check */
                snprintf(err, sizeof err, "step %ld: the MPI ranks' parameters differ (rank %d hash %016llx)", k + 1,
                         dist.rank, (unsigned long long)h);
                goto fail;
            }
            if (root) {
                fflush(csv);
                if (save_all(&sc, err, sizeof err)) goto fail;
            }
        }
        double now = cli_now();
        if (root && ((tty && (now - last_print > 0.5 || last)) || (!tty && ((k + 1) % log_every == 0 || last || do_val)))) {
            double eta = (double)(steps - k - 1) * (sum_time / (double)done_steps);
            char vs[32] = "-";
            if (isfinite(val_loss)) snprintf(vs, sizeof vs, "%.5f", val_loss);
            fprintf(stderr,
                    "%sstep %ld/%ld  loss %.5f (img %.5f state %.5f kl %.3g)  |g| %.3g  %.1f samples/s  ETA %.0fs  val %s%s",
                    tty ? "\r" : "", k + 1, steps, (double)l.loss, (double)l.img_mse, (double)l.state_mse, (double)l.kl,
                    (double)l.grad_norm, sps, eta, vs, tty ? "   " : "\n");
            last_print = now;
        }
    }
    if (tty && root) fputc('\n', stderr);
    double wall = cli_now() - t0;
    if (json && root)
        printf("{\"command\": \"train-world\", \"out\": \"%s\", \"checkpoint\": \"%s\", \"csv\": \"%s\", \"variant\": \"%s\", "
               "\"stochastic\": %d, \"nf\": %d, \"hidden\": %d, \"n_cond\": %d, \"n_pred\": %d, \"rows\": %d, \"cols\": %d, "
               "\"params\": %zu, \"batch\": %d, \"threads\": %ld, \"start_step\": %ld, \"steps\": %ld, \"train_samples\": %zu, "
               "\"val_samples\": %zu, \"loss\": %.9g, \"img_mse\": %.9g, \"state_mse\": %.9g, \"kl\": %.9g, "
               "\"val_loss\": %.9g, \"val_img_mse\": %.9g, \"samples_per_s\": %.3f, \"wall_s\": %.3f, \"ranks\": %d, "
               "\"global_batch\": %d, \"allreduce_floats_per_step\": %zu, \"allreduce_bytes\": %llu, \"comm_s\": %.3f}\n",
               model_path, ckpt_path, csv_path, ew_fm_variant_name(c->variant), c->stochastic, c->nf, c->hidden, c->n_cond,
               c->n_pred, c->height, c->width, ew_param_list_numel(&m.params), B, threads, start, steps,
               d.total[EW_SPLIT_TRAIN], nval, (double)l.loss, (double)l.img_mse, (double)l.state_mse, (double)l.kl,
               isfinite(val_loss) ? val_loss : -1.0, isfinite(val_img) ? val_img : -1.0,
               done_steps ? (double)G * (double)done_steps / sum_time : 0.0, wall, dist.size, G,
               dist.size > 1 ? ew_optim_grad_numel(opt) : (size_t)0, (unsigned long long)dist.reduce_bytes, dist.comm_s);
    rc = 0;
    goto done;
oom:
    snprintf(err, sizeof err, "out of memory");
fail:
    fprintf(stderr, "egoworld %s: %s\n", cmd, err);
    rc = 1;
    ew_dist_abort(&dist, 1); /* the other ranks would wait forever in a collective */
done:
    ew_checkpoint_close(ck);
    if (csv) fclose(csv);
    ew_fm_trainer_free(t);
    if (have_model) ew_fm_free(&m); /* before the backend: a moved model frees into its memory */
    if (be) ew_backend_destroy(be);
    if (have_data) ew_fm_data_close(&d);
    ew_fm_batch_free(&b);
    ew_fm_batch_free(&vb);
    free(idx);
    free(vidx);
    free(hist);
    free(sorted);
    free(model_path);
    free(ckpt_path);
    free(csv_path);
    free(data_desc);
    for (int k2 = 0; k2 < EW_FM_DATA_MAX_SETS; k2++) free(dirbuf[k2]);
    return rc;
}
