# Crash safety of train-world and train-policy (tools/kill_resume.sh, docs/RELIABILITY.md):
# 20 runs each killed with SIGKILL at random moments (up to 3 kills per run) and resumed, on a
# tiny dataset and model; every checkpoint seen after a kill is complete, progress never goes
# back, and the resumed results are byte-identical to an uninterrupted run. Also a kill inside
# a checkpoint write and in each write of the final step, an injected and a real write failure
# (file size limit; a full tmpfs as root) and a read-only output folder: exit 1 with one line,
# the previous checkpoint kept.
set(_ew $<TARGET_FILE:egoworld>)
add_test(NAME crash_resume_train_world COMMAND sh ${CMAKE_SOURCE_DIR}/tools/kill_resume.sh ${_ew} world 20
         ${CMAKE_CURRENT_BINARY_DIR}/crash_world 1)
set_tests_properties(crash_resume_train_world PROPERTIES TIMEOUT 900 LABELS "slow;crash"
                     PASS_REGULAR_EXPRESSION "train-world crash safety: OK" FAIL_REGULAR_EXPRESSION "FAIL:")
add_test(NAME crash_resume_train_policy COMMAND sh ${CMAKE_SOURCE_DIR}/tools/kill_resume.sh ${_ew} policy 20
         ${CMAKE_CURRENT_BINARY_DIR}/crash_policy 1)
set_tests_properties(crash_resume_train_policy PROPERTIES TIMEOUT 600 LABELS crash
                     PASS_REGULAR_EXPRESSION "train-policy crash safety: OK" FAIL_REGULAR_EXPRESSION "FAIL:")
