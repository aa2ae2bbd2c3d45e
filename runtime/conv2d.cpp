// The public convolution entry points: validate everything, then dispatch.
#include <string>

#include "dlrt/conv.hpp"
#include "runtime/conv2d_engine.hpp"
#include "runtime/validate.hpp"

namespace dlrt {
namespace detail {
namespace {

// The span a filter of `taps` covers once dilated.
std::int64_t dilated_extent(std::int64_t taps, int dilation) { return (taps - 1) * dilation + 1; }

// The shape rule of conv.hpp for one dimension; the dilated filter must fit
// the padded input (checked by the caller).
std::int64_t output_extent(std::int64_t input, std::int64_t taps, int pad, int stride,
                           int dilation) {
  return (input + 2 * std::int64_t{pad} - dilated_extent(taps, dilation)) / stride + 1;
}

void check_params(std::string_view op, const Conv2dParams& p) {
  // The upper bounds keep every derived index inside int64 and far from it.
  constexpr int kMax = 1 << 16;
  auto in_range = [&](const char* name, int value, int lowest) {
    if (value < lowest || value > kMax)
      invalid_argument(op, name, value,
                       "must be in [" + std::to_string(lowest) + ", " + std::to_string(kMax) + "]");
  };
  in_range("params.pad_h", p.pad_h, 0);
  in_range("params.pad_w", p.pad_w, 0);
  in_range("params.stride_h", p.stride_h, 1);
  in_range("params.stride_w", p.stride_w, 1);
  in_range("params.dilation_h", p.dilation_h, 1);
  in_range("params.dilation_w", p.dilation_w, 1);
  in_range("params.groups", p.groups, 1);
}

Shape output_shape(std::string_view op, std::string_view x_name, const Shape& x,
                   std::string_view w_name, const Shape& w, const Conv2dParams& p) {
  if (x.rank() != 4) invalid_argument(op, x_name, x.to_string(), "must have rank 4 (N, C, H, W)");
  if (w.rank() != 4)
    invalid_argument(op, w_name, w.to_string(), "must have rank 4 (K, C/groups, R, S)");
  check_shape(op, x_name, x);
  check_shape(op, w_name, w);
  check_params(op, p);
  const std::int64_t N = x[0], C = x[1], H = x[2], W = x[3];
  const std::int64_t K = w[0], R = w[2], S = w[3];
  if (C % p.groups != 0)
    invalid_argument(op, "params.groups", p.groups,
                     "must divide the input channels C = " + std::to_string(C));
  if (K % p.groups != 0)
    invalid_argument(op, "params.groups", p.groups,
                     "must divide the output channels K = " + std::to_string(K));
  if (w[1] != C / p.groups)
    invalid_argument(op, w_name, w.to_string(),
                     "dimension 1 must be C/groups = " + std::to_string(C / p.groups));
  const std::int64_t span_h = dilated_extent(R, p.dilation_h),
                     span_w = dilated_extent(S, p.dilation_w);
  if (span_h > H + 2 * std::int64_t{p.pad_h})
    invalid_argument(op, w_name, w.to_string(),
                     "the dilated filter height " + std::to_string(span_h) +
                         " must fit in the padded input height " + std::to_string(H + 2 * p.pad_h));
  if (span_w > W + 2 * std::int64_t{p.pad_w})
    invalid_argument(op, w_name, w.to_string(),
                     "the dilated filter width " + std::to_string(span_w) +
                         " must fit in the padded input width " + std::to_string(W + 2 * p.pad_w));
  const std::int64_t P = output_extent(H, R, p.pad_h, p.stride_h, p.dilation_h);
  const std::int64_t Q = output_extent(W, S, p.pad_w, p.stride_w, p.dilation_w);
  Shape y{N, K, P, Q};
  check_shape(op, "y (derived output shape)", y);
  return y;
}

template <class Run>
Engine dispatch(const char* op, Context& ctx, Engine engine, Conv2dOp kind, const Conv2dGeometry& g,
                Run&& run) {
  const Conv2dEngine& impl = select_engine<Conv2dEngine>(
      op, ctx.device(), engine, [&](const Conv2dEngine& e) { return e.supports(ctx, kind, g); });
  run(impl);
  return impl.engine();
}

}  // namespace

Conv2dGeometry conv2d_geometry(const Shape& x, const Shape& w, const Conv2dParams& p) {
  Conv2dGeometry g;
  g.N = x[0], g.C = x[1], g.H = x[2], g.W = x[3];
  g.K = w[0], g.R = w[2], g.S = w[3];
  g.pad_h = p.pad_h, g.pad_w = p.pad_w;
  g.stride_h = p.stride_h, g.stride_w = p.stride_w;
  g.dilation_h = p.dilation_h, g.dilation_w = p.dilation_w;
  g.groups = p.groups;
  g.P = output_extent(g.H, g.R, g.pad_h, g.stride_h, g.dilation_h);
  g.Q = output_extent(g.W, g.S, g.pad_w, g.stride_w, g.dilation_w);
  return g;
}

}  // namespace detail

using namespace detail;

const char* to_string(Conv2dOp op) noexcept {
  switch (op) {
    case Conv2dOp::Forward:
      return "conv2d_forward";
    case Conv2dOp::BackwardData:
      return "conv2d_backward_data";
    case Conv2dOp::BackwardFilter:
      return "conv2d_backward_filter";
    case Conv2dOp::BackwardBias:
      return "conv2d_backward_bias";
  }
  return "unknown";
}

Shape conv2d_output_shape(const Shape& x, const Shape& w, const Conv2dParams& params) {
  return output_shape("conv2d_output_shape", "x", x, "w", w, params);
}

Engine conv2d_forward(Context& ctx, const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y,
                      const Conv2dParams& params, Engine engine) {
  constexpr const char* op = "conv2d_forward";
  check_engine_value(op, engine);
  const Device device = ctx.device();
  check_tensor(op, "x", x, 4, device);
  check_tensor(op, "w", w, 4, device);
  const Shape y_shape = output_shape(op, "x", x.shape(), "w", w.shape(), params);
  if (bias != nullptr) {
    check_tensor(op, "bias", *bias, 1, device);
    check_shape_is(op, "bias", *bias, Shape{w.size(0)}, "one value per output channel K");
  }
  check_tensor(op, "y", y, 4, device);
  check_shape_is(op, "y", y, y_shape, "conv2d_output_shape(x, w, params)");
  check_no_overlap(op, "y", y, "x", x);
  check_no_overlap(op, "y", y, "w", w);
  if (bias != nullptr) check_no_overlap(op, "y", y, "bias", *bias);

  const Conv2dGeometry g = conv2d_geometry(x.shape(), w.shape(), params);
  return dispatch(op, ctx, engine, Conv2dOp::Forward, g, [&](const Conv2dEngine& impl) {
    impl.forward(ctx, g, x.data(), w.data(), bias ? bias->data() : nullptr, y.data());
  });
}

Engine conv2d_backward_data(Context& ctx, const Tensor& dy, const Tensor& w, Tensor& dx,
                            const Conv2dParams& params, Engine engine) {
  constexpr const char* op = "conv2d_backward_data";
  check_engine_value(op, engine);
  const Device device = ctx.device();
  check_tensor(op, "dy", dy, 4, device);
  check_tensor(op, "w", w, 4, device);
  check_tensor(op, "dx", dx, 4, device);
  // dx fixes the input size: with stride > 1 several input sizes give one dy.
  const Shape y_shape = output_shape(op, "dx", dx.shape(), "w", w.shape(), params);
  check_shape_is(op, "dy", dy, y_shape, "conv2d_output_shape(dx, w, params)");
  check_no_overlap(op, "dx", dx, "dy", dy);
  check_no_overlap(op, "dx", dx, "w", w);

  const Conv2dGeometry g = conv2d_geometry(dx.shape(), w.shape(), params);
  return dispatch(op, ctx, engine, Conv2dOp::BackwardData, g, [&](const Conv2dEngine& impl) {
    impl.backward_data(ctx, g, dy.data(), w.data(), dx.data());
  });
}

Engine conv2d_backward_filter(Context& ctx, const Tensor& x, const Tensor& dy, Tensor& dw,
                              const Conv2dParams& params, Engine engine) {
  constexpr const char* op = "conv2d_backward_filter";
  check_engine_value(op, engine);
  const Device device = ctx.device();
  check_tensor(op, "x", x, 4, device);
  check_tensor(op, "dy", dy, 4, device);
  check_tensor(op, "dw", dw, 4, device);
  const Shape y_shape = output_shape(op, "x", x.shape(), "dw", dw.shape(), params);
  check_shape_is(op, "dy", dy, y_shape, "conv2d_output_shape(x, dw, params)");
  check_no_overlap(op, "dw", dw, "x", x);
  check_no_overlap(op, "dw", dw, "dy", dy);

  const Conv2dGeometry g = conv2d_geometry(x.shape(), dw.shape(), params);
  return dispatch(op, ctx, engine, Conv2dOp::BackwardFilter, g, [&](const Conv2dEngine& impl) {
    impl.backward_filter(ctx, g, x.data(), dy.data(), dw.data());
  });
}

Engine conv2d_backward_bias(Context& ctx, const Tensor& dy, Tensor& db, Engine engine) {
  constexpr const char* op = "conv2d_backward_bias";
  check_engine_value(op, engine);
  const Device device = ctx.device();
  check_tensor(op, "dy", dy, 4, device);
  check_tensor(op, "db", db, 1, device);
  check_shape_is(op, "db", db, Shape{dy.size(1)}, "one value per channel of dy");
  check_no_overlap(op, "db", db, "dy", dy);

  Conv2dGeometry g;
  g.N = dy.size(0), g.K = dy.size(1), g.P = dy.size(2), g.Q = dy.size(3);
  return dispatch(op, ctx, engine, Conv2dOp::BackwardBias, g, [&](const Conv2dEngine& impl) {
    impl.backward_bias(ctx, g, dy.data(), db.data());
  });
}

EngineQuery conv2d_query(const Context& ctx, Conv2dOp op, const Shape& x, const Shape& w,
                         const Conv2dParams& params, Engine engine) {
  check_engine_value("conv2d_query", engine);
  output_shape("conv2d_query", "x", x, "w", w, params);
  const Conv2dGeometry g = conv2d_geometry(x, w, params);
  return query_engine<Conv2dEngine>(ctx.device(), engine,
                                    [&](const Conv2dEngine& e) { return e.supports(ctx, op, g); });
}

}  // namespace dlrt
