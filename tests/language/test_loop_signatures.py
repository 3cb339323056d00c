"""TileLang's loop signatures: `T.Pipelined(start, stop=None, num_stages=0, ...)`,
`T.serial` / `T.unroll(start, stop=None, step=None)` and `T.vectorized(start, stop=None)`, by
position and by keyword. TileLang's own examples write `T.Pipelined(start, end, num_stages=n)`,
`T.Pipelined(start=..., stop=..., num_stages=...)` and `T.Pipelined(0, n, 3)`; the last one's 3
is a stage count, never a step."""

import jax
import numpy as np
import pytest

import jtile
import jtile.language as T
from jtile.ir import nodes as ir
from tests.trace.helpers import body_of

N = 96


def _loops(body):
    out = []
    for s in body:
        if isinstance(s, ir.For):
            out.append(s)
            out += _loops(s.body)
        elif isinstance(s, ir.IfThenElse):
            out += _loops(s.then_body) + _loops(s.else_body or ())
    return out


def _only_loop(kernel):
    loops = _loops(body_of(kernel))
    assert len(loops) == 1
    return loops[0]


def _copy_rows(loop_of):
    """A kernel copying rows 1..5 of 16-element rows through shared memory in `loop_of`."""
    def kernel(X, O):
        with T.Kernel(1, threads=32):
            s = T.alloc_shared((16,), "float32")
            for k in loop_of():
                T.copy(X[k * 16:(k + 1) * 16], s)
                T.copy(s, O[k * 16:(k + 1) * 16])
    return kernel


@pytest.mark.parametrize("loop_of", [
    lambda: T.Pipelined(1, 6, 3),
    lambda: T.Pipelined(1, 6, num_stages=3),
    lambda: T.Pipelined(start=1, stop=6, num_stages=3),
    lambda: T.Pipelined(1, stop=6, num_stages=3),
], ids=["positional", "stages-keyword", "all-keywords", "stop-keyword"])
def test_pipelined_takes_tilelang_arguments(loop_of):
    loop = _only_loop(_copy_rows(loop_of))
    assert loop.kind is ir.LoopKind.PIPELINED and loop.num_stages == 3 and loop.step == 1
    assert isinstance(loop.extent, ir.Const) and loop.extent.value == 5
    x = np.random.default_rng(0).standard_normal(N).astype(np.float32)
    out = jtile.pallas_like(_copy_rows(loop_of), out_shape=jax.ShapeDtypeStruct((N,), np.float32),
                            input_output_aliases={0: 0}, interpret=True)(x)
    np.testing.assert_array_equal(np.asarray(out), x)   # rows 1..5 copied onto themselves


@pytest.mark.parametrize("loop_of,start,extent,step", [
    (lambda: T.serial(5), 0, 5, 1),
    (lambda: T.serial(start=1, stop=6), 1, 5, 1),
    (lambda: T.serial(0, 6, step=2), 0, 3, 2),
    (lambda: T.serial(6, step=2), 0, 3, 2),
    (lambda: T.unroll(start=2, stop=6, step=2), 2, 2, 2),
    (lambda: T.vectorized(start=1, stop=3), 1, 2, 1),
])
def test_serial_unroll_and_vectorized_take_tilelang_keywords(loop_of, start, extent, step):
    loop = _only_loop(_copy_rows(loop_of))
    assert loop.extent.value == extent and loop.step == step
    assert (loop.start.value if isinstance(loop.start, ir.Const) else loop.start) == start


@pytest.mark.parametrize("loop_of,message", [
    (lambda: T.Pipelined(0, 4, 2, num_stages=2), "T.Pipelined got num_stages both by position"),
    (lambda: T.Pipelined(0, 4, 2, 1), r"T.Pipelined takes \(extent\) or \(start, stop\[, "
                                      r"num_stages\]\); got 4 positional"),
    (lambda: T.serial(stop=4), "T.serial takes .* got no extent"),
    (lambda: T.vectorized(0, 8, 2), r"T.vectorized takes \(extent\) or \(start, stop\); use "
                                    "T.serial or T.unroll for a step"),
])
def test_loop_arguments_that_do_not_fit_are_refused_by_name(loop_of, message):
    with pytest.raises(jtile.JtileError, match=message):
        body_of(_copy_rows(loop_of))
