"""How TileLang's eager-jit kernels get their shapes and scalars from the arguments.

`T.const` names and `T.dynamic` symbols are bound by the evaluated in-body annotation
`A: T.Tensor(shape, dtype)` that has them as whole dimensions, however the shape reached it
(a variable, a conditional expression, an alias), and are plain ints from then on. In-body
annotated parameters the body writes are in-place parameters under input_output_aliases.
Scalar annotations (`n: T.int32`, in the body or in a `@T.prim_func` signature) make a Python
number a static value. Each kernel runs in interpret mode against NumPy; some are compiled.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
import jtile.language as T


@pytest.fixture(autouse=True)
def _no_global_switches(monkeypatch):
    for name in ("JTILE_INTERPRET", "JTILE_DEBUG", "JTILE_TARGET"):
        monkeypatch.delenv(name, raising=False)


def _normal(seed, shape):
    return np.asarray(jax.random.normal(jax.random.PRNGKey(seed), shape, jnp.float32))


def _compiles(launcher, *args):
    lowered = launcher.lower(*args, target="sm_90a")
    assert lowered.compile().cubin[:4] == b"\x7fELF"
    return lowered.cuda_source()


# ----------------------------------------------------------------------------- T.const


def scaled_copy(A, trans=False, block_M=16):
    M, N = T.const("M, N")
    A_shape = [N, M] if trans else [M, N]      # the names reach the annotation through a list
    A: T.Tensor(A_shape, T.float32)
    C = T.empty((M, N), T.float32)
    with T.Kernel(T.ceildiv(M, block_M), threads=128) as bx:
        for i, j in T.Parallel(block_M, N):
            if bx * block_M + i < M:
                if trans:
                    C[bx * block_M + i, j] = A[j, bx * block_M + i] * 2.0
                else:
                    C[bx * block_M + i, j] = A[bx * block_M + i, j] * 2.0
    return C


@pytest.mark.parametrize("trans", [False, True])
def test_const_names_bind_through_a_shape_held_in_a_variable(trans):
    a = _normal(0, (24, 40) if trans else (40, 24))
    f = jtile.pallas_like(functools.partial(scaled_copy, trans=trans), interpret=True)
    want = (a.T if trans else a) * 2.0
    np.testing.assert_allclose(np.asarray(f(a)), want, rtol=1e-6)
    _compiles(jtile.pallas_like(functools.partial(scaled_copy, trans=trans)), a)


def window_sum(X, W):
    N, K, C = T.const("N, K, C")
    X: T.Tensor((N, C), T.float32)
    KH, KW = K, K                               # K reaches the annotation through aliases
    W: T.Tensor((KH, KW, C), T.float32)
    Y = T.empty((N, C), T.float32)
    with T.Kernel(1, threads=128):
        for n, c in T.Parallel(N, C):
            acc = X[n, c]
            for kh in list(range(KH)):          # a Python loop: KH is an int by now
                for kw in list(range(KW)):
                    acc = acc + W[kh, kw, c]
            Y[n, c] = acc
    return Y


def test_const_names_bind_through_aliases_and_are_ints_afterwards():
    x, w = _normal(1, (8, 16)), _normal(2, (3, 3, 16))
    y = jtile.pallas_like(window_sum, interpret=True)(x, w)
    np.testing.assert_allclose(np.asarray(y), x + w.sum(axis=(0, 1)), rtol=1e-5, atol=1e-5)


def qk_rows(Q, K_, block=8):
    B, S, H, D = T.const("B, S, H, D")
    q_shape = [B, S, H, D]                      # built before any annotation binds the names
    out_shape = (B, S, H)
    Q: T.Tensor(q_shape, T.float32)
    K_: T.Tensor(q_shape, T.float32)
    O = T.empty(out_shape, T.float32)
    assert isinstance(D, int) and q_shape == [B, S, H, D]
    with T.Kernel(B * S, T.ceildiv(H, block), threads=64) as (bs, bh):
        acc = T.alloc_fragment((block,), T.float32)
        T.clear(acc)
        for d in T.serial(D):
            for h in T.Parallel(block):
                acc[h] = acc[h] + Q[bs // S, bs % S, bh * block + h, d] * \
                    K_[bs // S, bs % S, bh * block + h, d]
        for h in T.Parallel(block):
            O[bs // S, bs % S, bh * block + h] = acc[h]
    return O


def test_names_used_before_their_annotation_only_through_variables():
    q, k = _normal(3, (2, 5, 16, 8)), _normal(4, (2, 5, 16, 8))
    f = jtile.pallas_like(qk_rows, interpret=True)
    np.testing.assert_allclose(np.asarray(f(q, k)), (q * k).sum(-1), rtol=1e-5, atol=1e-5)
    _compiles(jtile.pallas_like(qk_rows), q, k)


def test_a_const_name_no_annotation_binds_is_refused():
    def stray(A):
        M, N = T.const("M, N")
        A: T.Tensor((M,), T.float32)
        B = T.empty((M,), T.float32)
        with T.Kernel(1, threads=32):
            for i in T.Parallel(M):
                B[i] = A[i]
        return B

    with pytest.raises(jtile.JtileTraceError,
                       match=r"^stray \(test_eager_binding.py:\d+\): T.const at "
                             r"test_eager_binding.py:\d+: N is never bound: no in-body "
                             r"annotation"):
        jtile.pallas_like(stray, interpret=True)(_normal(0, (8,)))


def test_a_const_name_read_before_its_annotation_is_refused():
    def early(A):
        M = T.const("M")
        shape = [M]
        block = 64 if M > 64 else M             # needs M's value: no annotation has run
        A: T.Tensor(shape, T.float32)
        return block

    with pytest.raises(jtile.JtileTraceError,
                       match=r"M \(T.const at test_eager_binding.py:\d+\) has no value yet.*"
                             r"annotate that argument before using M"):
        jtile.pallas_like(early, interpret=True)(_normal(0, (8,)))


def interleave(KV, Q):
    B, H = T.const("B, H")
    q_shape = (B, H)
    KV: T.Tensor((B, 2 * H), T.float32)        # H is bound by the next annotation
    Q: T.Tensor(q_shape, T.float32)
    O = T.empty((B, H), T.float32)
    with T.Kernel(1, threads=64):
        for b, h in T.Parallel(B, H):
            O[b, h] = Q[b, h] * KV[b, 2 * h] + KV[b, 2 * h + 1]
    return O


def test_a_dimension_using_a_symbol_bound_later_is_checked_when_it_is_bound():
    kv, q = _normal(22, (4, 16)), _normal(23, (4, 8))
    f = jtile.pallas_like(interleave, interpret=True)
    np.testing.assert_allclose(np.asarray(f(kv, q)), q * kv[:, 0::2] + kv[:, 1::2], rtol=1e-5,
                               atol=1e-6)
    with pytest.raises(jtile.JtileShapeError,
                       match=r"test_eager_binding.py:\d+: parameter `KV` has shape \(4, 12\) "
                             r"but is annotated T.Tensor\(\(4, \(2 \* H\)\), float32\); H = 8"):
        f(_normal(0, (4, 12)), q)


def test_a_const_name_used_only_inside_expressions_is_refused():
    def indirect(A):
        M = T.const("M")
        A: T.Tensor((M * 2, M * 3), T.float32)
        with T.Kernel(1):
            pass

    with pytest.raises(jtile.JtileTraceError,
                       match=r"parameter `A`: dimension \(M \* 2\) of .* uses M, which no "
                             r"annotation binds"):
        jtile.pallas_like(indirect, interpret=True)(_normal(0, (8, 12)))


def test_annotations_after_the_binding_are_checked():
    def pair(A, B):
        M, N = T.const("M, N")
        shape = (M, N)
        A: T.Tensor(shape, T.float32)
        B: T.Tensor(shape, T.float32)
        C = T.empty(shape, T.float32)
        with T.Kernel(1, threads=32):
            for i, j in T.Parallel(M, N):
                C[i, j] = A[i, j] - B[i, j]
        return C

    with pytest.raises(jtile.JtileShapeError,
                       match=r"parameter `B` has shape \(4, 6\) but is annotated "
                             r"T.Tensor\(\(4, 8\), float32\)"):
        jtile.pallas_like(pair, interpret=True)(_normal(0, (4, 8)), _normal(1, (4, 6)))


# ----------------------------------------------------------------------------- T.dynamic


def dynamic_double(A, block=16):
    M, N = T.dynamic("m, n")
    A: T.Tensor((M, N), T.float32)
    C = T.empty((M, N), T.float32)
    with T.Kernel(T.ceildiv(M, block), threads=128) as bx:
        for i, j in T.Parallel(block, N):
            if bx * block + i < M:
                C[bx * block + i, j] = A[bx * block + i, j] * 2.0
    return C


def test_dynamic_symbols_in_an_eager_body_are_the_bound_ints():
    f = jtile.pallas_like(dynamic_double, interpret=True)
    for seed, shape in ((5, (40, 12)), (6, (7, 20))):
        a = _normal(seed, shape)
        np.testing.assert_allclose(np.asarray(f(a)), a * 2.0, rtol=1e-6)
    assert f.trace_count == 2
    _compiles(jtile.pallas_like(dynamic_double), _normal(0, (40, 12)))


def row_sums_factory(block=8):
    rows = T.dynamic("rows")           # a factory-level symbol, bound by the body's annotation

    @T.macro
    def clear_tail(Y, start):
        for i in T.serial(rows - start):       # the macro sees the bound value too
            Y[start + i] = 0.0

    def row_sums(X):
        cols = T.const("cols")
        X: T.Tensor((rows, cols), T.float32)
        Y = T.empty((rows,), T.float32)
        with T.Kernel(1, threads=32):
            for i in T.Parallel(rows // block * block):
                Y[i] = 0.0
            for j in T.serial(cols):
                for i in T.Parallel(rows // block * block):
                    Y[i] = Y[i] + X[i, j]
            clear_tail(Y, rows // block * block)
        return Y

    return row_sums


def test_enclosing_dynamic_symbols_bound_in_the_body_reach_the_closure_and_macros():
    x = _normal(7, (21, 6))
    y = jtile.pallas_like(row_sums_factory(), interpret=True)(x)
    want = x.sum(axis=1)
    want[16:] = 0.0
    np.testing.assert_allclose(np.asarray(y), want, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- in place


def add_into(A, B, rows_step=1):
    M, N = T.const("M, N")
    A: T.Tensor((M, N), T.float32)
    B: T.Tensor((M, N), T.float32)     # written in place
    with T.Kernel(1, threads=128):
        for i, j in T.Parallel(M // rows_step, N):
            B[i * rows_step, j] = A[i * rows_step, j] + 1.0


def shifted(A):
    N = T.const("N")
    A: T.Tensor((N,), T.float32)
    B = T.empty((N,), T.float32)
    with T.Kernel(1, threads=32):
        for i in T.Parallel(N):
            B[i] = A[i] + 3.0
    return B


def test_an_in_body_annotated_parameter_written_in_place_comes_back():
    a, b = _normal(8, (8, 16)), _normal(9, (8, 16))
    f = jtile.pallas_like(functools.partial(add_into, rows_step=2), interpret=True,
                          input_output_aliases={1: 0})
    want = b.copy()
    want[::2] = a[::2] + 1.0           # the rows the body does not write keep B's values
    np.testing.assert_allclose(np.asarray(f(a, b)), want, rtol=1e-6)
    source = _compiles(jtile.pallas_like(add_into, input_output_aliases={1: 0}), a, b)
    assert "B_in" in source
    # An aliased input the body only reads keeps Pallas' meaning: it seeds a T.empty output.
    g = jtile.pallas_like(shifted, interpret=True, input_output_aliases={0: 0})
    np.testing.assert_allclose(np.asarray(g(a[0])), a[0] + 3.0, rtol=1e-6)


def split_accumulate(A, C):
    N = T.const("N")
    A: T.Tensor((N,), T.float32)
    C: T.Tensor((N,), T.float32)
    with T.Kernel(2, threads=32):             # two blocks add into C
        for i in T.Parallel(N):
            T.atomic_add(C[i], A[i])


def test_atomic_adds_into_an_in_place_parameter_start_from_its_values():
    a, c = _normal(10, (64,)), _normal(11, (64,))
    f = jtile.pallas_like(split_accumulate, interpret=True, input_output_aliases={1: 0})
    np.testing.assert_allclose(np.asarray(f(a, c)), c + 2 * a, rtol=1e-5, atol=1e-6)


def copy_and_stats(X, Out, block=8):
    M, N = T.const("M, N")
    X: T.Tensor((M, N), T.float32)
    Out: T.Tensor((M, N), T.float32)
    Peak = T.empty((M,), T.float32)
    with T.Kernel(M // block, threads=128) as bx:
        tile = T.alloc_fragment((block, N), T.float32)
        peak = T.alloc_fragment((block,), T.float32)
        T.copy(X[bx * block, 0], tile)
        T.reduce_max(tile, peak, dim=1)
        T.copy(tile, Out[bx * block, 0])
        T.copy(peak, Peak[bx * block])
    return Peak


@pytest.mark.parametrize("aliases, order", [({1: 0}, ("out", "peak")),
                                            ({1: 1}, ("peak", "out"))])
def test_in_place_parameters_take_their_aliased_places_among_returned_outputs(aliases, order):
    x, out = _normal(12, (16, 32)), _normal(13, (16, 32))
    f = jtile.pallas_like(copy_and_stats, interpret=True, input_output_aliases=aliases)
    results = dict(zip(order, f(x, out)))
    np.testing.assert_allclose(np.asarray(results["out"]), x, rtol=0)
    np.testing.assert_allclose(np.asarray(results["peak"]), x.max(axis=1), rtol=0)


def test_in_place_alias_indices_past_the_outputs_are_refused():
    a, c = _normal(0, (8,)), _normal(1, (8,))
    with pytest.raises(jtile.JtileTraceError,
                       match=r"input_output_aliases \{1: 1\}: the body writes `C`.*with 1 "
                             r"outputs the output indices must be 0..0"):
        jtile.pallas_like(split_accumulate, interpret=True, input_output_aliases={1: 1})(a, c)


def test_in_place_with_a_matching_out_shape_runs_as_without_it():
    """As a Pallas call writes it: out_shape restating the aliased input changes nothing."""
    a, c = _normal(0, (8,)), _normal(1, (8,))
    f = jtile.pallas_like(split_accumulate, out_shape=jax.ShapeDtypeStruct((8,), jnp.float32),
                          interpret=True, input_output_aliases={1: 0})
    np.testing.assert_allclose(np.asarray(f(a, c)), c + 2 * a, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape, dtype, wrong", [((4,), jnp.float32, r"float32\[4\]"),
                                                 ((8,), jnp.float16, r"float16\[8\]")])
def test_in_place_with_a_different_out_shape_is_refused(shape, dtype, wrong):
    a, c = _normal(0, (8,)), _normal(1, (8,))
    f = jtile.pallas_like(split_accumulate, out_shape=jax.ShapeDtypeStruct(shape, dtype),
                          interpret=True, input_output_aliases={1: 0})
    with pytest.raises(jtile.JtileTraceError,
                       match=rf"out_shape\[0\] is {wrong}, but input 1 \(`C`\), which "
                             r"input_output_aliases writes in place as output 0, is "
                             r"float32\[8\]"):
        f(a, c)


# ----------------------------------------------------------------------------- scalars


def add_scaled(A, M, N, scale):
    M: T.int32
    N: T.int32
    scale: T.float32
    A: T.Tensor[[M, N], T.float32]
    C = T.empty((M, N), T.float32)
    with T.Kernel(T.ceildiv(M, 4), threads=64) as bx:
        for i, j in T.Parallel(4, N):
            if bx * 4 + i < M:
                C[bx * 4 + i, j] = A[bx * 4 + i, j] * scale + 1.0
    return C


def test_in_body_scalar_annotations_take_python_numbers_as_static_values():
    a = _normal(15, (10, 16))
    bound = jtile.pallas_like(functools.partial(add_scaled, M=10, N=16, scale=2), interpret=True)
    np.testing.assert_allclose(np.asarray(bound(a)), a * 2.0 + 1.0, rtol=1e-6)
    positional = jtile.pallas_like(add_scaled, interpret=True)
    np.testing.assert_allclose(np.asarray(positional(a, 10, 16, 0.5)), a * 0.5 + 1.0, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(positional(a, 10, 16, 3.0)), a * 3.0 + 1.0, rtol=1e-6)
    assert positional.trace_count == 2        # one trace per static value
    _compiles(jtile.pallas_like(add_scaled), a, 10, 16, 0.5)


def test_an_array_for_an_in_body_scalar_is_a_traced_scalar():
    def scale_by(A, factor):
        N = T.const("N")
        A: T.Tensor((N,), T.float32)
        factor: T.float32
        B = T.empty((N,), T.float32)
        with T.Kernel(1, threads=32):
            for i in T.Parallel(N):
                B[i] = A[i] * factor
        return B

    a = _normal(16, (32,))
    f = jtile.pallas_like(scale_by, interpret=True)
    np.testing.assert_allclose(np.asarray(f(a, jnp.float32(1.5))), a * 1.5, rtol=1e-6)
    with pytest.raises(jtile.JtileShapeError, match=r"`factor: float32`: factor is .*int32.*; "
                                                    r"pass an array of dtype float32"):
        f(a, jnp.int32(2))


def test_an_in_body_scalar_given_the_wrong_kind_of_number_is_refused():
    a = _normal(0, (10, 16))
    f = jtile.pallas_like(functools.partial(add_scaled, M=10.5, N=16, scale=1.0),
                          interpret=True)
    with pytest.raises(jtile.JtileTraceError, match=r"`M: int32` was given 10.5; the "
                                                    r"parameter takes a Python int"):
        f(a)


def scaled_rows(N, block=32):
    @T.prim_func
    def main(X: T.Tensor((N,), "float32"), n: T.int32, Y: T.Tensor((N,), "float32")):
        with T.Kernel(T.ceildiv(n, block), threads=32) as bx:
            for i in T.Parallel(block):
                if bx * block + i < n:
                    Y[bx * block + i] = X[bx * block + i] * 2.0

    return main


@T.prim_func
def shift(X: T.Tensor((32,), "float32"), s: T.float32, Y: T.Tensor((32,), "float32")):
    with T.Kernel(1, threads=32):
        for i in T.Parallel(32):
            Y[i] = X[i] + s


def test_a_python_int_for_a_scalar_prim_func_parameter_sizes_the_grid():
    x = _normal(17, (96,))
    f = jtile.pallas_like(scaled_rows(96), interpret=True)
    for n in (96, 40):
        want = np.where(np.arange(96) < n, x * 2.0, 0.0)
        got = np.asarray(f(x, n))
        np.testing.assert_allclose(got[:n], want[:n], rtol=1e-6)
    assert f.trace_count == 2
    _compiles(jtile.pallas_like(scaled_rows(96)), x, 40)
    # A Python number is static; an array for a scalar parameter stays a traced kernel input.
    x = x[:32]
    g = jtile.pallas_like(shift, interpret=True)
    np.testing.assert_allclose(np.asarray(g(x, 0.5)), x + 0.5, rtol=1e-6)
    for s in (0.25, -1.0):
        np.testing.assert_allclose(np.asarray(g(x, jnp.float32(s))), x + s, rtol=1e-6)
    assert g.trace_count == 2                  # 0.5, then one kernel for every array value


def test_functools_partial_binds_a_middle_parameter():
    x = _normal(18, (64,))
    f = jtile.pallas_like(functools.partial(scaled_rows(64), n=64), interpret=True)
    np.testing.assert_allclose(np.asarray(f(x)), x * 2.0, rtol=1e-6)


def accumulate(N):
    @T.prim_func
    def add_rows(X: T.Tensor((N,), "float32"), times: T.int32, Total: T.Tensor((N,), "float32")):
        with T.Kernel(1, threads=32):
            for i in T.Parallel(N):
                Total[i] = Total[i] + X[i] * times

    return add_rows


def test_aliases_count_arguments_as_the_caller_passes_them():
    x, total = _normal(20, (32,)), _normal(21, (32,))
    f = jtile.pallas_like(accumulate(32), interpret=True, input_output_aliases={2: 0})
    np.testing.assert_allclose(np.asarray(f(x, 3, total)), total + 3 * x, rtol=1e-5,
                               atol=1e-6)
    with pytest.raises(jtile.JtileTraceError, match=r"input_output_aliases names argument 1, "
                                                    r"a Python number"):
        jtile.pallas_like(accumulate(32), interpret=True,
                          input_output_aliases={1: 0})(x, 3, total)


def test_a_const_name_in_ceildiv_before_its_annotation():
    # A per-group scale's shape uses T.ceildiv(K, group) before A's annotation binds K.
    def scaled(A, S):
        M, K = T.const("M, K")
        a_shape = (M, K)
        s_shape = (M, T.ceildiv(K, 128))
        A: T.Tensor(a_shape, T.float32)
        S: T.Tensor(s_shape, T.float32)
        O = T.empty((M, K), T.float32)
        with T.Kernel(1, threads=128):
            for i, j in T.Parallel(M, K):
                O[i, j] = A[i, j] * S[i, j // 128]
        return O

    rng = np.random.default_rng(11)
    a = rng.standard_normal((4, 200)).astype(np.float32)
    s = rng.standard_normal((4, 2)).astype(np.float32)
    out = jtile.pallas_like(scaled, interpret=True)(a, s)
    np.testing.assert_allclose(np.asarray(out), a * np.repeat(s, 128, axis=1)[:, :200],
                               rtol=1e-6)
    with pytest.raises(jtile.JtileError, match=r"parameter `S` has shape \(4, 1\) but is "
                       r"annotated T.Tensor\(\(4, 2\), float32\)"):
        jtile.pallas_like(scaled, interpret=True)(a, s[:, :1])   # ceildiv(200, 128) is 2


def test_an_output_sized_by_a_symbol_a_later_annotation_binds():
    # Q's annotation has seq_len only inside an expression; W's, after T.empty, binds it.
    def indexer(Q, W):
        heads = T.const("heads")
        seq_len = T.dynamic("seq_len")
        Q: T.Tensor([seq_len * heads], T.float32)
        Out = T.empty([seq_len], T.float32)
        W: T.Tensor([seq_len, heads], T.float32)
        with T.Kernel(seq_len, threads=32) as bx:
            Out[bx] = Q[bx * heads] * W[bx, 0]
        return Out

    rng = np.random.default_rng(12)
    q = rng.standard_normal(12).astype(np.float32)
    w = rng.standard_normal((4, 3)).astype(np.float32)
    out = jtile.pallas_like(indexer, interpret=True)(q, w)
    np.testing.assert_allclose(np.asarray(out), q[::3] * w[:, 0], rtol=1e-6)

    def never_bound(Q):
        n = T.dynamic("n")
        Q: T.Tensor([n * 2], T.float32)
        Out = T.empty([n], T.float32)
        with T.Kernel(1, threads=32):
            Out[0] = Q[0]
        return Out

    with pytest.raises(jtile.JtileError, match="n \\(T.dynamic.*\\) has no value yet"):
        jtile.pallas_like(never_bound, interpret=True)(q)
