"""Tests for jtile.compiler.target: parsing, rejection and per-architecture features."""

from __future__ import annotations

import pytest

from jtile.compiler import target as target_module
from jtile.compiler.target import Target, default_target, parse_target, supported_archs
from jtile.errors import JtileTargetError


@pytest.mark.parametrize("text", ["sm_90a", "sm90a", "90a", "SM_90A", " sm_90a "])
def test_spellings_of_sm90a(text):
    assert parse_target(text) == Target("sm_90a", 9, 0, True)


def test_plain_and_three_digit_archs():
    assert parse_target("sm_80") == Target("sm_80", 8, 0, False)
    assert parse_target("sm_100a") == Target("sm_100a", 10, 0, True)
    assert parse_target("121") == Target("sm_121", 12, 1, False)


def test_tuple_picks_arch_specific_on_hopper_and_blackwell():
    assert parse_target((9, 0)).arch == "sm_90a"
    assert parse_target((10, 0)).arch == "sm_100a"
    assert parse_target((8, 6)).arch == "sm_86"
    assert parse_target((12, 0)).arch == "sm_120"


def test_target_passes_through():
    target = parse_target("sm_80")
    assert parse_target(target) is target


@pytest.mark.parametrize(
    "text",
    ["sm_70", "sm_61", (7, 0), "sm_91", "sm_80a", "compute_90a", "hopper", "sm_"],
)
def test_rejects_unsupported_with_list(text):
    with pytest.raises(
        JtileTargetError, match=r"Supported targets: sm_75, sm_80.*sm_90a.*sm_100a"
    ):
        parse_target(text)


def test_supported_archs_cover_nvrtc_13():
    names = supported_archs()
    for name in (
        "sm_75",
        "sm_80",
        "sm_86",
        "sm_89",
        "sm_90a",
        "sm_100a",
        "sm_103a",
        "sm_120",
    ):
        assert name in names
    assert "sm_80a" not in names


def test_features_sm80():
    t = parse_target("sm_80")
    assert t.has_cp_async and t.has_ldmatrix and t.has_mma_sync_bf16
    assert not (
        t.has_mbarrier
        or t.has_tma
        or t.has_clusters
        or t.has_wgmma
        or t.has_tmem
        or t.has_tcgen05
    )
    assert t.max_shared_memory_per_block == 166912


def test_features_sm75():
    t = parse_target("sm_75")
    assert t.has_ldmatrix and not t.has_cp_async and not t.has_mma_sync_bf16
    assert t.max_shared_memory_per_block == 65536


def test_features_sm90a_and_sm90():
    t = parse_target("sm_90a")
    assert t.has_mbarrier and t.has_tma and t.has_clusters and t.has_wgmma
    assert not (t.has_tmem or t.has_tcgen05)
    assert t.max_shared_memory_per_block == 232448
    # wgmma is arch-specific: plain sm_90 code cannot use it.
    assert not parse_target("sm_90").has_wgmma


@pytest.mark.parametrize("arch", ["sm_100a", "sm_103a", "sm_110a"])
def test_features_datacenter_blackwell(arch):
    t = parse_target(arch)
    assert t.has_tmem and t.has_tcgen05 and t.has_tma and not t.has_wgmma
    assert t.max_shared_memory_per_block == 232448


@pytest.mark.parametrize("arch", ["sm_100", "sm_120a", "sm_121"])
def test_no_tcgen05_without_a_or_on_consumer_blackwell(arch):
    assert not parse_target(arch).has_tcgen05


@pytest.mark.parametrize(
    "arch,smem", [("sm_86", 101376), ("sm_89", 101376), ("sm_120", 101376)]
)
def test_shared_memory_limits(arch, smem):
    t = parse_target(arch)
    assert t.max_shared_memory_per_block == smem
    assert t.static_shared_memory_limit == 49152


def test_default_target_uses_override(monkeypatch):
    monkeypatch.setenv("JTILE_TARGET", "sm_100a")
    assert default_target().arch == "sm_100a"


def test_default_target_rejects_bad_override(monkeypatch):
    monkeypatch.setenv("JTILE_TARGET", "sm_70")
    with pytest.raises(JtileTargetError, match="sm_70"):
        default_target()


def test_default_target_without_gpu_says_what_to_do(monkeypatch):
    monkeypatch.delenv("JTILE_TARGET", raising=False)
    monkeypatch.setattr(target_module, "_local_gpu", lambda: None)
    with pytest.raises(JtileTargetError, match=r"no CUDA GPU.*target="):
        default_target()


def test_default_target_from_local_gpu(monkeypatch):
    monkeypatch.delenv("JTILE_TARGET", raising=False)
    monkeypatch.setattr(target_module, "_local_gpu", lambda: ((9, 0), 132))
    target = default_target()
    assert target.arch == "sm_90a" and target.sm_count == 132


def test_local_gpu_is_none_on_cpu_jax():
    import jax

    try:
        jax.devices("gpu")
    except RuntimeError:
        # No GPU backend: jax.devices("gpu") raises and the probe must answer "none".
        assert target_module._local_gpu() is None
    else:
        pytest.skip("a GPU is present; this test checks the CPU-only answer")
