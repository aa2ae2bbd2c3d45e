// The Cpu convolution engine: im2col + OpenBLAS sgemm, the unfolding and
// folding spread over OpenMP threads. Each op turns into one GEMM per
// (image, group, band of output rows):
//   forward         Y[k, pq]    = W[k, crs]   * col[crs, pq]
//   backward data   col[crs,pq] = W^T[crs, k] * dY[k, pq],   then col2im
//   backward filter dW[k, crs] += dY[k, pq]   * col^T[pq, crs]
// A band of output rows bounds the col buffer by the context's workspace
// limit. 1x1 stride-1 unpadded convolutions skip im2col: x already is col;
// depthwise convolutions skip the GEMM altogether.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <climits>
#include <cstring>

#include "runtime/context_impl.hpp"
#include "runtime/conv2d_engine.hpp"

namespace dlrt::detail {
namespace {

// The valid output columns q for filter column s: 0 <= q*stride - pad + s*dilation < W.
struct ColumnRange {
  std::int64_t begin, end;
};
ColumnRange valid_columns(const Conv2dGeometry& g, std::int64_t s) {
  const std::int64_t offset = s * g.dilation_w - g.pad_w;  // input column of q = 0
  std::int64_t begin = offset >= 0 ? 0 : (-offset + g.stride_w - 1) / g.stride_w;
  std::int64_t end = g.W - offset <= 0 ? 0 : (g.W - 1 - offset) / g.stride_w + 1;
  begin = std::min(begin, g.Q);
  end = std::clamp(end, begin, g.Q);
  return {begin, end};
}

// col[(c*R + r)*S + s][(p - p0)*Q + q] = x[c, p*sh - ph + r*dh, q*sw - pw + s*dw] or 0,
// with rows `ld` floats apart (several images can sit side by side).
void im2col(const Conv2dGeometry& g, const float* x_group, std::int64_t p0, std::int64_t p1,
            float* col, std::int64_t ld) {
  const std::int64_t rows = g.c_per_group() * g.R * g.S;
#pragma omp parallel for schedule(static)
  for (std::int64_t row = 0; row < rows; ++row) {
    const std::int64_t s = row % g.S, r = (row / g.S) % g.R, c = row / (g.S * g.R);
    const ColumnRange valid = valid_columns(g, s);
    const float* plane = x_group + c * g.H * g.W;
    float* out = col + row * ld;
    for (std::int64_t p = p0; p < p1; ++p, out += g.Q) {
      const std::int64_t h = p * g.stride_h - g.pad_h + r * g.dilation_h;
      if (h < 0 || h >= g.H) {
        std::fill_n(out, g.Q, 0.0f);
        continue;
      }
      const float* in = plane + h * g.W + s * g.dilation_w - g.pad_w;
      std::fill_n(out, valid.begin, 0.0f);
      if (g.stride_w == 1) {
        std::memcpy(out + valid.begin, in + valid.begin, (valid.end - valid.begin) * sizeof(float));
      } else {
        for (std::int64_t q = valid.begin; q < valid.end; ++q) out[q] = in[q * g.stride_w];
      }
      std::fill(out + valid.end, out + g.Q, 0.0f);
    }
  }
}

// The GEMM operand for output rows [p0, p1): x itself for a pointwise
// convolution (no col buffer), else x unfolded into col.
const float* unfold_band(const Conv2dGeometry& g, const float* x_group, std::int64_t p0,
                         std::int64_t p1, float* col) {
  if (col == nullptr) return x_group;
  im2col(g, x_group, p0, p1, col, (p1 - p0) * g.Q);
  return col;
}

// The adjoint of im2col: dx[c, h, w] += col[...]. Threads own whole channels,
// so no two threads add into one element and the sum order is fixed.
void col2im_add(const Conv2dGeometry& g, const float* col, std::int64_t ld, std::int64_t p0,
                std::int64_t p1, float* dx_group) {
  const std::int64_t Cg = g.c_per_group();
#pragma omp parallel for schedule(static)
  for (std::int64_t c = 0; c < Cg; ++c) {
    float* plane = dx_group + c * g.H * g.W;
    for (std::int64_t r = 0; r < g.R; ++r)
      for (std::int64_t s = 0; s < g.S; ++s) {
        const ColumnRange valid = valid_columns(g, s);
        const float* in = col + ((c * g.R + r) * g.S + s) * ld;
        for (std::int64_t p = p0; p < p1; ++p, in += g.Q) {
          const std::int64_t h = p * g.stride_h - g.pad_h + r * g.dilation_h;
          if (h < 0 || h >= g.H) continue;
          float* out = plane + h * g.W + s * g.dilation_w - g.pad_w;
          for (std::int64_t q = valid.begin; q < valid.end; ++q) out[q * g.stride_w] += in[q];
        }
      }
  }
}

int blas_int(std::int64_t v) { return static_cast<int>(v); }

// Depthwise convolution (one input channel per group): im2col would turn
// each group into a matrix-vector product, so these loops work on the planes
// directly. Each thread owns whole output planes, so no two threads write one
// element and the sum order is fixed.
bool is_depthwise(const Conv2dGeometry& g) { return g.c_per_group() == 1; }

// y[n,k] += w[k] (*) x[n, k / Kg]: for each filter tap, a shifted, strided
// row of x scaled by one weight; the valid column range is computed once per tap.
void depthwise_forward(const Conv2dGeometry& g, const float* x, const float* w, const float* bias,
                       float* y) {
  const std::int64_t Kg = g.k_per_group();
  // Output rows are independent, so a single photograph (N = 1, one
  // channel) still spreads over every thread.
#pragma omp parallel for collapse(3) schedule(static)
  for (std::int64_t n = 0; n < g.N; ++n)
    for (std::int64_t k = 0; k < g.K; ++k)
      for (std::int64_t p = 0; p < g.P; ++p) {
        const float* plane = x + (n * g.C + k / Kg) * g.H * g.W;
        const float* taps = w + k * g.R * g.S;
        float* row = y + ((n * g.K + k) * g.P + p) * g.Q;
        std::fill_n(row, g.Q, bias ? bias[k] : 0.0f);
        for (std::int64_t r = 0; r < g.R; ++r) {
          const std::int64_t h = p * g.stride_h - g.pad_h + r * g.dilation_h;
          if (h < 0 || h >= g.H) continue;
          for (std::int64_t s = 0; s < g.S; ++s) {
            const ColumnRange valid = valid_columns(g, s);
            const float tap = taps[r * g.S + s];
            const float* in = plane + h * g.W + s * g.dilation_w - g.pad_w;
            for (std::int64_t q = valid.begin; q < valid.end; ++q)
              row[q] += tap * in[q * g.stride_w];
          }
        }
      }
}

// dx[n,c] = sum over the Kg outputs of group c of w[k] scattered back.
void depthwise_backward_data(const Conv2dGeometry& g, const float* dy, const float* w, float* dx) {
  const std::int64_t Kg = g.k_per_group(), PQ = g.P * g.Q;
#pragma omp parallel for collapse(2) schedule(static)
  for (std::int64_t n = 0; n < g.N; ++n)
    for (std::int64_t c = 0; c < g.C; ++c) {
      float* plane = dx + (n * g.C + c) * g.H * g.W;
      std::fill_n(plane, g.H * g.W, 0.0f);
      for (std::int64_t k = c * Kg; k < (c + 1) * Kg; ++k) {
        const float* grad = dy + (n * g.K + k) * PQ;
        for (std::int64_t s = 0; s < g.S; ++s) {
          const ColumnRange valid = valid_columns(g, s);
          for (std::int64_t p = 0; p < g.P; ++p)
            for (std::int64_t r = 0; r < g.R; ++r) {
              const std::int64_t h = p * g.stride_h - g.pad_h + r * g.dilation_h;
              if (h < 0 || h >= g.H) continue;
              const float tap = w[(k * g.R + r) * g.S + s];
              float* in = plane + h * g.W + s * g.dilation_w - g.pad_w;
              const float* row = grad + p * g.Q;
              for (std::int64_t q = valid.begin; q < valid.end; ++q)
                in[q * g.stride_w] += tap * row[q];
            }
        }
      }
    }
}

// dw[k, r, s] = sum over n, p, q of dy[n,k,p,q] * x[n, k / Kg, h, w].
void depthwise_backward_filter(const Conv2dGeometry& g, const float* x, const float* dy,
                               float* dw) {
  const std::int64_t Kg = g.k_per_group(), PQ = g.P * g.Q;
#pragma omp parallel for schedule(static)
  for (std::int64_t k = 0; k < g.K; ++k)
    for (std::int64_t r = 0; r < g.R; ++r)
      for (std::int64_t s = 0; s < g.S; ++s) {
        const ColumnRange valid = valid_columns(g, s);
        double sum = 0.0;
        for (std::int64_t n = 0; n < g.N; ++n) {
          const float* plane = x + (n * g.C + k / Kg) * g.H * g.W;
          const float* grad = dy + (n * g.K + k) * PQ;
          for (std::int64_t p = 0; p < g.P; ++p) {
            const std::int64_t h = p * g.stride_h - g.pad_h + r * g.dilation_h;
            if (h < 0 || h >= g.H) continue;
            const float* in = plane + h * g.W + s * g.dilation_w - g.pad_w;
            const float* row = grad + p * g.Q;
            float partial = 0.0f;
            for (std::int64_t q = valid.begin; q < valid.end; ++q)
              partial += row[q] * in[q * g.stride_w];
            sum += partial;
          }
        }
        dw[(k * g.R + r) * g.S + s] = static_cast<float>(sum);
      }
}

class CpuConv2d final : public Conv2dEngine {
public:
  Engine engine() const override { return Engine::Cpu; }
  Device::Kind device_kind() const override { return Device::Kind::Cpu; }

  Support supports(const Context& ctx, Conv2dOp op, const Conv2dGeometry& g) const override {
    if (op == Conv2dOp::BackwardBias || is_depthwise(g)) return Support::yes();
    // OpenBLAS takes 32-bit dimensions and leading dimensions.
    const std::int64_t crs = g.c_per_group() * g.R * g.S;
    const std::int64_t largest = std::max({crs, g.K, g.P * g.Q, g.H * g.W, crs * g.Q});
    if (largest > INT_MAX)
      return Support::no("a GEMM dimension (" + std::to_string(largest) +
                         ") exceeds OpenBLAS's 32-bit int");
    if (!g.is_pointwise() && band_rows(ctx, g) < 1)
      return Support::no("one output row of the im2col buffer (" + std::to_string(crs * g.Q * 4) +
                         " bytes) exceeds the workspace limit " +
                         std::to_string(ctx.options().workspace_limit_bytes));
    return Support::yes();
  }

  void forward(Context& ctx, const Conv2dGeometry& g, const float* x, const float* w,
               const float* bias, float* y) const override {
    if (is_depthwise(g)) return depthwise_forward(g, x, w, bias, y);
    const std::int64_t Cg = g.c_per_group(), Kg = g.k_per_group(), crs = Cg * g.R * g.S;
    const std::int64_t PQ = g.P * g.Q;
    if (const std::int64_t images = images_per_gemm(ctx, g); images > 1) {
      forward_batched(ctx, g, images, x, w, y);
    } else {
      const std::int64_t band_p = g.is_pointwise() ? g.P : band_rows(ctx, g);
      float* col = g.is_pointwise() ? nullptr : workspace(ctx, g, band_p);
      for (std::int64_t n = 0; n < g.N; ++n)
        for (std::int64_t group = 0; group < g.groups; ++group) {
          const float* x_group = x + (n * g.C + group * Cg) * g.H * g.W;
          const float* w_group = w + group * Kg * crs;
          float* y_group = y + (n * g.K + group * Kg) * PQ;
          for (std::int64_t p0 = 0; p0 < g.P; p0 += band_p) {
            const std::int64_t p1 = std::min(g.P, p0 + band_p), cols = (p1 - p0) * g.Q;
            const float* b = unfold_band(g, x_group, p0, p1, col);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, blas_int(Kg), blas_int(cols),
                        blas_int(crs), 1.0f, w_group, blas_int(crs), b, blas_int(cols), 0.0f,
                        y_group + p0 * g.Q, blas_int(PQ));
          }
        }
    }
    if (bias != nullptr) {
#pragma omp parallel for collapse(2) schedule(static)
      for (std::int64_t n = 0; n < g.N; ++n)
        for (std::int64_t k = 0; k < g.K; ++k) {
          float* row = y + (n * g.K + k) * PQ;
          const float b = bias[k];
          for (std::int64_t i = 0; i < PQ; ++i) row[i] += b;
        }
    }
  }

  void backward_data(Context& ctx, const Conv2dGeometry& g, const float* dy, const float* w,
                     float* dx) const override {
    if (is_depthwise(g)) return depthwise_backward_data(g, dy, w, dx);
    const std::int64_t Cg = g.c_per_group(), Kg = g.k_per_group(), crs = Cg * g.R * g.S;
    const std::int64_t PQ = g.P * g.Q;
    if (const std::int64_t images = images_per_gemm(ctx, g); images > 1)
      return backward_data_batched(ctx, g, images, dy, w, dx);
    if (g.is_pointwise()) {
      for (std::int64_t n = 0; n < g.N; ++n)
        for (std::int64_t group = 0; group < g.groups; ++group)
          cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, blas_int(Cg), blas_int(PQ),
                      blas_int(Kg), 1.0f, w + group * Kg * crs, blas_int(crs),
                      dy + (n * g.K + group * Kg) * PQ, blas_int(PQ), 0.0f,
                      dx + (n * g.C + group * Cg) * g.H * g.W, blas_int(PQ));
      return;
    }
    const std::int64_t band_p = band_rows(ctx, g);
    float* col = workspace(ctx, g, band_p);
    std::fill_n(dx, g.x_elements(), 0.0f);
    for (std::int64_t n = 0; n < g.N; ++n)
      for (std::int64_t group = 0; group < g.groups; ++group) {
        const float* dy_group = dy + (n * g.K + group * Kg) * PQ;
        float* dx_group = dx + (n * g.C + group * Cg) * g.H * g.W;
        for (std::int64_t p0 = 0; p0 < g.P; p0 += band_p) {
          const std::int64_t p1 = std::min(g.P, p0 + band_p), cols = (p1 - p0) * g.Q;
          cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, blas_int(crs), blas_int(cols),
                      blas_int(Kg), 1.0f, w + group * Kg * crs, blas_int(crs), dy_group + p0 * g.Q,
                      blas_int(PQ), 0.0f, col, blas_int(cols));
          col2im_add(g, col, cols, p0, p1, dx_group);
        }
      }
  }

  void backward_filter(Context& ctx, const Conv2dGeometry& g, const float* x, const float* dy,
                       float* dw) const override {
    if (is_depthwise(g)) return depthwise_backward_filter(g, x, dy, dw);
    const std::int64_t Cg = g.c_per_group(), Kg = g.k_per_group(), crs = Cg * g.R * g.S;
    const std::int64_t PQ = g.P * g.Q;
    const std::int64_t band_p = g.is_pointwise() ? g.P : band_rows(ctx, g);
    float* col = g.is_pointwise() ? nullptr : workspace(ctx, g, band_p);
    for (std::int64_t group = 0; group < g.groups; ++group) {
      float* dw_group = dw + group * Kg * crs;
      float beta = 0.0f;  // the first GEMM overwrites dw, later ones accumulate
      for (std::int64_t n = 0; n < g.N; ++n) {
        const float* x_group = x + (n * g.C + group * Cg) * g.H * g.W;
        const float* dy_group = dy + (n * g.K + group * Kg) * PQ;
        for (std::int64_t p0 = 0; p0 < g.P; p0 += band_p) {
          const std::int64_t p1 = std::min(g.P, p0 + band_p), cols = (p1 - p0) * g.Q;
          const float* b = unfold_band(g, x_group, p0, p1, col);
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, blas_int(Kg), blas_int(crs),
                      blas_int(cols), 1.0f, dy_group + p0 * g.Q, blas_int(PQ), b, blas_int(cols),
                      beta, dw_group, blas_int(crs));
          beta = 1.0f;
        }
      }
    }
  }

  void backward_bias(Context&, const Conv2dGeometry& g, const float* dy, float* db) const override {
    const std::int64_t PQ = g.P * g.Q;
#pragma omp parallel for schedule(static)
    for (std::int64_t k = 0; k < g.K; ++k) {
      // Double accumulation: the sum runs over N*P*Q terms, often millions.
      double sum = 0.0;
      for (std::int64_t n = 0; n < g.N; ++n) {
        const float* row = dy + (n * g.K + k) * PQ;
        float partial = 0.0f;
        for (std::int64_t i = 0; i < PQ; ++i) partial += row[i];
        sum += partial;
      }
      db[k] = static_cast<float>(sum);
    }
  }

private:
  // A GEMM over one image of a small output (ResNet's 7x7 stage: 49
  // columns) runs at under half the speed of a wide one, so such images are
  // unfolded side by side into one GEMM of at least kWideColumns columns.
  static constexpr std::int64_t kWideColumns = 512;

  // Images per GEMM: 1 when one image is wide enough (or two do not fit the
  // workspace limit), else enough to reach kWideColumns.
  static std::int64_t images_per_gemm(const Context& ctx, const Conv2dGeometry& g) {
    const std::int64_t PQ = g.P * g.Q;
    if (PQ >= kWideColumns || g.N == 1) return 1;
    const std::int64_t wanted = std::min(g.N, (kWideColumns + PQ - 1) / PQ);
    const std::int64_t per_image = (g.c_per_group() * g.R * g.S + g.k_per_group()) * PQ *
                                   static_cast<std::int64_t>(sizeof(float));
    const auto limit = static_cast<std::int64_t>(ctx.options().workspace_limit_bytes);
    return std::min(wanted, limit / per_image);
  }

  // Y[k, (b, pq)] = W[k, crs] * col[crs, (b, pq)] for `images` images at a
  // time, then each image's rows are copied to their place in y.
  static void forward_batched(Context& ctx, const Conv2dGeometry& g, std::int64_t images,
                              const float* x, const float* w, float* y) {
    const std::int64_t Cg = g.c_per_group(), Kg = g.k_per_group(), crs = Cg * g.R * g.S;
    const std::int64_t PQ = g.P * g.Q;
    float* col = batched_workspace(ctx, g, images);
    float* out = col + crs * images * PQ;
    for (std::int64_t group = 0; group < g.groups; ++group)
      for (std::int64_t n0 = 0; n0 < g.N; n0 += images) {
        const std::int64_t count = std::min(images, g.N - n0), ld = count * PQ;
        for (std::int64_t b = 0; b < count; ++b)
          im2col(g, x + ((n0 + b) * g.C + group * Cg) * g.H * g.W, 0, g.P, col + b * PQ, ld);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, blas_int(Kg), blas_int(ld),
                    blas_int(crs), 1.0f, w + group * Kg * crs, blas_int(crs), col, blas_int(ld),
                    0.0f, out, blas_int(ld));
#pragma omp parallel for collapse(2) schedule(static)
        for (std::int64_t b = 0; b < count; ++b)
          for (std::int64_t k = 0; k < Kg; ++k)
            std::memcpy(y + ((n0 + b) * g.K + group * Kg + k) * PQ, out + k * ld + b * PQ,
                        PQ * sizeof(float));
      }
  }

  // col[crs, (b, pq)] = W^T[crs, k] * dY[k, (b, pq)], dY's rows gathered from
  // `images` images, then col2im per image.
  static void backward_data_batched(Context& ctx, const Conv2dGeometry& g, std::int64_t images,
                                    const float* dy, const float* w, float* dx) {
    const std::int64_t Cg = g.c_per_group(), Kg = g.k_per_group(), crs = Cg * g.R * g.S;
    const std::int64_t PQ = g.P * g.Q;
    float* col = batched_workspace(ctx, g, images);
    float* grad = col + crs * images * PQ;
    std::fill_n(dx, g.x_elements(), 0.0f);
    for (std::int64_t group = 0; group < g.groups; ++group)
      for (std::int64_t n0 = 0; n0 < g.N; n0 += images) {
        const std::int64_t count = std::min(images, g.N - n0), ld = count * PQ;
#pragma omp parallel for collapse(2) schedule(static)
        for (std::int64_t b = 0; b < count; ++b)
          for (std::int64_t k = 0; k < Kg; ++k)
            std::memcpy(grad + k * ld + b * PQ, dy + ((n0 + b) * g.K + group * Kg + k) * PQ,
                        PQ * sizeof(float));
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, blas_int(crs), blas_int(ld),
                    blas_int(Kg), 1.0f, w + group * Kg * crs, blas_int(crs), grad, blas_int(ld),
                    0.0f, col, blas_int(ld));
        for (std::int64_t b = 0; b < count; ++b)
          col2im_add(g, col + b * PQ, ld, 0, g.P, dx + ((n0 + b) * g.C + group * Cg) * g.H * g.W);
      }
  }

  static float* batched_workspace(Context& ctx, const Conv2dGeometry& g, std::int64_t images) {
    const auto floats = (g.c_per_group() * g.R * g.S + g.k_per_group()) * images * g.P * g.Q;
    return static_cast<float*>(
        ctx.impl().workspace(static_cast<std::size_t>(floats) * sizeof(float)));
  }

  // Output rows per band so that the col buffer fits the workspace limit.
  static std::int64_t band_rows(const Context& ctx, const Conv2dGeometry& g) {
    const std::int64_t row_bytes =
        g.c_per_group() * g.R * g.S * g.Q * static_cast<std::int64_t>(sizeof(float));
    const auto limit = static_cast<std::int64_t>(ctx.options().workspace_limit_bytes);
    return std::min(g.P, limit / row_bytes);
  }
  static float* workspace(Context& ctx, const Conv2dGeometry& g, std::int64_t band_p) {
    const auto bytes =
        static_cast<std::size_t>(g.c_per_group() * g.R * g.S * band_p * g.Q) * sizeof(float);
    return static_cast<float*>(ctx.impl().workspace(bytes));
  }
};

const Registrar<Conv2dEngine> registrar{std::make_unique<CpuConv2d>()};

}  // namespace
}  // namespace dlrt::detail
