/* test_nn_layers.c - layers: PyTorch-default init from a seed, parameter names and views,
 * and a finite-difference check of a whole small network (conv -> leaky -> conv ->
 * linear -> mse, plus a transposed conv and an MLP branch) w.r.t. every parameter tensor and
 * the input. */
#include "models/layers.h"
#include "tests/test_nn_util.h"

static void init_props(void) {
    char err[128];
    ew_linear_layer a, b, c;
    CHECK(ew_linear_layer_init(&a, "fc", 50, 20, 1, 7, err, sizeof err) == 0, "linear init");
    CHECK(ew_linear_layer_init(&b, "fc", 50, 20, 1, 7, err, sizeof err) == 0, "linear init again");
    CHECK(ew_linear_layer_init(&c, "fc", 50, 20, 1, 8, err, sizeof err) == 0, "linear init other seed");
    CHECK(memcmp(a.weight.data, b.weight.data, sizeof(float) * 1000) == 0, "same seed, same weights");
    CHECK(memcmp(a.weight.data, c.weight.data, sizeof(float) * 1000) != 0, "other seed, other weights");
    float bound = 1.0f / sqrtf(50.0f), mx = 0.0f;
    double mean = 0.0;
    for (int i = 0; i < 1000; i++) {
        mx = fmaxf(mx, fabsf(a.weight.data[i]));
        mean += a.weight.data[i];
    }
    for (int i = 0; i < 20; i++) mx = fmaxf(mx, fabsf(a.bias.data[i]));
    CHECK(mx <= bound && mx > 0.9f * bound, "uniform in +-1/sqrt(fan_in): max %g, bound %g", (double)mx, (double)bound);
    CHECK(fabs(mean / 1000) < 0.1 * bound, "centred: mean %g", mean / 1000);
    int zero = 1;
    for (int i = 0; i < 1000; i++) zero &= a.weight.grad[i] == 0.0f;
    CHECK(zero, "grads start at zero");
    CHECK(strcmp(a.weight.name, "fc.weight") == 0 && strcmp(a.bias.name, "fc.bias") == 0, "linear names");
    CHECK(a.weight.ndim == 2 && a.weight.shape[0] == 20 && a.weight.shape[1] == 50, "weight [out, in]");
    ew_linear_layer_free(&a);
    ew_linear_layer_free(&b);
    ew_linear_layer_free(&c);

    ew_conv_layer cv, ct;
    ew_conv_opts o = {{2, 2}, {1, 1}, {0, 0}}, ot = {{2, 2}, {1, 1}, {1, 0}};
    CHECK(ew_conv2d_layer_init(&cv, "enc.conv1", 6, 8, 4, 4, &o, 1, 1, err, sizeof err) == 0, "conv init");
    CHECK(ew_conv_transpose2d_layer_init(&ct, "dec.deconv1", 8, 3, 4, 4, &ot, 1, 1, err, sizeof err) == 0, "convT init");
    CHECK(strcmp(cv.weight.name, "enc.conv1.weight") == 0 && cv.weight.shape[0] == 8 && cv.weight.shape[1] == 6,
          "conv weight [oc, ic, kh, kw]");
    CHECK(ct.weight.shape[0] == 8 && ct.weight.shape[1] == 3, "convT weight [ic, oc, kh, kw]");
    float bc = 1.0f / sqrtf(6 * 16.0f), bt = 1.0f / sqrtf(3 * 16.0f), mc = 0, mt = 0;
    for (size_t i = 0; i < ew_param_numel(&cv.weight); i++) mc = fmaxf(mc, fabsf(cv.weight.data[i]));
    for (size_t i = 0; i < ew_param_numel(&ct.weight); i++) mt = fmaxf(mt, fabsf(ct.weight.data[i]));
    CHECK(mc <= bc && mc > 0.9f * bc, "conv fan_in = ic*kh*kw");
    CHECK(mt <= bt && mt > 0.9f * bt, "convT fan_in = oc*kh*kw (PyTorch)");
    ew_conv_layer bad;
    ew_conv_opts obad = {{2, 2}, {1, 1}, {2, 0}};
    CHECK(ew_conv_transpose2d_layer_init(&bad, "bad", 8, 3, 4, 4, &obad, 1, 1, err, sizeof err) == -1 &&
              strstr(err, "output padding"),
          "bad output padding rejected: %s", err);
    char longname[200];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    CHECK(ew_conv2d_layer_init(&bad, longname, 1, 1, 1, 1, &o, 1, 1, err, sizeof err) == -1 && bad.mem == NULL,
          "name too long rejected");
    ew_param_list pl = {0};
    ew_conv_layer_params(&cv, &pl);
    ew_conv_layer_params(&ct, &pl);
    CHECK(pl.n == 4 && strcmp(pl.items[3].name, "dec.deconv1.bias") == 0, "param list");
    CHECK(ew_param_list_numel(&pl) == (size_t)(8 * 6 * 16 + 8 + 8 * 3 * 16 + 3), "param count");
    ew_param_list_free(&pl);
    ew_conv_layer_free(&cv);
    ew_conv_layer_free(&ct);

    ew_mlp m;
    int sizes[4] = {5, 16, 16, 7};
    CHECK(ew_mlp_init(&m, "senc", 3, sizes, 0.2f, 3, err, sizeof err) == 0, "mlp init");
    ew_mlp_params(&m, &pl);
    CHECK(pl.n == 6 && strcmp(pl.items[0].name, "senc.0.weight") == 0 && strcmp(pl.items[5].name, "senc.2.bias") == 0,
          "mlp names");
    CHECK(memcmp(m.layers[0].weight.data, m.layers[1].weight.data, 16 * sizeof(float)) != 0, "sublayers differ");
    ew_param_list_free(&pl);
    ew_mlp_free(&m);
}

typedef struct {
    ew_conv_layer c1, c2, t1;
    ew_linear_layer fc;
    ew_mlp mlp;
    ew_param_list params;
    float x[2 * 3 * 12 * 8], target[2 * 4], timg[2 * 2 * 7 * 4], state[2 * 3];
} net;

/* loss = mse(fc(flat(leaky(c2(leaky(c1(x))) + mlp(state)))), target)
 *      + mse(t1(h), small image target) */
#define NPAT (2 * 4 * 6 * 4 + 2 * 6 * 3 * 2)

/* pattern (optional): the signs of the pre-activations of both LeakyReLUs */
/* dloss (optional): the same loss recomputed in double from the network's float outputs */
static ew_tensor *net_loss(ew_graph *g, net *n, ew_tensor **xout, unsigned char *pattern, double *dloss) {
    int xs[4] = {2, 3, 12, 8}, ts[2] = {2, 4}, ss[2] = {2, 3}, is[4] = {2, 2, 7, 4}, hs[4] = {2, 6, 3, 2}, fl[2] = {2, -1};
    ew_tensor *x = ew_tensor_from(g, 4, xs, n->x);
    ew_requires_grad(x, 1);
    if (xout) *xout = x;
    ew_tensor *p1 = ew_conv_layer_fwd(g, &n->c1, x);
    ew_tensor *h = ew_leaky_relu(g, p1, 0.2f);
    h = ew_conv_layer_fwd(g, &n->c2, h);
    ew_tensor *sv = ew_reshape(g, ew_mlp_fwd(g, &n->mlp, ew_tensor_from(g, 2, ss, n->state)), 4, hs);
    ew_tensor *p2 = ew_add(g, h, sv);
    h = ew_leaky_relu(g, p2, 0.2f);
    if (pattern && p1 && p2 && ew_numel(p1) + ew_numel(p2) == NPAT) {
        size_t k = 0;
        for (size_t i = 0; i < ew_numel(p1); i++) pattern[k++] = p1->data[i] > 0.0f;
        for (size_t i = 0; i < ew_numel(p2); i++) pattern[k++] = p2->data[i] > 0.0f;
    }
    ew_tensor *y = ew_linear_layer_fwd(g, &n->fc, ew_reshape(g, h, 2, fl));
    ew_tensor *img = ew_conv_layer_fwd(g, &n->t1, h);
    if (dloss && y && img) {
        double s1 = 0, s2 = 0;
        for (int i = 0; i < 8; i++) s1 += ((double)y->data[i] - n->target[i]) * ((double)y->data[i] - n->target[i]);
        for (int i = 0; i < 2 * 2 * 7 * 4; i++) s2 += ((double)img->data[i] - n->timg[i]) * ((double)img->data[i] - n->timg[i]);
        *dloss = 100.0 * (s1 / 8 + s2 / (2 * 2 * 7 * 4));
    }
    ew_tensor *l1 = ew_mse(g, y, ew_tensor_from(g, 2, ts, n->target));
    ew_tensor *l2 = ew_mse(g, img, ew_tensor_from(g, 4, is, n->timg));
    return ew_scale(g, ew_add(g, l1, l2), 100.0f);
}

static void whole_network(int threads) {
    ew_backend *be = ew_backend_cpu_create(threads);
    ew_graph *g = ew_graph_create(be, 0);
    net *n = calloc(1, sizeof *n);
    char err[128];
    ew_conv_opts o = {{2, 2}, {1, 1}, {0, 0}}, ot = {{2, 2}, {1, 1}, {1, 0}};
    int sizes[3] = {3, 8, 6 * 3 * 2};
    int ok = ew_conv2d_layer_init(&n->c1, "c1", 3, 4, 4, 4, &o, 1, 11, err, sizeof err) == 0 &&
             ew_conv2d_layer_init(&n->c2, "c2", 4, 6, 4, 4, &o, 1, 12, err, sizeof err) == 0 &&
             ew_conv_transpose2d_layer_init(&n->t1, "t1", 6, 2, 4, 4, &ot, 1, 13, err, sizeof err) == 0 &&
             ew_linear_layer_init(&n->fc, "fc", 6 * 3 * 2, 4, 1, 14, err, sizeof err) == 0 &&
             ew_mlp_init(&n->mlp, "mlp", 2, sizes, 0.2f, 15, err, sizeof err) == 0;
    CHECK(ok, "net init: %s", err);
    ew_conv_layer_params(&n->c1, &n->params);
    ew_conv_layer_params(&n->c2, &n->params);
    ew_conv_layer_params(&n->t1, &n->params);
    ew_linear_layer_params(&n->fc, &n->params);
    ew_mlp_params(&n->mlp, &n->params);
    CHECK(n->params.n == 12, "12 parameter tensors");
    ew_rng r;
    ew_rng_seed(&r, 21);
    for (size_t i = 0; i < sizeof n->x / 4; i++) n->x[i] = (float)ew_rng_uniform(&r);
    for (size_t i = 0; i < sizeof n->target / 4; i++) n->target[i] = (float)ew_rng_range(&r, -1, 1);
    for (size_t i = 0; i < sizeof n->timg / 4; i++) n->timg[i] = (float)ew_rng_range(&r, -1, 1);
    for (size_t i = 0; i < sizeof n->state / 4; i++) n->state[i] = (float)ew_rng_range(&r, -1, 1);

    ew_graph_reset(g);
    ew_tensor *x;
    ew_tensor *loss = net_loss(g, n, &x, NULL, NULL);
    int bw = loss ? ew_backward(g, loss) : -1;
    CHECK(bw == 0, "forward/backward: %s", ew_graph_error(g) ? ew_graph_error(g) : "");
    if (bw) return;
    float *gx = malloc(sizeof n->x);
    memcpy(gx, ew_tensor_grad(g, x), sizeof n->x);

    /* LeakyReLU makes the loss piecewise quadratic: an element whose +-eps perturbation flips
     * the sign of any pre-activation is skipped (the difference quotient would straddle a
     * kink) unless a smaller step keeps every sign; on one piece, central differences are exact
     * up to float rounding (the loss is recomputed in double from the outputs). */
    const double eps_ladder[3] = {1e-2, 2e-3, 4e-4}, atol = 1e-3, rtol = 1e-2;
    unsigned char pp[NPAT], pm[NPAT], p0[NPAT];
    ew_set_grad_enabled(g, 0);
    ew_graph_reset(g);
    net_loss(g, n, NULL, p0, NULL);
    ew_set_grad_enabled(g, 1);
    for (int pi = 0; pi <= n->params.n; pi++) {
        float *data = pi < n->params.n ? n->params.items[pi].data : n->x;
        const float *grad = pi < n->params.n ? n->params.items[pi].grad : gx;
        size_t cnt = pi < n->params.n ? ew_param_numel(&n->params.items[pi]) : sizeof n->x / 4;
        const char *name = pi < n->params.n ? n->params.items[pi].name : "input";
        int fails = 0, tried = 0;
        double wa = 0, wn = 0;
        size_t want = cnt < 12 ? cnt : 12;
        for (int t = 0; t < 400 && (size_t)tried < want; t++) {
            size_t k = cnt <= 12 ? (size_t)t : ew_rng_below(&r, (uint32_t)cnt);
            if (k >= cnt) break;
            float keep = data[k];
            double lp = 0, lm = 0, eps = 0;
            int flat = 0;
            ew_set_grad_enabled(g, 0);
            for (int e = 0; e < 3 && !flat; e++) {
                eps = eps_ladder[e];
                data[k] = keep + (float)eps;
                ew_graph_reset(g);
                net_loss(g, n, NULL, pp, &lp);
                data[k] = keep - (float)eps;
                ew_graph_reset(g);
                net_loss(g, n, NULL, pm, &lm);
                eps = 0.5 * ((double)(keep + (float)eps) - (double)(keep - (float)eps));
                flat = !memcmp(pp, p0, NPAT) && !memcmp(pm, p0, NPAT);
            }
            data[k] = keep;
            ew_set_grad_enabled(g, 1);
            if (!flat) continue;
            double num = (lp - lm) / (2 * eps), a = grad[k];
            tried++;
            if (fabs(num - a) > atol + rtol * fmax(fabs(a), fabs(num))) {
                fails++;
                wa = a;
                wn = num;
            }
        }
        CHECK(fails == 0 && (size_t)tried >= (want + 1) / 2, "threads %d: %s: %d of %d off (e.g. analytic %g numeric %g)",
              threads, name, fails, tried, wa, wn);
    }
    free(gx);
    ew_conv_layer_free(&n->c1);
    ew_conv_layer_free(&n->c2);
    ew_conv_layer_free(&n->t1);
    ew_linear_layer_free(&n->fc);
    ew_mlp_free(&n->mlp);
    ew_param_list_free(&n->params);
    free(n);
    ew_graph_destroy(g);
    ew_backend_destroy(be);
}

int main(void) {
    init_props();
    whole_network(1);
    whole_network(2);
    return check_done();
}
