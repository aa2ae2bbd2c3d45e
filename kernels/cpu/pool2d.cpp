// The Cpu pooling engine, on dlrt's threads over output rows (forward) and
// planes (backward).
// Each output row is split once into a left border, an interior and a right
// border: interior windows lie wholly inside the input, so their loops carry
// no clipping. Backward scatters within a plane, one thread per plane, in
// row-major output order: no races, and max pooling's float sums come out in
// the order the other engines use.
#include <algorithm>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "runtime/parallel.hpp"
#include "runtime/pool2d_engine.hpp"

namespace dlrt::detail {
namespace {

using i64 = std::int64_t;

// Single-thread cost of one window element (a compare or an add), measured
// with dlrt_bench_pool --dlrt_engines=cpu at one thread: about 0.6 ns; the
// grain keeps a global 7x7 pool of a few planes on one thread.
constexpr double kNsPerWindowElement = 0.6;

double ns_per_output(const Pool2dGeometry& g) {
  return static_cast<double>(g.window_h) * static_cast<double>(g.window_w) * kNsPerWindowElement;
}

// The input rows that output row p reads, and their count counting padding.
struct Rows {
  i64 begin, end, padded;
};
Rows window_rows(const Pool2dGeometry& g, i64 p) {
  const i64 start = p * g.stride_h - g.pad_h;
  const i64 stop = std::min(start + g.window_h, g.H + g.pad_h);
  return {std::max<i64>(start, 0), std::min(stop, g.H), stop - start};
}

// Interior columns q: 0 <= q*stride_w - pad_w and q*stride_w - pad_w + window_w <= W.
struct Interior {
  i64 begin, end;
};
Interior interior_columns(const Pool2dGeometry& g) {
  // In 64 bits: pad + stride - 1 overflows int for a stride near INT_MAX.
  i64 begin = (i64{g.pad_w} + g.stride_w - 1) / g.stride_w;
  const i64 room = g.W + g.pad_w - g.window_w;
  i64 end = room < 0 ? 0 : room / g.stride_w + 1;
  begin = std::min(begin, g.Q);
  end = std::clamp(end, begin, g.Q);
  return {begin, end};
}

// Calls fn(q, first column, one past the last column, width counting padding)
// for every output column: borders clip, the interior does not. With a
// block_size, runs of that many interior windows go to block(first q)
// instead, and only the interior's tail to fn.
template <class Fn, class Block>
inline void for_each_window(const Pool2dGeometry& g, const Interior& interior, Fn&& fn,
                            i64 block_size, Block&& block) {
  auto border = [&](i64 q) {
    const i64 start = q * g.stride_w - g.pad_w;
    const i64 stop = std::min(start + g.window_w, g.W + g.pad_w);
    fn(q, std::max<i64>(start, 0), std::min(stop, g.W), stop - start);
  };
  for (i64 q = 0; q < interior.begin; ++q) border(q);
  i64 q = interior.begin;
  for (; q + block_size <= interior.end; q += block_size) block(q);
  for (; q < interior.end; ++q) {
    const i64 start = q * g.stride_w - g.pad_w;
    fn(q, start, start + g.window_w, i64{g.window_w});
  }
  for (q = interior.end; q < g.Q; ++q) border(q);
}

template <class Fn>
inline void for_each_window(const Pool2dGeometry& g, const Interior& interior, Fn&& fn) {
  for_each_window(g, interior, fn, g.Q + 1, [](i64) {});
}

// Whether v replaces the running maximum: the first maximum in row-major
// order wins, and a NaN replaces a number, never a NaN.
inline bool replaces(float v, float best) { return !(v <= best) && best == best; }

inline i64 argmax(const float* plane, i64 W, const Rows& rows, i64 w0, i64 w1) {
  i64 best_at = rows.begin * W + w0;
  float best = plane[best_at];
  for (i64 h = rows.begin; h < rows.end; ++h) {
    const float* row = plane + h * W;
    for (i64 c = w0; c < w1; ++c)
      if (replaces(row[c], best)) best = row[c], best_at = h * W + c;
  }
  return best_at;
}

// kMaxBlock consecutive interior windows at once, starting at column
// `start` of the first: the compares of one window form a chain of
// dependent selects, and a branch on each compare mispredicts about three
// times per 3x3 window on random data, so four vectors of four windows run
// side by side, branch-free (each window still visits its elements in
// row-major order, with replaces()'s rule).
constexpr i64 kMaxBlock = 16;
#if defined(__SSE2__)
template <bool kWithIndices>
void argmax_block(const float* plane, const Pool2dGeometry& g, const Rows& rows, i64 start,
                  float* y, std::int32_t* indices) {
  constexpr int kVectors = kMaxBlock / 4;
  const i64 s = g.stride_w;
  // row[col + j*s] for j = 0..3, reading nothing past the last of them.
  auto load = [&](const float* row, i64 col) -> __m128 {
    if (s == 1) return _mm_loadu_ps(row + col);
    if (s == 2 && col + 8 <= g.W)
      return _mm_shuffle_ps(_mm_loadu_ps(row + col), _mm_loadu_ps(row + col + 4),
                            _MM_SHUFFLE(2, 0, 2, 0));
    return _mm_setr_ps(row[col], row[col + s], row[col + 2 * s], row[col + 3 * s]);
  };
  const auto s32 = static_cast<std::int32_t>(s);
  const __m128i lane = _mm_setr_epi32(0, s32, 2 * s32, 3 * s32);
  __m128 best[kVectors];
  __m128i best_at[kVectors];
  const float* first_row = plane + rows.begin * g.W;
  for (int v = 0; v < kVectors; ++v) {
    const i64 col = start + v * 4 * s;
    best[v] = load(first_row, col);
    best_at[v] =
        _mm_add_epi32(_mm_set1_epi32(static_cast<std::int32_t>(rows.begin * g.W + col)), lane);
  }
  for (i64 h = rows.begin; h < rows.end; ++h) {
    const float* row = plane + h * g.W;
    for (i64 c = 0; c < g.window_w; ++c)
      for (int v = 0; v < kVectors; ++v) {
        const i64 col = start + v * 4 * s + c;
        const __m128 x = load(row, col);
        // !(x <= best) and best is not NaN: replaces(), four lanes at once.
        const __m128 take = _mm_and_ps(_mm_cmpnle_ps(x, best[v]), _mm_cmpord_ps(best[v], best[v]));
        best[v] = _mm_or_ps(_mm_and_ps(take, x), _mm_andnot_ps(take, best[v]));
        if constexpr (kWithIndices) {
          const __m128i at =
              _mm_add_epi32(_mm_set1_epi32(static_cast<std::int32_t>(h * g.W + col)), lane);
          const __m128i mask = _mm_castps_si128(take);
          best_at[v] = _mm_or_si128(_mm_and_si128(mask, at), _mm_andnot_si128(mask, best_at[v]));
        }
      }
  }
  for (int v = 0; v < kVectors; ++v) {
    _mm_storeu_ps(y + 4 * v, best[v]);
    if constexpr (kWithIndices)
      _mm_storeu_si128(reinterpret_cast<__m128i*>(indices + 4 * v), best_at[v]);
  }
}
#else
template <bool kWithIndices>
void argmax_block(const float* plane, const Pool2dGeometry& g, const Rows& rows, i64 start,
                  float* y, std::int32_t* indices) {
  for (i64 j = 0; j < kMaxBlock; ++j) {
    const i64 w0 = start + j * g.stride_w;
    const i64 best = argmax(plane, g.W, rows, w0, w0 + g.window_w);
    y[j] = plane[best];
    if constexpr (kWithIndices) indices[j] = static_cast<std::int32_t>(best);
  }
}
#endif

// Calls fn(q, maximum, argmax) for every output of one row, in order; the
// argmax is -1 unless kWithIndices.
template <bool kWithIndices, class Fn>
void for_each_max(const Pool2dGeometry& g, const Interior& interior, const float* plane,
                  const Rows& rows, Fn&& fn) {
  auto one = [&](i64 q, i64 w0, i64 w1, i64) {
    const i64 at = argmax(plane, g.W, rows, w0, w1);
    fn(q, plane[at], kWithIndices ? at : i64{-1});
  };
  auto block = [&](i64 q0) {
    float value[kMaxBlock];
    std::int32_t at[kMaxBlock];
    argmax_block<kWithIndices>(plane, g, rows, q0 * g.stride_w - g.pad_w, value, at);
    for (i64 j = 0; j < kMaxBlock; ++j) fn(q0 + j, value[j], kWithIndices ? i64{at[j]} : i64{-1});
  };
  for_each_window(g, interior, one, kMaxBlock, block);
}

// The divisor of an average: the padded area, or the number of input elements.
template <PoolMode kMode>
inline i64 average_count(const Rows& rows, i64 w0, i64 w1, i64 padded_w) {
  return kMode == PoolMode::AverageIncludePad ? rows.padded * padded_w
                                              : (rows.end - rows.begin) * (w1 - w0);
}

// Averages sum a window's rows column by column first (window_h + window_w
// adds per output, the first of them over whole rows, vectorised, instead
// of window_h * window_w), when a row holds several windows that do not
// skip columns: otherwise the whole rows cost more than the windows.
inline bool sums_columns_first(const Pool2dGeometry& g) {
  return g.Q > 1 && g.stride_w <= g.window_w;
}

// A row of W floats per thread, kept between calls.
inline float* row_scratch(i64 width) {
  thread_local std::vector<float> scratch;
  if (scratch.size() < static_cast<std::size_t>(width))
    scratch.resize(static_cast<std::size_t>(width));
  return scratch.data();
}

template <PoolMode kMode>
void forward_row(const Pool2dGeometry& g, const Interior& interior, const float* in, i64 p,
                 float* y_row, std::int32_t* indices_row, float* column) {
  const Rows rows = window_rows(g, p);
  if constexpr (kMode == PoolMode::Max) {
    if (indices_row)
      for_each_max<true>(g, interior, in, rows, [&](i64 q, float value, i64 at) {
        y_row[q] = value;
        indices_row[q] = static_cast<std::int32_t>(at);
      });
    else
      for_each_max<false>(g, interior, in, rows,
                          [&](i64 q, float value, i64) { y_row[q] = value; });
  } else if (column != nullptr) {
    // The window rows' column sums in one pass over the row (it vectorises),
    // then each window adds window_w of them.
    std::fill_n(column, g.W, 0.0f);
    for (i64 h = rows.begin; h < rows.end; ++h) {
      const float* row = in + h * g.W;
      for (i64 c = 0; c < g.W; ++c) column[c] += row[c];
    }
    for_each_window(g, interior, [&](i64 q, i64 w0, i64 w1, i64 padded_w) {
      float sum = 0.0f;
      for (i64 c = w0; c < w1; ++c) sum += column[c];
      y_row[q] = sum / static_cast<float>(average_count<kMode>(rows, w0, w1, padded_w));
    });
  } else {
    for_each_window(g, interior, [&](i64 q, i64 w0, i64 w1, i64 padded_w) {
      float sum = 0.0f;
      for (i64 h = rows.begin; h < rows.end; ++h) {
        const float* row = in + h * g.W;
        for (i64 c = w0; c < w1; ++c) sum += row[c];
      }
      y_row[q] = sum / static_cast<float>(average_count<kMode>(rows, w0, w1, padded_w));
    });
  }
}

template <PoolMode kMode>
void forward_all(const Pool2dGeometry& g, const float* x, float* y, std::int32_t* indices) {
  const Interior interior = interior_columns(g);
  const i64 rows = g.planes() * g.P;
  parallel_for(0, rows, grain_for(ns_per_output(g) * static_cast<double>(g.Q)),
               [&](i64 r0, i64 r1) {
                 float* column =
                     kMode != PoolMode::Max && sums_columns_first(g) ? row_scratch(g.W) : nullptr;
                 for (i64 r = r0; r < r1; ++r) {
                   const i64 plane = r / g.P, p = r % g.P;
                   forward_row<kMode>(g, interior, x + plane * g.x_plane(), p, y + r * g.Q,
                                      indices ? indices + r * g.Q : nullptr, column);
                 }
               });
}

// dx[argmax of (p, q)] += dy[p, q], outputs in row-major order.
void backward_max_plane(const Pool2dGeometry& g, const Interior& interior, const float* dy,
                        float* dx, const std::int32_t* indices, const float* x) {
  std::fill_n(dx, g.x_plane(), 0.0f);
  for (i64 p = 0; p < g.P; ++p) {
    const Rows rows = window_rows(g, p);
    const float* dy_row = dy + p * g.Q;
    if (indices) {
      const std::int32_t* index_row = indices + p * g.Q;
      for_each_window(g, interior, [&](i64 q, i64 w0, i64 w1, i64) {
        const i64 at = index_row[q];
        // An index outside its window (not one forward wrote) contributes nothing.
        const i64 h = at / g.W, c = at % g.W;
        if (at >= 0 && h >= rows.begin && h < rows.end && c >= w0 && c < w1) dx[at] += dy_row[q];
      });
    } else {
      for_each_max<true>(g, interior, x, rows, [&](i64 q, float, i64 at) { dx[at] += dy_row[q]; });
    }
  }
}

// dx[h, w] += dy[p, q] / count(p, q) over the window of every (p, q); with
// a column (a row of scratch), the shares summed per column first.
template <PoolMode kMode>
void backward_average_plane(const Pool2dGeometry& g, const Interior& interior, const float* dy,
                            float* dx, float* column) {
  std::fill_n(dx, g.x_plane(), 0.0f);
  for (i64 p = 0; p < g.P; ++p) {
    const Rows rows = window_rows(g, p);
    const float* dy_row = dy + p * g.Q;
    if (column != nullptr) {
      // The output row's shares summed per input column first, then added
      // to each of the window's rows in one pass over the row (it vectorises).
      std::fill_n(column, g.W, 0.0f);
      for_each_window(g, interior, [&](i64 q, i64 w0, i64 w1, i64 padded_w) {
        const float share =
            dy_row[q] / static_cast<float>(average_count<kMode>(rows, w0, w1, padded_w));
        for (i64 c = w0; c < w1; ++c) column[c] += share;
      });
      for (i64 h = rows.begin; h < rows.end; ++h) {
        float* row = dx + h * g.W;
        for (i64 c = 0; c < g.W; ++c) row[c] += column[c];
      }
      continue;
    }
    for_each_window(g, interior, [&](i64 q, i64 w0, i64 w1, i64 padded_w) {
      const float share =
          dy_row[q] / static_cast<float>(average_count<kMode>(rows, w0, w1, padded_w));
      for (i64 h = rows.begin; h < rows.end; ++h) {
        float* row = dx + h * g.W;
        for (i64 c = w0; c < w1; ++c) row[c] += share;
      }
    });
  }
}

void forward(const Pool2dGeometry& g, const float* x, float* y, std::int32_t* indices) {
  switch (g.mode) {
    case PoolMode::Max:
      return forward_all<PoolMode::Max>(g, x, y, indices);
    case PoolMode::AverageIncludePad:
      return forward_all<PoolMode::AverageIncludePad>(g, x, y, nullptr);
    case PoolMode::AverageExcludePad:
      return forward_all<PoolMode::AverageExcludePad>(g, x, y, nullptr);
  }
}

void backward(const Pool2dGeometry& g, const float* dy, float* dx, const std::int32_t* indices,
              const float* x) {
  const Interior interior = interior_columns(g);
  const double ns_per_plane =
      ns_per_output(g) * static_cast<double>(g.y_plane()) + static_cast<double>(g.x_plane());
  parallel_for(0, g.planes(), grain_for(ns_per_plane), [&](i64 plane0, i64 plane1) {
    float* column = g.mode != PoolMode::Max && sums_columns_first(g) ? row_scratch(g.W) : nullptr;
    for (i64 plane = plane0; plane < plane1; ++plane) {
      const float* dy_plane = dy + plane * g.y_plane();
      float* dx_plane = dx + plane * g.x_plane();
      switch (g.mode) {
        case PoolMode::Max:
          backward_max_plane(g, interior, dy_plane, dx_plane,
                             indices ? indices + plane * g.y_plane() : nullptr,
                             indices ? nullptr : x + plane * g.x_plane());
          break;
        case PoolMode::AverageIncludePad:
          backward_average_plane<PoolMode::AverageIncludePad>(g, interior, dy_plane, dx_plane,
                                                              column);
          break;
        case PoolMode::AverageExcludePad:
          backward_average_plane<PoolMode::AverageExcludePad>(g, interior, dy_plane, dx_plane,
                                                              column);
          break;
      }
    }
  });
}

class CpuPool2d final : public Pool2dEngine {
public:
  Engine engine() const override { return Engine::Cpu; }

  Planned<Pool2dKernel> plan(Context&, const Pool2dProblem& p) const override {
    if (p.variant != 0) return Planned<Pool2dKernel>::no(no_kernel_variants(engine(), p.variant));
    return {make_pool2d_kernel(engine(), 0, "cpu border/interior loops",
                               [g = p.g, op = p.op](Context&, const Pool2dArgs& a, void*) {
                                 if (op == Pool2dOp::Forward)
                                   return forward(g, a.x, a.y, a.indices_out);
                                 backward(g, a.dy, a.dx, a.indices, a.saved_x);
                               }),
            {}};
  }
};

const Registrar<Pool2dEngine> registrar{std::make_unique<CpuPool2d>()};

}  // namespace
}  // namespace dlrt::detail
