"""IR expressions to CUDA C++ expressions.

C promotes integers narrower than 32 bits to int before arithmetic, so `(uint8)0xf0 << 4` is
0xf00 in C but 0x00 in the IR's uint8 (and in interpret mode). Results of arithmetic and
bitwise operators on those types are cast back to their type, so nested expressions see the
same wrapped values on both sides.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

from jtile.errors import JtileError
from jtile.ir import nodes as ir
from jtile.ir.types import DType
from jtile.ir.warp_ops import SHUFFLES, VOTES, WARP_CALLS

_C_OPS = {"add": "+", "sub": "-", "mul": "*", "div": "/", "lt": "<", "le": "<=", "gt": ">",
          "ge": ">=", "eq": "==", "ne": "!=", "and": "&&", "or": "||", "xor": "^", "shl": "<<",
          "shr": ">>", "bitand": "&", "bitor": "|"}


def const_text(value, dtype: DType) -> str:
    """A C++ literal of `dtype`; 16/8-bit floats are built from a float literal."""
    if dtype.is_bool:
        return "true" if value else "false"
    if dtype.is_int:
        suffix = {"long long": "LL", "unsigned long long": "ULL", "unsigned": "u"}.get(dtype.c_name, "")
        text = f"{int(value)}{suffix}"
        return text if dtype.c_name in ("int", "long long", "unsigned long long", "unsigned") \
            else f"(({dtype.c_name}){text})"
    value = float(value)
    if math.isnan(value):
        f32 = "__int_as_float(0x7fc00000)"
    elif math.isinf(value):
        f32 = ("" if value > 0 else "-") + "jt::infinity<float>()"
    else:
        f32 = f"{value!r}f"
        if "e" not in f32 and "." not in f32:
            f32 = f"{value!r}.0f"
    if dtype is DType.float32:
        return f32
    if dtype is DType.float64:
        return f32[:-1] if f32.endswith("f") and "infinity" not in f32 else f"((double){f32})"
    return f"jt::cast<{dtype.c_name}>({f32})"


class ExprEmitter:
    """Renders expressions; `load` renders a buffer element access in the current context."""

    def __init__(self, var_name: Callable[[ir.Var], str], load: Callable[[ir.Load], str],
                 bounds: Callable[[ir.Expr], Optional[tuple]] = lambda e: None):
        self.var_name = var_name
        self.load = load
        self.bounds = bounds   # (lowest, highest) of an integer expression, or None

    def _c_division_agrees(self, e: ir.BinOp) -> bool:
        """Whether C's truncating `/` and `%` give the floor results here: an unsigned type,
        or a dividend >= 0 and a divisor >= 1 for every value of their variables."""
        if not e.dtype.is_signed:
            return True
        a, b = self.bounds(e.a), self.bounds(e.b)
        return a is not None and b is not None and a[0] >= 0 and b[0] >= 1

    def typed(self, e: ir.Expr, dtype: DType) -> str:
        text = self(e)
        return text if e.dtype is dtype else f"jt::cast<{dtype.c_name}>({text})"

    def __call__(self, e: ir.Expr) -> str:
        if isinstance(e, ir.Const):
            return const_text(e.value, e.dtype)
        if isinstance(e, ir.Var):
            return self.var_name(e)
        if isinstance(e, ir.Load):
            return self.load(e)
        if isinstance(e, ir.Cast):
            return f"jt::cast<{e.dtype.c_name}>({self(e.value)})"
        if isinstance(e, ir.Select):
            return f"({self(e.cond)} ? {self.typed(e.a, e.dtype)} : {self.typed(e.b, e.dtype)})"
        if isinstance(e, ir.UnOp):
            if e.op == "neg":  # float8 negates in float32 (the node's type): no C++ operator
                return _wrap(e.dtype, f"(-{self.typed(e.a, e.dtype)})")
            return f"(!{self(e.a)})"
        if isinstance(e, ir.Call) and e.fn == "reinterpret":
            return f"jt::bitcast<{e.dtype.c_name}>({self(e.args[0])})"
        if isinstance(e, ir.Call) and e.fn in WARP_CALLS:
            return self._warp(e)
        if isinstance(e, ir.Call):
            args = ", ".join(self.typed(a, e.dtype) for a in e.args)
            return f"jt::{e.fn}({args})"
        if isinstance(e, ir.BinOp):
            return self._binary(e)
        raise JtileError(f"jtile internal: cannot render {e!r}")

    def _warp(self, e: ir.Call) -> str:
        """T.shfl_* (`jt::warp_shfl_<kind>(value, lane argument, width)`), T.warp_reduce_*
        and the votes (jtile/warp.cuh)."""
        value = self.typed(e.args[0], e.dtype) if e.fn not in VOTES else self(e.args[0])
        if e.fn in SHUFFLES:
            kind = e.fn[len("shfl_"):]
            return (f"jt::warp_shfl_{kind}({value}, {self(e.args[1])}, {self(e.args[2])}, "
                    f"{e.args[3].value:#x}u)")
        return f"jt::{e.fn}({value})"

    def _binary(self, e: ir.BinOp) -> str:
        if e.op in ("lt", "le", "gt", "ge", "eq", "ne"):
            from jtile.ir.types import promote

            common = promote(e.a.dtype, e.b.dtype)
            return f"({self.typed(e.a, common)} {_C_OPS[e.op]} {self.typed(e.b, common)})"
        if e.op in ("and", "or"):
            return f"({self(e.a)} {_C_OPS[e.op]} {self(e.b)})"
        a, b = self.typed(e.a, e.dtype), self.typed(e.b, e.dtype)
        if e.op in ("max", "min"):
            return f"jt::{e.op}({a}, {b})"
        if e.op in ("floordiv", "mod"):
            if not e.dtype.is_float:  # floor semantics (TileLang's), C's where they agree
                if self._c_division_agrees(e):
                    return _wrap(e.dtype, f"({a} {'/' if e.op == 'floordiv' else '%'} {b})")
                fn = "floordiv" if e.op == "floordiv" else "floormod"
                return _wrap(e.dtype, f"jt::{fn}<{e.dtype.c_name}>({a}, {b})")
            if e.dtype is DType.float64:
                return f"floor({a} / {b})" if e.op == "floordiv" else f"fmod({a}, {b})"
            fa, fb = f"jt::cast<float>({a})", f"jt::cast<float>({b})"
            value = f"floorf({fa} / {fb})" if e.op == "floordiv" else f"fmodf({fa}, {fb})"
            return f"jt::cast<{e.dtype.c_name}>({value})"
        return _wrap(e.dtype, f"({a} {_C_OPS[e.op]} {b})")


def _wrap(dtype: DType, text: str) -> str:
    """`text` cast back to `dtype` when C would compute it in a wider int (see the module doc)."""
    if dtype.is_int and dtype.bits < 32:
        return f"(({dtype.c_name}){text})"
    return text
