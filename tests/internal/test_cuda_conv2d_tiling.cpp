// The Cuda convolution engine's index and tile arithmetic, proven on the CPU:
// each kernel is replayed block by block and thread by thread through the
// same functions it calls (conv2d_tiling.hpp), with bounds-checked reads,
// NaN-filled shared tiles and outputs, and the result is compared with the
// Reference engine on a table of shapes.
#include <gtest/gtest.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <limits>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "dlrt/dlrt.hpp"
#include "kernels/cuda/conv2d_tiling.hpp"
#include "kernels/cuda/conv2d_variants.hpp"
#include "runtime/conv2d_geometry.hpp"
#include "support/test_support.hpp"

namespace dlrt::detail::cuda_conv2d {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

int isize(const std::vector<float>& v) { return static_cast<int>(v.size()); }

// Reads that count, instead of performing, out-of-range accesses.
struct CheckedSrc {
  const float* data;
  int size;
  int* violations;
  float operator[](int i) const {
    if (i < 0 || i >= size) {
      ++*violations;
      return kNaN;
    }
    return data[i];
  }
};

// Writes into [base, base + span) of `out` that record how often each
// element was written and count those that fall outside.
struct CheckedDst {
  std::vector<float>* out;
  std::vector<int>* writes;
  int base, span;
  int* violations;
  float& operator[](int i) const {
    static float sink;
    if (i < 0 || i >= span) {
      ++*violations;
      return sink;
    }
    ++(*writes)[static_cast<std::size_t>(base + i)];
    return (*out)[static_cast<std::size_t>(base + i)];
  }
};

struct Emulation {
  std::vector<float> out;
  std::vector<int> writes;
  int read_violations = 0, write_violations = 0;

  explicit Emulation(std::size_t size) : out(size, kNaN), writes(size, 0) {}
  // Every element written exactly once, and no access out of range.
  ::testing::AssertionResult clean() const {
    std::size_t unwritten = 0, rewritten = 0;
    for (int count : writes) {
      if (count == 0) ++unwritten;
      if (count > 1) ++rewritten;
    }
    if (read_violations == 0 && write_violations == 0 && unwritten == 0 && rewritten == 0)
      return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure()
           << read_violations << " reads and " << write_violations << " writes out of range, "
           << unwritten << " elements never written, " << rewritten << " written twice or more";
  }
};

struct Accumulators {
  float v[kMicroM][kMicroN] = {};
};

// implicit_gemm_kernel, replayed for blocks [first, end): the same tile,
// load, store, multiply and epilogue functions. The shared tiles start each
// depth step as NaN, so a slot that the loads miss but the multiply reads
// would poison the result. Register prefetching in the kernel only moves a
// load earlier; the values it stores for depth k0 are those loaded here.
// make_dst(t) gives the block's output view (the kernel's c + split*slice).
template <class Op, class SrcA, class SrcB, class MakeDst>
void emulate_blocks(const Op& op, const GemmGrid& grid, int first, int end, const SrcA& a,
                    const SrcB& b, const float* row_bias, MakeDst make_dst) {
  std::vector<Accumulators> acc(kThreads);
  float a_tile[kSmemFloats], b_tile[kSmemFloats];
  for (int block = first; block < end; ++block) {
    const BlockTile t = block_tile(grid, op.depth(), block);
    for (Accumulators& thread : acc) thread = Accumulators{};
    for (int k0 = t.k_begin; k0 < t.k_end; k0 += kTileK) {
      std::fill(std::begin(a_tile), std::end(a_tile), kNaN);
      std::fill(std::begin(b_tile), std::end(b_tile), kNaN);
      for (int tid = 0; tid < kThreads; ++tid) {
        float a_regs[kLoadsA], b_regs[kLoadsB];
        load_a_tile(op, a, t, k0, tid, a_regs);
        load_b_tile(op, b, t, k0, tid, b_regs);
        store_tile(a_regs, a_tile, tid, Op::kAKFastest);
        store_tile(b_regs, b_tile, tid, Op::kBKFastest);
      }
      for (int tid = 0; tid < kThreads; ++tid)
        multiply_tile(a_tile, b_tile, tid, acc[static_cast<std::size_t>(tid)].v);
    }
    const auto dst = make_dst(t);
    for (int tid = 0; tid < kThreads; ++tid)
      store_c_tile(op, dst, row_bias, t, tid, acc[static_cast<std::size_t>(tid)].v);
  }
}

// Every block of the grid, on real data, into e.out (split s at s * slice).
template <class Op>
void emulate_implicit_gemm(const Op& op, const GemmGrid& grid, const std::vector<float>& a,
                           const std::vector<float>& b, const float* row_bias, int split_slice,
                           Emulation& e) {
  const CheckedSrc a_src{a.data(), isize(a), &e.read_violations};
  const CheckedSrc b_src{b.data(), isize(b), &e.read_violations};
  emulate_blocks(op, grid, 0, static_cast<int>(grid_blocks(grid)), a_src, b_src, row_bias,
                 [&](const BlockTile& t) {
                   return CheckedDst{&e.out, &e.writes, t.split * split_slice, split_slice,
                                     &e.write_violations};
                 });
}

// split_sum_kernel, replayed.
std::vector<float> emulate_split_sum(const std::vector<float>& partials, int splits, int slice,
                                     int& violations) {
  const CheckedSrc src{partials.data(), isize(partials), &violations};
  std::vector<float> out(static_cast<std::size_t>(slice));
  for (int index = 0; index < slice; ++index)
    out[static_cast<std::size_t>(index)] = split_sum(src, splits, slice, index);
  return out;
}

// backward_bias_kernel, replayed: per-thread strided sums, then the tree.
template <class Src>
float emulate_bias_block(const Src& dy, int N, int K, int PQ, int k) {
  float partial[kBiasThreads];
  for (int tid = 0; tid < kBiasThreads; ++tid) partial[tid] = bias_thread_sum(dy, N, K, PQ, k, tid);
  for (int width = kBiasThreads / 2; width > 0; width /= 2)
    for (int tid = 0; tid < width; ++tid) partial[tid] += partial[tid + width];
  return partial[0];
}

std::vector<float> emulate_bias_reduction(const std::vector<float>& dy, int N, int K, int PQ,
                                          int& violations) {
  const CheckedSrc src{dy.data(), isize(dy), &violations};
  std::vector<float> db(static_cast<std::size_t>(K));
  for (int k = 0; k < K; ++k) {
    db[static_cast<std::size_t>(k)] = emulate_bias_block(src, N, K, PQ, k);
  }
  return db;
}

// ---------------------------------------------------------------------------
// The problems, and the Reference engine's answers.

struct Case {
  std::int64_t N, C, H, W, K, R, S;
  int pad_h, pad_w, stride_h, stride_w, dil_h, dil_w, groups;

  Conv2dParams params() const {
    Conv2dParams p;
    p.pad_h = pad_h, p.pad_w = pad_w, p.stride_h = stride_h, p.stride_w = stride_w;
    p.dilation_h = dil_h, p.dilation_w = dil_w, p.groups = groups;
    return p;
  }
  Shape x_shape() const { return {N, C, H, W}; }
  Shape w_shape() const { return {K, C / groups, R, S}; }
  std::string name() const {
    std::ostringstream out;
    out << "x [" << N << "," << C << "," << H << "," << W << "] w [" << K << "," << C / groups
        << "," << R << "," << S << "] pad " << pad_h << "," << pad_w << " stride " << stride_h
        << "," << stride_w << " dilation " << dil_h << "," << dil_w << " groups " << groups;
    return out.str();
  }
};

const Case kCases[] = {
    {1, 3, 7, 7, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1},     // 3x3, same padding
    {2, 5, 9, 11, 7, 1, 1, 0, 0, 1, 1, 1, 1, 1},    // 1x1, batch 2
    {2, 4, 13, 10, 6, 5, 5, 2, 2, 2, 2, 1, 1, 1},   // 5x5, stride 2
    {1, 3, 17, 15, 5, 7, 7, 3, 3, 2, 2, 1, 1, 1},   // 7x7 stride-2 stem
    {3, 6, 10, 9, 6, 3, 3, 2, 1, 3, 3, 1, 1, 1},    // stride 3, unequal pads
    {2, 4, 12, 12, 8, 3, 3, 2, 2, 1, 1, 2, 2, 2},   // dilation 2, 2 groups
    {1, 8, 9, 9, 8, 3, 3, 1, 1, 1, 1, 1, 1, 8},     // depthwise
    {2, 6, 11, 8, 12, 3, 3, 1, 1, 2, 1, 1, 1, 6},   // depthwise, channel multiplier 2
    {1, 6, 10, 12, 9, 3, 5, 1, 2, 1, 2, 2, 1, 3},   // rectangular 3x5, 3 groups
    {1, 70, 6, 6, 67, 3, 3, 1, 1, 1, 1, 1, 1, 1},   // M past one tile, long depth
    {3, 130, 3, 3, 66, 1, 1, 0, 0, 1, 1, 1, 1, 2},  // 65 channels per group
    {2, 3, 5, 5, 2, 2, 2, 0, 0, 1, 1, 1, 1, 1},     // even filter
    {1, 2, 23, 19, 3, 1, 3, 0, 1, 1, 1, 1, 2, 1},   // 1x3, dilation_w 2
    {2, 3, 8, 8, 4, 3, 3, 3, 3, 3, 3, 2, 2, 1},     // pad 3, stride 3, dilation 2
    {2, 5, 15, 15, 3, 7, 7, 3, 3, 3, 3, 2, 2, 1},   // 7x7 dilated and strided
    {1, 2, 4, 4, 3, 1, 1, 2, 2, 1, 1, 1, 1, 1},     // padding wider than the filter
    {2, 3, 10, 10, 4, 1, 1, 0, 0, 3, 3, 1, 1, 1},   // stride past the filter: unread pixels
    {1, 2, 7, 7, 3, 2, 2, 0, 0, 2, 2, 1, 1, 1},     // last row and column unread
    {4, 3, 16, 16, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1},  // many column tiles, long N*P*Q
    {1, 12, 13, 13, 8, 5, 5, 3, 3, 1, 2, 2, 1, 4},  // 5x5, mixed stride/dilation, 4 groups
    {1, 4, 3, 3, 5, 3, 3, 0, 0, 1, 1, 1, 1, 1},     // a 1x1 output
    {1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1},     // the smallest problem
};

struct Problem {
  Case c;
  Conv2dGeometry g;
  ConvDims d;
  std::vector<float> x, w, bias, dy;
  std::vector<float> y, y_no_bias, dx, dw, db;  // the Reference engine's results
};

Problem make_problem(const Case& c, std::uint64_t seed) {
  Problem pb;
  pb.c = c;
  const Conv2dParams params = c.params();
  const Shape y_shape = conv2d_output_shape(c.x_shape(), c.w_shape(), params);
  pb.g = conv2d_geometry(c.x_shape(), c.w_shape(), params);
  pb.d = make_conv_dims(pb.g);
  pb.x = test::random_values(c.x_shape().numel(), seed);
  pb.w = test::random_values(c.w_shape().numel(), seed + 1);
  pb.bias = test::random_values(c.K, seed + 2);
  pb.dy = test::random_values(y_shape.numel(), seed + 3);

  Context ctx;
  const Tensor x = Tensor::from_vector(c.x_shape(), pb.x);
  const Tensor w = Tensor::from_vector(c.w_shape(), pb.w);
  const Tensor bias = Tensor::from_vector(Shape{c.K}, pb.bias);
  const Tensor dy = Tensor::from_vector(y_shape, pb.dy);
  Tensor y = test::poisoned(y_shape), y_no_bias = test::poisoned(y_shape);
  Tensor dx = test::poisoned(c.x_shape()), dw = test::poisoned(c.w_shape());
  Tensor db = test::poisoned(Shape{c.K});
  conv2d_forward(ctx, x, w, &bias, y, params, Engine::Reference);
  conv2d_forward(ctx, x, w, nullptr, y_no_bias, params, Engine::Reference);
  conv2d_backward_data(ctx, dy, w, dx, params, Engine::Reference);
  conv2d_backward_filter(ctx, x, dy, dw, params, Engine::Reference);
  conv2d_backward_bias(ctx, dy, db, Engine::Reference);
  pb.y = y.to_vector(), pb.y_no_bias = y_no_bias.to_vector(), pb.dx = dx.to_vector();
  pb.dw = dw.to_vector(), pb.db = db.to_vector();
  return pb;
}

const std::vector<Problem>& problems() {
  static const std::vector<Problem> all = [] {
    std::vector<Problem> out;
    std::uint64_t seed = 1000;
    for (const Case& c : kCases) out.push_back(make_problem(c, seed += 10));
    return out;
  }();
  return all;
}

// ---------------------------------------------------------------------------
// Variant 2, replayed against the Reference engine.

TEST(CudaConv2dTiling, ForwardImplicitGemmMatchesReference) {
  for (const Problem& pb : problems()) {
    SCOPED_TRACE(pb.c.name());
    const ForwardGemm gemm{pb.d};
    const GemmGrid grid = make_gemm_grid(gemm);
    Emulation with_bias(pb.y.size()), without_bias(pb.y.size());
    emulate_implicit_gemm(gemm, grid, pb.w, pb.x, pb.bias.data(), isize(pb.y), with_bias);
    emulate_implicit_gemm(gemm, grid, pb.w, pb.x, nullptr, isize(pb.y), without_bias);
    EXPECT_TRUE(with_bias.clean());
    EXPECT_TRUE(without_bias.clean());
    EXPECT_TRUE(test::all_close(with_bias.out, pb.y, gemm.depth()));
    EXPECT_TRUE(test::all_close(without_bias.out, pb.y_no_bias, gemm.depth()));
  }
}

TEST(CudaConv2dTiling, BackwardDataImplicitGemmMatchesReference) {
  for (const Problem& pb : problems()) {
    SCOPED_TRACE(pb.c.name());
    const BackwardDataGemm gemm{pb.d};
    Emulation e(pb.dx.size());
    emulate_implicit_gemm(gemm, make_gemm_grid(gemm), pb.w, pb.dy, nullptr, isize(pb.dx), e);
    EXPECT_TRUE(e.clean());
    EXPECT_TRUE(test::all_close(e.out, pb.dx, gemm.depth()));
  }
}

// Without a split, with the engine's own split count, and with forced ones
// (clamped by make_gemm_grid to the depth tiles there are).
TEST(CudaConv2dTiling, BackwardFilterImplicitGemmMatchesReference) {
  for (const Problem& pb : problems()) {
    SCOPED_TRACE(pb.c.name());
    const BackwardFilterGemm gemm{pb.d};
    const int slice = isize(pb.dw);
    const int chosen = choose_splits(grid_blocks(make_gemm_grid(gemm)), gemm.depth(), slice,
                                     std::size_t{512} << 20);
    for (int splits : {1, chosen, 3, 1000}) {
      SCOPED_TRACE("splits " + std::to_string(splits));
      const GemmGrid grid = make_gemm_grid(gemm, splits);
      Emulation e(static_cast<std::size_t>(grid.splits) * pb.dw.size());
      emulate_implicit_gemm(gemm, grid, pb.dy, pb.x, nullptr, slice, e);
      EXPECT_TRUE(e.clean());
      int violations = 0;
      const std::vector<float> dw = emulate_split_sum(e.out, grid.splits, slice, violations);
      EXPECT_EQ(violations, 0);
      EXPECT_TRUE(test::all_close(dw, pb.dw, gemm.depth()));
    }
  }
}

// Random small problems beyond the table: every combination of groups,
// channel counts that are not multiples of anything, stride past the filter,
// padding past the filter, dilation and 1x1 outputs, through every kernel,
// each output element written exactly once and nothing read out of range.
Case random_case(std::uint32_t& state) {
  auto next = [&](int lo, int hi) {  // uniform enough in [lo, hi], reproducible everywhere
    state = state * 1664525u + 1013904223u;
    return lo + static_cast<int>((state >> 8) % static_cast<std::uint32_t>(hi - lo + 1));
  };
  Case c{};
  c.groups = next(1, 4);
  const bool wide = next(0, 7) == 0;  // now and then, more than one row tile
  c.C = std::int64_t{c.groups} * next(1, 5);
  c.K = std::int64_t{c.groups} * (wide ? next(60, 70) : next(1, 5));
  if (next(0, 4) == 0) c.K = c.C = c.groups = next(2, 9);  // depthwise
  c.N = next(1, 3);
  c.R = next(1, 4), c.S = next(1, 4);
  c.dil_h = next(1, 3), c.dil_w = next(1, 3);
  c.stride_h = next(1, 5), c.stride_w = next(1, 5);
  c.pad_h = next(0, 4), c.pad_w = next(0, 4);
  const std::int64_t span_h = (c.R - 1) * c.dil_h + 1, span_w = (c.S - 1) * c.dil_w + 1;
  c.H = std::max<std::int64_t>(1, span_h - 2 * c.pad_h) + next(0, 9);
  c.W = std::max<std::int64_t>(1, span_w - 2 * c.pad_w) + next(0, 9);
  return c;
}

TEST(CudaConv2dTiling, RandomProblemsMatchReferenceThroughEveryKernel) {
  std::uint32_t state = 20240607u;
  for (int trial = 0; trial < 150; ++trial) {
    const Problem pb = make_problem(random_case(state), 5000 + 10 * std::uint64_t(trial));
    SCOPED_TRACE(pb.c.name());
    const ConvDims& d = pb.d;
    {
      const ForwardGemm gemm{d};
      Emulation e(pb.y.size());
      emulate_implicit_gemm(gemm, make_gemm_grid(gemm), pb.w, pb.x, pb.bias.data(), isize(pb.y), e);
      ASSERT_TRUE(e.clean()) << "forward";
      ASSERT_TRUE(test::all_close(e.out, pb.y, gemm.depth())) << "forward";
    }
    {
      const BackwardDataGemm gemm{d};
      Emulation e(pb.dx.size());
      emulate_implicit_gemm(gemm, make_gemm_grid(gemm), pb.w, pb.dy, nullptr, isize(pb.dx), e);
      ASSERT_TRUE(e.clean()) << "backward data";
      ASSERT_TRUE(test::all_close(e.out, pb.dx, gemm.depth())) << "backward data";
    }
    {
      const BackwardFilterGemm gemm{d};
      const int slice = isize(pb.dw);
      for (int splits : {1, 2, 7}) {
        const GemmGrid grid = make_gemm_grid(gemm, splits);
        Emulation e(static_cast<std::size_t>(grid.splits) * pb.dw.size());
        emulate_implicit_gemm(gemm, grid, pb.dy, pb.x, nullptr, slice, e);
        ASSERT_TRUE(e.clean()) << "backward filter, splits " << splits;
        int violations = 0;
        const std::vector<float> dw = emulate_split_sum(e.out, grid.splits, slice, violations);
        ASSERT_EQ(violations, 0);
        ASSERT_TRUE(test::all_close(dw, pb.dw, gemm.depth())) << "splits " << splits;
      }
    }
    int violations = 0;
    const CheckedSrc x{pb.x.data(), isize(pb.x), &violations};
    const CheckedSrc w{pb.w.data(), isize(pb.w), &violations};
    const CheckedSrc dy{pb.dy.data(), isize(pb.dy), &violations};
    std::vector<float> y(pb.y.size()), dx(pb.dx.size()), dw(pb.dw.size());
    for (int i = 0; i < isize(y); ++i)
      y[static_cast<std::size_t>(i)] = direct_forward(d, x, w, pb.bias.data(), i);
    for (int i = 0; i < isize(dx); ++i)
      dx[static_cast<std::size_t>(i)] = direct_backward_data(d, dy, w, i);
    for (int i = 0; i < isize(dw); ++i)
      dw[static_cast<std::size_t>(i)] = direct_backward_filter(d, x, dy, i);
    const std::vector<float> db = emulate_bias_reduction(pb.dy, d.N, d.K, d.P * d.Q, violations);
    ASSERT_EQ(violations, 0);
    ASSERT_TRUE(test::all_close(y, pb.y, ForwardGemm{d}.depth())) << "direct forward";
    ASSERT_TRUE(test::all_close(dx, pb.dx, BackwardDataGemm{d}.depth())) << "direct data";
    ASSERT_TRUE(test::all_close(dw, pb.dw, BackwardFilterGemm{d}.depth())) << "direct filter";
    ASSERT_TRUE(test::all_close(db, pb.db, pb.g.N * pb.g.P * pb.g.Q)) << "bias";
  }
}

// ---------------------------------------------------------------------------
// Variant 1 and the bias reduction, replayed.

TEST(CudaConv2dTiling, DirectKernelsMatchReference) {
  for (const Problem& pb : problems()) {
    SCOPED_TRACE(pb.c.name());
    const ConvDims& d = pb.d;
    int violations = 0;
    const CheckedSrc x{pb.x.data(), isize(pb.x), &violations};
    const CheckedSrc w{pb.w.data(), isize(pb.w), &violations};
    const CheckedSrc dy{pb.dy.data(), isize(pb.dy), &violations};
    std::vector<float> y(pb.y.size()), dx(pb.dx.size()), dw(pb.dw.size());
    for (int i = 0; i < isize(y); ++i)
      y[static_cast<std::size_t>(i)] = direct_forward(d, x, w, pb.bias.data(), i);
    for (int i = 0; i < isize(dx); ++i)
      dx[static_cast<std::size_t>(i)] = direct_backward_data(d, dy, w, i);
    for (int i = 0; i < isize(dw); ++i)
      dw[static_cast<std::size_t>(i)] = direct_backward_filter(d, x, dy, i);
    EXPECT_EQ(violations, 0);
    EXPECT_TRUE(test::all_close(y, pb.y, ForwardGemm{d}.depth()));
    EXPECT_TRUE(test::all_close(dx, pb.dx, BackwardDataGemm{d}.depth()));
    EXPECT_TRUE(test::all_close(dw, pb.dw, BackwardFilterGemm{d}.depth()));
  }
}

TEST(CudaConv2dTiling, BiasReductionMatchesReference) {
  for (const Problem& pb : problems()) {
    SCOPED_TRACE(pb.c.name());
    int violations = 0;
    const std::vector<float> db =
        emulate_bias_reduction(pb.dy, pb.d.N, pb.d.K, pb.d.P * pb.d.Q, violations);
    EXPECT_EQ(violations, 0);
    EXPECT_TRUE(test::all_close(db, pb.db, pb.g.N * pb.g.P * pb.g.Q));
  }
  // Enough elements per channel that every thread sums several, unevenly.
  const int N = 3, K = 2, PQ = 301;
  const std::vector<float> dy = test::random_values(N * K * PQ, 77);
  int violations = 0;
  const std::vector<float> db = emulate_bias_reduction(dy, N, K, PQ, violations);
  EXPECT_EQ(violations, 0);
  for (int k = 0; k < K; ++k) {
    double want = 0.0;
    for (int n = 0; n < N; ++n)
      for (int i = 0; i < PQ; ++i) want += dy[static_cast<std::size_t>((n * K + k) * PQ + i)];
    EXPECT_NEAR(db[static_cast<std::size_t>(k)], want, 1e-4) << "channel " << k;
  }
}

// ---------------------------------------------------------------------------
// The pieces on their own.

// output_coord is the exact inverse of input_coord: brute force over small
// extents, strides, pads and dilations.
TEST(CudaConv2dTiling, OutputCoordInvertsInputCoord) {
  int checked = 0;
  for (int extent_in = 1; extent_in <= 9; ++extent_in)
    for (int stride = 1; stride <= 3; ++stride)
      for (int pad = 0; pad <= 3; ++pad)
        for (int dil = 1; dil <= 2; ++dil)
          for (int taps = 1; taps <= 4; ++taps) {
            const int span = (taps - 1) * dil + 1;
            if (span > extent_in + 2 * pad) continue;
            const int extent_out = (extent_in + 2 * pad - span) / stride + 1;
            for (int t = 0; t < taps; ++t)
              for (int i = 0; i < extent_in; ++i) {
                int want = -1;
                for (int o = 0; o < extent_out; ++o)
                  if (input_coord(o, t, stride, pad, dil, extent_in) == i) want = o;
                ASSERT_EQ(output_coord(i, t, stride, pad, dil, extent_out), want)
                    << "i " << i << " tap " << t << " stride " << stride << " pad " << pad
                    << " dilation " << dil << " extents " << extent_in << " -> " << extent_out;
                ++checked;
              }
          }
  EXPECT_GT(checked, 1000);
  EXPECT_EQ(input_coord(0, 0, 1, 1, 1, 5), -1);  // the top padding row
  EXPECT_EQ(input_coord(2, 1, 2, 1, 1, 5), 4);
  EXPECT_EQ(input_coord(2, 2, 2, 1, 1, 5), -1);   // past the bottom edge
  EXPECT_EQ(output_coord(3, 0, 2, 0, 1, 9), -1);  // off the stride grid
}

// Every (group, row tile, column tile, split) is one block, and the splits
// partition the depth into non-empty ranges.
TEST(CudaConv2dTiling, BlocksCoverTheGemmOnce) {
  for (int rows : {1, 63, 64, 65, 130})
    for (int cols : {1, 64, 100})
      for (int depth : {1, 8, 9, 70, 1024})
        for (int groups : {1, 3})
          for (int splits : {1, 2, 5, 64}) {
            const GemmGrid grid = make_gemm_grid(rows, cols, depth, groups, splits);
            ASSERT_GE(grid.splits, 1);
            ASSERT_LE(grid.splits, splits);
            ASSERT_EQ(grid.k_chunk % kTileK, 0);
            std::vector<int> seen(static_cast<std::size_t>(grid_blocks(grid)), 0);
            std::vector<int> depth_cover(static_cast<std::size_t>(depth), 0);
            for (int block = 0; block < static_cast<int>(grid_blocks(grid)); ++block) {
              const BlockTile t = block_tile(grid, depth, block);
              ASSERT_TRUE(t.group >= 0 && t.group < groups);
              ASSERT_TRUE(t.row0 >= 0 && t.row0 < rows && t.row0 % kTileM == 0);
              ASSERT_TRUE(t.col0 >= 0 && t.col0 < cols && t.col0 % kTileN == 0);
              ASSERT_TRUE(t.split >= 0 && t.split < grid.splits);
              ASSERT_LT(t.k_begin, t.k_end) << "an empty split";
              ASSERT_LE(t.k_end, depth);
              const int id = ((t.split * groups + t.group) * grid.row_tiles + t.row0 / kTileM) *
                                 grid.col_tiles +
                             t.col0 / kTileN;
              ++seen[static_cast<std::size_t>(id)];
              if (t.group == 0 && t.row0 == 0 && t.col0 == 0)
                for (int k = t.k_begin; k < t.k_end; ++k)
                  ++depth_cover[static_cast<std::size_t>(k)];
            }
            for (int count : seen) ASSERT_EQ(count, 1);
            for (int count : depth_cover) ASSERT_EQ(count, 1);
          }
  // Any split request gives non-empty splits, over every depth-tile count.
  for (int tiles = 1; tiles <= 300; ++tiles)
    for (int want = 1; want <= 70; ++want) {
      const GemmGrid grid = make_gemm_grid(1, 1, tiles * kTileK, 1, want);
      ASSERT_LT((grid.splits - 1) * grid.k_chunk, tiles * kTileK) << tiles << " " << want;
      ASSERT_GE(grid.splits * grid.k_chunk, tiles * kTileK) << tiles << " " << want;
    }
}

// Each thread's loads touch distinct tile slots, and together they fill both
// tiles; each thread's outputs are distinct and cover the 64x64 tile.
TEST(CudaConv2dTiling, ThreadMappingsArePermutations) {
  for (bool k_fastest : {false, true}) {
    std::vector<int> slots(static_cast<std::size_t>(kSmemFloats), 0);
    for (int tid = 0; tid < kThreads; ++tid)
      for (int i = 0; i < kLoadsA; ++i) {
        const TileElement e = tile_element(tid, i, k_fastest);
        ASSERT_TRUE(e.kk >= 0 && e.kk < kTileK && e.mn >= 0 && e.mn < kTileM);
        ++slots[static_cast<std::size_t>(e.kk * kSmemStride + e.mn)];
      }
    for (int kk = 0; kk < kTileK; ++kk)
      for (int mn = 0; mn < kSmemStride; ++mn)
        EXPECT_EQ(slots[static_cast<std::size_t>(kk * kSmemStride + mn)], mn < kTileM ? 1 : 0);
  }
  std::vector<int> outputs(static_cast<std::size_t>(kTileM * kTileN), 0);
  for (int tid = 0; tid < kThreads; ++tid)
    for (int i = 0; i < kMicroM; ++i)
      for (int j = 0; j < kMicroN; ++j)
        ++outputs[static_cast<std::size_t>(thread_row(tid, i) * kTileN + thread_col(tid, j))];
  for (int count : outputs) EXPECT_EQ(count, 1);
}

// ---------------------------------------------------------------------------
// The 32-bit arithmetic near kMaxElements, where an overflow would show.

// Reads of a tensor too large to allocate here: every element is 1.
struct OnesSrc {
  std::int64_t size;
  int* violations;
  float operator[](int i) const {
    if (i < 0 || i >= size) ++*violations;
    return 1.0f;
  }
};

// Writes kept by offset, so that a block's outputs can be checked one by one.
struct RecordingDst {
  std::int64_t span;
  std::map<int, float>* values;
  int* violations;
  float& operator[](int i) const {
    static float sink;
    if (i < 0 || i >= span) {
      ++*violations;
      return sink;
    }
    return (*values)[i];
  }
};

// x [4, 64, 2048, 4000] (2,097,152,000 elements), 64 3x3 filters, pad 1:
// x and y just under kMaxElements.
Conv2dGeometry near_limit_geometry() {
  const Case c{4, 64, 2048, 4000, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1};
  return conv2d_geometry(c.x_shape(), c.w_shape(), c.params());
}

// The last block of forward and backward data, where offsets are largest:
// with all-ones inputs each output counts its valid taps, 64 channels times
// 2 rows (the bottom edge) times 2 or 3 columns (the right edge or not).
TEST(CudaConv2dTiling, NearLimitLastBlocksReadInBoundsAndAddUp) {
  const Conv2dGeometry g = near_limit_geometry();
  for (Conv2dOp op : {Conv2dOp::Forward, Conv2dOp::BackwardData, Conv2dOp::BackwardFilter})
    ASSERT_EQ(index_limit_reason(op, g), "") << to_string(op);
  const ConvDims d = make_conv_dims(g);
  int violations = 0;
  const OnesSrc x{g.x_elements(), &violations}, w{g.w_elements(), &violations};
  const OnesSrc dy{g.y_elements(), &violations};
  auto taps = [&](int last_row_col) { return 64.0f * 2.0f * (last_row_col ? 2.0f : 3.0f); };

  {
    const ForwardGemm gemm{d};
    const GemmGrid grid = make_gemm_grid(gemm);
    std::map<int, float> y;
    const auto blocks = static_cast<int>(grid_blocks(grid));
    emulate_blocks(gemm, grid, blocks - 1, blocks, w, x, nullptr, [&](const BlockTile&) {
      return RecordingDst{g.y_elements(), &y, &violations};
    });
    EXPECT_EQ(y.size(), 64u * 64u);
    EXPECT_EQ(y.rbegin()->first, g.y_elements() - 1);
    for (const auto& [offset, value] : y) {
      ASSERT_EQ(offset / d.Q % d.P, d.P - 1) << offset;
      ASSERT_EQ(value, taps(offset % d.Q == d.Q - 1)) << "y offset " << offset;
    }
    EXPECT_EQ(direct_forward(d, x, w, nullptr, static_cast<int>(g.y_elements() - 1)), taps(1));
  }
  {
    const BackwardDataGemm gemm{d};
    const GemmGrid grid = make_gemm_grid(gemm);
    std::map<int, float> dx;
    const auto blocks = static_cast<int>(grid_blocks(grid));
    emulate_blocks(gemm, grid, blocks - 1, blocks, w, dy, nullptr, [&](const BlockTile&) {
      return RecordingDst{g.x_elements(), &dx, &violations};
    });
    EXPECT_EQ(dx.size(), 64u * 64u);
    EXPECT_EQ(dx.rbegin()->first, g.x_elements() - 1);
    for (const auto& [offset, value] : dx) {
      ASSERT_EQ(offset / d.W % d.H, d.H - 1) << offset;
      ASSERT_EQ(value, taps(offset % d.W == d.W - 1)) << "dx offset " << offset;
    }
    EXPECT_EQ(direct_backward_data(d, dy, w, static_cast<int>(g.x_elements() - 1)), taps(1));
  }
  {
    // One depth tile per split, so that the last block covers the last 8
    // values of q on the bottom row: x rows h = 2047 - 1 + r exist for r < 2,
    // and column 3999 - 1 + s only for s < 2 at q = 3999.
    const BackwardFilterGemm gemm{d};
    const GemmGrid grid = make_gemm_grid(gemm, INT_MAX);
    ASSERT_EQ(grid.k_chunk, kTileK);
    std::map<int, float> dw;
    const auto blocks = static_cast<int>(grid_blocks(grid));
    emulate_blocks(gemm, grid, blocks - 1, blocks, dy, x, nullptr, [&](const BlockTile&) {
      return RecordingDst{g.w_elements(), &dw, &violations};
    });
    EXPECT_EQ(dw.size(), 64u * 64u);
    for (const auto& [offset, value] : dw) {
      const int col = offset % gemm.cols(), r = col / d.S % d.R, s = col % d.S;
      ASSERT_EQ(value, r == 2 ? 0.0f : (s == 2 ? 7.0f : 8.0f)) << "dw offset " << offset;
    }
  }
  // N*P*Q = 32,768,000 ones: each thread sums exactly 128,000 of them, and
  // every partial sum is an even integer below 2^25, so exact in float.
  EXPECT_EQ(emulate_bias_block(dy, d.N, d.K, d.P * d.Q, d.K - 1), 32768000.0f);
  EXPECT_EQ(violations, 0);
}

// A long 1-D signal x [1, 1, 1, W], W = kMaxElements - 8, with a 1x5 filter
// dilated by 3 and padded by 6: output q reads input q - 6 + 3s.
TEST(CudaConv2dTiling, NearLimitOffsetsAreExact) {
  const std::int64_t width = kMaxElements - 8;
  const Conv2dGeometry g =
      conv2d_geometry(Shape{1, 1, 1, width}, Shape{1, 1, 1, 5},
                      Case{1, 1, 1, width, 1, 1, 5, 0, 6, 1, 1, 1, 3, 1}.params());
  ASSERT_EQ(g.Q, width);
  ASSERT_EQ(index_limit_reason(Conv2dOp::Forward, g), "");
  const ConvDims d = make_conv_dims(g);
  const int last = d.W - 1;
  const ForwardGemm fwd{d};
  EXPECT_EQ(fwd.b_offset(0, 0, last), last - 6);
  EXPECT_EQ(fwd.b_offset(0, 2, last), last);
  EXPECT_EQ(fwd.b_offset(0, 3, last), -1);  // past the right edge
  EXPECT_EQ(fwd.b_offset(0, 0, 1), -1);     // left padding
  EXPECT_EQ(fwd.b_offset(0, 2, 0), 0);
  EXPECT_EQ(fwd.c_offset(0, 0, last), last);
  const BackwardDataGemm bwd{d};
  EXPECT_EQ(bwd.b_offset(0, 0, last), -1);  // q = last + 6 is past the last output
  EXPECT_EQ(bwd.b_offset(0, 2, last), last);
  EXPECT_EQ(bwd.b_offset(0, 4, last), last - 6);
  EXPECT_EQ(bwd.c_offset(0, 0, last), last);
  const BackwardFilterGemm filter{d};
  EXPECT_EQ(filter.a_offset(0, 0, last), last);
  EXPECT_EQ(filter.b_offset(0, last, 2), last);
  EXPECT_EQ(filter.b_offset(0, last, 4), -1);
  EXPECT_EQ(d.x_index(0, 0, 0, last), width - 1);
}

// The largest pad and dilation check_params allows, on x and y of exactly
// kMaxElements: x [1, 1, 1, kMaxElements], a 1x3 filter dilated by 2^16 and
// padded by 2^16, so output q reads input q - 2^16 + 2^16 s and every
// coordinate expression comes within 2^16 of the limit's far side.
TEST(CudaConv2dTiling, LargestPadAndDilationStayInRange) {
  constexpr int kBig = 1 << 16;
  const std::int64_t width = kMaxElements;
  const Conv2dGeometry g =
      conv2d_geometry(Shape{1, 1, 1, width}, Shape{1, 1, 1, 3},
                      Case{1, 1, 1, width, 1, 1, 3, 0, kBig, 1, 1, 1, kBig, 1}.params());
  ASSERT_EQ(g.Q, width);
  for (Conv2dOp op : {Conv2dOp::Forward, Conv2dOp::BackwardData, Conv2dOp::BackwardFilter})
    ASSERT_EQ(index_limit_reason(op, g), "") << to_string(op);
  const ConvDims d = make_conv_dims(g);
  const int last = d.W - 1;
  const ForwardGemm fwd{d};
  EXPECT_EQ(fwd.b_offset(0, 0, last), last - kBig);
  EXPECT_EQ(fwd.b_offset(0, 1, last), last);
  EXPECT_EQ(fwd.b_offset(0, 2, last), -1);  // last + 2^16: past the right edge
  EXPECT_EQ(fwd.b_offset(0, 0, kBig - 1), -1);
  EXPECT_EQ(fwd.b_offset(0, 0, kBig), 0);
  EXPECT_EQ(fwd.b_offset(0, 2, 0), kBig);
  const BackwardDataGemm bwd{d};
  EXPECT_EQ(bwd.b_offset(0, 0, last), -1);  // q = last + 2^16 is past the last output
  EXPECT_EQ(bwd.b_offset(0, 1, last), last);
  EXPECT_EQ(bwd.b_offset(0, 2, last), last - kBig);
  EXPECT_EQ(bwd.b_offset(0, 2, kBig - 1), -1);  // q would be -1
  const BackwardFilterGemm filter{d};
  EXPECT_EQ(filter.b_offset(0, last, 0), last - kBig);
  EXPECT_EQ(filter.b_offset(0, last, 2), -1);
  int violations = 0;
  const OnesSrc x{g.x_elements(), &violations}, w{g.w_elements(), &violations};
  const OnesSrc dy{g.y_elements(), &violations};
  EXPECT_EQ(direct_forward(d, x, w, nullptr, last), 2.0f);
  EXPECT_EQ(direct_backward_data(d, dy, w, last), 2.0f);
  EXPECT_EQ(violations, 0);
}

TEST(CudaConv2dTiling, DeclinesTensorsPastTheIndexLimit) {
  Conv2dGeometry g;
  g.N = 1, g.C = 1, g.H = 1, g.W = kMaxElements, g.K = 1, g.R = 1, g.S = 1, g.P = 1, g.Q = g.W;
  EXPECT_EQ(index_limit_reason(Conv2dOp::Forward, g), "");
  g.W += 1, g.Q += 1;
  for (Conv2dOp op : {Conv2dOp::Forward, Conv2dOp::BackwardData, Conv2dOp::BackwardFilter,
                      Conv2dOp::BackwardBias}) {
    const std::string why = index_limit_reason(op, g);
    EXPECT_NE(why.find("32-bit indexing limit"), std::string::npos) << to_string(op) << ": " << why;
  }
  // Only dy counts for bias; a huge filter names itself.
  Conv2dGeometry big_filter;
  big_filter.C = 1 << 16, big_filter.K = 1 << 16, big_filter.H = big_filter.W = 1;
  EXPECT_EQ(index_limit_reason(Conv2dOp::BackwardBias, big_filter), "");
  EXPECT_EQ(index_limit_reason(Conv2dOp::BackwardFilter, big_filter).rfind("dw has", 0), 0u);
  EXPECT_EQ(index_limit_reason(Conv2dOp::Forward, big_filter).rfind("w has", 0), 0u);
}

TEST(CudaConv2dTiling, SplitCountRespectsItsBounds) {
  const std::size_t plenty = std::size_t{1} << 30;
  EXPECT_EQ(choose_splits(kSplitTargetBlocks, 1 << 20, 1000, plenty), 1);  // already full
  EXPECT_EQ(choose_splits(1, 8 * kTileK * kSplitMinTiles, 1000, plenty), 8);
  EXPECT_EQ(choose_splits(1, 1 << 24, 1000, plenty), kSplitMax);
  EXPECT_EQ(choose_splits(100, 1 << 24, 1000, plenty), 6);      // ceil(512 / 100)
  EXPECT_EQ(choose_splits(1, 1 << 24, 1000, 4 * 1000 * 5), 5);  // workspace holds 5 slices
  EXPECT_EQ(choose_splits(1, 1 << 24, 1000, 4 * 1000), 1);      // ... or one
  EXPECT_EQ(choose_splits(1, kTileK * kSplitMinTiles - 1, 10, plenty), 1);  // too shallow
  EXPECT_EQ(choose_splits(1, 1 << 24, kMaxElements / 3, std::size_t{1} << 40), 3);
}

TEST(CudaConv2dTiling, VariantChoice) {
  auto dims = [](const Case& c) {
    return make_conv_dims(conv2d_geometry(c.x_shape(), c.w_shape(), c.params()));
  };
  const ConvDims dense = dims({2, 32, 14, 14, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1});
  const ConvDims depthwise = dims({2, 32, 14, 14, 32, 3, 3, 1, 1, 1, 1, 1, 1, 32});
  for (Conv2dOp op : {Conv2dOp::Forward, Conv2dOp::BackwardData, Conv2dOp::BackwardFilter}) {
    EXPECT_EQ(choose_variant(op, dense, 0), 2) << to_string(op);
    EXPECT_EQ(choose_variant(op, dense, 1), 1) << to_string(op);
    EXPECT_EQ(choose_variant(op, depthwise, 2), 2) << to_string(op);
  }
  EXPECT_EQ(choose_variant(Conv2dOp::Forward, depthwise, 0), 1);
  EXPECT_EQ(choose_variant(Conv2dOp::BackwardData, depthwise, 0), 1);
  EXPECT_EQ(choose_variant(Conv2dOp::BackwardFilter, depthwise, 0), 2);
  EXPECT_EQ(choose_variant(Conv2dOp::BackwardBias, dense, 2), 1);

  EXPECT_EQ(parse_cuda_conv2d_variant(nullptr), 0);
  EXPECT_EQ(parse_cuda_conv2d_variant(""), 0);
  EXPECT_EQ(parse_cuda_conv2d_variant("0"), 0);
  EXPECT_EQ(parse_cuda_conv2d_variant("1"), 1);
  EXPECT_EQ(parse_cuda_conv2d_variant("2"), 2);
  EXPECT_EQ(parse_cuda_conv2d_variant("3"), 3);
  EXPECT_EQ(parse_cuda_conv2d_variant("4"), 4);
  EXPECT_EQ(parse_cuda_conv2d_variant("5"), -1);
  EXPECT_EQ(parse_cuda_conv2d_variant("12"), -1);
  EXPECT_EQ(parse_cuda_conv2d_variant("x"), -1);
}

}  // namespace
}  // namespace dlrt::detail::cuda_conv2d
