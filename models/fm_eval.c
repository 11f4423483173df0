/* fm_eval.c - image metrics and baselines for the world model (see fm_eval.h). */
#include "models/fm_eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

double ew_img_mse(const float *a, const float *b, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        s += d * d;
    }
    return n ? s / (double)n : 0.0;
}

int ew_find_blobs(const float *img, int H, int W, float thr, int min_pixels, float mpp, int *labels,
                  ew_blob *blobs, int max_blobs) {
    if (H < 1 || W < 1) return 0;
    size_t n = (size_t)H * (size_t)W;
    int nb = 0;
    for (size_t i = 0; i < n; i++) labels[i] = img[i] >= thr ? -1 : 0; /* -1: unvisited foreground */
    /* flood fill with an explicit stack kept in the label array's unused space is awkward;
     * use a queue of pixel indices in a local buffer sized n (the blob's own pixels) */
    int *queue = malloc(sizeof(int) * n);
    if (!queue) return 0;
    int next_label = 1;
    for (int start = 0; start < (int)n; start++) {
        if (labels[start] != -1) continue;
        int head = 0, tail = 0, lab = next_label++;
        queue[tail++] = start;
        labels[start] = lab;
        double su = 0, sv = 0, sm = 0;
        int pix = 0;
        while (head < tail) {
            int p = queue[head++], r = p / W, c = p % W;
            double w = img[p];
            su += w * (c + 0.5);
            sv += w * (r + 0.5);
            sm += w;
            pix++;
            for (int dr = -1; dr <= 1; dr++)
                for (int dc = -1; dc <= 1; dc++) {
                    int rr = r + dr, cc = c + dc;
                    if ((!dr && !dc) || rr < 0 || rr >= H || cc < 0 || cc >= W) continue;
                    int q = rr * W + cc;
                    if (labels[q] == -1) {
                        labels[q] = lab;
                        queue[tail++] = q;
                    }
                }
        }
        if (pix < min_pixels || sm <= 0) continue;
        ew_blob b;
        b.u = (float)(su / sm);
        b.v = (float)(sv / sm);
        b.f = ((float)H * 0.5f - b.v) * mpp;
        b.l = ((float)W * 0.5f - b.u) * mpp;
        b.pixels = pix;
        b.mass = (float)sm;
        if (nb < max_blobs) {
            blobs[nb++] = b;
        } else { /* keep the largest */
            int small = 0;
            for (int k = 1; k < nb; k++)
                if (blobs[k].mass < blobs[small].mass) small = k;
            if (b.mass > blobs[small].mass) blobs[small] = b;
        }
    }
    free(queue);
    return nb;
}

typedef struct {
    float d;
    int i, j;
} pair_t;

static int cmp_pair(const void *a, const void *b) {
    const pair_t *x = a, *y = b;
    if (x->d != y->d) return x->d < y->d ? -1 : 1;
    if (x->i != y->i) return x->i - y->i;
    return x->j - y->j;
}

int ew_match_points(const ew_blob *pred, int np, const ew_blob *truth, int nt, float gate, int *match,
                    double *dist_sum) {
    *dist_sum = 0.0;
    for (int i = 0; i < np; i++) match[i] = -1;
    if (np <= 0 || nt <= 0) return 0;
    pair_t *pairs = malloc(sizeof(pair_t) * (size_t)np * (size_t)nt);
    char *used = calloc((size_t)nt, 1);
    if (!pairs || !used) {
        free(pairs);
        free(used);
        return 0;
    }
    int npairs = 0;
    for (int i = 0; i < np; i++)
        for (int j = 0; j < nt; j++) {
            float df = pred[i].f - truth[j].f, dl = pred[i].l - truth[j].l;
            float d = sqrtf(df * df + dl * dl);
            if (d <= gate) pairs[npairs++] = (pair_t){d, i, j};
        }
    qsort(pairs, (size_t)npairs, sizeof(pair_t), cmp_pair);
    int nm = 0;
    for (int k = 0; k < npairs; k++) {
        if (match[pairs[k].i] >= 0 || used[pairs[k].j]) continue;
        match[pairs[k].i] = pairs[k].j;
        used[pairs[k].j] = 1;
        *dist_sum += pairs[k].d;
        nm++;
    }
    free(pairs);
    free(used);
    return nm;
}

void ew_ego_shift(const float *img, int C, int H, int W, float mpp, const ew_kin_state *p0,
                  const ew_kin_state *p1, float *out) {
    /* unit headings (the stored ones are unit up to rounding) */
    double n0 = hypot(p0->dx, p0->dy), n1 = hypot(p1->dx, p1->dy);
    double d0x = p0->dx / n0, d0y = p0->dy / n0, d1x = p1->dx / n1, d1y = p1->dy / n1;
    for (int r = 0; r < H; r++)
        for (int c = 0; c < W; c++) {
            /* pixel centre in frame 1 -> forward / left offsets -> world */
            double f1 = ((double)H * 0.5 - (r + 0.5)) * mpp, l1 = ((double)W * 0.5 - (c + 0.5)) * mpp;
            double wx = p1->x + f1 * d1x - l1 * d1y, wy = p1->y + f1 * d1y + l1 * d1x;
            double ox = wx - p0->x, oy = wy - p0->y;
            double f0 = ox * d0x + oy * d0y, l0 = -ox * d0y + oy * d0x;
            double u = (double)W * 0.5 - l0 / mpp - 0.5, v = (double)H * 0.5 - f0 / mpp - 0.5; /* index space */
            if (u < 0) u = 0;
            if (u > W - 1) u = W - 1;
            if (v < 0) v = 0;
            if (v > H - 1) v = H - 1;
            int c0 = (int)floor(u), r0 = (int)floor(v);
            double fu = u - c0, fv = v - r0;
            /* snap tiny rounding residues so whole-pixel shifts copy exactly */
            if (fu < 1e-6) fu = 0;
            if (fv < 1e-6) fv = 0;
            if (fu > 1 - 1e-6) { c0++; fu = 0; }
            if (fv > 1 - 1e-6) { r0++; fv = 0; }
            int c1 = c0 + 1 < W ? c0 + 1 : c0, r1 = r0 + 1 < H ? r0 + 1 : r0;
            if (c0 > W - 1) c0 = c1 = W - 1;
            if (r0 > H - 1) r0 = r1 = H - 1;
            for (int ch = 0; ch < C; ch++) {
                const float *p = img + (size_t)ch * H * W;
                double a = p[r0 * W + c0], b = p[r0 * W + c1], cc = p[r1 * W + c0], d = p[r1 * W + c1];
                double val;
                if (fu == 0 && fv == 0) val = a;
                else val = (1 - fv) * ((1 - fu) * a + fu * b) + fv * ((1 - fu) * cc + fu * d);
                out[(size_t)ch * H * W + r * W + c] = (float)val;
            }
        }
}

int ew_constvel_frame(const ew_raster_cfg *rc, const ew_traj_frame *f0, const ew_traj_frame *f1, float tau,
                      uint8_t *scratch, float *out) {
    float x[EW_TRAJ_MAX_VEH], y[EW_TRAJ_MAX_VEH];
    int n = f0->n < EW_TRAJ_MAX_VEH ? f0->n : EW_TRAJ_MAX_VEH;
    for (int i = 0; i < n; i++) {
        x[i] = f0->x[i] + f0->v[i] * f0->hx[i] * tau;
        y[i] = f0->y[i] + f0->v[i] * f0->hy[i] * tau;
    }
    ew_boxes bx = {x, y, f0->hx, f0->hy, f0->len, f0->wid, n};
    if (ew_raster_ego(rc, &f1->road, &f1->ego, f1->ego_len, f1->ego_wid, &bx, scratch)) return -1;
    ew_raster_to_f32(scratch, 3 * rc->rows * rc->cols, out);
    return 0;
}
