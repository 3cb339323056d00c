"""Every example kernel lowers to CUDA and compiles to a cubin for sm_80 and sm_90a, with no
GPU; kernels that need sm_90 features are refused on sm_80 with a clear error."""

import pytest

import jtile
from tests.examples.cases import CASES, NEEDS_SM90


@pytest.mark.parametrize("target", ["sm_80", "sm_90a"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_example_compiles(name, target):
    make, specs = CASES[name]
    if name in NEEDS_SM90 and target == "sm_80":
        with pytest.raises(jtile.JtileTargetError, match="needs mbarriers.*sm_80"):
            make(False).lower(*specs, target=target).compile()
        return
    lowered = make(False).lower(*specs, target=target)
    compiled = lowered.compile()
    assert compiled.cubin[:4] == b"\x7fELF"
    assert compiled.registers > 0
    assert "jtile/device.cuh" in lowered.cuda_source()
