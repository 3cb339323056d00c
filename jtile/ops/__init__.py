"""Ready-made kernels for training: functions over `jax.Array`s built from jtile kernels.

Each op computes in float32 and returns its input's dtype, is differentiable with `jax.grad`
(a `jax.custom_vjp` whose backward is jtile kernels too), batchable with `jax.vmap`, and
correct inside `jax.shard_map`: the cotangent of a replicated input comes back replicated.
Each takes `interpret=None`: None follows `JTILE_INTERPRET`, and runs in interpret mode on a
machine whose default JAX backend is not a GPU.
"""

from jtile.ops.attention import attention
from jtile.ops.cross_entropy import cross_entropy
from jtile.ops.linear_cross_entropy import linear_cross_entropy
from jtile.ops.matmul import matmul
from jtile.ops.norms import layer_norm, rms_norm
from jtile.ops.ragged_dot import ragged_dot
from jtile.ops.rotary import rotary
from jtile.ops.softmax import softmax
from jtile.ops.swiglu import swiglu

__all__ = ["attention", "rms_norm", "layer_norm", "softmax", "cross_entropy", "swiglu", "rotary",
           "ragged_dot", "matmul", "linear_cross_entropy"]
