/* draw.h - builds the viewer's scene (scene.h) from a world, an episode, an overlay and the
 * ego raster: the road from above (lanes, ramps, closures, markings, off-road), every
 * vehicle (type colours, brake lights, turn signals), the ego, the overlays, the raster
 * inset and the HUD. Shared by the OpenGL window and the headless software path, so both
 * show the same picture. Pure: no SDL, no GL, no clock (rates are inputs).
 *
 * Screen mapping (ew_camera): the world point (cx, cy) is at the window centre, x grows
 * to the right and y (the road's left) upward, ppm pixels per metre.
 */
#ifndef EW_VIZ_DRAW_H
#define EW_VIZ_DRAW_H

#include <stdint.h>

#include "sim/episode.h"
#include "sim/world.h"
#include "viz/overlay.h"
#include "viz/scene.h"

typedef struct { float cx, cy, ppm; int w, h; } ew_camera;

static inline void ew_camera_to_screen(const ew_camera *c, float x, float y, float *sx, float *sy) {
    *sx = 0.5f * (float)c->w + (x - c->cx) * c->ppm;
    *sy = 0.5f * (float)c->h - (y - c->cy) * c->ppm;
}
static inline void ew_camera_to_world(const ew_camera *c, float sx, float sy, float *x, float *y) {
    *x = c->cx + (sx - 0.5f * (float)c->w) / c->ppm;
    *y = c->cy - (sy - 0.5f * (float)c->h) / c->ppm;
}

/* The ego raster as the models see it: C x H x W uint8, row 0 farthest ahead, column 0
 * leftmost, centred on the ego, m_per_px metres per pixel. */
typedef struct {
    int c, h, w;
    float m_per_px;
    const uint8_t *data;
} ew_viz_raster;

/* Overlays (toggled by keys 1-4). */
enum { EW_OVL_PLAN = 0, EW_OVL_FUTURES = 1, EW_OVL_COST = 2, EW_OVL_ELLIPSES = 3, EW_OVL_COUNT = 4 };

typedef struct {
    const ew_world *w;
    const ew_episode *ep;        /* may be NULL */
    const ew_overlay *ov;        /* may be NULL */
    ew_viz_raster raster;        /* data NULL: no inset */
    ew_camera cam;
    int show[EW_OVL_COUNT];
    int show_inset, show_hud, show_help;
    float accel, curv;           /* the ego's last acceleration (m/s^2) and curvature (1/m) */
    float sim_rate, render_rate; /* measured steps/s and frames/s; < 0: not shown */
    float speed_factor;          /* simulation speed relative to real time */
    int paused, manual;
    uint64_t seed;
    const char *controller;      /* name shown in the HUD (may be NULL) */
    const char *message;         /* a transient status line (may be NULL) */
} ew_viz_input;

typedef struct { int x, y, w, h; } ew_viz_rect;
/* Where the inset lands: the RGB composite and one tile per channel (value v drawn as the
 * opaque grey (v, v, v), each raster pixel a scale x scale block), plus the cost tile. */
typedef struct {
    ew_viz_rect panel, composite, channel[4], cost;
    int scale_composite, scale_channel, n_channels;
} ew_viz_inset_layout;

/* Colours (RGB) that tests and documentation refer to. */
#define EW_VIZ_OFFROAD 58, 84, 52
#define EW_VIZ_ASPHALT 72, 74, 80
#define EW_VIZ_RAMP 92, 86, 80
#define EW_VIZ_MARKING 235, 235, 235
#define EW_VIZ_EGO 40, 230, 90
#define EW_VIZ_CAR 70, 130, 230
#define EW_VIZ_TRUCK 215, 150, 60
#define EW_VIZ_MOTO 180, 100, 210
#define EW_VIZ_BRAKE 255, 40, 40
#define EW_VIZ_SIGNAL 255, 190, 0
#define EW_VIZ_PLAN 255, 230, 40

/* Screen width of a marking (pixels): at least 2 so markings stay visible when zoomed out. */
float ew_viz_marking_px(const ew_road *r, float ppm);
void ew_viz_inset_layout_for(int win_w, int win_h, int rc, int rh, int rw, int has_cost,
                             ew_viz_inset_layout *out);
/* Builds the whole frame; returns 0, or -1 when the scene ran out of memory. */
int ew_viz_build(ew_scene *s, const ew_viz_input *in);
/* Raster pixel (row, col) centre of an image centred on pose, in the road frame. */
void ew_viz_raster_to_world(const ew_kin_state *pose, float mpp, int h, int w, float row, float col,
                            float *x, float *y);
/* The lines of the key help (NULL-terminated), shared by the window and --help. */
const char *const *ew_viz_key_lines(void);

#endif
