// Recurrent networks: vanilla (tanh, ReLU), LSTM and GRU cells, stacked,
// bidirectional, over variable-length sequences, forward and
// backpropagation through time. Semantics and weight layout are PyTorch's
// (torch.nn.RNN/LSTM/GRU) and cuDNN's, so weights move between them without
// reshuffling.
//
// The lecture writes a recurrent layer as h_t = θ(W x_t + W_h h_{t-1}); with
// biases, per layer and direction (σ the logistic function, * elementwise):
//
//   Tanh, Relu   h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
//   Lstm         [i, f, g, o] = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh   (4 gates of H rows)
//                i, f, o = σ(.)   g = tanh(.)
//                c_t = f * c_{t-1} + i * g       h_t = o * tanh(c_t)
//                with proj_size P > 0: h_t = W_hr (o * tanh(c_t)), of P values
//   Gru          [r, z, n]: r = σ(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
//                           z = σ(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
//                           n = tanh(W_in x_t + b_in + r * (W_hn h_{t-1} + b_hn))
//                h_t = (1 - z) * n + z * h_{t-1}
//                (the reset gate applies after the recurrent product and its
//                bias: cuDNN's, PyTorch's, ONNX linear_before_reset = 1).
//
// Layer 0 reads x; layer k > 0 reads layer k-1's output, both directions
// concatenated [forward, reverse]. The reverse direction of a sequence of
// length L runs from its own last step L-1 down to 0.
//
// Tensors (f32, on the context's device; D = 2 when bidirectional, else 1;
// H_out = proj_size when set, else hidden_size):
//   x      [T, N, input_size]      time-major, padded; lengths[n] in [1, T], any order
//   y      [T, N, D * H_out]       each direction's h_t; zero at t >= lengths[n]
//   h0, hy [num_layers * D, N, H_out]   hy: the state at each sequence's own last step
//   c0, cy [num_layers * D, N, hidden_size]   LSTM only
//   h0 and c0 are optional (zeros).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dlrt/context.hpp"
#include "dlrt/engine.hpp"
#include "dlrt/export.hpp"
#include "dlrt/scheduler.hpp"
#include "dlrt/tensor.hpp"

namespace dlrt {

enum class RnnCell { Tanh, Relu, Lstm, Gru };
// "tanh", "relu", "lstm", "gru".
DLRT_EXPORT const char* to_string(RnnCell cell) noexcept;
// Gate blocks of H rows in W_ih and W_hh: 1, 1, 4, 3.
DLRT_EXPORT int rnn_gate_count(RnnCell cell) noexcept;

struct RnnParams {
  RnnCell cell = RnnCell::Lstm;
  int input_size = 1;   // in [1, 2^20]
  int hidden_size = 1;  // in [1, 2^20]
  int num_layers = 1;   // in [1, 64]
  bool bidirectional = false;
  bool bias = true;
  int proj_size = 0;  // LSTM only: 0 (none) or in [1, hidden_size)
};

// ---- weights ------------------------------------------------------------------

// One named piece of the flat weight tensor. The pieces come in PyTorch's
// parameter order: for each layer, for each direction, weight_ih, weight_hh,
// then (with bias) bias_ih, bias_hh, then (with proj_size) weight_hr, named
// as in a state_dict: "weight_ih_l0", "weight_hh_l1_reverse", "bias_ih_l0",
// "weight_hr_l0". Shapes: weight_ih [G*H, I_k] (I_0 = input_size, I_k =
// D*H_out), weight_hh [G*H, H_out], biases [G*H], weight_hr [P, H], with the
// gate blocks in the order of the equations above.
struct RnnWeight {
  std::string name;
  int layer = 0;
  int direction = 0;        // 0 forward, 1 reverse
  std::int64_t offset = 0;  // in elements, into the flat tensor
  Shape shape;
};

// Throws dlrt::Error naming the field of `params` that breaks a rule.
DLRT_EXPORT std::vector<RnnWeight> rnn_weight_layout(const RnnParams& params);
// The flat weight tensor's length (the sum of the pieces).
DLRT_EXPORT std::int64_t rnn_weight_count(const RnnParams& params);
// A view (sharing storage) of the piece called `name` of `weights`, a 1-D
// tensor of rnn_weight_count(params) elements; throws for an unknown name.
DLRT_EXPORT Tensor rnn_weight(const Tensor& weights, const RnnParams& params,
                              std::string_view name);

// ---- sequences ------------------------------------------------------------------

// What forward in training mode keeps for backward: the gates of every step
// (and each layer's output), the problem it was made for, and the inputs x,
// h0 and c0 themselves (by reference, sharing storage: they must not change
// before backward is done). Backward-data must come before
// backward-weights, and both run on the plan whose forward filled the state
// (RnnPlan's own, or the one-shot functions' cached one): the state holds
// that engine's own data. An empty state (default-constructed) holds
// nothing.
class DLRT_EXPORT RnnTrainingState {
public:
  RnnTrainingState();
  ~RnnTrainingState();
  RnnTrainingState(RnnTrainingState&&) noexcept;
  RnnTrainingState& operator=(RnnTrainingState&&) noexcept;
  RnnTrainingState(const RnnTrainingState&) = delete;
  RnnTrainingState& operator=(const RnnTrainingState&) = delete;

  bool empty() const;
  // The engine that filled it (its backward must run there too).
  Engine engine() const;

  struct Impl;
  Impl& impl();
  const Impl& impl() const;

private:
  std::unique_ptr<Impl> impl_;
};

struct RnnPlanOptions {
  Engine engine = Engine::Auto;
  // How the scheduler plays the unrolled graph (engines played by the
  // scheduler: Cpu, Cuda); Default is the device's best.
  Executor executor = Executor::Default;
  // The engine's kernel variant (0: its own choice); needs an explicit engine.
  int variant = 0;
};

namespace detail {
struct RnnPlanState;
}

// One recurrent network over one batch shape, planned once: the engine, the
// scheduler's graph of the unrolled network (Cpu, Cuda), one memory arena for
// every activation and saved gate, sized before the first node runs. Running
// it allocates nothing beyond what a training state keeps.
class DLRT_EXPORT RnnPlan {
public:
  // lengths: N values in [1, T], in any order; empty means every sequence
  // has T steps.
  RnnPlan(Context& ctx, const RnnParams& params, std::int64_t T, std::int64_t N,
          std::span<const int> lengths = {}, const RnnPlanOptions& options = {});

  Engine engine() const;
  Executor executor() const;
  const RnnParams& params() const;
  std::int64_t steps() const;
  std::int64_t batch() const;
  const std::vector<int>& lengths() const;
  std::size_t workspace_bytes() const;
  const std::string& description() const;

  // saved: null for inference (nothing is kept); otherwise it is filled for
  // backward. hy and cy are optional.
  void forward(Context& ctx, const Tensor& x, const Tensor& weights, const Tensor* h0,
               const Tensor* c0, Tensor& y, Tensor* hy, Tensor* cy,
               RnnTrainingState* saved = nullptr) const;
  // dx, dh0, dc0 from dy and (optional) dhy, dcy. dh0 and dc0 are optional.
  void backward_data(Context& ctx, RnnTrainingState& saved, const Tensor& dy, const Tensor* dhy,
                     const Tensor* dcy, Tensor& dx, Tensor* dh0, Tensor* dc0) const;
  // dw (overwritten, or added to when `accumulate`), after backward_data.
  void backward_weights(Context& ctx, RnnTrainingState& saved, Tensor& dw,
                        bool accumulate = false) const;

  // The play of the last run on this plan as a timeline (empty until a run),
  // and writes of it as Chrome trace-event JSON; see dlrt/scheduler.hpp.
  Trace last_trace() const;

private:
  std::shared_ptr<const detail::RnnPlanState> state_;
};

// One-shot forms: a plan made once per problem (cached in ctx) and run.
DLRT_EXPORT Engine rnn_forward(Context& ctx, const RnnParams& params, const Tensor& x,
                               std::span<const int> lengths, const Tensor& weights,
                               const Tensor* h0, const Tensor* c0, Tensor& y, Tensor* hy,
                               Tensor* cy, RnnTrainingState* saved = nullptr,
                               Engine engine = Engine::Auto);
// Backward runs on the engine and plan of the forward that filled `saved`.
DLRT_EXPORT Engine rnn_backward_data(Context& ctx, RnnTrainingState& saved, const Tensor& dy,
                                     const Tensor* dhy, const Tensor* dcy, Tensor& dx, Tensor* dh0,
                                     Tensor* dc0);
DLRT_EXPORT Engine rnn_backward_weights(Context& ctx, RnnTrainingState& saved, Tensor& dw,
                                        bool accumulate = false);

// Would `engine` run this problem here, and which engine Auto picks.
DLRT_EXPORT EngineQuery rnn_query(Context& ctx, const RnnParams& params, std::int64_t T,
                                  std::int64_t N, std::span<const int> lengths = {},
                                  Engine engine = Engine::Auto);

// ---- one step of one layer and direction ---------------------------------------
//
// The scheduler's nodes, public for recurrences of one's own. Shapes: x
// [N, I], h [N, H], c [N, H] (LSTM), w_ih [G*H, I], w_hh [G*H, H], biases
// [G*H] (both or neither), h_out/c_out [N, H]. No projection here. `saved`
// receives what backward needs: [N, 4*H] for LSTM (i, f, g, o after their
// activations) and GRU (r, z, n, and W_hn h + b_hn); nothing (null) for the
// vanilla cells, whose derivative comes from h_out.

struct RnnCellWeights {
  const Tensor* w_ih = nullptr;
  const Tensor* w_hh = nullptr;
  const Tensor* b_ih = nullptr;
  const Tensor* b_hh = nullptr;
};

// The width of a cell's saved gates, per batch row: 4*H for LSTM and GRU, 0 otherwise.
DLRT_EXPORT std::int64_t rnn_cell_saved_size(RnnCell cell, std::int64_t hidden_size) noexcept;

DLRT_EXPORT Engine rnn_cell_forward(Context& ctx, RnnCell cell, const Tensor& x, const Tensor& h,
                                    const Tensor* c, const RnnCellWeights& weights, Tensor& h_out,
                                    Tensor* c_out, Tensor* saved, Engine engine = Engine::Auto);

// The gradients of one step. dh_out (and dc_out for LSTM, optional) flow in;
// dh (required) and dx and dc (LSTM; optional) are overwritten; the weight
// gradients, each optional, are added to (as over the steps of a sequence).
// LSTM and GRU need the `saved` gates of the forward step, and LSTM its
// c_out too.
struct RnnCellGradients {
  Tensor* dx = nullptr;
  Tensor* dh = nullptr;
  Tensor* dc = nullptr;
  Tensor* dw_ih = nullptr;
  Tensor* dw_hh = nullptr;
  Tensor* db_ih = nullptr;
  Tensor* db_hh = nullptr;
};

DLRT_EXPORT Engine rnn_cell_backward(Context& ctx, RnnCell cell, const Tensor& x, const Tensor& h,
                                     const Tensor* c, const RnnCellWeights& weights,
                                     const Tensor& h_out, const Tensor* c_out, const Tensor* saved,
                                     const Tensor& dh_out, const Tensor* dc_out,
                                     const RnnCellGradients& gradients,
                                     Engine engine = Engine::Auto);

}  // namespace dlrt
