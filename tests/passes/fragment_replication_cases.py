"""Kernels that name fragment elements outside T.Parallel (TileLang's floating fragments: a
block mask read in an `if`, values stored once per block, a reduction read by a serial loop),
inside it through bit-exact index maps (the 4-bit unpack of TileLang's dequantize GEMMs,
packing, windows at a serial offset, bit permutations), or hand fragments to T.gemm as B (and
A) operands, with numpy references. Used by the layout tests (CPU) and the GPU suite (compiled
against numpy)."""

import functools

import jax
import numpy as np

import jtile
import jtile.language as T

S = jax.ShapeDtypeStruct


# ----------------------------------------------------------------------------- floating


def block_sparse_matmul(M, N, K, bm, bn, bk):
    """C = A @ B over the K blocks a per-row-block mask keeps (TileLang's block-sparse
    attention reads its mask the same way: `if block_mask[k] != 0:` in a pipelined loop)."""
    nk = K // bk

    @T.prim_func
    def kernel(A: T.Tensor((M, K), "float16"), B: T.Tensor((K, N), "float16"),
               Mask: T.Tensor((M // bm, nk), "int8"), C: T.Tensor((M, N), "float32")):
        with T.Kernel(N // bn, M // bm, threads=128) as (bx, by):
            a_s = T.alloc_shared((bm, bk), "float16")
            b_s = T.alloc_shared((bk, bn), "float16")
            acc = T.alloc_fragment((bm, bn), "float32")
            mask = T.alloc_fragment((nk,), "int8")
            T.copy(Mask[by, :], mask)
            T.clear(acc)
            for k in T.Pipelined(nk, num_stages=2):
                if mask[k] != 0:
                    T.copy(A[by * bm, k * bk], a_s)
                    T.copy(B[k * bk, bx * bn], b_s)
                    T.gemm(a_s, b_s, acc)
            T.copy(acc, C[by * bm, bx * bn])

    return kernel


def _block_sparse_reference(a, b, mask, *, bm, bk):
    c = np.zeros((a.shape[0], b.shape[1]))
    for i in range(mask.shape[0]):
        for k in range(mask.shape[1]):
            if mask[i, k]:
                c[i * bm:(i + 1) * bm] += a[i * bm:(i + 1) * bm, k * bk:(k + 1) * bk] @ \
                    b[k * bk:(k + 1) * bk]
    return c


def masked_row_sum(A: T.Tensor((8, 128), "float32"), Mask: T.Tensor((8,), "int8"),
                   O: T.Tensor((128,), "float32")):
    """The sum of the rows of A that the mask keeps, one row per pipelined step."""
    with T.Kernel(1, threads=128):
        mask = T.alloc_fragment((8,), "int8")
        acc = T.alloc_fragment((128,), "float32")
        T.copy(Mask, mask)
        T.clear(acc)
        for k in T.Pipelined(8, num_stages=1):
            if mask[k] != 0:
                for i in T.Parallel(128):
                    acc[i] += A[k, i]
        T.copy(acc, O)


def mask_from_parallel(X: T.Tensor((2, 64, 16), "float32"), Mask: T.Tensor((2, 16), "float32"),
                       Rows: T.Tensor((2, 16), "float32"), Cols: T.Tensor((2, 64, 16), "float32")):
    """A bool mask computed by a T.Parallel loop (every thread computes all of it), read by
    an `if` in a serial loop and, as m[j], across a tile spread over the threads."""
    with T.Kernel(2, threads=128) as by:
        m = T.alloc_fragment((16,), "bool")
        x = T.alloc_fragment((64, 16), "float32")
        total = T.alloc_fragment((16,), "float32")
        for j in T.Parallel(16):
            m[j] = Mask[by, j] > 0
        T.copy(X[by, :, :], x)
        T.clear(total)
        for k in T.serial(16):
            if m[k]:
                for j in T.Parallel(16):
                    total[j] += X[by, k, j]
        for i, j in T.Parallel(64, 16):
            x[i, j] = T.if_then_else(m[j], x[i, j], -x[i, j])
        T.copy(total, Rows[by, :])
        T.copy(x, Cols[by, :, :])


def _mask_from_parallel_reference(x, mask):
    keep = mask > 0
    rows = np.stack([x[b, :16][keep[b]].sum(0) for b in range(2)])
    cols = np.where(keep[:, None, :], x, -x)
    return rows, cols


def uniform_stores(X: T.Tensor((32, 8), "float32"), W: T.Tensor((8,), "float32"),
                   O: T.Tensor((32, 8), "float32"), Wout: T.Tensor((8,), "float32")):
    """Stores outside T.Parallel at uniform indices (every thread updates its own copy), a
    running recurrence over them, then the fragment read across a tile and copied out."""
    with T.Kernel(1, threads=128):
        w = T.alloc_fragment((8,), "float32")
        for k in T.serial(8):
            w[k] = W[k] * 2.0 + k
        for k in T.serial(7):
            w[k + 1] = w[k + 1] + w[k]
        for i, j in T.Parallel(32, 8):
            O[i, j] = X[i, j] * w[j]
        T.copy(w, Wout)


def _uniform_stores_reference(x, w):
    w = np.cumsum(w * 2.0 + np.arange(8))
    return x * w[None, :], w


def reduce_into_floating(X: T.Tensor((8, 64), "float32"), O: T.Tensor((8, 64), "float32")):
    """A row maximum every thread holds, read by a serial loop's `if`."""
    with T.Kernel(1, threads=128):
        x = T.alloc_fragment((8, 64), "float32")
        mx = T.alloc_fragment((8,), "float32")
        T.copy(X, x)
        T.reduce_max(x, mx, dim=1)
        for r in T.serial(8):
            if mx[r] > 1.5:
                for j in T.Parallel(64):
                    O[r, j] = X[r, j] - mx[r]
            else:
                for j in T.Parallel(64):
                    O[r, j] = X[r, j] + mx[r]


def _reduce_into_floating_reference(x):
    mx = x.max(1, keepdims=True)
    return np.where(mx > 1.5, x - mx, x + mx)


def thread_indexed_read(X: T.Tensor((8,), "float32"), O: T.Tensor((128,), "float32")):
    """Every thread holds the whole table, so any thread reads any element."""
    with T.Kernel(1, threads=128):
        t = T.alloc_fragment((8,), "float32")
        T.copy(X, t)
        tx = T.get_thread_binding()
        O[tx] = t[tx % 8] * 2.0


# ----------------------------------------------------------------------------- bit maps


def unpack_int4(B: T.Tensor((64, 32), "uint8"), C: T.Tensor((64, 64), "float16")):
    """Two 4-bit values per byte, low nibble first: b[i, j // 2] >> (j % 2 * 4)."""
    with T.Kernel(1, threads=128):
        b_s = T.alloc_shared((64, 32), "uint8")
        b = T.alloc_fragment((64, 32), "uint8")
        c = T.alloc_fragment((64, 64), "float16")
        T.copy(B, b_s)
        T.copy(b_s, b)
        for i, j in T.Parallel(64, 64):
            c[i, j] = T.cast((b[i, j // 2] >> ((j % 2) * 4)) & 15, "float16")
        T.copy(c, C)


def _unpack(b):
    b = b.astype(np.int64)
    return np.stack((b & 15, b >> 4), -1).reshape(b.shape[0], -1).astype(np.float64)


def dequant_matmul(M, N, K, bm, bn, bk):
    """TileLang's dequantize GEMM: C = A @ (unpack(B) - 8)^T, B holding two signed 4-bit
    weights per byte, unpacked tile by tile in registers before the tensor-core gemm."""

    @T.prim_func
    def kernel(A: T.Tensor((M, K), "float16"), B: T.Tensor((N, K // 2), "uint8"),
               C: T.Tensor((M, N), "float32")):
        with T.Kernel(N // bn, M // bm, threads=128) as (bx, by):
            a_s = T.alloc_shared((bm, bk), "float16")
            b_s = T.alloc_shared((bn, bk // 2), "uint8")
            b_local = T.alloc_fragment((bn, bk // 2), "uint8")
            w_local = T.alloc_fragment((bn, bk), "float16")
            w_s = T.alloc_shared((bn, bk), "float16")
            acc = T.alloc_fragment((bm, bn), "float32")
            T.clear(acc)
            for k in T.Pipelined(K // bk, num_stages=2):
                T.copy(A[by * bm, k * bk], a_s)
                T.copy(B[bx * bn, k * bk // 2], b_s)
                T.copy(b_s, b_local)
                for i, j in T.Parallel(bn, bk):
                    w_local[i, j] = T.cast((b_local[i, j // 2] >> ((j % 2) * 4)) & 15,
                                           "float16") - T.cast(8, "float16")
                T.copy(w_local, w_s)
                T.gemm(a_s, w_s, acc, transpose_B=True)
            T.copy(acc, C[by * bm, bx * bn])

    return kernel


def pack_int4(X: T.Tensor((64, 64), "uint8"), P: T.Tensor((64, 32), "uint8")):
    """The inverse: x[i, 2 * j] | x[i, 2 * j + 1] << 4 (constant index bits)."""
    with T.Kernel(1, threads=128):
        x = T.alloc_fragment((64, 64), "uint8")
        p = T.alloc_fragment((64, 32), "uint8")
        T.copy(X, x)
        for i, j in T.Parallel(64, 32):
            p[i, j] = x[i, 2 * j] | (x[i, 2 * j + 1] << 4)
        T.copy(p, P)


def windows_and_permutation(X: T.Tensor((16, 32), "float32"), Y: T.Tensor((16, 8), "float32"),
                            Z: T.Tensor((16, 8), "float32")):
    """x[i, k * 8 + j] at a serial loop's window (index bits from the counter and the loop
    variable) and x[i, (j & 3) << 3 | j >> 2] (a permutation of the loop variable's bits)."""
    with T.Kernel(1, threads=128):
        x = T.alloc_fragment((16, 32), "float32")
        y = T.alloc_fragment((16, 8), "float32")
        T.copy(X, x)
        T.clear(y)
        for k in T.serial(4):
            for i, j in T.Parallel(16, 8):
                y[i, j] += x[i, k * 8 + j] * (k + 1)
        T.copy(y, Y)
        for i, j in T.Parallel(16, 8):
            Z[i, j] = x[i, ((j & 3) << 3) | (j >> 2)]


def _windows_reference(x):
    y = sum(x[:, k * 8:(k + 1) * 8] * (k + 1) for k in range(4))
    j = np.arange(8)
    return y, x[:, ((j & 3) << 3) | (j >> 2)]


# ----------------------------------------------------------------------------- gemm operands


def gemm_from_fragments(M, N, K, dtype, a_in_registers, transpose_b, threads=128):
    """T.gemm with B (and A when `a_in_registers`) in fragments computed by T.Parallel loops:
    TileLang's SR and RR gemms (KDA's backward multiplies a shared tile by a gated fragment)."""
    b_shape = (N, K) if transpose_b else (K, N)

    @T.prim_func
    def kernel(A: T.Tensor((M, K), dtype), B: T.Tensor(b_shape, dtype),
               G: T.Tensor(b_shape, dtype), C: T.Tensor((M, N), "float32")):
        with T.Kernel(1, threads=threads):
            if a_in_registers:
                a = T.alloc_fragment((M, K), dtype)
                for i, k in T.Parallel(M, K):
                    a[i, k] = A[i, k] * T.cast(2, dtype)
            else:
                a = T.alloc_shared((M, K), dtype)
                T.copy(A, a)
            b_s = T.alloc_shared(b_shape, dtype)
            b = T.alloc_fragment(b_shape, dtype)
            c = T.alloc_fragment((M, N), "float32")
            T.copy(B, b_s)
            for x, y in T.Parallel(*b_shape):
                b[x, y] = b_s[x, y] * G[x, y]
            T.gemm(a, b, c, transpose_B=transpose_b, clear_accum=True)
            T.copy(c, C)

    return kernel


def _gemm_reference(a, b, g, *, a_in_registers, transpose_b):
    w = b * g
    return (2 * a if a_in_registers else a) @ (w.T if transpose_b else w)


def _gemm_case(M, N, K, dtype, a_in_registers, transpose_b, threads=128, tol=2e-3):
    np_dtype = np.float32 if dtype == "bfloat16" else np.dtype(dtype)
    b_shape = (N, K) if transpose_b else (K, N)

    def cast(make):
        import jax.numpy as jnp

        return lambda rng: np.asarray(jnp.asarray(make(rng), dtype)) if dtype == "bfloat16" \
            else make(rng)

    return (gemm_from_fragments(M, N, K, dtype, a_in_registers, transpose_b, threads),
            [cast(_normal((M, K), np_dtype)), cast(_normal(b_shape, np_dtype)),
             cast(_normal(b_shape, np_dtype))],
            None, functools.partial(_gemm_reference, a_in_registers=a_in_registers,
                                    transpose_b=transpose_b), tol)


# ----------------------------------------------------------------------------- the table


def _mask(shape, dtype=np.int8):
    def make(rng):
        m = (rng.random(shape) < 0.5).astype(dtype)
        m.flat[0], m.flat[1] = 1, 0  # both branches, whatever the seed
        return m
    return make


def _normal(shape, dtype=np.float32):
    return lambda rng: rng.standard_normal(shape).astype(dtype)


def _uint(shape, high):
    return lambda rng: rng.integers(0, high, shape).astype(np.uint8)


_BS = dict(M=128, N=128, K=256, bm=64, bn=64, bk=32)
_DQ = dict(M=128, N=128, K=256, bm=64, bn=64, bk=64)

# name: (kernel, input makers, out_shape, reference (float64 inputs -> outputs), tolerance)
CASES = {
    "block_sparse_matmul": (
        block_sparse_matmul(**_BS),
        [_normal((128, 256), np.float16), _normal((256, 128), np.float16), _mask((2, 8))],
        None, functools.partial(_block_sparse_reference, bm=64, bk=32), 2e-3),
    "masked_row_sum": (masked_row_sum, [_normal((8, 128)), _mask((8,))], None,
                       lambda a, m: a[m != 0].sum(0), 1e-5),
    "mask_from_parallel": (mask_from_parallel, [_normal((2, 64, 16)), _normal((2, 16))], None,
                           _mask_from_parallel_reference, 1e-5),
    "uniform_stores": (uniform_stores, [_normal((32, 8)), _normal((8,))], None,
                       _uniform_stores_reference, 1e-5),
    "reduce_into_floating": (reduce_into_floating, [_normal((8, 64))], None,
                             _reduce_into_floating_reference, 1e-5),
    "thread_indexed_read": (thread_indexed_read, [_normal((8,))], None,
                            lambda x: 2.0 * np.tile(x, 16), 1e-6),
    "unpack_int4": (unpack_int4, [_uint((64, 32), 256)], None, _unpack, 0),
    "dequant_matmul": (
        dequant_matmul(**_DQ), [_normal((128, 256), np.float16), _uint((128, 128), 256)],
        None, lambda a, b: a @ (_unpack(b) - 8).T, 2e-3),
    "pack_int4": (pack_int4, [_uint((64, 64), 16)], None,
                  lambda x: x[:, 0::2] + 16 * x[:, 1::2], 0),
    "windows_and_permutation": (windows_and_permutation, [_normal((16, 32))], None,
                                _windows_reference, 1e-5),
    "gemm_sr_f32": _gemm_case(16, 32, 16, "float32", False, False, tol=1e-5),
    "gemm_rr_f32_bt": _gemm_case(64, 64, 32, "float32", True, True, tol=1e-5),
    "gemm_sr_f16": _gemm_case(64, 64, 32, "float16", False, False),
    "gemm_sr_f16_bt": _gemm_case(64, 32, 64, "float16", False, True),
    "gemm_rr_f16": _gemm_case(64, 128, 32, "float16", True, False),
    "gemm_sr_bf16_bt_8_warps": _gemm_case(128, 64, 32, "bfloat16", False, True, threads=256,
                                          tol=1e-2),
}


def random_inputs(name, seed):
    rng = np.random.default_rng(seed)
    return [make(rng) for make in CASES[name][1]]


def launcher(name, interpret):
    return jtile.pallas_like(CASES[name][0], interpret=interpret)


def input_specs(name):
    return [S(x.shape, x.dtype) for x in random_inputs(name, 0)]


def reference(name, args):
    out = CASES[name][3](*[np.asarray(a).astype(np.float64) for a in args])
    return out if isinstance(out, tuple) else (out,)


def check_outputs(name, outputs, args):
    """Every output element against numpy; tolerance relative to the output's scale."""
    outputs = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
    tol = CASES[name][4]
    for got, want in zip(outputs, reference(name, args), strict=True):
        got = np.asarray(got).astype(np.float64)
        assert got.shape == want.shape
        assert np.all(np.isfinite(got)), "non-finite output"
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * max(np.max(np.abs(want)), 1))
