"""The stage table (issue 19 item 5): every stage, the final diversity sampling included, runs through
the same ``apply`` and returns a typed :class:`StageOutcome`; library errors name configuration fields,
and ``s1kit curate`` names its flags instead."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from s1kit.cli import main
from s1kit.curate import CurateConfig, run_pipeline
from s1kit.curate.loaders import Pool
from s1kit.curate.manifest import Manifest
from s1kit.curate.pipeline import PIPELINE, STAGES, Stage, StageContext, StageOutcome, apply
from s1kit.curate.schema import Row
from s1kit.errors import ConfigFieldError


def _rows(n: int) -> list[Row]:
    return [
        Row(row=i, file="p.jsonl", line=i + 1, question=f"question number {i} " * (i + 1), answer=str(i))
        for i in range(n)
    ]


def test_the_table_names_every_stage_in_order() -> None:
    assert [s.name for s in PIPELINE] == list(STAGES)
    assert STAGES[-1] == "diversity" and STAGES[0] == "quality"


def test_diversity_goes_through_apply_like_every_stage() -> None:
    rows = _rows(6)
    for r in rows:
        r.domain = "d"
    manifest = Manifest(6)
    ctx = StageContext(CurateConfig(k=2, seed=3), None)
    final = next(s for s in PIPELINE if s.name == "diversity")
    chosen = apply(final, rows, ctx, manifest)
    assert len(chosen) == 2
    assert [d.status for d in manifest.decisions.values()].count("kept") == 2
    dropped = [d for d in manifest.decisions.values() if d.status == "dropped"]
    assert len(dropped) == 4 and {d.reason for d in dropped} == {"not sampled (final size k reached)"}
    stats = manifest.stages[-1]
    assert (stats.stage, stats.rows_in, stats.rows_out, dict(stats.reasons)) == (
        "diversity",
        6,
        2,
        {"not sampled": 4},
    )
    manifest.check_complete()


def test_a_final_stage_must_account_for_every_row() -> None:
    rows = _rows(3)

    def loses_a_row(rows: list[Row], ctx: StageContext) -> StageOutcome:
        return StageOutcome(selected=(rows[0],), why={rows[0].row: "x"})

    with pytest.raises(RuntimeError, match="do not cover its rows"):
        apply(Stage("bad", loses_a_row), rows, StageContext(CurateConfig(), None), Manifest(3))


def test_library_errors_name_config_fields_not_flags() -> None:
    pool = Pool(rows=_rows(3))
    with pytest.raises(ConfigFieldError, match=r"`skip` \['nope'\]: stages are quality") as err:
        run_pipeline(pool, CurateConfig(skip={"nope"}))
    assert "--" not in str(err.value) and err.value.fields == ("skip",)
    with pytest.raises(ConfigFieldError, match="`domain_method` embeddings needs `embedder`"):
        run_pipeline(pool, CurateConfig(domain_method="embeddings"))


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--skip-stage", "nope"], "--skip-stage ['nope']: stages are quality"),
        (["--domains", "embeddings"], "--domains embeddings needs --embed-model DIR"),
        (["--domains", "column"], "--domains column: the pool has no domain column"),
        (["--solved-by", "qwen"], "--solved-by names model(s) ['qwen'] without a correctness column"),
    ],
)
def test_the_cli_names_its_flags(
    flags: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pool = tmp_path / "pool.jsonl"
    pool.write_text(
        "".join(json.dumps({"question": f"q {i} " * 9, "answer": str(i)}) + "\n" for i in range(4))
    )
    assert main(["curate", str(pool), "--out", str(tmp_path / "o"), "--quiet", *flags]) == 2
    err = capsys.readouterr().err
    assert message in err.splitlines()[0] and "`" not in err.splitlines()[0], err
