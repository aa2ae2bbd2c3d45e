// The library's side of the engine table (runtime/engine_table.cpp).
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "dlrt/engine.hpp"

namespace dlrt::detail {

// Auto's order for `family`, best first (every engine that implements it).
std::span<const Engine> auto_order(OpFamily family);

bool is_known_engine(Engine engine);

// `engine` is Auto or one of the table's engines (not a stray cast integer).
void check_engine_value(std::string_view op, Engine engine);

// Why `engine` cannot run `family` on `device` at all (it does not implement
// it, is not in this build, runs on the other device, no GPU); empty when it
// can be asked to plan problems.
std::string engine_unavailable_reason(OpFamily family, Engine engine, Device device);

// Called by each engine's registrar: this build holds `engine`'s `family`.
void note_built(OpFamily family, Engine engine);

}  // namespace dlrt::detail
