/* png.c - PNG writers, the raster composite and a checked reader (contract in sim/png.h).
 * libpng reports errors by longjmp: every libpng call sits between setjmp and the cleanup,
 * and objects touched after setjmp are volatile. */
#include "sim/png.h"

#include <errno.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim/raster.h"

typedef struct { char *err; int errlen; } png_errctx;

static void on_error(png_structp p, png_const_charp msg) {
    png_errctx *c = png_get_error_ptr(p);
    if (c && c->err && c->errlen > 0) snprintf(c->err, (size_t)c->errlen, "png: %s", msg);
    png_longjmp(p, 1);
}
static void on_warning(png_structp p, png_const_charp msg) {
    (void)p;
    (void)msg;
}

static int fail(char *err, int errlen, const char *what, const char *path) {
    if (err && errlen > 0) snprintf(err, (size_t)errlen, "png: %s: %s", what, path);
    return -1;
}

static int write_png(const char *path, const uint8_t *data, int w, int h, int color, int bpp, char *err, int errlen) {
    if (w < 1 || h < 1 || w > 1000000 || h > 1000000) return fail(err, errlen, "bad image size for", path);
    FILE *f = fopen(path, "wb");
    if (!f) {
        if (err && errlen > 0) snprintf(err, (size_t)errlen, "png: cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    png_errctx ctx = {err, errlen};
    png_structp p = png_create_write_struct(PNG_LIBPNG_VER_STRING, &ctx, on_error, on_warning);
    png_infop info = p ? png_create_info_struct(p) : NULL;
    if (!p || !info) {
        png_destroy_write_struct(&p, NULL);
        fclose(f);
        return fail(err, errlen, "out of memory writing", path);
    }
    if (setjmp(png_jmpbuf(p))) {
        png_destroy_write_struct(&p, &info);
        fclose(f);
        return -1;
    }
    png_init_io(p, f);
    png_set_IHDR(p, info, (png_uint_32)w, (png_uint_32)h, 8, color, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    png_write_info(p, info);
    for (int y = 0; y < h; y++) png_write_row(p, (png_const_bytep)(data + (size_t)y * (size_t)w * (size_t)bpp));
    png_write_end(p, NULL);
    png_destroy_write_struct(&p, &info);
    if (fclose(f) != 0) {
        if (err && errlen > 0) snprintf(err, (size_t)errlen, "png: error closing %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

int ew_png_write_gray(const char *path, const uint8_t *gray, int w, int h, char *err, int errlen) {
    return write_png(path, gray, w, h, PNG_COLOR_TYPE_GRAY, 1, err, errlen);
}

int ew_png_write_rgb(const char *path, const uint8_t *rgb, int w, int h, char *err, int errlen) {
    return write_png(path, rgb, w, h, PNG_COLOR_TYPE_RGB, 3, err, errlen);
}

int ew_png_read(const char *path, uint8_t **data, int *w, int *h, int *channels, char *err, int errlen) {
    *data = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (err && errlen > 0) snprintf(err, (size_t)errlen, "png: cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    uint8_t sig[8];
    if (fread(sig, 1, 8, f) != 8 || png_sig_cmp(sig, 0, 8) != 0) {
        fclose(f);
        return fail(err, errlen, "not a PNG file", path);
    }
    png_errctx ctx = {err, errlen};
    png_structp p = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ctx, on_error, on_warning);
    png_infop info = p ? png_create_info_struct(p) : NULL;
    if (!p || !info) {
        png_destroy_read_struct(&p, NULL, NULL);
        fclose(f);
        return fail(err, errlen, "out of memory reading", path);
    }
    uint8_t *volatile buf = NULL;
    png_bytep *volatile rows = NULL;
    if (setjmp(png_jmpbuf(p))) {
        free(buf);
        free(rows);
        png_destroy_read_struct(&p, &info, NULL);
        fclose(f);
        return -1;
    }
    png_init_io(p, f);
    png_set_sig_bytes(p, 8);
    png_set_user_limits(p, 100000, 100000);
    png_read_info(p, info);
    png_uint_32 pw = png_get_image_width(p, info), ph = png_get_image_height(p, info);
    int ct = png_get_color_type(p, info), bd = png_get_bit_depth(p, info);
    if (ct == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(p);
    if (ct == PNG_COLOR_TYPE_GRAY && bd < 8) png_set_expand_gray_1_2_4_to_8(p);
    if (png_get_valid(p, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(p);
    if (bd == 16) png_set_strip_16(p);
    png_set_interlace_handling(p);
    png_read_update_info(p, info);
    int ch = png_get_channels(p, info);
    size_t rb = png_get_rowbytes(p, info);
    if (ch < 1 || ch > 4 || rb != (size_t)pw * (size_t)ch || pw < 1 || ph < 1) {
        png_destroy_read_struct(&p, &info, NULL);
        fclose(f);
        return fail(err, errlen, "unsupported pixel layout in", path);
    }
    buf = malloc(rb * ph);
    rows = malloc(sizeof(png_bytep) * ph);
    if (!buf || !rows) {
        free(buf);
        free(rows);
        png_destroy_read_struct(&p, &info, NULL);
        fclose(f);
        return fail(err, errlen, "out of memory reading", path);
    }
    for (png_uint_32 y = 0; y < ph; y++) rows[y] = buf + (size_t)y * rb;
    png_read_image(p, rows);
    png_read_end(p, NULL);
    png_destroy_read_struct(&p, &info, NULL);
    fclose(f);
    free(rows);
    *data = buf;
    *w = (int)pw;
    *h = (int)ph;
    *channels = ch;
    return 0;
}

static const uint8_t PAL_ROAD[3] = {48, 48, 48}, PAL_OFF[3] = {34, 94, 46}, PAL_MARK[3] = {255, 255, 255},
                     PAL_VEH[3] = {70, 150, 255}, PAL_EGO[3] = {235, 60, 50};

void ew_png_raster_rgb(const uint8_t *raster, int rows, int cols, int scale, uint8_t *rgb) {
    size_t plane = (size_t)rows * (size_t)cols;
    const uint8_t *layer[4] = {raster + 2 * plane, raster, raster + plane, raster + 3 * plane};
    const uint8_t *col[4] = {PAL_OFF, PAL_MARK, PAL_VEH, PAL_EGO};
    int W = cols * scale;
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) {
            size_t i = (size_t)r * (size_t)cols + (size_t)c;
            unsigned px[3] = {PAL_ROAD[0], PAL_ROAD[1], PAL_ROAD[2]};
            for (int l = 0; l < 4; l++) {
                unsigned a = layer[l][i];
                for (int k = 0; k < 3; k++) px[k] = (px[k] * (255u - a) + col[l][k] * a + 127u) / 255u;
            }
            for (int dy = 0; dy < scale; dy++)
                for (int dx = 0; dx < scale; dx++) {
                    uint8_t *o = rgb + 3 * ((size_t)(r * scale + dy) * (size_t)W + (size_t)(c * scale + dx));
                    o[0] = (uint8_t)px[0];
                    o[1] = (uint8_t)px[1];
                    o[2] = (uint8_t)px[2];
                }
        }
}

int ew_png_write_raster(const char *path, const uint8_t *raster, int rows, int cols, int scale, char *err,
                        int errlen) {
    if (scale < 1 || rows < 1 || cols < 1 || (size_t)rows * (size_t)scale * (size_t)cols * (size_t)scale > 100000000u)
        return fail(err, errlen, "bad raster size or scale for", path);
    uint8_t *rgb = malloc((size_t)rows * (size_t)scale * (size_t)cols * (size_t)scale * 3);
    if (!rgb) return fail(err, errlen, "out of memory writing", path);
    ew_png_raster_rgb(raster, rows, cols, scale, rgb);
    int rc = ew_png_write_rgb(path, rgb, cols * scale, rows * scale, err, errlen);
    free(rgb);
    return rc;
}

int ew_png_write_channels(const char *path, const uint8_t *raster, int rows, int cols, char *err, int errlen) {
    if (rows < 1 || cols < 1) return fail(err, errlen, "bad raster size for", path);
    int W = EW_RASTER_CHANNELS * cols;
    uint8_t *img = malloc((size_t)rows * (size_t)W);
    if (!img) return fail(err, errlen, "out of memory writing", path);
    size_t plane = (size_t)rows * (size_t)cols;
    for (int ch = 0; ch < EW_RASTER_CHANNELS; ch++)
        for (int r = 0; r < rows; r++)
            memcpy(img + (size_t)r * (size_t)W + (size_t)ch * (size_t)cols, raster + ch * plane + (size_t)r * (size_t)cols,
                   (size_t)cols);
    int rc = ew_png_write_gray(path, img, W, rows, err, errlen);
    free(img);
    return rc;
}
