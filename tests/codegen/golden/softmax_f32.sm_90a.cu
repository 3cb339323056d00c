// jtile kernel softmax from softmax.py:21
// target sm_90a, jtile <version>
#include "jtile/device.cuh"

extern "C" __global__ void __launch_bounds__(256) softmax(const float* __restrict__ X, float* __restrict__ O) {
  extern __shared__ __align__(1024) unsigned char jt_smem[];
  const int tx = threadIdx.x;
  const int bx = blockIdx.x;
  float x_frag[4];
  float row_max_frag[1];
  float row_sum_frag[1];
  // softmax.py:28
  {
    #pragma unroll
    for (int jt_r1 = 0; jt_r1 < 4; jt_r1 += 4) {
      jt::vec<float, 4> jt_v2;
      jt_v2 = *reinterpret_cast<const jt::vec<float, 4>*>(&X[(((bx * 1))) * 1024 + (((((tx & 255) << 2)) | ((jt_r1 & 3))))]);
      #pragma unroll
      for (int u = 0; u < 4; ++u) x_frag[jt_r1 + u] = jt::cast<float>(jt_v2.v[u]);
    }
  }
  // softmax.py:29
  {
    float acc[1];
    acc[0] = jt::max(jt::max(jt::cast<float>(x_frag[0]), jt::cast<float>(x_frag[1])), jt::max(jt::cast<float>(x_frag[2]), jt::cast<float>(x_frag[3])));
    #pragma unroll
    for (int q = 0; q < 1; ++q) acc[q] = jt::max(acc[q], jt::shfl_xor(acc[q], 1));
    #pragma unroll
    for (int q = 0; q < 1; ++q) acc[q] = jt::max(acc[q], jt::shfl_xor(acc[q], 2));
    #pragma unroll
    for (int q = 0; q < 1; ++q) acc[q] = jt::max(acc[q], jt::shfl_xor(acc[q], 4));
    #pragma unroll
    for (int q = 0; q < 1; ++q) acc[q] = jt::max(acc[q], jt::shfl_xor(acc[q], 8));
    #pragma unroll
    for (int q = 0; q < 1; ++q) acc[q] = jt::max(acc[q], jt::shfl_xor(acc[q], 16));
    __syncthreads();
    if ((tx & 31) == 0) {
      for (int q = 0; q < 1; ++q) reinterpret_cast<float*>(jt_smem + 0)[(tx >> 5) + q] = acc[q];
    }
    __syncthreads();
    #pragma unroll
    for (int q = 0; q < 1; ++q) {
      float total = -jt::infinity<float>();
      #pragma unroll
      for (int w = 0; w < 8; ++w) {
        const int peer = (tx & ~255) | (((w >> 0) & 1) << 5) | (((w >> 1) & 1) << 6) | (((w >> 2) & 1) << 7);
        total = jt::max(total, reinterpret_cast<float*>(jt_smem + 0)[(peer >> 5) + q]);
      }
      acc[q] = total;
    }
    __syncthreads();
    row_max_frag[0] = jt::cast<float>(acc[0]);
  }
  // softmax.py:30
  {
    #pragma unroll
    for (int jt_r3 = 0; jt_r3 < 4; ++jt_r3) {
      const int i = (0); (void)i;
      const int j = ((((tx & 255) << 2)) | ((jt_r3 & 3))); (void)j;
      x_frag[(jt_r3 & 1) | (((jt_r3 >> 1) & 1) << 1)] = jt::exp2(((x_frag[(jt_r3 & 1) | (((jt_r3 >> 1) & 1) << 1)] - row_max_frag[0]) * 1.4426950408889634f));
    }
  }
  // softmax.py:32
  {
    float acc[1];
    acc[0] = ((jt::cast<float>(x_frag[0]) + jt::cast<float>(x_frag[1])) + (jt::cast<float>(x_frag[2]) + jt::cast<float>(x_frag[3])));
    #pragma unroll
    for (int q = 0; q < 1; ++q) acc[q] = acc[q] + jt::shfl_xor(acc[q], 1);
    #pragma unroll
    for (int q = 0; q < 1; ++q) acc[q] = acc[q] + jt::shfl_xor(acc[q], 2);
    #pragma unroll
    for (int q = 0; q < 1; ++q) acc[q] = acc[q] + jt::shfl_xor(acc[q], 4);
    #pragma unroll
    for (int q = 0; q < 1; ++q) acc[q] = acc[q] + jt::shfl_xor(acc[q], 8);
    #pragma unroll
    for (int q = 0; q < 1; ++q) acc[q] = acc[q] + jt::shfl_xor(acc[q], 16);
    __syncthreads();
    if ((tx & 31) == 0) {
      for (int q = 0; q < 1; ++q) reinterpret_cast<float*>(jt_smem + 0)[(tx >> 5) + q] = acc[q];
    }
    __syncthreads();
    #pragma unroll
    for (int q = 0; q < 1; ++q) {
      float total = 0.0f;
      #pragma unroll
      for (int w = 0; w < 8; ++w) {
        const int peer = (tx & ~255) | (((w >> 0) & 1) << 5) | (((w >> 1) & 1) << 6) | (((w >> 2) & 1) << 7);
        total = total + reinterpret_cast<float*>(jt_smem + 0)[(peer >> 5) + q];
      }
      acc[q] = total;
    }
    __syncthreads();
    row_sum_frag[0] = jt::cast<float>(acc[0]);
  }
  // softmax.py:33
  {
    #pragma unroll
    for (int jt_r4 = 0; jt_r4 < 4; ++jt_r4) {
      const int i_1 = (0); (void)i_1;
      const int j_1 = ((((tx & 255) << 2)) | ((jt_r4 & 3))); (void)j_1;
      x_frag[(jt_r4 & 1) | (((jt_r4 >> 1) & 1) << 1)] = (x_frag[(jt_r4 & 1) | (((jt_r4 >> 1) & 1) << 1)] / row_sum_frag[0]);
    }
  }
  // softmax.py:35
  {
    #pragma unroll
    for (int jt_r5 = 0; jt_r5 < 4; jt_r5 += 4) {
      jt::vec<float, 4> jt_v6;
      #pragma unroll
      for (int u = 0; u < 4; ++u) jt_v6.v[u] = jt::cast<float>(x_frag[jt_r5 + u]);
      *reinterpret_cast<jt::vec<float, 4>*>(&O[(((bx * 1))) * 1024 + (((((tx & 255) << 2)) | ((jt_r5 & 3))))]) = jt_v6;
    }
  }
}
