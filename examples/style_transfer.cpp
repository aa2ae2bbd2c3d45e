// Neural style transfer (Gatys, Ecker and Bethge, "A Neural Algorithm of
// Artistic Style", 2015, arXiv 1508.06576): an image is optimised so that its
// deep features match those of a content photograph at one layer, and the
// Gram matrices of its features (their channel-by-channel correlations, which
// forget where things are) match those of a style image at several layers.
//
// Features without a pretrained network. Gatys et al. use VGG-19 trained on
// ImageNet; no trained weights can be downloaded here, so the features come
// from a fixed CNN with random weights: five scales of 3x3 convolution + ReLU
// (32, 64, 128, 256, 256 channels) with 2x2 average pooling between them.
// Random filters are known to capture texture: Ustyuzhaninov, Brendel, Gatys
// and Bethge, "What does it take to generate natural textures?" (ICLR 2017)
// synthesise many natural textures from the Gram matrices of a single layer
// of random multi-scale filters, and He, Wang and Hopcroft, "A powerful
// generative model using random weights for the deep image representation"
// (NIPS 2016) do texture synthesis and style transfer with an untrained VGG.
// What that means here: the colours and the fine, stochastic texture of the
// style (grain, speckle, wood) transfer well; regular or large structure
// (bricks, strokes, objects) does not, since random filters do not respond
// to the shapes a trained network has learned; and the content survives as
// edges and shading, less faithfully than with VGG. docs/style-transfer.md
// shows both.
//
// The weights are He-uniform (variance 2 / fan_in, so the activations keep
// their scale through the ReLUs) drawn from splitmix64 seeded by --seed: a
// seed gives the same network, bit for bit, with every compiler and standard
// library. Average pooling rather than max pooling: its gradient is smooth
// and reaches every pixel of the window (Gatys et al. also replace VGG's max
// pooling by average pooling, for better images).
//
// Losses, with F_l the ReLU features of scale l seen as a [C_l, P_l] matrix
// (channels by positions), F_pixels the image's [3, P] colours, L = 6 style layers:
//   Gram matrix        G_l = F_l F_l^T / (C_l P_l)                      (dlrt::gram)
//   style loss         L_style = (1/L) sum_l ||G_l(x) - G_l(style)||^2 / ||G_l(style)||^2
//                      over l = pixels and the five scales
//   content loss       L_content = ||F_2(x) - F_2(content)||^2 / (C_2 P_2)
//   total variation    L_tv = mean squared difference of neighbouring pixels (off by default)
//   total              L = content_weight L_content + style_weight L_style + tv_weight L_tv
// The 1 / (C_l P_l) makes a Gram matrix independent of the image size and
// of the layer's width (Gatys et al.'s 1 / (4 N_l^2 M_l^2) up to the 4), and
// dividing by ||G_l(style)||^2 makes each term a relative error, so that the
// layers, and different style images, weigh alike. The pixels' Gram matrix
// (the colours' second moments) is an addition to Gatys et al.: VGG's first
// layer measures colour well, random ReLU features measure it loosely, and
// without it a gray style left colour noise. Content at scale 2 (1/4 of the
// image size, 128 channels): deep enough that the style can change colours
// and texture, shallow enough to keep the layout.
//
// The image starts as the content photograph (--init noise: as Gatys et al.,
// from white noise, which takes longer to bring the content back) and is
// optimised by Adam (dlrt::optim::Adam, the image as its one parameter)
// through conv2d_backward_data, activation_backward, pool2d_backward and
// gram_backward. Total variation, when asked for, is a depthwise convolution
// with difference filters, so it too runs on the library's ops; it removes
// speckle but blurs, so it is off by default.
//
//   dlrt_style_transfer [--quick] [--content PATH] [--style PATH] [--size N]
//                       [--iterations N] [--style-weight W] [--content-weight W]
//                       [--tv-weight W] [--learning-rate R] [--init content|noise]
//                       [--seed S] [--out DIR] [--save-every N] [--print-every N]
#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <iterator>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "dlrt/dlrt.hpp"
#include "image_io.hpp"

namespace {

using dlrt::Shape;
using dlrt::Tensor;
using dlrt::examples::Image;

// ---- the feature network ------------------------------------------------------

// Output channels of each scale's 3x3 convolution; scale s sees the image at
// 1 / 2^s of its size.
constexpr int kScaleChannels[] = {32, 64, 128, 256, 256};
constexpr int kNumScales = static_cast<int>(std::size(kScaleChannels));
constexpr int kKernelSize = 3;
// The content loss compares features at this scale: deep enough to forget the
// exact pixel values (so the style can change them), shallow enough (1/4 of
// the image size) to keep the layout.
constexpr int kContentScale = 2;
// The smallest image for which the deepest scale is still 2 x 2.
constexpr int kMinSize = 2 << (kNumScales - 1);
constexpr int kMaxSize = 4096;

// splitmix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number
// generators", OOPSLA 2014; the constants of Vigna's reference code): a tiny
// generator whose output is defined by these lines alone, unlike the
// standard library's distributions.
class SplitMix64 {
public:
  explicit SplitMix64(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  // Uniform in [-1, 1), from the top 53 bits.
  double symmetric_unit() { return static_cast<double>(next() >> 11) * 0x1.0p-52 - 1.0; }

private:
  std::uint64_t state_;
};

// He-uniform filters [out, in, k, k]: U(-a, a) with a = sqrt(6 / fan_in) has
// variance 2 / fan_in, which keeps E[x^2] constant through conv + ReLU.
std::vector<float> random_filters(SplitMix64& rng, int out_channels, int in_channels, int kernel) {
  const int fan_in = in_channels * kernel * kernel;
  const double bound = std::sqrt(6.0 / fan_in);
  std::vector<float> weights(static_cast<std::size_t>(out_channels) * fan_in);
  for (float& w : weights) w = static_cast<float>(bound * rng.symmetric_unit());
  return weights;
}

// Which engine ran each family of ops (the last call of each).
struct EnginesUsed {
  dlrt::Engine conv = dlrt::Engine::Auto, pool = dlrt::Engine::Auto, linear = dlrt::Engine::Auto,
               pointwise = dlrt::Engine::Auto;
};

dlrt::Conv2dParams same_size_conv() {
  dlrt::Conv2dParams params;
  params.pad_h = params.pad_w = kKernelSize / 2;
  return params;
}

dlrt::Pool2dParams halving_pool() {
  dlrt::Pool2dParams params;
  params.mode = dlrt::PoolMode::AverageIncludePad;
  params.window_h = params.window_w = 2;
  params.stride_h = params.stride_w = 2;
  return params;
}

// A tensor's squared L2 norm times `scale`, as the 1x1 Gram matrix of the
// tensor seen as a single row: the library has no reduction op.
float squared_norm(dlrt::Context& ctx, const Tensor& x, Tensor& result_1x1, float scale,
                   EnginesUsed& engines) {
  engines.linear = dlrt::gram(ctx, x.view({1, x.numel()}), result_1x1, scale);
  return result_1x1.to_vector(ctx)[0];
}

// The style term of one layer with features F [C, P]: G = F F^T / (C P)
// against the style image's A, loss ||G - A||^2 / ||A||^2. Dividing by
// ||A||^2 makes the loss a relative error, so that every layer and every
// style image weigh alike whatever the magnitude of their features.
class GramMatch {
public:
  GramMatch(std::int64_t channels, std::int64_t positions, dlrt::Device device)
      : scale_(static_cast<float>(
            1.0 / (static_cast<double>(channels) * static_cast<double>(positions)))),
        gram_({channels, channels}, device),
        target_({channels, channels}, device),
        diff_({channels, channels}, device),
        norm_({1, 1}, device) {}

  void compute(dlrt::Context& ctx, const Tensor& features, EnginesUsed& engines) {
    engines.linear = dlrt::gram(ctx, features, gram_, scale_);
  }

  // The Gram matrix computed last becomes the target.
  void keep_as_target(dlrt::Context& ctx, EnginesUsed& engines) {
    target_.copy_from(gram_, ctx);
    target_norm_ = squared_norm(ctx, target_, norm_, 1.0f, engines);
    if (!(target_norm_ > 0.0f))  // the relative error would divide by zero
      throw std::runtime_error(
          "the style image's features are all zero at one layer: it has no style to transfer");
  }

  // Returns the loss of the Gram matrix computed last and writes weight
  // times its gradient with respect to the features into d_features:
  // with D = G - A, d/dF of ||s F F^T - A||^2 is s (2D + 2D^T) F, which is
  // gram_backward of D with the 2 weight / ||A||^2 folded into its scale.
  float loss_and_gradient(dlrt::Context& ctx, const Tensor& features, Tensor& d_features,
                          float weight, EnginesUsed& engines) {
    engines.pointwise = dlrt::add(ctx, gram_, target_, diff_, 1.0f, -1.0f);
    const float loss = squared_norm(ctx, diff_, norm_, 1.0f / target_norm_, engines);
    engines.linear = dlrt::gram_backward(ctx, features, diff_, d_features,
                                         2.0f * weight * scale_ / target_norm_);
    return loss;
  }

private:
  float scale_;
  float target_norm_ = 1.0f;
  Tensor gram_, target_, diff_, norm_;
};

// One scale: conv 3x3 (padding 1) + ReLU, then 2x2 average pooling into the
// next scale. The buffers are made once and reused by every iteration.
struct Scale {
  Tensor weights;                     // [C_out, C_in, 3, 3], fixed
  Tensor conv_out, features, pooled;  // pooled: undefined at the last scale
  Tensor d_features, d_from_above, d_conv_out, d_input;
  // features and d_features seen as [C, P] matrices (views of the same
  // storage): the maps of one image are [1, C, H, W].
  Tensor features_matrix, d_features_matrix;
  GramMatch style;
};

// The random network, its buffers for one image of size x size, and the
// losses' gradients back to the image.
class FeatureNetwork {
public:
  FeatureNetwork(std::int64_t size, std::uint64_t seed, dlrt::Device device)
      : pixel_style_(3, size * size, device), d_pixels_({1, 3, size, size}, device) {
    SplitMix64 rng(seed);
    std::int64_t in_channels = 3, side = size;
    for (int s = 0; s < kNumScales; ++s) {
      const int channels = kScaleChannels[s];
      const Shape maps{1, channels, side, side};
      Scale scale{
          .weights = Tensor::from_vector(
              {channels, in_channels, kKernelSize, kKernelSize},
              random_filters(rng, channels, static_cast<int>(in_channels), kKernelSize), device),
          .conv_out = Tensor(maps, device),
          .features = Tensor(maps, device),
          .pooled = {},
          .d_features = Tensor(maps, device),
          .d_from_above = Tensor(maps, device),
          .d_conv_out = Tensor(maps, device),
          .d_input = Tensor({1, in_channels, side, side}, device),
          .features_matrix = {},
          .d_features_matrix = {},
          .style = GramMatch(channels, side * side, device)};
      scale.features_matrix = scale.features.view({channels, side * side});
      scale.d_features_matrix = scale.d_features.view({channels, side * side});
      if (s + 1 < kNumScales) {
        side /= 2;
        scale.pooled = Tensor({1, channels, side, side}, device);
      }
      in_channels = channels;
      scales_.push_back(std::move(scale));
    }
  }

  const Tensor& content_features() const { return scales_[kContentScale].features; }

  // Features and Gram matrices of `image` [1, 3, size, size].
  void forward(dlrt::Context& ctx, const Tensor& image, EnginesUsed& engines) {
    pixel_style_.compute(ctx, as_pixel_matrix(image), engines);
    const Tensor* input = &image;
    for (Scale& scale : scales_) {
      engines.conv = dlrt::conv2d_forward(ctx, *input, scale.weights, nullptr, scale.conv_out,
                                          same_size_conv());
      engines.pointwise =
          dlrt::activation_forward(ctx, dlrt::Activation::Relu, scale.conv_out, scale.features);
      scale.style.compute(ctx, scale.features_matrix, engines);
      if (scale.pooled.defined()) {
        engines.pool = dlrt::pool2d_forward(ctx, scale.features, scale.pooled, halving_pool());
        input = &scale.pooled;
      }
    }
  }

  // The Gram matrices of the last forward become the style targets.
  void keep_grams_as_style_targets(dlrt::Context& ctx, EnginesUsed& engines) {
    pixel_style_.keep_as_target(ctx, engines);
    for (Scale& scale : scales_) scale.style.keep_as_target(ctx, engines);
  }

  // The style loss of the last forward, the mean of the layers' relative
  // Gram errors (the pixels' colour moments and every scale), and
  // style_weight times its gradient: into every scale's d_features (which
  // it overwrites) and into d_pixels_.
  float style_loss_and_gradient(dlrt::Context& ctx, const Tensor& image, float style_weight,
                                EnginesUsed& engines) {
    const float layers = kNumScales + 1;
    const float layer_weight = style_weight / layers;
    Tensor d_pixel_matrix = as_pixel_matrix(d_pixels_);
    double loss = pixel_style_.loss_and_gradient(ctx, as_pixel_matrix(image), d_pixel_matrix,
                                                 layer_weight, engines);
    for (Scale& scale : scales_)
      loss += scale.style.loss_and_gradient(ctx, scale.features_matrix, scale.d_features_matrix,
                                            layer_weight, engines);
    return static_cast<float>(loss / layers);
  }

  // Adds content_weight * d/dF ||F - F_target||^2 / n to the content scale's
  // d_features; returns ||F - F_target||^2 / n. `diff` and `norm` are scratch.
  float add_content_loss_gradient(dlrt::Context& ctx, const Tensor& target, float content_weight,
                                  Tensor& diff, Tensor& norm, EnginesUsed& engines) {
    Scale& scale = scales_[kContentScale];
    const float n = static_cast<float>(scale.features.numel());
    engines.pointwise = dlrt::add(ctx, scale.features, target, diff, 1.0f, -1.0f);
    const float loss = squared_norm(ctx, diff, norm, 1.0f / n, engines);
    engines.pointwise =
        dlrt::add(ctx, scale.d_features, diff, scale.d_features, 1.0f, 2.0f * content_weight / n);
    return loss;
  }

  // From the losses' gradients at every scale back to d_image: the deepest
  // scale first, each pooling's gradient added to the losses' gradient of
  // the scale below it, and at last the pixels' own style gradient.
  void backward(dlrt::Context& ctx, Tensor& d_image, EnginesUsed& engines) {
    for (int s = kNumScales - 1; s >= 0; --s) {
      Scale& scale = scales_[s];
      if (s + 1 < kNumScales) {
        engines.pool =
            dlrt::pool2d_backward(ctx, scales_[s + 1].d_input, scale.d_from_above, halving_pool());
        engines.pointwise = dlrt::add(ctx, scale.d_features, scale.d_from_above, scale.d_features);
      }
      engines.pointwise = dlrt::activation_backward(ctx, dlrt::Activation::Relu, scale.features,
                                                    scale.d_features, scale.d_conv_out);
      Tensor& d_input = s == 0 ? d_image : scale.d_input;
      engines.conv = dlrt::conv2d_backward_data(ctx, scale.d_conv_out, scale.weights, d_input,
                                                same_size_conv());
    }
    engines.pointwise = dlrt::add(ctx, d_image, d_pixels_, d_image);
  }

private:
  // An image [1, 3, H, W] as the matrix [3, H*W] of its colours.
  static Tensor as_pixel_matrix(const Tensor& image) {
    return image.view({image.size(1), image.size(2) * image.size(3)});
  }

  GramMatch pixel_style_;
  Tensor d_pixels_;
  std::vector<Scale> scales_;
};

// Total variation as a depthwise convolution: for each colour channel one
// filter takes the difference to the right neighbour and one to the lower
// neighbour (2x2 filters, no padding), so its value and gradient come from
// conv2d_forward and conv2d_backward_data.
class TotalVariation {
public:
  TotalVariation(std::int64_t size, dlrt::Device device) {
    std::vector<float> filters(6 * 4, 0.0f);  // [6, 1, 2, 2]: two 2x2 filters per channel
    for (std::size_t c = 0; c < 3; ++c) {
      float* right = &filters[c * 8];
      float* down = right + 4;
      right[0] = -1.0f, right[1] = 1.0f;  // x[i, j+1] - x[i, j]
      down[0] = -1.0f, down[2] = 1.0f;    // x[i+1, j] - x[i, j]
    }
    filters_ = Tensor::from_vector({6, 1, 2, 2}, filters, device);
    params_.groups = 3;
    differences_ = Tensor({1, 6, size - 1, size - 1}, device);
    d_image_ = Tensor({1, 3, size, size}, device);
    norm_ = Tensor({1, 1}, device);
  }

  // Adds weight * d/dx mean(D^2) to d_image and returns mean(D^2).
  float add_loss_gradient(dlrt::Context& ctx, const Tensor& image, float weight, Tensor& d_image,
                          EnginesUsed& engines) {
    engines.conv = dlrt::conv2d_forward(ctx, image, filters_, nullptr, differences_, params_);
    const float n = static_cast<float>(differences_.numel());
    const float loss = squared_norm(ctx, differences_, norm_, 1.0f / n, engines);
    engines.conv = dlrt::conv2d_backward_data(ctx, differences_, filters_, d_image_, params_);
    engines.pointwise = dlrt::add(ctx, d_image, d_image_, d_image, 1.0f, 2.0f * weight / n);
    return loss;
  }

private:
  Tensor filters_, differences_, d_image_, norm_;
  dlrt::Conv2dParams params_;
};

// ---- images -------------------------------------------------------------------

// Gray becomes RGB by copying the plane three times.
Image as_rgb(const Image& image) {
  if (image.channels == 3) return image;
  Image rgb = image;
  rgb.channels = 3;
  rgb.planes.clear();
  for (int c = 0; c < 3; ++c)
    rgb.planes.insert(rgb.planes.end(), image.planes.begin(), image.planes.end());
  return rgb;
}

// How output sample o of a 1-D resampling from n_in to n_out samples is made
// from input samples: shrinking averages the input over o's footprint
// [o s, (o+1) s) with s = n_in / n_out (an area filter, which does not
// alias); enlarging interpolates linearly between the two nearest samples.
struct Tap {
  int index;
  float weight;
};
std::vector<std::vector<Tap>> resampling_taps(int n_in, int n_out) {
  std::vector<std::vector<Tap>> taps(static_cast<std::size_t>(n_out));
  const double step = static_cast<double>(n_in) / n_out;
  for (int o = 0; o < n_out; ++o) {
    std::vector<Tap>& row = taps[static_cast<std::size_t>(o)];
    if (step >= 1.0) {
      const double begin = o * step, end = (o + 1) * step;
      const int last = std::min(n_in - 1, static_cast<int>(std::ceil(end)) - 1);
      for (int i = static_cast<int>(std::floor(begin)); i <= last; ++i) {
        const double overlap = std::min<double>(i + 1, end) - std::max<double>(i, begin);
        if (overlap > 0) row.push_back({i, static_cast<float>(overlap / step)});
      }
    } else {
      const double centre = std::clamp((o + 0.5) * step - 0.5, 0.0, n_in - 1.0);
      const int below = static_cast<int>(centre);
      const int above = std::min(below + 1, n_in - 1);
      const float t = static_cast<float>(centre - below);
      row.push_back({below, 1.0f - t});
      row.push_back({above, t});
    }
  }
  return taps;
}

// The largest centred square of the image, resampled to size x size.
Image square(const Image& image, int size) {
  const int side = std::min(image.height, image.width);
  const int top = (image.height - side) / 2, left = (image.width - side) / 2;
  const auto taps = resampling_taps(side, size);
  Image out;
  out.channels = image.channels;
  out.height = out.width = size;
  out.planes.assign(static_cast<std::size_t>(image.channels) * size * size, 0.0f);
  std::vector<float> rows(static_cast<std::size_t>(size) * side);  // resampled rows, full width
  for (int c = 0; c < image.channels; ++c) {
    const float* plane =
        image.planes.data() + static_cast<std::size_t>(c) * image.height * image.width;
    std::fill(rows.begin(), rows.end(), 0.0f);
    for (int y = 0; y < size; ++y)
      for (const Tap& tap : taps[static_cast<std::size_t>(y)])
        for (int x = 0; x < side; ++x)
          rows[static_cast<std::size_t>(y) * side + x] +=
              tap.weight *
              plane[static_cast<std::size_t>(top + tap.index) * image.width + left + x];
    float* out_plane = out.planes.data() + static_cast<std::size_t>(c) * size * size;
    for (int y = 0; y < size; ++y)
      for (int x = 0; x < size; ++x) {
        float sum = 0.0f;
        for (const Tap& tap : taps[static_cast<std::size_t>(x)])
          sum += tap.weight * rows[static_cast<std::size_t>(y) * side + tap.index];
        out_plane[static_cast<std::size_t>(y) * size + x] = sum;
      }
  }
  return out;
}

// The network sees pixels in [-1, 1]: centred, so that the random filters'
// ReLUs respond to dark and bright alike.
std::vector<float> to_network_range(const Image& image) {
  std::vector<float> values(image.planes.size());
  std::transform(image.planes.begin(), image.planes.end(), values.begin(),
                 [](float v) { return v / 127.5f - 1.0f; });
  return values;
}

Image to_picture(const std::vector<float>& values, int size) {
  Image image;
  image.channels = 3;
  image.height = image.width = size;
  image.planes = values;
  for (float& v : image.planes) v = (v + 1.0f) * 127.5f;  // write_png clamps to [0, 255]
  return image;
}

// A photograph from disk as a size x size RGB image.
Image load_square(const std::string& path, int size) {
  Image image;
  try {
    image = dlrt::examples::read_png(path);
  } catch (const std::runtime_error& e) {
    if (!path.starts_with(DLRT_SAMPLE_DIR)) throw;
    throw std::runtime_error(std::string(e.what()) +
                             " (the default images come from tools/fetch-sample-images.sh " +
                             DLRT_SAMPLE_DIR + ")");
  }
  if (image.channels != 1 && image.channels != 3)
    throw std::runtime_error(path + ": " + std::to_string(image.channels) +
                             " channels; the images must be gray or RGB");
  return square(as_rgb(image), size);
}

// Gatys et al.'s starting point: white noise, here uniform in [-0.2, 0.2]
// around mid-gray, from a generator of its own so that the filters stay those
// of the seed.
std::vector<float> noise_image(std::uint64_t seed, std::size_t values) {
  SplitMix64 rng(seed ^ 0x6E6F697365ULL);  // "noise"
  std::vector<float> image(values);
  for (float& v : image) v = static_cast<float>(0.2 * rng.symmetric_unit());
  return image;
}

// ---- options ------------------------------------------------------------------

struct Options {
  std::string content_path = std::string(DLRT_SAMPLE_DIR) + "/camera.png";
  std::string style_path = std::string(DLRT_SAMPLE_DIR) + "/coffee.png";
  std::string out_dir = "style-transfer-out";
  bool quick = false;
  std::optional<int> size, iterations, save_every;
  int print_every = 10;
  bool start_from_noise = false;
  float style_weight = 10.0f, content_weight = 1.0f, tv_weight = 0.0f, learning_rate = 0.05f;
  // The paper's arXiv number: a default that says where it comes from.
  std::uint64_t seed = 1508065760;
};

const char* const kUsage =
    "usage: %s [--quick] [--content PATH] [--style PATH] [--size N] [--iterations N]\n"
    "          [--style-weight W] [--content-weight W] [--tv-weight W] [--learning-rate R]\n"
    "          [--init content|noise] [--seed S] [--out DIR] [--save-every N] [--print-every N]\n"
    "  --quick            128 x 128 and 200 iterations (--size and --iterations still apply)\n"
    "  --content PATH     content photograph, PNG (default: camera.png of the sample images)\n"
    "  --style PATH       style image, PNG (default: coffee.png of the sample images)\n"
    "  --size N           the result is N x N pixels (both images are centre-cropped to a\n"
    "                     square and resampled), an integer in [%d, %d] (default 256)\n"
    "  --iterations N     Adam steps, an integer in [1, 100000] (default 300)\n"
    "  --style-weight W   weight of the style loss, a finite number >= 0 (default 10)\n"
    "  --content-weight W weight of the content loss, likewise (default 1)\n"
    "  --tv-weight W      weight of the total variation, likewise (default 0: off)\n"
    "  --learning-rate R  Adam's first rate, decayed to R/10 (cosine), finite, > 0 (default 0.05)\n"
    "  --init content|noise  start from the content photograph (default) or from noise;\n"
    "                     noise with --content-weight 0 synthesises the style as a texture\n"
    "  --seed S           seed of the random filters (and of the noise), an integer in\n"
    "                     [0, 2^64) (default 1508065760)\n"
    "  --out DIR          where the PNGs go (default style-transfer-out)\n"
    "  --save-every N     also save the image every N iterations, an integer in [0, 100000],\n"
    "                     0: only the result (default: a fifth of the iterations)\n"
    "  --print-every N    print the losses every N iterations, an integer in [1, 100000]\n"
    "                     (default 10)\n";

[[noreturn]] void bad_value(std::string_view option, std::string_view value,
                            std::string_view rule) {
  throw std::invalid_argument("option " + std::string(option) + ": '" + std::string(value) +
                              "' is not " + std::string(rule));
}

template <typename Integer>
Integer parse_integer(std::string_view option, std::string_view value, Integer low, Integer high,
                      std::string_view rule) {
  Integer parsed{};
  const auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), parsed);
  if (error != std::errc() || end != value.data() + value.size() || parsed < low || parsed > high)
    bad_value(option, value, rule);
  return parsed;
}

float parse_float(std::string_view option, std::string_view value, bool zero_allowed,
                  std::string_view rule) {
  double parsed = 0.0;
  const auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), parsed);
  if (error != std::errc() || end != value.data() + value.size() || !std::isfinite(parsed) ||
      parsed < 0.0 || (!zero_allowed && parsed == 0.0) ||
      parsed > std::numeric_limits<float>::max())
    bad_value(option, value, rule);
  return static_cast<float>(parsed);
}

// Returns nullopt after printing the usage for --help.
std::optional<Options> parse_options(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string_view option = argv[i];
    if (option == "-h" || option == "--help") {
      std::printf(kUsage, argv[0], kMinSize, kMaxSize);
      return std::nullopt;
    }
    if (option == "--quick") {
      options.quick = true;
      continue;
    }
    if (!option.starts_with("--"))
      throw std::invalid_argument("unexpected argument '" + std::string(option) +
                                  "' (every argument is an option; see --help)");
    if (i + 1 >= argc)
      throw std::invalid_argument("option " + std::string(option) + " needs a value (see --help)");
    const std::string_view value = argv[++i];
    if (option == "--content") {
      options.content_path = value;
    } else if (option == "--style") {
      options.style_path = value;
    } else if (option == "--out") {
      if (value.empty()) bad_value(option, value, "a directory name");
      options.out_dir = value;
    } else if (option == "--init") {
      if (value != "content" && value != "noise") bad_value(option, value, "content or noise");
      options.start_from_noise = value == "noise";
    } else if (option == "--size") {
      options.size = parse_integer(
          option, value, kMinSize, kMaxSize,
          "an integer in [" + std::to_string(kMinSize) + ", " + std::to_string(kMaxSize) + "]");
    } else if (option == "--iterations") {
      options.iterations = parse_integer(option, value, 1, 100000, "an integer in [1, 100000]");
    } else if (option == "--save-every") {
      options.save_every = parse_integer(option, value, 0, 100000, "an integer in [0, 100000]");
    } else if (option == "--print-every") {
      options.print_every = parse_integer(option, value, 1, 100000, "an integer in [1, 100000]");
    } else if (option == "--seed") {
      options.seed =
          parse_integer(option, value, std::uint64_t{0}, std::numeric_limits<std::uint64_t>::max(),
                        "an integer in [0, 2^64)");
    } else if (option == "--style-weight") {
      options.style_weight = parse_float(option, value, true, "a finite number >= 0");
    } else if (option == "--content-weight") {
      options.content_weight = parse_float(option, value, true, "a finite number >= 0");
    } else if (option == "--tv-weight") {
      options.tv_weight = parse_float(option, value, true, "a finite number >= 0");
    } else if (option == "--learning-rate") {
      options.learning_rate = parse_float(option, value, false, "a finite number > 0");
    } else {
      throw std::invalid_argument("unknown option " + std::string(option) + " (see --help)");
    }
  }
  return options;
}

std::string iteration_file(const std::string& dir, int iteration) {
  char name[32];
  std::snprintf(name, sizeof name, "/iter_%05d.png", iteration);
  return dir + name;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

int run(const Options& options) {
  const auto start = std::chrono::steady_clock::now();
  const int size = options.size.value_or(options.quick ? 128 : 256);
  const int iterations = options.iterations.value_or(options.quick ? 200 : 300);
  const int save_every = options.save_every.value_or(std::max(1, iterations / 5));

  const Image content = load_square(options.content_path, size);
  const Image style = load_square(options.style_path, size);
  std::filesystem::create_directories(options.out_dir);
  dlrt::examples::write_png(options.out_dir + "/content.png", content);
  dlrt::examples::write_png(options.out_dir + "/style.png", style);

  const dlrt::Device device = dlrt::cuda_available() ? dlrt::Device::cuda(0) : dlrt::Device::cpu();
  std::printf("dlrt %s — style transfer (Gatys et al. 2015) with a random-weight CNN\n",
              dlrt::version());
  std::printf("content %s, style %s, %d x %d, %d iterations, seed %llu\n",
              options.content_path.c_str(), options.style_path.c_str(), size, size, iterations,
              static_cast<unsigned long long>(options.seed));
  std::printf("device: %s%s, %d CPU threads\n", dlrt::to_string(device).c_str(),
              device.is_cpu() ? (" (no GPU: " + dlrt::cuda_unavailable_reason() + ")").c_str() : "",
              dlrt::num_threads());

  dlrt::Context ctx(device);
  FeatureNetwork network(size, options.seed, device);
  TotalVariation total_variation(size, device);
  EnginesUsed engines;

  // The targets: the style image's Gram matrices and the content's features.
  const Shape image_shape{1, 3, size, size};
  const Tensor style_image = Tensor::from_vector(image_shape, to_network_range(style), device);
  network.forward(ctx, style_image, engines);
  network.keep_grams_as_style_targets(ctx, engines);
  const std::vector<float> content_values = to_network_range(content);
  const Tensor content_image = Tensor::from_vector(image_shape, content_values, device);
  network.forward(ctx, content_image, engines);
  const Tensor content_target = network.content_features().clone();
  Tensor content_diff(content_target.shape(), device), content_norm({1, 1}, device);

  // The image being optimised, Adam's one parameter, on the network's device.
  Tensor image = Tensor::from_vector(
      image_shape,
      options.start_from_noise ? noise_image(options.seed, content_values.size()) : content_values,
      device);
  Tensor d_image(image_shape, device);
  dlrt::optim::AdamOptions adam_options;
  adam_options.learning_rate = options.learning_rate;
  dlrt::optim::Adam adam({{"image", image, d_image}}, adam_options);

  std::printf("%9s %12s %12s %12s %12s %9s %9s\n", "iteration", "content", "style", "tv", "total",
              "ms/iter", "elapsed");
  const auto optimisation_start = std::chrono::steady_clock::now();
  auto last_print = optimisation_start;
  int last_printed_iteration = 0;
  for (int iteration = 1; iteration <= iterations; ++iteration) {
    network.forward(ctx, image, engines);
    const float style_loss =
        network.style_loss_and_gradient(ctx, image, options.style_weight, engines);
    const float content_loss = network.add_content_loss_gradient(
        ctx, content_target, options.content_weight, content_diff, content_norm, engines);
    network.backward(ctx, d_image, engines);
    const float tv_loss =
        options.tv_weight > 0.0f
            ? total_variation.add_loss_gradient(ctx, image, options.tv_weight, d_image, engines)
            : 0.0f;
    // Cosine decay to a tenth of the rate settles the last iterations'
    // pixel noise (dlrt::optim::cosine_schedule, SGDR without restarts).
    adam.set_learning_rate(dlrt::optim::cosine_schedule(
        iteration - 1, iterations, options.learning_rate, options.learning_rate / 10));
    adam.step(ctx);

    if (iteration == 1) {
      std::printf("engines: conv2d %s, pool2d %s, gram %s, pointwise %s\n",
                  dlrt::to_string(engines.conv), dlrt::to_string(engines.pool),
                  dlrt::to_string(engines.linear), dlrt::to_string(engines.pointwise));
    }
    if (iteration == 1 || iteration % options.print_every == 0 || iteration == iterations) {
      // The losses are those of the image before this iteration's step.
      const double weighted_content = double{options.content_weight} * content_loss;
      const double weighted_style = double{options.style_weight} * style_loss;
      const double weighted_tv = double{options.tv_weight} * tv_loss;
      const auto now = std::chrono::steady_clock::now();
      const double ms_per_iteration =
          std::chrono::duration<double, std::milli>(now - last_print).count() /
          (iteration - last_printed_iteration);
      last_print = now;
      last_printed_iteration = iteration;
      std::printf("%9d %12.5g %12.5g %12.5g %12.5g %9.1f %8.1fs\n", iteration, weighted_content,
                  weighted_style, weighted_tv, weighted_content + weighted_style + weighted_tv,
                  ms_per_iteration, seconds_since(optimisation_start));
      std::fflush(stdout);
    }
    if (save_every > 0 && iteration % save_every == 0 && iteration != iterations)
      dlrt::examples::write_png(iteration_file(options.out_dir, iteration),
                                to_picture(image.to_vector(ctx), size));
  }

  const std::string result_path = options.out_dir + "/result.png";
  dlrt::examples::write_png(result_path, to_picture(image.to_vector(ctx), size));
  std::printf("result %s (with content.png, style.png", result_path.c_str());
  if (save_every > 0 && save_every < iterations)
    std::printf(" and the image every %d iterations, iter_*.png", save_every);
  std::printf("); %.1f s in all\n", seconds_since(start));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::optional<Options> options = parse_options(argc, argv);
    return options ? run(*options) : 0;
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  } catch (const dlrt::Error& e) {
    std::fprintf(stderr, "dlrt error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
