// openai: a teacher that samples from any OpenAI-compatible endpoint (vLLM serving QwQ-32B, or
// `warmup serve`) through /v1/completions (raw prompts, as the paper) or /v1/chat/completions.
// Defaults are the paper's: n 4, temperature 0.6, top-p 0.95, top-k 40, max_tokens 8192, stop
// "</answer>" re-appended. Requests run `concurrency` at a time with retries and exponential
// backoff; with `cache` set, every finished prompt is appended to a JSONL file at once and
// skipped on restart, so a killed distillation resumes without sampling anything twice. Each
// prompt gets its own seed (seed + its index), so a resumed run gives what an uninterrupted one
// would have.
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <thread>

#include "plugin_common/paths.h"
#include "warmup/sdk.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

class OpenAITeacher final : public warmup::Teacher {
 public:
  explicit OpenAITeacher(const warmup::PluginInit& init) : log_(init) {
    warmup::Options o(init);
    base_url_ = o.get<std::string>("base_url", "http://127.0.0.1:8000/v1");  // up to and including /v1
    model_ = o.get<std::string>("model", "");            // empty: the first of GET /v1/models
    endpoint_ = o.get<std::string>("endpoint", "completions");  // completions | chat
    api_key_env_ = o.get<std::string>("api_key_env", "OPENAI_API_KEY");  // bearer token variable
    temperature_ = o.get<double>("temperature", 0.6, warmup::at_least(0));
    top_p_ = o.get<double>("top_p", 0.95, warmup::above(0).at_most(1));
    top_k_ = o.get<int64_t>("top_k", 40, warmup::at_least(-1));
    max_tokens_ = o.get<int64_t>("max_tokens", 8192, warmup::fits_in_memory(1, 16, "tokens of 16 bytes"));
    stop_ = o.get<std::vector<std::string>>("stop", {"</answer>"});
    reappend_stop_ = o.get<bool>("reappend_stop", true);  // put the (first) stop string back
    concurrency_ = o.get<int64_t>("concurrency", 8, warmup::at_least(1).at_most(1024, "(threads)"));      // requests in flight
    retries_ = o.get<int64_t>("retries", 5, warmup::at_least(0).at_most(30, "(the delay doubles each time)"));              // per request, on network errors and 429/5xx
    backoff_s_ = o.get<double>("backoff_s", 1.0, warmup::at_least(0).at_most(3600));         // first retry delay, doubled each time
    timeout_s_ = o.get<double>("timeout_s", 3600, warmup::above(0).at_most(7 * 86400));        // per request
    seed_ = o.get<int64_t>("seed", int64_t(init.seed));  // request seed = seed + prompt index
    cache_ = o.get<std::string>("cache", "");             // JSONL of finished prompts ("" = none)
    if (endpoint_ != "completions" && endpoint_ != "chat") o.fail("endpoint", "must be completions or chat");
    if (base_url_.rfind("http://", 0) != 0) o.fail("base_url", "must start with http:// (https is not supported)");
    o.finish();
    cache_ = warmup::common::resolve_path(cache_, init.base_dir);
    std::string rest = base_url_.substr(7);
    size_t slash = rest.find('/');
    host_ = "http://" + rest.substr(0, slash);
    prefix_ = slash == std::string::npos ? "" : rest.substr(slash);
    while (!prefix_.empty() && prefix_.back() == '/') prefix_.pop_back();
  }

  std::vector<std::vector<warmup::Completion>> complete(const std::vector<warmup::Example>& examples, int n) override {
    std::map<std::string, std::vector<warmup::Completion>> done = load_cache(n);
    std::vector<size_t> todo;
    for (size_t i = 0; i < examples.size(); ++i)
      if (!done.count(examples[i].id)) todo.push_back(i);
    log_.info() << "teacher: " << todo.size() << " prompts to sample, " << examples.size() - todo.size()
                << " already in the cache";
    if (!todo.empty() && model_.empty()) model_ = first_model();
    std::mutex mu;
    std::atomic<size_t> next{0}, finished{0};
    std::exception_ptr error;
    auto t0 = std::chrono::steady_clock::now();
    auto last_log = t0;
    auto worker = [&] {
      while (true) {
        size_t k = next++;
        if (k >= todo.size()) return;
        {
          std::lock_guard<std::mutex> l(mu);
          if (error) return;
        }
        try {
          const warmup::Example& e = examples[todo[k]];
          auto got = request(e, n, seed_ + int64_t(todo[k]));
          std::lock_guard<std::mutex> l(mu);
          append_cache(e.id, n, got);
          done[e.id] = std::move(got);
          size_t f = ++finished;
          auto now = std::chrono::steady_clock::now();
          if (now - last_log > std::chrono::seconds(2) || f == todo.size()) {
            last_log = now;
            double s = std::chrono::duration<double>(now - t0).count();
            double rate = double(f) / std::max(s, 1e-9);
            log_.info() << "teacher: " << f << "/" << todo.size() << " prompts, " << rate << " prompts/s, ETA "
                        << int(double(todo.size() - f) / std::max(rate, 1e-9)) << " s";
          }
        } catch (...) {
          std::lock_guard<std::mutex> l(mu);
          if (!error) error = std::current_exception();
        }
      }
    };
    std::vector<std::thread> pool;
    for (int64_t i = 0; i < std::min<int64_t>(concurrency_, int64_t(todo.size())); ++i) pool.emplace_back(worker);
    for (auto& t : pool) t.join();
    if (error) std::rethrow_exception(error);
    std::vector<std::vector<warmup::Completion>> out;
    for (const auto& e : examples) out.push_back(done.at(e.id));
    return out;
  }

 private:
  httplib::Client client() const {
    httplib::Client c(host_);
    c.set_connection_timeout(10);
    c.set_read_timeout(time_t(timeout_s_));
    c.set_write_timeout(60);
    if (const char* key = std::getenv(api_key_env_.c_str())) c.set_bearer_token_auth(key);
    return c;
  }

  std::string first_model() const {
    auto c = client();
    auto res = c.Get(prefix_ + "/models");
    if (!res || res->status != 200)
      throw warmup::DataError("teacher: GET " + base_url_ + "/models failed (" +
                              (res ? std::to_string(res->status) : httplib::to_string(res.error())) + ")");
    return json::parse(res->body).at("data").at(0).at("id").get<std::string>();
  }

  std::vector<warmup::Completion> request(const warmup::Example& e, int n, int64_t seed) const {
    json body = {{"model", model_}, {"n", n}, {"temperature", temperature_}, {"top_p", top_p_},
                 {"max_tokens", max_tokens_}, {"stop", stop_}, {"seed", seed}};
    if (top_k_ > 0) body["top_k"] = top_k_;
    if (endpoint_ == "chat") body["messages"] = json::array({{{"role", "user"}, {"content", e.prompt}}});
    else body["prompt"] = e.prompt;
    std::string path = prefix_ + (endpoint_ == "chat" ? "/chat/completions" : "/completions");
    double delay = backoff_s_;
    std::string last;
    for (int64_t attempt = 0; attempt <= retries_; ++attempt) {
      if (attempt > 0) {
        std::this_thread::sleep_for(std::chrono::duration<double>(delay));
        delay *= 2;
      }
      auto c = client();
      auto res = c.Post(path, body.dump(), "application/json");
      if (!res) {
        last = httplib::to_string(res.error());
        continue;
      }
      if (res->status == 429 || res->status >= 500) {
        last = "HTTP " + std::to_string(res->status);
        continue;
      }
      if (res->status != 200)
        throw warmup::DataError("teacher: " + base_url_ + " refused example " + e.id + " (HTTP " +
                                std::to_string(res->status) + "): " + res->body.substr(0, 500));
      json r = json::parse(res->body);
      std::vector<warmup::Completion> out(static_cast<size_t>(n));
      for (const auto& ch : r.at("choices")) {
        size_t i = ch.value("index", size_t(0));
        if (i >= out.size()) continue;
        warmup::Completion c;
        c.text = endpoint_ == "chat" ? ch.at("message").at("content").get<std::string>() : ch.at("text").get<std::string>();
        c.finish_reason = ch.value("finish_reason", std::string("stop"));
        if (reappend_stop_ && c.finish_reason == "stop" && !stop_.empty() && !ends_with_any(c.text)) c.text += stop_[0];
        out[i] = std::move(c);
      }
      return out;
    }
    throw warmup::DataError("teacher: " + base_url_ + " unreachable for example " + e.id + " after " +
                            std::to_string(retries_ + 1) + " attempts: " + last);
  }

  bool ends_with_any(const std::string& t) const {
    for (const auto& s : stop_)
      if (t.size() >= s.size() && t.compare(t.size() - s.size(), s.size(), s) == 0) return true;
    return false;
  }

  std::map<std::string, std::vector<warmup::Completion>> load_cache(int n) const {
    std::map<std::string, std::vector<warmup::Completion>> out;
    if (cache_.empty()) return out;
    std::ifstream in(cache_);
    std::string line;
    for (size_t ln = 1; std::getline(in, line); ++ln) {
      json j = json::parse(line, nullptr, false);
      if (j.is_discarded()) {  // a line cut by a kill: ignore it, it is sampled again
        log_.warn() << "teacher: " << cache_ << ":" << ln << " is incomplete; ignored";
        continue;
      }
      std::string where = cache_ + ":" + std::to_string(ln);
      if (warmup::json_field_or<int64_t>(j, "n", 0, where) != n) continue;
      std::vector<warmup::Completion> cs;
      auto completions = warmup::json_field<std::vector<json>>(j, "completions", where);
      for (size_t i = 0; i < completions.size(); ++i) {
        std::string at = where + ": completions[" + std::to_string(i) + "]";
        cs.push_back({warmup::json_field<std::string>(completions[i], "text", at),
                      warmup::json_field_or<std::string>(completions[i], "finish_reason", "stop", at), -1});
      }
      out[warmup::json_field<std::string>(j, "id", where)] = std::move(cs);
    }
    return out;
  }

  void append_cache(const std::string& id, int n, const std::vector<warmup::Completion>& cs) const {
    if (cache_.empty()) return;
    json j = {{"id", id}, {"n", n}, {"completions", json::array()}};
    for (const auto& c : cs) j["completions"].push_back({{"text", c.text}, {"finish_reason", c.finish_reason}});
    std::ofstream out(cache_, std::ios::app);
    out << j.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
    out.flush();
    if (!out) throw std::runtime_error(cache_ + ": cannot append to the teacher cache");
  }

  warmup::Log log_;
  std::string base_url_, host_, prefix_, model_, endpoint_, api_key_env_, cache_;
  double temperature_, top_p_, backoff_s_, timeout_s_;
  int64_t top_k_, max_tokens_, concurrency_, retries_, seed_;
  std::vector<std::string> stop_;
  bool reappend_stop_;
};

}  // namespace

WARMUP_PLUGIN(warmup::entry<warmup::Teacher, OpenAITeacher>(
    "openai", "0.1.0", "samples from an OpenAI-compatible endpoint (vLLM, warmup serve); resumable"))
