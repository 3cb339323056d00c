// jtile kernel matmul from gemm.py:23
// target sm_80, jtile <version>
#include "jtile/device.cuh"

extern "C" __global__ void __launch_bounds__(128) matmul(const jt::half* __restrict__ A, const jt::half* __restrict__ B, jt::half* __restrict__ C) {
  extern __shared__ __align__(1024) unsigned char jt_smem[];
  const int tx = threadIdx.x;
  const int bx = blockIdx.x;
  const int by = blockIdx.y;
  jt::half* a_tile_smem = reinterpret_cast<jt::half*>(jt_smem + 0);
  jt::half* b_tile_smem = reinterpret_cast<jt::half*>(jt_smem + 12288);
  float acc_frag[32];
  jt::half* acc_out_smem = reinterpret_cast<jt::half*>(jt_smem + 0);
  // gemm.py:38
  #pragma unroll
  for (int jt_r1 = 0; jt_r1 < 32; ++jt_r1) acc_frag[jt_r1] = 0.0f;
  // gemm.py:39
  {
    // prologue: tiles 0..1 in flight
    if (0 < 4) {
      #pragma unroll
      for (int jt_u3 = 0; jt_u3 < 4; ++jt_u3) {
        const int jt_c2 = jt_u3 * 128 + tx;
        if ((unsigned)((by * 64) + ((jt_c2 * 4) / 32) % 64) < 70u && (unsigned)(((0) * 32) + (jt_c2 * 4) % 32) < 100u) {
          jt::cp_async_8(&a_tile_smem[(0) * 2048 + ((((jt_c2 * 4) / 32) % 64)) * 32 + (((((jt_c2 * 4) % 32)) / 8) ^ (((((jt_c2 * 4) / 32) % 64)) / 2 % 4)) * 8 + (((jt_c2 * 4) % 32)) % 8], &A[(((by * 64) + ((jt_c2 * 4) / 32) % 64)) * 100 + (((0) * 32) + (jt_c2 * 4) % 32)]);
        }
        else {
          for (int u = 0; u < 4; ++u) (&a_tile_smem[(0) * 2048 + ((((jt_c2 * 4) / 32) % 64)) * 32 + (((((jt_c2 * 4) % 32)) / 8) ^ (((((jt_c2 * 4) / 32) % 64)) / 2 % 4)) * 8 + (((jt_c2 * 4) % 32)) % 8])[u] = jt::cast<jt::half>(0.0f);
        }
      }
      #pragma unroll
      for (int jt_u5 = 0; jt_u5 < 8; ++jt_u5) {
        const int jt_c4 = jt_u5 * 128 + tx;
        if ((unsigned)(((0) * 32) + ((jt_c4 * 2) / 64) % 32) < 100u && (unsigned)((bx * 64) + (jt_c4 * 2) % 64) < 90u) {
          jt::cp_async_4(&b_tile_smem[(0) * 2048 + ((((jt_c4 * 2) / 64) % 32)) * 64 + (((((jt_c4 * 2) % 64)) / 8) ^ (((((jt_c4 * 2) / 64) % 32)) % 8)) * 8 + (((jt_c4 * 2) % 64)) % 8], &B[((((0) * 32) + ((jt_c4 * 2) / 64) % 32)) * 90 + ((bx * 64) + (jt_c4 * 2) % 64)]);
        }
        else {
          for (int u = 0; u < 2; ++u) (&b_tile_smem[(0) * 2048 + ((((jt_c4 * 2) / 64) % 32)) * 64 + (((((jt_c4 * 2) % 64)) / 8) ^ (((((jt_c4 * 2) / 64) % 32)) % 8)) * 8 + (((jt_c4 * 2) % 64)) % 8])[u] = jt::cast<jt::half>(0.0f);
        }
      }
    }
    jt::cp_async_commit();
    if (1 < 4) {
      #pragma unroll
      for (int jt_u7 = 0; jt_u7 < 4; ++jt_u7) {
        const int jt_c6 = jt_u7 * 128 + tx;
        if ((unsigned)((by * 64) + ((jt_c6 * 4) / 32) % 64) < 70u && (unsigned)(((1) * 32) + (jt_c6 * 4) % 32) < 100u) {
          jt::cp_async_8(&a_tile_smem[(1) * 2048 + ((((jt_c6 * 4) / 32) % 64)) * 32 + (((((jt_c6 * 4) % 32)) / 8) ^ (((((jt_c6 * 4) / 32) % 64)) / 2 % 4)) * 8 + (((jt_c6 * 4) % 32)) % 8], &A[(((by * 64) + ((jt_c6 * 4) / 32) % 64)) * 100 + (((1) * 32) + (jt_c6 * 4) % 32)]);
        }
        else {
          for (int u = 0; u < 4; ++u) (&a_tile_smem[(1) * 2048 + ((((jt_c6 * 4) / 32) % 64)) * 32 + (((((jt_c6 * 4) % 32)) / 8) ^ (((((jt_c6 * 4) / 32) % 64)) / 2 % 4)) * 8 + (((jt_c6 * 4) % 32)) % 8])[u] = jt::cast<jt::half>(0.0f);
        }
      }
      #pragma unroll
      for (int jt_u9 = 0; jt_u9 < 8; ++jt_u9) {
        const int jt_c8 = jt_u9 * 128 + tx;
        if ((unsigned)(((1) * 32) + ((jt_c8 * 2) / 64) % 32) < 100u && (unsigned)((bx * 64) + (jt_c8 * 2) % 64) < 90u) {
          jt::cp_async_4(&b_tile_smem[(1) * 2048 + ((((jt_c8 * 2) / 64) % 32)) * 64 + (((((jt_c8 * 2) % 64)) / 8) ^ (((((jt_c8 * 2) / 64) % 32)) % 8)) * 8 + (((jt_c8 * 2) % 64)) % 8], &B[((((1) * 32) + ((jt_c8 * 2) / 64) % 32)) * 90 + ((bx * 64) + (jt_c8 * 2) % 64)]);
        }
        else {
          for (int u = 0; u < 2; ++u) (&b_tile_smem[(1) * 2048 + ((((jt_c8 * 2) / 64) % 32)) * 64 + (((((jt_c8 * 2) % 64)) / 8) ^ (((((jt_c8 * 2) / 64) % 32)) % 8)) * 8 + (((jt_c8 * 2) % 64)) % 8])[u] = jt::cast<jt::half>(0.0f);
        }
      }
    }
    jt::cp_async_commit();
    for (int k = 0; k < 4; ++k) {
      jt::cp_async_wait<1>();
      __syncthreads();
      if (k + 2 < 4) {
        #pragma unroll
        for (int jt_u11 = 0; jt_u11 < 4; ++jt_u11) {
          const int jt_c10 = jt_u11 * 128 + tx;
          if ((unsigned)((by * 64) + ((jt_c10 * 4) / 32) % 64) < 70u && (unsigned)(((k + 2) * 32) + (jt_c10 * 4) % 32) < 100u) {
            jt::cp_async_8(&a_tile_smem[((k + 2) % 3) * 2048 + ((((jt_c10 * 4) / 32) % 64)) * 32 + (((((jt_c10 * 4) % 32)) / 8) ^ (((((jt_c10 * 4) / 32) % 64)) / 2 % 4)) * 8 + (((jt_c10 * 4) % 32)) % 8], &A[(((by * 64) + ((jt_c10 * 4) / 32) % 64)) * 100 + (((k + 2) * 32) + (jt_c10 * 4) % 32)]);
          }
          else {
            for (int u = 0; u < 4; ++u) (&a_tile_smem[((k + 2) % 3) * 2048 + ((((jt_c10 * 4) / 32) % 64)) * 32 + (((((jt_c10 * 4) % 32)) / 8) ^ (((((jt_c10 * 4) / 32) % 64)) / 2 % 4)) * 8 + (((jt_c10 * 4) % 32)) % 8])[u] = jt::cast<jt::half>(0.0f);
          }
        }
        #pragma unroll
        for (int jt_u13 = 0; jt_u13 < 8; ++jt_u13) {
          const int jt_c12 = jt_u13 * 128 + tx;
          if ((unsigned)(((k + 2) * 32) + ((jt_c12 * 2) / 64) % 32) < 100u && (unsigned)((bx * 64) + (jt_c12 * 2) % 64) < 90u) {
            jt::cp_async_4(&b_tile_smem[((k + 2) % 3) * 2048 + ((((jt_c12 * 2) / 64) % 32)) * 64 + (((((jt_c12 * 2) % 64)) / 8) ^ (((((jt_c12 * 2) / 64) % 32)) % 8)) * 8 + (((jt_c12 * 2) % 64)) % 8], &B[((((k + 2) * 32) + ((jt_c12 * 2) / 64) % 32)) * 90 + ((bx * 64) + (jt_c12 * 2) % 64)]);
          }
          else {
            for (int u = 0; u < 2; ++u) (&b_tile_smem[((k + 2) % 3) * 2048 + ((((jt_c12 * 2) / 64) % 32)) * 64 + (((((jt_c12 * 2) % 64)) / 8) ^ (((((jt_c12 * 2) / 64) % 32)) % 8)) * 8 + (((jt_c12 * 2) % 64)) % 8])[u] = jt::cast<jt::half>(0.0f);
          }
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
          unsigned a[2][4];
          unsigned b[4][2];
          #pragma unroll
          for (int mi = 0; mi < 2; ++mi) {
            const int m0 = jt_warp_m * 32 + mi * 16;
            jt::ldmatrix_x4(a[mi], &a_tile_smem[(k % 3) * 2048 + ((m0 + (jt_lane & 15))) * 32 + ((((kk * 16 + (jt_lane >> 4) * 8)) / 8) ^ (((m0 + (jt_lane & 15))) / 2 % 4)) * 8 + ((kk * 16 + (jt_lane >> 4) * 8)) % 8]);
          }
          #pragma unroll
          for (int ni = 0; ni < 4; ni += 2) {
            const int n0 = jt_warp_n * 32 + ni * 8;
            unsigned r4[4];
            jt::ldmatrix_x4_trans(r4, &b_tile_smem[(k % 3) * 2048 + ((kk * 16 + (jt_lane & 7) + ((jt_lane >> 3) & 1) * 8)) * 64 + ((((n0 + (jt_lane >> 4) * 8)) / 8) ^ (((kk * 16 + (jt_lane & 7) + ((jt_lane >> 3) & 1) * 8)) % 8)) * 8 + ((n0 + (jt_lane >> 4) * 8)) % 8]);
            b[ni][0] = r4[0]; b[ni][1] = r4[1]; b[ni + 1][0] = r4[2]; b[ni + 1][1] = r4[3];
          }
          #pragma unroll
          for (int mi = 0; mi < 2; ++mi) {
            #pragma unroll
            for (int ni = 0; ni < 4; ++ni) {
              jt::mma_m16n8k16_f16f32(*reinterpret_cast<float(*)[4]>(&acc_frag[(mi * 4 + ni) * 4]), a[mi], b[ni]);
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
    for (int jt_r14 = 0; jt_r14 < 32; jt_r14 += 2) {
      jt::vec<jt::half, 2> jt_v15;
      #pragma unroll
      for (int u = 0; u < 2; ++u) jt_v15.v[u] = jt::cast<jt::half>(acc_frag[jt_r14 + u]);
      *reinterpret_cast<jt::vec<jt::half, 2>*>(&acc_out_smem[((((((tx >> 2) & 7) | (((tx >> 5) & 1) << 5)) | ((((jt_r14 >> 1) & 1) << 3) | (((jt_r14 >> 4) & 1) << 4))))) * 64 + ((((((((tx & 3) << 1) | (((tx >> 6) & 1) << 5)) | ((jt_r14 & 1) | (((jt_r14 >> 2) & 3) << 3))))) / 8) ^ (((((((tx >> 2) & 7) | (((tx >> 5) & 1) << 5)) | ((((jt_r14 >> 1) & 1) << 3) | (((jt_r14 >> 4) & 1) << 4))))) % 8)) * 8 + ((((((tx & 3) << 1) | (((tx >> 6) & 1) << 5)) | ((jt_r14 & 1) | (((jt_r14 >> 2) & 3) << 3))))) % 8]) = jt_v15;
    }
  }
  __syncthreads();
  {
    #pragma unroll
    for (int jt_u17 = 0; jt_u17 < 16; ++jt_u17) {
      const int jt_c16 = jt_u17 * 128 + tx;
      if ((unsigned)((by * 64) + ((jt_c16 * 2) / 64) % 64) < 70u && (unsigned)((bx * 64) + (jt_c16 * 2) % 64) < 90u) {
        jt::vec<jt::half, 2> jt_v18;
        jt_v18 = *reinterpret_cast<const jt::vec<jt::half, 2>*>(&acc_out_smem[((((jt_c16 * 2) / 64) % 64)) * 64 + (((((jt_c16 * 2) % 64)) / 8) ^ (((((jt_c16 * 2) / 64) % 64)) % 8)) * 8 + (((jt_c16 * 2) % 64)) % 8]);
        jt::vec<jt::half, 2> jt_v19;
        for (int u = 0; u < 2; ++u) jt_v19.v[u] = jt::cast<jt::half>(jt_v18.v[u]);
        *reinterpret_cast<jt::vec<jt::half, 2>*>(&C[(((by * 64) + ((jt_c16 * 2) / 64) % 64)) * 90 + ((bx * 64) + (jt_c16 * 2) % 64)]) = jt_v19;
      }
    }
  }
}
