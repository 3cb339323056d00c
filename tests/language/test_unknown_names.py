"""A `T.<name>` jtile does not have raises a JtileError naming it (saying what to use instead for
TileLang names jtile leaves out on purpose), which is also an AttributeError so `hasattr`,
`getattr(..., default)` and imports behave as Python defines them."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
import jtile.language as T
from jtile.errors import JtileError


def test_unknown_name_is_a_jtile_error_naming_it():
    with pytest.raises(JtileError, match=r"T.no_such_op is not part of jtile's tile language"):
        T.no_such_op
    with pytest.raises(AttributeError):
        T.no_such_op                          # the same error, for Python's protocols


@pytest.mark.parametrize("name, instead", [
    ("atomic_or", "jtile has T.atomic_add"),
    ("activemask", "full-warp operations"),
    ("int4", "pack two 4-bit values"),
    ("float16x4", "vector dtypes are not element types"),
    ("float8_e8m0fnu", "uint8 exponents"),
    ("fabs", "use T.abs; jtile's element-wise math is T.exp"),
])
def test_tilelang_names_left_out_say_what_to_use(name, instead):
    with pytest.raises(JtileError, match=rf"T.{name} is TileLang's, but jtile does not "
                                         rf"implement it: .*{instead}"):
        getattr(T, name)


def test_inside_a_kernel_the_error_names_the_kernel_and_line():
    def uses_shuffle(X, O):
        with T.Kernel(1, threads=32):
            T.tvm_warp_activemask()

    f = jtile.pallas_like(uses_shuffle, out_shape=jax.ShapeDtypeStruct((4,), jnp.float32),
                          interpret=True)
    with pytest.raises(jtile.JtileTraceError, match=r"uses_shuffle \(test_unknown_names.py:\d+\)"
                                                    r": test_unknown_names.py:\d+: "
                                                    r"T.tvm_warp_activemask"):
        f(np.ones(4, np.float32))


def test_python_protocols_still_work():
    assert not hasattr(T, "no_such_op")
    assert getattr(T, "no_such_op", 7) == 7
    for dunder in ("__path__x", "__wrapped__", "__test__", "_private"):
        with pytest.raises(AttributeError) as info:
            getattr(T, dunder)
        assert not isinstance(info.value, JtileError)
    with pytest.raises(ImportError):
        exec("from jtile.language import no_such_op", {})
    # Submodules still import through the package (the import system probes with hasattr).
    assert importlib.import_module("jtile.language.dtypes").float32 == "float32"
    exec("from jtile.language import unsupported", {})
    assert T.__name__ == "jtile.language" and hasattr(T, "__path__")


def test_existing_names_are_unaffected():
    assert T.Serial is T.serial and T.Cast is not None and T.copy is not None
