/* optim.h - optimizers over ew_param views: SGD (momentum, Nesterov), Adam, AdamW, SING;
 * gradient clipping; learning-rate warm-up and cosine schedule.
 *
 * Contract: ew_optim_create() copies the ew_param views (the layers keep owning data/grad,
 * which must outlive the optimizer) and allocates all state up front (moments, scratch), so
 * ew_optim_step() and the clipping calls allocate nothing. A param with grad == NULL is a
 * buffer and is never updated. Updates are elementwise, parallel with OpenMP, and every
 * reduction (norms, SING's means) uses a fixed split independent of the thread count, so
 * results are bit-identical for any number of threads.
 *
 * Update rules (g = grad, p = data, lr = current learning rate, t = step count after ++):
 *  - weight decay wd applies only to tensors with ndim >= 2 unless cfg.decay_all_dims = 1
 *    (same default for every kind);
 *  - SGD: g += wd*p; buf = t==1 ? g : momentum*buf + g; d = nesterov ? g + momentum*buf : buf
 *    (d = g when momentum == 0); p -= lr*d.  (PyTorch's SGD with dampening 0.)
 *  - Adam: g += wd*p (coupled L2); m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2;
 *    p -= (lr/(1-b1^t)) * m / (sqrt(v)/sqrt(1-b2^t) + eps).  (PyTorch's formulation.)
 *  - AdamW: p *= 1 - lr*wd (decoupled), then Adam without the coupled term.
 *  - SING: for tensors with ndim >= 2, g_c = g - mean of g over all dims but the first (one
 *    mean per output channel), g' = g_c / (||g_c||_2 + 1e-8) over the whole tensor; tensors
 *    with ndim < 2 keep g. Then AdamW on g' (defaults b1 0.9, b2 0.999). p->grad is not
 *    modified. Its users run it with a learning rate about 10x AdamW's.
 *
 * State for checkpoints: ew_optim_state() lists the state as ew_param views owned by the
 * optimizer, named "optim.m.<name>", "optim.v.<name>" (Adam family) or
 * "optim.momentum.<name>" (SGD with momentum), same shapes as the params; saving them and
 * later loading into the same views (e.g. ew_checkpoint_load_params) together with
 * ew_optim_set_step_count() restores the optimizer exactly. Conventionally the step count is
 * stored in checkpoint metadata under EW_OPTIM_META_STEP.
 *
 * Data parallelism: with a gradient reducer attached (ew_optim_set_grad_reduce; models/dist.h
 * provides the MPI mean over ranks), the grads are packed into one buffer, reduced and
 * unpacked once per step, before anything looks at them: ew_optim_clip_grad_norm,
 * ew_optim_clip_grad_value and ew_optim_step call ew_optim_reduce_grads first, which does
 * nothing when the grads were already reduced since the last ew_optim_zero_grad / step. So
 * the clipping norm is the global one and a trainer needs no change. Without a reducer
 * nothing changes.
 */
#ifndef EW_OPTIM_H
#define EW_OPTIM_H

#include <stddef.h>

#include "models/backend.h"
#include "models/param.h"

#define EW_OPTIM_STATE_PREFIX "optim."
#define EW_OPTIM_META_STEP "optim.step"

typedef enum { EW_OPTIM_SGD, EW_OPTIM_ADAM, EW_OPTIM_ADAMW, EW_OPTIM_SING } ew_optim_kind;

typedef struct {
    ew_optim_kind kind;
    float lr;            /* learning rate (change per step with ew_optim_set_lr) */
    float momentum;      /* SGD: 0 = plain SGD */
    int nesterov;        /* SGD: Nesterov momentum (needs momentum > 0) */
    float beta1, beta2;  /* Adam family */
    float eps;           /* Adam family: added to sqrt(v_hat) */
    float weight_decay;  /* see the rules above */
    int decay_all_dims;  /* 1: also decay tensors with ndim < 2 (biases, norms) */
} ew_optim_config;

/* Defaults per kind: lr 1e-3 (SGD 1e-2), momentum 0.9 for SGD, betas 0.9/0.999, eps 1e-8,
 * weight decay 0 for SGD/Adam and 1e-2 for AdamW/SING, decay_all_dims 0. */
ew_optim_config ew_optim_defaults(ew_optim_kind kind);

typedef struct ew_optim ew_optim;

/* Validates the config and params (ndim 1..4, positive shape, data non-NULL, unique names,
 * state names fit EW_PARAM_NAME_MAX). 0 on success, -1 with a message in err. */
int ew_optim_create(const ew_param *params, int nparams, const ew_optim_config *cfg, ew_optim **out,
                    char *err, size_t errsz);
void ew_optim_free(ew_optim *opt);

void ew_optim_step(ew_optim *opt);              /* one update; increments the step count */
void ew_optim_zero_grad(ew_optim *opt);         /* sets every grad to 0 */
void ew_optim_set_lr(ew_optim *opt, float lr);
float ew_optim_lr(const ew_optim *opt);
long ew_optim_step_count(const ew_optim *opt);
void ew_optim_set_step_count(ew_optim *opt, long steps);
const ew_optim_config *ew_optim_get_config(const ew_optim *opt);

/* Gradient reducer: fn(ctx, buf, n) replaces buf (every grad of the params that have one, in
 * param order, packed) by its reduction (e.g. the mean over data-parallel ranks); every
 * process must call it in the same order. fn NULL detaches. Allocates the pack buffer (the
 * grad count in floats). 0, or -1 with a message. */
typedef int (*ew_optim_reduce_fn)(void *ctx, float *buf, size_t n);
int ew_optim_set_grad_reduce(ew_optim *opt, ew_optim_reduce_fn fn, void *ctx, char *err, size_t errsz);
/* Reduces the grads now (once per step; see above). No-op without a reducer. */
void ew_optim_reduce_grads(ew_optim *opt);
/* Number of gradient floats (the reducer's payload per step). */
size_t ew_optim_grad_numel(const ew_optim *opt);

/* Device backends: runs the update (Adam and AdamW), ew_optim_zero_grad and the gradient-norm
 * clip with be's kernels (its adam, fill, sumsq and unary entries) on parameters that already
 * live in its memory, and moves the moments there (the state views follow). Other kinds, or a
 * backend without those entries, keep the host loops (which also work on a device backend's
 * managed memory, slowly). Results match the host loops up to rounding (FMA). Free the
 * optimizer before the backend. 0 (also when nothing changes), or -1 when out of device
 * memory (the optimizer is unchanged). */
int ew_optim_use_backend(ew_optim *opt, const ew_backend *be, char *err, size_t errsz);

/* State views (owned by opt, valid until ew_optim_free); *count = 0 for plain SGD. */
const ew_param *ew_optim_state(ew_optim *opt, int *count);

/* Global L2 norm of all grads (double accumulation, deterministic). Returns it; when it is
 * above max_norm (> 0), scales every grad by max_norm / (norm + 1e-6) (PyTorch's rule). A
 * non-finite norm leaves the grads as they are. */
float ew_optim_clip_grad_norm(ew_optim *opt, float max_norm);
/* Clamps every grad element to [-clip, clip] (NaN stays NaN). */
void ew_optim_clip_grad_value(ew_optim *opt, float clip);

/* The same on a plain param array (no optimizer needed). */
float ew_grad_global_norm(const ew_param *params, int n);
float ew_clip_grad_norm(ew_param *params, int n, float max_norm);
void ew_clip_grad_value(ew_param *params, int n, float clip);
void ew_zero_grad(ew_param *params, int n);

/* Learning-rate schedule as a pure function of the step (0-based):
 *  step < warmup_steps:  base_lr * (step + 1) / warmup_steps      (linear warm-up)
 *  otherwise: cosine from base_lr down to min_lr over the steps [warmup_steps, total_steps):
 *     u = (step - warmup_steps) / (total_steps - warmup_steps), clamped to [0, 1],
 *     lr = min_lr + 0.5 * (base_lr - min_lr) * (1 + cos(pi * u));
 *  total_steps <= warmup_steps: constant base_lr after warm-up. */
typedef struct {
    float base_lr, min_lr;
    long warmup_steps, total_steps;
} ew_lr_schedule;

float ew_lr_at(const ew_lr_schedule *s, long step);

#endif
