"""`T.gemm`: a tile matrix product accumulated into a register fragment."""

from __future__ import annotations

import dataclasses
import enum

from jtile.errors import JtileShapeError
from jtile.ir.affine import is_whole
from jtile.ir.nodes import Const, Expr, Gemm, IfThenElse
from jtile.ir.types import DType, MemorySpace, gemm_accumulators, gemm_inputs_match
from jtile.trace.builder import current
from jtile.trace.indexing import as_region
from jtile.trace.source import caller_location

# fp8 inputs run on wgmma (sm_90a), elsewhere on the CUDA cores with a performance warning.
# 8-bit integers accumulate exactly in int32 (TileLang's int8 x int8 -> int32 gemms); tfloat32
# tiles multiply exactly in float32 on the CUDA cores (TileLang rounds them to TF32).
GEMM_INPUT_DTYPES = (DType.float16, DType.bfloat16, DType.float32, DType.float8_e4m3,
                     DType.float8_e5m2, DType.int8, DType.uint8, DType.tfloat32)


class GemmWarpPolicy(enum.IntEnum):
    """How T.gemm splits the accumulator over the block's warps (TileLang's values).

    Square: the warp grid that balances rows and columns (jtile's default choice).
    FullRow: every warp along M (each warp owns whole rows of C).
    FullCol: every warp along N (each warp owns whole columns of C).
    """

    Square = 0
    FullRow = 1
    FullCol = 2

    def is_square(self) -> bool:
        return self is GemmWarpPolicy.Square

    def is_full_row(self) -> bool:
        return self is GemmWarpPolicy.FullRow

    def is_full_col(self) -> bool:
        return self is GemmWarpPolicy.FullCol


_POLICY_NAMES = {GemmWarpPolicy.Square: "square", GemmWarpPolicy.FullRow: "full_row",
                 GemmWarpPolicy.FullCol: "full_col"}


def _policy_name(policy, builder, loc) -> str:
    if policy is None:
        return "square"
    try:
        return _POLICY_NAMES[GemmWarpPolicy(policy)]
    except (ValueError, TypeError):
        raise builder.error(f"policy={policy!r} is not a T.GemmWarpPolicy; use "
                            "T.GemmWarpPolicy.Square, .FullRow or .FullCol", loc,
                            op="T.gemm") from None


def gemm(A, B, C, transpose_A=False, transpose_B=False, policy=GemmWarpPolicy.Square,
         clear_accum=False, k_pack=1, wg_wait=0, mbar=None, annotations=None):
    """C += op(A) @ op(B) on whole tiles, op transposing when its flag is set.

    Shapes: A (M, K) or (K, M) with transpose_A; B (K, N) or (N, K) with transpose_B; C (M, N).
    A and B are shared tiles or fragments (TileLang's SS, RS, SR and RR gemms), C a float32
    fragment. f16/bf16 inputs run on tensor cores with float32 accumulation: on sm_90a wgmma
    when B is shared, else mma.sync.m16n8k16 (sm_80+; ldmatrix for shared operands, fragment
    operands already in the instruction's register layout); f32 inputs are computed in float32
    FMA, a fragment operand holding what each thread's accumulator elements need. A fragment
    operand is used whole; a fragment A is not transposed. `clear_accum=True` zeroes C first.

    `policy` (T.GemmWarpPolicy) picks the warp grid over C: Square (default), FullRow (all
    warps along M) or FullCol (all warps along N); M and N must split into m16n8 tiles that way.
    `k_pack` (1 or 2, TileLang's rule) packs k-steps into one AMD matrix-core instruction;
    TileLang's NVIDIA gemms do not read it, nor do jtile's, so it decides nothing here.
    `wg_wait` (-1 or more) is how many wgmma groups TileLang leaves in flight after issuing
    this gemm on sm_90a, for the kernel to wait on later (T.wait_wgmma). jtile places the
    waits itself: an accumulator is complete before any other statement reads or writes it,
    and in a pipelined loop its wgmmas stay in flight as far as that allows, so every
    wg_wait gives the result TileLang's does once its waits are in place. `mbar` (Blackwell
    tcgen05 completion) and `annotations` are refused.
    """
    builder = current("T.gemm")
    loc = caller_location()
    policy_name = _policy_name(policy, builder, loc)
    if isinstance(k_pack, bool) or k_pack not in (1, 2):
        raise builder.error(f"k_pack={k_pack!r}: TileLang takes k_pack 1 or 2 (k-steps packed "
                            "into one AMD matrix-core instruction)", loc, op="T.gemm")
    if isinstance(wg_wait, bool) or not isinstance(wg_wait, int) or wg_wait < -1:
        raise builder.error(f"wg_wait={wg_wait!r}: TileLang takes an int, -1 (no wait) or the "
                            "number of wgmma groups left in flight", loc, op="T.gemm")
    if mbar is not None:
        raise builder.error("mbar= (a tcgen05 completion barrier on Blackwell) is not supported "
                            "by T.gemm; jtile's T.gemm completes synchronously, so drop mbar=",
                            loc, op="T.gemm")
    if annotations:
        raise builder.error(f"annotations={annotations!r} are not supported by T.gemm; drop "
                            "them", loc, op="T.gemm")
    if builder.threads is not None and builder.threads % 32:
        raise builder.error(f"the kernel has threads={builder.threads}, but T.gemm runs on whole "
                            "warps (mma.sync / wgmma are warp-wide); open the kernel with a "
                            "multiple of 32 threads", loc, op="T.gemm")
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
    if a.dtype not in GEMM_INPUT_DTYPES or b.dtype not in GEMM_INPUT_DTYPES \
            or not gemm_inputs_match(a.dtype, b.dtype):
        raise fail(f"A and B must share one dtype of {[str(d) for d in GEMM_INPUT_DTYPES]} "
                   f"(8-bit inputs may mix int8 with uint8, or float8_e4m3 with float8_e5m2), "
                   f"got {a.dtype} and {b.dtype}")
    accumulators = gemm_accumulators(a.dtype)
    if c.dtype not in accumulators:
        raise fail(f"the accumulator C must be {' or '.join(str(d) for d in accumulators)} "
                   f"for {a.dtype} inputs, got {c.dtype}")
    if c.buffer.space is not MemorySpace.FRAGMENT:
        raise fail(f"C must be a fragment (T.alloc_fragment), not {c.buffer.space.value}")
    if a.buffer.space not in (MemorySpace.SHARED, MemorySpace.SHARED_DYN, MemorySpace.FRAGMENT):
        raise fail(f"A must be a shared tile or a fragment, not {a.buffer.space.value}")
    if b.buffer.space not in (MemorySpace.SHARED, MemorySpace.SHARED_DYN, MemorySpace.FRAGMENT):
        raise fail(f"B must be a shared tile or a fragment, not {b.buffer.space.value}")
    if isinstance(clear_accum, Expr) and not isinstance(clear_accum, Const):
        # A traced flag (`clear_accum=(k == 0)`): zero C where it holds, then accumulate.
        from jtile.language.copy import fill

        cond = clear_accum if clear_accum.dtype.is_bool else clear_accum != 0
        if not is_whole(c):
            raise fail("a traced clear_accum needs C to be a whole fragment")
        with builder.block() as zeroing:
            fill(c.buffer, 0)
        builder.emit(IfThenElse(cond, tuple(zeroing), (), loc))
        clear_accum = False
    builder.emit(Gemm(a, b, c, bool(transpose_A), bool(transpose_B), bool(clear_accum), loc,
                      policy=policy_name, k_pack=k_pack, wg_wait=wg_wait))


def wgmma_gemm(A, B, C, transpose_A=False, transpose_B=False, policy=GemmWarpPolicy.Square,
               clear_accum=False, annotations=None):
    """TileLang's explicit Hopper gemm: `T.gemm` issued as wgmma with no wait of its own.

    jtile places the waits itself (see `gemm`'s `wg_wait`), so the values are T.gemm's and a
    later `T.wait_wgmma` is accepted. As in TileLang, compiling it for a target without wgmma,
    or with operands wgmma cannot read, is refused (it never falls back to mma.sync);
    interpret mode runs it as T.gemm.
    """
    gemm(A, B, C, transpose_A, transpose_B, policy, clear_accum, wg_wait=-1,
         annotations=annotations)
    builder = current("T.wgmma_gemm")
    builder.replace_last_statement(dataclasses.replace(builder.last_statement(),
                                                       wgmma_only=True))
