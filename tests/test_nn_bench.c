/* test_nn_bench.c - the world-model benchmark runs at reduced widths and reports what
 * `egoworld bench nn` promises (JSON keys, positive throughput, every layer); bad
 * configurations are refused. */
#include <stdlib.h>
#include <string.h>

#include "models/nnbench.h"
#include "tests/check.h"

static char *run(ew_bench_nn_config *c, int *rc) {
    FILE *f = tmpfile();
    if (!f) return NULL;
    *rc = ew_bench_nn_run(c, f);
    long n = ftell(f);
    rewind(f);
    char *s = calloc((size_t)(n > 0 ? n : 0) + 1, 1);
    if (s && n > 0 && fread(s, 1, (size_t)n, f) != (size_t)n) s[0] = 0;
    fclose(f);
    return s;
}

int main(void) {
    for (int threads = 1; threads <= 2; threads++) {
        ew_bench_nn_config c = ew_bench_nn_defaults(threads);
        CHECK(c.batch == 64 && c.nfeature == 64 && c.ncond == 20 && c.height == 117 && c.width == 24,
              "defaults are the anchor's sizes");
        c.batch = 2;
        c.nfeature = 4;
        c.ncond = 2;
        c.warmup = 1;
        c.steps = 2;
        c.json = 1;
        int rc = -1;
        char *s = run(&c, &rc);
        CHECK(rc == 0 && s, "bench ran");
        if (!s) continue;
        const char *keys[] = {"\"fm_train_samples_per_s\": ", "\"threads\": ", "\"cores\": ", "\"layers\": ["};
        for (int i = 0; i < 4; i++) CHECK(strstr(s, keys[i]) != NULL, "key %s in %s", keys[i], s);
        const char *p = strstr(s, "\"fm_train_samples_per_s\": ");
        double sps = p ? atof(p + strlen("\"fm_train_samples_per_s\": ")) : 0.0;
        CHECK(sps > 0.0, "positive throughput %g", sps);
        const char *layers[] = {"enc1", "enc2", "enc3", "senc", "aenc", "res", "dec1", "dec2", "dec3", "head", "loss"};
        for (int i = 0; i < 11; i++) {
            char k[32];
            snprintf(k, sizeof k, "\"name\": \"%s\"", layers[i]);
            CHECK(strstr(s, k) != NULL, "layer %s reported", layers[i]);
        }
        CHECK(strstr(s, "nan") == NULL && strstr(s, "inf") == NULL, "finite numbers: %s", s);
        free(s);
        c.json = 0;
        s = run(&c, &rc);
        CHECK(rc == 0 && s && strstr(s, "fm_train_samples_per_s") && strstr(s, "dec3"), "table output");
        free(s);
    }
    ew_bench_nn_config bad = ew_bench_nn_defaults(1);
    bad.batch = 0;
    int rc = 0;
    char *s = run(&bad, &rc);
    CHECK(rc == -1, "batch 0 refused");
    free(s);
    return check_done();
}
