// Shared Boost.Program_options plumbing for subcommands.
#pragma once

#include <iostream>
#include <string>

#include <boost/program_options.hpp>
#include <toml++/toml.h>

#include "cli/commands.h"

namespace warmup::cli {

namespace po = boost::program_options;

// Parses `args`; returns false (after printing help) when --help was given.
inline bool parse(const Args& args, const std::string& usage, po::options_description& opts,
                  po::variables_map& vm, const po::positional_options_description* pos = nullptr) {
  opts.add_options()("help,h", "show this help")("verbose,v", "debug logging")("quiet,q", "warnings only");
  auto parser = po::command_line_parser(args).options(opts);
  if (pos) parser.positional(*pos);
  po::store(parser.run(), vm);
  if (vm.count("help")) {
    std::cout << usage << "\n" << opts;
    return false;
  }
  po::notify(vm);
  return true;
}

inline const char* kStoreHelp = "SQLite run store (default results/warmup.sqlite, or $WARMUP_STORE)";

inline std::string default_store() {
  if (const char* s = std::getenv("WARMUP_STORE")) return s;
  return "results/warmup.sqlite";
}

// "$WARMUP_DATA" or "" (the default of --data).
std::string default_data_dir();

// Applies "key=value" (value a TOML literal, else taken as a string) to `t`; nested keys dotted.
// A malformed assignment is a UsageError naming `flag`.
void apply_option(toml::table& t, const std::string& assignment, const std::string& flag);

}  // namespace warmup::cli
