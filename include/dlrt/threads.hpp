// dlrt's CPU threads: one setting for every Cpu kernel, the scheduler's CPU
// executor and the BLAS underneath them.
//
// The Cpu engine runs its loops and GEMMs on one pool of dlrt's own threads.
// A loop runs on the calling thread alone when its work is below a grain
// chosen per kernel (so small ops never wake a thread), inside another
// parallel loop, when another thread of the process is already using the
// pool, and in a process forked from one that had started the pool (the
// child runs serially, as PyTorch's does, instead of waiting on threads that
// fork did not copy). Work is handed out in chunks that any thread may take,
// and the caller waits only for chunks already being worked on, never for a
// thread that has not yet woken up, so a descheduled thread on a busy machine
// cannot stall an op by more than the chunk it holds.
//
// The thread count is, in order of precedence: set_num_threads(), the
// environment variable DLRT_NUM_THREADS, OMP_NUM_THREADS (its first value,
// as OpenMP reads it), and otherwise the number of CPUs this process may run
// on. The BLAS is called one thread at a time; dlrt splits the GEMMs itself.
#pragma once

#include <string>

#include "dlrt/device.hpp"
#include "dlrt/export.hpp"

namespace dlrt {

// Threads for CPU work from now on, the calling thread included; must be in
// [1, 1024], else dlrt::Error(InvalidArgument). Applies to the next op.
DLRT_EXPORT void set_num_threads(int threads);
// The current setting (1 in a forked child, whatever the setting).
DLRT_EXPORT int num_threads() noexcept;

// What the CPU side of this process runs on.
struct CpuBackendInfo {
  int threads = 1;            // num_threads()
  bool forked_child = false;  // a fork() since the pool started: everything runs serially
  std::string blas;           // the loaded BLAS's own description (OpenBLAS: its config string)
  std::string
      blas_threading;  // "sequential", "pthreads" or "openmp": how the loaded BLAS was built
  std::string blas_expected_threading;  // the build dlrt was configured and tuned for
  std::string blas_library;             // path of the shared library that provides sgemm
};

DLRT_EXPORT CpuBackendInfo cpu_backend_info();

}  // namespace dlrt
