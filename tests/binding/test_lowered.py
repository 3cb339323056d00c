"""Ahead-of-time lowering with no GPU: `.lower()` (IR, CUDA, cubin) and StableHLO for CUDA."""

from __future__ import annotations

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
import jtile.language as T
from jtile.binding.ffi import TARGET_NAME, cuda_available


def _codegen_present() -> bool:
    try:
        return importlib.util.find_spec("jtile.codegen.cuda") is not None
    except ImportError:
        return False


def _compiler_present() -> bool:
    from jtile.compiler import nvcc, nvrtc

    return nvrtc.available() or nvcc.available()


def _extension_present() -> bool:
    try:
        from jtile.binding import ffi

        ffi._extension()
        return True
    except jtile.JtileError:
        return False


# These run as soon as the code generator exists; until then they are skipped, never forever.
needs_codegen = pytest.mark.skipif(not _codegen_present(),
                                   reason="jtile.codegen.cuda is not written yet")
needs_compiler = pytest.mark.skipif(not _compiler_present(), reason="no NVRTC and no nvcc")
needs_extension = pytest.mark.skipif(not _extension_present(),
                                     reason="jtile._jtile_ffi is not built")

N = 1024
BLOCK = 256


@pytest.fixture(autouse=True)
def _no_global_switches(monkeypatch):
    for name in ("JTILE_INTERPRET", "JTILE_DEBUG", "JTILE_TARGET"):
        monkeypatch.delenv(name, raising=False)


def add_kernel(X, Y, O):
    (n,) = X.shape
    with T.Kernel(T.ceildiv(n, BLOCK), threads=BLOCK) as bx:
        for i in T.Parallel(BLOCK):
            with T.If(bx * BLOCK + i < n):
                O[bx * BLOCK + i] = X[bx * BLOCK + i] + Y[bx * BLOCK + i]


def _spec(n=N):
    return jax.ShapeDtypeStruct((n,), jnp.float32)


def _add(**kwargs):
    return jtile.pallas_like(add_kernel, out_shape=_spec(), **kwargs)


# ----------------------------------------------------------------------------- .lower()


@pytest.mark.parametrize("target", ["sm_80", "sm_90a", "sm_100a"])
def test_lower_gives_the_ir_for_a_target(target):
    lowered = _add().lower(_spec(), _spec(), target=target)
    assert isinstance(lowered, jtile.Lowered)
    assert lowered.target == target
    text = lowered.ir_text()
    assert "kernel add_kernel(" in text
    assert "threads=256" in text


def test_lower_accepts_arrays_and_shape_dtype_structs_alike():
    x = jnp.zeros((N,), jnp.float32)
    a = _add().lower(x, x, target="sm_90a").ir_text()
    b = _add().lower(_spec(), _spec(), target="sm_90a").ir_text()
    assert a == b


def test_lower_rejects_an_unknown_target():
    with pytest.raises(jtile.JtileTargetError, match="sm_70"):
        _add().lower(_spec(), _spec(), target="sm_70")


@pytest.mark.skipif(cuda_available(), reason="this machine has a CUDA GPU")
def test_lower_without_a_target_or_gpu_says_how_to_name_one():
    with pytest.raises(jtile.JtileTargetError, match="target="):
        _add().lower(_spec(), _spec())


def test_lower_target_defaults_come_from_compiler_params_then_the_environment(monkeypatch):
    assert _add(compiler_params={"target": "sm_80"}).lower(_spec(), _spec()).target == "sm_80"
    monkeypatch.setenv("JTILE_TARGET", "sm_90a")
    assert _add().lower(_spec(), _spec()).target == "sm_90a"


def test_lower_checks_target_features():
    def barrier_kernel(X, O):
        with T.Kernel(1, threads=128) as _:
            bar = T.alloc_barrier(128)
            T.mbarrier_arrive(bar)
            for i in T.Parallel(128):
                O[i] = X[i]

    f = jtile.pallas_like(barrier_kernel, out_shape=_spec(128))
    with pytest.raises(jtile.JtileTargetError, match="sm_80"):
        f.lower(_spec(128), target="sm_80")


@needs_codegen
@pytest.mark.parametrize("target", ["sm_80", "sm_90a"])
def test_lower_gives_cuda_source(target):
    lowered = _add().lower(_spec(), _spec(), target=target)
    assert lowered.has_cuda_source
    source = lowered.cuda_source()
    assert 'extern "C"' in source and lowered.kernel_name in source
    assert target in source  # the header comment names the target


@needs_codegen
def test_debug_prints_the_cuda_on_lower(capsys):
    _add(debug=True).lower(_spec(), _spec(), target="sm_90a")
    printed = capsys.readouterr().out
    assert "kernel add_kernel(" in printed  # the IR
    assert 'extern "C"' in printed          # the CUDA


@needs_codegen
@needs_compiler
@pytest.mark.parametrize("target", ["sm_80", "sm_90a"])
def test_compile_gives_a_cubin_and_its_resources(target):
    compiled = _add().lower(_spec(), _spec(), target=target).compile()
    assert isinstance(compiled, jtile.Compiled)
    assert compiled.cubin[:4] == b"\x7fELF"
    assert compiled.target == target and compiled.kernel_name
    assert isinstance(compiled.registers, int) and compiled.registers > 0
    assert isinstance(compiled.shared_memory_bytes, int) and compiled.shared_memory_bytes >= 0
    assert compiled.block[0] == BLOCK and compiled.grid[0] == N // BLOCK


@needs_codegen
@needs_compiler
def test_shared_memory_counts_static_and_dynamic():
    def staged_kernel(X, O):
        with T.Kernel(N // BLOCK, threads=BLOCK) as bx:
            tile = T.alloc_shared((BLOCK,), "float32")
            T.copy(X[bx * BLOCK:(bx + 1) * BLOCK], tile)
            for i in T.Parallel(BLOCK):
                O[bx * BLOCK + i] = tile[i] * 2.0

    f = jtile.pallas_like(staged_kernel, out_shape=_spec())
    compiled = f.lower(_spec(), target="sm_90a").compile()
    assert compiled.shared_memory_bytes >= BLOCK * 4


# ----------------------------------------------------------------------------- StableHLO


def _stablehlo_for_cuda(f, *args) -> str:
    return jax.jit(f).trace(*args).lower(lowering_platforms=("cuda",)).as_text()


@needs_codegen
@needs_compiler
@needs_extension
def test_lowering_for_cuda_emits_the_launch_custom_call():
    add = _add(compiler_params={"target": "sm_90a"})
    x = jnp.zeros((N,), jnp.float32)
    text = _stablehlo_for_cuda(add, x, x)
    assert text.count(f"@{TARGET_NAME}(") == 1
    assert 'kernel_name = "add_kernel"' in text
    assert f"block_x = {BLOCK} : i64" in text
    assert f"grid_x = {N // BLOCK} : i64" in text


@needs_codegen
@needs_compiler
@needs_extension
def test_lowering_for_cuda_uses_jtile_target(monkeypatch):
    monkeypatch.setenv("JTILE_TARGET", "sm_80")
    x = jnp.zeros((N,), jnp.float32)
    assert TARGET_NAME in _stablehlo_for_cuda(_add(), x, x)


@needs_codegen
@needs_compiler
@needs_extension
def test_vmap_lowers_to_a_single_launch():
    add = _add(compiler_params={"target": "sm_90a"})
    xs = jnp.zeros((3, N), jnp.float32)
    y = jnp.zeros((N,), jnp.float32)
    text = _stablehlo_for_cuda(jax.vmap(add, in_axes=(0, None)), xs, y)
    assert text.count(f"@{TARGET_NAME}(") == 1
    assert "tensor<3x1024xf32>" in text


@needs_codegen
@needs_compiler
@needs_extension
def test_lowering_for_cuda_keeps_input_output_aliases():
    def accumulate_kernel(X, Acc, O):
        with T.Kernel(N // BLOCK, threads=BLOCK) as bx:
            for i in T.Parallel(BLOCK):
                O[bx * BLOCK + i] = O[bx * BLOCK + i] + X[bx * BLOCK + i]

    f = jtile.pallas_like(accumulate_kernel, out_shape=_spec(), input_output_aliases={1: 0},
                          compiler_params={"target": "sm_90a"})
    x = jnp.zeros((N,), jnp.float32)
    text = _stablehlo_for_cuda(f, x, x)
    assert "output_operand_aliases" in text and "operand_index = 1" in text


@needs_codegen
@needs_compiler
@needs_extension
def test_lowering_for_cuda_inside_shard_map():
    from jax.sharding import NamedSharding, PartitionSpec as P

    add = _add(compiler_params={"target": "sm_90a"})
    mesh = jax.make_mesh((1,), ("x",))
    x = jax.device_put(jnp.zeros((N,), jnp.float32), NamedSharding(mesh, P("x")))
    f = jax.shard_map(add, mesh=mesh, in_specs=(P("x"), P("x")), out_specs=P("x"))
    assert TARGET_NAME in _stablehlo_for_cuda(f, x, x)


@pytest.mark.skipif(cuda_available(), reason="this machine has a CUDA GPU")
def test_lowering_for_cuda_without_a_target_names_the_knobs():
    x = jnp.zeros((N,), jnp.float32)
    with pytest.raises(jtile.JtileTargetError, match="compiler_params"):
        _stablehlo_for_cuda(_add(), x, x)


def test_interpret_mode_lowers_for_cuda_without_a_custom_call():
    x = jnp.zeros((N,), jnp.float32)
    text = _stablehlo_for_cuda(_add(interpret=True), x, x)
    assert TARGET_NAME not in text


@needs_codegen
@needs_compiler
@needs_extension
def test_export_for_cuda_serializes():
    add = _add(compiler_params={"target": "sm_90a"})
    exported = jax.export.export(
        jax.jit(add), platforms=("cuda",),
        disabled_checks=[jax.export.DisabledSafetyCheck.custom_call(TARGET_NAME)],
    )(_spec(), _spec())
    assert TARGET_NAME in exported.mlir_module()
    if importlib.util.find_spec("flatbuffers") is not None:
        assert exported.serialize()


# ----------------------------------------------------------------------------- GPU


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="needs a CUDA GPU")
def test_compiled_matches_interpret_on_the_gpu():
    x = jnp.asarray(np.random.default_rng(0).standard_normal(N), jnp.float32)
    y = jnp.asarray(np.random.default_rng(1).standard_normal(N), jnp.float32)
    np.testing.assert_allclose(jax.jit(_add())(x, y), _add(interpret=True)(x, y), rtol=1e-6)
    xs = jnp.stack([x, y, x * y])
    np.testing.assert_allclose(jax.vmap(_add(), in_axes=(0, None))(xs, y), xs + y, rtol=1e-6)
