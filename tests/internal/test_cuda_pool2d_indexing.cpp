// The Cuda pooling engine's index arithmetic, proven on the CPU: every kernel
// is replayed thread by thread through the same host/device functions it
// calls (pool2d_indexing.hpp), on NaN-guarded buffers that expose reads and
// writes out of bounds, and compared with the Reference engine on a table.
#include <gtest/gtest.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstring>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "dlrt/dlrt.hpp"
#include "kernels/cuda/pool2d_indexing.hpp"
#include "kernels/cuda/pool2d_variants.hpp"
#include "support/test_support.hpp"

namespace dlrt::detail::cuda_pool2d {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr std::int32_t kIndexGuard = -77;

// A buffer with guard zones on both sides: a stray read returns the guard (NaN
// for floats, which then shows in the result) and a stray write changes it.
template <class T>
class Guarded {
public:
  static constexpr std::size_t kGuard = 64;
  Guarded(std::size_t count, T guard, T fill) : data_(count + 2 * kGuard, guard), count_(count) {
    std::fill_n(data_.begin() + kGuard, count, fill);
  }
  Guarded(const std::vector<T>& values, T guard) : Guarded(values.size(), guard, guard) {
    std::copy(values.begin(), values.end(), data_.begin() + kGuard);
  }
  T* get() { return data_.data() + kGuard; }
  std::vector<T> values() const {
    return {data_.begin() + kGuard, data_.begin() + static_cast<std::ptrdiff_t>(kGuard + count_)};
  }
  bool guards_intact(T guard) const {
    auto same = [&](T v) { return std::memcmp(&v, &guard, sizeof(T)) == 0; };
    return std::all_of(data_.begin(), data_.begin() + kGuard, same) &&
           std::all_of(data_.end() - kGuard, data_.end(), same);
  }

private:
  std::vector<T> data_;
  std::size_t count_;
};

Pool2dParams make_params(PoolMode mode, int wh, int ww, int sh, int sw, int ph, int pw, bool ceil) {
  Pool2dParams p;
  p.mode = mode;
  p.window_h = wh, p.window_w = ww;
  p.stride_h = sh, p.stride_w = sw;
  p.pad_h = ph, p.pad_w = pw;
  p.ceil_mode = ceil;
  return p;
}

struct Problem {
  Shape x;
  Pool2dParams params;

  Shape y() const { return pool2d_output_shape(x, params); }
  Plane plane() const {
    const Shape ys = y();
    return {static_cast<int>(x[2]),
            static_cast<int>(x[3]),
            static_cast<int>(ys[2]),
            static_cast<int>(ys[3]),
            params.window_h,
            params.window_w,
            params.stride_h,
            params.stride_w,
            params.pad_h,
            params.pad_w};
  }
  std::string describe() const {
    std::ostringstream out;
    out << "x " << x.to_string() << " " << to_string(params.mode) << " window " << params.window_h
        << "x" << params.window_w << " stride " << params.stride_h << "x" << params.stride_w
        << " pad " << params.pad_h << "x" << params.pad_w << (params.ceil_mode ? " ceil" : "");
    return out.str();
  }
};

std::vector<Problem> table() {
  std::vector<Problem> out;
  const Shape inputs[] = {{2, 3, 11, 9}, {1, 2, 7, 10}, {3, 1, 8, 8}};
  const int windows[][2] = {{1, 1}, {2, 2}, {3, 3}, {2, 3}, {5, 4}, {7, 7}};
  std::size_t next = 0;
  for (const auto& w : windows)
    for (const int s : {1, 2, 3, w[0] + 1})
      for (const bool padded : {false, true})
        for (const bool ceil : {false, true}) {
          const Shape& x = inputs[next++ % std::size(inputs)];
          out.push_back({x, make_params(PoolMode::Max, w[0], w[1], s, s == 2 ? 3 : s,
                                        padded ? w[0] / 2 : 0, padded ? w[1] / 2 : 0, ceil)});
        }
  out.push_back({{2, 2, 6, 5}, Pool2dParams::global(PoolMode::Max, {2, 2, 6, 5})});
  // Random problems beyond the grid above: unequal windows, strides and pads
  // per dimension, stride past the window, ceil mode, tiny and odd planes.
  std::uint32_t state = 20240607u;
  auto draw = [&](int lo, int hi) {  // reproducible everywhere, unlike <random>'s distributions
    state = state * 1664525u + 1013904223u;
    return lo + static_cast<int>((state >> 8) % static_cast<std::uint32_t>(hi - lo + 1));
  };
  for (int trial = 0; trial < 60; ++trial) {
    const int wh = draw(1, 6), ww = draw(1, 6);
    const int ph = draw(0, wh / 2), pw = draw(0, ww / 2);
    const int sh = draw(1, 8), sw = draw(1, 8);
    const bool ceil = draw(0, 1) == 1;
    const std::int64_t N = draw(1, 2), C = draw(1, 3);
    const std::int64_t H = std::max(draw(1, 12), wh - 2 * ph);
    const std::int64_t W = std::max(draw(1, 12), ww - 2 * pw);
    out.push_back({{N, C, H, W}, make_params(PoolMode::Max, wh, ww, sh, sw, ph, pw, ceil)});
  }
  return out;
}

// The Reference engine through the public API.
struct Reference {
  Context ctx;
  std::vector<float> forward(const Tensor& x, const Pool2dParams& p,
                             std::vector<std::int32_t>* indices) {
    Tensor y(pool2d_output_shape(x.shape(), p));
    Tensor ind(y.shape(), Device::cpu(), DType::I32);
    pool2d_forward(ctx, x, y, p, Engine::Reference, indices ? &ind : nullptr);
    if (indices) *indices = ind.to_vector_i32();
    return y.to_vector();
  }
  std::vector<float> backward(const Tensor& dy, const Shape& x_shape, const Pool2dParams& p,
                              const Tensor* x) {
    Tensor dx(x_shape);
    Tensor y, indices;
    Pool2dSaved saved;
    if (p.mode == PoolMode::Max) {
      y = Tensor(dy.shape());
      pool2d_forward(ctx, *x, y, p, Engine::Reference);
      saved = {nullptr, x, &y};
    }
    pool2d_backward(ctx, dy, dx, p, saved, Engine::Reference);
    return dx.to_vector();
  }
};

template <class Fn>
void with_mode(PoolMode mode, Fn&& fn) {
  switch (mode) {
    case PoolMode::Max:
      fn(std::integral_constant<PoolMode, PoolMode::Max>{});
      return;
    case PoolMode::AverageIncludePad:
      fn(std::integral_constant<PoolMode, PoolMode::AverageIncludePad>{});
      return;
    case PoolMode::AverageExcludePad:
      fn(std::integral_constant<PoolMode, PoolMode::AverageExcludePad>{});
      return;
  }
}

// forward_kernel, thread by thread.
template <class Index>
void emulate_forward(const Problem& pr, const std::vector<float>& x, Guarded<float>& y,
                     Guarded<std::int32_t>* indices) {
  Guarded<float> in(x, kNaN);
  const Plane g = pr.plane();
  const auto count = static_cast<Index>(pr.y().numel());
  with_mode(pr.params.mode, [&](auto mode) {
    for (Index i = 0; i < count; ++i)
      forward_one<decltype(mode)::value>(in.get(), y.get(), indices ? indices->get() : nullptr, g,
                                         i);
  });
}

enum class Source { Indices, Recompute, ArgmaxPass };

// gather_kernel (variant 1), after argmax_kernel for the ArgmaxPass source.
template <class Index>
std::vector<float> emulate_gather(const Problem& pr, const std::vector<float>& dy_values,
                                  const std::vector<std::int32_t>& index_values,
                                  const std::vector<float>& x_values, Source source) {
  const Plane g = pr.plane();
  Guarded<float> dy(dy_values, kNaN), x(x_values, kNaN);
  Guarded<float> dx(static_cast<std::size_t>(pr.x.numel()), kNaN, kNaN);
  Guarded<std::int32_t> indices(index_values, kIndexGuard);
  if (source == Source::ArgmaxPass) {
    indices = Guarded<std::int32_t>(index_values.size(), kIndexGuard, -1);
    for (Index i = 0; i < static_cast<Index>(pr.y().numel()); ++i)
      argmax_one(x.get(), indices.get(), g, i);
    EXPECT_EQ(indices.values(), index_values);
    EXPECT_TRUE(indices.guards_intact(kIndexGuard));
  }
  const auto count = static_cast<Index>(pr.x.numel());
  with_mode(pr.params.mode, [&](auto mode) {
    constexpr PoolMode kMode = decltype(mode)::value;
    for (Index i = 0; i < count; ++i) {
      if (kMode == PoolMode::Max && source == Source::Recompute)
        gather_one<kMode, false>(dy.get(), nullptr, x.get(), dx.get(), g, i);
      else
        gather_one<kMode, true>(dy.get(), indices.get(), nullptr, dx.get(), g, i);
    }
  });
  EXPECT_TRUE(dx.guards_intact(kNaN));
  return dx.values();
}

// scatter_kernel (variant 2), threads run one after another.
template <class Index>
std::vector<float> emulate_scatter(const Problem& pr, const std::vector<float>& dy_values,
                                   const std::vector<std::int32_t>& index_values,
                                   const std::vector<float>& x_values, bool from_indices) {
  const Plane g = pr.plane();
  Guarded<float> dy(dy_values, kNaN), x(x_values, kNaN);
  Guarded<float> dx(static_cast<std::size_t>(pr.x.numel()), kNaN, 0.0f);  // the memset
  Guarded<std::int32_t> indices(index_values, kIndexGuard);
  const auto count = static_cast<Index>(pr.y().numel());
  with_mode(pr.params.mode, [&](auto mode) {
    constexpr PoolMode kMode = decltype(mode)::value;
    for (Index i = 0; i < count; ++i) {
      if (from_indices)
        scatter_one<kMode, true>(dy.get(), indices.get(), nullptr, dx.get(), g, i);
      else
        scatter_one<kMode, false>(dy.get(), nullptr, x.get(), dx.get(), g, i);
    }
  });
  EXPECT_TRUE(dx.guards_intact(kNaN));
  return dx.values();
}

std::int64_t area(const Pool2dParams& p) { return std::int64_t{p.window_h} * p.window_w; }

template <class Index>
void check_forward_table() {
  Reference reference;
  std::uint64_t seed = 1;
  for (Problem pr : table())
    for (PoolMode mode :
         {PoolMode::Max, PoolMode::AverageIncludePad, PoolMode::AverageExcludePad}) {
      pr.params.mode = mode;
      SCOPED_TRACE(pr.describe());
      const Tensor x = test::random_tensor(pr.x, ++seed);
      std::vector<std::int32_t> want_indices;
      const std::vector<float> want =
          reference.forward(x, pr.params, mode == PoolMode::Max ? &want_indices : nullptr);
      const auto ny = static_cast<std::size_t>(pr.y().numel());
      Guarded<float> y(ny, kNaN, kNaN);
      Guarded<std::int32_t> indices(ny, kIndexGuard, -1);
      emulate_forward<Index>(pr, x.to_vector(), y, mode == PoolMode::Max ? &indices : nullptr);
      ASSERT_TRUE(y.guards_intact(kNaN));
      if (mode == PoolMode::Max) {
        ASSERT_TRUE(test::bitwise_equal(y.values(), want));
        ASSERT_EQ(indices.values(), want_indices);
        ASSERT_TRUE(indices.guards_intact(kIndexGuard));
      } else {
        ASSERT_TRUE(test::all_close(y.values(), want, area(pr.params)));
      }
    }
}

TEST(CudaPool2dIndexing, ForwardKernelMatchesReference) {
  check_forward_table<std::int32_t>();
  check_forward_table<std::int64_t>();
}

template <class Index>
void check_backward_table() {
  Reference reference;
  std::uint64_t seed = 1000;
  for (Problem pr : table())
    for (PoolMode mode :
         {PoolMode::Max, PoolMode::AverageIncludePad, PoolMode::AverageExcludePad}) {
      pr.params.mode = mode;
      SCOPED_TRACE(pr.describe());
      const Tensor x = test::random_tensor(pr.x, ++seed);
      const Tensor dy = test::random_tensor(pr.y(), ++seed);
      const std::vector<float> want = reference.backward(dy, pr.x, pr.params, &x);
      std::vector<std::int32_t> indices;
      if (mode == PoolMode::Max) reference.forward(x, pr.params, &indices);
      const std::vector<float> xv = x.to_vector(), dyv = dy.to_vector();
      if (mode == PoolMode::Max) {
        for (Source source : {Source::Indices, Source::Recompute, Source::ArgmaxPass}) {
          SCOPED_TRACE("gather source " + std::to_string(static_cast<int>(source)));
          const std::vector<float> got = emulate_gather<Index>(pr, dyv, indices, xv, source);
          ASSERT_TRUE(test::bitwise_equal(got, want));
        }
        for (bool from_indices : {true, false}) {
          SCOPED_TRACE(from_indices ? "scatter from indices" : "scatter from x");
          // Run one after another, the atomic adds come in row-major output
          // order, so even the scatter matches bitwise here.
          const std::vector<float> got = emulate_scatter<Index>(pr, dyv, indices, xv, from_indices);
          ASSERT_TRUE(test::bitwise_equal(got, want));
        }
      } else {
        const std::vector<float> gathered = emulate_gather<Index>(pr, dyv, {}, xv, Source::Indices);
        ASSERT_TRUE(test::all_close(gathered, want, area(pr.params)));
        const std::vector<float> scattered = emulate_scatter<Index>(pr, dyv, {}, xv, false);
        ASSERT_TRUE(test::all_close(scattered, want, area(pr.params)));
      }
    }
}

TEST(CudaPool2dIndexing, BackwardKernelsMatchReference) {
  check_backward_table<std::int32_t>();
  check_backward_table<std::int64_t>();
}

// window_span, padded_length and covering_outputs against their definitions,
// exhaustively over small sizes (both rounding modes).
TEST(CudaPool2dIndexing, WindowArithmeticMatchesItsDefinition) {
  int checked = 0;
  for (int H = 1; H <= 12; ++H)
    for (int window = 1; window <= 7; ++window)
      for (int stride = 1; stride <= 8; ++stride)
        for (int pad = 0; pad <= window / 2; ++pad) {
          if (window > H + 2 * pad) continue;
          for (bool ceil : {false, true}) {
            const int P = static_cast<int>(pool2d_output_shape(
                {1, 1, H, 1}, make_params(PoolMode::Max, window, 1, stride, 1, pad, 0, ceil))[2]);
            for (int p = 0; p < P; ++p) {
              const int start = p * stride - pad;
              const Span span = window_span(p, window, stride, pad, H);
              ASSERT_EQ(span.begin, std::max(start, 0));
              ASSERT_EQ(span.end, std::min(start + window, H));
              ASSERT_LT(span.begin, span.end) << "an empty window";
              ASSERT_EQ(padded_length(p, window, stride, pad, H),
                        std::min(start + window, H + pad) - start);
            }
            for (int h = 0; h < H; ++h) {
              std::vector<int> want;
              for (int p = 0; p < P; ++p)
                if (p * stride - pad <= h && h < p * stride - pad + window) want.push_back(p);
              const Span got = covering_outputs(h, window, stride, pad, P);
              std::vector<int> listed;
              for (int p = got.begin; p < got.end; ++p) listed.push_back(p);
              ASSERT_EQ(listed, want) << "H " << H << " window " << window << " stride " << stride
                                      << " pad " << pad << " h " << h;
            }
            ++checked;
          }
        }
  EXPECT_GT(checked, 1000);
}

TEST(CudaPool2dIndexing, SplitIndexRoundTrips) {
  for (const std::int64_t i :
       {std::int64_t{0}, std::int64_t{12345}, std::int64_t{1} << 33, (std::int64_t{1} << 40) - 1}) {
    const Position<std::int64_t> at = split_index<std::int64_t>(i, 7, 13);
    EXPECT_EQ((at.plane * 7 + at.row) * 13 + at.col, i);
    EXPECT_LT(at.row, 7);
    EXPECT_LT(at.col, 13);
  }
  const Position<std::int32_t> small = split_index<std::int32_t>(INT_MAX / 2, 1000, 1000);
  EXPECT_EQ((std::int64_t{small.plane} * 1000 + small.row) * 1000 + small.col, INT_MAX / 2);
  EXPECT_EQ(plane_offset<std::int64_t>(std::int64_t{1} << 20, 1 << 10, 1 << 10),
            std::int64_t{1} << 40);
}

TEST(CudaPool2dIndexing, FitsIntBoundaries) {
  EXPECT_TRUE(fits_int(46340, 46340, 46340, 46340, 2, 2, 1, 1));  // 46340^2 < 2^31
  EXPECT_FALSE(fits_int(46341, 46341, 1, 1, 2, 2, 1, 1));
  EXPECT_FALSE(fits_int(1, 1, 46341, 46341, 1, 1, 0, 0));
  EXPECT_TRUE(fits_int(1, INT_MAX - 3, 1, 1, 1, 3, 0, 0));
  EXPECT_FALSE(fits_int(1, INT_MAX - 3, 1, 1, 1, 3, 0, 1));
  EXPECT_FALSE(fits_int(INT_MAX, 1, 1, 1, 2, 1, 0, 0));
}

TEST(CudaPool2dIndexing, MaxRuleIsFirstMaximumOrFirstNaN) {
  EXPECT_TRUE(replaces_max(2.0f, 1.0f));
  EXPECT_FALSE(replaces_max(1.0f, 1.0f));
  EXPECT_FALSE(replaces_max(-0.0f, 0.0f));
  EXPECT_TRUE(replaces_max(kNaN, 1.0f));
  EXPECT_FALSE(replaces_max(kNaN, kNaN));
  EXPECT_FALSE(replaces_max(5.0f, kNaN));
  EXPECT_TRUE(replaces_max(-1.0f, -std::numeric_limits<float>::infinity()));
}

TEST(CudaPool2dIndexing, BackwardVariantParsing) {
  EXPECT_EQ(parse_cuda_pool2d_backward_variant(nullptr), 0);
  EXPECT_EQ(parse_cuda_pool2d_backward_variant(""), 0);
  EXPECT_EQ(parse_cuda_pool2d_backward_variant("0"), 0);
  EXPECT_EQ(parse_cuda_pool2d_backward_variant("1"), 1);
  EXPECT_EQ(parse_cuda_pool2d_backward_variant("2"), 2);
  EXPECT_EQ(parse_cuda_pool2d_backward_variant("3"), -1);
  EXPECT_EQ(parse_cuda_pool2d_backward_variant("12"), -1);
  EXPECT_EQ(parse_cuda_pool2d_backward_variant("x"), -1);
}

// On a GPU, the real kernels: both backward variants, and the gather's two
// ways to find the argmax from x and y (an argmax pass into the workspace,
// or, with no workspace allowed, each thread finding it again).
TEST(CudaPool2dKernels, BackwardVariantsMatchReferenceOnTheGpu) {
  DLRT_SKIP_UNLESS_ENGINE_RUNS(Engine::Cuda);
  const Device gpu = Device::cuda(0);
  Context ctx(gpu);
  Reference reference;
  std::uint64_t seed = 5000;
  for (const int variant : {1, 2}) {
    for (Problem pr : table())
      for (PoolMode mode :
           {PoolMode::Max, PoolMode::AverageIncludePad, PoolMode::AverageExcludePad}) {
        pr.params.mode = mode;
        SCOPED_TRACE(pr.describe() + ", variant " + std::to_string(variant));
        const Tensor x = test::random_tensor(pr.x, ++seed);
        const Tensor dy = test::random_tensor(pr.y(), ++seed);
        const std::vector<float> want = reference.backward(dy, pr.x, pr.params, &x);
        const Tensor x_gpu = x.to(gpu), dy_gpu = dy.to(gpu);
        std::vector<Pool2dSaved> sources = {{}};
        Tensor indices_gpu(pr.y(), gpu, DType::I32), y_gpu(pr.y(), gpu);
        if (mode == PoolMode::Max) {
          pool2d_forward(ctx, x_gpu, y_gpu, pr.params, Engine::Cuda, &indices_gpu);
          sources = {{&indices_gpu, nullptr, nullptr}, {nullptr, &x_gpu, &y_gpu}};
        }
        for (const Pool2dSaved& saved : sources)
          for (const std::size_t limit : {std::size_t{512} << 20, std::size_t{0}}) {
            ctx.set_workspace_limit(limit);
            Tensor dx = test::poisoned(pr.x, gpu);
            const Pool2dPlan plan(ctx, Pool2dOp::Backward, pr.x, pr.params,
                                  saved.indices != nullptr, {Engine::Cuda, variant});
            plan.backward(ctx, dy_gpu, dx, saved);
            ctx.synchronize();
            const std::vector<float> got = dx.to_vector();
            if (mode == PoolMode::Max && variant == 1) {
              ASSERT_TRUE(test::bitwise_equal(got, want));
            } else {
              ASSERT_TRUE(test::all_close(got, want, area(pr.params)));
            }
          }
      }
  }
}

}  // namespace
}  // namespace dlrt::detail::cuda_pool2d
