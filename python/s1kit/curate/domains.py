"""Domains for diversity sampling: a ``domain`` column when the pool has one, else an offline classifier
into top-level Mathematics Subject Classification (MSC 2020) areas, as s1 did.

Two classifiers, both offline: keywords (default; word-boundary matches of area keywords, most hits
wins, ties to the lower MSC number) and embedding centroids (with a local sentence-embedding model:
cosine to each area's embedded description). Questions that match nothing fall in "00 General".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

# MSC top-level area -> keywords (lowercase; CJK keywords match as substrings).
MSC_AREAS: dict[str, tuple[str, ...]] = {
    "03 Mathematical logic and foundations": ("logic", "proposition", "axiom", "set theory", "truth table"),
    "05 Combinatorics": (
        "combinatori",
        "how many ways",
        "arrangements",
        "permutation",
        "choose",
        "graph",
        "vertices",
        "coloring",
        "colouring",
        "tournament",
        "pigeonhole",
        "subsets",
        "排列",
        "组合",
    ),
    "11 Number theory": (
        "integer",
        "prime",
        "divisible",
        "divisor",
        "remainder",
        "modulo",
        "mod ",
        "gcd",
        "lcm",
        "digit",
        "congruent",
        "diophantine",
        "factorial",
        "base ",
        "整数",
        "质数",
        "余数",
    ),
    "12 Field theory and polynomials": (
        "polynomial",
        "roots of",
        "coefficient",
        "quadratic",
        "cubic",
        "多项式",
    ),
    "15 Linear algebra; matrix theory": (
        "matrix",
        "matrices",
        "determinant",
        "eigenvalue",
        "eigenvector",
        "vector space",
        "linear map",
        "rank of",
        "矩阵",
        "行列式",
        "特征值",
        "向量组",
    ),
    "20 Group theory": ("group", "subgroup", "homomorphism", "isomorphism", "cyclic group", "群"),
    "26 Real functions and calculus": (
        "derivative",
        "integral",
        "limit",
        "continuous",
        "differentiable",
        "maximum value",
        "minimum value",
        "increasing",
        "monotonic",
        "function f",
        "f(x)",
        "导数",
        "积分",
        "极限",
        "函数",
        "单调",
    ),
    "30 Complex analysis": ("complex number", "complex plane", "imaginary", "modulus of", "复数"),
    "34 Ordinary differential equations": ("differential equation", "ode", "y''", "微分方程"),
    "40 Sequences and series": (
        "sequence",
        "series",
        "arithmetic progression",
        "geometric progression",
        "recursive",
        "a_{n",
        "sum of the first",
        "数列",
        "级数",
    ),
    "51 Geometry": (
        "triangle",
        "circle",
        "angle",
        "polygon",
        "square",
        "rectangle",
        "perpendicular",
        "parallel",
        "tangent",
        "radius",
        "area of",
        "hexagon",
        "quadrilateral",
        "ellipse",
        "parabola",
        "hyperbola",
        "coordinate",
        "三角形",
        "圆",
        "椭圆",
        "抛物线",
        "双曲线",
    ),
    "60 Probability theory": (
        "probability",
        "random",
        "expected value",
        "dice",
        "coin",
        "distribution",
        "independent",
        "概率",
        "随机",
        "期望",
    ),
    "62 Statistics": (
        "mean",
        "median",
        "variance",
        "standard deviation",
        "sample",
        "estimator",
        "统计",
        "方差",
    ),
    "65 Numerical analysis": ("numerical", "approximation", "iteration", "newton's method", "error bound"),
    "68 Computer science": ("algorithm", "program", "complexity", "binary", "string of", "code"),
    "70 Mechanics": ("velocity", "acceleration", "force", "mass", "momentum", "friction", "kinetic"),
    "78 Optics and electromagnetism": (
        "electric",
        "magnetic",
        "charge",
        "voltage",
        "current",
        "lens",
        "wavelength",
        "photon",
        "optical",
    ),
    "80 Thermodynamics": ("temperature", "heat", "entropy", "thermodynamic", "gas", "kelvin"),
    "81 Quantum theory": ("quantum", "electron", "atom", "spin", "hamiltonian", "wave function", "orbital"),
    "85 Astronomy and astrophysics": (
        "star",
        "telescope",
        "galaxy",
        "planet",
        "orbit",
        "luminosity",
        "solar",
        "parsec",
        "redshift",
    ),
    "91 Game theory and economics": (
        "game",
        "player",
        "strategy",
        "price",
        "profit",
        "cost",
        "interest rate",
    ),
    "92 Biology and chemistry": (
        "cell",
        "protein",
        "gene",
        "dna",
        "enzyme",
        "molecule",
        "reaction",
        "chemical",
    ),
}
GENERAL = "00 General"


def _compile() -> tuple[re.Pattern[str], dict[str, str]]:
    """One alternation over every keyword (longest first), and keyword -> area (the lower MSC number
    wins for a keyword listed twice). ASCII keywords must start a word; CJK keywords match anywhere."""
    owner: dict[str, str] = {}
    for area, kws in MSC_AREAS.items():
        for k in kws:
            owner.setdefault(k, area)
    ordered = sorted(owner, key=len, reverse=True)
    ascii_kw = "|".join(re.escape(k) for k in ordered if k.isascii())
    cjk_kw = "|".join(re.escape(k) for k in ordered if not k.isascii())
    return re.compile(rf"(?<![a-z])(?:{ascii_kw})|(?:{cjk_kw})"), owner


_PATTERN, _OWNER = _compile()
_ORDER = {area: i for i, area in enumerate(MSC_AREAS)}


def classify_keywords(text: str) -> str:
    """The MSC area whose keywords occur most often in ``text`` (ties: the lower number)."""
    hits: dict[str, int] = {}
    for m in _PATTERN.findall(text.lower()):
        area = _OWNER[m]
        hits[area] = hits.get(area, 0) + 1
    if not hits:
        return GENERAL
    return min(hits, key=lambda a: (-hits[a], _ORDER[a]))


def area_descriptions() -> list[str]:
    """One text per MSC area (name and keywords), embedded to form the centroids."""
    return [f"{area[3:]}: {', '.join(k for k in kws if k.isascii())}" for area, kws in MSC_AREAS.items()]


def classify_embeddings(
    texts: Sequence[str], embed: Callable[[Sequence[str]], npt.NDArray[np.float32]]
) -> list[str]:
    """Nearest area centroid (cosine) for every text; ``embed`` returns L2-normalised rows."""
    centroids = embed(area_descriptions())
    vecs = embed(list(texts))
    best = np.argmax(vecs @ centroids.T, axis=1)
    areas = list(MSC_AREAS)
    return [areas[int(k)] for k in best]
