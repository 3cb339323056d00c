// jtile device header: asynchronous global -> shared copies (LSU, cp.async)
// and the generic/async proxy fence.
//
// cp.async (sm_80+) writes shared memory behind the thread's back: a copy is
// visible only after the group that holds it is waited for, and to other
// threads only after a barrier following the wait.
#pragma once

#include "types.cuh"

namespace jt {

namespace detail {
__device__ __forceinline__ unsigned smem_addr(const void* p) {
  return static_cast<unsigned>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ unsigned long long gmem_addr(const void* p) {
  return static_cast<unsigned long long>(__cvta_generic_to_global(p));
}
}  // namespace detail

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800

// 16 bytes, bypassing L1: cp.async.cg.shared.global [dst], [src], 16 (LDGSTS,
// sm_80+). Both addresses 16-byte aligned.
__device__ __forceinline__ void cp_async_16(void* smem_dst, const void* gmem_src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(detail::smem_addr(smem_dst)),
               "l"(detail::gmem_addr(gmem_src))
               : "memory");
}

// As cp_async_16, but when !valid reads nothing and writes 16 zero bytes:
// cp.async.cg.shared.global [dst], [src], 16, src_size with src_size 0 (sm_80+).
// gmem_src must still be a valid-looking address; out-of-bounds tiles pass the
// tensor base.
__device__ __forceinline__ void cp_async_16_zfill(void* smem_dst, const void* gmem_src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(detail::smem_addr(smem_dst)),
               "l"(detail::gmem_addr(gmem_src)), "r"(valid ? 16u : 0u)
               : "memory");
}

// 8 bytes through L1: cp.async.ca.shared.global [dst], [src], 8 (sm_80+;
// .cg allows only 16).
__device__ __forceinline__ void cp_async_8(void* smem_dst, const void* gmem_src) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8;\n" ::"r"(detail::smem_addr(smem_dst)),
               "l"(detail::gmem_addr(gmem_src))
               : "memory");
}

// 4 bytes through L1: cp.async.ca.shared.global [dst], [src], 4 (sm_80+).
__device__ __forceinline__ void cp_async_4(void* smem_dst, const void* gmem_src) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(detail::smem_addr(smem_dst)),
               "l"(detail::gmem_addr(gmem_src))
               : "memory");
}

// Close the current group of this thread's cp.async: cp.async.commit_group (sm_80+).
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }

// Wait until at most N of this thread's committed groups are pending:
// cp.async.wait_group N (LDGDEPBAR/DEPBAR, sm_80+). N = stages - 1 in a pipeline.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  static_assert(N >= 0, "jt::cp_async_wait<N>: N must be >= 0");
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// Wait for all of this thread's cp.async, committed or not: cp.async.wait_all (sm_80+).
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_all;\n" ::: "memory"); }

#endif  // sm_80

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900

// Order this thread's prior generic-proxy shared-memory accesses (st.shared,
// ld.shared) before later async-proxy ones (TMA, wgmma operands, bulk copies):
// fence.proxy.async.shared::cta (FENCE.VIEW.ASYNC.S, sm_90+).
__device__ __forceinline__ void fence_proxy_async_shared() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

#endif  // sm_90

}  // namespace jt
