"""Overlapping a ring body's second gemm with the next iteration's element-wise work.

Attention's ring body is `head, G1, middle, tail, G2`: S = Q K^T (G1), the softmax (middle:
row max, exponentials, row sums), then P = S in 16 bits and O rescaled (tail), then O += P V
(G2). Run in that order, each consumer warpgroup's tensor cores idle during its softmax and its
other units idle during its gemms. This pass issues G2 of iteration j - 1 right after G1 of
iteration j and waits for it only after iteration j's `middle`, so the P V product of one tile
runs while the next tile's softmax does (FlashAttention-3's intra-warpgroup overlap):

    prologue   head(0) G1(0) wait(0) middle(0) tail(0)
    j = 1..n-1 head(j) G1(j) G2(j-1) wait(1) middle(j) wait(0) release(j-1) tail(j)
    epilogue   G2(n-1) wait(0) release(n-1)

It applies to a warp-specialised ring whose body holds exactly two gemms, the second last, with
its A operand in registers, where nothing before `tail` (the statements from the first one that
touches G2's accumulator or A fragment) touches them. G2 reads the previous iteration's stage,
which is therefore freed one iteration late: the ring needs two stages or more. Barriers stay
where plan_barriers put them (G2 touches registers and a TMA-filled stage only), which is why
this pass runs after it.
"""

from __future__ import annotations

import dataclasses

from jtile import config
from jtile.ir import lowered as low
from jtile.ir import nodes as ir
from jtile.ir.walk import deep_buffers_read, deep_buffers_written, touches
from jtile.passes.specialize_warps import top_level_gemms


def overlap_schedule(pipe: low.MbarrierPipeline):
    """`(first_gemm, tail_start)` body indices of the overlapped schedule, or None."""
    body = pipe.body
    gemms = top_level_gemms(body)
    if not pipe.producer_threads or pipe.stages < 2 or gemms is None or len(gemms) != 2 \
            or gemms[1] != len(body) - 1:
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


def two_buffer_split(pipe: low.MbarrierPipeline, found, a_read_later: bool):
    """`(a_writers, c_touchers)`: the tail's body indices split by the late gemm's operand
    they touch, when the two-buffer schedule applies to `pipe`, else None.

    The schedule frees each stage two iterations late (three stages or more), keeps two
    register copies of the A fragment (nothing after the ring may read it: which copy holds
    the last tile depends on the iteration count) and moves the accumulator statements past
    the A writers and past the next iteration's head and first gemm, so they must share no
    buffer with those. Ping-pong turns keep the one-buffer schedule.
    """
    body = pipe.body
    first, tail_start = found
    late = body[-1]
    if pipe.stages < 3 or pipe.turns or a_read_later:
        return None
    a_buffer, c_buffer = late.tile.a.buffer, late.tile.c.buffer
    tail = range(tail_start, len(body) - 1)
    a_writers = tuple(i for i in tail if touches([body[i]], {a_buffer}))
    c_touchers = tuple(i for i in tail if touches([body[i]], {c_buffer}))
    if set(a_writers) & set(c_touchers) or len(a_writers) + len(c_touchers) != len(tail):
        return None
    moved = [body[i] for i in c_touchers]
    moved_reads = set().union(*(deep_buffers_read(x) for x in moved))
    moved_writes = set().union(*(deep_buffers_written(x) for x in moved))
    passed = [body[i] for i in a_writers] + list(body[:first + 1])
    passed_reads = set().union(*(deep_buffers_read(x) for x in passed))
    passed_writes = set().union(*(deep_buffers_written(x) for x in passed))
    if moved_writes & (passed_reads | passed_writes) or moved_reads & passed_writes:
        return None
    return a_writers, c_touchers


def _overlap(pipe: low.MbarrierPipeline, a_read_later: bool) -> low.MbarrierPipeline:
    found = overlap_schedule(pipe)
    if found is None:
        return pipe
    first, _ = found
    body = list(pipe.body)
    # The schedule places every wait and stage release itself.
    for i in (first, len(body) - 1):
        body[i] = dataclasses.replace(body[i], commit=True, wait=None,
                                      release_previous_stage=False)
    return dataclasses.replace(pipe, body=tuple(body), overlap=found, deferred_release=False,
                               rolled=True,
                               overlap_split=two_buffer_split(pipe, found, a_read_later))


def overlap_gemms(kernel: ir.Kernel, target) -> ir.Kernel:
    if not config.overlap_gemms() or kernel.attrs.get("wgmma_wait_each_step"):
        return kernel
    body = list(kernel.body)
    for i, s in enumerate(body):
        if isinstance(s, low.MbarrierPipeline) and s.body:
            late = s.body[-1]
            a = late.tile.a.buffer if isinstance(late, low.WgmmaGemm) else None
            body[i] = _overlap(s, a is not None and touches(body[i + 1:], {a}))
    return kernel.replace(body=tuple(body))
