#include "runtime/plan_cache.hpp"

#include "runtime/context_impl.hpp"
#include "runtime/parallel.hpp"

namespace dlrt::detail {

PlanCache& PlanCache::of(Context& ctx) {
  std::shared_ptr<void>& slot = ctx.impl().caches["dlrt.plans"];
  if (!slot) slot = std::make_shared<PlanCache>();
  return *static_cast<PlanCache*>(slot.get());
}

std::shared_ptr<const void> PlanCache::find(const PlanKey& key) {
  auto it = entries_.find(key);
  if (it == entries_.end()) return nullptr;
  order_.splice(order_.begin(), order_, it->second.position);
  return it->second.plan;
}

void PlanCache::insert(const PlanKey& key, std::shared_ptr<const void> plan) {
  if (auto it = entries_.find(key); it != entries_.end()) {
    it->second.plan = std::move(plan);
    order_.splice(order_.begin(), order_, it->second.position);
    return;
  }
  if (entries_.size() >= kCapacity) {
    entries_.erase(order_.back());
    order_.pop_back();
  }
  order_.push_front(key);
  entries_.emplace(key, Entry{std::move(plan), order_.begin()});
}

void add_context_settings(PlanKey& key, const Context& ctx) {
  const ContextOptions& o = ctx.options();
  key.add(static_cast<std::int64_t>(
              o.workspace_limit_bytes))  // a bijection, so distinct limits stay distinct
      .add(o.deterministic ? 1 : 0)
      .add(static_cast<std::int64_t>(o.algo_search))
      .add(available_threads());
}

}  // namespace dlrt::detail
