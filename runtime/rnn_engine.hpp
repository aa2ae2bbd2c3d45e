// The interface every recurrent engine implements: plan a sequence problem
// (or one cell step) once, then run the plan. Pointers are on the engine's
// device; shapes, lengths and parameters have been validated, outputs do not
// overlap inputs, and every output element must be written (tests poison
// outputs to prove it).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "dlrt/rnn.hpp"
#include "runtime/registry.hpp"

namespace dlrt::detail {

// A validated sequence problem.
struct RnnProblem {
  RnnParams params;
  std::int64_t T = 1, N = 1;
  std::vector<int> lengths;  // N values in [1, T], filled in when the caller gave none
  int variant = 0;
  Executor executor = Executor::Default;
  ContextOptions options;
  int threads = 1;

  int directions() const { return params.bidirectional ? 2 : 1; }
  int gates() const { return rnn_gate_count(params.cell); }
  std::int64_t hidden() const { return params.hidden_size; }
  // The width of h: proj_size when the LSTM projects, else hidden_size.
  std::int64_t hidden_out() const {
    return params.proj_size > 0 ? params.proj_size : params.hidden_size;
  }
  // The width of layer k's input.
  std::int64_t layer_input(int k) const {
    return k == 0 ? params.input_size : directions() * hidden_out();
  }
  bool all_full() const {
    for (int length : lengths)
      if (length != T) return false;
    return true;
  }
};

// The engine's part of a training state: whatever its backward needs.
class RnnSavedData {
public:
  virtual ~RnnSavedData() = default;
};

// The inputs of a forward run, which backward reads again.
struct RnnInputs {
  const float* x = nullptr;
  const float* w = nullptr;
  const float* h0 = nullptr;  // null: zeros
  const float* c0 = nullptr;  // null: zeros (LSTM)
};

struct RnnOutputs {
  float* y = nullptr;
  float* hy = nullptr;  // optional
  float* cy = nullptr;  // optional (LSTM)
};

struct RnnGradients {
  const float* dy = nullptr;
  const float* dhy = nullptr;  // null: zeros
  const float* dcy = nullptr;  // null: zeros
  float* dx = nullptr;
  float* dh0 = nullptr;  // optional
  float* dc0 = nullptr;  // optional
};

class RnnKernel : public KernelBase {
public:
  using KernelBase::KernelBase;

  // Runs forward. With `saved` non-null (training), fills it: *saved holds
  // the engine's data of an earlier forward of this plan, to be reused (no
  // allocation), or is null and is created here.
  virtual void forward(Context& ctx, const RnnInputs& in, const RnnOutputs& out, void* workspace,
                       std::shared_ptr<RnnSavedData>* saved) const = 0;
  virtual void backward_data(Context& ctx, const RnnInputs& in, RnnSavedData& saved,
                             const RnnGradients& grad, void* workspace) const = 0;
  // dw is overwritten, or added to when `accumulate`.
  virtual void backward_weights(Context& ctx, const RnnInputs& in, const RnnSavedData& saved,
                                float* dw, bool accumulate, void* workspace) const = 0;
  // The engine's executor, for the plan's queries.
  virtual Executor executor() const { return Executor::Sequential; }
  // The last play as a timeline, for engines played by the scheduler.
  virtual Trace last_trace() const { return {}; }
};

// One step of one layer and direction (rnn_cell_forward / _backward).
struct RnnCellProblem {
  bool backward = false;
  RnnCell cell = RnnCell::Lstm;
  std::int64_t N = 1, I = 1, H = 1;
  bool bias = true;
  bool with_saved = false;  // forward: writes saved; backward: reads it
  bool with_dx = false, with_dc = false;
  bool with_dw_ih = false, with_dw_hh = false, with_db_ih = false, with_db_hh = false;
};

struct RnnCellArgs {
  const float* x = nullptr;
  const float* h = nullptr;
  const float* c = nullptr;
  const float* w_ih = nullptr;
  const float* w_hh = nullptr;
  const float* b_ih = nullptr;
  const float* b_hh = nullptr;
  // forward outputs, backward inputs
  const float* h_out_in = nullptr;
  const float* c_out_in = nullptr;
  const float* saved_in = nullptr;
  float* h_out = nullptr;
  float* c_out = nullptr;
  float* saved = nullptr;
  // backward
  const float* dh_out = nullptr;
  const float* dc_out = nullptr;
  float* dx = nullptr;
  float* dh = nullptr;
  float* dc = nullptr;
  float* dw_ih = nullptr;
  float* dw_hh = nullptr;
  float* db_ih = nullptr;
  float* db_hh = nullptr;
};

class RnnCellKernel : public KernelBase {
public:
  using KernelBase::KernelBase;
  virtual void run(Context& ctx, const RnnCellArgs& args, void* workspace) const = 0;
};

class RnnEngine : public EngineImpl {
public:
  static constexpr OpFamily kFamily = OpFamily::Rnn;
  virtual Planned<RnnKernel> plan(Context& ctx, const RnnProblem& problem) const = 0;
  virtual Planned<RnnCellKernel> plan_cell(Context& ctx, const RnnCellProblem& problem) const = 0;
};

}  // namespace dlrt::detail
