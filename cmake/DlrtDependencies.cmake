# Third-party libraries: OpenBLAS for the Cpu engine, the CUDA toolkit
# (cudart, cuBLAS) and cuDNN 9 for the GPU engines, GoogleTest and Google
# Benchmark for tests and benchmarks. All come from the system; the README's
# setup command installs the Debian packages.
find_package(Threads REQUIRED)

# dlrt runs every CPU loop and GEMM on its own thread pool
# (runtime/parallel.cpp) and calls the BLAS one thread at a time, from
# several threads at once. Debian's single-threaded OpenBLAS is built without
# USE_LOCKING, so concurrent calls share its packing buffers and return wrong
# results; its pthreads build locks them, and with openblas_set_num_threads(1)
# starts no work of its own. An OpenMP build would start libgomp, whose pool
# hangs a child forked after it ran and competes with dlrt's threads for
# the cores. Every Debian build has the same SONAME, libopenblas.so.0, and
# the system's alternatives may pick any of them, so the chosen build's
# folder goes into libdlrt's RUNPATH as well.
set(DLRT_OPENBLAS_VARIANT "pthread" CACHE STRING "Debian's OpenBLAS build to link: pthread, openmp or serial (not thread-safe)")
set(_dlrt_openblas_dir /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-${DLRT_OPENBLAS_VARIANT})
find_package(OpenBLAS CONFIG QUIET NO_DEFAULT_PATH PATHS ${_dlrt_openblas_dir}/cmake)
if(NOT OpenBLAS_FOUND)
  message(STATUS "OpenBLAS's ${DLRT_OPENBLAS_VARIANT} build was not found; using the default one")
  find_package(OpenBLAS CONFIG QUIET)
  set(_dlrt_openblas_dir "")
endif()
if(DLRT_OPENBLAS_VARIANT STREQUAL "serial")
  set(DLRT_BLAS_EXPECTED_THREADING "sequential")
elseif(DLRT_OPENBLAS_VARIANT STREQUAL "pthread")
  set(DLRT_BLAS_EXPECTED_THREADING "pthreads")
else()
  set(DLRT_BLAS_EXPECTED_THREADING "${DLRT_OPENBLAS_VARIANT}")
endif()
if(OpenBLAS_FOUND)
  message(STATUS "OpenBLAS: ${OpenBLAS_LIBRARIES}")
  add_library(dlrt_openblas INTERFACE)
  target_include_directories(dlrt_openblas SYSTEM INTERFACE ${OpenBLAS_INCLUDE_DIRS})
  target_link_libraries(dlrt_openblas INTERFACE ${OpenBLAS_LIBRARIES})
else()
  find_package(PkgConfig REQUIRED)
  pkg_check_modules(OPENBLAS REQUIRED IMPORTED_TARGET openblas)
  add_library(dlrt_openblas INTERFACE)
  target_link_libraries(dlrt_openblas INTERFACE PkgConfig::OPENBLAS)
endif()
set(DLRT_OPENBLAS_RUNPATH "${_dlrt_openblas_dir}")

if(DLRT_WITH_CUDA)
  find_package(CUDAToolkit REQUIRED)
  set(CUDNN_ROOT "$ENV{CUDNN_ROOT}" CACHE PATH "Where cuDNN 9 is installed (default: the CUDA toolkit)")
  find_path(CUDNN_INCLUDE_DIR cudnn.h
    HINTS ${CUDNN_ROOT} ${CUDAToolkit_INCLUDE_DIRS} PATH_SUFFIXES include)
  find_library(CUDNN_LIBRARY cudnn
    HINTS ${CUDNN_ROOT} ${CUDAToolkit_LIBRARY_DIR} PATH_SUFFIXES lib lib64 lib/x64)
  if(NOT CUDNN_INCLUDE_DIR OR NOT CUDNN_LIBRARY)
    message(FATAL_ERROR "DLRT_WITH_CUDA=ON needs cuDNN 9: set CUDNN_ROOT, or configure with -DDLRT_WITH_CUDA=OFF")
  endif()
  file(STRINGS ${CUDNN_INCLUDE_DIR}/cudnn_version.h _cudnn_major REGEX "define CUDNN_MAJOR")
  string(REGEX MATCH "[0-9]+" CUDNN_MAJOR "${_cudnn_major}")
  if(CUDNN_MAJOR LESS 9)
    message(FATAL_ERROR "dlrt needs cuDNN 9 or newer, found major version ${CUDNN_MAJOR} in ${CUDNN_INCLUDE_DIR}")
  endif()
  add_library(dlrt_cudnn INTERFACE)
  target_include_directories(dlrt_cudnn SYSTEM INTERFACE ${CUDNN_INCLUDE_DIR})
  target_link_libraries(dlrt_cudnn INTERFACE ${CUDNN_LIBRARY})
  get_filename_component(CUDNN_LIBRARY_DIR ${CUDNN_LIBRARY} DIRECTORY)
endif()
