/* test_nn_core.c - arena, tape, grad modes and errors; a training step makes no heap
 * allocation after warm-up (malloc calls counted by interposition, arena growth by the
 * graph's own counter). */
#include <stdatomic.h>

#include "models/layers.h"
#include "tests/test_nn_util.h"

/* Count every malloc/calloc/realloc of the process (glibc: forward to the __libc_ entry
 * points). Not under AddressSanitizer, which owns malloc; the arena counter still runs. */
#if defined(__GLIBC__) && !defined(__SANITIZE_ADDRESS__)
#define COUNT_MALLOC 1
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
static atomic_long n_mallocs;
void *malloc(size_t n) {
    atomic_fetch_add(&n_mallocs, 1);
    return __libc_malloc(n);
}
void *calloc(size_t a, size_t b) {
    atomic_fetch_add(&n_mallocs, 1);
    return __libc_calloc(a, b);
}
void *realloc(void *p, size_t n) {
    atomic_fetch_add(&n_mallocs, 1);
    return __libc_realloc(p, n);
}
void free(void *p) { __libc_free(p); }
static long mallocs(void) { return atomic_load(&n_mallocs); }
#else
#define COUNT_MALLOC 0
static long mallocs(void) { return 0; }
#endif

static void arena_basics(void) {
    ew_arena a;
    CHECK(ew_arena_init(&a, 4096) == 0, "init");
    unsigned long s0 = ew_arena_sys_allocs(&a);
    void *p = ew_arena_alloc(&a, 10), *q = ew_arena_alloc(&a, 100);
    CHECK(((uintptr_t)p % EW_ARENA_ALIGN) == 0 && ((uintptr_t)q % EW_ARENA_ALIGN) == 0, "aligned");
    CHECK((char *)q - (char *)p == EW_ARENA_ALIGN, "bump allocation");
    CHECK(ew_arena_sys_allocs(&a) == s0, "no system allocation inside the block");
    /* outgrow the block: chains */
    void *big = ew_arena_alloc(&a, 100000);
    CHECK(big != NULL && ew_arena_sys_allocs(&a) > s0, "chained a block");
    memset(big, 1, 100000);
    CHECK(ew_arena_reset(&a) == 0, "reset");
    size_t cap = ew_arena_capacity(&a);
    CHECK(cap >= 100000 + 64 + 128, "folded into one block of the high-water size (%zu)", cap);
    unsigned long s1 = ew_arena_sys_allocs(&a);
    for (int step = 0; step < 5; step++) {
        ew_arena_alloc(&a, 10);
        ew_arena_alloc(&a, 100);
        ew_arena_alloc(&a, 100000);
        ew_arena_reset(&a);
    }
    CHECK(ew_arena_sys_allocs(&a) == s1, "the same steps again allocate nothing");
    int *z = ew_arena_calloc(&a, 64 * sizeof(int));
    int nz = 0;
    for (int i = 0; i < 64; i++) nz += z[i] != 0;
    CHECK(nz == 0, "calloc zeroes");
    ew_arena_free(&a);
}

static void grad_modes(ew_backend *be) {
    ew_graph *g = ew_graph_create(be, 1 << 16);
    int s[2] = {2, 3};
    float xv[6] = {1, -2, 3, 0.5f, -1, 2};
    /* input gradient: d/dx sum(x*x*c) = 2 c x; the constant gets none */
    ew_tensor *x = ew_tensor_from(g, 2, s, xv);
    ew_tensor *c = ew_tensor_from(g, 2, s, xv);
    ew_requires_grad(x, 1);
    ew_tensor *loss = ew_sum(g, ew_mul(g, ew_square(g, x), c));
    CHECK(loss && loss->requires_grad, "loss requires grad");
    CHECK(ew_backward(g, loss) == 0, "backward: %s", ew_graph_error(g) ? ew_graph_error(g) : "");
    int ok = 1;
    for (int i = 0; i < 6; i++) ok &= fabsf(x->grad[i] - 2 * xv[i] * xv[i]) < 1e-5f;
    CHECK(ok, "input gradient 2 c x");
    CHECK(c->grad == NULL, "constant input gets no gradient");
    CHECK(ew_graph_tape_len(g) == 0, "tape consumed by backward");

    /* no-grad mode: nothing recorded even with inputs requiring grad */
    ew_graph_reset(g);
    x = ew_tensor_from(g, 2, s, xv);
    ew_requires_grad(x, 1);
    int old = ew_set_grad_enabled(g, 0);
    CHECK(old == 1, "grad mode on by default");
    ew_tensor *y = ew_sum(g, ew_tanh(g, ew_scale(g, x, 2.0f)));
    CHECK(y && !y->requires_grad && ew_graph_tape_len(g) == 0, "no tape in no-grad mode");
    CHECK(ew_backward(g, y) == -1 && ew_graph_error(g), "backward without a tape is an error");
    ew_set_grad_enabled(g, 1);

    /* parameter gradients accumulate over backward passes */
    ew_graph_reset(g);
    float pd[3] = {1, 2, 3}, pg[3] = {0, 0, 0};
    ew_param p = {.name = "p", .ndim = 1, .shape = {3}, .data = pd, .grad = pg};
    for (int rep = 0; rep < 2; rep++) {
        ew_tensor *pt = ew_param_tensor(g, &p);
        ew_backward(g, ew_sum(g, ew_scale(g, pt, 3.0f)));
    }
    CHECK(pg[0] == 6.0f && pg[1] == 6.0f && pg[2] == 6.0f, "param grads accumulate: %g", (double)pg[0]);
    CHECK(ew_graph_error(g) == NULL, "no error");

    /* non-scalar loss */
    ew_graph_reset(g);
    x = ew_tensor_from(g, 2, s, xv);
    ew_requires_grad(x, 1);
    CHECK(ew_backward(g, ew_exp(g, x)) == -1 && strstr(ew_graph_error(g), "one element"), "non-scalar loss rejected");

    /* shape mismatch and bad reshape report and return NULL */
    ew_graph_reset(g);
    int s2[2] = {3, 2};
    CHECK(ew_add(g, ew_tensor_zeros(g, 2, s), ew_tensor_zeros(g, 2, s2)) == NULL &&
              strstr(ew_graph_error(g), "broadcast"),
          "broadcast mismatch rejected");
    ew_graph_reset(g);
    int s3[1] = {7};
    CHECK(ew_reshape(g, ew_tensor_zeros(g, 2, s), 1, s3) == NULL && ew_graph_error(g), "bad reshape rejected");
    ew_graph_reset(g);
    CHECK(ew_slice(g, ew_tensor_zeros(g, 2, s), 1, 2, 2) == NULL && ew_graph_error(g), "slice out of range rejected");
    ew_graph_reset(g);
    int lab[2] = {0, 3};
    CHECK(ew_cross_entropy(g, ew_tensor_zeros(g, 2, s), lab) == NULL && ew_graph_error(g), "label out of range rejected");

    /* dropout: same rng state, same mask; masks scale kept values by 1/(1-p) */
    ew_graph_reset(g);
    int sd[2] = {100, 100};
    ew_tensor *ones = ew_tensor_zeros(g, 2, sd);
    for (int i = 0; i < 10000; i++) ones->data[i] = 1.0f;
    ew_rng r1, r2;
    ew_rng_seed(&r1, 9);
    ew_rng_seed(&r2, 9);
    ew_tensor *d1 = ew_dropout(g, ones, 0.25f, &r1), *d2 = ew_dropout(g, ones, 0.25f, &r2);
    int same = 1, zeros = 0, other = 0;
    for (int i = 0; i < 10000; i++) {
        same &= d1->data[i] == d2->data[i];
        zeros += d1->data[i] == 0.0f;
        other += d1->data[i] != 0.0f && fabsf(d1->data[i] - 1.0f / 0.75f) > 1e-6f;
    }
    CHECK(same, "same seed, same mask");
    CHECK(zeros > 2200 && zeros < 2800 && other == 0, "dropout rate %d / 10000", zeros);
    ew_graph_destroy(g);
}

/* A small training step: conv -> leaky -> conv -> linear -> mse, plain SGD. */
typedef struct {
    ew_conv_layer c1, c2;
    ew_linear_layer fc;
    ew_param_list params;
} net;

static int net_init(net *n) {
    memset(n, 0, sizeof *n);
    ew_conv_opts o = {{2, 2}, {1, 1}, {0, 0}};
    char err[128];
    if (ew_conv2d_layer_init(&n->c1, "c1", 3, 8, 4, 4, &o, 1, 1, err, sizeof err)) return -1;
    if (ew_conv2d_layer_init(&n->c2, "c2", 8, 16, 4, 4, &o, 1, 2, err, sizeof err)) return -1;
    if (ew_linear_layer_init(&n->fc, "fc", 16 * 4 * 4, 5, 1, 3, err, sizeof err)) return -1;
    ew_conv_layer_params(&n->c1, &n->params);
    ew_conv_layer_params(&n->c2, &n->params);
    ew_linear_layer_params(&n->fc, &n->params);
    return 0;
}

static void net_free(net *n) {
    ew_conv_layer_free(&n->c1);
    ew_conv_layer_free(&n->c2);
    ew_linear_layer_free(&n->fc);
    ew_param_list_free(&n->params);
}

static float net_step(ew_graph *g, net *n, const float *xv, const float *tv, ew_rng *rng) {
    ew_graph_reset(g);
    int xs[4] = {6, 3, 16, 16}, ts[2] = {6, 5}, fl[2] = {6, -1};
    ew_tensor *x = ew_tensor_wrap(g, 4, xs, (float *)xv);
    ew_tensor *h = ew_leaky_relu(g, ew_conv_layer_fwd(g, &n->c1, x), 0.2f);
    h = ew_channel_dropout(g, h, 0.1f, rng);
    h = ew_leaky_relu(g, ew_conv_layer_fwd(g, &n->c2, h), 0.2f);
    ew_tensor *y = ew_linear_layer_fwd(g, &n->fc, ew_reshape(g, h, 2, fl));
    ew_tensor *loss = ew_mse(g, y, ew_tensor_wrap(g, 2, ts, (float *)tv));
    if (!loss || ew_backward(g, loss)) return NAN;
    for (int i = 0; i < n->params.n; i++) {
        ew_param *p = &n->params.items[i];
        size_t k = ew_param_numel(p);
        for (size_t j = 0; j < k; j++) {
            p->data[j] -= 0.01f * p->grad[j];
            p->grad[j] = 0.0f;
        }
    }
    return loss->data[0];
}

static void no_heap_after_warmup(int threads) {
    ew_backend *be = ew_backend_cpu_create(threads);
    ew_graph *g = ew_graph_create(be, 0);
    net n;
    long before = mallocs();
    CHECK(net_init(&n) == 0, "net init");
    CHECK(!COUNT_MALLOC || mallocs() > before, "the malloc counter sees the layers' allocations");
    float *xv = malloc(sizeof(float) * 6 * 3 * 16 * 16), tv[30];
    ew_rng r;
    ew_rng_seed(&r, 4);
    for (int i = 0; i < 6 * 3 * 16 * 16; i++) xv[i] = (float)ew_rng_uniform(&r);
    for (int i = 0; i < 30; i++) tv[i] = (float)ew_rng_uniform(&r);
    float first = net_step(g, &n, xv, tv, &r);
    net_step(g, &n, xv, tv, &r);
    unsigned long ga = ew_graph_sys_allocs(g);
    size_t cap = ew_arena_capacity(ew_graph_arena(g));
    long m0 = mallocs();
    float last = first;
    for (int s = 0; s < 20; s++) last = net_step(g, &n, xv, tv, &r);
    long m1 = mallocs();
    CHECK(ew_graph_sys_allocs(g) == ga && ew_arena_capacity(ew_graph_arena(g)) == cap,
          "threads %d: arena did not grow after warm-up (%lu -> %lu)", threads, ga, ew_graph_sys_allocs(g));
    CHECK(m1 == m0, "threads %d: %ld malloc calls in 20 steps after warm-up", threads, m1 - m0);
    CHECK(isfinite(last) && last < first, "threads %d: loss went down %g -> %g", threads, (double)first, (double)last);
    free(xv);
    net_free(&n);
    ew_graph_destroy(g);
    ew_backend_destroy(be);
}

/* Same inputs, same thread count: bit-identical results; 1 vs 2 threads: close. */
static void determinism(void) {
    float out[3][5];
    for (int run = 0; run < 3; run++) {
        ew_backend *be = ew_backend_cpu_create(run == 2 ? 2 : 1);
        ew_graph *g = ew_graph_create(be, 0);
        net n;
        net_init(&n);
        float *xv = malloc(sizeof(float) * 6 * 3 * 16 * 16), tv[30];
        ew_rng r;
        ew_rng_seed(&r, 11);
        for (int i = 0; i < 6 * 3 * 16 * 16; i++) xv[i] = (float)ew_rng_uniform(&r);
        for (int i = 0; i < 30; i++) tv[i] = (float)ew_rng_uniform(&r);
        for (int s = 0; s < 5; s++) out[run][s] = net_step(g, &n, xv, tv, &r);
        free(xv);
        net_free(&n);
        ew_graph_destroy(g);
        ew_backend_destroy(be);
    }
    CHECK(memcmp(out[0], out[1], sizeof out[0]) == 0, "bit-identical reruns");
    int close = 1;
    for (int s = 0; s < 5; s++) close &= fabsf(out[0][s] - out[2][s]) <= 1e-5f * fabsf(out[0][s]) + 1e-7f;
    CHECK(close, "1 vs 2 threads agree: %.9g vs %.9g", (double)out[0][4], (double)out[2][4]);
}

int main(void) {
    arena_basics();
    ew_backend *be = ew_backend_cpu_create(1);
    grad_modes(be);
    ew_backend_destroy(be);
    no_heap_after_warmup(1);
    no_heap_after_warmup(2);
    determinism();
    if (!COUNT_MALLOC) printf("note: malloc counting off (sanitizer or non-glibc); arena counter checked\n");
    return check_done();
}
