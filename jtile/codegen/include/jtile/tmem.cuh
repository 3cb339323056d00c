// Blackwell tensor memory (TMEM) management: tcgen05.alloc / dealloc (sm_100a and later,
// arch-specific targets only). TMEM is 128 lanes x 512 columns of 32-bit cells per SM;
// allocations are whole columns, a power of 2 from 32 to 512, made and freed by one warp.
#pragma once

namespace jt {

#if defined(__CUDA_ARCH_FEAT_SM100_ALL) || defined(__CUDA_ARCH_FEAT_SM103_ALL) || \
    defined(__CUDA_ARCH_FEAT_SM110_ALL)
// tcgen05.alloc.cta_group::1.sync.aligned.shared::cta.b32: writes the TMEM address to *slot.
// Executed by all 32 lanes of one warp.
__device__ __forceinline__ void tmem_alloc(unsigned* slot, unsigned columns) {
  unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(slot));
  asm volatile("tcgen05.alloc.cta_group::1.sync.aligned.shared::cta.b32 [%0], %1;"
               :: "r"(addr), "r"(columns) : "memory");
}

// tcgen05.relinquish_alloc_permit: this CTA allocates no more TMEM, so others may.
__device__ __forceinline__ void tmem_relinquish_alloc_permit() {
  asm volatile("tcgen05.relinquish_alloc_permit.cta_group::1.sync.aligned;" ::: "memory");
}

// tcgen05.dealloc.cta_group::1.sync.aligned.b32: frees what tmem_alloc returned.
__device__ __forceinline__ void tmem_dealloc(unsigned taddr, unsigned columns) {
  asm volatile("tcgen05.dealloc.cta_group::1.sync.aligned.b32 %0, %1;"
               :: "r"(taddr), "r"(columns) : "memory");
}
#endif

}  // namespace jt
