"""T.no_set_max_nreg() (and its alias T.disable_warp_group_reg_alloc()) keeps a warp-specialised
sm_90a kernel from moving registers between its warpgroups with setmaxnreg; results stay the
same."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
import jtile.language as T

S = jax.ShapeDtypeStruct


def matmul(A, B, C, *, hint):
    (m, k), (_, n) = A.shape, B.shape
    with T.Kernel(n // 128, m // 128, threads=256) as (bx, by):
        if hint is not None:
            hint()
        a = T.alloc_shared((128, 64), "float16")
        b = T.alloc_shared((64, 128), "float16")
        acc = T.alloc_fragment((128, 128), "float32")
        T.clear(acc)
        for ko in T.Pipelined(k // 64, num_stages=3):
            T.copy(A[by * 128, ko * 64], a)
            T.copy(B[ko * 64, bx * 128], b)
            T.gemm(a, b, acc)
        T.copy(acc, C[by * 128, bx * 128])


def _call(hint, **launch):
    return jtile.pallas_like(functools.partial(matmul, hint=hint), name="matmul",
                             out_shape=S((256, 256), jnp.float32), **launch)


ARGS = (S((256, 128), jnp.float16), S((128, 256), jnp.float16))


@pytest.mark.parametrize("hint", [T.no_set_max_nreg, T.disable_warp_group_reg_alloc])
def test_no_set_max_nreg_keeps_the_warp_roles_without_setmaxnreg(hint):
    default = _call(None).lower(*ARGS, target="sm_90a").cuda_source()
    assert "jt::setmaxnreg_dec<" in default and "jt::setmaxnreg_inc<" in default
    lowered = _call(hint).lower(*ARGS, target="sm_90a")
    source = lowered.cuda_source()
    assert "jt::tma_load_2d" in source and "if (tx >= 256)" in source   # still specialised
    assert "setmaxnreg" not in source
    assert lowered.compile().block == (384, 1, 1)


def test_no_set_max_nreg_changes_no_values():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((256, 128)).astype(np.float16)
    b = rng.standard_normal((128, 256)).astype(np.float16)
    c = np.asarray(_call(T.no_set_max_nreg, interpret=True)(a, b))
    np.testing.assert_allclose(c, a.astype(np.float32) @ b.astype(np.float32), rtol=1e-4,
                               atol=1e-3)


def test_no_set_max_nreg_belongs_inside_the_kernel():
    def outside(A, C):
        T.no_set_max_nreg()
        with T.Kernel(1, threads=128):
            T.copy(A, C)

    f = jtile.pallas_like(outside, out_shape=S((128,), jnp.float32), interpret=True)
    with pytest.raises(jtile.JtileError, match=r"T.no_set_max_nreg belongs inside"):
        f(np.zeros(128, np.float32))


def test_producer_registers_come_from_jtile_producer_registers(monkeypatch):
    """JTILE_PRODUCER_REGISTERS=24 gives two consumer warpgroups 240 registers each (the block
    starts with 168 per thread: 128 x 24 + 256 x 240 is all of it); bad values are refused."""
    import jtile.config
    from jtile.passes.specialize_warps import _consumer_registers

    monkeypatch.setenv("JTILE_PRODUCER_REGISTERS", "24")
    assert jtile.config.producer_registers() == 24
    assert _consumer_registers(256, 24) == 240 and _consumer_registers(256, 40) == 232
    for consumers, producer in ((256, 24), (256, 40), (384, 40), (256, 64), (512, 24)):
        launched = 65536 // (consumers + 128) // 8 * 8
        assert 128 * producer + consumers * _consumer_registers(consumers, producer) <= \
            (consumers + 128) * launched
    for bad in ("20", "41", "300", "many"):
        monkeypatch.setenv("JTILE_PRODUCER_REGISTERS", bad)
        with pytest.raises(jtile.JtileError, match="JTILE_PRODUCER_REGISTERS"):
            jtile.config.producer_registers()


def test_tilelang_register_hints_set_the_warp_roles_registers():
    """T.annotate_producer_reg_dealloc / T.annotate_consumer_reg_alloc: the counts jtile's own
    warp specialisation gives the producer and the consumers."""
    def hints():
        T.annotate_producer_reg_dealloc(40)
        T.annotate_consumer_reg_alloc(224)

    source = _call(hints).lower(*ARGS, target="sm_90a").cuda_source()
    assert "jt::setmaxnreg_dec<40>();" in source and "jt::setmaxnreg_inc<224>();" in source
    default = _call(None).lower(*ARGS, target="sm_90a").cuda_source()
    assert "jt::setmaxnreg_dec<24>();" in default and "jt::setmaxnreg_inc<240>();" in default


def test_a_consumer_register_hint_the_register_file_cannot_meet_is_refused():
    def hints():
        T.annotate_producer_reg_dealloc(120)
        T.annotate_consumer_reg_alloc(240)

    with pytest.raises(jtile.JtileError, match=r"T.annotate_consumer_reg_alloc\(240\): with 2 "
                                               r"consumer warpgroups and the producer warpgroup "
                                               r"keeping 120 .* leaves the consumers 192"):
        _call(hints).lower(*ARGS, target="sm_90a").cuda_source()


@pytest.mark.parametrize("count", [20, 41, 264, True])
def test_register_hints_take_counts_setmaxnreg_can(count):
    with pytest.raises(jtile.JtileError, match=r"multiple of 8 from 24 to 256"):
        _call(lambda: T.annotate_consumer_reg_alloc(count)).lower(*ARGS, target="sm_90a")


@pytest.mark.gpu
def test_register_hints_change_no_values_gpu():
    def hints():
        T.annotate_producer_reg_dealloc(40)
        T.annotate_consumer_reg_alloc(224)

    rng = np.random.default_rng(1)
    a = rng.standard_normal((256, 128)).astype(np.float16)
    b = rng.standard_normal((128, 256)).astype(np.float16)
    c = np.asarray(_call(hints)(a, b))
    np.testing.assert_allclose(c, a.astype(np.float32) @ b.astype(np.float32), rtol=1e-4,
                               atol=1e-3)
