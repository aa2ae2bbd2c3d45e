# DLRT_SANITIZE=address builds everything with ASan+UBSan (LeakSanitizer
# included); DLRT_SANITIZE=thread with TSan; DLRT_SANITIZE=fuzz (clang) with
# libFuzzer coverage plus ASan+UBSan. Host code only: device code is
# checked with compute-sanitizer on a GPU machine instead.
if(DLRT_SANITIZE STREQUAL "address")
  set(_dlrt_san -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
elseif(DLRT_SANITIZE STREQUAL "fuzz")
  # Coverage for libFuzzer everywhere; the fuzz targets add -fsanitize=fuzzer.
  set(_dlrt_san -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
                -fno-omit-frame-pointer)
elseif(DLRT_SANITIZE STREQUAL "thread")
  set(_dlrt_san -fsanitize=thread -fno-omit-frame-pointer)
elseif(NOT DLRT_SANITIZE STREQUAL "")
  message(FATAL_ERROR "DLRT_SANITIZE must be empty, 'address', 'thread' or 'fuzz', got '${DLRT_SANITIZE}'")
endif()
if(_dlrt_san)
  add_compile_options("$<$<COMPILE_LANGUAGE:CXX>:${_dlrt_san}>")
  add_link_options(${_dlrt_san})
endif()
