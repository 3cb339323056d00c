"""The MoE example trains its block on jtile.ops.ragged_dot (interpret mode, tiny size) with
the same losses, step by step, as the same block on jax.lax.ragged_dot."""

import numpy as np

from examples import moe


def test_moe_block_trains_like_the_jax_block():
    jtile_losses, jax_losses = moe.main(["--interpret", "--steps", "3", "--tokens", "48"])
    assert len(jtile_losses) == len(jax_losses) == 3
    assert all(np.isfinite(jtile_losses))
    np.testing.assert_allclose(jtile_losses, jax_losses, rtol=2e-2)
