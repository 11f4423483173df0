#!/bin/sh
# Line coverage (gcov) of the parsers reached by each fuzz corpus (docs/RELIABILITY.md).
#   tools/fuzz_coverage.sh BUILD_DIR [EXTRA_CORPUS_ROOT]
# BUILD_DIR: a gcc build (its static libraries supply everything but the measured sources).
# Each target is linked from coverage-instrumented copies of the sources it exercises plus
# fuzz/driver_main.c, then run over fuzz/corpus/<name> (and EXTRA_CORPUS_ROOT/<name>, e.g. the
# fuzzers' own generated corpora). Prints "target source: lines executed".
set -eu
b=$(cd "$1" && pwd)
extra=${2:-}
root=$(cd "$(dirname "$0")/.." && pwd)
out=$b/fuzz-coverage
rm -rf "$out" && mkdir -p "$out"
libs="$b/lua/libegoworld_lua.a $b/models/libegoworld_nn.a $b/libegoworld_sim.a $(pkg-config --libs lua5.4) -lopenblas -lpng -lm -fopenmp"
for spec in "safetensors:models/checkpoint.c models/json.c" "ngsim:sim/ngsim.c" \
            "scenario:lua/scenario.c lua/vm.c lua/worldapi.c" "traj:sim/traj.c sim/traj_fill.c"; do
  name=${spec%%:*}
  srcs=${spec#*:}
  d=$out/$name
  mkdir -p "$d"
  objs=""
  for s in $srcs; do
    o=$d/$(basename "$s" .c).o
    gcc -std=c11 -O0 --coverage -fopenmp -I"$root" $(pkg-config --cflags lua5.4) -c "$root/$s" -o "$o"
    objs="$objs $o"
  done
  gcc -std=c11 -O0 -I"$root" $(pkg-config --cflags lua5.4) -o "$d/run" "$root/fuzz/fuzz_$name.c" "$root/fuzz/driver_main.c" \
    $objs --coverage $libs
  dirs="$root/fuzz/corpus/$name"
  [ -n "$extra" ] && [ -d "$extra/$name" ] && dirs="$dirs $extra/$name"
  (cd "$root" && "$d/run" $dirs >/dev/null 2>&1) || true
  for s in $srcs; do
    (cd "$d" && gcov -n -o "$d" "$root/$s" 2>/dev/null | grep -A1 "File '$root/$s'" | tail -1 | sed "s|^|$name $s: |")
  done
done
