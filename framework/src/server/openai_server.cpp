// See openai_server.h. Request parsing -> SamplingParams, engine submit, response shaping, SSE.
#include "server/openai_server.h"

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>

#include <nlohmann/json.hpp>

#include "util/log.h"

namespace warmup {
using nlohmann::json;

namespace {

struct BadRequest : std::runtime_error {
  std::string param;
  BadRequest(const std::string& msg, std::string p = "") : std::runtime_error(msg), param(std::move(p)) {}
};

void send_error(httplib::Response& res, int status, const std::string& message, const std::string& param = "") {
  json e = {{"error", {{"message", message}, {"type", status == 400 ? "invalid_request_error" : "server_error"},
                       {"param", param.empty() ? json() : json(param)}, {"code", json()}}}};
  res.status = status;
  res.set_content(e.dump(), "application/json");
}

template <class T>
T field(const json& body, const char* key, T fallback) {
  if (!body.contains(key) || body[key].is_null()) return fallback;
  try {
    return body[key].get<T>();
  } catch (const json::exception&) {
    throw BadRequest(std::string("'") + key + "' has the wrong type", key);
  }
}

SamplingParams parse_params(const json& b, bool chat) {
  SamplingParams p;
  p.n = field<int>(b, "n", 1);
  p.temperature = field<double>(b, "temperature", 1.0);
  p.top_p = field<double>(b, "top_p", 1.0);
  p.top_k = field<int64_t>(b, "top_k", -1);
  p.min_p = field<double>(b, "min_p", 0.0);
  p.repetition_penalty = field<double>(b, "repetition_penalty", 1.0);
  int64_t max_tokens = field<int64_t>(b, chat ? "max_completion_tokens" : "max_tokens", -2);
  if (max_tokens == -2) max_tokens = field<int64_t>(b, "max_tokens", chat ? 1024 : 16);
  if (max_tokens < 0) throw BadRequest("max_tokens must be >= 0, got " + std::to_string(max_tokens), "max_tokens");
  p.max_new_tokens = max_tokens;
  if (b.contains("seed") && !b["seed"].is_null()) p.seed = field<uint64_t>(b, "seed", 0);
  if (b.contains("stop") && !b["stop"].is_null()) {
    if (b["stop"].is_string()) p.stop = {b["stop"].get<std::string>()};
    else p.stop = field<std::vector<std::string>>(b, "stop", {});
  }
  p.stop_token_ids = field<std::vector<int32_t>>(b, "stop_token_ids", {});
  p.include_stop_str_in_output = field<bool>(b, "include_stop_str_in_output", false);
  p.ignore_eos = field<bool>(b, "ignore_eos", false);
  if (chat) p.logprobs = field<bool>(b, "logprobs", false);
  else p.logprobs = b.contains("logprobs") && !b["logprobs"].is_null();
  if (std::string e = p.validate(); !e.empty()) throw BadRequest(e);
  return p;
}

std::string new_id(const char* prefix) {
  static std::atomic<uint64_t> counter{0};
  return std::string(prefix) + std::to_string(std::chrono::system_clock::now().time_since_epoch().count()) + "-" +
         std::to_string(counter++);
}

int64_t now_s() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Text deltas from the engine thread to the HTTP thread of a streaming response.
struct DeltaQueue {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::pair<int, std::string>> items;
  bool done = false;
  void push(int i, std::string s) {
    {
      std::lock_guard<std::mutex> l(mu);
      items.emplace_back(i, std::move(s));
    }
    cv.notify_one();
  }
};

}  // namespace

struct OpenAIServer::Impl {
  Engine& engine;
  ServerOptions opt;
  httplib::Server http;

  Impl(Engine& e, ServerOptions o) : engine(e), opt(std::move(o)) {}

  std::vector<int32_t> prompt_ids(const json& b, bool chat) {
    const Tokenizer& tok = engine.tokenizer();
    if (chat) {
      if (!b.contains("messages") || !b["messages"].is_array() || b["messages"].empty())
        throw BadRequest("'messages' must be a non-empty array", "messages");
      std::vector<ChatMessage> msgs;
      for (const auto& m : b["messages"]) {
        if (!m.is_object() || !m.contains("role") || !m["role"].is_string() || !m.contains("content") || !m["content"].is_string())
          throw BadRequest("each message needs string 'role' and 'content'", "messages");
        msgs.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
      }
      return tok.encode(render_chatml(msgs));
    }
    if (!b.contains("prompt")) throw BadRequest("'prompt' is required", "prompt");
    const json& p = b["prompt"];
    if (p.is_string()) return tok.encode(p.get<std::string>());
    if (p.is_array() && !p.empty() && p[0].is_number_integer()) return field<std::vector<int32_t>>(b, "prompt", {});
    if (p.is_array() && p.size() == 1 && p[0].is_string()) return tok.encode(p[0].get<std::string>());
    throw BadRequest("'prompt' must be a string or an array of token ids (one prompt per request)", "prompt");
  }

  json choice(const SampleResult& s, int index, bool chat, const SamplingParams& p) {
    const Tokenizer& tok = engine.tokenizer();
    json c = {{"index", index}, {"finish_reason", s.finish_reason}};
    json lp;
    if (p.logprobs) {
      json toks = json::array();
      for (size_t i = 0; i < s.logprobs.size() && i < s.token_ids.size(); ++i) {
        std::string t = s.token_ids[i] < tok.vocab_size() ? tok.decode({s.token_ids[i]}) : "";
        toks.push_back(chat ? json{{"token", t}, {"logprob", s.logprobs[i]}} : json(t));
      }
      lp = chat ? json{{"content", toks}} : json{{"tokens", toks}, {"token_logprobs", s.logprobs}, {"top_logprobs", nullptr}};
    }
    c["logprobs"] = lp;
    if (chat) c["message"] = {{"role", "assistant"}, {"content", s.text}};
    else c["text"] = s.text;
    return c;
  }

  void handle(const httplib::Request& req, httplib::Response& res, bool chat) {
    json b;
    try {
      b = json::parse(req.body);
    } catch (const json::parse_error& e) {
      return send_error(res, 400, std::string("request body is not valid JSON: ") + e.what());
    }
    try {
      if (!b.is_object()) throw BadRequest("request body must be a JSON object");
      std::string model = field<std::string>(b, "model", opt.model_name);
      if (model != opt.model_name)
        throw BadRequest("model '" + model + "' does not exist; this server serves '" + opt.model_name + "'", "model");
      GenerationRequest g;
      g.id = new_id(chat ? "chatcmpl-" : "cmpl-");
      g.params = parse_params(b, chat);
      g.prompt_ids = prompt_ids(b, chat);
      if (field<bool>(b, "stream", false)) return stream(std::move(g), res, chat, model);
      SamplingParams p = g.params;
      std::string id = g.id;
      GenerationResult r = engine.submit(std::move(g)).get();
      if (!r.error.empty()) throw BadRequest(r.error, "prompt");
      json out = {{"id", id}, {"object", chat ? "chat.completion" : "text_completion"}, {"created", now_s()},
                  {"model", model}, {"choices", json::array()}};
      int64_t completion = 0;
      for (size_t i = 0; i < r.samples.size(); ++i) {
        out["choices"].push_back(choice(r.samples[i], int(i), chat, p));
        completion += int64_t(r.samples[i].token_ids.size());
      }
      out["usage"] = {{"prompt_tokens", r.prompt_tokens}, {"completion_tokens", completion},
                      {"total_tokens", r.prompt_tokens + completion}};
      res.set_content(out.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
    } catch (const BadRequest& e) {
      send_error(res, 400, e.what(), e.param);
    } catch (const std::exception& e) {
      send_error(res, 500, e.what());
    }
  }

  void stream(GenerationRequest g, httplib::Response& res, bool chat, const std::string& model) {
    auto q = std::make_shared<DeltaQueue>();
    g.on_delta = [q](int i, const std::string& d) { q->push(i, d); };
    std::string id = g.id;
    auto fut = std::make_shared<std::shared_future<GenerationResult>>(engine.submit(std::move(g)).share());
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider("text/event-stream", [q, fut, id, chat, model](size_t, httplib::DataSink& sink) {
      auto chunk = [&](int index, const json& delta_or_text, const json& finish) {
        json c = {{"id", id}, {"object", chat ? "chat.completion.chunk" : "text_completion"}, {"created", now_s()},
                  {"model", model}};
        json ch = {{"index", index}, {"finish_reason", finish}, {"logprobs", nullptr}};
        if (chat) ch["delta"] = delta_or_text;
        else ch["text"] = delta_or_text;
        c["choices"] = json::array({ch});
        std::string s = "data: " + c.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
        return sink.write(s.data(), s.size());
      };
      while (true) {
        std::unique_lock<std::mutex> l(q->mu);
        q->cv.wait_for(l, std::chrono::milliseconds(50), [&] { return !q->items.empty(); });
        while (!q->items.empty()) {
          auto [i, d] = q->items.front();
          q->items.pop_front();
          l.unlock();
          if (!chunk(i, chat ? json{{"content", d}} : json(d), nullptr)) return false;
          l.lock();
        }
        if (q->items.empty() && fut->wait_for(std::chrono::seconds(0)) == std::future_status::ready) break;
      }
      const GenerationResult& r = fut->get();
      if (!r.error.empty()) {
        std::string e = "data: " + json{{"error", {{"message", r.error}, {"type", "invalid_request_error"}}}}.dump() + "\n\n";
        sink.write(e.data(), e.size());
      }
      for (size_t i = 0; i < r.samples.size(); ++i)
        chunk(int(i), chat ? json::object() : json(""), r.samples[i].finish_reason);
      std::string done = "data: [DONE]\n\n";
      sink.write(done.data(), done.size());
      sink.done();
      return true;
    });
  }
};

OpenAIServer::OpenAIServer(Engine& engine, ServerOptions options)
    : impl_(std::make_unique<Impl>(engine, std::move(options))) {
  Impl& s = *impl_;
  int threads = s.opt.threads;
  s.http.new_task_queue = [threads] { return new httplib::ThreadPool(size_t(threads)); };
  s.http.Get("/health", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"status":"ok"})", "application/json");
  });
  s.http.Get("/v1/models", [&s](const httplib::Request&, httplib::Response& res) {
    json m = {{"object", "list"},
              {"data", json::array({{{"id", s.opt.model_name}, {"object", "model"}, {"created", now_s()},
                                     {"owned_by", "warmup"}, {"max_model_len", s.engine.options().max_model_len}}})}};
    res.set_content(m.dump(), "application/json");
  });
  s.http.Post("/v1/completions", [&s](const httplib::Request& q, httplib::Response& r) { s.handle(q, r, false); });
  s.http.Post("/v1/chat/completions", [&s](const httplib::Request& q, httplib::Response& r) { s.handle(q, r, true); });
  s.http.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (res.body.empty()) send_error(res, res.status, "no route (see /v1/models, /v1/completions, /v1/chat/completions, /health)");
  });
}

OpenAIServer::~OpenAIServer() = default;

int OpenAIServer::bind(const std::string& host, int port) {
  if (port == 0) return impl_->http.bind_to_any_port(host);
  return impl_->http.bind_to_port(host, port) ? port : -1;
}

void OpenAIServer::listen() { impl_->http.listen_after_bind(); }
void OpenAIServer::stop() { impl_->http.stop(); }

}  // namespace warmup
