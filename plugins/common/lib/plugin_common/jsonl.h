// Reading JSONL data files with errors that name the place: "file.jsonl: cannot read (why)",
// "file.jsonl:7: not valid JSON: ...". Fields of each record are then read with the SDK's
// warmup::json_field (jsonl.h in the SDK), which names file:line and the field.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

namespace warmup::common {

// One record: the parsed line, its place ("path:line") and its 1-based line number.
using JsonlVisitor = std::function<bool(nlohmann::json& record, const std::string& where, int64_t line)>;

// Calls `visit` for each line of `path` that is not blank (spaces, tabs, CR), in order, until it
// returns false. Throws warmup::DataError: the file cannot be opened ("<path>: cannot read" plus
// " (" + context + ")" when context is set), or a line is not JSON ("<path>:<line>: not valid
// JSON: ..."). Records need not be objects: json_field reports a non-object at its place.
void read_jsonl(const std::string& path, const JsonlVisitor& visit, const std::string& context = "");

}  // namespace warmup::common
