"""Run an ``s1kit`` subcommand with torch set up for bit-for-bit reproducible results on a CPU.

``python -m s1kit.demo.deterministic train ...`` (under ``torch.distributed.run`` for several ranks)
is ``s1kit train ...`` after :func:`make_deterministic`: the demo trains through it so that training
code stays as a user runs it, and the demo's own evaluation calls :func:`make_deterministic` in process.

What a seeded demo run is then deterministic against, and what it is not:

- same results for the same seed, size and number of training processes (``--nproc``), the same
  package versions (torch, transformers, tokenizers, numpy, s1kit) and the same CPU instruction set that
  torch's kernels dispatch to (``torch.backends.cpu.get_cpu_capability()``, e.g. ``AVX512``): the
  thread count of every reduction is pinned (:data:`TRAIN_THREADS` per training rank,
  :data:`EVAL_THREADS` in evaluation) instead of following the machine's core count, torch refuses
  nondeterministic kernels (``torch.use_deterministic_algorithms``), the data order is a seeded
  permutation per epoch, FSDP issues its gloo collectives in the same module order on every step, and
  evaluation decodes greedily (no sampling);
- not against the machine's speed or load (nothing depends on timing), nor the core count;
- a different ``--nproc`` is a different run: gradients are then summed over another number of ranks.
"""

from __future__ import annotations

import sys

TRAIN_THREADS = 1
"""Intra-op threads per training rank (two ranks on two cores use both)."""
EVAL_THREADS = 2
"""Intra-op threads of the demo's evaluation, whatever the machine's core count (a matmul's
reduction order can depend on its thread count)."""


def make_deterministic(threads: int) -> dict[str, object]:
    """Pin torch's intra-op threads to ``threads`` and refuse nondeterministic kernels; return what was
    set (for the report)."""
    import torch

    if threads < 1:
        raise ValueError(f"threads={threads}: use 1 or more")
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    return {
        "threads": threads,
        "deterministic_algorithms": True,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def main(argv: list[str] | None = None) -> int:
    from s1kit.cli import main as s1kit_main

    make_deterministic(TRAIN_THREADS)
    return s1kit_main(list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
