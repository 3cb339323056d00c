"""Interpret mode: buffer views (T.view, T.Tensor(..., buf.data)) and T.im2col convolution."""

import numpy as np
import pytest

import jtile.language as T
from jtile.errors import JtileError

from interpret_helpers import assert_close, random, run


def conv_reference(data, weight, stride, pad, dilation):
    """NHWC x (KH, KW, C, F) -> (N, OH, OW, F), in float64."""
    n, h, w, c = data.shape
    kh, kw, _, f = weight.shape
    oh = (h + 2 * pad - dilation * (kh - 1) - 1) // stride + 1
    ow = (w + 2 * pad - dilation * (kw - 1) - 1) // stride + 1
    padded = np.zeros((n, h + 2 * pad, w + 2 * pad, c))
    padded[:, pad:pad + h, pad:pad + w] = data
    out = np.zeros((n, oh, ow, f))
    for i in range(kh):
        for j in range(kw):
            patch = padded[:, i * dilation:i * dilation + stride * oh:stride,
                           j * dilation:j * dilation + stride * ow:stride]
            out += patch @ weight[i, j].astype(np.float64)
    return out


def make_conv(N, C, H, W, F, K, S, D, P, block_M=32, block_N=32, block_K=32):
    OH = (H + 2 * P - D * (K - 1) - 1) // S + 1
    OW = (W + 2 * P - D * (K - 1) - 1) // S + 1

    def conv(data, weight, out):
        with T.Kernel(T.ceildiv(F, block_N), T.ceildiv(N * OH * OW, block_M),
                      threads=128) as (bx, by):
            data_shared = T.alloc_shared((block_M, block_K), "float16")
            weight_shared = T.alloc_shared((block_K, block_N), "float16")
            acc = T.alloc_fragment((block_M, block_N), "float32")
            weight_flat = T.Tensor((K * K * C, F), "float16", weight.data)
            out_flat = T.Tensor((N * OH * OW, F), "float16", out.data)
            T.clear(acc)
            for k in T.Pipelined(T.ceildiv(K * K * C, block_K), num_stages=2):
                T.im2col(data, data_shared, by, k, K, S, D, P)
                T.copy(weight_flat[k * block_K, bx * block_N], weight_shared)
                T.gemm(data_shared, weight_shared, acc)
            T.copy(acc, out_flat[by * block_M, bx * block_N])

    return conv, (N, OH, OW, F)


@pytest.mark.parametrize("N,C,H,W,F,K,S,D,P", [
    (1, 32, 8, 8, 32, 3, 1, 1, 1),
    (2, 16, 9, 7, 48, 3, 2, 1, 1),     # ragged tiles, stride 2
    (1, 8, 10, 10, 32, 3, 1, 2, 2),    # dilation 2
])
def test_im2col_convolution_matches_numpy(N, C, H, W, F, K, S, D, P):
    conv, out_shape = make_conv(N, C, H, W, F, K, S, D, P)
    rng = np.random.default_rng(10)
    data = random(rng, (N, H, W, C), "float16")
    weight = random(rng, (K, K, C, F), "float16")
    (out,) = run(conv, [data, weight], [(out_shape, "float16")])
    assert_close(out, conv_reference(data, weight, S, P, D), "float16")


def test_view_changes_dtype_and_shape_of_global_and_shared():
    def kernel(X, O, P):
        with T.Kernel(1, threads=64):
            words = T.view(X, (16,), "int32")          # 64 uint8 bytes as 16 words
            staged = T.alloc_shared((64,), "uint8")
            T.copy(X, staged)
            grid = T.reshape(staged, (8, 8))
            for i in T.Parallel(16):
                O[i] = words[i] + 1
            for i, j in T.Parallel(8, 8):
                P[j, i] = grid[i, j]

    x = np.random.default_rng(11).integers(0, 256, (64,)).astype(np.uint8)
    out, p = run(kernel, [x], [((16,), "int32"), ((8, 8), "uint8")])
    np.testing.assert_array_equal(out, x.view(np.int32) + 1)
    np.testing.assert_array_equal(p, x.reshape(8, 8).T)


def test_store_through_a_view_writes_the_output():
    def kernel(X, O):
        with T.Kernel(4, threads=32) as bx:
            flat = T.Tensor((4 * 8,), "float32", O.data)
            for i in T.Parallel(8):
                flat[bx * 8 + i] = X[bx, i] * 3.0

    x = random(np.random.default_rng(12), (4, 8), "float32")
    (out,) = run(kernel, [x], [((2, 16), "float32")])
    assert_close(out, (3 * x).reshape(2, 16), "float32")


@pytest.mark.parametrize("make,match", [
    (lambda X, f: T.view(X, (3,), "float32"), "a view must cover the same bytes"),
    (lambda X, f: T.view(f, (2,), "float64"), "a fragment is reshaped, not reinterpreted"),
    (lambda X, f: T.Tensor((8,), "float32", 5), "must be `buf.data`"),
])
def test_bad_views_are_refused(make, match):
    def kernel(X, O):
        with T.Kernel(1):
            f = T.alloc_fragment((8,), "float32")
            make(X, f)
            T.copy(X, O)

    x = random(np.random.default_rng(13), (8,), "float32")
    with pytest.raises(JtileError, match=match):
        run(kernel, [x], [((8,), "float32")])


def test_im2col_refuses_fragment_destination():
    def kernel(X, O):
        with T.Kernel(1):
            frag = T.alloc_fragment((16, 16), "float16")
            T.im2col(X, frag, 0, 0, 3, 1, 1, 1)
            T.copy(frag, O)

    x = random(np.random.default_rng(14), (1, 4, 4, 16), "float16")
    with pytest.raises(JtileError, match="T.im2col at .*must be a shared tile"):
        run(kernel, [x], [((16, 16), "float16")])
