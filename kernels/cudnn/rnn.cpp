// The Cudnn recurrent engine: cuDNN 9's RNN routines on whole sequences,
// the yardstick for dlrt's own recurrent kernels.
//
//   forward          cudnnRNNForward (INFERENCE without a saved state, TRAINING with one)
//   backward data    cudnnRNNBackwardData_v8
//   backward weights cudnnRNNBackwardWeights_v8 (CUDNN_WGRAD_MODE_ADD)
//
// x and y are padded, time-major (CUDNN_RNN_DATA_LAYOUT_SEQ_MAJOR_UNPACKED
// with CUDNN_RNN_PADDED_IO_ENABLED), with each sequence's length in the data
// descriptors' seqLengthArray; cuDNN runs each sequence, in both directions,
// over its own steps only, fills y past each length with the padding symbol
// (0) and returns each sequence's own last state in hy and cy. dx past each
// length is zeroed here after backward data.
//
// Math is f32 with CUDNN_FMA_MATH: no algorithm rounds to TF32, so results
// agree with the f32 Reference to f32 tolerance. The algorithm is the one
// the plan's variant names, never timed or searched, so deterministic mode
// runs the same algorithm in every process; cuDNN's reproducibility notes
// list no RNN routine as non-deterministic (they do note that cuBLAS, which
// the RNN routines call, reproduces only with one workspace configuration
// per stream: CUBLAS_WORKSPACE_CONFIG).
//   variant 0  CUDNN_RNN_ALGO_STANDARD
//   variant 1  CUDNN_RNN_ALGO_PERSIST_STATIC
//   variant 2  CUDNN_RNN_ALGO_PERSIST_STATIC_SMALL_H
//   variant 3  CUDNN_RNN_ALGO_PERSIST_DYNAMIC (kernels built at plan time, cudnnBuildRNNDynamic)
// The persistent algorithms need equal lengths, no projection and compute
// capability 6.0 or newer; whatever else cuDNN refuses shows at plan time as
// a failing cudnnSetRNNDescriptor_v8 / cudnnBuildRNNDynamic /
// cudnnGetRNNTempSpaceSizes status, and the plan declines with it.
//
// Weights: dlrt's flat tensor is in PyTorch's order; cuDNN's weight space has
// its own. The plan asks cudnnGetRNNWeightParams where each gate's matrix and
// bias lies (on a fake base address: the offsets are all it needs), pairs
// each region with its run of the flat tensor (rnn_weights.hpp) and merges
// the runs contiguous in both; each run copies them with one
// cudaMemcpyAsync per merged run on the context's stream.
//
// Workspace: cuDNN's weight space (the weights, or dW), then cuDNN's
// temporary space. A training state holds cuDNN's reserve space and a copy
// of y (cuDNN's backward reads y, which is the caller's to overwrite).
// cuDNN API pages relied on, one line each:
//   https://docs.nvidia.com/deeplearning/cudnn/latest/api/cudnn-adv-library.html#cudnnsetrnndescriptor-v8
//   https://docs.nvidia.com/deeplearning/cudnn/latest/api/cudnn-adv-library.html#cudnnsetrnndatadescriptor
//   https://docs.nvidia.com/deeplearning/cudnn/latest/api/cudnn-adv-library.html#cudnngetrnnweightparams
//   https://docs.nvidia.com/deeplearning/cudnn/latest/api/cudnn-adv-library.html#cudnngetrnntempspacesizes
//   https://docs.nvidia.com/deeplearning/cudnn/latest/api/cudnn-adv-library.html#cudnnrnnforward
//   https://docs.nvidia.com/deeplearning/cudnn/latest/api/cudnn-adv-library.html#cudnnrnnbackwarddata-v8
//   https://docs.nvidia.com/deeplearning/cudnn/latest/api/cudnn-adv-library.html#cudnnrnnbackwardweights-v8
//   https://docs.nvidia.com/deeplearning/cudnn/latest/api/cudnn-adv-library.html#cudnnrnnalgo-t
//   https://docs.nvidia.com/deeplearning/cudnn/latest/api/cudnn-adv-library.html#cudnnbuildrnndynamic
//   https://docs.nvidia.com/deeplearning/cudnn/latest/developer/misc.html#reproducibility-determinism
#include <cuda_runtime.h>
#include <cudnn.h>

#include <algorithm>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dlrt/error.hpp"
#include "dlrt/rnn.hpp"
#include "kernels/cudnn/rnn_weights.hpp"
#include "runtime/allocator.hpp"
#include "runtime/cuda_check.hpp"
#include "runtime/cuda_handles.hpp"
#include "runtime/gpu.hpp"
#include "runtime/log.hpp"
#include "runtime/rnn_engine.hpp"

namespace dlrt::detail {
namespace {

using cudnn_rnn::FlatLayout;
using cudnn_rnn::FlatRegion;
using cudnn_rnn::ShortSequence;
using cudnn_rnn::WeightCopy;
using cudnn_rnn::WorkspaceLayout;

// The padding symbol of the data descriptors: cuDNN reads it from host memory.
float padding_fill = 0.0f;

// An address standing in for the weight space when the plan asks where each
// region lies: cudnnGetRNNWeightParams only adds offsets to it. Not null
// (cuDNN may reject a null weight space) and aligned to 4 GiB (cuDNN may
// check the alignment).
const void* const kFakeWeightBase = reinterpret_cast<const void*>(std::uintptr_t{1} << 32);

// ------------------------------------------------------------ descriptors

struct RnnDescDeleter {
  void operator()(cudnnRNNStruct* d) const { static_cast<void>(cudnnDestroyRNNDescriptor(d)); }
};
struct RnnDataDescDeleter {
  void operator()(cudnnRNNDataStruct* d) const {
    static_cast<void>(cudnnDestroyRNNDataDescriptor(d));
  }
};
struct TensorDescDeleter {
  void operator()(cudnnTensorStruct* d) const {
    static_cast<void>(cudnnDestroyTensorDescriptor(d));
  }
};
struct DropoutDescDeleter {
  void operator()(cudnnDropoutStruct* d) const {
    static_cast<void>(cudnnDestroyDropoutDescriptor(d));
  }
};
using RnnDesc = std::unique_ptr<cudnnRNNStruct, RnnDescDeleter>;
using RnnDataDesc = std::unique_ptr<cudnnRNNDataStruct, RnnDataDescDeleter>;
using TensorDesc = std::unique_ptr<cudnnTensorStruct, TensorDescDeleter>;
using DropoutDesc = std::unique_ptr<cudnnDropoutStruct, DropoutDescDeleter>;

RnnDesc make_rnn_desc() {
  cudnnRNNDescriptor_t raw = nullptr;
  DLRT_CUDNN_CHECK(cudnnCreateRNNDescriptor(&raw));
  return RnnDesc(raw);
}
RnnDataDesc make_data_desc() {
  cudnnRNNDataDescriptor_t raw = nullptr;
  DLRT_CUDNN_CHECK(cudnnCreateRNNDataDescriptor(&raw));
  return RnnDataDesc(raw);
}
TensorDesc make_tensor_desc() {
  cudnnTensorDescriptor_t raw = nullptr;
  DLRT_CUDNN_CHECK(cudnnCreateTensorDescriptor(&raw));
  return TensorDesc(raw);
}
// No dropout (dlrt has none): rate 0 and no state buffer, which cuDNN accepts
// without initialising a generator. The RNN descriptor refers to it, so it
// lives as long as the plan.
DropoutDesc make_no_dropout(cudnnHandle_t handle) {
  cudnnDropoutDescriptor_t raw = nullptr;
  DLRT_CUDNN_CHECK(cudnnCreateDropoutDescriptor(&raw));
  DropoutDesc desc(raw);
  DLRT_CUDNN_CHECK(cudnnSetDropoutDescriptor(raw, handle, 0.0f, nullptr, 0, 0));
  return desc;
}

// A dense [a, b, c] f32 tensor (h and c states).
void set_state_desc(cudnnTensorDescriptor_t desc, int a, int b, int c) {
  const int dims[3] = {a, b, c};
  const int strides[3] = {b * c, c, 1};
  DLRT_CUDNN_CHECK(cudnnSetTensorNdDescriptor(desc, CUDNN_DATA_FLOAT, 3, dims, strides));
}

cudnnRNNMode_t cudnn_mode(RnnCell cell) {
  switch (cell) {
    case RnnCell::Tanh:
      return CUDNN_RNN_TANH;
    case RnnCell::Relu:
      return CUDNN_RNN_RELU;
    case RnnCell::Lstm:
      return CUDNN_LSTM;
    case RnnCell::Gru:
      return CUDNN_GRU;
  }
  return CUDNN_LSTM;
}

struct AlgoChoice {
  cudnnRNNAlgo_t algo;
  const char* name;
};

// The algorithm of each variant (null name: no such variant).
AlgoChoice variant_algo(int variant) {
  switch (variant) {
    case 0:
      return {CUDNN_RNN_ALGO_STANDARD, "ALGO_STANDARD"};
    case 1:
      return {CUDNN_RNN_ALGO_PERSIST_STATIC, "ALGO_PERSIST_STATIC"};
    case 2:
      return {CUDNN_RNN_ALGO_PERSIST_STATIC_SMALL_H, "ALGO_PERSIST_STATIC_SMALL_H"};
    case 3:
      return {CUDNN_RNN_ALGO_PERSIST_DYNAMIC, "ALGO_PERSIST_DYNAMIC"};
    default:
      return {CUDNN_RNN_ALGO_STANDARD, nullptr};
  }
}

// Statuses that mean "cuDNN cannot do this", as opposed to a failure.
bool is_not_supported(cudnnStatus_t status) {
  const int category = static_cast<int>(status) / 1000 * 1000;
  return category == CUDNN_STATUS_NOT_SUPPORTED || category == CUDNN_STATUS_BAD_PARAM;
}

std::string refused(const char* call, cudnnStatus_t status) {
  return std::string(call) + " refuses it: " + cudnnGetErrorString(status);
}

// ------------------------------------------------------------ device memory

// A block of the device's caching allocator, given back (stream-ordered)
// when destroyed.
class DeviceBuffer {
public:
  DeviceBuffer() = default;
  DeviceBuffer(Device device, std::size_t bytes, void* stream, std::string_view op)
      : device_(device), bytes_(bytes) {
    if (bytes > 0) ptr_ = CachingAllocator::of(device).allocate(bytes, stream, op);
  }
  ~DeviceBuffer() {
    if (ptr_ != nullptr) CachingAllocator::of(device_).deallocate(ptr_);
  }
  DeviceBuffer(DeviceBuffer&& other) noexcept
      : device_(other.device_), bytes_(other.bytes_), ptr_(std::exchange(other.ptr_, nullptr)) {}
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    if (this != &other) {
      if (ptr_ != nullptr) CachingAllocator::of(device_).deallocate(ptr_);
      device_ = other.device_;
      bytes_ = other.bytes_;
      ptr_ = std::exchange(other.ptr_, nullptr);
    }
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* get() const { return ptr_; }
  std::size_t bytes() const { return bytes_; }

private:
  Device device_ = Device::cpu();
  std::size_t bytes_ = 0;
  void* ptr_ = nullptr;
};

// ------------------------------------------------------------ the plan

// Everything a plan chooses, made once.
struct CudnnRnnSetup {
  Device device = Device::cpu();
  std::int64_t T = 1, N = 1, I = 1;
  std::size_t y_bytes = 0;

  DropoutDesc dropout;
  RnnDesc rnn;
  RnnDataDesc x, y;
  TensorDesc h, c;

  std::size_t weight_bytes = 0;
  std::size_t temp_inference = 0, temp_training = 0, reserve_bytes = 0;
  WorkspaceLayout workspace;

  std::vector<WeightCopy> copies;
  bool copies_cover_space = true;
  // seqLengthArray on the device, for the routines' devSeqLengths argument.
  DeviceBuffer dev_lengths;
  std::vector<ShortSequence> short_sequences;
};

class CudnnRnnKernel;

// A training state's cuDNN data: the reserve space and y, for backward.
class CudnnRnnSaved final : public RnnSavedData {
public:
  CudnnRnnSaved(const CudnnRnnKernel* owner, Device device, std::size_t reserve_bytes,
                std::size_t y_bytes, void* stream)
      : owner_(owner),
        reserve_(device, reserve_bytes, stream, "rnn_forward (cuDNN reserve space)"),
        y_(device, y_bytes, stream, "rnn_forward (saved y)") {}

  const CudnnRnnKernel* owner() const { return owner_; }
  void* reserve() const { return reserve_.get(); }
  float* y() const { return static_cast<float*>(y_.get()); }

private:
  const CudnnRnnKernel* owner_;
  DeviceBuffer reserve_;
  DeviceBuffer y_;
};

class CudnnRnnKernel final : public RnnKernel {
public:
  CudnnRnnKernel(CudnnRnnSetup setup, std::string description)
      : RnnKernel(Engine::Cudnn, setup.workspace.total, std::move(description)),
        s_(std::move(setup)) {}

  void forward(Context& ctx, const RnnInputs& in, const RnnOutputs& out, void* workspace,
               std::shared_ptr<RnnSavedData>* saved) const override {
    gpu::set_device(ctx.device().index);
    cudnnHandle_t handle = cudnn_handle(ctx);
    cudaStream_t stream = cuda_stream(ctx);
    float* wspace = weight_space(workspace);
    scatter(in.w, wspace, stream);
    const int32_t* lengths = dev_lengths();
    if (saved == nullptr) {
      DLRT_CUDNN_CHECK(cudnnRNNForward(handle, s_.rnn.get(), CUDNN_FWD_MODE_INFERENCE, lengths,
                                       s_.x.get(), in.x, s_.y.get(), out.y, s_.h.get(), in.h0,
                                       out.hy, s_.c.get(), in.c0, out.cy, s_.weight_bytes, wspace,
                                       s_.temp_inference, temp(workspace), 0, nullptr));
      return;
    }
    // An earlier forward's data of this plan is reused: same sizes, no allocation.
    auto* mine = dynamic_cast<CudnnRnnSaved*>(saved->get());
    if (mine == nullptr || mine->owner() != this) {
      auto fresh = std::make_shared<CudnnRnnSaved>(this, s_.device, s_.reserve_bytes, s_.y_bytes,
                                                   static_cast<void*>(stream));
      mine = fresh.get();
      *saved = std::move(fresh);
    }
    DLRT_CUDNN_CHECK(cudnnRNNForward(
        handle, s_.rnn.get(), CUDNN_FWD_MODE_TRAINING, lengths, s_.x.get(), in.x, s_.y.get(), out.y,
        s_.h.get(), in.h0, out.hy, s_.c.get(), in.c0, out.cy, s_.weight_bytes, wspace,
        s_.temp_training, temp(workspace), s_.reserve_bytes, mine->reserve()));
    DLRT_CUDA_CHECK(
        cudaMemcpyAsync(mine->y(), out.y, s_.y_bytes, cudaMemcpyDeviceToDevice, stream));
  }

  void backward_data(Context& ctx, const RnnInputs& in, RnnSavedData& saved,
                     const RnnGradients& grad, void* workspace) const override {
    const CudnnRnnSaved& mine = own(saved);
    gpu::set_device(ctx.device().index);
    cudnnHandle_t handle = cudnn_handle(ctx);
    cudaStream_t stream = cuda_stream(ctx);
    // The workspace is scratch: the weights go into cuDNN's layout again.
    float* wspace = weight_space(workspace);
    scatter(in.w, wspace, stream);
    // Null dhy and dcy are zeros; null dhx and dcx are not computed.
    DLRT_CUDNN_CHECK(cudnnRNNBackwardData_v8(handle, s_.rnn.get(), dev_lengths(), s_.y.get(),
                                             mine.y(), grad.dy, s_.x.get(), grad.dx, s_.h.get(),
                                             in.h0, grad.dhy, grad.dh0, s_.c.get(), in.c0, grad.dcy,
                                             grad.dc0, s_.weight_bytes, wspace, s_.temp_training,
                                             temp(workspace), s_.reserve_bytes, mine.reserve()));
    // dx at t >= lengths[n]: each sequence's padded steps are a column of
    // T - length rows of I floats, N * I floats apart.
    const std::size_t row = static_cast<std::size_t>(s_.I) * sizeof(float);
    const std::size_t pitch = static_cast<std::size_t>(s_.N) * row;
    for (const ShortSequence& q : s_.short_sequences) {
      float* first = grad.dx + (static_cast<std::int64_t>(q.length) * s_.N + q.n) * s_.I;
      DLRT_CUDA_CHECK(cudaMemset2DAsync(first, pitch, 0, row,
                                        static_cast<std::size_t>(s_.T - q.length), stream));
    }
  }

  // cuDNN adds the gradient to dweightSpace (CUDNN_WGRAD_MODE_ADD): to
  // overwrite, the space starts at zero; to accumulate, it starts as dw in
  // cuDNN's layout. Either way it is then gathered into dw.
  void backward_weights(Context& ctx, const RnnInputs& in, const RnnSavedData& saved, float* dw,
                        bool accumulate, void* workspace) const override {
    const CudnnRnnSaved& mine = own(saved);
    gpu::set_device(ctx.device().index);
    cudnnHandle_t handle = cudnn_handle(ctx);
    cudaStream_t stream = cuda_stream(ctx);
    float* dspace = weight_space(workspace);
    if (accumulate)
      scatter(dw, dspace, stream);
    else
      DLRT_CUDA_CHECK(cudaMemsetAsync(dspace, 0, s_.weight_bytes, stream));
    DLRT_CUDNN_CHECK(cudnnRNNBackwardWeights_v8(
        handle, s_.rnn.get(), CUDNN_WGRAD_MODE_ADD, dev_lengths(), s_.x.get(), in.x, s_.h.get(),
        in.h0, s_.y.get(), mine.y(), s_.weight_bytes, dspace, s_.temp_training, temp(workspace),
        s_.reserve_bytes, mine.reserve()));
    for (const WeightCopy& c : s_.copies)
      DLRT_CUDA_CHECK(cudaMemcpyAsync(dw + c.flat, dspace + c.space,
                                      static_cast<std::size_t>(c.count) * sizeof(float),
                                      cudaMemcpyDeviceToDevice, stream));
  }

private:
  float* weight_space(void* workspace) const {
    return reinterpret_cast<float*>(static_cast<std::byte*>(workspace) +
                                    s_.workspace.weight_offset);
  }
  void* temp(void* workspace) const {
    return s_.workspace.temp_bytes == 0
               ? nullptr
               : static_cast<std::byte*>(workspace) + s_.workspace.temp_offset;
  }
  const int32_t* dev_lengths() const { return static_cast<const int32_t*>(s_.dev_lengths.get()); }

  // flat -> cuDNN's weight space; the gaps between regions (alignment) are
  // zeroed when there are any, so that cuDNN reads no stale bytes.
  void scatter(const float* flat, float* space, cudaStream_t stream) const {
    if (!s_.copies_cover_space) DLRT_CUDA_CHECK(cudaMemsetAsync(space, 0, s_.weight_bytes, stream));
    for (const WeightCopy& c : s_.copies)
      DLRT_CUDA_CHECK(cudaMemcpyAsync(space + c.space, flat + c.flat,
                                      static_cast<std::size_t>(c.count) * sizeof(float),
                                      cudaMemcpyDeviceToDevice, stream));
  }

  const CudnnRnnSaved& own(const RnnSavedData& saved) const {
    const auto* mine = dynamic_cast<const CudnnRnnSaved*>(&saved);
    if (mine == nullptr || mine->owner() != this)
      throw Error(Error::Kind::Internal,
                  "cudnn rnn: the training state was not filled by this plan's forward");
    return *mine;
  }

  CudnnRnnSetup s_;
};

// ------------------------------------------------------------ the engine

using Result = Planned<RnnKernel>;

// The weight-space regions of every pseudo-layer and linear-layer id, paired
// with the flat tensor's runs; empty string or why they do not fit.
std::string map_weights(cudnnHandle_t handle, const RnnProblem& p, CudnnRnnSetup& s) {
  const RnnParams& params = p.params;
  const FlatLayout flat(params);
  const int pseudo_layers = params.num_layers * p.directions();
  const int ids = cudnn_rnn::lin_layer_count(params);
  TensorDesc desc = make_tensor_desc();
  std::vector<WeightCopy> regions;

  // One region: its offset from the fake base and its element count.
  auto region = [&](int pseudo, int id, bool bias, FlatRegion want) -> std::string {
    void* addr = nullptr;
    const cudnnStatus_t status =
        bias ? cudnnGetRNNWeightParams(handle, s.rnn.get(), pseudo, s.weight_bytes, kFakeWeightBase,
                                       id, nullptr, nullptr, desc.get(), &addr)
             : cudnnGetRNNWeightParams(handle, s.rnn.get(), pseudo, s.weight_bytes, kFakeWeightBase,
                                       id, desc.get(), &addr, nullptr, nullptr);
    const std::string what = std::string(bias ? "bias" : "matrix") + " of pseudo-layer " +
                             std::to_string(pseudo) + ", linLayerID " + std::to_string(id);
    if (status != CUDNN_STATUS_SUCCESS) {
      if (is_not_supported(status)) return refused("cudnnGetRNNWeightParams", status);
      DLRT_CUDNN_CHECK(status);
    }
    // An absent region leaves the descriptor unset (zero dimensions): ask it only when present.
    if (addr == nullptr)
      return "cuDNN's weight space has no " + what + " (dlrt expects " +
             std::to_string(want.count) + " values)";
    cudnnDataType_t type = CUDNN_DATA_FLOAT;
    int rank = 0;
    int dims[3] = {0, 0, 0}, strides[3] = {0, 0, 0};
    DLRT_CUDNN_CHECK(cudnnGetTensorNdDescriptor(desc.get(), 3, &type, &rank, dims, strides));
    if (rank == 0)
      return "cuDNN reports an empty " + what + " (dlrt expects " + std::to_string(want.count) +
             " values)";
    std::int64_t count = 1;
    for (int i = 0; i < rank && i < 3; ++i) count *= dims[i];
    // Addresses as integers: the two pointers point into no common object.
    const std::int64_t bytes = static_cast<std::int64_t>(
        reinterpret_cast<std::uintptr_t>(addr) - reinterpret_cast<std::uintptr_t>(kFakeWeightBase));
    if (bytes < 0 || bytes % static_cast<std::int64_t>(sizeof(float)) != 0)
      return "cuDNN puts the " + what + " at byte " + std::to_string(bytes) +
             " of its weight space, not at a float";
    if (count != want.count)
      return "cuDNN's " + what + " holds " + std::to_string(count) + " values, dlrt's " +
             std::to_string(want.count);
    regions.push_back({bytes / static_cast<std::int64_t>(sizeof(float)), want.offset, count});
    return {};
  };

  for (int pseudo = 0; pseudo < pseudo_layers; ++pseudo)
    for (int id = 0; id < ids; ++id) {
      std::string why = region(pseudo, id, false, flat.matrix(pseudo, id));
      if (!why.empty()) return why;
      const FlatRegion b = flat.bias(pseudo, id);
      if (b.count > 0) {
        why = region(pseudo, id, true, b);
        if (!why.empty()) return why;
      }
    }
  const std::int64_t space_count = static_cast<std::int64_t>(s.weight_bytes / sizeof(float));
  std::string why =
      cudnn_rnn::merge_copies(std::move(regions), flat.count(), space_count, &s.copies);
  if (!why.empty()) return "cuDNN's weight space does not match dlrt's weights: " + why;
  s.copies_cover_space = cudnn_rnn::covers_space(s.copies, space_count);
  return {};
}

std::string over_int(const char* what, std::int64_t value) {
  return std::string(what) + " is " + std::to_string(value) +
         ", more than the 2^31 - 1 that cuDNN's int-sized RNN descriptors hold";
}

Result plan_problem(Context& ctx, const RnnProblem& p) {
  const RnnParams& params = p.params;
  const AlgoChoice choice = variant_algo(p.variant);
  if (choice.name == nullptr)
    return Result::no(
        "engine cudnn has variants 0 (ALGO_STANDARD), 1 (ALGO_PERSIST_STATIC), 2 "
        "(ALGO_PERSIST_STATIC_SMALL_H) and 3 (ALGO_PERSIST_DYNAMIC); variant " +
        std::to_string(p.variant) + " was asked for");
  if (params.proj_size > 0 && params.cell != RnnCell::Lstm)
    return Result::no("cuDNN projects only LSTM outputs (proj_size is set for a " +
                      std::string(to_string(params.cell)) + " cell)");
  if (choice.algo != CUDNN_RNN_ALGO_STANDARD) {
    if (params.proj_size > 0)
      return Result::no(std::string("cuDNN's LSTM projection runs only with ALGO_STANDARD, not ") +
                        choice.name);
    if (!p.all_full())
      return Result::no(std::string("cuDNN's persistent algorithms need every sequence to have ") +
                        "T steps (" + choice.name + " with unequal lengths)");
  }
  const std::int64_t D = p.directions();
  const std::int64_t y_width = D * p.hidden_out();
  const std::int64_t state_rows = std::int64_t{params.num_layers} * D;
  if (p.T > INT_MAX) return Result::no(over_int("T", p.T));
  if (p.N > INT_MAX) return Result::no(over_int("N", p.N));
  if (p.T * p.N > INT_MAX / std::max<std::int64_t>(params.input_size, 1))
    return Result::no(over_int("x's element count", p.T * p.N * params.input_size));
  if (p.T * p.N > INT_MAX / y_width)
    return Result::no(over_int("y's element count", p.T * p.N * y_width));
  if (state_rows * p.N > INT_MAX / p.hidden())
    return Result::no(over_int("c's element count", state_rows * p.N * p.hidden()));

  try {
    gpu::set_device(ctx.device().index);
    cudnnHandle_t handle = cudnn_handle(ctx);
    if (choice.algo != CUDNN_RNN_ALGO_STANDARD) {
      int major = 0;
      DLRT_CUDA_CHECK(
          cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, ctx.device().index));
      if (major < 6)
        return Result::no(std::string(choice.name) +
                          " needs compute capability 6.0 or newer; this device has " +
                          std::to_string(major) + ".x");
    }

    CudnnRnnSetup s;
    s.device = ctx.device();
    s.T = p.T;
    s.N = p.N;
    s.I = params.input_size;
    s.y_bytes = static_cast<std::size_t>(p.T * p.N * y_width) * sizeof(float);
    s.short_sequences = cudnn_rnn::short_sequences(p.lengths, p.T);

    s.dropout = make_no_dropout(handle);
    s.rnn = make_rnn_desc();
    // projSize = hiddenSize turns the projection off (cuDNN's rule).
    const int proj = params.proj_size > 0 ? params.proj_size : params.hidden_size;
    cudnnStatus_t status = cudnnSetRNNDescriptor_v8(
        s.rnn.get(), choice.algo, cudnn_mode(params.cell),
        params.bias ? CUDNN_RNN_DOUBLE_BIAS : CUDNN_RNN_NO_BIAS,
        params.bidirectional ? CUDNN_BIDIRECTIONAL : CUDNN_UNIDIRECTIONAL, CUDNN_LINEAR_INPUT,
        CUDNN_DATA_FLOAT, CUDNN_DATA_FLOAT, CUDNN_FMA_MATH, params.input_size, params.hidden_size,
        proj, params.num_layers, s.dropout.get(), CUDNN_RNN_PADDED_IO_ENABLED);
    if (is_not_supported(status))
      return Result::no(refused("cudnnSetRNNDescriptor_v8", status) + " (" + choice.name + ")");
    DLRT_CUDNN_CHECK(status);
    if (choice.algo == CUDNN_RNN_ALGO_PERSIST_DYNAMIC) {
      // Compiles the persistent kernels for this batch size, now rather than at the first run.
      status = cudnnBuildRNNDynamic(handle, s.rnn.get(), static_cast<int>(p.N));
      if (status != CUDNN_STATUS_SUCCESS)
        return Result::no(refused("cudnnBuildRNNDynamic", status));
    }

    s.x = make_data_desc();
    s.y = make_data_desc();
    DLRT_CUDNN_CHECK(cudnnSetRNNDataDescriptor(s.x.get(), CUDNN_DATA_FLOAT,
                                               CUDNN_RNN_DATA_LAYOUT_SEQ_MAJOR_UNPACKED,
                                               static_cast<int>(p.T), static_cast<int>(p.N),
                                               params.input_size, p.lengths.data(), &padding_fill));
    DLRT_CUDNN_CHECK(cudnnSetRNNDataDescriptor(
        s.y.get(), CUDNN_DATA_FLOAT, CUDNN_RNN_DATA_LAYOUT_SEQ_MAJOR_UNPACKED,
        static_cast<int>(p.T), static_cast<int>(p.N), static_cast<int>(y_width), p.lengths.data(),
        &padding_fill));
    s.h = make_tensor_desc();
    s.c = make_tensor_desc();
    set_state_desc(s.h.get(), static_cast<int>(state_rows), static_cast<int>(p.N),
                   static_cast<int>(p.hidden_out()));
    set_state_desc(s.c.get(), static_cast<int>(state_rows), static_cast<int>(p.N),
                   static_cast<int>(p.hidden()));

    status = cudnnGetRNNWeightSpaceSize(handle, s.rnn.get(), &s.weight_bytes);
    if (is_not_supported(status)) return Result::no(refused("cudnnGetRNNWeightSpaceSize", status));
    DLRT_CUDNN_CHECK(status);
    std::size_t unused_reserve = 0;
    status = cudnnGetRNNTempSpaceSizes(handle, s.rnn.get(), CUDNN_FWD_MODE_INFERENCE, s.x.get(),
                                       &s.temp_inference, &unused_reserve);
    if (is_not_supported(status))
      return Result::no(refused("cudnnGetRNNTempSpaceSizes (inference)", status) + " (" +
                        choice.name + ")");
    DLRT_CUDNN_CHECK(status);
    status = cudnnGetRNNTempSpaceSizes(handle, s.rnn.get(), CUDNN_FWD_MODE_TRAINING, s.x.get(),
                                       &s.temp_training, &s.reserve_bytes);
    if (is_not_supported(status))
      return Result::no(refused("cudnnGetRNNTempSpaceSizes (training)", status) + " (" +
                        choice.name + ")");
    DLRT_CUDNN_CHECK(status);

    std::string why = map_weights(handle, p, s);
    if (!why.empty()) return Result::no(why);

    s.workspace = cudnn_rnn::workspace_layout(s.weight_bytes, s.temp_inference, s.temp_training);
    if (s.workspace.total > p.options.workspace_limit_bytes)
      return Result::no("cuDNN needs " + std::to_string(s.workspace.total) +
                        " bytes of workspace (weight space " + std::to_string(s.weight_bytes) +
                        ", temporary space " + std::to_string(s.workspace.temp_bytes) +
                        "), over the context's limit of " +
                        std::to_string(p.options.workspace_limit_bytes) + " bytes");

    // devSeqLengths: the lengths on the device, uploaded once (a synchronous copy).
    const std::size_t length_bytes = p.lengths.size() * sizeof(int);
    s.dev_lengths = DeviceBuffer(ctx.device(), length_bytes, nullptr, "RnnPlan (cuDNN lengths)");
    gpu::memcpy(s.dev_lengths.get(), ctx.device(), p.lengths.data(), Device::cpu(), length_bytes);

    log(LogLevel::Debug, "cudnn rnn: ", choice.name, ", weight space ", s.weight_bytes,
        " bytes in ", s.copies.size(), " copies, temporary space ", s.temp_inference, "/",
        s.temp_training, " bytes (inference/training), reserve ", s.reserve_bytes, " bytes");
    std::string description = std::string("cudnn ") + choice.name + " FMA_MATH";
    return {std::make_shared<CudnnRnnKernel>(std::move(s), std::move(description)), {}};
  } catch (const Error& e) {
    // The error becomes the answer; clear it so that no later launch check reports it again.
    static_cast<void>(cudaGetLastError());
    return Result::no(std::string("cuDNN could not be asked about this problem: ") + e.what());
  }
}

class CudnnRnn final : public RnnEngine {
public:
  Engine engine() const override { return Engine::Cudnn; }

  Planned<RnnKernel> plan(Context& ctx, const RnnProblem& p) const override {
    return plan_problem(ctx, p);
  }

  Planned<RnnCellKernel> plan_cell(Context&, const RnnCellProblem&) const override {
    return Planned<RnnCellKernel>::no(
        "cuDNN has no single-step cell op; use Engine::Cuda or Engine::Cpu");
  }
};

const Registrar<RnnEngine> registrar{std::make_unique<CudnnRnn>()};

}  // namespace
}  // namespace dlrt::detail
