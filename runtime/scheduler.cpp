// The scheduler's CPU executors and its trace writer.
#include "runtime/scheduler.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <exception>
#include <fstream>
#include <functional>
#include <sstream>

#include "dlrt/error.hpp"
#include "runtime/log.hpp"
#include "runtime/parallel.hpp"
#include "runtime/validate.hpp"

namespace dlrt {

const char* to_string(Executor executor) noexcept {
  switch (executor) {
    case Executor::Default:
      return "default";
    case Executor::Sequential:
      return "sequential";
    case Executor::CpuTasks:
      return "cpu_tasks";
    case Executor::CudaStreams:
      return "cuda_streams";
    case Executor::CudaGraph:
      return "cuda_graph";
  }
  return "unknown";
}

Executor executor_from_string(const std::string& name) {
  for (Executor e : {Executor::Default, Executor::Sequential, Executor::CpuTasks,
                     Executor::CudaStreams, Executor::CudaGraph})
    if (name == to_string(e)) return e;
  detail::invalid_argument("executor_from_string", "name", name,
                           "must be default, sequential, cpu_tasks, cuda_streams or cuda_graph");
}

namespace detail {
namespace {

using Clock = std::chrono::steady_clock;

double microseconds_since(Clock::time_point start) {
  return std::chrono::duration<double, std::micro>(Clock::now() - start).count();
}

void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// ---- the trace file ------------------------------------------------------------

// Plays kept for the trace file: a long training run with DLRT_TRACE set
// keeps its latest plays rather than growing without bound.
constexpr std::size_t kMaxTracedPlays = 256;

struct TraceFile {
  std::mutex mutex;
  std::string path;
  std::deque<Trace> plays;
  std::atomic<bool> on{false};

  static TraceFile& instance() {
    static TraceFile* file = [] {
      auto* f = new TraceFile;  // lives until exit: plays may be stored from static destructors
      if (const char* env = std::getenv("DLRT_TRACE"); env != nullptr && *env != '\0') {
        f->path = env;
        f->on = true;
      }
      return f;
    }();
    return *file;
  }

  void append(Trace trace) {
    std::lock_guard lock(mutex);
    if (path.empty()) return;
    plays.push_back(std::move(trace));
    if (plays.size() > kMaxTracedPlays) plays.pop_front();
    const std::vector<Trace> all(plays.begin(), plays.end());
    std::ofstream out(path, std::ios::trunc);
    out << to_chrome_json(all);
    if (!out) log(LogLevel::Warn, "DLRT_TRACE: cannot write ", path);
  }
};

void json_string(std::ostringstream& out, const std::string& text) {
  out << '"';
  for (char c : text) {
    if (c == '"' || c == '\\') {
      out << '\\' << c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buffer[8];
      std::snprintf(buffer, sizeof buffer, "\\u%04x", c);
      out << buffer;
    } else {
      out << c;
    }
  }
  out << '"';
}

}  // namespace

// ---- the graph ---------------------------------------------------------------------

std::int32_t TaskGraph::add(std::string name, std::vector<std::int32_t> predecessors, Body body) {
  const auto index = static_cast<std::int32_t>(nodes_.size());
  std::sort(predecessors.begin(), predecessors.end());
  predecessors.erase(std::unique(predecessors.begin(), predecessors.end()), predecessors.end());
  for (std::int32_t p : predecessors) {
    if (p < 0 || p >= index)
      throw Error(Error::Kind::Internal, "TaskGraph::add: node '" + name + "' names predecessor " +
                                             std::to_string(p) + ", not a node added before it");
    nodes_[p].successors.push_back(index);
  }
  nodes_.push_back({std::move(name), std::move(predecessors), {}, std::move(body)});
  return index;
}

void TaskGraph::play(Executor executor, int threads, const void* bindings,
                     PlayRecord* record) const {
  if (record != nullptr) {
    record->executor = executor;
    record->start_us.assign(nodes_.size(), 0.0);
    record->end_us.assign(nodes_.size(), 0.0);
    record->worker.assign(nodes_.size(), 0);
  }
  if (executor == Executor::CpuTasks && threads > 1) {
    play_tasks(threads, bindings, record);
    return;
  }
  const Clock::time_point start = Clock::now();
  for (std::size_t i = 0; i < nodes_.size(); ++i) {
    if (record != nullptr) record->start_us[i] = microseconds_since(start);
    nodes_[i].body(bindings);
    if (record != nullptr) record->end_us[i] = microseconds_since(start);
  }
}

void TaskGraph::play_tasks(int threads, const void* bindings, PlayRecord* record) const {
  const std::int32_t count = size();
  std::vector<std::atomic<std::int32_t>> pending(nodes_.size());
  std::vector<std::int32_t> ready;  // a min-heap of node indices
  ready.reserve(nodes_.size());
  for (std::int32_t i = 0; i < count; ++i) {
    pending[i].store(static_cast<std::int32_t>(nodes_[i].predecessors.size()),
                     std::memory_order_relaxed);
    if (nodes_[i].predecessors.empty()) ready.push_back(i);
  }
  std::make_heap(ready.begin(), ready.end(), std::greater<>());

  std::mutex mutex;  // guards `ready` and `error`
  std::exception_ptr error;
  std::atomic<std::int32_t> finished{0};
  std::atomic<bool> stop{false};
  // Bumped (under the mutex) whenever `ready` gains a node or the play
  // ends, so that an idle worker sleeps exactly until there may be work.
  std::atomic<std::uint32_t> signal{0};
  const Clock::time_point start = Clock::now();

  auto wake_all = [&] {
    {
      std::lock_guard lock(mutex);
      signal.fetch_add(1, std::memory_order_release);
    }
    signal.notify_all();
  };

  auto worker = [&](int slot) {
    for (;;) {
      std::int32_t node = -1;
      std::uint32_t seen = 0;
      {
        std::lock_guard lock(mutex);
        seen = signal.load(std::memory_order_acquire);
        if (!ready.empty() && !stop.load(std::memory_order_relaxed)) {
          std::pop_heap(ready.begin(), ready.end(), std::greater<>());
          node = ready.back();
          ready.pop_back();
        }
      }
      if (node < 0) {
        if (stop.load(std::memory_order_acquire) ||
            finished.load(std::memory_order_acquire) == count)
          return;
        // A node takes tens of microseconds: spin about that long before
        // sleeping, so that the next step's node starts without a wake-up.
        for (int i = 0; i < 4000 && signal.load(std::memory_order_acquire) == seen; ++i)
          cpu_relax();
        if (signal.load(std::memory_order_acquire) == seen) signal.wait(seen);
        continue;
      }
      try {
        if (record != nullptr) record->start_us[node] = microseconds_since(start);
        nodes_[node].body(bindings);
        if (record != nullptr) {
          record->end_us[node] = microseconds_since(start);
          record->worker[node] = slot;
        }
      } catch (...) {
        {
          std::lock_guard lock(mutex);
          if (!error) error = std::current_exception();
          stop.store(true, std::memory_order_release);
        }
        wake_all();
        return;
      }
      bool pushed = false;
      for (std::int32_t next : nodes_[node].successors)
        if (pending[next].fetch_sub(1, std::memory_order_acq_rel) == 1) {
          std::lock_guard lock(mutex);
          ready.push_back(next);
          std::push_heap(ready.begin(), ready.end(), std::greater<>());
          signal.fetch_add(1, std::memory_order_release);
          pushed = true;
        }
      const bool last = finished.fetch_add(1, std::memory_order_acq_rel) + 1 == count;
      if (last)
        wake_all();
      else if (pushed)
        signal.notify_all();
    }
  };

  // One chunk per worker: if the pool is busy (or this is a nested call)
  // the chunks run one after another on this thread, and the first does
  // every node, since a worker waits only while another is running one.
  parallel_for(0, threads, 1, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t slot = begin; slot < end; ++slot) worker(static_cast<int>(slot));
  });
  if (error) std::rethrow_exception(error);
}

// ---- traces ------------------------------------------------------------------------

Trace make_trace(const TaskGraph& graph, const PlayRecord& record) {
  Trace trace;
  trace.graph = graph.name();
  trace.executor = to_string(record.executor);
  const std::int32_t count = graph.size();
  trace.events.reserve(count);
  trace.predecessors.reserve(count);
  for (std::int32_t i = 0; i < count; ++i) {
    TraceEvent event;
    event.name = graph.node_name(i);
    event.track = std::string(record.track) + " " + std::to_string(record.worker[i]);
    event.start_us = record.start_us[i];
    event.end_us = record.end_us[i];
    event.node = i;
    trace.events.push_back(std::move(event));
    trace.predecessors.push_back(graph.predecessors(i));
  }
  return trace;
}

bool tracing_to_file() { return TraceFile::instance().on.load(std::memory_order_relaxed); }

void PlayHistory::store(const TaskGraph& graph, PlayRecord record) {
  if (tracing_to_file()) TraceFile::instance().append(make_trace(graph, record));
  std::lock_guard lock(mutex_);
  graph_ = &graph;
  record_ = std::move(record);
}

Trace PlayHistory::last() const {
  std::lock_guard lock(mutex_);
  if (graph_ == nullptr) return {};
  return make_trace(*graph_, record_);
}

}  // namespace detail

std::string to_chrome_json(const std::vector<Trace>& traces) {
  std::ostringstream out;
  out.precision(3);
  out << std::fixed << "{\"displayTimeUnit\":\"ms\",\"traceEvents\":[";
  bool first = true;
  auto separator = [&] {
    if (!first) out << ",\n";
    first = false;
  };
  double offset_us = 0;  // plays follow one another on the timeline
  for (std::size_t p = 0; p < traces.size(); ++p) {
    const Trace& trace = traces[p];
    const int pid = static_cast<int>(p) + 1;
    separator();
    out << "{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":" << pid << ",\"args\":{\"name\":";
    detail::json_string(out, trace.graph + " [" + trace.executor + "]");
    out << "}}";
    std::vector<std::string> tracks;
    double end = 0;
    for (const TraceEvent& e : trace.events) {
      auto it = std::find(tracks.begin(), tracks.end(), e.track);
      const int tid = static_cast<int>(it - tracks.begin());
      if (it == tracks.end()) {
        tracks.push_back(e.track);
        separator();
        out << "{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":" << pid << ",\"tid\":" << tid
            << ",\"args\":{\"name\":";
        detail::json_string(out, e.track);
        out << "}}";
      }
      separator();
      out << "{\"ph\":\"X\",\"name\":";
      detail::json_string(out, e.name);
      out << ",\"pid\":" << pid << ",\"tid\":" << tid << ",\"ts\":" << offset_us + e.start_us
          << ",\"dur\":" << std::max(0.0, e.end_us - e.start_us) << ",\"args\":{\"node\":" << e.node
          << "}}";
      end = std::max(end, e.end_us);
    }
    offset_us += end + 10;
  }
  out << "]}\n";
  return out.str();
}

void trace_to(const std::string& path) {
  detail::TraceFile& file = detail::TraceFile::instance();
  std::lock_guard lock(file.mutex);
  file.path = path;
  file.plays.clear();
  file.on = !path.empty();
}

}  // namespace dlrt
