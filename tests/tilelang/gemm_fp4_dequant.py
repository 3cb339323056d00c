"""Weight-only FP4 GEMM: C = A @ dequant(B)^T, as TileLang's dequantize_gemm examples write it.

B (N, K) holds 4-bit floats (sign, 2 exponent bits, 1 mantissa bit) packed two to a byte, low
nibble first, with one power-of-two exponent per `scale_size` columns in Scale (N, K //
scale_size). Each pipelined step copies a packed tile to shared memory, expands it with integer
bit operations into bf16/f16 bit patterns (`T.reinterpret`), multiplies by 2**Scale, and feeds
the dequantised tile to `T.gemm(..., transpose_B=True)` with float32 accumulation.

TileLang's example first copies the packed tile to a fragment and reads byte `j // 2` of it in
`T.Parallel` (packed_in_fragment=True: the fragment's layout follows the loop's through the
index map); by default the loop reads the packed bytes from shared memory.
Like TileLang's example, the output tile C_shared is annotated swizzled (swizzle_epilogue).
"""

import numpy as np

import jtile.language as T


def _fp4_to_float(nbit, val, pos, dtype):
    """Nibble `pos` of the packed byte `val` as a bf16/f16 (an fp4 exponent of 0 is not a zero:
    every code is a normal number, as in TileLang's simple conversion)."""
    assert nbit == 4
    mask = T.uint16((1 << nbit) - 1)
    f4 = (val >> (pos.astype("uint16") * T.uint16(nbit))) & mask
    s = f4 >> T.uint16(3)
    e_f4 = (f4 & T.uint16(6)) >> T.uint16(1)
    m_f4 = f4 & T.uint16(1)
    if dtype == "bfloat16":
        # Exponent biases: bf16 127, fp4 1, so e_bf16 = e_f4 + 126; 7 mantissa bits.
        e = e_f4 + T.uint16(126)
        bits = (((s << T.uint16(8)) | e) << T.uint16(7)) | (m_f4 << T.uint16(6))
    else:
        # Exponent biases: f16 15, fp4 1, so e_f16 = e_f4 + 14; 10 mantissa bits.
        e = e_f4 + T.uint16(14)
        bits = (((s << T.uint16(5)) | e) << T.uint16(10)) | (m_f4 << T.uint16(9))
    return T.reinterpret(dtype, bits.astype("uint16"))


def matmul(M, N, K, block_M, block_N, block_K, in_dtype="bfloat16", out_dtype="bfloat16",
           accum_dtype="float32", num_bits=4, scale_size=32, storage_dtype="uint8",
           num_stages=2, threads=128, packed_in_fragment=False,
           swizzle_epilogue=True):
    num_elems_per_byte = 8 // num_bits
    QK = K // num_elems_per_byte
    Block_QK = block_K // num_elems_per_byte
    A_shape = (M, K)
    B_shape = (N, QK)
    Scale_shape = (N, K // scale_size)
    A_shared_shape = (block_M, block_K)
    B_shared_shape = (block_N, Block_QK)
    B_dequantize_shared_shape = (block_N, block_K)
    assert K % block_K == 0 and block_K % scale_size == 0

    @T.macro
    def simple_dequant(B_shared, B_dequantize_shared, Scale, k):
        B_dequantize_local = T.alloc_fragment(B_dequantize_shared_shape, in_dtype)
        bx = T.get_block_binding(0)
        if packed_in_fragment:
            # TileLang's form: the packed tile goes to a fragment first, and the loop reads
            # byte j // 2 of it.
            B_packed = T.alloc_fragment(B_shared_shape, storage_dtype)
            T.copy(B_shared, B_packed)
        else:
            B_packed = B_shared
        for i, j in T.Parallel(block_N, block_K):
            B_dequantize_local[i, j] = _fp4_to_float(
                num_bits,
                B_packed[i, j // num_elems_per_byte],
                j % num_elems_per_byte,
                dtype=in_dtype,
            ) * (1 << Scale[bx * block_N + i, k * block_K // scale_size + j // scale_size])
        T.copy(B_dequantize_local, B_dequantize_shared)

    @T.prim_func
    def main(
            A: T.Tensor(A_shape, in_dtype),
            B: T.Tensor(B_shape, storage_dtype),
            Scale: T.Tensor(Scale_shape, storage_dtype),
            C: T.Tensor((M, N), out_dtype),
    ):
        with T.Kernel(T.ceildiv(N, block_N), T.ceildiv(M, block_M), threads=threads) as (bx, by):
            A_shared = T.alloc_shared(A_shared_shape, in_dtype)
            B_shared = T.alloc_shared(B_shared_shape, storage_dtype)
            B_dequantize_shared = T.alloc_shared(B_dequantize_shared_shape, in_dtype)
            C_local = T.alloc_fragment((block_M, block_N), accum_dtype)
            C_shared = T.alloc_shared((block_M, block_N), out_dtype)

            T.annotate_layout({A_shared: T.make_swizzled_layout(A_shared)})
            if swizzle_epilogue:
                T.annotate_layout({C_shared: T.make_swizzled_layout(C_shared)})

            T.clear(C_local)
            for k in T.Pipelined(K // block_K, num_stages=num_stages):
                T.copy(A[by * block_M, k * block_K], A_shared)
                T.copy(B[bx * block_N, k * block_K // num_elems_per_byte], B_shared)
                simple_dequant(B_shared, B_dequantize_shared, Scale, k)
                T.gemm(A_shared, B_dequantize_shared, C_local, transpose_B=True)

            T.copy(C_local, C_shared)
            T.copy(C_shared, C[by * block_M:(by + 1) * block_M, bx * block_N:(bx + 1) * block_N])

    return main


def dequantize(qb, scale, scale_size=32, dtype="bfloat16"):
    """The (N, K) float32 weights that packed `qb` (N, K // 2) and `scale` stand for."""
    q = np.asarray(qb).view(np.uint8).astype(np.uint16)
    nibbles = np.stack([q & 0xF, q >> 4], axis=-1).reshape(q.shape[0], -1)
    sign = np.where(nibbles >> 3, -1.0, 1.0)
    exponent = ((nibbles & 6) >> 1).astype(np.float64) - 1.0
    mantissa = 1.0 + (nibbles & 1) * 0.5
    w = sign * np.exp2(exponent) * mantissa
    s = np.asarray(scale).astype(np.float64)
    w = w * np.exp2(np.repeat(s, scale_size, axis=1))
    return w.astype(np.float32)


def reference(a, qb, scale, scale_size=32):
    """A @ dequant(B)^T in float32."""
    return np.asarray(a, np.float32) @ dequantize(qb, scale, scale_size).T
