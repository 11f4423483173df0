/* cmd_train_policy.c - `egoworld train-policy`: trains a driving policy (models/policy.h) by
 * one-step imitation of logged actions or by MPUR through a frozen world model
 * (planner/mpur.h), on trajectory datasets, with progress, periodic validation, atomic
 * checkpoints with the optimizer state, exact resume, a divergence stop and a metrics CSV.
 *
 * Files for --out STEM.safetensors: STEM.safetensors (the policy: parameters, config, stats,
 * training metadata), STEM.ckpt.safetensors (the same plus the Adam state "optim.*" and the
 * training position; --resume reads it), STEM.csv (one row per step).
 * Reproducibility: step k trains on the samples perm_e[(k*B + r) mod n] of the epoch
 * permutations (planner/policy_train.h) with randomness seeded by a pure function of
 * (seed, k); MPUR's uncertainty statistics are computed once and stored in the checkpoint;
 * so a run stopped after a checkpoint and resumed with the same flags ends with the same
 * parameters bit for bit.
 * Data parallel under mpirun (models/dist.h, docs/DISTRIBUTED.md): --batch is per rank, rank r
 * takes positions k*G + r*B .. of step k (G = ranks*B, the global batch stored in the
 * checkpoint), gradients are averaged before clipping (optimizer reducer), rank 0 writes.
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
#include "models/checkpoint.h"
#include "models/dist.h"
#include "models/fm.h"
#include "models/optim.h"
#include "models/policy.h"
#include "planner/controllers.h"
#include "planner/mpc.h"
#include "planner/mpur.h"
#include "planner/policy_train.h"

#define META_METHOD "egoworld.policy.method"
#define META_STEP "egoworld.train.step"
#define META_SEED "egoworld.train.seed"
#define META_BATCH "egoworld.train.batch"
#define META_NTRAIN "egoworld.train.n_train"
#define META_DATA "egoworld.train.data"
#define META_VAL "egoworld.train.val"
#define META_WORLD "egoworld.policy.world_model"
#define META_MPUR_CFG "egoworld.mpur.config"
#define META_INIT "egoworld.train.init" /* the --init checkpoint the run started from (kept on resume) */
#define FM_META_MPP "egoworld.fm.m_per_px" /* the raster scale a world model was trained at */

static void help(void) {
    printf("usage: egoworld train-policy --method imitation|mpur --data DIR[,DIR...] --out FILE [options]\n\n"
           "Trains a driving policy on trajectory datasets (written by `egoworld collect`), by one-step\n"
           "imitation of the logged actions or by MPUR: unrolling the frozen world model with the\n"
           "policy's actions and minimising the discounted cost plus the uncertainty penalty.\n"
           "Writes FILE (the policy, for --controller policy:FILE), FILE.ckpt.safetensors (policy +\n"
           "optimizer state, for --resume) and FILE.csv (metrics per step); FILE loses a\n"
           "trailing .safetensors for the last two.\n\n"
           "  --method M         imitation | mpur (default imitation)\n"
           "  --data DIR         dataset folder; repeat or separate by commas to pool several\n"
           "  --out FILE         output policy (required)\n"
           "  --world FILE       world model for mpur (default " EW_DEFAULT_WORLD_MODEL ")\n"
           "  --init FILE        start from a policy checkpoint (e.g. mpur from an imitation policy)\n"
           "  --steps N          training steps (default 1000)\n"
           "  --batch B          samples per step (default 64 imitation, 6 mpur); per rank under mpirun\n"
           "  --lr X             Adam learning rate (default 5e-4 imitation, 1e-4 mpur)\n"
           "  --clip X           gradient-norm clip (default 5; 0: none)\n"
           "  --seed S           data order, initialisation, latents and dropout (default 1)\n"
           "  --threads N        threads (default 2)\n"
           CLI_DEVICE_HELP
           "  --nf N --proj N --hidden N   policy widths (default 64 256 256)\n"
           "  --channels C       3 or 4 (with the ego channel) (default 3)\n"
           "  --n-cond N --rows N --cols N --mpp X   window and raster (default 20 117 24 0.617;\n"
           "                     mpur: from the world model)\n"
           "  --dropout X        policy encoder dropout (default 0)\n"
           "mpur:\n"
           "  --form F           coupled | decoupled (default coupled): gradients through the world\n"
           "                     model's images, or through the kinematic model and cost masks moved\n"
           "                     on fixed predicted images (the MPC-KM cost and driving weights;\n"
           "                     planner/mpur.h)\n"
           "  --horizon T        unroll length (default 30)\n"
           "  --u-samples M      dropout masks for the uncertainty (default 10; < 2: no penalty)\n"
           "  --lambda-u X --lambda-p X --lambda-l X --lambda-o X   weights (coupled 0.05 2 0.2 1;\n"
           "                     decoupled 0.5 10 20 10)\n"
           "  --hinge X --gamma X   (default 0.5 0.99)\n"
           "  --grad-steps K     decoupled: policy gradient from the first K steps only (0: all)\n"
           "  --w-speed X --v-des V  decoupled: progress term w max(0, (V - v) / V)^2 per step\n"
           "                     (default 0 = off, 15 m/s; planner/cost.h)\n"
           "  --rear-weight X    decoupled: weight of the vehicles behind the ego in the cost images\n"
           "                     (default 1 = the MPC's symmetric proximity cost; planner/mpur.h)\n"
           "  --oracle           decoupled, a diagnostic (not MPUR): the logged future frames and\n"
           "                     states replace the world model's predictions (a perfect world\n"
           "                     that does not react); no uncertainty term\n"
           "  --ustats-batches N  batches of logged actions for the uncertainty statistics (default 10)\n"
           "training loop:\n"
           "  --val-every N      validation every N steps (default 100)\n"
           "  --val-samples N    fixed validation samples (default 256 imitation, 24 mpur)\n"
           "  --ckpt-every N     checkpoint every N steps (default 100) and at the end\n"
           "  --log-every N      progress line every N steps when not on a terminal (default 50)\n"
           "  --resume           continue from FILE.ckpt.safetensors (same flags: same result)\n"
           "  --json             print a JSON summary\n\n"
           "A non-finite loss or gradient, or a loss above 100x the median of the last 50 steps,\n"
           "stops the run (exit 1) and leaves the last checkpoint as it was.\n");
}

typedef struct {
    int mpur;
    ew_policy *p;
    ew_optim *opt;
    const char *model_path, *ckpt_path, *data_desc, *world, *mpur_cfg;
    char *ustats_json;
    const char *init; /* NULL: a new policy */
    long step;
    uint64_t seed;
    int batch;
    size_t n_train;
    double val;
} save_ctx;

static int save_all(const save_ctx *s, char *err, size_t errsz) {
    char step[32], seed[32], batch[32], ntrain[32], val[32], ostep[32];
    snprintf(step, sizeof step, "%ld", s->step);
    snprintf(seed, sizeof seed, "%" PRIu64, s->seed);
    snprintf(batch, sizeof batch, "%d", s->batch);
    snprintf(ntrain, sizeof ntrain, "%zu", s->n_train);
    snprintf(val, sizeof val, "%.9g", s->val);
    snprintf(ostep, sizeof ostep, "%ld", ew_optim_step_count(s->opt));
    ew_kv meta[14];
    int n = 0;
    meta[n++] = (ew_kv){META_METHOD, s->mpur ? "mpur" : "imitation"};
    meta[n++] = (ew_kv){META_STEP, step};
    meta[n++] = (ew_kv){META_SEED, seed};
    meta[n++] = (ew_kv){META_BATCH, batch};
    meta[n++] = (ew_kv){META_NTRAIN, ntrain};
    meta[n++] = (ew_kv){META_DATA, s->data_desc};
    meta[n++] = (ew_kv){META_VAL, val};
    if (s->init) meta[n++] = (ew_kv){META_INIT, s->init};
    if (s->mpur) {
        meta[n++] = (ew_kv){META_WORLD, s->world};
        meta[n++] = (ew_kv){META_MPUR_CFG, s->mpur_cfg};
        meta[n++] = (ew_kv){EW_MPUR_META, s->ustats_json};
    }
    meta[n++] = (ew_kv){EW_OPTIM_META_STEP, ostep};
    int nst;
    const ew_param *st = ew_optim_state(s->opt, &nst);
    /* the policy file first, then the checkpoint that records the progress: a kill between the
     * two leaves the checkpoint one step behind and --resume redoes that step bit for bit */
    if (ew_policy_save(s->p, s->model_path, NULL, 0, meta, n - 1, err, errsz)) return -1;
    return ew_policy_save(s->p, s->ckpt_path, st, nst, meta, n, err, errsz);
}

typedef struct {
    int mpur;
    ew_graph *g;
    ew_policy *p;
    const ew_fm *wm;
    const ew_mpur_config *mc;
    const ew_mpur_ustats *us;
    float clip;
} stepper;

/* One step (opt NULL: evaluation). Writes the loss and a short term string. */
static int run_step(const stepper *s, ew_optim *opt, const ew_pt_batch *b, uint64_t seed, float *loss, float *gn,
                    ew_mpur_terms *terms, char *err, size_t errsz) {
    memset(terms, 0, sizeof *terms);
    if (!s->mpur) {
        int rc = ew_pt_imitation_step(s->g, s->p, opt, b, s->clip, opt != NULL, seed, loss, gn, err, errsz);
        terms->objective = *loss;
        return rc;
    }
    int rc = ew_mpur_step(s->g, s->wm, s->p, opt, s->mc, s->us, b, s->clip, seed, terms, err, errsz);
    *loss = terms->objective;
    *gn = terms->grad_norm;
    return rc;
}

static int validate(const stepper *s, const ew_fm_data *d, const size_t *vidx, size_t nv, const ew_raster_cfg *rc,
                    int threads, ew_pt_batch *vb, uint64_t seed, ew_dist *dist, double *loss, char *err, size_t errsz) {
    double sum = 0;
    size_t cnt = 0;
    for (size_t i = 0; i + (size_t)vb->B <= nv; i += (size_t)vb->B) {
        if ((long)(i / (size_t)vb->B) % dist->size != dist->rank) continue; /* another rank's batch */
        if (ew_pt_fill(d, EW_SPLIT_VAL, vidx + i, rc, threads, vb, err, errsz)) return -1;
        float l, gn;
        ew_mpur_terms t;
        if (run_step(s, NULL, vb, cli_mix64(seed ^ 0x5a5a5a5aULL) + i, &l, &gn, &t, err, errsz)) return -1;
        sum += (double)l * vb->B;
        cnt += (size_t)vb->B;
    }
    double sc2[2] = {sum, (double)cnt};
    ew_dist_allreduce_sum_f64(dist, sc2, 2);
    sum = sc2[0], cnt = (size_t)sc2[1];
    *loss = cnt ? sum / (double)cnt : NAN;
    return 0;
}

#define INT_FLAG(name, var, lo, hi)                                                                          \
    else if (!strcmp(a, name)) {                                                                             \
        if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, lo, hi, &var)) goto usage;          \
    }
#define FLOAT_FLAG(name, var, lo, hi)                                                                        \
    else if (!strcmp(a, name)) {                                                                             \
        if (!(v = cli_value(cmd, argc, argv, &i)) || cli_float(cmd, a, v, lo, hi, &var)) goto usage;        \
    }

int cmd_train_policy(int argc, char **argv) {
    const char *cmd = "train-policy";
    const char *dirs[EW_FM_DATA_MAX_SETS];
    char *dirbuf[EW_FM_DATA_MAX_SETS] = {0};
    int ndirs = 0;
    const char *out = NULL, *method_s = "imitation", *world = NULL, *init = NULL, *form_s = "coupled";
    long steps = 1000, batch = -1, threads = 2, nf = 64, proj = 256, hidden = 256, channels = 3, n_cond = 20;
    long grad_steps = 0;
    int oracle = 0;
    double rear_weight = 1;
    long rows = 117, cols = 24, horizon = 30, u_samples = 10, ustats_batches = 10;
    long val_every = 100, val_samples = -1, ckpt_every = 100, log_every = 50;
    double lr = -1, clip = 5, mpp = 0.617, dropout = 0, lambda_u = -1, lambda_p = -1, lambda_l = -1, lambda_o = -1;
    double hinge = 0.5, gamma = 0.99, w_speed = 0, v_des = 15;
    uint64_t seed = 1;
    int resume = 0, json = 0, rc = 1, cuda = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            help();
            rc = 0;
            goto done_args;
        } else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--resume")) resume = 1;
        else if (!strcmp(a, "--data")) {
            if (!(v = cli_value(cmd, argc, argv, &i))) goto usage;
            char *copy = strdup(v), *save = NULL;
            if (!copy) goto done_args;
            int slot = 0;
            while (slot < EW_FM_DATA_MAX_SETS && dirbuf[slot]) slot++;
            if (slot == EW_FM_DATA_MAX_SETS) {
                free(copy);
                fprintf(stderr, "egoworld %s: --data: at most %d datasets\n", cmd, EW_FM_DATA_MAX_SETS);
                goto usage;
            }
            dirbuf[slot] = copy;
            for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                if (ndirs == EW_FM_DATA_MAX_SETS) {
                    fprintf(stderr, "egoworld %s: --data: at most %d datasets\n", cmd, EW_FM_DATA_MAX_SETS);
                    goto usage;
                }
                dirs[ndirs++] = tok;
            }
        } else if (!strcmp(a, "--out")) {
            if (!(out = cli_value(cmd, argc, argv, &i))) goto usage;
        } else if (!strcmp(a, "--method")) {
            if (!(method_s = cli_value(cmd, argc, argv, &i))) goto usage;
        } else if (!strcmp(a, "--form")) {
            if (!(form_s = cli_value(cmd, argc, argv, &i))) goto usage;
        } else if (!strcmp(a, "--world")) {
            if (!(world = cli_value(cmd, argc, argv, &i))) goto usage;
        } else if (!strcmp(a, "--init")) {
            if (!(init = cli_value(cmd, argc, argv, &i))) goto usage;
        } else if (!strcmp(a, "--seed")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || cli_u64(cmd, a, v, &seed)) goto usage;
        }
        INT_FLAG("--steps", steps, 1, 100000000)
        INT_FLAG("--batch", batch, 1, 4096)
        INT_FLAG("--threads", threads, 1, 1024)
        else if (!strcmp(a, "--device")) { if (cli_device(cmd, argc, argv, &i, &cuda)) goto usage; }
        INT_FLAG("--nf", nf, 1, 1024)
        INT_FLAG("--proj", proj, 1, 8192)
        INT_FLAG("--hidden", hidden, 1, 8192)
        INT_FLAG("--channels", channels, 3, 4)
        INT_FLAG("--n-cond", n_cond, 1, 100)
        INT_FLAG("--rows", rows, 8, 1024)
        INT_FLAG("--cols", cols, 8, 1024)
        INT_FLAG("--horizon", horizon, 1, 200)
        INT_FLAG("--grad-steps", grad_steps, 0, 200)
        else if (!strcmp(a, "--oracle")) oracle = 1;
        INT_FLAG("--u-samples", u_samples, 0, 64)
        INT_FLAG("--ustats-batches", ustats_batches, 1, 100000)
        INT_FLAG("--val-every", val_every, 1, 100000000)
        INT_FLAG("--val-samples", val_samples, 0, 1000000)
        INT_FLAG("--ckpt-every", ckpt_every, 1, 100000000)
        INT_FLAG("--log-every", log_every, 1, 100000000)
        FLOAT_FLAG("--lr", lr, 1e-12, 1e3)
        FLOAT_FLAG("--clip", clip, 0, 1e12)
        FLOAT_FLAG("--mpp", mpp, 0.01, 100)
        FLOAT_FLAG("--dropout", dropout, 0, 0.95)
        FLOAT_FLAG("--lambda-u", lambda_u, 0, 1e6)
        FLOAT_FLAG("--lambda-p", lambda_p, 0, 1e6)
        FLOAT_FLAG("--lambda-l", lambda_l, 0, 1e6)
        FLOAT_FLAG("--lambda-o", lambda_o, 0, 1e6)
        FLOAT_FLAG("--hinge", hinge, -1e6, 1e6)
        FLOAT_FLAG("--gamma", gamma, 0, 1)
        FLOAT_FLAG("--w-speed", w_speed, 0, 1e6)
        FLOAT_FLAG("--v-des", v_des, 0.1, 100)
        FLOAT_FLAG("--rear-weight", rear_weight, 0, 1)
        else {
            rc = cli_unknown(cmd, a);
            goto done_args;
        }
    }
    if (cuda) { /* the policy has no device move yet: say so rather than run on the CPU */
        if (!cli_device_check(cmd, cuda)) fprintf(stderr, "egoworld %s: --device cuda: train-policy runs on the CPU only so far\n", cmd);
        goto done_args;
    }
    int mpur = 0;
    if (!strcmp(method_s, "mpur")) mpur = 1;
    else if (strcmp(method_s, "imitation")) {
        fprintf(stderr, "egoworld %s: --method: expected imitation or mpur, not '%s'\n", cmd, method_s);
        goto usage;
    }
    int decoupled = !strcmp(form_s, "decoupled");
    if (!decoupled && strcmp(form_s, "coupled")) {
        fprintf(stderr, "egoworld %s: --form: expected coupled or decoupled, not '%s'\n", cmd, form_s);
        goto usage;
    }
    if (oracle && (!decoupled || !mpur)) {
        fprintf(stderr, "egoworld %s: --oracle: only with --method mpur --form decoupled\n", cmd);
        goto usage;
    }
    if (rear_weight != 1 && !decoupled) {
        fprintf(stderr, "egoworld %s: --rear-weight: only with --form decoupled\n", cmd);
        goto usage;
    }
    if (w_speed > 0 && !decoupled) {
        fprintf(stderr, "egoworld %s: --w-speed: only with --form decoupled\n", cmd);
        goto usage;
    }
    if (lambda_u < 0) lambda_u = decoupled ? 0.5 : 0.05;
    if (lambda_p < 0) lambda_p = decoupled ? 10 : 2;
    if (lambda_l < 0) lambda_l = decoupled ? 20 : 0.2;
    if (lambda_o < 0) lambda_o = decoupled ? 10 : 1;
    if (!ndirs || !out) {
        fprintf(stderr, "egoworld %s: %s is required (see --help)\n", cmd, !ndirs ? "--data DIR" : "--out FILE");
        goto usage;
    }
    if (batch < 0) batch = mpur ? 6 : 64;
    if (lr < 0) lr = mpur ? 1e-4 : 5e-4;
    if (val_samples < 0) val_samples = mpur ? 24 : 256;
    if (!world) world = EW_DEFAULT_WORLD_MODEL;
    ew_dist dist;
    ew_dist_world(&dist);
    const int root = dist.rank == 0;
    const long gbatch = batch * dist.size; /* the global batch (checkpoint, data positions) */

    char err[1024] = "";
    char *model_path = strdup(out), *ckpt_path = cli_path_with(out, ".ckpt.safetensors"), *csv_path = cli_path_with(out, ".csv");
    char *data_desc = NULL, *mpur_cfg = NULL, *ustats_json = NULL, *init_copy = NULL;
    const char *init_desc = NULL;
    ew_policy p;
    ew_fm wm;
    int have_p = 0, have_wm = 0, have_data = 0, have_us = 0;
    ew_fm_data d;
    ew_backend *be = NULL;
    ew_graph *g = NULL;
    ew_optim *opt = NULL;
    ew_pt_batch b = {0}, vb = {0};
    size_t *idx = NULL, *vidx = NULL, *perm = NULL;
    float *hist = NULL, *sorted = NULL;
    FILE *csv = NULL;
    ew_checkpoint *ck = NULL;
    ew_mpur_ustats us;
    memset(&us, 0, sizeof us);
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
    if (mpur) {
        if (ew_fm_load(&wm, world, err, sizeof err)) goto fail;
        have_wm = 1;
        ew_mpur_freeze(&wm);
        ew_checkpoint *wck;
        if (ew_checkpoint_open(world, &wck, err, sizeof err)) goto fail;
        const char *wmpp = ew_checkpoint_meta(wck, FM_META_MPP);
        if (wmpp) mpp = strtod(wmpp, NULL);
        ew_checkpoint_close(wck);
        n_cond = wm.cfg.n_cond;
        rows = wm.cfg.height;
        cols = wm.cfg.width;
    }

    /* ---- the policy: resume, init, or new ---- */
    long start = 0;
    double resumed_val = NAN;
    int resuming = resume && access(ckpt_path, R_OK) == 0;
    if (resume && !resuming) fprintf(stderr, "egoworld %s: no checkpoint %s yet; starting a new run\n", cmd, ckpt_path);
    const char *from = resuming ? ckpt_path : init;
    if (!resuming) init_desc = init;
    if (from) {
        if (ew_checkpoint_open(from, &ck, err, sizeof err)) goto fail;
        char e2[900];
        if (ew_policy_load_ckpt(&p, ck, e2, sizeof e2)) {
            snprintf(err, sizeof err, "%s: %s", from, e2);
            goto fail;
        }
        have_p = 1;
    }
    if (resuming) {
        const char *mm = ew_checkpoint_meta(ck, META_METHOD), *ms = ew_checkpoint_meta(ck, META_STEP),
                   *msd = ew_checkpoint_meta(ck, META_SEED), *mb = ew_checkpoint_meta(ck, META_BATCH);
        if (!mm || !ms || !msd || !mb) {
            snprintf(err, sizeof err, "%s: not a train-policy checkpoint (missing %s)", ckpt_path,
                     !mm ? META_METHOD : !ms ? META_STEP : !msd ? META_SEED : META_BATCH);
            goto fail;
        }
        if (strcmp(mm, method_s) || strtoull(msd, NULL, 10) != seed || strtol(mb, NULL, 10) != gbatch) {
            snprintf(err, sizeof err,
                     "%s: written with --method %s --seed %s and a global batch of %s; resume with the same values "
                     "(ranks x --batch, now %d x %ld)",
                     ckpt_path, mm, msd, mb, dist.size, batch);
            goto fail;
        }
        start = strtol(ms, NULL, 10);
        const char *mi = ew_checkpoint_meta(ck, META_INIT);
        if (mi && !(init_desc = init_copy = strdup(mi))) goto oom;
        const char *mv = ew_checkpoint_meta(ck, META_VAL);
        resumed_val = mv ? strtod(mv, NULL) : NAN;
        if (start >= steps) {
            snprintf(err, sizeof err, "%s: already at step %ld of --steps %ld", ckpt_path, start, steps);
            goto fail;
        }
        if (mpur) {
            if (ew_mpur_ustats_from_json(ew_checkpoint_meta(ck, EW_MPUR_META), &us, err, sizeof err)) goto fail;
            have_us = 1;
        }
    }
    if (have_p) {
        n_cond = p.cfg.n_cond;
        rows = p.cfg.height;
        cols = p.cfg.width;
        mpp = p.cfg.m_per_px;
    }
    int T = mpur ? (int)horizon : 1;
    if (ew_fm_data_open(&d, dirs, ndirs, (int)n_cond, T, 1, err, sizeof err)) goto fail;
    have_data = 1;
    if (d.total[EW_SPLIT_TRAIN] == 0) {
        snprintf(err, sizeof err, "%s: no training samples of %ld + %d steps", data_desc, n_cond, T);
        goto fail;
    }
    if (mpur && fabsf(ew_traj_dt(d.set[0]) - wm.cfg.dt) > 1e-6f) {
        snprintf(err, sizeof err, "%s: dt %g differs from the world model's %g", data_desc, (double)ew_traj_dt(d.set[0]),
                 (double)wm.cfg.dt);
        goto fail;
    }
    if (!have_p) {
        ew_policy_config pc = ew_policy_config_default();
        pc.nf = (int)nf;
        pc.proj = (int)proj;
        pc.hidden = (int)hidden;
        pc.channels = (int)channels;
        pc.n_cond = (int)n_cond;
        pc.height = (int)rows;
        pc.width = (int)cols;
        pc.m_per_px = (float)mpp;
        pc.dropout = (float)dropout;
        pc.seed = seed;
        ew_fm_stats st;
        if (ew_fm_data_stats(&d, &st, err, sizeof err)) goto fail;
        if (ew_policy_init(&p, &pc, &st, err, sizeof err)) goto fail;
        have_p = 1;
    }
    if (resuming) {
        const char *mn = ew_checkpoint_meta(ck, META_NTRAIN);
        if (mn && strtoull(mn, NULL, 10) != (unsigned long long)d.total[EW_SPLIT_TRAIN]) {
            snprintf(err, sizeof err, "%s: the data changed since the checkpoint (%s training samples, now %zu)",
                     ckpt_path, mn, d.total[EW_SPLIT_TRAIN]);
            goto fail;
        }
    }
    if (mpur && ew_mpur_check(&wm, &p, err, sizeof err)) goto fail;
    ew_raster_cfg rcfg = {p.cfg.height, p.cfg.width, p.cfg.m_per_px};
    if (ew_raster_cfg_validate(&rcfg, err, (int)sizeof err)) goto fail;

    be = ew_backend_cpu_create((int)threads);
    g = be ? ew_graph_create(be, 0) : NULL;
    if (!g) goto oom;
    int np;
    ew_param *pp = ew_policy_params(&p, &np);
    ew_optim_config oc = ew_optim_defaults(EW_OPTIM_ADAM);
    oc.lr = (float)lr;
    if (ew_optim_create(pp, np, &oc, &opt, err, sizeof err)) goto fail;
    if (dist.size > 1 && ew_optim_set_grad_reduce(opt, ew_dist_grad_reduce, &dist, err, sizeof err)) goto fail;
    if (resuming) {
        int nst;
        const ew_param *stv = ew_optim_state(opt, &nst);
        ew_param *sv = malloc(sizeof(ew_param) * (size_t)(nst ? nst : 1));
        if (!sv) goto oom;
        memcpy(sv, stv, sizeof(ew_param) * (size_t)nst);
        int lrc = ew_checkpoint_load_params(ck, sv, nst, EW_CKPT_ALLOW_UNEXPECTED, NULL, err, sizeof err);
        free(sv);
        if (lrc) goto fail;
        const char *os = ew_checkpoint_meta(ck, EW_OPTIM_META_STEP);
        ew_optim_set_step_count(opt, os ? strtol(os, NULL, 10) : start);
    }
    if (ck) {
        ew_checkpoint_close(ck);
        ck = NULL;
    }

    ew_mpur_config mc;
    ew_mpur_config_default(&mc, mpur ? &wm : NULL, &p);
    if (decoupled) {
        /* the MPC-KM cost (planner/mpc.h) on the world model's geometry */
        ew_cost_config geo = mc.cost;
        ew_mpc_driving_cost(&mc.cost);
        mc.cost.rows = geo.rows;
        mc.cost.cols = geo.cols;
        mc.cost.dt = geo.dt;
        mc.cost.allow_reverse = geo.allow_reverse;
        mc.cost.m_per_px = geo.m_per_px;
        mc.decoupled = 1;
        mc.cost.w_speed = (float)w_speed;
        mc.grad_steps = (int)grad_steps;
        mc.cost.v_des = (float)v_des;
        mc.oracle = oracle;
        mc.rear_weight = (float)rear_weight;
    }
    mc.horizon = (int)horizon;
    mc.u_samples = oracle ? 0 : (int)u_samples;
    mc.hinge = (float)hinge;
    mc.cost.lambda_u = (float)lambda_u;
    mc.cost.lambda_p = (float)lambda_p;
    mc.cost.lambda_l = (float)lambda_l;
    mc.cost.lambda_o = (float)lambda_o;
    mc.cost.gamma = (float)gamma;
    if (mpur) {
        /* the ego size of the data (cost masks) */
        ew_traj_frame *fr = malloc(sizeof *fr);
        if (!fr) goto oom;
        if (!ew_traj_frame_get(d.set[0], d.samples[EW_SPLIT_TRAIN][0] ? d.samples[EW_SPLIT_TRAIN][0][0].episode : 0, 0,
                               fr, err, (int)sizeof err)) {
            mc.cost.ego_len = fr->ego_len;
            mc.cost.ego_wid = fr->ego_wid;
        }
        free(fr);
        char buf[768];
        snprintf(buf, sizeof buf,
                 "{\"form\": \"%s\", \"horizon\": %d, \"u_samples\": %d, \"hinge\": %.9g, \"lambda_u\": %.9g, \"lambda_p\": %.9g, "
                 "\"lambda_l\": %.9g, \"lambda_o\": %.9g, \"gamma\": %.9g, \"ego_len\": %.9g, \"ego_wid\": %.9g, "
                 "\"w_speed\": %.9g, \"v_des\": %.9g, \"grad_steps\": %d, \"oracle\": %d, \"rear_weight\": %.9g}",
                 form_s, mc.horizon, mc.u_samples, (double)mc.hinge, (double)mc.cost.lambda_u, (double)mc.cost.lambda_p,
                 (double)mc.cost.lambda_l, (double)mc.cost.lambda_o, (double)mc.cost.gamma, (double)mc.cost.ego_len,
                 (double)mc.cost.ego_wid, (double)mc.cost.w_speed, (double)mc.cost.v_des, mc.grad_steps, mc.oracle, (double)mc.rear_weight);
        mpur_cfg = strdup(buf);
        if (!mpur_cfg) goto oom;
    }
    size_t ntr = d.total[EW_SPLIT_TRAIN], nval = d.total[EW_SPLIT_VAL];
    if (ew_pt_batch_alloc(&b, (int)batch, p.cfg.n_cond, T, p.cfg.channels, p.cfg.height, p.cfg.width) ||
        (mc.oracle && ew_pt_batch_alloc_targets(&b)))
        goto oom;
    idx = malloc(sizeof(size_t) * (size_t)batch);
    perm = malloc(sizeof(size_t) * ntr);
    hist = calloc(50, sizeof(float));
    sorted = calloc(50, sizeof(float));
    if (!idx || !perm || !hist || !sorted) goto oom;
    uint64_t perm_epoch = UINT64_MAX;
    double t_setup = cli_now();

    /* MPUR: the uncertainty statistics under logged actions, once */
    if (mpur && mc.u_samples >= 2 && !have_us) {
        ew_cost_unc_acc ai, ac;
        if (ew_cost_unc_acc_init(&ai, mc.horizon) || ew_cost_unc_acc_init(&ac, mc.horizon)) goto oom;
        cli_progress pr;
        cli_progress_begin(&pr, "uncertainty statistics", ustats_batches);
        int urc = 0;
        for (long k = 0; k < ustats_batches && !urc; k++) {
            for (long r = 0; r < batch; r++) idx[r] = (size_t)(cli_mix64(seed * 31 + (uint64_t)(k * batch + r)) % ntr);
            urc = ew_pt_fill(&d, EW_SPLIT_TRAIN, idx, &rcfg, (int)threads, &b, err, sizeof err) ||
                  ew_mpur_ustats_add(g, &wm, &mc, &b, cli_mix64(seed + 7 + (uint64_t)k), &ai, &ac, err, sizeof err);
            if (root) cli_progress_update(&pr, k + 1, NULL); /* every rank computes them, rank 0 shows it */
        }
        if (root) cli_progress_end(&pr);
        if (!urc && ew_mpur_ustats_alloc(&us, mc.horizon)) urc = -1;
        if (!urc) {
            have_us = 1;
            ew_cost_unc_acc_finish(&ai, us.img_mean, us.img_std);
            ew_cost_unc_acc_finish(&ac, us.cost_mean, us.cost_std);
            us.rows = ai.n;
        }
        ew_cost_unc_acc_free(&ai);
        ew_cost_unc_acc_free(&ac);
        if (urc) goto fail;
    }
    if (mpur && !have_us) {
        if (ew_mpur_ustats_alloc(&us, mc.horizon)) goto oom;
        have_us = 1;
        for (int t = 0; t < mc.horizon; t++) us.img_std[t] = us.cost_std[t] = 1.0f;
    }
    if (mpur) {
        ustats_json = ew_mpur_ustats_json(&us);
        if (!ustats_json) goto oom;
    }
    stepper sp = {mpur, g, &p, mpur ? &wm : NULL, &mc, mpur && mc.u_samples >= 2 ? &us : NULL, (float)clip};

    /* fixed validation samples, evenly spaced over the split */
    size_t nv = nval ? (size_t)val_samples : 0;
    nv -= nv % (size_t)batch;
    if (nv > 0) {
        vidx = malloc(sizeof(size_t) * nv);
        if (!vidx || ew_pt_batch_alloc(&vb, (int)batch, p.cfg.n_cond, T, p.cfg.channels, p.cfg.height, p.cfg.width) ||
            (mc.oracle && ew_pt_batch_alloc_targets(&vb)))
            goto oom;
        for (size_t i = 0; i < nv; i++) vidx[i] = (size_t)((double)i * (double)nval / (double)nv);
    }

    if (!ew_dist_same_u64(&dist, (uint64_t)start) || !ew_dist_same_params(&dist, pp, np, NULL)) {
        snprintf(err, sizeof err, "the MPI ranks start from different checkpoints or parameters (rank %d)", dist.rank);
        goto fail;
    }
    if (root && resuming && ew_csv_keep_steps(csv_path, start, err, (int)sizeof err)) goto fail;
    csv = fopen(root ? csv_path : "/dev/null", resuming ? "a" : "w"); /* rank 0 writes the CSV */
    if (!csv) {
        snprintf(err, sizeof err, "%s: cannot open for writing", csv_path);
        goto fail;
    }
    if (!resuming)
        fprintf(csv, mpur ? "step,objective,cost,prox,lane,offroad,action,jerk,uncertainty,grad_norm,lr,val,samples_per_s\n"
                          : "step,loss,grad_norm,lr,val,samples_per_s\n");
    save_ctx sc = {mpur, &p, opt, model_path, ckpt_path, data_desc, world, mpur_cfg, ustats_json, init_desc, start,
                   seed, (int)gbatch, ntr, NAN};
    cli_progress pr;
    char what[64];
    snprintf(what, sizeof what, "train-policy %s", method_s);
    cli_progress_begin(&pr, what, steps);
    pr.tty = pr.tty && !json && root;
    double t0 = cli_now(), last_val = resumed_val, first_loss = NAN, last_loss = NAN;
    long nhist = 0, done_steps = 0;
    ew_mpur_terms tm;
    float loss = 0, gn = 0;
    if (nv > 0 && start == 0) {
        if (validate(&sp, &d, vidx, nv, &rcfg, (int)threads, &vb, seed, &dist, &last_val, err, sizeof err)) goto fail;
        if (root) fprintf(stderr, "egoworld %s: step 0 validation %s %.6g (%zu samples)\n", cmd, mpur ? "objective" : "loss",
                last_val, nv);
    }
    for (long k = start; k < steps; k++) {
        for (long r = 0; r < batch; r++) {
            uint64_t pos = (uint64_t)k * (uint64_t)gbatch + (uint64_t)dist.rank * (uint64_t)batch + (uint64_t)r,
                     ep = pos / ntr;
            if (ep != perm_epoch) {
                ew_pt_epoch_perm(ntr, seed, ep, perm);
                perm_epoch = ep;
            }
            idx[r] = perm[pos % ntr];
        }
        if (ew_pt_fill(&d, EW_SPLIT_TRAIN, idx, &rcfg, (int)threads, &b, err, sizeof err)) goto fail;
        if (run_step(&sp, opt, &b, ew_dist_seed(&dist, cli_mix64(seed ^ cli_mix64((uint64_t)k + 1))), &loss, &gn, &tm, err,
                     sizeof err)) {
            fprintf(stderr, "egoworld %s: step %ld: %s; stopping (the last checkpoint, step %ld, is kept)\n", cmd, k + 1,
                    err, sc.step);
            goto fail_quiet;
        }
        if (dist.size > 1) { /* the global batch's figures (the same divergence decision everywhere) */
            float v[9] = {loss, tm.objective, tm.cost, tm.prox, tm.lane, tm.offroad, tm.action, tm.jerk, tm.uncertainty};
            ew_dist_allreduce_mean(&dist, v, 9);
            loss = v[0], tm.objective = v[1], tm.cost = v[2], tm.prox = v[3], tm.lane = v[4], tm.offroad = v[5];
            tm.action = v[6], tm.jerk = v[7], tm.uncertainty = v[8];
        }
        if (isnan(first_loss)) first_loss = loss;
        last_loss = loss;
        /* divergence: far above the recent median */
        if (nhist >= 50) {
            memcpy(sorted, hist, sizeof(float) * 50);
            qsort(sorted, 50, sizeof(float), cli_cmp_float);
            float med = sorted[25];
            if (med > 0 && loss > 100.0f * med) {
                fprintf(stderr,
                        "egoworld %s: step %ld: loss %g is above 100x the recent median %g; stopping (the last "
                        "checkpoint, step %ld, is kept)\n",
                        cmd, k + 1, (double)loss, (double)med, sc.step);
                goto fail_quiet;
            }
        }
        hist[nhist % 50] = loss;
        nhist++;
        done_steps++;
        double el = cli_now() - t0, sps = (double)done_steps * (double)gbatch / (el > 0 ? el : 1e-9);
        if (nv > 0 && (k + 1) % val_every == 0) {
            if (validate(&sp, &d, vidx, nv, &rcfg, (int)threads, &vb, seed, &dist, &last_val, err, sizeof err)) goto fail;
            if (!pr.tty && root)
                fprintf(stderr, "egoworld %s: step %ld validation %s %.6g\n", cmd, k + 1, mpur ? "objective" : "loss",
                        last_val);
        }
        if (mpur)
            fprintf(csv, "%ld,%.7g,%.7g,%.7g,%.7g,%.7g,%.7g,%.7g,%.7g,%.7g,%.7g,%.7g,%.4g\n", k + 1, (double)tm.objective,
                    (double)tm.cost, (double)tm.prox, (double)tm.lane, (double)tm.offroad, (double)tm.action,
                    (double)tm.jerk, (double)tm.uncertainty, (double)gn, lr, last_val, sps);
        else
            fprintf(csv, "%ld,%.7g,%.7g,%.7g,%.7g,%.4g\n", k + 1, (double)loss, (double)gn, lr, last_val, sps);
        if ((k + 1) % ckpt_every == 0 || k + 1 == steps) {
            fflush(csv);
            sc.step = k + 1;
            sc.val = last_val;
            if (!ew_dist_same_params(&dist, pp, np, NULL)) {
                snprintf(err, sizeof err, "step %ld: the MPI ranks' parameters differ (rank %d)", k + 1, dist.rank);
                goto fail;
            }
            if (root && save_all(&sc, err, sizeof err)) goto fail;
        }
        char extra[200];
        if (mpur)
            snprintf(extra, sizeof extra, "obj %.4g (cost %.4g unc %.3g)  val %.4g  %.1f samples/s", (double)tm.objective,
                     (double)tm.cost, (double)tm.uncertainty, last_val, sps);
        else
            snprintf(extra, sizeof extra, "loss %.4g  val %.4g  %.1f samples/s", (double)loss, last_val, sps);
        if (root && (pr.tty || (k + 1) % log_every == 0 || k + 1 == steps)) {
            if (pr.tty) {
                cli_progress_update(&pr, k + 1, extra);
            } else {
                double eta = el * (double)(steps - k - 1) / (double)done_steps;
                fprintf(stderr, "%s %ld/%ld  %.1fs elapsed  ETA %.1fs  %s\n", what, k + 1, steps, el, eta, extra);
            }
        }
    }
    if (root) cli_progress_end(&pr);
    double wall = cli_now() - t0, final_val = last_val;
    /* the summary's validation at the last step (the CSV and checkpoints keep the periodic
     * value, so that they do not depend on where a run stopped) */
    if (nv > 0 && steps % val_every != 0 &&
        validate(&sp, &d, vidx, nv, &rcfg, (int)threads, &vb, seed, &dist, &final_val, err, sizeof err))
        goto fail;
    if (json && root) {
        printf("{\"command\": \"train-policy\", \"method\": \"%s\", \"out\": \"%s\", \"steps\": %ld, \"start_step\": %ld, "
               "\"batch\": %ld, \"lr\": %.9g, \"seed\": %" PRIu64 ", \"threads\": %ld, \"train_samples\": %zu, "
               "\"val_samples\": %zu, \"params\": %zu, \"first_loss\": %.9g, \"last_loss\": %.9g, \"val\": %.9g, "
               "\"samples_per_s\": %.4g, \"wall_s\": %.3f, \"setup_s\": %.3f",
               method_s, model_path, steps, start, batch, lr, seed, threads, ntr, nv, ew_param_list_numel(&p.params),
               first_loss, last_loss, final_val, done_steps ? (double)done_steps * (double)gbatch / wall : 0.0, wall,
               t0 - t_setup);
        printf(", \"ranks\": %d, \"global_batch\": %ld, \"allreduce_floats_per_step\": %zu", dist.size, gbatch,
               dist.size > 1 ? ew_optim_grad_numel(opt) : (size_t)0);
        if (mpur) printf(", \"world\": \"%s\", \"mpur\": %s", world, mpur_cfg);
        printf("}\n");
    }
    rc = 0;
    goto done;
oom:
    snprintf(err, sizeof err, "out of memory");
fail:
    fprintf(stderr, "egoworld %s: %s\n", cmd, err);
fail_quiet:
    rc = 1;
    ew_dist_abort(&dist, 1); /* the other ranks would wait forever in a collective */
done:
    if (csv) fclose(csv);
    if (ck) ew_checkpoint_close(ck);
    ew_optim_free(opt);
    ew_graph_destroy(g);
    if (be) ew_backend_destroy(be);
    ew_pt_batch_free(&b);
    ew_pt_batch_free(&vb);
    if (have_us) ew_mpur_ustats_free(&us);
    if (have_data) ew_fm_data_close(&d);
    if (have_p) ew_policy_free(&p);
    if (have_wm) ew_fm_free(&wm);
    free(idx);
    free(vidx);
    free(perm);
    free(hist);
    free(sorted);
    free(model_path);
    free(ckpt_path);
    free(csv_path);
    free(data_desc);
    free(mpur_cfg);
    free(init_copy);
    free(ustats_json);
    goto done_args;
usage:
    rc = 2;
done_args:
    for (int k = 0; k < EW_FM_DATA_MAX_SETS; k++) free(dirbuf[k]);
    return rc;
}
