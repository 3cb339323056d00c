// jtile kernel column_stats from reducer.py:22
// target sm_90a, jtile <version>
#include "jtile/device.cuh"

extern "C" __global__ void __launch_bounds__(128) column_stats(const float* __restrict__ X, float* __restrict__ Sum, float* __restrict__ Max) {
  extern __shared__ __align__(1024) unsigned char jt_smem[];
  const int tx = threadIdx.x;
  const int bx = blockIdx.x;
  float* tile_smem = reinterpret_cast<float*>(jt_smem + 0);
  float total_red[32];
  float peak_red[32];
  // reducer.py:30
  #pragma unroll
  for (int jt_f1 = 0; jt_f1 < 32; ++jt_f1) {
    total_red[(jt_f1 % 32)] = 0.0f;
  }
  // reducer.py:31
  #pragma unroll
  for (int jt_f2 = 0; jt_f2 < 32; ++jt_f2) {
    peak_red[(jt_f2 % 32)] = -3.4028234663852886e+38f;
  }
  // reducer.py:32
  for (int k = 0; k < 10; ++k) {
    // reducer.py:33
    {
      #pragma unroll
      for (int jt_u4 = 0; jt_u4 < 2; ++jt_u4) {
        const int jt_c3 = jt_u4 * 128 + tx;
        jt::cp_async_16_zfill(&tile_smem[((((jt_c3 * 4) / 32) % 32)) * 32 + ((jt_c3 * 4) % 32)], &X[(((k * 32) + ((jt_c3 * 4) / 32) % 32)) * 96 + ((bx * 32) + (jt_c3 * 4) % 32)], (unsigned)((k * 32) + ((jt_c3 * 4) / 32) % 32) < 300u && (unsigned)((bx * 32) + (jt_c3 * 4) % 32) < 96u);
      }
    }
    jt::cp_async_wait_all();
    __syncthreads();
    // reducer.py:34
    {
      #pragma unroll
      for (int jt_u6 = 0; jt_u6 < 8; ++jt_u6) {
        const int jt_e5 = jt_u6 * 128 + tx;
        const int i = (jt_e5 / 32) % 32;
        const int j = jt_e5 % 32;
        // reducer.py:35
        if ((((k * 32) + i) < 300)) {
          total_red[(j)] = (total_red[(j)] + tile_smem[((i)) * 32 + (j)]);
          peak_red[(j)] = jt::max(peak_red[(j)], tile_smem[((i)) * 32 + (j)]);
        }
      }
    }
    __syncthreads();
  }
  // reducer.py:38
  {
    __syncthreads();
    #pragma unroll
    for (int e = 0; e < 32; ++e) {
      float v = jt::cast<float>(total_red[e]);
      v = v + jt::shfl_xor(v, 1);
      v = v + jt::shfl_xor(v, 2);
      v = v + jt::shfl_xor(v, 4);
      v = v + jt::shfl_xor(v, 8);
      v = v + jt::shfl_xor(v, 16);
      if ((tx & 31) == 0) reinterpret_cast<float*>(jt_smem + 4096)[(tx >> 5) * 32 + e] = v;
    }
    __syncthreads();
    #pragma unroll
    for (int e = 0; e < 32; ++e) {
      float v = 0.0f;
      for (int w = 0; w < 4; ++w) v = v + reinterpret_cast<float*>(jt_smem + 4096)[w * 32 + e];
      total_red[e] = jt::cast<float>(v);
    }
    __syncthreads();
  }
  // reducer.py:39
  {
    __syncthreads();
    #pragma unroll
    for (int e = 0; e < 32; ++e) {
      float v = jt::cast<float>(peak_red[e]);
      v = jt::max(v, jt::shfl_xor(v, 1));
      v = jt::max(v, jt::shfl_xor(v, 2));
      v = jt::max(v, jt::shfl_xor(v, 4));
      v = jt::max(v, jt::shfl_xor(v, 8));
      v = jt::max(v, jt::shfl_xor(v, 16));
      if ((tx & 31) == 0) reinterpret_cast<float*>(jt_smem + 4096)[(tx >> 5) * 32 + e] = v;
    }
    __syncthreads();
    #pragma unroll
    for (int e = 0; e < 32; ++e) {
      float v = -jt::infinity<float>();
      for (int w = 0; w < 4; ++w) v = jt::max(v, reinterpret_cast<float*>(jt_smem + 4096)[w * 32 + e]);
      peak_red[e] = jt::cast<float>(v);
    }
    __syncthreads();
  }
  // reducer.py:40
  {
    #pragma unroll
    for (int jt_u8 = 0; jt_u8 < 1; ++jt_u8) {
      const int jt_e7 = jt_u8 * 128 + tx;
      if (jt_e7 < 32) {
        const int i_1 = jt_e7 % 32;
        // reducer.py:41
        if ((((bx * 32) + i_1) < 96)) {
          Sum[(((bx * 32) + i_1))] = total_red[(i_1)];
          Max[(((bx * 32) + i_1))] = peak_red[(i_1)];
        }
      }
    }
  }
}
