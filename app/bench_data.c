/* bench_data.c - `egoworld bench data`: rendering throughput of training batches from a
 * trajectory dataset (ew_traj_fill, sim/traj.h): median ms per batch at 1 thread and at
 * --threads N, for B samples of n_cond + n_pred frames at the default 117x24 raster. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/cli.h"
#include "sim/traj.h"

int ew_bench_data(int argc, char **argv);

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median ms per batch over `repeat` batches (after one warm-up batch). */
static int time_fill(const ew_traj_set *s, ew_traj_batch_cfg *bc, const ew_traj_sample *all, size_t n, int B,
                     int repeat, float *buf[5], double *ms, char *err, int errlen) {
    double *t = malloc((size_t)repeat * sizeof *t);
    ew_traj_sample *sm = malloc((size_t)B * sizeof *sm);
    if (!t || !sm) {
        free(t);
        free(sm);
        snprintf(err, (size_t)errlen, "out of memory");
        return -1;
    }
    uint64_t k = 12345;
    for (int r = -1; r < repeat; r++) {
        for (int b = 0; b < B; b++) {
            k = k * 6364136223846793005ULL + 1442695040888963407ULL;
            sm[b] = all[(k >> 33) % n];
        }
        double t0 = cli_now();
        if (ew_traj_fill(s, bc, sm, B, buf[0], buf[1], buf[2], buf[3], buf[4], err, errlen) != 0) {
            free(t);
            free(sm);
            return -1;
        }
        if (r >= 0) t[r] = (cli_now() - t0) * 1e3;
    }
    qsort(t, (size_t)repeat, sizeof *t, cmp_d);
    *ms = repeat % 2 ? t[repeat / 2] : 0.5 * (t[repeat / 2 - 1] + t[repeat / 2]);
    free(t);
    free(sm);
    return 0;
}

int ew_bench_data(int argc, char **argv) {
    const char *cmd = "bench data", *data = NULL;
    long batch = 64, n_cond = 20, n_pred = 20, threads = 2, repeat = 9;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("usage: egoworld bench data --data DIR [--batch B] [--n-cond N] [--n-pred N] [--threads T]\n"
                   "                          [--repeat R] [--json]\n\n"
                   "Median milliseconds to render one training batch (ew_traj_fill: B samples of\n"
                   "n_cond + n_pred frames, 3 channels, 117x24) at 1 thread and at T threads\n"
                   "(defaults: B 64, n_cond 20, n_pred 20, T 2, R 9).\n");
            return 0;
        } else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--data")) { if (!(data = cli_value(cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--batch")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 1, 4096, &batch)) return 2; }
        else if (!strcmp(a, "--n-cond")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 1, 1000, &n_cond)) return 2; }
        else if (!strcmp(a, "--n-pred")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 0, 1000, &n_pred)) return 2; }
        else if (!strcmp(a, "--threads")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 1, 1024, &threads)) return 2; }
        else if (!strcmp(a, "--repeat")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 1, 10000, &repeat)) return 2; }
        else return cli_unknown(cmd, a);
    }
    if (!data) {
        fprintf(stderr, "egoworld bench data: --data: the dataset folder is required\n");
        return 2;
    }
    char err[512];
    ew_traj_set *s = ew_traj_open(data, err, (int)sizeof err);
    if (!s) {
        fprintf(stderr, "egoworld bench data: %s\n", err);
        return 1;
    }
    ew_traj_sample *all = NULL;
    size_t n = 0;
    if (ew_traj_samples(s, EW_SPLIT_ALL, (int)n_cond, (int)n_pred, 1, &all, &n, err, (int)sizeof err) != 0 || n == 0) {
        fprintf(stderr, "egoworld bench data: %s\n", n == 0 ? "no episode is long enough for one sample" : err);
        ew_traj_close(s);
        return 1;
    }
    ew_traj_batch_cfg bc = {0};
    bc.n_cond = (int)n_cond;
    bc.n_pred = (int)n_pred;
    ew_raster_cfg_default(&bc.raster);
    bc.channels = 3;
    size_t plane = (size_t)bc.raster.rows * bc.raster.cols;
    float *buf[5];
    buf[0] = malloc(sizeof(float) * batch * n_cond * 3 * plane);
    buf[1] = malloc(sizeof(float) * batch * n_cond * 5);
    buf[2] = malloc(sizeof(float) * batch * (n_pred + 1) * 2);
    buf[3] = malloc(sizeof(float) * batch * (n_pred + 1) * 3 * plane);
    buf[4] = malloc(sizeof(float) * batch * (n_pred + 1) * 5);
    int rc = 0;
    double ms1 = 0, msT = 0;
    for (int k = 0; k < 5; k++)
        if (!buf[k]) rc = 1;
    if (rc == 0) {
        bc.threads = 1;
        if (time_fill(s, &bc, all, n, (int)batch, (int)repeat, buf, &ms1, err, (int)sizeof err) != 0) rc = 1;
        bc.threads = (int)threads;
        if (rc == 0 && time_fill(s, &bc, all, n, (int)batch, (int)repeat, buf, &msT, err, (int)sizeof err) != 0) rc = 1;
    }
    if (rc) fprintf(stderr, "egoworld bench data: %s\n", err);
    else {
        double frames = (double)batch * (double)(n_cond + n_pred);
        if (json)
            printf("{\"data\": \"%s\", \"episodes\": %d, \"ego_steps\": %lld, \"batch\": %ld, \"n_cond\": %ld, \"n_pred\": %ld, "
                   "\"rows\": %d, \"cols\": %d, \"cores\": %d, \"threads\": %ld, \"repeat\": %ld, \"ms_per_batch_1t\": %.6g, "
                   "\"ms_per_batch\": %.6g, \"speedup\": %.4g, \"frames_per_s_1t\": %.6g, \"frames_per_s\": %.6g}\n",
                   data, ew_traj_n_episodes(s), (long long)ew_traj_n_steps(s), batch, n_cond, n_pred, bc.raster.rows,
                   bc.raster.cols, cli_cores(), threads, repeat, ms1, msT, ms1 / msT, frames / ms1 * 1e3,
                   frames / msT * 1e3);
        else {
            printf("dataset       %s (%d episodes, %lld ego-steps)\n", data, ew_traj_n_episodes(s),
                   (long long)ew_traj_n_steps(s));
            printf("batch         %ld samples x %ld frames (%ld cond + %ld pred), 3 x %d x %d\n", batch, n_cond + n_pred,
                   n_cond, n_pred, bc.raster.rows, bc.raster.cols);
            printf("1 thread      %.2f ms per batch (%.0f frames/s)\n", ms1, frames / ms1 * 1e3);
            printf("%ld threads     %.2f ms per batch (%.0f frames/s, %.2fx)\n", threads, msT, frames / msT * 1e3,
                   ms1 / msT);
        }
    }
    for (int k = 0; k < 5; k++) free(buf[k]);
    free(all);
    ew_traj_close(s);
    return rc;
}
