// Plain-text tables for the CLI: left-aligned columns, numbers right-aligned, no colours.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace warmup {

class TextTable {
 public:
  explicit TextTable(std::vector<std::string> header) : header_(std::move(header)) {}
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  bool empty() const { return rows_.empty(); }
  void print(std::ostream& os) const;

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

// Compact number formatting: integers as integers, else 6 significant digits; NaN/inf spelled.
std::string format_number(double v);

}  // namespace warmup
