// jtile device header: reading a value's bits as another type of the same width.
// NVRTC-safe (no headers beyond types.cuh).
#pragma once

#include "types.cuh"

namespace jt {

// T.reinterpret: the bits of x as To. A register move (no instruction, or one MOV)
// on any arch; memcpy is the type pun C++ defines (NVRTC and nvcc know it
// without headers, and it compiles to no copy).
template <typename To, typename From>
__device__ __forceinline__ To bitcast(From x) {
  static_assert(sizeof(To) == sizeof(From), "jt::bitcast: the two types differ in size");
  To out;
  memcpy(&out, &x, sizeof(To));
  return out;
}

}  // namespace jt
