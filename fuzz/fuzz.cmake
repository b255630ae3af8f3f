# libFuzzer targets (included by the top-level CMakeLists.txt when TG_FUZZ=ON).
#
# Adding a target: drop fuzz/fuzz_<name>.c defining LLVMFuzzerTestOneInput
# (a provider's own parser: src/providers/<provider>/fuzz/fuzz_<name>.c, so
# the target goes with the provider's folder). Nothing else to edit.
# Optional, picked up when present in the same folder as the target:
#   corpus/<name>/     seed inputs (read-only: new inputs go to the build dir)
#   <name>.dict        libFuzzer dictionary
#   <name>.options     extra libFuzzer flags, one per line (e.g. -max_len=8192)
# Each target links the whole project (tlsgate_all) and becomes the ctest
# fuzz/fuzz_<name> (label "fuzz") that fuzzes for TG_FUZZ_SECONDS; the
# target fuzz_all builds every one (make test-fuzz).
#
#   cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DTG_FUZZ=ON
#   cmake --build build-fuzz && ctest --test-dir build-fuzz -L fuzz
#   ./build-fuzz/fuzz_admin_http build-fuzz/fuzz/admin_http/corpus fuzz/corpus/admin_http
#
# Crashes land in <build>/fuzz/<name>/artifacts/; reproduce with
#   ./build-fuzz/fuzz_<name> <artifact>

if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "TG_FUZZ=ON needs clang for libFuzzer: "
                      "cmake -DCMAKE_C_COMPILER=clang -DTG_FUZZ=ON ...")
endif()

set(TG_FUZZ_SECONDS 20 CACHE STRING "How long each fuzz ctest runs (-max_total_time)")
# A fixed seed makes the default run a fixed sequence of inputs: a slower
# machine runs a prefix of the sequence a faster one runs, so `make test`
# cannot turn red by luck; the sequence is fuzzed well past TG_FUZZ_SECONDS
# before a change lands. TG_FUZZ_SEED=0 lets libFuzzer pick a seed per run
# (make fuzz-long: exploration, not a gate).
set(TG_FUZZ_SEED 1 CACHE STRING "libFuzzer -seed for the fuzz ctests (0: a new one each run)")
set(TG_FUZZ_DIR ${CMAKE_CURRENT_LIST_DIR})

# Coverage feedback needs the code under test instrumented, not only the
# harness: every library of the project gets -fsanitize=fuzzer-no-link, and
# ASan/UBSan so memory errors and UB in the parsers crash the fuzzer instead
# of passing silently. Executables that link those libraries (tlsgate, the
# unit tests) then need the sanitizer runtimes, which also provide the
# coverage callbacks.
set(TG_FUZZ_SAN address,undefined)
set(TG_FUZZ_LIB_FLAGS -fsanitize=fuzzer-no-link,${TG_FUZZ_SAN} -fno-sanitize-recover=undefined
                      -fno-omit-frame-pointer)
get_property(tg_fuzz_existing DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR} PROPERTY BUILDSYSTEM_TARGETS)
# The providers are made in their own folders (add_subdirectory): their
# libraries must be instrumented too, or a target fuzzing a provider's parser
# gets no coverage feedback from it, and their tests linked accordingly.
get_property(tg_fuzz_subdirs DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR} PROPERTY SUBDIRECTORIES)
foreach(dir IN LISTS tg_fuzz_subdirs)
  get_property(tg_fuzz_sub DIRECTORY ${dir} PROPERTY BUILDSYSTEM_TARGETS)
  list(APPEND tg_fuzz_existing ${tg_fuzz_sub})
endforeach()
foreach(t IN LISTS tg_fuzz_existing)
  get_target_property(type ${t} TYPE)
  if(type MATCHES "^(STATIC|SHARED|MODULE|OBJECT)_LIBRARY$")
    target_compile_options(${t} PRIVATE ${TG_FUZZ_LIB_FLAGS})
    if(NOT type STREQUAL "STATIC_LIBRARY" AND NOT type STREQUAL "OBJECT_LIBRARY")
      target_link_options(${t} PRIVATE -fsanitize=${TG_FUZZ_SAN})
    endif()
  elseif(type STREQUAL "EXECUTABLE")
    target_link_options(${t} PRIVATE -fsanitize=${TG_FUZZ_SAN})
  endif()
endforeach()

file(GLOB TG_FUZZ_SRCS CONFIGURE_DEPENDS ${TG_FUZZ_DIR}/fuzz_*.c
     ${CMAKE_SOURCE_DIR}/src/providers/*/fuzz/fuzz_*.c)
add_custom_target(fuzz_all)
foreach(src IN LISTS TG_FUZZ_SRCS)
  get_filename_component(target ${src} NAME_WE)   # fuzz_admin_http
  get_filename_component(sdir ${src} DIRECTORY)   # where its corpus, dict, options are
  string(REGEX REPLACE "^fuzz_" "" name ${target}) # admin_http
  add_executable(${target} ${src})
  add_dependencies(fuzz_all ${target})
  target_compile_options(${target} PRIVATE -fsanitize=fuzzer,${TG_FUZZ_SAN}
                         -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
  target_link_options(${target} PRIVATE -fsanitize=fuzzer,${TG_FUZZ_SAN})
  target_link_libraries(${target} PRIVATE tlsgate_all)

  set(work ${CMAKE_BINARY_DIR}/fuzz/${name})
  file(MAKE_DIRECTORY ${work}/corpus ${work}/artifacts)
  set(args -max_total_time=${TG_FUZZ_SECONDS} -seed=${TG_FUZZ_SEED} -timeout=10 -rss_limit_mb=2048
           -print_final_stats=1 -artifact_prefix=${work}/artifacts/)
  if(EXISTS ${sdir}/${name}.dict)
    list(APPEND args -dict=${sdir}/${name}.dict)
  endif()
  if(EXISTS ${sdir}/${name}.options)
    file(STRINGS ${sdir}/${name}.options extra REGEX "^-")
    list(APPEND args ${extra})
  endif()
  # The first corpus directory receives new inputs; keep the seeds read-only.
  set(dirs ${work}/corpus)
  if(IS_DIRECTORY ${sdir}/corpus/${name})
    list(APPEND dirs ${sdir}/corpus/${name})
  endif()
  math(EXPR timeout "${TG_FUZZ_SECONDS} + 120")
  add_test(NAME fuzz/${target} COMMAND ${target} ${args} ${dirs})
  set_tests_properties(fuzz/${target} PROPERTIES LABELS fuzz TIMEOUT ${timeout}
    ENVIRONMENT "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1;ASAN_OPTIONS=detect_leaks=1")
endforeach()
