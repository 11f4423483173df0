/* fuzz_ngsim.c - the NGSIM log parser (sim/ngsim.h) on arbitrary text. The first byte picks
 * the loader options (smoothing on/off, the number of main lanes), the rest is the file.
 * A log that loads is then used the way a replay uses it: every track looked up by id, states
 * interpolated across and beyond each track, the matching world configuration built. No
 * crash, no leak, and the loaded tables keep their documented invariants (tracks sorted by
 * id, frames strictly increasing, finite positions). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim/ngsim.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ew_ngsim_opts o;
    ew_ngsim_opts_default(&o);
    if (size > 0) {
        uint8_t c = data[0];
        if (c & 1) o.smooth_window = 0.0f;
        o.n_main = (c >> 1) & 7; /* 0: from the data */
        data++;
        size--;
    }
    char err[512];
    ew_ngsim *g = ew_ngsim_parse((const char *)data, size, "fuzz.txt", &o, err, sizeof err);
    if (!g) {
        if (!err[0]) abort();
        if (getenv("EW_FUZZ_VERBOSE")) fprintf(stderr, "refused: %.200s\n", err);
        return 0;
    }
    if (getenv("EW_FUZZ_VERBOSE")) fprintf(stderr, "loaded: %d rows, %d tracks\n", g->n_rows, g->n_tracks);
    for (int i = 0; i < g->n_tracks; i++) {
        const ew_ngsim_track *tr = &g->tracks[i];
        if (i > 0 && g->tracks[i - 1].vid >= tr->vid) abort();
        if (ew_ngsim_find(g, tr->vid) != i) abort();
        if (tr->n < 1) abort();
        for (int k = 0; k < tr->n; k++) {
            if (k > 0 && tr->s[k].frame <= tr->s[k - 1].frame) abort();
            if (!isfinite(tr->s[k].x) || !isfinite(tr->s[k].y) || !isfinite(tr->s[k].v)) abort();
        }
        double f0 = tr->s[0].frame * (double)g->opts.frame_dt, f1 = tr->s[tr->n - 1].frame * (double)g->opts.frame_dt;
        ew_ngsim_sample smp;
        double ts[5] = {f0 - 1.0, f0, 0.5 * (f0 + f1), f1, f1 + 1.0};
        for (int k = 0; k < 5; k++) {
            int in = ew_ngsim_state_at(tr, g->opts.frame_dt, ts[k], &smp);
            if (in && !(isfinite(smp.x) && isfinite(smp.y) && isfinite(smp.hx) && isfinite(smp.hy))) abort();
        }
    }
    ew_world_config wc;
    ew_world_config_default(&wc);
    ew_ngsim_world_config(g, 0, &wc, err, sizeof err);
    if (g->n_tracks > 0) ew_ngsim_world_config(g, g->tracks[0].vid, &wc, err, sizeof err);
    ew_ngsim_free(g);
    return 0;
}
