"""Generated CUDA of every example kernel against its last known good (golden) file.

A change to the code generator shows up here as a readable diff of the CUDA it produces. When
the change is intended, regenerate and review the files:

    python3 -m pytest -q tests/codegen/test_golden.py --update-golden
    git diff tests/codegen/golden

Golden files are `golden/<case>.<target>.cu`, one per case of `tests/examples/cases.py` and
target (the sm_90-only cases only for sm_90a). The jtile version in the header comment is
written as `jtile <version>`: it comes from the installed package's metadata ("dev" in an
uninstalled checkout), so it would otherwise make every file depend on the environment and
change at every release.
"""

import difflib
import os
import pathlib
import re
import subprocess
import sys

import pytest

from tests.examples.cases import CASES, NEEDS_SM90

ROOT = pathlib.Path(__file__).resolve().parents[2]
GOLDEN_DIR = pathlib.Path(__file__).resolve().parent / "golden"
TARGETS = ("sm_80", "sm_90a")
PARAMS = [(name, target) for name in sorted(CASES) for target in TARGETS
          if not (name in NEEDS_SM90 and target == "sm_80")]
MAX_DIFF_LINES = 60
_VERSION = re.compile(r"^(// target \S+, jtile )\S+$", re.MULTILINE)


def generate(name: str, target: str) -> str:
    """The CUDA source of case `name` lowered for `target`."""
    make, specs = CASES[name]
    return make(False).lower(*specs, target=target).cuda_source()


def normalize(source: str) -> str:
    """`source` with the environment-dependent jtile version of its header replaced."""
    return _VERSION.sub(r"\g<1><version>", source, count=1)


def golden_path(name: str, target: str) -> pathlib.Path:
    return GOLDEN_DIR / f"{name}.{target}.cu"


def short_diff(expected: str, actual: str, expected_name: str, actual_name: str) -> str:
    lines = list(difflib.unified_diff(expected.splitlines(keepends=True),
                                      actual.splitlines(keepends=True),
                                      expected_name, actual_name))
    if len(lines) > MAX_DIFF_LINES:
        lines = lines[:MAX_DIFF_LINES] + [f"... {len(lines) - MAX_DIFF_LINES} more diff lines\n"]
    return "".join(lines)


@pytest.mark.parametrize("name, target", PARAMS, ids=[f"{n}-{t}" for n, t in PARAMS])
def test_generated_cuda_matches_golden(name, target, request):
    source = normalize(generate(name, target))
    path = golden_path(name, target)
    if request.config.getoption("--update-golden"):
        GOLDEN_DIR.mkdir(exist_ok=True)
        path.write_text(source, encoding="utf-8")
    if not path.is_file():
        pytest.fail(f"no golden file {path.relative_to(ROOT)}; create it with "
                    "`pytest tests/codegen/test_golden.py --update-golden` and review it")
    expected = path.read_text(encoding="utf-8")
    if source != expected:
        diff = short_diff(expected, source, f"golden/{path.name}", "generated")
        pytest.fail(f"generated CUDA for {name} on {target} differs from "
                    f"{path.relative_to(ROOT)}; if the change is intended, rerun with "
                    f"--update-golden and review `git diff`:\n{diff}", pytrace=False)


def test_no_stale_golden_files():
    """Every golden file belongs to a case, so a renamed case leaves nothing behind."""
    expected = {golden_path(n, t).name for n, t in PARAMS}
    present = {p.name for p in GOLDEN_DIR.glob("*.cu")}
    assert present - expected == set(), "golden files of no case; delete them"


@pytest.mark.parametrize("name, target", PARAMS, ids=[f"{n}-{t}" for n, t in PARAMS])
def test_generated_cuda_holds_nothing_machine_specific(name, target):
    source = generate(name, target)
    for text in {str(ROOT), str(pathlib.Path.home()), os.getcwd(), "site-packages",
                 "/tmp/", "/work/", "/home/", "/root/"}:
        if len(text) > 1:  # a home or working directory of "/" says nothing
            assert text not in source, f"generated CUDA of {name} contains {text!r}"
    # The header names the source file by base name only.
    header = source.splitlines()[0]
    assert re.fullmatch(r"// jtile kernel \w+ from [^/\s]+\.py:\d+", header), header
    assert normalize(source).splitlines()[1] == f"// target {target}, jtile <version>"


@pytest.mark.parametrize("name, target", PARAMS, ids=[f"{n}-{t}" for n, t in PARAMS])
def test_generation_is_deterministic_in_process(name, target):
    first = generate(name, target)
    second = generate(name, target)
    assert first == second, short_diff(first, second, "first", "second")


_SUBPROCESS_SCRIPT = """
import sys
sys.path.insert(0, {root!r})
from tests.codegen.test_golden import generate
sys.stdout.write(generate({name!r}, {target!r}))
"""


@pytest.mark.parametrize("hash_seed", ["1", "4242"])
def test_generation_is_deterministic_across_processes(hash_seed):
    """A fresh interpreter (other hash seed, other object addresses) generates the same text."""
    name, target = "flash_d64_causal", "sm_90a"
    script = _SUBPROCESS_SCRIPT.format(root=str(ROOT), name=name, target=target)
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    here = generate(name, target)
    assert result.stdout == here, short_diff(here, result.stdout, "this process", "subprocess")
