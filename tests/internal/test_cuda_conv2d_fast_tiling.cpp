// The fast Cuda convolution variants (conv2d_fast.cu), replayed on the CPU:
// every kernel is run block by block, pipeline stage by stage and thread by
// thread through the same functions it calls (conv2d_fast_tiling.hpp), with
// bounds-checked reads, NaN-filled shared memory and outputs, the cp.async
// ring's copies landing as late as the PTX allows (or as early), and the
// result compared with the Reference convolution in double on a table of
// shapes. The pieces (fast divmod, the stage ring, split-K partitions, the
// sub-pixel decomposition, the mma fragment layout, the chooser) are tested
// on their own too.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "dlrt/dlrt.hpp"
#include "kernels/cuda/conv2d_fast_tiling.hpp"
#include "kernels/reference/conv2d.hpp"
#include "runtime/conv2d_geometry.hpp"
#include "support/test_support.hpp"

namespace dlrt::detail::cuda_conv2d_fast {
namespace {

using cuda_conv2d::make_conv_dims;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

std::size_t at(int i) { return static_cast<std::size_t>(i); }
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

// Outputs poisoned with NaN, with a write count per element.
struct Emulation {
  std::vector<float> out;
  std::vector<int> writes;
  int read_violations = 0, write_violations = 0;

  explicit Emulation(std::size_t size) : out(size, kNaN), writes(size, 0) {}
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

// Writes into [0, span) of `out` that count per element, and count strays.
struct CheckedDst {
  std::vector<float>* out;
  std::vector<int>* writes;
  int* violations;
  float& operator[](int i) const {
    static float sink;
    if (i < 0 || i >= static_cast<int>(out->size())) {
      ++*violations;
      return sink;
    }
    ++(*writes)[at(i)];
    return (*out)[at(i)];
  }
};

// ---------------------------------------------------------------------------
// Problems, and the Reference convolution in double.

struct Case {
  int N, C, H, W, K, R, S;
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

ConvDims dims_of(const Case& c) {
  return make_conv_dims(conv2d_geometry(c.x_shape(), c.w_shape(), c.params()));
}

struct Problem {
  Case c;
  Conv2dGeometry g;
  ConvDims d;
  std::vector<float> x, w, bias, dy;
  std::vector<float> y, dx, dw, db;  // Reference results, rounded to float
  // The same sums over |x|, |w|, |dy|, |bias|: the scale of each output's
  // rounding error, for the TF32 bounds.
  std::vector<double> y_abs, dx_abs, dw_abs;
};

std::vector<double> to_double(const std::vector<float>& v, bool absolute) {
  std::vector<double> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = absolute ? std::fabs(v[i]) : v[i];
  return out;
}
std::vector<float> to_float(const std::vector<double>& v) {
  return std::vector<float>(v.begin(), v.end());
}

Problem make_problem(const Case& c, std::uint64_t seed) {
  Problem pb;
  pb.c = c;
  const Shape y_shape = conv2d_output_shape(c.x_shape(), c.w_shape(), c.params());
  pb.g = conv2d_geometry(c.x_shape(), c.w_shape(), c.params());
  pb.d = make_conv_dims(pb.g);
  pb.x = test::random_values(c.x_shape().numel(), seed);
  pb.w = test::random_values(c.w_shape().numel(), seed + 1);
  pb.bias = test::random_values(c.K, seed + 2);
  pb.dy = test::random_values(y_shape.numel(), seed + 3);
  for (bool absolute : {false, true}) {
    const std::vector<double> x = to_double(pb.x, absolute), w = to_double(pb.w, absolute);
    const std::vector<double> b = to_double(pb.bias, absolute), dy = to_double(pb.dy, absolute);
    std::vector<double> y(pb.dy.size()), dx(pb.x.size()), dw(pb.w.size()), db(pb.bias.size());
    reference::conv2d_forward(pb.g, x.data(), w.data(), b.data(), y.data());
    reference::conv2d_backward_data(pb.g, dy.data(), w.data(), dx.data());
    reference::conv2d_backward_filter(pb.g, x.data(), dy.data(), dw.data());
    if (absolute) {
      pb.y_abs = y, pb.dx_abs = dx, pb.dw_abs = dw;
    } else {
      reference::conv2d_backward_bias(pb.g, dy.data(), db.data());
      pb.y = to_float(y), pb.dx = to_float(dx), pb.dw = to_float(dw), pb.db = to_float(db);
    }
  }
  return pb;
}

// Implicit-GEMM problems (C/g and K/g of at least 16): odd sizes, 1x1 to
// 7x7, strides 1 to 3, pads, dilation, groups, phases without taps.
const Case kGemmCases[] = {
    {1, 3, 7, 7, 20, 3, 3, 1, 1, 1, 1, 1, 1, 1},     // 3 input channels: C/g < 16 for data
    {2, 16, 9, 11, 17, 1, 1, 0, 0, 1, 1, 1, 1, 1},   // 1x1, odd width
    {2, 20, 8, 8, 24, 1, 1, 0, 0, 1, 1, 1, 1, 1},    // 1x1, rows of 8: 16-byte copies
    {2, 17, 13, 10, 18, 5, 5, 2, 2, 2, 2, 1, 1, 1},  // 5x5, stride 2
    {1, 16, 17, 15, 16, 7, 7, 3, 3, 2, 2, 1, 1, 1},  // 7x7 stride-2 stem
    {2, 18, 10, 9, 20, 3, 3, 2, 1, 3, 3, 1, 1, 1},   // stride 3, unequal pads
    {2, 32, 12, 12, 32, 3, 3, 2, 2, 1, 1, 2, 2, 2},  // dilation 2, 2 groups
    {1, 48, 10, 12, 48, 3, 5, 1, 2, 1, 2, 2, 1, 3},  // 3x5, mixed stride and dilation, 3 groups
    {1, 70, 6, 6, 130, 3, 3, 1, 1, 1, 1, 1, 1, 1},   // two row tiles, long depth
    {3, 130, 3, 3, 66, 1, 1, 0, 0, 1, 1, 1, 1, 2},   // 65 channels per group
    {2, 16, 8, 8, 16, 3, 3, 3, 3, 3, 3, 2, 2, 1},    // pad 3, stride 3, dilation 2
    {1, 16, 4, 4, 16, 1, 1, 2, 2, 1, 1, 1, 1, 1},    // padding wider than the filter
    {2, 16, 10, 10, 16, 1, 1, 0, 0, 3, 3, 1, 1, 1},  // stride past the filter: tapless phases
    {4, 16, 12, 12, 20, 3, 3, 1, 1, 1, 1, 1, 1, 1},  // many column tiles
    {1, 16, 6, 30, 16, 1, 3, 0, 1, 1, 1, 1, 2, 1},   // 1x3, dilation_w 2
    {1, 16, 3, 3, 16, 3, 3, 0, 0, 1, 1, 1, 1, 1},    // a 1x1 output
    {2, 16, 9, 9, 20, 2, 2, 0, 0, 2, 2, 1, 1, 1},    // even filter, stride 2
};

// Depthwise problems (C/g == 1, K/g < 16).
const Case kDepthwiseCases[] = {
    {1, 8, 9, 9, 8, 3, 3, 1, 1, 1, 1, 1, 1, 8},    // 3x3 depthwise
    {2, 6, 11, 8, 12, 3, 3, 1, 1, 2, 1, 1, 1, 6},  // channel multiplier 2, stride 2x1
    {1, 4, 40, 70, 4, 5, 5, 2, 2, 1, 1, 2, 2, 4},  // several tiles, dilation 2
    {2, 3, 20, 37, 9, 3, 3, 1, 1, 3, 3, 1, 1, 3},  // stride 3, multiplier 3
    {1, 2, 5, 5, 2, 7, 7, 3, 3, 2, 2, 1, 1, 2},    // 7x7 on a tiny plane
    {1, 1, 33, 33, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1},  // one input channel, three filters
    {3, 2, 70, 70, 2, 3, 3, 1, 1, 1, 1, 1, 1, 2},  // 14,700 positions: several chunks
    {1, 5, 17, 19, 5, 4, 2, 3, 0, 4, 2, 1, 3, 5},  // even taps, stride 4, dilation 3
    {2, 4, 9, 9, 4, 1, 1, 0, 0, 2, 2, 1, 1, 4},    // 1x1 stride 2: tapless phases
};

template <std::size_t Count>
const std::vector<Problem>& problems_of(const Case (&cases)[Count], std::uint64_t seed) {
  static const std::vector<Problem> all = [&] {
    std::vector<Problem> out;
    std::uint64_t s = seed;
    for (const Case& c : cases) out.push_back(make_problem(c, s += 10));
    return out;
  }();
  return all;
}
const std::vector<Problem>& gemm_problems() { return problems_of(kGemmCases, 7000); }
const std::vector<Problem>& depthwise_problems() { return problems_of(kDepthwiseCases, 9000); }

// ---------------------------------------------------------------------------
// The implicit GEMM kernel, replayed.

struct CopyStats {
  long vectors = 0, scalars = 0, misaligned = 0, smem_out_of_range = 0, bad_smem_reads = 0;
};

// A cp.async as issued: operand 0 (A) or 1 (B), the shared index, the tensor
// offset (-1: zero fill) and the width in floats.
struct IssuedCopy {
  int operand, dst, src, width;
};

struct RecordingCopy {
  std::vector<IssuedCopy>* group;
  int operand;
  CopyStats* stats;
  void vector(int dst, int src) const {
    if (dst % 4 != 0 || src < 0 || src % 4 != 0) ++stats->misaligned;
    ++stats->vectors;
    group->push_back({operand, dst, src, 4});
  }
  void scalar(int dst, int src) const {
    ++stats->scalars;
    group->push_back({operand, dst, src, 1});
  }
};

// When a copy's data reaches shared memory: at issue (Eager), or only when a
// cp.async.wait_group guarantees it (Lazy). A correct ring gives the same
// answer either way; a wait count one too small reads stale data under Lazy,
// a stage reused too early is overwritten before it is read under Eager.
enum class Landing { Eager, Lazy };

struct Accumulators {
  float v[8][8] = {};
};

struct HostFloat4 {
  const std::vector<float>* smem;
  long* bad;
  void load4(int index, float (&dst)[8], int at_) const {
    if (index % 4 != 0 || index < 0 || index + 4 > static_cast<int>(smem->size())) {
      ++*bad;
      for (int v = 0; v < 4; ++v) dst[at_ + v] = kNaN;
      return;
    }
    for (int v = 0; v < 4; ++v) dst[at_ + v] = (*smem)[at(index + v)];
  }
};

// Variant 3's stage math, exactly the kernel's function.
struct FfmaReplay {
  static constexpr int kPad = 4;
  template <class T>
  using Threads = FfmaThreads<T>;
  template <class T>
  static void multiply(const std::vector<float>& smem, int stage, std::vector<Accumulators>& acc,
                       CopyStats& stats) {
    for (int tid = 0; tid < T::kThreads; ++tid)
      ffma_multiply_stage<T, StageLayout<T, kPad>>(HostFloat4{&smem, &stats.bad_smem_reads}, stage,
                                                   tid, acc[at(tid)].v);
  }
};

// The PTX ISA's fragment table for mma.m16n8k8 .tf32 ("Matrix Fragments for
// mma.m16n8k8"), written out as the manual lists it: groupID = lane >> 2,
// threadID_in_group = lane % 4.
FragmentCoord ptx_a(int lane, int reg) {
  const int group = lane >> 2, thread = lane % 4;
  switch (reg) {
    case 0:
      return {group, thread};
    case 1:
      return {group + 8, thread};
    case 2:
      return {group, thread + 4};
    default:
      return {group + 8, thread + 4};
  }
}
FragmentCoord ptx_b(int lane, int reg) {
  const int group = lane >> 2, thread = lane % 4;
  return reg == 0 ? FragmentCoord{thread, group} : FragmentCoord{thread + 4, group};
}
FragmentCoord ptx_c(int lane, int reg) {
  const int group = lane >> 2, thread = lane % 4;
  switch (reg) {
    case 0:
      return {group, thread * 2};
    case 1:
      return {group, thread * 2 + 1};
    case 2:
      return {group + 8, thread * 2};
    default:
      return {group + 8, thread * 2 + 1};
  }
}

// Variant 4's stage math: each warp's fragments gathered through the
// kernel's shared-memory indices, assembled into 16x8 and 8x8 matrices by
// the PTX table, multiplied, and scattered back by the PTX table. Operands
// are rounded as cvt.rna.tf32 does, and 3xTF32 adds its three products in
// the kernel's order.
template <bool kThreeTf32>
struct MmaReplay {
  static constexpr int kPad = 8;
  template <class T>
  using Threads = MmaThreads<T>;

  struct Split {
    float big[16][8], small[16][8];
  };

  template <class T>
  static void multiply(const std::vector<float>& smem, int stage, std::vector<Accumulators>& acc,
                       CopyStats& stats) {
    using L = StageLayout<T, kPad>;
    auto read = [&](int index) {
      if (index < 0 || index >= static_cast<int>(smem.size())) {
        ++stats.bad_smem_reads;
        return kNaN;
      }
      return smem[at(index)];
    };
    for (int warp = 0; warp < T::kThreads / 32; ++warp)
      for (int mi = 0; mi < 4; ++mi)
        for (int nj = 0; nj < 4; ++nj) {
          Split a{}, b{};
          int a_seen[16][8] = {}, b_seen[8][8] = {};
          for (int lane = 0; lane < 32; ++lane) {
            const int tid = warp * 32 + lane;
            for (int r = 0; r < 4; ++r) {
              const FragmentCoord c = ptx_a(lane, r);
              const float v = read(MmaThreads<T>::template a_index<L>(stage, tid, mi, r));
              a.big[c.row][c.col] = round_to_tf32(v);
              a.small[c.row][c.col] = round_to_tf32(v - a.big[c.row][c.col]);
              ++a_seen[c.row][c.col];
            }
            for (int r = 0; r < 2; ++r) {
              const FragmentCoord c = ptx_b(lane, r);
              const float v = read(MmaThreads<T>::template b_index<L>(stage, tid, nj, r));
              b.big[c.row][c.col] = round_to_tf32(v);
              b.small[c.row][c.col] = round_to_tf32(v - b.big[c.row][c.col]);
              ++b_seen[c.row][c.col];
            }
          }
          for (auto& row : a_seen)
            for (int seen : row)
              if (seen != 1) ++stats.bad_smem_reads;
          for (auto& row : b_seen)
            for (int seen : row)
              if (seen != 1) ++stats.bad_smem_reads;
          auto mma = [&](const float(&am)[16][8], const float(&bm)[16][8]) {
            for (int lane = 0; lane < 32; ++lane)
              for (int r = 0; r < 4; ++r) {
                const FragmentCoord c = ptx_c(lane, r);
                float& d = acc[at(warp * 32 + lane)].v[2 * mi + r / 2][2 * nj + r % 2];
                float sum = d;
                for (int k = 0; k < 8; ++k) sum += am[c.row][k] * bm[k][c.col];
                d = sum;
              }
          };
          if (kThreeTf32) {
            mma(a.small, b.big);
            mma(a.big, b.small);
          }
          mma(a.big, b.big);
        }
  }
};

// fast_implicit_gemm_kernel for one block, in the kernel's order: the
// prologue, then per iteration wait, barrier, issue the next k-tile, commit,
// multiply; all threads in lockstep between barriers. Shared memory starts
// as NaN. Each thread keeps its own cp.async groups; Lazy landing applies a
// group only once a wait_group guarantees it.
template <class Op, class T, class Math, class SrcA, class SrcB, class Dst>
void replay_gemm_block(const Op& op, const FastGrid& grid, int block, const SrcA& a, const SrcB& b,
                       const float* bias, Dst dst, Landing landing, CopyStats& stats) {
  using Layout = StageLayout<T, Math::kPad>;
  using Ring = MainPipeline;
  std::vector<float> smem(at(Layout::kFloats), kNaN);
  const FastBlock blk = fast_block(grid, op.depth(), block);
  std::vector<ATileLoader<Op, T>> a_tiles(at(T::kThreads));
  std::vector<BTileLoader<Op, T>> b_tiles(at(T::kThreads));
  for (int tid = 0; tid < T::kThreads; ++tid) {
    a_tiles[at(tid)].init(op, blk, tid);
    b_tiles[at(tid)].init(op, blk, tid);
  }
  struct ThreadGroups {
    std::vector<std::vector<IssuedCopy>> committed;
    std::vector<IssuedCopy> open;
    std::size_t landed = 0;
  };
  std::vector<ThreadGroups> threads(at(T::kThreads));
  auto land = [&](const IssuedCopy& c) {
    for (int v = 0; v < c.width; ++v) {
      const int index = c.dst + v;
      if (index < 0 || index >= Layout::kFloats) {
        ++stats.smem_out_of_range;
        continue;
      }
      smem[at(index)] = c.src < 0 ? 0.0f : (c.operand == 0 ? a[c.src + v] : b[c.src + v]);
    }
  };
  const int tiles = block_k_tiles(blk);
  auto load = [&](int t) {
    const int k0 = blk.k_begin + t * kTileK, stage = Ring::stage_of(t);
    for (int tid = 0; tid < T::kThreads; ++tid) {
      ThreadGroups& th = threads[at(tid)];
      const std::size_t first = th.open.size();
      a_tiles[at(tid)].template load<Layout>(op, blk, k0, stage, tid, true,
                                             RecordingCopy{&th.open, 0, &stats});
      b_tiles[at(tid)].template load<Layout>(op, blk, k0, stage, tid, true,
                                             RecordingCopy{&th.open, 1, &stats});
      if (landing == Landing::Eager)
        for (std::size_t i = first; i < th.open.size(); ++i) land(th.open[i]);
    }
  };
  auto commit = [&] {
    for (ThreadGroups& th : threads) {
      th.committed.push_back(std::move(th.open));
      th.open.clear();
    }
  };
  auto wait_group = [&](int pending) {
    for (ThreadGroups& th : threads) {
      const std::size_t complete =
          th.committed.size() > at(pending) ? th.committed.size() - at(pending) : 0;
      for (; th.landed < complete; ++th.landed)
        if (landing == Landing::Lazy)
          for (const IssuedCopy& c : th.committed[th.landed]) land(c);
    }
  };

  for (int t = 0; t < Ring::kPrologue; ++t) {
    if (t < tiles) load(t);
    commit();
  }
  std::vector<Accumulators> acc(at(T::kThreads));
  for (int it = 0; it < tiles; ++it) {
    wait_group(Ring::kWaitPending);
    // __syncthreads(): every thread's landed copies are visible from here.
    const int next = Ring::tile_loaded_in_iteration(it);
    if (next < tiles) load(next);
    commit();
    Math::template multiply<T>(smem, Ring::stage_of(it), acc, stats);
  }
  wait_group(0);
  using Threads = typename Math::template Threads<T>;
  for (int tid = 0; tid < T::kThreads; ++tid)
    store_block<Op, Threads>(op, blk, tid, grid.splits, bias, dst, acc[at(tid)].v);
}

// One GEMM as run_gemm launches it: the tile kernel over every block into
// C (one split) or into partials, then the split reduction.
template <class T, class Math, class Op>
void replay_gemm(const Op& op, int splits, const std::vector<float>& a, const std::vector<float>& b,
                 const float* bias, std::size_t workspace_bytes, Landing landing, Emulation& e,
                 CopyStats& stats) {
  const FastGrid grid = make_fast_grid(op, T::kM, T::kN, splits);
  const auto blocks = static_cast<int>(grid_blocks(grid));
  if (blocks == 0) return;
  const CheckedSrc a_src{a.data(), isize(a), &e.read_violations};
  const CheckedSrc b_src{b.data(), isize(b), &e.read_violations};
  if (grid.splits == 1) {
    const CheckedDst dst{&e.out, &e.writes, &e.write_violations};
    for (int block = 0; block < blocks; ++block)
      replay_gemm_block<Op, T, Math>(op, grid, block, a_src, b_src, bias, dst, landing, stats);
    return;
  }
  const SplitReduce<Op> reduce(op, grid.splits);
  const std::size_t partial_count = static_cast<std::size_t>(grid.splits) * at(reduce.slice);
  EXPECT_LE(partial_count * sizeof(float), workspace_bytes) << "the workspace is too small";
  Emulation partials(partial_count);
  const CheckedDst pdst{&partials.out, &partials.writes, &partials.write_violations};
  for (int block = 0; block < blocks; ++block)
    replay_gemm_block<Op, T, Math>(op, grid, block, a_src, b_src, bias, pdst, landing, stats);
  EXPECT_TRUE(partials.clean()) << "split partials";
  const CheckedSrc psrc{partials.out.data(), isize(partials.out), &e.read_violations};
  const CheckedDst dst{&e.out, &e.writes, &e.write_violations};
  for (int i = 0; i < reduce.slice; ++i) {
    const typename SplitReduce<Op>::Target t = reduce.target(i);
    const float sum = cuda_conv2d::split_sum(psrc, reduce.splits, reduce.slice, i);
    dst[t.offset] = bias != nullptr ? sum + bias[t.bias_index] : sum;
  }
}

template <class Fn>
void with_tile(TileShape tile, Fn&& fn) {
  switch (tile) {
    case TileShape::k128x128:
      fn(Tile128x128{});
      return;
    case TileShape::k128x64:
      fn(Tile128x64{});
      return;
    case TileShape::k64x128:
      fn(Tile64x128{});
      return;
  }
}

template <class Fn>
void with_math(MathMode mode, Fn&& fn) {
  switch (mode) {
    case MathMode::Fp32:
      fn(FfmaReplay{});
      return;
    case MathMode::Tf32:
      fn(MmaReplay<false>{});
      return;
    case MathMode::Tf32x3:
      fn(MmaReplay<true>{});
      return;
  }
}

// The op's launcher, replayed: its output tensor as Emulation.
Emulation replay_op(const Problem& pb, Conv2dOp op, const FastConvConfig& c, Landing landing,
                    CopyStats& stats) {
  Emulation e(op == Conv2dOp::Forward        ? pb.y.size()
              : op == Conv2dOp::BackwardData ? pb.dx.size()
                                             : pb.dw.size());
  with_tile(c.tile, [&](auto tile) {
    with_math(c.mode, [&](auto math) {
      using T = decltype(tile);
      using M = decltype(math);
      if (op == Conv2dOp::Forward) {
        replay_gemm<T, M>(ForwardFastGemm(pb.d), c.splits, pb.w, pb.x, pb.bias.data(),
                          c.workspace_bytes, landing, e, stats);
      } else if (op == Conv2dOp::BackwardFilter) {
        replay_gemm<T, M>(BackwardFilterFastGemm(pb.d), c.splits, pb.dy, pb.x, nullptr,
                          c.workspace_bytes, landing, e, stats);
      } else {
        for (int ph = 0; ph < pb.d.stride_h; ++ph)
          for (int pw = 0; pw < pb.d.stride_w; ++pw) {
            const BackwardDataFastGemm phase(pb.d, ph, pw);
            replay_gemm<T, M>(phase, phase_splits(c, phase), pb.w, pb.dy, nullptr,
                              c.workspace_bytes, landing, e, stats);
          }
      }
    });
  });
  return e;
}

int depth_of(const Problem& pb, Conv2dOp op) {
  if (op == Conv2dOp::Forward) return ForwardFastGemm(pb.d).depth();
  if (op == Conv2dOp::BackwardFilter) return BackwardFilterFastGemm(pb.d).depth();
  return pb.d.Kg * pb.d.R * pb.d.S;
}

// The documented error bounds (docs/cuda-conv2d-fast.md): with u = 2^-24
// and n products per output, |got - exact| <= (e_p + 2 n' u) * sum |a b|,
// e_p = 2^-10 + 2^-22 per product for TF32, 3 * 2^-22 for 3xTF32, and n'
// the additions of the sums (n + 1; three times that for 3xTF32).
::testing::AssertionResult within_tf32_bound(const std::vector<float>& got,
                                             const std::vector<float>& want,
                                             const std::vector<double>& abs_sum, int depth,
                                             MathMode mode) {
  const double u = std::ldexp(1.0, -24);
  const double per_product = mode == MathMode::Tf32 ? std::ldexp(1.0, -10) + std::ldexp(1.0, -22)
                                                    : 3 * std::ldexp(1.0, -22);
  const double additions = (mode == MathMode::Tf32 ? 1.0 : 3.0) * (depth + 2);
  std::size_t bad = 0, worst = 0;
  double worst_ratio = 0.0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double bound = (per_product + 2.0 * additions * u) * abs_sum[i] + 1e-30;
    const double err = std::fabs(double(got[i]) - double(want[i]));
    if (!(err <= bound)) ++bad;
    const double ratio = std::isnan(err) ? std::numeric_limits<double>::infinity() : err / bound;
    if (ratio > worst_ratio) worst_ratio = ratio, worst = i;
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << bad << " of " << got.size() << " elements past the bound; worst at " << worst
         << ": got " << got[worst] << ", want " << want[worst] << " (" << worst_ratio
         << " x the bound)";
}

// The float Reference result and its |.| scale for an op.
struct Want {
  const std::vector<float>* value;
  const std::vector<double>* abs_sum;
};
Want want_of(const Problem& pb, Conv2dOp op) {
  if (op == Conv2dOp::Forward) return {&pb.y, &pb.y_abs};
  if (op == Conv2dOp::BackwardData) return {&pb.dx, &pb.dx_abs};
  return {&pb.dw, &pb.dw_abs};
}

::testing::AssertionResult matches_reference(const Problem& pb, Conv2dOp op, MathMode mode,
                                             const Emulation& e) {
  const Want want = want_of(pb, op);
  if (mode == MathMode::Fp32) return test::all_close(e.out, *want.value, depth_of(pb, op));
  return within_tf32_bound(e.out, *want.value, *want.abs_sum, depth_of(pb, op), mode);
}

constexpr Conv2dOp kGemmOps[] = {Conv2dOp::Forward, Conv2dOp::BackwardData,
                                 Conv2dOp::BackwardFilter};
constexpr MathMode kModes[] = {MathMode::Fp32, MathMode::Tf32, MathMode::Tf32x3};

std::string label(Conv2dOp op, const FastConvConfig& c) {
  return std::string(to_string(op)) + ": " + describe(c);
}

// ---------------------------------------------------------------------------
// Variants 3 and 4 end to end against the Reference convolution.

// The chooser's own configs, on an H100-sized GPU (132 SMs) and on one so
// wide that nearly every problem splits its depth.
TEST(CudaConv2dFastTiling, ImplicitGemmVariantsMatchReference) {
  for (const Problem& pb : gemm_problems()) {
    SCOPED_TRACE(pb.c.name());
    for (Conv2dOp op : kGemmOps)
      for (MathMode mode : kModes)
        for (int sm_count : {132, 8192}) {
          const FastConvConfig c = choose_fast_config(op, pb.d, sm_count, mode);
          if (op == Conv2dOp::BackwardData && pb.d.Cg < kMinGemmRows) {
            EXPECT_FALSE(c.applies);
            continue;
          }
          ASSERT_TRUE(c.applies) << label(op, c);
          ASSERT_EQ(c.kernel, FastKernel::ImplicitGemm);
          SCOPED_TRACE(label(op, c) + ", " + std::to_string(sm_count) + " SMs");
          CopyStats stats;
          const Emulation e = replay_op(pb, op, c, Landing::Lazy, stats);
          EXPECT_TRUE(e.clean());
          EXPECT_EQ(stats.misaligned + stats.smem_out_of_range + stats.bad_smem_reads, 0);
          EXPECT_TRUE(matches_reference(pb, op, mode, e));
        }
  }
}

// Every tile shape on every op, and copies landing at issue: the same
// results, so no stage is reused before every thread has read it.
TEST(CudaConv2dFastTiling, EveryTileShapeAndEagerLandingMatchReference) {
  for (const Problem& pb : gemm_problems()) {
    if (pb.d.Cg < kMinGemmRows) continue;
    SCOPED_TRACE(pb.c.name());
    for (Conv2dOp op : kGemmOps)
      for (TileShape tile : {TileShape::k128x128, TileShape::k128x64, TileShape::k64x128}) {
        FastConvConfig c = choose_fast_config(op, pb.d, 600, MathMode::Fp32);
        ASSERT_TRUE(c.applies);
        c.tile = tile, c.tile_m = tile_rows(tile), c.tile_n = tile_cols(tile);
        c.workspace_bytes = fast_workspace_bytes(op, pb.d, c);
        SCOPED_TRACE(label(op, c));
        CopyStats lazy_stats, eager_stats;
        const Emulation lazy = replay_op(pb, op, c, Landing::Lazy, lazy_stats);
        const Emulation eager = replay_op(pb, op, c, Landing::Eager, eager_stats);
        EXPECT_TRUE(lazy.clean());
        EXPECT_TRUE(matches_reference(pb, op, MathMode::Fp32, lazy));
        EXPECT_TRUE(test::bitwise_equal(lazy.out, eager.out));
        EXPECT_EQ(lazy_stats.bad_smem_reads + eager_stats.bad_smem_reads, 0);
      }
  }
}

// Variant 4 on every tile, and 3xTF32 as accurate as the bound says: far
// closer to the exact result than plain TF32 on a long depth.
TEST(CudaConv2dFastTiling, ThreeTf32RecoversFp32Accuracy) {
  const Problem pb = make_problem({2, 64, 9, 9, 96, 3, 3, 1, 1, 1, 1, 1, 1, 1}, 4242);
  for (TileShape tile : {TileShape::k128x128, TileShape::k128x64, TileShape::k64x128}) {
    double worst[3] = {};
    for (MathMode mode : kModes) {
      FastConvConfig c = choose_fast_config(Conv2dOp::Forward, pb.d, 132, mode);
      c.tile = tile, c.tile_m = tile_rows(tile), c.tile_n = tile_cols(tile);
      c.workspace_bytes = fast_workspace_bytes(Conv2dOp::Forward, pb.d, c);
      CopyStats stats;
      const Emulation e = replay_op(pb, Conv2dOp::Forward, c, Landing::Lazy, stats);
      ASSERT_TRUE(e.clean()) << label(Conv2dOp::Forward, c);
      EXPECT_TRUE(matches_reference(pb, Conv2dOp::Forward, mode, e)) << label(Conv2dOp::Forward, c);
      for (std::size_t i = 0; i < e.out.size(); ++i)
        worst[static_cast<int>(mode)] =
            std::max(worst[static_cast<int>(mode)],
                     std::fabs(double(e.out[i]) - double(pb.y[i])) / pb.y_abs[i]);
    }
    SCOPED_TRACE(to_string(tile));
    EXPECT_GT(worst[1], std::ldexp(1.0, -16)) << "TF32 rounding did not show";
    EXPECT_LT(worst[2], worst[1] / 64) << "3xTF32 is not much closer than TF32";
    EXPECT_LT(worst[2], 8 * std::max(worst[0], std::ldexp(1.0, -24))) << "3xTF32 vs fp32";
  }
}

// Pointwise layers with rows of 4n pixels move B in 16-byte copies only;
// everything else falls back per element, never misaligned.
TEST(CudaConv2dFastTiling, SixteenByteCopiesWhereContiguous) {
  const Problem pb = make_problem({2, 20, 8, 8, 24, 1, 1, 0, 0, 1, 1, 1, 1, 1}, 31);
  const FastConvConfig c = choose_fast_config(Conv2dOp::Forward, pb.d, 132, MathMode::Fp32);
  CopyStats stats;
  const Emulation e = replay_op(pb, Conv2dOp::Forward, c, Landing::Lazy, stats);
  ASSERT_TRUE(e.clean());
  EXPECT_TRUE(matches_reference(pb, Conv2dOp::Forward, MathMode::Fp32, e));
  // B's rows of 64 pixels go in 16-byte copies; the depths past 20 in the
  // last k-tile are zero fills, and A (depth-fastest) is copied by element.
  EXPECT_GT(stats.vectors, 0);
  EXPECT_EQ(stats.misaligned, 0);
  const Problem data = make_problem({2, 16, 8, 8, 16, 1, 1, 0, 0, 1, 1, 1, 1, 1}, 32);
  const FastConvConfig cd = choose_fast_config(Conv2dOp::BackwardData, data.d, 132, MathMode::Fp32);
  CopyStats data_stats;
  const Emulation ed = replay_op(data, Conv2dOp::BackwardData, cd, Landing::Lazy, data_stats);
  ASSERT_TRUE(ed.clean());
  EXPECT_TRUE(matches_reference(data, Conv2dOp::BackwardData, MathMode::Fp32, ed));
  EXPECT_GT(data_stats.vectors, 0) << "a 1x1 filter's w^T rows are contiguous in m";
  EXPECT_EQ(data_stats.misaligned, 0);
}

// Random problems beyond the table, variant 3 with forced splits.
Case random_gemm_case(std::uint32_t& state) {
  auto next = [&](int lo, int hi) {
    state = state * 1664525u + 1013904223u;
    return lo + static_cast<int>((state >> 8) % static_cast<std::uint32_t>(hi - lo + 1));
  };
  Case c{};
  c.groups = next(1, 2);
  c.C = c.groups * next(16, 20);
  c.K = c.groups * next(16, 21);
  c.N = next(1, 2);
  c.R = next(1, 4), c.S = next(1, 4);
  c.dil_h = next(1, 2), c.dil_w = next(1, 3);
  c.stride_h = next(1, 4), c.stride_w = next(1, 4);
  c.pad_h = next(0, 3), c.pad_w = next(0, 3);
  const int span_h = (c.R - 1) * c.dil_h + 1, span_w = (c.S - 1) * c.dil_w + 1;
  c.H = std::max(1, span_h - 2 * c.pad_h) + next(0, 7);
  c.W = std::max(1, span_w - 2 * c.pad_w) + next(0, 7);
  return c;
}

TEST(CudaConv2dFastTiling, RandomProblemsMatchReference) {
  std::uint32_t state = 20250101u;
  for (int trial = 0; trial < 24; ++trial) {
    const Problem pb = make_problem(random_gemm_case(state), 100 + 10 * std::uint64_t(trial));
    SCOPED_TRACE(pb.c.name());
    for (Conv2dOp op : kGemmOps) {
      const MathMode mode = kModes[trial % 3];
      const FastConvConfig c = choose_fast_config(op, pb.d, trial % 2 == 0 ? 4096 : 132, mode);
      ASSERT_TRUE(c.applies) << label(op, c);
      CopyStats stats;
      const Emulation e = replay_op(pb, op, c, Landing::Lazy, stats);
      ASSERT_TRUE(e.clean()) << label(op, c);
      ASSERT_TRUE(matches_reference(pb, op, mode, e)) << label(op, c);
    }
  }
}

// ---------------------------------------------------------------------------
// Depthwise and bias kernels, replayed.

// depthwise_forward_kernel: the patch filled by all threads, then per filter
// of the channel the outputs of each thread, reading only inside the patch.
Emulation replay_depthwise_forward(const Problem& pb, const FastConvConfig& c, int& bad_reads) {
  const ConvDims& d = pb.d;
  const DepthwiseForward dw(d, c.rows_per_thread);
  Emulation e(pb.y.size());
  const CheckedSrc x{pb.x.data(), isize(pb.x), &e.read_violations};
  const CheckedSrc w{pb.w.data(), isize(pb.w), &e.read_violations};
  const CheckedDst y{&e.out, &e.writes, &e.write_violations};
  const int patch_floats = dw.patch_rows * dw.patch_cols;
  EXPECT_LE(dw.smem_floats(), kDepthwiseMaxSmemFloats);
  for (int block = 0; block < static_cast<int>(dw.blocks()); ++block) {
    const DepthwiseForward::Block b = dw.block(block);
    std::vector<float> patch(at(patch_floats), kNaN), filter(at(d.R * d.S), kNaN);
    for (int e_ = 0; e_ < patch_floats; ++e_) {
      const int src = dw.patch_source(b, e_);
      patch[at(e_)] = src >= 0 ? x[src] : 0.0f;
    }
    for (int j = 0; j < d.Kg; ++j) {
      const int k = b.c * d.Kg + j;
      for (int t = 0; t < d.R * d.S; ++t) filter[at(t)] = w[k * d.R * d.S + t];
      for (int tid = 0; tid < kDepthwiseThreads; ++tid) {
        const int lx = tid % kDepthwiseTileCols, ly0 = tid / kDepthwiseTileCols;
        for (int i = 0; i < dw.tile_rows / kDepthwiseThreadRows; ++i) {
          const int ly = ly0 + kDepthwiseThreadRows * i;
          if (b.p0 + ly >= d.P || b.q0 + lx >= d.Q) continue;
          float sum = pb.bias[at(k)];
          for (int r = 0; r < d.R; ++r)
            for (int s = 0; s < d.S; ++s) {
              const int index = dw.patch_index(ly, lx, r, s);
              if (index < 0 || index >= patch_floats) {
                ++bad_reads;
                continue;
              }
              sum += patch[at(index)] * filter[at(dw.filter_index(0, r, s))];
            }
          y[dw.y_index(b, k, ly, lx)] = sum;
        }
      }
    }
  }
  return e;
}

Emulation replay_depthwise_backward_data(const Problem& pb, const FastConvConfig& c, int& bad_reads,
                                         long& taps_visited) {
  const ConvDims& d = pb.d;
  const DepthwiseBackwardData dw(d, c.rows_per_thread);
  Emulation e(pb.dx.size());
  const CheckedSrc dy{pb.dy.data(), isize(pb.dy), &e.read_violations};
  const CheckedSrc w{pb.w.data(), isize(pb.w), &e.read_violations};
  const CheckedDst dx{&e.out, &e.writes, &e.write_violations};
  const int patch_floats = dw.patch_rows * dw.patch_cols;
  EXPECT_LE(dw.smem_floats(), kDepthwiseMaxSmemFloats);
  for (int block = 0; block < static_cast<int>(dw.blocks()); ++block) {
    const DepthwiseBackwardData::Block b = dw.block(block);
    std::vector<float> acc(at(kDepthwiseThreads * 4), 0.0f);
    for (int j = 0; j < d.Kg; ++j) {
      const int k = b.c * d.Kg + j;
      std::vector<float> patch(at(patch_floats), kNaN), filter(at(d.R * d.S), kNaN);
      for (int e_ = 0; e_ < patch_floats; ++e_) {
        const int src = dw.patch_source(b, k, e_);
        patch[at(e_)] = src >= 0 ? dy[src] : 0.0f;
      }
      for (int t = 0; t < d.R * d.S; ++t) filter[at(t)] = w[k * d.R * d.S + t];
      for (int tid = 0; tid < kDepthwiseThreads; ++tid) {
        const int lx = tid % kDepthwiseTileCols, ly0 = tid / kDepthwiseTileCols;
        const DepthwiseBackwardData::AxisTaps cols = dw.col_taps(b, lx);
        for (int i = 0; i < dw.tile_rows / kDepthwiseThreadRows; ++i) {
          const int ly = ly0 + kDepthwiseThreadRows * i;
          const bool in_plane = b.h0 + ly < d.H && b.w0 + lx < d.W;
          const DepthwiseBackwardData::AxisTaps rows = dw.row_taps(b, ly);
          float sum = acc[at(tid * 4 + i)];
          for (int t = 0; t < rows.taps; ++t) {
            const int r = rows.tap0 + t * rows.tap_step, pr = rows.first - t * rows.step;
            for (int u = 0; u < cols.taps; ++u) {
              const int s = cols.tap0 + u * cols.tap_step, pc = cols.first - u * cols.step;
              if (in_plane) ++taps_visited;
              if (!in_range(pr, dw.patch_rows) || !in_range(pc, dw.patch_cols) ||
                  !in_range(r, d.R) || !in_range(s, d.S)) {
                ++bad_reads;
                continue;
              }
              sum += patch[at(dw.patch_index(pr, pc))] * filter[at(dw.filter_index(0, r, s))];
            }
          }
          acc[at(tid * 4 + i)] = sum;
        }
      }
    }
    for (int tid = 0; tid < kDepthwiseThreads; ++tid) {
      const int lx = tid % kDepthwiseTileCols, ly0 = tid / kDepthwiseTileCols;
      for (int i = 0; i < dw.tile_rows / kDepthwiseThreadRows; ++i) {
        const int ly = ly0 + kDepthwiseThreadRows * i;
        if (b.h0 + ly < d.H && b.w0 + lx < d.W) dx[dw.dx_index(b, ly, lx)] = acc[at(tid * 4 + i)];
      }
    }
  }
  return e;
}

// depthwise_backward_filter_kernel: per tap, strided thread sums, the xor
// shuffle tree of each warp, the warps in order; then the chunk sums.
Emulation replay_depthwise_backward_filter(const Problem& pb, const FastConvConfig& c) {
  const ConvDims& d = pb.d;
  const DepthwiseBackwardFilter f(d);
  EXPECT_EQ(f.chunks, c.chunks);
  Emulation e(pb.dw.size());
  const CheckedSrc x{pb.x.data(), isize(pb.x), &e.read_violations};
  const CheckedSrc dy{pb.dy.data(), isize(pb.dy), &e.read_violations};
  Emulation partials(f.chunks > 1 ? at(f.chunks * f.slice()) : pb.dw.size());
  EXPECT_LE(partials.out.size() * sizeof(float),
            std::max<std::size_t>(c.workspace_bytes, pb.dw.size() * 4));
  const CheckedDst out{&partials.out, &partials.writes, &partials.write_violations};
  for (int block = 0; block < static_cast<int>(f.blocks()); ++block) {
    const DepthwiseBackwardFilter::Block b = f.block(block);
    std::vector<float> warp_sums(at(f.smem_floats()), kNaN);
    for (int r = 0; r < d.R; ++r)
      for (int s = 0; s < d.S; ++s) {
        std::vector<float> lane(at(kDepthwiseThreads), 0.0f);
        for (int tid = 0; tid < kDepthwiseThreads; ++tid)
          for (int i = b.begin + tid; i < b.end; i += kDepthwiseThreads) {
            const DepthwiseBackwardFilter::Position p = f.position(b.k, i);
            const int src = f.x_offset(p, r, s);
            if (src >= 0) lane[at(tid)] += x[src] * dy[p.dy];
          }
        for (int warp = 0; warp < kDepthwiseWarps; ++warp) {
          float* v = lane.data() + warp * 32;
          for (int width = 16; width > 0; width /= 2) {
            float next[32];
            for (int l = 0; l < 32; ++l) next[l] = v[l] + v[l ^ width];
            std::copy(next, next + 32, v);
          }
          warp_sums[at((r * d.S + s) * kDepthwiseWarps + warp)] = v[0];
        }
      }
    for (int tap = 0; tap < f.taps(); ++tap) {
      float total = warp_sums[at(tap * kDepthwiseWarps)];
      for (int v = 1; v < kDepthwiseWarps; ++v) total += warp_sums[at(tap * kDepthwiseWarps + v)];
      out[f.partial_index(b, tap)] = total;
    }
  }
  EXPECT_TRUE(partials.clean()) << "depthwise filter partials";
  if (f.chunks == 1) {
    partials.read_violations += e.read_violations;
    return partials;
  }
  const CheckedSrc psrc{partials.out.data(), isize(partials.out), &e.read_violations};
  for (int i = 0; i < f.slice(); ++i) {
    e.out[at(i)] = cuda_conv2d::split_sum(psrc, f.chunks, f.slice(), i);
    ++e.writes[at(i)];
  }
  return e;
}

TEST(CudaConv2dFastTiling, DepthwiseKernelsMatchReference) {
  for (const Problem& pb : depthwise_problems()) {
    SCOPED_TRACE(pb.c.name());
    for (MathMode mode : kModes) {
      const FastConvConfig f = choose_fast_config(Conv2dOp::Forward, pb.d, 132, mode);
      const FastConvConfig bd = choose_fast_config(Conv2dOp::BackwardData, pb.d, 132, mode);
      const FastConvConfig bf = choose_fast_config(Conv2dOp::BackwardFilter, pb.d, 132, mode);
      for (const FastConvConfig* c : {&f, &bd, &bf}) {
        ASSERT_TRUE(c->applies) << describe(*c);
        ASSERT_EQ(c->kernel, FastKernel::Depthwise);
        ASSERT_EQ(c->variant, 3) << "depthwise is fp32 in every mode";
      }
      if (mode != MathMode::Fp32) continue;  // the same kernels
      int bad_reads = 0;
      const Emulation y = replay_depthwise_forward(pb, f, bad_reads);
      EXPECT_TRUE(y.clean()) << "forward";
      EXPECT_TRUE(test::all_close(y.out, pb.y, pb.d.R * pb.d.S)) << "forward";
      long taps = 0;
      const Emulation dx = replay_depthwise_backward_data(pb, bd, bad_reads, taps);
      EXPECT_TRUE(dx.clean()) << "backward data";
      EXPECT_TRUE(test::all_close(dx.out, pb.dx, pb.d.Kg * pb.d.R * pb.d.S)) << "backward data";
      // The sub-pixel phases: a pixel visits only the taps on its stride grid.
      const long all_taps = static_cast<long>(dx.out.size()) * pb.d.Kg * pb.d.R * pb.d.S;
      EXPECT_LE(taps, all_taps);
      if (pb.d.stride_h * pb.d.stride_w > 1) {
        EXPECT_LT(taps, all_taps) << "zero taps were visited";
      }
      EXPECT_EQ(bad_reads, 0);
      const Emulation dw = replay_depthwise_backward_filter(pb, bf);
      EXPECT_TRUE(dw.clean()) << "backward filter";
      EXPECT_TRUE(test::all_close(dw.out, pb.dw, pb.d.N * pb.d.P * pb.d.Q)) << "backward filter";
    }
  }
}

// bias_chunk_kernel and chunk_sum_kernel, replayed.
std::vector<float> replay_bias(const std::vector<float>& dy, int N, int K, int PQ,
                               const FastConvConfig& c, int& violations) {
  const BiasReduction br(N, K, PQ);
  EXPECT_EQ(br.chunks, c.chunks);
  const CheckedSrc src{dy.data(), isize(dy), &violations};
  std::vector<float> partials(at(br.chunks * K), kNaN);
  EXPECT_LE(br.chunks > 1 ? partials.size() * 4 : 0, c.workspace_bytes);
  for (int block = 0; block < static_cast<int>(br.blocks()); ++block) {
    const BiasReduction::Block b = br.block(block);
    float partial[kBiasThreads];
    for (int tid = 0; tid < kBiasThreads; ++tid) {
      float sum = 0.0f;
      for (int i = b.begin + tid; i < b.end; i += kBiasThreads) sum += src[br.dy_offset(b.k, i)];
      partial[tid] = sum;
    }
    for (int width = kBiasThreads / 2; width > 0; width /= 2)
      for (int tid = 0; tid < width; ++tid) partial[tid] += partial[tid + width];
    partials.at(at(br.partial_index(b))) = partial[0];
  }
  std::vector<float> db(at(K));
  const CheckedSrc psrc{partials.data(), isize(partials), &violations};
  for (int k = 0; k < K; ++k) db[at(k)] = cuda_conv2d::split_sum(psrc, br.chunks, K, k);
  return db;
}

TEST(CudaConv2dFastTiling, BiasReductionMatchesReference) {
  for (const Problem& pb : gemm_problems()) {
    SCOPED_TRACE(pb.c.name());
    const FastConvConfig c = choose_fast_config(Conv2dOp::BackwardBias, pb.d, 132, MathMode::Fp32);
    ASSERT_TRUE(c.applies);
    int violations = 0;
    const std::vector<float> db =
        replay_bias(pb.dy, pb.d.N, pb.d.K, pb.d.P * pb.d.Q, c, violations);
    EXPECT_EQ(violations, 0);
    EXPECT_TRUE(test::all_close(db, pb.db, pb.g.N * pb.g.P * pb.g.Q));
  }
  // Few channels with long planes: many chunks per channel.
  for (const auto& [N, K, PQ] : {std::tuple{3, 2, 5000}, std::tuple{1, 1, 4096 * 3 + 7},
                                 std::tuple{64, 3, 49}, std::tuple{1, 1000, 1}}) {
    ConvDims d{};
    d.N = N, d.K = K, d.P = PQ, d.Q = 1, d.C = 1, d.H = 1, d.W = 1, d.R = 1, d.S = 1;
    d.groups = 1, d.Cg = 1, d.Kg = K, d.stride_h = d.stride_w = d.dil_h = d.dil_w = 1;
    const FastConvConfig c = choose_fast_config(Conv2dOp::BackwardBias, d, 132, MathMode::Fp32);
    EXPECT_EQ(c.chunks, ceil_div(N * PQ, kBiasChunk));
    const std::vector<float> dy = test::random_values(std::int64_t{N} * K * PQ, 77);
    int violations = 0;
    const std::vector<float> db = replay_bias(dy, N, K, PQ, c, violations);
    EXPECT_EQ(violations, 0);
    for (int k = 0; k < K; ++k) {
      double want = 0.0;
      for (int n = 0; n < N; ++n)
        for (int i = 0; i < PQ; ++i) want += dy[at((n * K + k) * PQ + i)];
      EXPECT_NEAR(db[at(k)], want, 1e-3) << "channel " << k;
    }
  }
}

// ---------------------------------------------------------------------------
// The pieces on their own.

// Exhaustive over small divisors and dividends, random over the whole range,
// and the edges: 2^31 - 1, powers of two, divisors near the top.
TEST(CudaConv2dFastTiling, FastDivmodMatchesDivisionAndRemainder) {
  for (int d = 1; d <= 600; ++d) {
    const FastDivmod f(d);
    for (int n = 0; n < (1 << 16); ++n) {
      int q, r;
      f.divmod(n, q, r);
      ASSERT_EQ(q, n / d) << n << " / " << d;
      ASSERT_EQ(r, n % d) << n << " % " << d;
    }
  }
  std::mt19937 rng(12345);
  std::uniform_int_distribution<int> any(0, INT_MAX), small(1, 1 << 16), big(1, INT_MAX);
  for (int trial = 0; trial < 2000000; ++trial) {
    const int d = trial % 2 == 0 ? small(rng) : big(rng), n = any(rng);
    const FastDivmod f(d);
    ASSERT_EQ(f.div(n), n / d) << n << " / " << d;
    ASSERT_EQ(f.mod(n), n % d) << n << " % " << d;
  }
  for (int shift = 0; shift <= 30; ++shift)
    for (int delta : {-1, 0, 1}) {
      const int d = static_cast<int>(std::max<std::int64_t>(1, (std::int64_t{1} << shift) + delta));
      const FastDivmod f(d);
      for (int n : {0, 1, d - 1, d, d + 1, INT_MAX, INT_MAX - 1, INT_MAX - d, INT_MAX / 2}) {
        if (n < 0) continue;
        ASSERT_EQ(f.div(n), n / d) << n << " / " << d;
      }
    }
  for (int d : {INT_MAX, INT_MAX - 1, (1 << 30) + 12345, 3, 7, 641, 6700417}) {
    const FastDivmod f(d);
    for (int n : {INT_MAX, INT_MAX - 1, d - 1, d, 0})
      if (n >= 0) {
        ASSERT_EQ(f.div(n), n / d) << n << " / " << d;
      }
  }
  EXPECT_EQ(FastDivmod().div(12345), 12345);  // the default divides by one
}

// The stage ring against the PTX rules, as a schedule of events: one thread
// commits groups and waits (cp.async.wait_group N: all but the N newest
// groups complete), all threads meet at each barrier. Checked: the tile a
// multiply reads is complete and in the stage it expects, and no stage is
// written while a tile in it is still to be read (after the barrier the
// previous iteration's reads are all done). Returns the violations.
int ring_violations(int stages, int prologue, int wait_pending, int tiles) {
  int violations = 0;
  std::vector<int> stage_tile(at(stages), -1);  // the tile each stage holds or receives
  std::vector<int> tile_group(at(tiles + stages), -1);
  std::vector<bool> consumed(at(tiles + stages), false);
  int committed = 0;
  auto issue = [&](int t, int iteration_done) {
    const int stage = t % stages;
    const int old = stage_tile[at(stage)];
    // Overwriting a tile not yet consumed, or consumed in the current
    // iteration (its reads may still run before the next barrier).
    if (old >= 0 && (!consumed[at(old)] || old >= iteration_done)) ++violations;
    stage_tile[at(stage)] = t;
    tile_group[at(t)] = committed;
  };
  for (int t = 0; t < prologue; ++t) {
    if (t < tiles) issue(t, 0);
    ++committed;
  }
  for (int it = 0; it < tiles; ++it) {
    const int complete = committed - wait_pending;  // groups [0, complete) are done
    // barrier: the reads of iterations < it are done
    const int next = it + prologue;
    if (next < tiles) issue(next, it);
    ++committed;
    const int stage = it % stages;
    if (stage_tile[at(stage)] != it) ++violations;
    if (tile_group[at(it)] < 0 || tile_group[at(it)] >= complete) ++violations;
    consumed[at(it)] = true;
  }
  return violations;
}

TEST(CudaConv2dFastTiling, StageRingNeverReadsEarlyNorOverwritesUnread) {
  EXPECT_EQ(MainPipeline::kStages, kStages);
  EXPECT_EQ(MainPipeline::kPrologue, kStages - 1);
  EXPECT_EQ(MainPipeline::kWaitPending, kStages - 2);
  for (int tiles = 0; tiles <= 20; ++tiles) {
    EXPECT_EQ(ring_violations(2, Pipeline<2>::kPrologue, Pipeline<2>::kWaitPending, tiles), 0);
    EXPECT_EQ(ring_violations(3, Pipeline<3>::kPrologue, Pipeline<3>::kWaitPending, tiles), 0);
    EXPECT_EQ(ring_violations(4, Pipeline<4>::kPrologue, Pipeline<4>::kWaitPending, tiles), 0);
    EXPECT_EQ(ring_violations(5, Pipeline<5>::kPrologue, Pipeline<5>::kWaitPending, tiles), 0);
    for (int t = 0; t < tiles; ++t) {
      EXPECT_EQ(MainPipeline::stage_of(MainPipeline::tile_loaded_in_iteration(t)),
                MainPipeline::stage_of(t + kStages - 1));
      if (t > 0) {  // the stage refilled in iteration t is the one read in t - 1
        EXPECT_EQ(MainPipeline::stage_of(MainPipeline::tile_loaded_in_iteration(t)),
                  MainPipeline::stage_of(t - 1));
      }
    }
  }
  // The checker has teeth: a wait one group too loose reads early, a
  // prologue one tile too deep overwrites a stage before it is read.
  EXPECT_GT(ring_violations(4, 3, 3, 8), 0);
  EXPECT_GT(ring_violations(4, 4, 2, 8), 0);
  EXPECT_GT(ring_violations(3, 2, 2, 8), 0);
}

// The replay itself catches a broken ring: with copies landing only when a
// wait allows, reading one stage ahead gives stale data.
TEST(CudaConv2dFastTiling, LazyLandingExposesAnEarlyRead) {
  const Problem pb = make_problem({1, 32, 6, 6, 20, 3, 3, 1, 1, 1, 1, 1, 1, 1}, 555);
  const ForwardFastGemm op(pb.d);
  const FastGrid grid = make_fast_grid(op, 64, 128, 1);
  ASSERT_GE(grid.k_tiles, 8);
  // A ring whose wait leaves one more group pending than it may.
  using Layout = StageLayout<Tile64x128, 4>;
  std::vector<float> smem(at(Layout::kFloats), kNaN);
  const FastBlock blk = fast_block(grid, op.depth(), 0);
  std::vector<ATileLoader<ForwardFastGemm, Tile64x128>> a(Tile64x128::kThreads);
  std::vector<BTileLoader<ForwardFastGemm, Tile64x128>> b(Tile64x128::kThreads);
  std::vector<std::vector<IssuedCopy>> groups;
  CopyStats stats;
  for (int tid = 0; tid < Tile64x128::kThreads; ++tid) {
    a[at(tid)].init(op, blk, tid);
    b[at(tid)].init(op, blk, tid);
  }
  auto load = [&](int t) {
    groups.emplace_back();
    for (int tid = 0; tid < Tile64x128::kThreads; ++tid) {
      a[at(tid)].load<Layout>(op, blk, t * kTileK, t % kStages, tid, true,
                              RecordingCopy{&groups.back(), 0, &stats});
      b[at(tid)].load<Layout>(op, blk, t * kTileK, t % kStages, tid, true,
                              RecordingCopy{&groups.back(), 1, &stats});
    }
  };
  for (int t = 0; t < kStages - 1; ++t) load(t);
  // wait_group(kStages - 1) instead of kStages - 2: group 0 may still be pending.
  const int complete = static_cast<int>(groups.size()) - (kStages - 1);
  EXPECT_EQ(complete, 0) << "nothing is guaranteed to have landed";
  int nan_reads = 0;
  for (int i = 0; i < Layout::kAFloats; ++i) nan_reads += std::isnan(smem[at(i)]) ? 1 : 0;
  EXPECT_EQ(nan_reads, Layout::kAFloats) << "stage 0 would be read before it landed";
}

// Each load map covers its stage exactly once; each thread's four vector
// columns are 16-byte aligned; the depth-fastest stores of a warp fall in 32
// distinct banks with variant 3's padding.
template <LoadOrder Order, int Extent, int Threads, int Pad>
void check_load_map() {
  using Map = LoadMap<Order, Extent, Threads>;
  std::vector<int> seen(at(kTileK * Extent), 0);
  for (int tid = 0; tid < Threads; ++tid)
    for (int i = 0; i < Map::kSlots; ++i) {
      const typename Map::Slot s = Map::slot(tid, i);
      ASSERT_TRUE(s.kk >= 0 && s.kk < kTileK && s.mn >= 0 && s.mn + Map::kWidth <= Extent);
      if (Map::kWidth == 4) {
        ASSERT_EQ(s.mn % 4, 0);
      }
      for (int v = 0; v < Map::kWidth; ++v) ++seen[at(s.kk * Extent + s.mn + v)];
    }
  for (int count : seen) ASSERT_EQ(count, 1);
  if (Order == LoadOrder::kScalarK && Pad == 4)
    for (int warp = 0; warp < Threads / 32; ++warp)
      for (int i = 0; i < Map::kSlots; ++i) {
        std::set<int> banks;
        for (int lane = 0; lane < 32; ++lane) {
          const typename Map::Slot s = Map::slot(warp * 32 + lane, i);
          banks.insert((s.kk * (Extent + Pad) + s.mn) % 32);
        }
        ASSERT_EQ(banks.size(), 32u) << "bank conflicts in the depth-fastest stores";
      }
}

TEST(CudaConv2dFastTiling, LoadMapsCoverEachStageOnce) {
  check_load_map<LoadOrder::kVectorMn, 128, 256, 4>();
  check_load_map<LoadOrder::kScalarK, 128, 256, 4>();
  check_load_map<LoadOrder::kVectorMn, 128, 128, 4>();
  check_load_map<LoadOrder::kScalarK, 128, 128, 4>();
  check_load_map<LoadOrder::kVectorMn, 64, 128, 4>();
  check_load_map<LoadOrder::kScalarK, 64, 128, 4>();
  EXPECT_TRUE(contiguous_aligned({8, 9, 10, 11}));
  EXPECT_FALSE(contiguous_aligned({9, 10, 11, 12}));  // misaligned
  EXPECT_FALSE(contiguous_aligned({8, 9, -1, 11}));   // a zero inside
  EXPECT_FALSE(contiguous_aligned({8, 9, 10, 20}));   // a row break
  EXPECT_FALSE(contiguous_aligned({-1, 0, 1, 2}));
}

// Every output of the block tile belongs to exactly one thread's acc[i][j]
// in both variants; variant 3's quadrants are 4 consecutive rows and
// columns (one LDS.128 each); variant 4's fragment reads of a warp hit 32
// distinct banks.
template <class T>
void check_thread_maps() {
  for (int variant : {3, 4}) {
    std::vector<int> seen(at(T::kM * T::kN), 0);
    for (int tid = 0; tid < T::kThreads; ++tid)
      for (int i = 0; i < 8; ++i)
        for (int j = 0; j < 8; ++j) {
          const int row = variant == 3 ? FfmaThreads<T>::row(tid, i) : MmaThreads<T>::row(tid, i);
          const int col = variant == 3 ? FfmaThreads<T>::col(tid, j) : MmaThreads<T>::col(tid, j);
          ASSERT_TRUE(in_range(row, T::kM) && in_range(col, T::kN));
          ++seen[at(row * T::kN + col)];
        }
    for (int count : seen) ASSERT_EQ(count, 1) << "variant " << variant;
  }
  for (int tid = 0; tid < T::kThreads; ++tid)
    for (int i = 0; i < 8; ++i) {
      ASSERT_EQ(FfmaThreads<T>::row(tid, i), FfmaThreads<T>::row(tid, i / 4 * 4) + i % 4);
      ASSERT_EQ(FfmaThreads<T>::col(tid, i), FfmaThreads<T>::col(tid, i / 4 * 4) + i % 4);
      ASSERT_EQ(FfmaThreads<T>::row(tid, i / 4 * 4) % 4, 0);
      ASSERT_EQ(FfmaThreads<T>::col(tid, i / 4 * 4) % 4, 0);
    }
  using L = StageLayout<T, 8>;
  for (int warp = 0; warp < T::kThreads / 32; ++warp) {
    for (int mi = 0; mi < 4; ++mi)
      for (int r = 0; r < 4; ++r) {
        std::set<int> banks;
        for (int lane = 0; lane < 32; ++lane)
          banks.insert(MmaThreads<T>::template a_index<L>(0, warp * 32 + lane, mi, r) % 32);
        ASSERT_EQ(banks.size(), 32u) << "A fragment bank conflicts";
      }
    for (int nj = 0; nj < 4; ++nj)
      for (int r = 0; r < 2; ++r) {
        std::set<int> banks;
        for (int lane = 0; lane < 32; ++lane)
          banks.insert(MmaThreads<T>::template b_index<L>(0, warp * 32 + lane, nj, r) % 32);
        ASSERT_EQ(banks.size(), 32u) << "B fragment bank conflicts";
      }
  }
}

TEST(CudaConv2dFastTiling, ThreadMapsCoverTheTileOnce) {
  check_thread_maps<Tile128x128>();
  check_thread_maps<Tile128x64>();
  check_thread_maps<Tile64x128>();
}

// The header's fragment coordinates are the PTX table, and each covers its
// matrix once per warp.
TEST(CudaConv2dFastTiling, MmaFragmentsFollowThePtxLayout) {
  int a_seen[16][8] = {}, b_seen[8][8] = {}, c_seen[16][8] = {};
  for (int lane = 0; lane < 32; ++lane) {
    for (int r = 0; r < 4; ++r) {
      EXPECT_EQ(mma_a_coord(lane, r).row, ptx_a(lane, r).row);
      EXPECT_EQ(mma_a_coord(lane, r).col, ptx_a(lane, r).col);
      EXPECT_EQ(mma_c_coord(lane, r).row, ptx_c(lane, r).row);
      EXPECT_EQ(mma_c_coord(lane, r).col, ptx_c(lane, r).col);
      ++a_seen[ptx_a(lane, r).row][ptx_a(lane, r).col];
      ++c_seen[ptx_c(lane, r).row][ptx_c(lane, r).col];
    }
    for (int r = 0; r < 2; ++r) {
      EXPECT_EQ(mma_b_coord(lane, r).row, ptx_b(lane, r).row);
      EXPECT_EQ(mma_b_coord(lane, r).col, ptx_b(lane, r).col);
      ++b_seen[ptx_b(lane, r).row][ptx_b(lane, r).col];
    }
  }
  for (auto& row : a_seen)
    for (int count : row) EXPECT_EQ(count, 1);
  for (auto& row : b_seen)
    for (int count : row) EXPECT_EQ(count, 1);
  for (auto& row : c_seen)
    for (int count : row) EXPECT_EQ(count, 1);
}

// cvt.rna.tf32.f32: to nearest, ties away from zero, 10 mantissa bits.
TEST(CudaConv2dFastTiling, Tf32RoundingIsToNearestTiesAway) {
  const float one = 1.0f;
  EXPECT_EQ(round_to_tf32(one), one);
  EXPECT_EQ(round_to_tf32(1.0f + std::ldexp(1.0f, -11)), 1.0f + std::ldexp(1.0f, -10));  // tie
  EXPECT_EQ(round_to_tf32(1.0f + std::ldexp(1.0f, -12)), 1.0f);
  EXPECT_EQ(round_to_tf32(-1.0f - std::ldexp(1.0f, -11)), -1.0f - std::ldexp(1.0f, -10));
  EXPECT_EQ(round_to_tf32(1.0f + 3 * std::ldexp(1.0f, -12)), 1.0f + std::ldexp(1.0f, -10));
  EXPECT_TRUE(std::isinf(round_to_tf32(std::numeric_limits<float>::infinity())));
  EXPECT_TRUE(std::isnan(round_to_tf32(kNaN)));
  std::mt19937 rng(9);
  std::uniform_real_distribution<float> dist(-1000.0f, 1000.0f);
  for (int i = 0; i < 100000; ++i) {
    const float v = dist(rng), t = round_to_tf32(v);
    ASSERT_LE(std::fabs(double(t) - double(v)), std::ldexp(std::fabs(double(v)), -11)) << v;
    // The 3xTF32 split: big + small is v to within 2^-22 relative.
    const float small = round_to_tf32(v - t);
    ASSERT_LE(std::fabs(double(t) + double(small) - double(v)),
              std::ldexp(std::fabs(double(v)), -22))
        << v;
  }
}

// Every (group, row tile, column tile, split) is one block, the splits
// partition the depth into non-empty ranges, and every depth index is in
// exactly one split.
TEST(CudaConv2dFastTiling, SplitsPartitionTheDepthOnce) {
  for (int rows : {1, 64, 65, 130})
    for (int cols : {1, 64, 200})
      for (int depth : {0, 1, 8, 9, 70, 1000})
        for (int groups : {1, 3})
          for (int splits : {1, 2, 5, 16, 64, 1000})
            for (TileShape tile : {TileShape::k128x128, TileShape::k128x64, TileShape::k64x128}) {
              const FastGrid g = make_fast_grid(rows, cols, depth, groups, tile_rows(tile),
                                                tile_cols(tile), splits);
              ASSERT_GE(g.splits, 1);
              ASSERT_LE(g.splits, std::max(1, splits));
              std::vector<int> seen(at(static_cast<int>(grid_blocks(g))), 0);
              std::vector<int> cover(at(depth), 0);
              for (int block = 0; block < static_cast<int>(grid_blocks(g)); ++block) {
                const FastBlock b = fast_block(g, depth, block);
                ASSERT_TRUE(in_range(b.group, groups) && in_range(b.split, g.splits));
                ASSERT_TRUE(in_range(b.row0, rows) && b.row0 % g.tile_m == 0);
                ASSERT_TRUE(in_range(b.col0, cols) && b.col0 % g.tile_n == 0);
                ASSERT_EQ(b.k_begin % kTileK, 0);
                if (depth > 0) {
                  ASSERT_LT(b.k_begin, b.k_end) << "an empty split";
                }
                ASSERT_LE(b.k_end, depth);
                const int id =
                    ((b.split * groups + b.group) * g.row_tiles + b.row0 / g.tile_m) * g.col_tiles +
                    b.col0 / g.tile_n;
                ++seen[at(id)];
                if (b.group == 0 && b.row0 == 0 && b.col0 == 0)
                  for (int k = b.k_begin; k < b.k_end; ++k) ++cover[at(k)];
              }
              for (int count : seen) ASSERT_EQ(count, 1);
              for (int count : cover) ASSERT_EQ(count, 1);
            }
}

// The reduction reads split 0, 1, 2, ... for every element: a fixed order.
struct OrderRecorder {
  std::vector<int>* reads;
  float operator[](int i) const {
    reads->push_back(i);
    return 1.0f;
  }
};

TEST(CudaConv2dFastTiling, SplitReductionAddsInSplitOrder) {
  const ForwardFastGemm op(dims_of({2, 16, 5, 5, 20, 3, 3, 1, 1, 1, 1, 1, 1, 1}));
  const SplitReduce<ForwardFastGemm> reduce(op, 5);
  EXPECT_EQ(reduce.slice, op.groups() * op.rows() * op.cols());
  std::vector<int> targets;
  for (int i = 0; i < reduce.slice; ++i) {
    std::vector<int> reads;
    EXPECT_EQ(cuda_conv2d::split_sum(OrderRecorder{&reads}, 5, reduce.slice, i), 5.0f);
    ASSERT_EQ(reads.size(), 5u);
    for (int s = 0; s < 5; ++s) ASSERT_EQ(reads[at(s)], s * reduce.slice + i);
    targets.push_back(reduce.target(i).offset);
  }
  // The targets are every y element once.
  std::sort(targets.begin(), targets.end());
  for (int i = 0; i < static_cast<int>(targets.size()); ++i) ASSERT_EQ(targets[at(i)], i);
  // A sum whose value depends on the order: (1e8 + 1) - 1e8 in float is 0.
  const std::vector<float> partials = {1e8f, 1.0f, -1e8f};
  EXPECT_EQ(cuda_conv2d::split_sum(partials, 3, 1, 0), (1e8f + 1.0f) - 1e8f);
}

// The sub-pixel decomposition, exhaustively on small axes: the phases
// partition the dx coordinates, every (dx, tap) pair with a contribution is
// visited exactly once, and no visited pair is off the stride grid.
TEST(CudaConv2dFastTiling, SubPixelPhasesCoverEveryTapOnceAndSkipZeros) {
  long checked = 0, visited_all = 0, gather_all = 0;
  for (int extent = 1; extent <= 12; ++extent)
    for (int stride = 1; stride <= 4; ++stride)
      for (int pad = 0; pad <= 3; ++pad)
        for (int dil = 1; dil <= 3; ++dil)
          for (int filter = 1; filter <= 5; ++filter) {
            const int span = (filter - 1) * dil + 1;
            if (span > extent + 2 * pad) continue;
            const int out_extent = (extent + 2 * pad - span) / stride + 1;
            std::set<std::pair<int, int>> want;
            for (int i = 0; i < extent; ++i)
              for (int t = 0; t < filter; ++t)
                if (cuda_conv2d::output_coord(i, t, stride, pad, dil, out_extent) >= 0)
                  want.insert({i, t});
            std::vector<int> phase_of(at(extent), 0);
            std::set<std::pair<int, int>> got;
            for (int ph = 0; ph < stride; ++ph) {
              const PhaseAxis a = make_phase_axis(ph, stride, pad, dil, filter, extent);
              for (int j = 0; j < a.count; ++j) {
                const int i = a.start + j * stride;
                ASSERT_TRUE(in_range(i, extent));
                ASSERT_EQ((i + pad) % stride, ph);
                ++phase_of[at(i)];
                for (int t = 0; t < a.taps; ++t) {
                  const int tap = a.tap0 + t * a.tap_step, o = a.out0 + j - t * a.out_step;
                  ++visited_all;
                  ASSERT_TRUE(in_range(tap, filter));
                  // On the stride grid by construction: no zero tap.
                  ASSERT_EQ(i + pad - tap * dil, o * stride)
                      << "i " << i << " tap " << tap << " stride " << stride;
                  if (in_range(o, out_extent)) {
                    ASSERT_EQ(cuda_conv2d::input_coord(o, tap, stride, pad, dil, extent), i);
                    ASSERT_TRUE(got.insert({i, tap}).second) << "a pair visited twice";
                  }
                }
              }
              // Depthwise's per-pixel form gives the same taps.
              for (int i = 0; i < extent; ++i) {
                if ((i + pad) % stride != ph) continue;
                PhaseAxis table[kMaxSubPixelStride];
                for (int q = 0; q < stride; ++q)
                  table[q] = make_phase_axis(q, stride, pad, dil, filter, extent);
                const DepthwiseBackwardData::AxisTaps taps =
                    DepthwiseBackwardData::axis_taps(FastDivmod(stride), table, i, pad, 0);
                ASSERT_EQ(taps.taps, a.taps);
                for (int t = 0; t < taps.taps; ++t)
                  ASSERT_EQ((i + pad - (taps.tap0 + t * taps.tap_step) * dil),
                            (taps.first - t * taps.step) * stride);
              }
            }
            for (int count : phase_of) ASSERT_EQ(count, 1) << "phases must partition dx";
            ASSERT_EQ(got, want);
            gather_all += long{extent} * filter;
            ++checked;
          }
  EXPECT_GT(checked, 1000);
  // The plain gather visits every (dx, tap) pair; the phases about 1/stride.
  EXPECT_LT(visited_all, gather_all * 3 / 5);
  // Stride 2, dilation 1, 3 taps: phase 0 holds taps 0 and 2, phase 1 tap 1.
  const PhaseAxis even = make_phase_axis(0, 2, 1, 1, 3, 8), odd = make_phase_axis(1, 2, 1, 1, 3, 8);
  EXPECT_EQ(even.taps, 2);
  EXPECT_EQ(even.tap0, 0);
  EXPECT_EQ(even.tap_step, 2);
  EXPECT_EQ(odd.taps, 1);
  EXPECT_EQ(odd.tap0, 1);
  EXPECT_EQ(even.start, 1);  // (1 + pad 1) % 2 == 0
  EXPECT_EQ(odd.start, 0);
  // Stride 2, dilation 2: odd phases receive no tap at all.
  EXPECT_EQ(make_phase_axis(1, 2, 0, 2, 3, 9).taps, 0);
}

// The depthwise patches hold every element a tile reads, for every block
// of a spread of shapes (the replays above assert it element by element).
TEST(CudaConv2dFastTiling, DepthwisePatchesCoverTheirTiles) {
  for (const Problem& pb : depthwise_problems()) {
    SCOPED_TRACE(pb.c.name());
    for (int rows : {1, 2, 4}) {
      const DepthwiseForward f(pb.d, rows);
      EXPECT_EQ(f.patch_index(f.tile_rows - 1, kDepthwiseTileCols - 1, pb.d.R - 1, pb.d.S - 1),
                f.patch_rows * f.patch_cols - 1);
      if (pb.d.stride_h > kMaxSubPixelStride || pb.d.stride_w > kMaxSubPixelStride) continue;
      const DepthwiseBackwardData bd(pb.d, rows);
      for (int block = 0; block < static_cast<int>(bd.blocks()); ++block) {
        const DepthwiseBackwardData::Block b = bd.block(block);
        for (int ly = 0; ly < bd.tile_rows; ++ly) {
          const DepthwiseBackwardData::AxisTaps t = bd.row_taps(b, ly);
          for (int j = 0; j < t.taps; ++j)
            ASSERT_TRUE(in_range(t.first - j * t.step, bd.patch_rows));
        }
        for (int lx = 0; lx < kDepthwiseTileCols; ++lx) {
          const DepthwiseBackwardData::AxisTaps t = bd.col_taps(b, lx);
          for (int j = 0; j < t.taps; ++j)
            ASSERT_TRUE(in_range(t.first - j * t.step, bd.patch_cols));
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------
// The chooser's table, row by row.

ConvDims conv(int N, int C, int H, int W, int K, int R, int S, int pad, int stride, int groups = 1,
              int dil = 1) {
  return dims_of({N, C, H, W, K, R, S, pad, pad, stride, stride, dil, dil, groups});
}

TEST(CudaConv2dFastTiling, ChooserFollowsItsTable) {
  // ResNet-50 conv2_x 3x3, batch 32: M = 64 -> 64x128, 784 blocks, no split.
  const ConvDims res3x3 = conv(32, 64, 56, 56, 64, 3, 3, 1, 1);
  FastConvConfig c = choose_fast_config(Conv2dOp::Forward, res3x3, 132, MathMode::Fp32);
  ASSERT_TRUE(c.applies) << c.reason;
  EXPECT_EQ(c.kernel, FastKernel::ImplicitGemm);
  EXPECT_EQ(c.variant, 3);
  EXPECT_EQ(c.tile, TileShape::k64x128);
  EXPECT_EQ(c.threads, 128);
  EXPECT_EQ(c.stages, 4);
  EXPECT_EQ(c.tile_k, 8);
  EXPECT_EQ(c.splits, 1);
  EXPECT_EQ(c.workspace_bytes, 0u);
  EXPECT_EQ(choose_fast_config(Conv2dOp::Forward, res3x3, 132, MathMode::Tf32).variant, 4);
  EXPECT_EQ(choose_fast_config(Conv2dOp::Forward, res3x3, 132, MathMode::Tf32x3).variant, 4);

  // conv5_x 3x3 at batch 1: M = 512, N = 49 -> 128x64, 4 blocks < 132 SMs:
  // ceil(264 / 4) = 66 splits wanted, at most 16.
  const ConvDims late = conv(1, 512, 7, 7, 512, 3, 3, 1, 1);
  c = choose_fast_config(Conv2dOp::Forward, late, 132, MathMode::Fp32);
  EXPECT_EQ(c.tile, TileShape::k128x64);
  EXPECT_EQ(c.splits, 16);
  EXPECT_EQ(c.workspace_bytes, std::size_t{16} * 512 * 49 * 4);
  EXPECT_EQ(fast_workspace_bytes(Conv2dOp::Forward, late, c), c.workspace_bytes);
  // ... a shallow depth caps the split at 4 k-tiles each: 1x1, C = 64 -> 8 tiles -> 2.
  c = choose_fast_config(Conv2dOp::Forward, conv(1, 64, 7, 7, 512, 1, 1, 0, 1), 132,
                         MathMode::Fp32);
  EXPECT_EQ(c.splits, 2);
  // A big M and N: 128x128, and a full grid needs no split.
  c = choose_fast_config(Conv2dOp::Forward, conv(32, 256, 28, 28, 256, 3, 3, 1, 1), 132,
                         MathMode::Fp32);
  EXPECT_EQ(c.tile, TileShape::k128x128);
  EXPECT_EQ(c.threads, 256);
  EXPECT_EQ(c.splits, 1);

  // Backward filter: M = 64, N = 576 -> 64x128, 5 blocks < 264: 53 splits.
  c = choose_fast_config(Conv2dOp::BackwardFilter, res3x3, 132, MathMode::Fp32);
  EXPECT_EQ(c.tile, TileShape::k64x128);
  EXPECT_EQ(c.splits, 53);
  EXPECT_EQ(c.workspace_bytes, std::size_t{53} * 64 * 576 * 4);
  // ... capped at 64.
  c = choose_fast_config(Conv2dOp::BackwardFilter, conv(64, 16, 56, 56, 16, 1, 1, 0, 1), 132,
                         MathMode::Fp32);
  EXPECT_EQ(c.splits, kSplitMaxFilter);

  // Backward data, stride 2: 4 sub-pixel phases; stride 5 is declined.
  c = choose_fast_config(Conv2dOp::BackwardData, conv(8, 64, 28, 28, 128, 3, 3, 1, 2), 132,
                         MathMode::Fp32);
  ASSERT_TRUE(c.applies);
  EXPECT_EQ(c.phases, 4);
  c = choose_fast_config(Conv2dOp::BackwardData, conv(1, 32, 40, 40, 32, 3, 3, 1, 5), 132,
                         MathMode::Fp32);
  EXPECT_FALSE(c.applies);
  EXPECT_NE(c.reason.find("sub-pixel"), std::string::npos) << c.reason;
  EXPECT_TRUE(choose_fast_config(Conv2dOp::Forward, conv(1, 32, 40, 40, 32, 3, 3, 1, 5), 132,
                                 MathMode::Fp32)
                  .applies)
      << "forward has no phases";

  // Depthwise: its own kernels, fp32 whatever the mode.
  const ConvDims dw = conv(8, 32, 56, 56, 32, 3, 3, 1, 1, 32);
  for (Conv2dOp op : {Conv2dOp::Forward, Conv2dOp::BackwardData, Conv2dOp::BackwardFilter}) {
    c = choose_fast_config(op, dw, 132, MathMode::Tf32);
    ASSERT_TRUE(c.applies) << to_string(op) << ": " << c.reason;
    EXPECT_EQ(c.kernel, FastKernel::Depthwise);
    EXPECT_EQ(c.variant, 3);
  }
  EXPECT_EQ(choose_fast_config(Conv2dOp::Forward, dw, 132, MathMode::Fp32).rows_per_thread, 4);
  EXPECT_EQ(
      choose_fast_config(Conv2dOp::Forward, conv(1, 8, 7, 7, 8, 3, 3, 1, 1, 8), 132, MathMode::Fp32)
          .rows_per_thread,
      1);
  c = choose_fast_config(Conv2dOp::BackwardFilter, dw, 132, MathMode::Fp32);
  EXPECT_EQ(c.chunks, ceil_div(8 * 56 * 56, kDepthwiseFilterChunk));
  EXPECT_EQ(c.workspace_bytes, std::size_t(c.chunks) * 32 * 9 * 4);
  // A patch too large for shared memory even at 8 rows: declined, with why.
  c = choose_fast_config(Conv2dOp::Forward, conv(1, 4, 400, 400, 4, 3, 3, 100, 1, 4, 100), 132,
                         MathMode::Fp32);
  EXPECT_FALSE(c.applies);
  EXPECT_NE(c.reason.find("shared memory"), std::string::npos) << c.reason;
  // A channel multiplier of 16 is a GEMM with 16 rows again.
  EXPECT_EQ(choose_fast_config(Conv2dOp::Forward, conv(1, 4, 9, 9, 64, 3, 3, 1, 1, 4), 132,
                               MathMode::Fp32)
                .kernel,
            FastKernel::ImplicitGemm);

  // Few rows per group (not depthwise): declined in favour of variant 1.
  c = choose_fast_config(Conv2dOp::Forward, conv(2, 32, 14, 14, 32, 3, 3, 1, 1, 8), 132,
                         MathMode::Fp32);
  EXPECT_FALSE(c.applies);
  EXPECT_NE(c.reason.find("rows per group"), std::string::npos) << c.reason;

  // Backward bias: ceil(N*P*Q / 4096) chunks per channel.
  c = choose_fast_config(Conv2dOp::BackwardBias, res3x3, 132, MathMode::Fp32);
  EXPECT_EQ(c.kernel, FastKernel::BiasReduction);
  EXPECT_EQ(c.chunks, ceil_div(32 * 56 * 56, kBiasChunk));
  EXPECT_EQ(c.workspace_bytes, std::size_t(c.chunks) * 64 * 4);

  // Past the 32-bit limit: declined by name.
  ConvDims huge = res3x3;
  huge.N = 1 << 14;  // y: 2^14 * 64 * 56 * 56 elements
  c = choose_fast_config(Conv2dOp::Forward, huge, 132, MathMode::Fp32);
  EXPECT_FALSE(c.applies);
  EXPECT_NE(c.reason.find("32-bit indexing limit"), std::string::npos) << c.reason;

  // Holding the workspace to a limit lowers the split count.
  c = choose_fast_config(Conv2dOp::Forward, late, 132, MathMode::Fp32);
  const FastConvConfig limited = limit_fast_workspace(c, late, std::size_t{5} * 512 * 49 * 4);
  EXPECT_TRUE(limited.applies);
  EXPECT_EQ(limited.splits, 4);
  EXPECT_EQ(limit_fast_workspace(c, late, 0).splits, 1);
  EXPECT_EQ(limit_fast_workspace(c, late, 0).workspace_bytes, 0u);
  EXPECT_FALSE(
      limit_fast_workspace(choose_fast_config(Conv2dOp::BackwardBias, res3x3, 132, MathMode::Fp32),
                           res3x3, 0)
          .applies);

  // The split count grows with the SM count, and a split never drops below
  // its minimum depth.
  EXPECT_EQ(choose_fast_splits(Conv2dOp::Forward, 200, 1000, 1000, 132), 1);
  EXPECT_EQ(choose_fast_splits(Conv2dOp::Forward, 10, 1000, 1000, 132), 16);
  EXPECT_EQ(choose_fast_splits(Conv2dOp::Forward, 100, 1000, 1000, 132), 3);
  EXPECT_EQ(choose_fast_splits(Conv2dOp::Forward, 10, 11, 1000, 132), 2);
  EXPECT_EQ(choose_fast_splits(Conv2dOp::BackwardFilter, 200, 100000, 1000, 132), 2);
  EXPECT_EQ(choose_fast_splits(Conv2dOp::BackwardFilter, 1, 100000, kMaxElements / 3, 132), 3);
  EXPECT_NE(describe(choose_fast_config(Conv2dOp::Forward, late, 132, MathMode::Tf32x3))
                .find("variant 4 (3xtf32) implicit GEMM 128x64x8, 4 stages, 16 splits"),
            std::string::npos);
}

}  // namespace
}  // namespace dlrt::detail::cuda_conv2d_fast
