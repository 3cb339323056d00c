"""`jtile.ops.ragged_dot` against `jax.lax.ragged_dot` and its gradients, in interpret mode.

Small shapes (interpret mode runs the kernels with jax.numpy on the CPU; its tiles are 32 x 32
here, so a 100-row problem spans several tiles per group): uneven, empty and tiny groups, a
sum below m (zero rows) and above m (groups cut at m), odd k and n, float16 and bfloat16;
group sizes changed at run time without retracing; vmap; shard_map with 4 host devices; the
checks; and, compiled for sm_90a without a GPU, the Hopper path (TMA + wgmma) of all three
kernels and the fp8 forward.
"""

from __future__ import annotations

import warnings
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
import jtile.ops as ops
from jtile.ops.ragged_dot import _launcher, gemm_tiles, weight_grad_tiles
from jtile.ops.ragged_dot_kernels import group_weight_grad_kernel, grouped_gemm_kernel
from jtile.ops.ragged_dot_schedule import max_row_tiles, row_tiles
from tests.gpu.compare import assert_close
from tests.ops.test_ops_shard_map import _run as run_on_mesh
from tests.sass import sass_counts

S = jax.ShapeDtypeStruct

SPLITS = {
    "uneven_sum_below_m": [13, 40, 0, 27],
    "tiny_and_empty": [1, 0, 2, 1],
    "all_empty": [0, 0, 0, 0],
    "sum_above_m": [60, 0, 35, 30],
    "one_group_all_rows": [0, 100, 0, 0],
}


def _inputs(name, m, k, n, g, dtype):
    ka, kb, kc = jax.random.split(jax.random.key(zlib.crc32(name.encode())), 3)
    lhs = jax.random.normal(ka, (m, k), jnp.float32).astype(dtype)
    rhs = jax.random.normal(kb, (g, k, n), jnp.float32).astype(dtype)
    projection = jax.random.normal(kc, (m, n), jnp.float32)
    return lhs, rhs, projection


def _loss(op, group_sizes, projection, **kw):
    def loss(lhs, rhs):
        out = op(lhs, rhs, group_sizes, preferred_element_type=jnp.float32, **kw)
        return jnp.sum(out * projection)
    return loss


# Every split in bfloat16; float16 on two of them, to keep interpret-mode CI time small.
@pytest.mark.parametrize("split, dtype", [(s, jnp.bfloat16) for s in sorted(SPLITS)]
                         + [("uneven_sum_below_m", jnp.float16), ("sum_above_m", jnp.float16)])
def test_forward_and_gradients_match_jax(split, dtype):
    m, k, n = 100, 37, 45  # odd k and n: partial tiles on every edge
    group_sizes = jnp.array(SPLITS[split], jnp.int32)
    lhs, rhs, projection = _inputs(f"{split}-{jnp.dtype(dtype).name}", m, k, n, 4, dtype)
    out = ops.ragged_dot(lhs, rhs, group_sizes, interpret=True)
    assert out.dtype == dtype and out.shape == (m, n)
    want = jax.lax.ragged_dot(lhs, rhs, group_sizes, preferred_element_type=jnp.float32)
    assert_close(out, want, dtype, k=k, name="out")
    # Rows past sum(group_sizes) are exactly zero, as jax gives them.
    covered = min(int(sum(SPLITS[split])), m)
    assert not np.asarray(out[covered:], np.float32).any()
    got = jax.grad(_loss(ops.ragged_dot, group_sizes, projection, interpret=True),
                   (0, 1))(lhs, rhs)
    ref = jax.grad(_loss(jax.lax.ragged_dot, group_sizes, projection), (0, 1))(lhs, rhs)
    for name, g, r, depth in (("d lhs", got[0], ref[0], n), ("d rhs", got[1], ref[1], m)):
        assert g.dtype == dtype and g.shape == r.shape
        assert_close(g, r.astype(jnp.float32), dtype, k=depth, name=name)


@pytest.mark.parametrize("preferred", [None, jnp.float32, jnp.bfloat16])
def test_output_dtype_follows_jax(preferred):
    lhs, rhs, _ = _inputs("dtype", 40, 32, 24, 2, jnp.float16)
    group_sizes = jnp.array([17, 20], jnp.int16)  # any integer dtype, as jax takes
    out = ops.ragged_dot(lhs, rhs, group_sizes, preferred_element_type=preferred,
                         interpret=True)
    want = jax.lax.ragged_dot(lhs, rhs, group_sizes, preferred_element_type=preferred)
    assert out.dtype == want.dtype
    assert_close(out, want.astype(jnp.float32), out.dtype if preferred else jnp.float16, k=32)


def test_group_sizes_change_without_retracing():
    lhs, rhs, projection = _inputs("retrace", 96, 32, 40, 3, jnp.bfloat16)
    traces = []

    def step(lhs, rhs, group_sizes):
        traces.append(1)
        return jax.grad(_loss(ops.ragged_dot, group_sizes, projection, interpret=True),
                        (0, 1))(lhs, rhs)

    step = jax.jit(step)
    for sizes in ([30, 30, 36], [0, 96, 0], [5, 1, 7]):
        group_sizes = jnp.array(sizes, jnp.int32)
        got = step(lhs, rhs, group_sizes)
        ref = jax.grad(_loss(jax.lax.ragged_dot, group_sizes, projection), (0, 1))(lhs, rhs)
        assert_close(got[1], ref[1].astype(jnp.float32), jnp.bfloat16, k=96, name=str(sizes))
    assert len(traces) == 1


def test_vmap_over_tokens_and_group_sizes():
    lhs = jax.random.normal(jax.random.key(1), (2, 70, 40), jnp.float32).astype(jnp.bfloat16)
    rhs = jax.random.normal(jax.random.key(2), (3, 40, 33), jnp.float32).astype(jnp.bfloat16)
    group_sizes = jnp.array([[20, 0, 45], [5, 60, 1]], jnp.int32)

    def loss(op, **kw):
        return lambda l, r, g: jnp.sum(op(l, r, g, preferred_element_type=jnp.float32, **kw) ** 2)

    out = jax.vmap(lambda l, g: ops.ragged_dot(l, rhs, g, interpret=True))(lhs, group_sizes)
    grads = jax.vmap(jax.grad(loss(ops.ragged_dot, interpret=True), (0, 1)),
                     in_axes=(0, None, 0))(lhs, rhs, group_sizes)
    # jax.lax.ragged_dot's own vmap rule needs every operand batched: compare row by row.
    for b in range(2):
        want = jax.lax.ragged_dot(lhs[b], rhs, group_sizes[b], preferred_element_type=jnp.float32)
        assert_close(out[b], want, jnp.bfloat16, k=40, name=f"out[{b}]")
        ref = jax.grad(loss(jax.lax.ragged_dot), (0, 1))(lhs[b], rhs, group_sizes[b])
        assert_close(grads[0][b], ref[0].astype(jnp.float32), jnp.bfloat16, k=33, name="d lhs")
        assert_close(grads[1][b], ref[1].astype(jnp.float32), jnp.bfloat16, k=70, name="d rhs")


def test_row_tiles_cover_every_row_once():
    m, block_m = 100, 32
    for sizes in SPLITS.values():
        table = row_tiles(jnp.array(sizes, jnp.int32), m, block_m)
        group, row, end = (np.asarray(x) for x in (table.group, table.row, table.end))
        assert group.shape == (max_row_tiles(m, len(sizes), block_m),)
        owner = np.full(m, -2)
        for g, r, e in zip(group, row, end):
            rows = np.arange(r, min(r + block_m, e, m))
            assert (owner[rows] == -2).all(), (sizes, g, r)
            owner[rows] = g
        starts = np.concatenate([[0], np.cumsum(sizes)])
        expected = np.full(m, -1)
        for g in range(len(sizes)):
            expected[min(starts[g], m):min(starts[g + 1], m)] = g
        np.testing.assert_array_equal(owner, expected)


# ----------------------------------------------------------------------------- checks


@pytest.mark.parametrize("case, rule", [
    (lambda l, r, g: (l[0], r, g), "must be (m, k)"),
    (lambda l, r, g: (l, r[0], g), "must be (g, k, n)"),
    (lambda l, r, g: (l[:, :16], r, g), "must equal rhs's k"),
    (lambda l, r, g: (l.astype(jnp.float32), r.astype(jnp.float32), g), "the op takes"),
    (lambda l, r, g: (l, r.astype(jnp.float16), g), "must share one dtype"),
    (lambda l, r, g: (l, r, g.astype(jnp.float32)), "integer array"),
    (lambda l, r, g: (l, r, g[:1]), "one size per group"),
])
def test_mistakes_are_refused(case, rule):
    lhs, rhs, _ = _inputs("errors", 16, 32, 8, 2, jnp.bfloat16)
    args = case(lhs, rhs, jnp.array([8, 8], jnp.int32))
    with pytest.raises(jtile.JtileError, match="ragged_dot") as info:
        ops.ragged_dot(*args, interpret=True)
    assert rule in str(info.value)


def test_preferred_integer_type_and_fp8_gradient_are_refused():
    lhs, rhs, _ = _inputs("refused", 16, 32, 8, 2, jnp.bfloat16)
    group_sizes = jnp.array([8, 8], jnp.int32)
    with pytest.raises(jtile.JtileError, match="preferred_element_type=int32"):
        ops.ragged_dot(lhs, rhs, group_sizes, preferred_element_type=jnp.int32, interpret=True)
    fp8 = jnp.float8_e4m3fn
    loss = lambda l, r: jnp.sum(ops.ragged_dot(  # noqa: E731
        l, r, group_sizes, preferred_element_type=jnp.float32, interpret=True))
    with pytest.raises(jtile.JtileError, match="float8_e4m3fn ragged_dot is not implemented"):
        jax.grad(loss)(lhs.astype(fp8), rhs.astype(fp8))


def test_fp8_forward_matches_jax_in_interpret_mode():
    lhs, rhs, _ = _inputs("fp8", 70, 64, 40, 3, jnp.float32)
    lhs, rhs = lhs.astype(jnp.float8_e4m3fn), rhs.astype(jnp.float8_e4m3fn)
    group_sizes = jnp.array([20, 0, 45], jnp.int32)
    out = ops.ragged_dot(lhs, rhs, group_sizes, preferred_element_type=jnp.bfloat16,
                         interpret=True)
    want = jax.lax.ragged_dot(lhs, rhs, group_sizes, preferred_element_type=jnp.float32)
    assert out.dtype == jnp.bfloat16
    assert_close(out, want, jnp.bfloat16, k=64)


# ------------------------------------------------------------- compiled for sm_90a (no GPU)


def _lower_all_kernels(dtype):
    """The forward, lhs-gradient and rhs-gradient kernels at the issue's Mixtral shape."""
    m, k, n, g = 32768, 4096, 14336, 8
    tiles = gemm_tiles("sm_90a", dtype)
    t = S((max_row_tiles(m, g, tiles["block_m"]),), jnp.int32)
    fp8 = jnp.dtype(dtype).itemsize == 1
    lowered = {}
    for name, trans in (("forward", fp8), ("d lhs", True)):
        if fp8 and name == "d lhs":
            continue
        launch = _launcher(grouped_gemm_kernel, "ragged_dot", False, out_dtype="bfloat16",
                           transpose_rhs=trans, **tiles)
        rhs = S((g, n, k) if trans else (g, k, n), dtype)
        lowered[name] = launch.lower(S((m, k), dtype), rhs, t, t, t, target="sm_90a")
    if not fp8:
        wg = weight_grad_tiles("sm_90a")
        launch = _launcher(group_weight_grad_kernel, "ragged_dot_rhs_grad", False, groups=g,
                           out_dtype="bfloat16", **wg)
        gt = S((g,), jnp.int32)
        lowered["d rhs"] = launch.lower(S((m + g * wg["block_rows"], k), dtype), S((m, n), dtype),
                                        gt, gt, gt, target="sm_90a")
    return lowered


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float8_e4m3fn])
def test_hopper_path_is_taken(dtype):
    """Tile-table addresses (rhs[group_of[tile]], lhs[row_of[tile]]) still give TMA loads, an
    mbarrier ring, a producer warpgroup and wgmma (HGMMA for 16-bit inputs, QGMMA for fp8);
    no loop falls back to a plain loop, nothing spills."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", jtile.JtilePerformanceWarning)
        lowered = _lower_all_kernels(dtype)
        compiled = {name: low.compile() for name, low in lowered.items()}
    assert sorted(lowered) == (["forward"] if dtype == jnp.float8_e4m3fn
                               else ["d lhs", "d rhs", "forward"])
    wgmma = "QGMMA" if dtype == jnp.float8_e4m3fn else "HGMMA"
    for name, low in lowered.items():
        source = low.cuda_source()
        assert "jt::tma_load_" in source and "setmaxnreg_dec" in source, name
        counts = sass_counts(compiled[name].cubin)
        assert counts[wgmma] >= 4 and counts["UTMALDG"] >= 2, (name, counts)
        assert counts["HMMA"] == 0 and counts["LDL"] == 0 and counts["STL"] == 0, (name, counts)


# ---------------------------------------------------------------------------- shard_map

SHARD_MAP_CHECK = """
    from jax import lax
    gs_host = np.array([5, 0, 9, 2, 7, 7, 1, 0], np.int32)  # per shard: 4 groups of 16 rows

    def bf16(x):
        return x.astype(jnp.bfloat16)

    def check(lhs_spec, rhs_spec, gs_spec, axis, groups):
        lhs = arr((32, 24), lhs_spec)
        rhs = arr((groups, 24, 20), rhs_spec)
        proj = arr((32, 20), lhs_spec)
        gs = jax.device_put(gs_host, NamedSharding(mesh, gs_spec))

        def wrap(op):
            def body(l, r, g, p):
                out = op(bf16(l), bf16(r), g, preferred_element_type=jnp.float32)
                return lax.psum(jnp.sum(out * p), axis)
            return jax.shard_map(body, mesh=mesh, in_specs=(lhs_spec, rhs_spec, gs_spec,
                                                            lhs_spec), out_specs=P())
        got = jax.jit(jax.grad(wrap(ops.ragged_dot), (0, 1)))(lhs, rhs, gs, proj)
        want = jax.jit(jax.grad(wrap(jax.lax.ragged_dot), (0, 1)))(lhs, rhs, gs, proj)
        for g, w in zip(got, want):
            assert g.sharding.is_equivalent_to(w.sharding, g.ndim), (g.sharding, w.sharding)
            scale = float(np.abs(np.asarray(w)).max())
            np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=2e-2,
                                       atol=2e-2 * scale)
"""


def test_shard_map_data_and_expert_parallel():
    run_on_mesh(SHARD_MAP_CHECK + """
    # Data parallel: tokens (and their group sizes) sharded over "data", experts replicated:
    # the experts' gradient is summed over the data shards.
    check(P("data", None), P(), P("data"), "data", 4)
    # Expert parallel: 8 experts sharded over "model", each shard holding the tokens already
    # dispatched to its 4 experts.
    check(P("model", None), P("model", None, None), P("model"), "model", 8)
    print("OK")
    """)
