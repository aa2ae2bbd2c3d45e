# Third-party libraries: OpenBLAS and OpenMP for the Cpu engine, the CUDA
# toolkit (cudart, cuBLAS) and cuDNN 9 for the GPU engines, GoogleTest and
# Google Benchmark for tests and benchmarks. All come from the system; the
# README's setup command installs the Debian packages.
find_package(Threads REQUIRED)
find_package(OpenMP REQUIRED COMPONENTS CXX)

# The OpenMP build of OpenBLAS shares libgomp's thread pool with dlrt's own
# OpenMP loops. With the pthreads build, OpenMP workers that spin after an
# im2col loop compete with OpenBLAS's threads for the cores, and small
# convolutions ran up to 50x slower on a two-core machine.
set(DLRT_OPENBLAS_VARIANT "openmp" CACHE STRING "Debian's OpenBLAS build to link: openmp, pthread or serial")
find_package(OpenBLAS CONFIG QUIET NO_DEFAULT_PATH
  PATHS /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-${DLRT_OPENBLAS_VARIANT}/cmake)
if(NOT OpenBLAS_FOUND)
  message(STATUS "OpenBLAS's ${DLRT_OPENBLAS_VARIANT} build was not found; using the default one")
  find_package(OpenBLAS CONFIG QUIET)
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
