/* world.h - one highway world: road, background traffic (IDM + MOBIL, spawning, ramps,
 * closures, scripted overrides, externally driven/replayed vehicles) and the ego vehicle.
 *
 * Contract:
 *  - ew_world_create() copies the config; the world owns all its memory (allocated at
 *    create time for cfg.max_vehicles; stepping never allocates). ew_world_destroy() frees it.
 *  - ew_world_step() advances by cfg.dt: background vehicles by IDM (longitudinal) and
 *    MOBIL (lateral, decided about every mobil_period seconds, executed as a smooth lateral
 *    motion over lc_duration seconds), the ego by the kinematic model (sim/ego.h) with the
 *    given action. Neighbour search uses per-lane x-sorted index lists, never all pairs.
 *  - Same config + same seed => bit-identical trajectories (no global state, no threads
 *    inside one world; parallelism is across worlds, see sim/batch.h).
 *  - Vehicles are stored struct-of-arrays in ew_vehicles; indices are not stable across
 *    steps (vehicles leave and enter); ids are. Read-only access through ew_world_vehicles().
 *  - Mutators used by scenarios and events return 0 or -1 with a message.
 *  - Details of the implementation (world.c): a vehicle changing lanes belongs to both its
 *    old and its new lane (leader/follower lookups in either lane find it) and follows the
 *    tighter of its two leaders; the ego belongs to every lane its footprint overlaps and
 *    background vehicles react to it as to any vehicle (lookups never return it). A lane
 *    that ends inside the road (on-ramp, closure) is a standing obstacle at the start of
 *    its end taper for vehicles in it, and at its tip for vehicles merging out of it.
 *    Background vehicles move along x at speed v (their heading deviates from +x only
 *    during a lane change, by at most about 10 degrees). stats.bg_collisions counts, every
 *    step, the overlapping pairs of background vehicles. ew_world_reset() also restores the
 *    road of the config (undoing close_lane / set_speed_limit).
 */
#ifndef EW_WORLD_H
#define EW_WORLD_H

#include <stdint.h>

#include "sim/ego.h"
#include "sim/road.h"

typedef enum { EW_VT_CAR = 0, EW_VT_TRUCK = 1, EW_VT_MOTO = 2, EW_VT_COUNT = 3 } ew_vtype;

/* Per-type parameter distributions: each value is sampled per vehicle as
 * mean + std * N(0,1), clipped to [0.5 mean, 1.5 mean] (std 0 = fixed). */
typedef struct {
    float length, length_std;     /* m */
    float width, width_std;       /* m */
    float v0_factor, v0_factor_std; /* desired speed = factor * lane speed limit */
    float T, T_std;               /* IDM time headway (s) */
    float s0;                     /* IDM minimum bumper-to-bumper gap (m) */
    float a_max, a_max_std;       /* IDM maximum acceleration (m/s^2) */
    float b_comf, b_comf_std;     /* IDM comfortable deceleration (m/s^2, positive) */
    float delta;                  /* IDM exponent (4) */
    float politeness;             /* MOBIL p */
    float b_safe;                 /* MOBIL safe braking limit (m/s^2, positive) */
    float a_thr;                  /* MOBIL threshold (m/s^2) */
    float keep_right;             /* MOBIL keep-right bias (m/s^2, 0 = symmetric) */
} ew_vtype_params;

/* Vehicle flags. */
enum {
    EW_VF_EXTERNAL = 1 << 0, /* driven by the caller (log replay): never integrated here */
    EW_VF_STALLED = 1 << 1,  /* decelerates to a stop and stays there */
    EW_VF_BRAKING = 1 << 2,  /* scripted braking override active (see ew_world_brake) */
    EW_VF_EXITING = 1 << 3,  /* wants to take the off-ramp */
    EW_VF_CHANGING = 1 << 4, /* lane change in progress */
};

/* Struct-of-arrays vehicle store; n live vehicles in [0, n). Positions are footprint
 * centres in the road frame, headings unit vectors (geom.h). */
typedef struct {
    int n, cap;
    uint32_t *id;
    uint8_t *type;       /* ew_vtype */
    uint8_t *flags;
    float *x, *y;        /* m */
    float *hx, *hy;      /* unit heading */
    float *v;            /* speed along the heading (m/s) */
    float *acc;          /* last longitudinal acceleration (m/s^2) */
    float *len, *wid;    /* m */
    int8_t *lane;        /* lane used for car-following (the target lane once a change starts) */
    int8_t *lane_from;   /* lane a change started from (== lane when not changing) */
    float *lc_t;         /* seconds into the current lane change */
    float *v0, *T, *s0, *a_max, *b_comf, *delta; /* IDM parameters */
    float *politeness, *b_safe, *a_thr, *keep_right; /* MOBIL parameters */
    float *mobil_clock;  /* seconds until the next MOBIL decision */
    float *brake_decel, *brake_time; /* scripted braking: decel (m/s^2 > 0) for time (s) */
} ew_vehicles;

typedef struct {
    float dt;                 /* s (0.1) */
    uint64_t seed;
    ew_road road;
    int max_vehicles;         /* capacity (spawns beyond it are refused and counted) */
    /* traffic demand per lane (index = lane): initial density and upstream inflow */
    float density_per_km[EW_MAX_LANES];  /* vehicles per km placed at reset */
    float flow_per_h[EW_MAX_LANES];      /* vehicles per hour entering at the lane start */
    float truck_share, moto_share;       /* share of spawned vehicles of each type */
    float exit_share;                    /* share of vehicles that want the off-ramp */
    ew_vtype_params types[EW_VT_COUNT];
    float mobil_period;       /* s between MOBIL decisions of one vehicle (1.0) */
    float lc_duration;        /* s for a lane change (3.0) */
    float idm_noise;          /* std of a per-step acceleration noise (m/s^2, 0 = none) */
    /* ego */
    int ego_enabled;
    int ego_lane;             /* start lane */
    float ego_x;              /* start x (m) */
    float ego_speed;          /* start speed (m/s) */
    float ego_length, ego_width;
    ew_kin_limits ego_limits;
} ew_world_config;

typedef struct ew_world ew_world;

/* Statistics since the last reset. */
typedef struct {
    double time;              /* simulated seconds */
    int64_t steps;
    int64_t vehicle_updates;  /* sum over steps of background vehicles integrated */
    int64_t spawned, exited, refused_spawns;
    int64_t lane_changes;
    int64_t bg_collisions;    /* background-background overlaps (should stay 0) */
} ew_world_stats;

void ew_world_config_default(ew_world_config *cfg); /* 3 lanes, 1 km, IDM/MOBIL defaults */
int ew_world_config_validate(const ew_world_config *cfg, char *err, int errlen);

ew_world *ew_world_create(const ew_world_config *cfg, char *err, int errlen);
void ew_world_destroy(ew_world *w);
/* Back to t = 0 with a new seed: initial traffic from the densities, ego at its start. */
void ew_world_reset(ew_world *w, uint64_t seed);
/* One step. ego_action may be NULL (no ego, or keep a = 0, b = 0). */
void ew_world_step(ew_world *w, const ew_action *ego_action);

const ew_world_config *ew_world_config_of(const ew_world *w);
const ew_road *ew_world_road(const ew_world *w);
const ew_vehicles *ew_world_vehicles(const ew_world *w);
const ew_kin_state *ew_world_ego(const ew_world *w);
ew_world_stats ew_world_get_stats(const ew_world *w);
double ew_world_time(const ew_world *w);

/* Index of the vehicle with this id, or -1. */
int ew_world_find(const ew_world *w, uint32_t id);
/* Nearest vehicle ahead of / behind position (x, y) in `lane` (centre-to-centre along x),
 * ignoring vehicle index `skip` (-1 for none). Returns an index or -1. O(log n). */
int ew_world_leader(const ew_world *w, int lane, float x, int skip);
int ew_world_follower(const ew_world *w, int lane, float x, int skip);

/* Ego helpers: IDM + lane keeping controller for the ego (the 'idm' controller and the
 * warm-up driver of episodes); collision with any vehicle (box overlap after shrinking the
 * ego footprint by tol metres on each dimension, sim/collision.h); off-road test (any ego
 * corner outside the drivable area). */
void ew_world_ego_idm_action(const ew_world *w, ew_action *out);
int ew_world_ego_collision(const ew_world *w, float tol);
int ew_world_ego_offroad(const ew_world *w);
/* Places the ego (used by log replay and tests). */
void ew_world_set_ego(ew_world *w, const ew_kin_state *s);

/* ---- mutators for scenarios and events --------------------------------------------- */
typedef struct {
    ew_vtype type;
    int lane;
    float x, y;               /* y < -1e29 means: the lane centre */
    float v;
    float length, width;      /* <= 0: sampled from the type */
    float v0;                 /* desired speed, <= 0: sampled */
    uint8_t flags;            /* e.g. EW_VF_EXTERNAL for replayed vehicles */
} ew_spawn;

/* Adds a vehicle; returns its id (>0) or 0 with a message (no room, overlaps another).
 * An EW_VF_EXTERNAL vehicle is placed without the overlap test: it is driven by a log, and
 * logs hold transient overlaps (recorded lane changes, a replay around an ego); the ego's
 * collision test sees it as any vehicle. */
uint32_t ew_world_spawn(ew_world *w, const ew_spawn *s, char *err, int errlen);
/* As ew_world_spawn with the caller's id (> 0 and not in use; 0: automatic), so replayed
 * vehicles keep their logged ids; automatic ids continue above the largest id given. */
uint32_t ew_world_spawn_id(ew_world *w, const ew_spawn *s, uint32_t id, char *err, int errlen);
int ew_world_remove(ew_world *w, uint32_t id, char *err, int errlen);
/* Starts a lane change of vehicle id into lane `to` (duration <= 0: cfg.lc_duration),
 * regardless of MOBIL's opinion (a scripted cut-in). */
int ew_world_change_lane(ew_world *w, uint32_t id, int to, float duration, char *err, int errlen);
/* Brakes at decel (m/s^2 > 0) for `duration` seconds, then back to IDM. */
int ew_world_brake(ew_world *w, uint32_t id, float decel, float duration, char *err, int errlen);
/* Stalls the vehicle: it stops (at most b_comf deceleration... or decel if > 0) and stays. */
int ew_world_stall(ew_world *w, uint32_t id, float decel, char *err, int errlen);
int ew_world_close_lane(ew_world *w, int lane, float x_from, float taper, char *err, int errlen);
int ew_world_set_speed_limit(ew_world *w, int lane, float v, char *err, int errlen);
/* Sets the state of an EW_VF_EXTERNAL vehicle (log replay): centre, heading, speed. */
int ew_world_set_external(ew_world *w, uint32_t id, float x, float y, float hx, float hy,
                          float v, char *err, int errlen);
/* The same for n vehicles at once, with one rebuild of the lane lists instead of n (log
 * replay moves every vehicle every step). Stops at the first bad entry (-1). */
typedef struct {
    uint32_t id;
    float x, y, hx, hy, v;
} ew_external_state;
int ew_world_set_externals(ew_world *w, const ew_external_state *s, int n, char *err, int errlen);

#endif
