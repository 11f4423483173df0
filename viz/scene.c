/* scene.c - the drawing-command list and its software rasterizer. */
#include "viz/scene.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void ew_scene_init(ew_scene *s) { memset(s, 0, sizeof *s); }

void ew_scene_free(ew_scene *s) {
    free(s->v);
    free(s->cmd);
    free(s->img);
    free(s->pix);
    memset(s, 0, sizeof *s);
}

void ew_scene_begin(ew_scene *s, int width, int height, ew_rgba clear) {
    s->width = width;
    s->height = height;
    s->clear[0] = clear.r;
    s->clear[1] = clear.g;
    s->clear[2] = clear.b;
    s->nv = s->ncmd = s->nimg = 0;
    s->npix = 0;
    s->failed = 0;
}

int ew_scene_failed(const ew_scene *s) { return s->failed; }

/* Grows *p (elements of size sz) to hold at least need; 0 or -1. */
static int grow(void **p, int *cap, int need, size_t sz) {
    if (need <= *cap) return 0;
    int nc = *cap ? *cap : 256;
    while (nc < need) nc *= 2;
    void *q = realloc(*p, (size_t)nc * sz);
    if (!q) return -1;
    *p = q;
    *cap = nc;
    return 0;
}

void ew_scene_tri(ew_scene *s, float x0, float y0, float x1, float y1, float x2, float y2, ew_rgba c) {
    if (s->failed) return;
    if (grow((void **)&s->v, &s->cap_v, s->nv + 3, sizeof(ew_vtx)) != 0) {
        s->failed = 1;
        return;
    }
    if (s->ncmd == 0 || s->cmd[s->ncmd - 1].kind != EW_CMD_TRIS) {
        if (grow((void **)&s->cmd, &s->cap_cmd, s->ncmd + 1, sizeof(ew_scene_cmd)) != 0) {
            s->failed = 1;
            return;
        }
        s->cmd[s->ncmd].kind = EW_CMD_TRIS;
        s->cmd[s->ncmd].first = s->nv;
        s->cmd[s->ncmd].count = 0;
        s->ncmd++;
    }
    ew_vtx *v = s->v + s->nv;
    float xs[3] = {x0, x1, x2}, ys[3] = {y0, y1, y2};
    for (int i = 0; i < 3; i++) {
        v[i].x = xs[i];
        v[i].y = ys[i];
        v[i].r = c.r;
        v[i].g = c.g;
        v[i].b = c.b;
        v[i].a = c.a;
    }
    s->nv += 3;
    s->cmd[s->ncmd - 1].count += 3;
}

void ew_scene_quad(ew_scene *s, const float x[4], const float y[4], ew_rgba c) {
    ew_scene_tri(s, x[0], y[0], x[1], y[1], x[2], y[2], c);
    ew_scene_tri(s, x[0], y[0], x[2], y[2], x[3], y[3], c);
}

void ew_scene_rect(ew_scene *s, float x0, float y0, float x1, float y1, ew_rgba c) {
    float x[4] = {x0, x1, x1, x0}, y[4] = {y0, y0, y1, y1};
    ew_scene_quad(s, x, y, c);
}

void ew_scene_line(ew_scene *s, float x0, float y0, float x1, float y1, float width, ew_rgba c) {
    float dx = x1 - x0, dy = y1 - y0, n = sqrtf(dx * dx + dy * dy);
    if (n <= 0.0f) return;
    float hx = -dy / n * 0.5f * width, hy = dx / n * 0.5f * width;
    float x[4] = {x0 + hx, x1 + hx, x1 - hx, x0 - hx}, y[4] = {y0 + hy, y1 + hy, y1 - hy, y0 - hy};
    ew_scene_quad(s, x, y, c);
}

uint8_t *ew_scene_image(ew_scene *s, int w, int h, const float qx[4], const float qy[4]) {
    if (s->failed || w <= 0 || h <= 0) return NULL;
    size_t bytes = (size_t)w * (size_t)h * 4;
    if (grow((void **)&s->img, &s->cap_img, s->nimg + 1, sizeof(ew_scene_img)) != 0 ||
        grow((void **)&s->cmd, &s->cap_cmd, s->ncmd + 1, sizeof(ew_scene_cmd)) != 0) {
        s->failed = 1;
        return NULL;
    }
    if (s->npix + bytes > s->cap_pix) {
        size_t nc = s->cap_pix ? s->cap_pix : 65536;
        while (nc < s->npix + bytes) nc *= 2;
        uint8_t *q = realloc(s->pix, nc);
        if (!q) {
            s->failed = 1;
            return NULL;
        }
        s->pix = q;
        s->cap_pix = nc;
    }
    ew_scene_img *im = &s->img[s->nimg];
    im->w = w;
    im->h = h;
    im->off = s->npix;
    memcpy(im->qx, qx, sizeof im->qx);
    memcpy(im->qy, qy, sizeof im->qy);
    s->cmd[s->ncmd].kind = EW_CMD_IMAGE;
    s->cmd[s->ncmd].first = s->nimg;
    s->cmd[s->ncmd].count = 1;
    s->ncmd++;
    s->nimg++;
    s->npix += bytes;
    uint8_t *p = s->pix + im->off;
    memset(p, 0, bytes);
    return p;
}

/* ---- software rasterizer ----------------------------------------------------------- */

static inline void blend(uint8_t *d, unsigned r, unsigned g, unsigned b, unsigned a) {
    if (a == 0) return;
    if (a == 255) {
        d[0] = (uint8_t)r;
        d[1] = (uint8_t)g;
        d[2] = (uint8_t)b;
        return;
    }
    unsigned ia = 255u - a;
    d[0] = (uint8_t)((r * a + d[0] * ia + 127u) / 255u);
    d[1] = (uint8_t)((g * a + d[1] * ia + 127u) / 255u);
    d[2] = (uint8_t)((b * a + d[2] * ia + 127u) / 255u);
}

/* An edge owns the pixel centres exactly on it when it points "up" or exactly "right":
 * the two triangles sharing an edge traverse it in opposite directions, so one owns it. */
static inline int owns(float dx, float dy) { return dy < 0.0f || (dy == 0.0f && dx > 0.0f); }

static void soft_tri(const ew_scene *s, uint8_t *rgb, const ew_vtx *a, const ew_vtx *b, const ew_vtx *c) {
    float area = (b->x - a->x) * (c->y - a->y) - (b->y - a->y) * (c->x - a->x);
    if (!(area != 0.0f) || a->a == 0) return;
    if (area < 0.0f) {
        const ew_vtx *t = b;
        b = c;
        c = t;
    }
    float minx = fminf(a->x, fminf(b->x, c->x)), maxx = fmaxf(a->x, fmaxf(b->x, c->x));
    float miny = fminf(a->y, fminf(b->y, c->y)), maxy = fmaxf(a->y, fmaxf(b->y, c->y));
    if (maxx < 0.0f || maxy < 0.0f || minx > (float)s->width || miny > (float)s->height) return;
    int x0 = (int)ceilf(minx - 0.5f), x1 = (int)floorf(maxx - 0.5f);
    int y0 = (int)ceilf(miny - 0.5f), y1 = (int)floorf(maxy - 0.5f);
    if (x0 < 0) x0 = 0;
    if (y0 < 0) y0 = 0;
    if (x1 > s->width - 1) x1 = s->width - 1;
    if (y1 > s->height - 1) y1 = s->height - 1;
    const ew_vtx *p[3] = {a, b, c};
    float ex[3], ey[3];
    int own[3];
    for (int i = 0; i < 3; i++) {
        ex[i] = p[(i + 1) % 3]->x - p[i]->x;
        ey[i] = p[(i + 1) % 3]->y - p[i]->y;
        own[i] = owns(ex[i], ey[i]);
    }
    for (int y = y0; y <= y1; y++) {
        float py = (float)y + 0.5f;
        uint8_t *row = rgb + (size_t)y * (size_t)s->width * 3;
        for (int x = x0; x <= x1; x++) {
            float px = (float)x + 0.5f;
            int in = 1;
            for (int i = 0; i < 3 && in; i++) {
                float e = ex[i] * (py - p[i]->y) - ey[i] * (px - p[i]->x);
                in = e > 0.0f || (e == 0.0f && own[i]);
            }
            if (in) blend(row + (size_t)x * 3, a->r, a->g, a->b, a->a);
        }
    }
}

static void soft_image(const ew_scene *s, uint8_t *rgb, const ew_scene_img *im, const uint8_t *tex) {
    float ux = im->qx[1] - im->qx[0], uy = im->qy[1] - im->qy[0];
    float vx = im->qx[3] - im->qx[0], vy = im->qy[3] - im->qy[0];
    float det = ux * vy - uy * vx;
    if (!(det != 0.0f)) return;
    float minx = im->qx[0], maxx = im->qx[0], miny = im->qy[0], maxy = im->qy[0];
    for (int i = 1; i < 4; i++) {
        minx = fminf(minx, im->qx[i]);
        maxx = fmaxf(maxx, im->qx[i]);
        miny = fminf(miny, im->qy[i]);
        maxy = fmaxf(maxy, im->qy[i]);
    }
    int x0 = (int)ceilf(minx - 0.5f), x1 = (int)floorf(maxx - 0.5f);
    int y0 = (int)ceilf(miny - 0.5f), y1 = (int)floorf(maxy - 0.5f);
    if (x0 < 0) x0 = 0;
    if (y0 < 0) y0 = 0;
    if (x1 > s->width - 1) x1 = s->width - 1;
    if (y1 > s->height - 1) y1 = s->height - 1;
    for (int y = y0; y <= y1; y++) {
        float py = (float)y + 0.5f - im->qy[0];
        uint8_t *row = rgb + (size_t)y * (size_t)s->width * 3;
        for (int x = x0; x <= x1; x++) {
            float px = (float)x + 0.5f - im->qx[0];
            float u = (px * vy - py * vx) / det, v = (ux * py - uy * px) / det;
            if (!(u >= 0.0f && u < 1.0f && v >= 0.0f && v < 1.0f)) continue;
            int tx = (int)(u * (float)im->w), ty = (int)(v * (float)im->h);
            if (tx >= im->w) tx = im->w - 1;
            if (ty >= im->h) ty = im->h - 1;
            const uint8_t *t = tex + ((size_t)ty * (size_t)im->w + (size_t)tx) * 4;
            blend(row + (size_t)x * 3, t[0], t[1], t[2], t[3]);
        }
    }
}

void ew_scene_render_soft(const ew_scene *s, uint8_t *rgb) {
    size_t n = (size_t)s->width * (size_t)s->height;
    for (size_t i = 0; i < n; i++) {
        rgb[3 * i] = s->clear[0];
        rgb[3 * i + 1] = s->clear[1];
        rgb[3 * i + 2] = s->clear[2];
    }
    for (int k = 0; k < s->ncmd; k++) {
        const ew_scene_cmd *c = &s->cmd[k];
        if (c->kind == EW_CMD_TRIS) {
            for (int i = c->first; i + 2 < c->first + c->count; i += 3)
                soft_tri(s, rgb, &s->v[i], &s->v[i + 1], &s->v[i + 2]);
        } else {
            const ew_scene_img *im = &s->img[c->first];
            soft_image(s, rgb, im, s->pix + im->off);
        }
    }
}
