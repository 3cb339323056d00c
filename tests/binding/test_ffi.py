"""The FFI extension and the jtile_launch custom call, checked without a GPU.

Lowering for the CUDA platform needs no GPU, so the custom call and its attributes are tested
here; running it is the GPU tests' job.
"""

from __future__ import annotations

import hashlib
import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import jax.extend
from jax.interpreters import mlir

from jtile.binding import ffi
from jtile.errors import JtileError

FAKE_CUBIN = bytes(range(16))
LAUNCH = dict(
    cubin=FAKE_CUBIN,
    kernel_name="add_kernel",
    grid=(7, 3, 2),
    block=(128, 2, 1),
    cluster=(1, 1, 1),
    shared_memory_bytes=65536,
)


def test_extension_imports_and_lists_the_target_stages():
    from jtile import _jtile_ffi

    registrations = _jtile_ffi.registrations()
    assert list(registrations) == [ffi.TARGET_NAME, ffi.COOPERATIVE_TARGET_NAME]
    for name in registrations:
        stages = registrations[name]
        assert sorted(stages) == ["execute", "initialize", "instantiate"]
        assert all(type(capsule).__name__ == "PyCapsule" for capsule in stages.values())
        # Without per-call-site state the handler has no instantiate stage.
        assert sorted(_jtile_ffi.registrations(stateful=False)[name]) == [
            "execute", "initialize"]


def test_state_type_is_a_jax_type_registration():
    from jtile import _jtile_ffi

    registration = _jtile_ffi.state_type()
    assert sorted(registration) == ["type_id", "type_info"]
    assert all(type(capsule).__name__ == "PyCapsule" for capsule in registration.values())


def test_driver_version_is_none_or_an_int():
    version = ffi.driver_version()
    assert version is None or (isinstance(version, int) and version >= 12000)


def test_register_is_idempotent_and_thread_safe():
    ffi.register()
    threads = [threading.Thread(target=ffi.register) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ffi.register()


def test_cuda_available_is_a_bool():
    assert isinstance(ffi.cuda_available(), bool)


def _lower_for_cuda(f, *args) -> str:
    return jax.jit(f).trace(*args).lower(lowering_platforms=("cuda",)).as_text()


def _fake_launch_primitive(**launch):
    """A minimal primitive whose lowering rule is launch_lowering, as pallas_like uses it."""
    prim = jax.extend.core.Primitive("jtile_test_launch")
    prim.multiple_results = True
    prim.def_abstract_eval(lambda *avals: [avals[0]])
    mlir.register_lowering(
        prim, lambda ctx, *args: ffi.launch_lowering(ctx, *args, **launch), platform="cuda"
    )
    return prim


def test_launch_lowering_emits_the_custom_call_with_its_attributes():
    prim = _fake_launch_primitive(**LAUNCH)
    x = jnp.zeros((256,), jnp.float32)
    text = _lower_for_cuda(lambda a, b: prim.bind(a, b)[0], x, x)

    assert f"@{ffi.TARGET_NAME}(" in text
    assert 'kernel_name = "add_kernel"' in text
    assert f'module_hash = "{hashlib.sha256(FAKE_CUBIN).hexdigest()}"' in text
    for name, value in [("grid_x", 7), ("grid_y", 3), ("grid_z", 2), ("block_x", 128),
                        ("block_y", 2), ("cluster_x", 1), ("shared_memory_bytes", 65536)]:
        assert f"{name} = {value} : i64" in text
    # Typed FFI attributes travel in mhlo.backend_config; the cubin as a dense u8 array.
    assert "mhlo.backend_config = {" in text
    assert "cubin = dense<[0, 1, 2, 3," in text and "tensor<16xui8>" in text


def test_launch_lowering_passes_input_output_aliases():
    prim = _fake_launch_primitive(**LAUNCH, input_output_aliases={1: 0})
    x = jnp.zeros((64,), jnp.float32)
    text = _lower_for_cuda(lambda a, b: prim.bind(a, b)[0], x, x)
    assert "output_operand_aliases" in text
    assert "operand_index = 1" in text


def test_launch_lowering_rejects_a_grid_not_divisible_by_the_cluster():
    prim = _fake_launch_primitive(**{**LAUNCH, "cluster": (2, 1, 1)})
    x = jnp.zeros((8,), jnp.float32)
    with pytest.raises(JtileError, match="not a multiple of the cluster"):
        _lower_for_cuda(lambda a: prim.bind(a)[0], x)


def test_ffi_call_with_the_same_attributes_lowers_for_cuda():
    ffi.register()

    def f(x):
        return jax.ffi.ffi_call(ffi.TARGET_NAME, jax.ShapeDtypeStruct(x.shape, x.dtype))(
            x,
            cubin=np.frombuffer(FAKE_CUBIN, np.uint8),
            module_hash=hashlib.sha256(FAKE_CUBIN).hexdigest(),
            kernel_name="scale_kernel",
            grid_x=4, grid_y=1, grid_z=1,
            block_x=256, block_y=1, block_z=1,
            cluster_x=1, cluster_y=1, cluster_z=1,
            shared_memory_bytes=0,
            tensor_maps=np.zeros((0,), np.int64),
        )

    text = _lower_for_cuda(f, jnp.ones((1024,), jnp.bfloat16))
    assert ffi.TARGET_NAME in text
    assert 'kernel_name = "scale_kernel"' in text
    assert "grid_x = 4 : i64" in text


def test_lowered_launch_exports_for_cuda():
    prim = _fake_launch_primitive(**LAUNCH)
    x = jax.ShapeDtypeStruct((32,), jnp.float32)
    exported = jax.export.export(
        jax.jit(lambda a: prim.bind(a)[0]),
        platforms=("cuda",),
        disabled_checks=[jax.export.DisabledSafetyCheck.custom_call(ffi.TARGET_NAME)],
    )(x)
    assert ffi.TARGET_NAME in exported.mlir_module()
    assert exported.serialize()


_IMPORT_ONLY = r"""
import jax

calls = []
for name in ("register_ffi_type", "register_ffi_target"):
    original = getattr(jax.ffi, name)
    def spy(*args, _name=name, _original=original, **kwargs):
        calls.append((_name, args[0], kwargs.get("platform")))
        return _original(*args, **kwargs)
    setattr(jax.ffi, name, spy)

import jtile  # noqa: E402  (the import under test)

print(calls)
"""


def test_import_jtile_registers_the_state_type_then_the_target_for_cuda():
    import ast
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", _IMPORT_ONLY], capture_output=True,
                            text=True, timeout=300, check=True)
    calls = ast.literal_eval(result.stdout.strip().splitlines()[-1])
    assert calls == [("register_ffi_type", ffi.STATE_TYPE_NAME, "CUDA"),
                     ("register_ffi_target", ffi.TARGET_NAME, "CUDA"),
                     ("register_ffi_target", ffi.COOPERATIVE_TARGET_NAME, "CUDA")]


def _add_kernel(X, Y, O):
    import jtile.language as T

    (N,) = X.shape
    with T.Kernel(T.ceildiv(N, 128), threads=128) as bx:
        for i in T.Parallel(128):
            with T.If(bx * 128 + i < N):
                O[bx * 128 + i] = X[bx * 128 + i] * 2.0 + Y[bx * 128 + i]


def test_a_jitted_jtile_kernel_exports_and_serialises_for_cuda():
    import jtile

    spec = jax.ShapeDtypeStruct((1000,), jnp.float32)
    kernel = jtile.pallas_like(_add_kernel, out_shape=spec,
                               compiler_params={"target": "sm_90a"})
    exported = jax.export.export(
        jax.jit(lambda x, y: kernel(x, y) + 1.0),
        platforms=("cuda",),
        disabled_checks=[jax.export.DisabledSafetyCheck.custom_call(ffi.TARGET_NAME)],
    )(spec, spec)
    restored = jax.export.deserialize(exported.serialize())
    text = restored.mlir_module()
    assert f"@{ffi.TARGET_NAME}(" in text
    assert "tensor_maps = dense<> : tensor<0xi64>" in text
    assert restored.platforms == ("cuda",)
    assert [a.shape for a in restored.in_avals] == [(1000,), (1000,)]
    assert restored.out_avals[0].shape == (1000,) and restored.out_avals[0].dtype == jnp.float32


@pytest.mark.gpu
def test_the_module_loads_at_the_initialize_stage_and_the_kernel_runs():
    import jtile

    spec = jax.ShapeDtypeStruct((1000,), jnp.float32)
    kernel = jtile.pallas_like(_add_kernel, out_shape=spec)
    f = jax.jit(lambda x, y: kernel(x, y))
    x = jax.random.normal(jax.random.key(3), spec.shape, spec.dtype)
    y = jax.random.normal(jax.random.key(4), spec.shape, spec.dtype)
    before = ffi.launcher_stats()
    for _ in range(3):
        np.testing.assert_allclose(np.asarray(f(x, y)), 2.0 * np.asarray(x) + np.asarray(y),
                                   rtol=1e-6, atol=1e-6)
    after = ffi.launcher_stats()
    assert ffi.handler_is_stateful()
    # One new call site, resolved before its first launch, never lazily at execute.
    assert (after["functions_resolved_at_initialize"]
            - before["functions_resolved_at_initialize"]) == 1
    assert after["functions_resolved_at_execute"] == before["functions_resolved_at_execute"]
    assert after["tensor_maps_encoded"] == before["tensor_maps_encoded"]
