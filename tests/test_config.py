"""Tests for jtile.config: every JTILE_* variable, read at call time, with typed errors."""

from __future__ import annotations

import pathlib
import sys
import warnings

import pytest

from jtile import config
from jtile.errors import JtileError, JtilePerformanceWarning

_ALL = (
    "JTILE_INTERPRET",
    "JTILE_CACHE_DIR",
    "JTILE_DISABLE_CACHE",
    "JTILE_COMPILER",
    "JTILE_DEBUG",
    "JTILE_TARGET",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in _ALL:
        monkeypatch.delenv(name, raising=False)


def test_defaults():
    assert config.interpret() is False
    assert config.debug() is False
    assert config.cache_enabled() is True
    assert config.compiler() == "auto"
    assert config.target_override() is None
    assert config.cache_dir().name == "jtile"


def test_default_cache_dir_follows_platformdirs(monkeypatch, tmp_path):
    import platformdirs  # a declared dependency: its absence is an install error here

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert config.cache_dir() == pathlib.Path(platformdirs.user_cache_dir("jtile"))
    if sys.platform.startswith("linux"):
        assert config.cache_dir() == tmp_path / "jtile"


def test_without_platformdirs_the_default_cache_is_off(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "platformdirs", None)  # makes the import fail
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(JtileError, match=r"JTILE_CACHE_DIR is unset and platformdirs is not"):
        config.cache_dir()
    with pytest.warns(JtilePerformanceWarning, match="pip install platformdirs"):
        assert config.cache_enabled() is False
    assert not (tmp_path / "jtile").exists()


def test_without_platformdirs_jtile_cache_dir_still_works(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "platformdirs", None)
    monkeypatch.setenv("JTILE_CACHE_DIR", str(tmp_path / "cubins"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert config.cache_enabled() is True
    assert config.cache_dir() == tmp_path / "cubins"


@pytest.mark.parametrize("value", ["1", "true", "YES", " on "])
def test_flags_accept_true_spellings(monkeypatch, value):
    monkeypatch.setenv("JTILE_INTERPRET", value)
    monkeypatch.setenv("JTILE_DEBUG", value)
    monkeypatch.setenv("JTILE_DISABLE_CACHE", value)
    assert config.interpret() is True
    assert config.debug() is True
    assert config.cache_enabled() is False


@pytest.mark.parametrize("value", ["0", "false", "no", ""])
def test_flags_accept_false_spellings(monkeypatch, value):
    monkeypatch.setenv("JTILE_INTERPRET", value)
    monkeypatch.setenv("JTILE_DISABLE_CACHE", value)
    assert config.interpret() is False
    assert config.cache_enabled() is True


def test_bad_flag_names_variable_and_allowed_values(monkeypatch):
    monkeypatch.setenv("JTILE_INTERPRET", "maybe")
    with pytest.raises(JtileError, match=r"JTILE_INTERPRET='maybe'.*1, true, yes"):
        config.interpret()


def test_values_are_read_at_call_time(monkeypatch):
    assert config.debug() is False
    monkeypatch.setenv("JTILE_DEBUG", "1")
    assert config.debug() is True


def test_cache_dir_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("JTILE_CACHE_DIR", str(tmp_path / "cubins"))
    assert config.cache_dir() == tmp_path / "cubins"


@pytest.mark.parametrize(
    "value,expected", [("nvrtc", "nvrtc"), ("NVCC", "nvcc"), ("auto", "auto")]
)
def test_compiler_choice(monkeypatch, value, expected):
    monkeypatch.setenv("JTILE_COMPILER", value)
    assert config.compiler() == expected


def test_bad_compiler_lists_choices(monkeypatch):
    monkeypatch.setenv("JTILE_COMPILER", "clang")
    with pytest.raises(JtileError, match=r"JTILE_COMPILER='clang'.*auto, nvrtc, nvcc"):
        config.compiler()


def test_target_override(monkeypatch):
    monkeypatch.setenv("JTILE_TARGET", "sm_90a")
    assert config.target_override() == "sm_90a"


def test_describe_lists_every_variable(monkeypatch):
    monkeypatch.setenv("JTILE_DEBUG", "1")
    text = config.describe()
    for name in _ALL:
        assert name in text
    assert "JTILE_DEBUG='1'" in text


@pytest.mark.parametrize("value, expected", [(None, None), ("1", 1), ("2", 2)])
def test_overlap_copies(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv("JTILE_OVERLAP_COPIES", raising=False)
    else:
        monkeypatch.setenv("JTILE_OVERLAP_COPIES", value)
    assert config.overlap_copies() == expected


def test_bad_overlap_copies_names_the_variable(monkeypatch):
    monkeypatch.setenv("JTILE_OVERLAP_COPIES", "3")
    with pytest.raises(JtileError, match=r"JTILE_OVERLAP_COPIES='3' is not a copy count: "
                       r"use 1 or 2"):
        config.overlap_copies()
