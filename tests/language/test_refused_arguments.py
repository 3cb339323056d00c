"""TileLang arguments jtile does not implement are refused by name with a JtileError (never
dropped, never a bare TypeError / AttributeError)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

import jtile
import jtile.language as T
from jtile.errors import JtileError

OUT = jax.ShapeDtypeStruct((32,), jnp.float32)


def _trace(body):
    def kernel(X, O):
        with T.Kernel(1, threads=32):
            body(X, O)
            for i in T.Parallel(32):
                O[i] = X[i]
    return jtile.pallas_like(kernel, out_shape=OUT, interpret=True)(jnp.ones(32))


def test_kernel_keyword_arguments_jtile_lacks():
    def kernel(X, O):
        with T.Kernel(1, threads=32, num_workers=2):
            for i in T.Parallel(32):
                O[i] = X[i]
    with pytest.raises(JtileError, match=r"T.Kernel\(num_workers=...\)"):
        jtile.pallas_like(kernel, out_shape=OUT, interpret=True)(jnp.ones(32))


def test_remote_mbarrier_arrive():
    def body(X, O):
        bar = T.alloc_barrier(32)
        T.mbarrier_arrive(bar, 1)
    with pytest.raises(JtileError, match=r"T.mbarrier_arrive\(cta_id=...\)"):
        _trace(body)


def test_unreplicated_reducer():
    def body(X, O):
        T.alloc_reducer((32,), "float32", op="sum", replication="none")
    with pytest.raises(JtileError, match=r"replication='none'"):
        _trace(body)


@pytest.mark.parametrize("argument", ["k_major", "allow_pad"])
def test_swizzle_variants(argument):
    def body(X, O):
        tile = T.alloc_shared((64, 64), "float16")
        T.annotate_layout({tile: T.make_swizzled_layout(tile, **{argument: False})})
    with pytest.raises(JtileError, match=rf"make_swizzled_layout\({argument}=False\)"):
        _trace(body)


def test_shape_symbols_are_integers():
    with pytest.raises(JtileError, match=r"T.dynamic\(dtype='float32'\)"):
        T.dynamic("m", "float32")
    assert T.dynamic("m", "int64").name == "m"


@pytest.mark.parametrize("name, hint", [("__ldg", "read-only cache"),
                                        ("__exp", "fast-math intrinsic")])
def test_cuda_intrinsics_are_refused_by_name(name, hint):
    with pytest.raises(JtileError, match=rf"T.{name} is TileLang's.*{hint}"):
        getattr(T, name)


def test_range_over_an_alloc_var():
    def body(X, O):
        n = T.alloc_var("int32", 3)
        for _ in range(n):
            pass
    with pytest.raises(JtileError, match=r"use T.serial"):
        _trace(body)


def test_infinity_of_an_integer_dtype_is_refused():
    with pytest.raises(JtileError, match=r"T.infinity\(int32\): only floating dtypes"):
        T.infinity("int32")


def test_rounding_mode_operations_say_what_to_use():
    with pytest.raises(JtileError, match=r"T.ieee_add is TileLang's.*round to nearest even"):
        T.ieee_add


def test_skipping_jtiles_checks_is_refused():
    with pytest.raises(JtileError, match=r"T.prim_func\(check_well_formed=False\)"):
        @T.prim_func(check_well_formed=False)
        def kernel(X: T.Tensor((8,), "float32")):
            pass


def test_named_barrier_arguments_are_checked():
    def kernel_with(*args):
        def kernel(X, O):
            with T.Kernel(1, threads=128):
                T.sync_threads(*args)
                T.copy(X, O)
        return kernel

    x = jnp.ones(128, jnp.float32)
    for args, rule in (((16, 64), r"barrier_id must be a Python int in 1..15"),
                       ((1, 48), r"arrive_count must be a Python int, a multiple of 32"),
                       ((1, 256), r"arrive_count must .* at most the block.s 128 threads"),
                       ((0, 64), r"barrier 0 is the block barrier")):
        call = jtile.pallas_like(kernel_with(*args),
                                 out_shape=jax.ShapeDtypeStruct((128,), jnp.float32),
                                 interpret=True)
        with pytest.raises(JtileError, match=r"T.sync_threads\(barrier_id=.*\): " + rule):
            call(x)