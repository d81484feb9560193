// he_data: JSONL loading through zlib (gzread reads plain files unchanged) and the split order.
#include "he_data.h"

#include <zlib.h>

#include <random>

#include "warmup/types.h"

namespace he {

std::vector<nlohmann::json> read_jsonl(const std::string& path, std::vector<std::string>* lines) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw warmup::DataError(path + ": cannot open");
  std::string text;
  char buf[1 << 16];
  int n;
  while ((n = gzread(f, buf, sizeof buf)) > 0) text.append(buf, size_t(n));
  int err = 0;
  std::string msg = n < 0 ? gzerror(f, &err) : "";
  gzclose(f);
  if (n < 0) throw warmup::DataError(path + ": cannot read (corrupt gzip?): " + msg);
  std::vector<nlohmann::json> rows;
  size_t line = 0;
  for (size_t b = 0; b < text.size();) {
    size_t e = text.find('\n', b);
    if (e == std::string::npos) e = text.size();
    ++line;
    std::string_view s(text.data() + b, e - b);
    b = e + 1;
    if (s.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    try {
      rows.push_back(nlohmann::json::parse(s));
    } catch (const nlohmann::json::parse_error& ex) {
      throw warmup::DataError(path + ":" + std::to_string(line) + ": not valid JSON: " + ex.what());
    }
    if (!rows.back().is_object())
      throw warmup::DataError(path + ":" + std::to_string(line) + ": expected a JSON object");
    rows.back()["__line"] = line;
    if (lines) lines->emplace_back(s);
  }
  return rows;
}

std::string raw_array(const std::string& line, const std::string& key, const std::string& where) {
  std::string pat = "\"" + key + "\"";
  for (size_t at = line.find(pat); at != std::string::npos; at = line.find(pat, at + 1)) {
    if (at > 0 && line[at - 1] == '\\') continue;  // inside a string
    size_t b = line.find_first_not_of(" \t", at + pat.size());
    if (b == std::string::npos || line[b] != ':') continue;
    b = line.find_first_not_of(" \t", b + 1);
    if (b == std::string::npos || line[b] != '[') continue;
    int depth = 0;
    bool in_string = false;
    for (size_t i = b; i < line.size(); ++i) {
      char c = line[i];
      if (in_string) {
        if (c == '\\') ++i;
        else if (c == '"') in_string = false;
      } else if (c == '"') {
        in_string = true;
      } else if (c == '[' || c == '{') {
        ++depth;
      } else if ((c == ']' || c == '}') && --depth == 0) {
        return line.substr(b, i + 1 - b);
      }
    }
  }
  throw warmup::DataError(where + ": field '" + key + "' missing or not an array");
}

const nlohmann::json& field(const nlohmann::json& j, const char* key, nlohmann::json::value_t type,
                            const std::string& where) {
  auto it = j.find(key);
  bool number = type == nlohmann::json::value_t::number_float && it != j.end() && it->is_number();
  if (it == j.end() || (it->type() != type && !number))
    throw warmup::DataError(where + ": field '" + key + "' missing or of the wrong type");
  return *it;
}

std::vector<size_t> permutation(size_t n, uint64_t seed) {
  std::vector<size_t> p(n);
  for (size_t i = 0; i < n; ++i) p[i] = i;
  std::mt19937_64 rng(seed);
  for (size_t i = n; i > 1; --i) std::swap(p[i - 1], p[rng() % i]);
  return p;
}

}  // namespace he
