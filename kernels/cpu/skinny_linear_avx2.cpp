// The skinny-linear kernel (skinny_linear_kernel.h) built for AVX2 + FMA + F16C:
// framework/CMakeLists.txt compiles this file with -mavx2 -mfma -mf16c -DCPU_CAPABILITY=AVX2
// -DCPU_CAPABILITY_AVX2 on x86-64; skinny_linear.cpp calls it when the CPU has them.
#if defined(__x86_64__)
#if !defined(__AVX2__) || !defined(__FMA__) || !defined(CPU_CAPABILITY_AVX2)
#error "compile with -mavx2 -mfma -mf16c -DCPU_CAPABILITY=AVX2 -DCPU_CAPABILITY_AVX2"
#endif
#define WARMUP_KERNEL_ISA avx2
#include "cpu/skinny_linear_kernel.h"

namespace warmup::skinny_detail {
void run_avx2(const SkinnyArgs& a) { avx2::run(a); }
}  // namespace warmup::skinny_detail
#endif
