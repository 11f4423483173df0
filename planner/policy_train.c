/* policy_train.c - data order, batches and the imitation step (policy_train.h). */
#include "planner/policy_train.h"
#include "sim/err.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


void ew_pt_epoch_perm(size_t n, uint64_t seed, uint64_t epoch, size_t *perm) {
    for (size_t i = 0; i < n; i++) perm[i] = i;
    if (n < 2) return;
    ew_rng r;
    ew_rng_seed2(&r, seed, epoch);
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = (size_t)(ew_rng_u64(&r) % (uint64_t)(i + 1));
        size_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

int ew_pt_batch_alloc(ew_pt_batch *b, int B, int n_cond, int T, int C, int H, int W) {
    memset(b, 0, sizeof *b);
    if (B < 1 || n_cond < 1 || T < 1 || C < 1 || H < 1 || W < 1) return -1;
    b->B = B;
    b->n_cond = n_cond;
    b->T = T;
    b->C = C;
    b->H = H;
    b->W = W;
    b->frames = malloc(sizeof(float) * (size_t)B * n_cond * C * H * W);
    b->states = malloc(sizeof(float) * (size_t)B * n_cond * 5);
    b->actions = malloc(sizeof(float) * (size_t)B * T * 2);
    if (!b->frames || !b->states || !b->actions) {
        ew_pt_batch_free(b);
        return -1;
    }
    return 0;
}

int ew_pt_batch_alloc_targets(ew_pt_batch *b) {
    if (!b->frames) return -1;
    free(b->tframes);
    free(b->tstates);
    b->tframes = malloc(sizeof(float) * (size_t)b->B * b->T * b->C * b->H * b->W);
    b->tstates = malloc(sizeof(float) * (size_t)b->B * b->T * 5);
    if (!b->tframes || !b->tstates) {
        free(b->tframes);
        free(b->tstates);
        b->tframes = b->tstates = NULL;
        return -1;
    }
    return 0;
}

void ew_pt_batch_free(ew_pt_batch *b) {
    free(b->tframes);
    free(b->tstates);
    free(b->frames);
    free(b->states);
    free(b->actions);
    memset(b, 0, sizeof *b);
}

int ew_pt_fill(const ew_fm_data *d, ew_split split, const size_t *idx, const ew_raster_cfg *rc, int threads,
               ew_pt_batch *b, char *err, size_t errsz) {
    if (b->n_cond != d->n_cond || b->T > d->n_pred || rc->rows != b->H || rc->cols != b->W)
        return ew_errf(err, errsz, "policy data: batch buffers do not fit the dataset view");
    ew_traj_batch_cfg cfg = {b->n_cond, b->T, *rc, b->C, 1};
    return ew_fm_data_render(d, split, idx, b->B, &cfg, threads, b->frames, b->states, b->actions, b->tframes, b->tstates, err,
                             errsz);
}

int ew_pt_imitation_step(ew_graph *g, ew_policy *p, ew_optim *opt, const ew_pt_batch *b, float clip, int train,
                         uint64_t seed, float *loss, float *grad_norm, char *err, size_t errsz) {
    const ew_policy_config *c = &p->cfg;
    if (b->C != c->channels || b->n_cond != c->n_cond || b->H != c->height || b->W != c->width)
        return ew_errf(err, errsz, "imitation: the batch (C %d, n_cond %d, %dx%d) does not fit the policy", b->C,
                    b->n_cond, b->H, b->W);
    if (ew_graph_reset(g)) return ew_errf(err, errsz, "imitation: arena reset failed");
    int old = ew_set_grad_enabled(g, opt != NULL);
    int B = b->B;
    int fs[4] = {B, c->n_cond * c->channels, c->height, c->width}, ss[3] = {B, c->n_cond, 5}, ts[2] = {B, 2};
    float *tgt = ew_arena_alloc(ew_graph_arena(g), sizeof(float) * 2 * (size_t)B);
    if (!tgt) {
        ew_set_grad_enabled(g, old);
        return ew_errf(err, errsz, "imitation: out of memory");
    }
    for (int r = 0; r < B; r++)
        for (int k = 0; k < 2; k++)
            tgt[2 * r + k] = (b->actions[(size_t)r * b->T * 2 + k] - p->stats.action_mean[k]) / p->stats.action_std[k];
    ew_rng rng;
    ew_rng_seed(&rng, seed);
    ew_tensor *a = ew_policy_forward(g, p, ew_tensor_wrap(g, 4, fs, b->frames), ew_tensor_wrap(g, 3, ss, b->states),
                                     train, &rng);
    ew_tensor *l = ew_mse(g, a, ew_tensor_wrap(g, 2, ts, tgt));
    int rc = 0;
    if (!l || ew_graph_error(g)) {
        rc = ew_errf(err, errsz, "imitation: %s", ew_graph_error(g) ? ew_graph_error(g) : "forward failed");
        goto done;
    }
    *loss = l->data[0];
    *grad_norm = 0.0f;
    if (!isfinite(*loss)) {
        rc = ew_errf(err, errsz, "imitation: loss is not finite (%g)", (double)*loss);
        goto done;
    }
    if (opt) {
        ew_optim_zero_grad(opt);
        if (ew_backward(g, l)) {
            rc = ew_errf(err, errsz, "imitation: backward: %s", ew_graph_error(g));
            goto done;
        }
        *grad_norm = ew_optim_clip_grad_norm(opt, clip > 0.0f ? clip : 0.0f);
        if (!isfinite(*grad_norm)) {
            ew_optim_zero_grad(opt);
            rc = ew_errf(err, errsz, "imitation: gradient norm is not finite (%g)", (double)*grad_norm);
            goto done;
        }
        ew_optim_step(opt);
        ew_optim_zero_grad(opt);
    }
done:
    ew_set_grad_enabled(g, old);
    return rc;
}
