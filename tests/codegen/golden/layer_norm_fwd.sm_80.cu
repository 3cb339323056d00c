// jtile kernel ln_fwd from layer_norm.py:22
// target sm_80, jtile <version>
#include "jtile/device.cuh"

extern "C" __global__ void __launch_bounds__(256) ln_fwd(const float* __restrict__ X, const float* __restrict__ W, const float* __restrict__ B, float* __restrict__ Y, float* __restrict__ Mean, float* __restrict__ Rstd) {
  extern __shared__ __align__(1024) unsigned char jt_smem[];
  const int tx = threadIdx.x;
  const int bx = blockIdx.x;
  float x_frag[4];
  float sq_frag[4];
  float mean_frag[1];
  float rstd_frag[1];
  // layer_norm.py:32
  {
    #pragma unroll
    for (int jt_r1 = 0; jt_r1 < 4; jt_r1 += 4) {
      jt::vec<float, 4> jt_v2;
      jt_v2 = *reinterpret_cast<const jt::vec<float, 4>*>(&X[(((bx * 1))) * 1024 + (((((tx & 255) << 2)) | ((jt_r1 & 3))))]);
      #pragma unroll
      for (int u = 0; u < 4; ++u) x_frag[jt_r1 + u] = jt::cast<float>(jt_v2.v[u]);
    }
  }
  // layer_norm.py:33
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
    mean_frag[0] = jt::cast<float>(acc[0]);
  }
  // layer_norm.py:34
  {
    #pragma unroll
    for (int jt_r3 = 0; jt_r3 < 1; ++jt_r3) {
      const int i = (0); (void)i;
      mean_frag[0] = (mean_frag[0] / 1024.0f);
    }
  }
  // layer_norm.py:36
  {
    #pragma unroll
    for (int jt_r4 = 0; jt_r4 < 4; ++jt_r4) {
      const int i_1 = (0); (void)i_1;
      const int j = ((((tx & 255) << 2)) | ((jt_r4 & 3))); (void)j;
      x_frag[(jt_r4 & 1) | (((jt_r4 >> 1) & 1) << 1)] = (x_frag[(jt_r4 & 1) | (((jt_r4 >> 1) & 1) << 1)] - mean_frag[0]);
      sq_frag[(jt_r4 & 1) | (((jt_r4 >> 1) & 1) << 1)] = (x_frag[(jt_r4 & 1) | (((jt_r4 >> 1) & 1) << 1)] * x_frag[(jt_r4 & 1) | (((jt_r4 >> 1) & 1) << 1)]);
    }
  }
  // layer_norm.py:39
  {
    float acc[1];
    acc[0] = ((jt::cast<float>(sq_frag[0]) + jt::cast<float>(sq_frag[1])) + (jt::cast<float>(sq_frag[2]) + jt::cast<float>(sq_frag[3])));
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
    rstd_frag[0] = jt::cast<float>(acc[0]);
  }
  // layer_norm.py:40
  {
    #pragma unroll
    for (int jt_r5 = 0; jt_r5 < 1; ++jt_r5) {
      const int i_2 = (0); (void)i_2;
      rstd_frag[0] = jt::rsqrt(((rstd_frag[0] / 1024.0f) + 1e-05f));
    }
  }
  // layer_norm.py:42
  {
    #pragma unroll
    for (int jt_r6 = 0; jt_r6 < 4; ++jt_r6) {
      const int i_3 = (0); (void)i_3;
      const int j_1 = ((((tx & 255) << 2)) | ((jt_r6 & 3))); (void)j_1;
      x_frag[(jt_r6 & 1) | (((jt_r6 >> 1) & 1) << 1)] = (((x_frag[(jt_r6 & 1) | (((jt_r6 >> 1) & 1) << 1)] * rstd_frag[0]) * W[(j_1)]) + B[(j_1)]);
    }
  }
  // layer_norm.py:44
  {
    #pragma unroll
    for (int jt_r7 = 0; jt_r7 < 4; jt_r7 += 4) {
      jt::vec<float, 4> jt_v8;
      #pragma unroll
      for (int u = 0; u < 4; ++u) jt_v8.v[u] = jt::cast<float>(x_frag[jt_r7 + u]);
      *reinterpret_cast<jt::vec<float, 4>*>(&Y[(((bx * 1))) * 1024 + (((((tx & 255) << 2)) | ((jt_r7 & 3))))]) = jt_v8;
    }
  }
  // layer_norm.py:45
  {
    #pragma unroll
    for (int jt_r9 = 0; jt_r9 < 1; ++jt_r9) {
      const int i_4 = (0); (void)i_4;
      // layer_norm.py:46
      if ((((bx * 1) + i_4) < 64)) {
        if ((tx & 255) == 0) {
          Mean[(((bx * 1) + i_4))] = mean_frag[0];
        }
        if ((tx & 255) == 0) {
          Rstd[(((bx * 1) + i_4))] = rstd_frag[0];
        }
      }
    }
  }
}
