"""`T.gemm`: a tile matrix product accumulated into a register fragment."""

from __future__ import annotations

from jtile.errors import JtileShapeError
from jtile.ir.nodes import Gemm
from jtile.ir.types import DType, MemorySpace
from jtile.trace.builder import current
from jtile.trace.indexing import as_region
from jtile.trace.source import caller_location

GEMM_INPUT_DTYPES = (DType.float16, DType.bfloat16, DType.float32)


def gemm(A, B, C, transpose_A=False, transpose_B=False, policy=None, clear_accum=False,
         k_pack=1, wg_wait=0):
    """C += op(A) @ op(B) on whole tiles, op transposing when its flag is set.

    Shapes: A (M, K) or (K, M) with transpose_A; B (K, N) or (N, K) with transpose_B; C (M, N).
    A is a shared tile or a fragment, B a shared tile, C a float32 fragment. f16/bf16 inputs
    run on tensor cores (sm_80: ldmatrix + mma.sync.m16n8k16) with float32 accumulation; f32
    inputs are computed in float32 FMA. `clear_accum=True` zeroes C first.
    """
    builder = current("T.gemm")
    loc = caller_location()
    a, b, c = (as_region(x, name, loc) for x, name in ((A, "A"), (B, "B"), (C, "C")))

    def fail(message):
        return builder.error(
            f"{message}; A {a.buffer.name} is {a.squeezed_shape()}, B {b.buffer.name} is "
            f"{b.squeezed_shape()}, C {c.buffer.name} is {c.squeezed_shape()}", loc, op="T.gemm",
            cls=JtileShapeError)

    for region, name in ((a, "A"), (b, "B"), (c, "C")):
        if len(region.squeezed_shape()) != 2:
            raise fail(f"{name} must be a 2-D tile")
    (am, ak) = a.squeezed_shape()[::-1] if transpose_A else a.squeezed_shape()
    (bk, bn) = b.squeezed_shape()[::-1] if transpose_B else b.squeezed_shape()
    (cm, cn) = c.squeezed_shape()
    if ak != bk or am != cm or bn != cn:
        raise fail(f"expected C (M, N), A (M, K){' transposed' if transpose_A else ''}, "
                   f"B (K, N){' transposed' if transpose_B else ''}")
    if a.dtype is not b.dtype or a.dtype not in GEMM_INPUT_DTYPES:
        raise fail(f"A and B must share one dtype of {[str(d) for d in GEMM_INPUT_DTYPES]}, got "
                   f"{a.dtype} and {b.dtype}")
    if c.dtype is not DType.float32:
        raise fail(f"the accumulator C must be float32, got {c.dtype}")
    if c.buffer.space is not MemorySpace.FRAGMENT:
        raise fail(f"C must be a fragment (T.alloc_fragment), not {c.buffer.space.value}")
    if a.buffer.space not in (MemorySpace.SHARED, MemorySpace.SHARED_DYN, MemorySpace.FRAGMENT):
        raise fail(f"A must be a shared tile or a fragment, not {a.buffer.space.value}")
    if b.buffer.space not in (MemorySpace.SHARED, MemorySpace.SHARED_DYN):
        raise fail(f"B must be a shared tile, not {b.buffer.space.value}")
    builder.emit(Gemm(a, b, c, bool(transpose_A), bool(transpose_B), bool(clear_accum), loc))
