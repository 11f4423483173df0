# End-to-end tests of `egoworld eval` (planner/eval.h); a few episodes each.
set(_ew $<TARGET_FILE:egoworld>)
add_test(NAME eval_json_keys COMMAND ${_ew} eval --controller idm --set dense-reactive --episodes 4 --workers 2 --json --quiet)
set_tests_properties(eval_json_keys PROPERTIES PASS_REGULAR_EXPRESSION
  "^{\"episodes\": 4, \"success_rate\": [0-9.e+-]+, \"mean_distance_m\": [0-9.e+-]+, \"collision_rate\": [0-9.e+-]+, \"offroad_rate\": [0-9.e+-]+, \"plan_ms_per_step\": [0-9.e+-]+, \"timeout_rate\": [0-9.e+-]+, \"mean_speed\": [0-9.e+-]+, \"wall_s\": [0-9.e+-]+, \"set\": \"dense-reactive\", \"controller\": \"idm\"")
add_test(NAME eval_per_episode COMMAND ${_ew} eval --controller none --set dense-replay --episodes 3 --json --per-episode --quiet)
set_tests_properties(eval_per_episode PROPERTIES PASS_REGULAR_EXPRESSION
  "\"per_episode\": \\[{\"index\": 0, \"seed\": 2000000, .*{\"index\": 2, \"seed\": 2000002, ")
# --workers 1 and 2 print the same results (wall_s aside)
add_test(NAME eval_workers_independent COMMAND sh -c
  "a=$('${_ew}' eval --set merge --episodes 6 --workers 1 --json --per-episode --quiet | sed 's/\"wall_s\": [^,]*,//; s/\"workers\": [0-9]*,//; s/\"plan_ms[a-z_]*\": [^,]*,//g') && b=$('${_ew}' eval --set merge --episodes 6 --workers 2 --json --per-episode --quiet | sed 's/\"wall_s\": [^,]*,//; s/\"workers\": [0-9]*,//; s/\"plan_ms[a-z_]*\": [^,]*,//g') && test -n \"$a\" && test \"$a\" = \"$b\"")
add_test(NAME eval_table COMMAND ${_ew} eval --set dense-reactive --controller none --episodes 3 --quiet)
set_tests_properties(eval_table PROPERTIES PASS_REGULAR_EXPRESSION "controller +episodes +success.*\nnone +3 ")
add_test(NAME eval_bad_set COMMAND ${_ew} eval --set nowhere --episodes 2)
set_tests_properties(eval_bad_set PROPERTIES PASS_REGULAR_EXPRESSION "^egoworld eval: unknown set 'nowhere'")
add_test(NAME eval_bad_controller COMMAND ${_ew} eval --controller warp --episodes 2)
set_tests_properties(eval_bad_controller PROPERTIES PASS_REGULAR_EXPRESSION "^egoworld eval: controller: unknown controller 'warp'")
add_test(NAME eval_bad_flag COMMAND ${_ew} eval --episodes 0)
set_tests_properties(eval_bad_flag PROPERTIES PASS_REGULAR_EXPRESSION "egoworld eval: --episodes")
add_test(NAME eval_exit_status COMMAND sh -c
  "'${_ew}' eval --episodes 2 --quiet >/dev/null && ! '${_ew}' eval --set nowhere 2>/dev/null && { '${_ew}' eval --set nowhere 2>/dev/null; test $? -eq 2; } && { '${_ew}' eval --controller policy:/no/file.safetensors --episodes 1 2>/dev/null; test $? -eq 1; }")
add_test(NAME eval_help COMMAND ${_ew} eval --help)
set_tests_properties(eval_help PROPERTIES PASS_REGULAR_EXPRESSION "dense-replay.*merge.*lua:")
