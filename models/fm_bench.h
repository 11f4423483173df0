/* fm_bench.h - training throughput of the world model (ew_fm_train_step) on synthetic data.
 *
 * Contract: builds the model of cfg (seeded), a trainer (Adam lr 1e-4, clip 5) on a CPU
 * backend with `threads` threads (device 1: the CUDA backend, TF32 when tf32 = 1), one seeded random batch of `batch` samples and cfg->n_pred
 * steps, runs `warmup` untimed and `steps` timed training steps, and reports the median step
 * time, samples/s = batch / median, the parameter count and the arena high-water mark, as a
 * one-line JSON object (json = 1) or a short text line. Returns 0, or -1 with a message on
 * stderr.
 */
#ifndef EW_FM_BENCH_H
#define EW_FM_BENCH_H

#include <stdio.h>

#include "models/fm.h"

typedef struct {
    int threads, batch, warmup, steps, json;
    int device, tf32; /* 0: CPU; 1: CUDA (models/backend_cuda.h) */
} ew_fm_bench_opts;

int ew_fm_bench_run(const ew_fm_config *cfg, const ew_fm_bench_opts *o, FILE *out);

#endif
