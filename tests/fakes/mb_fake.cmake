# Fake crypto_mb (tests/fakes/tg_mb_fake.c): a struct tg_mb_api computed with
# scalar OpenSSL, installed by tests with tg_mb_install(). A static library so
# that every test of crypto_mb code links it: the shim (test_mb*), the batch
# operations, and the cryptomb provider (test_*cryptomb*).
add_library(tg_mb_fake STATIC ${CMAKE_SOURCE_DIR}/tests/fakes/tg_mb_fake.c)
target_include_directories(tg_mb_fake PUBLIC ${CMAKE_SOURCE_DIR}/tests/fakes)
target_link_libraries(tg_mb_fake PUBLIC tg_keyprov)

foreach(src ${TG_UNIT_TESTS})
  get_filename_component(name ${src} NAME_WE)
  if(TARGET ${name} AND name MATCHES "^test_(mb|rsa_pad|.*cryptomb)")
    target_link_libraries(${name} PRIVATE tg_mb_fake)
  endif()
endforeach()
