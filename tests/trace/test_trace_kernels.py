"""Tracing kernel bodies into IR: T.Kernel and grids, loops and control flow."""

import re

import pytest

import jtile
import jtile.language as T
from jtile.ir import nodes as ir
from jtile.ir.types import DType
from tests.trace.helpers import body_of, trace1
from tests.trace.helpers import located as _located


def located(kernel_name, message_regex):
    return _located(kernel_name, message_regex, "test_trace_kernels.py")


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
    (100, "threads=100: a block is whole warps \\(a multiple of 32, at most 1024\\) or one "
          "partial warp of 1, 2, 4, 8 or 16 threads"),
    (2048, "threads=2048: a block is whole warps"),
    (1056, "threads=1056: a block is whole warps \\(a multiple of 32, at most 1024\\)"),
    (24, "threads=24: a block is whole warps .* or one partial warp of 1, 2, 4, 8 or 16"),
    (0, "threads must be positive, got 0"),
    (-32, "threads must be positive"),
    (128.0, "threads must be a static Python int"),
    ((64, 32), "threads=2048: a block is whole warps \\(a multiple of 32, at most 1024\\)"),
    ((32, 2, 2, 2), "threads=\\(32, 2, 2, 2\\) must have 1 to 3 extents"),
])
def test_threads_rules(threads, rule):
    def kt(X, O):
        with T.Kernel(1, threads=threads):
            T.copy(X, O)

    with pytest.raises(jtile.JtileTraceError, match=located("kt", r"T.Kernel at test_trace_kernels.py:\d+: "
                                                            + rule)):
        trace1(kt)


@pytest.mark.parametrize("threads", [32, 1024, 256, 1, 8, 16])
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

    with pytest.raises(jtile.JtileTraceError, match=located("kv", "nested kernels are not "
                                                            "supported")):
        trace1(kv)


def test_kernel_opened_twice_is_two_launches():
    def twice(X, O):
        with T.Kernel(1, threads=32):
            T.copy(X, O)
        with T.Kernel(2, threads=64):
            T.copy(X, O)

    first, second = trace1(twice).launches
    assert (first.kernel.grid, second.kernel.grid) == ((1,), (2,))
    assert second.kernel.threads == 64 and second.aliases == ((1, 0),)  # O_in -> O


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

    with pytest.raises(jtile.JtileTraceError, match=located("before", "test_trace_kernels.py:\\d+: a T.\\* "
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

    with pytest.raises(jtile.JtileTraceError, match="nested kernels are not supported: "
                       r"jtile.pallas_like\(grid=...\) already opens the kernel"):
        trace1(opens_kernel, grid=(1,))

    def plain(X, O):
        with T.Kernel(1):
            T.copy(X, O)

    with pytest.raises(jtile.JtileTraceError, match="threads= goes with grid="):
        trace1(plain, threads=64)
    def body_only(X, O):
        T.copy(X, O)

    with pytest.raises(jtile.JtileTraceError, match="threads=100: a block is whole warps"):
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

    def dim2_of_2d(X, O):
        with T.Kernel(1, threads=(32, 4)):
            T.get_thread_binding(2)

    with pytest.raises(jtile.JtileTraceError, match=r"T.get_thread_binding\(2\): the thread "
                       r"block \(32, 4\) has 2 dimensions"):
        trace1(dim2_of_2d)

    def odd_block(X, O):
        with T.Kernel(1, threads=(10, 3)):
            T.get_thread_binding(1)

    with pytest.raises(jtile.JtileTraceError, match="threads=30: a block is whole warps"):
        trace1(odd_block)


def test_ceildiv():
    assert T.ceildiv(100, 32) == 4 and T.ceildiv(96, 32) == 3 and isinstance(T.ceildiv(7, 2), int)

    def traced_ceildiv(X, O):
        with T.Kernel(1) as bx:
            e = T.ceildiv(bx + 5, 4)
            O[0] = X[0] + e
            assert isinstance(e, ir.BinOp) and e.op == "floordiv"

    trace1(traced_ceildiv)


# ----------------------------------------------------------------------------- loops


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
                                        ((0, 8, 0), "step 0 must be a nonzero static int"),
                                        ((0, 8, 1.5), "step 1.5 must be a nonzero static int"),
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


def test_break_in_a_parallel_loop_is_an_error():
    def breaks(X, O):
        with T.Kernel(1):
            for k in T.Parallel(4):
                O[k] = X[k]
                break

    with pytest.raises(jtile.JtileTraceError, match=located("breaks", r"`break` / `continue` in "
                                                            r"a T.Parallel loop")):
        trace1(breaks)


def test_break_in_a_loop_that_is_not_rewritten_is_an_error():
    """Without its source (here: built by exec) a body runs as written, and a `break` in a
    recorded loop would drop the rest of it: refused."""
    namespace = {"T": T}
    exec("def breaks(X, O):\n"
         "    with T.Kernel(1):\n"
         "        for k in T.serial(4):\n"
         "            O[k] = X[k]\n"
         "            break\n", namespace)
    with pytest.raises(jtile.JtileTraceError, match=r"the loop was left early"):
        trace1(namespace["breaks"])


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

    with pytest.raises(jtile.JtileTraceError, match=located("lone_else", "test_trace_kernels.py:\\d+: T.Else "
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


@pytest.mark.parametrize("misuse", ["bool", "range", "int_list_index"])
def test_python_control_flow_on_a_traced_value(misuse):
    # `if` / `while` / `and` on traced values work (tests/trace/test_python_control_flow.py);
    # what the body rewrite cannot see still names the fix.
    def pythonic(X, O):
        with T.Kernel(1) as bx:
            if misuse == "bool":
                bool(bx)
            elif misuse == "range":   # (`for _ in range(bx)` itself is a T.serial loop)
                for _ in list(range(bx)):
                    pass
            else:
                [1, 2][bx]

    names_the_fix = ("T.If" if misuse == "bool" else "T.serial")
    with pytest.raises(jtile.JtileTraceError) as info:
        trace1(pythonic)
    message = str(info.value)
    assert re.match(r"pythonic \(test_trace_kernels.py:\d+\): test_trace_kernels.py:\d+: ", message), message
    assert names_the_fix in message


def test_python_if_on_static_values_works():
    def static(X, O):
        N = X.shape[0]
        with T.Kernel(1):
            if N > 32:
                T.copy(X, O)

    assert len(body_of(static)) == 1
