/* preview.c - IDM look-ahead plan and constant-velocity Gaussians for the overlay. */
#include "viz/preview.h"

#include <math.h>
#include <stdio.h>

static float idm_accel(float v, float v0, float gap, float dv) {
    const float a = 1.5f, b = 2.0f, T = 1.5f, s0 = 2.0f;
    float free_term = v0 > 0.1f ? powf(v / v0, 4.0f) : 1.0f;
    float inter = 0.0f;
    if (gap < 1e8f) {
        float ss = s0 + fmaxf(0.0f, v * T + v * dv / (2.0f * sqrtf(a * b)));
        float g = fmaxf(gap, 0.1f);
        inter = (ss / g) * (ss / g);
    }
    return a * (1.0f - free_term - inter);
}

int ew_preview_fill(void *ctx, const struct ew_world *w, ew_overlay *ov, char *err, int errlen) {
    const ew_preview_cfg *pc = (const ew_preview_cfg *)ctx;
    ew_overlay_clear(ov);
    if (!pc || pc->horizon < 1 || pc->horizon > EW_OV_MAX_STEPS) {
        if (err && errlen > 0) snprintf(err, (size_t)errlen, "preview: horizon must be 1..%d", EW_OV_MAX_STEPS);
        return -1;
    }
    const ew_world_config *cfg = ew_world_config_of(w);
    const ew_road *r = ew_world_road(w);
    const ew_vehicles *vs = ew_world_vehicles(w);
    snprintf(ov->source, sizeof ov->source, "idm-preview");
    ov->dt = cfg->dt;
    ov->m_per_px = pc->m_per_px;
    const float dt = cfg->dt;
    const int H = pc->horizon;

    if (cfg->ego_enabled) {
        ew_kin_state e = *ew_world_ego(w);
        int lane = ew_road_lane_at(r, e.x, e.y);
        if (lane < 0) lane = 0;
        float yc = ew_road_lane_center(r, lane), v0 = r->lanes[lane].speed_limit;
        int li = ew_world_leader(w, lane, e.x, -1);
        float lx = 0, lv = 0, llen = 0;
        if (li >= 0) {
            lx = vs->x[li];
            lv = vs->v[li] * vs->hx[li];
            llen = vs->len[li];
        }
        float min_gap = INFINITY;
        ov->plan[0] = e;
        for (int t = 1; t <= H; t++) {
            float gap = 1e9f, dv = 0.0f;
            if (li >= 0) {
                float xl = lx + lv * dt * (float)(t - 1);
                gap = xl - e.x - 0.5f * (llen + cfg->ego_length);
                dv = e.s - lv;
                if (gap < min_gap) min_gap = gap;
            }
            ew_action u;
            u.a = idm_accel(e.s, v0, gap, dv);
            float L = fmaxf(10.0f, 1.5f * e.s), ey = yc - e.y;
            float lat = -e.dy * L + e.dx * ey; /* the target point's offset to the ego's left */
            u.b = 2.0f * lat / (L * L + ey * ey);
            u = ew_kin_clip(&cfg->ego_limits, u);
            ew_kin_state nx;
            ew_kin_step(&e, u, dt, cfg->ego_limits.allow_reverse, &nx);
            e = nx;
            ov->plan[t] = e;
        }
        ov->n_plan = H + 1;
        if (li >= 0) {
            const ew_kin_state *e0 = ew_world_ego(w);
            float gap0 = lx - e0->x - 0.5f * (llen + cfg->ego_length);
            ew_overlay_set_cost(ov, "gap_m", gap0);
            float closing = e0->s - lv;
            if (closing > 1e-3f) ew_overlay_set_cost(ov, "ttc_s", gap0 / closing);
            ew_overlay_set_cost(ov, "min_gap_preview_m", min_gap);
        }
    }

    /* Constant-velocity Gaussians of the nearest vehicles. */
    float ex = cfg->ego_enabled ? ew_world_ego(w)->x : 0.0f;
    int n = 0;
    for (int i = 0; i < vs->n && n < EW_OV_MAX_AGENTS; i++) {
        if (fabsf(vs->x[i] - ex) > 80.0f) continue;
        ew_overlay_agent *ag = &ov->agents[n++];
        ag->id = vs->id[i];
        ag->n = H;
        float hx = vs->hx[i], hy = vs->hy[i], v = vs->v[i];
        for (int t = 0; t < H; t++) {
            float ts = dt * (float)(t + 1);
            ag->mean[t] = ew_v2(vs->x[i] + hx * v * ts, vs->y[i] + hy * v * ts);
            float sl = 0.3f + 0.5f * ts, sc = 0.15f + 0.25f * ts;
            float l2 = sl * sl, c2 = sc * sc;
            ag->cov[t][0] = l2 * hx * hx + c2 * hy * hy;
            ag->cov[t][1] = (l2 - c2) * hx * hy;
            ag->cov[t][2] = l2 * hy * hy + c2 * hx * hx;
        }
    }
    ov->n_agents = n;
    return 0;
}
