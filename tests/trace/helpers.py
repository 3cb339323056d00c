"""Shared by the tracing tests: trace a one-input, one-output kernel; match located errors."""

from jtile.ir.types import DType
from jtile.trace.trace_kernel import trace

F16, F32, I32 = DType.float16, DType.float32, DType.int32


def trace1(fn, shape=(64,), dtype=F32, out=None, **kwargs):
    """Traces `fn(X, O)` with one input and one output of `shape`."""
    return trace(fn, [(shape, dtype)], [(out or shape, dtype)], **kwargs)


def body_of(fn, shape=(64,), **kwargs):
    return trace1(fn, shape, **kwargs).body


def located(kernel_name, message_regex, file):
    """`kernel (file:N): ...` then `message_regex`."""
    return rf"{kernel_name} \({file}:\d+\): .*{message_regex}"
