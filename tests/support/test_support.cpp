#include "support/test_support.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>

namespace dlrt::test {

std::vector<float> random_values(std::int64_t count, std::uint64_t seed, float lo, float hi) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> values(static_cast<std::size_t>(count));
  for (float& v : values) v = dist(rng);
  return values;
}

Tensor random_tensor(const Shape& shape, std::uint64_t seed, Device device) {
  return Tensor::from_vector(shape, random_values(shape.numel(), seed), device);
}

Tensor poisoned(const Shape& shape, Device device) {
  return Tensor::full(shape, std::numeric_limits<float>::quiet_NaN(), device);
}

std::vector<Engine> engines_of(OpFamily family) { return engines_of(family, false); }

std::vector<Engine> engines_of(OpFamily family, bool without_reference) {
  std::vector<Engine> engines;
  if (!without_reference) engines.push_back(Engine::Reference);
  for (Engine e : registered_engines(family))
    if (e != Engine::Reference) engines.push_back(e);
  return engines;
}

std::string engine_name(const ::testing::TestParamInfo<Engine>& info) {
  return to_string(info.param);
}

Device device_for(Engine engine) {
  return engine_device(engine) == Device::Kind::Cuda ? Device::cuda(0) : Device::cpu();
}

std::string engine_unavailable(Engine engine) {
  if (device_for(engine).is_cpu()) {
    // A CPU engine with an optional dependency (Onednn) may be left out of the build.
    for (OpFamily family : {OpFamily::Conv2d, OpFamily::Pool2d, OpFamily::Rnn, OpFamily::Linear,
                            OpFamily::Pointwise, OpFamily::Loss, OpFamily::Optimizer})
      if (engine_built(engine, family)) return {};
    return std::string("engine ") + to_string(engine) +
           " is not in this build of libdlrt (its library was not found, or it was switched off)";
  }
  if (!built_with_cuda()) return "libdlrt was built without CUDA (DLRT_WITH_CUDA=OFF)";
  if (!cuda_available()) return "no CUDA device on this machine: " + cuda_unavailable_reason();
  return {};
}

::testing::AssertionResult all_close(const std::vector<float>& got, const std::vector<float>& want,
                                     std::int64_t accumulation_length, double rtol) {
  if (got.size() != want.size())
    return ::testing::AssertionFailure() << "size " << got.size() << " != " << want.size();
  double scale = 0.0;
  for (float v : want) scale = std::max(scale, double(std::fabs(v)));
  const double atol = 4.0 * std::numeric_limits<float>::epsilon() *
                      std::sqrt(double(std::max<std::int64_t>(accumulation_length, 1))) *
                      std::max(scale, 1.0);
  std::size_t worst = 0;
  double worst_excess = -1.0;
  std::size_t bad = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double tol = atol + rtol * std::fabs(want[i]);
    const double err = std::fabs(double(got[i]) - double(want[i]));
    const bool ok = err <= tol;  // false for NaN
    if (!ok) {
      ++bad;
      const double excess = std::isnan(err) ? std::numeric_limits<double>::infinity() : err / tol;
      if (excess > worst_excess) worst_excess = excess, worst = i;
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << bad << " of " << got.size() << " elements differ; worst at index " << worst << ": got "
         << got[worst] << ", want " << want[worst] << " (atol " << atol << ")";
}

::testing::AssertionResult throws_error(const std::function<void()>& call, Error::Kind kind,
                                        const std::vector<std::string>& needles) {
  try {
    call();
  } catch (const Error& e) {
    if (e.kind() != kind)
      return ::testing::AssertionFailure()
             << "threw kind '" << to_string(e.kind()) << "' instead of '" << to_string(kind)
             << "': " << e.what();
    const std::string message = e.what();
    for (const std::string& needle : needles)
      if (message.find(needle) == std::string::npos)
        return ::testing::AssertionFailure() << "message lacks \"" << needle << "\": " << message;
    return ::testing::AssertionSuccess();
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "threw a non-dlrt exception: " << e.what();
  }
  return ::testing::AssertionFailure() << "did not throw";
}

bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
  // Empty vectors may hold null data, which memcmp may not see even for 0 bytes.
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

}  // namespace dlrt::test
