// `warmup run`: see runtime/runner.h.
#include "cli/options_util.h"
#include "dist/launcher.h"
#include "runtime/runner.h"
#include "util/errors.h"

#include <filesystem>
#include <set>

namespace warmup::cli {

int cmd_run(const Args& args) {
  po::options_description opts("options");
  std::vector<std::string> sets, dirs;
  opts.add_options()
      ("experiment", po::value<std::string>(), "experiment TOML file")
      ("set,s", po::value<std::vector<std::string>>(&sets)->composing(),
       "override a config value: --set stages.eval.evaluate.limit=10 (TOML literal; repeatable)")
      ("dry-run,n", "print the fully resolved config, check everything that can be checked without running (data files, model directory, device, store), and exit (2 naming each problem)")
      ("store", po::value<std::string>()->default_value(default_store()), kStoreHelp)
      ("plugin-dir,P", po::value<std::vector<std::string>>(&dirs)->composing(),
       "search this directory for plugins first (repeatable)")
      ("resume", po::value<int64_t>(), "resume failed/interrupted run RUN from its stored config (with --set: only "
                                         "moved paths, device, logging and worker counts, eval sizes of stages not started)")
      ("name", po::value<std::string>()->default_value(""), "run name (default: experiment name)")
      ("grace", po::value<double>()->default_value(30.0),
       "seconds a stage may take to stop after SIGINT/SIGTERM before the run is closed anyway")
      ("nproc-per-node", po::value<int>(), "start N ranks of this run on this machine (data-parallel over c10d; "
                                           "as torchrun --nproc-per-node N); timeouts: $WARMUP_DIST_TIMEOUT seconds")
      ("nnodes", po::value<int>()->default_value(1), "with --nproc-per-node: machines in the run")
      ("node-rank", po::value<int>()->default_value(0), "with --nproc-per-node: this machine's index (0 hosts the store)")
      ("master-addr", po::value<std::string>()->default_value("127.0.0.1"),
       "with --nproc-per-node: address of node 0 (it hosts the ranks' store)")
      ("master-port", po::value<int>()->default_value(0), "with --nproc-per-node: port of node 0's store (0: any free "
                                                          "port, one machine only)");
  po::positional_options_description pos;
  pos.add("experiment", 1);
  po::variables_map vm;
  if (!parse(args, "usage: warmup run EXPERIMENT.toml [--set path=value]... [--dry-run] [--store DB] "
                   "[--plugin-dir DIR]...\n       warmup run --resume RUN [--set path=value]... [--dry-run] [--store DB]",
             opts, vm, &pos))
    return 0;
  if (vm.count("nproc-per-node")) {
    if (std::getenv("RANK") || std::getenv("WORLD_SIZE"))
      throw UsageError("warmup run --nproc-per-node: RANK/WORLD_SIZE are already set (this is a rank of a launched "
                       "run); do not nest launchers");
    if (vm.count("dry-run")) throw UsageError("warmup run --nproc-per-node: --dry-run runs nothing; drop one of them");
    LaunchOptions lo;
    lo.nproc_per_node = vm["nproc-per-node"].as<int>();
    lo.nnodes = vm["nnodes"].as<int>();
    lo.node_rank = vm["node-rank"].as<int>();
    lo.master_addr = vm["master-addr"].as<std::string>();
    lo.master_port = vm["master-port"].as<int>();
    lo.command = {std::filesystem::read_symlink("/proc/self/exe").string(), "run"};
    // Every rank gets this command line without the launcher's options, however the user spelled
    // them (Boost takes an unambiguous prefix: --nproc).
    static const std::set<std::string> kLauncher = {"nproc-per-node", "nnodes", "node-rank", "master-addr",
                                                    "master-port"};
    auto launcher_option = [&](const std::string& a) {
      if (a.rfind("--", 0) != 0 || a.size() == 2) return false;
      std::string name = a.substr(2, a.find('=') == std::string::npos ? std::string::npos : a.find('=') - 2);
      if (kLauncher.count(name)) return true;
      bool any = false;
      for (const auto& o : opts.options()) {
        const std::string& full = o->long_name();
        if (full.rfind(name, 0) != 0) continue;
        if (!kLauncher.count(full)) return false;  // (Boost would have refused an ambiguous prefix)
        any = true;
      }
      return any;
    };
    for (size_t i = 0; i < args.size(); ++i) {
      const std::string& a = args[i];
      if (launcher_option(a)) {
        if (a.find('=') == std::string::npos) ++i;  // its value is the next word
        continue;
      }
      lo.command.push_back(a);
    }
    return launch_ranks(lo);
  }
  RunOptions ro;
  if (vm.count("resume")) ro.resume = vm["resume"].as<int64_t>();
  else if (!vm.count("experiment")) throw UsageError("warmup run: missing EXPERIMENT.toml (see --help)");
  else ro.experiment = vm["experiment"].as<std::string>();
  ro.overrides = sets;
  ro.dry_run = vm.count("dry-run") > 0;
  ro.store = vm["store"].as<std::string>();
  for (const auto& d : dirs) ro.plugin_dirs.emplace_back(d);
  ro.name = vm["name"].as<std::string>();
  ro.grace_seconds = vm["grace"].as<double>();
  ro.distributed = true;
  RunResult r = run_experiment(ro);
  if (r.status == "dry_run") {
    std::cout << r.resolved_toml;
    if (!r.resolved_toml.empty() && r.resolved_toml.back() != '\n') std::cout << '\n';
    if (!r.problems.empty()) std::cerr << "error: " << problems_text(r.problems) << "\n";
  } else if (r.status == "finished" && !r.follower) {
    print_run_summary(r, ro.store, std::cout);
  }
  return r.exit_code;
}

}  // namespace warmup::cli
