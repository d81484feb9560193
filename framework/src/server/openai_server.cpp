// See openai_server.h. Request parsing -> SamplingParams, engine submit, response shaping, SSE.
//
// Field rule: every request field is either honoured as the OpenAI API (and vLLM, for its
// extensions) defines it, or the request is refused with a 400 naming the field. Fields that by
// definition do not change the output (`user`, `metadata`, `safety_identifier`,
// `prompt_cache_key`) are accepted; fields whose only supported value is the default
// (`response_format` text, `tool_choice` none, `store` false, ...) are accepted with that value.
#include "server/openai_server.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <set>

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
  res.set_content(e.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

bool given(const json& b, const char* key) {
  auto it = b.find(key);
  return it != b.end() && !it->is_null();
}

template <class T>
T field(const json& body, const char* key, T fallback) {
  if (!given(body, key)) return fallback;
  try {
    return body.at(key).get<T>();
  } catch (const json::exception&) {
    throw BadRequest(std::string("'") + key + "' has the wrong type", key);
  }
}

// A number field that must be a JSON number (not a bool or a string).
double number(const json& b, const char* key, double fallback) {
  if (!given(b, key)) return fallback;
  if (!b.at(key).is_number()) throw BadRequest(std::string("'") + key + "' has the wrong type (a number)", key);
  return b.at(key).get<double>();
}

int64_t integer(const json& b, const char* key, int64_t fallback) {
  if (!given(b, key)) return fallback;
  if (!b.at(key).is_number_integer()) throw BadRequest(std::string("'") + key + "' has the wrong type (an integer)", key);
  return b.at(key).get<int64_t>();
}

bool boolean(const json& b, const char* key, bool fallback) {
  if (!given(b, key)) return fallback;
  if (!b.at(key).is_boolean()) throw BadRequest(std::string("'") + key + "' has the wrong type (true or false)", key);
  return b.at(key).get<bool>();
}

// Fields of each endpoint. Honoured: changes what is generated or returned. Unknown fields and
// known fields with values we cannot honour are refused by name.
const std::set<std::string> kCommon = {
    "model", "n", "temperature", "top_p", "max_tokens", "stop", "seed", "stream", "stream_options",
    "presence_penalty", "frequency_penalty", "logit_bias", "logprobs", "user",
    // vLLM's extensions (vllm/entrypoints/openai/protocol.py)
    "top_k", "min_p", "repetition_penalty", "stop_token_ids", "include_stop_str_in_output", "ignore_eos",
    "min_tokens"};
const std::set<std::string> kCompletionOnly = {"prompt", "echo", "best_of", "suffix"};
const std::set<std::string> kChatOnly = {
    "messages", "max_completion_tokens", "top_logprobs", "response_format", "tools", "tool_choice",
    "parallel_tool_calls", "functions", "function_call", "modalities", "store", "metadata", "service_tier",
    "safety_identifier", "prompt_cache_key"};

void check_fields(const json& b, bool chat) {
  for (const auto& [key, value] : b.items()) {
    bool known = kCommon.count(key) || (chat ? kChatOnly.count(key) : kCompletionOnly.count(key));
    if (!known)
      throw BadRequest("unsupported field '" + key + "' (this server honours: see `warmup serve --help` and "
                       "the README's OpenAI server section)", key);
  }
  // A given (non-null) field must pass `ok`.
  auto refuse_unless = [&](const char* key, const std::function<bool(const json&)>& ok, const std::string& why) {
    if (given(b, key) && !ok(b.at(key))) throw BadRequest("'" + std::string(key) + "' " + why, key);
  };
  auto equals = [](json want) { return [want](const json& v) { return v == want; }; };
  auto is_string = [](const json& v) { return v.is_string(); };
  auto empty_array = [](const json& v) { return v.is_array() && v.empty(); };
  if (chat) {
    refuse_unless("response_format", equals({{"type", "text"}}),
                  "is not supported except {\"type\": \"text\"} (no structured output)");
    refuse_unless("tools", empty_array, "is not supported (no tool calling)");
    refuse_unless("functions", empty_array, "is not supported (no tool calling)");
    refuse_unless("tool_choice", equals("none"), "is not supported except \"none\" (no tool calling)");
    refuse_unless("function_call", equals("none"), "is not supported except \"none\" (no tool calling)");
    refuse_unless("parallel_tool_calls", [](const json& v) { return v.is_boolean(); }, "must be true or false");
    refuse_unless("modalities", equals(json::array({"text"})), "is not supported except [\"text\"]");
    refuse_unless("store", equals(false), "is not supported except false (completions are not stored)");
    refuse_unless("metadata", [](const json& v) { return v.is_object(); }, "must be an object");
    refuse_unless("service_tier", [](const json& v) { return v == "auto" || v == "default"; },
                  "is not supported except \"auto\" or \"default\"");
    refuse_unless("safety_identifier", is_string, "must be a string");
    refuse_unless("prompt_cache_key", is_string, "must be a string");
  } else {
    refuse_unless("suffix", equals(""), "is not supported (no fill-in-the-middle)");
  }
  refuse_unless("user", is_string, "must be a string");
  if (given(b, "stream_options")) {
    if (!boolean(b, "stream", false))
      throw BadRequest("'stream_options' is only allowed when 'stream' is true", "stream_options");
    const json& so = b.at("stream_options");
    if (!so.is_object()) throw BadRequest("'stream_options' must be an object", "stream_options");
    for (const auto& [k, v] : so.items()) {
      if (k == "include_usage") {
        if (!v.is_boolean() && !v.is_null()) throw BadRequest("'stream_options.include_usage' must be true or false", "stream_options");
      } else if (k == "include_obfuscation") {
        if (v == true) throw BadRequest("'stream_options.include_obfuscation' is not supported except false", "stream_options");
      } else {
        throw BadRequest("unsupported field 'stream_options." + k + "'", "stream_options");
      }
    }
  }
}

SamplingParams parse_params(const json& b, bool chat, int64_t max_model_len) {
  SamplingParams p;
  int64_t n = integer(b, "n", 1);
  if (n < 1 || n > 1024) throw BadRequest("n must be between 1 and 1024", "n");
  p.n = int(n);
  p.temperature = number(b, "temperature", 1.0);
  p.top_p = number(b, "top_p", 1.0);
  p.top_k = integer(b, "top_k", -1);
  p.min_p = number(b, "min_p", 0.0);
  p.repetition_penalty = number(b, "repetition_penalty", 1.0);
  p.presence_penalty = number(b, "presence_penalty", 0.0);
  p.frequency_penalty = number(b, "frequency_penalty", 0.0);
  p.min_tokens = integer(b, "min_tokens", 0);
  int64_t max_tokens = chat ? integer(b, "max_completion_tokens", -2) : -2;
  // Chat with no cap: what max_model_len leaves after the prompt (vLLM); completions: 16 (OpenAI).
  if (max_tokens == -2) max_tokens = integer(b, "max_tokens", chat ? -1 : 16);
  else if (given(b, "max_tokens") && integer(b, "max_tokens", 0) != max_tokens)
    throw BadRequest("'max_tokens' and 'max_completion_tokens' disagree; give one", "max_tokens");
  if (max_tokens < -1 || (max_tokens == -1 && (given(b, "max_tokens") || given(b, "max_completion_tokens"))))
    throw BadRequest("max_tokens must be >= 0, got " + std::to_string(max_tokens), "max_tokens");
  p.max_new_tokens = max_tokens == -1 ? max_model_len : max_tokens;
  if (given(b, "seed")) {
    const json& seed = b.at("seed");
    if (!seed.is_number_integer()) throw BadRequest("'seed' has the wrong type (an integer)", "seed");
    p.seed = seed.is_number_unsigned() ? seed.get<uint64_t>() : uint64_t(seed.get<int64_t>());
  }
  if (given(b, "stop")) {
    if (b.at("stop").is_string()) p.stop = {b.at("stop").get<std::string>()};
    else p.stop = field<std::vector<std::string>>(b, "stop", {});
  }
  p.stop_token_ids = field<std::vector<int32_t>>(b, "stop_token_ids", {});
  p.include_stop_str_in_output = boolean(b, "include_stop_str_in_output", false);
  p.ignore_eos = boolean(b, "ignore_eos", false);
  if (given(b, "logit_bias")) {
    if (!b.at("logit_bias").is_object()) throw BadRequest("'logit_bias' must be an object of token id -> bias", "logit_bias");
    for (const auto& [k, v] : b.at("logit_bias").items()) {
      size_t used = 0;
      long long id = -1;
      try {
        id = std::stoll(k, &used);
      } catch (const std::exception&) {
      }
      if (used != k.size() || id < 0 || id > INT32_MAX)
        throw BadRequest("'logit_bias' key '" + k + "' is not a token id", "logit_bias");
      if (!v.is_number()) throw BadRequest("'logit_bias' value of '" + k + "' must be a number", "logit_bias");
      p.logit_bias.emplace_back(int32_t(id), v.get<float>());
    }
  }
  if (chat) {
    p.logprobs = boolean(b, "logprobs", false);
    p.top_logprobs = int(integer(b, "top_logprobs", 0));
    if (given(b, "top_logprobs") && !p.logprobs)
      throw BadRequest("'top_logprobs' needs 'logprobs': true", "top_logprobs");
  } else if (given(b, "logprobs")) {
    p.logprobs = true;
    int64_t k = integer(b, "logprobs", 0);
    if (k < 0 || k > SamplingParams::kMaxLogprobs)
      throw BadRequest("'logprobs' must be in [0, " + std::to_string(SamplingParams::kMaxLogprobs) + "]", "logprobs");
    p.top_logprobs = int(k);
  }
  if (p.top_logprobs < 0 || p.top_logprobs > SamplingParams::kMaxLogprobs)
    throw BadRequest("'top_logprobs' must be in [0, " + std::to_string(SamplingParams::kMaxLogprobs) + "]", "top_logprobs");
  if (!chat && given(b, "best_of") && integer(b, "best_of", 1) != p.n)
    throw BadRequest("'best_of' is not supported except equal to n", "best_of");
  if (std::string e = p.validate(); !e.empty()) {
    std::string param;
    for (const char* k : {"presence_penalty", "frequency_penalty", "logit_bias", "min_tokens", "temperature", "top_p",
                          "top_k", "min_p", "repetition_penalty", "stop"})
      if (e.rfind(k, 0) == 0) param = k;
    throw BadRequest(e, param);
  }
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

// Number of code points of valid UTF-8 (what Python's len() gives for text_offset).
int64_t code_points(const std::string& s) {
  int64_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

float clamp_lp(float x) { return std::max(x, -9999.0f); }  // as vLLM: JSON has no -inf

// Whether the client of a request has closed its connection. httplib 0.11 does not expose the
// socket, so it is found once among this process's sockets by its peer address, then polled: a
// hang-up, or readable with nothing to read, means the client is gone.
class PeerWatch {
 public:
  PeerWatch(const std::string& addr, int port) : addr_(addr), port_(port) {}
  ~PeerWatch() {
    if (fd_ >= 0) ::close(fd_);
  }
  bool closed() {
    if (fd_ < 0 && !searched_) find();
    if (fd_ < 0) return false;
    pollfd p{fd_, short(POLLIN | POLLRDHUP), 0};
    if (::poll(&p, 1, 0) <= 0) return false;
    if (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) return true;
    char c;
    return (p.revents & POLLIN) && ::recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
  }

 private:
  void find() {
    searched_ = true;
    DIR* d = ::opendir("/proc/self/fd");
    if (!d) return;
    while (dirent* e = ::readdir(d)) {
      int fd = std::atoi(e->d_name);
      if (fd <= 2) continue;
      sockaddr_storage ss{};
      socklen_t len = sizeof ss;
      if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) continue;
      char host[INET6_ADDRSTRLEN] = {0};
      int port = 0;
      if (ss.ss_family == AF_INET) {
        auto* a = reinterpret_cast<sockaddr_in*>(&ss);
        ::inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
        port = ntohs(a->sin_port);
      } else if (ss.ss_family == AF_INET6) {
        auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
        ::inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
        port = ntohs(a->sin6_port);
      }
      if (port == port_ && addr_ == host) {
        fd_ = ::dup(fd);  // our own handle: httplib may close and reuse its number
        break;
      }
    }
    ::closedir(d);
  }
  std::string addr_;
  int port_;
  int fd_ = -1;
  bool searched_ = false;
};

// The request field an engine refusal is about.
std::string error_param(const std::string& error, bool chat) {
  if (error.rfind("logit_bias", 0) == 0) return "logit_bias";
  return chat ? "messages" : "prompt";
}

// One prompt of a request and where its choices go in the response.
struct Prompt {
  std::vector<int32_t> ids;
  std::string text;  // for echo: the prompt as given (or decoded from ids)
};

// Deltas of every sample of every prompt of a streaming request, from the engine thread.
struct DeltaQueue {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::pair<int, StreamDelta>> items;  // (prompt index, delta)
  void push(int prompt, StreamDelta d) {
    {
      std::lock_guard<std::mutex> l(mu);
      items.emplace_back(prompt, std::move(d));
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

  std::vector<Prompt> prompts(const json& b, bool chat) {
    const Tokenizer& tok = engine.tokenizer();
    if (chat) {
      if (!given(b, "messages") || !b["messages"].is_array() || b["messages"].empty())
        throw BadRequest("'messages' must be a non-empty array", "messages");
      std::vector<ChatMessage> msgs;
      static const std::set<std::string> roles = {"system", "developer", "user", "assistant"};
      for (size_t i = 0; i < b["messages"].size(); ++i) {
        const json& m = b["messages"][i];
        std::string where = "messages[" + std::to_string(i) + "]";
        if (!m.is_object() || !m.contains("role") || !m["role"].is_string())
          throw BadRequest(where + " needs a string 'role'", "messages");
        std::string role = m["role"].get<std::string>();
        if (!roles.count(role))
          throw BadRequest(where + ".role '" + role + "' is not supported (system, developer, user, assistant; no tools)", "messages");
        for (const auto& [k, v] : m.items())
          if (k != "role" && k != "content" && !v.is_null())
            throw BadRequest("unsupported field '" + where + "." + k + "'", "messages");
        std::string content;
        const json& c = m.contains("content") ? m["content"] : json();
        if (c.is_string()) {
          content = c.get<std::string>();
        } else if (c.is_array()) {  // content parts: text only, joined with newlines (as vLLM)
          for (size_t j = 0; j < c.size(); ++j) {
            const json& part = c[j];
            if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") || !part["text"].is_string())
              throw BadRequest(where + ".content[" + std::to_string(j) + "] is not a text part (only {\"type\": \"text\", \"text\": ...} is supported)", "messages");
            content += (j ? "\n" : "") + part["text"].get<std::string>();
          }
        } else {
          throw BadRequest(where + ".content must be a string or an array of text parts", "messages");
        }
        msgs.push_back({role == "developer" ? "system" : role, content});
      }
      std::string text = render_chatml(msgs);
      return {{tok.encode(text), text}};
    }
    if (!given(b, "prompt")) throw BadRequest("'prompt' is required", "prompt");
    const json& p = b["prompt"];
    auto from_ids = [&](const json& a) {
      Prompt r;
      for (const auto& x : a) {
        if (!x.is_number_integer()) throw BadRequest("'prompt' token ids must be integers", "prompt");
        int64_t id = x.get<int64_t>();
        if (id < 0 || id > INT32_MAX) throw BadRequest("prompt token id " + std::to_string(id) + " is outside the vocabulary", "prompt");
        r.ids.push_back(int32_t(id));
      }
      std::vector<int32_t> known;
      for (int32_t id : r.ids)
        if (id < tok.vocab_size()) known.push_back(id);
      r.text = tok.decode(known);
      return r;
    };
    if (p.is_string()) return {{tok.encode(p.get<std::string>()), p.get<std::string>()}};
    if (!p.is_array() || p.empty())
      throw BadRequest("'prompt' must be a string, an array of strings, an array of token ids or an array of token-id arrays", "prompt");
    if (p[0].is_number_integer()) return {from_ids(p)};
    std::vector<Prompt> out;
    for (const auto& x : p) {
      if (x.is_string()) out.push_back({tok.encode(x.get<std::string>()), x.get<std::string>()});
      else if (x.is_array() && !x.empty()) out.push_back(from_ids(x));
      else throw BadRequest("'prompt' arrays must hold only strings or only non-empty token-id arrays", "prompt");
    }
    if (out.size() > 1024) throw BadRequest("'prompt' holds more than 1024 prompts", "prompt");
    return out;
  }

  // Completions logprobs object for tokens [from, ...) with text offsets starting at `offset`.
  struct CompletionLogprobs {
    json tokens = json::array(), token_logprobs = json::array(), top = json::array(), offsets = json::array();
    int64_t offset = 0;
    void add(const Tokenizer& tok, int32_t id, std::optional<float> lp, const TopLogprobs* alts) {
      std::string t = id < tok.vocab_size() ? tok.decode({id}) : "";
      tokens.push_back(t);
      token_logprobs.push_back(lp ? json(clamp_lp(*lp)) : json());
      if (lp) {
        json d = json::object();
        if (alts)
          for (const auto& [aid, alp] : *alts) {  // most likely first: on equal strings the best one stays
            std::string key = aid < tok.vocab_size() ? tok.decode({aid}) : "";
            if (!d.contains(key)) d[key] = clamp_lp(alp);
          }
        if (!d.contains(t)) d[t] = clamp_lp(*lp);  // the chosen token is always there (OpenAI: up to logprobs + 1)
        top.push_back(d);
      } else {
        top.push_back(nullptr);
      }
      offsets.push_back(offset);
      offset += code_points(t);
    }
    json get() const {
      return {{"tokens", tokens}, {"token_logprobs", token_logprobs}, {"top_logprobs", top}, {"text_offset", offsets}};
    }
  };

  json chat_entry(const Tokenizer& tok, int32_t id, float lp) {
    auto bytes = [&](int32_t x) {
      std::string raw = x < tok.vocab_size() ? tok.decode_bytes({x}) : "";
      json a = json::array();
      for (unsigned char c : raw) a.push_back(int(c));
      return a;
    };
    return {{"token", id < tok.vocab_size() ? tok.decode({id}) : ""}, {"logprob", clamp_lp(lp)}, {"bytes", bytes(id)}};
  }

  json chat_logprobs(const std::vector<int32_t>& ids, const std::vector<float>& lps, const std::vector<TopLogprobs>& tops) {
    const Tokenizer& tok = engine.tokenizer();
    json content = json::array();
    for (size_t i = 0; i < lps.size() && i < ids.size(); ++i) {
      json e = chat_entry(tok, ids[i], lps[i]);
      json alts = json::array();
      if (i < tops.size())
        for (const auto& [aid, alp] : tops[i]) alts.push_back(chat_entry(tok, aid, alp));
      e["top_logprobs"] = alts;
      content.push_back(e);
    }
    return {{"content", content}, {"refusal", nullptr}};
  }

  // Echoed prompt logprobs: the first token has none (as vLLM and OpenAI).
  void add_prompt_logprobs(CompletionLogprobs& lp, const Prompt& pr, const std::vector<float>& lps,
                           const std::vector<TopLogprobs>& tops) {
    const Tokenizer& tok = engine.tokenizer();
    for (size_t i = 0; i < pr.ids.size(); ++i) {
      if (i == 0 || i - 1 >= lps.size()) {
        lp.add(tok, pr.ids[i], std::nullopt, nullptr);
      } else {
        const TopLogprobs* alts = i - 1 < tops.size() ? &tops[i - 1] : nullptr;
        lp.add(tok, pr.ids[i], lps[i - 1], alts);
      }
    }
  }

  json choice(const Prompt& pr, const GenerationResult& r, const SampleResult& s, int index, bool chat,
              const SamplingParams& p, bool echo) {
    const Tokenizer& tok = engine.tokenizer();
    json c = {{"index", index}, {"finish_reason", s.finish_reason}};
    if (chat) {
      c["logprobs"] = p.logprobs ? chat_logprobs(s.token_ids, s.logprobs, s.top_logprobs) : json();
      c["message"] = {{"role", "assistant"}, {"content", s.text}};
      return c;
    }
    json lp;
    if (p.logprobs) {
      CompletionLogprobs l;
      if (echo) add_prompt_logprobs(l, pr, r.prompt_logprobs, r.prompt_top_logprobs);
      for (size_t i = 0; i < s.token_ids.size() && i < s.logprobs.size(); ++i)
        l.add(tok, s.token_ids[i], s.logprobs[i], i < s.top_logprobs.size() ? &s.top_logprobs[i] : nullptr);
      lp = l.get();
    }
    c["logprobs"] = lp;
    c["text"] = echo ? pr.text + s.text : s.text;
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
      check_fields(b, chat);
      std::string model = field<std::string>(b, "model", opt.model_name);
      if (model != opt.model_name)
        throw BadRequest("model '" + model + "' does not exist; this server serves '" + opt.model_name + "'", "model");
      int64_t max_len = engine.options().max_model_len;
      SamplingParams p = parse_params(b, chat, max_len);
      bool echo = !chat && boolean(b, "echo", false);
      if (echo && p.logprobs) p.prompt_logprobs = p.top_logprobs;
      std::vector<Prompt> ps = prompts(b, chat);
      for (const Prompt& pr : ps) {
        int64_t P = int64_t(pr.ids.size());
        if (P == 0) throw BadRequest("the prompt is empty", "prompt");
        if (P >= max_len)
          throw BadRequest("the prompt has " + std::to_string(P) + " tokens; max_model_len is " + std::to_string(max_len),
                           chat ? "messages" : "prompt");
        bool explicit_cap = given(b, "max_tokens") || given(b, "max_completion_tokens") || !chat;
        if (explicit_cap && P + p.max_new_tokens > max_len)  // as vLLM: refused, not silently cut
          throw BadRequest("this model's maximum context length is " + std::to_string(max_len) + " tokens; the request has " +
                               std::to_string(P) + " prompt tokens and max_tokens " + std::to_string(p.max_new_tokens) +
                               " (max_model_len is " + std::to_string(max_len) + ")",
                           "max_tokens");
      }
      bool stream = boolean(b, "stream", false);
      bool include_usage = stream && given(b, "stream_options") && b["stream_options"].value("include_usage", false);
      std::string id = new_id(chat ? "chatcmpl-" : "cmpl-");
      if (stream) return this->stream(ps, p, res, chat, model, id, echo, include_usage);

      std::vector<std::future<GenerationResult>> futs;
      auto cancelled = std::make_shared<std::atomic<bool>>(false);
      for (const Prompt& pr : ps) {
        GenerationRequest g;
        g.id = id;
        g.prompt_ids = pr.ids;
        g.params = p;
        g.cancelled = cancelled;
        futs.push_back(engine.submit(std::move(g)));
      }
      // While waiting, notice a client that went away and cancel its work (vLLM aborts on disconnect).
      PeerWatch peer(req.remote_addr, req.remote_port);
      for (auto& f : futs)
        while (f.wait_for(std::chrono::milliseconds(100)) != std::future_status::ready)
          if (peer.closed()) {
            cancelled->store(true);
            return;  // nobody to answer
          }
      json out = {{"id", id}, {"object", chat ? "chat.completion" : "text_completion"}, {"created", now_s()},
                  {"model", model}, {"choices", json::array()}};
      int64_t prompt_tokens = 0, completion = 0;
      for (size_t i = 0; i < futs.size(); ++i) {
        GenerationResult r = futs[i].get();
        if (r.internal_error) throw std::runtime_error(r.error);  // 500: ours, not the request's
        if (!r.error.empty()) throw BadRequest(r.error, error_param(r.error, chat));
        prompt_tokens += r.prompt_tokens;
        for (size_t j = 0; j < r.samples.size(); ++j) {
          out["choices"].push_back(choice(ps[i], r, r.samples[j], int(i * size_t(p.n) + j), chat, p, echo));
          completion += int64_t(r.samples[j].token_ids.size());
        }
      }
      out["usage"] = {{"prompt_tokens", prompt_tokens}, {"completion_tokens", completion},
                      {"total_tokens", prompt_tokens + completion}};
      res.set_content(out.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
    } catch (const BadRequest& e) {
      send_error(res, 400, e.what(), e.param);
    } catch (const std::exception& e) {
      send_error(res, 500, e.what());
    }
  }

  void stream(const std::vector<Prompt>& ps, const SamplingParams& p, httplib::Response& res, bool chat,
              const std::string& model, const std::string& id, bool echo, bool include_usage) {
    auto q = std::make_shared<DeltaQueue>();
    auto futs = std::make_shared<std::vector<std::shared_future<GenerationResult>>>();
    auto cancelled = std::make_shared<std::atomic<bool>>(false);
    for (size_t i = 0; i < ps.size(); ++i) {
      GenerationRequest g;
      g.id = id;
      g.prompt_ids = ps[i].ids;
      g.params = p;
      g.cancelled = cancelled;
      int prompt = int(i);
      g.on_delta = [q, prompt](const StreamDelta& d) { q->push(prompt, d); };
      futs->push_back(engine.submit(std::move(g)).share());
    }
    // Requests the engine refused at once get a 400 before the stream starts.
    for (auto& f : *futs)
      if (f.wait_for(std::chrono::seconds(0)) == std::future_status::ready && !f.get().error.empty()) {
        if (f.get().internal_error) throw std::runtime_error(f.get().error);  // 500: ours (it failed already)
        throw BadRequest(f.get().error, error_param(f.get().error, chat));
      }
    auto prompts = std::make_shared<std::vector<Prompt>>(ps);
    res.set_header("Cache-Control", "no-cache");
    // A stream whose client went away (a write fails) is cancelled; so is one httplib releases.
    res.set_chunked_content_provider("text/event-stream", [this, q, futs, prompts, p, id, chat, model, echo, include_usage,
                                                           cancelled](size_t, httplib::DataSink& sink) {
      struct CancelUnlessDone {
        std::shared_ptr<std::atomic<bool>> flag;
        bool done = false;
        ~CancelUnlessDone() {
          if (!done) flag->store(true);
        }
      } guard{cancelled};
      const Tokenizer& tok = engine.tokenizer();
      int n = p.n;
      size_t choices = prompts->size() * size_t(n);
      std::vector<bool> started(choices, false);
      std::vector<int64_t> offsets(choices, 0);  // text_offset so far, per choice
      int64_t completion_tokens = 0;
      auto write = [&](const json& c) {
        std::string s = "data: " + c.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
        return sink.write(s.data(), s.size());
      };
      auto chunk = [&](int index, json ch) {
        ch["index"] = index;
        json c = {{"id", id}, {"object", chat ? "chat.completion.chunk" : "text_completion"}, {"created", now_s()},
                  {"model", model}, {"choices", json::array({ch})}};
        if (include_usage) c["usage"] = nullptr;
        return write(c);
      };
      // First chunk of a choice: chat announces the role; completions with echo send the prompt
      // (with its log-probs, which come with the sample's first delta).
      auto start = [&](int prompt, int index, const StreamDelta& first) {
        if (started[size_t(index)]) return true;
        started[size_t(index)] = true;
        if (chat)
          return chunk(index, {{"delta", {{"role", "assistant"}, {"content", ""}}}, {"logprobs", nullptr}, {"finish_reason", nullptr}});
        if (!echo) return true;
        const Prompt& pr = (*prompts)[size_t(prompt)];
        json lp;
        if (p.logprobs) {
          CompletionLogprobs l;
          add_prompt_logprobs(l, pr, first.prompt_logprobs, first.prompt_top_logprobs);
          offsets[size_t(index)] = l.offset;
          lp = l.get();
        } else {
          offsets[size_t(index)] = code_points(pr.text);
        }
        return chunk(index, {{"text", pr.text}, {"logprobs", lp}, {"finish_reason", nullptr}});
      };
      auto send = [&](int prompt, const StreamDelta& d) {
        int index = prompt * n + d.index;
        if (!start(prompt, index, d)) return false;
        completion_tokens += int64_t(d.token_ids.size());
        json ch = {{"finish_reason", d.finish_reason.empty() ? json() : json(d.finish_reason)}};
        if (chat) {
          ch["delta"] = d.text.empty() && !d.finish_reason.empty() ? json::object() : json{{"content", d.text}};
          ch["logprobs"] = p.logprobs ? chat_logprobs(d.token_ids, d.logprobs, d.top_logprobs) : json();
        } else {
          ch["text"] = d.text;
          json lp;
          if (p.logprobs) {
            CompletionLogprobs l;
            l.offset = offsets[size_t(index)];
            for (size_t i = 0; i < d.token_ids.size() && i < d.logprobs.size(); ++i)
              l.add(tok, d.token_ids[i], d.logprobs[i], i < d.top_logprobs.size() ? &d.top_logprobs[i] : nullptr);
            offsets[size_t(index)] = l.offset;
            lp = l.get();
          }
          ch["logprobs"] = lp;
        }
        return chunk(index, ch);
      };
      while (true) {
        std::unique_lock<std::mutex> l(q->mu);
        q->cv.wait_for(l, std::chrono::milliseconds(50), [&] { return !q->items.empty(); });
        while (!q->items.empty()) {
          auto [prompt, d] = std::move(q->items.front());
          q->items.pop_front();
          l.unlock();
          if (!send(prompt, d)) return false;
          l.lock();
        }
        bool all_done = std::all_of(futs->begin(), futs->end(), [](const auto& f) {
          return f.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
        });
        if (q->items.empty() && all_done) break;
      }
      int64_t prompt_tokens = 0;
      for (size_t i = 0; i < futs->size(); ++i) {
        const GenerationResult& r = (*futs)[i].get();
        prompt_tokens += r.prompt_tokens;
        if (!r.error.empty()) {
          json e = {{"error", {{"message", r.error}, {"type", "server_error"}, {"param", nullptr}, {"code", nullptr}}}};
          if (!write(e)) return false;
        }
      }
      if (include_usage) {
        json u = {{"id", id}, {"object", chat ? "chat.completion.chunk" : "text_completion"}, {"created", now_s()},
                  {"model", model}, {"choices", json::array()},
                  {"usage", {{"prompt_tokens", prompt_tokens}, {"completion_tokens", completion_tokens},
                             {"total_tokens", prompt_tokens + completion_tokens}}}};
        if (!write(u)) return false;
      }
      std::string done = "data: [DONE]\n\n";
      sink.write(done.data(), done.size());
      sink.done();
      guard.done = true;
      return true;
    });
  }

  // vLLM's /tokenize and /detokenize.
  void tokenize(const httplib::Request& req, httplib::Response& res) {
    try {
      json b = json::parse(req.body);
      if (!b.is_object()) throw BadRequest("request body must be a JSON object");
      for (const auto& [k, v] : b.items())
        if (k != "model" && k != "prompt" && k != "add_special_tokens" && k != "messages" && k != "add_generation_prompt")
          throw BadRequest("unsupported field '" + k + "'", k);
      const Tokenizer& tok = engine.tokenizer();
      std::vector<int32_t> ids;
      if (given(b, "messages")) {
        json c = b;
        ids = prompts(c, true)[0].ids;  // the chat template with the generation prompt
        if (!boolean(b, "add_generation_prompt", true)) throw BadRequest("'add_generation_prompt' false is not supported", "add_generation_prompt");
      } else {
        if (!given(b, "prompt") || !b["prompt"].is_string()) throw BadRequest("'prompt' must be a string", "prompt");
        ids = tok.encode(b["prompt"].get<std::string>(), boolean(b, "add_special_tokens", true));
      }
      json out = {{"count", ids.size()}, {"max_model_len", engine.options().max_model_len}, {"tokens", ids}};
      res.set_content(out.dump(), "application/json");
    } catch (const json::exception& e) {
      send_error(res, 400, std::string("request body is not valid JSON: ") + e.what());
    } catch (const BadRequest& e) {
      send_error(res, 400, e.what(), e.param);
    }
  }

  void detokenize(const httplib::Request& req, httplib::Response& res) {
    try {
      json b = json::parse(req.body);
      if (!b.is_object() || !given(b, "tokens") || !b["tokens"].is_array()) throw BadRequest("'tokens' must be an array of token ids", "tokens");
      for (const auto& [k, v] : b.items())
        if (k != "model" && k != "tokens") throw BadRequest("unsupported field '" + k + "'", k);
      const Tokenizer& tok = engine.tokenizer();
      std::vector<int32_t> ids;
      for (const auto& x : b["tokens"]) {
        if (!x.is_number_integer() || x.get<int64_t>() < 0 || x.get<int64_t>() >= tok.vocab_size())
          throw BadRequest("'tokens' holds " + x.dump() + ", not a token id (0.." + std::to_string(tok.vocab_size() - 1) + ")", "tokens");
        ids.push_back(x.get<int32_t>());
      }
      res.set_content(json{{"prompt", tok.decode(ids)}}.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
    } catch (const json::exception& e) {
      send_error(res, 400, std::string("request body is not valid JSON: ") + e.what());
    } catch (const BadRequest& e) {
      send_error(res, 400, e.what(), e.param);
    }
  }
};

OpenAIServer::OpenAIServer(Engine& engine, ServerOptions options)
    : impl_(std::make_unique<Impl>(engine, std::move(options))) {
  Impl& s = *impl_;
  int threads = s.opt.threads;
  s.http.new_task_queue = [threads] { return new httplib::ThreadPool(size_t(threads)); };
  s.http.set_payload_max_length(s.opt.max_request_bytes);  // larger bodies: 413 before they are read
  s.http.set_keep_alive_timeout(s.opt.keep_alive_s);       // an idle connection holds a thread this long
  s.http.set_read_timeout(s.opt.read_timeout_s, 0);        // a slow client's request, per read
  s.http.set_write_timeout(s.opt.read_timeout_s, 0);
  s.http.Get("/metrics", [&s](const httplib::Request&, httplib::Response& res) {
    EngineStats st = s.engine.stats();
    std::string m;
    auto metric = [&](const char* name, const char* type, const char* help, double v) {
      char value[64];
      std::snprintf(value, sizeof value, "%.17g", v);
      m += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" + name +
           "{model_name=\"" + s.opt.model_name + "\"} " + value + "\n";
    };
    // vLLM's names (vllm/v1/metrics/loggers.py), so its dashboards and alerts work unchanged.
    metric("vllm:num_requests_running", "gauge", "Sequences in the running batch (each of a request's n samples counts).", double(st.running));
    metric("vllm:num_requests_waiting", "gauge", "Sequences waiting or preempted.", double(st.waiting));
    metric("vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.", st.kv_cache_usage());
    metric("vllm:prefix_cache_queries_total", "counter", "Prefix cache queries, in tokens.", double(st.prefix_cache_queries));
    metric("vllm:prefix_cache_hits_total", "counter", "Prefix cache hits, in tokens.", double(st.prefix_cache_hits));
    metric("vllm:num_preemptions_total", "counter", "Cumulative number of preemptions from the engine.", double(st.preemptions));
    metric("vllm:prompt_tokens_total", "counter", "Number of prefill tokens processed.", double(st.prompt_tokens));
    metric("vllm:generation_tokens_total", "counter", "Number of generation tokens processed.", double(st.generated_tokens));
    metric("warmup:engine_steps_total", "counter", "Engine steps (one batched forward each).", double(st.steps));
    metric("warmup:engine_forward_seconds_total", "counter", "Time in the model's forward.", st.forward_seconds);
    metric("warmup:engine_sample_seconds_total", "counter", "Time in sampling.", st.sample_seconds);
    metric("warmup:engine_host_seconds_total", "counter", "Time in scheduling and bookkeeping.", st.host_seconds);
    res.set_content(m, "text/plain; version=0.0.4");
  });
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
  s.http.Post("/tokenize", [&s](const httplib::Request& q, httplib::Response& r) { s.tokenize(q, r); });
  s.http.Post("/detokenize", [&s](const httplib::Request& q, httplib::Response& r) { s.detokenize(q, r); });
  s.http.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 413)
      send_error(res, 413, "the request body is larger than the server's limit (--max-request-bytes)");
    else
      send_error(res, res.status, "no route (see /v1/models, /v1/completions, /v1/chat/completions, /tokenize, /detokenize, /metrics, /health)");
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
