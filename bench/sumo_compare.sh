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
    echo " <flow id=\"f$l\" type=\"car\" route=\"r\" begin=\"0\" end=\"$DUR\" vehsPerHour=\"$FLOW\" departLane=\"$l\" departSpeed=\"max\"/>"
    l=$((l + 1))
  done
  echo '</routes>'
} > "$tmp/r.rou.xml"

sumo_out=$(SUMO_HOME=/usr/share/sumo taskset -c 0 sumo -n "$tmp/net.xml" -r "$tmp/r.rou.xml" --step-length 0.1 \
  --end "$DUR" --no-step-log --duration-log.statistics --seed 1 --summary-output "$tmp/summary.xml" 2>&1)
sumo_ups=$(printf '%s\n' "$sumo_out" | awk '/UPS:/ {print $2}')
sumo_mean=$(awk -F'running="' '/<step / {split($2, a, "\""); s += a[1]; n++} END {if (n) printf "%.1f", s / n; else print 0}' "$tmp/summary.xml")

ego_json=$(taskset -c 0 "$BIN" bench sim --traffic-only --lanes "$LANES" --length "$LEN" --flow "$FLOW" \
  --duration "$DUR" --threads 1 --json)
ego_ups=$(printf '%s\n' "$ego_json" | sed -n 's/.*"vehicle_updates_per_s": \([0-9.e+]*\).*/\1/p')
ego_mean=$(printf '%s\n' "$ego_json" | sed -n 's/.*"mean_vehicles": \([0-9.e+]*\).*/\1/p')

ratio=$(awk -v a="$ego_ups" -v b="$sumo_ups" 'BEGIN { if (b > 0) printf "%.1f", a / b; else print "nan" }')
printf '%-10s %18s %14s\n' "simulator" "vehicle_updates/s" "mean_vehicles"
printf '%-10s %18.0f %14s\n' "sumo" "$sumo_ups" "$sumo_mean"
printf '%-10s %18.0f %14s\n' "egoworld" "$ego_ups" "$ego_mean"
printf 'ratio egoworld/sumo: %s  (%s lanes, %s m, %s veh/h/lane, %s s simulated, dt 0.1 s, one core)\n' \
  "$ratio" "$LANES" "$LEN" "$FLOW" "$DUR"
