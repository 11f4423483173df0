/* driver.c - the noisy IDM + lane-keeping + lane-changing ego driver (driver.h). */
#include "sim/driver.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim/idm.h"
#include "sim/rng.h"

typedef struct {
    ew_driver_cfg cfg;
    uint64_t seed;
    uint64_t resets;
    ew_rng rng;
    float na, ny, nb;        /* OU states: acceleration, lateral offset, lateral acceleration */
    float speed_factor;
    int lane;                /* lane being kept (target of a change) */
    int changing;
    float lc_t, lc_T, y_from, y_to;
    int clock;               /* steps until the next lane-change decision */
    int n_changes;
} drv;

void ew_driver_cfg_default(ew_driver_cfg *c) {
    c->a_noise_std = 0.8f;
    c->a_noise_tau = 2.0f;
    c->lat_noise_std = 0.2f;
    c->lat_noise_tau = 4.0f;
    c->steer_noise_std = 0.2f;
    c->steer_noise_tau = 1.0f;
    c->speed_factor_lo = 0.7f;
    c->speed_factor_hi = 1.05f;
    c->lc_gain = 0.3f;
    c->lc_random = 0.25f;
    c->lc_duration = 4.0f;
    c->b_safe = 2.0f;
}

static float ou(ew_rng *r, float x, float std, float tau, float dt) {
    if (std <= 0.0f) return 0.0f;
    double k = exp(-(double)dt / (tau > 1e-3f ? tau : 1e-3f));
    return (float)(x * k + std * sqrt(1.0 - k * k) * ew_rng_normal(r));
}

static int nearest_main_lane(const ew_road *r, float x, float y) {
    int lane = ew_road_lane_at(r, x, y), best = 0;
    if (lane >= 0) return lane;
    float bd = INFINITY;
    for (int l = 0; l < r->n_main; l++) {
        float d = fabsf(ew_road_lane_center(r, l) - y);
        if (d < bd) {
            bd = d;
            best = l;
        }
    }
    return best;
}

static void reset(void *ctx, const ew_world *w) {
    drv *d = ctx;
    ew_rng_seed2(&d->rng, d->seed, d->resets++);
    const ew_driver_cfg *c = &d->cfg;
    d->na = (float)(c->a_noise_std * ew_rng_normal(&d->rng));
    d->ny = (float)(c->lat_noise_std * ew_rng_normal(&d->rng));
    d->nb = (float)(c->steer_noise_std * ew_rng_normal(&d->rng));
    d->speed_factor = (float)ew_rng_range(&d->rng, c->speed_factor_lo, c->speed_factor_hi);
    const ew_kin_state *e = ew_world_ego(w);
    d->lane = nearest_main_lane(ew_world_road(w), e->x, e->y);
    d->changing = 0;
    d->clock = (int)ew_rng_below(&d->rng, 10);
    d->n_changes = 0;
}

/* The lane exists at full width from x for `ahead` metres (or to the road's end) and is a main lane. */
static int lane_usable(const ew_road *r, int l, float x, float ahead) {
    if (l < 0 || l >= r->n_lanes) return 0;
    const ew_lane *L = &r->lanes[l];
    if (L->kind != EW_LANE_MAIN) return 0;
    if (x < L->x_start + L->taper_in) return 0;
    float end = L->x_end - L->taper_out;
    return end >= r->length - 1.0f || end - x > ahead;
}

static ew_idm_p ego_params(const ew_world *w, float v0) {
    const ew_vtype_params *p = &ew_world_config_of(w)->types[EW_VT_CAR];
    return ew_idm_params(v0 > 1.0f ? v0 : 1.0f, p->T, p->s0, p->a_max, p->b_comf, p->delta);
}

/* Ego IDM acceleration behind the leader of lane l (free road when none). */
static float ego_acc_in(const ew_world *w, int l, const ew_idm_p *p) {
    const ew_kin_state *e = ew_world_ego(w);
    const ew_vehicles *V = ew_world_vehicles(w);
    float el = ew_world_config_of(w)->ego_length;
    int j = ew_world_leader(w, l, e->x, -1);
    if (j < 0) return ew_idm_free(p, e->s);
    return ew_idm_accel(p, e->s, e->s - V->v[j], (V->x[j] - 0.5f * V->len[j]) - (e->x + 0.5f * el));
}

static int change_safe(const ew_world *w, int l, float b_safe) {
    const ew_kin_state *e = ew_world_ego(w);
    const ew_vehicles *V = ew_world_vehicles(w);
    float el = ew_world_config_of(w)->ego_length;
    int j = ew_world_leader(w, l, e->x, -1);
    if (j >= 0) {
        float gap = (V->x[j] - 0.5f * V->len[j]) - (e->x + 0.5f * el);
        if (gap < 3.0f + 0.6f * e->s) return 0;
        float closing = e->s - V->v[j];
        if (closing > 0.0f && gap < 3.0f * closing) return 0;
    }
    int f = ew_world_follower(w, l, e->x, -1);
    if (f >= 0) {
        float gap = (e->x - 0.5f * el) - (V->x[f] + 0.5f * V->len[f]);
        if (gap < 3.0f + 0.4f * V->v[f]) return 0;
        ew_idm_p q = ew_idm_params(V->v0[f], V->T[f], V->s0[f], V->a_max[f], V->b_comf[f], V->delta[f]);
        if (ew_idm_accel(&q, V->v[f], V->v[f] - e->s, gap) < -b_safe) return 0;
    }
    return 1;
}

static void start_change(drv *d, const ew_world *w, int to) {
    const ew_road *r = ew_world_road(w);
    const ew_kin_state *e = ew_world_ego(w);
    d->changing = 1;
    d->lc_t = 0.0f;
    d->lc_T = d->cfg.lc_duration * (float)ew_rng_range(&d->rng, 0.75, 1.25);
    d->y_from = e->y;
    d->y_to = ew_road_lane_center(r, to);
    d->lane = to;
    d->n_changes++;
}

static void decide(drv *d, const ew_world *w) {
    const ew_road *r = ew_world_road(w);
    const ew_kin_state *e = ew_world_ego(w);
    if (d->changing || e->s < 4.0f) return;
    const ew_lane *L = &r->lanes[d->lane];
    float end = L->x_end - L->taper_out;
    int mandatory = end < r->length - 1.0f && end - e->x < 150.0f + 4.0f * e->s;
    if (mandatory) {
        int side = L->merge_side >= 0 ? 1 : -1;
        int to = ew_road_neighbor(r, d->lane, side, e->x);
        if (!lane_usable(r, to, e->x, 100.0f)) to = ew_road_neighbor(r, d->lane, -side, e->x);
        if (lane_usable(r, to, e->x, 100.0f) && change_safe(w, to, d->cfg.b_safe + 1.0f)) start_change(d, w, to);
        return;
    }
    if (--d->clock > 0) return;
    d->clock = (int)lroundf(1.0f / ew_world_config_of(w)->dt);
    if (d->clock < 1) d->clock = 1;
    float lim = L->speed_limit;
    ew_idm_p p = ego_params(w, d->speed_factor * lim);
    float a_here = ego_acc_in(w, d->lane, &p);
    int sides[2] = {1, -1};
    if (ew_rng_uniform(&d->rng) < 0.5) {
        sides[0] = -1;
        sides[1] = 1;
    }
    double u_pay = ew_rng_uniform(&d->rng), u_rand = ew_rng_uniform(&d->rng);
    for (int k = 0; k < 2; k++) {
        int to = ew_road_neighbor(r, d->lane, sides[k], e->x);
        if (!lane_usable(r, to, e->x, 200.0f) || !change_safe(w, to, d->cfg.b_safe)) continue;
        ew_idm_p q = ego_params(w, d->speed_factor * r->lanes[to].speed_limit);
        float gain = ego_acc_in(w, to, &q) - a_here;
        if ((gain > d->cfg.lc_gain && u_pay < 0.5) || u_rand < d->cfg.lc_random) {
            start_change(d, w, to);
            return;
        }
    }
}

static int act(void *ctx, const ew_world *w, ew_action *out, char *err, int errlen) {
    (void)err;
    (void)errlen;
    drv *d = ctx;
    const ew_world_config *cfg = ew_world_config_of(w);
    const ew_road *r = ew_world_road(w);
    const ew_kin_state *e = ew_world_ego(w);
    const ew_kin_limits *k = &cfg->ego_limits;
    float dt = cfg->dt;
    const ew_driver_cfg *c = &d->cfg;
    d->na = ou(&d->rng, d->na, c->a_noise_std, c->a_noise_tau, dt);
    d->ny = ou(&d->rng, d->ny, c->lat_noise_std, c->lat_noise_tau, dt);
    d->nb = ou(&d->rng, d->nb, c->steer_noise_std, c->steer_noise_tau, dt);
    if (d->lane >= r->n_lanes || !(r->lanes[d->lane].x_start <= e->x && e->x < r->lanes[d->lane].x_end))
        d->lane = nearest_main_lane(r, e->x, e->y), d->changing = 0;
    decide(d, w);

    /* longitudinal */
    ew_action base;
    ew_world_ego_idm_action(w, &base);
    float lim = r->lanes[d->lane].speed_limit;
    ew_idm_p p = ego_params(w, d->speed_factor * lim);
    float a = base.a;
    float af = ew_idm_free(&p, e->s);
    if (af < a) a = af;
    float noise = d->na;
    if (noise > 0.0f) {
        const ew_vehicles *V = ew_world_vehicles(w);
        int j = ew_world_leader(w, d->lane, e->x, -1);
        int close = base.a < 0.0f;
        if (j >= 0) {
            float gap = (V->x[j] - 0.5f * V->len[j]) - (e->x + 0.5f * cfg->ego_length);
            float closing = e->s - V->v[j];
            if (gap < 1.2f * e->s + 2.0f || (closing > 0.0f && gap < 5.0f * closing)) close = 1;
        }
        if (close) noise = 0.0f;
    }
    if (base.a < -2.0f && noise < 0.0f) noise = 0.0f; /* already braking hard: no extra */
    if (noise < 0.0f) {
        /* a follower close behind (time gap < 1.5 s or closing within 4 s): no extra braking */
        const ew_vehicles *V = ew_world_vehicles(w);
        int f = ew_world_follower(w, d->lane, e->x, -1);
        if (f >= 0) {
            float gap = (e->x - 0.5f * cfg->ego_length) - (V->x[f] + 0.5f * V->len[f]);
            float closing = V->v[f] - e->s;
            if (gap < 1.5f * V->v[f] || (closing > 0.0f && gap < 4.0f * closing)) noise = 0.0f;
        }
    }
    a += noise;
    if (a < k->a_min) a = k->a_min;
    if (a > k->a_max) a = k->a_max;

    /* lateral: reference line, slope and curvature */
    float yref, slope = 0.0f, curv = 0.0f;
    float sx = e->s > 1.0f ? e->s : 1.0f;
    if (d->changing) {
        d->lc_t += dt;
        float tau = d->lc_t / d->lc_T;
        float dy = d->y_to - d->y_from;
        yref = d->y_from + dy * ew_lc_profile(tau);
        slope = dy * ew_lc_profile_d(tau) / (d->lc_T * sx);
        float t = tau < 0.0f ? 0.0f : tau > 1.0f ? 1.0f : tau;
        curv = dy * (60.0f * t - 180.0f * t * t + 120.0f * t * t * t) / (d->lc_T * d->lc_T * sx * sx);
        if (tau >= 1.0f) d->changing = 0;
    } else {
        yref = ew_road_lane_center(r, d->lane);
    }
    float off = d->ny > 0.4f ? 0.4f : d->ny < -0.4f ? -0.4f : d->ny;
    float ey = e->y - (yref + off);
    float Ls = 0.9f * e->s;
    if (Ls < 8.0f) Ls = 8.0f;
    float b = curv - ey / (Ls * Ls) - 2.0f * (e->dy - slope) / Ls;
    /* steering noise, faded out when the ego is already 0.6 m or more off its line */
    float fade = fabsf(ey) < 0.6f ? 1.0f : 0.0f;
    b += fade * d->nb / (sx < 5.0f ? 25.0f : sx * sx);
    if (b > k->b_max) b = k->b_max;
    if (b < -k->b_max) b = -k->b_max;
    out->a = a;
    out->b = b;
    return 0;
}

static void destroy(void *ctx) { free(ctx); }

int ew_driver_controller(const ew_driver_cfg *cfg, uint64_t seed, ew_controller *out, char *err, int errlen) {
    drv *d = calloc(1, sizeof *d);
    if (!d) {
        if (err && errlen > 0) snprintf(err, (size_t)errlen, "idm-noisy: out of memory");
        return -1;
    }
    if (cfg) d->cfg = *cfg;
    else ew_driver_cfg_default(&d->cfg);
    d->seed = seed;
    memset(out, 0, sizeof *out);
    out->name = "idm-noisy";
    out->ctx = d;
    out->act = act;
    out->reset = reset;
    out->destroy = destroy;
    return 0;
}

int ew_driver_lane_changes(const ew_controller *c) {
    if (!c || !c->ctx || !c->name || strcmp(c->name, "idm-noisy")) return 0;
    return ((const drv *)c->ctx)->n_changes;
}
