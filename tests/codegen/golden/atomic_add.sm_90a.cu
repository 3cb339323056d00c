// jtile kernel atomic_colsum from cases.py:81
// target sm_90a, jtile <version>
#include "jtile/device.cuh"

extern "C" __global__ void __launch_bounds__(128) atomic_colsum(const float* __restrict__ X, const float* __restrict__ Total, float* __restrict__ Out) {
  extern __shared__ __align__(1024) unsigned char jt_smem[];
  const int tx = threadIdx.x;
  const int bx = blockIdx.x;
  float x_frag[4];
  float col_frag[4];
  // cases.py:88
  {
    #pragma unroll
    for (int jt_r1 = 0; jt_r1 < 4; jt_r1 += 4) {
      jt::vec<float, 4> jt_v2;
      if ((unsigned)((bx * 8) + (((tx >> 4) & 7))) < 100u && (unsigned)(((((tx & 15) << 2)) | ((jt_r1 & 3)))) < 64u) {
        jt_v2 = *reinterpret_cast<const jt::vec<float, 4>*>(&X[(((bx * 8) + (((tx >> 4) & 7)))) * 64 + (((((tx & 15) << 2)) | ((jt_r1 & 3))))]);
      }
      else {
        #pragma unroll
        for (int u = 0; u < 4; ++u) jt_v2.v[u] = 0.0f;
      }
      #pragma unroll
      for (int u = 0; u < 4; ++u) x_frag[jt_r1 + u] = jt::cast<float>(jt_v2.v[u]);
    }
  }
  // cases.py:89
  {
    float acc[4];
    acc[0] = jt::cast<float>(x_frag[0]);
    acc[1] = jt::cast<float>(x_frag[1]);
    acc[2] = jt::cast<float>(x_frag[2]);
    acc[3] = jt::cast<float>(x_frag[3]);
    #pragma unroll
    for (int q = 0; q < 4; ++q) acc[q] = acc[q] + jt::shfl_xor(acc[q], 16);
    __syncthreads();
    if ((tx & 16) == 0) {
      for (int q = 0; q < 4; ++q) reinterpret_cast<float*>(jt_smem + 0)[((((tx >> 5) << 4) | ((tx >> 0) & 1) | ((tx >> 1) & 1) << 1 | ((tx >> 2) & 1) << 2 | ((tx >> 3) & 1) << 3)) * 4 + q] = acc[q];
    }
    __syncthreads();
    #pragma unroll
    for (int q = 0; q < 4; ++q) {
      float total = 0.0f;
      #pragma unroll
      for (int w = 0; w < 4; ++w) {
        const int peer = (tx & ~112) | (((w >> 0) & 1) << 5) | (((w >> 1) & 1) << 6);
        total = total + reinterpret_cast<float*>(jt_smem + 0)[((((peer >> 5) << 4) | ((peer >> 0) & 1) | ((peer >> 1) & 1) << 1 | ((peer >> 2) & 1) << 2 | ((peer >> 3) & 1) << 3)) * 4 + q];
      }
      acc[q] = total;
    }
    __syncthreads();
    col_frag[0] = jt::cast<float>(acc[0]);
    col_frag[1] = jt::cast<float>(acc[1]);
    col_frag[2] = jt::cast<float>(acc[2]);
    col_frag[3] = jt::cast<float>(acc[3]);
  }
  // cases.py:90
  #pragma unroll
  for (int jt_r3 = 0; jt_r3 < 4; ++jt_r3) {
    if ((tx & 112) == 0) jt::atomic_add(&Out[((1)) * 64 + (((((tx & 15) << 2)) | ((jt_r3 & 3))))], jt::cast<float>(col_frag[jt_r3]));
  }
  // cases.py:91
  {
    #pragma unroll
    for (int jt_u5 = 0; jt_u5 < 1; ++jt_u5) {
      const int jt_e4 = jt_u5 * 128 + tx;
      if (jt_e4 < 8) {
        const int i = jt_e4 % 8;
        // cases.py:92
        if ((((bx * 8) + i) < 100)) {
          // cases.py:93
          jt::atomic_add(&Out[((0)) * 64 + (0)], (((unsigned)(((bx * 8) + i)) < 100u) ? X[((((bx * 8) + i))) * 64 + (0)] : 0.0f));
        }
      }
    }
  }
}
