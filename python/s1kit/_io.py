"""Atomic file output: a file that a rerun or a later stage reads is either the old one or the new one.

Every writer here writes into a temporary file in the destination's folder (same file system), flushes
and fsyncs it, then ``os.replace``-s it over the destination and fsyncs the folder. A kill at any moment
leaves the destination untouched (the old content, or absent) or complete; at worst a stray
``.<name>.*.tmp`` file stays behind, which no reader looks at. A stage that writes several files
records its completion with one more file written last (see :func:`write_marker`), so a reader can
tell a complete set from one interrupted between its files.

Test hook: ``S1KIT_KILL_AT=<name>`` makes the process kill itself with SIGKILL at the point of that
name: a file name (e.g. ``selected.parquet``) right before that file is renamed into place, or a
named point a stage declares with :func:`kill_point` (e.g. ``curate.commit``). Fault tests use it to
interrupt a real run at an exact moment. Unset, it costs one environment lookup per point.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

KILL_ENV = "S1KIT_KILL_AT"


def _file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _file_mode()


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def kill_point(name: str) -> None:
    """Test hook: SIGKILL this process here when ``$S1KIT_KILL_AT`` equals ``name``."""
    if os.environ.get(KILL_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path to write ``path``'s new content to (by any library); renamed over ``path``
    when the block ends without an exception, deleted otherwise."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, _FILE_MODE)  # mkstemp makes 0600; outputs get the usual umask-derived mode
        yield tmp
        with tmp.open("rb+") as fh:
            os.fsync(fh.fileno())
        kill_point(final.name)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(final.parent)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """``open(path, mode)`` whose result appears at ``path`` only once the block ends cleanly."""
    if mode not in ("w", "wb"):
        raise ValueError(f"mode={mode!r}: atomic_open writes whole files ('w' or 'wb')")
    with atomic_path(path) as tmp:
        newline = "" if mode == "w" else None
        kwargs: dict[str, Any] = {"encoding": encoding, "newline": newline} if mode == "w" else {}
        with open(tmp, mode, **kwargs) as fh:
            yield fh
            fh.flush()


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths (Linux ``renameat2(RENAME_EXCHANGE)``); False if unsupported."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    rc = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return bool(rc == 0)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """A staging folder beside ``path`` to fill; it replaces ``path`` as a whole when the block ends
    cleanly (an atomic exchange where the kernel offers one, else two renames in a row), and is
    deleted otherwise. Readers see the old folder or the new one, never a mix of their files."""
    import shutil

    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.parent / f".{final.name}.partial"
    old = final.parent / f".{final.name}.old"
    for leftover in (staging, old):  # from an earlier interrupted call
        shutil.rmtree(leftover, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
        for f in staging.rglob("*"):
            if f.is_file():
                with f.open("rb") as fh:
                    os.fsync(fh.fileno())
        fsync_dir(staging)
        kill_point(final.name)
        if final.exists() and _exchange(staging, final):
            shutil.rmtree(staging)  # now holds the old content
        else:
            if final.exists():
                os.replace(final, old)
            os.replace(staging, final)
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    fsync_dir(final.parent)


def write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Atomically replace ``path`` with ``text``."""
    with atomic_open(path, "w", encoding=encoding) as fh:
        fh.write(text)
    return Path(path)


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_open(path, "wb", encoding=None) as fh:
        fh.write(data)
    return Path(path)


def write_json(path: str | Path, obj: Any, indent: int | None = 2) -> Path:
    return write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


def write_with(path: str | Path, writer: Callable[[Path], Any]) -> Path:
    """Atomically produce ``path`` with ``writer(tmp_path)`` (e.g. a parquet or safetensors writer)."""
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def file_digest(path: str | Path) -> dict[str, Any]:
    """``{"bytes": size, "sha256": hex}`` of a file, as a completion marker lists it."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return {"bytes": Path(path).stat().st_size, "sha256": h.hexdigest()}


def write_marker(path: str | Path, obj: dict[str, Any], files: dict[str, Path] | None = None) -> Path:
    """Record a stage's completion: written last, after every file of the stage is in place.

    ``files`` (name -> path in the marker's folder) are listed under ``"files"`` with their size and
    SHA-256, so :func:`check_marker` can prove that the files on disk are the ones this run wrote.
    """
    record = dict(obj)
    if files:
        record["files"] = {Path(p).name: file_digest(p) for p in files.values()}
    return write_json(path, record)


def check_marker(path: str | Path) -> list[str]:
    """Problems with the completion marker at ``path`` and the files it lists ([] when consistent)."""
    marker = Path(path)
    record = read_marker(marker)
    if not isinstance(record, dict):
        return [f"{marker} is missing or unreadable: the run that wrote this folder did not finish"]
    problems = []
    for name, want in (record.get("files") or {}).items():
        f = marker.parent / name
        if not f.is_file():
            problems.append(f"{f} is missing")
        elif file_digest(f) != want:
            problems.append(f"{f} is not the file {marker.name} records (an interrupted or mixed run)")
    return problems


def read_marker(path: str | Path) -> Any | None:
    """The completion record at ``path``, or None when absent or unreadable (an incomplete stage)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


__all__ = [
    "KILL_ENV",
    "atomic_dir",
    "atomic_open",
    "atomic_path",
    "check_marker",
    "file_digest",
    "fsync_dir",
    "kill_point",
    "read_marker",
    "write_bytes",
    "write_json",
    "write_marker",
    "write_text",
    "write_with",
]
