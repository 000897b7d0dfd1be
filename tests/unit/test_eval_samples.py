"""The samples JSONL schema (:class:`s1kit.eval.samples.SampleRecord`): old files still load and report."""

from __future__ import annotations

import json
import shutil
import typing
from pathlib import Path

from s1kit.eval.report import write_report
from s1kit.eval.samples import SampleRecord, SampleStore, read_samples, samples_path, upgrade_record

OLD_RUN = Path(__file__).resolve().parents[1] / "assets" / "eval_samples_v1"


def _fields() -> set[str]:
    return set(typing.get_type_hints(SampleRecord))


def test_a_samples_folder_written_before_the_typed_record_loads_whole(tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(OLD_RUN, run)
    raw = [
        json.loads(line)
        for path in sorted((run / "samples").glob("*/*.jsonl"))
        for line in path.read_text(encoding="utf-8").splitlines()
    ]
    assert len(raw) == 10 and not any("engine" in r or "prefill_tokens" in r for r in raw)
    records = read_samples(run)
    assert len(records) == len(raw)
    by_key = {(r["method"], r["key"], r["problem_id"], r["index"]): r for r in records}
    for old in raw:
        rec = by_key[(old["method"], old["key"], old["problem_id"], old["index"])]
        # Every field of the schema is present; the stored ones are unchanged; the added ones say what
        # produced the old file: s1kit's engine, in-loop forcing, the prompt prefilled once in one call.
        assert set(rec) >= _fields() - {"error"}
        assert {k: rec[k] for k in old} == old  # type: ignore[literal-required]
        assert (rec["engine"], rec["forcing"], rec["engine_calls"]) == ("s1kit", "inloop", 1)
        assert rec["prefill_tokens"] == old["prompt_tokens"] > 0
    # The report reads the old folder as before.
    paths = write_report(run)
    md = paths["report_md"].read_text(encoding="utf-8")
    assert "| math500 | budget_forcing | 2 |" in md and "| math500 | majority_voting | 2 |" in md


def test_an_old_file_resumes_in_place(tmp_path: Path) -> None:
    src = OLD_RUN / "samples" / "math500" / "budget_forcing.jsonl"
    path = samples_path(tmp_path, "math500", "budget_forcing")
    path.parent.mkdir(parents=True)
    shutil.copy(src, path)
    store = SampleStore(path)
    old = store.get("cap=8", next(iter(store.records))[1])
    assert len(old) == 1
    new = dict(old[0], index=1, engine="vllm", forcing="reprompt", prefill_tokens=500, engine_calls=3)
    store.append([upgrade_record(new)])
    again = SampleStore(path)
    got = again.get("cap=8", old[0]["problem_id"])
    assert [(r["engine"], r["prefill_tokens"]) for r in got] == [
        ("s1kit", old[0]["prompt_tokens"]),
        ("vllm", 500),
    ]


def test_a_prompt_too_long_record_of_an_old_file_prefilled_nothing() -> None:
    rec = upgrade_record({"finish_reason": "prompt_too_long", "prompt_tokens": 900})
    assert (rec["prefill_tokens"], rec["engine_calls"]) == (0, 0)
