// jtile device header: element types, vectors, casts and numeric limits.
// NVRTC-safe: only the CUDA half/bfloat16/fp8 headers are included.
#pragma once

#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <cuda_fp8.h>

namespace jt {

using u32 = unsigned int;
using u64 = unsigned long long;

using half = __half;
using bfloat16 = __nv_bfloat16;
using fp8_e4m3 = __nv_fp8_e4m3;
using fp8_e5m2 = __nv_fp8_e5m2;

// N elements of T as one aligned unit, so a load or store of a vec becomes one
// LDG/STG/LDS/STS of 2, 4, 8 or 16 bytes.
template <typename T, int N>
struct alignas(sizeof(T) * N) vec {
  static_assert(N > 0 && sizeof(T) * N <= 16 && (sizeof(T) * N & (sizeof(T) * N - 1)) == 0,
                "jt::vec<T, N>: sizeof(T) * N must be 1, 2, 4, 8 or 16 bytes");
  T v[N];
};

// ---------------------------------------------------------------------------
// cast<To>(x). Native arithmetic pairs follow C (float -> int truncates toward
// zero). The 16- and 8-bit float types convert through float: round to nearest
// even into half/bfloat16, saturate to the finite range into fp8.
// ---------------------------------------------------------------------------
namespace detail {
template <typename T> struct is_narrow_float { static constexpr bool value = false; };
template <> struct is_narrow_float<half> { static constexpr bool value = true; };
template <> struct is_narrow_float<bfloat16> { static constexpr bool value = true; };
template <> struct is_narrow_float<fp8_e4m3> { static constexpr bool value = true; };
template <> struct is_narrow_float<fp8_e5m2> { static constexpr bool value = true; };

template <typename A, typename B> struct is_same { static constexpr bool value = false; };
template <typename A> struct is_same<A, A> { static constexpr bool value = true; };

__device__ __forceinline__ float to_float(half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_float(fp8_e4m3 x) { return static_cast<float>(x); }
__device__ __forceinline__ float to_float(fp8_e5m2 x) { return static_cast<float>(x); }

template <typename T> __device__ __forceinline__ T from_float(float x);
template <> __device__ __forceinline__ half from_float<half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ bfloat16 from_float<bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}
template <> __device__ __forceinline__ fp8_e4m3 from_float<fp8_e4m3>(float x) { return fp8_e4m3(x); }
template <> __device__ __forceinline__ fp8_e5m2 from_float<fp8_e5m2>(float x) { return fp8_e5m2(x); }
}  // namespace detail

template <typename To, typename From>
__device__ __forceinline__ To cast(From x) {
  if constexpr (detail::is_same<To, From>::value) {
    return x;
  } else if constexpr (detail::is_narrow_float<From>::value) {
    return cast<To>(detail::to_float(x));
  } else if constexpr (detail::is_narrow_float<To>::value) {
    return detail::from_float<To>(static_cast<float>(x));
  } else {
    return static_cast<To>(x);
  }
}

// ---------------------------------------------------------------------------
// Numeric limits, the identities of max/min reductions. min_value is the lowest
// finite value. Integer types have no infinity: infinity<int>() is max_value.
// ---------------------------------------------------------------------------
template <typename T> __device__ __forceinline__ T infinity();
template <typename T> __device__ __forceinline__ T max_value();
template <typename T> __device__ __forceinline__ T min_value();

template <> __device__ __forceinline__ float infinity<float>() { return __int_as_float(0x7f800000); }
template <> __device__ __forceinline__ float max_value<float>() { return __int_as_float(0x7f7fffff); }
template <> __device__ __forceinline__ float min_value<float>() { return __int_as_float(0xff7fffff); }

template <> __device__ __forceinline__ double infinity<double>() {
  return __longlong_as_double(0x7ff0000000000000LL);
}
template <> __device__ __forceinline__ double max_value<double>() {
  return __longlong_as_double(0x7fefffffffffffffLL);
}
template <> __device__ __forceinline__ double min_value<double>() {
  return __longlong_as_double(static_cast<long long>(0xffefffffffffffffULL));
}

template <> __device__ __forceinline__ half infinity<half>() { return __ushort_as_half(0x7c00); }
template <> __device__ __forceinline__ half max_value<half>() { return __ushort_as_half(0x7bff); }
template <> __device__ __forceinline__ half min_value<half>() { return __ushort_as_half(0xfbff); }

template <> __device__ __forceinline__ bfloat16 infinity<bfloat16>() { return __ushort_as_bfloat16(0x7f80); }
template <> __device__ __forceinline__ bfloat16 max_value<bfloat16>() { return __ushort_as_bfloat16(0x7f7f); }
template <> __device__ __forceinline__ bfloat16 min_value<bfloat16>() { return __ushort_as_bfloat16(0xff7f); }

template <> __device__ __forceinline__ int max_value<int>() { return 2147483647; }
template <> __device__ __forceinline__ int min_value<int>() { return -2147483647 - 1; }
template <> __device__ __forceinline__ int infinity<int>() { return max_value<int>(); }

template <> __device__ __forceinline__ unsigned max_value<unsigned>() { return 0xffffffffu; }
template <> __device__ __forceinline__ unsigned min_value<unsigned>() { return 0u; }
template <> __device__ __forceinline__ unsigned infinity<unsigned>() { return max_value<unsigned>(); }

template <> __device__ __forceinline__ long long max_value<long long>() { return 9223372036854775807LL; }
template <> __device__ __forceinline__ long long min_value<long long>() { return -9223372036854775807LL - 1; }
template <> __device__ __forceinline__ long long infinity<long long>() { return max_value<long long>(); }

// ---------------------------------------------------------------------------
// Packing two f32 values into one 32-bit register of 16-bit halves, the
// register format of mma.sync A/B fragments (lo in bits 0..15). Becomes one
// F2FP pack on sm_80+ (cvt.rn.f16x2.f32 / cvt.rn.bf16x2.f32).
// ---------------------------------------------------------------------------
__device__ __forceinline__ unsigned pack_half2(float lo, float hi) {
  return static_cast<unsigned>(__half_as_ushort(__float2half_rn(lo))) |
         (static_cast<unsigned>(__half_as_ushort(__float2half_rn(hi))) << 16);
}

__device__ __forceinline__ unsigned pack_bfloat162(float lo, float hi) {
  return static_cast<unsigned>(__bfloat16_as_ushort(__float2bfloat16_rn(lo))) |
         (static_cast<unsigned>(__bfloat16_as_ushort(__float2bfloat16_rn(hi))) << 16);
}

// Two 16-bit values already in registers, packed for an mma operand (lo in bits 0..15).
__device__ __forceinline__ unsigned pack2(half lo, half hi) {
  return static_cast<unsigned>(__half_as_ushort(lo)) |
         (static_cast<unsigned>(__half_as_ushort(hi)) << 16);
}

__device__ __forceinline__ unsigned pack2(bfloat16 lo, bfloat16 hi) {
  return static_cast<unsigned>(__bfloat16_as_ushort(lo)) |
         (static_cast<unsigned>(__bfloat16_as_ushort(hi)) << 16);
}

}  // namespace jt
