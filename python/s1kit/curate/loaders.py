"""Load a question pool from JSONL, JSON, Parquet, Arrow (a ``datasets.save_to_disk`` folder) or the
Hugging Face hub, mapped to the curation schema.

Every input row gets a global index ``row`` in input order (files in the order given, folders in sorted
order). A line that is not valid JSON, or not a JSON object, is still a row: it becomes a
:class:`LoadIssue` that the manifest reports, never a crash and never a silent drop. Blank lines are not
rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from s1kit.curate.schema import FieldMap, Row, infer_field_map, to_row
from s1kit.errors import DataError

SUFFIXES = (".jsonl", ".json", ".parquet", ".arrow")
HF_PREFIX = "hf:"


@dataclass(frozen=True)
class LoadIssue:
    """An input row that could not be read as a record."""

    row: int
    file: str
    line: int
    reason: str


@dataclass
class Pool:
    """Rows in schema form, unreadable rows, and the field map used for each file."""

    rows: list[Row] = field(default_factory=list)
    issues: list[LoadIssue] = field(default_factory=list)
    field_maps: dict[str, FieldMap] = field(default_factory=dict)

    @property
    def num_input_rows(self) -> int:
        return len(self.rows) + len(self.issues)


# A record, or the reason the line is not one.
Record = tuple[int, "dict[str, Any] | str"]


def _jsonl_records(path: Path) -> Iterator[Record]:
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield lineno, f"not UTF-8 text: {e}"
                continue
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                yield lineno, f"malformed JSON: {e.msg} at column {e.colno}"
                continue
            if not isinstance(obj, dict):
                yield lineno, f"a JSON {type(obj).__name__}, not an object: each line must be one record"
                continue
            yield lineno, obj


def _json_records(path: Path) -> Iterator[Record]:
    raw = path.read_bytes()
    if not raw.lstrip().startswith(b"["):
        yield from _jsonl_records(path)  # a .json file holding JSON Lines: bad lines become issues
        return
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise DataError(
            f"{path}: line {line} column {col}: byte 0x{raw[e.start]:02x} is not UTF-8 ({e.reason}); "
            "a JSON array file must be UTF-8 throughout: re-save it as UTF-8, or write it as JSON Lines "
            "(.jsonl), where an undecodable line is reported and skipped"
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(
            f"{path}: line {e.lineno} column {e.colno}: malformed JSON array ({e.msg}); fix the file"
        ) from None
    for i, obj in enumerate(data, start=1):
        yield i, obj if isinstance(obj, dict) else f"array element is a {type(obj).__name__}, not an object"


def _table_records(table: Any) -> Iterator[Record]:
    yield from enumerate(table.to_pylist(), start=1)


def _parquet_records(path: Path) -> Iterator[Record]:
    import pyarrow.parquet as pq

    yield from _table_records(pq.read_table(path))


def _arrow_records(path: Path) -> Iterator[Record]:
    import pyarrow as pa

    with pa.memory_map(str(path)) as source:
        try:
            table = pa.ipc.open_stream(source).read_all()
        except pa.ArrowInvalid:
            table = pa.ipc.open_file(source).read_all()
    yield from _table_records(table)


def _hub_records(spec: str) -> Iterator[Record]:
    name, _, split = spec[len(HF_PREFIX) :].partition(":")
    try:
        import datasets
    except ImportError as e:
        raise DataError(
            f"{spec}: loading from the Hugging Face hub needs the `datasets` package "
            "(pip install datasets), or download the dataset and pass its Parquet/Arrow files"
        ) from e
    ds = datasets.load_dataset(name, split=split or "train")
    for i, obj in enumerate(ds, start=1):
        yield i, dict(obj)


def expand_inputs(specs: Sequence[str | Path]) -> list[str]:
    """Input files in load order: files as given, folders expanded to their data files, sorted."""
    out: list[str] = []
    for spec in specs:
        s = str(spec)
        if s.startswith(HF_PREFIX):
            out.append(s)
            continue
        p = Path(s)
        if p.is_dir():
            found = sorted(str(f) for f in p.rglob("*") if f.suffix in SUFFIXES and f.is_file())
            if not found:
                raise DataError(f"{p}: folder holds no {'/'.join(SUFFIXES)} files")
            out.extend(found)
        elif p.is_file():
            if p.suffix not in SUFFIXES:
                raise DataError(f"{p}: unsupported file type; use one of {', '.join(SUFFIXES)}")
            out.append(str(p))
        else:
            raise DataError(f"{p}: no such file or folder (or use hf:<dataset>[:split] for the hub)")
    return out


def read_records(spec: str) -> Iterator[Record]:
    """``(line or position, record | reason)`` for every row of one input."""
    if spec.startswith(HF_PREFIX):
        return _hub_records(spec)
    suffix = Path(spec).suffix
    readers = {
        ".jsonl": _jsonl_records,
        ".json": _json_records,
        ".parquet": _parquet_records,
        ".arrow": _arrow_records,
    }
    return readers[suffix](Path(spec))


def load_pool(specs: Sequence[str | Path], overrides: Mapping[str, str] | None = None) -> Pool:
    """Load every input into one :class:`Pool`. ``overrides`` maps a column to an input field name.

    A row's ``source`` defaults to its file's stem when the file has no source field.
    """
    pool = Pool()
    row = 0
    for spec in expand_inputs(specs):
        records = list(read_records(spec))
        keys: dict[str, None] = {}
        for _, rec in records:
            if isinstance(rec, dict):
                keys.update(dict.fromkeys(rec))
        fmap = infer_field_map(list(keys), overrides)
        pool.field_maps[spec] = fmap
        default_source = Path(spec).stem if not spec.startswith(HF_PREFIX) else spec[len(HF_PREFIX) :]
        for line, rec in records:
            if isinstance(rec, str):
                pool.issues.append(LoadIssue(row, spec, line, rec))
            else:
                r = to_row(rec, fmap, row=row, file=spec, line=line)
                if r.source is None:
                    r.source = default_source
                pool.rows.append(r)
            row += 1
    return pool


def load_texts(
    specs: Sequence[str | Path], column: str = "question"
) -> tuple[list[tuple[str, str, str]], list[LoadIssue]]:
    """``(file, id, text)`` for every readable row with a ``column`` value (evaluation sets), and an
    issue for every row that is not: unreadable lines and rows without a ``column`` value."""
    pool = load_pool(specs)
    out = []
    issues = list(pool.issues)
    for r in pool.rows:
        text = getattr(r, column)
        if text:
            out.append((r.file, r.id if r.id is not None else f"line{r.line}", text))
        else:
            issues.append(LoadIssue(r.row, r.file, r.line, f"no {column} text"))
    return out, sorted(issues, key=lambda i: i.row)
