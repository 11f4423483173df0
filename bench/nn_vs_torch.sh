#!/bin/sh
# nn_vs_torch.sh - the world-model training step, egoworld vs PyTorch (CPU), side by side.
#
# Runs `egoworld bench nn --json` and bench/torch_fm.py (same architecture, batch 64, same
# thread count) alternately REPEAT times for 1 and 2 threads, and prints the median samples/s
# of each and their ratio (egoworld / PyTorch). Exits 0 with a "skip" line when PyTorch is not
# installed. Environment: EGOWORLD (binary, default build/egoworld), PYTHON (default
# /usr/bin/python3), REPEAT (default 3), STEPS (timed steps per run, default 7),
# THREADS (default "1 2").
set -eu
cd "$(dirname "$0")/.."
EGOWORLD=${EGOWORLD:-build/egoworld}
PYTHON=${PYTHON:-/usr/bin/python3}
REPEAT=${REPEAT:-3}
STEPS=${STEPS:-7}
THREADS=${THREADS:-"1 2"}

if [ ! -x "$EGOWORLD" ]; then
    echo "nn_vs_torch: $EGOWORLD not found (build first, or set EGOWORLD)" >&2
    exit 1
fi
if ! "$PYTHON" -c 'import torch' 2>/dev/null; then
    echo "skip: PyTorch (python3-torch) is not installed for $PYTHON"
    exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
printf '%-8s %14s %14s %8s\n' threads egoworld_sps torch_sps ratio
for t in $THREADS; do
    : >"$tmp/ew.$t"
    : >"$tmp/pt.$t"
    r=0
    while [ "$r" -lt "$REPEAT" ]; do
        "$EGOWORLD" bench nn --threads "$t" --steps "$STEPS" --json >>"$tmp/ew.$t"
        "$PYTHON" bench/torch_fm.py --threads "$t" --steps "$STEPS" >>"$tmp/pt.$t"
        r=$((r + 1))
    done
    "$PYTHON" - "$t" "$tmp/ew.$t" "$tmp/pt.$t" <<'PY'
import json, statistics, sys
t, ew_path, pt_path = sys.argv[1:4]
ew = [json.loads(l)["fm_train_samples_per_s"] for l in open(ew_path) if l.strip()]
pt = [json.loads(l)["torch_fm_train_samples_per_s"] for l in open(pt_path) if l.strip()]
e, p = statistics.median(ew), statistics.median(pt)
print("%-8s %14.2f %14.2f %8.2f" % (t, e, p, e / p))
print("  runs egoworld: %s" % ", ".join("%.1f" % v for v in ew))
print("  runs torch:    %s" % ", ".join("%.1f" % v for v in pt))
PY
done
