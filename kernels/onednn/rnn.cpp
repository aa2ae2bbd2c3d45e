// The Onednn recurrent engine: oneDNN's RNN primitives on whole sequences,
// beside the Cpu engine's scheduler.
//
//   Tanh, Relu  vanilla_rnn_forward / vanilla_rnn_backward (eltwise_tanh, eltwise_relu)
//   Lstm        lstm_forward / lstm_backward (no peephole, no projection)
//   Gru         lbr_gru_forward / lbr_gru_backward: the linear-before-reset GRU
//               is the one whose reset gate applies after the recurrent
//               product and its bias, as dlrt's, PyTorch's and cuDNN's
//
// oneDNN has no per-sequence lengths (2.6), so the batch is cut into groups
// of sequences of one length, each group run over exactly its own steps by
// primitives of that length: results are exact for any set of lengths. A
// batch of one length is cut into one piece per thread instead. The groups
// run at once on dlrt's threads (parallel_tasks), each oneDNN primitive
// with one OpenMP thread (onednn_support.hpp says why); weight gradients
// are summed over the groups in group order, so results are the same run
// to run.
//
// Layers: one primitive runs several layers only when every layer's input
// is as wide (its weights_layer is [L, D, SLC, G, DIC]), so layer 0 gets its
// own primitive when input_size != H and layers 1..L-1 share one. oneDNN
// 2.6 refuses stacked bidirectional layers (their primitive descriptors
// fail), so a bidirectional stack gets a primitive per layer, as does any
// stack whose stacked form oneDNN refuses. Directions are oneDNN's
// bidirectional_concat, which concatenates [forward, reverse] as dlrt's y
// does.
//
// Weights: dlrt's flat tensor is PyTorch's order, weight_ih [G*H, I] (gates,
// then rows, then columns), which for a stage's layers and directions, each
// a fixed stride apart, is a strided ldgoi view. Weights may change between
// runs, so each run reorders them: for tanh, ReLU and LSTM (oneDNN's i, f,
// c~, o are PyTorch's i, f, g, o) straight from that view into the layout
// each primitive chose; for GRU (PyTorch's r, z, n are oneDNN's r, u, o,
// stored u, r, o) gate by gate into a plain ldigo tensor, then into the
// primitive's layout. Where oneDNN has no reorder from the flat view into a
// primitive's layout (the packed inference layouts it picks without
// AVX-512), every cell goes the GRU way. oneDNN has one bias per gate where dlrt has two, so the
// bias is b_ih + b_hh (LBR GRU keeps b_in and b_hn apart, its 4 bias rows
// being u, r, o and the recurrent o). Backward computes the weight
// gradients together with the data gradients, so backward_data leaves dW,
// in PyTorch's order, in the training state, and backward_weights copies or
// adds it into dw.
//
// Declines: kernel variants; an executor (oneDNN plays the sequence
// itself); proj_size > 0 (oneDNN 2.6's LSTM projection is not checked
// against dlrt's); the cell ops (no single-step primitive); whatever oneDNN
// refuses at plan time; a workspace over the context's limit. Auto's rule
// (prefer_cpu, below) passes small batches, finely cut length sets and
// large GRUs on small batches to the Cpu engine.
#include <algorithm>
#include <cstddef>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <new>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "dlrt/error.hpp"
#include "kernels/onednn/onednn_support.hpp"
#include "runtime/parallel.hpp"
#include "runtime/rnn_engine.hpp"

namespace dlrt::detail {
namespace {

using dnnl::memory;
using onednn::Carver;
using onednn::Reorder;
using i64 = std::int64_t;
using Tag = memory::format_tag;
constexpr memory::data_type kF32 = memory::data_type::f32;

memory::desc plain(memory::dims d, Tag tag) { return memory::desc(std::move(d), kF32, tag); }
memory::desc any(memory::dims d) { return memory::desc(std::move(d), kF32, Tag::any); }

dnnl::primitive_attr user_scratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

// The PyTorch gate block of each oneDNN gate (GRU: u = z, r, o = n).
int pytorch_gate(RnnCell cell, int gate) {
  if (cell == RnnCell::Gru) {
    constexpr int kGru[] = {1, 0, 2};
    return kGru[gate];
  }
  return gate;
}

// Bias rows per layer and direction in oneDNN: one per gate, LBR GRU one more.
int bias_gates(RnnCell cell) { return cell == RnnCell::Gru ? 4 : rnn_gate_count(cell); }

// Layers [first, first + layers) run by one primitive, each reading `slc` values per step.
struct Stage {
  int first = 0, layers = 1;
  i64 slc = 1;
};

// Sequences run together over `T` steps: batch rows `rows` of the problem.
struct Group {
  i64 T = 1;
  std::vector<int> rows;
  bool whole = false;  // every row in order, over all T steps: user tensors used in place
  i64 n() const { return static_cast<i64>(rows.size()); }
};

// The primitives of one stage for groups of one shape (T, n).
struct StageKernel {
  dnnl::primitive inference, training, backward;
  memory::desc ws;  // training's workspace (oneDNN's saved gates)
  // The weights (dlrt's flat view when the design is direct, else plain
  // ldigo) -> each primitive's weight layouts.
  Reorder wl_inference, wi_inference, wl_training, wi_training, wl_backward, wi_backward;
  // Backward's diff weight layouts -> the flat view (direct) or plain ldigo;
  // the add forms (direct only) sum into dW.
  Reorder dwl, dwi;
  dnnl::reorder dwl_add, dwi_add;
  std::size_t scratch_bytes = 0;
  std::string implementation;
};

using KernelKey = std::tuple<int, i64, i64>;  // stage, T, n

// Where each buffer lies. Offsets in `act` are from the activations' base
// (the workspace in inference, the training state in training), in `saved`
// from the training state's, the rest from the workspace's.
struct GroupSlices {
  // activations: per stage, its output sequence and final states
  std::vector<std::size_t> dst_layer, dst_iter, dst_iter_c;
  // saved: per stage, oneDNN's workspace
  std::vector<std::size_t> ws;
  // workspace
  std::size_t x = 0, dy = 0, dx = 0, scratch = 0;
  std::vector<std::size_t> src_iter, src_iter_c, diff_dst_iter, diff_dst_iter_c, diff_src_iter,
      diff_src_iter_c, diff_src_layer, dwl, dwi, db, dwl_plain, dwi_plain;
};

struct StageWeights {
  std::size_t wl = 0, wi = 0, b = 0;  // plain ldigo, ldigo, ldgo
};

struct KernelWeights {
  std::size_t wl_inference = 0, wi_inference = 0, wl_training = 0, wi_training = 0, wl_backward = 0,
              wi_backward = 0;
};

// Offsets of one layer and direction's pieces in the flat weights (-1: none).
struct FlatPieces {
  i64 w_ih = -1, w_hh = -1, b_ih = -1, b_hh = -1;
};

// One run of gates of a stage's matrix (weights_layer or weights_iter)
// between dlrt's flat tensor and the plain ldigo tensor, as strided views
// that oneDNN's reorder moves: in the flat tensor, layer and direction l, d
// of the stage start `block` floats apart and each gate is [H, cols]
// row-major (goi); in ldigo the gates interleave per input column.
// Gate-order-preserving cells move all gates in one run; GRU in three.
struct GateMove {
  i64 user_at = 0, plain_at = 0;   // floats into the flat tensor and the ldigo tensor
  dnnl::reorder in;                // flat -> ldigo
  dnnl::reorder out_set, out_add;  // ldigo -> flat: overwrite, add
  memory::desc user_md, plain_md;
};

struct Design {
  RnnParams params;
  i64 T = 1, N = 1, D = 1, H = 1, G = 1, Gb = 1;
  std::vector<Stage> stages;
  std::vector<Group> groups;
  std::map<KernelKey, StageKernel> kernels;
  std::vector<FlatPieces> flat;  // layer * D + direction
  i64 weight_count = 0;
  std::vector<StageWeights> stage_weights;
  std::vector<std::vector<GateMove>> wl_moves, wi_moves;  // per stage
  std::map<KernelKey, KernelWeights> kernel_weights;
  std::vector<GroupSlices> slices;
  std::size_t workspace_bytes = 0, act_bytes = 0, saved_bytes = 0, dw_at = 0;
  std::size_t act_at = 0;  // inference's activations, in the workspace

  // Cells whose gate order is PyTorch's move weights between dlrt's flat
  // tensor and the primitives' layouts in one reorder each; GRU goes
  // through plain ldigo, gate by gate.
  bool direct() const { return allow_direct && params.cell != RnnCell::Gru; }
  // Off when oneDNN has no reorder between the flat view and a primitive's
  // layout (the packed inference layouts of machines without AVX-512).
  bool allow_direct = true;
  bool lstm() const { return params.cell == RnnCell::Lstm; }
  i64 y_width() const { return D * H; }
  const StageKernel& kernel(int stage, const Group& g) const {
    return kernels.at({stage, g.T, g.n()});
  }
  const KernelWeights& weights_of(int stage, const Group& g) const {
    return kernel_weights.at({stage, g.T, g.n()});
  }
  // Dims of one stage's tensors for a group.
  memory::dims layer_dims(const Group& g, i64 width) const {
    return onednn::dims({g.T, g.n(), width});
  }
  memory::dims iter_dims(const Stage& s, const Group& g) const {
    return onednn::dims({s.layers, D, g.n(), H});
  }
};

// ---- the training state

struct AlignedDelete {
  void operator()(std::byte* p) const { ::operator delete[](p, std::align_val_t(64)); }
};

class OnednnRnnKernel;

// oneDNN's workspace and every stage's outputs of each group (backward reads
// them), and dW after backward_data.
class OnednnRnnSaved final : public RnnSavedData {
public:
  OnednnRnnSaved(const OnednnRnnKernel* owner, std::size_t bytes)
      : owner_(owner),
        bytes_(new (std::align_val_t(64)) std::byte[std::max<std::size_t>(bytes, 1)]) {}
  const OnednnRnnKernel* owner() const { return owner_; }
  std::byte* base() const { return bytes_.get(); }

private:
  const OnednnRnnKernel* owner_;
  std::unique_ptr<std::byte[], AlignedDelete> bytes_;
};

// ---- copies between dlrt's tensors and a group's

// rows of [T, N, width] at steps [0, g.T) -> [g.T, n, width]
void gather_sequence(const Group& g, i64 N, i64 width, const float* from, float* to) {
  for (i64 t = 0; t < g.T; ++t)
    for (i64 j = 0; j < g.n(); ++j)
      std::memcpy(to + (t * g.n() + j) * width,
                  from + (t * N + g.rows[static_cast<std::size_t>(j)]) * width,
                  static_cast<std::size_t>(width) * sizeof(float));
}

// The inverse, with zeros at steps [g.T, T).
void scatter_sequence(const Group& g, i64 T, i64 N, i64 width, const float* from, float* to) {
  for (i64 j = 0; j < g.n(); ++j) {
    const i64 n = g.rows[static_cast<std::size_t>(j)];
    for (i64 t = 0; t < g.T; ++t)
      std::memcpy(to + (t * N + n) * width, from + (t * g.n() + j) * width,
                  static_cast<std::size_t>(width) * sizeof(float));
    for (i64 t = g.T; t < T; ++t)
      std::memset(to + (t * N + n) * width, 0, static_cast<std::size_t>(width) * sizeof(float));
  }
}

// A stage's rows of a [L*D, N, H] state -> [layers, D, n, H]; zeros when null.
void gather_state(const Design& d, const Stage& s, const Group& g, const float* from, float* to) {
  const std::size_t row = static_cast<std::size_t>(d.H) * sizeof(float);
  for (i64 l = 0; l < s.layers; ++l)
    for (i64 dir = 0; dir < d.D; ++dir)
      for (i64 j = 0; j < g.n(); ++j) {
        float* out = to + ((l * d.D + dir) * g.n() + j) * d.H;
        if (from == nullptr) {
          std::memset(out, 0, row);
          continue;
        }
        const i64 state = (s.first + l) * d.D + dir;
        std::memcpy(out, from + (state * d.N + g.rows[static_cast<std::size_t>(j)]) * d.H, row);
      }
}

void scatter_state(const Design& d, const Stage& s, const Group& g, const float* from, float* to) {
  if (to == nullptr) return;
  const std::size_t row = static_cast<std::size_t>(d.H) * sizeof(float);
  for (i64 l = 0; l < s.layers; ++l)
    for (i64 dir = 0; dir < d.D; ++dir)
      for (i64 j = 0; j < g.n(); ++j) {
        const i64 state = (s.first + l) * d.D + dir;
        std::memcpy(to + (state * d.N + g.rows[static_cast<std::size_t>(j)]) * d.H,
                    from + ((l * d.D + dir) * g.n() + j) * d.H, row);
      }
}

// Flat PyTorch-order biases -> a stage's ldgo bias (oneDNN's one per gate
// is b_ih + b_hh; LBR GRU keeps b_in and b_hn apart, as its rows o and u').
void bias_to_plain(const Design& d, const Stage& s, const float* w, float* b) {
  const RnnCell cell = d.params.cell;
  const i64 H = d.H;
  for (i64 l = 0; l < s.layers; ++l)
    for (i64 dir = 0; dir < d.D; ++dir) {
      const FlatPieces& f = d.flat[static_cast<std::size_t>((s.first + l) * d.D + dir)];
      float* b_ld = b + (l * d.D + dir) * d.Gb * H;
      if (f.b_ih < 0) {
        std::fill_n(b_ld, d.Gb * H, 0.0f);
        continue;
      }
      for (i64 g = 0; g < d.G; ++g) {
        const i64 pg = pytorch_gate(cell, static_cast<int>(g));
        const bool apart = cell == RnnCell::Gru && pg == 2;
        for (i64 o = 0; o < H; ++o) {
          const float ih = w[f.b_ih + pg * H + o], hh = w[f.b_hh + pg * H + o];
          b_ld[g * H + o] = apart ? ih : ih + hh;
          if (apart) b_ld[3 * H + o] = hh;
        }
      }
    }
}

// A stage's ldgo diff bias -> flat dW's biases (added when `add`): both of
// dlrt's biases of a gate get oneDNN's one gradient.
void bias_from_plain(const Design& d, const Stage& s, const float* b, float* dw, bool add) {
  const RnnCell cell = d.params.cell;
  const i64 H = d.H;
  auto put = [add](float& to, float v) { to = add ? to + v : v; };
  for (i64 l = 0; l < s.layers; ++l)
    for (i64 dir = 0; dir < d.D; ++dir) {
      const FlatPieces& f = d.flat[static_cast<std::size_t>((s.first + l) * d.D + dir)];
      if (f.b_ih < 0) continue;
      const float* b_ld = b + (l * d.D + dir) * d.Gb * H;
      for (i64 g = 0; g < d.G; ++g) {
        const i64 pg = pytorch_gate(cell, static_cast<int>(g));
        const bool apart = cell == RnnCell::Gru && pg == 2;
        for (i64 o = 0; o < H; ++o) {
          put(dw[f.b_ih + pg * H + o], b_ld[g * H + o]);
          put(dw[f.b_hh + pg * H + o], apart ? b_ld[3 * H + o] : b_ld[g * H + o]);
        }
      }
    }
}

std::vector<GateMove> gate_moves(const Design& d, const Stage& s, i64 cols, i64 first_at,
                                 i64 block) {
  const dnnl::engine& engine = onednn::cpu_engine();
  const i64 H = d.H, G = d.G;
  struct Run {
    i64 gate, pytorch, count;
  };
  std::vector<Run> runs;
  if (d.params.cell == RnnCell::Gru) {
    for (i64 g = 0; g < G; ++g)
      runs.push_back({g, pytorch_gate(d.params.cell, static_cast<int>(g)), 1});
  } else {
    runs.push_back({0, 0, G});
  }
  dnnl::primitive_attr add;
  dnnl::post_ops sum;
  sum.append_sum(1.0f);
  add.set_post_ops(sum);
  std::vector<GateMove> moves;
  for (const Run& r : runs) {
    const memory::dims dims = onednn::dims({s.layers, d.D, cols, r.count, H});
    GateMove m;
    m.user_at = first_at + r.pytorch * H * cols;
    m.plain_at = r.gate * H;
    m.user_md = memory::desc(dims, kF32, onednn::dims({d.D * block, block, 1, H * cols, cols}));
    m.plain_md =
        memory::desc(dims, kF32, onednn::dims({d.D * cols * G * H, cols * G * H, G * H, H, 1}));
    if (d.direct()) {  // the stage kernels reorder from and to user_md themselves
      moves.push_back(std::move(m));
      continue;
    }
    m.in = dnnl::reorder(dnnl::reorder::primitive_desc(engine, m.user_md, engine, m.plain_md));
    m.out_set = dnnl::reorder(dnnl::reorder::primitive_desc(engine, m.plain_md, engine, m.user_md));
    m.out_add =
        dnnl::reorder(dnnl::reorder::primitive_desc(engine, m.plain_md, engine, m.user_md, add));
    moves.push_back(std::move(m));
  }
  return moves;
}

void run_move(dnnl::stream& stream, const dnnl::reorder& r, const memory::desc& from_md,
              const float* from, const memory::desc& to_md, float* to) {
  const dnnl::engine& engine = onednn::cpu_engine();
  r.execute(stream, {{DNNL_ARG_FROM, memory(from_md, engine, const_cast<float*>(from))},
                     {DNNL_ARG_TO, memory(to_md, engine, to)}});
}

// ---- the kernel

class OnednnRnnKernel final : public RnnKernel {
public:
  OnednnRnnKernel(std::shared_ptr<const Design> design, std::string description)
      : RnnKernel(Engine::Onednn, design->workspace_bytes, std::move(description)),
        d_(std::move(design)) {}

  void forward(Context&, const RnnInputs& in, const RnnOutputs& out, void* workspace,
               std::shared_ptr<RnnSavedData>* saved) const override {
    onednn::use_one_openmp_thread();
    std::byte* act = static_cast<std::byte*>(workspace) + d_->act_at;
    std::byte* saved_base = nullptr;
    if (saved != nullptr) {
      // An earlier forward's state of this plan is reused: same sizes, no allocation.
      auto* mine = dynamic_cast<OnednnRnnSaved*>(saved->get());
      if (mine == nullptr || mine->owner() != this) {
        auto fresh = std::make_shared<OnednnRnnSaved>(this, d_->saved_bytes);
        mine = fresh.get();
        *saved = std::move(fresh);
      }
      act = saved_base = mine->base();
    }
    const bool training = saved != nullptr;
    stage_weights(in.w, workspace, training ? Mode::Training : Mode::Inference);
    parallel_tasks(static_cast<i64>(d_->groups.size()), [&](i64 i) {
      forward_group(static_cast<std::size_t>(i), in, out, workspace, act, saved_base);
    });
  }

  void backward_data(Context&, const RnnInputs& in, RnnSavedData& saved, const RnnGradients& grad,
                     void* workspace) const override {
    onednn::use_one_openmp_thread();
    std::byte* base = own(saved).base();
    stage_weights(in.w, workspace, Mode::Backward);
    parallel_tasks(static_cast<i64>(d_->groups.size()), [&](i64 i) {
      backward_group(static_cast<std::size_t>(i), in, grad, workspace, base);
    });
    // dW of every group, summed in group order.
    float* dw = reinterpret_cast<float*>(base + d_->dw_at);
    dnnl::stream stream(onednn::cpu_engine());
    for (std::size_t gi = 0; gi < d_->groups.size(); ++gi) {
      const GroupSlices& s = d_->slices[gi];
      const bool add = gi != 0;
      for (std::size_t si = 0; si < d_->stages.size(); ++si) {
        const StageKernel& k = d_->kernel(static_cast<int>(si), d_->groups[gi]);
        bias_from_plain(*d_, d_->stages[si], ws_f(workspace, s.db[si]), dw, add);
        if (d_->direct()) {
          run_diff(stream, add ? k.dwl_add : k.dwl.primitive, k.dwl, ws_f(workspace, s.dwl[si]),
                   dw + d_->wl_moves[si].front().user_at);
          run_diff(stream, add ? k.dwi_add : k.dwi.primitive, k.dwi, ws_f(workspace, s.dwi[si]),
                   dw + d_->wi_moves[si].front().user_at);
          continue;
        }
        const float* wl = ws_f(workspace, k.dwl.needed ? s.dwl_plain[si] : s.dwl[si]);
        const float* wi = ws_f(workspace, k.dwi.needed ? s.dwi_plain[si] : s.dwi[si]);
        for (const GateMove& m : d_->wl_moves[si])
          run_move(stream, add ? m.out_add : m.out_set, m.plain_md, wl + m.plain_at, m.user_md,
                   dw + m.user_at);
        for (const GateMove& m : d_->wi_moves[si])
          run_move(stream, add ? m.out_add : m.out_set, m.plain_md, wi + m.plain_at, m.user_md,
                   dw + m.user_at);
      }
    }
    stream.wait();
  }

  void backward_weights(Context&, const RnnInputs&, const RnnSavedData& saved, float* dw,
                        bool accumulate, void*) const override {
    const float* from = reinterpret_cast<const float*>(own(saved).base() + d_->dw_at);
    const i64 count = d_->weight_count;
    parallel_for(0, count, grain_for(0.3), [&](i64 b, i64 e) {
      for (i64 i = b; i < e; ++i) dw[i] = accumulate ? dw[i] + from[i] : from[i];
    });
  }

  Executor executor() const override { return Executor::Default; }

private:
  enum class Mode { Inference, Training, Backward };

  static void run_diff(dnnl::stream& stream, const dnnl::reorder& r, const Reorder& descs,
                       float* from, float* to) {
    const dnnl::engine& engine = onednn::cpu_engine();
    r.execute(stream, {{DNNL_ARG_FROM, memory(descs.from, engine, from)},
                       {DNNL_ARG_TO, memory(descs.to, engine, to)}});
  }

  static float* ws_f(void* base, std::size_t offset) {
    return static_cast<float*>(onednn::at(base, offset));
  }
  static float* at_f(std::byte* base, std::size_t offset) {
    return reinterpret_cast<float*>(base + offset);
  }

  // The weights in plain ldigo per stage, then in each primitive's layout.
  void stage_weights(const float* w, void* workspace, Mode mode) const {
    const Design& d = *d_;
    dnnl::stream stream(onednn::cpu_engine());
    for (std::size_t si = 0; si < d.stages.size(); ++si) {
      const StageWeights& sw = d.stage_weights[si];
      bias_to_plain(d, d.stages[si], w, ws_f(workspace, sw.b));
      if (d.direct()) continue;
      for (const GateMove& m : d.wl_moves[si])
        run_move(stream, m.in, m.user_md, w + m.user_at, m.plain_md,
                 ws_f(workspace, sw.wl) + m.plain_at);
      for (const GateMove& m : d.wi_moves[si])
        run_move(stream, m.in, m.user_md, w + m.user_at, m.plain_md,
                 ws_f(workspace, sw.wi) + m.plain_at);
    }
    for (const auto& [key, k] : d.kernels) {
      const KernelWeights& kw = d.kernel_weights.at(key);
      const Reorder& wl = mode == Mode::Inference  ? k.wl_inference
                          : mode == Mode::Training ? k.wl_training
                                                   : k.wl_backward;
      const Reorder& wi = mode == Mode::Inference  ? k.wi_inference
                          : mode == Mode::Training ? k.wi_training
                                                   : k.wi_backward;
      const std::size_t wl_at = mode == Mode::Inference  ? kw.wl_inference
                                : mode == Mode::Training ? kw.wl_training
                                                         : kw.wl_backward;
      const std::size_t wi_at = mode == Mode::Inference  ? kw.wi_inference
                                : mode == Mode::Training ? kw.wi_training
                                                         : kw.wi_backward;
      const auto si = static_cast<std::size_t>(std::get<0>(key));
      wl.run(stream, unreordered(w, workspace, si, false), ws_f(workspace, wl_at));
      wi.run(stream, unreordered(w, workspace, si, true), ws_f(workspace, wi_at));
    }
    stream.wait();
  }

  // A stage's weights_layer (or weights_iter) before the reorder into a
  // primitive's layout: dlrt's own (direct), or the plain ldigo copy.
  void* unreordered(const float* w, void* workspace, std::size_t si, bool iter) const {
    const Design& d = *d_;
    if (d.direct())
      return const_cast<float*>(w) + (iter ? d.wi_moves : d.wl_moves)[si].front().user_at;
    return ws_f(workspace, iter ? d.stage_weights[si].wi : d.stage_weights[si].wl);
  }
  // ... and in the primitive's layout: the reordered copy, or that one.
  void* weights(const float* w, void* workspace, const Reorder& r, std::size_t reordered,
                std::size_t si, bool iter) const {
    return r.needed ? ws_f(workspace, reordered) : unreordered(w, workspace, si, iter);
  }

  void forward_group(std::size_t gi, const RnnInputs& in, const RnnOutputs& out, void* workspace,
                     std::byte* act, std::byte* saved) const {
    onednn::use_one_openmp_thread();
    const Design& d = *d_;
    const Group& g = d.groups[gi];
    const GroupSlices& s = d.slices[gi];
    const bool training = saved != nullptr;
    const dnnl::engine& engine = onednn::cpu_engine();
    dnnl::stream stream(engine);
    const i64 I = d.params.input_size;
    void* x = const_cast<float*>(in.x);
    if (!g.whole) {
      gather_sequence(g, d.N, I, in.x, ws_f(workspace, s.x));
      x = ws_f(workspace, s.x);
    }
    const int last = static_cast<int>(d.stages.size()) - 1;
    void* src = x;
    for (int si = 0; si <= last; ++si) {
      const Stage& st = d.stages[static_cast<std::size_t>(si)];
      const auto u = static_cast<std::size_t>(si);
      const StageKernel& k = d.kernel(si, g);
      const KernelWeights& kw = d.weights_of(si, g);
      const StageWeights& sw = d.stage_weights[u];
      float* src_iter = ws_f(workspace, s.src_iter[u]);
      float* src_iter_c = ws_f(workspace, s.src_iter_c[u]);
      gather_state(d, st, g, in.h0, src_iter);
      if (d.lstm()) gather_state(d, st, g, in.c0, src_iter_c);
      // The last stage writes y itself in inference on the whole batch.
      float* dst = si == last && g.whole && !training ? out.y : at_f(act, s.dst_layer[u]);
      float* dst_iter = at_f(act, s.dst_iter[u]);
      float* dst_iter_c = at_f(act, s.dst_iter_c[u]);
      const memory::desc iter_md = plain(d.iter_dims(st, g), Tag::ldnc);
      std::unordered_map<int, memory> args = {
          {DNNL_ARG_SRC_LAYER, memory(plain(d.layer_dims(g, st.slc), Tag::tnc), engine, src)},
          {DNNL_ARG_SRC_ITER, memory(iter_md, engine, src_iter)},
          {DNNL_ARG_WEIGHTS_LAYER,
           memory(training ? k.wl_training.to : k.wl_inference.to, engine,
                  weights(in.w, workspace, training ? k.wl_training : k.wl_inference,
                          training ? kw.wl_training : kw.wl_inference, u, false))},
          {DNNL_ARG_WEIGHTS_ITER,
           memory(training ? k.wi_training.to : k.wi_inference.to, engine,
                  weights(in.w, workspace, training ? k.wi_training : k.wi_inference,
                          training ? kw.wi_training : kw.wi_inference, u, true))},
          {DNNL_ARG_BIAS, memory(plain(onednn::dims({st.layers, d.D, d.Gb, d.H}), Tag::ldgo),
                                 engine, ws_f(workspace, sw.b))},
          {DNNL_ARG_DST_LAYER, memory(plain(d.layer_dims(g, d.y_width()), Tag::tnc), engine, dst)},
          {DNNL_ARG_DST_ITER, memory(iter_md, engine, dst_iter)},
          {DNNL_ARG_SCRATCHPAD, memory(scratch_md(k), engine, onednn::at(workspace, s.scratch))}};
      if (d.lstm()) {
        args.emplace(DNNL_ARG_SRC_ITER_C, memory(iter_md, engine, src_iter_c));
        args.emplace(DNNL_ARG_DST_ITER_C, memory(iter_md, engine, dst_iter_c));
      }
      if (training) args.emplace(DNNL_ARG_WORKSPACE, memory(k.ws, engine, at_f(saved, s.ws[u])));
      (training ? k.training : k.inference).execute(stream, args);
      stream.wait();
      scatter_state(d, st, g, dst_iter, out.hy);
      if (d.lstm()) scatter_state(d, st, g, dst_iter_c, out.cy);
      src = dst;
    }
    float* y = static_cast<float*>(src);
    if (y == out.y) return;
    if (g.whole)
      std::memcpy(out.y, y, static_cast<std::size_t>(d.T * d.N * d.y_width()) * sizeof(float));
    else
      scatter_sequence(g, d.T, d.N, d.y_width(), y, out.y);
  }

  static memory::desc scratch_md(const StageKernel& k) {
    return memory::desc(onednn::dims({static_cast<i64>(std::max<std::size_t>(k.scratch_bytes, 1))}),
                        memory::data_type::u8, Tag::x);
  }

  void backward_group(std::size_t gi, const RnnInputs& in, const RnnGradients& grad,
                      void* workspace, std::byte* saved) const {
    onednn::use_one_openmp_thread();
    const Design& d = *d_;
    const Group& g = d.groups[gi];
    const GroupSlices& s = d.slices[gi];
    const dnnl::engine& engine = onednn::cpu_engine();
    dnnl::stream stream(engine);
    const i64 I = d.params.input_size;
    void* x = const_cast<float*>(in.x);
    void* dy = const_cast<float*>(grad.dy);
    void* dx = grad.dx;
    if (!g.whole) {
      gather_sequence(g, d.N, I, in.x, ws_f(workspace, s.x));
      x = ws_f(workspace, s.x);
      gather_sequence(g, d.N, d.y_width(), grad.dy, ws_f(workspace, s.dy));
      dy = ws_f(workspace, s.dy);
      dx = ws_f(workspace, s.dx);
    }
    const int last = static_cast<int>(d.stages.size()) - 1;
    void* diff_dst = dy;
    for (int si = last; si >= 0; --si) {
      const Stage& st = d.stages[static_cast<std::size_t>(si)];
      const auto u = static_cast<std::size_t>(si);
      const StageKernel& k = d.kernel(si, g);
      const KernelWeights& kw = d.weights_of(si, g);
      const StageWeights& sw = d.stage_weights[u];
      float* src_iter = ws_f(workspace, s.src_iter[u]);
      float* src_iter_c = ws_f(workspace, s.src_iter_c[u]);
      gather_state(d, st, g, in.h0, src_iter);
      if (d.lstm()) gather_state(d, st, g, in.c0, src_iter_c);
      float* diff_dst_iter = ws_f(workspace, s.diff_dst_iter[u]);
      float* diff_dst_iter_c = ws_f(workspace, s.diff_dst_iter_c[u]);
      gather_state(d, st, g, grad.dhy, diff_dst_iter);
      if (d.lstm()) gather_state(d, st, g, grad.dcy, diff_dst_iter_c);
      void* src = si == 0 ? x : at_f(saved, s.dst_layer[u - 1]);
      void* diff_src = si == 0 ? dx : ws_f(workspace, s.diff_src_layer[u]);
      float* diff_src_iter = ws_f(workspace, s.diff_src_iter[u]);
      float* diff_src_iter_c = ws_f(workspace, s.diff_src_iter_c[u]);
      // oneDNN adds into the weight gradients: each run starts them at zero.
      float* dwl = ws_f(workspace, s.dwl[u]);
      float* dwi = ws_f(workspace, s.dwi[u]);
      float* db = ws_f(workspace, s.db[u]);
      std::memset(dwl, 0, k.dwl.from.get_size());
      std::memset(dwi, 0, k.dwi.from.get_size());
      const memory::desc bias_md = plain(onednn::dims({st.layers, d.D, d.Gb, d.H}), Tag::ldgo);
      std::memset(db, 0, bias_md.get_size());
      const memory::desc iter_md = plain(d.iter_dims(st, g), Tag::ldnc);
      const memory::desc src_md = plain(d.layer_dims(g, st.slc), Tag::tnc);
      const memory::desc dst_md = plain(d.layer_dims(g, d.y_width()), Tag::tnc);
      std::unordered_map<int, memory> args = {
          {DNNL_ARG_SRC_LAYER, memory(src_md, engine, src)},
          {DNNL_ARG_SRC_ITER, memory(iter_md, engine, src_iter)},
          {DNNL_ARG_WEIGHTS_LAYER,
           memory(k.wl_backward.to, engine,
                  weights(in.w, workspace, k.wl_backward, kw.wl_backward, u, false))},
          {DNNL_ARG_WEIGHTS_ITER,
           memory(k.wi_backward.to, engine,
                  weights(in.w, workspace, k.wi_backward, kw.wi_backward, u, true))},
          {DNNL_ARG_BIAS, memory(bias_md, engine, ws_f(workspace, sw.b))},
          {DNNL_ARG_DST_LAYER, memory(dst_md, engine, at_f(saved, s.dst_layer[u]))},
          {DNNL_ARG_DST_ITER, memory(iter_md, engine, at_f(saved, s.dst_iter[u]))},
          {DNNL_ARG_WORKSPACE, memory(k.ws, engine, at_f(saved, s.ws[u]))},
          {DNNL_ARG_DIFF_SRC_LAYER, memory(src_md, engine, diff_src)},
          {DNNL_ARG_DIFF_SRC_ITER, memory(iter_md, engine, diff_src_iter)},
          {DNNL_ARG_DIFF_WEIGHTS_LAYER, memory(k.dwl.from, engine, dwl)},
          {DNNL_ARG_DIFF_WEIGHTS_ITER, memory(k.dwi.from, engine, dwi)},
          {DNNL_ARG_DIFF_BIAS, memory(bias_md, engine, db)},
          {DNNL_ARG_DIFF_DST_LAYER, memory(dst_md, engine, diff_dst)},
          {DNNL_ARG_DIFF_DST_ITER, memory(iter_md, engine, diff_dst_iter)},
          {DNNL_ARG_SCRATCHPAD, memory(scratch_md(k), engine, onednn::at(workspace, s.scratch))}};
      if (d.lstm()) {
        args.emplace(DNNL_ARG_SRC_ITER_C, memory(iter_md, engine, src_iter_c));
        args.emplace(DNNL_ARG_DST_ITER_C, memory(iter_md, engine, at_f(saved, s.dst_iter_c[u])));
        args.emplace(DNNL_ARG_DIFF_SRC_ITER_C, memory(iter_md, engine, diff_src_iter_c));
        args.emplace(DNNL_ARG_DIFF_DST_ITER_C, memory(iter_md, engine, diff_dst_iter_c));
      }
      k.backward.execute(stream, args);
      if (!d.direct()) {
        k.dwl.run(stream, dwl, ws_f(workspace, s.dwl_plain[u]));
        k.dwi.run(stream, dwi, ws_f(workspace, s.dwi_plain[u]));
      }
      stream.wait();
      scatter_state(d, st, g, diff_src_iter, grad.dh0);
      if (d.lstm()) scatter_state(d, st, g, diff_src_iter_c, grad.dc0);
      diff_dst = diff_src;
    }
    if (!g.whole) scatter_sequence(g, d.T, d.N, I, static_cast<float*>(dx), grad.dx);
  }

  const OnednnRnnSaved& own(const RnnSavedData& saved) const {
    const auto* mine = dynamic_cast<const OnednnRnnSaved*>(&saved);
    if (mine == nullptr || mine->owner() != this)
      throw Error(Error::Kind::Internal,
                  "onednn rnn: the training state was not filled by this plan's forward");
    return *mine;
  }

  std::shared_ptr<const Design> d_;
};

// ---- planning

dnnl::rnn_direction direction_of(const RnnParams& p) {
  return p.bidirectional ? dnnl::rnn_direction::bidirectional_concat
                         : dnnl::rnn_direction::unidirectional_left2right;
}

// The three primitives of one stage for groups of T steps and n sequences.
StageKernel make_stage_kernel(const Design& d, std::size_t si, i64 T, i64 n) {
  const Stage& st = d.stages[si];
  const dnnl::engine& engine = onednn::cpu_engine();
  const RnnCell cell = d.params.cell;
  const dnnl::rnn_direction dir = direction_of(d.params);
  const memory::desc src = plain(onednn::dims({T, n, st.slc}), Tag::tnc);
  const memory::desc dst = plain(onednn::dims({T, n, d.y_width()}), Tag::tnc);
  const memory::desc iter = plain(onednn::dims({st.layers, d.D, n, d.H}), Tag::ldnc);
  const memory::dims wl_dims = onednn::dims({st.layers, d.D, st.slc, d.G, d.H});
  const memory::dims wi_dims = onednn::dims({st.layers, d.D, d.H, d.G, d.H});
  const memory::desc bias = plain(onednn::dims({st.layers, d.D, d.Gb, d.H}), Tag::ldgo);
  const memory::desc wl_plain =
      d.direct() ? d.wl_moves[si].front().user_md : plain(wl_dims, Tag::ldigo);
  const memory::desc wi_plain =
      d.direct() ? d.wi_moves[si].front().user_md : plain(wi_dims, Tag::ldigo);
  const dnnl::primitive_attr attr = user_scratchpad();
  StageKernel k;
  auto finish = [&](const auto& inf, const auto& train, const auto& bwd) {
    k.wl_inference = Reorder(wl_plain, inf.weights_layer_desc());
    k.wi_inference = Reorder(wi_plain, inf.weights_iter_desc());
    k.wl_training = Reorder(wl_plain, train.weights_layer_desc());
    k.wi_training = Reorder(wi_plain, train.weights_iter_desc());
    k.wl_backward = Reorder(wl_plain, bwd.weights_layer_desc());
    k.wi_backward = Reorder(wi_plain, bwd.weights_iter_desc());
    k.dwl = Reorder(bwd.diff_weights_layer_desc(), wl_plain);
    k.dwi = Reorder(bwd.diff_weights_iter_desc(), wi_plain);
    if (d.direct()) {
      // dW is written through these even when the layouts agree.
      for (Reorder* r : {&k.dwl, &k.dwi})
        if (!r->needed)
          r->primitive =
              dnnl::reorder(dnnl::reorder::primitive_desc(engine, r->from, engine, r->to));
      dnnl::primitive_attr add;
      dnnl::post_ops sum;
      sum.append_sum(1.0f);
      add.set_post_ops(sum);
      k.dwl_add =
          dnnl::reorder(dnnl::reorder::primitive_desc(engine, k.dwl.from, engine, k.dwl.to, add));
      k.dwi_add =
          dnnl::reorder(dnnl::reorder::primitive_desc(engine, k.dwi.from, engine, k.dwi.to, add));
    }
    k.ws = train.workspace_desc();
    k.scratch_bytes =
        std::max({inf.scratchpad_desc().get_size(), train.scratchpad_desc().get_size(),
                  bwd.scratchpad_desc().get_size()});
    k.implementation = onednn::implementation(train) + " (inference " + inf.impl_info_str() + ")";
  };
  using dnnl::prop_kind;
  switch (cell) {
    case RnnCell::Tanh:
    case RnnCell::Relu: {
      const dnnl::algorithm act =
          cell == RnnCell::Tanh ? dnnl::algorithm::eltwise_tanh : dnnl::algorithm::eltwise_relu;
      using F = dnnl::vanilla_rnn_forward;
      using B = dnnl::vanilla_rnn_backward;
      auto fwd = [&](prop_kind kind) {
        return F::primitive_desc(
            F::desc(kind, act, dir, src, iter, any(wl_dims), any(wi_dims), bias, dst, iter), attr,
            engine);
      };
      const F::primitive_desc inf = fwd(prop_kind::forward_inference);
      const F::primitive_desc train = fwd(prop_kind::forward_training);
      const B::primitive_desc bwd(
          B::desc(prop_kind::backward, act, dir, src, iter, any(wl_dims), any(wi_dims), bias, dst,
                  iter, src, iter, any(wl_dims), any(wi_dims), bias, dst, iter),
          attr, engine, train);
      k.inference = F(inf);
      k.training = F(train);
      k.backward = B(bwd);
      finish(inf, train, bwd);
      break;
    }
    case RnnCell::Lstm: {
      using F = dnnl::lstm_forward;
      using B = dnnl::lstm_backward;
      auto fwd = [&](prop_kind kind) {
        return F::primitive_desc(
            F::desc(kind, dir, src, iter, iter, any(wl_dims), any(wi_dims), bias, dst, iter, iter),
            attr, engine);
      };
      const F::primitive_desc inf = fwd(prop_kind::forward_inference);
      const F::primitive_desc train = fwd(prop_kind::forward_training);
      const B::primitive_desc bwd(
          B::desc(prop_kind::backward, dir, src, iter, iter, any(wl_dims), any(wi_dims), bias, dst,
                  iter, iter, src, iter, iter, any(wl_dims), any(wi_dims), bias, dst, iter, iter),
          attr, engine, train);
      k.inference = F(inf);
      k.training = F(train);
      k.backward = B(bwd);
      finish(inf, train, bwd);
      break;
    }
    case RnnCell::Gru: {
      using F = dnnl::lbr_gru_forward;
      using B = dnnl::lbr_gru_backward;
      auto fwd = [&](prop_kind kind) {
        return F::primitive_desc(
            F::desc(kind, dir, src, iter, any(wl_dims), any(wi_dims), bias, dst, iter), attr,
            engine);
      };
      const F::primitive_desc inf = fwd(prop_kind::forward_inference);
      const F::primitive_desc train = fwd(prop_kind::forward_training);
      const B::primitive_desc bwd(
          B::desc(prop_kind::backward, dir, src, iter, any(wl_dims), any(wi_dims), bias, dst, iter,
                  src, iter, any(wl_dims), any(wi_dims), bias, dst, iter),
          attr, engine, train);
      k.inference = F(inf);
      k.training = F(train);
      k.backward = B(bwd);
      finish(inf, train, bwd);
      break;
    }
  }
  return k;
}

// Stages: every layer in one primitive when all inputs are as wide, else
// layer 0 alone and the rest together; `per_layer`, or a bidirectional
// stack, gives each layer its own.
std::vector<Stage> make_stages(const RnnProblem& p, bool per_layer) {
  const int L = p.params.num_layers;
  const i64 I = p.params.input_size, DH = p.directions() * p.hidden();
  std::vector<Stage> stages;
  if (per_layer || p.params.bidirectional) {
    for (int l = 0; l < L; ++l) stages.push_back({l, 1, l == 0 ? I : DH});
  } else if (L == 1 || I == DH) {
    stages.push_back({0, L, I});
  } else {
    stages.push_back({0, 1, I});
    stages.push_back({1, L - 1, DH});
  }
  return stages;
}

// Groups: one per distinct length, longest first (rows in batch order);
// a batch of one length is cut into one piece per thread.
std::vector<Group> make_groups(const RnnProblem& p) {
  std::map<int, std::vector<int>, std::greater<>> by_length;
  for (std::size_t n = 0; n < p.lengths.size(); ++n)
    by_length[p.lengths[n]].push_back(static_cast<int>(n));
  std::vector<Group> groups;
  if (by_length.size() == 1) {
    const std::vector<int>& rows = by_length.begin()->second;
    const i64 T = by_length.begin()->first;
    for (const onednn::Piece& piece :
         onednn::cut(static_cast<i64>(rows.size()), std::max(1, p.threads))) {
      Group g;
      g.T = T;
      g.rows.assign(rows.begin() + piece.begin, rows.begin() + piece.end);
      groups.push_back(std::move(g));
    }
  } else {
    for (auto& [length, rows] : by_length) groups.push_back({length, std::move(rows), false});
  }
  for (Group& g : groups) g.whole = g.T == p.T && g.n() == p.N;
  return groups;
}

std::string plan_design(const RnnProblem& p, bool per_layer, bool direct, Design& d) {
  d.allow_direct = direct;
  d.params = p.params;
  d.T = p.T;
  d.N = p.N;
  d.D = p.directions();
  d.H = p.hidden();
  d.G = p.gates();
  d.Gb = bias_gates(p.params.cell);
  d.stages = make_stages(p, per_layer);
  d.groups = make_groups(p);
  // The flat weights' pieces per layer and direction.
  d.flat.assign(static_cast<std::size_t>(d.params.num_layers * d.D), FlatPieces{});
  for (const RnnWeight& w : rnn_weight_layout(d.params)) {
    FlatPieces& f = d.flat[static_cast<std::size_t>(w.layer * d.D + w.direction)];
    const std::string stem = w.name.substr(0, w.name.find("_l"));
    if (stem == "weight_ih") f.w_ih = w.offset;
    if (stem == "weight_hh") f.w_hh = w.offset;
    if (stem == "bias_ih") f.b_ih = w.offset;
    if (stem == "bias_hh") f.b_hh = w.offset;
    d.weight_count = std::max(d.weight_count, w.offset + w.shape.numel());
  }
  // Each stage's layers and directions lie evenly spaced in the flat tensor.
  const i64 bias = d.params.bias ? 2 * d.G * d.H : 0;
  for (const Stage& st : d.stages) {
    const i64 block = d.G * d.H * (st.slc + d.H) + bias;
    const i64 first = d.flat[static_cast<std::size_t>(st.first * d.D)].w_ih;
    for (i64 l = 0; l < st.layers; ++l)
      for (i64 dir = 0; dir < d.D; ++dir) {
        const FlatPieces& fp = d.flat[static_cast<std::size_t>((st.first + l) * d.D + dir)];
        if (fp.w_ih != first + (l * d.D + dir) * block || fp.w_hh != fp.w_ih + d.G * d.H * st.slc)
          throw Error(Error::Kind::Internal,
                      "onednn rnn: the flat weights of layer " + std::to_string(st.first + l) +
                          " are not where rnn_weight_layout's order puts them");
      }
  }
  try {
    for (const Stage& st : d.stages) {
      const i64 block = d.G * d.H * (st.slc + d.H) + bias;
      const i64 first = d.flat[static_cast<std::size_t>(st.first * d.D)].w_ih;
      d.wl_moves.push_back(gate_moves(d, st, st.slc, first, block));
      d.wi_moves.push_back(gate_moves(d, st, d.H, first + d.G * d.H * st.slc, block));
    }
    for (std::size_t si = 0; si < d.stages.size(); ++si)
      for (const Group& g : d.groups) {
        const KernelKey key{static_cast<int>(si), g.T, g.n()};
        if (!d.kernels.contains(key)) d.kernels.emplace(key, make_stage_kernel(d, si, g.T, g.n()));
      }
  } catch (const dnnl::error& e) {
    d.kernels.clear();
    return std::string("oneDNN has no primitive for this problem: ") + e.what();
  }
  return {};
}

void lay_out(Design& d) {
  // The workspace: what every op uses (the bias and GRU's plain weights,
  // each group's gathered x, initial states and scratchpad), then the
  // largest of what inference, training forward and backward use alone.
  const std::size_t f = sizeof(float);
  Carver ws, act, saved;
  for (const Stage& st : d.stages) {
    StageWeights sw;
    const std::size_t plain = d.direct() ? 0 : 1;
    sw.wl = ws.take(plain * static_cast<std::size_t>(st.layers * d.D * st.slc * d.G * d.H) * f);
    sw.wi = ws.take(plain * static_cast<std::size_t>(st.layers * d.D * d.H * d.G * d.H) * f);
    sw.b = ws.take(static_cast<std::size_t>(st.layers * d.D * d.Gb * d.H) * f);
    d.stage_weights.push_back(sw);
  }
  const i64 I = d.params.input_size;
  auto state_bytes = [&](const Stage& st, const Group& g) {
    return static_cast<std::size_t>(st.layers * d.D * g.n() * d.H) * f;
  };
  for (const Group& g : d.groups) {
    GroupSlices s;
    if (!g.whole) s.x = ws.take(static_cast<std::size_t>(g.T * g.n() * I) * f);
    std::size_t scratch = 1;
    for (std::size_t si = 0; si < d.stages.size(); ++si) {
      const std::size_t state = state_bytes(d.stages[si], g);
      s.src_iter.push_back(ws.take(state));
      s.src_iter_c.push_back(ws.take(d.lstm() ? state : 0));
      scratch = std::max(scratch, d.kernel(static_cast<int>(si), g).scratch_bytes);
    }
    s.scratch = ws.take(scratch);
    d.slices.push_back(std::move(s));
  }
  const std::size_t common = ws.used();
  Carver inference, training, backward;
  auto take = [common](Carver& c, std::size_t bytes) { return common + c.take(bytes); };
  auto size_if = [](const Reorder& r) { return r.needed ? r.to.get_size() : 0; };
  for (const auto& [key, k] : d.kernels) {
    KernelWeights kw;
    kw.wl_inference = take(inference, size_if(k.wl_inference));
    kw.wi_inference = take(inference, size_if(k.wi_inference));
    kw.wl_training = take(training, size_if(k.wl_training));
    kw.wi_training = take(training, size_if(k.wi_training));
    kw.wl_backward = take(backward, size_if(k.wl_backward));
    kw.wi_backward = take(backward, size_if(k.wi_backward));
    d.kernel_weights.emplace(key, kw);
  }
  for (std::size_t gi = 0; gi < d.groups.size(); ++gi) {
    const Group& g = d.groups[gi];
    GroupSlices& s = d.slices[gi];
    const std::size_t n = static_cast<std::size_t>(g.n()), T = static_cast<std::size_t>(g.T);
    const std::size_t y_bytes = T * n * static_cast<std::size_t>(d.y_width()) * f;
    if (!g.whole) {
      s.dx = take(backward, T * n * static_cast<std::size_t>(I) * f);
      s.dy = take(backward, y_bytes);
    }
    for (std::size_t si = 0; si < d.stages.size(); ++si) {
      const Stage& st = d.stages[si];
      const StageKernel& k = d.kernel(static_cast<int>(si), g);
      const std::size_t state = state_bytes(st, g);
      const std::size_t cell_state = d.lstm() ? state : 0;
      s.dst_layer.push_back(act.take(y_bytes));
      s.dst_iter.push_back(act.take(state));
      s.dst_iter_c.push_back(act.take(cell_state));
      s.diff_dst_iter.push_back(take(backward, state));
      s.diff_dst_iter_c.push_back(take(backward, cell_state));
      s.diff_src_iter.push_back(take(backward, state));
      s.diff_src_iter_c.push_back(take(backward, cell_state));
      s.diff_src_layer.push_back(
          take(backward, si == 0 ? 0 : T * n * static_cast<std::size_t>(st.slc) * f));
      s.dwl.push_back(take(backward, k.dwl.from.get_size()));
      s.dwi.push_back(take(backward, k.dwi.from.get_size()));
      s.db.push_back(take(backward, static_cast<std::size_t>(st.layers * d.D * d.Gb * d.H) * f));
      s.dwl_plain.push_back(take(backward, !d.direct() && k.dwl.needed ? k.dwl.to.get_size() : 0));
      s.dwi_plain.push_back(take(backward, !d.direct() && k.dwi.needed ? k.dwi.to.get_size() : 0));
    }
  }
  // The training state: the activations, then oneDNN's workspaces, then dW.
  saved.take(act.used());
  for (std::size_t gi = 0; gi < d.groups.size(); ++gi)
    for (std::size_t si = 0; si < d.stages.size(); ++si)
      d.slices[gi].ws.push_back(
          saved.take(d.kernel(static_cast<int>(si), d.groups[gi]).ws.get_size()));
  d.dw_at = saved.take(static_cast<std::size_t>(d.weight_count) * f);
  d.act_bytes = act.used();
  d.saved_bytes = saved.used();
  // Inference keeps its activations in the workspace, after its weights.
  d.act_at = take(inference, d.act_bytes);
  d.workspace_bytes = common + std::max({inference.used(), training.used(), backward.used()});
}

// Auto's rule between this engine and Cpu, from dlrt_bench_rnn on a grid
// of LSTM, GRU and tanh problems (hidden 128-1024, batch 1-64, 25 steps) on
// a 2-core AVX-512 machine (docs/results/2026-12-03-onednn-rnn.md): oneDNN
// wins training by 1.1-2.4x and inference by 1.6-2.8x from 4 sequences up,
// except where the rules below pass the problem to Cpu. A plan does not know
// whether it will train, so the rules follow the training (fwd_bwd) times.
std::string prefer_cpu(const RnnProblem& p, const Design& d) {
  const i64 groups = static_cast<i64>(d.groups.size());
  if (p.N < p.threads)
    return std::to_string(p.N) + " sequence(s) for " + std::to_string(p.threads) +
           " threads leave threads idle (each oneDNN primitive runs on one): the Cpu engine is "
           "faster";
  const bool unequal = d.groups.front().T != d.groups.back().T;  // groups of one length each
  if (unequal && p.N < 4 * groups)
    return "the lengths cut the batch into " + std::to_string(groups) + " groups of one length, " +
           "under 4 sequences each on average: the Cpu engine, which packs unequal lengths, is "
           "faster";
  if (p.params.cell == RnnCell::Gru && p.hidden() >= 512 && p.N < 16 * groups)
    return "oneDNN's GRU backward adds to the 3H x H recurrent weight gradient at every step, "
           "which from hidden 512 overflows the L2 cache: with under 16 sequences per piece the "
           "Cpu engine trains faster";
  return {};
}

class OnednnRnn final : public RnnEngine {
public:
  Engine engine() const override { return Engine::Onednn; }

  Planned<RnnKernel> plan(Context&, const RnnProblem& p) const override {
    using Result = Planned<RnnKernel>;
    if (p.variant != 0) return Result::no(no_kernel_variants(engine(), p.variant));
    if (p.executor != Executor::Default)
      return Result::no(std::string("the Onednn engine plays no graph (executor ") +
                        to_string(p.executor) +
                        " asked for): oneDNN runs the sequence itself; it takes Executor::Default");
    if (p.params.proj_size > 0)
      return Result::no("proj_size is " + std::to_string(p.params.proj_size) +
                        ": the Onednn engine runs no LSTM projection (oneDNN 2.6's is not "
                        "checked against dlrt's)");
    onednn::use_one_openmp_thread();
    // The fastest form oneDNN accepts: the stacked layers, then a primitive
    // per layer; weights reordered straight from dlrt's layout, then through
    // plain ldigo.
    std::string why;
    std::shared_ptr<Design> design;
    for (const bool per_layer : {false, true}) {
      // (make_stages already gives a single layer or a bidirectional stack one per layer.)
      if (per_layer && (p.params.num_layers == 1 || p.params.bidirectional)) break;
      for (const bool direct : {true, false}) {
        design = std::make_shared<Design>();
        why = plan_design(p, per_layer, direct, *design);
        if (why.empty()) break;
      }
      if (why.empty()) break;
    }
    if (!why.empty()) return Result::no(why);
    try {
      lay_out(*design);
    } catch (const dnnl::error& e) {
      return Result::no(std::string("oneDNN could not size this problem: ") + e.what());
    }
    if (design->workspace_bytes > p.options.workspace_limit_bytes)
      return Result::no("needs " + std::to_string(design->workspace_bytes) +
                        " bytes of workspace (weights in oneDNN's layouts, gathered groups, "
                        "activations and scratchpad), over the context's limit of " +
                        std::to_string(p.options.workspace_limit_bytes));
    std::string text = design->kernels.begin()->second.implementation + ", " +
                       std::to_string(design->stages.size()) + " stage" +
                       (design->stages.size() == 1 ? "" : "s") + ", " +
                       std::to_string(design->groups.size()) + " group" +
                       (design->groups.size() == 1 ? "" : "s");
    Result result;
    result.defer = prefer_cpu(p, *design);
    result.kernel = std::make_shared<OnednnRnnKernel>(std::move(design), std::move(text));
    return result;
  }

  Planned<RnnCellKernel> plan_cell(Context&, const RnnCellProblem&) const override {
    return Planned<RnnCellKernel>::no(
        "the Onednn engine runs whole sequences; cell steps are the Cpu engine's");
  }
};

const Registrar<RnnEngine> registrar{std::make_unique<OnednnRnn>()};

}  // namespace
}  // namespace dlrt::detail
