// Checkpoints as safetensors files (the format of Hugging Face's
// `safetensors` package, read by PyTorch, JAX and numpy alike): an 8-byte
// little-endian header length, a JSON header naming each tensor's dtype,
// shape and byte range, then the raw little-endian data. Names are kept as
// given, so a module's parameters saved as PyTorch names them
// ("lstm.weight_ih_l0_reverse") load into PyTorch's state_dict one to one.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "dlrt/export.hpp"
#include "dlrt/tensor.hpp"

namespace dlrt {

struct NamedTensor {
  std::string name;
  Tensor tensor;
};

// Writes `tensors` (f32 as "F32", i32 as "I32", on any device: copied to the
// host) and the string metadata to `path`, replacing it. Names must be
// non-empty, unique and not "__metadata__". Throws dlrt::Error naming the
// tensor or the file; a failed write leaves no partial file at `path`.
DLRT_EXPORT void save_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                                  const std::map<std::string, std::string>& metadata = {});

struct DLRT_EXPORT SafetensorsFile {
  std::vector<NamedTensor> tensors;  // in the order of their data in the file; CPU tensors
  std::map<std::string, std::string> metadata;

  // The tensor called `name`; throws dlrt::Error when there is none.
  const Tensor& at(const std::string& name) const;
};

// Reads a safetensors file. F32 and I32 tensors are supported; any other
// dtype, a truncated file, a header that is not the format's JSON, a shape
// that does not match its byte range, byte ranges out of the data, overlapping
// or leaving gaps, and duplicate names raise dlrt::Error naming the problem.
DLRT_EXPORT SafetensorsFile load_safetensors(const std::string& path);

}  // namespace dlrt
