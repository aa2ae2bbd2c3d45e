// The training layer's ops through the public API: every engine of the
// Linear, Pointwise and Loss families against Reference on small shapes
// (odd sizes included) with NaN-poisoned outputs, and the validation rules
// (the message names the argument; outputs stay untouched).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "support/test_support.hpp"

namespace dlrt {
namespace {

using test::all_close;
using test::poisoned;
using test::random_tensor;

Tensor labels_tensor(const std::vector<std::int32_t>& values, Device device) {
  Tensor t(Shape{static_cast<std::int64_t>(values.size())}, Device::cpu(), DType::I32);
  for (std::size_t i = 0; i < values.size(); ++i) t.data_i32()[i] = values[i];
  return t.to(device);
}

struct LinearCase {
  std::int64_t N, in, out;
};
const LinearCase kLinearCases[] = {{1, 1, 1}, {3, 5, 7}, {17, 33, 9}, {64, 31, 65}};

class LinearEngines : public ::testing::TestWithParam<Engine> {};

TEST_P(LinearEngines, MatchReference) {
  const Engine engine = GetParam();
  DLRT_SKIP_UNLESS_ENGINE_RUNS(engine);
  const Device dev = test::device_for(engine);
  Context ctx(dev), ref;
  std::uint64_t seed = 1;
  for (const auto& c : kLinearCases) {
    SCOPED_TRACE(std::to_string(c.N) + "x" + std::to_string(c.in) + "->" + std::to_string(c.out));
    const Tensor x = random_tensor({c.N, c.in}, seed++), w = random_tensor({c.out, c.in}, seed++);
    const Tensor b = random_tensor({c.out}, seed++), dy = random_tensor({c.N, c.out}, seed++);
    for (bool with_bias : {false, true}) {
      Tensor y_ref = poisoned({c.N, c.out}), y = poisoned({c.N, c.out}, dev);
      linear_forward(ref, x, w, with_bias ? &b : nullptr, y_ref, Engine::Reference);
      const Tensor bd = b.to(dev);
      EXPECT_EQ(linear_forward(ctx, x.to(dev), w.to(dev), with_bias ? &bd : nullptr, y, engine),
                engine);
      EXPECT_TRUE(all_close(y.to_vector(), y_ref.to_vector(), c.in));
    }
    Tensor dx_ref = poisoned({c.N, c.in}), dx = poisoned({c.N, c.in}, dev);
    linear_backward_data(ref, dy, w, dx_ref, Engine::Reference);
    linear_backward_data(ctx, dy.to(dev), w.to(dev), dx, engine);
    EXPECT_TRUE(all_close(dx.to_vector(), dx_ref.to_vector(), c.out));
    for (bool accumulate : {false, true}) {
      Tensor dw_ref = accumulate ? random_tensor({c.out, c.in}, 99) : poisoned({c.out, c.in});
      Tensor db_ref = accumulate ? random_tensor({c.out}, 98) : poisoned({c.out});
      Tensor dw = dw_ref.to(dev), db = db_ref.to(dev);
      linear_backward_weights(ref, x, dy, dw_ref, &db_ref, accumulate, Engine::Reference);
      linear_backward_weights(ctx, x.to(dev), dy.to(dev), dw, &db, accumulate, engine);
      EXPECT_TRUE(all_close(dw.to_vector(), dw_ref.to_vector(), c.N));
      EXPECT_TRUE(all_close(db.to_vector(), db_ref.to_vector(), c.N));
      Tensor dw2 = poisoned({c.out, c.in}, dev);
      linear_backward_weights(ctx, x.to(dev), dy.to(dev), dw2, nullptr, false, engine);
    }
    // Gram of f = x [N, in] as [C, P].
    const float s = 0.37f;
    Tensor g_ref = poisoned({c.N, c.N}), g = poisoned({c.N, c.N}, dev);
    gram(ref, x, g_ref, s, Engine::Reference);
    gram(ctx, x.to(dev), g, s, engine);
    EXPECT_TRUE(all_close(g.to_vector(), g_ref.to_vector(), c.in));
    const Tensor dg = random_tensor({c.N, c.N}, seed++);
    Tensor df_ref = poisoned({c.N, c.in}), df = poisoned({c.N, c.in}, dev);
    gram_backward(ref, x, dg, df_ref, s, Engine::Reference);
    gram_backward(ctx, x.to(dev), dg.to(dev), df, s, engine);
    EXPECT_TRUE(all_close(df.to_vector(), df_ref.to_vector(), 2 * c.N));
  }
}

INSTANTIATE_TEST_SUITE_P(Engines, LinearEngines,
                         ::testing::ValuesIn(test::engines_of(OpFamily::Linear, true)),
                         test::engine_name);

class PointwiseEngines : public ::testing::TestWithParam<Engine> {};

TEST_P(PointwiseEngines, MatchReference) {
  const Engine engine = GetParam();
  DLRT_SKIP_UNLESS_ENGINE_RUNS(engine);
  const Device dev = test::device_for(engine);
  Context ctx(dev), ref;
  const Shape shapes[] = {{1}, {7}, {3, 5}, {2, 3, 11, 13}, {100003}};
  std::uint64_t seed = 10;
  for (const Shape& shape : shapes) {
    SCOPED_TRACE(shape.to_string());
    const Tensor x = random_tensor(shape, seed++, dev), dy = random_tensor(shape, seed++, dev);
    const Tensor xr = x.to(Device::cpu()), dyr = dy.to(Device::cpu());
    for (Activation act : {Activation::Relu, Activation::Tanh, Activation::Sigmoid}) {
      SCOPED_TRACE(to_string(act));
      Tensor y_ref = poisoned(shape), y = poisoned(shape, dev);
      activation_forward(ref, act, xr, y_ref, Engine::Reference);
      EXPECT_EQ(activation_forward(ctx, act, x, y, engine), engine);
      EXPECT_TRUE(all_close(y.to_vector(), y_ref.to_vector(), 4));
      Tensor dx_ref = poisoned(shape), dx = poisoned(shape, dev);
      activation_backward(ref, act, y_ref, dyr, dx_ref, Engine::Reference);
      activation_backward(ctx, act, y_ref.to(dev), dy, dx, engine);
      EXPECT_TRUE(all_close(dx.to_vector(), dx_ref.to_vector(), 4));
    }
    Tensor s_ref = poisoned(shape), s = poisoned(shape, dev);
    add(ref, xr, dyr, s_ref, 0.5f, -2.0f, Engine::Reference);
    add(ctx, x, dy, s, 0.5f, -2.0f, engine);
    EXPECT_TRUE(all_close(s.to_vector(), s_ref.to_vector(), 2));
    // In place: out is a.
    Tensor inplace = x.clone();
    add(ctx, inplace, dy, inplace, 0.5f, -2.0f, engine);
    EXPECT_TRUE(all_close(inplace.to_vector(), s_ref.to_vector(), 2));
    Tensor sc_ref = poisoned(shape), sc = poisoned(shape, dev);
    scale(ref, xr, sc_ref, -3.5f, Engine::Reference);
    scale(ctx, x, sc, -3.5f, engine);
    EXPECT_TRUE(all_close(sc.to_vector(), sc_ref.to_vector(), 1));
  }
}

INSTANTIATE_TEST_SUITE_P(Engines, PointwiseEngines,
                         ::testing::ValuesIn(test::engines_of(OpFamily::Pointwise, true)),
                         test::engine_name);

class LossEngines : public ::testing::TestWithParam<Engine> {};

TEST_P(LossEngines, MatchReference) {
  const Engine engine = GetParam();
  DLRT_SKIP_UNLESS_ENGINE_RUNS(engine);
  const Device dev = test::device_for(engine);
  Context ctx(dev), ref;
  const std::int64_t cases[][2] = {{1, 1}, {1, 2}, {5, 3}, {13, 26}, {300, 7}};
  std::uint64_t seed = 20;
  for (const auto& c : cases) {
    const std::int64_t N = c[0], C = c[1];
    SCOPED_TRACE(std::to_string(N) + "x" + std::to_string(C));
    std::vector<std::int32_t> labels(static_cast<std::size_t>(N));
    std::vector<float> mask(static_cast<std::size_t>(N));
    for (std::int64_t n = 0; n < N; ++n) {
      labels[n] = static_cast<std::int32_t>((n * 7 + 3) % C);
      mask[n] = n % 3 == 2 ? 0.0f : 1.0f;
      if (mask[n] == 0.0f) labels[n] = -1;  // padded rows' labels are not read
    }
    // Large logits: log-sum-exp must keep them finite.
    const Tensor logits = Tensor::from_vector({N, C}, test::random_values(N * C, seed++, -40, 40));
    const Tensor lab = labels_tensor(labels, Device::cpu());
    const Tensor m = Tensor::from_vector({N}, mask);
    for (bool masked : {false, true}) {
      std::vector<std::int32_t> plain = labels;
      for (auto& l : plain) l = l < 0 ? 0 : l;
      const Tensor lab_used = masked ? lab : labels_tensor(plain, Device::cpu());
      const Tensor* mask_ref = masked ? &m : nullptr;
      Tensor loss_ref = poisoned({1}), probs_ref = poisoned({N, C});
      softmax_cross_entropy_forward(ref, logits, lab_used, mask_ref, loss_ref, probs_ref,
                                    Engine::Reference);
      ASSERT_TRUE(std::isfinite(loss_ref.to_vector()[0]));
      const Tensor md = m.to(dev);
      const Tensor* mask_dev = masked ? &md : nullptr;
      Tensor loss = poisoned({1}, dev), probs = poisoned({N, C}, dev);
      EXPECT_EQ(softmax_cross_entropy_forward(ctx, logits.to(dev), lab_used.to(dev), mask_dev, loss,
                                              probs, engine),
                engine);
      EXPECT_TRUE(all_close(loss.to_vector(), loss_ref.to_vector(), N * C, 1e-5));
      EXPECT_TRUE(all_close(probs.to_vector(), probs_ref.to_vector(), C));
      Tensor dz_ref = poisoned({N, C}), dz = poisoned({N, C}, dev);
      softmax_cross_entropy_backward(ref, probs_ref, lab_used, mask_ref, 1.5f, dz_ref,
                                     Engine::Reference);
      softmax_cross_entropy_backward(ctx, probs_ref.to(dev), lab_used.to(dev), mask_dev, 1.5f, dz,
                                     engine);
      EXPECT_TRUE(all_close(dz.to_vector(), dz_ref.to_vector(), C));
      if (masked) {
        const std::vector<float> got = dz.to_vector();
        for (std::int64_t n = 0; n < N; ++n)
          if (mask[n] == 0.0f) {
            for (std::int64_t k = 0; k < C; ++k) EXPECT_EQ(got[n * C + k], 0.0f);
          }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Engines, LossEngines,
                         ::testing::ValuesIn(test::engines_of(OpFamily::Loss, true)),
                         test::engine_name);

TEST(Loss, KnownValue) {
  // Two equal logits: nll = log 2 for each row; one row masked.
  Context ctx;
  const Tensor logits = Tensor::from_vector({2, 2}, std::vector<float>{1000, 1000, 3, -3});
  const Tensor labels = labels_tensor({0, 1}, Device::cpu());
  const Tensor mask = Tensor::from_vector({2}, std::vector<float>{1, 0});
  Tensor loss = poisoned({1}), probs = poisoned({2, 2});
  softmax_cross_entropy_forward(ctx, logits, labels, &mask, loss, probs);
  EXPECT_NEAR(loss.to_vector()[0], std::log(2.0), 1e-6);
  EXPECT_NEAR(probs.to_vector()[1], 0.5, 1e-6);
  // All masked: the loss is 0 (sum of nothing over max(0, 1)).
  const Tensor none = Tensor::zeros({2});
  softmax_cross_entropy_forward(ctx, logits, labels, &none, loss, probs);
  EXPECT_EQ(loss.to_vector()[0], 0.0f);
}

// ---- validation ---------------------------------------------------------------

::testing::AssertionResult rejects(const std::function<void()>& call,
                                   const std::vector<std::string>& needles, const Tensor& out) {
  const std::vector<float> before = out.to_vector();
  ::testing::AssertionResult r = test::throws_error(call, Error::Kind::InvalidArgument, needles);
  if (!r) return r;
  if (!test::bitwise_equal(out.to_vector(), before))
    return ::testing::AssertionFailure() << "the output was written";
  return ::testing::AssertionSuccess();
}

TEST(NnOpsValidation, Linear) {
  Context ctx;
  const Tensor x = random_tensor({4, 3}, 1), w = random_tensor({5, 3}, 2),
               b = random_tensor({5}, 3);
  Tensor y = poisoned({4, 5});
  EXPECT_TRUE(rejects(
      [&] {
        linear_forward(ctx, random_tensor({4, 3, 1}, 1), w, &b, y);
      },
      {"'x'", "rank 2"}, y));
  EXPECT_TRUE(rejects(
      [&] {
        linear_forward(ctx, x, random_tensor({5, 4}, 2), &b, y);
      },
      {"'w'", "in = x.shape[1]"}, y));
  const Tensor b4 = random_tensor({4}, 3);
  EXPECT_TRUE(rejects([&] { linear_forward(ctx, x, w, &b4, y); }, {"'bias'", "out"}, y));
  Tensor y_bad = poisoned({4, 6});
  EXPECT_TRUE(rejects([&] { linear_forward(ctx, x, w, &b, y_bad); }, {"'y'", "[4, 5]"}, y_bad));
  const Tensor xi(Shape{4, 3}, Device::cpu(), DType::I32);
  EXPECT_TRUE(rejects([&] { linear_forward(ctx, xi, w, &b, y); }, {"'x.dtype'", "f32"}, y));
  Tensor big = poisoned({20});
  Tensor yv = big.view({4, 5}), xv = big.slice(0, 12).view({4, 3});
  EXPECT_TRUE(rejects([&] { linear_forward(ctx, xv, w, &b, yv); }, {"'y'", "overlap"}, big));
  EXPECT_TRUE(
      rejects([&] { linear_forward(ctx, x, w, &b, y, static_cast<Engine>(99)); }, {"engine"}, y));

  const Tensor dy = random_tensor({4, 5}, 4);
  Tensor dx = poisoned({4, 3});
  EXPECT_TRUE(rejects(
      [&] {
        linear_backward_data(ctx, dy, random_tensor({6, 3}, 2), dx);
      },
      {"'w'", "out = dy.shape[1]"}, dx));
  Tensor dx_bad = poisoned({4, 4});
  EXPECT_TRUE(rejects([&] { linear_backward_data(ctx, dy, w, dx_bad); }, {"'dx'"}, dx_bad));
  Tensor dw = poisoned({5, 3}), db = poisoned({5});
  EXPECT_TRUE(rejects(
      [&] {
        linear_backward_weights(ctx, x, random_tensor({3, 5}, 4), dw, &db);
      },
      {"'dy'", "N = x.shape[0]"}, dw));
  Tensor db_bad = poisoned({4});
  EXPECT_TRUE(
      rejects([&] { linear_backward_weights(ctx, x, dy, dw, &db_bad); }, {"'db'", "out"}, dw));
  Tensor both = poisoned({20});
  Tensor dwv = both.slice(0, 15).view({5, 3}), dbv = both.slice(15, 20);
  Tensor dbo = both.slice(10, 15);
  EXPECT_TRUE(rejects([&] { linear_backward_weights(ctx, x, dy, dwv, &dbo); },
                      {"'db'", "two outputs"}, both));
  EXPECT_NO_THROW(linear_backward_weights(ctx, x, dy, dwv, &dbv));

  Tensor g = poisoned({4, 4});
  EXPECT_TRUE(rejects([&] { gram(ctx, x, g, std::numeric_limits<float>::infinity()); },
                      {"'scale'", "finite"}, g));
  Tensor g_bad = poisoned({4, 3});
  EXPECT_TRUE(rejects([&] { gram(ctx, x, g_bad, 1.0f); }, {"'g'", "[4, 4]"}, g_bad));
  Tensor df = poisoned({4, 3});
  EXPECT_TRUE(rejects(
      [&] {
        gram_backward(ctx, x, random_tensor({3, 3}, 5), df, 1.0f);
      },
      {"'dg'"}, df));
  EXPECT_TRUE(rejects(
      [&] {
        gram_backward(ctx, x, random_tensor({4, 4}, 5), df, NAN);
      },
      {"'scale'"}, df));
}

TEST(NnOpsValidation, Pointwise) {
  Context ctx;
  const Tensor x = random_tensor({3, 4}, 1);
  Tensor y = poisoned({3, 4});
  EXPECT_TRUE(rejects([&] { activation_forward(ctx, static_cast<Activation>(7), x, y); },
                      {"'activation'"}, y));
  Tensor y_bad = poisoned({4, 3});
  EXPECT_TRUE(rejects([&] { activation_forward(ctx, Activation::Tanh, x, y_bad); },
                      {"'y'", "x's shape"}, y_bad));
  Tensor buf = poisoned({12});
  Tensor view = buf.view({3, 4});
  EXPECT_TRUE(rejects([&] { activation_forward(ctx, Activation::Relu, view, view); },
                      {"'y'", "overlap"}, buf));
  Tensor dx = poisoned({3, 4});
  EXPECT_TRUE(
      rejects([&] { activation_backward(ctx, Activation::Relu, x, random_tensor({12}, 2), dx); },
              {"'dy'"}, dx));
  Tensor undefined;
  EXPECT_TRUE(rejects([&] { activation_backward(ctx, Activation::Relu, x, x, undefined); },
                      {"'dx'", "undefined"}, dx));
  Tensor out = poisoned({3, 4});
  EXPECT_TRUE(rejects([&] { add(ctx, x, random_tensor({3, 5}, 3), out); }, {"'b'"}, out));
  EXPECT_TRUE(rejects([&] { add(ctx, x, x, out, INFINITY); }, {"'alpha'", "finite"}, out));
  EXPECT_TRUE(rejects([&] { add(ctx, x, x, out, 1.0f, NAN); }, {"'beta'", "finite"}, out));
  Tensor big = poisoned({13});
  Tensor a = big.slice(0, 12).view({3, 4}), shifted = big.slice(1, 13).view({3, 4});
  EXPECT_TRUE(rejects([&] { add(ctx, a, x, shifted); }, {"'out'", "partially"}, big));
  EXPECT_TRUE(rejects([&] { scale(ctx, x, out, NAN); }, {"'alpha'"}, out));
  EXPECT_TRUE(rejects([&] { scale(ctx, a, a, 2.0f); }, {"'out'", "overlap"}, big));
}

TEST(NnOpsValidation, Loss) {
  Context ctx;
  const Tensor logits = random_tensor({3, 4}, 1);
  const Tensor labels = labels_tensor({0, 3, 1}, Device::cpu());
  Tensor loss = poisoned({1}), probs = poisoned({3, 4});
  auto fwd = [&](const Tensor& z, const Tensor& l, const Tensor* m, Tensor& lo, Tensor& p) {
    return [&ctx, z, l, m, lo, p]() mutable { softmax_cross_entropy_forward(ctx, z, l, m, lo, p); };
  };
  EXPECT_TRUE(rejects(fwd(logits, labels_tensor({0, 4, 1}, Device::cpu()), nullptr, loss, probs),
                      {"'labels[1]'", "[0, 4)"}, probs));
  EXPECT_TRUE(rejects(fwd(logits, labels_tensor({0, -1, 1}, Device::cpu()), nullptr, loss, probs),
                      {"'labels[1]'"}, loss));
  const Tensor half = Tensor::from_vector({3}, std::vector<float>{1, 0.5f, 1});
  EXPECT_TRUE(rejects(fwd(logits, labels, &half, loss, probs), {"'mask[1]'", "0 or 1"}, probs));
  const Tensor short_mask = Tensor::from_vector({2}, std::vector<float>{1, 1});
  EXPECT_TRUE(rejects(fwd(logits, labels, &short_mask, loss, probs), {"'mask'", "[3]"}, probs));
  const Tensor f32_labels = Tensor::zeros({3});
  EXPECT_TRUE(
      rejects(fwd(logits, f32_labels, nullptr, loss, probs), {"'labels.dtype'", "i32"}, probs));
  Tensor loss2 = poisoned({2});
  EXPECT_TRUE(rejects(fwd(logits, labels, nullptr, loss2, probs), {"'loss'", "scalar"}, loss2));
  Tensor probs_bad = poisoned({3, 5});
  EXPECT_TRUE(
      rejects(fwd(logits, labels, nullptr, loss, probs_bad), {"'probs'", "logits"}, probs_bad));
  Tensor buf = poisoned({13});
  Tensor pv = buf.slice(0, 12).view({3, 4}), lv = buf.slice(12, 13), lo = buf.slice(11, 12);
  EXPECT_TRUE(rejects(fwd(logits, labels, nullptr, lo, pv), {"'loss'", "two outputs"}, buf));
  EXPECT_NO_THROW(softmax_cross_entropy_forward(ctx, logits, labels, nullptr, lv, pv));
  Tensor z = logits.clone();
  EXPECT_TRUE(rejects(fwd(z, labels, nullptr, loss, z), {"'probs'", "overlap"}, z));

  Tensor dz = poisoned({3, 4});
  EXPECT_TRUE(rejects([&] { softmax_cross_entropy_backward(ctx, probs, labels, nullptr, NAN, dz); },
                      {"'dloss'", "finite"}, dz));
  EXPECT_TRUE(rejects(
      [&] {
        softmax_cross_entropy_backward(ctx, probs, labels_tensor({5, 0, 0}, Device::cpu()), nullptr,
                                       1.0f, dz);
      },
      {"'labels[0]'"}, dz));
  Tensor dz_bad = poisoned({4, 3});
  EXPECT_TRUE(
      rejects([&] { softmax_cross_entropy_backward(ctx, probs, labels, nullptr, 1.0f, dz_bad); },
              {"'dlogits'"}, dz_bad));
  Tensor p2 = probs.clone();
  EXPECT_TRUE(rejects([&] { softmax_cross_entropy_backward(ctx, p2, labels, nullptr, 1.0f, p2); },
                      {"'dlogits'", "overlap"}, p2));
}

}  // namespace
}  // namespace dlrt
