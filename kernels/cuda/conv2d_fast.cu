// The Cuda engine's fast convolution kernels, numbered after the engine's
// variants 1 (direct) and 2 (64x64 implicit GEMM) in conv2d.cu:
//   3  implicit GEMM on fp32 FFMA: 128x128 / 128x64 / 64x128 block tiles, 8x8
//      outputs per thread through 16-byte shared loads, a 4-stage cp.async
//      ring, split-K, sub-pixel backward data
//   4  the same GEMMs on TF32 tensor cores (mma.sync m16n8k8), plain TF32 or
//      3xTF32
// and, outside the GEMM, depthwise kernels for the three ops and a two-pass
// bias reduction. Every index comes from conv2d_fast_tiling.hpp, where the
// CPU tests replay it; this file adds the PTX and the launch plumbing.
// No atomics: every output is summed in an order fixed by the problem (and,
// for split-K, the SM count), so results repeat bit for bit run to run.
// cp.async and mma.sync need sm_80; older targets compile the copies as
// plain loads and stores, and trap on variant 4.
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "dlrt/error.hpp"
#include "kernels/cuda/conv2d_fast.hpp"
#include "kernels/cuda/conv2d_fast_tiling.hpp"
#include "runtime/cuda_check.hpp"

namespace dlrt::detail::cuda_conv2d_fast {
namespace {

constexpr int kElementwiseThreads = 256;

unsigned blocks_for(std::int64_t elements, int threads) {
  return static_cast<unsigned>((elements + threads - 1) / threads);
}

bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

// ---------------------------------------------------------------------------
// PTX.

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
#define DLRT_FAST_CONV_SM80 1
#else
#define DLRT_FAST_CONV_SM80 0
#endif

// The copy engine of the tile loaders: global -> shared, asynchronously.
// A scalar copy of offset -1 writes a zero (src-size 0: nothing is read).
struct CpAsyncCopy {
  float* smem;
  const float* src;

  DLRT_HOST_DEVICE DLRT_FORCE_INLINE void vector(int dst, int offset) const {
#if DLRT_FAST_CONV_SM80
    const auto address = static_cast<unsigned>(__cvta_generic_to_shared(smem + dst));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(address), "l"(src + offset)
                 : "memory");
#else
    *reinterpret_cast<float4*>(smem + dst) = *reinterpret_cast<const float4*>(src + offset);
#endif
  }
  DLRT_HOST_DEVICE DLRT_FORCE_INLINE void scalar(int dst, int offset) const {
#if DLRT_FAST_CONV_SM80
    const auto address = static_cast<unsigned>(__cvta_generic_to_shared(smem + dst));
    const int bytes = offset >= 0 ? 4 : 0;
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(address),
                 "l"(src + (offset >= 0 ? offset : 0)), "r"(bytes)
                 : "memory");
#else
    smem[dst] = offset >= 0 ? src[offset] : 0.0f;
#endif
  }
};

__device__ __forceinline__ void cp_async_commit() {
#if DLRT_FAST_CONV_SM80
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}

template <int Pending>
__device__ __forceinline__ void cp_async_wait() {
#if DLRT_FAST_CONV_SM80
  asm volatile("cp.async.wait_group %0;\n" ::"n"(Pending) : "memory");
#endif
}

// 4 floats at a 16-byte aligned shared index: one LDS.128.
struct SharedFloat4 {
  const float* smem;
  DLRT_HOST_DEVICE DLRT_FORCE_INLINE void load4(int index, float (&dst)[8], int at) const {
    const float4 v = *reinterpret_cast<const float4*>(smem + index);
    dst[at] = v.x, dst[at + 1] = v.y, dst[at + 2] = v.z, dst[at + 3] = v.w;
  }
};

__device__ __forceinline__ std::uint32_t to_tf32(float x) {
  std::uint32_t out;
#if DLRT_FAST_CONV_SM80
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(out) : "f"(x));
#else
  out = __float_as_uint(x);
#endif
  return out;
}

// D = A * B + D for mma tile (mi, nj) of a thread's acc[8][8] view.
__device__ __forceinline__ void mma_tf32(float (&acc)[8][8], int mi, int nj,
                                         const std::uint32_t (&a)[4], const std::uint32_t (&b)[2]) {
#if DLRT_FAST_CONV_SM80
  asm("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(acc[2 * mi][2 * nj]), "+f"(acc[2 * mi][2 * nj + 1]), "+f"(acc[2 * mi + 1][2 * nj]),
        "+f"(acc[2 * mi + 1][2 * nj + 1])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
  (void)acc, (void)mi, (void)nj, (void)a, (void)b;
  __trap();
#endif
}

// ---------------------------------------------------------------------------
// The math of one pipeline stage.

// Variant 3: outer products of float4 pairs (Volkov and Demmel 2008,
// "Benchmarking GPUs to tune dense linear algebra": register blocking).
struct Variant3Ffma {
  static constexpr int kPad = 4;
  template <class T>
  using Layout = StageLayout<T, kPad>;
  template <class T>
  using Threads = FfmaThreads<T>;

  template <class T>
  __device__ __forceinline__ static void multiply(const float* smem, int stage, int tid,
                                                  float (&acc)[8][8]) {
    ffma_multiply_stage<T, Layout<T>>(SharedFloat4{smem}, stage, tid, acc);
  }
};

// Variant 4: TF32 mma.sync. With kThreeTf32, each operand x is split into
// big = tf32(x) and small = tf32(x - big), and a*b is taken as
// a_small*b_big + a_big*b_small + a_big*b_big (NVIDIA CUTLASS's 3xTF32: the
// dropped a_small*b_small is below fp32's rounding), small terms first.
template <bool kThreeTf32>
struct Variant4Mma {
  static constexpr int kPad = 8;
  template <class T>
  using Layout = StageLayout<T, kPad>;
  template <class T>
  using Threads = MmaThreads<T>;

  __device__ __forceinline__ static void split(float x, std::uint32_t& big, std::uint32_t& small) {
    big = to_tf32(x);
    if constexpr (kThreeTf32) small = to_tf32(x - __uint_as_float(big));
  }

  template <class T>
  __device__ __forceinline__ static void multiply(const float* smem, int stage, int tid,
                                                  float (&acc)[8][8]) {
    using L = Layout<T>;
    using Th = MmaThreads<T>;
    // B's fragments for the whole warp tile, A's one mma row at a time: the
    // fragments of 3xTF32 would otherwise crowd the 64 accumulators.
    std::uint32_t b_big[4][2], b_small[4][2];
    DLRT_UNROLL
    for (int nj = 0; nj < 4; ++nj) {
      DLRT_UNROLL
      for (int r = 0; r < 2; ++r)
        split(smem[Th::template b_index<L>(stage, tid, nj, r)], b_big[nj][r], b_small[nj][r]);
    }
    DLRT_UNROLL
    for (int mi = 0; mi < 4; ++mi) {
      std::uint32_t a_big[4], a_small[4];
      DLRT_UNROLL
      for (int r = 0; r < 4; ++r)
        split(smem[Th::template a_index<L>(stage, tid, mi, r)], a_big[r], a_small[r]);
      DLRT_UNROLL
      for (int nj = 0; nj < 4; ++nj) {
        if constexpr (kThreeTf32) {
          mma_tf32(acc, mi, nj, a_small, b_big[nj]);
          mma_tf32(acc, mi, nj, a_big, b_small[nj]);
        }
        mma_tf32(acc, mi, nj, a_big, b_big[nj]);
      }
    }
  }
};

// ---------------------------------------------------------------------------
// Variants 3 and 4: implicit GEMM (Chetlur et al. 2014) with a multistage
// cp.async ring (see Pipeline in conv2d_fast_tiling.hpp for the wait and
// barrier argument). One block owns a tile of one group's C over one depth
// split; with several splits it writes partial sums to the workspace.
template <class Op, class T, class Math>
__global__ void __launch_bounds__(T::kThreads)
    fast_implicit_gemm_kernel(Op op, FastGrid grid, const float* __restrict__ a,
                              const float* __restrict__ b, const float* __restrict__ bias,
                              float* __restrict__ c, int vectors_a, int vectors_b) {
  using Layout = typename Math::template Layout<T>;
  using Ring = MainPipeline;
  __shared__ __align__(16) float smem[Layout::kFloats];
  const int tid = static_cast<int>(threadIdx.x);
  const FastBlock blk = fast_block(grid, op.depth(), static_cast<int>(blockIdx.x));
  ATileLoader<Op, T> a_tiles;
  BTileLoader<Op, T> b_tiles;
  a_tiles.init(op, blk, tid);
  b_tiles.init(op, blk, tid);
  const CpAsyncCopy copy_a{smem, a}, copy_b{smem, b};
  const int tiles = block_k_tiles(blk);
  auto load = [&](int t) {
    const int k0 = blk.k_begin + t * kTileK, stage = Ring::stage_of(t);
    a_tiles.template load<Layout>(op, blk, k0, stage, tid, vectors_a != 0, copy_a);
    b_tiles.template load<Layout>(op, blk, k0, stage, tid, vectors_b != 0, copy_b);
  };

  DLRT_UNROLL
  for (int t = 0; t < Ring::kPrologue; ++t) {
    if (t < tiles) load(t);
    cp_async_commit();  // empty groups too: group g is always k-tile g
  }
  float acc[8][8] = {};
  for (int it = 0; it < tiles; ++it) {
    cp_async_wait<Ring::kWaitPending>();
    __syncthreads();
    const int next = Ring::tile_loaded_in_iteration(it);
    if (next < tiles) load(next);
    cp_async_commit();
    Math::template multiply<T>(smem, Ring::stage_of(it), tid, acc);
  }
  cp_async_wait<0>();
  store_block<Op, typename Math::template Threads<T>>(op, blk, tid, grid.splits, bias, c, acc);
}

// C from the split partials, summed in split order, plus the bias of its row.
template <class Op>
__global__ void __launch_bounds__(kElementwiseThreads)
    split_reduce_kernel(SplitReduce<Op> reduce, const float* __restrict__ partials,
                        const float* __restrict__ bias, float* __restrict__ c) {
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i >= reduce.slice) return;
  const typename SplitReduce<Op>::Target t = reduce.target(i);
  const float sum = cuda_conv2d::split_sum(partials, reduce.splits, reduce.slice, i);
  c[t.offset] = bias != nullptr ? sum + bias[t.bias_index] : sum;
}

// out[i] = sum over chunks of partials[chunk * slice + i], in chunk order.
__global__ void __launch_bounds__(kElementwiseThreads)
    chunk_sum_kernel(const float* __restrict__ partials, int chunks, int slice,
                     float* __restrict__ out) {
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < slice) out[i] = cuda_conv2d::split_sum(partials, chunks, slice, i);
}

// ---------------------------------------------------------------------------
// Depthwise: the convolution's definition (conv.hpp) evaluated directly, a
// plane tile per block, its inputs staged once in a shared-memory patch.

// Forward: the x patch of a 32-wide output tile, then each of the channel's
// K/g filters in turn over it.
__global__ void __launch_bounds__(kDepthwiseThreads)
    depthwise_forward_kernel(DepthwiseForward dw, const float* __restrict__ x,
                             const float* __restrict__ w, const float* __restrict__ bias,
                             float* __restrict__ y) {
  extern __shared__ __align__(16) float dynamic_smem[];
  const ConvDims& d = dw.d;
  float* patch = dynamic_smem;
  float* filter = dynamic_smem + dw.patch_rows * dw.patch_cols;
  const int tid = static_cast<int>(threadIdx.x);
  const int lx = tid % kDepthwiseTileCols, ly0 = tid / kDepthwiseTileCols;
  const DepthwiseForward::Block b = dw.block(static_cast<int>(blockIdx.x));
  for (int e = tid; e < dw.patch_rows * dw.patch_cols; e += kDepthwiseThreads) {
    const int src = dw.patch_source(b, e);
    patch[e] = src >= 0 ? __ldg(x + src) : 0.0f;
  }
  const int rows_per_thread = dw.tile_rows / kDepthwiseThreadRows;
  for (int j = 0; j < d.Kg; ++j) {
    const int k = b.c * d.Kg + j;
    __syncthreads();  // the patch is complete, and nobody reads the last filter
    for (int t = tid; t < d.R * d.S; t += kDepthwiseThreads)
      filter[t] = __ldg(w + k * d.R * d.S + t);
    __syncthreads();
    const float add = bias != nullptr ? __ldg(bias + k) : 0.0f;
    for (int i = 0; i < rows_per_thread; ++i) {
      const int ly = ly0 + kDepthwiseThreadRows * i;
      if (b.p0 + ly >= d.P || b.q0 + lx >= d.Q) continue;
      float sum = add;
      for (int r = 0; r < d.R; ++r)
        for (int s = 0; s < d.S; ++s)
          sum += patch[dw.patch_index(ly, lx, r, s)] * filter[dw.filter_index(0, r, s)];
      y[dw.y_index(b, k, ly, lx)] = sum;
    }
  }
}

// Backward data as a gather over sub-pixel phases (Shi et al. 2016): each dx
// pixel visits only the taps on its stride grid, from a dy patch per filter.
__global__ void __launch_bounds__(kDepthwiseThreads)
    depthwise_backward_data_kernel(DepthwiseBackwardData dw, const float* __restrict__ dy,
                                   const float* __restrict__ w, float* __restrict__ dx) {
  constexpr int kMaxRows = 4;  // rows per thread, at most (depthwise_rows_per_thread)
  extern __shared__ __align__(16) float dynamic_smem[];
  const ConvDims& d = dw.d;
  float* patch = dynamic_smem;
  float* filter = dynamic_smem + dw.patch_rows * dw.patch_cols;
  const int tid = static_cast<int>(threadIdx.x);
  const int lx = tid % kDepthwiseTileCols, ly0 = tid / kDepthwiseTileCols;
  const DepthwiseBackwardData::Block b = dw.block(static_cast<int>(blockIdx.x));
  const int rows_per_thread = dw.tile_rows / kDepthwiseThreadRows;
  const DepthwiseBackwardData::AxisTaps cols = dw.col_taps(b, lx);
  float acc[kMaxRows] = {};
  for (int j = 0; j < d.Kg; ++j) {
    const int k = b.c * d.Kg + j;
    __syncthreads();  // nobody reads the last filter's patch any more
    for (int e = tid; e < dw.patch_rows * dw.patch_cols; e += kDepthwiseThreads) {
      const int src = dw.patch_source(b, k, e);
      patch[e] = src >= 0 ? __ldg(dy + src) : 0.0f;
    }
    for (int t = tid; t < d.R * d.S; t += kDepthwiseThreads)
      filter[t] = __ldg(w + k * d.R * d.S + t);
    __syncthreads();
    DLRT_UNROLL
    for (int i = 0; i < kMaxRows; ++i) {
      if (i >= rows_per_thread) break;
      const DepthwiseBackwardData::AxisTaps rows = dw.row_taps(b, ly0 + kDepthwiseThreadRows * i);
      float sum = acc[i];
      for (int t = 0; t < rows.taps; ++t) {
        const int r = rows.tap0 + t * rows.tap_step, pr = rows.first - t * rows.step;
        for (int u = 0; u < cols.taps; ++u) {
          const int s = cols.tap0 + u * cols.tap_step, pc = cols.first - u * cols.step;
          sum += patch[dw.patch_index(pr, pc)] * filter[dw.filter_index(0, r, s)];
        }
      }
      acc[i] = sum;
    }
  }
  DLRT_UNROLL
  for (int i = 0; i < kMaxRows; ++i) {
    const int ly = ly0 + kDepthwiseThreadRows * i;
    if (i < rows_per_thread && b.h0 + ly < d.H && b.w0 + lx < d.W)
      dx[dw.dx_index(b, ly, lx)] = acc[i];
  }
}

// Backward filter as a fixed-order reduction over positions: per tap,
// strided per-thread sums, a shuffle tree per warp (fixed xor order), then
// the warps' sums in warp order; chunks are added by chunk_sum_kernel.
__global__ void __launch_bounds__(kDepthwiseThreads)
    depthwise_backward_filter_kernel(DepthwiseBackwardFilter f, const float* __restrict__ x,
                                     const float* __restrict__ dy, float* __restrict__ out) {
  extern __shared__ __align__(16) float dynamic_smem[];
  const ConvDims& d = f.d;
  const int tid = static_cast<int>(threadIdx.x), lane = tid % 32, warp = tid / 32;
  const DepthwiseBackwardFilter::Block b = f.block(static_cast<int>(blockIdx.x));
  for (int r = 0; r < d.R; ++r)
    for (int s = 0; s < d.S; ++s) {
      float sum = 0.0f;
      for (int i = b.begin + tid; i < b.end; i += kDepthwiseThreads) {
        const DepthwiseBackwardFilter::Position at = f.position(b.k, i);
        const int src = f.x_offset(at, r, s);
        if (src >= 0) sum += __ldg(x + src) * __ldg(dy + at.dy);
      }
      DLRT_UNROLL
      for (int width = 16; width > 0; width /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, width);
      if (lane == 0) dynamic_smem[(r * d.S + s) * kDepthwiseWarps + warp] = sum;
    }
  __syncthreads();
  for (int tap = tid; tap < f.taps(); tap += kDepthwiseThreads) {
    float total = dynamic_smem[tap * kDepthwiseWarps];
    for (int v = 1; v < kDepthwiseWarps; ++v) total += dynamic_smem[tap * kDepthwiseWarps + v];
    out[f.partial_index(b, tap)] = total;
  }
}

// ---------------------------------------------------------------------------
// Backward bias, pass 1: one block per (channel, chunk), strided sums and a
// shared-memory tree (Harris 2007, "Optimizing Parallel Reduction in CUDA",
// sequential addressing). With one chunk it writes db itself.
__global__ void __launch_bounds__(kBiasThreads)
    bias_chunk_kernel(BiasReduction br, const float* __restrict__ dy, float* __restrict__ out) {
  __shared__ float partial[kBiasThreads];
  const int tid = static_cast<int>(threadIdx.x);
  const BiasReduction::Block b = br.block(static_cast<int>(blockIdx.x));
  float sum = 0.0f;
  for (int i = b.begin + tid; i < b.end; i += kBiasThreads) sum += __ldg(dy + br.dy_offset(b.k, i));
  partial[tid] = sum;
  __syncthreads();
  for (int width = kBiasThreads / 2; width > 0; width /= 2) {
    if (tid < width) partial[tid] += partial[tid + width];
    __syncthreads();
  }
  if (tid == 0) out[br.partial_index(b)] = partial[0];
}

// ---------------------------------------------------------------------------
// Launch plumbing.

void require(bool ok, const char* launcher, const std::string& why) {
  if (!ok) throw Error(Error::Kind::Internal, std::string(launcher) + ": " + why);
}

void check_config(const char* launcher, const FastConvConfig& c, Conv2dOp op, FastKernel kernel,
                  int variant, const ConvDims& d, const void* workspace,
                  std::size_t workspace_bytes) {
  require(c.applies, launcher, "the config does not apply: " + c.reason);
  require(c.op == op && c.kernel == kernel && c.variant == variant, launcher,
          "the config is for another launcher: " + describe(c));
  const std::size_t needed = fast_workspace_bytes(op, d, c);
  require(workspace_bytes >= needed && (needed == 0 || workspace != nullptr), launcher,
          "needs " + std::to_string(needed) + " bytes of workspace, got " +
              std::to_string(workspace_bytes));
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

template <bool kVariant4, class Fn>
void with_math(MathMode mode, Fn&& fn) {
  if constexpr (kVariant4) {
    if (mode == MathMode::Tf32x3) {
      fn(Variant4Mma<true>{});
    } else {
      fn(Variant4Mma<false>{});
    }
  } else {
    fn(Variant3Ffma{});
  }
}

// One GEMM: the tile kernel, then (with several splits) the split reduction.
template <class T, class Math, class Op>
void run_gemm(const Op& op, int splits, const float* a, const float* b, const float* bias, float* c,
              void* workspace, cudaStream_t stream) {
  const FastGrid grid = make_fast_grid(op, T::kM, T::kN, splits);
  const std::int64_t blocks = grid_blocks(grid);
  if (blocks == 0) return;
  float* out = grid.splits > 1 ? static_cast<float*>(workspace) : c;
  fast_implicit_gemm_kernel<Op, T, Math><<<static_cast<unsigned>(blocks), T::kThreads, 0, stream>>>(
      op, grid, a, b, bias, out, aligned16(a) ? 1 : 0, aligned16(b) ? 1 : 0);
  DLRT_CUDA_CHECK_LAUNCH();
  if (grid.splits == 1) return;
  const SplitReduce<Op> reduce(op, grid.splits);
  split_reduce_kernel<Op>
      <<<blocks_for(reduce.slice, kElementwiseThreads), kElementwiseThreads, 0, stream>>>(
          reduce, out, bias, c);
  DLRT_CUDA_CHECK_LAUNCH();
}

template <bool kVariant4>
void gemm_forward(const FastConvConfig& c, const ConvDims& d, const float* x, const float* w,
                  const float* bias, float* y, void* workspace, cudaStream_t stream) {
  with_tile(c.tile, [&](auto tile) {
    with_math<kVariant4>(c.mode, [&](auto math) {
      run_gemm<decltype(tile), decltype(math)>(ForwardFastGemm(d), c.splits, w, x, bias, y,
                                               workspace, stream);
    });
  });
}

// One GEMM per sub-pixel phase; each writes its own dx pixels (a phase
// without taps writes zeros), so they may run in any order.
template <bool kVariant4>
void gemm_backward_data(const FastConvConfig& c, const ConvDims& d, const float* dy, const float* w,
                        float* dx, void* workspace, cudaStream_t stream) {
  with_tile(c.tile, [&](auto tile) {
    with_math<kVariant4>(c.mode, [&](auto math) {
      for (int ph = 0; ph < d.stride_h; ++ph)
        for (int pw = 0; pw < d.stride_w; ++pw) {
          const BackwardDataFastGemm phase(d, ph, pw);
          run_gemm<decltype(tile), decltype(math)>(phase, phase_splits(c, phase), w, dy, nullptr,
                                                   dx, workspace, stream);
        }
    });
  });
}

template <bool kVariant4>
void gemm_backward_filter(const FastConvConfig& c, const ConvDims& d, const float* x,
                          const float* dy, float* dw, void* workspace, cudaStream_t stream) {
  with_tile(c.tile, [&](auto tile) {
    with_math<kVariant4>(c.mode, [&](auto math) {
      run_gemm<decltype(tile), decltype(math)>(BackwardFilterFastGemm(d), c.splits, dy, x, nullptr,
                                               dw, workspace, stream);
    });
  });
}

cudaStream_t as_stream(void* stream) { return static_cast<cudaStream_t>(stream); }

}  // namespace

// ---------------------------------------------------------------------------
// Launchers, one per variant and op.

void launch_forward_v3(const FastConvConfig& config, const ConvDims& d, const float* x,
                       const float* w, const float* bias, float* y, void* workspace,
                       std::size_t workspace_bytes, void* stream) {
  check_config("launch_forward_v3", config, Conv2dOp::Forward, FastKernel::ImplicitGemm, 3, d,
               workspace, workspace_bytes);
  gemm_forward<false>(config, d, x, w, bias, y, workspace, as_stream(stream));
}

void launch_backward_data_v3(const FastConvConfig& config, const ConvDims& d, const float* dy,
                             const float* w, float* dx, void* workspace,
                             std::size_t workspace_bytes, void* stream) {
  check_config("launch_backward_data_v3", config, Conv2dOp::BackwardData, FastKernel::ImplicitGemm,
               3, d, workspace, workspace_bytes);
  gemm_backward_data<false>(config, d, dy, w, dx, workspace, as_stream(stream));
}

void launch_backward_filter_v3(const FastConvConfig& config, const ConvDims& d, const float* x,
                               const float* dy, float* dw, void* workspace,
                               std::size_t workspace_bytes, void* stream) {
  check_config("launch_backward_filter_v3", config, Conv2dOp::BackwardFilter,
               FastKernel::ImplicitGemm, 3, d, workspace, workspace_bytes);
  gemm_backward_filter<false>(config, d, x, dy, dw, workspace, as_stream(stream));
}

void launch_forward_v4(const FastConvConfig& config, const ConvDims& d, const float* x,
                       const float* w, const float* bias, float* y, void* workspace,
                       std::size_t workspace_bytes, void* stream) {
  check_config("launch_forward_v4", config, Conv2dOp::Forward, FastKernel::ImplicitGemm, 4, d,
               workspace, workspace_bytes);
  gemm_forward<true>(config, d, x, w, bias, y, workspace, as_stream(stream));
}

void launch_backward_data_v4(const FastConvConfig& config, const ConvDims& d, const float* dy,
                             const float* w, float* dx, void* workspace,
                             std::size_t workspace_bytes, void* stream) {
  check_config("launch_backward_data_v4", config, Conv2dOp::BackwardData, FastKernel::ImplicitGemm,
               4, d, workspace, workspace_bytes);
  gemm_backward_data<true>(config, d, dy, w, dx, workspace, as_stream(stream));
}

void launch_backward_filter_v4(const FastConvConfig& config, const ConvDims& d, const float* x,
                               const float* dy, float* dw, void* workspace,
                               std::size_t workspace_bytes, void* stream) {
  check_config("launch_backward_filter_v4", config, Conv2dOp::BackwardFilter,
               FastKernel::ImplicitGemm, 4, d, workspace, workspace_bytes);
  gemm_backward_filter<true>(config, d, x, dy, dw, workspace, as_stream(stream));
}

void launch_forward_depthwise(const FastConvConfig& config, const ConvDims& d, const float* x,
                              const float* w, const float* bias, float* y, void* workspace,
                              std::size_t workspace_bytes, void* stream) {
  check_config("launch_forward_depthwise", config, Conv2dOp::Forward, FastKernel::Depthwise, 3, d,
               workspace, workspace_bytes);
  const DepthwiseForward dw(d, config.rows_per_thread);
  const auto smem = static_cast<std::size_t>(dw.smem_floats()) * sizeof(float);
  depthwise_forward_kernel<<<static_cast<unsigned>(dw.blocks()), kDepthwiseThreads, smem,
                             as_stream(stream)>>>(dw, x, w, bias, y);
  DLRT_CUDA_CHECK_LAUNCH();
}

void launch_backward_data_depthwise(const FastConvConfig& config, const ConvDims& d,
                                    const float* dy, const float* w, float* dx, void* workspace,
                                    std::size_t workspace_bytes, void* stream) {
  check_config("launch_backward_data_depthwise", config, Conv2dOp::BackwardData,
               FastKernel::Depthwise, 3, d, workspace, workspace_bytes);
  const DepthwiseBackwardData dw(d, config.rows_per_thread);
  const auto smem = static_cast<std::size_t>(dw.smem_floats()) * sizeof(float);
  depthwise_backward_data_kernel<<<static_cast<unsigned>(dw.blocks()), kDepthwiseThreads, smem,
                                   as_stream(stream)>>>(dw, dy, w, dx);
  DLRT_CUDA_CHECK_LAUNCH();
}

void launch_backward_filter_depthwise(const FastConvConfig& config, const ConvDims& d,
                                      const float* x, const float* dy, float* dw, void* workspace,
                                      std::size_t workspace_bytes, void* stream) {
  check_config("launch_backward_filter_depthwise", config, Conv2dOp::BackwardFilter,
               FastKernel::Depthwise, 3, d, workspace, workspace_bytes);
  const DepthwiseBackwardFilter f(d);
  const auto smem = static_cast<std::size_t>(f.smem_floats()) * sizeof(float);
  float* out = f.chunks > 1 ? static_cast<float*>(workspace) : dw;
  depthwise_backward_filter_kernel<<<static_cast<unsigned>(f.blocks()), kDepthwiseThreads, smem,
                                     as_stream(stream)>>>(f, x, dy, out);
  DLRT_CUDA_CHECK_LAUNCH();
  if (f.chunks == 1) return;
  chunk_sum_kernel<<<blocks_for(f.slice(), kElementwiseThreads), kElementwiseThreads, 0,
                     as_stream(stream)>>>(out, f.chunks, f.slice(), dw);
  DLRT_CUDA_CHECK_LAUNCH();
}

void launch_backward_bias_split(const FastConvConfig& config, const ConvDims& d, const float* dy,
                                float* db, void* workspace, std::size_t workspace_bytes,
                                void* stream) {
  check_config("launch_backward_bias_split", config, Conv2dOp::BackwardBias,
               FastKernel::BiasReduction, 3, d, workspace, workspace_bytes);
  const BiasReduction br(d.N, d.K, d.P * d.Q);
  float* out = br.chunks > 1 ? static_cast<float*>(workspace) : db;
  bias_chunk_kernel<<<static_cast<unsigned>(br.blocks()), kBiasThreads, 0, as_stream(stream)>>>(
      br, dy, out);
  DLRT_CUDA_CHECK_LAUNCH();
  if (br.chunks == 1) return;
  chunk_sum_kernel<<<blocks_for(d.K, kElementwiseThreads), kElementwiseThreads, 0,
                     as_stream(stream)>>>(out, br.chunks, d.K, db);
  DLRT_CUDA_CHECK_LAUNCH();
}

namespace {

constexpr FastConvLaunchers kLaunchers{
    launch_forward_v3,         launch_backward_data_v3,        launch_backward_filter_v3,
    launch_forward_v4,         launch_backward_data_v4,        launch_backward_filter_v4,
    launch_forward_depthwise,  launch_backward_data_depthwise, launch_backward_filter_depthwise,
    launch_backward_bias_split};

[[maybe_unused]] const bool kLaunchersRegistered = (fast_conv_launchers() = &kLaunchers, true);

}  // namespace
}  // namespace dlrt::detail::cuda_conv2d_fast
