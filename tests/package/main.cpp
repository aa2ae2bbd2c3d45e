// Runs the lecture's stride-2 example through an installed libdlrt.so.
#include <dlrt/dlrt.hpp>

#include <cstdio>
#include <vector>

int main() {
  const std::vector<float> image = {0, 0, 0, 0, 0, 0, 0, 1, 2, 2, 1, 0, 0, 2, 4, 4, 2, 0,
                                    0, 1, 3, 3, 1, 0, 0, 1, 2, 3, 1, 0, 0, 0, 1, 1, 0, 0};
  dlrt::Context ctx;
  dlrt::Tensor x = dlrt::Tensor::from_vector({1, 1, 6, 6}, image);
  dlrt::Tensor w = dlrt::Tensor::from_vector({1, 1, 2, 2}, std::vector<float>{0, 1, 1, -2});
  const dlrt::Conv2dParams params{.stride_h = 2, .stride_w = 2};
  dlrt::Tensor y(dlrt::conv2d_output_shape(x.shape(), w.shape(), params));
  dlrt::Engine engine = dlrt::conv2d_forward(ctx, x, w, nullptr, y, params, dlrt::Engine::Cpu);
  const std::vector<float> want = {-2, -2, 1, 0, 1, 1, 1, 2, 0};
  if (y.to_vector() != want) {
    std::fprintf(stderr, "wrong result from the installed libdlrt\n");
    return 1;
  }
  std::printf("installed dlrt %s ran conv2d_forward on engine %s: ok\n", dlrt::version(),
              dlrt::to_string(engine));
  return 0;
}
