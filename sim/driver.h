/* driver.h - the noisy ego driver used to collect data ("idm-noisy").
 *
 * Longitudinal: the world's ego IDM (ew_world_ego_idm_action: leaders in every lane the ego
 * occupies, lane ends) capped by a free-road IDM term toward a per-episode desired speed
 * (speed_factor_lo..hi times the lane's limit), plus an Ornstein-Uhlenbeck acceleration
 * noise (stationary std a_noise_std, correlation time a_noise_tau); positive noise is
 * dropped whenever IDM brakes or the leader is close (time gap < 1.2 s or TTC < 5 s), and
 * negative noise whenever IDM brakes hard or a follower is close (time gap < 1.5 s or
 * closing within 4 s).
 * Lateral: a critically damped curvature law toward a reference line: the target lane's
 * centre plus an OU lateral offset (lat_noise_std), and an OU lateral-acceleration noise
 * (steer_noise_std, m/s^2, applied as curvature noise / speed^2).
 * Lane changes: about every second the driver looks at both neighbour lanes (main lanes that
 * exist for 200 m ahead; never ramps); a change is SAFE when the new leader's gap exceeds
 * 3 m + 0.6 s of speed with no closing below 3 s, and the new follower's gap exceeds
 * 3 m + 0.4 s of its speed with its IDM deceleration after the cut-in above -b_safe. A safe
 * change is taken when it pays (MOBIL incentive, ego's IDM acceleration gain > lc_gain)
 * with probability 0.5, or at random with probability lc_random; a mandatory change is
 * attempted every step when the ego's lane ends within 150 m + 4 s. The change follows a
 * quintic lateral profile over lc_duration seconds (curvature feed-forward plus feedback).
 * Deterministic: the random stream is seeded from (seed, number of resets).
 */
#ifndef EW_DRIVER_H
#define EW_DRIVER_H

#include <stdint.h>

#include "sim/controller.h"

typedef struct {
    float a_noise_std, a_noise_tau;       /* m/s^2, s (0.8, 2.0) */
    float lat_noise_std, lat_noise_tau;   /* m, s (0.2, 4.0; the offset is clipped to +-0.4 m) */
    float steer_noise_std, steer_noise_tau; /* m/s^2 lateral, s (0.2, 1.0; off while 0.6 m off the line) */
    float speed_factor_lo, speed_factor_hi; /* desired speed / limit, per episode (0.7, 1.05) */
    float lc_gain;                         /* m/s^2 (0.3) */
    float lc_random;                       /* probability per decision of a safe random change (0.25) */
    float lc_duration;                     /* s (4.0; each change draws 0.75x..1.25x) */
    float b_safe;                          /* m/s^2 (2.0) */
} ew_driver_cfg;

void ew_driver_cfg_default(ew_driver_cfg *c);
/* Creates the "idm-noisy" controller (cfg NULL: defaults). 0, or -1 with a message. */
int ew_driver_controller(const ew_driver_cfg *cfg, uint64_t seed, ew_controller *out, char *err, int errlen);
/* Number of lane changes started since the last reset (ctx of an "idm-noisy" controller). */
int ew_driver_lane_changes(const ew_controller *c);

#endif
