// `warmup report`'s page: the template, stylesheet and script compiled into the executable
// (framework/src/report/assets, embedded by cmake/EmbedText.cmake), Chart.js read from the
// system at run time (Debian's libjs-chart.js), and the report object (report_data.h), all in
// one HTML file that needs no network and no server.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace warmup {

// The charting library the page inlines: Chart.js's UMD build.
struct ChartsLibrary {
  std::string source;  // the script; "" when none was found
  std::string path;    // where it was read from
  std::string note;    // when none: one line saying what was looked for and how to get it
};
// $WARMUP_CHARTJS if set (an error note when it cannot be read), else the first readable of
// Debian's /usr/share/javascript/chart.js/{chart.umd.js, chart.min.js, chart.js}.
ChartsLibrary find_charts_library();

// The page for `data` (report_data()); sets data's charts_library/charts_note from `charts`.
// Every '<' of the JSON is written as \u003c, so no string in the data can end its <script>.
std::string report_html(nlohmann::json data, const ChartsLibrary& charts);

}  // namespace warmup
