// The self-contained report page (report_html.h).
#include "report/report_html.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "util/errors.h"

namespace warmup {
namespace report_assets {
extern const char kReportHtml[];
extern const char kReportCss[];
extern const char kReportJs[];
}  // namespace report_assets

namespace {

bool read_file(const std::string& path, std::string& out) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return false;
  std::ostringstream ss;
  ss << f.rdbuf();
  out = ss.str();
  return bool(f) || f.eof();
}

}  // namespace

ChartsLibrary find_charts_library() {
  ChartsLibrary lib;
  if (const char* env = std::getenv("WARMUP_CHARTJS"); env && *env) {
    if (read_file(env, lib.source) && !lib.source.empty()) lib.path = env;
    else lib.source.clear(), lib.note = std::string("WARMUP_CHARTJS=") + env + " cannot be read: curves are shown as tables";
    return lib;
  }
  for (const char* p : {"/usr/share/javascript/chart.js/chart.umd.js", "/usr/share/javascript/chart.js/chart.min.js",
                        "/usr/share/javascript/chart.js/chart.js"})
    if (read_file(p, lib.source) && !lib.source.empty()) {
      lib.path = p;
      return lib;
    }
  lib.source.clear();
  lib.note = "Chart.js not found (apt install libjs-chart.js, or set WARMUP_CHARTJS to chart.umd.js): curves are shown as tables";
  return lib;
}

std::string report_html(nlohmann::json data, const ChartsLibrary& charts) {
  data["charts_library"] = !charts.source.empty();
  data["charts_note"] = charts.note;
  std::string json = data.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  std::string safe;
  safe.reserve(json.size() + json.size() / 64);
  for (char c : json) {
    if (c == '<') safe += "\\u003c";
    else safe += c;
  }
  // Inlined verbatim, a script must not close its own element early.
  if (charts.source.find("</script") != std::string::npos)
    throw UsageError(charts.path + " contains </script>: not a Chart.js build that can be inlined");
  const std::string tmpl = report_assets::kReportHtml, css = report_assets::kReportCss, js = report_assets::kReportJs;
  const std::pair<const char*, const std::string*> parts[] = {
      {"/*@@WARMUP_STYLE@@*/", &css}, {"/*@@WARMUP_CHARTJS@@*/", &charts.source},
      {"@@WARMUP_DATA@@", &safe}, {"/*@@WARMUP_APP@@*/", &js}};
  // The template's four markers, each replaced once, in this order.
  std::string out;
  out.reserve(tmpl.size() + css.size() + js.size() + charts.source.size() + safe.size());
  size_t at = 0;
  for (const auto& [marker, text] : parts) {
    size_t m = tmpl.find(marker, at);
    if (m == std::string::npos) throw std::logic_error(std::string("report template lacks ") + marker);
    out.append(tmpl, at, m - at);
    out += *text;
    at = m + std::string_view(marker).size();
  }
  out.append(tmpl, at, std::string::npos);
  return out;
}

}  // namespace warmup
