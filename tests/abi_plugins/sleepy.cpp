// Test plugin: an algorithm that records metric `sleepy/step` every `interval_ms` for `steps`
// steps, checkpointing its step count so a resumed run continues where it stopped. With
// `ignore_stop = true` it does not poll stop_requested (tests the forced stop); `fail_at` throws.
#include <chrono>
#include <fstream>
#include <thread>

#include "warmup/sdk.h"

namespace {

class Sleepy final : public warmup::Algorithm {
 public:
  explicit Sleepy(const warmup::PluginInit& init) {
    warmup::Options o(init);
    steps_ = o.get<int64_t>("steps", 100);
    interval_ms_ = o.get<int64_t>("interval_ms", 20);
    ignore_stop_ = o.get<bool>("ignore_stop", false);
    fail_at_ = o.get<int64_t>("fail_at", -1);
    o.finish();
  }

  void run(warmup::StageContext& ctx) override {
    auto ckpt = ctx.checkpoint_dir() / "step.txt";
    int64_t start = 0;
    if (ctx.resuming()) {
      std::ifstream in(ckpt);
      in >> start;
      ctx.log(warmup::LogLevel::kInfo, "resuming at step " + std::to_string(start));
    }
    for (int64_t step = start; step < steps_; ++step) {
      if (!ignore_stop_ && ctx.stop_requested()) return;
      if (step == fail_at_) throw std::runtime_error("failing at step " + std::to_string(step) + " as asked");
      std::this_thread::sleep_for(std::chrono::milliseconds(interval_ms_));
      ctx.metric("sleepy/step", step, double(step));
      ctx.flush();
      std::ofstream(ckpt) << step + 1;
    }
  }

 private:
  int64_t steps_, interval_ms_, fail_at_;
  bool ignore_stop_;
};

}  // namespace

WARMUP_PLUGIN(warmup::entry<warmup::Algorithm, Sleepy>("sleepy", "0.0.1", "test: sleeps and logs steps"))
