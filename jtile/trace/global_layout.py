"""`T.annotate_layout` on a global buffer: the array stores its elements in the order of an
index map, as in TileLang (a flash-attention backward accumulates dQ in the order of its MMA
fragments, and the kernel that reads dQ back annotates the same map).

Element `i` of the buffer lives at flat position `ravel(forward(*i), extents)` of the array,
where `extents` bound each output coordinate of `forward` over the buffer's index space. The
map must be a bijection onto the array's elements; the bounds are found by evaluating
`forward` on index ranges (the `+ - * // %` arithmetic TileLang's layouts are written in), and
their product must equal the number of elements.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GlobalLayout:
    """How a global buffer's elements are ordered in its array."""

    forward: object     # the index map: logical indices -> output coordinates
    extents: tuple      # the bound of each output coordinate (row-major over these)

    def positions(self, shape: tuple, xp=np):
        """The flat array position of every logical element, shaped like the buffer
        (`xp`: numpy, or jax.numpy inside a traced function)."""
        grids = [xp.arange(n, dtype=xp.int32).reshape(
            tuple(n if d == axis else 1 for d in range(len(shape))))
            for axis, n in enumerate(shape)]
        coords = _as_tuple(self.forward(*grids))
        flat = 0
        for coord, extent in zip(coords, self.extents):
            flat = flat * extent + coord
        return xp.broadcast_to(xp.asarray(flat, dtype=xp.int32), shape)


class _Range:
    """An integer interval; the arithmetic of index maps on intervals (sound bounds)."""

    def __init__(self, lo: int, hi: int):
        self.lo, self.hi = lo, hi

    @staticmethod
    def of(value) -> "_Range":
        if isinstance(value, _Range):
            return value
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            return _Range(int(value), int(value))
        raise TypeError(f"{value!r} in an index map")

    def __add__(self, other):
        other = _Range.of(other)
        return _Range(self.lo + other.lo, self.hi + other.hi)

    __radd__ = __add__

    def __sub__(self, other):
        other = _Range.of(other)
        return _Range(self.lo - other.hi, self.hi - other.lo)

    def __rsub__(self, other):
        return _Range.of(other) - self

    def __mul__(self, other):
        other = _Range.of(other)
        products = [a * b for a in (self.lo, self.hi) for b in (other.lo, other.hi)]
        return _Range(min(products), max(products))

    __rmul__ = __mul__

    def __floordiv__(self, other):
        d = _positive_constant(other, "//")
        return _Range(self.lo // d, self.hi // d)

    def __mod__(self, other):
        d = _positive_constant(other, "%")
        if self.lo // d == self.hi // d:
            return _Range(self.lo % d, self.hi % d)
        return _Range(0, d - 1)


def _positive_constant(value, op: str) -> int:
    value = _Range.of(value)
    if value.lo != value.hi or value.lo <= 0:
        raise TypeError(f"`{op}` by a value that is not a positive constant")
    return value.lo


def _as_tuple(out) -> tuple:
    return tuple(out) if isinstance(out, (list, tuple)) else (out,)


def global_layout(shape: tuple, forward) -> GlobalLayout:
    """The GlobalLayout of `forward` over `shape`; ValueError (with the reason) when its
    output is not provably a bijection onto the `prod(shape)` elements."""
    try:
        coords = _as_tuple(forward(*(_Range(0, n - 1) for n in shape)))
        coords = tuple(_Range.of(c) for c in coords)
    except TypeError as e:
        raise ValueError(f"jtile bounds index maps written with + - * and // or % by positive "
                         f"constants ({e})") from None
    if any(c.lo < 0 for c in coords):
        raise ValueError("an output coordinate can be negative")
    extents = tuple(c.hi + 1 for c in coords)
    size = math.prod(shape)
    if math.prod(extents) != size:
        raise ValueError(f"its outputs span {list(extents)} = {math.prod(extents)} positions "
                         f"for {size} elements; the map must be a bijection onto them")
    layout = GlobalLayout(forward, extents)
    if size <= _CHECKED_SIZE:
        counts = np.bincount(layout.positions(tuple(shape)).reshape(-1), minlength=size)
        if counts.max() != 1:
            raise ValueError("it sends two elements to one position; the map must be a "
                             "bijection")
    return layout


# Maps over up to this many elements are checked element by element at trace time.
_CHECKED_SIZE = 1 << 22
