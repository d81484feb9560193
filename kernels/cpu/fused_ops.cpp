// See fused_ops.h. Plain loops over rows (at::parallel_for), fp32 arithmetic, one rounding per
// output; the compiler vectorises the inner loops.
#include "cpu/fused_ops.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <vector>

namespace warmup::kernels {
namespace {

using torch::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Rows per task: about 16k elements each, so small tensors stay on one thread.
int64_t grain(int64_t row) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, row)); }

// Runs f.template operator()<In, Out>() for the input dtype `in` (a floating type) and the output
// dtype `out`, which is `in` or a wider float type (promotion with an fp32 weight).
template <class F>
void dispatch_in_out(at::ScalarType in, at::ScalarType out, const char* name, F&& f) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, in, "fused_ops", [&] {
    using In = scalar_t;
    if (out == in) f.template operator()<In, In>();
    else if (out == at::kFloat) f.template operator()<In, float>();
    else if (out == at::kDouble) f.template operator()<In, double>();
    else TORCH_CHECK(false, name, ": unsupported output dtype ", out, " for input ", in);
  });
}

// ---- RMSNorm --------------------------------------------------------------------------------

struct RmsNormFn : torch::autograd::Function<RmsNormFn> {
  static Tensor forward(AutogradContext* ctx, Tensor x, Tensor weight, double eps) {
    Tensor xc = x.contiguous(), wf = weight.to(at::kFloat).contiguous();
    int64_t H = x.size(-1), rows = H ? x.numel() / H : 0;
    Tensor out = at::empty(x.sizes(), x.options().dtype(at::promote_types(x.scalar_type(), weight.scalar_type())));
    Tensor rstd = at::empty({rows}, x.options().dtype(at::kFloat));
    const float* w = wf.data_ptr<float>();
    float* rs = rstd.data_ptr<float>();
    dispatch_in_out(x.scalar_type(), out.scalar_type(), "rms_norm", [&]<class In, class Out>() {
      const In* px = xc.data_ptr<In>();
      Out* po = out.data_ptr<Out>();
      at::parallel_for(0, rows, grain(H), [&](int64_t b, int64_t e) {
        for (int64_t r = b; r < e; ++r) {
          const In* xr = px + r * H;
          Out* o = po + r * H;
          float ss = 0;
          for (int64_t i = 0; i < H; ++i) ss += float(xr[i]) * float(xr[i]);
          float s = 1.0f / std::sqrt(ss / float(H) + float(eps));
          rs[r] = s;
          for (int64_t i = 0; i < H; ++i) o[i] = Out(w[i] * float(In(float(xr[i]) * s)));
        }
      });
    });
    ctx->save_for_backward({xc, weight, rstd});
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    Tensor x = saved[0], weight = saved[1], rstd = saved[2];
    Tensor g = grads[0].contiguous(), wf = weight.to(at::kFloat).contiguous();
    int64_t H = x.size(-1), rows = H ? x.numel() / H : 0;
    Tensor dx = at::empty_like(x);
    int nt = at::get_num_threads();
    std::vector<float> dw_part(size_t(nt) * size_t(H), 0.0f);  // per-thread sums of g * y
    const float* w = wf.data_ptr<float>();
    const float* rs = rstd.data_ptr<float>();
    dispatch_in_out(x.scalar_type(), g.scalar_type(), "rms_norm_backward", [&]<class In, class Out>() {
      const In* px = x.data_ptr<In>();
      const Out* pg = g.data_ptr<Out>();
      In* pdx = dx.data_ptr<In>();
      at::parallel_for(0, rows, grain(H), [&](int64_t b, int64_t e) {
        float* dw = dw_part.data() + size_t(at::get_thread_num()) * size_t(H);
        for (int64_t r = b; r < e; ++r) {
          const In* xr = px + r * H;
          const Out* gr = pg + r * H;
          float s = rs[r], dot = 0;
          for (int64_t i = 0; i < H; ++i) {
            float gi = float(gr[i]);
            dot += gi * w[i] * float(xr[i]);
            dw[i] += gi * float(In(float(xr[i]) * s));
          }
          float k = s * s * s * dot / float(H);
          In* d = pdx + r * H;
          for (int64_t i = 0; i < H; ++i) d[i] = In(s * float(gr[i]) * w[i] - k * float(xr[i]));
        }
      });
    });
    Tensor dw = at::zeros({H}, x.options().dtype(at::kFloat));
    float* pdw = dw.data_ptr<float>();
    for (int t = 0; t < nt; ++t)
      for (int64_t i = 0; i < H; ++i) pdw[i] += dw_part[size_t(t) * size_t(H) + size_t(i)];
    return {dx, dw.to(weight.scalar_type()), Tensor()};
  }
};

// ---- rotary embedding -----------------------------------------------------------------------

// out = x * c + rotate_half(x) * s per head, or (sign = -1) its transpose, the backward map.
template <class T>
void rope_apply(const T* x, const float* cos, const float* sin, T* out, int64_t rows, int64_t heads, int64_t D,
                float sign) {
  int64_t h = D / 2;
  at::parallel_for(0, rows, grain(heads * D), [&](int64_t b, int64_t e) {
    std::vector<float> c(static_cast<size_t>(D)), s(static_cast<size_t>(D));
    for (int64_t r = b; r < e; ++r) {
      for (int64_t i = 0; i < D; ++i) {  // cos/sin in x's dtype first, as the composite form
        c[size_t(i)] = float(T(cos[r * D + i]));
        s[size_t(i)] = float(T(sin[r * D + i]));
      }
      for (int64_t hd = 0; hd < heads; ++hd) {
        const T* xr = x + (r * heads + hd) * D;
        T* o = out + (r * heads + hd) * D;
        if (sign > 0) {
          for (int64_t i = 0; i < h; ++i) {
            o[i] = T(float(xr[i]) * c[size_t(i)] - float(xr[i + h]) * s[size_t(i)]);
            o[i + h] = T(float(xr[i + h]) * c[size_t(i + h)] + float(xr[i]) * s[size_t(i + h)]);
          }
        } else {
          for (int64_t i = 0; i < h; ++i) {
            o[i] = T(float(xr[i]) * c[size_t(i)] + float(xr[i + h]) * s[size_t(i + h)]);
            o[i + h] = T(float(xr[i + h]) * c[size_t(i + h)] - float(xr[i]) * s[size_t(i)]);
          }
        }
      }
    }
  });
}

Tensor rope_run(const Tensor& x, const Tensor& cos, const Tensor& sin, float sign) {
  Tensor out = at::empty_like(x, at::MemoryFormat::Contiguous);
  int64_t B = x.size(0), T = x.size(1), H = x.size(2), D = x.size(3);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "rope", [&] {
    rope_apply<scalar_t>(x.data_ptr<scalar_t>(), cos.data_ptr<float>(), sin.data_ptr<float>(), out.data_ptr<scalar_t>(),
                         B * T, H, D, sign);
  });
  return out;
}

struct RopeFn : torch::autograd::Function<RopeFn> {
  static Tensor forward(AutogradContext* ctx, Tensor x, Tensor cos, Tensor sin) {
    TORCH_CHECK(x.dim() == 4 && x.size(3) % 2 == 0, "rope: x must be (B, T, H, D) with D even");
    int64_t B = x.size(0), T = x.size(1), D = x.size(3);
    Tensor c = cos.to(at::kFloat).expand({B, T, D}).contiguous(), s = sin.to(at::kFloat).expand({B, T, D}).contiguous();
    ctx->save_for_backward({c, s});
    return rope_run(x.contiguous(), c, s, 1.0f);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    return {rope_run(grads[0].contiguous(), saved[0], saved[1], -1.0f), Tensor(), Tensor()};
  }
};

}  // namespace

Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps) { return RmsNormFn::apply(x, weight, eps); }

Tensor rope(const Tensor& x, const Tensor& cos, const Tensor& sin) { return RopeFn::apply(x, cos, sin); }

}  // namespace warmup::kernels
