// jtile device header: the grid barrier of T.sync_grid, included by the kernels that use it.
//
// The kernel is launched cooperatively (the launcher asks the driver to, which refuses a grid
// that cannot be resident all at once), so every block runs concurrently and may wait for the
// others. The barrier is a counter in this module's global memory, zero when the module loads.
// Each barrier adds 2^31 to it in total: every block but block 0 adds 1 and block 0 adds
// 2^31 - (blocks - 1), so the top bit flips exactly when the last block arrives, whatever the
// order, and the low 31 bits are back at zero for the next barrier and the next launch. Two
// launches of one module running at once on one GPU would share the counter; a cooperative
// kernel fills the GPU, so they do not overlap.
#pragma once

namespace jt {

__device__ unsigned int grid_barrier_count;

__device__ __forceinline__ unsigned int load_acquire_gpu(const unsigned int* address) {
  unsigned int value;
  asm volatile("ld.acquire.gpu.global.u32 %0, [%1];\n" : "=r"(value) : "l"(address) : "memory");
  return value;
}

// Every thread of every block meets here; global memory written by any block before it is
// visible to every block after it.
__device__ __forceinline__ void grid_sync() {
  __syncthreads();
  if (threadIdx.x == 0 && threadIdx.y == 0 && threadIdx.z == 0) {
    const unsigned int blocks = gridDim.x * gridDim.y * gridDim.z;
    const bool first = blockIdx.x == 0 && blockIdx.y == 0 && blockIdx.z == 0;
    const unsigned int add = first ? 0x80000000u - (blocks - 1u) : 1u;
    __threadfence();  // the block's writes (ordered before this thread by the barrier above)
    const unsigned int before = atomicAdd(&grid_barrier_count, add);
    while (((load_acquire_gpu(&grid_barrier_count) ^ before) & 0x80000000u) == 0u) {
    }
    __threadfence();
  }
  __syncthreads();
}

}  // namespace jt
