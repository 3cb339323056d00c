// jtile device header: shared-memory barriers with transaction counts and the
// bulk async copy (TMA engine) that completes on them. sm_90+.
//
// A barrier is an 8-byte-aligned `unsigned long long` in shared memory. Each
// phase completes when `count` arrivals have happened and the transaction
// count (bytes announced with expect_tx, consumed by async copies) is back at
// zero; waiters poll the phase parity, which flips 0, 1, 0, ... per phase.
#pragma once

#include "copy.cuh"

namespace jt {

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900

// Set the expected arrival count of every phase to `count`:
// mbarrier.init.shared::cta.b64 [bar], count (sm_80+; here with the rest, sm_90+).
// Follow with fence_barrier_init() and a __syncthreads() before other threads use it.
__device__ __forceinline__ void mbarrier_init(unsigned long long* bar, unsigned count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(detail::smem_addr(bar)), "r"(count)
               : "memory");
}

// Make initialised barriers visible to the async proxy and the cluster:
// fence.mbarrier_init.release.cluster (sm_90+).
__device__ __forceinline__ void fence_barrier_init() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}

// One arrival, release semantics at CTA scope:
// mbarrier.arrive.shared::cta.b64 state, [bar] (SYNCS.ARRIVE, sm_90+). The
// returned phase state is discarded.
__device__ __forceinline__ void mbarrier_arrive(unsigned long long* bar) {
  asm volatile(
      "{\n"
      "  .reg .b64 state;\n"
      "  mbarrier.arrive.shared::cta.b64 state, [%0];\n"
      "}\n" ::"r"(detail::smem_addr(bar))
      : "memory");
}

// Arrive on the barrier once every cp.async this thread has issued so far has landed:
// cp.async.mbarrier.arrive.noinc (the arrival counts toward the barrier's expected count).
__device__ __forceinline__ void cp_async_mbarrier_arrive_noinc(unsigned long long* bar) {
  asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(detail::smem_addr(bar))
               : "memory");
}

// Announce `bytes` more transaction bytes, then arrive once:
// mbarrier.arrive.expect_tx.shared::cta.b64 state, [bar], bytes (sm_90+).
__device__ __forceinline__ void mbarrier_arrive_expect_tx(unsigned long long* bar, unsigned bytes) {
  asm volatile(
      "{\n"
      "  .reg .b64 state;\n"
      "  mbarrier.arrive.expect_tx.shared::cta.b64 state, [%0], %1;\n"
      "}\n" ::"r"(detail::smem_addr(bar)),
      "r"(bytes)
      : "memory");
}

// Announce `bytes` more transaction bytes without arriving:
// mbarrier.expect_tx.relaxed.cta.shared::cta.b64 [bar], bytes (sm_90+).
__device__ __forceinline__ void mbarrier_expect_tx(unsigned long long* bar, unsigned bytes) {
  asm volatile("mbarrier.expect_tx.relaxed.cta.shared::cta.b64 [%0], %1;\n" ::"r"(detail::smem_addr(bar)),
               "r"(bytes)
               : "memory");
}

// True once the phase with parity `parity` has completed (acquire at CTA
// scope): mbarrier.try_wait.parity.shared::cta.b64 (SYNCS.PHASECHK, sm_90+).
// try_wait may suspend the thread for a system-dependent time before failing.
__device__ __forceinline__ bool mbarrier_try_wait_parity(unsigned long long* bar, unsigned parity) {
  unsigned done;
  asm volatile(
      "{\n"
      "  .reg .pred p;\n"
      "  mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
      "  selp.u32 %0, 1, 0, p;\n"
      "}\n"
      : "=r"(done)
      : "r"(detail::smem_addr(bar)), "r"(parity)
      : "memory");
  return done != 0;
}

// Block until the phase with parity `parity` has completed (sm_90+).
__device__ __forceinline__ void mbarrier_wait_parity(unsigned long long* bar, unsigned parity) {
  while (!mbarrier_try_wait_parity(bar, parity)) {
  }
}

// Copy `bytes` contiguous bytes global -> shared on the TMA engine; completion
// subtracts `bytes` from bar's transaction count:
// cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes
// [dst], [src], bytes, [bar] (UBLKCP, sm_90+). Both addresses 16-byte aligned,
// bytes a multiple of 16. Announce the bytes first (mbarrier_arrive_expect_tx).
__device__ __forceinline__ void cp_async_bulk_g2s(void* smem_dst, const void* gmem_src, unsigned bytes,
                                                  unsigned long long* bar) {
  asm volatile(
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(
          detail::smem_addr(smem_dst)),
      "l"(detail::gmem_addr(gmem_src)), "r"(bytes), "r"(detail::smem_addr(bar))
      : "memory");
}

#endif  // sm_90

}  // namespace jt
