// Every validation rule of every convolution entry point: the call throws
// dlrt::Error naming the argument, and the output is left bitwise untouched.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "support/test_support.hpp"

namespace dlrt {
namespace {

struct Rule {
  std::string name;
  std::vector<std::string> needles;  // what the message must name
  std::function<void(Context&, Tensor& out)> call;
  Error::Kind kind = Error::Kind::InvalidArgument;
};

// A valid problem that each rule breaks in one way.
struct Valid {
  Tensor x = test::random_tensor({2, 4, 7, 7}, 1);
  Tensor w = test::random_tensor({6, 4, 3, 3}, 2);
  Tensor bias = test::random_tensor({6}, 3);
  Tensor dy = test::random_tensor({2, 6, 5, 5}, 4);
  Conv2dParams params;
};

Conv2dParams with(std::function<void(Conv2dParams&)> edit) {
  Conv2dParams p;
  edit(p);
  return p;
}

void expect_rule(const Rule& rule, const Shape& out_shape, DType out_dtype = DType::F32) {
  SCOPED_TRACE(rule.name);
  Context ctx;
  Tensor out(out_shape, Device::cpu(), out_dtype);
  // NaN for f32 outputs; i32 outputs hold a sentinel (a NaN is no int32).
  out.fill(out_dtype == DType::F32 ? std::numeric_limits<float>::quiet_NaN() : -123456.0f);
  const std::vector<float> before = out.to_vector();
  EXPECT_TRUE(test::throws_error([&] { rule.call(ctx, out); }, rule.kind, rule.needles));
  EXPECT_TRUE(test::bitwise_equal(out.to_vector(), before)) << "the output was written";
}

TEST(Conv2dValidation, ForwardRules) {
  Valid v;
  auto fwd = [&](const Tensor& x, const Tensor& w, const Tensor* b, const Conv2dParams& p) {
    return [x, w, b, p](Context& ctx, Tensor& y) { conv2d_forward(ctx, x, w, b, y, p); };
  };
  const Tensor i32_x = Tensor({2, 4, 7, 7}, Device::cpu(), DType::I32);
  const Tensor bias_2d = test::random_tensor({6, 1}, 5), bias_5 = test::random_tensor({5}, 5);
  const std::vector<Rule> rules = {
      {"undefined x", {"'x'", "undefined"}, fwd(Tensor(), v.w, nullptr, {})},
      {"x of rank 3", {"'x'", "rank 4"}, fwd(v.x.view({8, 7, 7}), v.w, nullptr, {})},
      {"x of dtype i32", {"'x.dtype'", "i32"}, fwd(i32_x, v.w, nullptr, {})},
      {"w of rank 2", {"'w'", "rank 4"}, fwd(v.x, v.w.view({6, 36}), nullptr, {})},
      {"w channels != C", {"'w'", "dimension 1"}, fwd(v.x, v.w.view({12, 2, 3, 3}), nullptr, {})},
      {"bias of rank 2", {"'bias'", "rank 1"}, fwd(v.x, v.w, &bias_2d, {})},
      {"bias of wrong length", {"'bias'", "[6]"}, fwd(v.x, v.w, &bias_5, {})},
      {"negative pad_h", {"'params.pad_h'", "-1"}, fwd(v.x, v.w, nullptr, with([](auto& p) {
                                                         p.pad_h = -1;
                                                       }))},
      {"negative pad_w", {"'params.pad_w'"}, fwd(v.x, v.w, nullptr, with([](auto& p) {
                                                   p.pad_w = -2;
                                                 }))},
      {"huge pad", {"'params.pad_h'", "65536"}, fwd(v.x, v.w, nullptr, with([](auto& p) {
                                                      p.pad_h = 1 << 20;
                                                    }))},
      {"zero stride_h", {"'params.stride_h'", "= 0"}, fwd(v.x, v.w, nullptr, with([](auto& p) {
                                                            p.stride_h = 0;
                                                          }))},
      {"negative stride_w", {"'params.stride_w'"}, fwd(v.x, v.w, nullptr, with([](auto& p) {
                                                         p.stride_w = -1;
                                                       }))},
      {"zero dilation_h", {"'params.dilation_h'"}, fwd(v.x, v.w, nullptr, with([](auto& p) {
                                                         p.dilation_h = 0;
                                                       }))},
      {"zero dilation_w", {"'params.dilation_w'"}, fwd(v.x, v.w, nullptr, with([](auto& p) {
                                                         p.dilation_w = 0;
                                                       }))},
      {"zero groups", {"'params.groups'"}, fwd(v.x, v.w, nullptr, with([](auto& p) {
                                                 p.groups = 0;
                                               }))},
      {"groups not dividing C",
       {"'params.groups'", "C = 4"},
       fwd(v.x, v.w.view({6, 4, 3, 3}), nullptr, with([](auto& p) { p.groups = 3; }))},
      {"groups not dividing K",
       {"'params.groups'", "K = 6"},
       fwd(v.x, test::random_tensor({6, 1, 3, 3}, 9), nullptr,
           with([](auto& p) { p.groups = 4; }))},
      {"filter taller than the padded input",
       {"'w'", "height"},
       fwd(v.x, test::random_tensor({6, 4, 9, 3}, 9), nullptr, {})},
      {"filter wider once dilated", {"'w'", "width"}, fwd(v.x, v.w, nullptr, with([](auto& p) {
                                                            p.dilation_w = 4;
                                                          }))},
      {"bad engine value",
       {"'engine'"},
       [&](Context& ctx, Tensor& y) {
         conv2d_forward(ctx, v.x, v.w, nullptr, y, {}, static_cast<Engine>(42));
       }},
  };
  for (const Rule& rule : rules) expect_rule(rule, {2, 6, 5, 5});

  // The output itself.
  expect_rule({"y of the wrong shape",
               {"'y'", "[2, 6, 5, 5]"},
               [&](Context& ctx, Tensor& y) { conv2d_forward(ctx, v.x, v.w, nullptr, y); }},
              {2, 6, 5, 4});
  expect_rule({"y of rank 3",
               {"'y'", "rank 4"},
               [&](Context& ctx, Tensor& y) { conv2d_forward(ctx, v.x, v.w, nullptr, y); }},
              {12, 5, 5});
  expect_rule({"y of dtype i32",
               {"'y.dtype'"},
               [&](Context& ctx, Tensor& y) { conv2d_forward(ctx, v.x, v.w, nullptr, y); }},
              {2, 6, 5, 5}, DType::I32);
  expect_rule({"undefined y",
               {"'y'", "undefined"},
               [&](Context& ctx, Tensor&) {
                 Tensor y;
                 conv2d_forward(ctx, v.x, v.w, nullptr, y);
               }},
              {1});
}

TEST(Conv2dValidation, OutputsMayNotOverlapInputs) {
  Context ctx;
  // y is a view of the same storage as x: [1, 1, 4, 4] over a 1x1x6x6 x
  // with a 3x3 filter.
  Tensor buffer = test::random_tensor({72}, 1);
  Tensor x = buffer.view({2, 1, 6, 6});
  Tensor w = test::random_tensor({1, 1, 3, 3}, 2);
  Tensor y_alias = buffer.slice(0, 32).view({2, 1, 4, 4});
  const std::vector<float> before = buffer.to_vector();
  EXPECT_TRUE(test::throws_error([&] { conv2d_forward(ctx, x, w, nullptr, y_alias); },
                                 Error::Kind::InvalidArgument, {"'y'", "'x'", "overlap"}));
  EXPECT_TRUE(test::bitwise_equal(buffer.to_vector(), before));

  Tensor wbuf = test::random_tensor({9 + 32}, 3);
  Tensor w2 = wbuf.slice(0, 9).view({1, 1, 3, 3});
  Tensor y_over_w = wbuf.slice(9, 41).view({2, 1, 4, 4});
  EXPECT_FALSE(y_over_w.overlaps(w2));            // adjacent is not overlapping...
  conv2d_forward(ctx, x, w2, nullptr, y_over_w);  // ... and runs
  Tensor y_on_w = wbuf.slice(0, 32).view({2, 1, 4, 4});
  EXPECT_TRUE(test::throws_error([&] { conv2d_forward(ctx, x, w2, nullptr, y_on_w); },
                                 Error::Kind::InvalidArgument, {"'y'", "'w'"}));

  Tensor bbuf = test::random_tensor({32}, 4);
  Tensor b = bbuf.slice(0, 1), y_on_b = bbuf.view({2, 1, 4, 4});
  EXPECT_TRUE(test::throws_error([&] { conv2d_forward(ctx, x, w, &b, y_on_b); },
                                 Error::Kind::InvalidArgument, {"'y'", "'bias'"}));

  Tensor dbuf = test::random_tensor({72}, 5);
  Tensor dy = dbuf.slice(0, 32).view({2, 1, 4, 4}), dx = dbuf.view({2, 1, 6, 6});
  EXPECT_TRUE(test::throws_error([&] { conv2d_backward_data(ctx, dy, w, dx); },
                                 Error::Kind::InvalidArgument, {"'dx'", "'dy'"}));
  Tensor dw_on_dy = dbuf.slice(0, 9).view({1, 1, 3, 3});
  EXPECT_TRUE(test::throws_error([&] { conv2d_backward_filter(ctx, x, dy, dw_on_dy); },
                                 Error::Kind::InvalidArgument, {"'dw'", "'dy'"}));
  Tensor db_on_dy = dbuf.slice(0, 1);
  EXPECT_TRUE(test::throws_error([&] { conv2d_backward_bias(ctx, dy, db_on_dy); },
                                 Error::Kind::InvalidArgument, {"'db'", "'dy'"}));
}

TEST(Conv2dValidation, BackwardDataRules) {
  Valid v;
  auto bwd = [](const Tensor& dy, const Tensor& w, const Conv2dParams& p) {
    return [dy, w, p](Context& ctx, Tensor& dx) { conv2d_backward_data(ctx, dy, w, dx, p); };
  };
  const std::vector<Rule> rules = {
      {"undefined dy", {"'dy'"}, bwd(Tensor(), v.w, {})},
      {"dy of the wrong shape",
       {"'dy'", "[2, 6, 5, 5]"},
       bwd(test::random_tensor({2, 6, 5, 6}, 1), v.w, {})},
      {"dy of rank 2", {"'dy'", "rank 4"}, bwd(v.dy.view({12, 25}), v.w, {})},
      {"w of the wrong channels", {"'w'"}, bwd(v.dy, v.w.view({6, 2, 3, 6}), {})},
      {"zero stride", {"'params.stride_h'"}, bwd(v.dy, v.w, with([](auto& p) { p.stride_h = 0; }))},
      {"negative pad", {"'params.pad_w'"}, bwd(v.dy, v.w, with([](auto& p) { p.pad_w = -1; }))},
  };
  for (const Rule& rule : rules) expect_rule(rule, {2, 4, 7, 7});
  expect_rule({"dx of rank 3", {"'dx'", "rank 4"}, bwd(v.dy, v.w, {})}, {8, 7, 7});
  expect_rule({"dx that does not give dy's shape", {"'dy'"}, bwd(v.dy, v.w, {})}, {2, 4, 9, 9});
}

TEST(Conv2dValidation, BackwardFilterRules) {
  Valid v;
  auto bwd = [](const Tensor& x, const Tensor& dy, const Conv2dParams& p) {
    return [x, dy, p](Context& ctx, Tensor& dw) { conv2d_backward_filter(ctx, x, dy, dw, p); };
  };
  const std::vector<Rule> rules = {
      {"undefined x", {"'x'"}, bwd(Tensor(), v.dy, {})},
      {"dy of the wrong shape", {"'dy'"}, bwd(v.x, test::random_tensor({2, 6, 4, 5}, 1), {})},
      {"x of rank 2", {"'x'", "rank 4"}, bwd(v.x.view({8, 49}), v.dy, {})},
      {"zero dilation", {"'params.dilation_h'"}, bwd(v.x, v.dy, with([](auto& p) {
                                                       p.dilation_h = 0;
                                                     }))},
      {"groups not dividing C", {"'params.groups'"}, bwd(v.x, v.dy, with([](auto& p) {
                                                           p.groups = 3;
                                                         }))},
  };
  for (const Rule& rule : rules) expect_rule(rule, {6, 4, 3, 3});
  expect_rule({"dw of rank 1", {"'dw'", "rank 4"}, bwd(v.x, v.dy, {})}, {216});
  expect_rule({"dw of the wrong channels", {"'dw'", "dimension 1"}, bwd(v.x, v.dy, {})},
              {6, 3, 3, 3});
}

TEST(Conv2dValidation, BackwardBiasRules) {
  Valid v;
  auto bwd = [](const Tensor& dy) {
    return [dy](Context& ctx, Tensor& db) { conv2d_backward_bias(ctx, dy, db); };
  };
  expect_rule({"undefined dy", {"'dy'"}, bwd(Tensor())}, {6});
  expect_rule({"dy of rank 3", {"'dy'", "rank 4"}, bwd(v.dy.view({12, 5, 5}))}, {6});
  expect_rule({"db of the wrong length", {"'db'", "[6]"}, bwd(v.dy)}, {7});
  expect_rule({"db of rank 2", {"'db'", "rank 1"}, bwd(v.dy)}, {6, 1});
  expect_rule({"bad engine",
               {"'engine'"},
               [&](Context& ctx, Tensor& db) {
                 conv2d_backward_bias(ctx, v.dy, db, static_cast<Engine>(-1));
               }},
              {6});
}

TEST(Conv2dValidation, ShapeRuleAndQuery) {
  EXPECT_EQ(conv2d_output_shape({1, 1, 6, 6}, {1, 1, 3, 3}, {}), (Shape{1, 1, 4, 4}));
  EXPECT_TRUE(test::throws_error(
      [] {
        conv2d_output_shape({1, 1, 6}, {1, 1, 3, 3}, {});
      },
      Error::Kind::InvalidArgument, {"'x'", "rank 4"}));
  EXPECT_TRUE(test::throws_error(
      [] {
        conv2d_output_shape({1, 0, 6, 6}, {1, 0, 3, 3}, {});
      },
      Error::Kind::InvalidArgument, {"'x'", ">= 1"}));
  // The output's element count overflows the index range even though x and w fit.
  EXPECT_TRUE(test::throws_error(
      [] {
        conv2d_output_shape({1 << 16, 1, 1 << 5, 1}, {1 << 20, 1, 1, 1}, {});
      },
      Error::Kind::InvalidArgument, {"derived output shape", "2^40"}));
  Context ctx;
  EXPECT_TRUE(test::throws_error(
      [&] {
        conv2d_query(ctx, Conv2dOp::Forward, {1, 1, 6, 6}, {1, 1, 3, 3}, {},
                     static_cast<Engine>(9));
      },
      Error::Kind::InvalidArgument, {"'engine'"}));
}

TEST(Conv2dValidation, AnEngineThatCannotRunLeavesTheOutputUntouched) {
  Valid v;
  const std::vector<Rule> rules = {
      {"Cuda on CPU tensors",
       {"engine cuda", "cpu"},
       [&](Context& ctx, Tensor& y) {
         conv2d_forward(ctx, v.x, v.w, nullptr, y, {}, Engine::Cuda);
       },
       Error::Kind::Unsupported},
      {"Cudnn on CPU tensors",
       {"engine cudnn"},
       [&](Context& ctx, Tensor& y) {
         conv2d_forward(ctx, v.x, v.w, nullptr, y, {}, Engine::Cudnn);
       },
       Error::Kind::Unsupported},
  };
  for (const Rule& rule : rules) expect_rule(rule, {2, 6, 5, 5});
}

TEST(Conv2dValidation, TensorsOnAnotherDeviceThanTheContext) {
  if (!cuda_available())
    GTEST_SKIP() << "needs a CUDA device to place a tensor off the CPU: "
                 << cuda_unavailable_reason();
  Valid v;
  Context gpu(Device::cuda(0));
  Tensor y = test::poisoned({2, 6, 5, 5}, Device::cuda(0));
  const std::vector<float> before = y.to_vector();
  EXPECT_TRUE(
      test::throws_error([&] { conv2d_forward(gpu, v.x, v.w.to(Device::cuda(0)), nullptr, y); },
                         Error::Kind::InvalidArgument, {"'x.device'", "cpu", "cuda:0"}));
  EXPECT_TRUE(test::bitwise_equal(y.to_vector(), before));
}

}  // namespace
}  // namespace dlrt

namespace dlrt {
namespace {

TEST(Conv2dFaults, AWorkspaceAllocationFailureIsAnErrorAndLeavesTheOutputUntouched) {
  Context ctx;
  Tensor x = test::random_tensor({2, 3, 9, 9}, 1), w = test::random_tensor({4, 3, 3, 3}, 2);
  Tensor y = test::poisoned({2, 4, 7, 7});
  const std::vector<float> before = y.to_vector();
  const MemoryStats stats = memory_stats(Device::cpu());
  debug::fail_next_allocations(Device::cpu(), 1);  // the im2col workspace
  EXPECT_TRUE(test::throws_error([&] { conv2d_forward(ctx, x, w, nullptr, y, {}, Engine::Cpu); },
                                 Error::Kind::OutOfMemory, {"injected"}));
  EXPECT_TRUE(test::bitwise_equal(y.to_vector(), before));
  EXPECT_EQ(memory_stats(Device::cpu()).in_use_bytes, stats.in_use_bytes);
  // The same context and allocator work on the next call.
  conv2d_forward(ctx, x, w, nullptr, y, {}, Engine::Cpu);
  Tensor want({2, 4, 7, 7});
  conv2d_forward(ctx, x, w, nullptr, want, {}, Engine::Reference);
  EXPECT_TRUE(test::all_close(y.to_vector(), want.to_vector(), 27));
}

TEST(Conv2dFaults, ProblemsBeyond32BitGemmsAreDeclinedNotWrapped) {
  // One input row of 2^31 + 7 columns: the im2col GEMM's leading dimension
  // no longer fits OpenBLAS's int. Asked without allocating anything.
  Context ctx;
  const Shape x{1, 1, 1, (std::int64_t{1} << 31) + 7}, w{1, 1, 1, 3};
  EngineQuery cpu = conv2d_query(ctx, Conv2dOp::Forward, x, w, {}, Engine::Cpu);
  // Depthwise-shaped problems take the direct path, which indexes with int64;
  // a two-channel problem goes through the GEMM and must be declined.
  EXPECT_TRUE(cpu.supported) << cpu.reason;
  const Shape x2{1, 2, 1, (std::int64_t{1} << 31) + 7}, w2{1, 2, 1, 3};
  cpu = conv2d_query(ctx, Conv2dOp::Forward, x2, w2, {}, Engine::Cpu);
  EXPECT_FALSE(cpu.supported);
  EXPECT_NE(cpu.reason.find("32-bit"), std::string::npos) << cpu.reason;
  EngineQuery automatic = conv2d_query(ctx, Conv2dOp::Forward, x2, w2, {});
  EXPECT_TRUE(automatic.supported);
  EXPECT_EQ(automatic.engine, Engine::Reference);
}

}  // namespace
}  // namespace dlrt
