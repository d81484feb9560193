// See tokenizer.h. The encode path: sanitize UTF-8 -> split out added tokens (leftmost-longest)
// -> NFC -> regex pre-tokenization (PCRE2 JIT) -> byte-level mapping -> BPE (heap merge, O(n log n) per piece) with a piece cache.
#define PCRE2_CODE_UNIT_WIDTH 8
#include "text/tokenizer.h"

#include <pcre2.h>
#include <utf8proc.h>

#include <algorithm>
#include <array>
#include <climits>
#include <fstream>
#include <functional>
#include <mutex>
#include <sstream>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "text/utf8.h"
#include "util/brief.h"
#include "util/errors.h"

namespace warmup {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// GPT-2's reversible byte <-> printable code point map used by the ByteLevel pre-tokenizer.
std::array<char32_t, 256> bytes_to_unicode() {
  std::array<char32_t, 256> map{};
  std::array<bool, 256> direct{};
  for (int b = '!'; b <= '~'; ++b) direct[size_t(b)] = true;
  for (int b = 0xA1; b <= 0xAC; ++b) direct[size_t(b)] = true;
  for (int b = 0xAE; b <= 0xFF; ++b) direct[size_t(b)] = true;
  char32_t next = 256;
  for (int b = 0; b < 256; ++b) map[size_t(b)] = direct[size_t(b)] ? char32_t(b) : next++;
  return map;
}

// Token ids are int32 here (u32 in HF tokenizers); the largest real vocabularies have ~262k tokens.
constexpr int32_t kMaxTokenId = int32_t(1) << 24;
constexpr size_t kMaxCachedPiece = 256;  // bytes; HF's BPE cache keeps words shorter than 256 chars

constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

struct AddedToken {
  std::string content;  // what is matched: the content, or its normalised form if `normalized`
  int32_t id;
  bool special, single_word, lstrip, rstrip, normalized;
};

// Added tokens matched on one form of the text (raw or normalised), leftmost-longest like HF's
// Aho-Corasick automaton with MatchKind::LeftmostLongest.
struct AddedSet {
  std::vector<AddedToken> tokens;  // sorted by content
  std::array<bool, 256> first{};   // bytes that start a token
  size_t max_len = 0;

  void add(AddedToken tok) {
    first[static_cast<unsigned char>(tok.content[0])] = true;
    max_len = std::max(max_len, tok.content.size());
    tokens.push_back(std::move(tok));
  }
  void finish() {
    std::sort(tokens.begin(), tokens.end(), [](const AddedToken& x, const AddedToken& y) { return x.content < y.content; });
  }
  // The longest token that starts at text[i], or null.
  const AddedToken* longest_at(std::string_view text, size_t i) const {
    if (!first[static_cast<unsigned char>(text[i])]) return nullptr;
    for (size_t len = std::min(max_len, text.size() - i); len > 0; --len) {
      std::string_view cand = text.substr(i, len);
      auto it = std::lower_bound(tokens.begin(), tokens.end(), cand,
                                 [](const AddedToken& a, std::string_view c) { return a.content < c; });
      if (it != tokens.end() && it->content == cand) return &*it;
    }
    return nullptr;
  }
};

// Code point of the valid UTF-8 sequence at s[i] (its length in *len), and of the one ending at s[end].
char32_t code_point_at(std::string_view s, size_t i, size_t* len) {
  size_t n = utf8_valid_length(s, i);
  if (!n) n = 1;
  unsigned char c0 = static_cast<unsigned char>(s[i]);
  char32_t cp = n == 1 ? c0 : n == 2 ? (c0 & 0x1F) : n == 3 ? (c0 & 0x0F) : (c0 & 0x07);
  for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  if (len) *len = n;
  return cp;
}
char32_t code_point_before(std::string_view s, size_t end, size_t* len) {
  size_t i = end - 1;
  while (i > 0 && end - i < 4 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
  return code_point_at(s, i, len);
}

// Rust regex's Unicode \s: the White_Space property.
bool is_white_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// Rust regex's Unicode \w (UTS #18): Alphabetic, marks, decimal digits, connector punctuation,
// Join_Control. Alphabetic is letters, letter numbers and Other_Alphabetic; the latter is marks
// but for the circled and squared Latin letters listed here.
bool is_word_char(char32_t c) {
  if (c == 0x200C || c == 0x200D) return true;
  if ((c >= 0x24B6 && c <= 0x24E9) || (c >= 0x1F130 && c <= 0x1F149) || (c >= 0x1F150 && c <= 0x1F169) ||
      (c >= 0x1F170 && c <= 0x1F189))
    return true;
  switch (utf8proc_category(utf8proc_int32_t(c))) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT: case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME: case UTF8PROC_CATEGORY_PC:
      return true;
    default:
      return false;
  }
}

// PCRE2's \s (with UCP) also matches U+180E, which its \h list keeps; HF's Oniguruma follows the
// White_Space property, which dropped U+180E in Unicode 6.3. So \s is spelled out as White_Space
// and U+180E is added to \S before compiling.
constexpr const char* kWhiteSpaceClass =
    R"(\t\n\x{0B}\f\r\x{20}\x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000})";

std::string spell_out_white_space(const std::string& re) {
  std::string out, ws = kWhiteSpaceClass;
  bool in_class = false;
  for (size_t i = 0; i < re.size(); ++i) {
    char c = re[i];
    if (c == '\\' && i + 1 < re.size()) {
      char e = re[i + 1];
      if (e == 'Q') {  // \Q...\E: literal
        size_t end = re.find("\\E", i + 2);
        size_t stop = end == std::string::npos ? re.size() : end + 2;
        out.append(re, i, stop - i);
        i = stop - 1;
      } else if (e == 's') {
        out += in_class ? ws : "[" + ws + "]";
        ++i;
      } else if (e == 'S') {  // U+180E is not White_Space, so it belongs in \S
        out += in_class ? R"(\S\x{180E})" : R"([\S\x{180E}])";
        ++i;
      } else {
        out += c;
        out += e;
        ++i;
      }
      continue;
    }
    if (in_class) {
      if (c == '[' && i + 1 < re.size() && re[i + 1] == ':') {  // [:alpha:]
        if (size_t end = re.find(":]", i + 2); end != std::string::npos) {
          out.append(re, i, end + 2 - i);
          i = end + 1;
          continue;
        }
      }
      if (c == ']') in_class = false;
      out += c;
      continue;
    }
    out += c;
    if (c == '[') {
      in_class = true;
      if (i + 1 < re.size() && re[i + 1] == '^') out += re[++i];
      if (i + 1 < re.size() && re[i + 1] == ']') out += re[++i];  // a leading ] is literal
    }
  }
  return out;
}

struct Regex {
  pcre2_code* code = nullptr;
  bool jit = false;
  ~Regex() {
    if (code) pcre2_code_free(code);
  }
};

// Per-thread PCRE2 matching state (match data, JIT stack).
struct MatchState {
  pcre2_match_data* md = pcre2_match_data_create(1, nullptr);
  pcre2_jit_stack* stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
  pcre2_match_context* ctx = pcre2_match_context_create(nullptr);
  MatchState() { pcre2_jit_stack_assign(ctx, nullptr, stack); }
  ~MatchState() {
    pcre2_match_data_free(md);
    pcre2_jit_stack_free(stack);
    pcre2_match_context_free(ctx);
  }
};

std::string token_text(const json& j) {  // "x" or {"content": "x", ...}
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object() && j.contains("content") && j["content"].is_string()) return j["content"].get<std::string>();
  return "";
}

}  // namespace

struct Tokenizer::Impl {
  fs::path source;
  std::unordered_map<std::string, int32_t> vocab;  // model vocab and added tokens
  std::vector<std::string> tokens;                 // id -> token string
  std::vector<std::string> bytes;                  // id -> decoded bytes
  std::vector<bool> special;
  std::vector<bool> added;
  std::vector<bool> in_model;
  std::vector<bool> skipped;   // dropped by decode(skip_special_tokens)  // in the model vocab (ignore_merges looks up only those)
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges;  // (a,b) -> (rank, merged)
  std::array<int32_t, 256> byte_ids{};
  AddedSet raw_added;   // normalized: false, matched on the raw text first
  AddedSet norm_added;  // normalized: true, matched on each normalised remaining piece
  Regex regex;
  bool nfc = false;
  bool add_prefix_space = false;
  bool split_regex = false;  // the regex is a Split pre-tokenizer's (run before ByteLevel's prefix space)
  bool ignore_merges = false;
  std::vector<int32_t> prefix, suffix;  // post-processor (single sequence)
  std::optional<int32_t> bos, eos, pad;
  mutable std::mutex cache_mu;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache;

  [[noreturn]] void fail(const std::string& where, const std::string& what) const {
    throw DataError(source.string() + ": " + where + ": " + what);
  }

  // obj[key], which must be an array.
  const nlohmann::json& array(const nlohmann::json& obj, const char* key, const std::string& where) const {
    if (!obj.contains(key) || !obj[key].is_array()) fail(where + "/" + key, "must be an array");
    return obj[key];
  }

  void bpe(std::string_view piece, std::vector<int32_t>& out) const;
  void merge_all(std::string_view piece, std::vector<int32_t>& sym) const;
  void pretokenize_and_bpe(std::string_view text, std::vector<int32_t>& out) const;
  void encode_normalized_piece(std::string_view raw, std::vector<int32_t>& out) const;
};

// ---- loading -----------------------------------------------------------------------------

namespace {

void load_pre_tokenizer(Tokenizer::Impl& t, const json& pre, const std::string& where, std::string& pattern,
                        bool& have_byte_level);

}  // namespace

Tokenizer Tokenizer::load(const fs::path& path) {
  try {
    return load_impl(path);
  } catch (const json::exception& e) {
    fs::path file = fs::is_directory(path) ? path / "tokenizer.json" : path;
    throw DataError(file.string() + ": malformed tokenizer: " + e.what());
  }
}

namespace {

using Impl = Tokenizer::Impl;

// The top level, encoding options and the BPE model's options; returns the model object.
const json& read_model_options(Impl& t, const json& j) {
  if (!j.is_object()) t.fail("/", std::string("must be an object, got ") + j.type_name());
  if (j.contains("version") && j["version"] != "1.0")
    t.fail("/version", "unknown tokenizer version " + brief(j["version"]) + " (supported: \"1.0\")");
  // Encoding options HF tokenizers applies on every encode: not supported, so refused.
  for (const char* key : {"truncation", "padding"})
    if (j.contains(key) && !j[key].is_null())
      t.fail(std::string("/") + key, std::string(key) + " is not supported (must be null, got " + brief(j[key]) + ")");
  for (const char* key : {"normalizer", "pre_tokenizer", "post_processor", "decoder"})
    if (j.contains(key) && !j[key].is_null() && !j[key].is_object())
      t.fail(std::string("/") + key, std::string("must be an object or null, got ") + j[key].type_name());
  static const json kNoModel = json::object();  // a file without "model": reported as missing its vocab below
  const json& model = j.is_object() && j.contains("model") ? j["model"] : kNoModel;
  if (!model.is_object()) t.fail("/model", std::string("must be an object, got ") + model.type_name());
  std::string type = model.value("type", std::string("BPE"));
  if (type != "BPE") t.fail("/model/type", "unsupported tokenizer model '" + brief(type) + "' (supported: BPE)");
  // Model options. unk_token and fuse_unk only act on a character without a token, which a
  // byte-level vocabulary (all 256 bytes, checked below) never has.
  auto model_bool = [&](const char* key) {
    if (!model.contains(key) || model[key].is_null()) return false;
    if (!model[key].is_boolean())
      t.fail(std::string("/model/") + key, "must be true or false, got " + brief(model[key]));
    return model[key].get<bool>();
  };
  if (model_bool("byte_fallback")) t.fail("/model/byte_fallback", "byte_fallback is not supported");
  model_bool("fuse_unk");
  t.ignore_merges = model_bool("ignore_merges");
  if (model.contains("dropout") && !model["dropout"].is_null() &&
      !(model["dropout"].is_number() && model["dropout"].get<double>() == 0.0))
    t.fail("/model/dropout", "BPE dropout is not supported (must be null or 0, got " + brief(model["dropout"]) + ")");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (model.contains(key) && !model[key].is_null() && model[key] != "")
      t.fail(std::string("/model/") + key,
             std::string(key) + " is not supported (must be null or \"\", got " + brief(model[key]) + ")");
  if (model.contains("unk_token") && !model["unk_token"].is_null() && !model["unk_token"].is_string())
    t.fail("/model/unk_token", "must be a string or null, got " + brief(model["unk_token"]));
  if (!model.contains("vocab") || !model["vocab"].is_object()) t.fail("/model/vocab", "missing");
  return model;
}

// Token ids of the vocab and the added tokens: checked, then sizing the id tables.
void read_vocab(Impl& t, const json& vocab, const json& added) {
  // Ids are checked before they size the id tables: integers below kMaxTokenId, and not so sparse
  // that a few entries with large ids allocate tables far beyond the file's own tokens.
  auto id_of = [&](const json& v, const std::string& where) -> int32_t {
    if (!v.is_number_unsigned() || v.get<uint64_t>() >= uint64_t(kMaxTokenId))
      t.fail(where, "id " + brief(v) + " is not a token id (an integer in 0.." + std::to_string(kMaxTokenId - 1) + ")");
    return int32_t(v.get<uint64_t>());
  };
  int32_t max_id = -1;
  for (const auto& [tok, id] : vocab.items()) max_id = std::max(max_id, id_of(id, "/model/vocab/" + brief(tok)));
  for (size_t i = 0; i < added.size(); ++i) {
    const json& a = added[i];
    std::string where = "/added_tokens/" + std::to_string(i);
    if (!a.is_object() || !a.contains("id") || !a.contains("content") || !a["content"].is_string())
      t.fail(where, "must be an object with an integer \"id\" and a string \"content\", got " + brief(a));
    for (const char* flag : {"special", "single_word", "lstrip", "rstrip", "normalized"})  // all required, as in HF
      if (!a.contains(flag) || !a[flag].is_boolean())
        t.fail(where + "/" + flag, "must be true or false, got " + (a.contains(flag) ? brief(a[flag]) : "nothing"));
    max_id = std::max(max_id, id_of(a["id"], where + "/id"));
  }
  size_t entries = vocab.size() + added.size();
  if (max_id >= 0 && uint64_t(max_id) + 1 > 2 * uint64_t(entries) + 1024)
    t.fail("/model/vocab", "the highest token id is " + std::to_string(max_id) + " but there are only " +
                               std::to_string(entries) + " tokens (ids may leave at most " +
                               std::to_string(entries + 1024) + " unused)");
  t.tokens.resize(size_t(max_id + 1));
  t.special.assign(size_t(max_id + 1), false);
  t.added.assign(size_t(max_id + 1), false);
  t.in_model.assign(size_t(max_id + 1), false);
  t.skipped.assign(size_t(max_id + 1), false);
  for (const auto& [tok, id] : vocab.items()) {
    t.vocab[tok] = int32_t(id.get<uint64_t>());
    t.tokens[size_t(id.get<uint64_t>())] = tok;
    t.in_model[size_t(id.get<uint64_t>())] = true;
  }

}

void read_merges(Impl& t, const json& model) {
  // Merges: ["a", "b"] pairs (current format) or "a b" strings (older files).
  int32_t rank = 0;
  json merges = model.contains("merges") && !model["merges"].is_null() ? model["merges"] : json::array();
  if (!merges.is_array()) t.fail("/model/merges", std::string("must be an array, got ") + merges.type_name());
  for (const auto& m : merges) {
    std::string a, b;
    if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      a = m[0].get<std::string>(), b = m[1].get<std::string>();
    } else if (m.is_string()) {
      std::string s = m.get<std::string>();
      size_t sp = s.find(' ', 1);
      if (sp == std::string::npos) t.fail("/model/merges/" + std::to_string(rank), "malformed merge '" + brief(s) + "'");
      a = s.substr(0, sp), b = s.substr(sp + 1);
    } else {
      t.fail("/model/merges/" + std::to_string(rank),
             "a merge is [\"a\", \"b\"] or \"a b\", got " + brief(m));
    }
    auto ia = t.vocab.find(a), ib = t.vocab.find(b), iab = t.vocab.find(a + b);
    if (ia == t.vocab.end() || ib == t.vocab.end() || iab == t.vocab.end())
      t.fail("/model/merges/" + std::to_string(rank), "merge '" + brief(a + " " + b) + "' uses tokens not in the vocab");
    uint64_t key = (uint64_t(uint32_t(ia->second)) << 32) | uint32_t(ib->second);
    t.merges.emplace(key, std::make_pair(rank, iab->second));
    ++rank;
  }

}

// The byte-level alphabet: byte -> its token id; returns code point -> byte.
std::unordered_map<char32_t, uint8_t> read_byte_alphabet(Impl& t) {
  // Byte-level alphabet.
  auto b2u = bytes_to_unicode();
  std::unordered_map<char32_t, uint8_t> u2b;
  for (int b = 0; b < 256; ++b) {
    std::string ch;
    utf8_append(ch, b2u[size_t(b)]);
    auto it = t.vocab.find(ch);
    t.byte_ids[size_t(b)] = it == t.vocab.end() ? -1 : it->second;
    u2b[b2u[size_t(b)]] = uint8_t(b);
  }

  return u2b;
}

void read_normalizer(Impl& t, const json& j) {
  // Normaliser (before the added tokens: normalized ones are matched in normalised form).
  const json& norm = j.value("normalizer", json());
  auto check_norm = [&](const json& n, const std::string& where) {
    std::string nt = n.is_object() ? n.value("type", "") : "";
    if (nt == "NFC") t.nfc = true;
    else t.fail(where, "unsupported normalizer '" + brief(nt) + "' (supported: NFC)");
  };
  if (norm.is_object()) {
    if (norm.value("type", "") == "Sequence") {
      const json& list = t.array(norm, "normalizers", "/normalizer");
      for (size_t i = 0; i < list.size(); ++i) check_norm(list[i], "/normalizer/normalizers/" + std::to_string(i));
    } else {
      check_norm(norm, "/normalizer");
    }
  }

}

void read_added_tokens(Impl& t, const json& added, size_t vocab_size) {
  // Added tokens. HF tokenizers ignores the ids in the file: it adds the tokens in file order, each
  // taking its id in the model vocab or else the next id after the vocab and the tokens before it.
  // A file whose ids differ from those is refused rather than read two ways.
  std::unordered_map<std::string, size_t> added_at;  // content -> index in the file
  std::unordered_map<std::string, size_t> pattern_at;  // normalised content of a normalized token -> index
  int32_t next_id = -1;
  for (size_t i = 0; i < added.size(); ++i) {
    const json& a = added[i];
    std::string where = "/added_tokens/" + std::to_string(i);
    AddedToken tok{a["content"].get<std::string>(), int32_t(a["id"].get<uint64_t>()), a["special"].get<bool>(),
                   a["single_word"].get<bool>(), a["lstrip"].get<bool>(), a["rstrip"].get<bool>(),
                   a["normalized"].get<bool>()};
    if (tok.content.empty()) continue;  // HF skips empty tokens
    if (!utf8_is_valid(tok.content)) t.fail(where + "/content", "is not valid UTF-8");
    if (auto [it, fresh] = added_at.emplace(tok.content, i); !fresh)
      t.fail(where + "/content", "'" + brief(tok.content) + "' is already /added_tokens/" + std::to_string(it->second));
    int32_t expect;
    if (auto it = t.vocab.find(tok.content); it != t.vocab.end()) {
      expect = it->second;
    } else {
      int32_t model_size = int32_t(vocab_size);
      expect = next_id < 0 ? model_size : (next_id >= model_size || model_size == 0) ? next_id + 1 : model_size;
    }
    if (tok.id != expect)
      t.fail(where + "/id", "token '" + brief(tok.content) + "' has id " + std::to_string(tok.id) +
                                " but HF tokenizers gives it id " + std::to_string(expect) +
                                " (its id in the model vocab, else the next after the vocab and the added tokens before it)");
    next_id = std::max(next_id, tok.id);
    t.vocab[tok.content] = tok.id;
    // HF's id_to_token, and so its decode, give a normalized token in normalised form.
    t.tokens[size_t(tok.id)] = tok.normalized && t.nfc ? nfc(tok.content) : tok.content;
    t.special[size_t(tok.id)] = tok.special;
    // HF skips a token whose id_to_token is in its set of special contents: not a special
    // normalized token that NFC changes.
    t.skipped[size_t(tok.id)] = tok.special && t.tokens[size_t(tok.id)] == tok.content;
    t.added[size_t(tok.id)] = true;
    if (tok.normalized) {
      // Two normalized tokens with one normalised form: HF matches either, chosen by hash order.
      if (t.nfc) tok.content = nfc(tok.content);
      if (auto [it, fresh] = pattern_at.emplace(tok.content, i); !fresh)
        t.fail(where + "/content", "normalises to '" + brief(tok.content) + "' as /added_tokens/" +
                                       std::to_string(it->second) + " does (HF tokenizers would match either at random)");
      t.norm_added.add(std::move(tok));
    } else {
      t.raw_added.add(std::move(tok));
    }
  }
  t.raw_added.finish();
  t.norm_added.finish();

}

void compute_decoded_bytes(Impl& t, const std::unordered_map<char32_t, uint8_t>& u2b) {
  // Decoded bytes per id, as HF's ByteLevel decoder does for every token (added ones too): the
  // bytes of its characters when each is in the byte-level alphabet, else the token's own UTF-8.
  t.bytes.resize(t.tokens.size());
  for (size_t id = 0; id < t.tokens.size(); ++id) {
    const std::string& s = t.tokens[id];
    if (!utf8_is_valid(s)) t.fail("/model/vocab", "token " + std::to_string(id) + " is not valid UTF-8");
    std::string out;
    bool mapped = true;
    for (size_t i = 0; i < s.size() && mapped;) {
      size_t len = 0;
      auto it = u2b.find(code_point_at(s, i, &len));
      if (it != u2b.end()) out += char(it->second);
      else mapped = false;
      i += len;
    }
    t.bytes[id] = mapped ? std::move(out) : s;
  }

}

void compile_pre_tokenizer(Impl& t, const json& j) {
  // Pre-tokenizer.
  std::string pattern;
  bool byte_level = false;
  load_pre_tokenizer(t, j.value("pre_tokenizer", json()), "/pre_tokenizer", pattern, byte_level);
  if (!byte_level) t.fail("/pre_tokenizer", "a ByteLevel pre-tokenizer is required");
  for (int b = 0; b < 256; ++b)
    if (t.byte_ids[size_t(b)] < 0) t.fail("/model/vocab", "byte " + std::to_string(b) + " has no byte-level token");
  if (pattern.empty()) pattern = R"((?s).+)";  // no regex: each segment is one piece
  int err = 0;
  PCRE2_SIZE off = 0;
  t.regex.code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.c_str()), pattern.size(),
                               PCRE2_UTF | PCRE2_UCP, &err, &off, nullptr);
  if (!t.regex.code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof(msg));
    t.fail("/pre_tokenizer", "regex does not compile at offset " + std::to_string(off) + ": " +
                                 reinterpret_cast<char*>(msg));
  }
  std::string spelled = spell_out_white_space(pattern);
  pcre2_code_free(t.regex.code);
  t.regex.code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(spelled.c_str()), spelled.size(), PCRE2_UTF | PCRE2_UCP,
                               &err, &off, nullptr);
  if (!t.regex.code) t.fail("/pre_tokenizer", "regex does not compile with \\s spelled out: " + brief(spelled));
  t.regex.jit = pcre2_jit_compile(t.regex.code, PCRE2_JIT_COMPLETE) == 0;

}

void read_decoder_and_post_processor(Impl& t, const json& j) {
  // Decoder: ByteLevel (its add_prefix_space, trim_offsets and use_regex act on offsets only).
  // Without one HF tokenizers decodes to the token strings joined by spaces: refused.
  const json& dec = j.value("decoder", json());
  if (!dec.is_object()) t.fail("/decoder", "a ByteLevel decoder is required, got null");
  if (dec.value("type", "") != "ByteLevel")
    t.fail("/decoder", "unsupported decoder '" + brief(dec.value("type", "")) + "' (supported: ByteLevel)");

  // Post-processor: ByteLevel (no-op on ids), TemplateProcessing (single), Sequence of those.
  std::function<void(const json&, const std::string&)> post = [&](const json& p, const std::string& where) {
    if (!p.is_object()) return;
    std::string pt = p.value("type", "");
    if (pt == "ByteLevel") return;
    if (pt == "Sequence") {
      const json& list = t.array(p, "processors", where);
      for (size_t i = 0; i < list.size(); ++i) post(list[i], where + "/processors/" + std::to_string(i));
      return;
    }
    if (pt != "TemplateProcessing") t.fail(where, "unsupported post-processor '" + brief(pt) + "'");
    bool seen_a = false;
    for (const auto& item : t.array(p, "single", where)) {
      if (!item.is_object()) t.fail(where + "/single", "an item must be an object, got " + brief(item));
      if (item.contains("Sequence")) {
        seen_a = true;
      } else if (item.contains("SpecialToken")) {
        const json& st = item["SpecialToken"];
        if (!st.is_object() || !st.contains("id") || !st["id"].is_string())
          t.fail(where + "/single", "SpecialToken must have a string \"id\", got " + brief(st));
        // HF emits the ids listed under special_tokens/<id>/ids, not a vocab lookup of the name.
        std::string name = st["id"].get<std::string>();
        const json& specials = p.value("special_tokens", json::object());
        if (!specials.is_object() || !specials.contains(name) || !specials[name].is_object())
          t.fail(where + "/special_tokens", "template token '" + brief(name) + "' is not listed");
        const json& ids = t.array(specials[name], "ids", where + "/special_tokens/" + brief(name));
        for (const auto& id : ids) {
          if (!id.is_number_unsigned() || id.get<uint64_t>() >= t.tokens.size())
            t.fail(where + "/special_tokens/" + brief(name) + "/ids",
                   "id " + brief(id) + " is not a token id (an integer in 0.." + std::to_string(t.tokens.size() - 1) + ")");
          (seen_a ? t.suffix : t.prefix).push_back(int32_t(id.get<uint64_t>()));
        }
      } else {
        t.fail(where + "/single", "an item is a SpecialToken or a Sequence, got " + brief(item));
      }
    }
  };
  post(j.value("post_processor", json()), "/post_processor");

}

void read_tokenizer_config(Impl& t, const fs::path& dir) {
  // Special tokens from tokenizer_config.json.
  fs::path cfg = dir / "tokenizer_config.json";
  if (fs::exists(cfg)) {
    std::ifstream cin(cfg);
    json c;
    try {
      c = json::parse(cin);
    } catch (const json::parse_error& e) {
      throw DataError(cfg.string() + ": not valid JSON: " + e.what());
    }
    auto id_of = [&](const char* key) -> std::optional<int32_t> {
      if (!c.contains(key) || c[key].is_null()) return std::nullopt;
      std::string s = token_text(c[key]);
      auto it = t.vocab.find(s);
      if (it == t.vocab.end()) throw DataError(cfg.string() + ": " + key + " '" + s + "' is not a token");
      return it->second;
    };
    t.bos = id_of("bos_token"), t.eos = id_of("eos_token"), t.pad = id_of("pad_token");
  }
}

}  // namespace

Tokenizer Tokenizer::load_impl(const fs::path& path) {
  auto impl = std::make_unique<Impl>();
  Impl& t = *impl;
  fs::path dir = fs::is_directory(path) ? path : path.parent_path();
  t.source = fs::is_directory(path) ? path / "tokenizer.json" : path;
  std::ifstream in(t.source);
  if (!in) throw DataError(t.source.string() + ": cannot read tokenizer file");
  json j;
  try {
    j = json::parse(in);
  } catch (const json::parse_error& e) {
    throw DataError(t.source.string() + ": not valid JSON: " + e.what());
  }
  const json& model = read_model_options(t, j);
  const json& vocab = model["vocab"];
  json added = j.contains("added_tokens") && !j["added_tokens"].is_null() ? j["added_tokens"] : json::array();
  if (!added.is_array()) t.fail("/added_tokens", std::string("must be an array, got ") + added.type_name());
  read_vocab(t, vocab, added);
  read_merges(t, model);
  auto u2b = read_byte_alphabet(t);
  read_normalizer(t, j);  // before the added tokens: normalized ones are matched in normalised form
  read_added_tokens(t, added, vocab.size());
  compute_decoded_bytes(t, u2b);
  compile_pre_tokenizer(t, j);
  read_decoder_and_post_processor(t, j);
  read_tokenizer_config(t, dir);
  return Tokenizer(std::move(impl));
}

namespace {

void load_pre_tokenizer(Tokenizer::Impl& t, const json& pre, const std::string& where, std::string& pattern,
                        bool& have_byte_level) {
  if (!pre.is_object()) return;
  std::string type = pre.value("type", "");
  if (type == "Sequence") {
    const json& list = t.array(pre, "pretokenizers", where);
    for (size_t i = 0; i < list.size(); ++i)
      load_pre_tokenizer(t, list[i], where + "/pretokenizers/" + std::to_string(i), pattern, have_byte_level);
  } else if (type == "Split") {
    if (have_byte_level) t.fail(where, "a Split after the ByteLevel pre-tokenizer is not supported");
    if (!pattern.empty()) t.fail(where, "only one Split pre-tokenizer is supported");
    if (!pre.contains("pattern") || !pre["pattern"].is_object() || !pre["pattern"].contains("Regex") ||
        !pre["pattern"]["Regex"].is_string())
      t.fail(where, "only Split with a Regex pattern is supported");
    if (pre.value("behavior", "") != "Isolated" || pre.value("invert", false))
      t.fail(where, "only Split with behavior Isolated and invert false is supported");
    pattern = pre["pattern"]["Regex"].get<std::string>();
    t.split_regex = true;
  } else if (type == "ByteLevel") {
    // add_prefix_space and use_regex are honoured; trim_offsets acts on offsets only.
    if (have_byte_level) t.fail(where, "only one ByteLevel pre-tokenizer is supported");
    have_byte_level = true;
    for (const char* key : {"add_prefix_space", "trim_offsets", "use_regex"})  // HF requires the first two
      if ((pre.contains(key) || std::string_view(key) != "use_regex") && !(pre.contains(key) && pre[key].is_boolean()))
        t.fail(where + "/" + key, "must be true or false, got " + (pre.contains(key) ? brief(pre[key]) : "nothing"));
    t.add_prefix_space = pre["add_prefix_space"].get<bool>();
    if (pre.value("use_regex", true)) {
      if (!pattern.empty()) t.fail(where, "ByteLevel use_regex together with a Split is not supported");
      pattern = kGpt2Pattern;
    }
  } else {
    t.fail(where, "unsupported pre-tokenizer '" + brief(type) + "'");
  }
}

}  // namespace

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

// ---- encoding ----------------------------------------------------------------------------

// The merges of one piece, as HF's Word::merge_all: the lowest-ranked adjacent pair first,
// leftmost on ties. Symbols form a linked list over the piece's bytes; a min-heap holds the
// candidate merges keyed by (rank, position) and an entry whose pair has since changed is skipped
// (a pair's token only grows, so a stale entry never matches its merged id again): O(n log n).
void Tokenizer::Impl::merge_all(std::string_view piece, std::vector<int32_t>& sym) const {
  size_t n = piece.size();
  struct Sym {
    int32_t id;
    int32_t prev, next;  // -1: none
  };
  std::vector<Sym> s(n);
  for (size_t i = 0; i < n; ++i)
    s[i] = {byte_ids[static_cast<unsigned char>(piece[i])], int32_t(i) - 1, i + 1 < n ? int32_t(i + 1) : -1};
  struct Cand {
    int32_t rank, pos, id;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  auto lookup = [&](int32_t a, int32_t b) -> const std::pair<int32_t, int32_t>* {
    auto it = merges.find((uint64_t(uint32_t(a)) << 32) | uint32_t(b));
    return it == merges.end() ? nullptr : &it->second;
  };
  std::vector<Cand> heap;
  heap.reserve(n);
  auto push = [&](int32_t pos) {
    int32_t nx = s[size_t(pos)].next;
    if (nx < 0) return;
    if (auto m = lookup(s[size_t(pos)].id, s[size_t(nx)].id)) {
      heap.push_back({m->first, pos, m->second});
      std::push_heap(heap.begin(), heap.end(), std::greater<Cand>());
    }
  };
  for (size_t i = 0; i + 1 < n; ++i)
    if (auto m = lookup(s[i].id, s[i + 1].id)) heap.push_back({m->first, int32_t(i), m->second});
  std::make_heap(heap.begin(), heap.end(), std::greater<Cand>());
  std::vector<bool> dead(n, false);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), std::greater<Cand>());
    Cand c = heap.back();
    heap.pop_back();
    Sym& left = s[size_t(c.pos)];
    if (dead[size_t(c.pos)] || left.next < 0) continue;
    Sym& right = s[size_t(left.next)];
    auto m = lookup(left.id, right.id);
    if (!m || m->second != c.id) continue;  // stale: the pair changed since it was queued
    left.id = c.id;
    dead[size_t(left.next)] = true;
    left.next = right.next;
    if (left.next >= 0) s[size_t(left.next)].prev = c.pos;
    push(c.pos);
    if (left.prev >= 0) push(left.prev);
  }
  sym.clear();
  for (int32_t i = n ? 0 : -1; i >= 0; i = s[size_t(i)].next) sym.push_back(s[size_t(i)].id);
}

void Tokenizer::Impl::bpe(std::string_view piece, std::vector<int32_t>& out) const {
  if (piece.size() == 1) {
    out.push_back(byte_ids[static_cast<unsigned char>(piece[0])]);
    return;
  }
  bool cached = piece.size() <= kMaxCachedPiece;  // as HF's cache (MAX_LENGTH): long pieces are not kept
  std::string key(cached ? piece : std::string_view());
  if (cached) {
    std::lock_guard<std::mutex> lock(cache_mu);
    auto it = cache.find(key);
    if (it != cache.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> sym;
  if (ignore_merges) {
    std::string mapped;  // whole-word lookup in byte-level form
    for (unsigned char c : piece) mapped += tokens[size_t(byte_ids[c])];
    if (auto it = vocab.find(mapped); it != vocab.end() && in_model[size_t(it->second)]) sym.push_back(it->second);
  }
  if (sym.empty()) merge_all(piece, sym);
  out.insert(out.end(), sym.begin(), sym.end());
  if (!cached) return;
  std::lock_guard<std::mutex> lock(cache_mu);
  if (cache.size() > 500000) cache.clear();
  cache.emplace(std::move(key), std::move(sym));
}

void Tokenizer::Impl::pretokenize_and_bpe(std::string_view text, std::vector<int32_t>& out) const {
  // ByteLevel's add_prefix_space: a space before each piece that lacks one. With a Split before it,
  // the pieces are the Split's; with its own regex (use_regex) or none, the text between added tokens.
  std::string owned;
  if (add_prefix_space && !split_regex && text[0] != ' ') text = owned = " " + std::string(text);
  std::string spaced;
  auto piece = [&](std::string_view p) {
    if (add_prefix_space && split_regex && p[0] != ' ') {
      spaced.assign(1, ' ').append(p);
      bpe(spaced, out);
    } else {
      bpe(p, out);
    }
  };
  thread_local MatchState ms;
  auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t n = text.size(), pos = 0, last = 0;
  while (pos <= n) {
    int rc = regex.jit ? pcre2_jit_match(regex.code, subject, n, pos, PCRE2_NO_UTF_CHECK, ms.md, ms.ctx)
                       : pcre2_match(regex.code, subject, n, pos, PCRE2_NO_UTF_CHECK, ms.md, ms.ctx);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
      rc = pcre2_match(regex.code, subject, n, pos, PCRE2_NO_UTF_CHECK, ms.md, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) throw std::runtime_error(source.string() + ": pre-tokenizer regex failed (" + std::to_string(rc) + ")");
    PCRE2_SIZE* ov = pcre2_get_ovector_pointer(ms.md);
    size_t s = ov[0], e = ov[1];
    if (s > last) piece(text.substr(last, s - last));  // gap: its own piece
    if (e > s) piece(text.substr(s, e - s));
    last = e;
    if (e == s) {  // empty match: step over one character
      if (e >= n) break;
      size_t len = utf8_valid_length(text, e);
      pos = e + (len ? len : 1);
    } else {
      pos = e;
    }
    if (pos >= n) break;
  }
  if (last < n) piece(text.substr(last));
}

namespace {

// HF's AddedVocabulary::find_matches on `s`: the added tokens of `set`, leftmost-longest and not
// overlapping; a single_word token counts only with no word character (Rust regex \w) next to it
// in `s`; lstrip/rstrip take the whitespace (\s) before/after it into the token. Calls
// text(piece) for the non-empty pieces between tokens and token(id) for each token, in order.
template <class Text, class Token>
void split_added(const AddedSet& set, std::string_view s, Text&& text, Token&& token) {
  size_t n = s.size(), start_offset = 0;
  for (size_t i = 0; i < n;) {
    const AddedToken* m = set.longest_at(s, i);
    if (!m) {
      ++i;
      continue;
    }
    size_t start = i, stop = i + m->content.size();
    i = stop;  // the automaton moves past a match even when single_word then discards it
    if (m->single_word) {
      bool space_before = start == 0 || !is_word_char(code_point_before(s, start, nullptr));
      bool space_after = stop == n || !is_word_char(code_point_at(s, stop, nullptr));
      if (!space_before || !space_after) continue;
    }
    if (m->lstrip) {
      size_t b = start, len = 0;
      while (b > 0 && is_white_space(code_point_before(s, b, &len))) b -= len;
      start = std::max(b, start_offset);  // whitespace an earlier token took stays with it
    }
    if (m->rstrip) {
      size_t len = 0;
      while (stop < n && is_white_space(code_point_at(s, stop, &len))) stop += len;
    }
    if (start_offset < start) text(s.substr(start_offset, start - start_offset));
    token(m->id);
    start_offset = stop;
  }
  if (start_offset < n) text(s.substr(start_offset));
}

}  // namespace

// A piece of raw text between non-normalized added tokens: normalise it, split out the
// normalized added tokens, pre-tokenize and BPE the rest.
void Tokenizer::Impl::encode_normalized_piece(std::string_view raw, std::vector<int32_t>& out) const {
  std::string normalized = nfc ? warmup::nfc(raw) : std::string(raw);
  if (norm_added.tokens.empty()) {
    if (!normalized.empty()) pretokenize_and_bpe(normalized, out);
    return;
  }
  split_added(norm_added, normalized, [&](std::string_view piece) { pretokenize_and_bpe(piece, out); },
              [&](int32_t id) { out.push_back(id); });
}

std::vector<int32_t> Tokenizer::encode(std::string_view input, bool add_special_tokens) const {
  const Impl& t = *impl_;
  std::string owned;
  std::string_view text = input;
  if (!utf8_is_valid(input)) text = owned = utf8_sanitize(input);
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  if (add_special_tokens) out.insert(out.end(), t.prefix.begin(), t.prefix.end());
  // As HF's AddedVocabulary::extract_and_normalize: non-normalized added tokens on the raw text,
  // then normalized ones on each normalised piece between them.
  split_added(t.raw_added, text, [&](std::string_view piece) { t.encode_normalized_piece(piece, out); },
              [&](int32_t id) { out.push_back(id); });
  if (add_special_tokens) out.insert(out.end(), t.suffix.begin(), t.suffix.end());
  return out;
}

// ---- decoding and lookups ----------------------------------------------------------------

std::string Tokenizer::decode_bytes(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  std::string out;
  for (int32_t id : ids) {
    if (id < 0 || size_t(id) >= impl_->bytes.size())
      throw std::out_of_range("token id " + std::to_string(id) + " outside the vocabulary (size " +
                              std::to_string(impl_->bytes.size()) + ")");
    if (skip_special_tokens && impl_->skipped[size_t(id)]) continue;
    out += impl_->bytes[size_t(id)];
  }
  return out;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  return utf8_sanitize(decode_bytes(ids, skip_special_tokens));
}

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  auto it = impl_->vocab.find(std::string(token));
  if (it == impl_->vocab.end()) return std::nullopt;
  return it->second;
}

std::string Tokenizer::id_to_token(int32_t id) const {
  if (id < 0 || size_t(id) >= impl_->tokens.size()) return "";
  return impl_->tokens[size_t(id)];
}

int32_t Tokenizer::vocab_size() const { return int32_t(impl_->tokens.size()); }
bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && size_t(id) < impl_->special.size() && impl_->special[size_t(id)];
}
std::optional<int32_t> Tokenizer::bos_id() const { return impl_->bos; }
std::optional<int32_t> Tokenizer::eos_id() const { return impl_->eos; }
std::optional<int32_t> Tokenizer::pad_id() const { return impl_->pad; }
const fs::path& Tokenizer::source() const { return impl_->source; }

std::string Tokenizer::byte_level_json(const std::vector<std::string>& specials) {
  auto b2u = bytes_to_unicode();
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) {
    std::string ch;
    utf8_append(ch, b2u[size_t(b)]);
    vocab[ch] = b;
  }
  json added = json::array();
  for (size_t i = 0; i < specials.size(); ++i)
    added.push_back({{"id", 256 + int(i)}, {"content", specials[i]}, {"single_word", false}, {"lstrip", false},
                     {"rstrip", false}, {"normalized", false}, {"special", true}});
  json bl = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}};
  json j = {{"version", "1.0"},
            {"truncation", nullptr},
            {"padding", nullptr},
            {"added_tokens", added},
            {"normalizer", nullptr},
            {"pre_tokenizer", {{"type", "Sequence"},
                               {"pretokenizers", json::array({{{"type", "Split"},
                                                               {"pattern", {{"Regex", R"([\s\S]{1,64})"}}},
                                                               {"behavior", "Isolated"},
                                                               {"invert", false}},
                                                              bl})}}},
            {"post_processor", bl},
            {"decoder", bl},
            {"model", {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr},
                       {"continuing_subword_prefix", ""}, {"end_of_word_suffix", ""}, {"fuse_unk", false},
                       {"byte_fallback", false}, {"ignore_merges", false}, {"vocab", vocab},
                       {"merges", json::array()}}}};
  return j.dump(2);
}

// ---- streaming and chat ------------------------------------------------------------------

std::string Utf8Stream::push(std::string_view bytes) {
  pending_.append(bytes);
  size_t keep = utf8_incomplete_tail(pending_);
  std::string out = utf8_sanitize(std::string_view(pending_).substr(0, pending_.size() - keep));
  pending_.erase(0, pending_.size() - keep);
  return out;
}

std::string Utf8Stream::finish() {
  std::string out = utf8_sanitize(pending_);
  pending_.clear();
  return out;
}

std::string render_chatml(const std::vector<ChatMessage>& messages, bool add_generation_prompt) {
  std::string s;
  for (const auto& m : messages) s += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
  if (add_generation_prompt) s += "<|im_start|>assistant\n";
  return s;
}

}  // namespace warmup
