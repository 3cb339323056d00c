"""late_wgmma_waits (on unless JTILE_LATE_WGMMA_WAITS=0): in a warp-specialised ring body of three gemms
or more, each wgmma group is waited for just before the first statement that needs it, younger
groups left running, and everything is drained by the body's end. Checked on the lowered IR
and the generated CUDA of jtile.ops.attention's backward (sm_90a, no GPU needed); off, every
group is waited for right after it is issued."""

from __future__ import annotations

import functools
import importlib
import re

import jax
import jax.numpy as jnp
import pytest

import jtile
from jtile.ir import lowered as low
from jtile.ir.walk import deep_buffers_read, deep_buffers_written, statements, storage_of
from jtile.ops.attention_kernels import attention_bwd_kernel

attention_module = importlib.import_module("jtile.ops.attention")
S = jax.ShapeDtypeStruct


def _backward(dim=64, causal=False):
    b, s, h = 1, 512, 2
    tiles = attention_module.HOPPER_TILES[dim][1]
    kernel = functools.partial(attention_bwd_kernel, causal=causal, scale=dim ** -0.5, **tiles)
    launch = jtile.pallas_like(kernel, name="bwd", interpret=False, input_output_aliases={6: 0},
                               out_shape=(S((b, s, h, dim), jnp.float32),
                                          S((b, s, h, dim), jnp.bfloat16),
                                          S((b, s, h, dim), jnp.bfloat16)))
    x = S((b, s, h, dim), jnp.bfloat16)
    rows = S((b, h, s), jnp.float32)
    return launch.lower(x, x, x, x, rows, rows, S((b, s, h, dim), jnp.float32),
                        target="sm_90a")


def _ring_body(lowered):
    rings = [s for s in statements(lowered.kernel.body) if isinstance(s, low.MbarrierPipeline)]
    assert len(rings) == 1
    return rings[0].body


@pytest.fixture
def late(monkeypatch):
    monkeypatch.delenv("JTILE_LATE_WGMMA_WAITS", raising=False)


@pytest.mark.parametrize("dim, causal", [(64, False), (128, True)])
def test_each_group_is_waited_for_before_its_first_use_and_drained_at_the_end(late, dim,
                                                                             causal):
    body = _ring_body(_backward(dim, causal))
    gemms = [s for s in body if isinstance(s, low.WgmmaGemm)]
    assert len(gemms) == 5 and all(g.commit and g.wait is None for g in gemms)
    in_flight = []
    for s in body:
        if isinstance(s, low.WgmmaWait):
            assert 0 <= s.pending < len(in_flight)
            done, in_flight = in_flight[:len(in_flight) - s.pending], \
                in_flight[len(in_flight) - s.pending:]
            assert {b for b in s.accumulators} == {g.tile.c.buffer for g in done}
            continue
        if isinstance(s, low.WgmmaGemm):
            in_flight.append(s)
            continue
        # No other statement touches a running group's registers or writes shared memory.
        touched = storage_of(deep_buffers_read(s) | deep_buffers_written(s))
        for g in in_flight:
            assert g.tile.c.buffer not in touched, (s, g.tile.c.buffer)
        assert not (in_flight and any(b.space.is_shared for b in deep_buffers_written(s)))
    assert not in_flight   # drained before the stage is released
    # At least one group runs beside the statement after it (dV beside dS^T).
    first_wait = [i for i, s in enumerate(body) if isinstance(s, low.WgmmaWait)]
    issued = [i for i, s in enumerate(body) if isinstance(s, low.WgmmaGemm)]
    assert any(not isinstance(body[i + 1], (low.WgmmaWait, low.WgmmaGemm)) for i in issued)
    assert first_wait


def test_the_generated_backward_waits_late_and_ptxas_keeps_the_wgmmas_asynchronous(late):
    import warnings

    lowered = _backward(64)
    source = lowered.cuda_source()
    loop = source[source.index("jt::mbarrier_wait_parity(&jt_full_bar"):]
    events = re.findall(r"jt::wgmma_commit\(\);|jt::wgmma_wait<\d>\(\);|for \(int jt_r\d+", loop)
    # S^T (waited before its exponentials), dP^T (waited before P^T goes to shared memory),
    # then dV: committed, and the dS^T loop runs before its wait.
    third = [i for i, e in enumerate(events) if e == "jt::wgmma_commit();"][2]
    assert events[third + 1].startswith("for (int jt_r"), events[:third + 3]
    assert events[third + 2] == "jt::wgmma_wait<0>();", events[:third + 3]
    with warnings.catch_warnings():
        warnings.simplefilter("error", jtile.JtilePerformanceWarning)
        assert lowered.compile().cubin[:4] == b"\x7fELF"


def test_turned_off_every_group_is_waited_for_at_once(monkeypatch):
    monkeypatch.setenv("JTILE_LATE_WGMMA_WAITS", "0")
    body = _ring_body(_backward(64))
    assert not any(isinstance(s, low.WgmmaWait) for s in body)
    assert all(g.wait == 0 for g in body if isinstance(g, low.WgmmaGemm))
