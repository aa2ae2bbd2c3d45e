#include "kernels/cpu/rnn_cells.hpp"

#include <algorithm>

// The vector types never cross a call that is not inlined; GCC's note
// about their ABI without AVX (clang warns too) is moot here.
#if defined(__GNUC__)  // GCC and clang
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

namespace dlrt::detail::cpu {
namespace {

// One register of floats per instruction set (SSE or NEON, AVX2, AVX-512),
// with the integer vector that comparisons return and bit tricks use.
typedef float f32x4 __attribute__((vector_size(16)));
typedef float f32x8 __attribute__((vector_size(32)));
typedef float f32x16 __attribute__((vector_size(64)));
typedef std::int32_t i32x4 __attribute__((vector_size(16)));
typedef std::int32_t i32x8 __attribute__((vector_size(32)));
typedef std::int32_t i32x16 __attribute__((vector_size(64)));

template <class V>
struct BitsOf;
template <>
struct BitsOf<f32x4> {
  using type = i32x4;
};
template <>
struct BitsOf<f32x8> {
  using type = i32x8;
};
template <>
struct BitsOf<f32x16> {
  using type = i32x16;
};
template <class V>
using Bits = typename BitsOf<V>::type;

template <class V>
constexpr int kLanes = static_cast<int>(sizeof(V) / sizeof(float));

#define DLRT_INLINE inline __attribute__((always_inline))

template <class V>
DLRT_INLINE V splat(float value) {
  return V{} + value;
}
template <class V>
DLRT_INLINE V load(const float* p) {
  V v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}
template <class V>
DLRT_INLINE void store(float* p, V v) {
  __builtin_memcpy(p, &v, sizeof v);
}
template <class V>
DLRT_INLINE Bits<V> bits(V v) {
  return __builtin_bit_cast(Bits<V>, v);
}
template <class V>
DLRT_INLINE V from_bits(Bits<V> b) {
  return __builtin_bit_cast(V, b);
}
// Lanes of `when` are all ones or all zeros, as comparisons leave them;
// masks rather than a vector ?: so that GCC and clang read it alike.
template <class V>
DLRT_INLINE V select(Bits<V> when, V yes, V no) {
  return from_bits<V>((when & bits(yes)) | (~when & bits(no)));
}

constexpr std::int32_t kSignBit = -0x7fffffff - 1;

// e^x, within about 1 ulp where the result is a normal float. Inputs are
// clamped to where 2^n below is a normal float: the low end (e^x under
// 2^-126) then comes out near 2^-126 instead of subnormal or 0, the high
// end (above about 2^127.5) at 2^127.5 instead of up to FLT_MAX or inf;
// sigmoid and tanh below only ever add such values to 1 or divide by them.
// NaN passes the clamps (every comparison with it is false) and stays NaN.
template <class V>
DLRT_INLINE V exp_clamped(V x) {
  const V low = splat<V>(-87.33f), high = splat<V>(88.37f);
  x = select(x < low, low, x);
  x = select(x > high, high, x);
  // Adding 1.5 * 2^23 rounds x log2(e) to an integer n, left in the low
  // bits of the sum; subtracting it again gives n as a float.
  const V shifter = splat<V>(0x1.8p23f);
  const V shifted = x * splat<V>(1.44269504088896341f) + shifter;
  const V n = shifted - shifter;
  // Cody and Waite's argument reduction: ln 2 split so that n * ln2_high
  // is exact for |n| <= 128, and r = x - n ln 2 stays in [-ln2/2, ln2/2].
  V r = x - n * splat<V>(0.693359375f);
  r = r - n * splat<V>(-2.12194440e-4f);
  // Taylor series of e^r to degree 7: the first term left out is under
  // 2^-27 relative on |r| <= ln2/2.
  V p = splat<V>(1.0f / 5040.0f);
  p = p * r + splat<V>(1.0f / 720.0f);
  p = p * r + splat<V>(1.0f / 120.0f);
  p = p * r + splat<V>(1.0f / 24.0f);
  p = p * r + splat<V>(1.0f / 6.0f);
  p = p * r + splat<V>(0.5f);
  p = p * r + splat<V>(1.0f);
  p = p * r + splat<V>(1.0f);
  // 2^n from its exponent field: n + 127 in [1, 254].
  const Bits<V> two_to_n = (bits(shifted) - bits(shifter) + 127) << 23;
  return p * from_bits<V>(two_to_n);
}

template <class V>
DLRT_INLINE V sigmoid_v(V x) {
  return splat<V>(1.0f) / (splat<V>(1.0f) + exp_clamped(-x));
}

// Below this |x|, tanh is the odd Taylor series: (1 - e) / (1 + e) would
// lose x's relative accuracy as x goes to 0.
constexpr float kTanhSeriesBelow = 0.4f;

template <class V>
DLRT_INLINE V tanh_v(V x) {
  const Bits<V> sign = bits(x) & kSignBit;
  const V magnitude = from_bits<V>(bits(x) & ~kSignBit);
  // Through x^13: the first term left out is under 2^-27 relative at 0.4.
  // Both forms run on |x| and take x's sign last, so that -0 stays -0.
  const V x2 = x * x;
  V q = splat<V>(21844.0f / 6081075.0f);
  q = q * x2 + splat<V>(-1382.0f / 155925.0f);
  q = q * x2 + splat<V>(62.0f / 2835.0f);
  q = q * x2 + splat<V>(-17.0f / 315.0f);
  q = q * x2 + splat<V>(2.0f / 15.0f);
  q = q * x2 + splat<V>(-1.0f / 3.0f);
  const V series = magnitude + magnitude * x2 * q;
  // e = e^(-2|x|) is at most e^-0.8 here, so exp's error reaches 1 - e
  // shrunk, not magnified; the clamp in exp makes large |x| give exactly 1.
  const V e = exp_clamped(splat<V>(-2.0f) * magnitude);
  const V ratio = (splat<V>(1.0f) - e) / (splat<V>(1.0f) + e);
  const V unsigned_tanh = select(magnitude < splat<V>(kTanhSeriesBelow), series, ratio);
  return from_bits<V>(bits(unsigned_tanh) | sign);
}

// ---- the cells, one vector of columns at a time ------------------------------
// Each step reads kIn vectors (a null input reads zeros) and writes kOut, in
// the order the scalar equations wrote them, so outputs that alias one
// another end as they did.

struct SigmoidStep {
  static constexpr int kIn = 1, kOut = 1;
  template <class V>
  static DLRT_INLINE void apply(const V (&x)[kIn], V (&y)[kOut]) {
    y[0] = sigmoid_v(x[0]);
  }
};

struct TanhStep {
  static constexpr int kIn = 1, kOut = 1;
  template <class V>
  static DLRT_INLINE void apply(const V (&x)[kIn], V (&y)[kOut]) {
    y[0] = tanh_v(x[0]);
  }
};

// std::max(pre, 0): NaN and -0 pass through.
struct ReluForwardStep {
  static constexpr int kIn = 1, kOut = 1;
  template <class V>
  static DLRT_INLINE void apply(const V (&x)[kIn], V (&y)[kOut]) {
    y[0] = select(x[0] < V{}, V{}, x[0]);
  }
};

// In: pre-activations i, f, g, o; c_prev. Out: i, f, g, o; c; m.
struct LstmForwardStep {
  static constexpr int kIn = 5, kOut = 6;
  template <class V>
  static DLRT_INLINE void apply(const V (&x)[kIn], V (&y)[kOut]) {
    const V i = sigmoid_v(x[0]), f = sigmoid_v(x[1]), g = tanh_v(x[2]), o = sigmoid_v(x[3]);
    const V cell = f * x[4] + i * g;
    y[0] = i, y[1] = f, y[2] = g, y[3] = o;
    y[4] = cell;
    y[5] = o * tanh_v(cell);
  }
};

// In: pre-activations r, z, n (input part); hn; h_prev. Out: h; r, z, n, hn.
struct GruForwardStep {
  static constexpr int kIn = 5, kOut = 5;
  template <class V>
  static DLRT_INLINE void apply(const V (&x)[kIn], V (&y)[kOut]) {
    const V r = sigmoid_v(x[0]), z = sigmoid_v(x[1]);
    const V hidden = x[3];
    const V n = tanh_v(x[2] + r * hidden);
    const V before = x[4];
    y[0] = (splat<V>(1.0f) - z) * n + z * before;
    y[1] = r, y[2] = z, y[3] = n, y[4] = hidden;
  }
};

// In: h, dh. Out: dpre.
struct TanhBackwardStep {
  static constexpr int kIn = 2, kOut = 1;
  template <class V>
  static DLRT_INLINE void apply(const V (&x)[kIn], V (&y)[kOut]) {
    y[0] = x[1] * (splat<V>(1.0f) - x[0] * x[0]);
  }
};

struct ReluBackwardStep {
  static constexpr int kIn = 2, kOut = 1;
  template <class V>
  static DLRT_INLINE void apply(const V (&x)[kIn], V (&y)[kOut]) {
    y[0] = select(x[0] > V{}, x[1], V{});
  }
};

// In: activations i, f, g, o; c_prev; c; dm; dc. Out: dpre of i, f, g, o; dc.
struct LstmBackwardStep {
  static constexpr int kIn = 8, kOut = 5;
  template <class V>
  static DLRT_INLINE void apply(const V (&x)[kIn], V (&y)[kOut]) {
    const V one = splat<V>(1.0f);
    const V i = x[0], f = x[1], g = x[2], o = x[3];
    const V before = x[4], dm = x[6];
    const V tc = tanh_v(x[5]);
    const V dcell = x[7] + dm * o * (one - tc * tc);
    y[0] = dcell * g * i * (one - i);
    y[1] = dcell * before * f * (one - f);
    y[2] = dcell * i * (one - g * g);
    y[3] = dm * tc * o * (one - o);
    y[4] = dcell * f;
  }
};

// In: saved r, z, n, hn; h_prev; dh. Out: d_in r, z, n; d_hidden r, z, hn;
// dh_prev_direct.
struct GruBackwardStep {
  static constexpr int kIn = 6, kOut = 7;
  template <class V>
  static DLRT_INLINE void apply(const V (&x)[kIn], V (&y)[kOut]) {
    const V one = splat<V>(1.0f);
    const V r = x[0], z = x[1], n = x[2], hn = x[3];
    const V before = x[4], dh = x[5];
    const V dn = dh * (one - z) * (one - n * n);
    const V dz = dh * (before - n) * z * (one - z);
    const V dr = dn * hn * r * (one - r);
    y[0] = dr, y[1] = dz, y[2] = dn;
    y[3] = dr, y[4] = dz, y[5] = dn * r;
    y[6] = dh * z;
  }
};

constexpr int kMaxIn = 8, kMaxOut = 7;

struct Row {
  i64 H;
  const float* in[kMaxIn];
  float* out[kMaxOut];
};

// The last, partial vector goes through the same instructions as the
// others, on zero-padded copies, so a column's bits do not depend on H.
template <class V, class Step>
DLRT_INLINE void each_vector(const Row& row) {
  constexpr int W = kLanes<V>;
  for (i64 j = 0; j < row.H; j += W) {
    const i64 count = std::min<i64>(W, row.H - j);
    const auto bytes = static_cast<std::size_t>(count) * sizeof(float);
    V x[Step::kIn], y[Step::kOut];
    for (int k = 0; k < Step::kIn; ++k) {
      if (row.in[k] == nullptr) {
        x[k] = V{};
      } else if (count == W) {
        x[k] = load<V>(row.in[k] + j);
      } else {
        float padded[W] = {};
        __builtin_memcpy(padded, row.in[k] + j, bytes);
        x[k] = load<V>(padded);
      }
    }
    Step::apply(x, y);
    for (int k = 0; k < Step::kOut; ++k) {
      if (count == W) {
        store(row.out[k] + j, y[k]);
      } else {
        float padded[W];
        store(padded, y[k]);
        __builtin_memcpy(row.out[k] + j, padded, bytes);
      }
    }
  }
}

enum class Cell {
  Sigmoid,
  Tanh,
  ReluForward,
  LstmForward,
  GruForward,
  TanhBackward,
  ReluBackward,
  LstmBackward,
  GruBackward,
};

template <class V>
DLRT_INLINE void run_body(Cell cell, const Row& row) {
  switch (cell) {
    case Cell::Sigmoid:
      return each_vector<V, SigmoidStep>(row);
    case Cell::Tanh:
      return each_vector<V, TanhStep>(row);
    case Cell::ReluForward:
      return each_vector<V, ReluForwardStep>(row);
    case Cell::LstmForward:
      return each_vector<V, LstmForwardStep>(row);
    case Cell::GruForward:
      return each_vector<V, GruForwardStep>(row);
    case Cell::TanhBackward:
      return each_vector<V, TanhBackwardStep>(row);
    case Cell::ReluBackward:
      return each_vector<V, ReluBackwardStep>(row);
    case Cell::LstmBackward:
      return each_vector<V, LstmBackwardStep>(row);
    case Cell::GruBackward:
      return each_vector<V, GruBackwardStep>(row);
  }
}

#undef DLRT_INLINE

using Kernel = void (*)(Cell, const Row&);

// One build of the rows per instruction set, chosen once by what the CPU
// has (features, not the model name: AMD and Intel alike).
#if defined(__x86_64__)
__attribute__((target("avx512f"))) void run_avx512(Cell cell, const Row& row) {
  run_body<f32x16>(cell, row);
}
__attribute__((target("avx2,fma"))) void run_avx2(Cell cell, const Row& row) {
  run_body<f32x8>(cell, row);
}
#endif
void run_baseline(Cell cell, const Row& row) { run_body<f32x4>(cell, row); }

Kernel pick() {
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx512f")) return run_avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return run_avx2;
#endif
  return run_baseline;
}

void run(Cell cell, const Row& row) {
  static const Kernel kernel = pick();
  if (row.H > 0) kernel(cell, row);
}

}  // namespace

void sigmoid_row(i64 n, const float* x, float* y) { run(Cell::Sigmoid, {n, {x}, {y}}); }

void tanh_row(i64 n, const float* x, float* y) { run(Cell::Tanh, {n, {x}, {y}}); }

float sigmoid(float v) {
  float result;
  sigmoid_row(1, &v, &result);
  return result;
}

void vanilla_forward_row(i64 H, bool relu, const float* pre, float* h) {
  run(relu ? Cell::ReluForward : Cell::Tanh, {H, {pre}, {h}});
}

void lstm_forward_row(i64 H, float* gates, const float* c_prev, float* c, float* m) {
  float* gi = gates;
  float* gf = gates + H;
  float* gg = gates + 2 * H;
  float* go = gates + 3 * H;
  run(Cell::LstmForward, {H, {gi, gf, gg, go, c_prev}, {gi, gf, gg, go, c, m}});
}

void gru_forward_row(i64 H, const float* pre, const float* hn, const float* h_prev, float* h,
                     float* saved) {
  run(Cell::GruForward, {H,
                         {pre, pre + H, pre + 2 * H, hn, h_prev},
                         {h, saved, saved + H, saved + 2 * H, saved + 3 * H}});
}

void vanilla_backward_row(i64 H, bool relu, const float* h, const float* dh, float* dpre) {
  run(relu ? Cell::ReluBackward : Cell::TanhBackward, {H, {h, dh}, {dpre}});
}

void lstm_backward_row(i64 H, const float* gates, const float* c_prev, const float* c,
                       const float* dm, float* dc, float* dpre) {
  run(Cell::LstmBackward, {H,
                           {gates, gates + H, gates + 2 * H, gates + 3 * H, c_prev, c, dm, dc},
                           {dpre, dpre + H, dpre + 2 * H, dpre + 3 * H, dc}});
}

void gru_backward_row(i64 H, const float* saved, const float* h_prev, const float* dh, float* d_in,
                      float* d_hidden, float* dh_prev_direct) {
  run(Cell::GruBackward,
      {H,
       {saved, saved + H, saved + 2 * H, saved + 3 * H, h_prev, dh},
       {d_in, d_in + H, d_in + 2 * H, d_hidden, d_hidden + H, d_hidden + 2 * H, dh_prev_direct}});
}

}  // namespace dlrt::detail::cpu
