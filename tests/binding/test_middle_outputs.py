"""Outputs between inputs (TileLang's `out_idx=[3]`), called without them as TileLang calls
them: found from the annotations, and from what the body writes when the shapes fit several
choices; refused by name when nothing singles one out."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
import jtile.language as T
from tests.gpu.compare import seed_of
from tests.language.kernel_runs import run_both_ways

B, H, S, D = 2, 3, 16, 32


def sink_like(B, H, S, D):
    """Output sits between the per-head Sinks and the inputs of one shape, as in TileLang's
    attention-sink kernels."""
    @T.prim_func
    def main(Q: T.Tensor((B, H, S, D), "float32"), K: T.Tensor((B, H, S, D), "float32"),
             Output: T.Tensor((B, H, S, D), "float32"), Sinks: T.Tensor((H,), "float32")):
        with T.Kernel(B * H, threads=128) as bx:
            for s, d in T.Parallel(S, D):
                Output[bx // H, bx % H, s, d] = \
                    Q[bx // H, bx % H, s, d] * K[bx // H, bx % H, s, d] + Sinks[bx % H]
    return main


def output_first(M, N):
    @T.prim_func
    def main(Out: T.Tensor((M, N), "float32"), A: T.Tensor((M, N), "float32"),
             Bias: T.Tensor((N,), "float32")):
        with T.Kernel(1, threads=32) as bx:
            for i, j in T.Parallel(M, N):
                Out[i, j] = A[i, j] - Bias[j]
    return main


def _normal(name, shape):
    return jax.random.normal(jax.random.PRNGKey(seed_of("middle_outputs:" + name)), shape)


def test_output_between_inputs_is_found_from_the_shapes():
    q, k = _normal("q", (B, H, S, D)), _normal("k", (B, H, S, D))
    sinks = _normal("sinks", (H,))
    (got,), _ = run_both_ways(sink_like(B, H, S, D), (q, k, sinks), None)
    want = np.asarray(q, np.float64) * np.asarray(k, np.float64) + \
        np.asarray(sinks, np.float64)[None, :, None, None]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    lowered = jtile.pallas_like(sink_like(B, H, S, D)).lower(q, k, sinks, target="sm_90a")
    assert "-> (Output: float32" in lowered.ir_text()


def test_the_parameter_the_body_writes_decides_between_fitting_choices():
    """Out, A and Bias as (A, Bias): leaving out Out or A both fit the shapes; the body writes
    Out, so Out is the output (the first choice tried left A out)."""
    a, bias = _normal("a", (8, 16)), _normal("bias", (16,))
    got = jtile.pallas_like(output_first(8, 16), interpret=True)(a, bias)
    np.testing.assert_allclose(np.asarray(got), np.asarray(a) - np.asarray(bias), rtol=1e-6)


def test_trailing_outputs_keep_binding_in_order():
    @T.prim_func
    def main(A: T.Tensor((8,), "float32"), Out: T.Tensor((8,), "float32")):
        with T.Kernel(1, threads=32) as bx:
            for i in T.Parallel(8):
                Out[i] = A[i] * 2.0

    a = _normal("trailing", (8,))
    np.testing.assert_allclose(np.asarray(jtile.pallas_like(main, interpret=True)(a)),
                               2 * np.asarray(a), rtol=1e-6)


def test_writes_that_fit_no_choice_are_refused_by_name():
    @T.prim_func
    def main(A: T.Tensor((4, 8), "float32"), Bo: T.Tensor((4, 8), "float32"),
             Co: T.Tensor((4, 8), "float32"), Scale: T.Tensor((8,), "float32")):
        with T.Kernel(1, threads=32) as bx:
            for i, j in T.Parallel(4, 8):
                Bo[i, j] = A[i, j] * Scale[j]
                Co[i, j] = A[i, j]

    a, scale = _normal("a4", (4, 8)), _normal("scale", (8,))
    # Three arrays for four parameters: one output, but the body writes two of them.
    with pytest.raises(jtile.JtileShapeError, match=r"fit more than one choice of output "
                                                    r"parameters .* the body writes"):
        jtile.pallas_like(main, interpret=True)(a, a, scale)
    # Two arrays: Bo and Co are the outputs, the body's writes single them out.
    bo, co = jtile.pallas_like(main, interpret=True)(a, scale)
    np.testing.assert_allclose(np.asarray(bo), np.asarray(a) * np.asarray(scale), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(co), np.asarray(a))


def test_arrays_that_fit_no_choice_keep_the_in_order_error():
    q = jnp.ones((B, H, S, D), jnp.float32)
    with pytest.raises(jtile.JtileShapeError, match=r"no such choice does"):
        jtile.pallas_like(sink_like(B, H, S, D), interpret=True)(q, q, jnp.ones((7,)))
