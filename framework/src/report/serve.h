// `warmup report --serve`: the report's pages served live over HTTP (cpp-httplib), read from the
// store on every request through a read-only connection, so a run that is training keeps writing
// (WAL: readers never block the writer) and the open page polls for new points.
//
//   GET /                      the report page (runs: ?runs=1,2 or the ones given at start;
//                              "latest" is resolved per request), polling /api/report.json
//   GET /api/report.json       the report object (report_data.h); ?runs=1,2, ?samples=0 leaves
//                              the completions out (what the page polls)
//   GET /health                "ok"
// A run not in the store is 404, a malformed id 400 (with the message); a store that cannot be
// read is 503.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "report/report_data.h"
#include "report/report_html.h"

namespace warmup {

struct ReportServerOptions {
  std::filesystem::path store;
  std::vector<std::string> runs = {"latest"};  // run ids or "latest", when a request names none
  int refresh_s = 5;                           // how often the page polls
  ReportOptions report;
  ChartsLibrary charts;
};

class ReportServer {
 public:
  explicit ReportServer(ReportServerOptions opt);
  ~ReportServer();
  int bind(const std::string& host, int port);  // port 0: any free port; returns it (-1: failed)
  void listen();                                // blocks until stop()
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace warmup
