// `warmup tokenize`: text on stdin -> JSON ids on stdout, or (--decode) JSON ids -> text.
// With --lines, each input line is one JSON value (a string to encode, or an array of ids to
// decode) and each output line answers it: the batch mode the parity tests use.
#include <iostream>
#include <iterator>

#include <nlohmann/json.hpp>

#include "cli/options_util.h"
#include "text/tokenizer.h"
#include "util/errors.h"

namespace warmup::cli {

int cmd_tokenize(const Args& args) {
  po::options_description opts("options");
  opts.add_options()
      ("tokenizer,t", po::value<std::string>()->required(), "directory with tokenizer.json (or the file)")
      ("decode,d", "decode JSON ids from stdin instead of encoding text")
      ("lines", "one JSON string (encode) or id array (decode) per input line")
      ("add-special-tokens", "apply the post-processor (e.g. Llama-3's BOS)")
      ("skip-special-tokens", "decode: drop special tokens");
  po::variables_map vm;
  if (!parse(args, "usage: warmup tokenize --tokenizer DIR [--decode] [--lines] < input", opts, vm)) return 0;
  Tokenizer tok = Tokenizer::load(vm["tokenizer"].as<std::string>());
  bool decode = vm.count("decode"), add = vm.count("add-special-tokens"), skip = vm.count("skip-special-tokens");
  auto answer = [&](const nlohmann::json& in) -> nlohmann::json {
    if (decode) return tok.decode(in.get<std::vector<int32_t>>(), skip);
    return tok.encode(in.get<std::string>(), add);
  };
  if (vm.count("lines")) {
    std::string line;
    for (size_t n = 1; std::getline(std::cin, line); ++n) {
      nlohmann::json in;
      try {
        in = nlohmann::json::parse(line);
      } catch (const nlohmann::json::parse_error& e) {
        throw UsageError("stdin:" + std::to_string(n) + ": not a JSON value: " + e.what());
      }
      std::cout << answer(in).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    }
    return 0;
  }
  std::string input((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  if (decode) {
    nlohmann::json ids;
    try {
      ids = nlohmann::json::parse(input);
    } catch (const nlohmann::json::parse_error& e) {
      throw UsageError(std::string("stdin: not a JSON array of ids: ") + e.what());
    }
    std::cout << tok.decode(ids.get<std::vector<int32_t>>(), skip);
  } else {
    std::cout << nlohmann::json(tok.encode(input, add)).dump() << "\n";
  }
  return 0;
}

}  // namespace warmup::cli
