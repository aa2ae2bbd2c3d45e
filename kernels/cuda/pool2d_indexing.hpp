// The index arithmetic of the Cuda pooling kernels, as host/device functions.
// Every kernel's per-thread body is one of the *_one functions below, so the
// internal tests run the very same code on the host, thread by thread, and
// compare whole problems with the Reference engine. Plane-local values are
// int (the engine declines problems that fail fits_int); the linear thread
// index is Index, int32 or int64 as the problem's size needs.
#pragma once

#include <climits>
#include <cstdint>

#include "dlrt/pool.hpp"

#if defined(__CUDACC__)
#define DLRT_POOL_HD __host__ __device__
#else
#define DLRT_POOL_HD
#endif

namespace dlrt::detail::cuda_pool2d {

struct Plane {
  int H, W, P, Q;
  int window_h, window_w, stride_h, stride_w, pad_h, pad_w;
};

// Plane offsets h*W + w and p*Q + q stay below H*W and P*Q; along a dimension
// every window start and end, and h + pad, stay below extent + pad + window.
inline bool fits_int(std::int64_t H, std::int64_t W, std::int64_t P, std::int64_t Q, int window_h,
                     int window_w, int pad_h, int pad_w) {
  return H * W <= INT_MAX && P * Q <= INT_MAX && H + pad_h + window_h <= INT_MAX &&
         W + pad_w + window_w <= INT_MAX;
}

struct Span {
  int begin, end;  // [begin, end); empty when end <= begin
};

// Input positions the window of output p reads along one dimension:
// [p*stride - pad, p*stride - pad + window) clipped to [0, extent).
DLRT_POOL_HD inline Span window_span(int p, int window, int stride, int pad, int extent) {
  const int start = p * stride - pad;
  const int stop = start + window;
  return {start > 0 ? start : 0, stop < extent ? stop : extent};
}

// The window's length clipped to the padded input [-pad, extent + pad): the
// AverageIncludePad divisor's factor. Only ceil mode's last window is cut.
DLRT_POOL_HD inline int padded_length(int p, int window, int stride, int pad, int extent) {
  const int start = p * stride - pad;
  const int stop = start + window;
  return (stop < extent + pad ? stop : extent + pad) - start;
}

// Outputs p whose window covers input position h, within [0, outputs):
// p*stride - pad <= h < p*stride - pad + window, so
// (h + pad - window) / stride < p <= (h + pad) / stride.
DLRT_POOL_HD inline Span covering_outputs(int h, int window, int stride, int pad, int outputs) {
  const int shifted = h + pad;
  const int first = shifted < window ? 0 : (shifted - window) / stride + 1;
  const int last = shifted / stride + 1;
  return {first, last < outputs ? last : outputs};
}

// dlrt's max rule: a later value replaces the running maximum only when it is
// larger, or a NaN while the maximum is not NaN; so the first maximum, or the
// first NaN, wins.
DLRT_POOL_HD inline bool replaces_max(float value, float best) {
  return !(value <= best) && best == best;
}

struct ArgMax {
  float value;
  int index;  // h*W + w in the plane
};

// Every window holds at least one input element (pad <= window / 2).
DLRT_POOL_HD inline ArgMax window_max(const float* plane, const Plane& g, int p, int q) {
  const Span rows = window_span(p, g.window_h, g.stride_h, g.pad_h, g.H);
  const Span cols = window_span(q, g.window_w, g.stride_w, g.pad_w, g.W);
  ArgMax best{plane[rows.begin * g.W + cols.begin], rows.begin * g.W + cols.begin};
  for (int h = rows.begin; h < rows.end; ++h)
    for (int c = cols.begin; c < cols.end; ++c) {
      const float v = plane[h * g.W + c];
      if (replaces_max(v, best.value)) best = {v, h * g.W + c};
    }
  return best;
}

// As a float product: the padded area can exceed int, and below 2^24 it is exact.
template <PoolMode kMode>
DLRT_POOL_HD inline float average_divisor(const Plane& g, int p, int q) {
  if constexpr (kMode == PoolMode::AverageIncludePad) {
    return static_cast<float>(padded_length(p, g.window_h, g.stride_h, g.pad_h, g.H)) *
           static_cast<float>(padded_length(q, g.window_w, g.stride_w, g.pad_w, g.W));
  } else {
    const Span rows = window_span(p, g.window_h, g.stride_h, g.pad_h, g.H);
    const Span cols = window_span(q, g.window_w, g.stride_w, g.pad_w, g.W);
    return static_cast<float>((rows.end - rows.begin) * (cols.end - cols.begin));
  }
}

// y = (sum of the window's input elements, row-major, in float) / divisor.
template <PoolMode kMode>
DLRT_POOL_HD inline float window_average(const float* plane, const Plane& g, int p, int q) {
  const Span rows = window_span(p, g.window_h, g.stride_h, g.pad_h, g.H);
  const Span cols = window_span(q, g.window_w, g.stride_w, g.pad_w, g.W);
  float sum = 0.0f;
  for (int h = rows.begin; h < rows.end; ++h)
    for (int c = cols.begin; c < cols.end; ++c) sum += plane[h * g.W + c];
  return sum / average_divisor<kMode>(g, p, q);
}

// Linear index i = (plane*rows + row)*cols + col.
template <class Index>
struct Position {
  Index plane;
  int row, col;
};
template <class Index>
DLRT_POOL_HD inline Position<Index> split_index(Index i, int rows, int cols) {
  const Index line = i / cols;
  return {line / rows, static_cast<int>(line % rows), static_cast<int>(i % cols)};
}

template <class Index>
DLRT_POOL_HD inline Index plane_offset(Index plane, int rows, int cols) {
  return plane * (static_cast<Index>(rows) * static_cast<Index>(cols));
}

// Forward, thread i: output i = (plane*P + p)*Q + q; consecutive threads take
// consecutive q, so the writes coalesce. indices may be null.
template <PoolMode kMode, class Index>
DLRT_POOL_HD inline void forward_one(const float* x, float* y, std::int32_t* indices,
                                     const Plane& g, Index i) {
  const Position<Index> at = split_index(i, g.P, g.Q);
  const float* in = x + plane_offset(at.plane, g.H, g.W);
  if constexpr (kMode == PoolMode::Max) {
    const ArgMax best = window_max(in, g, at.row, at.col);
    y[i] = best.value;
    if (indices != nullptr) indices[i] = best.index;
  } else {
    y[i] = window_average<kMode>(in, g, at.row, at.col);
  }
}

// The argmax alone, thread i as in forward_one: max backward from x and y
// runs it into a workspace, then gathers from the indices.
template <class Index>
DLRT_POOL_HD inline void argmax_one(const float* x, std::int32_t* indices, const Plane& g,
                                    Index i) {
  const Position<Index> at = split_index(i, g.P, g.Q);
  indices[i] = window_max(x + plane_offset(at.plane, g.H, g.W), g, at.row, at.col).index;
}

// Gather backward, thread i: input element i = (plane*H + h)*W + w sums the
// gradients of the outputs whose window covers it, in row-major output order
// from 0.0f: the order of the CPU engines' scatter, so max pooling agrees
// bitwise. For Max the argmax comes from indices (kFromIndices) or is found
// again from x; an index that is not this element never matches it.
template <PoolMode kMode, bool kFromIndices, class Index>
DLRT_POOL_HD inline void gather_one(const float* dy, const std::int32_t* indices, const float* x,
                                    float* dx, const Plane& g, Index i) {
  const Position<Index> at = split_index(i, g.H, g.W);
  const Index out_plane = plane_offset(at.plane, g.P, g.Q);
  const Span ps = covering_outputs(at.row, g.window_h, g.stride_h, g.pad_h, g.P);
  const Span qs = covering_outputs(at.col, g.window_w, g.stride_w, g.pad_w, g.Q);
  const int self = at.row * g.W + at.col;
  float sum = 0.0f;
  for (int p = ps.begin; p < ps.end; ++p)
    for (int q = qs.begin; q < qs.end; ++q) {
      const Index out = out_plane + p * g.Q + q;
      if constexpr (kMode == PoolMode::Max) {
        int chosen;
        if constexpr (kFromIndices) {
          chosen = indices[out];
        } else {
          chosen = window_max(x + plane_offset(at.plane, g.H, g.W), g, p, q).index;
        }
        if (chosen == self) sum += dy[out];
      } else {
        sum += dy[out] / average_divisor<kMode>(g, p, q);
      }
    }
  dx[i] = sum;
}

// One addition into dx: atomic on the device; on the host, where the tests
// run the threads one after another, a plain one.
DLRT_POOL_HD inline void accumulate(float* at, float value) {
#if defined(__CUDA_ARCH__)
  atomicAdd(at, value);
#else
  *at += value;
#endif
}

// Scatter backward (variant 2), thread i: output i adds its gradient into its
// window; dx must be zero beforehand. An index outside its window contributes
// nothing, as in the gather.
template <PoolMode kMode, bool kFromIndices, class Index>
DLRT_POOL_HD inline void scatter_one(const float* dy, const std::int32_t* indices, const float* x,
                                     float* dx, const Plane& g, Index i) {
  const Position<Index> at = split_index(i, g.P, g.Q);
  const Index in_plane = plane_offset(at.plane, g.H, g.W);
  const Span rows = window_span(at.row, g.window_h, g.stride_h, g.pad_h, g.H);
  const Span cols = window_span(at.col, g.window_w, g.stride_w, g.pad_w, g.W);
  if constexpr (kMode == PoolMode::Max) {
    int chosen;
    if constexpr (kFromIndices) {
      chosen = indices[i];
      if (chosen < 0) return;
      const int h = chosen / g.W, c = chosen % g.W;
      if (h < rows.begin || h >= rows.end || c < cols.begin || c >= cols.end) return;
    } else {
      chosen = window_max(x + in_plane, g, at.row, at.col).index;
    }
    accumulate(dx + in_plane + chosen, dy[i]);
  } else {
    const float share = dy[i] / average_divisor<kMode>(g, at.row, at.col);
    for (int h = rows.begin; h < rows.end; ++h)
      for (int c = cols.begin; c < cols.end; ++c) accumulate(dx + in_plane + h * g.W + c, share);
  }
}

}  // namespace dlrt::detail::cuda_pool2d
