/* test_ego.c - the ego kinematic model: Jacobians against central finite differences,
 * constant-curvature circles, straight lines, speed clamp, action clipping. */
#include <math.h>
#include <stdint.h>

#include "sim/ego.h"
#include "sim/rng.h"
#include "tests/check.h"

static void get(const ew_kin_state *s, double v[5]) {
    v[0] = s->x; v[1] = s->y; v[2] = s->dx; v[3] = s->dy; v[4] = s->s;
}
static void set(ew_kin_state *s, const double v[5]) {
    s->x = (float)v[0]; s->y = (float)v[1]; s->dx = (float)v[2]; s->dy = (float)v[3]; s->s = (float)v[4];
}

/* Central differences of ew_kin_step in float; h chosen per variable. */
static int jac_matches(const ew_kin_state *s, ew_action u, float dt, int rev, double *worst) {
    float Js[5][5], Ja[5][2];
    ew_kin_jacobian(s, u, dt, rev, Js, Ja);
    double base[5];
    get(s, base);
    int ok = 1;
    for (int j = 0; j < 7; j++) {
        double h = j < 5 ? 1e-2 * (j == 2 || j == 3 ? 0.1 : 1.0) : (j == 5 ? 1e-2 : 1e-4);
        ew_kin_state sp = *s, sm = *s;
        ew_action up = u, um = u;
        if (j < 5) {
            double p[5], m[5];
            for (int i = 0; i < 5; i++) p[i] = m[i] = base[i];
            p[j] += h; m[j] -= h;
            set(&sp, p); set(&sm, m);
            h = 0.5 * (((double)(j == 0 ? sp.x : j == 1 ? sp.y : j == 2 ? sp.dx : j == 3 ? sp.dy : sp.s)) -
                       ((double)(j == 0 ? sm.x : j == 1 ? sm.y : j == 2 ? sm.dx : j == 3 ? sm.dy : sm.s)));
        } else if (j == 5) {
            up.a += (float)h; um.a -= (float)h;
            h = 0.5 * ((double)up.a - (double)um.a);
        } else {
            up.b += (float)h; um.b -= (float)h;
            h = 0.5 * ((double)up.b - (double)um.b);
        }
        ew_kin_state np, nm;
        ew_kin_step(&sp, up, dt, rev, &np);
        ew_kin_step(&sm, um, dt, rev, &nm);
        double a[5], b[5];
        get(&np, a);
        get(&nm, b);
        for (int i = 0; i < 5; i++) {
            double fd = (a[i] - b[i]) / (2.0 * h);
            double an = j < 5 ? Js[i][j] : Ja[i][j - 5];
            double err = fabs(fd - an);
            double tol = 2e-3 + 2e-3 * fabs(an);
            if (err > *worst) *worst = err;
            if (err > tol) {
                fprintf(stderr, "  d next[%d] / d in[%d]: analytic %.6g, fd %.6g\n", i, j, an, fd);
                ok = 0;
            }
        }
    }
    return ok;
}

static void test_jacobians(void) {
    ew_rng r;
    ew_rng_seed(&r, 42);
    double worst = 0.0;
    int bad = 0;
    for (int n = 0; n < 200; n++) {
        float t = (float)ew_rng_range(&r, -3.14, 3.14);
        ew_kin_state s = {(float)ew_rng_range(&r, -50, 50), (float)ew_rng_range(&r, -10, 10), cosf(t), sinf(t),
                          (float)ew_rng_range(&r, 1.0, 35.0)};
        ew_action u = {(float)ew_rng_range(&r, -6, 6), (float)ew_rng_range(&r, -0.2, 0.2)};
        float dt = n % 3 == 0 ? 0.1f : (float)ew_rng_range(&r, 0.02, 0.3);
        if (!jac_matches(&s, u, dt, n & 1, &worst)) bad++;
    }
    CHECK(bad == 0, "%d of 200 random states have a Jacobian mismatch (worst %.3g)", bad, worst);

    /* near the speed clamp: s + a dt clearly positive and clearly clamped, both sides */
    ew_kin_state s = {0, 0, 0.6f, 0.8f, 0.5f};
    ew_action u = {-4.0f, 0.1f}; /* s + a dt = 0.1 > 0: derivative 1 / dt */
    worst = 0.0;
    CHECK(jac_matches(&s, u, 0.1f, 0, &worst), "above the clamp");
    float Js[5][5], Ja[5][2];
    ew_kin_jacobian(&s, u, 0.1f, 0, Js, Ja);
    CHECK(Js[4][4] == 1.0f && Ja[4][0] == 0.1f, "unclamped speed derivatives %g %g", Js[4][4], Ja[4][0]);
    u.a = -6.0f; /* s + a dt = -0.1: clamped, derivative 0 */
    CHECK(jac_matches(&s, u, 0.1f, 0, &worst), "below the clamp");
    ew_kin_jacobian(&s, u, 0.1f, 0, Js, Ja);
    CHECK(Js[4][4] == 0.0f && Ja[4][0] == 0.0f, "clamped speed derivatives %g %g", Js[4][4], Ja[4][0]);
    ew_kin_jacobian(&s, u, 0.1f, 1, Js, Ja);
    CHECK(Js[4][4] == 1.0f && Ja[4][0] == 0.1f, "reverse allowed: no clamp");
    CHECK(jac_matches(&s, u, 0.1f, 1, &worst), "reverse allowed, fd");
    /* the analytic derivative of the heading w.r.t. b at b = 0 is v dt d_perp */
    ew_kin_state s2 = {1, 2, 1, 0, 10};
    ew_action u0 = {0, 0};
    ew_kin_jacobian(&s2, u0, 0.1f, 0, Js, Ja);
    CHECK_NEAR(Ja[2][1], 0.0, 1e-7);
    CHECK_NEAR(Ja[3][1], 1.0, 1e-6);
}

static void test_circle(void) {
    const float bs[] = {0.02f, -0.05f, 0.2f};
    for (int k = 0; k < 3; k++) {
        float b = bs[k];
        ew_kin_state s = {3.0f, -1.0f, 1.0f, 0.0f, 10.0f};
        /* centre: 1/b to the left of the start heading */
        double cx = 3.0, cy = -1.0 + 1.0 / b, R = fabs(1.0 / b);
        double dt = 0.001, worst = 0.0, worst_unit = 0.0;
        ew_action u = {0.0f, b};
        int steps = (int)(2.0 * 3.14159 * R / (10.0 * dt)); /* about one lap */
        for (int i = 0; i < steps; i++) {
            ew_kin_step(&s, u, (float)dt, 0, &s);
            double e = fabs(hypot(s.x - cx, s.y - cy) - R);
            double nu = fabs(hypot(s.dx, s.dy) - 1.0);
            if (e > worst) worst = e;
            if (nu > worst_unit) worst_unit = nu;
        }
        /* explicit Euler on a circle drifts outward by about R * (v dt / R)^2 / 2 per step */
        double drift = 0.5 * (10.0 * dt) * (10.0 * dt) / R * steps;
        CHECK(worst <= 1e-3 * R + 2.0 * drift, "b=%g: radius error %.4g (R %.4g, drift bound %.3g)", b, worst, R, drift);
        CHECK(worst_unit < 1e-5, "b=%g: heading norm error %.3g", b, worst_unit);
        CHECK(s.s == 10.0f, "speed constant");
    }
    /* turning direction: positive b turns left (y increases when heading along +x) */
    ew_kin_state s = {0, 0, 1, 0, 10};
    ew_action u = {0, 0.1f};
    for (int i = 0; i < 5; i++) ew_kin_step(&s, u, 0.1f, 0, &s);
    CHECK(s.y > 0.0f && s.dy > 0.0f, "positive curvature turns left: y %g dy %g", s.y, s.dy);
}

static void test_straight_and_clamp(void) {
    float t = 0.3f;
    ew_kin_state s = {1.0f, 2.0f, cosf(t), sinf(t), 5.0f};
    ew_action u = {1.0f, 0.0f};
    double x = 1.0, y = 2.0;
    for (int i = 0; i < 100; i++) {
        ew_kin_step(&s, u, 0.1f, 0, &s);
    }
    /* distance = sum of speeds 5, 5.1, ..., 14.9 times dt */
    double dist = 0.0;
    for (int i = 0; i < 100; i++) dist += (5.0 + 0.1 * i) * 0.1;
    x += dist * cos(0.3);
    y += dist * sin(0.3);
    CHECK_NEAR(s.x, x, 2e-3);
    CHECK_NEAR(s.y, y, 2e-3);
    CHECK_NEAR(s.dx, cos(0.3), 1e-6);
    CHECK_NEAR(s.dy, sin(0.3), 1e-6);
    CHECK_NEAR(s.s, 15.0, 1e-3);
    /* exact one-step equations */
    ew_kin_state a = {0, 0, 0.6f, 0.8f, 2.0f}, o;
    ew_action ub = {-30.0f, 0.0f};
    ew_kin_step(&a, ub, 0.1f, 0, &o);
    CHECK(o.s == 0.0f, "speed clamps at 0, got %g", o.s);
    CHECK(o.x == 0.1f * 2.0f * 0.6f && o.y == 0.1f * 2.0f * 0.8f, "position update uses the old speed");
    ew_kin_step(&a, ub, 0.1f, 1, &o);
    CHECK_NEAR(o.s, -1.0, 1e-6);
}

static void test_clip(void) {
    ew_kin_limits l;
    ew_kin_limits_default(&l);
    CHECK(l.a_min == -6.0f && l.a_max == 6.0f && l.b_max == 0.2f && l.allow_reverse == 0, "defaults");
    ew_action u = ew_kin_clip(&l, (ew_action){9.0f, -1.0f});
    CHECK(u.a == 6.0f && u.b == -0.2f, "clip high %g %g", u.a, u.b);
    u = ew_kin_clip(&l, (ew_action){-9.0f, 1.0f});
    CHECK(u.a == -6.0f && u.b == 0.2f, "clip low %g %g", u.a, u.b);
    u = ew_kin_clip(&l, (ew_action){1.5f, 0.05f});
    CHECK(u.a == 1.5f && u.b == 0.05f, "inside unchanged");
    u = ew_kin_clip(&l, (ew_action){NAN, NAN});
    CHECK(u.a == 0.0f && u.b == 0.0f, "NaN -> 0");
}

int main(void) {
    test_jacobians();
    test_circle();
    test_straight_and_clamp();
    test_clip();
    return check_done();
}
