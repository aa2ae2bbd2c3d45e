// The dlrt side of the safetensors interop test (safetensors_interop.py):
//   safetensors_peer write PATH   writes the known tensors below
//   safetensors_peer check PATH   reads a file Python wrote and checks it
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "dlrt/dlrt.hpp"

namespace {

// The values both sides agree on: element i of "conv.weight" is 0.25 * i - 3,
// of "lstm.weight_ih_l0_reverse" is 1 / (i + 1), of "steps" (i32) is i * i - 7.
std::vector<dlrt::NamedTensor> known_tensors() {
  std::vector<float> conv(2 * 3 * 3 * 3), lstm(8 * 5);
  for (std::size_t i = 0; i < conv.size(); ++i) conv[i] = 0.25f * static_cast<float>(i) - 3.0f;
  for (std::size_t i = 0; i < lstm.size(); ++i) lstm[i] = 1.0f / static_cast<float>(i + 1);
  dlrt::Tensor steps({6}, dlrt::Device::cpu(), dlrt::DType::I32);
  for (int i = 0; i < 6; ++i) steps.data_i32()[i] = i * i - 7;
  return {{"conv.weight", dlrt::Tensor::from_vector({2, 3, 3, 3}, conv)},
          {"lstm.weight_ih_l0_reverse", dlrt::Tensor::from_vector({8, 5}, lstm)},
          {"steps", steps}};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3 || (std::strcmp(argv[1], "write") != 0 && std::strcmp(argv[1], "check") != 0)) {
    std::fprintf(stderr, "usage: safetensors_peer write|check PATH\n");
    return 2;
  }
  try {
    if (std::strcmp(argv[1], "write") == 0) {
      dlrt::save_safetensors(argv[2], known_tensors(), {{"written_by", "dlrt"}});
      return 0;
    }
    const dlrt::SafetensorsFile file = dlrt::load_safetensors(argv[2]);
    if (file.metadata.count("written_by") == 0 || file.metadata.at("written_by") != "python") {
      std::fprintf(stderr, "metadata written_by=python missing\n");
      return 1;
    }
    for (const dlrt::NamedTensor& want : known_tensors()) {
      const dlrt::Tensor& got = file.at(want.name);
      if (!(got.shape() == want.tensor.shape()) || got.dtype() != want.tensor.dtype()) {
        std::fprintf(stderr, "%s: shape %s, want %s\n", want.name.c_str(),
                     got.shape().to_string().c_str(), want.tensor.shape().to_string().c_str());
        return 1;
      }
      if (std::memcmp(got.data(), want.tensor.data(), want.tensor.bytes()) != 0) {
        std::fprintf(stderr, "%s: values differ\n", want.name.c_str());
        return 1;
      }
    }
    std::printf("dlrt read the file Python wrote: %zu tensors match\n", file.tensors.size());
    return 0;
  } catch (const dlrt::Error& e) {
    std::fprintf(stderr, "safetensors_peer: %s\n", e.what());
    return 1;
  }
}
