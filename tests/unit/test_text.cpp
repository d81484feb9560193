// UTF-8 helpers, streaming decode and ChatML rendering.
#include <doctest/doctest.h>

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
