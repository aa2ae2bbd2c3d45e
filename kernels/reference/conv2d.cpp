// The Reference convolution engine: the definition as loops (conv2d.hpp),
// instantiated for float. Every other engine is tested against it, so it
// stays obvious rather than fast.
#include "kernels/reference/conv2d.hpp"

#include "runtime/conv2d_engine.hpp"

namespace dlrt::detail {
namespace {

class ReferenceConv2d final : public Conv2dEngine {
public:
  Engine engine() const override { return Engine::Reference; }
  Device::Kind device_kind() const override { return Device::Kind::Cpu; }

  Support supports(const Context&, Conv2dOp, const Conv2dGeometry&) const override {
    return Support::yes();
  }
  void forward(Context&, const Conv2dGeometry& g, const float* x, const float* w, const float* bias,
               float* y) const override {
    reference::conv2d_forward(g, x, w, bias, y);
  }
  void backward_data(Context&, const Conv2dGeometry& g, const float* dy, const float* w,
                     float* dx) const override {
    reference::conv2d_backward_data(g, dy, w, dx);
  }
  void backward_filter(Context&, const Conv2dGeometry& g, const float* x, const float* dy,
                       float* dw) const override {
    reference::conv2d_backward_filter(g, x, dy, dw);
  }
  void backward_bias(Context&, const Conv2dGeometry& g, const float* dy, float* db) const override {
    reference::conv2d_backward_bias(g, dy, db);
  }
};

const Registrar<Conv2dEngine> registrar{std::make_unique<ReferenceConv2d>()};

}  // namespace
}  // namespace dlrt::detail
