/* scene.h - a frame as a list of drawing commands in pixel coordinates (origin top-left,
 * y down), rendered either by OpenGL (viewer.c) or by the software rasterizer here, so the
 * window and the headless path draw the same scene.
 *
 * Commands run in order: triangle batches (flat-coloured triangles, alpha-blended) and
 * images (RGBA texels mapped onto a parallelogram with nearest sampling, alpha-blended).
 * A pixel is covered by a triangle when its centre lies inside (edges shared by two
 * triangles are owned by exactly one of them). The scene owns its buffers; they grow on
 * demand and are reused across frames (ew_scene_begin() keeps the capacity). Allocation
 * failures are sticky: ew_scene_failed() reports them and further commands are dropped.
 */
#ifndef EW_VIZ_SCENE_H
#define EW_VIZ_SCENE_H

#include <stddef.h>
#include <stdint.h>

typedef struct { float x, y; uint8_t r, g, b, a; } ew_vtx;

typedef struct {
    int w, h;
    size_t off;          /* byte offset of its RGBA texels in the pixel pool */
    float qx[4], qy[4];  /* where texel corners (0,0), (w,0), (w,h), (0,h) land (a parallelogram) */
} ew_scene_img;

enum { EW_CMD_TRIS = 0, EW_CMD_IMAGE = 1 };
typedef struct { int kind, first, count; } ew_scene_cmd;

typedef struct {
    int width, height;
    uint8_t clear[3];
    ew_vtx *v;
    int nv, cap_v;
    ew_scene_cmd *cmd;
    int ncmd, cap_cmd;
    ew_scene_img *img;
    int nimg, cap_img;
    uint8_t *pix;
    size_t npix, cap_pix;
    int failed;
} ew_scene;

typedef struct { uint8_t r, g, b, a; } ew_rgba;

void ew_scene_init(ew_scene *s);
void ew_scene_free(ew_scene *s);
/* Starts a new frame of width x height cleared to rgb. */
void ew_scene_begin(ew_scene *s, int width, int height, ew_rgba clear);
int ew_scene_failed(const ew_scene *s);

void ew_scene_tri(ew_scene *s, float x0, float y0, float x1, float y1, float x2, float y2, ew_rgba c);
/* A convex quadrilateral given in order (either orientation). */
void ew_scene_quad(ew_scene *s, const float x[4], const float y[4], ew_rgba c);
void ew_scene_rect(ew_scene *s, float x0, float y0, float x1, float y1, ew_rgba c);
/* A thick segment (width in pixels). */
void ew_scene_line(ew_scene *s, float x0, float y0, float x1, float y1, float width, ew_rgba c);
/* Appends an image command; returns its w*h*4 texels to fill (zeroed), or NULL on failure.
 * The pointer stays valid until the next ew_scene_image() or ew_scene_begin(). */
uint8_t *ew_scene_image(ew_scene *s, int w, int h, const float qx[4], const float qy[4]);
static inline const uint8_t *ew_scene_image_pixels(const ew_scene *s, int i) {
    return s->pix + s->img[i].off;
}

/* Software rendering into rgb (width * height * 3 bytes, row 0 at the top). Deterministic. */
void ew_scene_render_soft(const ew_scene *s, uint8_t *rgb);

#endif
