/* record.h - `egoworld run --record DIR`: per-step PNG frames of an episode.
 *
 * Each frame writes DIR/ego_NNNNN.png (the ego raster as the models see it, an RGB composite
 * scaled x4, sim/png.h palette) and DIR/top_NNNNN.png (a world-aligned top view of the road
 * stretch around the ego from 40 m behind to 80 m ahead, 0.25 m/px, greyscale composite).
 * The recorder owns its pixel buffers; errors name the file.
 */
#ifndef EW_RECORD_H
#define EW_RECORD_H

#include "sim/world.h"

typedef struct ew_recorder ew_recorder;

ew_recorder *ew_recorder_create(const char *dir, char *err, int errlen);
int ew_recorder_frame(ew_recorder *r, const ew_world *w, int step, char *err, int errlen);
void ew_recorder_destroy(ew_recorder *r);

#endif
