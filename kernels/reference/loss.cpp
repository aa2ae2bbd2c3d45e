// The Reference Loss engine: softmax cross-entropy as in
// include/dlrt/nn_ops.hpp, row by row in double, with the row maximum
// subtracted before exponentiating (log-sum-exp).
#include <algorithm>
#include <cmath>

#include "runtime/loss_engine.hpp"

namespace dlrt::detail {
namespace {

using i64 = std::int64_t;

// The weight of row n: its mask, or 0 when its label is out of range.
double weight(const LossProblem& p, const LossArgs& a, i64 n) {
  const double m = a.mask ? a.mask[n] : 1.0;
  if (m == 0.0) return 0.0;
  return a.labels[n] >= 0 && a.labels[n] < p.C ? m : 0.0;
}

void forward(const LossProblem& p, const LossArgs& a) {
  double total = 0.0, count = 0.0;
  for (i64 n = 0; n < p.N; ++n) {
    const float* z = a.logits + n * p.C;
    double top = z[0];
    for (i64 c = 1; c < p.C; ++c) top = std::max(top, double{z[c]});
    double sum = 0.0;
    for (i64 c = 0; c < p.C; ++c) sum += std::exp(z[c] - top);
    const double lse = top + std::log(sum);
    for (i64 c = 0; c < p.C; ++c) a.probs[n * p.C + c] = static_cast<float>(std::exp(z[c] - lse));
    const double m = weight(p, a, n);
    if (m != 0.0) total += m * (lse - z[a.labels[n]]);
    count += m;
  }
  a.loss[0] = static_cast<float>(total / std::max(count, 1.0));
}

void backward(const LossProblem& p, const LossArgs& a) {
  double count = 0.0;
  for (i64 n = 0; n < p.N; ++n) count += weight(p, a, n);
  const double k = double{a.dloss} / std::max(count, 1.0);
  for (i64 n = 0; n < p.N; ++n) {
    const double m = weight(p, a, n);
    for (i64 c = 0; c < p.C; ++c) {
      const double hot = m != 0.0 && c == a.labels[n] ? 1.0 : 0.0;
      a.dlogits[n * p.C + c] =
          m == 0.0 ? 0.0f : static_cast<float>(k * m * (a.probs_in[n * p.C + c] - hot));
    }
  }
}

class ReferenceLoss final : public LossEngine {
public:
  Engine engine() const override { return Engine::Reference; }

  Planned<LossKernel> plan(Context&, const LossProblem& p) const override {
    return {make_loss_kernel(engine(), 0, "reference loops, double accumulation",
                             [p](Context&, const LossArgs& a, void*) {
                               if (p.op == LossOp::Forward) return forward(p, a);
                               backward(p, a);
                             }),
            {}};
  }
};

const Registrar<LossEngine> registrar{std::make_unique<ReferenceLoss>()};

}  // namespace
}  // namespace dlrt::detail
