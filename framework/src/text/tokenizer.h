// Tokenizer from a Hugging Face `tokenizer.json`: byte-level BPE as used by Qwen2/2.5/3 and
// Llama-3 (added tokens split out as HF's AddedVocabulary does: normalized: false ones on the raw
// text, then normalized: true ones on each NFC-normalised piece, with lstrip, rstrip and
// single_word honoured; NFC normaliser, Split(regex) + ByteLevel pre-tokenizer on PCRE2 with JIT,
// ranked merges, ByteLevel decoder, TemplateProcessing post-processor), plus bos/eos/pad from
// tokenizer_config.json. Input text that is not valid UTF-8 is first made valid with U+FFFD
// replacements (as Python's errors="replace").
//
// Not supported (an error at load naming the JSON pointer): other models (WordPiece, Unigram),
// other normalisers, pre-tokenizers, decoders and post-processors, no decoder, byte_fallback, BPE
// dropout other than 0, continuing_subword_prefix, end_of_word_suffix, truncation, padding, and
// added-token ids other than those HF tokenizers assigns (it ignores the ids in the file).
// Known gap: single_word's word test uses utf8proc's Unicode data, older than HF's (Unicode 16).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace warmup {

class Tokenizer {
 public:
  // Loads tokenizer.json (and tokenizer_config.json if present) from a directory or a file.
  static Tokenizer load(const std::filesystem::path& path);
  // A byte-level tokenizer for tiny from-scratch models: 256 byte tokens and the given special
  // tokens after them, as a real tokenizer.json (BPE without merges) that HF tokenizers also loads.
  static std::string byte_level_json(const std::vector<std::string>& specials);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // Token ids of `text`. add_special_tokens applies the post-processor (e.g. Llama-3's BOS).
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = false) const;
  // Text of `ids`; bytes that do not form valid UTF-8 become U+FFFD (HF's lossy decode).
  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens = false) const;
  // Raw bytes of `ids`, without the lossy UTF-8 step: for streaming, see Utf8Stream.
  std::string decode_bytes(const std::vector<int32_t>& ids, bool skip_special_tokens = false) const;

  std::optional<int32_t> token_to_id(std::string_view token) const;
  std::string id_to_token(int32_t id) const;
  int32_t vocab_size() const;  // highest id + 1, added tokens included
  bool is_special(int32_t id) const;

  std::optional<int32_t> bos_id() const;
  std::optional<int32_t> eos_id() const;
  std::optional<int32_t> pad_id() const;
  const std::filesystem::path& source() const;

  struct Impl;  // defined in tokenizer.cpp

 private:
  static Tokenizer load_impl(const std::filesystem::path& path);
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Incremental decoding: feed token bytes as they come, get back only complete UTF-8.
class Utf8Stream {
 public:
  std::string push(std::string_view bytes);  // complete characters so far
  std::string finish();                      // the rest, invalid tail replaced by U+FFFD
 private:
  std::string pending_;
};

// Prompt rendering. Raw: the text as is (the paper's R1-style prompts). ChatML (Qwen instruct):
// "<|im_start|>role\ncontent<|im_end|>\n" per message, then "<|im_start|>assistant\n".
struct ChatMessage {
  std::string role;
  std::string content;
};
std::string render_chatml(const std::vector<ChatMessage>& messages, bool add_generation_prompt = true);

}  // namespace warmup
