// jtile kernel scaled_rows from producer_consumer.py:35
// target sm_90a, jtile <version>
#include "jtile/device.cuh"

extern "C" __global__ void __launch_bounds__(256) scaled_rows(const float* __restrict__ X, float* __restrict__ O) {
  extern __shared__ __align__(1024) unsigned char jt_smem[];
  const int tx = threadIdx.x;
  const int bx = blockIdx.x;
  float* ring_smem = reinterpret_cast<float*>(jt_smem + 0);
  __shared__ __align__(8) unsigned long long full_bar[2];
  __shared__ __align__(8) unsigned long long empty_bar[2];
  if (tx == 0) {
    jt::mbarrier_init(&full_bar[0], 128);
    jt::mbarrier_init(&full_bar[1], 128);
    jt::mbarrier_init(&empty_bar[0], 128);
    jt::mbarrier_init(&empty_bar[1], 128);
    jt::fence_barrier_init();
  }
  __syncthreads();
  // producer_consumer.py:49
  for (int k = 0; k < 16; ++k) {
    // producer_consumer.py:51
    if ((tx < 128)) {
      // producer_consumer.py:52
      if ((k >= 2)) {
        // producer_consumer.py:53
        jt::mbarrier_wait_parity(&empty_bar[(k % 2)], (unsigned)((((k / 2) + 1) % 2)));
      }
      ring_smem[(((k % 2))) * 128 + (tx)] = (((unsigned)(((bx * 128) + tx)) < 512u) ? X[((k)) * 512 + (((bx * 128) + tx))] : 0.0f);
      // producer_consumer.py:55
      jt::mbarrier_arrive(&full_bar[(k % 2)]);
    }
    else {
      // producer_consumer.py:57
      jt::mbarrier_wait_parity(&full_bar[(k % 2)], (unsigned)(((k / 2) % 2)));
      if ((unsigned)(((bx * 128) + (tx - 128))) < 512u) O[((k)) * 512 + (((bx * 128) + (tx - 128)))] = (ring_smem[(((k % 2))) * 128 + ((tx - 128))] * jt::cast<float>((k + 1)));
      // producer_consumer.py:60
      jt::mbarrier_arrive(&empty_bar[(k % 2)]);
    }
    __syncthreads();
  }
}
