"""On the GPU: a jax.profiler trace of a jitted function that calls a jtile kernel lists the
kernel, on the device's plane, under the name the user gave it (the cubin's entry function).

`jax.profiler.trace(log_dir)` writes `plugins/profile/<run>/<host>.xplane.pb` (and a
`.trace.json.gz` converted from it); `jax.profiler.ProfileData` reads the xplane offline. GPU
activity (CUPTI) is on planes named `/device:GPU:<n>`, one event per kernel launch named by
the kernel's symbol."""

from __future__ import annotations

import gzip
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
import jtile.language as T

pytestmark = pytest.mark.gpu

N = 5000  # not a multiple of the block: the tail is masked
NAME = "jtile_profiled_scale_add"


def scale_add_kernel(X, Y, O):
    """O = 3 X + Y, one element per thread."""
    (n,) = X.shape
    with T.Kernel(T.ceildiv(n, 256), threads=256) as bx:
        for i in T.Parallel(256):
            with T.If(bx * 256 + i < n):
                O[bx * 256 + i] = X[bx * 256 + i] * 3.0 + Y[bx * 256 + i]


def _kernel():
    return jtile.pallas_like(scale_add_kernel, name=NAME,
                             out_shape=jax.ShapeDtypeStruct((N,), jnp.float32))


def _inputs(seed):
    kx, ky = jax.random.split(jax.random.key(seed))
    return jax.random.normal(kx, (N,), jnp.float32), jax.random.normal(ky, (N,), jnp.float32)


def _device_event_names(log_dir) -> tuple[set, list]:
    """Event names on the trace's GPU planes, and every plane's name (for messages)."""
    (xplane,) = pathlib.Path(log_dir).rglob("*.xplane.pb")
    data = jax.profiler.ProfileData.from_file(str(xplane))
    planes = list(data.planes)
    names = {event.name
             for plane in planes if plane.name.startswith("/device:GPU")
             for line in plane.lines for event in line.events}
    return names, [plane.name for plane in planes]


def _profile(tmp_path, f, *args, repeats=3):
    result = jax.block_until_ready(f(*args))  # compiled outside the trace
    with jax.profiler.trace(str(tmp_path)):
        for _ in range(repeats):
            result = jax.block_until_ready(f(*args))
    return result


def test_a_profiler_trace_names_the_jtile_kernel(tmp_path):
    kernel = _kernel()
    f = jax.jit(lambda x, y: jnp.tanh(kernel(x, y)))
    x, y = _inputs(5)
    result = _profile(tmp_path, f, x, y)
    expected = np.tanh(3.0 * np.asarray(x, np.float64) + np.asarray(y, np.float64))
    np.testing.assert_allclose(np.asarray(result), expected, rtol=1e-5, atol=1e-6)

    names, planes = _device_event_names(tmp_path)
    if not names:
        pytest.skip(f"the trace has no GPU activity (CUPTI unavailable?); planes: {planes}")
    assert NAME in names, f"{NAME} not among the GPU events: {sorted(names)[:40]}"

    # The Chrome-trace file converted from the same profile lists it too.
    traces = list(pathlib.Path(tmp_path).rglob("*.trace.json.gz"))
    if traces:
        with gzip.open(traces[0], "rt") as f_json:
            events = json.load(f_json)["traceEvents"]
        assert any(event.get("name") == NAME for event in events)


def test_kernels_inside_a_command_buffer_are_named_too(tmp_path):
    """XLA runs longer chains of custom calls as a CUDA graph (a command buffer); the kernels
    inside it are still traced by name."""
    kernel = _kernel()

    def chain(x, y):
        for _ in range(8):
            x = kernel(x, y) * 0.25
        return x

    f = jax.jit(chain)
    x, y = _inputs(6)
    result = _profile(tmp_path, f, x, y)
    expected = np.asarray(x, np.float64)
    for _ in range(8):
        expected = (3.0 * expected + np.asarray(y, np.float64)) * 0.25
    np.testing.assert_allclose(np.asarray(result), expected, rtol=1e-5, atol=1e-5)

    names, planes = _device_event_names(tmp_path)
    if not names:
        pytest.skip(f"the trace has no GPU activity (CUPTI unavailable?); planes: {planes}")
    assert NAME in names, f"{NAME} not among the GPU events: {sorted(names)[:40]}"
