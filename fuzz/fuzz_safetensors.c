/* fuzz_safetensors.c - the safetensors reader (models/checkpoint.h) on arbitrary bytes:
 * parse and validate, then use every accessor on what was accepted (tensor table, names,
 * metadata, conversion to float32 of every tensor, loading into parameters of the same
 * names and shapes). Whatever the input: no crash, no out-of-bounds access, no leak, and an
 * accepted file's tensors read back without error when their dtype converts. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/checkpoint.h"

#define MAX_READ_FLOATS (1u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[512];
    ew_checkpoint *ck = NULL;
    if (ew_checkpoint_parse_buffer(data, size, "fuzz.safetensors", &ck, err, sizeof err) != 0) {
        if (!memchr(err, 0, sizeof err) || !err[0]) abort(); /* a message is always given */
        if (getenv("EW_FUZZ_VERBOSE")) fprintf(stderr, "refused: %.200s\n", err);
        return 0;
    }
    if (getenv("EW_FUZZ_VERBOSE")) fprintf(stderr, "accepted: %d tensors\n", ew_checkpoint_count(ck));
    int n = ew_checkpoint_count(ck);
    if (n < 0 || ew_checkpoint_tensor(ck, n) != NULL || ew_checkpoint_tensor(ck, -1) != NULL) abort();
    ew_param params[4];
    int np = 0;
    float *bufs[4] = {0};
    for (int i = 0; i < n; i++) {
        const ew_ckpt_tensor *t = ew_checkpoint_tensor(ck, i);
        if (!t || !t->name || !t->dtype || t->ndim < 0 || t->ndim > EW_CKPT_MAX_DIMS || t->begin > t->end) abort();
        if (ew_checkpoint_find(ck, t->name) != i) abort();
        int convertible = !strcmp(t->dtype, "F32") || !strcmp(t->dtype, "F16") || !strcmp(t->dtype, "BF16") ||
                          !strcmp(t->dtype, "F64");
        if (t->numel <= MAX_READ_FLOATS) {
            float *dst = malloc((size_t)(t->numel ? t->numel : 1) * sizeof *dst);
            if (!dst) abort();
            int rc = ew_checkpoint_read_f32(ck, i, dst, (size_t)t->numel, err, sizeof err);
            if (convertible && rc != 0) abort(); /* validated tensors of these dtypes always read */
            /* a wrong element count is refused */
            if (ew_checkpoint_read_f32(ck, i, dst, (size_t)t->numel + 1, err, sizeof err) == 0) abort();
            int fits = t->ndim >= 1 && t->ndim <= EW_PARAM_MAX_DIMS && strlen(t->name) < EW_PARAM_NAME_MAX &&
                       t->numel > 0;
            for (int d = 0; fits && d < t->ndim; d++) fits = t->shape[d] <= 0x7fffffff;
            if (convertible && rc == 0 && fits && np < 4) {
                ew_param *p = &params[np];
                memset(p, 0, sizeof *p);
                snprintf(p->name, sizeof p->name, "%s", t->name);
                p->ndim = t->ndim;
                for (int d = 0; d < t->ndim; d++) p->shape[d] = (int)t->shape[d];
                p->data = dst;
                bufs[np++] = dst;
            } else {
                free(dst);
            }
        }
    }
    if (np > 0) {
        ew_checkpoint_load_params(ck, params, np, EW_CKPT_ALLOW_UNEXPECTED, NULL, err, sizeof err);
        ew_checkpoint_load_params(ck, params, np, 0, "opt.", err, sizeof err);
    }
    for (int k = 0; k < np; k++) free(bufs[k]);
    int nm = ew_checkpoint_meta_count(ck);
    for (int i = 0; i < nm; i++) {
        const char *k = ew_checkpoint_meta_key(ck, i), *v = ew_checkpoint_meta_value(ck, i);
        if (!k || !v) abort();
        const char *v2 = ew_checkpoint_meta(ck, k);
        if (!v2) abort();
    }
    ew_checkpoint_meta(ck, "format");
    ew_checkpoint_find(ck, "");
    ew_checkpoint_close(ck);
    return 0;
}
