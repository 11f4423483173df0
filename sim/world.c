/* world.c - background traffic (IDM + MOBIL), spawning, lane ends, scripted overrides,
 * external vehicles, and the ego, on one road (contract: world.h; formulas: idm.h).
 *
 * Data layout. Vehicles live struct-of-arrays in ew_vehicles, slots [0, n). Every array
 * has cap + 1 entries: slot `cap` (EGO below) mirrors the ego (position, speed, size and
 * IDM constants) so that background vehicles treat it exactly like any other vehicle. The
 * IDM constants the inner loop reads are also kept packed per vehicle (ip[], ew_idm_p).
 * Per-lane lists hold slots sorted by x, so a vehicle's leader is the next entry of its
 * list. A vehicle changing lanes is listed in both its old and its new lane (followers in
 * both see it; it follows the tighter of its two leaders); the ego is listed in every lane
 * its footprint overlaps. The lists are maintained incrementally, never rebuilt per step:
 * IDM with the no-overshoot clamp below keeps every background vehicle behind its leader's
 * previous rear bumper, so integration preserves each list's order; entries are inserted
 * (spawn, start of a lane change) and erased (end of a lane change, removal) in place; only
 * the ego moves freely, and the lists it is in are re-sorted (insertion sort, early exit).
 * The collision pass re-checks the order of every list it walks and repairs it if needed.
 *
 * One step: (1) per lane, back of the queue first, IDM accelerations from the lists (and
 * lane-end obstacles) and, for vehicles in one list only, the integration at once (their
 * leader has not moved yet): ballistic motion that cannot overshoot the leader's previous
 * rear bumper, MOBIL clocks, removal marks; vehicles in two lists (lane changers) take the
 * min over both and are integrated after all lanes, with their lateral motion; (2) the ego
 * by the kinematic model, (3) removal of the marked vehicles at the road end or an
 * off-ramp end, (4) MOBIL decisions of the vehicles whose clock fired, (5) inflow, (6)
 * counting background-background overlaps among list neighbours.
 */
#include "sim/world.h"

#include <assert.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim/collision.h"
#include "sim/idm.h"
#include "sim/rng.h"

/* The traffic pass does four vehicles at a time with SSE2 (every x86-64) unless built with
 * -DEW_WORLD_NO_SSE; both paths give the same bits (test_traffic_golden). */
#if defined(__SSE2__) && !defined(EW_WORLD_NO_SSE)
#include <emmintrin.h>
#define EW_WORLD_SSE 1
#else
#define EW_WORLD_SSE 0
#endif

#define EW_INF 1e30f
#if defined(__GNUC__)
#define EW_NOINLINE __attribute__((noinline))
#else
#define EW_NOINLINE
#endif
#define SPAWN_QUEUE_MAX 8      /* vehicles waiting at one lane's entry before refusals */
#define LC_MIN_RATE 0.25f      /* lane-change progress rate floor (stopped vehicles creep over) */
#define LC_MAX_SLOPE 0.18f     /* lateral speed <= this * speed where possible (about 10 deg) */
#define LC_HEADING_VMIN 3.0f   /* speed floor used to orient a slow lane-changer */
#define FORCE_RELAX_DIST 300.0f /* m before a lane end over which MOBIL's incentive relaxes */
#define EXIT_PREPARE_DIST 1000.0f /* m before an off-ramp's end where exiting vehicles move right */
#define GAP_MARGIN 1.0f        /* m of extra clearance demanded on both sides of a target gap */

/* An entry of a lane list set aside by the traffic pass, with its leader's state. */
typedef struct {
    int i;
    float xj, vj, hlj;
} stash;

typedef struct {
    ew_vtype type;
    uint8_t flags;
    float len, wid, v0f, T, s0, a_max, b, delta, pol, b_safe, a_thr, kr;
} vparams;

struct ew_world {
    ew_world_config cfg;   /* cfg.road is the live road (mutators change it) */
    ew_road road0;         /* the road at create time, restored by reset */
    ew_vehicles V;
    int cap, ego;          /* ego == cap: the ego's mirror slot */
    /* private per-vehicle arrays (cap + 1) */
    float *hl, *v0f, *lc_y0, *lc_y1, *lc_dur, *lim_x, *lim_v;
    ew_idm_p *ip;          /* packed IDM constants (inv_v0 follows the lane's limit) */
    uint8_t *dead;
    /* per-lane x-sorted slot lists */
    int *lists[EW_MAX_LANES], cnt[EW_MAX_LANES];
    /* per-step work lists and scratch (cap + 1 each) */
    int *due, n_due;       /* vehicles whose MOBIL clock fired this step */
    int *due_k;            /* their position in their lane's list when queued (-1: unknown) */
    int n_dead;            /* vehicles marked dead[] this step */
    uint8_t dirty[EW_MAX_LANES]; /* lists count_collisions must walk this step */
    int *chg, n_chg;       /* vehicles in two lists this step (integrated after the lanes) */
    int *remap, *scratch;
    stash *stash;
    int n_stash;
    /* the table of per-vehicle arrays, for moving a vehicle between slots */
    struct { void **p; size_t sz; } fld[48];
    int n_fld, n_move;     /* all arrays (freed by destroy); the first n_move move with a vehicle */
    /* lane caches */
    float stop_x[EW_MAX_LANES];  /* where vehicles staying in the lane stop (EW_INF: none) */
    float tip_x[EW_MAX_LANES];   /* physical end for vehicles changing out (EW_INF: none) */
    float limit[EW_MAX_LANES];
    float gone_x[EW_MAX_LANES];  /* vehicles with lane == l at x >= this leave the road */
    int nbc[EW_MAX_LANES][2][4], n_nbc[EW_MAX_LANES][2]; /* neighbour candidates (0 right, 1 left) */
    int offramp;                 /* first off-ramp lane, -1 if none */
    uint32_t ego_mask;           /* lanes the ego's footprint overlaps */
    /* spawning */
    double next_arrival[EW_MAX_LANES];
    int queue[EW_MAX_LANES];
    int pend_ok[EW_MAX_LANES];
    vparams pend[EW_MAX_LANES];
    ew_rng rng;
    ew_kin_state ego_state;
    uint32_t next_id;
    float max_hl;
    ew_world_stats st;
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

static int finitef(float v) { return isfinite(v) != 0; }

/* ---- configuration ------------------------------------------------------------------ */

void ew_world_config_default(ew_world_config *c) {
    memset(c, 0, sizeof *c);
    c->dt = 0.1f;
    c->seed = 1;
    ew_road_init_highway(&c->road, 3, 3.7f, 1000.0f, 29.0f, NULL, 0);
    c->max_vehicles = 512;
    for (int l = 0; l < 3; l++) {
        c->density_per_km[l] = 25.0f;
        c->flow_per_h[l] = 1500.0f;
    }
    c->truck_share = 0.08f;
    c->moto_share = 0.02f;
    c->exit_share = 0.0f;
    ew_vtype_params *car = &c->types[EW_VT_CAR];
    *car = (ew_vtype_params){.length = 4.5f, .length_std = 0.3f, .width = 1.8f, .width_std = 0.08f,
                             .v0_factor = 1.0f, .v0_factor_std = 0.08f, .T = 1.5f, .T_std = 0.15f,
                             .s0 = 2.0f, .a_max = 1.75f, .a_max_std = 0.15f, .b_comf = 2.5f,
                             .b_comf_std = 0.25f, .delta = 4.0f, .politeness = 0.3f, .b_safe = 4.0f,
                             .a_thr = 0.15f, .keep_right = 0.2f};
    c->types[EW_VT_TRUCK] = (ew_vtype_params){.length = 12.0f, .length_std = 2.0f, .width = 2.5f,
                                              .width_std = 0.0f, .v0_factor = 0.8f, .v0_factor_std = 0.04f,
                                              .T = 1.8f, .T_std = 0.15f, .s0 = 3.0f, .a_max = 0.8f,
                                              .a_max_std = 0.1f, .b_comf = 1.8f, .b_comf_std = 0.2f,
                                              .delta = 4.0f, .politeness = 0.5f, .b_safe = 3.0f,
                                              .a_thr = 0.2f, .keep_right = 0.4f};
    c->types[EW_VT_MOTO] = (ew_vtype_params){.length = 2.2f, .length_std = 0.1f, .width = 0.8f,
                                             .width_std = 0.05f, .v0_factor = 1.1f, .v0_factor_std = 0.08f,
                                             .T = 1.2f, .T_std = 0.15f, .s0 = 1.5f, .a_max = 2.5f,
                                             .a_max_std = 0.3f, .b_comf = 3.0f, .b_comf_std = 0.3f,
                                             .delta = 4.0f, .politeness = 0.1f, .b_safe = 4.0f,
                                             .a_thr = 0.1f, .keep_right = 0.1f};
    c->mobil_period = 1.0f;
    c->lc_duration = 3.0f;
    c->idm_noise = 0.0f;
    c->ego_enabled = 1;
    c->ego_lane = 1;
    c->ego_x = 150.0f;
    c->ego_speed = 20.0f;
    c->ego_length = 4.5f;
    c->ego_width = 1.8f;
    ew_kin_limits_default(&c->ego_limits);
}

int ew_world_config_validate(const ew_world_config *c, char *err, int errlen) {
    if (!(c->dt > 0.0f && c->dt <= 1.0f)) return fail(err, errlen, "world: dt must be in (0, 1] s (got %g)", (double)c->dt);
    if (ew_road_validate(&c->road, err, errlen) != 0) return -1;
    if (c->max_vehicles < 1 || c->max_vehicles > 100000)
        return fail(err, errlen, "world: max_vehicles must be 1..100000 (got %d)", c->max_vehicles);
    for (int l = 0; l < c->road.n_lanes; l++) {
        if (!(c->density_per_km[l] >= 0.0f && c->density_per_km[l] <= 200.0f))
            return fail(err, errlen, "world: density_per_km[%d] must be in [0, 200] (got %g)", l, (double)c->density_per_km[l]);
        if (!(c->flow_per_h[l] >= 0.0f && c->flow_per_h[l] <= 5000.0f))
            return fail(err, errlen, "world: flow_per_h[%d] must be in [0, 5000] (got %g)", l, (double)c->flow_per_h[l]);
    }
    if (!(c->truck_share >= 0.0f && c->moto_share >= 0.0f && c->truck_share + c->moto_share <= 1.0f))
        return fail(err, errlen, "world: truck_share and moto_share must be >= 0 with a sum <= 1");
    if (!(c->exit_share >= 0.0f && c->exit_share <= 1.0f))
        return fail(err, errlen, "world: exit_share must be in [0, 1] (got %g)", (double)c->exit_share);
    static const char *tn[EW_VT_COUNT] = {"car", "truck", "moto"};
    for (int t = 0; t < EW_VT_COUNT; t++) {
        const ew_vtype_params *p = &c->types[t];
        if (!(p->length >= 0.5f && p->length <= 30.0f && p->width >= 0.3f && p->width <= 3.5f))
            return fail(err, errlen, "world: %s size must be length 0.5..30 m, width 0.3..3.5 m", tn[t]);
        if (!(p->v0_factor > 0.1f && p->v0_factor <= 3.0f && p->T > 0.0f && p->T <= 10.0f && p->s0 >= 0.0f &&
              p->s0 <= 20.0f && p->a_max > 0.0f && p->a_max <= 10.0f && p->b_comf > 0.0f && p->b_comf <= 10.0f &&
              p->delta > 0.0f && p->delta <= 10.0f))
            return fail(err, errlen, "world: %s IDM parameters out of range (v0_factor, T, s0, a_max, b_comf, delta)", tn[t]);
        if (!(p->length_std >= 0.0f && p->width_std >= 0.0f && p->v0_factor_std >= 0.0f && p->T_std >= 0.0f &&
              p->a_max_std >= 0.0f && p->b_comf_std >= 0.0f))
            return fail(err, errlen, "world: %s standard deviations must be >= 0", tn[t]);
        if (!(p->politeness >= 0.0f && p->politeness <= 2.0f && p->b_safe > 0.0f && p->b_safe <= 10.0f &&
              p->a_thr >= 0.0f && p->a_thr <= 5.0f && p->keep_right >= 0.0f && p->keep_right <= 5.0f))
            return fail(err, errlen, "world: %s MOBIL parameters out of range (politeness, b_safe, a_thr, keep_right)", tn[t]);
    }
    if (!(c->mobil_period > 0.0f && c->mobil_period <= 100.0f))
        return fail(err, errlen, "world: mobil_period must be in (0, 100] s (got %g)", (double)c->mobil_period);
    if (!(c->lc_duration >= 0.5f && c->lc_duration <= 30.0f))
        return fail(err, errlen, "world: lc_duration must be in [0.5, 30] s (got %g)", (double)c->lc_duration);
    if (!(c->idm_noise >= 0.0f && c->idm_noise <= 5.0f))
        return fail(err, errlen, "world: idm_noise must be in [0, 5] (got %g)", (double)c->idm_noise);
    if (c->ego_enabled) {
        if (c->ego_lane < 0 || c->ego_lane >= c->road.n_lanes)
            return fail(err, errlen, "world: ego_lane %d does not exist", c->ego_lane);
        const ew_lane *l = &c->road.lanes[c->ego_lane];
        if (!(c->ego_x >= l->x_start && c->ego_x < l->x_end))
            return fail(err, errlen, "world: ego_x %g is outside lane %d", (double)c->ego_x, c->ego_lane);
        if (!(c->ego_speed >= 0.0f && c->ego_speed <= 100.0f))
            return fail(err, errlen, "world: ego_speed must be in [0, 100] m/s (got %g)", (double)c->ego_speed);
        if (!(c->ego_length >= 0.5f && c->ego_length <= 30.0f && c->ego_width >= 0.3f && c->ego_width <= 3.5f))
            return fail(err, errlen, "world: ego size out of range");
        const ew_kin_limits *k = &c->ego_limits;
        if (!(k->a_min < 0.0f && k->a_max > 0.0f && k->b_max > 0.0f && finitef(k->a_min) && finitef(k->a_max) &&
              finitef(k->b_max)))
            return fail(err, errlen, "world: ego_limits must have a_min < 0 < a_max and b_max > 0");
    }
    return 0;
}

/* ---- lane caches -------------------------------------------------------------------- */

static void lane_cache(ew_world *w) {
    const ew_road *r = &w->cfg.road;
    w->offramp = -1;
    for (int l = 0; l < r->n_lanes; l++) {
        const ew_lane *ln = &r->lanes[l];
        w->limit[l] = ln->speed_limit;
        w->gone_x[l] = (ln->exit_at_end && ln->x_end < r->length) ? ln->x_end : r->length;
        if (ln->exit_at_end) {
            w->stop_x[l] = w->tip_x[l] = EW_INF;
        } else {
            w->stop_x[l] = ln->x_end - ln->taper_out;
            w->tip_x[l] = ln->x_end;
        }
        if (ln->kind == EW_LANE_OFFRAMP && w->offramp < 0) w->offramp = l;
        for (int s = 0; s < 2; s++) {
            float edge = s ? ln->y_right + ln->width : ln->y_right;
            w->n_nbc[l][s] = 0;
            for (int m = 0; m < r->n_lanes; m++) {
                if (m == l) continue;
                const ew_lane *o = &r->lanes[m];
                float medge = s ? o->y_right : o->y_right + o->width;
                if (fabsf(medge - edge) < 1e-3f && w->n_nbc[l][s] < 4) w->nbc[l][s][w->n_nbc[l][s]++] = m;
            }
        }
    }
}

/* The neighbour on side s (0 right, 1 left) of lane l that exists at x, or -1. */
static int neighbor(const ew_world *w, int l, int s, float x) {
    for (int k = 0; k < w->n_nbc[l][s]; k++) {
        int m = w->nbc[l][s][k];
        const ew_lane *o = &w->cfg.road.lanes[m];
        if (x >= o->x_start && x < o->x_end) return m;
    }
    return -1;
}

/* ---- lists -------------------------------------------------------------------------- */

static void ego_mirror(ew_world *w) {
    ew_vehicles *V = &w->V;
    int e = w->ego;
    const ew_kin_state *s = &w->ego_state;
    V->x[e] = s->x;
    V->y[e] = s->y;
    V->hx[e] = s->dx;
    V->hy[e] = s->dy;
    V->v[e] = s->s * s->dx;
    V->len[e] = w->cfg.ego_length;
    V->wid[e] = w->cfg.ego_width;
    w->hl[e] = 0.5f * w->cfg.ego_length;
    int lane = ew_road_lane_at(&w->cfg.road, s->x, s->y);
    if (lane >= 0) {
        V->lane[e] = V->lane_from[e] = (int8_t)lane;
        V->v0[e] = w->v0f[e] * w->limit[lane];
        w->ip[e].inv_v0 = 1.0f / V->v0[e];
    }
    float ext = 0.5f * (fabsf(s->dy) * w->cfg.ego_length + fabsf(s->dx) * w->cfg.ego_width);
    uint32_t mask = 0;
    const ew_road *r = &w->cfg.road;
    for (int l = 0; l < r->n_lanes; l++) {
        const ew_lane *ln = &r->lanes[l];
        if (s->x < ln->x_start || s->x >= ln->x_end) continue;
        if (s->y + ext > ln->y_right && s->y - ext < ln->y_right + ln->width) mask |= 1u << l;
    }
    w->ego_mask = mask;
}

/* First position in list l whose x is > x. */
static int list_upper(const ew_world *w, int l, float x) {
    const int *L = w->lists[l];
    const float *X = w->V.x;
    int lo = 0, hi = w->cnt[l];
    while (lo < hi) {
        int mid = (lo + hi) >> 1;
        if (X[L[mid]] > x) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}

/* list_upper started from a guess p of the answer (any int): a walk from p. A list is
 * sorted whenever this runs (MOBIL, entry; see the top of the file), and on a sorted list
 * the walk ends at the one position p with x at p - 1 <= x < x at p, which is list_upper's
 * answer (also for x = NaN: the end). Builds with assertions check that. */
static int list_upper_from(const ew_world *w, int l, float x, int p) {
    const int *L = w->lists[l];
    const float *X = w->V.x;
    int c = w->cnt[l];
    if (p < 0) p = 0;
    if (p > c) p = c;
    while (p > 0 && X[L[p - 1]] > x) p--;
    while (p < c && !(X[L[p]] > x)) p++;
    assert(p == list_upper(w, l, x));
    return p;
}

/* Position of slot i in list l (sorted, i listed there at its current x), or -1. */
static int list_find(const ew_world *w, int l, int i) {
    const int *L = w->lists[l];
    const float *X = w->V.x;
    for (int k = list_upper(w, l, X[i]) - 1; k >= 0 && X[L[k]] == X[i]; k--)
        if (L[k] == i) return k;
    for (int k = 0; k < w->cnt[l]; k++) /* not at its sorted place (only if x moved) */
        if (L[k] == i) return k;
    return -1;
}

/* Inserts slot i into list l after every entry with x <= x[i]. Marks the list for the
 * collision count when one of the two new neighbour pairs is within reach (the other
 * pairs are unchanged). */
static void list_insert(ew_world *w, int l, int i) {
    const float *X = w->V.x, *HL = w->hl;
    int k = list_upper(w, l, X[i]);
    int *L = w->lists[l];
    memmove(L + k + 1, L + k, (size_t)(w->cnt[l] - k) * sizeof(int));
    L[k] = i;
    w->cnt[l]++;
    float reach = w->max_hl + 0.5f;
    if ((k > 0 && !(X[i] - X[L[k - 1]] > HL[L[k - 1]] + reach)) ||
        (k + 1 < w->cnt[l] && !(X[L[k + 1]] - X[i] > HL[i] + reach)))
        w->dirty[l] = 1;
}

static void list_erase(ew_world *w, int l, int i) {
    int k = list_find(w, l, i);
    if (k < 0) return;
    int *L = w->lists[l];
    memmove(L + k, L + k + 1, (size_t)(w->cnt[l] - k - 1) * sizeof(int));
    w->cnt[l]--;
}

/* Insertion sort by x with early exit: O(c) on a sorted or nearly sorted list. */
static void list_sort_nearly(ew_world *w, int l) {
    int *L = w->lists[l];
    const float *X = w->V.x;
    int c = w->cnt[l];
    for (int k = 1; k < c; k++) {
        int i = L[k];
        float xi = X[i];
        if (X[L[k - 1]] <= xi) continue;
        int m = k - 1;
        while (m >= 0 && X[L[m]] > xi) {
            L[m + 1] = L[m];
            m--;
        }
        L[m + 1] = i;
    }
}

/* Stable merge sort of list l by x (any order in, O(c log c)), using w->scratch. */
static void list_sort_full(ew_world *w, int l) {
    const float *X = w->V.x;
    int c = w->cnt[l];
    int *a = w->lists[l], *b = w->scratch;
    for (int width = 1; width < c; width *= 2) {
        for (int lo = 0; lo < c; lo += 2 * width) {
            int mid = lo + width < c ? lo + width : c;
            int hi = lo + 2 * width < c ? lo + 2 * width : c;
            int p = lo, q = mid, o = lo;
            while (p < mid && q < hi) b[o++] = (X[a[q]] < X[a[p]]) ? a[q++] : a[p++];
            while (p < mid) b[o++] = a[p++];
            while (q < hi) b[o++] = a[q++];
        }
        int *t = a;
        a = b;
        b = t;
    }
    if (a != w->lists[l]) memcpy(w->lists[l], a, (size_t)c * sizeof(int));
}

/* All lists from scratch (reset and mutators): slots in slot order, then sorted. */
static void rebuild_lists(ew_world *w) {
    const ew_vehicles *V = &w->V;
    int nl = w->cfg.road.n_lanes;
    for (int l = 0; l < nl; l++) w->cnt[l] = 0;
    for (int i = 0; i < V->n; i++) {
        int a = V->lane[i], b = V->lane_from[i];
        w->lists[a][w->cnt[a]++] = i;
        if (b != a) w->lists[b][w->cnt[b]++] = i;
    }
    if (w->cfg.ego_enabled)
        for (int l = 0; l < nl; l++)
            if (w->ego_mask & (1u << l)) w->lists[l][w->cnt[l]++] = w->ego;
    for (int l = 0; l < nl; l++) list_sort_full(w, l);
}

/* Removes every slot with dead[i] set (swap with the last slot) and renames the slots in
 * the lists and the due list accordingly (order kept). */
static void compact(ew_world *w) {
    ew_vehicles *V = &w->V;
    int n = V->n;
    int *orig = w->scratch; /* slot -> original index */
    for (int i = 0; i < n; i++) {
        w->remap[i] = i;
        orig[i] = i;
    }
    w->remap[w->ego] = w->ego;
    for (int i = n - 1; i >= 0; i--) {
        if (!w->dead[i]) continue;
        int last = n - 1;
        w->remap[orig[i]] = -1;
        if (i != last) {
            for (int f = 0; f < w->n_move; f++) {
                char *p = (char *)*w->fld[f].p;
                size_t sz = w->fld[f].sz;
                memcpy(p + (size_t)i * sz, p + (size_t)last * sz, sz);
            }
            orig[i] = orig[last];
            w->remap[orig[i]] = i;
        }
        w->dead[last] = 0;
        n--;
    }
    V->n = n;
    for (int l = 0; l < w->cfg.road.n_lanes; l++) {
        int *L = w->lists[l], m = 0;
        for (int k = 0; k < w->cnt[l]; k++) {
            int j = w->remap[L[k]];
            if (j >= 0) L[m++] = j;
        }
        w->cnt[l] = m;
    }
    int m = 0;
    for (int k = 0; k < w->n_due; k++) {
        int j = w->remap[w->due[k]];
        if (j >= 0) {
            w->due_k[m] = w->due_k[k];
            w->due[m++] = j;
        }
    }
    w->n_due = m;
}

/* ---- IDM helpers -------------------------------------------------------------------- */

static inline ew_idm_p idm_of(const ew_world *w, int i) { return w->ip[i]; }

/* IDM acceleration of i behind j (j < 0: free road) at i's current state. */
static inline float accel_behind(const ew_world *w, int i, int j) {
    ew_idm_p p = idm_of(w, i);
    const ew_vehicles *V = &w->V;
    if (j < 0) return ew_idm_free(&p, V->v[i]);
    float s = (V->x[j] - w->hl[j]) - (V->x[i] + w->hl[i]);
    return ew_idm_accel(&p, V->v[i], V->v[i] - V->v[j], s);
}

/* IDM acceleration of i as if placed at x = xi in lane l behind leader j (or free), with
 * the lane's end obstacle. */
static inline float accel_lane(const ew_world *w, int i, float xi, int j, int l) {
    ew_idm_p p = idm_of(w, i);
    const ew_vehicles *V = &w->V;
    float front = xi + w->hl[i];
    float a;
    if (j >= 0) a = ew_idm_accel(&p, V->v[i], V->v[i] - V->v[j], (V->x[j] - w->hl[j]) - front);
    else a = ew_idm_free(&p, V->v[i]);
    float stop = w->stop_x[l];
    if (stop < EW_INF && front <= stop + 0.5f) {
        float ae = ew_idm_accel(&p, V->v[i], V->v[i], stop - front);
        if (ae < a) a = ae;
    }
    return a;
}

/* ---- vehicles ----------------------------------------------------------------------- */

static float sample(ew_rng *r, float mean, float sd) {
    if (sd <= 0.0f) return mean;
    float v = mean + sd * (float)ew_rng_normal(r);
    if (v < 0.5f * mean) v = 0.5f * mean;
    if (v > 1.5f * mean) v = 1.5f * mean;
    return v;
}

static vparams sample_type(ew_world *w, ew_vtype t) {
    const ew_vtype_params *p = &w->cfg.types[t];
    ew_rng *r = &w->rng;
    vparams q;
    q.type = t;
    q.flags = 0;
    q.len = sample(r, p->length, p->length_std);
    q.wid = sample(r, p->width, p->width_std);
    q.v0f = sample(r, p->v0_factor, p->v0_factor_std);
    q.T = sample(r, p->T, p->T_std);
    q.s0 = p->s0;
    q.a_max = sample(r, p->a_max, p->a_max_std);
    q.b = sample(r, p->b_comf, p->b_comf_std);
    q.delta = p->delta;
    q.pol = p->politeness;
    q.b_safe = p->b_safe;
    q.a_thr = p->a_thr;
    q.kr = p->keep_right;
    return q;
}

/* A random vehicle for lane l (type by the shares; exiting by exit_share on main lanes
 * upstream of an off-ramp). */
static vparams sample_vehicle(ew_world *w, int l, float x) {
    double u = ew_rng_uniform(&w->rng);
    ew_vtype t = u < w->cfg.truck_share ? EW_VT_TRUCK
               : (u < w->cfg.truck_share + w->cfg.moto_share ? EW_VT_MOTO : EW_VT_CAR);
    vparams q = sample_type(w, t);
    if (w->cfg.exit_share > 0.0f && w->offramp >= 0 && w->cfg.road.lanes[l].kind == EW_LANE_MAIN &&
        x < w->cfg.road.lanes[w->offramp].x_start && ew_rng_uniform(&w->rng) < w->cfg.exit_share)
        q.flags |= EW_VF_EXITING;
    return q;
}

/* Writes a new vehicle into slot n (not yet in the lists). Returns its slot. */
static int add_slot(ew_world *w, const vparams *q, int lane, float x, float y, float v, float v0) {
    ew_vehicles *V = &w->V;
    int i = V->n++;
    V->id[i] = w->next_id++;
    if (w->next_id == 0) w->next_id = 1;
    V->type[i] = (uint8_t)q->type;
    V->flags[i] = q->flags;
    V->x[i] = x;
    V->y[i] = y;
    V->hx[i] = 1.0f;
    V->hy[i] = 0.0f;
    V->v[i] = v;
    V->acc[i] = 0.0f;
    V->len[i] = q->len;
    V->wid[i] = q->wid;
    w->hl[i] = 0.5f * q->len;
    if (w->hl[i] > w->max_hl) w->max_hl = w->hl[i];
    V->lane[i] = V->lane_from[i] = (int8_t)lane;
    V->lc_t[i] = 0.0f;
    w->v0f[i] = v0 > 0.0f ? v0 / w->limit[lane] : q->v0f;
    V->v0[i] = w->v0f[i] * w->limit[lane];
    V->T[i] = q->T;
    V->s0[i] = q->s0;
    V->a_max[i] = q->a_max;
    V->b_comf[i] = q->b;
    V->delta[i] = q->delta;
    w->ip[i] = ew_idm_params(V->v0[i], q->T, q->s0, q->a_max, q->b, q->delta);
    V->politeness[i] = q->pol;
    V->b_safe[i] = q->b_safe;
    V->a_thr[i] = q->a_thr;
    V->keep_right[i] = q->kr;
    V->mobil_clock[i] = (float)ew_rng_range(&w->rng, 0.0, w->cfg.mobil_period);
    V->brake_decel[i] = 0.0f;
    V->brake_time[i] = 0.0f;
    w->lc_y0[i] = w->lc_y1[i] = y;
    w->lc_dur[i] = w->cfg.lc_duration;
    w->dead[i] = 0;
    w->st.spawned++;
    return i;
}

static void start_change(ew_world *w, int i, int to, float dur) {
    ew_vehicles *V = &w->V;
    V->lane_from[i] = V->lane[i];
    V->lane[i] = (int8_t)to;
    V->flags[i] |= EW_VF_CHANGING;
    V->lc_t[i] = 0.0f;
    w->lc_y0[i] = V->y[i];
    w->lc_y1[i] = ew_road_lane_center(&w->cfg.road, to);
    w->lc_dur[i] = dur;
    V->v0[i] = w->v0f[i] * w->limit[to];
    w->ip[i].inv_v0 = 1.0f / V->v0[i];
    w->st.lane_changes++;
}

/* ---- create / destroy / reset -------------------------------------------------------- */

#define FIELD(arr) do { w->fld[w->n_fld].p = (void **)&(arr); w->fld[w->n_fld].sz = sizeof *(arr); w->n_fld++; } while (0)

ew_world *ew_world_create(const ew_world_config *cfg, char *err, int errlen) {
    if (ew_world_config_validate(cfg, err, errlen) != 0) return NULL;
    ew_world *w = calloc(1, sizeof *w);
    if (!w) {
        fail(err, errlen, "world: out of memory");
        return NULL;
    }
    w->cfg = *cfg;
    w->road0 = cfg->road;
    w->cap = cfg->max_vehicles;
    w->ego = w->cap;
    ew_vehicles *V = &w->V;
    V->cap = w->cap;
    FIELD(V->id); FIELD(V->type); FIELD(V->flags); FIELD(V->x); FIELD(V->y); FIELD(V->hx);
    FIELD(V->hy); FIELD(V->v); FIELD(V->acc); FIELD(V->len); FIELD(V->wid); FIELD(V->lane);
    FIELD(V->lane_from); FIELD(V->lc_t); FIELD(V->v0); FIELD(V->T); FIELD(V->s0);
    FIELD(V->a_max); FIELD(V->b_comf); FIELD(V->delta); FIELD(V->politeness); FIELD(V->b_safe);
    FIELD(V->a_thr); FIELD(V->keep_right); FIELD(V->mobil_clock); FIELD(V->brake_decel);
    FIELD(V->brake_time);
    FIELD(w->hl); FIELD(w->v0f); FIELD(w->ip); FIELD(w->lc_y0); FIELD(w->lc_y1);
    FIELD(w->lc_dur); FIELD(w->dead);
    w->n_move = w->n_fld;
    FIELD(w->lim_x); FIELD(w->lim_v); FIELD(w->due); FIELD(w->due_k); FIELD(w->chg); FIELD(w->remap);
    FIELD(w->scratch); FIELD(w->stash);
    size_t n1 = (size_t)w->cap + 1;
    int ok = 1;
    for (int f = 0; f < w->n_fld; f++) {
        *w->fld[f].p = calloc(n1, w->fld[f].sz);
        if (!*w->fld[f].p) ok = 0;
    }
    for (int l = 0; l < EW_MAX_LANES && ok; l++) {
        w->lists[l] = calloc(n1, sizeof(int));
        if (!w->lists[l]) ok = 0;
    }
    if (!ok) {
        ew_world_destroy(w);
        fail(err, errlen, "world: out of memory for %d vehicles", cfg->max_vehicles);
        return NULL;
    }
    ew_world_reset(w, cfg->seed);
    return w;
}

void ew_world_destroy(ew_world *w) {
    if (!w) return;
    for (int f = 0; f < w->n_fld; f++) free(*w->fld[f].p);
    for (int l = 0; l < EW_MAX_LANES; l++) free(w->lists[l]);
    free(w);
}

/* Fills lane l from the densities: vehicles placed downstream to upstream with gaps of at
 * least each follower's IDM equilibrium gap at the initial speed plus a random extra. */
static void fill_lane(ew_world *w, int l) {
    const ew_lane *ln = &w->cfg.road.lanes[l];
    float d = w->cfg.density_per_km[l];
    if (d <= 0.0f || ln->kind == EW_LANE_OFFRAMP) return;
    const ew_vtype_params *car = &w->cfg.types[EW_VT_CAR];
    float h = 1000.0f / d;                   /* mean centre spacing */
    float gap_mean = h - car->length;
    if (gap_mean < car->s0 + 0.5f) gap_mean = car->s0 + 0.5f;
    float v0c = car->v0_factor * ln->speed_limit;
    float v_init = (float)ew_idm_equilibrium_speed(0.8 * gap_mean, v0c, car->T, car->s0, car->delta);
    float se_mean = (float)ew_idm_equilibrium_gap(v_init, v0c, car->T, car->s0, car->delta);
    float extra_mean = gap_mean - se_mean;
    if (extra_mean < 0.3f) extra_mean = 0.3f;
    float x_hi = w->stop_x[l] < EW_INF ? w->stop_x[l] : ln->x_end;
    float x_lo = ln->x_start + ln->taper_in;
    float cursor = x_hi - (float)ew_rng_uniform(&w->rng) * h; /* rear of the previous vehicle */
    float lead_v = -1.0f;
    const ew_vehicles *V = &w->V;
    int ego_here = w->cfg.ego_enabled && (w->ego_mask & (1u << l));
    float ego_rear = V->x[w->ego] - w->hl[w->ego], ego_front = V->x[w->ego] + w->hl[w->ego];
    while (w->V.n < w->cap) {
        vparams q = sample_vehicle(w, l, cursor);
        float v0 = q.v0f * ln->speed_limit;
        float vv = v_init < 0.95f * v0 ? v_init : 0.95f * v0;
        if (lead_v >= 0.0f && vv > lead_v) vv = lead_v;
        float se = (float)ew_idm_equilibrium_gap(vv, v0, q.T, q.s0, q.delta);
        float gap = lead_v >= 0.0f ? se + extra_mean * (float)-log(1.0 - ew_rng_uniform(&w->rng)) : 0.0f;
        float front = cursor - gap;
        if (ego_here && front + se > ego_rear && front - q.len - se < ego_front) {
            /* keep clear of the ego: continue behind it at its speed */
            front = ego_rear - se;
            if (vv > w->ego_state.s) vv = w->ego_state.s;
        }
        if (front - q.len < x_lo) break;
        if (w->stop_x[l] < EW_INF) {
            float vmax = sqrtf(q.b * fmaxf(0.0f, w->stop_x[l] - front));
            if (vv > vmax) vv = vmax;
        }
        add_slot(w, &q, l, front - 0.5f * q.len, ew_road_lane_center(&w->cfg.road, l), vv, 0.0f);
        cursor = front - q.len;
        lead_v = vv;
    }
}

void ew_world_reset(ew_world *w, uint64_t seed) {
    w->cfg.seed = seed;
    w->cfg.road = w->road0;
    lane_cache(w);
    ew_rng_seed(&w->rng, seed);
    memset(&w->st, 0, sizeof w->st);
    w->V.n = 0;
    w->n_due = 0;
    w->n_chg = 0;
    w->next_id = 1;
    w->max_hl = 0.0f;
    /* the ego's slot: car means as IDM constants (others judge it as a car) */
    const ew_vtype_params *car = &w->cfg.types[EW_VT_CAR];
    ew_vehicles *V = &w->V;
    int e = w->ego;
    V->id[e] = 0;
    V->type[e] = EW_VT_CAR;
    V->flags[e] = EW_VF_EXTERNAL;
    V->T[e] = car->T;
    V->s0[e] = car->s0;
    V->a_max[e] = car->a_max;
    V->b_comf[e] = car->b_comf;
    V->delta[e] = car->delta;
    w->v0f[e] = car->v0_factor;
    V->v0[e] = car->v0_factor * w->limit[0];
    w->ip[e] = ew_idm_params(V->v0[e], car->T, car->s0, car->a_max, car->b_comf, car->delta);
    V->politeness[e] = car->politeness;
    V->b_safe[e] = car->b_safe;
    V->a_thr[e] = car->a_thr;
    V->keep_right[e] = car->keep_right;
    V->lane[e] = V->lane_from[e] = 0;
    w->ego_mask = 0;
    if (w->cfg.ego_enabled) {
        int l = w->cfg.ego_lane;
        w->ego_state = (ew_kin_state){w->cfg.ego_x, ew_road_lane_center(&w->cfg.road, l), 1.0f, 0.0f,
                                      w->cfg.ego_speed};
        ego_mirror(w);
    } else {
        w->ego_state = (ew_kin_state){0.0f, 0.0f, 1.0f, 0.0f, 0.0f};
        V->x[e] = -EW_INF;
    }
    for (int l = 0; l < w->cfg.road.n_lanes; l++) fill_lane(w, l);
    w->st.spawned = 0; /* the initial fill is not inflow */
    for (int l = 0; l < EW_MAX_LANES; l++) {
        w->queue[l] = 0;
        w->pend_ok[l] = 0;
        float f = l < w->cfg.road.n_lanes ? w->cfg.flow_per_h[l] : 0.0f;
        w->next_arrival[l] = f > 0.0f ? -log(1.0 - ew_rng_uniform(&w->rng)) * 3600.0 / f : INFINITY;
    }
    rebuild_lists(w);
}

/* ---- one step ----------------------------------------------------------------------- */

/* Everything after the acceleration for background vehicle i: overrides, noise, ballistic
 * motion clamped at lx (the largest x its leaders' previous rear bumpers or a lane end
 * allow; speed capped at lv when clamped), MOBIL clock, removal mark. */
static inline void advance_one(ew_world *w, int i, float a, float lx, float lv) {
    ew_vehicles *V = &w->V;
    const float dt = w->cfg.dt;
    uint8_t fl = V->flags[i];
    if (fl & (EW_VF_BRAKING | EW_VF_STALLED)) {
        if (-V->brake_decel[i] < a) a = -V->brake_decel[i];
        if (fl & EW_VF_BRAKING) {
            V->brake_time[i] -= dt;
            if (V->brake_time[i] <= 0.0f) V->flags[i] = (uint8_t)(fl & ~EW_VF_BRAKING);
        }
    }
    if (w->cfg.idm_noise > 0.0f) a += w->cfg.idm_noise * (float)ew_rng_normal(&w->rng);
    V->acc[i] = a;
    float x0 = V->x[i], v = V->v[i];
    float xn = x0 + ew_ballistic(&v, a, dt);
    if (xn > lx) {
        xn = lx > x0 ? lx : x0;
        float cap = lv > 0.0f ? lv : 0.0f;
        if (v > cap) v = cap;
    }
    V->x[i] = xn;
    V->v[i] = v;
    float ck = V->mobil_clock[i] - dt;
    if (ck <= 0.0f) {
        ck += w->cfg.mobil_period;
        if (ck <= 0.0f) ck = w->cfg.mobil_period;
        w->due_k[w->n_due] = -1;
        w->due[w->n_due++] = i;
    }
    V->mobil_clock[i] = ck;
    if (xn >= w->gone_x[V->lane[i]]) {
        w->dead[i] = 1;
        w->n_dead++;
    }
}

/* Lateral motion of a lane changer (after its longitudinal update); at the end of the
 * change it leaves the list of the lane it came from. */
static void lateral(ew_world *w, int i) {
    ew_vehicles *V = &w->V;
    float dt = w->cfg.dt, v = V->v[i];
    float dy = w->lc_y1[i] - w->lc_y0[i], dur = w->lc_dur[i];
    float peak = 1.875f * fabsf(dy) / dur;
    float allowed = LC_MAX_SLOPE * v;
    float rate = (peak > allowed) ? allowed / peak : 1.0f;
    if (rate < LC_MIN_RATE) rate = LC_MIN_RATE;
    float t = V->lc_t[i] + dt * rate;
    V->lc_t[i] = t;
    float tau = t / dur;
    if (tau >= 1.0f) {
        int from = V->lane_from[i];
        V->y[i] = w->lc_y1[i];
        V->hx[i] = 1.0f;
        V->hy[i] = 0.0f;
        V->lane_from[i] = V->lane[i];
        V->flags[i] = (uint8_t)(V->flags[i] & ~EW_VF_CHANGING);
        V->lc_t[i] = 0.0f;
        if (from != V->lane[i]) list_erase(w, from, i);
    } else {
        V->y[i] = w->lc_y0[i] + dy * ew_lc_profile(tau);
        float vy = dy * ew_lc_profile_d(tau) * rate / dur;
        float vx = v > LC_HEADING_VMIN ? v : LC_HEADING_VMIN;
        float inv = 1.0f / sqrtf(vx * vx + vy * vy);
        V->hx[i] = vx * inv;
        V->hy[i] = vy * inv;
    }
}

/* The general visit of entry i of lane l's list in the traffic pass (below), given its
 * leader's state before the pass (has_leader 0: none): external vehicles stay, vehicles
 * listed once are advanced, vehicles listed twice collect the tighter of their two
 * constraints (lim_x, lim_v, acc) and are queued in chg for advance_one after all lanes.
 * Returns i's x after the visit. */
static EW_NOINLINE float visit_general(ew_world *w, int l, int i, int has_leader, float xj, float vj, float hlj) {
    ew_vehicles *V = &w->V;
    const float *X = V->x, *VV = V->v, *HL = w->hl;
    if (V->flags[i] & EW_VF_EXTERNAL) return X[i];
    const ew_idm_p *p = &w->ip[i];
    float vi = VV[i], hli = HL[i], front = X[i] + hli;
    float a, s = EW_INF, lx = EW_INF, lv = EW_INF;
    if (has_leader) {
        float rear = xj - hlj;
        s = rear - front;
        a = ew_idm_accel(p, vi, vi - vj, s);
        lx = rear - hli;
        lv = vj;
    } else {
        a = ew_idm_free(p, vi);
    }
    int la = V->lane[i], lb = V->lane_from[i];
    float stop = w->stop_x[l];
    if (stop < EW_INF) {
        float end = (la != l) ? w->tip_x[l] : stop; /* changing out of l: its physical end */
        float se = end - front;
        if (se < s && se > -0.5f && se < 400.0f) {
            float ae = ew_idm_accel(p, vi, vi, se);
            if (ae < a) a = ae;
            float xl = end - hli;
            if (xl < lx) {
                lx = xl;
                lv = 0.0f;
            }
        }
    }
    if (la == lb) {
        w->st.vehicle_updates++;
        advance_one(w, i, a, lx, lv);
    } else if (l == (la < lb ? la : lb)) { /* the first of its two lists */
        w->st.vehicle_updates++;
        V->acc[i] = a;
        w->lim_x[i] = lx;
        w->lim_v[i] = lv;
        w->dirty[l] = 1; /* it moves after the lanes */
    } else {
        if (a < V->acc[i]) V->acc[i] = a;
        if (lx < w->lim_x[i]) {
            w->lim_x[i] = lx;
            w->lim_v[i] = lv;
        }
        w->chg[w->n_chg++] = i;
        w->dirty[l] = 1;
    }
    return X[i];
}

/* State of one lane's run of the traffic pass's common case: the smallest (new gap between
 * consecutive centres - rear half length) so far, and the previous such entry's new x and
 * half length. */
typedef struct {
    float pmin, px, phl;
} lane_scan;

/* The common case of the traffic pass for entry k of lane l's list: vehicle i (listed once,
 * no overrides) behind its leader, both in their states before the pass (i: xi, vi, hli;
 * leader: xj, vj, hlj). ew_idm_accel, then ew_ballistic, the clamp and the MOBIL clock,
 * written out. */
static inline void fast_entry(ew_world *w, int k, int i, float xi, float vi, float hli, float xj, float vj,
                              float hlj, float gone, lane_scan *sc) {
    ew_vehicles *V = &w->V;
    const float dt = w->cfg.dt, hdt = 0.5f * dt, period = w->cfg.mobil_period;
    float rear = xj - hlj;
    float a = ew_idm_accel(&w->ip[i], vi, vi - vj, rear - (xi + hli));
    float lx = rear - hli;
    float v1 = vi + a * dt, xnew;
    if (v1 < 0.0f) {
        xnew = xi + (a < 0.0f ? -0.5f * vi * vi / a : 0.0f);
        v1 = 0.0f;
    } else {
        xnew = xi + (vi + v1) * hdt;
    }
    if (xnew > lx) {
        xnew = lx > xi ? lx : xi;
        float cap = vj > 0.0f ? vj : 0.0f;
        if (v1 > cap) v1 = cap;
    }
    V->acc[i] = a;
    V->x[i] = xnew;
    V->v[i] = v1;
    /* the MOBIL clock: `ck -= dt; if (ck <= 0) { ck += period; if (ck <= 0) ck = period;
     * queue i; }` without a branch (it fires for a random tenth of the vehicles, which
     * a branch predictor cannot learn): i is written past the end of the due list and kept
     * when due */
    float ck = V->mobil_clock[i] - dt, ckf = ck + period;
    ckf = ckf <= 0.0f ? period : ckf;
    int fired = ck <= 0.0f;
    V->mobil_clock[i] = fired ? ckf : ck;
    w->due_k[w->n_due] = k;
    w->due[w->n_due] = i;
    w->n_due += fired;
    if (xnew >= gone) {
        w->dead[i] = 1;
        w->n_dead++;
    }
    float d = (xnew - sc->px) - sc->phl;
    sc->pmin = d < sc->pmin ? d : sc->pmin;
    sc->px = xnew;
    sc->phl = hli;
}

/* Entry k of list L (not the head): the common case at once, any other entry set aside
 * with its leader's state (visit_general after the lane's loop). */
static inline void scan_entry(ew_world *w, const int *L, int k, float gone, lane_scan *sc) {
    const ew_vehicles *V = &w->V;
    const uint8_t general = EW_VF_EXTERNAL | EW_VF_CHANGING | EW_VF_BRAKING | EW_VF_STALLED;
    int i = L[k], j = L[k + 1];
    float xj = V->x[j], vj = V->v[j], hlj = w->hl[j];
    if (V->flags[i] & general) {
        stash *g = &w->stash[w->n_stash++];
        g->i = i;
        g->xj = xj;
        g->vj = vj;
        g->hlj = hlj;
    } else {
        fast_entry(w, k, i, V->x[i], V->v[i], w->hl[i], xj, vj, hlj, gone, sc);
    }
}

#if EW_WORLD_SSE
static inline __m128 sel4(__m128 m, __m128 a, __m128 b) { return _mm_or_ps(_mm_and_ps(m, a), _mm_andnot_ps(m, b)); }

/* Entries k..k+3 of list L (entry k+4 exists: their leaders are k+1..k+4) in one go, four
 * SSE lanes doing fast_entry's float operations in fast_entry's order (IEEE single
 * precision, no contraction: the same bits; fast_entry's `c ? x : y` selects map onto
 * max/min/and-or whose operand order keeps its NaN behaviour). Returns 0, having changed
 * nothing, when one of them is not the common case or meets a rare branch (IDM exponent
 * other than 4, a stop inside the step): the caller then takes them one by one. vpmin
 * collects the gap minimum; the caller folds it into sc->pmin (a minimum does not depend on
 * the order it is taken in, and only its comparison with the reach is used). */
static inline int fast4(ew_world *w, const int *L, int k, float gone, lane_scan *sc, __m128 *vpmin) {
    ew_vehicles *V = &w->V;
    const uint8_t general = EW_VF_EXTERNAL | EW_VF_CHANGING | EW_VF_BRAKING | EW_VF_STALLED;
    const int i0 = L[k], i1 = L[k + 1], i2 = L[k + 2], i3 = L[k + 3], i4 = L[k + 4];
    const uint8_t *F = V->flags;
    if ((F[i0] | F[i1] | F[i2] | F[i3]) & general) return 0;
    const float *X = V->x, *VV = V->v, *HL = w->hl;
    const ew_idm_p *P = w->ip;
    __m128 delta = _mm_set_ps(P[i3].delta, P[i2].delta, P[i1].delta, P[i0].delta);
    if (_mm_movemask_ps(_mm_cmpneq_ps(delta, _mm_set1_ps(4.0f)))) return 0;
    const float dt = w->cfg.dt, hdt = 0.5f * dt;
    __m128 xi = _mm_set_ps(X[i3], X[i2], X[i1], X[i0]), xj = _mm_set_ps(X[i4], X[i3], X[i2], X[i1]);
    __m128 vi = _mm_set_ps(VV[i3], VV[i2], VV[i1], VV[i0]), vj = _mm_set_ps(VV[i4], VV[i3], VV[i2], VV[i1]);
    __m128 hli = _mm_set_ps(HL[i3], HL[i2], HL[i1], HL[i0]), hlj = _mm_set_ps(HL[i4], HL[i3], HL[i2], HL[i1]);
    /* inv_v0, T, s0, a_max: the first four floats of each ew_idm_p, transposed */
    __m128 inv_v0 = _mm_loadu_ps(&P[i0].inv_v0), T = _mm_loadu_ps(&P[i1].inv_v0);
    __m128 s0 = _mm_loadu_ps(&P[i2].inv_v0), a_max = _mm_loadu_ps(&P[i3].inv_v0);
    _MM_TRANSPOSE4_PS(inv_v0, T, s0, a_max);
    __m128 inv2 = _mm_set_ps(P[i3].inv_2sqrt_ab, P[i2].inv_2sqrt_ab, P[i1].inv_2sqrt_ab, P[i0].inv_2sqrt_ab);
    const __m128 zero = _mm_setzero_ps(), one = _mm_set1_ps(1.0f);
    /* ew_idm_accel(p, vi, vi - vj, s) */
    __m128 rear = _mm_sub_ps(xj, hlj);
    __m128 s = _mm_sub_ps(rear, _mm_add_ps(xi, hli));
    __m128 dv = _mm_sub_ps(vi, vj);
    __m128 dyn = _mm_add_ps(_mm_mul_ps(vi, T), _mm_mul_ps(_mm_mul_ps(vi, dv), inv2));
    __m128 ss = _mm_add_ps(s0, _mm_max_ps(dyn, zero));           /* dyn > 0 ? dyn : 0 */
    s = _mm_max_ps(_mm_set1_ps(EW_IDM_MIN_GAP), s);              /* s < MIN ? MIN : s */
    __m128 q = _mm_div_ps(ss, s);
    __m128 r = _mm_mul_ps(vi, inv_v0);
    r = _mm_mul_ps(r, r);
    __m128 vp = _mm_mul_ps(r, r);
    __m128 a = _mm_mul_ps(a_max, _mm_sub_ps(_mm_sub_ps(one, vp), _mm_mul_ps(q, q)));
    /* ballistic step; a stop inside the step goes the scalar way */
    __m128 lx = _mm_sub_ps(rear, hli);
    __m128 v1 = _mm_add_ps(vi, _mm_mul_ps(a, _mm_set1_ps(dt)));
    if (_mm_movemask_ps(_mm_cmplt_ps(v1, zero))) return 0;
    __m128 xnew = _mm_add_ps(xi, _mm_mul_ps(_mm_add_ps(vi, v1), _mm_set1_ps(hdt)));
    __m128 over = _mm_cmpgt_ps(xnew, lx);                         /* the no-overshoot clamp */
    xnew = sel4(over, _mm_max_ps(lx, xi), xnew);                  /* lx > xi ? lx : xi */
    v1 = sel4(over, _mm_min_ps(_mm_max_ps(vj, zero), v1), v1);    /* v1 > cap ? cap : v1 */
    /* MOBIL clock */
    const __m128 period = _mm_set1_ps(w->cfg.mobil_period);
    __m128 ck = _mm_sub_ps(_mm_set_ps(V->mobil_clock[i3], V->mobil_clock[i2], V->mobil_clock[i1],
                                      V->mobil_clock[i0]), _mm_set1_ps(dt));
    __m128 fired = _mm_cmple_ps(ck, zero);
    __m128 ck2 = _mm_add_ps(ck, period);
    ck2 = sel4(_mm_cmple_ps(ck2, zero), period, ck2);
    ck = sel4(fired, ck2, ck);
    /* the gap minimum: previous entries' new x and half lengths are [px, x0, x1, x2] */
    __m128 px = _mm_move_ss(_mm_castsi128_ps(_mm_slli_si128(_mm_castps_si128(xnew), 4)), _mm_set_ss(sc->px));
    __m128 phl = _mm_move_ss(_mm_castsi128_ps(_mm_slli_si128(_mm_castps_si128(hli), 4)), _mm_set_ss(sc->phl));
    __m128 d = _mm_sub_ps(_mm_sub_ps(xnew, px), phl);
    *vpmin = _mm_min_ps(d, *vpmin);                                /* d < pmin ? d : pmin */
    float ao[4], xo[4], vo[4], co[4], ho[4];
    _mm_storeu_ps(ao, a);
    _mm_storeu_ps(xo, xnew);
    _mm_storeu_ps(vo, v1);
    _mm_storeu_ps(co, ck);
    _mm_storeu_ps(ho, hli);
    const int id[4] = {i0, i1, i2, i3};
    for (int m = 0; m < 4; m++) {
        int i = id[m];
        V->acc[i] = ao[m];
        V->x[i] = xo[m];
        V->v[i] = vo[m];
        V->mobil_clock[i] = co[m];
    }
    int due = _mm_movemask_ps(fired), dead = _mm_movemask_ps(_mm_cmpge_ps(xnew, _mm_set1_ps(gone)));
    int nd = w->n_due; /* due vehicles in list order, without branches (see fast_entry) */
    for (int m = 0; m < 4; m++) {
        w->due_k[nd] = k + m;
        w->due[nd] = id[m];
        nd += (due >> m) & 1;
    }
    w->n_due = nd;
    for (int m = 0; dead; m++, dead >>= 1)
        if (dead & 1) {
            w->dead[id[m]] = 1;
            w->n_dead++;
        }
    sc->px = xo[3];
    sc->phl = ho[3];
    return 1;
}
#endif

/* Step part (1) (see the top of the file): every lane's list from its back, IDM toward the
 * next entry (read before that entry moves); vehicles listed once are advanced at once
 * (their leader has not moved yet, and nothing reads them again this step); vehicles listed
 * twice are advanced after all lanes. The common case (a vehicle listed once without
 * overrides, behind a leader, in a lane without an end, no noise) is done inline, four
 * consecutive entries at a time where all four are (fast4), else one by one (fast_entry),
 * without calls or unpredictable branches; the other entries are set
 * aside with their leader's state and visited (visit_general) after the lane's loop, the
 * head of the lane last. With noise, or in a lane that ends, every entry is visited in
 * order. The pass also applies the collision pass's reject test to each pair of
 * consecutive entries at their new positions: a lane where every pair is out of reach and
 * nothing moves later in the step holds no overlapping pair and stays clean (dirty[l] =
 * 0); count_collisions walks the others. */
static void traffic_pass(ew_world *w) {
    ew_vehicles *V = &w->V;
    const float *X = V->x, *VV = V->v, *HL = w->hl;
    const float reach = w->max_hl + 0.5f;
    const int noisy = w->cfg.idm_noise > 0.0f;
    int nl = w->cfg.road.n_lanes;
    int64_t fast = 0;
    w->n_due = 0;
    w->n_chg = 0;
    w->n_dead = 0;
    for (int l = 0; l < nl; l++) {
        const int *L = w->lists[l];
        int c = w->cnt[l];
        w->dirty[l] = 0;
        if (c == 0) continue;
        int i = L[0];
        if (noisy || w->stop_x[l] < EW_INF) { /* in order (noise: one draw each, list order) */
            for (int k = 0; k + 1 < c; k++) {
                int j = L[k + 1];
                visit_general(w, l, i, 1, X[j], VV[j], HL[j]);
                i = j;
            }
            visit_general(w, l, i, 0, 0.0f, 0.0f, 0.0f);
            w->dirty[l] = 1;
            continue;
        }
        const float gone = w->gone_x[l];
        w->n_stash = 0;
        lane_scan sc = {EW_INF, -EW_INF, 0.0f};
        int k = 0;
#if EW_WORLD_SSE
        __m128 vpmin = _mm_set1_ps(EW_INF);
        for (; k + 4 < c; k += 4)
            if (!fast4(w, L, k, gone, &sc, &vpmin))
                for (int m = k; m < k + 4; m++) scan_entry(w, L, m, gone, &sc);
        float vm[4];
        _mm_storeu_ps(vm, vpmin);
        for (int m = 0; m < 4; m++) sc.pmin = vm[m] < sc.pmin ? vm[m] : sc.pmin;
#endif
        for (; k + 1 < c; k++) scan_entry(w, L, k, gone, &sc);
        i = L[c - 1];
        float pmin = sc.pmin, px = sc.px, phl = sc.phl;
        int ng = w->n_stash;
        fast += c - 1 - ng;
        for (int q = 0; q < ng; q++) {
            const stash *g = &w->stash[q];
            visit_general(w, l, g->i, 1, g->xj, g->vj, g->hlj);
        }
        float xh = visit_general(w, l, i, 0, 0.0f, 0.0f, 0.0f); /* the head: free road */
        float d = (xh - px) - phl;
        pmin = d < pmin ? d : pmin;
        /* the reject test is d > reach up to rounding: 1 cm of slack keeps this conservative;
         * entries set aside (new positions unknown above) mean: walk the lane */
        if (ng > 0 || !(pmin > reach + 0.01f)) w->dirty[l] = 1;
    }
    for (int q = 0; q < w->n_chg; q++) {
        int i = w->chg[q];
        advance_one(w, i, V->acc[i], w->lim_x[i], w->lim_v[i]);
        if (V->flags[i] & EW_VF_CHANGING) lateral(w, i);
    }
    w->st.vehicle_updates += fast;
}

/* MOBIL decision for vehicle i (not changing, not external/stalled/braking); k_hint: its
 * position in its lane's list if still valid (checked), else -1. */
static void mobil(ew_world *w, int i, int k_hint) {
    ew_vehicles *V = &w->V;
    const ew_road *r = &w->cfg.road;
    int l = V->lane[i];
    float xi = V->x[i], hl = w->hl[i], front = xi + hl, vi = V->v[i];
    const ew_lane *ln = &r->lanes[l];
    /* forced-merge bonus: on an on-ramp always, before any other lane end as it nears */
    float bonus = 0.0f;
    if (w->stop_x[l] < EW_INF) {
        float dist = w->stop_x[l] - front;
        float f = 1.0f - dist / FORCE_RELAX_DIST;
        if (f < 0.0f) f = 0.0f;
        if (f > 1.0f) f = 1.0f;
        if (ln->kind == EW_LANE_ONRAMP) bonus = V->a_thr[i] + 1.0f + 8.0f * f;
        else if (f > 0.0f) bonus = V->a_thr[i] + 10.0f * f;
    }
    int exiting = (V->flags[i] & EW_VF_EXITING) && w->offramp >= 0 && xi < r->lanes[w->offramp].x_end &&
                  r->lanes[w->offramp].x_end - xi < EXIT_PREPARE_DIST;
    const int *L = w->lists[l];
    int c = w->cnt[l];
    int k = (k_hint >= 0 && k_hint < c && L[k_hint] == i) ? k_hint : list_find(w, l, i);
    int old_lead = k + 1 < c ? L[k + 1] : -1;
    int old_fol = k > 0 ? L[k - 1] : -1;
    float pol = V->politeness[i];
    /* the old lane's terms, computed once a target passes the gap and safety tests */
    int have_old = 0;
    float ac_old = 0.0f, ao_old = 0.0f, ao_new = 0.0f;
    int best = -1;
    float best_inc = V->a_thr[i];
    for (int s = 0; s < 2; s++) {
        int t = neighbor(w, l, s, xi);
        if (t < 0) continue;
        const ew_lane *tl = &r->lanes[t];
        if (xi - hl < tl->x_start + tl->taper_in) continue; /* not fully open here */
        if (tl->kind == EW_LANE_ONRAMP) continue;
        if (tl->kind == EW_LANE_OFFRAMP && !(exiting && s == 0)) continue;
        if (w->stop_x[t] < EW_INF && w->stop_x[t] - front < 100.0f + vi * (w->cfg.lc_duration + 4.0f) &&
            w->stop_x[t] <= w->stop_x[l])
            continue; /* never into a lane that ends soon */
        if (exiting && s == 1 && bonus <= 0.0f) continue;
        /* i's rank in lane t is about its rank in lane l, scaled: within an entry or so */
        int kk = list_upper_from(w, t, xi, (int)((int64_t)(k + 1) * w->cnt[t] / c));
        int lead = kk < w->cnt[t] ? w->lists[t][kk] : -1;
        int fol = kk > 0 ? w->lists[t][kk - 1] : -1;
        float margin = GAP_MARGIN + 0.5f * V->s0[i];
        if (lead >= 0 && (V->x[lead] - w->hl[lead]) - front < margin) continue;
        float gf = 0.0f;
        if (fol >= 0) {
            gf = (xi - hl) - (V->x[fol] + w->hl[fol]);
            if (gf < margin) continue;
        }
        float ac_new = accel_lane(w, i, xi, lead, t);
        float bsafe = V->b_safe[i];
        if (ac_new < -bsafe) continue;
        float an_new = 0.0f, an_old = 0.0f;
        if (fol >= 0) {
            ew_idm_p pf = idm_of(w, fol);
            an_new = ew_idm_accel(&pf, V->v[fol], V->v[fol] - vi, gf);
            if (an_new < -bsafe) continue; /* the safety criterion */
            if (pol > 0.0f) an_old = accel_behind(w, fol, lead);
        }
        if (!have_old) {
            have_old = 1;
            ac_old = accel_lane(w, i, xi, old_lead, l);
            if (pol > 0.0f && old_fol >= 0) {
                ao_old = accel_behind(w, old_fol, i);
                ao_new = accel_behind(w, old_fol, old_lead);
            }
        }
        float inc = ew_mobil_incentive(ac_new, ac_old, an_new, an_old, ao_new, ao_old, pol);
        inc += s ? -V->keep_right[i] : V->keep_right[i];
        inc += bonus;
        if (exiting && s == 0) inc += (t == w->offramp) ? 10.0f : 1.0f;
        if (inc > best_inc) {
            best_inc = inc;
            best = t;
        }
    }
    if (best >= 0) {
        start_change(w, i, best, w->cfg.lc_duration);
        list_insert(w, best, i);
    } else if (bonus > 1.0f) {
        /* pressed to merge: look again soon */
        float soon = 0.2f * w->cfg.mobil_period;
        if (V->mobil_clock[i] > soon) V->mobil_clock[i] = soon;
    }
}

static void decisions(ew_world *w) {
    ew_vehicles *V = &w->V;
    for (int q = 0; q < w->n_due; q++) {
        int i = w->due[q];
        if (V->flags[i] & (EW_VF_EXTERNAL | EW_VF_STALLED | EW_VF_BRAKING | EW_VF_CHANGING)) continue;
        mobil(w, i, w->due_k[q]);
    }
    w->n_due = 0;
}

/* Tries to let the head of lane l's entry queue in. Returns 1 when a vehicle entered. */
static int try_enter(ew_world *w, int l) {
    const ew_lane *ln = &w->cfg.road.lanes[l];
    if (w->V.n >= w->cap) {
        w->queue[l]--;
        w->pend_ok[l] = 0;
        w->st.refused_spawns++;
        return 0;
    }
    if (!w->pend_ok[l]) {
        w->pend[l] = sample_vehicle(w, l, ln->x_start);
        w->pend_ok[l] = 1;
    }
    const vparams *q = &w->pend[l];
    const ew_vehicles *V = &w->V;
    float xc = ln->x_start + 0.5f * q->len;
    float v0 = q->v0f * ln->speed_limit;
    float ve = v0 < ln->speed_limit ? v0 : ln->speed_limit;
    int kk = list_upper_from(w, l, xc, 0); /* at the lane's start: from the back of the list */
    if (kk < w->cnt[l]) {
        int j = w->lists[l][kk];
        float gap = (V->x[j] - w->hl[j]) - (xc + 0.5f * q->len);
        if (gap < q->s0 + 1.0f) return 0;
        /* enter at the highest speed (up to the desired one) at which IDM would brake no
         * harder than b/2 behind this leader: the speed SUMO calls departSpeed="max" */
        ew_idm_p p = ew_idm_params(v0, q->T, q->s0, q->a_max, q->b, q->delta);
        float vl = V->v[j], thr = -0.5f * q->b;
        float vmin = 0.2f * ln->speed_limit < 5.0f ? 0.2f * ln->speed_limit : 5.0f;
        if (ew_idm_accel(&p, vmin, vmin - vl, gap) < thr) return 0;
        if (ew_idm_accel(&p, ve, ve - vl, gap) < thr) {
            float lo = vmin, hi = ve;
            for (int it = 0; it < 14; it++) {
                float mid = 0.5f * (lo + hi);
                if (ew_idm_accel(&p, mid, mid - vl, gap) >= thr) lo = mid;
                else hi = mid;
            }
            ve = lo;
        }
    }
    if (kk > 0) {
        int f = w->lists[l][kk - 1];
        float gf = (xc - 0.5f * q->len) - (V->x[f] + w->hl[f]);
        if (gf < 2.0f + 0.5f * V->v[f]) return 0;
    }
    if (w->stop_x[l] < EW_INF) {
        float vmax = sqrtf(q->b * fmaxf(0.0f, w->stop_x[l] - (xc + 0.5f * q->len)));
        if (ve > vmax) ve = vmax;
    }
    int i = add_slot(w, q, l, xc, ew_road_lane_center(&w->cfg.road, l), ve, 0.0f);
    list_insert(w, l, i);
    w->queue[l]--;
    w->pend_ok[l] = 0;
    return 1;
}

static void inflow(ew_world *w) {
    double t1 = w->st.time + w->cfg.dt;
    for (int l = 0; l < w->cfg.road.n_lanes; l++) {
        float f = w->cfg.flow_per_h[l];
        if (f <= 0.0f || w->cfg.road.lanes[l].kind == EW_LANE_OFFRAMP) continue;
        while (w->next_arrival[l] <= t1) {
            if (w->queue[l] < SPAWN_QUEUE_MAX) w->queue[l]++;
            else w->st.refused_spawns++;
            w->next_arrival[l] += -log(1.0 - ew_rng_uniform(&w->rng)) * 3600.0 / f;
        }
        if (w->queue[l] > 0) try_enter(w, l);
    }
}

static ew_obb obb_of(const ew_vehicles *V, int i) {
    ew_obb b;
    b.c = ew_v2(V->x[i], V->y[i]);
    b.d = ew_v2(V->hx[i], V->hy[i]);
    b.len = V->len[i];
    b.wid = V->wid[i];
    return b;
}

/* The overlapping background pairs among the entries of list l from position k on that
 * are within reach of entry k (the list sorted). */
static void collisions_from(ew_world *w, int l, int k, float reach) {
    const ew_vehicles *V = &w->V;
    const int *L = w->lists[l];
    int c = w->cnt[l], i = L[k];
    if (i == w->ego) return;
    float xi = V->x[i], lim = w->hl[i] + reach;
    for (int m = k + 1; m < c; m++) {
        int j = L[m];
        float dx = V->x[j] - xi;
        if (dx > lim) break;
        if (j == w->ego) continue;
        if (dx > w->hl[i] + w->hl[j] + 0.5f) continue;
        if ((V->flags[i] & V->flags[j]) & EW_VF_EXTERNAL) continue;
        uint32_t common = ((1u << V->lane[i]) | (1u << V->lane_from[i])) &
                          ((1u << V->lane[j]) | (1u << V->lane_from[j]));
        if ((common & (~common + 1u)) != (1u << l)) continue; /* count once: lowest shared lane */
        ew_obb a = obb_of(V, i), b = obb_of(V, j);
        if (ew_obb_overlap(&a, &b)) w->st.bg_collisions++;
    }
}

/* Counts background-background overlaps: for each list entry, the entries ahead within
 * reach (most entries are rejected by their next neighbour alone). An entry ahead of its
 * successor means the list lost its order: it is re-sorted and walked again. */
static void count_collisions(ew_world *w) {
    const float *X = w->V.x, *HL = w->hl;
    int nl = w->cfg.road.n_lanes;
    float reach = w->max_hl + 0.5f;
    for (int l = 0; l < nl; l++) {
        if (!w->dirty[l]) continue;
        const int *L = w->lists[l];
        int c = w->cnt[l];
        int64_t before = w->st.bg_collisions;
        for (int pass = 0; pass < 2; pass++) {
            int sorted = 1;
            for (int k = 0; k + 1 < c; k++) {
                int i = L[k];
                float xi = X[i], xn = X[L[k + 1]];
                if (xn - xi > HL[i] + reach) continue;
                if (xn < xi) {
                    sorted = 0;
                    break;
                }
                collisions_from(w, l, k, reach);
            }
            if (sorted) break;
            list_sort_nearly(w, l); /* out of order: repair the list and count it again */
            w->st.bg_collisions = before;
        }
    }
}

void ew_world_step(ew_world *w, const ew_action *ego_action) {
    traffic_pass(w);
    if (w->cfg.ego_enabled) {
        ew_action u = ego_action ? *ego_action : (ew_action){0.0f, 0.0f};
        u = ew_kin_clip(&w->cfg.ego_limits, u);
        ew_kin_state nx;
        ew_kin_step(&w->ego_state, u, w->cfg.dt, w->cfg.ego_limits.allow_reverse, &nx);
        w->ego_state = nx;
        uint32_t was = w->ego_mask;
        ego_mirror(w);
        uint32_t now = w->ego_mask;
        for (int l = 0; l < w->cfg.road.n_lanes; l++) {
            uint32_t bit = 1u << l;
            if ((was | now) & bit) w->dirty[l] = 1;
            if ((was & bit) && !(now & bit)) list_erase(w, l, w->ego);
            else if ((was & bit) && (now & bit)) list_sort_nearly(w, l);
            else if (now & bit) list_insert(w, l, w->ego);
        }
    }
    if (w->n_dead) {
        w->st.exited += w->n_dead;
        compact(w);
    }
    decisions(w);
    inflow(w);
    count_collisions(w);
    w->st.steps++;
    w->st.time = (double)w->st.steps * w->cfg.dt;
}

/* ---- queries ------------------------------------------------------------------------ */

const ew_world_config *ew_world_config_of(const ew_world *w) { return &w->cfg; }
const ew_road *ew_world_road(const ew_world *w) { return &w->cfg.road; }
const ew_vehicles *ew_world_vehicles(const ew_world *w) { return &w->V; }
const ew_kin_state *ew_world_ego(const ew_world *w) { return &w->ego_state; }
ew_world_stats ew_world_get_stats(const ew_world *w) { return w->st; }
double ew_world_time(const ew_world *w) { return w->st.time; }

int ew_world_find(const ew_world *w, uint32_t id) {
    if (id == 0) return -1;
    for (int i = 0; i < w->V.n; i++)
        if (w->V.id[i] == id) return i;
    return -1;
}

int ew_world_leader(const ew_world *w, int lane, float x, int skip) {
    if (lane < 0 || lane >= w->cfg.road.n_lanes) return -1;
    const int *L = w->lists[lane];
    for (int k = list_upper(w, lane, x); k < w->cnt[lane]; k++)
        if (L[k] != skip && L[k] != w->ego) return L[k];
    return -1;
}

int ew_world_follower(const ew_world *w, int lane, float x, int skip) {
    if (lane < 0 || lane >= w->cfg.road.n_lanes) return -1;
    const int *L = w->lists[lane];
    const float *X = w->V.x;
    int k = list_upper(w, lane, x) - 1;
    while (k >= 0 && X[L[k]] >= x) k--; /* strictly behind */
    for (; k >= 0; k--)
        if (L[k] != skip && L[k] != w->ego) return L[k];
    return -1;
}

/* ---- the ego ------------------------------------------------------------------------ */

void ew_world_ego_idm_action(const ew_world *w, ew_action *out) {
    out->a = 0.0f;
    out->b = 0.0f;
    if (!w->cfg.ego_enabled) return;
    const ew_kin_state *e = &w->ego_state;
    const ew_road *r = &w->cfg.road;
    const ew_vehicles *V = &w->V;
    int lane = ew_road_lane_at(r, e->x, e->y);
    if (lane < 0) {
        /* off every lane: aim for the nearest main lane */
        float best = EW_INF;
        for (int l = 0; l < r->n_main; l++) {
            float d = fabsf(ew_road_lane_center(r, l) - e->y);
            if (d < best) {
                best = d;
                lane = l;
            }
        }
    }
    int target = lane;
    /* the lane ends ahead: keep to the lane it merges into */
    if (w->stop_x[lane] < EW_INF && w->stop_x[lane] - e->x < 150.0f + 4.0f * e->s) {
        int side = r->lanes[lane].merge_side >= 0 ? 1 : 0;
        int t = neighbor(w, lane, side, e->x);
        if (t < 0) t = neighbor(w, lane, 1 - side, e->x);
        if (t >= 0) target = t;
    }
    /* longitudinal: IDM with car-mean constants toward the tightest leader of the lanes the
     * ego occupies (and its target lane), and the end of its lane */
    ew_idm_p p = idm_of(w, w->ego);
    float v0 = w->v0f[w->ego] * w->limit[target];
    p.inv_v0 = 1.0f / v0;
    float v = e->s * e->dx, front = e->x + w->hl[w->ego];
    float a = ew_idm_free(&p, v);
    uint32_t mask = w->ego_mask | (1u << target);
    for (int l = 0; l < r->n_lanes; l++) {
        if (!(mask & (1u << l))) continue;
        int j = ew_world_leader(w, l, e->x, -1);
        if (j >= 0) {
            float aj = ew_idm_accel(&p, v, v - V->v[j], (V->x[j] - w->hl[j]) - front);
            if (aj < a) a = aj;
        }
    }
    if (target == lane && w->stop_x[lane] < EW_INF && front <= w->stop_x[lane] + 0.5f) {
        float ae = ew_idm_accel(&p, v, v, w->stop_x[lane] - front);
        if (ae < a) a = ae;
    }
    const ew_kin_limits *k = &w->cfg.ego_limits;
    if (a < k->a_min) a = k->a_min;
    if (a > k->a_max) a = k->a_max;
    /* lateral: curvature that brings the lateral error e and the heading angle th to zero
     * critically damped over a distance scale Ls (de/ds = sin th, dth/ds = b) */
    float err_y = e->y - ew_road_lane_center(r, target);
    float Ls = 1.2f * e->s;
    if (Ls < 8.0f) Ls = 8.0f;
    float b = -err_y / (Ls * Ls) - 2.0f * e->dy / Ls;
    if (b > k->b_max) b = k->b_max;
    if (b < -k->b_max) b = -k->b_max;
    out->a = a;
    out->b = b;
}

int ew_world_ego_collision(const ew_world *w, float tol) {
    if (!w->cfg.ego_enabled) return 0;
    const ew_vehicles *V = &w->V;
    const ew_kin_state *e = &w->ego_state;
    ew_obb eb;
    eb.c = ew_v2(e->x, e->y);
    eb.d = ew_v2(e->dx, e->dy);
    eb.len = w->cfg.ego_length - tol;
    eb.wid = w->cfg.ego_width - tol;
    if (eb.len < 0.01f) eb.len = 0.01f;
    if (eb.wid < 0.01f) eb.wid = 0.01f;
    float reach = 0.5f * (w->cfg.ego_length + w->cfg.ego_width) + w->max_hl + 0.5f;
    /* every vehicle is listed in at least one lane: scan each list around the ego's x */
    for (int l = 0; l < w->cfg.road.n_lanes; l++) {
        const int *L = w->lists[l];
        for (int k = list_upper(w, l, e->x - reach); k < w->cnt[l]; k++) {
            int i = L[k];
            if (V->x[i] - e->x > reach) break;
            if (i == w->ego) continue;
            ew_obb b = obb_of(V, i);
            if (ew_obb_overlap(&eb, &b)) return 1;
        }
    }
    return 0;
}

int ew_world_ego_offroad(const ew_world *w) {
    if (!w->cfg.ego_enabled) return 0;
    const ew_kin_state *e = &w->ego_state;
    ew_obb eb = {ew_v2(e->x, e->y), ew_v2(e->dx, e->dy), w->cfg.ego_length, w->cfg.ego_width};
    ew_vec2 c[4];
    ew_obb_corners(&eb, c);
    for (int k = 0; k < 4; k++)
        if (!ew_road_drivable(&w->cfg.road, c[k].x, c[k].y)) return 1;
    return 0;
}

void ew_world_set_ego(ew_world *w, const ew_kin_state *s) {
    if (!w->cfg.ego_enabled) return;
    w->ego_state = *s;
    ego_mirror(w);
    rebuild_lists(w);
}

/* ---- mutators ----------------------------------------------------------------------- */

static int overlaps_any(const ew_world *w, const ew_obb *b, int skip) {
    const ew_vehicles *V = &w->V;
    float reach = 0.5f * (b->len + b->wid) + w->max_hl + 0.5f;
    int n = V->n;
    for (int k = 0; k <= n; k++) { /* the live slots, then the ego's (if enabled) */
        if (k == n && !w->cfg.ego_enabled) break;
        int i = k < n ? k : w->ego;
        if (i == skip || fabsf(V->x[i] - b->c.x) > reach) continue;
        ew_obb o = obb_of(V, i);
        if (ew_obb_overlap(b, &o)) return 1;
    }
    return 0;
}

/* ew_world_spawn and ew_world_spawn_id: id 0 = the next automatic id. External vehicles
 * skip the overlap test (a log may hold transient overlaps; see world.h). */
static uint32_t spawn_impl(ew_world *w, const ew_spawn *s, uint32_t id, char *err, int errlen) {
    const ew_road *r = &w->cfg.road;
    if (!s) {
        fail(err, errlen, "spawn: no description");
        return 0;
    }
    if ((int)s->type < 0 || s->type >= EW_VT_COUNT) {
        fail(err, errlen, "spawn: unknown vehicle type %d", (int)s->type);
        return 0;
    }
    if (s->lane < 0 || s->lane >= r->n_lanes) {
        fail(err, errlen, "spawn: no lane %d (the road has %d)", s->lane, r->n_lanes);
        return 0;
    }
    const ew_lane *ln = &r->lanes[s->lane];
    int external = (s->flags & EW_VF_EXTERNAL) != 0;
    if (!finitef(s->x) || !(s->x >= 0.0f && s->x < r->length)) {
        fail(err, errlen, "spawn: x = %g is not on the road [0, %g)", (double)s->x, (double)r->length);
        return 0;
    }
    if (!external && !(s->x >= ln->x_start && s->x < ln->x_end)) {
        fail(err, errlen, "spawn: lane %d does not exist at x = %g", s->lane, (double)s->x);
        return 0;
    }
    if (!(finitef(s->v) && s->v >= 0.0f && s->v <= 100.0f)) {
        fail(err, errlen, "spawn: speed must be in [0, 100] m/s (got %g)", (double)s->v);
        return 0;
    }
    if (!finitef(s->y) || !finitef(s->length) || !finitef(s->width) || !finitef(s->v0) ||
        s->length > 30.0f || s->width > 3.5f || s->v0 > 100.0f) {
        fail(err, errlen, "spawn: y, length (<= 30), width (<= 3.5) and v0 (<= 100) must be finite");
        return 0;
    }
    if (s->flags & ~(EW_VF_EXTERNAL | EW_VF_EXITING)) {
        fail(err, errlen, "spawn: only the EXTERNAL and EXITING flags may be given (got 0x%x)", s->flags);
        return 0;
    }
    if (w->V.n >= w->cap) {
        w->st.refused_spawns++;
        fail(err, errlen, "spawn: no room (max_vehicles = %d)", w->cap);
        return 0;
    }
    vparams q = sample_type(w, s->type);
    q.flags = s->flags;
    if (s->length > 0.0f) q.len = s->length;
    if (s->width > 0.0f) q.wid = s->width;
    float y = s->y < -1e29f ? ew_road_lane_center(r, s->lane) : s->y;
    ew_obb b = {ew_v2(s->x, y), ew_v2(1.0f, 0.0f), q.len, q.wid};
    if (!external && overlaps_any(w, &b, -1)) {
        fail(err, errlen, "spawn: a vehicle at x = %g in lane %d would overlap another vehicle", (double)s->x, s->lane);
        return 0;
    }
    if (id != 0 && ew_world_find(w, id) >= 0) {
        fail(err, errlen, "spawn: id %u is already in use", (unsigned)id);
        return 0;
    }
    uint32_t next = w->next_id;
    int i = add_slot(w, &q, s->lane, s->x, y, s->v, s->v0);
    if (id != 0) { /* the given id; automatic ids continue above the largest one given */
        w->V.id[i] = id;
        w->next_id = next > id ? next : id + 1;
        if (w->next_id == 0) w->next_id = 1;
    }
    list_insert(w, s->lane, i);
    return w->V.id[i];
}

uint32_t ew_world_spawn(ew_world *w, const ew_spawn *s, char *err, int errlen) {
    return spawn_impl(w, s, 0, err, errlen);
}

uint32_t ew_world_spawn_id(ew_world *w, const ew_spawn *s, uint32_t id, char *err, int errlen) {
    return spawn_impl(w, s, id, err, errlen);
}

static int find_or_fail(const ew_world *w, uint32_t id, const char *what, char *err, int errlen) {
    int i = ew_world_find(w, id);
    if (i < 0) fail(err, errlen, "%s: no vehicle with id %u", what, (unsigned)id);
    return i;
}

int ew_world_remove(ew_world *w, uint32_t id, char *err, int errlen) {
    int i = find_or_fail(w, id, "remove", err, errlen);
    if (i < 0) return -1;
    w->dead[i] = 1;
    compact(w);
    return 0;
}

int ew_world_change_lane(ew_world *w, uint32_t id, int to, float duration, char *err, int errlen) {
    int i = find_or_fail(w, id, "change_lane", err, errlen);
    if (i < 0) return -1;
    ew_vehicles *V = &w->V;
    if (V->flags[i] & EW_VF_EXTERNAL) return fail(err, errlen, "change_lane: vehicle %u is external", (unsigned)id);
    if (V->flags[i] & EW_VF_CHANGING)
        return fail(err, errlen, "change_lane: vehicle %u is already changing lanes", (unsigned)id);
    if (!finitef(duration) || duration > 30.0f)
        return fail(err, errlen, "change_lane: duration must be <= 30 s (got %g)", (double)duration);
    if (duration <= 0.0f) duration = w->cfg.lc_duration;
    if (duration < 0.5f) duration = 0.5f;
    int l = V->lane[i];
    if (to < 0 || to >= w->cfg.road.n_lanes) return fail(err, errlen, "change_lane: no lane %d", to);
    if (to != neighbor(w, l, 0, V->x[i]) && to != neighbor(w, l, 1, V->x[i]))
        return fail(err, errlen, "change_lane: lane %d is not next to lane %d at x = %g", to, l, (double)V->x[i]);
    start_change(w, i, to, duration);
    list_insert(w, to, i);
    return 0;
}

int ew_world_brake(ew_world *w, uint32_t id, float decel, float duration, char *err, int errlen) {
    int i = find_or_fail(w, id, "brake", err, errlen);
    if (i < 0) return -1;
    if (!(finitef(decel) && decel > 0.0f && decel <= 15.0f))
        return fail(err, errlen, "brake: decel must be in (0, 15] m/s^2 (got %g)", (double)decel);
    if (!(finitef(duration) && duration > 0.0f))
        return fail(err, errlen, "brake: duration must be > 0 s (got %g)", (double)duration);
    if (w->V.flags[i] & EW_VF_EXTERNAL) return fail(err, errlen, "brake: vehicle %u is external", (unsigned)id);
    w->V.flags[i] |= EW_VF_BRAKING;
    w->V.brake_decel[i] = decel;
    w->V.brake_time[i] = duration;
    return 0;
}

int ew_world_stall(ew_world *w, uint32_t id, float decel, char *err, int errlen) {
    int i = find_or_fail(w, id, "stall", err, errlen);
    if (i < 0) return -1;
    if (!finitef(decel) || decel > 15.0f) return fail(err, errlen, "stall: decel must be <= 15 m/s^2 (got %g)", (double)decel);
    if (w->V.flags[i] & EW_VF_EXTERNAL) return fail(err, errlen, "stall: vehicle %u is external", (unsigned)id);
    w->V.flags[i] = (uint8_t)((w->V.flags[i] | EW_VF_STALLED) & ~EW_VF_BRAKING);
    w->V.brake_decel[i] = decel > 0.0f ? decel : w->V.b_comf[i];
    w->V.brake_time[i] = 0.0f;
    return 0;
}

int ew_world_close_lane(ew_world *w, int lane, float x_from, float taper, char *err, int errlen) {
    if (ew_road_close_lane(&w->cfg.road, lane, x_from, taper, err, errlen) != 0) return -1;
    lane_cache(w);
    if (w->cfg.ego_enabled) ego_mirror(w);
    rebuild_lists(w);
    return 0;
}

int ew_world_set_speed_limit(ew_world *w, int lane, float v, char *err, int errlen) {
    if (ew_road_set_speed_limit(&w->cfg.road, lane, v, err, errlen) != 0) return -1;
    lane_cache(w);
    ew_vehicles *V = &w->V;
    for (int i = 0; i < V->n; i++) {
        if (V->lane[i] != lane) continue;
        V->v0[i] = w->v0f[i] * w->limit[lane];
        w->ip[i].inv_v0 = 1.0f / V->v0[i];
    }
    return 0;
}

/* ew_world_set_external without the rebuild of the lane lists (the caller rebuilds). */
static int set_external_one(ew_world *w, uint32_t id, float x, float y, float hx, float hy, float v,
                            char *err, int errlen) {
    int i = find_or_fail(w, id, "set_external", err, errlen);
    if (i < 0) return -1;
    ew_vehicles *V = &w->V;
    if (!(V->flags[i] & EW_VF_EXTERNAL)) return fail(err, errlen, "set_external: vehicle %u is not external", (unsigned)id);
    if (!(finitef(x) && finitef(y) && finitef(hx) && finitef(hy) && finitef(v)))
        return fail(err, errlen, "set_external: non-finite state for vehicle %u", (unsigned)id);
    float nh = sqrtf(hx * hx + hy * hy);
    if (!(nh > 1e-6f)) return fail(err, errlen, "set_external: zero heading for vehicle %u", (unsigned)id);
    if (v < 0.0f || v > 100.0f) return fail(err, errlen, "set_external: speed must be in [0, 100] m/s (got %g)", (double)v);
    V->x[i] = x;
    V->y[i] = y;
    V->hx[i] = hx / nh;
    V->hy[i] = hy / nh;
    V->v[i] = v;
    int lane = ew_road_lane_at(&w->cfg.road, x, y);
    if (lane < 0) {
        /* off every lane: the lane whose strip is nearest in y */
        const ew_road *r = &w->cfg.road;
        float best = EW_INF;
        for (int l = 0; l < r->n_lanes; l++) {
            float d = fabsf(ew_road_lane_center(r, l) - y);
            if (d < best) {
                best = d;
                lane = l;
            }
        }
    }
    V->lane[i] = V->lane_from[i] = (int8_t)lane;
    return 0;
}

int ew_world_set_external(ew_world *w, uint32_t id, float x, float y, float hx, float hy, float v,
                          char *err, int errlen) {
    int rc = set_external_one(w, id, x, y, hx, hy, v, err, errlen);
    rebuild_lists(w);
    return rc;
}

int ew_world_set_externals(ew_world *w, const ew_external_state *s, int n, char *err, int errlen) {
    int rc = 0;
    for (int k = 0; k < n && rc == 0; k++)
        rc = set_external_one(w, s[k].id, s[k].x, s[k].y, s[k].hx, s[k].hy, s[k].v, err, errlen);
    rebuild_lists(w); /* the states set before a failure stay set: keep the lists valid */
    return rc;
}
