# bench plan (planner/mpc.h through app/bench_plan.c) with a tiny random world model.
set(_ew $<TARGET_FILE:egoworld>)
add_test(NAME cli_bench_plan_json COMMAND ${_ew} bench plan --world random --nf 4 --hidden 16 --n-cond 4 --steps 3 --horizon 10 --iters 3 --refresh 2 --json)
set_tests_properties(cli_bench_plan_json PROPERTIES
  PASS_REGULAR_EXPRESSION "\"controller\":\"mpc-km\".*\"control_steps\":3,\"plan_ms_per_step\":[0-9.]+.*\"refreshes\":2,\"tails\":1")
add_test(NAME cli_bench_plan_bad_controller COMMAND ${_ew} bench plan --world random --nf 4 --hidden 16 --n-cond 4 --controller warp)
set_tests_properties(cli_bench_plan_bad_controller PROPERTIES WILL_FAIL FALSE PASS_REGULAR_EXPRESSION "egoworld bench plan: mpc: unknown controller 'warp'")
