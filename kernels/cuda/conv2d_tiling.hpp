// Index and tile arithmetic of the Cuda convolution engine. Every position a
// kernel computes (tensor offsets, padding, stride divisibility, the tile a
// block owns, the elements a thread moves) comes from here, so that host
// tests can replay the kernels block by block and compare them with the
// Reference engine. Plain C++ without CUDA headers: CPU tests include it.
//
// Index width: every index is a 32-bit int. supports() declines problems
// whose x, w or y has more than kMaxElements elements; that bound leaves
// 2^25 of headroom below INT32_MAX, more than the largest overshoot any
// expression here reaches (a tile's 64 extra rows or columns, 2 * pad_h with
// pad_h <= 2^16), so no intermediate value overflows. The depth split's
// workspace is held to the same bound (choose_splits).
#pragma once

#include <climits>
#include <cstddef>
#include <cstdint>
#include <string>

#include "kernels/cuda/host_device.hpp"
#include "runtime/conv2d_geometry.hpp"

namespace dlrt::detail::cuda_conv2d {

inline constexpr std::int64_t kMaxElements = (std::int64_t{1} << 31) - (std::int64_t{1} << 25);

// Variant 2's tiles: a 64 x 64 block of C per 256 threads, a 16 x 16 thread
// grid with a 4 x 4 register sub-tile each, and a depth step of 8.
inline constexpr int kTileM = 64;
inline constexpr int kTileN = 64;
inline constexpr int kTileK = 8;
inline constexpr int kThreads = 256;
inline constexpr int kThreadsN = 16;
inline constexpr int kThreadsM = kThreads / kThreadsN;
inline constexpr int kMicroM = kTileM / kThreadsM;
inline constexpr int kMicroN = kTileN / kThreadsN;
// Shared tiles are stored depth-major, [kTileK][kSmemStride]. The 4 padding
// floats make the k-fastest stores (8 consecutive depths per row) fall into
// 32 distinct banks.
inline constexpr int kSmemStride = kTileM + 4;
inline constexpr int kSmemFloats = kTileK * kSmemStride;
inline constexpr int kLoadsA = kTileM * kTileK / kThreads;
inline constexpr int kLoadsB = kTileN * kTileK / kThreads;
static_assert(kTileM == kTileN, "one load mapping serves both operands");
static_assert(kMicroM * kThreadsM == kTileM && kMicroN * kThreadsN == kTileN);
static_assert(kLoadsA * kThreads == kTileM * kTileK && kLoadsB * kThreads == kTileN * kTileK);

// Threads per block of the direct kernels, the bias reduction and the split sum.
inline constexpr int kDirectThreads = 256;
inline constexpr int kBiasThreads = 256;  // a power of two: the tree halves it

DLRT_HOST_DEVICE inline int ceil_div(int a, int b) { return (a + b - 1) / b; }

// The problem in 32-bit ints (see kMaxElements).
struct ConvDims {
  int N, C, H, W;
  int K, R, S;
  int P, Q;
  int pad_h, pad_w, stride_h, stride_w, dil_h, dil_w;
  int groups, Cg, Kg;

  DLRT_HOST_DEVICE int x_index(int n, int c, int h, int w) const {
    return ((n * C + c) * H + h) * W + w;
  }
  DLRT_HOST_DEVICE int w_index(int k, int c, int r, int s) const {
    return ((k * Cg + c) * R + r) * S + s;
  }
  DLRT_HOST_DEVICE int y_index(int n, int k, int p, int q) const {
    return ((n * K + k) * P + p) * Q + q;
  }
};

// Empty when every index of `op` on `g` fits the 32-bit arithmetic here,
// otherwise why not. BackwardBias reads only N, K, P, Q.
inline std::string index_limit_reason(Conv2dOp op, const Conv2dGeometry& g) {
  auto check = [](const char* name, std::int64_t elements) -> std::string {
    if (elements <= kMaxElements) return {};
    return std::string(name) + " has " + std::to_string(elements) +
           " elements, more than the 32-bit indexing limit " + std::to_string(kMaxElements);
  };
  if (op == Conv2dOp::BackwardBias) return check("dy", g.y_elements());
  std::string why = check(op == Conv2dOp::Forward ? "y" : "dy", g.y_elements());
  if (why.empty()) why = check(op == Conv2dOp::BackwardData ? "dx" : "x", g.x_elements());
  if (why.empty()) why = check(op == Conv2dOp::BackwardFilter ? "dw" : "w", g.w_elements());
  return why;
}

// Precondition: index_limit_reason(op, g) is empty.
inline ConvDims make_conv_dims(const Conv2dGeometry& g) {
  auto i32 = [](std::int64_t v) { return static_cast<int>(v); };
  return {i32(g.N),
          i32(g.C),
          i32(g.H),
          i32(g.W),
          i32(g.K),
          i32(g.R),
          i32(g.S),
          i32(g.P),
          i32(g.Q),
          g.pad_h,
          g.pad_w,
          g.stride_h,
          g.stride_w,
          g.dilation_h,
          g.dilation_w,
          g.groups,
          i32(g.c_per_group()),
          i32(g.k_per_group())};
}

// The input coordinate that output coordinate `o` reads through filter tap
// `t`, or -1 when it falls into the padding.
DLRT_HOST_DEVICE inline int input_coord(int o, int t, int stride, int pad, int dil, int extent) {
  const int i = o * stride - pad + t * dil;
  return i >= 0 && i < extent ? i : -1;
}

// The inverse for backward data: the output coordinate whose tap `t` reads
// input coordinate `i`, or -1 when there is none because i + pad - t*dil is
// negative, off the stride grid, or past the last output.
DLRT_HOST_DEVICE inline int output_coord(int i, int t, int stride, int pad, int dil, int extent) {
  const int offset = i + pad - t * dil;
  if (offset < 0 || offset % stride != 0) return -1;
  const int o = offset / stride;
  return o < extent ? o : -1;
}

// ---------------------------------------------------------------------------
// Implicit GEMM (Chetlur et al. 2014, "cuDNN: Efficient Primitives for Deep
// Learning"): per group, C[m][col] = sum_kk A[m][kk] * B[kk][col], with the
// operands read straight from the tensors instead of an unfolded copy. Each
// op gives the GEMM's extents and the tensor offset of an operand element;
// -1 stands for a zero (padding, or a tap off the stride grid). The
// *_k_fastest flags choose which coordinate consecutive threads walk when
// loading a tile, whichever is contiguous in memory.

// Forward: M = K/g, N = N*P*Q, Kdim = C/g*R*S; A = w, B = im2col(x), C = y.
struct ForwardGemm {
  ConvDims d;
  static constexpr bool kAKFastest = true;   // a filter's C/g*R*S values are contiguous
  static constexpr bool kBKFastest = false;  // consecutive columns are consecutive q

  DLRT_HOST_DEVICE int rows() const { return d.Kg; }
  DLRT_HOST_DEVICE int cols() const { return d.N * d.P * d.Q; }
  DLRT_HOST_DEVICE int depth() const { return d.Cg * d.R * d.S; }
  // kk = (c*R + r)*S + s, so filter k's row is w[k*depth .. (k+1)*depth).
  DLRT_HOST_DEVICE int a_offset(int group, int m, int kk) const {
    return (group * d.Kg + m) * depth() + kk;
  }
  // col = (n*P + p)*Q + q.
  DLRT_HOST_DEVICE int b_offset(int group, int kk, int col) const {
    const int s = kk % d.S, r = (kk / d.S) % d.R, c = kk / (d.S * d.R);
    const int q = col % d.Q, p = (col / d.Q) % d.P, n = col / (d.Q * d.P);
    const int h = input_coord(p, r, d.stride_h, d.pad_h, d.dil_h, d.H);
    const int w = input_coord(q, s, d.stride_w, d.pad_w, d.dil_w, d.W);
    if (h < 0 || w < 0) return -1;
    return d.x_index(n, group * d.Cg + c, h, w);
  }
  DLRT_HOST_DEVICE int c_offset(int group, int m, int col) const {
    const int pq = d.P * d.Q;
    return ((col / pq) * d.K + group * d.Kg + m) * pq + col % pq;
  }
};

// Backward data: M = C/g, N = N*H*W, Kdim = K/g*R*S; A = w^T, B = dy
// gathered at the output position each (k, r, s) tap maps an input pixel
// to, C = dx. A tap whose h + pad_h - r*dil_h is not a multiple of the
// stride reads a zero, so strided convolutions need no atomics either.
struct BackwardDataGemm {
  ConvDims d;
  static constexpr bool kAKFastest = true;   // a filter's R*S taps are contiguous
  static constexpr bool kBKFastest = false;  // consecutive columns are consecutive w

  DLRT_HOST_DEVICE int rows() const { return d.Cg; }
  DLRT_HOST_DEVICE int cols() const { return d.N * d.H * d.W; }
  DLRT_HOST_DEVICE int depth() const { return d.Kg * d.R * d.S; }
  // kk = (k*R + r)*S + s; m is the channel c within the group.
  DLRT_HOST_DEVICE int a_offset(int group, int m, int kk) const {
    const int rs = d.R * d.S;
    return ((group * d.Kg + kk / rs) * d.Cg + m) * rs + kk % rs;
  }
  // col = (n*H + h)*W + w.
  DLRT_HOST_DEVICE int b_offset(int group, int kk, int col) const {
    const int s = kk % d.S, r = (kk / d.S) % d.R, k = kk / (d.S * d.R);
    const int w = col % d.W, h = (col / d.W) % d.H, n = col / (d.W * d.H);
    const int p = output_coord(h, r, d.stride_h, d.pad_h, d.dil_h, d.P);
    const int q = output_coord(w, s, d.stride_w, d.pad_w, d.dil_w, d.Q);
    if (p < 0 || q < 0) return -1;
    return d.y_index(n, group * d.Kg + k, p, q);
  }
  DLRT_HOST_DEVICE int c_offset(int group, int m, int col) const {
    const int hw = d.H * d.W;
    return ((col / hw) * d.C + group * d.Cg + m) * hw + col % hw;
  }
};

// Backward filter: M = K/g, N = C/g*R*S, Kdim = N*P*Q; A = dy, B = im2col(x)
// transposed, C = dw (or one split's slice of the partial sums).
struct BackwardFilterGemm {
  ConvDims d;
  static constexpr bool kAKFastest = true;  // consecutive depths are consecutive q in dy
  static constexpr bool kBKFastest = true;  // ... and in x

  DLRT_HOST_DEVICE int rows() const { return d.Kg; }
  DLRT_HOST_DEVICE int cols() const { return d.Cg * d.R * d.S; }
  DLRT_HOST_DEVICE int depth() const { return d.N * d.P * d.Q; }
  // kk = (n*P + p)*Q + q.
  DLRT_HOST_DEVICE int a_offset(int group, int m, int kk) const {
    const int pq = d.P * d.Q;
    return ((kk / pq) * d.K + group * d.Kg + m) * pq + kk % pq;
  }
  // col = (c*R + r)*S + s.
  DLRT_HOST_DEVICE int b_offset(int group, int kk, int col) const {
    const int s = col % d.S, r = (col / d.S) % d.R, c = col / (d.S * d.R);
    const int q = kk % d.Q, p = (kk / d.Q) % d.P, n = kk / (d.Q * d.P);
    const int h = input_coord(p, r, d.stride_h, d.pad_h, d.dil_h, d.H);
    const int w = input_coord(q, s, d.stride_w, d.pad_w, d.dil_w, d.W);
    if (h < 0 || w < 0) return -1;
    return d.x_index(n, group * d.Cg + c, h, w);
  }
  DLRT_HOST_DEVICE int c_offset(int group, int m, int col) const {
    return (group * d.Kg + m) * cols() + col;
  }
};

// The launch: a 1-D grid of groups * row_tiles * col_tiles * splits blocks
// (1-D because groups alone may exceed gridDim.y's 65535). Split s of the
// depth covers [s*k_chunk, min(depth, (s+1)*k_chunk)).
struct GemmGrid {
  int groups, row_tiles, col_tiles, splits, k_chunk;
};

// `splits` is clamped to [1, depth tiles] and then lowered until every split
// owns at least one depth tile: with c = ceil(T/s) tiles per split, ceil(T/c)
// splits start below T.
inline GemmGrid make_gemm_grid(int rows, int cols, int depth, int groups, int splits) {
  const int k_tiles = ceil_div(depth, kTileK);
  if (splits < 1) splits = 1;
  if (splits > k_tiles) splits = k_tiles;
  const int per_split = ceil_div(k_tiles, splits);
  return {groups, ceil_div(rows, kTileM), ceil_div(cols, kTileN), ceil_div(k_tiles, per_split),
          per_split * kTileK};
}

template <class Op>
GemmGrid make_gemm_grid(const Op& op, int splits = 1) {
  return make_gemm_grid(op.rows(), op.cols(), op.depth(), op.d.groups, splits);
}

inline std::int64_t grid_blocks(const GemmGrid& grid) {
  return std::int64_t{grid.groups} * grid.row_tiles * grid.col_tiles * grid.splits;
}

// What one block computes: rows [row0, row0 + kTileM) and columns
// [col0, col0 + kTileN) of C for one group, over depths [k_begin, k_end).
struct BlockTile {
  int group, row0, col0, split, k_begin, k_end;
};

// Column tiles vary fastest, so neighbouring blocks share their A tile.
DLRT_HOST_DEVICE inline BlockTile block_tile(const GemmGrid& grid, int depth, int block) {
  const int col_tile = block % grid.col_tiles;
  int rest = block / grid.col_tiles;
  const int row_tile = rest % grid.row_tiles;
  rest /= grid.row_tiles;
  const int group = rest % grid.groups, split = rest / grid.groups;
  const int k_begin = split * grid.k_chunk;
  const int left = depth - k_begin;
  return {group, row_tile * kTileM, col_tile * kTileN,
          split, k_begin,           k_begin + (left < grid.k_chunk ? left : grid.k_chunk)};
}

// The tile element that thread `tid` moves in its i-th load: kk in
// [0, kTileK) and mn, the row (A) or column (B), in [0, kTileM).
struct TileElement {
  int kk, mn;
};
DLRT_HOST_DEVICE inline TileElement tile_element(int tid, int i, bool k_fastest) {
  const int e = i * kThreads + tid;
  if (k_fastest) return {e % kTileK, e / kTileK};
  return {e / kTileM, e % kTileM};
}

// Thread tid's loads of the A tile at depth k0 into registers; rows past
// M and depths past the block's k_end read as zero. Src is anything with
// operator[](int) (a device pointer in kernels, a bounds-checked view in tests).
template <class Op, class Src>
DLRT_HOST_DEVICE DLRT_FORCE_INLINE void load_a_tile(const Op& op, const Src& a, const BlockTile& t,
                                                    int k0, int tid, float (&regs)[kLoadsA]) {
  DLRT_UNROLL
  for (int i = 0; i < kLoadsA; ++i) {
    const TileElement e = tile_element(tid, i, Op::kAKFastest);
    const int m = t.row0 + e.mn, kk = k0 + e.kk;
    const int offset = m < op.rows() && kk < t.k_end ? op.a_offset(t.group, m, kk) : -1;
    regs[i] = offset >= 0 ? a[offset] : 0.0f;
  }
}

template <class Op, class Src>
DLRT_HOST_DEVICE DLRT_FORCE_INLINE void load_b_tile(const Op& op, const Src& b, const BlockTile& t,
                                                    int k0, int tid, float (&regs)[kLoadsB]) {
  DLRT_UNROLL
  for (int i = 0; i < kLoadsB; ++i) {
    const TileElement e = tile_element(tid, i, Op::kBKFastest);
    const int col = t.col0 + e.mn, kk = k0 + e.kk;
    const int offset = col < op.cols() && kk < t.k_end ? op.b_offset(t.group, kk, col) : -1;
    regs[i] = offset >= 0 ? b[offset] : 0.0f;
  }
}

// Registers to the shared tile, laid out [kk][mn] with stride kSmemStride.
template <int Loads>
DLRT_HOST_DEVICE DLRT_FORCE_INLINE void store_tile(const float (&regs)[Loads], float* tile, int tid,
                                                   bool k_fastest) {
  DLRT_UNROLL
  for (int i = 0; i < Loads; ++i) {
    const TileElement e = tile_element(tid, i, k_fastest);
    tile[e.kk * kSmemStride + e.mn] = regs[i];
  }
}

// Thread tid owns rows ty + kThreadsM*i and columns tx + kThreadsN*j of the
// block's tile: strided rather than blocked, so a warp's 16 column reads
// hit 16 consecutive banks and its stores of C are contiguous.
DLRT_HOST_DEVICE inline int thread_row(int tid, int i) { return tid / kThreadsN + kThreadsM * i; }
DLRT_HOST_DEVICE inline int thread_col(int tid, int j) { return tid % kThreadsN + kThreadsN * j; }

// acc += As^T * Bs over one depth tile, in increasing kk: the summation
// order of every output element is fixed, hence bitwise reproducible.
DLRT_HOST_DEVICE DLRT_FORCE_INLINE void multiply_tile(const float* a_tile, const float* b_tile,
                                                      int tid, float (&acc)[kMicroM][kMicroN]) {
  DLRT_UNROLL
  for (int kk = 0; kk < kTileK; ++kk) {
    float a[kMicroM], b[kMicroN];
    DLRT_UNROLL
    for (int i = 0; i < kMicroM; ++i) a[i] = a_tile[kk * kSmemStride + thread_row(tid, i)];
    DLRT_UNROLL
    for (int j = 0; j < kMicroN; ++j) b[j] = b_tile[kk * kSmemStride + thread_col(tid, j)];
    DLRT_UNROLL
    for (int i = 0; i < kMicroM; ++i) {
      DLRT_UNROLL
      for (int j = 0; j < kMicroN; ++j) acc[i][j] += a[i] * b[j];
    }
  }
}

// Writes thread tid's outputs that lie inside C. row_bias (may be null) is
// one value per GEMM row across all groups: forward's bias[k].
template <class Op, class Dst>
DLRT_HOST_DEVICE DLRT_FORCE_INLINE void store_c_tile(const Op& op, Dst c, const float* row_bias,
                                                     const BlockTile& t, int tid,
                                                     const float (&acc)[kMicroM][kMicroN]) {
  DLRT_UNROLL
  for (int i = 0; i < kMicroM; ++i) {
    const int m = t.row0 + thread_row(tid, i);
    if (m >= op.rows()) continue;
    const float bias = row_bias != nullptr ? row_bias[t.group * op.rows() + m] : 0.0f;
    DLRT_UNROLL
    for (int j = 0; j < kMicroN; ++j) {
      const int col = t.col0 + thread_col(tid, j);
      if (col < op.cols()) c[op.c_offset(t.group, m, col)] = acc[i][j] + bias;
    }
  }
}

// Backward filter's depth N*P*Q is long while its M x N is often a handful
// of tiles; splitting the depth fills the GPU. The partial sums go to a
// workspace of splits slices shaped like dw, summed afterwards in split
// order (no atomics). The split count depends only on the problem and the
// workspace limit, never on the device, so results repeat bit for bit.
inline constexpr int kSplitTargetBlocks = 512;
inline constexpr int kSplitMinTiles = 8;  // depth tiles per split, at least
inline constexpr int kSplitMax = 64;

inline int choose_splits(std::int64_t base_blocks, int depth, std::int64_t out_elements,
                         std::size_t workspace_limit_bytes) {
  if (base_blocks >= kSplitTargetBlocks) return 1;
  std::int64_t want = (kSplitTargetBlocks + base_blocks - 1) / base_blocks;
  const std::int64_t by_depth = ceil_div(depth, kTileK) / kSplitMinTiles;
  const std::int64_t by_workspace =
      static_cast<std::int64_t>(workspace_limit_bytes / sizeof(float)) / out_elements;
  const std::int64_t by_index = kMaxElements / out_elements;  // the workspace's indices
  for (std::int64_t bound : {by_depth, by_workspace, by_index, std::int64_t{kSplitMax}})
    if (want > bound) want = bound;
  return want < 2 ? 1 : static_cast<int>(want);
}

// The dispatch rule of the engine. `forced` is 0 (auto), 1 or 2. Variant 2
// needs its 1-D grid to fit in an int; on auto it also needs at least
// kMinGemmRows GEMM rows for forward and backward data, since a depthwise
// layer's single row would leave 63 of a tile's 64 rows idle, where the
// direct kernel keeps every thread busy. Backward filter stays on variant 2,
// whose depth split gives it the parallelism the direct kernel lacks.
inline constexpr int kMinGemmRows = 16;

inline int choose_variant(Conv2dOp op, const ConvDims& d, int forced) {
  if (op == Conv2dOp::BackwardBias || forced == 1) return 1;
  int rows = 0;
  std::int64_t blocks = 0;
  if (op == Conv2dOp::Forward) {
    const ForwardGemm gemm{d};
    rows = gemm.rows(), blocks = grid_blocks(make_gemm_grid(gemm));
  } else if (op == Conv2dOp::BackwardData) {
    const BackwardDataGemm gemm{d};
    rows = gemm.rows(), blocks = grid_blocks(make_gemm_grid(gemm));
  } else {
    const BackwardFilterGemm gemm{d};
    rows = gemm.rows(), blocks = grid_blocks(make_gemm_grid(gemm)) * kSplitMax;
  }
  if (blocks > INT_MAX) return 1;
  if (forced == 2 || op == Conv2dOp::BackwardFilter) return 2;
  return rows >= kMinGemmRows ? 2 : 1;
}

// ---------------------------------------------------------------------------
// Variant 1: one thread per output element, the definition in conv.hpp as
// a loop. Backward data gathers over the (k, r, s) that reach its pixel.

template <class Src>
DLRT_HOST_DEVICE inline float direct_forward(const ConvDims& d, const Src& x, const Src& w,
                                             const float* bias, int index) {
  const int q = index % d.Q, p = (index / d.Q) % d.P, k = (index / (d.Q * d.P)) % d.K;
  const int n = index / (d.Q * d.P * d.K), group = k / d.Kg;
  float sum = bias != nullptr ? bias[k] : 0.0f;
  for (int c = 0; c < d.Cg; ++c)
    for (int r = 0; r < d.R; ++r) {
      const int h = input_coord(p, r, d.stride_h, d.pad_h, d.dil_h, d.H);
      if (h < 0) continue;
      for (int s = 0; s < d.S; ++s) {
        const int wi = input_coord(q, s, d.stride_w, d.pad_w, d.dil_w, d.W);
        if (wi < 0) continue;
        sum += x[d.x_index(n, group * d.Cg + c, h, wi)] * w[d.w_index(k, c, r, s)];
      }
    }
  return sum;
}

template <class Src>
DLRT_HOST_DEVICE inline float direct_backward_data(const ConvDims& d, const Src& dy, const Src& w,
                                                   int index) {
  const int wi = index % d.W, h = (index / d.W) % d.H, c = (index / (d.W * d.H)) % d.C;
  const int n = index / (d.W * d.H * d.C), group = c / d.Cg, cg = c % d.Cg;
  float sum = 0.0f;
  for (int kg = 0; kg < d.Kg; ++kg) {
    const int k = group * d.Kg + kg;
    for (int r = 0; r < d.R; ++r) {
      const int p = output_coord(h, r, d.stride_h, d.pad_h, d.dil_h, d.P);
      if (p < 0) continue;
      for (int s = 0; s < d.S; ++s) {
        const int q = output_coord(wi, s, d.stride_w, d.pad_w, d.dil_w, d.Q);
        if (q < 0) continue;
        sum += dy[d.y_index(n, k, p, q)] * w[d.w_index(k, cg, r, s)];
      }
    }
  }
  return sum;
}

template <class Src>
DLRT_HOST_DEVICE inline float direct_backward_filter(const ConvDims& d, const Src& x, const Src& dy,
                                                     int index) {
  const int s = index % d.S, r = (index / d.S) % d.R, c = (index / (d.S * d.R)) % d.Cg;
  const int k = index / (d.S * d.R * d.Cg), group = k / d.Kg;
  float sum = 0.0f;
  for (int n = 0; n < d.N; ++n)
    for (int p = 0; p < d.P; ++p) {
      const int h = input_coord(p, r, d.stride_h, d.pad_h, d.dil_h, d.H);
      if (h < 0) continue;
      for (int q = 0; q < d.Q; ++q) {
        const int wi = input_coord(q, s, d.stride_w, d.pad_w, d.dil_w, d.W);
        if (wi < 0) continue;
        sum += x[d.x_index(n, group * d.Cg + c, h, wi)] * dy[d.y_index(n, k, p, q)];
      }
    }
  return sum;
}

// ---------------------------------------------------------------------------
// Reductions with a fixed order.

// Thread tid's share of db[k]: every kBiasThreads-th element of channel k's
// N*P*Q values, in increasing order; a shared-memory tree then halves.
template <class Src>
DLRT_HOST_DEVICE inline float bias_thread_sum(const Src& dy, int N, int K, int PQ, int k, int tid) {
  float sum = 0.0f;
  for (int i = tid; i < N * PQ; i += kBiasThreads) {
    const int n = i / PQ;
    sum += dy[(n * K + k) * PQ + (i - n * PQ)];
  }
  return sum;
}

// dw[index] from the split partials, summed in split order.
template <class Src>
DLRT_HOST_DEVICE inline float split_sum(const Src& partials, int splits, int slice, int index) {
  float sum = partials[index];
  for (int s = 1; s < splits; ++s) sum += partials[s * slice + index];
  return sum;
}

}  // namespace dlrt::detail::cuda_conv2d
