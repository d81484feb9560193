// `warmup tokenize`: text on stdin -> JSON ids on stdout, or (--decode) JSON ids -> text.
// With --lines, each input line is one JSON value (a string to encode, or an array of ids to
// decode) and each output line answers it: the batch mode the parity tests use.
// With --sft FILE, each JSONL record of an SFT dataset (TRL's formats, warmup/sft_data.h) becomes
// {"input_ids": [...], "completion_mask": [...]}: exactly the tokens and loss mask the sft
// algorithm trains on (TRL's column names; completion_mask 1 where the loss applies);
// --assistant-only-loss tokenises as sft's assistant_only_loss = true does.
#include <fstream>
#include <memory>
#include <iostream>
#include <optional>
#include <iterator>

#include <nlohmann/json.hpp>

#include "cli/options_util.h"
#include "engine/engine.h"
#include "text/chat_template.h"
#include "text/tokenizer.h"
#include "warmup/sft_data.h"
#include "util/errors.h"

namespace warmup::cli {
namespace {

int tokenize_sft(const Tokenizer& tok, const std::string& dir, const std::string& file, bool append_eos,
                 bool assistant_only_loss) {
  std::shared_ptr<const ChatTemplate> chat, training;
  bool chat_loaded = false;
  auto chat_template = [&]() -> const std::shared_ptr<const ChatTemplate>& {
    if (!chat_loaded) {
      if (auto t = ChatTemplate::load(dir)) chat = std::make_shared<const ChatTemplate>(std::move(*t));
      chat_loaded = true;
    }
    if (!chat) throw DataError(dir + ": the tokenizer has no chat template: conversational data needs one");
    return chat;
  };
  SftTokenizer tk{[&](const std::string& s) { return tok.encode(s); },
                  [&](const nlohmann::json& m, bool gen) { return chat_template()->render(m, gen); },
                  eos_ids_for(dir, tok), append_eos, {}, false};
  if (assistant_only_loss) {
    tk.assistant_only_loss = true;
    tk.training_chat = [&](const nlohmann::json& m, bool gen) {
      if (!training) {
        training = training_chat_template(chat_template());
        if (std::string w = end_of_turn_warning(*training, tok); !w.empty()) std::cerr << "warning: " << w << "\n";
      }
      return chat_template_tokens(*training, tok, m, gen, true);
    };
  }
  std::ifstream in(file);
  if (!in) throw UsageError(file + ": cannot read");
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    std::string where = file + ":" + std::to_string(n);
    nlohmann::json row = nlohmann::json::parse(line, nullptr, false);
    if (row.is_discarded()) throw DataError(where + ": not valid JSON");
    SftTokens t = tokenize_sft_row(row, tk, where);
    std::vector<int32_t> ids = t.prompt, mask(t.prompt.size(), 0);
    ids.insert(ids.end(), t.completion.begin(), t.completion.end());
    for (size_t i = 0; i < t.completion.size(); ++i) mask.push_back(t.completion_mask.empty() ? 1 : t.completion_mask[i]);
    std::cout << nlohmann::json{{"input_ids", ids}, {"completion_mask", mask}}.dump() << "\n";
  }
  return 0;
}

}  // namespace

int cmd_tokenize(const Args& args) {
  po::options_description opts("options");
  opts.add_options()
      ("tokenizer,t", po::value<std::string>()->required(), "directory with tokenizer.json (or the file)")
      ("decode,d", "decode JSON ids from stdin instead of encoding text")
      ("lines", "one JSON string (encode) or id array (decode) per input line")
      ("add-special-tokens", "apply the post-processor (e.g. Llama-3's BOS)")
      ("skip-special-tokens", "decode: drop special tokens")
      ("sft", po::value<std::string>(), "tokenise an SFT JSONL file as the sft algorithm does (TRL's formats)")
      ("no-append-eos", "--sft: as sft's append_eos = false")
      ("assistant-only-loss", "--sft: as sft's assistant_only_loss = true (TRL's training chat template)");
  po::variables_map vm;
  if (!parse(args, "usage: warmup tokenize --tokenizer DIR [--decode] [--lines] < input\n"
                   "       warmup tokenize --tokenizer MODEL_DIR --sft data.jsonl [--no-append-eos] [--assistant-only-loss]",
             opts, vm))
    return 0;
  Tokenizer tok = Tokenizer::load(vm["tokenizer"].as<std::string>());
  if (vm.count("sft")) return tokenize_sft(tok, vm["tokenizer"].as<std::string>(), vm["sft"].as<std::string>(),
                                           !vm.count("no-append-eos"), vm.count("assistant-only-loss") > 0);
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
