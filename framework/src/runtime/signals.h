// SIGINT/SIGTERM handling for a run. The signals are blocked in every thread and received by one
// watcher thread (sigwait), so no store code runs in a signal handler. First signal: request a
// stop (algorithms poll it between steps). A second signal, or no stop within the grace period:
// `on_force(signo)` runs on the watcher thread (it marks the run interrupted) and the process
// exits with 128 + signo.
#pragma once

#include <atomic>
#include <functional>
#include <thread>

namespace warmup {

class SignalWatcher {
 public:
  // Must be constructed before any other thread is started (the mask is inherited).
  SignalWatcher(double grace_seconds, std::function<void(int)> on_force);
  ~SignalWatcher();
  SignalWatcher(const SignalWatcher&) = delete;

  bool stop_requested() const { return signo_.load() != 0; }
  int signal_number() const { return signo_.load(); }

 private:
  void loop();
  double grace_;
  std::function<void(int)> on_force_;
  std::atomic<int> signo_{0};
  std::atomic<bool> done_{false};
  std::thread thread_;
};

}  // namespace warmup
