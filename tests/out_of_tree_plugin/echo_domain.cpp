// echo: a whole domain built out of tree (tests/integration/test_out_of_tree.py): a task that
// reads words from a JSONL data file and asks for each to be repeated, a reward that judges the
// repetition, and (beside the library) an eval preset, echo.eval.toml. With no host rebuild it
// works with `warmup run`, `warmup eval --tasks echo` and `warmup score --task echo`.
#include <fstream>

#include "warmup/sdk.h"

namespace {

class EchoTask final : public warmup::Task {
 public:
  explicit EchoTask(const warmup::PluginInit& init) {
    warmup::Options o(init);
    data_file_ = o.get<std::string>("data_file", "");  // JSONL of {"word": "..."}; relative to the experiment
    prompt_ = o.get<std::string>("prompt", "Repeat the word: {word}\n");
    if (data_file_.empty()) o.fail("data_file", "is required (a JSONL file of {\"word\": ...})");
    if (!init.base_dir.empty() && data_file_[0] != '/') data_file_ = init.base_dir + "/" + data_file_;
    o.finish();
  }
  std::vector<std::string> splits() const override { return {"test"}; }
  std::vector<warmup::Example> examples(const std::string& split) override {
    if (split != "test") throw warmup::ConfigError("echo has no split '" + split + "' (test)");
    std::ifstream f(data_file_);
    if (!f) throw warmup::DataError(data_file_ + ": cannot read");
    std::vector<warmup::Example> out;
    std::string line;
    for (size_t n = 1; std::getline(f, line); ++n) {
      if (line.empty()) continue;
      std::string where = data_file_ + ":" + std::to_string(n);
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(line);
      } catch (const std::exception&) {
        throw warmup::DataError(where + ": not valid JSON");
      }
      std::string word = warmup::json_field<std::string>(j, "word", where);
      warmup::Example e;
      e.id = "echo/test/" + std::to_string(out.size());
      e.prompt = prompt_;
      e.prompt.replace(e.prompt.find("{word}"), 6, word);
      e.reference = word;
      e.metadata = {{"length", word.size() < 5 ? "short" : "long"}};
      out.push_back(std::move(e));
    }
    return out;
  }

 private:
  std::string data_file_, prompt_;
};

class EchoMatch final : public warmup::Reward {
 public:
  explicit EchoMatch(const warmup::PluginInit& init) {
    warmup::Options o(init);
    o.finish();
  }
  warmup::RewardResult score(const warmup::Example& ex, const std::string& text) const override {
    std::string t = text;
    while (!t.empty() && (t.back() == '\n' || t.back() == ' ')) t.pop_back();
    warmup::RewardResult r;
    r.correct = t == ex.reference;
    r.value = *r.correct ? 1.0 : 0.0;
    r.extracted_answer = t;
    return r;
  }
};

}  // namespace

WARMUP_PLUGIN(warmup::entry<warmup::Task, EchoTask>("echo", "0.1.0", "out-of-tree test domain: repeat a word"),
              warmup::entry<warmup::Reward, EchoMatch>("echo_match", "0.1.0", "out-of-tree test domain: the word, exactly"))
