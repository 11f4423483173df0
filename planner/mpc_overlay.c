/* mpc_overlay.c - an MPC controller's plan, imagined futures and costs for the viewer
 * (contract in mpc_overlay.h). */
#include "planner/mpc_overlay.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "planner/cost.h"
#include "planner/mpc.h"
#include "sim/world.h"

int ew_mpc_overlay_init(ew_mpc_overlay *o, const ew_controller *ctrl) {
    memset(o, 0, sizeof *o);
    ew_mpc_view v;
    if (!ctrl || ew_mpc_get_view(ctrl, &v) != 0) return -1;
    o->ctrl = ctrl;
    o->fut_every = 5;
    o->last_calls = ctrl->plan_calls;
    o->last_ms = ctrl->plan_ms_total;
    return 0;
}

static uint8_t to_u8(float v) {
    if (!(v > 0.0f)) return 0;
    if (v >= 1.0f) return 255;
    return (uint8_t)(v * 255.0f + 0.5f);
}

static ew_kin_state kin_of(const ew_cost_pose *p) {
    ew_kin_state k = {(float)p->x, (float)p->y, (float)p->dx, (float)p->dy, (float)p->s};
    return k;
}

static float clamp01(double v) { return v < 0.0 ? 0.0f : (v > 1.0 ? 1.0f : (float)v); }

/* Cost density of one reference image [C, H, W] with the masks centred on its pose (cost.h). */
static void cost_mask(const ew_cost_config *cc, const float *img, int H, int W, double speed, float *out) {
    ew_cost_mask mg;
    ew_cost_mask_geometry(cc, speed, &mg);
    const double L2 = 0.5 * cc->ego_len, W2 = 0.5 * cc->ego_wid, mpp = cc->m_per_px;
    const size_t hw = (size_t)H * W;
    float mx = 0.0f;
    for (int r = 0; r < H; r++) {
        double f = fabs((0.5 * H - r - 0.5) * mpp);
        double mp = clamp01((mg.dp - f) / (mg.dp - L2)), ml = clamp01((mg.dl - f) / (mg.dl - L2));
        for (int c = 0; c < W; c++) {
            double l = fabs((0.5 * W - c - 0.5) * mpp);
            double my = clamp01((mg.wl - l) / (mg.wl - W2));
            double Mp = (mp * my) * (mp * my), Ml = (ml * my) * (ml * my);
            size_t i = (size_t)r * W + c;
            double v = cc->lambda_p * Mp * img[hw + i] / mg.zp +
                       (cc->lambda_l * img[i] + cc->lambda_o * img[2 * hw + i]) * Ml / mg.zl;
            out[i] = (float)(v > 0.0 ? v : 0.0);
            if (out[i] > mx) mx = out[i];
        }
    }
    if (mx > 0.0f)
        for (size_t i = 0; i < hw; i++) out[i] /= mx;
}

/* The previous action as the controller estimates it from two observed ego states (mpc.c). */
static ew_action prev_action(const ew_kin_state *s0, const ew_kin_state *s1, float dt, const ew_kin_limits *lim) {
    return ew_kin_clip(lim, ew_kin_action_between(s0, s1, dt));
}

int ew_mpc_overlay_fill(void *ctx, const struct ew_world *w, ew_overlay *ov, char *err, int errlen) {
    ew_mpc_overlay *o = (ew_mpc_overlay *)ctx;
    ew_overlay_clear(ov);
    ew_mpc_view v;
    ew_mpc_stats st;
    if (!o || !o->ctrl || ew_mpc_get_view(o->ctrl, &v) != 0 || ew_mpc_get_stats(o->ctrl, &st) != 0) {
        if (err && errlen > 0) snprintf(err, (size_t)errlen, "mpc overlay: not an MPC controller");
        return -1;
    }
    const ew_world_config *cfg = ew_world_config_of(w);
    const ew_kin_state *e = ew_world_ego(w);
    /* poses: newest first; pose[1] is where the latest plan was made when it is fresh */
    memmove(o->pose + 1, o->pose, sizeof o->pose[0] * 2);
    o->pose[0] = *e;
    if (o->n_pose < 3) o->n_pose++;
    long calls = o->ctrl->plan_calls;
    double ms = o->ctrl->plan_ms_total;
    int fresh = v.have_plan && calls == o->last_calls + 1 && o->n_pose >= 2;
    double plan_ms = ms - o->last_ms;
    o->last_calls = calls;
    o->last_ms = ms;

    snprintf(ov->source, sizeof ov->source, "%s", o->ctrl->name ? o->ctrl->name : "mpc");
    ov->dt = cfg->dt;
    ov->m_per_px = v.cost ? v.cost->m_per_px : 0.0f;
    ew_overlay_set_cost(ov, "K", (float)v.K);
    if (!fresh || v.T < 1) return 0;

    /* plan: the rest of the plan from the ego's current pose */
    int T = v.T < EW_OV_MAX_STEPS ? v.T : EW_OV_MAX_STEPS;
    ew_kin_state q = *e;
    ov->plan[0] = q;
    for (int t = 1; t <= T; t++) {
        int k = t < v.T ? t : v.T - 1;
        ew_action u = ew_kin_clip(&cfg->ego_limits, st.plan[k]);
        ew_kin_state nx;
        ew_kin_step(&q, u, cfg->dt, cfg->ego_limits.allow_reverse, &nx);
        q = nx;
        ov->plan[t] = q;
    }
    ov->n_plan = T + 1;

    ew_overlay_set_cost(ov, "plan_ms", (float)plan_ms);
    ew_overlay_set_cost(ov, "cost", (float)st.cost_final);
    ew_overlay_set_cost(ov, "nominal", (float)st.cost_initial);
    if (!v.have_ref || !v.frames || v.C < 3) return 0;

    /* futures: the vehicle channel of each sample at reference steps every, 2 every, ..., T-1 */
    const size_t hw = (size_t)v.H * v.W, fsz = (size_t)v.C * hw;
    int every = o->fut_every > 0 ? o->fut_every : 5;
    int steps[EW_OV_MAX_FUT_STEPS], n = 0;
    for (int t = every; t < v.T && n < EW_OV_MAX_FUT_STEPS; t += every) steps[n++] = t;
    if (n < EW_OV_MAX_FUT_STEPS && (n == 0 || steps[n - 1] != v.T - 1)) steps[n++] = v.T - 1;
    int K = v.K < EW_OV_MAX_SAMPLES ? v.K : EW_OV_MAX_SAMPLES;
    if (ew_overlay_set_futures_shape(ov, K, n, v.H, v.W) == 0) {
        for (int j = 0; j < n; j++) {
            ov->fut_pose[j] = kin_of(&v.ref_pose[steps[j]]);
            for (int k = 0; k < K; k++) {
                const float *veh = v.frames + ((size_t)k * v.stride + (size_t)steps[j]) * fsz + hw;
                for (size_t i = 0; i < hw; i++) ov->fut[k][j][i] = to_u8(veh[i]);
            }
        }
    }
    /* cost mask of the predicted present */
    if ((int)hw <= EW_OV_MAX_PIXELS) {
        cost_mask(v.cost, v.ref_img, v.H, v.W, v.ref_pose[0].s, ov->cost);
        ov->cost_h = v.H;
        ov->cost_w = v.W;
        ov->cost_pose = kin_of(&v.ref_pose[0]);
    }
    /* the plan's cost terms on the problem the controller solved */
    ew_cost_problem p;
    memset(&p, 0, sizeof p);
    p.T = v.T;
    p.C = v.C;
    p.images = v.ref_img;
    p.images_t = v.ref_t;
    p.ref = v.ref_pose;
    const ew_kin_state *s1 = &o->pose[1];
    p.start = (ew_cost_pose){s1->x, s1->y, s1->dx, s1->dy, s1->s};
    if (o->n_pose >= 3) p.prev = prev_action(&o->pose[2], s1, v.cost->dt, &cfg->ego_limits);
    p.use_ref = 1;
    ew_cost_terms tm;
    double total = ew_cost_decoupled(v.cost, &p, st.plan, NULL, &tm, NULL);
    if (fabs(total - st.cost_final) <= 1e-6 * (1.0 + fabs(st.cost_final))) {
        ew_overlay_set_cost(ov, "prox", (float)tm.prox);
        ew_overlay_set_cost(ov, "lane", (float)tm.lane);
        ew_overlay_set_cost(ov, "offroad", (float)tm.offroad);
        ew_overlay_set_cost(ov, "action", (float)tm.action);
        ew_overlay_set_cost(ov, "jerk", (float)tm.jerk);
        ew_overlay_set_cost(ov, "ref", (float)tm.ref);
    }
    return 0;
}
