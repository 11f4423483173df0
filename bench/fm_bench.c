/* fm_bench.c - command-line driver of ew_fm_bench_run (models/fm_bench.h); not one of the
 * tests; built with everything else (bench/CMakeLists.txt): `cmake --build build --target
 * fm_bench` gives build/fm_bench.
 * Usage: fm_bench [--threads N] [--batch B] [--nf F] [--hidden H] [--ncond C] [--npred P]
 *                 [--variant fm|fm-km|fm-km-noaction] [--stochastic 0|1] [--warmup W] [--steps S] [--json]
 *                 [--device cpu|cuda] [--tf32 0|1]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/fm_bench.h"

int main(int argc, char **argv) {
    ew_fm_config c = ew_fm_config_default();
    ew_fm_bench_opts o = {1, 64, 1, 5, 0, 0, 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int used = 1;
        if (!strcmp(a, "--json")) {
            o.json = 1;
            continue;
        }
        if (!v) used = 0;
        else if (!strcmp(a, "--threads")) o.threads = atoi(v);
        else if (!strcmp(a, "--batch")) o.batch = atoi(v);
        else if (!strcmp(a, "--nf")) c.nf = atoi(v);
        else if (!strcmp(a, "--hidden")) c.hidden = atoi(v);
        else if (!strcmp(a, "--ncond")) c.n_cond = atoi(v);
        else if (!strcmp(a, "--npred")) c.n_pred = atoi(v);
        else if (!strcmp(a, "--stochastic")) c.stochastic = atoi(v);
        else if (!strcmp(a, "--warmup")) o.warmup = atoi(v);
        else if (!strcmp(a, "--steps")) o.steps = atoi(v);
        else if (!strcmp(a, "--device")) o.device = !strcmp(v, "cuda");
        else if (!strcmp(a, "--tf32")) o.tf32 = atoi(v);
        else if (!strcmp(a, "--variant")) used = ew_fm_variant_parse(v, &c.variant) == 0;
        else used = 0;
        if (!used) {
            fprintf(stderr, "fm_bench: bad argument %s\n", a);
            return 2;
        }
        i++;
    }
    return ew_fm_bench_run(&c, &o, stdout) ? 1 : 0;
}
