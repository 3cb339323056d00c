"""Hand-written asynchronous copies: `T.access_ptr`, `T.ptx_cp_async`, `T.ptx_commit_group`,
`T.ptx_wait_group`, `T.cp_async_barrier_noinc`.

TileLang kernels that load their own tiles thread by thread (a producer warpgroup gathering
rows by index, as in MLA decoding's warp-specialised example) write
`T.ptx_cp_async(T.access_ptr(S[i, j], "w", 8), T.access_ptr(G[r, c], "r", 8), 8)`: this thread
copies 8 elements from global to shared memory with one cp.async. The copy lands
asynchronously; the kernel then waits for it with T.ptx_commit_group / T.ptx_wait_group, or
has the hardware arrive on an mbarrier once it has landed (T.cp_async_barrier_noinc).

jtile keeps the meaning and checks what TileLang leaves to the hardware: a pointer here is the
address of one element with an access mode (it is only an argument of these operations), the
run of elements must lie along the buffers' last dimension, and a copy is 4, 8 or 16 bytes.
Interpret mode copies at once (every access there is in program order).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from jtile.ir.nodes import AsyncCopyGroup, BarrierOp, Buffer, Const, Load, Region, ThreadCopy
from jtile.ir.types import DType, MemorySpace
from jtile.language.sync import _barrier
from jtile.trace.builder import current
from jtile.trace.indexing import coerce
from jtile.trace.source import caller_location

_MODES = {"r": 1, "w": 2, "rw": 3}
_CP_ASYNC_BYTES = (4, 8, 16)


@dataclass(frozen=True)
class AccessPtr:
    """`T.access_ptr(...)`: the address of `buffer[indices]`, `extent` elements long, with the
    access mode `mask` (1 read, 2 write, 3 both). Only T.ptx_cp_async takes one."""

    buffer: Buffer
    indices: tuple
    extent: object
    mask: int


def _mask(access_type, builder, loc) -> int:
    mask = _MODES.get(access_type) if isinstance(access_type, str) else access_type
    if isinstance(access_type, bool) or not isinstance(access_type, (str, int)) or \
            mask not in (1, 2, 3):
        raise builder.error(f"T.access_ptr access_type {access_type!r}: expected 'r', 'w', 'rw' "
                            "or the mask 1, 2, 3", loc, op="T.access_ptr")
    return mask


def access_ptr(base, access_type="r", *extents, offset=0, extent=None, ignore_last_ndim=0):
    """The address of an element (`X[i, j]`), of a region's first element (`X[i, a:b]`) or of
    a buffer's first element, for T.ptx_cp_async. `extents` (their product) or `extent` give
    the elements it spans (default: 1 for an element, the region's or buffer's size)."""
    builder = current("T.access_ptr")
    loc = caller_location()
    op = "T.access_ptr"
    mask = _mask(access_type, builder, loc)
    if ignore_last_ndim:
        raise builder.error(f"T.access_ptr(ignore_last_ndim={ignore_last_ndim!r}) is not "
                            "supported; index the element the pointer should start at", loc,
                            op=op)
    if not (isinstance(offset, int) and offset == 0):
        raise builder.error(f"T.access_ptr(offset={offset!r}) is not supported; index the "
                            "element the pointer should start at (X[i, j + offset])", loc, op=op)
    if isinstance(base, Load):
        buffer, indices, size = base.buffer, tuple(base.indices), 1
    elif isinstance(base, Region):
        buffer, indices, size = base.buffer, tuple(base.starts), math.prod(base.extents)
    elif isinstance(base, Buffer):
        zero = Const(0, DType.int32)
        buffer, indices, size = base, tuple(zero for _ in base.shape), math.prod(base.shape)
    else:
        raise builder.error(f"T.access_ptr takes an element X[i, j], a region X[i, a:b] or a "
                            f"buffer; got {type(base).__name__}", loc, op=op)
    if extent is None and extents:
        flat = extents[0] if len(extents) == 1 and isinstance(extents[0], (list, tuple)) \
            else extents
        extent = math.prod(flat)
    return AccessPtr(buffer, indices, size if extent is None else extent, mask)


def _pointer(value, role: str, builder, loc) -> AccessPtr:
    if not isinstance(value, AccessPtr):
        raise builder.error(f"T.ptx_cp_async {role} must be T.access_ptr(...) (got "
                            f"{type(value).__name__})", loc, op="T.ptx_cp_async")
    return value


def _run(ptr: AccessPtr, count: int, role: str, builder, loc) -> Region:
    """The `count` elements from ptr's element along its buffer's last dimension."""
    buffer = ptr.buffer
    last = buffer.shape[-1] if buffer.shape else 1
    if not buffer.shape or count > last:
        raise builder.error(f"T.ptx_cp_async {role} {buffer.describe()}: a run of {count} "
                            f"elements must lie along the last dimension ({last} long)", loc,
                            op="T.ptx_cp_async")
    start = ptr.indices[-1]
    if isinstance(start, Const) and not 0 <= start.value <= last - count:
        raise builder.error(f"T.ptx_cp_async {role} {buffer.describe()}: elements "
                            f"{start.value}..{start.value + count - 1} of the last dimension "
                            f"run past its {last} elements", loc, op="T.ptx_cp_async")
    if isinstance(ptr.extent, int) and ptr.extent < count:
        raise builder.error(f"T.ptx_cp_async copies {count} elements but the {role} pointer "
                            f"spans {ptr.extent} (T.access_ptr's extent)", loc,
                            op="T.ptx_cp_async")
    return Region(buffer, ptr.indices, (1,) * (len(buffer.shape) - 1) + (count,))


def ptx_cp_async(dst_access_ptr, src_access_ptr, num_elems, predicate=None):
    """This thread copies `num_elems` elements (4, 8 or 16 bytes) from global memory at
    `src_access_ptr` to shared memory at `dst_access_ptr` with one cp.async (sm_80+); with
    `predicate` false it writes zeros instead. Reads outside the global array give zeros. The
    data lands asynchronously: wait with T.ptx_commit_group + T.ptx_wait_group, or arrive on
    an mbarrier once it lands with T.cp_async_barrier_noinc."""
    builder = current("T.ptx_cp_async")
    loc = caller_location()
    op = "T.ptx_cp_async"
    if builder.grid is None:
        raise builder.error("T.ptx_cp_async belongs inside `with T.Kernel(...)`", loc, op=op)
    if builder.parallel_depth:
        raise builder.error("T.ptx_cp_async inside T.Parallel: it is one thread's copy; write "
                            "it in per-thread code (index with T.get_thread_binding())", loc,
                            op=op)
    dst = _pointer(dst_access_ptr, "dst", builder, loc)
    src = _pointer(src_access_ptr, "src", builder, loc)
    if src.buffer.space is not MemorySpace.GLOBAL or not dst.buffer.space.is_shared:
        raise builder.error(f"T.ptx_cp_async copies global memory into shared memory; got src "
                            f"{src.buffer.describe()} and dst {dst.buffer.describe()}", loc,
                            op=op)
    if not dst.mask & 2 or not src.mask & 1:
        raise builder.error("T.ptx_cp_async writes its dst pointer and reads its src pointer: "
                            "make them T.access_ptr(..., 'w') and T.access_ptr(..., 'r')", loc,
                            op=op)
    if src.buffer.dtype != dst.buffer.dtype:
        raise builder.error(f"T.ptx_cp_async copies bytes: src {src.buffer.describe()} and dst "
                            f"{dst.buffer.describe()} must have one dtype", loc, op=op)
    if isinstance(num_elems, bool) or not isinstance(num_elems, int):
        raise builder.error(f"T.ptx_cp_async num_elems {num_elems!r}: a Python int", loc, op=op)
    nbytes = num_elems * src.buffer.dtype.bytes
    if nbytes not in _CP_ASYNC_BYTES:
        raise builder.error(f"T.ptx_cp_async of {num_elems} {src.buffer.dtype.name} elements is "
                            f"{nbytes} bytes; cp.async copies 4, 8 or 16", loc, op=op)
    guard = None if predicate is None else coerce(predicate, DType.bool)
    builder.emit(ThreadCopy(_run(src, num_elems, "src", builder, loc),
                            _run(dst, num_elems, "dst", builder, loc), guard, loc))


def ptx_commit_group():
    """Closes this thread's group of T.ptx_cp_async copies (cp.async.commit_group)."""
    builder = current("T.ptx_commit_group")
    builder.emit(AsyncCopyGroup("commit", 0, caller_location()))


def ptx_wait_group(num):
    """Waits until at most `num` of this thread's committed groups of T.ptx_cp_async copies are
    still in flight (cp.async.wait_group)."""
    builder = current("T.ptx_wait_group")
    loc = caller_location()
    if isinstance(num, bool) or not isinstance(num, int) or num < 0:
        raise builder.error(f"T.ptx_wait_group({num!r}): the number of groups that may stay in "
                            "flight is a non-negative Python int", loc, op="T.ptx_wait_group")
    builder.emit(AsyncCopyGroup("wait", num, loc))


def cp_async_barrier_noinc(barrier):
    """Arrives on `barrier` once this thread's T.ptx_cp_async copies so far have landed
    (cp.async.mbarrier.arrive.noinc: the arrival counts toward the barrier's arrive count)."""
    builder = current("T.cp_async_barrier_noinc")
    loc = caller_location()
    bar, index = _barrier(barrier, "T.cp_async_barrier_noinc", builder, loc)
    builder.emit(BarrierOp("arrive_after_copies", bar, index, None, loc))


__all__ = ["AccessPtr", "access_ptr", "cp_async_barrier_noinc", "ptx_commit_group",
           "ptx_cp_async", "ptx_wait_group"]
