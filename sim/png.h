/* png.h - PNG output of rasters and images (libpng), and a checked PNG reader.
 *
 * Writers take tightly packed 8-bit rows (gray: w bytes per row, RGB: 3 w bytes) and return
 * 0 or -1 with a message (the file may be left partial on failure). The reader accepts any
 * PNG libpng reads, converts it to 8 bits per channel (palette -> RGB, gray < 8 bits -> 8,
 * 16 bits -> 8, tRNS -> alpha) and returns channels 1 (gray), 2 (gray + alpha), 3 (RGB) or
 * 4 (RGBA); a bad, truncated or missing file gives -1 and a message, never a crash. The
 * caller frees *data with free().
 *
 * Raster composite palette (ew_png_raster_rgb), layered in this order with the channel
 * value / 255 as opacity: road surface (48, 48, 48); off-road (34, 94, 46) by channel 2;
 * markings white (255, 255, 255) by channel 0; other vehicles blue (70, 150, 255) by
 * channel 1; ego red (235, 60, 50) by channel 3. Each raster pixel becomes a scale x scale
 * block.
 */
#ifndef EW_PNG_H
#define EW_PNG_H

#include <stdint.h>

int ew_png_write_gray(const char *path, const uint8_t *gray, int w, int h, char *err, int errlen);
int ew_png_write_rgb(const char *path, const uint8_t *rgb, int w, int h, char *err, int errlen);
int ew_png_read(const char *path, uint8_t **data, int *w, int *h, int *channels, char *err, int errlen);

/* Composite of a 4-channel raster (C x rows x cols, sim/raster.h) into rgb, which holds
 * (cols * scale) x (rows * scale) pixels x 3 bytes. scale >= 1. */
void ew_png_raster_rgb(const uint8_t *raster, int rows, int cols, int scale, uint8_t *rgb);
/* The composite written as a PNG (allocates a temporary image). */
int ew_png_write_raster(const char *path, const uint8_t *raster, int rows, int cols, int scale, char *err,
                        int errlen);
/* The 4 channels side by side as one grey image of rows x (4 cols), channel 0 leftmost:
 * lossless, used for golden files. */
int ew_png_write_channels(const char *path, const uint8_t *raster, int rows, int cols, char *err, int errlen);

#endif
