#include "runtime/signals.h"

#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "util/log.h"

namespace warmup {
namespace {

sigset_t watched() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGUSR1);  // internal: wakes the watcher for shutdown
  return set;
}

}  // namespace

SignalWatcher::SignalWatcher(double grace_seconds, std::function<void(int)> on_force)
    : grace_(grace_seconds), on_force_(std::move(on_force)) {
  sigset_t set = watched();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  thread_ = std::thread([this] { loop(); });
}

SignalWatcher::~SignalWatcher() {
  done_ = true;
  pthread_kill(thread_.native_handle(), SIGUSR1);
  thread_.join();
}

void SignalWatcher::loop() {
  sigset_t set = watched();
  while (!done_) {
    int sig = 0;
    if (signo_ == 0) {
      if (sigwait(&set, &sig) != 0) continue;
    } else {
      timespec ts{static_cast<time_t>(grace_), 0};
      sig = sigtimedwait(&set, nullptr, &ts);
      if (sig < 0 && errno == EAGAIN && !done_) {
        log_warn("run did not stop within " + std::to_string(int(grace_)) + " s of the signal; stopping now");
        on_force_(signo_);
        _exit(128 + signo_);
      }
      if (sig < 0) continue;
    }
    if (sig == SIGUSR1 || done_) continue;
    if (signo_ == 0) {
      signo_ = sig;
      log_warn(std::string("received ") + (sig == SIGINT ? "SIGINT" : "SIGTERM") +
               ": stopping after the current step (send again to stop now)");
    } else {
      log_warn("second signal: stopping now");
      on_force_(sig);
      _exit(128 + signo_);
    }
  }
}

}  // namespace warmup
