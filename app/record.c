/* record.c - PNG frames of the ego raster and a world-aligned top view. */
#include "app/record.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim/png.h"
#include "sim/raster.h"

#define TOP_BEHIND 40.0f
#define TOP_AHEAD 80.0f
#define TOP_M_PER_PX 0.25f
#define EGO_SCALE 4

struct ew_recorder {
    char dir[3072];
    ew_raster_cfg ego_cfg;
    uint8_t *ego;      /* 4 x rows x cols */
    uint8_t *top;      /* 4 x top_rows x top_cols */
    uint8_t *top_grey; /* top_rows x top_cols */
};

ew_recorder *ew_recorder_create(const char *dir, char *err, int errlen) {
    if (strlen(dir) >= 3072) {
        snprintf(err, (size_t)errlen, "directory name too long");
        return NULL;
    }
    ew_recorder *r = calloc(1, sizeof *r);
    if (!r) {
        snprintf(err, (size_t)errlen, "out of memory");
        return NULL;
    }
    snprintf(r->dir, sizeof r->dir, "%s", dir);
    ew_raster_cfg_default(&r->ego_cfg);
    return r;
}

static int top_size(const ew_world *w, int *rows, int *cols, float *y_top) {
    float y_min, y_max;
    ew_road_y_range(ew_world_road(w), &y_min, &y_max);
    y_min -= 4.0f;
    y_max += 4.0f;
    *rows = (int)((y_max - y_min) / TOP_M_PER_PX + 0.5f);
    *cols = (int)((TOP_BEHIND + TOP_AHEAD) / TOP_M_PER_PX + 0.5f);
    *y_top = y_max;
    return 0;
}

int ew_recorder_frame(ew_recorder *r, const ew_world *w, int step, char *err, int errlen) {
    const ew_world_config *wc = ew_world_config_of(w);
    size_t npx = (size_t)EW_RASTER_CHANNELS * (size_t)r->ego_cfg.rows * (size_t)r->ego_cfg.cols;
    int rows, cols;
    float y_top;
    top_size(w, &rows, &cols, &y_top);
    if (!r->ego) r->ego = malloc(npx);
    if (!r->top) r->top = malloc((size_t)EW_RASTER_CHANNELS * (size_t)rows * (size_t)cols);
    if (!r->top_grey) r->top_grey = malloc((size_t)rows * (size_t)cols);
    if (!r->ego || !r->top || !r->top_grey) {
        snprintf(err, (size_t)errlen, "out of memory");
        return -1;
    }
    char path[3200];
    if (ew_raster_world(&r->ego_cfg, w, r->ego, err, errlen) != 0) return -1;
    snprintf(path, sizeof path, "%s/ego_%05d.png", r->dir, step);
    if (ew_png_write_raster(path, r->ego, r->ego_cfg.rows, r->ego_cfg.cols, EGO_SCALE, err, errlen) != 0) return -1;

    const ew_kin_state *e = ew_world_ego(w);
    const ew_vehicles *v = ew_world_vehicles(w);
    ew_boxes boxes = {v->x, v->y, v->hx, v->hy, v->len, v->wid, v->n};
    ew_fixed_cfg fc = {e->x - TOP_BEHIND, y_top, rows, cols, TOP_M_PER_PX};
    if (ew_raster_fixed(&fc, ew_world_road(w), &boxes, wc->ego_enabled ? e : NULL, wc->ego_length,
                        wc->ego_width, r->top) != 0) {
        snprintf(err, (size_t)errlen, "top view: raster failed");
        return -1;
    }
    ew_raster_grey(r->top, rows, cols, r->top_grey);
    snprintf(path, sizeof path, "%s/top_%05d.png", r->dir, step);
    return ew_png_write_gray(path, r->top_grey, cols, rows, err, errlen);
}

void ew_recorder_destroy(ew_recorder *r) {
    if (!r) return;
    free(r->ego);
    free(r->top);
    free(r->top_grey);
    free(r);
}
