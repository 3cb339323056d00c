// jtile kernel gemm_f32 from cases.py:96
// target sm_90a, jtile <version>
#include "jtile/device.cuh"

extern "C" __global__ void __launch_bounds__(128) gemm_f32(const float* __restrict__ A, const float* __restrict__ B, float* __restrict__ C) {
  extern __shared__ __align__(1024) unsigned char jt_smem[];
  const int tx = threadIdx.x;
  const int bx = blockIdx.x;
  const int by = blockIdx.y;
  float* a_smem = reinterpret_cast<float*>(jt_smem + 0);
  float* b_smem = reinterpret_cast<float*>(jt_smem + 4096);
  float acc_frag[8];
  // cases.py:104
  #pragma unroll
  for (int jt_r1 = 0; jt_r1 < 8; ++jt_r1) acc_frag[jt_r1] = 0.0f;
  // cases.py:105
  {
    // prologue: tiles 0..0 in flight
    if (0 < 3) {
      #pragma unroll
      for (int jt_u3 = 0; jt_u3 < 1; ++jt_u3) {
        const int jt_c2 = jt_u3 * 128 + tx;
        jt::cp_async_16_zfill(&a_smem[(0) * 512 + ((((jt_c2 * 4) / 16) % 32)) * 16 + ((jt_c2 * 4) % 16)], &A[(((by * 32) + ((jt_c2 * 4) / 16) % 32)) * 48 + (((0) * 16) + (jt_c2 * 4) % 16)], (unsigned)((by * 32) + ((jt_c2 * 4) / 16) % 32) < 80u && (unsigned)(((0) * 16) + (jt_c2 * 4) % 16) < 48u);
      }
      #pragma unroll
      for (int jt_u5 = 0; jt_u5 < 1; ++jt_u5) {
        const int jt_c4 = jt_u5 * 128 + tx;
        jt::cp_async_16(&b_smem[(0) * 512 + ((((jt_c4 * 4) / 32) % 16)) * 32 + ((jt_c4 * 4) % 32)], &B[((((0) * 16) + ((jt_c4 * 4) / 32) % 16)) * 96 + ((bx * 32) + (jt_c4 * 4) % 32)]);
      }
    }
    jt::cp_async_commit();
    for (int k = 0; k < 3; ++k) {
      jt::cp_async_wait<0>();
      __syncthreads();
      if (k + 1 < 3) {
        #pragma unroll
        for (int jt_u7 = 0; jt_u7 < 1; ++jt_u7) {
          const int jt_c6 = jt_u7 * 128 + tx;
          jt::cp_async_16_zfill(&a_smem[((k + 1) % 2) * 512 + ((((jt_c6 * 4) / 16) % 32)) * 16 + ((jt_c6 * 4) % 16)], &A[(((by * 32) + ((jt_c6 * 4) / 16) % 32)) * 48 + (((k + 1) * 16) + (jt_c6 * 4) % 16)], (unsigned)((by * 32) + ((jt_c6 * 4) / 16) % 32) < 80u && (unsigned)(((k + 1) * 16) + (jt_c6 * 4) % 16) < 48u);
        }
        #pragma unroll
        for (int jt_u9 = 0; jt_u9 < 1; ++jt_u9) {
          const int jt_c8 = jt_u9 * 128 + tx;
          jt::cp_async_16(&b_smem[((k + 1) % 2) * 512 + ((((jt_c8 * 4) / 32) % 16)) * 32 + ((jt_c8 * 4) % 32)], &B[((((k + 1) * 16) + ((jt_c8 * 4) / 32) % 16)) * 96 + ((bx * 32) + (jt_c8 * 4) % 32)]);
        }
      }
      jt::cp_async_commit();
      // cases.py:108
      {
        for (int r = 0; r < 8; ++r) {
          const int i = ((((tx >> 5) & 3)) | (((r & 7) << 2)));
          const int j = ((tx & 31));
          float acc = acc_frag[r];
          for (int kk = 0; kk < 16; ++kk) {
            acc += jt::cast<float>(a_smem[(k % 2) * 512 + ((i)) * 16 + (kk)]) * jt::cast<float>(b_smem[(k % 2) * 512 + ((kk)) * 32 + (j)]);
          }
          acc_frag[r] = acc;
        }
      }
    }
    jt::cp_async_wait_all();
  }
  // cases.py:109
  {
    #pragma unroll
    for (int jt_r10 = 0; jt_r10 < 8; jt_r10 += 1) {
      if ((unsigned)((by * 32) + ((((tx >> 5) & 3)) | (((jt_r10 & 7) << 2)))) < 80u && (unsigned)((bx * 32) + ((tx & 31))) < 96u) {
        C[(((by * 32) + ((((tx >> 5) & 3)) | (((jt_r10 & 7) << 2))))) * 96 + ((bx * 32) + ((tx & 31)))] = jt::cast<float>(acc_frag[jt_r10]);
      }
    }
  }
}
