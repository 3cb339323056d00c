"""`jtile.ops.attention` against `jax.nn.dot_product_attention` (implementation="xla", float32)
in interpret mode, forward and gradients; its kernels compiled for sm_90a (the Hopper path:
TMA, mbarrier ring, wgmma) and sm_80 on the CPU; vmap; shard_map over batch and heads; and
the input checks.

Sequence lengths are not multiples of the tiles (200 against 64/128-row tiles), so every case
runs the ragged edge. Shapes are small: interpret mode runs every kernel with jax.numpy.
"""

from __future__ import annotations

import functools
import importlib
import os
import subprocess
import sys
import textwrap
import warnings
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
from jtile.compiler.target import parse_target
from jtile.ops import attention_kernels as kernels
from jtile.ops.attention import attention, tiles
from tests.sass import sass_counts
from tests.ops import references as ref

S = jax.ShapeDtypeStruct
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(autouse=True)
def _no_global_switches(monkeypatch):
    for name in ("JTILE_INTERPRET", "JTILE_TARGET"):
        monkeypatch.delenv(name, raising=False)


def _inputs(name, batch, seq, heads, kv_heads, dim, dtype, segments=0):
    """q, k, v, a float32 cotangent and (with `segments` > 0) sorted segment ids."""
    keys = jax.random.split(jax.random.key(zlib.crc32(name.encode())), 5)
    q = jax.random.normal(keys[0], (batch, seq, heads, dim), jnp.float32).astype(dtype)
    k = jax.random.normal(keys[1], (batch, seq, kv_heads, dim), jnp.float32).astype(dtype)
    v = jax.random.normal(keys[2], (batch, seq, kv_heads, dim), jnp.float32).astype(dtype)
    do = jax.random.normal(keys[3], q.shape, jnp.float32)
    seg = None
    if segments:
        seg = jnp.sort(jax.random.randint(keys[4], (batch, seq), 0, segments), axis=1)
    return q, k, v, do, seg


def reference(q, k, v, *, causal=False, scale=None, segment_ids=None):
    """jax.nn.dot_product_attention in float32 (xla), segments as a (B, 1, S, S) mask."""
    mask = None
    if segment_ids is not None:
        mask = (segment_ids[:, :, None] == segment_ids[:, None, :])[:, None]
    f32 = [x.astype(jnp.float32) for x in (q, k, v)]
    return jax.nn.dot_product_attention(*f32, mask=mask, scale=scale, is_causal=causal,
                                        implementation="xla")


def _check_forward_and_gradients(q, k, v, do, **options):
    dtype = q.dtype
    op = jax.jit(functools.partial(attention, interpret=True, **options))
    out = op(q, k, v)
    assert out.shape == q.shape and out.dtype == dtype
    ref.assert_close(out, reference(q, k, v, **options), dtype)

    def loss(f):
        return lambda q, k, v: jnp.sum(f(q, k, v).astype(jnp.float32) * do)

    got = jax.jit(jax.grad(loss(op), (0, 1, 2)))(q, k, v)
    want = jax.grad(loss(functools.partial(reference, **options)), (0, 1, 2))(q, k, v)
    for name, g, w, x in zip(("dq", "dk", "dv"), got, want, (q, k, v)):
        assert g.shape == x.shape and g.dtype == dtype, name
        ref.assert_close(g, w, dtype, ref.GRAD_TOLERANCE)


# (name, batch, seq, heads, kv_heads, dim, dtype, causal, segments)
CASES = [
    ("full_gqa_f16_d64", 1, 200, 4, 2, 64, jnp.float16, False, 0),
    ("causal_segments_gqa_bf16_d64", 1, 200, 2, 1, 64, jnp.bfloat16, True, 4),
    ("causal_f16_d128", 1, 200, 2, 2, 128, jnp.float16, True, 0),
    ("segments_bf16_d128", 1, 136, 1, 1, 128, jnp.bfloat16, False, 2),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_forward_and_gradients_match_dot_product_attention(case):
    name, batch, seq, heads, kv_heads, dim, dtype, causal, segments = case
    q, k, v, do, seg = _inputs(name, batch, seq, heads, kv_heads, dim, dtype, segments)
    _check_forward_and_gradients(q, k, v, do, causal=causal, segment_ids=seg)


@pytest.mark.parametrize("case", CASES[1:3], ids=[c[0] for c in CASES[1:3]])
def test_backward_on_queries_by_keys_scores_matches(monkeypatch, case):
    """The backward's `queries_by_keys` step (S, P, dS not transposed; dV and dK read them
    transposed from shared memory) gives the same gradients."""
    module = importlib.import_module("jtile.ops.attention")
    tiles = {d: (f, dict(b, queries_by_keys=True)) for d, (f, b) in module.HOPPER_TILES.items()}
    monkeypatch.setattr(module, "HOPPER_TILES", tiles)
    module._launcher.cache_clear()
    try:
        name, batch, seq, heads, kv_heads, dim, dtype, causal, segments = case
        q, k, v, do, seg = _inputs(name, batch, seq, heads, kv_heads, dim, dtype, segments)
        _check_forward_and_gradients(q, k, v, do, causal=causal, segment_ids=seg)
    finally:
        module._launcher.cache_clear()


def test_explicit_scale_and_head_dim_256():
    q, k, v, do, _ = _inputs("d256", 1, 72, 1, 1, 256, jnp.float16)
    _check_forward_and_gradients(q, k, v, do, scale=0.05)


def test_every_token_sees_itself_so_no_softmax_row_is_empty():
    """Segments of one token each, causal: every row's only visible key is its own."""
    q, k, v, do, _ = _inputs("singletons", 1, 70, 2, 2, 64, jnp.float16)
    seg = jnp.arange(70)[None]
    out = attention(q, k, v, causal=True, segment_ids=seg, interpret=True)
    np.testing.assert_allclose(np.asarray(out, np.float32), np.asarray(v, np.float32),
                               rtol=1e-3, atol=1e-3)


def test_vmap_over_an_extra_leading_axis():
    q, k, v, do, _ = _inputs("vmap", 2, 128, 2, 1, 64, jnp.float16)
    f = jax.vmap(functools.partial(attention, causal=True, interpret=True))
    g = jax.vmap(functools.partial(reference, causal=True))
    args = [x[:, None] for x in (q, k, v)]  # (2, 1, 128, heads, 64): vmap over axis 0
    ref.assert_close(f(*args), g(*args), jnp.float16)

    def loss(fn):
        return lambda *a: jnp.sum(fn(*a).astype(jnp.float32) * do[:, None])

    for got, want in zip(jax.grad(loss(f), (0, 1, 2))(*args), jax.grad(loss(g), (0, 1, 2))(*args)):
        ref.assert_close(got, want, jnp.float16, ref.GRAD_TOLERANCE)


# ----------------------------------------------------------------------------- compiled


def _launchers(dim, target, causal, segmented, batch=2, seq=1000, heads=8, kv_heads=2):
    """(name, launcher, specs) for the forward, the preprocess and the backward kernel."""
    fwd_tiles, bwd_tiles = tiles(dim, parse_target(target))
    dt = jnp.bfloat16
    q, kv = S((batch, seq, heads, dim), dt), S((batch, seq, kv_heads, dim), dt)
    rows, seg = S((batch, heads, seq), jnp.float32), S((batch, seq), jnp.int32)
    extra = (seg,) if segmented else ()
    fwd = kernels.attention_fwd_segmented_kernel if segmented else kernels.attention_fwd_kernel
    bwd = kernels.attention_bwd_segmented_kernel if segmented else kernels.attention_bwd_kernel
    bwd_args = (q, kv, kv, q, rows, rows) + extra + (S(q.shape, jnp.float32),)
    return [
        ("fwd", jtile.pallas_like(functools.partial(fwd, causal=causal, scale=0.125,
                                                    **fwd_tiles), name="attention_fwd"),
         (q, kv, kv) + extra),
        ("delta", jtile.pallas_like(functools.partial(
            kernels.attention_bwd_preprocess_kernel, block=8192 // dim, threads=128),
            name="attention_bwd_delta"), (q, q)),
        ("bwd", jtile.pallas_like(functools.partial(bwd, causal=causal, scale=0.125,
                                                    **bwd_tiles), name="attention_bwd",
                                  out_shape=(S(q.shape, jnp.float32), kv, kv),
                                  input_output_aliases={len(bwd_args) - 1: 0}), bwd_args),
    ]


@pytest.mark.parametrize("dim, causal, segmented", [(64, True, False), (64, False, False),
                                                    (128, False, False), (128, False, True),
                                                    (256, True, True)])
def test_kernels_take_the_hopper_path_on_sm90a(dim, causal, segmented):
    """... and ptxas keeps every wgmma asynchronous (a serialization warning fails the test);
    the backward adds dQ with the TMA engine's reduce where the tile fits (head dim 64, 128)."""
    spills = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error", jtile.JtilePerformanceWarning)
        for name, launcher, specs in _launchers(dim, "sm_90a", causal, segmented):
            lowered = launcher.lower(*specs, target="sm_90a")
            source = lowered.cuda_source()
            compiled = lowered.compile()
            assert compiled.cubin[:4] == b"\x7fELF", name
            if name == "delta":
                continue
            # K/V (forward) and Q/dO (backward) tiles arrive by TMA (cp.async.bulk.tensor)
            # into an mbarrier ring, every gemm is a wgmma, and a producer warpgroup issues
            # the loads while the consumers get the registers.
            assert source.count("jt::tma_load_4d(") >= 2, name
            assert "jt::mbarrier_wait_parity(" in source, name
            assert "jt::wgmma_commit(" in source and "mma_m16n8k16" not in source, name
            assert "jt::setmaxnreg_inc<" in source, name
            if name == "bwd":
                assert ("jt::tma_reduce_add_4d(" in source) == (dim != 256), name
                assert ("jt::atomic_add(" in source) == (dim == 256), name
                if dim != 256:
                    # The consumers go on after issuing the reduce: its reads are waited for
                    # at the next iteration's first barrier, not right after it.
                    issued = source.index("jt::tma_store_commit();",
                                          source.rindex("jt::tma_reduce_add_4d("))
                    after = source[issued:].splitlines()[1:4]
                    assert not any("wait_read" in line for line in after), after
            ops = sass_counts(compiled.cubin)
            assert ops["HGMMA"] > 0 and ops["UTMALDG"] > 0 and ops["HMMA"] == 0, (name, ops)
            spills[name] = ops["LDL"] + ops["STL"]
    # The forward keeps its values in registers; the causal one at head dim 64 may spill a few
    # around the diagonal tiles' mask after the gemm (measured faster than masking every tile
    # before it without spills: benchmarks/results/h200_bench_attention_mask_after.log).
    assert spills["fwd"] <= (8 if causal and dim == 64 and not segmented else 0), spills


@pytest.mark.parametrize("dim", [64, 128, 256])
def test_kernels_compile_for_sm80(dim):
    for name, launcher, specs in _launchers(dim, "sm_80", True, True):
        compiled = launcher.lower(*specs, target="sm_80").compile()
        assert compiled.cubin[:4] == b"\x7fELF" and 0 < compiled.registers <= 255, name


# ----------------------------------------------------------------------------- shard_map


def test_shard_map_over_batch_and_heads_matches_jnp_gradients():
    """Data parallel (batch over "data") and tensor parallel (heads over "model"), 4 host
    devices in a fresh process; gradients against the same jnp computation."""
    script = textwrap.dedent("""
        import functools
        import jax, jax.numpy as jnp, numpy as np
        from jax.sharding import NamedSharding, PartitionSpec as P
        import jtile.ops as ops
        from tests.ops.test_attention_op import reference

        mesh = jax.make_mesh((2, 2), ("data", "model"))
        rng = np.random.default_rng(5)

        def arr(shape, spec, dtype=np.float32):
            host = rng.standard_normal(shape).astype(np.float32).astype(dtype)
            return jax.device_put(jnp.asarray(host, dtype), NamedSharding(mesh, spec))

        spec = P("data", None, "model", None)
        q = arr((2, 72, 4, 64), spec, jnp.float16)
        k = arr((2, 72, 2, 64), spec, jnp.float16)
        v = arr((2, 72, 2, 64), spec, jnp.float16)
        do = arr((2, 72, 4, 64), spec)
        seg = jax.device_put(jnp.asarray(np.sort(rng.integers(0, 3, (2, 72)), 1), jnp.int32),
                             NamedSharding(mesh, P("data", None)))

        def grads(attend):
            def body(q, k, v, s, do):
                out = attend(q, k, v, s).astype(jnp.float32)
                return jax.lax.psum(jnp.sum(out * do), ("data", "model"))
            loss = jax.shard_map(body, mesh=mesh, in_specs=(spec, spec, spec, P("data", None),
                                                            spec), out_specs=P())
            return jax.jit(jax.grad(loss, (0, 1, 2)))(q, k, v, seg, do)

        got = grads(lambda q, k, v, s: ops.attention(q, k, v, causal=True, segment_ids=s))
        want = grads(lambda q, k, v, s: reference(q, k, v, causal=True, segment_ids=s))
        for g, w in zip(got, want):
            assert g.dtype == jnp.float16
            assert g.sharding.is_equivalent_to(w.sharding, g.ndim), (g.sharding, w.sharding)
            np.testing.assert_allclose(np.asarray(g, np.float32), np.asarray(w, np.float32),
                                       rtol=1e-2, atol=2e-2)
        print("OK")
    """)
    env = dict(os.environ, JAX_PLATFORMS="cpu", JTILE_INTERPRET="1",
               XLA_FLAGS="--xla_force_host_platform_device_count=4")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env=env, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.strip().splitlines()[-1] == "OK", result.stdout


# ----------------------------------------------------------------------------- checks


def _f16(*shape):
    return jnp.zeros(shape, jnp.float16)


@pytest.mark.parametrize("args, kwargs, match", [
    ((_f16(2, 8, 64), _f16(2, 8, 64), _f16(2, 8, 64)), {}, r"q is float16\[2, 8, 64\].*"
     r"\(batch, seq, heads, head_dim\)"),
    ((jnp.zeros((1, 8, 2, 64)),) * 3, {}, r"float32.*float16 or bfloat16"),
    ((_f16(1, 8, 2, 64), _f16(1, 8, 2, 64), jnp.zeros((1, 8, 2, 64), jnp.bfloat16)), {},
     "must share one dtype"),
    ((_f16(1, 8, 2, 96),) * 3, {}, "head_dim 96 is not supported, only 64, 128, 256"),
    ((_f16(1, 8, 3, 64), _f16(1, 8, 2, 64), _f16(1, 8, 2, 64)), {},
     r"heads \(3\) must be a multiple of k's \(2\)"),
    ((_f16(1, 8, 2, 64), _f16(1, 16, 2, 64), _f16(1, 16, 2, 64)), {},
     "same length"),
    ((_f16(1, 8, 2, 64), _f16(1, 8, 2, 64), _f16(1, 8, 1, 64)), {}, "v is float16"),
    ((_f16(1, 8, 2, 64),) * 3, {"segment_ids": jnp.zeros((1, 9), jnp.int32)},
     r"segment_ids is int32\[1, 9\] but must have shape \[1, 8\]"),
    ((_f16(1, 8, 2, 64),) * 3, {"segment_ids": jnp.zeros((1, 8), jnp.float32)},
     "segment_ids is float32.*integer"),
    ((_f16(1, 8, 2, 64),) * 3, {"scale": jnp.float32(0.1)}, "static Python number"),
])
def test_bad_inputs_are_refused_by_name(args, kwargs, match):
    with pytest.raises(jtile.JtileError, match="jtile.ops.attention: " + "(.|\n)*" + match):
        attention(*args, interpret=True, **kwargs)


def test_scale_under_jit_must_be_static():
    q = _f16(1, 8, 2, 64)
    with pytest.raises(jtile.JtileError, match="scale=.* must be a static Python number"):
        jax.jit(lambda q, s: attention(q, q, q, scale=s, interpret=True))(q, 0.1)
