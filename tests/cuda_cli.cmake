# --device cpu|cuda on the trainers, the planners and the benches (app/cli.h): a bad value is a
# usage error naming the flag (exit 2); --device cuda without a CUDA build or device is one
# line "egoworld <cmd>: --device cuda: <reason>" and exit 1. The no-device tests skip (77) where
# an NVIDIA GPU is visible (there the commands start their work instead).
set(_ew $<TARGET_FILE:egoworld>)
set(_nogpu "if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then echo 'SKIP: a GPU is visible'; exit 77; fi")
set(_o /tmp/egoworld-cuda-cli-never-written.safetensors)
foreach(_pair
    "train-world|train-world --data /nonexistent --out ${_o}"
    "train-policy|train-policy --world /nonexistent --data /nonexistent --out ${_o}"
    "train-tracker|train-tracker --out ${_o}"
    "train-predictor|train-predictor --truth --out ${_o}"
    "run|run --controller mpc-km --steps 5 --quiet"
    "eval|eval --controller mpc-km --episodes 1"
    "bench nn|bench nn --steps 1"
    "bench plan|bench plan --controller mpc-km --steps 2")
  string(REPLACE "|" ";" _l "${_pair}")
  list(GET _l 0 _cmd)
  list(GET _l 1 _args)
  string(REPLACE " " "_" _t "${_cmd}")
  add_test(NAME cuda_cli_${_t} COMMAND sh -c
    "${_nogpu}; out=$('${_ew}' ${_args} --device cuda 2>&1 >/dev/null); rc=$?; echo \"rc $rc: $out\"; test $rc -eq 1 && test $(printf '%s\\n' \"$out\" | wc -l) -eq 1 && printf '%s\\n' \"$out\" | grep -q '^egoworld ${_cmd}: --device cuda: '")
  set_tests_properties(cuda_cli_${_t} PROPERTIES SKIP_RETURN_CODE 77)
endforeach()
add_test(NAME cuda_cli_bad_device COMMAND sh -c
  "out=$('${_ew}' train-world --device gpu --data x --out y 2>&1); rc=$?; echo \"rc $rc: $out\"; test $rc -eq 2 && printf '%s\\n' \"$out\" | grep -q \"egoworld train-world: --device: expected cpu or cuda, got 'gpu'\"")
add_test(NAME cuda_cli_help COMMAND sh -c
  "for c in train-world train-policy train-tracker train-predictor run eval 'bench plan'; do '${_ew}' $c --help | grep -q -- '--device cpu|cuda' || { echo \"$c --help lacks --device\"; exit 1; }; done")
