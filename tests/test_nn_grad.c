/* test_nn_grad.c - central finite-difference gradient checks for every op w.r.t. every input. */
#include "tests/test_nn_util.h"

typedef struct {
    int i0, i1, i2;
    float f;
    ew_conv_opts co;
    int shape[EW_MAX_DIMS];
    int nd;
    int labels[8];
} args;

#define A(ud) ((args *)(ud))

static ew_tensor *f_add(ew_graph *g, ew_tensor **x, void *ud) { (void)ud; return ew_add(g, x[0], x[1]); }
static ew_tensor *f_sub(ew_graph *g, ew_tensor **x, void *ud) { (void)ud; return ew_sub(g, x[0], x[1]); }
static ew_tensor *f_mul(ew_graph *g, ew_tensor **x, void *ud) { (void)ud; return ew_mul(g, x[0], x[1]); }
static ew_tensor *f_div(ew_graph *g, ew_tensor **x, void *ud) { (void)ud; return ew_div(g, x[0], x[1]); }
static ew_tensor *f_expand(ew_graph *g, ew_tensor **x, void *ud) { return ew_expand(g, x[0], A(ud)->nd, A(ud)->shape); }
static ew_tensor *f_scale(ew_graph *g, ew_tensor **x, void *ud) { return ew_scale(g, x[0], A(ud)->f); }
static ew_tensor *f_adds(ew_graph *g, ew_tensor **x, void *ud) { return ew_add_scalar(g, x[0], A(ud)->f); }
static ew_tensor *f_square(ew_graph *g, ew_tensor **x, void *ud) { (void)ud; return ew_square(g, x[0]); }
static ew_tensor *f_relu(ew_graph *g, ew_tensor **x, void *ud) { (void)ud; return ew_relu(g, x[0]); }
static ew_tensor *f_leaky(ew_graph *g, ew_tensor **x, void *ud) { return ew_leaky_relu(g, x[0], A(ud)->f); }
static ew_tensor *f_tanh(ew_graph *g, ew_tensor **x, void *ud) { (void)ud; return ew_tanh(g, x[0]); }
static ew_tensor *f_sigmoid(ew_graph *g, ew_tensor **x, void *ud) { (void)ud; return ew_sigmoid(g, x[0]); }
static ew_tensor *f_softplus(ew_graph *g, ew_tensor **x, void *ud) { (void)ud; return ew_softplus(g, x[0]); }
static ew_tensor *f_exp(ew_graph *g, ew_tensor **x, void *ud) { (void)ud; return ew_exp(g, x[0]); }
static ew_tensor *f_log(ew_graph *g, ew_tensor **x, void *ud) { (void)ud; return ew_log(g, x[0]); }
/* reshape is a view: check that gradients reach the base through a consumer of the view and
 * through the base itself */
static ew_tensor *f_reshape(ew_graph *g, ew_tensor **x, void *ud) {
    ew_tensor *v = ew_reshape(g, x[0], A(ud)->nd, A(ud)->shape);
    ew_tensor *sq = ew_square(g, v);
    int flat[1] = {-1};
    return ew_add(g, ew_reshape(g, sq, 1, flat), ew_reshape(g, x[0], 1, flat));
}
static ew_tensor *f_concat(ew_graph *g, ew_tensor **x, void *ud) { return ew_concat(g, x, 3, A(ud)->i0); }
static ew_tensor *f_slice(ew_graph *g, ew_tensor **x, void *ud) { return ew_slice(g, x[0], A(ud)->i0, A(ud)->i1, A(ud)->i2); }
static ew_tensor *f_sum(ew_graph *g, ew_tensor **x, void *ud) { (void)ud; return ew_sum(g, x[0]); }
static ew_tensor *f_mean(ew_graph *g, ew_tensor **x, void *ud) { (void)ud; return ew_mean(g, x[0]); }
static ew_tensor *f_max(ew_graph *g, ew_tensor **x, void *ud) { (void)ud; return ew_max(g, x[0]); }
static ew_tensor *f_sum_dim(ew_graph *g, ew_tensor **x, void *ud) { return ew_sum_dim(g, x[0], A(ud)->i0, A(ud)->i1); }
static ew_tensor *f_mean_dim(ew_graph *g, ew_tensor **x, void *ud) { return ew_mean_dim(g, x[0], A(ud)->i0, A(ud)->i1); }
static ew_tensor *f_max_dim(ew_graph *g, ew_tensor **x, void *ud) { return ew_max_dim(g, x[0], A(ud)->i0, A(ud)->i1); }
static ew_tensor *f_matmul(ew_graph *g, ew_tensor **x, void *ud) { (void)ud; return ew_matmul(g, x[0], x[1]); }
static ew_tensor *f_linear(ew_graph *g, ew_tensor **x, void *ud) { return ew_linear(g, x[0], x[1], A(ud)->i0 ? x[2] : NULL); }
static ew_tensor *f_conv(ew_graph *g, ew_tensor **x, void *ud) { return ew_conv2d(g, x[0], x[1], A(ud)->i0 ? x[2] : NULL, &A(ud)->co); }
static ew_tensor *f_convt(ew_graph *g, ew_tensor **x, void *ud) {
    return ew_conv_transpose2d(g, x[0], x[1], A(ud)->i0 ? x[2] : NULL, &A(ud)->co);
}
static ew_tensor *f_dropout(ew_graph *g, ew_tensor **x, void *ud) {
    ew_rng r;
    ew_rng_seed(&r, 77);
    return A(ud)->i0 ? ew_channel_dropout(g, x[0], A(ud)->f, &r) : ew_dropout(g, x[0], A(ud)->f, &r);
}
static ew_tensor *f_reparam(ew_graph *g, ew_tensor **x, void *ud) {
    (void)ud;
    ew_rng r;
    ew_rng_seed(&r, 78);
    return ew_reparam_sample(g, x[0], x[1], &r);
}
static ew_tensor *f_mse(ew_graph *g, ew_tensor **x, void *ud) { (void)ud; return ew_mse(g, x[0], x[1]); }
static ew_tensor *f_kl(ew_graph *g, ew_tensor **x, void *ud) { (void)ud; return ew_gauss_kl(g, x[0], x[1]); }
static ew_tensor *f_ce(ew_graph *g, ew_tensor **x, void *ud) { return ew_cross_entropy(g, x[0], A(ud)->labels); }
static ew_tensor *f_softmax(ew_graph *g, ew_tensor **x, void *ud) { return ew_softmax(g, x[0], A(ud)->i0); }
static ew_tensor *f_ssoftmax(ew_graph *g, ew_tensor **x, void *ud) { (void)ud; return ew_spatial_softmax(g, x[0]); }
static ew_tensor *f_sargmax(ew_graph *g, ew_tensor **x, void *ud) { (void)ud; return ew_soft_argmax(g, x[0]); }
static ew_tensor *f_grid(ew_graph *g, ew_tensor **x, void *ud) { (void)ud; return ew_grid_sample(g, x[0], x[1]); }
/* the world model's output head: sigmoid(decoder + last input frame) */
static ew_tensor *f_sigskip(ew_graph *g, ew_tensor **x, void *ud) {
    (void)ud;
    return ew_sigmoid(g, ew_add(g, x[0], ew_slice(g, x[1], 1, 3, 3)));
}

#define IN(nd_, ...) {.ndim = nd_, .shape = {__VA_ARGS__}, .lo = -1.0f, .hi = 1.0f}

static gc_input in_range(gc_input in, float lo, float hi) {
    in.lo = lo;
    in.hi = hi;
    return in;
}
static gc_input in_away(gc_input in, float m) {
    in.min_abs = m;
    return in;
}
static gc_input in_spread(gc_input in) {
    in.spread = 1;
    return in;
}

static void run_all(ew_backend *be) {
    const gc_tol smooth = {1e-2, 2e-3, 1e-2, 0};
    const gc_tol lin = {5e-2, 2e-3, 5e-3, 0}; /* exactly linear in each input: large eps */
    const gc_tol kink = {1e-3, 3e-3, 1e-2, 0};
    args a;
    uint64_t s = 1;

    /* elementwise + broadcasting */
    {
        gc_input in[2] = {IN(3, 2, 3, 4), IN(3, 2, 3, 4)};
        gradcheck(be, "add", 2, in, f_add, &a, lin, s++);
        gradcheck(be, "sub", 2, in, f_sub, &a, lin, s++);
        gradcheck(be, "mul", 2, in, f_mul, &a, smooth, s++);
        gc_input d[2] = {IN(3, 2, 3, 4), in_range((gc_input)IN(3, 2, 3, 4), 0.5f, 2.0f)};
        gradcheck(be, "div", 2, d, f_div, &a, smooth, s++);
        gc_input b1[2] = {IN(3, 2, 3, 4), IN(2, 3, 1)};
        gradcheck(be, "add broadcast [2,3,4]+[3,1]", 2, b1, f_add, &a, lin, s++);
        gradcheck(be, "sub broadcast [2,3,4]-[3,1]", 2, b1, f_sub, &a, lin, s++);
        gc_input b2[2] = {IN(3, 2, 1, 4), IN(3, 1, 3, 1)};
        gradcheck(be, "mul broadcast [2,1,4]*[1,3,1]", 2, b2, f_mul, &a, smooth, s++);
        gc_input b3[2] = {IN(2, 1, 5), in_range((gc_input)IN(2, 4, 1), 0.5f, 2.0f)};
        gradcheck(be, "div broadcast [1,5]/[4,1]", 2, b3, f_div, &a, smooth, s++);
        gc_input sc[2] = {IN(2, 3, 4), IN(0, 0)};
        gradcheck(be, "mul by scalar tensor", 2, sc, f_mul, &a, smooth, s++);
        gc_input e[1] = {IN(2, 3, 1)};
        a.nd = 3;
        a.shape[0] = 2;
        a.shape[1] = 3;
        a.shape[2] = 4;
        gradcheck(be, "expand [3,1]->[2,3,4]", 1, e, f_expand, &a, lin, s++);
    }
    /* scalar and unary */
    {
        gc_input x[1] = {IN(3, 2, 3, 5)};
        a.f = -1.7f;
        gradcheck(be, "scale", 1, x, f_scale, &a, lin, s++);
        a.f = 0.3f;
        gradcheck(be, "add_scalar", 1, x, f_adds, &a, lin, s++);
        gradcheck(be, "square", 1, x, f_square, &a, smooth, s++);
        gc_input xa[1] = {in_away((gc_input)IN(3, 2, 3, 5), 0.05f)};
        gradcheck(be, "relu", 1, xa, f_relu, &a, kink, s++);
        a.f = 0.2f;
        gradcheck(be, "leaky_relu", 1, xa, f_leaky, &a, kink, s++);
        gc_input w[1] = {in_range((gc_input)IN(3, 2, 3, 5), -3.0f, 3.0f)};
        gradcheck(be, "tanh", 1, w, f_tanh, &a, smooth, s++);
        gradcheck(be, "sigmoid", 1, w, f_sigmoid, &a, smooth, s++);
        gradcheck(be, "softplus", 1, w, f_softplus, &a, smooth, s++);
        gradcheck(be, "exp", 1, x, f_exp, &a, smooth, s++);
        gc_input p[1] = {in_range((gc_input)IN(3, 2, 3, 5), 0.5f, 3.0f)};
        gradcheck(be, "log", 1, p, f_log, &a, smooth, s++);
        gc_input ss[2] = {IN(4, 2, 3, 4, 3), in_range((gc_input)IN(4, 2, 6, 4, 3), 0.0f, 1.0f)};
        gradcheck(be, "sigmoid(x + slice(frames))", 2, ss, f_sigskip, &a, smooth, s++);
    }
    /* shape */
    {
        gc_input x[1] = {IN(3, 2, 3, 4)};
        a.nd = 2;
        a.shape[0] = 4;
        a.shape[1] = -1;
        gradcheck(be, "reshape (view) + base", 1, x, f_reshape, &a, smooth, s++);
        gc_input c[3] = {IN(3, 2, 1, 4), IN(3, 2, 3, 4), IN(3, 2, 2, 4)};
        a.i0 = 1;
        gradcheck(be, "concat dim 1", 3, c, f_concat, &a, lin, s++);
        gc_input c0[3] = {IN(2, 1, 3), IN(2, 2, 3), IN(2, 1, 3)};
        a.i0 = 0;
        gradcheck(be, "concat dim 0", 3, c0, f_concat, &a, lin, s++);
        gc_input c2[3] = {IN(3, 2, 3, 1), IN(3, 2, 3, 2), IN(3, 2, 3, 3)};
        a.i0 = 2;
        gradcheck(be, "concat dim 2", 3, c2, f_concat, &a, lin, s++);
        a.i0 = 1;
        a.i1 = 1;
        a.i2 = 2;
        gradcheck(be, "slice dim 1", 1, x, f_slice, &a, lin, s++);
        a.i0 = 2;
        a.i1 = 3;
        a.i2 = 1;
        gradcheck(be, "slice dim 2", 1, x, f_slice, &a, lin, s++);
    }
    /* reductions */
    {
        gc_input x[1] = {IN(3, 2, 3, 4)};
        gradcheck(be, "sum", 1, x, f_sum, &a, lin, s++);
        gradcheck(be, "mean", 1, x, f_mean, &a, lin, s++);
        gc_input xs[1] = {in_spread((gc_input)IN(3, 2, 3, 4))};
        gradcheck(be, "max", 1, xs, f_max, &a, kink, s++);
        for (int dim = 0; dim < 3; dim++)
            for (int keep = 0; keep < 2; keep++) {
                char name[64];
                a.i0 = dim;
                a.i1 = keep;
                snprintf(name, sizeof name, "sum_dim %d keep %d", dim, keep);
                gradcheck(be, name, 1, x, f_sum_dim, &a, lin, s++);
                snprintf(name, sizeof name, "mean_dim %d keep %d", dim, keep);
                gradcheck(be, name, 1, x, f_mean_dim, &a, lin, s++);
                snprintf(name, sizeof name, "max_dim %d keep %d", dim, keep);
                gradcheck(be, name, 1, xs, f_max_dim, &a, kink, s++);
            }
    }
    /* matmul, linear */
    {
        gc_input m[2] = {IN(2, 3, 5), IN(2, 5, 4)};
        gradcheck(be, "matmul", 2, m, f_matmul, &a, lin, s++);
        gc_input l[3] = {IN(2, 4, 6), IN(2, 3, 6), IN(1, 3)};
        a.i0 = 1;
        gradcheck(be, "linear", 3, l, f_linear, &a, lin, s++);
        a.i0 = 0;
        gradcheck(be, "linear no bias", 2, l, f_linear, &a, lin, s++);
        gc_input l3[3] = {IN(3, 2, 3, 6), IN(2, 5, 6), IN(1, 5)};
        a.i0 = 1;
        gradcheck(be, "linear on [2,3,6]", 3, l3, f_linear, &a, lin, s++);
        gc_input lbig[3] = {IN(2, 40, 70), IN(2, 50, 70), IN(1, 50)};
        gc_tol sub = lin;
        sub.max_elems = 60;
        gradcheck(be, "linear 40x70->50 (threaded gemm)", 3, lbig, f_linear, &a, sub, s++);
    }
    /* convolutions: each algorithm (im2col, direct, 1x1) and several geometries */
    {
        struct {
            const char *name;
            int n, c, h, w, oc, kh, kw, sh, sw, ph, pw;
        } cs[] = {
            {"conv 3x3 s1 p1", 2, 3, 5, 6, 4, 3, 3, 1, 1, 1, 1},
            {"conv 4x4 s2 p1 (encoder)", 3, 2, 9, 6, 3, 4, 4, 2, 2, 1, 1},
            {"conv 2x3 s(2,1) p(0,1)", 2, 2, 6, 5, 3, 2, 3, 2, 1, 0, 1},
            {"conv 1x1", 3, 5, 3, 4, 6, 1, 1, 1, 1, 0, 0},
            {"conv wide map (one sample per group)", 2, 2, 24, 20, 3, 3, 3, 1, 1, 1, 1},
        };
        for (size_t k = 0; k < sizeof cs / sizeof cs[0]; k++)
            for (int algo = -1; algo <= 2; algo++) {
                ew_cpu_force_conv_algo(be, algo);
                gc_input in[3] = {IN(4, cs[k].n, cs[k].c, cs[k].h, cs[k].w), IN(4, cs[k].oc, cs[k].c, cs[k].kh, cs[k].kw),
                                  IN(1, cs[k].oc)};
                a.co = (ew_conv_opts){{cs[k].sh, cs[k].sw}, {cs[k].ph, cs[k].pw}, {0, 0}};
                a.i0 = 1;
                char name[96];
                snprintf(name, sizeof name, "%s algo %d", cs[k].name, algo);
                gc_tol t = lin;
                t.max_elems = 80;
                gradcheck(be, name, 3, in, f_conv, &a, t, s++);
            }
        ew_cpu_force_conv_algo(be, -1);
        struct {
            const char *name;
            int n, ic, h, w, oc, kh, kw, sh, sw, ph, pw, oph, opw;
        } ts[] = {
            {"convT 4x4 s2 p1 op(1,0) (decoder)", 2, 3, 4, 3, 2, 4, 4, 2, 2, 1, 1, 1, 0},
            {"convT 3x3 s1 p1", 2, 2, 4, 5, 3, 3, 3, 1, 1, 1, 1, 0, 0},
            {"convT 2x3 s(2,3) p(0,1) op(1,2)", 3, 2, 3, 3, 2, 2, 3, 2, 3, 0, 1, 1, 2},
            {"convT 1x1", 2, 4, 3, 3, 5, 1, 1, 1, 1, 0, 0, 0, 0},
        };
        for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++)
            for (int algo = -1; algo <= 2; algo++) {
                ew_cpu_force_conv_algo(be, algo);
                gc_input in[3] = {IN(4, ts[k].n, ts[k].ic, ts[k].h, ts[k].w), IN(4, ts[k].ic, ts[k].oc, ts[k].kh, ts[k].kw),
                                  IN(1, ts[k].oc)};
                a.co = (ew_conv_opts){{ts[k].sh, ts[k].sw}, {ts[k].ph, ts[k].pw}, {ts[k].oph, ts[k].opw}};
                a.i0 = 1;
                char name[96];
                snprintf(name, sizeof name, "%s algo %d", ts[k].name, algo);
                gc_tol t = lin;
                t.max_elems = 80;
                gradcheck(be, name, 3, in, f_convt, &a, t, s++);
            }
        ew_cpu_force_conv_algo(be, -1);
        gc_input nb[2] = {IN(4, 2, 3, 5, 4), IN(4, 2, 3, 3, 3)};
        a.i0 = 0;
        a.co = (ew_conv_opts){{1, 1}, {1, 1}, {0, 0}};
        gradcheck(be, "conv no bias", 2, nb, f_conv, &a, lin, s++);
    }
    /* dropout, sampling, losses */
    {
        gc_input x[1] = {IN(4, 3, 4, 2, 3)};
        a.f = 0.3f;
        a.i0 = 0;
        gradcheck(be, "dropout", 1, x, f_dropout, &a, lin, s++);
        a.i0 = 1;
        gradcheck(be, "channel_dropout", 1, x, f_dropout, &a, lin, s++);
        gc_input ml[2] = {IN(2, 3, 4), IN(2, 3, 4)};
        gradcheck(be, "reparam_sample", 2, ml, f_reparam, &a, smooth, s++);
        gradcheck(be, "mse", 2, ml, f_mse, &a, smooth, s++);
        gradcheck(be, "gauss_kl", 2, ml, f_kl, &a, smooth, s++);
        gc_input lg[1] = {in_range((gc_input)IN(2, 4, 5), -2.0f, 2.0f)};
        int lab[4] = {0, 4, 2, 2};
        memcpy(a.labels, lab, sizeof lab);
        gradcheck(be, "cross_entropy", 1, lg, f_ce, &a, smooth, s++);
    }
    /* softmax family, bilinear sampling */
    {
        gc_input x[1] = {in_range((gc_input)IN(3, 2, 3, 4), -2.0f, 2.0f)};
        for (int dim = 0; dim < 3; dim++) {
            char name[32];
            snprintf(name, sizeof name, "softmax dim %d", dim);
            a.i0 = dim;
            gradcheck(be, name, 1, x, f_softmax, &a, smooth, s++);
        }
        gc_input im[1] = {in_range((gc_input)IN(4, 2, 3, 4, 5), -2.0f, 2.0f)};
        gradcheck(be, "spatial_softmax", 1, im, f_ssoftmax, &a, smooth, s++);
        gradcheck(be, "soft_argmax", 1, im, f_sargmax, &a, smooth, s++);
        /* coordinates inside, near and beyond the border; away from integers */
        gc_input gs[2] = {IN(4, 2, 3, 5, 6), in_range((gc_input)IN(3, 2, 7, 2), -1.5f, 6.5f)};
        gs[1].away_int = 0.01f;
        gc_tol t = {1e-3, 3e-3, 1e-2, 0};
        gradcheck(be, "grid_sample", 2, gs, f_grid, &a, t, s++);
    }
}

int main(void) {
    for (int run = 0; run < 3; run++) {
        /* 1 and 2 threads with the default GEMM, then 1 thread with OpenBLAS (explicit im2col) */
        ew_backend *be = ew_backend_cpu_create(run == 1 ? 2 : 1);
        CHECK(be != NULL, "backend");
        if (!be) return check_done();
        if (run == 2) ew_cpu_set_gemm(be, EW_CPU_GEMM_BLAS);
        run_all(be);
        ew_backend_destroy(be);
    }
    return check_done();
}
