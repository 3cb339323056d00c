// jtile device header: atomics in global or shared memory (RED/ATOM units).
// Each returns the value stored at addr before the operation.
#pragma once

#include "bits.cuh"
#include "types.cuh"

namespace jt {

// atom.add / red.add (ATOM.ADD, RED.ADD; f64 sm_60+).
__device__ __forceinline__ float atomic_add(float* addr, float v) { return atomicAdd(addr, v); }
__device__ __forceinline__ double atomic_add(double* addr, double v) { return atomicAdd(addr, v); }
__device__ __forceinline__ int atomic_add(int* addr, int v) { return atomicAdd(addr, v); }
__device__ __forceinline__ unsigned atomic_add(unsigned* addr, unsigned v) { return atomicAdd(addr, v); }
__device__ __forceinline__ unsigned long long atomic_add(unsigned long long* addr, unsigned long long v) {
  return atomicAdd(addr, v);
}

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 700
// atom.add.noftz.f16 (sm_70+).
__device__ __forceinline__ half atomic_add(half* addr, half v) { return atomicAdd(addr, v); }
#endif

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
// atom.add.noftz.bf16 (sm_80+ natively; only defined there).
__device__ __forceinline__ bfloat16 atomic_add(bfloat16* addr, bfloat16 v) { return atomicAdd(addr, v); }
#endif

// atom.max / atom.min .s32 .u32 .s64 .u64 (sm_60+).
__device__ __forceinline__ int atomic_max(int* addr, int v) { return atomicMax(addr, v); }
__device__ __forceinline__ int atomic_min(int* addr, int v) { return atomicMin(addr, v); }
__device__ __forceinline__ unsigned atomic_max(unsigned* addr, unsigned v) { return atomicMax(addr, v); }
__device__ __forceinline__ unsigned atomic_min(unsigned* addr, unsigned v) { return atomicMin(addr, v); }
__device__ __forceinline__ long long atomic_max(long long* addr, long long v) { return atomicMax(addr, v); }
__device__ __forceinline__ long long atomic_min(long long* addr, long long v) { return atomicMin(addr, v); }
__device__ __forceinline__ unsigned long long atomic_max(unsigned long long* addr, unsigned long long v) {
  return atomicMax(addr, v);
}
__device__ __forceinline__ unsigned long long atomic_min(unsigned long long* addr, unsigned long long v) {
  return atomicMin(addr, v);
}

// Float max/min use the integer-ordering trick, one atom and no CAS loop:
// non-negative floats order like their bits as signed ints, negative floats
// order inversely to their bits as unsigned ints. A value with the sign bit
// clear goes through atom.max.s32 (atom.min.s32 for min); one with it set
// (including -0.0) through atom.min.u32 (atom.max.u32). Exact for all
// non-NaN values, -0.0 < +0.0; NaN inputs are not supported.
__device__ __forceinline__ float atomic_max(float* addr, float v) {
  if (!(__float_as_uint(v) >> 31)) {
    return __int_as_float(atomicMax(reinterpret_cast<int*>(addr), __float_as_int(v)));
  }
  return __uint_as_float(atomicMin(reinterpret_cast<unsigned*>(addr), __float_as_uint(v)));
}

__device__ __forceinline__ float atomic_min(float* addr, float v) {
  if (!(__float_as_uint(v) >> 31)) {
    return __int_as_float(atomicMin(reinterpret_cast<int*>(addr), __float_as_int(v)));
  }
  return __uint_as_float(atomicMax(reinterpret_cast<unsigned*>(addr), __float_as_uint(v)));
}

// The same trick on 64 bits: atom.max/min .s64 and .u64.
__device__ __forceinline__ double atomic_max(double* addr, double v) {
  if (!(bitcast<unsigned long long>(v) >> 63)) {
    return bitcast<double>(atomicMax(reinterpret_cast<long long*>(addr), bitcast<long long>(v)));
  }
  return bitcast<double>(
      atomicMin(reinterpret_cast<unsigned long long*>(addr), bitcast<unsigned long long>(v)));
}

__device__ __forceinline__ double atomic_min(double* addr, double v) {
  if (!(bitcast<unsigned long long>(v) >> 63)) {
    return bitcast<double>(atomicMin(reinterpret_cast<long long*>(addr), bitcast<long long>(v)));
  }
  return bitcast<double>(
      atomicMax(reinterpret_cast<unsigned long long*>(addr), bitcast<unsigned long long>(v)));
}

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 700
// half and bfloat16 max/min: a compare-and-swap loop on the 16-bit word (atom.cas.b16,
// sm_70+). It stops as soon as the stored value already wins, so an uncontended call that
// changes nothing costs one load.
template <bool kMax, typename T>
__device__ __forceinline__ T atomic_minmax_16(T* addr, T v) {
  unsigned short* word = reinterpret_cast<unsigned short*>(addr);
  const float want = cast<float>(v);
  unsigned short old = *word;
  while (true) {
    const float held = cast<float>(bitcast<T>(old));
    if (kMax ? !(want > held) : !(want < held)) break;
    const unsigned short seen = atomicCAS(word, old, bitcast<unsigned short>(v));
    if (seen == old) break;
    old = seen;
  }
  return bitcast<T>(old);
}

__device__ __forceinline__ half atomic_max(half* addr, half v) { return atomic_minmax_16<true>(addr, v); }
__device__ __forceinline__ half atomic_min(half* addr, half v) { return atomic_minmax_16<false>(addr, v); }
__device__ __forceinline__ bfloat16 atomic_max(bfloat16* addr, bfloat16 v) {
  return atomic_minmax_16<true>(addr, v);
}
__device__ __forceinline__ bfloat16 atomic_min(bfloat16* addr, bfloat16 v) {
  return atomic_minmax_16<false>(addr, v);
}
#endif

}  // namespace jt
