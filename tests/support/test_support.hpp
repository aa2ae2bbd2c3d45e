// Shared helpers for dlrt's tests: random data, poisoned outputs, tolerant
// comparison against the reference, and engine/device plumbing.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "dlrt/dlrt.hpp"

namespace dlrt::test {

// Uniform values in [lo, hi), reproducible from the seed.
std::vector<float> random_values(std::int64_t count, std::uint64_t seed, float lo = -1.0f,
                                 float hi = 1.0f);
Tensor random_tensor(const Shape& shape, std::uint64_t seed, Device device = Device::cpu());
// Filled with NaN, so that an element an engine forgets to write fails the comparison.
Tensor poisoned(const Shape& shape, Device device = Device::cpu());

// The engines of `family` from the library's table (Reference first when
// kept, then Auto's order), for parameterised tests; without_reference drops
// the oracle, for tables that compare every engine against it.
std::vector<Engine> engines_of(OpFamily family);
std::vector<Engine> engines_of(OpFamily family, bool without_reference);
std::string engine_name(const ::testing::TestParamInfo<Engine>& info);

// The device an engine's tensors live on.
Device device_for(Engine engine);
// Empty when `engine` can run on this machine, otherwise why not (no GPU,
// built without CUDA). GPU tests skip with this reason.
std::string engine_unavailable(Engine engine);

// Every element within atol + rtol*|want|, where atol scales with the
// magnitude of the reference and the accumulation length (float rounding
// grows as sqrt(length) for random-sign sums). Reports the worst element.
::testing::AssertionResult all_close(const std::vector<float>& got, const std::vector<float>& want,
                                     std::int64_t accumulation_length, double rtol = 1e-5);

// The call throws dlrt::Error of `kind` whose message contains every string in `needles`.
::testing::AssertionResult throws_error(const std::function<void()>& call, Error::Kind kind,
                                        const std::vector<std::string>& needles);

// Bit patterns equal (NaN-safe), for the "output untouched" checks.
bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b);

}  // namespace dlrt::test

// Skips the current test, with the reason, when `engine` cannot run here.
#define DLRT_SKIP_UNLESS_ENGINE_RUNS(engine)                          \
  do {                                                                \
    std::string dlrt_why_ = ::dlrt::test::engine_unavailable(engine); \
    if (!dlrt_why_.empty()) GTEST_SKIP() << dlrt_why_;                \
  } while (0)
