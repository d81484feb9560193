// A model's chat template rendered as transformers' `tokenizer.apply_chat_template(messages,
// tokenize=False, add_generation_prompt=...)` renders it: the Jinja source from the model folder
// (chat_template.jinja, else tokenizer_config.json's "chat_template": a string, or a list of
// {name, template} where "default" is used), with bos_token, eos_token and strftime_now defined.
// Rendered by minja (third_party/minja, the engine llama.cpp uses), polyfills off; `{% generation
// %}` blocks are tracked as transformers' AssistantTracker tracks them (a small patch of minja, see
// third_party/minja/README.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "warmup/types.h"

namespace warmup {

class Tokenizer;

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
  // As render, plus the byte ranges [begin, end) of the text that `{% generation %}` ...
  // `{% endgeneration %}` blocks rendered, in order (transformers' generation_indices).
  struct Tracked {
    std::string text;
    std::vector<std::pair<size_t, size_t>> generation;
  };
  Tracked render_tracked(const nlohmann::json& messages, bool add_generation_prompt) const;
  // TRL's has_generation_markers: the source contains {% generation %} (any whitespace control).
  bool has_generation_markers() const;
  const std::string& origin() const { return origin_; }
  const std::string& source() const;
  const std::string& bos_token() const;
  const std::string& eos_token() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string origin_;
};

// TRL's get_training_chat_template (trl/chat_template_utils.py, TRL 1.16): `t` itself when it
// has {% generation %} markers; else, when its source is exactly one of the templates TRL ships a
// training variant of (third_party/trl_chat_templates: Qwen2.5, Qwen3, Qwen3-Instruct-2507,
// Llama 3, DeepSeek-R1-Distill), that variant, with t's bos/eos tokens. Throws DataError naming
// t's file otherwise, saying how to add the markers.
std::shared_ptr<const ChatTemplate> training_chat_template(std::shared_ptr<const ChatTemplate> t);

// transformers' apply_chat_template(messages, tokenize=True, return_dict=True,
// return_assistant_tokens_mask=assistant_masks) (tokenization_utils_base.py, transformers 5.24):
// the rendered text tokenised without special tokens and, when asked, 1 on every token whose bytes
// overlap a generation block's bytes. A token's bytes are its decoded bytes laid end to end (the
// offsets of a byte-level BPE without trim_offsets, as Qwen's and Llama 3's), laid against the text
// or, when the tokenizer normalises, its NFC form (span boundaries then mapped through the NFC of
// the text before them). A tokenizer whose tokens spell neither throws DataError. Throws DataError
// as render does.
ChatTokens chat_template_tokens(const ChatTemplate& t, const Tokenizer& tok, const nlohmann::json& messages,
                                bool add_generation_prompt, bool assistant_masks);

// TRL's is_chat_template_stop_token_trained (trl/chat_template_utils.py, TRL 1.16): renders
// user, assistant, user and says whether the last non-whitespace token of the assistant mask is a
// special (added) token, i.e. the turn's end-of-turn token is trained, so the model learns to
// stop. False when rendering fails. TRL warns when it is not; so do sft and `warmup tokenize`.
bool end_of_turn_trained(const ChatTemplate& t, const Tokenizer& tok);
// The warning TRL gives when end_of_turn_trained is false (naming t's file); "" when it is true.
std::string end_of_turn_warning(const ChatTemplate& t, const Tokenizer& tok);

}  // namespace warmup
