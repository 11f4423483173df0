/* nnbench.h - training-step benchmark of the deterministic world model (DESIGN.md section 5).
 *
 * Contract: builds the forward model at the anchor's widths with seeded weights and data,
 * and times whole training steps (forward, backward, Adam update) after warm-up; reports
 * fm_train_samples_per_s = batch / median step time, plus per-layer forward and backward
 * medians (backward per layer from the tape's per-tag profile). Architecture, batch 64:
 *   frames [64, 60, 117, 24] (20 frames x 3 channels), states [64, 100] (20 x 5), action [64, 2];
 *   enc1..3: conv 4x4 stride 2 padding (1,1), 60->64->128->256, LeakyReLU 0.2 and channel
 *     dropout 0.1 after each: 117x24 -> 58x12 -> 29x6 -> 14x3 (floor((h + 2 - 4) / 2) + 1);
 *   senc, aenc: MLP 100 (resp. 2) -> 256 -> 256 -> 256*14*3, LeakyReLU 0.2, added to features;
 *   res: bottleneck 1x1 256->64, 3x3 64->64 (pad 1), 1x1 64->256, LeakyReLU between, + skip;
 *   dec1..3: transposed conv 4x4 stride 2 padding (1,1) 256->128->64->3 with output padding
 *     (1,0), (0,0), (1,0): 14x3 -> 29x6 -> 58x12 -> 117x24 ((h-1)*2 - 2 + 4 + op);
 *     image = sigmoid(dec3 + last input frame);
 *   head: MLP 10752 -> 256 -> 256 -> 5 on the features, next state = last state + delta;
 *   loss = mse(image) + mse(state); Adam (models/optim.h) lr 1e-4.
 * bench/torch_fm.py builds the same model in PyTorch. On the CUDA backend the model's parameters
 * are moved into device memory and the report names the device; per-layer times are then
 * correct only because the backend waits after every call (sync_each, its default).
 */
#ifndef EW_NNBENCH_H
#define EW_NNBENCH_H

#include <stdio.h>

typedef struct {
    int threads;   /* >= 1 */
    int batch;     /* 64 */
    int nfeature;  /* 64: widths nf, 2nf, 4nf */
    int ncond;     /* 20 conditioning frames */
    int height, width; /* 117 x 24 */
    int warmup, steps; /* untimed and timed steps */
    int json;      /* 1: one JSON object, else a table */
    int device;    /* 0: CPU backend (threads); 1: CUDA backend (models/backend_cuda.h) */
    int tf32;      /* CUDA only: TF32 tensor cores for GEMMs and convolutions */
    int graph;     /* CUDA only, experimental: after warm-up, capture one whole step into a CUDA
                    * graph and time its replays. The captured step has no dropout and Adam's
                    * bias correction frozen at the capture step (host-side values), and no
                    * per-layer times: a throughput figure, not the same computation */
} ew_bench_nn_config;

/* The full-size configuration above with the given threads. */
ew_bench_nn_config ew_bench_nn_defaults(int threads);
/* Runs the benchmark; writes the report to out. Returns 0, or -1 with a message on stderr. */
int ew_bench_nn_run(const ew_bench_nn_config *cfg, FILE *out);
/* ew_bench_nn_run with ew_bench_nn_defaults(threads) and the json flag. */
int ew_bench_nn(int threads, int json, FILE *out);

#endif
