// Index, tile, pipeline and split arithmetic of the Cuda engine's fast
// convolution variants (conv2d_fast.cu), and the rule that chooses among them:
//
//   3  implicit GEMM on fp32 FFMA: 128x128, 128x64 or 64x128 block tiles, 8x8
//      outputs per thread read from shared memory as float4, a 4-stage
//      cp.async pipeline, split-K, stride-aware (sub-pixel) backward data;
//      plus dedicated depthwise kernels and a two-pass bias reduction
//   4  the same implicit GEMM on TF32 tensor cores (mma.sync m16n8k8), either
//      plain TF32 or the fp32-accurate 3xTF32 split
//
// Every position a kernel computes comes from a function here, so that the
// CPU tests replay the kernels block by block, stage by stage and thread by
// thread (tests/internal/test_cuda_conv2d_fast_tiling.cpp). Plain C++
// without CUDA headers; the kernels add only the PTX (cp.async, cvt, mma).
//
// Index width: 32-bit ints throughout, under the bound of conv2d_tiling.hpp
// (kMaxElements, 2^25 below INT32_MAX); split partials and depthwise or bias
// partials are held to the same bound by the chooser. No run-time division
// happens inside a main loop: divisors fixed at launch are FastDivmod.
#pragma once

#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>

#include "kernels/cuda/conv2d_tiling.hpp"
#include "kernels/cuda/host_device.hpp"

namespace dlrt::detail::cuda_conv2d_fast {

using cuda_conv2d::ceil_div;
using cuda_conv2d::ConvDims;
using cuda_conv2d::input_coord;
using cuda_conv2d::kMaxElements;

DLRT_HOST_DEVICE inline int imin(int a, int b) { return a < b ? a : b; }
DLRT_HOST_DEVICE inline int imax(int a, int b) { return a > b ? a : b; }
// 0 <= v < n in one comparison.
DLRT_HOST_DEVICE inline bool in_range(int v, int n) {
  return static_cast<unsigned>(v) < static_cast<unsigned>(n);
}
// Rounds towards minus infinity, for numerators of either sign.
DLRT_HOST_DEVICE inline int floor_div(int a, int b) {
  const int q = a / b;
  return q * b > a ? q - 1 : q;
}

// ---------------------------------------------------------------------------
// Division by a divisor fixed at launch.
//
// Granlund & Montgomery 1994, "Division by invariant integers using
// multiplication", section 4: with l = ceil(log2 d) and
// m = floor(2^32 * (2^l - d) / d) + 1, floor(n / d) = (mulhi(n, m) + n) >> l.
// The sum needs 33 bits for arbitrary 32-bit n; here every dividend is a
// non-negative index below 2^31, and mulhi(n, m) < n, so it fits in 32.
struct FastDivmod {
  int divisor = 1;
  std::uint32_t multiplier = 1;
  int shift = 0;

  FastDivmod() = default;
  // Precondition: 1 <= d <= 2^31 - 1.
  DLRT_HOST_DEVICE explicit FastDivmod(int d) : divisor(d) {
    const std::uint64_t ud = static_cast<std::uint64_t>(d);
    while ((std::uint64_t{1} << shift) < ud) ++shift;
    multiplier = static_cast<std::uint32_t>(
        ((std::uint64_t{1} << 32) * ((std::uint64_t{1} << shift) - ud)) / ud + 1);
  }
  // Precondition: 0 <= n < 2^31.
  DLRT_HOST_DEVICE int div(int n) const {
    const std::uint32_t un = static_cast<std::uint32_t>(n);
    const std::uint32_t high =
        static_cast<std::uint32_t>((static_cast<std::uint64_t>(un) * multiplier) >> 32);
    return static_cast<int>((high + un) >> shift);
  }
  DLRT_HOST_DEVICE int mod(int n) const { return n - div(n) * divisor; }
  DLRT_HOST_DEVICE void divmod(int n, int& quotient, int& remainder) const {
    quotient = div(n);
    remainder = n - quotient * divisor;
  }
};

// A divisor that may be zero in an empty problem (a sub-pixel phase without
// taps): such a divisor is never used, but must still construct.
inline FastDivmod fast_divmod_or_one(int d) { return FastDivmod(d > 0 ? d : 1); }

// ---------------------------------------------------------------------------
// Block tiles, shared-memory stages, and the cp.async stage ring.

inline constexpr int kTileK = 8;   // depth per pipeline stage (one mma k-step)
inline constexpr int kStages = 4;  // stage buffers in the ring

enum class TileShape { k128x128, k128x64, k64x128 };

inline const char* to_string(TileShape t) {
  switch (t) {
    case TileShape::k128x128:
      return "128x128";
    case TileShape::k128x64:
      return "128x64";
    case TileShape::k64x128:
      return "64x128";
  }
  return "?";
}
inline int tile_rows(TileShape t) { return t == TileShape::k64x128 ? 64 : 128; }
inline int tile_cols(TileShape t) { return t == TileShape::k128x64 ? 64 : 128; }

// A block tile of M x N outputs. Both variants give every thread 64 outputs:
// variant 3 an 8x8 register tile, variant 4 its share of a warp's 64x32 tile
// (4 x 4 mma tiles of 16x8, 4 accumulators each per thread).
template <int M, int N>
struct Tile {
  static constexpr int kM = M, kN = N;
  static constexpr int kThreads = M * N / 64;
  static constexpr int kWarpsN = N / 32;  // variant 4: warp tiles of 64x32
  static constexpr int kWarpsM = M / 64;
  static_assert(M % 64 == 0 && N % 64 == 0, "tiles are multiples of 64");
  static_assert(kWarpsN * kWarpsM * 32 == kThreads, "one 64x32 warp tile per 32 threads");
};
using Tile128x128 = Tile<128, 128>;
using Tile128x64 = Tile<128, 64>;
using Tile64x128 = Tile<64, 128>;

// One stage holds A as [kTileK][M + Pad] and B as [kTileK][N + Pad], both
// depth-major so that a row of 4 consecutive m (or n) is one 16-byte word.
// Pad 4 (variant 3) makes the depth-fastest stores of a warp (8 depths x 4
// rows) hit 32 distinct banks; pad 8 (variant 4) does the same for the mma
// fragment reads (4 depths x 8 rows per warp: bank 8*k + m).
template <class T, int Pad>
struct StageLayout {
  static_assert(Pad % 4 == 0, "rows must stay 16-byte aligned");
  static constexpr int kAStride = T::kM + Pad;
  static constexpr int kBStride = T::kN + Pad;
  static constexpr int kAFloats = kTileK * kAStride;
  static constexpr int kBFloats = kTileK * kBStride;
  static constexpr int kStageFloats = kAFloats + kBFloats;
  static constexpr int kFloats = kStages * kStageFloats;
  static constexpr int kBytes = kFloats * 4;
  static_assert(kBytes <= 48 * 1024, "static shared memory");

  DLRT_HOST_DEVICE static int a_index(int stage, int kk, int m) {
    return stage * kStageFloats + kk * kAStride + m;
  }
  DLRT_HOST_DEVICE static int b_index(int stage, int kk, int n) {
    return stage * kStageFloats + kAFloats + kk * kBStride + n;
  }
};

// The ring of Stages buffers (the multistage scheme of NVIDIA's CUTLASS, for
// sm_80's cp.async). Each thread commits exactly one cp.async group per
// k-tile slot, empty ones included, so group g always holds k-tile g:
//
//   prologue: for t in [0, Stages-1): load tile t into stage t; commit
//   for it in [0, tiles):
//     cp.async.wait_group(Stages - 2)  // >= it+1 groups done: tile it landed
//     __syncthreads()                  // ... for every thread; and all have
//                                      // finished multiplying tile it-1
//     load tile it + Stages-1 into stage (it-1) % Stages; commit
//     multiply stage it % Stages
//
// Before the wait in iteration it a thread has committed Stages-1+it groups;
// wait_group(Stages-2) leaves at most Stages-2 pending, so groups 0..it are
// complete. The stage written in iteration it, (it+Stages-1) % Stages, is the
// one multiplied in iteration it-1, which every thread finished before the
// barrier. One barrier per k-tile.
template <int Stages>
struct Pipeline {
  static_assert(Stages >= 2, "a ring needs a stage to fill while one is read");
  static constexpr int kStages = Stages;
  static constexpr int kPrologue = Stages - 1;     // tiles in flight before the first multiply
  static constexpr int kWaitPending = Stages - 2;  // the cp.async.wait_group argument
  DLRT_HOST_DEVICE static int stage_of(int k_tile) { return k_tile % Stages; }
  DLRT_HOST_DEVICE static int tile_loaded_in_iteration(int iteration) {
    return iteration + kPrologue;
  }
};
using MainPipeline = Pipeline<kStages>;

// Which elements of a stage each thread copies. kVectorMn: 4 consecutive m
// (or n) at one depth, a single 16-byte cp.async when the four source
// offsets are consecutive and aligned; kScalarK: single elements with
// consecutive threads walking the depth, for operands contiguous in depth.
enum class LoadOrder { kVectorMn, kScalarK };

template <LoadOrder Order, int Extent, int Threads>
struct LoadMap {
  static constexpr int kWidth = Order == LoadOrder::kVectorMn ? 4 : 1;
  static constexpr int kSlots = kTileK * Extent / (kWidth * Threads);
  static_assert(kSlots >= 1 && kSlots * kWidth * Threads == kTileK * Extent,
                "the threads cover the stage exactly");
  struct Slot {
    int kk, mn;
  };
  DLRT_HOST_DEVICE static Slot slot(int tid, int i) {
    const int e = i * Threads + tid;
    if constexpr (Order == LoadOrder::kVectorMn) {
      return {e / (Extent / 4), e % (Extent / 4) * 4};
    } else {
      return {e % kTileK, e / kTileK};
    }
  }
};

// Four offsets that one 16-byte copy can move: consecutive, the first a
// multiple of 4 floats (the tensor's base being 16-byte aligned).
DLRT_HOST_DEVICE inline bool contiguous_aligned(const int (&offset)[4]) {
  return offset[0] >= 0 && (offset[0] & 3) == 0 && offset[1] == offset[0] + 1 &&
         offset[2] == offset[0] + 2 && offset[3] == offset[0] + 3;
}

// ---------------------------------------------------------------------------
// The grid: a 1-D grid of groups * row tiles * column tiles * splits blocks,
// column tiles fastest so that neighbouring blocks share their A tile.
// Split s of the depth covers k-tiles [s*per_split, min(k_tiles, (s+1)*per_split)).

struct FastGrid {
  int groups, row_tiles, col_tiles, splits;
  int k_tiles, tiles_per_split;
  int tile_m, tile_n;
};

// `splits` is clamped to [1, k_tiles], then lowered until no split is empty.
inline FastGrid make_fast_grid(int rows, int cols, int depth, int groups, int tile_m, int tile_n,
                               int splits) {
  const int k_tiles = ceil_div(depth, kTileK);
  splits = imax(1, imin(splits, k_tiles));
  const int per_split = k_tiles > 0 ? ceil_div(k_tiles, splits) : 0;
  return {groups,
          ceil_div(rows, tile_m),
          ceil_div(cols, tile_n),
          per_split > 0 ? ceil_div(k_tiles, per_split) : 1,
          k_tiles,
          per_split,
          tile_m,
          tile_n};
}

template <class Op>
FastGrid make_fast_grid(const Op& op, int tile_m, int tile_n, int splits) {
  return make_fast_grid(op.rows(), op.cols(), op.depth(), op.groups(), tile_m, tile_n, splits);
}

inline std::int64_t grid_blocks(const FastGrid& g) {
  return std::int64_t{g.groups} * g.row_tiles * g.col_tiles * g.splits;
}

// What one block computes: rows [row0, row0 + tile_m) and columns
// [col0, col0 + tile_n) of one group's C over depths [k_begin, k_end).
struct FastBlock {
  int group, row0, col0, split, k_begin, k_end;
};

// Outside the main loop: the divisions here run once per block.
DLRT_HOST_DEVICE inline FastBlock fast_block(const FastGrid& g, int depth, int block) {
  const int col_tile = block % g.col_tiles;
  int rest = block / g.col_tiles;
  const int row_tile = rest % g.row_tiles;
  rest /= g.row_tiles;
  const int group = rest % g.groups, split = rest / g.groups;
  const int k_begin = split * g.tiles_per_split * kTileK;
  const int k_end = imin(depth, k_begin + g.tiles_per_split * kTileK);
  return {group, row_tile * g.tile_m, col_tile * g.tile_n, split, k_begin, k_end};
}

DLRT_HOST_DEVICE inline int block_k_tiles(const FastBlock& b) {
  return b.k_end > b.k_begin ? ceil_div(b.k_end - b.k_begin, kTileK) : 0;
}

// ---------------------------------------------------------------------------
// The three ops as GEMMs, C[m][col] = sum_kk A[m][kk] * B[kk][col] per group
// (Chetlur et al. 2014, "cuDNN: Efficient Primitives for Deep Learning": the
// implicit GEMM, operands gathered from the tensors on the fly).
//
// Each op splits an operand offset into a part that depends only on the
// thread's fixed row or column (computed once per block: ARow, BCol) and a
// part that depends only on the depth (computed once per k-tile and slot:
// ADepth, BDepth), so the main loop adds and compares but never divides.
// An offset of -1 stands for a zero (padding, or past the edge). The output
// offset splits the same way: c_row(group, m) + c_col(col).

// Forward: M = K/g, N = N*P*Q, depth = C/g*R*S; A = w, B = im2col(x), C = y.
struct ForwardFastGemm {
  static constexpr LoadOrder kAOrder = LoadOrder::kScalarK;   // a filter row is contiguous
  static constexpr LoadOrder kBOrder = LoadOrder::kVectorMn;  // consecutive columns: q, q+1, ...
  ConvDims d{};
  FastDivmod by_rs, by_s, by_pq, by_q;

  ForwardFastGemm() = default;
  explicit ForwardFastGemm(const ConvDims& dims)
      : d(dims), by_rs(dims.R * dims.S), by_s(dims.S), by_pq(dims.P * dims.Q), by_q(dims.Q) {}

  DLRT_HOST_DEVICE int groups() const { return d.groups; }
  DLRT_HOST_DEVICE int rows() const { return d.Kg; }
  DLRT_HOST_DEVICE int cols() const { return d.N * d.P * d.Q; }
  DLRT_HOST_DEVICE int depth() const { return d.Cg * d.R * d.S; }

  struct ARow {
    int base;  // -1 past the last row
  };
  struct ADepth {
    int offset;
  };
  DLRT_HOST_DEVICE ARow a_row(int group, int m) const {
    return {m < d.Kg ? (group * d.Kg + m) * depth() : -1};
  }
  DLRT_HOST_DEVICE ADepth a_depth(int kk) const { return {kk}; }
  DLRT_HOST_DEVICE int a_offset(ARow row, ADepth k) const {
    return row.base < 0 ? -1 : row.base + k.offset;
  }

  struct BCol {
    int base, h0, w0;  // base: x offset of (n, first channel of the group); -1 past the end
  };
  struct BDepth {
    int channel, dh, dw;
  };
  // col = (n*P + p)*Q + q.
  DLRT_HOST_DEVICE BCol b_col(int group, int col) const {
    if (col >= cols()) return {-1, 0, 0};
    int n, pq, p, q;
    by_pq.divmod(col, n, pq);
    by_q.divmod(pq, p, q);
    return {(n * d.C + group * d.Cg) * d.H * d.W, p * d.stride_h - d.pad_h,
            q * d.stride_w - d.pad_w};
  }
  // kk = (c*R + r)*S + s.
  DLRT_HOST_DEVICE BDepth b_depth(int kk) const {
    int c, rs, r, s;
    by_rs.divmod(kk, c, rs);
    by_s.divmod(rs, r, s);
    return {c * d.H * d.W, r * d.dil_h, s * d.dil_w};
  }
  // h = input_coord(p, r, ...) and w = input_coord(q, s, ...), split in two.
  DLRT_HOST_DEVICE int b_offset(BCol col, BDepth k) const {
    const int h = col.h0 + k.dh, w = col.w0 + k.dw;
    if (col.base < 0 || !in_range(h, d.H) || !in_range(w, d.W)) return -1;
    return col.base + k.channel + h * d.W + w;
  }

  DLRT_HOST_DEVICE int c_row(int group, int m) const { return (group * d.Kg + m) * d.P * d.Q; }
  DLRT_HOST_DEVICE int c_col(int col) const {
    int n, pq;
    by_pq.divmod(col, n, pq);
    return n * d.K * d.P * d.Q + pq;
  }
};

// Backward filter: M = K/g, N = C/g*R*S, depth = N*P*Q; A = dy, B = im2col(x)
// transposed, C = dw. Both operands are contiguous along the depth (q).
struct BackwardFilterFastGemm {
  static constexpr LoadOrder kAOrder = LoadOrder::kScalarK;
  static constexpr LoadOrder kBOrder = LoadOrder::kScalarK;
  ConvDims d{};
  FastDivmod by_pq, by_q, by_rs, by_s;

  BackwardFilterFastGemm() = default;
  explicit BackwardFilterFastGemm(const ConvDims& dims)
      : d(dims), by_pq(dims.P * dims.Q), by_q(dims.Q), by_rs(dims.R * dims.S), by_s(dims.S) {}

  DLRT_HOST_DEVICE int groups() const { return d.groups; }
  DLRT_HOST_DEVICE int rows() const { return d.Kg; }
  DLRT_HOST_DEVICE int cols() const { return d.Cg * d.R * d.S; }
  DLRT_HOST_DEVICE int depth() const { return d.N * d.P * d.Q; }

  struct ARow {
    int base;
  };
  struct ADepth {
    int offset;
  };
  DLRT_HOST_DEVICE ARow a_row(int group, int m) const {
    return {m < d.Kg ? (group * d.Kg + m) * d.P * d.Q : -1};
  }
  // kk = (n*P + p)*Q + q.
  DLRT_HOST_DEVICE ADepth a_depth(int kk) const {
    int n, pq;
    by_pq.divmod(kk, n, pq);
    return {n * d.K * d.P * d.Q + pq};
  }
  DLRT_HOST_DEVICE int a_offset(ARow row, ADepth k) const {
    return row.base < 0 ? -1 : row.base + k.offset;
  }

  struct BCol {
    int base, dh, dw;  // dh = r*dil_h - pad_h: the tap's share of input_coord
  };
  struct BDepth {
    int image, hp, wq;  // hp = p*stride_h: the output's share
  };
  // col = (c*R + r)*S + s.
  DLRT_HOST_DEVICE BCol b_col(int group, int col) const {
    if (col >= cols()) return {-1, 0, 0};
    int c, rs, r, s;
    by_rs.divmod(col, c, rs);
    by_s.divmod(rs, r, s);
    return {(group * d.Cg + c) * d.H * d.W, r * d.dil_h - d.pad_h, s * d.dil_w - d.pad_w};
  }
  DLRT_HOST_DEVICE BDepth b_depth(int kk) const {
    int n, pq, p, q;
    by_pq.divmod(kk, n, pq);
    by_q.divmod(pq, p, q);
    return {n * d.C * d.H * d.W, p * d.stride_h, q * d.stride_w};
  }
  DLRT_HOST_DEVICE int b_offset(BCol col, BDepth k) const {
    const int h = k.hp + col.dh, w = k.wq + col.dw;
    if (col.base < 0 || !in_range(h, d.H) || !in_range(w, d.W)) return -1;
    return col.base + k.image + h * d.W + w;
  }

  DLRT_HOST_DEVICE int c_row(int group, int m) const { return (group * d.Kg + m) * cols(); }
  DLRT_HOST_DEVICE int c_col(int col) const { return col; }
};

// ---------------------------------------------------------------------------
// Sub-pixel decomposition of strided backward data (the transposed
// convolution as stride_h * stride_w stride-1 convolutions, as in Shi et al.
// 2016, "Real-Time Single Image and Video Super-Resolution Using an Efficient
// Sub-Pixel Convolutional Neural Network"). A dx coordinate i receives from
// tap t exactly when i + pad - t*dil is a non-negative multiple of the
// stride; that depends on i only through phase = (i + pad) mod stride, and
// for a fixed phase the taps that qualify are t = tap0 + j*tap_step, with
// tap_step = stride / gcd(stride, dil). Grouping dx coordinates by phase
// leaves, per phase, a dense stride-1 correlation over those taps only: the
// zero taps of the plain gather (3 in 4 at stride 2) are never visited.
struct PhaseAxis {
  int start;     // the first dx coordinate of the phase
  int count;     // dx coordinates start, start + stride, ... below the extent
  int tap0;      // the smallest tap that reaches the phase
  int taps;      // taps tap0 + j*tap_step below the filter extent (0: none)
  int tap_step;  // stride / gcd(stride, dil)
  int drop0;     // (tap0*dil - phase) / stride, exact
  int out_step;  // dil / gcd(stride, dil): the output coordinate's drop per tap step
  int out0;      // the output coordinate tap0 reads for dx = start: (start + pad)/stride - drop0
};

inline int gcd_int(int a, int b) {
  while (b != 0) {
    const int t = a % b;
    a = b;
    b = t;
  }
  return a;
}

// Phase `phase` in [0, stride) of one axis: dx extent `extent`, filter taps
// `filter`, and the convolution's stride, pad and dilation on that axis.
inline PhaseAxis make_phase_axis(int phase, int stride, int pad, int dil, int filter, int extent) {
  PhaseAxis a{};
  const int g = gcd_int(stride, dil);
  a.start = ((phase - pad) % stride + stride) % stride;
  a.count = a.start < extent ? ceil_div(extent - a.start, stride) : 0;
  a.tap_step = stride / g;
  a.out_step = dil / g;
  a.tap0 = -1;
  for (int t = 0; t < imin(filter, a.tap_step); ++t)
    if (static_cast<std::int64_t>(t) * dil % stride == phase) {
      a.tap0 = t;
      break;
    }
  if (a.tap0 < 0) {
    a.tap0 = 0, a.taps = 0, a.drop0 = 0, a.out0 = 0;
    return a;
  }
  a.taps = ceil_div(filter - a.tap0, a.tap_step);
  a.drop0 = (a.tap0 * dil - phase) / stride;
  a.out0 = (a.start + pad) / stride - a.drop0;
  return a;
}

// The largest stride per axis that backward data decomposes (one launch per
// phase: at most 16), and the depthwise kernel's phase tables.
inline constexpr int kMaxSubPixelStride = 4;

// Backward data for one phase (ph, pw): M = C/g, N = N * count_h * count_w,
// depth = K/g * taps_h * taps_w; A = w at the phase's taps, B = dy, C = the
// phase's dx pixels. With stride 1 there is one phase holding every tap.
struct BackwardDataFastGemm {
  static constexpr LoadOrder kAOrder = LoadOrder::kVectorMn;  // contiguous m for 1x1 filters
  static constexpr LoadOrder kBOrder = LoadOrder::kVectorMn;  // consecutive columns: q, q+1, ...
  ConvDims d{};
  PhaseAxis ah{}, aw{};
  FastDivmod by_taps, by_taps_w, by_pixels, by_count_w;

  BackwardDataFastGemm() = default;
  BackwardDataFastGemm(const ConvDims& dims, int phase_h, int phase_w)
      : d(dims),
        ah(make_phase_axis(phase_h, dims.stride_h, dims.pad_h, dims.dil_h, dims.R, dims.H)),
        aw(make_phase_axis(phase_w, dims.stride_w, dims.pad_w, dims.dil_w, dims.S, dims.W)),
        by_taps(fast_divmod_or_one(ah.taps * aw.taps)),
        by_taps_w(fast_divmod_or_one(aw.taps)),
        by_pixels(fast_divmod_or_one(ah.count * aw.count)),
        by_count_w(fast_divmod_or_one(aw.count)) {}

  DLRT_HOST_DEVICE int groups() const { return d.groups; }
  DLRT_HOST_DEVICE int rows() const { return d.Cg; }
  DLRT_HOST_DEVICE int cols() const { return d.N * ah.count * aw.count; }
  DLRT_HOST_DEVICE int depth() const { return d.Kg * ah.taps * aw.taps; }

  struct ARow {
    int base;
  };
  struct ADepth {
    int offset;
  };
  DLRT_HOST_DEVICE ARow a_row(int group, int m) const {
    return {m < d.Cg ? (group * d.Kg * d.Cg + m) * d.R * d.S : -1};
  }
  // kk = (k*taps_h + th)*taps_w + tw, tap r = tap0_h + th*tap_step_h.
  DLRT_HOST_DEVICE ADepth a_depth(int kk) const {
    int k, t, th, tw;
    by_taps.divmod(kk, k, t);
    by_taps_w.divmod(t, th, tw);
    const int r = ah.tap0 + th * ah.tap_step, s = aw.tap0 + tw * aw.tap_step;
    return {k * d.Cg * d.R * d.S + r * d.S + s};
  }
  DLRT_HOST_DEVICE int a_offset(ARow row, ADepth k) const {
    return row.base < 0 ? -1 : row.base + k.offset;
  }

  struct BCol {
    int base, i, j;  // (n, i-th row and j-th column of the phase)
  };
  struct BDepth {
    int channel, di, dj;  // p = i + di, q = j + dj
  };
  // col = (n*count_h + i)*count_w + j.
  DLRT_HOST_DEVICE BCol b_col(int group, int col) const {
    if (col >= cols()) return {-1, 0, 0};
    int n, ij, i, j;
    by_pixels.divmod(col, n, ij);
    by_count_w.divmod(ij, i, j);
    return {(n * d.K + group * d.Kg) * d.P * d.Q, i, j};
  }
  DLRT_HOST_DEVICE BDepth b_depth(int kk) const {
    int k, t, th, tw;
    by_taps.divmod(kk, k, t);
    by_taps_w.divmod(t, th, tw);
    return {k * d.P * d.Q, ah.out0 - th * ah.out_step, aw.out0 - tw * aw.out_step};
  }
  DLRT_HOST_DEVICE int b_offset(BCol col, BDepth k) const {
    const int p = col.i + k.di, q = col.j + k.dj;
    if (col.base < 0 || !in_range(p, d.P) || !in_range(q, d.Q)) return -1;
    return col.base + k.channel + p * d.Q + q;
  }

  DLRT_HOST_DEVICE int c_row(int group, int m) const { return (group * d.Cg + m) * d.H * d.W; }
  DLRT_HOST_DEVICE int c_col(int col) const {
    int n, ij, i, j;
    by_pixels.divmod(col, n, ij);
    by_count_w.divmod(ij, i, j);
    return n * d.C * d.H * d.W + (ah.start + i * d.stride_h) * d.W + aw.start + j * d.stride_w;
  }
};

// ---------------------------------------------------------------------------
// Stage loads, shared by both variants. A thread's rows (A) or columns (B)
// are fixed for the whole block, so their share of each offset is kept in
// registers; per k-tile only the depth's share is recomputed.
//
// Copy is the copy engine: in kernels it issues cp.async, in tests it
// records. vector(dst, src) moves 4 floats; scalar(dst, src) one float, or a
// zero when src is -1. dst indexes the shared-memory ring, src the tensor.

template <class Op, class T>
struct ATileLoader {
  using Map = LoadMap<Op::kAOrder, T::kM, T::kThreads>;
  typename Op::ARow row[Map::kSlots][Map::kWidth];

  DLRT_HOST_DEVICE DLRT_FORCE_INLINE void init(const Op& op, const FastBlock& b, int tid) {
    DLRT_UNROLL
    for (int i = 0; i < Map::kSlots; ++i) {
      DLRT_UNROLL
      for (int v = 0; v < Map::kWidth; ++v)
        row[i][v] = op.a_row(b.group, b.row0 + Map::slot(tid, i).mn + v);
    }
  }

  template <class Layout, class Copy>
  DLRT_HOST_DEVICE DLRT_FORCE_INLINE void load(const Op& op, const FastBlock& b, int k0, int stage,
                                               int tid, bool vectors, const Copy& copy) const {
    DLRT_UNROLL
    for (int i = 0; i < Map::kSlots; ++i) {
      const typename Map::Slot s = Map::slot(tid, i);
      const int kk = k0 + s.kk;
      const bool k_ok = kk < b.k_end;
      const typename Op::ADepth depth = op.a_depth(k_ok ? kk : 0);
      const int dst = Layout::a_index(stage, s.kk, s.mn);
      if constexpr (Map::kWidth == 4) {
        int offset[4];
        DLRT_UNROLL
        for (int v = 0; v < 4; ++v) offset[v] = k_ok ? op.a_offset(row[i][v], depth) : -1;
        if (vectors && contiguous_aligned(offset)) {
          copy.vector(dst, offset[0]);
        } else {
          DLRT_UNROLL
          for (int v = 0; v < 4; ++v) copy.scalar(dst + v, offset[v]);
        }
      } else {
        copy.scalar(dst, k_ok ? op.a_offset(row[i][0], depth) : -1);
      }
    }
  }
};

template <class Op, class T>
struct BTileLoader {
  using Map = LoadMap<Op::kBOrder, T::kN, T::kThreads>;
  typename Op::BCol col[Map::kSlots][Map::kWidth];

  DLRT_HOST_DEVICE DLRT_FORCE_INLINE void init(const Op& op, const FastBlock& b, int tid) {
    DLRT_UNROLL
    for (int i = 0; i < Map::kSlots; ++i) {
      DLRT_UNROLL
      for (int v = 0; v < Map::kWidth; ++v)
        col[i][v] = op.b_col(b.group, b.col0 + Map::slot(tid, i).mn + v);
    }
  }

  template <class Layout, class Copy>
  DLRT_HOST_DEVICE DLRT_FORCE_INLINE void load(const Op& op, const FastBlock& b, int k0, int stage,
                                               int tid, bool vectors, const Copy& copy) const {
    DLRT_UNROLL
    for (int i = 0; i < Map::kSlots; ++i) {
      const typename Map::Slot s = Map::slot(tid, i);
      const int kk = k0 + s.kk;
      const bool k_ok = kk < b.k_end;
      const typename Op::BDepth depth = op.b_depth(k_ok ? kk : 0);
      const int dst = Layout::b_index(stage, s.kk, s.mn);
      if constexpr (Map::kWidth == 4) {
        int offset[4];
        DLRT_UNROLL
        for (int v = 0; v < 4; ++v) offset[v] = k_ok ? op.b_offset(col[i][v], depth) : -1;
        if (vectors && contiguous_aligned(offset)) {
          copy.vector(dst, offset[0]);
        } else {
          DLRT_UNROLL
          for (int v = 0; v < 4; ++v) copy.scalar(dst + v, offset[v]);
        }
      } else {
        copy.scalar(dst, k_ok ? op.b_offset(col[i][0], depth) : -1);
      }
    }
  }
};

// ---------------------------------------------------------------------------
// Variant 3's threads: an 8x8 register tile as two 4x4 quadrants per
// dimension, rows ty*4 + {0..3} and ty*4 + M/2 + {0..3}, so that each half is
// one 16-byte shared load (LDS.128) per depth and operand: 4 loads for 64
// FFMAs. Within a warp the A loads are broadcasts and the B loads of each
// quarter-warp cover 128 contiguous bytes: no bank conflicts.
template <class T>
struct FfmaThreads {
  static constexpr int kThreadsN = T::kN / 8;
  static_assert(kThreadsN * (T::kM / 8) == T::kThreads);
  DLRT_HOST_DEVICE static int row(int tid, int i) {
    return tid / kThreadsN * 4 + i % 4 + i / 4 * (T::kM / 2);
  }
  DLRT_HOST_DEVICE static int col(int tid, int j) {
    return tid % kThreadsN * 4 + j % 4 + j / 4 * (T::kN / 2);
  }
};

// Smem: anything with load4(index, float (&dst)[8], at) that reads 4 floats
// at a 16-byte aligned index into dst[at..at+3] (a float4 load in kernels).
// The products are added in increasing depth, so every output's summation
// order is fixed by the problem alone.
template <class T, class Layout, class Smem>
DLRT_HOST_DEVICE DLRT_FORCE_INLINE void ffma_multiply_stage(const Smem& smem, int stage, int tid,
                                                            float (&acc)[8][8]) {
  using Threads = FfmaThreads<T>;
  DLRT_UNROLL
  for (int kk = 0; kk < kTileK; ++kk) {
    float a[8], b[8];
    smem.load4(Layout::a_index(stage, kk, Threads::row(tid, 0)), a, 0);
    smem.load4(Layout::a_index(stage, kk, Threads::row(tid, 4)), a, 4);
    smem.load4(Layout::b_index(stage, kk, Threads::col(tid, 0)), b, 0);
    smem.load4(Layout::b_index(stage, kk, Threads::col(tid, 4)), b, 4);
    DLRT_UNROLL
    for (int i = 0; i < 8; ++i) {
      DLRT_UNROLL
      for (int j = 0; j < 8; ++j) acc[i][j] += a[i] * b[j];
    }
  }
}

// ---------------------------------------------------------------------------
// Variant 4's threads: mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32.
// Fragment ownership (PTX ISA, "Matrix Fragments for mma.m16n8k8", .tf32),
// with g = lane / 4 and t = lane % 4:
//   A 16x8 (row, k):  a_r at (g + 8*(r%2), t + 4*(r/2)),   r in 0..3
//   B 8x8  (k, col):  b_r at (t + 4*r, g),                 r in 0..1
//   C 16x8 (row, col): c_r at (g + 8*(r/2), 2*t + r%2),    r in 0..3
// A warp owns a 64x32 tile of the block, 4 x 4 mma tiles; warps are laid
// out (M/64) x (N/32). Thread accumulators are viewed as acc[8][8] with
// acc[2*mi + r/2][2*nj + r%2] = c_r of mma tile (mi, nj), so both variants
// share one epilogue.
struct FragmentCoord {
  int row, col;
};
DLRT_HOST_DEVICE inline FragmentCoord mma_a_coord(int lane, int r) {
  return {lane / 4 + 8 * (r % 2), lane % 4 + 4 * (r / 2)};  // (row, k)
}
DLRT_HOST_DEVICE inline FragmentCoord mma_b_coord(int lane, int r) {
  return {lane % 4 + 4 * r, lane / 4};  // (k, col)
}
DLRT_HOST_DEVICE inline FragmentCoord mma_c_coord(int lane, int r) {
  return {lane / 4 + 8 * (r / 2), 2 * (lane % 4) + r % 2};  // (row, col)
}

template <class T>
struct MmaThreads {
  DLRT_HOST_DEVICE static int warp_row0(int tid) { return tid / 32 / T::kWarpsN * 64; }
  DLRT_HOST_DEVICE static int warp_col0(int tid) { return tid / 32 % T::kWarpsN * 32; }
  // The block-tile row and column of acc[i][j].
  DLRT_HOST_DEVICE static int row(int tid, int i) {
    return warp_row0(tid) + i / 2 * 16 + mma_c_coord(tid % 32, 2 * (i % 2)).row;
  }
  DLRT_HOST_DEVICE static int col(int tid, int j) {
    return warp_col0(tid) + j / 2 * 8 + mma_c_coord(tid % 32, j % 2).col;
  }
  // Shared-memory indices of fragment register r of mma tile mi (A) or nj (B).
  template <class Layout>
  DLRT_HOST_DEVICE static int a_index(int stage, int tid, int mi, int r) {
    const FragmentCoord c = mma_a_coord(tid % 32, r);
    return Layout::a_index(stage, c.col, warp_row0(tid) + mi * 16 + c.row);
  }
  template <class Layout>
  DLRT_HOST_DEVICE static int b_index(int stage, int tid, int nj, int r) {
    const FragmentCoord c = mma_b_coord(tid % 32, r);
    return Layout::b_index(stage, c.row, warp_col0(tid) + nj * 8 + c.col);
  }
};

// fp32 -> TF32 as cvt.rna.tf32.f32 rounds: to nearest, ties away from zero,
// keeping 10 mantissa bits (the 13 low bits cleared). Host only: the kernels
// use the instruction; tests emulate it with this.
inline float round_to_tf32(float x) {
  std::uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  if ((bits & 0x7f800000u) != 0x7f800000u) bits = (bits + 0x1000u) & 0xffffe000u;
  float out;
  std::memcpy(&out, &bits, sizeof out);
  return out;
}

// ---------------------------------------------------------------------------
// The epilogue. With one split the block writes C (plus the bias of row m,
// forward only); with several it writes its partial sums to the workspace,
// laid out [split][group][m][col], which split_reduce folds in split order.

template <class Op>
DLRT_HOST_DEVICE int partial_row(const Op& op, const FastBlock& b, int m) {
  return ((b.split * op.groups() + b.group) * op.rows() + m) * op.cols();
}

template <class Op, class Threads, class Dst>
DLRT_HOST_DEVICE DLRT_FORCE_INLINE void store_block(const Op& op, const FastBlock& b, int tid,
                                                    int splits, const float* bias, Dst dst,
                                                    const float (&acc)[8][8]) {
  int col_part[8];
  bool col_ok[8];
  DLRT_UNROLL
  for (int j = 0; j < 8; ++j) {
    const int col = b.col0 + Threads::col(tid, j);
    col_ok[j] = col < op.cols();
    col_part[j] = !col_ok[j] ? 0 : (splits == 1 ? op.c_col(col) : col);
  }
  DLRT_UNROLL
  for (int i = 0; i < 8; ++i) {
    const int m = b.row0 + Threads::row(tid, i);
    if (m >= op.rows()) continue;
    const int row_part = splits == 1 ? op.c_row(b.group, m) : partial_row(op, b, m);
    const float add = splits == 1 && bias != nullptr ? bias[b.group * op.rows() + m] : 0.0f;
    DLRT_UNROLL
    for (int j = 0; j < 8; ++j)
      if (col_ok[j]) dst[row_part + col_part[j]] = acc[i][j] + add;
  }
}

// Element i of one split's slice (groups * rows * cols): where its sum goes.
template <class Op>
struct SplitReduce {
  Op op;
  int splits = 1, slice = 0;
  FastDivmod by_group, by_cols;

  SplitReduce() = default;
  SplitReduce(const Op& o, int split_count)
      : op(o),
        splits(split_count),
        slice(o.groups() * o.rows() * o.cols()),
        by_group(fast_divmod_or_one(o.rows() * o.cols())),
        by_cols(fast_divmod_or_one(o.cols())) {}

  struct Target {
    int offset, bias_index;
  };
  DLRT_HOST_DEVICE Target target(int i) const {
    int group, rest, m, col;
    by_group.divmod(i, group, rest);
    by_cols.divmod(rest, m, col);
    return {op.c_row(group, m) + op.c_col(col), group * op.rows() + m};
  }
};

// ---------------------------------------------------------------------------
// Split-K. Forward and backward data split the depth only when the grid
// would leave SMs idle (fewer blocks than SMs); backward filter, whose depth
// N*P*Q is long and whose M x N is often a few tiles, whenever it has fewer
// blocks than two per SM. Partials are summed afterwards in split order, no
// atomics. The count depends on the problem and the SM count, so results are
// bitwise reproducible run to run on one device (and may differ in the last
// bits between devices of different SM counts).
inline constexpr int kSplitMinTilesData = 4;    // forward, backward data: k-tiles per split
inline constexpr int kSplitMaxData = 16;        // ... and splits at most
inline constexpr int kSplitMinTilesFilter = 8;  // backward filter
inline constexpr int kSplitMaxFilter = 64;

inline int choose_fast_splits(Conv2dOp op, std::int64_t base_blocks, int k_tiles,
                              std::int64_t slice, int sm_count) {
  sm_count = imax(1, sm_count);
  const bool filter = op == Conv2dOp::BackwardFilter;
  const std::int64_t threshold = filter ? 2 * std::int64_t{sm_count} : sm_count;
  if (base_blocks <= 0 || base_blocks >= threshold) return 1;
  std::int64_t want = (2 * std::int64_t{sm_count} + base_blocks - 1) / base_blocks;
  const std::int64_t by_depth = k_tiles / (filter ? kSplitMinTilesFilter : kSplitMinTilesData);
  const std::int64_t by_index = slice > 0 ? kMaxElements / slice : 1;
  const std::int64_t cap = filter ? kSplitMaxFilter : kSplitMaxData;
  for (std::int64_t bound : {by_depth, by_index, cap})
    if (want > bound) want = bound;
  return want < 2 ? 1 : static_cast<int>(want);
}

// ---------------------------------------------------------------------------
// Depthwise (C/g == 1, fewer than kMinGemmRows filters per group): the
// definition evaluated directly, one plane tile per block, its inputs staged
// once in a shared-memory patch. A GEMM would have K/g rows, so a 64-row tile
// would idle at least 3/4 of its threads.

inline constexpr int kDepthwiseThreads = 256;
inline constexpr int kDepthwiseTileCols = 32;  // a warp per row
inline constexpr int kDepthwiseThreadRows = kDepthwiseThreads / kDepthwiseTileCols;  // 8
inline constexpr int kDepthwiseMaxSmemFloats = 12288;  // 48 KiB: no opt-in needed
inline constexpr int kMinGemmRows = cuda_conv2d::kMinGemmRows;

// Forward: a block computes a tile of (8 * rows_per_thread) x 32 outputs of
// one input channel's planes (all K/g filters of it, one after another),
// from a patch of x that covers the tile's receptive field, zero-filled
// where it hangs over the padding.
struct DepthwiseForward {
  ConvDims d{};
  int tile_rows = 0, tiles_h = 0, tiles_w = 0;
  int patch_rows = 0, patch_cols = 0;
  FastDivmod by_patch_cols;

  DepthwiseForward() = default;
  DepthwiseForward(const ConvDims& dims, int rows_per_thread)
      : d(dims),
        tile_rows(kDepthwiseThreadRows * rows_per_thread),
        tiles_h(ceil_div(dims.P, tile_rows)),
        tiles_w(ceil_div(dims.Q, kDepthwiseTileCols)),
        patch_rows((tile_rows - 1) * dims.stride_h + (dims.R - 1) * dims.dil_h + 1),
        patch_cols((kDepthwiseTileCols - 1) * dims.stride_w + (dims.S - 1) * dims.dil_w + 1),
        by_patch_cols(patch_cols) {}

  std::int64_t blocks() const { return std::int64_t{d.N} * d.C * tiles_h * tiles_w; }
  int smem_floats() const { return patch_rows * patch_cols + d.R * d.S; }

  struct Block {
    int n, c, p0, q0;
  };
  DLRT_HOST_DEVICE Block block(int b) const {
    const int tw = b % tiles_w;
    int rest = b / tiles_w;
    const int th = rest % tiles_h;
    rest /= tiles_h;
    return {rest / d.C, rest % d.C, th * tile_rows, tw * kDepthwiseTileCols};
  }
  // x offset of patch element e (row-major, patch_cols wide), or -1 (padding).
  DLRT_HOST_DEVICE int patch_source(const Block& b, int e) const {
    int pr, pc;
    by_patch_cols.divmod(e, pr, pc);
    const int h = b.p0 * d.stride_h - d.pad_h + pr, w = b.q0 * d.stride_w - d.pad_w + pc;
    if (!in_range(h, d.H) || !in_range(w, d.W)) return -1;
    return ((b.n * d.C + b.c) * d.H + h) * d.W + w;
  }
  // The patch element that output (p0 + ly, q0 + lx) reads through tap (r, s).
  DLRT_HOST_DEVICE int patch_index(int ly, int lx, int r, int s) const {
    return (ly * d.stride_h + r * d.dil_h) * patch_cols + lx * d.stride_w + s * d.dil_w;
  }
  DLRT_HOST_DEVICE int filter_index(int k, int r, int s) const { return (k * d.R + r) * d.S + s; }
  DLRT_HOST_DEVICE int y_index(const Block& b, int k, int ly, int lx) const {
    return ((b.n * d.K + k) * d.P + b.p0 + ly) * d.Q + b.q0 + lx;
  }
};

// Backward data: a block computes a tile of (8 * rows_per_thread) x 32 dx
// pixels of one channel, summing over its K/g filters. For each it loads the
// patch of dy that the tile's pixels read, and each pixel visits only the
// taps of its sub-pixel phase (see PhaseAxis): no tap off the stride grid.
struct DepthwiseBackwardData {
  ConvDims d{};
  int tile_rows = 0, tiles_h = 0, tiles_w = 0;
  int patch_rows = 0, patch_cols = 0;
  FastDivmod by_patch_cols, by_stride_h, by_stride_w;
  PhaseAxis phase_h[kMaxSubPixelStride]{}, phase_w[kMaxSubPixelStride]{};

  DepthwiseBackwardData() = default;
  // Precondition: stride_h, stride_w <= kMaxSubPixelStride.
  DepthwiseBackwardData(const ConvDims& dims, int rows_per_thread)
      : d(dims),
        tile_rows(kDepthwiseThreadRows * rows_per_thread),
        tiles_h(ceil_div(dims.H, tile_rows)),
        tiles_w(ceil_div(dims.W, kDepthwiseTileCols)),
        patch_rows((tile_rows - 1 + (dims.R - 1) * dims.dil_h) / dims.stride_h + 2),
        patch_cols((kDepthwiseTileCols - 1 + (dims.S - 1) * dims.dil_w) / dims.stride_w + 2),
        by_patch_cols(patch_cols),
        by_stride_h(dims.stride_h),
        by_stride_w(dims.stride_w) {
    for (int ph = 0; ph < dims.stride_h; ++ph)
      phase_h[ph] = make_phase_axis(ph, dims.stride_h, dims.pad_h, dims.dil_h, dims.R, dims.H);
    for (int pw = 0; pw < dims.stride_w; ++pw)
      phase_w[pw] = make_phase_axis(pw, dims.stride_w, dims.pad_w, dims.dil_w, dims.S, dims.W);
  }

  std::int64_t blocks() const { return std::int64_t{d.N} * d.C * tiles_h * tiles_w; }
  int smem_floats() const { return patch_rows * patch_cols + d.R * d.S; }

  struct Block {
    int n, c, h0, w0;
    int p_lo, q_lo;  // the patch's first dy row and column (may be negative)
  };
  DLRT_HOST_DEVICE Block block(int b) const {
    const int tw = b % tiles_w;
    int rest = b / tiles_w;
    const int th = rest % tiles_h;
    rest /= tiles_h;
    const int h0 = th * tile_rows, w0 = tw * kDepthwiseTileCols;
    return {rest / d.C,
            rest % d.C,
            h0,
            w0,
            floor_div(h0 + d.pad_h - (d.R - 1) * d.dil_h, d.stride_h),
            floor_div(w0 + d.pad_w - (d.S - 1) * d.dil_w, d.stride_w)};
  }
  // dy offset (plane of filter k) of patch element e, or -1 (off the edge).
  DLRT_HOST_DEVICE int patch_source(const Block& b, int k, int e) const {
    int pr, pc;
    by_patch_cols.divmod(e, pr, pc);
    const int p = b.p_lo + pr, q = b.q_lo + pc;
    if (!in_range(p, d.P) || !in_range(q, d.Q)) return -1;
    return ((b.n * d.K + k) * d.P + p) * d.Q + q;
  }

  // The taps of one dx coordinate on one axis: tap = tap0 + t*tap_step reads
  // patch row (or column) first - t*step, for t in [0, taps).
  struct AxisTaps {
    int tap0, tap_step, taps, first, step;
  };
  DLRT_HOST_DEVICE static AxisTaps axis_taps(const FastDivmod& by_stride, const PhaseAxis* phases,
                                             int coord, int pad, int patch_origin) {
    int quotient, phase;
    by_stride.divmod(coord + pad, quotient, phase);
    const PhaseAxis& a = phases[phase];
    return {a.tap0, a.tap_step, a.taps, quotient - a.drop0 - patch_origin, a.out_step};
  }
  DLRT_HOST_DEVICE AxisTaps row_taps(const Block& b, int ly) const {
    return axis_taps(by_stride_h, phase_h, b.h0 + ly, d.pad_h, b.p_lo);
  }
  DLRT_HOST_DEVICE AxisTaps col_taps(const Block& b, int lx) const {
    return axis_taps(by_stride_w, phase_w, b.w0 + lx, d.pad_w, b.q_lo);
  }
  DLRT_HOST_DEVICE int patch_index(int pr, int pc) const { return pr * patch_cols + pc; }
  DLRT_HOST_DEVICE int filter_index(int k, int r, int s) const { return (k * d.R + r) * d.S + s; }
  DLRT_HOST_DEVICE int dx_index(const Block& b, int ly, int lx) const {
    return ((b.n * d.C + b.c) * d.H + b.h0 + ly) * d.W + b.w0 + lx;
  }
};

// Backward filter: dw[k][0][r][s] sums x * dy over N*P*Q positions. A block
// takes one filter k and a chunk of positions; for each tap its threads sum
// strided positions, warps reduce by shuffles, and the 8 warp sums are added
// in warp order. Chunks of one filter are summed afterwards in chunk order.
inline constexpr int kDepthwiseFilterChunk = 4096;  // positions per block
inline constexpr int kDepthwiseWarps = kDepthwiseThreads / 32;

struct DepthwiseBackwardFilter {
  ConvDims d{};
  int positions = 0, chunks = 0;
  FastDivmod by_pq, by_q;

  DepthwiseBackwardFilter() = default;
  explicit DepthwiseBackwardFilter(const ConvDims& dims)
      : d(dims),
        positions(dims.N * dims.P * dims.Q),
        chunks(ceil_div(positions, kDepthwiseFilterChunk)),
        by_pq(dims.P * dims.Q),
        by_q(dims.Q) {}

  DLRT_HOST_DEVICE int taps() const { return d.R * d.S; }
  std::int64_t blocks() const { return std::int64_t{d.K} * chunks; }
  int smem_floats() const { return taps() * kDepthwiseWarps; }
  DLRT_HOST_DEVICE int slice() const { return d.K * d.R * d.S; }  // dw's elements

  struct Block {
    int k, chunk, begin, end;
  };
  DLRT_HOST_DEVICE Block block(int b) const {
    const int k = b % d.K, chunk = b / d.K;
    const int begin = chunk * kDepthwiseFilterChunk;
    return {k, chunk, begin, imin(positions, begin + kDepthwiseFilterChunk)};
  }
  struct Position {
    int dy, x_plane, hp, wq;  // dy offset; x offset of the plane; p*stride_h - pad_h; ...
  };
  DLRT_HOST_DEVICE Position position(int k, int i) const {
    int n, pq, p, q;
    by_pq.divmod(i, n, pq);
    by_q.divmod(pq, p, q);
    return {(n * d.K + k) * d.P * d.Q + pq, (n * d.C + k / d.Kg) * d.H * d.W,
            p * d.stride_h - d.pad_h, q * d.stride_w - d.pad_w};
  }
  // x offset that position reads through tap (r, s), or -1 (padding).
  DLRT_HOST_DEVICE int x_offset(const Position& at, int r, int s) const {
    const int h = at.hp + r * d.dil_h, w = at.wq + s * d.dil_w;
    if (!in_range(h, d.H) || !in_range(w, d.W)) return -1;
    return at.x_plane + h * d.W + w;
  }
  // The partial of (chunk, k, tap), or dw itself with one chunk.
  DLRT_HOST_DEVICE int partial_index(const Block& b, int tap) const {
    return b.chunk * slice() + b.k * taps() + tap;
  }
};

// ---------------------------------------------------------------------------
// Backward bias in two passes: blocks of (channel, chunk of kBiasChunk
// elements) so that a small K still fills the GPU, each a strided per-thread
// sum and a fixed tree; then one thread per channel adds the chunks in
// order. The chunking depends only on the problem.
inline constexpr int kBiasThreads = 256;
inline constexpr int kBiasChunk = 4096;

struct BiasReduction {
  int N = 1, K = 1, PQ = 1;
  int elements = 0, chunks = 0;  // per channel
  FastDivmod by_pq;

  BiasReduction() = default;
  BiasReduction(int n, int k, int pq)
      : N(n), K(k), PQ(pq), elements(n * pq), chunks(ceil_div(n * pq, kBiasChunk)), by_pq(pq) {}

  std::int64_t blocks() const { return std::int64_t{K} * chunks; }
  struct Block {
    int k, chunk, begin, end;
  };
  DLRT_HOST_DEVICE Block block(int b) const {
    const int k = b % K, chunk = b / K;
    const int begin = chunk * kBiasChunk;
    return {k, chunk, begin, imin(elements, begin + kBiasChunk)};
  }
  // dy offset of channel k's i-th element (in n, then p*Q + q order).
  DLRT_HOST_DEVICE int dy_offset(int k, int i) const {
    int n, pq;
    by_pq.divmod(i, n, pq);
    return (n * K + k) * PQ + pq;
  }
  DLRT_HOST_DEVICE int partial_index(const Block& b) const { return b.chunk * K + b.k; }
};

// ---------------------------------------------------------------------------
// The chooser.

enum class MathMode {
  Fp32,    // variant 3: fp32 FFMA
  Tf32,    // variant 4: TF32 tensor cores (only when the caller allows TF32)
  Tf32x3,  // variant 4: 3xTF32 big/small split, about fp32 accuracy
};

inline const char* to_string(MathMode m) {
  switch (m) {
    case MathMode::Fp32:
      return "fp32";
    case MathMode::Tf32:
      return "tf32";
    case MathMode::Tf32x3:
      return "3xtf32";
  }
  return "?";
}

enum class FastKernel { None, ImplicitGemm, Depthwise, BiasReduction };

struct FastConvConfig {
  Conv2dOp op = Conv2dOp::Forward;
  MathMode mode = MathMode::Fp32;
  bool applies = false;
  std::string reason;  // why not, when !applies
  FastKernel kernel = FastKernel::None;
  // 3 (FFMA) or 4 (tensor cores) for the implicit GEMM; depthwise kernels and
  // the bias reduction are fp32 whatever the mode, and count as variant 3.
  int variant = 0;
  TileShape tile = TileShape::k128x128;
  int tile_m = 0, tile_n = 0, tile_k = kTileK, stages = kStages, threads = 0;
  int splits = 1;           // split-K count (backward data: the largest over its phases)
  int sm_count = 1;         // what the split rule saw
  int phases = 1;           // backward data: stride_h * stride_w sub-pixel phases, one launch each
  int rows_per_thread = 0;  // depthwise forward and backward data
  int chunks = 1;           // depthwise backward filter and bias: partial sums per channel
  std::size_t workspace_bytes = 0;
};

// Element counts as the engine's index limit sees them (int64, no overflow).
inline std::string fast_index_limit_reason(Conv2dOp op, const ConvDims& d) {
  const std::int64_t x = std::int64_t{d.N} * d.C * d.H * d.W;
  const std::int64_t w = std::int64_t{d.K} * d.Cg * d.R * d.S;
  const std::int64_t y = std::int64_t{d.N} * d.K * d.P * d.Q;
  auto check = [](const char* name, std::int64_t n) -> std::string {
    if (n <= kMaxElements) return {};
    return std::string(name) + " has " + std::to_string(n) +
           " elements, more than the 32-bit indexing limit " + std::to_string(kMaxElements);
  };
  if (op == Conv2dOp::BackwardBias) return check("dy", y);
  std::string why = check(op == Conv2dOp::Forward ? "y" : "dy", y);
  if (why.empty()) why = check(op == Conv2dOp::BackwardData ? "dx" : "x", x);
  if (why.empty()) why = check(op == Conv2dOp::BackwardFilter ? "dw" : "w", w);
  return why;
}

// The tile for a GEMM of `rows` x `cols`: a narrow M takes 64x128, a narrow
// N 128x64, anything else 128x128.
inline TileShape choose_tile(int rows, int cols) {
  if (rows <= 64) return TileShape::k64x128;
  if (cols <= 64) return TileShape::k128x64;
  return TileShape::k128x128;
}

// Backward data's split count for one phase: the split rule on that phase,
// never above config.splits.
inline int phase_splits(const FastConvConfig& c, const BackwardDataFastGemm& phase) {
  const FastGrid base = make_fast_grid(phase, c.tile_m, c.tile_n, 1);
  const std::int64_t slice = std::int64_t{phase.groups()} * phase.rows() * phase.cols();
  return imin(c.splits, choose_fast_splits(Conv2dOp::BackwardData, grid_blocks(base), base.k_tiles,
                                           slice, c.sm_count));
}

template <class Op>
std::size_t gemm_partial_bytes(const Op& op, const FastConvConfig& c, int splits) {
  const FastGrid grid = make_fast_grid(op, c.tile_m, c.tile_n, splits);
  if (grid.splits <= 1) return 0;
  return static_cast<std::size_t>(grid.splits) * static_cast<std::size_t>(op.groups()) *
         static_cast<std::size_t>(op.rows()) * static_cast<std::size_t>(op.cols()) * 4;
}

// The workspace a launcher needs, in bytes (0: none). The caller allocates
// it; launchers never allocate. Backward data's phases run one after another
// on the stream and reuse it, so it is the largest phase's.
inline std::size_t fast_workspace_bytes(Conv2dOp op, const ConvDims& d, const FastConvConfig& c) {
  if (!c.applies) return 0;
  if (c.kernel == FastKernel::BiasReduction) {
    const BiasReduction bias(d.N, d.K, d.P * d.Q);
    return bias.chunks > 1 ? static_cast<std::size_t>(bias.chunks) * d.K * 4 : 0;
  }
  if (c.kernel == FastKernel::Depthwise) {
    if (op != Conv2dOp::BackwardFilter) return 0;
    const DepthwiseBackwardFilter f(d);
    return f.chunks > 1 ? static_cast<std::size_t>(f.chunks) * f.slice() * 4 : 0;
  }
  if (op == Conv2dOp::Forward) return gemm_partial_bytes(ForwardFastGemm(d), c, c.splits);
  if (op == Conv2dOp::BackwardFilter)
    return gemm_partial_bytes(BackwardFilterFastGemm(d), c, c.splits);
  std::size_t most = 0;
  for (int ph = 0; ph < d.stride_h; ++ph)
    for (int pw = 0; pw < d.stride_w; ++pw) {
      const BackwardDataFastGemm phase(d, ph, pw);
      const std::size_t bytes = gemm_partial_bytes(phase, c, phase_splits(c, phase));
      if (bytes > most) most = bytes;
    }
  return most;
}

// The depthwise rows per thread (tile rows / 8): 4, 2 or 1, the fewest that
// cover the plane's height, lowered until the patch fits; 0 when none fits.
template <class Depthwise>
int depthwise_rows_per_thread(const ConvDims& d, int plane_rows) {
  int rows = plane_rows > 16 ? 4 : plane_rows > 8 ? 2 : 1;
  for (; rows >= 1; rows /= 2)
    if (Depthwise(d, rows).smem_floats() <= kDepthwiseMaxSmemFloats) return rows;
  return 0;
}

// The variant chooser. sm_count steers split-K; mode picks the math of the
// implicit GEMM (the caller passes Tf32 only where it allows TF32).
//
//  op              | problem                                   | kernel
//  ----------------+-------------------------------------------+------------------------------------
//  any             | a tensor past kMaxElements                | declined (32-bit indexing)
//  backward bias   | any                                       | two-pass reduction, ceil(N*P*Q /
//                  |                                           |   4096) chunks per channel
//  forward         | C/g == 1, K/g < 16 (depthwise)            | depthwise, tile (8*rpt) x 32
//  outputs,
//                  |                                           |   x patch <= 48 KiB, else declined
//  backward data   | C/g == 1, K/g < 16                        | depthwise with sub-pixel taps if
//                  |                                           |   stride <= 4 and the dy patch
//                  fits
//  backward filter | C/g == 1, K/g < 16                        | depthwise, chunks of 4096
//  positions
//                  |                                           |   (R*S <= 1536)
//  fwd, bwd filter | K/g < 16 (GEMM M)                         | declined: variant 1 fills the GPU
//  backward data   | C/g < 16 (GEMM M)                         | declined: likewise
//  backward data   | stride_h or stride_w > 4                  | declined: > 16 sub-pixel phases
//  fwd, bwd data,  | M <= 64                                   | tile 64x128
//  bwd filter      | M > 64, N <= 64                           | tile 128x64
//                  | otherwise                                 | tile 128x128
//                  | mode Fp32 / Tf32 / Tf32x3                 | variant 3 / 4 / 4 (3xTF32)
//  fwd, bwd data   | blocks < SMs                              | split-K: ceil(2*SMs / blocks),
//                  |                                           |   >= 4 k-tiles per split, <= 16
//  bwd filter      | blocks < 2*SMs                            | split-K: ceil(2*SMs / blocks),
//                  |                                           |   >= 8 k-tiles per split, <= 64
//
// M is K/g for forward and backward filter, C/g for backward data; N is
// N*P*Q, N*ceil(H/stride_h)*ceil(W/stride_w) and C/g*R*S respectively.
// Stages are 4, tile depth 8; split partials stay under kMaxElements.
inline FastConvConfig choose_fast_config(Conv2dOp op, const ConvDims& d, int sm_count,
                                         MathMode mode) {
  FastConvConfig c;
  c.op = op;
  c.mode = mode;
  c.sm_count = imax(1, sm_count);
  auto decline = [&](std::string why) {
    c.applies = false;
    c.kernel = FastKernel::None;
    c.variant = 0;
    c.reason = std::move(why);
    return c;
  };
  if (std::string why = fast_index_limit_reason(op, d); !why.empty()) return decline(why);

  if (op == Conv2dOp::BackwardBias) {
    const BiasReduction bias(d.N, d.K, d.P * d.Q);
    if (bias.blocks() > INT_MAX) return decline("bias reduction grid too large");
    c.applies = true, c.kernel = FastKernel::BiasReduction, c.variant = 3;
    c.threads = kBiasThreads, c.chunks = bias.chunks;
    c.workspace_bytes = fast_workspace_bytes(op, d, c);
    return c;
  }

  if (d.Cg == 1 && d.Kg < kMinGemmRows) {
    c.kernel = FastKernel::Depthwise, c.variant = 3, c.threads = kDepthwiseThreads;
    if (op == Conv2dOp::Forward) {
      c.rows_per_thread = depthwise_rows_per_thread<DepthwiseForward>(d, d.P);
      if (c.rows_per_thread == 0)
        return decline("depthwise forward: the input patch of an 8x32 output tile exceeds " +
                       std::to_string(kDepthwiseMaxSmemFloats * 4) + " bytes of shared memory");
      if (DepthwiseForward(d, c.rows_per_thread).blocks() > INT_MAX)
        return decline("depthwise forward grid too large");
    } else if (op == Conv2dOp::BackwardData) {
      if (d.stride_h > kMaxSubPixelStride || d.stride_w > kMaxSubPixelStride)
        return decline("depthwise backward data: stride " + std::to_string(d.stride_h) + "x" +
                       std::to_string(d.stride_w) + " exceeds the sub-pixel tables' " +
                       std::to_string(kMaxSubPixelStride));
      c.rows_per_thread = depthwise_rows_per_thread<DepthwiseBackwardData>(d, d.H);
      if (c.rows_per_thread == 0)
        return decline("depthwise backward data: the dy patch of an 8x32 dx tile exceeds " +
                       std::to_string(kDepthwiseMaxSmemFloats * 4) + " bytes of shared memory");
      if (DepthwiseBackwardData(d, c.rows_per_thread).blocks() > INT_MAX)
        return decline("depthwise backward data grid too large");
    } else {
      const DepthwiseBackwardFilter f(d);
      if (f.smem_floats() > kDepthwiseMaxSmemFloats)
        return decline("depthwise backward filter: " + std::to_string(f.taps()) +
                       " taps exceed the per-warp shared sums");
      if (f.blocks() > INT_MAX || std::int64_t{f.chunks} * f.slice() > kMaxElements)
        return decline("depthwise backward filter: too many partial sums");
      c.chunks = f.chunks;
    }
    c.applies = true;
    c.workspace_bytes = fast_workspace_bytes(op, d, c);
    return c;
  }

  const int rows = op == Conv2dOp::BackwardData ? d.Cg : d.Kg;
  if (rows < kMinGemmRows)
    return decline(std::string("GEMM has ") + std::to_string(rows) + " rows per group (" +
                   (op == Conv2dOp::BackwardData ? "C/g" : "K/g") + "), fewer than " +
                   std::to_string(kMinGemmRows) + ": a 64-row tile would idle most threads");
  if (op == Conv2dOp::BackwardData &&
      (d.stride_h > kMaxSubPixelStride || d.stride_w > kMaxSubPixelStride))
    return decline("backward data: stride " + std::to_string(d.stride_h) + "x" +
                   std::to_string(d.stride_w) + " would need more than " +
                   std::to_string(kMaxSubPixelStride * kMaxSubPixelStride) + " sub-pixel phases");

  int cols = 0;
  if (op == Conv2dOp::Forward) cols = ForwardFastGemm(d).cols();
  if (op == Conv2dOp::BackwardFilter) cols = BackwardFilterFastGemm(d).cols();
  if (op == Conv2dOp::BackwardData)
    cols = d.N * ceil_div(d.H, d.stride_h) * ceil_div(d.W, d.stride_w);
  c.tile = choose_tile(rows, cols);
  c.tile_m = tile_rows(c.tile), c.tile_n = tile_cols(c.tile);
  c.threads = c.tile_m * c.tile_n / 64;
  c.kernel = FastKernel::ImplicitGemm;
  c.variant = mode == MathMode::Fp32 ? 3 : 4;

  auto splits_for = [&](const auto& gemm) {
    const FastGrid base = make_fast_grid(gemm, c.tile_m, c.tile_n, 1);
    const std::int64_t slice = std::int64_t{gemm.groups()} * gemm.rows() * gemm.cols();
    return choose_fast_splits(op, grid_blocks(base), base.k_tiles, slice, c.sm_count);
  };
  std::int64_t blocks = 0;
  if (op == Conv2dOp::Forward) {
    const ForwardFastGemm gemm(d);
    c.splits = splits_for(gemm);
    blocks = grid_blocks(make_fast_grid(gemm, c.tile_m, c.tile_n, c.splits));
  } else if (op == Conv2dOp::BackwardFilter) {
    const BackwardFilterFastGemm gemm(d);
    c.splits = splits_for(gemm);
    blocks = grid_blocks(make_fast_grid(gemm, c.tile_m, c.tile_n, c.splits));
  } else {
    c.phases = d.stride_h * d.stride_w;
    c.splits = 1;
    for (int ph = 0; ph < d.stride_h; ++ph)
      for (int pw = 0; pw < d.stride_w; ++pw) {
        const BackwardDataFastGemm phase(d, ph, pw);
        c.splits = imax(c.splits, splits_for(phase));
      }
    for (int ph = 0; ph < d.stride_h; ++ph)
      for (int pw = 0; pw < d.stride_w; ++pw) {
        const BackwardDataFastGemm phase(d, ph, pw);
        const std::int64_t b =
            grid_blocks(make_fast_grid(phase, c.tile_m, c.tile_n, phase_splits(c, phase)));
        if (b > blocks) blocks = b;
      }
  }
  if (blocks > INT_MAX) return decline("implicit GEMM grid exceeds 2^31 - 1 blocks");
  c.applies = true;
  c.workspace_bytes = fast_workspace_bytes(op, d, c);
  return c;
}

// The same choice with its split partials held to `limit` bytes: the split
// count is lowered until the workspace fits (1 needs none). Depthwise and
// bias chunk counts are fixed by the problem, so those are declined instead.
inline FastConvConfig limit_fast_workspace(FastConvConfig c, const ConvDims& d, std::size_t limit) {
  if (!c.applies || c.workspace_bytes <= limit) return c;
  if (c.kernel == FastKernel::ImplicitGemm) {
    while (c.splits > 1 && fast_workspace_bytes(c.op, d, c) > limit) c.splits = c.splits / 2;
    c.workspace_bytes = fast_workspace_bytes(c.op, d, c);
    return c;
  }
  c.applies = false;
  c.reason = "needs " + std::to_string(c.workspace_bytes) + " bytes of workspace, more than " +
             std::to_string(limit);
  return c;
}

// One line for logs: "variant 4 (3xtf32) implicit GEMM 128x64x8, 4 stages, 3 splits".
inline std::string describe(const FastConvConfig& c) {
  if (!c.applies) return "declined: " + c.reason;
  if (c.kernel == FastKernel::BiasReduction)
    return "bias reduction, " + std::to_string(c.chunks) + " chunks per channel";
  if (c.kernel == FastKernel::Depthwise)
    return "depthwise (fp32), " +
           (c.op == Conv2dOp::BackwardFilter
                ? std::to_string(c.chunks) + " chunks per filter"
                : std::to_string(kDepthwiseThreadRows * c.rows_per_thread) + "x32 tiles");
  return "variant " + std::to_string(c.variant) + " (" + to_string(c.mode) + ") implicit GEMM " +
         to_string(c.tile) + "x" + std::to_string(c.tile_k) + ", " + std::to_string(c.stages) +
         " stages, " + std::to_string(c.splits) + " splits" +
         (c.phases > 1 ? ", " + std::to_string(c.phases) + " sub-pixel phases" : "");
}

}  // namespace dlrt::detail::cuda_conv2d_fast
