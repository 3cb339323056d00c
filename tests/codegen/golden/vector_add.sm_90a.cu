// jtile kernel add from quickstart.py:21
// target sm_90a, jtile <version>
#include "jtile/device.cuh"

extern "C" __global__ void __launch_bounds__(256) add(const float* __restrict__ X, const float* __restrict__ Y, float* __restrict__ O) {
  extern __shared__ __align__(1024) unsigned char jt_smem[];
  const int tx = threadIdx.x;
  const int bx = blockIdx.x;
  // quickstart.py:25
  {
    #pragma unroll
    for (int jt_u2 = 0; jt_u2 < 1; ++jt_u2) {
      const int jt_e1 = jt_u2 * 256 + tx;
      const int i = jt_e1 % 256;
      // quickstart.py:26
      if ((((bx * 256) + i) < 100000)) {
        if ((unsigned)(((bx * 256) + i)) < 100000u) O[(((bx * 256) + i))] = ((((unsigned)(((bx * 256) + i)) < 100000u) ? X[(((bx * 256) + i))] : 0.0f) + (((unsigned)(((bx * 256) + i)) < 100000u) ? Y[(((bx * 256) + i))] : 0.0f));
      }
    }
  }
}
