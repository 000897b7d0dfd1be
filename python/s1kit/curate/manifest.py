"""The manifest: one final decision for every input row, and the per-stage table.

Each row is either dropped by exactly one stage (with a reason and details) or kept to the end and
selected. Unreadable input rows are dropped by the ``load`` stage. :meth:`Manifest.check_complete`
proves the accounting: every row index from 0 to ``num_input_rows - 1`` appears once.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from s1kit.curate.loaders import Pool
from s1kit.curate.schema import Row


@dataclass(frozen=True)
class Decision:
    row: int
    file: str
    line: int
    id: str | None
    status: str  # "kept" or "dropped"
    stage: str
    reason: str
    detail: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "row": self.row,
            "file": self.file,
            "line": self.line,
            "id": self.id,
            "status": self.status,
            "stage": self.stage,
            "reason": self.reason,
        }
        if self.detail:
            d["detail"] = self.detail
        return d


@dataclass
class StageStats:
    """Rows entering and leaving one stage, and the survivors per domain."""

    stage: str
    rows_in: int
    rows_out: int
    reasons: Counter[str] = field(default_factory=Counter)
    domains_out: Counter[str] = field(default_factory=Counter)
    note: str = ""


class Manifest:
    """Decisions keyed by input row; rows without a decision are still in the running."""

    def __init__(self, num_input_rows: int) -> None:
        self.num_input_rows = num_input_rows
        self.decisions: dict[int, Decision] = {}
        self.stages: list[StageStats] = []
        # Extra keys on a row's line whatever its decision (the attempts' verdicts), by input row.
        self.annotations: dict[int, dict[str, Any]] = {}

    @classmethod
    def from_pool(cls, pool: Pool) -> Manifest:
        m = cls(pool.num_input_rows)
        for issue in pool.issues:
            m.decisions[issue.row] = Decision(
                issue.row, issue.file, issue.line, None, "dropped", "load", issue.reason
            )
        return m

    def drop(self, row: Row, stage: str, reason: str, detail: dict[str, Any] | None = None) -> None:
        if row.row in self.decisions:
            raise RuntimeError(f"row {row.row} already has a decision; a stage dropped it twice")
        self.decisions[row.row] = Decision(
            row.row, row.file, row.line, row.id, "dropped", stage, reason, detail
        )

    def keep(self, row: Row, stage: str, reason: str, detail: dict[str, Any] | None = None) -> None:
        if row.row in self.decisions:
            raise RuntimeError(f"row {row.row} already has a decision")
        self.decisions[row.row] = Decision(row.row, row.file, row.line, row.id, "kept", stage, reason, detail)

    def annotate(self, row: int, extra: dict[str, Any]) -> None:
        """Add ``extra``'s keys to row ``row``'s manifest line (they never replace the decision's)."""
        self.annotations.setdefault(row, {}).update(extra)

    def check_complete(self) -> None:
        """Raise unless every input row has exactly one decision."""
        missing = [r for r in range(self.num_input_rows) if r not in self.decisions]
        extra = [r for r in self.decisions if not 0 <= r < self.num_input_rows]
        if missing or extra:
            raise RuntimeError(
                f"manifest incomplete: rows without a decision {missing[:10]}, unknown {extra[:10]}"
            )

    def write(self, path: Path) -> None:
        self.check_complete()
        with path.open("w", encoding="utf-8") as fh:
            for r in range(self.num_input_rows):
                line = self.decisions[r].to_json()
                for key, value in self.annotations.get(r, {}).items():
                    line.setdefault(key, value)
                fh.write(json.dumps(line, ensure_ascii=False) + "\n")

    def table(self, max_domains: int = 8) -> str:
        """The stage table: rows in, rows out, dropped by reason, survivors per domain."""
        lines = [f"{'stage':<22} {'in':>8} {'out':>8} {'dropped':>8}  top drop reasons / note"]
        lines.append("-" * 100)
        for s in self.stages:
            reasons = ", ".join(f"{k} ({v})" for k, v in s.reasons.most_common(3))
            extra = "; ".join(x for x in (reasons, s.note) if x)
            lines.append(f"{s.stage:<22} {s.rows_in:>8} {s.rows_out:>8} {s.rows_in - s.rows_out:>8}  {extra}")
        first = next((s for s in self.stages if s.domains_out), None)
        if first is not None:
            lines.append("")
            lines.append(f"rows out per domain (stage by stage; the {max_domains} largest domains):")
            doms = [d for d, _ in first.domains_out.most_common(max_domains)]
            header = f"{'stage':<22} " + " ".join(f"{d[:12]:>12}" for d in doms)
            lines.append(header)
            for s in self.stages:
                if s.domains_out or s.rows_out == 0:
                    lines.append(f"{s.stage:<22} " + " ".join(f"{s.domains_out.get(d, 0):>12}" for d in doms))
        return "\n".join(lines)
