"""Fragments read broadcast across T.Parallel: interpret mode and the compiler accept the same
programs. Each kernel runs in interpret mode against numpy, compiles to an sm_80 cubin, and
every fragment access of every T.Parallel loop is checked, for every thread and register of the
loop's layout, to name the element the iteration reads (the generated C index expressions are
evaluated in Python). Programs no layout can run are refused by `verify`, so interpret mode
refuses them too, with the file:line of the access."""

import numpy as np
import pytest

import jtile
import jtile.language as T
from jtile.codegen.cuda import ParallelContext
from jtile.codegen.parallel import fragment_register
from jtile.compiler.target import parse_target
from jtile.ir import nodes as ir
from jtile.ir.types import as_dtype
from jtile.passes import run_passes
from jtile.passes.fragment_access import UNIFORM, fragment_accesses
from jtile.passes.infer_layouts import loop_layout
from jtile.passes.layout import MmaTiling
from jtile.trace.trace_kernel import trace
from tests.codegen.test_codegen_units import c_eval
from tests.passes.fragment_broadcast_cases import CASES, launcher, random_inputs

SM80 = parse_target("sm_80")


def _planned(name):
    kernel, specs, out, _, _ = CASES[name]
    traced = trace(kernel, [(s.shape, as_dtype(s.dtype)) for s in specs],
                   [(out.shape, as_dtype(out.dtype))])
    return run_passes(traced, SM80)


@pytest.mark.parametrize("name", sorted(CASES))
def test_interpret_matches_numpy(name):
    _, specs, _, reference, tol = CASES[name]
    args = random_inputs(specs, seed=len(name))
    out = np.asarray(launcher(name, True)(*args), np.float64)
    expected = reference(*[a.astype(np.float64) for a in args])
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, expected, rtol=tol, atol=tol * np.max(np.abs(expected)))


@pytest.mark.parametrize("name", sorted(CASES))
def test_compiles_for_sm80(name):
    _, specs, _, _, _ = CASES[name]
    compiled = launcher(name, False).lower(*specs, target="sm_80").compile()
    assert len(compiled.cubin) > 1000


def _uniform_value(e):
    """Uniform indices of these kernels are constants or `k + c` of a serial counter k."""
    if isinstance(e, ir.Const):
        return int(e.value)
    return None


class _Emitter:
    def __init__(self, kernel, layouts, ctx, k):
        self.kernel, self.layouts, self.parallel, self.k = kernel, layouts, ctx, k

    def expr(self, e):
        if isinstance(e, ir.Const):
            return str(int(e.value))
        if isinstance(e, ir.Var):
            return str(self.k)
        if isinstance(e, ir.BinOp) and e.op == "add":
            return f"({self.expr(e.a)} + {self.expr(e.b)})"
        raise AssertionError(f"unexpected uniform index {e!r}")


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_iteration_finds_its_fragment_elements_in_its_own_registers(name):
    kernel = _planned(name)
    layouts = kernel.attrs["layouts"]
    checked = 0
    # The loop variables come from the loop layout (index_expr is checked against
    # logical_index in test_codegen_units); the registers come from the generated C.
    for loop in ir_loops(kernel):
        layout = loop_layout(loop, layouts)
        accesses = fragment_accesses(loop)
        if layout is None:
            assert all(d is UNIFORM for _, dims, _ in accesses for d in dims)
            continue
        reg = "reg"
        ctx = ParallelContext(loop, layout, reg)
        for k in (0, 2):                             # a serial counter's value, if any
            em = _Emitter(kernel, layouts, ctx, k)
            for buf, dims, stmt in accesses:
                indices = _indices_of(stmt, buf)
                for idx in indices:
                    register = fragment_register(em, buf, idx)
                    regs = [c_eval(register, reg=r) for r in range(layout.num_registers)]
                    uniform = [c_eval(em.expr(i)) if d is UNIFORM else None
                               for d, i in zip(dims, idx)]
                    for tid in range(kernel.threads):
                        for r in range(layout.num_registers):
                            it = layout.logical_index(tid, r)
                            want = tuple(it[d] if d is not UNIFORM else u
                                         for d, u in zip(dims, uniform))
                            got = layouts[buf].logical_index(tid, regs[r])
                            assert got == want, (buf.name, tid, r)
                            checked += 1
    assert checked > 0


def ir_loops(kernel):
    from jtile.ir.walk import statements

    return [s for s in statements(kernel.body) if isinstance(s, ir.ParallelFor)]


def _indices_of(stmt, buf):
    from jtile.ir.walk import loads

    out = [ld.indices for ld in loads(stmt) if ld.buffer is buf]
    if isinstance(stmt, ir.Store) and stmt.buffer is buf:
        out.append(stmt.indices)
    return out


def test_mla_accumulators_share_one_warp_grid():
    kernel = _planned("mla_decode")
    tilings = {g.c.buffer.name: t for g, t in kernel.attrs["mma"].items()}
    assert isinstance(tilings["acc_s"], MmaTiling) and isinstance(tilings["acc_o"], MmaTiling)
    assert (tilings["acc_s"].wm, tilings["acc_s"].wn) == (tilings["acc_o"].wm, tilings["acc_o"].wn)
    layouts = {b.name: l for b, l in kernel.attrs["layouts"].items()}
    rows = layouts["acc_o"].project((0,))
    for vec in ("m", "m_prev", "alpha", "l", "l_blk"):
        assert layouts[vec].thread_bits == rows.thread_bits
    assert layouts["acc_s"].project((0,)).thread_bits == rows.thread_bits


def test_a_scalar_fragment_is_held_by_every_thread():
    layouts = {b.name: l for b, l in _planned("scalar_fragment").attrs["layouts"].items()}
    assert all(b is None for b in layouts["s"].thread_bits)


# ----------------------------------------------------------------------------- refusals


def _both_refuse(kernel, specs, out, match):
    import jax

    x = [np.ones(s, np.float32) for s in specs]
    for interpret in (True, False):
        f = jtile.pallas_like(kernel, out_shape=jax.ShapeDtypeStruct(out, np.float32),
                              interpret=interpret)
        with pytest.raises(jtile.JtileError, match=match):
            if interpret:
                f(*x)
            else:
                f.lower(*[jax.ShapeDtypeStruct(s, np.float32) for s in specs],
                        target="sm_80")


def test_per_thread_fragment_store_outside_parallel_is_refused_with_its_line():
    # Outside T.Parallel every thread holds the whole fragment (tests/passes/
    # test_fragment_replication.py); copies that differ between threads have no meaning.
    def outside(X, O):
        with T.Kernel(1, threads=128):
            x = T.alloc_fragment((64,), "float32")
            T.copy(X, x)
            x[3] = T.cast(T.get_thread_binding(), "float32")
            T.copy(x, O)

    _both_refuse(outside, [(64,)], (64,), r"^outside \(test_fragment_broadcasts.py:\d+\): "
                 r"test_fragment_broadcasts.py:\d+: fragment x \(local.fragment float32 \(64,\)\) "
                 r"is stored to outside T.Parallel at an index or with a value that differs")


def test_one_element_fragment_is_named_outside_parallel_as_in_tilelang():
    import jax

    def running_total(X, O):
        with T.Kernel(1, threads=128):
            x = T.alloc_fragment((64,), "float32")
            part = T.alloc_fragment((1,), "float32")
            total = T.alloc_fragment((1,), "float32")
            T.fill(total, 1.0)
            for k in T.serial(2):
                T.copy(X[k * 64:(k + 1) * 64], x)
                T.reduce_sum(x, part, dim=0)
                total[0] = total[0] * 2.0 + part[0]   # every thread updates its own copy
            O[0] = total[0]

    x = np.random.default_rng(7).standard_normal(128).astype(np.float32)
    f = jtile.pallas_like(running_total, out_shape=jax.ShapeDtypeStruct((1,), np.float32),
                          interpret=True)
    want = (1.0 * 2.0 + x[:64].sum()) * 2.0 + x[64:].sum()
    np.testing.assert_allclose(np.asarray(f(x)), [want], rtol=1e-5)
    source = f.lower(jax.ShapeDtypeStruct((128,), np.float32), target="sm_80").cuda_source()
    assert "total_frag[0] = ((total_frag[0] * 2.0f) + part_frag[0]);" in source
    f.lower(jax.ShapeDtypeStruct((128,), np.float32), target="sm_80").compile()


def test_mixed_fragment_index_is_refused_by_both():
    def shifted(X, O):
        with T.Kernel(1, threads=128):
            x = T.alloc_fragment((64,), "float32")
            T.copy(X, x)
            for i in T.Parallel(63):
                O[i] = x[i + 1]

    _both_refuse(shifted, [(64,)], (64,), r"test_fragment_broadcasts.py:\d+: fragment x .* in "
                 r"T.Parallel\(63,\): each index must be one of the loop variables")


def test_nested_parallel_is_refused_by_both():
    def nested(X, O):
        with T.Kernel(1, threads=128):
            for i in T.Parallel(8):
                for j in T.Parallel(8):
                    O[i, j] = X[i, j]

    _both_refuse(nested, [(8, 8)], (8, 8), r"T.Parallel loops cannot be nested")


def test_uniform_index_along_a_dimension_spread_by_a_gemm_is_refused_clearly():
    def first_column(A, B, O):
        with T.Kernel(1, threads=128):
            a = T.alloc_shared((64, 32), "float16")
            b = T.alloc_shared((32, 64), "float16")
            acc = T.alloc_fragment((64, 64), "float32")
            T.copy(A, a)
            T.copy(B, b)
            T.gemm(a, b, acc, clear_accum=True)
            for i in T.Parallel(64):
                O[i, 0] = acc[i, 0]

    f = jtile.pallas_like(first_column, out_shape=jax_struct((64, 64)))
    with pytest.raises(jtile.JtileTraceError, match=r"T.Parallel\(64,\) touches fragments \(acc\) "
                       r"but no layout puts the elements each iteration touches in one thread"):
        f.lower(jax_struct((64, 32), np.float16), jax_struct((32, 64), np.float16),
                target="sm_80")


def jax_struct(shape, dtype=np.float32):
    import jax

    return jax.ShapeDtypeStruct(shape, dtype)


@pytest.mark.parametrize("case, rule", [
    ("to_private", r"T.copy between fragment and thread-private buffer"),
])
def test_fragment_tile_rules_are_refused_by_both(case, rule):
    def tile_rule(X, O):
        with T.Kernel(1, threads=128):
            x = T.alloc_fragment((64,), "float32")
            T.copy(X, x)
            if case == "to_private":
                p = T.alloc_local((64,), "float32")
                T.copy(x, p)
            else:
                y = T.alloc_fragment((48,), "float32")
                T.copy(X[0:48], y)
                T.copy(y, O[0:48])
            T.copy(x, O)

    _both_refuse(tile_rule, [(64,)], (64,), r"^tile_rule \(test_fragment_broadcasts.py:\d+\): "
                 r"test_fragment_broadcasts.py:\d+: " + rule)


def test_fragment_of_48_runs_in_interpret_mode_and_compiled():
    # TileLang's layouts take any extent; jtile's compiled layout spreads the padded 64
    # elements and skips the 16 past the fragment (tests/language/test_padded_fragments.py).
    import jax

    from tests.language.kernel_runs import run_both_ways

    def odd(X, O):
        with T.Kernel(1, threads=128):
            y = T.alloc_fragment((48,), "float32")
            T.copy(X[0:48], y)
            for i in T.Parallel(48):
                y[i] = y[i] * 3
            T.copy(y, O)

    x = np.random.default_rng(0).standard_normal(64).astype(np.float32)
    (out,), cuda = run_both_ways(odd, (x,), jax.ShapeDtypeStruct((48,), np.float32), rtol=1e-6)
    np.testing.assert_allclose(out, 3 * x[:48], rtol=1e-6)
    assert "< 48" in cuda  # the copies skip the padding
