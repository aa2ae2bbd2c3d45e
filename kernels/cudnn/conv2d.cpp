// The Cudnn convolution engine: cuDNN 9's convolution routines, kept as the
// yardstick that dlrt's own kernels are measured against.
//
//   forward          cudnnConvolutionForward, then cudnnAddTensor for the bias
//   backward data    cudnnConvolutionBackwardData
//   backward filter  cudnnConvolutionBackwardFilter
//   backward bias    cudnnConvolutionBackwardBias
//
// f32 NCHW tensors, KCRS filters, cross-correlation, groups through the
// convolution descriptor's group count. The descriptor's math type is
// CUDNN_FMA_MATH, so no algorithm rounds its inputs to TF32: results agree
// with an f32 reference to f32 tolerance.
//
// The algorithm of each problem is chosen once, when its plan is made:
// AlgoSearch::Heuristic takes the first qualifying entry of cuDNN's _v7
// heuristics, AlgoSearch::Exhaustive times every algorithm on the real
// tensors (cudnnFind*AlgorithmEx) and takes the fastest qualifying one. An
// algorithm qualifies when cuDNN reports it usable, its workspace fits the
// context's limit, it does not use tensor-op math and, in deterministic
// mode, it is deterministic. Deterministic mode always takes the heuristics'
// choice, so that the same problem runs the same algorithm in every process.
#include <cudnn.h>

#include <algorithm>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "dlrt/error.hpp"
#include "dlrt/tensor.hpp"
#include "kernels/cudnn/tensor_descriptor.hpp"
#include "runtime/context_impl.hpp"
#include "runtime/conv2d_engine.hpp"
#include "runtime/cuda_check.hpp"
#include "runtime/cuda_handles.hpp"
#include "runtime/log.hpp"

// cuDNN 9 deprecates the legacy convolution API in favour of its graph API;
// this engine stays on the legacy API, the direct route to the tuned kernels
// that dlrt is compared against.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

namespace dlrt::detail {
namespace {

constexpr float kOne = 1.0f;
constexpr float kZero = 0.0f;
constexpr std::int64_t kIntMax = std::numeric_limits<int>::max();

// Callers have checked every value against kIntMax in supports().
int to_int(std::int64_t value) { return static_cast<int>(value); }

// ------------------------------------------------------------ descriptors

class FilterDescriptor {
public:
  FilterDescriptor() { DLRT_CUDNN_CHECK(cudnnCreateFilterDescriptor(&desc_)); }
  ~FilterDescriptor() { static_cast<void>(cudnnDestroyFilterDescriptor(desc_)); }
  FilterDescriptor(const FilterDescriptor&) = delete;
  FilterDescriptor& operator=(const FilterDescriptor&) = delete;

  // A dense KCRS f32 filter (C is the channels per group).
  void set(std::int64_t k, std::int64_t c, std::int64_t r, std::int64_t s) {
    DLRT_CUDNN_CHECK(cudnnSetFilter4dDescriptor(desc_, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW,
                                                to_int(k), to_int(c), to_int(r), to_int(s)));
  }
  cudnnFilterDescriptor_t get() const { return desc_; }

private:
  cudnnFilterDescriptor_t desc_ = nullptr;
};

class ConvolutionDescriptor {
public:
  ConvolutionDescriptor() { DLRT_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&desc_)); }
  ~ConvolutionDescriptor() { static_cast<void>(cudnnDestroyConvolutionDescriptor(desc_)); }
  ConvolutionDescriptor(const ConvolutionDescriptor&) = delete;
  ConvolutionDescriptor& operator=(const ConvolutionDescriptor&) = delete;

  void set(const Conv2dGeometry& g) {
    DLRT_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(desc_, g.pad_h, g.pad_w, g.stride_h,
                                                     g.stride_w, g.dilation_h, g.dilation_w,
                                                     CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    DLRT_CUDNN_CHECK(cudnnSetConvolutionGroupCount(desc_, g.groups));
    // FMA only: the default math type lets Ampere and newer GPUs round f32
    // inputs to TF32 on tensor cores, which costs about three decimal digits.
    DLRT_CUDNN_CHECK(cudnnSetConvolutionMathType(desc_, CUDNN_FMA_MATH));
  }
  cudnnConvolutionDescriptor_t get() const { return desc_; }

private:
  cudnnConvolutionDescriptor_t desc_ = nullptr;
};

// Everything a convolution call describes: x is the input (dx for backward
// data), y the output (dy for the backward ops), w the filter (or dw).
struct ConvDescriptors {
  TensorDescriptor x, y;
  FilterDescriptor w;
  ConvolutionDescriptor conv;

  explicit ConvDescriptors(const Conv2dGeometry& g) {
    x.set(g.N, g.C, g.H, g.W);
    y.set(g.N, g.K, g.P, g.Q);
    w.set(g.K, g.c_per_group(), g.R, g.S);
    conv.set(g);
  }
};

// The per-channel bias (or its gradient) as a 1 x K x 1 x 1 tensor, which
// cuDNN broadcasts over N, P and Q.
void set_bias_descriptor(TensorDescriptor& desc, std::int64_t K) { desc.set(1, K, 1, 1); }

// The device pointers that an exhaustive search runs the algorithms on:
// forward (x, w -> y), backward data (dy, w -> dx), backward filter (x, dy -> dw).
struct Operands {
  const void* a = nullptr;
  const void* b = nullptr;
  void* out = nullptr;
};

// ------------------------------------------------------------ the three ops

template <Conv2dOp Op>
struct OpTraits;

template <>
struct OpTraits<Conv2dOp::Forward> {
  using Algo = cudnnConvolutionFwdAlgo_t;
  using Perf = cudnnConvolutionFwdAlgoPerf_t;
  static constexpr const char* kWhat = "forward";

  static int max_count(cudnnHandle_t handle) {
    int count = 0;
    DLRT_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(handle, &count));
    return count;
  }
  static int heuristics(cudnnHandle_t handle, const ConvDescriptors& d, std::vector<Perf>& perf) {
    int returned = 0;
    DLRT_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(
        handle, d.x.get(), d.w.get(), d.conv.get(), d.y.get(), static_cast<int>(perf.size()),
        &returned, perf.data()));
    return returned;
  }
  static int find(cudnnHandle_t handle, const ConvDescriptors& d, const Operands& o,
                  void* workspace, std::size_t workspace_bytes, std::vector<Perf>& perf) {
    int returned = 0;
    DLRT_CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithmEx(
        handle, d.x.get(), o.a, d.w.get(), o.b, d.conv.get(), d.y.get(), o.out,
        static_cast<int>(perf.size()), &returned, perf.data(), workspace, workspace_bytes));
    return returned;
  }
  static cudnnStatus_t workspace_size(cudnnHandle_t handle, const ConvDescriptors& d, Algo algo,
                                      std::size_t* bytes) {
    return cudnnGetConvolutionForwardWorkspaceSize(handle, d.x.get(), d.w.get(), d.conv.get(),
                                                   d.y.get(), algo, bytes);
  }
  // Every forward algorithm is deterministic.
  static bool nondeterministic_by_design(Algo) { return false; }
  static const char* name(Algo algo) {
    switch (algo) {
      case CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM:
        return "IMPLICIT_GEMM";
      case CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM:
        return "IMPLICIT_PRECOMP_GEMM";
      case CUDNN_CONVOLUTION_FWD_ALGO_GEMM:
        return "GEMM";
      case CUDNN_CONVOLUTION_FWD_ALGO_DIRECT:
        return "DIRECT";
      case CUDNN_CONVOLUTION_FWD_ALGO_FFT:
        return "FFT";
      case CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING:
        return "FFT_TILING";
      case CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD:
        return "WINOGRAD";
      case CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED:
        return "WINOGRAD_NONFUSED";
      case CUDNN_CONVOLUTION_FWD_ALGO_COUNT:
        break;
    }
    return "unknown";
  }
};

template <>
struct OpTraits<Conv2dOp::BackwardData> {
  using Algo = cudnnConvolutionBwdDataAlgo_t;
  using Perf = cudnnConvolutionBwdDataAlgoPerf_t;
  static constexpr const char* kWhat = "backward-data";

  static int max_count(cudnnHandle_t handle) {
    int count = 0;
    DLRT_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(handle, &count));
    return count;
  }
  static int heuristics(cudnnHandle_t handle, const ConvDescriptors& d, std::vector<Perf>& perf) {
    int returned = 0;
    DLRT_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(
        handle, d.w.get(), d.y.get(), d.conv.get(), d.x.get(), static_cast<int>(perf.size()),
        &returned, perf.data()));
    return returned;
  }
  static int find(cudnnHandle_t handle, const ConvDescriptors& d, const Operands& o,
                  void* workspace, std::size_t workspace_bytes, std::vector<Perf>& perf) {
    int returned = 0;
    DLRT_CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithmEx(
        handle, d.w.get(), o.b, d.y.get(), o.a, d.conv.get(), d.x.get(), o.out,
        static_cast<int>(perf.size()), &returned, perf.data(), workspace, workspace_bytes));
    return returned;
  }
  static cudnnStatus_t workspace_size(cudnnHandle_t handle, const ConvDescriptors& d, Algo algo,
                                      std::size_t* bytes) {
    return cudnnGetConvolutionBackwardDataWorkspaceSize(handle, d.w.get(), d.y.get(), d.conv.get(),
                                                        d.x.get(), algo, bytes);
  }
  // ALGO_0 scatters with atomic adds (cuDNN's documentation on reproducibility).
  static bool nondeterministic_by_design(Algo algo) {
    return algo == CUDNN_CONVOLUTION_BWD_DATA_ALGO_0;
  }
  static const char* name(Algo algo) {
    switch (algo) {
      case CUDNN_CONVOLUTION_BWD_DATA_ALGO_0:
        return "ALGO_0";
      case CUDNN_CONVOLUTION_BWD_DATA_ALGO_1:
        return "ALGO_1";
      case CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT:
        return "FFT";
      case CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING:
        return "FFT_TILING";
      case CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD:
        return "WINOGRAD";
      case CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED:
        return "WINOGRAD_NONFUSED";
      case CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT:
        break;
    }
    return "unknown";
  }
};

template <>
struct OpTraits<Conv2dOp::BackwardFilter> {
  using Algo = cudnnConvolutionBwdFilterAlgo_t;
  using Perf = cudnnConvolutionBwdFilterAlgoPerf_t;
  static constexpr const char* kWhat = "backward-filter";

  static int max_count(cudnnHandle_t handle) {
    int count = 0;
    DLRT_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(handle, &count));
    return count;
  }
  static int heuristics(cudnnHandle_t handle, const ConvDescriptors& d, std::vector<Perf>& perf) {
    int returned = 0;
    DLRT_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(
        handle, d.x.get(), d.y.get(), d.conv.get(), d.w.get(), static_cast<int>(perf.size()),
        &returned, perf.data()));
    return returned;
  }
  static int find(cudnnHandle_t handle, const ConvDescriptors& d, const Operands& o,
                  void* workspace, std::size_t workspace_bytes, std::vector<Perf>& perf) {
    int returned = 0;
    DLRT_CUDNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithmEx(
        handle, d.x.get(), o.a, d.y.get(), o.b, d.conv.get(), d.w.get(), o.out,
        static_cast<int>(perf.size()), &returned, perf.data(), workspace, workspace_bytes));
    return returned;
  }
  static cudnnStatus_t workspace_size(cudnnHandle_t handle, const ConvDescriptors& d, Algo algo,
                                      std::size_t* bytes) {
    return cudnnGetConvolutionBackwardFilterWorkspaceSize(handle, d.x.get(), d.y.get(),
                                                          d.conv.get(), d.w.get(), algo, bytes);
  }
  // ALGO_0 and ALGO_3 accumulate with atomic adds (cuDNN's documentation on reproducibility).
  static bool nondeterministic_by_design(Algo algo) {
    return algo == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0 ||
           algo == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3;
  }
  static const char* name(Algo algo) {
    switch (algo) {
      case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0:
        return "ALGO_0";
      case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1:
        return "ALGO_1";
      case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT:
        return "FFT";
      case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3:
        return "ALGO_3";
      case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD:
        return "WINOGRAD";
      case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED:
        return "WINOGRAD_NONFUSED";
      case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING:
        return "FFT_TILING";
      case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT:
        break;
    }
    return "unknown";
  }
};

// ------------------------------------------------------------ choosing an algorithm

struct AlgoChoice {
  bool ok = false;
  int algo = 0;                         // the op's cudnn*Algo_t value
  std::size_t workspace_bytes = 0;      // what the chosen algorithm needs
  std::size_t candidate_workspace = 0;  // the most any qualifying algorithm needs
  std::string reason;                   // why no algorithm qualifies, when !ok
};

bool is_not_supported(cudnnStatus_t status) {
  const int category = static_cast<int>(status) / 1000 * 1000;
  return category == CUDNN_STATUS_NOT_SUPPORTED || category == CUDNN_STATUS_BAD_PARAM;
}

// True, with the workspace that `perf`'s algorithm needs, when it qualifies
// under `options`; false, with `why` naming what disqualifies it, otherwise.
template <Conv2dOp Op>
bool qualifies(cudnnHandle_t handle, const ConvDescriptors& d,
               const typename OpTraits<Op>::Perf& perf, const ContextOptions& options,
               std::size_t* workspace_bytes, std::string* why) {
  using T = OpTraits<Op>;
  const std::string name = T::name(perf.algo);
  if (perf.status != CUDNN_STATUS_SUCCESS) {
    *why = name + ": " + cudnnGetErrorString(perf.status);
    return false;
  }
  if (perf.mathType == CUDNN_TENSOR_OP_MATH ||
      perf.mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) {
    *why = name + ": tensor-op math only";
    return false;
  }
  if (options.deterministic &&
      (perf.determinism != CUDNN_DETERMINISTIC || T::nondeterministic_by_design(perf.algo))) {
    *why = name + ": not deterministic";
    return false;
  }
  // The perf record's size, or the one cuDNN asks for when the algorithm
  // runs, whichever is larger.
  std::size_t bytes = 0;
  const cudnnStatus_t status = T::workspace_size(handle, d, perf.algo, &bytes);
  if (is_not_supported(status)) {
    *why = name + ": " + cudnnGetErrorString(status);
    return false;
  }
  DLRT_CUDNN_CHECK(status);
  bytes = std::max(bytes, perf.memory);
  if (bytes > options.workspace_limit_bytes) {
    *why = name + ": needs " + std::to_string(bytes) + " bytes of workspace";
    return false;
  }
  *workspace_bytes = bytes;
  return true;
}

std::string no_algorithm_reason(const char* what, const ContextOptions& options,
                                const std::string& rejected) {
  return std::string("no cuDNN ") + what + " algorithm qualifies under a workspace limit of " +
         std::to_string(options.workspace_limit_bytes) + " bytes" +
         (options.deterministic ? " in deterministic mode" : "") +
         (rejected.empty() ? std::string(" (cuDNN offered none)") : " (" + rejected + ")");
}

// The first qualifying algorithm in the heuristics' order (best first).
template <Conv2dOp Op>
AlgoChoice heuristic_choice(cudnnHandle_t handle, const Conv2dGeometry& g, const ConvDescriptors& d,
                            const ContextOptions& options) {
  using T = OpTraits<Op>;
  // A broken invariant, not a user error: cuDNN must derive the output shape
  // that conv2d_output_shape did.
  int n = 0, k = 0, p = 0, q = 0;
  DLRT_CUDNN_CHECK(
      cudnnGetConvolution2dForwardOutputDim(d.conv.get(), d.x.get(), d.w.get(), &n, &k, &p, &q));
  if (n != g.N || k != g.K || p != g.P || q != g.Q)
    throw Error(Error::Kind::Internal,
                "cuDNN derives the convolution output [" + std::to_string(n) + ", " +
                    std::to_string(k) + ", " + std::to_string(p) + ", " + std::to_string(q) +
                    "], dlrt [" + std::to_string(g.N) + ", " + std::to_string(g.K) + ", " +
                    std::to_string(g.P) + ", " + std::to_string(g.Q) + "]");

  std::vector<typename T::Perf> perf(static_cast<std::size_t>(std::max(T::max_count(handle), 1)));
  const int returned = T::heuristics(handle, d, perf);
  AlgoChoice choice;
  std::string rejected;
  std::vector<int> seen;
  for (int i = 0; i < returned; ++i) {
    const auto& candidate = perf[static_cast<std::size_t>(i)];
    std::size_t bytes = 0;
    std::string why;
    if (!qualifies<Op>(handle, d, candidate, options, &bytes, &why)) {
      // One reason per algorithm: the list may hold an algorithm once per math type.
      const int algo = static_cast<int>(candidate.algo);
      if (std::find(seen.begin(), seen.end(), algo) == seen.end()) {
        seen.push_back(algo);
        rejected += (rejected.empty() ? "" : "; ") + why;
      }
      continue;
    }
    if (!choice.ok) {
      choice.ok = true;
      choice.algo = static_cast<int>(candidate.algo);
      choice.workspace_bytes = bytes;
    }
    choice.candidate_workspace = std::max(choice.candidate_workspace, bytes);
  }
  if (!choice.ok) choice.reason = no_algorithm_reason(T::kWhat, options, rejected);
  return choice;
}

// The fastest qualifying algorithm, timed on scratch tensors of the
// problem's shapes (cudnnFind*AlgorithmEx runs every algorithm on them).
// Algorithms that need more workspace than any qualifying one are not
// timed, so the scratch buffer stays as small as the heuristics allow.
template <Conv2dOp Op>
AlgoChoice exhaustive_choice(cudnnHandle_t handle, const Conv2dGeometry& g,
                             const ConvDescriptors& d, const ContextOptions& options,
                             const AlgoChoice& heuristic, Device device) {
  using T = OpTraits<Op>;
  const std::size_t scratch_bytes = heuristic.candidate_workspace;
  std::vector<typename T::Perf> perf(static_cast<std::size_t>(std::max(T::max_count(handle), 1)));
  int returned = 0;
  try {
    const Shape xs{g.N, g.C, g.H, g.W}, ws{g.K, g.c_per_group(), g.R, g.S}, ys{g.N, g.K, g.P, g.Q};
    // Forward reads x, w and writes y; backward data reads dy, w and writes
    // dx; backward filter reads x, dy and writes dw (Operands' a, b, out).
    const Shape a = Op == Conv2dOp::BackwardData ? ys : xs;
    const Shape b = Op == Conv2dOp::BackwardFilter ? ys : ws;
    const Shape out = Op == Conv2dOp::Forward ? ys : Op == Conv2dOp::BackwardData ? xs : ws;
    Tensor ta = Tensor::zeros(a, device), tb = Tensor::zeros(b, device), tout(out, device);
    Tensor scratch;
    if (scratch_bytes > 0)
      scratch = Tensor(Shape{static_cast<std::int64_t>((scratch_bytes + 3) / 4)}, device);
    returned = T::find(handle, d, Operands{ta.data(), tb.data(), tout.data()},
                       scratch_bytes > 0 ? scratch.data() : nullptr, scratch_bytes, perf);
  } catch (const Error& e) {
    // The search is an optimisation: when it cannot run (its buffers do not
    // fit in device memory, or cuDNN refuses the search itself), the
    // heuristic choice still qualifies.
    log(LogLevel::Debug, "cudnn ", to_string(Op), ": the exhaustive search failed (", e.what(),
        "); keeping the heuristic choice");
    return heuristic;
  }
  for (int i = 0; i < returned; ++i) {
    const auto& candidate = perf[static_cast<std::size_t>(i)];
    std::size_t bytes = 0;
    std::string why;
    if (qualifies<Op>(handle, d, candidate, options, &bytes, &why) && bytes <= scratch_bytes) {
      AlgoChoice choice = heuristic;
      choice.algo = static_cast<int>(candidate.algo);
      choice.workspace_bytes = bytes;
      return choice;
    }
  }
  log(LogLevel::Debug, "cudnn ", to_string(Op), ": the exhaustive search found no usable ",
      "algorithm; keeping the heuristic choice");
  return heuristic;
}

// The algorithm for this problem under the plan's options. Deterministic
// mode keeps the heuristic choice even when the search is exhaustive: timing
// noise could pick a different (if deterministic) algorithm in the next
// process, and with it different rounding.
template <Conv2dOp Op>
AlgoChoice choose_algorithm(cudnnHandle_t handle, const Conv2dGeometry& g, const ConvDescriptors& d,
                            const ContextOptions& options, Device device) {
  using T = OpTraits<Op>;
  AlgoChoice choice = heuristic_choice<Op>(handle, g, d, options);
  if (choice.ok && options.algo_search == AlgoSearch::Exhaustive && !options.deterministic)
    choice = exhaustive_choice<Op>(handle, g, d, options, choice, device);
  if (choice.ok)
    log(LogLevel::Debug, "cudnn ", to_string(Op), ": algorithm ",
        T::name(static_cast<typename T::Algo>(choice.algo)), ", workspace ", choice.workspace_bytes,
        " bytes");
  return choice;
}

void set_device(const Context& ctx) { DLRT_CUDA_CHECK(cudaSetDevice(ctx.device().index)); }

std::string over_int_limit(const char* what, std::int64_t count) {
  return std::string(what) + " has " + std::to_string(count) +
         " elements, more than the 2^31 - 1 that cuDNN's int-sized descriptors can address";
}

// ------------------------------------------------------------ the kernel

// The plan of one problem: its descriptors and algorithm, made once.
class CudnnConv2dKernel final : public Conv2dKernel {
public:
  CudnnConv2dKernel(Conv2dOp op, const Conv2dGeometry& g, std::unique_ptr<ConvDescriptors> d,
                    const AlgoChoice& choice, std::string description)
      : Conv2dKernel(Engine::Cudnn, choice.workspace_bytes, std::move(description)),
        op_(op),
        d_(std::move(d)),
        algo_(choice.algo) {
    if (op == Conv2dOp::BackwardBias || op == Conv2dOp::Forward) set_bias_descriptor(bias_, g.K);
  }

  void run(Context& ctx, const Conv2dArgs& a, void* workspace) const override {
    set_device(ctx);
    cudnnHandle_t handle = cudnn_handle(ctx);
    const std::size_t bytes = workspace_bytes();
    switch (op_) {
      case Conv2dOp::Forward:
        // beta = 0: y is written without being read, so its old contents do not matter.
        DLRT_CUDNN_CHECK(cudnnConvolutionForward(handle, &kOne, d_->x.get(), a.x, d_->w.get(), a.w,
                                                 d_->conv.get(),
                                                 static_cast<cudnnConvolutionFwdAlgo_t>(algo_),
                                                 workspace, bytes, &kZero, d_->y.get(), a.y));
        if (a.bias != nullptr)
          DLRT_CUDNN_CHECK(
              cudnnAddTensor(handle, &kOne, bias_.get(), a.bias, &kOne, d_->y.get(), a.y));
        return;
      case Conv2dOp::BackwardData:
        DLRT_CUDNN_CHECK(cudnnConvolutionBackwardData(
            handle, &kOne, d_->w.get(), a.w, d_->y.get(), a.dy, d_->conv.get(),
            static_cast<cudnnConvolutionBwdDataAlgo_t>(algo_), workspace, bytes, &kZero,
            d_->x.get(), a.dx));
        return;
      case Conv2dOp::BackwardFilter:
        DLRT_CUDNN_CHECK(cudnnConvolutionBackwardFilter(
            handle, &kOne, d_->x.get(), a.x, d_->y.get(), a.dy, d_->conv.get(),
            static_cast<cudnnConvolutionBwdFilterAlgo_t>(algo_), workspace, bytes, &kZero,
            d_->w.get(), a.dw));
        return;
      case Conv2dOp::BackwardBias:
        // A single implementation, which cuDNN documents as reproducible; no workspace.
        DLRT_CUDNN_CHECK(cudnnConvolutionBackwardBias(handle, &kOne, d_->y.get(), a.dy, &kZero,
                                                      bias_.get(), a.db));
        return;
    }
  }

private:
  Conv2dOp op_;
  std::unique_ptr<ConvDescriptors> d_;
  TensorDescriptor bias_;
  int algo_;
};

// ------------------------------------------------------------ the engine

class CudnnConv2d final : public Conv2dEngine {
public:
  Engine engine() const override { return Engine::Cudnn; }

  Planned<Conv2dKernel> plan(Context& ctx, const Conv2dProblem& p) const override {
    using Result = Planned<Conv2dKernel>;
    if (p.variant != 0) return Result::no(no_kernel_variants(engine(), p.variant));
    const Conv2dGeometry& g = p.g;
    // Element counts bound every extent and every stride of the descriptors.
    if (g.y_elements() > kIntMax)
      return Result::no(over_int_limit(p.op == Conv2dOp::Forward ? "y" : "dy", g.y_elements()));
    if (p.op != Conv2dOp::BackwardBias) {
      if (g.x_elements() > kIntMax)
        return Result::no(
            over_int_limit(p.op == Conv2dOp::BackwardData ? "dx" : "x", g.x_elements()));
      if (g.w_elements() > kIntMax)
        return Result::no(
            over_int_limit(p.op == Conv2dOp::BackwardFilter ? "dw" : "w", g.w_elements()));
    }
    // Whether any algorithm qualifies under the workspace limit and
    // determinism is cuDNN's to say, through the context's handle.
    try {
      set_device(ctx);
      cudnnHandle_t handle = cudnn_handle(ctx);
      auto d = std::make_unique<ConvDescriptors>(g);
      AlgoChoice choice;
      std::string name;
      switch (p.op) {
        case Conv2dOp::Forward:
          choice = choose_algorithm<Conv2dOp::Forward>(handle, g, *d, p.options, ctx.device());
          name = OpTraits<Conv2dOp::Forward>::name(
              static_cast<cudnnConvolutionFwdAlgo_t>(choice.algo));
          break;
        case Conv2dOp::BackwardData:
          choice = choose_algorithm<Conv2dOp::BackwardData>(handle, g, *d, p.options, ctx.device());
          name = OpTraits<Conv2dOp::BackwardData>::name(
              static_cast<cudnnConvolutionBwdDataAlgo_t>(choice.algo));
          break;
        case Conv2dOp::BackwardFilter:
          choice =
              choose_algorithm<Conv2dOp::BackwardFilter>(handle, g, *d, p.options, ctx.device());
          name = OpTraits<Conv2dOp::BackwardFilter>::name(
              static_cast<cudnnConvolutionBwdFilterAlgo_t>(choice.algo));
          break;
        case Conv2dOp::BackwardBias:
          choice.ok = true;
          name = "cudnnConvolutionBackwardBias";
          break;
      }
      if (!choice.ok) return Result::no(choice.reason);
      return {std::make_shared<CudnnConv2dKernel>(p.op, g, std::move(d), choice, "cudnn " + name),
              {}};
    } catch (const Error& e) {
      // The error becomes the answer; clear it so that no later launch check reports it again.
      static_cast<void>(cudaGetLastError());
      return Result::no(std::string("cuDNN could not be asked about this problem: ") + e.what());
    }
  }
};

const Registrar<Conv2dEngine> registrar{std::make_unique<CudnnConv2d>()};

}  // namespace
}  // namespace dlrt::detail

#pragma GCC diagnostic pop
