// jtile kernel softmax from softmax.py:21
// target sm_80, jtile <version>
#include "jtile/device.cuh"

extern "C" __global__ void __launch_bounds__(128) softmax(const jt::bfloat16* __restrict__ X, jt::bfloat16* __restrict__ O) {
  extern __shared__ __align__(1024) unsigned char jt_smem[];
  const int tx = threadIdx.x;
  const int bx = blockIdx.x;
  float x_frag[16];
  float row_max_frag[4];
  float row_sum_frag[4];
  // softmax.py:28
  {
    #pragma unroll
    for (int jt_r1 = 0; jt_r1 < 16; jt_r1 += 4) {
      jt::vec<jt::bfloat16, 4> jt_v2;
      if ((unsigned)((bx * 4) + (((jt_r1 >> 2) & 3))) < 130u && (unsigned)(((((tx & 127) << 2)) | ((jt_r1 & 3)))) < 512u) {
        jt_v2 = *reinterpret_cast<const jt::vec<jt::bfloat16, 4>*>(&X[(((bx * 4) + (((jt_r1 >> 2) & 3)))) * 512 + (((((tx & 127) << 2)) | ((jt_r1 & 3))))]);
      }
      else {
        #pragma unroll
        for (int u = 0; u < 4; ++u) jt_v2.v[u] = jt::cast<jt::bfloat16>(0.0f);
      }
      #pragma unroll
      for (int u = 0; u < 4; ++u) x_frag[jt_r1 + u] = jt::cast<float>(jt_v2.v[u]);
    }
  }
  // softmax.py:29
  {
    float acc[4];
    acc[0] = jt::max(jt::max(jt::cast<float>(x_frag[0]), jt::cast<float>(x_frag[1])), jt::max(jt::cast<float>(x_frag[2]), jt::cast<float>(x_frag[3])));
    acc[1] = jt::max(jt::max(jt::cast<float>(x_frag[4]), jt::cast<float>(x_frag[5])), jt::max(jt::cast<float>(x_frag[6]), jt::cast<float>(x_frag[7])));
    acc[2] = jt::max(jt::max(jt::cast<float>(x_frag[8]), jt::cast<float>(x_frag[9])), jt::max(jt::cast<float>(x_frag[10]), jt::cast<float>(x_frag[11])));
    acc[3] = jt::max(jt::max(jt::cast<float>(x_frag[12]), jt::cast<float>(x_frag[13])), jt::max(jt::cast<float>(x_frag[14]), jt::cast<float>(x_frag[15])));
    #pragma unroll
    for (int q = 0; q < 4; ++q) acc[q] = jt::max(acc[q], jt::shfl_xor(acc[q], 1));
    #pragma unroll
    for (int q = 0; q < 4; ++q) acc[q] = jt::max(acc[q], jt::shfl_xor(acc[q], 2));
    #pragma unroll
    for (int q = 0; q < 4; ++q) acc[q] = jt::max(acc[q], jt::shfl_xor(acc[q], 4));
    #pragma unroll
    for (int q = 0; q < 4; ++q) acc[q] = jt::max(acc[q], jt::shfl_xor(acc[q], 8));
    #pragma unroll
    for (int q = 0; q < 4; ++q) acc[q] = jt::max(acc[q], jt::shfl_xor(acc[q], 16));
    __syncthreads();
    if ((tx & 31) == 0) {
      for (int q = 0; q < 4; ++q) reinterpret_cast<float*>(jt_smem + 0)[((tx >> 5)) * 4 + q] = acc[q];
    }
    __syncthreads();
    #pragma unroll
    for (int q = 0; q < 4; ++q) {
      float total = -jt::infinity<float>();
      #pragma unroll
      for (int w = 0; w < 4; ++w) {
        const int peer = (tx & ~127) | (((w >> 0) & 1) << 5) | (((w >> 1) & 1) << 6);
        total = jt::max(total, reinterpret_cast<float*>(jt_smem + 0)[((peer >> 5)) * 4 + q]);
      }
      acc[q] = total;
    }
    __syncthreads();
    row_max_frag[0] = jt::cast<float>(acc[0]);
    row_max_frag[1] = jt::cast<float>(acc[1]);
    row_max_frag[2] = jt::cast<float>(acc[2]);
    row_max_frag[3] = jt::cast<float>(acc[3]);
  }
  // softmax.py:30
  {
    #pragma unroll
    for (int jt_r3 = 0; jt_r3 < 16; ++jt_r3) {
      const int i = (((jt_r3 >> 2) & 3)); (void)i;
      const int j = ((((tx & 127) << 2)) | ((jt_r3 & 3))); (void)j;
      x_frag[(jt_r3 & 1) | (((jt_r3 >> 1) & 1) << 1) | (((jt_r3 >> 2) & 1) << 2) | (((jt_r3 >> 3) & 1) << 3)] = jt::exp2(((x_frag[(jt_r3 & 1) | (((jt_r3 >> 1) & 1) << 1) | (((jt_r3 >> 2) & 1) << 2) | (((jt_r3 >> 3) & 1) << 3)] - row_max_frag[((jt_r3 >> 2) & 1) | (((jt_r3 >> 3) & 1) << 1)]) * 1.4426950408889634f));
    }
  }
  // softmax.py:32
  {
    float acc[4];
    acc[0] = ((jt::cast<float>(x_frag[0]) + jt::cast<float>(x_frag[1])) + (jt::cast<float>(x_frag[2]) + jt::cast<float>(x_frag[3])));
    acc[1] = ((jt::cast<float>(x_frag[4]) + jt::cast<float>(x_frag[5])) + (jt::cast<float>(x_frag[6]) + jt::cast<float>(x_frag[7])));
    acc[2] = ((jt::cast<float>(x_frag[8]) + jt::cast<float>(x_frag[9])) + (jt::cast<float>(x_frag[10]) + jt::cast<float>(x_frag[11])));
    acc[3] = ((jt::cast<float>(x_frag[12]) + jt::cast<float>(x_frag[13])) + (jt::cast<float>(x_frag[14]) + jt::cast<float>(x_frag[15])));
    #pragma unroll
    for (int q = 0; q < 4; ++q) acc[q] = acc[q] + jt::shfl_xor(acc[q], 1);
    #pragma unroll
    for (int q = 0; q < 4; ++q) acc[q] = acc[q] + jt::shfl_xor(acc[q], 2);
    #pragma unroll
    for (int q = 0; q < 4; ++q) acc[q] = acc[q] + jt::shfl_xor(acc[q], 4);
    #pragma unroll
    for (int q = 0; q < 4; ++q) acc[q] = acc[q] + jt::shfl_xor(acc[q], 8);
    #pragma unroll
    for (int q = 0; q < 4; ++q) acc[q] = acc[q] + jt::shfl_xor(acc[q], 16);
    __syncthreads();
    if ((tx & 31) == 0) {
      for (int q = 0; q < 4; ++q) reinterpret_cast<float*>(jt_smem + 0)[((tx >> 5)) * 4 + q] = acc[q];
    }
    __syncthreads();
    #pragma unroll
    for (int q = 0; q < 4; ++q) {
      float total = 0.0f;
      #pragma unroll
      for (int w = 0; w < 4; ++w) {
        const int peer = (tx & ~127) | (((w >> 0) & 1) << 5) | (((w >> 1) & 1) << 6);
        total = total + reinterpret_cast<float*>(jt_smem + 0)[((peer >> 5)) * 4 + q];
      }
      acc[q] = total;
    }
    __syncthreads();
    row_sum_frag[0] = jt::cast<float>(acc[0]);
    row_sum_frag[1] = jt::cast<float>(acc[1]);
    row_sum_frag[2] = jt::cast<float>(acc[2]);
    row_sum_frag[3] = jt::cast<float>(acc[3]);
  }
  // softmax.py:33
  {
    #pragma unroll
    for (int jt_r4 = 0; jt_r4 < 16; ++jt_r4) {
      const int i_1 = (((jt_r4 >> 2) & 3)); (void)i_1;
      const int j_1 = ((((tx & 127) << 2)) | ((jt_r4 & 3))); (void)j_1;
      x_frag[(jt_r4 & 1) | (((jt_r4 >> 1) & 1) << 1) | (((jt_r4 >> 2) & 1) << 2) | (((jt_r4 >> 3) & 1) << 3)] = (x_frag[(jt_r4 & 1) | (((jt_r4 >> 1) & 1) << 1) | (((jt_r4 >> 2) & 1) << 2) | (((jt_r4 >> 3) & 1) << 3)] / row_sum_frag[((jt_r4 >> 2) & 1) | (((jt_r4 >> 3) & 1) << 1)]);
    }
  }
  // softmax.py:35
  {
    #pragma unroll
    for (int jt_r5 = 0; jt_r5 < 16; jt_r5 += 4) {
      jt::vec<jt::bfloat16, 4> jt_v6;
      #pragma unroll
      for (int u = 0; u < 4; ++u) jt_v6.v[u] = jt::cast<jt::bfloat16>(x_frag[jt_r5 + u]);
      if ((unsigned)((bx * 4) + (((jt_r5 >> 2) & 3))) < 130u && (unsigned)(((((tx & 127) << 2)) | ((jt_r5 & 3)))) < 512u) {
        *reinterpret_cast<jt::vec<jt::bfloat16, 4>*>(&O[(((bx * 4) + (((jt_r5 >> 2) & 3)))) * 512 + (((((tx & 127) << 2)) | ((jt_r5 & 3))))]) = jt_v6;
      }
    }
  }
}
