"""Fragments named outside T.Parallel (every thread holds all of them, as in TileLang) and
fragments read inside it through bit-exact index maps (`b[i, j // 2]`): each kernel runs in
interpret mode against numpy and compiles for sm_80 and sm_90a, and every fragment access of
the compiled code is checked, for every thread and register, to name the element the program
means (the generated C register expressions are evaluated in Python). Programs no layout can
run are refused by `verify`, so interpret mode refuses them too."""

import itertools

import jax
import numpy as np
import pytest

import jtile
import jtile.language as T
from jtile.codegen.cuda import ParallelContext
from jtile.codegen.parallel import fragment_register, replicated_register
from jtile.ir import nodes as ir
from jtile.ir.walk import statements
from jtile.passes.fragment_access import floating_fragments, is_replicated, loop_accesses
from jtile.passes.index_bits import ONE, ZERO, UniformBit, index_bits
from jtile.passes.infer_layouts import loop_layout
from tests.codegen.test_codegen_units import c_eval
from tests.passes.fragment_replication_cases import (CASES, check_outputs, input_specs, launcher,
                                                     random_inputs)

S = jax.ShapeDtypeStruct


@pytest.mark.parametrize("name", sorted(CASES))
def test_interpret_matches_numpy(name):
    args = random_inputs(name, seed=len(name))
    check_outputs(name, launcher(name, True)(*args), args)


@pytest.mark.parametrize("target", ["sm_80", "sm_90a"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_compiles(name, target):
    compiled = launcher(name, False).lower(*input_specs(name), target=target).compile()
    assert len(compiled.cubin) > 1000


# ----------------------------------------------------------------------------- the layouts


def _planned(name, target="sm_80"):
    return launcher(name, False).lower(*input_specs(name), target=target).kernel


def _value(e, env):
    """An integer index expression's value, with `env` giving loop variables (by identity)."""
    if isinstance(e, ir.Const):
        return int(e.value)
    if isinstance(e, ir.Var):
        return env[id(e)]
    if isinstance(e, ir.Cast):
        return _value(e.value, env)
    ops = {"add": int.__add__, "sub": int.__sub__, "mul": int.__mul__,
           "floordiv": int.__floordiv__, "mod": int.__mod__, "shl": int.__lshift__,
           "shr": int.__rshift__, "bitand": int.__and__, "bitor": int.__or__,
           "xor": int.__xor__}
    return ops[e.op](_value(e.a, env), _value(e.b, env))


class _Emitter:
    """What fragment_register reads from the CUDA emitter, rendering uniform expressions as
    their values."""

    def __init__(self, kernel, layouts, ctx, env):
        self.kernel, self.layouts, self.parallel, self.env = kernel, layouts, ctx, env

    def expr(self, e):
        return str(_value(e, self.env))

    def name(self, var):
        return "tid" if var is self.kernel.thread_var else f"v{id(var)}"


def _subexpressions(e):
    from jtile.ir.walk import sub_expressions

    return sub_expressions(e)


def _iterations(layout, loop, threads):
    """(thread, register, loop indices) of every iteration each thread runs; a strided loop
    (no layout) runs each iteration in one thread, whichever: thread 0 stands for it."""
    if layout is None:
        for it in itertools.product(*(range(e) for e in loop.extents)):
            yield 0, 0, it
        return
    for tid in range(threads):
        for r in range(layout.num_registers):
            yield tid, r, layout.logical_index(tid, r)


@pytest.mark.parametrize("name", sorted(set(CASES) - {"block_sparse_matmul",
                                                      "thread_indexed_read"}))
def test_every_iteration_finds_its_fragment_elements_in_its_own_registers(name):
    kernel = _planned(name)
    layouts = kernel.attrs["layouts"]
    checked = 0
    for loop in [s for s in statements(kernel.body) if isinstance(s, ir.ParallelFor)]:
        layout = loop_layout(loop, layouts)
        ctx = ParallelContext(loop, layout, "reg")
        for access in loop_accesses(loop):
            serial = []  # the serial counters a uniform index reads
            for index in access.indices:
                for x in _subexpressions(index):
                    if isinstance(x, ir.Var) and not any(x is v for v in loop.vars) and \
                            all(x is not s for s in serial):
                        serial.append(x)
            for values in itertools.product((0, 1), repeat=len(serial)):
                env = {id(v): value for v, value in zip(serial, values)}
                em = _Emitter(kernel, layouts, ctx, env)
                register = fragment_register(em, access.buffer, access.indices)
                held = layouts[access.buffer]
                for tid, r, it in _iterations(layout, loop, kernel.threads):
                    env.update({id(v): it[d] for d, v in enumerate(loop.vars)})
                    names = {em.name(v): it[d] for d, v in enumerate(loop.vars)}
                    want = tuple(_value(i, env) for i in access.indices)
                    got = held.logical_index(tid, c_eval(register, reg=r, tid=tid, **names))
                    assert got == want, (access.buffer.name, tid, r)
                    checked += 1
    assert checked > 0


@pytest.mark.parametrize("name", ["block_sparse_matmul", "masked_row_sum", "mask_from_parallel",
                                  "uniform_stores", "reduce_into_floating", "thread_indexed_read"])
def test_fragments_named_outside_parallel_are_whole_in_every_thread(name):
    kernel = _planned(name)
    layouts = kernel.attrs["layouts"]
    floating = floating_fragments(kernel)
    assert floating
    em = _Emitter(kernel, layouts, None, {})
    for buf in floating:
        layout = layouts[buf]
        assert is_replicated(layout)
        for index in itertools.product(*(range(d) for d in buf.shape)):
            register = c_eval(replicated_register(em, buf, tuple(ir.Const(i, ir.Var("i").dtype)
                                                                 for i in index)))
            for tid in (0, 1, 37, kernel.threads - 1):
                assert layout.logical_index(tid, register) == index


def test_packed_tile_follows_the_loop_through_the_index_map():
    # b[i, j // 2] in a loop over (64, 64): b's threads are the loop's, one bit down, so the
    # bytes each thread unpacks are its own and no thread holds a copy it does not read.
    layouts = {b.name: l for b, l in _planned("unpack_int4").attrs["layouts"].items()}
    b, c = layouts["b"], layouts["c"]
    assert b.num_registers * 2 == c.num_registers
    for t, bit in enumerate(c.thread_bits):
        if bit is not None and bit[0] == 1 and bit[1] > 0:
            assert b.thread_bits[t] == (1, bit[1] - 1)
        elif bit is not None and bit[0] == 0:
            assert b.thread_bits[t] == bit


# ----------------------------------------------------------------------------- index maps


def _bits(expr_of, extents=(16, 8), n=6):
    i, j = ir.Var("i"), ir.Var("j")
    k = ir.Var("k")
    bits = index_bits(expr_of(i, j, k), (i, j), extents)
    if bits is None:
        return None
    def show(s):
        if s in (ZERO, ONE):
            return s
        if isinstance(s, UniformBit):
            return f"u{s.bit}"
        return f"{'ij'[s[0]]}{s[1]}"

    return " ".join(show(s) for s in bits[:n])


@pytest.mark.parametrize("expr_of, bits", [
    (lambda i, j, k: j // 2, "j1 j2 0 0 0 0"),
    (lambda i, j, k: j >> 1, "j1 j2 0 0 0 0"),
    (lambda i, j, k: j % 4, "j0 j1 0 0 0 0"),
    (lambda i, j, k: j & 5, "j0 0 j2 0 0 0"),
    (lambda i, j, k: 2 * j + 1, "1 j0 j1 j2 0 0"),
    (lambda i, j, k: j * 4, "0 0 j0 j1 j2 0"),
    (lambda i, j, k: (j << 1) | 1, "1 j0 j1 j2 0 0"),
    (lambda i, j, k: i * 8 + j, "j0 j1 j2 i0 i1 i2"),
    (lambda i, j, k: k * 8 + j, "j0 j1 j2 u0 u1 u2"),
    (lambda i, j, k: ((j & 3) << 3) | (j >> 2), "j2 0 0 j0 j1 0"),
    (lambda i, j, k: i + 1, None),        # carries
    (lambda i, j, k: 3 * j, None),
    (lambda i, j, k: i + j, None),
    (lambda i, j, k: j // 3, None),
    (lambda i, j, k: k + j, None),        # k's low bits may be set
    (lambda i, j, k: i * 4 + j, None),    # j reaches 4 and beyond
])
def test_index_bits(expr_of, bits):
    assert _bits(expr_of) == bits


def test_the_thread_index_is_no_bit_map():
    j, tx = ir.Var("j"), ir.Var("tx", kind=ir.VarKind.THREAD)
    assert index_bits(j + tx * 8, (j,), (8,)) is None


# ----------------------------------------------------------------------------- refusals


def _both_refuse(kernel, specs, match, out=(64,)):
    for interpret in (True, False):
        f = jtile.pallas_like(kernel, out_shape=S(out, np.float32), interpret=interpret)
        with pytest.raises(jtile.JtileError, match=match):
            if interpret:
                f(*[np.ones(s.shape, s.dtype) for s in specs])
            else:
                f.lower(*specs, target="sm_80")


def test_fragment_store_outside_parallel_under_a_per_thread_condition_is_refused():
    def divergent(X, O):
        with T.Kernel(1, threads=128):
            x = T.alloc_fragment((64,), "float32")
            T.copy(X, x)
            if T.get_thread_binding() < 32:
                x[3] = 1.0
            T.copy(x, O)

    _both_refuse(divergent, [S((64,), np.float32)],
                 r"^divergent \(test_fragment_replication.py:\d+\): test_fragment_replication.py:"
                 r"\d+: a store into fragment x \(local.fragment float32 \(64,\)\) outside "
                 r"T.Parallel, under the condition of T.If at test_fragment_replication.py:\d+")


def test_gemm_accumulator_named_outside_parallel_is_refused():
    def first_element(A, B, O):
        with T.Kernel(1, threads=128):
            a = T.alloc_shared((64, 32), "float16")
            b = T.alloc_shared((32, 64), "float16")
            acc = T.alloc_fragment((64, 64), "float32")
            T.copy(A, a)
            T.copy(B, b)
            T.gemm(a, b, acc, clear_accum=True)
            if acc[0, 0] > 0:
                T.copy(acc, O)

    specs = [S((64, 32), np.float16), S((32, 64), np.float16)]
    _both_refuse(first_element, specs,
                 r"T.gemm accumulator C acc \(local.fragment float32 \(64, 64\)\) is also named "
                 r"element by element outside T.Parallel \(at test_fragment_replication.py:\d+\)",
                 out=(64, 64))


def test_a_floating_fragment_filled_from_a_spread_accumulator_is_refused_clearly():
    # Every thread holds all of w, but each holds only its part of the accumulator.
    def gated(A, B, O):
        with T.Kernel(1, threads=128):
            a = T.alloc_shared((64, 32), "float16")
            b = T.alloc_shared((32, 64), "float16")
            acc = T.alloc_fragment((64, 64), "float32")
            w = T.alloc_fragment((64, 64), "float32")
            T.copy(A, a)
            T.copy(B, b)
            T.gemm(a, b, acc, clear_accum=True)
            for i, j in T.Parallel(64, 64):
                w[i, j] = acc[i, j]
            if w[0, 0] > 0:
                T.copy(acc, O)

    f = jtile.pallas_like(gated, out_shape=S((64, 64), np.float32))
    with pytest.raises(jtile.JtileTraceError, match=r"T.Parallel\(64, 64\) \(at test_fragment_"
                       r"replication.py:\d+\) stores into fragment w .* which is named element by "
                       r"element outside T.Parallel, .* but it also touches acc"):
        f.lower(S((64, 32), np.float16), S((32, 64), np.float16), target="sm_80")


def test_reduction_of_a_gemm_accumulator_into_a_floating_vector_is_refused_clearly():
    def row_max_flag(A, B, O):
        with T.Kernel(1, threads=128):
            a = T.alloc_shared((64, 32), "float16")
            b = T.alloc_shared((32, 64), "float16")
            acc = T.alloc_fragment((64, 64), "float32")
            mx = T.alloc_fragment((64,), "float32")
            T.copy(A, a)
            T.copy(B, b)
            T.gemm(a, b, acc, clear_accum=True)
            T.reduce_max(acc, mx, dim=1)
            for r in T.serial(64):
                if mx[r] > 0:
                    O[r] = 1.0
                else:
                    O[r] = 0.0

    f = jtile.pallas_like(row_max_flag, out_shape=S((64,), np.float32))
    with pytest.raises(jtile.JtileTraceError, match=r"T.reduce_max into mx .* named element by "
                       r"element outside T.Parallel .* so every thread must hold all of it"):
        f.lower(S((64, 32), np.float16), S((32, 64), np.float16), target="sm_80")


# ----------------------------------------------------------------------------- gemm operands


@pytest.mark.parametrize("m, n, k, wm, wn", [(16, 8, 16, 1, 1), (64, 64, 32, 4, 1),
                                             (64, 64, 64, 2, 2), (64, 128, 32, 1, 4),
                                             (128, 64, 16, 2, 4)])
@pytest.mark.parametrize("transposed", [False, True])
def test_operand_b_layout_is_ptxs_m16n8k16_table(m, n, k, wm, wn, transposed):
    # PTX ISA, mma.m16n8k16 B fragment: b0,b1 at (k = 2q + {0,1}, n = g), b2,b3 at k + 8,
    # g = lane / 4, q = lane % 4; the emitter reads register e + 4 * (kk + kt * ni).
    from jtile.passes.layout import MmaTiling

    tiling = MmaTiling(m, n, wm, wn)
    layout = tiling.operand_b_layout(32 * wm * wn, k, transposed)
    assert layout.shape == ((n, k) if transposed else (k, n))
    for tid in range(32 * wm * wn):
        lane, warp_n = tid % 32, (tid // 32) // wm
        g, q = lane // 4, lane % 4
        for kk in range(k // 16):
            for ni in range(tiling.nt):
                for e in range(4):
                    want_k = kk * 16 + 2 * q + (e & 1) + 8 * (e >> 1)
                    want_n = warp_n * tiling.nt * 8 + ni * 8 + g
                    got = layout.logical_index(tid, e + 4 * (kk + (k // 16) * ni))
                    assert got == ((want_n, want_k) if transposed else (want_k, want_n))


@pytest.mark.parametrize("name", ["gemm_sr_f32", "gemm_rr_f32_bt"])
def test_fma_gemm_finds_its_operand_rows_and_columns_in_its_own_registers(name):
    from jtile.codegen.gemm import _register_of

    kernel = _planned(name)
    layouts = kernel.attrs["layouts"]
    gemm = next(s.tile for s in statements(kernel.body) if hasattr(s, "tile") and
                isinstance(s.tile, ir.Gemm))
    c = layouts[gemm.c.buffer]
    k = gemm.a.buffer.shape[1]
    for region, index in ((gemm.a, ("i", "kk")),
                          (gemm.b, ("j", "kk") if gemm.transpose_b else ("kk", "j"))):
        if region.buffer.space.value != "local.fragment":
            continue
        held = layouts[region.buffer]
        register = _register_of(held, list(index))
        for tid in range(kernel.threads):
            for r in range(c.num_registers):
                i, j = c.logical_index(tid, r)
                for kk in range(k):
                    values = dict(i=i, j=j, kk=kk)
                    want = tuple(values[x] for x in index)
                    assert held.logical_index(tid, c_eval(register, **values)) == want


def test_a_gemm_with_b_in_registers_runs_on_mma_sync_on_sm90a_and_says_so():
    from jtile.errors import JtilePerformanceWarning
    from jtile.ir import lowered as low

    def two_gemms(A, B, C, D):
        with T.Kernel(1, threads=128):
            a = T.alloc_shared((64, 32), "float16")
            b = T.alloc_shared((32, 64), "float16")
            bf = T.alloc_fragment((32, 64), "float16")
            c = T.alloc_fragment((64, 64), "float32")
            d = T.alloc_fragment((64, 64), "float32")
            T.copy(A, a)
            T.copy(B, b)
            T.copy(b, bf)
            T.gemm(a, b, c, clear_accum=True)
            T.gemm(a, bf, d, clear_accum=True)
            T.copy(c, C)
            T.copy(d, D)

    f = jtile.pallas_like(two_gemms, out_shape=(S((64, 64), np.float32), S((64, 64), np.float32)))
    with pytest.warns(JtilePerformanceWarning, match=r"B in shared memory"):
        lowered = f.lower(S((64, 32), np.float16), S((32, 64), np.float16), target="sm_90a")
    kinds = {type(s) for s in statements(lowered.kernel.body)}
    assert low.MmaSyncGemm in kinds and low.WgmmaGemm not in kinds
    lowered.compile()


@pytest.mark.parametrize("case, rule", [
    ("fp8", r"T.gemm with a fragment B on float8_e4m3 inputs: 8-bit gemms run on wgmma, which "
            r"reads B from shared memory"),
    ("part", r"T.gemm on the tile \(32, 32\) of the fragment B b \(local.fragment float16 "
             r"\(32, 64\)\); a fragment operand is a whole 2-D fragment"),
])
def test_fragment_gemm_operands_no_instruction_reads_are_refused_by_both(case, rule):
    dtype = "float8_e4m3" if case == "fp8" else "float16"

    def operand(A, B, O):
        with T.Kernel(1, threads=128):
            a = T.alloc_shared((64, 32), dtype)
            b = T.alloc_fragment((32, 64), dtype)
            c = T.alloc_fragment((64, 32 if case == "part" else 64), "float32")
            T.copy(A, a)
            T.copy(B, b)
            T.gemm(a, b[0:32, 0:32] if case == "part" else b, c, clear_accum=True)
            T.copy(c, O[0:64, 0:32] if case == "part" else O)

    np_dtype = jax.numpy.float8_e4m3fn if case == "fp8" else np.float16
    specs = [S((64, 32), np_dtype), S((32, 64), np_dtype)]
    _both_refuse(operand, specs, rule, out=(64, 64))
