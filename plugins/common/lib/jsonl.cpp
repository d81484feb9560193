// See plugin_common/jsonl.h.
#include "plugin_common/jsonl.h"

#include <fstream>

#include "warmup/types.h"

namespace warmup::common {

void read_jsonl(const std::string& path, const JsonlVisitor& visit, const std::string& context) {
  std::ifstream in(path);
  if (!in) throw DataError(path + ": cannot read" + (context.empty() ? "" : " (" + context + ")"));
  std::string line;
  for (int64_t ln = 1; std::getline(in, line); ++ln) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    std::string where = path + ":" + std::to_string(ln);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error& e) {
      throw DataError(where + ": not valid JSON: " + e.what());
    }
    if (!visit(j, where, ln)) return;
  }
}

}  // namespace warmup::common
