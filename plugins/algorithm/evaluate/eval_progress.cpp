// See eval_progress.h.
#include "eval_progress.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include <nlohmann/json.hpp>

#include "warmup/types.h"

namespace evalp {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

json to_json(const warmup::Completion& c, const warmup::Score& s) {
  json score{{"total", s.total}, {"parts", s.parts}, {"error", s.error}, {"errored", s.errored}};
  score["correct"] = s.correct ? json(*s.correct) : json(nullptr);
  score["extracted_answer"] = s.extracted_answer ? json(*s.extracted_answer) : json(nullptr);
  return json{{"c", {{"text", c.text}, {"finish_reason", c.finish_reason}, {"tokens", c.tokens}}}, {"s", score}};
}

warmup::Completion completion_of(const json& j) {
  return warmup::Completion{j.at("text").get<std::string>(), j.at("finish_reason").get<std::string>(),
                            j.at("tokens").get<int64_t>()};
}

warmup::Score score_of(const json& j) {
  warmup::Score s;
  s.total = j.at("total").get<double>();
  s.parts = j.at("parts").get<std::map<std::string, double>>();
  s.error = j.at("error").get<std::string>();
  s.errored = j.at("errored").get<bool>();
  if (!j.at("correct").is_null()) s.correct = j.at("correct").get<bool>();
  if (!j.at("extracted_answer").is_null()) s.extracted_answer = j.at("extracted_answer").get<std::string>();
  return s;
}

}  // namespace

Progress::Progress(fs::path file, const std::vector<std::string>& ids, const json& header, size_t chunk,
                   bool resuming)
    : file_(std::move(file)) {
  std::error_code ec;
  const std::string head = json{{"header", header}}.dump() + "\n";
  std::ifstream in;
  if (resuming) in.open(file_, std::ios::binary);
  std::string line;
  if (!in || !std::getline(in, line) || in.eof()) {  // a fresh start, or no intact header yet
    in.close();
    fs::remove(file_, ec);
    write(head);
    return;
  }
  json got = json::parse(line, nullptr, false);
  if (got.is_discarded() || !got.is_object() || !got.contains("header") || got["header"] != header)
    throw warmup::DataError(file_.string() + ": made from " + (got.is_object() ? got.value("header", json()).dump() : line) +
                            ", but the stage now has " + header.dump() +
                            " (the task's data or the stage's settings changed since it started); not resuming from it");
  std::vector<std::streamoff> ends{in.tellg()};  // byte offset after the header and after each kept line
  int64_t n = 1;
  while (done_.size() < ids.size() && std::getline(in, line)) {
    ++n;
    if (in.eof()) break;  // no newline: cut by a kill
    json j = json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) break;
    Done d;
    try {
      if (j.at("id").get<std::string>() != ids[done_.size()])
        throw warmup::DataError(file_.string() + ":" + std::to_string(n) + ": example '" + j.at("id").get<std::string>() +
                                "', but the split has '" + ids[done_.size()] +
                                "' there (the task's data changed since the stage started)");
      for (const auto& x : j.at("items")) {
        d.completions.push_back(completion_of(x.at("c")));
        d.scores.push_back(score_of(x.at("s")));
      }
    } catch (const nlohmann::json::exception&) {
      break;
    }
    done_.push_back(std::move(d));
    ends.push_back(in.tellg());
  }
  in.close();
  if (done_.size() < ids.size() && chunk > 0) done_.resize(done_.size() - done_.size() % chunk);
  uintmax_t good = uintmax_t(ends[done_.size()]);
  if (fs::file_size(file_, ec) != good) fs::resize_file(file_, good, ec);
}

void Progress::append(size_t first, const std::vector<std::string>& ids,
                      const std::vector<std::vector<warmup::Completion>>& outs, const std::vector<warmup::Score>& scores) {
  std::string text;
  size_t k = 0;
  for (size_t i = 0; i < outs.size(); ++i) {
    json items = json::array();
    for (const auto& c : outs[i]) items.push_back(to_json(c, scores.at(k++)));
    text += json{{"id", ids.at(first + i)}, {"items", items}}.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  }
  write(text);
}

void Progress::write(const std::string& text) {
  int fd = ::open(file_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error(file_.string() + ": cannot open for appending (" + std::strerror(errno) + ")");
  size_t off = 0;
  while (off < text.size()) {
    ssize_t w = ::write(fd, text.data() + off, text.size() - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      int err = errno;
      ::close(fd);
      throw std::runtime_error(file_.string() + ": write failed (" + std::strerror(err) + ")");
    }
    off += size_t(w);
  }
  if (::fsync(fd) != 0) {
    int err = errno;
    ::close(fd);
    throw std::runtime_error(file_.string() + ": fsync failed (" + std::strerror(err) + ")");
  }
  ::close(fd);
}

}  // namespace evalp
