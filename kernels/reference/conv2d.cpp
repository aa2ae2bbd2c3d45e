// The Reference convolution engine: the definition as loops (conv2d.hpp),
// instantiated for float. Every other engine is tested against it, so it
// stays obvious rather than fast; its plan is the geometry and nothing else.
#include "kernels/reference/conv2d.hpp"

#include "runtime/conv2d_engine.hpp"

namespace dlrt::detail {
namespace {

class ReferenceConv2d final : public Conv2dEngine {
public:
  Engine engine() const override { return Engine::Reference; }

  Planned<Conv2dKernel> plan(Context&, const Conv2dProblem& p) const override {
    if (p.variant != 0) return Planned<Conv2dKernel>::no(no_kernel_variants(engine(), p.variant));
    return {make_conv2d_kernel(engine(), 0, "reference loops, double accumulation",
                               [g = p.g, op = p.op](Context&, const Conv2dArgs& a, void*) {
                                 switch (op) {
                                   case Conv2dOp::Forward:
                                     return reference::conv2d_forward(g, a.x, a.w, a.bias, a.y);
                                   case Conv2dOp::BackwardData:
                                     return reference::conv2d_backward_data(g, a.dy, a.w, a.dx);
                                   case Conv2dOp::BackwardFilter:
                                     return reference::conv2d_backward_filter(g, a.x, a.dy, a.dw);
                                   case Conv2dOp::BackwardBias:
                                     return reference::conv2d_backward_bias(g, a.dy, a.db);
                                 }
                               }),
            {}};
  }
};

const Registrar<Conv2dEngine> registrar{std::make_unique<ReferenceConv2d>()};

}  // namespace
}  // namespace dlrt::detail
