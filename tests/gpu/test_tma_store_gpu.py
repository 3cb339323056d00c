"""GEMMs and flash attention whose epilogue the TMA engine stores (JTILE_TMA_STORE=1, the default) against
float64, on a Hopper GPU: edge tiles, transposes, bf16, a vmap batch, 4-D attention outputs. Runs in a fresh process so the setting
reaches every kernel it compiles."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.gpu

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SCRIPT = textwrap.dedent("""
    import functools, json
    import jax, jax.numpy as jnp, numpy as np
    from examples import gemm
    from tests.gpu.references import attention_f64, f64

    worst = {}
    cases = [((256, 512, 256), jnp.float16, False, False),
             ((200, 264, 136), jnp.float16, False, True),
             ((384, 320, 192), jnp.bfloat16, True, False)]
    for (m, n, k), dtype, ta, tb in cases:
        ka, kb = jax.random.split(jax.random.key(m + n + k))
        a = jax.random.normal(ka, (k, m) if ta else (m, k), jnp.float32).astype(dtype)
        b = jax.random.normal(kb, (n, k) if tb else (k, n), jnp.float32).astype(dtype)
        f = functools.partial(gemm.matmul, trans_a=ta, trans_b=tb, interpret=False,
                              block_m=128, block_n=256, block_k=64, stages=3, threads=256)
        ref = (f64(a).T if ta else f64(a)) @ (f64(b).T if tb else f64(b))
        err = np.abs(f64(jax.jit(f)(a, b)) - ref) / (1 + np.abs(ref))
        worst[f"{m}x{n}x{k} {jnp.dtype(dtype).name} ta={ta} tb={tb}"] = float(err.max())
    a = jax.random.normal(jax.random.key(1), (3, 256, 128), jnp.float32).astype(jnp.float16)
    b = jax.random.normal(jax.random.key(2), (3, 128, 512), jnp.float32).astype(jnp.float16)
    f = functools.partial(gemm.matmul, interpret=False, block_m=128, block_n=256, block_k=64,
                          stages=3, threads=256)
    ref = np.einsum("bmk,bkn->bmn", f64(a), f64(b))
    err = np.abs(f64(jax.jit(jax.vmap(f))(a, b)) - ref) / (1 + np.abs(ref))
    worst["vmap 3 x 256x512x128"] = float(err.max())

    from examples import flash_attention as fa
    for d, causal in ((64, True), (128, False)):
        q, k, v = (jax.random.normal(key, (2, 384, 4, d), jnp.float32).astype(jnp.float16)
                   for key in jax.random.split(jax.random.key(d), 3))
        out = jax.jit(functools.partial(fa.flash_attention, causal=causal,
                                        interpret=False))(q, k, v)
        ref = attention_f64(q, k, v, causal)
        worst[f"attention d{d} causal={causal}"] = float(np.abs(f64(out) - ref).max())
    print(json.dumps(worst))
""")


def test_tma_stored_gemms_match_float64():
    env = dict(os.environ, JTILE_TMA_STORE="1")
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                            env=env, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    worst = json.loads(result.stdout.strip().splitlines()[-1])
    for case, error in worst.items():
        # bf16 products summed over k <= 256 in float32, rounded to the output dtype.
        assert error < 2e-2, (case, error)
