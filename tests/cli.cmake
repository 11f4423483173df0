# End-to-end tests of the egoworld command line (run from the source tree). The runs name
# --controller idm: the default (mpc-km on the shipped world model) is tested in
# tests/test_mpc_overlay.c with a tiny model.
set(_ew $<TARGET_FILE:egoworld>)
add_test(NAME cli_run_json COMMAND ${_ew} run --json --quiet --steps 400 --seed 3 --controller idm)
set_tests_properties(cli_run_json PROPERTIES
  PASS_REGULAR_EXPRESSION "\"status\": \"success\".*\"bg_collisions\": 0")
add_test(NAME cli_run_onramp COMMAND ${_ew} run --json --quiet --scenario onramp-6lane --controller none --seed 5)
set_tests_properties(cli_run_onramp PROPERTIES PASS_REGULAR_EXPRESSION "\"controller\": \"none\".*\"metrics\": {\"status\": \"[a-z]+\"")
add_test(NAME cli_run_bad_steps COMMAND ${_ew} run --steps 12x)
set_tests_properties(cli_run_bad_steps PROPERTIES PASS_REGULAR_EXPRESSION "egoworld run: --steps: expected an integer")
add_test(NAME cli_run_bad_scenario COMMAND ${_ew} run --scenario no-such-road)
set_tests_properties(cli_run_bad_scenario PROPERTIES PASS_REGULAR_EXPRESSION "no-such-road")
add_test(NAME cli_run_bad_controller COMMAND ${_ew} run --controller warp)
set_tests_properties(cli_run_bad_controller PROPERTIES PASS_REGULAR_EXPRESSION "unknown controller 'warp'")
add_test(NAME cli_unknown_command COMMAND ${_ew} fly)
set_tests_properties(cli_unknown_command PROPERTIES PASS_REGULAR_EXPRESSION "unknown command 'fly'")
add_test(NAME cli_run_help COMMAND ${_ew} run --help)
set_tests_properties(cli_run_help PROPERTIES PASS_REGULAR_EXPRESSION "--record DIR")
# Exit statuses: success 0, usage errors non-zero.
add_test(NAME cli_exit_status COMMAND sh -c "'${_ew}' run --quiet --steps 30 --controller idm >/dev/null && ! '${_ew}' run --seed -1 2>/dev/null")
# --record writes one ego raster and one top view per step (plus the initial frame), as PNG.
add_test(NAME cli_run_record COMMAND sh -c
  "d=$(mktemp -d) && '${_ew}' run --quiet --headless --steps 25 --n-cond 5 --controller idm --record \"$d/f\" >/dev/null && test $(ls \"$d/f\" | grep -c '^ego_.*png$') -eq 26 && test $(ls \"$d/f\" | grep -c '^top_.*png$') -eq 26 && head -c 8 \"$d/f/ego_00010.png\" | od -c | grep -q 'P   N   G' && rm -rf \"$d\"")
add_test(NAME cli_bench_sim_json COMMAND ${_ew} bench sim --repeat 1 --json)
set_tests_properties(cli_bench_sim_json PROPERTIES
  PASS_REGULAR_EXPRESSION "\"cores\": [0-9]+, \"threads\": 1.*\"vehicle_updates_per_s\": [0-9.e+]+.*\"env_steps_per_s\": [0-9.e+]+.*\"rasters_per_s\": [0-9.e+]+")
# Same seed, same build: bit-identical episode metrics.
add_test(NAME cli_run_deterministic COMMAND sh -c
  "a=$('${_ew}' run --json --quiet --seed 11 --controller none | sed 's/\"wall_s\": [^,]*,//; s/\"plan_ms_per_step\": [^,]*,//') && b=$('${_ew}' run --json --quiet --seed 11 --controller none | sed 's/\"wall_s\": [^,]*,//; s/\"plan_ms_per_step\": [^,]*,//') && test \"$a\" = \"$b\"")
