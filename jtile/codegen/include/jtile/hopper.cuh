// jtile device header: Hopper's asynchronous units. TMA tensor copies
// (cp.async.bulk.tensor, sm_90+), warpgroup MMA fences and shared-memory matrix
// descriptors (wgmma, sm_90a), register reallocation (setmaxnreg, sm_90a) and
// named barriers for thread subsets (bar.sync id, count).
//
// The wgmma instructions themselves have one operand per accumulator register,
// so the code generator prints the one wrapper each kernel needs beside it
// instead of listing every shape here.
#pragma once

#include "copy.cuh"
#include "mbarrier.cuh"

namespace jt {

// The driver's CUtensorMap (128 opaque bytes, 64-byte aligned), declared here
// so kernels need no cuda.h. Kernels take it as `const __grid_constant__`.
struct alignas(64) TensorMap {
  unsigned long long opaque[16];
};

// The byte offset `o` of a panel tile after the 32/64/128-byte swizzle TMA and
// wgmma agree on (PTX Swizzle<B, 4, 3>): 16-byte chunk bits 4.. XOR address bits
// 7..; Mask = span / 16 - 1.
template <int Mask>
__device__ __forceinline__ int swizzle_bytes(int o) {
  return o ^ (((o >> 7) & Mask) << 4);
}

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900

// --- TMA: global <-> shared tiles described by a CUtensorMap ---------------
// The map is a __grid_constant__ kernel parameter; coordinates are element
// indices, innermost dimension first; elements outside the tensor read as 0
// and are never written. Completion of a load subtracts its bytes from `bar`.

// cp.async.bulk.tensor.Nd.shared::cluster.global.mbarrier::complete_tx::bytes
// [dst], [map, {c0, ..}], [bar] (UTMALDG, sm_90+).
__device__ __forceinline__ void tma_load_2d(void* smem_dst, const TensorMap* map,
                                            unsigned long long* bar, int c0, int c1) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%3, %4}], [%2];\n" ::"r"(detail::smem_addr(smem_dst)),
      "l"(map), "r"(detail::smem_addr(bar)), "r"(c0), "r"(c1)
      : "memory");
}

__device__ __forceinline__ void tma_load_3d(void* smem_dst, const TensorMap* map,
                                            unsigned long long* bar, int c0, int c1, int c2) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%3, %4, %5}], [%2];\n" ::"r"(detail::smem_addr(smem_dst)),
      "l"(map), "r"(detail::smem_addr(bar)), "r"(c0), "r"(c1), "r"(c2)
      : "memory");
}

__device__ __forceinline__ void tma_load_4d(void* smem_dst, const TensorMap* map,
                                            unsigned long long* bar, int c0, int c1, int c2,
                                            int c3) {
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%3, %4, %5, %6}], [%2];\n" ::"r"(detail::smem_addr(smem_dst)),
      "l"(map), "r"(detail::smem_addr(bar)), "r"(c0), "r"(c1), "r"(c2), "r"(c3)
      : "memory");
}

__device__ __forceinline__ void tma_load_5d(void* smem_dst, const TensorMap* map,
                                            unsigned long long* bar, int c0, int c1, int c2,
                                            int c3, int c4) {
  asm volatile(
      "cp.async.bulk.tensor.5d.shared::cluster.global.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%3, %4, %5, %6, %7}], [%2];\n" ::"r"(detail::smem_addr(smem_dst)),
      "l"(map), "r"(detail::smem_addr(bar)), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(c4)
      : "memory");
}

// The same copies, multicast: the box lands at the same shared-memory offset in
// every CTA of the cluster whose bit is set in `mask` (their %cluster_ctarank),
// and completes each of those CTAs' barrier at `bar`'s offset (sm_90+).
__device__ __forceinline__ void tma_load_2d_multicast(void* smem_dst, const TensorMap* map,
                                                      unsigned long long* bar, unsigned short mask,
                                                      int c0, int c1) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes"
      ".multicast::cluster [%0], [%1, {%4, %5}], [%2], %3;\n" ::"r"(detail::smem_addr(smem_dst)),
      "l"(map), "r"(detail::smem_addr(bar)), "h"(mask), "r"(c0), "r"(c1)
      : "memory");
}

__device__ __forceinline__ void tma_load_3d_multicast(void* smem_dst, const TensorMap* map,
                                                      unsigned long long* bar, unsigned short mask,
                                                      int c0, int c1, int c2) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes"
      ".multicast::cluster [%0], [%1, {%4, %5, %6}], [%2], %3;\n"
      ::"r"(detail::smem_addr(smem_dst)), "l"(map), "r"(detail::smem_addr(bar)), "h"(mask),
      "r"(c0), "r"(c1), "r"(c2)
      : "memory");
}

__device__ __forceinline__ void tma_load_4d_multicast(void* smem_dst, const TensorMap* map,
                                                      unsigned long long* bar, unsigned short mask,
                                                      int c0, int c1, int c2, int c3) {
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes"
      ".multicast::cluster [%0], [%1, {%4, %5, %6, %7}], [%2], %3;\n"
      ::"r"(detail::smem_addr(smem_dst)), "l"(map), "r"(detail::smem_addr(bar)), "h"(mask),
      "r"(c0), "r"(c1), "r"(c2), "r"(c3)
      : "memory");
}

// --- thread-block clusters ---------------------------------------------------
// This CTA's rank in its cluster (%cluster_ctarank, sm_90+).
__device__ __forceinline__ unsigned cluster_ctarank() {
  unsigned rank;
  asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(rank));
  return rank;
}

// Every thread of every CTA of the cluster meets here; shared-memory writes and
// barrier initialisations before it are visible cluster-wide after it
// (barrier.cluster.arrive.release + wait.acquire, sm_90+).
__device__ __forceinline__ void cluster_sync() {
  asm volatile("barrier.cluster.arrive.release;\nbarrier.cluster.wait.acquire;\n" ::: "memory");
}

// One arrival on the barrier at `bar`'s offset in the shared memory of cluster
// CTA `rank` (mapa + mbarrier.arrive.shared::cluster, sm_90+). Default (CTA-scope
// release) semantics: it only says this CTA's wgmma reads of a stage are done
// (their wait_group precedes it); a cluster-scope release would add a GPU-wide
// memory barrier (MEMBAR.ALL.GPU) to every stage of the main loop.
__device__ __forceinline__ void mbarrier_arrive_cluster(unsigned long long* bar, unsigned rank) {
  asm volatile(
      "{\n"
      "  .reg .b32 remote;\n"
      "  mapa.shared::cluster.u32 remote, %0, %1;\n"
      "  mbarrier.arrive.shared::cluster.b64 _, [remote];\n"
      "}\n" ::"r"(detail::smem_addr(bar)), "r"(rank)
      : "memory");
}

// --- TMA stores: shared tile -> global (cp.async.bulk.tensor, sm_90+) ------------
// One thread issues them after every thread's writes to the tile were fenced into the async
// proxy (fence.proxy.async.shared::cta) and met at a barrier; the engine clips boxes at the
// tensor's edges. The tile must stay untouched until tma_store_wait_read<0>() returns.
__device__ __forceinline__ void tma_store_2d(const TensorMap* map, const void* smem_src, int c0,
                                             int c1) {
  asm volatile(
      "cp.async.bulk.tensor.2d.global.shared::cta.bulk_group [%0, {%2, %3}], [%1];\n"
      ::"l"(map), "r"(detail::smem_addr(smem_src)), "r"(c0), "r"(c1)
      : "memory");
}

__device__ __forceinline__ void tma_store_3d(const TensorMap* map, const void* smem_src, int c0,
                                             int c1, int c2) {
  asm volatile(
      "cp.async.bulk.tensor.3d.global.shared::cta.bulk_group [%0, {%2, %3, %4}], [%1];\n"
      ::"l"(map), "r"(detail::smem_addr(smem_src)), "r"(c0), "r"(c1), "r"(c2)
      : "memory");
}

__device__ __forceinline__ void tma_store_4d(const TensorMap* map, const void* smem_src, int c0,
                                             int c1, int c2, int c3) {
  asm volatile(
      "cp.async.bulk.tensor.4d.global.shared::cta.bulk_group [%0, {%2, %3, %4, %5}], [%1];\n"
      ::"l"(map), "r"(detail::smem_addr(smem_src)), "r"(c0), "r"(c1), "r"(c2), "r"(c3)
      : "memory");
}

__device__ __forceinline__ void tma_store_5d(const TensorMap* map, const void* smem_src, int c0,
                                             int c1, int c2, int c3, int c4) {
  asm volatile(
      "cp.async.bulk.tensor.5d.global.shared::cta.bulk_group [%0, {%2, %3, %4, %5, %6}], [%1];\n"
      ::"l"(map), "r"(detail::smem_addr(smem_src)), "r"(c0), "r"(c1), "r"(c2), "r"(c3),
      "r"(c4)
      : "memory");
}

// --- TMA reduce-add: global tile += shared tile (cp.reduce.async.bulk.tensor, sm_90+) ---
// Issued and waited for like a TMA store (tma_store_commit, tma_store_wait_read); each element
// is added atomically in L2 (the map's element type: f32, f16, bf16, s32, u32 or u64).
__device__ __forceinline__ void tma_reduce_add_2d(const TensorMap* map, const void* smem_src,
                                                  int c0, int c1) {
  asm volatile(
      "cp.reduce.async.bulk.tensor.2d.global.shared::cta.add.tile.bulk_group [%0, {%2, %3}], "
      "[%1];\n"
      ::"l"(map), "r"(detail::smem_addr(smem_src)), "r"(c0), "r"(c1)
      : "memory");
}

__device__ __forceinline__ void tma_reduce_add_3d(const TensorMap* map, const void* smem_src,
                                                  int c0, int c1, int c2) {
  asm volatile(
      "cp.reduce.async.bulk.tensor.3d.global.shared::cta.add.tile.bulk_group "
      "[%0, {%2, %3, %4}], [%1];\n"
      ::"l"(map), "r"(detail::smem_addr(smem_src)), "r"(c0), "r"(c1), "r"(c2)
      : "memory");
}

__device__ __forceinline__ void tma_reduce_add_4d(const TensorMap* map, const void* smem_src,
                                                  int c0, int c1, int c2, int c3) {
  asm volatile(
      "cp.reduce.async.bulk.tensor.4d.global.shared::cta.add.tile.bulk_group "
      "[%0, {%2, %3, %4, %5}], [%1];\n"
      ::"l"(map), "r"(detail::smem_addr(smem_src)), "r"(c0), "r"(c1), "r"(c2), "r"(c3)
      : "memory");
}

__device__ __forceinline__ void tma_reduce_add_5d(const TensorMap* map, const void* smem_src,
                                                  int c0, int c1, int c2, int c3, int c4) {
  asm volatile(
      "cp.reduce.async.bulk.tensor.5d.global.shared::cta.add.tile.bulk_group "
      "[%0, {%2, %3, %4, %5, %6}], [%1];\n"
      ::"l"(map), "r"(detail::smem_addr(smem_src)), "r"(c0), "r"(c1), "r"(c2), "r"(c3),
      "r"(c4)
      : "memory");
}

__device__ __forceinline__ void tma_store_commit() {
  asm volatile("cp.async.bulk.commit_group;\n" ::: "memory");
}

// Returns once the committed stores have read their shared tiles (their global writes are
// ordered by the kernel's end).
template <int N>
__device__ __forceinline__ void tma_store_wait_read() {
  asm volatile("cp.async.bulk.wait_group.read %0;\n" ::"n"(N) : "memory");
}

// Returns once the committed stores have written global memory (visible to other
// blocks after a grid barrier).
template <int N>
__device__ __forceinline__ void tma_store_wait() {
  asm volatile("cp.async.bulk.wait_group %0;\n" ::"n"(N) : "memory");
}

// Warm the map's cache line before the first copy: prefetch.tensormap [map].
__device__ __forceinline__ void tma_prefetch_map(const TensorMap* map) {
  asm volatile("prefetch.tensormap [%0];\n" ::"l"(map) : "memory");
}

#endif  // sm_90

#if defined(__CUDA_ARCH_FEAT_SM90_ALL) || !defined(__CUDA_ARCH__)

// --- register reallocation between warpgroups (sm_90a) ---------------------
// setmaxnreg.{inc,dec}.sync.aligned.u32 n: every warp of the warpgroup runs it;
// n in 24..256, a multiple of 8. Needs a register cap at kernel entry
// (__launch_bounds__(threads, 1)).
template <int N>
__device__ __forceinline__ void setmaxnreg_inc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
}
template <int N>
__device__ __forceinline__ void setmaxnreg_dec() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
}

// --- wgmma ordering (sm_90a) ------------------------------------------------
// wgmma.fence.sync.aligned: registers (accumulators, A fragments) written
// before it are visible to the wgmma issued after it.
__device__ __forceinline__ void wgmma_fence() {
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
// wgmma.commit_group.sync.aligned: the wgmmas issued since the last commit
// form one group.
__device__ __forceinline__ void wgmma_commit() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
// wgmma.wait_group.sync.aligned N: at most N groups still in flight.
template <int N>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}

// Keeps the compiler from moving accumulator reads or writes across an
// asynchronous wgmma that uses those registers.
template <int N>
__device__ __forceinline__ void wgmma_hold(float (&acc)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(acc[i])::"memory");
}

// The same for the int32 accumulators of 8-bit integer wgmmas.
template <int N>
__device__ __forceinline__ void wgmma_hold(int (&acc)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+r"(acc[i])::"memory");
}

// The same for float16 accumulators: pairs of halves, the registers wgmma wrote.
template <int N>
__device__ __forceinline__ void wgmma_hold(half (&acc)[N]) {
  unsigned* pairs = reinterpret_cast<unsigned*>(acc);
#pragma unroll
  for (int i = 0; i < N / 2; ++i) asm volatile("" : "+r"(pairs[i])::"memory");
}

// --- shared-memory matrix descriptors (PTX "Matrix Descriptor Format") -----
// start address, leading and stride byte offsets (each >> 4, 14 bits) and the
// swizzle mode: 0 none, 1 = 128 B, 2 = 64 B, 3 = 32 B. A swizzled tile starts
// at a multiple of its pattern (1024 / 512 / 256 B), so the base offset is 0.
__device__ __forceinline__ unsigned long long wgmma_desc(const void* smem, unsigned lbo_bytes,
                                                        unsigned sbo_bytes, unsigned mode) {
  const unsigned long long addr = detail::smem_addr(smem);
  return ((addr & 0x3FFFF) >> 4) | ((unsigned long long)((lbo_bytes & 0x3FFFF) >> 4) << 16) |
         ((unsigned long long)((sbo_bytes & 0x3FFFF) >> 4) << 32) |
         ((unsigned long long)mode << 62);
}

#endif  // sm_90a

}  // namespace jt
