"""Warp specialisation: a producer warpgroup feeds the TMA ring, the user's threads consume.

When a kernel's body holds one top-level `MbarrierPipeline` and the target can reallocate
registers (sm_90a), one more warpgroup is added after the user's threads: one of its threads
issues every TMA load of the ring, waiting only on the empty barriers, so loads run ahead of
the consumers by up to `stages` tiles without any block-wide barrier; `setmaxnreg` gives its
registers to the consumers, whose accumulators need them (unless the kernel called
`T.no_set_max_nreg()`). Every statement outside the loop's loads runs in the consumer branch,
whose barriers become named barriers over its threads.
"""

from __future__ import annotations

import dataclasses

from jtile import config
from jtile.errors import JtileTraceError
from jtile.ir import lowered as low
from jtile.ir import nodes as ir
from jtile.ir.types import MemorySpace
from jtile.ir.walk import regions, statements, sub_expressions, touches
from jtile.passes.issue_ahead import issuable_ahead
from jtile.passes.late_wgmma_waits import late_waits
from jtile.passes.lower_tile_ops import number_tensor_maps

PRODUCER_THREADS = 128
MAX_THREADS = 1024
REGISTER_FILE = 65536


def launch_registers(threads: int) -> int:
    """Registers a thread of a `threads`-thread block gets at launch (its launch bound: one
    block per SM, a multiple of 8, at most 255), before setmaxnreg moves any."""
    return min(255, REGISTER_FILE // threads // 8 * 8)


def _consumer_registers(consumers: int, producer: int) -> int:
    """What setmaxnreg can give each consumer thread once the producer keeps `producer`: the
    block starts with the registers its launch bound allows every thread, and setmaxnreg.inc
    waits forever for registers nobody released."""
    launched = launch_registers(consumers + PRODUCER_THREADS)
    pool = (consumers + PRODUCER_THREADS) * launched - PRODUCER_THREADS * producer
    return min(240, pool // consumers // 8 * 8)


def _independent(pipe: low.MbarrierPipeline, kernel: ir.Kernel) -> bool:
    """The producer evaluates load coordinates and the trip count on its own: they may use
    block indices, the loop index, constants and reads of inputs nothing writes."""
    allowed = set(kernel.block_vars) | {pipe.var}
    read_only = kernel.attrs.get("read_only_inputs", frozenset())
    exprs = [pipe.extent] + [c for load in pipe.loads for box in load.boxes for c in box.coords]
    return all(issuable_ahead(e, read_only, allowed) for e in exprs)


def specialize_warps(kernel: ir.Kernel, target) -> ir.Kernel:
    """A single top-level TMA ring on sm_90a gets a producer warpgroup of its own (see the
    module docstring); its registers go to the consumers unless T.no_set_max_nreg()."""
    pipes = [s for s in kernel.body if isinstance(s, low.MbarrierPipeline)]
    nested = [s for s in statements(kernel.body) if isinstance(s, low.MbarrierPipeline)]
    consumers = kernel.threads
    if len(pipes) != 1 or len(nested) != 1 or not target.has_wgmma or consumers % 128 \
            or consumers + PRODUCER_THREADS > MAX_THREADS:
        return kernel
    if regions(kernel.body):
        return kernel   # T.ws regions: the kernel specialises its warps itself
    if any(b.space in (MemorySpace.TMEM, MemorySpace.BARRIER) for b in kernel.allocations) or \
            any(isinstance(s, ir.SyncThreads) and (s.named is not None or s.grid)
                for s in statements(kernel.body)):
        # Hand-written barriers count the user's threads, and a grid barrier needs every
        # thread of the block, producer included: keep them all in one role.
        return kernel
    pipe = pipes[0]
    if not _independent(pipe, kernel):
        return kernel
    specialised = schedule_wgmma_waits(
        dataclasses.replace(pipe, producer_threads=PRODUCER_THREADS), kernel)
    specialised = take_turns(specialised)
    specialised = multicast_cluster_loads(specialised, kernel)
    body = tuple(specialised if s is pipe else s for s in kernel.body)
    # T.no_set_max_nreg() keeps ptxas's even split of the register file.
    reallocate = consumers >= 256 and not kernel.attrs.get("no_set_max_nreg")
    # TileLang's T.annotate_producer_reg_dealloc / T.annotate_consumer_reg_alloc set them.
    producer = kernel.attrs.get("producer_registers") or config.producer_registers()
    registers = _consumer_registers(consumers, producer) if reallocate else 0
    asked = kernel.attrs.get("consumer_registers")
    if reallocate and asked is not None:
        if asked > registers:
            raise JtileTraceError(
                f"{kernel.name} ({kernel.loc}): T.annotate_consumer_reg_alloc({asked}): with "
                f"{consumers // 128} consumer warpgroups and the producer warpgroup keeping "
                f"{producer} registers a thread, the register file leaves the consumers "
                f"{registers}; ask for at most that")
        registers = asked
    roles = low.WarpRoles(consumers, PRODUCER_THREADS, producer if registers else 0, registers)
    kernel = kernel.replace(body=body, attrs=dict(kernel.attrs, warp_roles=roles))
    return number_tensor_maps(kernel) if specialised.cluster_consumers > 1 else kernel


def top_level_gemms(body):
    """Indices of the wgmmas in `body`, or None when one sits inside a nested statement
    (a branch or loop that not every iteration, or not every consumer, reaches)."""
    gemms = [i for i, s in enumerate(body) if isinstance(s, low.WgmmaGemm)]
    nested = [s for s in statements(body) if isinstance(s, low.WgmmaGemm)]
    return gemms if len(nested) == len(gemms) else None


def take_turns(pipe: low.MbarrierPipeline) -> low.MbarrierPipeline:
    """Ping-pong: with two or more consumer warpgroups and element-wise work between the
    body's gemms (attention: S = Q K^T, softmax, O += P V), the warpgroups issue the body's
    first gemm in turn. Each then runs its softmax while the next one's gemms occupy the
    tensor cores, so neither unit waits for the other. The turn is a pair of named barriers
    per warpgroup hand-over, so the gemm must be at the top of the body (every consumer
    reaches it on every iteration). A first gemm with its A operand in registers (attention
    with Q held in registers) takes no turns: on an H200 that kernel once gave wrong results
    with turns and 240 consumer registers together; with 240 registers alone it is correct."""
    groups = pipe.consumer_threads // 128
    gemms = top_level_gemms(pipe.body)
    if not config.pingpong() or groups < 2 or gemms is None or len(gemms) < 2 \
            or len(gemms) == len(pipe.body) or pipe.body[gemms[0]].a is None:
        return pipe
    body = list(pipe.body)
    body[gemms[0]] = dataclasses.replace(body[gemms[0]], wait_turn=True, pass_turn=True)
    return dataclasses.replace(pipe, body=tuple(body), turns=groups)


def _cluster_axis(kernel: ir.Kernel):
    """`(axis, size)` of a cluster that spans one grid axis, else None."""
    cluster = tuple(kernel.attrs.get("cluster_dims") or ())
    spanned = [(axis, size) for axis, size in enumerate(cluster) if size > 1]
    if len(spanned) != 1 or spanned[0][0] >= len(kernel.block_vars):
        return None
    return spanned[0]


def multicast_cluster_loads(pipe: low.MbarrierPipeline, kernel) -> low.MbarrierPipeline:
    """In a cluster along one grid axis, a load whose coordinates do not use that axis's
    block index is the same box for every CTA of the cluster: each CTA loads a slice of its
    rows and multicasts it to all, so the tile leaves L2 once per cluster (a GEMM clustered
    along N shares its A tiles). Slices keep whole 8-row swizzle atoms."""
    found = _cluster_axis(kernel)
    if found is None:
        return pipe
    axis, size = found
    block_var = kernel.block_vars[axis]
    loads = []
    for load in pipe.loads:
        src = load.tile.src
        rows = load.tile.dst.buffer.shape[0]
        outer = [d for d, e in enumerate(src.extents[:-1]) if e == rows and e != 1]
        uses_axis = any(isinstance(x, ir.Var) and x is block_var
                        for box in load.boxes for c in box.coords
                        for x in sub_expressions(ir.as_expr(c)))
        if uses_axis or not outer or rows % (8 * size) or size > 16:
            loads.append(load)
            continue
        row_coord = len(src.extents) - 1 - outer[0]
        loads.append(dataclasses.replace(load, multicast=size, row_coord=row_coord))
    if all(load.multicast == 1 for load in loads):
        return pipe
    return dataclasses.replace(pipe, loads=tuple(loads), cluster_consumers=size)


def schedule_wgmma_waits(pipe: low.MbarrierPipeline, kernel) -> low.MbarrierPipeline:
    """Where each wgmma group of a warp-specialised ring is waited on.

    A body of wgmmas only (a GEMM) commits them as one group and waits for the previous
    iteration's (wait_group 1), freeing that stage one iteration late. A kernel marked
    `wgmma_wait_each_step` (ptxas serialized its wgmmas under that schedule, see
    `jtile.binding.lowered.build`) waits for each iteration's own wgmmas instead. Otherwise the last wgmma
    of the body is committed without a wait when nothing before the body's first wgmma (next
    iteration) or after it touches its accumulator or register operand: the first wgmma's
    wait_group 0 of the next iteration covers it, so it overlaps that iteration's start.
    Every ring with wgmmas stays rolled (see `MbarrierPipeline.rolled`).
    """
    body = list(pipe.body)
    gemms = [i for i, s in enumerate(body) if isinstance(s, low.WgmmaGemm)]
    if not gemms:
        return pipe
    pipe = dataclasses.replace(pipe, rolled=True)
    if kernel.attrs.get("wgmma_wait_each_step"):
        return pipe
    if len(gemms) == len(body) and all(s.a is not None for s in body):
        for i in gemms:
            last = i == gemms[-1]
            body[i] = dataclasses.replace(body[i], commit=last, wait=1 if last else None,
                                          release_previous_stage=last)
        return dataclasses.replace(pipe, body=tuple(body), deferred_release=True)
    if len(gemms) >= 3 and top_level_gemms(body) is not None \
            and not config.pingpong() and config.late_wgmma_waits():
        # Two-gemm bodies (attention's forward) are overlap_gemms' to schedule.
        return dataclasses.replace(pipe, body=late_waits(tuple(body)))
    if len(gemms) < 2:
        return pipe
    first, last = gemms[0], gemms[-1]
    tile = body[last].tile
    held = {tile.c.buffer} | ({tile.a.buffer} if body[last].a is None else set())
    if not touches(body[:first] + body[last + 1:], held) and pipe.stages >= 3:
        # Freeing a stage one wait later costs one stage of prefetch depth: worth it with
        # three stages or more.
        body[last] = dataclasses.replace(body[last], wait=None)
        body[first] = dataclasses.replace(body[first], release_previous_stage=True)
        pipe = dataclasses.replace(pipe, deferred_release=True)
    return dataclasses.replace(pipe, body=tuple(body))
