// The Onednn convolution engine: oneDNN's direct convolution primitives
// (forward, backward data, backward weights; a sum reduction for the bias
// gradient) on its blocked layouts, with reorders from and to dlrt's NCHW
// and KCRS. Each problem is cut along the batch into pieces (onednn_support.hpp
// says why, piece_count how many); backward weights and bias sum the pieces'
// partial gradients in piece order.
#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kernels/onednn/onednn_support.hpp"
#include "runtime/conv2d_engine.hpp"
#include "runtime/parallel.hpp"

namespace dlrt::detail {
namespace {

using dnnl::memory;
using onednn::Carver;
using onednn::Piece;
using onednn::Reorder;
using i64 = std::int64_t;
using Tag = memory::format_tag;
constexpr memory::data_type kF32 = memory::data_type::f32;

memory::desc plain(memory::dims d, Tag tag) { return memory::desc(std::move(d), kF32, tag); }
memory::desc any(memory::dims d) { return memory::desc(std::move(d), kF32, Tag::any); }

memory::dims weight_dims(const Conv2dGeometry& g) {
  if (g.groups == 1) return onednn::dims({g.K, g.C, g.R, g.S});
  return onednn::dims({g.groups, g.k_per_group(), g.c_per_group(), g.R, g.S});
}
Tag weight_tag(const Conv2dGeometry& g) { return g.groups == 1 ? Tag::oihw : Tag::goihw; }

struct Window {
  memory::dims strides, dilates, pad_l, pad_r;
};
// oneDNN counts dilation from 0; its output-size check floors as dlrt's rule does.
Window window(const Conv2dGeometry& g) {
  return {onednn::dims({g.stride_h, g.stride_w}),
          onednn::dims({g.dilation_h - 1, g.dilation_w - 1}), onednn::dims({g.pad_h, g.pad_w}),
          onednn::dims({g.pad_h, g.pad_w})};
}

dnnl::primitive_attr user_scratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

// One primitive for pieces of `n` images, and the reorders around it:
// `a` and `b` bring the inputs into the primitive's layouts, `out` brings
// its output back (Forward: a = x, b = w; BackwardData: a = dy, b = w;
// BackwardFilter: a = x, b = dy, out = dw; BackwardBias: a = dy, out = db).
struct PieceKernel {
  i64 n = 0;
  dnnl::primitive primitive;
  Reorder a, b, out;
  memory::desc scratch;
  std::size_t scratch_bytes = 0;
  std::string implementation;
};

struct Layout {
  // Shared by every piece of one size: the filter in the primitive's layout.
  std::map<i64, std::size_t> weights_at;
  std::size_t zero_bias_at = 0;
  // Per piece: its inputs and output in the primitive's layouts, its
  // scratchpad, and (backward weights and bias) its partial gradient.
  struct PieceSlices {
    std::size_t a = 0, b = 0, out = 0, scratch = 0, partial = 0;
  };
  std::vector<PieceSlices> pieces;
  std::size_t bytes = 0;
};

class OnednnConv2dKernel final : public Conv2dKernel {
public:
  OnednnConv2dKernel(std::size_t bytes, std::string text, Conv2dOp op, const Conv2dGeometry& g,
                     std::vector<Piece> pieces, std::map<i64, PieceKernel> kernels, Layout layout)
      : Conv2dKernel(Engine::Onednn, bytes, std::move(text)),
        op_(op),
        g_(g),
        pieces_(std::move(pieces)),
        kernels_(std::move(kernels)),
        layout_(std::move(layout)) {}

  void run(Context&, const Conv2dArgs& args, void* workspace) const override {
    onednn::use_one_openmp_thread();
    // The filter, reordered once per piece size, is read by every piece.
    if (op_ == Conv2dOp::Forward || op_ == Conv2dOp::BackwardData) {
      dnnl::stream stream(onednn::cpu_engine());
      for (const auto& [n, k] : kernels_)
        k.b.run(stream, const_cast<float*>(args.w),
                onednn::at(workspace, layout_.weights_at.at(n)));
      stream.wait();
    }
    if (op_ == Conv2dOp::Forward && args.bias == nullptr)
      std::memset(onednn::at(workspace, layout_.zero_bias_at), 0,
                  static_cast<std::size_t>(g_.K) * sizeof(float));
    parallel_tasks(static_cast<i64>(pieces_.size()),
                   [&](i64 i) { run_piece(static_cast<std::size_t>(i), args, workspace); });
    if (op_ == Conv2dOp::BackwardFilter) sum_partials(args.dw, g_.w_elements(), workspace);
    if (op_ == Conv2dOp::BackwardBias) sum_partials(args.db, g_.K, workspace);
  }

private:
  void run_piece(std::size_t index, const Conv2dArgs& args, void* workspace) const {
    onednn::use_one_openmp_thread();
    const Piece& piece = pieces_[index];
    const PieceKernel& k = kernels_.at(piece.size());
    const Layout::PieceSlices& s = layout_.pieces[index];
    const dnnl::engine& engine = onednn::cpu_engine();
    dnnl::stream stream(engine);
    auto ws = [&](std::size_t offset) { return onednn::at(workspace, offset); };
    // The piece's own input, or its reordered copy.
    auto input = [&](const Reorder& r, const float* user, std::size_t slice) -> void* {
      void* source = const_cast<float*>(user);
      return r.run(stream, source, ws(slice)) ? ws(slice) : source;
    };
    const memory scratch(k.scratch, engine, ws(s.scratch));
    // The filter in the primitive's layout: reordered once per run, or the user's own.
    void* w = k.b.needed ? ws(layout_.weights_at.at(k.n)) : const_cast<float*>(args.w);
    const i64 x_image = g_.C * g_.H * g_.W, y_image = g_.K * g_.P * g_.Q;
    switch (op_) {
      case Conv2dOp::Forward: {
        void* x = input(k.a, args.x + piece.begin * x_image, s.a);
        void* y_user = args.y + piece.begin * y_image;
        void* y = k.out.needed ? ws(s.out) : y_user;
        const void* bias =
            args.bias ? static_cast<const void*>(args.bias) : ws(layout_.zero_bias_at);
        k.primitive.execute(stream, {{DNNL_ARG_SRC, memory(k.a.to, engine, x)},
                                     {DNNL_ARG_WEIGHTS, memory(k.b.to, engine, w)},
                                     {DNNL_ARG_BIAS, memory(plain(onednn::dims({g_.K}), Tag::x),
                                                            engine, const_cast<void*>(bias))},
                                     {DNNL_ARG_DST, memory(k.out.from, engine, y)},
                                     {DNNL_ARG_SCRATCHPAD, scratch}});
        k.out.run(stream, y, y_user);
        break;
      }
      case Conv2dOp::BackwardData: {
        void* dy = input(k.a, args.dy + piece.begin * y_image, s.a);
        void* dx_user = args.dx + piece.begin * x_image;
        void* dx = k.out.needed ? ws(s.out) : dx_user;
        k.primitive.execute(stream, {{DNNL_ARG_DIFF_DST, memory(k.a.to, engine, dy)},
                                     {DNNL_ARG_WEIGHTS, memory(k.b.to, engine, w)},
                                     {DNNL_ARG_DIFF_SRC, memory(k.out.from, engine, dx)},
                                     {DNNL_ARG_SCRATCHPAD, scratch}});
        k.out.run(stream, dx, dx_user);
        break;
      }
      case Conv2dOp::BackwardFilter: {
        void* x = input(k.a, args.x + piece.begin * x_image, s.a);
        void* dy = input(k.b, args.dy + piece.begin * y_image, s.b);
        // One piece writes dw itself; several write partials summed after.
        void* dw_user = pieces_.size() == 1 ? static_cast<void*>(args.dw) : ws(s.partial);
        void* dw = k.out.needed ? ws(s.out) : dw_user;
        k.primitive.execute(stream, {{DNNL_ARG_SRC, memory(k.a.to, engine, x)},
                                     {DNNL_ARG_DIFF_DST, memory(k.b.to, engine, dy)},
                                     {DNNL_ARG_DIFF_WEIGHTS, memory(k.out.from, engine, dw)},
                                     {DNNL_ARG_SCRATCHPAD, scratch}});
        k.out.run(stream, dw, dw_user);
        break;
      }
      case Conv2dOp::BackwardBias: {
        void* db = pieces_.size() == 1 ? static_cast<void*>(args.db) : ws(s.partial);
        k.primitive.execute(
            stream, {{DNNL_ARG_SRC, memory(k.a.from, engine,
                                           const_cast<float*>(args.dy) + piece.begin * y_image)},
                     {DNNL_ARG_DST, memory(k.out.from, engine, db)},
                     {DNNL_ARG_SCRATCHPAD, scratch}});
        break;
      }
    }
    stream.wait();
  }

  // out[e] = sum over pieces, in piece order, of their partial[e].
  void sum_partials(float* out, i64 count, void* workspace) const {
    if (pieces_.size() == 1) return;
    parallel_for(0, count, grain_for(0.3 * static_cast<double>(pieces_.size())),
                 [&](i64 e0, i64 e1) {
                   for (i64 e = e0; e < e1; ++e) {
                     float sum = 0.0f;
                     for (const Layout::PieceSlices& s : layout_.pieces)
                       sum += static_cast<const float*>(onednn::at(workspace, s.partial))[e];
                     out[e] = sum;
                   }
                 });
  }

  Conv2dOp op_;
  Conv2dGeometry g_;
  std::vector<Piece> pieces_;
  std::map<i64, PieceKernel> kernels_;
  Layout layout_;
};

// The primitive for pieces of n images.
PieceKernel make_piece_kernel(Conv2dOp op, const Conv2dGeometry& g, i64 n) {
  const dnnl::engine& engine = onednn::cpu_engine();
  const Window win = window(g);
  const memory::dims x_dims = onednn::dims({n, g.C, g.H, g.W});
  const memory::dims y_dims = onednn::dims({n, g.K, g.P, g.Q});
  const memory::dims w_dims = weight_dims(g);
  const memory::desc x_user = plain(x_dims, Tag::nchw), y_user = plain(y_dims, Tag::nchw);
  const memory::desc w_user = plain(w_dims, weight_tag(g));
  const memory::desc bias_md = plain(onednn::dims({g.K}), Tag::x);
  PieceKernel k;
  k.n = n;
  auto forward_pd = [&](dnnl::prop_kind kind) {
    return dnnl::convolution_forward::primitive_desc(
        dnnl::convolution_forward::desc(kind, dnnl::algorithm::convolution_direct, any(x_dims),
                                        any(w_dims), bias_md, any(y_dims), win.strides, win.dilates,
                                        win.pad_l, win.pad_r),
        user_scratchpad(), engine);
  };
  switch (op) {
    case Conv2dOp::Forward: {
      const auto pd = forward_pd(dnnl::prop_kind::forward_inference);
      k.primitive = dnnl::convolution_forward(pd);
      k.a = Reorder(x_user, pd.src_desc());
      k.b = Reorder(w_user, pd.weights_desc());
      k.out = Reorder(pd.dst_desc(), y_user);
      k.scratch = pd.scratchpad_desc();
      k.scratch_bytes = k.scratch.get_size();
      k.implementation = onednn::implementation(pd);
      break;
    }
    case Conv2dOp::BackwardData: {
      const auto hint = forward_pd(dnnl::prop_kind::forward_training);
      const dnnl::convolution_backward_data::primitive_desc pd(
          dnnl::convolution_backward_data::desc(dnnl::algorithm::convolution_direct, any(x_dims),
                                                any(w_dims), any(y_dims), win.strides, win.dilates,
                                                win.pad_l, win.pad_r),
          user_scratchpad(), engine, hint);
      k.primitive = dnnl::convolution_backward_data(pd);
      k.a = Reorder(y_user, pd.diff_dst_desc());
      k.b = Reorder(w_user, pd.weights_desc());
      k.out = Reorder(pd.diff_src_desc(), x_user);
      k.scratch = pd.scratchpad_desc();
      k.scratch_bytes = k.scratch.get_size();
      k.implementation = onednn::implementation(pd);
      break;
    }
    case Conv2dOp::BackwardFilter: {
      const auto hint = forward_pd(dnnl::prop_kind::forward_training);
      const dnnl::convolution_backward_weights::primitive_desc pd(
          dnnl::convolution_backward_weights::desc(dnnl::algorithm::convolution_direct, any(x_dims),
                                                   any(w_dims), any(y_dims), win.strides,
                                                   win.dilates, win.pad_l, win.pad_r),
          user_scratchpad(), engine, hint);
      k.primitive = dnnl::convolution_backward_weights(pd);
      k.a = Reorder(x_user, pd.src_desc());
      k.b = Reorder(y_user, pd.diff_dst_desc());
      k.out = Reorder(pd.diff_weights_desc(), w_user);
      k.scratch = pd.scratchpad_desc();
      k.scratch_bytes = k.scratch.get_size();
      k.implementation = onednn::implementation(pd);
      break;
    }
    case Conv2dOp::BackwardBias: {
      const memory::desc db_md = plain(onednn::dims({1, g.K, 1, 1}), Tag::nchw);
      const dnnl::reduction::primitive_desc pd(
          dnnl::reduction::desc(dnnl::algorithm::reduction_sum, y_user, db_md, 0.0f, 0.0f),
          user_scratchpad(), engine);
      k.primitive = dnnl::reduction(pd);
      k.a = Reorder(y_user, y_user);
      k.out = Reorder(db_md, db_md);
      k.scratch = pd.scratchpad_desc();
      k.scratch_bytes = k.scratch.get_size();
      k.implementation = onednn::implementation(pd);
      break;
    }
  }
  return k;
}

// Pieces per problem: up to onednn::kPiecesPerThread per thread. Backward
// weights and bias pay for each piece beyond one with a partial gradient to
// sum, about 0.3 ns per element (the sum's grain below), so they take more
// pieces than threads only while those sums stay under 1% of the
// convolution's own time (about 0.02 ns per FLOP on one core).
int piece_count(const Conv2dProblem& p) {
  const Conv2dGeometry& g = p.g;
  const int threads = std::max(1, p.threads);
  i64 pieces = std::min<i64>(g.N, i64{onednn::kPiecesPerThread} * threads);
  if (p.op == Conv2dOp::BackwardFilter || p.op == Conv2dOp::BackwardBias) {
    const double partial = static_cast<double>(
        p.op == Conv2dOp::BackwardBias ? g.K : static_cast<i64>(g.w_elements()));
    const double affordable = 0.01 * 0.02 * g.flops() / (0.3 * partial);
    pieces = std::min<i64>(pieces, std::max<i64>(threads, static_cast<i64>(affordable)));
  }
  return static_cast<int>(pieces);
}

// Auto's rule between this engine and Cpu, from dlrt_bench_conv on the
// ResNet-50 table at batch 32 on a 2-core AVX-512 machine (docs/results/
// 2026-12-02-onednn-conv.md): oneDNN's blocked kernels win 3x3 and 7x7
// forward by 1.3x, backward data by 1.4-1.8x and backward weights by
// 1.2-2.8x, but lose the 1x1 forward convolutions (where Cpu runs one
// GEMM with no unfolding) by 1.3-2.6x and backward data with 3 input
// channels by 2.7x. Problems under 10 MFLOP stay on Cpu: the reorders to
// and from the blocked layouts are not worth it there.
std::string prefer_cpu(const Conv2dProblem& p) {
  const Conv2dGeometry& g = p.g;
  if (g.flops() < 1e7) return "under 10 MFLOP the Cpu engine is faster (no layout reorders)";
  switch (p.op) {
    case Conv2dOp::Forward:
      if (g.R == 1 && g.S == 1) return "the Cpu engine runs 1x1 forward as one GEMM, faster";
      return {};
    case Conv2dOp::BackwardData:
      if (g.c_per_group() < 16) return "oneDNN's backward data is slow for under 16 input channels";
      return {};
    case Conv2dOp::BackwardFilter:
      // Measured on ResNet-50's stage 4 (docs/results/2026-12-03-onednn-conv-auto.md):
      // onto 7x7 planes the Cpu engine's one GEMM over N*P*Q is 1.2-2x faster for 3x3 and
      // strided 1x1 filters; a widening 1x1 (K > C) stays 1.1x faster on oneDNN.
      if (g.P * g.Q <= 49 &&
          !(g.R == 1 && g.S == 1 && g.stride_h == 1 && g.stride_w == 1 && g.K > g.C))
        return "onto output planes of at most 7x7 the Cpu engine's backward filter (one GEMM "
               "over the batch) is faster";
      return {};
    case Conv2dOp::BackwardBias:
      return "the bias gradient is a memory-bound sum, as fast on the Cpu engine";
  }
  return {};
}

class OnednnConv2d final : public Conv2dEngine {
public:
  Engine engine() const override { return Engine::Onednn; }

  Planned<Conv2dKernel> plan(Context&, const Conv2dProblem& p) const override {
    using Result = Planned<Conv2dKernel>;
    if (p.variant != 0) return Result::no(no_kernel_variants(engine(), p.variant));
    const Conv2dGeometry& g = p.g;
    onednn::use_one_openmp_thread();
    std::vector<Piece> pieces = onednn::cut(g.N, piece_count(p));
    std::map<i64, PieceKernel> kernels;
    try {
      for (const Piece& piece : pieces)
        if (!kernels.contains(piece.size()))
          kernels.emplace(piece.size(), make_piece_kernel(p.op, g, piece.size()));
    } catch (const dnnl::error& e) {
      return Result::no(std::string("oneDNN has no primitive for this problem: ") + e.what());
    }
    Carver carve;
    Layout layout;
    for (const auto& [n, k] : kernels)
      layout.weights_at[n] =
          carve.take(k.b.needed && p.op != Conv2dOp::BackwardFilter ? k.b.to.get_size() : 0);
    layout.zero_bias_at = carve.take(static_cast<std::size_t>(g.K) * sizeof(float));
    const bool partials =
        pieces.size() > 1 && (p.op == Conv2dOp::BackwardFilter || p.op == Conv2dOp::BackwardBias);
    const std::size_t partial_bytes =
        static_cast<std::size_t>(p.op == Conv2dOp::BackwardBias ? g.K : g.w_elements()) *
        sizeof(float);
    for (const Piece& piece : pieces) {
      const PieceKernel& k = kernels.at(piece.size());
      Layout::PieceSlices s;
      s.a = carve.take(k.a.needed ? k.a.to.get_size() : 0);
      s.b = carve.take(k.b.needed && p.op == Conv2dOp::BackwardFilter ? k.b.to.get_size() : 0);
      s.out = carve.take(k.out.needed ? k.out.from.get_size() : 0);
      s.scratch = carve.take(std::max<std::size_t>(k.scratch_bytes, 1));
      s.partial = carve.take(partials ? partial_bytes : 0);
      layout.pieces.push_back(s);
    }
    layout.bytes = carve.used();
    if (layout.bytes > p.options.workspace_limit_bytes)
      return Result::no("needs " + std::to_string(layout.bytes) +
                        " bytes of workspace (blocked layouts and scratchpad), over the "
                        "context's limit of " +
                        std::to_string(p.options.workspace_limit_bytes));
    std::string text = kernels.begin()->second.implementation + ", " +
                       std::to_string(pieces.size()) + " batch piece" +
                       (pieces.size() == 1 ? "" : "s");
    const std::size_t bytes = layout.bytes;
    Result result;
    result.kernel = std::make_shared<OnednnConv2dKernel>(
        bytes, std::move(text), p.op, g, std::move(pieces), std::move(kernels), std::move(layout));
    result.defer = prefer_cpu(p);
    return result;
  }
};

const Registrar<Conv2dEngine> registrar{std::make_unique<OnednnConv2d>()};

}  // namespace
}  // namespace dlrt::detail
