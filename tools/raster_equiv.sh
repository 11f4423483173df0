#!/bin/sh
# Byte-equality and speed of the rasterizer against another commit.
#
#   tools/raster_equiv.sh BASE_COMMIT [BUILD_DIR]
#
# Builds libegoworld_sim.a of BASE_COMMIT (git archive into a temporary directory, Release,
# -j2), compiles tools/raster_equiv.c against it and against BUILD_DIR's library (default
# ./build, built first), prints both hashes of about 40,000 rasters (exit 1 when they differ),
# then alternates the two CPU-time benchmarks (aligned and rotated ego) REPEAT times (default
# 3), pinned to core ${CORE:-1} with taskset when available.
set -eu
BASE=${1:?usage: tools/raster_equiv.sh BASE_COMMIT [BUILD_DIR]}
BUILD=${2:-./build}
REPEAT=${REPEAT:-3}
root=$(git rev-parse --show-toplevel)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git -C "$root" archive "$BASE" | tar -x -C "$tmp"
cmake -S "$tmp" -B "$tmp/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$tmp/build" -j2 --target egoworld_sim >/dev/null
cmake --build "$BUILD" -j2 --target egoworld_sim >/dev/null
cc=${CC:-cc}
$cc -O2 -std=c11 -I"$tmp" "$root/tools/raster_equiv.c" "$tmp/build/libegoworld_sim.a" -lpng -lm -fopenmp -o "$tmp/re_base"
$cc -O2 -std=c11 -I"$root" "$root/tools/raster_equiv.c" "$BUILD/libegoworld_sim.a" -lpng -lm -fopenmp -o "$tmp/re_new"
hb=$("$tmp/re_base" dump -)
hn=$("$tmp/re_new" dump -)
echo "base $BASE: $hb"
echo "this build: $hn"
if [ "$hb" != "$hn" ]; then
  echo "raster_equiv: the rasters differ"
  exit 1
fi
echo "byte-identical"
pin=""
command -v taskset >/dev/null 2>&1 && pin="taskset -c ${CORE:-1}"
r=1
while [ "$r" -le "$REPEAT" ]; do
  for a in 0 0.012; do
    echo "round $r heading+$a base: $($pin "$tmp/re_base" bench 7 20000 $a)"
    echo "round $r heading+$a new:  $($pin "$tmp/re_new" bench 7 20000 $a)"
  done
  r=$((r + 1))
done
