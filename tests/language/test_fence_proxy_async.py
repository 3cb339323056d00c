"""T.fence_proxy_async (TileLang's, sm_90+): a no-op in interpret mode, the async-proxy fence in
compiled code, refused by name before sm_90."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
import jtile.language as T
from jtile.errors import JtileTargetError
from tests.language.kernel_runs import has_cuda_gpu


def staged_double(X, Y):
    (n,) = X.shape
    with T.Kernel(1, threads=128):
        tile = T.alloc_shared((n,), "float32")
        for i in T.Parallel(n):
            tile[i] = X[i] * 2.0
        T.fence_proxy_async()
        T.sync_threads()
        T.copy(tile, Y)


def test_fence_runs_in_both_modes_and_is_refused_before_sm90():
    x = np.random.default_rng(3).standard_normal(256).astype(np.float32)
    out = jax.ShapeDtypeStruct((256,), jnp.float32)
    interpreted = jtile.pallas_like(staged_double, out_shape=out, interpret=True)(x)
    np.testing.assert_array_equal(np.asarray(interpreted), 2 * x)
    compiled = jtile.pallas_like(staged_double, out_shape=out, interpret=False)
    lowered = compiled.lower(x, target="sm_90a")
    assert "jt::fence_proxy_async_shared();" in lowered.cuda_source()
    assert "fence_proxy_async" in lowered.ir_text()
    assert lowered.compile().cubin[:4] == b"\x7fELF"
    with pytest.raises(JtileTargetError, match=r"T.fence_proxy_async .*sm_90.*sm_80"):
        compiled.lower(x, target="sm_80")
    if has_cuda_gpu():
        np.testing.assert_array_equal(np.asarray(compiled(x)), 2 * x)
