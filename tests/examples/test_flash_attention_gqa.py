"""The example flash attention with grouped-query heads (k and v with fewer heads than q), in
interpret mode against jax.nn.dot_product_attention, and lowered for sm_90a."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
from examples import flash_attention as fa


@pytest.mark.parametrize("causal", [False, True])
def test_grouped_query_heads_match_the_reference(causal):
    kq, kk, kv = jax.random.split(jax.random.key(11), 3)
    q = jax.random.normal(kq, (1, 96, 4, 64), jnp.float32).astype(jnp.float16)
    k = jax.random.normal(kk, (1, 96, 2, 64), jnp.float32).astype(jnp.float16)
    v = jax.random.normal(kv, (1, 96, 2, 64), jnp.float32).astype(jnp.float16)
    out = fa.flash_attention(q, k, v, causal=causal, block_m=64, block_n=32, threads=128,
                             interpret=True)
    np.testing.assert_allclose(np.asarray(out, np.float32),
                               np.asarray(fa.reference(q, k, v, causal)), rtol=4e-3, atol=4e-3)


def test_grouped_query_heads_load_the_shared_key_value_head():
    kernel = functools.partial(fa.flash_fwd_kernel, block_m=128, block_n=128, stages=2,
                               threads=256, causal=False)
    q = jax.ShapeDtypeStruct((1, 256, 8, 128), jnp.float16)
    kv = jax.ShapeDtypeStruct((1, 256, 2, 128), jnp.float16)
    source = jtile.pallas_like(kernel, name="gqa").lower(q, kv, kv, target="sm_90a").cuda_source()
    assert "(by / 4)" in source and "wgmma.mma_async" in source
