// The live report server (serve.h).
#include "report/serve.h"

#include <httplib.h>

#include <algorithm>

#include "store/store.h"
#include "util/errors.h"
#include "util/log.h"

namespace warmup {

using nlohmann::json;

namespace {

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  for (size_t b = 0; b <= s.size();) {
    size_t e = s.find(',', b);
    if (e == std::string::npos) e = s.size();
    if (e > b) out.push_back(s.substr(b, e - b));
    b = e + 1;
  }
  return out;
}

}  // namespace

struct ReportServer::Impl {
  ReportServerOptions opt;
  httplib::Server http;

  // The report object for the request's runs (or the default ones).
  json data(const httplib::Request& req, bool samples) {
    std::vector<std::string> specs = req.has_param("runs") ? split_commas(req.get_param_value("runs")) : opt.runs;
    if (specs.empty()) throw UsageError("?runs= names no run");
    Store store(opt.store, Store::ReadOnly{});
    std::vector<int64_t> ids;
    for (const auto& s : specs)
      if (int64_t id = store.resolve_run(s); std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
    if (ids.size() > 64) throw UsageError("at most 64 runs in one report");
    ReportOptions ro = opt.report;
    ro.samples = samples;
    json d = report_data(store, ids, ro);
    std::string list;
    for (int64_t id : ids) list += (list.empty() ? "" : ",") + std::to_string(id);
    d["live"] = true;
    d["refresh_s"] = opt.refresh_s;
    d["api"] = "/api/report.json?runs=" + list + "&samples=0";
    return d;
  }

  // Runs `body`, turning its errors into HTTP statuses with the message as text.
  template <class F>
  void answer(httplib::Response& res, F body) {
    try {
      body();
    } catch (const UsageError& e) {  // a run id that is not a number, or not in the store
      res.status = std::string(e.what()).find("not found") != std::string::npos ? 404 : 400;
      res.set_content(std::string(e.what()) + "\n", "text/plain; charset=utf-8");
    } catch (const std::exception& e) {
      res.status = 503;
      res.set_content(std::string(e.what()) + "\n", "text/plain; charset=utf-8");
    }
  }

  explicit Impl(ReportServerOptions o) : opt(std::move(o)) {
    http.new_task_queue = [] { return new httplib::ThreadPool(4); };
    http.Get("/", [this](const httplib::Request& req, httplib::Response& res) {
      answer(res, [&] {
        res.set_content(report_html(data(req, true), opt.charts), "text/html; charset=utf-8");
      });
    });
    http.Get("/api/report.json", [this](const httplib::Request& req, httplib::Response& res) {
      answer(res, [&] {
        bool samples = !req.has_param("samples") || req.get_param_value("samples") != "0";
        res.set_content(data(req, samples).dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
      });
    });
    http.Get("/health", [](const httplib::Request&, httplib::Response& res) { res.set_content("ok\n", "text/plain"); });
  }
};

ReportServer::ReportServer(ReportServerOptions opt) : impl_(std::make_unique<Impl>(std::move(opt))) {}
ReportServer::~ReportServer() = default;

int ReportServer::bind(const std::string& host, int port) {
  if (port == 0) return impl_->http.bind_to_any_port(host);
  return impl_->http.bind_to_port(host, port) ? port : -1;
}
void ReportServer::listen() { impl_->http.listen_after_bind(); }
void ReportServer::stop() { impl_->http.stop(); }

}  // namespace warmup
