/* fuzz_traj.c - the trajectory shard reader (sim/traj.h, ew_traj_parse_shard) on arbitrary
 * bytes. The first input byte is a switch: bit 0 set -> the checksum of every episode block
 * whose place in the file can be found is recomputed before parsing, so mutations reach the
 * field checks behind the CRC (otherwise almost every mutation stops at "checksum mismatch");
 * clear -> the bytes are parsed as they are. A shard that parses is then read the way
 * training reads it: every frame decoded (up to a cap), the sample list and the statistics of
 * every split, and a small batch rendered. No crash, no out-of-bounds access, no leak. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim/traj.h"

#define MAX_FRAMES 4096

static uint32_t crc32_ieee(const uint8_t *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    }
    return c ^ 0xFFFFFFFFu;
}
static uint64_t rd64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
static uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static void wr32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* Shard layout (docs/DATASET.md): 32-byte header (episode count at 16), then u64 offsets;
 * an episode block starts with "EPIS" and its CRC-32 of the bytes after offset 8. */
static void fix_crcs(uint8_t *b, size_t len) {
    if (len < 32) return;
    uint64_t ne = rd32(b + 16);
    if (ne == 0 || 32 + 8 * ne > len) return;
    for (uint64_t k = 0; k < ne; k++) {
        uint64_t off = rd64(b + 32 + 8 * k);
        uint64_t end = k + 1 < ne ? rd64(b + 32 + 8 * (k + 1)) : len;
        if (off > len || end > len || end < off + 8) continue;
        wr32(b + off + 4, crc32_ieee(b + off + 8, (size_t)(end - off - 8)));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int fix = data[0] & 1;
    data++;
    size--;
    uint8_t *b = malloc(size ? size : 1);
    if (!b) return 0;
    memcpy(b, data, size);
    if (fix) fix_crcs(b, size);
    char err[512];
    ew_traj_set *s = ew_traj_parse_shard(b, size, "fuzz.ewt", err, sizeof err);
    free(b); /* the set holds its own copy */
    if (!s) {
        if (!err[0]) abort();
        if (getenv("EW_FUZZ_VERBOSE")) fprintf(stderr, "refused: %.200s\n", err);
        return 0;
    }
    if (getenv("EW_FUZZ_VERBOSE"))
        fprintf(stderr, "parsed: %d episodes, %lld steps\n", ew_traj_n_episodes(s), (long long)ew_traj_n_steps(s));
    int ne = ew_traj_n_episodes(s);
    int64_t total = 0;
    ew_traj_frame *f = malloc(sizeof *f);
    if (!f) abort();
    for (int e = 0; e < ne; e++) {
        int len = ew_traj_episode_len(s, e);
        if (len < 1) abort();
        (void)ew_traj_episode_split(s, e);
        if (!ew_traj_episode_scenario(s, e)) abort();
        (void)ew_traj_episode_seed(s, e);
        for (int t = 0; t < len && total < MAX_FRAMES; t++, total++) {
            if (ew_traj_frame_get(s, e, t, f, err, sizeof err) != 0) continue;
            if (f->n < 0 || f->n > EW_TRAJ_MAX_VEH) abort();
            ew_boxes bx = ew_traj_frame_boxes(f);
            if (bx.n != f->n) abort();
        }
        ew_traj_frame_get(s, e, len, f, err, sizeof err);
        ew_traj_frame_get(s, e, -1, f, err, sizeof err);
    }
    ew_traj_frame_get(s, ne, 0, f, err, sizeof err);
    free(f);
    for (int sp = EW_SPLIT_TRAIN; sp <= EW_SPLIT_ALL; sp++) {
        float sm[5], ss[5], am[2], as[2];
        if (ew_traj_stats(s, (ew_split)sp, sm, ss, am, as, err, sizeof err) == 0)
            for (int i = 0; i < 5; i++)
                if (!(ss[i] > 0.0f)) abort();
    }
    ew_traj_sample *smp = NULL;
    size_t ns = 0;
    if (ew_traj_samples(s, EW_SPLIT_ALL, 2, 2, 1, &smp, &ns, err, sizeof err) == 0 && ns > 0) {
        ew_traj_batch_cfg bc;
        memset(&bc, 0, sizeof bc);
        bc.n_cond = 2;
        bc.n_pred = 2;
        bc.raster.rows = 16;
        bc.raster.cols = 8;
        bc.raster.m_per_px = 2.0f;
        bc.channels = 3;
        bc.threads = 1;
        int B = ns < 2 ? (int)ns : 2;
        size_t img = (size_t)bc.raster.rows * bc.raster.cols;
        float *frames = malloc(sizeof(float) * (size_t)B * 2 * 3 * img);
        float *st = malloc(sizeof(float) * (size_t)B * 2 * 5);
        float *ac = malloc(sizeof(float) * (size_t)B * 2 * 2);
        float *tf = malloc(sizeof(float) * (size_t)B * 2 * 3 * img);
        float *ts = malloc(sizeof(float) * (size_t)B * 2 * 5);
        if (frames && st && ac && tf && ts &&
            ew_traj_fill(s, &bc, smp, B, frames, st, ac, tf, ts, err, sizeof err) == 0) {
            for (size_t i = 0; i < (size_t)B * 2 * 3 * img; i++)
                if (!(frames[i] >= 0.0f && frames[i] <= 1.0f)) abort();
        }
        free(frames);
        free(st);
        free(ac);
        free(tf);
        free(ts);
    }
    free(smp);
    ew_traj_close(s);
    return 0;
}
