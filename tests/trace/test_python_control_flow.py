"""Python `if` / `elif` / `else`, `while`, `and` / `or` / `not`, conditional expressions and
`T.alloc_var` assignment on traced values: each kernel runs in interpret mode against a NumPy
reference and is lowered to CUDA for sm_90a."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
import jtile.language as T
from jtile.ir import nodes as ir
from tests.trace.helpers import trace1

N = 256
BLOCK = 128


@pytest.fixture(autouse=True)
def _no_global_switches(monkeypatch):
    for name in ("JTILE_INTERPRET", "JTILE_DEBUG", "JTILE_TARGET"):
        monkeypatch.delenv(name, raising=False)


def _normal(seed, shape=(N,), dtype=jnp.float32):
    return jax.random.normal(jax.random.PRNGKey(seed), shape, jnp.float32).astype(dtype)


def _launch(kernel, *args, out=None):
    """Runs `kernel` in interpret mode and checks that it lowers to CUDA for sm_90a."""
    out = out or jax.ShapeDtypeStruct(args[0].shape, args[0].dtype)
    launcher = jtile.pallas_like(kernel, out_shape=out, interpret=True)
    result = launcher(*args)
    source = launcher.lower(*args, target="sm_90a").cuda_source()
    return np.asarray(result), source


def _statements(kernel, kind):
    from jtile.ir.walk import statements

    return [s for s in statements(kernel.body) if isinstance(s, kind)]


# ----------------------------------------------------------------------------- if / elif / else


def if_elif_else_kernel(X, O):
    (n,) = X.shape
    with T.Kernel(n // BLOCK, threads=BLOCK) as bx:
        for i in T.Parallel(BLOCK):
            v = X[bx * BLOCK + i]
            if v > 1.0:
                O[bx * BLOCK + i] = v * 2
            elif v < -1.0:
                O[bx * BLOCK + i] = -v
            else:
                O[bx * BLOCK + i] = 0.5


def test_if_elif_else_on_traced_values():
    x = _normal(0)
    got, source = _launch(if_elif_else_kernel, x)
    xn = np.asarray(x)
    want = np.where(xn > 1, xn * 2, np.where(xn < -1, -xn, 0.5))
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert "if (" in source and "else" in source


def test_if_records_one_branch_statement_with_both_bodies():
    kernel = trace1(if_elif_else_kernel, shape=(N,))
    (outer, inner) = _statements(kernel, ir.IfThenElse)
    assert len(outer.then_body) == 1 and outer.else_body == (inner,)
    assert len(inner.then_body) == 1 and len(inner.else_body) == 1
    # The IR remembers the user's `if` line, not a line of the rewrite.
    assert outer.loc.line == if_elif_else_kernel.__code__.co_firstlineno + 5
    assert inner.loc.line == outer.loc.line + 2


def test_block_level_if_guards_a_tile_copy():
    def guarded(X, O):
        with T.Kernel(2, threads=BLOCK) as bx:
            tile = T.alloc_shared((BLOCK,), "float32")
            T.copy(X[bx * BLOCK:(bx + 1) * BLOCK], tile)
            if bx == 0:
                for i in T.Parallel(BLOCK):
                    tile[i] = tile[i] + 100.0
            T.copy(tile, O[bx * BLOCK:(bx + 1) * BLOCK])

    x = _normal(1)
    got, _ = _launch(guarded, x)
    want = np.asarray(x).copy()
    want[:BLOCK] += 100.0
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_static_if_runs_python_and_records_no_branch():
    taken = []

    def static(X, O, threshold=32):
        (n,) = X.shape
        with T.Kernel(1, threads=BLOCK):
            if n > threshold and n % 2 == 0:
                taken.append("then")
                T.copy(X, O)
            else:
                taken.append("else")

    kernel = trace1(static, shape=(64,))
    assert taken == ["then"] and not _statements(kernel, ir.IfThenElse)


# ----------------------------------------------------------------------------- boolean operators


def logic_kernel(X, Y, O):
    (n,) = X.shape
    with T.Kernel(n // BLOCK, threads=BLOCK) as bx:
        for i in T.Parallel(BLOCK):
            x = X[bx * BLOCK + i]
            y = Y[bx * BLOCK + i]
            if (x > 0 and y > 0) or not (x > -0.5):
                O[bx * BLOCK + i] = 1.0
            else:
                O[bx * BLOCK + i] = x if y < 0 else y


def test_and_or_not_and_conditional_expressions():
    x, y = _normal(2), _normal(3)
    got, source = _launch(logic_kernel, x, y)
    xn, yn = np.asarray(x), np.asarray(y)
    want = np.where(((xn > 0) & (yn > 0)) | ~(xn > -0.5), 1.0, np.where(yn < 0, xn, yn))
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert "&&" in source and "||" in source and "?" in source


def test_bool_operators_return_python_values_when_static():
    seen = {}

    def mixed(X, O):
        with T.Kernel(1, threads=BLOCK) as bx:
            seen["and"] = 0 and bx          # Python's value: 0, bx never looked at
            seen["or"] = [] or "fallback"
            seen["not"] = not None
            seen["ifexp"] = "yes" if X.shape[0] == 64 else "no"
            seen["traced"] = bx > 0 and True    # a static right side folds away
            seen["false"] = bx > 0 and False
            seen["chain_static"] = 1 < 2 < 3
            seen["chain"] = 0 < bx < 3
            T.copy(X, O)

    trace1(mixed)
    assert seen["and"] == 0 and seen["or"] == "fallback" and seen["not"] is True
    assert seen["ifexp"] == "yes" and seen["chain_static"] is True
    assert isinstance(seen["traced"], ir.BinOp) and seen["traced"].op == "gt"
    assert isinstance(seen["false"], ir.Const) and seen["false"].value is False
    assert isinstance(seen["chain"], ir.BinOp) and seen["chain"].op == "and"


def test_chained_comparison_on_traced_values():
    def band(X, O):
        (n,) = X.shape
        with T.Kernel(n // BLOCK, threads=BLOCK) as bx:
            for i in T.Parallel(BLOCK):
                O[bx * BLOCK + i] = 1.0 if -0.5 < X[bx * BLOCK + i] <= 0.5 else 0.0

    x = _normal(4)
    got, _ = _launch(band, x)
    xn = np.asarray(x)
    np.testing.assert_allclose(got, ((xn > -0.5) & (xn <= 0.5)).astype(np.float32))


# ----------------------------------------------------------------------------- alloc_var


def test_assignments_store_into_alloc_var():
    def running(X, O):
        (n,) = X.shape
        with T.Kernel(1, threads=BLOCK):
            total = T.alloc_var("float32")
            count = T.alloc_var("int32", 0)
            total = 0.0
            for k in T.serial(n):
                total = total + X[k]        # stores: total is a T.alloc_var
                count += 1
                if X[k] < 0:
                    count -= 2
            O[0] = total
            O[1] = T.cast(count, "float32")
            for k in T.serial(2, n):
                O[k] = 0.0

    x = _normal(5, (64,))
    got, source = _launch(running, x)
    xn = np.asarray(x)
    assert source.count("total_var =") >= 2
    np.testing.assert_allclose(got[0], xn.sum(), rtol=1e-5)
    assert got[1] == 64 - 2 * np.sum(xn < 0)


def test_rebinding_an_alloc_var_name_to_a_buffer_rebinds_it():
    seen = {}

    def rebind(X, O):
        with T.Kernel(1, threads=BLOCK):
            a = T.alloc_var("float32", 1.0)
            first = a
            a = T.alloc_var("float32", 2.0)   # a new variable, as in TileLang
            seen["distinct"] = first is not a
            b = T.alloc_var("float32")
            b = a                             # read by name: b[0] = a[0]
            seen["b_is_var"] = b is not a
            p, q = 3, 4                        # plain Python names stay Python
            seen["pq"] = (p, q)
            O[0] = b
            O[1] = first

    kernel = trace1(rebind)
    assert seen == {"distinct": True, "b_is_var": True, "pq": (3, 4)}
    stores = [s for s in kernel.body if isinstance(s, ir.Store)]
    assert stores[0].buffer.name.startswith("b") and isinstance(stores[0].value, ir.Load)


def test_augmented_assignment_of_a_whole_tile_is_refused():
    def tile_add(X, O):
        with T.Kernel(1, threads=BLOCK):
            s = T.alloc_shared((64,), "float32")
            s += 1.0
            T.copy(s, O)

    with pytest.raises(jtile.JtileTraceError, match=r"s add= .*update elements"):
        trace1(tile_add)


# ----------------------------------------------------------------------------- while


def test_while_on_a_traced_condition_runs_on_the_device():
    def prefix_until_big(X, O):
        (n,) = X.shape
        with T.Kernel(1, threads=BLOCK):
            k = T.alloc_var("int32", 0)
            acc = T.alloc_var("float32", 0.0)
            while k < n and X[k] < 1.5:
                acc += X[k]
                k = k + 1
            for i in T.Parallel(n):
                O[i] = acc + T.cast(k, "float32") * 1000.0

    x = _normal(6, (64,))
    got, source = _launch(prefix_until_big, x)
    xn = np.asarray(x)
    stop = next((i for i, v in enumerate(xn) if v >= 1.5), len(xn))
    np.testing.assert_allclose(got, np.full(64, xn[:stop].sum() + stop * 1000.0), rtol=1e-5)
    assert "while (" in source


def test_while_inside_parallel_runs_each_iteration_to_its_own_end():
    def collatz_steps(X, O):
        (n,) = X.shape
        with T.Kernel(1, threads=BLOCK):
            for i in T.Parallel(n):
                O[i] = X[i]
                while O[i] > 1:
                    O[i] = T.if_then_else(O[i] % 2 == 0, O[i] // 2, 3 * O[i] + 1) + 1000 * 0
                    O[i] = O[i]
            for i in T.Parallel(n):
                O[i] = O[i] + X[i]

    x = jnp.asarray(np.random.default_rng(7).integers(1, 50, size=64), jnp.int32)
    got, source = _launch(collatz_steps, x)
    np.testing.assert_array_equal(got, np.asarray(x) + 1)
    assert "while (" in source


def test_while_counting_in_a_var_per_parallel_element():
    def steps(X, O):
        (n,) = X.shape
        with T.Kernel(1, threads=BLOCK):
            v = T.alloc_local((n,), "int32")
            c = T.alloc_local((n,), "int32")
            for i in T.Parallel(n):
                v[i] = X[i]
                c[i] = 0
                while v[i] != 1:
                    v[i] = T.if_then_else(v[i] % 2 == 0, v[i] // 2, 3 * v[i] + 1)
                    c[i] = c[i] + 1
                O[i] = c[i]

    def reference(v):
        count = 0
        while v != 1:
            v = v // 2 if v % 2 == 0 else 3 * v + 1
            count += 1
        return count

    values = np.random.default_rng(8).integers(1, 60, size=32)
    got, _ = _launch(steps, jnp.asarray(values, jnp.int32))
    np.testing.assert_array_equal(got, [reference(int(v)) for v in values])


def test_while_on_static_values_is_a_python_loop():
    def unrolled(X, O):
        with T.Kernel(1, threads=BLOCK):
            k = 0
            while k < 3:
                O[k] = X[k] * 2
                k += 1
            else:
                O[3] = 0.0
            for i in T.serial(4, 64):
                O[i] = X[i]

    kernel = trace1(unrolled)
    assert not _statements(kernel, ir.While)
    x = _normal(9, (64,))
    got, _ = _launch(unrolled, x)
    want = np.asarray(x).copy()
    want[:3] *= 2
    want[3] = 0
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_explicit_t_while_matches_python_while():
    def explicit(X, O):
        with T.Kernel(1, threads=BLOCK):
            k = T.alloc_var("int32", 0)
            with T.While(k < 8):
                O[k] = X[k] + 1.0
                k[0] = k + 1
            for i in T.serial(8, 64):
                O[i] = X[i]

    x = _normal(10, (64,))
    kernel = trace1(explicit)
    assert len(_statements(kernel, ir.While)) == 1
    got, _ = _launch(explicit, x)
    want = np.asarray(x).copy()
    want[:8] += 1
    np.testing.assert_allclose(got, want, rtol=1e-6)


# ----------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("exit_kind", ["return"])
def test_leaving_a_traced_if_early_is_refused_by_name(exit_kind):
    """(`break` and `continue` of a `for` loop work there: tests/trace/test_loop_exits.py.)"""
    def leaves(X, O):
        with T.Kernel(1, threads=BLOCK) as bx:
            for k in T.serial(4):
                if X[k] > 0:
                    if exit_kind == "break":
                        break
                    elif exit_kind == "continue":
                        continue
                    else:
                        return
                O[k] = X[k]

    with pytest.raises(jtile.JtileTraceError) as info:
        trace1(leaves)
    message = str(info.value)
    assert re.search(rf"`{exit_kind}` at test_python_control_flow.py:\d+ would leave an `if`",
                     message), message
    assert message.startswith("leaves (test_python_control_flow.py:")


@pytest.mark.parametrize("exit_kind", ["return"])
def test_leaving_a_traced_while_early_is_refused_by_name(exit_kind):
    """(`break` and `continue` work there: tests/trace/test_loop_exits.py.)"""
    def leaves(X, O):
        with T.Kernel(1, threads=BLOCK):
            k = T.alloc_var("int32", 0)
            while k < 4:
                k += 1
                if exit_kind == "break":
                    break
                elif exit_kind == "continue":
                    continue
                elif exit_kind == "return":
                    return
            T.copy(X, O)

    with pytest.raises(jtile.JtileTraceError,
                       match=rf"`{exit_kind}` at test_python_control_flow.py:\d+ would leave "
                             r"(a `while` loop|an `if`) on a traced condition"):
        trace1(leaves)


def test_while_else_on_a_traced_condition_is_refused():
    def with_else(X, O):
        with T.Kernel(1, threads=BLOCK):
            k = T.alloc_var("int32", 0)
            while k < 4:
                k += 1
            else:
                T.copy(X, O)

    with pytest.raises(jtile.JtileTraceError, match=r"`while \.\.\. else` on a traced condition"):
        trace1(with_else)


def test_a_static_while_whose_condition_becomes_traced_is_refused():
    def drifting(X, O):
        with T.Kernel(1, threads=BLOCK) as bx:
            k = 0
            while k < 2:
                k = k + bx
            T.copy(X, O)

    with pytest.raises(jtile.JtileTraceError, match=r"became a traced value after 1 iterations"):
        trace1(drifting)


def test_assert_on_a_traced_value_is_refused_and_static_assert_runs():
    def asserting(X, O):
        assert X.shape[0] == 64, "static asserts run"
        with T.Kernel(1, threads=BLOCK) as bx:
            assert bx < 4
            T.copy(X, O)

    with pytest.raises(jtile.JtileTraceError, match=r"`assert` on a traced value"):
        trace1(asserting)
    with pytest.raises(AssertionError, match="static asserts run"):
        trace1(asserting, shape=(32,))


def test_a_buffer_as_a_condition_is_refused():
    def tile_condition(X, O):
        with T.Kernel(1, threads=BLOCK):
            s = T.alloc_shared((64,), "float32")
            if s:
                T.copy(X, O)

    with pytest.raises(jtile.JtileTraceError, match=r"s \(shared.dyn float32 \(64,\)\) was used "
                                                    r"as a condition"):
        trace1(tile_condition)


# ----------------------------------------------------------------------------- string annotations


def _negate_factory(n, dtype="float32"):
    @T.prim_func
    def negate(X: T.Tensor((n,), dtype), Y: T.Tensor((n,), dtype)):
        with T.Kernel(1, threads=BLOCK):
            for i in T.Parallel(n):
                Y[i] = -X[i] if dtype == "float32" else X[i]

    return negate


def test_factory_annotations_under_postponed_evaluation():
    # This module has `from __future__ import annotations`: the annotations are strings that
    # name the factory's locals; they evaluate in the kernel's closure.
    x = _normal(11, (64,))
    f = jtile.pallas_like(_negate_factory(64), interpret=True)
    np.testing.assert_allclose(f(x), -np.asarray(x))
    with pytest.raises(jtile.JtileShapeError, match=r"`X` has shape \(32,\)"):
        f(_normal(12, (32,)))


def test_while_whose_condition_reads_shared_memory_gets_a_barrier_each_iteration():
    def shared_counter(X, O):
        with T.Kernel(1, threads=BLOCK):
            step = T.alloc_shared((1,), "int32")
            step[0] = 0
            acc = T.alloc_var("float32", 0.0)
            while step[0] < 3:
                acc += X[step[0]]
                step[0] = step[0] + 1
            for i in T.Parallel(64):
                O[i] = acc

    x = _normal(13, (64,))
    got, source = _launch(shared_counter, x)
    np.testing.assert_allclose(got, np.full(64, np.asarray(x)[:3].sum()), rtol=1e-6)
    loop = source[source.index("while ("):]
    loop = loop[:loop.index("\n  }\n")]
    # The write of step_smem must be made visible before the condition reads it again.
    assert loop.rstrip().endswith("__syncthreads();"), loop
