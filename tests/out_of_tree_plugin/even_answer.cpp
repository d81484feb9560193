// even_answer: `even` when the last integer in the completion is even, `odd` otherwise, `missing`
// when there is none. Exists to be built out of tree by tests/integration/test_out_of_tree.py.
#include <cctype>

#include "warmup/sdk.h"

namespace {

class EvenAnswer final : public warmup::Reward {
 public:
  explicit EvenAnswer(const warmup::PluginInit& init) {
    warmup::Options o(init);
    even_ = o.get<double>("even", 1.0);
    odd_ = o.get<double>("odd", 0.0);
    missing_ = o.get<double>("missing", -1.0);
    o.finish();
  }
  warmup::RewardResult score(const warmup::Example&, const std::string& text) const override {
    warmup::RewardResult r;
    int last_digit = -1;
    for (size_t i = 0; i < text.size(); ++i)
      if (std::isdigit(static_cast<unsigned char>(text[i])) &&
          (i + 1 == text.size() || !std::isdigit(static_cast<unsigned char>(text[i + 1]))))
        last_digit = text[i] - '0';
    if (last_digit < 0) {
      r.value = missing_;
      r.error = "no integer";
      return r;
    }
    r.value = last_digit % 2 == 0 ? even_ : odd_;
    r.breakdown["last_digit"] = last_digit;
    return r;
  }

 private:
  double even_, odd_, missing_;
};

}  // namespace

WARMUP_PLUGIN(warmup::entry<warmup::Reward, EvenAnswer>("even_answer", "0.3.0",
                                                        "out-of-tree test reward: parity of the last integer"))
