// The Cudnn pooling engine: cudnnPoolingForward and cudnnPoolingBackward, the
// baseline dlrt's own kernels are measured against. It declines what cuDNN
// cannot express with dlrt's semantics:
//  - ceil_mode where the output size differs from cuDNN's floor formula;
//  - argmax indices (cuDNN outputs none);
//  - max backward: cuDNN needs x and y, not indices, and does not document
//    which of tied maxima, or which NaN, receives the gradient, whereas dlrt
//    promises the first in row-major order.
// Max forward propagates NaN (CUDNN_PROPAGATE_NAN) and returns the window's
// maximum value; only the sign of a zero maximum, when +0 and -0 tie, may
// differ from the first-wins rule.
#include <cudnn.h>

#include <climits>
#include <cstdint>
#include <memory>
#include <string>

#include "dlrt/error.hpp"
#include "kernels/cudnn/tensor_descriptor.hpp"
#include "runtime/cuda_check.hpp"
#include "runtime/cuda_handles.hpp"
#include "runtime/gpu.hpp"
#include "runtime/pool2d_engine.hpp"

// cuDNN 9 deprecates the legacy pooling API in favour of the graph API; the legacy calls stay the
// plain baseline.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

namespace dlrt::detail {
namespace {

struct PoolingDescDeleter {
  void operator()(cudnnPoolingStruct* d) const { cudnnDestroyPoolingDescriptor(d); }
};
using PoolingDesc = std::unique_ptr<cudnnPoolingStruct, PoolingDescDeleter>;

cudnnPoolingMode_t cudnn_mode(PoolMode mode) {
  switch (mode) {
    case PoolMode::Max:
      return CUDNN_POOLING_MAX_DETERMINISTIC;
    case PoolMode::AverageIncludePad:
      return CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING;
    case PoolMode::AverageExcludePad:
      return CUDNN_POOLING_AVERAGE_COUNT_EXCLUDE_PADDING;
  }
  return CUDNN_POOLING_MAX_DETERMINISTIC;
}

PoolingDesc pooling_desc(const Pool2dGeometry& g) {
  cudnnPoolingDescriptor_t raw = nullptr;
  DLRT_CUDNN_CHECK(cudnnCreatePoolingDescriptor(&raw));
  PoolingDesc desc(raw);
  DLRT_CUDNN_CHECK(cudnnSetPooling2dDescriptor(raw, cudnn_mode(g.mode), CUDNN_PROPAGATE_NAN,
                                               g.window_h, g.window_w, g.pad_h, g.pad_w, g.stride_h,
                                               g.stride_w));
  return desc;
}

// The plan of one problem: its descriptors, made once.
class CudnnPool2dKernel final : public Pool2dKernel {
public:
  CudnnPool2dKernel(Pool2dOp op, const Pool2dGeometry& g)
      : Pool2dKernel(Engine::Cudnn, 0,
                     op == Pool2dOp::Forward ? "cudnnPoolingForward" : "cudnnPoolingBackward"),
        op_(op),
        x_desc_(g.N, g.C, g.H, g.W),
        y_desc_(g.N, g.C, g.P, g.Q),
        pool_(pooling_desc(g)) {}

  // Backward reaches here for the averages only (the plan declines max).
  // cuDNN's signature takes x and y and needs them to be valid device
  // buffers of the right shape, but an average's gradient does not depend on
  // their values: dy stands in for y and dx for x. cuDNN may read x while it
  // writes dx; the values it reads there never reach the result.
  void run(Context& ctx, const Pool2dArgs& a, void*) const override {
    gpu::set_device(ctx.device().index);
    cudnnHandle_t handle = cudnn_handle(ctx);
    const float one = 1.0f, zero = 0.0f;
    if (op_ == Pool2dOp::Forward) {
      DLRT_CUDNN_CHECK(cudnnPoolingForward(handle, pool_.get(), &one, x_desc_.get(), a.x, &zero,
                                           y_desc_.get(), a.y));
      return;
    }
    DLRT_CUDNN_CHECK(cudnnPoolingBackward(handle, pool_.get(), &one, y_desc_.get(), a.dy,
                                          y_desc_.get(), a.dy, x_desc_.get(), a.dx, &zero,
                                          x_desc_.get(), a.dx));
  }

private:
  Pool2dOp op_;
  TensorDescriptor x_desc_, y_desc_;
  PoolingDesc pool_;
};

class CudnnPool2d final : public Pool2dEngine {
public:
  Engine engine() const override { return Engine::Cudnn; }

  Planned<Pool2dKernel> plan(Context&, const Pool2dProblem& p) const override {
    using Result = Planned<Pool2dKernel>;
    const Pool2dGeometry& g = p.g;
    if (p.variant != 0) return Result::no(no_kernel_variants(engine(), p.variant));
    // y can be the larger tensor: an even window, pad = window / 2 and
    // stride 1 give P = H + 1.
    if (g.x_elements() > INT_MAX || g.y_elements() > INT_MAX)
      return Result::no("cuDNN's 4-d tensor descriptors hold at most 2^31 - 1 elements (x has " +
                        std::to_string(g.x_elements()) + ", y has " +
                        std::to_string(g.y_elements()) + ")");
    if (g.ceil_mode) {
      const std::int64_t P = pool2d_output_extent(g.H, g.window_h, g.stride_h, g.pad_h, false);
      const std::int64_t Q = pool2d_output_extent(g.W, g.window_w, g.stride_w, g.pad_w, false);
      if (P != g.P || Q != g.Q)
        return Result::no("ceil_mode gives a " + std::to_string(g.P) + "x" + std::to_string(g.Q) +
                          " output here, but cuDNN has only the floor " + "formula (" +
                          std::to_string(P) + "x" + std::to_string(Q) + ")");
    }
    if (p.op == Pool2dOp::Forward && p.saved == Pool2dSavedKind::Indices)
      return Result::no("cuDNN's pooling does not output argmax indices");
    if (p.op == Pool2dOp::Backward && g.mode == PoolMode::Max) {
      if (p.saved != Pool2dSavedKind::Input)
        return Result::no("cuDNN's max-pooling backward needs x and y, not indices");
      return Result::no(
          "cuDNN does not document which of tied maxima (or which NaN) receives the gradient; "
          "dlrt gives it to the first in row-major order");
    }
    try {
      return {std::make_shared<CudnnPool2dKernel>(p.op, g), {}};
    } catch (const Error& e) {
      return Result::no(std::string("cuDNN could not describe this problem: ") + e.what());
    }
  }
};

const Registrar<Pool2dEngine> registrar{std::make_unique<CudnnPool2d>()};

}  // namespace
}  // namespace dlrt::detail

#pragma GCC diagnostic pop
