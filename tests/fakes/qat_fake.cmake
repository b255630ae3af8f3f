# The fake qatlib (tests/fakes/fake_qat.c), built with the real qatlib
# headers as two shared libraries named like the real ones, in
# ${CMAKE_BINARY_DIR}/fakes/:
#   libusdm.so.0   qaeMemAllocNUMA / qaeMemFreeNUMA / qaeVirtToPhysNUMA
#   libqat.so.4    the qatlib functions tlsgate calls, results from OpenSSL
# Point TG_QAT_LIB_DIR or LD_LIBRARY_PATH at that directory to run tlsgate
# against the fake. Without the qatlib headers nothing is built (the qat
# provider is then "built without qatlib headers" and its tests skip).
if(QAT_INCLUDE_DIR)
  set(TG_FAKES_DIR ${CMAKE_BINARY_DIR}/fakes)
  foreach(part usdm qat)
    if(part STREQUAL "usdm")
      set(soname libusdm.so.0)
      set(def FAKE_QAT_PART_USDM)
    else()
      set(soname libqat.so.4)
      set(def FAKE_QAT_PART_QAT)
    endif()
    add_library(tg_fake_${part} SHARED ${CMAKE_SOURCE_DIR}/tests/fakes/fake_qat.c)
    target_include_directories(tg_fake_${part} PRIVATE ${QAT_INCLUDE_DIR}/qat)
    target_compile_definitions(tg_fake_${part} PRIVATE ${def})
    target_link_libraries(tg_fake_${part} PRIVATE OpenSSL::Crypto Threads::Threads)
    # Exactly the real file name (no lib*.so symlink, no version suffix) and
    # the real soname, so the dynamic linker treats it as qatlib.
    set_target_properties(tg_fake_${part} PROPERTIES
      LIBRARY_OUTPUT_DIRECTORY ${TG_FAKES_DIR}
      PREFIX "" OUTPUT_NAME ${soname} SUFFIX "" NO_SONAME ON
      C_VISIBILITY_PRESET default)
    target_link_options(tg_fake_${part} PRIVATE -Wl,-soname,${soname})
  endforeach()
  if(TARGET test_qat)
    add_dependencies(test_qat tg_fake_usdm tg_fake_qat)
  endif()
endif()
