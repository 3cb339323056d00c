"""Tests for jtile.compiler.cache through compile_cuda: hits, damaged entries, concurrency."""

from __future__ import annotations

import multiprocessing
import os
import pathlib
import queue
import time

import pytest

from jtile import compiler
from jtile.compiler import cache, nvrtc
from jtile.compiler.target import parse_target

pytestmark = pytest.mark.skipif(
    not nvrtc.available(), reason="NVRTC or the CUDA headers are not installed"
)

SOURCE = r"""
#include <cuda_fp16.h>
extern "C" __global__ void add_half(const half* a, const half* b, half* c, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) c[i] = __hadd(a[i], b[i]);
}
"""
TARGET = parse_target("sm_90a")


@pytest.fixture(autouse=True)
def private_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("JTILE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("JTILE_COMPILER", "nvrtc")
    monkeypatch.delenv("JTILE_DISABLE_CACHE", raising=False)
    cache.reset_stats()
    return tmp_path / "cache"


class CountingCompile:
    """Wraps nvrtc.compile and counts how often a real compile happens."""

    def __init__(self):
        self.calls = 0
        self.real = nvrtc.compile

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.real(*args, **kwargs)


@pytest.fixture
def counting(monkeypatch):
    counter = CountingCompile()
    monkeypatch.setattr(nvrtc, "compile", counter)
    return counter


def _entry(directory: pathlib.Path) -> pathlib.Path:
    (entry,) = directory.glob("*.cubin")
    return entry


def test_miss_then_hit_without_compiling(private_cache, counting):
    first = compiler.compile_cuda(SOURCE, TARGET, "add_half")
    assert first.cached is False and counting.calls == 1
    second = compiler.compile_cuda(SOURCE, TARGET, "add_half")
    assert second.cached is True
    assert counting.calls == 1
    assert second.cubin == first.cubin
    assert (second.registers, second.kernel_name, second.target) == (
        first.registers,
        "add_half",
        TARGET,
    )
    assert cache.stats() == cache.CacheStats(hits=1, misses=1, corrupt=0)
    assert _entry(private_cache).parent == private_cache


def test_hit_never_calls_the_compiler(monkeypatch):
    compiler.compile_cuda(SOURCE, TARGET, "add_half")

    def must_not_compile(*args, **kwargs):
        raise AssertionError("the compiler ran on a cache hit")

    monkeypatch.setattr(nvrtc, "compile", must_not_compile)
    assert compiler.compile_cuda(SOURCE, TARGET, "add_half").cached is True


def test_truncated_entry_is_recompiled_and_repaired(private_cache, counting):
    good = compiler.compile_cuda(SOURCE, TARGET, "add_half")
    entry = _entry(private_cache)
    intact = entry.read_bytes()
    entry.write_bytes(intact[:-100])
    again = compiler.compile_cuda(SOURCE, TARGET, "add_half")
    assert again.cached is False and counting.calls == 2
    assert again.cubin == good.cubin
    # The rewritten entry differs from the first only in its recorded compile time.
    repaired = cache.load(private_cache, entry.stem)
    assert repaired is not None and repaired.cubin == good.cubin
    assert cache.stats().corrupt == 1
    assert compiler.compile_cuda(SOURCE, TARGET, "add_half").cached is True


@pytest.mark.parametrize("where", ["payload", "magic", "metadata"])
def test_corrupt_byte_is_a_miss(private_cache, counting, where):
    compiler.compile_cuda(SOURCE, TARGET, "add_half")
    entry = _entry(private_cache)
    blob = bytearray(entry.read_bytes())
    index = {"payload": len(blob) - 10, "magic": 0, "metadata": 20}[where]
    blob[index] ^= 0xFF
    entry.write_bytes(bytes(blob))
    assert compiler.compile_cuda(SOURCE, TARGET, "add_half").cached is False
    assert counting.calls == 2
    assert cache.stats().corrupt == 1


def test_key_changes_with_every_input(tmp_path):
    header_dir = tmp_path / "include"
    header_dir.mkdir()
    header = header_dir / "jtile_device.cuh"
    header.write_text("// v1\n")
    base = {
        "source": SOURCE,
        "target": TARGET,
        "kernel_name": "add_half",
        "compiler": "nvrtc 13.5",
        "options": ("-DX=1",),
        "include_dirs": (str(header_dir),),
    }
    key = cache.cache_key(**base)
    assert key == cache.cache_key(**base)
    variants = [
        {"source": SOURCE + "\n"},
        {"target": parse_target("sm_100a")},
        {"kernel_name": "other"},
        {"compiler": "nvrtc 13.0"},
        {"options": ("-DX=2",)},
        {"include_dirs": ()},
    ]
    for change in variants:
        assert cache.cache_key(**{**base, **change}) != key, change
    header.write_text("// v2\n")
    assert cache.cache_key(**base) != key


def test_editing_an_included_header_recompiles(tmp_path, counting):
    include = tmp_path / "include"
    include.mkdir()
    (include / "scale.cuh").write_text("#define SCALE 2\n")
    source = (
        '#include "scale.cuh"\nextern "C" __global__ void k(int* p) { p[0] = SCALE; }\n'
    )
    compiler.compile_cuda(source, TARGET, "k", include_dirs=[str(include)])
    (include / "scale.cuh").write_text("#define SCALE 3\n")
    assert (
        compiler.compile_cuda(source, TARGET, "k", include_dirs=[str(include)]).cached
        is False
    )
    assert counting.calls == 2


def test_disabled_cache_compiles_each_time(monkeypatch, private_cache, counting):
    monkeypatch.setenv("JTILE_DISABLE_CACHE", "1")
    assert compiler.compile_cuda(SOURCE, TARGET, "add_half").cached is False
    assert compiler.compile_cuda(SOURCE, TARGET, "add_half").cached is False
    assert counting.calls == 2
    assert not private_cache.exists() or not any(private_cache.glob("*.cubin"))


def test_cache_dir_comes_from_env(monkeypatch, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    monkeypatch.setenv("JTILE_CACHE_DIR", str(elsewhere))
    compiler.compile_cuda(SOURCE, TARGET, "add_half")
    assert len(list(elsewhere.glob("*.cubin"))) == 1


def test_unwritable_cache_dir_still_compiles(monkeypatch, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("JTILE_CACHE_DIR", str(blocker / "cache"))
    with pytest.warns(UserWarning, match="without the cache"):
        binary = compiler.compile_cuda(SOURCE, TARGET, "add_half")
    assert binary.cubin.startswith(b"\x7fELF")


def _compile_in_child(cache_dir: str, marker: str, barrier, results) -> None:
    """Runs in a spawned process: compile SOURCE, logging each real compile to ``marker``."""
    os.environ["JTILE_CACHE_DIR"] = cache_dir
    os.environ["JTILE_COMPILER"] = "nvrtc"
    os.environ.pop("JTILE_DISABLE_CACHE", None)
    real = nvrtc.compile

    def slow_logged_compile(*args, **kwargs):
        with open(marker, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        # Long enough that the other process is certain to arrive while this one compiles.
        time.sleep(1.0)
        return real(*args, **kwargs)

    nvrtc.compile = slow_logged_compile
    barrier.wait(timeout=60)
    binary = compiler.compile_cuda(SOURCE, TARGET, "add_half")
    results.put((binary.cubin, binary.cached))


def test_two_processes_compile_once(tmp_path):
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    results = context.Queue()
    marker = tmp_path / "compiles.log"
    cache_dir = tmp_path / "shared-cache"
    processes = [
        context.Process(
            target=_compile_in_child,
            args=(str(cache_dir), str(marker), barrier, results),
        )
        for _ in range(2)
    ]
    for process in processes:
        process.start()
    outcomes = []
    deadline = time.monotonic() + 120
    while len(outcomes) < len(processes):
        try:
            outcomes.append(results.get(timeout=1))
        except queue.Empty:
            # Fail fast, with the child's traceback on stderr, rather than wait out the deadline.
            assert all(p.exitcode in (None, 0) for p in processes), (
                "a child process failed"
            )
            assert time.monotonic() < deadline, "the child processes did not finish"
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    assert len(marker.read_text().splitlines()) == 1
    (cubin_a, cached_a), (cubin_b, cached_b) = outcomes
    assert cubin_a == cubin_b and cubin_a.startswith(b"\x7fELF")
    assert sorted([cached_a, cached_b]) == [False, True]
