// The report's data (report/report_data.h): which completions a capped report keeps, the
// paper-style table read from eval metrics, and the object built from a real store file with NaN
// metrics and an unparseable completion.
#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <set>

#include "helpers.h"
#include "report/export.h"
#include "report/report_data.h"
#include "report/report_html.h"
#include "store/store.h"

using namespace warmup;
using nlohmann::json;
using test::TempDir;

namespace {

// `steps` steps of `per_step` samples for one (run, stage) in groups of `group` (one example
// each), ids continuing the index's.
void add_stage(std::vector<SampleKey>& index, int64_t run, const std::string& stage, int steps, int per_step, int group) {
  for (int s = 1; s <= steps; ++s)
    for (int i = 0; i < per_step; ++i)
      index.push_back({int64_t(index.size()) + 1, run, stage, s, "ex" + std::to_string(i / group)});
}

std::set<int64_t> steps_of(const std::vector<SampleKey>& index, const std::vector<int64_t>& ids, const std::string& stage) {
  std::set<int64_t> out;
  for (int64_t id : ids)
    if (index[size_t(id - 1)].stage == stage) out.insert(index[size_t(id - 1)].step);
  return out;
}

json metric(int64_t run, const std::string& stage, const std::string& key, double v, const std::string& flag = "") {
  return {{"run", run}, {"stage", stage}, {"key", key}, {"step", 0}, {"value", flag.empty() ? json(v) : json(nullptr)}, {"flag", flag}};
}

}  // namespace

TEST_CASE("select_samples keeps everything under the cap, else whole steps spread over each stage") {
  std::vector<SampleKey> index;
  add_stage(index, 1, "rl", 100, 10, 10);   // 1000 samples: 100 GRPO steps of one group of 10
  add_stage(index, 1, "eval", 1, 1000, 4);  // 1000 samples at one step: 250 examples x 4 samples
  CHECK(select_samples(index, 5000).size() == 2000);
  auto ids = select_samples(index, 200);
  CHECK(std::is_sorted(ids.begin(), ids.end()));
  CHECK(ids.size() == 200);
  auto rl = steps_of(index, ids, "rl");
  CHECK(rl.size() == 10);                    // 100 of the stage's share: 10 whole steps of 10
  CHECK(*rl.begin() == 1);                   // the first step and the last are kept
  CHECK(*rl.rbegin() == 100);
  size_t rl_rows = 0;
  for (int64_t id : ids) rl_rows += index[size_t(id - 1)].stage == "rl";
  CHECK(rl_rows == 100);
  // The evaluation keeps its first 100 rows.
  std::vector<int64_t> eval_ids;
  for (int64_t id : ids) if (index[size_t(id - 1)].stage == "eval") eval_ids.push_back(id);
  REQUIRE(eval_ids.size() == 100);
  CHECK(eval_ids.front() == 1001);
  CHECK(eval_ids.back() == 1100);
  // A tiny stage still gets one sample; a zero cap none.
  index.clear();
  add_stage(index, 1, "big", 1, 1000, 1);
  add_stage(index, 2, "small", 1, 1, 1);
  ids = select_samples(index, 10);
  CHECK(steps_of(index, ids, "small").size() == 1);
  CHECK(select_samples(index, 0).empty());
  // GRPO groups of 8 are never cut: a share of 20 holds two whole groups; a share smaller than one
  // group still shows one whole group.
  index.clear();
  add_stage(index, 1, "rl", 4, 16, 8);
  add_stage(index, 1, "eval", 1, 64, 4);
  for (int64_t cap : {40, 6}) {
    ids = select_samples(index, cap);
    std::map<std::pair<int64_t, std::string>, int> per_group;
    for (int64_t id : ids) ++per_group[{index[size_t(id - 1)].step, index[size_t(id - 1)].stage + index[size_t(id - 1)].example_id}];
    for (const auto& [g, count] : per_group) CHECK(count == (g.second.rfind("rl", 0) == 0 ? 8 : 4));
    CHECK(steps_of(index, ids, "rl").size() >= 1);
  }
  CHECK(select_samples(index, 40).size() == 16 + 20);  // rl: share 20 -> 2 groups; eval: share 20 -> 5 groups
}

TEST_CASE("eval_table: accuracy_mean ± accuracy_std per stage and task, groups in numeric order") {
  json m = json::array({
      metric(1, "eval-base", "eval/kk/accuracy", 0.31), metric(1, "eval-base", "eval/kk/accuracy_mean", 0.3),
      metric(1, "eval-base", "eval/kk/accuracy_std", 0.02), metric(1, "eval-base", "eval/kk/count", 400),
      metric(1, "eval-base", "eval/kk/n_people=10/accuracy", 0.1), metric(1, "eval-base", "eval/kk/n_people=9/accuracy", 0.2),
      metric(1, "eval-base", "eval/math/accuracy", 0.5),  // no _mean/_std (one sample): accuracy, std null
      metric(1, "sft-base", "train/loss", 1.0),            // a stage without eval metrics is not a row
      metric(2, "eval-warm", "eval/kk/accuracy", 0, "nan"),
  });
  json stages = json::array({{{"run", 1}, {"stage", "sft-base"}}, {{"run", 1}, {"stage", "eval-base"}},
                             {{"run", 2}, {"stage", "eval-warm"}}});
  json t = eval_table(m, stages, true);
  CHECK(t["tasks"] == json({"kk", "math"}));
  REQUIRE(t["rows"].size() == 2);
  const json& base = t["rows"][0];
  CHECK(base["label"] == "run 1 eval-base");
  CHECK(base["cells"]["kk"]["mean"] == 0.3);
  CHECK(base["cells"]["kk"]["std"] == 0.02);
  CHECK(base["cells"]["kk"]["count"] == 400);
  CHECK(base["cells"]["math"]["mean"] == 0.5);
  CHECK(base["cells"]["math"]["std"].is_null());
  CHECK(t["rows"][1]["cells"]["kk"]["mean"].is_null());
  CHECK(t["rows"][1]["cells"]["kk"]["flag"] == "nan");
  REQUIRE(t["breakdowns"].size() == 1);
  CHECK(t["breakdowns"][0]["group"] == "n_people");
  CHECK(t["breakdowns"][0]["values"] == json({"9", "10"}));
  CHECK(eval_table(m, stages, false)["rows"][0]["label"] == "eval-base");
}

TEST_CASE("report_data from a store: series with NaN as null and a flag, samples with shared prompts") {
  TempDir dir;
  Store store(dir.path / "s.sqlite");
  RunStart start;
  start.experiment = "exp";
  start.config_toml = "[experiment]\nname = \"exp\"\n";
  start.config_hash = "h";
  int64_t run = store.create_run(start);
  int64_t st = store.begin_stage(run, 0, "rl", "grpo");
  store.write_metrics(run, {{"rl", "train/loss", 1, 2.0, 10.0}, {"rl", "train/loss", 2, std::nan(""), 11.0},
                            {"rl", "train/loss", 3, 1.5, 12.0}});
  std::vector<SampleRecord> rows(3);
  for (size_t i = 0; i < rows.size(); ++i) {
    rows[i].step = 1, rows[i].task = "t", rows[i].example_id = "e1", rows[i].prompt = "p</script>";
    rows[i].completion = std::string(10, 'a' + char(i)), rows[i].reward = double(i);
  }
  store.write_samples(run, "rl", rows);
  store.end_stage(st, "finished", "");
  ReportOptions opt;
  opt.max_chars = 4;
  json d = report_data(store, {run}, opt);
  REQUIRE(d["series"].size() == 1);
  CHECK(d["series"][0]["step"] == json({1, 2, 3}));
  CHECK(d["series"][0]["value"][1].is_null());
  CHECK(d["series"][0]["flag"]["1"] == "nan");
  CHECK(d["samples"]["total"] == 3);
  CHECK(d["samples"]["prompts"].size() == 1);  // one prompt for the group
  CHECK(d["samples"]["rows"][2]["completion"] == "cccc");
  CHECK(d["samples"]["rows"][2]["chars"] == 10);
  CHECK(d["samples"]["note"].get<std::string>().find("cut at 4 characters") != std::string::npos);
  CHECK(d["runs"][0]["stages"][0]["name"] == "rl");
  // The page never lets a string close the data's <script> element (the prompt is cut at 4 too).
  std::string html = report_html(d, ChartsLibrary{});
  CHECK(html.find("p</s") == std::string::npos);
  CHECK(html.find("p\\u003c/s") != std::string::npos);
  CHECK(html.find("@@WARMUP_") == std::string::npos);
}

TEST_CASE("mlflow_name: MLflow's characters, and never a path out of the run folder") {
  CHECK(mlflow_name("eval-base/eval/kk/n_people=3/accuracy") == "eval-base/eval/kk/n_people:3/accuracy");
  CHECK(mlflow_name("eval/math/pass@4") == "eval/math/pass_4");
  CHECK(mlflow_name("../../etc/passwd") == "__/__/etc/passwd");
  CHECK(mlflow_name("stages.s.sft./../../x") == "stages.s.sft./__/__/x");
  CHECK(mlflow_name("//a//./b/") == "a/_/b");
  CHECK(mlflow_name("") == "_");
}
