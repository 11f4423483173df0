/* font.h - a built-in 5x7 bitmap font (ASCII 32..126) drawn into RGBA images.
 * Glyphs advance 6 columns and lines 10 rows (times the scale). Characters outside the
 * table draw as '?'. No state: pure functions over caller-owned pixels.
 */
#ifndef EW_VIZ_FONT_H
#define EW_VIZ_FONT_H

#include <stdint.h>

#define EW_FONT_W 5
#define EW_FONT_H 8 /* 7 rows above the baseline + 1 descender row */
#define EW_FONT_ADV 6
#define EW_FONT_LINE 10

/* The EW_FONT_H rows of a glyph, bit 4 = leftmost column. */
const uint8_t *ew_font_glyph(int ch);
/* Draws text at (x, y) (top-left, pixels) into an RGBA image of w x h, scale >= 1, colour
 * rgba (alpha-blended); clipped to the image. Returns the x after the last glyph. */
int ew_font_draw(uint8_t *img, int w, int h, int x, int y, int scale, const char *text,
                 const uint8_t rgba[4]);
/* Width in pixels of the longest line of text at scale. */
int ew_font_text_width(const char *text, int scale);

#endif
