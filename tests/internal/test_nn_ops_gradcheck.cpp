// Finite-difference checks of the training ops' backward on the Reference
// engine (double accumulation inside, f32 at the interface): for a random
// r, L = sum(r * forward(...)) is differentiated numerically by central
// differences (in double on the host) and compared with backward's
// gradient for dy = r.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "dlrt/dlrt.hpp"
#include "support/test_support.hpp"

namespace dlrt {
namespace {

constexpr Engine kRef = Engine::Reference;

double dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) s += double{a[i]} * b[i];
  return s;
}

// Checks d/d(input) of objective() against `grad`, perturbing input's elements by +-h.
void check_gradient(const std::string& what, Tensor& input, const std::vector<float>& grad,
                    const std::function<double()>& objective, double h = 1e-2, double tol = 2e-3) {
  float* p = input.data();
  for (std::int64_t i = 0; i < input.numel(); ++i) {
    const float saved = p[i];
    p[i] = static_cast<float>(saved + h);
    const double up = objective();
    p[i] = static_cast<float>(saved - h);
    const double down = objective();
    p[i] = saved;
    const double numeric = (up - down) / (2 * h);
    EXPECT_NEAR(grad[static_cast<std::size_t>(i)], numeric, tol * (1 + std::fabs(numeric)))
        << what << " element " << i;
  }
}

TEST(NnOpsGradcheck, Linear) {
  Context ctx;
  const std::int64_t N = 3, in = 4, out = 5;
  Tensor x = test::random_tensor({N, in}, 1), w = test::random_tensor({out, in}, 2);
  Tensor b = test::random_tensor({out}, 3);
  const std::vector<float> r = test::random_values(N * out, 4);
  const Tensor dy = Tensor::from_vector({N, out}, r);
  auto objective = [&] {
    Tensor y({N, out});
    linear_forward(ctx, x, w, &b, y, kRef);
    return dot(y.to_vector(), r);
  };
  Tensor dx({N, in}), dw({out, in}), db({out});
  linear_backward_data(ctx, dy, w, dx, kRef);
  linear_backward_weights(ctx, x, dy, dw, &db, false, kRef);
  check_gradient("dx", x, dx.to_vector(), objective);
  check_gradient("dw", w, dw.to_vector(), objective);
  check_gradient("db", b, db.to_vector(), objective);
}

TEST(NnOpsGradcheck, Gram) {
  Context ctx;
  const std::int64_t C = 3, P = 5;
  const float s = 0.7f;
  Tensor f = test::random_tensor({C, P}, 5);
  const std::vector<float> r = test::random_values(C * C, 6);
  auto objective = [&] {
    Tensor g({C, C});
    gram(ctx, f, g, s, kRef);
    return dot(g.to_vector(), r);
  };
  Tensor df({C, P});
  gram_backward(ctx, f, Tensor::from_vector({C, C}, r), df, s, kRef);
  check_gradient("df", f, df.to_vector(), objective);
}

TEST(NnOpsGradcheck, Activations) {
  Context ctx;
  for (Activation act : {Activation::Relu, Activation::Tanh, Activation::Sigmoid}) {
    // Keep ReLU's inputs away from its kink at 0.
    std::vector<float> values = test::random_values(12, 7, -2.0f, 2.0f);
    for (float& v : values)
      if (std::fabs(v) < 0.05f) v = 0.3f;
    Tensor x = Tensor::from_vector({3, 4}, values);
    const std::vector<float> r = test::random_values(12, 8);
    auto objective = [&] {
      Tensor y({3, 4});
      activation_forward(ctx, act, x, y, kRef);
      return dot(y.to_vector(), r);
    };
    Tensor y({3, 4}), dx({3, 4});
    activation_forward(ctx, act, x, y, kRef);
    activation_backward(ctx, act, y, Tensor::from_vector({3, 4}, r), dx, kRef);
    check_gradient(to_string(act), x, dx.to_vector(), objective, 1e-3);
  }
}

TEST(NnOpsGradcheck, AddScale) {
  Context ctx;
  Tensor a = test::random_tensor({7}, 9), b = test::random_tensor({7}, 10);
  const std::vector<float> r = test::random_values(7, 11);
  auto objective = [&] {
    Tensor out({7}), scaled({7});
    add(ctx, a, b, out, 0.5f, -1.5f, kRef);
    scale(ctx, out, scaled, 3.0f, kRef);
    return dot(scaled.to_vector(), r);
  };
  // d/da = 3 * 0.5 r, d/db = 3 * -1.5 r, through scale and add themselves.
  const Tensor rt = Tensor::from_vector({7}, r);
  Tensor g({7}), da({7}), db({7});
  scale(ctx, rt, g, 3.0f, kRef);
  scale(ctx, g, da, 0.5f, kRef);
  scale(ctx, g, db, -1.5f, kRef);
  check_gradient("da", a, da.to_vector(), objective);
  check_gradient("db", b, db.to_vector(), objective);
}

TEST(NnOpsGradcheck, SoftmaxCrossEntropy) {
  Context ctx;
  const std::int64_t N = 4, C = 5;
  Tensor logits = test::random_tensor({N, C}, 12);
  Tensor labels(Shape{N}, Device::cpu(), DType::I32);
  const std::int32_t label_values[] = {2, 0, 4, -1};  // the last row is masked
  for (std::int64_t n = 0; n < N; ++n) labels.data_i32()[n] = label_values[n];
  const Tensor mask = Tensor::from_vector({N}, std::vector<float>{1, 1, 1, 0});
  const float dloss = 1.7f;
  auto objective = [&] {
    Tensor loss({1}), probs({N, C});
    softmax_cross_entropy_forward(ctx, logits, labels, &mask, loss, probs, kRef);
    return double{dloss} * loss.to_vector()[0];
  };
  Tensor loss({1}), probs({N, C}), dz({N, C});
  softmax_cross_entropy_forward(ctx, logits, labels, &mask, loss, probs, kRef);
  softmax_cross_entropy_backward(ctx, probs, labels, &mask, dloss, dz, kRef);
  check_gradient("dlogits", logits, dz.to_vector(), objective, 1e-2, 3e-3);
}

}  // namespace
}  // namespace dlrt
