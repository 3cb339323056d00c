"""`cuda_locations.remembered`: a search for a CUDA library or header directory is kept beside
the kernel cache, so a process whose kernels all come from the cache skips it; a changed
environment stamp or a path that is gone searches again."""

from __future__ import annotations

import os

from jtile.compiler import cuda_locations


class Search:
    def __init__(self, answer):
        self.answer, self.calls = answer, 0

    def __call__(self):
        self.calls += 1
        return self.answer


def test_a_found_path_is_read_back_without_searching(tmp_path):
    library = tmp_path / "libnvrtc.so.13"
    library.write_bytes(b"\x7fELF")
    search = Search(str(library))
    memo = tmp_path / "cache"
    assert cuda_locations.remembered("nvrtc", search, memo) == str(library)
    assert cuda_locations.remembered("nvrtc", search, memo) == str(library)
    assert search.calls == 1
    # Each name is remembered on its own.
    other = Search(str(tmp_path))
    assert cuda_locations.remembered("cuda_include", other, memo) == str(tmp_path)
    assert other.calls == 1 and cuda_locations.remembered("nvrtc", search, memo) == str(library)
    assert search.calls == 1


def test_a_changed_environment_or_a_vanished_path_searches_again(tmp_path, monkeypatch):
    library = tmp_path / "libnvrtc.so.13"
    library.write_bytes(b"\x7fELF")
    search = Search(str(library))
    memo = tmp_path / "cache"
    cuda_locations.remembered("nvrtc", search, memo)
    monkeypatch.setenv("CUDA_HOME", str(tmp_path / "toolkit"))
    cuda_locations.remembered("nvrtc", search, memo)
    assert search.calls == 2
    library.unlink()
    moved = tmp_path / "libnvrtc.so.13.1"
    moved.write_bytes(b"\x7fELF")
    search.answer = str(moved)
    assert cuda_locations.remembered("nvrtc", search, memo) == str(moved)
    assert search.calls == 3


def test_nothing_found_is_not_remembered_and_no_directory_always_searches(tmp_path):
    missing = Search(None)
    memo = tmp_path / "cache"
    assert cuda_locations.remembered("nvrtc", missing, memo) is None
    assert cuda_locations.remembered("nvrtc", missing, memo) is None
    assert missing.calls == 2
    found = Search(str(tmp_path))
    cuda_locations.remembered("nvrtc", found, None)
    cuda_locations.remembered("nvrtc", found, None)
    assert found.calls == 2


def test_an_unwritable_or_corrupt_memo_only_costs_the_search(tmp_path):
    memo = tmp_path / "cache"
    memo.mkdir()
    (memo / "cuda_locations.json").write_text("{not json")
    search = Search(str(tmp_path))
    assert cuda_locations.remembered("nvrtc", search, memo) == str(tmp_path)
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("")
    assert cuda_locations.remembered("nvrtc", search, blocked) == str(tmp_path)
    assert os.path.isfile(blocked)
