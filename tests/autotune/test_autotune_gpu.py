"""jtile.autotune on the GPU: the default timer tunes a small GEMM for real, skips the
configuration over the shared-memory limit, and a new process reads the choice from disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from tests.autotune import gpu_gemm

pytestmark = pytest.mark.gpu
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_gemm_tuned_on_the_gpu_and_read_back_by_a_new_process(monkeypatch, tmp_path):
    cache = tmp_path / "cache"
    monkeypatch.setenv("JTILE_CACHE_DIR", str(cache))
    monkeypatch.delenv("JTILE_DISABLE_CACHE", raising=False)
    monkeypatch.delenv("JTILE_INTERPRET", raising=False)
    tuned = gpu_gemm.make_tuned_gemm()
    a, b = gpu_gemm.inputs()
    out = jax.jit(lambda a, b: tuned(a, b, interpret=False))(a, b)
    ref = np.asarray(a, np.float32) @ np.asarray(b, np.float32)
    np.testing.assert_allclose(np.asarray(out, np.float32), ref, rtol=2e-2, atol=1e-1)

    (choice,) = tuned.choices
    assert choice.source == "tuned"
    assert "shared memory" in choice.failures[2]
    assert set(choice.seconds) == {0, 1, 3}
    assert all(0 < s < 1.0 for s in choice.seconds.values())
    assert choice.index == min(choice.seconds, key=choice.seconds.get)
    assert choice.fields["device"] == jax.devices()[0].device_kind
    assert len(list((cache / "autotune").glob("*.json"))) == 1

    env = dict(os.environ, JTILE_CACHE_DIR=str(cache),
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-m", "tests.autotune.gpu_gemm"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert (got["calls"], got["source"], got["index"]) == (0, "disk", choice.index)
    assert got["max_abs_err"] <= 1e-1 + 2e-2 * float(np.max(np.abs(ref)))
