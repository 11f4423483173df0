#!/bin/sh
# tests/mpi_test.sh MODE EGOWORLD TEST_DIST WORKDIR BUILT_WITH_MPI SANITIZED
# The 2-rank tests of tests/mpi.cmake (models/dist.h, docs/BENCHMARKS.md "MPI"). Each mode
# prints what it compared and ends with "MODE: OK"; exit 77 (CTest skip) with a printed
# reason when the build has no MPI or mpirun is missing.
set -u
mode=$1 ew=$2 td=$3 wd=$4 built=$5 san=$6
if [ "$built" != "ON" ] && [ "$built" != "1" ]; then
  echo "SKIP: built without MPI (EGOWORLD_MPI off)"; exit 77
fi
if ! command -v mpirun >/dev/null 2>&1; then
  echo "SKIP: mpirun not found (install openmpi-bin)"; exit 77
fi
# Open MPI refuses root unless told; oversubscribe: 2 ranks on any core count
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMP_WAIT_POLICY=passive
run="mpirun --oversubscribe -n 2"
[ "$(id -u)" = 0 ] && run="$run --allow-run-as-root"
if [ "$san" = "ON" ] || [ "$san" = "1" ]; then
  # Open MPI's own start-up allocations are never freed (LeakSanitizer would report them in
  # every rank); memory errors and UB are still checked
  echo "note: sanitized build: leak detection off under mpirun (Open MPI's allocations)"
  export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1"
fi
src=$(pwd)
rm -rf "$wd" && mkdir -p "$wd" && cd "$wd" || exit 1
fail() { echo "FAIL: $*"; exit 1; }
# "MAX FRAC": largest parameter difference between two checkpoints and the fraction of
# elements differing by more than 1e-5
maxdiff() { "$td" maxdiff "$@" || fail "maxdiff $*"; }
# equivalent runs vs control: at most 1 % of the elements off by > 1e-5 (Adam's sign steps
# on gradients that are 0 in exact arithmetic), the control at least 50 %
equiv() { # name A B C
  ab=$(maxdiff "$2" "$3") ac=$(maxdiff "$2" "$4")
  echo "$1: 1 rank x 2B vs 2 ranks x B: max |diff| ${ab% *}, fraction > 1e-5 ${ab#* }; control 1 rank x B: ${ac% *}, ${ac#* }"
  le "${ab#* }" 0.01 || fail "$1: 2 ranks x batch B differ from 1 rank x batch 2B"
  le 0.5 "${ac#* }" || fail "$1: the control is as close as the 2-rank run: the comparison cannot fail"
}
# a <= b as floats
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 <= b + 0) }'; }

case "$mode" in
collectives)
  $run "$td" collectives | tee out.txt
  grep -q "collectives OK: 2 ranks (mpi 1)" out.txt || fail "collectives"
  ;;
train-world)
  "$ew" collect dense-3lane free-2lane --out data --episodes 12 --steps 60 --workers 1 --quiet >/dev/null || fail collect
  t="--data data --nf 4 --hidden 16 --n-cond 4 --n-pred 3 --rows 24 --cols 16 --mpp 1.2 --threads 1 --val-samples 8
     --val-every 2 --ckpt-every 2 --lr 1e-3 --dropout 0"
  # 1 rank x batch 4 (a), 2 ranks x batch 2 (b), 1 rank x batch 2 (c: the control that
  # shows the comparison can fail), 2 ranks x batch 2 for 2 steps resumed by 1 rank x batch 4 (r)
  "$ew" train-world $t --steps 4 --batch 4 --out a.safetensors 2>/dev/null >/dev/null || fail "1 rank"
  $run "$ew" train-world $t --steps 4 --batch 2 --out b.safetensors --json > b.json 2>b.err || { cat b.err; fail "2 ranks"; }
  "$ew" train-world $t --steps 4 --batch 2 --out c.safetensors 2>/dev/null >/dev/null || fail "control"
  $run "$ew" train-world $t --steps 2 --batch 2 --out r.safetensors 2>/dev/null >/dev/null || fail "2 ranks, 2 steps"
  "$ew" train-world $t --steps 4 --batch 4 --out r.safetensors --resume 2>/dev/null >/dev/null || fail "resume on 1 rank"
  ! "$ew" train-world $t --steps 4 --batch 2 --out r.safetensors --resume 2>r.err >/dev/null || fail "resume with another global batch"
  grep -q "global batch" r.err || fail "resume error names the global batch: $(cat r.err)"
  ab=$(maxdiff a.safetensors b.safetensors | cut -d' ' -f1) ac=$(maxdiff a.safetensors c.safetensors | cut -d' ' -f1)
  ar=$(maxdiff a.safetensors r.safetensors | cut -d' ' -f1)
  echo "max |param diff| after 4 steps: 1x4 vs 2x2 $ab, 1x4 vs 2x2->1x4 resumed $ar, 1x4 vs 1x2 (control) $ac"
  le "$ab" 1e-5 && le "$ar" 1e-5 || fail "2 ranks x batch 2 differ from 1 rank x batch 4"
  le 1e-4 "$ac" || fail "the control (batch 2) is as close as the 2-rank run: the comparison cannot fail"
  [ "$(wc -l < b.csv)" -eq 5 ] || fail "b.csv must have a header and 4 rows (rank 0 writes it alone)"
  grep -q '"ranks": 2, "global_batch": 4, "allreduce_floats_per_step": 10611' b.json || fail "json: $(cat b.json)"
  n=$(grep -c '"command"' b.json); [ "$n" -eq 1 ] || fail "the JSON summary must come from rank 0 only ($n)"
  ;;
train-tracker)
  t="--steps 3 --channels 4 --layers 2 --kernel-w 3 --lr 1e-3 --threads 1"
  "$ew" train-tracker $t --batch 4 --out a.safetensors >/dev/null 2>&1 || fail "1 rank"
  $run "$ew" train-tracker $t --batch 2 --out b.safetensors --json >b.json 2>b.err || { cat b.err; fail "2 ranks"; }
  "$ew" train-tracker $t --batch 2 --out c.safetensors >/dev/null 2>&1 || fail "control"
  equiv train-tracker a.safetensors b.safetensors c.safetensors
  grep -q '"ranks": 2, "global_batch": 4' b.json || fail "json: $(cat b.json)"
  ;;
train-predictor)
  t="--truth --frames 60 --steps 4 --hidden 8 --lr 1e-3 --threads 1"
  "$ew" train-predictor $t --batch 8 --out a.safetensors >/dev/null 2>&1 || fail "1 rank"
  $run "$ew" train-predictor $t --batch 4 --out b.safetensors --json >b.json 2>b.err || { cat b.err; fail "2 ranks"; }
  "$ew" train-predictor $t --batch 4 --out c.safetensors >/dev/null 2>&1 || fail "control"
  equiv train-predictor a.safetensors b.safetensors c.safetensors
  grep -q '"ranks": 2, "global_batch": 8' b.json || fail "json: $(cat b.json)"
  ;;
train-policy)
  "$ew" collect dense-3lane --episodes 10 --steps 50 --seed 4 --workers 1 --quiet --out data >/dev/null || fail collect
  t="--method imitation --data data --nf 2 --proj 8 --hidden 8 --n-cond 3 --threads 1 --val-samples 8 --val-every 2
     --ckpt-every 2 --lr 1e-3"
  "$ew" train-policy $t --steps 4 --batch 8 --out a.safetensors >/dev/null 2>&1 || fail "1 rank"
  $run "$ew" train-policy $t --steps 4 --batch 4 --out b.safetensors --json >b.json 2>b.err || { cat b.err; fail "2 ranks"; }
  "$ew" train-policy $t --steps 4 --batch 4 --out c.safetensors >/dev/null 2>&1 || fail "control"
  # 2 ranks x 4 for 2 steps, resumed by 1 rank x 8
  $run "$ew" train-policy $t --steps 2 --batch 4 --out r.safetensors >/dev/null 2>&1 || fail "2 ranks, 2 steps"
  "$ew" train-policy $t --steps 4 --batch 8 --out r.safetensors --resume >/dev/null 2>&1 || fail "resume on 1 rank"
  equiv train-policy a.safetensors b.safetensors c.safetensors
  ar=$(maxdiff a.safetensors r.safetensors)
  echo "train-policy: 2x4 -> 1x8 resumed vs 1x8: max |diff| ${ar% *}, fraction > 1e-5 ${ar#* }"
  le "${ar#* }" 0.01 || fail "resumed with another rank count differs"
  [ "$(wc -l < b.csv)" -eq 5 ] || fail "b.csv must have a header and 4 rows (rank 0 writes it alone)"
  grep -q '"ranks": 2, "global_batch": 8' b.json || fail "json: $(cat b.json)"
  ;;
eval)
  f='s/"wall_s": [^,]*,//; s/"workers": [0-9]*,//; s/"ranks": [0-9]*,//; s/"plan_ms[a-z_]*": [^,]*,//g'
  "$ew" eval --set merge --episodes 5 --workers 1 --json --per-episode --quiet | sed "$f" > one.json || fail "1 rank"
  $run "$ew" eval --set merge --episodes 5 --workers 1 --json --per-episode --quiet | sed "$f" > two.json || fail "2 ranks"
  [ -s one.json ] && cmp one.json two.json || fail "eval with 1 and 2 ranks differ"
  grep -q '"index": 4' two.json || fail "episode 4 missing"
  $run "$ew" eval --set merge --episodes 5 --workers 1 --quiet > table.txt || fail "table"
  grep -q "^2 MPI ranks" table.txt && grep -q "^idm  *5 " table.txt || fail "table: $(cat table.txt)"
  echo "eval: 1 and 2 ranks give the same per-episode results and summary"
  ;;
collect)
  s="dense-3lane onramp-6lane $src/scenarios/cut_in.lua --episodes 7 --steps 60 --seed 4 --workers 1 --quiet"
  "$ew" collect $s --out a >/dev/null || fail "1 rank"
  $run "$ew" collect $s --json --out b > b.json || fail "2 ranks"
  cmp a/traj-0000.ewt b/traj-0000.ewt || fail "shards differ"
  grep -v '"command"' a/manifest.json > ma && grep -v '"command"' b/manifest.json > mb && cmp ma mb || fail "manifests differ"
  grep -q '"episodes": 7, ' b.json && grep -q '"ranks": 2' b.json || fail "json: $(cat b.json)"
  ! $run "$ew" collect dense-3lane --episodes 2 --steps 20 --quiet --out b 2>err.txt >/dev/null || fail "existing dataset"
  grep -q "already holds a dataset" err.txt || fail "existing dataset message"
  echo "collect: 1 and 2 ranks write byte-identical datasets"
  ;;
*)
  fail "unknown mode $mode"
  ;;
esac
echo "$mode: OK"
