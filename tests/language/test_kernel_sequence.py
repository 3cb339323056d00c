"""Functions of several `with T.Kernel(...)` blocks and `T.alloc_global` workspaces.

Each block is its own launch, run in program order, seeing what the earlier ones wrote to
global memory; a workspace lives for the call. Checked in interpret mode against NumPy, under
jit, vmap and custom_vjp, lowered and compiled for sm_80 and sm_90a (no GPU needed), and the
refusals: on-chip values across kernels, nested kernels, writes to read-only inputs.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
import jtile.language as T
from tests.language.kernel_runs import TARGETS, has_cuda_gpu

F32 = jax.ShapeDtypeStruct


def split_kv_decode(batch, heads, seqlen, dim, num_split, block_N, dtype="float16"):
    """Flash decoding in two launches: each (batch, split) block attends to its part of the
    keys and writes a partial output and its log2-sum-exp to workspaces; the combine kernel
    weighs the partials of each (head, batch)."""
    accum = "float32"
    scale = (1.0 / dim) ** 0.5 * 1.44269504  # softmax through exp2: fold in log2(e)
    part = seqlen // num_split

    @T.prim_func
    def decode(Q: T.Tensor((batch, heads, dim), dtype), K: T.Tensor((batch, seqlen, dim), dtype),
               V: T.Tensor((batch, seqlen, dim), dtype),
               Out: T.Tensor((batch, heads, dim), accum)):
        glse = T.alloc_global((batch, heads, num_split), accum)
        partial = T.alloc_global((batch, heads, num_split, dim), accum)
        with T.Kernel(batch, num_split, threads=128) as (bid, sid):
            q_s = T.alloc_shared((heads, dim), dtype)
            k_s = T.alloc_shared((block_N, dim), dtype)
            v_s = T.alloc_shared((block_N, dim), dtype)
            p_s = T.alloc_shared((heads, block_N), dtype)
            acc_s = T.alloc_fragment((heads, block_N), accum)
            acc_o = T.alloc_fragment((heads, dim), accum)
            m = T.alloc_fragment((heads,), accum)
            m_prev = T.alloc_fragment((heads,), accum)
            lse = T.alloc_fragment((heads,), accum)
            row_sum = T.alloc_fragment((heads,), accum)
            T.copy(Q[bid, :, :], q_s)
            T.fill(acc_o, 0)
            T.fill(lse, 0)
            T.fill(m, -T.infinity(accum))
            for k in T.Pipelined(part // block_N, num_stages=2):
                start = sid * part + k * block_N
                T.copy(K[bid, start:start + block_N, :], k_s)
                T.copy(V[bid, start:start + block_N, :], v_s)
                T.clear(acc_s)
                T.gemm(q_s, k_s, acc_s, transpose_B=True, policy=T.GemmWarpPolicy.FullCol)
                T.copy(m, m_prev)
                T.reduce_max(acc_s, m, dim=1, clear=False)
                for i, j in T.Parallel(heads, block_N):
                    acc_s[i, j] = T.exp2(acc_s[i, j] * scale - m[i] * scale)
                T.reduce_sum(acc_s, row_sum, dim=1)
                for i in T.Parallel(heads):
                    lse[i] = lse[i] * T.exp2(m_prev[i] * scale - m[i] * scale) + row_sum[i]
                for i, j in T.Parallel(heads, dim):
                    acc_o[i, j] *= T.exp2(m_prev[i] * scale - m[i] * scale)
                T.copy(acc_s, p_s)
                T.gemm(p_s, v_s, acc_o, policy=T.GemmWarpPolicy.FullCol)
            for i, j in T.Parallel(heads, dim):
                acc_o[i, j] /= lse[i]
            for i in T.Parallel(heads):
                lse[i] = T.log2(lse[i]) + m[i] * scale
            T.copy(lse, glse[bid, :, sid])
            T.copy(acc_o, partial[bid, :, sid, :])
        with T.Kernel(heads, batch, threads=128) as (hid, bid):
            o = T.alloc_fragment((dim,), accum)
            lse_max = T.alloc_var(accum)
            lse_total = T.alloc_var(accum)
            weight = T.alloc_var(accum)
            T.clear(o)
            lse_max = -T.infinity(accum)
            lse_total = 0.0
            for s in T.serial(num_split):
                lse_max = T.max(lse_max, glse[bid, hid, s])
            for s in T.serial(num_split):
                lse_total += T.exp2(glse[bid, hid, s] - lse_max)
            lse_total = T.log2(lse_total) + lse_max
            for s in T.serial(num_split):
                weight = T.exp2(glse[bid, hid, s] - lse_total)
                for i in T.Parallel(dim):
                    o[i] += partial[bid, hid, s, i] * weight
            T.copy(o, Out[bid, hid, :])

    return decode


DECODE = dict(batch=2, heads=16, seqlen=256, dim=32, num_split=4, block_N=32)


def decode_inputs(seed=0, lead=()):
    rng = np.random.default_rng(seed)
    b, h, s, d = DECODE["batch"], DECODE["heads"], DECODE["seqlen"], DECODE["dim"]
    q = rng.standard_normal(lead + (b, h, d)).astype(np.float16)
    k = rng.standard_normal(lead + (b, s, d)).astype(np.float16)
    v = rng.standard_normal(lead + (b, s, d)).astype(np.float16)
    return q, k, v


def decode_reference(q, k, v):
    q, k, v = (x.astype(np.float64) for x in (q, k, v))
    s = np.einsum("...hd,...sd->...hs", q, k) / np.sqrt(q.shape[-1])
    p = np.exp(s - s.max(-1, keepdims=True))
    return np.einsum("...hs,...sd->...hd", p / p.sum(-1, keepdims=True), v)


def test_split_kv_decoding_through_workspaces():
    q, k, v = decode_inputs()
    out = jtile.pallas_like(split_kv_decode(**DECODE), interpret=True)(q, k, v)
    np.testing.assert_allclose(np.asarray(out), decode_reference(q, k, v), rtol=2e-3, atol=2e-3)


def test_split_kv_decoding_under_jit_and_vmap():
    q, k, v = decode_inputs(seed=1, lead=(2,))
    decode = jtile.pallas_like(split_kv_decode(**DECODE), interpret=True)
    out = jax.jit(jax.vmap(decode))(q, k, v)
    np.testing.assert_allclose(np.asarray(out), decode_reference(q, k, v), rtol=2e-3, atol=2e-3)


N = 64


@T.prim_func
def scale_reverse_patch(X: T.Tensor((N,), "float32"), Tmp: T.Tensor((N,), "float32"),
                        Y: T.Tensor((N,), "float32")):
    # Launch 1 writes Tmp; launch 2 reads it in another order than any block wrote it;
    # launch 3 rewrites part of Tmp from Y and must keep the rest.
    with T.Kernel(2, threads=32) as bx:
        for i in T.Parallel(32):
            Tmp[bx * 32 + i] = X[bx * 32 + i] * 2.0
    with T.Kernel(2, threads=32) as bx:
        for i in T.Parallel(32):
            Y[bx * 32 + i] = Tmp[N - 1 - (bx * 32 + i)] + 1.0
    with T.Kernel(1, threads=32) as bx:
        for i in T.Parallel(16):
            Tmp[i] = Y[i] * 0.5


def scale_reverse_patch_reference(x):
    y = 2 * x[..., ::-1] + 1
    tmp = 2 * x
    tmp[..., :16] = y[..., :16] * 0.5
    return tmp, y


def test_prim_func_out_params_across_kernels():
    x = np.random.default_rng(2).standard_normal(N).astype(np.float32)
    tmp, y = jtile.pallas_like(scale_reverse_patch, interpret=True)(x)
    want_tmp, want_y = scale_reverse_patch_reference(x)
    np.testing.assert_array_equal(np.asarray(y), want_y)
    np.testing.assert_array_equal(np.asarray(tmp), want_tmp)


def test_out_params_under_jit_vmap_and_eagerly_again():
    x = np.random.default_rng(3).standard_normal((3, N)).astype(np.float32)
    f = jtile.pallas_like(scale_reverse_patch, interpret=True)
    tmp, y = jax.jit(jax.vmap(f))(x)
    want_tmp, want_y = scale_reverse_patch_reference(x)
    np.testing.assert_array_equal(np.asarray(y), want_y)
    np.testing.assert_array_equal(np.asarray(tmp), want_tmp)
    assert f.trace_count == 1


def test_custom_vjp_through_a_sequence():
    f = jtile.pallas_like(scale_reverse_patch, interpret=True)

    @jax.custom_vjp
    def reverse_affine(x):
        return f(x)[1]

    def forward(x):
        return reverse_affine(x), None

    def backward(_, cotangent):
        return (2 * cotangent[::-1],)

    reverse_affine.defvjp(forward, backward)
    x = np.random.default_rng(4).standard_normal(N).astype(np.float32)
    weights = np.random.default_rng(5).standard_normal(N).astype(np.float32)
    grad = jax.grad(lambda x: jnp.sum(reverse_affine(x) * weights))(x)
    np.testing.assert_allclose(np.asarray(grad), 2 * weights[::-1], rtol=1e-6)


@T.prim_func
def accumulate_in_place(X: T.Tensor((N,), "float32"), Acc: T.Tensor((N,), "float32")):
    with T.Kernel(2, threads=32) as bx:
        for i in T.Parallel(32):
            Acc[bx * 32 + i] = Acc[bx * 32 + i] + X[bx * 32 + i]
    with T.Kernel(1, threads=32) as bx:
        for i in T.Parallel(32):
            Acc[i] = Acc[i] * 2.0


def test_in_place_parameter_across_kernels():
    rng = np.random.default_rng(6)
    x, acc = (rng.standard_normal(N).astype(np.float32) for _ in range(2))
    out = jtile.pallas_like(accumulate_in_place, input_output_aliases={1: 0},
                            interpret=True)(x, acc)
    want = x + acc
    want[:32] *= 2
    np.testing.assert_allclose(np.asarray(out), want, rtol=1e-6)


def add_then_scale(X, O):
    # X is aliased to O: the second kernel sees the first one's writes under O's name.
    with T.Kernel(1, threads=32):
        for i in T.Parallel(N):
            X[i] = X[i] + 1.0
    with T.Kernel(1, threads=32):
        for i in T.Parallel(N):
            O[i] = O[i] * 3.0


def test_aliased_input_written_then_output_read():
    x = np.random.default_rng(7).standard_normal(N).astype(np.float32)
    out = jtile.pallas_like(add_then_scale, out_shape=F32((N,), jnp.float32),
                            input_output_aliases={0: 0}, interpret=True)(x)
    np.testing.assert_allclose(np.asarray(out), (x + 1) * 3, rtol=1e-6)


def center_rows(X, block=32):
    n = T.const("n")
    X: T.Tensor((n,), T.float32)
    Y = T.empty((n,), T.float32)
    sums = T.alloc_global((n // block,), T.float32)
    with T.Kernel(n // block, threads=32) as bx:
        row = T.alloc_fragment((block,), T.float32)
        total = T.alloc_fragment((1,), T.float32)
        T.copy(X[bx * block:(bx + 1) * block], row)
        T.reduce_sum(row, total, dim=0)
        sums[bx] = total[0]
    with T.Kernel(n // block, threads=32) as bx:
        for i in T.Parallel(block):
            Y[bx * block + i] = X[bx * block + i] - sums[bx] / block
    return Y


def test_eager_style_with_a_workspace():
    x = np.random.default_rng(8).standard_normal(4 * 32).astype(np.float32)
    y = jtile.pallas_like(center_rows, interpret=True)(x)
    want = x - np.repeat(x.reshape(-1, 32).mean(1), 32)
    np.testing.assert_allclose(np.asarray(y), want, rtol=1e-5, atol=1e-6)


def staged_double(X, O):
    # One kernel and a workspace (TileLang's T.alloc_global in a single-launch function).
    staged = T.alloc_buffer((N,), "float32", scope="global")
    for i in T.Parallel(N):
        staged[i] = X[i] * 2.0
    for i in T.Parallel(N):
        O[i] = staged[i] + 1.0


def test_single_kernel_with_a_workspace():
    x = np.random.default_rng(9).standard_normal(N).astype(np.float32)
    launch = dict(out_shape=F32((N,), jnp.float32), grid=(1,), threads=64)
    out = jtile.pallas_like(staged_double, interpret=True, **launch)(x)
    np.testing.assert_allclose(np.asarray(out), 2 * x + 1, rtol=1e-6)
    lowered = jtile.pallas_like(staged_double, **launch).lower(x, target="sm_80")
    assert lowered.kernel_name == "staged_double" and len(lowered.launches) == 1
    assert lowered.compile().cubin[:4] == b"\x7fELF"


@T.prim_func
def transpose_through_a_view(X: T.Tensor((N,), "float32"), Y: T.Tensor((8, 8), "float32")):
    staged = T.alloc_global((N,), "float32")
    grid = T.view(staged, (8, 8))   # made outside the kernels, used by the second one
    with T.Kernel(1, threads=32):
        for i in T.Parallel(N):
            staged[i] = X[i] * 2.0
    with T.Kernel(1, threads=32):
        flat = T.view(Y, (N,))
        for i, j in T.Parallel(8, 8):
            flat[i * 8 + j] = grid[j, i] + 1.0


def test_views_of_a_workspace_across_kernels():
    x = np.random.default_rng(10).standard_normal(N).astype(np.float32)
    y = jtile.pallas_like(transpose_through_a_view, interpret=True)(x)
    np.testing.assert_allclose(np.asarray(y), (2 * x + 1).reshape(8, 8).T, rtol=1e-6)
    lowered = jtile.pallas_like(transpose_through_a_view).lower(x, target="sm_80")
    assert [c.cubin[:4] for c in lowered.compile().launches] == [b"\x7fELF"] * 2


@pytest.mark.parametrize("target", TARGETS)
def test_lowering_shows_and_compiles_every_launch(target):
    q, k, v = (jax.ShapeDtypeStruct(x.shape, x.dtype) for x in decode_inputs())
    lowered = jtile.pallas_like(split_kv_decode(**DECODE)).lower(q, k, v, target=target)
    assert isinstance(lowered, jtile.Lowered) and lowered.target == target
    assert lowered.kernel_names == ("decode_0", "decode_1")
    split, combine = (launch.kernel for launch in lowered.launches)
    # The workspaces are written by the split kernel and read by the combine kernel.
    assert [b.name for b in split.inputs] == ["Q", "K", "V"]
    assert [b.name for b in split.outputs] == ["glse", "partial"]
    assert [b.name for b in combine.inputs] == ["glse", "partial"]
    assert [b.name for b in combine.outputs] == ["Out"]
    source = lowered.cuda_source()
    for n, launch in enumerate(lowered.launches):
        assert f"// launch {n + 1} of 2: decode_{n} " in source
        assert launch.cuda_source() in source
        assert launch.ir_text() in lowered.ir_text()
    compiled = lowered.compile()
    assert [c.cubin[:4] for c in compiled.launches] == [b"\x7fELF"] * 2
    assert compiled.shared_memory_bytes == max(c.shared_memory_bytes for c in compiled.launches)
    with pytest.raises(jtile.JtileError, match=r"launches 2 kernels \(decode_0, decode_1\).*"
                                               r"\.launches\[i\]\.cubin"):
        compiled.cubin
    with pytest.raises(jtile.JtileError, match=r"\.launches\[i\]\.kernel_name"):
        lowered.kernel_name


def test_compiled_launches_thread_arrays_in_place():
    """Lowered for CUDA (no GPU needed): one custom call per launch, in order, the batch
    folded into each grid, and the array a later launch rewrites passed aliased."""
    f = jtile.pallas_like(scale_reverse_patch, compiler_params={"target": "sm_80"})
    hlo = jax.jit(jax.vmap(f)).trace(jax.ShapeDtypeStruct((3, N), jnp.float32)).lower(
        lowering_platforms=("cuda",)).as_text()
    calls = [line for line in hlo.splitlines() if "@jtile_launch" in line]
    assert [line.split('kernel_name = "')[1].split('"')[0] for line in calls] == \
        ["scale_reverse_patch_0", "scale_reverse_patch_1", "scale_reverse_patch_2"]
    assert all("grid_z = 3" in line for line in calls)
    assert "output_operand_alias" not in calls[0] + calls[1]
    assert "output_operand_alias<output_tuple_indices = [], operand_index = 0" in calls[2]


def test_fragment_used_by_a_later_kernel_is_refused():
    @T.prim_func
    def leaks(X: T.Tensor((N,), "float32"), Y: T.Tensor((N,), "float32")):
        with T.Kernel(1, threads=32):
            acc = T.alloc_fragment((N,), "float32")
            T.copy(X, acc)
        with T.Kernel(1, threads=32):
            T.copy(acc, Y)

    with pytest.raises(jtile.JtileTraceError, match=(
            r"leaks \(test_kernel_sequence.py:\d+\): T.Kernel at test_kernel_sequence.py:\d+ "
            r"\(launch leaks_1\): test_kernel_sequence.py:\d+: acc \(local.fragment float32 "
            r"\(64,\)\), allocated at test_kernel_sequence.py:\d+ inside the `with "
            r"T.Kernel\(...\)` block at test_kernel_sequence.py:\d+, is used here.*live for "
            r"one kernel launch.*T.alloc_global workspace")):
        jtile.pallas_like(leaks, interpret=True)(np.zeros(N, np.float32))


def test_block_index_used_by_a_later_kernel_is_refused():
    @T.prim_func
    def stale_index(X: T.Tensor((N,), "float32"), Y: T.Tensor((N,), "float32")):
        with T.Kernel(2, threads=32) as bx:
            first = bx
            T.copy(X, Y)
        with T.Kernel(1, threads=32):
            Y[first] = 1.0

    with pytest.raises(jtile.JtileTraceError, match=r"the block index bx of the `with "
                       r"T.Kernel\(...\)` block at test_kernel_sequence.py:\d+ is used here"):
        jtile.pallas_like(stale_index, interpret=True)(np.zeros(N, np.float32))


def test_other_sequence_mistakes():
    @T.prim_func
    def writes_input(X: T.Tensor((N,), "float32"), Y: T.Tensor((N,), "float32")):
        with T.Kernel(1, threads=32):
            T.copy(X, Y)
        with T.Kernel(1, threads=32):
            X[0] = 1.0

    with pytest.raises(jtile.JtileTraceError, match=r"\(launch writes_input_1\): "
                       r"test_kernel_sequence.py:\d+: input X \(global float32 \(64,\)\) is "
                       "written; inputs are read-only unless aliased"):
        jtile.pallas_like(writes_input, interpret=True)(np.zeros(N, np.float32))

    @T.prim_func
    def nested(X: T.Tensor((N,), "float32"), Y: T.Tensor((N,), "float32")):
        with T.Kernel(1, threads=32):
            with T.Kernel(1, threads=32):
                T.copy(X, Y)

    with pytest.raises(jtile.JtileTraceError, match=r"T.Kernel at test_kernel_sequence.py:\d+: "
                       r"nested kernels are not supported: it is inside another"):
        jtile.pallas_like(nested, interpret=True)(np.zeros(N, np.float32))

    @T.prim_func
    def forgets_output(X: T.Tensor((N,), "float32"), Y: T.Tensor((N,), "float32"),
                       Z: T.Tensor((N,), "float32")):
        with T.Kernel(1, threads=32):
            T.copy(X, Y)
        with T.Kernel(1, threads=32):
            T.copy(Y, Y)

    with pytest.raises(jtile.JtileTraceError, match=r"output Z \(global float32 \(64,\)\) is "
                       "never written by any of the 2 kernels"):
        jtile.pallas_like(forgets_output, interpret=True)(np.zeros(N, np.float32))

    @T.prim_func
    def allocates_between(X: T.Tensor((N,), "float32"), Y: T.Tensor((N,), "float32")):
        with T.Kernel(1, threads=32):
            T.copy(X, Y)
        tile = T.alloc_shared((N,), "float32")
        with T.Kernel(1, threads=32):
            T.copy(Y, tile)

    with pytest.raises(jtile.JtileTraceError, match=r"tile: allocations belong inside `with "
                       r"T.Kernel\(...\)`"):
        jtile.pallas_like(allocates_between, interpret=True)(np.zeros(N, np.float32))

    @T.prim_func
    def no_effect(X: T.Tensor((N,), "float32"), Y: T.Tensor((N,), "float32")):
        with T.Kernel(1, threads=32):
            T.copy(X, Y)
        with T.Kernel(1, threads=32):
            tile = T.alloc_shared((N,), "float32")
            T.copy(X, tile)

    with pytest.raises(jtile.JtileTraceError, match=r"\(launch no_effect_1\): the kernel writes "
                       "no global memory"):
        jtile.pallas_like(no_effect, interpret=True)(np.zeros(N, np.float32))


@pytest.mark.skipif(not has_cuda_gpu(), reason="runs the launches compiled on a CUDA GPU")
def test_compiled_sequences_match_numpy():
    q, k, v = decode_inputs(seed=5, lead=(2,))
    decode = jtile.pallas_like(split_kv_decode(**DECODE), interpret=False)
    out = jax.jit(jax.vmap(decode))(q, k, v)
    np.testing.assert_allclose(np.asarray(out), decode_reference(q, k, v), rtol=2e-3, atol=2e-3)
    x = np.random.default_rng(6).standard_normal((3, N)).astype(np.float32)
    tmp, y = jax.jit(jax.vmap(jtile.pallas_like(scale_reverse_patch, interpret=False)))(x)
    want_tmp, want_y = scale_reverse_patch_reference(x)
    np.testing.assert_array_equal(np.asarray(y), want_y)
    np.testing.assert_array_equal(np.asarray(tmp), want_tmp)
