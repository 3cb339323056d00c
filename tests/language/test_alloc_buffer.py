"""`T.alloc_buffer(shape, dtype, scope=...)` is the allocation function of its scope, as in
TileLang (scope "global" is a `T.alloc_global` workspace, tested in test_kernel_sequence.py);
the layout arguments are refused by name, saying what to use instead."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
import jtile.language as T
from jtile.ir.types import MemorySpace
from tests.language.kernel_runs import run_both_ways
from tests.trace.helpers import trace1

N = 64


def test_scopes_map_to_the_allocation_functions():
    def kernel(X, O):
        with T.Kernel(1, threads=32):
            dyn = T.alloc_buffer((N,), "float32", scope="shared.dyn")
            static = T.alloc_buffer((N,), T.float32, scope="shared")
            frag = T.alloc_buffer((N,), "float32", scope="local.fragment")
            local = T.alloc_buffer((4,), "int32", scope="local")
            var = T.alloc_buffer((1,), "int32", scope="local.var")
            T.copy(X, dyn)
            T.copy(dyn, static)
            T.copy(static, frag)
            T.copy(frag, O)

    kernel_ir = trace1(kernel)
    spaces = {b.name: (b.space, b.shape) for b in kernel_ir.allocations}
    assert spaces == {"dyn": (MemorySpace.SHARED_DYN, (N,)), "static": (MemorySpace.SHARED, (N,)),
                      "frag": (MemorySpace.FRAGMENT, (N,)), "local": (MemorySpace.LOCAL, (4,)),
                      "var": (MemorySpace.VAR, (1,))}


def test_alloc_buffer_tiles_compute():
    def kernel(X, O):
        with T.Kernel(1, threads=64):
            s = T.alloc_buffer((N,), "float32", scope="shared.dyn")
            f = T.alloc_buffer((N,), "float32", scope="local.fragment")
            T.copy(X, s)
            for i in T.Parallel(N):
                f[i] = s[i] * 2.0 + 1.0
            T.copy(f, O)

    x = np.random.default_rng(0).uniform(-1, 1, N).astype(np.float32)
    (out,), _ = run_both_ways(kernel, [x], jax.ShapeDtypeStruct((N,), jnp.float32))
    np.testing.assert_array_equal(out, x * 2 + 1)


@pytest.mark.parametrize("case, rule", [
    ("global", r"T.alloc_global: scope 'shared' is not 'global'"),
    ("strides", r"T.alloc_buffer: argument strides= is not supported"),
    ("barrier", r"T.alloc_buffer: scope 'shared.barrier' has its own allocation function; use "
                r"T.alloc_barrier"),
    ("scope", r"T.alloc_buffer: scope 'texture' is not one of"),
    ("var_shape", r"T.alloc_buffer: scope 'local.var' holds one element; shape \(4,\) must "
                  r"be \(1,\)"),
])
def test_refusals_name_what_to_use(case, rule):
    def bad(X, O):
        with T.Kernel(1, threads=32):
            if case == "global":
                T.alloc_global((N,), "float32", scope="shared")
            elif case == "strides":
                T.alloc_buffer((N,), "float32", strides=(1,), scope="shared")
            elif case == "barrier":
                T.alloc_buffer((1,), "uint64", scope="shared.barrier")
            elif case == "scope":
                T.alloc_buffer((N,), "float32", scope="texture")
            else:
                T.alloc_buffer((4,), "int32", scope="local.var")

    with pytest.raises(jtile.JtileTraceError, match=r"bad \(test_alloc_buffer.py:\d+\): "
                       r"test_alloc_buffer.py:\d+: " + rule):
        trace1(bad)
