"""Evaluating expression nodes with jax.numpy.

Inside `T.Parallel` every loop variable is an iota broadcast over the loop's iteration space,
so one evaluation computes an expression for all iterations at once. Every vectorised value has
either rank 0 or the rank of the iteration space (unit dimensions where it does not vary), so
plain NumPy broadcasting lines the axes up.

Arithmetic follows C and CUDA: integer `/`, `//` and `%` truncate toward zero, float `%` is
fmod, float-to-int casts truncate, casts into float8 saturate to the finite range (CUDA's
__NV_SATFINITE), and functions of 16-bit floats compute in float32 and round back. Integer
results wrap to their type's width (the generated C casts sub-32-bit results back for the same
reason); `>>` is arithmetic on signed and logical on unsigned types. A shift count outside
0..bits-1 is undefined in C and is not modelled.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Optional

import jax
import jax.numpy as jnp
import jax.scipy.special
from jax import lax

from jtile.ir.nodes import BinOp, Call, Cast, Const, Expr, Load, Select, UnOp, Var
from jtile.ir.types import DType, MemorySpace, promote, value_range
from jtile.interpret import threads
from jtile.interpret.memory import Memory, jnp_dtype
from jtile.interpret.warp_ops import warp_call
from jtile.ir.warp_ops import WARP_CALLS

_HALF = (DType.float16, DType.bfloat16)
_FP8 = (DType.float8_e4m3, DType.float8_e5m2)


@dataclass(frozen=True)
class Env:
    """Values of loop and block variables, the current T.Parallel space and store mask."""

    values: dict = field(default_factory=dict)      # id(Var) -> array
    space: tuple = ()                               # iteration shape of enclosing T.Parallel
    mask: Optional[Any] = None                      # bool array: which iterations run
    # (first, count) of the T.ws region being run: per-thread code runs on those threads only.
    region: Optional[tuple] = None

    def bind(self, var: Var, value) -> "Env":
        values = dict(self.values)
        values[id(var)] = jnp.asarray(value, jnp.int32) if var.dtype is DType.int32 else value
        return Env(values, self.space, self.mask, self.region)

    def masked(self, cond) -> "Env":
        cond = jnp.asarray(cond, bool)
        return Env(self.values, self.space, cond if self.mask is None else self.mask & cond,
                   self.region)

    def in_region(self, region: tuple) -> "Env":
        return Env(self.values, self.space, self.mask, region)

    def with_space(self, extents: tuple) -> "Env":
        """Enters a T.Parallel nest level: existing vectorised values gain trailing unit dims."""
        old = len(self.space)
        extra = (1,) * len(extents)

        def widen(value):
            return value.reshape(value.shape + extra) if old and value.ndim == old else value

        values = {key: widen(value) for key, value in self.values.items()}
        mask = None if self.mask is None else widen(self.mask)
        return Env(values, self.space + tuple(extents), mask, self.region)


def _compute_dtype(dtype: DType):
    """16-bit floats compute in float32 and round back, as CUDA's half intrinsics do."""
    return jnp.float32 if dtype in _HALF else jnp_dtype(dtype)


def _as(value, dtype: DType):
    return value.astype(jnp_dtype(dtype))


def _converted(value, dtype: DType, saturate: bool):
    """`value` as `dtype`; with `saturate`, into float8 as jt::cast converts from a wider type:
    clipped to the largest finite value (NaN stays NaN) instead of overflowing to NaN or inf."""
    if saturate and dtype in _FP8:
        high = value_range(dtype)[1]
        value = jnp.clip(value.astype(jnp.float32), -high, high)
    return _as(value, dtype)


def stored(value, dtype: DType):
    """`value` converted to `dtype` as a compiled store converts it."""
    return _converted(value, dtype,
                      value.dtype != jnp_dtype(dtype) and value.dtype != jnp.bool_)


def _cast(value, source: DType, dtype: DType):
    """A conversion as jt::cast does it (float8 from a wider type saturates)."""
    return _converted(value, dtype, source not in _FP8 and not source.is_bool)


def exact_divide(a, b):
    """`a / b` correctly rounded, as the GPU divides (TileLang compiles without fast math).

    XLA rewrites a division by a broadcast or a constant into a multiplication by its
    reciprocal, which can land one ulp off; an optimization barrier on the divisor, broadcast
    to the result's shape first, keeps the division a division."""
    shape = jnp.broadcast_shapes(jnp.shape(a), jnp.shape(b))
    divisor = lax.optimization_barrier(jnp.broadcast_to(b, shape))
    return a / divisor


class Evaluator:
    """Evaluates expressions of one statement (a memo shares common subexpressions)."""

    def __init__(self, memory: Memory, env: Env, loc=None):
        self.memory = memory
        self.env = env
        self.loc = loc
        self._memo: dict = {}

    def __call__(self, expr: Expr) -> jax.Array:
        key = id(expr)
        if key not in self._memo:
            self._memo[key] = (expr, self._evaluate(expr))   # keep expr alive: ids stay unique
        return self._memo[key][1]

    def index(self, expr: Expr) -> jax.Array:
        return self(expr).astype(jnp.int32)

    def _evaluate(self, e: Expr) -> jax.Array:
        if isinstance(e, Const):
            return jnp.asarray(e.value, jnp_dtype(e.dtype))
        if isinstance(e, Var):
            value = self.env.values.get(id(e))
            if value is None:
                raise self.memory.ctx.error(
                    f"variable {e.name} ({e.kind.value}) is used outside the loop or kernel that "
                    "binds it", self.loc)
            return value
        if isinstance(e, BinOp):
            return self._binary(e)
        if isinstance(e, UnOp):
            a = self(e.a)
            if e.op == "neg":
                return _as(-a.astype(_compute_dtype(e.dtype)), e.dtype)
            if e.op == "not":
                return jnp.logical_not(a.astype(bool))
            raise self.memory.ctx.error(f"unknown unary operator {e.op!r}", self.loc)
        if isinstance(e, Call):
            return self._call(e)
        if isinstance(e, Cast):
            # astype truncates floats toward zero and rounds to nearest-even between floats.
            return _cast(self(e.value), e.value.dtype, e.dtype)
        if isinstance(e, Select):
            return jnp.where(self(e.cond).astype(bool), _as(self(e.a), e.dtype),
                             _as(self(e.b), e.dtype))
        if isinstance(e, Load):
            return self.load(e)
        raise self.memory.ctx.error(f"cannot evaluate {type(e).__name__} {e!r}", self.loc)

    def load(self, e: Load) -> jax.Array:
        """Gathers one element per iteration. Outside a global tensor the value is 0 (what the
        compiled kernel reads there, as in TileLang); other buffers clamp (reached only under
        false guards)."""
        array = self.memory.read(e.buffer, self.loc)
        # A per-thread buffer (jtile.interpret.threads): each thread reads its own copy.
        lane = threads.lane(self.memory, e.buffer, self.env, self.loc)
        lead = () if lane is None else (lane,)
        if not e.indices:
            return array.reshape(()) if lane is None else array.reshape(-1)[lane]
        raw = tuple(self.index(i) for i in e.indices)
        indices = tuple(jnp.clip(i, 0, n - 1) for i, n in zip(raw, e.buffer.shape))
        value = array[lead + indices]
        if e.buffer.space is MemorySpace.GLOBAL:
            inside = functools.reduce(jnp.logical_and, [(i >= 0) & (i < n) for i, n in
                                                        zip(raw, e.buffer.shape)])
            value = jnp.where(inside, value, jnp.zeros((), value.dtype))
        return value

    def _binary(self, e: BinOp) -> jax.Array:
        a, b = self(e.a), self(e.b)
        op = e.op
        if op in ("lt", "le", "gt", "ge", "eq", "ne"):
            common = _compute_dtype(promote(e.a.dtype, e.b.dtype))
            a, b = a.astype(common), b.astype(common)
            return {"lt": jnp.less, "le": jnp.less_equal, "gt": jnp.greater,
                    "ge": jnp.greater_equal, "eq": jnp.equal, "ne": jnp.not_equal}[op](a, b)
        if op in ("and", "or"):
            fn = jnp.logical_and if op == "and" else jnp.logical_or
            return fn(a.astype(bool), b.astype(bool))
        dtype = e.dtype
        a, b = a.astype(_compute_dtype(dtype)), b.astype(_compute_dtype(dtype))
        return _as(self._arith(op, a, b, dtype), dtype)

    def _arith(self, op: str, a, b, dtype: DType):
        floating = dtype.is_float
        if op == "add":
            return a + b
        if op == "sub":
            return a - b
        if op == "mul":
            return a * b
        if op == "div":
            return exact_divide(a, b) if floating else lax.div(a, b)
        if op == "floordiv":   # integers round toward -inf, as in TileLang and Python
            return jnp.floor(exact_divide(a, b)) if floating else jnp.floor_divide(a, b)
        if op == "mod":        # integers: the sign of the divisor; floats: C's fmod
            return lax.rem(a, b) if floating else jnp.remainder(a, b)
        if op == "max":   # fmaxf / fminf: a NaN operand gives the other one, as compiled
            return jnp.fmax(a, b)
        if op == "min":
            return jnp.fmin(a, b)
        if op in ("xor", "bitand", "bitor"):
            fn = {"xor": jnp.bitwise_xor, "bitand": jnp.bitwise_and, "bitor": jnp.bitwise_or}[op]
            return fn(a, b)
        if op == "shl":
            return lax.shift_left(a, b)
        if op == "shr":
            # C's >> on a signed integer is arithmetic, on an unsigned one logical.
            fn = lax.shift_right_arithmetic if dtype.is_signed else lax.shift_right_logical
            return fn(a, b)
        raise self.memory.ctx.error(f"unknown binary operator {op!r}", self.loc)

    def _call(self, e: Call) -> jax.Array:
        fn = e.fn
        if fn in WARP_CALLS:
            return warp_call(self, e)
        if fn in ("max", "min") and len(e.args) == 2:
            a, b = (self(x).astype(_compute_dtype(e.dtype)) for x in e.args)
            return _as(jnp.fmax(a, b) if fn == "max" else jnp.fmin(a, b), e.dtype)
        if fn == "abs" and not e.dtype.is_float:
            return _as(jnp.abs(self(e.args[0])), e.dtype)
        if fn == "reinterpret":
            return lax.bitcast_convert_type(self(e.args[0]), jnp_dtype(e.dtype))
        if fn in _BINARY and len(e.args) == 2:
            a, b = (self(x).astype(_compute_dtype(e.dtype)) for x in e.args)
            return _as(_BINARY[fn](a, b), e.dtype)
        unary = _UNARY.get(fn)
        if unary is None or len(e.args) != 1:
            raise self.memory.ctx.error(f"T.{fn} with {len(e.args)} arguments has no "
                                        "interpret-mode rule", self.loc)
        x = self(e.args[0])
        compute = _compute_dtype(e.dtype) if e.dtype.is_float else jnp.float32
        return _as(unary(x.astype(compute)), e.dtype)


def _round_half_away(x):
    """C's round(): to the nearest integral value, halfway cases away from zero (x - trunc(x)
    is exact, so the tie test is too)."""
    whole = jnp.trunc(x)
    return jnp.where(jnp.abs(x - whole) >= 0.5, whole + jnp.sign(x), whole)


_UNARY = {
    "exp": jnp.exp,
    "exp2": jnp.exp2,
    "log": jnp.log,
    "log2": jnp.log2,
    "sqrt": jnp.sqrt,
    "rsqrt": lax.rsqrt,
    "abs": jnp.abs,
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "sin": jnp.sin,
    "cos": jnp.cos,
    "tan": jnp.tan,
    "asin": jnp.arcsin,
    "acos": jnp.arccos,
    "atan": jnp.arctan,
    "sinh": jnp.sinh,
    "cosh": jnp.cosh,
    "asinh": jnp.arcsinh,
    "acosh": jnp.arccosh,
    "atanh": jnp.arctanh,
    "erf": jax.scipy.special.erf,
    "log10": jnp.log10,
    "log1p": jnp.log1p,
    "exp10": lambda x: jnp.power(jnp.asarray(10, x.dtype), x),
    "floor": jnp.floor,
    "ceil": jnp.ceil,
    "trunc": jnp.trunc,
    "round": _round_half_away,
    "nearbyint": jnp.round,   # halfway cases to even
}

_BINARY = {
    "pow": jnp.power,
    "atan2": jnp.arctan2,
    "hypot": jnp.hypot,
    "copysign": jnp.copysign,
}
