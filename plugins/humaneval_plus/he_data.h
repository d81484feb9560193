// he_data: reads the HumanEval / HumanEval+ JSONL files (plain or gzip, through zlib) and turns
// their rows into examples. Does not run anything: rewards execute code (he_check.h).
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace he {

// One JSON object per non-empty line. DataError "file:line: ..." on unreadable or malformed data.
std::vector<nlohmann::json> read_jsonl(const std::string& path, std::vector<std::string>* lines = nullptr);

// The JSON text of top-level array field `key` in `line`, exactly as written (nlohmann would turn
// integers beyond 64 bits into doubles); DataError if absent.
std::string raw_array(const std::string& line, const std::string& key, const std::string& where);

// A field of row `j` (from `where`, "file:line") with the expected JSON type, else DataError.
const nlohmann::json& field(const nlohmann::json& j, const char* key, nlohmann::json::value_t type,
                            const std::string& where);

// A seeded permutation of 0..n-1 (Fisher-Yates on mt19937_64, identical on every platform).
std::vector<size_t> permutation(size_t n, uint64_t seed);

}  // namespace he
