"""`import jtile.tilelang as tilelang`: the `tilelang` helpers TileLang kernel code calls
(`tilelang.cdiv`, `tilelang.math.next_power_of_2`, `tilelang.layout.make_swizzled_layout`),
with TileLang's meaning; launching names are refused with what to use instead."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
import jtile.language as T
import jtile.tilelang as tilelang


def swizzled_copy(M, N, block_M):
    @T.prim_func
    def kernel(A: T.Tensor((M, N), "float16"), B: T.Tensor((M, N), "float16")):
        with T.Kernel(tilelang.cdiv(M, block_M), threads=128) as bx:
            a = T.alloc_shared((block_M, N), "float16")
            T.annotate_layout({a: tilelang.layout.make_swizzled_layout(a)})
            T.copy(A[bx * block_M, 0], a)
            T.copy(a, B[bx * block_M, 0])
    return kernel


def test_kernel_code_calling_tilelang_helpers_runs():
    a = jax.random.normal(jax.random.PRNGKey(3), (200, 64), jnp.float32).astype(jnp.float16)
    kernel = swizzled_copy(200, 64, tilelang.math.next_power_of_2(48))
    np.testing.assert_array_equal(np.asarray(jtile.pallas_like(kernel, interpret=True)(a)),
                                  np.asarray(a))
    assert "__global__" in jtile.pallas_like(kernel).lower(a, target="sm_90a").cuda_source()


@pytest.mark.parametrize("x, want", [(1, 1), (2, 2), (3, 4), (64, 64), (65, 128)])
def test_next_power_of_2(x, want):
    assert tilelang.next_power_of_2(x) == tilelang.math.next_power_of_2(x) == want


def test_cdiv():
    assert [tilelang.cdiv(n, 64) for n in (1, 64, 65, 128)] == [1, 1, 2, 2]


@pytest.mark.parametrize("name, instead", [("jit", "jtile.pallas_like"),
                                           ("profiler", "jtile.pallas_like"),
                                           ("tvm", "helpers TileLang kernel code calls")])
def test_other_names_are_refused_with_what_to_use(name, instead):
    with pytest.raises(jtile.JtileError, match=rf"tilelang.{name} is TileLang's, but jtile does "
                                               rf"not implement it: .*{instead}"):
        getattr(tilelang, name)


def hadamard_style_copy(M, N):
    """TileLang's hadamard example annotates its shared tile with
    `tilelang.cuda.intrinsics.make_mma_swizzle_layout`."""
    from jtile.tilelang.cuda.intrinsics import make_mma_swizzle_layout

    @T.prim_func
    def kernel(A: T.Tensor((M, N), "float16"), B: T.Tensor((M, N), "float16")):
        with T.Kernel(1, threads=128):
            shared = T.alloc_shared((M, N), "float16")
            T.annotate_layout({shared: make_mma_swizzle_layout(shared)})
            T.copy(A, shared)
            for i, j in T.Parallel(M, N):
                B[i, j] = shared[i, j] * 2
    return kernel


def test_make_mma_swizzle_layout_from_tilelang_cuda_intrinsics():
    from jtile.tilelang.cuda.intrinsics.layout.mma_layout import make_mma_swizzle_layout as deep

    a = jax.random.normal(jax.random.PRNGKey(5), (64, 64), jnp.float32).astype(jnp.float16)
    kernel = hadamard_style_copy(64, 64)
    out = jtile.pallas_like(kernel, interpret=True)(a)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(a) * 2)
    assert "__global__" in jtile.pallas_like(kernel).lower(a, target="sm_90a").cuda_source()
    assert deep is tilelang.cuda.intrinsics.make_mma_swizzle_layout


def test_tilelang_submodules_jtile_lacks_are_refused_by_name():
    import importlib

    with pytest.raises(jtile.JtileError, match="tilelang.carver is TileLang's") as caught:
        importlib.import_module("jtile.tilelang.carver")
    assert isinstance(caught.value, ModuleNotFoundError)
    with pytest.raises(jtile.JtileError, match="tilelang.cuda.intrinsics.TensorCoreIntrinEmitter"):
        from jtile.tilelang.cuda.intrinsics import TensorCoreIntrinEmitter  # noqa: F401
