// The Cpu convolution engine: im2col + OpenBLAS sgemm on dlrt's threads
// (runtime/parallel.hpp):
//   forward         Y[k, j]    = W[k, crs]   * col[crs, j]
//   backward data   col[crs, j] = W^T[crs, k] * dY[k, j],   then col2im
//   backward filter dW[k, crs] += dY[k, j]   * col^T[j, crs]
// where j runs over the output pixels of every image of a group, J = n*P*Q + p*Q + q.
//
// The output columns are cut into blocks of at most kBlockColumns that do
// not depend on the thread count (several small images share a block, so
// that ResNet's 7x7 layers still get wide GEMMs), and each block is one
// BLAS call: results are the same bits for any number of threads. Each op
// is one parallel loop where it can be (a thread that finishes early takes
// over blocks, and a descheduled thread delays only the block it holds):
//  - forward: over blocks; a chunk unfolds its block into its own scratch
//    slot, multiplies it into y and adds the bias while it is in cache;
//  - backward filter: over units of rows of col (columns of dw), each
//    summing over every block in a fixed order;
//  - backward data: over image batches when there are enough of them, each
//    folding its own col; otherwise one image at a time, its blocks'
//    GEMMs in parallel, then col2im in parallel over channels. Both fold a
//    band of output rows in the same order, so they give the same bits.
// 1x1 stride-1 unpadded convolutions skip im2col (x already is col);
// depthwise convolutions skip the GEMM altogether.
//
// Grain sizes come from single-thread costs measured on the CI machines
// (dlrt_bench_conv --dlrt_engines=cpu at one thread): about 0.5 ns per
// element unfolded or folded, 0.4 ns per depthwise multiply-add, 0.15 ns per
// element of a bias add or sum, and the GEMM rate of kernels/cpu/gemm.hpp.
#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstring>
#include <string>

#include "kernels/cpu/gemm.hpp"
#include "runtime/context_impl.hpp"
#include "runtime/conv2d_engine.hpp"
#include "runtime/parallel.hpp"

namespace dlrt::detail {
namespace {

using cpu::gemm_serial;
using cpu::Trans;
using i64 = std::int64_t;

constexpr double kUnfoldNsPerElement = 0.5;
constexpr double kDepthwiseNsPerMultiplyAdd = 0.4;
constexpr double kStreamNsPerElement = 0.15;
// Columns per GEMM block: wide enough that the BLAS runs at full speed
// (re-packing W per block costs under 5% here), small enough that a block's
// unfolded columns stay in L2.
constexpr i64 kBlockColumns = 512;
// Backward filter: each unit owns a slice of dw's columns (rows of col),
// about crs / kFilterUnits of them in multiples of 8, so that there is work
// for several threads while each BLAS call stays wide; the number of units
// depends on the problem alone.
constexpr i64 kFilterUnits = 8;
i64 filter_rows(i64 crs) {
  const i64 rows = ((crs + kFilterUnits - 1) / kFilterUnits + 7) / 8 * 8;
  return std::clamp<i64>(rows, 32, 256);
}

// The valid output columns q for filter column s: 0 <= q*stride - pad + s*dilation < W.
struct ColumnRange {
  i64 begin, end;
};
ColumnRange valid_columns(const Conv2dGeometry& g, i64 s) {
  const i64 offset = s * g.dilation_w - g.pad_w;  // input column of q = 0
  i64 begin = offset >= 0 ? 0 : (-offset + g.stride_w - 1) / g.stride_w;
  i64 end = g.W - offset <= 0 ? 0 : (g.W - 1 - offset) / g.stride_w + 1;
  begin = std::min(begin, g.Q);
  end = std::clamp(end, begin, g.Q);
  return {begin, end};
}

// out[(row - row0)*ld + (j - j0)] = col[row][j] for the rows [row0, row1) and
// the output pixels j = p*Q + q in [j0, j1) of one image, where
// col[(c*R + r)*S + s][j] = x[c, p*sh - ph + r*dh, q*sw - pw + s*dw] or 0.
void im2col(const Conv2dGeometry& g, const float* x_group, i64 j0, i64 j1, i64 row0, i64 row1,
            float* out, i64 ld) {
  for (i64 row = row0; row < row1; ++row) {
    const i64 s = row % g.S, r = (row / g.S) % g.R, c = row / (g.S * g.R);
    const ColumnRange valid = valid_columns(g, s);
    const float* plane = x_group + c * g.H * g.W;
    float* out_row = out + (row - row0) * ld - j0;
    for (i64 j = j0; j < j1;) {
      const i64 p = j / g.Q, q0 = j % g.Q, q1 = std::min(g.Q, q0 + (j1 - j));
      float* dst = out_row + p * g.Q;  // dst[q] is pixel (p, q)
      j += q1 - q0;
      const i64 h = p * g.stride_h - g.pad_h + r * g.dilation_h;
      if (h < 0 || h >= g.H) {
        std::fill(dst + q0, dst + q1, 0.0f);
        continue;
      }
      const float* in = plane + h * g.W + s * g.dilation_w - g.pad_w;
      const i64 v0 = std::clamp(valid.begin, q0, q1), v1 = std::clamp(valid.end, v0, q1);
      std::fill(dst + q0, dst + v0, 0.0f);
      if (g.stride_w == 1) {
        std::memcpy(dst + v0, in + v0, (v1 - v0) * sizeof(float));
      } else {
        for (i64 q = v0; q < v1; ++q) dst[q] = in[q * g.stride_w];
      }
      std::fill(dst + v1, dst + q1, 0.0f);
    }
  }
}

// The adjoint of im2col for the channels [c0, c1) and the pixels [j0, j1)
// of one image: dx[c, h, w] += col[...], col's row 0 being crs row 0 and
// its column 0 pixel j0.
void col2im_add(const Conv2dGeometry& g, const float* col, i64 ld, i64 j0, i64 j1, i64 c0, i64 c1,
                float* dx_group) {
  for (i64 c = c0; c < c1; ++c) {
    float* plane = dx_group + c * g.H * g.W;
    for (i64 r = 0; r < g.R; ++r)
      for (i64 s = 0; s < g.S; ++s) {
        const ColumnRange valid = valid_columns(g, s);
        const float* in_row = col + ((c * g.R + r) * g.S + s) * ld - j0;
        for (i64 j = j0; j < j1;) {
          const i64 p = j / g.Q, q0 = j % g.Q, q1 = std::min(g.Q, q0 + (j1 - j));
          j += q1 - q0;
          const i64 h = p * g.stride_h - g.pad_h + r * g.dilation_h;
          if (h < 0 || h >= g.H) continue;
          const float* in = in_row + p * g.Q;
          float* out = plane + h * g.W + s * g.dilation_w - g.pad_w;
          const i64 v0 = std::clamp(valid.begin, q0, q1), v1 = std::clamp(valid.end, v0, q1);
          for (i64 q = v0; q < v1; ++q) out[q * g.stride_w] += in[q];
        }
      }
  }
}

// Depthwise convolution (one input channel per group): im2col would turn
// each group into a matrix-vector product, so these loops work on the planes
// directly. Each thread owns whole output planes, so no two threads write one
// element and the sum order is fixed.
bool is_depthwise(const Conv2dGeometry& g) { return g.c_per_group() == 1; }

// y[n,k] += w[k] (*) x[n, k / Kg]: for each filter tap, a shifted, strided
// row of x scaled by one weight; the valid column range is computed once per tap.
void depthwise_forward(const Conv2dGeometry& g, const float* x, const float* w, const float* bias,
                       float* y) {
  const std::int64_t Kg = g.k_per_group();
  // Output rows are independent, so a single photograph (N = 1, one
  // channel) still spreads over every thread.
  const double ns_per_row = static_cast<double>(g.R * g.S * g.Q) * kDepthwiseNsPerMultiplyAdd;
  parallel_for(0, g.N * g.K * g.P, grain_for(ns_per_row), [&](std::int64_t i0, std::int64_t i1) {
    for (std::int64_t i = i0; i < i1; ++i) {
      const std::int64_t p = i % g.P, k = (i / g.P) % g.K, n = i / (g.P * g.K);
      const float* plane = x + (n * g.C + k / Kg) * g.H * g.W;
      const float* taps = w + k * g.R * g.S;
      float* row = y + ((n * g.K + k) * g.P + p) * g.Q;
      std::fill_n(row, g.Q, bias ? bias[k] : 0.0f);
      for (std::int64_t r = 0; r < g.R; ++r) {
        const std::int64_t h = p * g.stride_h - g.pad_h + r * g.dilation_h;
        if (h < 0 || h >= g.H) continue;
        for (std::int64_t s = 0; s < g.S; ++s) {
          const ColumnRange valid = valid_columns(g, s);
          const float tap = taps[r * g.S + s];
          const float* in = plane + h * g.W + s * g.dilation_w - g.pad_w;
          for (std::int64_t q = valid.begin; q < valid.end; ++q) row[q] += tap * in[q * g.stride_w];
        }
      }
    }
  });
}

// dx[n,c] = sum over the Kg outputs of group c of w[k] scattered back.
void depthwise_backward_data(const Conv2dGeometry& g, const float* dy, const float* w, float* dx) {
  const std::int64_t Kg = g.k_per_group(), PQ = g.P * g.Q;
  const double ns_per_plane = static_cast<double>(Kg * g.R * g.S * PQ) * kDepthwiseNsPerMultiplyAdd;
  parallel_for(0, g.N * g.C, grain_for(ns_per_plane), [&](std::int64_t i0, std::int64_t i1) {
    for (std::int64_t i = i0; i < i1; ++i) {
      const std::int64_t c = i % g.C, n = i / g.C;
      float* plane = dx + (n * g.C + c) * g.H * g.W;
      std::fill_n(plane, g.H * g.W, 0.0f);
      for (std::int64_t k = c * Kg; k < (c + 1) * Kg; ++k) {
        const float* grad = dy + (n * g.K + k) * PQ;
        for (std::int64_t s = 0; s < g.S; ++s) {
          const ColumnRange valid = valid_columns(g, s);
          for (std::int64_t p = 0; p < g.P; ++p)
            for (std::int64_t r = 0; r < g.R; ++r) {
              const std::int64_t h = p * g.stride_h - g.pad_h + r * g.dilation_h;
              if (h < 0 || h >= g.H) continue;
              const float tap = w[(k * g.R + r) * g.S + s];
              float* in = plane + h * g.W + s * g.dilation_w - g.pad_w;
              const float* row = grad + p * g.Q;
              for (std::int64_t q = valid.begin; q < valid.end; ++q)
                in[q * g.stride_w] += tap * row[q];
            }
        }
      }
    }
  });
}

// dw[k, r, s] = sum over n, p, q of dy[n,k,p,q] * x[n, k / Kg, h, w].
void depthwise_backward_filter(const Conv2dGeometry& g, const float* x, const float* dy,
                               float* dw) {
  const std::int64_t Kg = g.k_per_group(), PQ = g.P * g.Q;
  const double ns_per_filter =
      static_cast<double>(g.R * g.S * g.N * PQ) * kDepthwiseNsPerMultiplyAdd;
  parallel_for(0, g.K, grain_for(ns_per_filter), [&](std::int64_t k0, std::int64_t k1) {
    for (std::int64_t k = k0; k < k1; ++k)
      for (std::int64_t r = 0; r < g.R; ++r)
        for (std::int64_t s = 0; s < g.S; ++s) {
          const ColumnRange valid = valid_columns(g, s);
          double sum = 0.0;
          for (std::int64_t n = 0; n < g.N; ++n) {
            const float* plane = x + (n * g.C + k / Kg) * g.H * g.W;
            const float* grad = dy + (n * g.K + k) * PQ;
            for (std::int64_t p = 0; p < g.P; ++p) {
              const std::int64_t h = p * g.stride_h - g.pad_h + r * g.dilation_h;
              if (h < 0 || h >= g.H) continue;
              const float* in = plane + h * g.W + s * g.dilation_w - g.pad_w;
              const float* row = grad + p * g.Q;
              float partial = 0.0f;
              for (std::int64_t q = valid.begin; q < valid.end; ++q)
                partial += row[q] * in[q * g.stride_w];
              sum += partial;
            }
          }
          dw[(k * g.R + r) * g.S + s] = static_cast<float>(sum);
        }
  });
}

// ---------------------------------------------------------------- GEMM blocks

// The fixed cutting of one group's output pixels J = n*P*Q + p*Q + q into
// blocks of at most `width` columns. With P*Q >= width each image has its
// own blocks; otherwise blocks hold several images side by side.
struct ColumnBlocks {
  i64 PQ = 1, N = 1, width = kBlockColumns;
  bool per_image = true;
  i64 per_image_count = 1;  // blocks per image when per_image
  i64 count = 1;

  static ColumnBlocks make(const Conv2dGeometry& g, i64 width) {
    ColumnBlocks b;
    b.PQ = g.P * g.Q, b.N = g.N, b.width = width;
    b.per_image = b.PQ >= width;
    b.per_image_count = b.per_image ? (b.PQ + width - 1) / width : 1;
    b.count = b.per_image ? b.N * b.per_image_count : (b.N * b.PQ + width - 1) / width;
    return b;
  }
  // [J0, J1) of block `index`.
  std::pair<i64, i64> range(i64 index) const {
    if (!per_image) return {index * width, std::min(N * PQ, (index + 1) * width)};
    const i64 n = index / per_image_count, k = index % per_image_count;
    return {n * PQ + k * width, n * PQ + std::min(PQ, (k + 1) * width)};
  }
};

// Calls f(n, j0, j1, offset) for the pieces of [J0, J1) that lie in one
// image each: pixels [j0, j1) of image n, at column `offset` of the block.
template <class Fn>
void for_each_image_piece(i64 PQ, i64 J0, i64 J1, const Fn& f) {
  for (i64 J = J0; J < J1;) {
    const i64 n = J / PQ, j0 = J % PQ, j1 = std::min(PQ, j0 + (J1 - J));
    f(n, j0, j1, J - J0);
    J += j1 - j0;
  }
}

// How one op runs under the context's workspace limit and thread count:
// its blocks, its scratch slots (threads that may work at once), and why it
// cannot run when even one slot does not fit.
struct Layout {
  ColumnBlocks blocks;
  int slots = 1;
  i64 lane_floats = 0;    // scratch per slot
  i64 shared_floats = 0;  // scratch all slots read (backward filter's gathered dy)
  // Backward data: images per batch, blocks per folded band, and whether
  // whole batches run in parallel (else one batch's blocks and channels do).
  i64 batch_images = 1, band_blocks = 1;
  bool batch_parallel = false;
  std::string decline;

  i64 workspace_floats() const { return slots * lane_floats + shared_floats; }
};

// The workspace limit in floats (a limit past INT64_MAX bytes is no limit).
i64 limit_floats(const ContextOptions& options) {
  const std::size_t bytes = std::min<std::size_t>(options.workspace_limit_bytes, INT64_MAX);
  return static_cast<i64>(bytes / sizeof(float));
}

constexpr i64 kWidths[] = {kBlockColumns, 256, 128, 64, 32, 16, 8, 4, 2, 1};

std::string over_limit(i64 floats, const ContextOptions& options) {
  return "the smallest im2col block (" + std::to_string(floats * 4) +
         " bytes) exceeds the workspace limit " + std::to_string(options.workspace_limit_bytes);
}

Layout forward_layout(const ContextOptions& options, const Conv2dGeometry& g, int threads) {
  const i64 crs = g.c_per_group() * g.R * g.S, limit = limit_floats(options);
  Layout l;
  i64 smallest = 0;
  for (i64 width : kWidths) {
    l.blocks = ColumnBlocks::make(g, width);
    l.lane_floats = (g.is_pointwise() && l.blocks.per_image ? 0 : crs * width) +
                    (l.blocks.per_image ? 0 : g.k_per_group() * width);
    smallest = l.lane_floats;
    if (l.lane_floats <= limit) {
      l.slots = l.lane_floats == 0
                    ? threads
                    : static_cast<int>(std::min<i64>(threads, limit / l.lane_floats));
      return l;
    }
  }
  l.decline = over_limit(smallest, options);
  return l;
}

Layout backward_filter_layout(const ContextOptions& options, const Conv2dGeometry& g, int threads) {
  const i64 limit = limit_floats(options);
  Layout l;
  i64 smallest = 0;
  for (i64 width : kWidths) {
    l.blocks = ColumnBlocks::make(g, width);
    const i64 rows = filter_rows(g.c_per_group() * g.R * g.S);
    l.lane_floats = g.is_pointwise() && l.blocks.per_image ? 0 : rows * width;
    l.shared_floats = l.blocks.per_image ? 0 : g.K * g.N * g.P * g.Q;
    smallest = l.lane_floats + l.shared_floats;
    if (smallest <= limit) {
      const i64 room = limit - l.shared_floats;
      l.slots = l.lane_floats == 0 ? threads
                                   : static_cast<int>(std::min<i64>(threads, room / l.lane_floats));
      return l;
    }
  }
  l.decline = over_limit(smallest, options);
  return l;
}

Layout backward_data_layout(const ContextOptions& options, const Conv2dGeometry& g, int threads) {
  const i64 crs = g.c_per_group() * g.R * g.S, Kg = g.k_per_group(), PQ = g.P * g.Q;
  const i64 limit = limit_floats(options);
  Layout l;
  i64 smallest = 0;
  for (i64 width : kWidths) {
    l.blocks = ColumnBlocks::make(g, width);
    l.batch_images = l.blocks.per_image ? 1 : std::min(g.N, std::max<i64>(1, width / PQ));
    const i64 gather = l.batch_images > 1 ? Kg * l.batch_images * PQ : 0;
    // The largest band of blocks whose col fits one slot; the band does not
    // depend on the thread count, so neither does the order of the folding.
    for (l.band_blocks = l.blocks.per_image_count; l.band_blocks >= 1; l.band_blocks /= 2) {
      const i64 band_cols =
          l.blocks.per_image ? std::min(PQ, l.band_blocks * width) : l.batch_images * PQ;
      l.lane_floats = crs * band_cols + gather;
      smallest = l.lane_floats;
      if (l.lane_floats <= limit) break;
    }
    if (l.band_blocks < 1) continue;
    const i64 batches = g.groups * ((g.N + l.batch_images - 1) / l.batch_images);
    const i64 fit = limit / l.lane_floats;
    l.batch_parallel = threads > 1 && batches >= 2 * threads && fit >= threads;
    l.slots = l.batch_parallel ? threads : 1;
    return l;
  }
  l.decline = over_limit(smallest, options);
  return l;
}

// ---------------------------------------------------------------- the engine

// ---------------------------------------------------------------- the ops

void forward(const Conv2dGeometry& g, const Layout& l, float* scratch, const float* x,
             const float* w, const float* bias, float* y) {
  const i64 Cg = g.c_per_group(), Kg = g.k_per_group(), crs = Cg * g.R * g.S, PQ = g.P * g.Q;
  const ColumnBlocks& blocks = l.blocks;
  const double ns_per_block =
      static_cast<double>(blocks.width * crs) *
      (kUnfoldNsPerElement + static_cast<double>(Kg) * cpu::kGemmNsPerMultiplyAdd);
  parallel_for_slots(
      0, g.groups * blocks.count, grain_for(ns_per_block), l.slots, [&](i64 i0, i64 i1, int slot) {
        float* col = scratch + slot * l.lane_floats;
        float* out = col + (g.is_pointwise() && blocks.per_image ? 0 : crs * blocks.width);
        for (i64 i = i0; i < i1; ++i) {
          const i64 group = i / blocks.count;
          const auto [J0, J1] = blocks.range(i % blocks.count);
          const i64 cols = J1 - J0;
          const float* x_group = x + group * Cg * g.H * g.W;
          const float* w_group = w + group * Kg * crs;
          // y's block: in place when the block lies in one image, else `out`.
          float* c = out;
          i64 ldc = cols;
          if (blocks.per_image) {
            const i64 n = J0 / PQ;
            c = y + (n * g.K + group * Kg) * PQ + J0 % PQ;
            ldc = PQ;
          }
          const float* b = col;
          i64 ldb = cols;
          if (g.is_pointwise() && blocks.per_image) {
            b = x_group + (J0 / PQ) * g.C * g.H * g.W + J0 % PQ;
            ldb = PQ;
          } else {
            for_each_image_piece(PQ, J0, J1, [&](i64 n, i64 j0, i64 j1, i64 at) {
              im2col(g, x_group + n * g.C * g.H * g.W, j0, j1, 0, crs, col + at, cols);
            });
          }
          gemm_serial(Trans::No, Trans::No, Kg, cols, crs, 1.0f, w_group, crs, b, ldb, 0.0f, c,
                      ldc);
          // Copy (when the block spans images) and add the bias while the block is in cache.
          for_each_image_piece(PQ, J0, J1, [&](i64 n, i64 j0, i64 j1, i64 at) {
            for (i64 k = 0; k < Kg; ++k) {
              float* dst = y + (n * g.K + group * Kg + k) * PQ + j0;
              if (!blocks.per_image)
                std::memcpy(dst, out + k * cols + at, (j1 - j0) * sizeof(float));
              if (bias != nullptr) {
                const float add = bias[group * Kg + k];
                for (i64 e = 0; e < j1 - j0; ++e) dst[e] += add;
              }
            }
          });
        }
      });
}

void backward_data(const Conv2dGeometry& g, const Layout& l, float* scratch, const float* dy,
                   const float* w, float* dx) {
  const i64 Cg = g.c_per_group(), Kg = g.k_per_group(), crs = Cg * g.R * g.S, PQ = g.P * g.Q;
  const i64 B = l.batch_images, batches_per_group = (g.N + B - 1) / B;
  const i64 batches = g.groups * batches_per_group;
  const double ns_per_column =
      static_cast<double>(crs) *
      (kUnfoldNsPerElement + static_cast<double>(Kg) * cpu::kGemmNsPerMultiplyAdd);

  // One batch of images of one group, into the scratch lane `lane`:
  // GEMM each block of a band into col, then fold the band, channels
  // [0, Cg) at a time or in parallel.
  auto run_batch = [&](i64 batch, float* lane, bool parallel_inside) {
    const i64 group = batch / batches_per_group, n0 = (batch % batches_per_group) * B;
    const i64 count = std::min(B, g.N - n0);
    const float* w_group = w + group * Kg * crs;
    auto dx_group = [&](i64 n) { return dx + (n * g.C + group * Cg) * g.H * g.W; };
    for (i64 n = n0; n < n0 + count; ++n) std::fill_n(dx_group(n), Cg * g.H * g.W, 0.0f);
    if (B > 1) {
      // dy of the batch side by side, [Kg, count * PQ], then one GEMM and
      // a fold per image.
      const i64 ld = count * PQ;
      float* col = lane;
      float* gathered = lane + crs * B * PQ;
      for (i64 b = 0; b < count; ++b)
        for (i64 k = 0; k < Kg; ++k)
          std::memcpy(gathered + k * ld + b * PQ, dy + ((n0 + b) * g.K + group * Kg + k) * PQ,
                      PQ * sizeof(float));
      gemm_serial(Trans::Yes, Trans::No, crs, ld, Kg, 1.0f, w_group, crs, gathered, ld, 0.0f, col,
                  ld);
      for (i64 b = 0; b < count; ++b)
        col2im_add(g, col + b * PQ, ld, 0, PQ, 0, Cg, dx_group(n0 + b));
      return;
    }
    const ColumnBlocks& blocks = l.blocks;  // per image: blocks of one image are consecutive
    const float* dy_image = dy + (n0 * g.K + group * Kg) * PQ;
    for (i64 first = 0; first < blocks.per_image_count; first += l.band_blocks) {
      const i64 last = std::min(blocks.per_image_count, first + l.band_blocks);
      const i64 j0 = first * blocks.width, j1 = std::min(PQ, last * blocks.width), ld = j1 - j0;
      auto gemm_blocks = [&](i64 b0, i64 b1) {
        for (i64 b = b0; b < b1; ++b) {
          const i64 c0 = b * blocks.width, c1 = std::min(PQ, c0 + blocks.width);
          gemm_serial(Trans::Yes, Trans::No, crs, c1 - c0, Kg, 1.0f, w_group, crs, dy_image + c0,
                      PQ, 0.0f, lane + (c0 - j0), ld);
        }
      };
      auto fold = [&](i64 c0, i64 c1) { col2im_add(g, lane, ld, j0, j1, c0, c1, dx_group(n0)); };
      if (parallel_inside) {
        parallel_for(first, last, grain_for(ns_per_column * static_cast<double>(blocks.width)),
                     gemm_blocks);
        parallel_for(0, Cg, grain_for(static_cast<double>(g.R * g.S * ld) * kUnfoldNsPerElement),
                     fold);
      } else {
        gemm_blocks(first, last);
        fold(0, Cg);
      }
    }
  };

  if (l.batch_parallel) {
    parallel_for_slots(0, batches, 1, l.slots, [&](i64 b0, i64 b1, int slot) {
      for (i64 b = b0; b < b1; ++b) run_batch(b, scratch + slot * l.lane_floats, false);
    });
  } else {
    for (i64 b = 0; b < batches; ++b) run_batch(b, scratch, true);
  }
}

void backward_filter(const Conv2dGeometry& g, const Layout& l, float* scratch, const float* x,
                     const float* dy, float* dw) {
  const i64 Cg = g.c_per_group(), Kg = g.k_per_group(), crs = Cg * g.R * g.S, PQ = g.P * g.Q;
  const ColumnBlocks& blocks = l.blocks;
  // Blocks that span images read dy gathered once: [K, N*PQ].
  float* gathered = scratch + l.slots * l.lane_floats;
  const i64 NPQ = g.N * PQ;
  if (!blocks.per_image) {
    parallel_for(0, g.K * g.N, grain_for(static_cast<double>(PQ) * kStreamNsPerElement),
                 [&](i64 i0, i64 i1) {
                   for (i64 i = i0; i < i1; ++i) {
                     const i64 k = i / g.N, n = i % g.N;
                     std::memcpy(gathered + k * NPQ + n * PQ, dy + (n * g.K + k) * PQ,
                                 PQ * sizeof(float));
                   }
                 });
  }
  const i64 rows = filter_rows(crs), units = (crs + rows - 1) / rows;
  const double ns_per_unit =
      static_cast<double>(rows * NPQ) *
      (kUnfoldNsPerElement + static_cast<double>(Kg) * cpu::kGemmNsPerMultiplyAdd);
  parallel_for_slots(
      0, g.groups * units, grain_for(ns_per_unit), l.slots, [&](i64 i0, i64 i1, int slot) {
        float* col = scratch + slot * l.lane_floats;
        for (i64 i = i0; i < i1; ++i) {
          const i64 group = i / units, r0 = (i % units) * rows;
          const i64 r1 = std::min(crs, r0 + rows);
          const float* x_group = x + group * Cg * g.H * g.W;
          float* dw_block = dw + group * Kg * crs + r0;
          float beta = 0.0f;  // the first block overwrites dw, later ones accumulate
          for (i64 index = 0; index < blocks.count; ++index) {
            const auto [J0, J1] = blocks.range(index);
            const i64 cols = J1 - J0;
            const float* a = gathered + group * Kg * NPQ + J0;
            i64 lda = NPQ;
            const float* b = col;
            i64 ldb = cols;
            if (blocks.per_image) {
              const i64 n = J0 / PQ, j0 = J0 % PQ;
              a = dy + (n * g.K + group * Kg) * PQ + j0;
              lda = PQ;
              if (g.is_pointwise()) {
                b = x_group + n * g.C * g.H * g.W + r0 * PQ + j0;
                ldb = PQ;
              }
            }
            if (b == col) {
              for_each_image_piece(PQ, J0, J1, [&](i64 n, i64 j0, i64 j1, i64 at) {
                im2col(g, x_group + n * g.C * g.H * g.W, j0, j1, r0, r1, col + at, cols);
              });
            }
            gemm_serial(Trans::No, Trans::Yes, Kg, r1 - r0, cols, 1.0f, a, lda, b, ldb, beta,
                        dw_block, crs);
            beta = 1.0f;
          }
        }
      });
}

void backward_bias(const Conv2dGeometry& g, const float* dy, float* db) {
  const i64 PQ = g.P * g.Q;
  parallel_for(0, g.K, grain_for(static_cast<double>(g.N * PQ) * kStreamNsPerElement),
               [&](i64 k0, i64 k1) {
                 for (i64 k = k0; k < k1; ++k) {
                   // Double accumulation: the sum runs over N*P*Q terms, often millions.
                   double sum = 0.0;
                   for (i64 n = 0; n < g.N; ++n) {
                     const float* row = dy + (n * g.K + k) * PQ;
                     float partial = 0.0f;
                     for (i64 e = 0; e < PQ; ++e) partial += row[e];
                     sum += partial;
                   }
                   db[k] = static_cast<float>(sum);
                 }
               });
}

// ---------------------------------------------------------------- the engine

Layout layout_for(const Conv2dProblem& p) {
  switch (p.op) {
    case Conv2dOp::Forward:
      return forward_layout(p.options, p.g, p.threads);
    case Conv2dOp::BackwardData:
      return backward_data_layout(p.options, p.g, p.threads);
    case Conv2dOp::BackwardFilter:
      return backward_filter_layout(p.options, p.g, p.threads);
    case Conv2dOp::BackwardBias:
      break;
  }
  return {};
}

std::string describe(const Conv2dProblem& p, const Layout& l) {
  if (p.op == Conv2dOp::BackwardBias) return "cpu per-channel sums";
  if (is_depthwise(p.g)) return "cpu depthwise direct loops";
  std::string text = "cpu im2col + sgemm, " + std::to_string(l.blocks.width) + "-column blocks" +
                     (l.blocks.per_image ? "" : " of several images") + ", " +
                     std::to_string(l.slots) + " scratch slots";
  if (p.op == Conv2dOp::BackwardData && l.batch_parallel) text += ", batches in parallel";
  return text;
}

class CpuConv2d final : public Conv2dEngine {
public:
  Engine engine() const override { return Engine::Cpu; }

  Planned<Conv2dKernel> plan(Context&, const Conv2dProblem& p) const override {
    if (p.variant != 0) return Planned<Conv2dKernel>::no(no_kernel_variants(engine(), p.variant));
    const Conv2dGeometry& g = p.g;
    Layout l;
    if (p.op != Conv2dOp::BackwardBias && !is_depthwise(g)) {
      // OpenBLAS takes 32-bit dimensions and leading dimensions.
      const i64 crs = g.c_per_group() * g.R * g.S;
      const i64 largest = std::max({crs, g.K, g.P * g.Q * g.N, g.H * g.W});
      if (largest > INT_MAX)
        return Planned<Conv2dKernel>::no("a GEMM dimension (" + std::to_string(largest) +
                                         ") exceeds OpenBLAS's 32-bit int");
      l = layout_for(p);
      if (!l.decline.empty()) return Planned<Conv2dKernel>::no(l.decline);
    }
    const auto bytes = static_cast<std::size_t>(l.workspace_floats()) * sizeof(float);
    return {make_conv2d_kernel(engine(), bytes, describe(p, l),
                               [g, l, op = p.op](Context&, const Conv2dArgs& a, void* workspace) {
                                 auto* scratch = static_cast<float*>(workspace);
                                 switch (op) {
                                   case Conv2dOp::Forward:
                                     if (is_depthwise(g))
                                       return depthwise_forward(g, a.x, a.w, a.bias, a.y);
                                     return forward(g, l, scratch, a.x, a.w, a.bias, a.y);
                                   case Conv2dOp::BackwardData:
                                     if (is_depthwise(g))
                                       return depthwise_backward_data(g, a.dy, a.w, a.dx);
                                     return backward_data(g, l, scratch, a.dy, a.w, a.dx);
                                   case Conv2dOp::BackwardFilter:
                                     if (is_depthwise(g))
                                       return depthwise_backward_filter(g, a.x, a.dy, a.dw);
                                     return backward_filter(g, l, scratch, a.x, a.dy, a.dw);
                                   case Conv2dOp::BackwardBias:
                                     return backward_bias(g, a.dy, a.db);
                                 }
                               }),
            {}};
  }
};

const Registrar<Conv2dEngine> registrar{std::make_unique<CpuConv2d>()};

}  // namespace
}  // namespace dlrt::detail
