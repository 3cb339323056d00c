"""Hand-written warp specialisation (`T.ws`, `T.tma_copy`, mbarriers between the roles), as
TileLang's `examples/warp_specialize` GEMMs write it: the kernels of
tests/tilelang/gemm_warp_specialized.py in interpret mode, compiled for sm_90a (and sm_80 where
they use no mbarrier), on the GPU (`-m gpu`), the CUDA they compile to, and the rules T.ws and
T.tma_copy enforce.
"""

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
import jtile.language as T
from jtile import JtileError
from tests.gpu.compare import assert_close, seed_of
from tests.gpu.references import attention_f64
from tests.tilelang import gemm_warp_specialized as ws_gemm

S = jax.ShapeDtypeStruct
TILES = dict(block_M=128, block_N=128, block_K=64)
# Odd sizes: edge tiles in M and N, and a K that is not a multiple of block_K.
SMALL = (200, 136, 160)
LARGE = (1000, 1100, 1216)
KERNELS = {
    "handoff, warpgroup 1 loads": functools.partial(ws_gemm.handoff, producer=1),
    "handoff, warpgroup 0 loads": functools.partial(ws_gemm.handoff, producer=0),
    "two-stage ring": ws_gemm.ring,
    "columns split between warpgroups": ws_gemm.split_columns,
    "branches on the thread index": ws_gemm.branches,
}


@pytest.fixture(autouse=True)
def _no_global_switches(monkeypatch):
    for name in ("JTILE_INTERPRET", "JTILE_DEBUG", "JTILE_TARGET"):
        monkeypatch.delenv(name, raising=False)


def _inputs(name, m, n, k):
    key = jax.random.PRNGKey(seed_of("ws_gemm:" + name))
    ka, kb = jax.random.split(key)
    a = jax.random.normal(ka, (m, k), jnp.float32).astype(jnp.float16)
    b = jax.random.normal(kb, (k, n), jnp.float32).astype(jnp.float16)
    return a, b


def _launcher(name, interpret):
    return jtile.pallas_like(functools.partial(KERNELS[name], **TILES), interpret=interpret,
                             name="ws_gemm")


def _check(name, sizes, interpret):
    m, n, k = sizes
    a, b = _inputs(name, m, n, k)
    c = _launcher(name, interpret)(a, b)
    assert c.shape == (m, n) and c.dtype == jnp.float16
    assert_close(c, ws_gemm.reference(a, b), jnp.float16, k=k, name=name)


@pytest.mark.parametrize("name", KERNELS)
def test_interpret(name):
    _check(name, SMALL, interpret=True)


@pytest.mark.parametrize("name", [n for n in KERNELS if n != "two-stage ring"])
def test_compiles_for_sm90a_without_performance_warnings(name):
    m, n, k = LARGE
    lowered = _launcher(name, False).lower(S((m, k), jnp.float16), S((k, n), jnp.float16),
                                           target="sm_90a")
    with warnings.catch_warnings():
        warnings.simplefilter("error", jtile.JtilePerformanceWarning)
        assert lowered.compile().cubin[:4] == b"\x7fELF"
    assert "jt_wgmma_m64n" in lowered.cuda_source()


def test_stage_tiles_of_a_ring_run_on_wgmma():
    """`a_tiles[s, :, :]`: a whole tile of a buffer with a leading stage dimension; the wgmma
    descriptors start at the stage's tile (16 KB apart, each 1024-byte aligned). The kernel's
    `for ko in range(...)` is one loop (TileLang's `T.serial`), not its trip count of copies."""
    m, n, k = LARGE
    lowered = _launcher("two-stage ring", False).lower(S((m, k), jnp.float16),
                                                       S((k, n), jnp.float16), target="sm_90a")
    source = lowered.cuda_source()
    assert "jt::mma_m16n8k16" not in source and "jt_wgmma_m64n128k16" in source
    assert f"for (int k = 0; k < {-(-k // TILES['block_K'])}; ++k)" in source
    assert "reinterpret_cast<unsigned char*>(a_tiles_smem) + (((k % 2))) * 16384" in source
    # The gemm spans its stage's block_K = 64 columns: 4 k-steps of 16 for each of the two
    # 64-row halves, never the stage dimension's rows (K taken from the buffer's shape
    # read the next stage, and past the ring's end).
    steps = source.count("jt_wgmma_m64n128k16_f16_ss_nt(&acc_frag")
    assert steps == 8, steps
    assert "jt_da + 1024" not in source
    with warnings.catch_warnings():
        # ptxas keeps the wgmmas asynchronous (it serialized them in the unrolled loop).
        warnings.simplefilter("error", jtile.JtilePerformanceWarning)
        assert lowered.compile().cubin[:4] == b"\x7fELF"


@pytest.mark.gpu
@pytest.mark.parametrize("name", KERNELS)
def test_gpu(name):
    _check(name, LARGE, interpret=False)


def _source(name):
    m, n, k = LARGE
    return _launcher(name, False).lower(S((m, k), jnp.float16), S((k, n), jnp.float16),
                                        target="sm_90a").cuda_source()


def _region(source, first, count=128):
    """The CUDA of the first region on threads first..first+count-1 (to its closing brace)."""
    head = f"if (((tx >= {first}) && (tx < {first + count})))"
    body = source.split(head, 1)[1]
    depth, end = 0, 0
    for end, char in enumerate(body):
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth == 0 and char == "}":
            break
    return body[:end]


def test_a_region_s_tile_operations_use_its_own_threads():
    source = _source("columns split between warpgroups")
    loop = source.split("for (int k = 0;", 1)[1]
    left, right = _region(loop, 0), _region(loop, 128)
    for region, first, barrier in ((left, 0, 15), (right, 128, 14)):
        tid = region.split("const int ", 1)[1].split(" ", 1)[0]
        assert f"{tid} = tx - {first};" in region
        assert f"* 128 + {tid};" in region          # the copy strides over 128 threads
        assert "__syncthreads" not in region       # never a block barrier inside a region
        assert f"jt::named_barrier_sync({barrier}, 128);" in region
        assert f"const int jt_wg = {tid} >> 7;" in region   # wgmma on one warpgroup
        assert "m64n64k16" in region


def test_no_barrier_between_regions_the_kernel_orders_them_itself():
    source = _source("handoff, warpgroup 1 loads")
    loop = source.split("for (int k = 0;", 1)[1]
    between = loop.split("if (((tx >= 0) && (tx < 128)))", 1)[0]
    assert "__syncthreads" not in between and "named_barrier" not in between.split(
        "if (((tx >= 128)", 1)[1].split("jt::mbarrier_arrive(&ready_bar[0]);")[1]
    # The producer's copies land and are fenced for wgmma before it arrives.
    producer = _region(loop, 128)
    assert producer.index("jt::cp_async_wait_all();") < \
        producer.index("jt::fence_proxy_async_shared();") < \
        producer.index("jt::mbarrier_arrive(&ready_bar[0]);")


# ----------------------------------------------------------------------------- rules


def _run(body, threads=256, target=None):
    """`body(A, B)` in a one-block kernel with input A and output B (64 x 64 float16): run
    in interpret mode, or lowered for `target` (its CUDA)."""
    spec = S((64, 64), jnp.float16)

    def kernel(A, B):
        with T.Kernel(1, threads=threads):
            body(A, B)

    call = jtile.pallas_like(kernel, out_shape=spec, interpret=target is None)
    if target is None:
        return call(jnp.ones((64, 64), jnp.float16))
    return call.lower(spec, target=target).cuda_source()


@pytest.mark.parametrize("groups, rule", [((0, 2), r"must be consecutive"),
                                          ((2,), r"256 threads .*2 whole warpgroups"),
                                          ((), r"one or more warpgroup indices"),
                                          ((0.5,), r"one or more warpgroup indices")])
def test_ws_names_consecutive_warpgroups_that_exist(groups, rule):
    def body(A, B):
        with T.ws(*groups):
            T.copy(A, B)

    with pytest.raises(JtileError, match=rule):
        _run(body)


def test_ws_inside_ws_is_refused():
    def body(A, B):
        with T.ws(0):
            with T.ws(0):
                T.copy(A, B)

    with pytest.raises(JtileError, match=r"T.ws inside T.ws"):
        _run(body)


def test_a_fragment_used_inside_and_outside_regions_is_refused():
    def body(A, B):
        acc = T.alloc_fragment((64, 64), "float32")
        T.clear(acc)
        with T.ws(0):
            T.copy(A, acc)
        T.copy(acc, B)

    with pytest.raises(JtileError, match=r"fragment acc.* is used by 256 threads \(the block\) "
                                         r"and by 128 threads \(T.ws regions\)"):
        _run(body, target="sm_90a")


def test_tile_operations_under_a_thread_condition_inside_a_region_are_refused():
    def body(A, B):
        with T.ws(0):
            with T.If(T.get_thread_binding() < 64):
                T.copy(A, B)

    with pytest.raises(JtileError, match=r"T.copy under the condition of T.If"):
        _run(body, target="sm_90a")


def test_a_user_barrier_on_a_region_s_id_is_refused():
    def body(A, B):
        with T.ws(0):
            T.copy(A, B)
        T.sync_threads(15, 256)

    with pytest.raises(JtileError, match=r"barrier_id=15.*T.ws region"):
        _run(body, target="sm_90a")


@pytest.mark.parametrize("interpret", [True, pytest.param(False, marks=pytest.mark.gpu)])
def test_per_thread_code_in_a_region_runs_on_its_threads_with_the_block_s_thread_index(
        interpret):
    def kernel(A, O):
        with T.Kernel(1, threads=256):
            tx = T.get_thread_binding()
            with T.ws(1):
                O[tx] = A[tx] * 2           # threads 128..255 only, indexed as in the block
            with T.ws(0):
                O[tx] = A[tx] + 1

    a = jax.random.normal(jax.random.PRNGKey(seed_of("ws per-thread")), (256,), jnp.float32)
    out = jtile.pallas_like(kernel, out_shape=S((256,), jnp.float32), interpret=interpret)(a)
    expect = jnp.where(jnp.arange(256) < 128, a + 1, a * 2)
    assert_close(out, expect, jnp.float32, name="per-thread regions")


@pytest.mark.parametrize("kwargs, rule", [
    (dict(), r"needs barrier="),
    (dict(barrier="bar", cluster_mask=3), r"cluster_mask=3.* multicasts"),
    (dict(barrier="bar", leader_scope_threads=0), r"leader_scope_threads=0.* positive"),
    (dict(barrier="bar", eviction_policy="evict_first"), r"evict_first.* not supported yet"),
])
def test_tma_copy_arguments(kwargs, rule):
    def body(A, B):
        bar = T.alloc_barrier(128)
        shared = T.alloc_shared((64, 64), "float16")
        with T.ws(0):
            options = {k: (bar if v == "bar" else v) for k, v in kwargs.items()}
            T.tma_copy(A, shared, **options)
            T.copy(shared, B)

    with pytest.raises(JtileError, match=rule):
        _run(body)


def test_tma_copy_under_a_branch_on_the_thread_index_points_to_t_ws():
    def body(A, B):
        bar = T.alloc_barrier(32)
        shared = T.alloc_shared((64, 64), "float16")
        with T.If(T.get_thread_binding() < 32):
            T.tma_copy(A, shared, barrier=bar)
            T.barrier_arrive(bar)
        T.barrier_wait(bar, 0)
        T.copy(shared, B)

    with pytest.raises(JtileError, match=r"T.tma_copy under the condition of T.If.*give the "
                                         r"producer a T.ws region"):
        _run(body, target="sm_90a")


# ----------------------------------------------------------------------------- registers


def _handoff_with(registers):
    m, n, k = LARGE
    call = jtile.pallas_like(functools.partial(ws_gemm.handoff, registers=registers, **TILES),
                             name="ws_gemm")
    return call, (S((m, k), jnp.float16), S((k, n), jnp.float16))


def test_set_max_nreg_in_a_region_is_setmaxnreg():
    # 256 threads start with all 255 registers a thread: only a decrease means anything.
    call, specs = _handoff_with((40, None))
    a, b = _inputs("registers", *SMALL[:2], SMALL[2])
    interpreted = jtile.pallas_like(functools.partial(ws_gemm.handoff, registers=(40, None),
                                                      **TILES), interpret=True)(a, b)
    assert_close(interpreted, ws_gemm.reference(a, b), jnp.float16, k=SMALL[2], name="nreg")
    lowered = call.lower(*specs, target="sm_90a")
    source = lowered.cuda_source()
    assert "__launch_bounds__(256, 1)" in source    # a register count at entry
    producer, consumer = _region(source, 128), _region(source, 0)
    assert "jt::setmaxnreg_dec<40>();" in producer and "setmaxnreg" not in consumer
    assert lowered.compile().cubin[:4] == b"\x7fELF"


def test_set_max_nreg_needs_sm90a():
    def body(A, B):
        with T.ws(1):
            T.set_max_nreg(40, 0)
        T.copy(A, B)

    with pytest.raises(JtileError, match=r"setmaxnreg, an sm_90a instruction; the target is "
                                         r"sm_80"):
        _run(body, target="sm_80")


@pytest.mark.gpu
def test_set_max_nreg_gpu():
    a, b = _inputs("registers", *LARGE[:2], LARGE[2])
    out = jtile.pallas_like(functools.partial(ws_gemm.handoff, registers=(40, None), **TILES))(a, b)
    assert_close(out, ws_gemm.reference(a, b), jnp.float16, k=LARGE[2], name="nreg gpu")


def test_an_increase_below_the_launch_share_is_refused():
    call, specs = _handoff_with((40, 200))
    with pytest.raises(JtileError, match=r"starts with 255 registers a thread, so an increase "
                                         r"asks for at least 255"):
        call.lower(*specs, target="sm_90a").cuda_source()


def test_requests_beyond_the_register_file_are_refused():
    def body(A, B):
        for group in range(3):
            with T.ws(group):
                T.set_max_nreg(240, 1)
        T.copy(A, B)

    with pytest.raises(JtileError, match=r"asks for 92160 registers in all \(warpgroup 0: 240, "
                                         r"warpgroup 1: 240, warpgroup 2: 240.*wait forever"):
        _run(body, threads=384, target="sm_90a")


@pytest.mark.parametrize("where, rule", [
    ("outside", r"T.set_max_nreg outside T.ws"),
    ("branch", r"inside a loop or branch of a T.ws region"),
    ("loop", r"T.set_max_nreg in a T.ws region inside the loop"),
    ("count", r"a multiple of 8 from 24 to 256"),
    ("twice", r"warpgroup 0 asks for registers twice"),
])
def test_set_max_nreg_placement(where, rule):
    def body(A, B):
        if where == "outside":
            T.set_max_nreg(40, 0)
        if where == "branch":
            with T.ws(0):
                with T.If(A[0, 0] > 0):
                    T.set_max_nreg(40, 0)
        if where == "loop":
            for _ in T.serial(2):
                with T.ws(0):
                    T.set_max_nreg(40, 0)
        if where == "count":
            with T.ws(0):
                T.set_max_nreg(41, 0)
        if where == "twice":
            with T.ws(0):
                T.set_max_nreg(40, 0)
            with T.ws(0):
                T.set_max_nreg(40, 0)
        T.copy(A, B)

    with pytest.raises(JtileError, match=rule):
        _run(body, target="sm_90a")


# ----------------------------------------------------------------------------- attention


def _attention_inputs(shape):
    keys = jax.random.split(jax.random.PRNGKey(seed_of("ws_attention")), 3)
    return [jax.random.normal(key, shape, jnp.float32).astype(jnp.float16) for key in keys]


def test_attention_with_a_producer_warpgroup_interpret():
    q, k, v = _attention_inputs((1, 200, 2, 64))   # a ragged last key tile
    out = jtile.pallas_like(ws_gemm.attention, interpret=True)(q, k, v)
    assert_close(out, attention_f64(q, k, v, causal=False), jnp.float16, name="ws attention")


def test_attention_with_a_producer_warpgroup_compiles_for_sm90a():
    spec = S((2, 1000, 4, 128), jnp.float16)
    lowered = jtile.pallas_like(ws_gemm.attention).lower(spec, spec, spec, target="sm_90a")
    source = lowered.cuda_source()
    # Both gemms on wgmma, K and V read at their stage's tile.
    assert "jt::mma_m16n8k16" not in source
    assert "(v_smem) + (((k_1 % 2))) * 16384" in source
    loop = source.split("jt::mbarrier_arrive(&full_bar", 1)[1]
    consumers = _region(loop, 0, 256)         # the softmax and both gemms of one key tile
    assert "__syncthreads" not in consumers and "jt::mbarrier_arrive(&empty_bar" in consumers
    with warnings.catch_warnings():
        warnings.simplefilter("error", jtile.JtilePerformanceWarning)
        assert lowered.compile().cubin[:4] == b"\x7fELF"


@pytest.mark.gpu
def test_attention_with_a_producer_warpgroup_gpu():
    q, k, v = _attention_inputs((2, 1000, 4, 128))
    out = jtile.pallas_like(ws_gemm.attention)(q, k, v)
    assert_close(out, attention_f64(q, k, v, causal=False), jnp.float16, name="ws attention")


def test_a_pipelined_loop_inside_a_region_runs_as_written():
    """A region's own loops are the kernel's to pipeline (its mbarriers): jtile builds no
    stage ring or producer there, and says nothing about it."""
    def kernel(A, B, C):
        with T.Kernel(1, threads=256):
            a = T.alloc_shared((64, 64), "float16")
            b = T.alloc_shared((64, 64), "float16")
            c = T.alloc_fragment((64, 64), "float32")
            with T.ws(1):
                T.clear(c)
                for k in T.Pipelined(4, num_stages=2):
                    T.copy(A[0, k * 64], a)
                    T.copy(B[k * 64, 0], b)
                    T.gemm(a, b, c)
                T.copy(c, C)

    a, b = _inputs("region loop", 64, 64, 256)
    out_spec = S((64, 64), jnp.float32)
    interpreted = jtile.pallas_like(kernel, out_shape=out_spec, interpret=True)(a, b)
    assert_close(interpreted, ws_gemm.reference(a, b), jnp.float16, k=256, name="region loop")
    with warnings.catch_warnings():
        warnings.simplefilter("error", jtile.JtilePerformanceWarning)
        lowered = jtile.pallas_like(kernel, out_shape=out_spec).lower(
            S((64, 256), jnp.float16), S((256, 64), jnp.float16), target="sm_90a")
        region = _region(lowered.cuda_source(), 128)
        assert "jt_full_bar" not in region and "__syncthreads" not in region
        assert "jt::named_barrier_sync(14, 128);" in region
        assert lowered.compile().cubin[:4] == b"\x7fELF"


def _column_sum_in_a_region(A, Out):
    """Out = the column sums of A (64, 128), computed by T.ws(1, 2) (threads 128..383)."""
    with T.Kernel(1, threads=384):
        a = T.alloc_fragment((64, 128), "float32")
        col = T.alloc_fragment((128,), "float32")
        with T.ws(1, 2):
            T.copy(A, a)
            T.reduce_sum(a, col, dim=0)
            T.copy(col, Out)


@pytest.mark.gpu
def test_a_reduction_across_warps_inside_a_region_gpu():
    x = jax.random.normal(jax.random.PRNGKey(seed_of("ws colsum")), (64, 128), jnp.float32)
    out = jtile.pallas_like(_column_sum_in_a_region, out_shape=S((128,), jnp.float32))(x)
    assert_close(out, np.asarray(x, np.float64).sum(0), jnp.float32, k=64, name="ws colsum")


def test_a_reduction_across_warps_inside_a_region_meets_at_the_region_s_barrier():
    """A column sum over a region of two warpgroups combines partial sums of its eight warps
    through shared memory, indexed by the region's own thread index, at the region's named
    barrier (id 14, 256 threads), never the block's."""
    kernel = _column_sum_in_a_region
    x = jax.random.normal(jax.random.PRNGKey(seed_of("ws colsum")), (64, 128), jnp.float32)
    out_spec = S((128,), jnp.float32)
    out = jtile.pallas_like(kernel, out_shape=out_spec, interpret=True)(x)
    assert_close(out, np.asarray(x, np.float64).sum(0), jnp.float32, k=64, name="ws colsum")
    lowered = jtile.pallas_like(kernel, out_shape=out_spec).lower(S((64, 128), jnp.float32),
                                                                   target="sm_90a")
    region = _region(lowered.cuda_source(), 128, 256)
    assert "__syncthreads" not in region and region.count("jt::named_barrier_sync(14, 256);") >= 2
    assert "(jt_wtid1 & ~224)" in region   # peers of the region's own warps
    assert lowered.compile().cubin[:4] == b"\x7fELF"
