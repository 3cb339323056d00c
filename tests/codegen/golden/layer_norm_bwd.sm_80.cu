// jtile kernel ln_bwd from layer_norm.py:52
// target sm_80, jtile <version>
#include "jtile/device.cuh"

extern "C" __global__ void __launch_bounds__(128) ln_bwd(const float* __restrict__ X, const float* __restrict__ W, const float* __restrict__ DY, const float* __restrict__ Mean, const float* __restrict__ Rstd, float* __restrict__ DX, float* __restrict__ DW, float* __restrict__ DB) {
  extern __shared__ __align__(1024) unsigned char jt_smem[];
  const int tx = threadIdx.x;
  const int bx = blockIdx.x;
  float xhat_frag[8];
  float dy_frag[8];
  float wdy_frag[8];
  float prod_frag[8];
  float c1_frag[2];
  float c2_frag[2];
  float col_frag[4];
  // layer_norm.py:66
  {
    #pragma unroll
    for (int jt_r1 = 0; jt_r1 < 8; jt_r1 += 4) {
      jt::vec<float, 4> jt_v2;
      if ((unsigned)((bx * 2) + (((jt_r1 >> 2) & 1))) < 63u && (unsigned)(((((tx & 127) << 2)) | ((jt_r1 & 3)))) < 512u) {
        jt_v2 = *reinterpret_cast<const jt::vec<float, 4>*>(&X[(((bx * 2) + (((jt_r1 >> 2) & 1)))) * 512 + (((((tx & 127) << 2)) | ((jt_r1 & 3))))]);
      }
      else {
        #pragma unroll
        for (int u = 0; u < 4; ++u) jt_v2.v[u] = 0.0f;
      }
      #pragma unroll
      for (int u = 0; u < 4; ++u) xhat_frag[jt_r1 + u] = jt::cast<float>(jt_v2.v[u]);
    }
  }
  // layer_norm.py:67
  {
    #pragma unroll
    for (int jt_r3 = 0; jt_r3 < 8; jt_r3 += 4) {
      jt::vec<float, 4> jt_v4;
      if ((unsigned)((bx * 2) + (((jt_r3 >> 2) & 1))) < 63u && (unsigned)(((((tx & 127) << 2)) | ((jt_r3 & 3)))) < 512u) {
        jt_v4 = *reinterpret_cast<const jt::vec<float, 4>*>(&DY[(((bx * 2) + (((jt_r3 >> 2) & 1)))) * 512 + (((((tx & 127) << 2)) | ((jt_r3 & 3))))]);
      }
      else {
        #pragma unroll
        for (int u = 0; u < 4; ++u) jt_v4.v[u] = 0.0f;
      }
      #pragma unroll
      for (int u = 0; u < 4; ++u) dy_frag[jt_r3 + u] = jt::cast<float>(jt_v4.v[u]);
    }
  }
  // layer_norm.py:68
  {
    #pragma unroll
    for (int jt_r5 = 0; jt_r5 < 8; ++jt_r5) {
      const int i = (((jt_r5 >> 2) & 1)); (void)i;
      const int j = ((((tx & 127) << 2)) | ((jt_r5 & 3))); (void)j;
      xhat_frag[(jt_r5 & 1) | (((jt_r5 >> 1) & 1) << 1) | (((jt_r5 >> 2) & 1) << 2)] = ((xhat_frag[(jt_r5 & 1) | (((jt_r5 >> 1) & 1) << 1) | (((jt_r5 >> 2) & 1) << 2)] - Mean[(jt::min(((bx * 2) + i), 62))]) * Rstd[(jt::min(((bx * 2) + i), 62))]);
      wdy_frag[(jt_r5 & 1) | (((jt_r5 >> 1) & 1) << 1) | (((jt_r5 >> 2) & 1) << 2)] = (W[(j)] * dy_frag[(jt_r5 & 1) | (((jt_r5 >> 1) & 1) << 1) | (((jt_r5 >> 2) & 1) << 2)]);
      prod_frag[(jt_r5 & 1) | (((jt_r5 >> 1) & 1) << 1) | (((jt_r5 >> 2) & 1) << 2)] = (xhat_frag[(jt_r5 & 1) | (((jt_r5 >> 1) & 1) << 1) | (((jt_r5 >> 2) & 1) << 2)] * wdy_frag[(jt_r5 & 1) | (((jt_r5 >> 1) & 1) << 1) | (((jt_r5 >> 2) & 1) << 2)]);
    }
  }
  // layer_norm.py:73
  {
    float acc[2];
    acc[0] = ((jt::cast<float>(prod_frag[0]) + jt::cast<float>(prod_frag[1])) + (jt::cast<float>(prod_frag[2]) + jt::cast<float>(prod_frag[3])));
    acc[1] = ((jt::cast<float>(prod_frag[4]) + jt::cast<float>(prod_frag[5])) + (jt::cast<float>(prod_frag[6]) + jt::cast<float>(prod_frag[7])));
    #pragma unroll
    for (int q = 0; q < 2; ++q) acc[q] = acc[q] + jt::shfl_xor(acc[q], 1);
    #pragma unroll
    for (int q = 0; q < 2; ++q) acc[q] = acc[q] + jt::shfl_xor(acc[q], 2);
    #pragma unroll
    for (int q = 0; q < 2; ++q) acc[q] = acc[q] + jt::shfl_xor(acc[q], 4);
    #pragma unroll
    for (int q = 0; q < 2; ++q) acc[q] = acc[q] + jt::shfl_xor(acc[q], 8);
    #pragma unroll
    for (int q = 0; q < 2; ++q) acc[q] = acc[q] + jt::shfl_xor(acc[q], 16);
    __syncthreads();
    if ((tx & 31) == 0) {
      for (int q = 0; q < 2; ++q) reinterpret_cast<float*>(jt_smem + 0)[((tx >> 5)) * 2 + q] = acc[q];
    }
    __syncthreads();
    #pragma unroll
    for (int q = 0; q < 2; ++q) {
      float total = 0.0f;
      #pragma unroll
      for (int w = 0; w < 4; ++w) {
        const int peer = (tx & ~127) | (((w >> 0) & 1) << 5) | (((w >> 1) & 1) << 6);
        total = total + reinterpret_cast<float*>(jt_smem + 0)[((peer >> 5)) * 2 + q];
      }
      acc[q] = total;
    }
    __syncthreads();
    c1_frag[0] = jt::cast<float>(acc[0]);
    c1_frag[1] = jt::cast<float>(acc[1]);
  }
  // layer_norm.py:74
  {
    float acc[2];
    acc[0] = ((jt::cast<float>(wdy_frag[0]) + jt::cast<float>(wdy_frag[1])) + (jt::cast<float>(wdy_frag[2]) + jt::cast<float>(wdy_frag[3])));
    acc[1] = ((jt::cast<float>(wdy_frag[4]) + jt::cast<float>(wdy_frag[5])) + (jt::cast<float>(wdy_frag[6]) + jt::cast<float>(wdy_frag[7])));
    #pragma unroll
    for (int q = 0; q < 2; ++q) acc[q] = acc[q] + jt::shfl_xor(acc[q], 1);
    #pragma unroll
    for (int q = 0; q < 2; ++q) acc[q] = acc[q] + jt::shfl_xor(acc[q], 2);
    #pragma unroll
    for (int q = 0; q < 2; ++q) acc[q] = acc[q] + jt::shfl_xor(acc[q], 4);
    #pragma unroll
    for (int q = 0; q < 2; ++q) acc[q] = acc[q] + jt::shfl_xor(acc[q], 8);
    #pragma unroll
    for (int q = 0; q < 2; ++q) acc[q] = acc[q] + jt::shfl_xor(acc[q], 16);
    __syncthreads();
    if ((tx & 31) == 0) {
      for (int q = 0; q < 2; ++q) reinterpret_cast<float*>(jt_smem + 0)[((tx >> 5)) * 2 + q] = acc[q];
    }
    __syncthreads();
    #pragma unroll
    for (int q = 0; q < 2; ++q) {
      float total = 0.0f;
      #pragma unroll
      for (int w = 0; w < 4; ++w) {
        const int peer = (tx & ~127) | (((w >> 0) & 1) << 5) | (((w >> 1) & 1) << 6);
        total = total + reinterpret_cast<float*>(jt_smem + 0)[((peer >> 5)) * 2 + q];
      }
      acc[q] = total;
    }
    __syncthreads();
    c2_frag[0] = jt::cast<float>(acc[0]);
    c2_frag[1] = jt::cast<float>(acc[1]);
  }
  // layer_norm.py:75
  {
    #pragma unroll
    for (int jt_r6 = 0; jt_r6 < 8; ++jt_r6) {
      const int i_1 = (((jt_r6 >> 2) & 1)); (void)i_1;
      const int j_1 = ((((tx & 127) << 2)) | ((jt_r6 & 3))); (void)j_1;
      wdy_frag[(jt_r6 & 1) | (((jt_r6 >> 1) & 1) << 1) | (((jt_r6 >> 2) & 1) << 2)] = ((wdy_frag[(jt_r6 & 1) | (((jt_r6 >> 1) & 1) << 1) | (((jt_r6 >> 2) & 1) << 2)] - (((xhat_frag[(jt_r6 & 1) | (((jt_r6 >> 1) & 1) << 1) | (((jt_r6 >> 2) & 1) << 2)] * c1_frag[((jt_r6 >> 2) & 1)]) + c2_frag[((jt_r6 >> 2) & 1)]) / 512.0f)) * Rstd[(jt::min(((bx * 2) + i_1), 62))]);
      prod_frag[(jt_r6 & 1) | (((jt_r6 >> 1) & 1) << 1) | (((jt_r6 >> 2) & 1) << 2)] = (dy_frag[(jt_r6 & 1) | (((jt_r6 >> 1) & 1) << 1) | (((jt_r6 >> 2) & 1) << 2)] * xhat_frag[(jt_r6 & 1) | (((jt_r6 >> 1) & 1) << 1) | (((jt_r6 >> 2) & 1) << 2)]);
    }
  }
  // layer_norm.py:79
  {
    #pragma unroll
    for (int jt_r7 = 0; jt_r7 < 8; jt_r7 += 4) {
      jt::vec<float, 4> jt_v8;
      #pragma unroll
      for (int u = 0; u < 4; ++u) jt_v8.v[u] = jt::cast<float>(wdy_frag[jt_r7 + u]);
      if ((unsigned)((bx * 2) + (((jt_r7 >> 2) & 1))) < 63u && (unsigned)(((((tx & 127) << 2)) | ((jt_r7 & 3)))) < 512u) {
        *reinterpret_cast<jt::vec<float, 4>*>(&DX[(((bx * 2) + (((jt_r7 >> 2) & 1)))) * 512 + (((((tx & 127) << 2)) | ((jt_r7 & 3))))]) = jt_v8;
      }
    }
  }
  // layer_norm.py:80
  {
    float acc[4];
    acc[0] = (jt::cast<float>(prod_frag[0]) + jt::cast<float>(prod_frag[4]));
    acc[1] = (jt::cast<float>(prod_frag[1]) + jt::cast<float>(prod_frag[5]));
    acc[2] = (jt::cast<float>(prod_frag[2]) + jt::cast<float>(prod_frag[6]));
    acc[3] = (jt::cast<float>(prod_frag[3]) + jt::cast<float>(prod_frag[7]));
    col_frag[0] = jt::cast<float>(acc[0]);
    col_frag[1] = jt::cast<float>(acc[1]);
    col_frag[2] = jt::cast<float>(acc[2]);
    col_frag[3] = jt::cast<float>(acc[3]);
  }
  // layer_norm.py:81
  {
    #pragma unroll
    for (int jt_r9 = 0; jt_r9 < 4; jt_r9 += 4) {
      jt::vec<float, 4> jt_v10;
      #pragma unroll
      for (int u = 0; u < 4; ++u) jt_v10.v[u] = jt::cast<float>(col_frag[jt_r9 + u]);
      *reinterpret_cast<jt::vec<float, 4>*>(&DW[((bx)) * 512 + (((((tx & 127) << 2)) | ((jt_r9 & 3))))]) = jt_v10;
    }
  }
  // layer_norm.py:82
  {
    float acc[4];
    acc[0] = (jt::cast<float>(dy_frag[0]) + jt::cast<float>(dy_frag[4]));
    acc[1] = (jt::cast<float>(dy_frag[1]) + jt::cast<float>(dy_frag[5]));
    acc[2] = (jt::cast<float>(dy_frag[2]) + jt::cast<float>(dy_frag[6]));
    acc[3] = (jt::cast<float>(dy_frag[3]) + jt::cast<float>(dy_frag[7]));
    col_frag[0] = jt::cast<float>(acc[0]);
    col_frag[1] = jt::cast<float>(acc[1]);
    col_frag[2] = jt::cast<float>(acc[2]);
    col_frag[3] = jt::cast<float>(acc[3]);
  }
  // layer_norm.py:83
  {
    #pragma unroll
    for (int jt_r11 = 0; jt_r11 < 4; jt_r11 += 4) {
      jt::vec<float, 4> jt_v12;
      #pragma unroll
      for (int u = 0; u < 4; ++u) jt_v12.v[u] = jt::cast<float>(col_frag[jt_r11 + u]);
      *reinterpret_cast<jt::vec<float, 4>*>(&DB[((bx)) * 512 + (((((tx & 127) << 2)) | ((jt_r11 & 3))))]) = jt_v12;
    }
  }
}
