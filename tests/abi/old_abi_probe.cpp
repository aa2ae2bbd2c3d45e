// Compiled by the abi_guard test with -D_GLIBCXX_USE_CXX11_ABI=0: the public
// headers must refuse it at compile time, with the reason, rather than link
// and pass corrupt std::string values.
#include <dlrt/dlrt.hpp>

int main() { return dlrt::Device::cpu().index; }
