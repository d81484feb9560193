// OpenAI-compatible HTTP server over the engine (cpp-httplib): /v1/completions,
// /v1/chat/completions, /v1/models, vLLM's /tokenize and /detokenize, /metrics (Prometheus), /health. Every request field
// is honoured as the OpenAI API (or vLLM, for its extensions) defines it, or refused with a 400
// naming it (the table is in openai_server.cpp and the README). Requests from all connections join
// the engine's continuous batch. Bad requests get OpenAI-style JSON errors with status 400; a
// failure of ours in one request a 500 (the others go on); a client that disconnects cancels its
// request.
#pragma once

#include <memory>
#include <string>

#include "engine/engine.h"

namespace warmup {

struct ServerOptions {
  std::string model_name;  // what /v1/models reports and requests may name
  int threads = 32;        // HTTP worker threads (concurrent connections)
  size_t max_request_bytes = 32u << 20;  // larger request bodies get a 413
  int keep_alive_s = 2;    // an idle keep-alive connection is closed after this many seconds
  int read_timeout_s = 30; // a client that sends (or reads) nothing this long is dropped
};

class OpenAIServer {
 public:
  OpenAIServer(Engine& engine, ServerOptions options);
  ~OpenAIServer();
  // Binds (port 0: any free port) and returns the port; -1 on failure.
  int bind(const std::string& host, int port);
  void listen();  // serves until stop(); returns after in-flight requests are answered
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace warmup
