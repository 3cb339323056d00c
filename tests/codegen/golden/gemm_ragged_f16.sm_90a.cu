// jtile kernel matmul from gemm.py:23
// target sm_90a, jtile <version>
#include "jtile/device.cuh"

__device__ __forceinline__ void jt_wgmma_m64n64k16_f16_ss_nt(float* d, unsigned long long a, unsigned long long b, int accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %32, %33, p, 1, 1, 0, 1;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "l"(a), "l"(b), "r"(accumulate));
}

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
          jt::cp_async_8(&a_tile_smem[(0) * 2048 + jt::swizzle_bytes<3>((((jt_c2 * 4) % 32) / 32) * 4096 + (((jt_c2 * 4) / 32) % 64) * 64 + (((jt_c2 * 4) % 32) % 32) * 2) / 2], &A[(((by * 64) + ((jt_c2 * 4) / 32) % 64)) * 100 + (((0) * 32) + (jt_c2 * 4) % 32)]);
        }
        else {
          for (int u = 0; u < 4; ++u) (&a_tile_smem[(0) * 2048 + jt::swizzle_bytes<3>((((jt_c2 * 4) % 32) / 32) * 4096 + (((jt_c2 * 4) / 32) % 64) * 64 + (((jt_c2 * 4) % 32) % 32) * 2) / 2])[u] = jt::cast<jt::half>(0.0f);
        }
      }
      #pragma unroll
      for (int jt_u5 = 0; jt_u5 < 8; ++jt_u5) {
        const int jt_c4 = jt_u5 * 128 + tx;
        if ((unsigned)(((0) * 32) + ((jt_c4 * 2) / 64) % 32) < 100u && (unsigned)((bx * 64) + (jt_c4 * 2) % 64) < 90u) {
          jt::cp_async_4(&b_tile_smem[(0) * 2048 + jt::swizzle_bytes<7>((((jt_c4 * 2) % 64) / 64) * 4096 + (((jt_c4 * 2) / 64) % 32) * 128 + (((jt_c4 * 2) % 64) % 64) * 2) / 2], &B[((((0) * 32) + ((jt_c4 * 2) / 64) % 32)) * 90 + ((bx * 64) + (jt_c4 * 2) % 64)]);
        }
        else {
          for (int u = 0; u < 2; ++u) (&b_tile_smem[(0) * 2048 + jt::swizzle_bytes<7>((((jt_c4 * 2) % 64) / 64) * 4096 + (((jt_c4 * 2) / 64) % 32) * 128 + (((jt_c4 * 2) % 64) % 64) * 2) / 2])[u] = jt::cast<jt::half>(0.0f);
        }
      }
    }
    jt::cp_async_commit();
    if (1 < 4) {
      #pragma unroll
      for (int jt_u7 = 0; jt_u7 < 4; ++jt_u7) {
        const int jt_c6 = jt_u7 * 128 + tx;
        if ((unsigned)((by * 64) + ((jt_c6 * 4) / 32) % 64) < 70u && (unsigned)(((1) * 32) + (jt_c6 * 4) % 32) < 100u) {
          jt::cp_async_8(&a_tile_smem[(1) * 2048 + jt::swizzle_bytes<3>((((jt_c6 * 4) % 32) / 32) * 4096 + (((jt_c6 * 4) / 32) % 64) * 64 + (((jt_c6 * 4) % 32) % 32) * 2) / 2], &A[(((by * 64) + ((jt_c6 * 4) / 32) % 64)) * 100 + (((1) * 32) + (jt_c6 * 4) % 32)]);
        }
        else {
          for (int u = 0; u < 4; ++u) (&a_tile_smem[(1) * 2048 + jt::swizzle_bytes<3>((((jt_c6 * 4) % 32) / 32) * 4096 + (((jt_c6 * 4) / 32) % 64) * 64 + (((jt_c6 * 4) % 32) % 32) * 2) / 2])[u] = jt::cast<jt::half>(0.0f);
        }
      }
      #pragma unroll
      for (int jt_u9 = 0; jt_u9 < 8; ++jt_u9) {
        const int jt_c8 = jt_u9 * 128 + tx;
        if ((unsigned)(((1) * 32) + ((jt_c8 * 2) / 64) % 32) < 100u && (unsigned)((bx * 64) + (jt_c8 * 2) % 64) < 90u) {
          jt::cp_async_4(&b_tile_smem[(1) * 2048 + jt::swizzle_bytes<7>((((jt_c8 * 2) % 64) / 64) * 4096 + (((jt_c8 * 2) / 64) % 32) * 128 + (((jt_c8 * 2) % 64) % 64) * 2) / 2], &B[((((1) * 32) + ((jt_c8 * 2) / 64) % 32)) * 90 + ((bx * 64) + (jt_c8 * 2) % 64)]);
        }
        else {
          for (int u = 0; u < 2; ++u) (&b_tile_smem[(1) * 2048 + jt::swizzle_bytes<7>((((jt_c8 * 2) % 64) / 64) * 4096 + (((jt_c8 * 2) / 64) % 32) * 128 + (((jt_c8 * 2) % 64) % 64) * 2) / 2])[u] = jt::cast<jt::half>(0.0f);
        }
      }
    }
    jt::cp_async_commit();
    for (int k = 0; k < 4; ++k) {
      jt::cp_async_wait<1>();
      jt::fence_proxy_async_shared();
      __syncthreads();
      if (k + 2 < 4) {
        #pragma unroll
        for (int jt_u11 = 0; jt_u11 < 4; ++jt_u11) {
          const int jt_c10 = jt_u11 * 128 + tx;
          if ((unsigned)((by * 64) + ((jt_c10 * 4) / 32) % 64) < 70u && (unsigned)(((k + 2) * 32) + (jt_c10 * 4) % 32) < 100u) {
            jt::cp_async_8(&a_tile_smem[((k + 2) % 3) * 2048 + jt::swizzle_bytes<3>((((jt_c10 * 4) % 32) / 32) * 4096 + (((jt_c10 * 4) / 32) % 64) * 64 + (((jt_c10 * 4) % 32) % 32) * 2) / 2], &A[(((by * 64) + ((jt_c10 * 4) / 32) % 64)) * 100 + (((k + 2) * 32) + (jt_c10 * 4) % 32)]);
          }
          else {
            for (int u = 0; u < 4; ++u) (&a_tile_smem[((k + 2) % 3) * 2048 + jt::swizzle_bytes<3>((((jt_c10 * 4) % 32) / 32) * 4096 + (((jt_c10 * 4) / 32) % 64) * 64 + (((jt_c10 * 4) % 32) % 32) * 2) / 2])[u] = jt::cast<jt::half>(0.0f);
          }
        }
        #pragma unroll
        for (int jt_u13 = 0; jt_u13 < 8; ++jt_u13) {
          const int jt_c12 = jt_u13 * 128 + tx;
          if ((unsigned)(((k + 2) * 32) + ((jt_c12 * 2) / 64) % 32) < 100u && (unsigned)((bx * 64) + (jt_c12 * 2) % 64) < 90u) {
            jt::cp_async_4(&b_tile_smem[((k + 2) % 3) * 2048 + jt::swizzle_bytes<7>((((jt_c12 * 2) % 64) / 64) * 4096 + (((jt_c12 * 2) / 64) % 32) * 128 + (((jt_c12 * 2) % 64) % 64) * 2) / 2], &B[((((k + 2) * 32) + ((jt_c12 * 2) / 64) % 32)) * 90 + ((bx * 64) + (jt_c12 * 2) % 64)]);
          }
          else {
            for (int u = 0; u < 2; ++u) (&b_tile_smem[((k + 2) % 3) * 2048 + jt::swizzle_bytes<7>((((jt_c12 * 2) % 64) / 64) * 4096 + (((jt_c12 * 2) / 64) % 32) * 128 + (((jt_c12 * 2) % 64) % 64) * 2) / 2])[u] = jt::cast<jt::half>(0.0f);
          }
        }
      }
      jt::cp_async_commit();
      // gemm.py:48
      {
        const int jt_wg = tx >> 7;
        const int jt_wg_m = jt_wg % 1; (void)jt_wg_m;
        const int jt_wg_n = jt_wg / 1; (void)jt_wg_n;
        const unsigned long long jt_da = jt::wgmma_desc(reinterpret_cast<unsigned char*>(a_tile_smem) + (k % 3) * 4096 + jt_wg_m * 4096, 16u, 512u, 2u);
        const unsigned long long jt_db = jt::wgmma_desc(reinterpret_cast<unsigned char*>(b_tile_smem) + (k % 3) * 4096 + jt_wg_n * 4096, 4096u, 1024u, 1u);
        jt::wgmma_fence();
        jt_wgmma_m64n64k16_f16_ss_nt(&acc_frag[0], jt_da + 0, jt_db + 0, 1);
        jt_wgmma_m64n64k16_f16_ss_nt(&acc_frag[0], jt_da + 2, jt_db + 128, 1);
        jt::wgmma_commit();
        jt::wgmma_wait<0>();
        jt::wgmma_hold(acc_frag);
      }
    }
    jt::cp_async_wait_all();
  }
  // gemm.py:49
  jt::fence_proxy_async_shared();
  __syncthreads();
  {
    #pragma unroll
    for (int jt_r14 = 0; jt_r14 < 32; jt_r14 += 2) {
      jt::vec<jt::half, 2> jt_v15;
      #pragma unroll
      for (int u = 0; u < 2; ++u) jt_v15.v[u] = jt::cast<jt::half>(acc_frag[jt_r14 + u]);
      *reinterpret_cast<jt::vec<jt::half, 2>*>(&acc_out_smem[((((((tx >> 2) & 7) | (((tx >> 5) & 3) << 4)) | ((((jt_r14 >> 1) & 1) << 3))))) * 64 + ((((((((tx & 3) << 1)) | ((jt_r14 & 1) | (((jt_r14 >> 2) & 7) << 3))))) / 8) ^ (((((((tx >> 2) & 7) | (((tx >> 5) & 3) << 4)) | ((((jt_r14 >> 1) & 1) << 3))))) % 8)) * 8 + ((((((tx & 3) << 1)) | ((jt_r14 & 1) | (((jt_r14 >> 2) & 7) << 3))))) % 8]) = jt_v15;
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
