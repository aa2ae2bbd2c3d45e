// PNG in and out for the demos, as planar float images in [0, 255].
#pragma once

#include <string>
#include <vector>

namespace dlrt::examples {

struct Image {
  int channels = 0, height = 0, width = 0;
  std::vector<float> planes;  // channels x height x width
};

// Gray, gray+alpha, RGB, RGBA, palette, 8 or 16 bits; alpha is dropped.
// Throws std::runtime_error naming the file on failure.
Image read_png(const std::string& path);
// Values are rounded and clamped to [0, 255]; 1 channel is gray, 3 is RGB.
void write_png(const std::string& path, const Image& image);

}  // namespace dlrt::examples
