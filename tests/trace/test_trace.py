"""Tracing kernel bodies into IR: kernels and grids, loops, control flow, indexing, copies,
gemm/reduce/atomic checks, annotations, names, and the printed form of whole kernels."""

import re

import pytest

import jtile
import jtile.language as T
from jtile.ir import nodes as ir
from jtile.ir.printer import kernel_text
from jtile.ir.types import DType, MemorySpace
from jtile.trace.trace_kernel import trace

F16, F32, I32 = DType.float16, DType.float32, DType.int32


def trace1(fn, shape=(64,), dtype=F32, out=None, **kwargs):
    """Traces `fn(X, O)` with one input and one output of `shape`."""
    return trace(fn, [(shape, dtype)], [(out or shape, dtype)], **kwargs)


def located(kernel_name, message_regex):
    """`kernel (test_trace.py:N): ...` then `message_regex`."""
    return rf"{kernel_name} \(test_trace.py:\d+\): .*{message_regex}"


# ----------------------------------------------------------------------------- T.Kernel


def test_one_dimensional_grid_yields_one_block_var():
    seen = []

    def k1(X, O):
        with T.Kernel(4, threads=64) as bx:
            seen.append(bx)
            O[bx] = X[bx]

    kernel = trace1(k1)
    assert kernel.grid == (4,) and kernel.threads == 64
    (bx,) = kernel.block_vars
    assert seen == [bx] and bx.name == "bx" and bx.kind is ir.VarKind.BLOCK and bx.axis == 0
    assert kernel.thread_var.kind is ir.VarKind.THREAD


@pytest.mark.parametrize("grid", [(2, 3), (2, 3, 4)])
def test_multi_dimensional_grids_yield_tuples(grid):
    seen = []

    def kn(X, O):
        with T.Kernel(*grid) as block:
            seen.append(block)
            O[block[0]] = X[block[-1]]

    kernel = trace1(kn)
    assert kernel.grid == grid and kernel.threads == 128  # T.Kernel's default threads
    assert seen == [kernel.block_vars] and isinstance(seen[0], tuple)
    assert [v.name for v in kernel.block_vars] == ["bx", "by", "bz"][:len(grid)]
    assert [v.axis for v in kernel.block_vars] == list(range(len(grid)))


def test_grid_extents_may_be_numpy_ints_and_ceildiv():
    import numpy as np

    def kc(X, O):
        with T.Kernel(T.ceildiv(100, 32), np.int64(2), threads=[96]):
            T.copy(X, O)

    kernel = trace1(kc)
    assert kernel.grid == (4, 2) and kernel.threads == 96


@pytest.mark.parametrize("threads, rule", [
    (100, "threads=100 must be a multiple of 32 \\(whole warps\\) and at most 1024"),
    (2048, "threads=2048 must be a multiple of 32"),
    (1056, "threads=1056 must be a multiple of 32 \\(whole warps\\) and at most 1024"),
    (0, "threads must be positive, got 0"),
    (-32, "threads must be positive"),
    (128.0, "threads must be a static Python int"),
    ((128, 2), "threads=\\(128, 2\\): only 1-D thread blocks are supported"),
])
def test_threads_rules(threads, rule):
    def kt(X, O):
        with T.Kernel(1, threads=threads):
            T.copy(X, O)

    with pytest.raises(jtile.JtileTraceError, match=located("kt", r"T.Kernel at test_trace.py:\d+: "
                                                            + rule)):
        trace1(kt)


@pytest.mark.parametrize("threads", [32, 1024, 256])
def test_threads_accepted(threads):
    def ka(X, O):
        with T.Kernel(1, threads=threads):
            T.copy(X, O)

    assert trace1(ka).threads == threads


@pytest.mark.parametrize("grid, rule", [((), "the grid has 0 dimensions; 1 to 3 are supported"),
                                        ((1, 1, 1, 1), "the grid has 4 dimensions"),
                                        ((0,), "grid extent 0 must be positive, got 0"),
                                        ((2, -1), "grid extent 1 must be positive"),
                                        ((2.0,), "grid extent 0 must be a static Python int")])
def test_grid_rules(grid, rule):
    def kg(X, O):
        with T.Kernel(*grid, threads=32):
            T.copy(X, O)

    with pytest.raises(jtile.JtileTraceError, match=located("kg", rule)):
        trace1(kg)


def test_traced_grid_extent_is_refused():
    def kv(X, O):
        with T.Kernel(1, threads=32) as bx:
            with T.Kernel(bx):
                pass

    with pytest.raises(jtile.JtileTraceError, match=located("kv", "opens `with T.Kernel")):
        trace1(kv)


def test_kernel_opened_twice():
    def twice(X, O):
        with T.Kernel(1, threads=32):
            T.copy(X, O)
        with T.Kernel(1, threads=32):
            T.copy(X, O)

    with pytest.raises(jtile.JtileTraceError, match=located("twice", "opens `with T.Kernel\\(...\\)` "
                                                            "once")):
        trace1(twice)


def test_kernel_never_opened():
    def never(X, O):
        pass

    with pytest.raises(jtile.JtileTraceError, match=located("never", "never opened `with T.Kernel")):
        trace1(never)


def test_statement_before_and_after_the_kernel():
    def before(X, O):
        T.copy(X, O)
        with T.Kernel(1, threads=32):
            T.copy(X, O)

    with pytest.raises(jtile.JtileTraceError, match=located("before", "test_trace.py:\\d+: a T.\\* "
                                                            "statement came before")):
        trace1(before)

    def after(X, O):
        with T.Kernel(1, threads=32):
            T.copy(X, O)
        T.copy(X, O)

    with pytest.raises(jtile.JtileTraceError, match=located("after", "came after the `with T.Kernel")):
        trace1(after)


def test_grid_form_binds_program_ids():
    seen = []

    def gridded(X, O):
        seen.append((T.program_id(0), T.program_id(1), T.get_block_binding(1),
                     T.get_thread_binding()))
        O[T.program_id(0)] = X[T.program_id(1)]

    kernel = trace1(gridded, grid=(4, 2))
    assert kernel.grid == (4, 2) and kernel.threads == 128
    bx, by = kernel.block_vars
    assert seen == [(bx, by, by, kernel.thread_var)]
    assert isinstance(kernel.body[0], ir.Store)

    kernel = trace1(gridded, grid=(4, 2), threads=256)
    assert kernel.threads == 256


def test_grid_form_errors():
    def uses_axis_2(X, O):
        O[0] = X[T.program_id(2)]

    with pytest.raises(jtile.JtileTraceError, match=located("uses_axis_2", "T.program_id\\(2\\): the "
                                                            "grid has 2 dimensions")):
        trace1(uses_axis_2, grid=(4, 2))

    def opens_kernel(X, O):
        with T.Kernel(1):
            T.copy(X, O)

    with pytest.raises(jtile.JtileTraceError, match="nested or repeated kernels"):
        trace1(opens_kernel, grid=(1,))

    def plain(X, O):
        with T.Kernel(1):
            T.copy(X, O)

    with pytest.raises(jtile.JtileTraceError, match="threads= goes with grid="):
        trace1(plain, threads=64)
    def body_only(X, O):
        T.copy(X, O)

    with pytest.raises(jtile.JtileTraceError, match="threads=100 must be a multiple of 32"):
        trace1(body_only, grid=(1,), threads=100)


def test_program_id_before_the_kernel():
    def early(X, O):
        T.program_id(0)
        with T.Kernel(1):
            T.copy(X, O)

    with pytest.raises(jtile.JtileTraceError, match="T.program_id needs an open kernel"):
        trace1(early)


def test_thread_binding_dims():
    def dim1(X, O):
        with T.Kernel(1):
            T.get_thread_binding(1)

    with pytest.raises(jtile.JtileTraceError, match="T.get_thread_binding\\(1\\): thread blocks "
                       "are 1-D"):
        trace1(dim1)


def test_ceildiv():
    assert T.ceildiv(100, 32) == 4 and T.ceildiv(96, 32) == 3 and isinstance(T.ceildiv(7, 2), int)

    def traced_ceildiv(X, O):
        with T.Kernel(1) as bx:
            e = T.ceildiv(bx + 5, 4)
            O[0] = X[0] + e
            assert isinstance(e, ir.BinOp) and e.op == "floordiv"

    trace1(traced_ceildiv)


# ----------------------------------------------------------------------------- loops


def body_of(fn, shape=(64,), **kwargs):
    return trace1(fn, shape, **kwargs).body


def test_parallel_records_extents_and_vars():
    seen = []

    def par(X, O):
        with T.Kernel(1):
            for i in T.Parallel(64):
                seen.append(i)
                O[i] = X[i]
            s = T.alloc_shared((4, 8, 2), "float32")
            for i, j, k in T.Parallel(4, 8, 2):
                s[i, j, k] = 1.0
            T.copy(s[0, 0, :], O[0:2])

    (p1, p2, _) = body_of(par)
    assert isinstance(p1, ir.ParallelFor) and p1.extents == (64,) and p1.vars == (seen[0],)
    assert isinstance(p1.body[0], ir.Store) and p1.body[0].indices == (seen[0],)
    assert p2.extents == (4, 8, 2) and [v.name for v in p2.vars] == ["i_1", "j", "k"]
    assert len({id(v) for v in p1.vars + p2.vars}) == 4


@pytest.mark.parametrize("extents", [(), (0,), (4, -1), (2.5,)])
def test_parallel_extent_errors(extents):
    def par_bad(X, O):
        with T.Kernel(1):
            for i in T.Parallel(*extents):
                pass

    with pytest.raises(jtile.JtileTraceError, match=located("par_bad", "T.Parallel")):
        trace1(par_bad)


def test_parallel_traced_extent():
    def par_traced(X, O):
        with T.Kernel(2) as bx:
            for i in T.Parallel(bx):
                pass

    with pytest.raises(jtile.JtileTraceError, match="must be positive static ints"):
        trace1(par_traced)


@pytest.mark.parametrize("loop, kind", [(T.serial, ir.LoopKind.SERIAL),
                                        (T.unroll, ir.LoopKind.UNROLL)])
def test_serial_and_unroll_forms(loop, kind):
    seen = []

    def seq(X, O):
        with T.Kernel(1) as bx:
            for k in loop(8):
                seen.append(k)
                O[k] = X[k]
            for k in loop(2, 10):
                seen.append(k)
                O[k] = X[k]
            for k in loop(1, 10, 3):
                seen.append(k)
                O[k] = X[k]
            for k in loop(bx, bx + 4):
                seen.append(k)
                O[k] = X[k]

    f1, f2, f3, f4 = body_of(seq)
    assert all(isinstance(f, ir.For) and f.kind is kind for f in (f1, f2, f3, f4))
    assert (f1.start.value, f1.extent.value, f1.step) == (0, 8, 1)
    assert seen[0] is f1.var  # a zero-based unit-step loop yields its variable itself
    assert (f2.start.value, f2.extent.value, f2.step) == (2, 8, 1)
    assert (f3.start.value, f3.extent.value, f3.step) == (1, 3, 3)   # 1, 4, 7
    from jtile.ir.affine import affine, static_value
    form = affine(seen[2])
    assert form.const == 1 and form.coefficient(f3.var) == 3
    assert static_value(f4.extent) == 4
    assert affine(seen[3]).coefficient(f4.var) == 1


@pytest.mark.parametrize("args, rule", [((1, 2, 3, 4), "takes \\(extent\\), \\(start, stop\\) or"),
                                        ((0, 8, 0), "step 0 must be a positive static int"),
                                        ((0, 8, -1), "step -1 must be a positive static int"),
                                        ((0.5,), "bounds must be integers")])
def test_serial_errors(args, rule):
    def seq_bad(X, O):
        with T.Kernel(1):
            for k in T.serial(*args):
                pass

    with pytest.raises(jtile.JtileTraceError, match=located("seq_bad", "T.serial: " + rule
                                                            if "takes" not in rule else rule)):
        trace1(seq_bad)


def test_pipelined_records_num_stages():
    def pipe(X, O):
        with T.Kernel(1):
            s = T.alloc_shared((16,), "float32")
            for k in T.Pipelined(4, num_stages=3):
                T.copy(X[k * 16:(k + 1) * 16], s)
                T.copy(s, O[k * 16:(k + 1) * 16])
            for k in T.Pipelined(2, 4):
                T.copy(X[k * 16:(k + 1) * 16], s)

    loop, loop2 = body_of(pipe)
    assert loop.kind is ir.LoopKind.PIPELINED and loop.num_stages == 3
    assert loop.extent.value == 4 and len(loop.body) == 2
    assert loop2.num_stages == 0 and loop2.start.value == 2 and loop2.extent.value == 2


@pytest.mark.parametrize("stages", [-1, 2.0, True])
def test_pipelined_bad_stages(stages):
    def pipe_bad(X, O):
        with T.Kernel(1):
            for k in T.Pipelined(4, num_stages=stages):
                pass

    with pytest.raises(jtile.JtileTraceError, match="num_stages .* must be a static int >= 0"):
        trace1(pipe_bad)


@pytest.mark.parametrize("loop", [lambda: T.serial(4), lambda: T.Parallel(4),
                                  lambda: T.Pipelined(4, num_stages=2), lambda: T.unroll(4)])
def test_break_in_a_traced_loop_is_an_error(loop):
    def breaks(X, O):
        with T.Kernel(1):
            for k in loop():
                O[k] = X[k]
                break

    with pytest.raises(jtile.JtileTraceError, match=located("breaks", r"T\.\w+ at test_trace.py:"
                                                            r"\d+: the loop was left early")):
        trace1(breaks)


def test_nested_loops_nest():
    def nest(X, O):
        with T.Kernel(1):
            for k in T.serial(4):
                for i in T.Parallel(16):
                    O[k * 16 + i] = X[k * 16 + i]

    (outer,) = body_of(nest)
    (inner,) = outer.body
    assert isinstance(inner, ir.ParallelFor) and len(inner.body) == 1


# ----------------------------------------------------------------------------- control flow


def test_if_then_else_blocks_after_each_other():
    def branch(X, O):
        with T.Kernel(1):
            for i in T.Parallel(64):
                with T.If(X[i] > 0):
                    O[i] = X[i]
                with T.Else():
                    O[i] = -X[i]

    (loop,) = body_of(branch)
    (stmt,) = loop.body
    assert isinstance(stmt, ir.IfThenElse) and stmt.cond.dtype is DType.bool
    assert len(stmt.then_body) == 1 and len(stmt.else_body) == 1
    assert isinstance(stmt.else_body[0].value, ir.UnOp)


def test_then_and_else_nested_inside_if():
    def tl_branch(X, O):
        with T.Kernel(1):
            for i in T.Parallel(64):
                with T.If(X[i] > 0):
                    with T.Then():
                        O[i] = X[i]
                        O[i] = O[i] * 2
                    with T.Else():
                        O[i] = 0.0

    (loop,) = body_of(tl_branch)
    (stmt,) = loop.body
    assert len(stmt.then_body) == 2 and len(stmt.else_body) == 1


def test_if_without_else_and_nested_ifs():
    def nested(X, O):
        with T.Kernel(1) as bx:
            with T.If(bx == 0):
                with T.If(bx < 1):
                    O[0] = X[0]
                with T.Else():
                    O[1] = X[1]

    (outer,) = body_of(nested)
    assert outer.else_body == ()
    (inner,) = outer.then_body
    assert len(inner.then_body) == 1 and len(inner.else_body) == 1


def test_else_after_an_if_in_a_then_block_pairs_with_the_outer_if():
    def then_form(X, O):
        with T.Kernel(1) as bx:
            with T.If(bx == 0):
                with T.Then():
                    with T.If(bx < 1):
                        O[0] = X[0]
                with T.Else():
                    O[1] = X[1]

    (outer,) = body_of(then_form)
    (inner,) = outer.then_body
    assert inner.else_body == () and len(outer.else_body) == 1


def test_then_outside_if_is_refused():
    def lone_then(X, O):
        with T.Kernel(1):
            with T.Then():
                O[0] = X[0]

    with pytest.raises(jtile.JtileTraceError, match=located("lone_then", "T.Then belongs directly "
                                                            "inside `with T.If")):
        trace1(lone_then)


def test_two_elses_in_then_form_are_refused():
    def two_elses_inside(X, O):
        with T.Kernel(1) as bx:
            with T.If(bx == 0):
                with T.Then():
                    O[0] = X[0]
                with T.Else():
                    O[1] = X[1]
                with T.Else():
                    O[2] = X[2]

    with pytest.raises(jtile.JtileTraceError, match="already has a T.Else"):
        trace1(two_elses_inside)


def test_if_on_an_int_condition_compares_with_zero():
    def int_cond(X, O):
        with T.Kernel(2) as bx:
            with T.If(bx):
                O[0] = X[0]

    (stmt,) = body_of(int_cond)
    assert stmt.cond.dtype is DType.bool and stmt.cond.op == "ne"


def test_else_without_if():
    def lone_else(X, O):
        with T.Kernel(1):
            T.copy(X, O)
            with T.Else():
                O[0] = 1.0

    with pytest.raises(jtile.JtileTraceError, match=located("lone_else", "test_trace.py:\\d+: T.Else "
                                                            "must directly follow a `with T.If")):
        trace1(lone_else)


def test_second_else_is_refused():
    def two_elses(X, O):
        with T.Kernel(1) as bx:
            with T.If(bx == 0):
                O[0] = X[0]
            with T.Else():
                O[0] = 1.0
            with T.Else():
                O[0] = 2.0

    with pytest.raises(jtile.JtileTraceError, match="T.Else must directly follow"):
        trace1(two_elses)


def test_if_then_else_typing():
    seen = {}

    def values(X, O):
        with T.Kernel(1):
            h = T.alloc_fragment((64,), "float16")
            T.copy(X, h)
            for i in T.Parallel(64):
                seen["weak_b"] = T.if_then_else(h[i] > 0, h[i], 0)
                seen["weak_a"] = T.if_then_else(h[i] > 0, 1.5, h[i])
                seen["mixed"] = T.if_then_else(i < 3, i, X[i])
                seen["ints"] = T.if_then_else(i < 3, 1, 2)
                seen["py"] = T.if_then_else(True, 1, 2.0)
                O[i] = seen["weak_b"]

    trace1(values)
    assert seen["weak_b"].dtype is DType.float16 and seen["weak_b"].b.dtype is DType.float16
    assert seen["weak_a"].dtype is DType.float16 and seen["weak_a"].a.value == 1.5
    assert seen["mixed"].dtype is DType.float32
    assert seen["ints"].dtype is DType.int32
    assert seen["py"].dtype is DType.float32
    assert isinstance(seen["mixed"], ir.Select) and seen["mixed"].cond.dtype is DType.bool


@pytest.mark.parametrize("misuse", ["if", "while", "and", "bool", "range", "int_list_index"])
def test_python_control_flow_on_a_traced_value(misuse):
    def pythonic(X, O):
        with T.Kernel(1) as bx:
            if misuse == "if":
                if X[bx] > 0:
                    pass
            elif misuse == "while":
                while bx < 3:
                    pass
            elif misuse == "and":
                O[0] = (X[0] > 0) and X[1]
            elif misuse == "bool":
                bool(bx)
            elif misuse == "range":
                for _ in range(bx):
                    pass
            else:
                [1, 2][bx]

    names_the_fix = ("T.If" if misuse in ("if", "while", "and", "bool") else "T.serial")
    with pytest.raises(jtile.JtileTraceError) as info:
        trace1(pythonic)
    message = str(info.value)
    assert re.match(r"pythonic \(test_trace.py:\d+\): test_trace.py:\d+: ", message), message
    assert names_the_fix in message


def test_python_if_on_static_values_works():
    def static(X, O):
        N = X.shape[0]
        with T.Kernel(1):
            if N > 32:
                T.copy(X, O)

    assert len(body_of(static)) == 1


# ----------------------------------------------------------------------------- indexing


def test_static_length_slices():
    def slices(X, O):
        with T.Kernel(2, threads=32) as bx:
            s = T.alloc_shared((32,), "float32")
            for k in T.serial(2):
                T.copy(X[k * 32:(k + 1) * 32], s)
            T.copy(s, O[bx * 32:bx * 32 + 32])
            T.copy(X[32:], s)
            T.copy(X[:32], s)
            T.copy(X[(bx + 1) * 32 - 32: (bx + 1) * 32], s)

    body = body_of(slices)
    loop = body[0]
    region = loop.body[0].src
    assert region.extents == (32,)
    assert body[1].dst.extents == (32,)
    assert body[2].src.starts[0].value == 32 and body[2].src.extents == (32,)
    assert body[3].src.extents == (32,)
    assert body[4].src.extents == (32,)


def test_slices_starting_at_a_loaded_offset():
    def gather(X, offsets, O):
        with T.Kernel(2, threads=32) as bx:
            start = T.alloc_var("int32", offsets[bx])
            s = T.alloc_shared((16,), "float32")
            T.copy(X[offsets[bx]:offsets[bx] + 16], s)
            T.copy(X[start:start + 16], s)
            T.copy(s, O[bx * 16:bx * 16 + 16])

    kernel = trace(gather, [((64,), F32), ((2,), I32)], [((32,), F32)])
    c1, c2, _ = kernel.body
    assert c1.src.extents == (16,) and isinstance(c1.src.starts[0], ir.Load)
    assert c2.src.extents == (16,) and c2.src.starts[0].buffer.name == "start"


@pytest.mark.parametrize("index, rule", [
    ("dynamic", "slice 0 of X \\(global float32 \\(64,\\)\\) does not have a static length; write "
                "it as X\\[s : s \\+ n\\] with a Python int n"),
    ("step", "slice 0 of X .* has step 2; tile regions need step 1"),
    ("too_long", "slice 0 of X .* has length 65, outside 1..64"),
    ("empty", "slice 0 of X .* has length 0, outside 1..64"),
    ("negative", "index -1 is out of bounds for dimension 0 of X"),
    ("rank", "X \\(global float32 \\(64,\\)\\) was indexed with 2 indices; it has 1 dimensions"),
    ("float", "index 0 of X .* has dtype float32; indices must be integers"),
    ("slice_store", "a slice assignment to O"),
])
def test_indexing_errors(index, rule):
    def indexing(X, O):
        with T.Kernel(2, threads=32) as bx:
            s = T.alloc_shared((64,), "float32")
            if index == "dynamic":
                T.copy(X[bx:2 * bx], s)
            elif index == "step":
                T.copy(X[0:64:2], s)
            elif index == "too_long":
                T.copy(X[0:65], s)
            elif index == "empty":
                T.copy(X[4:4], s)
            elif index == "negative":
                O[0] = X[-1]
            elif index == "rank":
                O[0] = X[0, 0]
            elif index == "float":
                O[0] = X[X[0]]
            else:
                O[0:4] = 1.0

    with pytest.raises(jtile.JtileTraceError, match=located("indexing", "test_trace.py:\\d+: " + rule)):
        trace1(indexing)


def test_head_address_copy_takes_the_other_sides_shape():
    def head(A, C):
        with T.Kernel(2, 2, threads=128) as (bx, by):
            tile = T.alloc_shared((32, 16), "float32")
            T.copy(A[by * 32, bx * 16], tile)
            T.copy(tile, C[by * 32, bx * 16])
            row = T.alloc_fragment((16,), "float32")
            T.copy(A[by * 32 + 1, bx * 16], row)     # a 1-D tile of a 2-D buffer: last dim
            T.copy(row, C[by * 32, bx * 16:bx * 16 + 16])

    c1, c2, c3, c4 = trace(head, [((64, 32), F32)], [((64, 32), F32)]).body
    assert c1.src.extents == (32, 16) and c1.dst.extents == (32, 16)
    assert c2.dst.extents == (32, 16) and c2.dst.buffer.name == "C"
    assert c3.src.extents == (1, 16)
    assert c4.dst.extents == (1, 16)


@pytest.mark.parametrize("case, rule", [
    ("shape", "T.copy at test_trace.py:\\d+: src X tile \\(32,\\) and dst s tile \\(16,\\) differ in "
              "shape"),
    ("2d", "src X tile \\(32,\\) and dst s2 tile \\(8, 4\\) differ in shape"),
    ("heads", "both sides are head addresses"),
    ("head_too_big", "a \\(128,\\) tile does not fit in X"),
    ("head_rank", "the head address .* has 1 indices but the other side is a 2-D tile"),
    ("barrier", "src bar \\(shared.barrier uint64 \\(1,\\)\\) cannot be copied"),
    ("scalar", "dst must be a buffer, a slice of one, or a head address"),
])
def test_copy_errors(case, rule):
    def copies(X, O):
        with T.Kernel(1, threads=32):
            s = T.alloc_shared((16,), "float32")
            s2 = T.alloc_shared((8, 4), "float32")
            big = T.alloc_shared((128,), "float32")
            bar = T.alloc_barrier(1)
            if case == "shape":
                T.copy(X[0:32], s)
            elif case == "2d":
                T.copy(X[0:32], s2)
            elif case == "heads":
                T.copy(X[0], O[0])
            elif case == "head_too_big":
                T.copy(X[0], big)
            elif case == "head_rank":
                T.copy(X[0], s2)
            elif case == "barrier":
                T.copy(bar, s)
            else:
                T.copy(X[0:16], 3.0)

    with pytest.raises(jtile.JtileTraceError, match=located("copies", rule)):
        trace1(copies)


def test_copy_ignores_unit_dimensions_and_casts():
    def unit(X, O):
        with T.Kernel(1, threads=32):
            s = T.alloc_shared((1, 64), "float16")
            T.copy(X, s)
            T.copy(s[0, :], O)

    c1, c2 = trace1(unit).body
    assert c1.dst.extents == (1, 64) and c2.src.extents == (1, 64)


# ----------------------------------------------------------------------------- gemm


def gemm_kernel(a_shape=(64, 32), b_shape=(32, 64), c_shape=(64, 64), a_dtype="float16",
                b_dtype="float16", c_dtype="float32", a_scope="shared", b_scope="shared",
                c_scope="fragment", **flags):
    allocs = {"shared": T.alloc_shared, "fragment": T.alloc_fragment, "local": T.alloc_local}

    def gemm_k(X, O):
        with T.Kernel(1, threads=128):
            a = allocs[a_scope](a_shape, a_dtype)
            b = allocs[b_scope](b_shape, b_dtype)
            acc = allocs[c_scope](c_shape, c_dtype)
            T.gemm(a, b, acc, **flags)
            O[0] = X[0]

    return trace1(gemm_k)


def test_gemm_records_flags():
    kernel = gemm_kernel(a_shape=(32, 64), b_shape=(64, 32), transpose_A=True, transpose_B=True,
                         clear_accum=True)
    (g, _) = kernel.body
    assert isinstance(g, ir.Gemm) and g.transpose_a and g.transpose_b and g.clear_accum
    assert g.c.extents == (64, 64)


@pytest.mark.parametrize("kwargs, rule", [
    (dict(a_shape=(64, 16)), "expected C \\(M, N\\), A \\(M, K\\), B \\(K, N\\); A a is \\(64, 16\\), "
                             "B b is \\(32, 64\\), C acc is \\(64, 64\\)"),
    (dict(c_shape=(32, 64)), "expected C \\(M, N\\)"),
    (dict(transpose_B=True), "expected .* B \\(K, N\\) transposed; A a is \\(64, 32\\)"),
    (dict(a_shape=(64,)), "A must be a 2-D tile"),
    (dict(b_dtype="bfloat16"), "A and B must share one dtype of .* got float16 and bfloat16"),
    (dict(a_dtype="int8", b_dtype="int8"), "A and B must share one dtype"),
    (dict(c_dtype="float16"), "the accumulator C must be float32, got float16"),
    (dict(c_scope="shared"), "C must be a fragment \\(T.alloc_fragment\\), not shared.dyn"),
    (dict(b_scope="fragment"), "B must be a shared tile, not local.fragment"),
    (dict(a_scope="local"), "A must be a shared tile or a fragment, not local"),
])
def test_gemm_errors(kwargs, rule):
    with pytest.raises(jtile.JtileShapeError, match=located("gemm_k", "T.gemm at test_trace.py:\\d+: "
                                                            + rule)):
        gemm_kernel(**kwargs)


def test_gemm_accepts_fragment_a_and_float32():
    gemm_kernel(a_scope="fragment")
    gemm_kernel(a_dtype="float32", b_dtype="float32")
    gemm_kernel(a_dtype="bfloat16", b_dtype="bfloat16")


# ----------------------------------------------------------------------------- reductions


@pytest.mark.parametrize("op", ["max", "min", "sum", "abssum", "absmax"])
def test_reductions_record_dim(op):
    def red(X, O):
        with T.Kernel(1):
            x = T.alloc_fragment((16, 8), "float32")
            rows = T.alloc_fragment((16,), "float32")
            cols = T.alloc_fragment((8,), "float32")
            T.clear(x)
            getattr(T, f"reduce_{op}")(x, rows)
            getattr(T, f"reduce_{op}")(x, cols, dim=0, clear=False)
            T.copy(rows, O[0:16])

    _, r1, r2, _ = trace1(red).body
    assert (r1.op, r1.dim, r1.clear, r1.dst.shape) == (op, 1, True, (16,))
    assert (r2.op, r2.dim, r2.clear, r2.dst.shape) == (op, 0, False, (8,))


@pytest.mark.parametrize("dst_shape, dim, rule", [
    ((8,), -1, "dst .* must have shape \\(16,\\): src x \\(local.fragment float32 \\(16, 8\\)\\) "
               "without dimension 1"),
    ((16, 1), 1, "dst d .* must have shape \\(16,\\)"),
    ((16,), 0, "dst d .* must have shape \\(8,\\)"),
    ((16,), 2, "dim=2 is out of range"),
    ((16,), -3, "dim=-3 is out of range"),
])
def test_reduce_dst_shape_errors(dst_shape, dim, rule):
    def red_bad(X, O):
        with T.Kernel(1):
            x = T.alloc_fragment((16, 8), "float32")
            d = T.alloc_fragment(dst_shape, "float32")
            T.reduce_max(x, d, dim=dim)

    with pytest.raises(jtile.JtileTraceError, match=located("red_bad", "T.reduce_max at "
                                                            "test_trace.py:\\d+: " + rule)):
        trace1(red_bad)


def test_reduce_needs_fragments():
    def red_shared(X, O):
        with T.Kernel(1):
            x = T.alloc_shared((16, 8), "float32")
            d = T.alloc_fragment((16,), "float32")
            T.reduce_sum(x, d)

    with pytest.raises(jtile.JtileTraceError, match="src x .* must be a fragment"):
        trace1(red_shared)

    def red_slice(X, O):
        with T.Kernel(1):
            x = T.alloc_fragment((16, 8), "float32")
            d = T.alloc_fragment((16,), "float32")
            T.reduce_sum(x[0:16, 0:8], d)

    with pytest.raises(jtile.JtileTraceError, match="src and dst must be whole fragment buffers"):
        trace1(red_slice)


def test_finalize_reducer_needs_a_reducer():
    def not_reducer(X, O):
        with T.Kernel(1):
            x = T.alloc_fragment((16,), "float32")
            T.finalize_reducer(x)

    with pytest.raises(jtile.JtileTraceError, match="is not a reducer \\(T.alloc_reducer\\)"):
        trace1(not_reducer)


# ----------------------------------------------------------------------------- atomics


def test_atomic_add_forms():
    def atomics(X, O):
        with T.Kernel(1, threads=32):
            frag = T.alloc_fragment((16,), "float32")
            s = T.alloc_shared((16,), "float32")
            T.copy(X[0:16], frag)
            T.atomic_add(O[3], 1)                    # element, Python scalar
            T.atomic_add(O[3], X[4])                 # element, traced scalar
            T.atomic_add(O[0:16], frag)              # slice += tile
            T.atomic_add(O[16], frag)                # head address += tile
            T.atomic_add(s, frag)                    # shared buffer += tile

    _, e1, e2, t1, t2, t3 = trace1(atomics).body
    assert isinstance(e1.dst, ir.Load) and e1.value.dtype is DType.float32
    assert isinstance(e2.value, ir.Load)
    assert isinstance(t1.value, ir.Region) and t1.dst.extents == (16,)
    assert t2.dst.extents == (16,) and t2.dst.starts[0].value == 16
    assert t3.dst.buffer.space is MemorySpace.SHARED_DYN


@pytest.mark.parametrize("case, rule", [
    ("fragment_dst", "dst must be an element or tile of a global or shared buffer"),
    ("int8", "small \\(shared.dyn int8 \\(16,\\)\\): atomic add supports"),
    ("shape", "dst tile \\(8,\\) and value tile \\(16,\\) differ"),
    ("scalar_to_tile", "a scalar value needs one element as dst"),
])
def test_atomic_add_errors(case, rule):
    def atomic_bad(X, O):
        with T.Kernel(1, threads=32):
            frag = T.alloc_fragment((16,), "float32")
            small = T.alloc_shared((16,), "int8")
            if case == "fragment_dst":
                T.atomic_add(frag[0], 1.0)
            elif case == "int8":
                T.atomic_add(small[0], 1)
            elif case == "shape":
                T.atomic_add(O[0:8], frag)
            else:
                T.atomic_add(O[0:16], 1.0)

    with pytest.raises(jtile.JtileTraceError, match=located("atomic_bad", "T.atomic_add at "
                                                            "test_trace.py:\\d+: " + rule)):
        trace1(atomic_bad)


# ----------------------------------------------------------------------------- parameters


def test_tensor_annotations_are_checked():
    def annotated(A: T.Tensor((64, 32), "float16"), B: T.Tensor((None, 32), "float16"),
                  C: T.Buffer((64,), T.float32)):
        with T.Kernel(1):
            C[0] = T.cast(A[0, 0] + B[0, 0], "float32")

    trace(annotated, [((64, 32), F16), ((8, 32), F16)], [((64,), F32)])
    with pytest.raises(jtile.JtileShapeError, match=located(
            "annotated", "input parameter `A` has shape \\(32, 64\\) but is annotated "
                         "T.Tensor\\(\\(64, 32\\), float16\\)")):
        trace(annotated, [((32, 64), F16), ((8, 32), F16)], [((64,), F32)])
    with pytest.raises(jtile.JtileShapeError, match="input parameter `B` has dtype float32 but is "
                       "annotated T.Tensor\\(\\(\\?, 32\\), float16\\)"):
        trace(annotated, [((64, 32), F16), ((8, 32), F32)], [((64,), F32)])
    with pytest.raises(jtile.JtileShapeError, match="output parameter `C` has shape \\(64, 1\\) but "
                       "is annotated T.Tensor\\(\\(64,\\), float32\\)"):
        trace(annotated, [((64, 32), F16), ((8, 32), F16)], [((64, 1), F32)])


def test_parameter_names_become_buffer_names():
    def names(query, key, out_ref):
        with T.Kernel(1):
            T.copy(query, out_ref)
            T.copy(key, out_ref)

    kernel = trace(names, [((8,), F32), ((8,), F32)], [((8,), F32)])
    assert [b.name for b in kernel.params] == ["query", "key", "out_ref"]
    assert kernel.num_inputs == 2 and kernel.name == "names"
    assert all(b.space is MemorySpace.GLOBAL for b in kernel.params)
    assert trace(names, [((8,), F32), ((8,), F32)], [((8,), F32)], name="renamed").name == "renamed"


def test_wrong_number_of_parameters():
    def takes_two(X, O):
        with T.Kernel(1):
            T.copy(X, O)

    with pytest.raises(jtile.JtileTraceError, match=located("takes_two", "the kernel takes 2 array "
                                                            "parameters but is called with 3")):
        trace(takes_two, [((8,), F32), ((8,), F32)], [((8,), F32)])


def test_static_arguments_with_defaults_are_not_arrays():
    def with_default(X, O, block=32):
        with T.Kernel(1, threads=block):
            T.copy(X, O)

    assert trace1(with_default).threads == 32


def test_returning_values_with_out_shape_is_refused():
    def returns(X, O):
        with T.Kernel(1):
            T.copy(X, O)
        return O

    with pytest.raises(jtile.JtileTraceError, match="writes its output refs and returns nothing"):
        trace1(returns)


def test_missing_and_foreign_returns_without_out_shape():
    def returns_nothing(X):
        O = T.empty((8,))
        with T.Kernel(1):
            T.copy(X, O)

    with pytest.raises(jtile.JtileTraceError, match="declared no out_shape= and returned nothing"):
        trace(returns_nothing, [((8,), F32)], None)

    def returns_input(X):
        O = T.empty((8,))
        with T.Kernel(1):
            T.copy(X, O)
        return X

    with pytest.raises(jtile.JtileTraceError, match="must return the buffers made by T.empty"):
        trace(returns_input, [((8,), F32)], None)

    def forgets_one(X):
        O = T.empty((8,))
        P = T.empty((8,))
        with T.Kernel(1):
            T.copy(X, O)
            T.copy(X, P)
        return O

    with pytest.raises(jtile.JtileTraceError, match="T.empty outputs \\['P'\\] were declared but not "
                       "returned"):
        trace(forgets_one, [((8,), F32)], None)


def test_buffer_names_follow_assignment_and_stay_unique():
    def naming(X):
        out = T.empty((8,))
        with T.Kernel(1) as bx:
            tx = T.alloc_var("int32")
            bx_copy = T.alloc_var("int32", bx)
            i = T.alloc_fragment((8,), "float32")
            for j in T.Parallel(8):
                i[j] = X[j] + tx + bx_copy
            T.copy(i, out)
        return out

    kernel = trace(naming, [((8,), F32)], None)
    names = [b.name for b in kernel.params] + [b.name for b in kernel.allocations]
    assert names == ["X", "out", "tx_1", "bx_copy", "i"]  # `tx` is the thread index's name
    assert kernel.thread_var.name == "tx"
    (loop,) = [s for s in kernel.body if isinstance(s, ir.ParallelFor)]
    assert loop.vars[0].name == "i_1"


# ----------------------------------------------------------------------------- golden text


def test_kernel_text_of_a_tiled_matmul():
    def matmul(A, B, C):
        M, K = A.shape
        _, N = B.shape
        with T.Kernel(T.ceildiv(N, 64), T.ceildiv(M, 64), threads=128) as (bx, by):
            a_smem = T.alloc_shared((64, 32), "float16")
            b_smem = T.alloc_shared((32, 64), "float16")
            acc = T.alloc_fragment((64, 64), "float32")
            T.clear(acc)
            for k in T.Pipelined(T.ceildiv(K, 32), num_stages=2):
                T.copy(A[by * 64, k * 32], a_smem)
                T.copy(B[k * 32:(k + 1) * 32, bx * 64:(bx + 1) * 64], b_smem)
                T.gemm(a_smem, b_smem, acc)
            T.copy(acc, C[by * 64, bx * 64])

    kernel = trace(matmul, [((128, 64), F16), ((64, 128), F16)], [((128, 128), F32)])
    assert kernel_text(kernel) == """\
kernel matmul(A: float16[128, 64], B: float16[64, 128]) -> (C: float32[128, 128])
  grid=[2, 2] threads=128 blocks=(bx, by)
  alloc a_smem: shared.dyn float16[64, 32]
  alloc b_smem: shared.dyn float16[32, 64]
  alloc acc: local.fragment float32[64, 64]
  fill acc[:64, :64] = 0.0
  pipelined k in range(2, stages=2):
    copy A[(by * 64):(by * 64)+64, (k * 32):(k * 32)+32] -> a_smem[:64, :32]
    copy B[(k * 32):(k * 32)+32, (bx * 64):(bx * 64)+64] -> b_smem[:32, :64]
    gemm a_smem[:64, :32] @ b_smem[:32, :64] -> acc[:64, :64]
  copy acc[:64, :64] -> C[(by * 64):(by * 64)+64, (bx * 64):(bx * 64)+64]
"""


def test_kernel_text_of_control_flow_reductions_and_vars():
    def rowmax(X):
        O = T.empty((64,), "float32")
        with T.Kernel(2, threads=128) as bx:
            x = T.alloc_fragment((32, 16), "float32")
            m = T.alloc_fragment((32,), "float32")
            n = T.alloc_var("int32", 3)
            T.copy(X[bx * 32:bx * 32 + 32, 0:16], x)
            T.reduce_max(x, m, dim=1)
            for i in T.Parallel(32):
                with T.If(m[i] > 0):
                    O[bx * 32 + i] = m[i] * n
                with T.Else():
                    O[bx * 32 + i] = T.if_then_else(m[i] < -1, -1.0, 0.0)
            for k in T.serial(1, 9, 2):
                n[0] = n + k
        return O

    kernel = trace(rowmax, [((64, 16), F32)], None)
    assert kernel_text(kernel) == """\
kernel rowmax(X: float32[64, 16]) -> (O: float32[64])
  grid=[2] threads=128 blocks=(bx)
  alloc x: local.fragment float32[32, 16]
  alloc m: local.fragment float32[32]
  alloc n: local.var int32[1] init=3
  copy X[(bx * 32):(bx * 32)+32, :16] -> x[:32, :16]
  reduce_max x -> m dim=1
  parallel (i) in (32,):
    if (m[i] > 0.0):
      O[((bx * 32) + i)] = (m[i] * n[0])
    else:
      O[((bx * 32) + i)] = select((m[i] < -1.0), -1.0, 0.0)
  serial k in range(4) * 2 + 1:
    n[0] = (n[0] + ((k * 2) + 1))
"""
    # Identical kernels print identically: a second trace gives the same text.
    assert kernel_text(trace(rowmax, [((64, 16), F32)], None)) == kernel_text(kernel)
