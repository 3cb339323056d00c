"""BUILD.bazel and the CMake build describe the same library, and BUILD.bazel stays lint-clean.

No Bazel runs here, so these checks are what keeps BUILD.bazel from rotting: every file it
names exists, its extension builds from exactly CMake's sources, and buildifier accepts it.
"""

from __future__ import annotations

import glob as globlib
import pathlib
import re
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
BUILD_FILE = ROOT / "BUILD.bazel"
CMAKE_FILE = ROOT / "xla_ffi" / "CMakeLists.txt"
TEST_COMMAND = (
    "npm install --no-save --prefix .tools @bazel/buildifier && "
    "python3 -m pip install -e '.[test]' && python3 -m pytest -q -n 2"
)


def _bazel_glob(include, exclude=(), allow_empty=False, **_):
    found = set()
    for pattern in include:
        found |= {p for p in globlib.glob(pattern, root_dir=ROOT, recursive=True)
                  if (ROOT / p).is_file()}
    for pattern in exclude:
        found -= set(globlib.glob(pattern, root_dir=ROOT, recursive=True))
    return sorted(found)


def _bazel_targets() -> dict[str, dict]:
    """Evaluates BUILD.bazel as Python (Starlark BUILD files are Python syntax) with stub rules."""
    targets: dict[str, dict] = {}

    def rule(kind):
        def record(name, **kwargs):
            targets[name] = {"kind": kind, **kwargs}
        return record

    namespace = {
        "load": lambda *args, **kwargs: None,
        "package": lambda **kwargs: None,
        "glob": _bazel_glob,
        "nanobind_extension": rule("nanobind_extension"),
        "py_library": rule("py_library"),
        "cc_binary": rule("cc_binary"),
        "cc_library": rule("cc_library"),
        "cc_shared_library": rule("cc_shared_library"),
    }
    exec(compile(BUILD_FILE.read_text(), str(BUILD_FILE), "exec"), namespace)
    return targets


def _cmake_extension_sources() -> set[str]:
    text = re.sub(r"#[^\n]*", "", CMAKE_FILE.read_text())
    match = re.search(r"nanobind_add_module\(\s*_jtile_ffi\b([^)]*)\)", text)
    assert match, f"{CMAKE_FILE} has no nanobind_add_module(_jtile_ffi ...)"
    return {f"xla_ffi/{token}" for token in match.group(1).split()
            if token.endswith((".cc", ".cpp", ".h"))}


def test_every_file_named_in_build_bazel_exists():
    for name, target in _bazel_targets().items():
        for attribute in ("srcs", "hdrs", "data"):
            for label in target.get(attribute, []):
                if label.startswith((":", "@", "//")):
                    continue  # a target, not a file
                assert (ROOT / label).is_file(), f"BUILD.bazel: {name}.{attribute} names missing {label}"


def test_bazel_extension_builds_from_the_cmake_sources():
    targets = _bazel_targets()
    assert "_jtile_ffi" in targets, "BUILD.bazel has no _jtile_ffi extension target"
    assert set(targets["_jtile_ffi"]["srcs"]) == _cmake_extension_sources()


def test_py_library_ships_the_python_sources():
    srcs = set(_bazel_targets()["jtile"]["srcs"])
    assert "jtile/binding/ffi.py" in srcs


def _buildifier() -> str | None:
    for candidate in (
        shutil.which("buildifier"),
        ROOT / "node_modules" / ".bin" / "buildifier",
        ROOT / ".tools" / "node_modules" / ".bin" / "buildifier",
    ):
        if candidate and pathlib.Path(candidate).is_file():
            return str(candidate)
    return None


def test_build_bazel_is_buildifier_clean():
    buildifier = _buildifier()
    if buildifier is None:
        pytest.fail(
            "buildifier was not found on PATH nor under ./node_modules/.bin or "
            f"./.tools/node_modules/.bin; run the README's test command: {TEST_COMMAND}"
        )
    result = subprocess.run(
        [buildifier, "--mode=check", "--lint=warn", str(BUILD_FILE)],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert result.returncode == 0, f"buildifier:\n{result.stdout}{result.stderr}"
