/* test_nn_learn.c - a small convnet learns a synthetic task within a fixed budget: find which
 * of 9 cells (3x3 grid) of a noisy 18x18 image holds a bright 4x4 square (jittered inside
 * its cell). Plain SGD with momentum written here; the loss must fall and held-out accuracy
 * must reach 90% within 200 steps. Also regresses the square's centre through
 * soft-argmax to exercise the spatial softmax path in training. */
#include "models/layers.h"
#include "tests/test_nn_util.h"

#define S 18
#define NCLS 9
#define BATCH 32

static int make_image(float *img, ew_rng *r) {
    int cls = (int)ew_rng_below(r, NCLS);
    int cy = cls / 3, cx = cls % 3;
    int y0 = cy * 6 + (int)ew_rng_below(r, 3), x0 = cx * 6 + (int)ew_rng_below(r, 3);
    for (int i = 0; i < S * S; i++) img[i] = (float)ew_rng_range(r, 0.0, 0.5);
    for (int y = y0; y < y0 + 4; y++)
        for (int x = x0; x < x0 + 4; x++) img[y * S + x] = (float)ew_rng_range(r, 0.7, 1.0);
    return cls;
}

typedef struct {
    ew_conv_layer c1, c2;
    ew_linear_layer fc;
    ew_param_list params;
    float *vel;
} net;

static ew_tensor *logits(ew_graph *g, net *n, ew_tensor *x) {
    int fl[2] = {x->shape[0], -1};
    ew_tensor *h = ew_leaky_relu(g, ew_conv_layer_fwd(g, &n->c1, x), 0.2f);
    h = ew_leaky_relu(g, ew_conv_layer_fwd(g, &n->c2, h), 0.2f);
    return ew_linear_layer_fwd(g, &n->fc, ew_reshape(g, h, 2, fl));
}

static void sgd(net *n, float lr, float momentum) {
    size_t off = 0;
    for (int i = 0; i < n->params.n; i++) {
        ew_param *p = &n->params.items[i];
        size_t k = ew_param_numel(p);
        for (size_t j = 0; j < k; j++) {
            float *v = &n->vel[off + j];
            *v = momentum * *v + p->grad[j];
            p->data[j] -= lr * *v;
            p->grad[j] = 0.0f;
        }
        off += k;
    }
}

static void classify(int threads) {
    ew_backend *be = ew_backend_cpu_create(threads);
    ew_graph *g = ew_graph_create(be, 0);
    net n;
    memset(&n, 0, sizeof n);
    char err[128];
    ew_conv_opts o = {{2, 2}, {1, 1}, {0, 0}};
    int ok = ew_conv2d_layer_init(&n.c1, "c1", 1, 8, 4, 4, &o, 1, 1, err, sizeof err) == 0 &&
             ew_conv2d_layer_init(&n.c2, "c2", 8, 16, 4, 4, &o, 1, 2, err, sizeof err) == 0 &&
             ew_linear_layer_init(&n.fc, "fc", 16 * 4 * 4, NCLS, 1, 3, err, sizeof err) == 0;
    CHECK(ok, "init: %s", err);
    ew_conv_layer_params(&n.c1, &n.params);
    ew_conv_layer_params(&n.c2, &n.params);
    ew_linear_layer_params(&n.fc, &n.params);
    n.vel = calloc(ew_param_list_numel(&n.params), sizeof(float));

    ew_rng r;
    ew_rng_seed(&r, 123);
    float *xb = malloc(sizeof(float) * BATCH * S * S);
    int yb[BATCH];
    int xs[4] = {BATCH, 1, S, S};
    double first = 0, last = 0;
    for (int step = 0; step < 200; step++) {
        for (int b = 0; b < BATCH; b++) yb[b] = make_image(xb + b * S * S, &r);
        ew_graph_reset(g);
        ew_tensor *loss = ew_cross_entropy(g, logits(g, &n, ew_tensor_wrap(g, 4, xs, xb)), yb);
        if (!loss || ew_backward(g, loss)) {
            CHECK(0, "step %d: %s", step, ew_graph_error(g));
            break;
        }
        if (step < 10) first += loss->data[0] / 10;
        if (step >= 190) last += loss->data[0] / 10;
        sgd(&n, 0.05f, 0.9f);
    }
    CHECK(last < 0.5 * first, "threads %d: loss %g -> %g", threads, first, last);

    /* held-out accuracy, in no-grad mode */
    ew_rng_seed(&r, 999);
    int correct = 0, total = 0;
    ew_set_grad_enabled(g, 0);
    for (int rep = 0; rep < 8; rep++) {
        for (int b = 0; b < BATCH; b++) yb[b] = make_image(xb + b * S * S, &r);
        ew_graph_reset(g);
        ew_tensor *lg = logits(g, &n, ew_tensor_wrap(g, 4, xs, xb));
        if (!lg) break;
        for (int b = 0; b < BATCH; b++) {
            int best = 0;
            for (int k = 1; k < NCLS; k++)
                if (lg->data[b * NCLS + k] > lg->data[b * NCLS + best]) best = k;
            correct += best == yb[b];
            total++;
        }
    }
    ew_set_grad_enabled(g, 1);
    double acc = total ? (double)correct / total : 0.0;
    printf("threads %d: loss %.4f -> %.4f, held-out accuracy %.3f\n", threads, first, last, acc);
    CHECK(acc >= 0.9, "threads %d: held-out accuracy %.3f < 0.9", threads, acc);
    free(xb);
    free(n.vel);
    ew_param_list_free(&n.params);
    ew_conv_layer_free(&n.c1);
    ew_conv_layer_free(&n.c2);
    ew_linear_layer_free(&n.fc);
    ew_graph_destroy(g);
    ew_backend_destroy(be);
}

/* A 1x1 conv producing one heat map, trained through soft-argmax to point at the square. */
static void locate(void) {
    ew_backend *be = ew_backend_cpu_create(1);
    ew_graph *g = ew_graph_create(be, 0);
    char err[128];
    ew_conv_layer c1, c2;
    ew_conv_opts o3 = {{1, 1}, {1, 1}, {0, 0}}, o1 = {{1, 1}, {0, 0}, {0, 0}};
    int ok = ew_conv2d_layer_init(&c1, "c1", 1, 4, 3, 3, &o3, 1, 5, err, sizeof err) == 0 &&
             ew_conv2d_layer_init(&c2, "c2", 4, 1, 1, 1, &o1, 1, 6, err, sizeof err) == 0;
    CHECK(ok, "init: %s", err);
    ew_param_list pl = {0};
    ew_conv_layer_params(&c1, &pl);
    ew_conv_layer_params(&c2, &pl);
    ew_rng r;
    ew_rng_seed(&r, 7);
    float *xb = malloc(sizeof(float) * BATCH * S * S), tgt[BATCH * 2];
    int xs[4] = {BATCH, 1, S, S}, ts[3] = {BATCH, 1, 2};
    double first = 0, last = 0;
    for (int step = 0; step < 300; step++) {
        for (int b = 0; b < BATCH; b++) {
            make_image(xb + b * S * S, &r);
            /* centre of the brightest 4x4 window */
            double best = -1;
            for (int y = 0; y + 4 <= S; y++)
                for (int x = 0; x + 4 <= S; x++) {
                    double s = 0;
                    for (int i = 0; i < 16; i++) s += xb[b * S * S + (y + i / 4) * S + x + i % 4];
                    if (s > best) {
                        best = s;
                        tgt[2 * b] = (float)x + 1.5f;
                        tgt[2 * b + 1] = (float)y + 1.5f;
                    }
                }
        }
        ew_graph_reset(g);
        ew_tensor *h = ew_leaky_relu(g, ew_conv_layer_fwd(g, &c1, ew_tensor_wrap(g, 4, xs, xb)), 0.2f);
        ew_tensor *heat = ew_scale(g, ew_conv_layer_fwd(g, &c2, h), 4.0f);
        ew_tensor *loss = ew_mse(g, ew_soft_argmax(g, heat), ew_tensor_wrap(g, 3, ts, tgt));
        if (!loss || ew_backward(g, loss)) {
            CHECK(0, "locate step %d: %s", step, ew_graph_error(g));
            break;
        }
        if (step < 10) first += loss->data[0] / 10;
        if (step >= 290) last += loss->data[0] / 10;
        for (int i = 0; i < pl.n; i++) {
            ew_param *p = &pl.items[i];
            for (size_t j = 0; j < ew_param_numel(p); j++) {
                p->data[j] -= 0.01f * p->grad[j];
                p->grad[j] = 0.0f;
            }
        }
    }
    printf("soft-argmax localisation: mse %.3f -> %.3f (pixels^2)\n", first, last);
    CHECK(last < 0.25 * first && last < 4.0, "soft-argmax localisation: mse %g -> %g", first, last);
    free(xb);
    ew_param_list_free(&pl);
    ew_conv_layer_free(&c1);
    ew_conv_layer_free(&c2);
    ew_graph_destroy(g);
    ew_backend_destroy(be);
}

int main(void) {
    classify(1);
    classify(2);
    locate();
    return check_done();
}
