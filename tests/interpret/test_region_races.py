"""Shared memory that T.ws regions touch with no mbarrier ordering them, in interpret mode.

On the GPU the regions run at once and only their mbarriers order them; interpret mode runs
them in one order those barriers allow (jtile/interpret/barrier_schedule.py). A read of what
another region writes, or a write over what it reads, that no chain of arrive -> wait orders is
a data race whose result depends on timing: interpret mode refuses it, naming both lines
(jtile/interpret/region_races.py). Accesses ordered by barriers, and accesses of different
elements, such as the two stages of a ring, are not races. Last, the index bounds the check
relies on (jtile/interpret/index_ranges.py) are checked against every value.
"""

import functools
import re

import numpy as np
import pytest

import jtile
import jtile.language as T
from jtile import JtileError
from jtile.interpret.index_ranges import THREAD, dense, span
from jtile.interpret.static_ints import static_int
from jtile.ir.nodes import BinOp, Const, Var, VarKind
from jtile.ir.types import DType

ROWS, COLS = 16, 64
HERE = "test_region_races.py"


def _line(marker: str) -> int:
    """The line of this file that ends with the comment `# <marker>`."""
    with open(__file__) as f:
        lines = [n for n, text in enumerate(f, 1) if text.rstrip().endswith(f"# {marker}")]
    assert len(lines) == 1, marker
    return lines[0]


def _tiles(n, seed):
    return np.random.default_rng(seed).standard_normal((n, ROWS, COLS)).astype(np.float32)


def epilogue(X, *, ordered):
    """Warpgroup 0 hands warpgroup 1 a tile through `ready`, then writes a row of scales that
    warpgroup 1 reads after its own work: with `ordered`, warpgroup 0 arrives on `done` after
    writing them and warpgroup 1 waits on it before reading them (the MLA decoding epilogue)."""
    O = T.empty((ROWS, COLS), "float32")
    with T.Kernel(1, threads=256):
        tile = T.alloc_shared((ROWS, COLS), "float32")
        scale = T.alloc_shared((COLS,), "float32")
        ready = T.alloc_barrier(128)
        done = T.alloc_barrier(128)
        with T.ws(0):
            T.copy(X[0, :, :], tile)
            T.barrier_arrive(ready)
            for c in T.Parallel(COLS):
                scale[c] = X[1, 0, c] + 1.0  # scale written
            if ordered:
                T.barrier_arrive(done)
        with T.ws(1):
            T.barrier_wait(ready, 0)
            if ordered:
                T.barrier_wait(done, 0)
            for r, c in T.Parallel(ROWS, COLS):
                O[r, c] = tile[r, c] * scale[c]  # scale read
    return O


def test_a_read_no_barrier_orders_after_the_write_is_a_race():
    call = jtile.pallas_like(functools.partial(epilogue, ordered=False), interpret=True)
    expected = (rf"{HERE}:{_line('scale read')}: data race between T.ws regions on shared buffer "
                rf"scale: threads 128..255 read it at {HERE}:{_line('scale read')} while "
                rf"threads 0..127 write it at {HERE}:{_line('scale written')}, and no mbarrier "
                r"orders the write before the read. On the GPU the regions run at once, so what "
                r"the read sees depends on their timing .*Make threads 0..127 arrive on an "
                r"mbarrier after the write and threads 128..255 wait on it before the read " +
                re.escape("(T.alloc_barrier(arrive_count=128), T.barrier_arrive, "
                          "T.barrier_wait)"))
    with pytest.raises(JtileError, match=expected):
        call(_tiles(2, 1))


def test_the_same_hand_off_ordered_by_an_mbarrier_runs():
    x = _tiles(2, 2)
    out = jtile.pallas_like(functools.partial(epilogue, ordered=True), interpret=True)(x)
    np.testing.assert_allclose(np.asarray(out), x[0] * (x[1, 0] + np.float32(1)), rtol=1e-6)


def ring(X, *, steps, style, early_free=False):
    """A two-stage ring: warpgroup 1 writes 2 * X[t] into stage t % 2 once `empty` frees it and
    signals `full`; warpgroup 0 reads it into O[t] (plus t) and frees it. While warpgroup 0
    reads stage s, warpgroup 1 may already write stage s + 1. The producer writes with a tile
    copy, element by element, or per thread. With `early_free`, warpgroup 0 frees a stage
    before reading it, so the producer's wait no longer orders its next write of that stage
    after the read."""
    O = T.empty((steps, ROWS, COLS), "float32")
    with T.Kernel(1, threads=256):
        tx = T.get_thread_binding()
        tiles = T.alloc_shared((2, ROWS, COLS), "float32")
        doubled = T.alloc_fragment((ROWS, COLS), "float32")
        full = T.alloc_barrier([128, 128])
        empty = T.alloc_barrier([128, 128])
        with T.ws(1):
            for t in T.serial(steps):
                T.mbarrier_wait_parity(empty[t % 2], ((t // 2) & 1) ^ 1)
                if style == "copy":
                    T.copy(X[t, :, :], doubled)
                    for r, c in T.Parallel(ROWS, COLS):
                        doubled[r, c] = doubled[r, c] * 2.0
                    T.copy(doubled, tiles[t % 2, :, :])  # stage written
                elif style == "parallel":
                    for r, c in T.Parallel(ROWS, COLS):
                        tiles[t % 2, r, c] = X[t, r, c] * 2.0
                else:
                    for k in T.serial(ROWS * COLS // 128):
                        e = k * 128 + tx - 128
                        tiles[t % 2, e // COLS, e % COLS] = X[t, e // COLS, e % COLS] * 2.0
                T.mbarrier_arrive(full[t % 2])
        with T.ws(0):
            for t in T.serial(steps):
                T.mbarrier_wait_parity(full[t % 2], (t // 2) & 1)
                if early_free:
                    T.mbarrier_arrive(empty[t % 2])
                for r, c in T.Parallel(ROWS, COLS):
                    O[t, r, c] = tiles[t % 2, r, c] + T.cast(t, "float32")  # stage read
                if not early_free:
                    T.mbarrier_arrive(empty[t % 2])
    return O


@pytest.mark.parametrize("style", ["copy", "parallel", "per_thread"])
def test_a_two_stage_ring_is_not_a_race(style):
    x = _tiles(5, 3)
    out = jtile.pallas_like(functools.partial(ring, steps=5, style=style), interpret=True)(x)
    np.testing.assert_array_equal(np.asarray(out), x * np.float32(2) +
                                  np.arange(5, dtype=np.float32)[:, None, None])


def test_overwriting_a_stage_still_being_read_is_a_race():
    """The producer's wait on `empty` returns once the consumer has freed the stage, which it
    does before reading it: the next write of the stage may land during the read."""
    call = jtile.pallas_like(functools.partial(ring, steps=4, style="copy", early_free=True),
                             interpret=True)
    expected = (rf"on shared buffer tiles: threads 128..255 write it at "
                rf"{HERE}:{_line('stage written')} while threads 0..127 read it at "
                rf"{HERE}:{_line('stage read')}, and no mbarrier orders the read before the "
                r"write.*what the read sees depends on their timing.*Make threads 0..127 arrive "
                r"on an mbarrier after the read and threads 128..255 wait on it before the write")
    with pytest.raises(JtileError, match=expected):
        call(_tiles(4, 4))


def halves(X, *, offset):
    """Each warpgroup doubles rows of X in shared memory and copies them out, with no barrier
    between the two: warpgroup 0 rows 0..7, warpgroup 1 rows offset..offset + 7. Both first
    wait for `start`, on which every thread arrives, so the regions run scheduled."""
    O = T.empty((2, ROWS // 2, COLS), "float32")
    with T.Kernel(1, threads=256):
        rows = T.alloc_shared((ROWS, COLS), "float32")
        start = T.alloc_barrier(256)
        T.barrier_arrive(start)
        with T.ws(0):
            T.barrier_wait(start, 0)
            for r, c in T.Parallel(ROWS // 2, COLS):
                rows[r, c] = X[r, c] * 2.0  # first half written
            T.copy(rows[0:ROWS // 2, :], O[0, :, :])
        with T.ws(1):
            T.barrier_wait(start, 0)
            for r, c in T.Parallel(ROWS // 2, COLS):
                rows[r + offset, c] = X[r + offset, c] * 2.0  # second half written
            T.copy(rows[offset:offset + ROWS // 2, :], O[1, :, :])
    return O


def test_regions_on_disjoint_halves_of_a_buffer_need_no_barrier():
    x = _tiles(1, 5)[0]
    out = jtile.pallas_like(functools.partial(halves, offset=ROWS // 2), interpret=True)(x)
    np.testing.assert_array_equal(np.asarray(out), 2 * x.reshape(2, ROWS // 2, COLS))


def test_regions_on_overlapping_rows_of_a_buffer_race():
    call = jtile.pallas_like(functools.partial(halves, offset=ROWS // 4), interpret=True)
    with pytest.raises(JtileError, match=rf"on shared buffer rows: threads 128..255 write it at "
                       rf"{HERE}:{_line('second half written')} while threads 0..127 write it "
                       rf"at {HERE}:{_line('first half written')}.*what the buffer holds after "
                       r"both depends on their timing"):
        call(_tiles(1, 6)[0])


def test_halves_indexed_by_the_thread_index_need_no_barrier():
    """Each thread writes its own element (the thread index runs over its region's threads
    only), then each warpgroup copies its half out."""
    def kernel(X):
        O = T.empty((256,), "float32")
        with T.Kernel(1, threads=256):
            tx = T.get_thread_binding()
            s = T.alloc_shared((256,), "float32")
            start = T.alloc_barrier(256)
            T.barrier_arrive(start)
            with T.ws(1):
                T.barrier_wait(start, 0)
                s[tx] = X[tx] * 3.0
                T.copy(s[128:256], O[128:256])
            with T.ws(0):
                T.barrier_wait(start, 0)
                s[tx] = X[tx] + 1.0
                T.copy(s[0:128], O[0:128])
        return O

    x = np.random.default_rng(7).standard_normal(256).astype(np.float32)
    out = np.asarray(jtile.pallas_like(kernel, interpret=True)(x))
    np.testing.assert_array_equal(out, np.concatenate([x[:128] + 1, x[128:] * 3]))


def test_a_hand_off_from_a_later_region_on_the_writer_s_threads_orders_the_write():
    """Warpgroup 0 writes the tile in one region and arrives in the next: its threads run the
    two in program order, so the arrival still orders the write before warpgroup 1's read."""
    def kernel(X):
        O = T.empty((ROWS, COLS), "float32")
        with T.Kernel(1, threads=256):
            s = T.alloc_shared((ROWS, COLS), "float32")
            ready = T.alloc_barrier(128)
            with T.ws(0):
                T.copy(X, s)
            with T.ws(0):
                T.barrier_arrive(ready)
            with T.ws(1):
                T.barrier_wait(ready, 0)
                T.copy(s, O)
        return O

    x = _tiles(1, 8)[0]
    np.testing.assert_array_equal(np.asarray(jtile.pallas_like(kernel, interpret=True)(x)), x)


_I, _J, _TX = Var("i"), Var("j"), Var("tx", kind=VarKind.THREAD)


def _c(value):
    return Const(value, DType.int32)


def _op(op, a, b):
    return BinOp(op, a, b, DType.int32)


@pytest.mark.parametrize("expr", [
    _op("add", _I, _c(8)),
    _op("add", _op("mul", _I, _c(16)), _J),
    _op("floordiv", _op("sub", _op("add", _op("mul", _I, _c(128)), _TX), _c(128)), _c(64)),
    _op("mod", _op("sub", _TX, _c(128)), _c(8)),
    _op("mod", _op("add", _I, _c(2)), _c(4)),
    _op("sub", _c(7), _I),
    _op("bitand", _op("shr", _TX, _c(2)), _c(5)),
])
def test_index_bounds_hold_every_value_and_dense_indices_take_them_all(expr):
    """What the race check assumes of an index: `span` bounds every value it takes over its
    loops' ranges, and an index `dense` accepts takes every value of that bound."""
    ranges = {id(_I): (0, 3), id(_J): (0, 15), THREAD: (128, 255)}
    values = {static_int(expr, {id(_I): i, id(_J): j, id(_TX): tx})
              for i in range(4) for j in range(16) for tx in range(128, 256)}
    low, high = span(expr, {}, ranges)
    assert low <= min(values) and max(values) <= high
    if dense(expr, 1, {}) is not None:
        assert values == set(range(low, high + 1))
