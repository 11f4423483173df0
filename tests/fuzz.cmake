# Fuzz targets (fuzz/fuzz_<name>.c, each defining LLVMFuzzerTestOneInput).
#  - Always: fuzz_<name>_corpus = the target + fuzz/driver_main.c, a CTest test that runs every
#    file of fuzz/corpus/<name>/ (seeds and every crasher found so far) through the target.
#    Under EGOWORLD_SANITIZE this replays the corpus with ASan + UBSan.
#  - With -DEGOWORLD_FUZZ=ON and clang: also fuzz_<name>, a real libFuzzer binary. The libraries
#    must carry coverage instrumentation too, so configure the whole tree for it:
#      CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEGOWORLD_FUZZ=ON \
#        -DEGOWORLD_SANITIZE=ON -DEGOWORLD_WERROR=OFF -DCMAKE_C_FLAGS=-fsanitize=fuzzer-no-link
#      cmake --build build-fuzz -j2 --target fuzz_ngsim
#      build-fuzz/tests/fuzz_ngsim -max_len=4096 -timeout=5 -rss_limit_mb=2048 \
#        NEW_CORPUS_DIR fuzz/corpus/ngsim          (docs/RELIABILITY.md has the exact runs)
option(EGOWORLD_FUZZ "Build libFuzzer binaries for fuzz/fuzz_*.c (clang only)" OFF)
if(EGOWORLD_FUZZ AND NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "EGOWORLD_FUZZ needs clang (CC=clang); the compiler is ${CMAKE_C_COMPILER_ID}")
endif()
file(GLOB _fuzz_targets CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/fuzz/fuzz_*.c)
foreach(_f ${_fuzz_targets})
  get_filename_component(_n ${_f} NAME_WE)
  string(REGEX REPLACE "^fuzz_" "" _short ${_n})
  add_executable(${_n}_corpus ${_f} ${CMAKE_SOURCE_DIR}/fuzz/driver_main.c)
  target_link_libraries(${_n}_corpus PRIVATE ${EGOWORLD_LIBS})
  add_test(NAME ${_n}_corpus COMMAND ${_n}_corpus ${CMAKE_SOURCE_DIR}/fuzz/corpus/${_short}
           WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(${_n}_corpus PROPERTIES TIMEOUT 300 LABELS fuzz)
  if(EGOWORLD_FUZZ)
    add_executable(${_n} ${_f})
    target_link_libraries(${_n} PRIVATE ${EGOWORLD_LIBS})
    target_compile_options(${_n} PRIVATE -fsanitize=fuzzer)
    target_link_options(${_n} PRIVATE -fsanitize=fuzzer)
  endif()
endforeach()
