/* scenario_builtin.h - built-in world configurations (until Lua scenarios exist, and as
 * fixed references for tests and benchmarks).
 *
 *   dense-3lane    dense 3-lane highway, 1 km, about 100 vehicles, ego in the middle lane
 *                  (the default scenario)
 *   onramp-6lane   I-80-like: 6 lanes at 65 mph, 800 m, an on-ramp merging over a taper,
 *                  near-capacity main-line flow and a ramp flow of 700 veh/h
 *   free-2lane     light traffic on 2 lanes
 *   closure-3lane  3 lanes, the left lane closed at x = 650 m (forced merges)
 *   offramp-4lane  4 lanes with an off-ramp; 15 % of vehicles leave by it
 */
#ifndef EW_SCENARIO_BUILTIN_H
#define EW_SCENARIO_BUILTIN_H

#include "sim/world.h"

#define EW_SCENARIO_DEFAULT "dense-3lane"

/* Fills cfg for the named scenario; 0, or -1 with a message for an unknown name. */
int ew_scenario_builtin(const char *name, ew_world_config *cfg, char *err, int errlen);
/* The names, in a static table of *n entries. */
const char *const *ew_scenario_builtin_names(int *n);

#endif
