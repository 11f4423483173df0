/* nnbench.c - the deterministic world-model training step, timed (see nnbench.h). */
#define _POSIX_C_SOURCE 200809L
#include "models/nnbench.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <omp.h>
#include <unistd.h>

#include "models/backend_cuda.h"
#include "models/layers.h"
#include "models/optim.h"

enum { T_OTHER, T_ENC1, T_ENC2, T_ENC3, T_SENC, T_AENC, T_RES, T_DEC1, T_DEC2, T_DEC3, T_HEAD, T_LOSS, T_COUNT };
static const char *const tag_names[T_COUNT] = {"other", "enc1", "enc2", "enc3", "senc", "aenc",
                                               "res",   "dec1", "dec2", "dec3", "head", "loss"};

typedef struct {
    ew_conv_layer enc[3], res[3], dec[3];
    ew_mlp senc, aenc, head;
    ew_param_list params;
} fm_model;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void model_free(fm_model *m) {
    for (int i = 0; i < 3; i++) {
        ew_conv_layer_free(&m->enc[i]);
        ew_conv_layer_free(&m->res[i]);
        ew_conv_layer_free(&m->dec[i]);
    }
    ew_mlp_free(&m->senc);
    ew_mlp_free(&m->aenc);
    ew_mlp_free(&m->head);
    ew_param_list_free(&m->params);
}

static int model_init(fm_model *m, const ew_bench_nn_config *c, int hh, int hw, char *err, size_t errsz) {
    memset(m, 0, sizeof *m);
    int nf = c->nfeature, hid = 4 * nf * hh * hw;
    ew_conv_opts s2 = {{2, 2}, {1, 1}, {0, 0}};
    ew_conv_opts one = {{1, 1}, {0, 0}, {0, 0}}, three = {{1, 1}, {1, 1}, {0, 0}};
    int ench[4] = {3 * c->ncond, nf, 2 * nf, 4 * nf};
    int dech[4] = {4 * nf, 2 * nf, nf, 3};
    /* output padding that undoes each encoder stage's floor exactly */
    int eh[4] = {c->height, 0, 0, 0}, ew[4] = {c->width, 0, 0, 0};
    for (int i = 0; i < 3; i++) {
        eh[i + 1] = (eh[i] + 2 - 4) / 2 + 1;
        ew[i + 1] = (ew[i] + 2 - 4) / 2 + 1;
    }
    int rc = 0;
    uint64_t seed = 1000;
    char name[32];
    for (int i = 0; i < 3 && !rc; i++) {
        snprintf(name, sizeof name, "enc%d", i + 1);
        rc = ew_conv2d_layer_init(&m->enc[i], name, ench[i], ench[i + 1], 4, 4, &s2, 1, seed++, err, errsz);
    }
    int rch[4] = {4 * nf, nf, nf, 4 * nf};
    for (int i = 0; i < 3 && !rc; i++) {
        snprintf(name, sizeof name, "res%d", i + 1);
        int k = i == 1 ? 3 : 1;
        rc = ew_conv2d_layer_init(&m->res[i], name, rch[i], rch[i + 1], k, k, i == 1 ? &three : &one, 1, seed++, err, errsz);
    }
    for (int i = 0; i < 3 && !rc; i++) {
        /* decoder stage i maps encoder size eh[3-i] back to eh[2-i] */
        int in_h = eh[3 - i], in_w = ew[3 - i], want_h = eh[2 - i], want_w = ew[2 - i];
        ew_conv_opts o = {{2, 2}, {1, 1}, {want_h - ((in_h - 1) * 2 - 2 + 4), want_w - ((in_w - 1) * 2 - 2 + 4)}};
        snprintf(name, sizeof name, "dec%d", i + 1);
        rc = ew_conv_transpose2d_layer_init(&m->dec[i], name, dech[i], dech[i + 1], 4, 4, &o, 1, seed++, err, errsz);
    }
    int ss[4] = {5 * c->ncond, 4 * nf, 4 * nf, hid}, as[4] = {2, 4 * nf, 4 * nf, hid}, hs[4] = {hid, 4 * nf, 4 * nf, 5};
    if (!rc) rc = ew_mlp_init(&m->senc, "senc", 3, ss, 0.2f, seed++, err, errsz);
    if (!rc) rc = ew_mlp_init(&m->aenc, "aenc", 3, as, 0.2f, seed++, err, errsz);
    if (!rc) rc = ew_mlp_init(&m->head, "head", 3, hs, 0.2f, seed++, err, errsz);
    for (int i = 0; i < 3 && !rc; i++) rc = ew_conv_layer_params(&m->enc[i], &m->params);
    if (!rc) rc = ew_mlp_params(&m->senc, &m->params);
    if (!rc) rc = ew_mlp_params(&m->aenc, &m->params);
    for (int i = 0; i < 3 && !rc; i++) rc = ew_conv_layer_params(&m->res[i], &m->params);
    for (int i = 0; i < 3 && !rc; i++) rc = ew_conv_layer_params(&m->dec[i], &m->params);
    if (!rc) rc = ew_mlp_params(&m->head, &m->params);
    if (rc) {
        if (err && errsz && !err[0]) snprintf(err, errsz, "out of memory");
        model_free(m);
    }
    return rc;
}

static void *be_alloc(void *ctx, size_t bytes) {
    const ew_backend *be = ctx;
    return be->mem_alloc(be, bytes);
}

static void be_free(void *ctx, void *p) {
    const ew_backend *be = ctx;
    be->mem_free(be, p);
}

/* Moves every layer into a device backend's memory and collects the parameters again. */
static int model_move(fm_model *m, const ew_backend *be) {
    if (!ew_backend_is_device(be)) return 0;
    ew_allocator al = {be_alloc, be_free, (void *)be};
    int rc = 0;
    for (int i = 0; i < 3 && !rc; i++)
        rc = ew_conv_layer_move(&m->enc[i], &al) || ew_conv_layer_move(&m->res[i], &al) ||
             ew_conv_layer_move(&m->dec[i], &al);
    if (!rc) rc = ew_mlp_move(&m->senc, &al) || ew_mlp_move(&m->aenc, &al) || ew_mlp_move(&m->head, &al);
    m->params.n = 0;
    for (int i = 0; i < 3 && !rc; i++) rc = ew_conv_layer_params(&m->enc[i], &m->params);
    if (!rc) rc = ew_mlp_params(&m->senc, &m->params);
    if (!rc) rc = ew_mlp_params(&m->aenc, &m->params);
    for (int i = 0; i < 3 && !rc; i++) rc = ew_conv_layer_params(&m->res[i], &m->params);
    for (int i = 0; i < 3 && !rc; i++) rc = ew_conv_layer_params(&m->dec[i], &m->params);
    if (!rc) rc = ew_mlp_params(&m->head, &m->params);
    return rc ? -1 : 0;
}

typedef struct {
    float *frames, *states, *action, *timg, *tstate;
} fm_batch;

static float *balloc(const ew_backend *be, size_t n) {
    return ew_backend_is_device(be) ? be->mem_alloc(be, n * sizeof(float)) : malloc(n * sizeof(float));
}

static void bfree(const ew_backend *be, float *p) {
    if (!p) return;
    if (ew_backend_is_device(be))
        be->mem_free(be, p);
    else
        free(p);
}

/* One training step; fwd[] gets forward seconds per tag. Returns the loss or -1. */
static float train_step(ew_graph *g, fm_model *m, const ew_bench_nn_config *c, const fm_batch *b, int hh,
                        int hw, ew_optim *opt, ew_rng *rng, double *fwd, double *adam_s, float **loss_data) {
    const int B = c->batch, nf = c->nfeature, nc = c->ncond;
    ew_graph_reset(g);
    ew_graph_set_tag(g, T_OTHER);
    int xs[4] = {B, 3 * nc, c->height, c->width}, ss[2] = {B, 5 * nc}, as[2] = {B, 2};
    int is[4] = {B, 3, c->height, c->width}, ts[2] = {B, 5}, fs[4] = {B, 4 * nf, hh, hw}, fl[2] = {B, -1};
    ew_tensor *x = ew_tensor_wrap(g, 4, xs, b->frames);
    ew_tensor *s = ew_tensor_wrap(g, 2, ss, b->states);
    ew_tensor *a = ew_tensor_wrap(g, 2, as, b->action);
    double t = now_s(), t1;
#define LAP(tag)              \
    t1 = now_s();             \
    fwd[tag] += t1 - t;       \
    t = t1;                   \
    ew_graph_set_tag(g, (tag) + 1 < T_COUNT ? (tag) + 1 : T_OTHER)

    ew_graph_set_tag(g, T_ENC1);
    ew_tensor *h = x;
    for (int i = 0; i < 3; i++) {
        h = ew_leaky_relu(g, ew_conv_layer_fwd(g, &m->enc[i], h), 0.2f);
        h = ew_channel_dropout(g, h, c->graph ? 0.0f : 0.1f, rng); /* masks are drawn on the host */
        LAP(T_ENC1 + i);
    }
    h = ew_add(g, h, ew_reshape(g, ew_mlp_fwd(g, &m->senc, s), 4, fs));
    LAP(T_SENC);
    h = ew_add(g, h, ew_reshape(g, ew_mlp_fwd(g, &m->aenc, a), 4, fs));
    LAP(T_AENC);
    ew_tensor *r = ew_leaky_relu(g, ew_conv_layer_fwd(g, &m->res[0], h), 0.2f);
    r = ew_leaky_relu(g, ew_conv_layer_fwd(g, &m->res[1], r), 0.2f);
    h = ew_add(g, h, ew_conv_layer_fwd(g, &m->res[2], r));
    LAP(T_RES);
    ew_tensor *d = ew_leaky_relu(g, ew_conv_layer_fwd(g, &m->dec[0], h), 0.2f);
    LAP(T_DEC1);
    d = ew_leaky_relu(g, ew_conv_layer_fwd(g, &m->dec[1], d), 0.2f);
    LAP(T_DEC2);
    ew_tensor *img = ew_sigmoid(g, ew_add(g, ew_conv_layer_fwd(g, &m->dec[2], d), ew_slice(g, x, 1, 3 * (nc - 1), 3)));
    LAP(T_DEC3);
    ew_tensor *st = ew_add(g, ew_slice(g, s, 1, 5 * (nc - 1), 5), ew_mlp_fwd(g, &m->head, ew_reshape(g, h, 2, fl)));
    LAP(T_HEAD);
    ew_tensor *loss = ew_add(g, ew_mse(g, img, ew_tensor_wrap(g, 4, is, b->timg)), ew_mse(g, st, ew_tensor_wrap(g, 2, ts, b->tstate)));
    LAP(T_LOSS);
#undef LAP
    if (!loss || ew_backward(g, loss) != 0) return -1.0f;
    double ta = now_s();
    ew_optim_step(opt);
    ew_optim_zero_grad(opt);
    *adam_s = now_s() - ta;
    if (loss_data) *loss_data = loss->data;
    return loss->data[0];
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n ? (n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2])) : 0.0;
}

ew_bench_nn_config ew_bench_nn_defaults(int threads) {
    ew_bench_nn_config c = {threads < 1 ? 1 : threads, 64, 64, 20, 117, 24, 2, 7, 0, 0, 0, 0};
    return c;
}

int ew_bench_nn_run(const ew_bench_nn_config *c, FILE *out) {
    if (!c || c->batch < 1 || c->nfeature < 1 || c->ncond < 1 || c->height < 16 || c->width < 16 ||
        c->steps < 1 || c->warmup < 0) {
        fprintf(stderr, "bench nn: bad configuration\n");
        return -1;
    }
    int hh = c->height, hw = c->width;
    for (int i = 0; i < 3; i++) {
        hh = (hh + 2 - 4) / 2 + 1;
        hw = (hw + 2 - 4) / 2 + 1;
    }
    /* the optimizer's OpenMP loops use the default team size: hold it to the bench's count */
    int old_threads = omp_get_max_threads();
    omp_set_num_threads(c->threads);
    char err[256] = "";
    ew_backend *be = NULL;
    if (c->device == 1) {
        ew_cuda_options co = ew_cuda_defaults();
        co.tf32 = c->tf32;
        be = ew_backend_cuda_create(&co, err, sizeof err);
        if (!be) {
            fprintf(stderr, "bench nn: --device cuda: %s\n", err);
            omp_set_num_threads(old_threads);
            return -1;
        }
    } else {
        be = ew_backend_cpu_create(c->threads);
    }
    ew_graph *g = be ? ew_graph_create(be, 0) : NULL;
    fm_model m;
    ew_optim *opt = NULL;
    fm_batch b = {0};
    double *samples = NULL;
    int rc = -1;
    if (!g) {
        fprintf(stderr, "bench nn: out of memory\n");
        goto done;
    }
    if (model_init(&m, c, hh, hw, err, sizeof err)) {
        fprintf(stderr, "bench nn: %s\n", err);
        goto done;
    }
    if (model_move(&m, be)) {
        fprintf(stderr, "bench nn: moving the model to %s: %s\n", be->name,
                ew_backend_error(be) ? ew_backend_error(be) : "out of device memory");
        model_free(&m);
        goto done;
    }
    ew_optim_config oc = ew_optim_defaults(EW_OPTIM_ADAM);
    oc.lr = 1e-4f;
    if (ew_optim_create(m.params.items, m.params.n, &oc, &opt, err, sizeof err) ||
        ew_optim_use_backend(opt, be, err, sizeof err)) {
        fprintf(stderr, "bench nn: optimizer: %s\n", err);
        ew_optim_free(opt);
        opt = NULL;
        model_free(&m);
        goto done;
    }
    size_t B = (size_t)c->batch, img = (size_t)c->height * c->width;
    /* on a device backend the batch lives in its memory, as PyTorch's does on the GPU */
    b.frames = balloc(be, B * 3 * c->ncond * img);
    b.states = balloc(be, B * 5 * c->ncond);
    b.action = balloc(be, B * 2);
    b.timg = balloc(be, B * 3 * img);
    b.tstate = balloc(be, B * 5);
    /* per step: T_COUNT forward, T_COUNT backward, adam, total */
    samples = calloc((size_t)c->steps * (2 * T_COUNT + 2), sizeof(double));
    if (!b.frames || !b.states || !b.action || !b.timg || !b.tstate || !samples) {
        fprintf(stderr, "bench nn: out of memory\n");
        goto free_model;
    }
    ew_rng rng;
    ew_rng_seed(&rng, 42);
    for (size_t i = 0; i < B * 3 * c->ncond * img; i++) b.frames[i] = (float)ew_rng_uniform(&rng);
    for (size_t i = 0; i < B * 5 * c->ncond; i++) b.states[i] = (float)ew_rng_normal(&rng);
    for (size_t i = 0; i < B * 2; i++) b.action[i] = (float)ew_rng_normal(&rng);
    for (size_t i = 0; i < B * 3 * img; i++) b.timg[i] = (float)ew_rng_uniform(&rng);
    for (size_t i = 0; i < B * 5; i++) b.tstate[i] = (float)ew_rng_normal(&rng);

    ew_graph_profile(g, 1);
    float loss = 0.0f;
    ew_cuda_graph *cg = NULL;
    float *graph_loss = NULL; /* where the captured step writes its loss */
    if (c->graph && !ew_backend_is_cuda(be)) {
        fprintf(stderr, "bench nn: --graph needs --device cuda\n");
        goto free_model;
    }
    for (int step = 0; step < c->warmup + c->steps; step++) {
        if (c->graph && step >= c->warmup && step > 0) { /* warm: one arena block, no allocation */
            double fwd[T_COUNT] = {0}, adam = 0;
            if (!cg) {
                if (ew_cuda_capture_begin(be) == 0)
                    train_step(g, &m, c, &b, hh, hw, opt, &rng, fwd, &adam, &graph_loss);
                cg = ew_cuda_capture_end(be);
                if (!cg) {
                    fprintf(stderr, "bench nn: capturing the step: %s\n",
                            ew_backend_error(be) ? ew_backend_error(be) : ew_graph_error(g) ? ew_graph_error(g) : "failed");
                    goto free_model;
                }
            }
            double t0 = now_s();
            if (ew_cuda_graph_launch(be, cg) || ew_backend_sync(be)) {
                fprintf(stderr, "bench nn: graph replay: %s\n", ew_backend_error(be) ? ew_backend_error(be) : "failed");
                ew_cuda_graph_free(cg);
                goto free_model;
            }
            double dt = now_s() - t0;
            int k = step - c->warmup;
            for (int t = 0; t < 2 * T_COUNT + 1; t++) samples[(size_t)t * c->steps + k] = 0.0;
            samples[(size_t)(2 * T_COUNT + 1) * c->steps + k] = dt;
            continue;
        }
        double fwd[T_COUNT] = {0}, adam = 0;
        ew_graph_profile_clear(g);
        double t0 = now_s();
        loss = train_step(g, &m, c, &b, hh, hw, opt, &rng, fwd, &adam, NULL);
        double dt = now_s() - t0;
        if (loss < 0.0f) {
            fprintf(stderr, "bench nn: %s\n", ew_graph_error(g) ? ew_graph_error(g) : "step failed");
            goto free_model;
        }
        if (step < c->warmup) continue;
        int k = step - c->warmup;
        for (int t = 0; t < T_COUNT; t++) {
            samples[(size_t)t * c->steps + k] = fwd[t];
            samples[(size_t)(T_COUNT + t) * c->steps + k] = ew_graph_tag_seconds(g, t);
        }
        samples[(size_t)(2 * T_COUNT) * c->steps + k] = adam;
        samples[(size_t)(2 * T_COUNT + 1) * c->steps + k] = dt;
    }
    if (cg) {
        if (graph_loss) loss = *graph_loss; /* the last replay's loss (synchronised above) */
        ew_cuda_graph_free(cg);
        cg = NULL;
    }
    double med[2 * T_COUNT + 2];
    for (int i = 0; i < 2 * T_COUNT + 2; i++) med[i] = median(samples + (size_t)i * c->steps, c->steps);
    double step_s = med[2 * T_COUNT + 1];
    double sps = step_s > 0 ? (double)c->batch / step_s : 0.0;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    size_t nparams = ew_param_list_numel(&m.params);
    if (c->json) {
        fprintf(out, "{\"fm_train_samples_per_s\": %.3f, \"device\": \"%s\", \"gpu\": \"%s\", \"tf32\": %d, "
                     "\"threads\": %d, \"cores\": %ld, \"batch\": %d, \"step_ms\": %.3f, "
                     "\"adam_ms\": %.3f, \"params\": %zu, \"final_loss\": %.6f, \"layers\": [",
                sps, be->name, ew_cuda_device_name(be), c->device == 1 ? c->tf32 : 0, c->threads, cores, c->batch,
                1e3 * step_s, 1e3 * med[2 * T_COUNT], nparams, (double)loss);
        for (int t = 1; t < T_COUNT; t++)
            fprintf(out, "%s{\"name\": \"%s\", \"fwd_ms\": %.3f, \"bwd_ms\": %.3f}", t > 1 ? ", " : "", tag_names[t],
                    1e3 * med[t], 1e3 * med[T_COUNT + t]);
        fprintf(out, "]}\n");
    } else {
        fprintf(out, "world model (deterministic) training step: batch %d, %s%s%s, %d threads, %ld cores, %zu parameters\n",
                c->batch, be->name, c->device == 1 ? " " : "", ew_cuda_device_name(be), c->threads, cores, nparams);
        fprintf(out, "%-8s %10s %10s\n", "layer", "fwd ms", "bwd ms");
        for (int t = 1; t < T_COUNT; t++)
            fprintf(out, "%-8s %10.2f %10.2f\n", tag_names[t], 1e3 * med[t], 1e3 * med[T_COUNT + t]);
        fprintf(out, "%-8s %10.2f\n", "adam", 1e3 * med[2 * T_COUNT]);
        fprintf(out, "step %.2f ms (median of %d), fm_train_samples_per_s %.2f\n", 1e3 * step_s, c->steps, sps);
    }
    rc = 0;
free_model:
    ew_optim_free(opt);
    model_free(&m);
done:
    free(samples);
    bfree(be, b.frames);
    bfree(be, b.states);
    bfree(be, b.action);
    bfree(be, b.timg);
    bfree(be, b.tstate);
    ew_graph_destroy(g);
    if (be) ew_backend_destroy(be);
    omp_set_num_threads(old_threads);
    return rc;
}

int ew_bench_nn(int threads, int json, FILE *out) {
    ew_bench_nn_config c = ew_bench_nn_defaults(threads);
    c.json = json;
    return ew_bench_nn_run(&c, out);
}
