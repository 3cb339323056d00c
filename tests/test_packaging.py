"""BUILD.bazel and the CMake build describe the same library, and the dependencies stay pinned.

No Bazel runs here, so these checks are what keeps BUILD.bazel from rotting: every file it
names exists, its extension builds from exactly CMake's sources, and buildifier accepts it.
pyproject.toml keeps the CUDA wheels on CUDA 13 and jax below an untested release, and the
vendored XLA FFI headers stay no newer than the jaxlib they run under.
"""

from __future__ import annotations

import glob as globlib
import importlib.metadata
import pathlib
import re
import shutil
import subprocess
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

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


PYPROJECT = ROOT / "pyproject.toml"
VENDORED_FFI_API = ROOT / "xla_ffi" / "third_party" / "xla" / "ffi" / "api"
CUDA_13_PINNED = ("cuda-bindings", "nvidia-cuda-nvrtc", "nvidia-cuda-runtime")


def _pyproject() -> dict:
    return tomllib.loads(PYPROJECT.read_text())


def _ffi_api_version(c_api_header: pathlib.Path) -> tuple[int, int]:
    text = c_api_header.read_text()
    major = re.search(r"#define\s+XLA_FFI_API_MAJOR\s+(\d+)", text)
    minor = re.search(r"#define\s+XLA_FFI_API_MINOR\s+(\d+)", text)
    assert major and minor, f"{c_api_header} defines no XLA_FFI_API_MAJOR/MINOR"
    return int(major.group(1)), int(minor.group(1))


def test_build_does_not_pull_jaxlib():
    requires = [Requirement(r) for r in _pyproject()["build-system"]["requires"]]
    assert not {r.name for r in requires} & {"jax", "jaxlib"}
    assert "find_spec('jaxlib')" not in CMAKE_FILE.read_text()


def test_vendored_ffi_headers_are_complete_and_licensed():
    for name in ("api.h", "c_api.h", "ffi.h"):
        text = (VENDORED_FFI_API / name).read_text()
        assert "Copyright" in text and "The OpenXLA Authors" in text
        assert "Licensed under the Apache License, Version 2.0" in text
        # Header-only and self-contained: the standard library and each other, nothing else.
        for included in re.findall(r'#include\s+"([^"]+)"', text):
            assert included.startswith("xla/ffi/api/"), f"{name} includes {included}"
            assert (VENDORED_FFI_API.parents[2] / included).is_file()
    assert "Apache License" in (VENDORED_FFI_API.parents[1] / "LICENSE").read_text()


def test_vendored_ffi_headers_are_not_newer_than_the_installed_jaxlib():
    # XLA accepts handlers built against an older FFI API version, never a newer one.
    import jax.ffi

    installed = pathlib.Path(jax.ffi.include_dir()) / "xla" / "ffi" / "api" / "c_api.h"
    vendored_major, vendored_minor = _ffi_api_version(VENDORED_FFI_API / "c_api.h")
    installed_major, installed_minor = _ffi_api_version(installed)
    assert vendored_major == installed_major
    assert vendored_minor <= installed_minor


def test_cuda_packages_are_pinned_to_cuda_13():
    project = _pyproject()
    dependencies = {Requirement(r).name: Requirement(r) for r in project["project"]["dependencies"]}
    build = {Requirement(r).name: Requirement(r) for r in project["build-system"]["requires"]}
    for name in CUDA_13_PINNED:
        assert dependencies[name].specifier == SpecifierSet(">=13,<14"), name
    assert build["nvidia-cuda-runtime"].specifier == SpecifierSet(">=13,<14")
    assert "cuda-pathfinder" in dependencies
    for version in ("12.9.0", "14.0"):
        assert not dependencies["cuda-bindings"].specifier.contains(version)


def test_jax_has_an_upper_bound():
    jax = next(Requirement(r) for r in _pyproject()["project"]["dependencies"]
               if Requirement(r).name == "jax")
    assert any(s.operator in ("<", "<=") for s in jax.specifier)
    assert not jax.specifier.contains("99.0")


def test_installed_packages_satisfy_the_pins():
    checked = []
    for text in _pyproject()["project"]["dependencies"]:
        requirement = Requirement(text)
        try:
            installed = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            continue  # an install made with --no-deps may lack some; CI installs them all
        assert requirement.specifier.contains(installed, prereleases=True), \
            f"{requirement.name} {installed} is outside pyproject.toml's {requirement}"
        checked.append(requirement.name)
    assert "jax" in checked
