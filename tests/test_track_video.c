/* test_track_video.c - the tracker's video source (sim/video.h): clip pairs are
 * deterministic, the truth sits at the rendered vehicle (intensity centroid), view B is the
 * stated warp of view A, shuffled clips are real permutations, degradations do what they say,
 * and traffic streams report every vehicle in view with consistent pixel coordinates. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sim/video.h"
#include "tests/check.h"

/* Centroid of the pixels above thr within +-16 columns, +-4 rows of (u0, v0), weighted by
 * their value: the vehicle on a clean frame (road 0, off-road 0.25, paint <= 0.5 but thin
 * dashes 0.15, vehicles 1); edge pixels below thr bias it by a fraction of a pixel. */
static void centroid(const float *img, int rows, int cols, float thr, double u0, double v0, double *u, double *v) {
    double su = 0, sv = 0, sw = 0;
    for (int r = (int)v0 - 4; r <= (int)v0 + 4; r++)
        for (int c = (int)u0 - 16; c <= (int)u0 + 16; c++) {
            if (r < 0 || r >= rows || c < 0 || c >= cols) continue;
            double w = img[r * cols + c];
            if (w <= thr) continue;
            su += w * (c + 0.5), sv += w * (r + 0.5), sw += w;
        }
    *u = sw > 0 ? su / sw : -1;
    *v = sw > 0 ? sv / sw : -1;
}

static void test_pairs(void) {
    ew_video_pair_cfg c;
    ew_video_pair_cfg_default(&c);
    ew_video_pairs p, q;
    char err[256];
    CHECK(ew_video_pairs_alloc(&p, 16, &c) == 0 && ew_video_pairs_alloc(&q, 16, &c) == 0, "alloc");
    CHECK(ew_video_pair_make(&c, 42, &p, err, sizeof err) == 0, "%s", err);
    CHECK(ew_video_pair_make(&c, 42, &q, err, sizeof err) == 0, "%s", err);
    size_t F = (size_t)c.rows * c.cols, n = 16 * (size_t)c.frames * F;
    CHECK(memcmp(p.a, q.a, n * sizeof(float)) == 0 && memcmp(p.b, q.b, n * sizeof(float)) == 0, "same seed, same frames");
    CHECK(ew_video_pair_make(&c, 43, &q, err, sizeof err) == 0, "%s", err);
    CHECK(memcmp(p.a, q.a, n * sizeof(float)) != 0, "other seed, other frames");
    double worst_a = 0, worst_b = 0, worst_w = 0;
    int shuffled = 0, moving = 0;
    for (int i = 0; i < 16; i++) {
        int ident = 1;
        for (int t = 0; t < c.frames; t++) {
            const float *fa = p.a + ((size_t)i * c.frames + t) * F, *fb = p.b + ((size_t)i * c.frames + t) * F;
            const float *ta = p.truth_a + (i * c.frames + t) * 2, *tb = p.truth_b + (i * c.frames + t) * 2;
            double u, v;
            centroid(fa, c.rows, c.cols, 0.3f, ta[0], ta[1], &u, &v);
            worst_a = fmax(worst_a, hypot(u - ta[0], v - ta[1]));
            centroid(fb, c.rows, c.cols, 0.3f, tb[0], tb[1], &u, &v);
            worst_b = fmax(worst_b, hypot(u - tb[0], v - tb[1]));
            float wu, wv;
            ew_video_pair_warp(&p, i, ta[0], ta[1], &wu, &wv);
            worst_w = fmax(worst_w, hypot(wu - tb[0], wv - tb[1]));
            CHECK(ta[0] > 0 && ta[0] < c.cols && ta[1] > 0 && ta[1] < c.rows, "vehicle inside view A");
            CHECK(tb[0] > 0 && tb[0] < c.cols && tb[1] > 0 && tb[1] < c.rows, "vehicle inside view B");
            ident &= p.perm[i * c.frames + t] == t;
        }
        CHECK(ident == !p.shuffled[i], "clip %d: shuffled flag %d matches its permutation", i, p.shuffled[i]);
        shuffled += p.shuffled[i];
        moving += p.truth_a[(i * c.frames + c.frames - 1) * 2] != p.truth_a[i * c.frames * 2];
    }
    /* the centroid is the centre up to the dropped faint edge pixels (< 0.25 px); a wrong pixel
     * convention (centres at integers, a flip about cols - 1) would be off by 0.5 px or more */
    CHECK(worst_a < 0.25, "view A truth vs rendered centroid: %.4f px", worst_a);
    CHECK(worst_b < 0.25, "view B truth vs rendered centroid: %.4f px", worst_b);
    CHECK(worst_w < 1e-4, "truth B = warp(truth A): %.2e", worst_w);
    CHECK(shuffled > 2 && shuffled < 14, "about half the clips shuffled: %d of 16", shuffled);
    CHECK(moving == 16, "every vehicle moves");

    /* degradations */
    ew_video_pair_cfg d = c;
    ew_video_degrade_preset(&d.degrade);
    d.degrade.drop_prob = 0.5f;
    CHECK(ew_video_pair_make(&d, 42, &q, err, sizeof err) == 0, "%s", err);
    double diff = 0;
    for (size_t k = 0; k < n; k++) diff += fabs(q.a[k] - p.a[k]);
    CHECK(diff / (double)n > 0.05, "degraded frames differ (mean abs %.3f)", diff / (double)n);
    int repeats = 0;
    for (int i = 0; i < 16; i++)
        for (int t = 1; t < c.frames; t++)
            repeats += !q.shuffled[i] && q.perm[i * c.frames + t] == q.perm[i * c.frames + t - 1];
    CHECK(repeats > 0, "dropped frames repeat the previous time (%d)", repeats);
    ew_video_pairs_free(&p);
    ew_video_pairs_free(&q);
}

static void test_stream(void) {
    ew_video_stream_cfg c;
    ew_video_stream_cfg_default(&c);
    c.warmup_s = 20.0f;
    char err[256];
    ew_video_stream *s = ew_video_stream_create(&c, 5, err, sizeof err);
    CHECK(s != NULL, "%s", err);
    if (!s) return;
    int rows, cols;
    ew_video_stream_size(s, &rows, &cols);
    CHECK(cols == 400 && rows == 28, "size %d x %d", rows, cols);
    float *f = malloc(sizeof(float) * (size_t)rows * cols);
    ew_video_truth tr[256];
    int total = 0, inside = 0;
    double worst = 0;
    for (int k = 0; k < 20; k++) {
        int n = ew_video_stream_next(s, f, tr, 256, err, sizeof err);
        CHECK(n >= 0, "%s", err);
        total += n;
        for (int j = 0; j < n; j++) {
            CHECK(tr[j].u > -tr[j].len && tr[j].u < cols + tr[j].len, "truth overlaps the view");
            if (!tr[j].inside) continue;
            inside++;
            /* centroid of bright pixels in a window around the truth */
            int c0 = (int)tr[j].u - 8, r0 = (int)tr[j].v - 3;
            double su = 0, sv = 0, sw = 0;
            for (int r = r0; r < r0 + 7; r++)
                for (int cc = c0; cc < c0 + 17; cc++) {
                    if (r < 0 || r >= rows || cc < 0 || cc >= cols) continue;
                    double w = f[r * cols + cc] - 0.6;
                    if (w > 0) su += w * (cc + 0.5), sv += w * (r + 0.5), sw += w;
                }
            if (sw > 0) worst = fmax(worst, hypot(su / sw - tr[j].u, sv / sw - tr[j].v));
        }
    }
    CHECK(total > 40 && inside > 20, "vehicles seen: %d (inside %d)", total, inside);
    CHECK(worst < 0.6, "stream truth vs rendered centroid: %.3f px", worst);
    free(f);
    ew_video_stream_free(s);
}

int main(void) {
    test_pairs();
    test_stream();
    return check_done();
}
