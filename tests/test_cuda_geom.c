/* test_cuda_geom.c - the host-side geometry of the CUDA backend (no device needed): how a
 * convolution is cut into chunks of images under a workspace budget and how many blocks a
 * grid-stride launch gets; and the no-device / no-CUDA-build error paths. */
#include <string.h>

#include "models/backend_cuda.h"
#include "tests/check.h"

static ew_conv_desc desc(int n, int c, int h, int w, int oc, int k, int s, int p) {
    ew_conv_desc d = {n, c, h, w, oc, (h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1, k, k, s, s, p, p};
    return d;
}

int main(void) {
    /* the anchor's first encoder conv at batch 64: 60 -> 64 maps, 117x24 -> 58x12 */
    ew_conv_desc a = desc(64, 60, 117, 24, 64, 4, 2, 1);
    CHECK(a.oh == 58 && a.ow == 12, "anchor output %dx%d", a.oh, a.ow);
    ew_cuda_conv_plan p = ew_cuda_conv_plan_for(&a, ew_cuda_defaults().conv_chunk_floats);
    CHECK(p.k == 960 && p.p == 696, "k %zu p %zu", p.k, p.p);
    CHECK(p.images == 64 && p.chunks == 1, "default budget holds the whole batch: %d images, %d chunks", p.images,
          p.chunks);
    CHECK(p.col_floats == 960u * 64u * 696u && p.wide_floats == 64u * 64u * 696u, "sizes");
    /* budgets: every image covered, chunks within budget unless one image is already larger */
    ew_conv_desc ds[] = {a, desc(3, 6, 17, 12, 8, 4, 2, 1), desc(7, 8, 5, 6, 3, 1, 1, 0), desc(1, 2, 4, 4, 2, 4, 1, 0)};
    size_t budgets[] = {1, 100, 5000, 10000, 1000000, (size_t)48 << 20};
    for (size_t i = 0; i < sizeof ds / sizeof ds[0]; i++)
        for (size_t j = 0; j < sizeof budgets / sizeof budgets[0]; j++) {
            ew_cuda_conv_plan q = ew_cuda_conv_plan_for(&ds[i], budgets[j]);
            size_t per = q.p * (q.k + (size_t)ds[i].oc);
            CHECK(q.images >= 1 && q.images <= ds[i].n, "images %d of %d", q.images, ds[i].n);
            CHECK((size_t)q.chunks * q.images >= (size_t)ds[i].n && (size_t)(q.chunks - 1) * q.images < (size_t)ds[i].n,
                  "chunks %d x %d cover %d exactly", q.chunks, q.images, ds[i].n);
            CHECK(q.images == 1 || (size_t)q.images * per <= budgets[j], "within budget");
            CHECK(q.images == ds[i].n || (size_t)(q.images + 1) * per > budgets[j], "largest chunk that fits");
            CHECK(q.col_floats + q.wide_floats == (size_t)q.images * per, "workspace = images x per image");
        }
    /* grid-stride launch sizes */
    CHECK(ew_cuda_grid(0, 256, 100) == 1, "empty launch still one block");
    CHECK(ew_cuda_grid(1, 256, 100) == 1 && ew_cuda_grid(256, 256, 100) == 1 && ew_cuda_grid(257, 256, 100) == 2,
          "ceil");
    CHECK(ew_cuda_grid((size_t)1 << 40, 256, 524280) == 524280, "clamped");
    /* without a device or without CUDA: a one-line reason, no backend */
    char why[256] = "";
    if (ew_cuda_probe(0, why, sizeof why) != 0) {
        CHECK(strchr(why, '\n') == NULL && why[0], "one-line reason: %s", why);
        CHECK(strstr(why, "CUDA") != NULL, "names CUDA: %s", why);
        char err[256] = "";
        CHECK(ew_backend_cuda_create(NULL, err, sizeof err) == NULL && err[0], "create fails: %s", err);
        CHECK(!ew_backend_is_cuda(NULL) && ew_cuda_device_name(NULL)[0] == 0, "not a cuda backend");
        if (!ew_cuda_built()) CHECK(strstr(why, "not built with CUDA") != NULL, "reason: %s", why);
    }
    return check_done();
}
