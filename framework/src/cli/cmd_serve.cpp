// `warmup serve`: the OpenAI-compatible server. SIGINT/SIGTERM stop accepting connections, answer
// the requests in flight, then exit 0.
#include <signal.h>

#include <thread>

#include "cli/engine_setup.h"
#include "server/openai_server.h"
#include "util/errors.h"
#include "util/log.h"

namespace warmup::cli {

int cmd_serve(const Args& args) {
  po::options_description opts("options");
  add_engine_options(opts);
  opts.add_options()
      ("host", po::value<std::string>()->default_value("127.0.0.1"), "address to listen on")
      ("port", po::value<int>()->default_value(8000), "port (0: any free port, printed at start)")
      ("served-model-name", po::value<std::string>()->default_value(""), "model name for clients (default: the directory name)")
      ("http-threads", po::value<int>()->default_value(128), "concurrent HTTP connections (one thread each)")
      ("max-request-bytes", po::value<size_t>()->default_value(32u << 20), "larger request bodies get a 413")
      ("keep-alive-timeout", po::value<int>()->default_value(2), "seconds an idle keep-alive connection is kept")
      ("read-timeout", po::value<int>()->default_value(30), "seconds a client may stay silent mid-request");
  po::variables_map vm;
  if (!parse(args, "usage: warmup serve --model DIR [--host 127.0.0.1] [--port 8000]", opts, vm)) return 0;
  // Signals go to the waiting main thread only (blocked before any thread starts).
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  auto engine = make_engine(vm);
  std::string name = vm["served-model-name"].as<std::string>();
  if (name.empty()) name = std::filesystem::path(vm["model"].as<std::string>()).lexically_normal().filename().string();
  if (name.empty()) name = std::filesystem::absolute(vm["model"].as<std::string>()).parent_path().filename().string();
  ServerOptions so;
  so.model_name = name;
  so.threads = vm["http-threads"].as<int>();
  so.max_request_bytes = vm["max-request-bytes"].as<size_t>();
  so.keep_alive_s = vm["keep-alive-timeout"].as<int>();
  so.read_timeout_s = vm["read-timeout"].as<int>();
  if (so.threads < 1 || so.threads > 4096) throw UsageError("--http-threads must be in [1, 4096]");
  if (so.keep_alive_s < 1 || so.read_timeout_s < 1) throw UsageError("--keep-alive-timeout and --read-timeout must be >= 1 s");
  OpenAIServer server(*engine, so);
  std::string host = vm["host"].as<std::string>();
  int port = server.bind(host, vm["port"].as<int>());
  if (port < 0) throw UsageError("cannot listen on " + host + ":" + std::to_string(vm["port"].as<int>()));
  std::thread engine_thread([&] { engine->run(); });
  std::thread http_thread([&] { server.listen(); });
  log_info("serving '" + name + "' on http://" + host + ":" + std::to_string(port) + " (OpenAI API: /v1/completions, /v1/chat/completions, /v1/models, /health)");
  int sig = 0;
  sigwait(&set, &sig);
  log_info(std::string("received ") + (sig == SIGINT ? "SIGINT" : "SIGTERM") + ": draining requests in flight");
  server.stop();       // no new connections; returns once in-flight handlers are done
  http_thread.join();  // (handlers wait on the engine, which keeps running)
  engine->stop(/*drain=*/true);
  engine_thread.join();
  log_info("server stopped");
  return 0;
}

}  // namespace warmup::cli
