/* fm_bench.c - world-model training throughput (see fm_bench.h). */
#define _POSIX_C_SOURCE 200809L
#include "models/fm_bench.h"

#include "models/backend_cuda.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int ew_fm_bench_run(const ew_fm_config *cfg, const ew_fm_bench_opts *o, FILE *out) {
    char err[256] = "";
    if (!cfg || !o || o->batch < 1 || o->steps < 1 || o->warmup < 0 || o->threads < 1) {
        fprintf(stderr, "fm bench: bad options\n");
        return -1;
    }
    ew_fm m;
    if (ew_fm_init(&m, cfg, NULL, err, sizeof err)) {
        fprintf(stderr, "fm bench: %s\n", err);
        return -1;
    }
    ew_backend *be = NULL;
    if (o->device == 1) {
        ew_cuda_options co = ew_cuda_defaults();
        co.tf32 = o->tf32;
        be = ew_backend_cuda_create(&co, err, sizeof err);
        if (!be) {
            fprintf(stderr, "fm bench: --device cuda: %s\n", err);
            ew_fm_free(&m);
            return -1;
        }
    } else {
        be = ew_backend_cpu_create(o->threads);
    }
    ew_fm_trainer *t = NULL;
    int B = o->batch, T = cfg->n_pred, C = cfg->channels;
    size_t img = (size_t)C * cfg->height * cfg->width;
    size_t nf = (size_t)B * cfg->n_cond * img, ns = (size_t)B * cfg->n_cond * 5, na = (size_t)B * T * 2;
    size_t ntf = (size_t)B * T * img, nts = (size_t)B * T * 5;
    float *mem = malloc(sizeof(float) * (nf + ns + na + ntf + nts));
    double *times = calloc((size_t)o->steps, sizeof(double));
    int rc = -1;
    ew_fm_train_config tc = ew_fm_train_defaults();
    if (!be || !mem || !times) {
        fprintf(stderr, "fm bench: out of memory\n");
        goto done;
    }
    if (ew_fm_trainer_create(&m, be, &tc, &t, err, sizeof err)) {
        fprintf(stderr, "fm bench: %s\n", err);
        goto done;
    }
    ew_fm_batch b = {B, T, mem, mem + nf, mem + nf + ns, mem + nf + ns + na, mem + nf + ns + na + ntf};
    ew_rng r;
    ew_rng_seed(&r, 7);
    for (size_t i = 0; i < nf; i++) b.frames[i] = (float)ew_rng_uniform(&r);
    for (size_t i = 0; i < ntf; i++) b.target_frames[i] = (float)ew_rng_uniform(&r);
    for (size_t i = 0; i < ns + na + nts; i++) b.states[i] = (float)ew_rng_normal(&r);
    for (size_t i = 0; i < ns / 5; i++) b.states[5 * i + 4] = 1.0f + (float)ew_rng_uniform(&r);
    ew_fm_losses l = {0};
    for (int s = 0; s < o->warmup + o->steps; s++) {
        double t0 = now_s();
        if (ew_fm_train_step(t, &b, (uint64_t)s, &l, err, sizeof err)) {
            fprintf(stderr, "fm bench: %s\n", err);
            goto done;
        }
        if (s >= o->warmup) times[s - o->warmup] = now_s() - t0;
    }
    qsort(times, (size_t)o->steps, sizeof(double), cmp_double);
    double med = o->steps % 2 ? times[o->steps / 2] : 0.5 * (times[o->steps / 2 - 1] + times[o->steps / 2]);
    size_t hw = ew_graph_arena(ew_fm_trainer_graph(t))->high_water;
    size_t np = ew_param_list_numel(&m.params);
    if (o->json)
        fprintf(out,
                "{\"variant\": \"%s\", \"stochastic\": %d, \"nf\": %d, \"n_cond\": %d, \"n_pred\": %d, \"batch\": %d, "
                "\"device\": \"%s\", \"gpu\": \"%s\", \"tf32\": %d, \"threads\": %d, \"params\": %zu, \"step_ms\": %.3f, \"samples_per_s\": %.3f, \"arena_mb\": %.1f, "
                "\"final_loss\": %.6f, \"steps\": %d}\n",
                ew_fm_variant_name(cfg->variant), cfg->stochastic, cfg->nf, cfg->n_cond, T, B, be->name,
                ew_cuda_device_name(be), o->device == 1 ? o->tf32 : 0, o->threads, np, 1e3 * med,
                B / med, (double)hw / 1048576.0, (double)l.loss, o->steps);
    else
        fprintf(out,
                "fm train step: %s%s nf %d n_cond %d n_pred %d batch %d threads %d params %zu: median %.1f ms (of %d), "
                "%.2f samples/s, arena %.0f MB\n",
                ew_fm_variant_name(cfg->variant), cfg->stochastic ? " stochastic" : "", cfg->nf, cfg->n_cond, T, B,
                o->threads, np, 1e3 * med, o->steps, B / med, (double)hw / 1048576.0);
    rc = 0;
done:
    ew_fm_trainer_free(t);
    ew_fm_free(&m); /* before the backend: a moved model frees into its memory */
    if (be) ew_backend_destroy(be);
    free(mem);
    free(times);
    return rc;
}
