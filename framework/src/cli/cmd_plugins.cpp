// `warmup plugins`: every discovered plugin and every library or entry that was rejected. Libraries
// are probed in child processes first (plugins/probe.h); --json also lists each library with how
// its manifest was read ("probed" or "cached"). Also lists the eval presets found beside the
// libraries (`warmup eval --tasks`, `warmup score --task`); a malformed preset file is reported,
// not fatal.
#include <nlohmann/json.hpp>

#include "cli/options_util.h"
#include "config/experiment.h"
#include "plugins/eval_presets.h"
#include "plugins/registry.h"
#include "util/errors.h"
#include "util/table.h"

namespace warmup::cli {

int cmd_plugins(const Args& args) {
  po::options_description opts("options");
  std::vector<std::string> dirs;
  opts.add_options()
      ("plugin-dir,P", po::value<std::vector<std::string>>(&dirs)->composing(), "search this directory first")
      ("experiment,e", po::value<std::string>(), "also search the experiment's [plugins] paths")
      ("json", "machine-readable output");
  po::variables_map vm;
  if (!parse(args, "usage: warmup plugins [--plugin-dir DIR]... [--experiment FILE] [--json]", opts, vm))
    return 0;
  std::vector<std::filesystem::path> cli_dirs(dirs.begin(), dirs.end()), exp_dirs;
  if (vm.count("experiment")) exp_dirs = load_experiment(vm["experiment"].as<std::string>(), {}).plugin_paths;
  const auto search = plugin_search_path(cli_dirs, exp_dirs);
  PluginRegistry reg;
  reg.scan(search);
  EvalPresets presets;
  std::string preset_error;
  try {
    presets.scan(search);
  } catch (const ConfigError& e) {
    preset_error = e.what();
  }

  if (vm.count("json")) {
    nlohmann::json j = {{"searched", nlohmann::json::array()}, {"plugins", nlohmann::json::array()},
                        {"failures", nlohmann::json::array()}, {"libraries", nlohmann::json::array()}};
    for (const auto& d : reg.searched()) j["searched"].push_back(d.string());
    for (const auto& e : reg.entries())
      j["plugins"].push_back({{"kind", e.kind}, {"name", e.name}, {"version", e.plugin_version},
                              {"interface", e.interface_id + "@" + std::to_string(e.interface_version)},
                              {"library", e.library.string()}, {"description", e.description}});
    for (const auto& f : reg.failures())
      j["failures"].push_back({{"library", f.library.string()}, {"entry", f.entry}, {"reason", f.reason}});
    for (const auto& l : reg.libraries())
      j["libraries"].push_back({{"library", l.library.string()}, {"status", l.rejected ? "rejected" : "accepted"},
                                {"reason", l.reason}, {"probe", l.probe}, {"probe_seconds", l.probe_seconds}});
    j["eval_presets"] = nlohmann::json::array();
    for (const auto& p : presets.all())
      j["eval_presets"].push_back({{"name", p.name}, {"aliases", p.aliases}, {"task", p.task}, {"reward", p.reward},
                                   {"split", p.split}, {"argument", p.argument_name.empty() ? "" : p.argument_name},
                                   {"file", p.file.string()}, {"description", p.description}});
    if (!preset_error.empty()) j["failures"].push_back({{"library", ""}, {"entry", "eval presets"}, {"reason", preset_error}});
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  TextTable t({"kind", "name", "version", "interface", "library", "description"});
  for (const auto& e : reg.entries())
    t.add({e.kind, e.name, e.plugin_version, e.interface_id + "@" + std::to_string(e.interface_version),
           e.library.string(), e.description});
  if (t.empty()) std::cout << "no plugins found\n";
  else t.print(std::cout);
  if (!presets.all().empty()) {
    TextTable pt({"eval preset", "task", "reward", "file", "description"});
    for (const auto& p : presets.all()) {
      std::string name = p.name + (p.argument_option.empty() ? "" : "[:" + p.argument_name + "]");
      for (const auto& a : p.aliases) name += ", " + a;
      pt.add({name, p.task, p.reward, p.file.filename().string(), p.description});
    }
    std::cout << "\n";
    pt.print(std::cout);
  }
  if (!preset_error.empty()) std::cout << "\neval presets not read: " << preset_error << "\n";
  std::cout << "\nsearched:";
  for (const auto& d : reg.searched()) std::cout << " " << d.string();
  std::cout << "\n";
  if (!reg.failures().empty()) {
    std::cout << "\nload failures (" << reg.failures().size() << "):\n";
    for (const auto& f : reg.failures())
      std::cout << "  " << f.library.string() << (f.entry.empty() ? ": rejected: " : " [" + f.entry + "]: ")
                << f.reason << "\n";
  }
  return 0;
}

}  // namespace warmup::cli
