// TRL's SFT dataset formats, tokenised as TRL's SFTTrainer tokenises them (trl/trainer/
// sft_trainer.py, TRL 1.16: `tokenize_fn` and `add_eos`). One JSONL record is one of:
//
//   {"prompt": "...", "completion": "..."}   standard prompt-completion: loss on the completion;
//       prompt and completion are encoded apart and EOS is appended (append_eos), as warmup's SFT
//       has always done (the paper's distillation data)
//   {"text": "..."}                          language modelling: loss on every token, EOS appended
//   {"messages": [{"role", "content"}...]}   conversational: the chat template over all messages,
//       loss on every token (TRL's default, assistant_only_loss = false); no EOS is added (the
//       template ends the turn)
//   {"prompt": [messages], "completion": [messages]}  conversational prompt-completion: the prompt
//       rendered with add_generation_prompt, the whole conversation rendered, and the completion
//       starts where their token ids diverge (TRL's common_prefix_length); loss on the completion
//       (TRL's completion_only_loss)
//
// With assistant_only_loss (TRL's SFTConfig option; conversational rows only), conversations are
// rendered with the template's training variant (Policy::apply_training_chat_template: TRL swaps
// in trl/chat_templates/*_training.jinja when the model's template has no {% generation %}
// markers), and the loss is further limited to transformers' assistant_masks: TRL's labels keep a
// token where every applicable mask (completion_mask of prompt-completion rows, assistant_masks)
// is 1. A row without any assistant token is an error, as in TRL.
//
// Tokens are not re-derived from text at training time: SftTokens is what is trained on.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "jsonl.h"
#include "types.h"

namespace warmup {

struct SftTokens {
  std::vector<int32_t> prompt;      // context: no loss
  std::vector<int32_t> completion;  // trained on (each token predicted from everything before it)
  // Empty, or completion.size() flags: only tokens flagged 1 are trained on (assistant_only_loss).
  std::vector<uint8_t> completion_mask;
};

struct SftTokenizer {
  std::function<std::vector<int32_t>(const std::string&)> encode;  // no special tokens added
  // transformers' apply_chat_template(messages, tokenize=False, add_generation_prompt=...)
  std::function<std::string(const nlohmann::json&, bool)> chat;
  std::vector<int32_t> eos;  // appended (eos[0]) to standard rows when append_eos
  bool append_eos = true;
  // assistant_only_loss: conversations through Policy::apply_training_chat_template
  // (messages, add_generation_prompt); unset unless assistant_only_loss.
  std::function<ChatTokens(const nlohmann::json&, bool)> training_chat;
  bool assistant_only_loss = false;
};

// "prompt-completion", "text", "messages" or "conversational prompt-completion" for a record;
// throws DataError naming `where` for anything else.
inline std::string sft_format(const nlohmann::json& row, const std::string& where) {
  if (!row.is_object()) throw DataError(where + ": expected a JSON object, found " + std::string(row.type_name()));
  for (const char* key : {"tools", "chat_template_kwargs", "images"})
    if (row.contains(key)) throw DataError(where + ": '" + key + "' is not supported in SFT rows (TRL's formats without it are)");
  if (row.contains("messages")) {
    if (!row["messages"].is_array()) throw DataError(where + ": 'messages' must be a list of {role, content}");
    return "messages";
  }
  if (row.contains("prompt") && row["prompt"].is_array()) {
    if (!row.contains("completion")) throw DataError(where + ": missing field 'completion' (list of messages)");
    if (!row["completion"].is_array())
      throw DataError(where + ": field 'completion': expected a list of messages (as 'prompt'), found " +
                      std::string(row["completion"].type_name()));
    return "conversational prompt-completion";
  }
  if (row.contains("prompt") || row.contains("completion")) {
    json_field<std::string>(row, "prompt", where);  // the standard errors: missing, or the wrong type
    json_field<std::string>(row, "completion", where);
    return "prompt-completion";
  }
  if (row.contains("text")) {
    if (!row["text"].is_string()) throw DataError(where + ": 'text' must be a string");
    return "text";
  }
  throw DataError(where + ": not an SFT record: expected {prompt, completion}, {messages} or {text} (TRL's formats)");
}

// Checks the messages of a conversational record: a list of objects with string role and content.
inline void check_messages(const nlohmann::json& msgs, const std::string& where, const char* key) {
  for (size_t i = 0; i < msgs.size(); ++i) {
    const auto& m = msgs[i];
    std::string at = where + ": " + key + "[" + std::to_string(i) + "]";
    if (!m.is_object()) throw DataError(at + ": expected {role, content}");
    if (!m.contains("role") || !m["role"].is_string()) throw DataError(at + ": missing string 'role'");
    if (!m.contains("content") || (!m["content"].is_string() && !m["content"].is_array()))
      throw DataError(at + ": missing 'content'");
  }
}

// Checks a record without tokenising it (what `warmup run --dry-run` can check); returns its format.
inline std::string check_sft_row(const nlohmann::json& row, const std::string& where) {
  std::string format = sft_format(row, where);
  if (format == "messages") check_messages(row["messages"], where, "messages");
  if (format == "conversational prompt-completion") {
    check_messages(row["prompt"], where, "prompt");
    check_messages(row["completion"], where, "completion");
  }
  return format;
}

// The record's tokens, as TRL tokenises them (see the top of this file). Throws DataError naming
// `where` for a malformed record or a failed chat template.
inline SftTokens tokenize_sft_row(const nlohmann::json& row, const SftTokenizer& tk, const std::string& where) {
  const std::string format = sft_format(row, where);
  SftTokens out;
  if (tk.assistant_only_loss && (format == "prompt-completion" || format == "text"))
    throw DataError(where + ": assistant_only_loss applies to conversational rows ({\"messages\"} or {\"prompt\": [...], "
                    "\"completion\": [...]}) only, as in TRL; this row is " + format);
  // assistant_only_loss: the row's assistant masks, checked as TRL checks them.
  auto assistant = [&](const nlohmann::json& msgs) {
    ChatTokens t = tk.training_chat(msgs, false);
    if (std::find(t.assistant_masks.begin(), t.assistant_masks.end(), uint8_t(1)) == t.assistant_masks.end())
      throw DataError(where + ": assistant_only_loss: the row has no assistant tokens (no {% generation %} block "
                      "rendered any text)");
    return t;
  };
  if (format == "prompt-completion") {
    out.prompt = tk.encode(row["prompt"].get<std::string>());
    out.completion = tk.encode(row["completion"].get<std::string>());
    if (tk.append_eos && !tk.eos.empty()) out.completion.push_back(tk.eos[0]);
  } else if (format == "text") {
    out.completion = tk.encode(row["text"].get<std::string>());
    if (tk.append_eos && !tk.eos.empty() && (out.completion.empty() || out.completion.back() != tk.eos[0]))
      out.completion.push_back(tk.eos[0]);
  } else if (format == "messages") {
    check_messages(row["messages"], where, "messages");
    if (!tk.assistant_only_loss) {
      out.completion = tk.encode(tk.chat(row["messages"], false));
    } else {  // the context is everything before the first assistant token
      ChatTokens t = assistant(row["messages"]);
      size_t first = size_t(std::find(t.assistant_masks.begin(), t.assistant_masks.end(), uint8_t(1)) -
                            t.assistant_masks.begin());
      out.prompt.assign(t.input_ids.begin(), t.input_ids.begin() + std::ptrdiff_t(first));
      out.completion.assign(t.input_ids.begin() + std::ptrdiff_t(first), t.input_ids.end());
      out.completion_mask.assign(t.assistant_masks.begin() + std::ptrdiff_t(first), t.assistant_masks.end());
    }
  } else {
    check_messages(row["prompt"], where, "prompt");
    check_messages(row["completion"], where, "completion");
    nlohmann::json all = row["prompt"];
    for (const auto& m : row["completion"]) all.push_back(m);
    std::vector<int32_t> prompt, full;
    std::vector<uint8_t> masks;
    if (!tk.assistant_only_loss) {
      prompt = tk.encode(tk.chat(row["prompt"], true));
      full = tk.encode(tk.chat(all, false));
    } else {
      prompt = tk.training_chat(row["prompt"], true).input_ids;
      ChatTokens t = assistant(all);
      full = std::move(t.input_ids), masks = std::move(t.assistant_masks);
    }
    size_t n = 0;  // TRL's common_prefix_length
    while (n < prompt.size() && n < full.size() && prompt[n] == full[n]) ++n;
    out.prompt.assign(full.begin(), full.begin() + std::ptrdiff_t(n));
    out.completion.assign(full.begin() + std::ptrdiff_t(n), full.end());
    if (!masks.empty()) out.completion_mask.assign(masks.begin() + std::ptrdiff_t(n), masks.end());
  }
  return out;
}

}  // namespace warmup
