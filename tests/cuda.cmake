# The parity test's harness and the device-memory paths of graphs and models, run without a
# GPU: the CPU backend behind a forwarding "device" backend with malloc'd memory (see
# tests/test_backend_parity.c). test_backend_parity itself skips (77) without a device.
add_test(NAME backend_parity_selftest COMMAND test_backend_parity WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(backend_parity_selftest PROPERTIES ENVIRONMENT "EW_PARITY_SELFTEST=1"
  PASS_REGULAR_EXPRESSION "not a CUDA result.*[1-9][0-9]* passed, 0 failed" TIMEOUT 120)
