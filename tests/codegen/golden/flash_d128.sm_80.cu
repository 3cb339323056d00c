// jtile kernel flash_fwd_d128 from flash_attention.py:25
// target sm_80, jtile <version>
#include "jtile/device.cuh"

extern "C" __global__ void __launch_bounds__(256) flash_fwd_d128(const jt::half* __restrict__ Q, const jt::half* __restrict__ K, const jt::half* __restrict__ V, jt::half* __restrict__ O) {
  extern __shared__ __align__(1024) unsigned char jt_smem[];
  const int tx = threadIdx.x;
  const int bx = blockIdx.x;
  const int by = blockIdx.y;
  const int bz = blockIdx.z;
  jt::half* q_smem = reinterpret_cast<jt::half*>(jt_smem + 32768);
  jt::half* k_smem = reinterpret_cast<jt::half*>(jt_smem + 0);
  jt::half* v_smem = reinterpret_cast<jt::half*>(jt_smem + 65536);
  float s_frag[32];
  jt::half p_frag[32];
  float acc_frag[64];
  float m_frag[2];
  float m_prev_frag[2];
  float rescale_frag[2];
  float l_frag[2];
  float l_tile_frag[2];
  jt::half* acc_out_smem = reinterpret_cast<jt::half*>(jt_smem + 0);
  // flash_attention.py:51
  {
    #pragma unroll
    for (int jt_u2 = 0; jt_u2 < 8; ++jt_u2) {
      const int jt_c1 = jt_u2 * 256 + tx;
      jt::cp_async_16(&q_smem[((((jt_c1 * 8) / 128) % 128)) * 128 + (((((jt_c1 * 8) % 128)) / 8) ^ (((((jt_c1 * 8) / 128) % 128)) % 8)) * 8 + (((jt_c1 * 8) % 128)) % 8], &Q[((((bz)) * 256 + ((bx * 128) + ((jt_c1 * 8) / 128) % 128)) * 2 + (by)) * 128 + ((jt_c1 * 8) % 128)]);
    }
  }
  // flash_attention.py:56
  #pragma unroll
  for (int jt_r3 = 0; jt_r3 < 64; ++jt_r3) acc_frag[jt_r3] = 0.0f;
  // flash_attention.py:57
  #pragma unroll
  for (int jt_r4 = 0; jt_r4 < 2; ++jt_r4) l_frag[jt_r4] = 0.0f;
  // flash_attention.py:58
  #pragma unroll
  for (int jt_r5 = 0; jt_r5 < 2; ++jt_r5) m_frag[jt_r5] = (-jt::infinity<float>());
  jt::cp_async_wait_all();
  __syncthreads();
  // flash_attention.py:60
  {
    // prologue: tiles 0..0 in flight
    if (0 < 4) {
      #pragma unroll
      for (int jt_u7 = 0; jt_u7 < 4; ++jt_u7) {
        const int jt_c6 = jt_u7 * 256 + tx;
        jt::cp_async_16(&k_smem[(0) * 8192 + ((((jt_c6 * 8) / 128) % 64)) * 128 + (((((jt_c6 * 8) % 128)) / 8) ^ (((((jt_c6 * 8) / 128) % 64)) % 8)) * 8 + (((jt_c6 * 8) % 128)) % 8], &K[((((bz)) * 256 + (((0) * 64) + ((jt_c6 * 8) / 128) % 64)) * 2 + (by)) * 128 + ((jt_c6 * 8) % 128)]);
      }
      #pragma unroll
      for (int jt_u9 = 0; jt_u9 < 4; ++jt_u9) {
        const int jt_c8 = jt_u9 * 256 + tx;
        jt::cp_async_16(&v_smem[(0) * 8192 + ((((jt_c8 * 8) / 128) % 64)) * 128 + (((((jt_c8 * 8) % 128)) / 8) ^ (((((jt_c8 * 8) / 128) % 64)) % 8)) * 8 + (((jt_c8 * 8) % 128)) % 8], &V[((((bz)) * 256 + (((0) * 64) + ((jt_c8 * 8) / 128) % 64)) * 2 + (by)) * 128 + ((jt_c8 * 8) % 128)]);
      }
    }
    jt::cp_async_commit();
    for (int k_1 = 0; k_1 < 4; ++k_1) {
      jt::cp_async_wait<0>();
      __syncthreads();
      if (k_1 + 1 < 4) {
        #pragma unroll
        for (int jt_u11 = 0; jt_u11 < 4; ++jt_u11) {
          const int jt_c10 = jt_u11 * 256 + tx;
          jt::cp_async_16(&k_smem[((k_1 + 1) % 2) * 8192 + ((((jt_c10 * 8) / 128) % 64)) * 128 + (((((jt_c10 * 8) % 128)) / 8) ^ (((((jt_c10 * 8) / 128) % 64)) % 8)) * 8 + (((jt_c10 * 8) % 128)) % 8], &K[((((bz)) * 256 + (((k_1 + 1) * 64) + ((jt_c10 * 8) / 128) % 64)) * 2 + (by)) * 128 + ((jt_c10 * 8) % 128)]);
        }
        #pragma unroll
        for (int jt_u13 = 0; jt_u13 < 4; ++jt_u13) {
          const int jt_c12 = jt_u13 * 256 + tx;
          jt::cp_async_16(&v_smem[((k_1 + 1) % 2) * 8192 + ((((jt_c12 * 8) / 128) % 64)) * 128 + (((((jt_c12 * 8) % 128)) / 8) ^ (((((jt_c12 * 8) / 128) % 64)) % 8)) * 8 + (((jt_c12 * 8) % 128)) % 8], &V[((((bz)) * 256 + (((k_1 + 1) * 64) + ((jt_c12 * 8) / 128) % 64)) * 2 + (by)) * 128 + ((jt_c12 * 8) % 128)]);
        }
      }
      jt::cp_async_commit();
      // flash_attention.py:76
      {
        const int jt_lane = tx & 31;
        const int jt_warp_m = (tx >> 5) % 8; (void)jt_warp_m;
        const int jt_warp_n = (tx >> 5) / 8;
        #pragma unroll
        for (int r = 0; r < 32; ++r) s_frag[r] = 0.0f;
        #pragma unroll
        for (int kk = 0; kk < 8; ++kk) {
          unsigned a[1][4];
          unsigned b[8][2];
          #pragma unroll
          for (int mi = 0; mi < 1; ++mi) {
            const int m0 = jt_warp_m * 16 + mi * 16;
            jt::ldmatrix_x4(a[mi], &q_smem[((m0 + (jt_lane & 15))) * 128 + ((((kk * 16 + (jt_lane >> 4) * 8)) / 8) ^ (((m0 + (jt_lane & 15))) % 8)) * 8 + ((kk * 16 + (jt_lane >> 4) * 8)) % 8]);
          }
          #pragma unroll
          for (int ni = 0; ni < 8; ni += 2) {
            const int n0 = jt_warp_n * 64 + ni * 8;
            unsigned r4[4];
            jt::ldmatrix_x4(r4, &k_smem[(k_1 % 2) * 8192 + ((n0 + (jt_lane & 7) + (jt_lane >> 4) * 8)) * 128 + ((((kk * 16 + ((jt_lane >> 3) & 1) * 8)) / 8) ^ (((n0 + (jt_lane & 7) + (jt_lane >> 4) * 8)) % 8)) * 8 + ((kk * 16 + ((jt_lane >> 3) & 1) * 8)) % 8]);
            b[ni][0] = r4[0]; b[ni][1] = r4[1]; b[ni + 1][0] = r4[2]; b[ni + 1][1] = r4[3];
          }
          #pragma unroll
          for (int mi = 0; mi < 1; ++mi) {
            #pragma unroll
            for (int ni = 0; ni < 8; ++ni) {
              jt::mma_m16n8k16_f16f32(*reinterpret_cast<float(*)[4]>(&s_frag[(mi * 8 + ni) * 4]), a[mi], b[ni]);
            }
          }
        }
      }
      // flash_attention.py:77
      {
        #pragma unroll
        for (int jt_r14 = 0; jt_r14 < 2; ++jt_r14) m_prev_frag[jt_r14] = jt::cast<float>(m_frag[jt_r14]);
      }
      // flash_attention.py:78
      {
        float acc[2];
        acc[0] = jt::max(jt::max(jt::max(jt::max(jt::cast<float>(s_frag[0]), jt::cast<float>(s_frag[1])), jt::max(jt::cast<float>(s_frag[4]), jt::cast<float>(s_frag[5]))), jt::max(jt::max(jt::cast<float>(s_frag[8]), jt::cast<float>(s_frag[9])), jt::max(jt::cast<float>(s_frag[12]), jt::cast<float>(s_frag[13])))), jt::max(jt::max(jt::max(jt::cast<float>(s_frag[16]), jt::cast<float>(s_frag[17])), jt::max(jt::cast<float>(s_frag[20]), jt::cast<float>(s_frag[21]))), jt::max(jt::max(jt::cast<float>(s_frag[24]), jt::cast<float>(s_frag[25])), jt::max(jt::cast<float>(s_frag[28]), jt::cast<float>(s_frag[29])))));
        acc[1] = jt::max(jt::max(jt::max(jt::max(jt::cast<float>(s_frag[2]), jt::cast<float>(s_frag[3])), jt::max(jt::cast<float>(s_frag[6]), jt::cast<float>(s_frag[7]))), jt::max(jt::max(jt::cast<float>(s_frag[10]), jt::cast<float>(s_frag[11])), jt::max(jt::cast<float>(s_frag[14]), jt::cast<float>(s_frag[15])))), jt::max(jt::max(jt::max(jt::cast<float>(s_frag[18]), jt::cast<float>(s_frag[19])), jt::max(jt::cast<float>(s_frag[22]), jt::cast<float>(s_frag[23]))), jt::max(jt::max(jt::cast<float>(s_frag[26]), jt::cast<float>(s_frag[27])), jt::max(jt::cast<float>(s_frag[30]), jt::cast<float>(s_frag[31])))));
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
        for (int jt_r15 = 0; jt_r15 < 2; ++jt_r15) {
          const int i = ((((tx >> 2) & 7) | (((tx >> 5) & 7) << 4)) | (((jt_r15 & 1) << 3))); (void)i;
          rescale_frag[(jt_r15 & 1)] = jt::exp2(((m_prev_frag[(jt_r15 & 1)] * 0.12751743082459868f) - (m_frag[(jt_r15 & 1)] * 0.12751743082459868f)));
        }
      }
      // flash_attention.py:81
      {
        #pragma unroll
        for (int jt_r16 = 0; jt_r16 < 32; ++jt_r16) {
          const int i_1 = ((((tx >> 2) & 7) | (((tx >> 5) & 7) << 4)) | ((((jt_r16 >> 1) & 1) << 3))); (void)i_1;
          const int j = ((((tx & 3) << 1)) | ((jt_r16 & 1) | (((jt_r16 >> 2) & 7) << 3))); (void)j;
          s_frag[(jt_r16 & 1) | (((jt_r16 >> 1) & 1) << 1) | (((jt_r16 >> 2) & 1) << 2) | (((jt_r16 >> 3) & 1) << 3) | (((jt_r16 >> 4) & 1) << 4)] = jt::exp2(((s_frag[(jt_r16 & 1) | (((jt_r16 >> 1) & 1) << 1) | (((jt_r16 >> 2) & 1) << 2) | (((jt_r16 >> 3) & 1) << 3) | (((jt_r16 >> 4) & 1) << 4)] * 0.12751743082459868f) - (m_frag[((jt_r16 >> 1) & 1)] * 0.12751743082459868f)));
        }
      }
      // flash_attention.py:83
      {
        float acc[2];
        acc[0] = ((((jt::cast<float>(s_frag[0]) + jt::cast<float>(s_frag[1])) + (jt::cast<float>(s_frag[4]) + jt::cast<float>(s_frag[5]))) + ((jt::cast<float>(s_frag[8]) + jt::cast<float>(s_frag[9])) + (jt::cast<float>(s_frag[12]) + jt::cast<float>(s_frag[13])))) + (((jt::cast<float>(s_frag[16]) + jt::cast<float>(s_frag[17])) + (jt::cast<float>(s_frag[20]) + jt::cast<float>(s_frag[21]))) + ((jt::cast<float>(s_frag[24]) + jt::cast<float>(s_frag[25])) + (jt::cast<float>(s_frag[28]) + jt::cast<float>(s_frag[29])))));
        acc[1] = ((((jt::cast<float>(s_frag[2]) + jt::cast<float>(s_frag[3])) + (jt::cast<float>(s_frag[6]) + jt::cast<float>(s_frag[7]))) + ((jt::cast<float>(s_frag[10]) + jt::cast<float>(s_frag[11])) + (jt::cast<float>(s_frag[14]) + jt::cast<float>(s_frag[15])))) + (((jt::cast<float>(s_frag[18]) + jt::cast<float>(s_frag[19])) + (jt::cast<float>(s_frag[22]) + jt::cast<float>(s_frag[23]))) + ((jt::cast<float>(s_frag[26]) + jt::cast<float>(s_frag[27])) + (jt::cast<float>(s_frag[30]) + jt::cast<float>(s_frag[31])))));
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
        for (int jt_r17 = 0; jt_r17 < 2; ++jt_r17) {
          const int i_2 = ((((tx >> 2) & 7) | (((tx >> 5) & 7) << 4)) | (((jt_r17 & 1) << 3))); (void)i_2;
          l_frag[(jt_r17 & 1)] = ((l_frag[(jt_r17 & 1)] * rescale_frag[(jt_r17 & 1)]) + l_tile_frag[(jt_r17 & 1)]);
        }
      }
      // flash_attention.py:86
      {
        #pragma unroll
        for (int jt_r18 = 0; jt_r18 < 32; ++jt_r18) p_frag[jt_r18] = jt::cast<jt::half>(s_frag[jt_r18]);
      }
      // flash_attention.py:87
      {
        #pragma unroll
        for (int jt_r19 = 0; jt_r19 < 64; ++jt_r19) {
          const int i_3 = ((((tx >> 2) & 7) | (((tx >> 5) & 7) << 4)) | ((((jt_r19 >> 1) & 1) << 3))); (void)i_3;
          const int j_1 = ((((tx & 3) << 1)) | ((jt_r19 & 1) | (((jt_r19 >> 2) & 15) << 3))); (void)j_1;
          acc_frag[(jt_r19 & 1) | (((jt_r19 >> 1) & 1) << 1) | (((jt_r19 >> 2) & 1) << 2) | (((jt_r19 >> 3) & 1) << 3) | (((jt_r19 >> 4) & 1) << 4) | (((jt_r19 >> 5) & 1) << 5)] = (acc_frag[(jt_r19 & 1) | (((jt_r19 >> 1) & 1) << 1) | (((jt_r19 >> 2) & 1) << 2) | (((jt_r19 >> 3) & 1) << 3) | (((jt_r19 >> 4) & 1) << 4) | (((jt_r19 >> 5) & 1) << 5)] * rescale_frag[((jt_r19 >> 1) & 1)]);
        }
      }
      // flash_attention.py:89
      {
        const int jt_lane = tx & 31;
        const int jt_warp_m = (tx >> 5) % 8; (void)jt_warp_m;
        const int jt_warp_n = (tx >> 5) / 8;
        #pragma unroll
        for (int kk = 0; kk < 4; ++kk) {
          unsigned a[1][4];
          unsigned b[16][2];
          #pragma unroll
          for (int mi = 0; mi < 1; ++mi) {
            const int base = 8 * (kk + 4 * mi);
            a[mi][0] = jt::pack2(p_frag[base + 0], p_frag[base + 1]);
            a[mi][1] = jt::pack2(p_frag[base + 2], p_frag[base + 3]);
            a[mi][2] = jt::pack2(p_frag[base + 4], p_frag[base + 5]);
            a[mi][3] = jt::pack2(p_frag[base + 6], p_frag[base + 7]);
          }
          #pragma unroll
          for (int ni = 0; ni < 16; ni += 2) {
            const int n0 = jt_warp_n * 128 + ni * 8;
            unsigned r4[4];
            jt::ldmatrix_x4_trans(r4, &v_smem[(k_1 % 2) * 8192 + ((kk * 16 + (jt_lane & 7) + ((jt_lane >> 3) & 1) * 8)) * 128 + ((((n0 + (jt_lane >> 4) * 8)) / 8) ^ (((kk * 16 + (jt_lane & 7) + ((jt_lane >> 3) & 1) * 8)) % 8)) * 8 + ((n0 + (jt_lane >> 4) * 8)) % 8]);
            b[ni][0] = r4[0]; b[ni][1] = r4[1]; b[ni + 1][0] = r4[2]; b[ni + 1][1] = r4[3];
          }
          #pragma unroll
          for (int mi = 0; mi < 1; ++mi) {
            #pragma unroll
            for (int ni = 0; ni < 16; ++ni) {
              jt::mma_m16n8k16_f16f32(*reinterpret_cast<float(*)[4]>(&acc_frag[(mi * 16 + ni) * 4]), a[mi], b[ni]);
            }
          }
        }
      }
    }
    jt::cp_async_wait_all();
  }
  // flash_attention.py:90
  {
    #pragma unroll
    for (int jt_r20 = 0; jt_r20 < 64; ++jt_r20) {
      const int i_4 = ((((tx >> 2) & 7) | (((tx >> 5) & 7) << 4)) | ((((jt_r20 >> 1) & 1) << 3))); (void)i_4;
      const int j_2 = ((((tx & 3) << 1)) | ((jt_r20 & 1) | (((jt_r20 >> 2) & 15) << 3))); (void)j_2;
      acc_frag[(jt_r20 & 1) | (((jt_r20 >> 1) & 1) << 1) | (((jt_r20 >> 2) & 1) << 2) | (((jt_r20 >> 3) & 1) << 3) | (((jt_r20 >> 4) & 1) << 4) | (((jt_r20 >> 5) & 1) << 5)] = (acc_frag[(jt_r20 & 1) | (((jt_r20 >> 1) & 1) << 1) | (((jt_r20 >> 2) & 1) << 2) | (((jt_r20 >> 3) & 1) << 3) | (((jt_r20 >> 4) & 1) << 4) | (((jt_r20 >> 5) & 1) << 5)] / l_frag[((jt_r20 >> 1) & 1)]);
    }
  }
  // flash_attention.py:92
  __syncthreads();
  {
    #pragma unroll
    for (int jt_r21 = 0; jt_r21 < 64; jt_r21 += 2) {
      jt::vec<jt::half, 2> jt_v22;
      #pragma unroll
      for (int u = 0; u < 2; ++u) jt_v22.v[u] = jt::cast<jt::half>(acc_frag[jt_r21 + u]);
      *reinterpret_cast<jt::vec<jt::half, 2>*>(&acc_out_smem[((((((tx >> 2) & 7) | (((tx >> 5) & 7) << 4)) | ((((jt_r21 >> 1) & 1) << 3))))) * 128 + ((((((((tx & 3) << 1)) | ((jt_r21 & 1) | (((jt_r21 >> 2) & 15) << 3))))) / 8) ^ (((((((tx >> 2) & 7) | (((tx >> 5) & 7) << 4)) | ((((jt_r21 >> 1) & 1) << 3))))) % 8)) * 8 + ((((((tx & 3) << 1)) | ((jt_r21 & 1) | (((jt_r21 >> 2) & 15) << 3))))) % 8]) = jt_v22;
    }
  }
  __syncthreads();
  {
    #pragma unroll
    for (int jt_u24 = 0; jt_u24 < 8; ++jt_u24) {
      const int jt_c23 = jt_u24 * 256 + tx;
      jt::vec<jt::half, 8> jt_v25;
      jt_v25 = *reinterpret_cast<const jt::vec<jt::half, 8>*>(&acc_out_smem[((((jt_c23 * 8) / 128) % 128)) * 128 + (((((jt_c23 * 8) % 128)) / 8) ^ (((((jt_c23 * 8) / 128) % 128)) % 8)) * 8 + (((jt_c23 * 8) % 128)) % 8]);
      jt::vec<jt::half, 8> jt_v26;
      for (int u = 0; u < 8; ++u) jt_v26.v[u] = jt::cast<jt::half>(jt_v25.v[u]);
      *reinterpret_cast<jt::vec<jt::half, 8>*>(&O[((((bz)) * 256 + ((bx * 128) + ((jt_c23 * 8) / 128) % 128)) * 2 + (by)) * 128 + ((jt_c23 * 8) % 128)]) = jt_v26;
    }
  }
}
