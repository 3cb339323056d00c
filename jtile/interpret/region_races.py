"""Shared memory that two T.ws regions touch with no mbarrier ordering them: a race on the GPU.

On the GPU the regions of a group run at once, and the only order between two of them is a
chain of mbarrier hand-offs (jtile places no block barrier between regions). Interpret mode
runs them in one order the barriers allow (`barrier_schedule.py`) and would quietly give that
order's answer, so the scheduler follows happens-before with vector clocks: each region counts
the statements it runs; an arrive joins the region's clock into the release clock of the
barrier phase it counts toward; a wait that returns because a phase completed joins that
phase's release clock into the waiting region's. (Code before the group happens before every
region, so arrivals made there carry no clock.) Region A's access happens before region B's
when B's clock has reached A's count at that access.

A write and another access of one shared buffer by regions on different threads, neither
ordered before the other, is reported when their elements certainly overlap
(`shared_accesses.Access`): two exact boxes that overlap, or an exact box holding everything a
certain access may touch. Boxes known only as bounds (a ring buffer's stage indexed by a
per-thread expression, a gathered index) are never reported: a false alarm would refuse a
correct kernel.
"""

from __future__ import annotations

from jtile.ir.nodes import SyncThreads
from jtile.ir.walk import statements
from jtile.interpret.barriers import share_threads, threads_text
from jtile.interpret.shared_accesses import accesses

# How many accesses are recorded between two drops of those every other region has seen.
_PRUNE_EVERY = 512


class RaceCheck:
    """The clocks and shared-memory accesses of one scheduled group of regions."""

    def __init__(self, memory, group):
        self.memory, self.group = memory, group
        n = len(group)
        self.clocks = [[0] * n for _ in range(n)]
        self.releases: dict = {}   # (id(barrier), index, phase) -> clock
        self.seen: dict = {}       # id(buffer) -> per region {Access: its count when last made}
        self.recorded = 0
        # bar.sync between regions orders them outside the mbarriers: not followed here.
        self.active = not any(_syncs_beyond(region) for region in group)

    def start(self, i: int) -> None:
        """Region `i` starts: its threads have ended the regions before it they run."""
        for j in range(i):
            if share_threads(self.group[i], self.group[j]):
                self.clocks[i] = _join(self.clocks[i], self.clocks[j])

    def statement(self, i: int, stmt, static: dict) -> None:
        """Region `i` runs `stmt` whole, with its unrolled loop variables in `static`."""
        self.clocks[i][i] += 1
        if not self.active:
            return
        found = accesses(self.memory.ctx.kernel, stmt, static, self.group[i].threads)
        for access in found:
            self._check(i, access)
        for access in found:
            per_region = self.seen.setdefault(id(access.buffer), [{} for _ in self.group])
            per_region[i][access] = self.clocks[i][i]
        self.recorded += len(found)
        if self.recorded >= _PRUNE_EVERY:
            self.recorded = 0
            self._prune()

    def arrive(self, i: int, barrier, index: int, phases) -> None:
        for phase in phases:
            key = (id(barrier), index, phase)
            self.releases[key] = _join(self.releases.get(key), self.clocks[i])

    def acquire(self, i: int, barrier, index: int, phase: int) -> None:
        """Region `i`'s wait returned because `phase` of the barrier completed."""
        release = self.releases.get((id(barrier), index, phase))
        if release is not None:
            self.clocks[i] = _join(self.clocks[i], release)

    def _others(self, i: int):
        """The regions on other threads than region `i`'s."""
        return (j for j, other in enumerate(self.group) if j != i and
                not share_threads(self.group[i], other))

    def _check(self, i: int, access) -> None:
        per_region = self.seen.get(id(access.buffer))
        if per_region is None:
            return
        for j in self._others(i):
            for earlier, count in per_region[j].items():
                if count > self.clocks[i][j] and (access.write or earlier.write) and \
                        not (access.atomic and earlier.atomic) and _collide(earlier, access):
                    raise self._race(j, earlier, i, access)

    def _prune(self) -> None:
        """Drops the accesses every other region is already ordered after."""
        for per_region in self.seen.values():
            for j, entries in enumerate(per_region):
                seen_by = [self.clocks[i][j] for i in self._others(j)]
                if seen_by:
                    floor = min(seen_by)
                    per_region[j] = {a: c for a, c in entries.items() if c > floor}

    def _race(self, j: int, earlier, i: int, later):
        first = threads_text(self.group[j].threads)
        then = threads_text(self.group[i].threads)
        a, b = _kind(earlier), _kind(later)
        count = self.group[j].threads[1]
        outcome = ("what the read sees" if not (earlier.write and later.write)
                   else "what the buffer holds after both")
        return self.memory.ctx.error(
            f"data race between T.ws regions on shared buffer {later.buffer.name}: {then} {b} "
            f"it at {later.loc} while {first} {a} it at {earlier.loc}, and no mbarrier orders "
            f"the {a} before the {b}. On the GPU the regions run at once, so {outcome} depends "
            f"on their timing (interpret mode ran the {a} first). Make {first} arrive on an "
            f"mbarrier after the {a} and {then} wait on it before the {b} "
            f"(T.alloc_barrier(arrive_count={count}), T.barrier_arrive, T.barrier_wait)",
            later.loc)


def _collide(a, b) -> bool:
    """Whether accesses `a` and `b` certainly touch a common element."""
    if any(x[1] < y[0] or y[1] < x[0] for x, y in zip(a.box, b.box)):
        return False
    if a.exact and b.exact:
        return True
    return (a.exact and b.certain and _holds(a.box, b.box)) or \
        (b.exact and a.certain and _holds(b.box, a.box))


def _holds(outer, inner) -> bool:
    return all(o[0] <= i[0] and i[1] <= o[1] for o, i in zip(outer, inner))


def _join(a, b) -> list:
    return list(b) if a is None else [max(x, y) for x, y in zip(a, b)]


def _syncs_beyond(region) -> bool:
    count = region.threads[1]
    return any(isinstance(s, SyncThreads) and (s.named is None or s.named[1] > count)
               for s in statements(region.then_body))


def _kind(access) -> str:
    return "write" if access.write else "read"
