/* test_fm_eval.c - the world model's evaluation metrics (models/fm_eval.h) and data order
 * (models/fm_data.h): connected components on synthetic rasters, matching, the ego-shift
 * baseline (exact for whole-pixel translations, a consistent rotation, the identity), the
 * constant-velocity baseline (tau = 0 is the raster itself; a moved vehicle moves in the
 * image), and the training data order (a permutation per epoch, a pure function). */
#include <stdlib.h>
#include <string.h>

#include "models/fm_data.h"
#include "models/fm_eval.h"
#include "tests/check.h"

static void fill_rect(float *img, int W, int r0, int r1, int c0, int c1, float v) {
    for (int r = r0; r < r1; r++)
        for (int c = c0; c < c1; c++) img[r * W + c] = v;
}

static void components(void) {
    enum { H = 30, W = 12 };
    float img[H * W];
    int labels[H * W];
    ew_blob bl[8];
    memset(img, 0, sizeof img);
    fill_rect(img, W, 2, 6, 1, 3, 1.0f);    /* 4x2 block: centroid (u, v) = (2, 4) */
    fill_rect(img, W, 10, 13, 5, 8, 0.8f);  /* 3x3 block: centroid (6.5, 11.5) */
    img[20 * W + 10] = 1.0f;                /* diagonal pair: one 8-connected blob */
    img[21 * W + 11] = 1.0f;
    img[25 * W + 0] = 0.4f;                 /* below the threshold */
    float mpp = 0.5f;
    int n = ew_find_blobs(img, H, W, 0.5f, 1, mpp, labels, bl, 8);
    CHECK(n == 3, "three components, got %d", n);
    int found = 0;
    for (int i = 0; i < n; i++) {
        if (bl[i].pixels == 8) {
            CHECK_NEAR(bl[i].u, 2.0, 1e-5);
            CHECK_NEAR(bl[i].v, 4.0, 1e-5);
            CHECK_NEAR(bl[i].f, (H * 0.5 - 4.0) * mpp, 1e-5); /* ahead of the ego centre */
            CHECK_NEAR(bl[i].l, (W * 0.5 - 2.0) * mpp, 1e-5); /* left of the ego (low columns) */
            found |= 1;
        } else if (bl[i].pixels == 9) {
            CHECK_NEAR(bl[i].u, 6.5, 1e-5);
            CHECK_NEAR(bl[i].v, 11.5, 1e-5);
            CHECK_NEAR(bl[i].mass, 9 * 0.8, 1e-4);
            found |= 2;
        } else if (bl[i].pixels == 2) {
            CHECK_NEAR(bl[i].u, 11.0, 1e-5);
            found |= 4;
        }
    }
    CHECK(found == 7, "each blob found with its centroid (mask %d)", found);
    /* min_pixels drops the pair; max_blobs keeps the heaviest */
    CHECK(ew_find_blobs(img, H, W, 0.5f, 3, mpp, labels, bl, 8) == 2, "min_pixels 3: two blobs");
    n = ew_find_blobs(img, H, W, 0.5f, 1, mpp, labels, bl, 1);
    CHECK(n == 1 && bl[0].pixels == 8, "max_blobs 1 keeps the heaviest (mass 8), got %d pixels", bl[0].pixels);
    /* weighted centroid: a 1x2 blob with values 1 and 0.6 (both >= thr) */
    memset(img, 0, sizeof img);
    img[5 * W + 4] = 1.0f;
    img[5 * W + 5] = 0.6f;
    n = ew_find_blobs(img, H, W, 0.5f, 1, mpp, labels, bl, 8);
    CHECK(n == 1, "one blob");
    CHECK_NEAR(bl[0].u, (1.0 * 4.5 + 0.6 * 5.5) / 1.6, 1e-5);
}

static void matching(void) {
    ew_blob t[3] = {{0}}, p[4] = {{0}};
    t[0].f = 0; t[0].l = 0;
    t[1].f = 10; t[1].l = 0;
    t[2].f = -20; t[2].l = 3;
    p[0].f = 9.0f; p[0].l = 0;   /* near t1 (1 m) */
    p[1].f = 0.5f; p[1].l = 0;   /* near t0 (0.5 m) */
    p[2].f = 50; p[2].l = 0;     /* beyond the gate */
    p[3].f = 0.2f; p[3].l = 0;   /* also near t0, closer (0.2 m): wins t0 */
    int match[4];
    double ds;
    int nm = ew_match_points(p, 4, t, 3, 4.0f, match, &ds);
    CHECK(nm == 2, "two matches, got %d", nm);
    CHECK(match[0] == 1 && match[3] == 0 && match[1] == -1 && match[2] == -1, "greedy by distance: %d %d %d %d", match[0],
          match[1], match[2], match[3]);
    CHECK_NEAR(ds, 1.0 + 0.2, 1e-5);
    CHECK(ew_match_points(p, 4, t, 0, 4.0f, match, &ds) == 0 && ds == 0.0, "no truth, no match");
    /* p1 would take t1 at 9.5 m but the gate is 4 m */
    nm = ew_match_points(p + 1, 1, t + 1, 1, 4.0f, match, &ds);
    CHECK(nm == 0 && match[0] == -1, "gated");
}

static void ego_shift(void) {
    enum { C = 3, H = 40, W = 16 };
    static float img[C * H * W], out[C * H * W], back[C * H * W];
    for (int i = 0; i < C * H * W; i++) img[i] = (float)((i * 7919) % 101) / 100.0f;
    float mpp = 0.5f;
    ew_kin_state p0 = {100.0f, 5.0f, 1.0f, 0.0f, 20.0f};
    /* identity */
    ew_ego_shift(img, C, H, W, mpp, &p0, &p0, out);
    CHECK(!memcmp(img, out, sizeof img), "same pose: the frame itself");
    /* ego moved 3 px forward (1.5 m along +x) and 2 px left (1.0 m along +y) */
    ew_kin_state p1 = {101.5f, 6.0f, 1.0f, 0.0f, 20.0f};
    ew_ego_shift(img, C, H, W, mpp, &p0, &p1, out);
    int exact = 1, checked = 0;
    for (int ch = 0; ch < C; ch++)
        for (int r = 0; r < H; r++)
            for (int c = 0; c < W; c++) {
                /* the world point under new pixel (r, c) was at old pixel (r - 3, c - 2) */
                int r0 = r - 3, c0 = c - 2;
                if (r0 < 0 || c0 < 0 || r0 >= H || c0 >= W) continue;
                checked++;
                exact &= out[(ch * H + r) * W + c] == img[(ch * H + r0) * W + c0];
            }
    CHECK(exact && checked == C * (H - 3) * (W - 2), "whole-pixel translation copies pixels exactly (%d checked)", checked);
    /* outside the old view: the nearest edge value */
    CHECK(out[(0 * H + 0) * W + 5] == img[(0 * H + 0) * W + 3], "clamped at the top edge");
    /* ego heading along -x: a 180 degree turn in place flips the image */
    ew_kin_state p2 = {100.0f, 5.0f, -1.0f, 0.0f, 20.0f};
    ew_ego_shift(img, C, H, W, mpp, &p0, &p2, out);
    exact = 1;
    for (int r = 0; r < H; r++)
        for (int c = 0; c < W; c++) exact &= out[r * W + c] == img[(H - 1 - r) * W + (W - 1 - c)];
    CHECK(exact, "180 degree turn: the image rotated by 180 degrees");
    /* a rotation by 90 degrees and back (at a point that keeps everything in view) is exact
     * in the middle of the image for a square image */
    enum { S = 20 };
    static float sq[S * S], r1[S * S], r2[S * S];
    for (int i = 0; i < S * S; i++) sq[i] = (float)((i * 31) % 17) / 16.0f;
    ew_kin_state q0 = {0, 0, 1, 0, 0}, q1 = {0, 0, 0, 1, 0};
    ew_ego_shift(sq, 1, S, S, 1.0f, &q0, &q1, r1);
    ew_ego_shift(r1, 1, S, S, 1.0f, &q1, &q0, r2);
    CHECK(!memcmp(sq, r2, sizeof sq), "90 degrees there and back on a square image: identical");
    (void)back;
}

static void constvel(void) {
    ew_traj_frame *f = calloc(1, sizeof *f);
    char err[200];
    CHECK(ew_road_init_highway(&f->road, 3, 3.7f, 1000.0f, 30.0f, err, (int)sizeof err) == 0, "road: %s", err);
    f->ego = (ew_kin_state){300.0f, 5.55f, 1.0f, 0.0f, 25.0f};
    f->ego_len = 4.8f;
    f->ego_wid = 1.8f;
    f->n = 1;
    f->x[0] = 320.0f;
    f->y[0] = 5.55f;
    f->hx[0] = 1.0f;
    f->hy[0] = 0.0f;
    f->v[0] = 10.0f;
    f->len[0] = 4.5f;
    f->wid[0] = 1.8f;
    ew_raster_cfg rc;
    ew_raster_cfg_default(&rc);
    size_t plane = (size_t)rc.rows * rc.cols;
    uint8_t *scratch = malloc(4 * plane), *ref = malloc(4 * plane);
    float *out = malloc(sizeof(float) * 3 * plane), *reff = malloc(sizeof(float) * 3 * plane);
    CHECK(ew_constvel_frame(&rc, f, f, 0.0f, scratch, out) == 0, "render");
    ew_boxes bx = ew_traj_frame_boxes(f);
    ew_raster_ego(&rc, &f->road, &f->ego, f->ego_len, f->ego_wid, &bx, ref);
    ew_raster_to_f32(ref, (int)(3 * plane), reff);
    CHECK(!memcmp(out, reff, sizeof(float) * 3 * plane), "tau 0: the raster of the frame");
    /* 1 s later the vehicle is 10 m further ahead: its blob moves up by 10 / 0.617 px */
    int *labels = malloc(sizeof(int) * plane);
    ew_blob b0[4], b1[4];
    int n0 = ew_find_blobs(out + plane, rc.rows, rc.cols, 0.5f, 1, rc.m_per_px, labels, b0, 4);
    CHECK(ew_constvel_frame(&rc, f, f, 1.0f, scratch, out) == 0, "render");
    int n1 = ew_find_blobs(out + plane, rc.rows, rc.cols, 0.5f, 1, rc.m_per_px, labels, b1, 4);
    CHECK(n0 == 1 && n1 == 1, "one vehicle each (%d, %d)", n0, n1);
    if (n0 == 1 && n1 == 1) {
        CHECK_NEAR(b0[0].f, 20.0, 0.2);
        CHECK_NEAR(b1[0].f - b0[0].f, 10.0, 0.2);
        CHECK_NEAR(b1[0].l, 0.0, 0.2);
    }
    free(f);
    free(scratch);
    free(ref);
    free(out);
    free(reff);
    free(labels);
}

static void data_order(void) {
    size_t sizes[] = {1, 2, 3, 7, 64, 1000, 4097};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t n = sizes[k];
        char *seen = calloc(n, 1);
        int perm = 1, differs = 0;
        for (int epoch = 0; epoch < 2; epoch++) {
            memset(seen, 0, n);
            for (size_t i = 0; i < n; i++) {
                size_t j = ew_fm_data_order(n, 42, (uint64_t)epoch * n + i);
                if (j >= n || seen[j]) perm = 0;
                else seen[j] = 1;
                if (epoch == 1 && j != ew_fm_data_order(n, 42, i)) differs = 1;
                if (j != ew_fm_data_order(n, 42, (uint64_t)epoch * n + i)) perm = 0; /* pure */
            }
        }
        CHECK(perm, "n = %zu: each epoch is a permutation", n);
        if (n >= 7) CHECK(differs, "n = %zu: epochs are shuffled differently", n);
        free(seen);
    }
    size_t same = 0;
    for (size_t i = 0; i < 1000; i++) same += ew_fm_data_order(1000, 1, i) == ew_fm_data_order(1000, 2, i);
    CHECK(same < 20, "another seed, another order (%zu of 1000 equal)", same);
}

int main(void) {
    components();
    matching();
    ego_shift();
    constvel();
    data_order();
    return check_done();
}
