/* test_dist.c - models/dist.h and the data-parallel hooks.
 *
 * Without arguments (the CTest unit test, one process): the single-rank semantics of every
 * collective, the optimizer's gradient reducer (called once per step, before clipping, with
 * every grad packed in param order), the per-rank seed stream, the eval result pack/unpack
 * and the trajectory episode export/import round trips.
 * Modes used by tests/mpi.cmake:
 *   test_dist collectives          run under mpirun: sums, means, gather of variable sizes,
 *                                   broadcast, same_u64, any, on every rank ("collectives OK")
 *   test_dist allreduce-bench N REPS  under mpirun: median wall time of the mean all-reduce
 *                                   of N floats (the gradient reducer's payload) over REPS
 *                                   calls after 3 warm-ups; rank 0 prints it (docs/BENCHMARKS.md)
 *   test_dist maxdiff A B [TOL]    over the tensors of two safetensors files whose names do
 *                                   not start with "optim.": prints the largest |a - b| and
 *                                   the fraction of elements with |a - b| > TOL (default
 *                                   1e-5); exit 1 when the tensor sets or shapes differ.
 *                                   (Adam turns float-rounding noise in a gradient that is 0
 *                                   in exact arithmetic - e.g. a bias under a shift-invariant
 *                                   softmax - into steps of +-lr, so a few elements may differ
 *                                   by ~lr between equivalent runs: the fraction tells.)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/checkpoint.h"
#include "models/dist.h"
#include "models/optim.h"
#include "planner/eval.h"
#include "sim/scenario_builtin.h"
#include "sim/traj.h"
#include "sim/world.h"
#include "tests/check.h"

#define CHK(cond) CHECK(cond, "%s", "")

/* ---- maxdiff tool --------------------------------------------------------------------- */
static int maxdiff(const char *a, const char *b, double tol) {
    char err[512];
    ew_checkpoint *ca = NULL, *cb = NULL;
    if (ew_checkpoint_open(a, &ca, err, sizeof err) || ew_checkpoint_open(b, &cb, err, sizeof err)) {
        fprintf(stderr, "maxdiff: %s\n", err);
        ew_checkpoint_close(ca);
        return 1;
    }
    double md = 0;
    int compared = 0, rc = 0;
    uint64_t total = 0, above = 0;
    for (int i = 0; i < ew_checkpoint_count(ca) && !rc; i++) {
        const ew_ckpt_tensor *t = ew_checkpoint_tensor(ca, i);
        if (!strncmp(t->name, EW_OPTIM_STATE_PREFIX, strlen(EW_OPTIM_STATE_PREFIX))) continue;
        int j = ew_checkpoint_find(cb, t->name);
        if (j < 0 || ew_checkpoint_tensor(cb, j)->numel != t->numel) {
            fprintf(stderr, "maxdiff: tensor %s missing or of another size in %s\n", t->name, b);
            rc = 1;
            break;
        }
        float *x = malloc(sizeof(float) * (t->numel ? t->numel : 1)), *y = malloc(sizeof(float) * (t->numel ? t->numel : 1));
        if (!x || !y || ew_checkpoint_read_f32(ca, i, x, t->numel, err, sizeof err) ||
            ew_checkpoint_read_f32(cb, j, y, t->numel, err, sizeof err)) {
            fprintf(stderr, "maxdiff: %s\n", x && y ? err : "out of memory");
            rc = 1;
        } else {
            for (uint64_t k = 0; k < t->numel; k++) {
                double d = fabs((double)x[k] - (double)y[k]);
                if (!(d <= md)) md = d; /* NaN propagates */
                above += !(d <= tol);
                total++;
            }
            compared++;
        }
        free(x);
        free(y);
    }
    ew_checkpoint_close(ca);
    ew_checkpoint_close(cb);
    if (!rc && !compared) {
        fprintf(stderr, "maxdiff: no tensors compared\n");
        rc = 1;
    }
    if (!rc) printf("%.9g %.6g\n", md, total ? (double)above / (double)total : 0.0);
    return rc;
}

/* ---- collectives under mpirun --------------------------------------------------------- */
static int collectives(int *argc, char ***argv) {
    char err[256];
    if (ew_dist_init(argc, argv, err, sizeof err)) {
        fprintf(stderr, "collectives: %s\n", err);
        return 1;
    }
    ew_dist d;
    ew_dist_world(&d);
    int R = d.size, r = d.rank, bad = 0;
    /* sum and mean: rank r contributes r + 1 + i / 4 */
    float v[5], w[5];
    for (int i = 0; i < 5; i++) v[i] = w[i] = (float)(r + 1) + (float)i * 0.25f;
    ew_dist_allreduce_sum(&d, v, 5);
    ew_dist_allreduce_mean(&d, w, 5);
    for (int i = 0; i < 5; i++) {
        float sum = (float)(R * (R + 1) / 2) + (float)R * (float)i * 0.25f;
        bad |= v[i] != sum || fabsf(w[i] - sum / (float)R) > 1e-6f;
    }
    double dv[2] = {0.1 * (r + 1), 1e-12};
    ew_dist_allreduce_sum_f64(&d, dv, 2);
    bad |= fabs(dv[0] - 0.1 * R * (R + 1) / 2) > 1e-12 || fabs(dv[1] - 1e-12 * R) > 1e-24;
    if (d.reduce_calls != (R > 1 ? 3u : 0u) || d.reduce_bytes != (R > 1 ? 56u : 0u)) bad |= 2;
    /* any / same */
    bad |= ew_dist_any(&d, r == R - 1) != 1 || ew_dist_any(&d, 0) != 0;
    bad |= ew_dist_same_u64(&d, 42) != 1 || ew_dist_same_u64(&d, (uint64_t)r) != (R == 1);
    /* broadcast from the last rank */
    char msg[32];
    snprintf(msg, sizeof msg, "rank %d", r);
    ew_dist_bcast(&d, msg, sizeof msg, R - 1);
    char want[32];
    snprintf(want, sizeof want, "rank %d", R - 1);
    bad |= strcmp(msg, want) != 0;
    /* gather: rank r sends r + 1 bytes of value r (rank 0 also one empty-size case via R) */
    unsigned char mine[64];
    memset(mine, r, sizeof mine);
    size_t sizes[64] = {0};
    void *all = NULL;
    if (ew_dist_gather_bytes(&d, mine, (size_t)r + 1, &all, sizes, err, sizeof err)) {
        fprintf(stderr, "collectives: %s\n", err);
        bad = 1;
    } else if (r == 0) {
        const unsigned char *p = all;
        for (int k = 0; k < R; k++) {
            bad |= sizes[k] != (size_t)k + 1;
            for (int j = 0; j <= k; j++) bad |= *p++ != k;
        }
    } else {
        bad |= all != NULL;
    }
    free(all);
    /* params hash */
    float pdat[3] = {1, 2, 3};
    ew_param p = {"x", 1, {3}, pdat, NULL};
    bad |= ew_dist_same_params(&d, &p, 1, NULL) != 1;
    if (R > 1 && r == 1) pdat[2] = 4;
    bad |= ew_dist_same_params(&d, &p, 1, NULL) != (R == 1);
    bad = ew_dist_any(&d, bad);
    if (r == 0) printf("collectives %s: %d ranks (mpi %d)\n", bad ? "FAILED" : "OK", R, d.mpi);
    ew_dist_finalize();
    return bad ? 1 : 0;
}

static int cmp_dbl(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int allreduce_bench(int *argc, char ***argv, size_t n, int reps) {
    char err[256];
    if (ew_dist_init(argc, argv, err, sizeof err)) {
        fprintf(stderr, "allreduce-bench: %s\n", err);
        return 1;
    }
    ew_dist d;
    ew_dist_world(&d);
    float *buf = malloc(sizeof(float) * (n ? n : 1));
    double *t = malloc(sizeof(double) * (size_t)(reps > 0 ? reps : 1));
    if (!buf || !t || reps < 1) {
        free(buf);
        free(t);
        ew_dist_finalize();
        return 1;
    }
    for (size_t i = 0; i < n; i++) buf[i] = (float)(i % 97) * 0.01f;
    for (int k = 0; k < 3 + reps; k++) {
        ew_dist_barrier(&d);
        double c0 = d.comm_s;
        ew_dist_allreduce_mean(&d, buf, n);
        if (k >= 3) t[k - 3] = d.comm_s - c0;
    }
    qsort(t, (size_t)reps, sizeof *t, cmp_dbl);
    if (d.rank == 0)
        printf("allreduce %zu floats (%.3f MB) on %d ranks: median %.3f ms, min %.3f ms over %d calls; %.2f GB/s algorithm bandwidth\n",
               n, 4e-6 * (double)n, d.size, 1e3 * t[reps / 2], 1e3 * t[0], reps,
               t[reps / 2] > 0 ? 4e-9 * (double)n / t[reps / 2] : 0.0);
    free(buf);
    free(t);
    ew_dist_finalize();
    return 0;
}

/* ---- single-process unit tests -------------------------------------------------------- */
static int scale_calls;
static size_t scale_n;
/* a fake reducer: halves every grad (as the mean of this rank and a zero rank would) */
static int halve(void *ctx, float *buf, size_t n) {
    (void)ctx;
    scale_calls++;
    scale_n = n;
    for (size_t i = 0; i < n; i++) buf[i] *= 0.5f;
    return 0;
}

static void test_single_rank(void) {
    ew_dist d;
    ew_dist_world(&d);
    CHK(d.rank == 0 && d.size == 1 && d.mpi == 0);
    float v[3] = {1, 2, 3};
    ew_dist_allreduce_sum(&d, v, 3);
    ew_dist_allreduce_mean(&d, v, 3);
    CHK(v[0] == 1 && v[1] == 2 && v[2] == 3);
    CHK(ew_dist_any(&d, 5) == 1 && ew_dist_any(&d, 0) == 0 && ew_dist_same_u64(&d, 7) == 1);
    size_t sz[1];
    void *all = NULL;
    CHK(ew_dist_gather_bytes(&d, "abc", 3, &all, sz, NULL, 0) == 0 && sz[0] == 3 && all && !memcmp(all, "abc", 3));
    free(all);
    CHK(d.reduce_calls == 0 && d.reduce_bytes == 0);
    /* seeds: rank 0 keeps the seed (1-rank runs unchanged), other ranks differ from it and
     * from each other */
    ew_dist a = d, b = d;
    a.rank = 1;
    b.rank = 2;
    CHK(ew_dist_seed(&d, 99) == 99);
    CHK(ew_dist_seed(&a, 99) != 99 && ew_dist_seed(&b, 99) != 99 && ew_dist_seed(&a, 99) != ew_dist_seed(&b, 99));
    CHK(ew_dist_seed(&a, 99) != ew_dist_seed(&a, 100));
    /* hash: FNV-1a test vector ("a" -> af63dc4c8601ec8c) */
    CHK(ew_dist_hash(EW_DIST_HASH_INIT, "a", 1) == 0xaf63dc4c8601ec8cULL);
}

static void test_optim_reducer(void) {
    /* two params (one a buffer without grad) and SGD without momentum: p -= lr * reduced g */
    float d1[4] = {1, 1, 1, 1}, g1[4] = {4, -4, 8, 0}, d2[2] = {5, 5}, d3[2] = {0, 0}, g3[2] = {2, 2};
    ew_param ps[3] = {{"w", 2, {2, 2}, d1, g1}, {"buf", 1, {2}, d2, NULL}, {"b", 1, {2}, d3, g3}};
    ew_optim_config c = ew_optim_defaults(EW_OPTIM_SGD);
    c.momentum = 0;
    c.lr = 0.5f;
    ew_optim *o = NULL;
    char err[256];
    CHK(ew_optim_create(ps, 3, &c, &o, err, sizeof err) == 0);
    CHK(ew_optim_grad_numel(o) == 6);
    CHK(ew_optim_set_grad_reduce(o, halve, NULL, err, sizeof err) == 0);
    /* the clip sees the reduced grads: |g/2| = sqrt(4+4+16+0+1+1) = sqrt(26) */
    float n = ew_optim_clip_grad_norm(o, 0.0f);
    CHECK_NEAR(n, sqrtf(26.0f), 1e-5);
    CHK(scale_calls == 1 && scale_n == 6);
    ew_optim_step(o); /* already reduced: not again */
    CHK(scale_calls == 1);
    CHECK_NEAR(d1[0], 1 - 0.5f * 2, 1e-6);
    CHECK_NEAR(d1[2], 1 - 0.5f * 4, 1e-6);
    CHECK_NEAR(d3[1], -0.5f, 1e-6);
    CHK(d2[0] == 5 && d2[1] == 5); /* the buffer is untouched */
    /* a step without clipping reduces by itself, exactly once */
    g1[0] = 2, g1[1] = g1[2] = g1[3] = 0, g3[0] = g3[1] = 0;
    ew_optim_step(o);
    CHK(scale_calls == 2);
    CHECK_NEAR(d1[0], 0 - 0.5f * 1, 1e-6);
    /* zero_grad re-arms; detaching stops the calls */
    ew_optim_zero_grad(o);
    ew_optim_clip_grad_value(o, 1.0f);
    CHK(scale_calls == 3);
    CHK(ew_optim_set_grad_reduce(o, NULL, NULL, err, sizeof err) == 0);
    ew_optim_step(o);
    CHK(scale_calls == 3);
    ew_optim_free(o);
}

static void test_eval_pack(void) {
    ew_eval_result r;
    memset(&r, 0, sizeof r);
    r.episodes = 5;
    r.per = calloc(5, sizeof *r.per);
    ew_eval_result q = r;
    q.per = calloc(5, sizeof *q.per);
    CHK(r.per && q.per);
    if (!r.per || !q.per) return;
    for (int i = 0; i < 5; i++) {
        r.per[i].m.status = EW_EP_SUCCESS;
        r.per[i].m.success = i % 2;
        r.per[i].m.distance = 10.0f * (float)i;
        r.per[i].plan_ms = i;
        r.per[i].plan_calls = 1;
        snprintf(r.per[i].m.label, sizeof r.per[i].m.label, "ep%d", i);
    }
    /* ranks 0 and 1 of 2: together every episode, back in place */
    for (int rank = 0; rank < 2; rank++) {
        size_t n;
        void *b = ew_eval_pack(&r, rank, 2, &n);
        CHK(b && n > 0);
        char err[128];
        CHK(ew_eval_unpack(&q, b, n, err, sizeof err) == 0);
        CHK(ew_eval_unpack(&q, b, n - 1, err, sizeof err) == -1);
        free(b);
    }
    for (int i = 0; i < 5; i++) CHK(!memcmp(&q.per[i].m, &r.per[i].m, sizeof r.per[i].m) && q.per[i].plan_ms == i);
    char err[128];
    CHK(ew_eval_summarize(&q, err, sizeof err) == 0 && fabs(q.success_rate - 0.4) < 1e-12 &&
          fabs(q.mean_distance_m - 20.0) < 1e-9);
    free(r.per);
    free(q.per);
}

static void test_traj_export(void) {
    ew_world_config wc;
    char err[256];
    CHK(ew_scenario_builtin("free-2lane", &wc, err, (int)sizeof err) == 0);
    ew_world *w = ew_world_create(&wc, err, (int)sizeof err);
    CHK(w != NULL);
    if (!w) return;
    ew_world_reset(w, 3);
    ew_traj_enc *e = ew_traj_enc_create(), *f = ew_traj_enc_create();
    CHK(ew_traj_enc_begin(e, "free-2lane", 3, ew_world_road(w), wc.ego_length, wc.ego_width, err, (int)sizeof err) == 0);
    ew_action u = {0.5f, 0.0f};
    for (int t = 0; t < 5; t++) {
        CHK(ew_traj_enc_step(e, w, &u, err, (int)sizeof err) == 0);
        ew_world_step(w, &u);
    }
    CHK(ew_traj_enc_end(e, "timeout", err, (int)sizeof err) == 0);
    void *b = NULL;
    size_t n = 0;
    CHK(ew_traj_enc_export(e, &b, &n, err, (int)sizeof err) == 0 && n > 8);
    CHK(ew_traj_enc_import(f, b, n, err, (int)sizeof err) == 0);
    CHK(ew_traj_enc_steps(f) == 5 && ew_traj_enc_vehicle_steps(f) == ew_traj_enc_vehicle_steps(e));
    void *b2 = NULL;
    size_t n2 = 0;
    CHK(ew_traj_enc_export(f, &b2, &n2, err, (int)sizeof err) == 0 && n2 == n && !memcmp(b, b2, n));
    ((unsigned char *)b)[n - 1] ^= 1; /* a flipped bit fails the checksum */
    CHK(ew_traj_enc_import(f, b, n, err, (int)sizeof err) == -1);
    CHK(ew_traj_enc_import(f, b, 20, err, (int)sizeof err) == -1);
    free(b);
    free(b2);
    ew_traj_enc_free(e);
    ew_traj_enc_free(f);
    ew_world_destroy(w);
}

int main(int argc, char **argv) {
    if (argc >= 4 && !strcmp(argv[1], "maxdiff")) return maxdiff(argv[2], argv[3], argc >= 5 ? atof(argv[4]) : 1e-5);
    if (argc >= 2 && !strcmp(argv[1], "collectives")) return collectives(&argc, &argv);
    if (argc >= 4 && !strcmp(argv[1], "allreduce-bench"))
        return allreduce_bench(&argc, &argv, (size_t)strtoull(argv[2], NULL, 10), atoi(argv[3]));
    test_single_rank();
    test_optim_reducer();
    test_eval_pack();
    test_traj_export();
    printf("built with MPI: %d\n", ew_dist_built_with_mpi());
    return check_done();
}
