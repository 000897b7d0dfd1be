"""The demo's scaling results: Wilson intervals over problems and the figure in s1's layout.

Input: the demo's ``s1kit eval`` folder (``<out>/eval/``) with its ``summary.csv``. The demo evaluates
greedily with one seed, so the only uncertainty it can state is that of the test set's size: every
accuracy is given as ``k/n`` problems solved with the 95% Wilson score interval over the ``n`` test
problems (binomial; it says nothing about another training run, which a seeded run reproduces exactly).

The figure follows s1's Figure 1: accuracy against average thinking tokens on a log axis; budget
forcing's caps as one series, its forced-"Wait" points (``wait=K``: no cap, the model's first K attempts
to end its thinking replaced by "Wait") marked apart and joined to the largest cap; truncation and
token-conditional prompting as the baseline series. Error bars are the Wilson intervals.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

Z95 = 1.959964
"""The two-sided 95% quantile of the standard normal."""


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion ``k/n`` (``(0, 1)`` when ``n == 0``)."""
    if not 0 <= k <= n:
        raise ValueError(f"wilson: need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


T975 = (12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281)
"""The two-sided 95% quantiles of Student's t with 1..10 degrees of freedom."""


def t_interval(xs: list[float]) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean of ``xs`` with its 95% Student-t interval (2 to 11 values)."""
    n = len(xs)
    if not 2 <= n <= len(T975) + 1:
        raise ValueError(f"t_interval: need 2 to {len(T975) + 1} values, got {n}")
    mean = sum(xs) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    half = T975[n - 2] * sd / math.sqrt(n)
    return mean, mean - half, mean + half


@dataclass(frozen=True)
class Point:
    """One method x sweep point of the evaluation."""

    method: str
    label: str
    n: int
    """Test problems."""
    correct: int
    """Problems solved."""
    mean_thinking: float
    """Mean thinking tokens per problem."""

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else 0.0

    def interval(self) -> tuple[float, float]:
        """The 95% Wilson interval over the ``n`` problems."""
        return wilson(self.correct, self.n)

    @property
    def cap(self) -> int | None:
        return int(self.label[4:]) if self.label.startswith("cap=") else None


def drops_beyond_noise(points: list[Point]) -> list[tuple[Point, Point]]:
    """Pairs ``(a, b)`` of ``points`` where ``b`` thought more on average than ``a`` yet its 95% Wilson
    interval lies wholly below ``a``'s: the drops that noise over the test problems does not explain.
    None means the series rises with thinking "monotonically within noise"."""
    out = []
    for a in points:
        for b in points:
            if b.mean_thinking > a.mean_thinking and b.interval()[1] < a.interval()[0]:
                out.append((a, b))
    return out


def read_points(eval_dir: Path) -> list[Point]:
    """Every (method, point) of ``<eval_dir>/summary.csv``, in its order."""
    with (eval_dir / "summary.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    out = []
    for r in rows:
        n = int(r["problems"])
        out.append(
            Point(
                r["method"], r["label"], n, round(float(r["accuracy"]) * n), float(r["mean_thinking_tokens"])
            )
        )
    return out


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def cell(p: Point) -> str:
    """``k/n = acc% [low, high]``: problems solved with the 95% Wilson interval."""
    lo, hi = p.interval()
    return f"{p.correct}/{p.n} = {pct(p.accuracy)} [{pct(lo)}, {pct(hi)}]"


def plot(points: list[Point], out_png: Path) -> None:
    """s1's Figure 1 layout (see the module docstring), written atomically to ``out_png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    from s1kit import _io

    fig, ax = plt.subplots(figsize=(6.0, 4.0))

    def draw(pts: list[Point], **kw: object) -> None:
        xs = [max(p.mean_thinking, 1.0) for p in pts]
        ys = [100 * p.accuracy for p in pts]
        err = [
            [100 * (p.accuracy - p.interval()[0]) for p in pts],
            [100 * (p.interval()[1] - p.accuracy) for p in pts],
        ]
        ax.errorbar(xs, ys, yerr=err, capsize=3, **kw)  # type: ignore[arg-type]

    caps = sorted((p for p in points if p.method == "budget_forcing" and p.cap), key=lambda p: p.cap or 0)
    waits = [p for p in points if p.method == "budget_forcing" and p.label.startswith("wait=")]
    cuts = [p for p in points if p.method == "truncation"]
    if cuts:
        draw(cuts, marker="s", ls=":", color="tab:gray", label="truncation (baseline)")
    prompted = [p for p in points if p.method == "token_conditional"]
    if prompted:
        draw(prompted, marker="^", ls="-.", color="tab:green", label="token-conditional prompting (baseline)")
    if caps:
        draw(caps, marker="o", color="tab:blue", label="budget forcing: thinking cap")
    if caps and waits:
        chain = [caps[-1], *sorted(waits, key=lambda p: p.label)]
        ax.plot(
            [max(p.mean_thinking, 1.0) for p in chain],
            [100 * p.accuracy for p in chain],
            ls="--",
            color="tab:red",
        )
    if waits:
        draw(waits, marker="*", ms=11, ls="none", color="tab:red", label='budget forcing: forced "Wait"s')
        for i, p in enumerate(waits):
            ax.annotate(
                f"+{p.label[5:]} Wait",
                (max(p.mean_thinking, 1.0), 100 * p.accuracy),
                textcoords="offset points",
                xytext=(4, -14 if i % 2 == 0 else 8),  # alternate below / above: close points stay legible
                fontsize=8,
                color="tab:red",
            )
    ax.set_xscale("log")
    top = max((p.mean_thinking for p in points), default=1.0)
    ticks = [t for t in (4, 8, 16, 32, 64, 128, 256, 512) if t <= 2 * top]
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("average thinking tokens (log scale)")
    ax.set_ylabel("accuracy on held-out problems (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    with _io.atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
