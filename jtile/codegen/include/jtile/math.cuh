// jtile device header: elementwise math (SFU and FMA pipes).
// float and double call the CUDA math library (full accuracy); half and
// bfloat16 compute in float and round back to nearest even.
#pragma once

#include "types.cuh"

namespace jt {

// 2^x with ex2.approx.ftz.f32 (MUFU.EX2, sm_75+): ~2 ulp, denormals flushed.
// The softmax path uses it with a log2(e)-prescaled argument.
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// --- float -----------------------------------------------------------------
__device__ __forceinline__ float exp(float x) { return ::expf(x); }
// T.exp2 is the hot op of softmax and attention: one MUFU.EX2 (results that would be
// float32 denormals flush to zero, which a probability that small does not miss).
__device__ __forceinline__ float exp2(float x) { return fast_exp2(x); }
__device__ __forceinline__ float log(float x) { return ::logf(x); }
__device__ __forceinline__ float log2(float x) { return ::log2f(x); }
__device__ __forceinline__ float sqrt(float x) { return ::sqrtf(x); }
__device__ __forceinline__ float rsqrt(float x) { return ::rsqrtf(x); }
__device__ __forceinline__ float abs(float x) { return ::fabsf(x); }
__device__ __forceinline__ float tanh(float x) { return ::tanhf(x); }
__device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + ::expf(-x)); }
// fmaxf/fminf: if one operand is NaN the other is returned.
__device__ __forceinline__ float max(float a, float b) { return ::fmaxf(a, b); }
__device__ __forceinline__ float min(float a, float b) { return ::fminf(a, b); }

// --- double ----------------------------------------------------------------
__device__ __forceinline__ double exp(double x) { return ::exp(x); }
__device__ __forceinline__ double exp2(double x) { return ::exp2(x); }
__device__ __forceinline__ double log(double x) { return ::log(x); }
__device__ __forceinline__ double log2(double x) { return ::log2(x); }
__device__ __forceinline__ double sqrt(double x) { return ::sqrt(x); }
__device__ __forceinline__ double rsqrt(double x) { return ::rsqrt(x); }
__device__ __forceinline__ double abs(double x) { return ::fabs(x); }
__device__ __forceinline__ double tanh(double x) { return ::tanh(x); }
__device__ __forceinline__ double sigmoid(double x) { return 1.0 / (1.0 + ::exp(-x)); }
__device__ __forceinline__ double max(double a, double b) { return ::fmax(a, b); }
__device__ __forceinline__ double min(double a, double b) { return ::fmin(a, b); }

// --- the rest of CUDA's math library: TileLang's T.sin, T.floor, T.pow, ... ----
// Full-accuracy library calls (TileLang compiles without fast math). round() rounds
// halfway cases away from zero, nearbyint() to even.
#define JT_LIBM_UNARY(name)                                                   \
  __device__ __forceinline__ float name(float x) { return ::name##f(x); }     \
  __device__ __forceinline__ double name(double x) { return ::name(x); }
#define JT_LIBM_BINARY(name)                                                  \
  __device__ __forceinline__ float name(float a, float b) { return ::name##f(a, b); } \
  __device__ __forceinline__ double name(double a, double b) { return ::name(a, b); }
#define JT_LIBM_FUNCTIONS(UNARY, BINARY)                                      \
  UNARY(sin) UNARY(cos) UNARY(tan) UNARY(asin) UNARY(acos) UNARY(atan)        \
  UNARY(sinh) UNARY(cosh) UNARY(asinh) UNARY(acosh) UNARY(atanh) UNARY(erf)   \
  UNARY(log10) UNARY(log1p) UNARY(exp10) UNARY(floor) UNARY(ceil) UNARY(trunc) \
  UNARY(round) UNARY(nearbyint)                                               \
  BINARY(pow) BINARY(atan2) BINARY(hypot) BINARY(copysign)

JT_LIBM_FUNCTIONS(JT_LIBM_UNARY, JT_LIBM_BINARY)

#undef JT_LIBM_BINARY
#undef JT_LIBM_UNARY

// --- half and bfloat16: through float ---------------------------------------
#define JT_NARROW_UNARY(T, name)                                        \
  __device__ __forceinline__ T name(T x) {                              \
    return cast<T>(name(cast<float>(x)));                               \
  }
#define JT_NARROW_BINARY(T, name)                                       \
  __device__ __forceinline__ T name(T a, T b) {                         \
    return cast<T>(name(cast<float>(a), cast<float>(b)));               \
  }
#define JT_NARROW_MATH(T)                                               \
  JT_NARROW_UNARY(T, exp) JT_NARROW_UNARY(T, exp2) JT_NARROW_UNARY(T, log) \
  JT_NARROW_UNARY(T, log2) JT_NARROW_UNARY(T, sqrt) JT_NARROW_UNARY(T, rsqrt) \
  JT_NARROW_UNARY(T, abs) JT_NARROW_UNARY(T, tanh) JT_NARROW_UNARY(T, sigmoid) \
  JT_NARROW_BINARY(T, max) JT_NARROW_BINARY(T, min)

JT_NARROW_MATH(half)
JT_NARROW_MATH(bfloat16)

#define JT_NARROW_HALF_UNARY(name) JT_NARROW_UNARY(half, name)
#define JT_NARROW_HALF_BINARY(name) JT_NARROW_BINARY(half, name)
#define JT_NARROW_BF16_UNARY(name) JT_NARROW_UNARY(bfloat16, name)
#define JT_NARROW_BF16_BINARY(name) JT_NARROW_BINARY(bfloat16, name)
JT_LIBM_FUNCTIONS(JT_NARROW_HALF_UNARY, JT_NARROW_HALF_BINARY)
JT_LIBM_FUNCTIONS(JT_NARROW_BF16_UNARY, JT_NARROW_BF16_BINARY)
#undef JT_NARROW_HALF_UNARY
#undef JT_NARROW_HALF_BINARY
#undef JT_NARROW_BF16_UNARY
#undef JT_NARROW_BF16_BINARY
#undef JT_LIBM_FUNCTIONS

#undef JT_NARROW_MATH
#undef JT_NARROW_BINARY
#undef JT_NARROW_UNARY

// --- integers ----------------------------------------------------------------
__device__ __forceinline__ int max(int a, int b) { return a > b ? a : b; }
__device__ __forceinline__ int min(int a, int b) { return a < b ? a : b; }
__device__ __forceinline__ int abs(int x) { return x < 0 ? -x : x; }
__device__ __forceinline__ unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
__device__ __forceinline__ unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
__device__ __forceinline__ long long max(long long a, long long b) { return a > b ? a : b; }
__device__ __forceinline__ long long min(long long a, long long b) { return a < b ? a : b; }
__device__ __forceinline__ long long abs(long long x) { return x < 0 ? -x : x; }

// `//` and `%` on signed integers round toward -inf, as in TileLang (TVM's floordiv and
// floormod) and Python; the printer uses C's `/` and `%` where the dividend is provably >= 0
// and the divisor > 0, where both agree.
template <typename T>
__device__ __forceinline__ T floordiv(T a, T b) {
  const T q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}
template <typename T>
__device__ __forceinline__ T floormod(T a, T b) {
  const T r = a % b;
  return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r;
}

}  // namespace jt
