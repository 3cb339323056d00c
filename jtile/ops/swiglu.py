"""`jtile.ops.swiglu`: `jax.nn.silu(gate) * up`, element-wise, forward and backward kernels.

The arrays are flattened; each block moves a tile of 2 x 16 bytes per thread of every operand
with `T.copy` (the last tile's reads past the end give zeros, its writes there are dropped).
Any arch (sm_80+).
"""

from __future__ import annotations

import functools

import jax

import jtile
import jtile.language as T
from jtile.ops import checks
from jtile.ops.mode import resolve_interpret
from jtile.ops.rows import FLAT_THREADS, flat_tile
from jtile.ops.sharding import match_varying

__all__ = ["swiglu"]

F32 = "float32"


def swiglu_fwd_kernel(G, U, *, tile):
    """out = g * sigmoid(g) * u. Shapes: G, U (L,) in global memory; output (L,) in G's dtype."""
    (L,) = G.shape
    Out = T.empty((L,), G.dtype)
    with T.Kernel(T.ceildiv(L, tile), threads=FLAT_THREADS) as bx:
        g = T.alloc_fragment((tile,), G.dtype)
        u = T.alloc_fragment((tile,), U.dtype)
        T.copy(G[bx * tile], g)
        T.copy(U[bx * tile], u)
        for i in T.Parallel(tile):
            gate = T.cast(g[i], F32)
            g[i] = T.cast(gate * T.sigmoid(gate) * T.cast(u[i], F32), G.dtype)
        T.copy(g, Out[bx * tile])
    return Out


def swiglu_bwd_kernel(G, U, DOut, *, tile):
    """dg = dout * u * s * (1 + g * (1 - s)), du = dout * g * s with s = sigmoid(g).

    Shapes: G, U, DOut (L,); outputs DG (L,) in G's dtype and DU (L,) in U's dtype.
    """
    (L,) = G.shape
    DG = T.empty((L,), G.dtype)
    DU = T.empty((L,), U.dtype)
    with T.Kernel(T.ceildiv(L, tile), threads=FLAT_THREADS) as bx:
        g = T.alloc_fragment((tile,), G.dtype)
        u = T.alloc_fragment((tile,), U.dtype)
        d = T.alloc_fragment((tile,), DOut.dtype)
        # Element expressions are re-read where they are used, not snapshots: dG gets its own
        # fragment so that dU still sees the original gate.
        dg = T.alloc_fragment((tile,), G.dtype)
        T.copy(G[bx * tile], g)
        T.copy(U[bx * tile], u)
        T.copy(DOut[bx * tile], d)
        for i in T.Parallel(tile):
            gate = T.cast(g[i], F32)
            up = T.cast(u[i], F32)
            dout = T.cast(d[i], F32)
            sig = T.sigmoid(gate)
            dg[i] = T.cast(dout * up * sig * (1.0 + gate * (1.0 - sig)), G.dtype)
            u[i] = T.cast(dout * gate * sig, U.dtype)
        T.copy(dg, DG[bx * tile])
        T.copy(u, DU[bx * tile])
    return DG, DU


@functools.lru_cache(maxsize=None)
def _launcher(kernel, name: str, interpret: bool, tile: int):
    return jtile.pallas_like(functools.partial(kernel, tile=tile), name=name,
                             interpret=interpret)


def _tile_of(x) -> int:
    return flat_tile(x.shape[0], x.dtype.itemsize)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _swiglu(gate, up, interpret):
    return _launcher(swiglu_fwd_kernel, "swiglu_fwd", interpret, _tile_of(gate))(gate, up)


def _swiglu_fwd(gate, up, interpret):
    return _swiglu(gate, up, interpret), (gate, up)


def _swiglu_bwd(interpret, saved, dout):
    gate, up = saved
    dgate, dup = _launcher(swiglu_bwd_kernel, "swiglu_bwd", interpret,
                           _tile_of(gate))(gate, up, dout)
    return match_varying(dgate, gate), match_varying(dup, up)


_swiglu.defvjp(_swiglu_fwd, _swiglu_bwd)


def swiglu(gate, up, *, interpret=None):
    """`jax.nn.silu(gate) * up`, the gated activation of a SwiGLU MLP.

    Computed in float32 and returned in gate's dtype; any shape (the arrays are flattened).
    Differentiable in both inputs, batchable with vmap, usable inside shard_map (e.g. with the
    hidden dimension sharded for tensor parallelism).

    Args:
        gate: float32, bfloat16 or float16 array.
        up: an array of gate's shape and dtype.
        interpret: True, False, or None (see `jtile.ops.mode.resolve_interpret`).

    Returns:
        An array of gate's shape and dtype.

    Raises:
        JtileShapeError: non-float inputs, or gate and up of different shapes or dtypes.
    """
    op = "swiglu"
    checks.require_float(op, "gate", gate)
    checks.require_nonempty(op, "gate", gate)
    checks.require_float(op, "up", up)
    checks.require_shape(op, "up", up, gate.shape, f"it multiplies silu(gate) element-wise "
                         f"(gate is {checks.describe(gate)})")
    checks.require_same_dtype(op, ("gate", "up"), (gate, up))
    interpret = resolve_interpret(interpret)
    out = _swiglu(gate.reshape(-1), up.reshape(-1), interpret)
    return out.reshape(gate.shape)
