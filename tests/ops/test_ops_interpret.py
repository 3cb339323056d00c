"""Every op, forward and backward, against its jax.numpy definition in interpret mode.

Rows of 96 (not a power of 2: fragments wider than the row, masked) and 128 (fragments the row's
width), float32 and bfloat16, a leading batch shape, vmap; rows of 16384 float32, whose
backward streams rows straight into registers (two steps do not fit shared memory). Shapes are small: interpret mode runs every kernel
with jax.numpy on the CPU.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jtile.ops as ops
from tests.ops import references as ref
from tests.ops.cases import NAMES, keys, make, normal


def _run(fn, args):
    return fn(*args, interpret=True)


def _cotangent_loss(fn, outputs_like, name):
    """sum(out * fixed random cotangent) over every output, so each output's gradient counts."""
    leaves = jax.tree_util.tree_leaves(outputs_like)
    cots = [normal(k, leaf.shape, jnp.float32) for k, leaf in zip(keys(name, len(leaves)), leaves)]

    def loss(*args):
        outs = jax.tree_util.tree_leaves(fn(*args))
        return sum(jnp.sum(o.astype(jnp.float32) * c) for o, c in zip(outs, cots))
    return loss


# Every op on padded rows (96 columns); whole rows (128) are covered by the bfloat16 tests
# below, and here by two ops, to keep interpret-mode CI time small.
@pytest.mark.parametrize("name, n", [(name, 96) for name in NAMES]
                         + [("rms_norm", 128), ("layer_norm", 128)]
                         + [(name, 16384) for name in ("rms_norm", "rms_norm_residual",
                                                       "layer_norm")])
def test_forward_and_backward_float32(name, n):
    fn, reference, args, argnums = make(name, jnp.float32, n=n)
    out = jax.jit(lambda *a: _run(fn, a))(*args)
    expected = reference(*args)
    for o, e in zip(jax.tree_util.tree_leaves(out), jax.tree_util.tree_leaves(expected)):
        assert o.dtype == e.dtype
        ref.assert_close(o, e, jnp.float32)
    loss = _cotangent_loss(lambda *a: _run(fn, a), expected, name)
    ref_loss = _cotangent_loss(reference, expected, name)
    grads = jax.jit(jax.grad(loss, argnums))(*args)
    ref_grads = jax.grad(ref_loss, argnums)(*args)
    for g, r in zip(grads, ref_grads):
        assert g.shape == r.shape and g.dtype == r.dtype
        ref.assert_close(g, r, jnp.float32, ref.GRAD_TOLERANCE)


@pytest.mark.parametrize("name", NAMES)
def test_bfloat16_forward_and_backward(name):
    fn, reference, args, argnums = make(name, jnp.bfloat16, lead=(2, 3), n=128)
    out = _run(fn, args)
    expected = reference(*args)
    for o, e in zip(jax.tree_util.tree_leaves(out), jax.tree_util.tree_leaves(expected)):
        assert o.dtype == e.dtype
        ref.assert_close(o, e, jnp.bfloat16)
    loss = _cotangent_loss(lambda *a: _run(fn, a), expected, name)
    # The reference gradient in float32 from the same bfloat16 inputs.
    up = lambda *a: reference(*(x.astype(jnp.float32) if x.dtype == jnp.bfloat16 else x  # noqa
                                for x in a))
    ref_grads = jax.grad(_cotangent_loss(up, expected, name), argnums)(*args)
    for g, r in zip(jax.grad(loss, argnums)(*args), ref_grads):
        assert g.dtype == args[0].dtype or g.dtype == jnp.float32
        ref.assert_close(g, r, jnp.bfloat16, ref.GRAD_TOLERANCE)


def test_float16_rms_norm_forward():
    fn, reference, args, _ = make("rms_norm", jnp.float16, lead=(4,), n=128)
    out = _run(fn, args)
    assert out.dtype == jnp.float16
    ref.assert_close(out, reference(*args), jnp.float16)


def test_cross_entropy_over_a_vocabulary_wider_than_one_chunk():
    k = keys("wide-vocab", 2)
    logits = normal(k[0], (3, 9000), jnp.float32, 3.0)
    labels = jax.random.randint(k[1], (3,), 0, 9000)
    ref.assert_close(ops.cross_entropy(logits, labels, interpret=True),
                     ref.cross_entropy(logits, labels), jnp.float32)
    g = jax.grad(lambda x: jnp.sum(ops.cross_entropy(x, labels, interpret=True)))(logits)
    r = jax.grad(lambda x: jnp.sum(ref.cross_entropy(x, labels)))(logits)
    ref.assert_close(g, r, jnp.float32)


@pytest.mark.parametrize("rows, vocab, dtype", [
    (5, 2049, jnp.float32),    # rows one past the 2048-element tile: two rows per tile
    (4, 4096, jnp.bfloat16),   # rows exactly one 4096-element tile
    (3, 5000, jnp.bfloat16),   # row starts inside tiles
    (6, 700, jnp.float32),     # narrower than a tile: each element finds its row
    (3, 8195, jnp.bfloat16),   # the wide-row forward: rows start at odd addresses
    (2, 4099, jnp.float32),
])
def test_cross_entropy_gradient_across_row_boundaries_inside_a_tile(rows, vocab, dtype):
    """The loss, and the backward's wide-row kernel (a tile spans two rows) and its generic
    kernel; the forward's wide-row kernel (rows of 16 KB or more, read from aligned starts
    with the neighbouring rows masked out); labels on the first and last column of rows."""
    k = keys(f"ce-rows-{rows}-{vocab}", 3)
    # Rows offset from each other, so that a row's logsumexp taken for its neighbour's shows.
    offsets = 4.0 * jnp.arange(rows, dtype=jnp.float32)[:, None]
    logits = (normal(k[0], (rows, vocab), jnp.float32, 3.0) + offsets).astype(dtype)
    labels = jax.random.randint(k[1], (rows,), 0, vocab).at[0].set(0).at[-1].set(vocab - 1)
    cot = jax.random.normal(k[2], (rows,), jnp.float32)
    ref.assert_close(ops.cross_entropy(logits, labels, interpret=True),
                     ref.cross_entropy(logits.astype(jnp.float32), labels), jnp.float32)
    g = jax.grad(lambda x: jnp.sum(ops.cross_entropy(x, labels, interpret=True) * cot))(logits)
    r = jax.grad(lambda x: jnp.sum(ref.cross_entropy(x.astype(jnp.float32), labels) * cot))(
        logits)
    ref.assert_close(g, r, dtype)


@pytest.mark.parametrize("heads", [3, 12])
def test_rotary_with_a_head_count_that_is_not_a_power_of_2(heads):
    """The training step's 12 heads: each token's halves load and store as whole tiles whose
    rows past the heads read zeros and are dropped; the gradients of x, cos and sin."""
    k = keys(f"rotary-heads-{heads}", 4)
    x = normal(k[0], (2, 5, heads, 64), jnp.float32)
    angle = jax.random.uniform(k[1], (5, 32), jnp.float32, 0, 6.3)
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    cot = normal(k[2], x.shape, jnp.float32)
    ref.assert_close(ops.rotary(x, cos, sin, interpret=True), ref.rotary(x, cos, sin),
                     jnp.float32)

    def loss(f):
        return lambda *a: jnp.sum(f(*a) * cot)

    got = jax.grad(loss(functools.partial(ops.rotary, interpret=True)), (0, 1, 2))(x, cos, sin)
    want = jax.grad(loss(ref.rotary), (0, 1, 2))(x, cos, sin)
    for g, w in zip(got, want):
        ref.assert_close(g, w, jnp.float32, ref.GRAD_TOLERANCE)


def test_rotary_with_constant_tables_rotates_the_cotangent_back(monkeypatch):
    """Tables computed from constants (a model's usual case) are not differentiated: the
    backward is the forward kernel at the opposite angle, without x's second read and the
    tables' batch sums; with a table differentiated the full backward runs."""
    from tests.ops.launches import compile_every_launch

    launched = compile_every_launch(monkeypatch)
    k = keys("rotary-constant-tables", 3)
    x = normal(k[0], (2, 6, 4, 32), jnp.float32)
    cot = normal(k[1], x.shape, jnp.float32)
    angle = np.asarray(jax.random.uniform(k[2], (6, 16), jnp.float32, 0, 6.3))

    def loss(f):
        return lambda x: jnp.sum(f(x, jnp.cos(angle), jnp.sin(angle)) * cot)

    got = jax.jit(jax.grad(loss(functools.partial(ops.rotary, interpret=True))))(x)
    ref.assert_close(got, jax.grad(loss(ref.rotary))(x), jnp.float32, ref.GRAD_TOLERANCE)
    assert [name for name, _ in launched] == ["rotary_fwd", "rotary_back"]

    launched.clear()
    cos = jnp.cos(jnp.asarray(angle))
    jax.grad(lambda x, c: jnp.sum(ops.rotary(x, c, jnp.sin(angle), interpret=True) * cot),
             (0, 1))(x, cos)
    assert [name for name, _ in launched][:2] == ["rotary_fwd", "rotary_bwd"]


def test_softmax_over_a_middle_axis():
    x = normal(keys("softmax-axis", 1)[0], (4, 16, 8), jnp.float32, 2.0)
    ref.assert_close(ops.softmax(x, axis=1, interpret=True), jax.nn.softmax(x, axis=1),
                     jnp.float32)


@pytest.mark.parametrize("name", ["rms_norm", "swiglu"])
def test_check_grads(name):
    fn, _, args, argnums = make(name, jnp.float32, lead=(2,), n=32)
    f = lambda *d: fn(*d, *args[len(d):], interpret=True)  # noqa: E731
    check_grads(f, args[:len(argnums)], order=1, modes=("rev",), atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("name", NAMES)
def test_vmap_matches_a_loop(name):
    fn, reference, args, _ = make(name, jnp.float32, lead=(2, 3), n=64)
    # Batch every array argument along a new leading axis of 2 (different values per slice).
    batched = tuple(jnp.stack([a, a[::-1] if a.ndim and a.shape[0] > 1 else a])
                    if i == 0 else jnp.stack([a, a]) for i, a in enumerate(args))
    out = jax.vmap(lambda *a: _run(fn, a))(*batched)
    for slot in range(2):
        expected = reference(*(b[slot] for b in batched))
        got = jax.tree_util.tree_map(lambda o: o[slot], out)
        for o, e in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(expected)):
            ref.assert_close(o, e, jnp.float32)


def test_interpret_none_follows_the_backend(monkeypatch):
    from jtile.ops.mode import resolve_interpret

    monkeypatch.delenv("JTILE_INTERPRET", raising=False)
    assert resolve_interpret(None) is (jax.default_backend() != "gpu")
    assert resolve_interpret(True) is True and resolve_interpret(False) is False
    monkeypatch.setenv("JTILE_INTERPRET", "1")
    assert resolve_interpret(None) is True
    x = normal(keys("default-mode", 1)[0], (4, 32), jnp.float32)
    np.testing.assert_allclose(ops.softmax(x), jax.nn.softmax(x), rtol=1e-5, atol=1e-6)


def test_backward_row_staging_depends_on_what_fits():
    from jtile.ops.rows import STAGING_BYTES, row_tiling, staging_stages

    assert staging_stages(row_tiling("rms_norm", 4096, 4096), (2, 2)) == 4
    assert staging_stages(row_tiling("rms_norm", 4096, 4096), (4, 4, 4)) == 2
    wide = row_tiling("rms_norm", 8, 16384)
    assert 2 * wide.padded * 4 * 2 > STAGING_BYTES
    assert staging_stages(wide, (4, 4)) == 0

