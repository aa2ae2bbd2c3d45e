// Leaks on purpose. Under the asan preset, ctest requires LeakSanitizer to
// report this program, which proves that the leak check the rest of the
// suite passes is switched on.
#include <cstdio>

#include "dlrt/dlrt.hpp"

int main() {
  auto* forgotten = new dlrt::Tensor({64});  // never deleted
  std::printf("leaked a tensor of %lld elements\n", static_cast<long long>(forgotten->numel()));
  forgotten = nullptr;
  return 0;
}
