// GradientReducer (warmup/distributed.h): the gradient all-reduce overlapped with backward, checked
// in one process against a Distributed that plays rank 0 of 2 whose peer holds the same gradients
// (every all-reduce doubles its tensor, and an asynchronous one only when it is waited for, the
// tensor holding NaN until then) and records when each bucket starts: during the watched backward
// pass or after it, in which order, and that the sums land in .grad.
#include "torch_doctest.h"

#include <cstring>
#include <limits>
#include <optional>
#include <set>
#include <stdexcept>

#include "warmup/distributed.h"

using warmup::Distributed;
using warmup::ReduceOp;

namespace {

// Completes at wait(): the reducer must not read the bucket before.
struct Deferred final : warmup::Work {
  torch::Tensor t, sum;
  void wait() override { t.copy_(sum); }
};

struct Twin final : Distributed {
  bool in_backward = false;
  std::vector<std::pair<int64_t, bool>> launches;  // (numel, during backward) per all_reduce_async
  void backward(const torch::Tensor& loss) {  // launches from in here count as during backward
    in_backward = true;
    loss.backward();
    in_backward = false;
  }
  int my_rank = 0;
  int broadcasts = 0;
  std::optional<std::string> from_rank0;  // what rank 0 broadcasts, when this plays another rank
  int rank() const override { return my_rank; }
  int world_size() const override { return 2; }
  int local_rank() const override { return 0; }
  int local_world_size() const override { return 2; }
  void all_reduce(torch::Tensor& t, ReduceOp) override { t.mul_(2); }
  std::vector<torch::Tensor> all_gather(const torch::Tensor& t) override { return {t.clone(), t.clone()}; }
  void broadcast(torch::Tensor&, int) override {}
  void barrier() override {}
  std::vector<std::string> all_gather_bytes(std::string_view p) override { return {std::string(p), std::string(p)}; }
  std::string broadcast_bytes(std::string_view p, int) override {
    ++broadcasts;
    return from_rank0 ? *from_rank0 : std::string(p);
  }
  std::unique_ptr<warmup::Work> all_reduce_async(torch::Tensor& t, ReduceOp op) override {
    launches.emplace_back(t.numel(), in_backward);
    (void)op;
    auto w = std::make_unique<Deferred>();
    w->t = t, w->sum = t * 2;
    t.fill_(std::numeric_limits<float>::quiet_NaN());
    return w;
  }
};

// Three linear layers (weights 4x3, 5x4, 2x5 and their biases, in that order) and a loss.
struct Net {
  torch::nn::Linear a{3, 4}, b{4, 5}, c{5, 2};
  std::vector<torch::Tensor> params() {
    return {a->weight, a->bias, b->weight, b->bias, c->weight, c->bias};
  }
  torch::Tensor loss(const torch::Tensor& x) { return c(torch::tanh(b(torch::tanh(a(x))))).pow(2).sum(); }
};

std::vector<torch::Tensor> grads(const std::vector<torch::Tensor>& ps) {
  std::vector<torch::Tensor> g;
  for (auto& p : ps) g.push_back(p.grad().defined() ? p.grad().clone() : torch::Tensor());
  return g;
}

}  // namespace

TEST_CASE("buckets start during the watched backward, last layer first, and .grad holds the sums") {
  torch::manual_seed(0);
  Net net;
  auto ps = net.params();
  auto x1 = torch::randn({6, 3}), x2 = torch::randn({6, 3});
  // One-process reference: both micro-batches accumulated.
  net.loss(x1).backward();
  net.loss(x2).backward();
  auto want = grads(ps);
  for (auto& p : ps) p.mutable_grad() = torch::Tensor();

  Twin twin;
  // One parameter per bucket (1-byte caps): six buckets.
  warmup::GradientReducer r(twin, ps, true, 1, 1);
  CHECK(r.num_buckets() == 6);
  twin.backward(net.loss(x1));  // not watched: only accumulates (DDP's no_sync)
  CHECK(twin.launches.empty());
  r.prepare_for_backward();
  twin.backward(net.loss(x2));
  REQUIRE(twin.launches.size() == 6);
  const int64_t reverse[] = {2, 10, 5, 20, 4, 12};  // c.bias, c.weight, b.bias, b.weight, a.bias, a.weight
  for (size_t i = 0; i < 6; ++i) {
    CHECK(twin.launches[i].first == reverse[i]);
    CHECK(twin.launches[i].second);  // all of them before backward returned
  }
  r.reduce();
  for (size_t i = 0; i < ps.size(); ++i) CHECK(torch::allclose(ps[i].grad(), 2 * want[i], 1e-6, 1e-6));

  // The next step: the same reducer, one micro-batch.
  for (auto& p : ps) p.mutable_grad() = torch::Tensor();
  twin.launches.clear();
  r.prepare_for_backward();
  twin.backward(net.loss(x1));
  r.reduce();
  CHECK(twin.launches.size() == 6);
}

TEST_CASE("a parameter without a gradient holds back the buckets after it, which start in reduce() with zeros") {
  torch::manual_seed(1);
  Net net;
  auto unused = torch::randn({7}).requires_grad_(true);
  auto ps = net.params();
  ps.insert(ps.begin() + 2, unused);  // between a's and b's: buckets c.bias .. b.weight go first
  Twin twin;
  warmup::GradientReducer r(twin, ps, true, 1, 1);
  r.prepare_for_backward();
  twin.backward(net.loss(torch::randn({4, 3})));
  REQUIRE(twin.launches.size() == 4);  // c.bias, c.weight, b.bias, b.weight; then the unused one blocks
  r.reduce();
  REQUIRE(twin.launches.size() == 7);
  CHECK(twin.launches[4].first == 7);
  CHECK_FALSE(twin.launches[4].second);
  REQUIRE(unused.grad().defined());
  CHECK(unused.grad().abs().sum().item<double>() == 0);
}

TEST_CASE("no micro-batch on this rank: reduce() sends zeros for every bucket") {
  Net net;
  auto ps = net.params();
  Twin twin;
  warmup::GradientReducer r(twin, ps);  // default caps: one bucket
  CHECK(r.num_buckets() == 1);
  r.reduce();
  CHECK(twin.launches.size() == 1);
  for (auto& p : ps) CHECK(p.grad().abs().sum().item<double>() == 0);
}

TEST_CASE("two watched backward passes are an error, not a silently stale sum") {
  Net net;
  auto ps = net.params();
  Twin twin;
  warmup::GradientReducer r(twin, ps, true, 1, 1);
  r.prepare_for_backward();
  net.loss(torch::randn({2, 3})).backward();
  net.loss(torch::randn({2, 3})).backward();
  CHECK_THROWS_AS(r.reduce(), std::logic_error);
}

TEST_CASE("overlap off, or the reducer gone: nothing starts during backward") {
  Net net;
  auto ps = net.params();
  Twin twin;
  {
    warmup::GradientReducer r(twin, ps, false, 1, 1);
    r.prepare_for_backward();
    twin.backward(net.loss(torch::randn({2, 3})));
    CHECK(twin.launches.empty());
    r.reduce();
    CHECK(twin.launches.size() == 6);
  }
  {
    warmup::GradientReducer r(twin, ps, true, 1, 1);
    r.prepare_for_backward();
  }  // its hooks are removed with it
  twin.launches.clear();
  net.loss(torch::randn({2, 3})).backward();
  CHECK(twin.launches.empty());
}

namespace {
// A reentrant checkpointed layer, as the model's CheckpointedLayer (framework/src/model/transformer.cpp):
// the forward without a graph, the backward recomputing it and running a nested backward that
// accumulates the layer's parameter gradients.
struct Recomputed : torch::autograd::Function<Recomputed> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor x, torch::nn::Linear* layer) {
    ctx->saved_data["layer"] = reinterpret_cast<int64_t>(layer);
    ctx->save_for_backward({x});
    torch::NoGradGuard ng;
    return torch::tanh((*layer)(x));
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad) {
    auto* layer = reinterpret_cast<torch::nn::Linear*>(ctx->saved_data["layer"].toInt());
    torch::Tensor x = ctx->get_saved_variables()[0].detach().requires_grad_(true);
    torch::Tensor out;
    {
      torch::AutoGradMode on(true);
      out = torch::tanh((*layer)(x));
    }
    torch::autograd::backward({out}, {grad[0]});
    return {x.grad(), torch::Tensor()};
  }
};
}  // namespace

TEST_CASE("buckets start inside a checkpointed layer's nested backward, and the sums are one process's") {
  torch::manual_seed(2);
  Net net;
  auto ps = net.params();
  auto x = torch::randn({5, 3});
  auto loss = [&] {
    auto h = Recomputed::apply(torch::tanh(net.a(x)), &net.b);  // b's parameters: in the nested backward
    return net.c(h).pow(2).sum();
  };
  loss().backward();
  auto want = grads(ps);
  for (auto& p : ps) p.mutable_grad() = torch::Tensor();
  Twin twin;
  warmup::GradientReducer r(twin, ps, true, 1, 1);
  r.prepare_for_backward();
  twin.backward(loss());
  REQUIRE(twin.launches.size() == 6);
  for (auto& [n, during] : twin.launches) CHECK(during);
  r.reduce();
  for (size_t i = 0; i < ps.size(); ++i) CHECK(torch::allclose(ps[i].grad(), 2 * want[i], 1e-6, 1e-6));
}

TEST_CASE("the gradients are views of the buckets: backward accumulates and the all-reduce sums in place") {
  torch::manual_seed(3);
  Net net;
  auto ps = net.params();
  auto x = torch::randn({4, 3});
  net.loss(x).backward();
  auto want = grads(ps);
  for (auto& p : ps) p.mutable_grad() = torch::Tensor();
  Twin twin;
  warmup::GradientReducer r(twin, ps);  // one bucket: the parameters' gradients side by side, last first
  std::vector<const void*> where;
  for (auto& p : ps) {
    REQUIRE(p.grad().defined());
    CHECK(p.grad().abs().sum().item<double>() == 0);
    where.push_back(p.grad().data_ptr());
  }
  CHECK(static_cast<const float*>(where[4]) == static_cast<const float*>(where[5]) + 2);  // c.weight after c.bias
  // The first step may rebuild the bucket in the order backward made the gradients ready: the
  // memory from then on.
  r.prepare_for_backward();
  net.loss(x).backward();
  r.reduce();
  r.zero_grad();
  for (size_t i = 0; i < ps.size(); ++i) where[i] = ps[i].grad().data_ptr();
  for (int step = 0; step < 3; ++step) {
    r.prepare_for_backward();
    net.loss(x).backward();
    r.reduce();
    for (size_t i = 0; i < ps.size(); ++i) {
      CHECK(ps[i].grad().data_ptr() == where[i]);  // no new gradient tensor was made
      CHECK(torch::allclose(ps[i].grad(), 2 * want[i], 1e-6, 1e-6));
    }
    r.zero_grad();
    for (size_t i = 0; i < ps.size(); ++i) CHECK(ps[i].grad().data_ptr() == where[i]);
  }
  // The optimizer's zero_grad (set_to_none): backward makes new tensors, copied into the bucket.
  for (auto& p : ps) p.mutable_grad() = torch::Tensor();
  r.prepare_for_backward();
  net.loss(x).backward();
  r.reduce();
  for (size_t i = 0; i < ps.size(); ++i) {
    CHECK(ps[i].grad().data_ptr() == where[i]);
    CHECK(torch::allclose(ps[i].grad(), 2 * want[i], 1e-6, 1e-6));
  }
}

TEST_CASE("after the first step the buckets follow the order backward made the gradients ready") {
  torch::manual_seed(4);
  Net net;
  // Registered so that reverse order (b, a, c) is not backward's (c, b, a): at first, b's buckets
  // wait for c's gradients and a's buckets hold back c's.
  std::vector<torch::Tensor> ps = {net.c->weight, net.c->bias, net.a->weight, net.a->bias, net.b->weight, net.b->bias};
  auto x = torch::randn({4, 3});
  net.loss(x).backward();
  auto want = grads(ps);
  for (auto& p : ps) p.mutable_grad() = torch::Tensor();
  Twin twin;
  warmup::GradientReducer r(twin, ps, true, 1, 1);
  auto step = [&] {
    twin.launches.clear();
    r.prepare_for_backward();
    twin.backward(net.loss(x));
    r.reduce();
    std::vector<int64_t> sizes;
    for (auto& [n, during] : twin.launches) sizes.push_back(n);
    for (size_t i = 0; i < ps.size(); ++i) CHECK(torch::allclose(ps[i].grad(), 2 * want[i], 1e-6, 1e-6));
    r.zero_grad();
    return sizes;
  };
  auto first = step();  // reverse registration order: b.bias, b.weight, a.bias, a.weight, c.bias, c.weight
  CHECK(first == std::vector<int64_t>{5, 20, 4, 12, 2, 10});
  auto second = step();  // c's two, then b's, then a's (within a layer, as the engine ran them)
  REQUIRE(second.size() == 6);
  auto pair = [&](size_t i) { return std::set<int64_t>{second[i], second[i + 1]}; };
  CHECK(pair(0) == std::set<int64_t>{2, 10});
  CHECK(pair(2) == std::set<int64_t>{5, 20});
  CHECK(pair(4) == std::set<int64_t>{4, 12});
  CHECK(step() == second);
  CHECK(twin.broadcasts == 1);  // rank 0's order, once
}

TEST_CASE("every rank builds rank 0's buckets, whatever order it saw itself") {
  torch::manual_seed(5);
  Net net;
  auto ps = net.params();  // a.weight, a.bias, b.weight, b.bias, c.weight, c.bias
  auto x = torch::randn({4, 3});
  net.loss(x).backward();
  auto want = grads(ps);
  for (auto& p : ps) p.mutable_grad() = torch::Tensor();
  Twin twin;
  twin.my_rank = 1;
  // Rank 0 "saw" the registration order (backward's is the reverse): after the rebuild the first
  // bucket, a.weight's, is ready last, so every bucket starts at the end of backward, in that order.
  std::string order;
  for (uint32_t k = 0; k < 6; ++k) order.append(reinterpret_cast<const char*>(&k), sizeof k);
  twin.from_rank0 = order;
  warmup::GradientReducer r(twin, ps, true, 1, 1);
  std::vector<std::vector<int64_t>> launched;
  for (int step = 0; step < 3; ++step) {
    twin.launches.clear();
    r.prepare_for_backward();
    twin.backward(net.loss(x));
    r.reduce();
    launched.emplace_back();
    for (auto& [n, during] : twin.launches) launched.back().push_back(n);
    for (size_t i = 0; i < ps.size(); ++i) CHECK(torch::allclose(ps[i].grad(), 2 * want[i], 1e-6, 1e-6));
    r.zero_grad();
  }
  CHECK(launched[0] == std::vector<int64_t>{2, 10, 5, 20, 4, 12});
  CHECK(launched[1] == std::vector<int64_t>{12, 4, 20, 5, 10, 2});
  CHECK(launched[2] == launched[1]);
  CHECK(twin.broadcasts == 1);
}
