/* raster.c - anti-aliased ego-centred and fixed-camera rasters (contract in sim/raster.h).
 *
 * Everything is drawn in continuous pixel coordinates (u = column, v = row) through an
 * orthogonal affine map from the road frame (xform). Primitives:
 *  - rect_draw: oriented rectangle, coverage = S_len(s) * S_wid(t) where s, t are the pixel
 *    centre's coordinates along the box axes and S the exact box-filter coverage of a slab
 *    (difference of two half-plane coverages F, see trap_F). Per row only the columns whose
 *    centres lie inside the rectangle grown by the filter radius are visited; axis-aligned
 *    boxes (the common case of the ego view when the ego drives straight) use the separable
 *    exact form (column overlap x row overlap).
 *  - band_draw: thin straight band (markings), walked along its major axis; per line of
 *    pixels the covered length of the line times the band's cross-section overlap at its
 *    middle.
 *  - off-road: strips (constant y intervals, the merged lanes) per row with exact half-plane
 *    coverages, or exact signed-area accumulation of the union's trapezoids.
 * Fast paths, each giving the same bytes as the general code (same float operations, lane by
 * lane): a straight window seen with the rows along the road takes its markings in closed form
 * from ew_road_markings_straight() and draws the dashes of all separators grouped per dash
 * (markings_aligned); axis-aligned boxes in one 8- or 16-column window use byte-vector rows;
 * with AVX2 (checked at run time) the box cull, the rotated-box rows and the rotated off-road
 * rows run 8 lanes wide (the 4-lane loops remain the reference and the portable path).
 */
#include "sim/raster.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim/world.h"

#ifdef __SSE2__
#include <emmintrin.h>
#endif
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

void ew_raster_cfg_default(ew_raster_cfg *c) {
    c->rows = 117;
    c->cols = 24;
    c->m_per_px = 0.617f;
}

static int size_ok(int rows, int cols, float m) {
    return rows >= 1 && rows <= EW_RASTER_MAX_SIDE && cols >= 1 && cols <= EW_RASTER_MAX_SIDE &&
           m >= 0.01f && m <= 100.0f;
}

int ew_raster_cfg_validate(const ew_raster_cfg *c, char *err, int errlen) {
    if (size_ok(c->rows, c->cols, c->m_per_px)) return 0;
    if (err && errlen > 0)
        snprintf(err, (size_t)errlen, "raster: rows and cols must be in [1, %d] and m_per_px in [0.01, 100] (got %d x %d at %g)",
                 EW_RASTER_MAX_SIDE, c->rows, c->cols, (double)c->m_per_px);
    return -1;
}

/* ---- frame ---------------------------------------------------------------------------- */

typedef struct {
    float ox, oy;   /* world position of pixel coordinate (0, 0) */
    float ux, uy;   /* world vector of one column step (length m) */
    float vx, vy;   /* world vector of one row step (length m) */
    float m, inv_m, inv_m2;
    int rows, cols;
} xform;

static void to_px(const xform *t, float x, float y, float *u, float *v) {
    float rx = x - t->ox, ry = y - t->oy;
    *u = (rx * t->ux + ry * t->uy) * t->inv_m2;
    *v = (rx * t->vx + ry * t->vy) * t->inv_m2;
}

static float clamp01(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
/* NaN -> 0 (a float-to-uint8 conversion of NaN is undefined; found by fuzz/fuzz_traj.c) */
static uint8_t to_u8(float c) { return c > 0.0f ? (uint8_t)((c < 1.0f ? c : 1.0f) * 255.0f + 0.5f) : 0; }
static void put_max(uint8_t *p, uint8_t v) { if (v > *p) *p = v; }
static int imin(int a, int b) { return a < b ? a : b; }
/* fminf / fmaxf without the libm call (same results, NaN included: a NaN argument yields the
 * other one) */
static inline float fmin_(float a, float b) { return (b != b || a < b) ? a : b; }
static inline float fmax_(float a, float b) { return (b != b || a > b) ? a : b; }
/* floor / ceil to int of x clamped to [lo, hi] (no libm call: baseline x86-64 has no
 * rounding instruction; the clamp keeps the conversion defined for any input, NaN -> lo). */
static inline int floor_clamp(float x, int lo, int hi) {
    if (!(x > (float)lo)) return lo;
    if (x > (float)hi) return hi;
    int i = (int)x;
    return i - (x < (float)i);
}
static inline int ceil_clamp(float x, int lo, int hi) {
    if (!(x > (float)lo)) return lo;
    if (x > (float)hi) return hi;
    int i = (int)x;
    return i + (x > (float)i);
}

/* Copies row 0 of an H x W plane into rows 1..H-1 (doubling the copied block each time). */
static void fill_rows(uint8_t *img, int H, int W) {
    if (W >= 16 && W <= 32) { /* two (overlapping) 16-byte stores per row */
        uint8_t a[16], b[16];
        memcpy(a, img, 16);
        memcpy(b, img + W - 16, 16);
        for (int r = 1; r < H; r++) {
            memcpy(img + (size_t)r * (size_t)W, a, 16);
            memcpy(img + (size_t)r * (size_t)W + (size_t)W - 16, b, 16);
        }
        return;
    }
    size_t done = 1, total = (size_t)H;
    while (done < total) {
        size_t k = done < total - done ? done : total - done;
        memcpy(img + done * (size_t)W, img, k * (size_t)W);
        done += k;
    }
}

/* ---- exact box-filter coverage of a half-plane ------------------------------------------ */

/* For a half-plane {q : n . (q - centre) <= x} with unit normal n = (nu, nv), the covered
 * fraction of a unit pixel is the CDF of the sum of two uniforms of widths a = max(|nu|,|nv|)
 * and b = min(...): linear with slope 1/a for |x| <= (a-b)/2, quadratic up to |x| = (a+b)/2. */
typedef struct { float h1, h2, inv_a, inv_2ab; } trap;

static trap trap_make(float nu, float nv) {
    float a = fabsf(nu), b = fabsf(nv);
    if (b > a) { float s = a; a = b; b = s; }
    trap T;
    T.h1 = 0.5f * (a - b);
    T.h2 = 0.5f * (a + b);
    T.inv_a = 1.0f / a;
    T.inv_2ab = b > 1e-6f ? 0.5f / (a * b) : 0.0f;
    return T;
}

static inline float trap_F(const trap *T, float x) {
    float xc = x < -T->h2 ? -T->h2 : x;
    xc = xc > T->h2 ? T->h2 : xc;
    float t = fabsf(xc) - T->h1;
    t = t > 0.0f ? t : 0.0f;
    float q = t * t * T->inv_2ab;
    return 0.5f + xc * T->inv_a - copysignf(q, xc);
}

/* The same, 4 pixels at a time (GCC/Clang vector extensions: one SSE register on x86-64,
 * NEON on arm64); bit-identical to trap_F lane by lane. */
typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));

static inline v4f splat(float s) { v4f v = {s, s, s, s}; return v; }
static inline v4f vsel(v4i m, v4f a, v4f b) { return (v4f)((m & (v4i)a) | (~m & (v4i)b)); }
static inline v4f vmin(v4f a, v4f b) { return vsel(a < b, a, b); }
static inline v4f vmax(v4f a, v4f b) { return vsel(a > b, a, b); }

static inline v4f trap_F4(const trap *T, v4f x) {
    v4f h2 = splat(T->h2);
    v4f xc = vmin(vmax(x, -h2), h2);
    v4i sign = (v4i)xc & (int32_t)0x80000000;
    v4f ax = (v4f)((v4i)xc & 0x7fffffff);
    v4f t = vmax(ax - T->h1, splat(0.0f));
    v4f q = t * t * T->inv_2ab;
    return 0.5f + xc * T->inv_a - (v4f)((v4i)q | sign);
}

static const v4f LANE = {0, 1, 2, 3};

/* AVX2 (x86-64, chosen at run time with __builtin_cpu_supports): 8-lane versions of the loops
 * with the same float operations lane by lane; the 4-lane loops stay as the reference and
 * the path of other CPUs (build with -DEW_RASTER_NO_AVX2 to use them everywhere). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(EW_RASTER_NO_AVX2)
#define EW_CULL_AVX2 1
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

__attribute__((target("avx2"))) static inline v8f vsel8(v8i m, v8f a, v8f b) {
    return (v8f)((m & (v8i)a) | (~m & (v8i)b));
}

/* trap_F4 on 8 lanes (the same operations lane by lane), with the trap's numbers broadcast
 * once (trap8_make). */
typedef struct { v8f h1, h2, mh2, inv_a, inv_2ab; } trap8;

__attribute__((target("avx2"))) static inline trap8 trap8_make(const trap *T) {
    v8f z = {0};
    trap8 R = {z + T->h1, z + T->h2, -(z + T->h2), z + T->inv_a, z + T->inv_2ab};
    return R;
}

__attribute__((target("avx2"))) static inline v8f trap_F8(const trap8 *T, v8f x) {
    v8f z = {0};
    v8f xc = vsel8(x > T->mh2, x, T->mh2);
    xc = vsel8(xc < T->h2, xc, T->h2);
    v8i sign = (v8i)xc & (int32_t)0x80000000;
    v8f ax = (v8f)((v8i)xc & 0x7fffffff);
    v8f t = ax - T->h1;
    t = vsel8(t > z, t, z);
    v8f q = t * t * T->inv_2ab;
    return 0.5f + xc * T->inv_a - (v8f)((v8i)q | sign);
}

#endif

typedef uint8_t v16u __attribute__((vector_size(16)));

/* 16 int32 lanes (values in [0, 255]) -> 16 bytes. */
static inline v16u pack16(v4i a, v4i b, v4i c, v4i d) {
#ifdef __SSE2__
    __m128i ab = _mm_packs_epi32((__m128i)a, (__m128i)b), cd = _mm_packs_epi32((__m128i)c, (__m128i)d);
    return (v16u)_mm_packus_epi16(ab, cd);
#else
    v16u r;
    for (int j = 0; j < 4; j++) {
        r[j] = (uint8_t)a[j];
        r[4 + j] = (uint8_t)b[j];
        r[8 + j] = (uint8_t)c[j];
        r[12 + j] = (uint8_t)d[j];
    }
    return r;
#endif
}

typedef uint64_t v2u64 __attribute__((vector_size(16)));

/* n = 8 or 16 bytes in or out of the low part of a vector (8: one movq, no partial stack copy
 * that would stall store forwarding) */
static inline v16u load_n(const uint8_t *p, int n) {
    if (n == 16) {
        v16u x;
        memcpy(&x, p, 16);
        return x;
    }
    uint64_t q;
    memcpy(&q, p, 8);
    v2u64 v = {q, 0};
    return (v16u)v;
}
static inline void store_n(uint8_t *p, v16u x, int n) {
    if (n == 16) {
        memcpy(p, &x, 16);
        return;
    }
    uint64_t q = ((v2u64)x)[0];
    memcpy(p, &q, 8);
}

static inline v16u vmax_u8(v16u x, v16u y) {
#ifdef __SSE2__
    return (v16u)_mm_max_epu8((__m128i)x, (__m128i)y);
#else
    v16u m = (v16u)(x > y);
    return (x & m) | (y & ~m);
#endif
}


/* Rows r0..r1 of a plane of width W: pixel (r, c0 + j) = max(itself, pat[j]) for j < n. Rows of
 * at least 16 pixels take one 16-byte max per row (pat padded with zeros, max with 0 leaves a
 * pixel as it is); else pixel by pixel. */
static inline void rows_max(uint8_t *img, int W, int r0, int r1, int c0, int n, const uint8_t *pat) {
    if (r0 > r1 || n <= 0) return;
    if (W >= 16 && n <= 16 && c0 - (c0 + 16 <= W ? c0 : W - 16) + n <= 16) {
        int s0 = c0 + 16 <= W ? c0 : W - 16;
        v16u P = {0};
        for (int j = 0; j < n; j++) P[c0 - s0 + j] = pat[j];
        uint8_t *p = img + (size_t)r0 * (size_t)W + s0;
        for (int r = r0; r <= r1; r++, p += W) {
            v16u x;
            memcpy(&x, p, 16);
            v16u m = (v16u)(x > P);
            x = (x & m) | (P & ~m);
            memcpy(p, &x, 16);
        }
        return;
    }
    for (int r = r0; r <= r1; r++) {
        uint8_t *row = img + (size_t)r * (size_t)W + c0;
        for (int j = 0; j < n; j++) row[j] = pat[j] > row[j] ? pat[j] : row[j];
    }
}

/* Overlap length of [lo, hi] with [c, c + 1]. */
static inline float overlap1(float lo, float hi, float c) {
    float a = lo > c ? lo : c, b = hi < c + 1.0f ? hi : c + 1.0f;
    return b > a ? b - a : 0.0f;
}

/* overlap1 on 4 lanes (the same operations). */
static inline v4f overlap4(v4f lo, v4f hi, v4f c) {
    v4f c1 = c + 1.0f;
    v4f a = vsel(lo > c, lo, c), b = vsel(hi < c1, hi, c1);
    return vsel(b > a, b - a, splat(0.0f));
}

/* floor_clamp on 4 lanes (NaN -> lo; lanes out of range never use their conversion). */
static inline v4i floor_clamp4(v4f x, int lo, int hi) {
    v4i t = __builtin_convertvector(x, v4i);
    v4i f = t + (v4i)(x < __builtin_convertvector(t, v4f)); /* true = -1 */
    v4i L = {lo, lo, lo, lo}, Hh = {hi, hi, hi, hi};
    v4i gt_lo = (v4i)(x > (float)lo), gt_hi = (v4i)(x > (float)hi);
    f = (gt_hi & Hh) | (~gt_hi & f);
    return (gt_lo & f) | (~gt_lo & L);
}

/* ---- oriented rectangle ----------------------------------------------------------------- */

/* The axis-aligned rectangle [u0, u1] x [v0, v1] over rows r0..r1 of a plane of width W >= S
 * (S = 8 or 16) whose columns c0..(c1 <= c0 + S - 1) all lie in one S-column window: the same
 * values as the scalar loops of rect_draw (column overlaps cu = overlap1 * 255 computed 4 lanes
 * at a time with the same float operations; a column of the window outside [c0, c1] has
 * overlap 0 and value 0, which leaves its pixel as it is). */
static inline void rect_aligned_w(uint8_t *img, int W, float u0, float u1, float v0, float v1, int c0, int r0, int r1,
                                  const int S) {
    int s0 = c0 + S <= W ? c0 : W - S;
    const int nb = S / 4;
    v4f cu[4];
    v4i fi[4] = {{0}, {0}, {0}, {0}};
    for (int k = 0; k < nb; k++) {
        v4f c = LANE + (float)(s0 + 4 * k);
        v4f c1 = c + 1.0f;
        v4f a = vsel(splat(u0) > c, splat(u0), c), b = vsel(splat(u1) < c1, splat(u1), c1);
        v4f ov = vsel(b > a, b - a, splat(0.0f));
        cu[k] = ov * 255.0f;
        fi[k] = __builtin_convertvector(cu[k] + 0.5f, v4i);
    }
    v16u full = pack16(fi[0], fi[1], fi[2], fi[3]);
    /* rows strictly between the first and the last are covered fully (cv == 1) */
    uint8_t *p = img + (size_t)(r0 + 1) * (size_t)W + s0;
    for (int r = r0 + 1; r <= r1 - 1; r++, p += W) store_n(p, vmax_u8(load_n(p, S), full), S);
    for (int r = r0; r <= r1; r += (r == r0 && r1 > r0 + 1) ? r1 - r0 : 1) {
        float cv = overlap1(v0, v1, (float)r);
        v16u val = full;
        if (cv != 1.0f) {
            v4i q[4] = {{0}, {0}, {0}, {0}};
            for (int k = 0; k < nb; k++) q[k] = __builtin_convertvector(cu[k] * cv + 0.5f, v4i);
            val = pack16(q[0], q[1], q[2], q[3]);
        }
        uint8_t *row = img + (size_t)r * (size_t)W + s0;
        store_n(row, vmax_u8(load_n(row, S), val), S);
    }
}

#ifdef EW_CULL_AVX2
/* The rotated-rectangle rows of rect_draw, 8 columns at a time: the lane offsets du are built
 * from the same two 4-column block starts as the 4-lane loop (cb and cb + 4), so every lane
 * sees the same float operations; lanes past the last column c1 are masked to 0 (left as
 * they are by the max). */
__attribute__((target("avx2"))) static void rect_rows_avx2(uint8_t *img, int H, int W, float uc, float vc, float au,
                                                           float av, float hl, float hw, const trap *T) {
    float e = T->h2;
    int wide = hl >= e && hw >= e;
    float A = hl + e, B = hw + e;
    float ext = A * fabsf(av) + B * fabsf(au);
    int r0 = ceil_clamp(vc - ext - 0.5f, 0, H), r1 = floor_clamp(vc + ext - 0.5f, -1, H - 1);
    float iau = 1.0f / au, iav = 1.0f / av;
    const v8f L2 = {0, 1, 2, 3, 0, 1, 2, 3};
    const v16u IDX = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    v8f z = {0}, c255 = z + 255.0f;
    trap8 T8 = trap8_make(T);
    for (int r = r0; r <= r1; r++) {
        float dv = (float)r + 0.5f - vc;
        float l1 = (-A - dv * av) * iau, h1 = (A - dv * av) * iau;
        if (l1 > h1) { float s = l1; l1 = h1; h1 = s; }
        float l2 = (dv * au - B) * iav, h2 = (dv * au + B) * iav;
        if (l2 > h2) { float s = l2; l2 = h2; h2 = s; }
        float lo = l1 > l2 ? l1 : l2, hi = h1 < h2 ? h1 : h2;
        if (!(hi > lo)) continue;
        int c0 = ceil_clamp(uc + lo - 0.5f, 0, W), c1 = floor_clamp(uc + hi - 0.5f, -1, W - 1);
        uint8_t *row = img + (size_t)r * (size_t)W;
        for (int cb = c0; cb <= c1; cb += 8) {
            float sa = (float)cb + 0.5f - uc, sb = (float)(cb + 4) + 0.5f - uc;
            v8f off = {sa, sa, sa, sa, sb, sb, sb, sb};
            v8f du = L2 + off;
            v8f sv = du * au + dv * av, tv = dv * au - du * av;
            v8f cov;
            if (wide) {
                v8f as = (v8f)((v8i)sv & 0x7fffffff), at = (v8f)((v8i)tv & 0x7fffffff);
                cov = trap_F8(&T8, hl - as) * trap_F8(&T8, hw - at);
            } else {
                cov = (trap_F8(&T8, hl - sv) - trap_F8(&T8, -hl - sv)) * (trap_F8(&T8, hw - tv) - trap_F8(&T8, -hw - tv));
            }
            /* vmin(vmax(x, 0), 255) as in the 4-lane loop */
            v8f val = cov * 255.0f + 0.5f; /* min / max: see offroad_rows_avx2 */
            val = (v8f)_mm256_min_ps((__m256)_mm256_max_ps((__m256)val, (__m256)z), (__m256)c255);
            v8i iv = __builtin_convertvector(val, v8i);
            v4i ia = (v4i)_mm256_castsi256_si128((__m256i)iv), ib = (v4i)_mm256_extracti128_si256((__m256i)iv, 1);
            int n = c1 - cb + 1 < 8 ? c1 - cb + 1 : 8;
            v16u b = pack16(ia, ib, ia, ib) & (v16u)(IDX < (uint8_t)n);
            if (cb + 8 <= W) {
                store_n(row + cb, vmax_u8(load_n(row + cb, 8), b), 8);
            } else {
                for (int j = 0; j < n; j++) row[cb + j] = b[j] > row[cb + j] ? b[j] : row[cb + j];
            }
        }
    }
}
#endif

/* Centre (uc, vc), unit axis (au, av) along the length, half extents hl, hw (pixels). */
static void rect_draw(uint8_t *img, int H, int W, float uc, float vc, float au, float av, float hl, float hw) {
    if (!(hl > 0.0f && hw > 0.0f)) return;
    if (au == 0.0f || av == 0.0f) {
        /* axis-aligned: separable and exact */
        float eu = au == 0.0f ? hw : hl, ev = au == 0.0f ? hl : hw;
        float u0 = uc - eu, u1 = uc + eu, v0 = vc - ev, v1 = vc + ev;
        int c0 = floor_clamp(u0, 0, W), c1 = floor_clamp(u1, -1, W - 1);
        int r0 = floor_clamp(v0, 0, H), r1 = floor_clamp(v1, -1, H - 1);
        if (c0 > c1 || r0 > r1) return;
        if (W >= 8 && c1 - c0 < 8) {
            rect_aligned_w(img, W, u0, u1, v0, v1, c0, r0, r1, 8);
            return;
        }
        if (W >= 16 && c1 - c0 < 16) {
            rect_aligned_w(img, W, u0, u1, v0, v1, c0, r0, r1, 16);
            return;
        }
        float cu[EW_RASTER_MAX_SIDE];
        uint8_t full[EW_RASTER_MAX_SIDE]; /* the row values where cv == 1 (interior rows) */
        for (int c = c0; c <= c1; c++) {
            cu[c - c0] = overlap1(u0, u1, (float)c) * 255.0f;
            full[c - c0] = (uint8_t)(cu[c - c0] + 0.5f);
        }
        /* rows strictly between the first and the last are covered fully (cv == 1) */
        rows_max(img, W, r0 + 1, r1 - 1, c0, c1 - c0 + 1, full);
        for (int r = r0; r <= r1; r += (r == r0 && r1 > r0 + 1) ? r1 - r0 : 1) {
            float cv = overlap1(v0, v1, (float)r);
            uint8_t *row = img + (size_t)r * (size_t)W;
            if (cv == 1.0f) {
                for (int c = c0; c <= c1; c++) row[c] = full[c - c0] > row[c] ? full[c - c0] : row[c];
                continue;
            }
            for (int c = c0; c <= c1; c++) {
                uint8_t val = (uint8_t)(cu[c - c0] * cv + 0.5f);
                row[c] = val > row[c] ? val : row[c];
            }
        }
        return;
    }
    trap T = trap_make(au, av);
#ifdef EW_CULL_AVX2
    if (__builtin_cpu_supports("avx2")) {
        rect_rows_avx2(img, H, W, uc, vc, au, av, hl, hw, &T);
        return;
    }
#endif
    float e = T.h2;
    int wide = hl >= e && hw >= e;
    float A = hl + e, B = hw + e;
    float ext = A * fabsf(av) + B * fabsf(au);
    int r0 = ceil_clamp(vc - ext - 0.5f, 0, H), r1 = floor_clamp(vc + ext - 0.5f, -1, H - 1);
    float iau = 1.0f / au, iav = 1.0f / av;
    for (int r = r0; r <= r1; r++) {
        float dv = (float)r + 0.5f - vc;
        /* |du au + dv av| < A  and  |dv au - du av| < B */
        float l1 = (-A - dv * av) * iau, h1 = (A - dv * av) * iau;
        if (l1 > h1) { float s = l1; l1 = h1; h1 = s; }
        float l2 = (dv * au - B) * iav, h2 = (dv * au + B) * iav;
        if (l2 > h2) { float s = l2; l2 = h2; h2 = s; }
        float lo = l1 > l2 ? l1 : l2, hi = h1 < h2 ? h1 : h2;
        if (!(hi > lo)) continue;
        int c0 = ceil_clamp(uc + lo - 0.5f, 0, W), c1 = floor_clamp(uc + hi - 0.5f, -1, W - 1);
        uint8_t *row = img + (size_t)r * (size_t)W;
        for (int cb = c0; cb <= c1; cb += 4) {
            v4f du = LANE + ((float)cb + 0.5f - uc);
            v4f sv = du * au + dv * av, tv = dv * au - du * av;
            v4f cov;
            if (wide) {
                v4f as = (v4f)((v4i)sv & 0x7fffffff), at = (v4f)((v4i)tv & 0x7fffffff);
                cov = trap_F4(&T, hl - as) * trap_F4(&T, hw - at);
            } else {
                cov = (trap_F4(&T, hl - sv) - trap_F4(&T, -hl - sv)) * (trap_F4(&T, hw - tv) - trap_F4(&T, -hw - tv));
            }
            v4f val = vmin(vmax(cov * 255.0f + 0.5f, splat(0.0f)), splat(255.0f));
            v4i iv = __builtin_convertvector(val, v4i);
            int n = imin(4, c1 - cb + 1);
            for (int j = 0; j < n; j++) {
                uint8_t b = (uint8_t)iv[j];
                row[cb + j] = b > row[cb + j] ? b : row[cb + j];
            }
        }
    }
}

/* ---- thin band -------------------------------------------------------------------------- */

/* Band from (p0, q0) to (p1, q1) in (major, minor) coordinates, |p1 - p0| >= |q1 - q0|, of
 * width w; pixel (i, j) at img[i * s_maj + j * s_min] covers [i, i+1] x [j, j+1]. The caps
 * are taken perpendicular to the major axis (an error of at most w sin(angle) / 2).
 * With tmpl != NULL nothing is drawn: a band that covers every line fully with the same
 * values (parallel to the major axis, from before line 0 to past line n_maj, minor stride 1)
 * is max-ed into the one-line template tmpl[0..n_min) and 1 returned; else 0. Drawing those
 * bands line by line gives the same bytes (every line takes the full-line values). */
static int band_major(uint8_t *img, int n_maj, int n_min, size_t s_maj, size_t s_min, float p0, float q0,
                      float p1, float q1, float w, uint8_t *tmpl) {
    if (p1 < p0) {
        float t = p0; p0 = p1; p1 = t;
        t = q0; q0 = q1; q1 = t;
    }
    float dp = p1 - p0, dq = q1 - q0;
    if (!(dp > 0.0f)) return 0;
    if (tmpl && !(dq == 0.0f && s_min == 1 && p0 <= 0.0f && p1 >= (float)n_maj)) return 0;
    float k = dq / dp;
    float hh = 0.5f * w * sqrtf(dp * dp + dq * dq) / dp; /* half width along the minor axis */
    int i0 = floor_clamp(p0, 0, n_maj), i1 = ceil_clamp(p1, 0, n_maj) - 1;
    /* Parallel to the major axis: every line fully inside [p0, p1] gets the same values. */
    uint8_t fv[64];
    int fj0 = 0, fj1 = -1, have_full = 0;
    if (dq == 0.0f) {
        float lo = q0 - hh, hi = q0 + hh;
        fj0 = floor_clamp(lo, 0, n_min);
        fj1 = floor_clamp(hi, -1, n_min - 1);
        if (fj1 - fj0 < 64) {
            have_full = 1;
            for (int j = fj0; j <= fj1; j++) {
                float c = overlap1(lo, hi, (float)j) * 255.0f;
                fv[j - fj0] = (uint8_t)((c < 255.0f ? c : 255.0f) + 0.5f);
            }
        }
    }
    if (tmpl) {
        if (!have_full) return 0;
        for (int j = fj0; j <= fj1; j++) put_max(&tmpl[j], fv[j - fj0]);
        return 1;
    }
    if (have_full && s_min == 1) {
        /* parallel to the major axis, minor stride 1 (a straight marking seen straight ahead):
         * every line has qc = q0 (k = 0), so the same lo, hi and overlaps as the full-line
         * values; the first and last lines scale them by their length exactly as below */
        if (i1 < i0) return 0; /* no line of the image */
        float ov[64];
        float lo = q0 - hh, hi = q0 + hh;
        for (int j = fj0; j <= fj1; j++) ov[j - fj0] = overlap1(lo, hi, (float)j);
        for (int e = 0; e < 2; e++) {
            int i = e ? i1 : i0;
            if (e && i1 == i0) break;
            float a = (float)i > p0 ? (float)i : p0;
            float b = (float)(i + 1) < p1 ? (float)(i + 1) : p1;
            float len = b - a;
            if (!(len > 0.0f)) continue;
            uint8_t *line = img + (size_t)i * s_maj;
            if (len == 1.0f) {
                for (int j = fj0; j <= fj1; j++) put_max(&line[j], fv[j - fj0]);
                continue;
            }
            float l255 = len * 255.0f;
            for (int j = fj0; j <= fj1; j++) {
                float c = ov[j - fj0] * l255;
                put_max(&line[j], (uint8_t)((c < 255.0f ? c : 255.0f) + 0.5f));
            }
        }
        rows_max(img, (int)s_maj, i0 + 1, i1 - 1, fj0, fj1 - fj0 + 1, fv);
        return 0;
    }
    /* Interior lines of a band along the rows (minor stride 1), 4 at a time: a = i, b = i + 1,
     * len = 1 on them (i0 < i < i1), so the loop below computes qc, lo, hi, j0, j1 and the
     * values of the first two columns with the same float operations lane by lane; a line
     * that spans more than two columns finishes its other columns in scalar form. */
    int vlo = i0 + 1, vhi = i0; /* lines done here: vlo..vhi (none yet) */
    if (!have_full && s_min == 1) {
        for (int i = i0 + 1; i + 3 <= i1 - 1; i += 4) {
            v4f a = LANE + (float)i, b = a + 1.0f;
            v4f qc = q0 + (0.5f * (a + b) - p0) * k;
            v4f lo = qc - hh, hi = qc + hh;
            v4i j0 = floor_clamp4(lo, 0, n_min), j1 = floor_clamp4(hi, -1, n_min - 1);
            v4f c0 = __builtin_convertvector(j0, v4f), c1 = c0 + 1.0f;
            v4f ca = overlap4(lo, hi, c0) * 255.0f, cb = overlap4(lo, hi, c1) * 255.0f; /* l255 = 1 * 255 */
            v4i va = __builtin_convertvector(vsel(ca < 255.0f, ca, splat(255.0f)) + 0.5f, v4i);
            v4i vb = __builtin_convertvector(vsel(cb < 255.0f, cb, splat(255.0f)) + 0.5f, v4i);
            for (int l = 0; l < 4; l++) {
                uint8_t *line = img + (size_t)(i + l) * s_maj;
                int ja = j0[l], jb = j1[l];
                if (ja > jb) continue;
                put_max(&line[ja], (uint8_t)va[l]);
                if (ja + 1 > jb) continue;
                put_max(&line[ja + 1], (uint8_t)vb[l]);
                for (int j = ja + 2; j <= jb; j++) {
                    float c = overlap1(lo[l], hi[l], (float)j) * 255.0f;
                    put_max(&line[j], (uint8_t)((c < 255.0f ? c : 255.0f) + 0.5f));
                }
            }
            vhi = i + 3;
        }
    }
    for (int i = i0; i <= i1; i++) {
        if (i == vlo && vhi >= vlo) { /* done by the 4-line loop */
            i = vhi;
            continue;
        }
        if (have_full && i > i0 && i < i1) {
            /* lines strictly between the first and the last: a = i, b = i + 1, len = 1 */
            int ie = i1 - 1;
            if (s_min == 1) {
                rows_max(img, (int)s_maj, i, ie, fj0, fj1 - fj0 + 1, fv);
            } else {
                for (int j = fj0; j <= fj1; j++) {
                    uint8_t v = fv[j - fj0];
                    uint8_t *p = img + (size_t)i * s_maj + (size_t)j * s_min;
                    for (int ii = i; ii <= ie; ii++, p += s_maj) put_max(p, v);
                }
            }
            i = ie;
            continue;
        }
        float a = (float)i > p0 ? (float)i : p0;
        float b = (float)(i + 1) < p1 ? (float)(i + 1) : p1;
        float len = b - a;
        if (!(len > 0.0f)) continue;
        if (have_full && len == 1.0f) {
            uint8_t *line = img + (size_t)i * s_maj;
            for (int j = fj0; j <= fj1; j++) put_max(&line[(size_t)j * s_min], fv[j - fj0]);
            continue;
        }
        float qc = q0 + (0.5f * (a + b) - p0) * k;
        float lo = qc - hh, hi = qc + hh;
        int j0 = floor_clamp(lo, 0, n_min), j1 = floor_clamp(hi, -1, n_min - 1);
        uint8_t *line = img + (size_t)i * s_maj;
        float l255 = len * 255.0f;
        for (int j = j0; j <= j1; j++) {
            float ov = overlap1(lo, hi, (float)j);
            float c = ov * l255;
            uint8_t val = (uint8_t)((c < 255.0f ? c : 255.0f) + 0.5f);
            put_max(&line[(size_t)j * s_min], val);
        }
    }
    return 0;
}

/* Draws the band, or with tmpl != NULL only tries the one-line template (see band_major). */
static int band_draw(uint8_t *img, int H, int W, float u0, float v0, float u1, float v1, float w, uint8_t *tmpl) {
    if (fabsf(v1 - v0) >= fabsf(u1 - u0)) return band_major(img, H, W, (size_t)W, 1, v0, u0, v1, u1, w, tmpl);
    return band_major(img, W, H, 1, (size_t)W, u0, v0, u1, v1, w, tmpl);
}

/* ---- the view ----------------------------------------------------------------------------- */

/* World bounding box of the image grown by `margin` pixels. */
static void world_bounds(const xform *t, float margin, float *x0, float *x1, float *y0, float *y1) {
    float lo_x = INFINITY, hi_x = -INFINITY, lo_y = INFINITY, hi_y = -INFINITY;
    for (int k = 0; k < 4; k++) {
        float u = (k & 1) ? (float)t->cols + margin : -margin;
        float v = (k & 2) ? (float)t->rows + margin : -margin;
        float x = t->ox + u * t->ux + v * t->vx, y = t->oy + u * t->uy + v * t->vy;
        lo_x = x < lo_x ? x : lo_x; hi_x = x > hi_x ? x : hi_x;
        lo_y = y < lo_y ? y : lo_y; hi_y = y > hi_y ? y : hi_y;
    }
    *x0 = lo_x; *x1 = hi_x; *y0 = lo_y; *y1 = hi_y;
}

/* ---- markings ------------------------------------------------------------------------------ */

/* Joins consecutive collinear abutting segments (ew_road_markings splits edges at break
 * points; drawing the pieces separately with max would leave a seam). */
static int merge_segments(ew_segment *s, int n) {
    int m = 0;
    for (int i = 0; i < n; i++) {
        /* (the endpoint test first: it fails for almost every pair, and the norms are only
         * needed when it holds; the result is the same as testing everything) */
        if (m > 0 && fabsf(s[m - 1].b.x - s[i].a.x) < 1e-4f && fabsf(s[m - 1].b.y - s[i].a.y) < 1e-4f) {
            ew_segment *p = &s[m - 1];
            ew_vec2 d0 = ew_v2_sub(p->b, p->a), d1 = ew_v2_sub(s[i].b, s[i].a);
            float l0 = ew_v2_norm(d0), l1 = ew_v2_norm(d1);
            if (p->width == s[i].width && fabsf(p->b.x - s[i].a.x) < 1e-4f && fabsf(p->b.y - s[i].a.y) < 1e-4f &&
                l0 > 0.0f && l1 > 0.0f && fabsf(ew_v2_cross(d0, d1)) <= 1e-6f * l0 * l1 && ew_v2_dot(d0, d1) > 0.0f) {
                p->b = s[i].b;
                continue;
            }
        }
        s[m++] = s[i];
    }
    return m;
}

/* Straight bands along the rows that do not span the whole image (the dashes of the lane
 * separators seen straight ahead) are drawn by band_major's full-line path: per line the
 * column overlaps ov[j] of the band's cross-section, scaled by the line's covered length
 * (the end lines) or not (the interior lines). The dashes of different separators of a
 * straight road cover exactly the same rows (same p0, p1: the dash positions are anchored on
 * the road), so they are gathered into one group per (p0, p1) and drawn once: the value of a
 * pixel, round(min(ov * len * 255, 255)), is monotone in ov, so the max over the members is
 * the value of the max of their overlaps. Same bytes as drawing them one by one. */
#define VG_MAX 32
#define VG_COLS 64
typedef struct { float p0, p1; int c0, c1; float ov[VG_COLS]; uint8_t fv[VG_COLS]; } vgroup;

/* Adds the band to its group when band_major would draw it by the full-line path (or draw
 * nothing) and returns 1; else 0 (draw it with band_draw). Needs cols <= VG_COLS. */
static int vgroup_add(vgroup *g, int *ng, int H, int W, float u0, float v0, float u1, float v1, float w) {
    if (!(fabsf(v1 - v0) >= fabsf(u1 - u0))) return 0; /* band_draw's choice of the major axis */
    float p0 = v0, q0 = u0, p1 = v1, q1 = u1;
    if (p1 < p0) {
        float s = p0; p0 = p1; p1 = s;
        s = q0; q0 = q1; q1 = s;
    }
    float dp = p1 - p0, dq = q1 - q0;
    if (!(dp > 0.0f) || dq != 0.0f) return 0;
    float hh = 0.5f * w * sqrtf(dp * dp + dq * dq) / dp;
    float lo = q0 - hh, hi = q0 + hh;
    int fj0 = floor_clamp(lo, 0, W), fj1 = floor_clamp(hi, -1, W - 1);
    if (!(fj1 - fj0 < 64)) return 0;
    int i0 = floor_clamp(p0, 0, H), i1 = ceil_clamp(p1, 0, H) - 1;
    if (i1 < i0 || fj1 < fj0) return 1; /* no pixel of the image */
    int k = 0;
    while (k < *ng && !(g[k].p0 == p0 && g[k].p1 == p1)) k++;
    if (k == *ng) {
        if (k == VG_MAX) return 0;
        g[k].p0 = p0;
        g[k].p1 = p1;
        g[k].c0 = fj0;
        g[k].c1 = fj1;
        memset(g[k].ov, 0, sizeof(float) * (size_t)W);
        memset(g[k].fv, 0, (size_t)W);
        (*ng)++;
    }
    vgroup *G = &g[k];
    G->c0 = fj0 < G->c0 ? fj0 : G->c0;
    G->c1 = fj1 > G->c1 ? fj1 : G->c1;
    for (int j = fj0; j <= fj1; j++) {
        float ov = overlap1(lo, hi, (float)j);
        float c = ov * 255.0f;
        uint8_t f = (uint8_t)((c < 255.0f ? c : 255.0f) + 0.5f);
        G->ov[j] = ov > G->ov[j] ? ov : G->ov[j];
        G->fv[j] = f > G->fv[j] ? f : G->fv[j];
    }
    return 1;
}

/* (uint8_t)((c < 255 ? c : 255) + 0.5) of c = ov[j] * l255, 16 values (bit-identical to the
 * scalar expression lane by lane: the same float operations; the conversion truncates). */
static inline v16u scale16(const float *ov, float l255) {
    v4i q[4];
    for (int k = 0; k < 4; k++) {
        v4f o;
        memcpy(&o, ov + 4 * k, sizeof o);
        v4f c = o * l255;
        c = vsel(c < 255.0f, c, splat(255.0f)) + 0.5f;
        q[k] = __builtin_convertvector(c, v4i);
    }
    return pack16(q[0], q[1], q[2], q[3]);
}

/* Draws rows p0..p1 of a group with column overlaps ov and full-line values fv (zero outside
 * columns c0..c1) exactly as band_major draws each member (end lines, then interior lines). */
static void vdash_draw(float p0, float p1, int c0, int c1, const float *ov, const uint8_t *fv, uint8_t *img, int H, int W) {
    int i0 = floor_clamp(p0, 0, H), i1 = ceil_clamp(p1, 0, H) - 1;
    /* 16-byte path: ov and fv are zero outside [c0, c1] (a zero value leaves a pixel as it is) */
    int vec = W >= 16 && c1 - c0 < 16;
    int s0 = c0 + 16 <= W ? c0 : W - 16;
    v16u F = {0};
    if (vec) memcpy(&F, fv + s0, 16);
    for (int e = 0; e < 2; e++) {
        int i = e ? i1 : i0;
        if (e && i1 == i0) break;
        float a = (float)i > p0 ? (float)i : p0;
        float b = (float)(i + 1) < p1 ? (float)(i + 1) : p1;
        float len = b - a;
        if (!(len > 0.0f)) continue;
        uint8_t *line = img + (size_t)i * (size_t)W;
        if (vec) {
            v16u x, v = len == 1.0f ? F : scale16(ov + s0, len * 255.0f);
            memcpy(&x, line + s0, 16);
            x = vmax_u8(x, v);
            memcpy(line + s0, &x, 16);
            continue;
        }
        if (len == 1.0f) {
            for (int j = c0; j <= c1; j++) put_max(&line[j], fv[j]);
            continue;
        }
        float l255 = len * 255.0f;
        for (int j = c0; j <= c1; j++) {
            float c = ov[j] * l255;
            put_max(&line[j], (uint8_t)((c < 255.0f ? c : 255.0f) + 0.5f));
        }
    }
    if (vec) {
        uint8_t *p = img + (size_t)(i0 + 1) * (size_t)W + s0;
        for (int r = i0 + 1; r <= i1 - 1; r++, p += W) {
            v16u x;
            memcpy(&x, p, 16);
            x = vmax_u8(x, F);
            memcpy(p, &x, 16);
        }
        return;
    }
    rows_max(img, W, i0 + 1, i1 - 1, c0, c1 - c0 + 1, fv + c0);
}

static void vgroup_draw(const vgroup *G, uint8_t *img, int H, int W) {
    vdash_draw(G->p0, G->p1, G->c0, G->c1, G->ov, G->fv, img, H, W);
}

/* The markings of a straight window seen with the rows along the road (ego heading (+-1, 0):
 * ux == 0 and vy == 0) straight from ew_road_markings_straight(): the same segments as
 * ew_road_markings() (none joins another, so merge_segments leaves them as they are), drawn
 * the same way, without building the segment list. A dash's rows depend only on its x (v is
 * rx * vx + ry * vy with vy = +-0: the same value for every finite y), so dash n of every
 * dashed line falls into group n; a line's column u is the same at every x likewise.
 * Returns 1 when it drew the plane, 0 (plane untouched) when the case does not apply. */
static int markings_aligned(const xform *t, const ew_road *road, const float *wb, uint8_t *img) {
    int H = t->rows, W = t->cols;
    if (!(t->ux == 0.0f && t->vy == 0.0f && W <= VG_COLS)) return 0;
    if (!(t->ox - t->ox == 0.0f && t->oy - t->oy == 0.0f)) return 0; /* finite */
    float x0 = wb[0], x1 = wb[1], y0 = wb[2], y1 = wb[3];
    float sy[2 * EW_MAX_LANES], dyl[2 * EW_MAX_LANES];
    int ns, nd;
    if (!ew_road_markings_straight(road, x0, x1, sy, &ns, dyl, &nd)) return 0;
    float mw = road->marking_width, hw = 0.5f * mw, w = mw * t->inv_m;
    uint8_t tmpl[VG_COLS];
    memset(tmpl, 0, (size_t)W);
    for (int i = 0; i < ns; i++) {
        float y = sy[i];
        if (!(y - y == 0.0f)) return 0;
        if (fmin_(y, y) - hw > y1 || fmax_(y, y) + hw < y0) continue;
        float u0, v0, u1, v1;
        to_px(t, x0, y, &u0, &v0);
        to_px(t, x1, y, &u1, &v1);
        if (!band_draw(NULL, H, W, u0, v0, u1, v1, w, tmpl)) return 0; /* not across the view */
    }
    /* the dashed lines in view and their columns */
    float qu[2 * EW_MAX_LANES];
    int nl = 0;
    for (int i = 0; i < nd; i++) {
        float y = dyl[i];
        if (!(y - y == 0.0f)) return 0;
        if (fmin_(y, y) - hw > y1 || fmax_(y, y) + hw < y0) continue;
        float v;
        to_px(t, x0, y, &qu[nl], &v);
        dyl[nl++] = y;
    }
    /* Per dash: its rows p0, p1 and the columns of all dashed lines, which depend on the dash
     * only through its half width hh (a function of p1 - p0): dashes with the same hh share
     * one column profile (the same inputs give the same values). */
    typedef struct { int c0, c1; float hh, ov[VG_COLS]; uint8_t fv[VG_COLS]; } vprof;
    vprof pr[4];
    int npr = 0, next = 0;
    float da[VG_MAX], db[VG_MAX];
    int n = nl > 0 ? ew_road_dashes(road, x0, x1, da, db, VG_MAX) : 0;
    if (n > VG_MAX) return 0;
    memcpy(img, tmpl, (size_t)W);
    fill_rows(img, H, W);
    for (int k = 0; k < n; k++) {
        float ua, p0, ub, p1;
        to_px(t, da[k], dyl[0], &ua, &p0);
        to_px(t, db[k], dyl[0], &ub, &p1);
        if (p1 < p0) { float s = p0; p0 = p1; p1 = s; }
        float dp = p1 - p0, dq = 0.0f;
        if (!(dp > 0.0f)) continue; /* band_major draws nothing */
        int i0 = floor_clamp(p0, 0, H), i1 = ceil_clamp(p1, 0, H) - 1;
        if (i1 < i0) continue;
        float hh = 0.5f * w * sqrtf(dp * dp + dq * dq) / dp;
        int q = 0;
        while (q < npr && !(pr[q].hh == hh)) q++;
        if (q == npr) { /* a new profile (in the slots round robin; each dash is drawn at once) */
            if (npr < 4) npr++;
            else q = next;
            next = (q + 1) & 3;
            vprof *P = &pr[q];
            P->hh = hh;
            P->c0 = W;
            P->c1 = -1;
            memset(P->ov, 0, sizeof(float) * (size_t)W);
            memset(P->fv, 0, (size_t)W);
            for (int l = 0; l < nl; l++) {
                float lo = qu[l] - hh, hi = qu[l] + hh;
                int fj0 = floor_clamp(lo, 0, W), fj1 = floor_clamp(hi, -1, W - 1);
                if (fj1 < fj0) continue;
                P->c0 = fj0 < P->c0 ? fj0 : P->c0;
                P->c1 = fj1 > P->c1 ? fj1 : P->c1;
                for (int j = fj0; j <= fj1; j++) {
                    float ov = overlap1(lo, hi, (float)j);
                    float c = ov * 255.0f;
                    uint8_t f = (uint8_t)((c < 255.0f ? c : 255.0f) + 0.5f);
                    P->ov[j] = ov > P->ov[j] ? ov : P->ov[j];
                    P->fv[j] = f > P->fv[j] ? f : P->fv[j];
                }
            }
        }
        const vprof *P = &pr[q];
        if (P->c1 >= P->c0) vdash_draw(p0, p1, P->c0, P->c1, P->ov, P->fv, img, H, W);
    }
    return 1;
}

static int draw_markings(const xform *t, const ew_road *road, const float *wb, uint8_t *img) {
    if (markings_aligned(t, road, wb, img)) return 0;
    float x0 = wb[0], x1 = wb[1], y0 = wb[2], y1 = wb[3];
    ew_segment stack[EW_RASTER_SEG_STACK];
    ew_segment *seg = stack;
    int n = ew_road_markings(road, x0, x1, seg, EW_RASTER_SEG_STACK);
    if (n > EW_RASTER_SEG_STACK) {
        seg = malloc((size_t)n * sizeof *seg);
        if (!seg) return -1;
        n = ew_road_markings(road, x0, x1, seg, n);
    }
    n = merge_segments(seg, n);
    /* Pass 1: bands that give every row the same values (lines along the view's rows, e.g. the
     * solid edges of a straight road seen straight ahead) go into one template row, which
     * then initialises the plane; the others are kept (compacted in place) for pass 2. */
    uint8_t tmpl[EW_RASTER_MAX_SIDE];
    memset(tmpl, 0, (size_t)t->cols);
    float pc[64][5]; /* pixel coordinates and width of the first kept bands */
    int m = 0;
    vgroup vg[VG_MAX];
    int nvg = 0, grouping = t->cols <= VG_COLS;
    for (int i = 0; i < n; i++) {
        const ew_segment *s = &seg[i];
        float hw = 0.5f * s->width;
        if (fmin_(s->a.y, s->b.y) - hw > y1 || fmax_(s->a.y, s->b.y) + hw < y0) continue;
        float u0, v0, u1, v1, w = s->width * t->inv_m;
        to_px(t, s->a.x, s->a.y, &u0, &v0);
        to_px(t, s->b.x, s->b.y, &u1, &v1);
        if (band_draw(NULL, t->rows, t->cols, u0, v0, u1, v1, w, tmpl)) continue;
        if (grouping && vgroup_add(vg, &nvg, t->rows, t->cols, u0, v0, u1, v1, w)) continue;
        if (m < 64) {
            pc[m][0] = u0; pc[m][1] = v0; pc[m][2] = u1; pc[m][3] = v1; pc[m][4] = w;
        }
        seg[m++] = *s;
    }
    memcpy(img, tmpl, (size_t)t->cols);
    fill_rows(img, t->rows, t->cols);
    for (int k = 0; k < nvg; k++) vgroup_draw(&vg[k], img, t->rows, t->cols);
    for (int i = 0; i < m; i++) {
        if (i < 64) {
            band_draw(img, t->rows, t->cols, pc[i][0], pc[i][1], pc[i][2], pc[i][3], pc[i][4], NULL);
            continue;
        }
        const ew_segment *s = &seg[i];
        float u0, v0, u1, v1;
        to_px(t, s->a.x, s->a.y, &u0, &v0);
        to_px(t, s->b.x, s->b.y, &u1, &v1);
        band_draw(img, t->rows, t->cols, u0, v0, u1, v1, s->width * t->inv_m, NULL);
    }
    if (seg != stack) free(seg);
    return 0;
}

/* ---- vehicles ------------------------------------------------------------------------------ */

static void draw_box(const xform *t, uint8_t *img, float x, float y, float hx, float hy, float len, float wid) {
    float uc, vc;
    to_px(t, x, y, &uc, &vc);
    float hl = 0.5f * len * t->inv_m, hw = 0.5f * wid * t->inv_m;
    float rad = hl + hw + 1.0f;
    if (uc + rad < 0.0f || uc - rad > (float)t->cols || vc + rad < 0.0f || vc - rad > (float)t->rows) return;
    float au = (hx * t->ux + hy * t->uy) * t->inv_m, av = (hx * t->vx + hy * t->vy) * t->inv_m;
    float n = sqrtf(au * au + av * av);
    if (!(n > 0.0f)) return;
    if (n != 1.0f) { au /= n; av /= n; }
    rect_draw(img, t->rows, t->cols, uc, vc, au, av, hl, hw);
}

#ifdef EW_CULL_AVX2

/* The pre-cull of draw_boxes for boxes i .. i+31 with AVX2 (8 lanes): bit j set when box i + j
 * passes. The same float operations as the 4-lane and scalar loops, lane by lane. */
__attribute__((target("avx2"))) static uint32_t cull32_avx2(const ew_boxes *b, int i, const float *wb) {
    v8f X0 = {0}, X1 = {0}, Y0 = {0}, Y1 = {0};
    X0 += wb[0]; X1 += wb[1]; Y0 += wb[2]; Y1 += wb[3];
    uint32_t m = 0;
    for (int k = 0; k < 4; k++) {
        v8f x, y, l, w;
        memcpy(&x, b->x + i + 8 * k, sizeof x);
        memcpy(&y, b->y + i + 8 * k, sizeof y);
        memcpy(&l, b->len + i + 8 * k, sizeof l);
        memcpy(&w, b->wid + i + 8 * k, sizeof w);
        v8f r = 0.5f * (l + w);
        v8i in = (x + r >= X0) & (x - r <= X1) & (y + r >= Y0) & (y - r <= Y1);
        m |= (uint32_t)__builtin_ia32_movmskps256((v8f)in) << (8 * k);
    }
    return m;
}
#endif

static void draw_boxes(const xform *t, const ew_boxes *b, const float *wb, uint8_t *img) {
    if (!b) return;
    /* cheap world-space pre-cull: a box whose bounding circle misses the image's world
     * bounding box (grown by 2 pixels) draws nothing */
    float x0 = wb[0], x1 = wb[1], y0 = wb[2], y1 = wb[3];
    int i = 0;
#ifdef EW_CULL_AVX2
    if (b->n >= 32 && __builtin_cpu_supports("avx2")) {
        for (; i + 32 <= b->n; i += 32) {
            uint32_t m = cull32_avx2(b, i, wb);
            while (m) {
                int j = i + __builtin_ctz(m);
                m &= m - 1;
                draw_box(t, img, b->x[j], b->y[j], b->hx[j], b->hy[j], b->len[j], b->wid[j]);
            }
        }
    }
#endif
    /* 4 boxes at a time (the same float tests as the scalar loop below, lane by lane) */
    v4f X0 = splat(x0), X1 = splat(x1), Y0 = splat(y0), Y1 = splat(y1);
    for (; i + 4 <= b->n; i += 4) {
        v4f x, y, l, w;
        memcpy(&x, b->x + i, sizeof x);
        memcpy(&y, b->y + i, sizeof y);
        memcpy(&l, b->len + i, sizeof l);
        memcpy(&w, b->wid + i, sizeof w);
        v4f r = 0.5f * (l + w);
        v4i in = (x + r >= X0) & (x - r <= X1) & (y + r >= Y0) & (y - r <= Y1);
        if (!(in[0] | in[1] | in[2] | in[3])) continue;
        for (int j = 0; j < 4; j++)
            if (in[j]) draw_box(t, img, b->x[i + j], b->y[i + j], b->hx[i + j], b->hy[i + j], b->len[i + j], b->wid[i + j]);
    }
    for (; i < b->n; i++) {
        float r = 0.5f * (b->len[i] + b->wid[i]);
        float x = b->x[i], y = b->y[i];
        if (!(x + r >= x0 && x - r <= x1 && y + r >= y0 && y - r <= y1)) continue;
        draw_box(t, img, x, y, b->hx[i], b->hy[i], b->len[i], b->wid[i]);
    }
}

/* ---- off-road ------------------------------------------------------------------------------ */

/* Lane edges at x with the taper formula extended continuously to the lane's end points. */
static void lane_edges(const ew_lane *l, float x, float *lo, float *hi) {
    float f = 1.0f;
    if (l->taper_in > 0.0f && x < l->x_start + l->taper_in) f = (x - l->x_start) / l->taper_in;
    if (l->taper_out > 0.0f && x > l->x_end - l->taper_out) {
        float g = (l->x_end - x) / l->taper_out;
        f = g < f ? g : f;
    }
    f = clamp01(f);
    float w = l->width, y0 = l->y_right;
    if (l->merge_side > 0) { *lo = y0 + w * (1.0f - f); *hi = y0 + w; }
    else if (l->merge_side < 0) { *lo = y0; *hi = y0 + w * f; }
    else { *lo = y0 + 0.5f * w * (1.0f - f); *hi = y0 + w - 0.5f * w * (1.0f - f); }
}

typedef struct { float lo, hi; } ival;

static int cmp_ival(const void *a, const void *b) {
    float x = ((const ival *)a)->lo, y = ((const ival *)b)->lo;
    return (x > y) - (x < y);
}

/* Lanes present at x (full-width strips), merged into disjoint intervals. */
static int merged_strips(const ew_road *r, float x, ival *out) {
    ival v[EW_MAX_LANES];
    int n = 0;
    for (int i = 0; i < r->n_lanes; i++) {
        const ew_lane *l = &r->lanes[i];
        if (x < l->x_start || x >= l->x_end) continue;
        lane_edges(l, x, &v[n].lo, &v[n].hi);
        if (v[n].hi > v[n].lo) n++;
    }
    for (int i = 1; i < n; i++) { /* stable insertion sort by lo (a dozen lanes at most) */
        ival x = v[i];
        int j = i;
        for (; j > 0 && cmp_ival(&v[j - 1], &x) > 0; j--) v[j] = v[j - 1];
        v[j] = x;
    }
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (m > 0 && v[i].lo <= out[m - 1].hi + 1e-4f) {
            if (v[i].hi > out[m - 1].hi) out[m - 1].hi = v[i].hi;
        } else {
            out[m++] = v[i];
        }
    }
    return m;
}

/* 1 when every lane is either absent on all of [x0, x1] or at full width on all of it. */
static int straight_window(const ew_road *r, float x0, float x1) {
    for (int i = 0; i < r->n_lanes; i++) {
        const ew_lane *l = &r->lanes[i];
        if (x1 < l->x_start || x0 >= l->x_end) continue;
        if (!(x0 >= l->x_start + l->taper_in && x1 < l->x_end - l->taper_out)) return 0;
    }
    return 1;
}

/* Strips constant along x: per row, exact half-plane coverages at the strip edges, spans of
 * 0 and 255 elsewhere. Everything in pixel units: the world y at pixel centre (c, r) is
 * (Y0 + c gc + r gr) * m. */

#ifdef EW_CULL_AVX2
/* Every pixel of the off-road plane of offroad_strips (not flat) from the coverage formula, 8
 * columns at a time: the value the window loops compute where they compute it, and where
 * they write 0 or 255 the formula gives exactly C1 - C0 (all clamped terms; the caller checks
 * that it rounds to 255) or 0. */
__attribute__((target("avx2"))) static void offroad_rows_avx2(uint8_t *img, int H, int W, const trap *T, float gc,
                                                              float gr, float Y0, const float *lo, const float *hi,
                                                              int ns) {
    const v8f L8 = {0, 1, 2, 3, 4, 5, 6, 7};
    v8f z = {0}, c255 = z + 255.0f, h2 = z + T->h2, mh2 = -h2;
    /* the column part (L8 + cs) * gc of yc does not depend on the row: once per block */
    v8f P[8];
    int np = W <= 64 ? (W + 7) / 8 : 0;
    for (int q = 0; q < np; q++) P[q] = (L8 + (float)(8 * q)) * gc;
    /* a term whose 8 arguments are all clamped (beyond +-h2) is the constant F(+-h2): taken
     * without evaluating it (trap_F8 clamps to exactly +-h2 there, so the values are equal) */
    trap8 T8 = trap8_make(T);
    v8f C1 = trap_F8(&T8, h2), C0 = trap_F8(&T8, mh2);
#define EW_TERM8(x) (__builtin_ia32_movmskps256((v8f)((x) >= h2)) == 0xff   ? C1 \
                     : __builtin_ia32_movmskps256((v8f)((x) <= mh2)) == 0xff ? C0 \
                                                                            : trap_F8(&T8, (x)))
    for (int r = 0; r < H; r++) {
        uint8_t *row = img + (size_t)r * (size_t)W;
        float Yr = Y0 + (float)r * gr;
        for (int cs = 0; cs < W; cs += 8) {
            v8f yc = (np ? P[cs / 8] : (L8 + (float)cs) * gc) + Yr, cov = z;
            for (int j = 0; j < ns; j++) {
                v8f xh = hi[j] - yc, xl = lo[j] - yc;
                cov += EW_TERM8(xh) - EW_TERM8(xl);
            }
            /* vsel8(val > 0, val, 0) then vsel8(val < 255, val, 255): maxps / minps return
             * their second operand on NaN and on equal values, which is the same */
            v8f val = cov * 255.0f + 0.5f;
            val = (v8f)_mm256_min_ps((__m256)_mm256_max_ps((__m256)val, (__m256)z), (__m256)c255);
            v8i iv = 255 - __builtin_convertvector(val, v8i);
            v4i ia = (v4i)_mm256_castsi256_si128((__m256i)iv), ib = (v4i)_mm256_extracti128_si256((__m256i)iv, 1);
            v16u b = pack16(ia, ib, ia, ib);
            int n = W - cs < 8 ? W - cs : 8;
            if (n == 8) store_n(row + cs, b, 8);
            else memcpy(row + cs, &b, (size_t)n);
        }
    }
#undef EW_TERM8
}
#endif

static void offroad_strips(const xform *t, const ival *st, int ns, uint8_t *img) {
    int H = t->rows, W = t->cols;
    float im = t->inv_m;
    float gc = t->uy * im, gr = t->vy * im;
    trap T = trap_make(gc, gr); /* unit normal of the y field in pixel space */
    float e = T.h2;             /* beyond this distance from an edge a pixel is 0 or 1 */
    float Y0 = (t->oy + 0.5f * t->uy + 0.5f * t->vy) * im;
    float lo[EW_MAX_LANES], hi[EW_MAX_LANES];
    for (int k = 0; k < ns; k++) {
        lo[k] = st[k].lo * im;
        hi[k] = st[k].hi * im;
    }
    int flat = fabsf(gc) < 1e-6f;
    float igc = flat ? 0.0f : 1.0f / gc;
#ifdef EW_CULL_AVX2
    if (!flat && gr != 0.0f && __builtin_cpu_supports("avx2")) {
        /* a fully covered pixel (all terms clamped) must round to 255 as the loops below
         * write it; C1 - C0 is within a few ulp of 1, so this holds for any trap */
        float c1 = trap_F(&T, T.h2), c0 = trap_F(&T, -T.h2);
        float v = (c1 - c0) * 255.0f + 0.5f;
        if (v >= 255.0f && 0.0f * 255.0f + 0.5f < 1.0f) {
            offroad_rows_avx2(img, H, W, &T, gc, gr, Y0, lo, hi, ns);
            return;
        }
    }
#endif
    for (int r = 0; r < H; r++) {
        uint8_t *row = img + (size_t)r * (size_t)W;
        if (r > 0 && gr == 0.0f) { /* rows aligned with y = const: all identical to row 0 */
            fill_rows(img, H, W);
            return;
        }
        float Yr = Y0 + (float)r * gr;
        if (flat) {
            float cov = 0.0f;
            for (int k = 0; k < ns; k++) cov += trap_F(&T, hi[k] - Yr) - trap_F(&T, lo[k] - Yr);
            memset(row, 255 - to_u8(cov), (size_t)W);
            continue;
        }
        memset(row, 255, (size_t)W);
        for (int k = 0; k < ns; k++) { /* fully inside: y in [lo + e, hi - e] */
            float ca = (lo[k] + e - Yr) * igc, cb = (hi[k] - e - Yr) * igc;
            if (ca > cb) { float s = ca; ca = cb; cb = s; }
            int c0 = ceil_clamp(ca, 0, W), c1 = floor_clamp(cb, -1, W - 1);
            if (c1 >= c0) memset(row + c0, 0, (size_t)(c1 - c0 + 1));
        }
        for (int k = 0; k < 2 * ns; k++) { /* partial columns near each edge */
            float Y = (k & 1) ? hi[k >> 1] : lo[k >> 1];
            float ca = (Y - e - Yr) * igc, cb = (Y + e - Yr) * igc;
            if (ca > cb) { float s = ca; ca = cb; cb = s; }
            int c0 = floor_clamp(ca, 0, W), c1 = ceil_clamp(cb, -1, W - 1);
            for (int cs = c0; cs <= c1; cs += 4) {
                v4f yc = (LANE + (float)cs) * gc + Yr, cov = splat(0.0f);
                for (int j = 0; j < ns; j++) cov += trap_F4(&T, hi[j] - yc) - trap_F4(&T, lo[j] - yc);
                v4f val = vmin(vmax(cov * 255.0f + 0.5f, splat(0.0f)), splat(255.0f));
                v4i iv = __builtin_convertvector(val, v4i);
                int n = imin(4, c1 - cs + 1);
                for (int j = 0; j < n; j++) row[cs + j] = (uint8_t)(255 - iv[j]);
            }
        }
    }
}

/* Antiderivative of clamp(z, 0, 1). */
static inline float ramp_int(float z) { return z <= 0.0f ? 0.0f : (z <= 1.0f ? 0.5f * z * z : z - 0.5f); }

/* Signed area accumulation of the edge piece from (xa, ya) to (xb, yb) inside one row band,
 * x already within [0, W]: acc[c] receives A(c) - A(c-1), A(c) = sign * area of pixel c to
 * the right of the edge. */
static void acc_piece(float *acc, float xa, float xb, float dy, float sign) {
    float xl = xa < xb ? xa : xb, xr = xa < xb ? xb : xa;
    int c0 = (int)floorf(xl), c1 = (int)floorf(xr) + 1;
    float dx = xb - xa, prev = 0.0f;
    for (int c = c0; c <= c1; c++) {
        float z = (float)(c + 1);
        float A = fabsf(dx) > 1e-6f ? dy * (ramp_int(z - xa) - ramp_int(z - xb)) / dx : dy * clamp01(z - xa);
        acc[c] += sign * (A - prev);
        prev = A;
    }
}

/* Edge (x0, y0) -> (x1, y1) in pixel coordinates, its part within row band [r, r + 1]. */
static void acc_edge_row(float *acc, int W, float x0, float y0, float x1, float y1, int r) {
    if (y0 == y1) return;
    float sign = 1.0f;
    if (y1 < y0) {
        float s = x0; x0 = x1; x1 = s;
        s = y0; y0 = y1; y1 = s;
        sign = -1.0f;
    }
    float ya = y0 > (float)r ? y0 : (float)r, yb = y1 < (float)(r + 1) ? y1 : (float)(r + 1);
    if (!(yb > ya)) return;
    float k = (x1 - x0) / (y1 - y0);
    float xa = x0 + (ya - y0) * k, xb = x0 + (yb - y0) * k;
    /* split where x crosses 0 and W, then clamp (exact for the coverage of columns 0..W-1) */
    float ys[4] = {ya, 0, 0, yb}, xs[4] = {xa, 0, 0, xb};
    int np = 1;
    float cuts[2] = {0.0f, (float)W};
    float t_c[2];
    int nc = 0;
    for (int i = 0; i < 2; i++) {
        float X = cuts[i];
        if ((xa - X) * (xb - X) < 0.0f) t_c[nc++] = (X - xa) / (xb - xa);
    }
    if (nc == 2 && t_c[0] > t_c[1]) { float s = t_c[0]; t_c[0] = t_c[1]; t_c[1] = s; }
    for (int i = 0; i < nc; i++) {
        ys[np] = ya + t_c[i] * (yb - ya);
        xs[np] = xa + t_c[i] * (xb - xa);
        np++;
    }
    ys[np] = yb;
    xs[np] = xb;
    for (int i = 0; i < np; i++) {
        float pa = xs[i], pb = xs[i + 1];
        pa = pa < 0.0f ? 0.0f : (pa > (float)W ? (float)W : pa);
        pb = pb < 0.0f ? 0.0f : (pb > (float)W ? (float)W : pb);
        float dy = ys[i + 1] - ys[i];
        if (dy > 0.0f) acc_piece(acc, pa, pb, dy, sign);
    }
}

#define MAX_PIECES (EW_MAX_LANES * (4 * EW_MAX_LANES + 2))

/* General case: the drivable union as trapezoids between x break points, exact coverage by
 * signed-area accumulation, one row at a time. */
static void offroad_general(const xform *t, const ew_road *road, float x0, float x1, uint8_t *img) {
    int H = t->rows, W = t->cols;
    float bp[4 * EW_MAX_LANES + 2];
    int nb = 0;
    bp[nb++] = x0;
    bp[nb++] = x1;
    for (int i = 0; i < road->n_lanes; i++) {
        const ew_lane *l = &road->lanes[i];
        float k[4] = {l->x_start, l->x_start + l->taper_in, l->x_end - l->taper_out, l->x_end};
        for (int j = 0; j < 4; j++)
            if (k[j] > x0 && k[j] < x1) bp[nb++] = k[j];
    }
    for (int i = 1; i < nb; i++) /* insertion sort */
        for (int j = i; j > 0 && bp[j] < bp[j - 1]; j--) { float s = bp[j]; bp[j] = bp[j - 1]; bp[j - 1] = s; }
    /* trapezoid corners in pixel coordinates: (xa, lo), (xb, lo), (xb, hi), (xa, hi) */
    float pu[MAX_PIECES][4], pv[MAX_PIECES][4], vmin[MAX_PIECES], vmax[MAX_PIECES];
    int np = 0;
    for (int k = 0; k + 1 < nb; k++) {
        float xa = bp[k], xb = bp[k + 1];
        if (!(xb - xa > 1e-5f)) continue;
        float mid = 0.5f * (xa + xb);
        ival st[EW_MAX_LANES];
        int ns = merged_strips(road, mid, st);
        for (int s = 0; s < ns && np < MAX_PIECES; s++) {
            /* edges at the piece ends: min / max over the lanes inside this strip at mid */
            float loa = INFINITY, lob = INFINITY, hia = -INFINITY, hib = -INFINITY;
            for (int i = 0; i < road->n_lanes; i++) {
                const ew_lane *l = &road->lanes[i];
                if (mid < l->x_start || mid >= l->x_end) continue;
                float lm, hm;
                lane_edges(l, mid, &lm, &hm);
                if (!(hm > lm) || lm < st[s].lo - 1e-3f || hm > st[s].hi + 1e-3f) continue;
                float la, ha, lb, hb;
                lane_edges(l, xa, &la, &ha);
                lane_edges(l, xb, &lb, &hb);
                loa = fminf(loa, la); hia = fmaxf(hia, ha);
                lob = fminf(lob, lb); hib = fmaxf(hib, hb);
            }
            if (!(hia >= loa && hib >= lob)) continue;
            float X[4] = {xa, xb, xb, xa}, Y[4] = {loa, lob, hib, hia};
            vmin[np] = INFINITY;
            vmax[np] = -INFINITY;
            for (int j = 0; j < 4; j++) {
                to_px(t, X[j], Y[j], &pu[np][j], &pv[np][j]);
                vmin[np] = fminf(vmin[np], pv[np][j]);
                vmax[np] = fmaxf(vmax[np], pv[np][j]);
            }
            np++;
        }
    }
    float acc[EW_RASTER_MAX_SIDE + 2];
    for (int r = 0; r < H; r++) {
        memset(acc, 0, sizeof(float) * (size_t)(W + 2));
        for (int p = 0; p < np; p++) {
            if (vmax[p] <= (float)r || vmin[p] >= (float)(r + 1)) continue;
            for (int j = 0; j < 4; j++) {
                int q = (j + 1) & 3;
                acc_edge_row(acc, W, pu[p][j], pv[p][j], pu[p][q], pv[p][q], r);
            }
        }
        uint8_t *row = img + (size_t)r * (size_t)W;
        float sum = 0.0f;
        for (int c = 0; c < W; c++) {
            sum += acc[c];
            row[c] = (uint8_t)(255 - to_u8(fabsf(sum)));
        }
    }
}

static void draw_offroad(const xform *t, const ew_road *road, const float *wb, uint8_t *img) {
    float x0 = wb[0], x1 = wb[1];
    if (straight_window(road, x0, x1)) {
        ival st[EW_MAX_LANES];
        int ns = merged_strips(road, 0.5f * (x0 + x1), st);
        offroad_strips(t, st, ns, img);
    } else {
        offroad_general(t, road, x0, x1, img);
    }
}

/* ---- entry points -------------------------------------------------------------------------- */

static int render(const xform *t, const ew_road *road, const ew_boxes *boxes, const ew_kin_state *ego,
                  float ego_len, float ego_wid, uint8_t *out) {
    size_t plane = (size_t)t->rows * (size_t)t->cols;
    uint8_t *mark = out, *veh = out + plane, *off = out + 2 * plane, *eg = out + 3 * plane;
    /* the image's world bounding box grown by 2 pixels (culling of all three layers) */
    float wb[4];
    world_bounds(t, 2.0f, &wb[0], &wb[1], &wb[2], &wb[3]);
    if (draw_markings(t, road, wb, mark) != 0) return -1; /* initialises the plane */
    memset(veh, 0, plane);
    draw_boxes(t, boxes, wb, veh);
    draw_offroad(t, road, wb, off);
    memset(eg, 0, plane);
    if (ego) {
        float n = sqrtf(ego->dx * ego->dx + ego->dy * ego->dy);
        if (n > 0.0f) draw_box(t, eg, ego->x, ego->y, ego->dx / n, ego->dy / n, ego_len, ego_wid);
    }
    return 0;
}

int ew_raster_ego(const ew_raster_cfg *cfg, const ew_road *road, const ew_kin_state *ego, float ego_len,
                  float ego_wid, const ew_boxes *others, uint8_t *out) {
    if (!size_ok(cfg->rows, cfg->cols, cfg->m_per_px)) return -1;
    float m = cfg->m_per_px;
    float n = sqrtf(ego->dx * ego->dx + ego->dy * ego->dy);
    float dx = n > 0.0f ? ego->dx / n : 1.0f, dy = n > 0.0f ? ego->dy / n : 0.0f;
    xform t;
    t.m = m;
    t.inv_m = 1.0f / m;
    t.inv_m2 = t.inv_m * t.inv_m;
    t.rows = cfg->rows;
    t.cols = cfg->cols;
    /* column step: to the ego's right = -d_perp = (dy, -dx); row step: backward = -d */
    t.ux = m * dy;
    t.uy = -m * dx;
    t.vx = -m * dx;
    t.vy = -m * dy;
    float hu = 0.5f * (float)cfg->cols, hv = 0.5f * (float)cfg->rows;
    t.ox = ego->x - hu * t.ux - hv * t.vx;
    t.oy = ego->y - hu * t.uy - hv * t.vy;
    return render(&t, road, others, ego, ego_len, ego_wid, out);
}

int ew_raster_fixed(const ew_fixed_cfg *cfg, const ew_road *road, const ew_boxes *boxes,
                    const ew_kin_state *ego, float ego_len, float ego_wid, uint8_t *out) {
    if (!size_ok(cfg->rows, cfg->cols, cfg->m_per_px)) return -1;
    float m = cfg->m_per_px;
    xform t;
    t.m = m;
    t.inv_m = 1.0f / m;
    t.inv_m2 = t.inv_m * t.inv_m;
    t.rows = cfg->rows;
    t.cols = cfg->cols;
    t.ux = m;
    t.uy = 0.0f;
    t.vx = 0.0f;
    t.vy = -m;
    t.ox = cfg->x0;
    t.oy = cfg->y0;
    return render(&t, road, boxes, ego, ego_len, ego_wid, out);
}

int ew_raster_world(const ew_raster_cfg *cfg, const struct ew_world *w, uint8_t *out, char *err, int errlen) {
    if (ew_raster_cfg_validate(cfg, err, errlen) != 0) return -1;
    const ew_vehicles *v = ew_world_vehicles(w);
    const ew_world_config *wc = ew_world_config_of(w);
    ew_boxes b = {v->x, v->y, v->hx, v->hy, v->len, v->wid, v->n};
    if (ew_raster_ego(cfg, ew_world_road(w), ew_world_ego(w), wc->ego_length, wc->ego_width, &b, out) != 0) {
        if (err && errlen > 0) snprintf(err, (size_t)errlen, "raster: out of memory for marking segments");
        return -1;
    }
    return 0;
}

void ew_raster_to_f32(const uint8_t *in, int n, float *out) {
    const float s = 1.0f / 255.0f;
    for (int i = 0; i < n; i++) out[i] = (float)in[i] * s;
}

void ew_raster_grey(const uint8_t *in, int rows, int cols, uint8_t *out) {
    size_t plane = (size_t)rows * (size_t)cols;
    const uint8_t *mark = in, *veh = in + plane, *off = in + 2 * plane, *eg = in + 3 * plane;
    for (size_t i = 0; i < plane; i++) {
        unsigned g = ((unsigned)off[i] * 64u + 127u) / 255u;
        unsigned mk = ((unsigned)mark[i] * 128u + 127u) / 255u;
        g = mk > g ? mk : g;
        g = veh[i] > g ? veh[i] : g;
        g = eg[i] > g ? eg[i] : g;
        out[i] = (uint8_t)g;
    }
}
