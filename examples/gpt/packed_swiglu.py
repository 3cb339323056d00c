"""The MLP's SwiGLU on one packed gate | up projection, in one jtile kernel.

With the gate and up weights concatenated, one GEMM gives each token's gate and up side by
side; this kernel reads both halves of a row and writes silu(gate) * up. Its backward writes
dgate and dup into one packed gradient, so the GEMM's transpose gives the input's gradient in
one product, where two separate projections leave XLA an add of their two input gradients
(which it cannot fuse into jtile's norm that consumes it).
"""

from __future__ import annotations

import functools
import math

import jax

import jtile
import jtile.language as T
from jtile.ops.mode import resolve_interpret

F32 = "float32"
ROWS = 4         # rows per block
MAX_COLUMNS = 512  # columns per block, at most (a divisor of the hidden size)


def _columns(hidden: int) -> int:
    """Columns per block: a divisor of `hidden`, so no tile of the gate half reaches into
    the up half."""
    return math.gcd(hidden, MAX_COLUMNS)


def _gate_and_up(GU, hidden, cols, bx, by):
    """Block (bx, by)'s (ROWS, cols) tiles of the gate half and of the up half of GU."""
    g = T.alloc_fragment((ROWS, cols), GU.dtype)
    u = T.alloc_fragment((ROWS, cols), GU.dtype)
    T.copy(GU[by * ROWS, bx * cols], g)
    T.copy(GU[by * ROWS, hidden + bx * cols], u)
    return g, u


def swiglu_packed_fwd_kernel(GU):
    """GU (rows, 2 hidden) = gate | up; output (rows, hidden) silu(gate) * up in GU's dtype."""
    R, width = GU.shape
    hidden = width // 2
    cols = _columns(hidden)
    Out = T.empty((R, hidden), GU.dtype)
    with T.Kernel(hidden // cols, T.ceildiv(R, ROWS), threads=128) as (bx, by):
        g, u = _gate_and_up(GU, hidden, cols, bx, by)
        out = T.alloc_fragment((ROWS, cols), GU.dtype)
        for i, j in T.Parallel(ROWS, cols):
            gate = T.cast(g[i, j], F32)
            out[i, j] = T.cast(gate * T.sigmoid(gate) * T.cast(u[i, j], F32), GU.dtype)
        T.copy(out, Out[by * ROWS, bx * cols])
    return Out


def swiglu_packed_bwd_kernel(GU, DOut):
    """dGU (rows, 2 hidden) = dgate | dup for the cotangent DOut (rows, hidden)."""
    R, width = GU.shape
    hidden = width // 2
    cols = _columns(hidden)
    DGU = T.empty((R, width), GU.dtype)
    with T.Kernel(hidden // cols, T.ceildiv(R, ROWS), threads=128) as (bx, by):
        g, u = _gate_and_up(GU, hidden, cols, bx, by)
        d = T.alloc_fragment((ROWS, cols), DOut.dtype)
        # Results go to fragments of their own: the element expressions are read again where
        # they are used.
        dg = T.alloc_fragment((ROWS, cols), GU.dtype)
        du = T.alloc_fragment((ROWS, cols), GU.dtype)
        T.copy(DOut[by * ROWS, bx * cols], d)
        for i, j in T.Parallel(ROWS, cols):
            gate = T.cast(g[i, j], F32)
            up = T.cast(u[i, j], F32)
            dout = T.cast(d[i, j], F32)
            sig = T.sigmoid(gate)
            dg[i, j] = T.cast(dout * up * sig * (1.0 + gate * (1.0 - sig)), GU.dtype)
            du[i, j] = T.cast(dout * gate * sig, GU.dtype)
        T.copy(dg, DGU[by * ROWS, bx * cols])
        T.copy(du, DGU[by * ROWS, hidden + bx * cols])
    return DGU


@functools.lru_cache(maxsize=None)
def _launcher(kernel, name: str, interpret):
    return jtile.pallas_like(kernel, name=name, interpret=interpret)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _swiglu_packed(gu, interpret):
    return _launcher(swiglu_packed_fwd_kernel, "swiglu_packed_fwd", interpret)(gu)


def _swiglu_packed_fwd(gu, interpret):
    return _swiglu_packed(gu, interpret), gu


def _swiglu_packed_bwd(interpret, gu, dout):
    return (_launcher(swiglu_packed_bwd_kernel, "swiglu_packed_bwd", interpret)(gu, dout),)


_swiglu_packed.defvjp(_swiglu_packed_fwd, _swiglu_packed_bwd)


def swiglu_packed(gu, *, interpret=None):
    """`jax.nn.silu(gate) * up` of a (rows, 2 hidden) array holding gate | up on each row."""
    if gu.ndim != 2 or gu.shape[1] % 2:
        raise jtile.JtileError(f"swiglu_packed takes (rows, 2 * hidden); got {gu.shape}")
    return _swiglu_packed(gu, resolve_interpret(interpret))
