/* mpur.h - model-predictive policy learning with uncertainty regularisation (MPUR,
 * DESIGN.md section 6): the policy is trained through the FROZEN world model.
 *
 * Objective for a batch of B windows (frames, ego states from the data; latents z_t ~ N(0, I)
 * drawn once per step from the seed, shared by every unroll of the step):
 *   1. Main unroll, T = horizon steps, dropout off: at step t the policy sees the current
 *      window (the data's frames followed by the world model's own predictions; physical
 *      states likewise) and outputs a_t; ew_fm_step with z_t predicts the next frame and
 *      state, which enter the window. The policy's gradient flows only through the world
 *      model (its images and states) and through the actions into it.
 *   2. Cost: ew_cost_tape (planner/cost.h) on the predicted images and states with masks
 *      centred on the images (coupled form): gamma^t-discounted lambda_p proximity +
 *      lambda_l lane + lambda_o off-road + the action and jerk terms, mean over the batch.
 *   3. Uncertainty: the action sequence of 1 is replayed through the world model with
 *      u_samples (M) independent dropout masks (training-mode dropout, same latents, one
 *      batch of M*B rows); per step and row, the variance across the M masks of the predicted
 *      images (mean over pixels) and of the weighted step costs; each normalised per step by
 *      its mean and std under the LOGGED actions (ew_mpur_ustats, computed once from the
 *      training data and stored in the checkpoint), hinged at `hinge`, averaged; times
 *      lambda_u (ew_cost_uncertainty_penalty).
 *   objective = cost + lambda_u * uncertainty.
 * Frozen world model: ew_mpur_freeze() detaches its parameters (no gradient buffers), so
 * backward computes no weight gradients and nothing can update them.
 * Channels: the world model sees channels 0-2; a 4-channel policy also gets the ego plane of
 * the data's last frame (constant in an ego-centred view) appended to every frame.
 * Randomness: everything from `seed` (z first, then the policy's dropout, then the masks).
 * Errors: 0 or -1 with a one-line message.
 *
 * Decoupled form (c->decoupled = 1, the FM-KM form of the MPC in planner/mpc.h; ew_mpur_step
 * and ew_mpur_ustats_add dispatch to it):
 *   1. Rollout, no tape: at step t the policy (no dropout) sees the window of the data's
 *      frames followed by the world model's predictions and outputs a_t (clipped to the
 *      default ego limits); the world model (dropout off, latent z_t) predicts the next
 *      frame and state. The policy's inputs at every step are kept.
 *   2. Cost: for each row the decoupled cost of planner/cost.h (ew_cost_decoupled) of the
 *      executed actions from the last observed state, on the rollout's images around the
 *      rollout's poses (vehicle layer predicted; markings and off-road from the newest
 *      observed frame when static_obs), with its exact gradient w.r.t. the actions through
 *      the kinematic model and the moved masks; the images are constants.
 *   3. Uncertainty: the executed actions replayed with u_samples dropout masks (same latents);
 *      per step the variance across masks of the weighted proximity cost at the kinematic
 *      pose, normalised per step by its mean and std under logged actions (statistics
 *      "cost_*" of ew_mpur_ustats; "img_*" hold the per-pixel vehicle-layer variance, for
 *      information), hinged, averaged over rows and steps, times lambda_u; gradient through
 *      the pose (kinematic adjoint with ew_kin_jacobian).
 *   4. Limits: w_limit x mean squared relative excess of the raw actions beyond the limits.
 *   The policy's gradient: d objective / d a_t back-propagated through the policy at each
 *   step with its inputs held fixed (one batched pass over the B x T windows): the feedback of
 *   a_t on later inputs is not differentiated. Cheaper than the coupled form by the world
 *   model's backward passes.
 */
#ifndef EW_PLANNER_MPUR_H
#define EW_PLANNER_MPUR_H

#include <stdint.h>

#include "models/fm.h"
#include "models/optim.h"
#include "models/policy.h"
#include "planner/cost.h"
#include "planner/policy_train.h"

#define EW_MPUR_META "egoworld.mpur"

typedef struct {
    int horizon;          /* 30 */
    int u_samples;        /* 10 dropout masks (>= 2; 0 or 1: no uncertainty term) */
    float hinge;          /* 0.5 */
    ew_cost_config cost;  /* weights (lambda_u included), gamma, mask geometry */
    int decoupled;        /* 0: the coupled form above; 1: the decoupled (FM-KM) form below */
    int static_obs;       /* decoupled: 1 (default): markings and off-road layers of the cost
                           * images from the newest observed frame (planner/mpc.h) */
    float profile_m;      /* decoupled: 12 m (planner/mpc.h) */
    float w_limit;        /* decoupled: 1: weight of the squared excess of the policy's actions
                           * beyond the ego limits (relative to the limit) */
    int grad_steps;       /* decoupled: 0 (all): back-propagate d objective / d a_t into the
                           * policy only for t < grad_steps (the first steps, whose inputs are
                           * the data's real frames); later actions still shape the rollout */
    float rear_weight;    /* decoupled: 1: the vehicle layer of the cost images (rollout and
                           * dropout replays) is multiplied by this behind the reference ego
                           * (pixel centres with f < -ego_len/2 in the image's own frame): the
                           * symmetric proximity mask otherwise rewards escaping a follower by
                           * driving at the leader. 1 = the MPC's cost. */
    int oracle;           /* decoupled: 0; 1 (a diagnostic, not MPUR): the rollout's images and
                           * states are the batch's LOGGED future (b->tframes, b->tstates) in
                           * place of the world model's predictions: a perfect, non-reactive
                           * world. No uncertainty term. */
} ew_mpur_config;

/* Defaults for a world model and policy: cost geometry from their image size, the policy's
 * scale and the world model's dt. */
void ew_mpur_config_default(ew_mpur_config *c, const ew_fm *wm, const ew_policy *p);

/* Per-step statistics of the uncertainty variances under logged actions. */
typedef struct {
    int T;
    float *img_mean, *img_std, *cost_mean, *cost_std; /* [T] each, one allocation */
    long rows;                                        /* windows they were computed on */
} ew_mpur_ustats;

int ew_mpur_ustats_alloc(ew_mpur_ustats *s, int T);
void ew_mpur_ustats_free(ew_mpur_ustats *s);
char *ew_mpur_ustats_json(const ew_mpur_ustats *s); /* malloc'd */
int ew_mpur_ustats_from_json(const char *json, ew_mpur_ustats *s, char *err, size_t errsz);

/* Detaches every parameter of wm (layers and the params list). */
void ew_mpur_freeze(ew_fm *wm);
/* 0 when the policy can be trained through wm: same n_cond and image size, wm with 3 channels. */
int ew_mpur_check(const ew_fm *wm, const ew_policy *p, char *err, size_t errsz);

typedef struct {
    float objective, cost, prox, lane, offroad, action, jerk, uncertainty;
    float grad_norm;      /* before clipping (0 without an optimizer) */
} ew_mpur_terms;

/* The objective on g (reset here) for the batch b (b->T >= horizon; b->C = policy channels).
 * us may be NULL (no uncertainty term). grad: record the tape (the caller runs backward). */
int ew_mpur_objective(ew_graph *g, const ew_fm *wm, const ew_policy *p, const ew_mpur_config *c,
                      const ew_mpur_ustats *us, const ew_pt_batch *b, uint64_t seed, int grad, ew_tensor **objective,
                      ew_mpur_terms *terms, char *err, size_t errsz);
/* One training step (opt != NULL: backward, global-norm clip, Adam; else evaluation only).
 * A non-finite objective or gradient leaves the parameters unchanged and returns -1. */
int ew_mpur_step(ew_graph *g, const ew_fm *wm, ew_policy *p, ew_optim *opt, const ew_mpur_config *c,
                 const ew_mpur_ustats *us, const ew_pt_batch *b, float clip, uint64_t seed, ew_mpur_terms *out,
                 char *err, size_t errsz);
/* The uncertainty variances under b's logged actions (no tape): adds B rows of T image and
 * cost variances to the accumulators. */
int ew_mpur_km_step(ew_graph *g, const ew_fm *wm, ew_policy *p, ew_optim *opt, const ew_mpur_config *c,
                    const ew_mpur_ustats *us, const ew_pt_batch *b, float clip, uint64_t seed, ew_mpur_terms *out,
                    char *err, size_t errsz);
int ew_mpur_km_ustats_add(ew_graph *g, const ew_fm *wm, const ew_mpur_config *c, const ew_pt_batch *b, uint64_t seed,
                          ew_cost_unc_acc *img, ew_cost_unc_acc *cost, char *err, size_t errsz);
int ew_mpur_ustats_add(ew_graph *g, const ew_fm *wm, const ew_mpur_config *c, const ew_pt_batch *b, uint64_t seed,
                       ew_cost_unc_acc *img, ew_cost_unc_acc *cost, char *err, size_t errsz);

#endif
