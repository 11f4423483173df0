#!/bin/sh
# cuda_bench.sh - the GPU checks and figures of issue 9 (CUDA backend), for a machine with an
# NVIDIA GPU. Run from the repository root after building with nvcc present:
#   cmake -S . -B build-cuda -DCMAKE_BUILD_TYPE=Release && cmake --build build-cuda -j8
#   bench/cuda_bench.sh [BUILD_DIR (build-cuda)] [OUT_DIR (/tmp/egoworld-cuda-bench)]
# Steps (each writes OUT_DIR/<step>.log or .json; a failing step is reported and the rest run):
#   device       nvidia-smi: the GPU, driver, clocks
#   parity       tests/test_backend_parity (every op forward+backward and a training step vs the
#                CPU backend); then compute-sanitizer memcheck on it when compute-sanitizer exists
#   nn_*         egoworld bench nn: one training step of the deterministic world model at the
#                anchor's widths, batch 64 (models/nnbench.h), median of 7 steps: CPU (all cores),
#                CUDA fp32, CUDA TF32
#   torch_*      bench/torch_fm.py: the same model in PyTorch on the same GPU, fp32 and TF32
#   fm_*         bench/fm_bench.c: the real training step (ew_fm_train_step, 20-step unroll,
#                batch 64) on the CUDA backend: ms per update -> time for N updates
#   data         (DATA=dir) egoworld bench data: CPU rendering of one training batch, to compare
#                with the fm step time (does the CPU rasterizer keep up with the GPU?)
#   plan_*       egoworld bench plan --controller mpc-km on the CPU and with --device cuda
# Environment: STEPS (timed steps, 7), UPDATES (updates for the training-time figure, 100000),
# DATA (a dataset directory from egoworld collect, optional).
set -u
B=${1:-build-cuda}
O=${2:-/tmp/egoworld-cuda-bench}
STEPS=${STEPS:-7}
UPDATES=${UPDATES:-100000}
EW="$B/egoworld"
mkdir -p "$O"
fail=0
run() { # name command...: runs, keeps the output, reports the status
    name=$1
    shift
    printf '== %s: %s\n' "$name" "$*"
    "$@" >"$O/$name.log" 2>&1
    st=$?
    if [ $st -eq 0 ]; then
        tail -n 3 "$O/$name.log"
    else
        [ $st -eq 77 ] && echo "   SKIPPED (status 77)" || echo "   FAILED (status $st), see $O/$name.log"
        tail -n 5 "$O/$name.log"
        fail=1
    fi
}

[ -x "$EW" ] || { echo "cuda_bench: $EW not found (build first)"; exit 1; }
run device nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv
run parity "$B/tests/test_backend_parity"
if command -v compute-sanitizer >/dev/null 2>&1; then
    run sanitizer compute-sanitizer --tool memcheck --leak-check full --error-exitcode 9 "$B/tests/test_backend_parity"
else
    echo "== sanitizer: compute-sanitizer not on PATH (try /usr/local/cuda/bin)"
fi
run nn_cpu "$EW" bench nn --threads "$(nproc)" --steps "$STEPS" --json
run nn_cuda "$EW" bench nn --device cuda --steps "$STEPS" --json
run nn_cuda_tf32 "$EW" bench nn --device cuda --tf32 --steps "$STEPS" --json
run torch_cuda python3 bench/torch_fm.py --device cuda --steps "$STEPS"
run torch_cuda_tf32 python3 bench/torch_fm.py --device cuda --tf32 --steps "$STEPS"

# the full training step (20-step unroll) through ew_fm_train_step
FMB="$B/fm_bench"
if cmake --build "$B" --target fm_bench >"$O/fm_build.log" 2>&1; then
    run fm_cuda "$FMB" --device cuda --batch 64 --steps "$STEPS" --json
    run fm_cuda_tf32 "$FMB" --device cuda --tf32 1 --batch 64 --steps "$STEPS" --json
else
    echo "== fm: building bench/fm_bench.c failed, see $O/fm_build.log"
    fail=1
fi

# can the CPU rasterizer feed the GPU? ms per training batch (64 x 40 frames) vs the fm step
if [ -n "${DATA:-}" ]; then
    run data "$EW" bench data --data "$DATA" --threads "$(nproc)" --repeat 15 --json
else
    echo "== data: set DATA=<dataset dir> to time batch rendering (egoworld bench data)"
fi

run plan_cpu "$EW" bench plan --controller mpc-km --json
run plan_cuda "$EW" bench plan --controller mpc-km --device cuda --json

# summary: samples/s side by side, ratio to PyTorch, time for UPDATES updates
python3 - "$O" "$UPDATES" <<'PY'
import json, os, sys
o, updates = sys.argv[1], int(sys.argv[2])
def last_json(name):
    p = os.path.join(o, name + ".log")
    if not os.path.exists(p):
        return None
    for line in reversed(open(p).read().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None
rows = []
for name, key in [("nn_cpu", "fm_train_samples_per_s"), ("nn_cuda", "fm_train_samples_per_s"),
                  ("nn_cuda_tf32", "fm_train_samples_per_s"), ("torch_cuda", "torch_fm_train_samples_per_s"),
                  ("torch_cuda_tf32", "torch_fm_train_samples_per_s")]:
    j = last_json(name)
    rows.append((name, j.get(key) if j else None, j))
print("\nsingle-step world model, batch 64 (samples/s, median of %s steps):" % os.environ.get("STEPS", "7"))
for name, v, j in rows:
    print("  %-16s %s" % (name, "%.1f" % v if v else "n/a"))
d = dict((n, v) for n, v, _ in rows)
for ours, theirs in [("nn_cuda", "torch_cuda"), ("nn_cuda_tf32", "torch_cuda_tf32")]:
    if d.get(ours) and d.get(theirs):
        print("  %s / %s = %.2fx" % (ours, theirs, d[ours] / d[theirs]))
for name in ("fm_cuda", "fm_cuda_tf32"):
    j = last_json(name)
    if j:
        print("full training step (%s, n_pred %d, batch %d): %.1f ms/update, %.1f samples/s, %d updates: %.2f h"
              % (name, j["n_pred"], j["batch"], j["step_ms"], j["samples_per_s"], updates,
                 j["step_ms"] * updates / 3.6e6))
j = last_json("data")
if j:
    print("batch rendering on the CPU: %s" % json.dumps(j)[:300])
for name in ("plan_cpu", "plan_cuda"):
    j = last_json(name)
    if j:
        print("%s: %s" % (name, json.dumps(j)[:300]))
PY
exit $fail
