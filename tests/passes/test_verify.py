"""verify / verify_target_features: outputs written, inputs read-only, reducers read only after
T.finalize_reducer, and hardware features the target must have."""

import pytest

import jtile
import jtile.language as T
from jtile.compiler.target import parse_target
from jtile.ir.types import DType
from jtile.passes import run_passes
from jtile.passes.verify import verify, verify_target_features
from jtile.trace.trace_kernel import trace

F32 = DType.float32


def traced(fn, n_inputs=1, shape=(64,), out_shapes=((64,),)):
    return trace(fn, [(shape, F32)] * n_inputs, [(s, F32) for s in out_shapes])


def located(kernel_name, rule):
    return rf"^{kernel_name} \(test_verify.py:\d+\): .*{rule}"


# ----------------------------------------------------------------------------- outputs


def test_output_never_written():
    def forgets_p(X, O, P):
        with T.Kernel(1):
            T.copy(X, O)

    kernel = traced(forgets_p, out_shapes=((64,), (32,)))
    with pytest.raises(jtile.JtileTraceError, match=r"^forgets_p \(test_verify.py:\d+\): output P "
                       r"\(global float32 \(32,\)\) is never written; every output must be stored "
                       r"to, copied into or filled"):
        verify(kernel)


@pytest.mark.parametrize("how", ["store", "copy", "fill", "fill_then_atomic", "store_in_if",
                                 "gemm_copy"])
def test_every_kind_of_write_counts(how):
    def writes(X, O):
        with T.Kernel(1) as bx:
            if how == "store":
                for i in T.Parallel(64):
                    O[i] = X[i]
            elif how == "copy":
                T.copy(X, O)
            elif how == "fill":
                T.fill(O, 1.0)
            elif how == "fill_then_atomic":
                T.fill(O, 0.0)
                T.atomic_add(O[0], 1.0)
            elif how == "store_in_if":
                with T.If(bx == 0):
                    O[0] = 1.0
                with T.Else():
                    O[1] = 1.0
            else:
                frag = T.alloc_fragment((64,), "float32")
                T.copy(X, frag)
                T.copy(frag, O[0:64])

    kernel = traced(writes)
    assert verify(kernel) is kernel


def test_atomics_into_a_new_output_are_refused():
    """An atomic update reads what it updates; a new output starts undefined."""
    def adds(X, O):
        with T.Kernel(2) as bx:
            s = T.alloc_shared((64,), "float32")
            T.copy(X, s)
            T.atomic_add(O[0:64], s)

    kernel = traced(adds)
    with pytest.raises(jtile.JtileTraceError, match=located(
            "adds", r"output O \(global float32 \(64,\)\) is only updated with T.atomic_add, "
                    r"which reads its current contents.*input_output_aliases")):
        verify(kernel)
    assert verify(kernel, {0: 0}) is kernel   # a zeroed input aliased to it: defined


def test_aliased_output_may_stay_unwritten():
    def reads_only(X, O):
        with T.Kernel(1):
            s = T.alloc_shared((64,), "float32")
            T.copy(X, s)

    kernel = traced(reads_only)
    with pytest.raises(jtile.JtileTraceError, match="never written"):
        run_passes(kernel, None)
    assert run_passes(kernel, None, aliases={0: 0}) is kernel


# ----------------------------------------------------------------------------- inputs


@pytest.mark.parametrize("how", ["store", "copy", "fill", "atomic"])
def test_writes_to_inputs(how):
    def writes_input(X, Y, O):
        with T.Kernel(1):
            T.copy(X, O)
            if how == "store":
                Y[3] = 1.0
            elif how == "copy":
                T.copy(X, Y)
            elif how == "fill":
                T.clear(Y)
            else:
                T.atomic_add(Y[0], 1.0)

    kernel = traced(writes_input, n_inputs=2)
    with pytest.raises(jtile.JtileTraceError, match=located(
            "writes_input", r"test_verify.py:\d+: input Y \(global float32 \(64,\)\) is written; "
                            r"inputs are read-only unless aliased to an output with "
                            r"input_output_aliases")):
        verify(kernel)
    # Aliased to output 0, the input may be written.
    verify(kernel, {1: 0})


# ----------------------------------------------------------------------------- reducers


def reducer_kernel(read):
    def reduces(X, O):
        with T.Kernel(1, threads=128):
            r = T.alloc_reducer((64,), "float32", op="max")
            frag = T.alloc_fragment((64,), "float32")
            T.fill(r, T.min_value("float32"))
            for k in T.serial(4):
                for i in T.Parallel(64):
                    r[i] = T.max(r[i], X[k * 64 + i])
            if read == "store_before":
                for i in T.Parallel(64):
                    O[i] = r[i]
            elif read == "copy_before":
                T.copy(r, frag)
                T.copy(frag, O)
            elif read == "scalar_before":
                O[0] = r[0]
            T.finalize_reducer(r)
            T.copy(r, O)
            for i in T.Parallel(64):
                O[i] = r[i] + 1

    return trace(reduces, [((256,), F32)], [((64,), F32)])


@pytest.mark.parametrize("read", ["store_before", "copy_before", "scalar_before"])
def test_reducer_read_before_finalize(read):
    with pytest.raises(jtile.JtileTraceError, match=located(
            "reduces", r"test_verify.py:\d+: reducer r \(local.fragment float32 \(64,\)\) is read "
                       r"before T.finalize_reducer\(r\)")):
        verify(reducer_kernel(read))


def test_reducer_read_after_finalize_is_fine():
    kernel = reducer_kernel("after")
    assert verify(kernel) is kernel
    assert run_passes(kernel, parse_target("sm_90a")).attrs["shared"].scratch_bytes > 0


def test_reducer_reduced_before_finalize():
    def reduces_reducer(X, O):
        with T.Kernel(1, threads=128):
            r = T.alloc_reducer((64, 4), "float32")
            d = T.alloc_fragment((64,), "float32")
            T.clear(r)
            for i, j in T.Parallel(64, 4):
                r[i, j] += X[i, j]
            T.reduce_sum(r, d)
            T.finalize_reducer(r)
            T.copy(d, O)

    kernel = trace(reduces_reducer, [((64, 4), F32)], [((64,), F32)])
    with pytest.raises(jtile.JtileError, match="reducer r .* is read before T.finalize_reducer"):
        run_passes(kernel, parse_target("sm_90a"))


def test_reducer_atomically_added_before_finalize():
    def adds_reducer(X, O):
        with T.Kernel(1, threads=128):
            r = T.alloc_reducer((64,), "float32")
            T.clear(r)
            for i in T.Parallel(64):
                r[i] += X[i]
            T.atomic_add(O[0:64], r)
            T.finalize_reducer(r)

    kernel = trace(adds_reducer, [((64,), F32)], [((64,), F32)])
    with pytest.raises(jtile.JtileError, match="is read before T.finalize_reducer"):
        verify(kernel)


# ----------------------------------------------------------------------------- target features


def feature_kernel(feature):
    def uses_feature(X, O):
        with T.Kernel(1, threads=128):
            if feature == "barrier":
                bar = T.alloc_barrier([128, 1])
                T.mbarrier_arrive(bar[0])
            elif feature == "tmem":
                T.alloc_tmem((128, 64), "float32")
            elif feature == "wgmma":
                T.alloc_wgmma_desc()
            elif feature == "tcgen05":
                T.alloc_descriptor("utcmma")
            elif feature == "tcgen05_instr":
                T.alloc_tcgen05_instr_desc()
            T.copy(X, O)

    return traced(uses_feature)


@pytest.mark.parametrize("feature, arch, rule", [
    ("barrier", "sm_80", r"T.alloc_barrier \(bar\) needs mbarriers, which arrived with sm_90; the "
                         r"target is sm_80"),
    ("barrier", "sm_86", r"T.alloc_barrier \(bar\) needs mbarriers"),
    ("tmem", "sm_90a", r"T.alloc_tmem \(tmem\) needs Blackwell tensor memory \(sm_100a and "
                       r"later\); the target is sm_90a"),
    ("tmem", "sm_100", r"T.alloc_tmem \(tmem\) needs Blackwell tensor memory"),
    ("tmem", "sm_80", r"T.alloc_tmem \(tmem\) needs Blackwell"),
    ("wgmma", "sm_80", r"wgmma descriptor desc needs sm_90a; the target is sm_80"),
    ("wgmma", "sm_90", r"wgmma descriptor desc needs sm_90a; the target is sm_90$"),
    ("wgmma", "sm_100a", r"wgmma descriptor desc needs sm_90a"),
    ("tcgen05", "sm_90a", r"tcgen05_smem descriptor desc needs sm_100a; the target is sm_90a"),
    ("tcgen05_instr", "sm_90a", r"tcgen05_instr descriptor desc needs sm_100a"),
])
def test_target_features_refused(feature, arch, rule):
    kernel = feature_kernel(feature)
    with pytest.raises(jtile.JtileTargetError, match=located("uses_feature", r"test_verify.py:\d+: "
                                                             + rule)):
        verify_target_features(kernel, parse_target(arch))


@pytest.mark.parametrize("feature, arch", [("barrier", "sm_90a"), ("barrier", "sm_90"),
                                           ("barrier", "sm_100a"), ("tmem", "sm_100a"),
                                           ("wgmma", "sm_90a"), ("tcgen05", "sm_100a"),
                                           ("tcgen05_instr", "sm_100a"), ("none", "sm_80")])
def test_target_features_accepted(feature, arch):
    verify_target_features(feature_kernel(feature), parse_target(arch))


def test_barrier_ops_alone_need_sm90():
    from jtile.ir import nodes as ir

    kernel = feature_kernel("barrier")
    # Drop the allocation check's trigger: the op itself is refused too.
    no_alloc = kernel.replace(allocations=())
    with pytest.raises(jtile.JtileTargetError, match=r"T.mbarrier_arrive needs sm_90 or later; "
                       r"the target is sm_80"):
        verify_target_features(no_alloc, parse_target("sm_80"))
    assert any(isinstance(s, ir.BarrierOp) for s in kernel.body)


def test_run_passes_checks_features_only_with_a_target():
    kernel = feature_kernel("tmem")
    run_passes(kernel, None)  # interpret mode: target-independent checks only
    with pytest.raises(jtile.JtileTargetError):
        run_passes(kernel, parse_target("sm_90a"))
