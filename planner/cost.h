/* cost.h - the planner's differentiable costs (DESIGN.md section 6), in two forms.
 *
 * Masks. In the ego frame of a pose q (forward f, leftward l, metres), with the ego length L,
 * width W and the mask speed v (DETACHED: no gradient ever flows through it):
 *     lateral   my(l) = clamp((Wl - |l|) / (Wl - W/2), 0, 1),  Wl = lane_width/2 + W/2
 *     proximity mp(f) = clamp((dp - |f|) / (dp - L/2), 0, 1),
 *               dp = safe_time * max(v, min_speed) + safe_len * L + safe_margin
 *     lane      ml(f) = clamp((dl - |f|) / (dl - L/2), 0, 1),  dl = L/2 + lane_ramp
 *     Mp = (mp my)^2, Ml = (ml my)^2   (1 over the footprint, 0 beyond the safe distance)
 * Per image (channels 0 markings, 1 vehicles, 2 off-road, values in [0, 1], the raster
 * layout of sim/raster.h: pixel (r, c) has its centre at f = (rows/2 - r - 0.5) m_per_px,
 * l = (cols/2 - c - 0.5) m_per_px in the frame of the image's own ego pose):
 *     proximity = sum_px Mp * vehicles / Zp,  lane = sum_px Ml * markings / Zl,
 *     off-road  = sum_px Ml * off-road / Zl,
 * with Z = the mask's exact integral over the plane in pixel units (a constant: a vehicle
 * covering the whole mask gives 1). A mask "moved" to pose q on an image rendered around
 * pose r is evaluated at each pixel's position relative to q (shift + rotation).
 *
 * Step cost (t = 0..T-1: action u_t, then the state q_{t+1} and image t):
 *     lambda_p prox + lambda_l lane + lambda_o off
 *     + w_action ((a/a_ref)^2 + (v^2 b / a_ref)^2)                 (v^2 b: lateral accel.)
 *     + w_jerk (((a - a_prev)/a_ref)^2 + (v^2 (b - b_prev) / a_ref)^2) (u_{-1}: last executed)
 *     + w_ref max(0, (df/ref_long)^2 + (dl/ref_lat)^2 - 1)   (df, dl: q - r in r's frame;
 *       leaving the region where the reference image is valid; decoupled forms only)
 *     + w_speed max(0, (v_des - v_{t+1}) / v_des)^2   (progress: the rollout's own speed, not
 *       detached; fast decoupled form only, off by default)
 * discounted by gamma^t and summed. v in the action terms is the detached speed too.
 *
 * (a) Fast decoupled form (ew_cost_decoupled): images fixed (reference images around
 *     reference poses r_t), poses q_t from the kinematic model (sim/ego.h equations, in
 *     double) from a start state and the actions; returns the cost and its exact gradient
 *     with respect to the actions (hand-written adjoint through the masks and the rollout).
 *     The pixel sums run in float along each image column (transposed layout, vectorisable),
 *     in double across columns; problem.exact = 1 runs the double reference loop instead.
 * (b) Tape form (ew_cost_tape): the same costs as autodiff ops (models/ops.h) on images and
 *     states that are tensors: gradients flow into the images (coupled MPC, MPUR) and, when
 *     reference poses are given, into the states through the moved masks (decoupled form on
 *     a tape; identical to (a) up to float rounding).
 * Uncertainty penalty (MPUR): ew_cost_uncertainty_terms / _penalty.
 * Everything is reentrant; nothing allocates except the tape ops in the caller's graph.
 */
#ifndef EW_PLANNER_COST_H
#define EW_PLANNER_COST_H

#include "models/autodiff.h"
#include "sim/ego.h"

#define EW_COST_MAX_T 256 /* longest horizon of the decoupled form */

typedef struct {
    float lambda_p, lambda_l, lambda_o; /* 2.0, 0.2, 1.0 */
    float lambda_u;                     /* 0.05 uncertainty (used by MPUR callers) */
    float w_action, w_jerk;             /* 0.01, 0.01 */
    float w_ref;                        /* 1.0 */
    float w_speed, v_des;               /* 0 (off), 15 m/s: progress term (decoupled form only) */
    float gamma;                        /* 0.99 */
    float safe_time, min_speed;         /* 1.5 s, 10 m/s */
    float safe_len, safe_margin;        /* 1.5 (x L), 1 m */
    float lane_width, lane_ramp;        /* 3.7 m, 2 m */
    float ref_long, ref_lat;            /* 5 m, 2 m */
    float a_ref;                        /* 6 m/s^2 */
    float ego_len, ego_wid;             /* 4.8 m, 1.9 m (set from the world) */
    int rows, cols;                     /* 117 x 24 */
    float m_per_px;                     /* 0.617 */
    float dt;                           /* 0.1 s */
    int allow_reverse;                  /* 0 */
} ew_cost_config;

void ew_cost_config_default(ew_cost_config *c);

/* Weighted, discounted sums of each term (total = their sum). */
typedef struct { double total, prox, lane, offroad, action, jerk, ref, speed; } ew_cost_terms;

typedef struct { double x, y, dx, dy, s; } ew_cost_pose; /* double kinematic state */

/* Mask geometry for one mask speed: the half-extents and integrals. */
typedef struct { double dp, dl, wl, zp, zl; } ew_cost_mask;
void ew_cost_mask_geometry(const ew_cost_config *c, double speed, ew_cost_mask *m);

/* Mask costs of one image [C >= 3, rows, cols] rendered around pose r, with the masks at
 * pose q (q == r: centred) for mask speed `speed`: out[3] = (prox, lane, off), unweighted.
 * If grad5 != NULL, adds d(w[0] prox + w[1] lane + w[2] off)/d(q.x, q.y, q.dx, q.dy, q.s)
 * (the last is 0: detached). */
void ew_cost_image(const ew_cost_config *c, const float *img, int C, const ew_cost_pose *r,
                   const ew_cost_pose *q, double speed, double out[3], const double w[3], double grad5[5]);

/* The decoupled problem. */
typedef struct {
    int T;                   /* 1 .. EW_COST_MAX_T */
    int C;                   /* channels per image (>= 3) */
    const float *images;     /* [T, C, rows, cols] (image t goes with q_{t+1}) */
    const ew_cost_pose *ref; /* [T] poses the images were rendered around */
    ew_cost_pose start;      /* q_0 */
    ew_action prev;          /* last executed action (jerk of step 0) */
    int use_ref;             /* 1: validity term (w_ref) on */
    const double *speed;     /* [T] detached mask/action speeds, or NULL: the rollout's */
    const float *images_t;   /* the same images transposed by ew_cost_transpose, or NULL */
    int exact;               /* 1 (or images_t NULL): the double-precision pixel loop of
                              * ew_cost_image (reference); 0: float passes over images_t (fast) */
} ew_cost_problem;

/* The fast form's image layout: n images [C, rows, cols] -> [C, cols, ew_cost_rows_padded(rows)]
 * (each column's rows contiguous, zero padded to a multiple of EW_COST_CHUNK). */
#define EW_COST_CHUNK 4
int ew_cost_rows_padded(int rows);
void ew_cost_transpose(const float *img, int n, int C, int rows, int cols, float *out);

/* Cost of the actions u[T]; grad[T*2] (a, b per step) written when non-NULL; terms when
 * non-NULL; speeds_out[T] (the detached speeds used) when non-NULL. */
double ew_cost_decoupled(const ew_cost_config *c, const ew_cost_problem *p, const ew_action *u, float *grad,
                         ew_cost_terms *terms, double *speeds_out);
/* The double-precision kinematic step (sim/ego.h equations). */
void ew_cost_kin_step(const ew_cost_pose *q, double a, double b, double dt, int allow_reverse, ew_cost_pose *out);

/* ---- tape form ------------------------------------------------------------------------ */
typedef struct {
    ew_tensor *total;                  /* scalar: mean over the batch of the discounted sum */
    ew_tensor *prox, *lane, *offroad;  /* scalars, weighted and discounted like total */
    ew_tensor *action, *jerk, *ref;    /* scalars (ref: zero tensor without reference poses) */
    ew_tensor **step_masks;            /* T x [B, 3] unweighted (prox, lane, off) per step */
} ew_cost_tape_out;

/* images: T tensors [B, C >= 3, rows, cols]; states: T tensors [B, 5] physical (the poses
 * q_{t+1}; gradients flow through them only when ref != NULL); actions [B, T, 2] physical or
 * NULL (no action and jerk terms); prev [B*2] last executed actions or NULL (no jerk at t=0);
 * ref [T*B] poses of the images or NULL (masks centred on the images: coupled form, MPUR);
 * speed [T*B] detached speeds or NULL (the states' values). 0, or -1 with the graph's error. */
int ew_cost_tape(ew_graph *g, const ew_cost_config *c, int B, int T, ew_tensor *const *images,
                 ew_tensor *const *states, ew_tensor *actions, const float *prev, const ew_cost_pose *ref,
                 const double *speed, ew_cost_tape_out *out);

/* ---- uncertainty penalty (MPUR) -------------------------------------------------------- */
/* preds: M tensors (one per dropout mask, same latents) [B, T, D] of the flattened predicted
 * images of each step; costs: M tensors [B, T] of the step costs (or NULL). Returns the
 * per-step variances across the M masks (unbiased, M >= 2): *img_var [B, T] (the mean over D
 * of the per-element variance) and *cost_var [B, T] (NULL without costs). */
int ew_cost_uncertainty_terms(ew_graph *g, int M, ew_tensor *const *preds, ew_tensor *const *costs,
                              ew_tensor **img_var, ew_tensor **cost_var);

/* Per-step normalisation statistics of the variances under logged actions. */
typedef struct {
    int T;
    const float *img_mean, *img_std;   /* [T] */
    const float *cost_mean, *cost_std; /* [T] (unused without cost variances) */
    float hinge;                       /* 0.5 */
} ew_cost_unc_stats;

/* Scalar: mean over B and T of relu((img_var - mean_t)/std_t - hinge) plus the same for
 * cost_var (may be NULL). Unweighted: multiply by lambda_u. NULL with the graph's error. */
ew_tensor *ew_cost_uncertainty_penalty(ew_graph *g, ew_tensor *img_var, ew_tensor *cost_var,
                                       const ew_cost_unc_stats *s);
/* Running mean/std accumulation of per-step variances (for the stats above): add n rows of
 * T values; finish writes mean and std (std floored at 1e-8). */
typedef struct { int T; double *sum, *sum2; long n; } ew_cost_unc_acc;
int ew_cost_unc_acc_init(ew_cost_unc_acc *a, int T);
void ew_cost_unc_acc_add(ew_cost_unc_acc *a, const float *rows, int n);
void ew_cost_unc_acc_finish(const ew_cost_unc_acc *a, float *mean, float *std);
void ew_cost_unc_acc_free(ew_cost_unc_acc *a);

#endif
