// Variant 2 of the Cuda recurrent engine: a persistent kernel per layer
// that keeps the recurrent weights W_hh in shared memory across all steps
// (Diamos et al. 2016, "Persistent RNNs"). The input GEMMs over all steps
// stay cuBLAS, as in variant 1; then one cooperative launch per layer runs
// every step of both directions: block b of direction d owns the hidden
// units [j0, j1) of its slice and holds all G gate rows of W_hh for them,
// loaded once. At each step the block's (row n, unit j) elements get the
// recurrent dot products onto the projected input gates (split over the
// columns when the batch is too small to occupy the block's threads, the
// parts summed after a block barrier), then variant 1's fused cell body
// (forward_step_element) at that element, so the state, the saved gates and
// the outputs land where variant 1's forward writes them and training's
// backward is variant 1's unchanged. A grid-wide barrier separates steps:
// step s reads all of h_{s-1}.
//
// Everything here but the launch is host/device code: the partition, the
// shared-memory size, the weight load and one block's two phases of a step
// are replayed on the host by tests/internal/test_cuda_rnn_cells.cpp, every
// thread of a phase after another, the blocks of a step in any order, then
// the grid barrier.
#pragma once

#include <algorithm>
#include <cstddef>
#include <string>

#include "kernels/cuda/rnn_cells.hpp"

namespace dlrt::detail::cuda_rnn {

// Threads per persistent block.
constexpr int kPersistentThreads = 256;
// The largest batch variant 2 takes. A persistent kernel pays off when the
// per-step GEMM is too small to fill the device and reloading W_hh each
// step dominates (Diamos et al. measure their gains at minibatches of 4 to
// 64); past 32 rows a block's G * units * N dot products per step exceed
// what its 256 threads cover in a couple of passes, and variant 1's cuBLAS
// GEMM over the whole batch is the better use of the device.
constexpr i64 kPersistentMaxBatch = 32;

// One contiguous slice of hidden units [j0, j1) per block: block b of
// `blocks` over H units, each of `units` = ceil(H / blocks) but the last.
DLRT_HOST_DEVICE inline i64 persistent_units(i64 H, i64 blocks) {
  return (H + blocks - 1) / blocks;
}
DLRT_HOST_DEVICE inline i64 persistent_first(i64 H, i64 blocks, i64 b) {
  const i64 j = b * persistent_units(H, blocks);
  return j < H ? j : H;
}
DLRT_HOST_DEVICE inline i64 persistent_end(i64 H, i64 blocks, i64 b) {
  return persistent_first(H, blocks, b + 1);
}
// The floats of one block's W_hh slice: G gate rows per unit, H wide.
DLRT_HOST_DEVICE inline i64 persistent_slice_floats(i64 G, i64 H, i64 units) {
  return G * units * H;
}
// Shared element (gate q, local unit u, column k) of a slice of `units`
// units. Units innermost: the threads of a warp take consecutive units of a
// row at the same column k, so they read consecutive words (no bank
// conflicts), and threads of other rows at the same unit read the same word
// (a broadcast).
DLRT_HOST_DEVICE inline i64 persistent_slice_at(i64 units, i64 H, i64 q, i64 u, i64 k) {
  return (q * H + k) * units + u;
}

// One direction of one layer.
struct PersistentDirection {
  i64 k = 0;                    // layer * D + direction (the state tensors' row block)
  const float* w_hh = nullptr;  // [GH, H]
  const float* b_ih = nullptr;  // null: no bias
  const float* b_hh = nullptr;
  float* gates = nullptr;  // [R, GH]: the input GEMMs' x W_ih^T, every step
  float* gru = nullptr;    // GRU [R, 4H]
  float* h = nullptr;      // [R, H]
  float* c = nullptr;      // LSTM [R, H]
  float* h0 = nullptr;     // [N, H]: the packed initial state (h_{-1})
  float* c0 = nullptr;
};

// One launch: every step of both directions of a layer.
struct PersistentLayerArgs {
  Tables t;
  RnnCell cell = RnnCell::Tanh;
  i64 steps = 0, N = 0, H = 0, GH = 0, width = 0;
  i64 blocks = 1;  // per direction; blockIdx.x = direction * blocks + block
  i64 units = 1;   // persistent_units(H, blocks)
  int D = 1;
  PersistentDirection dir[2];
  float* out = nullptr;  // padded [T, N, D * H]
  float* hy = nullptr;   // null: not wanted
  float* cy = nullptr;
};

// Loads block b's slice of direction d's W_hh into `slice`, thread `thread` of `threads`.
DLRT_HOST_DEVICE inline void persistent_load_weights(const PersistentLayerArgs& a, int d, i64 b,
                                                     float* slice, i64 thread, i64 threads) {
  const i64 H = a.H, j0 = persistent_first(H, a.blocks, b), j1 = persistent_end(H, a.blocks, b);
  const i64 units = j1 - j0, G = a.GH / H, count = G * units * H;
  const float* w = a.dir[d].w_hh;
  // Consecutive threads read consecutive columns of a W_hh row (coalesced).
  for (i64 i = thread; i < count; i += threads) {
    const i64 k = i % H, u = (i / H) % units, q = i / (H * units);
    slice[persistent_slice_at(a.units, H, q, u, k)] = w[(q * H + j0 + u) * H + k];
  }
}

// Variant 1's cell arguments for direction d at step s.
DLRT_HOST_DEVICE inline ForwardStepArgs persistent_step_args(const PersistentLayerArgs& a, int d,
                                                             i64 s) {
  const PersistentDirection& u = a.dir[d];
  const bool lstm = a.cell == RnnCell::Lstm, gru = a.cell == RnnCell::Gru;
  const i64 H = a.H, row0 = a.t.offset[s];
  ForwardStepArgs f;
  f.t = a.t, f.cell = a.cell, f.d = d;
  f.s = s, f.batch = a.t.offset[s + 1] - row0, f.N = a.N, f.H = H, f.GH = a.GH;
  f.width = a.width, f.k = u.k;
  f.gates = u.gates + row0 * a.GH;
  f.b_ih = u.b_ih, f.b_hh = u.b_hh;
  f.gru = gru ? u.gru + row0 * 4 * H : nullptr;
  f.h_prev = s == 0 ? u.h0 : u.h + a.t.offset[s - 1] * H;
  f.c_prev = lstm ? (s == 0 ? u.c0 : u.c + a.t.offset[s - 1] * H) : nullptr;
  f.h = u.h + row0 * H;
  f.c = lstm ? u.c + row0 * H : nullptr;
  f.out = a.out, f.hy = a.hy, f.cy = lstm ? a.cy : nullptr;
  return f;
}

// h_{s-1} is written by other blocks before the grid barrier: on the device
// read it past L1 (which is not coherent across SMs).
DLRT_HOST_DEVICE inline float persistent_load_state(const float* p) {
#if defined(__CUDA_ARCH__)
  return __ldcg(p);
#else
  return *p;
#endif
}

// The parts each dot product of a step is split into over the columns k:
// the largest power of two P <= H with elements * P <= threads, so that a
// small batch still occupies the block's threads (1 when the elements
// alone fill them). Every thread of the block computes the same P.
DLRT_HOST_DEVICE inline i64 persistent_split(i64 elements, i64 threads, i64 H) {
  i64 parts = 1;
  while (parts * 2 <= H && elements * parts * 2 <= threads) parts *= 2;
  return parts;
}
// Floats of the block's scratch for the partial sums: G per thread.
DLRT_HOST_DEVICE inline i64 persistent_scratch_floats(i64 G, i64 threads) { return G * threads; }

// Columns [k0, k1) of part p of P over H.
DLRT_HOST_DEVICE inline i64 persistent_part_first(i64 H, i64 parts, i64 p) { return p * H / parts; }

// Gate q's recurrent product of local unit u over columns [k0, k1).
DLRT_HOST_DEVICE inline float persistent_dot(const PersistentLayerArgs& a, const float* slice,
                                             const float* h_prev, i64 q, i64 u, i64 k0, i64 k1) {
  const float* w = slice + persistent_slice_at(a.units, a.H, q, u, 0);
  float sum = 0.0f;
  for (i64 k = k0; k < k1; ++k) sum += w[k * a.units] * persistent_load_state(h_prev + k);
  return sum;
}

// Adds gate q's product onto the gates as variant 1's GEMM does (GRU's n
// row goes to the saved hn block, which the GEMM writes with beta 0).
DLRT_HOST_DEVICE inline void persistent_apply(const PersistentLayerArgs& a,
                                              const ForwardStepArgs& f, i64 n, i64 j, i64 q,
                                              float sum) {
  if (a.cell == RnnCell::Gru && q == 2)
    f.gru[n * 4 * a.H + 3 * a.H + j] = sum;
  else
    f.gates[n * a.GH + q * a.H + j] += sum;
}

// One step of block b of direction d is two phases with a block barrier
// (__syncthreads) between them; the host replays every thread of phase 1,
// then every thread of phase 2. The step's elements are (row n, unit j)
// over the active batch and the block's units.
//
// Phase 1, split steps only (P > 1): thread t < elements * P computes part
// t / elements of element t % elements (consecutive threads take
// consecutive units at the same columns: conflict-free shared reads, and
// h_{s-1} broadcast), one partial per gate into scratch[q * threads + t].
DLRT_HOST_DEVICE inline void persistent_block_partials(const PersistentLayerArgs& a, int d, i64 s,
                                                       i64 b, const float* slice, float* scratch,
                                                       i64 thread, i64 threads) {
  const ForwardStepArgs f = persistent_step_args(a, d, s);
  const i64 H = a.H, G = a.GH / H;
  const i64 j0 = persistent_first(H, a.blocks, b), units = persistent_end(H, a.blocks, b) - j0;
  const i64 elements = f.batch * units, parts = persistent_split(elements, threads, H);
  if (parts == 1 || thread >= elements * parts) return;
  const i64 e = thread % elements, part = thread / elements;
  const i64 n = e / units, u = e % units;
  const i64 k0 = persistent_part_first(H, parts, part),
            k1 = persistent_part_first(H, parts, part + 1);
  for (i64 q = 0; q < G; ++q)
    scratch[q * threads + thread] = persistent_dot(a, slice, f.h_prev + n * H, q, u, k0, k1);
}

// Phase 2: each element's products onto its gates (unsplit: the whole dot
// product here, in variant 1's GEMM's order, as the host replays it; split:
// the parts summed in part order), then variant 1's cell body at that
// element. Nothing else in the block or the grid reads what a thread
// writes before the grid barrier.
DLRT_HOST_DEVICE inline void persistent_block_finish(const PersistentLayerArgs& a, int d, i64 s,
                                                     i64 b, const float* slice,
                                                     const float* scratch, i64 thread,
                                                     i64 threads) {
  const ForwardStepArgs f = persistent_step_args(a, d, s);
  const i64 H = a.H, G = a.GH / H;
  const i64 j0 = persistent_first(H, a.blocks, b), units = persistent_end(H, a.blocks, b) - j0;
  const i64 elements = f.batch * units, parts = persistent_split(elements, threads, H);
  for (i64 e = thread; e < elements; e += threads) {
    const i64 n = e / units, u = e % units, j = j0 + u;
    for (i64 q = 0; q < G; ++q) {
      float sum = 0.0f;
      if (parts == 1) {
        sum = persistent_dot(a, slice, f.h_prev + n * H, q, u, 0, H);
      } else {
        for (i64 part = 0; part < parts; ++part) sum += scratch[q * threads + part * elements + e];
      }
      persistent_apply(a, f, n, j, q, sum);
    }
    forward_step_element(f, n * H + j);
  }
}

// A block's dynamic shared memory: its W_hh slice, then the scratch.
DLRT_HOST_DEVICE inline std::size_t persistent_fit_bytes(i64 G, i64 H, i64 units, i64 threads) {
  return static_cast<std::size_t>(persistent_slice_floats(G, H, units) +
                                  persistent_scratch_floats(G, threads)) *
         sizeof(float);
}

// ---- what variant 2 takes (plain C++, at plan time) -------------------------------

struct PersistentFit {
  std::string reason;  // empty: it fits
  i64 blocks = 0;      // per direction
  i64 units = 0;       // hidden units per block
  std::size_t shared_bytes = 0;
};

// The shape of the launch and whether it fits: one block per SM, split
// between the directions, each over a contiguous slice of the H units
// (no more blocks than units), its W_hh rows in `shared_per_block` bytes
// (the device's opt-in per-block shared memory).
inline PersistentFit persistent_fit(RnnCell cell, i64 H, i64 N, int D, i64 proj_size,
                                    std::size_t shared_per_block, int sm_count) {
  PersistentFit fit;
  if (H < 1 || N < 1 || (D != 1 && D != 2) || sm_count < 0) {
    fit.reason = "cuda rnn variant 2: invalid shape (H " + std::to_string(H) + ", N " +
                 std::to_string(N) + ", directions " + std::to_string(D) + ", SMs " +
                 std::to_string(sm_count) + ")";
    return fit;
  }
  if (proj_size > 0) {
    fit.reason =
        "cuda rnn variant 2 has no LSTM projection (proj_size = " + std::to_string(proj_size) + ")";
    return fit;
  }
  if (N > kPersistentMaxBatch) {
    fit.reason = "cuda rnn variant 2 (the persistent kernel) takes batches up to " +
                 std::to_string(kPersistentMaxBatch) + " sequences, where keeping W_hh on chip " +
                 "pays off; this batch has " + std::to_string(N) + " (variant 1 runs it)";
    return fit;
  }
  if (sm_count < D) {
    fit.reason = "cuda rnn variant 2 needs a block per direction, but the device has " +
                 std::to_string(sm_count) + " SMs";
    return fit;
  }
  const i64 G = rnn_gate_count(cell);
  fit.blocks = std::min<i64>(H, sm_count / D);
  fit.units = persistent_units(H, fit.blocks);
  fit.blocks = (H + fit.units - 1) / fit.units;  // no block without units
  fit.shared_bytes = persistent_fit_bytes(G, H, fit.units, kPersistentThreads);
  if (fit.shared_bytes > shared_per_block)
    fit.reason = "cuda rnn variant 2 keeps W_hh on chip: each of " + std::to_string(fit.blocks) +
                 " blocks per direction holds " + std::to_string(G) + " x " +
                 std::to_string(fit.units) + " rows of " + std::to_string(H) +
                 " floats and its partial sums, " + std::to_string(fit.shared_bytes) +
                 " bytes, over the device's " + std::to_string(shared_per_block) +
                 " bytes of shared memory per block";
  return fit;
}

// A cooperative launch needs every block resident at once: `resident_per_sm`
// blocks of this size fit on each of `sm_count` SMs (the occupancy query).
inline std::string persistent_resident_check(i64 total_blocks, int sm_count, int resident_per_sm) {
  const i64 resident = i64{sm_count} * (resident_per_sm > 0 ? resident_per_sm : 0);
  if (total_blocks <= resident && total_blocks > 0) return {};
  return "cuda rnn variant 2 needs its " + std::to_string(total_blocks) +
         " blocks resident at once, but the device holds " + std::to_string(resident) +
         " of them (" + std::to_string(resident_per_sm) + " per SM on " + std::to_string(sm_count) +
         " SMs)";
}

}  // namespace dlrt::detail::cuda_rnn
