// jtile kernel matmul from gemm.py:23
// target sm_90a, jtile <version>
#include "jtile/device.cuh"

__device__ __forceinline__ void jt_wgmma_m64n128k16_f16_ss_nt(float* d, unsigned long long a, unsigned long long b, int accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1, 0, 1;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "l"(a), "l"(b), "r"(accumulate));
}

extern "C" __global__ void __launch_bounds__(256, 1) matmul(const jt::half* __restrict__ A, const jt::half* __restrict__ B, jt::half* __restrict__ C, const __grid_constant__ jt::TensorMap jt_tma_map0, const __grid_constant__ jt::TensorMap jt_tma_map1, const __grid_constant__ jt::TensorMap jt_tma_map2) {
  extern __shared__ __align__(1024) unsigned char jt_smem[];
  const int tx = threadIdx.x;
  jt::half* a_tile_smem = reinterpret_cast<jt::half*>(jt_smem + 32768);
  jt::half* b_tile_smem = reinterpret_cast<jt::half*>(jt_smem + 57344);
  float acc_frag[128];
  jt::half* acc_out_smem = reinterpret_cast<jt::half*>(jt_smem + 0);
  __shared__ __align__(8) unsigned long long jt_full_bar[3];
  __shared__ __align__(8) unsigned long long jt_empty_bar[3];
  if (tx == 0) {
    for (int s = 0; s < 3; ++s) {
      jt::mbarrier_init(&jt_full_bar[s], 1);
      jt::mbarrier_init(&jt_empty_bar[s], 4);
    }
    jt::fence_barrier_init();
  }
  __syncthreads();
  if (tx >= 128) {
    if (tx == 128) {
      jt::tma_prefetch_map(&jt_tma_map0);
      jt::tma_prefetch_map(&jt_tma_map1);
      jt::tma_prefetch_map(&jt_tma_map2);
      int jt_ring = 0;
      for (int jt_tile = blockIdx.x; jt_tile < 4; jt_tile += gridDim.x) {
        const int bx = jt_tile / 1 % 2;
        const int by = jt_tile / 2 % 2;
        for (int k = 0; k < 5; ++k) {
          const int jt_it = (jt_ring + k);
          const int s = jt_it % 3;
          if (jt_it >= 3) {
            jt::mbarrier_wait_parity(&jt_empty_bar[s], ((jt_it / 3) & 1) ^ 1);
          }
          jt::mbarrier_arrive_expect_tx(&jt_full_bar[s], 16384u);
          jt::tma_load_2d(reinterpret_cast<unsigned char*>(a_tile_smem) + (s) * 8192 + 0, &jt_tma_map0, &jt_full_bar[s], (int)(((k) * 32)), (int)((by * 128)));
          jt::tma_load_2d(reinterpret_cast<unsigned char*>(b_tile_smem) + (s) * 8192 + 0, &jt_tma_map1, &jt_full_bar[s], (int)((bx * 128)), (int)(((k) * 32)));
          jt::tma_load_2d(reinterpret_cast<unsigned char*>(b_tile_smem) + (s) * 8192 + 4096, &jt_tma_map1, &jt_full_bar[s], (int)(((bx * 128) + 64)), (int)(((k) * 32)));
        }
        jt_ring += 5;
      }
    }
  }
  else {
    int jt_ring = 0;
    for (int jt_tile = blockIdx.x; jt_tile < 4; jt_tile += gridDim.x) {
      const int bx = jt_tile / 1 % 2;
      const int by = jt_tile / 2 % 2;
      // gemm.py:38
      #pragma unroll
      for (int jt_r1 = 0; jt_r1 < 128; ++jt_r1) acc_frag[jt_r1] = 0.0f;
      // gemm.py:39
      {
        #pragma unroll 1
        for (int k = 0; k < 5; ++k) {
          jt::mbarrier_wait_parity(&jt_full_bar[((jt_ring + k) % 3)], ((jt_ring + k) / 3) & 1);
          // gemm.py:48
          {
            const int jt_wg = tx >> 7;
            const int jt_wg_m = jt_wg % 1; (void)jt_wg_m;
            const int jt_wg_n = jt_wg / 1; (void)jt_wg_n;
            const unsigned long long jt_da = jt::wgmma_desc(reinterpret_cast<unsigned char*>(a_tile_smem) + (((jt_ring + k) % 3)) * 8192 + jt_wg_m * 8192, 16u, 512u, 2u);
            const unsigned long long jt_db = jt::wgmma_desc(reinterpret_cast<unsigned char*>(b_tile_smem) + (((jt_ring + k) % 3)) * 8192 + jt_wg_n * 8192, 4096u, 1024u, 1u);
            jt::wgmma_fence();
            jt_wgmma_m64n128k16_f16_ss_nt(&acc_frag[0], jt_da + 0, jt_db + 0, 1);
            jt_wgmma_m64n128k16_f16_ss_nt(&acc_frag[64], jt_da + 256, jt_db + 0, 1);
            jt_wgmma_m64n128k16_f16_ss_nt(&acc_frag[0], jt_da + 2, jt_db + 128, 1);
            jt_wgmma_m64n128k16_f16_ss_nt(&acc_frag[64], jt_da + 258, jt_db + 128, 1);
            jt::wgmma_commit();
            jt::wgmma_wait<1>();
            if (k > 0) {
              __syncwarp();
              if ((tx & 31) == 0) {
                jt::mbarrier_arrive(&jt_empty_bar[((jt_ring + k) - 1) % 3]);
              }
            }
          }
        }
        jt::wgmma_wait<0>();
        jt::wgmma_hold(acc_frag);
        if (5 > 0) {
          __syncwarp();
          if ((tx & 31) == 0) {
            jt::mbarrier_arrive(&jt_empty_bar[((jt_ring + 5) - 1) % 3]);
          }
        }
        jt_ring += 5;
      }
      // gemm.py:49
      #pragma unroll
      for (int jt_r2 = 0; jt_r2 < 128; jt_r2 += 2) {
        if (((jt_r2 >> 5) & 1) == 0) {
          jt::vec<jt::half, 2> jt_v3;
          #pragma unroll
          for (int u = 0; u < 2; ++u) jt_v3.v[u] = jt::cast<jt::half>(acc_frag[jt_r2 + u]);
          *reinterpret_cast<jt::vec<jt::half, 2>*>(&acc_out_smem[jt::swizzle_bytes<7>(((((((tx & 3) << 1)) | ((jt_r2 & 1) | (((jt_r2 >> 2) & 15) << 3)))) / 64) * 16384 + (((((tx >> 2) & 7) | (((tx >> 5) & 3) << 4)) | ((((jt_r2 >> 1) & 1) << 3) | (((jt_r2 >> 6) & 1) << 6)))) * 128 + ((((((tx & 3) << 1)) | ((jt_r2 & 1) | (((jt_r2 >> 2) & 15) << 3)))) % 64) * 2) / 2]) = jt_v3;
        }
      }
      if (tx == 0) {
        jt::tma_store_wait_read<0>();
      }
      jt::fence_proxy_async_shared();
      jt::named_barrier_sync(1, 128);
      if (tx == 0) {
        jt::tma_store_2d(&jt_tma_map2, reinterpret_cast<const unsigned char*>(acc_out_smem) + 0, (int)((bx * 128)), (int)((by * 128)));
        jt::tma_store_commit();
      }
      #pragma unroll
      for (int jt_r4 = 0; jt_r4 < 128; jt_r4 += 2) {
        if (((jt_r4 >> 5) & 1) == 1) {
          jt::vec<jt::half, 2> jt_v5;
          #pragma unroll
          for (int u = 0; u < 2; ++u) jt_v5.v[u] = jt::cast<jt::half>(acc_frag[jt_r4 + u]);
          *reinterpret_cast<jt::vec<jt::half, 2>*>(&acc_out_smem[jt::swizzle_bytes<7>(((((((tx & 3) << 1)) | ((jt_r4 & 1) | (((jt_r4 >> 2) & 15) << 3)))) / 64) * 16384 + (((((tx >> 2) & 7) | (((tx >> 5) & 3) << 4)) | ((((jt_r4 >> 1) & 1) << 3) | (((jt_r4 >> 6) & 1) << 6)))) * 128 + ((((((tx & 3) << 1)) | ((jt_r4 & 1) | (((jt_r4 >> 2) & 15) << 3)))) % 64) * 2) / 2]) = jt_v5;
        }
      }
      if (tx == 0) {
        jt::tma_store_wait_read<0>();
      }
      jt::fence_proxy_async_shared();
      jt::named_barrier_sync(1, 128);
      if (tx == 0) {
        jt::tma_store_2d(&jt_tma_map2, reinterpret_cast<const unsigned char*>(acc_out_smem) + 16384, (int)(((bx * 128) + 64)), (int)((by * 128)));
        jt::tma_store_commit();
      }
    }
    jt::tma_store_wait_read<0>();  // the TMA engine has read the tiles it stores
  }
}
