"""On the GPU: fragments named outside T.Parallel (every thread holds all of them) and
fragments read inside it through bit-exact index maps (the 4-bit unpack of dequantize GEMMs,
packing, windows, bit permutations): compiled agrees with numpy and with interpret mode."""

import jax
import pytest

from tests.passes.fragment_replication_cases import (CASES, check_outputs, launcher,
                                                     random_inputs)

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("name", sorted(CASES))
def test_compiled_matches_numpy(name):
    args = random_inputs(name, seed=len(name) + 1)
    check_outputs(name, jax.jit(launcher(name, False))(*args), args)
    check_outputs(name, launcher(name, True)(*args), args)
