# bench/sumo_compare.sh end to end on a tiny highway (2 lanes, 500 m, 30 s measured; a few
# seconds), with BASE= the same binary: the base row, the ratio to SUMO and a speed-up figure.
# Skipped where SUMO is not installed (the script says so and exits 0).
add_test(NAME bench_sumo_compare COMMAND sh -c
  "out=$(REPEAT=1 EGO_REPEAT=3 BASE='$<TARGET_FILE:egoworld>' '${CMAKE_SOURCE_DIR}/bench/sumo_compare.sh' '$<TARGET_FILE:egoworld>' 2 500 1000 30) || exit 1; echo \"$out\"; case \"$out\" in skip:*) exit 0;; esac; echo \"$out\" | grep -q '^1 *base ' && echo \"$out\" | grep -Eq 'ratio egoworld/sumo: [0-9]+\\.[0-9]' && echo \"$out\" | grep -Eq 'speed-up over base per CPU second: [0-9.]+ \\(median 0*[0-9]\\.[0-9]+\\)'")
set_tests_properties(bench_sumo_compare PROPERTIES TIMEOUT 120 SKIP_REGULAR_EXPRESSION "skip: SUMO is not installed")
