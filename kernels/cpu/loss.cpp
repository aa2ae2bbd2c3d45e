// The Cpu Loss engine: softmax cross-entropy over rows on dlrt's threads.
// Each row's terms go to the workspace and are summed in row order on the
// calling thread, so the loss does not depend on the thread count.
#include <algorithm>
#include <cmath>

#include "runtime/loss_engine.hpp"
#include "runtime/parallel.hpp"

namespace dlrt::detail {
namespace {

using i64 = std::int64_t;

// Single-thread cost of one logit in forward (a max, an exp, a divide) and
// backward (a multiply-add).
constexpr double kNsForward = 8.0, kNsBackward = 0.5;

float weight(const LossProblem& p, const LossArgs& a, i64 n) {
  const float m = a.mask ? a.mask[n] : 1.0f;
  if (m == 0.0f) return 0.0f;
  return a.labels[n] >= 0 && a.labels[n] < p.C ? m : 0.0f;
}

// terms: 2N doubles of workspace, the weighted nll and the weight of each row.
void forward(const LossProblem& p, const LossArgs& a, double* terms) {
  parallel_for(0, p.N, grain_for(static_cast<double>(p.C) * kNsForward), [&](i64 n0, i64 n1) {
    for (i64 n = n0; n < n1; ++n) {
      const float* z = a.logits + n * p.C;
      float* prob = a.probs + n * p.C;
      const float top = *std::max_element(z, z + p.C);
      double sum = 0.0;
      for (i64 c = 0; c < p.C; ++c) {
        prob[c] = std::exp(z[c] - top);
        sum += prob[c];
      }
      const float inv = static_cast<float>(1.0 / sum);
      for (i64 c = 0; c < p.C; ++c) prob[c] *= inv;
      const float m = weight(p, a, n);
      const double lse = double{top} + std::log(sum);
      terms[2 * n] = m != 0.0f ? double{m} * (lse - z[a.labels[n]]) : 0.0;
      terms[2 * n + 1] = m;
    }
  });
  double total = 0.0, count = 0.0;
  for (i64 n = 0; n < p.N; ++n) total += terms[2 * n], count += terms[2 * n + 1];
  a.loss[0] = static_cast<float>(total / std::max(count, 1.0));
}

void backward(const LossProblem& p, const LossArgs& a) {
  double count = 0.0;
  for (i64 n = 0; n < p.N; ++n) count += weight(p, a, n);
  const float k = static_cast<float>(double{a.dloss} / std::max(count, 1.0));
  parallel_for(0, p.N, grain_for(static_cast<double>(p.C) * kNsBackward), [&](i64 n0, i64 n1) {
    for (i64 n = n0; n < n1; ++n) {
      float* dz = a.dlogits + n * p.C;
      const float* prob = a.probs_in + n * p.C;
      const float m = weight(p, a, n);
      if (m == 0.0f) {
        std::fill_n(dz, p.C, 0.0f);
        continue;
      }
      const float km = k * m;
      for (i64 c = 0; c < p.C; ++c) dz[c] = km * prob[c];
      dz[a.labels[n]] = km * (prob[a.labels[n]] - 1.0f);
    }
  });
}

class CpuLoss final : public LossEngine {
public:
  Engine engine() const override { return Engine::Cpu; }

  Planned<LossKernel> plan(Context&, const LossProblem& p) const override {
    const std::size_t bytes =
        p.op == LossOp::Forward ? static_cast<std::size_t>(2 * p.N) * sizeof(double) : 0;
    return {make_loss_kernel(engine(), bytes, "cpu rows on dlrt's threads",
                             [p](Context&, const LossArgs& a, void* scratch) {
                               if (p.op == LossOp::Forward)
                                 return forward(p, a, static_cast<double*>(scratch));
                               backward(p, a);
                             }),
            {}};
  }
};

const Registrar<LossEngine> registrar{std::make_unique<CpuLoss>()};

}  // namespace
}  // namespace dlrt::detail
