#!/bin/sh
# Runs end-to-end tests under valgrind memcheck (docs/RELIABILITY.md has the results).
#   tools/valgrind_suite.sh BUILD_DIR [CTEST_REGEX] [TEST_BINARY...]
# BUILD_DIR: a build without sanitizers (e.g. -DCMAKE_BUILD_TYPE=RelWithDebInfo).
# Every CTest test matching CTEST_REGEX (default: the CLI end-to-end tests) runs with the
# egoworld binary replaced by a wrapper that execs it under memcheck, so each command those
# tests run is checked; then each TEST_BINARY (names under BUILD_DIR/tests) runs under
# memcheck directly (fuzz_<name>_corpus binaries get their corpus folder). A memcheck error or a definite/indirect leak makes the run exit 99, which
# fails the test. Logs: BUILD_DIR/valgrind/*.log; a summary line per test at the end.
set -u
b=$(cd "$1" && pwd) || exit 2
re=${2:-'^(cli_|eval_|lua_cli|world_cli)'}
[ $# -ge 2 ] && shift 2 || shift $#
root=$(cd "$(dirname "$0")/.." && pwd)
vg="valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect --track-origins=yes --num-callers=30"
logs=$b/valgrind
rm -rf "$logs" && mkdir -p "$logs"
bin=$b/egoworld
[ -x "$bin" ] || { echo "no $bin"; exit 2; }
mv "$bin" "$bin.real"
trap 'mv -f "$bin.real" "$bin"' EXIT INT TERM
cat > "$bin" <<EOS
#!/bin/sh
exec $vg --log-file=$logs/egoworld.%p.log "$bin.real" "\$@"
EOS
chmod +x "$bin"
fail=0
(cd "$b" && EGOWORLD_TEST_QUICK=1 ctest -R "$re" -j 1 --timeout 1800 --output-on-failure) > "$logs/ctest.txt" 2>&1 || fail=1
tail -3 "$logs/ctest.txt"
for t in "$@"; do
  args=""
  case $t in fuzz_*_corpus) args=$root/fuzz/corpus/$(echo "$t" | sed 's/^fuzz_//; s/_corpus$//') ;; esac
  (cd "$root" && EGOWORLD_BIN=$bin.real EGOWORLD_TEST_QUICK=1 $vg --log-file="$logs/$t.log" "$b/tests/$t" $args > "$logs/$t.out" 2>&1)
  rc=$?
  echo "$t: exit $rc, $(grep -h 'ERROR SUMMARY' "$logs/$t.log" | tail -1 | sed 's/==[0-9]*== //')"
  [ $rc = 0 ] || fail=1
done
runs=$(ls "$logs"/egoworld.*.log 2>/dev/null | wc -l)
bad=$(grep -L 'ERROR SUMMARY: 0 errors' "$logs"/egoworld.*.log 2>/dev/null | wc -l)
echo "egoworld runs under memcheck: $runs, with errors: $bad"
[ "$bad" = 0 ] || { grep -L 'ERROR SUMMARY: 0 errors' "$logs"/egoworld.*.log; fail=1; }
exit $fail
