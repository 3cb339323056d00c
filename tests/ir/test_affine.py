"""Affine forms of index expressions: what is affine, static differences and static values."""

import pytest

from jtile.ir.affine import Affine, affine, static_difference, static_value
from jtile.ir.nodes import BinOp, Call, Cast, Const, Load, Select, UnOp, Var, as_expr
from jtile.ir.types import DType

k = Var("k")
j = Var("j")
f = Var("f", DType.float32)


def form(expr):
    a = affine(expr)
    assert a is not None
    return {v.name: c for v, c in a.terms.items()}, a.const


def test_constants_and_variables():
    assert form(Const(7, DType.int32)) == ({}, 7)
    assert form(k) == ({"k": 1}, 0)
    assert affine(Const(1.5, DType.float32)) is None
    assert affine(Const(True, DType.bool)) is None


def test_arithmetic():
    assert form(k * 64 + 3) == ({"k": 64}, 3)
    assert form(64 * k - j * 2 + 1) == ({"k": 64, "j": -2}, 1)
    assert form((k + 1) * 64) == ({"k": 64}, 64)
    assert form(-(k - j)) == ({"k": -1, "j": 1}, 0)
    assert form(3 - k) == ({"k": -1}, 3)
    assert form(k * 2 - k * 2 + 5) == ({}, 5)            # cancelled terms disappear
    assert form(Cast(k * 4, DType.int64)) == ({"k": 4}, 0)


def test_non_affine_expressions():
    assert affine(k * j) is None
    assert affine(k // 2) is None
    assert affine(k % 4) is None
    assert affine(Cast(f, DType.int32)) is None          # a float is not an index
    assert affine(Call("max", (k, j), DType.int32)) is None
    assert affine(Select(k < j, k, j, DType.int32)) is None
    assert affine(BinOp("shl", k, Const(1, DType.int32), DType.int32)) is None
    assert affine(UnOp("not", k, DType.bool)) is None


def test_variables_compare_by_identity():
    other_k = Var("k")
    assert len(affine(k - other_k).terms) == 2
    assert affine(k - k).is_const


def test_affine_class():
    a = Affine({k: 2, j: 0}, 3)
    assert a.terms == {k: 2} and a.coefficient(k) == 2 and a.coefficient(j) == 0
    b = (a + Affine({k: -2}, 1))
    assert b.is_const and b.const == 4
    assert a.scale(3).terms == {k: 6} and a.scale(3).const == 9
    assert a.scale(0).is_const and a.scale(0).const == 0


@pytest.mark.parametrize("expr, value", [
    (7, 7), (Const(12, DType.int32), 12), (as_expr(3) * 4 - 2, 10),
    (k - k + 9, 9), ((k + 2) * 3 - k * 3, 6), (True, None), (2.0, None), ("3", None),
    (k, None), (k * j - k * j, None), (Const(2.0, DType.float32), None),
])
def test_static_value(expr, value):
    assert static_value(expr) == value


@pytest.mark.parametrize("stop, start, diff", [
    ((k + 1) * 64, k * 64, 64),
    (k * 64 + 64, k * 64, 64),
    (k * 32 + j + 16, j + k * 32, 16),
    (as_expr(40), as_expr(8), 32),
    (k * 64, (k + 1) * 64, -64),
    (k * 2, k, None),                 # depends on k
    (k + j, k, None),
    (k // 2 + 4, k // 2 + 1, 3),      # the same opaque term on both sides
])
def test_static_difference(stop, start, diff):
    assert static_difference(stop, start) == diff


def test_static_difference_treats_loads_and_other_terms_as_opaque():
    from jtile.ir.nodes import Buffer
    from jtile.ir.types import MemorySpace

    buf = Buffer("off", (4,), DType.int32, MemorySpace.GLOBAL)

    def load(i):
        return Load(buf, (as_expr(i),), DType.int32)

    assert affine(load(0)) is None                                  # still not affine itself
    assert static_difference(load(0) + 8, load(0)) == 8             # X[off[0] : off[0] + 8]
    assert static_difference((load(k) + 1) * 16, load(k) * 16) == 16
    assert static_difference(load(0) + 8, load(1)) is None          # different elements
    assert static_difference(load(k) + 8, load(j)) is None
    assert static_difference(k // 2 + 4, k // 2) == 4
    assert static_difference(k // 2 + 4, k // 4) is None
    other = Buffer("off", (4,), DType.int32, MemorySpace.GLOBAL)    # same name, other buffer
    assert static_difference(load(0) + 8, Load(other, (as_expr(0),), DType.int32)) is None
