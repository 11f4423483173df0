/* test_nn_conv.c - convolutions: hand-computed cases, a naive reference for random shapes
 * (every algorithm, 1 and 2 threads), the world model's encoder/decoder geometry, and
 * shape errors. */
#include "tests/test_nn_util.h"

static ew_tensor *mk(ew_graph *g, int n, int c, int h, int w, const float *v) {
    int s[4] = {n, c, h, w};
    return ew_tensor_from(g, 4, s, v);
}

static void expect(const ew_tensor *y, const float *want, int n, const char *what) {
    int bad = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(y->data[i] - want[i]) > 1e-5f) bad++;
    CHECK(bad == 0 && (int)ew_numel(y) == n, "%s: %d values differ", what, bad);
}

static void hand_cases(ew_backend *be) {
    ew_graph *g = ew_graph_create(be, 1 << 16);
    float x9[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    /* y[i][j] = x[i][j] - x[i+1][j+1] = -4 */
    {
        float w[4] = {1, 0, 0, -1};
        ew_conv_opts o = {{1, 1}, {0, 0}, {0, 0}};
        ew_tensor *y = ew_conv2d(g, mk(g, 1, 1, 3, 3, x9), mk(g, 1, 1, 2, 2, w), NULL, &o);
        float want[4] = {-4, -4, -4, -4};
        CHECK(y && y->shape[2] == 2 && y->shape[3] == 2, "conv 2x2 shape");
        if (y) expect(y, want, 4, "conv 2x2 difference kernel");
    }
    /* 2x2 ones, stride 2, pad 1 on 3x3: [[1, 2+3], [4+7, 5+6+8+9]] */
    {
        float w[4] = {1, 1, 1, 1}, b[1] = {0.5f};
        int bs[1] = {1};
        ew_conv_opts o = {{2, 2}, {1, 1}, {0, 0}};
        ew_tensor *y = ew_conv2d(g, mk(g, 1, 1, 3, 3, x9), mk(g, 1, 1, 2, 2, w), ew_tensor_from(g, 1, bs, b), &o);
        float want[4] = {1.5f, 5.5f, 11.5f, 28.5f};
        if (y) expect(y, want, 4, "conv stride 2 pad 1 + bias");
        CHECK(y != NULL, "conv stride 2");
    }
    /* two input channels, two output channels, 1x1: y0 = x0 + 2 x1, y1 = -x1 */
    {
        float x[8] = {1, 2, 3, 4, 10, 20, 30, 40};
        float w[4] = {1, 2, 0, -1};
        ew_conv_opts o = {{1, 1}, {0, 0}, {0, 0}};
        ew_tensor *y = ew_conv2d(g, mk(g, 1, 2, 2, 2, x), mk(g, 2, 2, 1, 1, w), NULL, &o);
        float want[8] = {21, 42, 63, 84, -10, -20, -30, -40};
        if (y) expect(y, want, 8, "conv 1x1 channel mixing");
        CHECK(y != NULL, "conv 1x1");
    }
    /* transposed, stride 2, 2x2 ones: each input value fills a 2x2 block */
    {
        float x[4] = {1, 2, 3, 4}, w[4] = {1, 1, 1, 1};
        ew_conv_opts o = {{2, 2}, {0, 0}, {0, 0}};
        ew_tensor *y = ew_conv_transpose2d(g, mk(g, 1, 1, 2, 2, x), mk(g, 1, 1, 2, 2, w), NULL, &o);
        float want[16] = {1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4};
        CHECK(y && y->shape[2] == 4 && y->shape[3] == 4, "convT shape 4x4");
        if (y) expect(y, want, 16, "convT blocks");
        /* output padding (1, 0) adds a zero row at the bottom (plus bias everywhere) */
        ew_conv_opts op = {{2, 2}, {0, 0}, {1, 0}};
        float b[1] = {0.25f};
        int bs[1] = {1};
        ew_tensor *y2 = ew_conv_transpose2d(g, mk(g, 1, 1, 2, 2, x), mk(g, 1, 1, 2, 2, w), ew_tensor_from(g, 1, bs, b), &op);
        float want2[20];
        for (int i = 0; i < 16; i++) want2[i] = want[i] + 0.25f;
        for (int i = 16; i < 20; i++) want2[i] = 0.25f;
        CHECK(y2 && y2->shape[2] == 5 && y2->shape[3] == 4, "convT output padding shape");
        if (y2) expect(y2, want2, 20, "convT output padding + bias");
    }
    /* transposed, stride 1: a 1x2 input [1, 10] with kernel [1, 2] -> [1, 2 + 10, 20] */
    {
        float x[2] = {1, 10}, w[2] = {1, 2};
        ew_conv_opts o = {{1, 1}, {0, 0}, {0, 0}};
        ew_tensor *y = ew_conv_transpose2d(g, mk(g, 1, 1, 1, 2, x), mk(g, 1, 1, 1, 2, w), NULL, &o);
        float want[3] = {1, 12, 20};
        if (y) expect(y, want, 3, "convT overlap-add");
        CHECK(y != NULL, "convT 1x2");
    }
    /* transposed with padding 1 crops: 3x3 kernel of ones on a single 1 at the centre of 3x3
     * zeros, stride 1, pad 1 -> a 3x3 block of ones */
    {
        float x[9] = {0, 0, 0, 0, 1, 0, 0, 0, 0}, w[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
        ew_conv_opts o = {{1, 1}, {1, 1}, {0, 0}};
        ew_tensor *y = ew_conv_transpose2d(g, mk(g, 1, 1, 3, 3, x), mk(g, 1, 1, 3, 3, w), NULL, &o);
        float want[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
        CHECK(y && y->shape[2] == 3 && y->shape[3] == 3, "convT pad shape");
        if (y) expect(y, want, 9, "convT pad 1");
    }
    CHECK(ew_graph_error(g) == NULL, "no error: %s", ew_graph_error(g));
    ew_graph_destroy(g);
}

/* naive conv reference in double */
static void ref_conv(const float *x, const float *w, const float *b, float *y, int n, int c, int h, int wd,
                     int oc, int kh, int kw, int sh, int sw, int ph, int pw, int oh, int ow) {
    for (int i = 0; i < n; i++)
        for (int o = 0; o < oc; o++)
            for (int yy = 0; yy < oh; yy++)
                for (int xx = 0; xx < ow; xx++) {
                    double s = b ? b[o] : 0.0;
                    for (int ci = 0; ci < c; ci++)
                        for (int a = 0; a < kh; a++)
                            for (int bb = 0; bb < kw; bb++) {
                                int iy = yy * sh - ph + a, ix = xx * sw - pw + bb;
                                if (iy < 0 || iy >= h || ix < 0 || ix >= wd) continue;
                                s += (double)w[((o * c + ci) * kh + a) * kw + bb] * x[((i * c + ci) * h + iy) * wd + ix];
                            }
                    y[((i * oc + o) * oh + yy) * ow + xx] = (float)s;
                }
}

/* naive transposed conv: scatter every input pixel */
static void ref_convt(const float *x, const float *w, const float *b, float *y, int n, int ic, int h, int wd,
                      int oc, int kh, int kw, int sh, int sw, int ph, int pw, int oh, int ow) {
    double *acc = calloc((size_t)n * oc * oh * ow, sizeof(double));
    for (int i = 0; i < n; i++)
        for (int ci = 0; ci < ic; ci++)
            for (int yy = 0; yy < h; yy++)
                for (int xx = 0; xx < wd; xx++)
                    for (int o = 0; o < oc; o++)
                        for (int a = 0; a < kh; a++)
                            for (int bb = 0; bb < kw; bb++) {
                                int ty = yy * sh - ph + a, tx = xx * sw - pw + bb;
                                if (ty < 0 || ty >= oh || tx < 0 || tx >= ow) continue;
                                acc[((i * oc + o) * oh + ty) * ow + tx] +=
                                    (double)x[((i * ic + ci) * h + yy) * wd + xx] * w[((ci * oc + o) * kh + a) * kw + bb];
                            }
    for (int i = 0; i < n; i++)
        for (int o = 0; o < oc; o++)
            for (int k = 0; k < oh * ow; k++)
                y[(i * oc + o) * oh * ow + k] = (float)(acc[(i * oc + o) * oh * ow + k] + (b ? b[o] : 0.0));
    free(acc);
}

static void random_vs_reference(void) {
    struct {
        int n, c, h, w, oc, kh, kw, sh, sw, ph, pw, oph, opw;
    } cs[] = {
        {3, 4, 9, 7, 5, 3, 3, 1, 1, 1, 1, 0, 0},  {5, 3, 13, 8, 6, 4, 4, 2, 2, 1, 1, 1, 0},
        {2, 2, 7, 7, 3, 5, 3, 3, 2, 2, 0, 2, 1},  {7, 6, 3, 3, 4, 1, 1, 1, 1, 0, 0, 0, 0},
        {1, 8, 20, 30, 2, 3, 3, 2, 2, 1, 1, 1, 1}, {4, 1, 6, 6, 1, 2, 2, 1, 1, 0, 0, 0, 0},
    };
    ew_rng r;
    ew_rng_seed(&r, 5);
    for (int run = 0; run < 4; run++) {
        int threads = 1 + run % 2;
        ew_backend *be = ew_backend_cpu_create(threads);
        /* runs 0-1: OpenBLAS with explicit im2col; 2-3: the default (own GEMM with implicit
         * im2col where the processor has AVX-512) */
        ew_cpu_set_gemm(be, run < 2 ? EW_CPU_GEMM_BLAS : EW_CPU_GEMM_AUTO);
        ew_graph *g = ew_graph_create(be, 1 << 20);
        for (size_t k = 0; k < sizeof cs / sizeof cs[0]; k++)
            for (int algo = -1; algo <= 2; algo++)
                for (int tr = 0; tr < 2; tr++) {
                    ew_cpu_force_conv_algo(be, algo);
                    ew_graph_reset(g);
                    int n = cs[k].n, c = cs[k].c, h = cs[k].h, w = cs[k].w, oc = cs[k].oc;
                    int oh, ow;
                    if (!tr) {
                        oh = (h + 2 * cs[k].ph - cs[k].kh) / cs[k].sh + 1;
                        ow = (w + 2 * cs[k].pw - cs[k].kw) / cs[k].sw + 1;
                    } else {
                        oh = (h - 1) * cs[k].sh - 2 * cs[k].ph + cs[k].kh + cs[k].oph;
                        ow = (w - 1) * cs[k].sw - 2 * cs[k].pw + cs[k].kw + cs[k].opw;
                    }
                    size_t nx = (size_t)n * c * h * w, nw = (size_t)oc * c * cs[k].kh * cs[k].kw, ny = (size_t)n * oc * oh * ow;
                    float *xv = malloc(nx * 4), *wv = malloc(nw * 4), *bv = malloc((size_t)oc * 4), *ref = malloc(ny * 4);
                    for (size_t i = 0; i < nx; i++) xv[i] = (float)ew_rng_range(&r, -1, 1);
                    for (size_t i = 0; i < nw; i++) wv[i] = (float)ew_rng_range(&r, -1, 1);
                    for (int i = 0; i < oc; i++) bv[i] = (float)ew_rng_range(&r, -1, 1);
                    int xs[4] = {n, c, h, w}, bs[1] = {oc};
                    int wsh[4] = {tr ? c : oc, tr ? oc : c, cs[k].kh, cs[k].kw};
                    ew_conv_opts o = {{cs[k].sh, cs[k].sw}, {cs[k].ph, cs[k].pw}, {tr ? cs[k].oph : 0, tr ? cs[k].opw : 0}};
                    ew_tensor *x = ew_tensor_from(g, 4, xs, xv), *wt = ew_tensor_from(g, 4, wsh, wv), *b = ew_tensor_from(g, 1, bs, bv);
                    ew_tensor *y = tr ? ew_conv_transpose2d(g, x, wt, b, &o) : ew_conv2d(g, x, wt, b, &o);
                    if (tr)
                        ref_convt(xv, wv, bv, ref, n, c, h, w, oc, cs[k].kh, cs[k].kw, cs[k].sh, cs[k].sw, cs[k].ph, cs[k].pw, oh, ow);
                    else
                        ref_conv(xv, wv, bv, ref, n, c, h, w, oc, cs[k].kh, cs[k].kw, cs[k].sh, cs[k].sw, cs[k].ph, cs[k].pw, oh, ow);
                    CHECK(y && y->shape[2] == oh && y->shape[3] == ow, "case %zu tr %d: shape (%s)", k, tr,
                          ew_graph_error(g) ? ew_graph_error(g) : "");
                    if (y) {
                        double worst = 0.0;
                        for (size_t i = 0; i < ny; i++) worst = fmax(worst, fabs((double)y->data[i] - ref[i]));
                        CHECK(worst < 1e-4, "case %zu tr %d algo %d threads %d %s: max diff %g", k, tr, algo, threads,
                              ew_cpu_gemm_name(be), worst);
                    }
                    free(xv);
                    free(wv);
                    free(bv);
                    free(ref);
                }
        ew_graph_destroy(g);
        ew_backend_destroy(be);
    }
}

/* The world model's frame encoder and decoder geometry (DESIGN.md section 5):
 * 4x4 stride-2 convs with padding 1: 117x24 -> 58x12 -> 29x6 -> 14x3; transposed back with
 * output padding (1,0), 0, (1,0): 14x3 -> 29x6 -> 58x12 -> 117x24. */
static void world_model_geometry(ew_backend *be) {
    ew_graph *g = ew_graph_create(be, 1 << 20);
    int xs[4] = {1, 2, 117, 24};
    ew_tensor *x = ew_tensor_zeros(g, 4, xs);
    int hs[4][2] = {{117, 24}, {58, 12}, {29, 6}, {14, 3}};
    ew_tensor *h = x;
    for (int i = 0; i < 3; i++) {
        int ws[4] = {2, 2, 4, 4};
        ew_conv_opts o = {{2, 2}, {1, 1}, {0, 0}};
        h = ew_conv2d(g, h, ew_tensor_zeros(g, 4, ws), NULL, &o);
        CHECK(h && h->shape[2] == hs[i + 1][0] && h->shape[3] == hs[i + 1][1], "encoder stage %d", i + 1);
    }
    int op[3][2] = {{1, 0}, {0, 0}, {1, 0}};
    for (int i = 0; i < 3; i++) {
        int ws[4] = {2, 2, 4, 4};
        ew_conv_opts o = {{2, 2}, {1, 1}, {op[i][0], op[i][1]}};
        h = ew_conv_transpose2d(g, h, ew_tensor_zeros(g, 4, ws), NULL, &o);
        CHECK(h && h->shape[2] == hs[2 - i][0] && h->shape[3] == hs[2 - i][1], "decoder stage %d", i + 1);
    }
    ew_graph_destroy(g);
}

static void errors(ew_backend *be) {
    ew_graph *g = ew_graph_create(be, 1 << 16);
    int xs[4] = {1, 3, 5, 5}, ws[4] = {2, 4, 3, 3};
    ew_conv_opts o = {{1, 1}, {0, 0}, {0, 0}};
    ew_tensor *y = ew_conv2d(g, ew_tensor_zeros(g, 4, xs), ew_tensor_zeros(g, 4, ws), NULL, &o);
    CHECK(y == NULL && ew_graph_error(g) && strstr(ew_graph_error(g), "conv2d"), "channel mismatch rejected: %s",
          ew_graph_error(g) ? ew_graph_error(g) : "(none)");
    /* chained ops on a failed result stay NULL and keep the first message */
    CHECK(ew_relu(g, y) == NULL && strstr(ew_graph_error(g), "conv2d"), "first error kept");
    ew_graph_reset(g);
    CHECK(ew_graph_error(g) == NULL, "reset clears the error");
    int ws2[4] = {3, 2, 3, 3};
    ew_conv_opts bad = {{2, 2}, {0, 0}, {2, 0}};
    y = ew_conv_transpose2d(g, ew_tensor_zeros(g, 4, xs), ew_tensor_zeros(g, 4, ws2), NULL, &bad);
    CHECK(y == NULL && ew_graph_error(g), "output padding >= stride rejected");
    ew_graph_reset(g);
    int big[4] = {2, 3, 7, 7};
    y = ew_conv2d(g, ew_tensor_zeros(g, 4, xs), ew_tensor_zeros(g, 4, big), NULL, &o);
    CHECK(y == NULL && ew_graph_error(g), "kernel larger than input rejected");
    ew_graph_destroy(g);
}

int main(void) {
    ew_backend *be = ew_backend_cpu_create(1);
    hand_cases(be);
    for (int algo = 0; algo <= 2; algo++) {
        ew_cpu_force_conv_algo(be, algo);
        hand_cases(be);
    }
    ew_cpu_force_conv_algo(be, -1);
    world_model_geometry(be);
    errors(be);
    random_vs_reference();
    ew_backend_destroy(be);
    return check_done();
}
