/* fm_kin.c - differentiable kinematic step on normalised states (see fm_kin.h). */
#include "models/fm_kin.h"

#include <string.h>

#include "sim/ego.h"

static void denorm(const ew_fm_kin *k, const float *sn, ew_kin_state *s) {
    float u[5];
    for (int i = 0; i < 5; i++) u[i] = sn[i] * k->std[i] + k->mean[i];
    s->x = u[0];
    s->y = u[1];
    s->dx = u[2];
    s->dy = u[3];
    s->s = u[4];
}

void ew_fm_kin_ref(const ew_fm_kin *k, const float *sn, const float *act, float *out) {
    ew_kin_state s, n;
    denorm(k, sn, &s);
    ew_action u = {act[0], act[1]};
    ew_kin_step(&s, u, k->dt, k->allow_reverse, &n);
    float v[5] = {n.x, n.y, n.dx, n.dy, n.s};
    for (int i = 0; i < 5; i++) out[i] = (v[i] - k->mean[i]) / k->std[i];
}

typedef struct {
    ew_tensor *s, *a, *y;
    ew_fm_kin k;
} kin_ctx;

static void kin_bwd(ew_graph *g, void *c) {
    kin_ctx *u = c;
    float *dy = ew_grad_if_any(u->y);
    if (!dy) return;
    float *ds = u->s->requires_grad ? ew_tensor_grad(g, u->s) : NULL;
    float *da = u->a->requires_grad ? ew_tensor_grad(g, u->a) : NULL;
    if (!ds && !da) return;
    const ew_fm_kin *k = &u->k;
    int B = u->s->shape[0];
    for (int r = 0; r < B; r++) {
        const float *sn = u->s->data + 5 * (size_t)r, *act = u->a->data + 2 * (size_t)r;
        ew_kin_state s;
        denorm(k, sn, &s);
        ew_action ua = {act[0], act[1]};
        float Js[5][5], Ja[5][2], gv[5];
        ew_kin_jacobian(&s, ua, k->dt, k->allow_reverse, Js, Ja);
        for (int i = 0; i < 5; i++) gv[i] = dy[5 * (size_t)r + i] / k->std[i];
        if (ds)
            for (int j = 0; j < 5; j++) {
                float acc = 0.0f;
                for (int i = 0; i < 5; i++) acc += gv[i] * Js[i][j];
                ds[5 * (size_t)r + j] += acc * k->std[j];
            }
        if (da)
            for (int j = 0; j < 2; j++) {
                float acc = 0.0f;
                for (int i = 0; i < 5; i++) acc += gv[i] * Ja[i][j];
                da[2 * (size_t)r + j] += acc;
            }
    }
}

ew_tensor *ew_fm_kin_step(ew_graph *g, ew_tensor *s, ew_tensor *a, const ew_fm_kin *k) {
    if (!s || !a || !k) return ew_graph_fail(g, "kin step: NULL input");
    if (s->ndim != 2 || s->shape[1] != 5 || a->ndim != 2 || a->shape[1] != 2 || a->shape[0] != s->shape[0])
        return ew_graph_fail(g, "kin step: want states [B,5] and actions [B,2]");
    for (int i = 0; i < 5; i++)
        if (!(k->std[i] > 0.0f)) return ew_graph_fail(g, "kin step: state std %d is not positive", i);
    int B = s->shape[0];
    ew_tensor *y = ew_tensor_new(g, 2, s->shape);
    if (!y) return NULL;
    for (int r = 0; r < B; r++) ew_fm_kin_ref(k, s->data + 5 * (size_t)r, a->data + 2 * (size_t)r, y->data + 5 * (size_t)r);
    if (ew_should_record(g, s, a)) {
        kin_ctx *u = ew_tape_push(g, kin_bwd, sizeof *u);
        if (!u) return NULL;
        y->requires_grad = 1;
        u->s = s;
        u->a = a;
        u->y = y;
        u->k = *k;
    }
    return y;
}
