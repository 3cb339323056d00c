// jtile device header: warp-level tensor core ops (ldmatrix, stmatrix, mma.sync).
//
// Fragment layouts, from the PTX ISA sections "Matrix Fragments for
// mma.m16n8k16 with floating point type" and "Matrix Fragments for mma.m16n8k8"
// (.tf32). With lane = laneid, g = lane / 4 (groupID) and t = lane % 4
// (threadID_in_group):
//
//   m16n8k16, f16/bf16 (a 32-bit register holds two 16-bit elements, the lower
//   column / k index in bits 0..15):
//     A 16x16 row-major, a[4]: a[0] = A[g  ][2t..2t+1]   a[1] = A[g+8][2t..2t+1]
//                              a[2] = A[g  ][2t+8..2t+9] a[3] = A[g+8][2t+8..2t+9]
//     B 16x8 (k x n) "col",   b[2]: b[0] = B[2t..2t+1][g] b[1] = B[2t+8..2t+9][g]
//     C/D 16x8 f32,            d[4]: d[0] = C[g][2t]   d[1] = C[g][2t+1]
//                                    d[2] = C[g+8][2t] d[3] = C[g+8][2t+1]
//   m16n8k8, tf32 (one element per register):
//     A 16x8, a[4]: a[0] = A[g][t]  a[1] = A[g+8][t]  a[2] = A[g][t+4]  a[3] = A[g+8][t+4]
//     B 8x8,  b[2]: b[0] = B[t][g]  b[1] = B[t+4][g]
//     C/D as for m16n8k16.
//
// ldmatrix (PTX "Warp-level matrix load instruction: ldmatrix") loads 8x8
// matrices of b16: for matrix i, lanes 8i..8i+7 give the addresses of its
// rows 0..7 (16 contiguous bytes each, 16-byte aligned), and r[i] of lane l
// receives row l / 4, columns 2(l % 4) and 2(l % 4) + 1 -- exactly the
// A/B register layout above. So an A tile 16x16 is one ldmatrix_x4 with lane l
// pointing at row l % 16, column 8 (l / 16); .trans loads a k-major B tile.
#pragma once

#include "copy.cuh"

namespace jt {

// --- ldmatrix: shared -> registers (LDSM, sm_75+) ---------------------------
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 750

// ldmatrix.sync.aligned.m8n8.x1.shared.b16 (sm_75+). Lanes 0..7 give addresses.
__device__ __forceinline__ void ldmatrix_x1(unsigned (&r)[1], const void* smem_row_ptr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];\n"
               : "=r"(r[0])
               : "r"(detail::smem_addr(smem_row_ptr)));
}

// ldmatrix.sync.aligned.m8n8.x2.shared.b16 (sm_75+). Lanes 0..15 give addresses.
__device__ __forceinline__ void ldmatrix_x2(unsigned (&r)[2], const void* smem_row_ptr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(detail::smem_addr(smem_row_ptr)));
}

// ldmatrix.sync.aligned.m8n8.x4.shared.b16 (sm_75+). All 32 lanes give addresses.
__device__ __forceinline__ void ldmatrix_x4(unsigned (&r)[4], const void* smem_row_ptr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(detail::smem_addr(smem_row_ptr)));
}

// ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 (sm_75+): each 8x8 transposed.
__device__ __forceinline__ void ldmatrix_x1_trans(unsigned (&r)[1], const void* smem_row_ptr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 {%0}, [%1];\n"
               : "=r"(r[0])
               : "r"(detail::smem_addr(smem_row_ptr)));
}

// ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 (sm_75+).
__device__ __forceinline__ void ldmatrix_x2_trans(unsigned (&r)[2], const void* smem_row_ptr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(detail::smem_addr(smem_row_ptr)));
}

// ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 (sm_75+).
__device__ __forceinline__ void ldmatrix_x4_trans(unsigned (&r)[4], const void* smem_row_ptr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(detail::smem_addr(smem_row_ptr)));
}

#endif  // sm_75

// --- stmatrix: registers -> shared (STSM, sm_90+), the inverse of ldmatrix --
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900

// stmatrix.sync.aligned.m8n8.x1.shared.b16 (sm_90+). Lanes 0..7 give addresses.
__device__ __forceinline__ void stmatrix_x1(void* smem_row_ptr, const unsigned (&r)[1]) {
  asm volatile("stmatrix.sync.aligned.m8n8.x1.shared.b16 [%0], {%1};\n"
               ::"r"(detail::smem_addr(smem_row_ptr)), "r"(r[0])
               : "memory");
}

// stmatrix.sync.aligned.m8n8.x2.shared.b16 (sm_90+). Lanes 0..15 give addresses.
__device__ __forceinline__ void stmatrix_x2(void* smem_row_ptr, const unsigned (&r)[2]) {
  asm volatile("stmatrix.sync.aligned.m8n8.x2.shared.b16 [%0], {%1, %2};\n"
               ::"r"(detail::smem_addr(smem_row_ptr)), "r"(r[0]), "r"(r[1])
               : "memory");
}

// stmatrix.sync.aligned.m8n8.x4.shared.b16 (sm_90+). All 32 lanes give addresses.
__device__ __forceinline__ void stmatrix_x4(void* smem_row_ptr, const unsigned (&r)[4]) {
  asm volatile("stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1, %2, %3, %4};\n"
               ::"r"(detail::smem_addr(smem_row_ptr)), "r"(r[0]), "r"(r[1]), "r"(r[2]), "r"(r[3])
               : "memory");
}

// stmatrix.sync.aligned.m8n8.x4.trans.shared.b16 (sm_90+): each 8x8 transposed.
__device__ __forceinline__ void stmatrix_x4_trans(void* smem_row_ptr, const unsigned (&r)[4]) {
  asm volatile("stmatrix.sync.aligned.m8n8.x4.trans.shared.b16 [%0], {%1, %2, %3, %4};\n"
               ::"r"(detail::smem_addr(smem_row_ptr)), "r"(r[0]), "r"(r[1]), "r"(r[2]), "r"(r[3])
               : "memory");
}

#endif  // sm_90

// --- mma.sync: d += a * b with f32 accumulators (HMMA, sm_80+) --------------
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800

// mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 (sm_80+).
__device__ __forceinline__ void mma_m16n8k16_f16f32(float (&d)[4], const unsigned (&a)[4],
                                                    const unsigned (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
      "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// mma.sync.aligned.m16n8k16.row.col.f16.f16.f16.f16 (sm_80+): a float16 accumulator, two
// halves a register (d[0] = c0, c1; d[1] = c2, c3).
__device__ __forceinline__ void mma_m16n8k16_f16f16(unsigned (&d)[2], const unsigned (&a)[4],
                                                    const unsigned (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f16.f16.f16.f16 "
      "{%0, %1}, {%2, %3, %4, %5}, {%6, %7}, {%0, %1};\n"
      : "+r"(d[0]), "+r"(d[1])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 (sm_80+).
__device__ __forceinline__ void mma_m16n8k16_bf16f32(float (&d)[4], const unsigned (&a)[4],
                                                     const unsigned (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
      "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 (sm_80+). Registers hold
// tf32 bit patterns, see float_to_tf32.
__device__ __forceinline__ void mma_m16n8k8_tf32f32(float (&d)[4], const unsigned (&a)[4],
                                                    const unsigned (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 "
      "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// Round f32 to tf32 (10-bit mantissa, nearest, ties away from zero), kept in a
// 32-bit register: cvt.rna.tf32.f32 (sm_80+).
__device__ __forceinline__ unsigned float_to_tf32(float x) {
  unsigned r;
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
  return r;
}

#endif  // sm_80

}  // namespace jt
