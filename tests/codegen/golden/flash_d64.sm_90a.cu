// jtile kernel flash_fwd_d64 from flash_attention.py:25
// target sm_90a, jtile <version>
#include "jtile/device.cuh"

__device__ __forceinline__ void jt_wgmma_m64n128k16_f16_ss_nn(float* d, unsigned long long a, unsigned long long b, int accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "l"(a), "l"(b), "r"(accumulate));
}

__device__ __forceinline__ void jt_wgmma_m64n128k16_f16_ss_nn_zero(float* d, unsigned long long a, unsigned long long b) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1, 0, 0;\n}\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3]), "=f"(d[4]), "=f"(d[5]), "=f"(d[6]), "=f"(d[7]), "=f"(d[8]), "=f"(d[9]), "=f"(d[10]), "=f"(d[11]), "=f"(d[12]), "=f"(d[13]), "=f"(d[14]), "=f"(d[15]), "=f"(d[16]), "=f"(d[17]), "=f"(d[18]), "=f"(d[19]), "=f"(d[20]), "=f"(d[21]), "=f"(d[22]), "=f"(d[23]), "=f"(d[24]), "=f"(d[25]), "=f"(d[26]), "=f"(d[27]), "=f"(d[28]), "=f"(d[29]), "=f"(d[30]), "=f"(d[31]), "=f"(d[32]), "=f"(d[33]), "=f"(d[34]), "=f"(d[35]), "=f"(d[36]), "=f"(d[37]), "=f"(d[38]), "=f"(d[39]), "=f"(d[40]), "=f"(d[41]), "=f"(d[42]), "=f"(d[43]), "=f"(d[44]), "=f"(d[45]), "=f"(d[46]), "=f"(d[47]), "=f"(d[48]), "=f"(d[49]), "=f"(d[50]), "=f"(d[51]), "=f"(d[52]), "=f"(d[53]), "=f"(d[54]), "=f"(d[55]), "=f"(d[56]), "=f"(d[57]), "=f"(d[58]), "=f"(d[59]), "=f"(d[60]), "=f"(d[61]), "=f"(d[62]), "=f"(d[63])
      : "l"(a), "l"(b), "r"(0));
}

__device__ __forceinline__ void jt_wgmma_m64n64k16_f16_rs_nt(float* d, const unsigned* a, unsigned long long b, int accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(accumulate));
}

extern "C" __global__ void __launch_bounds__(384, 1) flash_fwd_d64(const jt::half* __restrict__ Q, const jt::half* __restrict__ K, const jt::half* __restrict__ V, jt::half* __restrict__ O, const __grid_constant__ jt::TensorMap jt_tma_map0, const __grid_constant__ jt::TensorMap jt_tma_map1, const __grid_constant__ jt::TensorMap jt_tma_map2) {
  extern __shared__ __align__(1024) unsigned char jt_smem[];
  const int tx = threadIdx.x;
  const int bx = blockIdx.x;
  const int by = blockIdx.y;
  const int bz = blockIdx.z;
  jt::half* q_smem = reinterpret_cast<jt::half*>(jt_smem + 65536);
  jt::half* k_smem = reinterpret_cast<jt::half*>(jt_smem + 0);
  jt::half* v_smem = reinterpret_cast<jt::half*>(jt_smem + 32768);
  float s_frag[64];
  jt::half p_frag[64];
  float acc_frag[32];
  float m_frag[2];
  float m_prev_frag[2];
  float rescale_frag[2];
  float l_frag[2];
  float l_tile_frag[2];
  jt::half* acc_out_smem = reinterpret_cast<jt::half*>(jt_smem + 0);
  __shared__ __align__(8) unsigned long long jt_full_bar[2];
  __shared__ __align__(8) unsigned long long jt_empty_bar[2];
  if (tx == 0) {
    for (int s = 0; s < 2; ++s) {
      jt::mbarrier_init(&jt_full_bar[s], 1);
      jt::mbarrier_init(&jt_empty_bar[s], 8);
    }
    jt::fence_barrier_init();
  }
  __syncthreads();
  if (tx >= 256) {
    jt::setmaxnreg_dec<24>();
    if (tx == 256) {
      jt::tma_prefetch_map(&jt_tma_map0);
      jt::tma_prefetch_map(&jt_tma_map1);
      jt::tma_prefetch_map(&jt_tma_map2);
      for (int k = 0; k < 2; ++k) {
        const int jt_it = k;
        const int s = jt_it % 2;
        if (jt_it >= 2) {
          jt::mbarrier_wait_parity(&jt_empty_bar[s], ((jt_it / 2) & 1) ^ 1);
        }
        jt::mbarrier_arrive_expect_tx(&jt_full_bar[s], 32768u);
        jt::tma_load_4d(reinterpret_cast<unsigned char*>(k_smem) + (s) * 16384 + 0, &jt_tma_map0, &jt_full_bar[s], (int)(0), (int)(by), (int)(((k) * 128)), (int)(bz));
        jt::tma_load_4d(reinterpret_cast<unsigned char*>(v_smem) + (s) * 16384 + 0, &jt_tma_map1, &jt_full_bar[s], (int)(0), (int)(by), (int)(((k) * 128)), (int)(bz));
      }
    }
  }
  else {
    jt::setmaxnreg_inc<240>();
    // flash_attention.py:51
    {
      #pragma unroll
      for (int jt_u2 = 0; jt_u2 < 4; ++jt_u2) {
        const int jt_c1 = jt_u2 * 256 + tx;
        jt::cp_async_16(&q_smem[jt::swizzle_bytes<7>((((jt_c1 * 8) % 64) / 64) * 16384 + (((jt_c1 * 8) / 64) % 128) * 128 + (((jt_c1 * 8) % 64) % 64) * 2) / 2], &Q[((((bz)) * 256 + ((bx * 128) + ((jt_c1 * 8) / 64) % 128)) * 2 + (by)) * 64 + ((jt_c1 * 8) % 64)]);
      }
    }
    // flash_attention.py:56
    #pragma unroll
    for (int jt_r3 = 0; jt_r3 < 32; ++jt_r3) acc_frag[jt_r3] = 0.0f;
    // flash_attention.py:57
    #pragma unroll
    for (int jt_r4 = 0; jt_r4 < 2; ++jt_r4) l_frag[jt_r4] = 0.0f;
    // flash_attention.py:58
    #pragma unroll
    for (int jt_r5 = 0; jt_r5 < 2; ++jt_r5) m_frag[jt_r5] = (-jt::infinity<float>());
    jt::cp_async_wait_all();
    jt::fence_proxy_async_shared();
    jt::named_barrier_sync(1, 256);
    // flash_attention.py:60
    {
      #pragma unroll 1
      for (int k_1 = 0; k_1 < 2; ++k_1) {
        jt::mbarrier_wait_parity(&jt_full_bar[(k_1 % 2)], (k_1 / 2) & 1);
        // flash_attention.py:76
        {
          const int jt_wg = tx >> 7;
          const int jt_wg_m = jt_wg % 2; (void)jt_wg_m;
          const int jt_wg_n = jt_wg / 2; (void)jt_wg_n;
          const unsigned long long jt_da = jt::wgmma_desc(reinterpret_cast<unsigned char*>(q_smem) + jt_wg_m * 8192, 16u, 1024u, 1u);
          const unsigned long long jt_db = jt::wgmma_desc(reinterpret_cast<unsigned char*>(k_smem) + ((k_1 % 2)) * 16384 + jt_wg_n * 16384, 16u, 1024u, 1u);
          jt::wgmma_fence();
          jt_wgmma_m64n128k16_f16_ss_nn_zero(&s_frag[0], jt_da + 0, jt_db + 0);
          jt_wgmma_m64n128k16_f16_ss_nn(&s_frag[0], jt_da + 2, jt_db + 2, 1);
          jt_wgmma_m64n128k16_f16_ss_nn(&s_frag[0], jt_da + 4, jt_db + 4, 1);
          jt_wgmma_m64n128k16_f16_ss_nn(&s_frag[0], jt_da + 6, jt_db + 6, 1);
          jt::wgmma_commit();
          jt::wgmma_wait<0>();
          jt::wgmma_hold(s_frag);
        }
        // flash_attention.py:77
        {
          #pragma unroll
          for (int jt_r6 = 0; jt_r6 < 2; ++jt_r6) m_prev_frag[jt_r6] = jt::cast<float>(m_frag[jt_r6]);
        }
        // flash_attention.py:78
        {
          float acc[2];
          acc[0] = jt::max(jt::max(jt::max(jt::max(jt::max(jt::cast<float>(s_frag[0]), jt::cast<float>(s_frag[1])), jt::max(jt::cast<float>(s_frag[4]), jt::cast<float>(s_frag[5]))), jt::max(jt::max(jt::cast<float>(s_frag[8]), jt::cast<float>(s_frag[9])), jt::max(jt::cast<float>(s_frag[12]), jt::cast<float>(s_frag[13])))), jt::max(jt::max(jt::max(jt::cast<float>(s_frag[16]), jt::cast<float>(s_frag[17])), jt::max(jt::cast<float>(s_frag[20]), jt::cast<float>(s_frag[21]))), jt::max(jt::max(jt::cast<float>(s_frag[24]), jt::cast<float>(s_frag[25])), jt::max(jt::cast<float>(s_frag[28]), jt::cast<float>(s_frag[29]))))), jt::max(jt::max(jt::max(jt::max(jt::cast<float>(s_frag[32]), jt::cast<float>(s_frag[33])), jt::max(jt::cast<float>(s_frag[36]), jt::cast<float>(s_frag[37]))), jt::max(jt::max(jt::cast<float>(s_frag[40]), jt::cast<float>(s_frag[41])), jt::max(jt::cast<float>(s_frag[44]), jt::cast<float>(s_frag[45])))), jt::max(jt::max(jt::max(jt::cast<float>(s_frag[48]), jt::cast<float>(s_frag[49])), jt::max(jt::cast<float>(s_frag[52]), jt::cast<float>(s_frag[53]))), jt::max(jt::max(jt::cast<float>(s_frag[56]), jt::cast<float>(s_frag[57])), jt::max(jt::cast<float>(s_frag[60]), jt::cast<float>(s_frag[61]))))));
          acc[1] = jt::max(jt::max(jt::max(jt::max(jt::max(jt::cast<float>(s_frag[2]), jt::cast<float>(s_frag[3])), jt::max(jt::cast<float>(s_frag[6]), jt::cast<float>(s_frag[7]))), jt::max(jt::max(jt::cast<float>(s_frag[10]), jt::cast<float>(s_frag[11])), jt::max(jt::cast<float>(s_frag[14]), jt::cast<float>(s_frag[15])))), jt::max(jt::max(jt::max(jt::cast<float>(s_frag[18]), jt::cast<float>(s_frag[19])), jt::max(jt::cast<float>(s_frag[22]), jt::cast<float>(s_frag[23]))), jt::max(jt::max(jt::cast<float>(s_frag[26]), jt::cast<float>(s_frag[27])), jt::max(jt::cast<float>(s_frag[30]), jt::cast<float>(s_frag[31]))))), jt::max(jt::max(jt::max(jt::max(jt::cast<float>(s_frag[34]), jt::cast<float>(s_frag[35])), jt::max(jt::cast<float>(s_frag[38]), jt::cast<float>(s_frag[39]))), jt::max(jt::max(jt::cast<float>(s_frag[42]), jt::cast<float>(s_frag[43])), jt::max(jt::cast<float>(s_frag[46]), jt::cast<float>(s_frag[47])))), jt::max(jt::max(jt::max(jt::cast<float>(s_frag[50]), jt::cast<float>(s_frag[51])), jt::max(jt::cast<float>(s_frag[54]), jt::cast<float>(s_frag[55]))), jt::max(jt::max(jt::cast<float>(s_frag[58]), jt::cast<float>(s_frag[59])), jt::max(jt::cast<float>(s_frag[62]), jt::cast<float>(s_frag[63]))))));
          #pragma unroll
          for (int q = 0; q < 2; ++q) acc[q] = jt::max(acc[q], jt::shfl_xor(acc[q], 1));
          #pragma unroll
          for (int q = 0; q < 2; ++q) acc[q] = jt::max(acc[q], jt::shfl_xor(acc[q], 2));
          m_frag[0] = jt::cast<float>(jt::max(jt::cast<float>(m_frag[0]), acc[0]));
          m_frag[1] = jt::cast<float>(jt::max(jt::cast<float>(m_frag[1]), acc[1]));
        }
        // flash_attention.py:79
        {
          #pragma unroll
          for (int jt_r7 = 0; jt_r7 < 2; ++jt_r7) {
            const int i = ((((tx >> 2) & 7) | (((tx >> 5) & 7) << 4)) | (((jt_r7 & 1) << 3))); (void)i;
            rescale_frag[(jt_r7 & 1)] = jt::exp2(((m_prev_frag[(jt_r7 & 1)] * 0.18033688011112042f) - (m_frag[(jt_r7 & 1)] * 0.18033688011112042f)));
          }
        }
        // flash_attention.py:81
        {
          #pragma unroll
          for (int jt_r8 = 0; jt_r8 < 64; ++jt_r8) {
            const int i_1 = ((((tx >> 2) & 7) | (((tx >> 5) & 7) << 4)) | ((((jt_r8 >> 1) & 1) << 3))); (void)i_1;
            const int j = ((((tx & 3) << 1)) | ((jt_r8 & 1) | (((jt_r8 >> 2) & 15) << 3))); (void)j;
            s_frag[(jt_r8 & 1) | (((jt_r8 >> 1) & 1) << 1) | (((jt_r8 >> 2) & 1) << 2) | (((jt_r8 >> 3) & 1) << 3) | (((jt_r8 >> 4) & 1) << 4) | (((jt_r8 >> 5) & 1) << 5)] = jt::exp2(((s_frag[(jt_r8 & 1) | (((jt_r8 >> 1) & 1) << 1) | (((jt_r8 >> 2) & 1) << 2) | (((jt_r8 >> 3) & 1) << 3) | (((jt_r8 >> 4) & 1) << 4) | (((jt_r8 >> 5) & 1) << 5)] * 0.18033688011112042f) - (m_frag[((jt_r8 >> 1) & 1)] * 0.18033688011112042f)));
          }
        }
        // flash_attention.py:83
        {
          float acc[2];
          acc[0] = (((((jt::cast<float>(s_frag[0]) + jt::cast<float>(s_frag[1])) + (jt::cast<float>(s_frag[4]) + jt::cast<float>(s_frag[5]))) + ((jt::cast<float>(s_frag[8]) + jt::cast<float>(s_frag[9])) + (jt::cast<float>(s_frag[12]) + jt::cast<float>(s_frag[13])))) + (((jt::cast<float>(s_frag[16]) + jt::cast<float>(s_frag[17])) + (jt::cast<float>(s_frag[20]) + jt::cast<float>(s_frag[21]))) + ((jt::cast<float>(s_frag[24]) + jt::cast<float>(s_frag[25])) + (jt::cast<float>(s_frag[28]) + jt::cast<float>(s_frag[29]))))) + ((((jt::cast<float>(s_frag[32]) + jt::cast<float>(s_frag[33])) + (jt::cast<float>(s_frag[36]) + jt::cast<float>(s_frag[37]))) + ((jt::cast<float>(s_frag[40]) + jt::cast<float>(s_frag[41])) + (jt::cast<float>(s_frag[44]) + jt::cast<float>(s_frag[45])))) + (((jt::cast<float>(s_frag[48]) + jt::cast<float>(s_frag[49])) + (jt::cast<float>(s_frag[52]) + jt::cast<float>(s_frag[53]))) + ((jt::cast<float>(s_frag[56]) + jt::cast<float>(s_frag[57])) + (jt::cast<float>(s_frag[60]) + jt::cast<float>(s_frag[61]))))));
          acc[1] = (((((jt::cast<float>(s_frag[2]) + jt::cast<float>(s_frag[3])) + (jt::cast<float>(s_frag[6]) + jt::cast<float>(s_frag[7]))) + ((jt::cast<float>(s_frag[10]) + jt::cast<float>(s_frag[11])) + (jt::cast<float>(s_frag[14]) + jt::cast<float>(s_frag[15])))) + (((jt::cast<float>(s_frag[18]) + jt::cast<float>(s_frag[19])) + (jt::cast<float>(s_frag[22]) + jt::cast<float>(s_frag[23]))) + ((jt::cast<float>(s_frag[26]) + jt::cast<float>(s_frag[27])) + (jt::cast<float>(s_frag[30]) + jt::cast<float>(s_frag[31]))))) + ((((jt::cast<float>(s_frag[34]) + jt::cast<float>(s_frag[35])) + (jt::cast<float>(s_frag[38]) + jt::cast<float>(s_frag[39]))) + ((jt::cast<float>(s_frag[42]) + jt::cast<float>(s_frag[43])) + (jt::cast<float>(s_frag[46]) + jt::cast<float>(s_frag[47])))) + (((jt::cast<float>(s_frag[50]) + jt::cast<float>(s_frag[51])) + (jt::cast<float>(s_frag[54]) + jt::cast<float>(s_frag[55]))) + ((jt::cast<float>(s_frag[58]) + jt::cast<float>(s_frag[59])) + (jt::cast<float>(s_frag[62]) + jt::cast<float>(s_frag[63]))))));
          #pragma unroll
          for (int q = 0; q < 2; ++q) acc[q] = acc[q] + jt::shfl_xor(acc[q], 1);
          #pragma unroll
          for (int q = 0; q < 2; ++q) acc[q] = acc[q] + jt::shfl_xor(acc[q], 2);
          l_tile_frag[0] = jt::cast<float>(acc[0]);
          l_tile_frag[1] = jt::cast<float>(acc[1]);
        }
        // flash_attention.py:84
        {
          #pragma unroll
          for (int jt_r9 = 0; jt_r9 < 2; ++jt_r9) {
            const int i_2 = ((((tx >> 2) & 7) | (((tx >> 5) & 7) << 4)) | (((jt_r9 & 1) << 3))); (void)i_2;
            l_frag[(jt_r9 & 1)] = ((l_frag[(jt_r9 & 1)] * rescale_frag[(jt_r9 & 1)]) + l_tile_frag[(jt_r9 & 1)]);
          }
        }
        // flash_attention.py:86
        {
          #pragma unroll
          for (int jt_r10 = 0; jt_r10 < 64; ++jt_r10) p_frag[jt_r10] = jt::cast<jt::half>(s_frag[jt_r10]);
        }
        // flash_attention.py:87
        {
          #pragma unroll
          for (int jt_r11 = 0; jt_r11 < 32; ++jt_r11) {
            const int i_3 = ((((tx >> 2) & 7) | (((tx >> 5) & 7) << 4)) | ((((jt_r11 >> 1) & 1) << 3))); (void)i_3;
            const int j_1 = ((((tx & 3) << 1)) | ((jt_r11 & 1) | (((jt_r11 >> 2) & 7) << 3))); (void)j_1;
            acc_frag[(jt_r11 & 1) | (((jt_r11 >> 1) & 1) << 1) | (((jt_r11 >> 2) & 1) << 2) | (((jt_r11 >> 3) & 1) << 3) | (((jt_r11 >> 4) & 1) << 4)] = (acc_frag[(jt_r11 & 1) | (((jt_r11 >> 1) & 1) << 1) | (((jt_r11 >> 2) & 1) << 2) | (((jt_r11 >> 3) & 1) << 3) | (((jt_r11 >> 4) & 1) << 4)] * rescale_frag[((jt_r11 >> 1) & 1)]);
          }
        }
        // flash_attention.py:89
        {
          const int jt_wg = tx >> 7;
          const int jt_wg_m = jt_wg % 2; (void)jt_wg_m;
          const int jt_wg_n = jt_wg / 2; (void)jt_wg_n;
          const unsigned long long jt_db = jt::wgmma_desc(reinterpret_cast<unsigned char*>(v_smem) + ((k_1 % 2)) * 16384 + jt_wg_n * 16384, 16384u, 1024u, 1u);
          const unsigned jt_a0_0[4] = {jt::pack2(p_frag[0], p_frag[1]), jt::pack2(p_frag[2], p_frag[3]), jt::pack2(p_frag[4], p_frag[5]), jt::pack2(p_frag[6], p_frag[7])};
          const unsigned jt_a1_0[4] = {jt::pack2(p_frag[8], p_frag[9]), jt::pack2(p_frag[10], p_frag[11]), jt::pack2(p_frag[12], p_frag[13]), jt::pack2(p_frag[14], p_frag[15])};
          const unsigned jt_a2_0[4] = {jt::pack2(p_frag[16], p_frag[17]), jt::pack2(p_frag[18], p_frag[19]), jt::pack2(p_frag[20], p_frag[21]), jt::pack2(p_frag[22], p_frag[23])};
          const unsigned jt_a3_0[4] = {jt::pack2(p_frag[24], p_frag[25]), jt::pack2(p_frag[26], p_frag[27]), jt::pack2(p_frag[28], p_frag[29]), jt::pack2(p_frag[30], p_frag[31])};
          const unsigned jt_a4_0[4] = {jt::pack2(p_frag[32], p_frag[33]), jt::pack2(p_frag[34], p_frag[35]), jt::pack2(p_frag[36], p_frag[37]), jt::pack2(p_frag[38], p_frag[39])};
          const unsigned jt_a5_0[4] = {jt::pack2(p_frag[40], p_frag[41]), jt::pack2(p_frag[42], p_frag[43]), jt::pack2(p_frag[44], p_frag[45]), jt::pack2(p_frag[46], p_frag[47])};
          const unsigned jt_a6_0[4] = {jt::pack2(p_frag[48], p_frag[49]), jt::pack2(p_frag[50], p_frag[51]), jt::pack2(p_frag[52], p_frag[53]), jt::pack2(p_frag[54], p_frag[55])};
          const unsigned jt_a7_0[4] = {jt::pack2(p_frag[56], p_frag[57]), jt::pack2(p_frag[58], p_frag[59]), jt::pack2(p_frag[60], p_frag[61]), jt::pack2(p_frag[62], p_frag[63])};
          jt::wgmma_fence();
          jt_wgmma_m64n64k16_f16_rs_nt(&acc_frag[0], jt_a0_0, jt_db + 0, 1);
          jt_wgmma_m64n64k16_f16_rs_nt(&acc_frag[0], jt_a1_0, jt_db + 128, 1);
          jt_wgmma_m64n64k16_f16_rs_nt(&acc_frag[0], jt_a2_0, jt_db + 256, 1);
          jt_wgmma_m64n64k16_f16_rs_nt(&acc_frag[0], jt_a3_0, jt_db + 384, 1);
          jt_wgmma_m64n64k16_f16_rs_nt(&acc_frag[0], jt_a4_0, jt_db + 512, 1);
          jt_wgmma_m64n64k16_f16_rs_nt(&acc_frag[0], jt_a5_0, jt_db + 640, 1);
          jt_wgmma_m64n64k16_f16_rs_nt(&acc_frag[0], jt_a6_0, jt_db + 768, 1);
          jt_wgmma_m64n64k16_f16_rs_nt(&acc_frag[0], jt_a7_0, jt_db + 896, 1);
          jt::wgmma_commit();
          jt::wgmma_wait<0>();
          jt::wgmma_hold(acc_frag);
        }
        __syncwarp();
        if ((tx & 31) == 0) {
          jt::mbarrier_arrive(&jt_empty_bar[(k_1 % 2)]);
        }
      }
    }
    // flash_attention.py:90
    {
      #pragma unroll
      for (int jt_r12 = 0; jt_r12 < 32; ++jt_r12) {
        const int i_4 = ((((tx >> 2) & 7) | (((tx >> 5) & 7) << 4)) | ((((jt_r12 >> 1) & 1) << 3))); (void)i_4;
        const int j_2 = ((((tx & 3) << 1)) | ((jt_r12 & 1) | (((jt_r12 >> 2) & 7) << 3))); (void)j_2;
        acc_frag[(jt_r12 & 1) | (((jt_r12 >> 1) & 1) << 1) | (((jt_r12 >> 2) & 1) << 2) | (((jt_r12 >> 3) & 1) << 3) | (((jt_r12 >> 4) & 1) << 4)] = (acc_frag[(jt_r12 & 1) | (((jt_r12 >> 1) & 1) << 1) | (((jt_r12 >> 2) & 1) << 2) | (((jt_r12 >> 3) & 1) << 3) | (((jt_r12 >> 4) & 1) << 4)] / l_frag[((jt_r12 >> 1) & 1)]);
      }
    }
    // flash_attention.py:92
    jt::fence_proxy_async_shared();
    jt::named_barrier_sync(1, 256);
    {
      #pragma unroll
      for (int jt_r13 = 0; jt_r13 < 32; jt_r13 += 2) {
        jt::vec<jt::half, 2> jt_v14;
        #pragma unroll
        for (int u = 0; u < 2; ++u) jt_v14.v[u] = jt::cast<jt::half>(acc_frag[jt_r13 + u]);
        *reinterpret_cast<jt::vec<jt::half, 2>*>(&acc_out_smem[jt::swizzle_bytes<7>(((((((tx & 3) << 1)) | ((jt_r13 & 1) | (((jt_r13 >> 2) & 7) << 3)))) / 64) * 16384 + (((((tx >> 2) & 7) | (((tx >> 5) & 7) << 4)) | ((((jt_r13 >> 1) & 1) << 3)))) * 128 + ((((((tx & 3) << 1)) | ((jt_r13 & 1) | (((jt_r13 >> 2) & 7) << 3)))) % 64) * 2) / 2]) = jt_v14;
      }
    }
    jt::fence_proxy_async_shared();
    jt::named_barrier_sync(1, 256);
    if (tx == 0) {
      jt::tma_store_4d(&jt_tma_map2, reinterpret_cast<const unsigned char*>(acc_out_smem) + 0, (int)(0), (int)(by), (int)((bx * 128)), (int)(bz));
      jt::tma_store_commit();
      jt::tma_store_wait_read<0>();
    }
  }
}
