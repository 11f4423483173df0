/* motion.c - GRU motion predictor with 2-D Gaussian outputs (see motion.h). */
#include "models/motion.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/checkpoint.h"

static int failf(char *err, size_t errsz, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errsz, fmt, ap);
    va_end(ap);
    return -1;
}

#define NSUM 6

void ew_motion_config_default(ew_motion_config *c) {
    c->hidden = 64;
    c->dt = 0.1f;
}

int ew_motion_init(ew_motion *m, const ew_motion_config *cfg, uint64_t seed, char *err, size_t errsz) {
    memset(m, 0, sizeof *m);
    if (cfg->hidden < 1 || cfg->hidden > 4096 || !(cfg->dt > 0.0f)) return failf(err, errsz, "motion: bad config");
    m->cfg = *cfg;
    int H = cfg->hidden;
    int sizes[4] = {H + 32 + EW_MOTION_CTX + NSUM, 128, 128, 5 * EW_MOTION_FUT};
    if (ew_linear_layer_init(&m->gx, "motion.gru.x", 4, 3 * H, 1, seed + 1, err, errsz) ||
        ew_linear_layer_init(&m->gh, "motion.gru.h", H, 3 * H, 1, seed + 2, err, errsz) ||
        ew_linear_layer_init(&m->crop, "motion.crop", EW_MOTION_CROP, 32, 1, seed + 3, err, errsz) ||
        ew_mlp_init(&m->head, "motion.head", 3, sizes, 0.1f, seed + 4, err, errsz))
        goto fail;
    if (ew_linear_layer_params(&m->gx, &m->params) || ew_linear_layer_params(&m->gh, &m->params) ||
        ew_linear_layer_params(&m->crop, &m->params) || ew_mlp_params(&m->head, &m->params)) {
        failf(err, errsz, "motion: out of memory");
        goto fail;
    }
    /* start near constant velocity with moderate spreads: a small last layer */
    ew_linear_layer *last = &m->head.layers[2];
    size_t nw = ew_param_numel(&last->weight);
    for (size_t i = 0; i < nw; i++) last->weight.data[i] *= 0.1f;
    for (int k = 0; k < 5 * EW_MOTION_FUT; k++) last->bias.data[k] = 0.0f;
    ew_motion_cal_none(&m->cal);
    return 0;
fail:
    ew_motion_free(m);
    return -1;
}

int ew_motion_move_to_backend(ew_motion *m, const ew_backend *be, char *err, size_t errsz) {
    if (!ew_backend_is_device(be)) return 0;
    ew_allocator al = ew_backend_allocator(be);
    int bad = ew_linear_layer_move(&m->gx, &al) || ew_linear_layer_move(&m->gh, &al) ||
              ew_linear_layer_move(&m->crop, &al) || ew_mlp_move(&m->head, &al);
    m->params.n = 0;
    if (!bad)
        bad = ew_linear_layer_params(&m->gx, &m->params) || ew_linear_layer_params(&m->gh, &m->params) ||
              ew_linear_layer_params(&m->crop, &m->params) || ew_mlp_params(&m->head, &m->params);
    if (bad)
        return failf(err, errsz, "motion: moving the parameters to the %s backend failed (%s)", be->name,
                     ew_backend_error(be) ? ew_backend_error(be) : "out of device memory");
    return 0;
}

void ew_motion_free(ew_motion *m) {
    ew_linear_layer_free(&m->gx);
    ew_linear_layer_free(&m->gh);
    ew_linear_layer_free(&m->crop);
    ew_mlp_free(&m->head);
    ew_param_list_free(&m->params);
    memset(m, 0, sizeof *m);
}

/* Least-squares line through the history: position q at the last frame and velocity v. */
static void hist_fit(const ew_motion_sample *s, float dt, float q[2], float v[2]) {
    for (int c = 0; c < 2; c++) {
        double mean = 0, num = 0;
        for (int t = 0; t < EW_MOTION_HIST; t++) mean += s->hist[t][c];
        mean /= EW_MOTION_HIST;
        double tm = 0.5 * (EW_MOTION_HIST - 1), den = 0;
        for (int t = 0; t < EW_MOTION_HIST; t++) {
            num += (t - tm) * (s->hist[t][c] - mean);
            den += (t - tm) * (t - tm);
        }
        double slope = num / den;
        q[c] = (float)(mean + slope * tm);
        v[c] = (float)(slope / dt);
    }
}

int ew_motion_forward(ew_graph *g, const ew_motion *m, const ew_motion_sample *s, int n, ew_motion_out *out) {
    const int H = m->cfg.hidden, K = EW_MOTION_FUT;
    const float dt = m->cfg.dt;
    int xs[3] = {EW_MOTION_HIST, n, 4}, cs[2] = {n, EW_MOTION_CROP}, ks[2] = {n, K};
    int es[2] = {n, EW_MOTION_CTX + NSUM};
    ew_tensor *x = ew_tensor_new(g, 3, xs), *crop = ew_tensor_new(g, 2, cs), *ext = ew_tensor_new(g, 2, es);
    ew_tensor *base_x = ew_tensor_new(g, 2, ks), *base_y = ew_tensor_new(g, 2, ks);
    int ts[2] = {K, K};
    ew_tensor *tri = ew_tensor_zeros(g, 2, ts);
    if (!x || !crop || !ext || !base_x || !base_y || !tri) return -1;
    for (int j = 0; j < K; j++)
        for (int k = j; k < K; k++) tri->data[j * K + k] = 1.0f;
    for (int i = 0; i < n; i++) {
        const float *p9 = s[i].hist[EW_MOTION_HIST - 1], *p4 = s[i].hist[EW_MOTION_HIST - 6];
        float cvx = (p9[0] - p4[0]) / (5.0f * dt), cvy = (p9[1] - p4[1]) / (5.0f * dt);
        float q[2], v[2];
        hist_fit(&s[i], dt, q, v);
        for (int t = 0; t < EW_MOTION_HIST; t++) {
            int t1 = t > 0 ? t : 1;
            float back = (float)(EW_MOTION_HIST - 1 - t) * dt;
            float *d = x->data + (t * n + i) * 4;
            d[0] = s[i].hist[t][0] - (q[0] - v[0] * back);
            d[1] = s[i].hist[t][1] - (q[1] - v[1] * back);
            d[2] = ((s[i].hist[t1][0] - s[i].hist[t1 - 1][0]) / dt - v[0]) / 3.0f;
            d[3] = (s[i].hist[t1][1] - s[i].hist[t1 - 1][1]) / dt - v[1];
        }
        memcpy(crop->data + (size_t)i * EW_MOTION_CROP, s[i].crop, sizeof s[i].crop);
        float *e = ext->data + (size_t)i * (EW_MOTION_CTX + NSUM);
        memcpy(e, s[i].ctx, sizeof s[i].ctx);
        e += EW_MOTION_CTX;
        e[0] = q[0] - p9[0], e[1] = q[1] - p9[1], e[2] = (v[0] - cvx) / 3.0f, e[3] = v[1] - cvy;
        e[4] = v[0] / 30.0f, e[5] = v[1];
        for (int k = 0; k < K; k++) {
            base_x->data[i * K + k] = q[0] + v[0] * dt * (float)(k + 1);
            base_y->data[i * K + k] = q[1] + v[1] * dt * (float)(k + 1);
        }
    }
    /* GRU over the history */
    int hs[2] = {n, H};
    ew_tensor *h = ew_tensor_zeros(g, 2, hs);
    for (int t = 0; t < EW_MOTION_HIST; t++) {
        ew_tensor *xt = ew_reshape(g, ew_slice(g, x, 0, t, 1), 2, (int[]){n, 4});
        ew_tensor *a = ew_linear_layer_fwd(g, &m->gx, xt), *b = ew_linear_layer_fwd(g, &m->gh, h);
        ew_tensor *z = ew_sigmoid(g, ew_add(g, ew_slice(g, a, 1, 0, H), ew_slice(g, b, 1, 0, H)));
        ew_tensor *r = ew_sigmoid(g, ew_add(g, ew_slice(g, a, 1, H, H), ew_slice(g, b, 1, H, H)));
        ew_tensor *c = ew_tanh(g, ew_add(g, ew_slice(g, a, 1, 2 * H, H), ew_mul(g, r, ew_slice(g, b, 1, 2 * H, H))));
        /* h = (1 - z) c + z h = c + z (h - c) */
        h = ew_add(g, c, ew_mul(g, z, ew_sub(g, h, c)));
    }
    ew_tensor *cf = ew_leaky_relu(g, ew_linear_layer_fwd(g, &m->crop, crop), 0.1f);
    ew_tensor *cat[3] = {h, cf, ext};
    ew_tensor *raw = ew_mlp_fwd(g, &m->head, ew_concat(g, cat, 3, 1));
    if (!raw) return -1;
    int rs[3] = {n, 5, K};
    raw = ew_reshape(g, raw, 3, rs);
    ew_tensor *part[5];
    for (int c = 0; c < 5; c++) part[c] = ew_reshape(g, ew_slice(g, raw, 1, c, 1), 2, ks);
    out->mx = ew_add(g, base_x, ew_scale(g, ew_matmul(g, part[0], tri), 0.5f));
    out->my = ew_add(g, base_y, ew_scale(g, ew_matmul(g, part[1], tri), 0.2f));
    out->sx = ew_add_scalar(g, ew_scale(g, ew_matmul(g, ew_softplus(g, part[2]), tri), 0.1f), 0.05f);
    out->sy = ew_add_scalar(g, ew_scale(g, ew_matmul(g, ew_softplus(g, part[3]), tri), 0.03f), 0.05f);
    out->rho = ew_scale(g, ew_tanh(g, part[4]), 0.9f);
    return out->rho ? 0 : -1;
}

ew_tensor *ew_gauss2d_nll(ew_graph *g, ew_tensor *mx, ew_tensor *my, ew_tensor *sx, ew_tensor *sy, ew_tensor *rho,
                          const float *tx, const float *ty) {
    if (!mx || !my || !sx || !sy || !rho) return NULL;
    ew_tensor *Tx = ew_tensor_from(g, mx->ndim, mx->shape, tx), *Ty = ew_tensor_from(g, mx->ndim, mx->shape, ty);
    ew_tensor *zx = ew_div(g, ew_sub(g, Tx, mx), sx), *zy = ew_div(g, ew_sub(g, Ty, my), sy);
    ew_tensor *om = ew_add_scalar(g, ew_scale(g, ew_square(g, rho), -1.0f), 1.0f); /* 1 - r^2 */
    ew_tensor *q = ew_sub(g, ew_add(g, ew_square(g, zx), ew_square(g, zy)), ew_scale(g, ew_mul(g, rho, ew_mul(g, zx, zy)), 2.0f));
    ew_tensor *nll = ew_add(g, ew_add(g, ew_log(g, sx), ew_log(g, sy)),
                            ew_add(g, ew_scale(g, ew_log(g, om), 0.5f), ew_scale(g, ew_div(g, q, om), 0.5f)));
    return ew_add_scalar(g, ew_mean(g, nll), (float)log(2.0 * 3.14159265358979323846));
}

double ew_gauss2d_maha2(double mx, double my, double sx, double sy, double r, double tx, double ty) {
    double zx = (tx - mx) / sx, zy = (ty - my) / sy;
    return (zx * zx - 2.0 * r * zx * zy + zy * zy) / (1.0 - r * r);
}

double ew_gauss2d_nll_ref(double mx, double my, double sx, double sy, double r, double tx, double ty) {
    return log(2.0 * 3.14159265358979323846) + log(sx) + log(sy) + 0.5 * log(1.0 - r * r) + 0.5 * ew_gauss2d_maha2(mx, my, sx, sy, r, tx, ty);
}

int ew_motion_train_step(ew_motion *m, ew_optim *opt, ew_graph *g, const ew_motion_sample *s, int n, float *loss,
                         char *err, size_t errsz) {
    if (ew_graph_reset(g)) return failf(err, errsz, "motion: out of memory");
    ew_motion_out o;
    float *tx = ew_arena_alloc(ew_graph_arena(g), sizeof(float) * (size_t)n * EW_MOTION_FUT);
    float *ty = ew_arena_alloc(ew_graph_arena(g), sizeof(float) * (size_t)n * EW_MOTION_FUT);
    if (!tx || !ty || ew_motion_forward(g, m, s, n, &o)) return failf(err, errsz, "motion: %s", ew_graph_error(g) ? ew_graph_error(g) : "out of memory");
    for (int i = 0; i < n; i++)
        for (int k = 0; k < EW_MOTION_FUT; k++) {
            tx[i * EW_MOTION_FUT + k] = s[i].fut[k][0];
            ty[i * EW_MOTION_FUT + k] = s[i].fut[k][1];
        }
    ew_tensor *l = ew_gauss2d_nll(g, o.mx, o.my, o.sx, o.sy, o.rho, tx, ty);
    if (!l) return failf(err, errsz, "motion: %s", ew_graph_error(g));
    if (!isfinite(l->data[0])) return failf(err, errsz, "motion: loss is not finite");
    ew_optim_zero_grad(opt);
    if (ew_backward(g, l)) return failf(err, errsz, "motion: %s", ew_graph_error(g));
    ew_optim_clip_grad_norm(opt, 5.0f);
    ew_optim_step(opt);
    if (loss) *loss = l->data[0];
    return 0;
}

int ew_motion_predict(const ew_motion *m, ew_graph *g, const ew_motion_sample *s, int n, float *out, char *err,
                      size_t errsz) {
    int old = ew_set_grad_enabled(g, 0), rc = 0;
    for (int b = 0; b < n && rc == 0; b += 256) {
        int k = n - b < 256 ? n - b : 256;
        ew_motion_out o;
        if (ew_graph_reset(g) || ew_motion_forward(g, m, s + b, k, &o)) {
            rc = failf(err, errsz, "motion: %s", ew_graph_error(g) ? ew_graph_error(g) : "out of memory");
            break;
        }
        for (int i = 0; i < k; i++)
            for (int t = 0; t < EW_MOTION_FUT; t++) {
                float *d = out + ((size_t)(b + i) * EW_MOTION_FUT + t) * 5;
                int j = i * EW_MOTION_FUT + t;
                d[0] = o.mx->data[j], d[1] = o.my->data[j], d[2] = o.sx->data[j], d[3] = o.sy->data[j];
                d[4] = o.rho->data[j];
                ew_motion_apply_cal(&m->cal, t, 30.0f * s[b + i].ctx[3], d);
            }
    }
    ew_set_grad_enabled(g, old);
    return rc;
}

void ew_motion_cal_none(ew_motion_cal *c) {
    c->t[0] = c->t[1] = c->t[2] = 1.0f;
    c->c = 1.0f;
    c->ax = c->ay = 0.0f;
    c->beta = 0.0f;
}

void ew_motion_apply_cal(const ew_motion_cal *c, int k, float v, float *d) {
    int b = k * 3 / EW_MOTION_FUT;
    b = b < 0 ? 0 : (b > 2 ? 2 : b);
    v = v > 0.0f ? (v < 35.0f ? v : 35.0f) : 0.0f; /* NaN -> 0 */
    double t = c->t[b] * (c->beta != 0.0f ? exp(c->beta * (25.0 - v) / 10.0) : 1.0);
    double sx = d[2] * t, sy = d[3] * t;
    double nx = sqrt(sx * sx + (double)c->ax * c->ax), ny = sqrt(sy * sy + (double)c->ay * c->ay);
    d[4] = (float)(c->c * d[4] * sx * sy / (nx * ny));
    d[2] = (float)nx, d[3] = (float)ny;
}

/* Coverage loss of a calibration: squared misses of the 1 and 2 sigma shares (39.3 %, 86.5 %)
 * over all horizons and over each second of them. */
static double cal_loss(const ew_motion_sample *s, int n, const float *pred, const ew_motion_cal *c) {
    long in1[4] = {0}, in2[4] = {0}, cnt[4] = {0};
    for (int i = 0; i < n; i++)
        for (int k = 0; k < EW_MOTION_FUT; k++) {
            float d[5];
            memcpy(d, pred + ((size_t)i * EW_MOTION_FUT + k) * 5, sizeof d);
            ew_motion_apply_cal(c, k, 30.0f * s[i].ctx[3], d);
            double r2 = ew_gauss2d_maha2(d[0], d[1], d[2], d[3], d[4], s[i].fut[k][0], s[i].fut[k][1]);
            int b = 1 + k * 3 / EW_MOTION_FUT;
            in1[0] += r2 <= 1.0, in2[0] += r2 <= 4.0, cnt[0]++;
            in1[b] += r2 <= 1.0, in2[b] += r2 <= 4.0, cnt[b]++;
        }
    double l = 0.0, c1 = 1.0 - exp(-0.5), c2 = 1.0 - exp(-2.0);
    for (int b = 0; b < 4; b++)
        if (cnt[b]) l += pow((double)in1[b] / cnt[b] - c1, 2) + pow((double)in2[b] / cnt[b] - c2, 2);
    return l;
}

void ew_motion_calibrate(ew_motion *m, const ew_motion_sample *s, int n, const float *pred) {
    ew_motion_cal best;
    ew_motion_cal_none(&best);
    double bn = cal_loss(s, n, pred, &best);
    /* for each beta and correlation shrink c: coordinate search over the others from the
     * identity; the best overall */
    for (int bi = 0; bi <= 8; bi++)
        for (int ci = 0; ci <= 10; ci++) {
            ew_motion_cal cur;
            ew_motion_cal_none(&cur);
            cur.beta = -0.2f + 0.1f * (float)bi;
            cur.c = 1.0f - 0.1f * (float)ci;
            double cn = cal_loss(s, n, pred, &cur);
            for (int sweep = 0; sweep < 2; sweep++)
                for (int p = 0; p < 5; p++) /* 0-2 t, 3 ax, 4 ay */
                    for (int j = 0; j <= 24; j++) {
                        ew_motion_cal c = cur;
                        float v = p < 3 ? 0.5f * powf(16.0f, (float)j / 24.0f)
                                        : (j == 0 ? 0.0f : 0.005f * powf(200.0f, (float)(j - 1) / 23.0f));
                        if (p < 3) c.t[p] = v;
                        else if (p == 3) c.ax = v;
                        else c.ay = v;
                        double l = cal_loss(s, n, pred, &c);
                        if (l < cn) cn = l, cur = c;
                    }
            if (cn < bn) bn = cn, best = cur;
        }
    m->cal = best;
}

void ew_motion_cv(const ew_motion_sample *s, float dt, float *out) {
    const float *p9 = s->hist[EW_MOTION_HIST - 1], *p4 = s->hist[EW_MOTION_HIST - 6];
    float vx = (p9[0] - p4[0]) / (5.0f * dt), vy = (p9[1] - p4[1]) / (5.0f * dt);
    for (int k = 0; k < EW_MOTION_FUT; k++) {
        out[2 * k] = p9[0] + vx * dt * (float)(k + 1);
        out[2 * k + 1] = p9[1] + vy * dt * (float)(k + 1);
    }
}

int ew_motion_save(const ew_motion *m, ew_optim *opt, long step, const char *path, char *err, size_t errsz) {
    char h[32], st[32], dt[32], cal[160];
    snprintf(h, sizeof h, "%d", m->cfg.hidden);
    snprintf(cal, sizeof cal, "%.9g %.9g %.9g %.9g %.9g %.9g %.9g", m->cal.t[0], m->cal.t[1], m->cal.t[2], m->cal.c,
             m->cal.ax, m->cal.ay, m->cal.beta);
    snprintf(st, sizeof st, "%ld", step);
    snprintf(dt, sizeof dt, "%.9g", m->cfg.dt);
    ew_kv kv[6] = {{"model", "egoworld-motion"}, {"motion.hidden", h},         {"motion.dt", dt},
                   {EW_OPTIM_META_STEP, st},    {"motion.version", "2"}, {"motion.cal", cal}};
    int nextra = 0;
    const ew_param *extra = opt ? ew_optim_state(opt, &nextra) : NULL;
    return ew_checkpoint_write(path, m->params.items, m->params.n, extra, nextra, kv, 6, err, errsz);
}

int ew_motion_load(ew_motion *m, const char *path, long *step, char *err, size_t errsz) {
    ew_checkpoint *ck;
    if (ew_checkpoint_open(path, &ck, err, errsz)) return -1;
    int rc = -1;
    const char *model = ew_checkpoint_meta(ck, "model"), *h = ew_checkpoint_meta(ck, "motion.hidden");
    const char *dt = ew_checkpoint_meta(ck, "motion.dt"), *st = ew_checkpoint_meta(ck, EW_OPTIM_META_STEP);
    ew_motion_config c;
    char *e1 = NULL, *e2 = NULL, *e3 = NULL;
    const char *ver = ew_checkpoint_meta(ck, "motion.version"), *cal = ew_checkpoint_meta(ck, "motion.cal");
    ew_motion_cal cv;
    ew_motion_cal_none(&cv);
    if (!model || strcmp(model, "egoworld-motion") || !h || !dt || !st) {
        failf(err, errsz, "%s: not a motion-predictor checkpoint (metadata model, motion.hidden, motion.dt, %s)", path,
              EW_OPTIM_META_STEP);
        goto done;
    }
    if (!ver || strcmp(ver, "2")) {
        failf(err, errsz, "%s: motion-predictor checkpoint of an older version (motion.version %s, need 2): retrain",
              path, ver ? ver : "missing");
        goto done;
    }
    /* seven numbers (t1 t2 t3 c ax ay beta), or six (no beta) or three (t ax ay) as earlier
     * version-2 checkpoints wrote */
    int ncal = cal ? sscanf(cal, "%f %f %f %f %f %f %f", &cv.t[0], &cv.t[1], &cv.t[2], &cv.c, &cv.ax, &cv.ay, &cv.beta) : 0;
    if (ncal == 3) cv.ax = cv.t[1], cv.ay = cv.t[2], cv.t[1] = cv.t[2] = cv.t[0], cv.c = 1.0f;
    if (cal && ((ncal != 7 && ncal != 6 && ncal != 3) || !(cv.beta > -10.0f && cv.beta < 10.0f) ||
                !(cv.t[0] > 0.0f && cv.t[0] < 1e6f) || !(cv.t[1] > 0.0f && cv.t[1] < 1e6f) ||
                !(cv.t[2] > 0.0f && cv.t[2] < 1e6f) || !(cv.c >= 0.0f && cv.c <= 1.0f) || !(cv.ax >= 0.0f && cv.ax < 1e6f) ||
                !(cv.ay >= 0.0f && cv.ay < 1e6f))) {
        failf(err, errsz, "%s: bad motion.cal metadata '%s'", path, cal);
        goto done;
    }
    errno = 0;
    long hv = strtol(h, &e1, 10), sv = strtol(st, &e3, 10);
    c.dt = strtof(dt, &e2);
    if (errno || *e1 || *e2 || *e3 || hv < 1 || hv > 4096 || sv < 0 || !(c.dt > 0.0f)) {
        failf(err, errsz, "%s: bad motion metadata", path);
        goto done;
    }
    c.hidden = (int)hv;
    if (ew_motion_init(m, &c, 0, err, errsz)) goto done;
    if (ew_checkpoint_load_params(ck, m->params.items, m->params.n, 0, EW_OPTIM_STATE_PREFIX, err, errsz)) {
        ew_motion_free(m);
        goto done;
    }
    m->cal = cv;
    if (step) *step = sv;
    rc = 0;
done:
    ew_checkpoint_close(ck);
    return rc;
}
