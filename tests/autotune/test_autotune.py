"""jtile.autotune on the CPU: fake timers pick winners, choices persist on disk across
processes, keys tune separately, interpret mode takes the first configuration, failing
configurations are skipped with their reasons."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
from examples import gemm
from tests.autotune.tuned_functions import (FAKE_SECONDS, SCALE_CONFIGS, RecordingTimer,
                                            make_scaled_sum)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
S = jax.ShapeDtypeStruct


@pytest.fixture(autouse=True)
def private_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("JTILE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("JTILE_DISABLE_CACHE", raising=False)
    monkeypatch.delenv("JTILE_INTERPRET", raising=False)
    return tmp_path / "cache"


def _inputs(shape=(8,), dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype) + 2
    y = rng.standard_normal(shape).astype(dtype) - 1
    return jnp.asarray(x), jnp.asarray(y)


def _expected(x, y, scale):
    return np.asarray(x, np.float32) * scale + np.asarray(y, np.float32)


class RaisingTimer:
    def __call__(self, launch, config):
        raise AssertionError(f"the timer ran for {config}")


def test_fake_timer_picks_the_fastest_config():
    timer = RecordingTimer()
    tuned = make_scaled_sum(timer)
    x, y = _inputs()
    out = jax.jit(tuned)(x, y)
    np.testing.assert_allclose(np.asarray(out), _expected(x, y, 2.0), rtol=1e-6)
    assert timer.calls == SCALE_CONFIGS
    (choice,) = tuned.choices
    assert (choice.index, choice.source) == (1, "tuned")
    assert choice.seconds == {i: FAKE_SECONDS[c["scale"]] for i, c in enumerate(SCALE_CONFIGS)}
    # An eager call and a second jit reuse the choice without timing again.
    np.testing.assert_allclose(np.asarray(tuned(x, y)), _expected(x, y, 2.0), rtol=1e-6)
    assert len(timer.calls) == 3


def test_entry_on_disk_names_the_key(private_cache):
    tuned = make_scaled_sum(RecordingTimer())
    tuned(*_inputs(dtype=np.float16))
    folder = private_cache / "autotune"
    (path,) = folder.glob("*.json")
    assert not list(folder.glob("*.tmp"))
    entry = json.loads(path.read_text())
    fields = entry["fields"]
    assert fields["function"] == "tests.autotune.scaled_sum"
    assert fields["args"] == {"x": ["float16[8]"], "y": ["float16[8]"]}
    assert fields["platform"] == "cpu" and fields["device"] == jax.devices("cpu")[0].device_kind
    assert fields["jtile"] and fields["configs"] == SCALE_CONFIGS
    assert entry["index"] == 1 and entry["config"] == {"scale": 2.0}


def _run_second_process(cache, log, **extra_env):
    env = dict(os.environ, JTILE_CACHE_DIR=str(cache), TIMER_LOG=str(log), JAX_PLATFORMS="cpu",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), **extra_env)
    done = subprocess.run([sys.executable, "-m", "tests.autotune.tuned_functions"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_second_process_reads_the_choice_from_disk(private_cache, tmp_path):
    timer = RecordingTimer()
    tuned = make_scaled_sum(timer)
    x, y = jnp.arange(1, 9, dtype=jnp.float32), jnp.full((8,), 0.5, jnp.float32)
    tuned(x, y)
    assert len(timer.calls) == 3
    log = tmp_path / "timer.log"
    got = _run_second_process(private_cache, log)
    assert got["calls"] == 0 and not log.exists()
    assert (got["index"], got["source"]) == (1, "disk")
    np.testing.assert_allclose(got["out"], _expected(x, y, 2.0), rtol=1e-6)


def test_disabled_cache_tunes_again_in_a_new_process(private_cache, tmp_path):
    make_scaled_sum(RecordingTimer())(jnp.arange(1, 9, dtype=jnp.float32),
                                      jnp.full((8,), 0.5, jnp.float32))
    got = _run_second_process(private_cache, tmp_path / "timer.log", JTILE_DISABLE_CACHE="1")
    assert (got["calls"], got["source"], got["index"]) == (3, "tuned", 1)


def test_damaged_entry_is_replaced(private_cache):
    make_scaled_sum(RecordingTimer())(*_inputs())
    (path,) = (private_cache / "autotune").glob("*.json")
    path.write_text('{"schema": 1, "index": ')
    timer = RecordingTimer()
    out = make_scaled_sum(timer)(*_inputs())
    assert len(timer.calls) == 3
    np.testing.assert_allclose(np.asarray(out), _expected(*_inputs(), 2.0), rtol=1e-6)
    assert json.loads(path.read_text())["index"] == 1


def test_shapes_and_dtypes_tune_separately():
    timer = RecordingTimer()
    tuned = make_scaled_sum(timer)
    for shape, dtype in (((8,), np.float32), ((16,), np.float32), ((8,), np.float16),
                         ((8,), np.float32)):
        x, y = _inputs(shape, dtype)
        out = jax.jit(tuned)(x, y)
        assert out.dtype == dtype
        np.testing.assert_allclose(np.asarray(out, np.float32), _expected(x, y, 2.0),
                                   rtol=2e-3)
    assert len(timer.calls) == 9  # three keys, each timed once
    assert sorted(c.fields["args"]["x"][0] for c in tuned.choices) == [
        "float16[8]", "float32[16]", "float32[8]"]


def test_key_names_the_arguments_that_select_a_tuning():
    timer = RecordingTimer()

    @jtile.autotune(configs=SCALE_CONFIGS, key=["x"], timer=timer)
    def shifted(x, y, *, scale, shift=0.0):
        return x * scale + y + shift

    x, y = _inputs()
    _, y16 = _inputs((8,), np.float16)
    shifted(x, y, shift=1.0)
    shifted(x, y16.astype(jnp.float32) * 3, shift=2.0)  # y and shift are not in the key
    assert len(timer.calls) == 3
    out = shifted(*_inputs((4,)))
    assert len(timer.calls) == 6
    np.testing.assert_allclose(np.asarray(out), _expected(*_inputs((4,)), 2.0), rtol=1e-6)


def test_vmap_tunes_the_batched_shapes():
    timer = RecordingTimer()
    tuned = make_scaled_sum(timer)
    x, y = _inputs((3, 8))
    out = jax.jit(jax.vmap(tuned, in_axes=(0, None)))(x, y[0])
    np.testing.assert_allclose(np.asarray(out), _expected(x, y[0][None], 2.0), rtol=1e-6)
    (choice,) = tuned.choices
    assert choice.fields["vmap"] == [[0, None]]
    assert choice.fields["args"] == {"x": ["float32[3, 8]"], "y": ["float32[8]"]}


def test_choose_tunes_ahead_of_time():
    timer = RecordingTimer()
    tuned = make_scaled_sum(timer)
    choice = tuned.choose(S((32,), jnp.float32), S((32,), jnp.float32))
    assert choice.config == {"scale": 2.0} and len(timer.calls) == 3
    x, y = _inputs((32,))
    np.testing.assert_allclose(np.asarray(tuned(x, y)), _expected(x, y, 2.0), rtol=1e-6)
    assert len(timer.calls) == 3


def _gemm_inputs(m=96, n=80, k=64, dtype=jnp.float16):
    ka, kb = jax.random.split(jax.random.key(3))
    a = jax.random.normal(ka, (m, k), jnp.float32).astype(dtype)
    b = jax.random.normal(kb, (k, n), jnp.float32).astype(dtype)
    return a, b


GEMM_CONFIGS = [dict(block_m=64, block_n=64, block_k=32, stages=2, threads=128),
                dict(block_m=128, block_n=128, block_k=32, stages=3, threads=128)]


def test_interpret_mode_takes_the_first_config_without_timing():
    tuned = jtile.autotune(configs=GEMM_CONFIGS, timer=RaisingTimer())(gemm.matmul)
    a, b = _gemm_inputs()
    out = jax.jit(lambda a, b: tuned(a, b, interpret=True))(a, b)
    ref = np.asarray(a, np.float32) @ np.asarray(b, np.float32)
    np.testing.assert_allclose(np.asarray(out, np.float32), ref, rtol=2e-2, atol=5e-2)
    assert tuned.choose(a, b, interpret=True).source == "first"
    assert tuned.choices == []  # nothing tuned, nothing stored


def test_jtile_interpret_variable_takes_the_first_config(monkeypatch, private_cache):
    monkeypatch.setenv("JTILE_INTERPRET", "1")
    tuned = make_scaled_sum(RaisingTimer())
    x, y = _inputs()
    np.testing.assert_allclose(np.asarray(tuned(x, y)), _expected(x, y, 1.0), rtol=1e-6)
    assert not (private_cache / "autotune").exists()


def test_autotuned_example_gemm_and_its_gradient_in_interpret_mode():
    a, b = _gemm_inputs(256, 128, 160)  # the first configuration's tiles fit every GEMM
    dc = jax.random.normal(jax.random.key(9), (256, 128), jnp.float32).astype(jnp.float16)
    loss = lambda f: lambda a, b: jnp.sum(f(a, b).astype(jnp.float32) * dc)  # noqa: E731
    da, db = jax.jit(jax.grad(loss(gemm.dot_autotuned), argnums=(0, 1)))(a, b)
    ref = lambda a, b: jnp.dot(a.astype(jnp.float32), b.astype(jnp.float32))  # noqa: E731
    rda, rdb = jax.grad(loss(ref), argnums=(0, 1))(a, b)
    np.testing.assert_allclose(np.asarray(da, np.float32), np.asarray(rda), rtol=2e-2, atol=5e-2)
    np.testing.assert_allclose(np.asarray(db, np.float32), np.asarray(rdb), rtol=2e-2, atol=5e-2)


# ----------------------------------------------------------------- failing configurations
# Lowering for CUDA needs no GPU (JTILE_TARGET names the architecture): each candidate is really
# planned and compiled to a cubin, so a tile over the shared-memory limit fails as it would on
# the device. The fake timer never launches anything.

TOO_BIG = dict(block_m=256, block_n=256, block_k=128, stages=4, threads=256)


def _lower_for_cuda(tuned, m=256, n=512, k=128):
    fn = jax.jit(lambda a, b: tuned(a, b, interpret=False))
    return fn.trace(S((m, k), jnp.float16), S((k, n), jnp.float16)).lower(
        lowering_platforms=("cuda",))


def test_a_config_that_fails_to_compile_is_skipped_with_its_reason(monkeypatch):
    monkeypatch.setenv("JTILE_TARGET", "sm_90a")
    monkeypatch.setenv("JTILE_PERSISTENT", "0")   # the launch grid shows the winner's tiles
    calls = []

    def timer(launch, config):
        calls.append(config)
        return 1.0 / config["block_n"]  # wider tiles look faster

    configs = [dict(block_m=128, block_n=128, block_k=32, stages=3, threads=128), TOO_BIG,
               dict(block_m=128, block_n=256, block_k=64, stages=3, threads=256)]
    tuned = jtile.autotune(configs=configs, timer=timer)(gemm.matmul)
    text = _lower_for_cuda(tuned).as_text()
    assert calls == [configs[0], configs[2]]
    (choice,) = tuned.choices
    assert choice.index == 2 and set(choice.failures) == {1}
    assert "shared memory" in choice.failures[1] and "JtileTargetError" in choice.failures[1]
    assert choice.fields["target"] == "sm_90a" and choice.fields["platform"] == "cuda"
    assert "grid_x = 2 : i64" in text  # N = 512 over the winner's block_n = 256


def test_all_configs_failing_is_one_error_naming_every_reason(monkeypatch):
    monkeypatch.setenv("JTILE_TARGET", "sm_90a")
    configs = [TOO_BIG, dict(TOO_BIG, stages=3)]
    tuned = jtile.autotune(configs=configs, timer=RaisingTimer())(gemm.matmul)
    with pytest.raises(jtile.JtileError) as info:
        _lower_for_cuda(tuned)
    message = str(info.value)
    assert "every configuration failed on cuda" in message
    assert "[0] block_m=256" in message and "[1] block_m=256" in message
    assert message.count("shared memory") >= 2 and "gemm.matmul" in message


def test_timer_errors_and_bad_times_are_recorded():
    def timer(launch, config):
        if config["scale"] == 1.0:
            raise RuntimeError("launch failed")
        return float("nan") if config["scale"] == 3.0 else 1e-3

    tuned = make_scaled_sum(timer)
    x, y = _inputs()
    np.testing.assert_allclose(np.asarray(tuned(x, y)), _expected(x, y, 2.0), rtol=1e-6)
    (choice,) = tuned.choices
    assert choice.failures[0] == "RuntimeError: launch failed"
    assert "the timer returned nan" in choice.failures[2]


def test_real_timer_on_the_cpu():
    # The default timer also works for any JAX function on the platform being lowered for.
    tuned = make_scaled_sum(None)
    x, y = _inputs((64,))
    np.testing.assert_allclose(np.asarray(jax.jit(tuned)(x, y)),
                               _expected(x, y, SCALE_CONFIGS[tuned.choices[0].index]["scale"]),
                               rtol=1e-6)
    assert all(s > 0 for s in tuned.choices[0].seconds.values())
    assert len(tuned.choices[0].seconds) == 3


# ----------------------------------------------------------------- user mistakes


def _fn(x, *, scale):
    return x * scale


@pytest.mark.parametrize("configs, key, needle", [
    ([], None, "non-empty list"),
    ([dict(scale=1.0), dict(blocks=2)], None, "configs[1] sets ['blocks']"),
    ([dict(scale=[1, 2])], None, "configuration values are int, float, str, bool or None"),
    ([dict(scale=1.0)], ["y"], "key names ['y'], which are not parameters"),
    ([dict(scale=1.0)], ["scale"], "which the configurations set"),
])
def test_bad_decorations_are_refused(configs, key, needle):
    with pytest.raises(jtile.JtileError, match="jtile.autotune") as info:
        jtile.autotune(configs=configs, key=key)(_fn)
    assert needle in str(info.value)


def test_passing_a_tuned_argument_is_refused():
    tuned = jtile.autotune(configs=[dict(scale=1.0)])(_fn)
    with pytest.raises(jtile.JtileError, match=r"passes \['scale'\], which the autotuner"):
        tuned(jnp.ones(4), scale=2.0)


def test_grad_through_an_autotuned_call_names_custom_vjp():
    tuned = make_scaled_sum(RecordingTimer())
    with pytest.raises(jtile.JtileError, match="custom_vjp"):
        jax.grad(lambda x: tuned(x, x).sum())(jnp.ones(4))


def test_all_configs_failing_to_trace_is_one_error():
    def bad(x, *, scale):
        raise ValueError(f"no kernel for scale {scale}")

    tuned = jtile.autotune(configs=[dict(scale=1), dict(scale=2)])(bad)
    with pytest.raises(jtile.JtileError, match="no configuration could be traced") as info:
        tuned(jnp.ones(4))
    assert "no kernel for scale 1" in str(info.value) and "scale 2" in str(info.value)
