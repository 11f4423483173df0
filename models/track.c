/* track.c - unsupervised tracker: net, losses, training step, detection, baseline, I/O
 * (see track.h). */
#include "models/track.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/checkpoint.h"

/* peak picking (ew_track_peaks) and the local soft-argmax window (also of the local loss) */
#define PEAK_R 2
#define PEAK_C 4
#define WIN_R 3
#define WIN_C 5

static int failf(char *err, size_t errsz, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errsz, fmt, ap);
    va_end(ap);
    return -1;
}

void ew_tracker_config_default(ew_tracker_config *c) {
    c->channels = 16;
    c->layers = 4;
    c->kernel_w = 9;
    c->disc_hidden = 32;
    c->frames = 5;
    c->w_causal = 1.0f;
    c->w_equiv = 0.5f;
    c->w_entropy = 0.02f;
    c->local_loss = 0;
}

static int config_check(const ew_tracker_config *c, char *err, size_t errsz) {
    if (c->channels < 1 || c->channels > 256) return failf(err, errsz, "tracker: channels must be in [1, 256]");
    if (c->layers < 1 || c->layers > EW_TRACK_MAX_LAYERS)
        return failf(err, errsz, "tracker: layers must be in [1, %d]", EW_TRACK_MAX_LAYERS);
    if (c->kernel_w < 1 || c->kernel_w > 31 || c->kernel_w % 2 == 0)
        return failf(err, errsz, "tracker: kernel_w must be odd, in [1, 31]");
    if (c->disc_hidden < 1 || c->disc_hidden > 4096) return failf(err, errsz, "tracker: disc_hidden must be in [1, 4096]");
    if (c->frames < 2 || c->frames > EW_VIDEO_MAX_T)
        return failf(err, errsz, "tracker: frames must be in [2, %d]", EW_VIDEO_MAX_T);
    if (!(c->w_causal >= 0.0f) || !(c->w_equiv >= 0.0f) || !(c->w_entropy >= 0.0f))
        return failf(err, errsz, "tracker: loss weights must be >= 0");
    if (c->local_loss != 0 && c->local_loss != 1) return failf(err, errsz, "tracker: local_loss must be 0 or 1");
    return 0;
}

int ew_tracker_init(ew_tracker *t, const ew_tracker_config *cfg, uint64_t seed, char *err, size_t errsz) {
    memset(t, 0, sizeof *t);
    if (config_check(cfg, err, errsz)) return -1;
    t->cfg = *cfg;
    t->peak_thr = 0.0f;
    ew_conv_opts o3 = {{1, 1}, {1, 1}, {0, 0}}, ow = {{1, 1}, {1, cfg->kernel_w / 2}, {0, 0}};
    char name[64];
    int ic = 1;
    for (int l = 0; l < cfg->layers; l++) {
        snprintf(name, sizeof name, "track.conv%d", l);
        if (ew_conv2d_layer_init(&t->conv[l], name, ic, cfg->channels, 3, l ? cfg->kernel_w : 3, l ? &ow : &o3, 1,
                                 seed + 17u * (uint64_t)l, err, errsz))
            goto fail;
        ic = cfg->channels;
    }
    ew_conv_opts o1 = {{1, 1}, {0, 0}, {0, 0}};
    if (ew_conv2d_layer_init(&t->head, "track.head", ic, 1, 1, 1, &o1, 1, seed + 1001u, err, errsz)) goto fail;
    int sizes[4] = {2 * cfg->frames, cfg->disc_hidden, cfg->disc_hidden, 1};
    if (ew_mlp_init(&t->disc, "track.disc", 3, sizes, 0.1f, seed + 2003u, err, errsz)) goto fail;
    for (int l = 0; l < cfg->layers; l++)
        if (ew_conv_layer_params(&t->conv[l], &t->params)) goto oom;
    if (ew_conv_layer_params(&t->head, &t->params) || ew_mlp_params(&t->disc, &t->params)) goto oom;
    return 0;
oom:
    failf(err, errsz, "tracker: out of memory");
fail:
    ew_tracker_free(t);
    return -1;
}

int ew_tracker_move_to_backend(ew_tracker *t, const ew_backend *be, char *err, size_t errsz) {
    if (!ew_backend_is_device(be)) return 0;
    ew_allocator al = ew_backend_allocator(be);
    int bad = 0;
    for (int l = 0; l < t->cfg.layers && !bad; l++) bad = ew_conv_layer_move(&t->conv[l], &al);
    if (!bad) bad = ew_conv_layer_move(&t->head, &al) || ew_mlp_move(&t->disc, &al);
    t->params.n = 0;
    for (int l = 0; l < t->cfg.layers && !bad; l++) bad = ew_conv_layer_params(&t->conv[l], &t->params);
    if (!bad) bad = ew_conv_layer_params(&t->head, &t->params) || ew_mlp_params(&t->disc, &t->params);
    if (bad) {
        failf(err, errsz, "tracker: moving the parameters to the %s backend failed (%s)", be->name,
              ew_backend_error(be) ? ew_backend_error(be) : "out of device memory");
        return -1;
    }
    return 0;
}

void ew_tracker_free(ew_tracker *t) {
    for (int l = 0; l < EW_TRACK_MAX_LAYERS; l++) ew_conv_layer_free(&t->conv[l]);
    ew_conv_layer_free(&t->head);
    ew_mlp_free(&t->disc);
    ew_param_list_free(&t->params);
    memset(t, 0, sizeof *t);
}

ew_tensor *ew_tracker_logits(ew_graph *g, const ew_tracker *t, ew_tensor *x) {
    ew_tensor *h = x;
    for (int l = 0; l < t->cfg.layers; l++) h = ew_leaky_relu(g, ew_conv_layer_fwd(g, &t->conv[l], h), 0.1f);
    return ew_conv_layer_fwd(g, &t->head, h);
}

ew_tensor *ew_track_positions(ew_graph *g, ew_tensor *logits) {
    if (!logits) return NULL;
    int n = logits->shape[0];
    int s[2] = {n, 2};
    return ew_add_scalar(g, ew_reshape(g, ew_soft_argmax(g, logits), 2, s), 0.5f);
}

ew_tensor *ew_track_positions_local(ew_graph *g, ew_tensor *logits) {
    if (!logits) return NULL;
    if (logits->ndim != 4 || logits->shape[1] != 1) return ew_graph_fail(g, "track_positions_local: logits must be [n, 1, h, w]");
    const int n = logits->shape[0], h = logits->shape[2], w = logits->shape[3];
    if (ew_backend_sync(ew_graph_backend(g))) return ew_graph_fail(g, "track_positions_local: device error");
    ew_tensor *mask = ew_tensor_new(g, 4, logits->shape);
    if (!mask) return NULL;
    const size_t F = (size_t)h * w;
    for (int k = 0; k < n; k++) {
        const float *L = logits->data + (size_t)k * F;
        float *M = mask->data + (size_t)k * F;
        size_t best = 0;
        for (size_t i = 1; i < F; i++)
            if (L[i] > L[best]) best = i;
        int br = (int)(best / (size_t)w), bc = (int)(best % (size_t)w);
        /* a large finite offset: exp underflows to 0 outside the window, no inf - inf */
        for (int r = 0; r < h; r++)
            for (int c = 0; c < w; c++) M[(size_t)r * w + c] = abs(r - br) <= WIN_R && abs(c - bc) <= WIN_C ? 0.0f : -1e4f;
    }
    return ew_track_positions(g, ew_add(g, logits, mask));
}

ew_tensor *ew_track_entropy(ew_graph *g, ew_tensor *logits) {
    if (!logits) return NULL;
    int n = logits->shape[0] * logits->shape[1];
    ew_tensor *p = ew_spatial_softmax(g, logits);
    ew_tensor *plogp = ew_mul(g, p, ew_log(g, ew_add_scalar(g, p, 1e-12f)));
    return ew_scale(g, ew_sum(g, plogp), -1.0f / (float)n);
}

ew_tensor *ew_track_equiv_loss(ew_graph *g, ew_tensor *pa, ew_tensor *pb, const float *sign, const float *off) {
    if (!pa || !pb) return NULL;
    if (pa->ndim != 2 || pa->shape[1] != 2 || !ew_same_shape(pa, pb))
        return ew_graph_fail(g, "track_equiv_loss: pa and pb must be [m, 2] alike");
    ew_tensor *s = ew_tensor_from(g, 2, pa->shape, sign), *o = ew_tensor_from(g, 2, pa->shape, off);
    ew_tensor *w = ew_add(g, ew_mul(g, pa, s), o);
    return ew_mse(g, pb, w);
}

ew_tensor *ew_track_equiv_loss_gated(ew_graph *g, ew_tensor *pa, ew_tensor *pb, const float *sign, const float *off,
                                     float max_du, float max_dv, int *kept) {
    if (kept) *kept = 0;
    if (!pa || !pb) return NULL;
    if (pa->ndim != 2 || pa->shape[1] != 2 || !ew_same_shape(pa, pb))
        return ew_graph_fail(g, "track_equiv_loss_gated: pa and pb must be [m, 2] alike");
    if (ew_backend_sync(ew_graph_backend(g))) return ew_graph_fail(g, "track_equiv_loss_gated: device error");
    const int m = pa->shape[0];
    ew_tensor *gate = ew_tensor_new(g, 2, pa->shape);
    if (!gate) return NULL;
    int k = 0;
    for (int i = 0; i < m; i++) {
        float du = pb->data[2 * i] - (sign[2 * i] * pa->data[2 * i] + off[2 * i]);
        float dv = pb->data[2 * i + 1] - (sign[2 * i + 1] * pa->data[2 * i + 1] + off[2 * i + 1]);
        int ok = fabsf(du) <= max_du && fabsf(dv) <= max_dv;
        gate->data[2 * i] = gate->data[2 * i + 1] = ok ? 1.0f : 0.0f;
        k += ok;
    }
    if (kept) *kept = k;
    ew_tensor *s = ew_tensor_from(g, 2, pa->shape, sign), *o = ew_tensor_from(g, 2, pa->shape, off);
    ew_tensor *d = ew_mul(g, ew_sub(g, pb, ew_add(g, ew_mul(g, pa, s), o)), gate);
    return ew_scale(g, ew_sum(g, ew_mul(g, d, d)), k ? 1.0f / (2.0f * (float)k) : 0.0f);
}

ew_tensor *ew_track_causal_loss(ew_graph *g, const ew_mlp *disc, ew_tensor *pos, const int *real, float *acc) {
    if (!pos) return NULL;
    if (pos->ndim != 3 || pos->shape[2] != 2) return ew_graph_fail(g, "track_causal_loss: pos must be [b, T, 2]");
    int b = pos->shape[0], T = pos->shape[1];
    if (disc->layers[0].in != 2 * T) return ew_graph_fail(g, "track_causal_loss: discriminator wants %d inputs", disc->layers[0].in);
    ew_tensor *c = ew_sub(g, pos, ew_mean_dim(g, pos, 1, 1));
    int fs[2] = {b, 2 * T};
    ew_tensor *z = ew_mlp_fwd(g, disc, ew_reshape(g, ew_scale(g, c, 1.0f / 8.0f), 2, fs));
    if (!z) return NULL;
    int ys[2] = {b, 1};
    ew_tensor *y = ew_tensor_new(g, 2, ys);
    if (!y) return NULL;
    int right = 0;
    for (int i = 0; i < b; i++) {
        y->data[i] = real[i] ? 1.0f : 0.0f;
        right += (z->data[i] > 0.0f) == (real[i] != 0);
    }
    if (acc) *acc = (float)right / (float)b;
    /* BCE with logits: softplus(z) - y z */
    return ew_mean(g, ew_sub(g, ew_softplus(g, z), ew_mul(g, y, z)));
}

int ew_tracker_train_step(ew_tracker *t, ew_optim *opt, ew_graph *g, const ew_video_pairs *batch,
                          ew_track_stats *st, char *err, size_t errsz) {
    const int B = batch->n, T = batch->frames, H = batch->rows, W = batch->cols;
    if (T != t->cfg.frames) return failf(err, errsz, "tracker: batch has %d frames, the model %d", T, t->cfg.frames);
    if (ew_graph_reset(g)) return failf(err, errsz, "tracker: out of memory");
    const size_t F = (size_t)H * (size_t)W, M = (size_t)B * (size_t)T;
    int xs[4] = {(int)(2 * M), 1, H, W};
    ew_tensor *x = ew_tensor_new(g, 4, xs);
    float *sign = ew_arena_alloc(ew_graph_arena(g), M * 2 * sizeof(float));
    float *off = ew_arena_alloc(ew_graph_arena(g), M * 2 * sizeof(float));
    int *real = ew_arena_alloc(ew_graph_arena(g), (size_t)B * sizeof(int));
    if (!x || !sign || !off || !real) return failf(err, errsz, "tracker: out of memory");
    memcpy(x->data, batch->a, M * F * sizeof(float));
    memcpy(x->data + M * F, batch->b, M * F * sizeof(float));
    for (int i = 0; i < B; i++) {
        real[i] = !batch->shuffled[i];
        for (int f = 0; f < T; f++) {
            size_t r = (size_t)i * T + f;
            float du = batch->shift_px[2 * i], dv = batch->shift_px[2 * i + 1];
            sign[2 * r] = batch->flip_x[i] ? -1.0f : 1.0f;
            off[2 * r] = batch->flip_x[i] ? (float)W - du : du;
            sign[2 * r + 1] = batch->flip_y[i] ? -1.0f : 1.0f;
            off[2 * r + 1] = batch->flip_y[i] ? (float)H - dv : dv;
        }
    }
    ew_tensor *logits = ew_tracker_logits(g, t, x);
    ew_tensor *pos = t->cfg.local_loss ? ew_track_positions_local(g, logits) : ew_track_positions(g, logits);
    ew_tensor *pa = ew_slice(g, pos, 0, 0, (int)M), *pb = ew_slice(g, pos, 0, (int)M, (int)M);
    ew_tensor *le = t->cfg.local_loss ? ew_track_equiv_loss_gated(g, pa, pb, sign, off, (float)WIN_C, (float)WIN_R, NULL)
                                      : ew_track_equiv_loss(g, pa, pb, sign, off);
    int ps[3] = {B, T, 2};
    float acc = 0.0f;
    ew_tensor *lc = ew_track_causal_loss(g, &t->disc, ew_reshape(g, pa, 3, ps), real, &acc);
    ew_tensor *lh = ew_track_entropy(g, logits);
    ew_tensor *loss = ew_add(g, ew_add(g, ew_scale(g, lc, t->cfg.w_causal), ew_scale(g, le, t->cfg.w_equiv)),
                             ew_scale(g, lh, t->cfg.w_entropy));
    if (!loss) return failf(err, errsz, "tracker: %s", ew_graph_error(g));
    if (!isfinite(loss->data[0])) return failf(err, errsz, "tracker: loss is not finite");
    ew_optim_zero_grad(opt);
    if (ew_backward(g, loss)) return failf(err, errsz, "tracker: %s", ew_graph_error(g));
    ew_optim_clip_grad_norm(opt, 5.0f);
    ew_optim_step(opt);
    if (st) {
        st->loss = loss->data[0];
        st->causal = lc->data[0];
        st->equiv = le->data[0];
        st->entropy = lh->data[0];
        st->disc_acc = acc;
    }
    return 0;
}

int ew_tracker_locate(const ew_tracker *t, ew_graph *g, const float *frames, int n, int h, int w, float *uv,
                      char *err, size_t errsz) {
    int old = ew_set_grad_enabled(g, 0);
    int rc = 0;
    const int chunk = 32;
    for (int s = 0; s < n && rc == 0; s += chunk) {
        int m = n - s < chunk ? n - s : chunk;
        if (ew_graph_reset(g)) {
            rc = failf(err, errsz, "tracker: out of memory");
            break;
        }
        int xs[4] = {m, 1, h, w};
        ew_tensor *p = ew_track_positions(g, ew_tracker_logits(g, t, ew_tensor_from(g, 4, xs, frames + (size_t)s * h * w)));
        if (!p) {
            rc = failf(err, errsz, "tracker: %s", ew_graph_error(g));
            break;
        }
        memcpy(uv + 2 * (size_t)s, p->data, (size_t)m * 2 * sizeof(float));
    }
    ew_set_grad_enabled(g, old);
    return rc;
}

int ew_tracker_map(const ew_tracker *t, ew_graph *g, const float *frame, int h, int w, float *out, char *err,
                   size_t errsz) {
    int old = ew_set_grad_enabled(g, 0);
    int rc = 0;
    if (ew_graph_reset(g)) rc = failf(err, errsz, "tracker: out of memory");
    if (!rc) {
        int xs[4] = {1, 1, h, w};
        ew_tensor *l = ew_tracker_logits(g, t, ew_tensor_from(g, 4, xs, frame));
        if (!l) rc = failf(err, errsz, "tracker: %s", ew_graph_error(g));
        else memcpy(out, l->data, (size_t)h * w * sizeof(float));
    }
    ew_set_grad_enabled(g, old);
    return rc;
}

int ew_tracker_map_tta(const ew_tracker *t, ew_graph *g, const float *frame, int h, int w, float *out, char *err,
                       size_t errsz) {
    int old = ew_set_grad_enabled(g, 0);
    int rc = 0;
    if (ew_graph_reset(g)) rc = failf(err, errsz, "tracker: out of memory");
    int xs[4] = {4, 1, h, w};
    ew_tensor *x = rc ? NULL : ew_tensor_new(g, 4, xs);
    if (!rc && !x) rc = failf(err, errsz, "tracker: out of memory");
    if (!rc) {
        const size_t F = (size_t)h * w;
        for (int k = 0; k < 4; k++)
            for (int r = 0; r < h; r++)
                for (int c = 0; c < w; c++) {
                    int rr = (k & 2) ? h - 1 - r : r, cc = (k & 1) ? w - 1 - c : c;
                    x->data[k * F + (size_t)r * w + c] = frame[(size_t)rr * w + cc];
                }
        ew_tensor *l = ew_tracker_logits(g, t, x);
        if (!l) rc = failf(err, errsz, "tracker: %s", ew_graph_error(g));
        else
            for (int r = 0; r < h; r++)
                for (int c = 0; c < w; c++) {
                    float s = 0.0f;
                    for (int k = 0; k < 4; k++) {
                        int rr = (k & 2) ? h - 1 - r : r, cc = (k & 1) ? w - 1 - c : c;
                        s += l->data[k * F + (size_t)rr * w + cc];
                    }
                    out[(size_t)r * w + c] = 0.25f * s;
                }
    }
    ew_set_grad_enabled(g, old);
    return rc;
}


int ew_track_peaks(const float *L, int h, int w, float thr, ew_track_det *dets, int cap) {
    int n = 0;
    for (int r = 0; r < h; r++)
        for (int c = 0; c < w; c++) {
            float v = L[r * w + c];
            if (!(v > thr)) continue;
            int peak = 1;
            for (int dr = -PEAK_R; dr <= PEAK_R && peak; dr++)
                for (int dc = -PEAK_C; dc <= PEAK_C; dc++) {
                    int rr = r + dr, cc = c + dc;
                    if ((dr == 0 && dc == 0) || rr < 0 || rr >= h || cc < 0 || cc >= w) continue;
                    float o = L[rr * w + cc];
                    /* ties: the first in raster order wins */
                    if (o > v || (o == v && (dr < 0 || (dr == 0 && dc < 0)))) {
                        peak = 0;
                        break;
                    }
                }
            if (!peak || n >= cap) continue;
            double su = 0, sv = 0, sp = 0;
            for (int dr = -WIN_R; dr <= WIN_R; dr++)
                for (int dc = -WIN_C; dc <= WIN_C; dc++) {
                    int rr = r + dr, cc = c + dc;
                    if (rr < 0 || rr >= h || cc < 0 || cc >= w) continue;
                    double p = exp((double)L[rr * w + cc] - (double)v);
                    su += p * (cc + 0.5);
                    sv += p * (rr + 0.5);
                    sp += p;
                }
            dets[n].u = (float)(su / sp);
            dets[n].v = (float)(sv / sp);
            dets[n].score = v;
            n++;
        }
    return n;
}

int ew_tracker_detect(const ew_tracker *t, ew_graph *g, const float *frame, int h, int w, ew_track_det *dets,
                      int cap, char *err, size_t errsz) {
    float *L = malloc((size_t)h * w * sizeof(float));
    if (!L) return failf(err, errsz, "tracker: out of memory");
    int n = -1;
    int rc = t->tta ? ew_tracker_map_tta(t, g, frame, h, w, L, err, errsz) : ew_tracker_map(t, g, frame, h, w, L, err, errsz);
    if (rc == 0) n = ew_track_peaks(L, h, w, t->peak_thr, dets, cap);
    free(L);
    return n;
}

int ew_tracker_flip_noise(const ew_tracker *t, ew_graph *g, const float *frames, int n, int h, int w,
                          float m_per_px, float *sigma, long *pairs, char *err, size_t errsz) {
    const size_t F = (size_t)h * w;
    float *ff = malloc(F * sizeof(float));
    ew_track_det *a = malloc(512 * sizeof *a), *b = malloc(512 * sizeof *b);
    if (!ff || !a || !b) {
        free(ff), free(a), free(b);
        return failf(err, errsz, "tracker: out of memory");
    }
    double sum = 0;
    long np = 0;
    int rc = 0;
    for (int k = 0; k < n && rc == 0; k++) {
        const float *f = frames + (size_t)k * F;
        for (size_t i = 0; i < F; i++) ff[i] = f[F - 1 - i]; /* both flips = 180 degree rotation */
        int na = ew_tracker_detect(t, g, f, h, w, a, 512, err, errsz);
        int nb = na < 0 ? -1 : ew_tracker_detect(t, g, ff, h, w, b, 512, err, errsz);
        if (nb < 0) {
            rc = -1;
            break;
        }
        for (int i = 0; i < na; i++) {
            double best = 1.5 * 1.5;
            int bj = -1;
            for (int j = 0; j < nb; j++) {
                double du = a[i].u - ((double)w - b[j].u), dv = a[i].v - ((double)h - b[j].v);
                double d = du * du + dv * dv;
                if (d < best) best = d, bj = j;
            }
            if (bj >= 0) sum += best, np++;
        }
    }
    free(ff), free(a), free(b);
    if (rc) return -1;
    /* per axis: E[du^2 + dv^2] = 2 axes x 2 sigma^2 */
    *sigma = np ? (float)(sqrt(sum / (double)np / 4.0) * m_per_px) : 0.0f;
    if (pairs) *pairs = np;
    return 0;
}

static int cmp_f(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

int ew_tracker_calibrate(ew_tracker *t, ew_graph *g, const ew_video_pairs *batch, char *err, size_t errsz) {
    return ew_tracker_calibrate_q(t, g, batch, 0.5, err, errsz);
}

int ew_tracker_calibrate_q(ew_tracker *t, ew_graph *g, const ew_video_pairs *batch, double q, char *err,
                           size_t errsz) {
    if (!(q > 0.0 && q < 1.0)) return failf(err, errsz, "tracker: calibration quantile must be in (0, 1)");
    const int H = batch->rows, W = batch->cols, M = batch->n * batch->frames;
    float *L = malloc((size_t)H * W * sizeof(float));
    float *peaks = malloc((size_t)M * sizeof(float));
    float *bg = malloc((size_t)M * H * W * sizeof(float));
    if (!L || !peaks || !bg) {
        free(L), free(peaks), free(bg);
        return failf(err, errsz, "tracker: out of memory");
    }
    size_t nb = 0;
    int rc = 0;
    for (int k = 0; k < M && rc == 0; k++) {
        rc = ew_tracker_map(t, g, batch->a + (size_t)k * H * W, H, W, L, err, errsz);
        if (rc) break;
        int best = 0;
        for (int i = 1; i < H * W; i++)
            if (L[i] > L[best]) best = i;
        peaks[k] = L[best];
        int br = best / W, bc = best % W;
        for (int i = 0; i < H * W; i++)
            if (abs(i / W - br) > WIN_R + 1 || abs(i % W - bc) > 2 * WIN_C) bg[nb++] = L[i];
    }
    if (rc == 0) {
        qsort(peaks, (size_t)M, sizeof(float), cmp_f);
        qsort(bg, nb, sizeof(float), cmp_f);
        int qi = q == 0.5 ? M / 2 : (int)(q * (double)(M - 1) + 0.5);
        float pk = peaks[qi], b = nb ? bg[(size_t)(0.995 * (double)(nb - 1))] : pk - 1.0f;
        t->peak_thr = 0.5f * (pk + b);
    }
    free(L), free(peaks), free(bg);
    return rc;
}

int ew_track_baseline_detect(const float *f, int h, int w, float thr, int min_area, ew_track_det *dets, int cap) {
    int *lab = calloc((size_t)h * w, sizeof(int)), *stack = malloc((size_t)h * w * sizeof(int));
    if (!lab || !stack) {
        free(lab), free(stack);
        return 0;
    }
    int n = 0, next = 0;
    for (int s = 0; s < h * w; s++) {
        if (lab[s] || !(f[s] > thr)) continue;
        next++;
        int sp = 0, area = 0;
        double su = 0, sv = 0, sw = 0;
        stack[sp++] = s;
        lab[s] = next;
        while (sp) {
            int i = stack[--sp], r = i / w, c = i % w;
            double wt = f[i] - thr;
            su += wt * (c + 0.5);
            sv += wt * (r + 0.5);
            sw += wt;
            area++;
            int nbr[4] = {r > 0 ? i - w : -1, r < h - 1 ? i + w : -1, c > 0 ? i - 1 : -1, c < w - 1 ? i + 1 : -1};
            for (int k = 0; k < 4; k++)
                if (nbr[k] >= 0 && !lab[nbr[k]] && f[nbr[k]] > thr) {
                    lab[nbr[k]] = next;
                    stack[sp++] = nbr[k];
                }
        }
        if (area >= min_area && n < cap && sw > 0) {
            dets[n].u = (float)(su / sw);
            dets[n].v = (float)(sv / sw);
            dets[n].score = (float)area;
            n++;
        }
    }
    free(lab), free(stack);
    return n;
}

/* ---- checkpoints ---------------------------------------------------------------------- */

int ew_tracker_save(const ew_tracker *t, ew_optim *opt, long step, const char *path, char *err, size_t errsz) {
    char v[10][48];
    snprintf(v[0], 48, "%d", t->cfg.channels);
    snprintf(v[1], 48, "%d", t->cfg.layers);
    snprintf(v[2], 48, "%d", t->cfg.disc_hidden);
    snprintf(v[3], 48, "%d", t->cfg.frames);
    snprintf(v[4], 48, "%.9g %.9g %.9g", t->cfg.w_causal, t->cfg.w_equiv, t->cfg.w_entropy);
    snprintf(v[5], 48, "%.9g", t->peak_thr);
    snprintf(v[6], 48, "%ld", step);
    snprintf(v[7], 48, "%d", t->cfg.kernel_w);
    snprintf(v[8], 48, "%d", t->cfg.local_loss);
    ew_kv kv[10] = {{"track.local", v[8]}, {"track.kernel_w", v[7]}, {"model", "egoworld-tracker"}, {"track.channels", v[0]}, {"track.layers", v[1]},
                   {"track.disc_hidden", v[2]}, {"track.frames", v[3]}, {"track.weights", v[4]},
                   {"track.peak_thr", v[5]}, {EW_OPTIM_META_STEP, v[6]}};
    int nextra = 0;
    const ew_param *extra = opt ? ew_optim_state(opt, &nextra) : NULL;
    return ew_checkpoint_write(path, t->params.items, t->params.n, extra, nextra, kv, 10, err, errsz);
}

static int meta_long(const ew_checkpoint *ck, const char *key, long lo, long hi, long *out, const char *path, char *err,
                     size_t errsz) {
    const char *s = ew_checkpoint_meta(ck, key);
    if (!s) return failf(err, errsz, "%s: metadata \"%s\" missing", path, key);
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return failf(err, errsz, "%s: metadata \"%s\" must be an integer in [%ld, %ld]", path, key, lo, hi);
    *out = v;
    return 0;
}

int ew_tracker_load(ew_tracker *t, const char *path, long *step, char *err, size_t errsz) {
    ew_checkpoint *ck;
    if (ew_checkpoint_open(path, &ck, err, errsz)) return -1;
    int rc = -1;
    const char *model = ew_checkpoint_meta(ck, "model");
    const char *wts = ew_checkpoint_meta(ck, "track.weights"), *thr = ew_checkpoint_meta(ck, "track.peak_thr");
    ew_tracker_config c;
    ew_tracker_config_default(&c);
    long ch, ly, dh, fr, kw, st = 0, loc = 0;
    if (!model || strcmp(model, "egoworld-tracker")) {
        failf(err, errsz, "%s: not a tracker checkpoint (metadata \"model\")", path);
        goto done;
    }
    if (meta_long(ck, "track.channels", 1, 256, &ch, path, err, errsz) ||
        meta_long(ck, "track.layers", 1, EW_TRACK_MAX_LAYERS, &ly, path, err, errsz) ||
        meta_long(ck, "track.kernel_w", 1, 31, &kw, path, err, errsz) ||
        meta_long(ck, "track.disc_hidden", 1, 4096, &dh, path, err, errsz) ||
        meta_long(ck, "track.frames", 2, EW_VIDEO_MAX_T, &fr, path, err, errsz) ||
        meta_long(ck, EW_OPTIM_META_STEP, 0, 1L << 40, &st, path, err, errsz) ||
        (ew_checkpoint_meta(ck, "track.local") && meta_long(ck, "track.local", 0, 1, &loc, path, err, errsz)))
        goto done;
    if (!wts || sscanf(wts, "%f %f %f", &c.w_causal, &c.w_equiv, &c.w_entropy) != 3) {
        failf(err, errsz, "%s: metadata \"track.weights\" must hold three numbers", path);
        goto done;
    }
    float pt;
    char *end;
    if (!thr || (pt = strtof(thr, &end), end == thr || *end || !isfinite(pt))) {
        failf(err, errsz, "%s: metadata \"track.peak_thr\" must be a finite number", path);
        goto done;
    }
    c.channels = (int)ch, c.layers = (int)ly, c.kernel_w = (int)kw, c.disc_hidden = (int)dh, c.frames = (int)fr;
    c.local_loss = (int)loc;
    if (ew_tracker_init(t, &c, 0, err, errsz)) goto done;
    if (ew_checkpoint_load_params(ck, t->params.items, t->params.n, 0, EW_OPTIM_STATE_PREFIX, err, errsz)) {
        ew_tracker_free(t);
        goto done;
    }
    t->peak_thr = pt;
    if (step) *step = st;
    rc = 0;
done:
    ew_checkpoint_close(ck);
    return rc;
}

int ew_tracker_load_optim(ew_optim *opt, const char *path, char *err, size_t errsz) {
    ew_checkpoint *ck;
    if (ew_checkpoint_open(path, &ck, err, errsz)) return -1;
    int n = 0;
    ew_param *st = (ew_param *)ew_optim_state(opt, &n);
    int rc = ew_checkpoint_load_params(ck, st, n, EW_CKPT_ALLOW_UNEXPECTED, NULL, err, errsz);
    long step = 0;
    if (rc == 0 && meta_long(ck, EW_OPTIM_META_STEP, 0, 1L << 40, &step, path, err, errsz) == 0)
        ew_optim_set_step_count(opt, step);
    else
        rc = -1;
    ew_checkpoint_close(ck);
    return rc;
}
