"""Consecutive T.ws regions that hand data to each other through mbarriers, in interpret mode.

On the GPU the regions run at once. Warpgroup 0 may write a tile to shared memory and arrive
on `ready`, warpgroup 1 wait on `ready`, read the tile and arrive on `free`, and warpgroup 0
wait on `free` before it writes the next tile, several times within one iteration of their
loops. Interpret mode runs one statement at a time, so it runs such regions in an order the
GPU allows, driven by their barriers (`barriers.py`): each region is a Python generator over
its statements; a loop or branch holding a barrier operation is unrolled in Python (its bound
or condition must be a Python int at trace time), and a wait that would block hands over to
the next region. The regions take turns, each running until it blocks or ends. When every
unfinished region is blocked, the GPU would hang: that is an error, unless code after the
regions arrives on the barrier (the GPU's other threads may reach it, interpret mode runs the
regions first), which is refused. Statements that hold no barrier operation run as anywhere
else (a loop among them still one lax loop). Shared memory two regions touch in no order their
barriers impose is a race on the GPU, whatever order interpret mode picks: `region_races`
follows the barriers' happens-before and refuses it.

A group the scheduler cannot follow (a barrier index, parity, loop bound or condition that is
not a Python int, barriers that earlier code left unknown, too long a run) runs as regions
without barriers do: one after another, or loop by loop side by side (`concurrent_regions`).
That order is right when shared memory flows one way, producer before consumer, once per
step. It is refused where it cannot be right: regions that hand shared memory both ways, and a
region that shares shared memory with another and hands it over at barriers inside a loop of
what runs in one step (every hand-off but the last would be lost).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from jtile.interpret import barriers, block_swizzle, concurrent_regions, region_races
from jtile.interpret.barriers import (ARRIVALS, checked_index, share_threads, threads_text,
                                      wait_text)
from jtile.interpret.static_ints import static_int
from jtile.ir.nodes import BarrierOp, For, IfThenElse, UseSwizzle, While
from jtile.ir.walk import deep_buffers_read, deep_buffers_written, is_region, statements

# The most statements one group may run unrolled. Each execution traces its jax operations
# anew, so the traced program grows with the count; far past this, tracing and compiling take
# longer than a run is worth, and the group runs unscheduled (refused if that would be wrong).
STEP_LIMIT = 100_000


class _Cannot(Exception):
    """The scheduler cannot follow the group; the message says why."""


@dataclass
class _Wait:
    """A region blocked at `stmt` until `target` phases of barrier `index` have completed."""

    stmt: BarrierOp
    index: int
    parity: int
    target: int


def group_at(memory, body, index: int) -> Optional[list]:
    """The consecutive T.ws regions from `body[index]` (two or more) when one of them holds a
    barrier operation, else None."""
    group = []
    for s in body[index:]:
        if not is_region(s):
            break
        group.append(s)
    model = memory.ctx.barriers
    if len(group) < 2 or not any(model.uses(g) for g in group):
        return None
    return group


def run(memory, env, group, run_statement, run_body) -> None:
    model = memory.ctx.barriers
    used = list({id(b): b for g in group for b in model.uses(g)}.values())
    if not model.known(used):
        reason = ("earlier barrier operations on " + ", ".join(sorted(b.name for b in used)) +
                  " ran inside a loop or branch interpret mode does not unroll, or in "
                  "per-thread code, so how many times they ran is not known")
    else:
        arrays, state = list(memory.arrays), model.snapshot()
        try:
            _Schedule(memory, env, group, run_statement).run()
            return
        except _Cannot as cannot:
            # Nothing the partial run did is kept: its jax operations are dead code.
            memory.arrays, reason = arrays, str(cannot)
            model.restore(state)
    model.forget(used)
    _refuse_unordered(memory, group, reason)
    _run_unscheduled(memory, env, group, run_statement, run_body)


class _Schedule:
    def __init__(self, memory, env, group, run_statement):
        self.memory, self.model, self.group = memory, memory.ctx.barriers, group
        self.run_statement = run_statement
        self.steps = 0
        # Shared memory the regions touch in no order their barriers impose is refused.
        self.races = region_races.RaceCheck(memory, group)
        self.runs = [self._region(env.in_region(g.threads), i) for i, g in enumerate(group)]

    def run(self) -> None:
        n = len(self.group)
        done, started, waiting = [False] * n, [False] * n, [None] * n
        while not all(done):
            moved = False
            for i, region in enumerate(self.group):
                wait = waiting[i]
                if done[i] or (wait is not None and self.model.completed(
                        wait.stmt.barrier, wait.index) < wait.target):
                    continue
                # Regions on the same threads run in program order, as those threads do.
                if not started[i] and any(not done[j] and share_threads(self.group[j], region)
                                          for j in range(i)):
                    continue
                started[i] = moved = True
                try:
                    waiting[i] = next(self.runs[i])
                except StopIteration:
                    done[i], waiting[i] = True, None
            if not moved:
                raise self._stuck(waiting)

    def _stuck(self, waiting):
        """Every unfinished region waits: a hang, unless code after the group arrives."""
        blocked = [(region, wait) for region, wait in zip(self.group, waiting) if wait]
        for region, wait in blocked:
            later = self.model.later_arrival(self.group[-1], wait.stmt.barrier)
            if later is not None:
                return barriers.blocked(self.memory, threads_text(region.threads), wait.stmt,
                                        wait.index, wait.parity, later)
        text = "; ".join(
            f"{threads_text(region.threads)} at {wait_text(wait.stmt, wait.index, wait.parity)} "
            f"({self.model.describe(wait.stmt.barrier, wait.index)})"
            for region, wait in blocked)
        return self.memory.ctx.error(
            f"the T.ws regions wait on each other forever (on the GPU the kernel hangs): {text}",
            blocked[0][1].stmt.loc)

    def _region(self, env, i: int):
        # Runs once the regions before it on the same threads have ended (`run`).
        self.races.start(i)
        yield from self._walk(env, {}, self.group[i].then_body, i)

    def _walk(self, env, static: dict, body, i: int):
        """Runs `body` in region `i`, yielding a `_Wait` wherever a wait would block."""
        for stmt in body:
            if isinstance(stmt, UseSwizzle):   # remaps the block indices of what follows
                env = block_swizzle.swizzled_env(self.memory.ctx.kernel, env, stmt)
                continue
            self.steps += 1
            if self.steps > STEP_LIMIT:
                raise _Cannot(f"the regions run more than {STEP_LIMIT} statements unrolled")
            if not self.model.uses(stmt):
                self.races.statement(i, stmt, static)
                self.run_statement(self.memory, env, stmt)
            elif isinstance(stmt, BarrierOp):
                yield from self._barrier(stmt, static, i)
            elif isinstance(stmt, For):
                extent = static_int(stmt.extent, static)
                if extent is None:
                    raise _Cannot(f"the bound of the loop at {stmt.loc}, which holds barrier "
                                  "operations, is not a Python int while the kernel is traced")
                for k in range(extent):   # the body's indices hold k * step + start
                    yield from self._walk(env.bind(stmt.var, k), {**static, id(stmt.var): k},
                                          stmt.body, i)
            elif isinstance(stmt, IfThenElse) and not is_region(stmt):
                cond = static_int(stmt.cond, static)
                if cond is None:
                    raise _Cannot(f"the condition at {stmt.loc}, which guards barrier "
                                  "operations, is not a Python int while the kernel is traced "
                                  "(it reads data or the thread index)")
                yield from self._walk(env, static, stmt.then_body if cond else stmt.else_body,
                                      i)
            else:
                raise _Cannot(f"the {type(stmt).__name__} at {stmt.loc} holds barrier "
                              "operations")

    def _barrier(self, stmt: BarrierOp, static: dict, i: int):
        if stmt.op == "expect_tx":   # T.tma_copy has finished its bytes when it returns
            return
        index = checked_index(self.memory, stmt, static)
        if index is None:
            raise _Cannot(f"the barrier index at {stmt.loc} is not a Python int while the "
                          "kernel is traced")
        if stmt.op in ARRIVALS:
            phases = self.model.arrive(stmt.barrier, index, self.group[i].threads[1])
            self.races.arrive(i, stmt.barrier, index, phases)
            return
        if stmt.op != "wait":
            raise _Cannot(f"the barrier operation {stmt.op!r} at {stmt.loc} has no model")
        parity = static_int(stmt.arg, static)
        if parity is None:
            raise _Cannot(f"the parity of the wait at {stmt.loc} is not a Python int while "
                          "the kernel is traced")
        # It returns when the phase before the current one has the parity waited for (the
        # first wait for parity 1 on a fresh barrier: a phase that never ran, which orders
        # nothing), or else once the current phase completes, whatever happens after.
        phase = self.model.completed(stmt.barrier, index)
        if not self.model.passes(stmt.barrier, index, parity):
            yield _Wait(stmt, index, parity, phase + 1)
            phase += 1
        self.races.acquire(i, stmt.barrier, index, phase - 1)


def _run_unscheduled(memory, env, group, run_statement, run_body) -> None:
    """The group as regions without barriers run (see statements.run_body)."""
    i = 0
    while i < len(group):
        fused = concurrent_regions.group_at(group, i)
        if fused is not None:
            concurrent_regions.run(memory, env, fused, run_body)
            i += len(fused)
        else:
            run_statement(memory, env, group[i])
            i += 1


def _units(group) -> list:
    """(region, statements) for each region: what `_run_unscheduled` runs of it in one go (the
    body of a fused loop, one iteration at a time, or the whole region)."""
    units, i = [], 0
    while i < len(group):
        fused = concurrent_regions.group_at(group, i)
        for region in fused or [group[i]]:
            body = region.then_body
            units.append((region, body[concurrent_regions.loop_of(region)].body if fused
                          else body))
        i += len(fused or [group[i]])
    return units


def _shared(buffers) -> set:
    return {b for b in buffers if b.space.is_shared}


def _cycle(group, writes, reads) -> Optional[list]:
    """Regions on different threads r0, r1, ..., each writing a shared buffer the next reads
    and the last one the first reads, as [(region, buffer it hands on)], or None."""
    def feeds(a, b):
        common = writes[id(a)] & reads[id(b)]
        if not common or share_threads(a, b):
            return None
        return sorted(common, key=lambda buf: buf.name)[0]

    def search(path):
        for nxt in group:
            if feeds(path[-1], nxt) is None:
                continue
            if nxt is path[0]:
                return path
            if all(nxt is not p for p in path):
                found = search(path + [nxt])
                if found:
                    return found
        return None

    for start in group:
        path = search([start])
        if path:
            return [(r, feeds(r, path[(k + 1) % len(path)])) for k, r in enumerate(path)]
    return None


def _refuse_unordered(memory, group, reason: str) -> None:
    units = _units(group)
    writes = {id(r): _shared(set().union(*map(deep_buffers_written, body)))
              for r, body in units}
    reads = {id(r): _shared(set().union(*map(deep_buffers_read, body))) for r, body in units}
    cycle = _cycle(group, writes, reads)
    if cycle is not None:
        hands = ", and ".join(
            f"{threads_text(region.threads)} (T.ws at {region.loc}) write {buffer.name}, which "
            f"{threads_text(cycle[(k + 1) % len(cycle)][0].threads)} read"
            for k, (region, buffer) in enumerate(cycle))
        problem = (f"{hands}: run one after another, regions that hand shared memory both "
                   "ways read what the other has not written yet")
        raise _refusal(memory, problem, reason, cycle[0][0].loc)
    for region, body in units:
        shares = any(not share_threads(region, other) and
                     (writes[id(region)] & reads[id(other)] or reads[id(region)] &
                      writes[id(other)]) for other, _ in units)
        repeated = next((s for s in statements(body) if isinstance(s, (For, While)) and
                         memory.ctx.barriers.uses(s)), None)
        if shares and repeated is not None:
            problem = (f"{threads_text(region.threads)} (T.ws at {region.loc}) share shared "
                       "memory with another region and hand it over at barriers inside the "
                       f"loop at {repeated.loc}: run one after another, every hand-off but the "
                       "last of that loop would be lost")
            raise _refusal(memory, problem, reason, repeated.loc)


def _refusal(memory, problem: str, reason: str, loc):
    return memory.ctx.error(
        f"interpret mode cannot order these T.ws regions: {problem}. On the GPU they run at "
        "once, taking turns at their mbarriers; interpret mode follows those barriers only "
        "when every barrier index and parity, and every loop bound or condition around a "
        f"barrier operation, is a Python int while the kernel is traced, and here {reason}. "
        "Make those values static (e.g. a trip count from T.const or a shape), or test this "
        "kernel compiled", loc)
