// See chat_template.h.
#include "text/chat_template.h"

#include <algorithm>
#include <fstream>
#include <regex>
#include <sstream>

#include <chat-template.hpp>

#include "text/tokenizer.h"
#include "text/utf8.h"
#include "util/errors.h"

// TRL's chat templates and their training variants (third_party/trl_chat_templates), compiled in
// by cmake/EmbedText.cmake.
namespace warmup::trl_templates {
extern const char kQwen2_5[], kQwen2_5Training[], kQwen3[], kQwen3Training[], kQwen3Instruct2507[],
    kQwen3Instruct2507Training[], kLlama3[], kLlama3Training[], kDeepseekR1Distill[], kDeepseekR1DistillTraining[];
}

namespace warmup {
namespace fs = std::filesystem;
using nlohmann::json;

struct ChatTemplate::Impl {
  std::unique_ptr<minja::chat_template> tmpl;
};

namespace {

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw DataError(p.string() + ": cannot read");
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

// A special token entry of tokenizer_config.json: "text" or {"content": "text", ...}.
std::string token_text(const json& c, const char* key) {
  if (!c.contains(key) || c[key].is_null()) return "";
  const json& v = c[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return "";
}

}  // namespace

std::optional<ChatTemplate> ChatTemplate::load(const fs::path& path) {
  fs::path dir = fs::is_directory(path) ? path : path.parent_path();
  fs::path cfg_file = dir / "tokenizer_config.json", jinja = dir / "chat_template.jinja";
  json cfg = json::object();
  if (fs::exists(cfg_file)) {
    cfg = json::parse(read_text(cfg_file), nullptr, false);
    if (cfg.is_discarded() || !cfg.is_object()) throw DataError(cfg_file.string() + ": not a JSON object");
  }
  std::string source, origin;
  if (fs::exists(jinja)) {
    source = read_text(jinja), origin = jinja.string();
  } else if (cfg.contains("chat_template")) {
    const json& t = cfg["chat_template"];
    origin = cfg_file.string() + ": chat_template";
    if (t.is_string()) {
      source = t.get<std::string>();
    } else if (t.is_array()) {
      for (const auto& e : t)
        if (e.is_object() && e.value("name", "") == "default" && e.contains("template") && e["template"].is_string())
          source = e["template"].get<std::string>();
      if (source.empty()) throw DataError(origin + ": a list without a \"default\" template");
    } else {
      throw DataError(origin + ": must be a string or a list of {name, template}");
    }
  } else {
    return std::nullopt;
  }
  return ChatTemplate(source, token_text(cfg, "bos_token"), token_text(cfg, "eos_token"), origin);
}

ChatTemplate::ChatTemplate(const std::string& source, const std::string& bos_token, const std::string& eos_token,
                           std::string origin)
    : impl_(std::make_unique<Impl>()), origin_(std::move(origin)) {
  try {
    impl_->tmpl = std::make_unique<minja::chat_template>(source, bos_token, eos_token);
  } catch (const std::exception& e) {
    throw DataError(origin_ + ": cannot parse the chat template: " + e.what());
  }
}

ChatTemplate::ChatTemplate(ChatTemplate&&) noexcept = default;
ChatTemplate& ChatTemplate::operator=(ChatTemplate&&) noexcept = default;
ChatTemplate::~ChatTemplate() = default;

ChatTemplate::Tracked ChatTemplate::render_tracked(const json& messages, bool add_generation_prompt) const {
  minja::GenerationSpans spans;
  struct Sink {  // the sink is thread-local: set for this render only, cleared however it ends
    explicit Sink(minja::GenerationSpans* s) { minja::generation_spans_sink() = s; }
    ~Sink() { minja::generation_spans_sink() = nullptr; }
  } sink(&spans);
  Tracked out;
  out.text = render(messages, add_generation_prompt);
  out.generation = std::move(spans.spans);
  return out;
}

std::string ChatTemplate::render(const json& messages, bool add_generation_prompt) const {
  minja::chat_template_inputs in;
  in.messages = nlohmann::ordered_json::parse(messages.dump());
  in.add_generation_prompt = add_generation_prompt;
  minja::chat_template_options opt;
  opt.apply_polyfills = false;
  try {
    return impl_->tmpl->apply(in, opt);
  } catch (const std::exception& e) {
    throw DataError(origin_ + ": rendering the chat template failed: " + e.what());
  }
}

bool ChatTemplate::has_generation_markers() const {
  static const std::regex marker(R"(\{%-?\s*generation\s*-?%\})");  // TRL's has_generation_markers
  return std::regex_search(source(), marker);
}

const std::string& ChatTemplate::source() const { return impl_->tmpl->source(); }
const std::string& ChatTemplate::bos_token() const { return impl_->tmpl->bos_token(); }
const std::string& ChatTemplate::eos_token() const { return impl_->tmpl->eos_token(); }

std::shared_ptr<const ChatTemplate> training_chat_template(std::shared_ptr<const ChatTemplate> t) {
  if (t->has_generation_markers()) return t;
  struct Known {
    const char* name;
    const char* original;
    const char* training;
  };
  namespace k = trl_templates;
  static const Known known[] = {
      {"qwen2_5", k::kQwen2_5, k::kQwen2_5Training},
      {"qwen3", k::kQwen3, k::kQwen3Training},
      {"qwen3_instruct_2507", k::kQwen3Instruct2507, k::kQwen3Instruct2507Training},
      {"llama3", k::kLlama3, k::kLlama3Training},
      {"deepseek_r1_distill", k::kDeepseekR1Distill, k::kDeepseekR1DistillTraining},
  };
  for (const auto& e : known)
    if (t->source() == e.original)
      return std::make_shared<const ChatTemplate>(e.training, t->bos_token(), t->eos_token(),
                                                  std::string("TRL's ") + e.name + "_training.jinja (for " + t->origin() + ")");
  throw DataError(t->origin() + ": assistant_only_loss needs {% generation %} ... {% endgeneration %} around each "
                  "assistant turn's output (its end-of-turn token included), and this template has none and is not "
                  "one TRL ships a training version of (Qwen2.5, Qwen3, Qwen3-Instruct-2507, Llama 3, "
                  "DeepSeek-R1-Distill): add the markers to chat_template.jinja, or set assistant_only_loss = false");
}

ChatTokens chat_template_tokens(const ChatTemplate& t, const Tokenizer& tok, const json& messages,
                                bool add_generation_prompt, bool assistant_masks) {
  ChatTokens out;
  if (!assistant_masks) {
    out.input_ids = tok.encode(t.render(messages, add_generation_prompt));
    return out;
  }
  ChatTemplate::Tracked r = t.render_tracked(messages, add_generation_prompt);
  out.input_ids = tok.encode(r.text);
  out.assistant_masks.assign(out.input_ids.size(), 0);
  // Byte range of each token: its bytes laid end to end spell the text back, or its NFC form when
  // the tokenizer normalises (Qwen's); span boundaries then move to where the NFC of the text
  // before them ends, as the tokenizers library's alignments map them.
  auto mark = [&](const std::string& text, const std::vector<std::pair<size_t, size_t>>& spans) {
    std::fill(out.assistant_masks.begin(), out.assistant_masks.end(), uint8_t(0));
    size_t at = 0, span = 0;
    for (size_t i = 0; i < out.input_ids.size(); ++i) {
      std::string bytes = tok.decode_bytes({out.input_ids[i]});
      if (text.compare(at, bytes.size(), bytes) != 0) return false;
      size_t begin = at, stop = at += bytes.size();
      // transformers 5.24's walk: a token is marked when it overlaps the current span.
      while (span < spans.size() && begin >= spans[span].second) ++span;
      if (span < spans.size() && stop > spans[span].first) out.assistant_masks[i] = 1;
    }
    return at == text.size();
  };
  if (mark(r.text, r.generation)) return out;
  std::vector<std::pair<size_t, size_t>> spans;
  for (const auto& [b, e] : r.generation)
    spans.emplace_back(nfc(std::string_view(r.text).substr(0, b)).size(), nfc(std::string_view(r.text).substr(0, e)).size());
  if (!mark(nfc(r.text), spans))
    throw DataError(t.origin() + ": the tokenizer does not spell the rendered conversation back byte for byte, nor "
                    "its NFC form, so the assistant tokens cannot be located");
  return out;
}

bool end_of_turn_trained(const ChatTemplate& t, const Tokenizer& tok) {
  json probe = json::array({{{"role", "user"}, {"content", "dummy"}}, {{"role", "assistant"}, {"content", "dummy"}},
                            {{"role", "user"}, {"content", "dummy"}}});
  ChatTokens ct;
  try {
    ct = chat_template_tokens(t, tok, probe, false, true);
  } catch (const DataError&) {
    return false;
  }
  for (size_t i = ct.input_ids.size(); i-- > 0;) {
    if (!ct.assistant_masks[i]) continue;
    std::string text = tok.decode({ct.input_ids[i]});
    if (text.find_first_not_of(" \t\r\n\f\v") == std::string::npos) continue;  // whitespace: look further back
    return tok.is_special(ct.input_ids[i]);
  }
  return false;
}

std::string end_of_turn_warning(const ChatTemplate& t, const Tokenizer& tok) {
  if (end_of_turn_trained(t, tok)) return "";
  return t.origin() + ": the chat template leaves the assistant turn's end-of-turn token out of its {% generation %} "
         "block, so assistant_only_loss never trains the model to stop; put it inside";
}

}  // namespace warmup
