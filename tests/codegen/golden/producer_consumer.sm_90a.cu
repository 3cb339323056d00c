// jtile kernel scaled_rows from producer_consumer.py:25
// target sm_90a, jtile <version>
#include "jtile/device.cuh"

extern "C" __global__ void __launch_bounds__(128) scaled_rows(const float* __restrict__ X, float* __restrict__ O) {
  extern __shared__ __align__(1024) unsigned char jt_smem[];
  const int tx = threadIdx.x;
  const int bx = blockIdx.x;
  float* ring_smem = reinterpret_cast<float*>(jt_smem + 0);
  __shared__ __align__(8) unsigned long long full_bar[2];
  if (tx == 0) {
    jt::mbarrier_init(&full_bar[0], 128);
    jt::mbarrier_init(&full_bar[1], 128);
    jt::fence_barrier_init();
  }
  __syncthreads();
  // producer_consumer.py:32
  for (int k = 0; k < 16; ++k) {
    // producer_consumer.py:34
    {
      #pragma unroll
      for (int jt_u2 = 0; jt_u2 < 2; ++jt_u2) {
        const int jt_e1 = jt_u2 * 128 + tx;
        const int i = jt_e1 % 256;
        ring_smem[(((k % 2))) * 256 + (i)] = X[((k)) * 512 + (((bx * 256) + i))];
      }
    }
    // producer_consumer.py:36
    jt::mbarrier_arrive(&full_bar[(k % 2)]);
    // producer_consumer.py:37
    jt::mbarrier_wait_parity(&full_bar[(k % 2)], (unsigned)(((k / 2) % 2)));
    __syncthreads();
    // producer_consumer.py:38
    {
      #pragma unroll
      for (int jt_u4 = 0; jt_u4 < 2; ++jt_u4) {
        const int jt_e3 = jt_u4 * 128 + tx;
        const int i_1 = jt_e3 % 256;
        O[((k)) * 512 + (((bx * 256) + i_1))] = (ring_smem[(((k % 2))) * 256 + (i_1)] * jt::cast<float>((k + 1)));
      }
    }
    __syncthreads();
  }
}
