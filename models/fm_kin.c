/* fm_kin.c - differentiable kinematic step on normalised states (see fm_kin.h). */
#include "models/fm_kin.h"

#include <math.h>
#include <string.h>

void ew_fm_kin_ref(const ew_fm_kin *k, const float *sn, const float *act, float *out) {
    float u[5], v[5];
    for (int i = 0; i < 5; i++) u[i] = sn[i] * k->std[i] + k->mean[i];
    float dt = k->dt, sp = u[4];
    v[0] = u[0] + dt * sp * u[2];
    v[1] = u[1] + dt * sp * u[3];
    float kk = act[1] * sp * dt;
    float ex = u[2] + kk * (-u[3]), ey = u[3] + kk * u[2];
    float n = sqrtf(ex * ex + ey * ey);
    v[2] = n > 0.0f ? ex / n : 0.0f;
    v[3] = n > 0.0f ? ey / n : 0.0f;
    float s1 = sp + act[0] * dt;
    if (!k->allow_reverse && s1 < 0.0f) s1 = 0.0f;
    v[4] = s1;
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
    float dt = k->dt;
    for (int r = 0; r < B; r++) {
        const float *sn = u->s->data + 5 * (size_t)r, *act = u->a->data + 2 * (size_t)r;
        float p[5], gv[5], gu[5] = {0, 0, 0, 0, 0}, ga = 0.0f, gb = 0.0f;
        for (int i = 0; i < 5; i++) {
            p[i] = sn[i] * k->std[i] + k->mean[i];
            gv[i] = dy[5 * (size_t)r + i] / k->std[i];
        }
        float dx = p[2], dyh = p[3], sp = p[4];
        /* positions */
        gu[0] += gv[0];
        gu[1] += gv[1];
        gu[4] += dt * dx * gv[0] + dt * dyh * gv[1];
        gu[2] += dt * sp * gv[0];
        gu[3] += dt * sp * gv[1];
        /* heading: d' = e / |e| */
        float kk = act[1] * sp * dt;
        float ex = dx - kk * dyh, ey = dyh + kk * dx;
        float n = sqrtf(ex * ex + ey * ey);
        if (n > 0.0f) {
            float ox = ex / n, oy = ey / n;
            float dot = gv[2] * ox + gv[3] * oy;
            float gex = (gv[2] - dot * ox) / n, gey = (gv[3] - dot * oy) / n;
            gu[2] += gex + kk * gey;
            gu[3] += -kk * gex + gey;
            float gk = -dyh * gex + dx * gey;
            gb += gk * sp * dt;
            gu[4] += gk * act[1] * dt;
        }
        /* speed */
        float s1 = sp + act[0] * dt;
        if (k->allow_reverse || s1 > 0.0f) {
            gu[4] += gv[4];
            ga += gv[4] * dt;
        }
        if (ds)
            for (int i = 0; i < 5; i++) ds[5 * (size_t)r + i] += gu[i] * k->std[i];
        if (da) {
            da[2 * (size_t)r] += ga;
            da[2 * (size_t)r + 1] += gb;
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
