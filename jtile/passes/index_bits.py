"""Bit-exact index maps: which bit of a T.Parallel iteration each bit of an index reads.

Fragment layouts are linear over bits (`jtile.passes.layout`), so a fragment indexed by an
expression of the loop variables can follow the loop's layout whenever every bit of the index
is one bit of one loop variable, a constant, or a bit of a value that is the same for every
iteration (a serial counter, a block index). Shifts and masks by constants (`j // 2`, `j >> 1`,
`j % 4`, `j & 3`), scaling by powers of 2 (`2 * j`, `j << 1`) and sums or ors of terms whose
bits cannot overlap (`2 * j + 1`, `i * 8 + j` with j below 8, `k * 16 + j`) are such maps;
TileLang's 4-bit unpack `B[i, j // 2] >> (j % 2 * 4)` reads its packed tile through one.
Anything else (`i + 1`, `3 * j`) may carry between bits, and is not a bit map.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from jtile.ir import nodes as ir
from jtile.ir.walk import sub_expressions

# Constant index bits.
ZERO = "0"
ONE = "1"

# Index values are int32; the bits above never matter.
WIDTH = 32


@dataclass(frozen=True, eq=False)
class UniformBit:
    """Bit `bit` of `expr`, an expression that does not depend on the loop's variables."""

    expr: ir.Expr
    bit: int

    # ir.Expr overloads ==, so compare the expression by identity.
    def __eq__(self, other) -> bool:
        return isinstance(other, UniformBit) and other.expr is self.expr and other.bit == self.bit

    def __hash__(self) -> int:
        return hash((id(self.expr), self.bit))


def is_loop_bit(source) -> bool:
    """Whether an index bit's source is a bit (loop dim, bit) of the iteration."""
    return isinstance(source, tuple)


def bit_count(extent: int) -> int:
    """Bits needed for the values 0 .. extent - 1."""
    return max(extent - 1, 0).bit_length()


def _const_int(e) -> Optional[int]:
    if isinstance(e, ir.Const) and not e.dtype.is_float and not isinstance(e.value, bool):
        return int(e.value)
    return None


def _power_of_two_exponent(e) -> Optional[int]:
    c = _const_int(e)
    if c is None or c <= 0 or c & (c - 1):
        return None
    return c.bit_length() - 1


def _reads_any(e, variables) -> bool:
    return any(isinstance(x, ir.Var) and any(x is v for v in variables)
               for x in sub_expressions(e))


def _reads_thread(e) -> bool:
    return any(isinstance(x, ir.Var) and x.kind is ir.VarKind.THREAD for x in sub_expressions(e))


def index_bits(index, loop_vars: tuple, extents: tuple) -> Optional[list]:
    """The source of each of the low WIDTH bits of `index` (ZERO, ONE, (loop dim, bit) or a
    UniformBit), or None when `index` is not a bit-exact map of the loop variables or reads
    the thread index."""
    if _reads_thread(index):
        return None
    c = _const_int(index)
    if c is not None:
        return [ONE if (c >> b) & 1 else ZERO for b in range(WIDTH)] if c >= 0 else None
    for d, v in enumerate(loop_vars):
        if index is v:
            n = bit_count(extents[d])
            return [(d, b) if b < n else ZERO for b in range(WIDTH)]
    bits = _combined_bits(index, loop_vars, extents)
    if bits is None and not _reads_any(index, loop_vars):
        # The same for every iteration: its bits are whatever its value's bits are. (Its
        # structure still counts where it tells bits apart: `k * 8 + j`.)
        return [UniformBit(index, b) for b in range(WIDTH)]
    return bits


def _combined_bits(index, loop_vars, extents) -> Optional[list]:
    if isinstance(index, ir.Cast) and not index.dtype.is_float and \
            not index.value.dtype.is_float:
        return index_bits(index.value, loop_vars, extents)
    if not isinstance(index, ir.BinOp):
        return None
    op, a, b = index.op, index.a, index.b
    if op in ("add", "bitor"):
        left = index_bits(a, loop_vars, extents)
        right = index_bits(b, loop_vars, extents)
        if left is None or right is None:
            return None
        out = []
        for x, y in zip(left, right):
            if x != ZERO and y != ZERO:
                return None  # both terms may set this bit: a carry, or an or of two bits
            out.append(y if x == ZERO else x)
        return out
    if op == "mul":
        shift, term = _power_of_two_exponent(b), a
        if shift is None:
            shift, term = _power_of_two_exponent(a), b
        return _shifted_up(term, shift, loop_vars, extents)
    if op == "shl":
        return _shifted_up(a, _const_int(b), loop_vars, extents)
    if op in ("floordiv", "shr"):
        shift = _power_of_two_exponent(b) if op == "floordiv" else _const_int(b)
        inner = index_bits(a, loop_vars, extents) if shift is not None and shift >= 0 else None
        if inner is None:
            return None
        return [inner[i + shift] if i + shift < WIDTH else ZERO for i in range(WIDTH)]
    if op in ("mod", "bitand"):
        mask = _const_int(b)
        if op == "mod":
            shift = _power_of_two_exponent(b)
            mask = None if shift is None else (1 << shift) - 1
        inner = index_bits(a, loop_vars, extents) if mask is not None and mask >= 0 else None
        if inner is None:
            return None
        return [inner[i] if (mask >> i) & 1 else ZERO for i in range(WIDTH)]
    return None


def _shifted_up(term, shift, loop_vars, extents) -> Optional[list]:
    if shift is None or shift < 0:
        return None
    inner = index_bits(term, loop_vars, extents)
    if inner is None:
        return None
    return [ZERO] * min(shift, WIDTH) + inner[:max(WIDTH - shift, 0)]
