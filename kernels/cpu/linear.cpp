// The Cpu Linear engine: every product is one cpu::gemm (OpenBLAS split
// across dlrt's threads); the bias and its gradient are row and column
// loops on parallel_for.
#include <algorithm>

#include "kernels/cpu/gemm.hpp"
#include "runtime/linear_engine.hpp"
#include "runtime/parallel.hpp"

namespace dlrt::detail {
namespace {

using i64 = std::int64_t;
using cpu::Trans;

// Single-thread cost of one element copied or added: well under a
// nanosecond; 0.5 ns keeps small layers on the calling thread.
constexpr double kNsPerElement = 0.5;

void forward(const LinearProblem& p, const LinearArgs& a) {
  float beta = 0.0f;
  if (a.bias) {
    // y = bias in every row, then y += x w^T.
    parallel_for(0, p.N, grain_for(static_cast<double>(p.out) * kNsPerElement),
                 [&](i64 n0, i64 n1) {
                   for (i64 n = n0; n < n1; ++n) std::copy_n(a.bias, p.out, a.y + n * p.out);
                 });
    beta = 1.0f;
  }
  cpu::gemm(Trans::No, Trans::Yes, p.N, p.out, p.in, 1.0f, a.x, p.in, a.w, p.in, beta, a.y, p.out);
}

void backward_data(const LinearProblem& p, const LinearArgs& a) {
  cpu::gemm(Trans::No, Trans::No, p.N, p.in, p.out, 1.0f, a.dy, p.out, a.w, p.in, 0.0f, a.dx, p.in);
}

void backward_weights(const LinearProblem& p, const LinearArgs& a) {
  cpu::gemm(Trans::Yes, Trans::No, p.out, p.in, p.N, 1.0f, a.dy, p.out, a.x, p.in,
            p.accumulate ? 1.0f : 0.0f, a.dw, p.in);
  if (!a.db) return;
  // Column sums of dy, over blocks of columns; each column's sum in row order.
  parallel_for(0, p.out, grain_for(static_cast<double>(p.N) * kNsPerElement), [&](i64 o0, i64 o1) {
    if (!p.accumulate) std::fill(a.db + o0, a.db + o1, 0.0f);
    for (i64 n = 0; n < p.N; ++n) {
      const float* row = a.dy + n * p.out;
      for (i64 o = o0; o < o1; ++o) a.db[o] += row[o];
    }
  });
}

void gram(const LinearProblem& p, const LinearArgs& a) {
  const i64 C = p.N, P = p.in;
  cpu::gemm(Trans::No, Trans::Yes, C, C, P, a.scale, a.x, P, a.x, P, 0.0f, a.y, C);
}

// df = scale dg f + scale dg^T f.
void gram_backward(const LinearProblem& p, const LinearArgs& a) {
  const i64 C = p.N, P = p.in;
  cpu::gemm(Trans::No, Trans::No, C, P, C, a.scale, a.dy, C, a.x, P, 0.0f, a.dx, P);
  cpu::gemm(Trans::Yes, Trans::No, C, P, C, a.scale, a.dy, C, a.x, P, 1.0f, a.dx, P);
}

class CpuLinear final : public LinearEngine {
public:
  Engine engine() const override { return Engine::Cpu; }

  Planned<LinearKernel> plan(Context&, const LinearProblem& p) const override {
    static constexpr LinearFunctions kFunctions{forward, backward_data, backward_weights, gram,
                                                gram_backward};
    return {make_linear_kernel(
                engine(), 0, "cpu::gemm (OpenBLAS on dlrt's threads)",
                [p](Context&, const LinearArgs& a, void*) { run_linear_op(kFunctions, p, a); }),
            {}};
  }
};

const Registrar<LinearEngine> registrar{std::make_unique<CpuLinear>()};

}  // namespace
}  // namespace dlrt::detail
