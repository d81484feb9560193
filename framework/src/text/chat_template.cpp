// See chat_template.h.
#include "text/chat_template.h"

#include <fstream>
#include <sstream>

#include <chat-template.hpp>

#include "util/errors.h"

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

}  // namespace warmup
