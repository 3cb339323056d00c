"""TVM's cross-thread reduction as TileLang kernels write it (its GEMV example):

    with T.attr(T.comm_reducer(lambda x, y: x + y, [T.cast(0, accum)]), "reduce_scope",
                T.reinterpret(T.uint64(0), dtype="handle")):
        T.evaluate(T.tvm_thread_allreduce(T.uint32(1), value, True, result[0], tk,
                                          dtype="handle"))

Every thread contributes `value`; each gets in `result` the combination of the values of the
threads that differ from it only along the named thread dimensions (`tk`, a
`T.get_thread_binding(d)`). jtile writes it with what per-thread code already has: each thread
stores its value into a shared array, the block meets at a barrier, each thread folds the values
of its group in order with the reducer's function (starting from its identity), and the block
meets again before the array can be reused. Any arch, interpret mode and compiled; one value
per reduction (TVM's several-value form is refused by name).
"""

from __future__ import annotations

import numpy as np

from jtile.ir.nodes import Load, as_expr
from jtile.ir.printer import expr_text
from jtile.trace.builder import current
from jtile.trace.source import caller_location


class CommReducer:
    """`T.comm_reducer(combine, identity)`: how a reduction combines two values."""

    def __init__(self, combine, identity):
        self.combine = combine
        self.identity = identity


class Handle:
    """An opaque TVM handle (`T.reinterpret(..., dtype="handle")`): only `T.attr` takes one."""


class AllReduce:
    """What `T.tvm_thread_allreduce` returns: the statements are already emitted, so
    `T.evaluate` of it does nothing more."""


def comm_reducer(combine, identity):
    """TVM's reducer: `combine(x, y)` and its identity (a one-element list)."""
    builder = current("T.comm_reducer")
    loc = caller_location()
    identity = list(identity) if isinstance(identity, (list, tuple)) else [identity]
    if len(identity) != 1 or not callable(combine):
        raise builder.error("T.comm_reducer(combine, [identity]): jtile reduces one value at a "
                            "time (a two-argument function and one identity)", loc,
                            op="T.comm_reducer")
    return CommReducer(combine, identity[0])


class attr:  # noqa: N801 (TileLang's name)
    """`with T.attr(reducer, "reduce_scope", handle):` the scope of the thread reductions that
    use `reducer`. Other TVM statement attributes are refused by name."""

    def __init__(self, node, attr_key, value):
        self._builder = current("T.attr")
        loc = caller_location()
        if not isinstance(node, CommReducer) or attr_key != "reduce_scope":
            raise self._builder.error(
                f"T.attr(..., {attr_key!r}, ...): of TVM's statement attributes jtile takes only "
                "a T.comm_reducer's \"reduce_scope\" (around T.tvm_thread_allreduce); bind "
                "threads with T.Kernel(threads=) and leave scheduling hints to the compiler",
                loc, op="T.attr")
        self._reducer = node

    def __enter__(self):
        self._builder.open_reducers.append(self._reducer)
        return self

    def __exit__(self, exc_type, exc, tb):
        self._builder.open_reducers.pop()
        return False


def evaluate(value):
    """TVM's expression statement: it takes what `T.tvm_thread_allreduce` returns (already
    emitted); any other value would compute nothing, so it is refused by name."""
    if not isinstance(value, AllReduce):
        builder = current("T.evaluate")
        raise builder.error("T.evaluate of an expression computes nothing in jtile; it takes "
                            "T.tvm_thread_allreduce(...) (jtile generates all device code "
                            "itself: express other work with T. operations)", caller_location(),
                            op="T.evaluate")


def _thread_dimension(builder, expr, loc):
    """Which dimension of the thread block `expr` is (a `T.get_thread_binding(d)`)."""
    from jtile.language.kernel import get_thread_binding

    extents = builder.thread_extents or (builder.threads,)
    text = expr_text(as_expr(expr))
    for dim in range(len(extents)):
        if expr_text(as_expr(get_thread_binding(dim))) == text:
            return dim
    raise builder.error(f"T.tvm_thread_allreduce: {text} is not a thread index of the block "
                        "(reduce over T.get_thread_binding(d) values)", loc,
                        op="T.tvm_thread_allreduce")


def tvm_thread_allreduce(size, *args, dtype="handle"):
    """`T.tvm_thread_allreduce(1, value, cond, result[i], *thread_indices)` inside a
    `T.attr(reducer, "reduce_scope", ...)` (see the module docstring). `cond` must be True:
    every thread takes part."""
    from jtile.language import alloc_shared, alloc_var, serial, sync_threads

    builder = current("T.tvm_thread_allreduce")
    loc = caller_location()
    op = "T.tvm_thread_allreduce"
    count = size.value if hasattr(size, "value") else size
    if count != 1:
        raise builder.error(f"{op}: jtile reduces one value at a time (size 1, got {count})",
                            loc, op=op)
    if len(args) < 4:
        raise builder.error(f"{op}(1, value, cond, result, *thread_indices): too few arguments",
                            loc, op=op)
    value, cond, result, axes = args[0], args[1], args[2], args[3:]
    if not (cond is True or getattr(cond, "value", None) is True):
        raise builder.error(f"{op}: a condition other than True (only some threads taking "
                            "part) is not supported", loc, op=op)
    if not isinstance(result, Load):
        raise builder.error(f"{op}: the result is an element of a buffer (`out[0]`)", loc, op=op)
    if not builder.open_reducers:
        raise builder.error(f"{op} outside `with T.attr(T.comm_reducer(...), \"reduce_scope\", "
                            "...)`: the reducer says how values combine", loc, op=op)
    reducer = builder.open_reducers[-1]
    extents = tuple(builder.thread_extents or (builder.threads,))
    dims = sorted({_thread_dimension(builder, axis, loc) for axis in axes})
    threads = int(np.prod(extents))
    value = as_expr(value)
    dt = result.buffer.dtype
    tid = builder.thread_var
    # Each thread's value into the shared array; the block meets.
    scratch = alloc_shared((threads,), dt)
    scratch[tid] = value
    sync_threads()
    # Fold the group: the threads whose coordinates differ along `dims` only.
    group = int(np.prod([extents[d] for d in dims]))
    acc = alloc_var(dt)
    acc[0] = reducer.identity
    for k in serial(group):
        partner = as_expr(tid)
        rest = k
        for d in dims:
            stride = int(np.prod(extents[:d]))
            coordinate = (tid // stride) % extents[d] if stride > 1 else tid % extents[d]
            partner = partner + ((rest % extents[d]) - coordinate) * stride
            rest = rest // extents[d]
        acc[0] = reducer.combine(acc[0], scratch[partner])
    result.buffer[tuple(result.indices)] = acc[0]
    sync_threads()   # before the shared array is written again
    return AllReduce()
