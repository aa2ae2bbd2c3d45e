// The CPU threading layer through the public API: the thread setting, the
// BLAS that is loaded, and a child forked after dlrt's threads started.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>
#include <vector>

#include "support/test_support.hpp"

namespace dlrt {
namespace {

// Restores the thread setting a test changes.
class ThreadSetting {
public:
  ThreadSetting() : saved_(num_threads()) {}
  ~ThreadSetting() { set_num_threads(saved_); }
  ThreadSetting(const ThreadSetting&) = delete;
  ThreadSetting& operator=(const ThreadSetting&) = delete;

private:
  int saved_;
};

TEST(Threads, SettingIsValidated) {
  ThreadSetting keep;
  set_num_threads(3);
  EXPECT_EQ(num_threads(), 3);
  EXPECT_TRUE(test::throws_error([] { set_num_threads(0); }, Error::Kind::InvalidArgument,
                                 {"set_num_threads", "'threads'", "= 0", "[1, 1024]"}));
  EXPECT_TRUE(test::throws_error([] { set_num_threads(1025); }, Error::Kind::InvalidArgument,
                                 {"'threads'", "1025"}));
  EXPECT_EQ(num_threads(), 3);  // a refused value changes nothing
}

// Debian's alternatives resolve libopenblas.so.0 to whichever build has the
// highest priority (the pthreads one); dlrt must load the build it was
// linked and tuned for, whatever they say.
TEST(Threads, LoadedBlasIsTheBuildDlrtWasMadeFor) {
  const CpuBackendInfo info = cpu_backend_info();
  EXPECT_EQ(info.blas_threading, info.blas_expected_threading)
      << "loaded " << info.blas_library << " (" << info.blas << ")";
  EXPECT_FALSE(info.blas_library.empty());
  EXPECT_NE(info.blas.find("OpenBLAS"), std::string::npos) << info.blas;
  EXPECT_FALSE(info.forked_child);
}

// A convolution large enough to run on several threads, and a pooling op.
std::vector<float> run_ops(const Tensor& x, const Tensor& w) {
  Context ctx;
  Conv2dParams conv;
  conv.pad_h = conv.pad_w = 1;
  Tensor y(conv2d_output_shape(x.shape(), w.shape(), conv));
  conv2d_forward(ctx, x, w, nullptr, y, conv, Engine::Cpu);
  Pool2dParams pool;
  Tensor z(pool2d_output_shape(y.shape(), pool));
  pool2d_forward(ctx, y, z, pool, Engine::Cpu);
  return z.to_vector();
}

// libgomp's pool used to hang a child forked after it had started; dlrt's
// child runs everything serially instead, with the same results.
TEST(Threads, ForkedChildRunsOpsSerially) {
  ThreadSetting keep;
  set_num_threads(2);
  const Tensor x = test::random_tensor({4, 32, 40, 40}, 3),
               w = test::random_tensor({32, 32, 3, 3}, 4);
  const std::vector<float> parent = run_ops(x, w);  // starts the pool

  const pid_t child = fork();
  ASSERT_GE(child, 0) << "fork failed";
  if (child == 0) {
    // Only async-signal-safe calls would be strictly allowed here; dlrt's
    // promise is that its own ops work, so the child uses them and exits.
    int status = 0;
    try {
      const CpuBackendInfo info = cpu_backend_info();
      const std::vector<float> again = run_ops(x, w);
      if (!info.forked_child || num_threads() != 1) status = 2;
      // Serial sums may round differently from the parent's split GEMM.
      else if (!test::all_close(again, parent, 32 * 9))
        status = 3;
    } catch (...) {
      status = 4;
    }
    _exit(status);
  }
  int status = 0;
  pid_t done = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while ((done = waitpid(child, &status, WNOHANG)) == 0 &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  if (done == 0) {
    kill(child, SIGKILL);
    waitpid(child, &status, 0);
    FAIL() << "the forked child hung";
  }
  ASSERT_TRUE(WIFEXITED(status)) << "the child died by signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 0)
      << "2: not serial in the child, 3: different results, 4: an exception";
  EXPECT_FALSE(cpu_backend_info().forked_child);  // the parent is not a forked child
}

// More threads may change the order of float sums (the GEMM is split by
// output blocks chosen from the thread count), never the results beyond
// rounding; one thread count gives the same bits every time.
TEST(Threads, ThreadCountChangesOnlyRounding) {
  ThreadSetting keep;
  const Tensor x = test::random_tensor({3, 16, 33, 35}, 5),
               w = test::random_tensor({24, 16, 3, 3}, 6);
  set_num_threads(1);
  const std::vector<float> one = run_ops(x, w);
  set_num_threads(2);
  const std::vector<float> two = run_ops(x, w);
  EXPECT_TRUE(test::all_close(two, one, 16 * 9));
  EXPECT_TRUE(test::bitwise_equal(run_ops(x, w), two));
}

}  // namespace
}  // namespace dlrt
