"""T.ws regions that hand tiles to each other through mbarriers, in interpret mode.

The regions of a warp-specialised kernel run at once on the GPU and take turns at their
mbarriers; interpret mode follows the barriers and runs the regions in an order they allow
(jtile/interpret/barrier_schedule.py). Kernels here hand over several tiles within one
iteration of their loops, hand data both ways, and run a two-stage ring; barriers that can never
complete are reported as the hang they would be, and regions interpret mode cannot order are
refused.
"""

import functools

import jax
import numpy as np
import pytest

import jtile
import jtile.language as T
from jtile import JtileError
from jtile.interpret import barrier_schedule
from jtile.interpret.expressions import Env, Evaluator
from jtile.interpret.static_ints import static_int
from jtile.ir.nodes import BinOp, Cast, Const, Select, UnOp, Var
from jtile.ir.types import DType

ROWS, COLS = 16, 64


def staged(X, *, iters, style="signal", free_parity=None):
    """O[t] = 2 * X[t] + t for 2 * iters tiles. Warpgroup 0 writes tile t into one shared tile
    and signals it; warpgroup 1 reads it into O; warpgroup 0 waits until warpgroup 1 is done
    before overwriting it, twice in each iteration of the loop (two unrolled stages).

    style "signal": `ready` and `free` have 128 arrivals, each signalled by one warpgroup.
    style "rendezvous": both warpgroups arrive on both barriers (256 arrivals), warpgroup 1
    arriving on `ready` and waiting on it, warpgroup 0 likewise on `free` (the first tile has
    nothing to wait for, and warpgroup 1 has no tile to free after the last)."""
    O = T.empty((2 * iters, ROWS, COLS), "float32")
    last = 2 * iters - 1
    count = 128 if style == "signal" else 256
    with T.Kernel(1, threads=256):
        s = T.alloc_shared((ROWS, COLS), "float32")
        ready = T.alloc_barrier(count)
        free = T.alloc_barrier(count)
        with T.ws(0):
            for i in T.serial(iters):
                for stage in T.unroll(2):
                    t = i * 2 + stage
                    parity = (t & 1) ^ 1 if free_parity is None else free_parity(t)
                    if style == "signal":
                        T.barrier_wait(free, parity)
                    else:
                        with T.If(t > 0):
                            T.barrier_arrive(free)
                            T.barrier_wait(free, parity)
                    for r, c in T.Parallel(ROWS, COLS):
                        s[r, c] = X[t, r, c] * 2.0
                    T.barrier_arrive(ready)
        with T.ws(1):
            for i in T.serial(iters):
                for stage in T.unroll(2):
                    t = i * 2 + stage
                    if style == "rendezvous":
                        T.barrier_arrive(ready)
                    T.barrier_wait(ready, t & 1)
                    for r, c in T.Parallel(ROWS, COLS):
                        O[t, r, c] = s[r, c] + T.cast(t, "float32")
                    if style == "signal":
                        T.barrier_arrive(free)
                    else:
                        with T.If(t < last):
                            T.barrier_arrive(free)
    return O


def _tiles(n, seed):
    return np.random.default_rng(seed).standard_normal((n, ROWS, COLS)).astype(np.float32)


@pytest.mark.parametrize("style", ["signal", "rendezvous"])
def test_two_hand_offs_in_each_iteration_follow_the_barriers(style):
    """Running warpgroup 0's whole iteration before warpgroup 1's would hand warpgroup 1 the
    second stage's tile twice."""
    x = _tiles(6, 1)
    out = jtile.pallas_like(functools.partial(staged, iters=3, style=style), interpret=True)(x)
    expected = 2 * x.astype(np.float64) + np.arange(6)[:, None, None]
    np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-6, atol=1e-6)


def test_the_scheduled_kernel_runs_under_jit():
    x = _tiles(4, 2)
    call = jtile.pallas_like(functools.partial(staged, iters=2), interpret=True)
    out = jax.jit(call)(x)
    expected = 2 * x.astype(np.float64) + np.arange(4)[:, None, None]
    np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-6, atol=1e-6)


def exchange(X, *, iters, dynamic=False):
    """Data both ways in every stage: warpgroup 0 puts X[t] in `a` and signals `ready`;
    warpgroup 1 puts 3 * a + 1 in `b` and signals `back`; warpgroup 0 writes b - t to O[t].
    With `dynamic`, block bx runs bx + 1 iterations: a trip count known only on the device."""
    blocks = 2 if dynamic else 1
    O = T.empty((blocks, 2 * iters, ROWS, COLS), "float32")
    with T.Kernel(blocks, threads=256) as bx:
        a = T.alloc_shared((ROWS, COLS), "float32")
        b = T.alloc_shared((ROWS, COLS), "float32")
        ready = T.alloc_barrier(128)
        back = T.alloc_barrier(128)
        trips = bx + 1 if dynamic else iters
        with T.ws(0):
            for i in T.serial(trips):
                for stage in T.unroll(2):
                    t = i * 2 + stage
                    T.copy(X[t, :, :], a)
                    T.barrier_arrive(ready)
                    T.barrier_wait(back, t & 1)
                    for r, c in T.Parallel(ROWS, COLS):
                        O[bx, t, r, c] = b[r, c] - T.cast(t, "float32")
        with T.ws(1):
            for i in T.serial(trips):
                for stage in T.unroll(2):
                    t = i * 2 + stage
                    T.barrier_wait(ready, t & 1)
                    for r, c in T.Parallel(ROWS, COLS):
                        b[r, c] = a[r, c] * 3.0 + 1.0
                    T.barrier_arrive(back)
    return O


def test_data_handed_both_ways_within_an_iteration():
    x = _tiles(4, 3)
    out = jtile.pallas_like(functools.partial(exchange, iters=2), interpret=True)(x)
    expected = 3 * x.astype(np.float64) + 1 - np.arange(4)[:, None, None]
    np.testing.assert_allclose(np.asarray(out)[0], expected, rtol=1e-6, atol=1e-6)


def test_regions_exchanging_both_ways_under_a_device_trip_count_are_refused():
    """The loop bound depends on the block index, so the loop cannot be unrolled at trace time,
    and one region after the other (or loop by loop) would read tiles not yet written."""
    call = jtile.pallas_like(functools.partial(exchange, iters=2, dynamic=True), interpret=True)
    with pytest.raises(JtileError, match=r"interpret mode cannot order these T.ws regions: "
                       r"threads 0..127 .*write a, which threads 128..255 read, and threads "
                       r"128..255 .*write b, which threads 0..127 read.*the bound of the loop "
                       r"at test_barrier_schedule.py:\d+, which holds barrier operations, is not "
                       r"a Python int"):
        call(_tiles(4, 4))


def test_repeated_hand_offs_under_a_device_trip_count_are_refused():
    """One-way data, but two hand-offs of one shared tile per iteration: run loop by loop,
    the consumer would see only the second."""
    def kernel(X):
        O = T.empty((2, 4, ROWS, COLS), "float32")
        with T.Kernel(2, threads=256) as bx:
            s = T.alloc_shared((ROWS, COLS), "float32")
            ready = T.alloc_barrier(128)
            free = T.alloc_barrier(128)
            with T.ws(0):
                for i in T.serial(bx + 1):
                    for stage in T.unroll(2):
                        T.barrier_wait(free, ((i * 2 + stage) & 1) ^ 1)
                        T.copy(X[i * 2 + stage, :, :], s)
                        T.barrier_arrive(ready)
            with T.ws(1):
                for i in T.serial(bx + 1):
                    for stage in T.unroll(2):
                        T.barrier_wait(ready, (i * 2 + stage) & 1)
                        T.copy(s, O[bx, i * 2 + stage, :, :])
                        T.barrier_arrive(free)
        return O

    with pytest.raises(JtileError, match=r"threads 0..127 .* share shared memory with another "
                       r"region and hand it over at barriers inside the loop at "
                       r"test_barrier_schedule.py:\d+"):
        jtile.pallas_like(kernel, interpret=True)(_tiles(4, 5))


def ring(X, *, steps):
    """A two-stage ring: warpgroup 1 copies tile t of X into stage t % 2, warpgroup 0 writes
    2 * tile + t to O[t] and sums every tile's rows into `total`. Every thread first arrives
    on `start`, which both warpgroups wait for (as kernels that load their Q tile first do)."""
    O = T.empty((steps, ROWS, COLS), "float32")
    total = T.empty((COLS,), "float32")
    with T.Kernel(1, threads=256):
        tiles = T.alloc_shared((2, ROWS, COLS), "float32")
        acc = T.alloc_fragment((COLS,), "float32")
        part = T.alloc_fragment((COLS,), "float32")
        tile = T.alloc_fragment((ROWS, COLS), "float32")
        start = T.alloc_barrier(256)
        full = T.alloc_barrier([128, 128])
        empty = T.alloc_barrier([128, 128])
        T.barrier_arrive(start)
        with T.ws(1):
            T.barrier_wait(start, 0)
            for t in T.serial(steps):
                T.mbarrier_wait_parity(empty[t % 2], ((t // 2) & 1) ^ 1)
                T.tma_copy(X[t, :, :], tiles[t % 2, :, :], barrier=full[t % 2])
                T.mbarrier_arrive(full[t % 2])
        with T.ws(0):
            T.barrier_wait(start, 0)
            T.clear(acc)
            for t in T.serial(steps):
                T.mbarrier_wait_parity(full[t % 2], (t // 2) & 1)
                T.copy(tiles[t % 2, :, :], tile)
                for r, c in T.Parallel(ROWS, COLS):
                    O[t, r, c] = tile[r, c] * 2.0 + T.cast(t, "float32")
                T.reduce_sum(tile, part, dim=0)
                for c in T.Parallel(COLS):
                    acc[c] += part[c]
                T.mbarrier_arrive(empty[t % 2])
            T.copy(acc, total)
    return O, total


def test_a_two_stage_ring_is_exact():
    x = _tiles(5, 6)
    out, total = jtile.pallas_like(functools.partial(ring, steps=5), interpret=True)(x)
    # 2 * x is exact, so each element is rounded once, whether or not XLA fuses the two.
    steps = np.arange(5, dtype=np.float32)[:, None, None]
    np.testing.assert_array_equal(np.asarray(out), x * np.float32(2) + steps)
    np.testing.assert_allclose(np.asarray(total), x.astype(np.float64).sum(axis=(0, 1)),
                               rtol=1e-5, atol=1e-5)


def test_past_the_unrolling_limit_regions_run_as_without_barriers(monkeypatch):
    """The ring's loops run side by side, producer first, as they did before barriers were
    followed (what the partial scheduled run traced is dropped); the two hand-offs per
    iteration of `staged` cannot run so and are refused."""
    monkeypatch.setattr(barrier_schedule, "STEP_LIMIT", 10)
    x = _tiles(5, 6)
    out, _ = jtile.pallas_like(functools.partial(ring, steps=5), interpret=True)(x)
    steps = np.arange(5, dtype=np.float32)[:, None, None]
    np.testing.assert_array_equal(np.asarray(out), x * np.float32(2) + steps)
    with pytest.raises(JtileError, match=r"hand it over at barriers inside the loop at .*the "
                       r"regions run more than 10 statements unrolled"):
        jtile.pallas_like(functools.partial(staged, iters=3), interpret=True)(_tiles(6, 1))


def test_a_wait_for_the_wrong_phase_hangs():
    """Warpgroup 0 waits for `free`'s first phase before writing the first tile, which
    warpgroup 1 only frees after reading it: each waits on the other."""
    kernel = functools.partial(staged, iters=2, free_parity=lambda t: t & 1)
    with pytest.raises(JtileError, match=r"the T.ws regions wait on each other forever \(on "
                       r"the GPU the kernel hangs\): threads 0..127 at the wait on free\[0\] for "
                       r"parity 0 at test_barrier_schedule.py:\d+ \(free\[0\] has completed 0 "
                       r"phases and has 0 of 128 arrivals in the current one\); threads "
                       r"128..255 at the wait on ready\[0\] for parity 0"):
        jtile.pallas_like(kernel, interpret=True)(_tiles(4, 7))


def test_a_wait_on_a_barrier_nobody_arrives_on_hangs():
    def kernel(X):
        O = T.empty((ROWS, COLS), "float32")
        with T.Kernel(1, threads=256):
            s = T.alloc_shared((ROWS, COLS), "float32")
            loaded = T.alloc_barrier(128)
            never = T.alloc_barrier([128, 128])
            with T.ws(0):
                T.copy(X, s)
                T.barrier_arrive(loaded)
            with T.ws(1):
                T.barrier_wait(loaded, 0)
                T.mbarrier_wait_parity(never[1], 0)
                T.copy(s, O)
        return O

    with pytest.raises(JtileError, match=r"wait on each other forever.*threads 128..255 at the "
                       r"wait on never\[1\] for parity 0"):
        jtile.pallas_like(kernel, interpret=True)(_tiles(1, 8)[0])


def consumer_first(X, *, between=False):
    """Warpgroup 1 waits for the tile warpgroup 0 loads after it in program order; with
    `between`, block-wide code separates the two regions."""
    O = T.empty((ROWS, COLS), "float32")
    with T.Kernel(1, threads=256):
        s = T.alloc_shared((ROWS, COLS), "float32")
        other = T.alloc_shared((ROWS, COLS), "float32")
        loaded = T.alloc_barrier(128)
        with T.ws(1):
            T.barrier_wait(loaded, 0)
            T.copy(s, O)
        if between:
            T.fill(other, 0.0)
        with T.ws(0):
            T.copy(X, s)
            T.barrier_arrive(loaded)
    return O


def test_a_region_may_wait_for_the_region_after_it():
    x = _tiles(1, 11)[0]
    out = jtile.pallas_like(consumer_first, interpret=True)(x)
    np.testing.assert_array_equal(np.asarray(out), x)


def test_a_region_waiting_for_code_after_block_wide_code_is_refused():
    """On the GPU warpgroup 0 goes past the first region to the fill and its own region;
    interpret mode would run the first region to its end before either."""
    call = jtile.pallas_like(functools.partial(consumer_first, between=True), interpret=True)
    with pytest.raises(JtileError, match=r"cannot order the T.ws region of threads 128..255 "
                       r"with the code after it: the wait on loaded\[0\] for parity 0 at "
                       r"test_barrier_schedule.py:\d+ returns only after the arrive on loaded at "
                       r"test_barrier_schedule.py:\d+"):
        call(_tiles(1, 12)[0])


def test_a_block_wide_wait_that_cannot_return_hangs():
    """Code outside regions runs on every thread: 256 arrivals of 512 never complete."""
    def kernel(X):
        O = T.empty((ROWS, COLS), "float32")
        with T.Kernel(1, threads=256):
            bar = T.alloc_barrier(512)
            T.barrier_arrive(bar)
            T.barrier_wait(bar, 0)
            T.copy(X, O)
        return O

    with pytest.raises(JtileError, match=r"the wait on bar\[0\] for parity 0 at "
                       r"test_barrier_schedule.py:\d+ never returns: bar\[0\] has completed 0 "
                       r"phases and has 256 of 512 arrivals"):
        jtile.pallas_like(kernel, interpret=True)(_tiles(1, 9)[0])


def test_barriers_in_a_loop_interpret_mode_does_not_unroll_are_not_checked():
    """A wait inside a lax loop runs an unknown number of times: no hang is claimed, and the
    regions after it run as they always have."""
    def kernel(X):
        O = T.empty((ROWS, COLS), "float32")
        with T.Kernel(2, threads=256) as bx:
            s = T.alloc_shared((ROWS, COLS), "float32")
            bar = T.alloc_barrier(128)
            for _ in T.serial(bx):             # no iteration in block 0
                T.barrier_wait(bar, 0)
            with T.ws(0):
                T.copy(X, s)
                T.barrier_arrive(bar)
            with T.ws(1):
                T.barrier_wait(bar, 1)
                T.copy(s, O)
        return O

    x = _tiles(1, 10)[0]
    np.testing.assert_array_equal(np.asarray(jtile.pallas_like(kernel, interpret=True)(x)), x)


I32, U32 = DType.int32, DType.uint32
K = Var("k")


def _c(value, dtype=I32):
    return Const(value, dtype)


@pytest.mark.parametrize("expr", [
    BinOp("div", _c(-7), _c(2), I32), BinOp("floordiv", _c(-7), _c(2), I32),
    BinOp("mod", _c(-7), _c(3), I32), BinOp("mod", _c(7), _c(-3), I32),
    BinOp("shr", _c(-16), _c(2), I32), BinOp("shr", Cast(_c(-16), U32), _c(2, U32), U32),
    BinOp("mul", _c(2 ** 20), _c(2 ** 12), I32), BinOp("xor", _c(5), _c(-1), I32),
    BinOp("and", BinOp("lt", _c(1), _c(2), DType.bool), BinOp("ne", _c(3), _c(3), DType.bool),
          DType.bool),
    UnOp("neg", _c(-2 ** 31), I32), Select(BinOp("ge", _c(4), _c(4), DType.bool), _c(9),
                                           _c(8), I32),
    BinOp("bitand", BinOp("add", K, _c(1), I32), _c(1), I32),
])
def test_static_integers_follow_the_interpreter(expr):
    """Barrier indices and parities computed at trace time agree with the interpreter's
    jax.numpy arithmetic (C division, TileLang's floor division and modulo, wrapping)."""
    static = static_int(expr, {id(K): 6})
    assert static == int(Evaluator(None, Env().bind(K, 6))(expr))


def test_values_known_only_on_the_device_are_not_static():
    assert static_int(BinOp("add", K, _c(1), I32), {}) is None
    assert static_int(BinOp("div", _c(1), _c(0), I32), {}) is None
    assert static_int(Const(1.5, DType.float32), {}) is None
