/* raster.h - anti-aliased raster observations: the ego-centred view and a fixed camera.
 *
 * Layout. A raster is uint8 planar C x H x W (C = EW_RASTER_CHANNELS = 4, row-major within a
 * channel): out[(ch * rows + row) * cols + col]. Channels: 0 lane markings, 1 other vehicles,
 * 2 off-road area, 3 ego footprint. 0 = empty, 255 = the pixel is fully covered.
 *
 * Ego view. Rotated so the ego heading points up: row 0 is farthest ahead, columns increase
 * to the ego's RIGHT (an image seen from above, heading up), so a vehicle on the ego's left
 * (larger road y when the ego drives along +x) lands in the low columns. Continuous pixel
 * coordinates (u, v) = (column, row) put pixel (r, c) on [c, c+1] x [r, r+1]; the ego centre
 * is at (u, v) = (cols / 2, rows / 2), i.e. (12.0, 58.5) for the default 117 x 24 at
 * 0.617 m/px (about 36.1 m ahead and behind, 7.4 m to each side). A world point at forward
 * distance f and leftward distance l from the ego centre is at
 *     u = cols/2 - l / m_per_px,   v = rows/2 - f / m_per_px.
 *
 * Fixed camera. World-aligned: road x increases to the right of the image, road y upward;
 * (x0, y0) are the world coordinates of the image's top-left corner, so
 *     u = (x - x0) / m_per_px,   v = (y0 - y) / m_per_px.
 *
 * Coverage. Every pixel holds round(255 * covered fraction of its area), combined by max
 * within a channel (off-road: 255 minus the drivable coverage, the lanes' union summed
 * exactly). Vehicles and the ego are oriented rectangles: the coverage is the product of the
 * exact box-filtered coverages of the rectangle's two slabs (exact for axis-aligned boxes and
 * along every straight edge; a small error only at rotated corners). Markings
 * (ew_road_markings() is the source of truth) are thin straight bands: each row (or column,
 * for bands closer to horizontal) gets the exact share of the band's cross-section at the
 * middle of the covered part of the row (exact for axis-aligned bands, area conserving).
 * Off-road: exact edge coverage per row where the lanes in view are straight and at full width
 * (the common case), exact polygon-area accumulation where tapers, ramp or lane ends are in
 * view. Every value changes continuously under sub-pixel motion.
 *
 * Determinism: the bytes depend only on the inputs, never on the CPU: the fast paths (straight
 * roads seen with the rows along the road, axis-aligned boxes, AVX2 loops chosen at run time)
 * compute the same float operations as the general ones (tests/test_raster.c checks a hash
 * of thousands of rasters; tools/raster_equiv.sh compares two commits on about 40,000).
 *
 * Threads and memory: the functions keep no state; they write only `out` (caller-owned,
 * EW_RASTER_CHANNELS * rows * cols bytes) and never allocate, except that a road with more
 * than EW_RASTER_SEG_STACK marking segments in the window uses one temporary heap buffer
 * (freed before return; failure = return -1). Different threads may render concurrently.
 */
#ifndef EW_RASTER_H
#define EW_RASTER_H

#include <stddef.h>
#include <stdint.h>

#include "sim/ego.h"
#include "sim/road.h"

#define EW_RASTER_CHANNELS 4
enum { EW_CH_MARKINGS = 0, EW_CH_VEHICLES = 1, EW_CH_OFFROAD = 2, EW_CH_EGO = 3 };
#define EW_RASTER_MAX_SIDE 4096   /* rows and cols are each in [1, EW_RASTER_MAX_SIDE] */
#define EW_RASTER_SEG_STACK 512   /* marking segments handled without a heap buffer */

typedef struct { int rows, cols; float m_per_px; } ew_raster_cfg;

/* 117 rows x 24 columns at 0.617 m/px. */
void ew_raster_cfg_default(ew_raster_cfg *c);
/* 0 when rows, cols are in [1, EW_RASTER_MAX_SIDE] and m_per_px in [0.01, 100]; else -1. */
int ew_raster_cfg_validate(const ew_raster_cfg *c, char *err, int errlen);

/* Boxes struct-of-arrays, pointing straight into ew_vehicles (sim/world.h): centres (m),
 * unit headings, full lengths and widths (m). */
typedef struct { const float *x, *y, *hx, *hy, *len, *wid; int n; } ew_boxes;

/* The ego-centred raster of `others` (may be NULL; the ego must not be among them) around the
 * ego state. Boxes outside the view are culled here (no pre-culling needed). Returns 0, or
 * -1 (out untouched) when cfg is invalid or a temporary buffer could not be allocated. */
int ew_raster_ego(const ew_raster_cfg *cfg, const ew_road *road, const ew_kin_state *ego,
                  float ego_len, float ego_wid, const ew_boxes *others, uint8_t *out);

struct ew_world;
/* ew_raster_ego() of a world: its road, vehicles, ego pose and ego size. Returns 0 or -1 with
 * a message. */
int ew_raster_world(const ew_raster_cfg *cfg, const struct ew_world *w, uint8_t *out, char *err,
                    int errlen);

/* Fixed camera: x to the right, y up; (x0, y0) = world position of the top-left corner. */
typedef struct { float x0, y0; int rows, cols; float m_per_px; } ew_fixed_cfg;

/* Same channels; `ego` may be NULL (channel 3 all zero). Returns 0 or -1 (see ew_raster_ego). */
int ew_raster_fixed(const ew_fixed_cfg *cfg, const ew_road *road, const ew_boxes *boxes,
                    const ew_kin_state *ego, float ego_len, float ego_wid, uint8_t *out);

/* in[i] / 255 for n values (uint8 storage -> float [0, 1]). */
void ew_raster_to_f32(const uint8_t *in, int n, float *out);

/* Greyscale composite of one raster (rows x cols, 4 channels) for video-like use:
 * out = max(64/255 * off-road, 128/255 * markings, vehicles, ego), rounded; so the road
 * surface is 0, off-road 64, paint 128 and vehicles 255. */
void ew_raster_grey(const uint8_t *in, int rows, int cols, uint8_t *out);

#endif
