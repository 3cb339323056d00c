"""Overlapping a ring body's second gemm with the next iteration's element-wise work.

Attention's ring body is `head, G1, middle, tail, G2`: S = Q K^T (G1), the softmax (middle:
row max, exponentials, row sums), then P = S in 16 bits and O rescaled (tail), then O += P V
(G2). Run in that order, each consumer warpgroup's tensor cores idle during its softmax and its
other units idle during its gemms. This pass issues G2 of iteration j - 1 right after G1 of
iteration j, so the P V product of one tile runs while the next tile's softmax does
(FlashAttention-3's intra-warpgroup overlap). The tail splits in two: `fill` writes G2's A
fragment (P), `scale` touches its accumulator (O *= rescale). P alternates between two register
copies, so iteration j fills one while G2(j - 1) still reads the other, and `scale` moves to
the next iteration:

    prologue   head(0) G1(0) wait(0) middle(0) fill(0 -> P[0])
    j = 1..n-1 wait(0) release(j-2) scale(j-1) head(j) G1(j) G2(j-1, P[(j-1)%2]) wait(1)
               middle(j) fill(j -> P[j%2])
    epilogue   wait(0) release(n-2) scale(n-1) G2(n-1) wait(0) release(n-1)

Where the second copy does not fit the registers (ptxas compiles three consumer warpgroups
and the producer to 128 a thread), P stays one copy, refilled once G2(j - 1) is done, and G2
frees its stage one iteration late (a ring of two stages may take it too, when asked for:
JTILE_OVERLAP_COPIES=1):

    prologue   head(0) G1(0) wait(0) middle(0) fill(0)
    j = 1..n-1 scale(j-1) head(j) G1(j) G2(j-1) wait(1) middle(j) wait(0) release(j-1) fill(j)
    epilogue   scale(n-1) G2(n-1) wait(0) release(n-1)

Every wait sits right before the statements that need it. That matters: ptxas moves a wait
for G2 placed after the softmax up into the softmax's first instruction latencies (it orders
register arithmetic against nothing but data), which ends the overlap where it starts; and it
serializes every wgmma when a non-wgmma instruction may touch an accumulator while a wgmma on
it can still run, which the wait at the top of each iteration rules out.

It applies to a warp-specialised ring (of three stages or more for two copies: G2 frees its
stage two iterations late) with at least MIN_OVERLAPPED_ELEMENTS of G1's accumulator per
thread, whose body holds exactly two gemms, the second last, with its A operand in registers,
where nothing before `tail` (the statements from the first one that touches G2's accumulator
or A fragment) touches them, each tail statement touches one of the two, the moved `scale`
statements share no buffer with what they move past, nothing after the ring reads the A
fragment (which copy holds the last tile depends on the iteration count), and, for two
copies, the fragments with the second copy fit the consumers' registers. Barriers stay where
plan_barriers put them (G2 touches registers and a TMA-filled stage only), which is why this
pass runs after it.
"""

from __future__ import annotations

import dataclasses

from jtile import config
from jtile.ir import lowered as low
from jtile.ir import nodes as ir
from jtile.ir.types import MemorySpace
from jtile.ir.walk import deep_buffers_read, deep_buffers_written, touches
from jtile.passes.specialize_warps import launch_registers, top_level_gemms

# 32-bit registers a thread's fragments may take beyond the block's launch share of the
# register file (168 for two consumer warpgroups and the producer, 128 for three). ptxas does
# let consumer code after setmaxnreg.inc use more (the head-dim-128 forward reaches R207 of
# 240, head dim 64 on three warpgroups R156 of 160), but addresses, temporaries and the
# softmax's schedule take much of it; not every fragment is live everywhere (P only from the
# softmax to P V). On an H200 head dim 64 with 128-key tiles
# and two copies of P (about 170 words) ran without spilling and 5% faster than without the
# overlap; head dim 128 with 128-key tiles (about 200) spilled and ran slower, as did head dim
# 64 on 192 x 128 tiles with two copies (about 175 words on three warpgroups).
FRAGMENT_WORD_ALLOWANCE = 16

# The least first-gemm accumulator registers per thread (the softmax's elements) for which the
# overlap pays: the softmax must be long enough to hide P V behind it and to repay the
# iteration's extra wait. On an H200 128-key tiles (64 per thread) ran 1-7% faster overlapped,
# 64-key tiles (32 per thread) 3-7% slower (benchmarks/bench_attention_tiles.py --overlap).
MIN_OVERLAPPED_ELEMENTS = 64


def overlap_schedule(pipe: low.MbarrierPipeline):
    """`(first_gemm, tail_start)` body indices of the overlapped schedule, or None."""
    body = pipe.body
    gemms = top_level_gemms(body)
    if not pipe.producer_threads or pipe.stages < 2 or gemms is None \
            or len(gemms) != 2 or gemms[1] != len(body) - 1:
        return None
    second = body[gemms[1]]
    if second.a is not None:
        return None  # P from shared memory would need the consumers' barriers moved too
    held = {second.tile.c.buffer, second.tile.a.buffer}
    if touches(body[:gemms[0] + 1], held):
        return None
    tail = next((i for i in range(gemms[0] + 1, gemms[1]) if touches([body[i]], held)),
                gemms[1])
    return gemms[0], tail


def split_tail(pipe: low.MbarrierPipeline, found):
    """`(fill, scale)`: the tail's body indices that touch G2's A fragment and those that
    touch its accumulator, or None when a statement touches both or neither, or when the
    `scale` statements share a buffer with the `fill` statements or with the next
    iteration's head and first gemm (which they move past)."""
    body = pipe.body
    first, tail_start = found
    late = body[-1]
    a_buffer, c_buffer = late.tile.a.buffer, late.tile.c.buffer
    tail = range(tail_start, len(body) - 1)
    fill = tuple(i for i in tail if touches([body[i]], {a_buffer}))
    scale = tuple(i for i in tail if touches([body[i]], {c_buffer}))
    if set(fill) & set(scale) or len(fill) + len(scale) != len(tail):
        return None
    moved = [body[i] for i in scale]
    moved_reads = set().union(*(deep_buffers_read(s) for s in moved))
    moved_writes = set().union(*(deep_buffers_written(s) for s in moved))
    passed = [body[i] for i in fill] + list(body[:first + 1])
    passed_reads = set().union(*(deep_buffers_read(s) for s in passed))
    passed_writes = set().union(*(deep_buffers_written(s) for s in passed))
    if moved_writes & (passed_reads | passed_writes) or moved_reads & passed_writes:
        return None
    return fill, scale


def fragment_words(kernel: ir.Kernel, extra=()) -> int:
    """32-bit registers per thread that the kernel's fragments (and `extra` ones) take."""
    layouts = kernel.attrs.get("layouts", {})
    buffers = [b for b in layouts if b.space is MemorySpace.FRAGMENT and b.view_of is None]
    return sum(-(-layouts[b].num_registers * b.dtype.bits // 32) for b in buffers + list(extra))


def _overlap(kernel: ir.Kernel, pipe: low.MbarrierPipeline, later) -> low.MbarrierPipeline:
    found = overlap_schedule(pipe)
    if found is None:
        return pipe
    first = found[0]
    a_buffer = pipe.body[-1].tile.a.buffer
    s_buffer = pipe.body[first].tile.c.buffer
    if kernel.attrs["layouts"][s_buffer].num_registers < MIN_OVERLAPPED_ELEMENTS:
        return pipe
    split = split_tail(pipe, found)
    if split is None or touches(later, {a_buffer}):
        return pipe
    copies = _copies(kernel, pipe, a_buffer)
    if copies is None:
        return pipe
    body = list(pipe.body)
    # The schedule places every wait and stage release itself.
    for i in (first, len(body) - 1):
        body[i] = dataclasses.replace(body[i], commit=True, wait=None,
                                      release_previous_stage=False)
    # With turns (ping-pong) a warpgroup issues G1(j) and G2(j - 1) in its turn and hands it
    # on after both, as FlashAttention-3 does.
    body[first] = dataclasses.replace(body[first], pass_turn=False)
    body[-1] = dataclasses.replace(body[-1], pass_turn=bool(pipe.turns))
    return dataclasses.replace(pipe, body=tuple(body), overlap=found, overlap_split=split,
                               overlap_copies=copies, deferred_release=False, rolled=True)


def _copies(kernel: ir.Kernel, pipe: low.MbarrierPipeline, a_buffer) -> "int | None":
    """How many register copies of the late gemm's A fragment the schedule keeps: two where
    they fit and the ring has a stage for the late gemm's second iteration, else one where the
    ring has three stages, else None (no overlap). JTILE_OVERLAP_COPIES forces a count (two
    need three stages)."""
    forced = config.overlap_copies()
    if forced is not None:
        return forced if forced == 1 or pipe.stages >= 3 else None
    roles = kernel.attrs.get("warp_roles")
    threads = kernel.threads + (roles.producer_threads if roles is not None else 0)
    budget = launch_registers(threads) + FRAGMENT_WORD_ALLOWANCE
    if pipe.stages >= 3 and fragment_words(kernel, [a_buffer]) <= budget:
        return 2
    # One copy holds its stage until P is refilled: with two stages the producer then has no
    # stage to fill ahead (on an H200 0.68-0.76x the plain schedule); with three, head dim 64
    # on 192 x 128 tiles ran 1.04-1.06x (benchmarks/results/h200_attention_overlap_copies.log).
    return 1 if pipe.stages >= 3 else None


def overlap_gemms(kernel: ir.Kernel, target) -> ir.Kernel:
    if not config.overlap_gemms() or kernel.attrs.get("wgmma_wait_each_step"):
        return kernel
    body = list(kernel.body)
    for i, s in enumerate(body):
        if isinstance(s, low.MbarrierPipeline):
            body[i] = _overlap(kernel, s, body[i + 1:])
    return kernel.replace(body=tuple(body))
