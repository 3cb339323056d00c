"""Reading the SASS of a cubin with cuobjdump (and the nvdisasm it runs), from the test extras'
CUDA wheels: the instructions a kernel really runs, with no GPU. A test that needs them is
skipped, with the install command, where the tools are missing."""

from __future__ import annotations

import collections
import importlib.util
import os
import pathlib
import re
import subprocess
import tempfile

import pytest

# The instructions the tests look for: tensor-core MMAs (Hopper's HGMMA / fp8 QGMMA, Ampere's
# HMMA), TMA loads and stores, local-memory spills, wgmma fences and mbarrier waits.
MNEMONICS = re.compile(
    r"\b(HGMMA|QGMMA|HMMA|UTMALDG|UTMASTG|LDL|STL|WARPGROUP\.ARRIVE|SYNCS\.PHASECHK)\b")


def cuda_bin() -> pathlib.Path:
    """The wheels' bin directory holding cuobjdump and nvdisasm (the test is skipped without)."""
    spec = importlib.util.find_spec("nvidia")
    for root in (spec.submodule_search_locations or []) if spec else []:
        folder = pathlib.Path(root) / "cu13" / "bin"
        if (folder / "cuobjdump").is_file() and (folder / "nvdisasm").is_file():
            return folder
    pytest.skip("cuobjdump / nvdisasm are not installed (pip install -e '.[test]' brings them)")


def sass_counts(cubin: bytes) -> collections.Counter:
    """How many of each of `MNEMONICS` the cubin's SASS holds."""
    folder = cuda_bin()
    env = dict(os.environ, PATH=f"{folder}{os.pathsep}{os.environ.get('PATH', '')}")
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "kernel.cubin"
        path.write_bytes(cubin)
        sass = subprocess.run([str(folder / "cuobjdump"), "-sass", str(path)],
                              capture_output=True, text=True, check=True, env=env).stdout
    return collections.Counter(MNEMONICS.findall(sass))
