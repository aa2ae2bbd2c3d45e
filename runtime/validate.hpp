// Input validation shared by the public entry points. Every failure raises
// Error(InvalidArgument) as "<op>: argument '<name>' = <value>: <rule>", so the
// message names the argument, the value and the rule.
#pragma once

#include <cstdint>
#include <sstream>
#include <string>
#include <string_view>

#include "dlrt/engine.hpp"
#include "dlrt/error.hpp"
#include "dlrt/tensor.hpp"

namespace dlrt::detail {

template <class Value>
[[noreturn]] void invalid_argument(std::string_view op, std::string_view name, const Value& value,
                                   std::string_view rule) {
  std::ostringstream out;
  out << op << ": argument '" << name << "' = " << value << ": " << rule;
  throw Error(Error::Kind::InvalidArgument, out.str());
}

// The largest element count a tensor may have: its byte size must fit in
// int64 with room to spare, and every engine indexes with int64.
inline constexpr std::int64_t kMaxElements = std::int64_t{1} << 40;

// Every extent >= 1 and the product <= kMaxElements, checked without overflow.
void check_shape(std::string_view op, std::string_view name, const Shape& shape);

// t is defined, has `rank` and `dtype`, lives on `device`, and its shape passes check_shape.
void check_tensor(std::string_view op, std::string_view name, const Tensor& t, int rank,
                  Device device, DType dtype = DType::F32);

void check_shape_is(std::string_view op, std::string_view name, const Tensor& t,
                    const Shape& expected, std::string_view why);

// Inputs and outputs may not share memory: engines read inputs while they
// write outputs.
void check_no_overlap(std::string_view op, std::string_view output_name, const Tensor& output,
                      std::string_view input_name, const Tensor& input);

}  // namespace dlrt::detail
