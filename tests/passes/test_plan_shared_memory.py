"""Shared-memory planning: aligned, disjoint offsets; pipelining stages; swizzled gemm
operands; the per-block limit and the static 48 KiB limit."""

import pytest

import jtile
import jtile.language as T
from jtile.codegen import generate
from jtile.compiler.target import parse_target
from jtile.ir.types import DType
from jtile.passes import run_passes
from jtile.passes.plan_shared_memory import ALIGNMENT
from jtile.trace.trace_kernel import trace

F16, F32 = DType.float16, DType.float32


def plan_of(fn, inputs, outputs, arch="sm_90a"):
    kernel = run_passes(trace(fn, inputs, outputs), parse_target(arch))
    plan = kernel.attrs["shared"]
    return kernel, plan, {b.name: b for b in kernel.allocations}


def cp_async_pipelines(kernel):
    from jtile.ir.lowered import CpAsyncPipeline
    from jtile.ir.walk import statements

    return [s for s in statements(kernel.body) if isinstance(s, CpAsyncPipeline)]


def matmul(stages, a_cols=32, dtype="float16", threads=128):
    def pipelined_matmul(A, B, C):
        with T.Kernel(2, 2, threads=threads) as (bx, by):
            a_smem = T.alloc_shared((64, a_cols), dtype)
            b_smem = T.alloc_shared((a_cols, 64), dtype)
            acc = T.alloc_fragment((64, 64), "float32")
            T.clear(acc)
            for k in T.Pipelined(4, num_stages=stages):
                T.copy(A[by * 64, k * a_cols], a_smem)
                T.copy(B[k * a_cols, bx * 64], b_smem)
                T.gemm(a_smem, b_smem, acc)
            T.copy(acc, C[by * 64, bx * 64])

    dt = DType[dtype]
    return pipelined_matmul, [((128, 4 * a_cols), dt), ((4 * a_cols, 128), dt)], [((128, 128), F32)]


def test_offsets_are_aligned_and_buffers_live_together_are_disjoint():
    def odd_sizes(X, O):
        with T.Kernel(1, threads=128):
            tiny = T.alloc_shared((3,), "float32")
            mid = T.alloc_shared((100,), "float16")
            big = T.alloc_shared((64, 64), "float16")
            last = T.alloc_shared((5,), "int8")
            frag = T.alloc_fragment((64,), "float32")
            T.copy(X[0:3], tiny)
            T.copy(X[0:100], mid)
            T.copy(X[0:64], big[0, :])
            T.copy(X[0:5], last)
            for i in T.Parallel(64):  # every buffer is read here: all four live together
                frag[i] = big[0, i] + mid[i] + tiny[i % 3] + last[i % 5]
            T.copy(frag, O)

    kernel, plan, bufs = plan_of(odd_sizes, [((128,), F32)], [((64,), F32)])
    assert set(plan.offsets) == {bufs[n] for n in ("tiny", "mid", "big", "last")}
    spans = sorted((off, off + buf.nbytes) for buf, off in plan.offsets.items())
    assert all(off % ALIGNMENT == 0 for off, _ in spans) and ALIGNMENT == 128
    assert all(end <= next_off for (_, end), (next_off, _) in zip(spans, spans[1:]))
    assert plan.offsets[bufs["big"]] == 0  # largest first
    assert plan.dynamic_bytes >= spans[-1][1] and plan.dynamic_bytes % ALIGNMENT == 0
    assert plan.static_bytes == 0


def test_buffers_whose_lives_do_not_meet_share_memory():
    def two_phases(X, O):
        with T.Kernel(1, threads=128):
            first = T.alloc_shared((64, 64), "float32")
            second = T.alloc_shared((64, 64), "float32")
            acc = T.alloc_fragment((64, 64), "float32")
            T.copy(X, first)
            T.copy(first, acc)
            T.copy(acc, second)  # `first` is dead from here on
            T.copy(second, O)

    kernel, plan, bufs = plan_of(two_phases, [((64, 64), F32)], [((64, 64), F32)])
    assert plan.offsets[bufs["first"]] == plan.offsets[bufs["second"]] == 0
    assert plan.dynamic_bytes == 64 * 64 * 4
    # The generated code still separates the last read of `first` from the first write of
    # `second` (same bytes) with a barrier.
    source = generate(kernel, parse_target("sm_90a")).source
    last_read_of_first = source.rindex("first_smem[")
    first_use_of_second = source.index("second_smem[", source.index("// "))
    assert source.find("__syncthreads();", last_read_of_first) < first_use_of_second


@pytest.mark.parametrize("stages", [2, 3, 4])
def test_pipelined_buffers_are_multiplied_by_num_stages(stages):
    # cp.async stages (sm_80); sm_90a's TMA rings are tested in test_hopper_lowering.py.
    kernel, plan, bufs = plan_of(*matmul(stages), arch="sm_80")
    a, b = bufs["a_smem"], bufs["b_smem"]
    assert plan.stages == {a: stages, b: stages}
    (pipeline,) = cp_async_pipelines(kernel)
    assert [c.dst.buffer for c in pipeline.copies] == [a, b] and pipeline.stages == stages
    assert plan.offsets[b] - plan.offsets[a] >= a.nbytes * stages
    assert plan.dynamic_bytes >= plan.offsets[b] + b.nbytes * stages


@pytest.mark.parametrize("stages, arch", [(1, "sm_90a"), (0, "sm_90a"), (3, "sm_75")])
def test_no_stages_without_pipelining(stages, arch):
    # One stage is a plain loop; sm_75 has no cp.async to fill stages ahead.
    if stages > 1:  # asked for stages it cannot get: said, not silent
        with pytest.warns(jtile.JtilePerformanceWarning, match=r"runs as a plain loop: sm_75 "
                          r"has no asynchronous copies"):
            kernel, plan, bufs = plan_of(*matmul(stages), arch=arch)
    else:
        kernel, plan, bufs = plan_of(*matmul(stages), arch=arch)
    assert plan.stages == {} and cp_async_pipelines(kernel) == []
    assert plan.offsets[bufs["b_smem"]] - plan.offsets[bufs["a_smem"]] == bufs["a_smem"].nbytes


def test_copies_not_at_the_top_of_the_loop_or_casting_are_not_pipelined():
    def mixed(A, O):
        with T.Kernel(1, threads=128):
            s = T.alloc_shared((64,), "float32")
            h = T.alloc_shared((64,), "float16")
            frag = T.alloc_fragment((64,), "float32")
            T.clear(frag)
            for k in T.Pipelined(4, num_stages=3):
                T.copy(A[k * 64:(k + 1) * 64], h)     # casts float32 -> float16
                T.copy(A[k * 64:(k + 1) * 64], s)
                s[0] = 1.0                            # a second writer of s
                T.copy(s, frag)
            T.copy(frag, O)

    with pytest.warns(jtile.JtilePerformanceWarning,
                      match=r"mixed .*T.Pipelined\(num_stages=3\) runs as a plain loop"):
        _, plan, bufs = plan_of(mixed, [((256,), F32)], [((64,), F32)])
    assert plan.stages == {}


@pytest.mark.parametrize("a_cols, dtype, swizzled", [
    (32, "float16", {"a_smem", "b_smem"}),    # 64-byte rows: 4 chunks of 16 bytes
    (64, "bfloat16", {"a_smem", "b_smem"}),   # 128-byte rows
    (24, "float16", {"b_smem"}),              # 48-byte rows of A: 3 chunks, not a power of 2
    (32, "float32", set()),                   # FMA path: no ldmatrix
])
def test_swizzled_gemm_operands(a_cols, dtype, swizzled):
    fn, inputs, outputs = matmul(2, a_cols=a_cols, dtype=dtype)
    _, plan, bufs = plan_of(fn, inputs, outputs, arch="sm_80")  # ldmatrix operands
    staged = set(plan.staging.values())
    assert {b.name for b in plan.swizzled if b not in staged} == swizzled


def test_the_limit_error_lists_every_buffer():
    fn, inputs, outputs = matmul(4, a_cols=256)
    with pytest.raises(jtile.JtileTargetError) as info:
        plan_of(fn, inputs, outputs, arch="sm_86")
    message = str(info.value)
    assert message.startswith("pipelined_matmul (test_plan_shared_memory.py:")
    total = 4 * 64 * 256 * 2 + 4 * 256 * 64 * 2
    assert f"shared memory needs {total} bytes" in message
    assert "a_smem float16[64, 256] x4 stages = 131072 bytes" in message
    assert "b_smem float16[256, 64] x4 stages = 131072 bytes" in message
    assert "but sm_86 allows 101376 bytes per block" in message
    # The same kernel fits Hopper with two stages.
    fn, inputs, outputs = matmul(2, a_cols=128)
    plan_of(fn, inputs, outputs, arch="sm_90a")


def test_barriers_and_scratch_count_toward_the_limit():
    def nearly_full(X, O):
        with T.Kernel(1, threads=128):
            s = T.alloc_shared((232448 // 4,), "float32")
            bar = T.alloc_barrier([128, 128])
            T.copy(X, s[0:64])
            T.mbarrier_arrive(bar[0])
            T.copy(s[0:64], O)

    with pytest.raises(jtile.JtileTargetError, match=r"shared memory needs 232464 bytes \(s "
                       r"float32\[58112\] = 232448 bytes; barriers = 16 bytes\) but sm_90a allows "
                       r"232448 bytes"):
        plan_of(nearly_full, [((64,), F32)], [((64,), F32)])


@pytest.mark.parametrize("elements, fits", [(48 * 1024 // 4, True), (48 * 1024 // 4 + 32, False)])
def test_static_shared_scope_is_limited_to_48_kib(elements, fits):
    def static_smem(X, O):
        with T.Kernel(1, threads=128):
            s = T.alloc_shared((elements,), "float32", scope="shared")
            d = T.alloc_shared((elements,), "float32")     # dynamic: not limited to 48 KiB
            T.copy(X, s[0:64])
            T.copy(X, d[0:64])
            T.copy(s[0:64], O)

    args = (static_smem, [((64,), F32)], [((64,), F32)])
    if fits:
        _, plan, bufs = plan_of(*args)
        assert plan.static_bytes == 49152
        return
    with pytest.raises(jtile.JtileTargetError, match=r"^static_smem \(test_plan_shared_memory.py:\d+\): "
                       r"static shared memory \(scope \"shared\"\) needs 49280 bytes but at most "
                       r"49152 bytes are allowed; use the default scope \"shared.dyn\""):
        plan_of(*args)


def test_reduction_scratch_is_placed_after_the_buffers():
    def row_sum(X, O):
        with T.Kernel(1, threads=128):
            s = T.alloc_shared((64, 64), "float32")
            x = T.alloc_fragment((64, 64), "float32")
            r = T.alloc_fragment((64,), "float32")
            T.copy(X, s)
            T.copy(s, x)
            T.reduce_sum(x, r, dim=0)     # columns spread over warps: a cross-warp combine
            T.copy(r, O)

    kernel, plan, bufs = plan_of(row_sum, [((64, 64), F32)], [((64,), F32)])
    assert plan.scratch_bytes > 0
    assert plan.scratch_offset >= plan.offsets[bufs["s"]] + bufs["s"].nbytes
    assert plan.scratch_offset % ALIGNMENT == 0
    assert plan.dynamic_bytes >= plan.scratch_offset + plan.scratch_bytes


def test_copies_addressed_by_values_the_kernel_computes_are_not_prefetched():
    def gather_rows(X, Idx, O):
        with T.Kernel(1, threads=128):
            tile = T.alloc_shared((16, 64), "float32")
            rows = T.alloc_shared((4,), "int32")
            acc = T.alloc_fragment((16, 64), "float32")
            T.copy(Idx, rows)
            T.clear(acc)
            for k in T.Pipelined(4, num_stages=3):
                T.copy(X[rows[k] * 16, 0], tile)  # the row is a value the kernel stored
                for i, j in T.Parallel(16, 64):
                    acc[i, j] = acc[i, j] + tile[i, j]
            T.copy(acc, O)

    with pytest.warns(jtile.JtilePerformanceWarning, match="runs as a plain loop"):
        kernel, plan, bufs = plan_of(gather_rows, [((64, 64), F32), ((4,), DType.int32)],
                                     [((16, 64), F32)])
    assert not cp_async_pipelines(kernel) and bufs["tile"] not in plan.stages


def test_copies_addressed_through_a_read_only_input_are_prefetched():
    def gather_rows(X, Idx, O):
        with T.Kernel(1, threads=128):
            tile = T.alloc_shared((16, 64), "float32")
            acc = T.alloc_fragment((16, 64), "float32")
            T.clear(acc)
            for k in T.Pipelined(4, num_stages=3):
                T.copy(X[Idx[k] * 16, 0], tile)  # Idx never changes while the kernel runs
                for i, j in T.Parallel(16, 64):
                    acc[i, j] = acc[i, j] + tile[i, j]
            T.copy(acc, O)

    kernel, plan, bufs = plan_of(gather_rows, [((64, 64), F32), ((4,), DType.int32)],
                                 [((16, 64), F32)])
    assert cp_async_pipelines(kernel) and plan.stages[bufs["tile"]] == 3


def test_scattered_fragment_stores_are_staged_through_shared_memory(monkeypatch):
    # The threads' staged store (TMA stores give the stage TMA's own panel layout instead).
    monkeypatch.setenv("JTILE_TMA_STORE", "0")
    def gemm_store(A, B, C):
        with T.Kernel(1, threads=128):
            a = T.alloc_shared((64, 32), "float16")
            b = T.alloc_shared((32, 64), "float16")
            acc = T.alloc_fragment((64, 64), "float32")
            T.copy(A, a)
            T.copy(B, b)
            T.gemm(a, b, acc, clear_accum=True)
            T.copy(acc, C)

    kernel, plan, bufs = plan_of(gemm_store, [((64, 32), F16), ((32, 64), F16)],
                                 [((64, 64), F16)])
    (stage,) = plan.staging.values()
    assert stage.shape == (64, 64) and stage.dtype is DType.float16 and stage in plan.swizzled
    # It lives only at the store, so it reuses the operand tiles' bytes.
    assert plan.offsets[stage] == 0 and plan.dynamic_bytes == _round(64 * 64 * 2)


def test_coalesced_fragment_stores_are_not_staged():
    def row_copy(X, O):
        with T.Kernel(1, threads=128):
            x = T.alloc_fragment((4, 1024), "float32")
            T.copy(X, x)
            T.copy(x, O)

    kernel, plan, bufs = plan_of(row_copy, [((4, 1024), F32)], [((4, 1024), DType.bfloat16)])
    assert not plan.staging


def _round(n):
    return (n + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT
