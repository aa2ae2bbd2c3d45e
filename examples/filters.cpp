// The lecture's filter demo: the identity, three edge detectors, sharpen and
// box blur applied to a photograph with dlrt::conv2d_forward on the best
// engine of this machine. Each filter runs as a depthwise convolution
// (groups = channels), padding 1, so colour photographs keep their colours
// and every output has the input's size.
//
//   dlrt_filters [image.png] [--out DIR] [--engine auto|reference|cpu|cuda|cudnn] [--repeat N]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "dlrt/dlrt.hpp"
#include "image_io.hpp"

namespace {

struct Filter {
  const char* name;
  float kernel[9];
  float scale;
  bool magnitude;  // edge responses are signed: show |response|
};

// The kernels of the lecture's "Convolutional Filters" slides.
const Filter kFilters[] = {
    {"identity", {0, 0, 0, 0, 1, 0, 0, 0, 0}, 1.0f, false},
    {"edge_diagonal", {1, 0, -1, 0, 0, 0, -1, 0, 1}, 1.0f, true},
    {"edge_laplacian", {0, 1, 0, 1, -4, 1, 0, 1, 0}, 1.0f, true},
    {"edge_all_directions", {-1, -1, -1, -1, 8, -1, -1, -1, -1}, 1.0f, true},
    {"sharpen", {0, -1, 0, -1, 5, -1, 0, -1, 0}, 1.0f, false},
    {"box_blur", {1, 1, 1, 1, 1, 1, 1, 1, 1}, 1.0f / 9.0f, false},
};

int usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s [image.png] [--out DIR] [--engine auto|reference|cpu|cuda|cudnn] "
               "[--repeat N]\n",
               argv0);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string image_path = std::string(DLRT_SAMPLE_DIR) + "/camera.png";
  std::string out_dir = "filters-out";
  dlrt::Engine engine = dlrt::Engine::Auto;
  int repeat = 5;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if ((arg == "--out" || arg == "--engine" || arg == "--repeat") && i + 1 < argc) {
      std::string value = argv[++i];
      if (arg == "--out") out_dir = value;
      if (arg == "--engine") engine = dlrt::engine_from_string(value);
      if (arg == "--repeat") repeat = std::max(1, std::atoi(value.c_str()));
    } else if (arg == "-h" || arg == "--help" || arg.starts_with("--")) {
      return usage(argv[0]);
    } else {
      image_path = arg;
    }
  }

  try {
    const dlrt::examples::Image image = dlrt::examples::read_png(image_path);
    const dlrt::Device device =
        dlrt::cuda_available() ? dlrt::Device::cuda(0) : dlrt::Device::cpu();
    std::printf("dlrt %s — lecture filters on %s (%d x %d, %d channel%s)\n", dlrt::version(),
                image_path.c_str(), image.width, image.height, image.channels,
                image.channels == 1 ? "" : "s");
    std::printf(
        "device: %s%s\n", dlrt::to_string(device).c_str(),
        device.is_cpu() ? (" (no GPU: " + dlrt::cuda_unavailable_reason() + ")").c_str() : "");
    std::filesystem::create_directories(out_dir);

    dlrt::Context ctx(device);
    const std::int64_t C = image.channels, H = image.height, W = image.width;
    const dlrt::Tensor x = dlrt::Tensor::from_vector({1, C, H, W}, image.planes, device);
    dlrt::Tensor y({1, C, H, W}, device);
    dlrt::Conv2dParams params;
    params.pad_h = params.pad_w = 1;
    params.groups = static_cast<int>(C);

    std::printf("%-20s %-10s %12s   %s\n", "filter", "engine", "best time", "output");
    for (const Filter& filter : kFilters) {
      std::vector<float> weights;
      for (std::int64_t c = 0; c < C; ++c)
        for (float v : filter.kernel) weights.push_back(v * filter.scale);
      const dlrt::Tensor w = dlrt::Tensor::from_vector({C, 1, 3, 3}, weights, device);

      dlrt::Engine used = dlrt::conv2d_forward(ctx, x, w, nullptr, y, params, engine);  // warm-up
      ctx.synchronize();
      double best_ms = 1e30;
      for (int r = 0; r < repeat; ++r) {
        const auto start = std::chrono::steady_clock::now();
        used = dlrt::conv2d_forward(ctx, x, w, nullptr, y, params, engine);
        ctx.synchronize();
        const std::chrono::duration<double, std::milli> took =
            std::chrono::steady_clock::now() - start;
        best_ms = std::min(best_ms, took.count());
      }

      dlrt::examples::Image out = image;
      out.planes = y.to_vector();
      if (filter.magnitude)
        for (float& v : out.planes) v = std::fabs(v);
      const std::string path = out_dir + "/" + filter.name + ".png";
      dlrt::examples::write_png(path, out);
      std::printf("%-20s %-10s %9.3f ms   %s\n", filter.name, dlrt::to_string(used), best_ms,
                  path.c_str());
    }
  } catch (const dlrt::Error& e) {
    std::fprintf(stderr, "dlrt error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr,
                 "error: %s\n(fetch the sample photographs with tools/fetch-sample-images.sh, or "
                 "pass a PNG)\n",
                 e.what());
    return 1;
  }
  return 0;
}
