"""The interpreter's memory: one jnp array per buffer that holds data, and how each starts.

Buffers are keyed by identity (`id`), never by `==`, which builds IR on expressions. Fresh
memory is poisoned (NaN, or -1 cast to the integer type) so a kernel that reads what it never
wrote shows it in its output instead of silently reading zeros.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jtile.binding.varying import pvary, varying_axes
from jtile.errors import JtileError
from jtile.interpret.barriers import Barriers
from jtile.ir.nodes import Buffer, Kernel, SourceLoc
from jtile.ir.types import DType, MemorySpace

# Memory spaces with no data to model: mbarriers and descriptors only order or describe.
STATELESS_SPACES = (MemorySpace.BARRIER, MemorySpace.DESCRIPTOR)


def jnp_dtype(dtype: DType) -> np.dtype:
    """The dtype jax actually computes with (64-bit types narrow unless jax_enable_x64)."""
    return jax.dtypes.canonicalize_dtype(dtype.numpy)


def poison_value(dtype: DType):
    """NaN for floats; -1 cast to the type for integers (all ones); True for bool."""
    np_dtype = jnp_dtype(dtype)
    if dtype.is_float:
        return np.array(np.nan, dtype=np.float32).astype(np_dtype)
    if dtype.is_bool:
        return np.array(True)
    return np.array(-1, dtype=np.int64).astype(np_dtype)


def poisoned(buffer: Buffer) -> jax.Array:
    return jnp.full(buffer.shape, poison_value(buffer.dtype), jnp_dtype(buffer.dtype))


class Context:
    """What every part of the walk needs: the kernel (for error messages) and, inside
    shard_map, the manual axes the kernel's inputs vary over.

    Every buffer the walk updates (outputs, aliased inputs, on-chip allocations) is made to
    vary over all of those axes when it is created: a loop's carry must keep its type, and a
    buffer written with values computed from a varying input varies, as the outputs do
    (`jtile.binding.primitive._output_aval`).
    """

    def __init__(self, kernel: Kernel, varying: frozenset = frozenset(),
                 per_thread: frozenset = frozenset()):
        self.kernel = kernel
        self.varying = frozenset(varying)
        # ids of the private buffers holding one copy per thread (`threads.py`).
        self.per_thread = frozenset(per_thread)
        self.runs_per_thread: dict = {}   # id(statement) -> (statement, bool), see threads.py
        # The mbarriers of the block being traced (barriers.py); block_memory starts them anew.
        self.barriers = Barriers(kernel)

    def vary(self, array: jax.Array) -> jax.Array:
        """`array`, varying over every axis in `self.varying` (a no-op outside shard_map)."""
        if not self.varying:
            return array   # outside shard_map: every write, no type to look up
        missing = self.varying - varying_axes(array)
        return pvary(array, tuple(sorted(missing))) if missing else array

    def error(self, message: str, loc: SourceLoc | None = None) -> JtileError:
        where = f"{loc}: " if loc is not None else ""
        return JtileError(f"{self.kernel.name} ({self.kernel.loc}): {where}{message}")


class Memory:
    """The current array of every stateful buffer; statements replace arrays as they run.

    `slots` maps id(buffer) to a position in `arrays`. An aliased input shares its output's
    slot, so reads of either see writes to either (they are one allocation on the GPU).
    """

    def __init__(self, ctx: Context, slots: dict, arrays: Sequence[jax.Array]):
        self.ctx = ctx
        self.slots = slots
        self.arrays = list(arrays)

    def _slot(self, buffer: Buffer, loc) -> int:
        slot = self.slots.get(id(buffer))
        if slot is None:
            raise self.ctx.error(f"{buffer.describe()} holds no data in interpret mode "
                                 f"({buffer.space.value} buffers cannot be read or written "
                                 "element-wise)", loc)
        return slot

    def read(self, buffer: Buffer, loc=None) -> jax.Array:
        if buffer.view_of is not None:  # a view holds no array: it reinterprets its base's
            from jtile.interpret.views import read_view

            return read_view(self, buffer, loc)
        return self.arrays[self._slot(buffer, loc)]

    def write(self, buffer: Buffer, array: jax.Array, loc=None) -> None:
        if buffer.view_of is not None:
            from jtile.interpret.views import write_view

            return write_view(self, buffer, array, loc)
        slot = self._slot(buffer, loc)
        old = self.arrays[slot]
        self.arrays[slot] = self.ctx.vary(jnp.asarray(array, old.dtype).reshape(old.shape))

    def per_thread(self, buffer: Buffer) -> bool:
        """Whether `buffer`'s array has a leading axis of threads (one copy per thread)."""
        base = buffer if buffer.view_of is None else buffer.view_of
        return id(base) in self.ctx.per_thread

    def update(self, buffer: Buffer, fn, loc=None) -> None:
        """Replaces `buffer`'s array `a` by `fn(a)`; a per-thread buffer gets the same update
        in every thread's copy (block-wide code writing it)."""
        array = self.read(buffer, loc)
        self.write(buffer, jax.vmap(fn)(array) if self.per_thread(buffer) else fn(array), loc)

    def fork(self, arrays: Sequence[jax.Array]) -> "Memory":
        """The same layout over other arrays (a loop body's or a branch's carry)."""
        return Memory(self.ctx, self.slots, arrays)

    def carry(self) -> tuple:
        return tuple(self.arrays)


def global_memory(ctx: Context, inputs: Sequence[jax.Array], aliases: dict) -> Memory:
    """Memory for the kernel's parameters: inputs as given, outputs poisoned or aliased."""
    kernel = ctx.kernel
    slots, arrays = {}, []
    for index, (buffer, array) in enumerate(zip(kernel.inputs, inputs)):
        slots[id(buffer)] = len(arrays)
        arrays.append(ctx.vary(array))
    by_output = {out: inp for inp, out in aliases.items()}
    for index, buffer in enumerate(kernel.outputs):
        if index in by_output:
            # The output is the aliased input's storage: both names share one slot.
            slot = slots[id(kernel.inputs[by_output[index]])]
            slots[id(buffer)] = slot
        else:
            slots[id(buffer)] = len(arrays)
            arrays.append(ctx.vary(poisoned(buffer)))
    return Memory(ctx, slots, arrays)


def block_memory(globals_: Memory, init_value) -> Memory:
    """Global memory plus a fresh copy of every on-chip allocation for one block.

    A per-thread buffer gets a leading axis of the block's threads. `init_value(buffer)`
    evaluates an `alloc_var` init expression (it may read block indices, and for a per-thread
    variable the thread index: then one value per thread).
    """
    kernel = globals_.ctx.kernel
    # Every block starts with fresh barriers; a block is traced once for all blocks, and the
    # phases of a kernel with grid barriers carry its state from one phase to the next.
    globals_.ctx.barriers = Barriers(kernel)
    slots = dict(globals_.slots)
    arrays = list(globals_.arrays)
    for buffer in kernel.allocations:
        if buffer.space in STATELESS_SPACES:
            continue
        slots[id(buffer)] = len(arrays)
        threads = (kernel.threads,) if id(buffer) in globals_.ctx.per_thread else ()
        if buffer.space is MemorySpace.VAR:
            init = jnp.zeros((), jnp_dtype(buffer.dtype)) if buffer.init is None \
                else jnp.asarray(init_value(buffer), jnp_dtype(buffer.dtype))
            init = init.reshape(init.shape + (1,) * len(buffer.shape))
            array = jnp.broadcast_to(init, threads + tuple(buffer.shape))
        else:
            array = jnp.broadcast_to(poisoned(buffer), threads + tuple(buffer.shape))
        arrays.append(globals_.ctx.vary(array))
    return Memory(globals_.ctx, slots, arrays)
