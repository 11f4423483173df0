/* traj.c - trajectory datasets: encoder, writer, shard parser, reader (see traj.h and
 * docs/DATASET.md for the byte layout). Rendering of batches: traj_fill.c. */
#define _POSIX_C_SOURCE 200809L
#include "sim/traj.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sim/fsutil.h"
#include "sim/rng.h"
#include "sim/traj_internal.h"
#include "sim/world.h"

/* ---- little-endian byte helpers -------------------------------------------------------- */
static void put_u16(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_f32(uint8_t *p, float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    put_u32(p, u);
}
uint32_t ew_traj_get_u16(const uint8_t *p) { return (uint32_t)p[0] | ((uint32_t)p[1] << 8); }
uint32_t ew_traj_get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t get_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
float ew_traj_get_f32(const uint8_t *p) {
    uint32_t u = ew_traj_get_u32(p);
    float f;
    memcpy(&f, &u, 4);
    return f;
}
#define get_u16 ew_traj_get_u16
#define get_u32 ew_traj_get_u32
#define get_f32 ew_traj_get_f32

static void seterr(char *err, int errlen, const char *fmt, ...) {
    if (!err || errlen <= 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, (size_t)errlen, fmt, ap);
    va_end(ap);
}

/* CRC-32 (IEEE 802.3, reflected 0xEDB88320), table built per call (1 KB on the stack). */
static uint32_t crc32_buf(const uint8_t *p, size_t n) {
    uint32_t t[256];
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        t[i] = c;
    }
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) c = t[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

/* ---- growable byte buffer ---------------------------------------------------------------- */
typedef struct {
    uint8_t *p;
    size_t n, cap;
} bytes;

static uint8_t *bytes_grow(bytes *b, size_t add) {
    if (b->n + add > b->cap) {
        size_t nc = b->cap ? b->cap : 4096;
        while (nc < b->n + add) nc *= 2;
        uint8_t *q = realloc(b->p, nc);
        if (!q) return NULL;
        b->p = q;
        b->cap = nc;
    }
    uint8_t *r = b->p + b->n;
    b->n += add;
    return r;
}

/* ---- road (de)serialisation ------------------------------------------------------------- */
static void road_put(uint8_t *p, const ew_road *r) {
    memset(p, 0, EW_TRAJ_ROAD_BYTES);
    put_f32(p + 0, r->length);
    put_f32(p + 4, r->dash_len);
    put_f32(p + 8, r->dash_gap);
    put_f32(p + 12, r->marking_width);
    p[16] = (uint8_t)r->n_main;
    p[17] = (uint8_t)r->n_lanes;
    for (int l = 0; l < EW_MAX_LANES && l < r->n_lanes; l++) {
        uint8_t *q = p + 20 + 32 * l;
        const ew_lane *L = &r->lanes[l];
        q[0] = (uint8_t)L->kind;
        q[1] = (uint8_t)(int8_t)L->merge_side;
        q[2] = (uint8_t)(L->exit_at_end != 0);
        put_f32(q + 4, L->y_right);
        put_f32(q + 8, L->width);
        put_f32(q + 12, L->x_start);
        put_f32(q + 16, L->x_end);
        put_f32(q + 20, L->taper_in);
        put_f32(q + 24, L->taper_out);
        put_f32(q + 28, L->speed_limit);
    }
}

/* 0 or -1 (message without the location prefix). */
static int road_get(const uint8_t *p, ew_road *r, char *err, int errlen) {
    memset(r, 0, sizeof *r);
    r->length = get_f32(p + 0);
    r->dash_len = get_f32(p + 4);
    r->dash_gap = get_f32(p + 8);
    r->marking_width = get_f32(p + 12);
    r->n_main = p[16];
    r->n_lanes = p[17];
    if (r->n_lanes < 1 || r->n_lanes > EW_MAX_LANES || r->n_main < 1 || r->n_main > EW_MAX_MAIN_LANES ||
        r->n_main > r->n_lanes) {
        seterr(err, errlen, "road lane counts %d/%d out of range", r->n_main, r->n_lanes);
        return -1;
    }
    for (int l = 0; l < r->n_lanes; l++) {
        const uint8_t *q = p + 20 + 32 * l;
        ew_lane *L = &r->lanes[l];
        if (q[0] > EW_LANE_OFFRAMP || q[2] > 1 || (int8_t)q[1] < -1 || (int8_t)q[1] > 1) {
            seterr(err, errlen, "road lane %d: bad kind/merge_side/exit flags", l);
            return -1;
        }
        L->kind = (ew_lane_kind)q[0];
        L->merge_side = (int8_t)q[1];
        L->exit_at_end = q[2];
        L->y_right = get_f32(q + 4);
        L->width = get_f32(q + 8);
        L->x_start = get_f32(q + 12);
        L->x_end = get_f32(q + 16);
        L->taper_in = get_f32(q + 20);
        L->taper_out = get_f32(q + 24);
        L->speed_limit = get_f32(q + 28);
    }
    char m[200];
    if (ew_road_validate(r, m, (int)sizeof m) != 0) {
        seterr(err, errlen, "road invalid: %s", m);
        return -1;
    }
    return 0;
}

/* ---- episode encoder -------------------------------------------------------------------- */
struct ew_traj_enc {
    int active, ended;
    char scenario[EW_TRAJ_NAME_MAX + 1], label[EW_TRAJ_NAME_MAX + 1];
    uint64_t seed;
    float ego_len, ego_wid;
    uint32_t n_steps, n_roads, n_tracks;
    int64_t vsteps;
    bytes roads, tracks, steps, recs;
    uint8_t last_road[EW_TRAJ_ROAD_BYTES];
    /* id -> track: open addressing, keys id + 1 (0 = empty) */
    uint32_t *hkey, *hval;
    size_t hcap, hn;
    bytes block; /* the finished episode block */
};

ew_traj_enc *ew_traj_enc_create(void) { return calloc(1, sizeof(ew_traj_enc)); }

void ew_traj_enc_free(ew_traj_enc *e) {
    if (!e) return;
    free(e->roads.p);
    free(e->tracks.p);
    free(e->steps.p);
    free(e->recs.p);
    free(e->block.p);
    free(e->hkey);
    free(e->hval);
    free(e);
}

static void copy_name(char *dst, const char *src) {
    size_t n = src ? strlen(src) : 0;
    if (n > EW_TRAJ_NAME_MAX) n = EW_TRAJ_NAME_MAX;
    if (n) memcpy(dst, src, n);
    dst[n] = 0;
}

int ew_traj_enc_begin(ew_traj_enc *e, const char *scenario, uint64_t seed, const ew_road *road, float ego_len,
                      float ego_wid, char *err, int errlen) {
    if (!e || !road) {
        seterr(err, errlen, "traj: begin: no encoder or road");
        return -1;
    }
    if (!(ego_len > 0.0f && ego_wid > 0.0f && isfinite(ego_len) && isfinite(ego_wid))) {
        seterr(err, errlen, "traj: begin: ego size %g x %g is not positive", (double)ego_len, (double)ego_wid);
        return -1;
    }
    char m[200];
    if (ew_road_validate(road, m, (int)sizeof m) != 0) {
        seterr(err, errlen, "traj: begin: road: %s", m);
        return -1;
    }
    e->active = 1;
    e->ended = 0;
    copy_name(e->scenario, scenario);
    e->label[0] = 0;
    e->seed = seed;
    e->ego_len = ego_len;
    e->ego_wid = ego_wid;
    e->n_steps = e->n_roads = e->n_tracks = 0;
    e->vsteps = 0;
    e->roads.n = e->tracks.n = e->steps.n = e->recs.n = e->block.n = 0;
    road_put(e->last_road, road);
    if (e->hkey) memset(e->hkey, 0, e->hcap * sizeof *e->hkey);
    e->hn = 0;
    return 0;
}

static size_t hslot(const ew_traj_enc *e, uint32_t id) {
    uint64_t h = (uint64_t)id * 0x9E3779B97F4A7C15ULL;
    return (size_t)(h >> 32) & (e->hcap - 1);
}

static int hgrow(ew_traj_enc *e) {
    size_t nc = e->hcap ? e->hcap * 2 : 1024;
    uint32_t *k = calloc(nc, sizeof *k), *v = calloc(nc, sizeof *v);
    if (!k || !v) {
        free(k);
        free(v);
        return -1;
    }
    uint32_t *ok = e->hkey, *ov = e->hval;
    size_t oc = e->hcap;
    e->hkey = k;
    e->hval = v;
    e->hcap = nc;
    for (size_t i = 0; i < oc; i++)
        if (ok[i]) {
            size_t s = hslot(e, ok[i] - 1);
            while (e->hkey[s]) s = (s + 1) & (nc - 1);
            e->hkey[s] = ok[i];
            e->hval[s] = ov[i];
        }
    free(ok);
    free(ov);
    return 0;
}

/* Track index of (id, type, len, wid): a new track when the id is new or its constants changed. */
static int track_of(ew_traj_enc *e, uint32_t id, uint8_t type, float len, float wid) {
    if ((e->hn + 1) * 2 > e->hcap && hgrow(e) != 0) return -1;
    size_t s = hslot(e, id);
    while (e->hkey[s] && e->hkey[s] != id + 1u) s = (s + 1) & (e->hcap - 1);
    if (e->hkey[s]) {
        const uint8_t *t = e->tracks.p + 16 * (size_t)e->hval[s];
        if (t[4] == type && get_f32(t + 8) == len && get_f32(t + 12) == wid) return (int)e->hval[s];
    } else {
        e->hkey[s] = id + 1u;
        e->hn++;
    }
    if (e->n_tracks >= EW_TRAJ_MAX_TRACKS) return -2;
    uint8_t *t = bytes_grow(&e->tracks, 16);
    if (!t) return -1;
    memset(t, 0, 16);
    put_u32(t, id);
    t[4] = type;
    put_f32(t + 8, len);
    put_f32(t + 12, wid);
    e->hval[s] = e->n_tracks;
    return (int)e->n_tracks++;
}

typedef struct { float d; int i; } near_t;
static int near_cmp(const void *a, const void *b) {
    const near_t *p = a, *q = b;
    if (p->d != q->d) return p->d < q->d ? -1 : 1;
    return p->i - q->i;
}

int ew_traj_enc_step(ew_traj_enc *e, const struct ew_world *world, const ew_action *action, char *err,
                     int errlen) {
    if (!e || !e->active || e->ended) {
        seterr(err, errlen, "traj: step outside an episode");
        return -1;
    }
    if (e->n_steps >= EW_TRAJ_MAX_STEPS) {
        seterr(err, errlen, "traj: episode longer than %d steps", EW_TRAJ_MAX_STEPS);
        return -1;
    }
    const ew_kin_state *g = ew_world_ego(world);
    const ew_vehicles *V = ew_world_vehicles(world);
    float st[7] = {g->x, g->y, g->dx, g->dy, g->s, action ? action->a : 0.0f, action ? action->b : 0.0f};
    for (int k = 0; k < 7; k++)
        if (!isfinite(st[k])) {
            seterr(err, errlen, "traj: step %u: ego state/action not finite", e->n_steps);
            return -1;
        }
    /* the road: a new entry when it changed */
    uint8_t rb[EW_TRAJ_ROAD_BYTES];
    road_put(rb, ew_world_road(world));
    if (e->n_steps == 0 || memcmp(rb, e->last_road, sizeof rb) != 0) {
        uint8_t *p = bytes_grow(&e->roads, 4 + EW_TRAJ_ROAD_BYTES);
        if (!p) goto oom;
        put_u32(p, e->n_steps);
        memcpy(p + 4, rb, sizeof rb);
        memcpy(e->last_road, rb, sizeof rb);
        e->n_roads++;
    }
    /* the vehicles in range (nearest first when more than the cap) */
    near_t sel[EW_TRAJ_MAX_VEH];
    int n = 0, over = 0;
    near_t *all = NULL;
    for (int i = 0; i < V->n; i++) {
        float d = fabsf(V->x[i] - g->x);
        if (!(d <= EW_TRAJ_RANGE_M)) continue;
        if (n < EW_TRAJ_MAX_VEH) sel[n++] = (near_t){d, i};
        else over = 1;
    }
    if (over) {
        all = malloc((size_t)V->n * sizeof *all);
        if (!all) goto oom;
        int m = 0;
        for (int i = 0; i < V->n; i++) {
            float d = fabsf(V->x[i] - g->x);
            if (d <= EW_TRAJ_RANGE_M) all[m++] = (near_t){d, i};
        }
        qsort(all, (size_t)m, sizeof *all, near_cmp);
        memcpy(sel, all, sizeof sel);
        n = EW_TRAJ_MAX_VEH;
        free(all);
    }
    uint8_t *sp = bytes_grow(&e->steps, EW_TRAJ_STEP_BYTES);
    if (!sp) goto oom;
    memset(sp, 0, EW_TRAJ_STEP_BYTES);
    for (int k = 0; k < 7; k++) put_f32(sp + 4 * k, st[k]);
    put_u16(sp + 28, (uint32_t)n);
    for (int k = 0; k < n; k++) {
        int i = sel[k].i;
        float len = V->len[i], wid = V->wid[i], x = V->x[i], y = V->y[i], hx = V->hx[i], hy = V->hy[i];
        if (!(isfinite(x) && isfinite(y) && isfinite(hx) && isfinite(hy) && isfinite(V->v[i]) && len > 0.0f &&
              wid > 0.0f && isfinite(len) && isfinite(wid))) {
            seterr(err, errlen, "traj: step %u: vehicle %u has a non-finite state", e->n_steps, V->id[i]);
            return -1;
        }
        int tr = track_of(e, V->id[i], V->type[i], len, wid);
        if (tr == -2) {
            seterr(err, errlen, "traj: more than %d vehicle tracks in one episode", EW_TRAJ_MAX_TRACKS);
            return -1;
        }
        if (tr < 0) goto oom;
        int rot = !(hx == 1.0f && hy == 0.0f);
        uint8_t *p = bytes_grow(&e->recs, rot ? EW_TRAJ_REC_ROT : EW_TRAJ_REC_BASE);
        if (!p) goto oom;
        double vq = floor((double)V->v[i] / EW_TRAJ_V_QUANT + 0.5);
        if (vq < 0.0) vq = 0.0;
        if (vq > 65535.0) vq = 65535.0;
        put_u16(p, (uint32_t)tr | (rot ? 0x8000u : 0u));
        put_u16(p + 2, (uint32_t)vq);
        put_f32(p + 4, x);
        put_f32(p + 8, y);
        if (rot) {
            put_f32(p + 12, hx);
            put_f32(p + 16, hy);
        }
    }
    e->n_steps++;
    e->vsteps += n;
    return 0;
oom:
    seterr(err, errlen, "traj: out of memory");
    return -1;
}

int ew_traj_enc_end(ew_traj_enc *e, const char *label, char *err, int errlen) {
    if (!e || !e->active || e->ended) {
        seterr(err, errlen, "traj: end outside an episode");
        return -1;
    }
    if (e->n_steps == 0) {
        seterr(err, errlen, "traj: episode with no steps");
        return -1;
    }
    copy_name(e->label, label);
    size_t ls = strlen(e->scenario), ll = strlen(e->label);
    size_t head = EW_TRAJ_EP_HEAD + ((ls + ll + 3) & ~(size_t)3);
    size_t total = head + e->roads.n + e->tracks.n + e->steps.n + e->recs.n;
    if (e->recs.n > UINT32_MAX || total > UINT32_MAX) {
        seterr(err, errlen, "traj: episode block too large");
        return -1;
    }
    e->block.n = 0;
    uint8_t *p = bytes_grow(&e->block, total);
    if (!p) {
        seterr(err, errlen, "traj: out of memory");
        return -1;
    }
    memset(p, 0, head);
    memcpy(p, EW_TRAJ_EP_MAGIC, 4);
    put_u32(p + 8, e->n_steps);
    put_u32(p + 12, e->n_tracks);
    put_u32(p + 16, e->n_roads);
    put_u32(p + 20, (uint32_t)e->recs.n);
    put_u64(p + 24, e->seed);
    put_f32(p + 32, e->ego_len);
    put_f32(p + 36, e->ego_wid);
    p[40] = (uint8_t)ls;
    p[41] = (uint8_t)ll;
    memcpy(p + EW_TRAJ_EP_HEAD, e->scenario, ls);
    memcpy(p + EW_TRAJ_EP_HEAD + ls, e->label, ll);
    size_t o = head;
    memcpy(p + o, e->roads.p, e->roads.n);
    o += e->roads.n;
    if (e->tracks.n) memcpy(p + o, e->tracks.p, e->tracks.n);
    o += e->tracks.n;
    memcpy(p + o, e->steps.p, e->steps.n);
    o += e->steps.n;
    if (e->recs.n) memcpy(p + o, e->recs.p, e->recs.n);
    put_u32(p + 4, crc32_buf(p + 8, total - 8));
    e->ended = 1;
    return 0;
}

int ew_traj_enc_steps(const ew_traj_enc *e) { return e ? (int)e->n_steps : 0; }
int64_t ew_traj_enc_vehicle_steps(const ew_traj_enc *e) { return e ? e->vsteps : 0; }

/* export: vehicle-steps (u64) then the episode block exactly as a shard stores it */
int ew_traj_enc_export(const ew_traj_enc *e, void **buf, size_t *n, char *err, int errlen) {
    *buf = NULL;
    *n = 0;
    if (!e || !e->ended) {
        seterr(err, errlen, "traj: export: the episode has not ended");
        return -1;
    }
    uint8_t *p = malloc(8 + e->block.n);
    if (!p) {
        seterr(err, errlen, "traj: out of memory");
        return -1;
    }
    put_u64(p, (uint64_t)e->vsteps);
    memcpy(p + 8, e->block.p, e->block.n);
    *buf = p;
    *n = 8 + e->block.n;
    return 0;
}

int ew_traj_enc_import(ew_traj_enc *e, const void *buf, size_t n, char *err, int errlen) {
    const uint8_t *q = buf;
    if (!e || !buf || n < 8 + EW_TRAJ_EP_HEAD) {
        seterr(err, errlen, "traj: import: truncated episode");
        return -1;
    }
    const uint8_t *p = q + 8;
    size_t bn = n - 8;
    size_t ls = p[40], ll = p[41];
    if (memcmp(p, EW_TRAJ_EP_MAGIC, 4) || EW_TRAJ_EP_HEAD + ls + ll > bn || ls > EW_TRAJ_NAME_MAX ||
        ll > EW_TRAJ_NAME_MAX || get_u32(p + 4) != crc32_buf(p + 8, bn - 8)) {
        seterr(err, errlen, "traj: import: not an episode block (magic, names or checksum)");
        return -1;
    }
    e->block.n = 0;
    uint8_t *d = bytes_grow(&e->block, bn);
    if (!d) {
        seterr(err, errlen, "traj: out of memory");
        return -1;
    }
    memcpy(d, p, bn);
    e->vsteps = (int64_t)get_u64(q);
    e->n_steps = get_u32(p + 8);
    e->n_tracks = get_u32(p + 12);
    e->n_roads = get_u32(p + 16);
    e->seed = get_u64(p + 24);
    e->ego_len = get_f32(p + 32);
    e->ego_wid = get_f32(p + 36);
    memcpy(e->scenario, p + EW_TRAJ_EP_HEAD, ls);
    e->scenario[ls] = 0;
    memcpy(e->label, p + EW_TRAJ_EP_HEAD + ls, ll);
    e->label[ll] = 0;
    e->active = 1;
    e->ended = 1;
    return 0;
}

/* ---- writer ----------------------------------------------------------------------------- */
typedef struct {
    int64_t episodes, steps, vsteps, bytes;
} shard_info;

struct ew_traj_writer {
    ew_traj_writer_cfg cfg;
    char *dir, *mode, *command, *extra;
    bytes shard;          /* episode blocks of the open shard */
    bytes offsets;        /* u64 relative offsets of those blocks */
    int64_t shard_eps, shard_steps, shard_vsteps;
    shard_info *shards;
    int n_shards, cap_shards;
    char **scen;          /* distinct scenario names */
    int n_scen;
    int64_t episodes, steps, vsteps;
    ew_traj_enc *enc;     /* for begin/step/end */
};

void ew_traj_writer_cfg_default(ew_traj_writer_cfg *c) {
    memset(c, 0, sizeof *c);
    c->dt = 0.1f;
    c->split_seed = 1;
    c->frac_train = 0.8f;
    c->frac_val = 0.1f;
    c->mode = "reactive";
    c->shard_steps = 250000;
}

static char *dupstr(const char *s) {
    if (!s) s = "";
    size_t n = strlen(s);
    char *r = malloc(n + 1);
    if (r) memcpy(r, s, n + 1);
    return r;
}

static void writer_free(ew_traj_writer *w) {
    if (!w) return;
    free(w->dir);
    free(w->mode);
    free(w->command);
    free(w->extra);
    free(w->shard.p);
    free(w->offsets.p);
    free(w->shards);
    for (int i = 0; i < w->n_scen; i++) free(w->scen[i]);
    free(w->scen);
    ew_traj_enc_free(w->enc);
    free(w);
}

ew_traj_writer *ew_traj_writer_open(const ew_traj_writer_cfg *cfg, char *err, int errlen) {
    if (!cfg || !cfg->dir || !cfg->dir[0]) {
        seterr(err, errlen, "traj: no output directory");
        return NULL;
    }
    if (cfg->append) {
        seterr(err, errlen, "%s: appending to a dataset is not supported (write a new folder)", cfg->dir);
        return NULL;
    }
    if (!(cfg->dt > 0.0f && cfg->dt < 10.0f)) {
        seterr(err, errlen, "traj: dt %g out of range", (double)cfg->dt);
        return NULL;
    }
    if (!(cfg->frac_train >= 0.0f && cfg->frac_val >= 0.0f && cfg->frac_train + cfg->frac_val <= 1.0f)) {
        seterr(err, errlen, "traj: split fractions %g/%g invalid", (double)cfg->frac_train, (double)cfg->frac_val);
        return NULL;
    }
    const char *mode = cfg->mode ? cfg->mode : "reactive";
    if (strcmp(mode, "reactive") && strcmp(mode, "replay")) {
        seterr(err, errlen, "traj: mode '%s' is not reactive or replay", mode);
        return NULL;
    }
    if (ew_mkdir_p(cfg->dir) != 0) {
        seterr(err, errlen, "%s: cannot create directory: %s", cfg->dir, strerror(errno));
        return NULL;
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/manifest.json", cfg->dir);
    struct stat sb;
    if (stat(path, &sb) == 0) {
        seterr(err, errlen, "%s: already holds a dataset (manifest.json exists)", cfg->dir);
        return NULL;
    }
    snprintf(path, sizeof path, "%s/traj-0000.ewt", cfg->dir);
    if (stat(path, &sb) == 0) {
        seterr(err, errlen, "%s: already holds shards (traj-0000.ewt exists)", cfg->dir);
        return NULL;
    }
    ew_traj_writer *w = calloc(1, sizeof *w);
    if (!w) goto oom;
    w->cfg = *cfg;
    if (!w->cfg.shard_steps) w->cfg.shard_steps = 250000;
    w->dir = dupstr(cfg->dir);
    w->mode = dupstr(mode);
    w->command = dupstr(cfg->command);
    w->extra = dupstr(cfg->extra_json);
    w->enc = ew_traj_enc_create();
    if (!w->dir || !w->mode || !w->command || !w->extra || !w->enc) goto oom;
    return w;
oom:
    writer_free(w);
    seterr(err, errlen, "traj: out of memory");
    return NULL;
}

/* Writes buf to dir/name atomically (temporary file, fsync, rename, fsync of the folder). */
static int write_atomic(const char *dir, const char *name, const uint8_t *const *parts, const size_t *lens,
                        int nparts, char *err, int errlen) {
    char tmp[4300], dst[4300];
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp", dir, name);
    snprintf(dst, sizeof dst, "%s/%s", dir, name);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        seterr(err, errlen, "%s: cannot create: %s", tmp, strerror(errno));
        return -1;
    }
    for (int k = 0; k < nparts; k++) {
        size_t o = 0;
        while (o < lens[k]) {
            ssize_t r = write(fd, parts[k] + o, lens[k] - o);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) {
                seterr(err, errlen, "%s: write failed: %s", tmp, strerror(errno));
                close(fd);
                unlink(tmp);
                return -1;
            }
            o += (size_t)r;
        }
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        seterr(err, errlen, "%s: fsync/close failed: %s", tmp, strerror(errno));
        unlink(tmp);
        return -1;
    }
    if (rename(tmp, dst) != 0) {
        seterr(err, errlen, "%s: rename failed: %s", dst, strerror(errno));
        unlink(tmp);
        return -1;
    }
    int dfd = open(dir, O_RDONLY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
}

static int flush_shard(ew_traj_writer *w, char *err, int errlen) {
    if (w->shard_eps == 0) return 0;
    if (w->n_shards >= 10000) {
        seterr(err, errlen, "%s: more than 10000 shards", w->dir);
        return -1;
    }
    size_t head = EW_TRAJ_SHARD_HEAD + 8 * (size_t)w->shard_eps;
    uint8_t *h = calloc(1, head);
    if (!h) {
        seterr(err, errlen, "traj: out of memory");
        return -1;
    }
    memcpy(h, EW_TRAJ_MAGIC, 8);
    put_u32(h + 8, EW_TRAJ_VERSION);
    put_u32(h + 12, (uint32_t)w->n_shards);
    put_u32(h + 16, (uint32_t)w->shard_eps);
    put_f32(h + 20, w->cfg.dt);
    put_u64(h + 24, (uint64_t)(head + w->shard.n));
    for (int64_t k = 0; k < w->shard_eps; k++)
        put_u64(h + EW_TRAJ_SHARD_HEAD + 8 * k, get_u64(w->offsets.p + 8 * k) + head);
    char name[32];
    snprintf(name, sizeof name, "traj-%04d.ewt", w->n_shards);
    const uint8_t *parts[2] = {h, w->shard.p};
    size_t lens[2] = {head, w->shard.n};
    int rc = write_atomic(w->dir, name, parts, lens, 2, err, errlen);
    free(h);
    if (rc) return -1;
    if (w->n_shards == w->cap_shards) {
        int nc = w->cap_shards ? 2 * w->cap_shards : 8;
        shard_info *q = realloc(w->shards, (size_t)nc * sizeof *q);
        if (!q) {
            seterr(err, errlen, "traj: out of memory");
            return -1;
        }
        w->shards = q;
        w->cap_shards = nc;
    }
    w->shards[w->n_shards++] =
        (shard_info){w->shard_eps, w->shard_steps, w->shard_vsteps, (int64_t)(head + w->shard.n)};
    w->shard.n = w->offsets.n = 0;
    w->shard_eps = w->shard_steps = w->shard_vsteps = 0;
    return 0;
}

int ew_traj_writer_add(ew_traj_writer *w, const ew_traj_enc *e, char *err, int errlen) {
    if (!w || !e || !e->ended) {
        seterr(err, errlen, "traj: add: the episode has not ended");
        return -1;
    }
    if (w->shard_eps >= EW_TRAJ_MAX_EPISODES) {
        seterr(err, errlen, "traj: too many episodes in one shard");
        return -1;
    }
    uint8_t *o = bytes_grow(&w->offsets, 8);
    if (!o) goto oom;
    put_u64(o, w->shard.n);
    uint8_t *p = bytes_grow(&w->shard, e->block.n);
    if (!p) goto oom;
    memcpy(p, e->block.p, e->block.n);
    w->shard_eps++;
    w->shard_steps += e->n_steps;
    w->shard_vsteps += e->vsteps;
    w->episodes++;
    w->steps += e->n_steps;
    w->vsteps += e->vsteps;
    int found = 0;
    for (int i = 0; i < w->n_scen && !found; i++) found = !strcmp(w->scen[i], e->scenario);
    if (!found && w->n_scen < 4096) {
        char **q = realloc(w->scen, (size_t)(w->n_scen + 1) * sizeof *q);
        if (!q) goto oom;
        w->scen = q;
        if (!(w->scen[w->n_scen] = dupstr(e->scenario))) goto oom;
        w->n_scen++;
    }
    if ((size_t)w->shard_steps >= w->cfg.shard_steps) return flush_shard(w, err, errlen);
    return 0;
oom:
    seterr(err, errlen, "traj: out of memory");
    return -1;
}

int ew_traj_writer_begin(ew_traj_writer *w, const char *scenario, uint64_t seed, const ew_road *road,
                         float ego_len, float ego_wid, char *err, int errlen) {
    return ew_traj_enc_begin(w->enc, scenario, seed, road, ego_len, ego_wid, err, errlen);
}
int ew_traj_writer_step(ew_traj_writer *w, const struct ew_world *world, const ew_action *action, char *err,
                        int errlen) {
    return ew_traj_enc_step(w->enc, world, action, err, errlen);
}
int ew_traj_writer_end_label(ew_traj_writer *w, const char *label, char *err, int errlen) {
    if (ew_traj_enc_end(w->enc, label, err, errlen) != 0) return -1;
    return ew_traj_writer_add(w, w->enc, err, errlen);
}
int ew_traj_writer_end(ew_traj_writer *w, char *err, int errlen) {
    return ew_traj_writer_end_label(w, NULL, err, errlen);
}
int64_t ew_traj_writer_steps(const ew_traj_writer *w) { return w ? w->steps : 0; }

static void json_str(bytes *b, const char *s) {
    size_t n = strlen(s);
    uint8_t *p = bytes_grow(b, 2 * n + 2 + 6 * n);
    if (!p) return;
    size_t o = 0;
    p[o++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            p[o++] = '\\';
            p[o++] = c;
        } else if (c < 0x20) {
            o += (size_t)sprintf((char *)p + o, "\\u%04x", c);
        } else p[o++] = c;
    }
    p[o++] = '"';
    b->n -= (2 * n + 2 + 6 * n) - o;
}

static void json_fmt(bytes *b, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if (n >= (int)sizeof tmp) n = (int)sizeof tmp - 1;
    uint8_t *p = bytes_grow(b, (size_t)n);
    if (p) memcpy(p, tmp, (size_t)n);
}

void ew_traj_writer_abort(ew_traj_writer *w) { writer_free(w); }

int ew_traj_writer_close(ew_traj_writer *w, char *err, int errlen) {
    if (!w) return 0;
    int rc = flush_shard(w, err, errlen);
    if (rc == 0 && w->episodes == 0) {
        seterr(err, errlen, "%s: no episodes recorded", w->dir);
        rc = -1;
    }
    if (rc == 0) {
        bytes m = {0};
        int64_t total = 0;
        for (int i = 0; i < w->n_shards; i++) total += w->shards[i].bytes;
        ew_raster_cfg rc0;
        ew_raster_cfg_default(&rc0);
        json_fmt(&m, "{\n  \"format\": \"egoworld-traj\",\n  \"version\": %d,\n  \"dt\": %.9g,\n  \"mode\": ",
                 EW_TRAJ_VERSION, (double)w->cfg.dt);
        json_str(&m, w->mode);
        json_fmt(&m, ",\n  \"split_seed\": %llu,\n  \"frac_train\": %.9g,\n  \"frac_val\": %.9g,\n",
                 (unsigned long long)w->cfg.split_seed, (double)w->cfg.frac_train, (double)w->cfg.frac_val);
        json_fmt(&m, "  \"range_m\": %.9g,\n  \"raster\": {\"rows\": %d, \"cols\": %d, \"m_per_px\": %.9g},\n",
                 (double)EW_TRAJ_RANGE_M, rc0.rows, rc0.cols, (double)rc0.m_per_px);
        json_fmt(&m, "  \"episodes\": %lld,\n  \"ego_steps\": %lld,\n  \"vehicle_steps\": %lld,\n  \"bytes\": %lld,\n",
                 (long long)w->episodes, (long long)w->steps, (long long)w->vsteps, (long long)total);
        json_fmt(&m, "  \"scenarios\": [");
        for (int i = 0; i < w->n_scen; i++) {
            if (i) json_fmt(&m, ", ");
            json_str(&m, w->scen[i]);
        }
        json_fmt(&m, "],\n  \"command\": ");
        json_str(&m, w->command);
        json_fmt(&m, ",\n  \"collect\": {");
        size_t el = strlen(w->extra);
        uint8_t *p = bytes_grow(&m, el);
        if (p) memcpy(p, w->extra, el);
        json_fmt(&m, "},\n  \"n_shards\": %d,\n  \"shards\": [", w->n_shards);
        for (int i = 0; i < w->n_shards; i++)
            json_fmt(&m, "%s\n    {\"file\": \"traj-%04d.ewt\", \"episodes\": %lld, \"ego_steps\": %lld, \"bytes\": %lld}",
                     i ? "," : "", i, (long long)w->shards[i].episodes, (long long)w->shards[i].steps,
                     (long long)w->shards[i].bytes);
        json_fmt(&m, "\n  ]\n}\n");
        if (!m.p) {
            seterr(err, errlen, "traj: out of memory");
            rc = -1;
        } else {
            const uint8_t *parts[1] = {m.p};
            size_t lens[1] = {m.n};
            rc = write_atomic(w->dir, "manifest.json", parts, lens, 1, err, errlen);
        }
        free(m.p);
    }
    writer_free(w);
    return rc;
}

/* ---- shard parsing ---------------------------------------------------------------------- */

/* Parses and validates one shard held in buf (borrowed; episodes point into it). Appends the
 * episodes to *eps (realloc'd). */
static int parse_shard(const uint8_t *buf, size_t len, const char *name, int want_index, float *dt_out,
                       ew_traj_episode **eps, int *n_eps, int *cap_eps, char *err, int errlen) {
    if (len < EW_TRAJ_SHARD_HEAD) {
        seterr(err, errlen, "%s: truncated: %zu bytes, the header needs %d (byte offset 0)", name, len,
               EW_TRAJ_SHARD_HEAD);
        return -1;
    }
    if (memcmp(buf, EW_TRAJ_MAGIC, 8) != 0) {
        seterr(err, errlen, "%s: not an egoworld trajectory shard (bad magic at byte offset 0)", name);
        return -1;
    }
    uint32_t ver = get_u32(buf + 8);
    if (ver != EW_TRAJ_VERSION) {
        seterr(err, errlen, "%s: format version %u, this build reads %d (byte offset 8)", name, ver, EW_TRAJ_VERSION);
        return -1;
    }
    uint32_t idx = get_u32(buf + 12);
    if (want_index >= 0 && idx != (uint32_t)want_index) {
        seterr(err, errlen, "%s: shard index %u, expected %d (byte offset 12)", name, idx, want_index);
        return -1;
    }
    uint32_t ne = get_u32(buf + 16);
    float dt = get_f32(buf + 20);
    uint64_t fsz = get_u64(buf + 24);
    if (!(dt > 0.0f && dt < 10.0f)) {
        seterr(err, errlen, "%s: dt %g out of range (byte offset 20)", name, (double)dt);
        return -1;
    }
    if (fsz != len) {
        seterr(err, errlen, "%s: %s: header says %llu bytes, the file has %zu (byte offset 24)", name,
               fsz > len ? "truncated" : "trailing bytes", (unsigned long long)fsz, len);
        return -1;
    }
    if (ne == 0 || ne > EW_TRAJ_MAX_EPISODES || EW_TRAJ_SHARD_HEAD + 8 * (uint64_t)ne > len) {
        seterr(err, errlen, "%s: episode count %u does not fit the file (byte offset 16)", name, ne);
        return -1;
    }
    if (dt_out) *dt_out = dt;
    size_t head = EW_TRAJ_SHARD_HEAD + 8 * (size_t)ne;
    if (*n_eps + (int64_t)ne > 100000000) {
        seterr(err, errlen, "%s: too many episodes", name);
        return -1;
    }
    uint64_t prev = head;
    for (uint32_t k = 0; k < ne; k++) {
        size_t ho = EW_TRAJ_SHARD_HEAD + 8 * (size_t)k;
        uint64_t off = get_u64(buf + ho);
        uint64_t end = k + 1 < ne ? get_u64(buf + ho + 8) : len;
        if (off != prev || end < off || end > len) {
            seterr(err, errlen, "%s: episode %u: offset %llu out of order or past the end (byte offset %zu)", name, k,
                   (unsigned long long)off, ho);
            return -1;
        }
        prev = end;
        const uint8_t *p = buf + off;
        size_t sz = (size_t)(end - off);
        if (sz < EW_TRAJ_EP_HEAD) {
            seterr(err, errlen, "%s: episode %u: truncated header (byte offset %llu)", name, k, (unsigned long long)off);
            return -1;
        }
        if (memcmp(p, EW_TRAJ_EP_MAGIC, 4) != 0) {
            seterr(err, errlen, "%s: episode %u: bad block magic (byte offset %llu)", name, k, (unsigned long long)off);
            return -1;
        }
        uint32_t crc = get_u32(p + 4);
        if (crc32_buf(p + 8, sz - 8) != crc) {
            seterr(err, errlen, "%s: episode %u: checksum mismatch, the data is corrupt (byte offset %llu)", name, k,
                   (unsigned long long)off);
            return -1;
        }
        ew_traj_episode E;
        memset(&E, 0, sizeof E);
        E.n_steps = get_u32(p + 8);
        E.n_tracks = get_u32(p + 12);
        E.n_roads = get_u32(p + 16);
        uint32_t rec_bytes = get_u32(p + 20);
        E.seed = get_u64(p + 24);
        E.ego_len = get_f32(p + 32);
        E.ego_wid = get_f32(p + 36);
        size_t ls = p[40], ll = p[41];
        size_t o = EW_TRAJ_EP_HEAD + ((ls + ll + 3) & ~(size_t)3);
#define BAD(field, at, ...)                                                                                   \
    do {                                                                                                      \
        char m_[320];                                                                                         \
        snprintf(m_, sizeof m_, __VA_ARGS__);                                                                 \
        seterr(err, errlen, "%s: episode %u: %s: %s (byte offset %llu)", name, k, field, m_,                 \
               (unsigned long long)(off + (at)));                                                             \
        return -1;                                                                                            \
    } while (0)
        if (E.n_steps < 1 || E.n_steps > EW_TRAJ_MAX_STEPS) BAD("n_steps", 8, "%u out of range", E.n_steps);
        if (E.n_tracks > EW_TRAJ_MAX_TRACKS) BAD("n_tracks", 12, "%u out of range", E.n_tracks);
        if (E.n_roads < 1 || E.n_roads > E.n_steps) BAD("n_roads", 16, "%u out of range", E.n_roads);
        if (!(E.ego_len > 0.0f && E.ego_len < 100.0f && E.ego_wid > 0.0f && E.ego_wid < 100.0f))
            BAD("ego size", 32, "%g x %g", (double)E.ego_len, (double)E.ego_wid);
        if (p[42] || p[43]) BAD("reserved", 42, "not zero");
        uint64_t need = (uint64_t)o + (uint64_t)E.n_roads * (4 + EW_TRAJ_ROAD_BYTES) + 16ull * E.n_tracks +
                        (uint64_t)EW_TRAJ_STEP_BYTES * E.n_steps + rec_bytes;
        if (need != sz) BAD("size", 20, "the counts need %llu bytes, the block has %zu", (unsigned long long)need, sz);
        for (size_t i = 0; i < ls; i++)
            if (p[EW_TRAJ_EP_HEAD + i] < 0x20 || p[EW_TRAJ_EP_HEAD + i] > 0x7e) BAD("scenario", EW_TRAJ_EP_HEAD + i, "not printable ASCII");
        for (size_t i = 0; i < ll; i++)
            if (p[EW_TRAJ_EP_HEAD + ls + i] < 0x20 || p[EW_TRAJ_EP_HEAD + ls + i] > 0x7e)
                BAD("label", EW_TRAJ_EP_HEAD + ls + i, "not printable ASCII");
        memcpy(E.scenario, p + EW_TRAJ_EP_HEAD, ls);
        E.scenario[ls] = 0;
        memcpy(E.label, p + EW_TRAJ_EP_HEAD + ls, ll);
        E.label[ll] = 0;
        E.roads = p + o;
        uint32_t last_from = 0;
        for (uint32_t r = 0; r < E.n_roads; r++) {
            const uint8_t *q = E.roads + (size_t)r * (4 + EW_TRAJ_ROAD_BYTES);
            uint32_t from = get_u32(q);
            if ((r == 0 && from != 0) || (r > 0 && from <= last_from) || from >= E.n_steps)
                BAD("road", (size_t)(q - p), "road %u starts at step %u (out of order)", r, from);
            last_from = from;
            ew_road rd;
            char m[200];
            if (road_get(q + 4, &rd, m, (int)sizeof m) != 0) BAD("road", (size_t)(q + 4 - p), "%s", m);
        }
        o += (size_t)E.n_roads * (4 + EW_TRAJ_ROAD_BYTES);
        E.tracks = p + o;
        for (uint32_t t = 0; t < E.n_tracks; t++) {
            const uint8_t *q = E.tracks + 16 * (size_t)t;
            float L = get_f32(q + 8), W = get_f32(q + 12);
            if (q[4] >= EW_VT_COUNT || q[5] || q[6] || q[7]) BAD("track", (size_t)(q - p), "track %u: bad type", t);
            if (!(L > 0.0f && L < 100.0f && W > 0.0f && W < 100.0f))
                BAD("track", (size_t)(q + 8 - p), "track %u: size %g x %g", t, (double)L, (double)W);
        }
        o += 16 * (size_t)E.n_tracks;
        E.steps = p + o;
        o += (size_t)EW_TRAJ_STEP_BYTES * E.n_steps;
        E.recs = p + o;
        E.rec_off = malloc(((size_t)E.n_steps + 1) * sizeof *E.rec_off);
        if (!E.rec_off) {
            seterr(err, errlen, "%s: out of memory", name);
            return -1;
        }
        size_t ro = 0;
        for (uint32_t t = 0; t < E.n_steps; t++) {
            const uint8_t *q = E.steps + (size_t)EW_TRAJ_STEP_BYTES * t;
            for (int c = 0; c < 7; c++)
                if (!isfinite(get_f32(q + 4 * c))) {
                    free(E.rec_off);
                    BAD("step", (size_t)(q + 4 * c - p), "step %u: value %d not finite", t, c);
                }
            {
                /* finite is not enough: huge positions or a non-unit heading overflow the
                 * rasterizer (NaN coverage; found by fuzz/fuzz_traj.c) */
                float ex = get_f32(q), ey = get_f32(q + 4), dx = get_f32(q + 8), dy = get_f32(q + 12);
                float sp = get_f32(q + 16), ua = get_f32(q + 20), ub = get_f32(q + 24);
                if (fabsf(ex) > 1e6f || fabsf(ey) > 1e6f || fabsf(dx * dx + dy * dy - 1.0f) > 1e-3f || fabsf(sp) > 1e3f ||
                    fabsf(ua) > 1e3f || fabsf(ub) > 1e3f) {
                    free(E.rec_off);
                    BAD("step", (size_t)(q - p), "step %u: ego state out of range (|x|, |y| <= 1e6 m, unit heading, "
                        "|speed|, |a|, |b| <= 1e3)", t);
                }
            }
            uint32_t nv = get_u16(q + 28);
            if (nv > EW_TRAJ_MAX_VEH || get_u16(q + 30)) {
                free(E.rec_off);
                BAD("step", (size_t)(q + 28 - p), "step %u: %u vehicles (at most %d)", t, nv, EW_TRAJ_MAX_VEH);
            }
            E.rec_off[t] = (uint32_t)ro;
            for (uint32_t v = 0; v < nv; v++) {
                if (ro + EW_TRAJ_REC_BASE > rec_bytes) {
                    free(E.rec_off);
                    BAD("records", (size_t)(E.recs + ro - p), "step %u: records run past the block", t);
                }
                const uint8_t *r = E.recs + ro;
                uint32_t tr = get_u16(r);
                int rot = (tr & 0x8000u) != 0;
                tr &= 0x7FFFu;
                size_t rs = rot ? EW_TRAJ_REC_ROT : EW_TRAJ_REC_BASE;
                if (ro + rs > rec_bytes) {
                    free(E.rec_off);
                    BAD("records", (size_t)(r - p), "step %u: records run past the block", t);
                }
                if (tr >= E.n_tracks) {
                    free(E.rec_off);
                    BAD("records", (size_t)(r - p), "step %u: track %u of %u", t, tr, E.n_tracks);
                }
                float x = get_f32(r + 4), y = get_f32(r + 8);
                int ok = isfinite(x) && isfinite(y) && fabsf(x) <= 1e6f && fabsf(y) <= 1e6f;
                if (rot) {
                    float hx = get_f32(r + 12), hy = get_f32(r + 16);
                    ok = ok && isfinite(hx) && isfinite(hy) && fabsf(hx * hx + hy * hy - 1.0f) < 1e-3f;
                }
                if (!ok) {
                    free(E.rec_off);
                    BAD("records", (size_t)(r - p), "step %u: vehicle pose not finite, beyond 1e6 m or heading not unit", t);
                }
                ro += rs;
            }
        }
        if (ro != rec_bytes) {
            free(E.rec_off);
            BAD("records", 20, "records use %zu bytes, the header says %u", ro, rec_bytes);
        }
        E.rec_off[E.n_steps] = (uint32_t)ro;
#undef BAD
        if (*n_eps == *cap_eps) { /* grown as episodes validate: a corrupt count allocates nothing */
            int nc = *cap_eps ? 2 * *cap_eps : 64;
            ew_traj_episode *q = realloc(*eps, (size_t)nc * sizeof *q);
            if (!q) {
                free(E.rec_off);
                seterr(err, errlen, "%s: out of memory", name);
                return -1;
            }
            *eps = q;
            *cap_eps = nc;
        }
        (*eps)[(*n_eps)++] = E;
    }
    return 0;
}

/* ---- the set ------------------------------------------------------------------------------ */

static void set_free(ew_traj_set *s) {
    if (!s) return;
    for (int e = 0; e < s->n_eps; e++) free(s->eps[e].rec_off);
    free(s->eps);
    for (int i = 0; i < s->n_bufs; i++) free(s->bufs[i]);
    free(s->bufs);
    free(s);
}
void ew_traj_close(ew_traj_set *s) { set_free(s); }

static ew_split split_of(uint64_t seed, int64_t e, float ft, float fv) {
    uint64_t x = seed ^ ((uint64_t)e * 0xD1342543DE82EF95ULL + 0x2545F4914F6CDD1DULL);
    uint64_t h = ew_splitmix64(&x);
    h = ew_splitmix64(&h);
    double u = (double)(h >> 11) * 0x1.0p-53;
    if (u < (double)ft) return EW_SPLIT_TRAIN;
    if (u < (double)ft + (double)fv) return EW_SPLIT_VAL;
    return EW_SPLIT_TEST;
}

static void finish_set(ew_traj_set *s) {
    s->n_steps = 0;
    s->n_vsteps = 0;
    s->mem = sizeof *s + (size_t)s->n_eps * sizeof *s->eps;
    for (int e = 0; e < s->n_eps; e++) {
        ew_traj_episode *E = &s->eps[e];
        E->split = split_of(s->split_seed, e, s->frac_train, s->frac_val);
        s->n_steps += E->n_steps;
        s->mem += ((size_t)E->n_steps + 1) * sizeof *E->rec_off;
        /* vehicle-steps: sum of the per-step counts */
        for (uint32_t t = 0; t < E->n_steps; t++) s->n_vsteps += get_u16(E->steps + (size_t)EW_TRAJ_STEP_BYTES * t + 28);
    }
    s->mem += s->file_bytes;
}

ew_traj_set *ew_traj_parse_shard(const uint8_t *buf, size_t len, const char *name, char *err, int errlen) {
    ew_traj_set *s = calloc(1, sizeof *s);
    if (!s) goto oom;
    s->bufs = calloc(1, sizeof *s->bufs);
    if (!s->bufs) goto oom;
    s->bufs[0] = malloc(len ? len : 1);
    if (!s->bufs[0]) goto oom;
    s->n_bufs = 1;
    if (len) memcpy(s->bufs[0], buf, len);
    s->split_seed = 1;
    s->frac_train = 0.8f;
    s->frac_val = 0.1f;
    snprintf(s->mode, sizeof s->mode, "reactive");
    int cap = 0;
    if (parse_shard(s->bufs[0], len, name ? name : "shard", -1, &s->dt, &s->eps, &s->n_eps, &cap, err, errlen) != 0) {
        set_free(s);
        return NULL;
    }
    s->file_bytes = len;
    finish_set(s);
    return s;
oom:
    set_free(s);
    seterr(err, errlen, "traj: out of memory");
    return NULL;
}

/* Reads a whole file (at most max bytes). */
static uint8_t *read_file(const char *path, size_t max, size_t *len, char *err, int errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        seterr(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        seterr(err, errlen, "%s: not a regular file", path);
        fclose(f);
        return NULL;
    }
    if ((uint64_t)sb.st_size > max) {
        seterr(err, errlen, "%s: %lld bytes is larger than the limit %zu", path, (long long)sb.st_size, max);
        fclose(f);
        return NULL;
    }
    size_t n = (size_t)sb.st_size;
    uint8_t *b = malloc(n + 1);
    if (!b) {
        seterr(err, errlen, "%s: out of memory", path);
        fclose(f);
        return NULL;
    }
    size_t got = n ? fread(b, 1, n, f) : 0;
    int bad = got != n || ferror(f);
    fclose(f);
    if (bad) {
        seterr(err, errlen, "%s: read error", path);
        free(b);
        return NULL;
    }
    b[n] = 0;
    *len = n;
    return b;
}

/* The value text after "key": in the manifest (the writer emits each key once). */
static const char *man_find(const char *text, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(text, pat);
    if (!p) return NULL;
    p += strlen(pat);
    while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r') p++;
    return p;
}
static int man_num(const char *text, const char *path, const char *key, double lo, double hi, double *out, char *err,
                   int errlen) {
    const char *p = man_find(text, key);
    char *end;
    if (!p) {
        seterr(err, errlen, "%s: field \"%s\" missing", path, key);
        return -1;
    }
    errno = 0;
    double v = strtod(p, &end);
    if (end == p || errno || !(v >= lo && v <= hi) || (*end != ',' && *end != '\n' && *end != '}' && *end != ' ')) {
        seterr(err, errlen, "%s: field \"%s\" is not a number in [%g, %g] (byte offset %zu)", path, key, lo, hi,
               (size_t)(p - text));
        return -1;
    }
    *out = v;
    return 0;
}

ew_traj_set *ew_traj_open(const char *dir, char *err, int errlen) {
    char path[4300];
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    size_t mlen;
    uint8_t *man = read_file(path, 1 << 24, &mlen, err, errlen);
    if (!man) return NULL;
    const char *t = (const char *)man;
    ew_traj_set *s = calloc(1, sizeof *s);
    double ver, dt, ft, fv, ns, ss;
    if (!s) {
        free(man);
        seterr(err, errlen, "traj: out of memory");
        return NULL;
    }
    if (strlen(t) != mlen) {
        seterr(err, errlen, "%s: contains a NUL byte", path);
        goto fail;
    }
    const char *fmt = man_find(t, "format");
    if (!fmt || strncmp(fmt, "\"egoworld-traj\"", 15) != 0) {
        seterr(err, errlen, "%s: field \"format\" is not \"egoworld-traj\"", path);
        goto fail;
    }
    if (man_num(t, path, "version", 0, 1e9, &ver, err, errlen)) goto fail;
    if (ver != EW_TRAJ_VERSION) {
        seterr(err, errlen, "%s: format version %g, this build reads %d", path, ver, EW_TRAJ_VERSION);
        goto fail;
    }
    if (man_num(t, path, "dt", 1e-6, 10, &dt, err, errlen) || man_num(t, path, "frac_train", 0, 1, &ft, err, errlen) ||
        man_num(t, path, "frac_val", 0, 1, &fv, err, errlen) ||
        man_num(t, path, "n_shards", 1, 10000, &ns, err, errlen) ||
        man_num(t, path, "split_seed", 0, 1.8446744073709552e19, &ss, err, errlen))
        goto fail;
    if (ns != floor(ns) || ft + fv > 1.0 + 1e-6) {
        seterr(err, errlen, "%s: field \"n_shards\" or split fractions invalid", path);
        goto fail;
    }
    {
        const char *p = man_find(t, "split_seed");
        s->split_seed = strtoull(p, NULL, 10);
    }
    const char *mo = man_find(t, "mode");
    if (mo && !strncmp(mo, "\"reactive\"", 10)) snprintf(s->mode, sizeof s->mode, "reactive");
    else if (mo && !strncmp(mo, "\"replay\"", 8)) snprintf(s->mode, sizeof s->mode, "replay");
    else {
        seterr(err, errlen, "%s: field \"mode\" is not \"reactive\" or \"replay\"", path);
        goto fail;
    }
    s->dt = (float)dt;
    s->frac_train = (float)ft;
    s->frac_val = (float)fv;
    int n = (int)ns, cap = 0;
    s->bufs = calloc((size_t)n, sizeof *s->bufs);
    if (!s->bufs) {
        seterr(err, errlen, "traj: out of memory");
        goto fail;
    }
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/traj-%04d.ewt", dir, i);
        size_t len;
        s->bufs[i] = read_file(path, (size_t)1 << 40, &len, err, errlen);
        if (!s->bufs[i]) goto fail;
        s->n_bufs = i + 1;
        float sdt;
        if (parse_shard(s->bufs[i], len, path, i, &sdt, &s->eps, &s->n_eps, &cap, err, errlen) != 0) goto fail;
        if (fabsf(sdt - s->dt) > 1e-6f) {
            seterr(err, errlen, "%s: dt %g differs from the manifest's %g (byte offset 20)", path, (double)sdt, dt);
            goto fail;
        }
        s->file_bytes += len;
    }
    free(man);
    finish_set(s);
    return s;
fail:
    free(man);
    set_free(s);
    return NULL;
}

float ew_traj_dt(const ew_traj_set *s) { return s->dt; }
const char *ew_traj_mode(const ew_traj_set *s) { return s->mode; }
int ew_traj_n_episodes(const ew_traj_set *s) { return s->n_eps; }
int64_t ew_traj_n_steps(const ew_traj_set *s) { return s->n_steps; }
int64_t ew_traj_n_vehicle_steps(const ew_traj_set *s) { return s->n_vsteps; }
size_t ew_traj_bytes(const ew_traj_set *s) { return s->mem; }
size_t ew_traj_file_bytes(const ew_traj_set *s) { return s->file_bytes; }
static int bad_ep(const ew_traj_set *s, int e) { return !s || e < 0 || e >= s->n_eps; }
int ew_traj_episode_len(const ew_traj_set *s, int e) { return bad_ep(s, e) ? 0 : (int)s->eps[e].n_steps; }
ew_split ew_traj_episode_split(const ew_traj_set *s, int e) {
    return bad_ep(s, e) ? EW_SPLIT_ALL : (ew_split)s->eps[e].split;
}
const char *ew_traj_episode_scenario(const ew_traj_set *s, int e) { return bad_ep(s, e) ? "" : s->eps[e].scenario; }
const char *ew_traj_episode_end(const ew_traj_set *s, int e) { return bad_ep(s, e) ? "" : s->eps[e].label; }
uint64_t ew_traj_episode_seed(const ew_traj_set *s, int e) { return bad_ep(s, e) ? 0 : s->eps[e].seed; }

/* ---- frames --------------------------------------------------------------------------- */

void ew_traj_step_ego(const ew_traj_episode *E, int t, ew_kin_state *g, ew_action *u) {
    const uint8_t *q = E->steps + (size_t)EW_TRAJ_STEP_BYTES * t;
    if (g) {
        g->x = get_f32(q);
        g->y = get_f32(q + 4);
        g->dx = get_f32(q + 8);
        g->dy = get_f32(q + 12);
        g->s = get_f32(q + 16);
    }
    if (u) {
        u->a = get_f32(q + 20);
        u->b = get_f32(q + 24);
    }
}

int ew_traj_frame_get(const ew_traj_set *s, int e, int t, ew_traj_frame *f, char *err, int errlen) {
    if (bad_ep(s, e) || t < 0 || (uint32_t)t >= s->eps[e].n_steps) {
        seterr(err, errlen, "traj: frame (episode %d, step %d) out of range", e, t);
        return -1;
    }
    const ew_traj_episode *E = &s->eps[e];
    uint32_t r = 0;
    while (r + 1 < E->n_roads && get_u32(E->roads + (size_t)(r + 1) * (4 + EW_TRAJ_ROAD_BYTES)) <= (uint32_t)t) r++;
    if (road_get(E->roads + (size_t)r * (4 + EW_TRAJ_ROAD_BYTES) + 4, &f->road, err, errlen) != 0) return -1;
    ew_traj_step_ego(E, t, &f->ego, &f->action);
    f->ego_len = E->ego_len;
    f->ego_wid = E->ego_wid;
    int n = (int)get_u16(E->steps + (size_t)EW_TRAJ_STEP_BYTES * t + 28);
    const uint8_t *p = E->recs + E->rec_off[t];
    for (int k = 0; k < n; k++) {
        uint32_t tr = get_u16(p);
        int rot = (tr & 0x8000u) != 0;
        tr &= 0x7FFFu;
        const uint8_t *T = E->tracks + 16 * (size_t)tr;
        f->id[k] = get_u32(T);
        f->type[k] = T[4];
        f->len[k] = get_f32(T + 8);
        f->wid[k] = get_f32(T + 12);
        f->v[k] = (float)(get_u16(p + 2) * EW_TRAJ_V_QUANT);
        f->x[k] = get_f32(p + 4);
        f->y[k] = get_f32(p + 8);
        if (rot) {
            f->hx[k] = get_f32(p + 12);
            f->hy[k] = get_f32(p + 16);
            p += EW_TRAJ_REC_ROT;
        } else {
            f->hx[k] = 1.0f;
            f->hy[k] = 0.0f;
            p += EW_TRAJ_REC_BASE;
        }
    }
    f->n = n;
    return 0;
}

ew_boxes ew_traj_frame_boxes(const ew_traj_frame *f) {
    ew_boxes b = {f->x, f->y, f->hx, f->hy, f->len, f->wid, f->n};
    return b;
}

/* ---- samples and statistics ---------------------------------------------------------------- */

int ew_traj_samples(const ew_traj_set *s, ew_split split, int n_cond, int n_pred, int stride, ew_traj_sample **out,
                    size_t *n, char *err, int errlen) {
    *out = NULL;
    *n = 0;
    if (n_cond < 1 || n_pred < 0 || stride < 1 || split < EW_SPLIT_TRAIN || split > EW_SPLIT_ALL) {
        seterr(err, errlen, "traj: samples: n_cond %d, n_pred %d, stride %d or split invalid", n_cond, n_pred, stride);
        return -1;
    }
    size_t cnt = 0;
    for (int pass = 0; pass < 2; pass++) {
        size_t k = 0;
        for (int e = 0; e < s->n_eps; e++) {
            if (split != EW_SPLIT_ALL && s->eps[e].split != (int)split) continue;
            int len = (int)s->eps[e].n_steps;
            for (int t0 = n_cond - 1; t0 + n_pred < len; t0 += stride) {
                if (pass) (*out)[k] = (ew_traj_sample){e, t0};
                k++;
            }
        }
        if (pass == 0) {
            cnt = k;
            if (cnt == 0) return 0;
            *out = malloc(cnt * sizeof **out);
            if (!*out) {
                seterr(err, errlen, "traj: out of memory");
                return -1;
            }
        }
    }
    *n = cnt;
    return 0;
}

int ew_traj_stats(const ew_traj_set *s, ew_split split, float state_mean[5], float state_std[5], float action_mean[2],
                  float action_std[2], char *err, int errlen) {
    double sum[7] = {0}, sq[7] = {0}, mean[7];
    int64_t cnt = 0;
    /* two passes (mean, then centred squares) in double: stable and order-fixed */
    for (int pass = 0; pass < 2; pass++) {
        for (int e = 0; e < s->n_eps; e++) {
            const ew_traj_episode *E = &s->eps[e];
            if (split != EW_SPLIT_ALL && E->split != (int)split) continue;
            for (uint32_t t = 0; t < E->n_steps; t++) {
                const uint8_t *q = E->steps + (size_t)EW_TRAJ_STEP_BYTES * t;
                for (int c = 0; c < 7; c++) {
                    double v = get_f32(q + 4 * c);
                    if (pass == 0) sum[c] += v;
                    else sq[c] += (v - mean[c]) * (v - mean[c]);
                }
                if (pass == 0) cnt++;
            }
        }
        if (pass == 0) {
            if (cnt == 0) {
                seterr(err, errlen, "traj: stats: the split has no steps");
                return -1;
            }
            for (int c = 0; c < 7; c++) mean[c] = sum[c] / (double)cnt;
        }
    }
    for (int c = 0; c < 7; c++) {
        double sd = sqrt(sq[c] / (double)cnt);
        if (sd < 1e-6) sd = 1e-6;
        if (c < 5) {
            if (state_mean) state_mean[c] = (float)mean[c];
            if (state_std) state_std[c] = (float)sd;
        } else {
            if (action_mean) action_mean[c - 5] = (float)mean[c];
            if (action_std) action_std[c - 5] = (float)sd;
        }
    }
    return 0;
}
