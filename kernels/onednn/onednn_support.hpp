// What the Onednn engine's op families share: the one CPU engine object,
// running oneDNN inside dlrt's own threads, and workspace carving.
//
// Debian's oneDNN parallelises with OpenMP. Letting it start an OpenMP team
// would put a second pool of spinning threads beside dlrt's (the mix that
// docs/architecture.md measures as 15 ms instead of 0.26 ms) and would hang
// a forked child in GOMP_parallel. So every oneDNN primitive here is made
// and run with one OpenMP thread, and the engine parallelises itself: a
// problem is cut into pieces along the batch, one primitive per piece size,
// the pieces run by dlrt's parallel_tasks. The cut is fixed when the plan
// is made, so results are the same run to run.
#pragma once

#include <oneapi/dnnl/dnnl.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace dlrt::detail::onednn {

// The process's oneDNN CPU engine.
const dnnl::engine& cpu_engine();

// Makes the calling thread's OpenMP regions single-threaded (oneDNN reads
// omp_get_max_threads() when it makes and runs a primitive).
void use_one_openmp_thread();

// [begin, end) of piece i when n items are cut into `pieces` near-equal runs.
struct Piece {
  std::int64_t begin = 0, end = 0;
  std::int64_t size() const { return end - begin; }
};
std::vector<Piece> cut(std::int64_t n, int pieces);

// The most pieces per thread a problem is cut into: enough that a thread
// sharing its core with another process takes fewer of them (parallel_tasks
// hands them out as threads come free) instead of holding the op for its
// share, few enough that each piece's primitive call stays cheap.
inline constexpr int kPiecesPerThread = 4;

// Bump allocation of 64-byte-aligned slices of one workspace.
class Carver {
public:
  std::size_t take(std::size_t bytes) {
    const std::size_t at = used_;
    used_ += (bytes + 63) / 64 * 64;
    return at;
  }
  std::size_t used() const { return used_; }

private:
  std::size_t used_ = 0;
};

inline void* at(void* base, std::size_t offset) { return static_cast<char*>(base) + offset; }

// oneDNN's dims from int64 extents.
inline dnnl::memory::dims dims(std::initializer_list<std::int64_t> extents) {
  return dnnl::memory::dims(extents.begin(), extents.end());
}

// A reorder between two layouts of one tensor, or nothing when they are the same.
struct Reorder {
  dnnl::memory::desc from, to;
  dnnl::reorder primitive;
  bool needed = false;

  Reorder() = default;
  Reorder(const dnnl::memory::desc& source, const dnnl::memory::desc& target);
  // Runs it (from -> to) on `stream`, or returns false when not needed.
  bool run(dnnl::stream& stream, void* source, void* target) const;
};

// "oneDNN jit:avx512_core" and the like: what the primitive runs.
std::string implementation(const dnnl::primitive_desc_base& pd);

}  // namespace dlrt::detail::onednn
