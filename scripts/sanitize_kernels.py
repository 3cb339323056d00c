"""Small Hopper GEMM and attention runs for compute-sanitizer (memcheck, racecheck, synccheck):
the example GEMM and flash-attention forward, jtile.ops.attention's forward at a long sequence
and its backward (its dQ added by TMA reduces), and with `ws` (only that) the hand-written
warp-specialised GEMMs of tests/tilelang/gemm_warp_specialized.py (T.ws regions, mbarriers),
with `persistent` the GEMM as a persistent tile loop, and with `padded` GEMM tiles and
attention head dims that are not powers of 2 (fragments whose registers hold padding).

Run as `compute-sanitizer --tool memcheck python3 scripts/sanitize_kernels.py`; the script
checks its own results against jnp, so a kernel that the tool lets through but computes wrong
still fails. References are computed without cuBLAS autotuning (FACTS.md: XLA's autotuner
crashed under memcheck).
"""

import functools
import os
import sys

os.environ.setdefault("XLA_FLAGS", "--xla_gpu_autotune_level=0")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from examples import flash_attention, gemm  # noqa: E402
import jtile.ops  # noqa: E402


def _check_forward(label, attend, q, k, v):
    """`attend(q, k, v, causal=...)` full and causal against the float32 reference."""
    for causal in (False, True):
        out = jax.jit(functools.partial(attend, causal=causal, interpret=False))(q, k, v)
        ref = flash_attention.reference(q, k, v, causal)
        np.testing.assert_allclose(np.asarray(out, np.float32), np.asarray(ref), rtol=4e-3,
                                   atol=4e-3)
        print(label, "causal" if causal else "full", "ok", flush=True)


def warp_specialized():
    from tests.tilelang import gemm_warp_specialized as ws_gemm

    import jtile

    ka, kb = jax.random.split(jax.random.key(3))
    a = jax.random.normal(ka, (200, 160), jnp.float32).astype(jnp.float16)
    b = jax.random.normal(kb, (160, 136), jnp.float32).astype(jnp.float16)
    for kernel in (ws_gemm.handoff, ws_gemm.ring, ws_gemm.split_columns, ws_gemm.branches):
        f = jtile.pallas_like(functools.partial(kernel, block_M=128, block_N=128, block_K=64))
        out = jax.jit(f)(a, b)
        np.testing.assert_allclose(np.asarray(out, np.float64), ws_gemm.reference(a, b),
                                   rtol=4e-3, atol=5e-2)
        print("T.ws gemm", kernel.__name__, "ok", flush=True)


def persistent():
    """The GEMM as a persistent tile loop on a GPU reported to have two SMs: each block runs
    several tiles, so its ring and its epilogue's panel slots (TMA stores of one tile still
    reading while the next tile runs; two slots, or one for the 256-row tile) are reused across
    tiles."""
    from jtile.compiler import target as target_module

    os.environ["JTILE_PERSISTENT"] = "1"
    local = target_module._local_gpu()
    target_module._local_gpu = lambda: (local[0], 2)
    ka, kb = jax.random.split(jax.random.key(3))
    a = jax.random.normal(ka, (384, 320), jnp.float32).astype(jnp.float16)
    b = jax.random.normal(kb, (320, 768), jnp.float32).astype(jnp.float16)
    for cfg in (dict(block_m=128, block_n=256, block_k=64, stages=4, threads=256),
                dict(block_m=128, block_n=128, block_k=64, stages=3, threads=256),
                dict(block_m=256, block_n=128, block_k=64, stages=4, threads=256)):
        out = jax.jit(functools.partial(gemm.matmul, interpret=False, **cfg))(a, b)
        ref = np.asarray(a, np.float64) @ np.asarray(b, np.float64)
        np.testing.assert_allclose(np.asarray(out, np.float64), ref, rtol=4e-3, atol=5e-2)
        print("persistent gemm", cfg, "ok", flush=True)


def padded():
    """GEMM tiles of 96, 80 and 192 columns and 192 rows, and attention at head dims 96 and
    80: every copy, reduction and tensor-core tile must skip the padded registers."""
    import jtile
    from tests.language.test_padded_fragments import GEMM_TILES, gemm as tile_gemm
    from tests.tilelang import flash_attention_fwd as fa

    ka, kb = jax.random.split(jax.random.key(4))
    a = jax.random.normal(ka, (200, 160), jnp.float32).astype(jnp.float16)
    b = jax.random.normal(kb, (160, 300), jnp.float32).astype(jnp.float16)
    ref = np.asarray(a, np.float64) @ np.asarray(b, np.float64)
    for tile in GEMM_TILES:
        out = jax.jit(jtile.pallas_like(functools.partial(tile_gemm, **tile)))(a, b)
        np.testing.assert_allclose(np.asarray(out, np.float64), ref, rtol=4e-3, atol=5e-2)
        print("padded gemm", tile, "ok", flush=True)
    for dim in (96, 80):
        q, k, v = (jax.random.normal(key, (1, 100, 2, dim), jnp.float32).astype(jnp.float16)
                   for key in jax.random.split(jax.random.key(dim), 3))
        for causal in (False, True):
            f = jtile.pallas_like(functools.partial(fa.flashattn, is_causal=causal))
            out = jax.jit(f)(q, k, v)
            np.testing.assert_allclose(np.asarray(out, np.float32), fa.reference(q, k, v, causal),
                                       rtol=1e-2, atol=1e-2)
            print("padded attention d", dim, "causal" if causal else "full", "ok", flush=True)


def main():
    if sys.argv[1:] == ["padded"]:
        padded()
        return
    if sys.argv[1:] == ["ws"]:
        warp_specialized()
        return
    if sys.argv[1:] == ["persistent"]:
        persistent()
        return
    ka, kb = jax.random.split(jax.random.key(0))
    a = jax.random.normal(ka, (192, 128), jnp.float32).astype(jnp.float16)
    b = jax.random.normal(kb, (128, 320), jnp.float32).astype(jnp.float16)
    for cfg in (dict(block_m=128, block_n=128, block_k=64, stages=3, threads=128),
                dict(block_m=128, block_n=256, block_k=64, stages=2, threads=256)):
        out = jax.jit(functools.partial(gemm.matmul, interpret=False, **cfg))(a, b)
        ref = np.asarray(a, np.float64) @ np.asarray(b, np.float64)
        np.testing.assert_allclose(np.asarray(out, np.float64), ref, rtol=4e-3, atol=5e-2)
        print("gemm", cfg, "ok", flush=True)
    q, k, v = (jax.random.normal(key, (1, 192, 2, 64), jnp.float32).astype(jnp.float16)
               for key in jax.random.split(jax.random.key(1), 3))
    _check_forward("attention", functools.partial(flash_attention.flash_attention,
                                                  block_m=128, block_n=64), q, k, v)
    for causal in (False, True):
        def loss(attend, q, k, v):
            return (attend(q, k, v).astype(jnp.float32) * v.astype(jnp.float32)).sum()

        mine = functools.partial(jtile.ops.attention, causal=causal, interpret=False)
        theirs = functools.partial(flash_attention.reference, causal=causal)
        got = jax.jit(jax.grad(functools.partial(loss, mine), argnums=(0, 1, 2)))(q, k, v)
        want = jax.grad(functools.partial(loss, theirs), argnums=(0, 1, 2))(q, k, v)
        for name, x, y in zip("qkv", got, want):
            np.testing.assert_allclose(np.asarray(x, np.float32), np.asarray(y, np.float32),
                                       rtol=2e-2, atol=2e-2, err_msg=f"d{name}")
        print("attention backward", "causal" if causal else "full", "ok", flush=True)
    # Past attention.SHORT_SEQ the op's head-dim-64 forward is the 128-query, three-stage one.
    q, k, v = (jax.random.normal(key, (1, 1152, 1, 64), jnp.float32).astype(jnp.float16)
               for key in jax.random.split(jax.random.key(2), 3))
    _check_forward("attention forward S1152", jtile.ops.attention, q, k, v)


if __name__ == "__main__":
    main()
