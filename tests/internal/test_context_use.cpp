// The Context's one-thread-at-a-time rule (ContextUse), its moved-from
// checks and its workspace, seen from inside the runtime.
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "dlrt/dlrt.hpp"
#include "runtime/context_impl.hpp"
#include "support/test_support.hpp"

namespace dlrt {
namespace {

using detail::ContextUse;

TEST(ContextUse, TheSameThreadMayNest) {
  Context ctx;
  {
    ContextUse outer(ctx, "outer");
    ContextUse inner(ctx, "inner");
    EXPECT_EQ(ctx.impl().user_depth, 2);
    EXPECT_EQ(ctx.impl().user.load(), std::this_thread::get_id());
  }
  EXPECT_EQ(ctx.impl().user_depth, 0);
  EXPECT_EQ(ctx.impl().user.load(), std::thread::id{});
}

TEST(ContextUse, AnotherThreadIsRefusedWhileTheFirstIsInside) {
  Context ctx;
  std::promise<void> entered, leave;
  std::thread holder([&] {
    ContextUse use(ctx, "conv2d_forward");
    entered.set_value();
    leave.get_future().wait();
  });
  entered.get_future().wait();
  EXPECT_TRUE(test::throws_error(
      [&] { ContextUse use(ctx, "pool2d_forward"); }, Error::Kind::InvalidArgument,
      {"pool2d_forward", "'ctx'", "one thread at a time", "in use by another thread"}));
  // The Context's own members follow the same rule.
  EXPECT_TRUE(test::throws_error([&] { ctx.set_workspace_limit(1); }, Error::Kind::InvalidArgument,
                                 {"Context::set_workspace_limit", "one thread at a time"}));
  EXPECT_NE(ctx.options().workspace_limit_bytes, 1u) << "a refused call changes nothing";
  EXPECT_TRUE(test::throws_error([&] { ctx.synchronize(); }, Error::Kind::InvalidArgument,
                                 {"Context::synchronize", "'ctx'"}));
  leave.set_value();
  holder.join();
  ContextUse now_free(ctx, "pool2d_forward");  // released by the other thread
  EXPECT_EQ(ctx.impl().user_depth, 1);
}

TEST(ContextUse, AnExceptionReleasesTheContext) {
  Context ctx;
  try {
    ContextUse use(ctx, "op");
    throw Error(Error::Kind::Unsupported, "an engine declined");
  } catch (const Error&) {
  }
  std::thread other([&] { EXPECT_NO_THROW(ContextUse(ctx, "op")); });
  other.join();
}

TEST(ContextUse, NeverTwoThreadsInsideAtOnce) {
  Context ctx;
  std::atomic<int> inside{0}, overlaps{0}, entries{0}, refusals{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 2000; ++i) {
        try {
          ContextUse use(ctx, "op");
          if (inside.fetch_add(1) != 0) overlaps.fetch_add(1);
          ++ctx.impl().user_depth;  // the owner's private state: a race if two got in
          --ctx.impl().user_depth;
          inside.fetch_sub(1);
          entries.fetch_add(1);
        } catch (const Error& e) {
          if (e.kind() == Error::Kind::InvalidArgument) refusals.fetch_add(1);
        }
      }
    });
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(overlaps.load(), 0);
  EXPECT_EQ(entries.load() + refusals.load(), 8000);
  EXPECT_GT(entries.load(), 0);
  EXPECT_EQ(ctx.impl().user.load(), std::thread::id{});
}

TEST(ContextUse, AMovedFromContextIsRefused) {
  Context ctx;
  Context moved(std::move(ctx));
  EXPECT_TRUE(test::throws_error([&] { ContextUse use(ctx, "conv2d_forward"); },
                                 Error::Kind::InvalidArgument,
                                 {"conv2d_forward", "argument 'ctx' is a moved-from Context"}));
  EXPECT_TRUE(test::throws_error([&] { (void)ctx.impl(); }, Error::Kind::InvalidArgument,
                                 {"moved-from Context"}));
  ContextUse fine(moved, "conv2d_forward");
}

TEST(ContextWorkspace, ALowerLimitGivesTheWorkspaceBack) {
  Context ctx;
  const MemoryStats before = memory_stats(Device::cpu());
  void* first = ctx.impl().workspace(std::size_t{4} << 20);
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(ctx.impl().workspace_bytes(), std::size_t{4} << 20);
  EXPECT_EQ(ctx.impl().workspace(1024), first) << "a smaller request reuses the buffer";
  EXPECT_GE(memory_stats(Device::cpu()).in_use_bytes, before.in_use_bytes + (std::size_t{4} << 20));

  ctx.set_workspace_limit(std::size_t{8} << 20);  // higher: kept
  EXPECT_EQ(ctx.impl().workspace_bytes(), std::size_t{4} << 20);
  ctx.set_workspace_limit(std::size_t{1} << 20);  // lower than the buffer: given back
  EXPECT_EQ(ctx.impl().workspace_bytes(), 0u);
  EXPECT_EQ(ctx.options().workspace_limit_bytes, std::size_t{1} << 20);
  EXPECT_EQ(memory_stats(Device::cpu()).in_use_bytes, before.in_use_bytes);
  EXPECT_NE(ctx.impl().workspace(std::size_t{1} << 20), nullptr);
}

TEST(ContextWorkspace, ARequestOverTheLimitIsAnInternalError) {
  ContextOptions options;
  options.workspace_limit_bytes = 4096;
  Context ctx(Device::cpu(), options);
  EXPECT_TRUE(test::throws_error([&] { (void)ctx.impl().workspace(4097); }, Error::Kind::Internal,
                                 {"4097", "workspace limit of 4096", "workspace_limit_bytes"}));
  EXPECT_EQ(ctx.impl().workspace_bytes(), 0u);
  EXPECT_NE(ctx.impl().workspace(4096), nullptr);
}

TEST(ContextWorkspace, WorkspaceFailureIsOutOfMemoryNamingTheWorkspace) {
  Context ctx;
  debug::fail_next_allocations(Device::cpu(), 1);
  EXPECT_TRUE(test::throws_error([&] { (void)ctx.impl().workspace(4096); },
                                 Error::Kind::OutOfMemory, {"Context workspace", "4096"}));
  EXPECT_EQ(ctx.impl().workspace_bytes(), 0u);
}

}  // namespace
}  // namespace dlrt
