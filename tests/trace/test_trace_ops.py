"""Tracing kernel bodies into IR: indexing, copies, gemm/reduce/atomic checks, parameters,
names, and the printed form of whole kernels."""

import pytest

import jtile
import jtile.language as T
from jtile.ir import nodes as ir
from jtile.ir.printer import kernel_text
from jtile.ir.types import DType, MemorySpace
from jtile.trace.trace_kernel import trace
from tests.trace.helpers import F16, F32, I32, body_of, trace1
from tests.trace.helpers import located as _located


def located(kernel_name, message_regex):
    return _located(kernel_name, message_regex, "test_trace_ops.py")


# ----------------------------------------------------------------------------- indexing


def test_static_length_slices():
    def slices(X, O):
        with T.Kernel(2, threads=32) as bx:
            s = T.alloc_shared((32,), "float32")
            for k in T.serial(2):
                T.copy(X[k * 32:(k + 1) * 32], s)
            T.copy(s, O[bx * 32:bx * 32 + 32])
            T.copy(X[32:], s)
            T.copy(X[:32], s)
            T.copy(X[(bx + 1) * 32 - 32: (bx + 1) * 32], s)

    body = body_of(slices)
    loop = body[0]
    region = loop.body[0].src
    assert region.extents == (32,)
    assert body[1].dst.extents == (32,)
    assert body[2].src.starts[0].value == 32 and body[2].src.extents == (32,)
    assert body[3].src.extents == (32,)
    assert body[4].src.extents == (32,)


def test_slices_starting_at_a_loaded_offset():
    def gather(X, offsets, O):
        with T.Kernel(2, threads=32) as bx:
            start = T.alloc_var("int32", offsets[bx])
            s = T.alloc_shared((16,), "float32")
            T.copy(X[offsets[bx]:offsets[bx] + 16], s)
            T.copy(X[start:start + 16], s)
            T.copy(s, O[bx * 16:bx * 16 + 16])

    kernel = trace(gather, [((64,), F32), ((2,), I32)], [((32,), F32)])
    c1, c2, _ = kernel.body
    assert c1.src.extents == (16,) and isinstance(c1.src.starts[0], ir.Load)
    assert c2.src.extents == (16,) and c2.src.starts[0].buffer.name == "start"


@pytest.mark.parametrize("index, rule", [
    ("dynamic", "slice 0 of X \\(global float32 \\(64,\\)\\) does not have a static length; write "
                "it as X\\[s : s \\+ n\\] with a Python int n"),
    ("step", "slice 0 of X .* has step 2; tile regions need step 1"),
    ("too_long", "slice 0 of s \\(shared.dyn float32 \\(64,\\)\\) has length 65, outside 1..64"),
    ("empty", "slice 0 of X .* has length 0, outside 1..64"),
    ("negative", "index -1 is out of bounds for dimension 0 of X"),
    ("rank", "X \\(global float32 \\(64,\\)\\) was indexed with 2 indices; it has 1 dimensions"),
    ("float", "index 0 of X .* has dtype float32; indices must be integers"),
    ("slice_store", "a slice assignment to O"),
])
def test_indexing_errors(index, rule):
    def indexing(X, O):
        with T.Kernel(2, threads=32) as bx:
            s = T.alloc_shared((64,), "float32")
            if index == "dynamic":
                T.copy(X[bx:2 * bx], s)
            elif index == "step":
                T.copy(X[0:64:2], s)
            elif index == "too_long":
                T.copy(s[0:65], X)
            elif index == "empty":
                T.copy(X[4:4], s)
            elif index == "negative":
                O[0] = X[-1]
            elif index == "rank":
                O[0] = X[0, 0]
            elif index == "float":
                O[0] = X[X[0]]
            else:
                O[0:4] = 1.0

    with pytest.raises(jtile.JtileTraceError, match=located("indexing", "test_trace_ops.py:\\d+: " + rule)):
        trace1(indexing)


def test_head_address_copy_takes_the_other_sides_shape():
    def head(A, C):
        with T.Kernel(2, 2, threads=128) as (bx, by):
            tile = T.alloc_shared((32, 16), "float32")
            T.copy(A[by * 32, bx * 16], tile)
            T.copy(tile, C[by * 32, bx * 16])
            row = T.alloc_fragment((16,), "float32")
            T.copy(A[by * 32 + 1, bx * 16], row)     # a 1-D tile of a 2-D buffer: last dim
            T.copy(row, C[by * 32, bx * 16:bx * 16 + 16])

    c1, c2, c3, c4 = trace(head, [((64, 32), F32)], [((64, 32), F32)]).body
    assert c1.src.extents == (32, 16) and c1.dst.extents == (32, 16)
    assert c2.dst.extents == (32, 16) and c2.dst.buffer.name == "C"
    assert c3.src.extents == (1, 16)
    assert c4.dst.extents == (1, 16)


@pytest.mark.parametrize("case, rule", [
    ("shape", "T.copy at test_trace_ops.py:\\d+: src X tile \\(32,\\) and dst s tile \\(16,\\) differ in "
              "shape"),
    ("2d", "src X tile \\(32,\\) and dst s2 tile \\(8, 4\\) differ in shape"),
    ("head_too_big", "a \\(128,\\) tile does not fit in s "),  # on-chip: must hold it
    ("head_rank", "the head address .* has 1 indices but the other side is a 2-D tile"),
    ("barrier", "src bar \\(shared.barrier uint64 \\(1,\\)\\) cannot be copied"),
    ("scalar", "dst must be a buffer, a slice of one, or a head address"),
])
def test_copy_errors(case, rule):
    def copies(X, O):
        with T.Kernel(1, threads=32):
            s = T.alloc_shared((16,), "float32")
            s2 = T.alloc_shared((8, 4), "float32")
            big = T.alloc_shared((128,), "float32")
            bar = T.alloc_barrier(1)
            if case == "shape":
                T.copy(X[0:32], s)
            elif case == "2d":
                T.copy(X[0:32], s2)
            elif case == "head_too_big":
                T.copy(big, s[0])  # a global head address would clip, as in TileLang
            elif case == "head_rank":
                T.copy(X[0], s2)
            elif case == "barrier":
                T.copy(bar, s)
            else:
                T.copy(X[0:16], 3.0)

    with pytest.raises(jtile.JtileTraceError, match=located("copies", rule)):
        trace1(copies)


def test_copy_ignores_unit_dimensions_and_casts():
    def unit(X, O):
        with T.Kernel(1, threads=32):
            s = T.alloc_shared((1, 64), "float16")
            T.copy(X, s)
            T.copy(s[0, :], O)

    c1, c2 = trace1(unit).body
    assert c1.dst.extents == (1, 64) and c2.src.extents == (1, 64)


# ----------------------------------------------------------------------------- gemm


def gemm_kernel(a_shape=(64, 32), b_shape=(32, 64), c_shape=(64, 64), a_dtype="float16",
                b_dtype="float16", c_dtype="float32", a_scope="shared", b_scope="shared",
                c_scope="fragment", **flags):
    allocs = {"shared": T.alloc_shared, "fragment": T.alloc_fragment, "local": T.alloc_local}

    def gemm_k(X, O):
        with T.Kernel(1, threads=128):
            a = allocs[a_scope](a_shape, a_dtype)
            b = allocs[b_scope](b_shape, b_dtype)
            acc = allocs[c_scope](c_shape, c_dtype)
            T.gemm(a, b, acc, **flags)
            O[0] = X[0]

    return trace1(gemm_k)


def test_gemm_records_flags():
    kernel = gemm_kernel(a_shape=(32, 64), b_shape=(64, 32), transpose_A=True, transpose_B=True,
                         clear_accum=True)
    (g, _) = kernel.body
    assert isinstance(g, ir.Gemm) and g.transpose_a and g.transpose_b and g.clear_accum
    assert g.c.extents == (64, 64)


@pytest.mark.parametrize("kwargs, rule", [
    (dict(a_shape=(64, 16)), "expected C \\(M, N\\), A \\(M, K\\), B \\(K, N\\); A a is \\(64, 16\\), "
                             "B b is \\(32, 64\\), C acc is \\(64, 64\\)"),
    (dict(c_shape=(32, 64)), "expected C \\(M, N\\)"),
    (dict(transpose_B=True), "expected .* B \\(K, N\\) transposed; A a is \\(64, 32\\)"),
    (dict(a_shape=(64,)), "A must be a 2-D tile"),
    (dict(b_dtype="bfloat16"), "A and B must share one dtype of .* got float16 and bfloat16"),
    (dict(a_dtype="int16", b_dtype="int16"), "A and B must share one dtype"),
    (dict(a_dtype="int8", b_dtype="float8_e4m3"), "A and B must share one dtype"),
    (dict(a_dtype="float16", b_dtype="float8_e4m3"), "A and B must share one dtype"),
    (dict(a_dtype="int8", b_dtype="int8"),
     "the accumulator C must be int32 for int8 inputs, got float32"),
    (dict(a_dtype="bfloat16", b_dtype="bfloat16", c_dtype="float16"),
     "the accumulator C must be float32 for bfloat16 inputs, got float16"),
    (dict(c_dtype="bfloat16"), "the accumulator C must be float32 or float16 for float16 "
                               "inputs, got bfloat16"),
    (dict(c_scope="shared"), "C must be a fragment \\(T.alloc_fragment\\), not shared.dyn"),
    (dict(b_scope="local"), "B must be a shared tile or a fragment, not local"),
    (dict(a_scope="local"), "A must be a shared tile or a fragment, not local"),
])
def test_gemm_errors(kwargs, rule):
    with pytest.raises(jtile.JtileShapeError, match=located("gemm_k", "T.gemm at test_trace_ops.py:\\d+: "
                                                            + rule)):
        gemm_kernel(**kwargs)


def test_gemm_accepts_fragment_a_and_float32():
    gemm_kernel(a_scope="fragment")
    gemm_kernel(b_scope="fragment")
    gemm_kernel(a_scope="fragment", b_scope="fragment")
    gemm_kernel(a_dtype="float32", b_dtype="float32")
    gemm_kernel(a_dtype="bfloat16", b_dtype="bfloat16")
    gemm_kernel(a_dtype="int8", b_dtype="int8", c_dtype="int32")
    gemm_kernel(a_dtype="uint8", b_dtype="uint8", c_dtype="int32")


# ----------------------------------------------------------------------------- reductions


@pytest.mark.parametrize("op", ["max", "min", "sum", "abssum", "absmax"])
def test_reductions_record_dim(op):
    def red(X, O):
        with T.Kernel(1):
            x = T.alloc_fragment((16, 8), "float32")
            rows = T.alloc_fragment((16,), "float32")
            cols = T.alloc_fragment((8,), "float32")
            T.clear(x)
            getattr(T, f"reduce_{op}")(x, rows)
            getattr(T, f"reduce_{op}")(x, cols, dim=0, clear=False)
            T.copy(rows, O[0:16])

    _, r1, r2, _ = trace1(red).body
    assert (r1.op, r1.dim, r1.clear, r1.dst.shape) == (op, 1, True, (16,))
    assert (r2.op, r2.dim, r2.clear, r2.dst.shape) == (op, 0, False, (8,))


@pytest.mark.parametrize("dst_shape, dim, rule", [
    ((8,), -1, "dst .* must have shape \\(16,\\): src x \\(local.fragment float32 \\(16, 8\\)\\) "
               "without dimension 1"),
    ((16, 1), 1, "dst d .* must have shape \\(16,\\)"),
    ((16,), 0, "dst d .* must have shape \\(8,\\)"),
    ((16,), 2, "dim=2 is out of range"),
    ((16,), -3, "dim=-3 is out of range"),
])
def test_reduce_dst_shape_errors(dst_shape, dim, rule):
    def red_bad(X, O):
        with T.Kernel(1):
            x = T.alloc_fragment((16, 8), "float32")
            d = T.alloc_fragment(dst_shape, "float32")
            T.reduce_max(x, d, dim=dim)

    with pytest.raises(jtile.JtileTraceError, match=located("red_bad", "T.reduce_max at "
                                                            "test_trace_ops.py:\\d+: " + rule)):
        trace1(red_bad)


def test_reduce_needs_fragments():
    def red_shared(X, O):  # shared tiles are staged through fragments; local ones are refused
        with T.Kernel(1):
            x = T.alloc_local((16, 8), "float32")
            d = T.alloc_fragment((16,), "float32")
            T.reduce_sum(x, d)

    with pytest.raises(jtile.JtileTraceError, match="src x .* must be a fragment"):
        trace1(red_shared)

    def red_slice(X, O):
        with T.Kernel(1):
            x = T.alloc_fragment((16, 8), "float32")
            d = T.alloc_fragment((16,), "float32")
            T.reduce_sum(x[0:16, 0:8], d)

    with pytest.raises(jtile.JtileTraceError, match="src and dst must be whole fragment buffers"):
        trace1(red_slice)


def test_finalize_reducer_needs_a_reducer():
    def not_reducer(X, O):
        with T.Kernel(1):
            x = T.alloc_fragment((16,), "float32")
            T.finalize_reducer(x)

    with pytest.raises(jtile.JtileTraceError, match="is not a reducer \\(T.alloc_reducer\\)"):
        trace1(not_reducer)


# ----------------------------------------------------------------------------- atomics


def test_atomic_add_forms():
    def atomics(X, O):
        with T.Kernel(1, threads=32):
            frag = T.alloc_fragment((16,), "float32")
            s = T.alloc_shared((16,), "float32")
            T.copy(X[0:16], frag)
            T.atomic_add(O[3], 1)                    # element, Python scalar
            T.atomic_add(O[3], X[4])                 # element, traced scalar
            T.atomic_add(O[0:16], frag)              # slice += tile
            T.atomic_add(O[16], frag)                # head address += tile
            T.atomic_add(s, frag)                    # shared buffer += tile

    _, e1, e2, t1, t2, t3 = trace1(atomics).body
    assert isinstance(e1.dst, ir.Load) and e1.value.dtype is DType.float32
    assert isinstance(e2.value, ir.Load)
    assert isinstance(t1.value, ir.Region) and t1.dst.extents == (16,)
    assert t2.dst.extents == (16,) and t2.dst.starts[0].value == 16
    assert t3.dst.buffer.space is MemorySpace.SHARED_DYN


@pytest.mark.parametrize("case, rule", [
    ("fragment_dst", "dst must be an element or tile of a global or shared buffer"),
    ("int8", "small \\(shared.dyn int8 \\(16,\\)\\): atomic add supports"),
    ("shape", "dst tile \\(8,\\) and value tile \\(16,\\) differ"),
    ("scalar_to_tile", "a scalar value needs one element as dst"),
])
def test_atomic_add_errors(case, rule):
    def atomic_bad(X, O):
        with T.Kernel(1, threads=32):
            frag = T.alloc_fragment((16,), "float32")
            small = T.alloc_shared((16,), "int8")
            if case == "fragment_dst":
                T.atomic_add(frag[0], 1.0)
            elif case == "int8":
                T.atomic_add(small[0], 1)
            elif case == "shape":
                T.atomic_add(O[0:8], frag)
            else:
                T.atomic_add(O[0:16], 1.0)

    with pytest.raises(jtile.JtileTraceError, match=located("atomic_bad", "T.atomic_add at "
                                                            "test_trace_ops.py:\\d+: " + rule)):
        trace1(atomic_bad)


# ----------------------------------------------------------------------------- parameters


def test_tensor_annotations_are_checked():
    def annotated(A: T.Tensor((64, 32), "float16"), B: T.Tensor((None, 32), "float16"),
                  C: T.Buffer((64,), T.float32)):
        with T.Kernel(1):
            C[0] = T.cast(A[0, 0] + B[0, 0], "float32")

    trace(annotated, [((64, 32), F16), ((8, 32), F16)], [((64,), F32)])
    with pytest.raises(jtile.JtileShapeError, match=located(
            "annotated", "input parameter `A` has shape \\(32, 64\\) but is annotated "
                         "T.Tensor\\(\\(64, 32\\), float16\\)")):
        trace(annotated, [((32, 64), F16), ((8, 32), F16)], [((64,), F32)])
    with pytest.raises(jtile.JtileShapeError, match="input parameter `B` has dtype float32 but is "
                       "annotated T.Tensor\\(\\(\\?, 32\\), float16\\)"):
        trace(annotated, [((64, 32), F16), ((8, 32), F32)], [((64,), F32)])
    with pytest.raises(jtile.JtileShapeError, match="output parameter `C` has shape \\(64, 1\\) but "
                       "is annotated T.Tensor\\(\\(64,\\), float32\\)"):
        trace(annotated, [((64, 32), F16), ((8, 32), F16)], [((64, 1), F32)])


def test_parameter_names_become_buffer_names():
    def names(query, key, out_ref):
        with T.Kernel(1):
            T.copy(query, out_ref)
            T.copy(key, out_ref)

    kernel = trace(names, [((8,), F32), ((8,), F32)], [((8,), F32)])
    assert [b.name for b in kernel.params] == ["query", "key", "out_ref"]
    assert kernel.num_inputs == 2 and kernel.name == "names"
    assert all(b.space is MemorySpace.GLOBAL for b in kernel.params)
    assert trace(names, [((8,), F32), ((8,), F32)], [((8,), F32)], name="renamed").name == "renamed"


def test_wrong_number_of_parameters():
    def takes_two(X, O):
        with T.Kernel(1):
            T.copy(X, O)

    with pytest.raises(jtile.JtileTraceError, match=located("takes_two", "the kernel takes 2 array "
                                                            "parameters but is called with 3")):
        trace(takes_two, [((8,), F32), ((8,), F32)], [((8,), F32)])


def test_static_arguments_with_defaults_are_not_arrays():
    def with_default(X, O, block=32):
        with T.Kernel(1, threads=block):
            T.copy(X, O)

    assert trace1(with_default).threads == 32


def test_returning_values_with_out_shape_is_refused():
    def returns(X, O):
        with T.Kernel(1):
            T.copy(X, O)
        return O

    with pytest.raises(jtile.JtileTraceError, match="writes its output refs and returns nothing"):
        trace1(returns)


def test_missing_and_foreign_returns_without_out_shape():
    def returns_nothing(X):
        O = T.empty((8,))
        with T.Kernel(1):
            T.copy(X, O)

    with pytest.raises(jtile.JtileTraceError, match="declared no out_shape= and returned "
                       "nothing.* in place .* input_output_aliases="):
        trace(returns_nothing, [((8,), F32)], None)

    def returns_input(X):
        O = T.empty((8,))
        with T.Kernel(1):
            T.copy(X, O)
        return X

    with pytest.raises(jtile.JtileTraceError, match="must return the buffers made by T.empty"):
        trace(returns_input, [((8,), F32)], None)

    def forgets_one(X):
        O = T.empty((8,))
        P = T.empty((8,))
        with T.Kernel(1):
            T.copy(X, O)
            T.copy(X, P)
        return O

    with pytest.raises(jtile.JtileTraceError, match="T.empty outputs \\['P'\\] were declared but not "
                       "returned"):
        trace(forgets_one, [((8,), F32)], None)


def test_buffer_names_follow_assignment_and_stay_unique():
    def naming(X):
        out = T.empty((8,))
        with T.Kernel(1) as bx:
            tx = T.alloc_var("int32")
            bx_copy = T.alloc_var("int32", bx)
            i = T.alloc_fragment((8,), "float32")
            for j in T.Parallel(8):
                i[j] = X[j] + tx + bx_copy
            T.copy(i, out)
        return out

    kernel = trace(naming, [((8,), F32)], None)
    names = [b.name for b in kernel.params] + [b.name for b in kernel.allocations]
    assert names == ["X", "out", "tx_1", "bx_copy", "i"]  # `tx` is the thread index's name
    assert kernel.thread_var.name == "tx"
    (loop,) = [s for s in kernel.body if isinstance(s, ir.ParallelFor)]
    assert loop.vars[0].name == "i_1"


# ----------------------------------------------------------------------------- golden text


def test_kernel_text_of_a_tiled_matmul():
    def matmul(A, B, C):
        M, K = A.shape
        _, N = B.shape
        with T.Kernel(T.ceildiv(N, 64), T.ceildiv(M, 64), threads=128) as (bx, by):
            a_smem = T.alloc_shared((64, 32), "float16")
            b_smem = T.alloc_shared((32, 64), "float16")
            acc = T.alloc_fragment((64, 64), "float32")
            T.clear(acc)
            for k in T.Pipelined(T.ceildiv(K, 32), num_stages=2):
                T.copy(A[by * 64, k * 32], a_smem)
                T.copy(B[k * 32:(k + 1) * 32, bx * 64:(bx + 1) * 64], b_smem)
                T.gemm(a_smem, b_smem, acc)
            T.copy(acc, C[by * 64, bx * 64])

    kernel = trace(matmul, [((128, 64), F16), ((64, 128), F16)], [((128, 128), F32)])
    assert kernel_text(kernel) == """\
kernel matmul(A: float16[128, 64], B: float16[64, 128]) -> (C: float32[128, 128])
  grid=[2, 2] threads=128 blocks=(bx, by)
  alloc a_smem: shared.dyn float16[64, 32]
  alloc b_smem: shared.dyn float16[32, 64]
  alloc acc: local.fragment float32[64, 64]
  fill acc[:64, :64] = 0.0
  pipelined k in range(2, stages=2):
    copy A[(by * 64):(by * 64)+64, (k * 32):(k * 32)+32] -> a_smem[:64, :32]
    copy B[(k * 32):(k * 32)+32, (bx * 64):(bx * 64)+64] -> b_smem[:32, :64]
    gemm a_smem[:64, :32] @ b_smem[:32, :64] -> acc[:64, :64]
  copy acc[:64, :64] -> C[(by * 64):(by * 64)+64, (bx * 64):(bx * 64)+64]
"""


def test_kernel_text_of_control_flow_reductions_and_vars():
    def rowmax(X):
        O = T.empty((64,), "float32")
        with T.Kernel(2, threads=128) as bx:
            x = T.alloc_fragment((32, 16), "float32")
            m = T.alloc_fragment((32,), "float32")
            n = T.alloc_var("int32", 3)
            T.copy(X[bx * 32:bx * 32 + 32, 0:16], x)
            T.reduce_max(x, m, dim=1)
            for i in T.Parallel(32):
                with T.If(m[i] > 0):
                    O[bx * 32 + i] = m[i] * n
                with T.Else():
                    O[bx * 32 + i] = T.if_then_else(m[i] < -1, -1.0, 0.0)
            for k in T.serial(1, 9, 2):
                n[0] = n + k
        return O

    kernel = trace(rowmax, [((64, 16), F32)], None)
    assert kernel_text(kernel) == """\
kernel rowmax(X: float32[64, 16]) -> (O: float32[64])
  grid=[2] threads=128 blocks=(bx)
  alloc x: local.fragment float32[32, 16]
  alloc m: local.fragment float32[32]
  alloc n: local.var int32[1] init=3
  copy X[(bx * 32):(bx * 32)+32, :16] -> x[:32, :16]
  reduce_max x -> m dim=1
  parallel (i) in (32,):
    if (m[i] > 0.0):
      O[((bx * 32) + i)] = (m[i] * n[0])
    else:
      O[((bx * 32) + i)] = select((m[i] < -1.0), -1.0, 0.0)
  serial k in range(4) * 2 + 1:
    n[0] = (n[0] + ((k * 2) + 1))
"""
    # Identical kernels print identically: a second trace gives the same text.
    assert kernel_text(trace(rowmax, [((64, 16), F32)], None)) == kernel_text(kernel)
