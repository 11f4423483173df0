# End-to-end tests of the physics-from-video commands (train-tracker, eval-tracker,
# train-predictor, eval-predictor): tiny runs, JSON keys, resume = uninterrupted run, usage errors.
set(_ew $<TARGET_FILE:egoworld>)
set(_tiny "--batch 2 --channels 4 --layers 2 --seed 5")
# Resume: 12 steps then --resume to 20 gives the same checkpoint bytes as 20 steps at once.
add_test(NAME cli_track_resume COMMAND sh -c
  "d=$(mktemp -d) && '${_ew}' train-tracker --out \"$d/a.safetensors\" --steps 20 ${_tiny} >/dev/null 2>&1 && '${_ew}' train-tracker --out \"$d/b.safetensors\" --steps 12 ${_tiny} >/dev/null 2>&1 && '${_ew}' train-tracker --out \"$d/b.safetensors\" --steps 20 --resume ${_tiny} >/dev/null 2>&1 && cmp \"$d/a.safetensors\" \"$d/b.safetensors\" && rm -rf \"$d\"")
add_test(NAME cli_track_eval_json COMMAND sh -c
  "d=$(mktemp -d) && '${_ew}' train-tracker --out \"$d/t.safetensors\" --steps 5 ${_tiny} >/dev/null 2>&1 && '${_ew}' eval-tracker --model \"$d/t.safetensors\" --frames 5 --degrade degraded --json 2>/dev/null; rc=$?; rm -rf \"$d\"; exit $rc")
set_tests_properties(cli_track_eval_json PROPERTIES PASS_REGULAR_EXPRESSION
  "\"median_error_m\": [-0-9.a-z]+, \"p95_error_m\": [-0-9.a-z]+, \"precision\": [-0-9.a-z]+, \"recall\": [0-9.]+, \"baseline_median_error_m\": [0-9.]+")
add_test(NAME cli_track_predictor_truth COMMAND sh -c
  "d=$(mktemp -d) && '${_ew}' train-tracker --out \"$d/t.safetensors\" --steps 3 ${_tiny} >/dev/null 2>&1 && '${_ew}' train-predictor --tracker \"$d/t.safetensors\" --out \"$d/p.safetensors\" --truth --frames 120 --steps 5 --batch 4 --hidden 8 --json 2>/dev/null; rc=$?; rm -rf \"$d\"; exit $rc")
set_tests_properties(cli_track_predictor_truth PROPERTIES PASS_REGULAR_EXPRESSION "\"steps\": 5, \"windows\": [1-9][0-9]*, \"source\": \"truth\"")
add_test(NAME cli_track_usage COMMAND sh -c
  "'${_ew}' train-tracker --steps 10 2>&1; test $? -eq 2 && '${_ew}' train-tracker --out x --steps 0 2>&1; test $? -eq 2 && '${_ew}' eval-predictor --model a 2>&1; test $? -eq 2 && '${_ew}' eval-tracker --model /nonexistent.safetensors 2>&1; test $? -eq 1")
set_tests_properties(cli_track_usage PROPERTIES PASS_REGULAR_EXPRESSION
  "train-tracker: --out FILE is required.*train-tracker: --steps.*eval-predictor: --gt-model FILE is required.*egoworld eval-tracker: /nonexistent.safetensors")
foreach(_c train-tracker eval-tracker train-predictor eval-predictor)
  add_test(NAME cli_track_help_${_c} COMMAND ${_ew} ${_c} --help)
  set_tests_properties(cli_track_help_${_c} PROPERTIES PASS_REGULAR_EXPRESSION "usage: egoworld ${_c}")
endforeach()
# eval-predictor: the calibration's validation videos (seeds 50..55 by default) never include the test seed.
add_test(NAME cli_predictor_cal_seed COMMAND sh -c
  "'${_ew}' eval-predictor --model a --gt-model b --tracker c --seed 51 2>&1; test $? -eq 2 && '${_ew}' eval-predictor --model a --gt-model b --tracker c --seed 52 --cal-seed 40 --cal-videos 13 2>&1; test $? -eq 2")
set_tests_properties(cli_predictor_cal_seed PROPERTIES PASS_REGULAR_EXPRESSION
  "eval-predictor: --cal-seed: the validation seeds must not include the test --seed.*eval-predictor: --cal-seed")
# Second phase: --resume --local-loss trains on (saved in the checkpoint: a later resume, here a
# recalibration only at the same step with --cal-quantile, stays local); bad quantile: usage error.
add_test(NAME cli_track_local_phase COMMAND sh -c
  "d=$(mktemp -d) && '${_ew}' train-tracker --out \"$d/a.safetensors\" --steps 6 ${_tiny} >/dev/null 2>&1 && '${_ew}' train-tracker --out \"$d/a.safetensors\" --steps 9 --resume --local-loss --lr 2e-4 ${_tiny} --json 2>/dev/null && '${_ew}' train-tracker --out \"$d/a.safetensors\" --steps 9 --resume --cal-quantile 0.02 ${_tiny} --json 2>/dev/null; rc=$?; rm -rf \"$d\"; exit $rc")
set_tests_properties(cli_track_local_phase PROPERTIES PASS_REGULAR_EXPRESSION
  "\"steps\": 9,[^\n]*\"local_loss\": 1[^\n]*\n[^\n]*\"steps\": 9,[^\n]*\"local_loss\": 1")
add_test(NAME cli_track_cal_quantile_usage COMMAND sh -c
  "'${_ew}' train-tracker --out /nonexistent/x.safetensors --cal-quantile 1.5 2>&1; test $? -eq 2")
set_tests_properties(cli_track_cal_quantile_usage PROPERTIES PASS_REGULAR_EXPRESSION "--cal-quantile")
# eval-tracker also scores both detectors on the vehicle-frames both found (keys at the end).
add_test(NAME cli_track_eval_common COMMAND sh -c
  "d=$(mktemp -d) && '${_ew}' train-tracker --out \"$d/t.safetensors\" --steps 5 ${_tiny} >/dev/null 2>&1 && '${_ew}' eval-tracker --model \"$d/t.safetensors\" --frames 5 --peak-thr -1000 --json 2>/dev/null; rc=$?; rm -rf \"$d\"; exit $rc")
set_tests_properties(cli_track_eval_common PROPERTIES PASS_REGULAR_EXPRESSION
  "\"peak_thr\": -1000.0000, \"common_vehicles\": [1-9][0-9]*, \"common_median_error_m\": [0-9.]+, \"common_baseline_median_error_m\": [0-9.]+}")
