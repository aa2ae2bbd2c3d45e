// Plans cached per Context, so that the one-shot op functions choose once
// per problem: a key of integers (the family fills in its problem, the
// requested engine and the context settings that choosing depends on) maps
// to a shared, immutable plan. The cache holds at most kCapacity plans and
// drops the least recently used one beyond that.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <unordered_map>
#include <utility>
#include <vector>

#include "dlrt/context.hpp"

namespace dlrt::detail {

struct PlanKey {
  std::vector<std::int64_t> values;

  PlanKey& add(std::int64_t v) {
    values.push_back(v);
    return *this;
  }
  friend bool operator==(const PlanKey&, const PlanKey&) = default;
};

struct PlanKeyHash {
  std::size_t operator()(const PlanKey& key) const noexcept {
    std::uint64_t h = 1469598103934665603ull;  // FNV-1a over the values
    for (std::int64_t v : key.values) {
      h ^= static_cast<std::uint64_t>(v);
      h *= 1099511628211ull;
    }
    return static_cast<std::size_t>(h);
  }
};

class PlanCache {
public:
  static constexpr std::size_t kCapacity = 512;

  // The cache of `ctx`, created on first use.
  static PlanCache& of(Context& ctx);

  std::shared_ptr<const void> find(const PlanKey& key);
  void insert(const PlanKey& key, std::shared_ptr<const void> plan);
  std::size_t size() const { return entries_.size(); }

private:
  using Order = std::list<PlanKey>;  // most recently used first
  struct Entry {
    std::shared_ptr<const void> plan;
    Order::iterator position;
  };
  Order order_;
  std::unordered_map<PlanKey, Entry, PlanKeyHash> entries_;
};

// The settings of `ctx` that choosing a plan depends on, appended to `key`.
void add_context_settings(PlanKey& key, const Context& ctx);

}  // namespace dlrt::detail
