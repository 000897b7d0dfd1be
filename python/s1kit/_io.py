"""Atomic file output: a file that a rerun or a later stage reads is either the old one or the new one.

Every writer here writes into a temporary file in the destination's folder (same file system), flushes
and fsyncs it, then ``os.replace``-s it over the destination and fsyncs the folder. A kill at any moment
leaves the destination untouched (the old content, or absent) or complete; at worst a stray
``.<name>.*.tmp`` file stays behind, which no reader looks at. A stage that writes several files
records its completion with one more file written last (see :func:`write_marker`), so a reader can
tell a complete set from one interrupted between its files.

An append-only JSON Lines log (eval's samples, the generation cache) is read back with
:func:`read_append_log`, which drops a torn final line (a kill while it was appended) and truncates it
away, so the next append starts on a clean line.

A stage whose files must change together (``s1kit curate``'s output folder, ``train``'s ``hf/``)
builds the whole new folder beside the old one and swaps it in with :func:`atomic_dir` (see there
for the exact guarantee on each platform).

Test hook: ``S1KIT_KILL_AT=<name>`` makes the process kill itself with SIGKILL at the point of that
name: a file name (e.g. ``report.md``) right before that file is renamed into place, a folder name
(e.g. ``hf``, ``hf.exchanged``) at the steps of :func:`atomic_dir`, or a named point a stage
declares with :func:`kill_point` (e.g. ``curate.commit``). Fault tests use it to
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


EXCHANGE_ENV = "S1KIT_RENAME_EXCHANGE"


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths (Linux ``renameat2(RENAME_EXCHANGE)``); False, with nothing
    changed, where the C library, kernel or file system lacks it (or ``$S1KIT_RENAME_EXCHANGE=0``)."""
    if os.environ.get(EXCHANGE_ENV) == "0":
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError, TypeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    rc = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return bool(rc == 0)


def _dir_paths(path: str | Path) -> tuple[Path, Path, Path]:
    final = Path(os.path.abspath(path))  # "." or "out/.." have a real name and parent this way
    if final.is_symlink():  # swap the folder it points to, not the link
        final = final.resolve()
    return final, final.parent / f".{final.name}.partial", final.parent / f".{final.name}.old"


def recover_dir(path: str | Path) -> None:
    """Undo what a kill inside :func:`atomic_dir` left beside ``path``: if ``path`` is missing and
    ``.<name>.old`` exists (killed between the two renames of the fallback), move it back; then delete
    ``.<name>.partial`` and ``.<name>.old``, which then hold nothing that ``path`` lacks."""
    import shutil

    final, staging, old = _dir_paths(path)
    if not final.exists() and old.is_dir():
        os.replace(old, final)
        fsync_dir(final.parent)
    for leftover in (staging, old):
        shutil.rmtree(leftover, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """A staging folder beside ``path`` to fill; it replaces ``path`` as a whole when the block ends
    cleanly, and is deleted otherwise (``path`` untouched). A symlink ``path`` swaps its target.

    The guarantee after a kill at any moment:

    - Linux (``renameat2`` with ``RENAME_EXCHANGE``: glibc 2.28+, kernel 3.15+, and a file system that
      supports it: ext4, xfs, btrfs, tmpfs, ...): one atomic exchange, so ``path`` is always exactly the
      old folder or exactly the new one.
    - Elsewhere (macOS, Windows, NFS, older systems; or ``$S1KIT_RENAME_EXCHANGE=0``): two renames,
      ``path`` -> ``.<name>.old`` then staging -> ``path``. A kill between them leaves ``path`` missing,
      with the old folder whole in ``.<name>.old`` (and the new one in ``.<name>.partial``); nothing is
      lost, and the next :func:`atomic_dir` (or :func:`recover_dir`) on ``path`` moves the old one back
      first. At every other moment ``path`` is exactly the old folder or the new one.

    Test hooks (``$S1KIT_KILL_AT``): ``<name>`` with staging complete and fsync'ed, nothing swapped;
    ``<name>.exchanged`` after the exchange, the old folder not yet deleted; ``<name>.moved`` and
    ``<name>.replaced`` after the first and the second rename of the fallback.
    """
    import shutil

    final, staging, old = _dir_paths(path)
    if final.exists() and not final.is_dir():
        raise NotADirectoryError(f"{final} is a file; it must be a folder (or absent) to be replaced whole")
    final.parent.mkdir(parents=True, exist_ok=True)
    recover_dir(final)  # an earlier call that was killed
    staging.mkdir()
    try:
        yield staging
        for f in staging.rglob("*"):
            if f.is_file() and not f.is_symlink():
                with f.open("rb") as fh:
                    os.fsync(fh.fileno())
        for d in (staging, *(p for p in staging.rglob("*") if p.is_dir() and not p.is_symlink())):
            fsync_dir(d)
        kill_point(final.name)
        if final.exists() and _exchange(staging, final):
            fsync_dir(final.parent)
            kill_point(f"{final.name}.exchanged")
            shutil.rmtree(staging)  # now holds the old content
        else:
            if final.exists():
                os.replace(final, old)
                fsync_dir(final.parent)
                kill_point(f"{final.name}.moved")
            os.replace(staging, final)
            fsync_dir(final.parent)
            kill_point(f"{final.name}.replaced")
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        recover_dir(final)  # path back to the old folder if the fallback had moved it; staging deleted
        raise
    fsync_dir(final.parent)


def carry_entries(src: Path, dst: Path, exclude: Callable[[str], bool]) -> list[str]:
    """Put every entry of folder ``src`` whose name ``exclude`` rejects into ``dst``: files as hard links
    (a copy where the file system has none), folders recursively, symlinks as symlinks. Returns the
    names carried. Used to keep what else lives in a folder that :func:`atomic_dir` replaces."""
    import shutil

    def link_or_copy(a: str, b: str) -> None:
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    carried: list[str] = []
    if not src.is_dir():
        return carried
    for entry in sorted(src.iterdir()):
        if exclude(entry.name):
            continue
        target = dst / entry.name
        if entry.is_symlink():
            os.symlink(os.readlink(entry), target)
        elif entry.is_dir():
            shutil.copytree(entry, target, symlinks=True, copy_function=link_or_copy)
        else:
            link_or_copy(str(entry), str(target))
        carried.append(entry.name)
    return carried


def read_append_log(path: str | Path, take: Callable[[Any], None], fix: str) -> None:
    """Call ``take(obj)`` for every complete JSON line of the append-only log at ``path``, in order.

    A final line without its newline, or a final line that is not valid (its JSON or ``take`` raises
    ``ValueError``, ``KeyError`` or ``TypeError``), is what a kill during an append leaves: it is
    dropped and cut from the file. Such a line anywhere before the end raises
    :class:`~s1kit.errors.DataError` naming the file and line; ``fix`` ends that message (what the user
    should do, e.g. "fix or delete the file").
    """
    from s1kit.errors import DataError

    path = Path(path)
    raw = path.read_bytes()
    good_end = pos = 0
    for line in raw.splitlines(keepends=True):
        pos += len(line)
        if not line.endswith(b"\n"):
            break
        if line.strip():
            try:
                take(json.loads(line))
            except (ValueError, KeyError, TypeError) as e:  # JSONDecodeError is a ValueError
                if pos == len(raw):
                    break
                lineno = raw[:pos].count(b"\n")
                raise DataError(f"{path}: line {lineno} is not a valid record ({e}); {fix}") from e
        good_end = pos
    if good_end < len(raw):
        with path.open("r+b") as f:
            f.truncate(good_end)


def append_log(path: str | Path, records: list[Any], kill_point_name: str = "") -> None:
    """Append ``records`` as JSON lines to the log at ``path`` (created with its folder) and fsync.
    ``kill_point_name`` names the :func:`kill_point` hit once the first line is on disk (fault tests:
    a batch half written, which :func:`read_append_log` then drops)."""
    if not records:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        for i, rec in enumerate(records):
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            if i == 0 and kill_point_name:
                f.flush()
                kill_point(kill_point_name)
        f.flush()
        os.fsync(f.fileno())


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
    "EXCHANGE_ENV",
    "KILL_ENV",
    "atomic_dir",
    "atomic_open",
    "atomic_path",
    "carry_entries",
    "check_marker",
    "file_digest",
    "fsync_dir",
    "kill_point",
    "read_marker",
    "recover_dir",
    "write_bytes",
    "write_json",
    "write_marker",
    "write_text",
    "write_with",
]
