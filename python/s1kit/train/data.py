"""s1K-style rows -> chat-template text -> token ids with targets on the assistant turn only.

A row has a question, a thinking trajectory (a string or a list of strings, joined with newlines) and an
answer. The assistant turn is written the s1 way, ``<|im_start|>think\\n{thinking}\\n<|im_start|>answer\\n
{answer}``, or with ``<think>...</think>`` tags, and rendered with the tokenizer's own chat template. The
assistant span is the rendered text after the generation prompt (the template's end-of-turn marker
included); only tokens that start inside it are targets.

Legend: ``T`` tokens of one example.
"""

from __future__ import annotations

import glob
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from s1kit import _io
from s1kit.errors import ConfigError, DataError
from s1kit.train.config import TrainConfig

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Example:
    """One tokenized sample. ``targets_T[t]`` is the token to predict at position t, or -100."""

    input_ids_T: list[int]
    targets_T: list[int]
    prompt_tokens: int

    @property
    def num_targets(self) -> int:
        return sum(1 for t in self.targets_T if t != IGNORE_INDEX)

    def __len__(self) -> int:
        return len(self.input_ids_T)


@dataclass
class DataStats:
    rows: int = 0
    kept: int = 0
    truncated: int = 0
    dropped: int = 0
    tokens: int = 0
    target_tokens: int = 0
    longest: int = 0
    notes: list[str] = field(default_factory=list)


def load_rows(source: str, split: str = "train") -> list[dict[str, Any]]:
    """Rows from a JSONL/JSON/Parquet file, a folder of them (or ``save_to_disk`` arrow files), or a hub
    dataset name (needs the ``datasets`` package and its cache/network)."""
    path = Path(source)
    if path.is_file():
        return _read_file(path)
    if path.is_dir():
        files = sorted(
            f
            for pattern in ("*.parquet", "*.jsonl", "*.json", "*.arrow")
            for f in glob.glob(str(path / "**" / pattern), recursive=True)
            if not f.endswith(("dataset_info.json", "state.json"))
        )
        split_files = [f for f in files if split in Path(f).name or split in Path(f).parent.name]
        chosen = split_files or files
        if not chosen:
            raise DataError(f"data folder {source} holds no .parquet, .jsonl, .json or .arrow files")
        rows: list[dict[str, Any]] = []
        for f in chosen:
            rows.extend(_read_file(Path(f)))
        return rows
    if source.startswith((".", "/", "~")) or path.suffix.lower() in (".jsonl", ".json", ".parquet", ".arrow"):
        raise DataError(f"data {source}: no such file or folder; pass --data <jsonl|parquet|folder|hub name>")
    try:
        import datasets
    except ImportError as exc:
        raise DataError(
            f"data {source!r} is neither a file nor a folder; to load a hub dataset install `datasets`, "
            "or download it and pass the parquet/jsonl path"
        ) from exc
    ds = datasets.load_dataset(source, split=split)
    return [dict(r) for r in ds]


def check_complete(path: Path) -> None:
    """Refuse a data file that a completion record beside it (``summary.json``, as ``s1kit curate``
    writes) does not vouch for: one from an interrupted or mixed run."""
    marker = path.parent / "summary.json"
    record = _io.read_marker(marker)
    listed = isinstance(record, dict) and path.name in (record.get("files") or {})
    interrupted = record is None and (path.parent / "manifest.jsonl").is_file()
    if listed or interrupted:
        problems = _io.check_marker(marker)
        if problems:
            raise DataError(f"data {path}: {'; '.join(problems)}; rerun the stage that wrote it")


def _read_file(path: Path) -> list[dict[str, Any]]:
    check_complete(path)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        rows: list[dict[str, Any]] = []
        with path.open("rb") as fh:
            for lineno, raw in enumerate(fh, start=1):
                try:
                    row = json.loads(raw.decode("utf-8")) if raw.strip() else None
                except (UnicodeDecodeError, json.JSONDecodeError) as e:
                    raise DataError(
                        f"{path}: line {lineno}: not a JSON row ({e}); fix or remove the line"
                    ) from None
                if row is None:
                    continue
                if not isinstance(row, dict):
                    raise DataError(f"{path}: line {lineno}: a JSON {type(row).__name__}, not a row object")
                rows.append(row)
        return rows
    if suffix == ".json":
        obj = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(obj, list):
            return obj
        raise DataError(f"{path}: a .json data file must hold a list of row objects")
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return list(pq.read_table(path).to_pylist())
    if suffix == ".arrow":
        import pyarrow as pa

        with pa.memory_map(str(path)) as src:
            try:
                table = pa.ipc.open_stream(src).read_all()
            except pa.ArrowInvalid:
                table = pa.ipc.open_file(src).read_all()
        return list(table.to_pylist())
    raise DataError(f"{path}: unsupported data file type {suffix!r}; use .jsonl, .json, .parquet or .arrow")


def _needed(cfg: TrainConfig) -> dict[str, str]:
    return {
        "question_field": cfg.question_field,
        "thinking_field": cfg.thinking_field,
        "answer_field": cfg.answer_field,
    }


def check_columns(rows: Sequence[dict[str, Any]], cfg: TrainConfig) -> None:
    """Every row must have the three columns (a JSON null value is allowed here and dropped later)."""
    if not rows:
        raise DataError(f"data {cfg.data!r} has no rows")
    need = _needed(cfg)
    for i, row in enumerate(rows):
        have = set(row)
        missing = {k: v for k, v in need.items() if v not in have}
        if not missing:
            continue
        fixes = ", ".join(f"--{k.replace('_', '-')} <column>" for k in missing)
        where = "" if i == 0 else f"row {i} (counting from 0) of "
        raise DataError(
            f"{where}data {cfg.data!r} lacks column(s) {sorted(missing.values())}; it has {sorted(have)}. "
            + (f"Name the right columns with {fixes}" if i == 0 else "Fix or remove that row")
        )


def null_fields(row: dict[str, Any], cfg: TrainConfig) -> list[str]:
    """The needed columns whose value is JSON null (such a row is dropped, never trained on "None")."""
    return [v for v in _needed(cfg).values() if row.get(v) is None]


def assistant_content(thinking: Any, answer: Any, cfg: TrainConfig) -> str:
    if isinstance(thinking, (list, tuple)):
        thinking = "\n".join(str(t) for t in thinking)
    thinking = str(thinking).strip()
    answer = str(answer).strip()
    if cfg.answer_prefix and cfg.answer_prefix.strip() not in answer:
        answer = cfg.answer_prefix + answer
    if cfg.think_style == "s1":
        return f"<|im_start|>think\n{thinking}\n<|im_start|>answer\n{answer}"
    return f"<think>\n{thinking}\n</think>\n\n{answer}"


def render(tokenizer: Any, row: dict[str, Any], cfg: TrainConfig) -> tuple[str, int]:
    """The full conversation text and the character offset where the assistant turn begins."""
    messages: list[dict[str, str]] = []
    if cfg.system_prompt is not None:
        messages.append({"role": "system", "content": cfg.system_prompt})
    messages.append({"role": "user", "content": str(row[cfg.question_field])})
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    reply = assistant_content(row[cfg.thinking_field], row[cfg.answer_field], cfg)
    messages.append({"role": "assistant", "content": reply})
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    if not full.startswith(prompt):
        raise DataError(
            "the chat template does not render the generation prompt as a prefix of the full conversation, "
            "so the assistant span cannot be found; use a template that does (e.g. Qwen2.5's)"
        )
    return full, len(prompt)


def check_tokenizer(tokenizer: Any) -> None:
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(
            "the tokenizer has no chat template; use an instruct model's tokenizer or set "
            "tokenizer.chat_template (e.g. a Qwen2.5 template) before training"
        )
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError("the tokenizer must be a fast tokenizer (offset mapping is needed for label spans)")


def tokenize_row(tokenizer: Any, row: dict[str, Any], cfg: TrainConfig) -> Example:
    text, start = render(tokenizer, row, cfg)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = list(enc["input_ids"])
    offsets: list[tuple[int, int]] = [tuple(o) for o in enc["offset_mapping"]]
    in_reply = [o[0] >= start for o in offsets]
    prompt_tokens = next((i for i, r in enumerate(in_reply) if r), len(ids))
    # targets_T[t] = ids[t+1] when token t+1 lies in the assistant turn: the model at t predicts it.
    targets = [ids[t + 1] if in_reply[t + 1] else IGNORE_INDEX for t in range(len(ids) - 1)]
    targets.append(IGNORE_INDEX)
    return Example(input_ids_T=ids, targets_T=targets, prompt_tokens=prompt_tokens)


def build_examples(
    tokenizer: Any, rows: Iterable[dict[str, Any]], cfg: TrainConfig
) -> tuple[list[Example], DataStats]:
    """Tokenize every row; truncate or drop the ones longer than the block, counting both."""
    check_tokenizer(tokenizer)
    rows = list(rows)
    check_columns(rows, cfg)
    stats = DataStats(rows=len(rows))
    examples: list[Example] = []
    too_long_prompts: list[tuple[int, int]] = []
    for i, row in enumerate(rows):
        nulls = null_fields(row, cfg)
        if nulls:
            stats.dropped += 1
            stats.notes.append(f"row {i}: {', '.join(nulls)} is null")
            continue
        ex = tokenize_row(tokenizer, row, cfg)
        if len(ex) > cfg.block_size:
            if cfg.overlong == "drop":
                stats.dropped += 1
                continue
            if ex.prompt_tokens >= cfg.block_size:
                too_long_prompts.append((i, ex.prompt_tokens))
                continue
            stats.truncated += 1
            b = cfg.block_size
            ex = Example(ex.input_ids_T[:b], [*ex.targets_T[: b - 1], IGNORE_INDEX], ex.prompt_tokens)
        if ex.num_targets == 0:
            stats.dropped += 1
            stats.notes.append(f"row {i}: no target tokens")
            continue
        examples.append(ex)
    if too_long_prompts:
        worst = max(n for _, n in too_long_prompts)
        shown = ", ".join(f"row {i} ({n} tokens)" for i, n in too_long_prompts[:5])
        raise ConfigError(
            f"block_size={cfg.block_size} is shorter than the prompt of {len(too_long_prompts)} row(s): "
            f"{shown}; raise --block-size above {worst} or use --overlong drop"
        )
    if not examples:
        reasons = "; ".join(stats.notes[:3]) or "longer than the block"
        raise DataError(f"no usable rows in {cfg.data!r} ({stats.dropped} dropped: {reasons})")
    stats.kept = len(examples)
    stats.tokens = sum(len(e) for e in examples)
    stats.target_tokens = sum(e.num_targets for e in examples)
    stats.longest = max(len(e) for e in examples)
    return examples, stats
