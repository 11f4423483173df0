# End-to-end tests of train-world, eval-world and imagine on a tiny dataset and a tiny model
# (nf 4, hidden 16, 24 x 16 images): each runs in a second or two.
set(_ew $<TARGET_FILE:egoworld>)
set(_wd ${CMAKE_CURRENT_BINARY_DIR}/world_cli)
set(_tiny --data ${_wd}/data --batch 4 --nf 4 --hidden 16 --n-cond 4 --n-pred 3 --rows 24 --cols 16 --mpp 1.2
          --threads 2 --ckpt-every 2 --val-every 3 --val-samples 8 --lr 1e-3 --lr-min 1e-4)
string(REPLACE ";" " " _tiny_s "${_tiny}")

add_test(NAME world_cli_data COMMAND sh -c
  "rm -rf '${_wd}' && mkdir -p '${_wd}' && '${_ew}' collect dense-3lane free-2lane --out '${_wd}/data' --episodes 30 --steps 60 --workers 1 --quiet >/dev/null")
set_tests_properties(world_cli_data PROPERTIES FIXTURES_SETUP world_cli)

# An uninterrupted run (8 steps) and a run stopped by a NaN batch at step 6 (its step-4
# checkpoint is kept, exit 1 with the reason), then resumed: bit-identical files.
add_test(NAME world_cli_resume COMMAND sh -c
  "cd '${_wd}' && '${_ew}' train-world ${_tiny_s} --steps 8 --out a.safetensors 2>/dev/null >/dev/null || exit 1; \
   EGOWORLD_FAULT_NAN_STEP=6 '${_ew}' train-world ${_tiny_s} --steps 8 --out b.safetensors 2>err.txt >/dev/null; \
   test $? -eq 1 || exit 2; grep -q 'step 6: .*not finite.*last good checkpoint b.ckpt.safetensors (step 4) is kept' err.txt || exit 3; \
   head -c 4096 b.ckpt.safetensors | grep -aq '\"egoworld.train.step\":\"4\"' || exit 4; \
   cmp -s a.safetensors b.safetensors && exit 5; \
   '${_ew}' train-world ${_tiny_s} --steps 8 --out b.safetensors --resume 2>/dev/null >/dev/null || exit 6; \
   cmp a.safetensors b.safetensors && cmp a.ckpt.safetensors b.ckpt.safetensors || exit 7; \
   test $(wc -l < b.csv) -eq 9 && test \"$(cut -d, -f1 b.csv | tail -n 8 | tr '\\n' ' ')\" = '1 2 3 4 5 6 7 8 ' || exit 8")
set_tests_properties(world_cli_resume PROPERTIES FIXTURES_REQUIRED world_cli FIXTURES_SETUP world_cli_model)

# The stochastic model from the deterministic one, evaluated with 3 samples: every key.
add_test(NAME world_cli_eval COMMAND sh -c
  "cd '${_wd}' && '${_ew}' train-world ${_tiny_s} --steps 2 --stochastic --init a.safetensors --out s.safetensors 2>/dev/null >/dev/null && \
   '${_ew}' eval-world --model s.safetensors --data data --samples 3 --stride 10 --max-samples 6 --json")
set_tests_properties(world_cli_eval PROPERTIES FIXTURES_REQUIRED "world_cli;world_cli_model" PASS_REGULAR_EXPRESSION
  "\"stochastic\": 1.*\"samples\": 6, \"k\": 3.*\"model_mse_0.5s\": [0-9.e-]+, \"model_mse_1s\": [0-9.e-]+, \"model_mse_2s\": [0-9.e-]+, \"model_mse_3s\": [0-9.e-]+, \"model_best_of_k_mse_0.5s\".*\"copy_last_mse_1s\": [0-9.e-]+, \"copy_last_mse_2s\".*\"ego_shift_mse_1s\": [0-9.e-]+, \"ego_shift_mse_2s\".*\"const_vel_mse_1s\": [0-9.e-]+, \"const_vel_mse_2s\".*\"model_pos_err_1s\".*\"model_recall_2s\".*\"const_vel_pos_err_3s\"")

# imagine writes a PNG of (1 + K) x 7 cells (scale 2: cells 32 x 48 plus the 1-px grid).
add_test(NAME world_cli_imagine COMMAND sh -c
  "cd '${_wd}' && '${_ew}' imagine --model a.safetensors --data data --out strip.png --scale 2 >/dev/null && \
   head -c 8 strip.png | od -c | grep -q 'P   N   G' && \
   test \"$(od -An -tu1 -j16 -N8 strip.png | tr -s ' ' | sed 's/^ //')\" = '0 0 0 232 0 0 0 99' && \
   '${_ew}' imagine --model a.safetensors --scenario free-2lane --warmup 10 --count 2 --out strips >/dev/null && \
   test -s strips/strip_000.png && test -s strips/strip_001.png")
set_tests_properties(world_cli_imagine PROPERTIES FIXTURES_REQUIRED "world_cli;world_cli_model")

add_test(NAME world_cli_usage COMMAND sh -c
  "'${_ew}' train-world --out x.safetensors 2>&1; test $? -eq 2 && '${_ew}' train-world --data d --out x --variant no 2>&1; test $? -eq 2 && '${_ew}' eval-world --model x 2>&1; test $? -eq 2")
set_tests_properties(world_cli_usage PROPERTIES PASS_REGULAR_EXPRESSION
  "train-world: --data DIR is required.*--variant: expected fm, fm-km or fm-km-noaction.*eval-world: --data DIR is required")
