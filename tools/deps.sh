#!/bin/sh
# Installs the Debian packages egoworld needs when some are missing.
# As root: apt-get update + install. Otherwise: print the one line to run, and go on
# (the build says what it cannot find).
missing=""
for p in "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
  echo "egoworld: installing missing Debian packages:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing >/dev/null || {
    echo "egoworld: apt-get install failed for:$missing" >&2; exit 1; }
else
  echo "egoworld: missing Debian packages; run:"
  echo "  sudo apt-get install -y$missing"
fi
