"""Fragment layouts: the mma.sync layouts against the PTX fragment tables, coverage of every
element, defaults, projections through loops and reductions, flash attention, conflicts."""

import collections

import pytest

import jtile
import jtile.language as T
from jtile.compiler.target import parse_target
from jtile.ir.types import DType
from jtile.passes import run_passes
from jtile.passes.layout import MmaTiling, choose_mma_tiling, default_layout
from jtile.trace.trace_kernel import trace

F16, F32 = DType.float16, DType.float32
SM90 = parse_target("sm_90a")
SM80 = parse_target("sm_80")  # mma.sync tilings; sm_90a picks wgmma (test_hopper_lowering.py)


def planned(fn, inputs, outputs, target=SM90):
    kernel = run_passes(trace(fn, inputs, outputs), target)
    by_name = {b.name: layout for b, layout in kernel.attrs["layouts"].items()}
    return kernel, by_name


def holders(layout, num_threads):
    """index -> [(thread, register)] over every thread and register of `layout`."""
    held = collections.defaultdict(list)
    for tid in range(num_threads):
        for reg in range(layout.num_registers):
            held[layout.logical_index(tid, reg)].append((tid, reg))
    return held


# ----------------------------------------------------------------------------- mma layouts


def test_accumulator_layout_is_ptxs_m16n8_table():
    # PTX ISA, mma.m16n8k16 C/D fragment: c0,c1 at (g, 2q + {0,1}), c2,c3 at (g + 8, ...),
    # with g = lane / 4 and q = lane % 4.
    layout = MmaTiling(16, 8, 1, 1).accumulator_layout(32)
    for lane in range(32):
        for c in range(4):
            assert layout.logical_index(lane, c) == (lane // 4 + 8 * (c // 2), 2 * (lane % 4) + c % 2)


def test_operand_a_layout_is_ptxs_m16n8k16_table():
    # a0,a1: (g, 2q + {0,1}); a2,a3: (g + 8, ...); a4,a5: (g, 2q + 8 + ...); a6,a7: (g + 8, +8).
    layout = MmaTiling(16, 8, 1, 1).operand_a_layout(32, 16)
    for lane in range(32):
        g, q = lane // 4, lane % 4
        for e in range(8):
            row = g + 8 * ((e >> 1) & 1)
            col = 2 * q + (e & 1) + 8 * (e >> 2)
            assert layout.logical_index(lane, e) == (row, col)


@pytest.mark.parametrize("m, n, warps", [(16, 8, 1), (64, 64, 4), (128, 128, 4), (128, 64, 8),
                                         (64, 256, 4), (256, 128, 8), (32, 32, 2)])
@pytest.mark.parametrize("full_row", [False, True])
def test_accumulator_layout_covers_every_element_once(m, n, warps, full_row):
    tiling = choose_mma_tiling(m, n, warps, full_row)
    if tiling is None:
        assert full_row and m % (16 * warps)
        return
    assert tiling.wm * tiling.wn == warps
    threads = 32 * warps
    layout = tiling.accumulator_layout(threads)
    assert layout.shape == (m, n) and layout.num_registers == m * n // threads
    held = holders(layout, threads)
    assert len(held) == m * n                     # every element...
    assert all(len(h) == 1 for h in held.values())  # ...held by exactly one (thread, register)
    assert all(0 <= i < m and 0 <= j < n for i, j in held)


@pytest.mark.parametrize("m, k, warps", [(64, 64, 4), (128, 32, 8), (16, 16, 1)])
def test_operand_a_layout_covers_every_element_once(m, k, warps):
    tiling = choose_mma_tiling(m, 64, warps, True)
    layout = tiling.operand_a_layout(32 * warps, k)
    held = holders(layout, 32 * warps)
    assert len(held) == m * k and all(len(h) == 1 for h in held.values())


def test_choose_mma_tiling():
    assert choose_mma_tiling(64, 64, 4, False) == MmaTiling(64, 64, 2, 2)   # smallest perimeter
    assert choose_mma_tiling(64, 64, 4, True) == MmaTiling(64, 64, 4, 1)    # whole rows per warp
    assert choose_mma_tiling(32, 64, 4, True) is None                       # 4 warps x 16 rows
    assert choose_mma_tiling(16, 8, 4, False) is None


# ----------------------------------------------------------------------------- default layouts


@pytest.mark.parametrize("shape, threads, vector", [((64, 64), 128, 4), ((16,), 128, 4),
                                                    ((8, 256), 256, 8), ((2, 2), 32, 1)])
def test_default_layout_holds_every_element_and_replicates_the_rest(shape, threads, vector):
    layout = default_layout(shape, threads, vector)
    held = holders(layout, threads)
    size = 1
    for d in shape:
        size *= d
    assert len(held) == size
    copies = {len(h) for h in held.values()}
    assert copies == {max(1, threads * layout.num_registers // size)}
    # `vector` contiguous elements of the last dimension sit in one thread's registers.
    for reg in range(min(vector, layout.num_registers)):
        assert layout.logical_index(0, reg)[-1] == reg


def test_untouched_fragments_get_the_default_layout():
    def elementwise(X, O):
        with T.Kernel(1, threads=128):
            x = T.alloc_fragment((64, 64), "float32")
            h = T.alloc_fragment((64, 64), "float16")
            T.copy(X, x)
            T.copy(x, h)
            T.copy(h, O)

    _, layouts = planned(elementwise, [((64, 64), F32)], [((64, 64), F32)])
    assert layouts["x"] == default_layout((64, 64), 128, 4)     # 16 bytes of float32
    assert layouts["h"] == layouts["x"]                          # a fragment copy keeps it


@pytest.mark.parametrize("columns,vector", [(4096, 8), (4100, 4), (4098, 2), (4097, 1)])
def test_copied_fragments_hold_what_one_aligned_vector_moves(columns, vector):
    # A row of 4097 bfloat16 values starts at odd addresses: copies move single elements, so
    # consecutive threads take consecutive elements (a warp's loads coalesce) instead of one
    # 16-byte slot each.
    def chunk(X, O):
        with T.Kernel(8, threads=128) as bx:
            x = T.alloc_fragment((1, 1024), "bfloat16")
            T.copy(X[bx, 0], x)
            T.copy(x, O[bx, 0])

    _, layouts = planned(chunk, [((8, columns), DType.bfloat16)],
                         [((8, columns), DType.bfloat16)])
    assert layouts["x"] == default_layout((1, 1024), 128, vector)
    assert layouts["x"].contiguous_bits(1) == vector.bit_length() - 1


def test_elementwise_moves_to_global_memory_coalesce():
    # T.Parallel moves elements one at a time: thread t holds column t of each 128-wide run.
    def masked_rows(X, O):
        M, N = X.shape
        with T.Kernel(M, threads=128) as bx:
            x = T.alloc_fragment((1, 1024), "bfloat16")
            for i, j in T.Parallel(1, 1024):
                x[i, j] = X[bx + i, T.min(j, N - 1)]
            for i, j in T.Parallel(1, 1024):
                with T.If(j < N):
                    O[bx + i, j] = x[i, j]

    _, layouts = planned(masked_rows, [((4, 1000), DType.bfloat16)],
                         [((4, 1000), DType.bfloat16)])
    assert layouts["x"] == default_layout((1, 1024), 128, 1)


# ----------------------------------------------------------------------------- projections


def gemm_then(after):
    def gemm_kernel(A, B, bias, O):
        with T.Kernel(1, threads=128):
            a = T.alloc_shared((64, 32), "float16")
            b = T.alloc_shared((32, 64), "float16")
            acc = T.alloc_fragment((64, 64), "float32")
            rows = T.alloc_fragment((64,), "float32")
            cols = T.alloc_fragment((64,), "float32")
            T.copy(A, a)
            T.copy(B, b)
            T.gemm(a, b, acc, clear_accum=True)
            after(acc, rows, cols, bias)
            T.copy(acc, O)

    return planned(gemm_kernel, [((64, 32), F16), ((32, 64), F16), ((64,), F32)],
                   [((64, 64), F32)], target=SM80)


def test_row_vector_projected_through_a_reduction():
    def reduce_rows(acc, rows, cols, bias):
        T.reduce_max(acc, rows, dim=1)
        T.reduce_sum(acc, cols, dim=0)

    kernel, layouts = gemm_then(reduce_rows)
    assert layouts["acc"] == MmaTiling(64, 64, 4, 1).accumulator_layout(128)  # reduced: full rows
    assert layouts["rows"] == layouts["acc"].project((0,))
    assert layouts["cols"] == layouts["acc"].project((1,))
    # A projected thread bit means the element is replicated over those threads.
    assert layouts["rows"].thread_bits[:2] == (None, None)


def test_vectors_projected_through_a_parallel_loop():
    def scale(acc, rows, cols, bias):
        T.copy(bias, cols)
        T.fill(rows, 2.0)
        for i, j in T.Parallel(64, 64):
            acc[i, j] = acc[i, j] * rows[i] + cols[j]

    _, layouts = gemm_then(scale)
    assert layouts["acc"] == MmaTiling(64, 64, 2, 2).accumulator_layout(128)
    assert layouts["rows"] == layouts["acc"].project((0,))
    assert layouts["cols"] == layouts["acc"].project((1,))
    for vec, dim in (("rows", 0), ("cols", 1)):
        # Each thread holds, for each accumulator element it owns, the matching vector element.
        for tid in range(128):
            for reg in range(layouts["acc"].num_registers):
                index = layouts["acc"].logical_index(tid, reg)
                reg_v = layouts[vec].register_of((index[dim],))
                assert layouts[vec].logical_index(tid, reg_v) == (index[dim],)


def test_flash_attention_p_has_the_accumulator_layout():
    def flash(Q, K, V, O):
        with T.Kernel(1, threads=128):
            q = T.alloc_shared((64, 32), "float16")
            k = T.alloc_shared((64, 32), "float16")
            v = T.alloc_shared((64, 32), "float16")
            s = T.alloc_fragment((64, 64), "float32")
            p = T.alloc_fragment((64, 64), "float16")
            m = T.alloc_fragment((64,), "float32")
            o = T.alloc_fragment((64, 32), "float32")
            T.copy(Q, q)
            T.copy(K, k)
            T.copy(V, v)
            T.gemm(q, k, s, transpose_B=True, clear_accum=True)
            T.reduce_max(s, m)
            for i, j in T.Parallel(64, 64):
                s[i, j] = T.exp2(s[i, j] - m[i])
            T.copy(s, p)
            T.gemm(p, v, o, clear_accum=True)
            T.copy(o, O)

    kernel, layouts = planned(flash, [((64, 32), F16)] * 3, [((64, 32), F32)], target=SM80)
    assert layouts["p"] == layouts["s"]    # P feeds the second gemm from registers, no shuffle
    assert layouts["m"] == layouts["s"].project((0,))
    tilings = list(kernel.attrs["mma"].values())
    assert [(t.wm, t.wn) for t in tilings] == [(4, 1), (4, 1)]
    assert layouts["o"] == tilings[1].accumulator_layout(128)


# ----------------------------------------------------------------------------- conflicts


def test_one_fragment_needed_in_two_layouts():
    def two_a_layouts(A, B, C, O):
        with T.Kernel(1, threads=256):
            p = T.alloc_fragment((64, 32), "float16")
            b1 = T.alloc_shared((32, 64), "float16")
            b2 = T.alloc_shared((32, 16), "float16")
            acc1 = T.alloc_fragment((64, 64), "float32")
            acc2 = T.alloc_fragment((64, 16), "float32")
            T.copy(A, p)
            T.copy(B, b1)
            T.copy(C, b2)
            T.gemm(p, b1, acc1, clear_accum=True)      # 8 warps: 2 x 4 over (64, 64)
            T.gemm(p, b2, acc2, clear_accum=True)      # 8 warps: 4 x 2 over (64, 16)
            T.copy(acc1, O)
            T.copy(acc2, O[0:64, 0:16])

    with pytest.raises(jtile.JtileTraceError, match=r"T.gemm A operand: fragment p \(local.fragment "
                       r"float16 \(64, 32\)\) is needed in two different layouts"):
        planned(two_a_layouts, [((64, 32), F16), ((32, 64), F16), ((32, 16), F16)],
                [((64, 64), F32)])


@pytest.mark.parametrize("case, rule", [
    ("shifted", r"fragment y .* in T.Parallel\(64, 64\): each index must be one of the loop "
                r"variables or an expression that does not depend on them"),
    ("transposed_a", r"T.gemm: a fragment A cannot be transposed"),
    ("small_gemm", r"T.gemm: a 16x8 accumulator cannot be split into m16n8 tiles over 4 warps"),
])
def test_layout_errors(case, rule):
    def bad_layout(A, O):
        with T.Kernel(1, threads=128):
            x = T.alloc_fragment((64, 64), "float32")
            y = T.alloc_fragment((64, 64), "float32")
            T.copy(A, x)
            if case == "shifted":
                for i, j in T.Parallel(64, 64):
                    x[i, j] = y[i, 63 - j]
            elif case in ("transposed_a", "small_gemm"):
                a = T.alloc_fragment((32, 16) if case == "transposed_a" else (16, 16), "float16")
                b = T.alloc_shared((16, 8) if case == "small_gemm" else (32, 64), "float16")
                c = T.alloc_fragment((16, 8) if case == "small_gemm" else (16, 64), "float32")
                T.clear(a)
                T.clear(b)
                T.gemm(a, b, c, transpose_A=case == "transposed_a")
            T.copy(x, O)

    with pytest.raises(jtile.JtileTraceError, match=r"^bad_layout \(test_infer_layouts.py:\d+\): "
                       r"test_infer_layouts.py:\d+: " + rule):
        planned(bad_layout, [((64, 64), F32)], [((64, 64), F32)])
