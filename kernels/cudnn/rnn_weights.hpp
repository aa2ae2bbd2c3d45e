// The Cudnn recurrent engine's host arithmetic, free of CUDA so that the
// internal tests run it on the CPU: which piece of dlrt's flat weight tensor
// (PyTorch's order, rnn_weight_layout) each region of cuDNN's weight space
// holds, the copies that move the weights between the two layouts, and the
// layout of the engine's workspace.
//
// cuDNN's weight space is addressed per pseudo-layer (layer * D + direction:
// even ones forward, odd ones reverse) and per linear-layer id, each id
// naming one gate's matrix and its bias
// (https://docs.nvidia.com/deeplearning/cudnn/latest/api/cudnn-adv-library.html#cudnngetrnnweightparams):
//   Tanh, Relu  0: W, 1: R
//   Lstm        0-3: W of gates i, f, g, o; 4-7: R of the same gates; 8: the
//               recurrent projection (no bias), present when projSize < hiddenSize
//   Gru         0-2: W of gates r, z, n; 3-5: R of the same gates
// (https://docs.nvidia.com/deeplearning/cudnn/latest/api/cudnn-adv-library.html#cudnnrnnmode-t).
// These are PyTorch's gate orders, and each gate's matrix is the H rows of
// that gate in PyTorch's [G*H, I] row-major weight (PyTorch's cuDNN path
// views its parameters into cuDNN's buffer the same way), so every region is
// one contiguous run of the flat tensor.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "dlrt/rnn.hpp"

namespace dlrt::detail::cudnn_rnn {

// ---- linear-layer ids -----------------------------------------------------------

enum class LinKind { Input, Recurrent, Projection };

struct LinLayer {
  LinKind kind = LinKind::Input;
  int gate = 0;  // the gate block, for Input and Recurrent
};

// The number of linear-layer ids of one pseudo-layer: 2G, plus the
// projection of an LSTM with proj_size.
inline int lin_layer_count(const RnnParams& params) {
  const int G = rnn_gate_count(params.cell);
  return 2 * G + (params.cell == RnnCell::Lstm && params.proj_size > 0 ? 1 : 0);
}

// What linear-layer `id` (in [0, lin_layer_count)) names.
inline LinLayer lin_layer(const RnnParams& params, int id) {
  const int G = rnn_gate_count(params.cell);
  if (id < G) return {LinKind::Input, id};
  if (id < 2 * G) return {LinKind::Recurrent, id - G};
  return {LinKind::Projection, 0};
}

inline int pseudo_layer(int layer, int direction, int directions) {
  return layer * directions + direction;
}

// ---- dlrt's side ----------------------------------------------------------------

// A run of the flat tensor, in elements; count 0 when there is none.
struct FlatRegion {
  std::int64_t offset = 0;
  std::int64_t count = 0;
};

// Where each cuDNN region's values live in dlrt's flat weight tensor,
// derived from rnn_weight_layout (so the two can never disagree).
class FlatLayout {
public:
  explicit FlatLayout(const RnnParams& params)
      : params_(params), pieces_(rnn_weight_layout(params)) {}

  std::int64_t count() const {
    const RnnWeight& last = pieces_.back();
    return last.offset + last.shape.numel();
  }

  // The matrix of linear-layer `id` of `pseudo` (layer * D + direction).
  FlatRegion matrix(int pseudo, int id) const {
    const LinLayer lin = lin_layer(params_, id);
    switch (lin.kind) {
      case LinKind::Input:
        return gate_rows(find("weight_ih", pseudo), lin.gate);
      case LinKind::Recurrent:
        return gate_rows(find("weight_hh", pseudo), lin.gate);
      case LinKind::Projection: {
        const RnnWeight* piece = find("weight_hr", pseudo);
        if (piece == nullptr) return {};
        return {piece->offset, piece->shape.numel()};
      }
    }
    return {};
  }

  // The bias of linear-layer `id`; none without params.bias, and none for
  // the projection.
  FlatRegion bias(int pseudo, int id) const {
    const LinLayer lin = lin_layer(params_, id);
    if (lin.kind == LinKind::Projection) return {};
    return gate_rows(find(lin.kind == LinKind::Input ? "bias_ih" : "bias_hh", pseudo), lin.gate);
  }

private:
  const RnnWeight* find(const char* stem, int pseudo) const {
    const int D = params_.bidirectional ? 2 : 1;
    const int layer = pseudo / D, direction = pseudo % D;
    const std::string name =
        std::string(stem) + "_l" + std::to_string(layer) + (direction == 1 ? "_reverse" : "");
    for (const RnnWeight& piece : pieces_)
      if (piece.name == name) return &piece;
    return nullptr;
  }
  // Gate `gate`'s H rows of a [G*H, cols] matrix or a [G*H] bias.
  FlatRegion gate_rows(const RnnWeight* piece, int gate) const {
    if (piece == nullptr) return {};
    const std::int64_t H = params_.hidden_size;
    const std::int64_t cols = piece->shape.rank() > 1 ? piece->shape[1] : 1;
    return {piece->offset + gate * H * cols, H * cols};
  }

  RnnParams params_;
  std::vector<RnnWeight> pieces_;
};

// ---- the copies -------------------------------------------------------------------

// One contiguous copy between cuDNN's weight space and the flat tensor, in
// elements (f32) from the start of each.
struct WeightCopy {
  std::int64_t space = 0;
  std::int64_t flat = 0;
  std::int64_t count = 0;
};

// Checks that `regions` (one per cuDNN matrix or bias) lie inside both
// buffers, overlap in neither, and cover every element of the flat tensor,
// then merges the runs that are contiguous in both layouts. Returns an empty
// string with *merged filled, or what is wrong.
inline std::string merge_copies(std::vector<WeightCopy> regions, std::int64_t flat_count,
                                std::int64_t space_count, std::vector<WeightCopy>* merged) {
  merged->clear();
  for (const WeightCopy& r : regions) {
    if (r.count <= 0) return "a region of " + std::to_string(r.count) + " elements";
    if (r.space < 0 || r.space + r.count > space_count)
      return "a region at " + std::to_string(r.space) + " (+" + std::to_string(r.count) +
             ") runs outside cuDNN's weight space of " + std::to_string(space_count) + " elements";
    if (r.flat < 0 || r.flat + r.count > flat_count)
      return "a region at " + std::to_string(r.flat) + " (+" + std::to_string(r.count) +
             ") runs outside the flat weights of " + std::to_string(flat_count) + " elements";
  }
  // The flat side: every element exactly once.
  std::sort(regions.begin(), regions.end(),
            [](const WeightCopy& a, const WeightCopy& b) { return a.flat < b.flat; });
  std::int64_t next = 0;
  for (const WeightCopy& r : regions) {
    if (r.flat < next) return "two regions overlap at flat element " + std::to_string(r.flat);
    if (r.flat > next)
      return "flat elements [" + std::to_string(next) + ", " + std::to_string(r.flat) +
             ") have no place in cuDNN's weight space";
    next = r.flat + r.count;
  }
  if (next != flat_count)
    return "flat elements [" + std::to_string(next) + ", " + std::to_string(flat_count) +
           ") have no place in cuDNN's weight space";
  // The space side: no overlap, then merge.
  std::sort(regions.begin(), regions.end(),
            [](const WeightCopy& a, const WeightCopy& b) { return a.space < b.space; });
  for (std::size_t i = 1; i < regions.size(); ++i)
    if (regions[i].space < regions[i - 1].space + regions[i - 1].count)
      return "two regions overlap at weight-space element " + std::to_string(regions[i].space);
  for (const WeightCopy& r : regions) {
    if (!merged->empty()) {
      WeightCopy& last = merged->back();
      if (last.space + last.count == r.space && last.flat + last.count == r.flat) {
        last.count += r.count;
        continue;
      }
    }
    merged->push_back(r);
  }
  return {};
}

// Whether the copies write every element of a weight space of
// `space_count` elements (when not, the gaps are zeroed first).
inline bool covers_space(const std::vector<WeightCopy>& copies, std::int64_t space_count) {
  std::int64_t total = 0;
  for (const WeightCopy& c : copies) total += c.count;
  return total == space_count;
}

// The copies on host memory, as the engine runs them on the device.
template <class T>
void scatter(const std::vector<WeightCopy>& copies, const T* flat, T* space) {
  for (const WeightCopy& c : copies) std::copy_n(flat + c.flat, c.count, space + c.space);
}
template <class T>
void gather(const std::vector<WeightCopy>& copies, const T* space, T* flat) {
  for (const WeightCopy& c : copies) std::copy_n(space + c.space, c.count, flat + c.flat);
}

// ---- the workspace ----------------------------------------------------------------

inline constexpr std::size_t kAlignment = 256;

inline std::size_t align_up(std::size_t bytes) {
  return (bytes + kAlignment - 1) / kAlignment * kAlignment;
}

// The workspace of one plan: cuDNN's weight space (the weights, or dW for
// backward-weights), then cuDNN's temporary space, the larger of what
// inference and training need.
struct WorkspaceLayout {
  std::size_t weight_offset = 0;
  std::size_t temp_offset = 0;
  std::size_t temp_bytes = 0;
  std::size_t total = 0;
};

inline WorkspaceLayout workspace_layout(std::size_t weight_bytes, std::size_t temp_inference,
                                        std::size_t temp_training) {
  WorkspaceLayout w;
  w.weight_offset = 0;
  w.temp_offset = align_up(weight_bytes);
  w.temp_bytes = std::max(temp_inference, temp_training);
  w.total = w.temp_offset + w.temp_bytes;
  return w;
}

// The sequences shorter than T, whose padded steps t >= length are zeroed
// in dx after backward-data.
struct ShortSequence {
  int n = 0;
  int length = 0;
};

inline std::vector<ShortSequence> short_sequences(const std::vector<int>& lengths, std::int64_t T) {
  std::vector<ShortSequence> out;
  for (std::size_t n = 0; n < lengths.size(); ++n)
    if (lengths[n] < T) out.push_back({static_cast<int>(n), lengths[n]});
  return out;
}

}  // namespace dlrt::detail::cudnn_rnn
