"""s1K-style data curation: load a question pool, filter it stage by stage, select a small, hard,
diverse training set, and account for every input row.

Stages (default order): quality -> trace correctness -> decontamination -> exact dedup -> near dedup
-> [embedding dedup] -> difficulty -> diversity sampling. Text kernels (normalisation, n-gram index,
MinHash-LSH, union-find, all-pairs cosine) are Rust (:mod:`s1kit._core`). With ``s1kit curate
--attempts``, an attempts stage runs after dedup: reference models try each question.

Where each concern lives: ``loaders.py`` reads pools (JSONL, JSON, Parquet, Arrow, hub) into the one
schema of ``schema.py``; one module per stage (``quality.py``, ``correctness.py``, ``decontam.py``,
``dedup.py`` and ``embed.py``, ``attempts.py`` (the protocol; the generating side is
:mod:`s1kit.distill`), ``difficulty.py``, ``domains.py`` and ``diversity.py``); ``pipeline.py`` runs
them from one table and writes the outputs; ``manifest.py`` holds every row's decision and the stage
table; ``cli.py`` is ``s1kit curate`` (it maps config fields named in errors to its flags).

>>> from s1kit.curate import CurateConfig, load_pool, run_pipeline  # doctest: +SKIP
>>> result = run_pipeline(load_pool(["pool.jsonl"]), CurateConfig(k=1000, eval_files=["aime24.jsonl"]))
"""

from __future__ import annotations

from s1kit.curate.loaders import LoadIssue, Pool, load_pool
from s1kit.curate.manifest import Decision, Manifest
from s1kit.curate.pipeline import STAGES, CurateConfig, CurateResult, run_pipeline, write_outputs
from s1kit.curate.schema import COLUMNS, FieldMap, Row

__all__ = [
    "COLUMNS",
    "STAGES",
    "CurateConfig",
    "CurateResult",
    "Decision",
    "FieldMap",
    "LoadIssue",
    "Manifest",
    "Pool",
    "Row",
    "load_pool",
    "run_pipeline",
    "write_outputs",
]
