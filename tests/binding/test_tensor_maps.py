"""TMA tensor maps in the jtile_launch custom call: the records, the checks at lowering time
(Python) and at instantiation (the C++ handler's own parser, run here without a GPU), and, on
the GPU, a TMA kernel launched through the handler with its maps cached per call site.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest
from jax.interpreters import mlir

from jtile.binding import ffi
from jtile.binding.tensor_maps import check_tensor_maps, flatten_tensor_maps
from jtile.codegen import TensorMapSpec
from jtile.errors import JtileTargetError

KERNEL = "tma_kernel"
# (name, shape, dtype) of the parameters: two inputs, one output.
BUFFERS = [("A", (128, 64), np.float16), ("B", (64, 256), np.float16), ("C", (100, 32), np.float32)]
# A (128, 64) float16 tensor, row-major: innermost dimension first, one 128-byte row per box row.
A_MAP = TensorMapSpec(param=0, dtype=6, dims=(64, 128), strides=(128,), box=(64, 64), swizzle=3)
VALID = [
    A_MAP,
    TensorMapSpec(param=1, dtype=6, dims=(256, 64), strides=(512,), box=(32, 16), swizzle=2),
    TensorMapSpec(param=2, dtype=7, dims=(32, 100), strides=(128,), box=(32, 32), swizzle=0,
                  l2_promotion=0),
    TensorMapSpec(param=2, dtype=7, dims=(3200,), strides=(), box=(256,)),
    TensorMapSpec(param=0, dtype=6, dims=(64, 4, 32), strides=(128, 512), box=(64, 4, 8),
                  swizzle=3),
]


def _cpp_check(specs, num_buffers=len(BUFFERS)):
    from jtile import _jtile_ffi

    return _jtile_ffi.check_tensor_maps(KERNEL, list(flatten_tensor_maps(specs)), num_buffers)


def test_records_concatenate_in_parameter_order():
    flat = flatten_tensor_maps(VALID[:2])
    assert flat.dtype == np.int64
    assert flat.shape == (2 * TensorMapSpec.RECORD_LENGTH,)
    np.testing.assert_array_equal(flat, np.array(VALID[0].record() + VALID[1].record()))
    # param, dtype, rank, swizzle, l2, interleave, dims[5], strides[4], box[5], elem strides[5]
    np.testing.assert_array_equal(
        flat[:25], [0, 6, 2, 3, 2, 0, 64, 128, 0, 0, 0, 128, 0, 0, 0, 64, 64, 0, 0, 0,
                    1, 1, 0, 0, 0])
    empty = flatten_tensor_maps(())
    assert empty.shape == (0,) and empty.dtype == np.int64


def test_valid_maps_pass_the_python_and_the_handler_checks():
    check_tensor_maps(KERNEL, VALID, BUFFERS)
    assert _cpp_check(VALID) is None
    assert _cpp_check(()) is None


# (what is wrong, a changed field or two, the Python message, the handler's message or None
# when the rule needs the buffer's shape, which only lowering knows)
BAD = [
    ("row not a multiple of 16 bytes",
     dict(dims=(100, 128), strides=(200,)), "multiples of 16", "multiples of 16"),
    ("box dimension above 256", dict(box=(64, 512)), "1..256", "1..256"),
    ("inner box not a multiple of 16 bytes", dict(box=(12, 64)), "multiple of 16 bytes",
     "multiple of 16 bytes"),
    ("inner box wider than the swizzle", dict(swizzle=1), "32-byte swizzle span",
     "32B swizzle span"),
    ("unknown swizzle", dict(swizzle=4), "swizzle 4", "swizzle 4"),
    ("unknown L2 promotion", dict(l2_promotion=7), "L2 promotion 7", "L2 promotion 7"),
    ("rank zero", dict(dims=(), strides=(), box=()), "rank 0", "rank 0"),
    ("packed sub-byte data type", dict(dtype=13), "whole bytes", "whole bytes"),
    ("zero extent", dict(dims=(0, 128)), "1..2^31", "1..2^31"),
    ("buffer index out of range", dict(param=5), "does not name one", "does not name one"),
    ("element size differs from the buffer's", dict(dtype=7, box=(32, 64)),
     "elements are 4 bytes but the buffer's are 2", None),
    ("map larger than the buffer", dict(dims=(64, 256)), "spans 32768 bytes but the buffer "
     "holds 16384", None),
    ("box and strides do not match the rank", dict(box=(64,)), "needs 2 box dims", None),
]


@pytest.mark.parametrize("what, change, python_rule, handler_rule", BAD,
                         ids=[case[0] for case in BAD])
def test_bad_maps_are_refused_with_the_kernel_buffer_and_rule(what, change, python_rule,
                                                               handler_rule):
    spec = dataclasses.replace(A_MAP, **change)
    with pytest.raises(JtileTargetError) as caught:
        check_tensor_maps(KERNEL, [VALID[1], spec], BUFFERS)
    message = str(caught.value)
    assert message.startswith(f"{KERNEL}: tensor map 1 ")
    assert python_rule in message
    if change.get("param", 0) == 0:
        assert "buffer 0 'A' (float16[128, 64])" in message
    if handler_rule is not None:
        handler_message = _cpp_check([VALID[1], spec])
        assert handler_message is not None, "the handler accepted a map Python refuses"
        assert handler_message.startswith(f"jtile: kernel '{KERNEL}': tensor map 1 ")
        assert handler_rule in handler_message


def test_handler_refuses_a_truncated_record():
    from jtile import _jtile_ffi

    message = _jtile_ffi.check_tensor_maps(KERNEL, list(A_MAP.record())[:-1], 3)
    assert "not a multiple of the record length 25" in message


def _lower_launch(out_shape, *operands, **launch):
    """Lowers a one-result primitive whose lowering rule is launch_lowering, for CUDA."""
    prim = jax.extend.core.Primitive("jtile_test_tma_launch")
    prim.multiple_results = True
    prim.def_abstract_eval(lambda *avals: [jax.core.ShapedArray(out_shape.shape,
                                                                out_shape.dtype)])
    mlir.register_lowering(
        prim, lambda ctx, *args: ffi.launch_lowering(ctx, *args, **launch), platform="cuda")
    return jax.jit(lambda *xs: prim.bind(*xs)[0]).trace(*operands).lower(
        lowering_platforms=("cuda",)).as_text()


LAUNCH = dict(cubin=bytes(range(32)), kernel_name=KERNEL, grid=(4, 1, 1), block=(128, 1, 1),
              cluster=(1, 1, 1), shared_memory_bytes=0)


def test_lowering_carries_the_records_as_one_int64_array():
    a = jax.ShapeDtypeStruct((128, 64), jnp.float16)
    b = jax.ShapeDtypeStruct((64, 256), jnp.float16)
    out = jax.ShapeDtypeStruct((100, 32), jnp.float32)
    text = _lower_launch(out, a, b, **LAUNCH, tensor_maps=VALID[:3],
                         buffer_names=("A", "B", "C"))
    values = ", ".join(str(v) for v in flatten_tensor_maps(VALID[:3]))
    assert f"tensor_maps = dense<[{values}]> : tensor<75xi64>" in text


def test_lowering_without_maps_carries_an_empty_array():
    x = jax.ShapeDtypeStruct((256,), jnp.float32)
    text = _lower_launch(x, x, **LAUNCH)
    assert "tensor_maps = dense<> : tensor<0xi64>" in text


def test_lowering_refuses_a_map_that_does_not_fit_its_buffer():
    a = jax.ShapeDtypeStruct((128, 36), jnp.float16)  # rows of 72 bytes: TMA cannot stride
    bad = dataclasses.replace(A_MAP, dims=(36, 128), strides=(72,), box=(32, 64))
    with pytest.raises(JtileTargetError, match=r"tma_kernel: tensor map 0 .*buffer 0 'A' "
                                               r"\(float16\[128, 36\]\).*multiples of 16"):
        _lower_launch(a, a, **LAUNCH, tensor_maps=(bad,), buffer_names=("A", "O"))


# ------------------------------------------------------------------------------- on the GPU

# Each block loads rows [32 * bx, 32 * bx + 32) of a (ROWS, 32) float32 tensor with one TMA
# copy into shared memory and writes twice the tile; rows past ROWS arrive as zeros (the map's
# out-of-bounds fill), so the (128, 32) output is 2 * X padded with zero rows.
TMA_SOURCE = r"""
struct alignas(64) TensorMap { unsigned long long opaque[16]; };

extern "C" __global__ void tma_twice(const float* x, float* out,
                                     const __grid_constant__ TensorMap map) {
  __shared__ alignas(128) float tile[32 * 32];
  __shared__ alignas(8) unsigned long long bar;
  const unsigned bar_addr = static_cast<unsigned>(__cvta_generic_to_shared(&bar));
  const unsigned tile_addr = static_cast<unsigned>(__cvta_generic_to_shared(tile));
  if (threadIdx.x == 0) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" :: "r"(bar_addr));
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;"
                 :: "r"(bar_addr), "r"(32 * 32 * 4) : "memory");
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes"
        " [%0], [%1, {%2, %3}], [%4];"
        :: "r"(tile_addr), "l"(reinterpret_cast<unsigned long long>(&map)), "r"(0),
           "r"(static_cast<int>(blockIdx.x * 32)), "r"(bar_addr) : "memory");
  }
  asm volatile(
      "{\n .reg .pred done;\n"
      "wait_%=:\n"
      " mbarrier.try_wait.parity.shared::cta.b64 done, [%0], 0;\n"
      " @!done bra wait_%=;\n}" :: "r"(bar_addr) : "memory");
  for (int i = threadIdx.x; i < 32 * 32; i += blockDim.x) {
    out[blockIdx.x * 32 * 32 + i] = 2.0f * tile[i];
  }
}
"""
ROWS = 100
TMA_MAP = TensorMapSpec(param=0, dtype=7, dims=(32, ROWS), strides=(128,), box=(32, 32),
                        swizzle=0)


def _tma_cubin() -> bytes:
    from jtile.compiler import compile_cuda
    from jtile.compiler.target import parse_target

    return compile_cuda(TMA_SOURCE, parse_target("sm_90a"), "tma_twice").cubin


def test_tma_kernel_compiles_for_sm90a():
    cubin = _tma_cubin()
    assert cubin[:4] == b"\x7fELF"


def _tma_launcher():
    out = jax.ShapeDtypeStruct((128, 32), jnp.float32)
    prim = jax.extend.core.Primitive("jtile_test_tma_twice")
    prim.multiple_results = True
    prim.def_abstract_eval(lambda x: [jax.core.ShapedArray(out.shape, out.dtype)])
    cubin = _tma_cubin()
    mlir.register_lowering(
        prim,
        lambda ctx, x: ffi.launch_lowering(
            ctx, x, cubin=cubin, kernel_name="tma_twice", grid=(4, 1, 1), block=(128, 1, 1),
            cluster=(1, 1, 1), shared_memory_bytes=0, tensor_maps=(TMA_MAP,),
            buffer_names=("x", "out")),
        platform="cuda")
    return jax.jit(lambda x: prim.bind(x)[0])


def _expected(x):
    return np.pad(2.0 * np.asarray(x), ((0, 128 - ROWS), (0, 0)))


@pytest.mark.gpu
def test_tma_kernel_runs_through_the_launcher():
    launch = _tma_launcher()
    x = jax.random.normal(jax.random.key(7), (ROWS, 32), jnp.float32)
    np.testing.assert_allclose(np.asarray(launch(x)), _expected(x), rtol=0, atol=0)


@pytest.mark.gpu
def test_tensor_maps_are_encoded_again_only_when_the_buffer_moves():
    assert ffi.handler_is_stateful()
    launch = _tma_launcher()
    x = jax.random.normal(jax.random.key(8), (ROWS, 32), jnp.float32)
    y = jax.random.normal(jax.random.key(9), (ROWS, 32), jnp.float32)
    before = ffi.tensor_map_encode_count()
    for _ in range(5):
        np.testing.assert_allclose(np.asarray(launch(x)), _expected(x), rtol=0, atol=0)
    after_x = ffi.tensor_map_encode_count()
    assert after_x - before == 1, "the same input address must reuse the encoded map"
    np.testing.assert_allclose(np.asarray(launch(y)), _expected(y), rtol=0, atol=0)
    assert ffi.tensor_map_encode_count() - after_x == 1, "a new address must re-encode"


@pytest.mark.gpu
def test_a_malformed_record_is_refused_when_xla_compiles_the_call():
    bad = dataclasses.replace(TMA_MAP, strides=(100,))  # skips the lowering-time check
    x = jnp.ones((ROWS, 32), jnp.float32)

    def f(x):
        return jax.ffi.ffi_call(ffi.TARGET_NAME, jax.ShapeDtypeStruct((128, 32), jnp.float32))(
            x, cubin=np.frombuffer(_tma_cubin(), np.uint8), module_hash="bad-map",
            kernel_name="tma_twice", grid_x=4, grid_y=1, grid_z=1, block_x=128, block_y=1,
            block_z=1, cluster_x=1, cluster_y=1, cluster_z=1, shared_memory_bytes=0,
            tensor_maps=flatten_tensor_maps([bad]))

    ffi.register()
    with pytest.raises(Exception, match=r"tma_twice.*tensor map 0 .*multiples of 16"):
        jax.block_until_ready(jax.jit(f)(x))
