"""A real run: the shared question pool, decontaminated against the shared evaluation sets, with the
manifest accounting for every input row; same seed, same output; the CLI end to end."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from s1kit.curate import CurateConfig, cli, load_pool, run_pipeline
from s1kit.curate.decontam import EvalSet
from tests.unit import s1_dedup_reference as ref


def _eval_files(shared_data: Path) -> list[str]:
    return sorted(str(p) for p in (shared_data / "eval").glob("*.jsonl"))


def test_real_pool_decontaminated_against_eval(shared_data: Path) -> None:
    pool = load_pool([shared_data / "pool"])
    lines = [ln for f in (shared_data / "pool").glob("*.jsonl") for ln in f.read_text().splitlines()]
    assert pool.num_input_rows == sum(1 for ln in lines if ln.strip())
    cfg = CurateConfig(k=200, seed=1, eval_files=_eval_files(shared_data), skip={"correctness"})
    result = run_pipeline(pool, cfg)
    m = result.manifest
    m.check_complete()
    assert sorted(m.decisions) == list(range(pool.num_input_rows))
    assert sum(d.status == "kept" for d in m.decisions.values()) == len(result.selected) == 200
    # Every decontamination drop shares an 8-gram with an evaluation question per the s1 reference,
    # and every pool question that does so was dropped, by decontamination or an earlier stage.
    evals = EvalSet.load(cfg.eval_files)
    lookup = ref.build_ngram_lookup(evals.texts, 8)
    contaminated = {
        r.row for r in pool.rows if any(g in lookup for g in ref.word_ngrams(r.question or "", 8))
    }
    decontam = {r for r, d in m.decisions.items() if d.stage == "decontam"}
    assert decontam, "the shared pool overlaps the evaluation sets"
    assert decontam <= contaminated
    early = {r for r, d in m.decisions.items() if d.stage in ("load", "quality")}
    assert contaminated <= decontam | early
    for r in decontam:
        d = m.decisions[r].detail or {}
        assert d["shared_ngrams"] >= 1 and d["eval_file"].endswith(".jsonl")
    stages = [s.stage for s in m.stages]
    assert stages == [
        "load",
        "quality",
        "correctness",
        "decontam",
        "exact_dedup",
        "near_dedup",
        "difficulty",
        "diversity",
    ]
    for a, b in zip(m.stages, m.stages[1:], strict=False):
        assert a.rows_out == b.rows_in
    again = run_pipeline(load_pool([shared_data / "pool"]), cfg)
    assert [r.row for r in again.selected] == [r.row for r in result.selected]
    other = run_pipeline(load_pool([shared_data / "pool"]), CurateConfig(**{**cfg.__dict__, "seed": 2}))
    assert [r.row for r in other.selected] != [r.row for r in result.selected]


def test_cli_end_to_end(shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pool_dir = tmp_path / "pool"
    pool_dir.mkdir()
    src = (shared_data / "pool" / "olympiadbench.jsonl").read_text().splitlines()[:150]
    (pool_dir / "p.jsonl").write_text("\n".join([*src, "{broken", src[0]]) + "\n")
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(
        [
            str(pool_dir),
            "--eval",
            *_eval_files(shared_data),
            "--out",
            str(tmp_path / "out"),
            "--k",
            "20",
            "--quiet",
        ]
    )
    assert cli.run(args) == 0
    out = capsys.readouterr().out
    assert "decontam" in out and "question<-question" in out and "selected 20 of 152 rows" in out
    manifest = [json.loads(line) for line in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()]
    assert [d["row"] for d in manifest] == list(range(152))
    assert manifest[150]["stage"] == "load" and "malformed JSON" in manifest[150]["reason"]
    assert manifest[151]["stage"] == "exact_dedup" and manifest[151]["detail"]["kept_row"] == 0
    selected = [json.loads(line) for line in (tmp_path / "out" / "selected.jsonl").read_text().splitlines()]
    assert len(selected) == 20 == pq.read_table(tmp_path / "out" / "selected.parquet").num_rows
    assert {d["row"] for d in manifest if d["status"] == "kept"} == {s["input_row"] for s in selected}
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["input_rows"] == 152 and summary["domain_method"] == "keywords"
