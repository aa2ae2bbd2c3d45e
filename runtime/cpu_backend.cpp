// What the CPU side runs on: the thread setting and the BLAS that the
// dynamic linker actually loaded, which Debian's alternatives may make a
// different build from the one dlrt was linked and tuned against.
#include <cblas.h>
#include <dlfcn.h>

#include <string>

#include "dlrt/threads.hpp"
#include "runtime/parallel.hpp"

#ifndef DLRT_BLAS_EXPECTED_THREADING
#error "the build defines DLRT_BLAS_EXPECTED_THREADING (cmake/DlrtDependencies.cmake)"
#endif

namespace dlrt {

CpuBackendInfo cpu_backend_info() {
  CpuBackendInfo info;
  info.threads = num_threads();
  info.forked_child = detail::forked_child();
  const char* config = openblas_get_config();
  info.blas = config != nullptr ? config : "OpenBLAS (no configuration string)";
  switch (openblas_get_parallel()) {
    case 0:
      info.blas_threading = "sequential";
      break;
    case 1:
      info.blas_threading = "pthreads";
      break;
    case 2:
      info.blas_threading = "openmp";
      break;
    default:
      info.blas_threading = "unknown";
      break;
  }
  info.blas_expected_threading = DLRT_BLAS_EXPECTED_THREADING;
  Dl_info where{};
  if (dladdr(reinterpret_cast<void*>(&cblas_sgemm), &where) != 0 && where.dli_fname != nullptr)
    info.blas_library = where.dli_fname;
  return info;
}

}  // namespace dlrt
