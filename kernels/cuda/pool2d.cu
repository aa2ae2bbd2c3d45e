// The Cuda pooling engine.
//   forward:    one thread per output (pool2d_indexing.hpp's forward_one);
//               consecutive threads take consecutive q, so y's writes coalesce.
//   backward 1: a gather, one thread per input element summing the outputs
//               whose window covers it in a fixed order: deterministic, no
//               atomics. Max from x and y first writes the argmax into the
//               workspace when it fits, else each thread finds it again.
//   backward 2: a scatter, one thread per output, atomicAdd into dx; kept for
//               comparison, as its float sums' order is the hardware's.
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <string>
#include <type_traits>

#include "kernels/cuda/pool2d_indexing.hpp"
#include "kernels/cuda/pool2d_variants.hpp"
#include "runtime/context_impl.hpp"
#include "runtime/cuda_check.hpp"
#include "runtime/cuda_handles.hpp"
#include "runtime/gpu.hpp"
#include "runtime/pool2d_engine.hpp"

namespace dlrt::detail {
namespace {

using cuda_pool2d::Plane;

constexpr int kBlock = 256;

// ---- kernels: a grid-stride loop around one thread body each ----

template <class Index>
__device__ Index first_thread() {
  return static_cast<Index>(blockIdx.x) * static_cast<Index>(blockDim.x) +
         static_cast<Index>(threadIdx.x);
}
template <class Index>
__device__ Index grid_threads() {
  return static_cast<Index>(gridDim.x) * static_cast<Index>(blockDim.x);
}

template <PoolMode kMode, class Index>
__global__ void __launch_bounds__(kBlock)
    forward_kernel(const float* __restrict__ x, float* __restrict__ y,
                   std::int32_t* __restrict__ indices, Plane g, Index count) {
  for (Index i = first_thread<Index>(); i < count; i += grid_threads<Index>())
    cuda_pool2d::forward_one<kMode>(x, y, indices, g, i);
}

template <class Index>
__global__ void __launch_bounds__(kBlock)
    argmax_kernel(const float* __restrict__ x, std::int32_t* __restrict__ indices, Plane g,
                  Index count) {
  for (Index i = first_thread<Index>(); i < count; i += grid_threads<Index>())
    cuda_pool2d::argmax_one(x, indices, g, i);
}

template <PoolMode kMode, bool kFromIndices, class Index>
__global__ void __launch_bounds__(kBlock)
    gather_kernel(const float* __restrict__ dy, const std::int32_t* __restrict__ indices,
                  const float* __restrict__ x, float* __restrict__ dx, Plane g, Index count) {
  for (Index i = first_thread<Index>(); i < count; i += grid_threads<Index>())
    cuda_pool2d::gather_one<kMode, kFromIndices>(dy, indices, x, dx, g, i);
}

template <PoolMode kMode, bool kFromIndices, class Index>
__global__ void __launch_bounds__(kBlock)
    scatter_kernel(const float* __restrict__ dy, const std::int32_t* __restrict__ indices,
                   const float* __restrict__ x, float* dx, Plane g, Index count) {
  for (Index i = first_thread<Index>(); i < count; i += grid_threads<Index>())
    cuda_pool2d::scatter_one<kMode, kFromIndices>(dy, indices, x, dx, g, i);
}

// ---- host side ----

Plane plane_of(const Pool2dGeometry& g) {
  return {static_cast<int>(g.H),
          static_cast<int>(g.W),
          static_cast<int>(g.P),
          static_cast<int>(g.Q),
          g.window_h,
          g.window_w,
          g.stride_h,
          g.stride_w,
          g.pad_h,
          g.pad_w};
}

// Grid-stride loops cap the grid at 2^28 threads.
unsigned blocks_for(std::int64_t count) {
  return static_cast<unsigned>(
      std::min<std::int64_t>((count + kBlock - 1) / kBlock, std::int64_t{1} << 20));
}

// int32 arithmetic when every linear index (of x and of y, which kernels
// address through plane offsets) and every i + grid threads fit; else int64.
template <class Fn>
void with_index_type(const Pool2dGeometry& g, Fn&& fn) {
  if (std::max(g.x_elements(), g.y_elements()) <= INT_MAX / 2)
    fn(std::int32_t{});
  else
    fn(std::int64_t{});
}

template <PoolMode kMode>
using ModeConstant = std::integral_constant<PoolMode, kMode>;

template <class Fn>
void with_mode(PoolMode mode, Fn&& fn) {
  switch (mode) {
    case PoolMode::Max:
      fn(ModeConstant<PoolMode::Max>{});
      return;
    case PoolMode::AverageIncludePad:
      fn(ModeConstant<PoolMode::AverageIncludePad>{});
      return;
    case PoolMode::AverageExcludePad:
      fn(ModeConstant<PoolMode::AverageExcludePad>{});
      return;
  }
}

template <class Fn>
void with_bool(bool value, Fn&& fn) {
  if (value)
    fn(std::true_type{});
  else
    fn(std::false_type{});
}

void launch_argmax(cudaStream_t stream, const Pool2dGeometry& g, const float* x,
                   std::int32_t* indices) {
  const Plane plane = plane_of(g);
  const std::int64_t count = g.y_elements();
  with_index_type(g, [&](auto index) {
    using Index = decltype(index);
    argmax_kernel<Index>
        <<<blocks_for(count), kBlock, 0, stream>>>(x, indices, plane, static_cast<Index>(count));
    DLRT_CUDA_CHECK_LAUNCH();
  });
}

// Variant 1. Max without indices first finds the argmax of every window
// into `argmax` (y's element count of i32, planned when it fits the
// workspace limit; null otherwise, and the gather finds it per input).
void launch_backward_gather(cudaStream_t stream, const Pool2dGeometry& g, const float* dy,
                            float* dx, const std::int32_t* indices, const float* x,
                            std::int32_t* argmax) {
  const Plane plane = plane_of(g);
  if (g.mode == PoolMode::Max && indices == nullptr && argmax != nullptr) {
    launch_argmax(stream, g, x, argmax);
    indices = argmax;
  }
  const std::int64_t count = g.x_elements();
  with_mode(g.mode, [&](auto mode) {
    with_bool(indices != nullptr, [&](auto from_indices) {
      with_index_type(g, [&](auto index) {
        using Index = decltype(index);
        gather_kernel<decltype(mode)::value, decltype(from_indices)::value, Index>
            <<<blocks_for(count), kBlock, 0, stream>>>(dy, indices, x, dx, plane,
                                                       static_cast<Index>(count));
        DLRT_CUDA_CHECK_LAUNCH();
      });
    });
  });
}

// Variant 2.
void launch_backward_scatter(cudaStream_t stream, const Pool2dGeometry& g, const float* dy,
                             float* dx, const std::int32_t* indices, const float* x) {
  const Plane plane = plane_of(g);
  DLRT_CUDA_CHECK(
      cudaMemsetAsync(dx, 0, static_cast<std::size_t>(g.x_elements()) * sizeof(float), stream));
  const std::int64_t count = g.y_elements();
  with_mode(g.mode, [&](auto mode) {
    with_bool(indices != nullptr, [&](auto from_indices) {
      with_index_type(g, [&](auto index) {
        using Index = decltype(index);
        scatter_kernel<decltype(mode)::value, decltype(from_indices)::value, Index>
            <<<blocks_for(count), kBlock, 0, stream>>>(dy, indices, x, dx, plane,
                                                       static_cast<Index>(count));
        DLRT_CUDA_CHECK_LAUNCH();
      });
    });
  });
}

// DLRT_CUDA_POOL2D_BACKWARD_VARIANT, read once: the default of plans that
// leave the choice to the engine.
int environment_backward_variant() {
  static const int variant =
      variant_from_environment("DLRT_CUDA_POOL2D_BACKWARD_VARIANT", kCudaPool2dBackwardVariants);
  return variant;
}

void forward(cudaStream_t stream, const Pool2dGeometry& g, const float* x, float* y,
             std::int32_t* indices) {
  const Plane plane = plane_of(g);
  const std::int64_t count = g.y_elements();
  with_mode(g.mode, [&](auto mode) {
    with_index_type(g, [&](auto index) {
      using Index = decltype(index);
      forward_kernel<decltype(mode)::value, Index><<<blocks_for(count), kBlock, 0, stream>>>(
          x, y, indices, plane, static_cast<Index>(count));
      DLRT_CUDA_CHECK_LAUNCH();
    });
  });
}

class CudaPool2d final : public Pool2dEngine {
public:
  Engine engine() const override { return Engine::Cuda; }

  Planned<Pool2dKernel> plan(Context&, const Pool2dProblem& p) const override {
    using Result = Planned<Pool2dKernel>;
    const Pool2dGeometry& g = p.g;
    if (!cuda_pool2d::fits_int(g.H, g.W, g.P, g.Q, g.window_h, g.window_w, g.pad_h, g.pad_w))
      return Result::no("the kernels index a plane in int, but H*W = " + std::to_string(g.H * g.W) +
                        ", P*Q = " + std::to_string(g.P * g.Q) +
                        " or an extent plus pad plus window exceeds 2^31 - 1");
    if (p.op == Pool2dOp::Forward && p.variant != 0)
      return Result::no("pool2d_forward has a single Cuda kernel (variant " +
                        std::to_string(p.variant) + " was asked for)");
    if (p.variant < 0 || p.variant > kCudaPool2dBackwardVariants)
      return Result::no(
          "engine cuda has pool2d backward variants 1 (gather) and 2 (scatter), not " +
          std::to_string(p.variant));
    const int chosen = p.variant != 0 ? p.variant : environment_backward_variant();
    const int variant = chosen == 0 ? 1 : chosen;
    // The gather finds max pooling's argmax once per window when its i32
    // map fits the workspace limit, else per input element.
    std::size_t bytes = 0;
    if (p.op == Pool2dOp::Backward && variant == 1 && p.saved == Pool2dSavedKind::Input) {
      const auto argmax = static_cast<std::size_t>(g.y_elements()) * sizeof(std::int32_t);
      if (argmax <= p.options.workspace_limit_bytes) bytes = argmax;
    }
    std::string text = p.op == Pool2dOp::Forward ? std::string("cuda one thread per output")
                       : variant == 1            ? std::string("cuda variant 1 (gather)")
                                                 : std::string("cuda variant 2 (atomic scatter)");
    return {make_pool2d_kernel(
                engine(), bytes, std::move(text),
                [g, variant, op = p.op](Context& ctx, const Pool2dArgs& a, void* workspace) {
                  gpu::set_device(ctx.device().index);
                  const cudaStream_t stream = cuda_stream(ctx);
                  if (op == Pool2dOp::Forward) return forward(stream, g, a.x, a.y, a.indices_out);
                  if (variant == 2)
                    return launch_backward_scatter(stream, g, a.dy, a.dx, a.indices, a.saved_x);
                  launch_backward_gather(stream, g, a.dy, a.dx, a.indices, a.saved_x,
                                         static_cast<std::int32_t*>(workspace));
                }),
            {}};
  }
};

const Registrar<Pool2dEngine> registrar{std::make_unique<CudaPool2d>()};

}  // namespace

}  // namespace dlrt::detail
