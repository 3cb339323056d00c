// jtile device header: the one file generated kernels include.
//
// Grouped by hardware unit, each function names the PTX it becomes and its
// minimum arch; functions an arch lacks are not declared there, so calling one
// is a compile error. NVRTC-safe: needs only cuda_fp16.h, cuda_bf16.h and
// cuda_fp8.h on the include path. Everything lives in namespace jt.
#pragma once

#include "types.cuh"     // element types, vec, cast, limits, packing
#include "math.cuh"      // elementwise math
#include "warp.cuh"      // lane/warp ids, shuffles, named barriers
#include "atomic.cuh"    // atomics
#include "copy.cuh"      // cp.async, proxy fence            (sm_80+, sm_90+)
#include "mma.cuh"       // ldmatrix, stmatrix, mma.sync      (sm_75+, sm_80+)
#include "mbarrier.cuh"  // mbarrier, bulk copy               (sm_90+)
#include "hopper.cuh"   // TMA tensor copies, wgmma, setmaxnreg (sm_90+, sm_90a)
#include "tmem.cuh"      // tensor memory alloc/dealloc        (sm_100a)
