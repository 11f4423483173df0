/* cost.c - the planner's costs (contract in cost.h).
 *
 * Fast form: one pass over the pixels inside the bounding box of the moved mask's support
 * (the mask is zero elsewhere), in double. The pose gradient is accumulated as six sums of
 * the per-pixel derivatives (d cost/d f', d cost/d l') weighted by the pixel's coordinates
 * relative to the pose, then chained through the relative transform (shift df, dl and the
 * relative heading (cos, sin)) to q = (x, y, dx, dy), and through the kinematic rollout by
 * a hand-written adjoint of the sim/ego.h equations.
 * Tape form: the same formulas as ops; |x| and clamp(x, 0, 1) are written as products with
 * constant indicator tensors taken from the forward values (exact gradients almost
 * everywhere, the same one-sided choice as the fast form).
 */
#include "planner/cost.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/ops.h"

void ew_cost_config_default(ew_cost_config *c) {
    memset(c, 0, sizeof *c);
    c->lambda_p = 2.0f;
    c->lambda_l = 0.2f;
    c->lambda_o = 1.0f;
    c->lambda_u = 0.05f;
    c->w_action = 0.01f;
    c->w_jerk = 0.01f;
    c->w_ref = 1.0f;
    c->gamma = 0.99f;
    c->safe_time = 1.5f;
    c->min_speed = 10.0f;
    c->safe_len = 1.5f;
    c->safe_margin = 1.0f;
    c->lane_width = 3.7f;
    c->lane_ramp = 2.0f;
    c->w_speed = 0.0f;
    c->v_des = 15.0f;
    c->ref_long = 5.0f;
    c->ref_lat = 2.0f;
    c->a_ref = 6.0f;
    c->ego_len = 4.8f;
    c->ego_wid = 1.9f;
    c->rows = 117;
    c->cols = 24;
    c->m_per_px = 0.617f;
    c->dt = 0.1f;
    c->allow_reverse = 0;
}

static double ramp_integral(double d, double half) {
    /* integral over the line of clamp((d - |f|) / (d - half), 0, 1)^2 */
    return 2.0 * half + 2.0 * (d - half) / 3.0;
}

void ew_cost_mask_geometry(const ew_cost_config *c, double speed, ew_cost_mask *m) {
    double L = c->ego_len, W = c->ego_wid, px = c->m_per_px;
    double v = speed > c->min_speed ? speed : c->min_speed;
    m->dp = c->safe_time * v + c->safe_len * L + c->safe_margin;
    if (m->dp < 0.5 * L + 1e-3) m->dp = 0.5 * L + 1e-3;
    m->dl = 0.5 * L + (c->lane_ramp > 1e-3 ? c->lane_ramp : 1e-3);
    m->wl = 0.5 * c->lane_width + 0.5 * W;
    if (m->wl < 0.5 * W + 1e-3) m->wl = 0.5 * W + 1e-3;
    double iy = ramp_integral(m->wl, 0.5 * W);
    m->zp = ramp_integral(m->dp, 0.5 * L) * iy / (px * px);
    m->zl = ramp_integral(m->dl, 0.5 * L) * iy / (px * px);
}

/* clamp((d - |x|) * inv, 0, 1) and its derivative in x. */
static inline double ramp(double x, double d, double inv, double *dv) {
    double ax = fabs(x), v = (d - ax) * inv;
    if (v <= 0.0) {
        *dv = 0.0;
        return 0.0;
    }
    if (v >= 1.0) {
        *dv = 0.0;
        return 1.0;
    }
    *dv = x > 0.0 ? -inv : inv;
    return v;
}

void ew_cost_image(const ew_cost_config *c, const float *img, int C, const ew_cost_pose *r,
                   const ew_cost_pose *q, double speed, double out[3], const double w[3], double grad5[5]) {
    (void)C;
    ew_cost_mask mk;
    ew_cost_mask_geometry(c, speed, &mk);
    const int rows = c->rows, cols = c->cols;
    const double m = c->m_per_px, L = c->ego_len, W = c->ego_wid;
    const size_t hw = (size_t)rows * cols;
    const float *mark = img, *veh = img + hw, *off = img + 2 * hw;
    double ddx = q->x - r->x, ddy = q->y - r->y;
    double df = ddx * r->dx + ddy * r->dy, dlat = -ddx * r->dy + ddy * r->dx;
    double cs = q->dx * r->dx + q->dy * r->dy, sn = -q->dx * r->dy + q->dy * r->dx;
    /* bounding box of the support |f'| < dp, |l'| < wl in the image */
    double Fmin = 1e300, Fmax = -1e300, Lmin = 1e300, Lmax = -1e300;
    for (int i = 0; i < 4; i++) {
        double f = (i & 1) ? mk.dp : -mk.dp, l = (i & 2) ? mk.wl : -mk.wl;
        double F = df + f * cs - l * sn, Lr = dlat + f * sn + l * cs;
        if (F < Fmin) Fmin = F;
        if (F > Fmax) Fmax = F;
        if (Lr < Lmin) Lmin = Lr;
        if (Lr > Lmax) Lmax = Lr;
    }
    double hr = 0.5 * rows, hc = 0.5 * cols;
    int r0 = (int)floor(hr - Fmax / m - 0.5), r1 = (int)ceil(hr - Fmin / m - 0.5);
    int c0 = (int)floor(hc - Lmax / m - 0.5), c1 = (int)ceil(hc - Lmin / m - 0.5);
    if (r0 < 0) r0 = 0;
    if (c0 < 0) c0 = 0;
    if (r1 > rows - 1) r1 = rows - 1;
    if (c1 > cols - 1) c1 = cols - 1;
    const double inv_p = 1.0 / (mk.dp - 0.5 * L), inv_l = 1.0 / (mk.dl - 0.5 * L), inv_y = 1.0 / (mk.wl - 0.5 * W);
    double Sp = 0, Sl = 0, So = 0;
    double A = 0, Bs = 0, AF = 0, AL = 0, BF = 0, BL = 0;
    const int want = grad5 != NULL;
    const double wpv = want ? w[0] / mk.zp : 0.0, wlm = want ? w[1] / mk.zl : 0.0, wof = want ? w[2] / mk.zl : 0.0;
    for (int ri = r0; ri <= r1; ri++) {
        double Fp = (hr - ri - 0.5) * m - df;
        double f0 = Fp * cs, l0 = -Fp * sn;
        const size_t rowo = (size_t)ri * cols;
        for (int ci = c0; ci <= c1; ci++) {
            double Lp = (hc - ci - 0.5) * m - dlat;
            double f = f0 + Lp * sn, l = l0 + Lp * cs;
            if (fabs(f) >= mk.dp || fabs(l) >= mk.wl) continue;
            double dvy, dvp, dvl;
            double vy = ramp(l, mk.wl, inv_y, &dvy);
            double vp = ramp(f, mk.dp, inv_p, &dvp);
            double vl = ramp(f, mk.dl, inv_l, &dvl);
            size_t idx = rowo + (size_t)ci;
            double pv = veh[idx], pm = mark[idx], po = off[idx];
            double my2 = vy * vy, vp2 = vp * vp, vl2 = vl * vl;
            Sp += vp2 * my2 * pv;
            Sl += vl2 * my2 * pm;
            So += vl2 * my2 * po;
            if (want) {
                double a = wpv * pv, b = wlm * pm + wof * po;
                double gf = 2.0 * my2 * (a * vp * dvp + b * vl * dvl);
                double gl = 2.0 * vy * dvy * (a * vp2 + b * vl2);
                A += gf;
                Bs += gl;
                AF += gf * Fp;
                AL += gf * Lp;
                BF += gl * Fp;
                BL += gl * Lp;
            }
        }
    }
    out[0] = Sp / mk.zp;
    out[1] = Sl / mk.zl;
    out[2] = So / mk.zl;
    if (want) {
        double g_df = -cs * A + sn * Bs, g_dl = -sn * A - cs * Bs;
        double g_cs = AF + BL, g_sn = AL - BF;
        grad5[0] += g_df * r->dx - g_dl * r->dy;
        grad5[1] += g_df * r->dy + g_dl * r->dx;
        grad5[2] += g_cs * r->dx - g_sn * r->dy;
        grad5[3] += g_cs * r->dy + g_sn * r->dx;
    }
}

int ew_cost_rows_padded(int rows) { return (rows + EW_COST_CHUNK - 1) / EW_COST_CHUNK * EW_COST_CHUNK; }

void ew_cost_transpose(const float *img, int n, int C, int rows, int cols, float *out) {
    int rp = ew_cost_rows_padded(rows);
    for (int k = 0; k < n * C; k++) {
        const float *src = img + (size_t)k * rows * cols;
        float *dst = out + (size_t)k * cols * rp;
        for (int c = 0; c < cols; c++) {
            float *d = dst + (size_t)c * rp;
            for (int r = 0; r < rows; r++) d[r] = src[(size_t)r * cols + c];
            for (int r = rows; r < rp; r++) d[r] = 0.0f;
        }
    }
}

/* GCC/Clang generic vectors: 4 float lanes (one SSE register, the x86-64 baseline). */
typedef float v4f __attribute__((vector_size(16)));
typedef int v4i __attribute__((vector_size(16)));
#define vsplat(x) ((v4f){(x), (x), (x), (x)})
#define visplat(x) ((v4i){(x), (x), (x), (x)})

/* Float pass of one mask over the columns of its support's bounding box, each column's rows
 * in chunks of EW_COST_CHUNK with one accumulator per lane (vectorisable without reassociating
 * a reduction); outside the support the clamps give exact zeros. nch 1: vehicles with the
 * proximity mask; 2: markings and off-road with the lane mask. Columns are the transposed,
 * row-padded planes of ew_cost_transpose. out[k] += sum M * ch_k; gs[6] += (A, B, AF, AL,
 * BF, BL), the sums of the per-pixel derivatives (weighted by wk) and their moments. */
static void pass_f32(const ew_cost_config *c, const float *ch0, const float *ch1, int nch, double fext, double fi,
                     double wl, double wi, double df, double dlat, double cs, double sn, const double *wk,
                     double *out, double *gs) {
    enum { K = EW_COST_CHUNK }; /* = 4, the lanes of v4f */
    const int rows = c->rows, cols = c->cols, rp = ew_cost_rows_padded(rows);
    const double m = c->m_per_px, hr = 0.5 * rows, hc = 0.5 * cols;
    double Fmin = 1e300, Fmax = -1e300, Lmin = 1e300, Lmax = -1e300;
    for (int i = 0; i < 4; i++) {
        double f = (i & 1) ? fext : -fext, l = (i & 2) ? wl : -wl;
        double F = df + f * cs - l * sn, Lr = dlat + f * sn + l * cs;
        if (F < Fmin) Fmin = F;
        if (F > Fmax) Fmax = F;
        if (Lr < Lmin) Lmin = Lr;
        if (Lr > Lmax) Lmax = Lr;
    }
    int r0 = (int)floor(hr - Fmax / m - 0.5), r1 = (int)ceil(hr - Fmin / m - 0.5);
    int c0 = (int)floor(hc - Lmax / m - 0.5), c1 = (int)ceil(hc - Lmin / m - 0.5);
    if (r0 < 0) r0 = 0;
    if (c0 < 0) c0 = 0;
    if (r1 > rows - 1) r1 = rows - 1;
    if (c1 > cols - 1) c1 = cols - 1;
    if (r0 > r1 || c0 > c1) return;
    r0 = r0 / K * K;
    int nchunk = (r1 - r0) / K + 1; /* r0 + nchunk * K <= rp */
    const float fe = (float)fext, fiv = (float)fi, wle = (float)wl, wiv = (float)wi;
    const float fcs = (float)cs, fsn = (float)sn;
    const float w0 = wk ? (float)wk[0] : 0.0f, w1 = (wk && nch > 1) ? (float)wk[1] : 0.0f;
    v4f lane_off;
    for (int k = 0; k < K; k++) lane_off[k] = (float)(-(double)k * m);
    const v4f one = vsplat(1.0f), zero = vsplat(0.0f);
    const v4i absm = visplat(0x7fffffff), signm = visplat((int)0x80000000u);
    for (int ci = c0; ci <= c1; ci++) {
        const double Lp = (hc - ci - 0.5) * m - dlat;
        const float fLs = (float)(Lp * sn), fLc = (float)(Lp * cs);
        const float *p0 = ch0 + (size_t)ci * rp, *p1 = ch1 ? ch1 + (size_t)ci * rp : NULL;
        v4f s0 = zero, s1 = zero, A = zero, B = zero, AF = zero, BF = zero;
        for (int ch = 0; ch < nchunk; ch++) {
            int rb = r0 + ch * K;
            const float Fb = (float)((hr - rb - 0.5) * m - df);
            const v4f Fp = vsplat(Fb) + lane_off;
            v4f f = Fp * fcs + fLs, l = fLc - Fp * fsn;
            v4f rf = (fe - (v4f)((v4i)f & absm)) * fiv, rl = (wle - (v4f)((v4i)l & absm)) * wiv;
            v4i pf = rf > zero, pl = rl > zero;
            v4f vf = (v4f)((v4i)rf & pf), vy = (v4f)((v4i)rl & pl);
            v4i uf = vf < one, ul = vy < one;
            vf = (v4f)(((v4i)vf & uf) | ((v4i)one & ~uf));
            vy = (v4f)(((v4i)vy & ul) | ((v4i)one & ~ul));
            /* -copysign(inv, x) where the ramp is strictly inside (0, 1), else 0 */
            v4f dvf = (v4f)((((v4i)vsplat(fiv)) ^ ((v4i)f & signm) ^ signm) & (pf & (rf < one)));
            v4f dvy = (v4f)((((v4i)vsplat(wiv)) ^ ((v4i)l & signm) ^ signm) & (pl & (rl < one)));
            v4f x, vy2 = vy * vy, vf2 = vf * vf, a;
            memcpy(&x, p0 + rb, sizeof x);
            if (nch == 1) {
                s0 += vf2 * vy2 * x;
                a = w0 * x;
            } else {
                v4f xb;
                memcpy(&xb, p1 + rb, sizeof xb);
                v4f mk = vf2 * vy2;
                s0 += mk * x;
                s1 += mk * xb;
                a = w0 * x + w1 * xb;
            }
            v4f gf = 2.0f * vy2 * a * vf * dvf, gl = 2.0f * vy * dvy * a * vf2;
            A += gf;
            B += gl;
            AF += gf * Fp;
            BF += gl * Fp;
        }
        double t0 = 0, t1 = 0, ta = 0, tb = 0, taf = 0, tbf = 0;
        for (int k = 0; k < K; k++) {
            t0 += s0[k];
            t1 += s1[k];
            ta += A[k];
            tb += B[k];
            taf += AF[k];
            tbf += BF[k];
        }
        out[0] += t0;
        if (nch > 1) out[1] += t1;
        if (gs) {
            gs[0] += ta;
            gs[1] += tb;
            gs[2] += taf;
            gs[3] += ta * Lp;
            gs[4] += tbf;
            gs[5] += tb * Lp;
        }
    }
}

/* ew_cost_image() with the float passes on a transposed image (the decoupled form's hot path). */
static void image_fast(const ew_cost_config *c, const float *img_t, const ew_cost_pose *r, const ew_cost_pose *q,
                       double speed, double out[3], const double w[3], double grad5[5]) {
    ew_cost_mask mk;
    ew_cost_mask_geometry(c, speed, &mk);
    const size_t plane = (size_t)ew_cost_rows_padded(c->rows) * c->cols;
    const double L = c->ego_len, W = c->ego_wid;
    double ddx = q->x - r->x, ddy = q->y - r->y;
    double df = ddx * r->dx + ddy * r->dy, dlat = -ddx * r->dy + ddy * r->dx;
    double cs = q->dx * r->dx + q->dy * r->dy, sn = -q->dx * r->dy + q->dy * r->dx;
    double wi = 1.0 / (mk.wl - 0.5 * W);
    double gp[6] = {0}, gl[6] = {0}, sp[1] = {0}, sl[2] = {0, 0};
    double wp[1] = {w ? w[0] / mk.zp : 0.0}, wlo[2] = {w ? w[1] / mk.zl : 0.0, w ? w[2] / mk.zl : 0.0};
    pass_f32(c, img_t + plane, NULL, 1, mk.dp, 1.0 / (mk.dp - 0.5 * L), mk.wl, wi, df, dlat, cs, sn, wp, sp,
             grad5 ? gp : NULL);
    pass_f32(c, img_t, img_t + 2 * plane, 2, mk.dl, 1.0 / (mk.dl - 0.5 * L), mk.wl, wi, df, dlat, cs, sn, wlo, sl,
             grad5 ? gl : NULL);
    out[0] = sp[0] / mk.zp;
    out[1] = sl[0] / mk.zl;
    out[2] = sl[1] / mk.zl;
    if (grad5) {
        double A = gp[0] + gl[0], Bs = gp[1] + gl[1], AF = gp[2] + gl[2], AL = gp[3] + gl[3];
        double BF = gp[4] + gl[4], BL = gp[5] + gl[5];
        double g_df = -cs * A + sn * Bs, g_dl = -sn * A - cs * Bs;
        double g_cs = AF + BL, g_sn = AL - BF;
        grad5[0] += g_df * r->dx - g_dl * r->dy;
        grad5[1] += g_df * r->dy + g_dl * r->dx;
        grad5[2] += g_cs * r->dx - g_sn * r->dy;
        grad5[3] += g_cs * r->dy + g_sn * r->dx;
    }
}

void ew_cost_kin_step(const ew_cost_pose *q, double a, double b, double dt, int allow_reverse, ew_cost_pose *out) {
    double v = q->s, k = b * v * dt;
    double ux = q->dx - k * q->dy, uy = q->dy + k * q->dx, n = sqrt(ux * ux + uy * uy);
    ew_cost_pose r;
    r.x = q->x + dt * v * q->dx;
    r.y = q->y + dt * v * q->dy;
    if (n > 0.0) {
        r.dx = ux / n;
        r.dy = uy / n;
    } else {
        r.dx = q->dx;
        r.dy = q->dy;
    }
    double s = v + a * dt;
    r.s = (allow_reverse || s > 0.0) ? s : 0.0;
    *out = r;
}

/* Adjoint of ew_cost_kin_step: g = dL/d(next) -> gq = dL/d(q), *ga, *gb. */
static void kin_adjoint(const ew_cost_pose *q, double a, double b, double dt, int allow_reverse, const double g[5],
                        double gq[5], double *ga, double *gb) {
    double v = q->s, dx = q->dx, dy = q->dy, k = b * v * dt;
    double ux = dx - k * dy, uy = dy + k * dx, n = sqrt(ux * ux + uy * uy);
    gq[0] = g[0];
    gq[1] = g[1];
    gq[2] = g[0] * dt * v;
    gq[3] = g[1] * dt * v;
    gq[4] = (g[0] * dx + g[1] * dy) * dt;
    *gb = 0.0;
    if (n > 0.0) {
        double hx = ux / n, hy = uy / n, hg = hx * g[2] + hy * g[3];
        double gux = (g[2] - hx * hg) / n, guy = (g[3] - hy * hg) / n;
        gq[2] += gux + guy * k;
        gq[3] += -gux * k + guy;
        double gk = -gux * dy + guy * dx;
        *gb = gk * v * dt;
        gq[4] += gk * b * dt;
    } else {
        gq[2] += g[2];
        gq[3] += g[3];
    }
    if (allow_reverse || v + a * dt > 0.0) {
        gq[4] += g[4];
        *ga = g[4] * dt;
    } else {
        *ga = 0.0;
    }
}

double ew_cost_decoupled(const ew_cost_config *c, const ew_cost_problem *p, const ew_action *u, float *grad,
                         ew_cost_terms *terms, double *speeds_out) {
    int T = p->T;
    if (T < 1 || T > EW_COST_MAX_T) return NAN;
    ew_cost_pose q[EW_COST_MAX_T + 1];
    double gq[EW_COST_MAX_T + 1][5];
    double gu[EW_COST_MAX_T][2];
    const double dt = c->dt;
    q[0] = p->start;
    for (int t = 0; t < T; t++) ew_cost_kin_step(&q[t], u[t].a, u[t].b, dt, c->allow_reverse, &q[t + 1]);
    const int want = grad != NULL;
    if (want) {
        memset(gq, 0, sizeof(double) * 5 * (size_t)(T + 1));
        memset(gu, 0, sizeof(double) * 2 * (size_t)T);
    }
    const size_t img = (size_t)p->C * c->rows * c->cols;
    const size_t timg = (size_t)p->C * ew_cost_rows_padded(c->rows) * c->cols;
    const double ar2 = 1.0 / ((double)c->a_ref * c->a_ref);
    double sum[8] = {0};
    double disc = 1.0;
    for (int t = 0; t < T; t++, disc *= c->gamma) {
        const ew_cost_pose *qt = &q[t + 1];
        double v = p->speed ? p->speed[t] : qt->s;
        if (speeds_out) speeds_out[t] = v;
        double w[3] = {disc * c->lambda_p, disc * c->lambda_l, disc * c->lambda_o}, o[3];
        if (p->exact || !p->images_t)
            ew_cost_image(c, p->images + (size_t)t * img, p->C, &p->ref[t], qt, v, o, w, want ? gq[t + 1] : NULL);
        else
            image_fast(c, p->images_t + (size_t)t * timg, &p->ref[t], qt, v, o, w, want ? gq[t + 1] : NULL);
        sum[1] += w[0] * o[0];
        sum[2] += w[1] * o[1];
        sum[3] += w[2] * o[2];
        double v2 = v * v, v4 = v2 * v2;
        double a = u[t].a, b = u[t].b;
        sum[4] += disc * c->w_action * (a * a + v4 * b * b) * ar2;
        double pa = t ? u[t - 1].a : p->prev.a, pb = t ? u[t - 1].b : p->prev.b;
        double ja = a - pa, jb = b - pb;
        sum[5] += disc * c->w_jerk * (ja * ja + v4 * jb * jb) * ar2;
        if (want) {
            double ka = 2.0 * disc * c->w_action * ar2, kj = 2.0 * disc * c->w_jerk * ar2;
            gu[t][0] += ka * a + kj * ja;
            gu[t][1] += ka * v4 * b + kj * v4 * jb;
            if (t) {
                gu[t - 1][0] -= kj * ja;
                gu[t - 1][1] -= kj * v4 * jb;
            }
        }
        if (c->w_speed > 0.0f && c->v_des > 0.0f && qt->s < c->v_des) {
            double iv = 1.0 / c->v_des, e = (c->v_des - qt->s) * iv;
            sum[7] += disc * c->w_speed * e * e;
            if (want) gq[t + 1][4] -= 2.0 * disc * c->w_speed * e * iv;
        }
        if (p->use_ref) {
            const ew_cost_pose *r = &p->ref[t];
            double ddx = qt->x - r->x, ddy = qt->y - r->y;
            double df = ddx * r->dx + ddy * r->dy, dl = -ddx * r->dy + ddy * r->dx;
            double irf = 1.0 / c->ref_long, irl = 1.0 / c->ref_lat;
            double h = df * df * irf * irf + dl * dl * irl * irl - 1.0;
            if (h > 0.0) {
                sum[6] += disc * c->w_ref * h;
                if (want) {
                    double g_df = 2.0 * disc * c->w_ref * df * irf * irf, g_dl = 2.0 * disc * c->w_ref * dl * irl * irl;
                    gq[t + 1][0] += g_df * r->dx - g_dl * r->dy;
                    gq[t + 1][1] += g_df * r->dy + g_dl * r->dx;
                }
            }
        }
    }
    if (want) {
        double lam[5] = {0, 0, 0, 0, 0};
        for (int t = T - 1; t >= 0; t--) {
            double g[5], gprev[5], ga, gb;
            for (int i = 0; i < 5; i++) g[i] = gq[t + 1][i] + lam[i];
            kin_adjoint(&q[t], u[t].a, u[t].b, dt, c->allow_reverse, g, gprev, &ga, &gb);
            grad[2 * t] = (float)(gu[t][0] + ga);
            grad[2 * t + 1] = (float)(gu[t][1] + gb);
            memcpy(lam, gprev, sizeof lam);
        }
    }
    double total = sum[1] + sum[2] + sum[3] + sum[4] + sum[5] + sum[6] + sum[7];
    if (terms) {
        terms->total = total;
        terms->prox = sum[1];
        terms->lane = sum[2];
        terms->offroad = sum[3];
        terms->action = sum[4];
        terms->jerk = sum[5];
        terms->ref = sum[6];
        terms->speed = sum[7];
    }
    return total;
}

/* ---- tape form ---------------------------------------------------------------------------- */

/* A constant [n, k] tensor from values computed here. */
static ew_tensor *cnew(ew_graph *g, int n, int k) {
    int s[2] = {n, k};
    return ew_tensor_new(g, 2, s);
}

/* |x| as x * sign(x) (sign a constant). */
static ew_tensor *t_abs(ew_graph *g, ew_tensor *x) {
    if (!x) return NULL;
    ew_tensor *s = ew_tensor_new(g, x->ndim, x->shape);
    if (!s) return NULL;
    size_t n = ew_numel(x);
    for (size_t i = 0; i < n; i++) s->data[i] = x->data[i] > 0.0f ? 1.0f : -1.0f;
    return ew_mul(g, x, s);
}

/* clamp(x, 0, 1) as x * [0 < x < 1] + [x >= 1] (indicators constant). */
static ew_tensor *t_clamp01(ew_graph *g, ew_tensor *x) {
    if (!x) return NULL;
    ew_tensor *in = ew_tensor_new(g, x->ndim, x->shape), *one = ew_tensor_new(g, x->ndim, x->shape);
    if (!in || !one) return NULL;
    size_t n = ew_numel(x);
    for (size_t i = 0; i < n; i++) {
        float v = x->data[i];
        in->data[i] = (v > 0.0f && v < 1.0f) ? 1.0f : 0.0f;
        one->data[i] = v >= 1.0f ? 1.0f : 0.0f;
    }
    return ew_add(g, ew_mul(g, x, in), one);
}

/* Column j of a [B, k] tensor as [B, 1]. */
static ew_tensor *col(ew_graph *g, ew_tensor *x, int j) { return ew_slice(g, x, 1, j, 1); }

/* Sum over dim 1 of [B, n] -> [B, 1]. */
static ew_tensor *rowsum(ew_graph *g, ew_tensor *x) { return ew_sum_dim(g, x, 1, 1); }

int ew_cost_tape(ew_graph *g, const ew_cost_config *c, int B, int T, ew_tensor *const *images,
                 ew_tensor *const *states, ew_tensor *actions, const float *prev, const ew_cost_pose *ref,
                 const double *speed, ew_cost_tape_out *out) {
    memset(out, 0, sizeof *out);
    if (ew_graph_error(g)) return -1;
    if (B < 1 || T < 1 || !images || !states) {
        ew_graph_fail(g, "cost tape: images and states for B >= 1, T >= 1 are required");
        return -1;
    }
    const int rows = c->rows, cols = c->cols, hw = rows * cols;
    const double m = c->m_per_px, L = c->ego_len, W = c->ego_wid;
    out->step_masks = ew_arena_calloc(ew_graph_arena(g), sizeof(ew_tensor *) * (size_t)T);
    if (!out->step_masks) {
        ew_graph_fail(g, "arena: out of memory");
        return -1;
    }
    int b1[2] = {B, 1};
    ew_tensor *acc[6] = {NULL}; /* prox, lane, off, action, jerk, ref: [B,1] sums */
    const double ar2 = 1.0 / ((double)c->a_ref * c->a_ref);
    double disc = 1.0;
    for (int t = 0; t < T; t++, disc *= c->gamma) {
        ew_tensor *im = images[t], *st = states[t];
        if (!im || !st || im->ndim != 4 || im->shape[0] != B || im->shape[1] < 3 || im->shape[2] != rows ||
            im->shape[3] != cols || st->ndim != 2 || st->shape[0] != B || st->shape[1] != 5) {
            ew_graph_fail(g, "cost tape: step %d wants images [%d,>=3,%d,%d] and states [%d,5]", t, B, rows, cols, B);
            return -1;
        }
        int bhw[2] = {B, hw};
        ew_tensor *chan[3];
        for (int k = 0; k < 3; k++) chan[k] = ew_reshape(g, ew_slice(g, im, 1, k, 1), 2, bhw);
        /* per-row constants */
        ew_tensor *kp = cnew(g, B, 1), *cp = cnew(g, B, 1), *kl = cnew(g, B, 1), *cl = cnew(g, B, 1);
        ew_tensor *ky = cnew(g, B, 1), *cy = cnew(g, B, 1), *izp = cnew(g, B, 1), *izl = cnew(g, B, 1);
        ew_tensor *v4 = cnew(g, B, 1);
        if (!kp || !cp || !kl || !cl || !ky || !cy || !izp || !izl || !v4) return -1;
        for (int b = 0; b < B; b++) {
            double v = speed ? speed[(size_t)t * B + b] : (double)st->data[(size_t)b * 5 + 4];
            ew_cost_mask mk;
            ew_cost_mask_geometry(c, v, &mk);
            double ip = 1.0 / (mk.dp - 0.5 * L), il = 1.0 / (mk.dl - 0.5 * L), iy = 1.0 / (mk.wl - 0.5 * W);
            kp->data[b] = (float)-ip;
            cp->data[b] = (float)(mk.dp * ip);
            kl->data[b] = (float)-il;
            cl->data[b] = (float)(mk.dl * il);
            ky->data[b] = (float)-iy;
            cy->data[b] = (float)(mk.wl * iy);
            izp->data[b] = (float)(1.0 / mk.zp);
            izl->data[b] = (float)(1.0 / mk.zl);
            v4->data[b] = (float)(v * v * v * v * ar2);
        }
        ew_tensor *f, *l;
        ew_tensor *Fr = cnew(g, B, hw), *Lr = cnew(g, B, hw);
        if (!Fr || !Lr) return -1;
        /* pixel centres in the frame of the image's pose */
        for (int b = 0; b < B; b++)
            for (int r = 0; r < rows; r++)
                for (int cc = 0; cc < cols; cc++) {
                    size_t i = (size_t)b * hw + (size_t)r * cols + cc;
                    Fr->data[i] = (float)((0.5 * rows - r - 0.5) * m);
                    Lr->data[i] = (float)((0.5 * cols - cc - 0.5) * m);
                }
        ew_tensor *dfl = NULL, *dll = NULL;
        if (ref) {
            /* pixel offsets from the image's pose, in world axes: E = P - r */
            ew_tensor *Ex = cnew(g, B, hw), *Ey = cnew(g, B, hw), *rx = cnew(g, B, 1), *ry = cnew(g, B, 1);
            ew_tensor *rdx = cnew(g, B, 1), *rdy = cnew(g, B, 1);
            if (!Ex || !Ey || !rx || !ry || !rdx || !rdy) return -1;
            for (int b = 0; b < B; b++) {
                const ew_cost_pose *rp = &ref[(size_t)t * B + b];
                rx->data[b] = (float)rp->x;
                ry->data[b] = (float)rp->y;
                rdx->data[b] = (float)rp->dx;
                rdy->data[b] = (float)rp->dy;
                for (int i = 0; i < hw; i++) {
                    double F = Fr->data[(size_t)b * hw + i], Lf = Lr->data[(size_t)b * hw + i];
                    Ex->data[(size_t)b * hw + i] = (float)(F * rp->dx - Lf * rp->dy);
                    Ey->data[(size_t)b * hw + i] = (float)(F * rp->dy + Lf * rp->dx);
                }
            }
            ew_tensor *dx = ew_sub(g, col(g, st, 0), rx), *dy = ew_sub(g, col(g, st, 1), ry);
            ew_tensor *qdx = col(g, st, 2), *qdy = col(g, st, 3);
            ew_tensor *ex = ew_sub(g, Ex, dx), *ey = ew_sub(g, Ey, dy);
            f = ew_add(g, ew_mul(g, ex, qdx), ew_mul(g, ey, qdy));
            l = ew_sub(g, ew_mul(g, ey, qdx), ew_mul(g, ex, qdy));
            /* validity term */
            dfl = ew_add(g, ew_mul(g, dx, rdx), ew_mul(g, dy, rdy));
            dll = ew_sub(g, ew_mul(g, dy, rdx), ew_mul(g, dx, rdy));
        } else {
            f = Fr;
            l = Lr;
        }
        ew_tensor *af = t_abs(g, f), *al = t_abs(g, l);
        ew_tensor *vp = t_clamp01(g, ew_add(g, ew_mul(g, af, kp), cp));
        ew_tensor *vl = t_clamp01(g, ew_add(g, ew_mul(g, af, kl), cl));
        ew_tensor *vy = t_clamp01(g, ew_add(g, ew_mul(g, al, ky), cy));
        ew_tensor *Mp = ew_square(g, ew_mul(g, vp, vy)), *Ml = ew_square(g, ew_mul(g, vl, vy));
        ew_tensor *prox = ew_mul(g, rowsum(g, ew_mul(g, Mp, chan[1])), izp);
        ew_tensor *lane = ew_mul(g, rowsum(g, ew_mul(g, Ml, chan[0])), izl);
        ew_tensor *off = ew_mul(g, rowsum(g, ew_mul(g, Ml, chan[2])), izl);
        ew_tensor *three[3] = {prox, lane, off};
        out->step_masks[t] = ew_concat(g, three, 3, 1);
        ew_tensor *terms[6] = {ew_scale(g, prox, (float)(disc * c->lambda_p)),
                               ew_scale(g, lane, (float)(disc * c->lambda_l)),
                               ew_scale(g, off, (float)(disc * c->lambda_o)), NULL, NULL, NULL};
        if (actions) {
            int s2[2] = {B, 2};
            ew_tensor *ut = ew_reshape(g, ew_slice(g, actions, 1, t, 1), 2, s2);
            ew_tensor *a = col(g, ut, 0), *b = col(g, ut, 1);
            ew_tensor *ta = ew_add(g, ew_scale(g, ew_square(g, a), (float)ar2), ew_mul(g, ew_square(g, b), v4));
            terms[3] = ew_scale(g, ta, (float)(disc * c->w_action));
            ew_tensor *pa = NULL, *pb = NULL;
            if (t > 0) {
                ew_tensor *up = ew_reshape(g, ew_slice(g, actions, 1, t - 1, 1), 2, s2);
                pa = col(g, up, 0);
                pb = col(g, up, 1);
            } else if (prev) {
                ew_tensor *pt = cnew(g, B, 2);
                if (!pt) return -1;
                memcpy(pt->data, prev, sizeof(float) * 2 * (size_t)B);
                pa = col(g, pt, 0);
                pb = col(g, pt, 1);
            }
            if (pa) {
                ew_tensor *ja = ew_sub(g, a, pa), *jb = ew_sub(g, b, pb);
                ew_tensor *tj = ew_add(g, ew_scale(g, ew_square(g, ja), (float)ar2), ew_mul(g, ew_square(g, jb), v4));
                terms[4] = ew_scale(g, tj, (float)(disc * c->w_jerk));
            }
        }
        if (ref) {
            float irf2 = 1.0f / (c->ref_long * c->ref_long), irl2 = 1.0f / (c->ref_lat * c->ref_lat);
            ew_tensor *h = ew_add_scalar(g, ew_add(g, ew_scale(g, ew_square(g, dfl), irf2),
                                                   ew_scale(g, ew_square(g, dll), irl2)), -1.0f);
            terms[5] = ew_scale(g, ew_relu(g, h), (float)(disc * c->w_ref));
        }
        for (int k = 0; k < 6; k++)
            if (terms[k]) acc[k] = acc[k] ? ew_add(g, acc[k], terms[k]) : terms[k];
        if (ew_graph_error(g)) return -1;
    }
    ew_tensor *tot = NULL;
    ew_tensor **slots[6] = {&out->prox, &out->lane, &out->offroad, &out->action, &out->jerk, &out->ref};
    for (int k = 0; k < 6; k++) {
        if (acc[k]) {
            *slots[k] = ew_mean(g, acc[k]);
            tot = tot ? ew_add(g, tot, acc[k]) : acc[k];
        } else {
            *slots[k] = ew_tensor_zeros(g, 0, NULL);
        }
    }
    out->total = ew_mean(g, tot);
    (void)b1;
    return ew_graph_error(g) ? -1 : 0;
}

/* ---- uncertainty ----------------------------------------------------------------------------- */

static ew_tensor *variance(ew_graph *g, int M, ew_tensor *const *xs) {
    ew_tensor *sum = NULL;
    for (int k = 0; k < M; k++) sum = sum ? ew_add(g, sum, xs[k]) : xs[k];
    ew_tensor *mean = ew_scale(g, sum, 1.0f / (float)M), *acc = NULL;
    for (int k = 0; k < M; k++) {
        ew_tensor *d2 = ew_square(g, ew_sub(g, xs[k], mean));
        acc = acc ? ew_add(g, acc, d2) : d2;
    }
    return ew_scale(g, acc, 1.0f / (float)(M - 1));
}

int ew_cost_uncertainty_terms(ew_graph *g, int M, ew_tensor *const *preds, ew_tensor *const *costs,
                              ew_tensor **img_var, ew_tensor **cost_var) {
    *img_var = NULL;
    if (cost_var) *cost_var = NULL;
    if (ew_graph_error(g)) return -1;
    if (M < 2 || !preds) {
        ew_graph_fail(g, "cost uncertainty: want M >= 2 predictions (got %d)", M);
        return -1;
    }
    for (int k = 0; k < M; k++)
        if (!preds[k] || preds[k]->ndim != 3 || !ew_same_shape(preds[k], preds[0]) ||
            (costs && (!costs[k] || costs[k]->ndim != 2 || costs[k]->shape[0] != preds[0]->shape[0] ||
                       costs[k]->shape[1] != preds[0]->shape[1]))) {
            ew_graph_fail(g, "cost uncertainty: prediction %d must be [B,T,D] like the first (costs [B,T])", k);
            return -1;
        }
    *img_var = ew_mean_dim(g, variance(g, M, preds), 2, 0);
    if (costs && cost_var) *cost_var = variance(g, M, costs);
    return ew_graph_error(g) ? -1 : 0;
}

static ew_tensor *hinge_term(ew_graph *g, ew_tensor *var, const float *mean, const float *std, int T, float hinge) {
    int s1[1] = {T};
    ew_tensor *mt = ew_tensor_from(g, 1, s1, mean), *it = ew_tensor_new(g, 1, s1);
    if (!mt || !it) return NULL;
    for (int t = 0; t < T; t++) it->data[t] = 1.0f / (std[t] > 1e-8f ? std[t] : 1e-8f);
    return ew_mean(g, ew_relu(g, ew_add_scalar(g, ew_mul(g, ew_sub(g, var, mt), it), -hinge)));
}

ew_tensor *ew_cost_uncertainty_penalty(ew_graph *g, ew_tensor *img_var, ew_tensor *cost_var,
                                       const ew_cost_unc_stats *s) {
    if (ew_graph_error(g)) return NULL;
    if (!img_var || img_var->ndim != 2 || img_var->shape[1] != s->T ||
        (cost_var && !ew_same_shape(cost_var, img_var)) || !s->img_mean || !s->img_std ||
        (cost_var && (!s->cost_mean || !s->cost_std)))
        return ew_graph_fail(g, "cost uncertainty: variances [B,%d] and their per-step stats are required", s->T);
    ew_tensor *p = hinge_term(g, img_var, s->img_mean, s->img_std, s->T, s->hinge);
    if (cost_var) p = ew_add(g, p, hinge_term(g, cost_var, s->cost_mean, s->cost_std, s->T, s->hinge));
    return p;
}

int ew_cost_unc_acc_init(ew_cost_unc_acc *a, int T) {
    memset(a, 0, sizeof *a);
    if (T < 1) return -1;
    a->T = T;
    a->sum = calloc((size_t)T, sizeof(double));
    a->sum2 = calloc((size_t)T, sizeof(double));
    if (!a->sum || !a->sum2) {
        ew_cost_unc_acc_free(a);
        return -1;
    }
    return 0;
}

void ew_cost_unc_acc_add(ew_cost_unc_acc *a, const float *rows, int n) {
    for (int r = 0; r < n; r++)
        for (int t = 0; t < a->T; t++) {
            double v = rows[(size_t)r * a->T + t];
            a->sum[t] += v;
            a->sum2[t] += v * v;
        }
    a->n += n;
}

void ew_cost_unc_acc_finish(const ew_cost_unc_acc *a, float *mean, float *std) {
    for (int t = 0; t < a->T; t++) {
        double mu = a->n ? a->sum[t] / (double)a->n : 0.0;
        double var = a->n > 1 ? (a->sum2[t] - a->n * mu * mu) / (double)(a->n - 1) : 0.0;
        mean[t] = (float)mu;
        std[t] = (float)(var > 1e-16 ? sqrt(var) : 1e-8);
    }
}

void ew_cost_unc_acc_free(ew_cost_unc_acc *a) {
    free(a->sum);
    free(a->sum2);
    a->sum = a->sum2 = NULL;
}
