# Warning flags for every dlrt target; CI turns them into errors.
add_library(dlrt_warnings INTERFACE)
target_compile_options(dlrt_warnings INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wno-sign-conversion
                            -Wnon-virtual-dtor -Wold-style-cast -Wcast-align -Wnull-dereference
                            -Woverloaded-virtual -Wformat=2 -Wimplicit-fallthrough>
  $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra --Werror=all-warnings>)
if(DLRT_WARNINGS_AS_ERRORS)
  target_compile_options(dlrt_warnings INTERFACE
    $<$<COMPILE_LANGUAGE:CXX>:-Werror> $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Werror>)
endif()
