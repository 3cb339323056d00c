"""`jtile.language.allocate` against TileLang's allocate reference (tests/../shared seeds):
signatures and defaults, scopes, dtypes, alloc_var's overloads, barrier counts, TMEM column
rules, reducers, descriptors and `T.empty`, and that every buffer belongs to one trace."""

import inspect
import re

import jax.numpy as jnp
import numpy as np
import pytest

import jtile
import jtile.language as T
from jtile.ir.nodes import Const
from jtile.ir.types import DType, MemorySpace
from jtile.trace.trace_kernel import trace

F32 = DType.float32
EMPTY = inspect.Parameter.empty


def allocating(body, threads=128):
    """Traces a kernel whose T.Kernel block runs `body()`; returns (kernel, body's result)."""
    made = []

    def alloc_kernel(X, O):
        with T.Kernel(1, threads=threads):
            made.append(body())
            T.copy(X, O)

    kernel = trace(alloc_kernel, [((8,), F32)], [((8,), F32)])
    return kernel, made[0]


def error_in(body, *, threads=128):
    """The JtileError raised while tracing `body` inside a kernel (which must raise)."""
    with pytest.raises(jtile.JtileError) as info:
        allocating(body, threads)
    return str(info.value)


# ----------------------------------------------------------------------------- signatures

SEED_SIGNATURES = {
    "alloc_shared": [("shape", EMPTY), ("dtype", EMPTY), ("scope", "shared.dyn")],
    "alloc_local": [("shape", EMPTY), ("dtype", EMPTY), ("scope", "local")],
    "alloc_fragment": [("shape", EMPTY), ("dtype", EMPTY), ("scope", "local.fragment")],
    "alloc_barrier": [("arrive_count", EMPTY)],
    "alloc_tmem": [("shape", EMPTY), ("dtype", EMPTY)],
    "alloc_reducer": [("shape", EMPTY), ("dtype", EMPTY), ("op", "sum"), ("replication", None)],
    "alloc_descriptor": [("kind", "wgmma"), ("dtype", "uint64")],
    "alloc_wgmma_desc": [("dtype", "uint64")],
    "alloc_tcgen05_smem_desc": [("dtype", "uint64")],
    "alloc_tcgen05_instruction_desc": [("dtype", "uint32")],
    "alloc_tcgen05_instr_desc": [("dtype", "uint32")],
    "empty": [("shape", EMPTY), ("dtype", "float32")],
}


@pytest.mark.parametrize("name", sorted(SEED_SIGNATURES))
def test_signature_matches_the_seed(name):
    params = inspect.signature(getattr(T, name)).parameters.values()
    assert [(p.name, p.default) for p in params] == SEED_SIGNATURES[name]
    assert all(p.kind is p.POSITIONAL_OR_KEYWORD for p in params)


def test_alloc_var_signature_covers_both_seed_overloads():
    sig = inspect.signature(T.alloc_var)
    params = sig.parameters
    assert list(params)[0] == "dtype"
    assert params["scope"].default == "local.var"
    assert params["init"].default is None  # `init: ... | None = None` in the newer seed
    assert params["init"].kind is inspect.Parameter.KEYWORD_ONLY
    # Both overloads bind: (dtype, init, scope) and (dtype, scope, *, init).
    sig.bind("int32", 1, "local.var")
    sig.bind("int32", "local.var", init=1)


def test_every_allocation_function_is_exported():
    for name in list(SEED_SIGNATURES) + ["alloc_var", "DescKind"]:
        assert name in T.__all__
        assert getattr(T, name) is getattr(jtile.language.allocate, name)


# ----------------------------------------------------------------------------- scopes


@pytest.mark.parametrize("fn, space", [
    (lambda: T.alloc_shared((16, 16), "float16"), MemorySpace.SHARED_DYN),
    (lambda: T.alloc_shared((16, 16), "float16", "shared"), MemorySpace.SHARED),
    (lambda: T.alloc_shared((16, 16), "float16", scope="shared.dyn"), MemorySpace.SHARED_DYN),
    (lambda: T.alloc_local((4,), "float32"), MemorySpace.LOCAL),
    (lambda: T.alloc_local((4,), "float32", scope="local"), MemorySpace.LOCAL),
    (lambda: T.alloc_fragment((16, 16), "float32"), MemorySpace.FRAGMENT),
    (lambda: T.alloc_fragment((16, 16), "float32", "local.fragment"), MemorySpace.FRAGMENT),
    # TileLang's alloc_fragment is alloc_buffer with the scope given (its stream-K example
    # keeps loop counters in T.alloc_fragment((1,), "int32", "local")).
    (lambda: T.alloc_fragment((1,), "int32", "local"), MemorySpace.LOCAL),
    (lambda: T.alloc_fragment((16, 16), "float16", "shared"), MemorySpace.SHARED),
    (lambda: T.alloc_var("int32"), MemorySpace.VAR),
    (lambda: T.alloc_barrier(128), MemorySpace.BARRIER),
    (lambda: T.alloc_tmem((128, 32), "float32"), MemorySpace.TMEM),
    (lambda: T.alloc_reducer((16,), "float32"), MemorySpace.FRAGMENT),
    (lambda: T.alloc_descriptor(), MemorySpace.DESCRIPTOR),
    (lambda: T.alloc_wgmma_desc(), MemorySpace.DESCRIPTOR),
])
def test_default_and_explicit_scopes(fn, space):
    kernel, buf = allocating(fn)
    assert buf.space is space
    assert buf in kernel.allocations


def test_scope_strings_are_tilelangs():
    assert MemorySpace.SHARED_DYN.value == "shared.dyn"
    assert MemorySpace.SHARED.value == "shared"
    assert MemorySpace.LOCAL.value == "local"
    assert MemorySpace.FRAGMENT.value == "local.fragment"
    assert MemorySpace.VAR.value == "local.var"
    assert MemorySpace.BARRIER.value == "shared.barrier"
    assert MemorySpace.TMEM.value == "shared.tmem"


@pytest.mark.parametrize("fn, what, allowed", [
    (lambda: T.alloc_shared((16,), "float32", "local"), "T.alloc_shared", "'shared.dyn', 'shared'"),
    (lambda: T.alloc_shared((16,), "float32", scope="global"), "T.alloc_shared",
     "'shared.dyn', 'shared'"),
    (lambda: T.alloc_local((16,), "float32", "shared"), "T.alloc_local", "'local'"),
    (lambda: T.alloc_fragment((16,), "float32", "local.var"), "T.alloc_fragment",
     "'local.fragment', 'local', 'shared.dyn', 'shared'"),
    (lambda: T.alloc_var("int32", "shared.dyn"), "T.alloc_var", "'local.var'"),
    (lambda: T.alloc_var("int32", 0, "local"), "T.alloc_var", "'local.var'"),
])
def test_refused_scopes_name_the_allowed_ones(fn, what, allowed):
    message = error_in(fn)
    assert message.startswith("alloc_kernel (test_allocate.py:")
    assert f"{what}" in message and "is not allowed" in message
    assert f"expected one of {allowed}" in message
    assert "test_allocate.py:" in message.split(":", 2)[2]  # the T. call's line, not only the def


# ----------------------------------------------------------------------------- dtypes


@pytest.mark.parametrize("dtype, expected", [
    ("float16", DType.float16), ("bfloat16", DType.bfloat16), ("float32", DType.float32),
    ("int8", DType.int8), ("uint64", DType.uint64), ("float8_e4m3", DType.float8_e4m3),
    ("float8_e5m2", DType.float8_e5m2), ("bool", DType.bool),
    (np.float16, DType.float16), (np.dtype("int32"), DType.int32), (jnp.bfloat16, DType.bfloat16),
    (jnp.float32, DType.float32), (jnp.float8_e4m3fn, DType.float8_e4m3), (T.float16, DType.float16),
    (DType.int16, DType.int16),
])
def test_dtype_spellings(dtype, expected):
    _, buf = allocating(lambda: T.alloc_shared((16,), dtype))
    assert buf.dtype is expected
    _, var = allocating(lambda: T.alloc_var(dtype))
    assert var.dtype is expected


@pytest.mark.parametrize("dtype", ["float128", "floot32", None, "complex64", np.complex64])
def test_unknown_dtype_is_a_located_error(dtype):
    message = error_in(lambda: T.alloc_fragment((16,), dtype))
    assert message.startswith("alloc_kernel (test_allocate.py:")
    assert re.search(r"test_allocate.py:\d+: T.alloc_fragment: ", message)
    assert "dtype" in message


# ----------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("shape, expected", [(64, (64,)), ((64,), (64,)), ([16, 32], (16, 32)),
                                             ((np.int64(8), 4), (8, 4))])
def test_shapes_are_static_tuples(shape, expected):
    _, buf = allocating(lambda: T.alloc_shared(shape, "float32"))
    assert buf.shape == expected


def test_traced_shape_is_refused():
    def body():
        n = T.get_thread_binding()
        return T.alloc_shared((n, 4), "float32")

    assert "must be static Python ints" in error_in(body)


@pytest.mark.parametrize("shape", [(0, 4), (-1,), (16, 0)])
def test_non_positive_shape_is_refused(shape):
    message = error_in(lambda: T.alloc_local(shape, "float32"))
    assert f"T.alloc_local: shape {shape} has a non-positive dimension" in message


# ----------------------------------------------------------------------------- alloc_var


@pytest.mark.parametrize("call, init, space", [
    (lambda: T.alloc_var("int32"), None, MemorySpace.VAR),
    (lambda: T.alloc_var("int32", 1), 1, MemorySpace.VAR),                       # init
    (lambda: T.alloc_var("int32", "local.var"), None, MemorySpace.VAR),          # scope
    (lambda: T.alloc_var("int32", 1, "local.var"), 1, MemorySpace.VAR),          # init, scope
    (lambda: T.alloc_var("int32", "local.var", init=1), 1, MemorySpace.VAR),     # scope, init=
    (lambda: T.alloc_var("int32", init=1), 1, MemorySpace.VAR),                  # init=
    (lambda: T.alloc_var("int32", scope="local.var", init=7), 7, MemorySpace.VAR),
    (lambda: T.alloc_var("int32", init=None), None, MemorySpace.VAR),
])
def test_alloc_var_overloads_of_the_newer_seed(call, init, space):
    kernel, var = allocating(call)
    assert var.space is space and var.shape == (1,) and var.dtype is DType.int32
    if init is None:
        assert var.init is None
    else:
        assert isinstance(var.init, Const) and var.init.value == init
        assert var.init.dtype is DType.int32
    assert var in kernel.allocations


def test_alloc_var_init_takes_the_variable_dtype():
    _, f = allocating(lambda: T.alloc_var("float16", 1))
    assert f.init.dtype is DType.float16 and f.init.value == 1.0
    _, i = allocating(lambda: T.alloc_var("int8", 2.0))
    assert i.init.dtype is DType.int8 and i.init.value == 2
    _, b = allocating(lambda: T.alloc_var("bool", True))
    assert b.init.dtype is DType.bool and b.init.value is True
    _, bf = allocating(lambda: T.alloc_var("bfloat16", -3.5))
    assert bf.init.dtype is DType.bfloat16 and bf.init.value == -3.5
    _, u = allocating(lambda: T.alloc_var("uint64", np.uint64(2**63)))
    assert u.init.dtype is DType.uint64 and u.init.value == 2**63


def test_alloc_var_init_may_be_a_traced_expression():
    def body():
        tx = T.get_thread_binding()
        return T.alloc_var("int32", tx * 2)

    _, var = allocating(body)
    assert var.init is not None and var.init.dtype is DType.int32


def test_alloc_var_expression_init_is_cast_to_the_variable_dtype():
    def body():
        tx = T.get_thread_binding()
        return T.alloc_var("float32", tx)

    _, var = allocating(body)
    assert var.init.dtype is DType.float32


def test_alloc_var_init_given_twice():
    message = error_in(lambda: T.alloc_var("int32", 1, init=2))
    assert "T.alloc_var" in message and "init given both positionally and as init=" in message
    message = error_in(lambda: T.alloc_var("int32", 1, "local.var", init=2))
    assert "init given both" in message


def test_alloc_var_too_many_positionals():
    message = error_in(lambda: T.alloc_var("int32", 1, "local.var", 3))
    assert "at most 2 positional arguments after dtype (init, scope); got 3" in message


def test_alloc_var_two_positionals_need_a_string_scope():
    assert "scope must be a string, got 2" in error_in(lambda: T.alloc_var("int32", 1, 2))


def test_alloc_var_scope_given_twice():
    message = error_in(lambda: T.alloc_var("int32", "local.var", scope="shared"))
    assert "scope given both" in message


@pytest.mark.parametrize("dtype, init, rule", [
    ("int8", 300, "range -128..127"),
    ("int8", -129, "range -128..127"),
    ("uint8", 256, "range 0..255"),
    ("int32", 1.5, "not an integer"),
    ("int32", 2**31, "range -2147483648..2147483647"),
    ("uint32", -1, "range 0..4294967295"),
    ("int64", float("inf"), "not an integer"),
    ("int32", float("nan"), "not an integer"),
    ("float16", 1e39, "largest finite 65504"),
    ("float16", 70000.0, "largest finite 65504"),
    ("float32", 1e39, "largest finite"),
    ("float32", 10**400, "largest finite"),
    ("bfloat16", 1e39, "largest finite"),
    ("float8_e4m3", 1000.0, "largest finite 448"),
    ("bool", 2, "does not fit dtype bool"),
])
def test_alloc_var_init_must_fit_the_dtype(dtype, init, rule):
    message = error_in(lambda: T.alloc_var(dtype, init))
    assert message.startswith("alloc_kernel (test_allocate.py:")
    assert re.search(r"test_allocate.py:\d+: T.alloc_var: ", message)
    assert f"init {init!r}"[:20] in message
    assert rule in message


@pytest.mark.parametrize("init", ["1", [1], object()])
def test_alloc_var_init_must_be_a_number(init):
    message = error_in(lambda: T.alloc_var("int32", init=init))
    assert "is not a number or expression" in message


@pytest.mark.parametrize("dtype, init", [("float32", float("inf")), ("float16", -float("inf")),
                                         ("float16", 65504.0), ("int8", -128), ("uint32", 2**32 - 1),
                                         ("float64", 1e300), ("int32", np.int32(5))])
def test_alloc_var_accepts_edge_values(dtype, init):
    _, var = allocating(lambda: T.alloc_var(dtype, init))
    assert var.init is not None


def test_alloc_var_reads_as_a_scalar_and_stores_through_index():
    def body():
        v = T.alloc_var("int32", 3)
        v[0] = v + 1
        return v

    kernel, v = allocating(body)
    assert kernel.body[0].buffer is v


# ----------------------------------------------------------------------------- barriers


def test_alloc_barrier_int_and_list_forms():
    _, one = allocating(lambda: T.alloc_barrier(128))
    assert one.shape == (1,) and one.arrive_counts == (128,) and one.dtype is DType.uint64
    _, many = allocating(lambda: T.alloc_barrier([1, 128, np.int32(32)]))
    assert many.shape == (3,) and many.arrive_counts == (1, 128, 32)
    assert many.space is MemorySpace.BARRIER


@pytest.mark.parametrize("count", [0, -1, 1.5, True, "128", None, [128, 0]])
def test_alloc_barrier_bad_counts(count):
    message = error_in(lambda: T.alloc_barrier(count))
    assert "T.alloc_barrier" in message and "must be a positive Python int" in message


def test_alloc_barrier_traced_count():
    def body():
        return T.alloc_barrier(T.get_thread_binding())

    assert "must be a positive Python int" in error_in(body)


def test_alloc_barrier_empty_list():
    message = error_in(lambda: T.alloc_barrier([]))
    assert "T.alloc_barrier" in message and "at least one arrive count" in message


def test_alloc_barrier_count_over_the_hardware_limit():
    # mbarrier's pending count is 20 bits: at most 2**20 - 1 arrivals per phase.
    message = error_in(lambda: T.alloc_barrier(2**20))
    assert "1048576" in message and "at most 1048575 arrivals" in message


# ----------------------------------------------------------------------------- TMEM


@pytest.mark.parametrize("shape, dtype, columns", [
    ((128, 32), "float32", 32), ((128, 512), "float32", 512), ((128, 64), "float16", 32),
    ((128, 1024), "bfloat16", 512), ((64, 256), "float32", 256), ((128, 128), "float8_e4m3", 32),
    ((128, 16), "float64", 32),
])
def test_alloc_tmem_accepted_shapes(shape, dtype, columns):
    from jtile.language.allocate import tmem_columns

    _, buf = allocating(lambda: T.alloc_tmem(shape, dtype))
    assert buf.space is MemorySpace.TMEM and buf.shape == shape
    assert tmem_columns(buf.shape, buf.dtype) == columns


@pytest.mark.parametrize("shape, dtype, rule", [
    ((128, 48), "float32", "needs 48 TMEM columns; the column count must be a power of 2 between "
                           "32 and 512"),
    ((128, 16), "float32", "needs 16 TMEM columns"),
    ((128, 1024), "float32", "needs 1024 TMEM columns"),
    ((128, 32), "float16", "needs 16 TMEM columns"),      # 16-bit: two per 32-bit column
    ((128, 2048), "bfloat16", "needs 1024 TMEM columns"),
    ((128, 96), "float16", "needs 48 TMEM columns"),
    ((128, 33), "float16", "do not fill whole 32-bit TMEM columns"),
    ((256, 32), "float32", "256 lanes requested; TMEM has 128"),
    ((128,), "float32", "must be 2-D (lanes, columns)"),
    ((2, 128, 32), "float32", "must be 2-D (lanes, columns)"),
])
def test_alloc_tmem_column_rules(shape, dtype, rule):
    message = error_in(lambda: T.alloc_tmem(shape, dtype))
    assert message.startswith("alloc_kernel (test_allocate.py:")
    assert "T.alloc_tmem" in message and rule in message


# ----------------------------------------------------------------------------- reducers


@pytest.mark.parametrize("op", ["sum", "max", "min"])
@pytest.mark.parametrize("replication", [None, "all"])
def test_alloc_reducer_ops_and_replication(op, replication):
    _, r = allocating(lambda: T.alloc_reducer((16,), "float32", op, replication))
    assert r.reducer_op == op and r.replication == replication
    assert r.space is MemorySpace.FRAGMENT and r.shape == (16,)
    _, r = allocating(lambda: T.alloc_reducer((16,), "float32", op=op, replication=replication))
    assert r.reducer_op == op


def test_alloc_reducer_defaults():
    _, r = allocating(lambda: T.alloc_reducer((8, 4), "float32"))
    assert r.reducer_op == "sum" and r.replication is None


@pytest.mark.parametrize("kwargs, rule", [
    (dict(op="prod"), "op 'prod' is not one of ('sum', 'max', 'min')"),
    (dict(op="add"), "op 'add' is not one of"),
    (dict(replication="some"), "replication 'some' must be 'all' or None"),
    (dict(replication="none"), "an unreplicated reducer is not supported"),
    (dict(replication=True), "replication True must be"),
])
def test_alloc_reducer_refusals(kwargs, rule):
    message = error_in(lambda: T.alloc_reducer((16,), "float32", **kwargs))
    assert "T.alloc_reducer" in message and rule in message


# ----------------------------------------------------------------------------- descriptors


def test_desc_kind_values():
    assert {k.value for k in T.DescKind} == {"wgmma", "tcgen05_smem", "tcgen05_instr"}
    assert T.DescKind.wgmma == "wgmma"


@pytest.mark.parametrize("call, kind, dtype", [
    (lambda: T.alloc_descriptor(), "wgmma", DType.uint64),
    (lambda: T.alloc_descriptor("wgmma"), "wgmma", DType.uint64),
    (lambda: T.alloc_descriptor("tcgen05"), "tcgen05_smem", DType.uint64),
    (lambda: T.alloc_descriptor("utcmma"), "tcgen05_smem", DType.uint64),
    (lambda: T.alloc_descriptor(kind="tcgen05_instr", dtype="uint32"), "tcgen05_instr",
     DType.uint32),
    (lambda: T.alloc_descriptor(T.DescKind.tcgen05_smem), "tcgen05_smem", DType.uint64),
    (lambda: T.alloc_wgmma_desc(), "wgmma", DType.uint64),
    (lambda: T.alloc_tcgen05_smem_desc(), "tcgen05_smem", DType.uint64),
    (lambda: T.alloc_tcgen05_instruction_desc(), "tcgen05_instr", DType.uint32),
    (lambda: T.alloc_tcgen05_instr_desc(), "tcgen05_instr", DType.uint32),
    (lambda: T.alloc_tcgen05_instr_desc("uint64"), "tcgen05_instr", DType.uint64),
])
def test_descriptor_kinds(call, kind, dtype):
    kernel, desc = allocating(call)
    assert desc.descriptor_kind == kind and desc.dtype is dtype
    assert desc.shape == (1,) and desc.space is MemorySpace.DESCRIPTOR
    assert desc in kernel.allocations


@pytest.mark.parametrize("kind", ["mma", "WGMMA", "", 5, ["wgmma"]])
def test_descriptor_unknown_kind(kind):
    message = error_in(lambda: T.alloc_descriptor(kind))
    assert "T.alloc_descriptor" in message
    assert "must be one of 'wgmma', 'tcgen05' ('utcmma')" in message


# ----------------------------------------------------------------------------- T.empty


def test_empty_declares_outputs_before_the_kernel():
    def two_outputs(X):
        O = T.empty((8,))
        P = T.empty([2, 8], "int32")
        with T.Kernel(1, threads=32):
            T.copy(X, O)
            T.copy(X, P[1, :])
        return P, O

    kernel = trace(two_outputs, [((8,), F32)], None)
    assert [b.name for b in kernel.outputs] == ["P", "O"]      # returned order
    assert kernel.outputs[1].dtype is DType.float32             # dtype default "float32"
    assert kernel.outputs[0].shape == (2, 8) and kernel.outputs[0].dtype is DType.int32
    assert all(b.space is MemorySpace.GLOBAL for b in kernel.outputs)
    assert not set(kernel.outputs) & set(kernel.allocations)


def test_empty_inside_the_kernel_is_refused():
    def late(X):
        with T.Kernel(1, threads=32):
            O = T.empty((8,))
            T.copy(X, O)
        return O

    with pytest.raises(jtile.JtileError, match=r"late \(test_allocate.py:\d+\): "
                       r"test_allocate.py:\d+: T.empty declares an output and belongs before"):
        trace(late, [((8,), F32)], None)


def test_empty_with_out_shape_is_refused():
    def declared(X, O):
        P = T.empty((8,))
        with T.Kernel(1, threads=32):
            T.copy(X, O)
            T.copy(X, P)

    with pytest.raises(jtile.JtileError, match=r"T.empty is for kernels launched without "
                       r"out_shape="):
        trace(declared, [((8,), F32)], [((8,), F32)])


def test_empty_in_a_grid_kernel_body():
    def gridded(X):
        O = T.empty((8,), "float32")
        T.copy(X, O)
        return O

    kernel = trace(gridded, [((8,), F32)], None, grid=(1,))
    assert kernel.outputs[0].name == "O"


def test_empty_runs_interpreted():
    def double(X):
        O = T.empty((8,), "float32")
        with T.Kernel(1, threads=32):
            for i in T.Parallel(8):
                O[i] = X[i] * 2
        return O

    x = jnp.arange(8, dtype=jnp.float32)
    out = jtile.pallas_like(double, interpret=True)(x)
    np.testing.assert_allclose(np.asarray(out), np.arange(8) * 2)


# ----------------------------------------------------------------------------- binding


ALL_ALLOCATIONS = [
    lambda: T.alloc_shared((16,), "float32"),
    lambda: T.alloc_local((4,), "float32"),
    lambda: T.alloc_fragment((16,), "float32"),
    lambda: T.alloc_var("int32"),
    lambda: T.alloc_barrier(1),
    lambda: T.alloc_tmem((128, 32), "float32"),
    lambda: T.alloc_reducer((16,), "float32"),
    lambda: T.alloc_descriptor(),
    lambda: T.alloc_wgmma_desc(),
    lambda: T.alloc_tcgen05_smem_desc(),
    lambda: T.alloc_tcgen05_instruction_desc(),
    lambda: T.alloc_tcgen05_instr_desc(),
]


@pytest.mark.parametrize("index", range(len(ALL_ALLOCATIONS)))
def test_allocation_outside_a_trace(index):
    with pytest.raises(jtile.JtileTraceError, match=r"T\.alloc_\w+ at test_allocate.py:\d+ ran "
                       r"outside a jtile kernel trace"):
        ALL_ALLOCATIONS[index]()


def test_empty_outside_a_trace():
    with pytest.raises(jtile.JtileTraceError, match=r"T.empty at test_allocate.py:\d+ ran outside"):
        T.empty((4,))


@pytest.mark.parametrize("index", range(len(ALL_ALLOCATIONS)))
def test_allocation_before_the_kernel_opens(index):
    def early(X, O):
        ALL_ALLOCATIONS[index]()
        with T.Kernel(1, threads=32):
            T.copy(X, O)

    with pytest.raises(jtile.JtileTraceError, match=r"early \(test_allocate.py:\d+\): "
                       r"test_allocate.py:\d+: \w+: allocations belong inside `with T.Kernel"):
        trace(early, [((8,), F32)], [((8,), F32)])


@pytest.mark.parametrize("index", range(len(ALL_ALLOCATIONS)))
def test_each_trace_gets_its_own_buffers(index):
    first, a = allocating(ALL_ALLOCATIONS[index])
    second, b = allocating(ALL_ALLOCATIONS[index])
    assert a is not b

    def holds(kernel, buf):  # by identity: a T.alloc_var's `==` compares values
        return any(x is buf for x in kernel.allocations)

    assert holds(first, a) and not holds(second, a)
    assert holds(second, b) and not holds(first, b)
    assert a.name == b.name  # names are per kernel, not a global counter


def test_allocation_names_come_from_the_assigned_variable():
    def named():
        q_smem = T.alloc_shared((16,), "float16")
        acc: T.Buffer = T.alloc_fragment((16,), "float32")
        acc2 = T.alloc_fragment((16,), "float32")
        row_max = T.alloc_fragment((16,), "float32")
        T.alloc_local((4,), "float32")
        T.alloc_local((4,), "float32")
        again = T.alloc_var("int32")
        again_ = T.alloc_var("int32")
        return q_smem, acc, acc2, row_max, again, again_

    kernel, _ = allocating(named)
    assert [b.name for b in kernel.allocations] == [
        "q_smem", "acc", "acc2", "row_max", "local", "local_1", "again", "again_"]


def test_a_nested_trace_keeps_its_own_allocations():
    inner_kernels = []

    def inner(X, O):
        with T.Kernel(1, threads=32):
            s = T.alloc_shared((8,), "float32")
            T.copy(X, s)
            T.copy(s, O)

    def outer():
        t = T.alloc_fragment((16,), "float32")
        inner_kernels.append(trace(inner, [((8,), F32)], [((8,), F32)]))
        u = T.alloc_fragment((16,), "float32")
        return t, u

    kernel, (t, u) = allocating(outer)
    assert list(kernel.allocations) == [t, u]
    (inner_kernel,) = inner_kernels
    assert [b.name for b in inner_kernel.allocations] == ["s"]
