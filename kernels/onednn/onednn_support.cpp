#include "kernels/onednn/onednn_support.hpp"

#include <dlfcn.h>

namespace dlrt::detail::onednn {

const dnnl::engine& cpu_engine() {
  static const dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

void use_one_openmp_thread() {
  // Looked up at run time: the OpenMP runtime is oneDNN's dependency, not
  // dlrt's, and dlrt's own code never starts an OpenMP region.
  using SetThreads = void (*)(int);
  static const SetThreads set_threads =
      reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "omp_set_num_threads"));
  thread_local bool done = false;
  if (set_threads != nullptr && !done) {
    set_threads(1);
    done = true;
  }
}

std::vector<Piece> cut(std::int64_t n, int pieces) {
  const std::int64_t count = std::max<std::int64_t>(1, std::min<std::int64_t>(n, pieces));
  std::vector<Piece> out;
  for (std::int64_t i = 0; i < count; ++i) out.push_back({n * i / count, n * (i + 1) / count});
  return out;
}

Reorder::Reorder(const dnnl::memory::desc& source, const dnnl::memory::desc& target)
    : from(source), to(target), needed(source != target) {
  if (needed)
    primitive = dnnl::reorder(dnnl::reorder::primitive_desc(cpu_engine(), from, cpu_engine(), to));
}

bool Reorder::run(dnnl::stream& stream, void* source, void* target) const {
  if (!needed) return false;
  dnnl::memory src(from, cpu_engine(), source), dst(to, cpu_engine(), target);
  primitive.execute(stream, {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, dst}});
  return true;
}

std::string implementation(const dnnl::primitive_desc_base& pd) {
  return std::string("onednn ") + pd.impl_info_str();
}

}  // namespace dlrt::detail::onednn
