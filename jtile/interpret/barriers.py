"""The block's mbarriers as interpret mode follows them: phases completed, arrivals pending.

On the GPU the T.ws regions of a block run at once and order their hand-offs with mbarriers;
interpret mode runs one statement at a time, so to run regions in an order the GPU allows
(`barrier_schedule.py`) it must know whether a wait would return. Each barrier has a count of
completed phases and of arrivals in the current one: an arrive made by a region counts its
threads, one made outside regions the block's; a phase completes when the arrivals reach the
barrier's arrive count. `wait(parity p)` returns at once when the completed phases' parity is
not p (the phase with parity p is over), and otherwise once the current phase completes.
`expect_tx` changes nothing: T.tma_copy has finished its copy when the statement ends, as has
T.ptx_cp_async, so an arrival made once a thread's copies land (`arrive_after_copies`) is an
arrival there and then.

An operation is followed only when its barrier index and parity are Python ints while the
kernel is traced and it runs once, in block-wide code. Inside a lax loop or branch, or under a
per-thread condition, it runs a number of times the trace does not know: the barriers it
touches become unknown for the rest of the block, and nothing is checked on them after.
"""

from __future__ import annotations

from typing import Optional

from jtile.ir.nodes import BarrierOp
from jtile.ir.walk import child_bodies, statements
from jtile.interpret.static_ints import static_int

# The BarrierOp kinds that arrive (one arrival per thread that runs them).
ARRIVALS = ("arrive", "arrive_after_copies")


class Barriers:
    """The state of every mbarrier of the block being traced (`Context.barriers`)."""

    def __init__(self, kernel):
        self.kernel = kernel
        self._phases: dict = {}       # (id(buffer), index) -> (completed, pending arrivals)
        self._unknown: set = set()    # ids of barrier buffers no longer followed
        self._uses: dict = {}         # statement -> the barrier buffers its BarrierOps name
        self._top: Optional[dict] = None   # statement -> index of its kernel-body statement

    def uses(self, stmt) -> tuple:
        """The barrier buffers of the BarrierOps in `stmt`, at any depth."""
        if isinstance(stmt, BarrierOp):
            return (stmt.barrier,)
        if not child_bodies(stmt):
            return ()
        if stmt not in self._uses:
            found = {}
            for s in statements((stmt,)):
                if isinstance(s, BarrierOp):
                    found[id(s.barrier)] = s.barrier
            self._uses[stmt] = tuple(found.values())
        return self._uses[stmt]

    def later_arrival(self, stmt, buffer) -> Optional[BarrierOp]:
        """The first arrive on `buffer` in the kernel's code after the statement of the kernel
        body that holds `stmt`, or None. On the GPU the threads a T.ws region leaves out go on
        past it (a block barrier follows a region only where data needs one), so such code
        may still complete what the region waits for."""
        body = self.kernel.body
        if self._top is None:
            self._top = {s: i for i, top in enumerate(body) for s in statements((top,))}
        start = self._top.get(stmt, -1)   # not found: search the whole body
        return next((s for s in statements(body[start + 1:]) if isinstance(s, BarrierOp)
                     and s.op in ARRIVALS and s.barrier is buffer), None)

    def known(self, buffers) -> bool:
        return not any(id(b) in self._unknown for b in buffers)

    def forget(self, buffers) -> None:
        self._unknown |= {id(b) for b in buffers}

    def snapshot(self) -> tuple:
        return dict(self._phases), set(self._unknown)

    def restore(self, snapshot: tuple) -> None:
        self._phases, self._unknown = dict(snapshot[0]), set(snapshot[1])

    def completed(self, buffer, index: int) -> int:
        return self._phases.get((id(buffer), index), (0, 0))[0]

    def arrive(self, buffer, index: int, count: int) -> range:
        """`count` threads arrive; every `arrive_count` arrivals complete a phase. Returns the
        phases the arrivals count toward (more than one when they outnumber a phase's)."""
        completed, pending = self._phases.get((id(buffer), index), (0, 0))
        needed = buffer.arrive_counts[index]
        first = completed + pending // needed
        pending += count
        self._phases[(id(buffer), index)] = (completed + pending // needed, pending % needed)
        return range(first, completed + (pending - 1) // needed + 1)

    def passes(self, buffer, index: int, parity: int) -> bool:
        return self.completed(buffer, index) % 2 != parity % 2

    def describe(self, buffer, index: int) -> str:
        completed, pending = self._phases.get((id(buffer), index), (0, 0))
        return (f"{buffer.name}[{index}] has completed {completed} phase"
                f"{'' if completed == 1 else 's'} and has {pending} of "
                f"{buffer.arrive_counts[index]} arrivals in the current one")


def threads_text(threads: tuple) -> str:
    """`threads a..b` for a T.ws region's (first thread, count)."""
    first, count = threads
    return f"threads {first}..{first + count - 1}"


def share_threads(a, b) -> bool:
    """Whether T.ws regions `a` and `b` run on a common thread."""
    return a.threads[0] < sum(b.threads) and b.threads[0] < sum(a.threads)


def wait_text(stmt: BarrierOp, index: int, parity: int) -> str:
    return f"the wait on {stmt.barrier.name}[{index}] for parity {parity} at {stmt.loc}"


def checked_index(memory, stmt: BarrierOp, static: dict) -> Optional[int]:
    """The barrier index of `stmt` as a Python int (None when not static); an index past the
    barriers allocated is refused (the GPU would touch another object's shared memory)."""
    index = static_int(stmt.index, static)
    count = stmt.barrier.shape[0]
    if index is not None and not 0 <= index < count:
        raise memory.ctx.error(f"barrier index {index} is out of range: {stmt.barrier.name} "
                               f"holds {count} barrier{'' if count == 1 else 's'}", stmt.loc)
    return index


def forget_inside(memory, stmt) -> None:
    """`stmt` runs its BarrierOps an unknown number of times (see the module docstring)."""
    uses = memory.ctx.barriers.uses(stmt)
    if uses:
        memory.ctx.barriers.forget(uses)


def run_op(memory, env, stmt: BarrierOp, per_thread: bool) -> None:
    """A BarrierOp reached in straight-line code: outside T.ws regions, or in a region that
    runs alone (a T.ws region next to none other, or one interpret mode could not schedule,
    whose barriers are then unknown). A wait there that would block outside regions blocks
    every thread forever, and in a region it does unless later code arrives (`blocked`)."""
    model = memory.ctx.barriers
    if stmt.op == "expect_tx" or not model.known((stmt.barrier,)):
        return
    index = checked_index(memory, stmt, {})
    parity = static_int(stmt.arg, {}) if stmt.op == "wait" else 0
    if per_thread or env.space or env.mask is not None or index is None or parity is None:
        model.forget((stmt.barrier,))
        return
    if stmt.op in ARRIVALS:
        model.arrive(stmt.barrier, index, env.region[1] if env.region else model.kernel.threads)
    elif stmt.op != "wait":
        model.forget((stmt.barrier,))   # an operation this model does not know
    elif not model.passes(stmt.barrier, index, parity):
        if env.region is None:
            raise memory.ctx.error(
                f"{wait_text(stmt, index, parity)} never returns: "
                f"{model.describe(stmt.barrier, index)}, and every thread of the block waits "
                "there (on the GPU the kernel hangs)", stmt.loc)
        raise blocked(memory, threads_text(env.region), stmt, index, parity,
                      model.later_arrival(stmt, stmt.barrier))


def blocked(memory, threads: str, stmt: BarrierOp, index: int, parity: int, later):
    """The error for T.ws region `threads` blocked at `stmt` with nothing beside it left to
    run: a hang, unless code after it arrives (`later`), which interpret mode cannot run
    before the region ends."""
    model = memory.ctx.barriers
    state = model.describe(stmt.barrier, index)
    if later is None:
        return memory.ctx.error(
            f"{wait_text(stmt, index, parity)} never returns: {state}, and {threads} wait "
            "there with nothing left to arrive (on the GPU the kernel hangs)", stmt.loc)
    return memory.ctx.error(
        f"interpret mode cannot order the T.ws region of {threads} with the code after it: "
        f"{wait_text(stmt, index, parity)} returns only after the arrive on "
        f"{stmt.barrier.name} at {later.loc} ({state}), which on the GPU other threads reach "
        "while these wait, but interpret mode runs a region to its end before the code after "
        "it. Put the regions that hand over to each other next to each other (consecutive "
        "T.ws regions run side by side in interpret mode)", stmt.loc)
