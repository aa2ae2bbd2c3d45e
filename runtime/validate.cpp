#include "runtime/validate.hpp"

#include "runtime/device_check.hpp"

namespace dlrt::detail {

void check_shape(std::string_view op, std::string_view name, const Shape& shape) {
  std::int64_t count = 1;
  for (int i = 0; i < shape.rank(); ++i) {
    std::int64_t extent = shape[i];
    if (extent < 1)
      invalid_argument(op, name, shape.to_string(),
                       "every extent must be >= 1 (dimension " + std::to_string(i) + " is " +
                           std::to_string(extent) + ")");
    if (count > kMaxElements / extent)
      invalid_argument(op, name, shape.to_string(),
                       "element count must be <= 2^40 (it overflows the index range)");
    count *= extent;
  }
}

void check_tensor(std::string_view op, std::string_view name, const Tensor& t, int rank,
                  Device device, DType dtype) {
  if (!t.defined()) invalid_argument(op, name, "undefined tensor", "must be a defined tensor");
  if (t.dtype() != dtype)
    invalid_argument(op, std::string(name) + ".dtype", to_string(t.dtype()),
                     std::string("must be ") + to_string(dtype));
  if (t.rank() != rank)
    invalid_argument(
        op, name, t.shape().to_string(),
        "must have rank " + std::to_string(rank) + ", not " + std::to_string(t.rank()));
  check_shape(op, name, t.shape());
  if (t.device() != device)
    invalid_argument(op, std::string(name) + ".device", to_string(t.device()),
                     "must be the context's device " + to_string(device));
}

void check_shape_is(std::string_view op, std::string_view name, const Tensor& t,
                    const Shape& expected, std::string_view why) {
  if (!(t.shape() == expected))
    invalid_argument(op, name, t.shape().to_string(),
                     "must be " + expected.to_string() + " (" + std::string(why) + ")");
}

void check_no_overlap(std::string_view op, std::string_view output_name, const Tensor& output,
                      std::string_view input_name, const Tensor& input) {
  if (output.overlaps(input))
    invalid_argument(op, output_name, "memory shared with '" + std::string(input_name) + "'",
                     "an output may not overlap an input");
}

}  // namespace dlrt::detail
