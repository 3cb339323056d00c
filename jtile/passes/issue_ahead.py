"""Which address expressions a copy issued ahead of the loop body (or by another warpgroup)
may use.

A pipelined copy is issued stages ahead of the iteration that consumes it, and on sm_90a by a
producer warpgroup that runs none of the consumers' statements. Its global coordinates must
therefore be computable at any time by any thread: constants, block indices, the loop index,
and reads of kernel inputs that nothing writes during the kernel (a grouped GEMM's tile tables:
`rhs[group_of[bx], k0:k0+bk, ...]`). Values the body computes (local variables, fragments,
shared memory) are not, nor are inputs written in place through input_output_aliases.
"""

from __future__ import annotations

from jtile.ir import nodes as ir
from jtile.ir.walk import deep_buffers_written, sub_expressions


def read_only_inputs(kernel: ir.Kernel, aliased_inputs=()) -> frozenset:
    """The kernel's input buffers that no statement writes and no output aliases."""
    written = set()
    for s in kernel.body:
        written |= deep_buffers_written(s)
    return frozenset(buf for index, buf in enumerate(kernel.inputs)
                     if buf not in written and index not in aliased_inputs)


def issuable_ahead(expr, read_only: frozenset, variables=None) -> bool:
    """Whether `expr` can be evaluated by a thread that runs ahead of the loop body.

    Args:
        expr: an index expression (or a Python int).
        read_only: buffers whose elements do not change while the kernel runs.
        variables: the variables the evaluating thread knows, or None for any variable (the
            loop body's own thread evaluates its copies' addresses).
    """
    for x in sub_expressions(ir.as_expr(expr)):
        if isinstance(x, ir.Load) and x.buffer not in read_only:
            return False
        if variables is not None and isinstance(x, ir.Var) and x not in variables:
            return False
    return True
