// The Cuda Pointwise engine: one grid-stride kernel per op, each thread
// reading an element's inputs before writing its output (add's out may be a
// or b). The formulas are the Cpu engine's, in float, so the two agree to
// the last bit except where the device's tanhf/expf differ from the host's.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "runtime/cuda_check.hpp"
#include "runtime/cuda_handles.hpp"
#include "runtime/gpu.hpp"
#include "runtime/pointwise_engine.hpp"

namespace dlrt::detail {
namespace {

using i64 = std::int64_t;
constexpr int kBlock = 256;

unsigned blocks_for(i64 count) {
  return static_cast<unsigned>(std::min<i64>((count + kBlock - 1) / kBlock, i64{1} << 16));
}

template <class Body>
__global__ void elementwise_kernel(i64 count, Body body) {
  const i64 stride = i64{gridDim.x} * blockDim.x;
  for (i64 i = i64{blockIdx.x} * blockDim.x + threadIdx.x; i < count; i += stride) body(i);
}

template <class Body>
void launch(cudaStream_t stream, i64 count, Body body) {
  elementwise_kernel<<<blocks_for(count), kBlock, 0, stream>>>(count, body);
  DLRT_CUDA_CHECK_LAUNCH();
}

struct ReluForward {
  const float* x;
  float* y;
  __device__ void operator()(i64 i) const { y[i] = x[i] > 0.0f ? x[i] : 0.0f; }
};
struct TanhForward {
  const float* x;
  float* y;
  __device__ void operator()(i64 i) const { y[i] = tanhf(x[i]); }
};
struct SigmoidForward {
  const float* x;
  float* y;
  __device__ void operator()(i64 i) const { y[i] = 1.0f / (1.0f + expf(-x[i])); }
};
// Derivatives from the forward output y (see nn_ops.hpp).
struct ReluBackward {
  const float *y, *dy;
  float* dx;
  __device__ void operator()(i64 i) const { dx[i] = y[i] > 0.0f ? dy[i] : 0.0f; }
};
struct TanhBackward {
  const float *y, *dy;
  float* dx;
  __device__ void operator()(i64 i) const { dx[i] = dy[i] * (1.0f - y[i] * y[i]); }
};
struct SigmoidBackward {
  const float *y, *dy;
  float* dx;
  __device__ void operator()(i64 i) const { dx[i] = dy[i] * (y[i] * (1.0f - y[i])); }
};
struct AddScaled {
  const float *a, *b;
  float* out;
  float alpha, beta;
  __device__ void operator()(i64 i) const {
    // __fmul_rn keeps nvcc from contracting to an FMA the Cpu engine does not use.
    out[i] = __fadd_rn(__fmul_rn(alpha, a[i]), __fmul_rn(beta, b[i]));
  }
};
struct Scaled {
  const float* x;
  float* out;
  float alpha;
  __device__ void operator()(i64 i) const { out[i] = alpha * x[i]; }
};

void run(cudaStream_t stream, const PointwiseProblem& p, const PointwiseArgs& a) {
  const i64 n = p.count;
  switch (p.op) {
    case PointwiseOp::ActivationForward:
      switch (p.activation) {
        case Activation::Relu:
          return launch(stream, n, ReluForward{a.a, a.out});
        case Activation::Tanh:
          return launch(stream, n, TanhForward{a.a, a.out});
        case Activation::Sigmoid:
          return launch(stream, n, SigmoidForward{a.a, a.out});
      }
      return;
    case PointwiseOp::ActivationBackward:
      switch (p.activation) {
        case Activation::Relu:
          return launch(stream, n, ReluBackward{a.a, a.b, a.out});
        case Activation::Tanh:
          return launch(stream, n, TanhBackward{a.a, a.b, a.out});
        case Activation::Sigmoid:
          return launch(stream, n, SigmoidBackward{a.a, a.b, a.out});
      }
      return;
    case PointwiseOp::Add:
      return launch(stream, n, AddScaled{a.a, a.b, a.out, a.alpha, a.beta});
    case PointwiseOp::Scale:
      return launch(stream, n, Scaled{a.a, a.out, a.alpha});
  }
}

class CudaPointwise final : public PointwiseEngine {
public:
  Engine engine() const override { return Engine::Cuda; }

  Planned<PointwiseKernel> plan(Context&, const PointwiseProblem& p) const override {
    return {make_pointwise_kernel(engine(), 0, "cuda grid-stride elementwise kernel",
                                  [p](Context& ctx, const PointwiseArgs& a, void*) {
                                    gpu::set_device(ctx.device().index);
                                    run(cuda_stream(ctx), p, a);
                                  }),
            {}};
  }
};

const Registrar<PointwiseEngine> registrar{std::make_unique<CudaPointwise>()};

}  // namespace
}  // namespace dlrt::detail
