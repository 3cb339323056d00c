"""Element accesses to global memory outside the tensor: a write is dropped and a read gives 0,
in interpret mode and in compiled code alike (TileLang's safe-memory-access rule), so a
TileLang kernel that leaves edge guards to the compiler is right at ragged sizes."""

import jax
import jax.numpy as jnp
import numpy as np

import jtile
import jtile.language as T

N = 1000  # not a multiple of the 256-wide tiles


def shifted_sum(X, O):
    """O[i] = X[i] + X[i + 1], with X[N] read past the end: no guards written by hand."""
    with T.Kernel(T.ceildiv(N, 256), threads=256) as bx:
        for i in T.Parallel(256):
            O[bx * 256 + i] = X[bx * 256 + i] + X[bx * 256 + i + 1]


def _call():
    return jtile.pallas_like(shifted_sum, out_shape=jax.ShapeDtypeStruct((N,), jnp.float32))


def test_interpret_mode_reads_zero_past_the_end_and_drops_writes_there():
    x = jax.random.normal(jax.random.key(3), (N,), jnp.float32)
    out = np.asarray(jtile.pallas_like(shifted_sum, interpret=True,
                                       out_shape=jax.ShapeDtypeStruct((N,), jnp.float32))(x))
    expected = np.asarray(x) + np.append(np.asarray(x)[1:], 0.0)
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)


def test_compiled_code_guards_what_it_cannot_prove_in_bounds():
    source = _call().lower(jax.ShapeDtypeStruct((N,), jnp.float32), target="sm_80").cuda_source()
    (store,) = [line for line in source.splitlines() if " O[" in line]
    assert store.strip().startswith(f"if ((unsigned)(((bx * 256) + i)) < {N}u) O[")
    assert f"(((unsigned)((((bx * 256) + i) + 1)) < {N}u) ? X[" in store
    _call().lower(jax.ShapeDtypeStruct((N,), jnp.float32), target="sm_80").compile()


def test_provably_inside_accesses_stay_unguarded():
    def add(X, O):
        with T.Kernel(4, threads=256) as bx:
            for i in T.Parallel(256):
                O[bx * 256 + i] = X[bx * 256 + i] * 2.0

    call = jtile.pallas_like(add, out_shape=jax.ShapeDtypeStruct((1024,), jnp.float32))
    source = call.lower(jax.ShapeDtypeStruct((1024,), jnp.float32), target="sm_80").cuda_source()
    assert "unsigned" not in "".join(line for line in source.splitlines() if " O[" in line)
