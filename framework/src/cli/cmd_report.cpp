// `warmup report`: one self-contained HTML file of runs (curves, the paper-style table, a
// completion browser), or with --serve the same pages live over HTTP while runs train.
#include <signal.h>

#include <algorithm>
#include <fstream>
#include <thread>

#include "cli/options_util.h"
#include "report/report_data.h"
#include "report/report_html.h"
#include "report/serve.h"
#include "store/store.h"
#include "util/errors.h"
#include "util/log.h"

namespace warmup::cli {

constexpr size_t kMaxRuns = 64;

int cmd_report(const Args& args) {
  po::options_description opts("options");
  std::vector<std::string> targets;
  opts.add_options()
      ("runs", po::value<std::vector<std::string>>(&targets), "run ids or 'latest' (default: latest)")
      ("store", po::value<std::string>()->default_value(default_store()), kStoreHelp)
      ("out,o", po::value<std::string>()->default_value("report.html"), "the HTML file to write")
      ("max-samples", po::value<int64_t>()->default_value(2000),
       "at most N completions in the report (whole steps spread over each stage)")
      ("max-chars", po::value<int64_t>()->default_value(4000), "completions and prompts cut at N characters")
      ("serve", "serve the report live over HTTP instead of writing a file")
      ("host", po::value<std::string>()->default_value("127.0.0.1"), "--serve: address to listen on")
      ("port", po::value<int>()->default_value(8050), "--serve: port (0: any free port, printed at start)")
      ("refresh", po::value<int>()->default_value(5), "--serve: seconds between the page's updates");
  po::positional_options_description pos;
  pos.add("runs", -1);
  po::variables_map vm;
  if (!parse(args,
             "usage: warmup report [RUN...] [--store DB] [--out report.html]   (one offline HTML file)\n"
             "       warmup report --serve [RUN...] [--port 8050]               (live, while runs train)\n"
             "RUN is a run id or 'latest' (the default). Several runs are overlaid (arms, seeds).",
             opts, vm, &pos))
    return 0;
  if (targets.empty()) targets = {"latest"};
  ReportOptions ro;
  ro.max_samples = vm["max-samples"].as<int64_t>();
  ro.max_chars = vm["max-chars"].as<int64_t>();
  if (ro.max_samples < 0) throw UsageError("--max-samples must be >= 0");
  if (ro.max_chars < 1) throw UsageError("--max-chars must be >= 1");
  const std::filesystem::path path = vm["store"].as<std::string>();
  if (!std::filesystem::exists(path)) throw UsageError(path.string() + ": no such store (run an experiment first)");
  ChartsLibrary charts = find_charts_library();
  if (!charts.note.empty()) log_warn(charts.note);

  if (vm.count("serve")) {
    int refresh = vm["refresh"].as<int>();
    if (refresh < 1) throw UsageError("--refresh must be >= 1 second");
    if (vm["port"].as<int>() < 0 || vm["port"].as<int>() > 65535) throw UsageError("--port must be in [0, 65535]");
    {  // the runs must exist now (later requests resolve "latest" again)
      Store store(path, Store::ReadOnly{});
      for (const auto& t : targets) store.resolve_run(t);
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    ReportServer server({path, targets, refresh, ro, charts});
    std::string host = vm["host"].as<std::string>();
    int port = server.bind(host, vm["port"].as<int>());
    if (port < 0) throw UsageError("cannot listen on " + host + ":" + std::to_string(vm["port"].as<int>()));
    std::thread http([&] { server.listen(); });
    log_info("serving the report of " + path.string() + " on http://" + host + ":" + std::to_string(port) +
             "/ (Ctrl-C stops)");
    int sig = 0;
    sigwait(&set, &sig);
    server.stop();
    http.join();
    return 0;
  }

  Store store(path, Store::ReadOnly{});
  std::vector<int64_t> runs;
  for (const auto& t : targets)
    if (int64_t id = store.resolve_run(t); std::find(runs.begin(), runs.end(), id) == runs.end()) runs.push_back(id);
  if (runs.size() > kMaxRuns) throw UsageError("at most " + std::to_string(kMaxRuns) + " runs in one report");
  const std::filesystem::path out = vm["out"].as<std::string>();
  {  // never over the store (or its WAL files) or a folder
    std::error_code ec;
    for (const char* suffix : {"", "-wal", "-shm", "-journal"})
      if (std::filesystem::equivalent(out, path.string() + suffix, ec))
        throw UsageError("--out " + out.string() + " is the store" + (*suffix ? std::string(" file ") + suffix : std::string()) +
                         ": pick another file");
    if (std::filesystem::is_directory(out, ec)) throw UsageError("--out " + out.string() + " is a folder: give a file name");
  }
  nlohmann::json data = report_data(store, runs, ro);
  const size_t series = data["series"].size();
  const auto samples = data["samples"]["included"].get<int64_t>(), total = data["samples"]["total"].get<int64_t>();
  std::string html = report_html(std::move(data), charts);
  if (out.has_parent_path()) std::filesystem::create_directories(out.parent_path());
  const std::filesystem::path tmp = out.string() + ".tmp";
  std::error_code ec;
  {
    std::ofstream f(tmp, std::ios::binary);
    f << html;
    if (!f.flush()) {
      std::filesystem::remove(tmp, ec);
      throw UsageError(out.string() + ": cannot write");
    }
  }
  std::filesystem::rename(tmp, out, ec);
  if (ec) {
    std::filesystem::remove(tmp, ec);
    throw UsageError(out.string() + ": cannot write: " + ec.message());
  }
  char size[32];
  std::snprintf(size, sizeof size, "%.1f MB", double(html.size()) / 1e6);
  log_info("wrote " + out.string() + " (" + size + "): " + std::to_string(runs.size()) + " run(s), " +
           std::to_string(series) + " metric series, " + std::to_string(samples) + " of " + std::to_string(total) +
           " completions");
  return 0;
}

}  // namespace warmup::cli
