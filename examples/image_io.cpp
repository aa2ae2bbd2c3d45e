#include "image_io.hpp"

#include <png.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <stdexcept>

namespace dlrt::examples {
namespace {

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using File = std::unique_ptr<std::FILE, FileCloser>;

// Photographs often carry harmless metadata quirks (an sRGB profile libpng
// knows to be slightly off, say) that do not affect the pixels.
void ignore_warning(png_structp, png_const_charp) {}

[[noreturn]] void fail(const std::string& path, const std::string& why) {
  throw std::runtime_error(path + ": " + why);
}

}  // namespace

Image read_png(const std::string& path) {
  File file(std::fopen(path.c_str(), "rb"));
  if (!file) fail(path, "cannot open");
  png_byte signature[8];
  if (std::fread(signature, 1, 8, file.get()) != 8 || png_sig_cmp(signature, 0, 8) != 0)
    fail(path, "not a PNG file");

  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!info) fail(path, "libpng could not start");
  // libpng reports errors by longjmp: everything below until the reads is
  // plain data, so no destructor is skipped.
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    fail(path, "corrupt PNG data");
  }
  png_set_error_fn(png, nullptr, nullptr, ignore_warning);
  png_init_io(png, file.get());
  png_set_sig_bytes(png, 8);
  png_read_info(png, info);
  // Normalise every PNG flavour to 8-bit gray or RGB.
  png_set_expand(png);
  png_set_strip_16(png);
  png_set_strip_alpha(png);
  png_read_update_info(png, info);

  Image image;
  image.width = static_cast<int>(png_get_image_width(png, info));
  image.height = static_cast<int>(png_get_image_height(png, info));
  image.channels = static_cast<int>(png_get_channels(png, info));
  const std::size_t row_bytes = png_get_rowbytes(png, info);
  std::vector<png_byte> pixels(row_bytes * static_cast<std::size_t>(image.height));
  std::vector<png_bytep> rows(static_cast<std::size_t>(image.height));
  for (int y = 0; y < image.height; ++y) rows[y] = pixels.data() + row_bytes * y;
  png_read_image(png, rows.data());
  png_destroy_read_struct(&png, &info, nullptr);

  const std::size_t plane = static_cast<std::size_t>(image.height) * image.width;
  image.planes.resize(plane * image.channels);
  for (int c = 0; c < image.channels; ++c)
    for (std::size_t i = 0; i < plane; ++i)
      image.planes[c * plane + i] = pixels[i * image.channels + c];
  return image;
}

void write_png(const std::string& path, const Image& image) {
  if (image.channels != 1 && image.channels != 3) fail(path, "only 1 or 3 channels can be written");
  File file(std::fopen(path.c_str(), "wb"));
  if (!file) fail(path, "cannot create");
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!info) fail(path, "libpng could not start");

  const std::size_t plane = static_cast<std::size_t>(image.height) * image.width;
  std::vector<png_byte> pixels(plane * image.channels);
  for (int c = 0; c < image.channels; ++c)
    for (std::size_t i = 0; i < plane; ++i)
      pixels[i * image.channels + c] =
          static_cast<png_byte>(std::clamp(std::lround(image.planes[c * plane + i]), 0L, 255L));
  std::vector<png_bytep> rows(static_cast<std::size_t>(image.height));
  for (int y = 0; y < image.height; ++y)
    rows[y] = pixels.data() + static_cast<std::size_t>(y) * image.width * image.channels;

  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    fail(path, "libpng could not write the file");
  }
  png_init_io(png, file.get());
  png_set_IHDR(png, info, static_cast<png_uint_32>(image.width),
               static_cast<png_uint_32>(image.height), 8,
               image.channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  png_write_image(png, rows.data());
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
}

}  // namespace dlrt::examples
