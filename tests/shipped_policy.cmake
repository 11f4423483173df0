# The shipped policy (assets/policy.safetensors, `--controller policy:`) drives: the first 4
# episodes of the held-out dense-reactive set (all 4 succeed on the development machine; at
# least 3 are required, for other CPUs' float rounding).
add_test(NAME cli_shipped_policy_drives COMMAND $<TARGET_FILE:egoworld> eval --controller policy: --set dense-reactive
  --episodes 4 --workers 1 --json --quiet)
set_tests_properties(cli_shipped_policy_drives PROPERTIES WORKING_DIRECTORY ${CMAKE_SOURCE_DIR}
  PASS_REGULAR_EXPRESSION "\"success_rate\": (1|0\\.75),")
