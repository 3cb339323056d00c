// jtile device header: warp-level operations (lane index, shuffles).
#pragma once

#include "types.cuh"
#include "math.cuh"

namespace jt {

// Lane within the warp and warp within the block. Generated kernels use 1-D
// blocks, so both come from threadIdx.x alone.
__device__ __forceinline__ int lane_id() { return static_cast<int>(threadIdx.x & 31u); }
__device__ __forceinline__ int warp_id() { return static_cast<int>(threadIdx.x >> 5); }

// Butterfly exchange with lane ^ lane_mask across the full warp:
// shfl.sync.bfly.b32 with membermask 0xffffffff (SHFL.BFLY, sm_70+; 64-bit
// types take two shuffles, 16-bit types one). T is float, double, int,
// unsigned, half or bfloat16; every lane of the warp must call it.
template <typename T>
__device__ __forceinline__ T shfl_xor(T v, int lane_mask) {
  return __shfl_xor_sync(0xffffffffu, v, lane_mask);
}

// --- T.shfl_* / T.warp_reduce_* / votes: per-thread code over the full warp ---
// Any element type: 64-bit values travel as one 64-bit shuffle, narrower ones as the 32-bit
// word holding their bits (so 8- and 16-bit types, fp8 and bool keep every bit). `width`
// groups the lanes as CUDA's shuffles do; `members` names the lanes taking part (the full
// warp, or the threads of a block smaller than a warp).
namespace detail {
template <typename T>
__device__ __forceinline__ unsigned long long shfl_bits(T v) {
  unsigned long long u = 0;
  memcpy(&u, &v, sizeof(T));
  return u;
}
template <typename T>
__device__ __forceinline__ T from_shfl_bits(unsigned long long u) {
  T v;
  memcpy(&v, &u, sizeof(T));
  return v;
}
}  // namespace detail

#define JT_WARP_SHUFFLE(name, intrinsic)                                                  \
  template <typename T>                                                                   \
  __device__ __forceinline__ T name(T v, int arg, int width, unsigned members) {          \
    static_assert(sizeof(T) <= 8, "jt::" #name ": values of at most 64 bits");            \
    if constexpr (sizeof(T) == 8) {                                                       \
      long long bits = static_cast<long long>(detail::shfl_bits(v));                      \
      return detail::from_shfl_bits<T>(static_cast<unsigned long long>(                   \
          intrinsic(members, bits, arg, width)));                                         \
    } else {                                                                              \
      unsigned bits = static_cast<unsigned>(detail::shfl_bits(v));                        \
      return detail::from_shfl_bits<T>(intrinsic(members, bits, arg, width));             \
    }                                                                                     \
  }
JT_WARP_SHUFFLE(warp_shfl_idx, __shfl_sync)
JT_WARP_SHUFFLE(warp_shfl_xor, __shfl_xor_sync)
JT_WARP_SHUFFLE(warp_shfl_down, __shfl_down_sync)
JT_WARP_SHUFFLE(warp_shfl_up, __shfl_up_sync)
#undef JT_WARP_SHUFFLE

// Butterfly reductions: lanes 16 apart combine first, then 8, 4, 2, 1; every lane ends with
// the warp's result (interpret mode combines in the same order).
template <typename T, typename F>
__device__ __forceinline__ T warp_reduce(T v, F combine) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    v = combine(v, warp_shfl_xor(v, offset, 32, 0xffffffffu));
  }
  return v;
}
template <typename T>
__device__ __forceinline__ T warp_reduce_sum(T v) {
  return warp_reduce(v, [](T a, T b) { return static_cast<T>(a + b); });
}
template <typename T>
__device__ __forceinline__ T warp_reduce_max(T v) {
  return warp_reduce(v, [](T a, T b) { return static_cast<T>(jt::max(a, b)); });
}
template <typename T>
__device__ __forceinline__ T warp_reduce_min(T v) {
  return warp_reduce(v, [](T a, T b) { return static_cast<T>(jt::min(a, b)); });
}
template <typename T>
__device__ __forceinline__ T warp_reduce_bitand(T v) {
  return warp_reduce(v, [](T a, T b) { return static_cast<T>(a & b); });
}
template <typename T>
__device__ __forceinline__ T warp_reduce_bitor(T v) {
  return warp_reduce(v, [](T a, T b) { return static_cast<T>(a | b); });
}

__device__ __forceinline__ int warp_any(bool p) { return __any_sync(0xffffffffu, p) ? 1 : 0; }
__device__ __forceinline__ int warp_all(bool p) { return __all_sync(0xffffffffu, p) ? 1 : 0; }
__device__ __forceinline__ unsigned long long warp_ballot(bool p) {
  return static_cast<unsigned long long>(__ballot_sync(0xffffffffu, p));
}

// --- named barriers: a subset of the block's warps ------------------------
// bar.sync id, count (BAR.SYNC, sm_70+): `count` threads (a multiple of 32)
// of whole warps meet at barrier `id` (1..15; 0 is __syncthreads()).
__device__ __forceinline__ void named_barrier_sync(unsigned id, unsigned count) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(count) : "memory");
}
// bar.arrive id, count: counts this warp's threads towards barrier `id`'s `count` without
// waiting (a producer's signal to warps that bar.sync on the same id).
__device__ __forceinline__ void named_barrier_arrive(unsigned id, unsigned count) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(count) : "memory");
}


}  // namespace jt
