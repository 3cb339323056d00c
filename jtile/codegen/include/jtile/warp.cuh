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

}  // namespace jt
