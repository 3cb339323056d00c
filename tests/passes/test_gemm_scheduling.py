"""How a warp-specialised ring's wgmmas are scheduled on sm_90a: consumer warpgroups taking turns
(ping-pong) and the second gemm of attention overlapping the next tile's softmax. Checked on
the planned IR and the printed CUDA; the compiled kernels run against float64 in
tests/gpu/test_hopper_gpu.py."""

import functools
import importlib
import warnings

import jax
import jax.numpy as jnp
import pytest

import jtile
import jtile.language as T
from examples import flash_attention as fa
from examples import gemm
from jtile.compiler.target import parse_target
from jtile.ir import lowered as low
from jtile.ir.walk import statements
from jtile.passes import run_passes

S = jax.ShapeDtypeStruct
SM90 = parse_target("sm_90a")
# The pass module (jtile.passes re-exports its function under the same name).
overlap_gemms = importlib.import_module("jtile.passes.overlap_gemms")


def _attention(d=128, causal=False, stages=2, threads=256, seq=512):
    spec = S((2, seq, 4, d), jnp.float16)
    kernel = functools.partial(fa.flash_fwd_kernel, block_m=128, block_n=128 if d < 256 else 64,
                               stages=stages, threads=threads, causal=causal)
    return jtile.pallas_like(kernel, name="attention"), (spec, spec, spec)


def _ring(call, args):
    planned = run_passes(call.lower(*args, target="sm_90a")._kernel, SM90)
    rings = [s for s in statements(planned.body) if isinstance(s, low.MbarrierPipeline)]
    assert len(rings) == 1
    return rings[0]


def _gemm():
    kernel = functools.partial(gemm.matmul_kernel, block_m=128, block_n=256, block_k=64,
                               stages=3, threads=256, trans_a=False, trans_b=False)
    return (jtile.pallas_like(kernel, out_shape=S((512, 512), jnp.float16), name="matmul"),
            (S((512, 256), jnp.float16), S((256, 512), jnp.float16)))


# ----------------------------------------------------------------------------- ping-pong


def test_two_consumer_warpgroups_take_turns_at_the_first_gemm_of_attention(monkeypatch):
    monkeypatch.setenv("JTILE_PINGPONG", "1")
    ring = _ring(*_attention())
    gemms = [s for s in ring.body if isinstance(s, low.WgmmaGemm)]
    assert ring.turns == 2
    assert [(g.wait_turn, g.pass_turn) for g in gemms] == [(True, True), (False, False)]
    source = _attention()[0].lower(*_attention()[1], target="sm_90a").cuda_source()
    # The last warpgroup hands the first turn over; each turn is waited for, then passed on.
    assert "jt::named_barrier_arrive(2, 256);" in source
    assert "jt::named_barrier_sync(2 + jt_wg, 256);" in source
    assert "jt::named_barrier_arrive(2 + ((tx >> 7) + 1) % 2, 256);" in source


def test_no_turns_by_default_for_one_warpgroup_a_gemm_only_body_or_q_in_registers(monkeypatch):
    assert _ring(*_attention()).turns == 0                    # off by default
    monkeypatch.setenv("JTILE_PINGPONG", "1")
    assert _ring(*_attention(d=256, threads=128)).turns == 0  # one consumer warpgroup
    assert _ring(*_gemm()).turns == 0                         # nothing between gemms
    spec = S((2, 512, 4, 128), jnp.float16)
    q_in_registers = jtile.pallas_like(functools.partial(
        fa.flash_fwd_kernel, block_m=128, block_n=128, stages=2, threads=256, causal=True,
        q_in_registers=True))
    assert _ring(q_in_registers, (spec, spec, spec)).turns == 0  # S = Q K^T from registers


# ----------------------------------------------------------------------------- overlap


@pytest.fixture
def overlap_on(monkeypatch):
    monkeypatch.setenv("JTILE_OVERLAP_GEMMS", "1")


@pytest.mark.parametrize("d, block_n", [(64, 128), (128, 64)])
@pytest.mark.parametrize("causal", [False, True])
def test_attention_issues_p_v_one_tile_late(overlap_on, monkeypatch, d, block_n, causal):
    # 64-key tiles leave too short a softmax for the overlap to pay; the schedule is the same.
    monkeypatch.setattr(overlap_gemms, "MIN_OVERLAPPED_ELEMENTS", 32)
    spec = S((2, 512, 4, d), jnp.float16)
    call = jtile.pallas_like(functools.partial(
        fa.flash_fwd_kernel, block_m=128, block_n=block_n, stages=3, threads=256,
        causal=causal), name="attention")
    args = (spec, spec, spec)
    ring = _ring(call, args)
    first, tail = ring.overlap
    fill, scale = ring.overlap_split
    body = ring.body
    late = body[-1]
    assert isinstance(body[first], low.WgmmaGemm) and isinstance(late, low.WgmmaGemm)
    # The tail starts with the first statement that writes P (T.copy(s, p)); O *= rescale
    # is the statement that touches the accumulator.
    assert late.tile.a.buffer in _written(body[tail])
    assert [late.tile.a.buffer in _written(body[i]) for i in fill] == [True] * len(fill)
    assert [late.tile.c.buffer in _written(body[i]) for i in scale] == [True] * len(scale)
    assert not any(_written(s) & {late.tile.a.buffer, late.tile.c.buffer}
                   for s in body[first + 1:tail])
    lowered = call.lower(*args, target="sm_90a")
    source = lowered.cuda_source()
    loop = source.split("for (int k_1 = 1;")[1].split("jt_full_bar[(k_1 % 3)]")[0]
    # The top of each iteration waits for P V of two tiles back and frees its stage.
    assert loop.index("jt::wgmma_wait<0>();") < loop.index(
        "jt::mbarrier_arrive(&jt_empty_bar[((k_1 - 2) % 3)]);")
    # The odd iterations' code runs up to the even iterations' wait for their stage.
    full_wait = "jt::mbarrier_wait_parity(&jt_full_bar[(k_1 % 3)]"
    body_odd = full_wait + source.split("if ((k_1 & 1) == 1) {")[1].split(full_wait)[1]
    # P V of the previous tile reads the previous stage and the P copy the even iterations
    # fill; S of this tile is waited for with it still in flight, and this iteration's P
    # goes to the other copy.
    issue, rest = body_odd.split("jt::wgmma_wait<1>();")
    assert "(((k_1 - 1) % 3)) * " in issue and "jt_p_frag_next" not in issue
    assert "jt_p_frag_next" in rest and "wgmma_wait" not in rest
    # Prologue (tile 0's S), the top of each iteration, the epilogue (before and after the
    # last P V).
    assert source.count("jt::wgmma_wait<0>();") == 4
    with warnings.catch_warnings():
        warnings.simplefilter("error", jtile.JtilePerformanceWarning)  # not serialized
        lowered.compile()


@pytest.mark.parametrize("d, block_m, threads, stages", [(64, 192, 384, 2), (128, 128, 256, 2),
                                                       (64, 128, 256, 3)])
def test_one_copy_of_p_is_refilled_after_the_late_gemm(monkeypatch, d, block_m, threads, stages):
    """JTILE_OVERLAP_COPIES=1: P V of the previous tile is issued after this tile's S and
    waited for after the softmax, right before P is refilled and its stage freed; no second
    copy of P, so two stages and three consumer warpgroups' 160 registers take it."""
    monkeypatch.setenv("JTILE_OVERLAP_COPIES", "1")
    spec = S((2, 512, 4, d), jnp.float16)
    call = jtile.pallas_like(functools.partial(
        fa.flash_fwd_kernel, block_m=block_m, block_n=128, stages=stages, threads=threads,
        causal=False), name="attention")
    ring = _ring(call, (spec, spec, spec))
    assert ring.overlap is not None and ring.overlap_copies == 1
    lowered = call.lower(spec, spec, spec, target="sm_90a")
    source = lowered.cuda_source()
    assert "_next" not in source
    loop = source.split("for (int k_1 = 1;")[1]
    late_issue = loop.index(f"((k_1 - 1) % {stages})) * ")  # P V reads the previous stage
    s_wait = loop.index("jt::wgmma_wait<1>();")
    exps = loop.index("jt::exp2(", s_wait)
    pv_wait = loop.index("jt::wgmma_wait<0>();", exps)
    release = loop.index(f"jt::mbarrier_arrive(&jt_empty_bar[((k_1 - 1) % {stages})]);")
    refill = loop.index("jt::cast<", release)  # P = S in 16 bits
    assert late_issue < s_wait < exps < pv_wait < release < refill
    with warnings.catch_warnings():
        warnings.simplefilter("error", jtile.JtilePerformanceWarning)  # not serialized
        cubin = lowered.compile().cubin
    assert cubin[:4] == b"\x7fELF"


@pytest.mark.parametrize("d, block_m, threads, copies", [(64, 192, 384, 1), (128, 128, 256, 1),
                                                       (64, 128, 256, 2)])
def test_turns_cover_both_gemms_of_an_overlapped_iteration(monkeypatch, d, block_m, threads,
                                                           copies):
    """Ping-pong with the P V overlap (FlashAttention-3's pair): a warpgroup waits for its turn
    before S(j) = Q K^T, issues P V of tile j - 1 right after it and only then hands the turn
    on; tile 0 (no P V yet) hands it on after S, the last P V (after the loop) takes none. Each
    warpgroup waits as often as the one before it hands over, so every barrier phase
    completes."""
    monkeypatch.setenv("JTILE_PINGPONG", "1")
    monkeypatch.setenv("JTILE_OVERLAP_COPIES", str(copies))
    spec = S((2, 512, 4, d), jnp.float16)
    call = jtile.pallas_like(functools.partial(
        fa.flash_fwd_kernel, block_m=block_m, block_n=128, stages=3, threads=threads,
        causal=True), name="attention")
    ring = _ring(call, (spec, spec, spec))
    groups = threads // 128
    assert ring.turns == groups and ring.overlap is not None and ring.overlap_copies == copies
    first, _ = ring.overlap
    assert (ring.body[first].wait_turn, ring.body[first].pass_turn) == (True, False)
    assert (ring.body[-1].wait_turn, ring.body[-1].pass_turn) == (False, True)
    lowered = call.lower(spec, spec, spec, target="sm_90a")
    source = lowered.cuda_source()
    hand_over = f"jt::named_barrier_arrive(2 + ((tx >> 7) + 1) % {groups}, 256);"
    wait = "jt::named_barrier_sync(2 + jt_wg, 256);"
    prologue, loop = source.split("for (int k_1 = 1;")
    # Tile 0: wait, S, hand over.
    assert prologue.index(wait) < prologue.index(hand_over)
    # Each iteration (each parity with two copies of P): wait, S(j), P V(j - 1), hand over,
    # then wait for S.
    iterations = loop.split("jt::mbarrier_wait_parity(&jt_full_bar[")[1:]
    assert len(iterations) == copies
    for part in iterations:
        issue = part.split("jt::wgmma_wait<1>();")[0]
        assert issue.index(wait) < issue.index(f"((k_1 - 1) % 3)) * ") < issue.index(hand_over)
    # After the loop (the last P V) nothing waits for or hands over a turn.
    assert source.count(hand_over) == 1 + copies and source.count(wait) == 1 + copies
    with warnings.catch_warnings():
        warnings.simplefilter("error", jtile.JtilePerformanceWarning)  # not serialized
        assert lowered.compile().cubin[:4] == b"\x7fELF"


def test_no_overlap_with_two_stages_or_a_short_softmax_one_copy_of_p_where_two_do_not_fit(
        monkeypatch):
    monkeypatch.delenv("JTILE_OVERLAP_GEMMS", raising=False)  # on by default where it applies
    assert _ring(*_attention(d=64, stages=3)).overlap is not None
    assert _ring(*_attention(d=64, stages=2)).overlap is None   # frees stages too late
    wide = _ring(*_attention(d=128, stages=3))  # S, O and two P: ~200 words; one P fits
    assert wide.overlap is not None and wide.overlap_copies == 1
    spec = S((2, 512, 4, 64), jnp.float16)
    short = jtile.pallas_like(functools.partial(  # 32 softmax elements per thread
        fa.flash_fwd_kernel, block_m=128, block_n=64, stages=3, threads=256, causal=False))
    assert _ring(short, (spec, spec, spec)).overlap is None


@pytest.mark.parametrize("d", [64, 128])
def test_persistent_attention_overlaps_every_tile_without_serializing(monkeypatch, d):
    """In a persistent tile loop (full attention: tiles of equal work) the ring restarts per
    tile: each tile's P V overlap starts from P's first copy and frees all of its stages;
    ptxas keeps the wgmmas asynchronous."""
    monkeypatch.setenv("JTILE_PERSISTENT", "1")
    spec = S((4, 2048, 16, d), jnp.float16)
    call = jtile.pallas_like(functools.partial(  # head dim 128: 64-key tiles fit two P copies
        fa.flash_fwd_kernel, block_m=128, block_n=128 if d == 64 else 64, stages=3,
        threads=256, causal=False), name="attention")
    if d == 128:
        monkeypatch.setattr(overlap_gemms, "MIN_OVERLAPPED_ELEMENTS", 32)
    lowered = call.lower(spec, spec, spec, target="sm_90a")
    source = lowered.cuda_source()
    assert "for (int jt_tile = blockIdx.x;" in source and "jt_p_frag_next" in source
    with warnings.catch_warnings():
        warnings.simplefilter("error", jtile.JtilePerformanceWarning)  # not serialized
        lowered.compile()


def _written(s):
    from jtile.ir.walk import deep_buffers_written
    return deep_buffers_written(s)


def test_no_overlap_unless_switched_on_or_for_other_bodies(overlap_on, monkeypatch):
    assert _ring(*_gemm()).overlap is None  # one gemm per iteration

    def ss_second_gemm(Q, K, V, O):
        with T.Kernel(2, threads=256) as bx:
            q = T.alloc_shared((128, 64), "float16")
            k = T.alloc_shared((64, 64), "float16")
            v = T.alloc_shared((64, 64), "float16")
            p = T.alloc_shared((128, 64), "float16")
            s = T.alloc_fragment((128, 64), "float32")
            acc = T.alloc_fragment((128, 64), "float32")
            T.copy(Q[bx * 128, 0], q)
            T.clear(acc)
            for t in T.Pipelined(4, num_stages=2):
                T.copy(K[t * 64, 0], k)
                T.copy(V[t * 64, 0], v)
                T.gemm(q, k, s, transpose_B=True, clear_accum=True)
                for i, j in T.Parallel(128, 64):
                    s[i, j] = T.exp(s[i, j])
                T.copy(s, p)
                T.gemm(p, v, acc)
            T.copy(acc, O[bx * 128, 0])

    call = jtile.pallas_like(ss_second_gemm, out_shape=S((256, 64), jnp.float32))
    args = (S((256, 64), jnp.float16), S((256, 64), jnp.float16), S((256, 64), jnp.float16))
    assert _ring(call, args).overlap is None  # P from shared memory
    monkeypatch.setenv("JTILE_OVERLAP_GEMMS", "0")
    assert _ring(*_attention()).overlap is None


def test_no_overlap_when_the_accumulator_is_touched_before_the_first_gemm(overlap_on):
    def touches_acc_early(Q, K, V, O):
        with T.Kernel(2, threads=256) as bx:
            q = T.alloc_shared((128, 64), "float16")
            k = T.alloc_shared((64, 64), "float16")
            v = T.alloc_shared((64, 64), "float16")
            s = T.alloc_fragment((128, 64), "float32")
            p = T.alloc_fragment((128, 64), "float16")
            acc = T.alloc_fragment((128, 64), "float32")
            T.copy(Q[bx * 128, 0], q)
            T.clear(acc)
            for t in T.Pipelined(4, num_stages=2):
                T.copy(K[t * 64, 0], k)
                T.copy(V[t * 64, 0], v)
                for i, j in T.Parallel(128, 64):
                    acc[i, j] = acc[i, j] * 0.5   # before S = Q K^T: needs P V done
                T.gemm(q, k, s, transpose_B=True, clear_accum=True)
                T.copy(s, p)
                T.gemm(p, v, acc)
            T.copy(acc, O[bx * 128, 0])

    call = jtile.pallas_like(touches_acc_early, out_shape=S((256, 64), jnp.float32))
    args = (S((256, 64), jnp.float16), S((256, 64), jnp.float16), S((256, 64), jnp.float16))
    assert _ring(call, args).overlap is None
