/* viewer.c - the viewer loop: SDL2 + OpenGL window (or headless software rendering),
 * fixed-step simulation decoupled from rendering, input, overlays, recording. */
#define _POSIX_C_SOURCE 200809L
#include "viz/viewer.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <SDL.h>
#include <SDL_opengl.h>

#include "sim/fsutil.h"
#include "sim/png.h"
#include "sim/raster.h"
#include "viz/preview.h"

static int fail(char *err, int errlen, const char *fmt, const char *a) {
    if (err && errlen > 0) snprintf(err, (size_t)errlen, fmt, a);
    return -1;
}

void ew_viewer_opts_default(ew_viewer_opts *o) {
    memset(o, 0, sizeof *o);
    o->width = 1280;
    o->height = 720;
    o->max_steps_per_frame = 8;
    o->speed = 1.0f;
    o->zoom = 6.0f;
    o->overlays = (1u << EW_OVL_COUNT) - 1u;
    o->seed = 1;
}

void ew_viewer_print_keys(FILE *out) {
    const char *const *k = ew_viz_key_lines();
    for (int i = 0; k[i]; i++) fprintf(out, "  %s\n", k[i]);
}

int ew_viewer_display_available(void) {
    const char *d = getenv("DISPLAY"), *wl = getenv("WAYLAND_DISPLAY");
    if (!(d && d[0]) && !(wl && wl[0])) return 0;
    if (SDL_InitSubSystem(SDL_INIT_VIDEO) != 0) return 0;
    SDL_QuitSubSystem(SDL_INIT_VIDEO);
    return 1;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- manual driving: a controller that wraps the user's ------------------------------ */

typedef struct {
    ew_controller *inner;
    int manual;
    int up, down, left, right;
} drive_ctx;

static int drive_act(void *ctx, const ew_world *w, ew_action *out, char *err, int errlen) {
    drive_ctx *d = (drive_ctx *)ctx;
    if (!d->manual) {
        if (d->inner) return ew_controller_act(d->inner, w, out, err, errlen);
        out->a = 0.0f;
        out->b = 0.0f;
        return 0;
    }
    const ew_kin_state *e = ew_world_ego(w);
    float s = e->s > 3.0f ? e->s : 3.0f;
    ew_action u;
    u.a = d->up ? 2.5f : (d->down ? -5.0f : 0.0f);
    if (d->left != d->right) {
        u.b = (d->left ? 1.0f : -1.0f) * 0.12f / s; /* a yaw rate of 0.12 rad/s */
    } else {
        float th = atan2f(e->dy, e->dx);           /* released: turn back along the road */
        u.b = -1.5f * th / s;
    }
    *out = ew_kin_clip(&ew_world_config_of(w)->ego_limits, u);
    return 0;
}

/* The controller keeps its history (frames, states) even while the user drives. */
static void drive_observe(void *ctx, const ew_world *w) {
    drive_ctx *d = (drive_ctx *)ctx;
    if (d->inner && d->inner->observe) d->inner->observe(d->inner->ctx, w);
}

static void drive_reset(void *ctx, const ew_world *w) {
    drive_ctx *d = (drive_ctx *)ctx;
    if (d->inner && d->inner->reset) d->inner->reset(d->inner->ctx, w);
}

/* ---- recording ------------------------------------------------------------------------ */

typedef struct {
    int kind; /* 0 none, 1 PNG directory, 2 ffmpeg pipe */
    char dir[1024];
    FILE *pipe;
    long n;
} recorder;

static int has_suffix(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static int is_video_path(const char *p) {
    return has_suffix(p, ".mp4") || has_suffix(p, ".mkv") || has_suffix(p, ".webm") || has_suffix(p, ".mov");
}

/* 1 when an executable named prog is on PATH. */
static int on_path(const char *prog) {
    const char *path = getenv("PATH");
    if (!path) return 0;
    char buf[4096];
    while (*path) {
        const char *e = strchr(path, ':');
        size_t n = e ? (size_t)(e - path) : strlen(path);
        if (n > 0 && n + strlen(prog) + 2 < sizeof buf) {
            memcpy(buf, path, n);
            buf[n] = '/';
            strcpy(buf + n + 1, prog);
            if (access(buf, X_OK) == 0) return 1;
        }
        if (!e) break;
        path = e + 1;
    }
    return 0;
}

static int recorder_open(recorder *r, const char *target, int w, int h, float fps, int quiet, char *err, int errlen) {
    memset(r, 0, sizeof *r);
    if (!target) return 0;
    if (is_video_path(target)) {
        if (!on_path("ffmpeg"))
            return fail(err, errlen,
                        "--record %s: ffmpeg is not on PATH (install ffmpeg, or record PNG frames with --record DIR)",
                        target);
        if (strchr(target, '\'')) return fail(err, errlen, "--record %s: the file name must not contain a quote", target);
        char cmd[2048];
        int k = snprintf(cmd, sizeof cmd,
                         "ffmpeg -y -loglevel error -f rawvideo -pix_fmt rgb24 -s %dx%d -r %.3f -i - "
                         "-c:v libx264 -pix_fmt yuv420p '%s'",
                         w, h, (double)fps, target);
        if (k < 0 || k >= (int)sizeof cmd) return fail(err, errlen, "--record %s: path too long", target);
        r->pipe = popen(cmd, "w");
        if (!r->pipe) return fail(err, errlen, "--record %s: cannot start ffmpeg", target);
        r->kind = 2;
        if (!quiet) fprintf(stderr, "egoworld: recording %dx%d at %.1f fps to %s (ffmpeg)\n", w, h, (double)fps, target);
        return 0;
    }
    if (strlen(target) >= sizeof r->dir - 32) return fail(err, errlen, "--record %s: path too long", target);
    if (ew_mkdir_p(target) != 0) return fail(err, errlen, "--record: cannot create directory '%s'", target);
    snprintf(r->dir, sizeof r->dir, "%s", target);
    r->kind = 1;
    if (!quiet) fprintf(stderr, "egoworld: recording PNG frames to %s/\n", target);
    return 0;
}

static int recorder_frame(recorder *r, const uint8_t *rgb, int w, int h, char *err, int errlen) {
    if (r->kind == 1) {
        char path[1100];
        snprintf(path, sizeof path, "%s/frame_%06ld.png", r->dir, r->n);
        if (ew_png_write_rgb(path, rgb, w, h, err, errlen) != 0) return -1;
    } else if (r->kind == 2) {
        size_t bytes = (size_t)w * (size_t)h * 3;
        if (fwrite(rgb, 1, bytes, r->pipe) != bytes) return fail(err, errlen, "--record: %s", "writing to ffmpeg failed");
    }
    r->n++;
    return 0;
}

static int recorder_close(recorder *r, char *err, int errlen) {
    int rc = 0;
    if (r->kind == 2 && r->pipe) {
        int st = pclose(r->pipe);
        if (st != 0) rc = fail(err, errlen, "--record: %s", "ffmpeg failed (exit status non-zero)");
    }
    r->pipe = NULL;
    r->kind = 0;
    return rc;
}

/* ---- OpenGL backend for scenes ---------------------------------------------------------- */

typedef struct {
    GLuint *tex;
    int ntex;
} gl_state;

static int gl_render(gl_state *g, const ew_scene *s) {
    if (s->nimg > g->ntex) {
        GLuint *t = realloc(g->tex, (size_t)s->nimg * sizeof(GLuint));
        if (!t) return -1;
        g->tex = t;
        glGenTextures(s->nimg - g->ntex, g->tex + g->ntex);
        for (int i = g->ntex; i < s->nimg; i++) {
            glBindTexture(GL_TEXTURE_2D, g->tex[i]);
            glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MIN_FILTER, GL_NEAREST);
            glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MAG_FILTER, GL_NEAREST);
            glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_WRAP_S, GL_CLAMP_TO_EDGE);
            glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_WRAP_T, GL_CLAMP_TO_EDGE);
        }
        g->ntex = s->nimg;
    }
    glViewport(0, 0, s->width, s->height);
    glMatrixMode(GL_PROJECTION);
    glLoadIdentity();
    glOrtho(0.0, (double)s->width, (double)s->height, 0.0, -1.0, 1.0);
    glMatrixMode(GL_MODELVIEW);
    glLoadIdentity();
    glDisable(GL_DEPTH_TEST);
    glDisable(GL_CULL_FACE);
    glDisable(GL_DITHER);
    glClearColor((float)s->clear[0] / 255.0f, (float)s->clear[1] / 255.0f, (float)s->clear[2] / 255.0f, 1.0f);
    glClear(GL_COLOR_BUFFER_BIT);
    glEnable(GL_BLEND);
    glBlendFunc(GL_SRC_ALPHA, GL_ONE_MINUS_SRC_ALPHA);
    glPixelStorei(GL_UNPACK_ALIGNMENT, 1);
    glEnableClientState(GL_VERTEX_ARRAY);
    glEnableClientState(GL_COLOR_ARRAY);
    if (s->nv > 0) {
        glVertexPointer(2, GL_FLOAT, (GLsizei)sizeof(ew_vtx), &s->v[0].x);
        glColorPointer(4, GL_UNSIGNED_BYTE, (GLsizei)sizeof(ew_vtx), &s->v[0].r);
    }
    for (int k = 0; k < s->ncmd; k++) {
        const ew_scene_cmd *c = &s->cmd[k];
        if (c->kind == EW_CMD_TRIS) {
            glDrawArrays(GL_TRIANGLES, c->first, c->count);
            continue;
        }
        const ew_scene_img *im = &s->img[c->first];
        glBindTexture(GL_TEXTURE_2D, g->tex[c->first]);
        glTexImage2D(GL_TEXTURE_2D, 0, GL_RGBA8, im->w, im->h, 0, GL_RGBA, GL_UNSIGNED_BYTE, s->pix + im->off);
        glDisableClientState(GL_COLOR_ARRAY);
        glEnable(GL_TEXTURE_2D);
        glTexEnvi(GL_TEXTURE_ENV, GL_TEXTURE_ENV_MODE, GL_REPLACE);
        static const float tc[8] = {0, 0, 1, 0, 1, 1, 0, 1};
        glBegin(GL_QUADS);
        for (int i = 0; i < 4; i++) {
            glTexCoord2f(tc[2 * i], tc[2 * i + 1]);
            glVertex2f(im->qx[i], im->qy[i]);
        }
        glEnd();
        glDisable(GL_TEXTURE_2D);
        glEnableClientState(GL_COLOR_ARRAY);
    }
    glDisableClientState(GL_VERTEX_ARRAY);
    glDisableClientState(GL_COLOR_ARRAY);
    return glGetError() == GL_NO_ERROR ? 0 : -1;
}

/* glReadPixels is bottom-up: read into rgb and flip to top-down. */
static void gl_read(uint8_t *rgb, int w, int h) {
    glPixelStorei(GL_PACK_ALIGNMENT, 1);
    glReadBuffer(GL_BACK);
    glReadPixels(0, 0, w, h, GL_RGB, GL_UNSIGNED_BYTE, rgb);
    size_t row = (size_t)w * 3;
    for (int y = 0; y < h / 2; y++) {
        uint8_t *a = rgb + (size_t)y * row, *b = rgb + (size_t)(h - 1 - y) * row;
        for (size_t i = 0; i < row; i++) {
            uint8_t t = a[i];
            a[i] = b[i];
            b[i] = t;
        }
    }
}

/* ---- the loop ------------------------------------------------------------------------- */

typedef struct {
    const ew_viewer_opts *o;
    ew_world *w;
    ew_episode *ep;
    ew_controller *user_ctrl;
    ew_controller drive;
    drive_ctx dc;
    ew_overlay *ov;
    ew_preview_cfg pcfg;
    ew_raster_cfg rcfg;
    uint8_t *raster;
    int rc, rh, rw;
    ew_scene scene;
    uint8_t *rgb;
    int width, height;
    /* interaction */
    int paused, quit, quit_by_user, help, show[EW_OVL_COUNT], show_inset, show_hud;
    int pending_steps, shot, reset_req;
    float speed, zoom, pan_x, pan_y;
    double acc;
    uint64_t seed;
    char message[160];
    long message_until;
    /* measured */
    float accel, curv;
    long frames, steps;
    int ended;
} viewer;

static void set_message(viewer *v, const char *msg) {
    snprintf(v->message, sizeof v->message, "%s", msg);
    v->message_until = v->frames + 90;
}

static int fill_overlay(viewer *v, char *err, int errlen) {
    if (v->o->overlay) return v->o->overlay(v->o->overlay_ctx, v->w, v->ov, err, errlen);
    return ew_preview_fill(&v->pcfg, v->w, v->ov, err, errlen);
}

static int do_reset(viewer *v, char *err, int errlen) {
    v->seed++;
    if (v->o->reset) {
        if (v->o->reset(v->o->reset_ctx, v->w, v->ep, v->user_ctrl, v->seed, err, errlen) != 0) return -1;
    } else {
        ew_episode_cfg cfg = v->ep->cfg;
        ew_world_reset(v->w, v->seed);
        if (v->user_ctrl && v->user_ctrl->reset) v->user_ctrl->reset(v->user_ctrl->ctx, v->w);
        ew_episode_begin(v->ep, &cfg, v->w);
    }
    v->ended = v->ep->m.status != EW_EP_RUNNING;
    v->accel = v->curv = 0.0f;
    char msg[64];
    snprintf(msg, sizeof msg, "reset with seed %llu", (unsigned long long)v->seed);
    set_message(v, msg);
    return fill_overlay(v, err, errlen);
}

/* One simulation step (no-op once the episode has ended). */
static int sim_step(viewer *v, char *err, int errlen) {
    if (v->ended) return 0;
    ew_kin_state before = *ew_world_ego(v->w);
    int running = ew_episode_step(v->ep, v->w, &v->drive);
    const ew_kin_state *e = ew_world_ego(v->w);
    float dt = ew_world_config_of(v->w)->dt;
    v->accel = (e->s - before.s) / dt;
    float dth = atan2f(before.dx * e->dy - before.dy * e->dx, before.dx * e->dx + before.dy * e->dy);
    v->curv = before.s > 0.05f ? tanf(dth) / (before.s * dt) : 0.0f;
    v->steps++;
    if (!running) {
        v->ended = 1;
        if (v->ep->m.status == EW_EP_ERROR)
            return fail(err, errlen, "episode error: %s", v->ep->m.error);
        char msg[96];
        snprintf(msg, sizeof msg, "episode ended: %s (r: new episode)", v->ep->m.label);
        set_message(v, msg);
    }
    return fill_overlay(v, err, errlen);
}

static void key_event(viewer *v, int key, int down) {
    drive_ctx *d = &v->dc;
    if (key == EW_KEY_UP || key == EW_KEY_DOWN || key == EW_KEY_LEFT || key == EW_KEY_RIGHT) {
        if (down) d->manual = 1;
        if (key == EW_KEY_UP) d->up = down;
        if (key == EW_KEY_DOWN) d->down = down;
        if (key == EW_KEY_LEFT) d->left = down;
        if (key == EW_KEY_RIGHT) d->right = down;
        return;
    }
    if (!down) return;
    switch (key) {
    case ' ': v->paused = !v->paused; break;
    case 'n': case '.': v->pending_steps++; break;
    case '+': case '=': if (v->speed < 64.0f) v->speed *= 2.0f; break;
    case '-': case '_': if (v->speed > 1.0f / 16.0f) v->speed *= 0.5f; break;
    case 'r': v->reset_req = 1; break; /* handled in the loop (may fail) */
    case '1': case 't': v->show[EW_OVL_PLAN] ^= 1; break;
    case '2': case 'f': v->show[EW_OVL_FUTURES] ^= 1; break;
    case '3': case 'c': v->show[EW_OVL_COST] ^= 1; break;
    case '4': case 'e': v->show[EW_OVL_ELLIPSES] ^= 1; break;
    case 'i': v->show_inset ^= 1; break;
    case 'u': v->show_hud ^= 1; break;
    case 'm': d->manual = 0; d->up = d->down = d->left = d->right = 0; break;
    case 'h': v->help ^= 1; break;
    case 'p': case EW_KEY_F12: v->shot = 1; break;
    case '0': case EW_KEY_HOME: v->pan_x = v->pan_y = 0.0f; v->zoom = v->o->zoom > 0.0f ? v->o->zoom : 6.0f; break;
    case EW_KEY_WHEEL_UP: v->zoom = fminf(v->zoom * 1.2f, 80.0f); break;
    case EW_KEY_WHEEL_DOWN: v->zoom = fmaxf(v->zoom / 1.2f, 0.25f); break;
    case 'q': case EW_KEY_ESC: v->quit = 1; v->quit_by_user = 1; break;
    default: break;
    }
}

static int map_sdl_key(SDL_Keycode k) {
    switch (k) {
    case SDLK_UP: return EW_KEY_UP;
    case SDLK_DOWN: return EW_KEY_DOWN;
    case SDLK_LEFT: return EW_KEY_LEFT;
    case SDLK_RIGHT: return EW_KEY_RIGHT;
    case SDLK_F12: return EW_KEY_F12;
    case SDLK_HOME: return EW_KEY_HOME;
    case SDLK_ESCAPE: return EW_KEY_ESC;
    case SDLK_KP_PLUS: return '+';
    case SDLK_KP_MINUS: return '-';
    case SDLK_KP_PERIOD: return '.';
    default: break;
    }
    if (k >= 32 && k < 127) return (int)k;
    return 0;
}

static ew_camera camera_of(const viewer *v) {
    ew_camera c;
    const ew_kin_state *e = ew_world_ego(v->w);
    c.w = v->width;
    c.h = v->height;
    c.ppm = v->zoom;
    /* the ego sits a quarter of the width from the left edge: more road ahead is visible */
    c.cx = e->x + 0.25f * (float)v->width / v->zoom + v->pan_x;
    c.cy = e->y + v->pan_y;
    return c;
}

static int screenshot(viewer *v, char *err, int errlen) {
    char path[1200];
    const char *dir = v->o->screenshot_dir ? v->o->screenshot_dir : ".";
    snprintf(path, sizeof path, "%s/egoworld_%llu_%06ld.png", dir, (unsigned long long)v->seed, v->frames);
    if (ew_png_write_rgb(path, v->rgb, v->width, v->height, err, errlen) != 0) return -1;
    char msg[160];
    snprintf(msg, sizeof msg, "screenshot: %.140s", path);
    set_message(v, msg);
    if (!v->o->quiet) fprintf(stderr, "egoworld: %s\n", msg);
    return 0;
}

static int viewer_init(viewer *v, const ew_viewer_opts *o, ew_world *w, ew_episode *ep, ew_controller *ctrl,
                       char *err, int errlen) {
    memset(v, 0, sizeof *v);
    v->o = o;
    v->w = w;
    v->ep = ep;
    v->user_ctrl = ctrl;
    v->dc.inner = ctrl;
    v->drive.name = ctrl ? ctrl->name : "none";
    v->drive.ctx = &v->dc;
    v->drive.act = drive_act;
    v->drive.reset = drive_reset;
    v->drive.observe = drive_observe;
    v->width = o->width > 0 ? o->width : 1280;
    v->height = o->height > 0 ? o->height : 720;
    v->paused = o->start_paused;
    v->speed = o->speed > 0.0f ? o->speed : 1.0f;
    v->zoom = o->zoom > 0.0f ? o->zoom : 6.0f;
    v->seed = o->seed;
    v->show_inset = !o->hide_inset;
    v->show_hud = !o->hide_hud;
    for (int k = 0; k < EW_OVL_COUNT; k++) v->show[k] = (o->overlays >> k) & 1u;
    v->ended = ep->m.status != EW_EP_RUNNING;
    ew_scene_init(&v->scene);
    ew_raster_cfg_default(&v->rcfg);
    v->rc = EW_RASTER_CHANNELS;
    v->rh = v->rcfg.rows;
    v->rw = v->rcfg.cols;
    v->pcfg.horizon = 30;
    v->pcfg.m_per_px = v->rcfg.m_per_px;
    v->ov = calloc(1, sizeof *v->ov);
    v->raster = malloc((size_t)v->rc * (size_t)v->rh * (size_t)v->rw);
    v->rgb = malloc((size_t)v->width * (size_t)v->height * 3);
    if (!v->ov || !v->raster || !v->rgb) return fail(err, errlen, "viewer: %s", "out of memory");
    return fill_overlay(v, err, errlen);
}

static void viewer_free(viewer *v) {
    free(v->ov);
    free(v->raster);
    free(v->rgb);
    ew_scene_free(&v->scene);
}

static int build_frame(viewer *v, float sim_rate, float render_rate, ew_viz_input *in, char *err, int errlen) {
    if (ew_raster_world(&v->rcfg, v->w, v->raster, err, errlen) != 0) return -1;
    memset(in, 0, sizeof *in);
    in->w = v->w;
    in->ep = v->ep;
    in->ov = v->ov;
    in->raster.c = v->rc;
    in->raster.h = v->rh;
    in->raster.w = v->rw;
    in->raster.m_per_px = v->rcfg.m_per_px;
    in->raster.data = v->raster;
    in->cam = camera_of(v);
    for (int k = 0; k < EW_OVL_COUNT; k++) in->show[k] = v->show[k];
    in->show_inset = v->show_inset;
    in->show_hud = v->show_hud;
    in->show_help = v->help;
    in->accel = v->accel;
    in->curv = v->curv;
    in->sim_rate = sim_rate;
    in->render_rate = render_rate;
    in->speed_factor = v->speed;
    in->paused = v->paused;
    in->manual = v->dc.manual;
    in->seed = v->seed;
    in->controller = v->user_ctrl ? v->user_ctrl->name : "none";
    in->message = v->frames < v->message_until ? v->message : NULL;
    if (ew_viz_build(&v->scene, in) != 0) return fail(err, errlen, "viewer: %s", "out of memory building the frame");
    return 0;
}

static int frame_callback(viewer *v, const ew_viz_input *in, char *err, int errlen) {
    if (!v->o->on_frame) return 0;
    ew_viewer_frame f;
    memset(&f, 0, sizeof f);
    f.rgb = v->rgb;
    f.width = v->width;
    f.height = v->height;
    f.frame = v->frames;
    f.steps = v->steps;
    f.cam = in->cam;
    if (in->show_inset) {
        int has_cost = in->show[EW_OVL_COST] && v->ov->cost_h > 0 && v->ov->cost_w > 0;
        ew_viz_inset_layout_for(v->width, v->height, v->rc, v->rh, v->rw, has_cost, &f.inset);
    }
    f.raster = v->raster;
    f.rc = v->rc;
    f.rh = v->rh;
    f.rw = v->rw;
    f.world = v->w;
    f.ep = v->ep;
    f.ov = v->ov;
    f.paused = v->paused;
    return v->o->on_frame(v->o->frame_ctx, &f, err, errlen);
}

int ew_viewer_run(const ew_viewer_opts *opts, ew_world *w, ew_episode *ep, ew_controller *ctrl, char *err,
                  int errlen) {
    ew_viewer_opts o;
    if (opts) o = *opts;
    else ew_viewer_opts_default(&o);
    int headless = o.headless;
    if (o.steps_per_frame <= 0 && (headless || o.record)) o.steps_per_frame = 1;
    if (headless) o.exit_on_end = 1;
    if (o.max_steps_per_frame <= 0) o.max_steps_per_frame = 8;

    viewer v;
    if (viewer_init(&v, &o, w, ep, ctrl, err, errlen) != 0) {
        viewer_free(&v);
        return -1;
    }
    if (o.stats) {
        memset(o.stats, 0, sizeof *o.stats);
        snprintf(o.stats->renderer, sizeof o.stats->renderer, "software (headless)");
    }
    SDL_Window *win = NULL;
    SDL_GLContext glc = NULL;
    gl_state gls = {NULL, 0};
    int rc = 0;
    if (!headless) {
        if (SDL_InitSubSystem(SDL_INIT_VIDEO) != 0) {
            rc = fail(err, errlen, "viewer: no display (SDL video: %s); use --headless", SDL_GetError());
            viewer_free(&v);
            return rc;
        }
        SDL_GL_SetAttribute(SDL_GL_CONTEXT_MAJOR_VERSION, 2);
        SDL_GL_SetAttribute(SDL_GL_CONTEXT_MINOR_VERSION, 1);
        SDL_GL_SetAttribute(SDL_GL_DOUBLEBUFFER, 1);
        Uint32 flags = SDL_WINDOW_OPENGL | (o.record ? 0 : SDL_WINDOW_RESIZABLE);
        win = SDL_CreateWindow("egoworld", SDL_WINDOWPOS_UNDEFINED, SDL_WINDOWPOS_UNDEFINED, v.width, v.height, flags);
        if (win) glc = SDL_GL_CreateContext(win);
        if (!win || !glc) {
            rc = fail(err, errlen, "viewer: cannot open an OpenGL window: %s", SDL_GetError());
            goto done;
        }
        SDL_GL_SetSwapInterval(o.vsync ? 1 : 0);
        if (o.stats) {
            const char *rn = (const char *)glGetString(GL_RENDERER), *ver = (const char *)glGetString(GL_VERSION);
            snprintf(o.stats->renderer, sizeof o.stats->renderer, "%s, OpenGL %s", rn ? rn : "?", ver ? ver : "?");
        }
        int dw, dh;
        SDL_GL_GetDrawableSize(win, &dw, &dh);
        if (dw != v.width || dh != v.height) {
            if (o.record) {
                rc = fail(err, errlen, "viewer: the window got another size than asked (%s)", "recording needs a fixed size");
                goto done;
            }
            v.width = dw;
            v.height = dh;
            uint8_t *nb = realloc(v.rgb, (size_t)dw * (size_t)dh * 3);
            if (!nb) {
                rc = fail(err, errlen, "viewer: %s", "out of memory");
                goto done;
            }
            v.rgb = nb;
        }
    }
    recorder rec;
    float fps_rec = 1.0f / ew_world_config_of(w)->dt * (float)(o.steps_per_frame > 0 ? 1 : 1);
    if (o.steps_per_frame > 1) fps_rec /= (float)o.steps_per_frame;
    if (recorder_open(&rec, o.record, v.width, v.height, fps_rec, o.quiet, err, errlen) != 0) {
        rc = -1;
        goto done;
    }

    double t_start = now_s(), t_prev = t_start, rate_t0 = t_start;
    long rate_frames = 0, rate_steps = 0, script_i = 0;
    float sim_rate = 0.0f, render_rate = 0.0f;
    double lock_acc = 0.0;
    const double dt = ew_world_config_of(w)->dt;
    while (!v.quit) {
        /* input */
        while (script_i < o.n_script && o.script[script_i].frame <= v.frames) {
            key_event(&v, o.script[script_i].key, o.script[script_i].down);
            script_i++;
        }
        if (!headless) {
            SDL_Event e;
            static const int dragging_button = SDL_BUTTON_LEFT;
            while (SDL_PollEvent(&e)) {
                if (e.type == SDL_QUIT) {
                    v.quit = 1;
                    v.quit_by_user = 1;
                } else if (e.type == SDL_KEYDOWN || e.type == SDL_KEYUP) {
                    if (e.type == SDL_KEYDOWN && e.key.repeat) continue;
                    int k = map_sdl_key(e.key.keysym.sym);
                    if (k) key_event(&v, k, e.type == SDL_KEYDOWN);
                } else if (e.type == SDL_MOUSEWHEEL) {
                    if (e.wheel.y > 0) key_event(&v, EW_KEY_WHEEL_UP, 1);
                    if (e.wheel.y < 0) key_event(&v, EW_KEY_WHEEL_DOWN, 1);
                } else if (e.type == SDL_MOUSEMOTION && (e.motion.state & SDL_BUTTON(dragging_button))) {
                    v.pan_x -= (float)e.motion.xrel / v.zoom;
                    v.pan_y += (float)e.motion.yrel / v.zoom;
                } else if (e.type == SDL_WINDOWEVENT && e.window.event == SDL_WINDOWEVENT_SIZE_CHANGED && !o.record) {
                    int dw, dh;
                    SDL_GL_GetDrawableSize(win, &dw, &dh);
                    if (dw > 0 && dh > 0 && (dw != v.width || dh != v.height)) {
                        uint8_t *nb = realloc(v.rgb, (size_t)dw * (size_t)dh * 3);
                        if (!nb) {
                            rc = fail(err, errlen, "viewer: %s", "out of memory");
                            goto stop;
                        }
                        v.rgb = nb;
                        v.width = dw;
                        v.height = dh;
                    }
                }
            }
        }
        if (v.reset_req) {
            v.reset_req = 0;
            v.pending_steps = 0;
            if (do_reset(&v, err, errlen) != 0) {
                rc = -1;
                break;
            }
        }
        /* how many fixed steps this frame */
        double t_now = now_s();
        int n = 0;
        if (!v.paused) {
            if (o.steps_per_frame > 0) {
                lock_acc += (double)o.steps_per_frame * (double)v.speed;
                n = (int)floor(lock_acc + 1e-9);
                lock_acc -= n;
            } else {
                v.acc += (t_now - t_prev) * (double)v.speed;
                n = (int)floor(v.acc / dt);
                if (n > o.max_steps_per_frame) {
                    n = o.max_steps_per_frame;
                    v.acc = 0.0; /* drop the backlog: the simulation falls behind real time */
                } else {
                    v.acc -= n * dt;
                }
            }
        } else {
            v.acc = 0.0;
        }
        t_prev = t_now;
        n += v.pending_steps;
        v.pending_steps = 0;
        for (int i = 0; i < n && !v.ended; i++) {
            if (o.max_steps > 0 && v.steps >= o.max_steps) break;
            if (sim_step(&v, err, errlen) != 0) {
                rc = -1;
                goto stop;
            }
            rate_steps++;
        }
        if (o.max_steps > 0 && v.steps >= o.max_steps) v.quit = 1;
        if (v.ended && o.exit_on_end) v.quit = 1;

        /* render */
        ew_viz_input in;
        if (build_frame(&v, headless ? -1.0f : sim_rate, headless ? -1.0f : render_rate, &in, err, errlen) != 0) {
            rc = -1;
            break;
        }
        int need_pixels = headless || rec.kind || o.on_frame || v.shot;
        if (headless) {
            ew_scene_render_soft(&v.scene, v.rgb);
        } else {
            if (gl_render(&gls, &v.scene) != 0) {
                rc = fail(err, errlen, "viewer: %s", "OpenGL error while drawing");
                break;
            }
            if (need_pixels) gl_read(v.rgb, v.width, v.height);
        }
        if (frame_callback(&v, &in, err, errlen) != 0 || recorder_frame(&rec, v.rgb, v.width, v.height, err, errlen) != 0) {
            rc = -1;
            break;
        }
        if (v.shot) {
            v.shot = 0;
            if (screenshot(&v, err, errlen) != 0) {
                rc = -1;
                break;
            }
        }
        if (!headless) SDL_GL_SwapWindow(win);
        v.frames++;
        rate_frames++;
        double t_after = now_s();
        if (t_after - rate_t0 >= 0.5) {
            render_rate = (float)((double)rate_frames / (t_after - rate_t0));
            sim_rate = (float)((double)rate_steps / (t_after - rate_t0));
            rate_frames = rate_steps = 0;
            rate_t0 = t_after;
        }
        if (o.max_frames > 0 && v.frames >= o.max_frames) v.quit = 1;
    }
stop:;
    double wall = now_s() - t_start;
    {
        char e2[256];
        if (recorder_close(&rec, e2, (int)sizeof e2) != 0 && rc == 0) {
            rc = -1;
            snprintf(err, (size_t)errlen, "%s", e2);
        }
    }
    if (o.stats) {
        o.stats->frames = v.frames;
        o.stats->steps = v.steps;
        o.stats->wall_s = wall;
        o.stats->fps = wall > 0.0 ? (double)v.frames / wall : 0.0;
        o.stats->sps = wall > 0.0 ? (double)v.steps / wall : 0.0;
        o.stats->quit_by_user = v.quit_by_user;
    }
done:
    if (gls.tex) {
        glDeleteTextures(gls.ntex, gls.tex);
        free(gls.tex);
    }
    if (glc) SDL_GL_DeleteContext(glc);
    if (win) SDL_DestroyWindow(win);
    if (!headless) SDL_QuitSubSystem(SDL_INIT_VIDEO);
    viewer_free(&v);
    return rc;
}
