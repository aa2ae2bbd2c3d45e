// The Cuda recurrent engine: the scheduler's graph of kernels/cuda/
// rnn_graph.hpp played on the GPU. Every GEMM is one cuBLAS SGEMM (FP32
// math, no TF32: CUBLAS_DEFAULT_MATH on handles the plan owns), every
// pointwise part one fused kernel per step whose per-thread body is in
// rnn_cells.hpp (replayed on the CPU by tests/internal/test_cuda_rnn_cells.cpp).
//
// Variants: 0 (the engine's choice, which is 1: no measured rule yet says
// when 2 wins), 1, a cell kernel per step after the step's recurrent GEMM
// (with an LSTM projection, proj_size > 0, then the projection GEMM h =
// W_hr (o * tanh(c)) and a kernel writing h to y and hy; backward gathers
// the gradient reaching h, multiplies it by W_hr for the cell's backward
// and keeps it for dW_hr), and 2, a persistent kernel per layer
// (rnn_persistent.hpp) that keeps W_hh in shared memory across steps, runs
// every step of both directions in one cooperative launch with a grid
// barrier between steps, and writes what variant 1's forward writes
// (training's backward is variant 1's). Variant 2 declines batches over
// kPersistentMaxBatch, W_hh slices over the device's shared memory per
// block, grids the device cannot hold resident at once, devices without
// cooperative launch, and proj_size (variant 1 runs it).
// DLRT_CUDA_RNN_VARIANT is the default of plans that name none.
//
// Executors, same nodes and same arithmetic, so the same bits:
//   sequential    every node on the context's stream in insertion order;
//   cuda_streams  (the default) the nodes on lanes, a non-blocking stream
//                 per layer and direction for the recurrence and one for
//                 its input GEMMs, events only on the cross-lane edges that
//                 need them (runtime/stream_schedule.hpp), the lanes forked
//                 from the context's stream at the start and joined back
//                 at the end (Appleyard et al. 2016's streams and events);
//   cuda_graph    the cuda_streams issue captured once into a CUDA graph
//                 and replayed with cudaGraphLaunch; a run whose pointers
//                 differ from the captured ones is captured again and the
//                 executable graph updated in place (cudaGraphExecUpdate),
//                 or instantiated anew when the update is refused.
// Because every lane is joined back to the context's stream, all of a
// play's device work is ordered before whatever the context's stream does
// next: the caching allocator's stream fences (taken on the context's
// stream) cover the lanes too, so the lanes need no registration there.
//
// Memory: inference plays in the context's workspace (the plan's
// workspace_bytes, the forward activations); a training state holds an
// arena from the caching allocator with every activation, saved gate and
// backward buffer, allocated by its first forward and reused by every later
// one. Streams, events, cuBLAS handles with their workspaces
// (cublasSetWorkspace, one buffer from the caching allocator) and the
// packing tables are made at plan time, lanes only for cuda_streams and
// cuda_graph; a run allocates nothing, and neither does cuBLAS in it.
//
// Trace: every node's host issue time (start and end of the node's
// enqueueing, on the track of its stream), or with a trace file
// (DLRT_TRACE, trace_to) its device time from CUDA events around it; a
// cuda_graph replay reports the issue times of its capture.
#include <cooperative_groups.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "dlrt/error.hpp"
#include "kernels/cuda/kernel_variant.hpp"
#include "kernels/cuda/rnn_cells.hpp"
#include "kernels/cuda/rnn_graph.hpp"
#include "kernels/cuda/rnn_persistent.hpp"
#include "runtime/allocator.hpp"
#include "runtime/cuda_check.hpp"
#include "runtime/cuda_handles.hpp"
#include "runtime/gpu.hpp"
#include "runtime/log.hpp"
#include "runtime/rnn_engine.hpp"
#include "runtime/scheduler.hpp"
#include "runtime/stream_schedule.hpp"

namespace dlrt::detail {
namespace {

using namespace cuda_rnn;

constexpr int kBlock = 256;
// The highest variant the engine knows of (0: its choice, 1, 2).
constexpr int kCudaRnnVariants = 2;

unsigned blocks_for(i64 count) {
  return static_cast<unsigned>(std::min<i64>((count + kBlock - 1) / kBlock, i64{1} << 16));
}

// ---- kernels: grid-stride loops over the bodies of rnn_cells.hpp ------------------

// Packed-row gather of the layer input (Appleyard et al. 2016: the input GEMM batched over steps).
__global__ void gather_kernel(GatherArgs a, i64 count) {
  for (i64 i = i64{blockIdx.x} * blockDim.x + threadIdx.x; i < count;
       i += i64{gridDim.x} * blockDim.x)
    gather_element(a, i);
}

// h0/c0 into packed order, longest sequence first (Appleyard et al. 2016's shrinking batch).
__global__ void init_state_kernel(InitStateArgs a, i64 count) {
  for (i64 i = i64{blockIdx.x} * blockDim.x + threadIdx.x; i < count;
       i += i64{gridDim.x} * blockDim.x)
    init_state_element(a, i);
}

// One step's fused cell: PyTorch's torch.nn.RNN/LSTM/GRU equations (include/dlrt/rnn.hpp).
__global__ void forward_step_kernel(ForwardStepArgs a, i64 count) {
  for (i64 i = i64{blockIdx.x} * blockDim.x + threadIdx.x; i < count;
       i += i64{gridDim.x} * blockDim.x)
    forward_step_element(a, i);
}

// The projected state h_t = W_hr m_t (Sak, Senior and Beaufays 2014's LSTMP)
// to the output and hy.
__global__ void forward_proj_kernel(ForwardStepArgs a, i64 count) {
  for (i64 i = i64{blockIdx.x} * blockDim.x + threadIdx.x; i < count;
       i += i64{gridDim.x} * blockDim.x)
    forward_proj_element(a, i);
}

// y = 0 past each length (cuDNN's padded I/O convention).
__global__ void zero_padding_kernel(ZeroPaddingArgs a, i64 count) {
  for (i64 i = i64{blockIdx.x} * blockDim.x + threadIdx.x; i < count;
       i += i64{gridDim.x} * blockDim.x)
    zero_padding_element(a, i);
}

// One step's fused cell backward: backpropagation through time (Werbos 1990).
__global__ void backward_step_kernel(BackwardStepArgs a, i64 count) {
  for (i64 i = i64{blockIdx.x} * blockDim.x + threadIdx.x; i < count;
       i += i64{gridDim.x} * blockDim.x)
    backward_step_element(a, i);
}

// The gradient reaching the projected h_t (BPTT, Werbos 1990), kept for dW_hr.
__global__ void backward_proj_kernel(BackwardStepArgs a, i64 count) {
  for (i64 i = i64{blockIdx.x} * blockDim.x + threadIdx.x; i < count;
       i += i64{gridDim.x} * blockDim.x)
    backward_proj_element(a, i);
}

// dh0/dc0 = the gradient reaching h_{-1}, c_{-1} in backpropagation through time (Werbos 1990).
__global__ void state_out_kernel(StateOutArgs a, i64 count) {
  for (i64 i = i64{blockIdx.x} * blockDim.x + threadIdx.x; i < count;
       i += i64{gridDim.x} * blockDim.x)
    state_out_element(a, i);
}

// dx_t = sum over directions of W_ih^T dgates_t (BPTT, Werbos 1990; Schuster-Paliwal 1997).
__global__ void scatter_dx_kernel(ScatterDxArgs a, i64 count) {
  for (i64 i = i64{blockIdx.x} * blockDim.x + threadIdx.x; i < count;
       i += i64{gridDim.x} * blockDim.x)
    scatter_dx_element(a, i);
}

// db = sum over steps and rows of dgates (BPTT, Werbos 1990), in a fixed row order: deterministic.
__global__ void bias_sums_kernel(BiasSumsArgs a, i64 count) {
  for (i64 i = i64{blockIdx.x} * blockDim.x + threadIdx.x; i < count;
       i += i64{gridDim.x} * blockDim.x)
    bias_sums_element(a, i);
}

// Persistent RNNs (Diamos et al. 2016): W_hh held in shared memory across every step of a layer.
__global__ void __launch_bounds__(kPersistentThreads)
    persistent_layer_kernel(PersistentLayerArgs a) {
  // The W_hh slice, then the partial sums of a split step.
  extern __shared__ float slice[];
  float* scratch = slice + a.units * a.GH;
  const int d = static_cast<int>(blockIdx.x / a.blocks);
  const i64 b = blockIdx.x % a.blocks;
  persistent_load_weights(a, d, b, slice, threadIdx.x, blockDim.x);
  __syncthreads();
  cooperative_groups::grid_group grid = cooperative_groups::this_grid();
  for (i64 s = 0; s < a.steps; ++s) {
    persistent_block_partials(a, d, s, b, slice, scratch, threadIdx.x, blockDim.x);
    __syncthreads();
    persistent_block_finish(a, d, s, b, slice, scratch, threadIdx.x, blockDim.x);
    // Step s + 1 reads every block's h_s (grid.sync orders the writes
    // before it) and rewrites the scratch this step's finish read.
    grid.sync();
  }
}

std::size_t persistent_shared_bytes(const PersistentLayerArgs& a) {
  return persistent_fit_bytes(a.GH / a.H, a.H, a.units, kPersistentThreads);
}

// ---- device memory ------------------------------------------------------------------

// A block of the device's caching allocator, given back when destroyed.
class DeviceBuffer {
public:
  DeviceBuffer(Device device, std::size_t bytes, void* stream, std::string_view op)
      : device_(device), ptr_(CachingAllocator::of(device).allocate(bytes, stream, op)) {}
  ~DeviceBuffer() { CachingAllocator::of(device_).deallocate(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* get() const { return ptr_; }

private:
  Device device_;
  void* ptr_;
};

// ---- lanes --------------------------------------------------------------------------

// cuBLAS workspace per handle, given with cublasSetWorkspace so that a run
// (and a capture) never has cuBLAS allocate one and every play sees the
// same workspace, hence the same algorithms. cuBLAS's documentation
// recommends 4 MiB, 32 MiB on Hopper; 4 MiB covers its SGEMM kernels' split
// reductions and keeps a plan of 16 lanes at 64 MiB.
constexpr std::size_t kBlasWorkspaceBytes = std::size_t{4} << 20;

// The plan's streams, their cuBLAS handles and events, made once. A handle
// per stream, each with its own slice of one workspace buffer: two streams
// must not share a cuBLAS workspace. With no lanes (the sequential executor
// and the cell step) there is one handle, main_blas, bound to the context's
// stream at each play; with lanes there is a handle per lane and no
// main_blas.
struct Lanes {
  int device = 0;
  // First, so that it is released last, after the handles that use it.
  std::unique_ptr<DeviceBuffer> workspace;
  std::vector<cudaStream_t> streams;
  std::vector<cublasHandle_t> blas;
  cublasHandle_t main_blas = nullptr;
  cudaEvent_t fork = nullptr, finished = nullptr;
  std::vector<cudaEvent_t> join, events;

  // The workspace slice of handle `h` (lane h, or main_blas as handle 0 when there are no lanes).
  void* workspace_of(std::size_t h) const {
    return static_cast<std::byte*>(workspace->get()) + h * kBlasWorkspaceBytes;
  }
  // cublasSetStream resets the handle's workspace to cuBLAS's own pool:
  // the workspace is given again after every change of stream.
  static void bind(cublasHandle_t handle, cudaStream_t stream, void* ws) {
    DLRT_CUBLAS_CHECK(cublasSetStream(handle, stream));
    DLRT_CUBLAS_CHECK(cublasSetWorkspace(handle, ws, kBlasWorkspaceBytes));
  }
  static cublasHandle_t make_handle(cudaStream_t stream, void* ws) {
    cublasHandle_t handle = nullptr;
    DLRT_CUBLAS_CHECK(cublasCreate(&handle));
    try {
      // FP32 products with FP32 accumulation, never TF32.
      DLRT_CUBLAS_CHECK(cublasSetMathMode(handle, CUBLAS_DEFAULT_MATH));
      bind(handle, stream, ws);
    } catch (...) {
      static_cast<void>(cublasDestroy(handle));
      throw;
    }
    return handle;
  }
  static cudaEvent_t make_event() {
    cudaEvent_t event = nullptr;
    DLRT_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
    return event;
  }

  // `lanes` streams with a handle each (none: the single main_blas).
  Lanes(int device_index, int lanes, int schedule_events) : device(device_index) {
    const std::size_t handles = lanes > 0 ? static_cast<std::size_t>(lanes) : 1;
    workspace =
        std::make_unique<DeviceBuffer>(Device::cuda(device_index), handles * kBlasWorkspaceBytes,
                                       nullptr, "rnn plan (cuBLAS workspaces)");
    try {
      for (int l = 0; l < lanes; ++l) {
        cudaStream_t stream = nullptr;
        DLRT_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
        streams.push_back(stream);
        blas.push_back(make_handle(stream, workspace_of(static_cast<std::size_t>(l))));
        join.push_back(make_event());
      }
      if (lanes == 0) main_blas = make_handle(nullptr, workspace_of(0));
      fork = make_event();
      finished = make_event();
      for (int e = 0; e < schedule_events; ++e) events.push_back(make_event());
    } catch (...) {
      release();
      throw;
    }
  }
  ~Lanes() { release(); }
  Lanes(const Lanes&) = delete;
  Lanes& operator=(const Lanes&) = delete;

  // Binds main_blas to the context's stream. The stream may differ from
  // the last play's: it first waits for that play, whose GEMMs used the
  // same workspace.
  void bind_main(cudaStream_t main) const {
    DLRT_CUDA_CHECK(cudaStreamWaitEvent(main, finished, 0));
    bind(main_blas, main, workspace_of(0));
  }

  // Every lane waits for the work queued on `main` so far.
  void fork_from(cudaStream_t main, std::size_t first = 0) const {
    DLRT_CUDA_CHECK(cudaEventRecord(fork, main));
    for (std::size_t l = first; l < streams.size(); ++l)
      DLRT_CUDA_CHECK(cudaStreamWaitEvent(streams[l], fork, 0));
  }
  // `main` waits for everything queued on the lanes.
  void join_into(cudaStream_t main, std::size_t first = 0) const {
    for (std::size_t l = first; l < streams.size(); ++l) {
      DLRT_CUDA_CHECK(cudaEventRecord(join[l], streams[l]));
      DLRT_CUDA_CHECK(cudaStreamWaitEvent(main, join[l], 0));
    }
  }
  // join_into on an error path: every lane is joined whatever fails, and
  // the errors are dropped (the one being thrown is the one to report).
  void join_into_after_error(cudaStream_t main, std::size_t first = 0) const noexcept {
    for (std::size_t l = first; l < streams.size(); ++l)
      if (cudaEventRecord(join[l], streams[l]) == cudaSuccess)
        static_cast<void>(cudaStreamWaitEvent(main, join[l], 0));
    static_cast<void>(cudaGetLastError());
  }

private:
  // Destroys what was made; reports nothing (the device may be going away at exit).
  void release() noexcept {
    // The workspace goes back to the allocator after this: the lanes'
    // work, and the last play's on the context's stream, must be done.
    if (finished != nullptr) static_cast<void>(cudaEventSynchronize(finished));
    for (cudaStream_t s : streams) static_cast<void>(cudaStreamSynchronize(s));
    for (cublasHandle_t h : blas) static_cast<void>(cublasDestroy(h));
    if (main_blas != nullptr) static_cast<void>(cublasDestroy(main_blas));
    for (cudaEvent_t e : join) static_cast<void>(cudaEventDestroy(e));
    for (cudaEvent_t e : events) static_cast<void>(cudaEventDestroy(e));
    if (fork != nullptr) static_cast<void>(cudaEventDestroy(fork));
    if (finished != nullptr) static_cast<void>(cudaEventDestroy(finished));
    for (cudaStream_t s : streams) static_cast<void>(cudaStreamDestroy(s));
    blas.clear(), join.clear(), events.clear(), streams.clear();
    main_blas = nullptr, fork = finished = nullptr;
    static_cast<void>(cudaGetLastError());
  }
};

// The nodes' GEMMs and kernels on a lane's stream (or, for sequential, all
// on the context's).
class CudaOps final : public RnnDeviceOps {
public:
  CudaOps(const Lanes& lanes, bool one_stream, cudaStream_t main)
      : lanes_(lanes), one_stream_(one_stream), main_(main) {}

  void gemm(int lane, const RowMajorGemm& g) override {
    if (g.M == 0 || g.N == 0) return;
    const ColumnMajorGemm c = to_column_major(g);
    auto op = [](bool t) { return t ? CUBLAS_OP_T : CUBLAS_OP_N; };
    DLRT_CUBLAS_CHECK(cublasSgemm(blas(lane), op(c.trans_a), op(c.trans_b), static_cast<int>(c.m),
                                  static_cast<int>(c.n), static_cast<int>(c.k), &c.alpha, c.a,
                                  static_cast<int>(c.lda), c.b, static_cast<int>(c.ldb), &c.beta,
                                  c.c, static_cast<int>(c.ldc)));
  }
  void gather(int lane, const GatherArgs& a, i64 count) override {
    if (count == 0) return;
    gather_kernel<<<blocks_for(count), kBlock, 0, stream(lane)>>>(a, count);
    DLRT_CUDA_CHECK_LAUNCH();
  }
  void init_state(int lane, const InitStateArgs& a, i64 count) override {
    if (count == 0) return;
    init_state_kernel<<<blocks_for(count), kBlock, 0, stream(lane)>>>(a, count);
    DLRT_CUDA_CHECK_LAUNCH();
  }
  void forward_step(int lane, const ForwardStepArgs& a, i64 count) override {
    if (count == 0) return;
    forward_step_kernel<<<blocks_for(count), kBlock, 0, stream(lane)>>>(a, count);
    DLRT_CUDA_CHECK_LAUNCH();
  }
  void forward_proj(int lane, const ForwardStepArgs& a, i64 count) override {
    if (count == 0) return;
    forward_proj_kernel<<<blocks_for(count), kBlock, 0, stream(lane)>>>(a, count);
    DLRT_CUDA_CHECK_LAUNCH();
  }
  void zero_padding(int lane, const ZeroPaddingArgs& a, i64 count) override {
    if (count == 0) return;
    zero_padding_kernel<<<blocks_for(count), kBlock, 0, stream(lane)>>>(a, count);
    DLRT_CUDA_CHECK_LAUNCH();
  }
  void backward_step(int lane, const BackwardStepArgs& a, i64 count) override {
    if (count == 0) return;
    backward_step_kernel<<<blocks_for(count), kBlock, 0, stream(lane)>>>(a, count);
    DLRT_CUDA_CHECK_LAUNCH();
  }
  void backward_proj(int lane, const BackwardStepArgs& a, i64 count) override {
    if (count == 0) return;
    backward_proj_kernel<<<blocks_for(count), kBlock, 0, stream(lane)>>>(a, count);
    DLRT_CUDA_CHECK_LAUNCH();
  }
  void state_out(int lane, const StateOutArgs& a, i64 count) override {
    if (count == 0) return;
    state_out_kernel<<<blocks_for(count), kBlock, 0, stream(lane)>>>(a, count);
    DLRT_CUDA_CHECK_LAUNCH();
  }
  void scatter_dx(int lane, const ScatterDxArgs& a, i64 count) override {
    if (count == 0) return;
    scatter_dx_kernel<<<blocks_for(count), kBlock, 0, stream(lane)>>>(a, count);
    DLRT_CUDA_CHECK_LAUNCH();
  }
  void bias_sums(int lane, const BiasSumsArgs& a, i64 count) override {
    if (count == 0) return;
    bias_sums_kernel<<<blocks_for(count), kBlock, 0, stream(lane)>>>(a, count);
    DLRT_CUDA_CHECK_LAUNCH();
  }

  void persistent_layer(int lane, const PersistentLayerArgs& a) override {
    if (a.steps == 0) return;
    if (a.blocks < 1 || (a.D != 1 && a.D != 2) || a.units != persistent_units(a.H, a.blocks))
      throw Error(Error::Kind::Internal, "Cuda rnn: a persistent launch of an invalid shape");
    PersistentLayerArgs copy = a;
    void* args[] = {&copy};
    DLRT_CUDA_CHECK(cudaLaunchCooperativeKernel(
        reinterpret_cast<const void*>(&persistent_layer_kernel),
        dim3(static_cast<unsigned>(a.blocks * a.D)), dim3(kPersistentThreads), args,
        persistent_shared_bytes(a), stream(lane)));
    DLRT_CUDA_CHECK_LAUNCH();
  }

private:
  cudaStream_t stream(int lane) const { return one_stream_ ? main_ : lanes_.streams[lane]; }
  cublasHandle_t blas(int lane) const { return one_stream_ ? lanes_.main_blas : lanes_.blas[lane]; }

  const Lanes& lanes_;
  bool one_stream_;
  cudaStream_t main_;
};

using Clock = std::chrono::steady_clock;

double microseconds_since(Clock::time_point start) {
  return std::chrono::duration<double, std::micro>(Clock::now() - start).count();
}

// Issues a StreamSchedule on the lanes, timing each node's enqueueing.
class CudaStreamBackend final : public StreamBackend {
public:
  // timing: null, or two timing events per node (start, end) to record around it.
  CudaStreamBackend(const Lanes& lanes, const TaskGraph& graph, const Play& play,
                    PlayRecord& record, const std::vector<cudaEvent_t>* timing = nullptr)
      : lanes_(lanes),
        graph_(graph),
        play_(play),
        record_(record),
        timing_(timing),
        start_(Clock::now()) {}

  void wait(int lane, std::int32_t event) override {
    DLRT_CUDA_CHECK(cudaStreamWaitEvent(lanes_.streams[lane], lanes_.events[event], 0));
  }
  void launch(int lane, std::int32_t node) override {
    record_.start_us[node] = microseconds_since(start_);
    if (timing_) DLRT_CUDA_CHECK(cudaEventRecord((*timing_)[2 * node], lanes_.streams[lane]));
    play_.lane = lane;
    graph_.run_node(node, &play_);
    if (timing_) DLRT_CUDA_CHECK(cudaEventRecord((*timing_)[2 * node + 1], lanes_.streams[lane]));
    record_.end_us[node] = microseconds_since(start_);
    record_.worker[node] = lane;
  }
  void record(int lane, std::int32_t event) override {
    DLRT_CUDA_CHECK(cudaEventRecord(lanes_.events[event], lanes_.streams[lane]));
  }

private:
  const Lanes& lanes_;
  const TaskGraph& graph_;
  const Play& play_;
  PlayRecord& record_;
  const std::vector<cudaEvent_t>* timing_;
  Clock::time_point start_;
};

// ---- the kernel ---------------------------------------------------------------------

// A plan's identity for its training states: unique in the process, unlike
// the plan's address, which a later plan may be given once it is freed.
std::uint64_t next_plan_id() {
  static std::atomic<std::uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

class CudaRnnSaved final : public RnnSavedData {
public:
  CudaRnnSaved(std::uint64_t owner, Device device, std::size_t bytes, void* stream)
      : owner_(owner), arena_(device, bytes, stream, "rnn training state") {}
  // The id of the plan whose forward made it.
  std::uint64_t owner() const { return owner_; }
  float* arena() const { return static_cast<float*>(arena_.get()); }

private:
  std::uint64_t owner_;
  DeviceBuffer arena_;
};

// One phase's graph, its issue order on the lanes, and its captured CUDA graph.
struct Phase {
  LanedGraph laned;
  StreamSchedule schedule;
  // cuda_graph: the executable graph, the pointers it was captured with,
  // and the issue times of that capture.
  mutable cudaGraphExec_t exec = nullptr;
  mutable Bindings captured;
  mutable PlayRecord capture_record;
  // With a trace file: a timing event before and after each node, and the
  // play's origin last (made at the first traced play).
  mutable std::vector<cudaEvent_t> timing;

  explicit Phase(LanedGraph g, int lanes)
      : laned(std::move(g)), schedule(make_stream_schedule(laned.graph, laned.lane, lanes)) {}
  ~Phase() {
    if (exec != nullptr) static_cast<void>(cudaGraphExecDestroy(exec));
    for (cudaEvent_t e : timing) static_cast<void>(cudaEventDestroy(e));
  }
  Phase(const Phase&) = delete;
  Phase& operator=(const Phase&) = delete;
};

// The packing tables in device memory: offset (i64) first, then the int tables.
std::unique_ptr<DeviceBuffer> upload_tables(Device device, Design& g) {
  const Packing& pk = g.pack;
  const std::size_t N = pk.order.size(), R = pk.row_step.size(), S = pk.offset.size();
  std::vector<std::byte> blob(S * sizeof(i64) + (4 * N + R) * sizeof(int));
  std::byte* at = blob.data();
  auto put = [&](const void* src, std::size_t bytes) {
    std::memcpy(at, src, bytes);
    at += bytes;
  };
  put(pk.offset.data(), S * sizeof(i64));
  std::vector<int> seq_length(N);
  for (std::size_t n = 0; n < N; ++n) seq_length[pk.order[n]] = pk.length[n];
  put(pk.order.data(), N * sizeof(int));
  put(pk.length.data(), N * sizeof(int));
  put(pk.rank.data(), N * sizeof(int));
  put(seq_length.data(), N * sizeof(int));
  put(pk.row_step.data(), R * sizeof(int));
  auto buffer =
      std::make_unique<DeviceBuffer>(device, blob.size(), nullptr, "RnnPlan (cuda tables)");
  gpu::memcpy(buffer->get(), device, blob.data(), Device::cpu(), blob.size());
  const auto* base = static_cast<const std::byte*>(buffer->get());
  g.tables.offset = reinterpret_cast<const i64*>(base);
  const auto* ints = reinterpret_cast<const int*>(base + S * sizeof(i64));
  g.tables.order = ints;
  g.tables.length = ints + N;
  g.tables.rank = ints + 2 * N;
  g.tables.seq_length = ints + 3 * N;
  g.tables.row_step = ints + 4 * N;
  return buffer;
}

class CudaRnnKernel final : public RnnKernel {
public:
  CudaRnnKernel(Device device, std::unique_ptr<Design> design, std::unique_ptr<DeviceBuffer> tables,
                Executor executor, std::string description)
      : RnnKernel(Engine::Cuda, static_cast<std::size_t>(design->forward_floats) * sizeof(float),
                  std::move(description)),
        device_(device),
        design_(std::move(design)),
        tables_(std::move(tables)),
        executor_(executor),
        forward_(build_forward(design_.get()), design_->lanes),
        backward_data_(build_backward_data(design_.get()), design_->lanes),
        backward_weights_(build_backward_weights(design_.get()), design_->lanes),
        // Sequential plays on the context's stream and main_blas alone.
        lanes_(device.index, executor == Executor::Sequential ? 0 : design_->lanes,
               executor == Executor::Sequential
                   ? 0
                   : std::max({forward_.schedule.events, backward_data_.schedule.events,
                               backward_weights_.schedule.events})) {}

  void forward(Context& ctx, const RnnInputs& in, const RnnOutputs& out, void* workspace,
               std::shared_ptr<RnnSavedData>* saved) const override {
    gpu::set_device(device_.index);
    Bindings b;
    b.x = in.x, b.w = in.w, b.h0 = in.h0, b.c0 = in.c0;
    b.y = out.y, b.hy = out.hy, b.cy = out.cy;
    if (saved == nullptr) {
      b.arena = static_cast<float*>(workspace);
    } else {
      auto* mine = dynamic_cast<CudaRnnSaved*>(saved->get());
      if (mine == nullptr || mine->owner() != id_) {
        saved->reset();
        auto fresh = std::make_shared<CudaRnnSaved>(
            id_, device_, static_cast<std::size_t>(design_->total_floats) * sizeof(float),
            static_cast<void*>(cuda_stream(ctx)));
        mine = fresh.get();
        *saved = std::move(fresh);
      }
      b.arena = mine->arena();
    }
    play(ctx, forward_, b);
  }

  void backward_data(Context& ctx, const RnnInputs& in, RnnSavedData& saved,
                     const RnnGradients& grad, void*) const override {
    gpu::set_device(device_.index);
    Bindings b;
    b.x = in.x, b.w = in.w, b.h0 = in.h0, b.c0 = in.c0;
    b.arena = arena_of(saved);
    b.dy = grad.dy, b.dhy = grad.dhy, b.dcy = grad.dcy;
    b.dx = grad.dx, b.dh0 = grad.dh0, b.dc0 = grad.dc0;
    play(ctx, backward_data_, b);
  }

  void backward_weights(Context& ctx, const RnnInputs& in, const RnnSavedData& saved, float* dw,
                        bool accumulate, void*) const override {
    gpu::set_device(device_.index);
    Bindings b;
    b.x = in.x, b.w = in.w;
    b.arena = arena_of(saved);
    b.dw = dw;
    b.accumulate = accumulate;
    play(ctx, backward_weights_, b);
  }

  Executor executor() const override { return executor_; }
  Trace last_trace() const override { return history_.last(); }

private:
  float* arena_of(const RnnSavedData& saved) const {
    const auto* mine = dynamic_cast<const CudaRnnSaved*>(&saved);
    if (mine == nullptr || mine->owner() != id_)
      throw Error(Error::Kind::Internal, "Cuda rnn: a training state of another kernel");
    return mine->arena();
  }

  static PlayRecord fresh_record(const TaskGraph& graph, Executor executor) {
    PlayRecord record;
    record.executor = executor;
    record.track = "stream";
    const auto count = static_cast<std::size_t>(graph.size());
    record.start_us.assign(count, 0.0);
    record.end_us.assign(count, 0.0);
    record.worker.assign(count, 0);
    return record;
  }

  void play(Context& ctx, const Phase& phase, const Bindings& b) const {
    // The lanes, events and captured graphs are the plan's: one play at a time.
    std::lock_guard lock(mutex_);
    const cudaStream_t main = cuda_stream(ctx);
    const TaskGraph& graph = phase.laned.graph;
    Play p;
    p.b = b;
    PlayRecord record = fresh_record(graph, executor_);
    // A trace file gets the nodes' device times (CUDA events, at the cost
    // of a synchronisation per play); otherwise the trace has issue times.
    const bool timed = executor_ != Executor::CudaGraph && tracing_to_file();
    if (timed) {
      make_timing(phase);
      DLRT_CUDA_CHECK(cudaEventRecord(phase.timing.back(), main));
    }
    try {
      switch (executor_) {
        case Executor::Sequential: {
          lanes_.bind_main(main);
          CudaOps ops(lanes_, true, main);
          p.ops = &ops;
          const Clock::time_point start = Clock::now();
          for (std::int32_t n = 0; n < graph.size(); ++n) {
            record.start_us[n] = microseconds_since(start);
            if (timed) DLRT_CUDA_CHECK(cudaEventRecord(phase.timing[2 * n], main));
            p.lane = phase.laned.lane[n];
            graph.run_node(n, &p);
            if (timed) DLRT_CUDA_CHECK(cudaEventRecord(phase.timing[2 * n + 1], main));
            record.end_us[n] = microseconds_since(start);
          }
          break;
        }
        case Executor::CudaGraph: {
          if (phase.exec == nullptr || !(phase.captured == b)) capture(phase, p);
          DLRT_CUDA_CHECK(cudaGraphLaunch(phase.exec, main));
          record = phase.capture_record;
          break;
        }
        default: {
          CudaOps ops(lanes_, false, main);
          p.ops = &ops;
          lanes_.fork_from(main);
          try {
            CudaStreamBackend backend(lanes_, graph, p, record, timed ? &phase.timing : nullptr);
            issue(phase.schedule, backend);
          } catch (...) {
            // The context's stream still waits for what the lanes were given
            // before the error, so that its later work and the allocator's
            // fences on it stay ordered after the lanes'.
            lanes_.join_into_after_error(main);
            throw;
          }
          lanes_.join_into(main);
          break;
        }
      }
    } catch (...) {
      // `finished` still follows what was queued before the error: the
      // next play's bind_main and the plan's destruction wait for it.
      static_cast<void>(cudaEventRecord(lanes_.finished, main));
      static_cast<void>(cudaGetLastError());
      throw;
    }
    DLRT_CUDA_CHECK(cudaEventRecord(lanes_.finished, main));
    if (timed) {
      DLRT_CUDA_CHECK(cudaEventSynchronize(lanes_.finished));
      for (std::int32_t n = 0; n < graph.size(); ++n) {
        float start_ms = 0.0f, end_ms = 0.0f;
        DLRT_CUDA_CHECK(cudaEventElapsedTime(&start_ms, phase.timing.back(), phase.timing[2 * n]));
        DLRT_CUDA_CHECK(
            cudaEventElapsedTime(&end_ms, phase.timing.back(), phase.timing[2 * n + 1]));
        record.start_us[n] = 1000.0 * start_ms;
        record.end_us[n] = 1000.0 * end_ms;
      }
    }
    history_.store(graph, std::move(record));
  }

  // Built whole before it is kept: a failure leaves phase.timing empty
  // (made again at the next traced play), never short.
  static void make_timing(const Phase& phase) {
    if (!phase.timing.empty()) return;
    const std::size_t count = 2 * static_cast<std::size_t>(phase.laned.graph.size()) + 1;
    std::vector<cudaEvent_t> timing;
    timing.reserve(count);
    try {
      for (std::size_t i = 0; i < count; ++i) {
        cudaEvent_t event = nullptr;
        DLRT_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDefault));
        timing.push_back(event);
      }
    } catch (...) {
      for (cudaEvent_t e : timing) static_cast<void>(cudaEventDestroy(e));
      throw;
    }
    phase.timing.swap(timing);
  }

  // Captures the cuda_streams issue of `phase` with the run's pointers: lane
  // 0 is the origin of the capture (thread-local mode, so other threads'
  // CUDA calls are not disturbed), the other lanes join it through the fork
  // event and leave it through their join events.
  void capture(const Phase& phase, Play& p) const {
    const cudaStream_t origin = lanes_.streams[0];
    const TaskGraph& graph = phase.laned.graph;
    PlayRecord record = fresh_record(graph, Executor::CudaGraph);
    CudaOps ops(lanes_, false, origin);
    p.ops = &ops;
    DLRT_CUDA_CHECK(cudaStreamBeginCapture(origin, cudaStreamCaptureModeThreadLocal));
    cudaGraph_t captured = nullptr;
    try {
      lanes_.fork_from(origin, 1);
      CudaStreamBackend backend(lanes_, graph, p, record);
      issue(phase.schedule, backend);
      lanes_.join_into(origin, 1);
    } catch (...) {
      // Join the lanes and end the capture so that the streams are usable
      // again; the error is the one to report.
      lanes_.join_into_after_error(origin, 1);
      if (cudaStreamEndCapture(origin, &captured) == cudaSuccess && captured != nullptr)
        static_cast<void>(cudaGraphDestroy(captured));
      static_cast<void>(cudaGetLastError());
      throw;
    }
    DLRT_CUDA_CHECK(cudaStreamEndCapture(origin, &captured));
    struct GraphDeleter {
      void operator()(CUgraph_st* g) const { static_cast<void>(cudaGraphDestroy(g)); }
    };
    const std::unique_ptr<CUgraph_st, GraphDeleter> owned(captured);
    if (phase.exec != nullptr) {
      cudaGraphExecUpdateResultInfo info{};
      if (cudaGraphExecUpdate(phase.exec, captured, &info) != cudaSuccess) {
        // Refused (the topology changed): instantiate anew, which costs a
        // cudaGraphInstantiate on top of the capture. No wait for the old
        // executable graph: destroying one whose launch is in flight is
        // safe, CUDA releases it once that launch has completed.
        static_cast<void>(cudaGetLastError());
        static_cast<void>(cudaGraphExecDestroy(phase.exec));
        phase.exec = nullptr;
      }
    }
    if (phase.exec == nullptr) DLRT_CUDA_CHECK(cudaGraphInstantiate(&phase.exec, captured, 0));
    phase.captured = p.b;
    phase.capture_record = std::move(record);
  }

  const std::uint64_t id_ = next_plan_id();
  Device device_;
  std::unique_ptr<Design> design_;
  std::unique_ptr<DeviceBuffer> tables_;
  Executor executor_;
  Phase forward_, backward_data_, backward_weights_;
  Lanes lanes_;
  mutable std::mutex mutex_;
  mutable PlayHistory history_;
};

// ---- one cell step ------------------------------------------------------------------

// rnn_cell_forward / rnn_cell_backward: the sequence engine's GEMMs and
// kernels on one step (rnn_graph.hpp's cell_forward / cell_backward), on
// the context's stream.
class CudaRnnCellKernel final : public RnnCellKernel {
public:
  CudaRnnCellKernel(Device device, const RnnCellProblem& p, std::unique_ptr<DeviceBuffer> tables,
                    std::size_t workspace)
      : RnnCellKernel(Engine::Cuda, workspace,
                      std::string("cuda ") + to_string(p.cell) +
                          (p.backward ? " cell backward" : " cell forward") +
                          ", cuBLAS sgemm (FP32, no TF32) + a fused cell kernel"),
        device_(device),
        p_(p),
        tables_(std::move(tables)),
        lanes_(device.index, 0, 0) {
    const auto* ints = static_cast<const int*>(tables_->get());
    t_.order = ints;
    t_.length = ints + p.N;
  }

  void run(Context& ctx, const RnnCellArgs& a, void* workspace) const override {
    gpu::set_device(device_.index);
    // The handle's stream is set per run: one run at a time.
    std::lock_guard lock(mutex_);
    const cudaStream_t main = cuda_stream(ctx);
    lanes_.bind_main(main);
    CudaOps ops(lanes_, true, main);
    float* ws = static_cast<float*>(workspace);
    try {
      if (p_.backward)
        cell_backward(p_, a, ws, t_, ops);
      else
        cell_forward(p_, a, ws, t_, ops);
    } catch (...) {
      // As in CudaRnnKernel::play: `finished` follows what was queued.
      static_cast<void>(cudaEventRecord(lanes_.finished, main));
      static_cast<void>(cudaGetLastError());
      throw;
    }
    DLRT_CUDA_CHECK(cudaEventRecord(lanes_.finished, main));
  }

private:
  Device device_;
  RnnCellProblem p_;
  std::unique_ptr<DeviceBuffer> tables_;
  Tables t_;
  Lanes lanes_;
  mutable std::mutex mutex_;
};

// ---- the engine ---------------------------------------------------------------------

// Variant 2's fit on this device (empty: it fits, and `design` is set to it).
std::string plan_persistent(int device, const RnnProblem& problem, Design& design) {
  int shared = 0, sms = 0, cooperative = 0;
  DLRT_CUDA_CHECK(cudaDeviceGetAttribute(&shared, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  DLRT_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  DLRT_CUDA_CHECK(cudaDeviceGetAttribute(&cooperative, cudaDevAttrCooperativeLaunch, device));
  if (cooperative == 0)
    return "cuda rnn variant 2 needs cooperative launches (a grid barrier between steps), which "
           "device " +
           std::to_string(device) + " does not support";
  const PersistentFit fit =
      persistent_fit(problem.params.cell, design.H, design.N, design.D, problem.params.proj_size,
                     static_cast<std::size_t>(shared), sms);
  if (!fit.reason.empty()) return fit.reason;
  // Over 48 KiB of dynamic shared memory must be asked for per kernel. The
  // device's whole opt-in limit, not this plan's size: the attribute is the
  // kernel's, shared by every plan, and a later plan must not lower it
  // under an earlier one's launches.
  DLRT_CUDA_CHECK(cudaFuncSetAttribute(reinterpret_cast<const void*>(&persistent_layer_kernel),
                                       cudaFuncAttributeMaxDynamicSharedMemorySize, shared));
  int per_sm = 0;
  DLRT_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
      &per_sm, reinterpret_cast<const void*>(&persistent_layer_kernel), kPersistentThreads,
      fit.shared_bytes));
  std::string resident = persistent_resident_check(fit.blocks * design.D, sms, per_sm);
  if (!resident.empty()) return resident;
  design.variant = 2;
  design.persistent_blocks = fit.blocks;
  return {};
}

class CudaRnn final : public RnnEngine {
public:
  Engine engine() const override { return Engine::Cuda; }

  Planned<RnnKernel> plan(Context& ctx, const RnnProblem& problem) const override {
    const RnnParams& params = problem.params;
    int variant = problem.variant;
    if (variant == 0) variant = variant_from_environment("DLRT_CUDA_RNN_VARIANT", kCudaRnnVariants);
    if (variant < 0 || variant > kCudaRnnVariants)
      return Planned<RnnKernel>::no(
          "engine cuda has rnn variants 0 (its choice, 1), 1 (a fused "
          "cell kernel per step) and 2 (a persistent kernel per layer); variant " +
          std::to_string(variant) + " was asked for");
    // Variant 0 is 1: no measured rule yet says when the persistent kernel wins.
    if (variant == 0) variant = 1;
    Executor executor = problem.executor;
    if (executor == Executor::Default) executor = Executor::CudaStreams;
    if (executor == Executor::CpuTasks)
      return Planned<RnnKernel>::no(
          "executor cpu_tasks plays on CPU threads; the Cuda engine plays sequential, "
          "cuda_streams or cuda_graph");
    auto design = std::make_unique<Design>(problem);
    // cuBLAS takes int extents: the packed rows bound every GEMM extent.
    const i64 widest = std::max({design->pack.total, design->GH * 2, problem.layer_input(0),
                                 problem.layer_input(1), design->T * design->N});
    if (widest > INT_MAX)
      return Planned<RnnKernel>::no("cuBLAS takes int extents, but an extent is " +
                                    std::to_string(widest));
    const std::size_t bytes = static_cast<std::size_t>(design->forward_floats) * sizeof(float);
    if (bytes > ctx.options().workspace_limit_bytes)
      return Planned<RnnKernel>::no("inference needs " + std::to_string(bytes) +
                                    " bytes of activations, over the context's workspace limit "
                                    "of " +
                                    std::to_string(ctx.options().workspace_limit_bytes));
    try {
      gpu::set_device(ctx.device().index);
      std::string how = params.proj_size > 0
                            ? "a fused cell kernel and a projection GEMM per step (variant 1)"
                            : "a fused cell kernel per step (variant 1)";
      if (variant == 2) {
        std::string reason = plan_persistent(ctx.device().index, problem, *design);
        if (!reason.empty()) return Planned<RnnKernel>::no(std::move(reason));
        how = "a persistent kernel per layer, W_hh in shared memory, " +
              std::to_string(design->persistent_blocks) + " blocks per direction (variant 2)";
      }
      std::unique_ptr<DeviceBuffer> tables = upload_tables(ctx.device(), *design);
      std::string description = "cuda ";
      description.append(to_string(params.cell))
          .append(" ")
          .append(to_string(executor))
          .append(", cuBLAS sgemm (FP32, no TF32) + ")
          .append(how)
          .append(", ")
          .append(std::to_string(design->chunks()))
          .append(" input chunks, ")
          .append(std::to_string(executor == Executor::Sequential ? 1 : design->lanes))
          .append(" streams");
      return {std::make_shared<CudaRnnKernel>(ctx.device(), std::move(design), std::move(tables),
                                              executor, std::move(description)),
              {}};
    } catch (const Error& e) {
      // The error becomes the answer; clear it so that no later launch check reports it again.
      static_cast<void>(cudaGetLastError());
      return Planned<RnnKernel>::no(std::string("the Cuda engine could not set up its plan: ") +
                                    e.what());
    }
  }

  Planned<RnnCellKernel> plan_cell(Context& ctx, const RnnCellProblem& p) const override {
    const i64 GH = rnn_gate_count(p.cell) * p.H;
    const i64 widest = std::max({p.N, p.I, 4 * p.H, GH});
    if (widest > INT_MAX)
      return Planned<RnnCellKernel>::no("cuBLAS takes int extents, but an extent is " +
                                        std::to_string(widest));
    const std::size_t bytes = static_cast<std::size_t>(cell_workspace_floats(p)) * sizeof(float);
    if (bytes > ctx.options().workspace_limit_bytes)
      return Planned<RnnCellKernel>::no("the cell step needs " + std::to_string(bytes) +
                                        " bytes of workspace, over the context's limit of " +
                                        std::to_string(ctx.options().workspace_limit_bytes));
    try {
      gpu::set_device(ctx.device().index);
      // One step of N sequences of length 1: order the identity, every length 1.
      std::vector<int> blob(static_cast<std::size_t>(2 * p.N), 1);
      std::iota(blob.begin(), blob.begin() + p.N, 0);
      auto tables = std::make_unique<DeviceBuffer>(ctx.device(), blob.size() * sizeof(int), nullptr,
                                                   "rnn cell plan (cuda tables)");
      gpu::memcpy(tables->get(), ctx.device(), blob.data(), Device::cpu(),
                  blob.size() * sizeof(int));
      return {std::make_shared<CudaRnnCellKernel>(ctx.device(), p, std::move(tables), bytes), {}};
    } catch (const Error& e) {
      static_cast<void>(cudaGetLastError());
      return Planned<RnnCellKernel>::no(
          std::string("the Cuda engine could not set up its cell plan: ") + e.what());
    }
  }
};

const Registrar<RnnEngine> registrar{std::make_unique<CudaRnn>()};

}  // namespace
}  // namespace dlrt::detail
