// UTF-8 helpers for the tokenizer: validation with U+FFFD replacement (the lossy decoding HF
// tokenizers and Python use), code point iteration, NFC normalisation (utf8proc).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace warmup {

// Length of the valid UTF-8 sequence starting at s[i], or 0 if it is not valid there.
size_t utf8_valid_length(std::string_view s, size_t i);
// `s` with every invalid or truncated sequence replaced by U+FFFD (one per maximal invalid
// subpart, as Python's errors="replace" and Rust's from_utf8_lossy do).
std::string utf8_sanitize(std::string_view s);
bool utf8_is_valid(std::string_view s);
// Appends the UTF-8 encoding of code point cp.
void utf8_append(std::string& out, char32_t cp);
// Unicode NFC of valid UTF-8 text.
std::string nfc(std::string_view s);
// Bytes at the end of `s` that start an incomplete (but so far valid) UTF-8 sequence.
size_t utf8_incomplete_tail(std::string_view s);

}  // namespace warmup
