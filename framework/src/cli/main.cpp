// `warmup` entry point: dispatches to a subcommand and turns exceptions into one error line and
// an exit code (2 for bad input: config, usage, unknown plugin; 1 for everything else).
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>

#include <boost/program_options/errors.hpp>

#include "cli/commands.h"
#include "plugins/probe.h"
#include "util/errors.h"
#include "util/log.h"

namespace {

const char* kUsage =
    "usage: warmup <command> [options]\n"
    "\n"
    "commands:\n"
    "  run EXPERIMENT.toml   run an experiment (--set path=value, --dry-run, --store, --plugin-dir)\n"
    "  plugins               list discovered plugins and every load failure\n"
    "  runs                  list runs; runs show|compare|table|export|delete RUN...\n"
    "  report                one offline HTML report of runs (curves, tables, completions); --serve: live\n"
    "  version               version and build fingerprint\n"
    "  tokenize              text <-> token ids with a tokenizer.json\n"
    "  model                 init | info | convert | logits of a Hugging Face model directory\n"
    "  generate              completions for a JSONL file of prompts (continuous batching)\n"
    "  serve                 OpenAI-compatible HTTP server (/v1/completions, /v1/chat/completions)\n"
    "  eval                  the paper's evaluation of a model on named tasks (n samples, mean ± std)\n"
    "  score                 re-score a JSONL of completions through a task's reward (no model)\n"
    "  bench                 measurements as JSON (tokenizer, train-step); peers in bench/\n"
    "\n"
    "`warmup <command> --help` describes each command; `warmup X` also runs a `warmup-X` tool\n"
    "installed next to warmup (a domain's own tool).\n";

// The `warmup-X` tools next to this executable, as help lines ("" when there are none).
std::string external_tools() {
  std::error_code ec;
  std::filesystem::path dir = std::filesystem::read_symlink("/proc/self/exe", ec).parent_path();
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    std::string n = e.path().filename().string();
    if (n.rfind("warmup-", 0) == 0 && n.size() > 7 && ::access(e.path().c_str(), X_OK) == 0) names.push_back(n.substr(7));
  }
  std::sort(names.begin(), names.end());
  std::string out;
  for (const auto& n : names) out += "  " + n + std::string(n.size() < 22 ? 22 - n.size() : 1, ' ') + "tool warmup-" + n + "\n";
  return out.empty() ? "" : "\ntools found next to warmup:\n" + out;
}

}  // namespace

namespace {

// The exit code and the one "error: " line for the exception being handled: 2 for bad input
// (config, usage, data, plugin, command line), 1 for everything else.
int report_error(const std::string& command) {
  // A rank other than 0 of a multi-process run: its error line says which rank it is.
  if (const char* r = std::getenv("RANK"); r && *r && std::string(r) != "0" && std::getenv("WORLD_SIZE"))
    std::cerr << "[rank " << r << "] ";
  try {
    throw;
  } catch (const warmup::ConfigError& e) {
    std::cerr << "error: " << e.what() << "\n";
  } catch (const warmup::UsageError& e) {
    std::cerr << "error: " << e.what() << "\n";
  } catch (const warmup::DataError& e) {
    std::cerr << "error: " << e.what() << "\n";
  } catch (const warmup::PluginError& e) {
    std::cerr << "error: " << e.what() << "\n";
  } catch (const boost::program_options::error& e) {
    std::cerr << "error: warmup " << command << ": " << e.what() << "\n";
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace warmup;
  std::vector<std::string> args(argv + 1, argv + argc);
  // Hidden: a child that loads one plugin library and reports its manifest (plugins/probe.h).
  if (!args.empty() && args[0] == "__probe-plugin")
    plugin_probe_main(std::vector<std::string>(args.begin() + 1, args.end()));
  // Plugin libraries are first loaded in a child: this executable, whatever it is called now.
  enable_plugin_probe("/proc/self/exe");
  if (args.empty() || args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
    std::cout << kUsage << external_tools();
    return args.empty() ? 2 : 0;
  }
  if (args[0] == "--version") args[0] = "version";
  static const std::map<std::string, int (*)(const cli::Args&)> kCommands = {
      {"run", cli::cmd_run}, {"plugins", cli::cmd_plugins}, {"runs", cli::cmd_runs},
      {"version", cli::cmd_version}, {"tokenize", cli::cmd_tokenize},
      {"model", cli::cmd_model}, {"bench", cli::cmd_bench},
      {"generate", cli::cmd_generate}, {"serve", cli::cmd_serve},
      {"eval", cli::cmd_eval}, {"score", cli::cmd_score}, {"report", cli::cmd_report}};
  auto it = kCommands.find(args[0]);
  if (it == kCommands.end()) {
    // External subcommands (as git and cargo): `warmup X ...` runs `warmup-X ...` from the
    // executable's directory, so a plugin can bring its own command-line tool.
    std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe");
    std::filesystem::path tool = self.parent_path() / ("warmup-" + args[0]);
    if (args[0].find('/') == std::string::npos && ::access(tool.c_str(), X_OK) == 0) {
      std::vector<char*> argv2{const_cast<char*>(tool.c_str())};
      for (size_t i = 1; i < args.size(); ++i) argv2.push_back(const_cast<char*>(args[i].c_str()));
      argv2.push_back(nullptr);
      ::execv(tool.c_str(), argv2.data());
      std::cerr << "error: cannot run " << tool.string() << "\n";
      return 1;
    }
    std::cerr << "error: unknown command '" << args[0] << "'\n" << kUsage;
    return 2;
  }
  bool verbose = false, quiet = false;
  for (const auto& a : args) verbose |= a == "-v" || a == "--verbose", quiet |= a == "-q" || a == "--quiet";
  init_logging(verbose, quiet);
  try {
    return it->second(cli::Args(args.begin() + 1, args.end()));
  } catch (...) {
    progress_clear();  // the error goes on a line of its own
    return report_error(args[0]);
  }
}
