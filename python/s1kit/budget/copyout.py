"""Device-to-host copies that do not stall the device: two pinned buffer sets used in turn.

A decode loop that keeps its state on the device copies it out once per window: :class:`PinnedBuffers`
owns two host buffer sets shaped like the device tensors (pinned memory on CUDA), :meth:`PinnedBuffers.start`
queues the copy behind the work already on the current stream and records an event, and the returned
:class:`PinnedCopy` (or a subclass that names what it reads, such as
:class:`~s1kit.budget.tensor.HostCopy` and :class:`~s1kit.generate.step.AheadCopy`) waits for that
event only when read. With two sets, one copy can be read while the next is in flight; a copy read after
two more were started is refused, because its buffers were reused. On CPU every copy is complete
when started.

Used by :mod:`s1kit.budget.tensor` (the budget state and its ring of emitted tokens) and by
:mod:`s1kit.generate.step` (the run-ahead window's rings); it knows nothing about either.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import numpy as np
import numpy.typing as npt
import torch

_C = TypeVar("_C", bound="PinnedCopy")


class PinnedCopy:
    """A device-to-host copy in flight into one buffer set of a :class:`PinnedBuffers` (CUDA: pinned
    memory and an event; CPU: already complete). A source left out (``None``) reads back as ``None``."""

    def __init__(
        self,
        owner: PinnedBuffers,
        buffers: tuple[torch.Tensor, ...],
        present: tuple[bool, ...],
        event: torch.cuda.Event | None,
    ) -> None:
        self._owner, self._buffers, self._present, self._event = owner, buffers, present, event
        self._generation = owner.started

    def ready(self) -> bool:
        """Whether the copy has landed (never blocks)."""
        return self._event is None or bool(self._event.query())

    def arrays(self) -> list[npt.NDArray[np.generic] | None]:
        """Wait for the copy (if needed) and return numpy copies of the buffers. Valid until two more
        copies are started on the same buffers."""
        if self._owner.started - self._generation >= len(self._owner.sets):
            raise RuntimeError("this copy's pinned buffer was reused: read a copy before starting two more")
        if self._event is not None:
            self._event.synchronize()
        return [b.numpy().copy() if p else None for b, p in zip(self._buffers, self._present, strict=True)]


class PinnedBuffers:
    """Two host buffer sets shaped like ``like`` (pinned when ``pin``), used in turn, so one copy can be
    read while the next is in flight."""

    def __init__(self, like: tuple[torch.Tensor, ...], pin: bool) -> None:
        self.sets = [
            tuple(torch.empty(x.shape, dtype=x.dtype, pin_memory=pin) for x in like) for _ in range(2)
        ]
        self.started = 0

    def start(self, sources: tuple[torch.Tensor | None, ...], cls: CopyFactory[_C]) -> _C:
        """Copy ``sources`` into the next buffer set, ordered after the work queued on the current
        stream (asynchronous on CUDA, an event marks completion); return the copy as a ``cls`` (a
        :class:`PinnedCopy` subclass, or a ``functools.partial`` of one that binds its own fields)."""
        bufs = self.sets[self.started % len(self.sets)]
        self.started += 1
        cuda = any(x is not None and x.is_cuda for x in sources)
        for dst, src in zip(bufs, sources, strict=True):
            if src is not None:
                dst.copy_(src, non_blocking=cuda)
        event = None
        if cuda:
            event = torch.cuda.Event()
            event.record()
        return cls(self, bufs, tuple(x is not None for x in sources), event)


# What PinnedBuffers.start builds the copy with: PinnedCopy's constructor arguments.
CopyFactory = Callable[
    [PinnedBuffers, tuple[torch.Tensor, ...], tuple[bool, ...], torch.cuda.Event | None], _C
]

__all__ = ["CopyFactory", "PinnedBuffers", "PinnedCopy"]
