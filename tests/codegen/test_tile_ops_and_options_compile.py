"""Compiled path (no GPU): T.cumsum/T.cummax, T.im2col with views, T.use_swizzle, cluster_dims,
GemmWarpPolicy, bitwise reductions and layout annotations lower and compile to cubins for
sm_80 and sm_90a; what a target or the compiler cannot honour is refused by name."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
import jtile.language as T

TARGETS = ["sm_80", "sm_90a"]


def lower(kernel, inputs, out_shape, target):
    call = jtile.pallas_like(kernel, out_shape=out_shape)
    return call.lower(*inputs, target=target)


def spec(shape, dtype):
    return jax.ShapeDtypeStruct(shape, jnp.dtype(dtype))


def compiles(lowered):
    compiled = lowered.compile()
    assert compiled.cubin[:4] == b"\x7fELF"
    assert compiled.registers > 0
    return compiled


def scan_kernel(X, O, P):
    with T.Kernel(4, threads=128) as bx:
        tile = T.alloc_shared((32, 64), "float16")
        frag = T.alloc_fragment((32, 64), "float32")
        T.copy(X[bx * 32, 0], tile)
        T.cumsum(tile, dim=1, reverse=True)
        T.copy(tile, O[bx * 32, 0])
        T.copy(X[bx * 32, 0], frag)
        T.cummax(frag, dim=0)
        T.copy(frag, P[bx * 32, 0])


@pytest.mark.parametrize("target", TARGETS)
def test_scans_compile(target):
    lowered = lower(scan_kernel, [spec((128, 64), "float16")],
                    (spec((128, 64), "float16"), spec((128, 64), "float32")), target)
    assert "cumsum tile" in lowered.ir_text() and "cummax" in lowered.ir_text()
    compiles(lowered)


def conv_kernel(data, weight, out):
    N, H, W, C = data.shape
    K, F, OH, OW = 3, weight.shape[-1], out.shape[1], out.shape[2]
    with T.Kernel(T.ceildiv(F, 64), T.ceildiv(N * OH * OW, 64), threads=128) as (bx, by):
        T.use_swizzle(panel_size=4)
        data_shared = T.alloc_shared((64, 32), "float16")
        weight_shared = T.alloc_shared((32, 64), "float16")
        acc = T.alloc_fragment((64, 64), "float32")
        weight_flat = T.Tensor((K * K * C, F), "float16", weight.data)
        out_flat = T.view(out, (N * OH * OW, F))
        T.clear(acc)
        for k in T.Pipelined(T.ceildiv(K * K * C, 32), num_stages=3):
            T.im2col(data, data_shared, by, k, K, 1, 1, 1)
            # disable_tma: the sm_90a TMA lowering takes kernel parameters, not views of them.
            T.copy(weight_flat[k * 32, bx * 64], weight_shared, disable_tma=True)
            T.gemm(data_shared, weight_shared, acc)
        T.copy(acc, out_flat[by * 64, bx * 64])


@pytest.mark.parametrize("target", TARGETS)
def test_im2col_convolution_with_views_and_swizzle_compiles(target):
    lowered = lower(conv_kernel, [spec((2, 10, 10, 32), "float16"),
                                  spec((3, 3, 32, 64), "float16")],
                    spec((2, 10, 10, 64), "float16"), target)
    source = lowered.cuda_source()
    assert "reinterpret_cast<const jt::half*>(weight)" in source     # the view of an input
    assert "jt_major" in source                                       # the block remap
    compiles(lowered)


@pytest.mark.parametrize("target", TARGETS)
def test_bitwise_and_shared_reductions_compile(target):
    def kernel(X, O, P):
        with T.Kernel(1, threads=128):
            x = T.alloc_fragment((16, 64), "int32")
            r = T.alloc_fragment((16,), "int32")
            s = T.alloc_shared((16, 64), "int32")
            t = T.alloc_shared((16,), "int32")
            T.copy(X, x)
            T.reduce_bitxor(x, r, dim=1)
            T.copy(r, O)
            T.copy(X, s)
            T.reduce(s, t, "bitor", 1, True)
            T.copy(t, P)

    lowered = lower(kernel, [spec((16, 64), "int32")],
                    (spec((16,), "int32"), spec((16,), "int32")), target)
    compiles(lowered)


def gemm_kernel(policy):
    def kernel(A, B, C):
        with T.Kernel(1, threads=128):
            a = T.alloc_shared((64, 32), "float16")
            b = T.alloc_shared((32, 64), "float16")
            acc = T.alloc_fragment((64, 64), "float32")
            T.annotate_layout({a: T.make_swizzled_layout(a)})
            T.copy(A, a)
            T.copy(B, b)
            T.gemm(a, b, acc, policy=policy, clear_accum=True)
            T.copy(acc, C)
    return kernel


@pytest.mark.parametrize("policy,grid", [(T.GemmWarpPolicy.FullRow, (4, 1)),
                                         (T.GemmWarpPolicy.FullCol, (1, 4)),
                                         (T.GemmWarpPolicy.Square, (2, 2))])
def test_gemm_policy_decides_the_mma_warp_grid(policy, grid):
    lowered = lower(gemm_kernel(policy), [spec((64, 32), "float16"), spec((32, 64), "float16")],
                    spec((64, 64), "float32"), "sm_80")
    (tiling,) = lowered.kernel.attrs["mma"].values()
    assert (tiling.wm, tiling.wn) == grid
    compiles(lowered)


def cluster_kernel(X, O):
    with T.Kernel(4, 2, threads=128, cluster_dims=(2, 1, 1)) as (bx, by):
        for i in T.Parallel(128):
            O[by, bx * 128 + i] = X[by, bx * 128 + i] + 1.0


def test_cluster_dims_reach_the_launch_on_sm90_and_are_refused_on_sm80():
    args = ([spec((2, 512), "float32")], spec((2, 512), "float32"))
    compiled = compiles(lower(cluster_kernel, *args, "sm_90a"))
    assert compiled.cluster == (2, 1, 1)
    assert "cluster=[2, 1, 1]" in lower(cluster_kernel, *args, "sm_90a").ir_text()
    with pytest.raises(jtile.JtileTargetError, match=r"cluster_dims=\(2, 1, 1\).*sm_90.*sm_80"):
        lower(cluster_kernel, *args, "sm_80")


@pytest.mark.parametrize("annotate,match", [
    (lambda a, b, c, d: T.annotate_layout({d: T.make_swizzled_layout(d)}),
     "swizzled layout for .*cannot be honoured"),  # 48-byte rows: 3 chunks, not 2^k
    (lambda a, b, c, d: T.annotate_layout({a: T.make_linear_layout(a)}),
     "a linear layout cannot be honoured"),
    (lambda a, b, c, d: T.annotate_layout({a: T.make_quarter_bank_swizzled_layout(a)}),
     "quarter_bank swizzle .*rows are 64 bytes"),
])
def test_layout_annotations_jtile_cannot_honour_are_refused(annotate, match):
    def kernel(A, B, C):
        with T.Kernel(1, threads=128):
            a = T.alloc_shared((64, 32), "float16")
            b = T.alloc_shared((32, 64), "float16")
            c = T.alloc_shared((64, 64), "float32")
            d = T.alloc_shared((64, 12), "float32")
            acc = T.alloc_fragment((64, 64), "float32")
            annotate(a, b, c, d)
            T.copy(A, a)
            T.copy(B, b)
            T.gemm(a, b, acc, clear_accum=True)
            T.copy(acc, c)
            T.copy(c, C)

    with pytest.raises(jtile.JtileTargetError, match=match):
        lower(kernel, [spec((64, 32), "float16"), spec((32, 64), "float16")],
              spec((64, 64), "float32"), "sm_80")


def test_layout_annotation_honoured_and_trace_time_refusals():
    def honoured(A, O):
        with T.Kernel(1, threads=128):
            s = T.alloc_shared((16, 16), "float32")
            T.annotate_layout({s: T.Layout((16, 16), lambda i, j: (i, j))})  # identity: linear
            T.copy(A, s)
            T.copy(s, O)

    compiles(lower(honoured, [spec((16, 16), "float32")], spec((16, 16), "float32"), "sm_80"))

    def custom(A, O):
        with T.Kernel(1, threads=128):
            s = T.alloc_shared((16, 16), "float32")
            T.annotate_layout({s: lambda i, j: (j, i)})
            T.copy(A, s)
            T.copy(s, O)

    def on_fragment(A, O):
        with T.Kernel(1, threads=128):
            f = T.alloc_fragment((16, 16), "float32")
            T.annotate_layout({f: lambda i, j: (i, j)})
            T.copy(A, f)
            T.copy(f, O)

    for kernel, match in ((custom, "a custom index map is not supported"),
                          (on_fragment, "fragment layouts are inferred by jtile")):
        with pytest.raises(jtile.JtileError, match=match):
            lower(kernel, [spec((16, 16), "float32")], spec((16, 16), "float32"), "sm_80")


def test_view_of_a_swizzled_gemm_operand_is_refused():
    def kernel(A, B, C):
        with T.Kernel(1, threads=128):
            a = T.alloc_shared((64, 32), "float16")
            b = T.alloc_shared((32, 64), "float16")
            acc = T.alloc_fragment((64, 64), "float32")
            flat = T.view(a, (64 * 32,))
            T.copy(A, a)
            T.copy(B, b)
            flat[0] = T.cast(0.0, "float16")
            T.gemm(a, b, acc, clear_accum=True)
            T.copy(acc, C)

    with pytest.raises(jtile.JtileTargetError, match="stored swizzled, which a row-major view"):
        lower(kernel, [spec((64, 32), "float16"), spec((32, 64), "float16")],
              spec((64, 64), "float32"), "sm_80")


def test_interpret_and_compiled_share_the_conv_kernel():
    """The kernel compiled above gives numpy's convolution in interpret mode."""
    rng = np.random.default_rng(40)
    data = rng.uniform(-1, 1, (2, 10, 10, 32)).astype(np.float16)
    weight = rng.uniform(-1, 1, (3, 3, 32, 64)).astype(np.float16)
    call = jtile.pallas_like(conv_kernel, out_shape=spec((2, 10, 10, 64), "float16"),
                             interpret=True)
    out = np.asarray(call(data, weight)).astype(np.float64)
    padded = np.pad(data.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
    expected = sum(padded[:, i:i + 10, j:j + 10] @ weight[i, j].astype(np.float64)
                   for i in range(3) for j in range(3))
    np.testing.assert_allclose(out, expected, rtol=2e-2, atol=2e-2 * np.abs(expected).max())


def views_kernel(X, O, P):
    with T.Kernel(1, threads=64):
        words = T.view(X, (16,), "int32")          # 64 input bytes as 16 words
        staged = T.alloc_shared((64,), "uint8")
        T.copy(X, staged)
        grid = T.reshape(staged, (8, 8))
        for i in T.Parallel(16):
            O[i] = words[i] + 1
        for i, j in T.Parallel(8, 8):
            P[j, i] = grid[i, j]


@pytest.mark.parametrize("target", TARGETS)
def test_global_and_shared_views_compile(target):
    lowered = lower(views_kernel, [spec((64,), "uint8")],
                    (spec((16,), "int32"), spec((8, 8), "uint8")), target)
    source = lowered.cuda_source()
    assert "const int* X_view = reinterpret_cast<const int*>(X);" in source
    assert "reinterpret_cast<unsigned char*>(staged_smem)" in source
    compiles(lowered)


def test_a_swizzle_asked_for_an_output_tile_is_honoured():
    """TileLang kernels swizzle their output staging tile; jtile stores it swizzled too (every
    access goes through the same address map) and the values are unchanged."""
    def kernel(A, C):
        with T.Kernel(1, threads=128):
            c = T.alloc_shared((64, 64), "float16")
            T.annotate_layout({c: T.make_swizzled_layout(c)})
            T.copy(A, c)
            T.copy(c, C)

    lowered = lower(kernel, [spec((64, 64), "float16")], spec((64, 64), "float16"), "sm_80")
    assert any(b.name == "c" for b in lowered.kernel.attrs["shared"].swizzled)
    compiles(lowered)
