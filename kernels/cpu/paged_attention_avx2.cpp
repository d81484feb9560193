// The paged-attention kernel (paged_attention_kernel.h) built for AVX2 + FMA: framework/CMakeLists.txt
// compiles this file with -mavx2 -mfma -DCPU_CAPABILITY=AVX2 -DCPU_CAPABILITY_AVX2 on x86-64
// (ATen's own per-ISA kernel build); paged_attention.cpp calls it when the CPU has both.
#if defined(__x86_64__)
#if !defined(__AVX2__) || !defined(__FMA__) || !defined(CPU_CAPABILITY_AVX2)
#error "compile with -mavx2 -mfma -DCPU_CAPABILITY=AVX2 -DCPU_CAPABILITY_AVX2"
#endif
#define WARMUP_KERNEL_ISA avx2
#include "cpu/paged_attention_kernel.h"

namespace warmup::paged_detail {
void run_avx2(const PagedArgs& a) { avx2::run(a); }
}  // namespace warmup::paged_detail
#endif
