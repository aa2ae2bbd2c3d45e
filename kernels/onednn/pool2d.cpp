// The Onednn pooling engine: oneDNN's pooling primitives on dlrt's NCHW
// tensors as they are (no reorders: pooling reads each input about once,
// so a layout change would cost as much as the pooling). Planes are
// independent, so a problem is seen as one image of N*C channels and cut
// into runs of channels that dlrt's threads share (onednn_support.hpp says
// why oneDNN itself runs single-threaded).
//
// Declined, with the reason, where oneDNN cannot give dlrt's results:
//  - max pooling: a NaN never replaces a number in oneDNN's maximum (its
//    kernels compare with "less than"), where dlrt's window with a NaN
//    outputs NaN; oneDNN also has no argmax in dlrt's form, and its max
//    backward takes its own workspace, not dlrt's indices or x and y;
//  - include-pad averages whose ceil-mode window reaches past the padding:
//    oneDNN divides by the whole window, dlrt (as PyTorch) by the part of
//    it inside the padded input.
// Ceil mode is oneDNN's right padding grown to fit the last window.
#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kernels/onednn/onednn_support.hpp"
#include "runtime/parallel.hpp"
#include "runtime/pool2d_engine.hpp"

namespace dlrt::detail {
namespace {

using dnnl::memory;
using onednn::Carver;
using onednn::Piece;
using i64 = std::int64_t;
constexpr memory::data_type kF32 = memory::data_type::f32;

dnnl::algorithm algorithm_of(PoolMode mode) {
  switch (mode) {
    case PoolMode::Max:
      return dnnl::algorithm::pooling_max;
    case PoolMode::AverageIncludePad:
      return dnnl::algorithm::pooling_avg_include_padding;
    case PoolMode::AverageExcludePad:
      return dnnl::algorithm::pooling_avg_exclude_padding;
  }
  return dnnl::algorithm::pooling_max;
}

// The padding after the last row (column) that makes oneDNN's floor rule
// give dlrt's output extent: larger than pad in ceil mode's extra window.
i64 right_padding(i64 input, i64 output, int window, int stride, int pad) {
  return std::max<i64>(pad, (output - 1) * stride + window - input - pad);
}

struct Window {
  memory::dims strides, kernel, pad_l, pad_r;
};
Window window(const Pool2dGeometry& g) {
  return {onednn::dims({g.stride_h, g.stride_w}), onednn::dims({g.window_h, g.window_w}),
          onednn::dims({g.pad_h, g.pad_w}),
          onednn::dims({right_padding(g.H, g.P, g.window_h, g.stride_h, g.pad_h),
                        right_padding(g.W, g.Q, g.window_w, g.stride_w, g.pad_w)})};
}

memory::desc planes_desc(i64 planes, i64 h, i64 w) {
  return memory::desc(onednn::dims({1, planes, h, w}), kF32, memory::format_tag::nchw);
}

// One primitive for runs of `planes` planes.
struct PieceKernel {
  dnnl::primitive primitive;
  memory::desc x, y, scratch;
  std::size_t scratch_bytes = 0;
  std::string implementation;
};

PieceKernel make_piece_kernel(Pool2dOp op, const Pool2dGeometry& g, i64 planes) {
  const dnnl::engine& engine = onednn::cpu_engine();
  const Window win = window(g);
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  PieceKernel k;
  k.x = planes_desc(planes, g.H, g.W);
  k.y = planes_desc(planes, g.P, g.Q);
  auto forward_pd = [&](dnnl::prop_kind kind) {
    return dnnl::pooling_forward::primitive_desc(
        dnnl::pooling_forward::desc(kind, algorithm_of(g.mode), k.x, k.y, win.strides, win.kernel,
                                    win.pad_l, win.pad_r),
        attr, engine);
  };
  if (op == Pool2dOp::Forward) {
    const auto pd = forward_pd(dnnl::prop_kind::forward_inference);
    k.primitive = dnnl::pooling_forward(pd);
    k.scratch = pd.scratchpad_desc();
    k.implementation = onednn::implementation(pd);
  } else {
    const auto hint = forward_pd(dnnl::prop_kind::forward_training);
    const dnnl::pooling_backward::primitive_desc pd(
        dnnl::pooling_backward::desc(algorithm_of(g.mode), k.x, k.y, win.strides, win.kernel,
                                     win.pad_l, win.pad_r),
        attr, engine, hint);
    k.primitive = dnnl::pooling_backward(pd);
    k.scratch = pd.scratchpad_desc();
    k.implementation = onednn::implementation(pd);
  }
  k.scratch_bytes = k.scratch.get_size();
  return k;
}

class OnednnPool2dKernel final : public Pool2dKernel {
public:
  OnednnPool2dKernel(std::size_t bytes, std::string text, Pool2dOp op, const Pool2dGeometry& g,
                     std::vector<Piece> pieces, std::map<i64, PieceKernel> kernels,
                     std::vector<std::size_t> scratch_at)
      : Pool2dKernel(Engine::Onednn, bytes, std::move(text)),
        op_(op),
        g_(g),
        pieces_(std::move(pieces)),
        kernels_(std::move(kernels)),
        scratch_at_(std::move(scratch_at)) {}

  void run(Context&, const Pool2dArgs& args, void* workspace) const override {
    parallel_tasks(static_cast<i64>(pieces_.size()),
                   [&](i64 i) { run_piece(static_cast<std::size_t>(i), args, workspace); });
  }

private:
  void run_piece(std::size_t index, const Pool2dArgs& args, void* workspace) const {
    onednn::use_one_openmp_thread();
    const Piece& piece = pieces_[index];
    const PieceKernel& k = kernels_.at(piece.size());
    const dnnl::engine& engine = onednn::cpu_engine();
    dnnl::stream stream(engine);
    const memory scratch(k.scratch, engine, onednn::at(workspace, scratch_at_[index]));
    const i64 x_at = piece.begin * g_.x_plane(), y_at = piece.begin * g_.y_plane();
    if (op_ == Pool2dOp::Forward) {
      k.primitive.execute(stream,
                          {{DNNL_ARG_SRC, memory(k.x, engine, const_cast<float*>(args.x) + x_at)},
                           {DNNL_ARG_DST, memory(k.y, engine, args.y + y_at)},
                           {DNNL_ARG_SCRATCHPAD, scratch}});
    } else {
      k.primitive.execute(
          stream, {{DNNL_ARG_DIFF_DST, memory(k.y, engine, const_cast<float*>(args.dy) + y_at)},
                   {DNNL_ARG_DIFF_SRC, memory(k.x, engine, args.dx + x_at)},
                   {DNNL_ARG_SCRATCHPAD, scratch}});
    }
    stream.wait();
  }

  Pool2dOp op_;
  Pool2dGeometry g_;
  std::vector<Piece> pieces_;
  std::map<i64, PieceKernel> kernels_;
  std::vector<std::size_t> scratch_at_;
};

// Runs of planes per problem. Pooling has no sum across planes, so more
// runs than threads cost nothing but a call each, and let a thread that
// shares its core with another process take fewer of them (parallel_tasks
// hands them out as threads come free). Under 256 KB of input one run: the
// call costs more than the threads would save.
constexpr i64 kPieceElements = i64{1} << 16;
constexpr i64 kSmallElements = 8192;
int piece_count(const Pool2dGeometry& g, int threads) {
  const i64 by_size = std::max<i64>(1, g.x_elements() / kPieceElements);
  const i64 most = i64{onednn::kPiecesPerThread} * std::max(1, threads);
  return static_cast<int>(std::min({by_size, most, g.planes()}));
}

// Why oneDNN cannot give dlrt's result for this problem, or nothing.
std::string decline(const Pool2dProblem& p) {
  const Pool2dGeometry& g = p.g;
  if (g.mode == PoolMode::Max)
    return "oneDNN's max pooling does not propagate NaN (a NaN never replaces a number), and "
           "keeps its argmax in its own workspace format, not as dlrt's indices";
  if (g.mode == PoolMode::AverageIncludePad) {
    const i64 extra_h = right_padding(g.H, g.P, g.window_h, g.stride_h, g.pad_h) - g.pad_h;
    const i64 extra_w = right_padding(g.W, g.Q, g.window_w, g.stride_w, g.pad_w) - g.pad_w;
    if (extra_h > 0 || extra_w > 0)
      return "ceil mode's last window reaches " + std::to_string(std::max(extra_h, extra_w)) +
             " past the padding; oneDNN's include-pad average divides by the whole window, "
             "dlrt by the part inside the padded input";
  }
  return {};
}

// Auto's rule between this engine and Cpu, from dlrt_bench_pool on the CNN
// and quick tables on a 2-core AVX-512 machine (docs/results/
// 2026-12-03-onednn-pool.md). Where oneDNN runs its jit kernels it is
// 1.4-9x faster than the Cpu engine on most average-pooling rows, and
// within 20% either way (run to run) on a global pool's backward, a pure
// broadcast. Two kinds stay on Cpu:
//  - oneDNN's plain C++ loops on NCHW ("simple_nchw", chosen for 224x224
//    planes): the Cpu engine is 1.1-5x faster;
//  - problems under 32 KB of input, where a oneDNN call costs about what
//    the pooling does (2x64x7x7: 0.7-1.05x; from 2x16x32x32, 128 KB,
//    oneDNN is 2-2.7x faster).
std::string prefer_cpu(const Pool2dProblem& p, const std::string& implementation) {
  const Pool2dGeometry& g = p.g;
  if (implementation.find("jit") == std::string::npos)
    return "oneDNN has no vector kernel for this shape (" + implementation +
           "); the Cpu engine is faster";
  if (g.x_elements() < kSmallElements)
    return "under 32 KB of input the Cpu engine is as fast (no oneDNN call)";
  return {};
}

class OnednnPool2d final : public Pool2dEngine {
public:
  Engine engine() const override { return Engine::Onednn; }

  Planned<Pool2dKernel> plan(Context&, const Pool2dProblem& p) const override {
    using Result = Planned<Pool2dKernel>;
    if (p.variant != 0) return Result::no(no_kernel_variants(engine(), p.variant));
    if (std::string reason = decline(p); !reason.empty()) return Result::no(std::move(reason));
    const Pool2dGeometry& g = p.g;
    onednn::use_one_openmp_thread();
    std::vector<Piece> pieces = onednn::cut(g.planes(), piece_count(g, p.threads));
    std::map<i64, PieceKernel> kernels;
    try {
      for (const Piece& piece : pieces)
        if (!kernels.contains(piece.size()))
          kernels.emplace(piece.size(), make_piece_kernel(p.op, g, piece.size()));
    } catch (const dnnl::error& e) {
      return Result::no(std::string("oneDNN has no pooling primitive for this problem: ") +
                        e.what());
    }
    Carver carve;
    std::vector<std::size_t> scratch_at;
    for (const Piece& piece : pieces)
      scratch_at.push_back(
          carve.take(std::max<std::size_t>(kernels.at(piece.size()).scratch_bytes, 1)));
    if (carve.used() > p.options.workspace_limit_bytes)
      return Result::no("needs " + std::to_string(carve.used()) +
                        " bytes of workspace (oneDNN's scratchpad), over the context's limit of " +
                        std::to_string(p.options.workspace_limit_bytes));
    std::string text = kernels.begin()->second.implementation + ", " +
                       std::to_string(pieces.size()) + " channel piece" +
                       (pieces.size() == 1 ? "" : "s");
    const std::size_t bytes = carve.used();
    Result result;
    result.defer = prefer_cpu(p, kernels.begin()->second.implementation);
    result.kernel =
        std::make_shared<OnednnPool2dKernel>(bytes, std::move(text), p.op, g, std::move(pieces),
                                             std::move(kernels), std::move(scratch_at));
    return result;
  }
};

const Registrar<Pool2dEngine> registrar{std::make_unique<OnednnPool2d>()};

}  // namespace
}  // namespace dlrt::detail
