#!/bin/sh
# Side-by-side traffic throughput: egoworld vs SUMO on the same straight highway.
#
#   bench/sumo_compare.sh [EGOWORLD_BIN] [LANES] [LENGTH_M] [FLOW_VEH_PER_H_PER_LANE] [SIM_SECONDS]
#
# Both simulate LANES lanes of LENGTH_M metres at a 30 m/s limit, fed with the given inflow
# per lane, at dt = 0.1 s, IDM car following and lane changes (SUMO: carFollowModel IDM,
# LC2013; egoworld: IDM + MOBIL), one core each, for SIM_SECONDS simulated seconds.
# Reported: vehicle updates per second (SUMO's own "UPS" figure; egoworld's
# vehicle_updates_per_s) and the mean number of vehicles on the road, then the ratio.
# REPEAT rounds (environment, default 1) alternate the two and print the median ratio.
# SUMO runs WARM = 60 s more than SIM_SECONDS (egoworld warms up for 60 s before it measures).
# Where /usr/bin/time exists, the same per second of CPU time is reported too, which a loaded
# machine disturbs less: egoworld's vehicle_updates_per_cpu_s (thread CPU time, after its
# warm-up) and, for SUMO, its vehicle updates after t = 60 s over the user + system time of
# the full run minus that of a run that stops at t = 60 s (so start-up, loading and the
# filling of the empty road are not counted). The timed SUMO runs write no per-step output;
# vehicle counts come from one extra run with --summary-output (SUMO is deterministic per
# seed). Mean vehicles are over the measured (post-warm-up) steps on both sides.
# egoworld's figure is the median over EGO_REPEAT (environment, default 31) runs of `bench sim
# --traffic-only` (each: a fresh world, 60 s warm-up, then SIM_SECONDS measured, 7-10 ms of
# CPU time at the defaults), so that one figure spans about 0.2 s rather than 5 x 7-10 ms.
# BASE=OTHER_EGOWORLD_BIN (environment) also runs that binary in every round, right after
# EGOWORLD_BIN (odd rounds) or right before it (even rounds), and reports its figures and the
# speed-up of EGOWORLD_BIN over it (before/after an optimisation, side by side with SUMO in
# the same run).
# Skips (exit 0, "skip: ...") when SUMO is not installed (Debian package: sumo).
set -eu
BIN=${1:-./build/egoworld}
LANES=${2:-3}
LEN=${3:-2000}
FLOW=${4:-1700}
DUR=${5:-600}

if ! command -v sumo >/dev/null 2>&1 || ! command -v netconvert >/dev/null 2>&1; then
  echo "skip: SUMO is not installed (apt-get install sumo)"
  exit 0
fi
[ -x "$BIN" ] || { echo "sumo_compare: egoworld binary '$BIN' not found (build first)" >&2; exit 1; }

WARM=60
TOTAL=$(awk -v d="$DUR" -v w="$WARM" 'BEGIN { print d + w }')
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat > "$tmp/n.nod.xml" <<XML
<nodes><node id="a" x="0" y="0"/><node id="b" x="$LEN" y="0"/></nodes>
XML
cat > "$tmp/e.edg.xml" <<XML
<edges><edge id="hw" from="a" to="b" numLanes="$LANES" speed="30"/></edges>
XML
netconvert -n "$tmp/n.nod.xml" -e "$tmp/e.edg.xml" -o "$tmp/net.xml" --no-turnarounds >/dev/null 2>&1
{
  echo '<routes>'
  echo ' <vType id="car" carFollowModel="IDM" accel="1.5" decel="2.5" tau="1.5" minGap="2" length="4.5" width="1.8" maxSpeed="33" speedFactor="1.0" speedDev="0.1"/>'
  echo ' <route id="r" edges="hw"/>'
  l=0
  while [ "$l" -lt "$LANES" ]; do
    echo " <flow id=\"f$l\" type=\"car\" route=\"r\" begin=\"0\" end=\"$TOTAL\" vehsPerHour=\"$FLOW\" departLane=\"$l\" departSpeed=\"max\"/>"
    l=$((l + 1))
  done
  echo '</routes>'
} > "$tmp/r.rou.xml"

REPEAT=${REPEAT:-1}
EGO_REPEAT=${EGO_REPEAT:-31}
BASE=${BASE:-}
[ -z "$BASE" ] || [ -x "$BASE" ] || { echo "sumo_compare: BASE binary '$BASE' not found" >&2; exit 1; }
run_ego() { # $1: binary. Sets ego_ups, ego_cpu, ego_mean
  ego_json=$(taskset -c 0 "$1" bench sim --traffic-only --lanes "$LANES" --length "$LEN" --flow "$FLOW" \
    --duration "$DUR" --threads 1 --repeat "$EGO_REPEAT" --json 2>/dev/null)
  ego_ups=$(printf '%s\n' "$ego_json" | sed -n 's/.*"vehicle_updates_per_s": \([0-9.e+]*\).*/\1/p')
  ego_cpu=$(printf '%s\n' "$ego_json" | sed -n 's/.*"vehicle_updates_per_cpu_s": \([0-9.e+]*\).*/\1/p')
  [ -n "$ego_cpu" ] || ego_cpu=nan
  ego_mean=$(printf '%s\n' "$ego_json" | sed -n 's/.*"mean_vehicles": \([0-9.e+]*\).*/\1/p')
}
run_sumo() { # $1: end time; then extra options. Prints sumo's output (and "cpu U S" with /usr/bin/time)
  end=$1
  shift
  if [ -x /usr/bin/time ]; then
    SUMO_HOME=/usr/share/sumo taskset -c 0 /usr/bin/time -f 'cpu %U %S' sumo -n "$tmp/net.xml" -r "$tmp/r.rou.xml" \
      --step-length 0.1 --end "$end" --no-step-log --duration-log.statistics --seed 1 "$@" 2>&1
  else
    SUMO_HOME=/usr/share/sumo taskset -c 0 sumo -n "$tmp/net.xml" -r "$tmp/r.rou.xml" --step-length 0.1 \
      --end "$end" --no-step-log --duration-log.statistics --seed 1 "$@" 2>&1
  fi
}
# untimed: vehicle counts per step (after the warm-up)
run_sumo "$TOTAL" --summary-output "$tmp/summary.xml" >/dev/null
sumo_mean=$(awk -v w="$WARM" -F'"' '/<step / {t = -1; for (i = 1; i < NF; i++) { if ($i ~ /<step time=$/) t = $(i + 1); if ($i ~ / running=$/) c = $(i + 1) } if (t > w) {s += c; n++}} END {if (n) printf "%.1f", s / n; else print 0}' "$tmp/summary.xml")
sumo_total=$(awk -v w="$WARM" -F'"' '/<step / {t = -1; for (i = 1; i < NF; i++) { if ($i ~ /<step time=$/) t = $(i + 1); if ($i ~ / running=$/) c = $(i + 1) } if (t > w) s += c} END {printf "%.0f", s}' "$tmp/summary.xml")

printf '%-6s %-10s %18s %18s %14s\n' "round" "simulator" "vehicle_updates/s" "updates/cpu_s" "mean_vehicles"
r=1
ratios=""
cratios=""
bratios=""
bcratios=""
speedups=""
while [ "$r" -le "$REPEAT" ]; do
  sumo_out=$(run_sumo "$TOTAL")
  sumo_ups=$(printf '%s\n' "$sumo_out" | awk '/UPS:/ {print $2}')
  cpu_full=$(printf '%s\n' "$sumo_out" | awk '/^cpu / {print $2 + $3}')
  cpu_warm=$(run_sumo "$WARM" | awk '/^cpu / {print $2 + $3}')
  sumo_cpu=$(awk -v t="$sumo_total" -v f="$cpu_full" -v w="$cpu_warm" 'BEGIN { if (f != "" && w != "" && f - w > 0) printf "%.0f", t / (f - w); else print "nan" }')

  if [ -n "$BASE" ] && [ $((r % 2)) -eq 0 ]; then # even rounds: the base first
    run_ego "$BASE"
    base_ups=$ego_ups base_cpu=$ego_cpu base_mean=$ego_mean
  fi
  run_ego "$BIN"
  printf '%-6s %-10s %18.0f %18s %14s\n' "$r" "sumo" "$sumo_ups" "$sumo_cpu" "$sumo_mean"
  printf '%-6s %-10s %18.0f %18.0f %14s\n' "$r" "egoworld" "$ego_ups" "$ego_cpu" "$ego_mean"
  if [ -n "$BASE" ]; then
    new_ups=$ego_ups
    new_cpu=$ego_cpu
    if [ $((r % 2)) -eq 1 ]; then
      run_ego "$BASE"
    else
      ego_ups=$base_ups ego_cpu=$base_cpu ego_mean=$base_mean
    fi
    printf '%-6s %-10s %18.0f %18.0f %14s\n' "$r" "base" "$ego_ups" "$ego_cpu" "$ego_mean"
    bratios="$bratios $(awk -v a="$ego_ups" -v b="$sumo_ups" 'BEGIN { if (b > 0) printf "%.1f", a / b; else print "nan" }')"
    bcratios="$bcratios $(awk -v a="$ego_cpu" -v b="$sumo_cpu" 'BEGIN { if (b > 0 && a > 0) printf "%.1f", a / b; else print "nan" }')"
    speedups="$speedups $(awk -v a="$new_cpu" -v b="$ego_cpu" 'BEGIN { if (b > 0 && a > 0) printf "%.3f", a / b; else print "nan" }')"
    ego_ups=$new_ups
    ego_cpu=$new_cpu
  fi
  ratios="$ratios $(awk -v a="$ego_ups" -v b="$sumo_ups" 'BEGIN { if (b > 0) printf "%.1f", a / b; else print "nan" }')"
  cratios="$cratios $(awk -v a="$ego_cpu" -v b="$sumo_cpu" 'BEGIN { if (b > 0 && a > 0) printf "%.1f", a / b; else print "nan" }')"
  r=$((r + 1))
done
median() { printf '%s\n' $1 | sort -g | awk '{v[NR] = $1} END {if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f", (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
ratio=$(median "$ratios")
cratio=$(median "$cratios")
printf 'ratios per round (wall):%s\n' "$ratios"
printf 'ratios per round (cpu): %s\n' "$cratios"
if [ -n "$BASE" ]; then
  printf 'base ratios per round (wall):%s\n' "$bratios"
  printf 'base ratios per round (cpu): %s\n' "$bcratios"
  printf 'ratio base/sumo: %s  (per CPU second: %s); speed-up over base per CPU second:%s (median %s)\n' \
    "$(median "$bratios")" "$(median "$bcratios")" "$speedups" "$(median "$speedups")"
fi
printf 'ratio egoworld/sumo: %s  (median of %s; per CPU second: %s)  (%s lanes, %s m, %s veh/h/lane, %s s measured after %s s, dt 0.1 s, one core)\n' \
  "$ratio" "$REPEAT" "$cratio" "$LANES" "$LEN" "$FLOW" "$DUR" "$WARM"
