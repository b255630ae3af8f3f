# Test registration. Included by the top-level CMakeLists.txt before the
# provider folders, so they can use the functions below.
pkg_check_modules(CMOCKA REQUIRED IMPORTED_TARGET cmocka)

set(TG_TEST_ENV "TG_TEST_DATA=${CMAKE_SOURCE_DIR}/tests/data;TG_BUILD_DIR=${CMAKE_BINARY_DIR};TG_SRC_DIR=${CMAKE_SOURCE_DIR}")

# tg_unit_test(<name> SOURCES <c files> LIBS <libraries>): one cmocka
# executable, registered with ctest as unit/<name> (label "unit").
function(tg_unit_test name)
  cmake_parse_arguments(T "" "" "SOURCES;LIBS" ${ARGN})
  add_executable(${name} ${T_SOURCES} ${CMAKE_SOURCE_DIR}/tests/unit/tg_test_util.c)
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR}/tests/unit)
  target_link_libraries(${name} PRIVATE ${T_LIBS} PkgConfig::CMOCKA)
  add_test(NAME unit/${name} COMMAND ${name})
  set_tests_properties(unit/${name} PROPERTIES LABELS unit TIMEOUT 300 ENVIRONMENT "${TG_TEST_ENV}")
endfunction()

# tg_integration_test(<script>): a script that drives the real binary with
# real clients, registered as integration/<name> (label "integration").
function(tg_integration_test script)
  get_filename_component(name ${script} NAME_WE)
  add_test(NAME integration/${name} COMMAND ${script})
  set_tests_properties(integration/${name} PROPERTIES LABELS integration TIMEOUT 600
    ENVIRONMENT "TLSGATE=$<TARGET_FILE:tlsgate>;TG_BUILD_DIR=${CMAKE_BINARY_DIR};TG_SRC_DIR=${CMAKE_SOURCE_DIR}")
endfunction()

# `make test-tsan` runs, besides its integration tests, every test labelled
# `tsan`; a folder that labels one adds the executables it needs to the
# target tg_tsan, which that build makes:
#   set_property(TEST unit/test_x APPEND PROPERTY LABELS tsan)
#   add_dependencies(tg_tsan test_x)
add_custom_target(tg_tsan)

# tg_provider(<name> [DEPS <libraries>] [TEST_LIBS <libraries>]): called from
# src/providers/<name>/CMakeLists.txt. Builds the folder's *.c into the static
# library tg_prov_<name> (added to the program), every tests/test_*.c of the
# folder into a unit test linking that library (and TEST_LIBS), and registers
# every tests/test_*.sh / *.py as an integration test.
function(tg_provider name)
  cmake_parse_arguments(P "" "" "DEPS;TEST_LIBS;SOURCES" ${ARGN})
  set(dir ${CMAKE_CURRENT_SOURCE_DIR})
  if(P_SOURCES)
    set(srcs ${P_SOURCES})
  else()
    file(GLOB srcs CONFIGURE_DEPENDS ${dir}/*.c)
  endif()
  add_library(tg_prov_${name} STATIC ${srcs})
  target_include_directories(tg_prov_${name} PUBLIC ${CMAKE_SOURCE_DIR}/src ${LIBEV_INCLUDE_DIR})
  target_link_libraries(tg_prov_${name} PUBLIC ${P_DEPS} tg_keyprov tg_config tg_core)
  set_property(GLOBAL APPEND PROPERTY TG_PROVIDER_LIBS tg_prov_${name})
  file(GLOB tests CONFIGURE_DEPENDS ${dir}/tests/test_*.c)
  foreach(src ${tests})
    get_filename_component(t ${src} NAME_WE)
    tg_unit_test(${t} SOURCES ${src} LIBS tg_prov_${name} ${P_TEST_LIBS})
    target_include_directories(${t} PRIVATE ${dir}/tests)
  endforeach()
  file(GLOB scripts CONFIGURE_DEPENDS ${dir}/tests/test_*.sh ${dir}/tests/test_*.py)
  foreach(script ${scripts})
    tg_integration_test(${script})
  endforeach()
endfunction()

# The core's tests: one executable per tests/unit/test_<module>[_<aspect>].c.
# A test links the library of the module it mirrors (the folder of the first
# src/<dir>/tg_<module>.c found), else everything; plus the software and
# deferred providers, which the core's tests register as their reference
# providers.
function(tg_core_tests)
  file(GLOB unit_tests CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/unit/test_*.c)
  foreach(src ${unit_tests})
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
    set(extra "")
    if(NOT lib STREQUAL "tg_core" AND NOT lib STREQUAL "tg_config" AND NOT lib STREQUAL "tg_admin"
       AND NOT lib STREQUAL "tg_upstream")
      set(extra tg_prov_software tg_prov_deferred)
    endif()
    tg_unit_test(${name} SOURCES ${src} LIBS ${lib} ${extra})
  endforeach()

  file(GLOB scripts CONFIGURE_DEPENDS
       ${CMAKE_SOURCE_DIR}/tests/integration/test_*.sh
       ${CMAKE_SOURCE_DIR}/tests/integration/test_*.py)
  foreach(script ${scripts})
    tg_integration_test(${script})
  endforeach()

  # Lint: formatting and banned functions.
  foreach(check format banned)
    add_test(NAME lint/${check} COMMAND ${CMAKE_SOURCE_DIR}/tests/lint/check_${check}.sh)
    set_tests_properties(lint/${check} PROPERTIES LABELS lint TIMEOUT 600
      ENVIRONMENT "TG_SRC_DIR=${CMAKE_SOURCE_DIR}")
  endforeach()
endfunction()

# Deploy checks (label "deploy"): the Kubernetes manifests and the Gateway API
# test data validated offline against the Kubernetes OpenAPI schema
# (deploy/validate.mjs: Node.js and the pinned npm packages of
# deploy/package.json, installed by scripts/setup.sh).
file(GLOB tg_deploy_tests CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/deploy/test_*.sh)
foreach(script ${tg_deploy_tests})
  get_filename_component(name ${script} NAME_WE)
  add_test(NAME deploy/${name} COMMAND ${script})
  set_tests_properties(deploy/${name} PROPERTIES LABELS deploy TIMEOUT 300
    ENVIRONMENT "TLSGATE=$<TARGET_FILE:tlsgate>;TG_BUILD_DIR=${CMAKE_BINARY_DIR};TG_SRC_DIR=${CMAKE_SOURCE_DIR}")
endforeach()
