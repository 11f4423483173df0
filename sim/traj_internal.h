/* traj_internal.h - the shard layout constants and the in-memory set shared by traj.c and
 * traj_fill.c (not part of the public contract; docs/DATASET.md documents the layout). */
#ifndef EW_TRAJ_INTERNAL_H
#define EW_TRAJ_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "sim/traj.h"

#define EW_TRAJ_MAGIC "EWTRAJ\x1a\n"   /* 8 bytes at offset 0 of a shard */
#define EW_TRAJ_EP_MAGIC "EPIS"        /* 4 bytes at the start of an episode block */
#define EW_TRAJ_SHARD_HEAD 32          /* shard header bytes, then u64 offsets per episode */
#define EW_TRAJ_EP_HEAD 44             /* episode header bytes, then the names (padded to 4) */
#define EW_TRAJ_ROAD_BYTES (20 + 32 * EW_MAX_LANES)
#define EW_TRAJ_STEP_BYTES 32          /* ego x y dx dy s a b (f32), u16 n_veh, u16 0 */
#define EW_TRAJ_REC_BASE 12            /* u16 track|rot, u16 v, f32 x, f32 y */
#define EW_TRAJ_REC_ROT 20             /* + f32 hx, f32 hy when the heading is not +x */
#define EW_TRAJ_V_QUANT (1.0 / 500.0)  /* speed unit of the u16 (m/s): 0.002, max 131.07 */
#define EW_TRAJ_MAX_TRACKS 32767
#define EW_TRAJ_MAX_STEPS 1000000
#define EW_TRAJ_MAX_EPISODES 10000000u
#define EW_TRAJ_NAME_MAX 127

typedef struct {
    uint32_t n_steps, n_tracks, n_roads;
    uint64_t seed;
    float ego_len, ego_wid;
    char scenario[EW_TRAJ_NAME_MAX + 1], label[EW_TRAJ_NAME_MAX + 1];
    int split;
    const uint8_t *roads, *tracks, *steps, *recs; /* into the shard buffer */
    uint32_t *rec_off;                            /* n_steps + 1 byte offsets into recs */
} ew_traj_episode;

struct ew_traj_set {
    float dt;
    char mode[16];
    uint64_t split_seed;
    float frac_train, frac_val;
    uint8_t **bufs;       /* whole shard files */
    int n_bufs;
    ew_traj_episode *eps;
    int n_eps;
    int64_t n_steps, n_vsteps;
    size_t mem, file_bytes;
};

uint32_t ew_traj_get_u16(const uint8_t *p);
uint32_t ew_traj_get_u32(const uint8_t *p);
float ew_traj_get_f32(const uint8_t *p);
/* Ego state and action of step t (no checks). */
void ew_traj_step_ego(const ew_traj_episode *E, int t, ew_kin_state *g, ew_action *u);

#endif
