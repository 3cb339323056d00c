"""Shared by the language tests: run a kernel in interpret mode, compile it to a cubin for sm_80
and sm_90a (no GPU needed), and where a CUDA GPU is present run it compiled as well and check
that both modes agree element for element."""

from __future__ import annotations

import functools

import jax
import numpy as np

import jtile

TARGETS = ("sm_80", "sm_90a")


@functools.lru_cache(maxsize=None)
def has_cuda_gpu() -> bool:
    try:
        return any(d.platform == "gpu" for d in jax.devices())
    except RuntimeError:
        return False


def run_both_ways(kernel, args, out_shape, *, rtol=0.0, atol=0.0, **launch):
    """Interpret-mode outputs (a list of NumPy arrays) and the generated CUDA for sm_80.

    The kernel is compiled for every target in TARGETS; on a GPU machine the compiled outputs
    must equal the interpreted ones within (rtol, atol) (exactly by default). `launch` goes to
    jtile.pallas_like (e.g. input_output_aliases).
    """
    interpreted = jtile.pallas_like(kernel, out_shape=out_shape, interpret=True, **launch)(*args)
    interpreted = [np.asarray(y) for y in jax.tree_util.tree_leaves(interpreted)]
    compiled = jtile.pallas_like(kernel, out_shape=out_shape, interpret=False, **launch)
    sources = {}
    for target in TARGETS:
        lowered = compiled.lower(*args, target=target)
        assert lowered.compile().cubin[:4] == b"\x7fELF"
        sources[target] = lowered.cuda_source()
    if has_cuda_gpu():
        on_gpu = [np.asarray(y) for y in jax.tree_util.tree_leaves(compiled(*args))]
        for got, want in zip(on_gpu, interpreted):
            np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64),
                                       rtol=rtol, atol=atol)
    return interpreted, sources["sm_80"]
