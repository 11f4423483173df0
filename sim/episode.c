/* episode.c - warm-up, controller hand-over, termination and metrics. */
#include "sim/episode.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

void ew_episode_cfg_default(ew_episode_cfg *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->n_cond = 20;
    cfg->max_steps = 600;
    cfg->goal_distance = 215.0f;
    cfg->collision_tol = 1.0f;
}

const char *ew_episode_status_name(ew_episode_status s) {
    switch (s) {
    case EW_EP_RUNNING: return "running";
    case EW_EP_SUCCESS: return "success";
    case EW_EP_COLLISION: return "collision";
    case EW_EP_OFFROAD: return "offroad";
    case EW_EP_TIMEOUT: return "timeout";
    case EW_EP_SCRIPTED: return "scripted";
    case EW_EP_ERROR: return "error";
    }
    return "unknown";
}

void ew_episode_begin(ew_episode *ep, const ew_episode_cfg *cfg, ew_world *w) {
    memset(ep, 0, sizeof *ep);
    ep->cfg = *cfg;
    ep->m.status = EW_EP_RUNNING;
    ep->m.min_ttc = INFINITY;
    const ew_kin_state *e = ew_world_ego(w);
    ep->x_start = e->x;
    ep->prev_acc = 0.0f;
    snprintf(ep->m.label, sizeof ep->m.label, "%s", "running");
}

int ew_episode_in_warmup(const ew_episode *ep) { return ep->m.steps < ep->cfg.n_cond; }

static void finish(ew_episode *ep, ew_episode_status st) {
    ep->m.status = st;
    ep->m.success = st == EW_EP_SUCCESS;
    ep->m.collision = st == EW_EP_COLLISION;
    ep->m.offroad = st == EW_EP_OFFROAD;
    if (st != EW_EP_SCRIPTED) snprintf(ep->m.label, sizeof ep->m.label, "%s", ew_episode_status_name(st));
}

/* Time-to-collision with the leader in the ego's lane (inf when not closing in). */
static float ego_ttc(const ew_world *w) {
    const ew_kin_state *e = ew_world_ego(w);
    const ew_world_config *cfg = ew_world_config_of(w);
    int lane = ew_road_lane_at(ew_world_road(w), e->x, e->y);
    if (lane < 0) return INFINITY;
    int li = ew_world_leader(w, lane, e->x, -1);
    if (li < 0) return INFINITY;
    const ew_vehicles *v = ew_world_vehicles(w);
    float gap = (v->x[li] - 0.5f * v->len[li]) - (e->x + 0.5f * cfg->ego_length);
    float closing = e->s * e->dx - v->v[li] * v->hx[li];
    if (gap <= 0.0f) return 0.0f;
    return closing > 0.0f ? gap / closing : INFINITY;
}

int ew_episode_step(ew_episode *ep, ew_world *w, ew_controller *ctrl) {
    if (ep->m.status != EW_EP_RUNNING) return 0;
    const ew_world_config *cfg = ew_world_config_of(w);
    float dt = cfg->dt;

    if (ep->cfg.hook) {
        char label[sizeof ep->m.label] = "", err[sizeof ep->m.error] = "";
        int r = ep->cfg.hook(ep->cfg.hook_ctx, w, ep, label, (int)sizeof label, err, (int)sizeof err);
        if (r < 0) {
            snprintf(ep->m.error, sizeof ep->m.error, "%s", err[0] ? err : "scenario hook failed");
            finish(ep, EW_EP_ERROR);
            return 0;
        }
        if (r > 0) {
            snprintf(ep->m.label, sizeof ep->m.label, "%s", label[0] ? label : "scripted");
            finish(ep, EW_EP_SCRIPTED);
            return 0;
        }
        /* A hook may have stopped the episode through its own means (status changed). */
        if (ep->m.status != EW_EP_RUNNING) return 0;
    }

    int warm = ew_episode_in_warmup(ep);
    ew_action u = {0.0f, 0.0f};
    if (ctrl && ctrl->observe) ctrl->observe(ctrl->ctx, w);
    if (warm) {
        ew_world_ego_idm_action(w, &u);
    } else if (ctrl) {
        char err[sizeof ep->m.error - 64] = "";
        if (ew_controller_act(ctrl, w, &u, err, (int)sizeof err) != 0) {
            snprintf(ep->m.error, sizeof ep->m.error, "controller %.40s: %s", ctrl->name, err);
            finish(ep, EW_EP_ERROR);
            return 0;
        }
    }
    float s_before = ew_world_ego(w)->s;
    ew_world_step(w, &u);
    int post = 0;
    char plabel[sizeof ep->m.label] = "", perr[sizeof ep->m.error] = "";
    if (ep->cfg.post_hook)
        post = ep->cfg.post_hook(ep->cfg.post_hook_ctx, w, ep, plabel, (int)sizeof plabel, perr, (int)sizeof perr);
    const ew_kin_state *e = ew_world_ego(w);

    ep->m.steps++;
    ep->m.time = (float)ep->m.steps * dt;
    ep->m.distance = e->x - ep->x_start;
    ep->speed_sum += e->s;
    ep->m.mean_speed = (float)(ep->speed_sum / ep->m.steps);
    float acc = (e->s - s_before) / dt; /* the acceleration actually applied (after clipping) */
    if (!warm) {
        ew_action uc = ew_kin_clip(&cfg->ego_limits, u);
        if (ep->n_ctrl > 0) ep->jerk_sum += fabsf(acc - ep->prev_acc) / dt;
        ep->curv_sum += fabsf(uc.b);
        ep->n_ctrl++;
        if (fabsf(acc) > ep->m.max_abs_accel) ep->m.max_abs_accel = fabsf(acc);
        ep->m.mean_abs_jerk = ep->n_ctrl > 1 ? (float)(ep->jerk_sum / (ep->n_ctrl - 1)) : 0.0f;
        ep->m.mean_abs_curv = (float)(ep->curv_sum / ep->n_ctrl);
    }
    ep->prev_acc = acc;
    float ttc = ego_ttc(w);
    if (ttc < ep->m.min_ttc) ep->m.min_ttc = ttc;

    if (post < 0) {
        snprintf(ep->m.error, sizeof ep->m.error, "%s", perr[0] ? perr : "episode post-step hook failed");
        finish(ep, EW_EP_ERROR);
    } else if (ew_world_ego_collision(w, ep->cfg.collision_tol)) finish(ep, EW_EP_COLLISION);
    else if (ew_world_ego_offroad(w)) finish(ep, EW_EP_OFFROAD);
    else if (ep->m.distance >= ep->cfg.goal_distance) finish(ep, EW_EP_SUCCESS);
    else if (post > 0) { /* the post-step hook's end (e.g. the log ran out) after the end tests */
        snprintf(ep->m.label, sizeof ep->m.label, "%s", plabel[0] ? plabel : "scripted");
        finish(ep, EW_EP_SCRIPTED);
    } else if (ep->m.steps >= ep->cfg.max_steps) finish(ep, EW_EP_TIMEOUT);
    return ep->m.status == EW_EP_RUNNING;
}

static void json_num(FILE *out, const char *key, double v, int comma) {
    if (isfinite(v)) fprintf(out, "\"%s\": %.6g%s", key, v, comma ? ", " : "");
    else fprintf(out, "\"%s\": null%s", key, comma ? ", " : "");
}

/* A JSON string literal: quotes and backslashes escaped, control characters dropped. */
static void json_str(FILE *out, const char *s) {
    fputc('"', out);
    for (const char *p = s; *p; p++) {
        if (*p == '"' || *p == '\\') fputc('\\', out);
        if ((unsigned char)*p >= 0x20) fputc(*p, out);
    }
    fputc('"', out);
}

void ew_episode_metrics_json(const ew_episode_metrics *m, FILE *out) {
    fprintf(out, "{\"status\": \"%s\", \"label\": ", ew_episode_status_name(m->status));
    json_str(out, m->label);
    fprintf(out, ", \"success\": %s, \"collision\": %s, \"offroad\": %s, \"steps\": %d, ",
            m->success ? "true" : "false", m->collision ? "true" : "false",
            m->offroad ? "true" : "false", m->steps);
    json_num(out, "distance_m", m->distance, 1);
    json_num(out, "time_s", m->time, 1);
    json_num(out, "min_ttc_s", m->min_ttc, 1);
    json_num(out, "mean_speed_mps", m->mean_speed, 1);
    json_num(out, "mean_abs_jerk", m->mean_abs_jerk, 1);
    json_num(out, "max_abs_accel", m->max_abs_accel, 1);
    json_num(out, "mean_abs_curvature", m->mean_abs_curv, m->status == EW_EP_ERROR);
    if (m->status == EW_EP_ERROR) {
        fputs("\"error\": ", out);
        json_str(out, m->error);
    }
    fputc('}', out);
}
