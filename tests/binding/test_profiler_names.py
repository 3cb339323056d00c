"""Kernels carry the user's name into profilers: the custom call runs under
`jax.named_scope(<kernel symbol>)` (its location and HLO `op_name` say
`jit(f)/<symbol>/jtile_call`), and the cubin's one entry function is that symbol, which is what
Nsight and `jax.profiler` list on the GPU. All of it is checked here without a GPU; the GPU trace
itself is tests/gpu/test_profiler_gpu.py."""

from __future__ import annotations

import functools
import pathlib
import re
import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
import jtile.language as T
from jtile.binding.primitive import kernel_scope
from jtile.codegen.cuda import c_identifier

N = 1000
SPEC = jax.ShapeDtypeStruct((N,), jnp.float32)


def axpy_kernel(X, Y, O, *, alpha=2.0):
    """O = alpha X + Y, one element per thread, the tail masked."""
    (n,) = X.shape
    with T.Kernel(T.ceildiv(n, 128), threads=128) as bx:
        for i in T.Parallel(128):
            with T.If(bx * 128 + i < n):
                O[bx * 128 + i] = X[bx * 128 + i] * alpha + Y[bx * 128 + i]


def _launcher(name=None, shape=(N,), **kwargs):
    kwargs.setdefault("compiler_params", {"target": "sm_90a"})
    return jtile.pallas_like(axpy_kernel, out_shape=jax.ShapeDtypeStruct(shape, jnp.float32),
                             name=name, **kwargs)


def _inputs(shape=(N,), seed=0):
    kx, ky = jax.random.split(jax.random.key(seed))
    return (jax.random.normal(kx, shape, jnp.float32),
            jax.random.normal(ky, shape, jnp.float32))


def _lower_for_cuda(f, *args):
    return jax.jit(f).trace(*args).lower(lowering_platforms=("cuda",))


def _custom_call_op_names(lowered) -> list[str]:
    """The HLO `op_name` metadata of every jtile_launch custom call."""
    text = lowered.compiler_ir("hlo").as_hlo_module().to_string()
    lines = [line for line in text.splitlines() if 'custom_call_target="jtile_launch"' in line]
    return [re.search(r'op_name="([^"]*)"', line).group(1) for line in lines]


def _entry_functions(cubin: bytes) -> list[str]:
    """The global function symbols of a cubin (an ELF64 image): its kernels' entry points."""
    assert cubin[:4] == b"\x7fELF" and cubin[4] == 2, "a cubin is a 64-bit ELF image"
    shoff, = struct.unpack_from("<Q", cubin, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", cubin, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", cubin, shoff + i * shentsize)
                for i in range(shnum)]
    names = []
    for _, kind, _, _, offset, size, link, _, _, entsize in sections:
        if kind != 2:  # SHT_SYMTAB
            continue
        strtab_offset = sections[link][4]
        for at in range(offset, offset + size, entsize):
            name_offset, info = struct.unpack_from("<IB", cubin, at)
            if info & 0xF == 2 and info >> 4 == 1:  # STT_FUNC, STB_GLOBAL
                end = cubin.index(b"\0", strtab_offset + name_offset)
                names.append(cubin[strtab_offset + name_offset:end].decode())
    return names


# ------------------------------------------------------------------ the name scope


def test_the_custom_call_runs_under_the_kernel_name_scope():
    kernel = _launcher()
    lowered = _lower_for_cuda(lambda x, y: jnp.tanh(kernel(x, y)), SPEC, SPEC)
    assert _custom_call_op_names(lowered) == ["jit(<lambda>)/axpy_kernel/jtile_call"]
    # The MLIR location the op_name comes from; XLA's own op next to it is outside the scope.
    locations = lowered.as_text(debug_info=True)
    assert 'loc("jit(<lambda>)/axpy_kernel/jtile_call"' in locations
    assert 'loc("jit(<lambda>)/tanh"' in locations
    assert "/axpy_kernel/tanh" not in locations


def test_the_jaxpr_equation_carries_the_scope_and_the_result_is_right():
    kernel = _launcher(interpret=True)
    x, y = _inputs(seed=1)
    jaxpr = jax.make_jaxpr(kernel)(x, y)
    (eqn,) = [e for e in jaxpr.eqns if e.primitive.name == "jtile_call"]
    assert str(eqn.source_info.name_stack) == "axpy_kernel"
    np.testing.assert_allclose(np.asarray(kernel(x, y)), 2.0 * np.asarray(x) + np.asarray(y),
                               rtol=1e-6, atol=1e-6)


def test_an_explicit_name_and_an_odd_name_give_the_scope_of_the_symbol():
    for name, symbol in [("fused axpy/v2", "fused_axpy_v2"), ("2pass", "k_2pass")]:
        kernel = _launcher(name=name)
        assert kernel_scope(name) == symbol == c_identifier(name)
        (op_name,) = _custom_call_op_names(_lower_for_cuda(kernel, SPEC, SPEC))
        assert op_name.endswith(f"/{symbol}/jtile_call"), op_name
        assert kernel.lower(SPEC, SPEC, target="sm_90a").kernel_name == symbol


def test_vmap_keeps_one_scope_around_the_folded_launch():
    kernel = _launcher()
    batched = jax.ShapeDtypeStruct((3, N), jnp.float32)
    op_names = _custom_call_op_names(_lower_for_cuda(jax.vmap(kernel), batched, batched))
    # One launch for the whole batch, named once (jax writes a scope under vmap as vmap(name)).
    assert op_names == ["jit(axpy_kernel)/vmap(axpy_kernel)/jtile_call"]


def _profiled_xplane(tmp_path, fn, *args) -> bytes:
    """The xplane.pb bytes of a jax.profiler trace of `fn(*args)`."""
    with jax.profiler.trace(str(tmp_path)):
        jax.block_until_ready(fn(*args))
    (xplane,) = pathlib.Path(tmp_path).rglob("*.xplane.pb")
    return xplane.read_bytes()


def test_an_eager_call_runs_under_the_scope(tmp_path):
    kernel = _launcher(name="axpy_eager", interpret=True)
    x, y = _inputs(seed=2)
    np.testing.assert_allclose(np.asarray(kernel(x, y)), 2.0 * np.asarray(x) + np.asarray(y),
                               rtol=1e-6, atol=1e-6)
    # The eager call's program, as executed, has the kernel's ops under its scope.
    assert b"/axpy_eager/" in _profiled_xplane(tmp_path, kernel, x, y)


def test_a_forward_and_backward_pair_are_each_named():
    forward = _launcher(name="axpy_fwd")
    # d(alpha x + y)/dx = alpha, /dy = 1: the backward kernel scales the cotangent.
    backward = jtile.pallas_like(
        functools.partial(axpy_kernel, alpha=2.0), name="axpy_bwd",
        out_shape=SPEC, compiler_params={"target": "sm_90a"})

    @jax.custom_vjp
    def axpy(x, y):
        return forward(x, y)

    def fwd(x, y):
        return forward(x, y), None

    def bwd(_, g):
        return backward(g, jnp.zeros_like(g)), g

    axpy.defvjp(fwd, bwd)
    # value_and_grad keeps the forward launch live.
    lowered = _lower_for_cuda(
        jax.value_and_grad(lambda x, y: axpy(x, y).sum(), argnums=(0, 1)), SPEC, SPEC)
    # jax writes a scope under a transformation as transform(name).
    assert _custom_call_op_names(lowered) == [
        "jit(<lambda>)/jvp(axpy_fwd)/jtile_call",
        "jit(<lambda>)/transpose(jvp(axpy_bwd))/jtile_call"]


def test_interpret_mode_ops_run_under_the_scope_in_a_cpu_profile(tmp_path):
    """On the CPU the kernel is jax.numpy ops; a jax.profiler trace holds the executed HLO,
    whose op_names put those ops under the kernel's scope."""
    kernel = _launcher(name="profiled_axpy_cpu", interpret=True)
    f = jax.jit(lambda x, y: kernel(x, y) * 0.5)
    x, y = _inputs(seed=3)
    expected = 0.5 * (2.0 * np.asarray(x) + np.asarray(y))
    np.testing.assert_allclose(np.asarray(f(x, y)), expected, rtol=1e-6, atol=1e-6)
    # The HLO (with its op_name metadata) is stored as bytes inside the metadata plane.
    assert b"jit(<lambda>)/profiled_axpy_cpu/" in _profiled_xplane(tmp_path, f, x, y)


# ------------------------------------------------------------------ the kernel symbol


@pytest.mark.parametrize("name, symbol", [
    ("axpy_kernel", "axpy_kernel"),          # a valid identifier stays as written
    ("my-kernel v2", "my_kernel_v2"),        # other characters become underscores
    ("<lambda>", "_lambda_"),
    ("3way", "k_3way"),                      # an identifier cannot start with a digit
    ("main", "main_kernel"),                 # TileLang's usual name is reserved in C
])
def test_the_entry_function_is_the_kernel_name_as_a_c_identifier(name, symbol):
    assert c_identifier(name) == symbol
    lowered = _launcher(name=name).lower(SPEC, SPEC, target="sm_90a")
    assert lowered.kernel_name == symbol
    assert re.search(rf"__global__ void __launch_bounds__\([^)]*\) {symbol}\(",
                     lowered.cuda_source())
    # The cubin holds exactly that one entry function, under that (unmangled) name.
    assert _entry_functions(lowered.compile().cubin) == [symbol]


def test_two_specialisations_in_one_jit_share_the_name_but_not_the_module():
    """A cubin holds one kernel and the launcher keys loaded modules by the cubin's hash, so
    two specialisations of one kernel (the same symbol) in one program never clash."""
    small, large = _launcher(shape=(N,)), _launcher(shape=(2 * N,))
    wide = jax.ShapeDtypeStruct((2 * N,), jnp.float32)
    text = _lower_for_cuda(lambda a, b, c, d: (small(a, b), large(c, d)),
                           SPEC, SPEC, wide, wide).as_text()
    assert re.findall(r'kernel_name = "(\w+)"', text) == ["axpy_kernel", "axpy_kernel"]
    hashes = re.findall(r'module_hash = "(\w+)"', text)
    assert len(hashes) == 2 and hashes[0] != hashes[1]
