// Several threads, each with its own Context, run ops at once and get
// exactly what one thread gets. Run under the tsan preset this also checks
// the runtime's shared state (registry, allocator, log) for data races.
#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "support/test_support.hpp"

namespace dlrt {
namespace {

std::vector<std::vector<float>> run_ops(Context& ctx, Engine engine, const Tensor& x,
                                        const Tensor& w, const Tensor& dy,
                                        const Conv2dParams& params) {
  Tensor y(conv2d_output_shape(x.shape(), w.shape(), params), x.device());
  Tensor dx(x.shape(), x.device()), dw(w.shape(), x.device()), db({w.size(0)}, x.device());
  conv2d_forward(ctx, x, w, nullptr, y, params, engine);
  conv2d_backward_data(ctx, dy, w, dx, params, engine);
  conv2d_backward_filter(ctx, x, dy, dw, params, engine);
  conv2d_backward_bias(ctx, dy, db, engine);
  return {y.to_vector(), dx.to_vector(), dw.to_vector(), db.to_vector()};
}

class Concurrency : public ::testing::TestWithParam<Engine> {};

TEST_P(Concurrency, ThreadsWithTheirOwnContextsMatchOneThread) {
  const Engine engine = GetParam();
  DLRT_SKIP_UNLESS_ENGINE_RUNS(engine);
  const Device device = test::device_for(engine);
  Conv2dParams params;
  params.pad_h = params.pad_w = 1;
  params.stride_h = 2;
  const Tensor x = test::random_tensor({2, 8, 13, 11}, 1, device);
  const Tensor w = test::random_tensor({6, 8, 3, 3}, 2, device);
  const Tensor dy =
      test::random_tensor(conv2d_output_shape(x.shape(), w.shape(), params), 3, device);

  // Deterministic mode: cuDNN's fastest backward algorithms add with atomics.
  ContextOptions options;
  options.deterministic = true;
  Context solo(device, options);
  const auto expected = run_ops(solo, engine, x, w, dy, params);

  constexpr int kThreads = 4, kRounds = 3;
  std::vector<int> mismatches(kThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      Context ctx(device, options);
      for (int round = 0; round < kRounds; ++round) {
        const auto got = run_ops(ctx, engine, x, w, dy, params);
        for (std::size_t i = 0; i < got.size(); ++i)
          mismatches[t] += !test::bitwise_equal(got[i], expected[i]);
      }
    });
  for (auto& thread : threads) thread.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(mismatches[t], 0) << "thread " << t;
}

INSTANTIATE_TEST_SUITE_P(Conv2d, Concurrency,
                         ::testing::ValuesIn(test::engines_of(OpFamily::Conv2d)),
                         test::engine_name);

TEST(Logging, DebugLevelNamesTheEngineAndWhy) {
  const LogLevel saved = log_level();
  set_log_level(LogLevel::Debug);
  Context ctx;
  Tensor x = test::random_tensor({1, 1, 4, 4}, 1), w = test::random_tensor({1, 1, 3, 3}, 2);
  Tensor y({1, 1, 2, 2});
  ::testing::internal::CaptureStderr();
  conv2d_forward(ctx, x, w, nullptr, y);
  conv2d_forward(ctx, x, w, nullptr, y, {}, Engine::Reference);
  const std::string log = ::testing::internal::GetCapturedStderr();
  set_log_level(saved);
  // The plan's line says which engine was chosen, what it chose and why;
  // every run says which engine ran.
  EXPECT_NE(log.find("conv2d_forward: planned engine=cpu ("), std::string::npos) << log;
  // Onednn comes first: where it is built it passes this tiny problem on,
  // elsewhere it is passed over; either way the line says why.
  EXPECT_NE(
      log.find(engine_built(Engine::Onednn, OpFamily::Conv2d)
                   ? ") on cpu (auto: after onednn passed it on: under 10 MFLOP"
                   : ") on cpu (auto: after onednn declined: engine onednn is not in this build"),
      std::string::npos)
      << log;
  EXPECT_NE(log.find("conv2d_forward: planned engine=reference (reference loops"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("on cpu (requested)"), std::string::npos) << log;
  EXPECT_NE(log.find("conv2d_forward: engine=cpu device=cpu"), std::string::npos) << log;
  EXPECT_NE(log.find("conv2d_forward: engine=reference device=cpu"), std::string::npos) << log;

  set_log_level(LogLevel::Warn);
  ::testing::internal::CaptureStderr();
  conv2d_forward(ctx, x, w, nullptr, y);
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");
  set_log_level(saved);
}

}  // namespace
}  // namespace dlrt
