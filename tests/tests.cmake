# Unit tests: one executable per tests/unit/test_<module>[_<aspect>].c, labelled
# "unit". A test links the library of the module it mirrors: the first
# src/<dir>/tg_<module>.c found decides; otherwise it links everything.
pkg_check_modules(CMOCKA REQUIRED IMPORTED_TARGET cmocka)

file(GLOB TG_UNIT_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/unit/test_*.c)
foreach(src ${TG_UNIT_TESTS})
  get_filename_component(name ${src} NAME_WE)
  string(REGEX REPLACE "^test_" "" mod ${name})
  set(lib tlsgate_all)
  while(NOT mod STREQUAL "")
    file(GLOB hit ${CMAKE_SOURCE_DIR}/src/*/tg_${mod}.c)
    if(hit)
      list(GET hit 0 hit)
      get_filename_component(dir ${hit} DIRECTORY)
      get_filename_component(dir ${dir} NAME)
      set(lib tg_${dir})
      break()
    endif()
    if(mod MATCHES "_")
      string(REGEX REPLACE "_[^_]*$" "" mod ${mod})
    else()
      set(mod "")
    endif()
  endwhile()
  add_executable(${name} ${src} ${CMAKE_SOURCE_DIR}/tests/unit/tg_test_util.c)
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR}/tests/unit)
  target_link_libraries(${name} PRIVATE ${lib} PkgConfig::CMOCKA)
  add_test(NAME unit/${name} COMMAND ${name})
  set_tests_properties(unit/${name} PROPERTIES LABELS unit TIMEOUT 300
    ENVIRONMENT "TG_TEST_DATA=${CMAKE_SOURCE_DIR}/tests/data;TG_BUILD_DIR=${CMAKE_BINARY_DIR};TG_SRC_DIR=${CMAKE_SOURCE_DIR}")
endforeach()

# Fakes of vendor libraries (shared objects the shims load in tests).
file(GLOB TG_FAKES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/fakes/*.cmake)
foreach(f ${TG_FAKES})
  include(${f})
endforeach()

# Integration tests: scripts that drive the real binary with real clients.
file(GLOB TG_INTEG_TESTS CONFIGURE_DEPENDS
     ${CMAKE_SOURCE_DIR}/tests/integration/test_*.sh
     ${CMAKE_SOURCE_DIR}/tests/integration/test_*.py)
foreach(script ${TG_INTEG_TESTS})
  get_filename_component(name ${script} NAME_WE)
  add_test(NAME integration/${name} COMMAND ${script})
  set_tests_properties(integration/${name} PROPERTIES LABELS integration TIMEOUT 600
    ENVIRONMENT "TLSGATE=$<TARGET_FILE:tlsgate>;TG_BUILD_DIR=${CMAKE_BINARY_DIR};TG_SRC_DIR=${CMAKE_SOURCE_DIR}")
endforeach()

# Lint: formatting and banned functions.
foreach(check format banned)
  add_test(NAME lint/${check} COMMAND ${CMAKE_SOURCE_DIR}/tests/lint/check_${check}.sh)
  set_tests_properties(lint/${check} PROPERTIES LABELS lint TIMEOUT 120
    ENVIRONMENT "TG_SRC_DIR=${CMAKE_SOURCE_DIR}")
endforeach()
