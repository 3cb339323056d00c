"""Kernel functions that launch several kernels, and `T.alloc_global` workspaces.

A TileLang function may open `with T.Kernel(...)` several times, one block after another: each
block is its own launch, run in program order, and each sees what the ones before wrote to
global memory (a split-KV decoder writes partial results to a workspace in one kernel and
combines them in the next). `T.alloc_global` workspaces are global memory that lives for the
call.

jtile traces each block into an ordinary `Kernel`, so every pass, the interpreter and the CUDA
path see nothing new. What the function adds is bookkeeping over *storages*: every global
array of the call (an input, an output, a workspace) is one storage, and each launch takes the
current value of the storages it reads as inputs and returns new values for the ones it
writes. A launch that writes a storage with an earlier value takes that value as an input
aliased to its output (input_output_aliases), so what it leaves unwritten is kept and, compiled,
the array is updated in place. The binding (`jtile.binding.kernel_sequence`) threads the JAX
arrays through the launches.

On-chip buffers (shared, fragment, local, var) and block/thread indices belong to the block that
made them; a later block that uses one is refused.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Iterator, Optional

from jtile.errors import JtileTraceError
from jtile.ir.nodes import Buffer, Kernel, SourceLoc, Stmt, Var, VarKind
from jtile.ir.types import MemorySpace
from jtile.ir.walk import buffers_written, statements

__all__ = ["Storage", "Launch", "KernelSequence", "add_workspace", "close_kernel",
           "finish_trace", "sequence_text"]


@dataclass(frozen=True, eq=False)
class Storage:
    """One global array of the call.

    Attributes:
        name: for messages.
        members: the parameter buffers that name it: an output and the input aliased to it
            (input_output_aliases), or one input, or one workspace.
        source: the index of the call's input it starts as, or None (uninitialised).
        writable: False for an input that is not aliased to an output (inputs are read-only).
    """

    name: str
    members: tuple
    source: Optional[int]
    writable: bool


@dataclass(frozen=True, eq=False)
class Launch:
    """One `with T.Kernel(...)` block as an ordinary kernel, and where its arrays come from.

    Attributes:
        kernel: the kernel; its inputs and outputs are the storages the block uses.
        aliases: `(input index, output index)` pairs of the kernel (input_output_aliases).
        reads: per kernel input, the index of the storage whose current value it takes.
        writes: per kernel output, the index of the storage it replaces.
    """

    kernel: Kernel
    aliases: tuple
    reads: tuple
    writes: tuple

    @property
    def alias_map(self) -> dict:
        return dict(self.aliases)


@dataclass(frozen=True, eq=False)
class KernelSequence:
    """A kernel function that is several launches (or one launch with workspaces).

    `inputs`, `outputs` and `num_inputs` describe the call as a whole, as a `Kernel`'s do;
    `results` gives, per output, the storage holding it after the last launch.
    """

    name: str
    loc: SourceLoc
    inputs: tuple
    outputs: tuple
    storages: tuple
    launches: tuple
    results: tuple

    @property
    def num_inputs(self) -> int:
        return len(self.inputs)

    def replace_kernels(self, kernels) -> "KernelSequence":
        launches = tuple(dataclasses.replace(launch, kernel=kernel)
                         for launch, kernel in zip(self.launches, kernels))
        return dataclasses.replace(self, launches=launches)


# ---------------------------------------------------------------------------- while tracing


def add_workspace(builder, buffer: Buffer) -> Buffer:
    """Records a `T.alloc_global` workspace: it belongs to the call, not to one block."""
    builder.workspaces.append(buffer)
    return buffer


def close_kernel(builder) -> None:
    """Moves the finished `with T.Kernel(...)` block out of the builder and resets the
    per-block state, so the next block traces as a fresh kernel."""
    traced = builder.finish()
    builder.traced_kernels.append((traced, builder.kernel_loc or builder.loc))
    builder.grid = None
    builder.threads = None
    builder.block_vars = ()
    builder.thread_var = None
    builder.thread_extents = ()
    builder.kernel_body = None
    builder.kernel_loc = None
    builder.allocations = []
    builder.open_ifs = []
    # Views of global arrays may be made anywhere and used by any block; the rest of the
    # kernel-level settings (cluster dims, views of on-chip tiles) belong to the block.
    views = [v for v in builder.attrs.get("views", ()) if v.view_of.space is MemorySpace.GLOBAL]
    builder.attrs = {"views": views} if views else {}


def finish_trace(builder, aliases: Optional[dict] = None):
    """The traced function: a `Kernel` when it is one block without workspaces (the common
    case, unchanged), else a `KernelSequence`."""
    if not builder.traced_kernels and not builder.workspaces:
        return builder.finish()
    close_kernel(builder)
    return _build_sequence(builder, dict(aliases or {}))


# ---------------------------------------------------------------------------- building


def _storages(builder, aliases: dict) -> tuple:
    """The call's storages: its unaliased inputs, its outputs (each with the input aliased to
    it, whose value it starts as), its workspaces."""
    inputs, outputs = builder.inputs, builder.outputs
    by_output = {o: i for i, o in aliases.items()
                 if 0 <= i < len(inputs) and 0 <= o < len(outputs)}
    storages = []
    for i, buffer in enumerate(inputs):
        if i not in by_output.values():
            storages.append(Storage(buffer.name, (buffer,), i, False))
    for o, buffer in enumerate(outputs):
        i = by_output.get(o)
        members = (buffer,) if i is None else (buffer, inputs[i])
        storages.append(Storage(buffer.name, members, i, True))
    for buffer in builder.workspaces:
        storages.append(Storage(buffer.name, (buffer,), None, True))
    return tuple(storages)


def _build_sequence(builder, aliases: dict) -> KernelSequence:
    storages = _storages(builder, aliases)
    storage_of = {id(m): s for s, storage in enumerate(storages) for m in storage.members}
    # A launch lists its parameters in the call's order: inputs, outputs, workspaces.
    order = {id(b): n for n, b in enumerate(list(builder.inputs) + list(builder.outputs)
                                            + list(builder.workspaces))}
    traced = builder.traced_kernels
    has_value = [storage.source is not None for storage in storages]
    names = [builder.name] if len(traced) == 1 else \
        [f"{builder.name}_{index}" for index in range(len(traced))]
    # A value carried over from another block is the root cause of most other complaints.
    for index, (kernel, kernel_loc) in enumerate(traced):
        _check_own_values((builder, names[index], kernel_loc), kernel, index, traced)
    launches = []
    for index, (kernel, kernel_loc) in enumerate(traced):
        where = (builder, names[index], kernel_loc)
        launch = _launch(where, kernel, storages, storage_of, order, has_value)
        for s in launch.writes:
            has_value[s] = True
        launches.append(launch)
    results = tuple(storage_of[id(b)] for b in builder.outputs)
    for o, s in enumerate(results):
        if not has_value[s]:
            raise builder.error(f"output {builder.outputs[o].describe()} is never written by "
                                f"any of the {len(traced)} kernels; every output must be "
                                "stored to, copied into or filled")
    return KernelSequence(builder.name, builder.loc, tuple(builder.inputs),
                          tuple(builder.outputs), storages, tuple(launches), results)


def _launch(where, kernel: Kernel, storages, storage_of: dict, order: dict,
            has_value: list) -> Launch:
    """The block as a kernel whose parameters are the storages it uses (see the module doc)."""
    builder, name, kernel_loc = where
    used: dict = {}      # storage index -> referenced member buffers, in first-use order
    for buffer in _referenced_globals(kernel):
        s = storage_of.get(id(buffer))
        if s is None:
            raise _error(where, f"{buffer.describe()} is not a parameter of the kernel "
                         "function or a T.alloc_global workspace")
        members = used.setdefault(s, [])
        if all(m is not buffer for m in members):
            members.append(buffer)
    written: dict = {}   # storage index -> first statement writing it (for messages)
    for stmt in statements(kernel.body):
        for buffer in buffers_written(stmt):
            s = storage_of.get(id(buffer))
            if s is not None:
                written.setdefault(s, stmt)
    inputs, outputs, aliases = [], [], []   # (order key, buffer, storage), pairs of buffers
    taken = {b.name for storage in storages for b in storage.members}
    taken |= {b.name for b in kernel.allocations}
    for s, members in used.items():
        storage = storages[s]
        key = min(order[id(m)] for m in members)
        if s not in written:
            inputs += [(order[id(m)], m, s) for m in members]
            continue
        if not storage.writable:
            stmt = written[s]
            raise _error(where, f"{stmt.loc}: input {members[0].describe()} is written; inputs "
                         "are read-only unless aliased to an output with input_output_aliases")
        # The output member when the block names it, else the (aliased) input it writes.
        out = storage.members[0] if any(m is storage.members[0] for m in members) else \
            members[0]
        outputs.append((key, out, s))
        others = [m for m in members if m is not out]
        if not others and has_value[s]:
            # The launch starts from the storage's value: what it does not write is kept.
            fresh = Buffer(_unique(f"{out.name}_in", taken), out.shape, out.dtype,
                           MemorySpace.GLOBAL, out.loc)
            taken.add(fresh.name)
            others = [fresh]
        for m in others:
            inputs.append((key, m, s))
            aliases.append((m, out))
    if not outputs:
        raise _error(where, "the kernel writes no global memory (no output and no "
                     "T.alloc_global workspace), so launching it has no effect; store its "
                     "results to an output or a workspace that a later kernel reads")
    inputs.sort(key=lambda item: item[0])
    outputs.sort(key=lambda item: item[0])
    in_buffers = [b for _, b, _ in inputs]
    out_buffers = [b for _, b, _ in outputs]
    pairs = tuple(sorted((_index(in_buffers, i), _index(out_buffers, o)) for i, o in aliases))
    kernel = kernel.replace(name=name, loc=kernel_loc, params=tuple(in_buffers + out_buffers),
                            num_inputs=len(in_buffers),
                            attrs=_launch_attrs(kernel, in_buffers + out_buffers))
    return Launch(kernel, pairs, tuple(s for _, _, s in inputs),
                  tuple(s for _, _, s in outputs))


def _launch_attrs(kernel: Kernel, params: list) -> dict:
    """The block's settings, with only the views of global arrays that it has as
    parameters (the code generator declares each view from its array's pointer)."""
    attrs = dict(kernel.attrs)
    if "views" in attrs:
        attrs["views"] = [v for v in attrs["views"]
                          if v.view_of.space is not MemorySpace.GLOBAL
                          or any(p is v.view_of for p in params)]
    return attrs


def _index(buffers: list, buffer: Buffer) -> int:
    return next(n for n, b in enumerate(buffers) if b is buffer)


def _unique(name: str, taken: set) -> str:
    candidate, n = name, 1
    while candidate in taken:
        candidate, n = f"{name}_{n}", n + 1
    return candidate


def _error(where, message: str) -> JtileTraceError:
    builder, name, kernel_loc = where
    return JtileTraceError(f"{builder.name} ({builder.loc}): T.Kernel at {kernel_loc} "
                           f"(launch {name}): {message}")


# ---------------------------------------------------------------------------- references


def _references(stmt: Stmt) -> Iterator:
    """Every Buffer and Var a statement names (not those of its nested statements)."""
    seen = set()
    stack = [getattr(stmt, f.name) for f in dataclasses.fields(stmt)]
    while stack:
        value = stack.pop()
        if isinstance(value, (str, int, float, bool, type(None))) or id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, (Buffer, Var)):
            yield value
        elif isinstance(value, Stmt):
            continue   # nested statements are visited by `statements`
        elif isinstance(value, (tuple, list)):
            stack.extend(value)
        elif isinstance(value, dict):
            stack.extend(value.values())
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            stack.extend(getattr(value, f.name) for f in dataclasses.fields(value))


def _referenced_globals(kernel: Kernel) -> Iterator:
    """The global arrays the block names, a view standing for the array it views."""
    for stmt in statements(kernel.body):
        for ref in _references(stmt):
            if isinstance(ref, Buffer):
                root = ref if ref.view_of is None else ref.view_of
                if root.space is MemorySpace.GLOBAL:
                    yield root


def _check_own_values(where, kernel: Kernel, index: int, traced: list) -> None:
    """Refuses on-chip buffers and block/thread indices of another block: they do not outlive
    their launch."""
    own = {id(b) for b in kernel.allocations}
    own |= {id(v) for v in kernel.attrs.get("views", ())}
    own |= {id(v) for v in kernel.block_vars} | {id(kernel.thread_var)}
    for stmt in statements(kernel.body):
        for ref in _references(stmt):
            if id(ref) in own:
                continue
            if isinstance(ref, Buffer) and \
                    (ref if ref.view_of is None else ref.view_of).space is MemorySpace.GLOBAL:
                continue
            if isinstance(ref, Var) and ref.kind not in (VarKind.BLOCK, VarKind.THREAD):
                continue
            origin = _origin(ref, traced, index)
            if isinstance(ref, Buffer):
                what = f"{ref.describe()}, allocated at {ref.loc}{origin},"
            else:
                kind = "block" if ref.kind is VarKind.BLOCK else "thread"
                what = f"the {kind} index {ref.name}{origin.replace(' inside ', ' of ')}"
            raise _error(where, f"{stmt.loc}: {what} is used here. Shared, fragment, "
                         "local and var buffers and the block/thread indices live for one "
                         "kernel launch; pass values between kernels through global memory "
                         "(write them to an output or a T.alloc_global workspace in the "
                         "earlier kernel and read them back in this one)")


def _origin(ref, traced: list, index: int) -> str:
    for other, (kernel, loc) in enumerate(traced):
        if other == index:
            continue
        owned = list(kernel.allocations) + list(kernel.attrs.get("views", ())) + \
            list(kernel.block_vars) + [kernel.thread_var]
        if any(o is ref for o in owned):
            return f" inside the `with T.Kernel(...)` block at {loc}"
    return ""


def sequence_text(sequence: KernelSequence) -> str:
    """Each launch's kernel text, in launch order (`debug=True`)."""
    from jtile.ir.printer import kernel_text

    count = len(sequence.launches)
    parts = []
    for n, launch in enumerate(sequence.launches):
        parts.append(f"// launch {n + 1} of {count}\n{kernel_text(launch.kernel)}")
    return "\n".join(parts)
