"""plan_barriers: barriers are IR statements placed by a pass, where one thread's shared-memory
writes meet another thread's reads (or the reverse), and nowhere else."""

import jtile.language as T
from jtile.compiler.target import parse_target
from jtile.ir import lowered as low
from jtile.ir import nodes as ir
from jtile.ir.types import DType
from jtile.ir.walk import statements
from jtile.passes import run_passes
from jtile.trace.trace_kernel import trace

F32 = DType.float32


def _planned(fn, inputs, outputs, arch="sm_80"):
    return run_passes(trace(fn, inputs, outputs), parse_target(arch))


def _kinds(body) -> list:
    """Top-level statements as short names, barriers as 'B'."""
    return ["B" if isinstance(s, low.Barrier) else type(s).__name__ for s in body]


def test_a_barrier_separates_a_shared_write_from_the_reads_of_other_threads():
    def transpose(X, O):
        with T.Kernel(1, threads=128):
            s = T.alloc_shared((32, 32), "float32")
            T.copy(X, s)
            for i, j in T.Parallel(32, 32):
                O[i, j] = s[j, i]

    kernel = _planned(transpose, [((32, 32), F32)], [((32, 32), F32)])
    assert _kinds(kernel.body) == ["Copy", "B", "ParallelFor"]


def test_no_barrier_where_no_shared_memory_is_shared():
    def scale(X, O):
        with T.Kernel(1, threads=128):
            f = T.alloc_fragment((32, 32), "float32")
            T.copy(X, f)
            for i, j in T.Parallel(32, 32):
                f[i, j] = f[i, j] * 2.0
            T.copy(f, O)

    kernel = _planned(scale, [((32, 32), F32)], [((32, 32), F32)])
    assert not any(isinstance(s, low.Barrier) for s in statements(kernel.body))


def test_a_loop_that_rewrites_a_tile_it_read_ends_its_body_with_a_barrier():
    def rows(X, O):
        with T.Kernel(1, threads=128):
            s = T.alloc_shared((8, 32), "float32")
            for k in T.serial(4):
                T.copy(X[k * 8, 0], s)
                for i, j in T.Parallel(8, 32):
                    O[k * 8 + i, j] = s[7 - i, j]

    kernel = _planned(rows, [((32, 32), F32)], [((32, 32), F32)])
    loop = next(s for s in kernel.body if isinstance(s, ir.For))
    assert _kinds(loop.body) == ["Copy", "B", "ParallelFor", "B"]


def test_a_users_sync_threads_becomes_a_barrier_that_keeps_its_line():
    def explicit(X, O):
        with T.Kernel(1, threads=128):
            s = T.alloc_shared((128,), "float32")
            for i in T.Parallel(128):
                s[i] = X[i]
            T.sync_threads()
            for i in T.Parallel(128):
                O[i] = s[127 - i]

    kernel = _planned(explicit, [((128,), F32)], [((128,), F32)])
    barriers = [s for s in kernel.body if isinstance(s, low.Barrier)]
    assert len(barriers) == 1 and barriers[0].from_user and barriers[0].loc.line > 0


def test_stores_wgmma_reads_next_are_fenced_for_the_async_proxy():
    def gemm_from_registers(A, B, C):
        with T.Kernel(1, threads=128):
            a_s = T.alloc_shared((64, 64), "float16")
            b_s = T.alloc_shared((64, 64), "float16")
            acc = T.alloc_fragment((64, 64), "float32")
            for i, j in T.Parallel(64, 64):     # ordinary stores ...
                a_s[i, j] = A[i, j]
                b_s[i, j] = B[i, j]
            T.gemm(a_s, b_s, acc, clear_accum=True)   # ... that wgmma reads
            T.copy(acc, C)

    f16 = DType.float16
    kernel = _planned(gemm_from_registers, [((64, 64), f16), ((64, 64), f16)],
                      [((64, 64), F32)], arch="sm_90a")
    barrier = next(s for s in kernel.body if isinstance(s, low.Barrier))
    assert barrier.fence_async
