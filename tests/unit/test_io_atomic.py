"""``s1kit._io``: a destination is the old file or the new one, never a partial one."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from s1kit import _io


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    p = tmp_path / "a.json"
    _io.write_text(p, "old")
    with pytest.raises(RuntimeError), _io.atomic_open(p) as fh:
        fh.write("new, half")
        raise RuntimeError("crash while writing")
    assert p.read_text() == "old"
    assert [x.name for x in tmp_path.iterdir()] == ["a.json"]
    _io.write_text(p, "new")
    assert p.read_text() == "new"
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~mask  # not mkstemp's 0600


def test_atomic_dir_replaces_a_folder_whole(tmp_path: Path) -> None:
    out = tmp_path / "hf"
    with _io.atomic_dir(out) as d:
        (d / "one").write_text("1")
        (d / "two").write_text("2")
    with pytest.raises(RuntimeError), _io.atomic_dir(out) as d:
        (d / "one").write_text("changed")
        raise RuntimeError("crash while writing")
    assert {p.name: p.read_text() for p in out.iterdir()} == {"one": "1", "two": "2"}
    with _io.atomic_dir(out) as d:
        (d / "three").write_text("3")
    assert [p.name for p in out.iterdir()] == ["three"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]


def test_atomic_dir_fallback_and_recovery_lose_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    with _io.atomic_dir(out) as d:
        (d / "one").write_text("1")
    monkeypatch.setenv(_io.EXCHANGE_ENV, "0")  # the two-rename path of systems without an exchange
    with _io.atomic_dir(out) as d:
        (d / "two").write_text("2")
    assert [p.name for p in out.iterdir()] == ["two"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    # What a kill between the two renames leaves: out missing, old aside, new staged.
    (tmp_path / ".out.partial").mkdir()
    (tmp_path / ".out.partial" / "three").write_text("3")
    out.rename(tmp_path / ".out.old")
    _io.recover_dir(out)
    assert [p.name for p in out.iterdir()] == ["two"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    with pytest.raises(NotADirectoryError, match="must be a folder"), _io.atomic_dir(out / "two"):
        pass


def test_atomic_dir_of_a_symlink_replaces_its_target(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to("real")
    with _io.atomic_dir(tmp_path / "link") as d:
        (d / "f").write_text("x")
    assert (tmp_path / "link").is_symlink() and (tmp_path / "real" / "f").read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]


def test_carry_entries_links_files_and_copies_folders(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "sub").mkdir(parents=True)
    dst.mkdir()
    (src / "keep.npz").write_bytes(b"cache")
    (src / "sub" / "x").write_text("x")
    (src / "drop.jsonl").write_text("old output")
    (src / "ln").symlink_to("keep.npz")
    carried = _io.carry_entries(src, dst, lambda name: name.endswith(".jsonl"))
    assert carried == ["keep.npz", "ln", "sub"]
    assert (dst / "keep.npz").stat().st_ino == (src / "keep.npz").stat().st_ino  # a hard link
    assert (dst / "sub" / "x").read_text() == "x" and os.readlink(dst / "ln") == "keep.npz"
    assert not (dst / "drop.jsonl").exists()


def test_marker_lists_files_and_detects_changes(tmp_path: Path) -> None:
    f = _io.write_text(tmp_path / "data.jsonl", "x\n")
    _io.write_marker(tmp_path / "done.json", {"n": 1}, {"data": f})
    assert _io.check_marker(tmp_path / "done.json") == []
    f.write_text("y\n")
    assert "is not the file done.json records" in _io.check_marker(tmp_path / "done.json")[0]
    assert "did not finish" in _io.check_marker(tmp_path / "missing.json")[0]


def test_append_log_drops_a_torn_tail_and_refuses_a_bad_line_before_it(tmp_path: Path) -> None:
    from s1kit.errors import DataError

    log = tmp_path / "log.jsonl"
    log.write_bytes(b'{"key": "a"}\n\n{"key": "b"}\n{"key": "c", "tor')
    got: list[str] = []
    _io.read_append_log(log, lambda rec: got.append(rec["key"]), "delete it")
    assert got == ["a", "b"]
    assert log.read_bytes() == b'{"key": "a"}\n\n{"key": "b"}\n'  # the torn line is cut away
    log.write_bytes(b'{"key": "a"}\n{"nokey": 1}\n')  # a complete but invalid final line: torn too
    got.clear()
    _io.read_append_log(log, lambda rec: got.append(rec["key"]), "delete it")
    assert got == ["a"] and log.read_bytes() == b'{"key": "a"}\n'
    log.write_bytes(b'{"key": "a"}\nnot json\n{"key": "b"}\n')
    with pytest.raises(DataError, match=r"log\.jsonl: line 2 is not a valid record .*; delete it"):
        _io.read_append_log(log, lambda rec: got.append(rec["key"]), "delete it")
