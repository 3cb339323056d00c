// jtile kernel matmul from gemm.py:23
// target sm_80, jtile <version>
#include "jtile/device.cuh"

extern "C" __global__ void __launch_bounds__(128) matmul(const jt::bfloat16* __restrict__ A, const jt::bfloat16* __restrict__ B, jt::bfloat16* __restrict__ C) {
  extern __shared__ __align__(1024) unsigned char jt_smem[];
  const int tx = threadIdx.x;
  const int bx = blockIdx.x;
  const int by = blockIdx.y;
  jt::bfloat16* a_tile_smem = reinterpret_cast<jt::bfloat16*>(jt_smem + 0);
  jt::bfloat16* b_tile_smem = reinterpret_cast<jt::bfloat16*>(jt_smem + 24576);
  float acc_frag[128];
  jt::bfloat16* acc_out_smem = reinterpret_cast<jt::bfloat16*>(jt_smem + 0);
  // gemm.py:38
  #pragma unroll
  for (int jt_r1 = 0; jt_r1 < 128; ++jt_r1) acc_frag[jt_r1] = 0.0f;
  // gemm.py:39
  {
    // prologue: tiles 0..1 in flight
    if (0 < 5) {
      #pragma unroll
      for (int jt_u3 = 0; jt_u3 < 4; ++jt_u3) {
        const int jt_c2 = jt_u3 * 128 + tx;
        jt::cp_async_16(&a_tile_smem[(0) * 4096 + ((((jt_c2 * 8) / 128) % 32)) * 128 + (((((jt_c2 * 8) % 128)) / 8) ^ (((((jt_c2 * 8) / 128) % 32)) % 8)) * 8 + (((jt_c2 * 8) % 128)) % 8], &A[((((0) * 32) + ((jt_c2 * 8) / 128) % 32)) * 256 + ((by * 128) + (jt_c2 * 8) % 128)]);
      }
      #pragma unroll
      for (int jt_u5 = 0; jt_u5 < 4; ++jt_u5) {
        const int jt_c4 = jt_u5 * 128 + tx;
        jt::cp_async_16_zfill(&b_tile_smem[(0) * 4096 + ((((jt_c4 * 8) / 32) % 128)) * 32 + (((((jt_c4 * 8) % 32)) / 8) ^ (((((jt_c4 * 8) / 32) % 128)) / 2 % 4)) * 8 + (((jt_c4 * 8) % 32)) % 8], &B[(((bx * 128) + ((jt_c4 * 8) / 32) % 128)) * 160 + (((0) * 32) + (jt_c4 * 8) % 32)], (unsigned)((bx * 128) + ((jt_c4 * 8) / 32) % 128) < 192u && (unsigned)(((0) * 32) + (jt_c4 * 8) % 32) < 160u);
      }
    }
    jt::cp_async_commit();
    if (1 < 5) {
      #pragma unroll
      for (int jt_u7 = 0; jt_u7 < 4; ++jt_u7) {
        const int jt_c6 = jt_u7 * 128 + tx;
        jt::cp_async_16(&a_tile_smem[(1) * 4096 + ((((jt_c6 * 8) / 128) % 32)) * 128 + (((((jt_c6 * 8) % 128)) / 8) ^ (((((jt_c6 * 8) / 128) % 32)) % 8)) * 8 + (((jt_c6 * 8) % 128)) % 8], &A[((((1) * 32) + ((jt_c6 * 8) / 128) % 32)) * 256 + ((by * 128) + (jt_c6 * 8) % 128)]);
      }
      #pragma unroll
      for (int jt_u9 = 0; jt_u9 < 4; ++jt_u9) {
        const int jt_c8 = jt_u9 * 128 + tx;
        jt::cp_async_16_zfill(&b_tile_smem[(1) * 4096 + ((((jt_c8 * 8) / 32) % 128)) * 32 + (((((jt_c8 * 8) % 32)) / 8) ^ (((((jt_c8 * 8) / 32) % 128)) / 2 % 4)) * 8 + (((jt_c8 * 8) % 32)) % 8], &B[(((bx * 128) + ((jt_c8 * 8) / 32) % 128)) * 160 + (((1) * 32) + (jt_c8 * 8) % 32)], (unsigned)((bx * 128) + ((jt_c8 * 8) / 32) % 128) < 192u && (unsigned)(((1) * 32) + (jt_c8 * 8) % 32) < 160u);
      }
    }
    jt::cp_async_commit();
    for (int k = 0; k < 5; ++k) {
      jt::cp_async_wait<1>();
      __syncthreads();
      if (k + 2 < 5) {
        #pragma unroll
        for (int jt_u11 = 0; jt_u11 < 4; ++jt_u11) {
          const int jt_c10 = jt_u11 * 128 + tx;
          jt::cp_async_16(&a_tile_smem[((k + 2) % 3) * 4096 + ((((jt_c10 * 8) / 128) % 32)) * 128 + (((((jt_c10 * 8) % 128)) / 8) ^ (((((jt_c10 * 8) / 128) % 32)) % 8)) * 8 + (((jt_c10 * 8) % 128)) % 8], &A[((((k + 2) * 32) + ((jt_c10 * 8) / 128) % 32)) * 256 + ((by * 128) + (jt_c10 * 8) % 128)]);
        }
        #pragma unroll
        for (int jt_u13 = 0; jt_u13 < 4; ++jt_u13) {
          const int jt_c12 = jt_u13 * 128 + tx;
          jt::cp_async_16_zfill(&b_tile_smem[((k + 2) % 3) * 4096 + ((((jt_c12 * 8) / 32) % 128)) * 32 + (((((jt_c12 * 8) % 32)) / 8) ^ (((((jt_c12 * 8) / 32) % 128)) / 2 % 4)) * 8 + (((jt_c12 * 8) % 32)) % 8], &B[(((bx * 128) + ((jt_c12 * 8) / 32) % 128)) * 160 + (((k + 2) * 32) + (jt_c12 * 8) % 32)], (unsigned)((bx * 128) + ((jt_c12 * 8) / 32) % 128) < 192u && (unsigned)(((k + 2) * 32) + (jt_c12 * 8) % 32) < 160u);
        }
      }
      jt::cp_async_commit();
      // gemm.py:48
      {
        const int jt_lane = tx & 31;
        const int jt_warp_m = (tx >> 5) % 2; (void)jt_warp_m;
        const int jt_warp_n = (tx >> 5) / 2;
        #pragma unroll
        for (int kk = 0; kk < 2; ++kk) {
          unsigned a[4][4];
          unsigned b[8][2];
          #pragma unroll
          for (int mi = 0; mi < 4; ++mi) {
            const int m0 = jt_warp_m * 64 + mi * 16;
            jt::ldmatrix_x4_trans(a[mi], &a_tile_smem[(k % 3) * 4096 + ((kk * 16 + (jt_lane & 7) + (jt_lane >> 4) * 8)) * 128 + ((((m0 + ((jt_lane >> 3) & 1) * 8)) / 8) ^ (((kk * 16 + (jt_lane & 7) + (jt_lane >> 4) * 8)) % 8)) * 8 + ((m0 + ((jt_lane >> 3) & 1) * 8)) % 8]);
          }
          #pragma unroll
          for (int ni = 0; ni < 8; ni += 2) {
            const int n0 = jt_warp_n * 64 + ni * 8;
            unsigned r4[4];
            jt::ldmatrix_x4(r4, &b_tile_smem[(k % 3) * 4096 + ((n0 + (jt_lane & 7) + (jt_lane >> 4) * 8)) * 32 + ((((kk * 16 + ((jt_lane >> 3) & 1) * 8)) / 8) ^ (((n0 + (jt_lane & 7) + (jt_lane >> 4) * 8)) / 2 % 4)) * 8 + ((kk * 16 + ((jt_lane >> 3) & 1) * 8)) % 8]);
            b[ni][0] = r4[0]; b[ni][1] = r4[1]; b[ni + 1][0] = r4[2]; b[ni + 1][1] = r4[3];
          }
          #pragma unroll
          for (int mi = 0; mi < 4; ++mi) {
            #pragma unroll
            for (int ni = 0; ni < 8; ++ni) {
              jt::mma_m16n8k16_bf16f32(*reinterpret_cast<float(*)[4]>(&acc_frag[(mi * 8 + ni) * 4]), a[mi], b[ni]);
            }
          }
        }
      }
    }
    jt::cp_async_wait_all();
  }
  // gemm.py:49
  __syncthreads();
  {
    #pragma unroll
    for (int jt_r14 = 0; jt_r14 < 128; jt_r14 += 2) {
      jt::vec<jt::bfloat16, 2> jt_v15;
      #pragma unroll
      for (int u = 0; u < 2; ++u) jt_v15.v[u] = jt::cast<jt::bfloat16>(acc_frag[jt_r14 + u]);
      *reinterpret_cast<jt::vec<jt::bfloat16, 2>*>(&acc_out_smem[((((((tx >> 2) & 7) | (((tx >> 5) & 1) << 6)) | ((((jt_r14 >> 1) & 1) << 3) | (((jt_r14 >> 5) & 3) << 4))))) * 128 + ((((((((tx & 3) << 1) | (((tx >> 6) & 1) << 6)) | ((jt_r14 & 1) | (((jt_r14 >> 2) & 7) << 3))))) / 8) ^ (((((((tx >> 2) & 7) | (((tx >> 5) & 1) << 6)) | ((((jt_r14 >> 1) & 1) << 3) | (((jt_r14 >> 5) & 3) << 4))))) % 8)) * 8 + ((((((tx & 3) << 1) | (((tx >> 6) & 1) << 6)) | ((jt_r14 & 1) | (((jt_r14 >> 2) & 7) << 3))))) % 8]) = jt_v15;
    }
  }
  __syncthreads();
  {
    #pragma unroll
    for (int jt_u17 = 0; jt_u17 < 16; ++jt_u17) {
      const int jt_c16 = jt_u17 * 128 + tx;
      if ((unsigned)((by * 128) + ((jt_c16 * 8) / 128) % 128) < 256u && (unsigned)((bx * 128) + (jt_c16 * 8) % 128) < 192u) {
        jt::vec<jt::bfloat16, 8> jt_v18;
        jt_v18 = *reinterpret_cast<const jt::vec<jt::bfloat16, 8>*>(&acc_out_smem[((((jt_c16 * 8) / 128) % 128)) * 128 + (((((jt_c16 * 8) % 128)) / 8) ^ (((((jt_c16 * 8) / 128) % 128)) % 8)) * 8 + (((jt_c16 * 8) % 128)) % 8]);
        jt::vec<jt::bfloat16, 8> jt_v19;
        for (int u = 0; u < 8; ++u) jt_v19.v[u] = jt::cast<jt::bfloat16>(jt_v18.v[u]);
        *reinterpret_cast<jt::vec<jt::bfloat16, 8>*>(&C[(((by * 128) + ((jt_c16 * 8) / 128) % 128)) * 192 + ((bx * 128) + (jt_c16 * 8) % 128)]) = jt_v19;
      }
    }
  }
}
