/* test_checkpoint.c - safetensors round trip, malformed files, atomic writes, interop with
 * an independent Python reader/writer (skipped without python3 + numpy). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "models/checkpoint.h"
#include "models/json.h"
#include "tests/check.h"

static char g_dir[256];

static ew_param mk(const char *name, int ndim, const int *shape, float *data) {
    ew_param p;
    memset(&p, 0, sizeof p);
    snprintf(p.name, sizeof p.name, "%s", name);
    p.ndim = ndim;
    for (int i = 0; i < ndim; i++) p.shape[i] = shape[i];
    p.data = data;
    return p;
}

static uint8_t *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(n > 0 ? (size_t)n : 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

static int one_line(const char *s) { return s[0] && !strchr(s, '\n') && !strchr(s, '\r'); }

/* ---- round trip ---------------------------------------------------------------------- */

static void test_roundtrip(void) {
    float w[24], b[3], s[1] = {7.0f};
    for (int i = 0; i < 24; i++) w[i] = (float)i * 0.37f - 4.0f;
    uint32_t specials[3] = {0x7FC01234u /* NaN with payload */, 0x80000000u /* -0 */, 0x00000001u /* denormal */};
    memcpy(b, specials, sizeof b);
    int sw[4] = {2, 3, 2, 2}, sb[1] = {3}, ss[1] = {1};
    ew_param params[2] = {mk("enc.conv1.weight", 4, sw, w), mk("enc.conv1.bias", 1, sb, b)};
    ew_param extra[1] = {mk("norm.mean", 1, ss, s)};
    ew_kv meta[3] = {{"config", "{\"width\": 64, \"layers\": [1, 2]}"}, {"step", "1234"}, {"tab\tkey", "line\nbreak \"q\""}};
    char path[320], err[512];
    snprintf(path, sizeof path, "%s/rt.safetensors", g_dir);
    CHECK(ew_checkpoint_write(path, params, 2, extra, 1, meta, 3, err, sizeof err) == 0, "%s", err);
    size_t len = 0;
    uint8_t *raw = slurp(path, &len);
    CHECK(raw && len >= 8, "file written");
    if (raw) {
        uint64_t n = 0;
        for (int i = 7; i >= 0; i--) n = (n << 8) | raw[i];
        CHECK((8 + n) % 8 == 0, "header padded to 8 bytes (n = %llu)", (unsigned long long)n);
        CHECK(len == 8 + n + (24 + 3 + 1) * 4, "file size %zu", len);
        CHECK(raw[8] == '{', "header starts with '{'");
        /* Writing the same content again gives identical bytes. */
        char path2[340];
        snprintf(path2, sizeof path2, "%s/rt2.safetensors", g_dir);
        CHECK(ew_checkpoint_write(path2, params, 2, extra, 1, meta, 3, err, sizeof err) == 0, "%s", err);
        size_t len2 = 0;
        uint8_t *raw2 = slurp(path2, &len2);
        CHECK(raw2 && len2 == len && memcmp(raw, raw2, len) == 0, "deterministic bytes");
        free(raw2);
    }
    free(raw);

    ew_checkpoint *ck = NULL;
    CHECK(ew_checkpoint_open(path, &ck, err, sizeof err) == 0, "%s", err);
    if (!ck) return;
    CHECK(ew_checkpoint_count(ck) == 3, "count %d", ew_checkpoint_count(ck));
    const ew_ckpt_tensor *t0 = ew_checkpoint_tensor(ck, 0);
    CHECK(t0 && strcmp(t0->name, "enc.conv1.weight") == 0 && strcmp(t0->dtype, "F32") == 0 && t0->ndim == 4 &&
              t0->shape[0] == 2 && t0->shape[3] == 2 && t0->numel == 24 && t0->begin == 0 && t0->end == 96,
          "tensor 0 info");
    CHECK(ew_checkpoint_tensor(ck, 3) == NULL && ew_checkpoint_tensor(ck, -1) == NULL, "out of range");
    CHECK(ew_checkpoint_find(ck, "norm.mean") == 2 && ew_checkpoint_find(ck, "nope") == -1, "find");
    CHECK(ew_checkpoint_meta_count(ck) == 3, "meta count");
    for (int i = 0; i < 3; i++) {
        const char *v = ew_checkpoint_meta(ck, meta[i].key);
        CHECK(v && strcmp(v, meta[i].value) == 0, "meta %s", meta[i].key);
        CHECK(strcmp(ew_checkpoint_meta_key(ck, i), meta[i].key) == 0, "meta order");
    }
    CHECK(ew_checkpoint_meta(ck, "absent") == NULL, "absent meta");
    /* Bit-for-bit. */
    float w2[24], b2[3], s2[1];
    ew_param p2[3] = {mk("enc.conv1.weight", 4, sw, w2), mk("enc.conv1.bias", 1, sb, b2), mk("norm.mean", 1, ss, s2)};
    CHECK(ew_checkpoint_load_params(ck, p2, 3, 0, NULL, err, sizeof err) == 0, "%s", err);
    CHECK(memcmp(w, w2, sizeof w) == 0 && memcmp(b, b2, sizeof b) == 0 && s2[0] == 7.0f, "values bit for bit");
    /* Missing / unexpected / shape mismatch: errors naming the tensors, nothing written. */
    float junk[24];
    for (int i = 0; i < 24; i++) junk[i] = -1.0f;
    ew_param q[2] = {mk("enc.conv1.weight", 4, sw, junk), mk("dec.w", 1, sb, junk)};
    CHECK(ew_checkpoint_load_params(ck, q, 2, 0, NULL, err, sizeof err) != 0 && strstr(err, "1 missing (\"dec.w\")") &&
              strstr(err, "2 unexpected") && strstr(err, "norm.mean") && one_line(err) && strstr(err, path),
          "%s", err);
    CHECK(junk[0] == -1.0f, "failed load wrote nothing");
    CHECK(ew_checkpoint_load_params(ck, q, 2, EW_CKPT_ALLOW_MISSING | EW_CKPT_ALLOW_UNEXPECTED, NULL, err, sizeof err) == 0,
          "%s", err);
    CHECK(memcmp(junk, w, sizeof w) == 0, "partial load");
    CHECK(ew_checkpoint_load_params(ck, q, 1, 0, "enc.conv1.b", err, sizeof err) != 0 && strstr(err, "1 unexpected (\"norm.mean\")"),
          "%s", err);
    int bad_shape[4] = {2, 3, 4, 1};
    ew_param r = mk("enc.conv1.weight", 4, bad_shape, junk);
    CHECK(ew_checkpoint_load_params(ck, &r, 1, EW_CKPT_ALLOW_UNEXPECTED, NULL, err, sizeof err) != 0 &&
              strstr(err, "[2, 3, 2, 2]") && strstr(err, "[2, 3, 4, 1]"),
          "%s", err);
    int flat[1] = {24};
    ew_param r2 = mk("enc.conv1.weight", 1, flat, junk);
    CHECK(ew_checkpoint_load_params(ck, &r2, 1, EW_CKPT_ALLOW_UNEXPECTED, NULL, err, sizeof err) != 0, "reshape refused");
    float small[4];
    CHECK(ew_checkpoint_read_f32(ck, 0, small, 4, err, sizeof err) != 0 && strstr(err, "24 elements"), "%s", err);
    ew_checkpoint_close(ck);

    /* Write-side validation. */
    ew_param dup[2] = {mk("x", 1, ss, s), mk("x", 1, ss, s)};
    CHECK(ew_checkpoint_write(path, dup, 1, dup + 1, 1, NULL, 0, err, sizeof err) != 0 && strstr(err, "duplicate"), "%s", err);
    ew_param md = mk("__metadata__", 1, ss, s);
    CHECK(ew_checkpoint_write(path, &md, 1, NULL, 0, NULL, 0, err, sizeof err) != 0, "__metadata__ name refused");
    ew_param badutf = mk("bad\xff", 1, ss, s);
    CHECK(ew_checkpoint_write(path, &badutf, 1, NULL, 0, NULL, 0, err, sizeof err) != 0 && strstr(err, "UTF-8"), "%s", err);
    ew_kv dupm[2] = {{"a", "1"}, {"a", "2"}};
    CHECK(ew_checkpoint_write(path, params, 1, NULL, 0, dupm, 2, err, sizeof err) != 0 && strstr(err, "duplicate metadata"),
          "%s", err);
    /* The failed writes left the earlier file intact. */
    CHECK(ew_checkpoint_open(path, &ck, err, sizeof err) == 0 && ew_checkpoint_count(ck) == 3, "%s", err);
    ew_checkpoint_close(ck);
}

/* Non-ASCII and escaped names round trip; names decode from \u escapes. */
static void test_names(void) {
    float v[2] = {1.0f, 2.0f};
    int s1[1] = {1};
    ew_param ps[3] = {mk("na\xc3\xafve \"quoted\"\\name", 1, s1, v), mk("ctl\x01\ttab", 1, s1, v + 1),
                      mk("\xe2\x9c\x93.\xf0\x9f\x9a\x97", 1, s1, v)};
    char path[320], err[512];
    snprintf(path, sizeof path, "%s/names.safetensors", g_dir);
    CHECK(ew_checkpoint_write(path, ps, 3, NULL, 0, NULL, 0, err, sizeof err) == 0, "%s", err);
    ew_checkpoint *ck = NULL;
    CHECK(ew_checkpoint_open(path, &ck, err, sizeof err) == 0, "%s", err);
    if (ck) {
        for (int i = 0; i < 3; i++) CHECK(ew_checkpoint_find(ck, ps[i].name) == i, "name %d", i);
        float out[3] = {0};
        ew_param q[3] = {mk(ps[0].name, 1, s1, out), mk(ps[1].name, 1, s1, out + 1), mk(ps[2].name, 1, s1, out + 2)};
        CHECK(ew_checkpoint_load_params(ck, q, 3, 0, NULL, err, sizeof err) == 0 && out[1] == 2.0f, "%s", err);
    }
    ew_checkpoint_close(ck);
}

/* ---- malformed input --------------------------------------------------------------------- */

/* Builds a file from a header text (padding not applied) and `data_len` bytes of data. */
static uint8_t *build(const char *json, size_t data_len, size_t *len) {
    size_t n = strlen(json);
    *len = 8 + n + data_len;
    uint8_t *b = malloc(*len);
    if (!b) return NULL;
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)n >> (8 * i));
    memcpy(b + 8, json, n);
    for (size_t i = 0; i < data_len; i++) b[8 + n + i] = (uint8_t)(i * 37);
    return b;
}

static int parses(const char *json, size_t data_len, char *err, size_t errsz) {
    size_t len;
    uint8_t *b = build(json, data_len, &len);
    if (!b) return -2;
    int rc = ew_checkpoint_parse_buffer(b, len, "case.safetensors", NULL, err, errsz);
    free(b);
    return rc;
}

#define REJECT(json, data_len, what)                                                                       \
    do {                                                                                                   \
        char e_[512];                                                                                      \
        int rc_ = parses(json, data_len, e_, sizeof e_);                                                   \
        CHECK(rc_ == -1 && one_line(e_) && strstr(e_, "case.safetensors: ") == e_ && strstr(e_, what),    \
              "json %s: rc %d, error \"%s\", wanted \"%s\"", json, rc_, e_, what);                       \
    } while (0)

#define ACCEPT(json, data_len)                                                  \
    do {                                                                        \
        char e_[512];                                                           \
        CHECK(parses(json, data_len, e_, sizeof e_) == 0, "json %s: %s", json, e_); \
    } while (0)

static void test_malformed(void) {
    /* Sanity: the shapes of valid files used below. */
    ACCEPT("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8);
    ACCEPT("{\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}", 4);
    ACCEPT("{\"__metadata__\":{},\"z\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[0,0]}}  ", 0);
    ACCEPT("{}", 0);
    ACCEPT("{\"b\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[4,6]},\"a\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 6);
    ACCEPT("{\"\\u00e9\\ud83d\\ude97\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4);

    /* Offsets. */
    REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "leave a gap");
    REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
           8, "overlap");
    REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, "data section has 4");
    REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8, "data section has 8");
    REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", 8, "end before");
    REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, "data_offsets");
    REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,-4]}}", 4, "non-negative");
    REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[18446744073709551615,3]}}", 4, "end before");
    REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,18446744073709551616]}}", 4, "non-negative integers");
    REJECT("{}", 4, "no tensors but 4 bytes");
    /* Shapes and dtypes. */
    REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "does not match");
    REJECT("{\"a\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "does not match");
    REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, "shape entry 0");
    REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}", 8, "shape entry 0");
    REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,0]}}", 0, "overflow");
    REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],\"data_offsets\":[0,0]}}", 0, "does not match");
    REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, "9 dimensions");
    REJECT("{\"a\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "unknown dtype \"F33\"");
    REJECT("{\"a\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "unknown dtype");
    REJECT("{\"a\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "dtype is not a string");
    REJECT("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "missing \"dtype\"");
    REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4, "unknown field \"x\"");
    REJECT("{\"a\":[1,2]}", 0, "not an object");
    REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":{},\"data_offsets\":[0,4]}}", 4, "shape is not an array");
    /* Duplicates. */
    REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
           8, "duplicate key \"a\"");
    REJECT("{\"\\u0061\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
           8, "duplicate key");
    REJECT("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "duplicate key \"dtype\"");
    REJECT("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, "duplicate key \"k\"");
    /* Metadata. */
    REJECT("{\"__metadata__\":{\"k\":1}}", 0, "is not a string");
    REJECT("{\"__metadata__\":[]}", 0, "__metadata__ is not an object");
    REJECT("{\"__metadata__\":{\"k\":\"a\\u0000b\"}}", 0, "NUL");
    /* Names. */
    REJECT("{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "NUL");
    REJECT("{\"\\ud800\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "surrogate");
    REJECT("{\"\xc3\x28\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "UTF-8");
    REJECT("{\"\xed\xa0\x80\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "UTF-8");
    REJECT("{\"\xc0\xaf\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "UTF-8");
    REJECT("{\"a\tb\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "control character");
    REJECT("{\"a\\qb\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "bad escape");
    /* JSON syntax. */
    REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},}", 4, "expected a string key");
    REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,],\"data_offsets\":[0,4]}}", 4, "unexpected character ']'");
    REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", 4, "JSON");
    REJECT("{a:1}", 0, "expected a string key");
    REJECT("{\"a\" 1}", 0, "expected ':'");
    REJECT("{\"a\":NaN}", 0, "unexpected character 'N'");
    REJECT("{\"a\":01}", 0, "leading zero");
    REJECT("{\"a\":1.}", 0, "bad number");
    REJECT("{\"a\":tru}", 0, "bad literal");
    REJECT("{} {}", 0, "trailing characters");
    REJECT("{}\x01", 0, "trailing characters");
    {
        /* A NUL byte in the header (padding must be spaces). */
        uint8_t nulb[8 + 8] = {8, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' ', ' ', ' ', ' ', 0};
        char e[512];
        CHECK(ew_checkpoint_parse_buffer(nulb, sizeof nulb, "nul", NULL, e, sizeof e) == -1 && strstr(e, "trailing"), "%s", e);
        nulb[15] = ' ';
        CHECK(ew_checkpoint_parse_buffer(nulb, sizeof nulb, "nul", NULL, e, sizeof e) == 0, "%s", e);
    }
    REJECT("{/*c*/}", 0, "JSON");
    REJECT("[]", 0, "does not start with '{'");
    REJECT(" {}", 0, "does not start with '{'");
    REJECT("\"x\"", 0, "does not start with '{'");
    REJECT("", 0, "does not start with '{'");
    REJECT("{\"a\":\"unterminated}", 0, "unterminated string");
    REJECT("{\"a\":\"\\u12\"}", 0, "bad \\u escape");
    {
        /* Deep nesting is bounded, never recursion: 200k brackets. */
        size_t depth = 200000;
        char *deep = malloc(depth * 2 + 16);
        if (deep) {
            strcpy(deep, "{\"a\":");
            size_t k = 5;
            for (size_t i = 0; i < depth; i++) deep[k++] = '[';
            for (size_t i = 0; i < depth; i++) deep[k++] = ']';
            deep[k++] = '}';
            deep[k] = '\0';
            REJECT(deep, 0, "nested deeper than 64");
            free(deep);
        }
    }
    {
        char e[512];
        char num[400];
        memset(num, '1', sizeof num);
        memcpy(num, "{\"a\":", 5);
        num[398] = '}';
        num[399] = '\0';
        CHECK(parses(num, 0, e, sizeof e) == -1 && strstr(e, "longer than"), "%s", e);
    }

    /* Header length field. */
    {
        uint8_t b[64];
        char e[512];
        memset(b, ' ', sizeof b);
        uint64_t cases[3] = {UINT64_MAX, 100000001ULL, 57};
        const char *want[3] = {"exceeds the limit", "exceeds the limit", "runs past the end"};
        for (int c = 0; c < 3; c++) {
            for (int i = 0; i < 8; i++) b[i] = (uint8_t)(cases[c] >> (8 * i));
            b[8] = '{';
            int rc = ew_checkpoint_parse_buffer(b, sizeof b, "hdr.safetensors", NULL, e, sizeof e);
            CHECK(rc == -1 && strstr(e, want[c]) && one_line(e), "header length %llu: %s", (unsigned long long)cases[c], e);
        }
        CHECK(ew_checkpoint_parse_buffer(b, 7, "hdr.safetensors", NULL, e, sizeof e) == -1 && strstr(e, "too short"), "%s", e);
        CHECK(ew_checkpoint_parse_buffer(NULL, 0, NULL, NULL, e, sizeof e) == -1 && strstr(e, "<buffer>"), "%s", e);
    }
}

/* Every truncation of a small valid file is rejected, in an exactly sized buffer (ASan sees
 * any read past the end). Flipping the length field's bytes never crashes either. */
static void test_truncation(void) {
    float v[6] = {1, 2, 3, 4, 5, 6};
    int s23[2] = {2, 3}, s1[1] = {1};
    ew_param ps[2] = {mk("w", 2, s23, v), mk("b", 1, s1, v + 5)};
    ew_kv meta[1] = {{"config", "{\"k\": [1, 2]}"}};
    char path[320], err[512];
    snprintf(path, sizeof path, "%s/small.safetensors", g_dir);
    CHECK(ew_checkpoint_write(path, ps, 2, NULL, 0, meta, 1, err, sizeof err) == 0, "%s", err);
    size_t len = 0;
    uint8_t *full = slurp(path, &len);
    if (!full) {
        CHECK(0, "cannot read back %s", path);
        return;
    }
    CHECK(ew_checkpoint_parse_buffer(full, len, "small", NULL, err, sizeof err) == 0, "%s", err);
    int rejected = 0, clean = 0;
    for (size_t cut = 0; cut < len; cut++) {
        uint8_t *b = malloc(cut ? cut : 1);
        if (!b) break;
        memcpy(b, full, cut);
        err[0] = '\0';
        int rc = ew_checkpoint_parse_buffer(cut ? b : NULL, cut, "small", NULL, err, sizeof err);
        rejected += rc == -1;
        clean += rc == -1 && one_line(err) && strncmp(err, "small: ", 7) == 0;
        free(b);
    }
    CHECK(rejected == (int)len && clean == (int)len, "%d of %zu truncations rejected, %d with a clean message", rejected,
          len, clean);
    /* Single-byte corruptions anywhere: must never crash; the result is either a clean
     * error or a file that still validates. */
    int ok = 1;
    uint8_t *b = malloc(len);
    for (size_t i = 0; b && i < len; i++) {
        for (int flip = 0; flip < 3; flip++) {
            memcpy(b, full, len);
            b[i] ^= (uint8_t)(flip == 0 ? 0x01 : flip == 1 ? 0x80 : 0xFF);
            err[0] = '\0';
            int rc = ew_checkpoint_parse_buffer(b, len, "small", NULL, err, sizeof err);
            if (rc != 0 && !(rc == -1 && one_line(err))) ok = 0;
        }
    }
    CHECK(ok, "byte flips gave an unclean error");
    free(b);
    free(full);
}

/* Conversions from F16/BF16/F64 and the refusal of integer dtypes. */
static void test_dtypes(void) {
    /* F16: 1.0 (0x3C00), -2.5 (0xC100), smallest subnormal (0x0001), inf (0x7C00);
     * BF16: 1.5 (0x3FC0); F64: 0.1. */
    const char *json = "{\"h\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[0,8]},"
                       "\"bf\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[8,10]},"
                       "\"d\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[10,18]},"
                       "\"i\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[18,22]}}";
    size_t len;
    uint8_t *b = build(json, 22, &len);
    if (!b) return;
    uint8_t *d = b + 8 + strlen(json);
    const uint8_t h[8] = {0x00, 0x3C, 0x00, 0xC1, 0x01, 0x00, 0x00, 0x7C};
    memcpy(d, h, 8);
    d[8] = 0xC0;
    d[9] = 0x3F;
    double tenth = 0.1;
    uint64_t bits;
    memcpy(&bits, &tenth, 8);
    for (int i = 0; i < 8; i++) d[10 + i] = (uint8_t)(bits >> (8 * i));
    ew_checkpoint *ck = NULL;
    char err[512];
    CHECK(ew_checkpoint_parse_buffer(b, len, "dt", &ck, err, sizeof err) == 0, "%s", err);
    if (ck) {
        float hv[4], bv[1], dv[1], iv[1];
        CHECK(ew_checkpoint_read_f32(ck, 0, hv, 4, err, sizeof err) == 0, "%s", err);
        CHECK(hv[0] == 1.0f && hv[1] == -2.5f && hv[2] == ldexpf(1.0f, -24) && isinf(hv[3]) && hv[3] > 0, "F16 %g %g %g %g",
              (double)hv[0], (double)hv[1], (double)hv[2], (double)hv[3]);
        CHECK(ew_checkpoint_read_f32(ck, 1, bv, 1, err, sizeof err) == 0 && bv[0] == 1.5f, "BF16");
        CHECK(ew_checkpoint_read_f32(ck, 2, dv, 1, err, sizeof err) == 0 && dv[0] == 0.1f, "F64");
        CHECK(ew_checkpoint_read_f32(ck, 3, iv, 1, err, sizeof err) != 0 && strstr(err, "I32"), "%s", err);
        int s4[1] = {4};
        ew_param p = mk("h", 1, s4, hv);
        CHECK(ew_checkpoint_load_params(ck, &p, 1, EW_CKPT_ALLOW_UNEXPECTED, NULL, err, sizeof err) == 0, "%s", err);
        ew_checkpoint_close(ck);
    }
    free(b);
}

/* ---- atomic writes ---------------------------------------------------------------------- */

static int file_exists(const char *p) { return access(p, F_OK) == 0; }

static void test_atomic(void) {
    float v[4] = {1, 2, 3, 4};
    int s4[1] = {4};
    ew_param p = mk("v", 1, s4, v);
    char path[320], tmp[360], err[512];
    snprintf(path, sizeof path, "%s/atomic.safetensors", g_dir);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    CHECK(ew_checkpoint_write(path, &p, 1, NULL, 0, NULL, 0, err, sizeof err) == 0, "%s", err);

    /* Target folder that does not exist: a clean error naming the file. */
    char nodir[360];
    snprintf(nodir, sizeof nodir, "%s/no/such/dir/x.safetensors", g_dir);
    CHECK(ew_checkpoint_write(nodir, &p, 1, NULL, 0, NULL, 0, err, sizeof err) == -1 && strstr(err, nodir) && one_line(err),
          "%s", err);

    /* Disk full, simulated with a file-size limit (works as root too): the new, larger file
     * cannot be written; the old one stays and still loads; no temporary file is left. */
    static float big[65536];
    for (int i = 0; i < 65536; i++) big[i] = (float)i;
    int sb[1] = {65536};
    ew_param pb = mk("v", 1, sb, big);
    struct rlimit old;
    int have = getrlimit(RLIMIT_FSIZE, &old) == 0;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = old;
    lim.rlim_cur = 4096;
    if (have && setrlimit(RLIMIT_FSIZE, &lim) == 0) {
        int rc = ew_checkpoint_write(path, &pb, 1, NULL, 0, NULL, 0, err, sizeof err);
        setrlimit(RLIMIT_FSIZE, &old);
        CHECK(rc == -1 && strstr(err, path) && strstr(err, "write failed") && one_line(err), "%s", err);
        CHECK(!file_exists(tmp), "temporary file left behind");
    } else {
        CHECK(0, "cannot set RLIMIT_FSIZE");
    }
    signal(SIGXFSZ, prev);
    ew_checkpoint *ck = NULL;
    CHECK(ew_checkpoint_open(path, &ck, err, sizeof err) == 0, "old file lost: %s", err);
    if (ck) {
        float out[4];
        ew_param q = mk("v", 1, s4, out);
        CHECK(ew_checkpoint_load_params(ck, &q, 1, 0, NULL, err, sizeof err) == 0 && memcmp(out, v, sizeof v) == 0,
              "old values: %s", err);
        ew_checkpoint_close(ck);
    }

    /* Read-only folder: only meaningful when not root (root writes anyway). */
    if (geteuid() != 0) {
        char rodir[320], ropath[360];
        snprintf(rodir, sizeof rodir, "%s/ro", g_dir);
        snprintf(ropath, sizeof ropath, "%s/f.safetensors", rodir);
        mkdir(rodir, 0755);
        CHECK(ew_checkpoint_write(ropath, &p, 1, NULL, 0, NULL, 0, err, sizeof err) == 0, "%s", err);
        chmod(rodir, 0555);
        CHECK(ew_checkpoint_write(ropath, &pb, 1, NULL, 0, NULL, 0, err, sizeof err) == -1 && strstr(err, ropath), "%s", err);
        chmod(rodir, 0755);
        CHECK(ew_checkpoint_open(ropath, &ck, err, sizeof err) == 0 && ew_checkpoint_tensor(ck, 0)->numel == 4, "%s", err);
        ew_checkpoint_close(ck);
        unlink(ropath);
        rmdir(rodir);
    }
    /* Opening errors. */
    CHECK(ew_checkpoint_open(nodir, &ck, err, sizeof err) == -1 && strstr(err, nodir), "%s", err);
    CHECK(ew_checkpoint_open(g_dir, &ck, err, sizeof err) == -1 && strstr(err, "not a regular file"), "%s", err);
    unlink(path);
}

/* ---- JSON module --------------------------------------------------------------------------- */

static void test_json(void) {
    ew_json_doc d;
    char err[256];
    const char *t = " {\"a\": [1, -2.5e3, 18446744073709551615, true, false, null], \"s\": \"x\\n\\u00e9\\ud83d\\ude97\"} ";
    CHECK(ew_json_parse(t, strlen(t), NULL, &d, err, sizeof err) == 0, "%s", err);
    const ew_json_node *r = ew_json_root(&d), *a = ew_json_get(&d, r, "a"), *s = ew_json_get(&d, r, "s");
    CHECK(r && r->type == EW_JSON_OBJECT && r->count == 2, "root");
    CHECK(a && a->type == EW_JSON_ARRAY && a->count == 6, "array");
    const ew_json_node *e = ew_json_first(&d, a);
    CHECK(e && e->is_u64 && e->u64 == 1, "1");
    e = ew_json_next(&d, e);
    CHECK(e && !e->is_u64 && e->num == -2500.0, "-2.5e3");
    e = ew_json_next(&d, e);
    CHECK(e && e->is_u64 && e->u64 == UINT64_MAX, "u64 max");
    e = ew_json_next(&d, e);
    CHECK(e && e->type == EW_JSON_TRUE, "true");
    CHECK(s && s->str_len == 8 && memcmp(s->str, "x\n\xc3\xa9\xf0\x9f\x9a\x97", 8) == 0, "decoded string");
    CHECK(ew_json_get(&d, r, "missing") == NULL, "missing key");
    ew_json_free(&d);
    /* Escape and parse back. */
    const char raw[] = "q\"b\\s\x01\x1f\t\xc3\xa9";
    char buf[64];
    size_t need = ew_json_escape(raw, sizeof raw - 1, NULL, 0);
    CHECK(ew_json_escape(raw, sizeof raw - 1, buf, sizeof buf) == need && strlen(buf) == need, "escape length");
    CHECK(ew_json_parse(buf, need, NULL, &d, err, sizeof err) == 0 && d.nodes[0].str_len == sizeof raw - 1 &&
              memcmp(d.nodes[0].str, raw, sizeof raw - 1) == 0,
          "escape round trip: %s", buf);
    ew_json_free(&d);
    char small[4];
    CHECK(ew_json_escape("abcdef", 6, small, sizeof small) == 8 && strcmp(small, "\"ab") == 0, "truncated escape");
    ew_json_limits lim = {2, 3};
    CHECK(ew_json_parse("[[1]]", 5, &lim, &d, err, sizeof err) == 0, "%s", err);
    ew_json_free(&d);
    CHECK(ew_json_parse("[[[1]]]", 7, &lim, &d, err, sizeof err) == -1 && strstr(err, "deeper than 2"), "%s", err);
    CHECK(ew_json_parse("[1,2,3]", 7, &lim, &d, err, sizeof err) == -1 && strstr(err, "more than 3"), "%s", err);
    CHECK(d.nodes == NULL && d.count == 0, "doc empty after an error");
    CHECK(ew_json_parse("", 0, NULL, &d, err, sizeof err) == -1, "empty text");
    CHECK(ew_json_utf8_valid("\xf4\x8f\xbf\xbf", 4) && !ew_json_utf8_valid("\xf4\x90\x80\x80", 4), "UTF-8 range");
}

/* ---- interop with an independent reader/writer ------------------------------------------- */

static void write_interop_file(const char *path) {
    /* Keep in sync with EXPECTED in tests/safetensors_interop.py. */
    float w[12], b[3] = {1.5f, -2.25f, 1e-30f}, q[1] = {42.0f}, z[1] = {0};
    for (int i = 0; i < 12; i++) w[i] = (float)i * 0.5f - 3.0f;
    int sw[4] = {2, 3, 1, 2}, sb[1] = {3}, s1[1] = {1}, sz[2] = {2, 0};
    ew_param ps[4] = {mk("enc.conv1.weight", 4, sw, w), mk("bias", 1, sb, b), mk("na\xc3\xafve \"quoted\"\\name", 1, s1, q),
                      mk("empty", 2, sz, z)};
    ew_kv meta[3] = {{"config", "{\"width\": 64, \"name\": \"wm\"}"}, {"step", "1234"}, {"note", "\xc3\xbcn\xc3\xaf" "code \xe2\x9c\x93"}};
    char err[512];
    CHECK(ew_checkpoint_write(path, ps, 4, NULL, 0, meta, 3, err, sizeof err) == 0, "%s", err);
}

static void check_reference_file(const char *path, const char *who) {
    ew_checkpoint *ck = NULL;
    char err[512];
    CHECK(ew_checkpoint_open(path, &ck, err, sizeof err) == 0, "%s: %s", who, err);
    if (!ck) return;
    CHECK(ew_checkpoint_count(ck) == 6, "%s: %d tensors", who, ew_checkpoint_count(ck));
    const char *fmt = ew_checkpoint_meta(ck, "format"), *k = ew_checkpoint_meta(ck, "k\xc3\xa9y");
    CHECK(fmt && strcmp(fmt, "pt") == 0 && k && strcmp(k, "v") == 0, "%s: metadata", who);
    float a[4], h[3], d[2], bf[2], u[1];
    int s22[2] = {2, 2}, s3[1] = {3}, s2[1] = {2}, s1[1] = {1};
    ew_param ps[5] = {mk("a", 2, s22, a), mk("h", 1, s3, h), mk("d", 1, s2, d), mk("bf", 1, s2, bf), mk("\xc3\xbcmlaut.w", 1, s1, u)};
    CHECK(ew_checkpoint_load_params(ck, ps, 5, 0, "i", err, sizeof err) == 0, "%s: %s", who, err);
    CHECK(a[0] == 1 && a[3] == 4 && h[0] == 0.5f && h[1] == -2.0f && h[2] == 65504.0f && d[0] == (float)(1.0 / 3.0) &&
              d[1] == -1e10f && bf[0] == 1.5f && bf[1] == -3.0f && u[0] == 0.125f,
          "%s: values", who);
    int i = ew_checkpoint_find(ck, "i");
    CHECK(i >= 0 && strcmp(ew_checkpoint_tensor(ck, i)->dtype, "I64") == 0, "%s: I64 listed", who);
    ew_checkpoint_close(ck);
}

static void test_interop(void) {
    const char *script = "tests/safetensors_interop.py";
    char alt[512];
    if (access(script, R_OK) != 0) { /* not run from the source root: next to this file */
        snprintf(alt, sizeof alt, "%s", __FILE__);
        char *sl = strrchr(alt, '/');
        if (sl) snprintf(sl + 1, sizeof alt - (size_t)(sl + 1 - alt), "safetensors_interop.py");
        script = alt;
    }
    const char *pys[2] = {"python3", "/usr/bin/python3"}, *py = NULL;
    char cmd[1400];
    for (int i = 0; i < 2 && !py; i++) {
        snprintf(cmd, sizeof cmd, "%s -c 'import numpy, json' >/dev/null 2>&1", pys[i]);
        if (system(cmd) == 0) py = pys[i];
    }
    if (!py || access(script, R_OK) != 0) {
        check_skip("python3 with numpy not available: interop with an independent reader not checked");
        return;
    }
    char mine[320], theirs[320];
    snprintf(mine, sizeof mine, "%s/egoworld_written.safetensors", g_dir);
    snprintf(theirs, sizeof theirs, "%s/python_written.safetensors", g_dir);
    write_interop_file(mine);
    snprintf(cmd, sizeof cmd, "%s '%s' check '%s'", py, script, mine);
    CHECK(system(cmd) == 0, "python (numpy) rejected egoworld's file: %s", cmd);
    snprintf(cmd, sizeof cmd, "%s '%s' write '%s'", py, script, theirs);
    CHECK(system(cmd) == 0, "python (numpy) writer failed: %s", cmd);
    check_reference_file(theirs, "numpy writer");

    if (system("/usr/bin/python3 -c 'import torch, safetensors' >/dev/null 2>&1") == 0) {
        snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' torch-check '%s'", script, mine);
        CHECK(system(cmd) == 0, "safetensors library rejected egoworld's file");
        unlink(theirs);
        snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' torch-write '%s'", script, theirs);
        CHECK(system(cmd) == 0, "safetensors library writer failed");
        check_reference_file(theirs, "safetensors library");
    } else {
        printf("note: torch + safetensors not installed; checked against the numpy reader only\n");
    }
    unlink(mine);
    unlink(theirs);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/ew_test_ckpt_%ld", (long)getpid());
    if (mkdir(g_dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "cannot create %s\n", g_dir);
        return 1;
    }
    test_json();
    test_roundtrip();
    test_names();
    test_malformed();
    test_truncation();
    test_dtypes();
    test_atomic();
    test_interop();
    const char *left[] = {"rt.safetensors", "rt2.safetensors", "names.safetensors", "small.safetensors"};
    for (size_t i = 0; i < sizeof left / sizeof left[0]; i++) {
        char p[400];
        snprintf(p, sizeof p, "%s/%s", g_dir, left[i]);
        unlink(p);
    }
    rmdir(g_dir);
    return check_done();
}
