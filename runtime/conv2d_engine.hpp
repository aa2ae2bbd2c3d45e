// The interface every convolution engine implements. Pointers are on the
// engine's device; shapes and parameters have been validated, outputs do not
// overlap inputs, and every output element must be written (callers poison
// outputs in tests to prove it).
#pragma once

#include "runtime/conv2d_geometry.hpp"
#include "runtime/registry.hpp"

namespace dlrt::detail {

class Conv2dEngine : public EngineImpl {
public:
  virtual Support supports(const Context& ctx, Conv2dOp op, const Conv2dGeometry& g) const = 0;

  virtual void forward(Context& ctx, const Conv2dGeometry& g, const float* x, const float* w,
                       const float* bias, float* y) const = 0;
  virtual void backward_data(Context& ctx, const Conv2dGeometry& g, const float* dy, const float* w,
                             float* dx) const = 0;
  virtual void backward_filter(Context& ctx, const Conv2dGeometry& g, const float* x,
                               const float* dy, float* dw) const = 0;
  // Only N, K, P, Q of g are meaningful here.
  virtual void backward_bias(Context& ctx, const Conv2dGeometry& g, const float* dy,
                             float* db) const = 0;
};

}  // namespace dlrt::detail
