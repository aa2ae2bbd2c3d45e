// The interface every pooling engine implements. Pointers are on the
// engine's device; shapes and parameters have been validated, outputs do not
// overlap inputs, and every output element must be written (tests poison
// outputs to prove it).
//
// Shared contract, so that engines agree bitwise on max pooling:
//  - the argmax of a window is its first maximum in row-major order, or its
//    first NaN;
//  - max backward adds, in float and starting from 0, the gradients of the
//    outputs that chose an input element, in row-major output order;
//  - an index that does not point into its own window contributes nothing
//    (never an out-of-bounds write).
#pragma once

#include <cstdint>

#include "runtime/pool2d_geometry.hpp"
#include "runtime/registry.hpp"

namespace dlrt::detail {

class Pool2dEngine : public EngineImpl {
public:
  virtual Support supports(const Context& ctx, Pool2dOp op, const Pool2dGeometry& g,
                           Pool2dSavedKind saved) const = 0;

  // indices: non-null exactly when the mode is Max and the caller asked for them.
  virtual void forward(Context& ctx, const Pool2dGeometry& g, const float* x, float* y,
                       std::int32_t* indices) const = 0;

  // Max: indices, or x and y, or all three are non-null (engines prefer the
  // indices). Averages: all three are null.
  virtual void backward(Context& ctx, const Pool2dGeometry& g, const float* dy, float* dx,
                        const std::int32_t* indices, const float* x, const float* y) const = 0;
};

}  // namespace dlrt::detail
