// Format gate and code extraction (he_extract.h) on hand-written completions.
#include <doctest/doctest.h>

#include "he_extract.h"

using namespace he;

TEST_CASE("format gate as the paper's regex") {
  std::string a, why;
  CHECK(format_ok("reason</think>\n<answer>```python\nx=1\n```</answer>\n", a, why));
  CHECK(a == "```python\nx=1\n```");
  CHECK_FALSE(format_ok("</think><answer>x</answer>", a, why));            // nothing before </think>
  CHECK_FALSE(format_ok("r</think><answer></answer>", a, why));            // empty answer
  CHECK_FALSE(format_ok("r</think> text <answer>x</answer>", a, why));     // text between
  CHECK_FALSE(format_ok("r</think><answer>x</answer> after", a, why));     // text after
  CHECK_FALSE(format_ok("r</think><answer>x</answer></answer>", a, why));  // two </answer>
  CHECK(why.find("exactly one") != std::string::npos);
  CHECK(format_ok("r</think>\xC2\xA0<answer>x</answer>\xE3\x80\x80", a, why));  // Unicode spaces (\s)
}

TEST_CASE("code extraction: first (RL reward) and last (evaluation)") {
  std::string two = "intro\n```python\ndef f(): return 1\n```\nand\n```python\ndef f(): return 2\n```\n";
  CHECK(extract_code(two, true) == "\ndef f(): return 1\n");
  CHECK(extract_code(two, false) == "\ndef f(): return 2\n");
  std::string generic = "```\ndef g(): pass\n``` then ```py\ndef h(): pass\n```";
  CHECK(extract_code(generic, true) == "\ndef g(): pass\n");
  CHECK(extract_code(generic, false) == "def h(): pass\n");  // language tag line dropped
  std::string mixed = "```\nA\n```\n```python\nB\n```\n```\nC\n```";
  CHECK(extract_code(mixed, true) == "\nB\n");  // a python block wins over earlier generic ones
  CHECK(extract_code(mixed, false) == "\nB\n");
  CHECK(extract_code("def f():\n    return 3\n", true) == "def f():\n    return 3\n");  // raw text
  CHECK(extract_code("```python\nunclosed", true) == "```python\nunclosed");
  CHECK(answer_span("x<answer>one</answer> y <answer>two</answer>") == "two");
  CHECK(answer_span("no tags") == "no tags");
}
