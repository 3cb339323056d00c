"""One test per user mistake of API.md section 3: each is a JtileError whose message names the
kernel, the source line, the buffers and shapes, and the broken rule."""

import jax
import jax.numpy as jnp
import pytest

import jtile
import jtile.language as T

S = jax.ShapeDtypeStruct
F32 = jnp.float32


def lower(kernel, *specs, target="sm_90a", **kwargs):
    return jtile.pallas_like(kernel, **kwargs).lower(*specs, target=target)


def test_copy_shape_mismatch():
    def bad_copy(X):
        O = T.empty((64,), "float32")
        with T.Kernel(1, threads=128):
            s = T.alloc_shared((32,), "float32")
            T.copy(X[0:64], s)
            T.copy(s, O[0:32])
        return O

    with pytest.raises(jtile.JtileError, match=r"bad_copy \(test_user_errors.py:\d+\): T.copy at "
                       r"test_user_errors.py:\d+: src X tile \(64,\) and dst s tile \(32,\)"):
        lower(bad_copy, S((64,), F32))


def test_gemm_shape_mismatch():
    def bad_gemm(A, B):
        O = T.empty((64, 64), "float32")
        with T.Kernel(1, threads=128):
            a = T.alloc_shared((64, 32), "float16")
            b = T.alloc_shared((64, 64), "float16")
            acc = T.alloc_fragment((64, 64), "float32")
            T.copy(A, a)
            T.copy(B, b)
            T.gemm(a, b, acc)
            T.copy(acc, O)
        return O

    with pytest.raises(jtile.JtileShapeError, match=r"T.gemm at .*A a is \(64, 32\), B b is "
                       r"\(64, 64\), C acc is \(64, 64\)"):
        lower(bad_gemm, S((64, 32), jnp.float16), S((64, 64), jnp.float16))


def test_shared_memory_over_the_limit():
    def too_big(X):
        O = T.empty((8,), "float32")
        with T.Kernel(1, threads=128):
            s = T.alloc_shared((256, 256), "float32")
            T.copy(X[0:8], s[0, 0:8])
            T.copy(s[0, 0:8], O)
        return O

    with pytest.raises(jtile.JtileTargetError, match=r"shared memory needs 262144 bytes \(s "
                       r"float32\[256, 256\] = 262144 bytes\) but sm_90a allows 232448"):
        lower(too_big, S((8,), F32)).compile()


@pytest.mark.parametrize("shape, needed", [((128, 48), 48), ((128, 16), 16), ((128, 1024), 1024)])
def test_tmem_column_rules(shape, needed):
    def tmem_kernel(X):
        O = T.empty((8,), "float32")
        with T.Kernel(1, threads=128):
            T.alloc_tmem(shape, "float32")
            T.copy(X, O)
        return O

    with pytest.raises(jtile.JtileError, match=rf"needs {needed} TMEM columns; the column count "
                       r"must be a power of 2 between 32 and 512"):
        lower(tmem_kernel, S((8,), F32), target="sm_100a")


def test_tmem_refused_before_blackwell_and_compiles_for_sm100a():
    def tmem_kernel(X):
        O = T.empty((8,), "float32")
        with T.Kernel(1, threads=128):
            T.alloc_tmem((128, 64), "float32")
            T.copy(X, O)
        return O

    with pytest.raises(jtile.JtileTargetError, match=r"T.alloc_tmem .* needs Blackwell tensor "
                       r"memory \(sm_100a and later\); the target is sm_90a"):
        lower(tmem_kernel, S((8,), F32), target="sm_90a")
    compiled = lower(tmem_kernel, S((8,), F32), target="sm_100a").compile()
    assert compiled.cubin[:4] == b"\x7fELF"


def test_barrier_refused_on_sm80():
    def barrier_kernel(X):
        O = T.empty((8,), "float32")
        with T.Kernel(1, threads=128):
            bar = T.alloc_barrier(128)
            T.copy(X, O)
            T.mbarrier_arrive(bar)
        return O

    with pytest.raises(jtile.JtileTargetError, match=r"T.alloc_barrier \(bar\) needs mbarriers, "
                       r"which arrived with sm_90; the target is sm_80"):
        lower(barrier_kernel, S((8,), F32), target="sm_80")


def test_reducer_read_before_finalize():
    def early_read(X):
        O = T.empty((32,), "float32")
        with T.Kernel(1, threads=128):
            r = T.alloc_reducer((32,), "float32")
            T.fill(r, 0)
            for i, j in T.Parallel(8, 32):
                r[j] += X[i, j]
            for j in T.Parallel(32):
                O[j] = r[j]
        return O

    with pytest.raises(jtile.JtileError, match=r"reducer r .* is read before "
                       r"T.finalize_reducer\(r\)"):
        jtile.pallas_like(early_read, interpret=True)(jnp.ones((8, 32)))


def test_output_never_written():
    def forgets(X, O):
        with T.Kernel(1, threads=128):
            s = T.alloc_shared((8,), "float32")
            T.copy(X, s)

    with pytest.raises(jtile.JtileError, match=r"forgets .*output O .* is never written"):
        jtile.pallas_like(forgets, out_shape=S((8,), F32), interpret=True)(jnp.ones(8))


def test_tensor_annotation_mismatch():
    def annotated(X: T.Tensor((16, 16), "float32"), O):
        with T.Kernel(1, threads=128):
            T.copy(X, O)

    with pytest.raises(jtile.JtileShapeError, match=r"input parameter `X` has shape \(8, 16\) but "
                       r"is annotated T.Tensor\(\(16, 16\), float32\)"):
        jtile.pallas_like(annotated, out_shape=S((8, 16), F32), interpret=True)(
            jnp.ones((8, 16)))


def test_python_if_on_traced_value_in_a_plain_helper():
    # The kernel body's own `if` is rewritten (tests/trace/test_python_control_flow.py); a
    # plain helper it calls is not, and the error names the fixes.
    def helper(X, O, bx):
        if bx > 0:
            T.copy(X, O)

    def branchy(X, O):
        with T.Kernel(4, threads=128) as bx:
            helper(X, O, bx)

    with pytest.raises(jtile.JtileTraceError, match=r"T.If.*T.if_then_else.*`helper`.*@T.macro"):
        jtile.pallas_like(branchy, out_shape=S((8,), F32), interpret=True)(jnp.ones(8))


def test_no_gpu_without_interpret():
    def copy(X, O):
        with T.Kernel(1, threads=128):
            T.copy(X, O)

    if jax.default_backend() == "gpu":
        pytest.skip("this machine has a GPU")
    with pytest.raises(jtile.JtileError, match="interpret=True"):
        jtile.pallas_like(copy, out_shape=S((8,), F32))(jnp.ones(8))


def test_tile_op_inside_parallel():
    def copy_per_element(X, O):
        with T.Kernel(1, threads=128):
            s = T.alloc_shared((8,), "float32")
            for i in T.Parallel(8):
                T.copy(X, s)
            T.copy(s, O)

    with pytest.raises(jtile.JtileError, match=r"T.copy inside T.Parallel \(opened at "
                       r"test_user_errors.py:\d+\); tile operations run once per block"):
        jtile.pallas_like(copy_per_element, out_shape=S((8,), F32), interpret=True)(jnp.ones(8))
