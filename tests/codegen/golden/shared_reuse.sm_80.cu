// jtile kernel shared_reuse from cases.py:136
// target sm_80, jtile <version>
#include "jtile/device.cuh"

extern "C" __global__ void __launch_bounds__(128) shared_reuse(const float* __restrict__ X, float* __restrict__ O) {
  extern __shared__ __align__(1024) unsigned char jt_smem[];
  const int tx = threadIdx.x;
  const int bx = blockIdx.x;
  float* first_smem = reinterpret_cast<float*>(jt_smem + 0);
  float* second_smem = reinterpret_cast<float*>(jt_smem + 0);
  float acc_frag[64];
  // cases.py:144
  {
    #pragma unroll
    for (int jt_u2 = 0; jt_u2 < 16; ++jt_u2) {
      const int jt_c1 = jt_u2 * 128 + tx;
      jt::cp_async_16(&first_smem[((((jt_c1 * 4) / 128) % 64)) * 128 + ((jt_c1 * 4) % 128)], &X[(((bx * 64) + ((jt_c1 * 4) / 128) % 64)) * 128 + ((jt_c1 * 4) % 128)]);
    }
  }
  jt::cp_async_wait_all();
  __syncthreads();
  // cases.py:145
  {
    #pragma unroll
    for (int jt_r3 = 0; jt_r3 < 64; ++jt_r3) {
      const int i = ((((tx >> 5) & 3)) | ((((jt_r3 >> 2) & 15) << 2))); (void)i;
      const int j = ((((tx & 31) << 2)) | ((jt_r3 & 3))); (void)j;
      acc_frag[(jt_r3 & 1) | (((jt_r3 >> 1) & 1) << 1) | (((jt_r3 >> 2) & 1) << 2) | (((jt_r3 >> 3) & 1) << 3) | (((jt_r3 >> 4) & 1) << 4) | (((jt_r3 >> 5) & 1) << 5)] = (first_smem[(((63 - i))) * 128 + ((127 - j))] * 2.0f);
    }
  }
  __syncthreads();
  // cases.py:147
  {
    #pragma unroll
    for (int jt_r4 = 0; jt_r4 < 64; ++jt_r4) {
      const int i_1 = ((((tx >> 5) & 3)) | ((((jt_r4 >> 2) & 15) << 2))); (void)i_1;
      const int j_1 = ((((tx & 31) << 2)) | ((jt_r4 & 3))); (void)j_1;
      second_smem[((i_1)) * 128 + (j_1)] = (acc_frag[(jt_r4 & 1) | (((jt_r4 >> 1) & 1) << 1) | (((jt_r4 >> 2) & 1) << 2) | (((jt_r4 >> 3) & 1) << 3) | (((jt_r4 >> 4) & 1) << 4) | (((jt_r4 >> 5) & 1) << 5)] + 1.0f);
    }
  }
  __syncthreads();
  // cases.py:149
  {
    #pragma unroll
    for (int jt_u6 = 0; jt_u6 < 16; ++jt_u6) {
      const int jt_c5 = jt_u6 * 128 + tx;
      jt::vec<float, 4> jt_v7;
      jt_v7 = *reinterpret_cast<const jt::vec<float, 4>*>(&second_smem[((((jt_c5 * 4) / 128) % 64)) * 128 + ((jt_c5 * 4) % 128)]);
      jt::vec<float, 4> jt_v8;
      for (int u = 0; u < 4; ++u) jt_v8.v[u] = jt::cast<float>(jt_v7.v[u]);
      *reinterpret_cast<jt::vec<float, 4>*>(&O[(((bx * 64) + ((jt_c5 * 4) / 128) % 64)) * 128 + ((jt_c5 * 4) % 128)]) = jt_v8;
    }
  }
}
