// jtile device header: warp-level operations (lane index, shuffles).
#pragma once

#include "types.cuh"

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
