"""Hand-written warp specialisation: `T.ws` regions and `T.tma_copy`.

`with T.ws(i):` runs its statements on warpgroup i only (threads 128*i .. 128*i + 127), as
TileLang's `T.ws` (`tx < 128` for 0, `128 <= tx < 256` for 1); `T.ws(0, 1)` covers both. Tile
operations inside (`T.copy`, `T.gemm`, `T.clear`, `T.Parallel`, reductions) are shared by the
region's threads, as if they were a block of their own: a gemm in `T.ws(0)` runs on one
warpgroup, and the fragments a region uses are laid out over its threads. Regions on different
warpgroups run side by side; what one region hands to another goes through the kernel's own
mbarriers (`T.alloc_barrier`, `T.barrier_arrive`, `T.barrier_wait`), as in TileLang: jtile
places barriers inside a region (named barriers over its threads) and between regions and the
code around them, never between two regions. The thread index inside a region is the block's
(`T.get_thread_binding()` is not renumbered).

`T.tma_copy(src, dst, barrier=...)` is TileLang's split-phase copy: the kernel arrives on and
waits for `barrier` itself. jtile runs it as a `T.copy` by the threads that reach it, finished
(and fenced for wgmma and TMA readers) when the statement ends, so the barrier's phase completes
on the kernel's own arrivals with nothing left in flight: what a wait on it then guarantees is
what TileLang's guarantees.
"""

from __future__ import annotations

import dataclasses

from jtile.ir.nodes import Copy, FenceProxyAsync, IfThenElse, Load, SetMaxNreg
from jtile.ir.types import MemorySpace
from jtile.language.copy import copy
from jtile.trace.builder import current
from jtile.trace.source import caller_location

WARPGROUP = 128


class ws:  # noqa: N801 (TileLang's name)
    """`with T.ws(*warpgroups):` the statements run on those warpgroups (consecutive indices)
    only, their tile operations shared by the region's threads (see the module docstring)."""

    def __init__(self, *warpgroups):
        self._loc = caller_location()
        self._builder = builder = current("T.ws")
        op = "T.ws"
        if builder.thread_var is None:
            raise builder.error("T.ws needs an open kernel", self._loc, op=op)
        if builder.thread_extents:
            raise builder.error("T.ws splits a 1-D block of threads (threads=n); this block is "
                                f"{tuple(builder.thread_extents)}", self._loc, op=op)
        threads = builder.threads
        groups = list(warpgroups[0]) if len(warpgroups) == 1 and \
            isinstance(warpgroups[0], (list, tuple)) else list(warpgroups)
        if not groups or any(isinstance(g, bool) or not isinstance(g, int) for g in groups):
            raise builder.error(f"T.ws{tuple(warpgroups)!r}: give one or more warpgroup indices "
                                "as Python ints", self._loc, op=op)
        groups = sorted(set(groups))
        if groups != list(range(groups[0], groups[-1] + 1)):
            raise builder.error(f"T.ws{tuple(warpgroups)!r}: the warpgroups of a region must be "
                                "consecutive (jtile gives a region one range of threads)",
                                self._loc, op=op)
        if threads % WARPGROUP or groups[0] < 0 or (groups[-1] + 1) * WARPGROUP > threads:
            raise builder.error(f"T.ws{tuple(warpgroups)!r}: the block has {threads} threads "
                                f"({threads // WARPGROUP} whole warpgroups of {WARPGROUP}); "
                                "a region names warpgroups that exist", self._loc, op=op)
        if builder.open_regions:
            raise builder.error("T.ws inside T.ws: a region already names its threads",
                                self._loc, op=op)
        self._first = groups[0] * WARPGROUP
        self._count = len(groups) * WARPGROUP

    def __enter__(self):
        self._builder.open_regions.append(self)
        self._block = self._builder.block()
        self._body = self._block.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb):
        self._builder.open_regions.pop()
        self._block.__exit__(exc_type, exc, tb)
        if exc_type is None:
            tx = self._builder.thread_var
            cond = (tx >= self._first) & (tx < self._first + self._count)
            self._builder.emit(IfThenElse(cond, tuple(self._body), (), self._loc,
                                          threads=(self._first, self._count)))
        return False


def set_max_nreg(reg_count, is_inc):
    """TileLang's register reallocation inside a T.ws region: the region's warpgroups keep
    `reg_count` registers a thread (`is_inc` 0: they give the rest back) or wait for that many
    (`is_inc` 1), as PTX setmaxnreg.dec / .inc on sm_90a. It changes no values (a no-op in
    interpret mode). jtile checks what it can before anything runs: the statement stands at the
    top of a T.ws region of whole warpgroups (every warp of them runs it), the count is a
    multiple of 8 from 24 to 256, and the counts the regions ask for fit one block's register
    file (a request the file cannot meet would wait forever)."""
    builder = current("T.set_max_nreg")
    loc = caller_location()
    op = "T.set_max_nreg"
    if not _register_count_ok(reg_count):
        raise builder.error(f"T.set_max_nreg({reg_count!r}, ...): the register count is a Python "
                            "int, a multiple of 8 from 24 to 256 (setmaxnreg's range)", loc, op=op)
    if is_inc not in (0, 1):   # True and False compare equal to 1 and 0
        raise builder.error(f"T.set_max_nreg(..., is_inc={is_inc!r}): 1 to increase, 0 to decrease",
                            loc, op=op)
    if not builder.open_regions:
        raise builder.error("T.set_max_nreg outside T.ws: setmaxnreg moves registers between "
                            "warpgroups that run different code; jtile takes it at the top of a "
                            "T.ws region (its own warp specialisation reallocates registers "
                            "itself: T.annotate_producer_reg_dealloc / "
                            "T.annotate_consumer_reg_alloc set the counts)", loc, op=op)
    if builder.open_regions[-1]._body is not builder.blocks[-1]:
        raise builder.error("T.set_max_nreg inside a loop or branch of a T.ws region: every warp of "
                            "the region must run it exactly once; put it at the top of the "
                            "region", loc, op=op)
    builder.emit(SetMaxNreg(reg_count, bool(is_inc), loc))


def _register_count_ok(reg_count) -> bool:
    """setmaxnreg's range: a Python int, a multiple of 8 from 24 to 256."""
    return not isinstance(reg_count, bool) and isinstance(reg_count, int) and \
        24 <= reg_count <= 256 and reg_count % 8 == 0


def _register_hint(name, reg_count, attr):
    builder = current(f"T.{name}")
    loc = caller_location()
    if builder.grid is None:
        raise builder.error(f"T.{name} belongs inside `with T.Kernel(...)`", loc, op=f"T.{name}")
    if not _register_count_ok(reg_count):
        raise builder.error(f"T.{name}({reg_count!r}): the register count is a Python int, a "
                            "multiple of 8 from 24 to 256", loc, op=f"T.{name}")
    builder.attrs[attr] = reg_count


def annotate_producer_reg_dealloc(reg_count=24):
    """The registers a thread of the producer warpgroup keeps when jtile specialises the
    kernel's warps itself (a T.Pipelined TMA ring on sm_90a), as TileLang's hint to its own
    warp specialisation; the consumers get what that frees. Elsewhere it changes nothing,
    as in TileLang. (JTILE_PRODUCER_REGISTERS sets it for every kernel.)"""
    _register_hint("annotate_producer_reg_dealloc", reg_count, "producer_registers")


def annotate_consumer_reg_alloc(reg_count=240):
    """The registers a consumer thread asks for when jtile specialises the kernel's warps
    itself, as TileLang's hint; more than the register file leaves them is refused when the
    kernel is compiled. Elsewhere it changes nothing, as in TileLang."""
    _register_hint("annotate_consumer_reg_alloc", reg_count, "consumer_registers")


def inc_max_nreg(reg_count):
    """`T.set_max_nreg(reg_count, 1)`."""
    return set_max_nreg(reg_count, 1)


def dec_max_nreg(reg_count):
    """`T.set_max_nreg(reg_count, 0)`."""
    return set_max_nreg(reg_count, 0)


def WarpSpecialize(*warpgroups):  # noqa: N802 (TileLang's name)
    """TileLang's long name of `T.ws`."""
    return ws(*warpgroups)


def tma_copy(src, dst, *, barrier=None, cluster_mask=None, leader_scope_threads=None,
             eviction_policy=None, annotations=None):
    """TileLang's split-phase TMA copy (see the module docstring): a `T.copy` of `src` into
    `dst`, finished when the statement ends. A load (global -> shared) names the mbarrier the
    kernel waits on (`barrier=`, as TileLang requires); a store (shared -> global) needs none.
    `cluster_mask` (a multicast) is refused by name; `leader_scope_threads` only picks which
    thread issues TileLang's TMA, so it changes nothing here."""
    builder = current("T.tma_copy")
    loc = caller_location()
    op = "T.tma_copy"
    if cluster_mask is not None:
        raise builder.error(f"T.tma_copy(cluster_mask={cluster_mask!r}) multicasts across a "
                            "cluster; jtile plans multicast itself for T.copy in clustered "
                            "T.Pipelined loops (T.Kernel(cluster_dims=)); drop cluster_mask",
                            loc, op=op)
    if leader_scope_threads is not None and (isinstance(leader_scope_threads, bool) or
                                             not isinstance(leader_scope_threads, int) or
                                             leader_scope_threads <= 0):
        raise builder.error(f"T.tma_copy(leader_scope_threads={leader_scope_threads!r}) must be a "
                            "positive Python int", loc, op=op)
    src_space = (src.buffer if isinstance(src, Load) else getattr(src, "buffer", src)).space
    loading = src_space is MemorySpace.GLOBAL
    if loading and barrier is None:
        raise builder.error("T.tma_copy from global memory needs barrier= (the mbarrier the "
                            "kernel waits on for the tile), as in TileLang", loc, op=op)
    if barrier is not None:
        from jtile.language.sync import _barrier

        _barrier(barrier, op, builder, loc)   # an mbarrier (or one of an array), checked
    copy(src, dst, eviction_policy=eviction_policy, annotations=annotations)
    last = builder.last_statement()
    if isinstance(last, Copy):   # named T.tma_copy in error messages
        builder.replace_last_statement(dataclasses.replace(last, split_phase=True))
    if loading:
        # Plain stores that wgmma or a TMA store will read next (the async proxy).
        builder.emit(FenceProxyAsync(loc))
