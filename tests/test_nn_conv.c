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

/* The backend's three conv kernels against double references, for every way the CPU backend
 * packs implicit patches (gathers, contiguous runs from re-laid-out copies, per shape), 1 and
 * 2 threads, overwrite and accumulate: edge shapes for the run packers (single-column and
 * wider-than-16 outputs, runs split across 48-column slivers, strides 1/2/3 and unequal,
 * 1x1 to 5x5 kernels, zero and large padding, batch sizes that leave uneven groups). A
 * sentinel after the workspace checks that nothing writes past conv_workspace floats. */
static void ref_bwd_data(const ew_conv_desc *d, const float *dy, const float *w, double *dx) {
    memset(dx, 0, sizeof(double) * (size_t)d->n * d->c * d->h * d->w);
    for (int i = 0; i < d->n; i++)
        for (int o = 0; o < d->oc; o++)
            for (int yy = 0; yy < d->oh; yy++)
                for (int xx = 0; xx < d->ow; xx++) {
                    double g = dy[((i * d->oc + o) * d->oh + yy) * d->ow + xx];
                    for (int ci = 0; ci < d->c; ci++)
                        for (int a = 0; a < d->kh; a++)
                            for (int b = 0; b < d->kw; b++) {
                                int iy = yy * d->sh - d->ph + a, ix = xx * d->sw - d->pw + b;
                                if (iy < 0 || iy >= d->h || ix < 0 || ix >= d->w) continue;
                                dx[((i * d->c + ci) * d->h + iy) * d->w + ix] +=
                                    g * w[((o * d->c + ci) * d->kh + a) * d->kw + b];
                            }
                }
}

static void ref_bwd_weight(const ew_conv_desc *d, const float *x, const float *dy, double *dw) {
    memset(dw, 0, sizeof(double) * (size_t)d->oc * d->c * d->kh * d->kw);
    for (int i = 0; i < d->n; i++)
        for (int o = 0; o < d->oc; o++)
            for (int yy = 0; yy < d->oh; yy++)
                for (int xx = 0; xx < d->ow; xx++) {
                    double g = dy[((i * d->oc + o) * d->oh + yy) * d->ow + xx];
                    for (int ci = 0; ci < d->c; ci++)
                        for (int a = 0; a < d->kh; a++)
                            for (int b = 0; b < d->kw; b++) {
                                int iy = yy * d->sh - d->ph + a, ix = xx * d->sw - d->pw + b;
                                if (iy < 0 || iy >= d->h || ix < 0 || ix >= d->w) continue;
                                dw[((o * d->c + ci) * d->kh + a) * d->kw + b] += g * x[((i * d->c + ci) * d->h + iy) * d->w + ix];
                            }
                }
}

static double max_err(const float *got, const double *want, const float *base, size_t n) {
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        double v = want[i] + (base ? base[i] : 0.0);
        worst = fmax(worst, fabs((double)got[i] - v) / (1.0 + fabs(v)));
    }
    return worst;
}

static void kernels_all_packings(void) {
    /* n, c, h, w, oc, kh, kw, sh, sw, ph, pw */
    int cs[][11] = {
        {3, 5, 23, 37, 9, 4, 4, 2, 2, 1, 1},  /* ow 18: runs split at 16 */
        {2, 3, 9, 2, 8, 4, 4, 2, 2, 1, 1},    /* ow 1 */
        {5, 4, 11, 9, 16, 4, 4, 2, 2, 1, 1},  /* uneven groups, 48-column slivers cut runs */
        {2, 3, 8, 40, 4, 3, 5, 1, 1, 1, 2},   /* stride 1, wide rows, kw 5 */
        {3, 2, 13, 17, 5, 3, 3, 3, 2, 0, 1},  /* strides 3 x 2 */
        {2, 6, 7, 7, 7, 1, 1, 2, 2, 0, 0},    /* 1x1 stride 2 */
        {2, 4, 6, 5, 3, 2, 2, 1, 2, 2, 2},    /* padding as large as the kernel */
        {4, 16, 29, 6, 32, 4, 4, 2, 2, 1, 1}, /* the world model's enc3-like shape, smaller */
        {3, 5, 6, 5, 7, 3, 3, 1, 1, 1, 1},    /* 3x3 stride 1 on narrow rows (register col2im) */
        {2, 4, 5, 9, 3, 3, 8, 1, 1, 0, 3},    /* kw 8 at stride 1, a 15-wide padded row */
        {3, 6, 4, 5, 8, 1, 1, 1, 1, 0, 0},    /* 1x1 stride 1: plane copies, 1x1 col2im */
    };
    ew_rng r;
    ew_rng_seed(&r, 11);
    for (int threads = 1; threads <= 2; threads++) {
        ew_backend *be = ew_backend_cpu_create(threads);
        CHECK(be != NULL, "cpu backend");
        if (!be) return;
        for (size_t k = 0; k < sizeof cs / sizeof cs[0]; k++) {
            ew_conv_desc d = {cs[k][0], cs[k][1], cs[k][2], cs[k][3], cs[k][4], 0, 0,
                              cs[k][5], cs[k][6], cs[k][7], cs[k][8], cs[k][9], cs[k][10]};
            d.oh = (d.h + 2 * d.ph - d.kh) / d.sh + 1;
            d.ow = (d.w + 2 * d.pw - d.kw) / d.sw + 1;
            size_t nx = (size_t)d.n * d.c * d.h * d.w, ny = (size_t)d.n * d.oc * d.oh * d.ow;
            size_t nw = (size_t)d.oc * d.c * d.kh * d.kw;
            size_t nb = nx > ny ? nx : ny;
            if (nw > nb) nb = nw;
            float *x = malloc(nx * 4), *w = malloc(nw * 4), *b = malloc((size_t)d.oc * 4), *dy = malloc(ny * 4);
            float *y = malloc(ny * 4), *dx = malloc(nx * 4), *dw = malloc(nw * 4), *base = malloc(nb * 4);
            double *ry = malloc(ny * 8), *rdx = malloc(nx * 8), *rdw = malloc(nw * 8);
            for (size_t i = 0; i < nx; i++) x[i] = (float)ew_rng_range(&r, -1, 1);
            for (size_t i = 0; i < nw; i++) w[i] = (float)ew_rng_range(&r, -1, 1);
            for (size_t i = 0; i < ny; i++) dy[i] = (float)ew_rng_range(&r, -1, 1);
            for (int i = 0; i < d.oc; i++) b[i] = (float)ew_rng_range(&r, -1, 1);
            for (size_t i = 0; i < nb; i++) base[i] = (float)ew_rng_range(&r, -1, 1);
            {
                float *yf = malloc(ny * 4);
                ref_conv(x, w, b, yf, d.n, d.c, d.h, d.w, d.oc, d.kh, d.kw, d.sh, d.sw, d.ph, d.pw, d.oh, d.ow);
                /* the float reference rounds once per element: good to ~1e-6 relative */
                for (size_t i = 0; i < ny; i++) ry[i] = yf[i];
                free(yf);
            }
            ref_bwd_data(&d, dy, w, rdx);
            ref_bwd_weight(&d, x, dy, rdw);
            size_t wsn = be->conv_workspace(be, &d);
            float *ws = malloc((wsn + 64) * 4);
            for (int mode = -1; mode <= 1; mode++) {
                ew_cpu_force_conv_pack(be, mode);
                for (int acc = 0; acc < 2; acc++) {
                    for (size_t i = 0; i < 64; i++) ws[wsn + i] = -7.25f;
                    memcpy(y, base, ny * 4);
                    be->conv_fwd(be, &d, x, w, b, y, acc, ws);
                    double e1 = max_err(y, ry, acc ? base : NULL, ny);
                    memcpy(dx, base, nx * 4);
                    be->conv_bwd_data(be, &d, dy, w, dx, acc, ws);
                    double e2 = max_err(dx, rdx, acc ? base : NULL, nx);
                    memcpy(dw, base, nw * 4);
                    be->conv_bwd_weight(be, &d, x, dy, dw, ws);
                    double e3 = max_err(dw, rdw, base, nw);
                    int guard = 1;
                    for (size_t i = 0; i < 64; i++) guard &= ws[wsn + i] == -7.25f;
                    CHECK(e1 < 1e-5 && e2 < 1e-5 && e3 < 1e-5 && guard,
                          "case %zu pack %d acc %d threads %d: fwd %g, bwd data %g, bwd weight %g, workspace %s", k, mode,
                          acc, threads, e1, e2, e3, guard ? "kept" : "overrun");
                }
            }
            ew_cpu_force_conv_pack(be, -1);
            free(ws);
            free(x), free(w), free(b), free(dy), free(y), free(dx), free(dw), free(base), free(ry), free(rdx), free(rdw);
        }
        CHECK(ew_cpu_force_conv_pack(be, 2) == -1 && ew_cpu_force_conv_pack(be, -2) == -1, "bad pack modes refused");
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
    kernels_all_packings();
    ew_backend_destroy(be);
    return check_done();
}
