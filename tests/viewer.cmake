# Viewer tests beyond test_viewer.c (which skips itself when the viewer is not built).
if(TARGET egoworld_viz)
  if(EGOWORLD_SANITIZE)
    # Mesa (llvmpipe), X11 and SDL keep allocations until process exit that LeakSanitizer
    # reports as leaks; leak detection is off for the window test only (ASan's other checks stay).
    set_property(TEST test_viewer APPEND PROPERTY ENVIRONMENT "ASAN_OPTIONS=detect_leaks=0")
  endif()
  add_test(NAME viewer_help_lists_keys COMMAND egoworld run --help)
  set_tests_properties(viewer_help_lists_keys PROPERTIES
    PASS_REGULAR_EXPRESSION "arrows +drive the ego.*F12 or p +screenshot")
endif()
