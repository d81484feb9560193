// A model's chat template rendered as transformers' `tokenizer.apply_chat_template(messages,
// tokenize=False, add_generation_prompt=...)` renders it: the Jinja source from the model folder
// (chat_template.jinja, else tokenizer_config.json's "chat_template": a string, or a list of
// {name, template} where "default" is used), with bos_token, eos_token and strftime_now defined.
// Rendered by minja (third_party/minja, the engine llama.cpp uses), polyfills off.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace warmup {

class ChatTemplate {
 public:
  // The template of the tokenizer in `dir` (a folder, or a tokenizer.json inside one); nullopt
  // when it has none. Throws DataError naming the file when the template cannot be read or parsed.
  static std::optional<ChatTemplate> load(const std::filesystem::path& dir);
  ChatTemplate(const std::string& source, const std::string& bos_token, const std::string& eos_token,
               std::string origin);
  ChatTemplate(ChatTemplate&&) noexcept;
  ChatTemplate& operator=(ChatTemplate&&) noexcept;
  ~ChatTemplate();

  // `messages`: [{"role", "content"}...] as in transformers. Throws DataError (naming the template's
  // file) when rendering fails, e.g. the template's raise_exception.
  std::string render(const nlohmann::json& messages, bool add_generation_prompt) const;
  const std::string& origin() const { return origin_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string origin_;
};

}  // namespace warmup
