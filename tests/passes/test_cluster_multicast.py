"""Thread-block clusters with TMA multicast: in a cluster along one grid axis, a tile every
CTA of the cluster loads (its coordinates do not use that axis's block index) is loaded once per
cluster, each CTA fetching a slice of its rows for all. Checked as generated code and tensor
maps on the CPU, and against float64 on the GPU."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
from examples import gemm
from jtile.compiler import target as target_module

S = jax.ShapeDtypeStruct


def _call(m, n, k, *, cluster, block_m=128, block_n=256, trans_b=False, dtype=jnp.float16):
    def kernel(A, B, C):
        import jtile.language as T

        M, N = C.shape
        with T.Kernel(T.ceildiv(N, block_n), T.ceildiv(M, block_m), threads=256,
                      cluster_dims=cluster) as (bx, by):
            a_tile = T.alloc_shared((block_m, 64), A.dtype)
            b_tile = T.alloc_shared((block_n, 64) if trans_b else (64, block_n), B.dtype)
            acc = T.alloc_fragment((block_m, block_n), "float32")
            T.clear(acc)
            for kk in T.Pipelined(T.ceildiv(k, 64), num_stages=4):
                T.copy(A[by * block_m, kk * 64], a_tile)
                if trans_b:
                    T.copy(B[bx * block_n, kk * 64], b_tile)
                else:
                    T.copy(B[kk * 64, bx * block_n], b_tile)
                T.gemm(a_tile, b_tile, acc, transpose_B=trans_b)
            T.copy(acc, C[by * block_m, bx * block_n])

    b_shape = (n, k) if trans_b else (k, n)
    call = jtile.pallas_like(kernel, out_shape=S((m, n), dtype), name="clustered")
    return call, (S((m, k), dtype), S(b_shape, dtype))


def test_a_cluster_along_n_multicasts_the_shared_a_tile():
    call, args = _call(1024, 2048, 512, cluster=(2, 1))
    lowered = call.lower(*args, target="sm_90a")
    source = lowered.cuda_source()
    assert source.count("jt::tma_load_2d_multicast(") == 1   # A: one 64-column panel
    assert "(int)jt_cta_rank * 64" in source                  # each CTA its 64 of 128 rows
    assert "jt::mbarrier_init(&jt_empty_bar[s], 16);" in source   # 8 warps x 2 CTAs
    assert "jt::mbarrier_arrive_cluster(&jt_empty_bar[" in source
    assert source.count("jt::cluster_sync();") == 2            # after init, before exit
    maps = {m.param: m for m in lowered._require_generated().tensor_maps}
    assert maps[0].box == (64, 64) and maps[1].box == (64, 64)  # A halved; B's own panels
    compiled = lowered.compile()
    assert compiled.cluster == (2, 1, 1) and compiled.grid == (8, 8, 1)


def test_a_cluster_along_m_multicasts_the_shared_b_tile():
    call, args = _call(1024, 1024, 512, cluster=(1, 2), trans_b=True)
    source = call.lower(*args, target="sm_90a").cuda_source()
    # B (N, K) tiles of 256 rows: each CTA loads 128 rows of the shared tile.
    assert "(int)jt_cta_rank * 128" in source
    assert source.count("_multicast(") == 1


def test_rasterisation_moves_whole_clusters():
    call, args = _call(4096, 4096, 512, cluster=(2, 1))
    source = call.lower(*args, target="sm_90a").cuda_source()
    assert "const int jt_cx = bx / 2;" in source
    # Each block keeps its place inside its cluster.
    assert "const int jt_bx = jt_major * 2 + bx % 2;" in source


@pytest.mark.gpu
@pytest.mark.parametrize("m,n,k,cluster,trans_b", [
    (1024, 2048, 320, (2, 1), False),
    (512, 1024, 200, (1, 2), True),
    (2048, 4096, 256, (2, 1), True),
    (4096, 4096, 192, (4, 1), False),
])
def test_clustered_gemm_matches_float64(m, n, k, cluster, trans_b):
    local = target_module._local_gpu()
    if local is None or local[0] != (9, 0):
        pytest.skip("needs a Hopper GPU")
    rng = np.random.default_rng(m + k)
    a = jnp.asarray(rng.standard_normal((m, k)), jnp.float16)
    b = jnp.asarray(rng.standard_normal((n, k) if trans_b else (k, n)), jnp.float16)
    call, _ = _call(m, n, k, cluster=cluster, trans_b=trans_b)
    out = np.asarray(jax.jit(call)(a, b), np.float64)
    b64 = np.asarray(b, np.float64)
    want = np.asarray(a, np.float64) @ (b64.T if trans_b else b64)
    np.testing.assert_allclose(out, want, rtol=5e-3, atol=5e-3 * np.sqrt(k))


@pytest.mark.gpu
def test_example_gemm_with_a_cluster_matches_float64():
    local = target_module._local_gpu()
    if local is None or local[0] != (9, 0):
        pytest.skip("needs a Hopper GPU")
    rng = np.random.default_rng(3)
    a = jnp.asarray(rng.standard_normal((4096, 512)), jnp.bfloat16)
    b = jnp.asarray(rng.standard_normal((512, 4096)), jnp.bfloat16)
    f = functools.partial(gemm.matmul, block_m=128, block_n=256, block_k=64, stages=4,
                          threads=256, cluster_n=2, interpret=False)
    out = np.asarray(jax.jit(f)(a, b), np.float64)
    want = np.asarray(a, np.float64) @ np.asarray(b, np.float64)
    np.testing.assert_allclose(out, want, rtol=2e-2, atol=2e-2 * np.sqrt(512))


def test_use_swizzle_with_a_cluster_spanning_two_axes_is_refused():
    import jtile.language as T

    def swizzled(A, C):
        with T.Kernel(4, 4, threads=128, cluster_dims=(2, 2)) as (bx, by):
            T.use_swizzle(2)
            t = T.alloc_fragment((16, 16), "float32")
            T.copy(A[by * 16, bx * 16], t)
            T.copy(t, C[by * 16, bx * 16])

    f32 = jnp.float32
    call = jtile.pallas_like(swizzled, out_shape=S((64, 64), f32))
    with pytest.raises(jtile.JtileError, match=r"T.use_swizzle with cluster_dims=\(2, 2, 1\).*"
                       r"x or y, not both"):
        call.lower(S((64, 64), f32), target="sm_90a")
