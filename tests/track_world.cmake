# eval-tracker --imagined end to end on the tiny world-model fixture of world_model.cmake
# (24 x 16 rasters at 1.2 m/px, a world model trained 8 steps) with the shipped tracker
# (assets/tracker.safetensors): every key per horizon; on the REAL frames the tracker and the
# connected components must find every scored vehicle within 0.3 m of the simulator's truth
# (this checks the resampling to the tracker's frame, the pose transforms and the matching:
# a flipped axis or a wrong pose gives metres); the imagined frames of an 8-step model are
# only checked to be scored.
set(_ew $<TARGET_FILE:egoworld>)
set(_wd ${CMAKE_CURRENT_BINARY_DIR}/world_cli)
add_test(NAME track_world_imagined COMMAND sh -c
  "cd '${_wd}' && '${_ew}' eval-tracker --imagined --world a.safetensors --data data --model '${CMAKE_SOURCE_DIR}/assets/tracker.safetensors' --max-samples 6 --stride 10 --json")
set_tests_properties(track_world_imagined PROPERTIES FIXTURES_REQUIRED "world_cli;world_cli_model" PASS_REGULAR_EXPRESSION
  "\"samples\": 6.*\"scored_1s\": [1-9][0-9]*.*\"error_1s_m\": [0-9.]+, \"median_error_1s_m\": [0-9.]+, \"recall_1s\": [0-9.]+, \"precision_1s\": [0-9.]+.*\"error_3s_m\".*\"real_error_1s_m\": 0\\.[0-2][0-9]*, \"real_median_error_1s_m\": 0\\.[0-2][0-9]*, \"real_recall_1s\": 1\\.0000.*\"real_error_3s_m\": 0\\.[0-2][0-9]*,.*\"copy_error_1s_m\": [0-9.]+.*\"blob_error_1s_m\".*\"blob_real_error_1s_m\": 0\\.[0-2][0-9]*, \"blob_real_median_error_1s_m\": 0\\.[0-2][0-9]*, \"blob_real_recall_1s\": 1\\.0000")
add_test(NAME track_world_usage COMMAND sh -c
  "'${_ew}' eval-tracker --imagined --world w --data d 2>&1; test $? -eq 2 && '${_ew}' eval-tracker --imagined --world w --data d --model m --layers rgb 2>&1; test $? -eq 2 && '${_ew}' eval-tracker --imagined --world /nonexistent.safetensors --data d --model '${CMAKE_SOURCE_DIR}/assets/tracker.safetensors' 2>&1; test $? -eq 1")
set_tests_properties(track_world_usage PROPERTIES PASS_REGULAR_EXPRESSION
  "eval-tracker: --model FILE is required with --imagined.*--layers: expected grey or vehicles, not 'rgb'.*egoworld eval-tracker: .*nonexistent")
add_test(NAME track_world_help COMMAND ${_ew} eval-tracker --imagined --help)
set_tests_properties(track_world_help PROPERTIES PASS_REGULAR_EXPRESSION "usage: egoworld eval-tracker --imagined")
