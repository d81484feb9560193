// `warmup plugins`: every discovered plugin and every library or entry that was rejected. Libraries
// are probed in child processes first (plugins/probe.h); --json also lists each library with how
// its manifest was read ("probed" or "cached").
#include <nlohmann/json.hpp>

#include "cli/options_util.h"
#include "config/experiment.h"
#include "plugins/registry.h"
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
  PluginRegistry reg;
  reg.scan(plugin_search_path(cli_dirs, exp_dirs));

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
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  TextTable t({"kind", "name", "version", "interface", "library", "description"});
  for (const auto& e : reg.entries())
    t.add({e.kind, e.name, e.plugin_version, e.interface_id + "@" + std::to_string(e.interface_version),
           e.library.string(), e.description});
  if (t.empty()) std::cout << "no plugins found\n";
  else t.print(std::cout);
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
