/* test_fm_io.c - world-model checkpoints: a save/load round trip restores every tensor, the
 * configuration and the statistics and gives bit-identical predictions (K latent samples);
 * corrupted checkpoints (wrong shape, missing tensor, bad or missing config/stats metadata,
 * garbage) are rejected with one-line messages naming the file; a stochastic model starts
 * from a deterministic checkpoint with the same predictions; inference is seeded. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <unistd.h>

#include "tests/test_fm_util.h"

static char dir[256];

static void path_of(char *buf, size_t n, const char *name) { snprintf(buf, n, "%s/%s", dir, name); }

static int one_line(const char *s) { return s[0] && !strchr(s, '\n'); }

static int params_equal(ew_fm *a, ew_fm *b) {
    int na, nb;
    ew_param *pa = ew_fm_params(a, &na), *pb = ew_fm_params(b, &nb);
    if (na != nb) return 0;
    for (int i = 0; i < na; i++)
        if (strcmp(pa[i].name, pb[i].name) || memcmp(pa[i].data, pb[i].data, sizeof(float) * ew_param_numel(&pa[i])))
            return 0;
    return 1;
}

static void train_a_little(ew_backend *be, ew_fm *m, int steps) {
    char err[256] = "";
    fm_test_batch tb;
    fm_test_batch_make(&tb, &m->cfg, 2, m->cfg.n_pred, 21);
    ew_fm_train_config tc = ew_fm_train_defaults();
    tc.lr = 1e-2f;
    ew_fm_trainer *t;
    CHECK(ew_fm_trainer_create(m, be, &tc, &t, err, sizeof err) == 0, "trainer: %s", err);
    for (int s = 0; s < steps; s++) CHECK(ew_fm_train_step(t, &tb.b, (uint64_t)s, NULL, err, sizeof err) == 0, "step: %s", err);
    ew_fm_trainer_free(t);
    fm_test_batch_free(&tb);
}

typedef struct {
    float *img, *st;
} preds;

static int predict(ew_backend *be, ew_fm *m, int K, uint64_t seed, preds *p) {
    char err[256] = "";
    const ew_fm_config *c = &m->cfg;
    enum { B = 2, T = 4 };
    fm_test_batch tb;
    fm_test_batch_make(&tb, c, B, T, 42);
    size_t img = (size_t)3 * c->height * c->width;
    p->img = malloc(sizeof(float) * K * B * T * img);
    p->st = malloc(sizeof(float) * K * B * T * 5);
    ew_graph *g = ew_graph_create(be, 0);
    int rc = ew_fm_predict(g, m, B, tb.b.frames, tb.b.states, T, tb.b.actions, K, seed, p->img, p->st, err, sizeof err);
    CHECK(rc == 0, "predict: %s", err);
    ew_graph_destroy(g);
    fm_test_batch_free(&tb);
    return (int)(K * B * T * img);
}

static void preds_free(preds *p) {
    free(p->img);
    free(p->st);
}

static void round_trip(ew_backend *be) {
    char err[512] = "", path[300];
    ew_fm_config c = fm_tiny_config(EW_FM_KM, 1);
    c.seed = 77;
    ew_fm_stats st = fm_test_stats();
    ew_fm m, l;
    CHECK(ew_fm_init(&m, &c, &st, err, sizeof err) == 0, "init: %s", err);
    train_a_little(be, &m, 3); /* weights differ from any fresh initialisation */
    path_of(path, sizeof path, "fm.safetensors");
    ew_kv meta[1] = {{"run", "unit test"}};
    float extra_data[4] = {1, 2, 3, 4};
    ew_param extra = {"optim.m.dummy", 1, {4, 0, 0, 0}, extra_data, NULL};
    CHECK(ew_fm_save(&m, path, &extra, 1, meta, 1, err, sizeof err) == 0, "save: %s", err);
    if (ew_fm_load(&l, path, err, sizeof err)) {
        CHECK(0, "load: %s", err);
        return;
    }
    CHECK(params_equal(&m, &l), "every tensor restored");
    CHECK(!memcmp(&m.stats, &l.stats, sizeof m.stats), "statistics restored");
    CHECK(l.cfg.variant == c.variant && l.cfg.stochastic == 1 && l.cfg.nf == c.nf && l.cfg.hidden == c.hidden &&
              l.cfg.n_cond == c.n_cond && l.cfg.n_pred == c.n_pred && l.cfg.height == c.height && l.cfg.width == c.width &&
              l.cfg.nz == c.nz && l.cfg.dropout == c.dropout && l.cfg.z_dropout == c.z_dropout && l.cfg.beta == c.beta &&
              l.cfg.dt == c.dt && l.cfg.seed == 77,
          "configuration restored");
    preds a, b, d;
    int n = predict(be, &m, 3, 5, &a);
    predict(be, &l, 3, 5, &b);
    predict(be, &l, 3, 6, &d);
    CHECK(!memcmp(a.img, b.img, sizeof(float) * n) && !memcmp(a.st, b.st, sizeof(float) * 3 * 2 * 4 * 5),
          "loaded model: bit-identical predictions");
    CHECK(memcmp(a.img, d.img, sizeof(float) * n) != 0, "another seed: other latent samples");
    size_t per = (size_t)n / 3;
    CHECK(memcmp(a.img, a.img + per, sizeof(float) * per) != 0, "the K samples differ from each other");
    CHECK(!memcmp(a.st, a.st + 2 * 4 * 5, sizeof(float) * 2 * 4 * 5), "FM-KM: states equal across samples");
    preds_free(&a);
    preds_free(&b);
    preds_free(&d);
    ew_fm_free(&l);

    /* config and stats JSON round trip */
    char *cj = ew_fm_config_json(&c), *sj = ew_fm_stats_json(&st);
    ew_fm_config c2;
    ew_fm_stats s2;
    CHECK(cj && ew_fm_config_from_json(cj, &c2, err, sizeof err) == 0 && c2.seed == c.seed && c2.beta == c.beta &&
              c2.variant == c.variant,
          "config JSON round trip: %s", err);
    CHECK(sj && ew_fm_stats_from_json(sj, &s2, err, sizeof err) == 0 && !memcmp(&s2, &st, sizeof st),
          "stats JSON round trip: %s", err);
    free(cj);
    free(sj);

    /* corrupted checkpoints */
    int np;
    ew_param *p = ew_fm_params(&m, &np);
    ew_param *q = malloc(sizeof(ew_param) * np);
    char *cjs = ew_fm_config_json(&m.cfg), *sjs = ew_fm_stats_json(&m.stats);
    ew_kv good[2] = {{EW_FM_META_CONFIG, cjs}, {EW_FM_META_STATS, sjs}};
    char bad[300];
    path_of(bad, sizeof bad, "bad.safetensors");
    /* wrong shape */
    memcpy(q, p, sizeof(ew_param) * np);
    float big[8] = {0};
    int k = np - 1;
    while (k >= 0 && strcmp(q[k].name, "dec.deconv3.bias")) k--;
    CHECK(k >= 0, "dec.deconv3.bias listed");
    q[k].shape[0] = 4;
    q[k].data = big;
    ew_checkpoint_write(bad, q, np, NULL, 0, good, 2, err, sizeof err);
    CHECK(ew_fm_load(&l, bad, err, sizeof err) == -1 && strstr(err, "dec.deconv3.bias") && strstr(err, "shape") &&
              strstr(err, bad) && one_line(err),
          "wrong shape rejected: %s", err);
    /* missing tensor */
    memcpy(q, p, sizeof(ew_param) * np);
    ew_checkpoint_write(bad, q, np - 1, NULL, 0, good, 2, err, sizeof err);
    CHECK(ew_fm_load(&l, bad, err, sizeof err) == -1 && strstr(err, p[np - 1].name) && strstr(err, bad) && one_line(err),
          "missing tensor rejected: %s", err);
    /* unexpected tensor */
    ew_param stray = {"stray.weight", 1, {4, 0, 0, 0}, big, NULL};
    ew_checkpoint_write(bad, p, np, &stray, 1, good, 2, err, sizeof err);
    CHECK(ew_fm_load(&l, bad, err, sizeof err) == -1 && strstr(err, "stray.weight") && one_line(err),
          "unexpected tensor rejected: %s", err);
    /* metadata */
    struct {
        const char *config, *stats, *want;
    } metas[] = {
        {NULL, sjs, "config metadata: missing"},
        {"{\"variant\": \"fm\"", sjs, "JSON"},
        {"[1, 2]", sjs, "not a JSON object"},
        {"{\"variant\": \"fm\"}", sjs, "missing key"},
        {cjs, NULL, "stats metadata: missing"},
        {cjs, "{\"state_mean\": [0,0,0,0,0], \"state_std\": [1,1,0,1,1], \"action_mean\": [0,0], \"action_std\": [1,1]}",
         "state_std must be positive"},
        {cjs, "{\"state_mean\": [0,0,0,0], \"state_std\": [1,1,1,1,1], \"action_mean\": [0,0], \"action_std\": [1,1]}",
         "state_mean"},
    };
    for (size_t i = 0; i < sizeof metas / sizeof metas[0]; i++) {
        ew_kv kv[2];
        int nkv = 0;
        if (metas[i].config) kv[nkv++] = (ew_kv){EW_FM_META_CONFIG, metas[i].config};
        if (metas[i].stats) kv[nkv++] = (ew_kv){EW_FM_META_STATS, metas[i].stats};
        ew_checkpoint_write(bad, p, np, NULL, 0, kv, nkv, err, sizeof err);
        int rc = ew_fm_load(&l, bad, err, sizeof err);
        CHECK(rc == -1 && strstr(err, metas[i].want) && strstr(err, bad) && one_line(err), "bad metadata %zu rejected: %s", i,
              err);
        if (!rc) ew_fm_free(&l);
    }
    /* edited config values */
    const char *edits[][3] = {{"\"variant\": \"fm-km\"", "\"variant\": \"km\"", "variant"},
                              {"\"nf\": 2", "\"nf\": -2", "nf"},
                              {"\"nf\": 2", "\"nf\": 3", "shape"},
                              {"\"nz\": 3", "\"nz\": 3, \"extra\": 1", "unknown key"},
                              {"\"height\": 13", "\"height\": 5", "height"},
                              {"\"dt\": 0.100000001", "\"dt\": \"0.1\"", "dt"}};
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        const char *at = strstr(cjs, edits[i][0]);
        CHECK(at != NULL, "config JSON contains %s (%s)", edits[i][0], cjs);
        if (!at) continue;
        char ed[1200];
        snprintf(ed, sizeof ed, "%.*s%s%s", (int)(at - cjs), cjs, edits[i][1], at + strlen(edits[i][0]));
        ew_kv kv[2] = {{EW_FM_META_CONFIG, ed}, {EW_FM_META_STATS, sjs}};
        ew_checkpoint_write(bad, p, np, NULL, 0, kv, 2, err, sizeof err);
        int rc = ew_fm_load(&l, bad, err, sizeof err);
        CHECK(rc == -1 && strstr(err, edits[i][2]) && one_line(err), "edited config %zu rejected: %s", i, err);
        if (!rc) ew_fm_free(&l);
    }
    /* not a checkpoint */
    FILE *f = fopen(bad, "wb");
    fputs("garbage, not safetensors", f);
    fclose(f);
    CHECK(ew_fm_load(&l, bad, err, sizeof err) == -1 && strstr(err, bad) && one_line(err), "garbage rejected: %s", err);
    path_of(bad, sizeof bad, "does-not-exist.safetensors");
    CHECK(ew_fm_load(&l, bad, err, sizeof err) == -1 && strstr(err, bad) && one_line(err), "missing file: %s", err);
    free(cjs);
    free(sjs);
    free(q);
    ew_fm_free(&m);
}

static void from_deterministic(ew_backend *be) {
    char err[512] = "", path[300];
    ew_fm_config c = fm_tiny_config(EW_FM_PLAIN, 0);
    ew_fm_stats st = fm_test_stats();
    ew_fm det, sto;
    CHECK(ew_fm_init(&det, &c, &st, err, sizeof err) == 0, "init: %s", err);
    train_a_little(be, &det, 3);
    path_of(path, sizeof path, "det.safetensors");
    CHECK(ew_fm_save(&det, path, NULL, 0, NULL, 0, err, sizeof err) == 0, "save: %s", err);
    ew_fm_config cs = c;
    cs.stochastic = 1;
    cs.seed = 1234;
    CHECK(ew_fm_init(&sto, &cs, NULL, err, sizeof err) == 0, "init: %s", err);
    CHECK(ew_fm_init_from_deterministic(&sto, path, err, sizeof err) == 0, "from deterministic: %s", err);
    CHECK(!memcmp(&sto.stats, &det.stats, sizeof st), "statistics copied");
    int nd, ns, shared = 0, same = 1;
    ew_param *pd = ew_fm_params(&det, &nd), *ps = ew_fm_params(&sto, &ns);
    for (int i = 0; i < nd; i++)
        for (int j = 0; j < ns; j++)
            if (!strcmp(pd[i].name, ps[j].name)) {
                shared++;
                same &= !memcmp(pd[i].data, ps[j].data, sizeof(float) * ew_param_numel(&pd[i]));
            }
    CHECK(shared == nd && same, "all %d deterministic tensors copied (%d shared)", nd, shared);
    preds a, b;
    int n = predict(be, &det, 2, 9, &a);
    predict(be, &sto, 2, 9, &b);
    CHECK(!memcmp(a.img, b.img, sizeof(float) * n) && !memcmp(a.st, b.st, sizeof(float) * 2 * 2 * 4 * 5),
          "the new stochastic model predicts exactly what the deterministic one does");
    CHECK(!memcmp(a.img, a.img + n / 2, sizeof(float) * (size_t)(n / 2)), "deterministic: K identical copies");
    preds_free(&a);
    preds_free(&b);
    /* the stochastic model's own checkpoint is not a deterministic source; other widths are refused */
    char path2[300];
    path_of(path2, sizeof path2, "sto.safetensors");
    ew_fm_save(&sto, path2, NULL, 0, NULL, 0, err, sizeof err);
    CHECK(ew_fm_init_from_deterministic(&sto, path2, err, sizeof err) == -1 && strstr(err, "not a deterministic") &&
              one_line(err),
          "stochastic source rejected: %s", err);
    ew_fm other;
    ew_fm_config co = cs;
    co.nf = 3;
    ew_fm_init(&other, &co, NULL, err, sizeof err);
    CHECK(ew_fm_init_from_deterministic(&other, path, err, sizeof err) == -1 && strstr(err, "differs") && one_line(err),
          "other widths rejected: %s", err);
    CHECK(ew_fm_init_from_deterministic(&det, path, err, sizeof err) == -1 && strstr(err, "not stochastic"),
          "deterministic target rejected: %s", err);
    ew_fm_free(&other);
    ew_fm_free(&sto);
    ew_fm_free(&det);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/ew_test_fm_io.XXXXXX");
    if (!mkdtemp(dir)) {
        fprintf(stderr, "mkdtemp failed\n");
        return 1;
    }
    ew_backend *be = ew_backend_cpu_create(1);
    round_trip(be);
    from_deterministic(be);
    ew_backend_destroy(be);
    const char *names[] = {"fm.safetensors", "bad.safetensors", "det.safetensors", "sto.safetensors"};
    for (int i = 0; i < 4; i++) {
        char p[300];
        path_of(p, sizeof p, names[i]);
        unlink(p);
    }
    rmdir(dir);
    return check_done();
}
