// ref_logprob: an algorithm built out of tree that uses the model (warmup/model.h, LibTorch
// through the installed package's warmup::torch). For the first `limit` examples of each task's
// eval split it records the summed log-probability of the reference given the prompt under the
// stage's model: ref_logprob/<task>/<i> and ref_logprob/<task>/mean (step 0). Built and run by
// tests/integration/test_out_of_tree.py.
#include "warmup/model.h"
#include "warmup/sdk.h"

namespace {

class RefLogprob final : public warmup::Algorithm {
 public:
  explicit RefLogprob(const warmup::PluginInit& init) {
    warmup::Options o(init);
    limit_ = o.get<int64_t>("limit", 4, warmup::at_least(1).at_most(1000));
    o.finish();
  }
  void run(warmup::StageContext& ctx) override {
    warmup::Policy& policy = warmup::policy(ctx);
    torch::NoGradGuard no_grad;
    policy.module().eval();
    for (const auto& t : ctx.tasks()) {
      double total = 0;
      int64_t n = 0;
      for (const auto& e : t.task->examples(ctx.eval().split)) {
        if (n == limit_) break;
        std::vector<int32_t> prompt = policy.encode(e.prompt), ref = policy.encode(e.reference);
        if (prompt.empty() || ref.empty()) throw warmup::DataError(e.id + ": empty prompt or reference");
        std::vector<int64_t> ids(prompt.begin(), prompt.end());
        ids.insert(ids.end(), ref.begin(), ref.end());
        const int64_t T = int64_t(ids.size()) - 1;
        auto x = torch::tensor(std::vector<int64_t>(ids.begin(), ids.end() - 1)).unsqueeze(0).to(policy.device());
        auto y = torch::tensor(std::vector<int64_t>(ids.begin() + 1, ids.end())).unsqueeze(0).to(policy.device());
        torch::Tensor lp = policy.token_logprobs_at(x, y, torch::ones_like(x), 1.0);  // (1, T)
        double s = lp.index({0, torch::indexing::Slice(int64_t(prompt.size()) - 1, T)}).sum().item<double>();
        ctx.metric("ref_logprob/" + t.name + "/" + std::to_string(n), 0, s);
        total += s, ++n;
      }
      if (n) ctx.metric("ref_logprob/" + t.name + "/mean", 0, total / double(n));
    }
  }

 private:
  int64_t limit_;
};

}  // namespace

WARMUP_PLUGIN(warmup::entry<warmup::Algorithm, RefLogprob>("ref_logprob", "0.1.0",
                                                           "out-of-tree test algorithm: log p(reference | prompt) under the model"))
