// The one table of engine facts: names, devices, and for each op family the
// engines that implement it in the order Engine::Auto tries them. Adding an
// engine means a row here, its position in the families it implements, and
// its own files; nothing else lists engines.
#include "runtime/engine_table.hpp"

#include <algorithm>
#include <cctype>
#include <mutex>
#include <set>
#include <string>
#include <utility>

#include "dlrt/error.hpp"
#include "runtime/gpu.hpp"
#include "runtime/validate.hpp"

namespace dlrt {
namespace detail {
namespace {

struct EngineFacts {
  Engine engine;
  const char* name;
  Device::Kind device;
};

constexpr EngineFacts kEngines[] = {
    {Engine::Reference, "reference", Device::Kind::Cpu},
    {Engine::Cpu, "cpu", Device::Kind::Cpu},
    {Engine::Cuda, "cuda", Device::Kind::Cuda},
    {Engine::Cudnn, "cudnn", Device::Kind::Cuda},
    {Engine::Onednn, "onednn", Device::Kind::Cpu},
};

// What is measured against what: dlrt's CUDA kernels against cuDNN, its CPU
// engine against the oracle.
constexpr EngineComparison kComparisons[] = {
    {Engine::Cuda, Engine::Cudnn},
    {Engine::Cpu, Engine::Reference},
    {Engine::Cpu, Engine::Onednn},
};

// Auto's order, best first; an engine appears in a family's list exactly
// when it implements the family. Convolution: cuDNN leads on the GPU, being
// faster on most shapes, and dlrt's kernels take what it declines. Pooling:
// dlrt's kernels lead, since they honour every mode, argmax indices and the
// first-maximum tie rule in backward, which cuDNN declines.
// On the CPU, oneDNN comes before Cpu and passes the problems its measured
// rule gives to Cpu (kernels/onednn/conv2d.cpp, pool2d.cpp): Auto gets the
// faster. For pooling it runs the averages only (max declined: NaN rule).
constexpr Engine kConv2dOrder[] = {Engine::Cudnn, Engine::Cuda, Engine::Onednn, Engine::Cpu,
                                   Engine::Reference};
constexpr Engine kPool2dOrder[] = {Engine::Cuda, Engine::Cudnn, Engine::Onednn, Engine::Cpu,
                                   Engine::Reference};
// Recurrent networks: dlrt's cell kernels played by the scheduler lead on
// the GPU (streams, wavefront, CUDA graphs), cuDNN's whole-sequence calls
// take what they decline. On the CPU, oneDNN's whole-sequence primitives
// come before Cpu and pass on what their measured rule gives to Cpu
// (kernels/onednn/rnn.cpp).
constexpr Engine kRnnOrder[] = {Engine::Cuda, Engine::Cudnn, Engine::Onednn, Engine::Cpu,
                                Engine::Reference};
// GEMM-shaped and element-wise ops: no cuDNN engine for the GEMMs (Cuda
// calls cuBLAS); cuDNN has activations, dlrt's fused kernels lead.
constexpr Engine kLinearOrder[] = {Engine::Cuda, Engine::Cpu, Engine::Reference};
constexpr Engine kPointwiseOrder[] = {Engine::Cuda, Engine::Cudnn, Engine::Cpu, Engine::Reference};
constexpr Engine kLossOrder[] = {Engine::Cuda, Engine::Cpu, Engine::Reference};
// Parameter updates are float element loops with one formula per optimizer:
// no oracle beyond the closed forms the tests check.
constexpr Engine kOptimizerOrder[] = {Engine::Cuda, Engine::Cpu};

struct FamilyFacts {
  OpFamily family;
  const char* name;
  std::span<const Engine> order;
};

constexpr FamilyFacts kFamilies[] = {
    {OpFamily::Conv2d, "conv2d", kConv2dOrder},
    {OpFamily::Pool2d, "pool2d", kPool2dOrder},
    {OpFamily::Rnn, "rnn", kRnnOrder},
    {OpFamily::Linear, "linear", kLinearOrder},
    {OpFamily::Pointwise, "pointwise", kPointwiseOrder},
    {OpFamily::Loss, "loss", kLossOrder},
    {OpFamily::Optimizer, "optimizer", kOptimizerOrder},
};

const EngineFacts* facts(Engine engine) {
  for (const EngineFacts& f : kEngines)
    if (f.engine == engine) return &f;
  return nullptr;
}

const FamilyFacts* facts(OpFamily family) {
  for (const FamilyFacts& f : kFamilies)
    if (f.family == family) return &f;
  return nullptr;
}

// (family, engine) pairs that this build's translation units registered.
struct BuiltSet {
  std::mutex mutex;
  std::set<std::pair<int, int>> pairs;
};
BuiltSet& built_set() {
  static BuiltSet* set = new BuiltSet();  // registrars run during static initialisation
  return *set;
}

std::string engine_names() {
  std::string names = "auto";
  for (const EngineFacts& f : kEngines) names += std::string(", ") + f.name;
  return names;
}

}  // namespace

void note_built(OpFamily family, Engine engine) {
  BuiltSet& set = built_set();
  std::lock_guard lock(set.mutex);
  set.pairs.emplace(static_cast<int>(family), static_cast<int>(engine));
}

std::span<const Engine> auto_order(OpFamily family) {
  const FamilyFacts* f = facts(family);
  return f ? f->order : std::span<const Engine>();
}

bool is_known_engine(Engine engine) { return facts(engine) != nullptr; }

void check_engine_value(std::string_view op, Engine engine) {
  if (engine != Engine::Auto && !is_known_engine(engine))
    invalid_argument(op, "engine", static_cast<int>(engine),
                     "must be one of the dlrt::Engine enumerators (" + engine_names() + ")");
}

std::string engine_unavailable_reason(OpFamily family, Engine engine, Device device) {
  const EngineFacts* f = facts(engine);
  const FamilyFacts* family_facts = facts(family);
  if (f == nullptr || family_facts == nullptr)
    return "engine " + std::to_string(static_cast<int>(engine)) + " or family " +
           std::to_string(static_cast<int>(family)) + " is not known";
  if (std::find(family_facts->order.begin(), family_facts->order.end(), engine) ==
      family_facts->order.end())
    return std::string("engine ") + f->name + " does not implement " + family_facts->name;
  if (!engine_built(engine, family)) {
    if (f->device == Device::Kind::Cuda && !gpu::built())
      return std::string("engine ") + f->name +
             " is not in this build of libdlrt (configured with DLRT_WITH_CUDA=OFF)";
    return std::string("engine ") + f->name + " is not in this build of libdlrt";
  }
  if (f->device != device.kind) {
    std::string why = std::string("engine ") + f->name + " runs on " +
                      (f->device == Device::Kind::Cuda ? "CUDA devices" : "the CPU") +
                      " but the tensors are on " + to_string(device);
    if (f->device == Device::Kind::Cuda && !cuda_available())
      why += ", and this machine has no usable GPU (" + cuda_unavailable_reason() + ")";
    return why;
  }
  return {};
}

}  // namespace detail

const char* to_string(Engine engine) noexcept {
  if (engine == Engine::Auto) return "auto";
  const detail::EngineFacts* f = detail::facts(engine);
  return f ? f->name : "unknown";
}

const char* to_string(OpFamily family) noexcept {
  const detail::FamilyFacts* f = detail::facts(family);
  return f ? f->name : "unknown";
}

Engine engine_from_string(std::string_view name) {
  std::string lower(name);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (lower == "auto") return Engine::Auto;
  for (const detail::EngineFacts& f : detail::kEngines)
    if (lower == f.name) return f.engine;
  std::string quoted(1, '"');  // built in steps: GCC 12 warns falsely on "\"" + s + "\""
  quoted.append(name).push_back('"');
  detail::invalid_argument("engine_from_string", "name", quoted,
                           "must be one of " + detail::engine_names());
}

std::vector<Engine> known_engines() {
  std::vector<Engine> engines;
  for (const detail::EngineFacts& f : detail::kEngines) engines.push_back(f.engine);
  return engines;
}

std::vector<Engine> registered_engines(OpFamily family) {
  const detail::FamilyFacts* f = detail::facts(family);
  if (f == nullptr)
    detail::invalid_argument("registered_engines", "family", static_cast<int>(family),
                             "must be one of the dlrt::OpFamily enumerators");
  return {f->order.begin(), f->order.end()};
}

std::vector<EngineComparison> engine_comparisons() {
  return {std::begin(detail::kComparisons), std::end(detail::kComparisons)};
}

Device::Kind engine_device(Engine engine) noexcept {
  const detail::EngineFacts* f = detail::facts(engine);
  return f ? f->device : Device::Kind::Cpu;
}

bool engine_built(Engine engine, OpFamily family) noexcept {
  detail::BuiltSet& set = detail::built_set();
  std::lock_guard lock(set.mutex);
  return set.pairs.count({static_cast<int>(family), static_cast<int>(engine)}) != 0;
}

}  // namespace dlrt
