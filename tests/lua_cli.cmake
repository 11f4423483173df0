# End-to-end runs of the Lua and NGSIM commands (owned by lua/, see docs/LUA_API.md).
add_test(NAME lua_cli_program COMMAND egoworld lua tests/lua/episode.lua 3 WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(lua_cli_program PROPERTIES PASS_REGULAR_EXPRESSION "status=success" TIMEOUT 60)
add_test(NAME lua_cli_run_scenario COMMAND egoworld run --scenario scenarios/cut_in.lua --headless --quiet --json
         WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(lua_cli_run_scenario PROPERTIES PASS_REGULAR_EXPRESSION "\"script_metrics\": {\"cutin_id\"" TIMEOUT 60)
add_test(NAME lua_cli_export_ngsim COMMAND egoworld export-ngsim --scenario scenarios/dense_3lane.lua --steps 20
         --out ${CMAKE_BINARY_DIR}/export_ngsim_test.txt --json WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(lua_cli_export_ngsim PROPERTIES PASS_REGULAR_EXPRESSION "\"frames\": 21" TIMEOUT 60)
add_test(NAME lua_cli_sandboxed COMMAND egoworld lua --json tests/lua/episode.lua WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(lua_cli_sandboxed PROPERTIES PASS_REGULAR_EXPRESSION "\"ok\": true" TIMEOUT 60)
