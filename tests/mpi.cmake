# MPI data-parallel training and distributed evaluation (models/dist.h) with 2 ranks on this
# machine (tests/mpi_test.sh: mpirun --oversubscribe, --allow-run-as-root as root). Each test
# is a few seconds; each skips (exit 77, printed reason) when built without MPI or when
# mpirun is missing. test_dist.c (a unit test of its own) is also the tool they call.
set(_ew $<TARGET_FILE:egoworld>)
set(_mpi_built OFF)
if(EGOWORLD_MPI)
  set(_mpi_built ON)
endif()
set(_mpi_san OFF)
if(EGOWORLD_SANITIZE)
  set(_mpi_san ON)
endif()
foreach(_m collectives train-world train-tracker train-predictor train-policy eval collect)
  add_test(NAME mpi_${_m} COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/mpi_test.sh ${_m} ${_ew} $<TARGET_FILE:test_dist>
           ${CMAKE_CURRENT_BINARY_DIR}/mpi/${_m} ${_mpi_built} ${_mpi_san})
  set_tests_properties(mpi_${_m} PROPERTIES WORKING_DIRECTORY ${CMAKE_SOURCE_DIR} SKIP_RETURN_CODE 77 TIMEOUT 300
                       PASS_REGULAR_EXPRESSION "${_m}: OK|SKIP:" FAIL_REGULAR_EXPRESSION "FAIL:")
endforeach()
