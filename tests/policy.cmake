# End-to-end tests of `egoworld train-policy` (models/policy.h, planner/policy_train.h,
# planner/mpur.h) on a tiny dataset collected inside the test.
set(_ew $<TARGET_FILE:egoworld>)
set(_tiny "--nf 2 --proj 8 --hidden 8 --n-cond 3 --batch 4 --threads 1 --val-samples 8 --val-every 3 --log-every 1")

# An interrupted run resumed from its checkpoint ends bit-identical to an uninterrupted one
# (policy file and checkpoint with the optimizer state), and the CSV has one row per step
# (the same rows but for the timing column).
add_test(NAME cli_train_policy_resume COMMAND sh -c
  "d=$(mktemp -d) && '${_ew}' collect dense-3lane --episodes 10 --steps 50 --seed 4 --workers 1 --quiet --out \"$d/data\" >/dev/null && \
   '${_ew}' train-policy --method imitation --data \"$d/data\" --out \"$d/a.safetensors\" ${_tiny} --steps 6 --ckpt-every 2 2>/dev/null && \
   '${_ew}' train-policy --method imitation --data \"$d/data\" --out \"$d/b.safetensors\" ${_tiny} --steps 4 --ckpt-every 2 2>/dev/null && \
   '${_ew}' train-policy --method imitation --data \"$d/data\" --out \"$d/b.safetensors\" ${_tiny} --steps 6 --ckpt-every 2 --resume --json 2>/dev/null > \"$d/j\" && \
   cmp \"$d/a.safetensors\" \"$d/b.safetensors\" && cmp \"$d/a.ckpt.safetensors\" \"$d/b.ckpt.safetensors\" && cut -d, -f1-5 \"$d/a.csv\" > \"$d/ac\" && cut -d, -f1-5 \"$d/b.csv\" > \"$d/bc\" && cmp \"$d/ac\" \"$d/bc\" && \
   test $(wc -l < \"$d/a.csv\") -eq 7 && grep -q '\"start_step\": 4' \"$d/j\" && \
   '${_ew}' train-policy --method imitation --data \"$d/data\" --out \"$d/c.safetensors\" ${_tiny} --steps 6 --seed 2 2>/dev/null && \
   ! cmp -s \"$d/a.safetensors\" \"$d/c.safetensors\" && cat \"$d/j\" && rm -rf \"$d\"")
set_tests_properties(cli_train_policy_resume PROPERTIES WORKING_DIRECTORY ${CMAKE_SOURCE_DIR}
  PASS_REGULAR_EXPRESSION "\"method\": \"imitation\".*\"steps\": 6")

# Imitation learns: the training loss falls on a small dataset over a few hundred steps.
add_test(NAME cli_train_policy_imitation_learns COMMAND sh -c
  "d=$(mktemp -d) && '${_ew}' collect dense-3lane --episodes 6 --steps 60 --seed 5 --workers 1 --quiet --out \"$d/data\" >/dev/null && \
   '${_ew}' train-policy --method imitation --data \"$d/data\" --out \"$d/p.safetensors\" ${_tiny} --steps 150 --lr 3e-3 --json 2>/dev/null > \"$d/j\" && \
   awk -F, 'NR>1 && NR<=11 {a+=$2} NR>141 {b+=$2} END {print \"first\", a/10, \"last\", b/10; exit !(b < 0.7*a)}' \"$d/p.csv\" && rm -rf \"$d\"")
set_tests_properties(cli_train_policy_imitation_learns PROPERTIES WORKING_DIRECTORY ${CMAKE_SOURCE_DIR}
  PASS_REGULAR_EXPRESSION "first [0-9.e+-]+ last")

# Errors: one line naming the file; usage errors name the flag (exit 2).
add_test(NAME cli_train_policy_bad_init COMMAND sh -c
  "d=$(mktemp -d) && '${_ew}' collect dense-3lane --episodes 3 --steps 40 --seed 4 --workers 1 --quiet --out \"$d/data\" >/dev/null && \
   echo garbage > \"$d/bad.safetensors\" && ! '${_ew}' train-policy --data \"$d/data\" --out \"$d/p.safetensors\" --init \"$d/bad.safetensors\" 2> \"$d/e\"; \
   s=$?; cat \"$d/e\"; test $(wc -l < \"$d/e\") -eq 1 && rm -rf \"$d\"")
set_tests_properties(cli_train_policy_bad_init PROPERTIES WORKING_DIRECTORY ${CMAKE_SOURCE_DIR}
  PASS_REGULAR_EXPRESSION "^egoworld train-policy: [^\n]*bad.safetensors: [^\n]+\n$")
add_test(NAME cli_train_policy_bad_world COMMAND sh -c
  "d=$(mktemp -d) && echo garbage > \"$d/w.safetensors\" && '${_ew}' train-policy --method mpur --data \"$d\" --world \"$d/w.safetensors\" --out \"$d/p.safetensors\"; echo \"exit $?\"; rm -rf \"$d\"")
set_tests_properties(cli_train_policy_bad_world PROPERTIES
  PASS_REGULAR_EXPRESSION "egoworld train-policy: [^\n]*w.safetensors: [^\n]+\nexit 1")
add_test(NAME cli_train_policy_bad_method COMMAND sh -c "'${_ew}' train-policy --method dagger --data x --out y; echo \"exit $?\"")
set_tests_properties(cli_train_policy_bad_method PROPERTIES PASS_REGULAR_EXPRESSION "--method: expected imitation or mpur, not 'dagger'\nexit 2")
add_test(NAME cli_train_policy_bad_steps COMMAND sh -c "'${_ew}' train-policy --steps 0 --data x --out y; echo \"exit $?\"")
set_tests_properties(cli_train_policy_bad_steps PROPERTIES PASS_REGULAR_EXPRESSION "train-policy: --steps: [^\n]*\nexit 2")
add_test(NAME cli_train_policy_help COMMAND ${_ew} train-policy --help)
set_tests_properties(cli_train_policy_help PROPERTIES PASS_REGULAR_EXPRESSION "--method M.*--u-samples.*--resume")

# MPUR end to end on a tiny world model trained inside the test: the run writes the
# uncertainty statistics into the checkpoint, and resuming equals the uninterrupted run.
add_test(NAME cli_train_policy_mpur_resume COMMAND sh -c
  "d=$(mktemp -d) && '${_ew}' collect dense-3lane --episodes 8 --steps 50 --seed 4 --workers 1 --quiet --out \"$d/data\" >/dev/null && \
   '${_ew}' train-world --data \"$d/data\" --out \"$d/w.safetensors\" --nf 2 --hidden 8 --n-cond 3 --n-pred 2 --steps 2 --batch 2 --threads 1 --val-samples 0 >/dev/null 2>&1 && \
   m=\"--method mpur --world $d/w.safetensors --data $d/data --nf 2 --proj 8 --hidden 8 --batch 2 --horizon 3 --u-samples 3 --ustats-batches 2 --threads 1 --val-samples 4 --val-every 2 --ckpt-every 2\" && \
   '${_ew}' train-policy $m --out \"$d/a.safetensors\" --steps 4 2>/dev/null && \
   '${_ew}' train-policy $m --out \"$d/b.safetensors\" --steps 2 2>/dev/null && \
   '${_ew}' train-policy $m --out \"$d/b.safetensors\" --steps 4 --resume --json 2>/dev/null > \"$d/j\" && \
   cmp \"$d/a.safetensors\" \"$d/b.safetensors\" && cmp \"$d/a.ckpt.safetensors\" \"$d/b.ckpt.safetensors\" && \
   grep -q 'egoworld.mpur' \"$d/a.safetensors\" && cat \"$d/j\" && rm -rf \"$d\"")
set_tests_properties(cli_train_policy_mpur_resume PROPERTIES WORKING_DIRECTORY ${CMAKE_SOURCE_DIR}
  PASS_REGULAR_EXPRESSION "\"method\": \"mpur\".*\"start_step\": 2.*\"horizon\": 3, \"u_samples\": 3")

# The decoupled (FM-KM) form end to end: resuming equals the uninterrupted run, the form is
# recorded, a bad --form is a usage error.
add_test(NAME cli_train_policy_mpur_decoupled_resume COMMAND sh -c
  "d=$(mktemp -d) && '${_ew}' collect dense-3lane --episodes 8 --steps 50 --seed 4 --workers 1 --quiet --out \"$d/data\" >/dev/null && \
   '${_ew}' train-world --data \"$d/data\" --out \"$d/w.safetensors\" --nf 2 --hidden 8 --n-cond 3 --n-pred 2 --steps 2 --batch 2 --threads 1 --val-samples 0 >/dev/null 2>&1 && \
   m=\"--method mpur --form decoupled --world $d/w.safetensors --data $d/data --nf 2 --proj 8 --hidden 8 --batch 2 --horizon 3 --u-samples 3 --ustats-batches 2 --threads 1 --val-samples 4 --val-every 2 --ckpt-every 2\" && \
   '${_ew}' train-policy $m --out \"$d/a.safetensors\" --steps 4 2>/dev/null && \
   '${_ew}' train-policy $m --out \"$d/b.safetensors\" --steps 2 2>/dev/null && \
   '${_ew}' train-policy $m --out \"$d/b.safetensors\" --steps 4 --resume --json 2>/dev/null > \"$d/j\" && \
   cmp \"$d/a.safetensors\" \"$d/b.safetensors\" && cmp \"$d/a.ckpt.safetensors\" \"$d/b.ckpt.safetensors\" && \
   ! '${_ew}' train-policy --method mpur --form sideways --data x --out y 2> \"$d/e\" && grep -q -- '--form: expected coupled or decoupled' \"$d/e\" && \
   cat \"$d/j\" && rm -rf \"$d\"")
set_tests_properties(cli_train_policy_mpur_decoupled_resume PROPERTIES WORKING_DIRECTORY ${CMAKE_SOURCE_DIR}
  PASS_REGULAR_EXPRESSION "\"method\": \"mpur\".*\"start_step\": 2.*\"form\": \"decoupled\", \"horizon\": 3, \"u_samples\": 3")

# Decoupled MPUR fine-tuning from an imitation policy with the rear weight: resuming equals
# the uninterrupted run, and the --init path stays in the metadata across the resume. The
# oracle diagnostic (logged future in place of the world model) runs end to end too.
add_test(NAME cli_train_policy_mpur_km_init_resume COMMAND sh -c
  "d=$(mktemp -d) && '${_ew}' collect dense-3lane --episodes 8 --steps 50 --seed 4 --workers 1 --quiet --out \"$d/data\" >/dev/null && \
   '${_ew}' train-world --data \"$d/data\" --out \"$d/w.safetensors\" --nf 2 --hidden 8 --n-cond 3 --n-pred 2 --steps 2 --batch 2 --threads 1 --val-samples 0 >/dev/null 2>&1 && \
   '${_ew}' train-policy --method imitation --data \"$d/data\" --out \"$d/p0.safetensors\" ${_tiny} --steps 3 2>/dev/null && \
   m=\"--method mpur --form decoupled --world $d/w.safetensors --data $d/data --init $d/p0.safetensors --rear-weight 0 --batch 2 --horizon 3 --u-samples 3 --ustats-batches 2 --threads 1 --val-samples 4 --val-every 2 --ckpt-every 2\" && \
   '${_ew}' train-policy $m --out \"$d/a.safetensors\" --steps 4 2>/dev/null && \
   '${_ew}' train-policy $m --out \"$d/b.safetensors\" --steps 2 2>/dev/null && \
   '${_ew}' train-policy $m --out \"$d/b.safetensors\" --steps 4 --resume 2>/dev/null && \
   cmp \"$d/a.safetensors\" \"$d/b.safetensors\" && cmp \"$d/a.ckpt.safetensors\" \"$d/b.ckpt.safetensors\" && \
   grep -q \"egoworld.train.init.*p0.safetensors\" \"$d/b.safetensors\" && \
   ! cmp -s \"$d/p0.safetensors\" \"$d/a.safetensors\" && \
   '${_ew}' train-policy --method mpur --form decoupled --oracle --world \"$d/w.safetensors\" --data \"$d/data\" --nf 2 --proj 8 --hidden 8 --batch 2 --horizon 3 --threads 1 --val-samples 0 --out \"$d/o.safetensors\" --steps 2 --json 2>/dev/null > \"$d/j\" && \
   cat \"$d/j\" && rm -rf \"$d\"")
set_tests_properties(cli_train_policy_mpur_km_init_resume PROPERTIES WORKING_DIRECTORY ${CMAKE_SOURCE_DIR}
  PASS_REGULAR_EXPRESSION "\"method\": \"mpur\".*\"oracle\": 1, \"rear_weight\": 1")
