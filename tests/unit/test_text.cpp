// UTF-8 helpers, streaming decode, ChatML rendering and added-token flags.
#include <doctest/doctest.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "helpers.h"
#include "text/tokenizer.h"
#include "text/utf8.h"

using namespace warmup;

TEST_CASE("utf8_sanitize replaces maximal invalid subparts like Python") {
  // Python: b"a\xffb\xe4\xbd\xf0\x9f\x98c\xed\xa0\x80".decode("utf-8", "replace")
  CHECK(utf8_sanitize("a\xff" "b\xe4\xbd" "\xf0\x9f\x98" "c\xed\xa0\x80") ==
        "a\xEF\xBF\xBD" "b\xEF\xBF\xBD\xEF\xBF\xBD" "c\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  CHECK(utf8_sanitize("ok é 😀") == "ok é 😀");
  CHECK(utf8_is_valid("ok é 😀"));
  CHECK_FALSE(utf8_is_valid("\xc0\xaf"));
  CHECK(nfc("Cafe\xcc\x81") == "Caf\xc3\xa9");
}

TEST_CASE("Utf8Stream emits only complete characters") {
  std::string text = "é😀x";
  Utf8Stream s;
  std::string out;
  std::vector<std::string> pieces;
  for (char c : text) pieces.push_back(s.push(std::string(1, c)));
  out = pieces[0] + pieces[1] + pieces[2] + pieces[3] + pieces[4] + pieces[5] + pieces[6] + s.finish();
  CHECK(out == text);
  CHECK(pieces[0].empty());
  CHECK(pieces[1] == "é");
  CHECK(pieces[4].empty());
  CHECK(pieces[5] == "😀");
  Utf8Stream cut;
  CHECK(cut.push("a\xf0\x9f") == "a");
  CHECK(cut.finish() == "\xEF\xBF\xBD");
}

TEST_CASE("ChatML rendering") {
  CHECK(render_chatml({{"system", "S"}, {"user", "U"}}) ==
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n");
  CHECK(render_chatml({{"user", "U"}}, false) == "<|im_start|>user\nU<|im_end|>\n");
}

TEST_CASE("added tokens: lstrip/rstrip take whitespace, single_word needs word boundaries, normalized matches NFC") {
  // The byte-level tokenizer (no merges: one id per byte) with flagged added tokens after the 256
  // byte tokens; HF parity on real tokenizers is in tests/integration/test_tokenizer.py.
  nlohmann::json j = nlohmann::json::parse(Tokenizer::byte_level_json({"<s>"}));
  auto add = [&](const char* content, bool l, bool r, bool sw, bool norm) {
    j["added_tokens"].push_back({{"id", 256 + int(j["added_tokens"].size())}, {"content", content}, {"lstrip", l},
                                 {"rstrip", r}, {"single_word", sw}, {"normalized", norm}, {"special", false}});
  };
  add("<L>", true, false, false, false);        // 257
  add("<R>", false, true, false, false);        // 258
  add("cat", false, false, true, false);        // 259
  add("Cafe\xcc\x81", false, false, false, true);  // 260, matched as "Café"
  j["normalizer"] = {{"type", "NFC"}};
  test::TempDir d;
  std::ofstream(d.path / "tokenizer.json") << j.dump();
  Tokenizer t = Tokenizer::load(d.path);
  using V = std::vector<int32_t>;
  CHECK(t.encode("a \t <L> b") == V{'a', 257, ' ', 'b'});
  CHECK(t.encode("a <R> \n b") == V{'a', ' ', 258, 'b'});
  CHECK(t.encode("<R> <L>") == V{258, 257});  // the space went to <R>
  CHECK(t.encode("cat, cats") == V{259, ',', ' ', 'c', 'a', 't', 's'});
  CHECK(t.encode("_cat") == V{'_', 'c', 'a', 't'});  // '_' is a word character
  CHECK(t.encode("Caf\xc3\xa9!") == V{260, '!'});
  CHECK(t.encode("Cafe\xcc\x81") == V{260});
  CHECK(t.decode({260}) == "Caf\xEF\xBF\xBD");  // HF: the NFC form through the byte-level decoder
}
