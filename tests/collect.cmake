# End-to-end tests of `egoworld collect` (sim/traj.h, docs/DATASET.md).
set(_ew $<TARGET_FILE:egoworld>)
# 3 episodes x 60 steps: the shards are byte-identical for 1 and 2 workers, the manifests
# equal apart from the command line, and the summary reports the budget figures.
add_test(NAME cli_collect_workers_identical COMMAND sh -c
  "d=$(mktemp -d) && '${_ew}' collect dense-3lane onramp-6lane scenarios/cut_in.lua --episodes 3 --steps 60 --seed 4 --workers 1 --quiet --out \"$d/a\" >/dev/null && '${_ew}' collect dense-3lane onramp-6lane scenarios/cut_in.lua --episodes 3 --steps 60 --seed 4 --workers 2 --quiet --json --out \"$d/b\" > \"$d/j\" && cmp \"$d/a/traj-0000.ewt\" \"$d/b/traj-0000.ewt\" && grep -v '\"command\"' \"$d/a/manifest.json\" > \"$d/ma\" && grep -v '\"command\"' \"$d/b/manifest.json\" > \"$d/mb\" && cmp \"$d/ma\" \"$d/mb\" && grep -q '\"episodes\": 3, \"ego_steps\": 183' \"$d/j\" && cat \"$d/j\" && rm -rf \"$d\"")
set_tests_properties(cli_collect_workers_identical PROPERTIES WORKING_DIRECTORY ${CMAKE_SOURCE_DIR}
  PASS_REGULAR_EXPRESSION "\"bytes_per_ego_step\": [0-9.]+.*\"collisions\": [0-9]+.*\"wall_s\"")
# Different seeds give different data.
add_test(NAME cli_collect_seed_matters COMMAND sh -c
  "d=$(mktemp -d) && '${_ew}' collect free-2lane --episodes 1 --steps 30 --seed 1 --quiet --out \"$d/a\" >/dev/null && '${_ew}' collect free-2lane --episodes 1 --steps 30 --seed 2 --quiet --out \"$d/b\" >/dev/null && ! cmp -s \"$d/a/traj-0000.ewt\" \"$d/b/traj-0000.ewt\" && rm -rf \"$d\"")
# Usage errors name the flag; an existing dataset is never overwritten.
add_test(NAME cli_collect_no_out COMMAND ${_ew} collect dense-3lane)
set_tests_properties(cli_collect_no_out PROPERTIES PASS_REGULAR_EXPRESSION "egoworld collect: --out")
add_test(NAME cli_collect_bad_episodes COMMAND ${_ew} collect dense-3lane --out /tmp/x --episodes 0)
set_tests_properties(cli_collect_bad_episodes PROPERTIES PASS_REGULAR_EXPRESSION "egoworld collect: --episodes")
add_test(NAME cli_collect_bad_scenario COMMAND ${_ew} collect no-such-road --out /tmp/x)
set_tests_properties(cli_collect_bad_scenario PROPERTIES PASS_REGULAR_EXPRESSION "no-such-road")
add_test(NAME cli_collect_help COMMAND ${_ew} collect --help)
set_tests_properties(cli_collect_help PROPERTIES PASS_REGULAR_EXPRESSION "--replay")
add_test(NAME cli_collect_exists COMMAND sh -c
  "d=$(mktemp -d) && '${_ew}' collect free-2lane --episodes 1 --steps 20 --quiet --out \"$d/a\" >/dev/null && ! '${_ew}' collect free-2lane --episodes 1 --steps 20 --quiet --out \"$d/a\" 2> \"$d/e\" && grep -q 'already holds a dataset' \"$d/e\" && rm -rf \"$d\"")
# --replay: the non-reactive setting; deterministic across workers, mode recorded.
add_test(NAME cli_collect_replay COMMAND sh -c
  "d=$(mktemp -d) && '${_ew}' collect dense-3lane free-2lane --replay --episodes 2 --steps 40 --workers 1 --quiet --out \"$d/a\" >/dev/null && '${_ew}' collect dense-3lane free-2lane --replay --episodes 2 --steps 40 --workers 2 --quiet --out \"$d/b\" >/dev/null && cmp \"$d/a/traj-0000.ewt\" \"$d/b/traj-0000.ewt\" && grep -q '\"mode\": \"replay\"' \"$d/a/manifest.json\" && rm -rf \"$d\"")
# bench data: renders batches from a freshly collected set and reports both thread counts.
add_test(NAME cli_bench_data_json COMMAND sh -c
  "d=$(mktemp -d) && '${_ew}' collect free-2lane --episodes 2 --steps 50 --quiet --out \"$d/a\" >/dev/null && '${_ew}' bench data --data \"$d/a\" --batch 4 --n-cond 5 --n-pred 5 --repeat 1 --json && rm -rf \"$d\"")
set_tests_properties(cli_bench_data_json PROPERTIES
  PASS_REGULAR_EXPRESSION "\"ms_per_batch_1t\": [0-9.e+-]+, \"ms_per_batch\": [0-9.e+-]+")
# --controller: any controller spec drives the ego (expert data); recorded in the manifest;
# an unknown spec is a one-line error.
add_test(NAME cli_collect_controller COMMAND sh -c
  "d=$(mktemp -d) && '${_ew}' collect dense-3lane --controller idm --episodes 2 --steps 30 --workers 1 --quiet --out \"$d/a\" --json > \"$d/j\" && grep -q '\"driver\": \"idm\"' \"$d/a/manifest.json\" && grep -q '\"ego_steps\": 62' \"$d/j\" && ! '${_ew}' collect dense-3lane --controller nope --episodes 1 --steps 5 --quiet --out \"$d/b\" 2> \"$d/e\" && grep -q 'unknown controller' \"$d/e\" && rm -rf \"$d\"")
