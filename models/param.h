/* param.h - a named view of one trainable float32 tensor and its gradient.
 *
 * Contract: the shared currency between layers, optimizers and checkpoints. A layer owns
 * its parameter and gradient storage and hands out ew_param views; optimizers update
 * `data` from `grad` in place and own their own state (moments); checkpoints save and load
 * `data` by `name`. Shapes are row-major, outermost first (e.g. conv weights OC,IC,KH,KW).
 */
#ifndef EW_PARAM_H
#define EW_PARAM_H

#include <stddef.h>

#define EW_PARAM_MAX_DIMS 4
#define EW_PARAM_NAME_MAX 96

typedef struct {
    char name[EW_PARAM_NAME_MAX]; /* unique within a model, e.g. "enc.conv1.weight" */
    int ndim;                     /* 1..EW_PARAM_MAX_DIMS */
    int shape[EW_PARAM_MAX_DIMS];
    float *data;                  /* numel floats, owned by the layer */
    float *grad;                  /* numel floats, owned by the layer (may be NULL for buffers) */
} ew_param;

static inline size_t ew_param_numel(const ew_param *p) {
    size_t n = 1;
    for (int i = 0; i < p->ndim; i++) n *= (size_t)p->shape[i];
    return n;
}

#endif
