/* replay.c - record a world without an ego, replay it non-reactively around one (replay.h).
 *
 * The log is one array of ew_external_state for all frames (frame f = states[off[f],
 * off[f+1])) and per-id tables of type and size (ids of a fresh world are 1, 2, ... so a
 * table indexed by id is dense). The player keeps, per id, whether the vehicle is in the
 * world, whether it was skipped at the start, and the last frame it was seen in; a sync
 * spawns the newcomers, removes the vehicles the frame no longer holds, and moves all of
 * them with one ew_world_set_externals call.
 */
#include "sim/replay.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim/collision.h"

struct ew_replay_log {
    ew_world_config cfg; /* the recording config (ego disabled) */
    int steps;           /* frames 0..steps */
    size_t *off;         /* steps + 2 offsets into st */
    ew_external_state *st;
    uint32_t max_id;     /* per-id tables have max_id + 1 entries */
    uint8_t *type;
    float *len, *wid;
};

struct ew_replay_player {
    const ew_replay_log *log;
    int start, frame;
    float margin;
    int skipped;
    int replace_ego;     /* the ego takes the place of a logged vehicle at begin */
    uint32_t ego_id;     /* that vehicle (0: none) */
    uint8_t *in_world, *skip;
    int *seen;           /* last frame the vehicle was placed at (-1: never) */
    uint32_t *live;      /* ids in the world */
    int n_live;
    ew_external_state *buf;
    int buf_cap;
};

static int fail(char *err, int errlen, const char *fmt, ...) {
    if (err && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, (size_t)errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

void ew_replay_world_config(const ew_world_config *cfg, ew_world_config *out) {
    *out = *cfg;
    out->ego_enabled = 1;
    for (int l = 0; l < EW_MAX_LANES; l++) {
        out->density_per_km[l] = 0.0f;
        out->flow_per_h[l] = 0.0f;
    }
}

void ew_replay_log_free(ew_replay_log *log) {
    if (!log) return;
    free(log->off);
    free(log->st);
    free(log->type);
    free(log->len);
    free(log->wid);
    free(log);
}

/* Grows the per-id tables to hold id. */
static int grow_ids(ew_replay_log *log, uint32_t id) {
    if (id <= log->max_id && log->type) return 0;
    uint32_t cap = log->type ? log->max_id + 1 : 0, ncap = cap ? cap : 256;
    while (ncap <= id) ncap *= 2;
    uint8_t *t = realloc(log->type, ncap);
    if (t) log->type = t;
    float *a = realloc(log->len, ncap * sizeof(float));
    if (a) log->len = a;
    float *b = realloc(log->wid, ncap * sizeof(float));
    if (b) log->wid = b;
    if (!t || !a || !b) return -1;
    memset(log->type + cap, 0xff, ncap - cap); /* 0xff: no such vehicle */
    for (uint32_t i = cap; i < ncap; i++) log->len[i] = log->wid[i] = 0.0f;
    log->max_id = ncap - 1;
    return 0;
}

ew_replay_log *ew_replay_record(const ew_world_config *cfg, uint64_t seed, float warmup_s, int steps, char *err,
                                int errlen) {
    if (!cfg) {
        fail(err, errlen, "replay: no world config");
        return NULL;
    }
    if (steps < 1 || steps > 10000000) {
        fail(err, errlen, "replay: steps must be in [1, 1e7] (got %d)", steps);
        return NULL;
    }
    if (!(warmup_s >= 0.0f && warmup_s <= 1e5f)) {
        fail(err, errlen, "replay: warmup_s must be in [0, 1e5] s (got %g)", (double)warmup_s);
        return NULL;
    }
    ew_replay_log *log = calloc(1, sizeof *log);
    if (!log) {
        fail(err, errlen, "replay: out of memory");
        return NULL;
    }
    log->cfg = *cfg;
    log->cfg.ego_enabled = 0;
    log->steps = steps;
    char e2[256];
    ew_world *w = ew_world_create(&log->cfg, e2, (int)sizeof e2);
    if (!w) {
        fail(err, errlen, "replay: %s", e2);
        ew_replay_log_free(log);
        return NULL;
    }
    ew_world_reset(w, seed);
    int warm = (int)lroundf(warmup_s / log->cfg.dt);
    for (int k = 0; k < warm; k++) ew_world_step(w, NULL);
    log->off = malloc((size_t)(steps + 2) * sizeof *log->off);
    size_t cap = (size_t)(ew_world_vehicles(w)->n + 8) * (size_t)(steps + 1);
    log->st = malloc(cap * sizeof *log->st);
    if (!log->off || !log->st) {
        fail(err, errlen, "replay: out of memory for %d frames", steps + 1);
        ew_world_destroy(w);
        ew_replay_log_free(log);
        return NULL;
    }
    size_t n = 0;
    for (int f = 0; f <= steps; f++) {
        if (f > 0) ew_world_step(w, NULL);
        const ew_vehicles *V = ew_world_vehicles(w);
        log->off[f] = n;
        if (n + (size_t)V->n > cap) {
            size_t ncap = cap * 2 + (size_t)V->n;
            ew_external_state *s = realloc(log->st, ncap * sizeof *s);
            if (!s) {
                fail(err, errlen, "replay: out of memory at frame %d", f);
                ew_world_destroy(w);
                ew_replay_log_free(log);
                return NULL;
            }
            log->st = s;
            cap = ncap;
        }
        for (int i = 0; i < V->n; i++) {
            uint32_t id = V->id[i];
            if (grow_ids(log, id) != 0) {
                fail(err, errlen, "replay: out of memory for vehicle id %u", (unsigned)id);
                ew_world_destroy(w);
                ew_replay_log_free(log);
                return NULL;
            }
            if (log->type[id] == 0xff) {
                log->type[id] = V->type[i];
                log->len[id] = V->len[i];
                log->wid[id] = V->wid[i];
            }
            log->st[n++] = (ew_external_state){id, V->x[i], V->y[i], V->hx[i], V->hy[i], V->v[i]};
        }
    }
    log->off[steps + 1] = n;
    ew_world_destroy(w);
    ew_external_state *s = realloc(log->st, (n ? n : 1) * sizeof *s); /* trim */
    if (s) log->st = s;
    if (!log->type && grow_ids(log, 0) != 0) {
        fail(err, errlen, "replay: out of memory");
        ew_replay_log_free(log);
        return NULL;
    }
    return log;
}

int ew_replay_log_steps(const ew_replay_log *log) { return log->steps; }

const ew_external_state *ew_replay_log_frame(const ew_replay_log *log, int f, int *n) {
    if (f < 0 || f > log->steps) {
        *n = 0;
        return NULL;
    }
    *n = (int)(log->off[f + 1] - log->off[f]);
    return log->st + log->off[f];
}

int ew_replay_log_vehicle(const ew_replay_log *log, uint32_t id, ew_vtype *type, float *length, float *width) {
    if (id == 0 || id > log->max_id || log->type[id] == 0xff) return -1;
    if (type) *type = (ew_vtype)log->type[id];
    if (length) *length = log->len[id];
    if (width) *width = log->wid[id];
    return 0;
}

size_t ew_replay_log_bytes(const ew_replay_log *log) {
    return sizeof *log + (size_t)(log->steps + 2) * sizeof *log->off +
           log->off[log->steps + 1] * sizeof *log->st + (size_t)(log->max_id + 1) * (1 + 2 * sizeof(float));
}

/* ---- player ------------------------------------------------------------------------- */

ew_replay_player *ew_replay_player_create(const ew_replay_log *log, int start, char *err, int errlen) {
    if (!log) {
        fail(err, errlen, "replay: no log");
        return NULL;
    }
    if (start < 0 || start >= log->steps) {
        fail(err, errlen, "replay: start frame %d outside the log [0, %d)", start, log->steps);
        return NULL;
    }
    ew_replay_player *p = calloc(1, sizeof *p);
    size_t ids = (size_t)log->max_id + 1;
    int most = 1;
    for (int f = 0; f <= log->steps; f++) {
        int n = (int)(log->off[f + 1] - log->off[f]);
        if (n > most) most = n;
    }
    if (p) {
        p->in_world = calloc(ids, 1);
        p->skip = calloc(ids, 1);
        p->seen = malloc(ids * sizeof *p->seen);
        p->live = malloc(ids * sizeof *p->live);
        p->buf = malloc((size_t)most * sizeof *p->buf);
    }
    if (!p || !p->in_world || !p->skip || !p->seen || !p->live || !p->buf) {
        ew_replay_player_free(p);
        fail(err, errlen, "replay: out of memory");
        return NULL;
    }
    p->log = log;
    p->start = p->frame = start;
    p->margin = EW_REPLAY_MARGIN;
    p->buf_cap = most;
    return p;
}

void ew_replay_player_free(ew_replay_player *p) {
    if (!p) return;
    free(p->in_world);
    free(p->skip);
    free(p->seen);
    free(p->live);
    free(p->buf);
    free(p);
}

void ew_replay_player_set_margin(ew_replay_player *p, float margin) {
    p->margin = (margin >= 0.0f && margin < 100.0f) ? margin : EW_REPLAY_MARGIN;
}

void ew_replay_player_set_replace_ego(ew_replay_player *p, int on) { p->replace_ego = on != 0; }
uint32_t ew_replay_player_ego_id(const ew_replay_player *p) { return p->ego_id; }
int ew_replay_player_skipped(const ew_replay_player *p) { return p->skipped; }
int ew_replay_player_frame(const ew_replay_player *p) { return p->frame; }

/* Makes the logged vehicles of the world equal to frame f. */
static int sync_frame(ew_replay_player *p, ew_world *w, int f, char *err, int errlen) {
    const ew_replay_log *log = p->log;
    const ew_road *road = ew_world_road(w);
    int n;
    const ew_external_state *fr = ew_replay_log_frame(log, f, &n);
    int m = 0;
    for (int k = 0; k < n; k++) {
        const ew_external_state *s = &fr[k];
        uint32_t id = s->id;
        if (p->skip[id]) continue;
        p->seen[id] = f;
        if (!p->in_world[id]) {
            ew_spawn sp;
            memset(&sp, 0, sizeof sp);
            sp.type = (ew_vtype)log->type[id];
            int lane = ew_road_lane_at(road, s->x, s->y);
            sp.lane = lane >= 0 ? lane : 0; /* ew_world_set_externals settles the lane */
            sp.x = s->x;
            sp.y = s->y;
            sp.v = s->v;
            sp.length = log->len[id];
            sp.width = log->wid[id];
            sp.flags = EW_VF_EXTERNAL;
            char e2[200];
            if (!ew_world_spawn_id(w, &sp, id, e2, (int)sizeof e2))
                return fail(err, errlen, "replay: frame %d, vehicle %u: %s", f, (unsigned)id, e2);
            p->in_world[id] = 1;
            p->live[p->n_live++] = id;
        }
        p->buf[m++] = *s;
    }
    /* vehicles the frame no longer holds leave (order of live kept) */
    int keep = 0;
    for (int k = 0; k < p->n_live; k++) {
        uint32_t id = p->live[k];
        if (p->seen[id] == f) {
            p->live[keep++] = id;
            continue;
        }
        p->in_world[id] = 0;
        char e2[200];
        if (ew_world_find(w, id) >= 0 && ew_world_remove(w, id, e2, (int)sizeof e2) != 0)
            return fail(err, errlen, "replay: frame %d: %s", f, e2);
    }
    p->n_live = keep;
    p->frame = f;
    char e2[200];
    if (ew_world_set_externals(w, p->buf, m, e2, (int)sizeof e2) != 0)
        return fail(err, errlen, "replay: frame %d: %s", f, e2);
    return 0;
}

int ew_replay_player_begin(ew_replay_player *p, ew_world *w, char *err, int errlen) {
    const ew_world_config *wc = ew_world_config_of(w);
    const ew_replay_log *log = p->log;
    if (!wc->ego_enabled) return fail(err, errlen, "replay: the world has no ego (use ew_replay_world_config)");
    if (wc->road.n_lanes != log->cfg.road.n_lanes || wc->road.length != log->cfg.road.length)
        return fail(err, errlen, "replay: the world's road (%d lanes, %g m) is not the log's (%d lanes, %g m)",
                    wc->road.n_lanes, (double)wc->road.length, log->cfg.road.n_lanes, (double)log->cfg.road.length);
    /* vehicles of an earlier episode on this world (a reset removes them; be safe) */
    for (int k = 0; k < p->n_live; k++) {
        uint32_t id = p->live[k];
        if (ew_world_find(w, id) >= 0 && ew_world_remove(w, id, err, errlen) != 0) return -1;
        p->in_world[id] = 0;
    }
    p->n_live = 0;
    p->skipped = 0;
    size_t ids = (size_t)log->max_id + 1;
    memset(p->skip, 0, ids);
    memset(p->in_world, 0, ids);
    for (size_t i = 0; i < ids; i++) p->seen[i] = -1;
    int n;
    const ew_external_state *fr = ew_replay_log_frame(log, p->start, &n);
    p->ego_id = 0;
    if (p->replace_ego) {
        /* the logged vehicle of the ego's start lane nearest to its start x becomes the ego */
        const ew_kin_state *e0 = ew_world_ego(w);
        int lane = ew_road_lane_at(&wc->road, e0->x, e0->y), best = -1;
        float bd = 1e30f;
        for (int k = 0; k < n; k++) {
            if (ew_road_lane_at(&wc->road, fr[k].x, fr[k].y) != lane) continue;
            float d = fabsf(fr[k].x - e0->x);
            if (d < bd) {
                bd = d;
                best = k;
            }
        }
        if (best < 0) return fail(err, errlen, "replay: no logged vehicle in lane %d to replace by the ego", lane);
        const ew_external_state *b = &fr[best];
        ew_kin_state ks = {b->x, b->y, b->hx, b->hy, b->v};
        ew_world_set_ego(w, &ks);
        p->ego_id = b->id;
        p->skip[b->id] = 1;
    }
    /* leave out the vehicles the ego's grown footprint overlaps */
    const ew_kin_state *e = ew_world_ego(w);
    ew_obb eb = {ew_v2(e->x, e->y), ew_v2(e->dx, e->dy), wc->ego_length + 2.0f * p->margin,
                 wc->ego_width + 2.0f * p->margin};
    for (int k = 0; k < n; k++) {
        const ew_external_state *s = &fr[k];
        if (s->id == p->ego_id || fabsf(s->x - e->x) > 40.0f) continue; /* no vehicle is 30 m long */
        ew_obb b = {ew_v2(s->x, s->y), ew_v2(s->hx, s->hy), log->len[s->id], log->wid[s->id]};
        if (ew_obb_overlap(&eb, &b)) {
            p->skip[s->id] = 1;
            p->skipped++;
        }
    }
    return sync_frame(p, w, p->start, err, errlen);
}

void ew_replay_attach(ew_replay_player *p, ew_episode_cfg *ec) {
    ec->post_hook = ew_replay_player_hook;
    ec->post_hook_ctx = p;
}

int ew_replay_player_hook(void *ctx, ew_world *w, ew_episode *ep, char *label, int labellen, char *err, int errlen) {
    ew_replay_player *p = ctx;
    int f = p->start + ep->m.steps + 1; /* called after step m.steps + 1 (not yet counted) */
    if (f > p->log->steps) f = p->log->steps; /* (an episode that went on after replay_end) */
    if (sync_frame(p, w, f, err, errlen) != 0) return -1;
    if (f == p->log->steps) { /* the last frame: no next step */
        snprintf(label, (size_t)labellen, "%s", "replay_end");
        return 1;
    }
    return 0;
}
