#!/bin/sh
# Crash safety of training: kill -9 at random moments, then resume (docs/RELIABILITY.md).
#
#   tools/kill_resume.sh EGOWORLD world|policy TRIALS WORKDIR [SEED]
#
# 1. A tiny dataset (egoworld collect) and an uninterrupted reference run A of S steps with
#    a checkpoint every step; its wall time T is measured.
# 2. Each trial starts run B with the same flags and kills it with SIGKILL after a random
#    delay in [0, T] (awk's rand seeded by SEED and the trial), up to 3 kills per trial
#    (later kills land in the resumed runs); after every kill:
#      - every checkpoint file present parses as a complete safetensors file (header, offsets
#        that cover the data exactly, size) - never a torn or partial file;
#      - the checkpoint's step (metadata egoworld.train.step) never goes back: no progress
#        beyond the last checkpoint is lost;
#    then B goes on with --resume when a checkpoint exists (from scratch when the kill came
#    before the first one).
# 3. When B finishes (exit 0), its model and checkpoint must be byte-identical to A's and its
#    CSV must have the same rows (timing column excepted): the commands promise bit-identical
#    resume.
# Also checked once per run of this script, with the fault hook of models/checkpoint.h:
#    - a kill in the middle of a checkpoint write (EGOWORLD_FAULT_CKPT_WRITE=N:kill),
#    - a write failing as on a full disk (N:fail): exit 1, one clear line, previous kept,
#    - a kill in each of the two writes of the final step (resume must still complete),
#    - a real write failure: the process' file size limit (ulimit -f) so writes fail (EFBIG),
#    - a real full disk (a small tmpfs, as root) and a read-only output folder (the tmpfs
#      remounted read-only; chmod when not root): exit 1, a clear line, the previous
#      checkpoint untouched.
# Prints one line per trial and a summary; exit 0 when every check passed.
set -u
ew=$1
kind=$2
trials=$3
w=$4
seed=${5:-1}
case $kind in
world)
  flags="--batch 4 --nf 4 --hidden 16 --n-cond 4 --n-pred 3 --rows 24 --cols 16 --mpp 1.2 --threads 1 \
--ckpt-every 1 --val-every 3 --val-samples 8 --lr 1e-3 --lr-min 1e-4 --log-every 1000"
  steps=10
  cmd=train-world
  csv_cols=1-7,9-   # column 8 is samples/s
  ;;
policy)
  flags="--method imitation --nf 2 --proj 8 --hidden 8 --n-cond 3 --batch 4 --threads 1 --val-samples 8 \
--val-every 3 --ckpt-every 1 --log-every 1000"
  steps=10
  cmd=train-policy
  csv_cols=1-5
  ;;
*) echo "kind must be world or policy"; exit 2 ;;
esac
rm -rf "$w" && mkdir -p "$w" || exit 2
cd "$w" || exit 2
fail=0
bad() { echo "FAIL: $*"; fail=1; }
trap 'umount "$w/mnt" 2>/dev/null' EXIT

# safetensors structure check, no numpy: prints the training step or "-" ; exit 1 if torn
cat > check.py <<'EOF'
import json, struct, sys
raw = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
h = json.loads(raw[8:8 + n])
data = len(raw) - 8 - n
ends = sorted((v["data_offsets"][0], v["data_offsets"][1]) for k, v in h.items() if k != "__metadata__")
pos = 0
for b, e in ends:
    assert b == pos, "gap or overlap"
    pos = e
assert pos == data, "data section %d bytes, tensors cover %d" % (data, pos)
print(h.get("__metadata__", {}).get("egoworld.train.step", "-"))
EOF
check() { # FILE -> step on stdout; complains when torn
  python3 check.py "$1" 2>/dev/null || { bad "$1 is not a complete safetensors file"; echo "-"; }
}

"$ew" collect dense-3lane free-2lane --episodes 16 --steps 50 --seed 4 --workers 1 --quiet --out data >/dev/null ||
  { echo "collect failed"; exit 1; }
"$ew" $cmd --data data $flags --steps $steps --out a.safetensors >/dev/null 2>a.err || { cat a.err; exit 1; }
t0=$(date +%s.%N)  # timed on a second, warm run (the first one loads the files from disk)
"$ew" $cmd --data data $flags --steps $steps --out t.safetensors >/dev/null 2>a.err || { cat a.err; exit 1; }
t1=$(date +%s.%N)
T=$(echo "$t0 $t1" | awk '{print $2 - $1}')
echo "$cmd: reference run of $steps steps: ${T}s"

kills_total=0
resumes_total=0
k=1
while [ $k -le "$trials" ]; do
  rm -f b.safetensors b.ckpt.safetensors b.csv b.*.tmp.*
  kills=0
  last=0
  resume=""
  n=0
  while :; do
    n=$((n + 1))
    "$ew" $cmd --data data $flags --steps $steps --out b.safetensors $resume >/dev/null 2>b.err &
    pid=$!
    if [ $kills -lt 3 ]; then
      d=$(awk -v s="$seed" -v k="$k" -v n="$n" -v T="$T" 'BEGIN { srand(s * 100003 + k * 101 + n); print rand() * T }')
      sleep "$d"
      if kill -9 $pid 2>/dev/null; then
        wait $pid 2>/dev/null
        kills=$((kills + 1))
        for f in b.ckpt.safetensors b.safetensors; do
          [ -f $f ] || continue
          st=$(check $f)
          if [ $f = b.ckpt.safetensors ] && [ "$st" != "-" ]; then
            [ "$st" -ge $last ] || bad "trial $k: checkpoint went back from step $last to $st"
            last=$st
          fi
        done
        # a kill after the last checkpoint: the run is complete (its files are final)
        [ "$last" = "$steps" ] && break
        if [ -f b.ckpt.safetensors ]; then resume=--resume; resumes_total=$((resumes_total + 1)); else resume=""; fi
        continue
      fi
    fi
    wait $pid
    rc=$?
    [ $rc = 0 ] || { bad "trial $k: run $n exited $rc: $(head -c 300 b.err)"; break; }
    break
  done
  kills_total=$((kills_total + kills))
  same=yes
  cmp -s a.safetensors b.safetensors || same=no
  cmp -s a.ckpt.safetensors b.ckpt.safetensors || same=no
  cut -d, -f$csv_cols a.csv > a.cut
  cut -d, -f$csv_cols b.csv > b.cut 2>/dev/null
  cmp -s a.cut b.cut || same="$same (csv differs)"
  leftovers=$(ls b.*.tmp.* 2>/dev/null | wc -l)
  echo "trial $k: $kills kills, last checkpoint seen at step $last, final files identical to the reference: $same, leftover temporary files: $leftovers"
  [ "$same" = yes ] || bad "trial $k: resumed result differs from the uninterrupted run"
  [ "$leftovers" = 0 ] || bad "trial $k: temporary files of killed writers left behind"
  k=$((k + 1))
done
echo "$cmd: $trials trials, $kills_total kills, $resumes_total resumes"

# A kill in the middle of the 3rd write (step 2's first file; each step writes the model file,
# then the checkpoint).
rm -f b.safetensors b.ckpt.safetensors b.csv b.*.tmp.*
EGOWORLD_FAULT_CKPT_WRITE=3:kill "$ew" $cmd --data data $flags --steps $steps --out b.safetensors >/dev/null 2>b.err
rc=$?
[ $rc = 137 ] || bad "fault kill: exit $rc, expected 137 (SIGKILL)"
st=$(check b.ckpt.safetensors)
[ "$st" = 1 ] || bad "fault kill: the checkpoint should still be the one of step 1 (got $st)"
"$ew" $cmd --data data $flags --steps $steps --out b.safetensors --resume >/dev/null 2>b.err || bad "fault kill: resume failed: $(cat b.err)"
if cmp -s a.safetensors b.safetensors && cmp -s a.ckpt.safetensors b.ckpt.safetensors; then
  echo "kill inside write 3 (step 2): previous checkpoint (step $st) intact, resume identical"
else
  bad "fault kill: resumed result differs"
fi

# A kill in the last two writes (model and checkpoint of the final step, in either order):
# --resume must still end with the reference files.
for wn in $((2 * steps - 1)) $((2 * steps)); do
  rm -f b.safetensors b.ckpt.safetensors b.csv b.*.tmp.*
  EGOWORLD_FAULT_CKPT_WRITE=$wn:kill "$ew" $cmd --data data $flags --steps $steps --out b.safetensors >/dev/null 2>b.err
  st=$(check b.ckpt.safetensors)
  if "$ew" $cmd --data data $flags --steps $steps --out b.safetensors --resume >/dev/null 2>b.err; then
    if cmp -s a.safetensors b.safetensors && cmp -s a.ckpt.safetensors b.ckpt.safetensors; then
      echo "kill inside write $wn of $((2 * steps)) (final step): checkpoint at step $st, resume completes identical"
    else
      bad "kill in write $wn (final step): the files differ from the reference after --resume"
    fi
  else
    bad "kill in write $wn (final step): resume from the step-$st checkpoint failed: $(tail -1 b.err)"
  fi
done

# A failing write (full disk) at the 5th write: exit 1, one clear line, step-2 checkpoint kept.
rm -f b.safetensors b.ckpt.safetensors b.csv b.*.tmp.*
EGOWORLD_FAULT_CKPT_WRITE=5:fail "$ew" $cmd --data data $flags --steps $steps --out b.safetensors >/dev/null 2>b.err
rc=$?
[ $rc = 1 ] || bad "fault fail: exit $rc, expected 1"
grep -q "egoworld $cmd: .*No space left on device" b.err || bad "fault fail: message: $(cat b.err)"
st=$(check b.ckpt.safetensors)
[ "$st" = 2 ] || bad "fault fail: the step-2 checkpoint should be kept (got $st)"
[ "$(ls b.*.tmp.* 2>/dev/null | wc -l)" = 0 ] || bad "fault fail: temporary file left behind"
echo "disk full (injected): exit $rc, '$(tail -1 b.err)', checkpoint of step $st kept"

# A real write failure: the file size limit makes writes past 64 KiB fail (EFBIG; SIGXFSZ
# ignored). The first checkpoints of a 2-step run fit, then --steps 4 with a bigger model
# (hidden 64) cannot be written.
rm -f b.safetensors b.ckpt.safetensors b.csv b.*.tmp.*
"$ew" $cmd --data data $flags --steps 2 --out b.safetensors >/dev/null 2>b.err || bad "fsize: first run failed"
cp b.ckpt.safetensors keep.ckpt
sz=$(wc -c < b.ckpt.safetensors)
blocks=$(( (sz + 2048) / 512 ))  # ulimit -f counts 512-byte blocks: room for this size, not more
(trap '' XFSZ; ulimit -f $blocks; exec "$ew" $cmd --data data $(echo "$flags" | sed 's/--hidden [0-9]*/--hidden 64/') \
  --steps 4 --out b.safetensors >/dev/null 2>b.err)
rc=$?
[ $rc = 1 ] || bad "fsize: exit $rc, expected 1 ($(cat b.err))"
tail -1 b.err | grep -q "egoworld $cmd: b[.a-z]*safetensors: write failed" || bad "fsize: no one-line error: $(cat b.err)"
cmp -s keep.ckpt b.ckpt.safetensors || bad "fsize: the previous checkpoint was changed"
[ "$(ls b.*.tmp.* 2>/dev/null | wc -l)" = 0 ] || bad "fsize: temporary file left behind"
echo "file size limit: exit $rc, '$(tail -1 b.err)', previous checkpoint unchanged"

# A real full disk and a read-only folder need a small file system of their own: as root a
# tmpfs is mounted (skipped where mounting is not allowed); otherwise chmod makes the folder
# read-only (root would write there anyway).
if [ "$(id -u)" = 0 ] && mkdir -p mnt && mount -t tmpfs -o size=$(( $(wc -c < keep.ckpt) / 1024 + 40 ))k tmpfs mnt 2>/dev/null; then
  cp keep.ckpt mnt/b.ckpt.safetensors
  # full: one more checkpoint of a bigger model does not fit next to the kept one
  "$ew" $cmd --data data $(echo "$flags" | sed 's/--hidden [0-9]*/--hidden 64/') --steps 2 --out mnt/b.safetensors \
    >/dev/null 2>b.err
  rc=$?
  [ $rc = 1 ] || bad "tmpfs full: exit $rc, expected 1"
  tail -1 b.err | grep -q "egoworld $cmd: mnt/b[.a-z]*safetensors: .*No space left on device" ||
    bad "tmpfs full: message: $(tail -1 b.err)"
  cmp -s keep.ckpt mnt/b.ckpt.safetensors || bad "tmpfs full: the previous checkpoint was changed"
  [ "$(ls mnt/b.*.tmp.* 2>/dev/null | wc -l)" = 0 ] || bad "tmpfs full: temporary file left behind"
  echo "full disk (tmpfs): exit $rc, '$(tail -1 b.err)', previous checkpoint unchanged"
  mount -o remount,ro mnt
  "$ew" $cmd --data data $flags --steps 4 --out mnt/b.safetensors --resume >/dev/null 2>b.err
  rc=$?
  [ $rc = 1 ] || bad "read-only: exit $rc, expected 1"
  tail -1 b.err | grep -q "egoworld $cmd: mnt/b" || bad "read-only: message: $(tail -1 b.err)"
  cmp -s keep.ckpt mnt/b.ckpt.safetensors || bad "read-only: checkpoint changed"
  echo "read-only folder (tmpfs remounted ro): exit $rc, '$(tail -1 b.err)', checkpoint unchanged"
  umount mnt
elif [ "$(id -u)" != 0 ]; then
  mkdir -p ro && cp keep.ckpt ro/b.ckpt.safetensors && chmod a-w ro
  "$ew" $cmd --data data $flags --steps 4 --out ro/b.safetensors --resume >/dev/null 2>b.err
  rc=$?
  chmod u+w ro
  [ $rc = 1 ] || bad "read-only: exit $rc, expected 1"
  tail -1 b.err | grep -q "egoworld $cmd: ro/b" || bad "read-only: message: $(tail -1 b.err)"
  cmp -s keep.ckpt ro/b.ckpt.safetensors || bad "read-only: checkpoint changed"
  echo "read-only folder (chmod): exit $rc, '$(tail -1 b.err)', checkpoint unchanged"
  echo "full disk (tmpfs): skipped (not root)"
else
  echo "full disk and read-only folder (tmpfs): skipped (mount not allowed here)"
fi
[ $fail = 0 ] && echo "$cmd crash safety: OK" || echo "$cmd crash safety: FAILED"
exit $fail
