"""A static key/value cache preallocated for ``(max_batch, max_len)``.

Shape legend: L layers, B batch rows, K key/value heads, S cache positions, D head dim.

Rows of a decode batch occupy the contiguous slots ``[0, n)``; a prefill writes rows into a contiguous
range ``[start, start + b)``. Attention reads a *view* ``k_LBKSD[l][start:start + b, :, :s]`` of the
first ``s`` positions, so no step gathers or copies the cache. When a row leaves the batch the last
row is moved into its slot (:meth:`StaticKVCache.move_row`), which keeps the slots contiguous.
"""

from __future__ import annotations

import torch


class StaticKVCache:
    """Per-layer key and value tensors of shape ``(max_batch, K, max_len, D)``, never reallocated."""

    def __init__(
        self,
        n_layers: int,
        max_batch: int,
        n_kv_heads: int,
        max_len: int,
        head_dim: int,
        *,
        dtype: torch.dtype,
        device: torch.device | str,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_len < 2:
            raise ValueError(f"max_len must be >= 2, got {max_len}")
        shape = (max_batch, n_kv_heads, max_len, head_dim)
        self.max_batch = max_batch
        self.max_len = max_len
        # Zero-filled so that the padded rows of a batch bucket read finite values.
        self.k_LBKSD = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)]
        self.v_LBKSD = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)]

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.k_LBKSD + self.v_LBKSD)

    def write(
        self,
        layer: int,
        start: int,
        pos_BT: torch.Tensor,
        k_BTKD: torch.Tensor,
        v_BTKD: torch.Tensor,
    ) -> None:
        """Store the keys/values of tokens at positions ``pos_BT`` of rows ``start .. start + B``."""
        B = pos_BT.shape[0]
        rows_BT = torch.arange(start, start + B, device=pos_BT.device)[:, None].expand_as(pos_BT)
        # Advanced indices around a slice: the indexed shape is (B, T, K, D).
        self.k_LBKSD[layer][rows_BT, :, pos_BT] = k_BTKD
        self.v_LBKSD[layer][rows_BT, :, pos_BT] = v_BTKD

    def view(self, layer: int, start: int, B: int, S: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values ``(B, K, S, D)`` of rows ``start .. start + B``, first ``S`` positions."""
        return (
            self.k_LBKSD[layer][start : start + B, :, :S],
            self.v_LBKSD[layer][start : start + B, :, :S],
        )

    def move_row(self, src: int, dst: int, length: int) -> None:
        """Copy the first ``length`` positions of slot ``src`` into slot ``dst`` (compaction)."""
        if src == dst or length <= 0:
            return
        for t in self.k_LBKSD + self.v_LBKSD:
            t[dst, :, :length].copy_(t[src, :, :length])
